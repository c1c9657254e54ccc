/* mask.c — bit-packed pruning masks: create/copy, counts, pack/unpack, application to weights. */
#include "compress/mask.h"

#include <stdlib.h>
#include <string.h>

bb_status bb_mask_create(int64_t rows, int64_t cols, int keep_all, bb_mask **out) {
    *out = NULL;
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "mask: bad shape (%lld, %lld)", (long long)rows, (long long)cols);
    int64_t wpr = (cols + 63) / 64;
    size_t nwords;
    BB_CHECK(!bb_mul_overflow((size_t)rows, (size_t)wpr, &nwords) && nwords < ((size_t)1 << 60), BB_ERR_ARG,
             "mask: shape (%lld, %lld) is too large", (long long)rows, (long long)cols);
    bb_mask *m = NULL;
    BB_CALL(bb_calloc((void **)&m, 1, sizeof *m, "mask handle"));
    bb_status st = bb_calloc((void **)&m->bits, nwords ? nwords : 1, sizeof(uint64_t), "mask bits");
    if (st != BB_OK) {
        free(m);
        return bb_trace(st, __FILE__, __LINE__, "bb_calloc(mask bits)");
    }
    m->rows = rows;
    m->cols = cols;
    m->words_per_row = wpr;
    if (keep_all && wpr > 0) {
        /* full words all ones, the last word of a row only up to `cols` (padding stays 0) */
        uint64_t last = (cols & 63) ? (((uint64_t)1 << (cols & 63)) - 1) : ~(uint64_t)0;
        for (int64_t i = 0; i < rows; i++) {
            uint64_t *w = m->bits + i * wpr;
            for (int64_t q = 0; q + 1 < wpr; q++) w[q] = ~(uint64_t)0;
            w[wpr - 1] = last;
        }
    }
    *out = m;
    return BB_OK;
}

void bb_mask_destroy(bb_mask **m) {
    if (!m || !*m) return;
    free((*m)->bits);
    free(*m);
    *m = NULL;
}

bb_status bb_mask_clone(const bb_mask *src, bb_mask **out) {
    BB_CALL(bb_mask_create(src->rows, src->cols, 0, out));
    return bb_mask_copy(*out, src);
}

bb_status bb_mask_copy(bb_mask *dst, const bb_mask *src) {
    BB_CHECK(dst->rows == src->rows && dst->cols == src->cols, BB_ERR_ARG,
             "mask copy: shapes differ, (%lld, %lld) vs (%lld, %lld)", (long long)dst->rows, (long long)dst->cols,
             (long long)src->rows, (long long)src->cols);
    if (dst != src) memcpy(dst->bits, src->bits, bb_mask_nbytes(src));
    return BB_OK;
}

int64_t bb_mask_count_row(const bb_mask *m, int64_t i) {
    const uint64_t *w = m->bits + i * m->words_per_row;
    int64_t c = 0;
    for (int64_t k = 0; k < m->words_per_row; k++) c += __builtin_popcountll(w[k]);
    return c;
}

int64_t bb_mask_count(const bb_mask *m) {
    int64_t c = 0;
    for (int64_t i = 0; i < m->rows; i++) c += bb_mask_count_row(m, i);
    return c;
}

double bb_mask_density(const bb_mask *m) {
    double n = (double)m->rows * (double)m->cols;
    return n > 0 ? (double)bb_mask_count(m) / n : 1.0;
}

size_t bb_mask_nbytes(const bb_mask *m) { return (size_t)m->rows * (size_t)m->words_per_row * sizeof(uint64_t); }

void bb_mask_pack(bb_mask *m, const uint8_t *keep) {
    for (int64_t i = 0; i < m->rows; i++) {
        const uint8_t *k = keep + i * m->cols;
        uint64_t *w = m->bits + i * m->words_per_row;
        for (int64_t q = 0; q < m->words_per_row; q++) {
            uint64_t word = 0;
            int64_t j0 = q * 64, n = m->cols - j0 < 64 ? m->cols - j0 : 64;
            for (int64_t b = 0; b < n; b++) word |= (uint64_t)(k[j0 + b] != 0) << b;
            w[q] = word;
        }
    }
}

void bb_mask_unpack(const bb_mask *m, uint8_t *keep) {
    for (int64_t i = 0; i < m->rows; i++)
        for (int64_t j = 0; j < m->cols; j++) keep[i * m->cols + j] = (uint8_t)bb_mask_get(m, i, j);
}

void bb_mask_from_nonzero(bb_mask *m, const float *w) {
    for (int64_t i = 0; i < m->rows; i++) {
        const float *r = w + i * m->cols;
        uint64_t *bw = m->bits + i * m->words_per_row;
        for (int64_t q = 0; q < m->words_per_row; q++) {
            uint64_t word = 0;
            int64_t j0 = q * 64, n = m->cols - j0 < 64 ? m->cols - j0 : 64;
            for (int64_t b = 0; b < n; b++) word |= (uint64_t)(r[j0 + b] != 0.0f) << b;
            bw[q] = word;
        }
    }
}

void bb_mask_apply_row(const bb_mask *m, int64_t i, float *row) {
    const uint64_t *w = m->bits + i * m->words_per_row;
    for (int64_t q = 0; q < m->words_per_row; q++) {
        uint64_t word = w[q];
        if (word == ~(uint64_t)0) continue;
        int64_t j0 = q * 64, n = m->cols - j0 < 64 ? m->cols - j0 : 64;
        /* clear the float's bits through an all-ones/all-zeros mask: branch-free, and +0.0 for pruned weights */
        for (int64_t b = 0; b < n; b++) {
            uint32_t v;
            memcpy(&v, &row[j0 + b], sizeof v);
            v &= (uint32_t)0 - (uint32_t)((word >> b) & 1u);
            memcpy(&row[j0 + b], &v, sizeof v);
        }
    }
}

void bb_mask_apply(const bb_mask *m, float *w) {
    for (int64_t i = 0; i < m->rows; i++) bb_mask_apply_row(m, i, w + i * m->cols);
}
