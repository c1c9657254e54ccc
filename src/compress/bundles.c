/* bundles.c — standardized k-means++ / Lloyd clustering of blocks and the phased bundle schedule. */
#include "compress/bundles.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

static double dist2(const double *a, const double *b, int d) {
    double s = 0;
    for (int t = 0; t < d; t++) s += (a[t] - b[t]) * (a[t] - b[t]);
    return s;
}

/* nearest centre, ties to the lower index */
static int nearest(const double *p, const double *c, int k, int d, double *best) {
    int arg = 0;
    *best = dist2(p, c, d);
    for (int j = 1; j < k; j++) {
        double v = dist2(p, c + (int64_t)j * d, d);
        if (v < *best) {
            *best = v;
            arg = j;
        }
    }
    return arg;
}

bb_status bb_bundles_kmeans(const double *x, int64_t n, int d, int k, uint64_t seed, int max_iter, int standardize,
                            int *label, double *centroids, bb_bundles_stats *st) {
    BB_CHECK(x && label && n >= 1 && d >= 1, BB_ERR_ARG, "bundles: %lld blocks with %d features; need at least one",
             (long long)n, d);
    BB_CHECK(k >= 1 && k <= n, BB_ERR_ARG, "bundles: %d bundles for %lld blocks; bundles.count must be in 1..%lld", k,
             (long long)n, (long long)n);
    BB_CHECK(max_iter >= 1, BB_ERR_ARG, "bundles: max_iter %d must be >= 1", max_iter);
    for (int64_t i = 0; i < n * d; i++)
        BB_CHECK(isfinite(x[i]), BB_ERR_NUMERIC, "bundles: feature %d of block %lld is %g", (int)(i % d),
                 (long long)(i / d), x[i]);
    double *z = NULL, *c = NULL, *dd = NULL, *sum = NULL;
    int64_t *cnt = NULL;
    bb_status stt = BB_OK;
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&z, sizeof(double) * (size_t)(n * d), "bundles: features"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&c, sizeof(double) * (size_t)(k * d), "bundles: centres"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&dd, sizeof(double) * (size_t)n, "bundles: distances"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&sum, sizeof(double) * (size_t)(k * d), "bundles: sums"));
    BB_CALL_GOTO(stt, out, bb_malloc((void **)&cnt, sizeof(int64_t) * (size_t)k, "bundles: counts"));
    memcpy(z, x, sizeof(double) * (size_t)(n * d));
    if (standardize)
        for (int t = 0; t < d; t++) {
            double mu = 0, var = 0;
            for (int64_t i = 0; i < n; i++) mu += z[i * d + t];
            mu /= (double)n;
            for (int64_t i = 0; i < n; i++) var += (z[i * d + t] - mu) * (z[i * d + t] - mu);
            double sd = sqrt(var / (double)n);
            for (int64_t i = 0; i < n; i++) z[i * d + t] = sd > 0 ? (z[i * d + t] - mu) / sd : 0;
        }
    /* k-means++ */
    bb_rng rng = bb_rng_make(seed, bb_rng_stream_id("bundles.kmeans"));
    int64_t first = (int64_t)(bb_rng_uniform(rng, 0) * (double)n);
    if (first >= n) first = n - 1;
    memcpy(c, z + first * d, sizeof(double) * (size_t)d);
    for (int64_t i = 0; i < n; i++) dd[i] = dist2(z + i * d, c, d);
    for (int j = 1; j < k; j++) {
        double tot = 0;
        for (int64_t i = 0; i < n; i++) tot += dd[i];
        int64_t pick = -1;
        if (tot > 0) {
            double u = bb_rng_uniform(rng, (uint64_t)j) * tot, acc = 0;
            for (int64_t i = 0; i < n; i++) {
                acc += dd[i];
                if (dd[i] > 0 && u < acc) {
                    pick = i;
                    break;
                }
            }
            if (pick < 0) /* rounding at the top end: the last point with weight */
                for (int64_t i = n - 1; i >= 0 && pick < 0; i--)
                    if (dd[i] > 0) pick = i;
        } else {
            pick = j; /* every point sits on a centre: duplicates, take them in order */
        }
        memcpy(c + (int64_t)j * d, z + pick * d, sizeof(double) * (size_t)d);
        for (int64_t i = 0; i < n; i++) {
            double v = dist2(z + i * d, c + (int64_t)j * d, d);
            if (v < dd[i]) dd[i] = v;
        }
    }
    /* Lloyd */
    bb_bundles_stats s = {0, 0, 0};
    for (int64_t i = 0; i < n; i++) label[i] = -1;
    for (int it = 0; it < max_iter; it++) {
        int changed = 0;
        for (int64_t i = 0; i < n; i++) {
            double b;
            int l = nearest(z + i * d, c, k, d, &b);
            changed += l != label[i];
            label[i] = l;
        }
        s.iterations = it + 1;
        if (!changed) {
            s.converged = 1;
            break;
        }
        memset(sum, 0, sizeof(double) * (size_t)(k * d));
        memset(cnt, 0, sizeof(int64_t) * (size_t)k);
        for (int64_t i = 0; i < n; i++) {
            cnt[label[i]]++;
            for (int t = 0; t < d; t++) sum[(int64_t)label[i] * d + t] += z[i * d + t];
        }
        for (int j = 0; j < k; j++)
            if (cnt[j])
                for (int t = 0; t < d; t++) c[(int64_t)j * d + t] = sum[(int64_t)j * d + t] / (double)cnt[j];
    }
    for (int64_t i = 0; i < n; i++) s.inertia += dist2(z + i * d, c + (int64_t)label[i] * d, d);
    if (centroids) memcpy(centroids, c, sizeof(double) * (size_t)(k * d));
    if (st) *st = s;
out:
    free(z);
    free(c);
    free(dd);
    free(sum);
    free(cnt);
    return stt;
}

int bb_bundles_wave_bundle(int k, int M, int phased) {
    if (!phased || M < 1) return -1;
    int b = (k - 1) % M;
    return b < 0 ? b + M : b;
}

int bb_bundles_active(int label, int k, int M, int phased) {
    int b = bb_bundles_wave_bundle(k, M, phased);
    return b < 0 || b == label;
}
