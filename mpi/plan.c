/* plan.c — contiguous layer ranges per rank, balanced by estimated cost (min-max, then even shares). */
#include "mpi/plan.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "model/calib.h"
#include "model/kernels.h"

/* Per-token multiply-adds of the three item kinds (plan.h has the formulas). */
static void item_costs(const bb_model_config *c, int seq_len, int64_t cost[3]) {
    int64_t dim = c->dim, hid = c->hidden_dim, qd = (int64_t)c->n_heads * c->head_dim,
            kvd = (int64_t)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    int64_t lin = dim * (qd + 2 * kvd) + qd * dim + 3 * dim * hid;
    int64_t gram = (dim * dim + qd * qd + dim * dim + hid * hid) / 2;
    cost[0] = dim;
    cost[1] = lin + gram + qd * ((int64_t)seq_len + 1);
    cost[2] = dim * V + dim;
}

/* Greedy count of groups with cost <= cap covering items [j, n) (prefix sums S). */
static int groups_needed(const int64_t *S, int j, int n, int64_t cap) {
    int g = 0;
    while (j < n) {
        int k = j;
        while (k < n && S[k + 1] - S[j] <= cap) k++;
        if (k == j) return 1 << 30; /* an item above the cap */
        g++;
        j = k;
    }
    return g;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The smallest bottleneck over cuts of n items into at most N groups: one of
 * the O(n^2) contiguous sums, found by bisection on the sorted candidates. */
static bb_status bottleneck(const int64_t *S, int n, int N, int64_t *out) {
    size_t nc = (size_t)n * (n + 1) / 2, k = 0;
    int64_t *cand;
    BB_CALL(bb_malloc((void **)&cand, nc * sizeof *cand, "sharding plan candidates"));
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j <= n; j++) cand[k++] = S[j] - S[i];
    qsort(cand, nc, sizeof *cand, cmp_i64);
    size_t lo = 0, hi = nc - 1; /* cand[hi] = the total: always feasible */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (groups_needed(S, 0, n, cand[mid]) <= N)
            hi = mid;
        else
            lo = mid + 1;
    }
    *out = cand[lo];
    free(cand);
    return BB_OK;
}

static int64_t i64abs(int64_t x) { return x < 0 ? -x : x; }

bb_status bb_plan_make(const bb_model_config *c, const bb_plan_opts *o, int n_ranks, bb_plan *out) {
    memset(out, 0, sizeof *out);
    BB_CHECK(n_ranks >= 1, BB_ERR_ARG, "a sharding plan needs at least one rank (got %d)", n_ranks);
    BB_CHECK(c->n_layers >= 1 && c->dim > 0 && c->hidden_dim > 0 && c->vocab_size > 0, BB_ERR_ARG,
             "a sharding plan needs a model with layers (got %d layers, dim %d)", c->n_layers, c->dim);
    BB_CHECK(o->tokens >= 0 && o->seq_len >= 1 && o->micro_batch >= 1 && o->in_flight >= 1, BB_ERR_ARG,
             "sharding plan options: tokens %lld, seq_len %d, micro_batch %d, in_flight %d (need tokens >= 0 and the "
             "others >= 1)",
             (long long)o->tokens, o->seq_len, o->micro_batch, o->in_flight);
    BB_CHECK(o->gram_bytes == 0 || o->gram_bytes == 4 || o->gram_bytes == 8, BB_ERR_ARG,
             "sharding plan: gram_bytes %d must be 0, 4 (f32) or 8 (f64)", o->gram_bytes);
    int L = c->n_layers, n = L + 2;
    out->n_ranks = n_ranks;
    out->n_layers = L;
    out->opts = *o;
    item_costs(c, o->seq_len, out->item_cost);
    int64_t *S;
    BB_CALL(bb_malloc((void **)&S, (size_t)(n + 1) * sizeof *S, "sharding plan"));
    S[0] = 0;
    for (int i = 0; i < n; i++) S[i + 1] = S[i] + out->item_cost[i == 0 ? 0 : i == n - 1 ? 2 : 1];
    int64_t cap = 0;
    bb_status st = bottleneck(S, n, n_ranks, &cap);
    if (st == BB_OK) st = bb_calloc((void **)&out->ranks, (size_t)n_ranks, sizeof *out->ranks, "sharding plan");
    if (st != BB_OK) {
        free(S);
        return bb_trace(st, __FILE__, __LINE__, "bb_plan_make");
    }
    /* Each rank takes k items, kmin..kmax keeping the rest feasible under the
     * bottleneck, the k whose cost is closest to an even share of the rest. */
    int idx = 0;
    for (int r = 0; r < n_ranks; r++) {
        bb_plan_rank *pr = &out->ranks[r];
        int take = 0, left = n_ranks - r;
        if (idx < n) {
            if (left == 1) {
                take = n - idx;
            } else {
                int kmax = 0, kmin = -1;
                while (idx + kmax < n && S[idx + kmax + 1] - S[idx] <= cap) kmax++;
                for (int k = 1; k <= kmax && kmin < 0; k++)
                    if (groups_needed(S, idx + k, n, cap) <= left - 1) kmin = k;
                int64_t rem = S[n] - S[idx], best = -1;
                for (int k = kmin; k <= kmax; k++) {
                    int64_t d = i64abs((S[idx + k] - S[idx]) * left - rem);
                    if (best < 0 || d < best) best = d, take = k;
                }
            }
        }
        /* items idx..idx+take-1: item 0 the embedding, 1..L the blocks, L+1 the head */
        int a = idx, b = idx + take;
        pr->active = take > 0;
        pr->embed = take > 0 && a == 0;
        pr->head = take > 0 && b == n;
        int lb = a < 1 ? 1 : a, le = b < L + 1 ? b : L + 1;
        if (le > lb)
            pr->layer_begin = lb - 1, pr->layer_end = le - 1;
        else
            pr->layer_begin = pr->layer_end = pr->embed ? 0 : L;
        pr->cost = (double)(S[b] - S[a]) * (double)o->tokens;
        idx = b;
        if (pr->active) out->n_active = r + 1;
    }
    free(S);
    /* Parameters and memory (plan.h states the formula). */
    int64_t dim = c->dim, hid = c->hidden_dim, hd = c->head_dim, qd = (int64_t)c->n_heads * hd,
            kvd = (int64_t)c->n_kv_heads * hd, V = c->vocab_size, R = (int64_t)o->micro_batch * o->seq_len;
    int64_t p_block = dim * (qd + 2 * kvd) + qd * dim + 3 * dim * hid + 2 * dim + (c->attn_bias ? qd + 2 * kvd : 0);
    for (int r = 0; r < n_ranks; r++) {
        bb_plan_rank *pr = &out->ranks[r];
        out->total_cost += pr->cost;
        if (pr->cost > out->max_cost) out->max_cost = pr->cost;
        int nb = pr->layer_end - pr->layer_begin;
        int64_t p = (int64_t)nb * p_block;
        if (pr->embed || (pr->head && c->tied_embeddings)) p += V * dim;
        if (pr->head) p += dim + (c->tied_embeddings ? 0 : V * dim);
        pr->params = p;
        pr->weight_bytes = 4 * p;
        if (nb > 0)
            pr->work_bytes = 4 * R * (2 * dim + 2 * qd + 2 * kvd + 2 * hid + hd) +
                             4 * bb_attention_scratch(o->seq_len, 0, c->n_heads, c->n_kv_heads, c->head_dim);
        if (pr->head) pr->work_bytes += 4 * R * (V + dim);
        if (pr->active) pr->buffer_bytes = (int64_t)o->in_flight * 4 * (R * dim + 1);
        if (nb > 0 && o->gram_bytes) {
            bb_calib_opts co;
            bb_calib_opts_default(&co);
            co.layer_begin = pr->layer_begin;
            co.layer_end = pr->layer_end;
            co.precision = o->gram_bytes == 8 ? BB_CALIB_F64 : BB_CALIB_F32;
            size_t gb = 0;
            if (bb_calib_memory_bytes(c, &co, &gb) == BB_OK) pr->gram_bytes = (int64_t)gb;
        }
        pr->memory_bytes = pr->weight_bytes + pr->work_bytes + pr->buffer_bytes + pr->gram_bytes;
    }
    for (int r = 0; r < n_ranks; r++)
        out->ranks[r].share = out->total_cost > 0 ? out->ranks[r].cost / out->total_cost : 0;
    return BB_OK;
}

void bb_plan_free(bb_plan *p) {
    if (!p) return;
    free(p->ranks);
    memset(p, 0, sizeof *p);
}

int bb_plan_owner(const bb_plan *p, int layer) {
    if (layer < 0 || layer >= p->n_layers) return -1;
    for (int r = 0; r < p->n_active; r++)
        if (layer >= p->ranks[r].layer_begin && layer < p->ranks[r].layer_end) return r;
    return -1;
}

int bb_plan_next(const bb_plan *p, int rank) { return rank >= 0 && rank + 1 < p->n_active ? rank + 1 : -1; }
int bb_plan_prev(const bb_plan *p, int rank) { return rank >= 1 && rank < p->n_active ? rank - 1 : -1; }
int bb_plan_head_rank(const bb_plan *p) { return p->n_active - 1; }

static double mib(int64_t b) { return (double)b / (1024.0 * 1024.0); }

void bb_plan_print(const bb_plan *p, FILE *f) {
    fprintf(f,
            "sharding plan: %d layers on %d ranks (%d active), %lld calibration tokens, micro-batch %d x %d, %d in "
            "flight; bottleneck %.1f%% of the total cost (even: %.1f%%)\n",
            p->n_layers, p->n_ranks, p->n_active, (long long)p->opts.tokens, p->opts.micro_batch, p->opts.seq_len,
            p->opts.in_flight, p->total_cost > 0 ? 100.0 * p->max_cost / p->total_cost : 0,
            100.0 / (p->n_active > 0 ? p->n_active : 1));
    fprintf(f, "%5s %-11s %-10s %14s %8s %12s %12s %12s\n", "rank", "blocks", "also", "params", "cost%", "weights MiB",
            "buffers MiB", "memory MiB");
    for (int r = 0; r < p->n_ranks; r++) {
        const bb_plan_rank *pr = &p->ranks[r];
        char blk[32], also[32];
        if (pr->layer_end > pr->layer_begin + 1)
            snprintf(blk, sizeof blk, "%d-%d", pr->layer_begin, pr->layer_end - 1);
        else if (pr->layer_end > pr->layer_begin)
            snprintf(blk, sizeof blk, "%d", pr->layer_begin);
        else
            snprintf(blk, sizeof blk, "%s", pr->active ? "-" : "idle");
        snprintf(also, sizeof also, "%s%s%s", pr->embed ? "embed" : "", pr->embed && pr->head ? "+" : "",
                 pr->head ? "head" : "");
        fprintf(f, "%5d %-11s %-10s %14lld %7.2f%% %12.1f %12.1f %12.1f\n", r, blk, also, (long long)pr->params,
                100.0 * pr->share, mib(pr->weight_bytes), mib(pr->work_bytes + pr->buffer_bytes),
                mib(pr->memory_bytes));
    }
}
