/* forward_cuda.h — one Llama transformer block on the GPU: the prefill of B sequences of T tokens from
 * position 0 (calibration and evaluation), on device memory.
 *
 * The same computation as src/model/forward.c's blocks (whose kernels are the plain-C `_ref`s this is
 * tested against, unit.cuda_forward): RMSNorm, the q/k/v products (+ bias), RoPE in either pairing,
 * causal grouped-query attention, the output product added to the residual, RMSNorm, SwiGLU, the down
 * product added to the residual. Products go through bb_cuda_gemm in the context's math (FP32, TF32 or
 * BF16 inputs with fp32 accumulation); attention is two batched cuBLAS products per chunk of sequences
 * (scores for every head of the chunk, then the weighted sums) around one causal-softmax kernel, with
 * the scores of at most `attn_rows` (sequence, head) pairs resident at once (T*T floats each).
 *
 * Weights are device pointers, row-major (out, in) like the model files, so a caller can stream a
 * model block by block (upload, run, drop): nothing here keeps a weight.
 * A hook sees the input of every linear layer (device pointer, valid during the call): q, k and v share
 * one input, gate and up another; calibration accumulates its Grams from it on the device.
 * Not collective; one context per thread. */
#ifndef BB_CUDA_FORWARD_CUDA_H
#define BB_CUDA_FORWARD_CUDA_H

#include <stdint.h>

#include "cuda/linalg_cuda.h"
#include "io/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One block's weights, DEVICE pointers: norms (dim); wq (qd, dim), wk and wv (kvd, dim), wo (dim, qd),
 * w_gate and w_up (hidden, dim), w_down (dim, hidden); biases (qd / kvd) or NULL. */
typedef struct {
    const float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo;
    const float *ffn_norm, *w_gate, *w_up, *w_down;
} bb_cuda_block_w;

typedef bb_status (*bb_cuda_fwd_hook)(void *ud, bb_linear_kind kind, const float *dx, int64_t rows,
                                      int64_t in_features);

typedef struct bb_cuda_fwd bb_cuda_fwd;

/* A workspace for blocks of config c on up to max_b sequences of t tokens (positions 0..t-1, RoPE table
 * from the config's scaling). Products in `math`. Errors: BB_ERR_ARG (t beyond the config's max_seq_len,
 * shapes), BB_ERR_OOM with the bytes (device workspace: about 4 (2 dim + 2 qd + 2 kvd + 2 hidden) bytes
 * per row of max_b*t, plus the attention scores). */
bb_status bb_cuda_fwd_create(bb_cuda_ctx *ctx, const bb_model_config *c, int t, int max_b, bb_cuda_math math,
                             bb_cuda_fwd **out);
void bb_cuda_fwd_destroy(bb_cuda_fwd **f); /* NULL-safe; nulls *f */

/* x (b * t, dim) device, in place: the residual stream after the block. hook may be NULL. */
bb_status bb_cuda_fwd_block(bb_cuda_fwd *f, const bb_cuda_block_w *w, float *x, int b, bb_cuda_fwd_hook hook,
                            void *ud);

/* The same block for x on the HOST: uploads x, runs, downloads (the weights stay device pointers). */
bb_status bb_cuda_fwd_block_host(bb_cuda_fwd *f, const bb_cuda_block_w *w, float *x, int b);

/* Seconds and flops of the blocks run so far (synchronized timing; the hook's time excluded). */
typedef struct {
    double matmul_s, attention_s, elementwise_s;
    double matmul_flop, attention_flop;
    int64_t tokens;
} bb_cuda_fwd_stats;
void bb_cuda_fwd_stats_get(const bb_cuda_fwd *f, bb_cuda_fwd_stats *out);

/* Host <-> device copies for C callers (synchronous). Errors: BB_ERR_CUDA naming `what`. */
bb_status bb_cuda_upload(void *dst, const void *src, size_t bytes, const char *what);
bb_status bb_cuda_download(void *dst, const void *src, size_t bytes, const char *what);
void bb_cuda_free(void *p); /* NULL-safe */

/* A block's weights uploaded from a model's tensors (bb_tensor_read_f32 then one copy each), freed by
 * bb_cuda_block_w_free. Errors: read errors, BB_ERR_OOM naming the tensor. */
bb_status bb_cuda_block_w_upload(const bb_model *m, int layer, bb_cuda_block_w *out);
void bb_cuda_block_w_free(bb_cuda_block_w *w);

#ifdef __cplusplus
}
#endif
#endif
