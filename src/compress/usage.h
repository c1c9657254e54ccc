/* usage.h — stage 1 usage profiling: Wanda scores, per-block usage u_b and s_b, activation frequency per block,
 * the reconstruction-loss gradient proxy and the layer reconstruction error.
 *
 * Inputs are plain arrays, so nothing here depends on the calibration collector:
 *   W      (rows, cols) row-major f32: a linear layer's weight, rows = out, cols = in;
 *   H      (cols, cols) row-major f32, full symmetric: the Gram X^T X of its input X (tokens, cols);
 *   xnorm  (cols): ||X_j|| = sqrt(H_jj);  freq (cols): fraction of tokens with |x_j| > usage.eps.
 *
 * Blocks (usage.block): the whole tensor (one block), one row per block, or
 * tiles of tile_rows x tile_cols (edge tiles are smaller). Blocks are numbered
 * row-major over the tile grid. u_b is the MEAN Wanda score of the block's
 * weights (the seed's "block mean u_b", so tensors and tiles of different
 * sizes compare), and s_b = u_b / max u_b over the set of blocks the pipeline
 * names. Because that set spans ranks, the maximum is split out: each rank
 * takes bb_usage_max of its blocks, the pipeline reduces with MAX, and every
 * rank calls bb_usage_normalize with the global value. Nothing here calls MPI.
 *
 * Every function is local and reports bad shapes or non-finite input with the
 * tensor name. Sizes must fit a 32-bit int where a gemm is involved. */
#ifndef BB_COMPRESS_USAGE_H
#define BB_COMPRESS_USAGE_H

#include <stdint.h>

#include "core/status.h"
#include "linalg/backend.h"

typedef enum { BB_USAGE_TENSOR = 0, BB_USAGE_ROW, BB_USAGE_TILE } bb_usage_kind;

typedef struct {
    bb_usage_kind kind;
    int64_t tile_rows, tile_cols; /* used when kind = BB_USAGE_TILE */
} bb_usage_block;

/* "tensor" | "row" | "tile" (usage.block) with usage.tile_rows/cols.
 * Errors: BB_ERR_CONFIG for another name or a tile side < 1. */
bb_status bb_usage_block_parse(const char *kind, int64_t tile_rows, int64_t tile_cols, bb_usage_block *out);

/* Number of blocks of a (rows, cols) tensor. */
int64_t bb_usage_block_count(const bb_usage_block *b, int64_t rows, int64_t cols);

/* Per-channel norms from the Gram: xnorm[j] = sqrt(H_jj), H (cols, cols).
 * Errors: BB_ERR_NUMERIC naming the tensor for a negative or non-finite diagonal. */
bb_status bb_usage_xnorm_from_gram(const char *name, int64_t cols, const float *h, float *xnorm);

/* Wanda scores score_ij = |W_ij| * xnorm_j; w, score (rows, cols) row-major (may alias).
 * Errors: BB_ERR_NUMERIC naming the tensor and the first non-finite score. */
bb_status bb_usage_score(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                         float *score);

/* u (n_blocks): the mean Wanda score of each block, accumulated in double.
 * The _ref twin walks block by block; the fast path makes one row-major pass. */
bb_status bb_usage_blocks(const char *name, const bb_usage_block *b, int64_t rows, int64_t cols, const float *w,
                          const float *xnorm, double *u);
bb_status bb_usage_blocks_ref(const char *name, const bb_usage_block *b, int64_t rows, int64_t cols, const float *w,
                              const float *xnorm, double *u);

/* The largest of u (n); 0 when n = 0. The pipeline reduces it over ranks with MAX. */
double bb_usage_max(const double *u, int64_t n);

/* s[b] = u[b] / umax (umax the global maximum); all zeros when umax = 0.
 * Errors: BB_ERR_ARG for a negative or non-finite umax. */
bb_status bb_usage_normalize(const double *u, int64_t n, double umax, double *s);

/* Activation frequency passed through to block granularity: out (n_blocks) is
 * the mean of freq (cols) over each block's input channels. */
void bb_usage_block_freq(const bb_usage_block *b, int64_t rows, int64_t cols, const float *freq, double *out);

/* Gradient proxy of the layer reconstruction loss L(W_hat) = tr(E H E^T), E = W - W_hat:
 * g = dL/dW_hat up to sign, G = 2 E H (rows, cols) row-major, by one gemm per
 * row block of 256 (E is formed block by block, never whole). backend NULL = "cpu".
 * The _ref twin: plain loops in double. */
bb_status bb_usage_grad(const char *name, const bb_linalg_backend *be, int64_t rows, int64_t cols, const float *w,
                        const float *w_hat, const float *h, float *g);
bb_status bb_usage_grad_ref(const char *name, int64_t rows, int64_t cols, const float *w, const float *w_hat,
                            const float *h, float *g);

/* Layer reconstruction error ||(W - W_hat) X^T||_F^2 = tr(E H E^T) from the Gram,
 * without activations; w, w_hat (rows, cols), h (cols, cols). Summed in double
 * over row blocks of 256 (one gemm each). The _ref twin: plain loops in double. */
bb_status bb_usage_recon_error(const char *name, const bb_linalg_backend *be, int64_t rows, int64_t cols,
                               const float *w, const float *w_hat, const float *h, double *err);
bb_status bb_usage_recon_error_ref(const char *name, int64_t rows, int64_t cols, const float *w, const float *w_hat,
                                   const float *h, double *err);

#endif
