/* heal.c — closed-form low-rank compensation and Adam healing of LoRA factors against tr(E' H E'ᵀ). */
#include "compress/heal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compress/usage.h"
#include "core/events.h"
#include "core/finite.h"
#include "core/log.h"
#include "core/reduce.h"
#include "core/rng.h"
#include "linalg/rsvd.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static bb_status pick_backend(const bb_linalg_backend **be) {
    if (!*be) BB_CALL(bb_linalg_backend_default_get(be));
    return BB_OK;
}

static bb_status check_finite(const char *name, const char *what, const float *p, int64_t rows, int64_t cols) {
    if (!p) return BB_OK;
    int64_t k = bb_first_nonfinite(p, rows * cols);
    BB_CHECK(k < 0, BB_ERR_NUMERIC, "%s: %s has %g at row %lld, column %lld", name, what, k < 0 ? 0.0 : (double)p[k],
             (long long)(k < 0 ? 0 : k / cols), (long long)(k < 0 ? 0 : k % cols));
    return BB_OK;
}

static bb_status check_lora(const char *name, const bb_lora *l) {
    BB_CHECK(l && l->a && l->b && l->rank >= 1 && l->rows >= 1 && l->cols >= 1, BB_ERR_ARG,
             "%s: low-rank factors missing or empty (create them with bb_lora_create)", name);
    return BB_OK;
}

void bb_heal_fit_opts_default(bb_heal_fit_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.01;
    o->max_retries = 6;
    o->svd = BB_HEAL_SVD_AUTO;
    o->exact_max = 1024;
    o->oversample = 16;
    o->power_iters = 3;
}

void bb_heal_adam_opts_default(bb_heal_adam_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 200;
    o->lr = 2e-4;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

/* ---- the damped Cholesky factor -------------------------------------------------------- */

/* l (n, n) = lower Cholesky factor of h + λ·mean(diag h)·I, upper triangle zeroed. *zero = 1
 * (and l untouched) when diag h is all zero, i.e. h = 0 for a Gram matrix. */
static bb_status damped_cholesky(const bb_heal_fit_opts *o, const bb_linalg_backend *be, const char *name,
                                 const float *h, int64_t n, float *l, double *damp_used, int *zero) {
    double mean = 0;
    for (int64_t j = 0; j < n; j++) {
        BB_CHECK(h[j * n + j] >= 0, BB_ERR_NUMERIC, "%s: H[%lld][%lld] = %g is negative: not a Gram matrix", name,
                 (long long)j, (long long)j, (double)h[j * n + j]);
        mean += h[j * n + j];
    }
    mean /= (double)n;
    *zero = mean == 0;
    if (*zero) return BB_OK;
    double damp = o->damp;
    for (int attempt = 0; attempt <= o->max_retries; attempt++) {
        bb_sub_f32(l, h, NULL, n * n); /* a copy over the threads: 3.3 GB at a 70B ffn_down */
        for (int64_t j = 0; j < n; j++) l[j * n + j] += (float)(damp * mean);
        int64_t bad = -1;
        int quiet = bb_error_set_quiet(1);
        bb_status st = be->potrf(BB_UPLO_LOWER, n, l, n, &bad);
        bb_error_set_quiet(quiet);
        if (st == BB_OK) {
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i + 1; j < n; j++) l[i * n + j] = 0;
            if (attempt > 0)
                bb_warn("%s: H factored with damping %g after %d failed attempts", name, damp, attempt);
            *damp_used = damp;
            return BB_OK;
        }
        if (st != BB_ERR_NUMERIC) return st;
        damp = damp > 0 ? damp * 10 : 1e-6;
    }
    BB_CHECK(0, BB_ERR_NUMERIC,
             "%s: H + damping * mean(diag H) * I is not positive definite up to damping %g; raise the healing "
             "damping (bb_heal_fit_opts.damp)",
             name, damp / 10);
}

bb_status bb_heal_whiten(const bb_heal_fit_opts *o, const char *name, const float *h, int64_t cols, float *l,
                         double *damp_used, int *zero) {
    bb_heal_fit_opts def;
    if (!o) {
        bb_heal_fit_opts_default(&def);
        o = &def;
    }
    const bb_linalg_backend *be = o->backend;
    BB_CALL(pick_backend(&be));
    BB_CHECK(o->damp >= 0 && isfinite(o->damp), BB_ERR_ARG, "%s: damping %g must be >= 0", name, o->damp);
    BB_CALL(check_finite(name, "H", h, cols, cols));
    return damped_cholesky(o, be, name, h, cols, l, damp_used, zero);
}

/* loss after = L0 − 2⟨A, G0 Bᵀ⟩ + ⟨AᵀA, B H Bᵀ⟩ */
static bb_status factor_loss(const bb_linalg_backend *be, const float *g0, double l0, const float *h,
                             const bb_lora *f, double *loss) {
    return bb_heal_grad(be, g0, l0, h, f, loss, NULL, NULL);
}

bb_status bb_heal_closed_form(const bb_heal_fit_opts *o, const char *name, const float *w, const float *w_hat,
                              const float *h, bb_lora *lora, bb_heal_fit_stats *st) {
    double t0 = now_s();
    bb_heal_fit_opts def;
    if (!o) {
        bb_heal_fit_opts_default(&def);
        o = &def;
    }
    name = name ? name : "layer";
    BB_CALL(check_lora(name, lora));
    BB_CHECK(w && h, BB_ERR_ARG, "%s: closed-form fit needs W and H", name);
    BB_CHECK(o->damp >= 0 && isfinite(o->damp), BB_ERR_ARG, "%s: damping %g must be >= 0", name, o->damp);
    const bb_linalg_backend *be = o->backend;
    BB_CALL(pick_backend(&be));
    int64_t rows = lora->rows, cols = lora->cols, mn = rows < cols ? rows : cols;
    int r = lora->rank, k = r < mn ? r : (int)mn;
    BB_CALL(check_finite(name, "W", w, rows, cols));
    BB_CALL(check_finite(name, "the compressed weight", w_hat, rows, cols));
    BB_CALL(check_finite(name, "H", h, cols, cols));
    size_t nw = (size_t)(rows * cols), nh = (size_t)(cols * cols);
    float *e = NULL, *m = NULL, *g0 = NULL, *l = NULL, *s = NULL, *u = NULL, *vt = NULL;
    int held_l = 0, held_e = 0;
    bb_rsvd_result rr;
    memset(&rr, 0, sizeof rr);
    bb_heal_fit_stats fs;
    memset(&fs, 0, sizeof fs);
    bb_status stt = BB_OK;
    memset(lora->a, 0, sizeof(float) * (size_t)(rows * r));
    memset(lora->b, 0, sizeof(float) * (size_t)(cols * r));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&e, sizeof(float) * nw, "closed-form fit: E"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&m, sizeof(float) * nw, "closed-form fit: E L"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&g0, sizeof(float) * nw, "closed-form fit: E H"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&l, sizeof(float) * nh, "closed-form fit: Cholesky factor"));
    /* Phases as timing events (heal.cf.*): the residual E H, the whitened E L, its SVD, the factors' loss. The
     * passes over the whole weight run over the process's threads (core/reduce.h: same bits for any count). */
    bb_event_begin("heal.cf.residual");
    bb_sub_f32(e, w, w_hat, (int64_t)nw);
    /* E is read by E H and E L: a device backend keeps one copy (released after E L) */
    stt = bb_linalg_hold(be, e, rows, cols, cols);
    held_e = stt == BB_OK;
    if (stt == BB_OK) stt = be->gemm(BB_OP_N, BB_OP_N, rows, cols, cols, 1.0f, e, cols, h, cols, 0.0f, g0, cols);
    double l0 = stt == BB_OK ? bb_dot_f64(e, g0, (int64_t)nw) : 0;
    bb_event_end("heal.cf.residual", 2.0 * (double)rows * cols * cols, 0);
    BB_CALL_GOTO(stt, out, stt);
    fs.loss_before = fs.loss_after = l0;
    fs.flops = 2.0 * (double)rows * (double)cols * (double)cols;
    int zero = 0;
    bb_event_begin("heal.cf.whiten");
    stt = damped_cholesky(o, be, name, h, cols, l, &fs.damp_used, &zero);
    /* L is read by E L and the triangular solve: a device backend keeps one copy (released at out) */
    if (stt == BB_OK && !zero) {
        stt = bb_linalg_hold(be, l, cols, cols, cols);
        held_l = stt == BB_OK;
    }
    if (stt == BB_OK && !zero) stt = be->gemm(BB_OP_N, BB_OP_N, rows, cols, cols, 1.0f, e, cols, l, cols, 0.0f, m, cols);
    if (held_e) bb_linalg_release(be, e);
    held_e = 0;
    double total = stt == BB_OK && !zero ? bb_dot_f64(m, NULL, (int64_t)nw) : 0;
    bb_event_end("heal.cf.whiten", zero ? 0 : (double)cols * cols * cols / 3 + 2.0 * (double)rows * cols * cols, 0);
    BB_CALL_GOTO(stt, out, stt);
    if (zero) goto done;
    fs.flops += (double)cols * cols * cols / 3 + 2.0 * (double)rows * cols * cols;
    int exact = o->svd == BB_HEAL_SVD_EXACT || (o->svd == BB_HEAL_SVD_AUTO && mn <= o->exact_max);
    bb_event_begin("heal.cf.svd");
    const float *sv;       /* (k) */
    const float *uu;       /* U (rows, ldu) */
    int64_t ldu;
    if (exact) {
        BB_CALL_GOTO(stt, out, bb_malloc((void **)&s, sizeof(float) * (size_t)mn, "closed-form fit: singular values"));
        BB_CALL_GOTO(stt, out, bb_malloc((void **)&u, sizeof(float) * (size_t)(rows * mn), "closed-form fit: U"));
        BB_CALL_GOTO(stt, out, bb_malloc((void **)&vt, sizeof(float) * (size_t)(mn * cols), "closed-form fit: Vt"));
        BB_CALL_GOTO(stt, out, be->svd(rows, cols, m, cols, s, u, mn, vt, cols));
        fs.flops += 4.0 * (double)rows * cols * mn;
        sv = s;
        uu = u;
        ldu = mn;
        for (int t = 0; t < k; t++)
            for (int64_t j = 0; j < cols; j++)
                lora->b[(int64_t)t * cols + j] = sqrtf(sv[t]) * vt[(int64_t)t * cols + j];
    } else {
        bb_rsvd_opts ro;
        bb_rsvd_opts_default(&ro);
        ro.rank = k;
        ro.oversample = o->oversample;
        ro.power_iters = o->power_iters;
        ro.seed = o->seed;
        ro.want_u = ro.want_v = 1;
        ro.residual = 0;
        ro.backend = be;
        BB_CALL_GOTO(stt, out, bb_rsvd_matrix(name, rows, cols, m, &ro, &rr));
        fs.flops += rr.flops;
        sv = rr.s;
        uu = rr.u;
        ldu = k;
        for (int t = 0; t < k; t++)
            for (int64_t j = 0; j < cols; j++) lora->b[(int64_t)t * cols + j] = sqrtf(sv[t]) * rr.v[j * k + t];
    }
    bb_event_end("heal.cf.svd", 0, 0);
    bb_event_begin("heal.cf.finish");
    double kept = 0;
    for (int t = 0; t < k; t++) {
        kept += (double)sv[t] * sv[t];
        for (int64_t i = 0; i < rows; i++) lora->a[i * r + t] = uu[i * ldu + t] * sqrtf(sv[t]);
    }
    fs.sigma_r = k == r ? sv[k - 1] : 0;
    fs.tail = total - kept > 0 ? total - kept : 0;
    /* B := S^{1/2} Vᵀ L⁻¹ */
    BB_CALL_GOTO(stt, out, be->trsm(BB_SIDE_RIGHT, BB_UPLO_LOWER, BB_OP_N, r, cols, 1.0f, l, cols, lora->b, cols));
    fs.flops += (double)r * cols * cols;
    BB_CALL_GOTO(stt, out, factor_loss(be, g0, l0, h, lora, &fs.loss_after));
    fs.flops += bb_heal_step_flops(rows, cols, r, 0);
    bb_event_end("heal.cf.finish", 0, 0);
done:
    fs.seconds = now_s() - t0;
    if (st) *st = fs;
out:
    if (held_e) bb_linalg_release(be, e);
    if (held_l) bb_linalg_release(be, l);
    bb_rsvd_result_clear(&rr);
    free(e);
    free(m);
    free(g0);
    free(l);
    free(s);
    free(u);
    free(vt);
    return stt;
}

/* ---- the plain-C reference ------------------------------------------------------------- */

/* One-sided Jacobi SVD of x (m, n), stored by columns: x[j * m + i]. On return the columns of
 * x are U_j s_j (not normalized), v (n, n) by columns holds V, and x_in = (x_out) Vᵀ. */
static void jacobi_svd_ref(double *x, int64_t m, int64_t n, double *v) {
    for (int64_t i = 0; i < n * n; i++) v[i] = 0;
    for (int64_t i = 0; i < n; i++) v[i * n + i] = 1;
    for (int sweep = 0; sweep < 80; sweep++) {
        int rotated = 0;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double *xp = x + p * m, *xq = x + q * m;
                double a = 0, b = 0, g = 0;
                for (int64_t i = 0; i < m; i++) {
                    a += xp[i] * xp[i];
                    b += xq[i] * xq[i];
                    g += xp[i] * xq[i];
                }
                if (g == 0 || fabs(g) <= 1e-15 * sqrt(a * b)) continue;
                rotated = 1;
                double zeta = (b - a) / (2 * g);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int64_t i = 0; i < m; i++) {
                    double u1 = xp[i], u2 = xq[i];
                    xp[i] = c * u1 - s * u2;
                    xq[i] = s * u1 + c * u2;
                }
                double *vp = v + p * n, *vq = v + q * n;
                for (int64_t i = 0; i < n; i++) {
                    double u1 = vp[i], u2 = vq[i];
                    vp[i] = c * u1 - s * u2;
                    vq[i] = s * u1 + c * u2;
                }
            }
        if (!rotated) break;
    }
}

bb_status bb_heal_closed_form_ref(const bb_heal_fit_opts *o, const char *name, const float *w, const float *w_hat,
                                  const float *h, bb_lora *lora, bb_heal_fit_stats *st) {
    bb_heal_fit_opts def;
    if (!o) {
        bb_heal_fit_opts_default(&def);
        o = &def;
    }
    name = name ? name : "layer";
    BB_CALL(check_lora(name, lora));
    BB_CHECK(w && h, BB_ERR_ARG, "%s: closed-form fit needs W and H", name);
    BB_CHECK(o->damp >= 0, BB_ERR_ARG, "%s: damping %g must be >= 0", name, o->damp);
    int64_t rows = lora->rows, cols = lora->cols;
    int r = lora->rank;
    BB_CALL(check_finite(name, "W", w, rows, cols));
    BB_CALL(check_finite(name, "the compressed weight", w_hat, rows, cols));
    BB_CALL(check_finite(name, "H", h, cols, cols));
    memset(lora->a, 0, sizeof(float) * (size_t)(rows * r));
    memset(lora->b, 0, sizeof(float) * (size_t)(cols * r));
    bb_heal_fit_stats fs;
    memset(&fs, 0, sizeof fs);
    double *l = calloc((size_t)(cols * cols), sizeof(double));
    double *x = calloc((size_t)(rows * cols), sizeof(double)); /* E·L by columns */
    double *v = calloc((size_t)(cols * cols), sizeof(double));
    double *e = calloc((size_t)(rows * cols), sizeof(double));
    int64_t *order = calloc((size_t)cols, sizeof(int64_t));
    bb_status stt = BB_OK;
    BB_CHECK_GOTO(stt, out, l && x && v && e && order, BB_ERR_OOM, "out of memory: closed-form reference (%lld x %lld)",
                  (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows * cols; i++) e[i] = (double)w[i] - (w_hat ? (double)w_hat[i] : 0.0);
    BB_CALL_GOTO(stt, out, bb_heal_loss_ref(name, w, w_hat, NULL, rows, cols, h, &fs.loss_before));
    fs.loss_after = fs.loss_before;
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) mean += h[j * cols + j];
    mean /= (double)cols;
    if (mean == 0) goto done;
    double damp = o->damp;
    int ok = 0;
    for (int attempt = 0; attempt <= o->max_retries && !ok; attempt++) {
        ok = 1;
        for (int64_t i = 0; i < cols && ok; i++)
            for (int64_t j = 0; j <= i; j++) {
                double s = (double)h[i * cols + j] + (i == j ? damp * mean : 0);
                for (int64_t t = 0; t < j; t++) s -= l[i * cols + t] * l[j * cols + t];
                if (i == j) {
                    if (!(s > 0)) {
                        ok = 0;
                        break;
                    }
                    l[i * cols + i] = sqrt(s);
                } else {
                    l[i * cols + j] = s / l[j * cols + j];
                }
            }
        if (!ok) damp = damp > 0 ? damp * 10 : 1e-6;
    }
    BB_CHECK_GOTO(stt, out, ok, BB_ERR_NUMERIC, "%s: damped H is not positive definite (reference)", name);
    fs.damp_used = damp;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t t = j; t < cols; t++) s += e[i * cols + t] * l[t * cols + j];
            x[j * rows + i] = s;
        }
    double total = 0;
    for (int64_t i = 0; i < rows * cols; i++) total += x[i] * x[i];
    jacobi_svd_ref(x, rows, cols, v);
    /* singular values by decreasing size, ties by column */
    for (int64_t j = 0; j < cols; j++) order[j] = j;
    double *sig = e; /* reuse: E no longer needed */
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t i = 0; i < rows; i++) s += x[j * rows + i] * x[j * rows + i];
        sig[j] = sqrt(s);
    }
    for (int64_t a = 1; a < cols; a++)
        for (int64_t b = a; b > 0 && sig[order[b]] > sig[order[b - 1]]; b--) {
            int64_t t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    int64_t mn = rows < cols ? rows : cols;
    int k = r < mn ? r : (int)mn;
    double kept = 0;
    for (int t = 0; t < k; t++) {
        int64_t j = order[t];
        double s = sig[j], rs = sqrt(s);
        kept += s * s;
        /* A = U S^{1/2} = X_j / s^{1/2};  B row t = s^{1/2} V_jᵀ, then solved against L */
        for (int64_t i = 0; i < rows; i++) lora->a[i * r + t] = s > 0 ? (float)(x[j * rows + i] / rs) : 0.0f;
        for (int64_t c = cols - 1; c >= 0; c--) {
            /* solve y L = z: y_c = (z_c − Σ_{t>c} y_t L[t][c]) / L[c][c] */
            double z = rs * v[j * cols + c];
            for (int64_t q = c + 1; q < cols; q++) z -= (double)lora->b[(int64_t)t * cols + q] * l[q * cols + c];
            lora->b[(int64_t)t * cols + c] = (float)(z / l[c * cols + c]);
        }
        if (t == k - 1 && k == r) fs.sigma_r = s;
    }
    fs.tail = total - kept > 0 ? total - kept : 0;
    BB_CALL_GOTO(stt, out, bb_heal_loss_ref(name, w, w_hat, lora, rows, cols, h, &fs.loss_after));
done:
    if (st) *st = fs;
out:
    free(l);
    free(x);
    free(v);
    free(e);
    free(order);
    return stt;
}

/* ---- loss and gradients ---------------------------------------------------------------- */

bb_status bb_heal_loss(const char *name, const float *w, const float *w_hat, const bb_lora *lora, int64_t rows,
                       int64_t cols, const float *h, double *loss) {
    name = name ? name : "layer";
    BB_CHECK(rows >= 1 && cols >= 1 && w && h, BB_ERR_ARG, "%s: loss needs W and H of a (%lld, %lld) layer", name,
             (long long)rows, (long long)cols);
    BB_CHECK(!lora || (lora->rows == rows && lora->cols == cols), BB_ERR_ARG,
             "%s: factors of shape (%lld, %lld) for a (%lld, %lld) layer", name, (long long)(lora ? lora->rows : 0),
             (long long)(lora ? lora->cols : 0), (long long)rows, (long long)cols);
    size_t n = (size_t)(rows * cols);
    float *eff = NULL;
    BB_CALL(bb_malloc((void **)&eff, sizeof(float) * n, "healing loss: effective weight"));
    if (w_hat)
        memcpy(eff, w_hat, sizeof(float) * n);
    else
        memset(eff, 0, sizeof(float) * n);
    if (lora) bb_lora_merge(lora, eff);
    bb_status st = bb_usage_recon_error(name, NULL, rows, cols, w, eff, h, loss);
    free(eff);
    return st;
}

bb_status bb_heal_loss_ref(const char *name, const float *w, const float *w_hat, const bb_lora *lora, int64_t rows,
                           int64_t cols, const float *h, double *loss) {
    name = name ? name : "layer";
    BB_CHECK(rows >= 1 && cols >= 1 && w && h, BB_ERR_ARG, "%s: loss needs W and H", name);
    double *e = malloc(sizeof(double) * (size_t)cols);
    BB_CHECK(e, BB_ERR_OOM, "out of memory: healing loss reference");
    double sum = 0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++) {
            double ab = 0;
            if (lora)
                for (int t = 0; t < lora->rank; t++)
                    ab += (double)lora->a[i * lora->rank + t] * lora->b[(int64_t)t * cols + j];
            e[j] = (double)w[i * cols + j] - (w_hat ? (double)w_hat[i * cols + j] : 0.0) - ab;
        }
        for (int64_t j = 0; j < cols; j++)
            for (int64_t q = 0; q < cols; q++) sum += e[j] * (double)h[j * cols + q] * e[q];
    }
    free(e);
    BB_CHECK(isfinite(sum), BB_ERR_NUMERIC, "%s: healing loss is %g", name, sum);
    *loss = sum;
    return BB_OK;
}

double bb_heal_step_flops(int64_t rows, int64_t cols, int rank, int train_weights) {
    double m = (double)rows, n = (double)cols, r = rank;
    if (train_weights) return 2 * m * n * n + 2 * m * n * r + 4 * m * n * r + 2 * m * n;
    return 2 * r * n * n + 4 * m * n * r + 4 * r * r * (m + n);
}

typedef struct {
    float *p, *q, *rr, *s, *t; /* P (r, cols), Q (rows, r), R (r, cols), S, T (r, r) */
} grad_ws;

static bb_status grad_ws_alloc(grad_ws *ws, int64_t rows, int64_t cols, int r) {
    size_t n = (size_t)(2 * r * cols + rows * r + 2 * r * r);
    BB_CALL(bb_malloc((void **)&ws->p, sizeof(float) * n, "healing gradient workspace"));
    ws->rr = ws->p + r * cols;
    ws->q = ws->rr + r * cols;
    ws->s = ws->q + rows * r;
    ws->t = ws->s + r * r;
    return BB_OK;
}

static bb_status grad_fast(const bb_linalg_backend *be, const float *g0, double l0, const float *h, const bb_lora *f,
                           grad_ws *ws, double *loss, float *ga, float *gb) {
    int64_t m = f->rows, n = f->cols;
    int r = f->rank;
    BB_CALL(be->gemm(BB_OP_N, BB_OP_N, r, n, n, 1.0f, f->b, n, h, n, 0.0f, ws->p, n));        /* P = B H */
    BB_CALL(be->gemm(BB_OP_N, BB_OP_T, m, r, n, 1.0f, g0, n, f->b, n, 0.0f, ws->q, r));       /* Q = G0 Bᵀ */
    BB_CALL(be->gemm(BB_OP_N, BB_OP_T, r, r, n, 1.0f, ws->p, n, f->b, n, 0.0f, ws->s, r));    /* S = P Bᵀ */
    BB_CALL(be->gemm(BB_OP_T, BB_OP_N, r, r, m, 1.0f, f->a, r, f->a, r, 0.0f, ws->t, r));     /* T = AᵀA */
    double aq = 0, ts = 0;
    for (int64_t i = 0; i < m * r; i++) aq += (double)f->a[i] * ws->q[i];
    for (int i = 0; i < r * r; i++) ts += (double)ws->t[i] * ws->s[i];
    *loss = l0 - 2 * aq + ts;
    if (ga) {
        BB_CALL(be->gemm(BB_OP_N, BB_OP_N, m, r, r, 2.0f, f->a, r, ws->s, r, 0.0f, ga, r)); /* 2 A S */
        for (int64_t i = 0; i < m * r; i++) ga[i] -= 2.0f * ws->q[i];
    }
    if (gb) {
        BB_CALL(be->gemm(BB_OP_T, BB_OP_N, r, n, m, 1.0f, f->a, r, g0, n, 0.0f, ws->rr, n));  /* R = Aᵀ G0 */
        BB_CALL(be->gemm(BB_OP_N, BB_OP_N, r, n, r, 2.0f, ws->t, r, ws->p, n, 0.0f, gb, n)); /* 2 T P */
        for (int64_t i = 0; i < r * n; i++) gb[i] -= 2.0f * ws->rr[i];
    }
    return BB_OK;
}

bb_status bb_heal_grad(const bb_linalg_backend *be, const float *g0, double l0, const float *h, const bb_lora *lora,
                       double *loss, float *ga, float *gb) {
    BB_CALL(check_lora("healing gradient", lora));
    BB_CHECK(g0 && h && loss, BB_ERR_ARG, "healing gradient: G0, H and the loss output are required");
    BB_CALL(pick_backend(&be));
    grad_ws ws;
    BB_CALL(grad_ws_alloc(&ws, lora->rows, lora->cols, lora->rank));
    bb_status st = grad_fast(be, g0, l0, h, lora, &ws, loss, ga, gb);
    free(ws.p);
    return st;
}

/* E' (rows, cols) = w − w_hat − A·B and G = E'·H, in double by plain loops; returns the loss. */
static double residual_ref(const float *w, const float *w_hat, const float *h, const bb_lora *f, double *e,
                           double *g) {
    int64_t m = f->rows, n = f->cols;
    int r = f->rank;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double ab = 0;
            for (int t = 0; t < r; t++) ab += (double)f->a[i * r + t] * f->b[(int64_t)t * n + j];
            e[i * n + j] = (double)w[i * n + j] - (w_hat ? (double)w_hat[i * n + j] : 0.0) - ab;
        }
    double loss = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t q = 0; q < n; q++) s += e[i * n + q] * (double)h[q * n + j];
            g[i * n + j] = s;
            loss += s * e[i * n + j];
        }
    return loss;
}

/* ∂L/∂A = −2 G Bᵀ, ∂L/∂B = −2 Aᵀ G */
static void factor_grads_ref(const bb_lora *f, const double *g, float *ga, float *gb) {
    int64_t m = f->rows, n = f->cols;
    int r = f->rank;
    if (ga)
        for (int64_t i = 0; i < m; i++)
            for (int t = 0; t < r; t++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) s += g[i * n + j] * f->b[(int64_t)t * n + j];
                ga[i * r + t] = (float)(-2 * s);
            }
    if (gb)
        for (int t = 0; t < r; t++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t i = 0; i < m; i++) s += (double)f->a[i * r + t] * g[i * n + j];
                gb[(int64_t)t * n + j] = (float)(-2 * s);
            }
}

bb_status bb_heal_grad_ref(const float *w, const float *w_hat, const float *h, const bb_lora *lora, double *loss,
                           float *ga, float *gb) {
    BB_CALL(check_lora("healing gradient", lora));
    size_t n = (size_t)(lora->rows * lora->cols);
    double *e = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n);
    if (!e || !g) {
        free(e);
        free(g);
        BB_CHECK(0, BB_ERR_OOM, "out of memory: healing gradient reference");
    }
    *loss = residual_ref(w, w_hat, h, lora, e, g);
    factor_grads_ref(lora, g, ga, gb);
    free(e);
    free(g);
    return BB_OK;
}

/* ---- Adam ------------------------------------------------------------------------------ */

static void adam_update(float *p, const float *g, float *m, float *v, int64_t n, const bb_heal_adam_opts *o, int t) {
    double c1 = 1 - pow(o->beta1, t), c2 = 1 - pow(o->beta2, t);
    float b1 = (float)o->beta1, b2 = (float)o->beta2;
    for (int64_t i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / c1, vh = v[i] / c2;
        p[i] -= (float)(o->lr * mh / (sqrt(vh) + o->eps));
    }
}

static bb_status adam_check(const bb_heal_adam_opts *o, const char *name, const float *w, const float *w_hat,
                            const float *h, const bb_lora *lora) {
    BB_CALL(check_lora(name, lora));
    BB_CHECK(w && w_hat && h, BB_ERR_ARG, "%s: healing needs W, the compressed weight and H", name);
    BB_CHECK(o->steps >= 0 && o->lr > 0 && isfinite(o->lr) && o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 &&
                 o->beta2 < 1 && o->eps > 0,
             BB_ERR_ARG, "%s: Adam options: steps %d >= 0, lr %g > 0, betas %g, %g in [0, 1), eps %g > 0 required",
             name, o->steps, o->lr, o->beta1, o->beta2, o->eps);
    BB_CHECK(!o->train_weights || (o->mask && o->mask->rows == lora->rows && o->mask->cols == lora->cols), BB_ERR_ARG,
             "%s: training the kept weights needs the layer's mask of shape (%lld, %lld)", name,
             (long long)lora->rows, (long long)lora->cols);
    int nonzero = 0;
    for (int64_t i = 0; i < lora->rows * lora->rank && !nonzero; i++) nonzero = lora->a[i] != 0;
    for (int64_t i = 0; i < lora->cols * lora->rank && !nonzero; i++) nonzero = lora->b[i] != 0;
    BB_CHECK(nonzero || o->train_weights, BB_ERR_ARG,
             "%s: the low-rank factors are all zero, a stationary point of the loss: start from "
             "bb_heal_closed_form or bb_heal_lora_init",
             name);
    BB_CALL(check_finite(name, "W", w, lora->rows, lora->cols));
    BB_CALL(check_finite(name, "the compressed weight", w_hat, lora->rows, lora->cols));
    return BB_OK;
}

/* The best iterate seen: Adam is not a descent method, and near the optimum (e.g. from the closed
 * form) its last step can land slightly above its start. The parameters with the lowest recorded
 * loss are kept and restored at the end, so the returned loss is never above the starting one. */
typedef struct {
    float *a, *b, *w; /* copies of A, B and (train_weights) Ŵ */
    int have;
} best_iterate;

static bb_status best_alloc(best_iterate *bi, const bb_lora *l, int train_weights) {
    memset(bi, 0, sizeof *bi);
    size_t na = (size_t)(l->rows * l->rank), nb = (size_t)(l->rank * l->cols);
    size_t nw = train_weights ? (size_t)(l->rows * l->cols) : 0;
    BB_CALL(bb_malloc((void **)&bi->a, sizeof(float) * (na + nb + nw), "healing: best iterate"));
    bi->b = bi->a + na;
    bi->w = train_weights ? bi->b + nb : NULL;
    return BB_OK;
}

static void best_save(best_iterate *bi, const bb_lora *l, const float *w_hat) {
    memcpy(bi->a, l->a, sizeof(float) * (size_t)(l->rows * l->rank));
    memcpy(bi->b, l->b, sizeof(float) * (size_t)(l->rank * l->cols));
    if (bi->w) memcpy(bi->w, w_hat, sizeof(float) * (size_t)(l->rows * l->cols));
    bi->have = 1;
}

static void best_restore(const best_iterate *bi, bb_lora *l, float *w_hat) {
    if (!bi->have) return;
    memcpy(l->a, bi->a, sizeof(float) * (size_t)(l->rows * l->rank));
    memcpy(l->b, bi->b, sizeof(float) * (size_t)(l->rank * l->cols));
    if (bi->w) memcpy(w_hat, bi->w, sizeof(float) * (size_t)(l->rows * l->cols));
}

/* Record the loss of step t (parameters before its update); keep them when they are the best. A
 * non-finite loss restores the best parameters and fails. */
static bb_status record(const char *name, double loss, int t, double *curve, bb_heal_adam_stats *s,
                        best_iterate *bi, bb_lora *l, float *w_hat) {
    if (!isfinite(loss)) {
        best_restore(bi, l, w_hat);
        BB_CHECK(0, BB_ERR_NUMERIC,
                 "%s: healing loss became %g at step %d; lower heal.lr (the best factors so far are kept)", name,
                 loss, t);
    }
    if (curve) curve[t] = loss;
    if (t == 0) s->loss_before = s->best = loss;
    if (t == 0 || loss < s->best) {
        s->best = loss;
        s->best_step = t;
        best_save(bi, l, w_hat);
    }
    s->loss_after = loss;
    return BB_OK;
}

/* After the last step: go back to the best iterate if the last one is worse. */
static void finish(bb_heal_adam_stats *s, const best_iterate *bi, bb_lora *l, float *w_hat) {
    if (s->loss_after > s->best) {
        best_restore(bi, l, w_hat);
        s->loss_after = s->best;
    }
}

bb_status bb_heal_adam(const bb_heal_adam_opts *o, const char *name, const float *w, float *w_hat, const float *h,
                       bb_lora *lora, double *curve, bb_heal_adam_stats *st) {
    double t0 = now_s();
    name = name ? name : "layer";
    BB_CALL(adam_check(o, name, w, w_hat, h, lora));
    const bb_linalg_backend *be = o->backend;
    BB_CALL(pick_backend(&be));
    int64_t m = lora->rows, n = lora->cols;
    int r = lora->rank;
    size_t nw = (size_t)(m * n), na = (size_t)(m * r), nb = (size_t)(r * n);
    float *g0 = NULL, *e = NULL, *ga = NULL, *gb = NULL, *mom = NULL, *mw = NULL;
    int held_g0 = 0, held_h = 0;
    grad_ws ws = {0};
    best_iterate bi = {0};
    bb_heal_adam_stats s;
    memset(&s, 0, sizeof s);
    bb_status stt = BB_OK;
    BB_CALL_GOTO(stt, out, best_alloc(&bi, lora, o->train_weights));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&g0, sizeof(float) * nw, "healing: G = E H"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&ga, sizeof(float) * (na + nb), "healing: factor gradients"));
    gb = ga + na;
    BB_CALL_GOTO(stt, out, bb_calloc((void **)&mom, 2 * (na + nb), sizeof(float), "healing: Adam moments"));
    float *ma = mom, *va = mom + na, *mb = mom + 2 * na, *vb = mb + nb;
    BB_CALL_GOTO(stt, out, grad_ws_alloc(&ws, m, n, r));
    double l0 = 0;
    if (o->train_weights) {
        BB_CALL_GOTO(stt, out, bb_malloc((void **)&e, sizeof(float) * nw * 2, "healing: E' and weight gradients"));
        BB_CALL_GOTO(stt, out, bb_calloc((void **)&mw, 2 * nw, sizeof(float), "healing: weight Adam moments"));
    } else {
        float *d = NULL;
        BB_CALL_GOTO(stt, out, bb_malloc((void **)&d, sizeof(float) * nw, "healing: E"));
        for (size_t i = 0; i < nw; i++) d[i] = w[i] - w_hat[i];
        stt = be->gemm(BB_OP_N, BB_OP_N, m, n, n, 1.0f, d, n, h, n, 0.0f, g0, n);
        for (size_t i = 0; i < nw && stt == BB_OK; i++) l0 += (double)d[i] * g0[i];
        free(d);
        BB_CALL_GOTO(stt, out, stt);
        s.flops += 2.0 * (double)m * n * n;
        /* G0 and H are read by every step and never change: a device backend keeps them resident */
        BB_CALL_GOTO(stt, out, bb_linalg_hold(be, g0, m, n, n));
        held_g0 = 1;
    }
    BB_CALL_GOTO(stt, out, bb_linalg_hold(be, h, n, n, n));
    held_h = 1;
    s.flops_per_step = bb_heal_step_flops(m, n, r, o->train_weights);
    double t1 = now_s();
    s.seconds_setup = t1 - t0;
    for (int t = 0; t <= o->steps; t++) {
        double loss;
        int last = t == o->steps;
        if (o->train_weights) {
            float *gw = e + nw;
            for (size_t i = 0; i < nw; i++) e[i] = w[i] - w_hat[i];
            BB_CALL_GOTO(stt, out, be->gemm(BB_OP_N, BB_OP_N, m, n, r, -1.0f, lora->a, r, lora->b, n, 1.0f, e, n));
            BB_CALL_GOTO(stt, out, be->gemm(BB_OP_N, BB_OP_N, m, n, n, 1.0f, e, n, h, n, 0.0f, g0, n)); /* G */
            loss = 0;
            for (size_t i = 0; i < nw; i++) loss += (double)e[i] * g0[i];
            BB_CALL_GOTO(stt, out, record(name, loss, t, curve, &s, &bi, lora, w_hat));
            if (last) break;
            BB_CALL_GOTO(stt, out, be->gemm(BB_OP_N, BB_OP_T, m, r, n, -2.0f, g0, n, lora->b, n, 0.0f, ga, r));
            BB_CALL_GOTO(stt, out, be->gemm(BB_OP_T, BB_OP_N, r, n, m, -2.0f, lora->a, r, g0, n, 0.0f, gb, n));
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    gw[i * n + j] = bb_mask_get(o->mask, i, j) ? -2.0f * g0[i * n + j] : 0.0f;
            adam_update(w_hat, gw, mw, mw + nw, (int64_t)nw, o, t + 1);
            bb_mask_apply(o->mask, w_hat);
        } else {
            BB_CALL_GOTO(stt, out, grad_fast(be, g0, l0, h, lora, &ws, &loss, last ? NULL : ga, last ? NULL : gb));
            BB_CALL_GOTO(stt, out, record(name, loss, t, curve, &s, &bi, lora, w_hat));
            if (last) break;
        }
        adam_update(lora->a, ga, ma, va, (int64_t)na, o, t + 1);
        adam_update(lora->b, gb, mb, vb, (int64_t)nb, o, t + 1);
        s.flops += s.flops_per_step;
    }
    s.seconds_steps = now_s() - t1;
    finish(&s, &bi, lora, w_hat);
    s.seconds = now_s() - t0;
    if (st) *st = s;
out:
    /* only the holds taken: holds nest, and a caller may hold h too */
    if (held_g0) bb_linalg_release(be, g0);
    if (held_h) bb_linalg_release(be, h);
    free(g0);
    free(e);
    free(ga);
    free(mom);
    free(mw);
    free(ws.p);
    free(bi.a);
    return stt;
}

bb_status bb_heal_adam_ref(const bb_heal_adam_opts *o, const char *name, const float *w, float *w_hat,
                           const float *h, bb_lora *lora, double *curve, bb_heal_adam_stats *st) {
    double t0 = now_s();
    name = name ? name : "layer";
    BB_CALL(adam_check(o, name, w, w_hat, h, lora));
    int64_t m = lora->rows, n = lora->cols;
    int r = lora->rank;
    size_t nw = (size_t)(m * n), na = (size_t)(m * r), nb = (size_t)(r * n);
    double *e = malloc(sizeof(double) * nw), *g = malloc(sizeof(double) * nw);
    float *ga = malloc(sizeof(float) * (na + nb + nw)), *mom = calloc(2 * (na + nb + nw), sizeof(float));
    bb_heal_adam_stats s;
    memset(&s, 0, sizeof s);
    best_iterate bi = {0};
    bb_status stt = BB_OK;
    BB_CHECK_GOTO(stt, out, e && g && ga && mom, BB_ERR_OOM, "out of memory: healing reference");
    BB_CALL_GOTO(stt, out, best_alloc(&bi, lora, o->train_weights));
    float *gb = ga + na, *gw = gb + nb;
    float *ma = mom, *va = ma + na, *mb = va + na, *vb = mb + nb, *mw = vb + nb, *vw = mw + nw;
    s.flops_per_step = bb_heal_step_flops(m, n, r, o->train_weights);
    for (int t = 0; t <= o->steps; t++) {
        double loss = residual_ref(w, w_hat, h, lora, e, g);
        BB_CALL_GOTO(stt, out, record(name, loss, t, curve, &s, &bi, lora, w_hat));
        if (t == o->steps) break;
        factor_grads_ref(lora, g, ga, gb);
        if (o->train_weights) {
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++)
                    gw[i * n + j] = bb_mask_get(o->mask, i, j) ? (float)(-2 * g[i * n + j]) : 0.0f;
            adam_update(w_hat, gw, mw, vw, (int64_t)nw, o, t + 1);
            bb_mask_apply(o->mask, w_hat);
        }
        adam_update(lora->a, ga, ma, va, (int64_t)na, o, t + 1);
        adam_update(lora->b, gb, mb, vb, (int64_t)nb, o, t + 1);
        s.flops += s.flops_per_step;
    }
    finish(&s, &bi, lora, w_hat);
    s.seconds = now_s() - t0;
    if (st) *st = s;
out:
    free(e);
    free(g);
    free(ga);
    free(mom);
    free(bi.a);
    return stt;
}

void bb_heal_lora_init(bb_lora *lora, uint64_t seed, uint64_t key) {
    bb_rng rng = bb_rng_split(bb_rng_make(seed, bb_rng_stream_id("heal.lora_init")), key);
    size_t na = (size_t)(lora->rows * lora->rank);
    bb_rng_fill_normal(rng, 0, na, lora->a);
    float sc = 1.0f / sqrtf((float)lora->rank);
    for (size_t i = 0; i < na; i++) lora->a[i] *= sc;
    memset(lora->b, 0, sizeof(float) * (size_t)(lora->cols * lora->rank));
}

void bb_heal_schedule(int steps, double lr, int taper, int k, int R, int *steps_k, double *lr_k) {
    if (R < 1) R = 1;
    if (k < 1) k = 1;
    if (k > R) k = R;
    double f = taper ? 1.0 - (double)(k - 1) / R : 1.0;
    if (steps_k) *steps_k = (int)lround(steps * f);
    if (lr_k) *lr_k = lr * f;
}

bb_status bb_heal_opts_from_config(const bb_config *cfg, int wave, bb_heal_adam_opts *o, int *rank,
                                   int *closed_form) {
    BB_CHECK(wave >= 1 && wave <= cfg->waves.count, BB_ERR_CONFIG, "wave %d is outside 1..waves.count = %lld", wave,
             (long long)cfg->waves.count);
    bb_heal_adam_opts_default(o);
    bb_heal_schedule((int)cfg->heal.steps, cfg->heal.lr, cfg->heal.taper, wave, (int)cfg->waves.count, &o->steps,
                     &o->lr);
    o->train_weights = cfg->heal.train_weights;
    if (rank) *rank = (int)cfg->heal.rank;
    if (closed_form) *closed_form = cfg->heal.closed_form;
    return BB_OK;
}
