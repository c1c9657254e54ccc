/* kernels.h — CPU fp32 numeric kernels of the Llama forward pass: plain-C _ref versions and OpenBLAS fast paths.
 *
 * Every kernel has a readable _ref; the sgemm paths (bb_matmul, bb_attention)
 * are tested against them (tests/unit/test_forward.c states the tolerances).
 * RMSNorm, RoPE and SwiGLU are O(rows*width) and memory-bound next to the
 * matmuls, so the forward pass calls their _ref directly. All arrays are
 * row-major; none may alias unless stated. Not collective; thread-safe. */
#ifndef BB_MODEL_KERNELS_H
#define BB_MODEL_KERNELS_H

#include <stdint.h>

#include "io/model.h"

/* y = x W^T (+ b): x (rows, in), w (out, in), b (out) or NULL, y (rows, out). */
void bb_matmul_ref(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y);
void bb_matmul(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y);

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

/* g = silu(g) * u: g, u (n). */
void bb_silu_mul_ref(float *g, const float *u, int64_t n);

/* Causal grouped-query attention for one sequence.
 * q (T, n_heads*hd): queries at positions pos0 .. pos0+T-1;
 * k, v (pos0+T, n_kv*hd): keys and values at positions 0 .. pos0+T-1;
 * out (T, n_heads*hd). Query head h reads kv head h / (n_heads/n_kv).
 * bb_attention needs scratch of T*(pos0+T) floats. */
void bb_attention_ref(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                      float *out);
void bb_attention(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                  float *out, float *scratch);

#endif
