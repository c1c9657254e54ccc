/* scaffold.h — the seed's low-rank scaffold (§2.3–2.4): rank-1 start with a thresholded residual, one singular
 * direction more per wave, the α_k usage schedule, and the stop-loss on the residual threshold.
 *
 * W (rows, cols) row-major = U S Vᵀ (plain SVD, not data-weighted: the seed's spectral scaffold).
 * Wave k of R holds the scaffold W_k = Σ_{i<=k} σ_i u_i v_iᵀ as low-rank factors (A = U_k S_k^{1/2},
 * B = S_k^{1/2} V_kᵀ, compress/lora.h) and the residual R_k = W − W_k with every entry |R_k| < τ
 * zeroed (pruned), τ = tau_rel · σ_1 (scaffold.tau1 = 0.1 in the seed); the layer then computes
 * R̂_k + A·B. Note the scale: an entry of W is about σ_1 / sqrt(rows·cols) · O(1), so τ = 0.1 σ_1
 * prunes nearly the whole residual of a large random-like matrix; bb_scaffold_stats reports the
 * kept fraction, and the stop-loss (halving τ when the validation loss rises by more than 3 %)
 * is what brings τ down to a useful size. The seed does not say which residual phase 2 thresholds;
 * here every wave thresholds its own R_k with the current τ.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_SCAFFOLD_H
#define BB_COMPRESS_SCAFFOLD_H

#include <stdint.h>

#include "compress/lora.h"
#include "compress/mask.h"
#include "core/status.h"
#include "io/config.h"

typedef struct {
    int64_t rows, cols;
    int R;    /* directions held */
    float *s; /* (R) descending */
    float *u; /* (rows, R) row-major */
    float *v; /* (cols, R) row-major */
} bb_scaffold;

/* The top R singular triplets of w (rows, cols): exact LAPACK SVD when min(rows, cols) <= 1024,
 * else the randomized SVD (oversample 16, 3 power iterations, seed). Errors: BB_ERR_ARG (R outside
 * [1, min(rows, cols)]), BB_ERR_NUMERIC (NaN/Inf), BB_ERR_OOM. */
bb_status bb_scaffold_create(const char *name, int64_t rows, int64_t cols, const float *w, int R, uint64_t seed,
                             bb_scaffold **out);
void bb_scaffold_destroy(bb_scaffold **s); /* NULL-safe; nulls *s */

typedef struct {
    double tau;         /* absolute threshold tau_rel · σ_1 */
    int64_t kept;       /* residual entries kept (|R_k| >= τ) */
    double kept_frac;   /* kept / (rows·cols) */
    double rel_err;     /* ||W − (R̂_k + W_k)||_F / ||W||_F */
} bb_scaffold_stats;

/* The state of wave k (1 <= k <= R): lora (rows, cols, rank >= k; directions past k are zeroed)
 * = W_k, resid (rows, cols) = R_k with entries below τ zeroed, mask (rows, cols, may be NULL) =
 * the kept residual entries. st may be NULL. Errors: BB_ERR_ARG (k out of range, shapes, tau_rel < 0). */
bb_status bb_scaffold_state(const bb_scaffold *sc, const float *w, int k, double tau_rel, bb_lora *lora, float *resid,
                            bb_mask *mask, bb_scaffold_stats *st);
/* Plain loops in double (W_k summed entry by entry). */
bb_status bb_scaffold_state_ref(const bb_scaffold *sc, const float *w, int k, double tau_rel, bb_lora *lora,
                                float *resid, bb_mask *mask, bb_scaffold_stats *st);

/* α_k = 0.3 + 0.4 (k − 1)/(R − 1) (0.3 when R = 1): the seed's usage threshold of wave k. */
double bb_scaffold_alpha(int k, int R);
/* base[b] = 1 when s_b = usage[b] / max usage < alpha (the block drops to base precision), for n
 * blocks; all 0 when every usage is 0. */
void bb_scaffold_mark_base(const double *usage, int64_t n, double alpha, uint8_t *base);

/* Stop-loss: when new_loss > prev_loss · (1 + max_rise) (the seed: 0.03), halve *tau_rel and
 * return 1 (revert this wave's residual change); else return 0 and leave *tau_rel. A non-finite
 * new loss counts as a rise. */
int bb_scaffold_stoploss(double prev_loss, double new_loss, double max_rise, double *tau_rel);

#endif
