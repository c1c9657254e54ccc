/* bench_gram.c — Gram accumulation rate of the calibration collector against this machine's OpenBLAS sgemm rate.
 *
 * usage: bench_gram [--tokens K] [--calls N] [--no-down] [--f64]
 * Measures a 2048x2048x2048 sgemm (best of 3, 2 m n k flops), then for a
 * Llama-2-7B-shaped layer (synthetic:llama2-7b, generator-backed, one layer)
 * the Gram accumulation of K tokens per call (default 2048) on the 4096-wide
 * attention input, raw cblas_ssyrk and through bb_calib_feed (which adds the
 * finiteness check and the per-channel sums), and one call on the 11008-wide
 * ffn_down input. syrk flops are counted as n^2 k. Each row: one untimed
 * warm-up call (it also faults in the zeroed Gram), then N timed calls (default
 * 3; 1 for 11008), best and mean. Threads: OpenBLAS's (OPENBLAS_NUM_THREADS).
 * Not a test. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "model/calib.h"

int openblas_get_num_threads(void);
char *openblas_get_config(void);

typedef struct {
    const char *what;
    double gflop, best, mean; /* GFLOP per call, seconds */
} row;

static double sgemm_seconds(int n, int reps, double *mean) {
    size_t nn = (size_t)n * n;
    float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return -1;
    }
    bb_rng g = bb_rng_make(1, bb_rng_stream_id("bench_gram.sgemm"));
    bb_rng_fill_normal(g, 0, nn, a);
    bb_rng_fill_normal(g, nn, nn, b);
    double best = 1e30, sum = 0;
    for (int r = 0; r <= reps; r++) {
        double t = bb_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t = bb_now() - t;
        if (r == 0) continue; /* warm-up: thread start, page faults */
        sum += t;
        if (t < best) best = t;
    }
    *mean = sum / reps;
    free(a);
    free(b);
    free(c);
    return best;
}

/* Raw ssyrk of x (k, n) into the upper triangle of h (n, n). */
static void raw_syrk(const float *x, int n, int k, float *h) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1.0f, x, n, 1.0f, h, n);
}

static bb_status time_feed(bb_calib *c, bb_linear_kind kind, const float *x, int k, int n, int calls, row *r) {
    double best = 1e30, sum = 0;
    for (int i = 0; i <= calls; i++) {
        double t = bb_now();
        BB_CALL(bb_calib_feed(c, 0, kind, x, k, n));
        t = bb_now() - t;
        if (i == 0) continue;
        sum += t;
        if (t < best) best = t;
    }
    r->gflop = (double)n * n * k * 1e-9;
    r->best = best;
    r->mean = sum / calls;
    return BB_OK;
}

static bb_status run(int k, int calls, int down, int f64) {
    row rows[8];
    int nr = 0;
    double mean;
    double t = sgemm_seconds(2048, 3, &mean);
    BB_CHECK(t > 0, BB_ERR_OOM, "out of memory for the sgemm matrices");
    rows[nr++] = (row){"sgemm 2048x2048x2048", 2.0 * 2048.0 * 2048.0 * 2048.0 * 1e-9, t, mean};
    double sgemm_rate = rows[0].gflop / t;

    bb_model *m = NULL;
    BB_CALL(bb_model_open("synthetic:llama2-7b,layers=1", &m));
    int dim = m->cfg.dim, hid = m->cfg.hidden_dim;
    int64_t width = down ? hid : dim;
    float *x = NULL, *h = NULL;
    bb_calib *c = NULL;
    bb_status st = bb_malloc((void **)&x, sizeof(float) * (size_t)k * (size_t)width, "bench activations");
    if (st == BB_OK) st = bb_calloc((void **)&h, (size_t)dim * dim, sizeof(float), "bench raw Gram");
    if (st == BB_OK) {
        bb_rng g = bb_rng_make(2, bb_rng_stream_id("bench_gram.x"));
        bb_rng_fill_normal(g, 0, (size_t)k * (size_t)width, x);
        double best = 1e30, sum = 0;
        for (int i = 0; i <= calls; i++) {
            double t0 = bb_now();
            raw_syrk(x, dim, k, h);
            t0 = bb_now() - t0;
            if (i == 0) continue;
            sum += t0;
            if (t0 < best) best = t0;
        }
        rows[nr++] = (row){"cblas_ssyrk n=4096 (raw)", (double)dim * dim * k * 1e-9, best, sum / calls};
        free(h);
        h = NULL;
        bb_calib_opts o;
        bb_calib_opts_default(&o);
        o.precision = f64 ? BB_CALIB_F64 : BB_CALIB_F32;
        st = bb_calib_create(m, &o, &c);
    }
    static char what[3][64];
    if (st == BB_OK) {
        snprintf(what[0], sizeof what[0], "bb_calib_feed attn_in n=%d %s", dim, f64 ? "f64" : "f32");
        rows[nr].what = what[0];
        st = time_feed(c, BB_LIN_Q, x, k, dim, calls, &rows[nr]);
        if (st == BB_OK) nr++;
    }
    if (st == BB_OK && down) {
        snprintf(what[1], sizeof what[1], "bb_calib_feed ffn_down_in n=%d %s", hid, f64 ? "f64" : "f32");
        rows[nr].what = what[1];
        st = time_feed(c, BB_LIN_DOWN, x, k, hid, 1, &rows[nr]);
        if (st == BB_OK) nr++;
    }
    bb_calib_destroy(&c);
    free(x);
    bb_model_destroy(&m);
    BB_CALL(st);

    printf("\nGram accumulation vs sgemm (%d tokens per call; threads %d; %s)\n", k, openblas_get_num_threads(),
           openblas_get_config());
    printf("%-38s %10s %10s %10s %10s %9s\n", "kernel", "GFLOP", "best s", "mean s", "GFLOP/s", "of sgemm");
    for (int i = 0; i < nr; i++) {
        double rate = rows[i].gflop / rows[i].best;
        printf("%-38s %10.2f %10.4f %10.4f %10.2f %8.1f%%\n", rows[i].what, rows[i].gflop, rows[i].best, rows[i].mean,
               rate, 100.0 * rate / sgemm_rate);
    }
    printf("(syrk flops counted as n^2 k, sgemm as 2 m n k; GFLOP/s from the best call)\n");
    return BB_OK;
}

int main(int argc, char **argv) {
    int k = 2048, calls = 3, down = 1, f64 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-down"))
            down = 0;
        else if (!strcmp(argv[i], "--f64"))
            f64 = 1;
        else {
            fprintf(stderr, "usage: %s [--tokens K] [--calls N] [--no-down] [--f64]\n", argv[0]);
            return 2;
        }
    }
    if (k < 1 || calls < 1) {
        fprintf(stderr, "--tokens and --calls must be >= 1\n");
        return 2;
    }
    bb_log_init_from_env();
    return run(k, calls, down, f64) == BB_OK ? 0 : 1;
}
