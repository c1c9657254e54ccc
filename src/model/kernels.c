/* kernels.c — CPU fp32 kernels: matmul, RMSNorm, RoPE (both pairings, scaled frequencies), SwiGLU, causal GQA
 * attention. */
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

/* Softmax of row[0, n) in place, zeros in row[n, total): the causal mask. */
static void softmax_causal(float *row, int n, int total) {
    float mx = row[0];
    for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    double sum = 0;
    for (int j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) row[j] *= inv;
    for (int j = n; j < total; j++) row[j] = 0;
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

void bb_attention(const float *q, const float *k, const float *v, int T, int pos0, int n_heads, int n_kv, int hd,
                  float *out, float *scratch) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv, S = pos0 + T;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        /* scores (T, S) = scale * Q_h K_g^T; the masked upper triangle is computed
         * and discarded, which costs less than T small calls would. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, S, hd, scale, q + h * hd, qd, k + g * hd, kvd, 0.0f,
                    scratch, S);
        for (int t = 0; t < T; t++) softmax_causal(scratch + (int64_t)t * S, pos0 + t + 1, S);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, S, 1.0f, scratch, S, v + g * hd, kvd, 0.0f,
                    out + h * hd, qd);
    }
}
