/* test_scales.c — straight-through training of Q4_0 / Q8_0 / Q5_0 scales: the gradient against central finite differences
 * and the plain-C reference, the layer loss falling against no scale training, the blocks as stored (codes kept,
 * fp16 scales, w_hat = decode), zero blocks left alone, and the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/scales.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "io/gguf.h"
#include "io/qformat.h"
#include "test.h"

enum { ROWS = 12, COLS = 96, TOK = 400 };

/* H = XᵀX of tokens with correlated channels (X = Z·M, M mixing neighbouring channels), W normal. */
static void make(float *w, float *h) {
    float *z = malloc(sizeof(float) * TOK * COLS), *x = malloc(sizeof(float) * TOK * COLS);
    bb_rng_fill_normal(bb_rng_make(11, 1), 0, (size_t)TOK * COLS, z);
    for (int t = 0; t < TOK; t++)
        for (int j = 0; j < COLS; j++) {
            double s = 0;
            for (int k = 0; k < 6 && j + k < COLS; k++) s += z[t * COLS + j + k] / (1.0 + k);
            x[t * COLS + j] = (float)(s * (1.0 + 3.0 * (j % 7 == 0)));
        }
    for (int a = 0; a < COLS; a++)
        for (int b = 0; b < COLS; b++) {
            double s = 0;
            for (int t = 0; t < TOK; t++) s += (double)x[t * COLS + a] * x[t * COLS + b];
            h[a * COLS + b] = (float)(s / TOK);
        }
    bb_rng_fill_normal(bb_rng_make(11, 2), 0, (size_t)ROWS * COLS, w);
    free(z);
    free(x);
}

/* Encode w row by row as `type`; fill w_hat with the decode. */
static size_t quantize(int type, const float *w, uint8_t **blocks, float *w_hat) {
    size_t rb = 0;
    EXPECT_OK(bb_qformat_row_bytes(type, COLS, &rb));
    *blocks = malloc(rb * ROWS);
    for (int i = 0; i < ROWS; i++) {
        EXPECT_OK(bb_qformat_encode_row(type, w + i * COLS, COLS, NULL, *blocks + rb * i));
        EXPECT_OK(bb_qformat_decode_row(type, *blocks + rb * i, COLS, w_hat + i * COLS));
    }
    return rb;
}

/* codes and scales of the blocks (Q4_0: d first, then the codes as the decode gives them) */
static void split(const uint8_t *blocks, size_t rb, const float *w_hat, float *q, float *d) {
    const int nb = COLS / BB_SCALES_BLOCK;
    for (int i = 0; i < ROWS; i++)
        for (int b = 0; b < nb; b++) {
            uint16_t hv;
            memcpy(&hv, blocks + rb * i + (rb / nb) * b, 2);
            d[i * nb + b] = bb_f16_to_f32(hv);
            for (int j = 0; j < BB_SCALES_BLOCK; j++) {
                int e = i * COLS + b * BB_SCALES_BLOCK + j;
                q[e] = d[i * nb + b] != 0 ? rintf(w_hat[e] / d[i * nb + b]) : 0;
            }
        }
}

static void test_gradient(void) {
    float *w = malloc(sizeof(float) * ROWS * COLS), *h = malloc(sizeof(float) * COLS * COLS);
    float *wh = malloc(sizeof(float) * ROWS * COLS), *q = malloc(sizeof(float) * ROWS * COLS);
    const int ns = ROWS * COLS / BB_SCALES_BLOCK;
    float d[ROWS * COLS / BB_SCALES_BLOCK], g[ROWS * COLS / BB_SCALES_BLOCK], gr[ROWS * COLS / BB_SCALES_BLOCK];
    make(w, h);
    uint8_t *blocks;
    size_t rb = quantize(BB_GGML_Q4_0, w, &blocks, wh);
    split(blocks, rb, wh, q, d);
    for (int e = 0; e < ROWS * COLS; e++) {
        int b = e / BB_SCALES_BLOCK;
        EXPECT(q[e] == rintf(q[e]) && fabsf(q[e] * d[b] - wh[e]) == 0, "w_hat = d q exactly at %d", e);
    }
    double loss, loss_ref;
    EXPECT_OK(bb_scales_loss_grad(NULL, ROWS, COLS, w, q, d, h, &loss, g));
    EXPECT_OK(bb_scales_loss_grad_ref(ROWS, COLS, w, q, d, h, &loss_ref, gr));
    EXPECT(fabs(loss - loss_ref) <= 1e-4 * fabs(loss_ref), "loss fast %.9g ref %.9g", loss, loss_ref);
    double gmax = 0;
    for (int b = 0; b < ns; b++) gmax = fmax(gmax, fabs(gr[b]));
    for (int b = 0; b < ns; b++)
        EXPECT(fabs(g[b] - gr[b]) <= 1e-4 * gmax + 1e-4 * fabs(gr[b]), "grad %d fast %g ref %g", b, g[b], gr[b]);
    /* central differences of the reference loss: L is quadratic in each d_b, so they are exact up to rounding */
    int worst = -1;
    double worst_rel = 0;
    for (int b = 0; b < ns; b++) {
        float dd[ROWS * COLS / BB_SCALES_BLOCK];
        memcpy(dd, d, sizeof dd);
        double step = 1e-2 * fabs(d[b]), lp, lm;
        dd[b] = (float)(d[b] + step);
        step = (double)dd[b] - d[b]; /* the step f32 actually took */
        EXPECT_OK(bb_scales_loss_grad_ref(ROWS, COLS, w, q, dd, h, &lp, NULL));
        dd[b] = (float)(d[b] - step);
        EXPECT_OK(bb_scales_loss_grad_ref(ROWS, COLS, w, q, dd, h, &lm, NULL));
        double fd = (lp - lm) / (2 * step);
        double rel = fabs(fd - gr[b]) / (1e-3 * gmax + fabs(fd));
        if (rel > worst_rel) worst_rel = rel, worst = b;
    }
    EXPECT(worst_rel < 1e-3, "finite differences: worst scale %d off by %.3g (relative)", worst, worst_rel);
    free(w);
    free(h);
    free(wh);
    free(q);
    free(blocks);
}

/* Train the scales of RTN-quantized blocks: lower layer loss, same codes, fp16 scales, w_hat = decode. */
static void train_type(int type, double min_gain) {
    float *w = malloc(sizeof(float) * ROWS * COLS), *h = malloc(sizeof(float) * COLS * COLS);
    float *wh = malloc(sizeof(float) * ROWS * COLS), *q0 = malloc(sizeof(float) * ROWS * COLS);
    float *q1 = malloc(sizeof(float) * ROWS * COLS), *dec = malloc(sizeof(float) * ROWS * COLS);
    float d0[ROWS * COLS / BB_SCALES_BLOCK], d1[ROWS * COLS / BB_SCALES_BLOCK];
    make(w, h);
    /* one all-zero block (a pruned block): its scale must stay 0 */
    memset(w + 3 * COLS + 32, 0, sizeof(float) * 32);
    uint8_t *blocks;
    size_t rb = quantize(type, w, &blocks, wh);
    split(blocks, rb, wh, q0, d0);
    double before;
    EXPECT_OK(bb_scales_loss_grad_ref(ROWS, COLS, w, q0, d0, h, &before, NULL));
    bb_scales_opts o;
    bb_scales_opts_default(&o);
    o.steps = 200;
    o.lr = 3e-3;
    bb_scales_stats st;
    EXPECT_OK(bb_scales_train_blocks(&o, "w", type, ROWS, COLS, w, h, blocks, rb, wh, &st));
    split(blocks, rb, wh, q1, d1);
    double after;
    EXPECT_OK(bb_scales_loss_grad_ref(ROWS, COLS, w, q1, d1, h, &after, NULL));
    EXPECT(fabs(st.loss_before - before) <= 1e-4 * before, "%s: loss before %g vs %g", bb_ggml_type_name(type),
           st.loss_before, before);
    EXPECT(fabs(st.loss_after - after) <= 1e-4 * after, "%s: reported loss after %g vs stored %g",
           bb_ggml_type_name(type), st.loss_after, after);
    EXPECT(after < (1 - min_gain) * before, "%s: layer loss %g -> %g (want at least %.0f %% lower)",
           bb_ggml_type_name(type), before, after, 100 * min_gain);
    printf("  %s: layer loss without scale training %.6g, with %.6g (%.1f %% lower), best step %d\n",
           bb_ggml_type_name(type), before, after, 100 * (1 - after / before), st.best_step);
    int64_t moved = 0, code_diff = 0;
    for (int b = 0; b < ROWS * COLS / BB_SCALES_BLOCK; b++) moved += d0[b] != d1[b];
    for (int e = 0; e < ROWS * COLS; e++) code_diff += q0[e] != q1[e];
    EXPECT(moved > 0 && code_diff == 0, "%s: %lld scales moved, %lld codes changed", bb_ggml_type_name(type),
           (long long)moved, (long long)code_diff);
    EXPECT(d0[3 * 3 + 1] == 0 && d1[3 * 3 + 1] == 0, "the all-zero block keeps scale 0 (%g)", d1[3 * 3 + 1]);
    for (int i = 0; i < ROWS; i++) bb_qformat_decode_row(type, blocks + rb * i, COLS, dec + i * COLS);
    EXPECT(!memcmp(dec, wh, sizeof(float) * ROWS * COLS), "%s: w_hat is what the blocks decode to",
           bb_ggml_type_name(type));
    free(w);
    free(h);
    free(wh);
    free(q0);
    free(q1);
    free(dec);
    free(blocks);
}

static void test_train(void) {
    train_type(BB_GGML_Q4_0, 0.03);
    train_type(BB_GGML_Q8_0, 0.001);
    train_type(BB_GGML_Q5_0, 0.01);
}

/* Adam returns the best iterate: with a huge learning rate the loss never ends above the start. */
static void test_adam_best_and_errors(void) {
    float *w = malloc(sizeof(float) * ROWS * COLS), *h = malloc(sizeof(float) * COLS * COLS);
    float *wh = malloc(sizeof(float) * ROWS * COLS), *q = malloc(sizeof(float) * ROWS * COLS);
    float d[ROWS * COLS / BB_SCALES_BLOCK];
    make(w, h);
    uint8_t *blocks;
    size_t rb = quantize(BB_GGML_Q4_0, w, &blocks, wh);
    split(blocks, rb, wh, q, d);
    bb_scales_opts o;
    bb_scales_opts_default(&o);
    o.steps = 20;
    o.lr = 0.5;
    double curve[21];
    bb_scales_stats st;
    EXPECT_OK(bb_scales_adam(&o, "w", ROWS, COLS, w, q, d, h, curve, &st));
    double mn = curve[0];
    for (int t = 1; t <= 20; t++) mn = fmin(mn, curve[t]);
    EXPECT(st.loss_after == mn && st.loss_after <= st.loss_before, "best of the curve %g, returned %g", mn,
           st.loss_after);
    EXPECT_ERR(bb_scales_train_blocks(&o, "w", BB_GGML_Q4_K, ROWS, COLS, w, h, blocks, rb, wh, NULL), BB_ERR_ARG,
               "not q4_K");
    EXPECT_ERR(bb_scales_loss_grad(NULL, ROWS, 40, w, q, d, h, &mn, NULL), BB_ERR_ARG, "multiple of 32");
    o.lr = 0;
    EXPECT_ERR(bb_scales_adam(&o, "w", ROWS, COLS, w, q, d, h, NULL, NULL), BB_ERR_ARG, "lr > 0");
    free(w);
    free(h);
    free(wh);
    free(q);
    free(blocks);
}

int main(void) {
    TEST_RUN(test_gradient);
    TEST_RUN(test_train);
    TEST_RUN(test_adam_best_and_errors);
    return TEST_DONE();
}
