/* tensor.c — tensor handles and row reads. */
#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

int64_t bb_tensor_numel(const bb_tensor *t) {
    if (t->ndim <= 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t bb_tensor_cols(const bb_tensor *t) { return t->ndim > 0 ? t->shape[t->ndim - 1] : 0; }

int64_t bb_tensor_rows(const bb_tensor *t) {
    if (t->ndim <= 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim - 1; i++) n *= t->shape[i];
    return n;
}

bb_status bb_tensor_init_memory(bb_tensor *t, const char *name, bb_dtype dtype, int ndim, const int64_t *shape,
                                const void *data, size_t nbytes) {
    BB_CHECK(ndim >= 1 && ndim <= BB_MAX_DIMS, BB_ERR_ARG, "tensor %s: %d dimensions (1..%d supported)", name, ndim,
             BB_MAX_DIMS);
    BB_CHECK(bb_dtype_info(dtype), BB_ERR_ARG, "tensor %s: unknown dtype %d", name, (int)dtype);
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        BB_CHECK(shape[i] > 0, BB_ERR_FORMAT, "tensor %s: dimension %d is %lld (must be positive)", name, i,
                 (long long)shape[i]);
        t->shape[i] = shape[i];
        BB_CHECK(!bb_mul_overflow(n, (size_t)shape[i], &n), BB_ERR_FORMAT, "tensor %s: element count overflows", name);
    }
    size_t want;
    BB_CHECK(!bb_mul_overflow(n, bb_dtype_size(dtype), &want), BB_ERR_FORMAT, "tensor %s: byte size overflows", name);
    BB_CHECK(want == nbytes, BB_ERR_FORMAT, "tensor %s: shape and dtype %s need %zu bytes but %zu are stored", name,
             bb_dtype_name(dtype), want, nbytes);
    t->data = data;
    t->nbytes = nbytes;
    t->file_offset = -1;
    return BB_OK;
}

bb_status bb_tensor_read_f32(const bb_tensor *t, int64_t row0, int64_t nrows, float *out) {
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    BB_CHECK(row0 >= 0 && nrows >= 0 && row0 + nrows <= rows, BB_ERR_ARG,
             "tensor %s: rows [%lld, %lld) are outside its %lld rows", t->name, (long long)row0,
             (long long)(row0 + nrows), (long long)rows);
    if (t->gen) return t->gen(t, row0, nrows, out);
    BB_CHECK(t->data, BB_ERR_INTERNAL, "tensor %s has no storage", t->name);
    size_t es = bb_dtype_size(t->dtype);
    const unsigned char *src = (const unsigned char *)t->data + (size_t)row0 * (size_t)cols * es;
    BB_CHECK(bb_convert_to_f32(t->dtype, src, (size_t)(nrows * cols), out) == 0, BB_ERR_UNSUPPORTED,
             "tensor %s: dtype %s cannot be read as floating point", t->name, bb_dtype_name(t->dtype));
    return BB_OK;
}

void bb_tensor_shape_str(const bb_tensor *t, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "(");
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (off < n) snprintf(buf + off, n - off, ")");
}
