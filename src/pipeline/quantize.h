/* quantize.h — stage 6 (Quantize): every linear weight of the working copies into a GGUF block type, the
 * type per tensor chosen by quant.type or the bit budget, and the result exported as GGUF (pipeline/export.h).
 *
 * bb_quantize_model is the local part, shared by the pipeline stage, `birdbone export` and the tests: it
 * reads quant.* and budget.* from a configuration, quantizes (RTN or GPTQ, H from the calibration
 * statistics), replaces each working weight by what its blocks decode to (so every later evaluation measures
 * the quantized model) and keeps the blocks for the GGUF writer. Zeros of pruned weights are quantized as
 * they come (every block type stores an exact 0 at a zero scale, and near zero elsewhere). Not collective:
 * nothing here calls MPI; the stage runs it on rank 0 (which holds every layer and all statistics until the
 * sharding plan lands) while the other ranks wait at bb_dist_agree. */
#ifndef BB_PIPELINE_QUANTIZE_H
#define BB_PIPELINE_QUANTIZE_H

#include <stdint.h>

#include "compress/budget.h"
#include "compress/quant.h"
#include "io/config.h"
#include "model/calib.h"
#include "pipeline/weights.h"

typedef struct {
    int n_layers;
    bb_quant_result **q;   /* [n_layers * BB_LIN_COUNT], layer-major: q[l * BB_LIN_COUNT + kind] */
    int dominant;          /* the stored type holding the most weights (general.file_type) */
    int64_t weights;       /* linear weights quantized */
    int64_t bits;          /* their stored size in bits, scales included */
    bb_budget_summary sum; /* the budget's summary (quant.type auto), else zeros */
    int64_t scale_tensors;  /* heal.train_scales: tensors whose scales were trained */
    double scale_loss[2];   /* their summed layer loss tr(E H E^T) before and after the scale training */
} bb_quantized;

/* Quantize every linear weight of w (all layers of the model) as cfg says:
 *   quant.method  rtn | gptq (gptq needs stats; rtn uses diag H as importance when stats are given and
 *                 quant.importance is on),
 *   quant.type    one GGUF type for every tensor, or auto: budget.policy (uniform | seed | lagrange) picks
 *                 a width per tensor from budget.bits_choices within budget.target_bits bits per weight;
 *                 lagrange measures every candidate's distortion tr(E H E^T) first,
 *   quant.fallback, damp, block_size, act_order as in compress/quant.h.
 * A row length that fits no block of the chosen type is stored in the fallback (one warning per tensor).
 * heal.train_scales: the fp16 scales of every q8_0 / q4_0 / q5_0 tensor are then trained against
 * tr(E H E^T) with the codes fixed (compress/scales.h; needs stats); other types are left as they are.
 * The working weights then hold the dequantized values. Errors: BB_ERR_CONFIG (method none or unknown, gptq
 * without statistics, a budget below the cheapest assignment), the quantizers' errors. */
bb_status bb_quantize_model(const bb_config *cfg, bb_weights *w, bb_calib *stats, bb_quantized **out);
void bb_quantized_destroy(bb_quantized **q); /* NULL-safe; nulls *q */

/* The type ggml's enum llama_ftype calls a file that is mostly `type` (general.file_type); -1 if none. */
int bb_quantize_file_type(int type);

#endif
