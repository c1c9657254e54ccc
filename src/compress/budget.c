/* budget.c — bit-budget tables, fortress blocks, and the optimal (Lagrangian), seed and uniform bit assignments. */
#include "compress/budget.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "linalg/backend.h"
#include "io/qformat.h"

void bb_budget_opts_default(bb_budget_opts *o) {
    static const int def[] = {2, 3, 4, 5, 6, 8, 16};
    memset(o, 0, sizeof *o);
    strcpy(o->policy, "optimal");
    o->target_bits = 4;
    o->init_bits = 8;
    o->base_bits = 4;
    o->n_choices = (int)(sizeof def / sizeof def[0]);
    memcpy(o->choices, def, sizeof def);
    o->alpha = 0.3;
}

double bb_budget_alpha(int k, int R, double start, double end) {
    if (R <= 1) return start;
    return start + (end - start) * (double)(k - 1) / (double)(R - 1);
}

int bb_budget_type_for_bits(int bits, int legacy) {
    switch (bits) {
    case 2: return BB_GGML_Q2_K;
    case 3: return BB_GGML_Q3_K;
    case 4: return legacy ? BB_GGML_Q4_0 : BB_GGML_Q4_K;
    case 5: return legacy ? BB_GGML_Q5_0 : BB_GGML_Q5_K;
    case 6: return BB_GGML_Q6_K;
    case 8: return BB_GGML_Q8_0;
    case 16: return BB_GGML_F16;
    case 32: return BB_GGML_F32;
    default: return -1;
    }
}

static bb_status check_choices(const bb_budget_opts *o) {
    BB_CHECK(o->n_choices >= 1 && o->n_choices <= BB_BUDGET_MAX_CHOICES, BB_ERR_CONFIG,
             "budget.bits_choices: %d widths; give 1 to %d", o->n_choices, BB_BUDGET_MAX_CHOICES);
    for (int i = 0; i < o->n_choices; i++) {
        BB_CHECK(bb_budget_type_for_bits(o->choices[i], o->legacy) >= 0, BB_ERR_CONFIG,
                 "budget.bits_choices: %d bits has no GGUF type; use widths from 2, 3, 4, 5, 6, 8, 16, 32",
                 o->choices[i]);
        BB_CHECK(i == 0 || o->choices[i] > o->choices[i - 1], BB_ERR_CONFIG,
                 "budget.bits_choices must be strictly increasing");
    }
    return BB_OK;
}

bb_status bb_budget_opts_from_config(const bb_config *cfg, int wave, bb_budget_opts *o) {
    BB_CHECK(cfg != NULL && o != NULL, BB_ERR_ARG, "bb_budget_opts_from_config: NULL argument");
    BB_CHECK(wave >= 1 && wave <= cfg->waves.count, BB_ERR_CONFIG, "wave %d is outside 1..waves.count = %lld", wave,
             (long long)cfg->waves.count);
    BB_CHECK(cfg->budget.bits_choices.n <= BB_BUDGET_MAX_CHOICES, BB_ERR_CONFIG,
             "budget.bits_choices: %d widths; at most %d", cfg->budget.bits_choices.n, BB_BUDGET_MAX_CHOICES);
    bb_budget_opts t = *o;
    snprintf(t.policy, sizeof t.policy, "%s", cfg->budget.policy);
    t.target_bits = cfg->budget.target_bits;
    t.init_bits = (int)cfg->budget.init_bits;
    t.base_bits = (int)cfg->budget.base_bits;
    t.n_choices = cfg->budget.bits_choices.n;
    for (int i = 0; i < t.n_choices; i++) t.choices[i] = (int)cfg->budget.bits_choices.v[i];
    t.alpha = bb_budget_alpha(wave, (int)cfg->waves.count, cfg->waves.alpha_start, cfg->waves.alpha_end);
    t.fortress_top = cfg->budget.fortress_top;
    t.n_fortress = 0;
    /* budget.fortress: "output.weight, blk.0.*" */
    for (const char *p = cfg->budget.fortress; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ') len--;
        if (len == 0) break;
        char pat[BB_CONFIG_NAME_MAX];
        BB_CHECK(len < sizeof pat, BB_ERR_CONFIG, "budget.fortress: pattern \"%.*s\" is longer than %d characters",
                 (int)len, p, BB_CONFIG_NAME_MAX - 1);
        memcpy(pat, p, len);
        pat[len] = 0;
        BB_CALL(bb_budget_add_fortress(&t, pat));
        p += len;
    }
    BB_CALL(check_choices(&t));
    *o = t;
    return BB_OK;
}

bb_status bb_budget_add_fortress(bb_budget_opts *o, const char *pattern) {
    BB_CHECK(o != NULL && pattern != NULL, BB_ERR_ARG, "bb_budget_add_fortress: NULL argument");
    BB_CHECK(o->n_fortress < BB_BUDGET_MAX_FORTRESS, BB_ERR_CONFIG, "fortress patterns: at most %d",
             BB_BUDGET_MAX_FORTRESS);
    BB_CHECK(strlen(pattern) < BB_CONFIG_NAME_MAX, BB_ERR_CONFIG,
             "fortress pattern \"%s\" is longer than %d characters", pattern, BB_CONFIG_NAME_MAX - 1);
    strcpy(o->fortress[o->n_fortress++], pattern);
    return BB_OK;
}

int bb_budget_is_fortress(const bb_budget_opts *o, const char *name) {
    for (int i = 0; i < o->n_fortress; i++)
        if (fnmatch(o->fortress[i], name, 0) == 0) return 1;
    return 0;
}

bb_status bb_budget_block_init(const bb_budget_opts *o, const char *name, uint64_t key, int64_t rows, int64_t cols,
                               double usage, bb_budget_block *b) {
    BB_CHECK(o != NULL && name != NULL && b != NULL, BB_ERR_ARG, "bb_budget_block_init: NULL argument");
    BB_CHECK(strlen(name) < BB_TENSOR_NAME_MAX, BB_ERR_ARG, "budget block name \"%s\" is too long", name);
    BB_CHECK(rows >= 1 && cols >= 1 && rows <= INT64_MAX / cols, BB_ERR_ARG, "%s: bad block shape (%lld, %lld)", name,
             (long long)rows, (long long)cols);
    BB_CALL(check_choices(o));
    memset(b, 0, sizeof *b);
    b->key = key;
    strcpy(b->name, name);
    b->rows = rows;
    b->cols = cols;
    b->size = rows * cols;
    b->usage = usage;
    b->fortress = bb_budget_is_fortress(o, name);
    for (int i = 0; i < o->n_choices; i++) {
        int bits = o->choices[i];
        if (b->fortress && bits != 16) continue;
        int type = bb_qformat_fallback(bb_budget_type_for_bits(bits, o->legacy), cols);
        size_t row_bytes;
        BB_CALL(bb_qformat_row_bytes(type, cols, &row_bytes));
        int64_t cost = (int64_t)row_bytes * 8 * rows;
        /* A fallback can make two widths store the same type: keep the smaller width only. */
        if (b->n > 0 && b->c[b->n - 1].type == type) continue;
        BB_CHECK(b->n == 0 || cost > b->c[b->n - 1].cost, BB_ERR_INTERNAL,
                 "%s: %d bits (%s) costs no more than %d bits (%s)", name, bits, bb_ggml_type_name(type),
                 b->c[b->n - 1].bits, bb_ggml_type_name(b->c[b->n - 1].type));
        b->c[b->n++] = (bb_budget_candidate){bits, type, cost, 0};
    }
    if (b->fortress && b->n == 0) {
        /* Fortress without 16 in the choices: still 16 bits, as the seed asks. */
        size_t row_bytes;
        BB_CALL(bb_qformat_row_bytes(BB_GGML_F16, cols, &row_bytes));
        b->c[b->n++] = (bb_budget_candidate){16, BB_GGML_F16, (int64_t)row_bytes * 8 * rows, 0};
    }
    return BB_OK;
}

typedef struct {
    double d;
    uint64_t key;
    int64_t i;
} sens_item;

/* Larger distortion first, then smaller key. */
static int by_sensitivity(const void *a, const void *b) {
    const sens_item *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

bb_status bb_budget_fortress_top(double frac, bb_budget_block *blocks, int64_t n, int64_t *made) {
    BB_CHECK(blocks != NULL && n >= 1, BB_ERR_ARG, "bb_budget_fortress_top: no blocks");
    BB_CHECK(frac >= 0 && frac <= 1, BB_ERR_CONFIG, "budget.fortress_top is %g; give a fraction of the blocks in [0, 1]",
             frac);
    int64_t k = (int64_t)floor(frac * (double)n), m = 0;
    if (made) *made = 0;
    if (k == 0) return BB_OK;
    sens_item *it;
    BB_CALL(bb_malloc((void **)&it, (size_t)n * sizeof *it, "fortress ranking"));
    for (int64_t i = 0; i < n; i++)
        if (!blocks[i].fortress) it[m++] = (sens_item){blocks[i].c[0].distortion, blocks[i].key, i};
    qsort(it, (size_t)m, sizeof *it, by_sensitivity);
    for (int64_t s = 1; s < m; s++)
        if (it[s].key == it[s - 1].key) {
            free(it);
            return bb_error(BB_ERR_ARG, __FILE__, __LINE__, "budget blocks share the key %llu",
                            (unsigned long long)it[s].key);
        }
    if (k > m) k = m;
    for (int64_t s = 0; s < k; s++) {
        bb_budget_block *b = &blocks[it[s].i];
        bb_budget_candidate f16 = {16, BB_GGML_F16, 0, 0};
        size_t row_bytes;
        bb_status st = bb_qformat_row_bytes(BB_GGML_F16, b->cols, &row_bytes);
        if (st != BB_OK) {
            free(it);
            return bb_trace(st, __FILE__, __LINE__, "F16 row bytes");
        }
        f16.cost = (int64_t)row_bytes * 8 * b->rows;
        for (int c = 0; c < b->n; c++)
            if (b->c[c].bits == 16) f16 = b->c[c];
        b->c[0] = f16;
        b->n = 1;
        b->fortress = 1;
    }
    free(it);
    if (made) *made = k;
    return BB_OK;
}

bb_status bb_budget_block_measure(bb_budget_block *b, const bb_quantizer *qz, const bb_quant_opts *q,
                                  const bb_quant_input *in) {
    BB_CHECK(b != NULL && qz != NULL && q != NULL && in != NULL, BB_ERR_ARG, "bb_budget_block_measure: NULL argument");
    BB_CHECK(in->rows == b->rows && in->cols == b->cols, BB_ERR_ARG,
             "%s: budget table is for (%lld, %lld), the matrix is (%lld, %lld)", b->name, (long long)b->rows,
             (long long)b->cols, (long long)in->rows, (long long)in->cols);
    /* H is read by every candidate's layer error: a device backend keeps one copy for the loop */
    const bb_linalg_backend *be = q->backend;
    if (in->h && !be) BB_CALL(bb_linalg_backend_default_get(&be));
    const int held = in->h && bb_linalg_hold(be, in->h, in->cols, in->cols, in->cols) == BB_OK; /* released below */
    bb_status out = BB_OK;
    for (int i = 0; out == BB_OK && i < b->n; i++) {
        bb_quant_opts qo = *q;
        qo.type = b->c[i].type;
        bb_quant_result *r = NULL;
        bb_status st = qz->apply(&qo, in, &r);
        if (st != BB_OK) {
            out = st;
            break;
        }
        double d = 0;
        if (in->h) {
            st = bb_quant_layer_error(qo.backend, in->w, r->w_hat, in->h, in->rows, in->cols, &d);
        } else {
            for (int64_t k = 0; k < b->size; k++) {
                double e = (double)in->w[k] - r->w_hat[k];
                d += e * e;
            }
        }
        bb_quant_result_destroy(&r);
        out = st;
        if (st == BB_OK) b->c[i].distortion = d;
    }
    if (held) bb_linalg_release(be, in->h);
    return out;
}

/* ---- assignment ---- */

typedef struct {
    const bb_budget_opts *o;
    const bb_budget_block *b; /* the caller's tables */
    const int64_t *ord;       /* indices into b by increasing key */
    int64_t n, budget;
    int *choice;
    double lambda;
} assign_ctx;

typedef struct {
    uint64_t key;
    int64_t i;
} key_index;

static int by_key(const void *pa, const void *pb) {
    const key_index *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

static int64_t total_cost(const assign_ctx *c) {
    int64_t t = 0;
    for (int64_t i = 0; i < c->n; i++) t += c->b[i].c[c->choice[i]].cost;
    return t;
}

/* Index of the candidate with the largest width <= bits (the smallest candidate if none). */
static int candidate_at_most(const bb_budget_block *b, int bits) {
    int k = 0;
    for (int i = 0; i < b->n; i++)
        if (b->c[i].bits <= bits) k = i;
    return k;
}

/* argmin_c D_c + lambda cost_c, ties to the cheaper candidate. */
static int lagrange_pick(const bb_budget_block *b, double lambda) {
    int best = 0;
    double bv = b->c[0].distortion + lambda * (double)b->c[0].cost;
    for (int i = 1; i < b->n; i++) {
        double v = b->c[i].distortion + lambda * (double)b->c[i].cost;
        if (v < bv) {
            bv = v;
            best = i;
        }
    }
    return best;
}

static int64_t lagrange_total(assign_ctx *c, double lambda) {
    for (int64_t i = 0; i < c->n; i++) c->choice[i] = lagrange_pick(&c->b[i], lambda);
    return total_cost(c);
}

static bb_status assign_lagrange(assign_ctx *c) {
    /* A lambda above every block's steepest distortion-per-bit slope picks the cheapest everywhere. */
    double hi = 0;
    for (int64_t i = 0; i < c->n; i++) {
        const bb_budget_block *b = &c->b[i];
        for (int k = 1; k < b->n; k++) {
            BB_CHECK(isfinite(b->c[k].distortion) && isfinite(b->c[0].distortion), BB_ERR_NUMERIC,
                     "%s: distortion at %d bits is not finite", b->name, b->c[k].bits);
            double slope = (b->c[0].distortion - b->c[k].distortion) / (double)(b->c[k].cost - b->c[0].cost);
            if (slope > hi) hi = slope;
        }
    }
    double lo = 0;
    if (lagrange_total(c, 0) <= c->budget) {
        hi = 0;
    } else {
        hi = hi * 2 + 1e-300;
        /* Bisection on a step function: every probe is a pure function of the tables. */
        for (int it = 0; it < 200 && hi > lo; it++) {
            double mid = lo + (hi - lo) / 2;
            if (mid <= lo || mid >= hi) break;
            if (lagrange_total(c, mid) <= c->budget)
                hi = mid;
            else
                lo = mid;
        }
    }
    c->lambda = hi;
    int64_t total = lagrange_total(c, hi);
    BB_CHECK(total <= c->budget, BB_ERR_INTERNAL, "lagrange: %lld bits at lambda %g exceed the budget %lld",
             (long long)total, hi, (long long)c->budget);
    /* The multiplier reaches only the convex hull of each block's curve; spend the rest greedily. */
    for (;;) {
        int64_t best_i = -1;
        int best_k = 0;
        double best_ratio = 0;
        for (int64_t s = 0; s < c->n; s++) {
            int64_t i = c->ord[s];
            const bb_budget_block *b = &c->b[i];
            const bb_budget_candidate *cur = &b->c[c->choice[i]];
            for (int k = c->choice[i] + 1; k < b->n; k++) {
                int64_t extra = b->c[k].cost - cur->cost;
                if (total + extra > c->budget || !(b->c[k].distortion < cur->distortion)) continue;
                double ratio = (cur->distortion - b->c[k].distortion) / (double)extra;
                if (ratio > best_ratio) {
                    best_ratio = ratio;
                    best_i = i;
                    best_k = k;
                }
            }
        }
        if (best_i < 0) break;
        total += c->b[best_i].c[best_k].cost - c->b[best_i].c[c->choice[best_i]].cost;
        c->choice[best_i] = best_k;
    }
    return BB_OK;
}

static bb_status assign_seed(assign_ctx *c) {
    const bb_budget_opts *o = c->o;
    for (int64_t i = 0; i < c->n; i++) {
        const bb_budget_block *b = &c->b[i];
        c->choice[i] = b->fortress ? 0 : candidate_at_most(b, b->usage < o->alpha ? o->base_bits : o->init_bits);
    }
    int64_t total = total_cost(c);
    if (total <= c->budget) return BB_OK;
    /* Demotion order: increasing usage, ties by key (dem starts in key order and the sort is stable). */
    int64_t *dem;
    BB_CALL(bb_malloc((void **)&dem, (size_t)c->n * sizeof *dem, "seed demotion order"));
    int64_t nd = 0;
    for (int64_t s = 0; s < c->n; s++)
        if (!c->b[c->ord[s]].fortress) dem[nd++] = c->ord[s];
    for (int64_t a = 1; a < nd; a++) { /* insertion sort: stable, so equal usage keeps key order */
        int64_t v = dem[a], j = a;
        while (j > 0 && c->b[dem[j - 1]].usage > c->b[v].usage) {
            dem[j] = dem[j - 1];
            j--;
        }
        dem[j] = v;
    }
    int moved = 1;
    while (total > c->budget && moved) {
        moved = 0;
        for (int64_t s = 0; s < nd && total > c->budget; s++) {
            int64_t i = dem[s];
            if (c->choice[i] == 0) continue;
            total += c->b[i].c[c->choice[i] - 1].cost - c->b[i].c[c->choice[i]].cost;
            c->choice[i]--;
            moved = 1;
        }
    }
    free(dem);
    BB_CHECK(total <= c->budget, BB_ERR_INTERNAL, "seed: demotion left %lld bits over a budget of %lld",
             (long long)total, (long long)c->budget);
    return BB_OK;
}

static bb_status assign_uniform(assign_ctx *c) {
    const bb_budget_opts *o = c->o;
    for (int k = o->n_choices - 1; k >= 0; k--) {
        for (int64_t i = 0; i < c->n; i++)
            c->choice[i] = c->b[i].fortress ? 0 : candidate_at_most(&c->b[i], o->choices[k]);
        if (total_cost(c) <= c->budget) return BB_OK;
    }
    return bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__, "uniform: the cheapest assignment exceeds the budget");
}

typedef struct {
    const char *name;
    bb_status (*assign)(assign_ctx *c);
} budget_policy;

static const budget_policy policies[] = {
    {"optimal", assign_lagrange},
    {"lagrange", assign_lagrange},
    {"seed", assign_seed},
    {"uniform", assign_uniform},
};

bb_status bb_budget_assign(const bb_budget_opts *o, const bb_budget_block *blocks, int64_t n, int *choice,
                           bb_budget_summary *sum) {
    BB_CHECK(o != NULL && blocks != NULL && choice != NULL && n >= 1, BB_ERR_ARG,
             "bb_budget_assign: NULL argument or no blocks");
    const budget_policy *p = NULL;
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++)
        if (strcmp(policies[i].name, o->policy) == 0) p = &policies[i];
    BB_CHECK(p != NULL, BB_ERR_CONFIG, "budget.policy \"%s\" is unknown; valid: optimal (alias lagrange), seed, uniform",
             o->policy);
    int64_t weights = 0, cheapest = 0;
    for (int64_t i = 0; i < n; i++) {
        const bb_budget_block *b = &blocks[i];
        BB_CHECK(b->n >= 1 && b->n <= BB_BUDGET_MAX_CHOICES && b->size >= 1, BB_ERR_ARG,
                 "budget block %s (key %llu) has no candidates", b->name, (unsigned long long)b->key);
        weights += b->size;
        cheapest += b->c[0].cost;
    }
    const int64_t budget = (int64_t)floor(o->target_bits * (double)weights);
    BB_CHECK(cheapest <= budget, BB_ERR_CONFIG,
             "budget.target_bits = %g is below the smallest achievable average, %.4f bits per weight (every block "
             "at its narrowest width, scales included, fortress blocks at 16); raise budget.target_bits or add "
             "narrower budget.bits_choices",
             o->target_bits, (double)cheapest / (double)weights);
    int64_t *ord;
    key_index *ki;
    BB_CALL(bb_malloc((void **)&ki, (size_t)n * sizeof *ki, "budget block keys"));
    if (bb_malloc((void **)&ord, (size_t)n * sizeof *ord, "budget block order") != BB_OK) {
        free(ki);
        return bb_trace(BB_ERR_OOM, __FILE__, __LINE__, "bb_malloc");
    }
    for (int64_t i = 0; i < n; i++) ki[i] = (key_index){blocks[i].key, i};
    qsort(ki, (size_t)n, sizeof *ki, by_key);
    for (int64_t s = 0; s < n; s++) ord[s] = ki[s].i;
    free(ki);
    for (int64_t s = 1; s < n; s++)
        if (blocks[ord[s]].key == blocks[ord[s - 1]].key) {
            bb_status e =
                bb_error(BB_ERR_ARG, __FILE__, __LINE__, "budget blocks %s and %s share the key %llu",
                         blocks[ord[s - 1]].name, blocks[ord[s]].name, (unsigned long long)blocks[ord[s]].key);
            free(ord);
            return e;
        }
    assign_ctx c = {o, blocks, ord, n, budget, choice, 0};
    bb_status st = p->assign(&c);
    if (st == BB_OK && sum) {
        memset(sum, 0, sizeof *sum);
        sum->weights = weights;
        sum->budget_init = weights * o->init_bits;
        sum->budget = budget;
        sum->total = total_cost(&c);
        sum->avg_bits = (double)sum->total / (double)weights;
        for (int64_t s = 0; s < n; s++) sum->distortion += blocks[ord[s]].c[choice[ord[s]]].distortion;
        sum->lambda = c.lambda;
    }
    free(ord);
    return st == BB_OK ? st : bb_trace(st, __FILE__, __LINE__, "policy assign");
}
