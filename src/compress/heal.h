/* heal.h — layer-level healing: closed-form low-rank compensation and Adam on the LoRA factors in the data metric.
 *
 * A linear layer W (rows = out, cols = in) row-major f32 is compressed to Ŵ (pruned and/or
 * quantized, same shape) and corrected by low-rank factors (compress/lora.h) A (rows, r),
 * B (r, cols), so it computes Ŵ + A·B. With the calibration Gram H = XᵀX (cols, cols) of its
 * input (model/calib.h), the layer reconstruction loss is
 *     L(A, B) = ||(W − Ŵ − A·B) Xᵀ||² = tr(E' H E'ᵀ),   E' = W − Ŵ − A·B,
 * computed from H alone, never from activations.
 *
 * Closed form (bb_heal_closed_form). H is damped, H_d = H + λ·mean(diag H)·I (λ = damp), so that
 * a singular H (dead inputs, fewer tokens than inputs) still factors; H_d = L Lᵀ (Cholesky,
 * L lower). Then tr(M H_d Mᵀ) = ||M L||_F², and by Eckart–Young the best rank-r A·B is the
 * truncated SVD of E·L = U S Vᵀ mapped back: A = U_r S_r^{1/2}, B = S_r^{1/2} V_rᵀ L⁻¹ (the
 * balanced split, so that Adam starts from factors of equal scale). The fit is optimal for H_d;
 * loss_before/after are reported for the undamped H. A failed Cholesky raises λ ×10 and retries
 * (max_retries); H = 0 (a never-reached input) gives A = B = 0 and loss 0.
 *
 * Adam (bb_heal_adam). With G0 = (W − Ŵ)·H computed once (2·rows·cols² flops), each step needs
 *     P = B·H                  (r, cols)   2·r·cols²
 *     Q = G0·Bᵀ                (rows, r)   2·rows·cols·r
 *     R = Aᵀ·G0                (r, cols)   2·rows·cols·r
 *     S = P·Bᵀ, T = AᵀA        (r, r)      2·r²·(rows + cols)
 *     ∂L/∂A = −2(Q − A·S),  ∂L/∂B = −2(R − T·P)       2·r²·(rows + cols)
 *     L = L0 − 2⟨A, Q⟩ + ⟨T, S⟩  (no extra pass)
 * i.e. about 2·r·cols² + 4·rows·cols·r + 4·r²·(rows + cols) flops per step (bb_heal_step_flops).
 * With train_weights the kept weights of Ŵ are trained too (the mask is fixed: pruned entries
 * stay exactly 0); then E'·H changes every step and costs a full 2·rows·cols² per step, plus
 * two (rows, cols) moment arrays.
 * Quantization scales (heal.train_scales) are trained where the blocks exist, at quantization:
 * compress/scales.h.
 *
 * Every numeric function has a plain-C _ref twin (double accumulation, no BLAS/LAPACK) that
 * the tests check the fast path against. Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_HEAL_H
#define BB_COMPRESS_HEAL_H

#include <stdint.h>

#include "compress/lora.h"
#include "compress/mask.h"
#include "core/status.h"
#include "io/config.h"
#include "linalg/backend.h"

typedef enum { BB_HEAL_SVD_AUTO = 0, BB_HEAL_SVD_EXACT, BB_HEAL_SVD_RANDOMIZED } bb_heal_svd;

typedef struct {
    double damp;     /* λ: H + λ·mean(diag H)·I; > 0 makes a singular H factor (default 0.01) */
    int max_retries; /* failed Cholesky: λ ×10 and retry, this many times (6); λ = 0 retries from 1e-6 */
    bb_heal_svd svd; /* auto: exact when min(rows, cols) <= exact_max, else randomized */
    int exact_max;   /* 1024 */
    int oversample;  /* randomized SVD: extra sketch columns (16) */
    int power_iters; /* randomized SVD: power iterations (3) */
    uint64_t seed;   /* randomized SVD sketch seed (0) */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
} bb_heal_fit_opts;

/* damp 0.01, 6 retries, auto SVD (exact up to 1024), oversample 16, 3 power iterations, seed 0, cpu. */
void bb_heal_fit_opts_default(bb_heal_fit_opts *o);

typedef struct {
    double loss_before; /* tr(E H Eᵀ), E = W − Ŵ, undamped H */
    double loss_after;  /* tr(E' H E'ᵀ) with the fitted factors */
    double damp_used;   /* the λ that factored H */
    double sigma_r;     /* smallest kept singular value of E·L (r-th), 0 when E·L has lower rank */
    double tail;        /* ||E L||_F² − Σ_{i<=r} s_i²: the optimal damped loss */
    double flops, seconds;
} bb_heal_fit_stats;

/* Best rank-r correction: on return lora (rows, cols, rank r, created by the caller) holds A, B
 * minimizing tr((E − AB) H_d (E − AB)ᵀ), E = w − w_hat (w_hat NULL: Ŵ = 0, which is the
 * factorization of W itself, compress/lowrank.h). w, w_hat (rows, cols), h (cols, cols) full
 * symmetric, all row-major; st may be NULL. r > min(rows, cols) leaves the extra directions 0.
 * Errors: BB_ERR_ARG (shape mismatch, damp < 0), BB_ERR_NUMERIC (NaN/Inf in the input, no
 * Cholesky within the retries: raise heal damping), backend errors. */
bb_status bb_heal_closed_form(const bb_heal_fit_opts *o, const char *name, const float *w, const float *w_hat,
                              const float *h, bb_lora *lora, bb_heal_fit_stats *st);
/* Plain C in double: Cholesky, E·L, one-sided Jacobi SVD, forward substitution. Small sizes only. */
bb_status bb_heal_closed_form_ref(const bb_heal_fit_opts *o, const char *name, const float *w, const float *w_hat,
                                  const float *h, bb_lora *lora, bb_heal_fit_stats *st);

/* The whitening factor: l (cols, cols) row-major = the lower Cholesky factor of
 * H + λ·mean(diag H)·I (upper triangle zeroed), with the retries of bb_heal_closed_form;
 * *damp_used = the λ that worked. *zero = 1 (l untouched) when diag H is all zero (H = 0).
 * Errors: BB_ERR_NUMERIC (negative diagonal, no factorization within the retries). */
bb_status bb_heal_whiten(const bb_heal_fit_opts *o, const char *name, const float *h, int64_t cols, float *l,
                         double *damp_used, int *zero);

/* Loss tr(E' H E'ᵀ), E' = w − w_hat − A·B (lora may be NULL: no factors; w_hat NULL: 0). */
bb_status bb_heal_loss(const char *name, const float *w, const float *w_hat, const bb_lora *lora, int64_t rows,
                       int64_t cols, const float *h, double *loss);
bb_status bb_heal_loss_ref(const char *name, const float *w, const float *w_hat, const bb_lora *lora, int64_t rows,
                           int64_t cols, const float *h, double *loss);

/* Loss and gradients of the factors from the precomputed G0 = (W − Ŵ)·H (rows, cols) and
 * L0 = tr((W − Ŵ) H (W − Ŵ)ᵀ): ga (rows, r) = ∂L/∂A, gb (r, cols) = ∂L/∂B (either may be NULL).
 * Scratch of (2·r·cols + rows·r + 2·r²) floats is allocated per call (bb_heal_adam keeps one).
 * FLOPs: bb_heal_step_flops(rows, cols, r, 0). */
bb_status bb_heal_grad(const bb_linalg_backend *be, const float *g0, double l0, const float *h, const bb_lora *lora,
                       double *loss, float *ga, float *gb);
/* From w, w_hat, h directly: E' explicit, E'·H by plain loops in double. */
bb_status bb_heal_grad_ref(const float *w, const float *w_hat, const float *h, const bb_lora *lora, double *loss,
                           float *ga, float *gb);

/* Floating-point operations of one Adam step (see the header comment). */
double bb_heal_step_flops(int64_t rows, int64_t cols, int rank, int train_weights);

typedef struct {
    int steps;               /* Adam steps (E_k) */
    double lr;               /* lr_k */
    double beta1, beta2;     /* 0.9, 0.999 */
    double eps;              /* 1e-8 */
    int train_weights;       /* also train the kept weights of Ŵ (mask required) */
    const bb_mask *mask;     /* (rows, cols) 1 = kept; required when train_weights */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
} bb_heal_adam_opts;

/* steps 200, lr 2e-4, betas 0.9/0.999, eps 1e-8, factors only. */
void bb_heal_adam_opts_default(bb_heal_adam_opts *o);

typedef struct {
    double loss_before, loss_after; /* undamped tr(E' H E'ᵀ) at the start and of the returned parameters */
    double best;                    /* smallest loss seen (the curve's minimum) = loss_after */
    int best_step;                  /* the step whose parameters are returned (steps: the last) */
    double flops, seconds;
    double flops_per_step;
    double seconds_setup; /* G0 = (W − Ŵ)·H and allocations, before the first step */
    double seconds_steps; /* the step loop: steps updates and steps + 1 loss evaluations */
} bb_heal_adam_stats;

/* o->steps Adam steps on lora's A and B (and, with train_weights, the kept entries of w_hat, in
 * place) against tr(E' H E'ᵀ). curve (steps + 1) or NULL: curve[t] = loss before step t,
 * curve[steps] = the loss after the last step. Adam is not a descent method (near an optimum its
 * last step can end slightly above the start), so the parameters of the lowest recorded loss are
 * returned: loss_after = min(curve) <= loss_before. Factors that are both all zero are a stationary point: start
 * from bb_heal_closed_form or bb_heal_lora_init. Errors: BB_ERR_ARG (shapes, zero factors,
 * train_weights without a mask, bad options), BB_ERR_NUMERIC (non-finite loss: lower heal.lr). */
bb_status bb_heal_adam(const bb_heal_adam_opts *o, const char *name, const float *w, float *w_hat, const float *h,
                       bb_lora *lora, double *curve, bb_heal_adam_stats *st);
/* The same with bb_heal_grad_ref-style plain loops every step (E'·H recomputed in double). */
bb_status bb_heal_adam_ref(const bb_heal_adam_opts *o, const char *name, const float *w, float *w_hat,
                           const float *h, bb_lora *lora, double *curve, bb_heal_adam_stats *st);

/* LoRA-style start when no closed form is wanted: A ~ N(0, 1/r) from Philox stream
 * "heal.lora_init" of seed (split by `key`), B = 0. */
void bb_heal_lora_init(bb_lora *lora, uint64_t seed, uint64_t key);

/* The seed's schedule for wave k of R (1-based): E_k = steps·(1 − (k−1)/R), lr_k = lr·(1 − (k−1)/R)
 * (rounded to the nearest step) when taper, else steps and lr. k outside [1, R] is clamped. */
void bb_heal_schedule(int steps, double lr, int taper, int k, int R, int *steps_k, double *lr_k);

/* heal.* of the configuration for wave k of waves.count: steps and lr after the schedule,
 * train_weights; *rank and *closed_form from heal.rank and heal.closed_form (either may be NULL).
 * heal.train_scales is not read here (compress/scales.h, applied at quantization). */
bb_status bb_heal_opts_from_config(const bb_config *cfg, int wave, bb_heal_adam_opts *o, int *rank,
                                   int *closed_form);

#endif
