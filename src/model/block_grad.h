/* block_grad.h — forward and backward of one Llama transformer block on a micro-batch of hidden states, with
 * low-rank factors on its 7 linear weights: what block-level healing trains.
 *
 * The block is forward.c's layer: x2 = x + Wo·attn(rope(Wq·n1), rope(Wk·n1), Wv·n1) with n1 = rmsnorm(x),
 * y = x2 + Wd·(silu(Wg·n2) * Wu·n2) with n2 = rmsnorm(x2); every linear W (out, in) may carry factors
 * A (out, rank), B (rank, in) so that it computes W + A·B (compress/lora.h's convention). The factored product
 * is applied as x·Wᵀ + (x·Bᵀ)·Aᵀ, never merged, so the gradient of A and B costs 2·rows·rank·(in + out)
 * flops per linear instead of a full ∂W.
 *
 * Input x is (n_seq, seq_len, dim) row-major: n_seq independent sequences at positions 0..seq_len-1 (the
 * layout of bb_forward_prefill). With no factors the output equals forward.c's layer within float rounding
 * (the linears are the same sgemms, so bit for bit; attention is computed with stored probabilities instead
 * of bb_attention's blocked normalization: tests/unit/test_block_grad.c bounds the difference).
 *
 * bb_block_forward keeps what the backward pass needs; bb_block_backward then takes ∂loss/∂y and ADDS the
 * gradients of the factors (and of the dense weights, if asked) into the caller's arrays, so gradients of
 * several micro-batches accumulate. Memory of a context (bytes, R = n_seq·seq_len rows, T = seq_len):
 *   4·[ R·(5·dim + 4·qd + 4·kvd + 6·hidden + 8·r_max) + n_seq·n_heads·T² + T² + T·head_dim ]
 * with qd = n_heads·head_dim, kvd = n_kv_heads·head_dim, r_max the largest rank (bb_block_memory_bytes).
 * Llama-7B shapes, 2×512 rows, rank 8: 0.55 GB. Norm weights and q/k/v biases are inputs, not trained.
 *
 * Every numeric piece of the backward pass has a plain-C _ref twin below; matmul and attention have a BLAS
 * fast path tested against it, the O(rows·width) pieces (RMSNorm, RoPE, SwiGLU) run their _ref. Results are
 * the same bit for bit from run to run at a fixed OpenBLAS thread count. Contexts are not thread-safe; nothing
 * here is collective. */
#ifndef BB_MODEL_BLOCK_GRAD_H
#define BB_MODEL_BLOCK_GRAD_H

#include <stdint.h>

#include "io/model.h"

/* The block's parameters, indexed by bb_linear_kind. Nothing is owned. */
typedef struct {
    const float *attn_norm, *ffn_norm; /* (dim) */
    const float *w[BB_LIN_COUNT];      /* (out, in) row-major */
    const float *bias[3];              /* q, k, v biases (out) or NULL */
    const float *lora_a[BB_LIN_COUNT]; /* (out, rank) or NULL: no factors on that linear */
    const float *lora_b[BB_LIN_COUNT]; /* (rank, in) */
    int rank[BB_LIN_COUNT];
} bb_block_weights;

/* Gradient accumulators, indexed by bb_linear_kind; backward adds into every non-NULL array. */
typedef struct {
    float *d_a[BB_LIN_COUNT]; /* (out, rank) */
    float *d_b[BB_LIN_COUNT]; /* (rank, in) */
    float *d_w[BB_LIN_COUNT]; /* (out, in): ∂loss/∂W of the dense weight (apply a mask yourself) */
} bb_block_grads;

typedef struct bb_block bb_block;

/* Out and in features of linear `k` in a model of config c. */
void bb_block_linear_shape(const bb_model_config *c, bb_linear_kind k, int64_t *out, int64_t *in);

/* Bytes a context for up to n_seq sequences of seq_len tokens and factors of rank <= max_rank takes (the
 * formula above). */
int64_t bb_block_memory_bytes(const bb_model_config *c, int n_seq, int seq_len, int max_rank);

/* A context for micro-batches of at most n_seq sequences of seq_len tokens each, factors of rank <= max_rank.
 * Errors: BB_ERR_ARG (a size < 1, max_rank < 0, seq_len beyond the model's context, n_heads not a multiple of
 * n_kv_heads), BB_ERR_OOM naming the bytes. */
bb_status bb_block_create(const bb_model_config *c, int n_seq, int seq_len, int max_rank, bb_block **out);
void bb_block_destroy(bb_block **b); /* NULL-safe; nulls *b */

/* y (n_seq, seq_len, dim) = block(x). x must stay unchanged until the matching backward (it is read, not
 * copied). Errors: BB_ERR_ARG (more sequences than the context holds, other seq_len, a rank above max_rank). */
bb_status bb_block_forward(bb_block *b, const bb_block_weights *w, const float *x, int n_seq, float *y);

/* Given dy = ∂loss/∂y of the last forward (same w), add the parameter gradients into g and write
 * dx = ∂loss/∂x (n_seq, seq_len, dim) unless dx is NULL. Errors: BB_ERR_ARG when no forward came first. */
bb_status bb_block_backward(bb_block *b, const bb_block_weights *w, const float *dy, float *dx, bb_block_grads *g);

/* Flops of one forward (fwd) and one backward (bwd) as implemented (attention counted on full T×T squares,
 * which is what the sgemms do), for n_seq sequences; with_dw adds the dense weight gradients. */
void bb_block_flops(const bb_model_config *c, int n_seq, int seq_len, const bb_block_weights *w, int with_dw,
                    double *fwd, double *bwd);

/* ---- backward pieces: plain-C references and fast paths ---------------------------------------------------- */

/* Linear layer y = x Wᵀ + (x Bᵀ) Aᵀ, backward. x (rows, in), dy (rows, out), w (out, in); a (out, rank) and
 * b (rank, in) may be NULL (rank ignored), then u, da, db are unused; u (rows, rank) = x Bᵀ saved by the forward.
 * dx (rows, in): overwritten when accumulate_dx is 0, added to otherwise; NULL skips it. da, db, dw: added to
 * when non-NULL. The fast path needs rank floats of scratch per row (scratch (rows, rank)). */
void bb_linear_bwd_ref(const float *x, const float *w, const float *a, const float *b, const float *u, int rank,
                       const float *dy, int64_t rows, int64_t in, int64_t out, float *dx, int accumulate_dx, float *da,
                       float *db, float *dw);
void bb_linear_bwd(const float *x, const float *w, const float *a, const float *b, const float *u, int rank,
                   const float *dy, int64_t rows, int64_t in, int64_t out, float *dx, int accumulate_dx, float *da,
                   float *db, float *dw, float *scratch);

/* RMSNorm y = w · x / sqrt(mean(x²) + eps) backward: dx (rows, dim) += ∂/∂x of Σ dy·y. x, dy (rows, dim). */
void bb_rmsnorm_bwd_ref(const float *x, const float *w, const float *dy, int64_t rows, int dim, float eps, float *dx);

/* RoPE backward: rotate d (rows, n_heads*head_dim) in place by the opposite angles (the transpose of
 * bb_rope_ref's rotation), with the same tables and pairing. */
void bb_rope_bwd_ref(float *d, int64_t rows, int n_heads, int head_dim, bb_rope_style style, const float *cos_t,
                     const float *sin_t);

/* SwiGLU h = silu(g) * u backward: dg = dh·u·silu'(g), du = dh·silu(g). g, u, dh, dg, du (n). */
void bb_silu_mul_bwd_ref(const float *g, const float *u, const float *dh, int64_t n, float *dg, float *du);

/* Causal GQA attention of one sequence at positions 0..T-1 keeping its probabilities: q (T, n_heads*hd),
 * k, v (T, n_kv*hd), out (T, n_heads*hd), p (n_heads, T, T) row-major with zeros above the diagonal.
 * The fast path is one sgemm pair per head. */
void bb_attention_fwd_ref(const float *q, const float *k, const float *v, int T, int n_heads, int n_kv, int hd,
                          float *out, float *p);
void bb_attention_fwd(const float *q, const float *k, const float *v, int T, int n_heads, int n_kv, int hd, float *out,
                      float *p);
/* Its backward: given dout (T, n_heads*hd), write dq (T, n_heads*hd), dk, dv (T, n_kv*hd) (overwritten).
 * The fast path needs T·T floats of scratch. */
void bb_attention_bwd_ref(const float *q, const float *k, const float *v, const float *p, const float *dout, int T,
                          int n_heads, int n_kv, int hd, float *dq, float *dk, float *dv);
void bb_attention_bwd(const float *q, const float *k, const float *v, const float *p, const float *dout, int T,
                      int n_heads, int n_kv, int hd, float *dq, float *dk, float *dv, float *scratch);

#endif
