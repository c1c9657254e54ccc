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
#include "model/calib.h"
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

/* The GPU path of model/forward.c (bb_forward_set_device): prefill logits and the Gram-style hook sums
 * equal the CPU path's within 1e-4 (relative), on the weights the context holds. */
typedef struct {
    double sum[BB_LIN_COUNT];
} hook_sums;

static bb_status sum_hook(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    hook_sums *h = ud;
    (void)layer;
    for (int64_t i = 0; i < rows * in; i++) h->sum[kind] += (double)x[i] * x[i];
    return BB_OK;
}

static void test_prefill_device(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny", &m));
    if (!m) return;
    int B = 2, T = 48, V = m->cfg.vocab_size;
    int tok[96];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 11) % V;
    float *lc = malloc((size_t)B * T * V * 4), *lg = malloc((size_t)B * T * V * 4);
    hook_sums hc = {{0}}, hg = {{0}};
    for (int dev = 0; dev < 2; dev++) {
        EXPECT(bb_forward_set_device(dev) == dev, "the GPU path is %s", dev ? "on" : "off");
        bb_forward *f = NULL;
        EXPECT_OK(bb_forward_create(m, 0, &f));
        if (!f) break;
        bb_forward_set_hook(f, sum_hook, dev ? &hg : &hc);
        EXPECT_OK(bb_forward_prefill(f, tok, B, T, dev ? lg : lc));
        bb_forward_destroy(&f);
    }
    bb_forward_set_device(0);
    double e = rel_err(lg, lc, (int64_t)B * T * V);
    printf("prefill through bb_forward_set_device(1): logits rel err %.3g\n", e);
    EXPECT(e <= 1e-4, "GPU prefill logits differ from the CPU's by %.3g", e);
    for (int k = 0; k < BB_LIN_COUNT; k++)
        EXPECT(fabs(hg.sum[k] - hc.sum[k]) <= 1e-4 * fabs(hc.sum[k]), "hook input %d: %.9g vs %.9g", k, hg.sum[k],
               hc.sum[k]);
    free(lc), free(lg);
    bb_model_destroy(&m);
}

/* Calibration on the GPU path: the Grams are accumulated on the device from the forward's device inputs
 * (model/calib.c), the per-channel statistics on the host; both equal the CPU path's within 1e-4. */
static void test_calib_device(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny", &m));
    if (!m) return;
    enum { NS = 6, T = 40 };
    int32_t ids[NS * T];
    for (int i = 0; i < NS * T; i++) ids[i] = (i * 53 + 7) % m->cfg.vocab_size;
    bb_tokens stream = {ids, NS * T, NS, T, m->cfg.vocab_size};
    bb_calib *cal[2] = {NULL, NULL};
    for (int dev = 0; dev < 2; dev++) {
        bb_forward_set_device(dev);
        bb_calib_opts o;
        bb_calib_opts_default(&o);
        bb_forward *f = NULL;
        EXPECT_OK(bb_forward_create(m, 0, &f));
        EXPECT_OK(bb_calib_create(m, &o, &cal[dev]));
        if (f && cal[dev]) EXPECT_OK(bb_calib_run(cal[dev], f, &stream, 4));
        bb_forward_destroy(&f);
    }
    bb_forward_set_device(0);
    double worst = 0;
    for (int l = 0; cal[0] && cal[1] && l < m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            const bb_calib_stat *a = NULL, *b = NULL;
            EXPECT_OK(bb_calib_stats(cal[0], l, (bb_linear_kind)k, &a));
            EXPECT_OK(bb_calib_stats(cal[1], l, (bb_linear_kind)k, &b));
            if (!a || !b) continue;
            EXPECT(a->n_tokens == b->n_tokens && a->n_tokens == NS * T, "tokens %lld vs %lld", (long long)a->n_tokens,
                   (long long)b->n_tokens);
            int64_t n = a->in_features;
            double e = rel_err(b->gram, a->gram, n * n), en = 0;
            for (int64_t j = 0; j < n; j++) en = fmax(en, fabs(b->norm[j] - a->norm[j]) / (a->norm[j] + 1e-30));
            worst = fmax(worst, fmax(e, en));
            EXPECT(e <= 1e-4 && en <= 1e-4, "layer %d %s: Gram rel err %.3g, norms %.3g", l,
                   bb_linear_name((bb_linear_kind)k), e, en);
        }
    printf("calibration on the GPU path: Grams and norms within %.3g of the CPU path's\n", worst);
    bb_calib_destroy(&cal[0]);
    bb_calib_destroy(&cal[1]);
    bb_model_destroy(&m);
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
    TEST_RUN(test_prefill_device);
    TEST_RUN(test_calib_device);
    return TEST_DONE();
}
#endif
