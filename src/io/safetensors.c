/* safetensors.c — safetensors header parsing and validation against the file size. */
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bb_safetensors {
    bb_json_doc *doc; /* the header; entry names point into it */
    const bb_json *root;
    long meta_index; /* member index of "__metadata__", -1 if none */
    bb_st_entry *entries;
    size_t n;
    bb_mapped_file mf; /* owned mapping (bb_safetensors_open), else empty */
};

static const struct {
    const char *name;
    bb_dtype dtype;
} known_dtypes[] = {
    {"F64", BB_F64}, {"F32", BB_F32}, {"F16", BB_F16}, {"BF16", BB_BF16}, {"I64", BB_I64},
    {"I32", BB_I32}, {"I16", BB_I16}, {"I8", BB_I8},   {"U8", BB_U8},     {"BOOL", BB_U8},
};

/* Valid safetensors dtypes that have no bb_dtype. */
static const char *const unsupported_dtypes[] = {"U16",     "U32",     "U64",     "F8_E4M3", "F8_E5M2",
                                                 "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",      "C64"};

#define NAME_FMT "%.200s"

static bb_status parse_dtype(const char *what, const char *tname, const bb_json *v, bb_dtype *out) {
    const char *s = bb_json_str(v, NULL);
    BB_CHECK(s, BB_ERR_FORMAT, "%s: tensor " NAME_FMT ": \"dtype\" is %s, expected a string such as \"F32\"", what,
             tname, bb_json_type_name(bb_json_type(v)));
    for (size_t i = 0; i < sizeof known_dtypes / sizeof known_dtypes[0]; i++)
        if (strcmp(s, known_dtypes[i].name) == 0) {
            *out = known_dtypes[i].dtype;
            return BB_OK;
        }
    for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof unsupported_dtypes[0]; i++)
        BB_CHECK(strcmp(s, unsupported_dtypes[i]) != 0, BB_ERR_UNSUPPORTED,
                 "%s: tensor " NAME_FMT ": dtype %s is not supported (F64, F32, F16, BF16, I64, I32, I16, I8, U8, "
                 "BOOL are)",
                 what, tname, s);
    BB_CHECK(0, BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": unknown dtype \"%.32s\" (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 "
             "or BOOL)",
             what, tname, s);
}

/* Fill e from the header entry v; data section is `base` of `data_size` bytes
 * starting at file offset data_start. */
static bb_status parse_entry(const char *what, const char *tname, const bb_json *v, const uint8_t *base,
                             uint64_t data_size, uint64_t data_start, bb_st_entry *e) {
    BB_CHECK(bb_json_type(v) == BB_JSON_OBJECT, BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": header entry is %s, expected an object with dtype, shape and data_offsets", what,
             tname, bb_json_type_name(bb_json_type(v)));
    bb_tensor *t = &e->t;
    memset(t, 0, sizeof *t);
    e->name = tname;
    snprintf(t->name, sizeof t->name, "%s", tname);
    BB_CALL(parse_dtype(what, tname, bb_json_get(v, "dtype"), &t->dtype));

    const bb_json *shape = bb_json_get(v, "shape");
    BB_CHECK(bb_json_type(shape) == BB_JSON_ARRAY, BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": \"shape\" is %s, expected an array of non-negative integers", what, tname,
             bb_json_type_name(bb_json_type(shape)));
    size_t nd = bb_json_len(shape);
    BB_CHECK(nd <= BB_MAX_DIMS, BB_ERR_UNSUPPORTED, "%s: tensor " NAME_FMT ": %zu dimensions, at most %d are supported",
             what, tname, nd, BB_MAX_DIMS);
    size_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        const bb_json *d = bb_json_at(shape, i);
        int64_t x = -1;
        if (bb_json_is_int(d)) BB_CALL(bb_json_int64(d, &x));
        if (x < 0) {
            char found[48];
            if (bb_json_is_int(d))
                snprintf(found, sizeof found, "%lld", (long long)x);
            else
                snprintf(found, sizeof found, "%s", bb_json_type_name(bb_json_type(d)));
            BB_CHECK(0, BB_ERR_FORMAT,
                     "%s: tensor " NAME_FMT ": shape entry %zu is %s, expected a non-negative integer", what, tname, i,
                     found);
        }
        t->shape[i] = x;
        BB_CHECK(!bb_mul_overflow(numel, (size_t)x, &numel), BB_ERR_FORMAT,
                 "%s: tensor " NAME_FMT ": element count of the shape overflows", what, tname);
    }
    t->ndim = (int)nd;
    size_t nbytes;
    BB_CHECK(!bb_mul_overflow(numel, bb_dtype_size(t->dtype), &nbytes), BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": byte size of the shape overflows", what, tname);

    const bb_json *offs = bb_json_get(v, "data_offsets");
    BB_CHECK(bb_json_type(offs) == BB_JSON_ARRAY && bb_json_len(offs) == 2, BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": \"data_offsets\" is %s%s, expected [begin, end]", what, tname,
             bb_json_type_name(bb_json_type(offs)),
             bb_json_type(offs) == BB_JSON_ARRAY
                 ? (bb_json_len(offs) < 2 ? " of fewer than 2 entries" : " of more than 2 entries")
                 : "");
    int64_t be[2] = {-1, -1};
    for (int i = 0; i < 2; i++) {
        const bb_json *d = bb_json_at(offs, (size_t)i);
        if (bb_json_is_int(d)) BB_CALL(bb_json_int64(d, &be[i]));
        if (be[i] < 0) {
            char found[48];
            if (bb_json_is_int(d))
                snprintf(found, sizeof found, "%lld", (long long)be[i]);
            else
                snprintf(found, sizeof found, "%s", bb_json_type_name(bb_json_type(d)));
            BB_CHECK(0, BB_ERR_FORMAT,
                     "%s: tensor " NAME_FMT ": data_offsets %s is %s, expected a non-negative integer", what, tname,
                     i ? "end" : "begin", found);
        }
    }
    uint64_t begin = (uint64_t)be[0], end = (uint64_t)be[1];
    BB_CHECK(begin <= end, BB_ERR_FORMAT, "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] has begin after end",
             what, tname, (unsigned long long)begin, (unsigned long long)end);
    BB_CHECK(end <= data_size, BB_ERR_FORMAT,
             "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] end beyond the %llu bytes of data (file truncated?)",
             what, tname, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != nbytes) {
        char shp[96];
        bb_tensor_shape_str(t, shp, sizeof shp);
        BB_CHECK(0, BB_ERR_FORMAT,
                 "%s: tensor " NAME_FMT ": shape %s of dtype %s needs %zu bytes but data_offsets [%llu, %llu] hold "
                 "%llu",
                 what, tname, shp, bb_json_str(bb_json_get(v, "dtype"), NULL), nbytes, (unsigned long long)begin,
                 (unsigned long long)end, (unsigned long long)(end - begin));
    }
    t->data = base + begin;
    t->nbytes = nbytes;
    t->file_offset = (int64_t)(data_start + begin);
    return BB_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const bb_st_entry *x = *(const bb_st_entry *const *)a, *y = *(const bb_st_entry *const *)b;
    if (x->t.file_offset != y->t.file_offset) return x->t.file_offset < y->t.file_offset ? -1 : 1;
    return x->t.nbytes < y->t.nbytes ? -1 : x->t.nbytes > y->t.nbytes;
}

/* Sorted by begin, a tensor overlaps an earlier one exactly when it starts
 * before the furthest end seen so far. Empty tensors occupy no bytes. */
static bb_status check_overlaps(const char *what, bb_st_entry *entries, size_t n, uint64_t data_start) {
    if (n < 2) return BB_OK;
    bb_st_entry **order;
    BB_CALL(bb_calloc((void **)&order, n, sizeof *order, "safetensors overlap check"));
    for (size_t i = 0; i < n; i++) order[i] = &entries[i];
    qsort(order, n, sizeof *order, cmp_by_offset);
    const bb_st_entry *far = NULL;
    bb_status st = BB_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const bb_st_entry *e = order[i];
        if (e->t.nbytes == 0) continue;
        uint64_t b = (uint64_t)e->t.file_offset - data_start;
        if (far) {
            uint64_t fb = (uint64_t)far->t.file_offset - data_start, fe = fb + far->t.nbytes;
            if (b < fe)
                st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                              "%s: tensor " NAME_FMT ": data_offsets [%llu, %llu] overlap those of tensor " NAME_FMT
                              " [%llu, %llu]",
                              what, e->name, (unsigned long long)b, (unsigned long long)(b + e->t.nbytes), far->name,
                              (unsigned long long)fb, (unsigned long long)fe);
            else if (b + e->t.nbytes > fe)
                far = e;
        } else {
            far = e;
        }
    }
    free(order);
    return st;
}

static bb_status check_metadata(const char *what, const bb_json *meta) {
    BB_CHECK(bb_json_type(meta) == BB_JSON_OBJECT, BB_ERR_FORMAT,
             "%s: \"__metadata__\" is %s, expected an object of strings", what, bb_json_type_name(bb_json_type(meta)));
    for (size_t i = 0; i < bb_json_len(meta); i++)
        BB_CHECK(bb_json_type(bb_json_at(meta, i)) == BB_JSON_STRING, BB_ERR_FORMAT,
                 "%s: \"__metadata__\" key \"%.64s\" is %s, expected a string", what, bb_json_key_at(meta, i, NULL),
                 bb_json_type_name(bb_json_type(bb_json_at(meta, i))));
    return BB_OK;
}

static bb_status build_table(bb_safetensors *st, const uint8_t *data, size_t size, const char *what) {
    BB_CHECK(size >= 8, BB_ERR_FORMAT,
             "%s: file is %zu bytes, shorter than the 8-byte header length (empty or truncated file?)", what, size);
    uint64_t n_header = 0;
    for (int i = 7; i >= 0; i--) n_header = (n_header << 8) | data[i];
    BB_CHECK(n_header <= BB_SAFETENSORS_MAX_HEADER, BB_ERR_FORMAT,
             "%s: header length %llu exceeds the limit of %llu bytes (not a safetensors file?)", what,
             (unsigned long long)n_header, (unsigned long long)BB_SAFETENSORS_MAX_HEADER);
    BB_CHECK(n_header <= (uint64_t)size - 8, BB_ERR_FORMAT,
             "%s: header length %llu goes beyond the %zu bytes after the length field (file truncated or not "
             "safetensors?)",
             what, (unsigned long long)n_header, size - 8);
    char jwhat[1100];
    snprintf(jwhat, sizeof jwhat, "%s header", what);
    BB_CALL(bb_json_parse((const char *)data + 8, (size_t)n_header, jwhat, &st->doc));
    st->root = bb_json_root(st->doc);
    BB_CHECK(bb_json_type(st->root) == BB_JSON_OBJECT, BB_ERR_FORMAT,
             "%s: header is %s, expected a JSON object of tensors", what, bb_json_type_name(bb_json_type(st->root)));
    st->meta_index = bb_json_find(st->root, "__metadata__", 12);
    if (st->meta_index >= 0) BB_CALL(check_metadata(what, bb_json_at(st->root, (size_t)st->meta_index)));
    size_t members = bb_json_len(st->root);
    st->n = members - (st->meta_index >= 0);
    BB_CALL(bb_calloc((void **)&st->entries, st->n, sizeof *st->entries, "safetensors tensor table"));
    uint64_t data_start = 8 + n_header, data_size = (uint64_t)size - data_start;
    for (size_t j = 0, k = 0; j < members; j++) {
        if ((long)j == st->meta_index) continue;
        const char *tname = bb_json_key_at(st->root, j, NULL);
        BB_CALL(parse_entry(what, tname, bb_json_at(st->root, j), data + data_start, data_size, data_start,
                            &st->entries[k++]));
    }
    BB_CALL(check_overlaps(what, st->entries, st->n, data_start));
    return BB_OK;
}

bb_status bb_safetensors_parse(const uint8_t *data, size_t size, const char *what, bb_safetensors **out) {
    *out = NULL;
    BB_CHECK(data || size == 0, BB_ERR_ARG, "bb_safetensors_parse: no data");
    if (!what) what = "safetensors";
    bb_safetensors *st;
    BB_CALL(bb_calloc((void **)&st, 1, sizeof *st, "safetensors table"));
    st->meta_index = -1;
    bb_status s = build_table(st, data, size, what);
    if (s) {
        bb_safetensors_destroy(&st);
        return bb_trace(s, __FILE__, __LINE__, "build_table");
    }
    *out = st;
    return BB_OK;
}

bb_status bb_safetensors_open(const char *path, bb_safetensors **out) {
    *out = NULL;
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status s = bb_safetensors_parse(mf.data, mf.size, path, out);
    if (s) {
        bb_file_unmap(&mf);
        return bb_trace(s, __FILE__, __LINE__, "bb_safetensors_parse");
    }
    (*out)->mf = mf;
    return BB_OK;
}

void bb_safetensors_destroy(bb_safetensors **pst) {
    if (!pst || !*pst) return;
    bb_safetensors *st = *pst;
    bb_json_doc_destroy(&st->doc);
    free(st->entries);
    bb_file_unmap(&st->mf);
    free(st);
    *pst = NULL;
}

size_t bb_safetensors_count(const bb_safetensors *st) { return st ? st->n : 0; }

const bb_st_entry *bb_safetensors_entry(const bb_safetensors *st, size_t i) {
    return st && i < st->n ? &st->entries[i] : NULL;
}

const bb_st_entry *bb_safetensors_find(const bb_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    long j = bb_json_find(st->root, name, strlen(name));
    if (j < 0 || j == st->meta_index) return NULL;
    return &st->entries[j - (st->meta_index >= 0 && j > st->meta_index)];
}

const bb_json *bb_safetensors_metadata(const bb_safetensors *st) {
    return st && st->meta_index >= 0 ? bb_json_at(st->root, (size_t)st->meta_index) : NULL;
}
