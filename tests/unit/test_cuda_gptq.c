/* test_cuda_gptq.c — GPTQ on the GPU against compress/gptq.c and the plain-C G128 reference.
 *
 *   one batch, same inverse factor: the kernel's Q4_0 blocks and Ŵ equal bb_quant_gptq's byte for byte
 *     (the column loop and qformat's scale search are the same arithmetic);
 *   whole matrix (cuSOLVER factor, cuBLAS trailing gemm; 1024 and 160 columns, the second with a short
 *     last batch on the explicit-U path): decode(blocks) == Ŵ exactly; at least 97 % of
 *     the codes equal the cpu's; the layer error tr(E H E^T) within 2 % of the cpu's, and below RTN's;
 *   G128: against bb_cuda_gptq_g128_ref (no lazy batches, double updates) with the same factor: >= 98 %
 *     equal codes, layer error within 1 %, and below the RTN of the same grid; the whole path (batches on
 *     V = U^-1, no triangular inverse) within 99 % equal codes and 0.5 % layer error of the explicit one;
 *   errors: unsupported shapes and types, a Gram no damping fixes.
 * Skips (77) without CUDA or a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#include <stdint.h>

#include "compress/quant.h"
#include "cuda/check.h"
#include "cuda/gptq_cuda.h"
#include "io/qformat.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }

/* W (rows, cols) ~ 0.02 N(0,1); H = X^T X / k for X (k, cols) with correlated columns. */
static void make_layer(int64_t rows, int64_t cols, int64_t k, float **w, float **h) {
    *w = malloc(rows * cols * 4);
    *h = malloc(cols * cols * 4);
    for (int64_t i = 0; i < rows * cols; i++) (*w)[i] = 0.02f * nrand();
    float *x = malloc(k * cols * 4);
    for (int64_t t = 0; t < k; t++) {
        float common = nrand();
        for (int64_t j = 0; j < cols; j++) x[t * cols + j] = nrand() + 0.5f * common * (float)(j % 7) / 7.0f;
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = i; j < cols; j++) {
            double s = 0;
            for (int64_t t = 0; t < k; t++) s += (double)x[t * cols + i] * x[t * cols + j];
            (*h)[i * cols + j] = (*h)[j * cols + i] = (float)(s / k);
        }
    free(x);
}

/* tr((W - Ŵ) H (W - Ŵ)^T), in double. */
static double layer_error(const float *w, const float *wh, const float *h, int64_t rows, int64_t cols) {
    double tot = 0;
    double *e = malloc(cols * sizeof(double));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) e[j] = (double)w[r * cols + j] - wh[r * cols + j];
        for (int64_t i = 0; i < cols; i++) {
            double s = 0;
            for (int64_t j = 0; j < cols; j++) s += h[i * cols + j] * e[j];
            tot += e[i] * s;
        }
    }
    free(e);
    return tot;
}

/* The cpu path's inverse factor (gptq.c inverse_factor_f32, no act-order, no dead inputs). */
static float *cpu_factor(const float *h, int64_t n, double damp) {
    float *u = malloc(n * n * 4);
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += h[j * (n + 1)] == 0 ? 1 : h[j * (n + 1)];
    mean /= (double)n;
    memcpy(u, h, n * n * 4);
    for (int64_t j = 0; j < n; j++) {
        if (u[j * (n + 1)] == 0) u[j * (n + 1)] = 1;
        u[j * (n + 1)] += (float)(damp * mean);
    }
    const bb_linalg_backend *cpu;
    bb_linalg_backend_get("cpu", &cpu);
    bb_linalg_inverse_cholesky_upper(cpu, u, n);
    return u;
}

static void test_one_batch_exact(void) {
    const int64_t rows = 64, cols = 128;
    for (int imp = 0; imp < 2; imp++) {
        float *w, *h;
        make_layer(rows, cols, 512, &w, &h);
        bb_quant_opts o;
        bb_quant_opts_default(&o);
        o.importance = imp;
        o.threads = 1;
        o.search = BB_QUANT_SEARCH_FULL; /* the GPU's column loop runs qformat's full scale search */
        bb_quant_input in = {"blk.0.attn_q.weight", rows, cols, w, h, NULL, NULL};
        bb_quant_result *cpu = NULL;
        EXPECT_OK(bb_quant_gptq(&o, &in, &cpu));
        if (!cpu) return;
        float *u = cpu_factor(h, cols, o.damp), *diag = malloc(cols * 4);
        for (int64_t j = 0; j < cols; j++) diag[j] = h[j * (cols + 1)];
        bb_cuda_ctx *c = NULL;
        EXPECT_OK(bb_cuda_ctx_create(&c));
        float *dw, *du, *dimp;
        uint8_t *dcodes;
        const int64_t cb = bb_cuda_gptq_code_bytes(BB_CUDA_GRID_Q4_0, rows, cols);
        EXPECT(cb == (int64_t)cpu->row_bytes * rows, "code bytes %lld vs %zu", (long long)cb, cpu->row_bytes * rows);
        EXPECT_OK(bb_cuda_malloc((void **)&dw, rows * cols * 4, "W"));
        EXPECT_OK(bb_cuda_malloc((void **)&du, cols * cols * 4, "U"));
        EXPECT_OK(bb_cuda_malloc((void **)&dimp, cols * 4, "imp"));
        EXPECT_OK(bb_cuda_malloc((void **)&dcodes, cb, "codes"));
        cudaMemset(dcodes, 0xAB, cb);
        cudaMemcpy(dw, w, rows * cols * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(du, u, cols * cols * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dimp, diag, cols * 4, cudaMemcpyHostToDevice);
        bb_cuda_gptq_opts go;
        bb_cuda_gptq_opts_default(&go);
        EXPECT_OK(bb_cuda_gptq_factored(c, &go, rows, cols, dw, du, imp ? dimp : NULL, dcodes, NULL));
        uint8_t *codes = malloc(cb);
        float *wh = malloc(rows * cols * 4);
        cudaMemcpy(codes, dcodes, cb, cudaMemcpyDeviceToHost);
        cudaMemcpy(wh, dw, rows * cols * 4, cudaMemcpyDeviceToHost);
        int64_t diff = 0, wdiff = 0;
        for (int64_t i = 0; i < cb; i++) diff += codes[i] != cpu->blocks[i];
        for (int64_t i = 0; i < rows * cols; i++) wdiff += memcmp(&wh[i], &cpu->w_hat[i], 4) != 0;
        EXPECT(diff == 0, "importance %d: %lld of %lld block bytes differ from bb_quant_gptq's", imp, (long long)diff,
               (long long)cb);
        EXPECT(wdiff == 0, "importance %d: %lld of Ŵ's values differ from bb_quant_gptq's", imp, (long long)wdiff);
        cudaFree(dw), cudaFree(du), cudaFree(dimp), cudaFree(dcodes);
        bb_cuda_ctx_destroy(&c);
        bb_quant_result_destroy(&cpu);
        free(w), free(h), free(u), free(diag), free(codes), free(wh);
    }
}

static void whole_q4_0(int64_t rows, int64_t cols) {
    float *w, *h;
    make_layer(rows, cols, 2048, &w, &h);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = {"blk.1.ffn_down.weight", rows, cols, w, h, NULL, NULL};
    bb_quant_result *cpu = NULL, *gpu = NULL, *rtn = NULL;
    EXPECT_OK(bb_quant_gptq(&o, &in, &cpu));
    EXPECT_OK(bb_cuda_quant_gptq(&o, &in, &gpu));
    EXPECT_OK(bb_quant_rtn(&o, &in, &rtn));
    if (!cpu || !gpu || !rtn) return;
    float *dec = malloc(rows * cols * 4);
    int64_t bad = 0;
    for (int64_t r = 0; r < rows; r++)
        EXPECT_OK(bb_qformat_decode_row(BB_GGML_Q4_0, gpu->blocks + r * gpu->row_bytes, cols, dec + r * cols));
    for (int64_t i = 0; i < rows * cols; i++) bad += memcmp(&dec[i], &gpu->w_hat[i], 4) != 0;
    EXPECT(bad == 0, "%lld values of Ŵ differ from what the GPU's blocks decode to", (long long)bad);
    int64_t same = 0;
    for (int64_t i = 0; i < rows * cols; i++) same += gpu->w_hat[i] == cpu->w_hat[i];
    double agree = (double)same / (rows * cols);
    double eg = layer_error(w, gpu->w_hat, h, rows, cols), ec = layer_error(w, cpu->w_hat, h, rows, cols),
           er = layer_error(w, rtn->w_hat, h, rows, cols);
    printf("q4_0 %lldx%lld: %.2f%% values equal to the cpu's; layer error gpu %.5g cpu %.5g rtn %.5g\n",
           (long long)rows, (long long)cols, 100 * agree, eg, ec, er);
    EXPECT(agree >= 0.97, "only %.2f%% of the values equal the cpu's (tol 97%%)", 100 * agree);
    EXPECT(fabs(eg - ec) <= 0.02 * ec, "layer error %g vs cpu %g (tol 2%%)", eg, ec);
    EXPECT(eg < er, "GPTQ's error %g is not below RTN's %g", eg, er);
    EXPECT(gpu->damp == 0.01, "damping %g", gpu->damp);
    bb_quant_result_destroy(&cpu);
    bb_quant_result_destroy(&gpu);
    bb_quant_result_destroy(&rtn);
    free(w), free(h), free(dec);
}

/* 1024 columns: the path on V = U^-1; 160 (not a multiple of 128): the explicit-U path with a 32-column
 * last batch. */
static void test_whole_q4_0(void) {
    whole_q4_0(96, 1024);
    whole_q4_0(40, 160);
}

static void test_g128(void) {
    const int64_t rows = 64, cols = 512, ng = cols / 128;
    float *w, *h;
    make_layer(rows, cols, 1024, &w, &h);
    bb_cuda_ctx *c = NULL;
    EXPECT_OK(bb_cuda_ctx_create(&c));
    float *dw, *dh, *du, *dp;
    uint8_t *dcodes;
    EXPECT_OK(bb_cuda_malloc((void **)&dw, rows * cols * 4, "W"));
    EXPECT_OK(bb_cuda_malloc((void **)&dh, cols * cols * 4, "H"));
    EXPECT_OK(bb_cuda_malloc((void **)&du, cols * cols * 4, "U"));
    EXPECT_OK(bb_cuda_malloc((void **)&dp, rows * ng * 2 * 4, "params"));
    EXPECT_OK(bb_cuda_malloc((void **)&dcodes, rows * cols, "codes"));
    cudaMemcpy(dw, w, rows * cols * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dh, h, cols * cols * 4, cudaMemcpyHostToDevice);
    EXPECT_OK(bb_cuda_inverse_factor(c, "g128", dh, cols, 0.01, 10, du, NULL));
    bb_cuda_gptq_opts go;
    bb_cuda_gptq_opts_default(&go);
    go.grid = BB_CUDA_GRID_G128;
    EXPECT_OK(bb_cuda_gptq_factored(c, &go, rows, cols, dw, du, NULL, dcodes, dp));
    float *u = malloc(cols * cols * 4), *wg = malloc(rows * cols * 4), *wr = malloc(rows * cols * 4);
    float *pg = malloc(rows * ng * 8), *pr = malloc(rows * ng * 8), *wrtn = malloc(rows * cols * 4);
    uint8_t *cg = malloc(rows * cols), *cr = malloc(rows * cols);
    cudaMemcpy(u, du, cols * cols * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(wg, dw, rows * cols * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(cg, dcodes, rows * cols, cudaMemcpyDeviceToHost);
    cudaMemcpy(pg, dp, rows * ng * 8, cudaMemcpyDeviceToHost);
    memcpy(wr, w, rows * cols * 4);
    EXPECT_OK(bb_cuda_gptq_g128_ref(rows, cols, wr, u, cr, pr));
    /* RTN on the same grid: each group's min-max scale from the original weights, nearest codes */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            float mn = 0, mx = 0;
            for (int64_t j = g * 128; j < g * 128 + 128; j++) {
                mn = fminf(mn, w[r * cols + j]);
                mx = fmaxf(mx, w[r * cols + j]);
            }
            float sc = (mx - mn) / 15.0f, z;
            if (sc == 0) sc = 1;
            z = rintf(-mn / sc);
            for (int64_t j = g * 128; j < g * 128 + 128; j++) {
                float q = fminf(fmaxf(rintf(w[r * cols + j] / sc) + z, 0), 15);
                wrtn[r * cols + j] = sc * (q - z);
            }
        }
    int64_t same = 0, consistent = 0;
    for (int64_t i = 0; i < rows * cols; i++) {
        same += cg[i] == cr[i];
        const float *p = pg + (i / cols * ng + i % cols / 128) * 2;
        consistent += cg[i] <= 15 && wg[i] == p[0] * ((float)cg[i] - p[1]);
    }
    double agree = (double)same / (rows * cols);
    double eg = layer_error(w, wg, h, rows, cols), er = layer_error(w, wr, h, rows, cols),
           en = layer_error(w, wrtn, h, rows, cols);
    printf("g128 %lldx%lld: %.2f%% codes equal to the reference's; layer error gpu %.5g ref %.5g rtn %.5g\n",
           (long long)rows, (long long)cols, 100 * agree, eg, er, en);
    EXPECT(consistent == rows * cols, "%lld values of Ŵ are not scale * (code - zero)",
           (long long)(rows * cols - consistent));
    EXPECT(agree >= 0.98, "only %.2f%% of the codes equal the reference's (tol 98%%)", 100 * agree);
    EXPECT(fabs(eg - er) <= 0.01 * er, "layer error %g vs reference %g (tol 1%%)", eg, er);
    EXPECT(eg < en, "GPTQ's error %g is not below RTN's %g", eg, en);
    /* the whole path (one Cholesky, the batches on V = U^-1) against the explicit-U path above */
    cudaMemcpy(dw, w, rows * cols * 4, cudaMemcpyHostToDevice);
    double used = 0;
    EXPECT_OK(bb_cuda_gptq(c, &go, "g128", rows, cols, dw, dh, dcodes, dp, &used));
    float *wv = malloc(rows * cols * 4);
    uint8_t *cv = malloc(rows * cols);
    cudaMemcpy(wv, dw, rows * cols * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(cv, dcodes, rows * cols, cudaMemcpyDeviceToHost);
    int64_t samev = 0;
    for (int64_t i = 0; i < rows * cols; i++) samev += cv[i] == cg[i];
    double ev = layer_error(w, wv, h, rows, cols);
    printf("g128 on V = U^-1: %.2f%% codes equal to the explicit-U path; layer error %.5g\n",
           100.0 * samev / (rows * cols), ev);
    EXPECT((double)samev / (rows * cols) >= 0.99, "V path: only %.2f%% codes equal (tol 99%%)",
           100.0 * samev / (rows * cols));
    EXPECT(fabs(ev - eg) <= 0.005 * eg, "V path layer error %g vs %g (tol 0.5%%)", ev, eg);
    EXPECT(used == 0.01, "damping used %g", used);
    free(wv), free(cv);
    /* errors */
    EXPECT_ERR(bb_cuda_gptq_factored(c, &go, rows, 200, dw, du, NULL, dcodes, dp), BB_ERR_ARG, "multiple of 128");
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.type = BB_GGML_Q4_K;
    bb_quant_input in = {"blk.2.attn_k.weight", rows, cols, w, h, NULL, NULL};
    bb_quant_result *res = NULL;
    EXPECT_ERR(bb_cuda_quant_gptq(&o, &in, &res), BB_ERR_UNSUPPORTED, "cpu path");
    /* a layer whose inverse factor cannot fit: out of memory with the size and the fix */
    EXPECT_ERR(bb_cuda_gptq(c, &go, "blk.9.ffn_down.weight", 1, (int64_t)1 << 22, dw, dh, dcodes, dp, NULL), BB_ERR_OOM,
               "GPTQ inverse factor (cols^2 f32) needs 70368744177664 bytes");
    cudaFree(dw), cudaFree(dh), cudaFree(du), cudaFree(dp), cudaFree(dcodes);
    bb_cuda_ctx_destroy(&c);
    free(w), free(h), free(u), free(wg), free(wr), free(pg), free(pr), free(wrtn), free(cg), free(cr);
}

int main(void) {
    if (bb_cuda_device_count() == 0) {
        printf("skipped: no GPU visible\n");
        return 77;
    }
    int dev;
    EXPECT_OK(bb_cuda_bind(0, &dev));
    TEST_RUN(test_one_batch_exact);
    TEST_RUN(test_whole_q4_0);
    TEST_RUN(test_g128);
    return TEST_DONE();
}
#endif
