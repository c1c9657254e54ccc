/* rigl.h — RigL density redistribution in the layer reconstruction loss: regrow pruned weights with the largest
 * |∂L/∂w|, drop as many of the weakest kept ones, keep the density.
 *
 * Loss L = tr(E' H E'ᵀ), E' = W − Ŵ − A·B (compress/heal.h); ∂L/∂Ŵ = −2 E'·H =: −2 G. One step:
 *   1. per group (one output row with per_row, else the whole matrix) n = floor(fraction · kept);
 *   2. regrow candidates: the n pruned entries with the largest |G_ij| (H_jj > 0), ties to the lower
 *      flat index i·cols + j; drop candidates: the n kept entries with the smallest Wanda score
 *      |Ŵ_ij|·||x_j|| (||x_j|| = xnorm, or sqrt(H_jj) when NULL), ties to the lower index. The two
 *      sets are disjoint, so a just-regrown weight is never dropped;
 *   3. the pairs (k-th drop, k-th regrow) are applied in order: the drop sets Ŵ_d = 0 and the
 *      regrown weight gets the one-coordinate optimum Ŵ_g = G'_g / H_gg, G' the gradient after the
 *      drop. RigL itself starts regrown weights at 0; here the exact line minimum along that
 *      coordinate is taken, because a quadratic loss gives it for free and it is what makes a
 *      regrown weight useful before any healing step. The change of the pair is exact:
 *          Δ = 2 w_d G_d + w_d² H_dd  −  G'_g² / H_gg,
 *      and a pair with Δ >= 0 ends the group (the remaining pairs are the less promising ones).
 *      So the loss never rises, and density stays constant (one drop per regrow, per group).
 *      After each pair the affected rows of G are updated (O(cols) each).
 * Cost: one E'·H (2·rows·cols² flops) plus the sorts and O(cols) per swap. Memory: E' and G
 * (2·rows·cols floats) and the candidate lists, 2 × 16 bytes per entry of a group: per row that is
 * small, per matrix it is 32·rows·cols bytes (1.4 GB for 4096 × 11008).
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_RIGL_H
#define BB_COMPRESS_RIGL_H

#include <stdint.h>

#include "compress/lora.h"
#include "compress/mask.h"
#include "core/status.h"
#include "io/config.h"
#include "linalg/backend.h"

typedef struct {
    double fraction; /* rigl.fraction (0.05): at most this fraction of the kept weights moves */
    int per_row;     /* 1: constant density per output row; 0: per matrix */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
    int threads;     /* per_row: rows split over this many threads (<= 1: one); the result does not depend on it */
} bb_rigl_opts;

/* rigl.fraction, and per_row when prune.groups is "row" (the mask was chosen per row). */
void bb_rigl_opts_from_config(const bb_config *cfg, bb_rigl_opts *o);

typedef struct {
    int64_t swapped;        /* pairs applied: as many regrown as dropped */
    int64_t planned;        /* pairs the fraction allowed */
    double loss_before, loss_after;
} bb_rigl_stats;

/* One redistribution step on w_hat (rows, cols) (in place) and mask (same shape; in: current,
 * out: new). w (rows, cols) the dense weight, lora the layer's factors or NULL, h (cols, cols),
 * xnorm (cols) or NULL. Errors: BB_ERR_ARG (shapes, fraction outside [0, 1], a pruned entry of
 * w_hat that is not 0), BB_ERR_NUMERIC (non-finite input), BB_ERR_OOM. */
bb_status bb_rigl_step(const bb_rigl_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                       float *w_hat, const bb_lora *lora, const float *h, const float *xnorm, bb_mask *mask,
                       bb_rigl_stats *st);
/* Plain C in double: E'·H by loops, candidates by repeated selection, every pair's Δ measured as
 * the difference of the brute-force row losses. */
bb_status bb_rigl_step_ref(const bb_rigl_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                           float *w_hat, const bb_lora *lora, const float *h, const float *xnorm, bb_mask *mask,
                           bb_rigl_stats *st);

#endif
