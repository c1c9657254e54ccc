/* bench_gpu.c — times the CUDA backend's steps on Llama-2-70B layer shapes (the table of issue 9) and the
 * device's ceilings, with CUDA events; median of the repeats; random normal data (never zeros).
 *
 *   bench_gpu OUT.json [quick]
 *
 * Writes one JSON object: the ceilings (fp32/tf32/bf16 gemm 8192^3, device copy), then per step the
 * seconds, the achieved TFLOP/s or GB/s and the accuracy figures. "quick" runs small shapes only (a
 * smoke run of the script). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "cuda/check.h"
#include "cuda/gptq_cuda.h"
#include "cuda/linalg_cuda.h"
#include "cuda/prune_cuda.h"

#define DIE(expr)                                                                    \
    do {                                                                             \
        bb_status s_ = (expr);                                                       \
        if (s_ != BB_OK) {                                                           \
            fprintf(stderr, "bench_gpu: %s failed: %s\n", #expr, bb_last_error());   \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)
#define CK(expr) DIE(((expr) == cudaSuccess) ? BB_OK : bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, #expr))

static FILE *js;
static int first = 1;
static void emit(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void emit(const char *key, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(js, "%s\n \"%s\": ", first ? "{" : ",", key);
    vfprintf(js, fmt, ap);
    va_end(ap);
    first = 0;
    fflush(js);
}

static cudaEvent_t e0, e1;
static void tic(void) { cudaEventRecord(e0, 0); }
static double toc(void) {
    float ms = 0;
    cudaEventRecord(e1, 0);
    cudaEventSynchronize(e1);
    cudaEventElapsedTime(&ms, e0, e1);
    return ms / 1e3;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmpd);
    return t[n / 2];
}

static float *dalloc(int64_t n, const char *what) {
    float *p;
    DIE(bb_cuda_malloc((void **)&p, (size_t)n * sizeof(float), what));
    return p;
}

static double rel_diff(const float *da, const float *db, int64_t n) {
    float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
    cudaMemcpy(a, da, (size_t)n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(b, db, (size_t)n * 4, cudaMemcpyDeviceToHost);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    free(a), free(b);
    return sqrt(num / den);
}

static void ceilings(bb_cuda_ctx *c, int quick) {
    const int64_t n = quick ? 2048 : 8192;
    float *a = dalloc(n * n, "A"), *b = dalloc(n * n, "B"), *cm = dalloc(n * n, "C");
    DIE(bb_cuda_fill_normal(a, n * n, 1, 1));
    DIE(bb_cuda_fill_normal(b, n * n, 2, 1));
    for (int m = 0; m < 3; m++) {
        double t[5];
        DIE(bb_cuda_gemm(c, m, BB_OP_N, BB_OP_N, n, n, n, 1, a, n, b, n, 0, cm, n));
        for (int r = 0; r < 5; r++) {
            tic();
            DIE(bb_cuda_gemm(c, m, BB_OP_N, BB_OP_N, n, n, n, 1, a, n, b, n, 0, cm, n));
            t[r] = toc();
        }
        double s = median(t, 5);
        char key[64];
        snprintf(key, sizeof key, "ceiling_%s_gemm_tflops", bb_cuda_math_name(m));
        emit(key, "%.1f", 2.0 * n * n * n / s / 1e12);
        printf("%-28s %8.1f TFLOP/s\n", key, 2.0 * n * n * n / s / 1e12);
    }
    cudaFree(a), cudaFree(b), cudaFree(cm);
    const int64_t nb = quick ? (1 << 26) : (1 << 30);
    float *x = dalloc(nb, "copy src"), *y = dalloc(nb, "copy dst");
    DIE(bb_cuda_fill_normal(x, nb, 3, 1));
    double t[5];
    CK(cudaMemcpy(y, x, (size_t)nb * 4, cudaMemcpyDeviceToDevice));
    for (int r = 0; r < 5; r++) {
        tic();
        CK(cudaMemcpy(y, x, (size_t)nb * 4, cudaMemcpyDeviceToDevice));
        t[r] = toc();
    }
    double s = median(t, 5);
    emit("ceiling_copy_TBps", "%.3f", 2.0 * nb * 4 / s / 1e12);
    printf("%-28s %8.3f TB/s\n", "ceiling_copy", 2.0 * nb * 4 / s / 1e12);
    cudaFree(x), cudaFree(y);
}

/* Gram of ntok tokens in chunks of 8192 (as the PyTorch reference), n features. */
static void gram(bb_cuda_ctx *c, int quick) {
    const int64_t n = quick ? 4096 : 28672, chunk = quick ? 2048 : 8192, ntok = quick ? 8192 : 262144;
    float *x = dalloc(chunk * n, "X"), *g = dalloc(n * n, "G"), *g32 = dalloc(n * n, "G fp32");
    DIE(bb_cuda_fill_normal(x, chunk * n, 4, 1));
    /* accuracy of one chunk against fp32 */
    DIE(bb_cuda_gram(c, BB_CUDA_FP32, n, chunk, x, n, 0, g32, n));
    for (int m = 1; m < 3; m++) {
        DIE(bb_cuda_gram(c, m, n, chunk, x, n, 0, g, n));
        double acc = rel_diff(g, g32, n * n);
        double t[3];
        for (int r = 0; r < 3; r++) {
            tic();
            for (int64_t k = 0; k < ntok; k += chunk)
                DIE(bb_cuda_gram_upper(c, m, n, chunk, x, n, k ? 1.0f : 0.0f, g, n));
            DIE(bb_cuda_mirror_upper(g, n, n));
            t[r] = toc();
        }
        double s = median(t, 3), full = 2.0 * n * n * ntok;
        char key[64];
        snprintf(key, sizeof key, "gram_%s", bb_cuda_math_name(m));
        emit(key, "{\"n\": %lld, \"tokens\": %lld, \"s\": %.4f, \"tflops_full_equiv\": %.1f, \"rel_err_vs_fp32\": %.3g}",
             (long long)n, (long long)ntok, s, full / s / 1e12, acc);
        printf("%-28s %8.4f s  %6.1f TFLOP/s (full-product equivalent)  rel err vs fp32 %.2g\n", key, s,
               full / s / 1e12, acc);
    }
    cudaFree(x), cudaFree(g), cudaFree(g32);
}

static void rsvd(bb_cuda_ctx *c, int quick) {
    const int64_t m = quick ? 4096 : 28672, n = quick ? 2048 : 8192;
    const int k = 256, p = 8, q = 2;
    float *a = dalloc(m * n, "A"), s32[256], s[256];
    DIE(bb_cuda_fill_normal(a, m * n, 5, 0.02f));
    DIE(bb_cuda_rsvd(c, BB_CUDA_FP32, m, n, a, n, k, p, q, 7, s32, NULL, NULL));
    for (int mth = 0; mth < 2; mth++) {
        double t[5];
        DIE(bb_cuda_rsvd(c, mth, m, n, a, n, k, p, q, 7, s, NULL, NULL));
        for (int r = 0; r < 5; r++) {
            tic();
            DIE(bb_cuda_rsvd(c, mth, m, n, a, n, k, p, q, 7, s, NULL, NULL));
            t[r] = toc();
        }
        double num = 0, den = 0;
        for (int i = 0; i < k; i++) num += (s[i] - s32[i]) * (double)(s[i] - s32[i]), den += (double)s32[i] * s32[i];
        double sec = median(t, 5), fl = 2.0 * m * n * (k + p) * (2 * q + 2);
        char key[64];
        snprintf(key, sizeof key, "rsvd_k256_%s", bb_cuda_math_name(mth));
        emit(key, "{\"m\": %lld, \"n\": %lld, \"s\": %.4f, \"gemm_tflops\": %.1f, \"sigma_rel_vs_fp32\": %.3g}",
             (long long)m, (long long)n, sec, fl / sec / 1e12, sqrt(num / den));
        printf("%-28s %8.4f s  %6.1f TFLOP/s in its products  sigma vs fp32 %.2g\n", key, sec, fl / sec / 1e12,
               sqrt(num / den));
    }
    cudaFree(a);
}

static void wanda(int quick) {
    const int64_t rows = quick ? 4096 : 28672, cols = 8192, wpr = cols / 64;
    float *w = dalloc(rows * cols, "W"), *w0 = dalloc(rows * cols, "W0"), *xn = dalloc(cols, "xnorm");
    uint64_t *mask;
    DIE(bb_cuda_malloc((void **)&mask, (size_t)(rows * wpr) * 8, "mask"));
    DIE(bb_cuda_fill_normal(w0, rows * cols, 6, 0.02f));
    DIE(bb_cuda_fill_normal(xn, cols, 8, 1)); /* |.| taken below: norms must be >= 0 */
    float *h = malloc(cols * 4);
    cudaMemcpy(h, xn, cols * 4, cudaMemcpyDeviceToHost);
    for (int64_t j = 0; j < cols; j++) h[j] = fabsf(h[j]) + 0.1f;
    cudaMemcpy(xn, h, cols * 4, cudaMemcpyHostToDevice);
    free(h);
    double t[7];
    for (int r = 0; r < 7; r++) {
        CK(cudaMemcpy(w, w0, (size_t)(rows * cols) * 4, cudaMemcpyDeviceToDevice));
        CK(cudaMemset(mask, 0xff, (size_t)(rows * wpr) * 8));
        tic();
        DIE(bb_cuda_wanda(rows, cols, 0.5, w, xn, mask));
        t[r] = toc();
    }
    double s = median(t, 7), bytes = rows * cols * 4.0 * 1.5 + rows * wpr * 16.0;
    emit("wanda50", "{\"rows\": %lld, \"cols\": %lld, \"s\": %.5f, \"GBps\": %.0f}", (long long)rows, (long long)cols,
         s, bytes / s / 1e9);
    printf("%-28s %8.5f s  %6.0f GB/s (W read once, half written, mask)\n", "wanda50", s, bytes / s / 1e9);
    cudaFree(w), cudaFree(w0), cudaFree(xn), cudaFree(mask);
}

static void gptq(bb_cuda_ctx *c, int64_t rows, int64_t cols, const char *name) {
    const int64_t tok = 8192;
    float *x = dalloc(tok * cols, "X"), *h = dalloc(cols * cols, "H"), *w = dalloc(rows * cols, "W"),
          *w0 = dalloc(rows * cols, "W0"), *params = dalloc(rows * (cols / 128) * 2, "params");
    uint8_t *codes;
    DIE(bb_cuda_malloc((void **)&codes, (size_t)(rows * cols), "codes"));
    DIE(bb_cuda_fill_normal(x, tok * cols, 9, 1));
    DIE(bb_cuda_gram(c, BB_CUDA_FP32, cols, tok, x, cols, 0, h, cols));
    cudaFree(x);
    DIE(bb_cuda_fill_normal(w0, rows * cols, 10, 0.02f));
    for (int grid = 0; grid < 2; grid++)
        for (int trail = 0; trail < 2; trail++) {
            bb_cuda_gptq_opts o;
            bb_cuda_gptq_opts_default(&o);
            o.grid = grid;
            o.trail = trail ? BB_CUDA_TF32 : BB_CUDA_FP32;
            double t[3];
            const int reps = 3;
            for (int r = -1; r < reps; r++) {
                CK(cudaMemcpy(w, w0, (size_t)(rows * cols) * 4, cudaMemcpyDeviceToDevice));
                tic();
                DIE(bb_cuda_gptq(c, &o, name, rows, cols, w, h, codes, params, NULL));
                double s = toc();
                if (r >= 0) t[r] = s;
            }
            /* the parts: the factorization alone (one Cholesky: the path bb_cuda_gptq takes) */
            float *u = dalloc(cols * cols, "U");
            double tf[3];
            for (int r = 0; r < 3; r++) {
                tic();
                DIE(bb_cuda_factor_inverse_of_u(c, name, h, cols, 0.01, 10, u, NULL));
                tf[r] = toc();
            }
            cudaFree(u);
            double s = median(t, reps), sf = median(tf, 3);
            double fl_factor = 1.0 * cols * cols * cols / 3, fl_trail = (double)rows * cols * cols;
            char key[96];
            snprintf(key, sizeof key, "gptq4_%s_%s_trail_%s", grid ? "g128" : "q4_0", name, trail ? "tf32" : "fp32");
            emit(key,
                 "{\"rows\": %lld, \"cols\": %lld, \"s\": %.4f, \"cholesky_s\": %.4f, \"cholesky_tflops\": %.1f, "
                 "\"loop_and_trailing_s\": %.4f, \"trailing_tflops_if_all_gemm\": %.1f}",
                 (long long)rows, (long long)cols, s, sf, fl_factor / sf / 1e12, s - sf, fl_trail / (s - sf) / 1e12);
            printf("%-40s %7.4f s (Cholesky %.4f s = %.1f TFLOP/s; the rest %.4f s)\n", key, s, sf,
                   fl_factor / sf / 1e12, s - sf);
        }
    /* SparseGPT 50 % on the same layer */
    uint64_t *mask;
    DIE(bb_cuda_malloc((void **)&mask, (size_t)(rows * cols / 64) * 8, "mask"));
    for (int trail = 0; trail < 2; trail++) {
        double t[3];
        for (int r = -1; r < 3; r++) {
            CK(cudaMemcpy(w, w0, (size_t)(rows * cols) * 4, cudaMemcpyDeviceToDevice));
            CK(cudaMemset(mask, 0xff, (size_t)(rows * cols / 64) * 8));
            tic();
            DIE(bb_cuda_sparsegpt(c, name, rows, cols, 0.5, 0.01, 10, trail ? BB_CUDA_TF32 : BB_CUDA_FP32, w, h, mask,
                                  NULL));
            double s = toc();
            if (r >= 0) t[r] = s;
        }
        double s = median(t, 3);
        char key[96];
        snprintf(key, sizeof key, "sparsegpt50_%s_trail_%s", name, trail ? "tf32" : "fp32");
        emit(key, "{\"rows\": %lld, \"cols\": %lld, \"s\": %.4f}", (long long)rows, (long long)cols, s);
        printf("%-40s %7.4f s\n", key, s);
    }
    cudaFree(mask);
    cudaFree(h), cudaFree(w), cudaFree(w0), cudaFree(params), cudaFree(codes);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_gpu OUT.json [quick]\n");
        return 2;
    }
    const int quick = argc > 2 && strcmp(argv[2], "quick") == 0;
    if (bb_cuda_device_count() == 0) {
        fprintf(stderr, "bench_gpu: no GPU visible\n");
        return 77;
    }
    int dev;
    DIE(bb_cuda_bind(0, &dev));
    char desc[256];
    DIE(bb_cuda_describe(dev, desc, sizeof desc));
    js = fopen(argv[1], "w");
    if (!js) {
        perror(argv[1]);
        return 1;
    }
    printf("device: %s\n", desc);
    emit("device", "\"%s\"", desc);
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    bb_cuda_ctx *c = NULL;
    DIE(bb_cuda_ctx_create(&c));
    ceilings(c, quick);
    wanda(quick);
    rsvd(c, quick);
    if (quick) {
        gptq(c, 1024, 2048, "small");
    } else {
        gptq(c, 8192, 8192, "q_proj");
        gptq(c, 8192, 28672, "down_proj");
    }
    gram(c, quick);
    fprintf(js, "\n}\n");
    fclose(js);
    bb_cuda_ctx_destroy(&c);
    return 0;
}
