/* prune_cuda.h — Wanda on the GPU: one block per output row ranks |W_ij| ||X_j|| by a radix select in
 * shared memory and prunes the floor(cols * s) lowest, with compress/prune.c's rules: a weight the
 * incoming mask already prunes ranks first and counts toward the quota, ties go by column (lower pruned
 * first), so the mask and weights equal bb_prune_wanda_ref's bit for bit. */
#ifndef BB_CUDA_PRUNE_CUDA_H
#define BB_CUDA_PRUNE_CUDA_H

#include <stdint.h>

#include "compress/prune.h"
#include "core/status.h"
#include "cuda/linalg_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device pointers: w (rows, cols) pruned in place; xnorm (cols) >= 0 and finite; mask (rows,
 * ceil(cols / 64)) uint64 words as compress/mask.h, in: current mask, out: the new one. cols <= 50000
 * (the row's keys live in shared memory). */
bb_status bb_cuda_wanda(int64_t rows, int64_t cols, double sparsity, float *w, const float *xnorm, uint64_t *mask);

/* w (rows, cols) device: zero every weight the mask (rows, ceil(cols / 64) words, device) prunes — the
 * device twin of bb_mask_apply (compress/mask.h), tested against it in unit.cuda_wanda. */
bb_status bb_cuda_mask_apply(int64_t rows, int64_t cols, float *w, const uint64_t *mask);

/* The bb_prune_wanda interface on host memory (unstructured patterns only; BB_ERR_UNSUPPORTED for N:M). */
bb_status bb_cuda_prune_wanda(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);

/* SparseGPT (unstructured, per-block selection as compress/prune.c: in each 128-column lazy batch the
 * floor(rows * 128 * s) lowest w^2 / U_jj^2 of the whole block, incoming-mask pruned first, ties by
 * position row-major in the block), the OBS sweep of each batch in one kernel (a warp per row, as
 * GPTQ's), the selection as a radix select over the block in four histogram passes, the trailing
 * update as one gemm. Device pointers: w (rows, cols) in/out, u (cols, cols) the upper inverse factor
 * (bb_cuda_inverse_factor), mask (rows, cols / 64) words in/out. cols a multiple of 128. With the same
 * u and the same weights entering a batch, the batch's mask and weights equal bb_prune_sparsegpt's
 * (unit.cuda_sparsegpt). */
bb_status bb_cuda_sparsegpt_factored(bb_cuda_ctx *c, int64_t rows, int64_t cols, double sparsity,
                                     bb_cuda_math trail, float *w, const float *u, uint64_t *mask);
/* Whole SparseGPT on device data: dead inputs (H_jj = 0) zeroed, the inverse factor of h (damping
 * raised x10 from damp up to damp_max on a failed Cholesky), the batches. *damp_used may be NULL. */
bb_status bb_cuda_sparsegpt(bb_cuda_ctx *c, const char *name, int64_t rows, int64_t cols, double sparsity,
                            double damp, double damp_max, bb_cuda_math trail, float *w, const float *h,
                            uint64_t *mask, double *damp_used);
/* The bb_prune_sparsegpt interface on host memory for unstructured sparsity, block_size 128, cols a
 * multiple of 128, no per_row and no fixed_mask (BB_ERR_UNSUPPORTED otherwise: use the cpu path). The
 * damping goes up x10 from prune.damp for max_retries tries (from 1e-4 when prune.damp is 0). */
bb_status bb_cuda_prune_sparsegpt(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);

#ifdef __cplusplus
}
#endif
#endif
