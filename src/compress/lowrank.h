/* lowrank.h — low-rank factorization as compression: W ≈ A·B by the truncation-aware whitened SVD, rank from an error
 * target or a bit budget.
 *
 * SVD-LLM-style: with the damped calibration Gram H_d = L Lᵀ (compress/heal.h, bb_heal_whiten), the
 * data-weighted error of a rank-r factorization is tr((W − AB) H_d (W − AB)ᵀ) = ||W L − (AB) L||², so
 * the truncated SVD of the whitened W·L = U S Vᵀ mapped back (A = U_r S_r^{1/2}, B = S_r^{1/2} V_rᵀ L⁻¹)
 * is optimal, and its error is the tail Σ_{i>r} s_i² of the whitened spectrum: the spectrum alone
 * decides the rank before anything is fitted. The relative error used throughout is
 *     rel(r) = Σ_{i>r} s_i² / Σ_i s_i² = tr(E H_d Eᵀ) / tr(W H_d Wᵀ)   (a ratio of losses, not a norm).
 * Factoring stores r·(rows + cols) values instead of rows·cols; it saves nothing once
 * r >= bb_lowrank_breakeven_rank(rows, cols) + 1, and the planner then says so (rank 0).
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_LOWRANK_H
#define BB_COMPRESS_LOWRANK_H

#include <stdint.h>

#include "compress/heal.h"

/* Largest r with r·(rows + cols) < rows·cols (0 for a 1×1 matrix). */
int64_t bb_lowrank_breakeven_rank(int64_t rows, int64_t cols);
/* Largest r whose factors fit budget_bits at bits_per_value: floor(budget / (bits·(rows + cols))). */
int64_t bb_lowrank_rank_for_bits(int64_t rows, int64_t cols, double bits_per_value, int64_t budget_bits);
/* Smallest r with rel(r) <= rel_err, from the top k whitened singular values s (descending) and the
 * total energy Σ_i s_i² (all of them, not just the top k); -1 when the top k do not reach it. */
int bb_lowrank_rank_for_error(const float *s, int k, double total, double rel_err);

/* The top k whitened singular values of W·L into s (k) and ||W L||_F² into *total (exact LAPACK
 * singular values when min(rows, cols) <= o->exact_max or o->svd is exact, else the randomized SVD).
 * w (rows, cols), h (cols, cols) row-major. Errors: BB_ERR_ARG (k outside [1, min(rows, cols)]),
 * those of bb_heal_whiten and the SVD. */
bb_status bb_lowrank_spectrum(const bb_heal_fit_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                              const float *h, int k, float *s, double *total);

typedef struct {
    double rel_err;        /* target rel(r), or 0: no error target */
    int64_t budget_bits;   /* bits the factors may take, or 0: no budget */
    double bits_per_value; /* storage of one factor value (16 for f16 factors) */
    int max_rank;          /* cap on the spectrum computed (0: up to the break-even rank) */
} bb_lowrank_target;

typedef struct {
    int rank;             /* chosen rank; 0 when factoring saves nothing or no target is met */
    int saves;            /* 1 when rank·(rows + cols) < rows·cols */
    double rel_err;       /* rel(rank), 1 for rank 0 */
    int64_t dense_values; /* rows·cols */
    int64_t lowrank_values;
    const char *reason;   /* one line: why this rank */
} bb_lowrank_plan;

/* Pick the rank: the smallest meeting rel_err if given, capped by the budget if given (with only
 * a budget: the largest rank that fits it). A rank at or past the break-even gives rank 0,
 * saves 0 and the reason "factoring saves nothing". Errors: BB_ERR_ARG (no target at all, bad
 * bits_per_value), those of bb_lowrank_spectrum. */
bb_status bb_lowrank_plan_rank(const bb_heal_fit_opts *o, const char *name, int64_t rows, int64_t cols,
                               const float *w, const float *h, const bb_lowrank_target *t, bb_lowrank_plan *plan);

/* W ≈ A·B: bb_heal_closed_form with Ŵ = 0 into lora (rows, cols, rank). */
bb_status bb_lowrank_factor(const bb_heal_fit_opts *o, const char *name, const float *w, const float *h, bb_lora *lora,
                            bb_heal_fit_stats *st);

#endif
