/* prune.c — magnitude, Wanda and SparseGPT pruning (unstructured and N:M), their plain-C twins, the registry
 * and the adaptive decay wave. */
#include "compress/prune.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/usage.h"
#include "core/log.h"

/* ---- options, patterns ---------------------------------------------------- */

void bb_prune_opts_default(bb_prune_opts *o) {
    memset(o, 0, sizeof *o);
    o->sparsity = 0.5;
    o->damp = 0.01;
    o->block_size = 128;
    o->max_retries = 6;
}

bb_status bb_prune_pattern_parse(const char *s, bb_prune_pattern *p) {
    p->n = p->m = 0;
    if (strcmp(s, "unstructured") == 0) return BB_OK;
    int n = 0, m = 0, len = 0;
    BB_CHECK(sscanf(s, "%d:%d%n", &n, &m, &len) == 2 && s[len] == '\0' && n > 0 && n < m && m <= 64, BB_ERR_CONFIG,
             "prune.pattern: \"%s\" is not unstructured or N:M with 0 < N < M <= 64 (2:4, 4:8)", s);
    p->n = n;
    p->m = m;
    return BB_OK;
}

/* floor(n * s) with a little slack, so 0.29 * 100 counts 29 and not 28.999... */
static int64_t quota(int64_t n, double s) { return (int64_t)floor((double)n * s + 1e-9); }

/* ---- selection ------------------------------------------------------------- */

/* Weights are ranked by a 32-bit class: 0 for a weight the incoming mask already
 * prunes, else 1 + the bit pattern of its non-negative float score (monotone in
 * the score), then by index. The k lowest are pruned. */
static inline uint32_t score_class(float s) {
    uint32_t b;
    memcpy(&b, &s, sizeof b);
    return (b & 0x80000000u) ? 1u : b + 1u; /* -0.0 ranks as 0.0 */
}

/* The k smallest of cls (n) with ties by index, as a threshold: every i with
 * cls[i] < *thr, and the first *n_eq (in index order) with cls[i] == *thr.
 * An MSD radix select over 4 bytes: 5 passes, no extra memory. */
static void radix_threshold(const uint32_t *cls, int64_t n, int64_t k, uint32_t *thr, int64_t *n_eq) {
    if (k <= 0) {
        *thr = 0, *n_eq = 0;
        return;
    }
    if (k >= n) {
        *thr = UINT32_MAX, *n_eq = n;
        return;
    }
    uint32_t prefix = 0;
    int64_t below = 0; /* elements < the current prefix range */
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        uint32_t hi = shift == 24 ? 0u : ~0u << (shift + 8);
        for (int64_t i = 0; i < n; i++)
            if ((cls[i] & hi) == prefix) hist[(cls[i] >> shift) & 255u]++;
        int d = 0;
        while (below + hist[d] < k) below += hist[d++];
        prefix |= (uint32_t)d << shift;
    }
    *thr = prefix;
    *n_eq = k - below;
}

/* pruned[i] = 1 for the k smallest of cls (n), ties by index, else 0. */
static void select_lowest(const uint32_t *cls, int64_t n, int64_t k, uint8_t *pruned) {
    uint32_t thr;
    int64_t n_eq;
    radix_threshold(cls, n, k, &thr, &n_eq);
    for (int64_t i = 0; i < n; i++) {
        int p = cls[i] < thr || (cls[i] == thr && n_eq > 0);
        if (cls[i] == thr && n_eq > 0) n_eq--;
        pruned[i] = (uint8_t)p;
    }
}

/* N:M: in a group of m classes, prune the (m - n) lowest, or every weight the
 * incoming mask already prunes if there are more. m <= 64. */
static void select_group(const uint32_t *cls, int m, int n, uint8_t *pruned) {
    int forced = 0;
    for (int c = 0; c < m; c++) forced += cls[c] == 0;
    int k = m - n > forced ? m - n : forced;
    memset(pruned, 0, (size_t)m);
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int c = 0; c < m; c++)
            if (!pruned[c] && (best < 0 || cls[c] < cls[best])) best = c;
        pruned[best] = 1;
    }
}

/* The _ref rankings: a full sort by (class, index). */
typedef struct {
    double s;
    int forced;
    int64_t idx;
} ranked;

static int ranked_cmp(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->forced != y->forced) return x->forced ? -1 : 1;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* pruned[r[i].idx - base] = 1 for the k first of r (n) after sorting. */
static void ref_prune_lowest(ranked *r, int64_t n, int64_t k, int64_t base, uint8_t *pruned) {
    qsort(r, (size_t)n, sizeof *r, ranked_cmp);
    for (int64_t i = 0; i < n; i++) pruned[r[i].idx - base] = (uint8_t)(i < k);
}

/* ---- threads ---------------------------------------------------------------- */

typedef void (*range_fn)(void *ctx, int tid, int64_t i0, int64_t i1);

typedef struct {
    range_fn fn;
    void *ctx;
    int tid;
    int64_t i0, i1;
} range_job;

static void *range_run(void *p) {
    range_job *j = p;
    j->fn(j->ctx, j->tid, j->i0, j->i1);
    return NULL;
}

static int thread_count(const bb_prune_opts *o) {
    long n = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/* fn over [0, n) in `threads` contiguous ranges; a thread that cannot start runs inline. */
static void parallel_for(int threads, int64_t n, range_fn fn, void *ctx) {
    if (threads > n) threads = n > 0 ? (int)n : 1;
    if (threads <= 1) {
        fn(ctx, 0, 0, n);
        return;
    }
    pthread_t tid[256];
    range_job job[256];
    int started[256];
    for (int t = 0; t < threads; t++) {
        job[t] = (range_job){fn, ctx, t, n * t / threads, n * (t + 1) / threads};
        started[t] = t > 0 && pthread_create(&tid[t], NULL, range_run, &job[t]) == 0;
        if (t > 0 && !started[t]) range_run(&job[t]);
    }
    range_run(&job[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
}

/* ---- common checks ---------------------------------------------------------- */

static bb_status check_layer(const char *method, const bb_prune_opts *o, const bb_prune_layer *l) {
    const char *name = l->name ? l->name : "?";
    BB_CHECK(l->w && l->rows >= 0 && l->cols >= 0, BB_ERR_ARG, "%s: %s: no weights or a bad shape (%lld, %lld)", name,
             method, (long long)l->rows, (long long)l->cols);
    BB_CHECK(l->mask && l->mask->rows == l->rows && l->mask->cols == l->cols, BB_ERR_ARG,
             "%s: %s: the layer needs a (%lld, %lld) mask", name, method, (long long)l->rows, (long long)l->cols);
    BB_CHECK(l->rows * l->cols < ((int64_t)1 << 32), BB_ERR_UNSUPPORTED,
             "%s: %s: %lld weights in one matrix (at most 2^32 - 1 are ranked)", name, method,
             (long long)(l->rows * l->cols));
    const bb_prune_pattern *p = &o->pattern;
    if (p->m) {
        BB_CHECK(p->n > 0 && p->n < p->m && p->m <= 64, BB_ERR_ARG, "%s: %s: bad N:M pattern %d:%d", name, method, p->n,
                 p->m);
        BB_CHECK(l->cols % p->m == 0, BB_ERR_ARG, "%s: %s: %d:%d needs the input width %lld to be a multiple of %d",
                 name, method, p->n, p->m, (long long)l->cols, p->m);
    } else {
        BB_CHECK(o->sparsity >= 0 && o->sparsity < 1, BB_ERR_ARG, "%s: %s: sparsity %g is outside [0, 1)", name, method,
                 o->sparsity);
    }
    for (int64_t k = 0; k < l->rows * l->cols; k++)
        BB_CHECK(isfinite(l->w[k]), BB_ERR_NUMERIC, "%s: %s: weight (%lld, %lld) is %g", name, method,
                 (long long)(k / l->cols), (long long)(k % l->cols), (double)l->w[k]);
    return BB_OK;
}

/* The per-channel norms: given, or sqrt(diag H). *owned is what the caller frees. */
static bb_status channel_norms(const char *method, const bb_prune_layer *l, const float **xn, float **owned) {
    *owned = NULL;
    *xn = l->xnorm;
    if (l->xnorm) {
        for (int64_t j = 0; j < l->cols; j++)
            BB_CHECK(isfinite(l->xnorm[j]) && l->xnorm[j] >= 0, BB_ERR_NUMERIC, "%s: %s: ||X_%lld|| = %g", l->name,
                     method, (long long)j, (double)l->xnorm[j]);
        return BB_OK;
    }
    BB_CHECK(l->h, BB_ERR_ARG, "%s: %s needs the input norms ||X_j|| or the Gram H", l->name, method);
    BB_CALL(bb_malloc((void **)owned, sizeof(float) * (size_t)(l->cols ? l->cols : 1), "input norms"));
    bb_status st = bb_usage_xnorm_from_gram(l->name, l->cols, l->h, *owned);
    if (st != BB_OK) {
        free(*owned);
        *owned = NULL;
        return bb_trace(st, __FILE__, __LINE__, "bb_usage_xnorm_from_gram");
    }
    *xn = *owned;
    return BB_OK;
}

static void finish_stats(const bb_prune_layer *l, bb_prune_stats *st, double t0) {
    bb_mask_apply(l->mask, l->w);
    if (!st) return;
    st->kept = bb_mask_count(l->mask);
    st->density = bb_mask_density(l->mask);
    st->mask_bytes = bb_mask_nbytes(l->mask);
    st->seconds = bb_now() - t0;
}

/* ---- magnitude and Wanda: score-ranked, no weight update ---------------------- */

/* Clear the mask bits of a row's pruned flags. */
static void mask_clear_row(bb_mask *m, int64_t i, int64_t j0, const uint8_t *pruned, int64_t n) {
    for (int64_t c = 0; c < n; c++)
        if (pruned[c]) bb_mask_set(m, i, j0 + c, 0);
}

typedef struct {
    const bb_prune_opts *o;
    bb_prune_layer *l;
    const float *xnorm; /* NULL: magnitude */
    uint32_t *cls;      /* (threads, cols) */
    uint8_t *pruned;    /* (threads, cols) */
} rows_ctx;

/* Classes of row i: |W_ij| (magnitude) or |W_ij| ||X_j|| (Wanda); 0 where already pruned. */
static void row_classes(const bb_prune_layer *l, const float *xnorm, int64_t i, uint32_t *cls) {
    const float *w = l->w + i * l->cols;
    for (int64_t j = 0; j < l->cols; j++) {
        float s = xnorm ? fabsf(w[j]) * xnorm[j] : fabsf(w[j]);
        cls[j] = bb_mask_get(l->mask, i, j) ? score_class(s) : 0u;
    }
}

static void rows_select(void *p, int tid, int64_t i0, int64_t i1) {
    rows_ctx *c = p;
    bb_prune_layer *l = c->l;
    const bb_prune_pattern *pat = &c->o->pattern;
    uint32_t *cls = c->cls + (size_t)tid * (size_t)l->cols;
    uint8_t *pruned = c->pruned + (size_t)tid * (size_t)l->cols;
    for (int64_t i = i0; i < i1; i++) {
        row_classes(l, c->xnorm, i, cls);
        if (pat->m) {
            for (int64_t g = 0; g < l->cols; g += pat->m) select_group(cls + g, pat->m, pat->n, pruned + g);
        } else {
            int64_t forced = l->cols - bb_mask_count_row(l->mask, i), k = quota(l->cols, c->o->sparsity);
            select_lowest(cls, l->cols, k > forced ? k : forced, pruned);
        }
        mask_clear_row(l->mask, i, 0, pruned, l->cols);
    }
}

/* Per-row selection (Wanda, and magnitude under N:M), threaded over rows. */
static bb_status prune_rows(const bb_prune_opts *o, bb_prune_layer *l, const float *xnorm) {
    int threads = thread_count(o);
    size_t n = (size_t)threads * (size_t)(l->cols ? l->cols : 1);
    rows_ctx c = {o, l, xnorm, NULL, NULL};
    BB_CALL(bb_malloc((void **)&c.cls, n * (sizeof(uint32_t) + 1), "pruning scratch (threads, cols)"));
    c.pruned = (uint8_t *)(c.cls + n);
    parallel_for(threads, l->rows, rows_select, &c);
    free(c.cls);
    return BB_OK;
}

bb_status bb_prune_magnitude(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    if (st) memset(st, 0, sizeof *st);
    BB_CALL(check_layer("magnitude", o, l));
    if (o->pattern.m || o->per_row) {
        BB_CALL(prune_rows(o, l, NULL));
    } else {
        /* one threshold for the whole matrix */
        int64_t n = l->rows * l->cols, forced = n - bb_mask_count(l->mask), k = quota(n, o->sparsity);
        uint32_t *cls = NULL;
        BB_CALL(bb_malloc((void **)&cls, sizeof(uint32_t) * (size_t)(n ? n : 1), "magnitude classes (rows, cols)"));
        for (int64_t i = 0; i < l->rows; i++) row_classes(l, NULL, i, cls + i * l->cols);
        uint32_t thr;
        int64_t n_eq;
        radix_threshold(cls, n, k > forced ? k : forced, &thr, &n_eq);
        for (int64_t e = 0; e < n; e++)
            if (cls[e] < thr || (cls[e] == thr && n_eq-- > 0)) bb_mask_set(l->mask, e / l->cols, e % l->cols, 0);
        free(cls);
    }
    finish_stats(l, st, t0);
    return BB_OK;
}

bb_status bb_prune_wanda(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    if (st) memset(st, 0, sizeof *st);
    BB_CALL(check_layer("wanda", o, l));
    const float *xn;
    float *owned;
    BB_CALL(channel_norms("wanda", l, &xn, &owned));
    bb_status s = prune_rows(o, l, xn);
    free(owned);
    BB_CALL(s);
    finish_stats(l, st, t0);
    return BB_OK;
}

/* The _ref twins: every comparison group sorted whole with qsort. */
static bb_status ranked_ref(const bb_prune_opts *o, bb_prune_layer *l, const float *xnorm, int per_tensor) {
    int64_t rows = l->rows, cols = l->cols, n = per_tensor ? rows * cols : cols;
    ranked *r = NULL;
    uint8_t *pruned = NULL;
    BB_CALL(bb_malloc((void **)&r, sizeof *r * (size_t)(n ? n : 1), "ranking"));
    bb_status st = bb_malloc((void **)&pruned, (size_t)(n ? n : 1), "pruned flags");
    if (st != BB_OK) {
        free(r);
        return bb_trace(st, __FILE__, __LINE__, "bb_malloc");
    }
    int64_t gsize = o->pattern.m ? o->pattern.m : per_tensor ? n : cols;
    for (int64_t base = 0; base < rows * cols; base += gsize) {
        int64_t forced = 0;
        for (int64_t e = base; e < base + gsize; e++) {
            int64_t i = e / cols, j = e % cols;
            double a = fabsf(l->w[e]);
            r[e - base].s = xnorm ? (double)(fabsf(l->w[e]) * xnorm[j]) : a;
            r[e - base].forced = !bb_mask_get(l->mask, i, j);
            r[e - base].idx = e;
            forced += r[e - base].forced;
        }
        int64_t k = o->pattern.m ? o->pattern.m - o->pattern.n : quota(gsize, o->sparsity);
        ref_prune_lowest(r, gsize, k > forced ? k : forced, base, pruned);
        for (int64_t e = base; e < base + gsize; e++)
            if (pruned[e - base]) bb_mask_set(l->mask, e / cols, e % cols, 0);
    }
    free(r);
    free(pruned);
    return BB_OK;
}

bb_status bb_prune_magnitude_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    if (st) memset(st, 0, sizeof *st);
    BB_CALL(check_layer("magnitude", o, l));
    BB_CALL(ranked_ref(o, l, NULL, !o->per_row));
    finish_stats(l, st, t0);
    return BB_OK;
}

bb_status bb_prune_wanda_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    if (st) memset(st, 0, sizeof *st);
    BB_CALL(check_layer("wanda", o, l));
    const float *xn;
    float *owned;
    BB_CALL(channel_norms("wanda", l, &xn, &owned));
    bb_status s = ranked_ref(o, l, xn, 0);
    free(owned);
    BB_CALL(s);
    finish_stats(l, st, t0);
    return BB_OK;
}

/* ---- SparseGPT ------------------------------------------------------------------ */

static double retry_damp(double damp, int attempt) {
    if (attempt == 0) return damp;
    return (damp > 0 ? damp : 1e-7) * pow(10.0, attempt);
}

static bb_status check_gram(const char *name, const float *h, int64_t cols) {
    BB_CHECK(h, BB_ERR_ARG, "%s: sparsegpt needs the Gram H = X^T X of the layer input", name);
    for (int64_t k = 0; k < cols * cols; k++)
        BB_CHECK(isfinite(h[k]), BB_ERR_NUMERIC,
                 "%s: sparsegpt: the Gram H has %g at (%lld, %lld); the calibration statistics are broken "
                 "(recollect them; no damping (prune.damp) can fix a non-finite H)",
                 name, (double)h[k], (long long)(k / cols), (long long)(k % cols));
    return BB_OK;
}

static void warn_retries(const char *name, double damp, double used, int retries) {
    if (retries > 0)
        bb_warn("%s: sparsegpt: Cholesky of H + %g mean(diag H) I failed; it succeeded at damping %g after %d "
                "retr%s (set prune.damp = %g to skip them)",
                name, damp, used, retries, retries == 1 ? "y" : "ies", used);
}

static bb_status fail_retries(const char *name, const bb_prune_opts *o) {
    return bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                    "%s: sparsegpt: H + lambda mean(diag H) I is not positive definite even at lambda = %g (%d "
                    "retries x10 from prune.damp = %g); raise prune.damp or check the calibration statistics",
                    name, retry_damp(o->damp, o->max_retries), o->max_retries, o->damp);
}

/* U (cols, cols): the upper Cholesky factor of (H + lambda mean(diag H) I)^-1 in its
 * upper triangle (dead inputs get H_jj = 1 first), with the damping retries. */
static bb_status sgpt_factor(const bb_prune_opts *o, const bb_linalg_backend *be, const char *name, const float *h,
                             const uint8_t *dead, int64_t cols, float *u, bb_prune_stats *st) {
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) mean += dead[j] ? 1.0 : (double)h[j * cols + j];
    mean = cols ? mean / (double)cols : 1.0;
    for (int attempt = 0; attempt <= o->max_retries; attempt++) {
        double lam = retry_damp(o->damp, attempt);
        memcpy(u, h, sizeof(float) * (size_t)(cols * cols));
        for (int64_t j = 0; j < cols; j++) u[j * cols + j] = (float)((dead[j] ? 1.0 : u[j * cols + j]) + lam * mean);
        bb_status s = bb_linalg_inverse_cholesky_upper(be, u, cols);
        if (s == BB_OK) {
            st->damp_used = lam;
            st->retries = attempt;
            warn_retries(name, o->damp, lam, attempt);
            return BB_OK;
        }
        if (s != BB_ERR_NUMERIC) return bb_trace(s, __FILE__, __LINE__, "sparsegpt factorization");
    }
    return fail_retries(name, o);
}

typedef struct {
    const bb_prune_opts *o;
    bb_prune_layer *l;
    const float *u;  /* (cols, cols) upper factor */
    int64_t j0, nb;  /* block columns [j0, j0 + nb) */
    uint8_t *pruned; /* (rows, nb) block flags; N:M fills them per group */
    float *err;      /* (rows, nb) scaled errors for the lazy update */
    float *diag;     /* (nb) U_jj of the block, read once instead of a cache line per row */
    uint32_t *gcls;  /* (threads, 64) group classes for N:M */
} sgpt_ctx;

/* y[0, n) -= a x[0, n). Eight lanes through GCC/Clang vector extensions, so the
 * OBS sweep is vectorized at -O2 on any target; each lane computes exactly the
 * scalar expression, so results do not depend on n's alignment. */
typedef float v8f __attribute__((vector_size(32)));
static inline void axpy_sub(float *restrict y, const float *restrict x, float a, int64_t n) {
    int64_t t = 0;
    v8f va = {a, a, a, a, a, a, a, a};
    for (; t + 8 <= n; t += 8) {
        v8f vy, vx;
        memcpy(&vy, y + t, sizeof vy);
        memcpy(&vx, x + t, sizeof vx);
        vy -= va * vx;
        memcpy(y + t, &vy, sizeof vy);
    }
    for (; t < n; t++) y[t] -= a * x[t];
}

/* The OBS sweep over one block, row by row (rows are independent given U):
 * each column's weight w becomes q (0 or w), its error (w - q) / U_cc is spread
 * over the block's later columns through row c of U, and kept for the lazy gemm. */
static void sgpt_rows(void *p, int tid, int64_t i0, int64_t i1) {
    sgpt_ctx *c = p;
    const bb_prune_layer *l = c->l;
    const bb_prune_pattern *pat = &c->o->pattern;
    int64_t cols = l->cols, nb = c->nb, j0 = c->j0;
    uint32_t *gcls = c->gcls + (size_t)tid * 64;
    for (int64_t i = i0; i < i1; i++) {
        float *w = l->w + i * cols + j0, *err = c->err + i * nb;
        uint8_t *pr = c->pruned + i * nb;
        for (int64_t k = 0; k < nb; k++) {
            const float *urow = c->u + (j0 + k) * cols + j0;
            if (pat->m && !c->o->fixed_mask && k % pat->m == 0) {
                for (int g = 0; g < pat->m; g++) {
                    float d = c->diag[k + g];
                    gcls[g] = bb_mask_get(l->mask, i, j0 + k + g) ? score_class(w[k + g] * w[k + g] / (d * d)) : 0u;
                }
                select_group(gcls, pat->m, pat->n, pr + k);
            }
            float q = pr[k] ? 0.0f : w[k], e = (w[k] - q) / c->diag[k];
            axpy_sub(w + k + 1, urow + k + 1, e, nb - k - 1);
            w[k] = q;
            err[k] = e;
        }
    }
}

bb_status bb_prune_sparsegpt(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    bb_prune_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    BB_CALL(check_layer("sparsegpt", o, l));
    BB_CALL(check_gram(l->name, l->h, l->cols));
    const bb_linalg_backend *be = o->backend;
    if (!be) BB_CALL(bb_linalg_backend_default_get(&be));
    int64_t rows = l->rows, cols = l->cols, bs = o->block_size;
    BB_CHECK(bs >= 1, BB_ERR_ARG, "%s: sparsegpt: prune.block_size %lld < 1", l->name, (long long)bs);
    BB_CHECK(!o->pattern.m || bs % o->pattern.m == 0, BB_ERR_ARG,
             "%s: sparsegpt: prune.block_size %lld is not a multiple of M = %d of the %d:%d pattern", l->name,
             (long long)bs, o->pattern.m, o->pattern.n, o->pattern.m);
    if (bs > cols) bs = cols > 0 ? cols : 1;
    int threads = thread_count(o);
    float *u = NULL, *err = NULL;
    uint8_t *dead = NULL, *pruned = NULL;
    uint32_t *cls = NULL, *gcls = NULL;
    float *diag = NULL;
    bb_status s = BB_OK;
    BB_CALL_GOTO(s, done, bb_malloc((void **)&diag, sizeof(float) * (size_t)bs, "sparsegpt block diagonal"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&u, sizeof(float) * (size_t)(cols * cols + 1), "sparsegpt H^-1 factor"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&err, sizeof(float) * (size_t)(rows * bs + 1), "sparsegpt block errors"));
    BB_CALL_GOTO(s, done, bb_calloc((void **)&dead, (size_t)cols + 1, 1, "sparsegpt dead inputs"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&pruned, (size_t)(rows * bs + 1), "sparsegpt block flags"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&cls, sizeof(uint32_t) * (size_t)(rows * bs + 1), "sparsegpt classes"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&gcls, sizeof(uint32_t) * 64 * (size_t)threads, "sparsegpt groups"));
    for (int64_t j = 0; j < cols; j++) {
        dead[j] = l->h[j * cols + j] == 0.0f;
        st->dead += dead[j];
    }
    for (int64_t i = 0; i < rows && st->dead; i++)
        for (int64_t j = 0; j < cols; j++)
            if (dead[j]) l->w[i * cols + j] = 0.0f;
    BB_CALL_GOTO(s, done, sgpt_factor(o, be, l->name, l->h, dead, cols, u, st));

    sgpt_ctx c = {o, l, u, 0, 0, pruned, err, diag, gcls};
    for (int64_t j0 = 0; j0 < cols; j0 += bs) {
        int64_t nb = cols - j0 < bs ? cols - j0 : bs;
        c.j0 = j0;
        c.nb = nb;
        for (int64_t k = 0; k < nb; k++) diag[k] = u[(j0 + k) * cols + j0 + k];
        if (o->fixed_mask || !o->pattern.m) {
            int64_t forced = 0;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = 0; k < nb; k++) {
                    int keep = bb_mask_get(l->mask, i, j0 + k);
                    float w = l->w[i * cols + j0 + k], d = diag[k];
                    cls[i * nb + k] = keep ? score_class(w * w / (d * d)) : 0u;
                    forced += !keep;
                    pruned[i * nb + k] = (uint8_t)!keep;
                }
            if (!o->fixed_mask && o->per_row) {
                for (int64_t i = 0; i < rows; i++) {
                    int64_t f = 0, k = quota(nb, o->sparsity);
                    for (int64_t t = 0; t < nb; t++) f += pruned[i * nb + t];
                    select_lowest(cls + i * nb, nb, k > f ? k : f, pruned + i * nb);
                }
            } else if (!o->fixed_mask) {
                int64_t k = quota(rows * nb, o->sparsity);
                select_lowest(cls, rows * nb, k > forced ? k : forced, pruned);
            }
        }
        parallel_for(threads, rows, sgpt_rows, &c);
        for (int64_t i = 0; i < rows; i++) mask_clear_row(l->mask, i, j0, pruned + i * nb, nb);
        if (j0 + nb < cols)
            BB_CALL_GOTO(s, done,
                         be->gemm(BB_OP_N, BB_OP_N, rows, cols - j0 - nb, nb, -1.0f, err, nb, u + j0 * cols + j0 + nb,
                                  cols, 1.0f, l->w + j0 + nb, cols));
    }
    finish_stats(l, st, t0);
done:
    free(u);
    free(err);
    free(dead);
    free(pruned);
    free(cls);
    free(gcls);
    free(diag);
    return s;
}

/* Plain Cholesky in double: A (n, n) row-major, lower factor L into its lower
 * triangle (A = L L^T). Returns 0, or -1 at a non-positive (or NaN) pivot. */
static int chol_lower(double *a, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0)) return -1;
        a[j * n + j] = sqrt(d);
        for (int64_t i = j + 1; i < n; i++) {
            double s = a[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / a[j * n + j];
        }
    }
    return 0;
}

/* The textbook route in double: H = L L^T, H^-1 = L^-T L^-1, then U^T U = H^-1. */
static int ref_inverse_factor(double *a, double *tmp, int64_t n) {
    if (chol_lower(a, n)) return -1;
    /* tmp = L^-1 (lower), by forward substitution column by column */
    memset(tmp, 0, sizeof(double) * (size_t)(n * n));
    for (int64_t c = 0; c < n; c++)
        for (int64_t i = c; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int64_t k = c; k < i; k++) s -= a[i * n + k] * tmp[k * n + c];
            tmp[i * n + c] = s / a[i * n + i];
        }
    /* a = H^-1 = (L^-1)^T L^-1 */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = i > j ? i : j; k < n; k++) s += tmp[k * n + i] * tmp[k * n + j];
            a[i * n + j] = s;
        }
    /* upper factor: U_ii = sqrt(A_ii - sum_k<i U_ki^2), U_ij = (A_ij - sum_k<i U_ki U_kj) / U_ii */
    for (int64_t i = 0; i < n; i++) {
        double d = a[i * n + i];
        for (int64_t k = 0; k < i; k++) d -= tmp[k * n + i] * tmp[k * n + i];
        if (!(d > 0)) return -1;
        tmp[i * n + i] = sqrt(d);
        for (int64_t j = i + 1; j < n; j++) {
            double s = a[i * n + j];
            for (int64_t k = 0; k < i; k++) s -= tmp[k * n + i] * tmp[k * n + j];
            tmp[i * n + j] = s / tmp[i * n + i];
        }
        for (int64_t j = 0; j < i; j++) tmp[i * n + j] = 0.0;
    }
    memcpy(a, tmp, sizeof(double) * (size_t)(n * n));
    return 0;
}

bb_status bb_prune_sparsegpt_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    bb_prune_stats local;
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    BB_CALL(check_layer("sparsegpt", o, l));
    BB_CALL(check_gram(l->name, l->h, l->cols));
    int64_t rows = l->rows, cols = l->cols, bs = o->block_size, m = o->pattern.m;
    BB_CHECK(bs >= 1 && (!m || bs % m == 0), BB_ERR_ARG, "%s: sparsegpt: bad prune.block_size %lld", l->name,
             (long long)bs);
    size_t n2 = (size_t)(cols * cols + 1), nw = (size_t)(rows * cols + 1);
    double *u = NULL, *tmp = NULL, *w = NULL;
    uint8_t *pr = NULL, *blk = NULL;
    ranked *r = NULL;
    bb_status s = BB_OK;
    BB_CALL_GOTO(s, done, bb_malloc((void **)&blk, (size_t)(rows * bs + 1), "sparsegpt_ref block flags"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&u, sizeof(double) * n2, "sparsegpt_ref factor"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&tmp, sizeof(double) * n2, "sparsegpt_ref scratch"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&w, sizeof(double) * nw, "sparsegpt_ref weights"));
    BB_CALL_GOTO(s, done, bb_calloc((void **)&pr, nw, 1, "sparsegpt_ref flags"));
    BB_CALL_GOTO(s, done, bb_malloc((void **)&r, sizeof *r * nw, "sparsegpt_ref ranking"));

    double mean = 0;
    for (int64_t j = 0; j < cols; j++) {
        int d = l->h[j * cols + j] == 0.0f;
        st->dead += d;
        mean += d ? 1.0 : l->h[j * cols + j];
    }
    mean = cols ? mean / (double)cols : 1.0;
    int ok = 0;
    for (int attempt = 0; attempt <= o->max_retries && !ok; attempt++) {
        double lam = retry_damp(o->damp, attempt);
        for (int64_t k = 0; k < cols * cols; k++) u[k] = l->h[k];
        for (int64_t j = 0; j < cols; j++)
            u[j * cols + j] = (u[j * cols + j] == 0.0 ? 1.0 : u[j * cols + j]) + lam * mean;
        if (ref_inverse_factor(u, tmp, cols) == 0) {
            ok = 1;
            st->damp_used = lam;
            st->retries = attempt;
            warn_retries(l->name, o->damp, lam, attempt);
        }
    }
    if (!ok) {
        s = fail_retries(l->name, o);
        goto done;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] = l->h[j * cols + j] == 0.0f ? 0.0 : l->w[i * cols + j];

    for (int64_t j = 0; j < cols; j++) {
        double d = u[j * cols + j];
        if (!m && !o->fixed_mask && j % bs == 0) {
            /* adaptive mask of the block, from the weights as the sweep left them */
            int64_t nb = cols - j < bs ? cols - j : bs, n = 0, forced = 0;
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = 0; k < nb; k++, n++) {
                    double wk = w[i * cols + j + k], dk = u[(j + k) * cols + j + k];
                    r[n] = (ranked){wk * wk / (dk * dk), !bb_mask_get(l->mask, i, j + k), i * nb + k};
                    forced += r[n].forced;
                }
            if (o->per_row) {
                /* the comparison group is one row of the block */
                for (int64_t i = 0; i < rows; i++) {
                    int64_t f = 0, k = quota(nb, o->sparsity);
                    for (int64_t t = 0; t < nb; t++) f += r[i * nb + t].forced;
                    ref_prune_lowest(r + i * nb, nb, k > f ? k : f, i * nb, blk + i * nb);
                }
            } else {
                int64_t k = quota(n, o->sparsity);
                ref_prune_lowest(r, n, k > forced ? k : forced, 0, blk);
            }
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k2 = 0; k2 < nb; k2++) pr[i * cols + j + k2] = blk[i * nb + k2];
        }
        for (int64_t i = 0; i < rows; i++) {
            if (o->fixed_mask)
                pr[i * cols + j] = (uint8_t)!bb_mask_get(l->mask, i, j);
            else if (m && j % m == 0) {
                int64_t forced = 0;
                for (int64_t g = 0; g < m; g++) {
                    double wg = w[i * cols + j + g], dg = u[(j + g) * cols + j + g];
                    r[g] = (ranked){wg * wg / (dg * dg), !bb_mask_get(l->mask, i, j + g), j + g};
                    forced += r[g].forced;
                }
                ref_prune_lowest(r, m, m - o->pattern.n > forced ? m - o->pattern.n : forced, 0, pr + i * cols);
            }
            double wij = w[i * cols + j], q = pr[i * cols + j] ? 0.0 : wij, e = (wij - q) / d;
            for (int64_t k = j + 1; k < cols; k++) w[i * cols + k] -= e * u[j * cols + k];
            w[i * cols + j] = q;
        }
    }
    for (int64_t e = 0; e < rows * cols; e++) {
        l->w[e] = (float)w[e];
        if (pr[e]) bb_mask_set(l->mask, e / cols, e % cols, 0);
    }
    finish_stats(l, st, t0);
done:
    free(u);
    free(tmp);
    free(w);
    free(pr);
    free(blk);
    free(r);
    return s;
}

/* ---- registry ----------------------------------------------------------------- */

static bb_status prune_none(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    double t0 = bb_now();
    if (st) memset(st, 0, sizeof *st);
    BB_CALL(check_layer("none", o, l));
    finish_stats(l, st, t0);
    return BB_OK;
}

static const bb_pruner pruners[] = {
    {"wanda", "per-row |W| ||X|| ranking, no weight update (Sun et al. 2023)", bb_prune_wanda},
    {"sparsegpt", "OBS saliency with lazy-batch weight update (Frantar & Alistarh 2023)", bb_prune_sparsegpt},
    {"magnitude", "per-matrix |W| threshold", bb_prune_magnitude},
    {"none", "keeps the current mask (applies it to the weights)", prune_none},
};

bb_status bb_pruner_get(const char *name, const bb_pruner **out) {
    for (size_t i = 0; i < sizeof pruners / sizeof pruners[0]; i++)
        if (strcmp(pruners[i].name, name) == 0) {
            *out = &pruners[i];
            return BB_OK;
        }
    char list[128];
    bb_pruner_list(list, sizeof list);
    return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "prune.method: unknown method \"%s\" (available: %s)", name,
                    list);
}

void bb_pruner_list(char *buf, size_t n) {
    if (!n) return;
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < sizeof pruners / sizeof pruners[0]; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", pruners[i].name);
        if (w < 0 || (size_t)w >= n - used) return;
        used += (size_t)w;
    }
}

/* ---- adaptive decay wave ------------------------------------------------------ */

bb_status bb_prune_wave(const char *name, int64_t rows, int64_t cols, const float *score, double per_wave,
                        double target, int per_row, bb_mask *mask, int64_t *removed) {
    if (removed) *removed = 0;
    BB_CHECK(per_wave >= 0 && per_wave <= 1 && target >= 0 && target <= 1, BB_ERR_ARG,
             "%s: wave: prune.per_wave %g and prune.target %g must be in [0, 1]", name, per_wave, target);
    BB_CHECK(mask && mask->rows == rows && mask->cols == cols, BB_ERR_ARG, "%s: wave: the mask is not (%lld, %lld)",
             name, (long long)rows, (long long)cols);
    BB_CHECK(rows * cols < ((int64_t)1 << 32), BB_ERR_UNSUPPORTED, "%s: wave: too many weights to rank", name);
    for (int64_t k = 0; k < rows * cols; k++)
        BB_CHECK(isfinite(score[k]), BB_ERR_NUMERIC, "%s: wave: score (%lld, %lld) is %g", name, (long long)(k / cols),
                 (long long)(k % cols), (double)score[k]);
    int64_t gsize = per_row ? cols : rows * cols, total = 0;
    uint32_t *cls = NULL;
    uint8_t *pruned = NULL;
    BB_CALL(bb_malloc((void **)&cls, (sizeof(uint32_t) + 1) * (size_t)(gsize ? gsize : 1), "wave ranking"));
    pruned = (uint8_t *)(cls + (gsize ? gsize : 1));
    for (int64_t base = 0; base < rows * cols; base += gsize) {
        int64_t kept = 0;
        for (int64_t e = base; e < base + gsize; e++) {
            int keep = bb_mask_get(mask, e / cols, e % cols);
            cls[e - base] = keep ? score_class(fabsf(score[e])) : 0u;
            kept += keep;
        }
        int64_t gone = gsize - kept, room = quota(gsize, target) - gone, now = quota(kept, per_wave);
        if (now > room) now = room;
        if (now <= 0) continue;
        select_lowest(cls, gsize, gone + now, pruned);
        for (int64_t e = base; e < base + gsize; e++)
            if (pruned[e - base]) bb_mask_set(mask, e / cols, e % cols, 0);
        total += now;
    }
    free(cls);
    if (removed) *removed = total;
    return BB_OK;
}
