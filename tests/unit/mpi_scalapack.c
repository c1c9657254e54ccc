/* mpi_scalapack.c — ScaLAPACK process groups against single-rank LAPACK (run under mpiexec with 1-4 ranks).
 *
 * Every check runs collectively; rank 0 (the owner) compares:
 *   - inverse Cholesky factor of a random SPD Gram (n = 203: not a multiple of the block size 32) against
 *     bb_linalg_inverse_cholesky_upper on one rank: relative max difference < 1e-4 (f32 output, double inside);
 *   - an indefinite matrix: the damped version succeeds at a larger lambda than asked, and with a low
 *     damping limit fails with one clear error on every rank;
 *   - randomized SVD (k 12, p 8, q 2) of a 301 x 187 matrix with a decaying spectrum: singular values within
 *     1e-4 (relative) of the single-rank bb_rsvd_matrix with the same seed, and within 1e-3 of pdgesvd's
 *     top 12; U and V orthonormal to 1e-4;
 *   - a grid over 2 ranks of a larger communicator (the others idle) gives the same factor;
 *   - the dispatcher: under the memory cap (local LAPACK) and over it (ScaLAPACK) agree. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "linalg/backend.h"
#include "linalg/rsvd.h"
#include "mpi/scalapack.h"
#include "test.h"

static int rank, size;

static float *spd(int64_t n, uint64_t seed, double shift) {
    int64_t s = n + 17;
    float *x = malloc(sizeof(float) * (size_t)(s * n)), *h = malloc(sizeof(float) * (size_t)(n * n));
    bb_rng_fill_normal(bb_rng_make(seed, 0), 0, (size_t)(s * n), x);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double t = 0;
            for (int64_t r = 0; r < s; r++) t += (double)x[r * n + i] * x[r * n + j];
            h[i * n + j] = (float)(t / (double)s + (i == j ? shift : 0));
        }
    free(x);
    return h;
}

static double rel_max_diff(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}

static void test_cholesky(const bb_pgrid *g, const char *what) {
    const int64_t n = 203;
    float *h = spd(n, 11, 0.01), *ref = malloc(sizeof(float) * (size_t)(n * n));
    memcpy(ref, h, sizeof(float) * (size_t)(n * n));
    EXPECT_OK(bb_pchol_inverse_upper(g, n, h));
    if (rank == 0) {
        const bb_linalg_backend *be;
        bb_linalg_backend_get("cpu", &be);
        EXPECT_OK(bb_linalg_inverse_cholesky_upper(be, ref, n));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < i; j++) ref[i * n + j] = 0; /* only the upper triangle is the factor */
        double d = rel_max_diff(h, ref, n * n);
        printf("  %s: inverse Cholesky factor vs LAPACK: relative max difference %.3g\n", what, d);
        EXPECT(d < 1e-4, "%s: factor differs from LAPACK by %g", what, d);
    }
    free(h);
    free(ref);
}

static void test_indefinite(const bb_pgrid *g) {
    const int64_t n = 64;
    float *h = spd(n, 12, -0.5); /* eigenvalues pushed below 0 */
    float *keep = malloc(sizeof(float) * (size_t)(n * n));
    memcpy(keep, h, sizeof(float) * (size_t)(n * n));
    double used = -1;
    EXPECT_OK(bb_pchol_inverse_upper_damped(g, "blk.0.attn_q.weight", n, h, 0.01, 100, &used));
    if (rank == 0) EXPECT(used > 0.01, "indefinite matrix factored without raising the damping (%g)", used);
    memcpy(h, keep, sizeof(float) * (size_t)(n * n));
    int prev = bb_error_set_quiet(1);
    bb_status st = bb_pchol_inverse_upper_damped(g, "blk.0.attn_q.weight", n, h, 0.001, 0.01, &used);
    bb_error_set_quiet(prev);
    EXPECT(st == BB_ERR_NUMERIC, "rank %d: a matrix that damping cannot fix returned %d", rank, (int)st);
    if (rank == 0)
        EXPECT(strstr(bb_last_error(), "blk.0.attn_q.weight: H + lambda mean(diag H) I is not positive definite") !=
                   NULL,
               "message: %s", bb_last_error());
    free(h);
    free(keep);
}

static void test_rsvd(const bb_pgrid *g) {
    const int64_t m = 301, n = 187;
    const int k = 12;
    float *a = malloc(sizeof(float) * (size_t)(m * n));
    /* A = sum_i 0.8^i x_i y_i^T + noise */
    bb_rng_fill_normal(bb_rng_make(13, 0), 0, (size_t)(m * n), a);
    for (int64_t e = 0; e < m * n; e++) a[e] *= 1e-3f;
    float *x = malloc(sizeof(float) * (size_t)m), *y = malloc(sizeof(float) * (size_t)n);
    for (int r = 0; r < 40; r++) {
        bb_rng_fill_normal(bb_rng_make(14, (uint64_t)r), 0, (size_t)m, x);
        bb_rng_fill_normal(bb_rng_make(15, (uint64_t)r), 0, (size_t)n, y);
        float c = powf(0.8f, (float)r);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) a[i * n + j] += c * x[i] * y[j];
    }
    float s[12], *u = malloc(sizeof(float) * (size_t)(m * k)), *v = malloc(sizeof(float) * (size_t)(n * k));
    double *all = malloc(sizeof(double) * (size_t)n);
    EXPECT_OK(bb_prsvd(g, m, n, a, k, 8, 2, 77, s, rank == 0 ? u : NULL, rank == 0 ? v : NULL));
    EXPECT_OK(bb_pgesvd_values(g, m, n, a, all));
    if (rank == 0) {
        bb_rsvd_opts o;
        bb_rsvd_opts_default(&o);
        o.rank = k;
        o.oversample = 8;
        o.power_iters = 2;
        o.seed = 77;
        o.residual = 0;
        bb_rsvd_result res;
        EXPECT_OK(bb_rsvd_matrix("a", m, n, a, &o, &res));
        double d1 = 0, d2 = 0;
        for (int i = 0; i < k; i++) {
            d1 = fmax(d1, fabs((double)s[i] - res.s[i]) / res.s[0]);
            d2 = fmax(d2, fabs((double)s[i] - all[i]) / all[0]);
        }
        double ou = 0, ov = 0;
        for (int p = 0; p < k; p++)
            for (int q = 0; q < k; q++) {
                double tu = 0, tv = 0;
                for (int64_t i = 0; i < m; i++) tu += (double)u[i * k + p] * u[i * k + q];
                for (int64_t j = 0; j < n; j++) tv += (double)v[j * k + p] * v[j * k + q];
                ou = fmax(ou, fabs(tu - (p == q)));
                ov = fmax(ov, fabs(tv - (p == q)));
            }
        printf("  rsvd: vs single-rank %.3g, vs pdgesvd %.3g (relative to s1 = %.4g); orthogonality U %.2g V %.2g\n", d1,
               d2, (double)s[0], ou, ov);
        EXPECT(d1 < 1e-4, "distributed vs single-rank singular values differ by %g", d1);
        EXPECT(d2 < 1e-3, "distributed vs pdgesvd singular values differ by %g", d2);
        EXPECT(ou < 1e-4 && ov < 1e-4, "U or V not orthonormal (%g, %g)", ou, ov);
        bb_rsvd_result_clear(&res);
    }
    free(a);
    free(x);
    free(y);
    free(u);
    free(v);
    free(all);
}

static void test_dispatch(void) {
    const int64_t n = 150;
    float *h1 = spd(n, 16, 0.0), *h2 = malloc(sizeof(float) * (size_t)(n * n));
    memcpy(h2, h1, sizeof(float) * (size_t)(n * n));
    double u1 = 0, u2 = 0;
    EXPECT_OK(bb_inverse_cholesky_dist(MPI_COMM_WORLD, (int64_t)1 << 30, "local", n, h1, 0.01, 10, &u1));
    EXPECT_OK(bb_inverse_cholesky_dist(MPI_COMM_WORLD, 0, "grid", n, h2, 0.01, 10, &u2));
    if (rank == 0) {
        double d = rel_max_diff(h2, h1, n * n);
        printf("  dispatch: local vs ScaLAPACK relative max difference %.3g (damping %g, %g)\n", d, u1, u2);
        EXPECT(d < 1e-4 && u1 == u2, "dispatcher paths differ: %g (damping %g vs %g)", d, u1, u2);
    }
    free(h1);
    free(h2);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    bb_log_set_rank(rank, size);
    bb_pgrid g;
    EXPECT_OK(bb_pgrid_create(MPI_COMM_WORLD, 0, 32, &g));
    if (rank == 0) printf("%d ranks: %d x %d grid\n", size, g.nprow, g.npcol);
    test_cholesky(&g, "full grid");
    test_indefinite(&g);
    test_rsvd(&g);
    bb_pgrid_destroy(&g);
    bb_pgrid g2;
    EXPECT_OK(bb_pgrid_create(MPI_COMM_WORLD, 2, 32, &g2));
    EXPECT(g2.in_grid == (rank < (size < 2 ? size : 2)), "rank %d: in_grid %d", rank, g2.in_grid);
    test_cholesky(&g2, "grid of 2 ranks");
    bb_pgrid_destroy(&g2);
    test_dispatch();
    int failed = test_failures_, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("%s\n", any ? "FAILED" : "ok");
    return any ? 1 : 0;
}
