/* lora.c — low-rank factors: allocation and merge. */
#include "compress/lora.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

bb_status bb_lora_create(int64_t rows, int64_t cols, int rank, bb_lora **out) {
    *out = NULL;
    BB_CHECK(rows >= 1 && cols >= 1 && rank >= 1, BB_ERR_ARG,
             "low-rank factors of shape (%lld, %lld) with rank %d: every size must be at least 1", (long long)rows,
             (long long)cols, rank);
    bb_lora *l;
    BB_CALL(bb_calloc((void **)&l, 1, sizeof *l, "low-rank factors"));
    l->rows = rows;
    l->cols = cols;
    l->rank = rank;
    bb_status st = bb_calloc((void **)&l->a, (size_t)(rows * rank), sizeof(float), "low-rank factor A");
    if (st == BB_OK) st = bb_calloc((void **)&l->b, (size_t)(cols * rank), sizeof(float), "low-rank factor B");
    if (st != BB_OK) {
        bb_lora_destroy(&l);
        return st;
    }
    *out = l;
    return BB_OK;
}

void bb_lora_destroy(bb_lora **l) {
    if (!l || !*l) return;
    free((*l)->a);
    free((*l)->b);
    free(*l);
    *l = NULL;
}

bb_status bb_lora_clone(const bb_lora *src, bb_lora **out) {
    BB_CALL(bb_lora_create(src->rows, src->cols, src->rank, out));
    memcpy((*out)->a, src->a, sizeof(float) * (size_t)(src->rows * src->rank));
    memcpy((*out)->b, src->b, sizeof(float) * (size_t)(src->cols * src->rank));
    return BB_OK;
}

int64_t bb_lora_numel(const bb_lora *l) { return (int64_t)l->rank * (l->rows + l->cols); }

void bb_lora_merge_ref(const bb_lora *l, float *w) {
    for (int64_t i = 0; i < l->rows; i++)
        for (int64_t j = 0; j < l->cols; j++) {
            float s = 0;
            for (int k = 0; k < l->rank; k++) s += l->a[i * l->rank + k] * l->b[(int64_t)k * l->cols + j];
            w[i * l->cols + j] += s;
        }
}

void bb_lora_merge(const bb_lora *l, float *w) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)l->rows, (int)l->cols, l->rank, 1.0f, l->a, l->rank,
                l->b, (int)l->cols, 1.0f, w, (int)l->cols);
}
