/* kernels.c — CPU fp32 kernels: matmul, RMSNorm, RoPE (both pairings, scaled frequencies), vectorizable exp,
 * SwiGLU, blocked causal GQA attention. */
#include "model/kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void bb_matmul_ref(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) s += (double)x[r * in + i] * w[o * in + i];
            y[r * out + o] = (float)s;
        }
}

void bb_matmul(const float *x, const float *w, const float *b, int64_t rows, int64_t in, int64_t out, float *y) {
    if (b)
        for (int64_t r = 0; r < rows; r++) memcpy(y + r * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)out, (blasint)in, 1.0f, x, (blasint)in,
                w, (blasint)in, b ? 1.0f : 0.0f, y, (blasint)out);
}

void bb_matmul_add_ref(const float *x, const float *w, int64_t rows, int64_t in, int64_t out, float *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += (double)x[r * in + i] * w[o * in + i];
            y[r * out + o] += (float)s;
        }
}

void bb_matmul_add(const float *x, const float *w, int64_t rows, int64_t in, int64_t out, float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)rows, (blasint)out, (blasint)in, 1.0f, x, (blasint)in,
                w, (blasint)in, 1.0f, y, (blasint)out);
}

void bb_rmsnorm_ref(const float *x, const float *w, int64_t rows, int dim, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++) y[r * dim + i] = w[i] * (inv * xr[i]);
    }
}

void bb_rope_freqs(const bb_model_config *c, double *inv_freq) {
    int half = c->head_dim / 2;
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < half; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
        if (c->rope_scaling == BB_ROPE_SCALING_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == BB_ROPE_SCALING_LLAMA3) {
            /* Llama 3.1: long wavelengths are slowed by factor, short ones kept,
             * and the band in between interpolated smoothly. */
            double orig = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double wavelen = 2 * pi / f;
            if (wavelen > orig / lo) {
                f /= c->rope_factor;
            } else if (wavelen >= orig / hi) {
                double smooth = (orig / wavelen - lo) / (hi - lo);
                f = (1 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = f;
    }
}

void bb_rope_table(const double *inv_freq, int half, const int *pos, int n, float *cos_t, float *sin_t) {
    for (int r = 0; r < n; r++)
        for (int i = 0; i < half; i++) {
            double a = pos[r] * inv_freq[i];
            cos_t[r * half + i] = (float)cos(a);
            sin_t[r * half + i] = (float)sin(a);
        }
}

void bb_rope_ref(float *x, int64_t rows, int n_heads, int head_dim, bb_rope_style style, const float *cos_t,
                 const float *sin_t) {
    int half = head_dim / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (r * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                int a = style == BB_ROPE_HALF ? i : 2 * i, b = style == BB_ROPE_HALF ? i + half : 2 * i + 1;
                float c = cos_t[r * half + i], s = sin_t[r * half + i], x0 = v[a], x1 = v[b];
                v[a] = x0 * c - x1 * s;
                v[b] = x0 * s + x1 * c;
            }
        }
}

void bb_silu_mul_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- exp: a polynomial the compiler vectorizes ------------------------------------ */

/* Cephes' expf: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 split in
 * two constants for exactness, and a degree-7 polynomial for e^r on
 * [-ln2/2, ln2/2]; 2 ulp. |x| is clamped to 87.3 first (so n stays in -126..126
 * and 2^n can be built from its exponent bits): results saturate at 1.2e-38 and
 * 8.2e37 instead of reaching 0 or Inf; NaN stays NaN. The clamp works on the
 * integer bits because gcc 12 will not if-convert a float comparison (it may
 * trap) and would then leave the whole loop scalar. Rounding uses the 1.5*2^23
 * trick, as SSE2 has no vector floor. The AVX-512 build (VECTOR_CLONES below)
 * may fuse the multiply-adds; the bound holds either way. */
static inline float exp_poly(float x) {
    const uint32_t clamp = 0x42AE999Au; /* 87.3f */
    uint32_t ix, a;
    memcpy(&ix, &x, sizeof ix);
    a = ix & 0x7fffffffu;
    uint32_t big = (uint32_t) - (int32_t)((a > clamp) & (a <= 0x7f800000u));
    ix = (ix & ~big) | (((ix & 0x80000000u) | clamp) & big);
    memcpy(&x, &ix, sizeof x);
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t tb, sb;
    memcpy(&tb, &t, sizeof tb);
    sb = (tb - 0x4B400000u + 127u) << 23; /* 2^n: n sits in t's low mantissa bits */
    float s;
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

/* Work in fixed chunks: at -O2 gcc vectorizes only loops whose trip count is a
 * multiple of the vector width and that need no alias checks, so each chunk
 * goes through a local array. */
#define CHUNK 16

/* The baseline x86-64 ISA has 4-wide SSE2 only; gcc and clang also build these
 * loops for AVX2 and AVX-512 and pick one when the program loads (ifunc), so
 * the same plain C runs 8 or 16 wide where the CPU allows. The AVX-512 build
 * fuses multiply-adds: results differ between CPUs in the last bits, never
 * between runs on one. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* y[i] = exp(x[i] - shift); x and y may alias. */
VECTOR_CLONES static void exp_shifted(const float *x, int64_t n, float shift, float *y) {
    int64_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float t[CHUNK];
        for (int j = 0; j < CHUNK; j++) t[j] = exp_poly(x[i + j] - shift);
        memcpy(y + i, t, sizeof t);
    }
    for (; i < n; i++) y[i] = exp_poly(x[i] - shift);
}

void bb_exp_ref(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

void bb_exp(const float *x, int64_t n, float *y) { exp_shifted(x, n, 0.0f, y); }

/* Static clones with an exported wrapper: clang 14 emits no ifunc for an
 * exported function with target_clones (undefined symbol at link time). */
VECTOR_CLONES static void silu_mul(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float t[CHUNK];
        for (int j = 0; j < CHUNK; j++) t[j] = g[i + j] / (1.0f + exp_poly(-g[i + j])) * u[i + j];
        memcpy(g + i, t, sizeof t);
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + exp_poly(-g[i])) * u[i];
}

void bb_silu_mul(float *g, const float *u, int64_t n) { silu_mul(g, u, n); }

/* ---- attention -------------------------------------------------------------------- */

/* x's bits as an integer that orders like x (NaN above +Inf), so a max runs
 * on integers, which gcc vectorizes where a float comparison stays scalar. Needs
 * >> on a negative int to be arithmetic, as it is in gcc and clang. */
static inline int32_t ordered_bits(float x) {
    int32_t i;
    memcpy(&i, &x, sizeof i);
    return i ^ ((i >> 31) & 0x7fffffff);
}

/* Causal softmax row, unnormalized: row[0, n) becomes exp(row - max) in place
 * and row[n, total) zeros (the mask); returns 1 / the sum, which the caller
 * applies to the hd outputs of the row instead of the n weights. Max and sum
 * run in CHUNK lanes so they vectorize; the lane order is fixed, so the result
 * is too. */
VECTOR_CLONES static float softmax_causal(float *row, int n, int total) {
    int32_t lane_mx[CHUNK], mk;
    for (int j = 0; j < CHUNK; j++) lane_mx[j] = ordered_bits(row[0]);
    int i = 0;
    for (; i + CHUNK <= n; i += CHUNK)
        for (int j = 0; j < CHUNK; j++) {
            int32_t k = ordered_bits(row[i + j]);
            lane_mx[j] = k > lane_mx[j] ? k : lane_mx[j];
        }
    mk = lane_mx[0];
    for (int j = 1; j < CHUNK; j++) mk = lane_mx[j] > mk ? lane_mx[j] : mk;
    for (; i < n; i++) mk = ordered_bits(row[i]) > mk ? ordered_bits(row[i]) : mk;
    float mx;
    mk ^= (mk >> 31) & 0x7fffffff; /* the mapping is its own inverse */
    memcpy(&mx, &mk, sizeof mx);
    /* Lanes add in float (vectorized) over at most 16 chunks, then flush into
     * double lanes: float error stays within 16 roundings whatever n is. */
    float lane_sum[CHUNK] = {0};
    double lane_dsum[CHUNK] = {0}, sum = 0;
    for (i = 0; i + CHUNK <= n; i += CHUNK) {
        float t[CHUNK];
        for (int j = 0; j < CHUNK; j++) t[j] = exp_poly(row[i + j] - mx);
        for (int j = 0; j < CHUNK; j++) lane_sum[j] += t[j];
        memcpy(row + i, t, sizeof t);
        if ((i / CHUNK) % 16 == 15 || i + 2 * CHUNK > n)
            for (int j = 0; j < CHUNK; j++) {
                lane_dsum[j] += lane_sum[j];
                lane_sum[j] = 0;
            }
    }
    for (int j = 0; j < CHUNK; j++) sum += lane_dsum[j];
    for (; i < n; i++) {
        row[i] = exp_poly(row[i] - mx);
        sum += row[i];
    }
    memset(row + n, 0, (size_t)(total - n) * sizeof *row);
    return (float)(1.0 / sum);
}

void bb_attention_ref(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                      float *out) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (int64_t)t * qd + h * hd;
            int g = h / group, n = pos0 + t + 1;
            /* Two passes (max, then weighted sum) keep this free of a scratch buffer. */
            double mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < hd; i++) s += (double)qh[i] * k[(int64_t)j * kvd + g * hd + i];
                mx = fmax(mx, s * scale);
            }
            double acc[hd], sum = 0;
            for (int i = 0; i < hd; i++) acc[i] = 0;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = 0; i < hd; i++) s += (double)qh[i] * k[(int64_t)j * kvd + g * hd + i];
                double p = exp(s * scale - mx);
                sum += p;
                for (int i = 0; i < hd; i++) acc[i] += p * v[(int64_t)j * kvd + g * hd + i];
            }
            for (int i = 0; i < hd; i++) out[(int64_t)t * qd + h * hd + i] = (float)(acc[i] / sum);
        }
}

/* Queries per block. Block b needs keys 0 .. pos0+(b+1)*qb-1 only, so about
 * half the causal square is skipped; within the diagonal block the masked
 * triangle is computed and discarded, which costs less than smaller sgemms
 * would. Measured on one core (AVX-512, OpenBLAS 0.3.21): with head_dim 128 and
 * 2048 tokens, 256 queries per block beat 64 by 15 % (the sgemms need the
 * rows more than the extra masked work, 12 % against 3 %, hurts); with
 * head_dim 8 (softmax-bound) 64 beats 256 by 25 %. */
static int query_block(int hd) { return hd >= 64 ? 256 : 64; }

static int attention_rows(int T, int group, int hd) {
    int qb = query_block(hd);
    return group * (T < qb ? T : qb);
}

int64_t bb_attention_scratch(int T, int pos0, int n_heads, int n_kv, int hd) {
    int64_t rows = attention_rows(T, n_heads / n_kv, hd);
    return rows * (pos0 + T) + rows + (n_heads > n_kv ? 2 * rows * hd : 0);
}

void bb_attention(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                  float *out, float *scratch) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv, S = pos0 + T;
    int64_t max_rows = attention_rows(T, group, hd);
    int qb = query_block(hd);
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = scratch, *inv = sc + max_rows * S, *qbuf = inv + max_rows, *obuf = qbuf + max_rows * hd;
    for (int t0 = 0; t0 < T; t0 += qb) {
        int tb = T - t0 < qb ? T - t0 : qb, n = pos0 + t0 + tb, rows = group * tb;
        for (int g = 0; g < n_kv; g++) {
            /* The group's query heads stacked as rows (head-major, then query):
             * one sgemm per kv head. Without sharing, Q and out are read and
             * written in place with their row stride. */
            const float *qg = q + (int64_t)t0 * qd + g * hd;
            float *og = out + (int64_t)t0 * qd + g * hd;
            int ldq = qd, ldo = qd;
            if (group > 1) {
                for (int j = 0; j < group; j++)
                    for (int t = 0; t < tb; t++)
                        memcpy(qbuf + ((int64_t)j * tb + t) * hd, q + (int64_t)(t0 + t) * qd + (g * group + j) * hd,
                               (size_t)hd * sizeof *qbuf);
                qg = qbuf;
                og = obuf;
                ldq = ldo = hd;
            }
            /* scores (rows, n) = scale * Q K^T over the keys this block can see */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, hd, scale, qg, ldq, k + g * hd, kvd, 0.0f, sc,
                        n);
            for (int r = 0; r < rows; r++) inv[r] = softmax_causal(sc + (int64_t)r * n, pos0 + t0 + r % tb + 1, n);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n, 1.0f, sc, n, v + g * hd, kvd, 0.0f, og,
                        ldo);
            for (int r = 0; r < rows; r++)
                for (int i = 0; i < hd; i++) og[(int64_t)r * ldo + i] *= inv[r];
            if (group > 1)
                for (int j = 0; j < group; j++)
                    for (int t = 0; t < tb; t++)
                        memcpy(out + (int64_t)(t0 + t) * qd + (g * group + j) * hd, obuf + ((int64_t)j * tb + t) * hd,
                               (size_t)hd * sizeof *obuf);
        }
    }
}
