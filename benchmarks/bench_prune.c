/* bench_prune.c — Wanda, magnitude and SparseGPT at 50 % (unstructured and 2:4) on one Llama-shaped layer.
 *
 * usage: bench_prune [--rows R] [--cols C] [--tokens T] [--sparsity S] [--threads N] [--reps K]
 * Default: the Llama-2-7B gate/up projection, W (11008 rows = out, 4096 cols = in),
 * H = X^T X from T = 2048 correlated tokens (AR(1) across channels, rho 0.7,
 * channel scales over one decade). Prints seconds per method (best of K runs,
 * default 1), the factorization of H alone, the lazy-update GEMM's share in
 * flops, and a line `RESULT key=value ...` that benchmarks/run_prune.sh reads.
 * Threads: OpenBLAS's (OPENBLAS_NUM_THREADS) for BLAS/LAPACK, --threads (0 =
 * all cores) for the row loops. Not a test: it takes tens of seconds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/prune.h"
#include "core/log.h"
#include "core/rng.h"

typedef struct {
    int64_t rows, cols, tokens;
    double sparsity;
    int threads, reps;
} bench_args;

static bb_status make_inputs(const bench_args *a, float *w, float *h) {
    const bb_linalg_backend *cpu;
    BB_CALL(bb_linalg_backend_get("cpu", &cpu));
    float *x = NULL, *scale = NULL;
    BB_CALL(bb_malloc((void **)&x, sizeof(float) * (size_t)(a->tokens * a->cols), "bench activations (T, cols)"));
    bb_status st = bb_malloc((void **)&scale, sizeof(float) * (size_t)a->cols, "bench scales");
    if (st != BB_OK) {
        free(x);
        return st;
    }
    bb_rng r = bb_rng_make(11, bb_rng_stream_id("bench_prune"));
    bb_rng_fill_normal(bb_rng_split(r, 1), 0, (size_t)(a->rows * a->cols), w);
    bb_rng_fill_normal(bb_rng_split(r, 2), 0, (size_t)(a->tokens * a->cols), x);
    bb_rng_fill_uniform(bb_rng_split(r, 3), 0, (size_t)a->cols, -0.5f, 0.5f, scale);
    const float rho = 0.7f, c = sqrtf(1 - rho * rho);
    for (int64_t t = 0; t < a->tokens; t++) {
        float *xt = x + t * a->cols;
        for (int64_t j = 1; j < a->cols; j++) xt[j] = rho * xt[j - 1] + c * xt[j];
        for (int64_t j = 0; j < a->cols; j++) xt[j] *= powf(10.0f, scale[j]);
    }
    double t0 = bb_now();
    st = cpu->syrk(BB_UPLO_FULL, a->cols, a->tokens, 1.0f, x, a->cols, 0.0f, h, a->cols);
    printf("H = X^T X (%lld x %lld, %lld tokens): %.3f s\n", (long long)a->cols, (long long)a->cols,
           (long long)a->tokens, bb_now() - t0);
    free(x);
    free(scale);
    return st;
}

/* The best of reps runs of method on fresh copies of w0; returns seconds. */
static bb_status time_method(const bench_args *a, const char *method, bb_prune_pattern pat, const float *w0,
                             const float *h, float *w, double *best) {
    const bb_pruner *p;
    BB_CALL(bb_pruner_get(method, &p));
    bb_prune_opts o;
    bb_prune_opts_default(&o);
    o.sparsity = a->sparsity;
    o.pattern = pat;
    o.threads = a->threads;
    *best = INFINITY;
    for (int r = 0; r < a->reps; r++) {
        memcpy(w, w0, sizeof(float) * (size_t)(a->rows * a->cols));
        bb_mask *m = NULL;
        BB_CALL(bb_mask_create(a->rows, a->cols, 1, &m));
        bb_prune_layer l = {"bench", a->rows, a->cols, w, h, NULL, m};
        bb_prune_stats st;
        double t0 = bb_now();
        bb_status s = p->apply(&o, &l, &st);
        double t = bb_now() - t0;
        bb_mask_destroy(&m);
        BB_CALL(s);
        if (t < *best) *best = t;
        printf("  %-10s %-12s %8.3f s  density %.4f  mask %.1f MiB\n", method, pat.m ? "2:4" : "unstructured", t,
               st.density, (double)st.mask_bytes / 1048576.0);
        fflush(stdout);
    }
    return BB_OK;
}

/* potrf + potri + potrf of the damped H: SparseGPT's factorization alone. */
static bb_status time_factor(const bench_args *a, const float *h, double *sec) {
    const bb_linalg_backend *cpu;
    BB_CALL(bb_linalg_backend_get("cpu", &cpu));
    int64_t n = a->cols;
    float *u = NULL;
    BB_CALL(bb_malloc((void **)&u, sizeof(float) * (size_t)(n * n), "bench factor"));
    memcpy(u, h, sizeof(float) * (size_t)(n * n));
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += h[j * n + j] / (double)n;
    for (int64_t j = 0; j < n; j++) u[j * n + j] += (float)(0.01 * mean);
    double t0 = bb_now();
    bb_status st = cpu->potrf(BB_UPLO_UPPER, n, u, n, NULL);
    if (st == BB_OK) st = cpu->potri(BB_UPLO_UPPER, n, u, n);
    if (st == BB_OK) st = cpu->potrf(BB_UPLO_UPPER, n, u, n, NULL);
    *sec = bb_now() - t0;
    free(u);
    return st;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){11008, 4096, 2048, 0.5, 0, 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows"))
            a->rows = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols"))
            a->cols = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens"))
            a->tokens = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--sparsity"))
            a->sparsity = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            a->threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            a->reps = atoi(argv[i + 1]);
        else
            return -1;
    }
    return (argc % 2 == 1 && a->rows > 0 && a->cols > 0 && a->tokens > 0 && a->reps > 0) ? 0 : -1;
}

int main(int argc, char **argv) {
    bench_args a;
    if (parse_args(argc, argv, &a)) {
        fprintf(stderr,
                "usage: bench_prune [--rows R] [--cols C] [--tokens T] [--sparsity S] [--threads N] [--reps K]\n");
        return 2;
    }
    float *w0 = malloc(sizeof(float) * (size_t)(a.rows * a.cols)),
          *w = malloc(sizeof(float) * (size_t)(a.rows * a.cols)),
          *h = malloc(sizeof(float) * (size_t)(a.cols * a.cols));
    if (!w0 || !w || !h) {
        fprintf(stderr, "error: out of memory for a (%lld, %lld) layer\n", (long long)a.rows, (long long)a.cols);
        return 1;
    }
    printf("layer W (%lld rows = out, %lld cols = in), sparsity %.2f, row threads %d (0 = all cores)\n",
           (long long)a.rows, (long long)a.cols, a.sparsity, a.threads);
    double t_w = 0, t_m = 0, t_s = 0, t_w24 = 0, t_s24 = 0, t_f = 0;
    bb_prune_pattern un = {0, 0}, nm = {2, 4};
    bb_status st = make_inputs(&a, w0, h);
    if (st == BB_OK) st = time_method(&a, "wanda", un, w0, h, w, &t_w);
    if (st == BB_OK) st = time_method(&a, "magnitude", un, w0, h, w, &t_m);
    if (st == BB_OK) st = time_method(&a, "wanda", nm, w0, h, w, &t_w24);
    if (st == BB_OK) st = time_factor(&a, h, &t_f);
    if (st == BB_OK) st = time_method(&a, "sparsegpt", un, w0, h, w, &t_s);
    if (st == BB_OK) st = time_method(&a, "sparsegpt", nm, w0, h, w, &t_s24);
    if (st == BB_OK) {
        /* lazy update: sum over blocks of 2 rows B (cols - block end) = rows cols (cols - B) flops */
        double gemm_flops = (double)a.rows * (double)a.cols * (double)(a.cols > 128 ? a.cols - 128 : 0);
        printf("sparsegpt: factorization of H alone %.3f s; lazy-update GEMM %.1f GFLOP (%.1f GFLOP/s over the whole "
               "run)\n",
               t_f, gemm_flops * 1e-9, gemm_flops * 1e-9 / t_s);
        printf("RESULT rows=%lld cols=%lld wanda_s=%.4f magnitude_s=%.4f wanda24_s=%.4f sparsegpt_s=%.4f "
               "sparsegpt24_s=%.4f factor_s=%.4f\n",
               (long long)a.rows, (long long)a.cols, t_w, t_m, t_w24, t_s, t_s24, t_f);
    }
    free(w0);
    free(w);
    free(h);
    return st == BB_OK ? 0 : 1;
}
