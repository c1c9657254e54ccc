/* heal_block.h — block-level healing: Adam on the low-rank factors (and optionally the kept weights) of one
 * transformer block so that the compressed block reproduces the dense block's outputs on calibration activations.
 *
 * Loss of one step: L = Σ ‖block_compressed(X) − Y‖² / (N · dim) over the N = n_seq·seq_len calibration rows,
 * the gradient accumulated over micro-batches of micro_batch sequences (model/block_grad.h does the forward and
 * backward), then one Adam update. X are the block's inputs, Y its targets.
 *
 * Which X and Y (bb_heal_block_model chooses; bb_heal_block takes any): X is the residual stream entering
 * block l in the COMPRESSED model (blocks before l compressed and already healed), so the factors are trained on
 * the inputs they will see at inference; Y is the dense block applied to those same inputs
 * (BB_HEAL_TARGET_BLOCK: learn what block l should do with this input, the compressed upstream is not block l's
 * to repair) or the dense model's own stream after block l (BB_HEAL_TARGET_MODEL: also pull the stream back
 * towards the dense trajectory, compensating upstream errors).
 *
 * Factors follow compress/lora.h (W_eff = W + A·B). Missing ones (NULL in the layer) are created with
 * opts.rank, A = 0 and B ~ N(0, 1/in) from the Philox stream "heal_block.<linear>" of opts.seed, so the block
 * starts out unchanged and the first gradient reaches A; factors passed in are trained from where they are
 * (e.g. from the closed-form layer-level fit), and ones that are zero in both A and B get the same random B.
 *
 * Memory beyond the caller's X and Y (bytes, r = rank, P_k = r·(in_k + out_k) summed over the healed linears):
 *   bb_block_memory_bytes(c, micro_batch, seq_len, r) + 8·micro_batch·seq_len·dim (outputs and their
 *   gradient) + 12·Σ P_k (gradient, Adam m, v) + with train_weights 12·Σ out_k·in_k (16 with a projection).
 * Llama-7B block, 2×512-token micro-batches, rank 8, factors only: 0.56 GB + 34 MB + 7.5 MB.
 *
 * Deterministic: the same inputs give bit-identical factors at a fixed OpenBLAS thread count (micro-batches
 * are always summed in the same order). Local: nothing here calls MPI; not thread-safe. */
#ifndef BB_COMPRESS_HEAL_BLOCK_H
#define BB_COMPRESS_HEAL_BLOCK_H

#include <stdint.h>

#include "compress/lora.h"
#include "compress/mask.h"
#include "io/model.h"
#include "io/tokens.h"
#include "model/block_grad.h"

/* Map trained weights w (rows, cols) of linear `kind` of block `layer` (bb_heal_block_layer.layer) onto what
 * the compressed format can store (e.g. round to the quantization grid with the block scales fixed), in place. */
typedef bb_status (*bb_heal_project_fn)(void *ud, int layer, bb_linear_kind kind, int64_t rows, int64_t cols, float *w);

typedef struct {
    int steps;                /* Adam steps E (each a full pass over the calibration rows) */
    double lr;                /* Adam step size */
    double beta1, beta2, eps; /* Adam moments and denominator floor */
    int micro_batch;          /* sequences per forward/backward */
    int rank;                 /* rank of factors created where missing; 0 (with train_weights): none */
    int train_weights;        /* also train the kept entries of W (the masks stay fixed) */
    uint64_t seed;            /* initial B of created factors */
    /* With train_weights: a straight-through estimator. W trains as a latent f32 copy (started from the given
     * weights); after every update the block's weights become project(latent), and the gradient taken at
     * them updates the latent copy. The weights end as the last projection. NULL: W trains directly. */
    bb_heal_project_fn project;
    void *project_ud;
} bb_heal_block_opts;

/* 200 steps, lr 1e-3, betas 0.9 / 0.999, eps 1e-8, micro-batch 8, rank 8, factors only, seed 0. */
void bb_heal_block_opts_default(bb_heal_block_opts *o);

/* One block's parameters for healing, indexed by bb_linear_kind. */
typedef struct {
    const float *attn_norm, *ffn_norm; /* (dim) */
    const float *bias[3];              /* q, k, v biases or NULL */
    float *w[BB_LIN_COUNT];            /* working (compressed) weights (out, in); written only with train_weights */
    const bb_mask *mask[BB_LIN_COUNT]; /* kept entries for train_weights; NULL = every entry may move */
    bb_lora *lora[BB_LIN_COUNT];       /* in/out: NULL ones are created (the caller owns them afterwards) */
    unsigned linears;                  /* bit k set: heal linear k; 0 = all seven */
    int layer;                         /* the block's index, handed to opts.project only */
} bb_heal_block_layer;

/* Run opts.steps Adam steps on L for inputs x and targets y, both (n_seq, seq_len, dim). loss (steps + 1),
 * if non-NULL, receives the loss before each step and, last, after the final one. Errors: BB_ERR_ARG (bad
 * options naming the value, factors whose shape does not fit the linear, a mask of another shape),
 * BB_ERR_OOM, BB_ERR_NUMERIC when the loss stops being finite (lower the learning rate). */
bb_status bb_heal_block(const bb_model_config *c, bb_heal_block_layer *L, const float *x, const float *y, int n_seq,
                        int seq_len, const bb_heal_block_opts *o, double *loss);

/* y = block(x) for n_seq sequences of seq_len tokens, micro_batch sequences at a time (forward only), with
 * the factors of L attached where present. x, y (n_seq, seq_len, dim), distinct. Errors: BB_ERR_ARG, BB_ERR_OOM. */
bb_status bb_heal_block_forward(const bb_model_config *c, const bb_heal_block_layer *L, const float *x, int n_seq,
                                int seq_len, int micro_batch, float *y);

/* The mean squared difference Σ (a − b)² / n of two arrays (n), in double. */
double bb_heal_block_mse(const float *a, const float *b, int64_t n);

typedef enum { BB_HEAL_TARGET_BLOCK = 0, BB_HEAL_TARGET_MODEL, BB_HEAL_TARGET_COUNT } bb_heal_target;

/* Heal blocks [layer_begin, layer_end) of a compressed model in order: the compressed model is `dense` with
 * the linear weights work[l·7 + k] ((out, in) row-major, changed only with train_weights), masks[l·7 + k]
 * (NULL array or entries: no mask) and factors lora[l·7 + k] (in/out, NULL entries created). The windows
 * (n_seq, seq_len) are embedded and run through blocks 0..layer_begin-1 of the compressed model (with the
 * factors they have) to give X; every healed block then advances X with its healed factors. loss
 * ((layer_end − layer_begin)·(steps + 1)) receives the curves. Memory: 3 (target BLOCK) or 4 (MODEL)
 * streams of 4·n_seq·seq_len·dim bytes, one block's f32 dense weights, and bb_heal_block's. Errors: those of
 * bb_heal_block, BB_ERR_ARG (layer range, windows that are not (n_seq, seq_len) or beyond the context),
 * read errors of the dense tensors. */
bb_status bb_heal_block_model(const bb_model *dense, float *const *work, const bb_mask *const *masks, bb_lora **lora,
                              const bb_tokens *windows, int layer_begin, int layer_end, bb_heal_target target,
                              const bb_heal_block_opts *o, double *loss);

/* x (n_seq, seq_len, dim) = the embeddings of windows' tokens: the stream entering block 0. Errors:
 * BB_ERR_ARG (a token outside the vocabulary), read errors. */
bb_status bb_heal_block_embed(const bb_model *dense, const bb_tokens *windows, float *x);

/* The sharded form of bb_heal_block_model with target BLOCK: x (n_seq, seq_len, dim) is the compressed
 * model's stream entering block layer_begin (from the rank before, or bb_heal_block_embed); blocks
 * [layer_begin, layer_end) are healed in order — block l only in the linears set in linears[l] (bit k:
 * linear k; 0: not healed, only advanced; linears NULL: all) — and x is advanced through each healed block,
 * leaving the stream entering layer_end for the next rank. Curves as bb_heal_block_model. */
bb_status bb_heal_block_range(const bb_model *dense, float *const *work, const bb_mask *const *masks, bb_lora **lora,
                              const unsigned *linears, float *x, int n_seq, int seq_len, int layer_begin,
                              int layer_end, const bb_heal_block_opts *o, double *loss);

#endif
