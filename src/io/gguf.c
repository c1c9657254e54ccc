/* gguf.c — GGUF v2/v3 reader and the ggml type traits table. */
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

/* Values and tensor bytes are used in place, so the host must share the file's byte order. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF is little-endian; birdbone needs a little-endian host");
/* File sizes and counts are u64; holding them in size_t needs a 64-bit size_t. */
_Static_assert(SIZE_MAX >= UINT64_MAX, "birdbone needs a 64-bit size_t");

#define QK_K 256
static const bb_ggml_type_traits ggml_traits[BB_GGML_TYPE_COUNT] = {
    [BB_GGML_F32] = {.name = "f32", .blck_size = 1, .type_size = 4},
    [BB_GGML_F16] = {.name = "f16", .blck_size = 1, .type_size = 2},
    [BB_GGML_Q4_0] = {.name = "q4_0", .blck_size = 32, .type_size = 2 + 16, .is_quantized = 1},
    [BB_GGML_Q4_1] = {.name = "q4_1", .blck_size = 32, .type_size = 2 + 2 + 16, .is_quantized = 1},
    [BB_GGML_Q5_0] = {.name = "q5_0", .blck_size = 32, .type_size = 2 + 4 + 16, .is_quantized = 1},
    [BB_GGML_Q5_1] = {.name = "q5_1", .blck_size = 32, .type_size = 2 + 2 + 4 + 16, .is_quantized = 1},
    [BB_GGML_Q8_0] = {.name = "q8_0", .blck_size = 32, .type_size = 2 + 32, .is_quantized = 1},
    [BB_GGML_Q8_1] = {.name = "q8_1", .blck_size = 32, .type_size = 4 + 4 + 32, .is_quantized = 1},
    [BB_GGML_Q2_K] = {.name = "q2_K", .blck_size = QK_K, .type_size = 2 + 2 + QK_K / 16 + QK_K / 4, .is_quantized = 1},
    [BB_GGML_Q3_K] = {.name = "q3_K", .blck_size = QK_K, .type_size = 2 + QK_K / 4 + QK_K / 8 + 12, .is_quantized = 1},
    [BB_GGML_Q4_K] = {.name = "q4_K", .blck_size = QK_K, .type_size = 2 + 2 + QK_K / 2 + 12, .is_quantized = 1},
    [BB_GGML_Q5_K] = {.name = "q5_K", .blck_size = QK_K, .type_size = 2 + 2 + QK_K / 2 + QK_K / 8 + 12,
                      .is_quantized = 1},
    [BB_GGML_Q6_K] = {.name = "q6_K", .blck_size = QK_K, .type_size = 2 + QK_K / 2 + QK_K / 4 + QK_K / 16,
                      .is_quantized = 1},
    [BB_GGML_Q8_K] = {.name = "q8_K", .blck_size = QK_K, .type_size = 4 + QK_K + QK_K / 8, .is_quantized = 1},
    [BB_GGML_IQ2_XXS] = {.name = "iq2_xxs", .blck_size = QK_K, .type_size = 2 + QK_K / 4, .is_quantized = 1},
    [BB_GGML_IQ2_XS] = {.name = "iq2_xs", .blck_size = QK_K, .type_size = 2 + QK_K / 4 + QK_K / 32,
                        .is_quantized = 1},
    [BB_GGML_IQ3_XXS] = {.name = "iq3_xxs", .blck_size = QK_K, .type_size = 2 + QK_K / 4 + QK_K / 8,
                         .is_quantized = 1},
    [BB_GGML_IQ1_S] = {.name = "iq1_s", .blck_size = QK_K, .type_size = 2 + QK_K / 8 + QK_K / 16, .is_quantized = 1},
    [BB_GGML_IQ4_NL] = {.name = "iq4_nl", .blck_size = 32, .type_size = 2 + 16, .is_quantized = 1},
    [BB_GGML_IQ3_S] = {.name = "iq3_s", .blck_size = QK_K, .type_size = 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4,
                       .is_quantized = 1},
    [BB_GGML_IQ2_S] = {.name = "iq2_s", .blck_size = QK_K, .type_size = 2 + QK_K / 4 + QK_K / 16, .is_quantized = 1},
    [BB_GGML_IQ4_XS] = {.name = "iq4_xs", .blck_size = QK_K, .type_size = 2 + 2 + QK_K / 2 + QK_K / 64,
                        .is_quantized = 1},
    [BB_GGML_I8] = {.name = "i8", .blck_size = 1, .type_size = 1},
    [BB_GGML_I16] = {.name = "i16", .blck_size = 1, .type_size = 2},
    [BB_GGML_I32] = {.name = "i32", .blck_size = 1, .type_size = 4},
    [BB_GGML_I64] = {.name = "i64", .blck_size = 1, .type_size = 8},
    [BB_GGML_F64] = {.name = "f64", .blck_size = 1, .type_size = 8},
    [BB_GGML_IQ1_M] = {.name = "iq1_m", .blck_size = QK_K, .type_size = QK_K / 8 + QK_K / 16 + QK_K / 32,
                       .is_quantized = 1},
    [BB_GGML_BF16] = {.name = "bf16", .blck_size = 1, .type_size = 2},
    [BB_GGML_TQ1_0] = {.name = "tq1_0", .blck_size = QK_K, .type_size = 2 + 4 * 13, .is_quantized = 1},
    [BB_GGML_TQ2_0] = {.name = "tq2_0", .blck_size = QK_K, .type_size = 2 + 64, .is_quantized = 1},
    [BB_GGML_MXFP4] = {.name = "mxfp4", .blck_size = 32, .type_size = 1 + 16, .is_quantized = 1},
    [BB_GGML_NVFP4] = {.name = "nvfp4", .blck_size = 64, .type_size = 4 + 32, .is_quantized = 1},
    [BB_GGML_Q1_0] = {.name = "q1_0", .blck_size = 128, .type_size = 2 + 16, .is_quantized = 1},
};

const bb_ggml_type_traits *bb_ggml_type_info(int type) {
    if (type < 0 || type >= BB_GGML_TYPE_COUNT || !ggml_traits[type].name) return NULL;
    return &ggml_traits[type];
}

const char *bb_ggml_type_name(int type) {
    const bb_ggml_type_traits *t = bb_ggml_type_info(type);
    return t ? t->name : "?";
}

bb_status bb_ggml_row_size(int type, int64_t n, const char *what, size_t *out) {
    const bb_ggml_type_traits *t = bb_ggml_type_info(type);
    BB_CHECK(t, BB_ERR_ARG, "%s: unknown ggml type id %d", what, type);
    BB_CHECK(n >= 0 && n % t->blck_size == 0, BB_ERR_ARG,
             "%s: %lld elements are not a multiple of the %s block size %d", what, (long long)n, t->name,
             t->blck_size);
    BB_CHECK(!bb_mul_overflow((size_t)(n / t->blck_size), (size_t)t->type_size, out), BB_ERR_ARG,
             "%s: byte size overflows", what);
    return BB_OK;
}

static const char *const value_type_names[BB_GGUF_TYPE_COUNT] = {
    [BB_GGUF_UINT8] = "uint8",     [BB_GGUF_INT8] = "int8",     [BB_GGUF_UINT16] = "uint16",
    [BB_GGUF_INT16] = "int16",     [BB_GGUF_UINT32] = "uint32", [BB_GGUF_INT32] = "int32",
    [BB_GGUF_FLOAT32] = "float32", [BB_GGUF_BOOL] = "bool",     [BB_GGUF_STRING] = "string",
    [BB_GGUF_ARRAY] = "array",     [BB_GGUF_UINT64] = "uint64", [BB_GGUF_INT64] = "int64",
    [BB_GGUF_FLOAT64] = "float64",
};

const char *bb_gguf_type_name(bb_gguf_type t) {
    return (int)t >= 0 && t < BB_GGUF_TYPE_COUNT ? value_type_names[t] : "?";
}

/* Bytes of one fixed-size value; 0 for string and array. */
static size_t value_size(uint32_t t) {
    switch (t) {
    case BB_GGUF_UINT8: case BB_GGUF_INT8: case BB_GGUF_BOOL: return 1;
    case BB_GGUF_UINT16: case BB_GGUF_INT16: return 2;
    case BB_GGUF_UINT32: case BB_GGUF_INT32: case BB_GGUF_FLOAT32: return 4;
    case BB_GGUF_UINT64: case BB_GGUF_INT64: case BB_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

typedef struct {
    char *key;           /* NUL-terminated copy */
    bb_gguf_type type;
    size_t raw_off;      /* file offset of the u32 type field */
    size_t raw_len;      /* type field + value bytes (what bb_gguf_writer_copy_kv copies) */
    size_t val_off;      /* file offset of the value */
    bb_gguf_type arr_type;
    uint64_t arr_n;
    size_t arr_off;      /* file offset of the first element */
    size_t *str_offs;    /* string arrays: file offset of each element's length field */
} gguf_kv;

struct bb_gguf {
    char what[1024];
    const uint8_t *data;
    size_t size;
    bb_mapped_file mf; /* owned mapping (bb_gguf_open), else empty */
    uint32_t version;
    uint32_t alignment;
    size_t data_offset;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    bb_gguf_tensor *tensors;
};

/* ---- cursor over the file bytes: every read is checked against what is left ---- */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *what;
} cursor;

static bb_status take(cursor *c, size_t n, const char *ctx, const uint8_t **at) {
    BB_CHECK(n <= c->size - c->pos, BB_ERR_FORMAT,
             "%s: file is truncated: %s needs %zu bytes at offset %zu but only %zu remain", c->what, ctx, n, c->pos,
             c->size - c->pos);
    *at = c->p + c->pos;
    c->pos += n;
    return BB_OK;
}

static bb_status rd_u32(cursor *c, const char *ctx, uint32_t *v) {
    const uint8_t *at = NULL;
    BB_CALL(take(c, 4, ctx, &at));
    memcpy(v, at, 4);
    return BB_OK;
}

static bb_status rd_u64(cursor *c, const char *ctx, uint64_t *v) {
    const uint8_t *at = NULL;
    BB_CALL(take(c, 8, ctx, &at));
    memcpy(v, at, 8);
    return BB_OK;
}

static bb_status rd_str(cursor *c, const char *ctx, bb_gguf_str *s) {
    uint64_t len = 0;
    BB_CALL(rd_u64(c, ctx, &len));
    BB_CHECK(len <= c->size - c->pos, BB_ERR_FORMAT,
             "%s: %s has a string length of %llu bytes at offset %zu but only %zu bytes remain", c->what, ctx,
             (unsigned long long)len, c->pos - 8, c->size - c->pos);
    s->s = (const char *)c->p + c->pos;
    s->len = (size_t)len;
    c->pos += (size_t)len;
    return BB_OK;
}

/* A key or tensor name as a C string: no NUL inside, at most max-1 bytes. */
static bb_status name_copy(const cursor *c, const bb_gguf_str *s, size_t max, const char *kind, char **out) {
    *out = NULL;
    BB_CHECK(s->len > 0, BB_ERR_FORMAT, "%s: empty %s at offset %zu", c->what, kind, c->pos);
    BB_CHECK(s->len < max, BB_ERR_FORMAT, "%s: %s \"%.40s...\" is %zu bytes long (at most %zu allowed)", c->what,
             kind, s->s, s->len, max - 1);
    BB_CHECK(!memchr(s->s, '\0', s->len), BB_ERR_FORMAT, "%s: %s at offset %zu contains a NUL byte", c->what, kind,
             c->pos);
    BB_CALL(bb_malloc((void **)out, s->len + 1, "GGUF name"));
    memcpy(*out, s->s, s->len);
    (*out)[s->len] = '\0';
    return BB_OK;
}

/* Skip one value of type t, checking every length against the bytes left. */
static bb_status skip_value(cursor *c, uint32_t t, int depth, const char *key) {
    BB_CHECK(t < BB_GGUF_TYPE_COUNT, BB_ERR_FORMAT, "%s: key %s has unknown value type %u", c->what, key, t);
    const uint8_t *at = NULL;
    if (t == BB_GGUF_STRING) {
        bb_gguf_str s;
        return rd_str(c, key, &s);
    }
    if (t != BB_GGUF_ARRAY) return take(c, value_size(t), key, &at);
    BB_CHECK(depth < BB_GGUF_MAX_ARRAY_DEPTH, BB_ERR_FORMAT, "%s: key %s nests arrays deeper than %d levels", c->what,
             key, BB_GGUF_MAX_ARRAY_DEPTH);
    uint32_t et = 0;
    uint64_t n = 0;
    BB_CALL(rd_u32(c, key, &et));
    BB_CALL(rd_u64(c, key, &n));
    BB_CHECK(et < BB_GGUF_TYPE_COUNT, BB_ERR_FORMAT, "%s: key %s is an array of unknown type %u", c->what, key, et);
    size_t es = value_size(et);
    if (es) {
        BB_CHECK(n <= (c->size - c->pos) / es, BB_ERR_FORMAT,
                 "%s: key %s holds %llu %s elements but only %zu bytes remain", c->what, key, (unsigned long long)n,
                 value_type_names[et], c->size - c->pos);
        c->pos += (size_t)n * es;
        return BB_OK;
    }
    /* Strings and arrays take at least 8 bytes each, so this loop ends within the file. */
    for (uint64_t i = 0; i < n; i++) BB_CALL(skip_value(c, et, depth + 1, key));
    return BB_OK;
}

static bb_status parse_kv(cursor *c, gguf_kv *kv) {
    bb_gguf_str ks;
    BB_CALL(rd_str(c, "metadata key", &ks));
    BB_CALL(name_copy(c, &ks, 65536, "metadata key", &kv->key));
    kv->raw_off = c->pos;
    uint32_t t = 0;
    BB_CALL(rd_u32(c, kv->key, &t));
    BB_CHECK(t < BB_GGUF_TYPE_COUNT, BB_ERR_FORMAT, "%s: key %s has unknown value type %u", c->what, kv->key, t);
    kv->type = (bb_gguf_type)t;
    kv->val_off = c->pos;
    kv->arr_type = BB_GGUF_TYPE_COUNT;
    if (t == BB_GGUF_ARRAY) {
        uint32_t et = 0;
        BB_CALL(rd_u32(c, kv->key, &et));
        BB_CALL(rd_u64(c, kv->key, &kv->arr_n));
        BB_CHECK(et < BB_GGUF_TYPE_COUNT, BB_ERR_FORMAT, "%s: key %s is an array of unknown type %u", c->what,
                 kv->key, et);
        kv->arr_type = (bb_gguf_type)et;
        kv->arr_off = c->pos;
        c->pos = kv->val_off;
        if (et == BB_GGUF_STRING) {
            /* Each string needs its 8-byte length, which bounds the index size by the file size. */
            BB_CHECK(kv->arr_n <= (c->size - kv->arr_off) / 8, BB_ERR_FORMAT,
                     "%s: key %s holds %llu strings but only %zu bytes remain", c->what, kv->key,
                     (unsigned long long)kv->arr_n, c->size - kv->arr_off);
            BB_CALL(bb_calloc((void **)&kv->str_offs, kv->arr_n ? (size_t)kv->arr_n : 1, sizeof(size_t),
                              "GGUF string array index"));
            c->pos = kv->arr_off;
            for (uint64_t i = 0; i < kv->arr_n; i++) {
                bb_gguf_str s;
                kv->str_offs[i] = c->pos;
                BB_CALL(rd_str(c, kv->key, &s));
            }
        } else {
            BB_CALL(skip_value(c, t, 0, kv->key));
        }
    } else {
        BB_CALL(skip_value(c, t, 0, kv->key));
    }
    kv->raw_len = c->pos - kv->raw_off;
    return BB_OK;
}

static int64_t find_key(const bb_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return i;
    return -1;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorting a scratch list of names finds duplicates in n log n, which matters for hostile
 * files with millions of tiny keys. */
static bb_status check_unique(const bb_gguf *g, const char **names, int64_t n, const char *kind) {
    qsort(names, (size_t)n, sizeof *names, cmp_str_ptr);
    for (int64_t i = 1; i < n; i++)
        BB_CHECK(strcmp(names[i - 1], names[i]) != 0, BB_ERR_FORMAT, "%s: %s %s appears more than once", g->what,
                 kind, names[i]);
    return BB_OK;
}

static bb_status parse_alignment(bb_gguf *g) {
    g->alignment = BB_GGUF_DEFAULT_ALIGNMENT;
    if (find_key(g, "general.alignment") < 0) return BB_OK;
    BB_CALL(bb_gguf_get_u32(g, "general.alignment", &g->alignment));
    BB_CHECK(g->alignment != 0 && (g->alignment & (g->alignment - 1)) == 0, BB_ERR_FORMAT,
             "%s: general.alignment is %u; it must be a nonzero power of two", g->what, g->alignment);
    return BB_OK;
}

static bb_status parse_tensor_info(bb_gguf *g, cursor *c, bb_gguf_tensor *t) {
    bb_gguf_str ns;
    char *name;
    BB_CALL(rd_str(c, "tensor name", &ns));
    BB_CALL(name_copy(c, &ns, BB_GGUF_NAME_MAX, "tensor name", &name));
    memcpy(t->name, name, ns.len + 1);
    free(name);
    uint32_t nd = 0;
    BB_CALL(rd_u32(c, t->name, &nd));
    BB_CHECK(nd >= 1 && nd <= BB_GGUF_MAX_DIMS, BB_ERR_FORMAT, "%s: tensor %s has %u dimensions (1..%d supported)",
             g->what, t->name, nd, BB_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t ne[BB_GGUF_MAX_DIMS];
    for (uint32_t i = 0; i < nd; i++) {
        BB_CALL(rd_u64(c, t->name, &ne[i]));
        BB_CHECK(ne[i] >= 1 && ne[i] <= (uint64_t)INT64_MAX, BB_ERR_FORMAT,
                 "%s: tensor %s has dimension %u of size %llu", g->what, t->name, i, (unsigned long long)ne[i]);
        t->shape[nd - 1 - i] = (int64_t)ne[i];
    }
    uint32_t type = 0;
    BB_CALL(rd_u32(c, t->name, &type));
    t->type = (int)type;
    const bb_ggml_type_traits *tr = bb_ggml_type_info(t->type);
    BB_CHECK(tr, BB_ERR_FORMAT, "%s: tensor %s has unknown ggml type id %u", g->what, t->name, type);
    BB_CHECK(ne[0] % (uint64_t)tr->blck_size == 0, BB_ERR_FORMAT,
             "%s: tensor %s has rows of %llu elements, not a multiple of the %s block size %d", g->what, t->name,
             (unsigned long long)ne[0], tr->name, tr->blck_size);
    size_t nb;
    BB_CHECK(!bb_mul_overflow((size_t)(ne[0] / (uint64_t)tr->blck_size), (size_t)tr->type_size, &nb),
             BB_ERR_FORMAT, "%s: tensor %s is too large", g->what, t->name);
    for (uint32_t i = 1; i < nd; i++)
        BB_CHECK(!bb_mul_overflow(nb, (size_t)ne[i], &nb), BB_ERR_FORMAT,
                 "%s: tensor %s is too large", g->what, t->name);
    t->nbytes = nb;
    BB_CALL(rd_u64(c, t->name, &t->offset));
    BB_CHECK(t->offset % g->alignment == 0, BB_ERR_FORMAT,
             "%s: tensor %s has data offset %llu, not a multiple of the alignment %u", g->what, t->name,
             (unsigned long long)t->offset, g->alignment);
    return BB_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const bb_gguf_tensor *x = *(const bb_gguf_tensor *const *)a, *y = *(const bb_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensor bytes must lie inside the file and not overlap. */
static bb_status check_tensor_data(bb_gguf *g) {
    size_t avail = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        bb_gguf_tensor *t = &g->tensors[i];
        BB_CHECK(t->offset <= avail && t->nbytes <= avail - t->offset, BB_ERR_FORMAT,
                 "%s: tensor %s needs bytes [%llu, %llu) of the data section but it holds only %zu (file truncated?)",
                 g->what, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), avail);
        t->data = g->data + g->data_offset + t->offset;
    }
    const bb_gguf_tensor **order;
    BB_CALL(bb_calloc((void **)&order, (size_t)g->n_tensors, sizeof *order, "GGUF tensor order"));
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_offset);
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const bb_gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset) {
            bb_status st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                                    "%s: tensors %s [%llu, %llu) and %s [%llu, ...) overlap in the data section",
                                    g->what, a->name, (unsigned long long)a->offset,
                                    (unsigned long long)(a->offset + a->nbytes), b->name,
                                    (unsigned long long)b->offset);
            free(order);
            return st;
        }
    }
    free(order);
    return BB_OK;
}

static bb_status parse(bb_gguf *g) {
    cursor c = {.p = g->data, .size = g->size, .pos = 0, .what = g->what};
    BB_CHECK(g->size >= 4 && memcmp(g->data, "GGUF", 4) == 0, BB_ERR_FORMAT,
             "%s: not a GGUF file (it does not start with the magic \"GGUF\")", g->what);
    c.pos = 4;
    BB_CALL(rd_u32(&c, "version", &g->version));
    BB_CHECK(g->version != 1, BB_ERR_UNSUPPORTED,
             "%s: GGUF version 1 is not supported (it used 32-bit sizes); convert the model again with a current "
             "llama.cpp",
             g->what);
    /* A big-endian file's small version number lands in the high bytes. */
    BB_CHECK((g->version & 0xffff) != 0 || g->version == 0, BB_ERR_UNSUPPORTED,
             "%s: GGUF version field 0x%08x looks byte-swapped: big-endian GGUF files are not supported", g->what,
             g->version);
    BB_CHECK(g->version == 2 || g->version == 3, BB_ERR_FORMAT,
             "%s: GGUF version %u is not supported (expected 2 or 3)", g->what, g->version);
    uint64_t nt = 0, nkv = 0;
    BB_CALL(rd_u64(&c, "tensor count", &nt));
    BB_CALL(rd_u64(&c, "metadata key count", &nkv));
    /* The smallest key/value takes 8 (key length) + 1 (key) + 4 (type) + 1 (uint8) bytes and the
     * smallest tensor info 8 + 1 + 4 + 8 + 4 + 8: a count beyond that cannot be real. */
    size_t left = g->size - c.pos;
    BB_CHECK(nkv <= left / 14, BB_ERR_FORMAT,
             "%s: metadata key count %llu cannot fit in the %zu bytes that follow the header", g->what,
             (unsigned long long)nkv, left);
    BB_CHECK(nt <= left / 33, BB_ERR_FORMAT,
             "%s: tensor count %llu cannot fit in the %zu bytes that follow the header", g->what,
             (unsigned long long)nt, left);
    BB_CALL(bb_calloc((void **)&g->kv, nkv ? (size_t)nkv : 1, sizeof *g->kv, "GGUF metadata table"));
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1; /* counts the entry being parsed, so destroy frees its parts */
        BB_CALL(parse_kv(&c, &g->kv[i]));
    }
    g->n_kv = (int64_t)nkv;
    const char **names;
    size_t nn = (size_t)(nkv > nt ? nkv : nt);
    BB_CALL(bb_calloc((void **)&names, nn ? nn : 1, sizeof *names, "GGUF name list"));
    for (int64_t i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    bb_status st = check_unique(g, names, g->n_kv, "metadata key");
    if (st == BB_OK) st = parse_alignment(g);
    if (st == BB_OK) st = bb_calloc((void **)&g->tensors, nt ? (size_t)nt : 1, sizeof *g->tensors, "GGUF tensors");
    for (uint64_t i = 0; st == BB_OK && i < nt; i++) {
        st = parse_tensor_info(g, &c, &g->tensors[i]);
        g->n_tensors = (int64_t)i + 1;
    }
    for (int64_t i = 0; st == BB_OK && i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    if (st == BB_OK) st = check_unique(g, names, g->n_tensors, "tensor");
    free(names);
    if (st) return bb_trace(st, __FILE__, __LINE__, "parse");
    size_t a = g->alignment;
    BB_CHECK(c.pos <= SIZE_MAX - (a - 1), BB_ERR_FORMAT, "%s: header is too large", g->what);
    g->data_offset = (c.pos + a - 1) / a * a;
    /* A file without tensors may end right after its metadata, without the padding. */
    if (g->n_tensors == 0 && g->data_offset > g->size) g->data_offset = g->size;
    BB_CHECK(g->data_offset <= g->size, BB_ERR_FORMAT,
             "%s: file is truncated: the data section should start at byte %zu but the file has %zu bytes", g->what,
             g->data_offset, g->size);
    BB_CALL(check_tensor_data(g));
    return BB_OK;
}

bb_status bb_gguf_open_memory(const void *data, size_t size, const char *what, bb_gguf **out) {
    *out = NULL;
    bb_gguf *g;
    BB_CALL(bb_calloc((void **)&g, 1, sizeof *g, "GGUF reader"));
    snprintf(g->what, sizeof g->what, "%s", what ? what : "GGUF buffer");
    g->data = data;
    g->size = data ? size : 0;
    bb_status st = parse(g);
    if (st) {
        bb_gguf_destroy(&g);
        return bb_trace(st, __FILE__, __LINE__, "bb_gguf_open_memory");
    }
    *out = g;
    return BB_OK;
}

bb_status bb_gguf_open(const char *path, bb_gguf **out) {
    *out = NULL;
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status st = bb_gguf_open_memory(mf.data, mf.size, path, out);
    if (st) {
        bb_file_unmap(&mf);
        return bb_trace(st, __FILE__, __LINE__, "bb_gguf_open_memory");
    }
    (*out)->mf = mf;
    return BB_OK;
}

void bb_gguf_destroy(bb_gguf **pg) {
    if (!pg || !*pg) return;
    bb_gguf *g = *pg;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_offs);
    }
    free(g->kv);
    free(g->tensors);
    bb_file_unmap(&g->mf);
    free(g);
    *pg = NULL;
}

const char *bb_gguf_what(const bb_gguf *g) { return g->what; }
uint32_t bb_gguf_version(const bb_gguf *g) { return g->version; }
uint32_t bb_gguf_alignment(const bb_gguf *g) { return g->alignment; }
uint64_t bb_gguf_data_offset(const bb_gguf *g) { return g->data_offset; }

/* ---- metadata access ---- */

int64_t bb_gguf_n_kv(const bb_gguf *g) { return g->n_kv; }
int64_t bb_gguf_find_key(const bb_gguf *g, const char *key) { return find_key(g, key); }
const char *bb_gguf_key_name(const bb_gguf *g, int64_t id) { return id >= 0 && id < g->n_kv ? g->kv[id].key : NULL; }

bb_gguf_type bb_gguf_kv_type(const bb_gguf *g, int64_t id) {
    return id >= 0 && id < g->n_kv ? g->kv[id].type : BB_GGUF_TYPE_COUNT;
}

bb_gguf_type bb_gguf_arr_type(const bb_gguf *g, int64_t id) {
    return id >= 0 && id < g->n_kv ? g->kv[id].arr_type : BB_GGUF_TYPE_COUNT;
}

uint64_t bb_gguf_arr_len(const bb_gguf *g, int64_t id) {
    return id >= 0 && id < g->n_kv && g->kv[id].type == BB_GGUF_ARRAY ? g->kv[id].arr_n : 0;
}

/* "string" or "array of string", for type mismatch messages. */
static const char *found_name(const gguf_kv *kv, char *buf, size_t n) {
    if (kv->type != BB_GGUF_ARRAY) return bb_gguf_type_name(kv->type);
    snprintf(buf, n, "array of %s", bb_gguf_type_name(kv->arr_type));
    return buf;
}

static bb_status lookup(const bb_gguf *g, const char *key, const gguf_kv **out) {
    int64_t id = find_key(g, key);
    BB_CHECK(id >= 0, BB_ERR_FORMAT, "%s: key %s is missing", g->what, key);
    *out = &g->kv[id];
    return BB_OK;
}

static bb_status get_scalar(const bb_gguf *g, const char *key, bb_gguf_type want, void *out) {
    const gguf_kv *kv;
    BB_CALL(lookup(g, key, &kv));
    char buf[48];
    BB_CHECK(kv->type == want, BB_ERR_FORMAT, "%s: %s: expected %s, found %s", g->what, key, bb_gguf_type_name(want),
             found_name(kv, buf, sizeof buf));
    memcpy(out, g->data + kv->val_off, value_size(want));
    return BB_OK;
}

bb_status bb_gguf_get_u8(const bb_gguf *g, const char *k, uint8_t *o) { return get_scalar(g, k, BB_GGUF_UINT8, o); }
bb_status bb_gguf_get_i8(const bb_gguf *g, const char *k, int8_t *o) { return get_scalar(g, k, BB_GGUF_INT8, o); }
bb_status bb_gguf_get_u16(const bb_gguf *g, const char *k, uint16_t *o) { return get_scalar(g, k, BB_GGUF_UINT16, o); }
bb_status bb_gguf_get_i16(const bb_gguf *g, const char *k, int16_t *o) { return get_scalar(g, k, BB_GGUF_INT16, o); }
bb_status bb_gguf_get_u32(const bb_gguf *g, const char *k, uint32_t *o) { return get_scalar(g, k, BB_GGUF_UINT32, o); }
bb_status bb_gguf_get_i32(const bb_gguf *g, const char *k, int32_t *o) { return get_scalar(g, k, BB_GGUF_INT32, o); }
bb_status bb_gguf_get_u64(const bb_gguf *g, const char *k, uint64_t *o) { return get_scalar(g, k, BB_GGUF_UINT64, o); }
bb_status bb_gguf_get_i64(const bb_gguf *g, const char *k, int64_t *o) { return get_scalar(g, k, BB_GGUF_INT64, o); }
bb_status bb_gguf_get_f32(const bb_gguf *g, const char *k, float *o) { return get_scalar(g, k, BB_GGUF_FLOAT32, o); }
bb_status bb_gguf_get_f64(const bb_gguf *g, const char *k, double *o) { return get_scalar(g, k, BB_GGUF_FLOAT64, o); }

bb_status bb_gguf_get_bool(const bb_gguf *g, const char *key, int *out) {
    uint8_t b;
    BB_CALL(get_scalar(g, key, BB_GGUF_BOOL, &b));
    *out = b != 0;
    return BB_OK;
}

bb_status bb_gguf_get_str(const bb_gguf *g, const char *key, bb_gguf_str *out) {
    const gguf_kv *kv;
    BB_CALL(lookup(g, key, &kv));
    char buf[48];
    BB_CHECK(kv->type == BB_GGUF_STRING, BB_ERR_FORMAT, "%s: %s: expected string, found %s", g->what, key,
             found_name(kv, buf, sizeof buf));
    uint64_t len = 0;
    memcpy(&len, g->data + kv->val_off, 8);
    out->s = (const char *)g->data + kv->val_off + 8;
    out->len = (size_t)len;
    return BB_OK;
}

/* One integer element of type t at p as int64; -1 if t is not an integer type or the value
 * does not fit. */
static int int_at(bb_gguf_type t, const uint8_t *p, int64_t *v) {
    switch (t) {
    case BB_GGUF_UINT8: case BB_GGUF_BOOL: *v = p[0]; return 0;
    case BB_GGUF_INT8: { int8_t x; memcpy(&x, p, 1); *v = x; return 0; }
    case BB_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = x; return 0; }
    case BB_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *v = x; return 0; }
    case BB_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *v = x; return 0; }
    case BB_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *v = x; return 0; }
    case BB_GGUF_INT64: memcpy(v, p, 8); return 0;
    case BB_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) return -1;
        *v = (int64_t)x;
        return 0;
    }
    default: return -1;
    }
}

bb_status bb_gguf_get_int(const bb_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv;
    BB_CALL(lookup(g, key, &kv));
    char buf[48];
    BB_CHECK(kv->type != BB_GGUF_BOOL && kv->type != BB_GGUF_ARRAY && value_size(kv->type) &&
                 kv->type != BB_GGUF_FLOAT32 && kv->type != BB_GGUF_FLOAT64,
             BB_ERR_FORMAT, "%s: %s: expected an integer, found %s", g->what, key, found_name(kv, buf, sizeof buf));
    BB_CHECK(int_at(kv->type, g->data + kv->val_off, out) == 0, BB_ERR_FORMAT, "%s: %s: value is too large", g->what,
             key);
    return BB_OK;
}

bb_status bb_gguf_get_float(const bb_gguf *g, const char *key, double *out) {
    const gguf_kv *kv;
    BB_CALL(lookup(g, key, &kv));
    char buf[48];
    if (kv->type == BB_GGUF_FLOAT32) {
        float f;
        memcpy(&f, g->data + kv->val_off, 4);
        *out = f;
        return BB_OK;
    }
    BB_CHECK(kv->type == BB_GGUF_FLOAT64, BB_ERR_FORMAT, "%s: %s: expected float32 or float64, found %s", g->what, key,
             found_name(kv, buf, sizeof buf));
    memcpy(out, g->data + kv->val_off, 8);
    return BB_OK;
}

static bb_status lookup_arr(const bb_gguf *g, const char *key, bb_gguf_type elem, const gguf_kv **out) {
    BB_CALL(lookup(g, key, out));
    const gguf_kv *kv = *out;
    char buf[48];
    if (elem == BB_GGUF_TYPE_COUNT)
        BB_CHECK(kv->type == BB_GGUF_ARRAY, BB_ERR_FORMAT, "%s: %s: expected an array, found %s", g->what, key,
                 found_name(kv, buf, sizeof buf));
    else
        BB_CHECK(kv->type == BB_GGUF_ARRAY && kv->arr_type == elem, BB_ERR_FORMAT,
                 "%s: %s: expected array of %s, found %s", g->what, key, bb_gguf_type_name(elem),
                 found_name(kv, buf, sizeof buf));
    return BB_OK;
}

bb_status bb_gguf_get_arr(const bb_gguf *g, const char *key, bb_gguf_type elem, uint64_t *n) {
    const gguf_kv *kv;
    BB_CALL(lookup_arr(g, key, elem, &kv));
    *n = kv->arr_n;
    return BB_OK;
}

bb_status bb_gguf_get_arr_str(const bb_gguf *g, const char *key, uint64_t i, bb_gguf_str *out) {
    const gguf_kv *kv;
    BB_CALL(lookup_arr(g, key, BB_GGUF_STRING, &kv));
    BB_CHECK(i < kv->arr_n, BB_ERR_ARG, "%s: %s: index %llu is beyond its %llu strings", g->what, key,
             (unsigned long long)i, (unsigned long long)kv->arr_n);
    uint64_t len = 0;
    memcpy(&len, g->data + kv->str_offs[i], 8);
    out->s = (const char *)g->data + kv->str_offs[i] + 8;
    out->len = (size_t)len;
    return BB_OK;
}

static bb_status check_range(const bb_gguf *g, const char *key, const gguf_kv *kv, uint64_t start, uint64_t n) {
    BB_CHECK(start <= kv->arr_n && n <= kv->arr_n - start, BB_ERR_ARG,
             "%s: %s: elements [%llu, %llu) are beyond its %llu elements", g->what, key, (unsigned long long)start,
             (unsigned long long)(start + n), (unsigned long long)kv->arr_n);
    return BB_OK;
}

bb_status bb_gguf_get_arr_f32(const bb_gguf *g, const char *key, uint64_t start, uint64_t n, float *out) {
    const gguf_kv *kv;
    BB_CALL(lookup_arr(g, key, BB_GGUF_TYPE_COUNT, &kv));
    char buf[48];
    BB_CHECK(kv->arr_type == BB_GGUF_FLOAT32 || kv->arr_type == BB_GGUF_FLOAT64, BB_ERR_FORMAT,
             "%s: %s: expected array of float32, found %s", g->what, key, found_name(kv, buf, sizeof buf));
    BB_CALL(check_range(g, key, kv, start, n));
    const uint8_t *p = g->data + kv->arr_off;
    if (kv->arr_type == BB_GGUF_FLOAT32) {
        memcpy(out, p + start * 4, (size_t)n * 4);
        return BB_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, p + (start + i) * 8, 8);
        out[i] = (float)d;
    }
    return BB_OK;
}

bb_status bb_gguf_get_arr_int(const bb_gguf *g, const char *key, uint64_t start, uint64_t n, int64_t *out) {
    const gguf_kv *kv;
    BB_CALL(lookup_arr(g, key, BB_GGUF_TYPE_COUNT, &kv));
    char buf[48];
    size_t es = value_size(kv->arr_type);
    BB_CHECK(es && kv->arr_type != BB_GGUF_FLOAT32 && kv->arr_type != BB_GGUF_FLOAT64, BB_ERR_FORMAT,
             "%s: %s: expected array of integers, found %s", g->what, key, found_name(kv, buf, sizeof buf));
    BB_CALL(check_range(g, key, kv, start, n));
    const uint8_t *p = g->data + kv->arr_off;
    for (uint64_t i = 0; i < n; i++)
        BB_CHECK(int_at(kv->arr_type, p + (start + i) * es, &out[i]) == 0, BB_ERR_FORMAT,
                 "%s: %s: element %llu is too large for int64", g->what, key, (unsigned long long)(start + i));
    return BB_OK;
}

bb_status bb_gguf_kv_raw(const bb_gguf *g, int64_t id, const char **key, const void **raw, size_t *n) {
    BB_CHECK(id >= 0 && id < g->n_kv, BB_ERR_ARG, "%s: metadata index %lld is out of range (%lld keys)", g->what,
             (long long)id, (long long)g->n_kv);
    *key = g->kv[id].key;
    *raw = g->data + g->kv[id].raw_off;
    *n = g->kv[id].raw_len;
    return BB_OK;
}

/* ---- tensors ---- */

int64_t bb_gguf_n_tensors(const bb_gguf *g) { return g->n_tensors; }

int64_t bb_gguf_find_tensor(const bb_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}

const bb_gguf_tensor *bb_gguf_tensor_at(const bb_gguf *g, int64_t id) {
    return id >= 0 && id < g->n_tensors ? &g->tensors[id] : NULL;
}
