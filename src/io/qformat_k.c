/* qformat_k.c — the K block formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): reference encoders and decoders. */

/* As in qformat.c: no fused multiply-add, so decoded values match ggml bit for bit. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <string.h>

#include "core/dtype.h"
#include "io/qformat.h"

#define MAX_SUB 16 /* sub-blocks per super-block: 16 of 16 elements or 8 of 32 */

/* Affine super-block (Q2_K, Q4_K, Q5_K): each sub-block of `sub` elements gets its own fit
 * y = s*q - m (m >= 0), then the s and m are quantized to [0, smax] against the fp16 d and dmin,
 * and the codes (in [0, qmax]) are chosen against those quantized scales, as the decoder sees them. */
static void k_affine(const float *x, const float *w, int sub, int qmax, int smax, uint16_t *d16, uint16_t *dmin16,
                     int *sc, int *mn, int *code) {
    const int nsub = BB_QK_K / sub;
    double s[MAX_SUB], m[MAX_SUB], s_max = 0, m_max = 0;
    for (int j = 0; j < nsub; j++) {
        double b;
        bb_qformat_fit_affine(x + j * sub, w ? w + j * sub : NULL, sub, qmax, 1, &s[j], &b);
        m[j] = -b;
        if (s[j] > s_max) s_max = s[j];
        if (m[j] > m_max) m_max = m[j];
    }
    *d16 = bb_qformat_f16_sat(s_max / smax);
    *dmin16 = bb_qformat_f16_sat(m_max / smax);
    const float d = bb_f16_to_f32(*d16), dmin = bb_f16_to_f32(*dmin16);
    for (int j = 0; j < nsub; j++) {
        sc[j] = d > 0 ? bb_qformat_nearest(s[j] / d, 0, smax) : 0;
        mn[j] = dmin > 0 ? bb_qformat_nearest(m[j] / dmin, 0, smax) : 0;
        const float dl = d * (float)sc[j], ml = dmin * (float)mn[j];
        for (int i = j * sub; i < (j + 1) * sub; i++)
            code[i] = dl > 0 ? bb_qformat_nearest(((double)x[i] + ml) / dl, 0, qmax) : 0;
    }
}

/* Symmetric super-block (Q3_K, Q6_K): sub-blocks of 16 with signed scales in [-smax, smax-1]
 * against the fp16 d (the largest-magnitude scale maps to -smax), codes q in [-nmax, nmax-1]. */
static void k_symmetric(const float *x, const float *w, int nmax, int smax, uint16_t *d16, int *sc, int *code) {
    const int nsub = BB_QK_K / 16;
    double s[MAX_SUB], big = 0;
    for (int j = 0; j < nsub; j++) {
        s[j] = bb_qformat_fit_symmetric(x + j * 16, w ? w + j * 16 : NULL, 16, nmax);
        if (fabs(s[j]) > fabs(big)) big = s[j];
    }
    *d16 = bb_qformat_f16_sat(big / -smax);
    const float d = bb_f16_to_f32(*d16);
    for (int j = 0; j < nsub; j++) {
        sc[j] = d != 0 ? bb_qformat_nearest(s[j] / d, -smax, smax - 1) : 0;
        const float dl = d * (float)sc[j];
        for (int i = j * 16; i < (j + 1) * 16; i++)
            code[i] = dl != 0 ? bb_qformat_nearest((double)x[i] / dl, -nmax, nmax - 1) : 0;
    }
}

/* The 12-byte scale/min layout of Q4_K and Q5_K: sub-blocks 0-3 keep their six bits in the low
 * bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 put their low nibbles in bytes 8-11
 * and their top two bits in the spare top bits of bytes 0-7. */
static void pack_scales_k4(const int *sc, const int *mn, uint8_t *q) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | (mn[j + 4] & 0xF) << 4);
    }
}

static void unpack_scales_k4(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Two-bit fields of Q2_K and Q3_K: element 128h + 32k + l lives in bits 2k..2k+1 of qs[32h + l]. */
static int qs2_index(int e) { return 32 * (e / 128) + e % 32; }
static int qs2_shift(int e) { return 2 * ((e % 128) / 32); }

#define W_OF(imp, ib) ((imp) ? (imp) + (ib)*BB_QK_K : NULL)

void bb_qformat_encode_q2_k(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++) {
        bb_block_q2_k blk;
        int sc[MAX_SUB], mn[MAX_SUB], code[BB_QK_K];
        k_affine(x + ib * BB_QK_K, W_OF(importance, ib), 16, 3, 15, &blk.d, &blk.dmin, sc, mn, code);
        for (int j = 0; j < 16; j++) blk.scales[j] = (uint8_t)(sc[j] | mn[j] << 4);
        memset(blk.qs, 0, sizeof blk.qs);
        for (int e = 0; e < BB_QK_K; e++) blk.qs[qs2_index(e)] |= (uint8_t)(code[e] << qs2_shift(e));
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q3_k(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++) {
        bb_block_q3_k blk;
        int sc[MAX_SUB], code[BB_QK_K];
        k_symmetric(x + ib * BB_QK_K, W_OF(importance, ib), 4, 32, &blk.d, sc, code);
        memset(blk.scales, 0, sizeof blk.scales);
        for (int k = 0; k < 16; k++) {
            int v = sc[k] + 32;
            blk.scales[k % 8] |= (uint8_t)((v & 0xF) << (k < 8 ? 0 : 4));
            blk.scales[8 + k % 4] |= (uint8_t)((v >> 4) << (2 * (k / 4)));
        }
        memset(blk.qs, 0, sizeof blk.qs);
        memset(blk.hmask, 0, sizeof blk.hmask);
        for (int e = 0; e < BB_QK_K; e++) {
            int u = code[e] + 4; /* 0..7: the high bit set means "do not subtract 4" */
            blk.qs[qs2_index(e)] |= (uint8_t)((u & 3) << qs2_shift(e));
            blk.hmask[e % 32] |= (uint8_t)((u >> 2) << (e / 32));
        }
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

/* Nibbles of Q4_K and Q5_K: element 64c + l is the low nibble of qs[32c + l], 64c + 32 + l the high one. */
static void pack_nibbles_k(const int *code, uint8_t *qs) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((code[64 * c + l] & 0xF) | (code[64 * c + 32 + l] & 0xF) << 4);
}

void bb_qformat_encode_q4_k(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++) {
        bb_block_q4_k blk;
        int sc[MAX_SUB], mn[MAX_SUB], code[BB_QK_K];
        k_affine(x + ib * BB_QK_K, W_OF(importance, ib), 32, 15, 63, &blk.d, &blk.dmin, sc, mn, code);
        pack_scales_k4(sc, mn, blk.scales);
        pack_nibbles_k(code, blk.qs);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

void bb_qformat_encode_q5_k(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++) {
        bb_block_q5_k blk;
        int sc[MAX_SUB], mn[MAX_SUB], code[BB_QK_K];
        k_affine(x + ib * BB_QK_K, W_OF(importance, ib), 32, 31, 63, &blk.d, &blk.dmin, sc, mn, code);
        pack_scales_k4(sc, mn, blk.scales);
        pack_nibbles_k(code, blk.qs);
        memset(blk.qh, 0, sizeof blk.qh);
        for (int e = 0; e < BB_QK_K; e++) blk.qh[e % 32] |= (uint8_t)(((code[e] >> 4) & 1) << (e / 32));
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

/* Q6_K: element 128h + 32k + l keeps its low nibble in ql[64h + 32(k&1) + l] (low nibble for
 * k < 2, high for k >= 2) and its top two bits in bits 2k..2k+1 of qh[32h + l]. */
static int q6_ql_index(int e) { return 64 * (e / 128) + 32 * (((e % 128) / 32) & 1) + e % 32; }
static int q6_ql_shift(int e) { return 4 * (((e % 128) / 32) >> 1); }

void bb_qformat_encode_q6_k(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++) {
        bb_block_q6_k blk;
        int sc[MAX_SUB], code[BB_QK_K];
        k_symmetric(x + ib * BB_QK_K, W_OF(importance, ib), 32, 128, &blk.d, sc, code);
        for (int j = 0; j < 16; j++) blk.scales[j] = (int8_t)sc[j];
        memset(blk.ql, 0, sizeof blk.ql);
        memset(blk.qh, 0, sizeof blk.qh);
        for (int e = 0; e < BB_QK_K; e++) {
            int u = code[e] + 32;
            blk.ql[q6_ql_index(e)] |= (uint8_t)((u & 0xF) << q6_ql_shift(e));
            blk.qh[qs2_index(e)] |= (uint8_t)((u >> 4) << qs2_shift(e));
        }
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

/* Decoders: ggml's arithmetic, operand for operand. Sub-block scale first (d * sc, dmin * m in
 * f32), then each value as scale * code (- min). */

void bb_qformat_decode_q2_k(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++, y += BB_QK_K) {
        bb_block_q2_k blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d), dmin = bb_f16_to_f32(blk.dmin);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)(blk.scales[j] & 0xF), ml = dmin * (float)(blk.scales[j] >> 4);
            for (int e = 16 * j; e < 16 * j + 16; e++)
                y[e] = dl * (float)((blk.qs[qs2_index(e)] >> qs2_shift(e)) & 3) - ml;
        }
    }
}

void bb_qformat_decode_q3_k(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++, y += BB_QK_K) {
        bb_block_q3_k blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d);
        for (int k = 0; k < 16; k++) {
            int v = ((blk.scales[k % 8] >> (k < 8 ? 0 : 4)) & 0xF) | ((blk.scales[8 + k % 4] >> (2 * (k / 4))) & 3)
                                                                         << 4;
            const float dl = d * (float)(v - 32);
            for (int e = 16 * k; e < 16 * k + 16; e++) {
                int q = ((blk.qs[qs2_index(e)] >> qs2_shift(e)) & 3) - ((blk.hmask[e % 32] >> (e / 32)) & 1 ? 0 : 4);
                y[e] = dl * (float)q;
            }
        }
    }
}

void bb_qformat_decode_q4_k(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++, y += BB_QK_K) {
        bb_block_q4_k blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d), dmin = bb_f16_to_f32(blk.dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            unpack_scales_k4(blk.scales, j, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            const int c = j / 2, shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)((blk.qs[32 * c + l] >> shift) & 0xF) - m1;
        }
    }
}

void bb_qformat_decode_q5_k(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++, y += BB_QK_K) {
        bb_block_q5_k blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d), dmin = bb_f16_to_f32(blk.dmin);
        for (int j = 0; j < 8; j++) {
            int sc, mn;
            unpack_scales_k4(blk.scales, j, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            const int c = j / 2, shift = 4 * (j % 2);
            for (int l = 0; l < 32; l++) {
                int q = ((blk.qs[32 * c + l] >> shift) & 0xF) | ((blk.qh[l] >> j) & 1) << 4;
                y[32 * j + l] = d1 * (float)q - m1;
            }
        }
    }
}

void bb_qformat_decode_q6_k(const void *src, size_t n, float *y) {
    for (size_t ib = 0; ib < n / BB_QK_K; ib++, y += BB_QK_K) {
        bb_block_q6_k blk;
        memcpy(&blk, (const uint8_t *)src + ib * sizeof blk, sizeof blk);
        const float d = bb_f16_to_f32(blk.d);
        for (int j = 0; j < 16; j++) {
            const float dl = d * (float)blk.scales[j];
            for (int e = 16 * j; e < 16 * j + 16; e++) {
                int q = (((blk.ql[q6_ql_index(e)] >> q6_ql_shift(e)) & 0xF) |
                         ((blk.qh[qs2_index(e)] >> qs2_shift(e)) & 3) << 4) -
                        32;
                y[e] = dl * (float)q;
            }
        }
    }
}
