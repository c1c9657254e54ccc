/* hash.c — per-tensor and whole-model SHA-256 of weights, with name, dtype and shape inside each digest. */
#include "io/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "core/sha256.h"
#include "io/gguf.h"

static void put_u32(bb_sha256 *s, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    bb_sha256_update(s, b, 4);
}

static void put_i64(bb_sha256 *s, int64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
    bb_sha256_update(s, b, 8);
}

static void begin(bb_sha256 *s, bb_tensor_hash *out, const char *name, const char *dtype, int ndim,
                  const int64_t *shape) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->dtype, sizeof out->dtype, "%s", dtype);
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) out->shape[d] = shape[d];
    bb_sha256_init(s);
    static const char tag[] = "birdbone-tensor-v1";
    bb_sha256_update(s, tag, sizeof tag); /* with its NUL */
    bb_sha256_update(s, name, strlen(name) + 1);
    bb_sha256_update(s, dtype, strlen(dtype) + 1);
    put_u32(s, (uint32_t)ndim);
    for (int d = 0; d < ndim; d++) put_i64(s, shape[d]);
}

/* Values are hashed in their little-endian byte order: on a little-endian host the bytes in memory. */
static void put_le(bb_sha256 *s, const void *v, size_t n, size_t width) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe == 1) {
        bb_sha256_update(s, v, n * width);
        return;
    }
    const uint8_t *p = v;
    for (size_t i = 0; i < n; i++) {
        uint8_t b[8];
        for (size_t k = 0; k < width; k++) b[k] = p[i * width + width - 1 - k];
        bb_sha256_update(s, b, width);
    }
}

void bb_hash_f32(const char *name, int64_t rows, int64_t cols, const float *w, bb_tensor_hash *out) {
    bb_sha256 s;
    int64_t shape[2] = {rows, cols};
    begin(&s, out, name, "f32", cols ? 2 : 1, shape);
    put_le(&s, w, (size_t)(rows * (cols ? cols : 1)), 4);
    bb_sha256_final(&s, out->digest);
}

void bb_hash_u64(const char *name, int64_t rows, int64_t cols, const uint64_t *w, bb_tensor_hash *out) {
    bb_sha256 s;
    int64_t shape[2] = {rows, cols};
    begin(&s, out, name, "u64", cols ? 2 : 1, shape);
    put_le(&s, w, (size_t)(rows * (cols ? cols : 1)), 8);
    bb_sha256_final(&s, out->digest);
}

bb_status bb_tensor_hash_compute(const bb_tensor *t, int as_f32, bb_tensor_hash *out) {
    bb_sha256 s;
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    if (t->data && !t->gen && !as_f32) {
        begin(&s, out, t->name, bb_dtype_name(t->dtype), t->ndim, t->shape);
        size_t width = bb_dtype_size(t->dtype);
        BB_CHECK(width && t->nbytes == (size_t)bb_tensor_numel(t) * width, BB_ERR_INTERNAL,
                 "%s: %zu bytes for %lld values of %s", t->name, t->nbytes, (long long)bb_tensor_numel(t),
                 bb_dtype_name(t->dtype));
        put_le(&s, t->data, (size_t)bb_tensor_numel(t), width);
        bb_sha256_final(&s, out->digest);
        return BB_OK;
    }
    begin(&s, out, t->name, "f32", t->ndim, t->shape);
    /* rows per read: 1 M values, 8 M for a generated tensor (a synthetic model's generator runs a read over
     * its threads and sets up each read's low-rank factor on one thread, so few large reads are faster) */
    int64_t want = t->gen ? (int64_t)1 << 23 : (int64_t)1 << 20;
    int64_t block = cols > 0 && cols < want ? want / cols : 1;
    float *buf;
    BB_CALL(bb_malloc((void **)&buf, sizeof(float) * (size_t)(block * (cols ? cols : 1)), "tensor hash rows"));
    bb_status st = BB_OK;
    for (int64_t r0 = 0; st == BB_OK && r0 < rows; r0 += block) {
        int64_t n = rows - r0 < block ? rows - r0 : block;
        st = bb_tensor_read_f32(t, r0, n, buf);
        if (st == BB_OK) put_le(&s, buf, (size_t)(n * cols), 4);
    }
    free(buf);
    BB_CALL(st);
    bb_sha256_final(&s, out->digest);
    return BB_OK;
}

typedef struct {
    int as_f32, n, cap;
    bb_tensor_hash *list;
    const bb_tensor **which; /* (cap) the tensor of each entry, NULL = not hashed (keep said no) */
    int (*keep)(const char *name, void *ud); /* NULL = every tensor */
    void *keep_ud;
} collect;

static bb_status visit(const bb_tensor *t, void *ud) {
    collect *c = ud;
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        bb_tensor_hash *l = realloc(c->list, sizeof *l * (size_t)cap);
        BB_CHECK(l, BB_ERR_OOM, "out of memory: %zu bytes of tensor hashes", sizeof *l * (size_t)cap);
        c->list = l;
        const bb_tensor **td = realloc(c->which, sizeof *td * (size_t)cap);
        BB_CHECK(td, BB_ERR_OOM, "out of memory: %zu bytes of tensor hashes", sizeof *td * (size_t)cap);
        c->which = td;
        c->cap = cap;
    }
    memset(&c->list[c->n], 0, sizeof c->list[c->n]);
    c->which[c->n] = !c->keep || c->keep(t->name, c->keep_ud) ? t : NULL;
    c->n++;
    return BB_OK;
}

/* Entries first, first + step, ... of a collect. */
typedef struct {
    collect *c;
    int first, step;
    bb_status st;
} hash_job;

static void *hash_some(void *arg) {
    hash_job *j = arg;
    for (int k = j->first; j->st == BB_OK && k < j->c->n; k += j->step)
        if (j->c->which[k]) j->st = bb_tensor_hash_compute(j->c->which[k], j->c->as_f32, &j->c->list[k]);
    return NULL;
}

/* Every tensor of m into c, hashed over the process's threads (bb_parallel_set_default): each digest is
 * its tensor's alone, so the list is the same for any thread count. */
static bb_status collect_all(const bb_model *m, collect *c) {
    bb_status st = bb_model_for_each_tensor(m, visit, c);
    if (st == BB_OK && c->n > 0) {
        hash_job jobs[BB_PARALLEL_MAX];
        int nt = bb_parallel_threads(0, c->n, 1);
        for (int t = 0; t < nt; t++) jobs[t] = (hash_job){c, t, nt, BB_OK};
        bb_parallel_run(hash_some, jobs, sizeof jobs[0], nt);
        for (int t = 0; t < nt && st == BB_OK; t++) st = jobs[t].st;
    }
    free(c->which);
    c->which = NULL;
    if (st != BB_OK) {
        free(c->list);
        c->list = NULL;
        return bb_trace(st, __FILE__, __LINE__, "hashing the model's tensors");
    }
    return BB_OK;
}

void bb_hash_combine(const bb_tensor_hash *t, int n, uint8_t whole[32]) {
    bb_sha256 s;
    bb_sha256_init(&s);
    for (int i = 0; i < n; i++) {
        bb_sha256_update(&s, t[i].name, strlen(t[i].name) + 1);
        bb_sha256_update(&s, t[i].digest, 32);
    }
    bb_sha256_final(&s, whole);
}

bb_status bb_model_hash(const bb_model *m, int as_f32, bb_tensor_hash **per, int *n, uint8_t whole[32]) {
    collect c = {.as_f32 = as_f32};
    BB_CALL(collect_all(m, &c));
    bb_hash_combine(c.list, c.n, whole);
    if (per) {
        *per = c.list;
        *n = c.n;
    } else {
        free(c.list);
        if (n) *n = c.n;
    }
    return BB_OK;
}

bb_status bb_model_hash_some(const bb_model *m, int as_f32, int (*keep)(const char *name, void *ud), void *ud,
                             bb_tensor_hash **per, int *n) {
    collect c = {.as_f32 = as_f32, .keep = keep, .keep_ud = ud};
    BB_CALL(collect_all(m, &c));
    *per = c.list;
    *n = c.n;
    return BB_OK;
}

bb_status bb_hash_gguf(const char *path, bb_tensor_hash **per, int *n, int *quantized, uint8_t whole[32]) {
    *per = NULL;
    *n = *quantized = 0;
    bb_gguf *g = NULL;
    BB_CALL(bb_gguf_open(path, &g));
    int64_t nt = bb_gguf_n_tensors(g);
    bb_tensor_hash *list = NULL;
    bb_status st = bb_calloc((void **)&list, (size_t)(nt ? nt : 1), sizeof *list, "tensor hashes");
    for (int64_t i = 0; st == BB_OK && i < nt; i++) {
        const bb_gguf_tensor *t = bb_gguf_tensor_at(g, i);
        const bb_ggml_type_traits *tr = bb_ggml_type_info(t->type);
        *quantized += tr && tr->is_quantized;
        bb_sha256 s;
        /* bytes in the file's order: GGUF is little-endian by definition */
        begin(&s, &list[i], t->name, tr ? tr->name : "?", t->ndim, t->shape);
        bb_sha256_update(&s, t->data, t->nbytes);
        bb_sha256_final(&s, list[i].digest);
    }
    bb_gguf_destroy(&g);
    if (st != BB_OK) {
        free(list);
        return st;
    }
    bb_hash_combine(list, (int)nt, whole);
    *per = list;
    *n = (int)nt;
    return BB_OK;
}

void bb_hash_hex(const uint8_t digest[32], char hex[65]) { bb_sha256_to_hex(digest, hex); }
