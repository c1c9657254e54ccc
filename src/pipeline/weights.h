/* weights.h — the run's working copy of the linear weights, and a model that
 * sees it.
 *
 * Compression stages change weights; model files stay read-only. bb_weights
 * holds an f32 copy (rows, cols) of every linear weight of layers [l0, l1) and
 * a derived bb_model: the base model's description with those linear tensors
 * pointing at the copies, so that bb_forward_create on it evaluates the
 * compressed model. Everything else (embeddings, norms, classifier) stays a
 * view of the base model, which must outlive the bb_weights. Not collective. */
#ifndef BB_PIPELINE_WEIGHTS_H
#define BB_PIPELINE_WEIGHTS_H

#include "compress/mask.h"
#include "io/model.h"

typedef struct bb_weights bb_weights;

/* Copy the linear weights of layers [layer_begin, layer_end) (layer_end 0 = all)
 * as f32. Errors: BB_ERR_ARG (bad range), BB_ERR_OOM (says how many bytes),
 * read errors of the tensors, BB_ERR_NUMERIC for NaN/Inf in a weight (names
 * the tensor, row and column: the model file is damaged). */
bb_status bb_weights_create(const bb_model *base, int layer_begin, int layer_end, bb_weights **out);
void bb_weights_destroy(bb_weights **w); /* NULL-safe; nulls *w */

/* The working copy of one linear weight, (rows, cols) row-major, or NULL if
 * the layer is outside the range. Writes change what the derived model computes. */
float *bb_weights_linear(bb_weights *w, int layer, bb_linear_kind kind);
/* The tensor handle (name, shape) of that weight in the derived model. */
const bb_tensor *bb_weights_tensor(const bb_weights *w, int layer, bb_linear_kind kind);
/* The derived model: valid until bb_weights_destroy. */
const bb_model *bb_weights_model(const bb_weights *w);
void bb_weights_range(const bb_weights *w, int *layer_begin, int *layer_end);
/* The pruning masks of the working weights (borrowed, indexed layer *
 * BB_LIN_COUNT + kind, NULL = dense): quantizers keep pruned weights at 0. */
void bb_weights_set_masks(bb_weights *w, bb_mask *const *masks);
/* The mask of one weight, or NULL (dense, or no masks set). */
const bb_mask *bb_weights_mask(const bb_weights *w, int layer, bb_linear_kind kind);
/* Bytes held by the working copies. */
size_t bb_weights_bytes(const bb_weights *w);

#endif
