/* bench_gpu_model.c — a whole synthetic model compressed on one GPU, streamed block by block: the
 * issue-9 run (Llama-2-70B shapes, 128 x 2048 calibration tokens, 50 % SparseGPT + GPTQ 4-bit +
 * rank-64 healing), with the wall time of every stage.
 *
 *   bench_gpu_model [--model SPEC] [--seqs N] [--ctx T] [--micro B] [--blocks K] [--sparsity S]
 *                   [--rank R] [--math fp32|tf32|bf16] [--gram-math fp32|tf32|bf16] [--json OUT]
 *
 * SPEC is a synthetic preset's shape (default llama2-70b; `birdbone inspect synthetic:SPEC`); only its
 * shapes are used. K blocks are run (default: all). Per block, on the device:
 *   generate  the 7 weights: W = a G + a (U V) / 4 with G, U (out, 16), V (16, in) N(0, 1) from a
 *             counter hash (bb_cuda_fill_normal), a = sqrt(0.5 / in): half the energy in a rank-16
 *             part; norm gains 1. Nothing is read from disk and no block outlives its turn, so the
 *             GPU holds one block, the calibration stream and the Grams, never the model.
 *   calib     the dense block over all N sequences, micro-batch B sequences at a time
 *             (cuda/forward_cuda.h), accumulating the four input Grams (q/k/v, o, gate/up, down)
 *             with bb_cuda_gram_upper — the calibration statistics of the block;
 *   prune     SparseGPT at S of every weight (bb_cuda_sparsegpt, tf32 trailing products);
 *   quantize  GPTQ Q4_0 (GGUF blocks, bb_cuda_gptq) of the pruned weight, then the mask is applied
 *             again (the GPU GPTQ is not mask-aware yet: docs/cuda.md);
 *   heal      the data-aware rank-R correction of E = W - Ŵ: V = chol-factor with V Vᵀ = H + damping
 *             (bb_cuda_factor_inverse_of_u), M = E V, Q from the randomized SVD of M, A = M Q,
 *             B = Qᵀ V⁻¹ (trsm): tr((E - AB) H (E - AB)ᵀ) = |M|² - |MQ|² is the best rank-R fit;
 *             Ŵ + AB is the block's new weight;
 *   propagate the compressed block over the N sequences in place: the next block's calibration input
 *             (sequential calibration, as GPTQ and SparseGPT do).
 * The calibration stream starts as N(0, 1) hidden states (a random embedding). Reports per stage
 * seconds (synchronized wall clock), the forward's TFLOP/s, and the layer errors
 * tr(E H Eᵀ) / tr(W H Wᵀ) before and after healing (mean over the weights of each kind); a line per
 * block, then a summary, and the JSON (written after every block, so a killed run leaves its blocks). */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/status.h"
#include "cuda/check.h"
#include "cuda/forward_cuda.h"
#include "cuda/gptq_cuda.h"
#include "cuda/linalg_cuda.h"
#include "cuda/prune_cuda.h"
#include "io/model.h"

#define DIE(expr)                                                                            \
    do {                                                                                     \
        bb_status s_ = (expr);                                                               \
        if (s_ != BB_OK) {                                                                   \
            fprintf(stderr, "bench_gpu_model: %s failed: %s\n", #expr, bb_last_error());     \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)
#define CK(expr) DIE(BB_CUDA_STATUS(expr))

enum { ST_GEN, ST_CALIB, ST_PRUNE, ST_QUANT, ST_HEAL, ST_PROP, ST_COUNT };
static const char *st_name[ST_COUNT] = {"generate", "calib", "prune", "quantize", "heal", "propagate"};
static double st_s[ST_COUNT];

static double lap(double *t0) {
    cudaDeviceSynchronize();
    double t1 = bb_now(), d = t1 - *t0;
    *t0 = t1;
    return d;
}

static bb_cuda_math parse_math(const char *s) {
    if (!strcmp(s, "fp32")) return BB_CUDA_FP32;
    if (!strcmp(s, "tf32")) return BB_CUDA_TF32;
    if (!strcmp(s, "bf16")) return BB_CUDA_BF16;
    fprintf(stderr, "bench_gpu_model: math '%s' is not fp32, tf32 or bf16\n", s);
    exit(2);
}

typedef struct {
    bb_cuda_ctx *ctx;
    bb_cuda_math gram_math;
    float *h[4]; /* Grams: attn input (dim), o input (qd), mlp input (dim), down input (hidden) */
} gram_acc;

static int gram_slot(bb_linear_kind k) {
    return k == BB_LIN_Q ? 0 : k == BB_LIN_O ? 1 : k == BB_LIN_GATE ? 2 : k == BB_LIN_DOWN ? 3 : -1;
}

static bb_status gram_hook(void *ud, bb_linear_kind kind, const float *dx, int64_t rows, int64_t in) {
    gram_acc *g = ud;
    int s = gram_slot(kind);
    if (s < 0) return BB_OK; /* k, v and up share q's and gate's input */
    return bb_cuda_gram_upper(g->ctx, g->gram_math, in, rows, dx, in, 1.0f, g->h[s], in);
}

int main(int argc, char **argv) {
    const char *spec = "llama2-70b", *json = NULL;
    int seqs = 128, ctx_len = 2048, micro = 4, blocks = -1, rank = 64;
    double sparsity = 0.5;
    bb_cuda_math math = BB_CUDA_BF16, gram_math = BB_CUDA_TF32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_gpu_model: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model")) spec = v;
        else if (!strcmp(a, "--seqs")) seqs = atoi(v);
        else if (!strcmp(a, "--ctx")) ctx_len = atoi(v);
        else if (!strcmp(a, "--micro")) micro = atoi(v);
        else if (!strcmp(a, "--blocks")) blocks = atoi(v);
        else if (!strcmp(a, "--rank")) rank = atoi(v);
        else if (!strcmp(a, "--sparsity")) sparsity = atof(v);
        else if (!strcmp(a, "--math")) math = parse_math(v);
        else if (!strcmp(a, "--gram-math")) gram_math = parse_math(v);
        else if (!strcmp(a, "--json")) json = v;
        else {
            fprintf(stderr, "bench_gpu_model: unknown option %s (see the header of benchmarks/gpu/bench_gpu_model.c)\n", a);
            return 2;
        }
        i++;
    }
    if (seqs < 1 || micro < 1 || ctx_len < 1 || seqs % micro) {
        fprintf(stderr, "bench_gpu_model: --seqs must be a positive multiple of --micro\n");
        return 2;
    }
    char path[128];
    snprintf(path, sizeof path, "synthetic:%s", spec);
    bb_model *m = NULL;
    DIE(bb_model_open(path, &m)); /* shapes only: no tensor of it is read */
    bb_model_config c = m->cfg;
    if (c.max_seq_len < ctx_len) c.max_seq_len = ctx_len;
    int L = blocks < 0 || blocks > c.n_layers ? c.n_layers : blocks;
    int dim = c.dim, hid = c.hidden_dim, qd = c.n_heads * c.head_dim, kvd = c.n_kv_heads * c.head_dim;
    int64_t R = (int64_t)seqs * ctx_len, Rm = (int64_t)micro * ctx_len;

    int dev;
    DIE(bb_cuda_bind(0, &dev));
    char desc[256];
    DIE(bb_cuda_describe(dev, desc, sizeof desc));
    printf("device: %s\n", desc);
    printf("model: %s shapes (dim %d, hidden %d, %d heads / %d kv), %d of %d blocks; %d x %d calibration tokens, "
           "micro-batch %d; sparsity %.2f, GPTQ Q4_0, heal rank %d; forward %s, Gram %s\n",
           spec, dim, hid, c.n_heads, c.n_kv_heads, L, c.n_layers, seqs, ctx_len, micro, sparsity, rank,
           bb_cuda_math_name(math), bb_cuda_math_name(gram_math));
    fflush(stdout);

    bb_cuda_ctx *ctx = NULL;
    DIE(bb_cuda_ctx_create(&ctx));
    cublasHandle_t blas = (cublasHandle_t)bb_cuda_ctx_cublas(ctx);
    bb_cuda_fwd *fw = NULL;
    DIE(bb_cuda_fwd_create(ctx, &c, ctx_len, micro, math, &fw));

    /* The linear weights of a block: shapes and which Gram feeds each. */
    struct {
        const char *name;
        int rows, cols, gram;
    } lin[7] = {{"attn_q", qd, dim, 0},     {"attn_k", kvd, dim, 0}, {"attn_v", kvd, dim, 0},
                {"attn_output", dim, qd, 1}, {"ffn_gate", hid, dim, 2}, {"ffn_up", hid, dim, 2},
                {"ffn_down", dim, hid, 3}};
    int64_t big = 0, bigc = 0, bigr = 0, mwords = 0;
    for (int i = 0; i < 7; i++) {
        int64_t n = (int64_t)lin[i].rows * lin[i].cols, w = (int64_t)lin[i].rows * ((lin[i].cols + 63) / 64);
        if (n > big) big = n;
        if (w > mwords) mwords = w;
        if (lin[i].cols > bigc) bigc = lin[i].cols;
        if (lin[i].rows > bigr) bigr = lin[i].rows;
    }
    float *X = NULL, *W[7], *Wd = NULL, *E = NULL, *M = NULL, *V = NULL, *Q = NULL, *A = NULL, *Bm = NULL, *lr = NULL,
          *ones = NULL, *xm = NULL;
    uint64_t *mask = NULL;
    uint8_t *codes = NULL;
    gram_acc g = {ctx, gram_math, {NULL}};
    int gn[4] = {dim, qd, dim, hid};
    DIE(bb_cuda_malloc((void **)&X, (size_t)(R * dim) * 4, "calibration stream"));
    DIE(bb_cuda_malloc((void **)&xm, (size_t)(Rm * dim) * 4, "micro-batch"));
    for (int i = 0; i < 7; i++) DIE(bb_cuda_malloc((void **)&W[i], (size_t)lin[i].rows * lin[i].cols * 4, lin[i].name));
    for (int s = 0; s < 4; s++) DIE(bb_cuda_malloc((void **)&g.h[s], (size_t)gn[s] * gn[s] * 4, "Gram"));
    DIE(bb_cuda_malloc((void **)&Wd, (size_t)big * 4, "dense copy"));
    DIE(bb_cuda_malloc((void **)&E, (size_t)big * 4, "error"));
    DIE(bb_cuda_malloc((void **)&M, (size_t)big * 4, "whitened error"));
    DIE(bb_cuda_malloc((void **)&V, (size_t)bigc * bigc * 4, "factor"));
    DIE(bb_cuda_malloc((void **)&Q, (size_t)bigc * rank * 4, "Q"));
    DIE(bb_cuda_malloc((void **)&A, (size_t)bigr * rank * 4, "A"));
    DIE(bb_cuda_malloc((void **)&Bm, (size_t)bigc * rank * 4, "B"));
    DIE(bb_cuda_malloc((void **)&lr, (size_t)(bigr + bigc) * 16 * 4, "low-rank plant"));
    DIE(bb_cuda_malloc((void **)&ones, (size_t)dim * 4, "norm gains"));
    DIE(bb_cuda_malloc((void **)&mask, (size_t)mwords * 8, "mask"));
    DIE(bb_cuda_malloc((void **)&codes, (size_t)big / 32 * 18 + 64, "codes"));
    {
        float *h1 = malloc((size_t)dim * 4);
        for (int i = 0; i < dim; i++) h1[i] = 1.0f;
        CK(cudaMemcpy(ones, h1, (size_t)dim * 4, cudaMemcpyHostToDevice));
        free(h1);
    }
    float *sv = malloc((size_t)rank * 4);
    DIE(bb_cuda_fill_normal(X, R * dim, 0x5eed, 1.0f));
    bb_cuda_gptq_opts go;
    bb_cuda_gptq_opts_default(&go);
    go.trail = BB_CUDA_TF32;
    double err0[7] = {0}, err1[7] = {0}, sec_total = 0;
    FILE *js = NULL;
    double t_start = bb_now();
    for (int l = 0; l < L; l++) {
        double t0 = bb_now(), bs[ST_COUNT] = {0};
        /* generate */
        for (int i = 0; i < 7; i++) {
            int64_t rr = lin[i].rows, cc = lin[i].cols;
            float a = (float)sqrt(0.5 / cc);
            uint64_t seed = ((uint64_t)l << 8 | (uint64_t)i) * 0x9E3779B97F4A7C15ull + 1;
            DIE(bb_cuda_fill_normal(W[i], rr * cc, seed, a));
            float *U = lr, *Vt = lr + rr * 16;
            DIE(bb_cuda_fill_normal(U, rr * 16, seed ^ 0xA5A5, 1.0f));
            DIE(bb_cuda_fill_normal(Vt, 16 * cc, seed ^ 0x5A5A, 1.0f));
            DIE(bb_cuda_gemm(ctx, BB_CUDA_FP32, BB_OP_N, BB_OP_N, rr, cc, 16, a / 4, U, 16, Vt, cc, 1.0f, W[i], cc));
        }
        bb_cuda_block_w bw = {ones, W[0], W[1], W[2], NULL, NULL, NULL, W[3], ones, W[4], W[5], W[6]};
        bs[ST_GEN] = lap(&t0);
        /* calibration statistics of the dense block */
        for (int s = 0; s < 4; s++) CK(cudaMemset(g.h[s], 0, (size_t)gn[s] * gn[s] * 4));
        for (int64_t r0 = 0; r0 < R; r0 += Rm) {
            CK(cudaMemcpy(xm, X + r0 * dim, (size_t)(Rm * dim) * 4, cudaMemcpyDeviceToDevice));
            DIE(bb_cuda_fwd_block(fw, &bw, xm, micro, gram_hook, &g));
        }
        for (int s = 0; s < 4; s++) DIE(bb_cuda_mirror_upper(g.h[s], gn[s], gn[s]));
        bs[ST_CALIB] = lap(&t0);
        for (int i = 0; i < 7; i++) {
            int64_t rr = lin[i].rows, cc = lin[i].cols, n = rr * cc;
            const float *H = g.h[lin[i].gram];
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, lin[i].name);
            CK(cudaMemcpy(Wd, W[i], (size_t)n * 4, cudaMemcpyDeviceToDevice));
            /* prune */
            CK(cudaMemset(mask, 0xff, (size_t)rr * ((cc + 63) / 64) * 8));
            DIE(bb_cuda_sparsegpt(ctx, name, rr, cc, sparsity, 0.01, 10.0, BB_CUDA_TF32, W[i], H, mask, NULL));
            bs[ST_PRUNE] += lap(&t0);
            /* quantize */
            DIE(bb_cuda_gptq(ctx, &go, name, rr, cc, W[i], H, codes, NULL, NULL));
            DIE(bb_cuda_mask_apply(rr, cc, W[i], mask));
            bs[ST_QUANT] += lap(&t0);
            /* heal: E = Wd - W; V Vᵀ = H + damping; M = E V; Q = top-R right vectors of M;
             * A = M Q; B = Qᵀ V⁻¹; W += A B */
            const float mone = -1.0f;
            CK(cudaMemcpy(E, Wd, (size_t)n * 4, cudaMemcpyDeviceToDevice));
            DIE(BB_CUBLAS_STATUS(cublasSaxpy(blas, (int)n, &mone, W[i], 1, E, 1)));
            DIE(bb_cuda_factor_inverse_of_u(ctx, name, H, cc, 0.01, 10.0, V, NULL));
            DIE(bb_cuda_gemm(ctx, BB_CUDA_TF32, BB_OP_N, BB_OP_N, rr, cc, cc, 1.0f, E, cc, V, cc, 0.0f, M, cc));
            DIE(bb_cuda_rsvd(ctx, BB_CUDA_TF32, rr, cc, M, cc, rank, 16, 2, 0xbeef + (uint64_t)l * 7 + (uint64_t)i, sv,
                             NULL, Q));
            DIE(bb_cuda_gemm(ctx, BB_CUDA_FP32, BB_OP_N, BB_OP_N, rr, rank, cc, 1.0f, M, cc, Q, rank, 0.0f, A, rank));
            DIE(bb_cuda_transpose(ctx, cc, rank, Q, rank, Bm, cc));
            DIE(bb_cuda_trsm(ctx, BB_SIDE_RIGHT, BB_UPLO_UPPER, BB_OP_N, rank, cc, 1.0f, V, cc, Bm, cc));
            DIE(bb_cuda_gemm(ctx, BB_CUDA_FP32, BB_OP_N, BB_OP_N, rr, cc, rank, 1.0f, A, rank, Bm, cc, 1.0f, W[i], cc));
            float nm = 0, na = 0, nw = 0;
            DIE(BB_CUBLAS_STATUS(cublasSnrm2(blas, (int)n, M, 1, &nm)));
            DIE(BB_CUBLAS_STATUS(cublasSnrm2(blas, (int)(rr * rank), A, 1, &na)));
            /* the dense weight's own size in the same metric: |Wd V|² */
            DIE(bb_cuda_gemm(ctx, BB_CUDA_TF32, BB_OP_N, BB_OP_N, rr, cc, cc, 1.0f, Wd, cc, V, cc, 0.0f, M, cc));
            DIE(BB_CUBLAS_STATUS(cublasSnrm2(blas, (int)n, M, 1, &nw)));
            double e0 = (double)nm * nm / ((double)nw * nw), e1 = ((double)nm * nm - (double)na * na) / ((double)nw * nw);
            err0[i] += e0 / L;
            err1[i] += e1 / L;
            bs[ST_HEAL] += lap(&t0);
        }
        /* propagate: the compressed block over the stream, in place */
        for (int64_t r0 = 0; r0 < R; r0 += Rm) DIE(bb_cuda_fwd_block(fw, &bw, X + r0 * dim, micro, NULL, NULL));
        bs[ST_PROP] = lap(&t0);
        double tb = 0;
        for (int s = 0; s < ST_COUNT; s++) st_s[s] += bs[s], tb += bs[s];
        sec_total += tb;
        printf("block %2d/%d  %6.2f s  (gen %.2f calib %.2f prune %.2f quant %.2f heal %.2f prop %.2f)  elapsed %.0f s\n",
               l + 1, L, tb, bs[0], bs[1], bs[2], bs[3], bs[4], bs[5], bb_now() - t_start);
        fflush(stdout);
        if (json) {
            char tmp[1100];
            snprintf(tmp, sizeof tmp, "%s.tmp", json);
            js = fopen(tmp, "w");
            if (js) {
                bb_cuda_fwd_stats fs;
                bb_cuda_fwd_stats_get(fw, &fs);
                fprintf(js, "{\"device\": \"%s\", \"model\": \"%s\", \"blocks_run\": %d, \"blocks_model\": %d, "
                            "\"seqs\": %d, \"ctx\": %d, \"micro\": %d, \"sparsity\": %g, \"rank\": %d, \"math\": \"%s\", "
                            "\"gram_math\": \"%s\", \"seconds_total\": %.3f, \"seconds_per_block\": %.4f",
                        desc, spec, l + 1, c.n_layers, seqs, ctx_len, micro, sparsity, rank, bb_cuda_math_name(math),
                        bb_cuda_math_name(gram_math), sec_total, sec_total / (l + 1));
                for (int s = 0; s < ST_COUNT; s++) fprintf(js, ", \"%s_s\": %.3f", st_name[s], st_s[s]);
                fprintf(js, ", \"forward_matmul_tflops\": %.1f, \"forward_attention_tflops\": %.1f",
                        fs.matmul_s > 0 ? fs.matmul_flop / fs.matmul_s / 1e12 : 0,
                        fs.attention_s > 0 ? fs.attention_flop / fs.attention_s / 1e12 : 0);
                fprintf(js, ", \"layer_error\": {");
                for (int i = 0; i < 7; i++)
                    fprintf(js, "%s\"%s\": [%.5f, %.5f]", i ? ", " : "", lin[i].name, err0[i] * L / (l + 1),
                            err1[i] * L / (l + 1));
                fprintf(js, "}}\n");
                fclose(js);
                rename(tmp, json);
            }
        }
    }
    bb_cuda_fwd_stats fs;
    bb_cuda_fwd_stats_get(fw, &fs);
    printf("\n%d blocks in %.1f s (%.2f s per block); all %d blocks at this rate: %.1f s = %.1f min\n", L, sec_total,
           sec_total / L, c.n_layers, sec_total / L * c.n_layers, sec_total / L * c.n_layers / 60);
    for (int s = 0; s < ST_COUNT; s++)
        printf("  %-10s %8.1f s  %5.1f %%\n", st_name[s], st_s[s], 100 * st_s[s] / (sec_total > 0 ? sec_total : 1));
    printf("forward: matmul %.1f TFLOP/s (%s), attention %.1f TFLOP/s, elementwise %.1f s\n",
           fs.matmul_s > 0 ? fs.matmul_flop / fs.matmul_s / 1e12 : 0, bb_cuda_math_name(math),
           fs.attention_s > 0 ? fs.attention_flop / fs.attention_s / 1e12 : 0, fs.elementwise_s);
    printf("layer error tr(E H Eᵀ)/tr(W H Wᵀ), mean over blocks: before heal -> after rank-%d heal\n", rank);
    for (int i = 0; i < 7; i++) printf("  %-12s %.5f -> %.5f\n", lin[i].name, err0[i], err1[i]);
    bb_cuda_fwd_destroy(&fw);
    bb_cuda_ctx_destroy(&ctx);
    bb_model_destroy(&m);
    return 0;
}
