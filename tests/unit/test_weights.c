/* test_weights.c — working weight copies: the derived model computes what the
 * base computes, sees edits, covers a layer range, and refuses NaN weights. */
#include <math.h>

#include "model/forward.h"
#include "pipeline/weights.h"
#include "test.h"

static void logits_of(const bb_model *m, float *out) {
    bb_forward *f = NULL;
    int tokens[8] = {1, 5, 9, 33, 2, 7, 100, 3};
    EXPECT_OK(bb_forward_create(m, 8, &f));
    if (f) EXPECT_OK(bb_forward_prefill(f, tokens, 1, 8, out));
    bb_forward_destroy(&f);
}

static void test_derived_model(void) {
    bb_model *m = NULL;
    bb_weights *w = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,vocab=128", &m));
    if (!m) return;
    EXPECT_OK(bb_weights_create(m, 0, 0, &w));
    if (!w) goto out;
    size_t n = (size_t)8 * 128;
    float *a = calloc(n, sizeof(float)), *b = calloc(n, sizeof(float));
    logits_of(m, a);
    logits_of(bb_weights_model(w), b);
    EXPECT(memcmp(a, b, n * sizeof(float)) == 0, "derived model must compute the same logits");
    const bb_tensor *t = bb_weights_tensor(w, 1, BB_LIN_DOWN);
    EXPECT(t && !strcmp(t->name, "blk.1.ffn_down.weight") && t->dtype == BB_F32, "tensor handle");
    float *down = bb_weights_linear(w, 1, BB_LIN_DOWN);
    EXPECT(down != NULL, "working copy");
    if (down) memset(down, 0, sizeof(float) * (size_t)bb_tensor_numel(t));
    logits_of(bb_weights_model(w), b);
    EXPECT(memcmp(a, b, n * sizeof(float)) != 0, "edits must reach the derived model");
    logits_of(m, b);
    EXPECT(memcmp(a, b, n * sizeof(float)) == 0, "the base model must be untouched");
    EXPECT(bb_weights_bytes(w) == 2 * sizeof(float) * (size_t)(128 * 128 * 2 + 64 * 128 * 2 + 352 * 128 * 3),
           "bytes %zu", bb_weights_bytes(w));
    free(a);
    free(b);
    bb_weights_destroy(&w);
    EXPECT_OK(bb_weights_create(m, 1, 2, &w));
    if (w) EXPECT(bb_weights_linear(w, 0, BB_LIN_Q) == NULL && bb_weights_linear(w, 1, BB_LIN_Q) != NULL, "range");
    bb_weights_destroy(&w);
    EXPECT_ERR(bb_weights_create(m, 1, 3, &w), BB_ERR_ARG, "outside the model's 2 layers");
out:
    bb_weights_destroy(&w);
    bb_model_destroy(&m);
}

static void test_nan_weight(void) {
    float buf[4 * 4];
    for (int i = 0; i < 16; i++) buf[i] = 0.1f * (float)i;
    buf[6] = NAN;
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=1,dim=4,heads=2,kv_heads=2,hidden=4,vocab=8,rank=1,outliers=0", &m));
    if (!m) return;
    int64_t shape[2] = {4, 4};
    EXPECT_OK(bb_tensor_init_memory(&m->layers[0].wq, "blk.0.attn_q.weight", BB_F32, 2, shape, buf, sizeof buf));
    bb_weights *w = NULL;
    EXPECT_ERR(bb_weights_create(m, 0, 0, &w), BB_ERR_NUMERIC, "blk.0.attn_q.weight has a non-finite value (nan) at row 1, column 2");
    EXPECT(w == NULL, "no partial result");
    bb_model_destroy(&m);
}

int main(void) {
    TEST_RUN(test_derived_model);
    TEST_RUN(test_nan_weight);
    return TEST_DONE();
}
