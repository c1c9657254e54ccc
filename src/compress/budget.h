/* budget.h — mixed precision under a global bit budget: per-block candidate tables and the bit assignment.
 *
 * A block (by default one tensor, which is what GGUF can store with one type) may get any width of
 * budget.bits_choices, each mapped to a GGUF type (bb_budget_type_for_bits):
 *     2 -> Q2_K, 3 -> Q3_K, 4 -> Q4_K (Q4_0 with legacy), 5 -> Q5_K (Q5_0), 6 -> Q6_K, 8 -> Q8_0,
 *     16 -> F16, 32 -> F32,
 * then the row-length fallback of io/qformat.h (a Q4_K request on 96-wide rows stores Q5_0). The
 * cost of a candidate is its exact size in bits, rows * row_bytes * 8, scales included, so the
 * budget counts what the GGUF file will hold: Q4_0 and Q4_K cost 4.5 bits per weight, Q8_0 8.5.
 *
 * Budget. B_init = sum_b size_b * p_init (p_init = budget.init_bits) is the seed's initial budget;
 * the constraint every policy meets is  sum_b bits_b <= B = floor(budget.target_bits * sum_b size_b),
 * summed over all blocks, fortress blocks included. An average of 4.5 is the size of an all-Q4_0 file.
 *
 * Distribution. The only global step is the assignment: (a) bb_budget_block_init/_measure build a
 * block's small table locally (quantizing the block at each width to measure its distortion);
 * (b) bb_budget_assign is a pure function of the concatenated tables of all blocks. Every decision
 * in it is made in the order of the blocks' unique keys and every sum that decides is an integer,
 * so any rank holding the gathered tables, in any order, computes the same assignment.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_BUDGET_H
#define BB_COMPRESS_BUDGET_H

#include <stdint.h>

#include "compress/quant.h"
#include "core/status.h"
#include "core/tensor.h"
#include "io/config.h"

#define BB_BUDGET_MAX_CHOICES 16
#define BB_BUDGET_MAX_FORTRESS 16

typedef struct {
    char policy[BB_CONFIG_ENUM_MAX]; /* "optimal" (alias "lagrange"), "seed", "uniform" */
    double target_bits;              /* average bits per weight the assignment may spend */
    int init_bits;                   /* p_init (8): B_init, and the seed policy's high width */
    int base_bits;                   /* p_base (4): the seed policy's low width */
    int n_choices;                   /* widths, strictly increasing */
    int choices[BB_BUDGET_MAX_CHOICES];
    int legacy;     /* 4 and 5 bits as Q4_0 and Q5_0 instead of Q4_K and Q5_K */
    double alpha;   /* seed policy: s_b < alpha -> base_bits */
    int n_fortress; /* name patterns (fnmatch) kept at 16 bits */
    char fortress[BB_BUDGET_MAX_FORTRESS][BB_CONFIG_NAME_MAX];
    double fortress_top; /* fraction of the blocks, the most sensitive, also kept at 16 bits (bb_budget_fortress_top) */
} bb_budget_opts;

/* optimal, target 4, init 8, base 4, choices {2,3,4,5,6,8,16}, K types, alpha 0.3, no fortress. */
void bb_budget_opts_default(bb_budget_opts *o);
/* From budget.* and waves.* (alpha of wave k of waves.count, 1-based); budget.fortress is a comma-separated
 * list of name patterns. Errors: BB_ERR_CONFIG for too many choices, a width without a GGUF type, k out of
 * range, too many or too long fortress patterns. */
bb_status bb_budget_opts_from_config(const bb_config *cfg, int wave, bb_budget_opts *o);
/* Add a fortress pattern ("output.weight", "blk.0.*"). Errors: BB_ERR_CONFIG when full or too long. */
bb_status bb_budget_add_fortress(bb_budget_opts *o, const char *pattern);
int bb_budget_is_fortress(const bb_budget_opts *o, const char *name);

/* alpha_k = start + (end - start)(k - 1)/(R - 1) for wave k of R (start when R = 1). */
double bb_budget_alpha(int k, int R, double start, double end);
/* The GGUF type of a nominal width, before the row-length fallback; -1 if none. */
int bb_budget_type_for_bits(int bits, int legacy);

typedef struct {
    int bits;          /* nominal width, one of the choices */
    int type;          /* bb_ggml_type stored at this width for this block's rows (after the fallback) */
    int64_t cost;      /* bits of the block in that type: rows * row_bytes * 8 */
    double distortion; /* D_b at this width: tr(E H E^T) summed over the block (0 until measured) */
} bb_budget_candidate;

/* One block's table: plain data (no pointers), so tables can be gathered as bytes. */
typedef struct {
    uint64_t key;                  /* global order key, unique across all blocks (e.g. tensor index) */
    char name[BB_TENSOR_NAME_MAX]; /* for messages and fortress patterns */
    int64_t rows, cols, size;      /* size = rows * cols weights */
    double usage;                  /* s_b in [0, 1], the seed policy's score */
    int fortress;                  /* 1: only the 16-bit candidate */
    int n;                         /* candidates, by increasing cost; widths that store the same type
                                      as a smaller width (fallbacks) are left out */
    bb_budget_candidate c[BB_BUDGET_MAX_CHOICES];
} bb_budget_block;

/* Candidates of a (rows, cols) block from the choices; distortions 0.
 * Errors: BB_ERR_ARG for a bad shape or a name too long, BB_ERR_CONFIG for a width without a type. */
bb_status bb_budget_block_init(const bb_budget_opts *o, const char *name, uint64_t key, int64_t rows, int64_t cols,
                               double usage, bb_budget_block *b);
/* Measure D_b at every candidate: quantize in->w with quantizer qz (options q, type replaced by the
 * candidate's) and take tr(E H E^T), or sum of E^2 when in->h is NULL. Errors: the quantizer's. */
bb_status bb_budget_block_measure(bb_budget_block *b, const bb_quantizer *qz, const bb_quant_opts *q,
                                  const bb_quant_input *in);

/* Fortress by sensitivity: of the blocks not already fortress, the k = floor(frac * n) with the largest
 * distortion at their narrowest width (c[0].distortion, measured by bb_budget_block_measure; ties to
 * the smaller key) become fortress blocks: their table is reduced to the 16-bit candidate (F16; its
 * measured distortion kept when 16 was among the choices, else 0). A pure function of the tables in
 * key order, like bb_budget_assign. *made (or NULL) gets k. Errors: BB_ERR_ARG for frac outside
 * [0, 1], NULL or duplicate keys, BB_ERR_OOM. */
bb_status bb_budget_fortress_top(double frac, bb_budget_block *blocks, int64_t n, int64_t *made);

typedef struct {
    int64_t weights;     /* sum of sizes */
    int64_t budget_init; /* B_init = weights * init_bits */
    int64_t budget;      /* B = floor(target_bits * weights) */
    int64_t total;       /* bits assigned, <= budget */
    double avg_bits;     /* total / weights */
    double distortion;   /* sum of the chosen D_b (in key order) */
    double lambda;       /* lagrange: the multiplier found; else 0 */
} bb_budget_summary;

/* The assignment: choice[i] = index into blocks[i].c, for the n blocks in any order. Policies:
 *   optimal   (alias lagrange) minimise sum D_b subject to sum bits <= B: bisection for the smallest lambda with
 *             sum_b bits_b(lambda) <= B where bits_b(lambda) = argmin_c D_c + lambda cost_c (ties to
 *             the cheaper candidate), then a greedy pass spends what is left on the upgrades with
 *             the best distortion drop per bit (ties to the smaller key).
 *   seed      s_b < alpha -> base_bits else init_bits; then, while over budget, demote blocks one
 *             width at a time in order of increasing usage (ties by key), round after round.
 *   uniform   the largest width that every non-fortress block can take within the budget.
 * Fortress blocks always take 16 bits and count in the budget.
 * Errors: BB_ERR_CONFIG when B is below the cheapest assignment (naming both averages) or for an
 * unknown policy; BB_ERR_ARG for duplicate keys or empty tables. */
bb_status bb_budget_assign(const bb_budget_opts *o, const bb_budget_block *blocks, int64_t n, int *choice,
                           bb_budget_summary *sum);

#endif
