/* test_scaffold.c — the seed's scaffold: a matrix with a known SVD, the thresholded residual by brute force,
 * fast vs reference state, the α_k schedule, base-precision marks and the stop-loss rule by hand. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/scaffold.h"
#include "core/rng.h"
#include "test.h"

/* q (n, k) with orthonormal columns: Gram–Schmidt on normal columns, in double. */
static void orthonormal(int64_t n, int k, uint64_t seed, double *q) {
    float *g = malloc(sizeof(float) * (size_t)(n * k));
    bb_rng_fill_normal(bb_rng_make(seed, 0), 0, (size_t)(n * k), g);
    for (int c = 0; c < k; c++) {
        for (int64_t i = 0; i < n; i++) q[i * k + c] = g[i * k + c];
        for (int p = 0; p < c; p++) {
            double d = 0;
            for (int64_t i = 0; i < n; i++) d += q[i * k + c] * q[i * k + p];
            for (int64_t i = 0; i < n; i++) q[i * k + c] -= d * q[i * k + p];
        }
        double nr = 0;
        for (int64_t i = 0; i < n; i++) nr += q[i * k + c] * q[i * k + c];
        for (int64_t i = 0; i < n; i++) q[i * k + c] /= sqrt(nr);
    }
    free(g);
}

static void test_known_svd(void) {
    const int64_t rows = 30, cols = 20;
    const int K = 6;
    const double sig[6] = {10, 6, 4, 2, 1, 0.5};
    double *u = malloc(sizeof(double) * rows * K), *v = malloc(sizeof(double) * cols * K);
    orthonormal(rows, K, 1, u);
    orthonormal(cols, K, 2, v);
    float *w = malloc(sizeof(float) * rows * cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int t = 0; t < K; t++) s += sig[t] * u[i * K + t] * v[j * K + t];
            w[i * cols + j] = (float)s;
        }
    bb_scaffold *sc = NULL;
    EXPECT_OK(bb_scaffold_create("w", rows, cols, w, 4, 0, &sc));
    if (!sc) return;
    for (int t = 0; t < 4; t++) EXPECT(fabs(sc->s[t] - sig[t]) < 1e-5 * sig[0], "sigma_%d = %g", t, sc->s[t]);
    bb_lora *l = NULL, *l2 = NULL;
    EXPECT_OK(bb_lora_create(rows, cols, 4, &l));
    EXPECT_OK(bb_lora_create(rows, cols, 4, &l2));
    float *r1 = malloc(sizeof(float) * rows * cols), *r2 = malloc(sizeof(float) * rows * cols);
    bb_mask *m = NULL;
    bb_mask_create(rows, cols, 1, &m);
    for (int k = 1; k <= 4; k++) {
        const double tau_rel = 0.01;
        bb_scaffold_stats st, st2;
        EXPECT_OK(bb_scaffold_state(sc, w, k, tau_rel, l, r1, m, &st));
        EXPECT_OK(bb_scaffold_state_ref(sc, w, k, tau_rel, l2, r2, NULL, &st2));
        double tau = tau_rel * sig[0];
        EXPECT(fabs(st.tau - tau) < 1e-5, "tau %g vs %g", st.tau, tau);
        int64_t kept = 0, bad = 0, diff = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                /* the residual from the construction: the directions past k */
                double res = 0;
                for (int t = k; t < K; t++) res += sig[t] * u[i * K + t] * v[j * K + t];
                double got = r1[i * cols + j];
                int keep = fabs(res) >= tau;
                /* entries within rounding of τ may go either way */
                if (fabs(fabs(res) - tau) > 1e-5) {
                    if (keep ? fabs(got - res) > 1e-4 : got != 0) bad++;
                    if (bb_mask_get(m, i, j) != keep) bad++;
                }
                kept += got != 0;
                if (fabs(r1[i * cols + j] - r2[i * cols + j]) > 1e-5) diff++;
            }
        EXPECT(bad == 0, "k=%d: %lld residual entries wrong", k, (long long)bad);
        EXPECT(diff == 0, "k=%d: fast and reference residuals differ in %lld entries", k, (long long)diff);
        EXPECT(st.kept == kept && st.kept == bb_mask_count(m), "k=%d: kept %lld", k, (long long)st.kept);
        EXPECT(fabs(st.rel_err - st2.rel_err) < 1e-5, "k=%d: errors %g %g", k, st.rel_err, st2.rel_err);
        /* factors reproduce W_k: W = R + AB where nothing was thresholded */
        double worst = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                double wk = 0, ab = 0;
                for (int t = 0; t < k; t++) {
                    wk += sig[t] * u[i * K + t] * v[j * K + t];
                    ab += (double)l->a[i * 4 + t] * l->b[t * cols + j];
                }
                worst = fmax(worst, fabs(wk - ab));
            }
        EXPECT(worst < 1e-4, "k=%d: A B vs W_k %g", k, worst);
        for (int64_t i = 0; i < rows; i++) EXPECT(l->a[i * 4 + 3] == 0 || k == 4, "directions past k are zero");
    }
    /* the seed's tau1 = 0.1 sigma_1: only residual entries of size >= 1 stay */
    bb_scaffold_stats st;
    EXPECT_OK(bb_scaffold_state(sc, w, 1, 0.1, l, r1, m, &st));
    int64_t big = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double res = 0;
            for (int t = 1; t < K; t++) res += sig[t] * u[i * K + t] * v[j * K + t];
            big += fabs(res) >= 1.0;
        }
    EXPECT(st.kept == big && bb_mask_count(m) == big && big < rows * cols / 10,
           "tau1 = 0.1 sigma_1 keeps the %lld entries >= 1: kept %lld", (long long)big, (long long)st.kept);
    EXPECT_ERR(bb_scaffold_state(sc, w, 5, 0.1, l, r1, m, &st), BB_ERR_ARG, "outside 1..4");
    EXPECT_ERR(bb_scaffold_create("w", rows, cols, w, 21, 0, &sc), BB_ERR_ARG, "outside 1..20");
    bb_mask_destroy(&m);
    bb_lora_destroy(&l);
    bb_lora_destroy(&l2);
    bb_scaffold_destroy(&sc);
    EXPECT(sc == NULL, "destroy nulls");
    free(u);
    free(v);
    free(w);
    free(r1);
    free(r2);
}

static void test_schedule_and_stoploss(void) {
    EXPECT_NEAR(bb_scaffold_alpha(1, 5), 0.3, 1e-15);
    EXPECT_NEAR(bb_scaffold_alpha(3, 5), 0.5, 1e-15);
    EXPECT_NEAR(bb_scaffold_alpha(5, 5), 0.7, 1e-15);
    EXPECT_NEAR(bb_scaffold_alpha(1, 1), 0.3, 1e-15);
    const double usage[5] = {4, 1, 2, 0, 3.9};
    uint8_t base[5];
    bb_scaffold_mark_base(usage, 5, 0.5, base); /* s = 1, .25, .5, 0, .975 */
    const uint8_t want[5] = {0, 1, 0, 1, 0};
    for (int b = 0; b < 5; b++) EXPECT(base[b] == want[b], "block %d: %d", b, base[b]);
    double tau = 0.1;
    EXPECT(bb_scaffold_stoploss(2.0, 2.06, 0.03, &tau) == 0 && tau == 0.1, "+3 %% exactly is no rise");
    EXPECT(bb_scaffold_stoploss(2.0, 2.07, 0.03, &tau) == 1 && tau == 0.05, "+3.5 %% halves tau");
    EXPECT(bb_scaffold_stoploss(2.0, 1.5, 0.03, &tau) == 0 && tau == 0.05, "a drop keeps tau");
    EXPECT(bb_scaffold_stoploss(2.0, NAN, 0.03, &tau) == 1 && tau == 0.025, "NaN counts as a rise");
}

int main(void) {
    TEST_RUN(test_known_svd);
    TEST_RUN(test_schedule_and_stoploss);
    return TEST_DONE();
}
