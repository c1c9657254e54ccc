/* quant_enc.c — the round-to-nearest block encoders of the quantizers: qformat's full scale search run in vector
 * lanes (bit-identical), and the fast search (quant.search = fast) with its plain-C reference. */

/* The full-search encoders must repeat qformat's scale search operation for operation (bit-identical
 * blocks), and the fast search must compute what its reference computes; a fused multiply-add would
 * change the sums' last bits. GCC ignores the STDC pragma. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <string.h>

#include "compress/quant.h"
#include "core/dtype.h"
#include "io/qformat.h"

/* ---- the full search, vectorized (Q8_0, Q4_0, Q5_0) ----
 *
 * bb_qformat_fit_symmetric tries 66 candidate scales (two grid ends x 33 stretches), each a pass over
 * the block's 32 elements. Here the candidates run in the lanes of a vector and the elements in
 * order, so every lane computes exactly the scalar expression sequence of the reference (same
 * products, same left-to-right sums) and the winner, the refinement and the codes are the
 * reference's: the blocks are identical bytes, 8-10x faster on AVX2. */

#define SEARCH_STEP 0.0125 /* qformat.c's candidate grid: 1 + STEP k, k = -DOWN..UP */
#define SEARCH_DOWN 24
#define SEARCH_UP 8
#define REFINE_ITERS 4
#define NCAND (SEARCH_DOWN + SEARCH_UP + 1)
#define VL 8 /* two independent AVX2 chains per operation (the sums are latency-bound), one AVX-512 */
#define NGROUP ((NCAND + VL - 1) / VL)

typedef double vdbl __attribute__((vector_size(VL * sizeof(double))));
typedef long long vlong __attribute__((vector_size(VL * sizeof(long long))));
typedef int vint __attribute__((vector_size(VL * sizeof(int))));

/* mask ? a : b lane by lane (a macro: a vector-valued function would change the ABI between clones). */
#define VSELECT(mask, a, b) ((vdbl)(((vlong)(a) & (mask)) | ((vlong)(b) & ~(mask))))

#if defined(__x86_64__) && defined(__GNUC__) /* gcc and clang */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static double
fit_symmetric_full(const float *x, const float *w, int n, int nmax) {
    int uni = 1;
    if (w)
        for (int i = 0; i < n; i++)
            if (w[i] > 0) {
                uni = 0;
                break;
            }
    const int lo = -nmax, hi = nmax - 1;
    double amax = 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (fabs((double)x[i]) > amax) {
            amax = fabs((double)x[i]);
            m = x[i];
        }
    }
    if (amax == 0) return 0;
    double wd[BB_QK], wx[BB_QK];
    for (int i = 0; i < n; i++) {
        wd[i] = uni ? 1.0 : w[i];
        wx[i] = wd[i] * x[i];
    }
    const vdbl vzero = {0}, vlo = vzero + lo, vhi = vzero + hi, vspan = vzero + (hi - lo + 1);
    double best_d = 0, best_gain = -1;
    for (int side = 0; side < 2; side++) {
        const double target = side ? hi : lo;
        /* All groups of a side advance together: each lane's sums stay in element order, and the
         * groups give the adder independent chains (one chain alone is bound by its latency). */
        vdbl is[NGROUP], sxq[NGROUP], sqq[NGROUP];
        for (int g = 0; g < NGROUP; g++) {
            for (int l = 0; l < VL; l++) {
                int k = -SEARCH_DOWN + g * VL + l;
                is[g][l] = target * (1.0 + SEARCH_STEP * (k <= SEARCH_UP ? k : SEARCH_UP)) / m;
            }
            sxq[g] = sqq[g] = (vdbl){0};
        }
        for (int i = 0; i < n; i++) {
            const double xi = x[i];
#pragma GCC unroll 8
            for (int g = 0; g < NGROUP; g++) {
                vdbl v = xi * is[g];
                /* bb_qformat_nearest: lo + trunc(v - lo + 0.5) inside (lo, hi), clamped outside. */
                vdbl t = v - vlo + 0.5;
                /* Lanes outside (lo, hi) (NaN and Inf from a subnormal block maximum included) are
                 * replaced below; bounding t first keeps their conversion to int defined. */
                t = VSELECT(t > vzero, t, vzero);
                t = VSELECT(t < vspan, t, vspan);
                vdbl q = vlo + __builtin_convertvector(__builtin_convertvector(t, vint), vdbl);
                q = VSELECT(v > vlo, q, vlo);
                q = VSELECT(v >= vhi, vhi, q);
                sxq[g] += wx[i] * q;
                sqq[g] += wd[i] * q * q;
            }
        }
        for (int g = 0; g < NGROUP; g++)
            for (int l = 0; l < VL && -SEARCH_DOWN + g * VL + l <= SEARCH_UP; l++)
                if (sqq[g][l] > 0 && sxq[g][l] * sxq[g][l] / sqq[g][l] > best_gain) {
                    best_gain = sxq[g][l] * sxq[g][l] / sqq[g][l];
                    best_d = sxq[g][l] / sqq[g][l];
                }
    }
    for (int it = 0; it < REFINE_ITERS && best_d != 0; it++) {
        double sxq = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            int q = bb_qformat_nearest(x[i] / best_d, lo, hi);
            sxq += wd[i] * x[i] * q;
            sqq += wd[i] * q * q;
        }
        if (!(sqq > 0) || sxq / sqq == best_d) break;
        best_d = sxq / sqq;
    }
    return best_d;
}

/* One 32-element symmetric block as qformat's sym_block: fp16 scale, codes against the stored scale. */
static void sym_block_full(const float *x, const float *w, int nmax, uint16_t *d16, int *code) {
    *d16 = bb_qformat_f16_sat(fit_symmetric_full(x, w, BB_QK, nmax));
    const float d = bb_f16_to_f32(*d16);
    for (int j = 0; j < BB_QK; j++)
        code[j] = (d != 0 ? bb_qformat_nearest((double)x[j] / d, -nmax, nmax - 1) : 0) + nmax;
}

/* ---- the fast search ----
 *
 * 13 least-squares fits instead of 66: "largest |x| on the grid's low end" stretched by
 * 1 + STEP k for k = -24, -21, ..., 6 (every third of the full search's stretches), and on the high
 * end k = -12 and 0; then 2 rounds of nearest-q / least-squares d; all in f32. The vector path runs
 * 8 blocks at once, one per lane, each lane doing exactly the scalar reference's operations in the
 * same order (no horizontal sums), so both give the same bytes. On stories260K's and Gaussian blocks
 * the squared error is 0.2 % above the full search's for Q4_0, 0.5-1 % for Q5_0 and 8-14 % for Q8_0
 * (whose error is small either way); docs/quantization.md has the measurements. */

#define FAST_NCAND 13
#define FAST_REFINE 2
/* Blocks whose largest |x| is below this decode to zeros under any fp16 scale; they are not searched
 * (which also keeps every reciprocal finite). */
#define FAST_TINY 1e-30f
#define LANES 8

static const signed char fast_k[FAST_NCAND] = {-24, -21, -18, -15, -12, -9, -6, -3, 0, 3, 6, -12, 0};
static const signed char fast_hi[FAST_NCAND] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};

/* Candidate c's inverse scale is fast_target(c) / m, m the block's largest-magnitude element. */
static float fast_target(int c, int nmax) {
    return (float)((fast_hi[c] ? nmax - 1 : -nmax) * (1.0 + SEARCH_STEP * fast_k[c]));
}

/* Nearest grid point to v in [lo, lo + span], in f32: lo + trunc(v - lo + 0.5) once bounded. */
static float nearest_f32(float v, float lo, float span) {
    float t = v - lo + 0.5f;
    t = t > 0 ? t : 0;
    t = t < span ? t : span;
    return lo + (float)(int)t;
}

float bb_quant_fit_symmetric_fast_ref(const float *x, const float *w, int nmax) {
    const float lo = (float)-nmax, span = (float)(2 * nmax - 1);
    int uni = 1;
    if (w)
        for (int i = 0; i < BB_QK; i++)
            if (w[i] > 0) {
                uni = 0;
                break;
            }
    float wd[BB_QK], wx[BB_QK], amax = 0, m = 0;
    for (int i = 0; i < BB_QK; i++) {
        wd[i] = uni ? 1.0f : w[i];
        wx[i] = wd[i] * x[i];
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            m = x[i];
        }
    }
    if (!(amax >= FAST_TINY)) return 0;
    float best_d = 0, best_gain = -1;
    for (int c = 0; c < FAST_NCAND; c++) {
        const float is = fast_target(c, nmax) / m;
        float sxq = 0, sqq = 0;
        for (int i = 0; i < BB_QK; i++) {
            float q = nearest_f32(x[i] * is, lo, span);
            sxq += wx[i] * q;
            sqq += wd[i] * q * q;
        }
        if (sqq > 0 && sxq * sxq / sqq > best_gain) {
            best_gain = sxq * sxq / sqq;
            best_d = sxq / sqq;
        }
    }
    /* A round that finds sqq = 0 leaves d as it is (and so would every later round). */
    for (int it = 0; it < FAST_REFINE && best_d != 0; it++) {
        const float is = 1.0f / best_d;
        float sxq = 0, sqq = 0;
        for (int i = 0; i < BB_QK; i++) {
            float q = nearest_f32(x[i] * is, lo, span);
            sxq += wx[i] * q;
            sqq += wd[i] * q * q;
        }
        if (sqq > 0) best_d = sxq / sqq;
    }
    return best_d;
}

typedef float vf32 __attribute__((vector_size(LANES * sizeof(float))));
typedef int vi32 __attribute__((vector_size(LANES * sizeof(int))));

/* mask ? a : b lane by lane, for f32 lanes */
#define FSELECT(mask, a, b) ((vf32)(((vi32)(a) & (mask)) | ((vi32)(b) & ~(mask))))

/* q = nearest_f32(v, lo, span) lane by lane. Macros, not functions: a vector-valued function would
 * change the ABI between the clones. */
#define VNEAREST(q, v, lo, span, zero)                                                                                 \
    do {                                                                                                               \
        vf32 t_ = (v) - (lo) + 0.5f;                                                                                   \
        t_ = FSELECT(t_ > (zero), t_, (zero));                                                                         \
        t_ = FSELECT(t_ < (span), t_, (span));                                                                         \
        (q) = (lo) + __builtin_convertvector(__builtin_convertvector(t_, vi32), vf32);                                 \
    } while (0)

/* sxq, sqq = the weighted sums of one pass over the 32 elements at inverse scales is (per lane) */
#define VSUMS(sxq, sqq, is)                                                                                            \
    do {                                                                                                               \
        (sxq) = (sqq) = zero;                                                                                          \
        for (int i_ = 0; i_ < BB_QK; i_++) {                                                                           \
            vf32 q_;                                                                                                   \
            VNEAREST(q_, vx[i_] * (is), vlo, vspan, zero);                                                             \
            (sxq) += vwx[i_] * q_;                                                                                     \
            (sqq) += vwd[i_] * q_ * q_;                                                                                \
        }                                                                                                              \
    } while (0)

/* VSUMS for two inverse scales in one pass: twice the independent work per element, which the
 * accumulation chains (one add latency per element) leave room for. */
#define VSUMS2(sxa, sqa, isa, sxb, sqb, isb)                                                                           \
    do {                                                                                                               \
        (sxa) = (sqa) = (sxb) = (sqb) = zero;                                                                          \
        for (int i_ = 0; i_ < BB_QK; i_++) {                                                                           \
            vf32 qa_, qb_;                                                                                             \
            VNEAREST(qa_, vx[i_] * (isa), vlo, vspan, zero);                                                           \
            VNEAREST(qb_, vx[i_] * (isb), vlo, vspan, zero);                                                           \
            (sxa) += vwx[i_] * qa_;                                                                                    \
            (sqa) += vwd[i_] * qa_ * qa_;                                                                              \
            (sxb) += vwx[i_] * qb_;                                                                                    \
            (sqb) += vwd[i_] * qb_ * qb_;                                                                              \
        }                                                                                                              \
    } while (0)

/* The fast search on nb <= 8 consecutive blocks x (nb * 32), weights w (nb * 32) or NULL, block b in
 * lane b (missing lanes are zero blocks): each block's fp16 scale d16[b] and codes code[b][32] in
 * 0..2 nmax - 1 against that stored scale. */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void
fast_group(const float *x, const float *w, int nb, int nmax, uint16_t *d16, int (*code)[BB_QK]) {
    float tx[BB_QK][LANES], twd[BB_QK][LANES];
    for (int b = 0; b < LANES; b++) {
        const float *xb = x + b * BB_QK, *wb = w && b < nb ? w + b * BB_QK : NULL;
        int uni = 1;
        if (wb)
            for (int i = 0; i < BB_QK; i++)
                if (wb[i] > 0) {
                    uni = 0;
                    break;
                }
        for (int i = 0; i < BB_QK; i++) {
            tx[i][b] = b < nb ? xb[i] : 0;
            twd[i][b] = uni ? 1.0f : wb[i];
        }
    }
    const vf32 zero = {0}, one = zero + 1, vlo = zero - (float)nmax, vspan = zero + (float)(2 * nmax - 1);
    const vi32 absmask = (vi32){0} + 0x7fffffff;
    vf32 vx[BB_QK], vwd[BB_QK], vwx[BB_QK], amax = zero, m = zero;
    memcpy(vx, tx, sizeof vx);
    memcpy(vwd, twd, sizeof vwd);
    for (int i = 0; i < BB_QK; i++) {
        vwx[i] = vwd[i] * vx[i];
        const vf32 a = (vf32)((vi32)vx[i] & absmask);
        const vi32 gt = a > amax;
        amax = FSELECT(gt, a, amax);
        m = FSELECT(gt, vx[i], m);
    }
    const vi32 live = amax >= FAST_TINY;
    m = FSELECT(live, m, one); /* dead lanes compute harmless nonsense and end at d = 0 */
    vf32 best_d = zero, best_gain = zero - 1, sxq, sqq, sx[2], sq[2];
    for (int c = 0; c < FAST_NCAND; c += 2) {
        const int two = c + 1 < FAST_NCAND;
        const vf32 isa = fast_target(c, nmax) / m, isb = fast_target(two ? c + 1 : c, nmax) / m;
        VSUMS2(sx[0], sq[0], isa, sx[1], sq[1], isb);
        for (int h = 0; h <= two; h++) { /* candidates in order, as the reference takes them */
            const vf32 gain = sx[h] * sx[h] / sq[h];
            const vi32 up = (sq[h] > zero) & (gain > best_gain);
            best_gain = FSELECT(up, gain, best_gain);
            best_d = FSELECT(up, sx[h] / sq[h], best_d);
        }
    }
    for (int it = 0; it < FAST_REFINE; it++) {
        const vi32 act = best_d != zero;
        const vf32 is = one / FSELECT(act, best_d, one);
        VSUMS(sxq, sqq, is);
        best_d = FSELECT(act & (sqq > zero), sxq / sqq, best_d);
    }
    best_d = FSELECT(live, best_d, zero);
    vf32 id = zero;
    for (int b = 0; b < nb; b++) {
        d16[b] = bb_qformat_f16_sat(best_d[b]);
        const float d = bb_f16_to_f32(d16[b]);
        id[b] = d != 0 ? 1.0f / d : 0.0f;
    }
    int tq[BB_QK][LANES];
    for (int i = 0; i < BB_QK; i++) {
        vf32 q;
        VNEAREST(q, vx[i] * id, vlo, vspan, zero);
        const vi32 qi = __builtin_convertvector(q, vi32) + nmax;
        memcpy(tq[i], &qi, sizeof qi);
    }
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < BB_QK; i++) code[b][i] = tq[i][b];
}

/* ---- block encoders: symmetric block fits (scale and codes 0..2 nmax - 1), then the type's packing ---- */

static void pack_sym(int type, uint16_t d16, const int *code, uint8_t *dst) {
    if (type == BB_GGML_Q8_0) {
        bb_block_q8_0 blk = {.d = d16};
        for (int j = 0; j < BB_QK; j++) blk.qs[j] = (int8_t)(code[j] - 128);
        memcpy(dst, &blk, sizeof blk);
    } else if (type == BB_GGML_Q4_0) {
        bb_block_q4_0 blk = {.d = d16};
        for (int j = 0; j < BB_QK / 2; j++) blk.qs[j] = (uint8_t)(code[j] | code[j + BB_QK / 2] << 4);
        memcpy(dst, &blk, sizeof blk);
    } else {
        bb_block_q5_0 blk = {.d = d16};
        for (int j = 0; j < BB_QK / 2; j++) blk.qs[j] = (uint8_t)((code[j] & 0xF) | (code[j + BB_QK / 2] & 0xF) << 4);
        for (int j = 0; j < BB_QK; j++) blk.qh[j / 8] |= (uint8_t)(((code[j] >> 4) & 1) << (j % 8));
        memcpy(dst, &blk, sizeof blk);
    }
}

static int sym_nmax(int type) { return type == BB_GGML_Q8_0 ? 128 : type == BB_GGML_Q4_0 ? 8 : 16; }

static size_t sym_bytes(int type) {
    return type == BB_GGML_Q8_0   ? sizeof(bb_block_q8_0)
           : type == BB_GGML_Q4_0 ? sizeof(bb_block_q4_0)
                                  : sizeof(bb_block_q5_0);
}

/* The full search, block by block (bit-identical to qformat). */
static void encode_sym_full(int type, const float *x, const float *imp, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK; ib++) {
        int code[BB_QK];
        uint16_t d16;
        sym_block_full(x + ib * BB_QK, imp ? imp + ib * BB_QK : NULL, sym_nmax(type), &d16, code);
        pack_sym(type, d16, code, (uint8_t *)dst + ib * sym_bytes(type));
    }
}

/* The fast search, 8 blocks at a time. */
static void encode_sym_fast(int type, const float *x, const float *imp, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK; ib += LANES) {
        const int nb = n / BB_QK - ib < LANES ? (int)(n / BB_QK - ib) : LANES;
        int code[LANES][BB_QK];
        uint16_t d16[LANES];
        fast_group(x + ib * BB_QK, imp ? imp + ib * BB_QK : NULL, nb, sym_nmax(type), d16, code);
        for (int b = 0; b < nb; b++) pack_sym(type, d16[b], code[b], (uint8_t *)dst + (ib + b) * sym_bytes(type));
    }
}

/* The fast search's reference: bb_quant_fit_symmetric_fast_ref per block, codes in plain f32. */
static void encode_sym_fast_ref(int type, const float *x, const float *imp, size_t n, void *dst) {
    const int nmax = sym_nmax(type);
    for (size_t ib = 0; ib < n / BB_QK; ib++) {
        const float *xb = x + ib * BB_QK;
        const uint16_t d16 = bb_qformat_f16_sat(bb_quant_fit_symmetric_fast_ref(xb, imp ? imp + ib * BB_QK : NULL, nmax));
        const float d = bb_f16_to_f32(d16), id = d != 0 ? 1.0f / d : 0.0f;
        int code[BB_QK];
        for (int j = 0; j < BB_QK; j++) code[j] = (int)nearest_f32(xb[j] * id, (float)-nmax, (float)(2 * nmax - 1)) + nmax;
        pack_sym(type, d16, code, (uint8_t *)dst + ib * sym_bytes(type));
    }
}

#define SYM_ENCODERS(tname, TYPE)                                                                                      \
    static void encode_##tname##_full(const float *x, const float *imp, size_t n, void *dst) {                         \
        encode_sym_full(TYPE, x, imp, n, dst);                                                                         \
    }                                                                                                                  \
    static void encode_##tname##_fast(const float *x, const float *imp, size_t n, void *dst) {                         \
        encode_sym_fast(TYPE, x, imp, n, dst);                                                                         \
    }                                                                                                                  \
    static void encode_##tname##_fast_ref(const float *x, const float *imp, size_t n, void *dst) {                     \
        encode_sym_fast_ref(TYPE, x, imp, n, dst);                                                                     \
    }
SYM_ENCODERS(q8_0, BB_GGML_Q8_0)
SYM_ENCODERS(q4_0, BB_GGML_Q4_0)
SYM_ENCODERS(q5_0, BB_GGML_Q5_0)

bb_qformat_encode_fn bb_quant_encoder(int type, int search) {
    const int fast = search == BB_QUANT_SEARCH_FAST;
    switch (type) {
    case BB_GGML_Q8_0: return fast ? encode_q8_0_fast : encode_q8_0_full;
    case BB_GGML_Q4_0: return fast ? encode_q4_0_fast : encode_q4_0_full;
    case BB_GGML_Q5_0: return fast ? encode_q5_0_fast : encode_q5_0_full;
    default: return bb_qformat_info(type) ? bb_qformat_info(type)->encode_ref : NULL;
    }
}

bb_qformat_encode_fn bb_quant_encoder_fast_ref(int type) {
    switch (type) {
    case BB_GGML_Q8_0: return encode_q8_0_fast_ref;
    case BB_GGML_Q4_0: return encode_q4_0_fast_ref;
    case BB_GGML_Q5_0: return encode_q5_0_fast_ref;
    default: return bb_qformat_info(type) ? bb_qformat_info(type)->encode_ref : NULL;
    }
}

bb_status bb_quant_encode_row(int type, int search, const float *x, int64_t n, const float *importance, void *dst) {
    size_t bytes;
    BB_CALL(bb_qformat_row_bytes(type, n, &bytes));
    BB_CHECK(x != NULL && dst != NULL, BB_ERR_ARG, "bb_quant_encode_row: NULL %s", x ? "destination" : "input row");
    BB_CHECK(search == BB_QUANT_SEARCH_FAST || search == BB_QUANT_SEARCH_FULL, BB_ERR_ARG,
             "bb_quant_encode_row: search %d is neither fast nor full (resolve auto with bb_quant_search_for)", search);
    BB_CALL(bb_qformat_check_finite(x, (size_t)n, "row to quantize"));
    if (importance) {
        BB_CALL(bb_qformat_check_finite(importance, (size_t)n, "importance"));
        for (int64_t i = 0; i < n; i++)
            BB_CHECK(importance[i] >= 0, BB_ERR_NUMERIC, "importance: element %lld is %g; weights must be >= 0",
                     (long long)i, (double)importance[i]);
    }
    bb_quant_encoder(type, search)(x, importance, (size_t)n, dst);
    return BB_OK;
}
