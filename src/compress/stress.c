/* stress.c — stress detection, boosts and the demotion rebalance. */
#include "compress/stress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bb_stress_opts_default(bb_stress_opts *o) {
    o->delta = 0.01;
    o->gamma = 2;
    o->boost_bits = 4;
    o->max_bits = 16;
}

void bb_stress_opts_from_config(const bb_config *cfg, bb_stress_opts *o) {
    o->delta = cfg->stress.delta;
    o->gamma = cfg->stress.gamma;
    o->boost_bits = (int)cfg->stress.boost_bits;
    o->max_bits = (int)cfg->stress.max_bits;
}

int64_t bb_stress_detect(const bb_stress_opts *o, int64_t n, const double *rise, const double *gnorm,
                         uint8_t *stressed) {
    double mean = 0;
    int64_t cnt = 0, hit = 0;
    if (gnorm)
        for (int64_t b = 0; b < n; b++)
            if (isfinite(gnorm[b])) {
                mean += gnorm[b];
                cnt++;
            }
    mean = cnt ? mean / (double)cnt : 0;
    for (int64_t b = 0; b < n; b++) {
        int s = 0;
        if (rise) s |= !isfinite(rise[b]) || rise[b] > o->delta;
        if (gnorm) s |= !isfinite(gnorm[b]) || gnorm[b] > o->gamma * mean;
        stressed[b] = (uint8_t)s;
        hit += s;
    }
    return hit;
}

typedef struct {
    double usage;
    uint64_t key;
    int64_t idx;
} entry;

static int by_usage_key(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    if (a->usage != b->usage) return a->usage < b->usage ? -1 : 1;
    return (a->key > b->key) - (a->key < b->key);
}

static int by_key(const void *pa, const void *pb) {
    const entry *a = pa, *b = pb;
    return (a->key > b->key) - (a->key < b->key);
}

bb_status bb_stress_rebalance(const bb_stress_opts *o, const bb_budget_block *blocks, int64_t n,
                              const uint8_t *stressed, int64_t budget_bits, int *choice, bb_stress_summary *sum) {
    BB_CHECK(n >= 1 && blocks && stressed && choice, BB_ERR_ARG, "stress rebalance: empty block table");
    BB_CHECK(o->boost_bits >= 0, BB_ERR_ARG, "stress.boost_bits %d must be >= 0", o->boost_bits);
    entry *order = NULL;
    int *c = NULL;
    BB_CALL(bb_malloc((void **)&order, sizeof(entry) * (size_t)n, "stress rebalance: order"));
    bb_status st = bb_malloc((void **)&c, sizeof(int) * (size_t)n, "stress rebalance: choices");
    if (st != BB_OK) {
        free(order);
        return st;
    }
    for (int64_t i = 0; i < n; i++) {
        order[i] = (entry){blocks[i].usage, blocks[i].key, i};
        c[i] = choice[i];
    }
    qsort(order, (size_t)n, sizeof(entry), by_key);
    for (int64_t i = 1; i < n; i++)
        BB_CHECK_GOTO(st, out, order[i].key != order[i - 1].key, BB_ERR_ARG,
                      "stress rebalance: blocks %s and %s share key %llu", blocks[order[i].idx].name,
                      blocks[order[i - 1].idx].name, (unsigned long long)order[i].key);
    bb_stress_summary s = {0, 0, 0, budget_bits};
    int64_t total = 0, floor_total = 0, weights = 0;
    for (int64_t i = 0; i < n; i++) {
        const bb_budget_block *b = &blocks[i];
        BB_CHECK_GOTO(st, out, c[i] >= 0 && c[i] < b->n, BB_ERR_ARG, "stress rebalance: %s: choice %d outside 0..%d",
                      b->name, c[i], b->n - 1);
        if (stressed[i] && !b->fortress) {
            int target = b->c[c[i]].bits + o->boost_bits;
            if (target > o->max_bits) target = o->max_bits;
            int best = c[i];
            for (int k = 0; k < b->n; k++)
                if (b->c[k].bits <= target && b->c[k].bits > b->c[best].bits) best = k;
            if (best != c[i]) s.boosted++;
            c[i] = best;
        }
        total += b->c[c[i]].cost;
        weights += b->size;
        floor_total += (stressed[i] || b->fortress) ? b->c[c[i]].cost : b->c[0].cost;
    }
    BB_CHECK_GOTO(st, out, floor_total <= budget_bits, BB_ERR_CONFIG,
                  "stress boosts need %.4f bits per weight with every unstressed block at its smallest width, more "
                  "than the budget of %lld bits holds; lower stress.boost_bits or stress.max_bits, or raise "
                  "budget.target_bits",
                  (double)floor_total / (double)(weights ? weights : 1), (long long)budget_bits);
    qsort(order, (size_t)n, sizeof(entry), by_usage_key);
    while (total > budget_bits) {
        int moved = 0;
        for (int64_t t = 0; t < n && total > budget_bits; t++) {
            int64_t i = order[t].idx;
            if (stressed[i] || blocks[i].fortress || c[i] == 0) continue;
            total -= blocks[i].c[c[i]].cost - blocks[i].c[c[i] - 1].cost;
            c[i]--;
            s.demoted++;
            moved = 1;
        }
        if (!moved) break; /* unreachable: floor_total <= budget was checked */
    }
    s.total = total;
    memcpy(choice, c, sizeof(int) * (size_t)n);
    if (sum) *sum = s;
out:
    free(order);
    free(c);
    return st;
}
