/* test_bundles.c — synergy bundles: known clusters recovered, determinism, inertia recomputed by brute force,
 * degenerate inputs, the phased schedule by hand. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/bundles.h"
#include "core/rng.h"
#include "test.h"

/* 3 clusters of 10 points around (0,0), (10,0), (0,10) with spread 0.5, interleaved in index order. */
static void clusters(double *x) {
    const double cx[3] = {0, 10, 0}, cy[3] = {0, 0, 10};
    for (int i = 0; i < 30; i++) {
        x[i * 2] = cx[i % 3] + 0.5 * bb_rng_normal(bb_rng_make(4, 0), (uint64_t)(2 * i));
        x[i * 2 + 1] = cy[i % 3] + 0.5 * bb_rng_normal(bb_rng_make(4, 0), (uint64_t)(2 * i + 1));
    }
}

static void test_known_clusters(void) {
    double x[60];
    clusters(x);
    for (int standardize = 0; standardize < 2; standardize++)
        for (uint64_t seed = 0; seed < 5; seed++) {
            int lab[30];
            bb_bundles_stats st;
            EXPECT_OK(bb_bundles_kmeans(x, 30, 2, 3, seed, 100, standardize, lab, NULL, &st));
            int ok = 1;
            for (int i = 0; i < 30; i++) {
                ok &= lab[i] == lab[i % 3];
                ok &= lab[i] >= 0 && lab[i] < 3;
            }
            ok &= lab[0] != lab[1] && lab[1] != lab[2] && lab[0] != lab[2];
            EXPECT(ok, "seed %llu standardize %d: the three clusters are the bundles", (unsigned long long)seed,
                   standardize);
            EXPECT(st.converged && st.iterations >= 1, "converged in %d", st.iterations);
        }
}

static void test_deterministic_and_inertia(void) {
    enum { N = 50, D = 3, K = 4 };
    double x[N * D], c[K * D];
    bb_rng r = bb_rng_make(8, 1);
    for (int i = 0; i < N * D; i++) x[i] = bb_rng_uniform(r, (uint64_t)i) * (1 + i % D);
    int l1[N], l2[N];
    bb_bundles_stats s1, s2;
    EXPECT_OK(bb_bundles_kmeans(x, N, D, K, 42, 100, 0, l1, c, &s1));
    EXPECT_OK(bb_bundles_kmeans(x, N, D, K, 42, 100, 0, l2, NULL, &s2));
    EXPECT(memcmp(l1, l2, sizeof l1) == 0 && s1.inertia == s2.inertia, "same seed, same bundles");
    /* brute force: inertia from the returned centres, every point at its nearest centre, centres = means */
    double inert = 0;
    int near_ok = 1, mean_ok = 1;
    for (int i = 0; i < N; i++) {
        double best = INFINITY;
        int arg = -1;
        for (int j = 0; j < K; j++) {
            double s = 0;
            for (int t = 0; t < D; t++) s += (x[i * D + t] - c[j * D + t]) * (x[i * D + t] - c[j * D + t]);
            if (s < best) best = s, arg = j;
            if (j == l1[i]) inert += s;
        }
        near_ok &= arg == l1[i];
    }
    for (int j = 0; j < K; j++)
        for (int t = 0; t < D; t++) {
            double m = 0;
            int cnt = 0;
            for (int i = 0; i < N; i++)
                if (l1[i] == j) m += x[i * D + t], cnt++;
            if (cnt) mean_ok &= fabs(m / cnt - c[j * D + t]) < 1e-12;
        }
    EXPECT(near_ok && mean_ok && s1.converged, "a Lloyd fixed point: nearest %d means %d", near_ok, mean_ok);
    EXPECT(fabs(inert - s1.inertia) <= 1e-12 * inert, "inertia %.15g vs %.15g", s1.inertia, inert);
    /* k = n: every block its own bundle */
    int l3[N];
    EXPECT_OK(bb_bundles_kmeans(x, N, D, N, 1, 10, 1, l3, NULL, &s1));
    int seen[N] = {0}, distinct = 1;
    for (int i = 0; i < N; i++) distinct &= !seen[l3[i]]++;
    EXPECT(distinct && s1.inertia == 0, "k = n: distinct %d inertia %g", distinct, s1.inertia);
    /* all points equal: no crash, inertia 0 */
    double same[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int l4[6];
    EXPECT_OK(bb_bundles_kmeans(same, 6, 2, 3, 0, 10, 1, l4, NULL, &s1));
    EXPECT(s1.inertia == 0, "duplicates: inertia %g", s1.inertia);
    EXPECT_ERR(bb_bundles_kmeans(x, N, D, N + 1, 0, 10, 1, l3, NULL, NULL), BB_ERR_ARG, "bundles.count");
    x[7] = NAN;
    EXPECT_ERR(bb_bundles_kmeans(x, N, D, 2, 0, 10, 1, l3, NULL, NULL), BB_ERR_NUMERIC, "feature 1 of block 2");
}

static void test_schedule(void) {
    EXPECT(bb_bundles_wave_bundle(1, 4, 1) == 0 && bb_bundles_wave_bundle(4, 4, 1) == 3, "waves 1, 4");
    EXPECT(bb_bundles_wave_bundle(5, 4, 1) == 0 && bb_bundles_wave_bundle(6, 4, 1) == 1, "wraps");
    EXPECT(bb_bundles_wave_bundle(3, 4, 0) == -1, "not phased: all");
    EXPECT(bb_bundles_active(2, 3, 4, 1) && !bb_bundles_active(1, 3, 4, 1) && bb_bundles_active(1, 3, 4, 0),
           "active");
}

int main(void) {
    TEST_RUN(test_known_clusters);
    TEST_RUN(test_deterministic_and_inertia);
    TEST_RUN(test_schedule);
    return TEST_DONE();
}
