/* scaffold.c — rank-k spectral scaffold with a thresholded residual, α_k schedule and stop-loss. */
#include "compress/scaffold.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/budget.h"
#include "linalg/backend.h"
#include "linalg/rsvd.h"

void bb_scaffold_destroy(bb_scaffold **s) {
    if (!s || !*s) return;
    free((*s)->s);
    free((*s)->u);
    free((*s)->v);
    free(*s);
    *s = NULL;
}

bb_status bb_scaffold_create(const char *name, int64_t rows, int64_t cols, const float *w, int R, uint64_t seed,
                             bb_scaffold **out) {
    *out = NULL;
    name = name ? name : "layer";
    int64_t mn = rows < cols ? rows : cols;
    BB_CHECK(rows >= 1 && cols >= 1 && w, BB_ERR_ARG, "%s: scaffold needs a weight", name);
    BB_CHECK(R >= 1 && R <= mn, BB_ERR_ARG, "%s: scaffold rank %d outside 1..%lld (min of %lld x %lld)", name, R,
             (long long)mn, (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows * cols; i++)
        BB_CHECK(isfinite(w[i]), BB_ERR_NUMERIC, "%s: weight has %g at row %lld, column %lld", name, (double)w[i],
                 (long long)(i / cols), (long long)(i % cols));
    bb_scaffold *sc;
    BB_CALL(bb_calloc((void **)&sc, 1, sizeof *sc, "scaffold"));
    sc->rows = rows;
    sc->cols = cols;
    sc->R = R;
    bb_status st = BB_OK;
    float *a = NULL, *s = NULL, *u = NULL, *vt = NULL;
    bb_rsvd_result rr;
    memset(&rr, 0, sizeof rr);
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&sc->s, sizeof(float) * (size_t)R, "scaffold sigma"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&sc->u, sizeof(float) * (size_t)(rows * R), "scaffold U"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&sc->v, sizeof(float) * (size_t)(cols * R), "scaffold V"));
    if (mn <= 1024) {
        const bb_linalg_backend *be;
        BB_CALL_GOTO(st, fail, bb_linalg_backend_get("cpu", &be));
        BB_CALL_GOTO(st, fail, bb_malloc((void **)&a, sizeof(float) * (size_t)(rows * cols), "scaffold SVD input"));
        BB_CALL_GOTO(st, fail, bb_malloc((void **)&s, sizeof(float) * (size_t)mn, "scaffold SVD sigma"));
        BB_CALL_GOTO(st, fail, bb_malloc((void **)&u, sizeof(float) * (size_t)(rows * mn), "scaffold SVD U"));
        BB_CALL_GOTO(st, fail, bb_malloc((void **)&vt, sizeof(float) * (size_t)(mn * cols), "scaffold SVD Vt"));
        memcpy(a, w, sizeof(float) * (size_t)(rows * cols));
        BB_CALL_GOTO(st, fail, be->svd(rows, cols, a, cols, s, u, mn, vt, cols));
        for (int t = 0; t < R; t++) {
            sc->s[t] = s[t];
            for (int64_t i = 0; i < rows; i++) sc->u[i * R + t] = u[i * mn + t];
            for (int64_t j = 0; j < cols; j++) sc->v[j * R + t] = vt[(int64_t)t * cols + j];
        }
    } else {
        bb_rsvd_opts ro;
        bb_rsvd_opts_default(&ro);
        ro.rank = R;
        ro.oversample = 16;
        ro.power_iters = 3;
        ro.seed = seed;
        ro.want_u = ro.want_v = 1;
        ro.residual = 0;
        BB_CALL_GOTO(st, fail, bb_rsvd_matrix(name, rows, cols, w, &ro, &rr));
        memcpy(sc->s, rr.s, sizeof(float) * (size_t)R);
        memcpy(sc->u, rr.u, sizeof(float) * (size_t)(rows * R));
        memcpy(sc->v, rr.v, sizeof(float) * (size_t)(cols * R));
    }
    *out = sc;
    sc = NULL;
fail:
    bb_rsvd_result_clear(&rr);
    free(a);
    free(s);
    free(u);
    free(vt);
    bb_scaffold_destroy(&sc);
    return st;
}

static bb_status state_check(const bb_scaffold *sc, const float *w, int k, double tau_rel, const bb_lora *lora,
                             const float *resid, const bb_mask *mask) {
    BB_CHECK(sc && w && lora && resid, BB_ERR_ARG, "scaffold state: scaffold, weight, factors and residual required");
    BB_CHECK(k >= 1 && k <= sc->R, BB_ERR_ARG, "scaffold state: wave rank %d outside 1..%d (the scaffold's R)", k,
             sc->R);
    BB_CHECK(lora->rows == sc->rows && lora->cols == sc->cols && lora->rank >= k, BB_ERR_ARG,
             "scaffold state: factors (%lld, %lld) rank %d for a (%lld, %lld) scaffold at rank %d",
             (long long)lora->rows, (long long)lora->cols, lora->rank, (long long)sc->rows, (long long)sc->cols, k);
    BB_CHECK(!mask || (mask->rows == sc->rows && mask->cols == sc->cols), BB_ERR_ARG,
             "scaffold state: mask of another shape");
    BB_CHECK(tau_rel >= 0 && isfinite(tau_rel), BB_ERR_ARG, "scaffold state: tau %g must be >= 0", tau_rel);
    return BB_OK;
}

static void fill_factors(const bb_scaffold *sc, int k, bb_lora *lora) {
    int r = lora->rank, R = sc->R;
    memset(lora->a, 0, sizeof(float) * (size_t)(lora->rows * r));
    memset(lora->b, 0, sizeof(float) * (size_t)(lora->cols * r));
    for (int t = 0; t < k; t++) {
        float q = sqrtf(sc->s[t]);
        for (int64_t i = 0; i < sc->rows; i++) lora->a[i * r + t] = q * sc->u[i * R + t];
        for (int64_t j = 0; j < sc->cols; j++) lora->b[(int64_t)t * sc->cols + j] = q * sc->v[j * R + t];
    }
}

/* resid holds W − W_k on entry: threshold it, set the mask, fill the stats. */
static void threshold(const bb_scaffold *sc, const float *w, const bb_lora *lora, double tau, float *resid,
                      bb_mask *mask, bb_scaffold_stats *st) {
    int64_t n = sc->rows * sc->cols, kept = 0;
    for (int64_t e = 0; e < n; e++) {
        int keep = fabs((double)resid[e]) >= tau;
        if (!keep) resid[e] = 0;
        kept += keep;
        if (mask) bb_mask_set(mask, e / sc->cols, e % sc->cols, keep);
    }
    if (!st) return;
    double err = 0, nrm = 0;
    for (int64_t i = 0; i < sc->rows; i++)
        for (int64_t j = 0; j < sc->cols; j++) {
            double ab = 0;
            for (int t = 0; t < lora->rank; t++)
                ab += (double)lora->a[i * lora->rank + t] * lora->b[(int64_t)t * sc->cols + j];
            double d = (double)w[i * sc->cols + j] - resid[i * sc->cols + j] - ab;
            err += d * d;
            nrm += (double)w[i * sc->cols + j] * w[i * sc->cols + j];
        }
    st->tau = tau;
    st->kept = kept;
    st->kept_frac = n ? (double)kept / (double)n : 0;
    st->rel_err = nrm > 0 ? sqrt(err / nrm) : 0;
}

bb_status bb_scaffold_state(const bb_scaffold *sc, const float *w, int k, double tau_rel, bb_lora *lora, float *resid,
                            bb_mask *mask, bb_scaffold_stats *st) {
    BB_CALL(state_check(sc, w, k, tau_rel, lora, resid, mask));
    fill_factors(sc, k, lora);
    const bb_linalg_backend *be;
    BB_CALL(bb_linalg_backend_get("cpu", &be));
    memcpy(resid, w, sizeof(float) * (size_t)(sc->rows * sc->cols));
    BB_CALL(be->gemm(BB_OP_N, BB_OP_N, sc->rows, sc->cols, k, -1.0f, lora->a, lora->rank, lora->b, sc->cols, 1.0f,
                     resid, sc->cols));
    threshold(sc, w, lora, tau_rel * sc->s[0], resid, mask, st);
    return BB_OK;
}

bb_status bb_scaffold_state_ref(const bb_scaffold *sc, const float *w, int k, double tau_rel, bb_lora *lora,
                                float *resid, bb_mask *mask, bb_scaffold_stats *st) {
    BB_CALL(state_check(sc, w, k, tau_rel, lora, resid, mask));
    fill_factors(sc, k, lora);
    for (int64_t i = 0; i < sc->rows; i++)
        for (int64_t j = 0; j < sc->cols; j++) {
            double wk = 0;
            for (int t = 0; t < k; t++) wk += (double)sc->s[t] * sc->u[i * sc->R + t] * sc->v[j * sc->R + t];
            resid[i * sc->cols + j] = (float)((double)w[i * sc->cols + j] - wk);
        }
    threshold(sc, w, lora, tau_rel * sc->s[0], resid, mask, st);
    return BB_OK;
}

double bb_scaffold_alpha(int k, int R) { return bb_budget_alpha(k, R, 0.3, 0.7); }

void bb_scaffold_mark_base(const double *usage, int64_t n, double alpha, uint8_t *base) {
    double mx = 0;
    for (int64_t b = 0; b < n; b++)
        if (usage[b] > mx) mx = usage[b];
    for (int64_t b = 0; b < n; b++) base[b] = mx > 0 && usage[b] / mx < alpha;
}

int bb_scaffold_stoploss(double prev_loss, double new_loss, double max_rise, double *tau_rel) {
    if (isfinite(new_loss) && new_loss <= prev_loss * (1 + max_rise)) return 0;
    *tau_rel *= 0.5;
    return 1;
}
