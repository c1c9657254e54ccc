/* test_heal_block.c — block-level healing (compress/heal_block.h): a planted low-rank error is recovered, runs
 * are bit-identical, micro-batching does not change the gradient, masks stay fixed, whole-model healing. */
#include <math.h>
#include <stdint.h>

#include "compress/heal_block.h"
#include "core/rng.h"
#include "test.h"

#define DIM 32
#define HID 48
#define NH 4
#define NKV 2
#define HD 8
#define S 6
#define T 12

static bb_model_config cfg(void) {
    return (bb_model_config){.dim = DIM,
                             .hidden_dim = HID,
                             .n_layers = 2,
                             .n_heads = NH,
                             .n_kv_heads = NKV,
                             .head_dim = HD,
                             .vocab_size = 64,
                             .max_seq_len = 32,
                             .norm_eps = 1e-5f,
                             .rope_theta = 10000.0f};
}

typedef struct {
    float norm[2][DIM];
    float *dense[BB_LIN_COUNT], *work[BB_LIN_COUNT];
    float x[S * T * DIM], y[S * T * DIM];
} fixture;

static void fill(float *p, int64_t n, double s, uint64_t stream) {
    bb_rng_fill_normal(bb_rng_make(7, stream), 0, (size_t)n, p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(p[i] * s);
}

/* Dense block, inputs, targets Y = dense(X); work = dense minus a planted rank-2 error on ffn_up and attn_v. */
static void setup(fixture *f) {
    bb_model_config c = cfg();
    for (int i = 0; i < DIM; i++) f->norm[0][i] = f->norm[1][i] = 1.0f;
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        f->dense[k] = malloc(sizeof(float) * (size_t)(out * in));
        f->work[k] = malloc(sizeof(float) * (size_t)(out * in));
        fill(f->dense[k], out * in, 1.0 / sqrt((double)in), 100 + k);
        memcpy(f->work[k], f->dense[k], sizeof(float) * (size_t)(out * in));
        if (k == BB_LIN_UP || k == BB_LIN_V) {
            float u[2 * HID], v[2 * DIM];
            fill(u, out * 2, 0.4, 200 + k);
            fill(v, in * 2, 0.4 / sqrt((double)in), 300 + k);
            for (int64_t o = 0; o < out; o++)
                for (int64_t i = 0; i < in; i++) f->work[k][o * in + i] -= u[o * 2] * v[i] + u[o * 2 + 1] * v[in + i];
        }
    }
    fill(f->x, S * T * DIM, 1, 1);
    bb_heal_block_layer D = {.attn_norm = f->norm[0], .ffn_norm = f->norm[1]};
    for (int k = 0; k < BB_LIN_COUNT; k++) D.w[k] = f->dense[k];
    EXPECT_OK(bb_heal_block_forward(&c, &D, f->x, S, T, 4, f->y));
}

static void teardown(fixture *f) {
    for (int k = 0; k < BB_LIN_COUNT; k++) free(f->dense[k]), free(f->work[k]);
}

static bb_heal_block_layer layer_of(fixture *f) {
    bb_heal_block_layer L = {.attn_norm = f->norm[0], .ffn_norm = f->norm[1]};
    for (int k = 0; k < BB_LIN_COUNT; k++) L.w[k] = f->work[k];
    return L;
}

static void destroy_factors(bb_heal_block_layer *L) {
    for (int k = 0; k < BB_LIN_COUNT; k++) bb_lora_destroy(&L->lora[k]);
}

static void test_recovers_planted_error(void) {
    static fixture f;
    setup(&f);
    bb_model_config c = cfg();
    bb_heal_block_layer L = layer_of(&f);
    /* the loss before healing, computed without the healer: the compressed block's plain mean squared error */
    static float yc[S * T * DIM];
    EXPECT_OK(bb_heal_block_forward(&c, &L, f.x, S, T, S, yc));
    double mse0 = 0;
    for (int i = 0; i < S * T * DIM; i++) mse0 += ((double)yc[i] - f.y[i]) * ((double)yc[i] - f.y[i]);
    mse0 /= S * T * DIM;
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = 300;
    o.lr = 1e-2;
    o.rank = 2;
    o.micro_batch = 4;
    L.linears = 1u << BB_LIN_UP | 1u << BB_LIN_V;
    double loss[301];
    EXPECT_OK(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, loss));
    EXPECT(mse0 > 1e-3, "the planted error does not show (%g)", mse0);
    EXPECT_NEAR(loss[0], mse0, 1e-6 * mse0);
    EXPECT(loss[300] < 0.01 * loss[0], "loss %g -> %g: the planted rank-2 error was not recovered", loss[0], loss[300]);
    EXPECT(L.lora[BB_LIN_UP] && L.lora[BB_LIN_V] && !L.lora[BB_LIN_Q] && !L.lora[BB_LIN_DOWN],
           "factors were created for the healed linears only");
    if (L.lora[BB_LIN_UP]) EXPECT(L.lora[BB_LIN_UP]->rank == 2, "rank %d", L.lora[BB_LIN_UP]->rank);
    /* A·B approaches the planted error on ffn_up: relative distance of W + A·B to the dense weight */
    double num = 0, den = 0;
    float *m = malloc(sizeof(float) * HID * DIM);
    memcpy(m, f.work[BB_LIN_UP], sizeof(float) * HID * DIM);
    bb_lora_merge_ref(L.lora[BB_LIN_UP], m);
    for (int i = 0; i < HID * DIM; i++) {
        num += ((double)m[i] - f.dense[BB_LIN_UP][i]) * ((double)m[i] - f.dense[BB_LIN_UP][i]);
        den += ((double)f.work[BB_LIN_UP][i] - f.dense[BB_LIN_UP][i]) *
               ((double)f.work[BB_LIN_UP][i] - f.dense[BB_LIN_UP][i]);
    }
    EXPECT(num < 0.1 * den, "merged ffn_up is %.3g of the planted error away from dense", sqrt(num / den));
    free(m);
    destroy_factors(&L);
    teardown(&f);
}

static void test_deterministic_and_micro_batch(void) {
    static fixture f;
    setup(&f);
    bb_model_config c = cfg();
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = 5;
    o.rank = 3;
    bb_heal_block_layer L1 = layer_of(&f), L2 = layer_of(&f), L3 = layer_of(&f);
    double l1[6], l2[6], l3[6];
    o.micro_batch = 4; /* 4 + 2 sequences */
    EXPECT_OK(bb_heal_block(&c, &L1, f.x, f.y, S, T, &o, l1));
    EXPECT_OK(bb_heal_block(&c, &L2, f.x, f.y, S, T, &o, l2));
    o.micro_batch = 1;
    EXPECT_OK(bb_heal_block(&c, &L3, f.x, f.y, S, T, &o, l3));
    int same = 1;
    double diff = 0;
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        bb_lora *a = L1.lora[k], *b = L2.lora[k], *d = L3.lora[k];
        same &= !memcmp(a->a, b->a, sizeof(float) * (size_t)(a->rows * a->rank)) &&
                !memcmp(a->b, b->b, sizeof(float) * (size_t)(a->cols * a->rank));
        for (int64_t i = 0; i < a->rows * a->rank; i++) diff = fmax(diff, fabs((double)a->a[i] - d->a[i]));
    }
    EXPECT(same, "two runs with the same inputs gave different factors");
    EXPECT(!memcmp(l1, l2, sizeof l1), "two runs gave different loss curves");
    /* micro-batches sum to the same gradient up to float rounding; Adam's first step is ±lr per entry, so
     * entries agree to far below lr */
    EXPECT(diff < 1e-5, "micro-batch 1 vs 4: factors differ by %g", diff);
    EXPECT_NEAR(l3[0], l1[0], 1e-6 * l1[0]);
    destroy_factors(&L1);
    destroy_factors(&L2);
    destroy_factors(&L3);
    teardown(&f);
}

static void test_train_weights_keeps_mask(void) {
    static fixture f;
    setup(&f);
    bb_model_config c = cfg();
    bb_heal_block_layer L = layer_of(&f);
    bb_mask *mask[BB_LIN_COUNT] = {0};
    float *before[BB_LIN_COUNT];
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        for (int64_t i = 0; i < out * in; i++)
            if (i % 3 == 0) f.work[k][i] = 0.0f; /* a third pruned */
        EXPECT_OK(bb_mask_create(out, in, 1, &mask[k]));
        bb_mask_from_nonzero(mask[k], f.work[k]);
        L.mask[k] = mask[k];
        before[k] = malloc(sizeof(float) * (size_t)(out * in));
        memcpy(before[k], f.work[k], sizeof(float) * (size_t)(out * in));
    }
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = 20;
    o.train_weights = 1;
    o.rank = 0; /* the weights alone */
    o.lr = 3e-3;
    double loss[21];
    EXPECT_OK(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, loss));
    int64_t moved = 0, kept = 0, pruned_nonzero = 0;
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        for (int64_t i = 0; i < out * in; i++) {
            if (i % 3 == 0)
                pruned_nonzero += f.work[k][i] != 0.0f;
            else
                kept++, moved += f.work[k][i] != before[k][i];
        }
        free(before[k]);
        bb_mask_destroy(&mask[k]);
    }
    EXPECT(pruned_nonzero == 0, "%lld pruned weights came back", (long long)pruned_nonzero);
    EXPECT(moved > kept / 2, "only %lld of %lld kept weights moved", (long long)moved, (long long)kept);
    EXPECT(loss[20] < 0.5 * loss[0], "loss %g -> %g", loss[0], loss[20]);
    for (int k = 0; k < BB_LIN_COUNT; k++) EXPECT(!L.lora[k], "rank 0 created factors on linear %d", k);
    destroy_factors(&L);
    teardown(&f);
}

/* A storage grid for the straight-through test: multiples of 1/64. */
static bb_status to_grid(void *ud, int layer, bb_linear_kind kind, int64_t rows, int64_t cols, float *w) {
    int *calls = ud;
    if (layer != 3) return BB_OK; /* the layer index must come through */
    calls[kind]++;
    for (int64_t i = 0; i < rows * cols; i++) w[i] = roundf(w[i] * 64.0f) / 64.0f;
    return BB_OK;
}

static void test_straight_through(void) {
    static fixture f;
    setup(&f);
    bb_model_config c = cfg();
    for (int k = 0; k < BB_LIN_COUNT; k++) { /* start on the grid, as a quantized model does */
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        to_grid((int[BB_LIN_COUNT]){0}, 3, (bb_linear_kind)k, out, in, f.work[k]);
    }
    bb_heal_block_layer L = layer_of(&f);
    int calls[BB_LIN_COUNT] = {0};
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = 30;
    o.rank = 0;
    o.train_weights = 1;
    o.lr = 3e-3;
    o.project = to_grid;
    o.project_ud = calls;
    L.linears = 1u << BB_LIN_UP | 1u << BB_LIN_V;
    L.layer = 3;
    float *up0 = malloc(sizeof(float) * HID * DIM);
    memcpy(up0, f.work[BB_LIN_UP], sizeof(float) * HID * DIM);
    double loss[31];
    EXPECT_OK(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, loss));
    int on_grid = 1, changed = 0;
    for (int i = 0; i < HID * DIM; i++) {
        on_grid &= f.work[BB_LIN_UP][i] * 64.0f == roundf(f.work[BB_LIN_UP][i] * 64.0f);
        changed += f.work[BB_LIN_UP][i] != up0[i];
    }
    EXPECT(on_grid, "the trained weights left the grid");
    EXPECT(changed > 0, "no weight moved to another grid point");
    EXPECT(calls[BB_LIN_UP] == 30 && calls[BB_LIN_V] == 30 && calls[BB_LIN_Q] == 0,
           "projections: up %d, v %d, q %d (expected one per step on the healed linears)", calls[BB_LIN_UP],
           calls[BB_LIN_V], calls[BB_LIN_Q]);
    EXPECT(loss[30] < 0.7 * loss[0], "loss %g -> %g", loss[0], loss[30]);
    free(up0);
    teardown(&f);
}

static void test_errors(void) {
    static fixture f;
    setup(&f);
    bb_model_config c = cfg();
    bb_heal_block_layer L = layer_of(&f);
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.lr = -1;
    EXPECT_ERR(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, NULL), BB_ERR_ARG, "learning rate");
    bb_heal_block_opts_default(&o);
    o.steps = 1;
    EXPECT_OK(bb_lora_create(DIM, DIM, 2, &L.lora[BB_LIN_UP])); /* ffn_up is (48, 32) */
    EXPECT_ERR(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, NULL), BB_ERR_ARG, "factors of ffn_up");
    bb_lora_destroy(&L.lora[BB_LIN_UP]);
    o.rank = 0;
    EXPECT_ERR(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, NULL), BB_ERR_ARG, "0 only with train_weights");
    o.rank = 8;
    bb_mask *m = NULL;
    EXPECT_OK(bb_mask_create(3, 3, 1, &m));
    L.mask[BB_LIN_K] = m;
    EXPECT_ERR(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, NULL), BB_ERR_ARG, "mask of attn_k");
    bb_mask_destroy(&m);
    L.mask[BB_LIN_K] = NULL;
    o.lr = 1e6; /* diverges */
    o.steps = 50;
    EXPECT_ERR(bb_heal_block(&c, &L, f.x, f.y, S, T, &o, NULL), BB_ERR_NUMERIC, "learning rate");
    destroy_factors(&L);
    teardown(&f);
}

static void test_model(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=3,dim=32,hidden=48,heads=4,kv_heads=2,ctx=32,vocab=64", &m));
    if (!m) return;
    const bb_model_config *c = &m->cfg;
    int L = c->n_layers;
    float *work[3 * BB_LIN_COUNT];
    bb_lora *lora[3 * BB_LIN_COUNT] = {0};
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            bb_tensor *t = bb_layer_linear(&m->layers[l], (bb_linear_kind)k);
            int64_t n = bb_tensor_numel(t);
            float *w = malloc(sizeof(float) * (size_t)n);
            EXPECT_OK(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), w));
            if (l > 0) /* layer 0 stays dense; the others lose their smallest half */
                for (int64_t i = 0; i < n; i++)
                    if (fabsf(w[i]) < 0.5f / sqrtf((float)bb_tensor_cols(t))) w[i] = 0;
            work[l * BB_LIN_COUNT + k] = w;
        }
    int32_t ids[4 * 16];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37 + 5) % c->vocab_size;
    bb_tokens win = {ids, 64, 4, 16, c->vocab_size};
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = 30;
    o.lr = 3e-3;
    o.micro_batch = 3;
    for (int target = 0; target < 2; target++) {
        double loss[3 * 31];
        EXPECT_OK(bb_heal_block_model(m, work, NULL, lora, &win, 0, L, (bb_heal_target)target, &o, loss));
        /* layer 0 is dense and sees the dense input: nothing to heal, exactly */
        EXPECT(loss[0] == 0.0, "target %d: dense layer 0 has loss %g", target, loss[0]);
        for (int l = 1; l < L; l++)
            EXPECT(loss[l * 31] > 0 && loss[l * 31 + 30] < 0.8 * loss[l * 31], "target %d layer %d: %g -> %g", target,
                   l, loss[l * 31], loss[l * 31 + 30]);
        for (int i = 0; i < L * BB_LIN_COUNT; i++) {
            EXPECT(lora[i] != NULL, "factors %d were not created", i);
            bb_lora_destroy(&lora[i]);
        }
    }
    win.seq_len = 40;
    win.n_seq = 1;
    EXPECT_ERR(bb_heal_block_model(m, work, NULL, lora, &win, 0, L, BB_HEAL_TARGET_BLOCK, &o, NULL), BB_ERR_ARG,
               "within the context");
    for (int i = 0; i < L * BB_LIN_COUNT; i++) free(work[i]);
    bb_model_destroy(&m);
}

int main(void) {
    TEST_RUN(test_recovers_planted_error);
    TEST_RUN(test_deterministic_and_micro_batch);
    TEST_RUN(test_train_weights_keeps_mask);
    TEST_RUN(test_straight_through);
    TEST_RUN(test_errors);
    TEST_RUN(test_model);
    return TEST_DONE();
}
