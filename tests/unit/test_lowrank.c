/* test_lowrank.c — low-rank factorization as compression: break-even and budget ranks by hand, the whitened
 * spectrum against an eigendecomposition-based computation, rank choice on a matrix of known rank. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/lowrank.h"
#include "core/rng.h"
#include "linalg/backend.h"
#include "test.h"

static void test_hand_ranks(void) {
    EXPECT(bb_lowrank_breakeven_rank(4, 4) == 1, "4x4: r*8 < 16 -> 1, got %lld",
           (long long)bb_lowrank_breakeven_rank(4, 4));
    EXPECT(bb_lowrank_breakeven_rank(4096, 11008) == 2985, "4096x11008: 2985*15104 = 45085440 < 45088768, got %lld",
           (long long)bb_lowrank_breakeven_rank(4096, 11008));
    EXPECT(bb_lowrank_breakeven_rank(1, 1) == 0, "1x1 never saves");
    EXPECT(bb_lowrank_breakeven_rank(2, 2) == 0, "2x2: r*4 < 4 has no r >= 1");
    EXPECT(bb_lowrank_rank_for_bits(100, 200, 16, 16 * 300 * 7 + 5) == 7, "7 ranks of 300 f16 values");
    EXPECT(bb_lowrank_rank_for_bits(100, 200, 16, 16 * 300 * 7 - 1) == 6, "one bit short of 7");
    EXPECT(bb_lowrank_rank_for_bits(100, 200, 16, 0) == 0, "no budget");
    const float s[4] = {3, 2, 1, 0.5f}; /* energies 9 4 1 0.25; total 14.25 */
    EXPECT(bb_lowrank_rank_for_error(s, 4, 14.25, 0.5) == 1, "5.25/14.25 = 0.368 <= 0.5 at r = 1");
    EXPECT(bb_lowrank_rank_for_error(s, 4, 14.25, 0.09) == 2, "1.25/14.25 = 0.088 at r = 2");
    EXPECT(bb_lowrank_rank_for_error(s, 4, 14.25, 0.01) == 4, "0 at r = 4");
    EXPECT(bb_lowrank_rank_for_error(s, 4, 20.0, 0.01) == -1, "energy beyond the top 4: not reached");
    EXPECT(bb_lowrank_rank_for_error(s, 4, 14.25, 1.0) == 0, "rank 0 meets 100 %%");
}

/* W (rows, cols) = rank-3 product + 1e-3 noise, H from correlated tokens. */
static void make(int64_t rows, int64_t cols, float *w, float *h) {
    float *u = malloc(sizeof(float) * (size_t)(rows * 3)), *v = malloc(sizeof(float) * (size_t)(3 * cols));
    bb_rng_fill_normal(bb_rng_make(5, 1), 0, (size_t)(rows * 3), u);
    bb_rng_fill_normal(bb_rng_make(5, 2), 0, (size_t)(3 * cols), v);
    bb_rng_fill_normal(bb_rng_make(5, 3), 0, (size_t)(rows * cols), w);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float s = 1e-3f * w[i * cols + j];
            for (int t = 0; t < 3; t++) s += u[i * 3 + t] * v[t * cols + j] * (float)(3 - t);
            w[i * cols + j] = s;
        }
    int64_t ntok = 3 * cols;
    float *x = malloc(sizeof(float) * (size_t)(ntok * cols));
    bb_rng_fill_normal(bb_rng_make(5, 4), 0, (size_t)(ntok * cols), x);
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) {
            double s = 0;
            for (int64_t t = 0; t < ntok; t++)
                s += (double)(x[t * cols + a] + x[t * cols + (a + 1) % cols]) *
                     (x[t * cols + b] + x[t * cols + (b + 1) % cols]);
            h[a * cols + b] = (float)s;
        }
    free(u);
    free(v);
    free(x);
}

static void test_spectrum_and_plan(void) {
    const int64_t rows = 40, cols = 30;
    float *w = malloc(sizeof(float) * rows * cols), *h = malloc(sizeof(float) * cols * cols);
    make(rows, cols, w, h);
    bb_heal_fit_opts o;
    bb_heal_fit_opts_default(&o);
    float s[30];
    double total;
    EXPECT_OK(bb_lowrank_spectrum(&o, "w", rows, cols, w, h, 30, s, &total));
    /* independent: singular values of W H_d^{1/2} are the square roots of the eigenvalues of W H_d Wᵀ */
    const bb_linalg_backend *be;
    bb_linalg_backend_get("cpu", &be);
    double mean = 0;
    for (int j = 0; j < cols; j++) mean += h[j * cols + j];
    mean /= cols;
    float *whw = malloc(sizeof(float) * rows * rows), ev[40];
    double tr = 0;
    for (int64_t a = 0; a < rows; a++)
        for (int64_t b = 0; b < rows; b++) {
            double acc = 0;
            for (int64_t p = 0; p < cols; p++)
                for (int64_t q = 0; q < cols; q++)
                    acc += (double)w[a * cols + p] * ((double)h[p * cols + q] + (p == q ? o.damp * mean : 0)) *
                           w[b * cols + q];
            whw[a * rows + b] = (float)acc;
            if (a == b) tr += acc;
        }
    be->syevd(rows, whw, rows, ev);
    EXPECT(fabs(total - tr) <= 1e-5 * tr, "total %.8g vs trace %.8g", total, tr);
    for (int k = 0; k < 3; k++) {
        double want = sqrt(ev[rows - 1 - k]);
        EXPECT(fabs(s[k] - want) <= 1e-4 * want, "sigma_%d = %.7g, eigen route %.7g", k, s[k], want);
    }
    EXPECT(s[3] < 1e-3 * s[0], "noise level after rank 3: %g vs %g", s[3], s[0]);
    /* the randomized spectrum agrees on the top values */
    bb_heal_fit_opts orr = o;
    orr.svd = BB_HEAL_SVD_RANDOMIZED;
    float s2[5];
    double total2;
    EXPECT_OK(bb_lowrank_spectrum(&orr, "w", rows, cols, w, h, 5, s2, &total2));
    for (int k = 0; k < 3; k++) EXPECT(fabs(s2[k] - s[k]) <= 1e-4 * s[0], "randomized sigma_%d %g vs %g", k, s2[k], s[k]);

    bb_lowrank_plan plan;
    bb_lowrank_target t = {.rel_err = 1e-4, .bits_per_value = 16};
    EXPECT_OK(bb_lowrank_plan_rank(&o, "w", rows, cols, w, h, &t, &plan));
    EXPECT(plan.rank == 3 && plan.saves && plan.rel_err <= 1e-4, "known rank 3: rank %d saves %d rel %g (%s)",
           plan.rank, plan.saves, plan.rel_err, plan.reason);
    EXPECT(plan.lowrank_values == 3 * 70 && plan.dense_values == 1200, "values %lld / %lld",
           (long long)plan.lowrank_values, (long long)plan.dense_values);
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(rows, cols, plan.rank, &l));
    bb_heal_fit_stats fs;
    EXPECT_OK(bb_lowrank_factor(&o, "w", w, h, l, &fs));
    EXPECT(fs.loss_after <= 2e-4 * fs.loss_before, "factored loss %.6g of %.6g", fs.loss_after, fs.loss_before);
    EXPECT(fabs(fs.tail / total - plan.rel_err) <= 1e-6, "the fit's tail is the planned error: %g vs %g",
           fs.tail / total, plan.rel_err);
    bb_lora_destroy(&l);
    /* a target below the noise needs more than the break-even rank (30*40-1)/70 = 17 */
    t.rel_err = 1e-12;
    EXPECT_OK(bb_lowrank_plan_rank(&o, "w", rows, cols, w, h, &t, &plan));
    EXPECT(plan.rank == 0 && !plan.saves && strstr(plan.reason, "saves nothing"), "noise target: rank %d (%s)",
           plan.rank, plan.reason);
    /* budget only: the largest rank it holds; with an error target the budget caps it */
    t.rel_err = 0;
    t.budget_bits = 16 * 70 * 2;
    EXPECT_OK(bb_lowrank_plan_rank(&o, "w", rows, cols, w, h, &t, &plan));
    EXPECT(plan.rank == 2 && plan.rel_err > 1e-4, "budget of two ranks: %d rel %g", plan.rank, plan.rel_err);
    t.rel_err = 1e-4;
    EXPECT_OK(bb_lowrank_plan_rank(&o, "w", rows, cols, w, h, &t, &plan));
    EXPECT(plan.rank == 0 && strstr(plan.reason, "budget"), "target beyond the budget: %d (%s)", plan.rank,
           plan.reason);
    bb_lowrank_target none = {.bits_per_value = 16};
    EXPECT_ERR(bb_lowrank_plan_rank(&o, "w", rows, cols, w, h, &none, &plan), BB_ERR_ARG, "error target");
    EXPECT_ERR(bb_lowrank_spectrum(&o, "w", rows, cols, w, h, 31, s, &total), BB_ERR_ARG, "1..30");
    free(w);
    free(h);
    free(whw);
}

/* tr(E H Eᵀ) with E = W − A·B (lora may be NULL: E = W − P), in double. */
static double data_err(int64_t rows, int64_t cols, const float *w, const float *p, const bb_lora *l, const double *h) {
    double acc = 0;
    double *e = malloc(sizeof(double) * (size_t)cols);
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            double ab = 0;
            if (l)
                for (int t = 0; t < l->rank; t++) ab += (double)l->a[i * l->rank + t] * l->b[(int64_t)t * cols + j];
            else
                ab = p[i * cols + j];
            e[j] = (double)w[i * cols + j] - ab;
        }
        for (int64_t a = 0; a < cols; a++)
            for (int64_t b = 0; b < cols; b++) acc += e[a] * h[a * cols + b] * e[b];
    }
    free(e);
    return acc;
}

/* SVD-LLM's point: on correlated inputs the truncation-aware (whitened) factors beat plain SVD truncation in the
 * data metric at every rank, and their error is exactly the predicted tail Σ_{i>r} s_i² of the whitened spectrum. */
static void test_whitened_beats_plain(void) {
    const int64_t rows = 48, cols = 40, ntok = 200;
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * ntok * cols);
    float *h = malloc(sizeof(float) * cols * cols);
    double *hd = malloc(sizeof(double) * cols * cols);
    /* W with a slowly decaying spectrum (no exact low rank): normal entries scaled per column */
    bb_rng_fill_normal(bb_rng_make(9, 1), 0, (size_t)(rows * cols), w);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] *= (float)(1.0 / (1.0 + 0.1 * (double)j));
    /* correlated, anisotropic tokens: a few loud channels, neighbours mixed */
    bb_rng_fill_normal(bb_rng_make(9, 2), 0, (size_t)(ntok * cols), x);
    for (int64_t t = 0; t < ntok; t++) {
        float base = x[t * cols];
        for (int64_t j = 0; j < cols; j++) x[t * cols + j] = x[t * cols + j] * (j % 5 == 0 ? 6.0f : 1.0f) + 0.8f * base;
    }
    double mean = 0;
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) {
            double acc = 0;
            for (int64_t t = 0; t < ntok; t++) acc += (double)x[t * cols + a] * x[t * cols + b];
            h[a * cols + b] = (float)acc;
            if (a == b) mean += acc / cols;
        }
    bb_heal_fit_opts o;
    bb_heal_fit_opts_default(&o);
    /* the fit is optimal for the damped H_d = H + λ mean(diag H) I: measure in that metric */
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) hd[a * cols + b] = (double)h[a * cols + b] + (a == b ? o.damp * mean : 0);
    float s[40];
    double total;
    EXPECT_OK(bb_lowrank_spectrum(&o, "w", rows, cols, w, h, 40, s, &total));
    /* plain SVD of W */
    const bb_linalg_backend *be;
    bb_linalg_backend_get("cpu", &be);
    float *a = malloc(sizeof(float) * rows * cols), *u = malloc(sizeof(float) * rows * cols);
    float *vt = malloc(sizeof(float) * cols * cols), *sp = malloc(sizeof(float) * cols), *p = malloc(sizeof(float) * rows * cols);
    memcpy(a, w, sizeof(float) * rows * cols);
    EXPECT_OK(be->svd(rows, cols, a, cols, sp, u, cols, vt, cols));
    const int ranks[4] = {1, 4, 8, 16};
    for (int q = 0; q < 4; q++) {
        int r = ranks[q];
        bb_lora *l = NULL;
        EXPECT_OK(bb_lora_create(rows, cols, r, &l));
        EXPECT_OK(bb_lowrank_factor(&o, "w", w, h, l, NULL));
        double ew = data_err(rows, cols, w, NULL, l, hd);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double acc = 0;
                for (int t = 0; t < r; t++) acc += (double)u[i * cols + t] * sp[t] * vt[(int64_t)t * cols + j];
                p[i * cols + j] = (float)acc;
            }
        double ep = data_err(rows, cols, w, p, NULL, hd);
        double tail = 0;
        for (int t = r; t < 40; t++) tail += (double)s[t] * s[t];
        EXPECT(ew <= ep, "rank %d: whitened error %.6g above plain SVD's %.6g", r, ew, ep);
        EXPECT(fabs(ew - tail) <= 1e-3 * tail + 1e-6 * total, "rank %d: error %.8g, predicted tail %.8g", r, ew, tail);
        printf("  rank %2d: data-metric error whitened %.5g (predicted %.5g), plain SVD %.5g (%.2fx)\n", r, ew, tail,
               ep, ep / ew);
        bb_lora_destroy(&l);
    }
    free(w);
    free(x);
    free(h);
    free(hd);
    free(a);
    free(u);
    free(vt);
    free(sp);
    free(p);
}

int main(void) {
    TEST_RUN(test_hand_ranks);
    TEST_RUN(test_spectrum_and_plan);
    TEST_RUN(test_whitened_beats_plain);
    return TEST_DONE();
}
