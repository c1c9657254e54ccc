/* owl.h — outlier-weighted layer-wise sparsity (OWL, Yin et al. 2023): per-layer pruning ratios from outlier counts.
 *
 * A layer l (one transformer block: all of its pruned linear weights together)
 * has the Wanda scores A_ij = |W_ij| ||X_j|| of all its matrices. Its outlier
 * ratio is D_l = #{A_ij > M * mean(A over the layer)} / #A, M = prune.owl_m.
 * Layers with more outliers are pruned less:
 *     s_l = target - (D'_l - mean D'),  D'_l = 2 lambda (D_l - min D) / (max D - min D)
 * (the OWL code's min-max scaling, lambda = prune.owl_lambda), so the ratios
 * average exactly to the target. If a deviation would leave
 * [target - lambda, target + lambda] (skewed D) or [0, 1), all deviations are
 * shrunk by one common factor, which keeps the mean and the ordering.
 *
 * The mean and the count span several matrices, possibly on several ranks, so
 * they come in pieces the pipeline sums (integer counts: exact in any order):
 *   pass 1  bb_owl_score_sum for every matrix of the layer -> sum, n -> mean;
 *   pass 2  bb_owl_count_above(M * mean) for every matrix -> count -> D_l = count / n;
 *   then    bb_owl_ratios over all layers' D.
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_OWL_H
#define BB_COMPRESS_OWL_H

#include <stdint.h>

#include "core/status.h"

/* Sum (in double) and number of the Wanda scores of one matrix: w (rows, cols)
 * row-major, xnorm (cols). Errors: BB_ERR_NUMERIC naming the tensor for a
 * non-finite sum. */
bb_status bb_owl_score_sum(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                           double *sum, int64_t *n);

/* How many Wanda scores of one matrix exceed thresh (= M * the layer's mean score). */
bb_status bb_owl_count_above(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                             double thresh, int64_t *count);

/* Per-layer sparsities s (n_layers) from outlier ratios d (n_layers) in [0, 1].
 * Errors: BB_ERR_ARG for target outside [0, 1), lambda < 0 or a ratio outside [0, 1]. */
bb_status bb_owl_ratios(int n_layers, const double *d, double target, double lambda, double *s);

#endif
