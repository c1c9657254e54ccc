/* gguf_write.c — GGUF v3 writer: metadata in memory, tensor bytes streamed from the caller. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"

typedef struct {
    char *key;
    uint8_t *raw; /* u32 type + value, exactly as written */
    size_t n;
} wkv;

typedef struct {
    char name[BB_GGUF_NAME_MAX];
    int type;
    int ndim;
    int64_t shape[BB_GGUF_MAX_DIMS]; /* row-major, fastest last */
    const void *data;
    size_t nbytes;
} wtensor;

struct bb_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    uint32_t alignment;
};

bb_status bb_gguf_writer_create(bb_gguf_writer **out) {
    *out = NULL;
    BB_CALL(bb_calloc((void **)out, 1, sizeof **out, "GGUF writer"));
    (*out)->alignment = BB_GGUF_DEFAULT_ALIGNMENT;
    return BB_OK;
}

void bb_gguf_writer_destroy(bb_gguf_writer **pw) {
    if (!pw || !*pw) return;
    bb_gguf_writer *w = *pw;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].raw);
    }
    free(w->kv);
    free(w->t);
    free(w);
    *pw = NULL;
}

/* A growable byte buffer for one serialized value. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static bb_status buf_put(buf *b, const void *src, size_t n) {
    if (n == 0) return BB_OK; /* empty strings and arrays may come with a NULL pointer */
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            BB_CHECK(cap <= SIZE_MAX / 2, BB_ERR_OOM, "out of memory: GGUF metadata value is too large");
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        BB_CHECK(p, BB_ERR_OOM, "out of memory: GGUF metadata value needs %zu bytes", cap);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return BB_OK;
}

static bb_status buf_u32(buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static bb_status buf_u64(buf *b, uint64_t v) { return buf_put(b, &v, 8); }

static bb_status buf_str(buf *b, const char *s, size_t len) {
    BB_CALL(buf_u64(b, len));
    return buf_put(b, s, len);
}

static int has_key(const bb_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return 1;
    return 0;
}

/* Take ownership of b as the value of key (b is freed on error). */
static bb_status add_raw(bb_gguf_writer *w, const char *key, buf *b) {
    bb_status st = BB_OK;
    char *k = NULL;
    BB_CHECK_GOTO(st, fail, key && *key, BB_ERR_ARG, "GGUF writer: empty metadata key");
    BB_CHECK_GOTO(st, fail, !has_key(w, key), BB_ERR_ARG, "GGUF writer: key %s is added twice", key);
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        BB_CHECK_GOTO(st, fail, p, BB_ERR_OOM, "out of memory: GGUF writer key table needs %zu entries", cap);
        w->kv = p;
        w->cap_kv = cap;
    }
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&k, strlen(key) + 1, "GGUF key"));
    memcpy(k, key, strlen(key) + 1);
    w->kv[w->n_kv++] = (wkv){.key = k, .raw = b->p, .n = b->n};
    return BB_OK;
fail:
    free(b->p);
    return st;
}

static bb_status add_scalar(bb_gguf_writer *w, const char *key, bb_gguf_type t, const void *v, size_t n) {
    buf b = {0};
    bb_status st = buf_u32(&b, (uint32_t)t);
    if (st == BB_OK) st = buf_put(&b, v, n);
    if (st) {
        free(b.p);
        return bb_trace(st, __FILE__, __LINE__, key);
    }
    BB_CALL(add_raw(w, key, &b));
    return BB_OK;
}

bb_status bb_gguf_writer_add_u8(bb_gguf_writer *w, const char *k, uint8_t v) { return add_scalar(w, k, BB_GGUF_UINT8, &v, 1); }
bb_status bb_gguf_writer_add_i8(bb_gguf_writer *w, const char *k, int8_t v) { return add_scalar(w, k, BB_GGUF_INT8, &v, 1); }
bb_status bb_gguf_writer_add_u16(bb_gguf_writer *w, const char *k, uint16_t v) { return add_scalar(w, k, BB_GGUF_UINT16, &v, 2); }
bb_status bb_gguf_writer_add_i16(bb_gguf_writer *w, const char *k, int16_t v) { return add_scalar(w, k, BB_GGUF_INT16, &v, 2); }
bb_status bb_gguf_writer_add_i32(bb_gguf_writer *w, const char *k, int32_t v) { return add_scalar(w, k, BB_GGUF_INT32, &v, 4); }
bb_status bb_gguf_writer_add_u64(bb_gguf_writer *w, const char *k, uint64_t v) { return add_scalar(w, k, BB_GGUF_UINT64, &v, 8); }
bb_status bb_gguf_writer_add_i64(bb_gguf_writer *w, const char *k, int64_t v) { return add_scalar(w, k, BB_GGUF_INT64, &v, 8); }
bb_status bb_gguf_writer_add_f32(bb_gguf_writer *w, const char *k, float v) { return add_scalar(w, k, BB_GGUF_FLOAT32, &v, 4); }
bb_status bb_gguf_writer_add_f64(bb_gguf_writer *w, const char *k, double v) { return add_scalar(w, k, BB_GGUF_FLOAT64, &v, 8); }

bb_status bb_gguf_writer_add_u32(bb_gguf_writer *w, const char *key, uint32_t v) {
    if (key && strcmp(key, "general.alignment") == 0)
        BB_CHECK(v != 0 && (v & (v - 1)) == 0, BB_ERR_ARG,
                 "GGUF writer: general.alignment %u must be a nonzero power of two", v);
    BB_CALL(add_scalar(w, key, BB_GGUF_UINT32, &v, 4));
    if (strcmp(key, "general.alignment") == 0) w->alignment = v;
    return BB_OK;
}

bb_status bb_gguf_writer_add_bool(bb_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return add_scalar(w, key, BB_GGUF_BOOL, &b, 1);
}

bb_status bb_gguf_writer_add_str(bb_gguf_writer *w, const char *key, const char *s, size_t len) {
    buf b = {0};
    bb_status st = buf_u32(&b, BB_GGUF_STRING);
    if (st == BB_OK) st = buf_str(&b, s, len);
    if (st) {
        free(b.p);
        return bb_trace(st, __FILE__, __LINE__, key);
    }
    BB_CALL(add_raw(w, key, &b));
    return BB_OK;
}

/* Bytes per element of a numeric or bool array; 0 for string and array. */
static size_t elem_size(bb_gguf_type t) {
    switch (t) {
    case BB_GGUF_UINT8: case BB_GGUF_INT8: case BB_GGUF_BOOL: return 1;
    case BB_GGUF_UINT16: case BB_GGUF_INT16: return 2;
    case BB_GGUF_UINT32: case BB_GGUF_INT32: case BB_GGUF_FLOAT32: return 4;
    case BB_GGUF_UINT64: case BB_GGUF_INT64: case BB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

bb_status bb_gguf_writer_add_arr(bb_gguf_writer *w, const char *key, bb_gguf_type elem, const void *data,
                                 uint64_t n) {
    size_t es = elem_size(elem), nb;
    BB_CHECK(es, BB_ERR_ARG, "GGUF writer: %s: bb_gguf_writer_add_arr takes numeric or bool elements, not %s "
             "(use bb_gguf_writer_add_arr_str for strings)", key, bb_gguf_type_name(elem));
    BB_CHECK(!bb_mul_overflow((size_t)n, es, &nb), BB_ERR_ARG, "GGUF writer: %s: array is too large", key);
    buf b = {0};
    bb_status st = buf_u32(&b, BB_GGUF_ARRAY);
    if (st == BB_OK) st = buf_u32(&b, (uint32_t)elem);
    if (st == BB_OK) st = buf_u64(&b, n);
    if (st == BB_OK) st = buf_put(&b, data, nb);
    if (st) {
        free(b.p);
        return bb_trace(st, __FILE__, __LINE__, key);
    }
    BB_CALL(add_raw(w, key, &b));
    return BB_OK;
}

bb_status bb_gguf_writer_add_arr_str(bb_gguf_writer *w, const char *key, const char *const *strs,
                                     const size_t *lens, uint64_t n) {
    buf b = {0};
    bb_status st = buf_u32(&b, BB_GGUF_ARRAY);
    if (st == BB_OK) st = buf_u32(&b, BB_GGUF_STRING);
    if (st == BB_OK) st = buf_u64(&b, n);
    for (uint64_t i = 0; st == BB_OK && i < n; i++) st = buf_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    if (st) {
        free(b.p);
        return bb_trace(st, __FILE__, __LINE__, key);
    }
    BB_CALL(add_raw(w, key, &b));
    return BB_OK;
}

bb_status bb_gguf_writer_copy_kv(bb_gguf_writer *w, const bb_gguf *src, int64_t id) {
    const char *key;
    const void *raw;
    size_t n;
    BB_CALL(bb_gguf_kv_raw(src, id, &key, &raw, &n));
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a;
        BB_CALL(bb_gguf_get_u32(src, key, &a));
        return bb_gguf_writer_add_u32(w, key, a);
    }
    buf b = {0};
    bb_status st = buf_put(&b, raw, n);
    if (st) return bb_trace(st, __FILE__, __LINE__, key);
    BB_CALL(add_raw(w, key, &b));
    return BB_OK;
}

bb_status bb_gguf_writer_add_tensor(bb_gguf_writer *w, const char *name, int type, int ndim, const int64_t *shape,
                                    const void *data, size_t nbytes) {
    BB_CHECK(name && *name && strlen(name) < BB_GGUF_NAME_MAX, BB_ERR_ARG,
             "GGUF writer: tensor name \"%s\" must have 1..%d characters", name ? name : "", BB_GGUF_NAME_MAX - 1);
    BB_CHECK(ndim >= 1 && ndim <= BB_GGUF_MAX_DIMS, BB_ERR_ARG, "GGUF writer: tensor %s has %d dimensions (1..%d)",
             name, ndim, BB_GGUF_MAX_DIMS);
    const bb_ggml_type_traits *tr = bb_ggml_type_info(type);
    BB_CHECK(tr, BB_ERR_ARG, "GGUF writer: tensor %s has unknown ggml type id %d", name, type);
    for (size_t i = 0; i < w->n_t; i++)
        BB_CHECK(strcmp(w->t[i].name, name) != 0, BB_ERR_ARG, "GGUF writer: tensor %s is added twice", name);
    size_t want;
    BB_CHECK(shape[ndim - 1] > 0, BB_ERR_ARG, "GGUF writer: tensor %s has a non-positive dimension", name);
    BB_CALL(bb_ggml_row_size(type, shape[ndim - 1], name, &want));
    for (int i = 0; i < ndim - 1; i++) {
        BB_CHECK(shape[i] > 0, BB_ERR_ARG, "GGUF writer: tensor %s has a non-positive dimension", name);
        BB_CHECK(!bb_mul_overflow(want, (size_t)shape[i], &want), BB_ERR_ARG, "GGUF writer: tensor %s is too large",
                 name);
    }
    BB_CHECK(want == nbytes, BB_ERR_ARG, "GGUF writer: tensor %s of type %s needs %zu bytes but %zu were given", name,
             tr->name, want, nbytes);
    BB_CHECK(data, BB_ERR_ARG, "GGUF writer: tensor %s has no data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        BB_CHECK(p, BB_ERR_OOM, "out of memory: GGUF writer tensor table needs %zu entries", cap);
        w->t = p;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = data;
    t->nbytes = nbytes;
    return BB_OK;
}

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

static bb_status write_all(int fd, const char *path, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        /* Some kernels cap a single write near 2 GiB, so large tensors go in pieces. */
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        BB_CHECK(k > 0, BB_ERR_IO, "cannot write %s: %s", path, k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return BB_OK;
}

static bb_status write_pad(int fd, const char *path, size_t n) {
    static const uint8_t zeros[256];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        BB_CALL(write_all(fd, path, zeros, k));
        n -= k;
    }
    return BB_OK;
}

/* Header: magic, version, counts, metadata, tensor infos (offsets aligned), padding. */
static bb_status build_header(const bb_gguf_writer *w, buf *b) {
    BB_CALL(buf_put(b, "GGUF", 4));
    BB_CALL(buf_u32(b, 3));
    BB_CALL(buf_u64(b, w->n_t));
    BB_CALL(buf_u64(b, w->n_kv));
    for (size_t i = 0; i < w->n_kv; i++) {
        BB_CALL(buf_str(b, w->kv[i].key, strlen(w->kv[i].key)));
        BB_CALL(buf_put(b, w->kv[i].raw, w->kv[i].n));
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        BB_CALL(buf_str(b, t->name, strlen(t->name)));
        BB_CALL(buf_u32(b, (uint32_t)t->ndim));
        for (int d = t->ndim - 1; d >= 0; d--) BB_CALL(buf_u64(b, (uint64_t)t->shape[d]));
        BB_CALL(buf_u32(b, (uint32_t)t->type));
        BB_CALL(buf_u64(b, off));
        off = align_up(off + t->nbytes, w->alignment);
    }
    static const uint8_t zeros[BB_GGUF_DEFAULT_ALIGNMENT];
    size_t pad = align_up(b->n, w->alignment) - b->n;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        BB_CALL(buf_put(b, zeros, k));
        pad -= k;
    }
    return BB_OK;
}

bb_status bb_gguf_writer_write(const bb_gguf_writer *w, const char *path) {
    char tmp[1100];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path is too long: %s", path);
    buf hdr = {0};
    bb_status st = build_header(w, &hdr);
    if (st) {
        free(hdr.p);
        return bb_trace(st, __FILE__, __LINE__, "build_header");
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(hdr.p);
        BB_CHECK(0, BB_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    BB_CALL_GOTO(st, fail, write_all(fd, tmp, hdr.p, hdr.n));
    for (size_t i = 0; i < w->n_t; i++) {
        BB_CALL_GOTO(st, fail, write_all(fd, tmp, w->t[i].data, w->t[i].nbytes));
        BB_CALL_GOTO(st, fail, write_pad(fd, tmp, align_up(w->t[i].nbytes, w->alignment) - w->t[i].nbytes));
    }
    BB_CHECK_GOTO(st, fail, fsync(fd) == 0, BB_ERR_IO, "cannot flush %s: %s", tmp, strerror(errno));
    int rc = close(fd);
    fd = -1;
    BB_CHECK_GOTO(st, fail, rc == 0, BB_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
    BB_CHECK_GOTO(st, fail, rename(tmp, path) == 0, BB_ERR_IO, "cannot rename %s to %s: %s", tmp, path,
                  strerror(errno));
    free(hdr.p);
    return BB_OK;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(hdr.p);
    return st;
}
