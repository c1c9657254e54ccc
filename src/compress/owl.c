/* owl.c — OWL outlier ratios and per-layer sparsities. */
#include "compress/owl.h"

#include <math.h>

bb_status bb_owl_score_sum(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                           double *sum, int64_t *n) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: owl: bad shape (%lld, %lld)", name, (long long)rows,
             (long long)cols);
    double s = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) s += (double)(fabsf(w[i * cols + j]) * xnorm[j]);
    BB_CHECK(isfinite(s), BB_ERR_NUMERIC, "%s: owl: the sum of Wanda scores is %g (non-finite weights or norms)", name,
             s);
    *sum = s;
    *n = rows * cols;
    return BB_OK;
}

bb_status bb_owl_count_above(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                             double thresh, int64_t *count) {
    BB_CHECK(rows >= 0 && cols >= 0 && isfinite(thresh), BB_ERR_ARG, "%s: owl: bad shape (%lld, %lld) or threshold %g",
             name, (long long)rows, (long long)cols, thresh);
    int64_t c = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) c += (double)(fabsf(w[i * cols + j]) * xnorm[j]) > thresh;
    *count = c;
    return BB_OK;
}

bb_status bb_owl_ratios(int n_layers, const double *d, double target, double lambda, double *s) {
    BB_CHECK(target >= 0 && target < 1 && lambda >= 0 && isfinite(lambda), BB_ERR_ARG,
             "owl: prune.target %g must be in [0, 1) and prune.owl_lambda %g >= 0", target, lambda);
    double lo = INFINITY, hi = -INFINITY;
    for (int l = 0; l < n_layers; l++) {
        BB_CHECK(d[l] >= 0 && d[l] <= 1, BB_ERR_ARG, "owl: outlier ratio of layer %d is %g, not in [0, 1]", l, d[l]);
        lo = d[l] < lo ? d[l] : lo;
        hi = d[l] > hi ? d[l] : hi;
    }
    if (n_layers <= 0) return BB_OK;
    if (!(hi > lo) || lambda == 0) {
        for (int l = 0; l < n_layers; l++) s[l] = target;
        return BB_OK;
    }
    /* deviations of the min-max scaled ratios from their mean; more outliers, lower sparsity */
    double mean = 0;
    for (int l = 0; l < n_layers; l++) mean += 2 * lambda * (d[l] - lo) / (hi - lo);
    mean /= n_layers;
    double shrink = 1;
    for (int l = 0; l < n_layers; l++) {
        double dev = -(2 * lambda * (d[l] - lo) / (hi - lo) - mean);
        double room = dev > 0 ? fmin(lambda, 1 - 1e-6 - target) : fmin(lambda, target);
        if (fabs(dev) > room) shrink = fmin(shrink, room / fabs(dev));
    }
    for (int l = 0; l < n_layers; l++) s[l] = target - shrink * (2 * lambda * (d[l] - lo) / (hi - lo) - mean);
    return BB_OK;
}
