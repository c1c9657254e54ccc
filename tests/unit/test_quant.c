/* test_quant.c — RTN and GPTQ quantizers: stored blocks decode to Ŵ bit for bit, the f32 lazy-batch GPTQ
 * against its double reference, GPTQ beating RTN in the data metric, damping, dead inputs, errors. */
#include "compress/quant.h"
#include "core/rng.h"
#include "io/qformat.h"
#include "linalg/backend.h"
#include "test.h"

typedef struct {
    int64_t rows, cols;
    float *w; /* (rows, cols) */
    float *h; /* (cols, cols) */
} layer;

/* A random layer whose inputs are correlated (AR(1) across channels, coefficient 0.7) with channel
 * scales spread over two decades, so H is far from a multiple of the identity. */
static layer make_layer(int64_t rows, int64_t cols, int64_t samples, uint64_t seed) {
    layer L = {rows, cols, malloc(sizeof(float) * (size_t)(rows * cols)),
               malloc(sizeof(float) * (size_t)(cols * cols))};
    float *x = malloc(sizeof(float) * (size_t)(samples * cols));
    bb_rng r = bb_rng_make(seed, 1);
    bb_rng_fill_normal(r, 0, (size_t)(samples * cols), x);
    for (int64_t s = 0; s < samples; s++)
        for (int64_t j = 1; j < cols; j++) x[s * cols + j] += 0.7f * x[s * cols + j - 1];
    for (int64_t j = 0; j < cols; j++) {
        float sc = powf(10.0f, (float)bb_rng_uniform(bb_rng_make(seed, 2), (uint64_t)j) * 2.0f - 1.0f);
        for (int64_t s = 0; s < samples; s++) x[s * cols + j] *= sc;
    }
    const bb_linalg_backend *cpu;
    bb_linalg_backend_get("cpu", &cpu);
    cpu->syrk(BB_UPLO_FULL, cols, samples, 1.0f / (float)samples, x, cols, 0.0f, L.h, cols);
    bb_rng_fill_normal(bb_rng_make(seed, 3), 0, (size_t)(rows * cols), L.w);
    for (int64_t i = 0; i < rows * cols; i++) L.w[i] *= 0.02f;
    free(x);
    return L;
}

static void free_layer(layer *L) {
    free(L->w);
    free(L->h);
}

static bb_quant_input input_of(const layer *L, const char *name) {
    return (bb_quant_input){name, L->rows, L->cols, L->w, L->h, NULL, NULL};
}

/* decode(blocks) must equal w_hat bit for bit (the values the quantizer optimized). */
static int decodes_exactly(const bb_quant_result *r, const char *what) {
    float *y = malloc(sizeof(float) * (size_t)r->cols);
    int bad = 0;
    for (int64_t i = 0; i < r->rows && !bad; i++) {
        bb_qformat_decode_row(r->type, r->blocks + (size_t)i * r->row_bytes, r->cols, y);
        for (int64_t j = 0; j < r->cols; j++)
            if (memcmp(&y[j], &r->w_hat[i * r->cols + j], sizeof(float)) != 0) {
                fprintf(stderr, "  %s: (%lld, %lld) decodes to %.9g, quantizer used %.9g\n", what, (long long)i,
                        (long long)j, y[j], r->w_hat[i * r->cols + j]);
                bad = 1;
                break;
            }
    }
    free(y);
    EXPECT(!bad, "%s: stored blocks do not decode to the quantizer's values", what);
    return !bad;
}

static double herr(const layer *L, const bb_quant_result *r) {
    double e = -1;
    EXPECT_OK(bb_quant_layer_error(NULL, L->w, r->w_hat, L->h, L->rows, L->cols, &e));
    return e;
}

static const int all_types[] = {BB_GGML_Q8_0, BB_GGML_Q4_0, BB_GGML_Q4_1, BB_GGML_Q5_0, BB_GGML_Q5_1,
                                BB_GGML_Q2_K, BB_GGML_Q3_K, BB_GGML_Q4_K, BB_GGML_Q5_K, BB_GGML_Q6_K};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

static void test_registry(void) {
    const bb_quantizer *q;
    EXPECT_OK(bb_quant_get("gptq", &q));
    EXPECT(q->apply == bb_quant_gptq, "gptq entry");
    EXPECT_OK(bb_quant_get("rtn", &q));
    EXPECT(q->apply == bb_quant_rtn, "rtn entry");
    EXPECT_ERR(bb_quant_get("awq", &q), BB_ERR_CONFIG, "valid: rtn, gptq");
    bb_config_quant c = {.method = "gptq",
                         .type = "q4_k",
                         .fallback = "bf16",
                         .act_order = true,
                         .damp = 0.05,
                         .damp_max = 0.5,
                         .block_size = 64,
                         .importance = false,
                         .search = "fast"};
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    EXPECT(o.search == BB_QUANT_SEARCH_AUTO && bb_quant_search_for(&o, 1) == BB_QUANT_SEARCH_FULL &&
               bb_quant_search_for(&o, 0) == BB_QUANT_SEARCH_FAST,
           "auto: full when weighted, else fast");
    EXPECT_OK(bb_quant_opts_from_config(&c, &o));
    EXPECT(o.type == BB_GGML_Q4_K && o.fallback == BB_GGML_BF16 && o.act_order && o.damp == 0.05 &&
               o.damp_max == 0.5 && o.block_size == 64 && !o.importance && o.search == BB_QUANT_SEARCH_FAST &&
               bb_quant_search_for(&o, 1) == BB_QUANT_SEARCH_FAST,
           "options from config");
    strcpy(c.search, "full");
    EXPECT_OK(bb_quant_opts_from_config(&c, &o));
    EXPECT(o.search == BB_QUANT_SEARCH_FULL && bb_quant_search_for(&o, 0) == BB_QUANT_SEARCH_FULL, "search full");
    c.damp_max = 0.01;
    EXPECT_ERR(bb_quant_opts_from_config(&c, &o), BB_ERR_CONFIG, "quant.damp_max 0.01 is below quant.damp 0.05");
}

/* The vectorized encoders (Q8_0, Q4_0, Q5_0) against qformat's reference: identical bytes on Gaussian
 * rows at several scales, with and without importance, and on edge rows. */
/* quant.search = full: the vectorized encoders write qformat's reference bytes exactly. */
static void test_full_encoder(void) {
    enum { N = 256, ROWS = 64 };
    const int types[] = {BB_GGML_Q8_0, BB_GGML_Q4_0, BB_GGML_Q5_0, BB_GGML_Q4_K};
    float x[N], imp[N];
    uint8_t a[N * 2], b[N * 2];
    int bad = 0, rows = 0;
    for (int r = 0; r < ROWS + 12; r++) {
        bb_rng_fill_normal(bb_rng_make(71, (uint64_t)r), 0, N, x);
        bb_rng_fill_uniform(bb_rng_make(72, (uint64_t)r), 0, N, 0.0f, 4.0f, imp);
        float scale = powf(10.0f, (float)(r % 8) - 4.0f);
        for (int i = 0; i < N; i++) {
            x[i] *= scale;
            if (r >= ROWS) { /* edge rows */
                switch (r - ROWS) {
                case 0: x[i] = 0; break;
                case 1: x[i] = 0.125f; break;
                case 2: x[i] = i == 7 ? 100.0f : 0.01f * x[i]; break;
                case 3: x[i] = 1e-40f * (float)(i % 5); break;
                case 4: x[i] *= 1e30f; break;
                case 5: x[i] = i % 2 ? 3.4e38f : -3.4e38f; break;
                case 6: x[i] = fabsf(x[i]); break;
                case 7: x[i] = -fabsf(x[i]) - 1; break;
                case 8: imp[i] = i % 32 < 3 ? 50.0f : 0.0f; break;
                case 9: imp[i] = 0; break;
                case 10: x[i] = (float)((i * 7) % 15 - 8) * 0.5f; break;
                default: x[i] = i % 32 == 0 ? 1e20f : 1e-20f * x[i]; break;
                }
            }
        }
        for (int t = 0; t < 4; t++)
            for (int wi = 0; wi < 2; wi++) {
                const float *w = wi ? imp : NULL;
                size_t rb;
                bb_qformat_row_bytes(types[t], N, &rb);
                EXPECT_OK(bb_qformat_encode_row(types[t], x, N, w, a));
                EXPECT_OK(bb_quant_encode_row(types[t], BB_QUANT_SEARCH_FULL, x, N, w, b));
                rows++;
                if (memcmp(a, b, rb) != 0 && bad++ < 3)
                    fprintf(stderr, "  %s row %d importance %d: vectorized full encoding differs\n", bb_ggml_type_name(types[t]),
                            r, wi);
            }
    }
    EXPECT(bad == 0, "%d of %d rows encode differently", bad, rows);
    x[3] = NAN;
    EXPECT_ERR(bb_quant_encode_row(BB_GGML_Q4_0, BB_QUANT_SEARCH_FULL, x, N, NULL, b), BB_ERR_NUMERIC, "element 3");
    EXPECT_ERR(bb_quant_encode_row(BB_GGML_Q4_0, BB_QUANT_SEARCH_FAST, x, N, NULL, b), BB_ERR_NUMERIC, "element 3");
    EXPECT_ERR(bb_quant_encode_row(BB_GGML_Q4_0, BB_QUANT_SEARCH_FAST, x, 48, NULL, b), BB_ERR_ARG, "not a multiple");
    EXPECT_ERR(bb_quant_encode_row(BB_GGML_Q4_0, BB_QUANT_SEARCH_AUTO, x, 32, NULL, b), BB_ERR_ARG, "neither fast");
}

/* Weighted squared error of one decoded block against x. */
static double block_sse(int type, const uint8_t *blk, const float *x, const float *w, int n) {
    float y[256];
    bb_qformat_decode_row(type, blk, n, y);
    double e = 0;
    for (int i = 0; i < n; i++) e += (w ? w[i] : 1.0) * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* quant.search = fast: the vector path writes its plain-C twin's bytes exactly; then its quality
 * against the full search on Gaussian blocks (numpy measured +0.2 % squared error for Q4_0 and +0.6 % for Q5_0
 * with the same candidates; Q8_0 +14 %), and a hand-checked block. */
static void test_fast_search(void) {
    enum { N = 32, BLOCKS = 4000 };
    const int types[] = {BB_GGML_Q8_0, BB_GGML_Q4_0, BB_GGML_Q5_0};
    const double quality[] = {1.20, 1.01, 1.02}; /* fast / full squared error bounds */
    float x[N], imp[N];
    uint8_t a[64], b[64], c[64];
    for (int t = 0; t < 3; t++)
        for (int wi = 0; wi < 2; wi++) {
            int differ = 0;
            double e_fast = 0, e_full = 0;
            for (int r = 0; r < BLOCKS + 12; r++) {
                bb_rng_fill_normal(bb_rng_make(81, (uint64_t)r), 0, N, x);
                bb_rng_fill_uniform(bb_rng_make(82, (uint64_t)r), 0, N, 0.0f, 4.0f, imp);
                const float scale = powf(10.0f, (float)(r % 8) - 4.0f);
                for (int i = 0; i < N; i++) {
                    x[i] *= scale;
                    if (r >= BLOCKS) switch (r - BLOCKS) { /* edge blocks */
                        case 0: x[i] = 0; break;
                        case 1: x[i] = 0.125f; break;
                        case 2: x[i] = i == 7 ? 100.0f : 0.01f * x[i]; break;
                        case 3: x[i] = 1e-40f * (float)(i % 5); break;
                        case 4: x[i] *= 1e30f; break;
                        case 5: x[i] = i % 2 ? 3.4e38f : -3.4e38f; break;
                        case 6: x[i] = fabsf(x[i]); break;
                        case 7: x[i] = -fabsf(x[i]) - 1; break;
                        case 8: imp[i] = i < 3 ? 50.0f : 0.0f; break;
                        case 9: imp[i] = 0; break;
                        case 10: x[i] = (float)((i * 7) % 15 - 8) * 0.5f; break;
                        default: x[i] = i == 0 ? 1e20f : 1e-20f * x[i]; break;
                        }
                }
                const float *w = wi ? imp : NULL;
                size_t rb;
                bb_qformat_row_bytes(types[t], N, &rb);
                bb_quant_encoder(types[t], BB_QUANT_SEARCH_FAST)(x, w, N, a);
                bb_quant_encoder_fast_ref(types[t])(x, w, N, b);
                bb_quant_encoder(types[t], BB_QUANT_SEARCH_FULL)(x, w, N, c);
                const double ea = block_sse(types[t], a, x, w, N);
                if (memcmp(a, b, rb) != 0 && differ++ < 3)
                    fprintf(stderr, "  %s block %d importance %d: fast path %.9g, reference %.9g\n",
                            bb_ggml_type_name(types[t]), r, wi, ea, block_sse(types[t], b, x, w, N));
                if (r < BLOCKS) { /* scale-free sums: every block counts alike */
                    const double s2 = (double)scale * scale;
                    e_fast += ea / s2;
                    e_full += block_sse(types[t], c, x, w, N) / s2;
                }
            }
            EXPECT(differ == 0, "%s importance %d: %d of %d blocks differ from the reference",
                   bb_ggml_type_name(types[t]), wi, differ, BLOCKS + 12);
            EXPECT(e_fast <= quality[t] * e_full && e_fast >= e_full * 0.999,
                   "%s importance %d: fast search error %.6g vs full %.6g (ratio %.4f, bound %.2f)",
                   bb_ggml_type_name(types[t]), wi, e_fast, e_full, e_fast / e_full, quality[t]);
        }
    /* By hand: x = 0..7 and -8..-1 repeated; m = -8 (first largest), the candidate k = 0 on the low end
     * has inverse scale 1, q = x exactly, gain sum x^2, which no candidate beats: d = 1, codes = x + 8. */
    for (int i = 0; i < N; i++) x[i] = (float)((i % 16) - 8);
    EXPECT_NEAR(bb_quant_fit_symmetric_fast_ref(x, NULL, 8), 1.0, 0);
    bb_quant_encoder(BB_GGML_Q4_0, BB_QUANT_SEARCH_FAST)(x, NULL, N, a);
    bb_block_q4_0 q;
    memcpy(&q, a, sizeof q);
    EXPECT(q.d == 0x3c00 && q.qs[0] == 0x00 && q.qs[15] == 0xFF, "exact grid: d 0x%04x, qs %02x..%02x", q.d, q.qs[0],
           q.qs[15]);
}

static void test_rtn(void) {
    layer L = make_layer(8, 256, 512, 11);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.0.attn_q.weight");
    for (int k = 0; k < N_TYPES; k++) {
        o.type = all_types[k];
        bb_quant_result *r = NULL;
        EXPECT_OK(bb_quant_rtn(&o, &in, &r));
        if (!r) continue;
        EXPECT(r->type == o.type && !r->fell_back, "type kept");
        decodes_exactly(r, bb_ggml_type_name(o.type));
        /* With importance off the blocks are exactly qformat's plain encoding. */
        bb_quant_result *p = NULL;
        o.importance = 0;
        o.search = BB_QUANT_SEARCH_FULL;
        EXPECT_OK(bb_quant_rtn(&o, &in, &p));
        uint8_t *ref = malloc(p->row_bytes);
        bb_qformat_encode_row(o.type, L.w, L.cols, NULL, ref);
        EXPECT(memcmp(ref, p->blocks, p->row_bytes) == 0, "%s: plain RTN differs from qformat",
               bb_ggml_type_name(o.type));
        free(ref);
        o.importance = 1;
        o.search = BB_QUANT_SEARCH_AUTO;
        bb_quant_result_destroy(&p);
        bb_quant_result_destroy(&r);
        EXPECT(r == NULL, "destroy nulls");
    }
    bb_quant_result_destroy(NULL);
    free_layer(&L);
}

static void test_fallback(void) {
    layer L = make_layer(4, 96, 256, 12), M = make_layer(4, 40, 256, 13);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.type = BB_GGML_Q4_K;
    bb_quant_input in = input_of(&L, "blk.0.ffn_down.weight"), im = input_of(&M, "blk.0.narrow.weight");
    bb_quant_result *r = NULL;
    EXPECT_OK(bb_quant_gptq(&o, &in, &r));
    EXPECT(r && r->type == BB_GGML_Q5_0 && r->fell_back, "96 columns: Q4_K falls back to Q5_0");
    if (r) decodes_exactly(r, "q4_K->q5_0");
    bb_quant_result_destroy(&r);
    EXPECT_OK(bb_quant_gptq(&o, &im, &r));
    EXPECT(r && r->type == BB_GGML_F16 && r->fell_back, "40 columns: F16");
    if (r) decodes_exactly(r, "q4_K->f16");
    bb_quant_result_destroy(&r);
    o.fallback = BB_GGML_BF16;
    EXPECT_OK(bb_quant_rtn(&o, &im, &r));
    EXPECT(r && r->type == BB_GGML_BF16, "quant.fallback bf16");
    bb_quant_result_destroy(&r);
    o.fallback = BB_GGML_Q8_0;
    EXPECT_ERR(bb_quant_rtn(&o, &im, &r), BB_ERR_ARG, "not a float type");
    free_layer(&L);
    free_layer(&M);
}

/* Every block type: GPTQ's stored blocks decode to Ŵ exactly, with and without act-order; GPTQ
 * beats RTN in tr(E H E^T). (The reference path's blocks are checked in test_gptq_fast_vs_ref.) */
static void test_gptq_exact_and_better(void) {
    layer L = make_layer(32, 512, 1024, 21);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.1.ffn_up.weight");
    for (int ao = 0; ao < 2; ao++)
        for (int k = 0; k < N_TYPES; k++) {
            o.type = all_types[k];
            o.act_order = ao;
            bb_quant_result *g = NULL, *r = NULL;
            EXPECT_OK(bb_quant_gptq(&o, &in, &g));
            EXPECT_OK(bb_quant_rtn(&o, &in, &r));
            if (!g || !r) continue;
            char what[64];
            snprintf(what, sizeof what, "gptq %s act_order %d", bb_ggml_type_name(o.type), ao);
            decodes_exactly(g, what);
            double eg = herr(&L, g), er = herr(&L, r);
            printf("  %-5s act_order %d: tr(EHE^T) rtn %.4g gptq %.4g, ratio %.3f\n", bb_ggml_type_name(o.type), ao, er,
                   eg, eg / er);
            EXPECT(eg < er, "%s: GPTQ %.4g does not beat RTN %.4g", what, eg, er);
            bb_quant_result_destroy(&g);
            bb_quant_result_destroy(&r);
        }
    free_layer(&L);
}

/* Fast (f32, lazy batches, OpenBLAS) against the double reference: a rounding difference can flip
 * a code that sits on a rounding boundary, and the flip then feeds a slightly different error
 * forward along that row (for K types it can also move the next super-block's scales). Criterion:
 * at least 98 % of the weights get the bit-identical value and tr(E H E^T) agrees to 1 %. */
static void test_gptq_fast_vs_ref(void) {
    layer L = make_layer(48, 512, 1024, 31);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.block_size = 96; /* not a multiple of 256: K-type batches round up to whole super-blocks */
    bb_quant_input in = input_of(&L, "blk.2.attn_v.weight");
    const int types[] = {BB_GGML_Q4_0, BB_GGML_Q8_0, BB_GGML_Q4_1, BB_GGML_Q4_K, BB_GGML_Q6_K};
    for (int k = 0; k < 5; k++) {
        o.type = types[k];
        o.act_order = types[k] == BB_GGML_Q4_1;
        bb_quant_result *g = NULL, *gr = NULL;
        EXPECT_OK(bb_quant_gptq(&o, &in, &g));
        EXPECT_OK(bb_quant_gptq_ref(&o, &in, &gr));
        if (!g || !gr) continue;
        decodes_exactly(gr, bb_ggml_type_name(o.type));
        int64_t n = L.rows * L.cols, same = 0;
        double maxd = 0, maxw = 0;
        for (int64_t i = 0; i < n; i++) {
            same += g->w_hat[i] == gr->w_hat[i];
            double d = fabs((double)g->w_hat[i] - gr->w_hat[i]);
            if (d > maxd) maxd = d;
            if (fabs(gr->w_hat[i]) > maxw) maxw = fabs(gr->w_hat[i]);
        }
        double eg = herr(&L, g), egr = herr(&L, gr);
        printf(
            "  %-5s act_order %d, fast vs ref: %.4f %% identical, max |diff| %.3g (max |w| %.3g), err %.6g vs %.6g\n",
            bb_ggml_type_name(o.type), o.act_order, 100.0 * (double)same / (double)n, maxd, maxw, eg, egr);
        EXPECT((double)same >= 0.98 * (double)n, "%s: only %lld of %lld identical", bb_ggml_type_name(o.type),
               (long long)same, (long long)n);
        EXPECT(fabs(eg - egr) <= 0.01 * egr, "%s: error %.6g vs reference %.6g", bb_ggml_type_name(o.type), eg, egr);
        bb_quant_result_destroy(&g);
        bb_quant_result_destroy(&gr);
    }
    free_layer(&L);
}


/* A mask: pruned weights (W already 0 there, as the pipeline leaves them) come out exactly 0 on the
 * symmetric grids in both the fast path and the reference, the two agree as in the dense case, and
 * compensating the pruned positions' updates beats quantizing densely and zeroing them afterwards. */
static void test_gptq_mask(void) {
    layer L = make_layer(40, 512, 1024, 41);
    bb_mask *m = NULL;
    EXPECT_OK(bb_mask_create(L.rows, L.cols, 1, &m));
    if (!m) return;
    for (int64_t i = 0; i < L.rows * L.cols; i++)
        if (bb_rng_uniform(bb_rng_make(42, 0), (uint64_t)i) < 0.4) {
            bb_mask_set(m, i / L.cols, i % L.cols, 0);
            L.w[i] = 0;
        }
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.0.ffn_gate.weight");
    in.mask = m;
    const int types[] = {BB_GGML_Q4_0, BB_GGML_Q8_0, BB_GGML_Q5_0, BB_GGML_Q6_K, BB_GGML_Q4_1};
    for (int k = 0; k < 5; k++) {
        o.type = types[k];
        const char *tn = bb_ggml_type_name(o.type);
        int symmetric = o.type != BB_GGML_Q4_1;
        bb_quant_result *g = NULL, *gr = NULL, *dense = NULL;
        EXPECT_OK(bb_quant_gptq(&o, &in, &g));
        EXPECT_OK(bb_quant_gptq_ref(&o, &in, &gr));
        in.mask = NULL;
        EXPECT_OK(bb_quant_gptq(&o, &in, &dense));
        in.mask = m;
        if (!g || !gr || !dense) continue;
        decodes_exactly(g, tn);
        int64_t nonzero = 0, same = 0, n = L.rows * L.cols;
        for (int64_t i = 0; i < n; i++) {
            int pruned = !bb_mask_get(m, i / L.cols, i % L.cols);
            if (pruned && symmetric) nonzero += (g->w_hat[i] != 0) + (gr->w_hat[i] != 0);
            if (pruned) dense->w_hat[i] = 0; /* the naive way: quantize densely, then zero */
            same += g->w_hat[i] == gr->w_hat[i];
        }
        double eg = herr(&L, g), egr = herr(&L, gr), ed = herr(&L, dense);
        printf("  %-5s mask: err fast %.5g ref %.5g, dense-then-zero %.5g; %.3f %% identical\n", tn, eg, egr, ed,
               100.0 * (double)same / (double)n);
        EXPECT(nonzero == 0, "%s: %lld pruned weights decode to non-zero values", tn, (long long)nonzero);
        EXPECT((double)same >= 0.98 * (double)n, "%s: fast and reference agree on %lld of %lld", tn, (long long)same,
               (long long)n);
        EXPECT(fabs(eg - egr) <= 0.01 * egr, "%s: error %.6g vs reference %.6g", tn, eg, egr);
        EXPECT(eg < ed, "%s: mask-aware GPTQ %.6g does not beat dense-then-zero %.6g", tn, eg, ed);
        bb_quant_result_destroy(&g);
        bb_quant_result_destroy(&gr);
        bb_quant_result_destroy(&dense);
    }
    bb_mask *bad = NULL;
    EXPECT_OK(bb_mask_create(L.rows, L.cols - 1, 1, &bad));
    in.mask = bad;
    bb_quant_result *g = NULL;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &g), BB_ERR_ARG, "GPTQ mask is");
    bb_mask_destroy(&bad);
    bb_mask_destroy(&m);
    free_layer(&L);
}

/* Extreme rows (zero, tiny, subnormal-scale, huge) and a tiny-scaled H: every type still stores
 * exactly the values GPTQ used, and they are finite. */
static void test_extreme_rows(void) {
    layer L = make_layer(6, 256, 512, 81);
    for (int64_t j = 0; j < L.cols; j++) {
        L.w[0 * L.cols + j] = 0;
        L.w[1 * L.cols + j] *= 1e-30f;
        L.w[2 * L.cols + j] = j % 37 == 0 ? 1e-3f : 1e-38f;
        L.w[3 * L.cols + j] *= 1e6f;
        L.w[4 * L.cols + j] = j == 100 ? 5.0f : L.w[4 * L.cols + j];
    }
    for (int64_t i = 0; i < L.cols * L.cols; i++) L.h[i] *= 1e-20f;
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.0.extreme.weight");
    for (int k = 0; k < N_TYPES; k++) {
        o.type = all_types[k];
        bb_quant_result *g = NULL;
        EXPECT_OK(bb_quant_gptq(&o, &in, &g));
        if (!g) continue;
        decodes_exactly(g, bb_ggml_type_name(o.type));
        int finite = 1;
        for (int64_t i = 0; i < L.rows * L.cols; i++) finite &= isfinite(g->w_hat[i]) != 0;
        EXPECT(finite, "%s: non-finite output", bb_ggml_type_name(o.type));
        bb_quant_result_destroy(&g);
    }
    free_layer(&L);
}

/* Rows are independent (given H): 1, 2 or 5 threads give identical bytes, GPTQ and RTN. */
static void test_threads(void) {
    layer L = make_layer(37, 256, 512, 35);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.type = BB_GGML_Q4_K;
    bb_quant_input in = input_of(&L, "blk.0.ffn_gate.weight");
    bb_quant_result *r[3] = {NULL, NULL, NULL};
    const int threads[3] = {1, 2, 5};
    for (int k = 0; k < 3; k++) {
        o.threads = threads[k];
        EXPECT_OK(bb_quant_gptq(&o, &in, &r[k]));
    }
    if (r[0] && r[1] && r[2])
        for (int k = 1; k < 3; k++)
            EXPECT(memcmp(r[0]->blocks, r[k]->blocks, r[0]->row_bytes * (size_t)L.rows) == 0 &&
                       memcmp(r[0]->w_hat, r[k]->w_hat, sizeof(float) * (size_t)(L.rows * L.cols)) == 0,
                   "%d threads differ from 1", threads[k]);
    for (int k = 0; k < 3; k++) bb_quant_result_destroy(&r[k]);
    o.type = BB_GGML_Q4_0;
    for (int k = 0; k < 3; k++) {
        o.threads = threads[k];
        EXPECT_OK(bb_quant_rtn(&o, &in, &r[k]));
    }
    if (r[0] && r[1] && r[2])
        for (int k = 1; k < 3; k++)
            EXPECT(memcmp(r[0]->blocks, r[k]->blocks, r[0]->row_bytes * (size_t)L.rows) == 0,
                   "RTN: %d threads differ from 1", threads[k]);
    for (int k = 0; k < 3; k++) bb_quant_result_destroy(&r[k]);
    free_layer(&L);
}

/* A dead input (H_jj = 0, an input that is always zero) gets zero weight before quantization. */
static void test_dead_inputs(void) {
    layer L = make_layer(8, 64, 256, 41);
    for (int64_t j = 0; j < L.cols; j++) L.h[5 * L.cols + j] = L.h[j * L.cols + 5] = 0;
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.0.attn_k.weight");
    bb_quant_result *g = NULL;
    EXPECT_OK(bb_quant_gptq(&o, &in, &g));
    if (g) {
        EXPECT(g->dead == 1, "dead inputs counted: %lld", (long long)g->dead);
        int zero = 1;
        for (int64_t i = 0; i < L.rows; i++) zero &= g->w_hat[i * L.cols + 5] == 0;
        EXPECT(zero, "a dead input's weights are quantized to 0 (symmetric grid)");
        decodes_exactly(g, "dead input");
    }
    bb_quant_result_destroy(&g);
    free_layer(&L);
}

/* An indefinite H fails Cholesky at the configured damping: damping rises x10 with one warning;
 * beyond damp_max the error is BB_ERR_NUMERIC naming the tensor. */
static void test_damping(void) {
    const int64_t n = 64, samples = 8;
    layer L = make_layer(8, n, samples, 51); /* rank 8 < 64: singular */
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += L.h[j * (n + 1)] / (double)n;
    for (int64_t j = 0; j < n; j++) L.h[j * (n + 1)] -= (float)(0.005 * mean);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    o.damp = 0.001;
    bb_quant_input in = input_of(&L, "blk.3.attn_o.weight");
    bb_quant_result *g = NULL, *gr = NULL;
    EXPECT_OK(bb_quant_gptq(&o, &in, &g));
    EXPECT_OK(bb_quant_gptq_ref(&o, &in, &gr));
    EXPECT(g && fabs(g->damp - 0.01) < 1e-12, "fast path raised damping to 0.01 (got %g)", g ? g->damp : -1);
    EXPECT(gr && fabs(gr->damp - 0.01) < 1e-12, "reference raised damping to 0.01 (got %g)", gr ? gr->damp : -1);
    if (g) decodes_exactly(g, "raised damping");
    bb_quant_result_destroy(&g);
    bb_quant_result_destroy(&gr);
    /* quant.damp_max caps the raise: 0.001 -> 0.01 is needed, a cap of 0.005 stops at 0.001 and fails. */
    o.damp_max = 0.005;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &g), BB_ERR_NUMERIC, "damp_max");
    EXPECT_ERR(bb_quant_gptq_ref(&o, &in, &gr), BB_ERR_NUMERIC, "damp_max");
    o.damp_max = 0.01;
    EXPECT_OK(bb_quant_gptq(&o, &in, &g));
    EXPECT(g && fabs(g->damp - 0.01) < 1e-12, "a cap equal to the needed damping still factorizes");
    bb_quant_result_destroy(&g);
    o.damp_max = 10;
    for (int64_t j = 0; j < n; j++) L.h[j * (n + 1)] -= (float)(100 * mean);
    EXPECT_ERR(bb_quant_gptq(&o, &in, &g), BB_ERR_NUMERIC, "blk.3.attn_o.weight: the Gram H is not positive definite");
    EXPECT_ERR(bb_quant_gptq_ref(&o, &in, &g), BB_ERR_NUMERIC, "not positive definite");
    EXPECT(g == NULL, "no result on error");
    free_layer(&L);
}

static void test_bad_input(void) {
    layer L = make_layer(4, 64, 128, 61);
    bb_quant_opts o;
    bb_quant_opts_default(&o);
    bb_quant_input in = input_of(&L, "blk.7.ffn_gate.weight");
    bb_quant_result *r = NULL;
    L.w[2 * 64 + 9] = NAN;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &r), BB_ERR_NUMERIC, "blk.7.ffn_gate.weight: weight (2, 9) is nan");
    EXPECT_ERR(bb_quant_rtn(&o, &in, &r), BB_ERR_NUMERIC, "weight (2, 9)");
    L.w[2 * 64 + 9] = 0;
    L.h[3] = INFINITY;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &r), BB_ERR_NUMERIC, "Gram H (0, 3) is inf");
    L.h[3] = L.h[3 * 64];
    float imp[64];
    for (int j = 0; j < 64; j++) imp[j] = 1;
    imp[7] = -1;
    in.importance = imp;
    EXPECT_ERR(bb_quant_rtn(&o, &in, &r), BB_ERR_NUMERIC, "importance of input 7");
    in.importance = NULL;
    in.h = NULL;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &r), BB_ERR_ARG, "needs the Gram");
    EXPECT_OK(bb_quant_rtn(&o, &in, &r)); /* RTN runs without statistics */
    bb_quant_result_destroy(&r);
    in.h = L.h;
    o.block_size = 0;
    EXPECT_ERR(bb_quant_gptq(&o, &in, &r), BB_ERR_ARG, "block_size");
    EXPECT(r == NULL, "no result on error");
    free_layer(&L);
}

int main(void) {
    TEST_RUN(test_registry);
    TEST_RUN(test_full_encoder);
    TEST_RUN(test_fast_search);
    TEST_RUN(test_rtn);
    TEST_RUN(test_fallback);
    TEST_RUN(test_gptq_exact_and_better);
    TEST_RUN(test_gptq_fast_vs_ref);
    TEST_RUN(test_gptq_mask);
    TEST_RUN(test_extreme_rows);
    TEST_RUN(test_threads);
    TEST_RUN(test_dead_inputs);
    TEST_RUN(test_damping);
    TEST_RUN(test_bad_input);
    return TEST_DONE();
}
