/* test_synth.c — synthetic models: presets and spec errors, determinism of row
 * blocks, and the planted structure (low-rank energy, heavy tails, outlier channels). */
#include <lapacke.h>

#include "io/model.h"
#include "io/synth.h"
#include "test.h"

static void test_presets(void) {
    for (const char *const *p = bb_synth_presets(); *p; p++) {
        char spec[64];
        snprintf(spec, sizeof spec, "synthetic:%s", *p);
        bb_model *m = NULL;
        EXPECT_OK(bb_model_open(spec, &m));
        if (m) EXPECT(bb_model_param_count(m) > 0, "%s has no parameters", spec);
        bb_model_destroy(&m);
        EXPECT(m == NULL, "destroy must null the pointer");
    }
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:llama2-70b", &m));
    if (m) {
        EXPECT(m->cfg.n_kv_heads == 8 && m->cfg.hidden_dim == 28672 && m->cfg.n_layers == 80, "70B shape");
        int64_t n = bb_model_param_count(m);
        EXPECT(n > 68900000000LL && n < 69000000000LL, "70B parameter count %lld", (long long)n);
        /* one row of the widest matrix, without materializing the model */
        static float row[28672];
        EXPECT_OK(bb_tensor_read_f32(&m->layers[79].w_down, 8191, 1, row));
    }
    bb_model_destroy(&m);
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,dim=64,heads=4,kv_heads=1,vocab=100", &m));
    if (m) EXPECT(m->cfg.n_layers == 2 && m->cfg.dim == 64 && m->cfg.n_kv_heads == 1 && m->cfg.head_dim == 16, "overrides");
    bb_model_destroy(&m);
}

static void test_spec_errors(void) {
    bb_model *m = NULL;
    EXPECT_ERR(bb_model_open("synthetic:huge", &m), BB_ERR_CONFIG, "presets: tiny");
    EXPECT_ERR(bb_model_open("synthetic:tiny,depth=3", &m), BB_ERR_CONFIG, "unknown key 'depth'");
    EXPECT_ERR(bb_model_open("synthetic:tiny,layers=x", &m), BB_ERR_CONFIG, "layers=x is not an integer");
    EXPECT_ERR(bb_model_open("synthetic:tiny,layers=0", &m), BB_ERR_CONFIG, "outside");
    EXPECT_ERR(bb_model_open("synthetic:tiny,heads=3", &m), BB_ERR_CONFIG, "not a multiple of heads");
    EXPECT_ERR(bb_model_open("synthetic:tiny,kv_heads=3", &m), BB_ERR_CONFIG, "kv_heads 3");
    EXPECT_ERR(bb_model_open("synthetic:tiny,layers", &m), BB_ERR_CONFIG, "key=value");
    EXPECT(m == NULL, "failed open leaves NULL");
}

static void test_determinism(void) {
    bb_model *a = NULL, *b = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny", &a));
    EXPECT_OK(bb_model_open("synthetic:tiny", &b));
    if (!a || !b) goto out;
    const bb_tensor *t = &a->layers[1].w_gate;
    int64_t r = bb_tensor_rows(t), c = bb_tensor_cols(t);
    float *whole = malloc(sizeof(float) * (size_t)(r * c)), *parts = malloc(sizeof(float) * (size_t)(r * c));
    EXPECT_OK(bb_tensor_read_f32(t, 0, r, whole));
    for (int64_t r0 = 0; r0 < r; r0 += 37) {
        int64_t n = r - r0 < 37 ? r - r0 : 37;
        EXPECT_OK(bb_tensor_read_f32(&b->layers[1].w_gate, r0, n, parts + r0 * c));
    }
    EXPECT(memcmp(whole, parts, sizeof(float) * (size_t)(r * c)) == 0, "row blocks differ from the whole read");
    EXPECT_OK(bb_tensor_read_f32(&a->layers[1].w_up, 0, r, parts));
    EXPECT(memcmp(whole, parts, sizeof(float) * (size_t)(r * c)) != 0, "different tensors must differ");
    bb_model *s2 = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,seed=7", &s2));
    if (s2) {
        EXPECT_OK(bb_tensor_read_f32(&s2->layers[1].w_gate, 0, r, parts));
        EXPECT(memcmp(whole, parts, sizeof(float) * (size_t)(r * c)) != 0, "different seeds must differ");
    }
    bb_model_destroy(&s2);
    free(whole);
    free(parts);
out:
    bb_model_destroy(&a);
    bb_model_destroy(&b);
}

/* The generator's thread count splits rows only: 1, 3 and 7 threads give the same bits, for the matrices
 * (low-rank + noise, and noise only) and the embedding (large enough blocks to be split). */
static void test_threads(void) {
    const char *specs[] = {"synthetic:small", "synthetic:small,energy=0"};
    for (int k = 0; k < 2; k++) {
        bb_model *m = NULL;
        EXPECT_OK(bb_model_open(specs[k], &m));
        if (!m) continue;
        const bb_tensor *ts[] = {&m->layers[2].w_gate, &m->layers[0].w_down, &m->tok_embd};
        for (int i = 0; i < 3; i++) {
            int64_t r = bb_tensor_rows(ts[i]), c = bb_tensor_cols(ts[i]);
            size_t bytes = sizeof(float) * (size_t)(r * c);
            float *one = malloc(bytes), *many = malloc(bytes);
            bb_synth_set_threads(1);
            EXPECT_OK(bb_tensor_read_f32(ts[i], 0, r, one));
            for (int nt = 3; nt <= 7; nt += 4) {
                memset(many, 0, bytes);
                bb_synth_set_threads(nt);
                EXPECT_OK(bb_tensor_read_f32(ts[i], 0, r, many));
                EXPECT(memcmp(one, many, bytes) == 0, "%s %s: %d threads differ from 1", specs[k], ts[i]->name, nt);
            }
            free(one);
            free(many);
        }
        bb_model_destroy(&m);
    }
    bb_synth_set_threads(0);
}

/* Fraction of ||W||_F^2 in the top k singular values (LAPACK). */
static double topk_energy(const bb_tensor *t, int k) {
    int64_t r = bb_tensor_rows(t), c = bb_tensor_cols(t);
    float *w = malloc(sizeof(float) * (size_t)(r * c));
    int64_t ns = r < c ? r : c;
    float *s = malloc(sizeof(float) * (size_t)ns), *sup = malloc(sizeof(float) * (size_t)ns);
    double e = -1;
    if (bb_tensor_read_f32(t, 0, r, w) == BB_OK &&
        LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'N', 'N', (lapack_int)r, (lapack_int)c, w, (lapack_int)c, s, NULL, 1, NULL, 1,
                       sup) == 0) {
        double top = 0, all = 0;
        for (int64_t i = 0; i < ns; i++) {
            all += (double)s[i] * s[i];
            if (i < k) top += (double)s[i] * s[i];
        }
        e = top / all;
    }
    free(w);
    free(s);
    free(sup);
    return e;
}

static void test_structure(void) {
    bb_model *m = NULL, *flat = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny", &m));
    EXPECT_OK(bb_model_open("synthetic:tiny,energy=0", &flat));
    if (!m || !flat) goto out;
    double e16 = topk_energy(&m->layers[0].wq, 16), f16 = topk_energy(&flat->layers[0].wq, 16);
    printf("  top-16 energy of blk.0.attn_q: planted %.3f, noise only %.3f\n", e16, f16);
    EXPECT(e16 > 0.6, "planted low-rank part should hold > 60%% of the energy, got %.3f", e16);
    EXPECT(f16 < 0.45, "pure noise should spread its energy, got %.3f", f16);
    /* heavy tails: excess kurtosis of the noise is well above a Gaussian's 0 */
    const bb_tensor *t = &flat->layers[0].w_gate;
    int64_t n = bb_tensor_numel(t);
    float *w = malloc(sizeof(float) * (size_t)n);
    EXPECT_OK(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), w));
    double m2 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) {
        m2 += (double)w[i] * w[i];
        m4 += (double)w[i] * w[i] * w[i] * w[i];
    }
    m2 /= (double)n;
    m4 /= (double)n;
    double kurt = m4 / (m2 * m2) - 3.0;
    printf("  excess kurtosis of the noise: %.2f (Gaussian: 0)\n", kurt);
    EXPECT(kurt > 1.0, "noise should be heavy-tailed, excess kurtosis %.2f", kurt);
    EXPECT_NEAR(m2 * (double)bb_tensor_cols(t), 1.0, 0.1);
    free(w);
    /* outlier channels: a few RMSNorm gains far above the rest, the same in every layer */
    float g0[128], g1[128];
    EXPECT_OK(bb_tensor_read_f32(&m->layers[0].attn_norm, 0, 1, g0));
    EXPECT_OK(bb_tensor_read_f32(&m->layers[3].ffn_norm, 0, 1, g1));
    int big0 = 0, same = 0;
    for (int j = 0; j < 128; j++) {
        big0 += g0[j] > 3.0f;
        same += (g0[j] > 3.0f) && (g1[j] > 3.0f);
    }
    EXPECT(big0 == 4 && same == 4, "expected 4 shared outlier channels, found %d (%d shared)", big0, same);
out:
    bb_model_destroy(&m);
    bb_model_destroy(&flat);
}

int main(void) {
    TEST_RUN(test_presets);
    TEST_RUN(test_spec_errors);
    TEST_RUN(test_determinism);
    TEST_RUN(test_threads);
    TEST_RUN(test_structure);
    return TEST_DONE();
}
