/* stress.h — stressed-block detection and precision boosts under the global bit budget (seed §5.3).
 *
 * A block b (a bb_budget_block: one tensor by default) is stressed when its loss on its validation
 * subset rose by more than δ (relative: rise_b = L_b,new / L_b,old − 1 > stress.delta) or its
 * gradient norm exceeds γ times the mean over the blocks (stress.gamma). Stressed blocks get
 * Δp = stress.boost_bits more bits, up to stress.max_bits and the largest width among the block's
 * candidates; then the lowest-usage unstressed blocks are demoted one width at a time, round after
 * round in order of increasing usage (ties by key), until Σ_b cost_b <= B.
 *
 * Everything it reads is the small per-block tables (bb_budget_block, two doubles of signals and
 * a byte per block), so under MPI the ranks all-gather those and every rank computes the same
 * result: decisions follow the blocks' keys, not their order in the arrays, and the sums that
 * decide are integers (costs in bits). Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_STRESS_H
#define BB_COMPRESS_STRESS_H

#include <stdint.h>

#include "compress/budget.h"
#include "core/status.h"
#include "io/config.h"

typedef struct {
    double delta;   /* relative loss rise that stresses a block (0.01) */
    double gamma;   /* gradient norm above gamma · mean stresses a block (2) */
    int boost_bits; /* Δp (4) */
    int max_bits;   /* p_max (16) */
} bb_stress_opts;

void bb_stress_opts_default(bb_stress_opts *o); /* 0.01, 2, 4, 16 */
void bb_stress_opts_from_config(const bb_config *cfg, bb_stress_opts *o);

/* stressed[b] = 1 when rise[b] > delta or gnorm[b] > gamma · mean(gnorm), for n blocks. rise or
 * gnorm may be NULL (signal not used). A non-finite signal counts as stressed. Returns the count. */
int64_t bb_stress_detect(const bb_stress_opts *o, int64_t n, const double *rise, const double *gnorm,
                         uint8_t *stressed);

typedef struct {
    int64_t boosted;   /* stressed blocks that got more bits */
    int64_t demoted;   /* one-width demotions of unstressed blocks */
    int64_t total;     /* bits after, <= budget */
    int64_t budget;
} bb_stress_summary;

/* Boost and rebalance: choice[i] (in: the current candidate index of blocks[i], out: the new one)
 * for n blocks, under budget_bits (B of bb_budget_summary). Fortress blocks are never changed.
 * Errors: BB_ERR_CONFIG when the boosted blocks do not fit even with every unstressed block at its
 * cheapest width (naming both figures and what to change; choice is left as it came), BB_ERR_ARG
 * (duplicate keys, a choice out of range). */
bb_status bb_stress_rebalance(const bb_stress_opts *o, const bb_budget_block *blocks, int64_t n,
                              const uint8_t *stressed, int64_t budget_bits, int *choice, bb_stress_summary *sum);

#endif
