/* test_lora.c — low-rank factors: shapes, errors, merge against the plain loop and a hand-computed case. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/lora.h"
#include "core/rng.h"
#include "test.h"

static void test_hand_case(void) {
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(2, 3, 1, &l));
    if (!l) return;
    EXPECT(bb_lora_numel(l) == 5, "numel %lld", (long long)bb_lora_numel(l));
    l->a[0] = 1, l->a[1] = -2;              /* A = [1; -2] */
    l->b[0] = 3, l->b[1] = 0, l->b[2] = 0.5f; /* B = [3 0 0.5] */
    float w[6] = {1, 1, 1, 1, 1, 1};
    bb_lora_merge(l, w);
    const float want[6] = {4, 1, 1.5f, -5, 1, 0};
    for (int k = 0; k < 6; k++) EXPECT(w[k] == want[k], "w[%d] = %g, want %g", k, w[k], want[k]);
    bb_lora_destroy(&l);
    EXPECT(l == NULL, "destroy nulls");
    bb_lora_destroy(NULL);
    EXPECT_ERR(bb_lora_create(0, 3, 1, &l), BB_ERR_ARG, "at least 1");
    EXPECT_ERR(bb_lora_create(2, 3, 0, &l), BB_ERR_ARG, "rank 0");
}

static void test_merge_matches_ref(void) {
    const int64_t rows = 37, cols = 53;
    const int rank = 5;
    bb_lora *l = NULL, *c = NULL;
    EXPECT_OK(bb_lora_create(rows, cols, rank, &l));
    if (!l) return;
    bb_rng_fill_normal(bb_rng_make(3, 0), 0, (size_t)(rows * rank), l->a);
    bb_rng_fill_normal(bb_rng_make(3, 1), 0, (size_t)(cols * rank), l->b);
    EXPECT_OK(bb_lora_clone(l, &c));
    float *w1 = malloc(sizeof(float) * (size_t)(rows * cols)), *w2 = malloc(sizeof(float) * (size_t)(rows * cols));
    bb_rng_fill_normal(bb_rng_make(3, 2), 0, (size_t)(rows * cols), w1);
    memcpy(w2, w1, sizeof(float) * (size_t)(rows * cols));
    bb_lora_merge(c, w1);
    bb_lora_merge_ref(l, w2);
    double worst = 0;
    for (int64_t k = 0; k < rows * cols; k++) worst = fmax(worst, fabs((double)w1[k] - w2[k]));
    EXPECT(worst < 1e-5, "merge differs from the plain loop by %g", worst);
    free(w1);
    free(w2);
    bb_lora_destroy(&l);
    bb_lora_destroy(&c);
}

int main(void) {
    TEST_RUN(test_hand_case);
    TEST_RUN(test_merge_matches_ref);
    TEST_DONE();
}
