/* bench_rsvd.c — randomized SVD (rank 256; oversample and power iterations as given, default 8 and 2) against LAPACKE sgesdd on the same
 * matrices.
 *
 * usage: bench_rsvd [--sizes MxN,...] [--rank K] [--no-ref]
 * Defaults: 4096x4096 and 4096x11008 (Llama-2-7B attention and MLP shapes).
 * Matrices are low rank plus noise: G1 (m, 512) diag(exp(-i/64)) G2 (512, n)
 * plus Gaussian noise at 1e-3 of the signal. Threads: OpenBLAS's
 * (OPENBLAS_NUM_THREADS). Not a test: it takes minutes at the default sizes. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/rng.h"
#include "linalg/rsvd.h"

/* A (m, n) row-major, low rank 512 with a decaying spectrum, plus noise. */
static bb_status make_matrix(int64_t m, int64_t n, float **out) {
    const int64_t r = 512;
    float *g1 = NULL, *g2 = NULL, *a = NULL;
    bb_status st = bb_malloc((void **)&g1, (size_t)(m * r) * sizeof *g1, "bench factor (m, 512)");
    if (st == BB_OK) st = bb_malloc((void **)&g2, (size_t)(r * n) * sizeof *g2, "bench factor (512, n)");
    if (st == BB_OK) st = bb_malloc((void **)&a, (size_t)(m * n) * sizeof *a, "bench matrix (m, n)");
    if (st != BB_OK) {
        free(g1);
        free(g2);
        return bb_trace(st, __FILE__, __LINE__, "bench buffers");
    }
    bb_rng rng = bb_rng_make(7, bb_rng_stream_id("bench_rsvd"));
    bb_rng_fill_normal(bb_rng_split(rng, 1), 0, (size_t)(m * r), g1);
    bb_rng_fill_normal(bb_rng_split(rng, 2), 0, (size_t)(r * n), g2);
    bb_rng_fill_normal(bb_rng_split(rng, 3), 0, (size_t)(m * n), a);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++) g1[i * r + j] *= (float)(exp(-(double)j / 64.0) / sqrt((double)n));
    for (int64_t i = 0; i < m * n; i++) a[i] *= (float)(1e-3 / sqrt((double)n));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)r, 1.0f, g1, (int)r, g2, (int)n, 1.0f,
                a, (int)n);
    free(g1);
    free(g2);
    *out = a;
    return BB_OK;
}

static bb_status bench_one(int64_t m, int64_t n, int rank, int p, int q, int ref) {
    float *a = NULL;
    BB_CALL(make_matrix(m, n, &a));
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    o.rank = rank;
    o.oversample = p;
    o.power_iters = q;
    o.want_u = o.want_v = 1;
    o.residual = 0;
    bb_rsvd_result r;
    BB_CALL(bb_rsvd_matrix("bench", m, n, a, &o, &r));
    double t_rsvd = r.seconds, f_rsvd = r.flops;
    /* the residual pass separately, so the timing above is the decomposition alone */
    bb_rsvd_result rr;
    o.residual = 1;
    o.want_u = o.want_v = 0;
    BB_CALL(bb_rsvd_matrix("bench", m, n, a, &o, &rr));
    printf("%5lld x %-6lld rsvd   k=%d p=%d q=%d: %8.3f s  %7.1f GFLOP/s  (with residual pass: %.3f s; residual %.6f, "
           "||U^TU-I|| %.1e, ||V^TV-I|| %.1e)\n",
           (long long)m, (long long)n, rank, p, q, t_rsvd, f_rsvd / t_rsvd * 1e-9, rr.seconds, rr.residual, rr.orth_u,
           rr.orth_v);
    fflush(stdout);
    if (ref) {
        int64_t mn = m < n ? m : n;
        float *s = malloc(sizeof(float) * (size_t)mn), *u = malloc(sizeof(float) * (size_t)(m * mn)),
              *vt = malloc(sizeof(float) * (size_t)(mn * n));
        BB_CHECK(s && u && vt, BB_ERR_OOM, "out of memory: sgesdd factors for (%lld, %lld)", (long long)m,
                 (long long)n);
        double t0 = bb_now();
        /* column-major A^T (n, m) = U' S V'^T: the row-major A without a transposed copy */
        int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'S', (int)n, (int)m, a, (int)n, s, vt, (int)n, u, (int)mn);
        double t_ref = bb_now() - t0;
        BB_CHECK(info == 0, BB_ERR_NUMERIC, "sgesdd returned %d", info);
        /* LAPACK's own flop count is not exposed: the usual estimate for a thin
         * SVD with vectors, 4 m n mn + 22 mn^3, is a yardstick, not a measurement. */
        double f_ref = 4.0 * (double)m * n * mn + 22.0 * (double)mn * mn * mn;
        double worst = 0, tail = 0, all = 0;
        for (int i = 0; i < rank; i++) worst = fmax(worst, fabs(r.s[i] - s[i]) / s[i]);
        for (int64_t i = 0; i < mn; i++) {
            all += (double)s[i] * s[i];
            if (i >= rank) tail += (double)s[i] * s[i];
        }
        printf("%5lld x %-6lld sgesdd (thin U, V):  %8.3f s  %7.1f GFLOP/s (nominal)  ratio sgesdd/rsvd %.1fx\n",
               (long long)m, (long long)n, t_ref, f_ref / t_ref * 1e-9, t_ref / t_rsvd);
        printf("%5lld x %-6lld accuracy: max relative error of sigma_1..%d %.2e; residual %.6f vs optimal %.6f\n",
               (long long)m, (long long)n, rank, worst, rr.residual, sqrt(tail / all));
        free(s);
        free(u);
        free(vt);
    }
    bb_rsvd_result_clear(&r);
    bb_rsvd_result_clear(&rr);
    free(a);
    return BB_OK;
}

int main(int argc, char **argv) {
    const char *sizes = "4096x4096,4096x11008";
    int rank = 256, ref = 1, over = 8, iters = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc)
            sizes = argv[++i];
        else if (!strcmp(argv[i], "--rank") && i + 1 < argc)
            rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--oversample") && i + 1 < argc)
            over = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--power-iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-ref"))
            ref = 0;
        else {
            fprintf(stderr, "usage: bench_rsvd [--sizes MxN,...] [--rank K] [--oversample P] [--power-iters Q] [--no-ref]\n");
            return 2;
        }
    }
    char cpu[256] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
                snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
                break;
            }
        fclose(f);
    }
    printf("bench_rsvd: %s, %ld cores online, OpenBLAS %d threads (%s)\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           openblas_get_num_threads(), openblas_get_config());
    for (const char *p = sizes; *p;) {
        long long m, n;
        int used;
        if (sscanf(p, "%lldx%lld%n", &m, &n, &used) != 2 || m <= 0 || n <= 0 || rank < 1 || rank > (m < n ? m : n)) {
            fprintf(stderr, "error: bad size '%s' or rank %d (sizes like 4096x11008, rank <= min(m, n))\n", p, rank);
            return 2;
        }
        if (bench_one(m, n, rank, over, iters, ref) != BB_OK) return 1;
        p += used;
        if (*p == ',') p++;
    }
    return 0;
}
