/* bundles.h — synergy bundles (Biophase Density Management): seeded k-means on per-block features, and which
 * bundle a wave stresses.
 *
 * Features are one row per block, e.g. (usage s_b, energy fraction of the top singular values, rank90 / min(rows,
 * cols)): any small fixed set the caller measures. Columns are standardized (zero mean, unit variance; constant
 * columns left at 0) unless told otherwise, so no feature dominates by its units.
 * k-means++ initialisation from the Philox stream "bundles.kmeans" of the seed (bb_rng): the first centre is
 * point floor(u·n), each next one is drawn with probability proportional to D(x)², the squared distance
 * to the nearest centre so far (inverse-CDF over the points in index order). Then Lloyd iterations until
 * no label changes or max_iter; a point goes to the nearest centre, ties to the lower bundle index; an
 * empty bundle keeps its centre. The result is a pure function of (features, k, seed): no thread or rank
 * dependence. Plain C throughout: the code is its own reference; the tests check it against known
 * clusters, the inertia against a brute-force recomputation and determinism.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_BUNDLES_H
#define BB_COMPRESS_BUNDLES_H

#include <stdint.h>

#include "core/status.h"
#include "io/config.h"

typedef struct {
    int iterations;  /* Lloyd iterations run */
    double inertia;  /* Σ squared distance of each point to its centre (standardized units) */
    int converged;   /* 1 when labels stopped changing before max_iter */
} bb_bundles_stats;

/* x (n, d) row-major; label (n) out; centroids (k, d) out in standardized units, or NULL.
 * Errors: BB_ERR_ARG (k outside [1, n], d < 1, max_iter < 1), BB_ERR_NUMERIC (a non-finite feature), BB_ERR_OOM. */
bb_status bb_bundles_kmeans(const double *x, int64_t n, int d, int k, uint64_t seed, int max_iter, int standardize,
                            int *label, double *centroids, bb_bundles_stats *st);

/* The bundle wave k (1-based) stresses: (k − 1) mod M when phased, else −1 (every bundle). */
int bb_bundles_wave_bundle(int k, int M, int phased);
/* 1 when a block of bundle `label` is active (may be stressed) in wave k. */
int bb_bundles_active(int label, int k, int M, int phased);

#endif
