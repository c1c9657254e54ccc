/* bench_quant.c — RTN encoding throughput (Q8_0, Q4_0) and GPTQ on a large layer (Q4_0 grid).
 *
 * usage: bench_quant [--rows R] [--cols C] [--rtn-elems N] [--reps K] [--no-gptq]
 * RTN: rows of C elements (default 4096), N elements in all (default 2^22), on one core, best of K
 * (default 3) runs, GB/s of f32 input per second of the thread's CPU time (per core, also on a
 * shared machine), plain and with an importance vector:
 *   full reference   qformat's encode_ref (66 candidate scales, scalar double)
 *   full             the vectorized full search (bb_quant_encode_row, full: the same bytes)
 *   fast reference   the fast search's plain-C twin (bb_quant_encoder_fast_ref)
 *   fast             the fast search (quant.search = fast; the default for unweighted RTN)
 * with each path's ratio to the full reference and fast's to its own reference, measured in this run. GPTQ: an R x C layer (default 4096 x 4096, W ~ N(0, 0.02^2),
 * H = X^T X / 4096 of AR(1)-correlated X), one run of bb_quant_gptq, with its two dominant parts
 * timed alone: the inverse factor (potrf, potri, potrf on C x C) and the block fits (the qformat
 * encoder over every block, which is an RTN pass with importance, on one thread). Threads: OpenBLAS's
 * (OPENBLAS_NUM_THREADS) for the factorizations and the trailing gemm; GPTQ's column loop runs its
 * rows on all cores.
 * Not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compress/quant.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/qformat.h"

int openblas_get_num_threads(void);

/* CPU time of this thread: "per core" even on a machine shared with other jobs, where wall time is not. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GB/s of f32 input through the unchecked encoder `enc` (rows of cols elements, one core, CPU time). */
static double rtn_rate(bb_qformat_encode_fn enc, int type, const float *x, int64_t cols, int64_t rows, const float *imp,
                       int reps) {
    size_t rb;
    bb_qformat_row_bytes(type, cols, &rb);
    uint8_t *dst = malloc(rb * (size_t)rows);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t = cpu_now();
        for (int64_t i = 0; i < rows; i++) enc(x + i * cols, imp, (size_t)cols, dst + (size_t)i * rb);
        t = cpu_now() - t;
        if (t < best) best = t;
    }
    free(dst);
    return (double)rows * (double)cols * sizeof(float) / best / 1e9;
}

int main(int argc, char **argv) {
    int64_t rows = 4096, cols = 4096, rtn_elems = 1 << 22;
    int reps = 3, gptq = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
            cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--rtn-elems") && i + 1 < argc)
            rtn_elems = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-gptq"))
            gptq = 0;
        else {
            fprintf(stderr, "usage: bench_quant [--rows R] [--cols C] [--rtn-elems N] [--reps K] [--no-gptq]\n");
            return 2;
        }
    }
    if (rows < 1 || cols < 32 || cols % 32 || rtn_elems < cols || reps < 1) {
        fprintf(stderr, "bench_quant: need rows >= 1, cols a positive multiple of 32, rtn-elems >= cols\n");
        return 2;
    }
    printf("bench_quant: %ld cores online, OpenBLAS %d threads\n", sysconf(_SC_NPROCESSORS_ONLN),
           openblas_get_num_threads());

    int64_t rrows = rtn_elems / cols;
    float *x = malloc(sizeof(float) * (size_t)(rrows * cols)), *imp = malloc(sizeof(float) * (size_t)cols);
    bb_rng_fill_normal(bb_rng_make(1, bb_rng_stream_id("bench_quant.rtn")), 0, (size_t)(rrows * cols), x);
    bb_rng_fill_uniform(bb_rng_make(1, bb_rng_stream_id("bench_quant.imp")), 0, (size_t)cols, 0.1f, 10.0f, imp);
    printf("\nRTN encoding, %lld rows x %lld, one core, best of %d (GB/s of f32 input per CPU-second)\n", (long long)rrows,
           (long long)cols, reps);
    const int types[] = {BB_GGML_Q8_0, BB_GGML_Q4_0};
    printf("  %-5s %-10s %12s %12s %12s %12s\n", "type", "weights", "full ref", "full", "fast ref", "fast");
    for (int t = 0; t < 2; t++)
        for (int wi = 0; wi < 2; wi++) {
            const float *w = wi ? imp : NULL;
            double ref = rtn_rate(bb_qformat_info(types[t])->encode_ref, types[t], x, cols, rrows, w, reps);
            double full = rtn_rate(bb_quant_encoder(types[t], BB_QUANT_SEARCH_FULL), types[t], x, cols, rrows, w, reps);
            double fref = rtn_rate(bb_quant_encoder_fast_ref(types[t]), types[t], x, cols, rrows, w, reps);
            double fast = rtn_rate(bb_quant_encoder(types[t], BB_QUANT_SEARCH_FAST), types[t], x, cols, rrows, w, reps);
            printf("  %-5s %-10s %8.4f GB/s %7.4f GB/s %7.4f GB/s %7.4f GB/s   full/ref %.1fx  fast/ref %.1fx  "
                   "fast/fast_ref %.1fx\n",
                   bb_ggml_type_name(types[t]), wi ? "importance" : "plain", ref, full, fref, fast, full / ref,
                   fast / ref, fast / fref);
            printf("RTN_GBPS %s %s fast %.4f full %.4f\n", bb_ggml_type_name(types[t]), wi ? "importance" : "plain",
                   fast, full);
        }
    free(x);
    if (!gptq) {
        free(imp);
        return 0;
    }

    const int64_t samples = 4096;
    float *w = malloc(sizeof(float) * (size_t)(rows * cols)), *h = malloc(sizeof(float) * (size_t)(cols * cols));
    float *xs = malloc(sizeof(float) * (size_t)(samples * cols)), *u = malloc(sizeof(float) * (size_t)(cols * cols));
    if (!w || !h || !xs || !u) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    bb_rng_fill_normal(bb_rng_make(1, bb_rng_stream_id("bench_quant.x")), 0, (size_t)(samples * cols), xs);
    for (int64_t s = 0; s < samples; s++)
        for (int64_t j = 1; j < cols; j++) xs[s * cols + j] += 0.6f * xs[s * cols + j - 1];
    const bb_linalg_backend *cpu;
    if (bb_linalg_backend_get("cpu", &cpu) != BB_OK) return 1;
    cpu->syrk(BB_UPLO_FULL, cols, samples, 1.0f / (float)samples, xs, cols, 0.0f, h, cols);
    free(xs);
    bb_rng_fill_normal(bb_rng_make(1, bb_rng_stream_id("bench_quant.w")), 0, (size_t)(rows * cols), w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] *= 0.02f;

    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.type = BB_GGML_Q4_0;
    bb_quant_input in = {"bench.layer", rows, cols, w, h, NULL, NULL};
    bb_quant_result *r = NULL;
    double t = bb_now();
    if (bb_quant_gptq(&o, &in, &r) != BB_OK) return 1;
    double t_gptq = bb_now() - t;

    /* The parts alone: the inverse factor, and the block fits (an RTN pass with importance = diag H). */
    memcpy(u, h, sizeof(float) * (size_t)(cols * cols));
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) mean += h[j * (cols + 1)] / (double)cols;
    for (int64_t j = 0; j < cols; j++) u[j * (cols + 1)] += (float)(0.01 * mean);
    t = bb_now();
    cpu->potrf(BB_UPLO_UPPER, cols, u, cols, NULL);
    cpu->potri(BB_UPLO_UPPER, cols, u, cols);
    cpu->potrf(BB_UPLO_UPPER, cols, u, cols, NULL);
    double t_chol = bb_now() - t;
    for (int64_t j = 0; j < cols; j++) imp[j] = h[j * (cols + 1)];
    bb_quant_result *rr = NULL;
    bb_quant_input rin = {"bench.layer", rows, cols, w, NULL, imp, NULL};
    t = bb_now();
    bb_quant_opts o1 = o;
    o1.threads = 1;
    if (bb_quant_rtn(&o1, &rin, &rr) != BB_OK) return 1;
    double t_fit = bb_now() - t;
    double e_g = 0, e_r = 0;
    bb_quant_layer_error(NULL, w, r->w_hat, h, rows, cols, &e_g);
    bb_quant_layer_error(NULL, w, rr->w_hat, h, rows, cols, &e_r);
    printf("\nGPTQ q4_0, %lld x %lld, block_size %lld, damp %g\n", (long long)rows, (long long)cols,
           (long long)o.block_size, o.damp);
    printf("  total %.3f s with %ld row threads   (alone: inverse factor %.3f s, block fits on one thread %.3f s)\n",
           t_gptq, sysconf(_SC_NPROCESSORS_ONLN), t_chol, t_fit);
    printf("  tr(EHE^T): gptq %.6g, rtn %.6g (ratio %.3f)\n", e_g, e_r, e_g / e_r);
    printf("GPTQ_SECONDS %.4f\n", t_gptq);
    bb_quant_result_destroy(&r);
    bb_quant_result_destroy(&rr);
    free(w);
    free(h);
    free(u);
    free(imp);
    return 0;
}
