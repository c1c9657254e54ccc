/* kernels.h — CPU fp32 numeric kernels of the Llama forward pass: plain-C _ref versions and OpenBLAS fast paths.
 *
 * Every kernel has a readable _ref; the fast paths (bb_matmul, bb_matmul_add,
 * bb_attention, bb_exp, bb_silu_mul) are tested against them
 * (tests/unit/test_forward.c states the tolerances). RMSNorm and RoPE are
 * O(rows*width), memory-bound and a fraction of a percent of a prefill, so the
 * forward pass calls their _ref directly; exp is not cheap (softmax, SwiGLU),
 * hence bb_exp's polynomial. Fast paths are plain C the compiler vectorizes
 * (SSE2 at the baseline ISA) plus OpenBLAS; each result is the same bit for
 * bit from run to run (see docs/performance-forward.md for thread counts).
 * All arrays are row-major; none may alias unless stated. Not collective;
 * thread-safe. */
#ifndef BB_MODEL_KERNELS_H
#define BB_MODEL_KERNELS_H

#include <stdint.h>

#include "io/model.h"

/* y = x W^T (+ b): x (rows, in), w (out, in), b (out) or NULL, y (rows, out). */
void bb_matmul_ref(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y);
void bb_matmul(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y);
/* y += x W^T: the residual add folded into the sgemm (beta = 1), no temporary. */
void bb_matmul_add_ref(const float *x, const float *w, int64_t rows, int64_t in, int64_t out, float *y);
void bb_matmul_add(const float *x, const float *w, int64_t rows, int64_t in, int64_t out, float *y);

/* y[r] = w * x[r] / sqrt(mean(x[r]^2) + eps): x, y (rows, dim) (may alias), w (dim). */
void bb_rmsnorm_ref(const float *x, const float *w, int64_t rows, int dim, float eps, float *y);

/* Rotary frequencies of the head_dim/2 pairs after the config's scaling
 * (none, linear, llama3): inv_freq (head_dim/2). */
void bb_rope_freqs(const bb_model_config *c, double *inv_freq);
/* cos/sin (n, half) of angle pos[i] * inv_freq[j], computed in double. */
void bb_rope_table(const double *inv_freq, int half, const int *pos, int n, float *cos_t, float *sin_t);
/* Rotate x (rows, n_heads*head_dim) in place; row r uses cos_t/sin_t row r
 * ((rows, head_dim/2)). Pairs are (2i, 2i+1) or (i, i+head_dim/2) by style. */
void bb_rope_ref(float *x, int64_t rows, int n_heads, int head_dim, bb_rope_style style, const float *cos_t,
                 const float *sin_t);

/* y = e^x: x, y (n) (may alias). bb_exp is within 2 ulp of expf for
 * |x| <= 87.3 and saturates outside (1.2e-38 below, 8.2e37 above, never 0 or
 * Inf); NaN stays NaN. */
void bb_exp_ref(const float *x, int64_t n, float *y);
void bb_exp(const float *x, int64_t n, float *y);

/* g = silu(g) * u: g, u (n). bb_silu_mul uses bb_exp's polynomial. */
void bb_silu_mul_ref(float *g, const float *u, int64_t n);
void bb_silu_mul(float *g, const float *u, int64_t n);

/* Causal grouped-query attention for one sequence.
 * q (T, n_heads*hd): queries at positions pos0 .. pos0+T-1;
 * k, v (pos0+T, n_kv*hd): keys and values at positions 0 .. pos0+T-1;
 * out (T, n_heads*hd). Query head h reads kv head h / (n_heads/n_kv).
 * bb_attention works in blocks of queries, one sgemm pair per (block, kv head)
 * over the query heads sharing it and the keys the block can see; it needs
 * bb_attention_scratch(...) floats of scratch. */
void bb_attention_ref(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                      float *out);
void bb_attention(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                  float *out, float *scratch);
int64_t bb_attention_scratch(int T, int pos0, int n_heads, int n_kv, int hd);

#endif
