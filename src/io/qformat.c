/* qformat.c — block format registry, checked row API, scale search, and the float and 32-element types. */

/* Decoders must round every product and sum to f32 separately, as ggml's reference and the gguf
 * package do; a fused multiply-add (GCC contracts across statements under -mfma) would change
 * the last bit. GCC ignores the STDC pragma, hence its own. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "io/qformat.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/dtype.h"

#define F16_MAX 65504.0
/* The largest finite bf16 (0x7f7f); larger finite floats would round to Inf. */
#define BF16_MAX 3.38953138925153547590470800371487866880e38f

/* ---- registry ---- */

#define BB_QF(id, nm, bl, by, enc, dec)                                                                                \
    [id] = {.type = id,                                                                                                \
            .name = nm,                                                                                                \
            .blck = bl,                                                                                                \
            .block_bytes = by,                                                                                         \
            .bits_per_weight = 8.0 * (by) / (bl),                                                                      \
            .encode_ref = enc,                                                                                         \
            .decode_ref = dec}

static const bb_qformat_traits qf_table[BB_GGML_TYPE_COUNT] = {
    BB_QF(BB_GGML_F32, "f32", 1, 4, bb_qformat_encode_f32, bb_qformat_decode_f32),
    BB_QF(BB_GGML_F16, "f16", 1, 2, bb_qformat_encode_f16, bb_qformat_decode_f16),
    BB_QF(BB_GGML_BF16, "bf16", 1, 2, bb_qformat_encode_bf16, bb_qformat_decode_bf16),
    BB_QF(BB_GGML_Q8_0, "q8_0", BB_QK, sizeof(bb_block_q8_0), bb_qformat_encode_q8_0, bb_qformat_decode_q8_0),
    BB_QF(BB_GGML_Q4_0, "q4_0", BB_QK, sizeof(bb_block_q4_0), bb_qformat_encode_q4_0, bb_qformat_decode_q4_0),
    BB_QF(BB_GGML_Q4_1, "q4_1", BB_QK, sizeof(bb_block_q4_1), bb_qformat_encode_q4_1, bb_qformat_decode_q4_1),
    BB_QF(BB_GGML_Q5_0, "q5_0", BB_QK, sizeof(bb_block_q5_0), bb_qformat_encode_q5_0, bb_qformat_decode_q5_0),
    BB_QF(BB_GGML_Q5_1, "q5_1", BB_QK, sizeof(bb_block_q5_1), bb_qformat_encode_q5_1, bb_qformat_decode_q5_1),
    BB_QF(BB_GGML_Q2_K, "q2_K", BB_QK_K, sizeof(bb_block_q2_k), bb_qformat_encode_q2_k, bb_qformat_decode_q2_k),
    BB_QF(BB_GGML_Q3_K, "q3_K", BB_QK_K, sizeof(bb_block_q3_k), bb_qformat_encode_q3_k, bb_qformat_decode_q3_k),
    BB_QF(BB_GGML_Q4_K, "q4_K", BB_QK_K, sizeof(bb_block_q4_k), bb_qformat_encode_q4_k, bb_qformat_decode_q4_k),
    BB_QF(BB_GGML_Q5_K, "q5_K", BB_QK_K, sizeof(bb_block_q5_k), bb_qformat_encode_q5_k, bb_qformat_decode_q5_k),
    BB_QF(BB_GGML_Q6_K, "q6_K", BB_QK_K, sizeof(bb_block_q6_k), bb_qformat_encode_q6_k, bb_qformat_decode_q6_k),
};

static const int qf_order[] = {BB_GGML_F32,  BB_GGML_F16,  BB_GGML_BF16, BB_GGML_Q8_0, BB_GGML_Q4_0,
                               BB_GGML_Q4_1, BB_GGML_Q5_0, BB_GGML_Q5_1, BB_GGML_Q2_K, BB_GGML_Q3_K,
                               BB_GGML_Q4_K, BB_GGML_Q5_K, BB_GGML_Q6_K};

const bb_qformat_traits *bb_qformat_info(int type) {
    if (type < 0 || type >= BB_GGML_TYPE_COUNT || !qf_table[type].encode_ref) return NULL;
    return &qf_table[type];
}

const int *bb_qformat_types(int *n) {
    *n = (int)(sizeof qf_order / sizeof qf_order[0]);
    return qf_order;
}

bb_status bb_qformat_parse_name(const char *name, int *type) {
    BB_CHECK(name != NULL && type != NULL, BB_ERR_ARG, "bb_qformat_parse_name: NULL argument");
    for (size_t i = 0; i < sizeof qf_order / sizeof qf_order[0]; i++) {
        const char *a = qf_table[qf_order[i]].name, *b = name;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (*a == 0 && *b == 0) {
            *type = qf_order[i];
            return BB_OK;
        }
    }
    return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__,
                    "unknown tensor type \"%s\"; valid types: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
                    "q2_k, q3_k, q4_k, q5_k, q6_k",
                    name);
}

/* 32-element type that llama.cpp's quantizer substitutes for a K type on rows not divisible by
 * 256 (it uses IQ4_NL for Q2_K/Q3_K; birdbone writes Q4_0, the same 4.5 bits per weight). */
static int k_fallback(int type) {
    switch (type) {
    case BB_GGML_Q2_K:
    case BB_GGML_Q3_K: return BB_GGML_Q4_0;
    case BB_GGML_Q4_K: return BB_GGML_Q5_0;
    case BB_GGML_Q5_K: return BB_GGML_Q5_1;
    case BB_GGML_Q6_K: return BB_GGML_Q8_0;
    default: return BB_GGML_F16;
    }
}

int bb_qformat_fallback(int type, int64_t n) {
    const bb_qformat_traits *t = bb_qformat_info(type);
    if (!t || n < 1) return -1;
    if (n % t->blck == 0) return type;
    if (t->blck == BB_QK_K && n % BB_QK == 0) return k_fallback(type);
    return BB_GGML_F16;
}

bb_status bb_qformat_row_bytes(int type, int64_t n, size_t *bytes) {
    const bb_qformat_traits *t = bb_qformat_info(type);
    BB_CHECK(t != NULL, BB_ERR_ARG,
             "ggml type %d (%s) has no birdbone encoder; use one of f32, f16, bf16, q8_0, "
             "q4_0, q4_1, q5_0, q5_1, q2_K..q6_K",
             type, bb_ggml_type_name(type));
    BB_CHECK(n >= 1, BB_ERR_ARG, "%s: row length %lld must be positive", t->name, (long long)n);
    BB_CHECK(n % t->blck == 0, BB_ERR_ARG,
             "%s: a row of %lld elements is not a multiple of the block size %d; the fallback rule "
             "(bb_qformat_fallback) stores this row as %s",
             t->name, (long long)n, t->blck, qf_table[bb_qformat_fallback(type, n)].name);
    size_t nb = (size_t)(n / t->blck);
    BB_CHECK(!bb_mul_overflow(nb, (size_t)t->block_bytes, bytes), BB_ERR_ARG,
             "%s: a row of %lld elements overflows size_t", t->name, (long long)n);
    return BB_OK;
}

bb_status bb_qformat_check_finite(const float *x, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        BB_CHECK(isfinite(x[i]), BB_ERR_NUMERIC, "%s: element %zu is %g; quantized formats need finite values", what, i,
                 (double)x[i]);
    return BB_OK;
}

bb_status bb_qformat_encode_row(int type, const float *x, int64_t n, const float *importance, void *dst) {
    size_t bytes;
    BB_CALL(bb_qformat_row_bytes(type, n, &bytes));
    const bb_qformat_traits *t = bb_qformat_info(type);
    BB_CHECK(x != NULL && dst != NULL, BB_ERR_ARG, "%s encode: NULL %s", t->name, x ? "destination" : "input row");
    BB_CALL(bb_qformat_check_finite(x, (size_t)n, "row to quantize"));
    if (importance) {
        BB_CALL(bb_qformat_check_finite(importance, (size_t)n, "importance"));
        for (int64_t i = 0; i < n; i++)
            BB_CHECK(importance[i] >= 0, BB_ERR_NUMERIC, "importance: element %lld is %g; weights must be >= 0",
                     (long long)i, (double)importance[i]);
    }
    t->encode_ref(x, importance, (size_t)n, dst);
    return BB_OK;
}

bb_status bb_qformat_decode_row(int type, const void *src, int64_t n, float *y) {
    size_t bytes;
    BB_CALL(bb_qformat_row_bytes(type, n, &bytes));
    const bb_qformat_traits *t = bb_qformat_info(type);
    BB_CHECK(src != NULL && y != NULL, BB_ERR_ARG, "%s decode: NULL %s", t->name, src ? "output row" : "blocks");
    t->decode_ref(src, (size_t)n, y);
    return BB_OK;
}

/* ---- scale search ---- */

/* Candidate scales: the "largest value on the end of the grid" scale times 1 + STEP*k for k in
 * [-DOWN, UP]. Shrinking the grid (k < 0 clips the extreme value) is what usually wins on
 * bell-shaped data, so the range leans that way. */
#define SEARCH_STEP 0.0125
#define SEARCH_DOWN 24
#define SEARCH_UP 8
#define REFINE_ITERS 4

int bb_qformat_nearest(double v, int lo, int hi) {
    if (!(v > lo)) return lo;
    if (v >= hi) return hi;
    /* v - lo + 0.5 > 0, so truncation is floor: one conversion instead of a libm call. */
    return lo + (int)(v - lo + 0.5);
}

uint16_t bb_qformat_f16_sat(double v) {
    if (v > F16_MAX) v = F16_MAX;
    if (v < -F16_MAX) v = -F16_MAX;
    return bb_f32_to_f16((float)v);
}

/* All-zero (or absent) weights would make every fit degenerate: treat them as uniform. */
static int uniform_weights(const float *w, int n) {
    if (!w) return 1;
    for (int i = 0; i < n; i++)
        if (w[i] > 0) return 0;
    return 1;
}

double bb_qformat_fit_symmetric(const float *x, const float *w, int n, int nmax) {
    const int uni = uniform_weights(w, n), lo = -nmax, hi = nmax - 1;
    double amax = 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (fabs((double)x[i]) > amax) {
            amax = fabs((double)x[i]);
            m = x[i];
        }
    }
    if (amax == 0) return 0;
    /* For fixed q the best d is sum(wxq)/sum(wqq) and the error drops by sum(wxq)^2/sum(wqq):
     * maximise that over the candidates. */
    double best_d = 0, best_gain = -1;
    for (int side = 0; side < 2; side++) {
        double target = side ? hi : lo;
        for (int k = -SEARCH_DOWN; k <= SEARCH_UP; k++) {
            double iscale = target * (1.0 + SEARCH_STEP * k) / m, sxq = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                double wi = uni ? 1.0 : w[i];
                int q = bb_qformat_nearest(x[i] * iscale, lo, hi);
                sxq += wi * x[i] * q;
                sqq += wi * q * q;
            }
            if (sqq > 0 && sxq * sxq / sqq > best_gain) {
                best_gain = sxq * sxq / sqq;
                best_d = sxq / sqq;
            }
        }
    }
    /* Alternate nearest-q and least-squares d: neither step can raise the error. */
    for (int it = 0; it < REFINE_ITERS && best_d != 0; it++) {
        double sxq = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            double wi = uni ? 1.0 : w[i];
            int q = bb_qformat_nearest(x[i] / best_d, lo, hi);
            sxq += wi * x[i] * q;
            sqq += wi * q * q;
        }
        if (!(sqq > 0) || sxq / sqq == best_d) break;
        best_d = sxq / sqq;
    }
    return best_d;
}

/* Weighted least squares for y = s*q + b from the sums W=sum w, Q=sum wq, QQ=sum wqq, X=sum wx,
 * XQ=sum wxq, under s >= 0 and (min_le_zero) b <= 0. */
static void affine_lsq(double W, double Q, double QQ, double X, double XQ, int min_le_zero, double *s, double *b) {
    double det = W * QQ - Q * Q;
    /* All q equal makes det 0 up to rounding: then only the mean is determined. */
    if (det > 1e-12 * W * QQ) {
        *s = (W * XQ - Q * X) / det;
        *b = (QQ * X - Q * XQ) / det;
    } else {
        *s = 0;
        *b = X / W;
    }
    if (*s < 0) {
        *s = 0;
        *b = X / W;
    }
    if (min_le_zero && *b > 0) {
        *b = 0;
        *s = QQ > 0 && XQ > 0 ? XQ / QQ : 0;
    }
}

/* Map x to q = nearest((x - lo) * iscale), refit (s, b) to those q by least squares, and return
 * the weighted error of the refit. */
static double affine_try(const float *x, const float *w, int uni, int n, int qmax, int min_le_zero, double iscale,
                         double lo, double *s, double *b) {
    double W = 0, Q = 0, QQ = 0, X = 0, XQ = 0;
    for (int i = 0; i < n; i++) {
        double wi = uni ? 1.0 : w[i];
        int q = bb_qformat_nearest((x[i] - lo) * iscale, 0, qmax);
        W += wi;
        Q += wi * q;
        QQ += wi * q * q;
        X += wi * x[i];
        XQ += wi * x[i] * q;
    }
    affine_lsq(W, Q, QQ, X, XQ, min_le_zero, s, b);
    double err = 0;
    for (int i = 0; i < n; i++) {
        double wi = uni ? 1.0 : w[i];
        int q = bb_qformat_nearest((x[i] - lo) * iscale, 0, qmax);
        double r = x[i] - (*s * q + *b);
        err += wi * r * r;
    }
    return err;
}

void bb_qformat_fit_affine(const float *x, const float *w, int n, int qmax, int min_le_zero, double *s, double *b) {
    const int uni = uniform_weights(w, n);
    double lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (min_le_zero && lo > 0) lo = 0;
    if (!(hi > lo)) {
        *s = 0;
        *b = lo;
        return;
    }
    double best = INFINITY;
    *s = 0;
    *b = lo;
    for (int k = -SEARCH_DOWN; k <= SEARCH_UP; k++) {
        double cs, cb;
        double err =
            affine_try(x, w, uni, n, qmax, min_le_zero, qmax * (1.0 + SEARCH_STEP * k) / (hi - lo), lo, &cs, &cb);
        if (err < best) {
            best = err;
            *s = cs;
            *b = cb;
        }
    }
    for (int it = 0; it<REFINE_ITERS && * s> 0; it++) {
        double cs, cb;
        double err = affine_try(x, w, uni, n, qmax, min_le_zero, 1.0 / *s, *b, &cs, &cb);
        if (!(err < best)) break;
        best = err;
        *s = cs;
        *b = cb;
    }
}

/* ---- float types (element-wise rounding: importance cannot change the result) ---- */

void bb_qformat_encode_f32(const float *x, const float *importance, size_t n, void *dst) {
    (void)importance;
    memcpy(dst, x, n * sizeof(float));
}

void bb_qformat_encode_f16(const float *x, const float *importance, size_t n, void *dst) {
    (void)importance;
    uint8_t *o = dst;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = bb_qformat_f16_sat(x[i]);
        memcpy(o + 2 * i, &h, 2);
    }
}

void bb_qformat_encode_bf16(const float *x, const float *importance, size_t n, void *dst) {
    (void)importance;
    uint8_t *o = dst;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] > BF16_MAX ? BF16_MAX : x[i] < -BF16_MAX ? -BF16_MAX : x[i];
        uint16_t h = bb_f32_to_bf16(v);
        memcpy(o + 2 * i, &h, 2);
    }
}

void bb_qformat_decode_f32(const void *src, size_t n, float *y) { memcpy(y, src, n * sizeof(float)); }

void bb_qformat_decode_f16(const void *src, size_t n, float *y) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = bb_f16_to_f32(h);
    }
}

void bb_qformat_decode_bf16(const void *src, size_t n, float *y) {
    const uint8_t *p = src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = bb_bf16_to_f32(h);
    }
}

/* ---- 32-element types ---- */

/* Symmetric block: fit d, store it as fp16, then choose each q against the stored d (the value
 * the decoder will use), so the fp16 rounding of d costs nothing beyond itself. Codes are q + nmax. */
static void sym_block(const float *x, const float *w, int nmax, uint16_t *d16, int *code) {
    *d16 = bb_qformat_f16_sat(bb_qformat_fit_symmetric(x, w, BB_QK, nmax));
    float d = bb_f16_to_f32(*d16);
    for (int j = 0; j < BB_QK; j++)
        code[j] = (d != 0 ? bb_qformat_nearest((double)x[j] / d, -nmax, nmax - 1) : 0) + nmax;
}

/* Affine block: codes in [0, qmax] against the stored fp16 d and m. */
static void affine_block(const float *x, const float *w, int qmax, uint16_t *d16, uint16_t *m16, int *code) {
    double s, b;
    bb_qformat_fit_affine(x, w, BB_QK, qmax, 0, &s, &b);
    *d16 = bb_qformat_f16_sat(s);
    *m16 = bb_qformat_f16_sat(b);
    float d = bb_f16_to_f32(*d16), m = bb_f16_to_f32(*m16);
    for (int j = 0; j < BB_QK; j++) code[j] = d != 0 ? bb_qformat_nearest(((double)x[j] - m) / d, 0, qmax) : 0;
}

static void pack_nibbles(const int *code, uint8_t *qs) {
    for (int j = 0; j < BB_QK / 2; j++) qs[j] = (uint8_t)((code[j] & 0xF) | (code[j + BB_QK / 2] & 0xF) << 4);
}

static void pack_high_bits(const int *code, uint8_t *qh) {
    memset(qh, 0, 4);
    for (int j = 0; j < BB_QK; j++) qh[j / 8] |= (uint8_t)(((code[j] >> 4) & 1) << (j % 8));
}

#define ROW_BLOCKS(n) ((n) / BB_QK)
#define BLOCK_W(imp, ib) ((imp) ? (imp) + (ib)*BB_QK : NULL)

void bb_qformat_encode_q8_0(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++) {
        bb_block_q8_0 blk;
        int code[BB_QK];
        sym_block(x + ib * BB_QK, BLOCK_W(importance, ib), 128, &blk.d, code);
        for (int j = 0; j < BB_QK; j++) blk.qs[j] = (int8_t)(code[j] - 128);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q4_0(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++) {
        bb_block_q4_0 blk;
        int code[BB_QK];
        sym_block(x + ib * BB_QK, BLOCK_W(importance, ib), 8, &blk.d, code);
        pack_nibbles(code, blk.qs);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q5_0(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++) {
        bb_block_q5_0 blk;
        int code[BB_QK];
        sym_block(x + ib * BB_QK, BLOCK_W(importance, ib), 16, &blk.d, code);
        pack_nibbles(code, blk.qs);
        pack_high_bits(code, blk.qh);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q4_1(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++) {
        bb_block_q4_1 blk;
        int code[BB_QK];
        affine_block(x + ib * BB_QK, BLOCK_W(importance, ib), 15, &blk.d, &blk.m, code);
        pack_nibbles(code, blk.qs);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q5_1(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++) {
        bb_block_q5_1 blk;
        int code[BB_QK];
        affine_block(x + ib * BB_QK, BLOCK_W(importance, ib), 31, &blk.d, &blk.m, code);
        pack_nibbles(code, blk.qs);
        pack_high_bits(code, blk.qh);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

/* Decoders: the arithmetic is ggml's, operand for operand: int code converted to float, times
 * the f32 scale, plus the f32 min. */

void bb_qformat_decode_q8_0(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++, y += BB_QK) {
        bb_block_q8_0 blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d);
        for (int j = 0; j < BB_QK; j++) y[j] = (float)blk.qs[j] * d;
    }
}

void bb_qformat_decode_q4_0(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++, y += BB_QK) {
        bb_block_q4_0 blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d);
        for (int j = 0; j < BB_QK / 2; j++) {
            y[j] = (float)((blk.qs[j] & 0xF) - 8) * d;
            y[j + BB_QK / 2] = (float)((blk.qs[j] >> 4) - 8) * d;
        }
    }
}

void bb_qformat_decode_q4_1(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++, y += BB_QK) {
        bb_block_q4_1 blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d), m = bb_f16_to_f32(blk.m);
        for (int j = 0; j < BB_QK / 2; j++) {
            y[j] = (float)(blk.qs[j] & 0xF) * d + m;
            y[j + BB_QK / 2] = (float)(blk.qs[j] >> 4) * d + m;
        }
    }
}

static int high_bit(const uint8_t *qh, int j) { return (qh[j / 8] >> (j % 8)) & 1; }

void bb_qformat_decode_q5_0(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++, y += BB_QK) {
        bb_block_q5_0 blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d);
        for (int j = 0; j < BB_QK / 2; j++) {
            y[j] = (float)(((blk.qs[j] & 0xF) | high_bit(blk.qh, j) << 4) - 16) * d;
            y[j + BB_QK / 2] = (float)(((blk.qs[j] >> 4) | high_bit(blk.qh, j + BB_QK / 2) << 4) - 16) * d;
        }
    }
}

void bb_qformat_decode_q5_1(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < ROW_BLOCKS(n); ib++, y += BB_QK) {
        bb_block_q5_1 blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d), m = bb_f16_to_f32(blk.m);
        for (int j = 0; j < BB_QK / 2; j++) {
            y[j] = (float)((blk.qs[j] & 0xF) | high_bit(blk.qh, j) << 4) * d + m;
            y[j + BB_QK / 2] = (float)((blk.qs[j] >> 4) | high_bit(blk.qh, j + BB_QK / 2) << 4) * d + m;
        }
    }
}
