/* block_grad.c — one transformer block, forward with saved activations and backward to its input, low-rank
 * factors and weights. */
#include "model/block_grad.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"

/* ---- backward pieces: references ------------------------------------------------------------------------- */

void bb_linear_bwd_ref(const float *x, const float *w, const float *a, const float *b, const float *u, int rank,
                       const float *dy, int64_t rows, int64_t in, int64_t out, float *dx, int accumulate_dx, float *da,
                       float *db, float *dw) {
    if (!a) rank = 0;
    if (dx)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < in; i++) {
                /* W_eff = W + A B, so dx = dy (W + A B) */
                double s = 0;
                for (int64_t o = 0; o < out; o++) {
                    double weff = w[o * in + i];
                    for (int k = 0; k < rank; k++) weff += (double)a[o * rank + k] * b[(int64_t)k * in + i];
                    s += (double)dy[r * out + o] * weff;
                }
                dx[r * in + i] = (float)(accumulate_dx ? dx[r * in + i] + s : s);
            }
    if (da)
        for (int64_t o = 0; o < out; o++)
            for (int k = 0; k < rank; k++) {
                double s = 0;
                for (int64_t r = 0; r < rows; r++) s += (double)dy[r * out + o] * u[r * rank + k];
                da[o * rank + k] += (float)s;
            }
    if (db)
        for (int k = 0; k < rank; k++)
            for (int64_t i = 0; i < in; i++) {
                double s = 0;
                for (int64_t r = 0; r < rows; r++) {
                    double t = 0; /* (dy A)[r, k] */
                    for (int64_t o = 0; o < out; o++) t += (double)dy[r * out + o] * a[o * rank + k];
                    s += t * x[r * in + i];
                }
                db[(int64_t)k * in + i] += (float)s;
            }
    if (dw)
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) {
                double s = 0;
                for (int64_t r = 0; r < rows; r++) s += (double)dy[r * out + o] * x[r * in + i];
                dw[o * in + i] += (float)s;
            }
}

void bb_rmsnorm_bwd_ref(const float *x, const float *w, const float *dy, int64_t rows, int dim, float eps, float *dx) {
    /* y_i = w_i x_i s with s = (mean x² + eps)^(-1/2), ∂s/∂x_j = -s³ x_j / dim:
     * dx_j = s w_j dy_j - s³ x_j / dim · Σ_i w_i dy_i x_i */
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dr = dy + r * dim;
        double ss = 0, dot = 0;
        for (int i = 0; i < dim; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)w[i] * dr[i] * xr[i];
        }
        double s = 1.0 / sqrt(ss / dim + eps), c = s * s * s * dot / dim;
        for (int i = 0; i < dim; i++) dx[r * dim + i] += (float)(s * w[i] * dr[i] - c * xr[i]);
    }
}

void bb_rope_bwd_ref(float *d, int64_t rows, int n_heads, int head_dim, bb_rope_style style, const float *cos_t,
                     const float *sin_t) {
    int half = head_dim / 2;
    for (int64_t r = 0; r < rows; r++)
        for (int h = 0; h < n_heads; h++) {
            float *v = d + (r * n_heads + h) * head_dim;
            for (int i = 0; i < half; i++) {
                int a = style == BB_ROPE_HALF ? i : 2 * i, b = style == BB_ROPE_HALF ? i + half : 2 * i + 1;
                float c = cos_t[r * half + i], s = sin_t[r * half + i], y0 = v[a], y1 = v[b];
                /* forward [c -s; s c], its transpose [c s; -s c] */
                v[a] = y0 * c + y1 * s;
                v[b] = -y0 * s + y1 * c;
            }
        }
}

void bb_silu_mul_bwd_ref(const float *g, const float *u, const float *dh, int64_t n, float *dg, float *du) {
    for (int64_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
        du[i] = dh[i] * silu;
        dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

void bb_attention_fwd_ref(const float *q, const float *k, const float *v, int T, int n_heads, int n_kv, int hd,
                          float *out, float *p) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv;
    double scale = 1.0 / sqrt((double)hd);
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            float *pr = p + ((int64_t)h * T + t) * T;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= t; j++) {
                double s = 0;
                for (int i = 0; i < hd; i++)
                    s += (double)q[(int64_t)t * qd + h * hd + i] * k[(int64_t)j * kvd + g * hd + i];
                pr[j] = (float)(s * scale);
                mx = fmax(mx, s * scale);
            }
            for (int j = 0; j <= t; j++) sum += exp(pr[j] - mx);
            for (int j = 0; j < T; j++) pr[j] = j <= t ? (float)(exp(pr[j] - mx) / sum) : 0.0f;
            for (int i = 0; i < hd; i++) {
                double s = 0;
                for (int j = 0; j <= t; j++) s += (double)pr[j] * v[(int64_t)j * kvd + g * hd + i];
                out[(int64_t)t * qd + h * hd + i] = (float)s;
            }
        }
    }
}

void bb_attention_bwd_ref(const float *q, const float *k, const float *v, const float *p, const float *dout, int T,
                          int n_heads, int n_kv, int hd, float *dq, float *dk, float *dv) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv;
    double scale = 1.0 / sqrt((double)hd);
    memset(dq, 0, sizeof(float) * (size_t)T * qd);
    memset(dk, 0, sizeof(float) * (size_t)T * kvd);
    memset(dv, 0, sizeof(float) * (size_t)T * kvd);
    double *dp = malloc(sizeof(double) * (size_t)T);
    if (!dp) return; /* a reference for small test shapes; T doubles always fit there */
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        for (int t = 0; t < T; t++) {
            const float *pr = p + ((int64_t)h * T + t) * T, *dor = dout + (int64_t)t * qd + h * hd;
            /* out_t = Σ_j p_tj v_j: dv_j += p_tj dout_t, dp_tj = dout_t · v_j */
            double dot = 0;
            for (int j = 0; j <= t; j++) {
                double s = 0;
                for (int i = 0; i < hd; i++) {
                    s += (double)dor[i] * v[(int64_t)j * kvd + g * hd + i];
                    dv[(int64_t)j * kvd + g * hd + i] += (float)((double)pr[j] * dor[i]);
                }
                dp[j] = s;
                dot += s * pr[j];
            }
            /* softmax: ds_tj = p_tj (dp_tj - Σ_l p_tl dp_tl); scores s_tj = scale q_t · k_j */
            for (int j = 0; j <= t; j++) {
                double ds = pr[j] * (dp[j] - dot) * scale;
                for (int i = 0; i < hd; i++) {
                    dq[(int64_t)t * qd + h * hd + i] += (float)(ds * k[(int64_t)j * kvd + g * hd + i]);
                    dk[(int64_t)j * kvd + g * hd + i] += (float)(ds * q[(int64_t)t * qd + h * hd + i]);
                }
            }
        }
    }
    free(dp);
}

/* ---- fast paths ------------------------------------------------------------------------------------------- */

void bb_linear_bwd(const float *x, const float *w, const float *a, const float *b, const float *u, int rank,
                   const float *dy, int64_t rows, int64_t in, int64_t out, float *dx, int accumulate_dx, float *da,
                   float *db, float *dw, float *scratch) {
    blasint nr = (blasint)rows, ni = (blasint)in, no = (blasint)out, nk = (blasint)rank;
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, ni, no, 1.0f, dy, no, w, ni,
                    accumulate_dx ? 1.0f : 0.0f, dx, ni);
    if (a) {
        /* t = dy A (rows, rank): then dx += t B, dA += dyᵀ u, dB += tᵀ x */
        float *t = scratch;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, nk, no, 1.0f, dy, no, a, nk, 0.0f, t, nk);
        if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, ni, nk, 1.0f, t, nk, b, ni, 1.0f, dx, ni);
        if (da) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, no, nk, nr, 1.0f, dy, no, u, nk, 1.0f, da, nk);
        if (db) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, ni, nr, 1.0f, t, nk, x, ni, 1.0f, db, ni);
    }
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, no, ni, nr, 1.0f, dy, no, x, ni, 1.0f, dw, ni);
}

void bb_attention_fwd(const float *q, const float *k, const float *v, int T, int n_heads, int n_kv, int hd, float *out,
                      float *p) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        float *ph = p + (int64_t)h * T * T;
        /* scores over the full square; the masked triangle costs less than T small sgemms would */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q + h * hd, qd, k + g * hd, kvd, 0.0f, ph,
                    T);
        for (int t = 0; t < T; t++) {
            float *pr = ph + (int64_t)t * T, mx = pr[0];
            for (int j = 1; j <= t; j++) mx = pr[j] > mx ? pr[j] : mx;
            for (int j = 0; j <= t; j++) pr[j] -= mx;
            bb_exp(pr, t + 1, pr); /* the vectorized exp: expf would dominate at small head widths */
            double sum = 0;
            for (int j = 0; j <= t; j++) sum += pr[j];
            float inv = (float)(1.0 / sum);
            for (int j = 0; j <= t; j++) pr[j] *= inv;
            memset(pr + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, ph, T, v + g * hd, kvd, 0.0f,
                    out + h * hd, qd);
    }
}

void bb_attention_bwd(const float *q, const float *k, const float *v, const float *p, const float *dout, int T,
                      int n_heads, int n_kv, int hd, float *dq, float *dk, float *dv, float *scratch) {
    int qd = n_heads * hd, kvd = n_kv * hd, group = n_heads / n_kv;
    float scale = 1.0f / sqrtf((float)hd);
    float *ds = scratch;
    memset(dk, 0, sizeof(float) * (size_t)T * kvd);
    memset(dv, 0, sizeof(float) * (size_t)T * kvd);
    for (int h = 0; h < n_heads; h++) {
        int g = h / group;
        const float *ph = p + (int64_t)h * T * T;
        /* dV_g += Pᵀ dO, dP = dO V_gᵀ */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, ph, T, dout + h * hd, qd, 1.0f,
                    dv + g * hd, kvd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dout + h * hd, qd, v + g * hd, kvd, 0.0f,
                    ds, T);
        for (int t = 0; t < T; t++) {
            const float *pr = ph + (int64_t)t * T;
            float *dr = ds + (int64_t)t * T;
            double dot = 0;
            for (int j = 0; j <= t; j++) dot += (double)pr[j] * dr[j];
            float d = (float)dot;
            for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - d);
            memset(dr + t + 1, 0, sizeof(float) * (size_t)(T - t - 1));
        }
        /* dQ_h = scale dS K_g, dK_g += scale dSᵀ Q_h */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, ds, T, k + g * hd, kvd, 0.0f,
                    dq + h * hd, qd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, ds, T, q + h * hd, qd, 1.0f, dk + g * hd,
                    kvd);
    }
}

/* ---- the block -------------------------------------------------------------------------------------------- */

struct bb_block {
    bb_model_config c;
    int qd, kvd, max_seq, T, max_rank;
    int n_seq; /* rows of the last forward / n_seq·T; 0 before the first */
    const float *x;
    /* saved by the forward, (R, width) each */
    float *xn1, *q, *k, *v, *att, *x2, *xn2, *g, *u, *h;
    float *lu[BB_LIN_COUNT]; /* (R, rank): x Bᵀ of each factored linear */
    float *p;                /* (n_seq, n_heads, T, T) */
    float *cos_t, *sin_t;    /* (T, hd/2) */
    /* backward scratch */
    float *dx2, *dxn, *dh, *dg, *du, *datt, *dq, *dk, *dv, *dt; /* (R, width); dt (R, max_rank) */
    float *ds;                                                  /* (T, T) */
};

void bb_block_linear_shape(const bb_model_config *c, bb_linear_kind k, int64_t *out, int64_t *in) {
    int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim;
    static const int ins[BB_LIN_COUNT] = {0, 0, 0, 1, 0, 0, 2};
    switch (k) {
    case BB_LIN_Q: *out = qd; break;
    case BB_LIN_K:
    case BB_LIN_V: *out = kvd; break;
    case BB_LIN_GATE:
    case BB_LIN_UP: *out = hid; break;
    default: *out = dim; break;
    }
    *in = ins[k] == 0 ? dim : ins[k] == 1 ? qd : hid;
}

/* Floats per row of the saved activations and scratch, per sequence (probabilities), and fixed. */
static void sizes(const bb_model_config *c, int T, int max_rank, int64_t *per_row, int64_t *per_seq, int64_t *fixed) {
    int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
            hid = c->hidden_dim;
    *per_row = 5 * dim + 4 * qd + 4 * kvd + 6 * hid + (BB_LIN_COUNT + 1) * (int64_t)max_rank;
    *per_seq = (int64_t)c->n_heads * T * T;
    *fixed = (int64_t)T * T + (int64_t)T * c->head_dim;
}

int64_t bb_block_memory_bytes(const bb_model_config *c, int n_seq, int seq_len, int max_rank) {
    int64_t per_row, per_seq, fixed;
    sizes(c, seq_len, max_rank, &per_row, &per_seq, &fixed);
    return 4 * ((int64_t)n_seq * seq_len * per_row + n_seq * per_seq + fixed);
}

void bb_block_destroy(bb_block **pb) {
    if (!pb || !*pb) return;
    bb_block *b = *pb;
    float **bufs[] = {&b->xn1, &b->q,  &b->k,    &b->v,     &b->att,   &b->x2,  &b->xn2, &b->g,
                      &b->u,   &b->h,  &b->p,    &b->cos_t, &b->sin_t, &b->dx2, &b->dxn, &b->dh,
                      &b->dg,  &b->du, &b->datt, &b->dq,    &b->dk,    &b->dv,  &b->dt,  &b->ds};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    for (int k = 0; k < BB_LIN_COUNT; k++) free(b->lu[k]);
    free(b);
    *pb = NULL;
}

static bb_status alloc(float **p, int64_t n, int64_t *total) {
    *total += n;
    return bb_malloc((void **)p, sizeof(float) * (size_t)(n > 0 ? n : 1), "block activations");
}

bb_status bb_block_create(const bb_model_config *c, int n_seq, int seq_len, int max_rank, bb_block **out) {
    *out = NULL;
    BB_CHECK(n_seq >= 1 && seq_len >= 1 && max_rank >= 0, BB_ERR_ARG,
             "block context for %d sequences of %d tokens, rank %d: sequences and tokens must be >= 1, rank >= 0",
             n_seq, seq_len, max_rank);
    BB_CHECK(seq_len <= c->max_seq_len, BB_ERR_ARG, "sequences of %d tokens exceed the model's context of %d", seq_len,
             c->max_seq_len);
    BB_CHECK(c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0 && c->head_dim % 2 == 0, BB_ERR_ARG,
             "%d query heads over %d kv heads of width %d: need a whole number of query heads per kv head and an "
             "even head width",
             c->n_heads, c->n_kv_heads, c->head_dim);
    bb_block *b;
    BB_CALL(bb_calloc((void **)&b, 1, sizeof *b, "block context"));
    b->c = *c;
    b->qd = c->n_heads * c->head_dim;
    b->kvd = c->n_kv_heads * c->head_dim;
    b->max_seq = n_seq;
    b->T = seq_len;
    b->max_rank = max_rank;
    int64_t R = (int64_t)n_seq * seq_len, dim = c->dim, hid = c->hidden_dim, half = c->head_dim / 2, total = 0;
    struct {
        float **p;
        int64_t n;
    } want[] = {
        {&b->xn1, R * dim},
        {&b->q, R * b->qd},
        {&b->k, R * b->kvd},
        {&b->v, R * b->kvd},
        {&b->att, R * b->qd},
        {&b->x2, R * dim},
        {&b->xn2, R * dim},
        {&b->g, R * hid},
        {&b->u, R * hid},
        {&b->h, R * hid},
        {&b->p, (int64_t)n_seq * c->n_heads * seq_len * seq_len},
        {&b->cos_t, seq_len * half},
        {&b->sin_t, seq_len * half},
        {&b->dx2, R * dim},
        {&b->dxn, R * dim},
        {&b->dh, R * hid},
        {&b->dg, R * hid},
        {&b->du, R * hid},
        {&b->datt, R * b->qd},
        {&b->dq, R * b->qd},
        {&b->dk, R * b->kvd},
        {&b->dv, R * b->kvd},
        {&b->dt, R * max_rank},
        {&b->ds, (int64_t)seq_len * seq_len},
    };
    bb_status st = BB_OK;
    for (size_t i = 0; i < sizeof want / sizeof want[0] && !st; i++) st = alloc(want[i].p, want[i].n, &total);
    for (int k = 0; k < BB_LIN_COUNT && !st; k++) st = alloc(&b->lu[k], R * max_rank, &total);
    if (st) {
        bb_block_destroy(&b);
        return bb_trace(st, __FILE__, __LINE__, "bb_block_create");
    }
    double *inv_freq = malloc(sizeof(double) * (size_t)half);
    int *pos = malloc(sizeof(int) * (size_t)seq_len);
    if (!inv_freq || !pos) {
        free(inv_freq);
        free(pos);
        bb_block_destroy(&b);
        BB_CHECK(0, BB_ERR_OOM, "out of memory: RoPE tables for %d positions", seq_len);
    }
    for (int t = 0; t < seq_len; t++) pos[t] = t;
    bb_rope_freqs(c, inv_freq);
    bb_rope_table(inv_freq, (int)half, pos, seq_len, b->cos_t, b->sin_t);
    free(inv_freq);
    free(pos);
    *out = b;
    return BB_OK;
}

static bb_status check_weights(const bb_block *b, const bb_block_weights *w) {
    for (int k = 0; k < BB_LIN_COUNT; k++)
        if (w->lora_a[k])
            BB_CHECK(w->lora_b[k] && w->rank[k] >= 1 && w->rank[k] <= b->max_rank, BB_ERR_ARG,
                     "factors of %s have rank %d (B %s); the block context takes ranks 1..%d",
                     bb_linear_name((bb_linear_kind)k), w->rank[k], w->lora_b[k] ? "set" : "missing", b->max_rank);
    return BB_OK;
}

/* y = x Wᵀ (+ bias) + (x Bᵀ) Aᵀ, or y += the same when add is set (the residual folded into the sgemm as
 * forward.c does, so that without factors the sums round identically); x Bᵀ is kept in lu. */
static void linear_fwd(const bb_block_weights *w, int k, const float *bias, const float *x, int64_t R, int64_t in,
                       int64_t out, float *lu, float *y, int add) {
    if (add)
        bb_matmul_add(x, w->w[k], R, in, out, y);
    else
        bb_matmul(x, w->w[k], bias, R, in, out, y);
    if (!w->lora_a[k]) return;
    blasint r = w->rank[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)R, r, (blasint)in, 1.0f, x, (blasint)in, w->lora_b[k],
                (blasint)in, 0.0f, lu, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)R, (blasint)out, r, 1.0f, lu, r, w->lora_a[k], r,
                1.0f, y, (blasint)out);
}

bb_status bb_block_forward(bb_block *b, const bb_block_weights *w, const float *x, int n_seq, float *y) {
    BB_CHECK(n_seq >= 1 && n_seq <= b->max_seq, BB_ERR_ARG,
             "block forward of %d sequences: the context was created for 1..%d", n_seq, b->max_seq);
    BB_CALL(check_weights(b, w));
    const bb_model_config *c = &b->c;
    int T = b->T, dim = c->dim, hid = c->hidden_dim, qd = b->qd, kvd = b->kvd, hd = c->head_dim;
    int64_t R = (int64_t)n_seq * T;
    b->n_seq = 0;
    b->x = x;
    bb_rmsnorm_ref(x, w->attn_norm, R, dim, c->norm_eps, b->xn1);
    linear_fwd(w, BB_LIN_Q, w->bias[0], b->xn1, R, dim, qd, b->lu[BB_LIN_Q], b->q, 0);
    linear_fwd(w, BB_LIN_K, w->bias[1], b->xn1, R, dim, kvd, b->lu[BB_LIN_K], b->k, 0);
    linear_fwd(w, BB_LIN_V, w->bias[2], b->xn1, R, dim, kvd, b->lu[BB_LIN_V], b->v, 0);
    for (int s = 0; s < n_seq; s++) {
        int64_t r0 = (int64_t)s * T;
        bb_rope_ref(b->q + r0 * qd, T, c->n_heads, hd, c->rope_style, b->cos_t, b->sin_t);
        bb_rope_ref(b->k + r0 * kvd, T, c->n_kv_heads, hd, c->rope_style, b->cos_t, b->sin_t);
        bb_attention_fwd(b->q + r0 * qd, b->k + r0 * kvd, b->v + r0 * kvd, T, c->n_heads, c->n_kv_heads, hd,
                         b->att + r0 * qd, b->p + (int64_t)s * c->n_heads * T * T);
    }
    memcpy(b->x2, x, sizeof(float) * (size_t)(R * dim));
    linear_fwd(w, BB_LIN_O, NULL, b->att, R, qd, dim, b->lu[BB_LIN_O], b->x2, 1);
    bb_rmsnorm_ref(b->x2, w->ffn_norm, R, dim, c->norm_eps, b->xn2);
    linear_fwd(w, BB_LIN_GATE, NULL, b->xn2, R, dim, hid, b->lu[BB_LIN_GATE], b->g, 0);
    linear_fwd(w, BB_LIN_UP, NULL, b->xn2, R, dim, hid, b->lu[BB_LIN_UP], b->u, 0);
    memcpy(b->h, b->g, sizeof(float) * (size_t)(R * hid));
    bb_silu_mul(b->h, b->u, R * hid);
    memcpy(y, b->x2, sizeof(float) * (size_t)(R * dim));
    linear_fwd(w, BB_LIN_DOWN, NULL, b->h, R, hid, dim, b->lu[BB_LIN_DOWN], y, 1);
    b->n_seq = n_seq;
    return BB_OK;
}

static void linear_bwd(bb_block *b, const bb_block_weights *w, bb_block_grads *g, int k, const float *x,
                       const float *dy, int64_t R, float *dx, int acc) {
    int64_t out, in;
    bb_block_linear_shape(&b->c, (bb_linear_kind)k, &out, &in);
    int f = w->lora_a[k] != NULL;
    bb_linear_bwd(x, w->w[k], w->lora_a[k], w->lora_b[k], b->lu[k], f ? w->rank[k] : 0, dy, R, in, out, dx, acc,
                  f ? g->d_a[k] : NULL, f ? g->d_b[k] : NULL, g->d_w[k], b->dt);
}

bb_status bb_block_backward(bb_block *b, const bb_block_weights *w, const float *dy, float *dx, bb_block_grads *g) {
    BB_CHECK(b->n_seq > 0, BB_ERR_ARG, "block backward without a forward pass before it");
    BB_CALL(check_weights(b, w));
    const bb_model_config *c = &b->c;
    int T = b->T, dim = c->dim, hid = c->hidden_dim, qd = b->qd, kvd = b->kvd, hd = c->head_dim;
    int64_t R = (int64_t)b->n_seq * T;
    /* y = x2 + down(h): the residual passes dy to x2 */
    memcpy(b->dx2, dy, sizeof(float) * (size_t)(R * dim));
    linear_bwd(b, w, g, BB_LIN_DOWN, b->h, dy, R, b->dh, 0);
    bb_silu_mul_bwd_ref(b->g, b->u, b->dh, R * hid, b->dg, b->du);
    linear_bwd(b, w, g, BB_LIN_GATE, b->xn2, b->dg, R, b->dxn, 0);
    linear_bwd(b, w, g, BB_LIN_UP, b->xn2, b->du, R, b->dxn, 1);
    bb_rmsnorm_bwd_ref(b->x2, w->ffn_norm, b->dxn, R, dim, c->norm_eps, b->dx2);
    /* x2 = x + o(att) */
    linear_bwd(b, w, g, BB_LIN_O, b->att, b->dx2, R, b->datt, 0);
    for (int s = 0; s < b->n_seq; s++) {
        int64_t r0 = (int64_t)s * T;
        bb_attention_bwd(b->q + r0 * qd, b->k + r0 * kvd, b->v + r0 * kvd, b->p + (int64_t)s * c->n_heads * T * T,
                         b->datt + r0 * qd, T, c->n_heads, c->n_kv_heads, hd, b->dq + r0 * qd, b->dk + r0 * kvd,
                         b->dv + r0 * kvd, b->ds);
        bb_rope_bwd_ref(b->dq + r0 * qd, T, c->n_heads, hd, c->rope_style, b->cos_t, b->sin_t);
        bb_rope_bwd_ref(b->dk + r0 * kvd, T, c->n_kv_heads, hd, c->rope_style, b->cos_t, b->sin_t);
    }
    linear_bwd(b, w, g, BB_LIN_Q, b->xn1, b->dq, R, b->dxn, 0);
    linear_bwd(b, w, g, BB_LIN_K, b->xn1, b->dk, R, b->dxn, 1);
    linear_bwd(b, w, g, BB_LIN_V, b->xn1, b->dv, R, b->dxn, 1);
    if (dx) {
        memcpy(dx, b->dx2, sizeof(float) * (size_t)(R * dim));
        bb_rmsnorm_bwd_ref(b->x, w->attn_norm, b->dxn, R, dim, c->norm_eps, dx);
    }
    return BB_OK;
}

void bb_block_flops(const bb_model_config *c, int n_seq, int seq_len, const bb_block_weights *w, int with_dw,
                    double *fwd, double *bwd) {
    double R = (double)n_seq * seq_len, T = seq_len, lin = 0, lin_b = 0;
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(c, (bb_linear_kind)k, &out, &in);
        double r = w && w->lora_a[k] ? w->rank[k] : 0, dense = 2 * R * out * in, low = 2 * R * r * (in + out);
        lin += dense + low;
        /* dx (dense + low), t = dy A, dA, dB; dW when asked */
        lin_b += dense + low + 2 * R * r * out + 2 * R * r * (out + in);
        if (with_dw) lin_b += dense;
    }
    double att = 4.0 * n_seq * c->n_heads * T * T * c->head_dim; /* QKᵀ and PV */
    *fwd = lin + att;
    *bwd = lin_b + 2 * att; /* dV, dP, dQ, dK */
}
