/* gptq_cuda.h — GPTQ on the GPU: the column loop of each 128-column lazy batch inside one kernel (a warp
 * per weight row, the batch's 128 x 128 block of the inverse factor in shared memory), the trailing update
 * W[:, i2:] -= E U[i1:i2, i2:] as one cuBLAS gemm per batch.
 *
 * Two grids:
 *   BB_CUDA_GRID_Q4_0  GGUF Q4_0, exactly as compress/gptq.c: each 32-column block's fp16 scale is fit by
 *                      qformat's symmetric search (the same double arithmetic, candidates spread over the
 *                      warp's lanes, each summed in the CPU's order; the file is built with --fmad=false)
 *                      on the block's error-updated values when the loop reaches its first column, weighted
 *                      by diag(H) when importance is on; codes nearest against that scale. Given the same
 *                      inverse factor and the same weights entering a batch the bytes are identical to
 *                      bb_quant_gptq's (unit.cuda_gptq checks this on one batch).
 *   BB_CUDA_GRID_G128  4-bit asymmetric min-max groups of 128 columns per row (the PyTorch reference's
 *                      "4-bit g128": scale = (max(w, 0) - min(w, 0)) / 15, zero = round(-min / scale),
 *                      fitted on the group's values when the loop reaches it); codes one byte each.
 * No act-order on the GPU (columns in their stored order). */
#ifndef BB_CUDA_GPTQ_CUDA_H
#define BB_CUDA_GPTQ_CUDA_H

#include <stdint.h>

#include "compress/quant.h"
#include "core/status.h"
#include "cuda/linalg_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BB_CUDA_GRID_Q4_0 = 0, BB_CUDA_GRID_G128 } bb_cuda_grid;

typedef struct {
    bb_cuda_grid grid;
    int importance;     /* Q4_0: weight the block fits by diag(H) */
    double damp;        /* fraction of mean(diag H) */
    double damp_max;    /* raised x10 on a failed Cholesky up to this */
    bb_cuda_math trail; /* precision of the trailing gemm (FP32 matches the CPU best) */
} bb_cuda_gptq_opts;

/* Q4_0, importance on, damp 0.01, damp_max 10, trailing gemm fp32. */
void bb_cuda_gptq_opts_default(bb_cuda_gptq_opts *o);

/* Bytes of the codes of a (rows, cols) matrix: Q4_0 rows * cols / 32 * 18; G128 rows * cols. */
int64_t bb_cuda_gptq_code_bytes(bb_cuda_grid g, int64_t rows, int64_t cols);

/* The column loop and trailing updates, given the inverse factor. All pointers are device memory:
 * w (rows, cols) in: weights (dead columns already zero), out: the dequantized weights Ŵ; u (cols, cols)
 * the upper inverse factor (bb_cuda_inverse_factor); imp (cols) the Q4_0 fit weights or NULL (uniform);
 * codes (bb_cuda_gptq_code_bytes); params: G128 (rows, cols / 128, 2) scale and zero, else unused (NULL).
 * cols must be a multiple of 32 (Q4_0) or 128 (G128). */
bb_status bb_cuda_gptq_factored(bb_cuda_ctx *c, const bb_cuda_gptq_opts *o, int64_t rows, int64_t cols, float *w,
                                const float *u, const float *imp, uint8_t *codes, float *params);

/* Whole GPTQ on device data: h (cols, cols) the Gram (read only), w as above; zeroes dead columns, fits
 * the inverse factor (damping retries), runs the loop. *damp_used may be NULL. Scratch: u (cols, cols)
 * is allocated here. */
bb_status bb_cuda_gptq(bb_cuda_ctx *c, const bb_cuda_gptq_opts *o, const char *name, int64_t rows, int64_t cols,
                       float *w, const float *h, uint8_t *codes, float *params, double *damp_used);

/* Host-memory GPTQ into GGUF Q4_0 blocks, the interface of bb_quant_gptq (compress/quant.h) for
 * o->type == Q4_0 without act-order; the result's blocks decode exactly to its w_hat.
 * Errors: BB_ERR_UNSUPPORTED for other types, act-order or cols not a multiple of 32 (use the cpu path). */
bb_status bb_cuda_quant_gptq(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out);

/* Plain-C reference of the G128 grid (no lazy batches: every later column updated after each column, in
 * double), given the same inverse factor u (cols, cols) host, weights w (rows, cols) host in/out (out:
 * Ŵ), codes (rows, cols), params (rows, cols / 128, 2). */
bb_status bb_cuda_gptq_g128_ref(int64_t rows, int64_t cols, float *w, const float *u, uint8_t *codes, float *params);

#ifdef __cplusplus
}
#endif
#endif
