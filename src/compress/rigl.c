/* rigl.c — gradient regrowth with one-coordinate optimal values, Wanda-score drops, exact loss bookkeeping. */
#include "compress/rigl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/parallel.h"
#include "core/reduce.h"

typedef struct {
    double key;
    int64_t idx;
} cand;

static int by_key_desc(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

static int by_key_asc(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Reorder a[0, n) so that its first k entries are the k smallest under cmp (a total order: ties in key
 * are broken by idx), in sorted order; the rest follow in no particular order. The same first k as
 * qsort(a, n) gives, in O(n + k log k) instead of O(n log n): RigL uses a few percent of a row. */
static void select_sorted(cand *a, int64_t n, int64_t k, int (*cmp)(const void *, const void *)) {
    if (k <= 0) return;
    if (k >= n) {
        qsort(a, (size_t)n, sizeof *a, cmp);
        return;
    }
    int64_t lo = 0, hi = n - 1; /* the k-th smallest (index k - 1) lies in [lo, hi] */
    while (hi > lo) {
        /* median of three as the pivot, moved to hi */
        int64_t mid = lo + (hi - lo) / 2;
        if (cmp(&a[mid], &a[lo]) < 0) { cand t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (cmp(&a[hi], &a[lo]) < 0) { cand t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (cmp(&a[mid], &a[hi]) < 0) { cand t = a[mid]; a[mid] = a[hi]; a[hi] = t; }
        cand pivot = a[hi];
        int64_t store = lo;
        for (int64_t i = lo; i < hi; i++)
            if (cmp(&a[i], &pivot) < 0) {
                cand t = a[i];
                a[i] = a[store];
                a[store++] = t;
            }
        a[hi] = a[store];
        a[store] = pivot;
        if (store == k - 1) break;
        if (store < k - 1)
            lo = store + 1;
        else
            hi = store - 1;
    }
    qsort(a, (size_t)k, sizeof *a, cmp);
}

void bb_rigl_opts_from_config(const bb_config *cfg, bb_rigl_opts *o) {
    memset(o, 0, sizeof *o);
    o->fraction = cfg->rigl.fraction;
    o->per_row = !strcmp(cfg->prune.groups, "row");
    o->threads = (int)cfg->backend.threads;
}

/* Rows [a, b) of check()'s entry tests: the first offending entry in row-major order (kind 1: W or Ŵ not
 * finite, 2: pruned but not 0), found = -1 if none. */
typedef struct {
    const float *w, *w_hat;
    const bb_mask *mask;
    int64_t cols, a, b, found;
    int kind;
} check_job;

static void *check_rows(void *arg) {
    check_job *jb = arg;
    for (int64_t i = jb->a; i < jb->b; i++)
        for (int64_t j = 0; j < jb->cols; j++) {
            int64_t k = i * jb->cols + j;
            int kind = !isfinite(jb->w[k]) || !isfinite(jb->w_hat[k]) ? 1
                       : !bb_mask_get(jb->mask, i, j) && jb->w_hat[k] != 0 ? 2
                                                                         : 0;
            if (kind) {
                jb->found = k;
                jb->kind = kind;
                return NULL;
            }
        }
    return NULL;
}

static bb_status check(const bb_rigl_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                       const float *w_hat, const bb_lora *lora, const float *h, const float *xnorm,
                       const bb_mask *mask) {
    BB_CHECK(o && w && w_hat && h && mask && rows >= 1 && cols >= 1, BB_ERR_ARG,
             "%s: RigL needs options, W, the compressed weight, H and the mask", name);
    BB_CHECK(o->fraction >= 0 && o->fraction <= 1, BB_ERR_ARG, "%s: rigl.fraction %g must be in [0, 1]", name,
             o->fraction);
    BB_CHECK(mask->rows == rows && mask->cols == cols, BB_ERR_ARG, "%s: mask (%lld, %lld) for a (%lld, %lld) weight",
             name, (long long)mask->rows, (long long)mask->cols, (long long)rows, (long long)cols);
    BB_CHECK(!lora || (lora->rows == rows && lora->cols == cols), BB_ERR_ARG, "%s: factors of another shape", name);
    /* the entries over threads in row ranges (a weight is gigabytes at 70B shapes); the first offending entry in
     * row-major order is the one reported, whatever the thread count */
    check_job jobs[BB_PARALLEL_MAX];
    int nt = bb_parallel_threads(o->threads, rows * cols, (int64_t)1 << 22);
    for (int t = 0; t < nt; t++) jobs[t] = (check_job){w, w_hat, mask, cols, rows * t / nt, rows * (t + 1) / nt, -1, 0};
    bb_parallel_run(check_rows, jobs, sizeof jobs[0], nt);
    for (int t = 0; t < nt; t++) {
        int64_t k = jobs[t].found, i = k / cols, j = k % cols;
        if (k < 0) continue;
        BB_CHECK(jobs[t].kind != 1, BB_ERR_NUMERIC, "%s: non-finite weight at row %lld, column %lld", name,
                 (long long)i, (long long)j);
        BB_CHECK(0, BB_ERR_ARG, "%s: pruned weight (%lld, %lld) is %g, not 0: apply the mask first (bb_mask_apply)",
                 name, (long long)i, (long long)j, (double)w_hat[k]);
    }
    for (int64_t j = 0; j < cols; j++) {
        BB_CHECK(isfinite(h[j * cols + j]) && h[j * cols + j] >= 0, BB_ERR_NUMERIC, "%s: H[%lld][%lld] = %g", name,
                 (long long)j, (long long)j, (double)h[j * cols + j]);
        BB_CHECK(!xnorm || (isfinite(xnorm[j]) && xnorm[j] >= 0), BB_ERR_NUMERIC, "%s: channel norm %lld is %g",
                 name, (long long)j, xnorm ? (double)xnorm[j] : 0.0);
    }
    return BB_OK;
}

static double channel_norm(const float *h, const float *xnorm, int64_t cols, int64_t j) {
    return xnorm ? (double)xnorm[j] : sqrt((double)h[j * cols + j]);
}

/* Candidates of group [i0, i1) rows: grow (pruned, H_jj > 0, G != 0) and drop (kept). */
static void collect(int64_t i0, int64_t i1, int64_t cols, const float *g, const float *w_hat, const float *h,
                    const float *xnorm, const bb_mask *mask, cand *grow, int64_t *ng, cand *drop, int64_t *nd) {
    *ng = *nd = 0;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t e = i * cols + j;
            if (bb_mask_get(mask, i, j)) {
                drop[(*nd)++] = (cand){fabs((double)w_hat[e]) * channel_norm(h, xnorm, cols, j), e};
            } else if (h[j * cols + j] > 0 && g[e] != 0) {
                grow[(*ng)++] = (cand){fabs((double)g[e]), e};
            }
        }
}

/* Groups [g0, g1) (rows when per_row, else the one whole matrix) of a step; the loss changes of the
 * applied swaps go to deltas + the group's offset (at most `cap` per group), in the order applied, so
 * that the caller adds them up in the same order for any thread count. */
typedef struct {
    const bb_rigl_opts *o;
    int64_t cols, step, g0, g1, cap;
    const float *h, *xnorm;
    float *g, *w_hat;
    bb_mask *mask;
    double *deltas;
    int64_t *n_deltas; /* (groups) swaps applied per group */
    int64_t planned;
    cand *grow, *drop;
} rigl_job;

static void *rigl_groups(void *arg) {
    rigl_job *jb = arg;
    const int64_t cols = jb->cols;
    const float *h = jb->h;
    float *g = jb->g, *w_hat = jb->w_hat;
    for (int64_t gi = jb->g0; gi < jb->g1; gi++) {
        int64_t i0 = gi * jb->step, ng, nd;
        collect(i0, i0 + jb->step, cols, g, w_hat, h, jb->xnorm, jb->mask, jb->grow, &ng, jb->drop, &nd);
        int64_t n = (int64_t)floor(jb->o->fraction * (double)nd);
        jb->planned += n;
        if (n > ng) n = ng;
        jb->n_deltas[gi] = 0;
        if (n == 0) continue;
        select_sorted(jb->grow, ng, n, by_key_desc);
        select_sorted(jb->drop, nd, n, by_key_asc);
        double *out = jb->deltas + (jb->step == 1 ? gi * jb->cap : 0);
        for (int64_t t = 0; t < n; t++) {
            int64_t d = jb->drop[t].idx, r = jb->grow[t].idx;
            int64_t id = d / cols, jd = d % cols, ig = r / cols, jg = r % cols;
            double wd = w_hat[d], hgg = h[jg * cols + jg];
            double dd = 2 * wd * g[d] + wd * wd * h[jd * cols + jd];
            double gg = g[r] + (ig == id ? wd * h[jd * cols + jg] : 0.0);
            double delta = dd - gg * gg / hgg;
            if (!(delta < 0)) break;
            w_hat[d] = 0;
            bb_mask_set(jb->mask, id, jd, 0);
            for (int64_t q = 0; q < cols; q++) g[id * cols + q] += (float)(wd * h[jd * cols + q]);
            float val = (float)(gg / hgg);
            w_hat[r] = val;
            bb_mask_set(jb->mask, ig, jg, 1);
            for (int64_t q = 0; q < cols; q++) g[ig * cols + q] -= val * h[jg * cols + q];
            out[jb->n_deltas[gi]++] = delta;
        }
    }
    return NULL;
}

bb_status bb_rigl_step(const bb_rigl_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                       float *w_hat, const bb_lora *lora, const float *h, const float *xnorm, bb_mask *mask,
                       bb_rigl_stats *st) {
    name = name ? name : "layer";
    BB_CALL(check(o, name, rows, cols, w, w_hat, lora, h, xnorm, mask));
    const bb_linalg_backend *be = o->backend;
    if (!be) BB_CALL(bb_linalg_backend_default_get(&be));
    size_t nw = (size_t)(rows * cols);
    int64_t group = o->per_row ? cols : (int64_t)nw;
    const int64_t step = o->per_row ? 1 : rows, n_groups = rows / step;
    /* per_row: rows in threads (a swap touches its own row of G, Ŵ and the mask only); each thread's first
     * row starts a mask byte (rows a multiple of 8 apart), so no two threads write one byte */
    int nt = o->per_row && o->threads > 1 ? bb_parallel_threads(o->threads, n_groups, 8) : 1;
    const int64_t cap = (int64_t)floor(o->fraction * (double)group) + 1; /* swaps a group can make */
    float *e = NULL, *g = NULL;
    cand *cands = NULL;
    double *deltas = NULL;
    int64_t *n_deltas = NULL;
    bb_rigl_stats s = {0};
    bb_status stt = BB_OK;
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&e, sizeof(float) * nw, "RigL: E'"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&g, sizeof(float) * nw, "RigL: E' H"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&cands, sizeof(cand) * (size_t)group * 2 * (size_t)nt,
                                     "RigL: regrow and drop candidates"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&deltas, sizeof(double) * (size_t)(o->per_row ? n_groups : 1) *
                                                           (size_t)cap, "RigL: loss changes"));
    BB_CALL_GOTO(stt, out, bb_calloc((void **)&n_deltas, (size_t)n_groups, sizeof(int64_t), "RigL: swaps per group"));
    bb_event_begin("rigl.grad");
    bb_sub_f32(e, w, w_hat, (int64_t)nw); /* the passes over the weight over the threads (core/reduce.h) */
    if (lora)
        BB_CALL_GOTO(stt, out,
                     be->gemm(BB_OP_N, BB_OP_N, rows, cols, lora->rank, -1.0f, lora->a, lora->rank, lora->b, cols,
                              1.0f, e, cols));
    BB_CALL_GOTO(stt, out, be->gemm(BB_OP_N, BB_OP_N, rows, cols, cols, 1.0f, e, cols, h, cols, 0.0f, g, cols));
    double loss = bb_dot_f64(e, g, (int64_t)nw);
    s.loss_before = loss;
    bb_event_end("rigl.grad", 2.0 * (double)rows * (double)cols * (double)cols, 0);
    bb_event_begin("rigl.swaps");
    rigl_job jobs[BB_PARALLEL_MAX];
    for (int t = 0; t < nt; t++) {
        /* thread t: groups [8 * (n8 * t / nt), ...): multiples of 8 rows */
        int64_t n8 = (n_groups + 7) / 8, a = 8 * (n8 * t / nt), b = t == nt - 1 ? n_groups : 8 * (n8 * (t + 1) / nt);
        jobs[t] = (rigl_job){o, cols, step, a, b < n_groups ? b : n_groups, cap, h, xnorm, g, w_hat, mask,
                             deltas, n_deltas, 0, cands + (size_t)group * 2 * (size_t)t,
                             cands + (size_t)group * (2 * (size_t)t + 1)};
    }
    bb_parallel_run(rigl_groups, jobs, sizeof jobs[0], nt);
    bb_event_end("rigl.swaps", 0, 0);
    for (int t = 0; t < nt; t++) s.planned += jobs[t].planned;
    for (int64_t gi = 0; gi < n_groups; gi++) {
        const double *d = deltas + (o->per_row ? gi * cap : 0);
        for (int64_t k = 0; k < n_deltas[gi]; k++) loss += d[k];
        s.swapped += n_deltas[gi];
    }
    s.loss_after = loss;
    if (st) *st = s;
out:
    free(e);
    free(g);
    free(cands);
    free(deltas);
    free(n_deltas);
    return stt;
}

/* ---- reference ------------------------------------------------------------------------- */

/* E' row i and its loss e H eᵀ, in double. */
static double row_loss_ref(int64_t i, int64_t cols, const float *w, const float *w_hat, const bb_lora *lora,
                           const float *h, double *e) {
    for (int64_t j = 0; j < cols; j++) {
        double ab = 0;
        if (lora)
            for (int t = 0; t < lora->rank; t++)
                ab += (double)lora->a[i * lora->rank + t] * lora->b[(int64_t)t * cols + j];
        e[j] = (double)w[i * cols + j] - w_hat[i * cols + j] - ab;
    }
    double s = 0;
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) s += e[a] * (double)h[a * cols + b] * e[b];
    return s;
}

/* G_ij = (E' H)_ij in double. */
static double grad_entry_ref(int64_t i, int64_t j, int64_t cols, const float *w, const float *w_hat,
                             const bb_lora *lora, const float *h, double *e) {
    row_loss_ref(i, cols, w, w_hat, lora, h, e);
    double s = 0;
    for (int64_t q = 0; q < cols; q++) s += e[q] * (double)h[q * cols + j];
    return s;
}

bb_status bb_rigl_step_ref(const bb_rigl_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                           float *w_hat, const bb_lora *lora, const float *h, const float *xnorm, bb_mask *mask,
                           bb_rigl_stats *st) {
    name = name ? name : "layer";
    BB_CALL(check(o, name, rows, cols, w, w_hat, lora, h, xnorm, mask));
    size_t nw = (size_t)(rows * cols);
    double *g = malloc(sizeof(double) * nw), *e = malloc(sizeof(double) * (size_t)cols);
    uint8_t *used = calloc(nw, 1), *kept0 = malloc(nw);
    if (!g || !e || !used || !kept0) {
        free(g);
        free(e);
        free(used);
        free(kept0);
        BB_CHECK(0, BB_ERR_OOM, "out of memory: RigL reference");
    }
    bb_rigl_stats s = {0};
    for (int64_t i = 0; i < rows; i++) {
        s.loss_before += row_loss_ref(i, cols, w, w_hat, lora, h, e);
        for (int64_t j = 0; j < cols; j++) {
            double v = 0;
            for (int64_t q = 0; q < cols; q++) v += e[q] * (double)h[q * cols + j];
            g[i * cols + j] = v;
            kept0[i * cols + j] = (uint8_t)bb_mask_get(mask, i, j);
        }
    }
    int64_t step = o->per_row ? 1 : rows;
    for (int64_t i0 = 0; i0 < rows; i0 += step) {
        int64_t lo = i0 * cols, hi = (i0 + step) * cols, nd = 0, ng = 0;
        for (int64_t k = lo; k < hi; k++) {
            nd += kept0[k];
            ng += !kept0[k] && h[(k % cols) * cols + k % cols] > 0 && (float)g[k] != 0;
        }
        int64_t n = (int64_t)floor(o->fraction * (double)nd);
        s.planned += n;
        for (int64_t t = 0; t < n && t < ng; t++) {
            /* the next regrow: largest |G| at the start, lowest index on ties; the next drop likewise */
            int64_t r = -1, d = -1;
            for (int64_t k = lo; k < hi; k++) {
                if (used[k]) continue;
                int64_t j = k % cols;
                if (!kept0[k] && h[j * cols + j] > 0 && (float)g[k] != 0 && (r < 0 || fabs((float)g[k]) > fabs((float)g[r])))
                    r = k;
                double sc = fabs((double)w_hat[k]) * channel_norm(h, xnorm, cols, j);
                if (kept0[k] && (d < 0 || sc < fabs((double)w_hat[d]) * channel_norm(h, xnorm, cols, d % cols)))
                    d = k;
            }
            used[r] = used[d] = 1;
            int64_t id = d / cols, ig = r / cols, jg = r % cols;
            double before = row_loss_ref(id, cols, w, w_hat, lora, h, e);
            if (ig != id) before += row_loss_ref(ig, cols, w, w_hat, lora, h, e);
            float wd = w_hat[d];
            w_hat[d] = 0;
            double gg = grad_entry_ref(ig, jg, cols, w, w_hat, lora, h, e);
            w_hat[r] = (float)(gg / h[jg * cols + jg]);
            double after = row_loss_ref(id, cols, w, w_hat, lora, h, e);
            if (ig != id) after += row_loss_ref(ig, cols, w, w_hat, lora, h, e);
            if (!(after - before < 0)) {
                w_hat[d] = wd;
                w_hat[r] = 0;
                break;
            }
            bb_mask_set(mask, id, d % cols, 0);
            bb_mask_set(mask, ig, jg, 1);
            s.swapped++;
        }
    }
    for (int64_t i = 0; i < rows; i++) s.loss_after += row_loss_ref(i, cols, w, w_hat, lora, h, e);
    if (st) *st = s;
    free(g);
    free(e);
    free(used);
    free(kept0);
    return BB_OK;
}
