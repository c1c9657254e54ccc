/* lowrank.c — whitened spectrum, rank choice and factorization of a weight as A·B. */
#include "compress/lowrank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/rsvd.h"

int64_t bb_lowrank_breakeven_rank(int64_t rows, int64_t cols) {
    if (rows < 1 || cols < 1) return 0;
    return (rows * cols - 1) / (rows + cols);
}

int64_t bb_lowrank_rank_for_bits(int64_t rows, int64_t cols, double bits_per_value, int64_t budget_bits) {
    if (rows < 1 || cols < 1 || !(bits_per_value > 0) || budget_bits <= 0) return 0;
    return (int64_t)floor((double)budget_bits / (bits_per_value * (double)(rows + cols)));
}

int bb_lowrank_rank_for_error(const float *s, int k, double total, double rel_err) {
    if (!(total > 0)) return 0;
    double tail = total;
    if (tail <= rel_err * total) return 0;
    for (int r = 1; r <= k; r++) {
        tail -= (double)s[r - 1] * s[r - 1];
        if (tail <= rel_err * total) return r;
    }
    return -1;
}

bb_status bb_lowrank_spectrum(const bb_heal_fit_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                              const float *h, int k, float *s, double *total) {
    bb_heal_fit_opts def;
    if (!o) {
        bb_heal_fit_opts_default(&def);
        o = &def;
    }
    name = name ? name : "layer";
    int64_t mn = rows < cols ? rows : cols;
    BB_CHECK(rows >= 1 && cols >= 1 && w && h, BB_ERR_ARG, "%s: spectrum needs W and H", name);
    BB_CHECK(k >= 1 && k <= mn, BB_ERR_ARG, "%s: %d singular values asked of a (%lld, %lld) matrix; 1..%lld", name,
             k, (long long)rows, (long long)cols, (long long)mn);
    const bb_linalg_backend *be = o->backend;
    if (!be) BB_CALL(bb_linalg_backend_default_get(&be));
    size_t nw = (size_t)(rows * cols);
    float *l = NULL, *m = NULL, *sv = NULL;
    bb_rsvd_result rr;
    memset(&rr, 0, sizeof rr);
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, out, bb_malloc((void **)&l, sizeof(float) * (size_t)(cols * cols), "spectrum: whitening"));
    BB_CALL_GOTO(st, out, bb_malloc((void **)&m, sizeof(float) * nw, "spectrum: W L"));
    double damp;
    int zero;
    BB_CALL_GOTO(st, out, bb_heal_whiten(o, name, h, cols, l, &damp, &zero));
    if (zero) {
        memset(s, 0, sizeof(float) * (size_t)k);
        *total = 0;
        goto out;
    }
    BB_CALL_GOTO(st, out, be->gemm(BB_OP_N, BB_OP_N, rows, cols, cols, 1.0f, w, cols, l, cols, 0.0f, m, cols));
    double tot = 0;
    for (size_t i = 0; i < nw; i++) tot += (double)m[i] * m[i];
    *total = tot;
    if (o->svd == BB_HEAL_SVD_EXACT || (o->svd == BB_HEAL_SVD_AUTO && mn <= o->exact_max)) {
        BB_CALL_GOTO(st, out, bb_malloc((void **)&sv, sizeof(float) * (size_t)mn, "spectrum: singular values"));
        BB_CALL_GOTO(st, out, be->svd(rows, cols, m, cols, sv, NULL, 1, NULL, 1));
        memcpy(s, sv, sizeof(float) * (size_t)k);
    } else {
        bb_rsvd_opts ro;
        bb_rsvd_opts_default(&ro);
        ro.rank = k;
        ro.oversample = o->oversample;
        ro.power_iters = o->power_iters;
        ro.seed = o->seed;
        ro.residual = 0;
        ro.backend = be;
        BB_CALL_GOTO(st, out, bb_rsvd_matrix(name, rows, cols, m, &ro, &rr));
        memcpy(s, rr.s, sizeof(float) * (size_t)k);
    }
out:
    bb_rsvd_result_clear(&rr);
    free(l);
    free(m);
    free(sv);
    return st;
}

bb_status bb_lowrank_plan_rank(const bb_heal_fit_opts *o, const char *name, int64_t rows, int64_t cols,
                               const float *w, const float *h, const bb_lowrank_target *t, bb_lowrank_plan *plan) {
    name = name ? name : "layer";
    BB_CHECK(t && (t->rel_err > 0 || t->budget_bits > 0), BB_ERR_ARG,
             "%s: a low-rank plan needs an error target (rel_err > 0) or a bit budget (budget_bits > 0)", name);
    BB_CHECK(t->bits_per_value > 0 && t->bits_per_value <= 64, BB_ERR_ARG,
             "%s: bits per factor value %g must be in (0, 64] (16 for f16 factors)", name, t->bits_per_value);
    memset(plan, 0, sizeof *plan);
    plan->dense_values = rows * cols;
    plan->rel_err = 1;
    int64_t be_rank = bb_lowrank_breakeven_rank(rows, cols);
    if (be_rank < 1) {
        plan->reason = "factoring saves nothing: even rank 1 stores as many values as the matrix";
        return BB_OK;
    }
    int64_t cap = be_rank;
    if (t->budget_bits > 0) {
        int64_t rb = bb_lowrank_rank_for_bits(rows, cols, t->bits_per_value, t->budget_bits);
        if (rb < cap) cap = rb;
    }
    if (t->max_rank > 0 && t->max_rank < cap) cap = t->max_rank;
    if (cap < 1) {
        plan->reason = "the bit budget does not hold rank 1";
        return BB_OK;
    }
    /* one more value than the cap tells an unreachable target apart from one met at the cap */
    int64_t mn = rows < cols ? rows : cols;
    int k = (int)(cap + 1 <= mn ? cap + 1 : mn);
    float *s = NULL;
    BB_CALL(bb_malloc((void **)&s, sizeof(float) * (size_t)k, "low-rank plan: spectrum"));
    double total;
    bb_status st = bb_lowrank_spectrum(o, name, rows, cols, w, h, k, s, &total);
    if (st != BB_OK) {
        free(s);
        return st;
    }
    int r;
    if (t->rel_err > 0) {
        r = bb_lowrank_rank_for_error(s, k, total, t->rel_err);
        if (r < 0 || r > cap) {
            int reached_breakeven = cap == be_rank;
            r = 0;
            plan->reason = reached_breakeven ? "factoring saves nothing: the error target needs the break-even rank"
                                             : "the error target needs more rank than the budget holds";
        } else {
            plan->reason = "smallest rank meeting the error target";
        }
    } else {
        r = (int)cap;
        plan->reason = cap == be_rank ? "the budget holds the break-even rank (largest rank that saves memory)"
                                      : "largest rank the bit budget holds";
    }
    if (r > 0) {
        double tail = total;
        for (int i = 0; i < r; i++) tail -= (double)s[i] * s[i];
        plan->rel_err = total > 0 ? (tail > 0 ? tail / total : 0) : 0;
    }
    if (r == 0 && total == 0) {
        plan->rel_err = 0;
        plan->reason = "H is zero: any weight costs nothing, nothing to store";
    }
    plan->rank = r;
    plan->lowrank_values = (int64_t)r * (rows + cols);
    plan->saves = r > 0 && plan->lowrank_values < plan->dense_values;
    free(s);
    return BB_OK;
}

bb_status bb_lowrank_factor(const bb_heal_fit_opts *o, const char *name, const float *w, const float *h, bb_lora *lora,
                            bb_heal_fit_stats *st) {
    return bb_heal_closed_form(o, name, w, NULL, h, lora, st);
}
