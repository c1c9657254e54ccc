/* test_cuda_wanda.c — Wanda on the GPU against bb_prune_wanda_ref (qsort of each row): the mask and the
 * pruned weights must be identical, bit for bit, with ties (weights on a coarse grid), weights the
 * incoming mask already prunes, row lengths that are not a multiple of 64, and several sparsities.
 * Skips (77) without CUDA or a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <stdint.h>

#include "compress/mask.h"
#include "compress/prune.h"
#include "cuda/check.h"
#include "cuda/prune_cuda.h"

static uint64_t rng_state = 0x853c49e6748fea9bull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static void one_case(int64_t rows, int64_t cols, double sparsity, int ties, double forced_frac) {
    float *w = malloc(rows * cols * 4), *w2 = malloc(rows * cols * 4), *xn = malloc(cols * 4);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = urand() * 2 - 1;
        w[i] = ties ? (float)(floor(v * 8) / 8) : (float)v; /* 16 levels: many equal scores */
    }
    for (int64_t j = 0; j < cols; j++) xn[j] = ties ? (float)(1 + j % 3) : (float)(0.1 + urand());
    bb_mask *m1 = NULL, *m2 = NULL;
    EXPECT_OK(bb_mask_create(rows, cols, 1, &m1));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (urand() < forced_frac) bb_mask_set(m1, i, j, 0);
    EXPECT_OK(bb_mask_clone(m1, &m2));
    memcpy(w2, w, rows * cols * 4);
    bb_prune_opts o;
    bb_prune_opts_default(&o);
    o.sparsity = sparsity;
    bb_prune_layer l1 = {"blk.0.ffn_gate.weight", rows, cols, w, NULL, xn, m1};
    bb_prune_layer l2 = {"blk.0.ffn_gate.weight", rows, cols, w2, NULL, xn, m2};
    bb_prune_stats st;
    EXPECT_OK(bb_cuda_prune_wanda(&o, &l1, &st));
    EXPECT_OK(bb_prune_wanda_ref(&o, &l2, NULL));
    int64_t mdiff = 0, wdiff = 0;
    for (int64_t i = 0; i < rows * m1->words_per_row; i++) mdiff += m1->bits[i] != m2->bits[i];
    for (int64_t i = 0; i < rows * cols; i++) wdiff += memcmp(&w[i], &w2[i], 4) != 0;
    EXPECT(mdiff == 0, "%lldx%lld s=%.2f ties=%d forced=%.2f: %lld mask words differ from the reference",
           (long long)rows, (long long)cols, sparsity, ties, forced_frac, (long long)mdiff);
    EXPECT(wdiff == 0, "%lldx%lld s=%.2f: %lld weights differ from the reference", (long long)rows, (long long)cols,
           sparsity, (long long)wdiff);
    EXPECT(st.kept == bb_mask_count(m2), "kept %lld vs %lld", (long long)st.kept, (long long)bb_mask_count(m2));
    bb_mask_destroy(&m1);
    bb_mask_destroy(&m2);
    free(w), free(w2), free(xn);
}

static void test_cases(void) {
    one_case(37, 300, 0.5, 0, 0.0);
    one_case(37, 300, 0.5, 1, 0.0);
    one_case(20, 1000, 0.3, 1, 0.1);
    one_case(20, 1000, 0.5, 0, 0.7); /* more already pruned than the quota */
    one_case(8, 4096, 0.5, 1, 0.05);
    one_case(5, 64, 0.0, 0, 0.2);
}

/* bb_cuda_mask_apply against bb_mask_apply: a random mask on a shape whose rows are not whole words. */
static void test_mask_apply(void) {
    int64_t rows = 19, cols = 333, n = rows * cols;
    float *w = malloc(n * 4), *w2 = malloc(n * 4), *dw = NULL;
    uint64_t *dm = NULL;
    for (int64_t i = 0; i < n; i++) w[i] = w2[i] = (float)(urand() * 2 - 1);
    bb_mask *m = NULL;
    EXPECT_OK(bb_mask_create(rows, cols, 1, &m));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            if (urand() < 0.4) bb_mask_set(m, i, j, 0);
    bb_mask_apply(m, w2);
    EXPECT_OK(bb_cuda_malloc((void **)&dw, n * 4, "w"));
    EXPECT_OK(bb_cuda_malloc((void **)&dm, rows * m->words_per_row * 8, "mask"));
    cudaMemcpy(dw, w, n * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dm, m->bits, rows * m->words_per_row * 8, cudaMemcpyHostToDevice);
    EXPECT_OK(bb_cuda_mask_apply(rows, cols, dw, dm));
    cudaMemcpy(w, dw, n * 4, cudaMemcpyDeviceToHost);
    EXPECT(memcmp(w, w2, n * 4) == 0, "device mask application differs from bb_mask_apply");
    cudaFree(dw);
    cudaFree(dm);
    bb_mask_destroy(&m);
    free(w), free(w2);
}

static void test_errors(void) {
    bb_prune_opts o;
    bb_prune_opts_default(&o);
    o.pattern.n = 2;
    o.pattern.m = 4;
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8}, xn[4] = {1, 1, 1, 1};
    bb_mask *m = NULL;
    EXPECT_OK(bb_mask_create(2, 4, 1, &m));
    bb_prune_layer l = {"blk.3.attn_v.weight", 2, 4, w, NULL, xn, m};
    EXPECT_ERR(bb_cuda_prune_wanda(&o, &l, NULL), BB_ERR_UNSUPPORTED, "N:M");
    o.pattern.n = o.pattern.m = 0;
    w[5] = NAN;
    EXPECT_ERR(bb_cuda_prune_wanda(&o, &l, NULL), BB_ERR_NUMERIC, "weight (1, 1)");
    bb_mask_destroy(&m);
}

int main(void) {
    if (bb_cuda_device_count() == 0) {
        printf("skipped: no GPU visible\n");
        return 77;
    }
    int dev;
    EXPECT_OK(bb_cuda_bind(0, &dev));
    TEST_RUN(test_cases);
    TEST_RUN(test_mask_apply);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
#endif
