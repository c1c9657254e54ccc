/* test_cuda_forward.c — the GPU transformer block (cuda/forward_cuda.h) against the CPU forward pass
 * (src/model/forward.c, whose RMSNorm, RoPE, attention and SwiGLU are the plain-C _ref kernels):
 *   - synthetic:tiny (GQA 4/2), both RoPE pairings, 3 sequences of 64 tokens: the residual stream after
 *     all blocks, fp32 products: relative error (max |diff| / max |ref|) <= 1e-4; tf32: <= 2e-2;
 *   - the hook's inputs (every linear layer of block 1) equal the CPU hook's within the same bounds;
 *   - stories260K (when ../shared/data is there): the same, 2 x 256 tokens;
 *   - a workspace too small for the batch gives BB_ERR_ARG.
 * Skips (77) without CUDA or a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "core/rng.h"
#include "cuda/check.h"
#include "cuda/forward_cuda.h"
#include "io/model.h"
#include "model/forward.h"

static double rel_err(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

/* Inputs of the linear layers of one block, captured by either forward. */
typedef struct {
    int layer;
    int64_t rows;
    float *x[BB_LIN_COUNT];
    int64_t in[BB_LIN_COUNT];
    int seen;
} capture;

static bb_status cpu_hook(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    capture *c = ud;
    if (layer != c->layer) return BB_OK;
    c->x[kind] = malloc((size_t)(rows * in) * 4);
    memcpy(c->x[kind], x, (size_t)(rows * in) * 4);
    c->in[kind] = in;
    c->rows = rows;
    c->seen++;
    return BB_OK;
}

static bb_status gpu_hook(void *ud, bb_linear_kind kind, const float *dx, int64_t rows, int64_t in) {
    capture *c = ud;
    c->x[kind] = malloc((size_t)(rows * in) * 4);
    BB_CALL(BB_CUDA_STATUS(cudaMemcpy(c->x[kind], dx, (size_t)(rows * in) * 4, cudaMemcpyDeviceToHost)));
    c->in[kind] = in;
    c->rows = rows;
    c->seen++;
    return BB_OK;
}

static void capture_free(capture *c) {
    for (int k = 0; k < BB_LIN_COUNT; k++) free(c->x[k]);
}

static void check_model(const char *path, int rope_half, int B, int T) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(path, &m));
    if (!m) return;
    if (rope_half) m->cfg.rope_style = BB_ROPE_HALF;
    const bb_model_config *c = &m->cfg;
    int L = c->n_layers, dim = c->dim, hook_layer = L > 1 ? 1 : 0;
    int64_t R = (int64_t)B * T;
    int *tok = malloc((size_t)R * sizeof *tok);
    bb_rng rng = bb_rng_make(11, 3);
    for (int64_t i = 0; i < R; i++) tok[i] = (int)(bb_rng_u64(rng, (uint64_t)i) % (uint64_t)c->vocab_size);

    /* CPU: embed, then every block (the hook on block hook_layer). */
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(m, 0, &f));
    float *x0 = malloc((size_t)(R * dim) * 4), *xc = malloc((size_t)(R * dim) * 4), *xg = malloc((size_t)(R * dim) * 4);
    EXPECT_OK(bb_forward_embed(f, tok, B, T, x0));
    memcpy(xc, x0, (size_t)(R * dim) * 4);
    capture cc = {.layer = hook_layer}, gc = {.layer = hook_layer};
    bb_forward_set_hook(f, cpu_hook, &cc);
    EXPECT_OK(bb_forward_blocks(f, xc, B, T));

    bb_cuda_ctx *ctx = NULL;
    EXPECT_OK(bb_cuda_ctx_create(&ctx));
    for (int math = BB_CUDA_FP32; math <= BB_CUDA_TF32; math++) {
        bb_cuda_fwd *g = NULL;
        EXPECT_OK(bb_cuda_fwd_create(ctx, c, T, B, (bb_cuda_math)math, &g));
        if (!g) break;
        float *dx = NULL;
        EXPECT_OK(bb_cuda_malloc((void **)&dx, (size_t)(R * dim) * 4, "x"));
        cudaMemcpy(dx, x0, (size_t)(R * dim) * 4, cudaMemcpyHostToDevice);
        for (int l = 0; l < L; l++) {
            bb_cuda_block_w w;
            EXPECT_OK(bb_cuda_block_w_upload(m, l, &w));
            if (!w.wq) break;
            int hook = math == BB_CUDA_FP32 && l == hook_layer;
            EXPECT_OK(bb_cuda_fwd_block(g, &w, dx, B, hook ? gpu_hook : NULL, &gc));
            bb_cuda_block_w_free(&w);
        }
        cudaMemcpy(xg, dx, (size_t)(R * dim) * 4, cudaMemcpyDeviceToHost);
        double e = rel_err(xg, xc, R * dim), tol = math == BB_CUDA_FP32 ? 1e-4 : 2e-2;
        printf("%s rope=%s B=%d T=%d %s: residual stream after %d blocks, rel err %.3g (tol %.0g)\n", path,
               rope_half ? "half" : "interleaved", B, T, bb_cuda_math_name((bb_cuda_math)math), L, e, tol);
        EXPECT(e <= tol, "%s %s: GPU blocks differ from the CPU forward by %.3g (tol %.0g)", path,
               bb_cuda_math_name((bb_cuda_math)math), e, tol);
        if (math == BB_CUDA_FP32) {
            EXPECT(gc.seen == BB_LIN_COUNT && cc.seen == BB_LIN_COUNT, "hook calls: gpu %d cpu %d", gc.seen, cc.seen);
            for (int k = 0; k < BB_LIN_COUNT && gc.seen == BB_LIN_COUNT && cc.seen == BB_LIN_COUNT; k++) {
                EXPECT(gc.in[k] == cc.in[k] && gc.rows == cc.rows, "hook %d shape", k);
                double he = rel_err(gc.x[k], cc.x[k], cc.rows * cc.in[k]);
                EXPECT(he <= 1e-4, "%s: input of linear %d of block %d differs by %.3g", path, k, hook_layer, he);
            }
            /* A workspace for fewer sequences refuses a larger batch. */
            EXPECT_ERR(bb_cuda_fwd_block(g, &(bb_cuda_block_w){0}, dx, B + 1, NULL, NULL), BB_ERR_ARG, "sequences");
        }
        bb_cuda_fwd_stats s;
        bb_cuda_fwd_stats_get(g, &s);
        EXPECT(s.tokens == R * L && s.matmul_flop > 0, "stats: %lld tokens", (long long)s.tokens);
        cudaFree(dx);
        bb_cuda_fwd_destroy(&g);
    }
    capture_free(&cc);
    capture_free(&gc);
    bb_cuda_ctx_destroy(&ctx);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    free(tok), free(x0), free(xc), free(xg);
}

static void test_synthetic(void) {
    check_model("synthetic:tiny", 0, 3, 64);
    check_model("synthetic:tiny", 1, 3, 64);
}

static void test_stories(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", test_shared());
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("stories260K not found at %s: that case is skipped\n", path);
        return;
    }
    fclose(fp);
    check_model(path, 0, 2, 256);
}

int main(void) {
    if (bb_cuda_device_count() == 0) {
        printf("skipped: no GPU visible\n");
        return 77;
    }
    int dev;
    EXPECT_OK(bb_cuda_bind(0, &dev));
    TEST_RUN(test_synthetic);
    TEST_RUN(test_stories);
    return TEST_DONE();
}
#endif
