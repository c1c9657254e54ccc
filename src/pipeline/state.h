/* state.h — what a compression run has done so far: the state a wave
 * checkpoint holds and `--resume` restores, and what DeltaHistory diffs.
 *
 * Linear weights are indexed i = layer * BB_LIN_COUNT + kind. The weight
 * arrays belong to the run's bb_weights; masks, factors, bits and metrics
 * belong to the state. Each rank holds its own layers' entries; rank 0 also
 * every other one, gathered after each wave for the files it writes. */
#ifndef BB_PIPELINE_STATE_H
#define BB_PIPELINE_STATE_H

#include <stdint.h>

#include "compress/lora.h"
#include "compress/mask.h"
#include "core/tensor.h"

/* One evaluation of the model as it stands after a wave (index 0: dense). */
typedef struct {
    int wave;
    double ppl, dppl;    /* dppl = ppl / dense ppl - 1 */
    double kld, top1;    /* against the dense model; NAN when eval.kld is off */
    double sparsity;     /* pruned fraction of all linear weights */
    double bits;         /* assigned bits per linear weight (scales and factors included); 0 = none yet */
    int64_t lora_values; /* values held by low-rank factors */
    int rolled_back;     /* this wave restored weights or removed bits (stop-loss) */
    double scaffold_tau; /* scaffold mode: the residual threshold tau_rel the wave ended with; 0 otherwise */
    double seconds[8];   /* decay, heal, reinforce, redistribute, eval, checkpoint, (spare), total */
} bb_wave_metrics;

enum { BB_T_DECAY, BB_T_HEAL, BB_T_REINFORCE, BB_T_REDISTRIBUTE, BB_T_EVAL, BB_T_CHECKPOINT, BB_T_SPARE, BB_T_TOTAL };

typedef struct {
    int wave;              /* waves completed; 0 = dense */
    int n_layers, n_lin;   /* n_lin = n_layers * BB_LIN_COUNT */
    float **w;             /* (n_lin) working weights (rows, cols) row-major; not owned */
    const bb_tensor **t;   /* (n_lin) name and shape of each; not owned */
    bb_mask **masks;       /* (n_lin) 1 = kept; owned */
    bb_lora **lora;        /* (n_lin) low-rank factors, NULL where none; owned */
    int *bits;             /* (n_lin) bit-width assigned for quantization, 0 = not assigned; owned */
    /* stop-loss */
    int losing;            /* consecutive waves whose dPPL exceeded stoploss.max_dppl */
    int rollback_left;     /* rollback waves still to run */
    int frozen;            /* 1 once the stop-loss stopped further pruning */
    int good_wave;         /* the last good wave: the rollback's target */
    int rb_wave;           /* the wave whose end started the rollback (0 = none) */
    uint64_t rng_counter;  /* draws consumed from the run's Philox stream (seed run.seed) */
    int n_metrics;         /* wave + 1 */
    bb_wave_metrics *metrics; /* (n_metrics) [0] = dense; owned */
} bb_state;

/* A dense start (wave 0): every mask all-kept, no factors, no bits, one
 * metrics row of zeros. w and t (n_layers * BB_LIN_COUNT entries) are kept as
 * pointers, not copied. Errors: BB_ERR_OOM. */
bb_status bb_state_init_dense(bb_state *s, int n_layers, float **w, const bb_tensor **t);
/* dst = a deep copy of src's owned parts (masks, factors, bits, metrics); dst
 * shares src's w and t pointers. Errors: BB_ERR_OOM. */
bb_status bb_state_copy_owned(const bb_state *src, bb_state *dst);
/* Free the owned parts (masks, factors, bits, metrics); w and t stay. NULL-safe. */
void bb_state_release(bb_state *s);

#endif
