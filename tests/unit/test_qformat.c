/* test_qformat.c — GGUF block formats: layouts, registry, row API errors, fallback rule, round-trip
 * error bounds, edge magnitudes, importance weighting, and the gain over naive max-abs RTN. */
#include <float.h>
#include <stdint.h>

#include "core/dtype.h"
#include "io/qformat.h"
#include "test.h"

/* Round-trip bound per type: RMSE / RMS on Gaussian rows. Measured values (docs/formats-quant.md)
 * are well below; the margin absorbs RNG changes, not algorithm regressions. */
static const struct {
    int type;
    double bound;
} bounds[] = {
    {BB_GGML_F32, 0},      {BB_GGML_F16, 0.0005}, {BB_GGML_BF16, 0.003}, {BB_GGML_Q8_0, 0.0055}, {BB_GGML_Q6_K, 0.019},
    {BB_GGML_Q5_1, 0.038}, {BB_GGML_Q5_K, 0.040}, {BB_GGML_Q5_0, 0.045}, {BB_GGML_Q4_1, 0.080},  {BB_GGML_Q4_K, 0.080},
    {BB_GGML_Q4_0, 0.090}, {BB_GGML_Q3_K, 0.165}, {BB_GGML_Q2_K, 0.31},
};

#define ROW 4096
#define NROWS 8

static uint64_t lcg_state = 0x9e3779b97f4a7c15ull;
static double uniform01(void) {
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((lcg_state >> 11) + 0.5) * 0x1p-53;
}
static float gauss(void) { return (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01())); }

/* Encode + decode one row through the checked API. */
static bb_status roundtrip(int type, const float *x, int64_t n, const float *imp, float *y) {
    size_t bytes;
    BB_CALL(bb_qformat_row_bytes(type, n, &bytes));
    uint8_t *buf = malloc(bytes);
    BB_CHECK(buf != NULL, BB_ERR_OOM, "test buffer");
    bb_status st = bb_qformat_encode_row(type, x, n, imp, buf);
    if (st == BB_OK) st = bb_qformat_decode_row(type, buf, n, y);
    free(buf);
    return st;
}

static double rel_rmse(const float *x, const float *y, size_t n, const float *w) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0;
        e += wi * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += wi * (double)x[i] * x[i];
    }
    return sqrt(e / s);
}

static void test_layouts(void) {
    static const struct {
        int type;
        size_t size;
    } sizes[] = {
        {BB_GGML_Q4_0, sizeof(bb_block_q4_0)}, {BB_GGML_Q4_1, sizeof(bb_block_q4_1)},
        {BB_GGML_Q5_0, sizeof(bb_block_q5_0)}, {BB_GGML_Q5_1, sizeof(bb_block_q5_1)},
        {BB_GGML_Q8_0, sizeof(bb_block_q8_0)}, {BB_GGML_Q2_K, sizeof(bb_block_q2_k)},
        {BB_GGML_Q3_K, sizeof(bb_block_q3_k)}, {BB_GGML_Q4_K, sizeof(bb_block_q4_k)},
        {BB_GGML_Q5_K, sizeof(bb_block_q5_k)}, {BB_GGML_Q6_K, sizeof(bb_block_q6_k)},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const bb_qformat_traits *t = bb_qformat_info(sizes[i].type);
        EXPECT(t && (size_t)t->block_bytes == sizes[i].size, "type %d: block bytes vs struct size %zu", sizes[i].type,
               sizes[i].size);
    }
    /* The registry agrees with the GGUF reader's table of ggml types. */
    int n;
    const int *types = bb_qformat_types(&n);
    EXPECT(n == 13, "%d encodable types", n);
    for (int i = 0; i < n; i++) {
        const bb_qformat_traits *t = bb_qformat_info(types[i]);
        const bb_ggml_type_traits *g = bb_ggml_type_info(types[i]);
        EXPECT(t && g && t->type == types[i], "type %d present in both tables", types[i]);
        if (!t || !g) continue;
        EXPECT(t->blck == g->blck_size && t->block_bytes == g->type_size && strcmp(t->name, g->name) == 0,
               "%s: qformat (%d, %d) vs gguf %s (%d, %d)", t->name, t->blck, t->block_bytes, g->name, g->blck_size,
               g->type_size);
        EXPECT_NEAR(t->bits_per_weight, 8.0 * t->block_bytes / t->blck, 1e-12);
    }
    EXPECT_NEAR(bb_qformat_info(BB_GGML_Q4_K)->bits_per_weight, 4.5, 0);
    EXPECT_NEAR(bb_qformat_info(BB_GGML_Q2_K)->bits_per_weight, 2.625, 0);
    EXPECT_NEAR(bb_qformat_info(BB_GGML_Q6_K)->bits_per_weight, 6.5625, 0);
    EXPECT(bb_qformat_info(BB_GGML_Q8_1) == NULL && bb_qformat_info(BB_GGML_Q8_K) == NULL &&
               bb_qformat_info(BB_GGML_IQ4_NL) == NULL && bb_qformat_info(-1) == NULL &&
               bb_qformat_info(BB_GGML_TYPE_COUNT) == NULL && bb_qformat_info(4) == NULL,
           "types without an encoder have no traits");
}

static void test_parse_name(void) {
    int t = -1;
    EXPECT_OK(bb_qformat_parse_name("q4_k", &t));
    EXPECT(t == BB_GGML_Q4_K, "q4_k -> %d", t);
    EXPECT_OK(bb_qformat_parse_name("Q6_K", &t));
    EXPECT(t == BB_GGML_Q6_K, "Q6_K -> %d", t);
    EXPECT_OK(bb_qformat_parse_name("BF16", &t));
    EXPECT(t == BB_GGML_BF16, "BF16 -> %d", t);
    EXPECT_OK(bb_qformat_parse_name("q8_0", &t));
    EXPECT(t == BB_GGML_Q8_0, "q8_0 -> %d", t);
    EXPECT_ERR(bb_qformat_parse_name("q4", &t), BB_ERR_CONFIG, "unknown tensor type \"q4\"");
    EXPECT_ERR(bb_qformat_parse_name("q4_k_m", &t), BB_ERR_CONFIG, "valid types");
    EXPECT_ERR(bb_qformat_parse_name("iq4_nl", &t), BB_ERR_CONFIG, "q2_k");
}

static void test_fallback(void) {
    static const struct {
        int type;
        int64_t n;
        int want;
    } cases[] = {
        {BB_GGML_Q4_K, 4096, BB_GGML_Q4_K},
        {BB_GGML_Q4_K, 288, BB_GGML_Q5_0},
        {BB_GGML_Q5_K, 96, BB_GGML_Q5_1},
        {BB_GGML_Q6_K, 32, BB_GGML_Q8_0},
        {BB_GGML_Q2_K, 64, BB_GGML_Q4_0},
        {BB_GGML_Q3_K, 800, BB_GGML_Q4_0},
        {BB_GGML_Q4_K, 172, BB_GGML_F16},
        {BB_GGML_Q6_K, 100, BB_GGML_F16},
        {BB_GGML_Q4_0, 172, BB_GGML_F16},
        {BB_GGML_Q8_0, 64, BB_GGML_Q8_0},
        {BB_GGML_Q4_1, 33, BB_GGML_F16},
        {BB_GGML_F16, 7, BB_GGML_F16},
        {BB_GGML_BF16, 1, BB_GGML_BF16},
        {BB_GGML_F32, 3, BB_GGML_F32},
        {BB_GGML_Q4_K, 0, -1},
        {BB_GGML_Q8_K, 256, -1},
        {BB_GGML_IQ2_XS, 256, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = bb_qformat_fallback(cases[i].type, cases[i].n);
        EXPECT(got == cases[i].want, "fallback(%s, %lld) = %d, want %d", bb_ggml_type_name(cases[i].type),
               (long long)cases[i].n, got, cases[i].want);
        /* Whatever the rule returns must accept the row. */
        size_t bytes;
        if (got >= 0) EXPECT_OK(bb_qformat_row_bytes(got, cases[i].n, &bytes));
    }
}

static void test_row_errors(void) {
    size_t bytes = 0;
    EXPECT_OK(bb_qformat_row_bytes(BB_GGML_Q4_K, 512, &bytes));
    EXPECT(bytes == 288, "q4_K 512 -> %zu bytes", bytes);
    EXPECT_OK(bb_qformat_row_bytes(BB_GGML_BF16, 3, &bytes));
    EXPECT(bytes == 6, "bf16 3 -> %zu bytes", bytes);
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q4_K, 172, &bytes), BB_ERR_ARG, "not a multiple of the block size 256");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q4_K, 172, &bytes), BB_ERR_ARG, "stores this row as f16");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q4_K, 288, &bytes), BB_ERR_ARG, "stores this row as q5_0");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q6_K, 96, &bytes), BB_ERR_ARG, "stores this row as q8_0");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q4_0, 31, &bytes), BB_ERR_ARG, "q4_0: a row of 31 elements");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q8_0, 0, &bytes), BB_ERR_ARG, "must be positive");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_Q8_K, 256, &bytes), BB_ERR_ARG, "no birdbone encoder");
    EXPECT_ERR(bb_qformat_row_bytes(BB_GGML_F32, INT64_MAX, &bytes), BB_ERR_ARG, "overflows");

    float x[64], y[64], imp[64];
    uint8_t buf[256];
    for (int i = 0; i < 64; i++) x[i] = imp[i] = (float)i;
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q4_K, x, 64, NULL, buf), BB_ERR_ARG, "stores this row as q5_0");
    EXPECT_ERR(bb_qformat_decode_row(BB_GGML_Q5_0, buf, 48, y), BB_ERR_ARG, "not a multiple of the block size 32");
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q8_0, NULL, 64, NULL, buf), BB_ERR_ARG, "NULL input row");
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q8_0, x, 64, NULL, NULL), BB_ERR_ARG, "NULL destination");
    EXPECT_ERR(bb_qformat_decode_row(BB_GGML_Q8_0, NULL, 64, y), BB_ERR_ARG, "NULL blocks");
    x[5] = NAN;
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q8_0, x, 64, NULL, buf), BB_ERR_NUMERIC, "element 5 is nan");
    x[5] = INFINITY;
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_F16, x, 64, NULL, buf), BB_ERR_NUMERIC, "element 5 is inf");
    x[5] = 5;
    imp[9] = -1;
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q4_0, x, 64, imp, buf), BB_ERR_NUMERIC,
               "element 9 is -1; weights must be >= 0");
    imp[9] = NAN;
    EXPECT_ERR(bb_qformat_encode_row(BB_GGML_Q4_0, x, 64, imp, buf), BB_ERR_NUMERIC, "importance: element 9");
    EXPECT_OK(bb_qformat_check_finite(x, 64, "x"));
}

static void test_roundtrip_bounds(void) {
    float *x = malloc(sizeof(float) * ROW * NROWS), *y = malloc(sizeof(float) * ROW * NROWS);
    for (int i = 0; i < ROW * NROWS; i++) x[i] = 0.02f * gauss();
    for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
        for (int r = 0; r < NROWS; r++) EXPECT_OK(roundtrip(bounds[k].type, x + r * ROW, ROW, NULL, y + r * ROW));
        double e = rel_rmse(x, y, (size_t)ROW * NROWS, NULL);
        printf("  %-5s round-trip RMSE/RMS %.5f (bound %.4f)\n", bb_ggml_type_name(bounds[k].type), e, bounds[k].bound);
        EXPECT(e <= bounds[k].bound, "%s: RMSE/RMS %.5f above %.4f", bb_ggml_type_name(bounds[k].type), e,
               bounds[k].bound);
    }
    free(x);
    free(y);
}

/* Naive max-abs RTN reconstruction, the baseline the search must beat: one scale per (sub-)block
 * putting the largest |x| (symmetric) or the range (affine) on the grid's ends, fp16 scales, and
 * for K types the sub-block scales quantized against the largest one. */
typedef struct {
    int type, sub, affine, qlo, qhi, smax; /* smax 0: no second-level quantization */
} naive_spec;

static void naive_rtn(const naive_spec *sp, const float *x, size_t n, float *y) {
    int blk = sp->smax ? BB_QK_K : BB_QK;
    for (size_t b0 = 0; b0 < n; b0 += (size_t)blk) {
        int nsub = blk / sp->sub;
        double s[16], m[16], smx = 0, mmx = 0;
        for (int j = 0; j < nsub; j++) {
            const float *xs = x + b0 + (size_t)j * sp->sub;
            double lo = xs[0], hi = xs[0], big = 0;
            for (int i = 0; i < sp->sub; i++) {
                lo = fmin(lo, xs[i]);
                hi = fmax(hi, xs[i]);
                if (fabs(xs[i]) > fabs(big)) big = xs[i];
            }
            if (sp->affine) {
                if (sp->smax && lo > 0) lo = 0;
                s[j] = (hi - lo) / sp->qhi;
                m[j] = -lo;
            } else {
                s[j] = big / sp->qlo;
                m[j] = 0;
            }
            if (fabs(s[j]) > fabs(smx)) smx = s[j];
            mmx = fmax(mmx, m[j]);
        }
        float d = 0, dm = 0;
        if (sp->smax) {
            d = bb_f16_to_f32(bb_f32_to_f16((float)(sp->affine ? smx / sp->smax : smx / -sp->smax)));
            dm = bb_f16_to_f32(bb_f32_to_f16((float)(mmx / sp->smax)));
        }
        for (int j = 0; j < nsub; j++) {
            float dl, ml;
            if (sp->smax) {
                int lo = sp->affine ? 0 : -sp->smax, hi = sp->affine ? sp->smax : sp->smax - 1;
                dl = d * (float)(d != 0 ? bb_qformat_nearest(s[j] / d, lo, hi) : 0);
                ml = dm * (float)(dm != 0 ? bb_qformat_nearest(m[j] / dm, 0, sp->smax) : 0);
            } else {
                dl = bb_f16_to_f32(bb_f32_to_f16((float)s[j]));
                ml = bb_f16_to_f32(bb_f32_to_f16((float)m[j]));
            }
            for (int i = 0; i < sp->sub; i++) {
                size_t e = b0 + (size_t)j * sp->sub + (size_t)i;
                int q = dl != 0 ? bb_qformat_nearest((x[e] + (double)ml) / dl, sp->qlo, sp->qhi) : 0;
                y[e] = dl * (float)q - ml;
            }
        }
    }
}

static const naive_spec naive_specs[] = {
    {BB_GGML_Q8_0, 32, 0, -127, 127, 0}, {BB_GGML_Q4_0, 32, 0, -8, 7, 0},  {BB_GGML_Q5_0, 32, 0, -16, 15, 0},
    {BB_GGML_Q4_1, 32, 1, 0, 15, 0},     {BB_GGML_Q5_1, 32, 1, 0, 31, 0},  {BB_GGML_Q2_K, 16, 1, 0, 3, 15},
    {BB_GGML_Q3_K, 16, 0, -4, 3, 32},    {BB_GGML_Q4_K, 32, 1, 0, 15, 63}, {BB_GGML_Q5_K, 32, 1, 0, 31, 63},
    {BB_GGML_Q6_K, 16, 0, -32, 31, 128},
};

static void test_better_than_naive(void) {
    float *x = malloc(sizeof(float) * ROW * NROWS), *y = malloc(sizeof(float) * ROW * NROWS),
          *z = malloc(sizeof(float) * ROW * NROWS);
    for (int i = 0; i < ROW * NROWS; i++) x[i] = 0.02f * gauss();
    for (size_t k = 0; k < sizeof naive_specs / sizeof naive_specs[0]; k++) {
        const naive_spec *sp = &naive_specs[k];
        for (int r = 0; r < NROWS; r++) EXPECT_OK(roundtrip(sp->type, x + r * ROW, ROW, NULL, y + r * ROW));
        naive_rtn(sp, x, (size_t)ROW * NROWS, z);
        double e = rel_rmse(x, y, (size_t)ROW * NROWS, NULL), e0 = rel_rmse(x, z, (size_t)ROW * NROWS, NULL);
        printf("  %-5s searched %.5f vs naive max-abs RTN %.5f (%.1f %% lower)\n", bb_ggml_type_name(sp->type), e, e0,
               100 * (1 - e / e0));
        /* Q8_0 gains little (its grid is already fine); the low-bit types must gain clearly. */
        EXPECT(e < (sp->type == BB_GGML_Q8_0 ? 1.0 : 0.97) * e0, "%s: searched %.5f not below naive %.5f",
               bb_ggml_type_name(sp->type), e, e0);
    }
    free(x);
    free(y);
    free(z);
}

static void test_importance(void) {
    const int n = 2048;
    float *x = malloc(sizeof(float) * n), *imp = malloc(sizeof(float) * n), *y0 = malloc(sizeof(float) * n),
          *y1 = malloc(sizeof(float) * n);
    /* Skewed importance, as activation statistics are: a few channels carry most of the weight. */
    for (int i = 0; i < n; i++) {
        x[i] = gauss();
        imp[i] = uniform01() < 0.1 ? 50.0f : 0.5f;
    }
    for (size_t k = 0; k < sizeof naive_specs / sizeof naive_specs[0]; k++) {
        int type = naive_specs[k].type;
        EXPECT_OK(roundtrip(type, x, n, NULL, y0));
        EXPECT_OK(roundtrip(type, x, n, imp, y1));
        double e0 = rel_rmse(x, y0, n, imp), e1 = rel_rmse(x, y1, n, imp);
        printf("  %-5s weighted error: plain %.5f, importance-weighted %.5f\n", bb_ggml_type_name(type), e0, e1);
        EXPECT(e1 < e0, "%s: importance did not lower the weighted error (%.5f vs %.5f)", bb_ggml_type_name(type), e1,
               e0);
    }
    /* All-zero importance means "no preference": identical to no importance. */
    const bb_qformat_traits *t = bb_qformat_info(BB_GGML_Q4_K);
    uint8_t a[1152], b[1152];
    float zero[512] = {0};
    t->encode_ref(x, NULL, 512, a);
    t->encode_ref(x, zero, 512, b);
    EXPECT(memcmp(a, b, 288) == 0, "zero importance equals no importance");
    free(x);
    free(imp);
    free(y0);
    free(y1);
}

static int all_finite(const float *y, size_t n, size_t *bad) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(y[i])) {
            *bad = i;
            return 0;
        }
    return 1;
}

static void test_edge_magnitudes(void) {
    const int n = 512;
    float x[512], y[512];
    int nt;
    const int *types = bb_qformat_types(&nt);
    const struct {
        const char *what;
        double scale;
    } cases[] = {{"zeros", 0},   {"1e-30", 1e-30},     {"1e-40 subnormal", 1e-40}, {"1e-6", 1e-6},
                 {"1e30", 1e30}, {"FLT_MAX", FLT_MAX}, {"mixed 1e30/1e-30", -1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < n; i++) {
            double g = uniform01() * 2 - 1;
            double s = cases[c].scale >= 0 ? cases[c].scale : (i / 16) % 2 ? 1e30 : 1e-30;
            x[i] = (float)(g * s);
        }
        if (cases[c].scale == FLT_MAX) x[3] = FLT_MAX, x[200] = -FLT_MAX;
        for (int k = 0; k < nt; k++) {
            EXPECT_OK(roundtrip(types[k], x, n, NULL, y));
            size_t bad = 0;
            EXPECT(all_finite(y, n, &bad), "%s on %s: y[%zu] = %g", bb_ggml_type_name(types[k]), cases[c].what, bad,
                   (double)y[bad]);
            if (cases[c].scale == 0) {
                int zero = 1;
                for (int i = 0; i < n; i++) zero &= y[i] == 0;
                EXPECT(zero, "%s: an all-zero row decodes to zeros", bb_ggml_type_name(types[k]));
            }
        }
    }
    /* A block that is constant (Q4_1/Q5_1 store it exactly as the min when it is an fp16 value). */
    for (int i = 0; i < 32; i++) x[i] = 0.375f;
    EXPECT_OK(roundtrip(BB_GGML_Q4_1, x, 32, NULL, y));
    EXPECT(y[0] == 0.375f && y[31] == 0.375f, "constant block: %g", (double)y[0]);
}

/* Values on a 32-element format's grid come back exactly: the search finds the grid. Compared
 * with == (a 0 may come back as -0 when the scale is negative). */
static int same_values(const float *x, const float *y, int n) {
    for (int i = 0; i < n; i++)
        if (x[i] != y[i]) return 0;
    return 1;
}

static void test_lossless_on_grid(void) {
    float x[64], y[64];
    for (int i = 0; i < 64; i++) x[i] = 0.25f * (float)((i * 7) % 16 - 8);
    EXPECT_OK(roundtrip(BB_GGML_Q4_0, x, 64, NULL, y));
    EXPECT(same_values(x, y, 64), "q4_0 on its grid: y[1]=%g x[1]=%g", (double)y[1], (double)x[1]);
    for (int i = 0; i < 64; i++) x[i] = 0.125f * (float)((i * 5) % 16) - 1.0f;
    EXPECT_OK(roundtrip(BB_GGML_Q4_1, x, 64, NULL, y));
    EXPECT(same_values(x, y, 64), "q4_1 on its grid");
    for (int i = 0; i < 64; i++) x[i] = 0.5f * (float)((i * 11) % 32 - 16);
    EXPECT_OK(roundtrip(BB_GGML_Q5_0, x, 64, NULL, y));
    EXPECT(same_values(x, y, 64), "q5_0 on its grid");
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 37) % 255 - 127);
    EXPECT_OK(roundtrip(BB_GGML_Q8_0, x, 64, NULL, y));
    EXPECT(same_values(x, y, 64), "q8_0 on its grid");
}

/* Blocks read from any address (mmap'd tensors); encoding is deterministic. */
static void test_unaligned_and_deterministic(void) {
    float x[512], y0[512], y1[512];
    uint8_t a[512 * 4 + 1], b[512 * 4 + 1];
    int nt;
    const int *types = bb_qformat_types(&nt);
    for (int i = 0; i < 512; i++) x[i] = gauss();
    for (int k = 0; k < nt; k++) {
        size_t bytes;
        EXPECT_OK(bb_qformat_row_bytes(types[k], 512, &bytes));
        EXPECT_OK(bb_qformat_encode_row(types[k], x, 512, NULL, a));
        EXPECT_OK(bb_qformat_encode_row(types[k], x, 512, NULL, b + 1));
        EXPECT(memcmp(a, b + 1, bytes) == 0, "%s: encoding is deterministic", bb_ggml_type_name(types[k]));
        EXPECT_OK(bb_qformat_decode_row(types[k], a, 512, y0));
        EXPECT_OK(bb_qformat_decode_row(types[k], b + 1, 512, y1));
        EXPECT(memcmp(y0, y1, sizeof y0) == 0, "%s: unaligned decode", bb_ggml_type_name(types[k]));
    }
}

int main(void) {
    TEST_RUN(test_layouts);
    TEST_RUN(test_parse_name);
    TEST_RUN(test_fallback);
    TEST_RUN(test_row_errors);
    TEST_RUN(test_roundtrip_bounds);
    TEST_RUN(test_better_than_naive);
    TEST_RUN(test_importance);
    TEST_RUN(test_edge_magnitudes);
    TEST_RUN(test_lossless_on_grid);
    TEST_RUN(test_unaligned_and_deterministic);
    return TEST_DONE();
}
