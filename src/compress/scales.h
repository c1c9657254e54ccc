/* scales.h — straight-through (STE) training of the per-block scales of a quantized weight in the data metric.
 *
 * The symmetric GGUF block types Q8_0, Q4_0 and Q5_0 store, per block of 32 consecutive values of a row,
 * one fp16 scale d and integer codes q; the block decodes to ŵ = d·q exactly. With the calibration Gram
 * H = XᵀX (cols, cols) of the layer's input and the target W (what the quantizer was given), the layer loss
 *     L(d) = tr(E H Eᵀ),   E = W − Ŵ(d),   Ŵ(d)_ij = d_{b(i,j)} · q_ij,
 * has the gradient
 *     ∂L/∂d_b = −2 Σ_{(i,j) in b} q_ij (E H)_ij.
 * Straight-through: ŵ = d·round(w/d) is differentiated with the rounding passed through as a constant, so
 * the codes stay what the quantizer chose (GPTQ's codes are error-compensated: re-rounding them would undo
 * GPTQ) and the gradient above is the exact gradient at fixed codes — which the unit test checks against
 * central finite differences. Adam runs on the relative change ρ_b (d_b = d⁰_b (1 + ρ_b)), so one learning
 * rate fits scales of every magnitude; a zero scale (an all-zero block) stays 0.
 *
 * Cost per step: E·H, 2·rows·cols² flops (the same as heal.train_weights), plus O(rows·cols).
 * Every numeric function has a plain-C _ref twin in double. Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_SCALES_H
#define BB_COMPRESS_SCALES_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "linalg/backend.h"

/* Values per scale of the trainable types (32). */
#define BB_SCALES_BLOCK 32

/* 1 for the block types whose scales this module trains (Q8_0, Q4_0, Q5_0), else 0. */
int bb_scales_type_supported(int type);

/* L(d) and, when grad is not NULL, ∂L/∂d. w, q (rows, cols) row-major (q: integer codes as floats),
 * d (rows, cols / 32) row-major, h (cols, cols) full symmetric, grad (rows, cols / 32).
 * Errors: BB_ERR_ARG (cols not a multiple of 32, NULL arrays), BB_ERR_OOM. */
bb_status bb_scales_loss_grad(const bb_linalg_backend *be, int64_t rows, int64_t cols, const float *w, const float *q,
                              const float *d, const float *h, double *loss, float *grad);
/* The same in plain loops, E·H in double. */
bb_status bb_scales_loss_grad_ref(int64_t rows, int64_t cols, const float *w, const float *q, const float *d,
                                  const float *h, double *loss, float *grad);

typedef struct {
    int steps;           /* Adam steps (heal.scale_steps) */
    double lr;           /* on the relative change ρ (heal.scale_lr) */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
} bb_scales_opts;

/* steps 100, lr 1e-3, betas 0.9/0.999, eps 1e-8, cpu. */
void bb_scales_opts_default(bb_scales_opts *o);

typedef struct {
    double loss_before, loss_after; /* L at the given scales and at the returned ones */
    int best_step;                  /* the step whose scales are returned (0: none improved) */
    int64_t scales;                 /* scales trained (nonzero) */
} bb_scales_stats;

/* o->steps Adam steps on d (in place) against L; the scales of the lowest loss seen are returned
 * (loss_after <= loss_before). curve (steps + 1) or NULL: the loss before each step and after the last.
 * Errors: BB_ERR_ARG (shapes, bad options), BB_ERR_NUMERIC (non-finite loss: lower heal.scale_lr), BB_ERR_OOM. */
bb_status bb_scales_adam(const bb_scales_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                         const float *q, float *d, const float *h, double *curve, bb_scales_stats *st);

/* Train the scales of one quantized matrix as GGUF stores it: blocks (rows, row_bytes) of `type`, w_hat
 * (rows, cols) = what they decode to, w the quantizer's target, h its Gram. The codes are read off w_hat,
 * the trained scales are rounded to fp16 and written into the blocks, and w_hat is decoded again; when the
 * fp16-rounded result is not better than the start, blocks and w_hat are left as they were
 * (st->loss_after = loss_before). Errors: BB_ERR_ARG (a type bb_scales_type_supported refuses, shapes),
 * those of bb_scales_adam. */
bb_status bb_scales_train_blocks(const bb_scales_opts *o, const char *name, int type, int64_t rows, int64_t cols,
                                 const float *w, const float *h, uint8_t *blocks, size_t row_bytes, float *w_hat,
                                 bb_scales_stats *st);

#endif
