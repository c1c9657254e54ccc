/* test_rigl.c — RigL redistribution: a hand-worked tie case, fast vs reference, the loss never rising (brute
 * force), constant density per row and per matrix, the regrown value's optimality, and the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/heal.h"
#include "compress/rigl.h"
#include "core/rng.h"
#include "test.h"

static void test_hand_ties(void) {
    /* H = I, W = ones (1, 8); Ŵ keeps columns 0..3 at 0.5. G = E' = 0.5 on kept, 1 on pruned.
     * Drop: all scores 0.5 -> column 0 (lowest index). Δ_drop = 2(0.5)(0.5) + 0.25 = 0.75.
     * Regrow: all |G| = 1 -> column 4, value G/H = 1, Δ = -1. Pair: -0.25 < 0, applied.
     * fraction 0.25 of 4 kept = 1 pair. Loss 4(0.25) + 4 = 5 -> 5 + 0.75 - 1 = 4.75. */
    float w[8], wh[8] = {0.5f, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0}, h[64] = {0};
    for (int j = 0; j < 8; j++) w[j] = 1, h[j * 8 + j] = 1;
    bb_mask *m = NULL;
    bb_mask_create(1, 8, 0, &m);
    for (int j = 0; j < 4; j++) bb_mask_set(m, 0, j, 1);
    bb_rigl_opts o = {.fraction = 0.25, .per_row = 1};
    bb_rigl_stats st;
    EXPECT_OK(bb_rigl_step(&o, "hand", 1, 8, w, wh, NULL, h, NULL, m, &st));
    const float want[8] = {0, 0.5f, 0.5f, 0.5f, 1, 0, 0, 0};
    for (int j = 0; j < 8; j++) {
        EXPECT(wh[j] == want[j], "column %d: %g, want %g", j, wh[j], want[j]);
        EXPECT(bb_mask_get(m, 0, j) == (j >= 1 && j <= 4), "mask column %d", j);
    }
    EXPECT(st.swapped == 1 && st.loss_before == 5 && st.loss_after == 4.75, "swapped %lld, loss %g -> %g",
           (long long)st.swapped, st.loss_before, st.loss_after);
    /* kept at 1.0 instead: Δ = 1 - 1 = 0, not a gain, nothing moves */
    float wh2[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    bb_mask_destroy(&m);
    bb_mask_create(1, 8, 0, &m);
    for (int j = 0; j < 4; j++) bb_mask_set(m, 0, j, 1);
    EXPECT_OK(bb_rigl_step(&o, "hand", 1, 8, w, wh2, NULL, h, NULL, m, &st));
    EXPECT(st.swapped == 0 && bb_mask_count(m) == 4 && wh2[4] == 0, "zero-gain pair is not applied");
    /* errors */
    wh2[5] = 0.1f;
    EXPECT_ERR(bb_rigl_step(&o, "hand", 1, 8, w, wh2, NULL, h, NULL, m, &st), BB_ERR_ARG, "apply the mask first");
    wh2[5] = 0;
    /* both faults: the first in row-major order is reported */
    wh2[6] = 0.2f;
    w[2] = NAN;
    EXPECT_ERR(bb_rigl_step(&o, "hand", 1, 8, w, wh2, NULL, h, NULL, m, &st), BB_ERR_NUMERIC,
               "non-finite weight at row 0, column 2");
    w[2] = 1;
    EXPECT_ERR(bb_rigl_step(&o, "hand", 1, 8, w, wh2, NULL, h, NULL, m, &st), BB_ERR_ARG, "pruned weight (0, 6)");
    wh2[6] = 0;
    o.fraction = 1.5;
    EXPECT_ERR(bb_rigl_step(&o, "hand", 1, 8, w, wh2, NULL, h, NULL, m, &st), BB_ERR_ARG, "rigl.fraction");
    bb_mask_destroy(&m);
}

typedef struct {
    int64_t rows, cols;
    float *w, *wh, *h;
    bb_mask *m;
} layer;

/* W normal, H from correlated tokens, Ŵ = W with the `prune` smallest |w| of each row removed. */
static layer make_layer(int64_t rows, int64_t cols, int prune, uint64_t seed) {
    layer L = {rows, cols, malloc(sizeof(float) * rows * cols), malloc(sizeof(float) * rows * cols),
               calloc(cols * cols, sizeof(float)), NULL};
    bb_rng_fill_normal(bb_rng_make(seed, 1), 0, (size_t)(rows * cols), L.w);
    int64_t nt = 3 * cols;
    float *x = malloc(sizeof(float) * nt * cols);
    bb_rng_fill_normal(bb_rng_make(seed, 2), 0, (size_t)(nt * cols), x);
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) {
            double s = 0;
            for (int64_t t = 0; t < nt; t++)
                s += (double)(x[t * cols + a] + 0.7f * x[t * cols + (a + 1) % cols]) *
                     (x[t * cols + b] + 0.7f * x[t * cols + (b + 1) % cols]);
            L.h[a * cols + b] = (float)s;
        }
    free(x);
    memcpy(L.wh, L.w, sizeof(float) * rows * cols);
    bb_mask_create(rows, cols, 1, &L.m);
    for (int64_t i = 0; i < rows; i++)
        for (int p = 0; p < prune; p++) {
            int64_t best = -1;
            for (int64_t j = 0; j < cols; j++)
                if (bb_mask_get(L.m, i, j) && (best < 0 || fabsf(L.w[i * cols + j]) < fabsf(L.w[i * cols + best])))
                    best = j;
            bb_mask_set(L.m, i, best, 0);
        }
    bb_mask_apply(L.m, L.wh);
    return L;
}

static void free_layer(layer *L) {
    free(L->w);
    free(L->wh);
    free(L->h);
    bb_mask_destroy(&L->m);
}

static void test_fast_vs_ref(void) {
    for (int per_row = 0; per_row < 2; per_row++)
        for (int with_lora = 0; with_lora < 2; with_lora++) {
            layer L = make_layer(14, 12, 6, 30 + per_row + 2 * with_lora);
            bb_lora *lo = NULL;
            if (with_lora) {
                bb_lora_create(14, 12, 2, &lo);
                bb_rng_fill_normal(bb_rng_make(9, 1), 0, 28, lo->a);
                bb_rng_fill_normal(bb_rng_make(9, 2), 0, 24, lo->b);
                for (int k = 0; k < 24; k++) lo->b[k] *= 0.1f;
            }
            float *wh2 = malloc(sizeof(float) * 168);
            memcpy(wh2, L.wh, sizeof(float) * 168);
            bb_mask *m2 = NULL, *m0 = NULL;
            bb_mask_clone(L.m, &m2);
            bb_mask_clone(L.m, &m0);
            bb_rigl_opts o = {.fraction = 0.34, .per_row = per_row};
            bb_rigl_stats s1, s2;
            double before, after;
            EXPECT_OK(bb_heal_loss_ref("r", L.w, L.wh, lo, 14, 12, L.h, &before));
            EXPECT_OK(bb_rigl_step(&o, "r", 14, 12, L.w, L.wh, lo, L.h, NULL, L.m, &s1));
            EXPECT_OK(bb_rigl_step_ref(&o, "r", 14, 12, L.w, wh2, lo, L.h, NULL, m2, &s2));
            EXPECT_OK(bb_heal_loss_ref("r", L.w, L.wh, lo, 14, 12, L.h, &after));
            EXPECT(s1.swapped > 0 && s1.swapped == s2.swapped, "per_row %d lora %d: swapped %lld vs %lld", per_row,
                   with_lora, (long long)s1.swapped, (long long)s2.swapped);
            int same = memcmp(L.m->bits, m2->bits, bb_mask_nbytes(L.m)) == 0;
            EXPECT(same, "per_row %d lora %d: fast and reference masks differ", per_row, with_lora);
            double wd = 0;
            for (int k = 0; k < 168; k++) wd = fmax(wd, fabs(L.wh[k] - wh2[k]));
            EXPECT(wd < 1e-4, "weights differ by %g", wd);
            EXPECT(after <= before * (1 + 1e-9) && after < before, "loss %.10g -> %.10g", before, after);
            EXPECT(fabs(s1.loss_before - before) <= 1e-5 * before && fabs(s1.loss_after - after) <= 1e-5 * before,
                   "tracked losses %.8g %.8g vs %.8g %.8g", s1.loss_before, s1.loss_after, before, after);
            EXPECT(fabs(s2.loss_after - after) <= 1e-6 * before, "reference loss %.10g vs %.10g", s2.loss_after,
                   after);
            /* density: constant per row (per_row) or per matrix; changes come in pairs of a drop and a regrow */
            int64_t changed = 0, rowbad = 0;
            for (int64_t i = 0; i < 14; i++) {
                if (bb_mask_count_row(L.m, i) != bb_mask_count_row(m0, i)) rowbad++;
                for (int64_t j = 0; j < 12; j++) {
                    changed += bb_mask_get(L.m, i, j) != bb_mask_get(m0, i, j);
                    if (!bb_mask_get(L.m, i, j)) EXPECT(L.wh[i * 12 + j] == 0, "pruned entry is 0");
                }
            }
            EXPECT(bb_mask_count(L.m) == bb_mask_count(m0), "density per matrix");
            if (per_row) EXPECT(rowbad == 0, "%lld rows changed density", (long long)rowbad);
            EXPECT(changed == 2 * s1.swapped, "%lld mask bits changed for %lld pairs", (long long)changed,
                   (long long)s1.swapped);
            free(wh2);
            bb_mask_destroy(&m2);
            bb_mask_destroy(&m0);
            bb_lora_destroy(&lo);
            free_layer(&L);
        }
}

/* Wide rows with a few percent regrown (the selection of the best candidates, not a full sort), with and
 * without ties in the drop scores (kept weights rounded to a few levels): the same mask and weights as the
 * reference, which scans every candidate. */
static void test_wide_rows_vs_ref(void) {
    const int64_t rows = 5, cols = 400;
    for (int ties = 0; ties < 2; ties++) {
        layer L = make_layer(rows, cols, 180, 50 + ties);
        if (ties)
            for (int64_t k = 0; k < rows * cols; k++) L.wh[k] = roundf(L.wh[k] * 4.0f) / 4.0f;
        float *wh2 = malloc(sizeof(float) * rows * cols);
        memcpy(wh2, L.wh, sizeof(float) * rows * cols);
        bb_mask *m2 = NULL;
        bb_mask_clone(L.m, &m2);
        bb_rigl_opts o = {.fraction = 0.05, .per_row = 1}; /* floor(0.05 * 220) = 11 of 220 per row */
        bb_rigl_stats s1, s2;
        EXPECT_OK(bb_rigl_step(&o, "wide", rows, cols, L.w, L.wh, NULL, L.h, NULL, L.m, &s1));
        EXPECT_OK(bb_rigl_step_ref(&o, "wide", rows, cols, L.w, wh2, NULL, L.h, NULL, m2, &s2));
        EXPECT(s1.swapped > rows && s1.swapped == s2.swapped, "ties %d: swapped %lld vs %lld", ties,
               (long long)s1.swapped, (long long)s2.swapped);
        EXPECT(memcmp(L.m->bits, m2->bits, bb_mask_nbytes(L.m)) == 0, "ties %d: masks differ from the reference",
               ties);
        double wd = 0;
        for (int64_t k = 0; k < rows * cols; k++) wd = fmax(wd, fabs(L.wh[k] - wh2[k]));
        EXPECT(wd < 1e-3, "ties %d: weights differ by %g", ties, wd);
        free(wh2);
        bb_mask_destroy(&m2);
        free_layer(&L);
    }
}

/* Rows split over threads (per_row): 1, 3 and 5 threads give the same weights, mask and tracked losses,
 * bit for bit, on a matrix whose row length is not a multiple of 8 (threads start at mask bytes). */
static void test_threads_identical(void) {
    const int64_t rows = 45, cols = 37;
    layer L = make_layer(rows, cols, 15, 91);
    float *ref_w = NULL;
    bb_mask *ref_m = NULL;
    bb_rigl_stats ref_s = {0};
    const int threads[3] = {1, 3, 5};
    for (int k = 0; k < 3; k++) {
        float *wh = malloc(sizeof(float) * rows * cols);
        memcpy(wh, L.wh, sizeof(float) * rows * cols);
        bb_mask *m = NULL;
        bb_mask_clone(L.m, &m);
        bb_rigl_opts o = {.fraction = 0.2, .per_row = 1, .threads = threads[k]};
        bb_rigl_stats st;
        EXPECT_OK(bb_rigl_step(&o, "threads", rows, cols, L.w, wh, NULL, L.h, NULL, m, &st));
        if (k == 0) {
            ref_w = wh;
            ref_m = m;
            ref_s = st;
            EXPECT(st.swapped > rows / 2, "1 thread: only %lld swaps", (long long)st.swapped);
            continue;
        }
        EXPECT(memcmp(wh, ref_w, sizeof(float) * rows * cols) == 0, "%d threads: weights differ", threads[k]);
        EXPECT(memcmp(m->bits, ref_m->bits, bb_mask_nbytes(m)) == 0, "%d threads: masks differ", threads[k]);
        EXPECT(st.swapped == ref_s.swapped && st.planned == ref_s.planned && st.loss_after == ref_s.loss_after,
               "%d threads: swapped %lld planned %lld loss %.17g vs %lld %lld %.17g", threads[k],
               (long long)st.swapped, (long long)st.planned, st.loss_after, (long long)ref_s.swapped,
               (long long)ref_s.planned, ref_s.loss_after);
        free(wh);
        bb_mask_destroy(&m);
    }
    free(ref_w);
    bb_mask_destroy(&ref_m);
    free_layer(&L);
}

/* One pair per row: afterwards the regrown coordinate is at its line minimum, ∂L/∂w = −2 G = 0. */
static void test_regrown_value_optimal(void) {
    layer L = make_layer(10, 9, 4, 77);
    bb_mask *m0 = NULL;
    bb_mask_clone(L.m, &m0);
    bb_rigl_opts o = {.fraction = 0.2, .per_row = 1}; /* floor(0.2 * 5) = 1 pair per row */
    bb_rigl_stats st;
    EXPECT_OK(bb_rigl_step(&o, "opt", 10, 9, L.w, L.wh, NULL, L.h, NULL, L.m, &st));
    EXPECT(st.planned == 10, "one pair planned per row: %lld", (long long)st.planned);
    int checked = 0;
    for (int64_t i = 0; i < 10; i++)
        for (int64_t j = 0; j < 9; j++) {
            if (bb_mask_get(m0, i, j) || !bb_mask_get(L.m, i, j)) continue;
            /* brute-force derivative of the row loss along (i, j) */
            double g = 0, scale = 0;
            for (int64_t q = 0; q < 9; q++) {
                double e = (double)L.w[i * 9 + q] - L.wh[i * 9 + q];
                g += e * L.h[q * 9 + j];
                scale += fabs(e * L.h[q * 9 + j]);
            }
            EXPECT(fabs(g) <= 1e-5 * scale, "row %lld: regrown (%lld) has G = %g of %g", (long long)i, (long long)j, g,
                   scale);
            checked++;
        }
    EXPECT(checked == st.swapped && checked > 0, "%d regrown weights checked", checked);
    o.fraction = 0;
    float copy[90];
    memcpy(copy, L.wh, sizeof copy);
    EXPECT_OK(bb_rigl_step(&o, "opt", 10, 9, L.w, L.wh, NULL, L.h, NULL, L.m, &st));
    EXPECT(st.swapped == 0 && memcmp(copy, L.wh, sizeof copy) == 0, "fraction 0 changes nothing");
    bb_mask_destroy(&m0);
    free_layer(&L);
    bb_config cfg;
    EXPECT_OK(bb_config_defaults(&cfg));
    bb_rigl_opts_from_config(&cfg, &o);
    EXPECT(o.fraction == 0.05 && o.per_row == 1, "defaults: fraction %g per_row %d", o.fraction, o.per_row);
    EXPECT_OK(bb_config_set(&cfg, "prune.groups=block"));
    bb_rigl_opts_from_config(&cfg, &o);
    EXPECT(o.per_row == 0, "prune.groups = block: per matrix");
}

int main(void) {
    TEST_RUN(test_hand_ties);
    TEST_RUN(test_fast_vs_ref);
    TEST_RUN(test_wide_rows_vs_ref);
    TEST_RUN(test_threads_identical);
    TEST_RUN(test_regrown_value_optimal);
    return TEST_DONE();
}
