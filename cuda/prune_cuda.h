/* prune_cuda.h — Wanda on the GPU: one block per output row ranks |W_ij| ||X_j|| by a radix select in
 * shared memory and prunes the floor(cols * s) lowest, with compress/prune.c's rules: a weight the
 * incoming mask already prunes ranks first and counts toward the quota, ties go by column (lower pruned
 * first), so the mask and weights equal bb_prune_wanda_ref's bit for bit. */
#ifndef BB_CUDA_PRUNE_CUDA_H
#define BB_CUDA_PRUNE_CUDA_H

#include <stdint.h>

#include "compress/prune.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device pointers: w (rows, cols) pruned in place; xnorm (cols) >= 0 and finite; mask (rows,
 * ceil(cols / 64)) uint64 words as compress/mask.h, in: current mask, out: the new one. cols <= 50000
 * (the row's keys live in shared memory). */
bb_status bb_cuda_wanda(int64_t rows, int64_t cols, double sparsity, float *w, const float *xnorm, uint64_t *mask);

/* The bb_prune_wanda interface on host memory (unstructured patterns only; BB_ERR_UNSUPPORTED for N:M). */
bb_status bb_cuda_prune_wanda(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);

#ifdef __cplusplus
}
#endif
#endif
