/* test_block_grad.c — one transformer block's forward and backward (model/block_grad.h): fast paths against the
 * plain-C references, every gradient against central finite differences of an independent double-precision block
 * written here, and the block's forward against forward.c's layers on a synthetic model. */
#include <math.h>
#include <stdint.h>

#include "model/block_grad.h"
#include "model/forward.h"
#include "model/kernels.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* xorshift64*, uniform in (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((rng_state * 0x2545F4914F6CDD1Dull >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }
static void fill(float *x, int64_t n, double s) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(s * nrand());
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const float *b, int64_t n) {
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}

/* ---- fast paths against references ---------------------------------------------------------------------- */

static void test_linear_bwd_fast_vs_ref(void) {
    const int64_t rows = 23, in = 19, out = 13;
    const int rank = 3;
    float x[23 * 19], w[13 * 19], a[13 * 3], b[3 * 19], u[23 * 3], dy[23 * 13], scratch[23 * 3];
    float dx0[23 * 19], dx1[23 * 19], da0[13 * 3], da1[13 * 3], db0[3 * 19], db1[3 * 19], dw0[13 * 19], dw1[13 * 19];
    fill(x, rows * in, 1);
    fill(w, out * in, 0.3);
    fill(a, out * rank, 0.3);
    fill(b, rank * in, 0.3);
    fill(dy, rows * out, 1);
    for (int64_t r = 0; r < rows; r++) /* u = x Bᵀ, as the forward keeps it */
        for (int k = 0; k < rank; k++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += (double)x[r * in + i] * b[k * in + i];
            u[r * rank + k] = (float)s;
        }
    for (int acc = 0; acc < 2; acc++) {
        fill(dx0, rows * in, 1);
        memcpy(dx1, dx0, sizeof dx0);
        fill(da0, out * rank, 1);
        memcpy(da1, da0, sizeof da0);
        fill(db0, rank * in, 1);
        memcpy(db1, db0, sizeof db0);
        fill(dw0, out * in, 1);
        memcpy(dw1, dw0, sizeof dw0);
        bb_linear_bwd_ref(x, w, a, b, u, rank, dy, rows, in, out, dx0, acc, da0, db0, dw0);
        bb_linear_bwd(x, w, a, b, u, rank, dy, rows, in, out, dx1, acc, da1, db1, dw1, scratch);
        EXPECT(rel_err(dx1, dx0, rows * in) < 1e-5, "dx acc %d: %g", acc, rel_err(dx1, dx0, rows * in));
        EXPECT(rel_err(da1, da0, out * rank) < 1e-5, "dA: %g", rel_err(da1, da0, out * rank));
        EXPECT(rel_err(db1, db0, rank * in) < 1e-5, "dB: %g", rel_err(db1, db0, rank * in));
        EXPECT(rel_err(dw1, dw0, out * in) < 1e-5, "dW: %g", rel_err(dw1, dw0, out * in));
    }
    /* without factors: only dx and dW */
    bb_linear_bwd_ref(x, w, NULL, NULL, NULL, 0, dy, rows, in, out, dx0, 0, NULL, NULL, NULL);
    bb_linear_bwd(x, w, NULL, NULL, NULL, 0, dy, rows, in, out, dx1, 0, NULL, NULL, NULL, scratch);
    EXPECT(rel_err(dx1, dx0, rows * in) < 1e-5, "dx without factors: %g", rel_err(dx1, dx0, rows * in));
}

static void test_attention_fast_vs_ref(void) {
    const int T = 11, hd = 6, nh = 4;
    const int kvs[] = {4, 2, 1}; /* MHA, GQA, MQA */
    float q[11 * 24], k[11 * 24], v[11 * 24], o0[11 * 24], o1[11 * 24], p0[4 * 121], p1[4 * 121], dout[11 * 24];
    float dq0[11 * 24], dq1[11 * 24], dk0[11 * 24], dk1[11 * 24], dv0[11 * 24], dv1[11 * 24], sc[121];
    for (int c = 0; c < 3; c++) {
        int nkv = kvs[c];
        fill(q, T * nh * hd, 1);
        fill(k, T * nkv * hd, 1);
        fill(v, T * nkv * hd, 1);
        fill(dout, T * nh * hd, 1);
        bb_attention_fwd_ref(q, k, v, T, nh, nkv, hd, o0, p0);
        bb_attention_fwd(q, k, v, T, nh, nkv, hd, o1, p1);
        EXPECT(rel_err(o1, o0, T * nh * hd) < 1e-5, "kv %d out: %g", nkv, rel_err(o1, o0, T * nh * hd));
        EXPECT(rel_err(p1, p0, nh * T * T) < 1e-5, "kv %d probabilities: %g", nkv, rel_err(p1, p0, nh * T * T));
        int causal = 1; /* masked entries exactly zero, rows sum to one */
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                double s = 0;
                for (int j = 0; j < T; j++) {
                    s += p1[(h * T + t) * T + j];
                    causal &= j <= t || p1[(h * T + t) * T + j] == 0.0f;
                }
                causal &= fabs(s - 1) < 1e-5;
            }
        EXPECT(causal, "kv %d: probabilities are not causal rows summing to 1", nkv);
        /* the plain forward.c attention agrees too */
        bb_attention_ref(q, k, v, T, 0, nh, nkv, hd, o1);
        EXPECT(rel_err(o1, o0, T * nh * hd) < 1e-5, "kv %d vs bb_attention_ref: %g", nkv, rel_err(o1, o0, T * nh * hd));
        bb_attention_bwd_ref(q, k, v, p0, dout, T, nh, nkv, hd, dq0, dk0, dv0);
        bb_attention_bwd(q, k, v, p0, dout, T, nh, nkv, hd, dq1, dk1, dv1, sc);
        EXPECT(rel_err(dq1, dq0, T * nh * hd) < 1e-5, "kv %d dq: %g", nkv, rel_err(dq1, dq0, T * nh * hd));
        EXPECT(rel_err(dk1, dk0, T * nkv * hd) < 1e-5, "kv %d dk: %g", nkv, rel_err(dk1, dk0, T * nkv * hd));
        EXPECT(rel_err(dv1, dv0, T * nkv * hd) < 1e-5, "kv %d dv: %g", nkv, rel_err(dv1, dv0, T * nkv * hd));
    }
}

/* ---- an independent double-precision block for finite differences ------------------------------------- */

typedef struct {
    bb_model_config c;
    int S, T, rank;
    /* master parameters in double; float copies go to the code under test */
    double *an, *fn, *w[BB_LIN_COUNT], *a[BB_LIN_COUNT], *b[BB_LIN_COUNT], *bias[3], *x, *gy;
} dblock;

static int64_t lin_out(const dblock *d, int k) {
    int64_t o, i;
    bb_block_linear_shape(&d->c, (bb_linear_kind)k, &o, &i);
    return o;
}
static int64_t lin_in(const dblock *d, int k) {
    int64_t o, i;
    bb_block_linear_shape(&d->c, (bb_linear_kind)k, &o, &i);
    return i;
}

static void dlinear(const dblock *d, int k, const double *bias, const double *x, int64_t R, double *y) {
    int64_t out = lin_out(d, k), in = lin_in(d, k);
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = bias ? bias[o] : 0;
            for (int64_t i = 0; i < in; i++) {
                double we = d->w[k][o * in + i];
                for (int j = 0; j < d->rank; j++) we += d->a[k][o * d->rank + j] * d->b[k][j * in + i];
                s += we * x[r * in + i];
            }
            y[r * out + o] = s;
        }
}

static void drms(const double *x, const double *w, int64_t R, int dim, double eps, double *y) {
    for (int64_t r = 0; r < R; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += x[r * dim + i] * x[r * dim + i];
        double s = 1 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++) y[r * dim + i] = w[i] * x[r * dim + i] * s;
    }
}

static void drope(const dblock *d, double *x, int nh) {
    int hd = d->c.head_dim, half = hd / 2;
    for (int s = 0; s < d->S; s++)
        for (int t = 0; t < d->T; t++)
            for (int h = 0; h < nh; h++) {
                double *v = x + ((int64_t)(s * d->T + t) * nh + h) * hd;
                for (int i = 0; i < half; i++) {
                    double ang = t * pow(d->c.rope_theta, -2.0 * i / hd);
                    int a = d->c.rope_style == BB_ROPE_HALF ? i : 2 * i,
                        b = d->c.rope_style == BB_ROPE_HALF ? i + half : 2 * i + 1;
                    double x0 = v[a], x1 = v[b];
                    v[a] = x0 * cos(ang) - x1 * sin(ang);
                    v[b] = x0 * sin(ang) + x1 * cos(ang);
                }
            }
}

/* loss = Σ gy ⊙ block(x) */
static double dloss(const dblock *d) {
    const bb_model_config *c = &d->c;
    int dim = c->dim, hid = c->hidden_dim, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    int qd = nh * hd, kvd = nkv * hd, T = d->T;
    int64_t R = (int64_t)d->S * T;
    double *n1 = calloc((size_t)R * dim, 8), *q = calloc((size_t)R * qd, 8), *k = calloc((size_t)R * kvd, 8),
           *v = calloc((size_t)R * kvd, 8), *att = calloc((size_t)R * qd, 8), *x2 = calloc((size_t)R * dim, 8),
           *g = calloc((size_t)R * hid, 8), *u = calloc((size_t)R * hid, 8), *y = calloc((size_t)R * dim, 8),
           *sc = calloc((size_t)T, 8);
    drms(d->x, d->an, R, dim, c->norm_eps, n1);
    dlinear(d, BB_LIN_Q, d->bias[0], n1, R, q);
    dlinear(d, BB_LIN_K, d->bias[1], n1, R, k);
    dlinear(d, BB_LIN_V, d->bias[2], n1, R, v);
    drope(d, q, nh);
    drope(d, k, nkv);
    for (int s = 0; s < d->S; s++)
        for (int h = 0; h < nh; h++)
            for (int t = 0; t < T; t++) {
                int gk = h / (nh / nkv);
                int64_t rt = (int64_t)s * T + t;
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= t; j++) {
                    double z = 0;
                    for (int i = 0; i < hd; i++)
                        z += q[rt * qd + h * hd + i] * k[((int64_t)s * T + j) * kvd + gk * hd + i];
                    sc[j] = z / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= t; j++) sum += exp(sc[j] - mx);
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++)
                        o += exp(sc[j] - mx) / sum * v[((int64_t)s * T + j) * kvd + gk * hd + i];
                    att[rt * qd + h * hd + i] = o;
                }
            }
    dlinear(d, BB_LIN_O, NULL, att, R, x2);
    for (int64_t i = 0; i < R * dim; i++) x2[i] += d->x[i];
    drms(x2, d->fn, R, dim, c->norm_eps, n1);
    dlinear(d, BB_LIN_GATE, NULL, n1, R, g);
    dlinear(d, BB_LIN_UP, NULL, n1, R, u);
    for (int64_t i = 0; i < R * hid; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
    dlinear(d, BB_LIN_DOWN, NULL, g, R, y);
    double L = 0;
    for (int64_t i = 0; i < R * dim; i++) L += d->gy[i] * (y[i] + x2[i]);
    free(n1), free(q), free(k), free(v), free(att), free(x2), free(g), free(u), free(y), free(sc);
    return L;
}

static double *drand_arr(int64_t n, double s, double mean) {
    double *p = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) p[i] = mean + s * nrand();
    return p;
}
static float *to_f32(const double *p, int64_t n) {
    float *f = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) f[i] = (float)p[i];
    return f;
}

/* Central differences of dloss in parameter p[idx] against the analytic value; counts misses. */
static int fd_check(dblock *d, double *p, int64_t n, const float *an, const char *what) {
    const double h = 1e-5;
    double amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmax(amax, fabs((double)an[i]));
    int bad = 0;
    int64_t step = n > 40 ? n / 40 : 1; /* about 40 entries per tensor */
    for (int64_t i = (int64_t)(urand() * (double)step); i < n; i += step) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = dloss(d);
        p[i] = keep - h;
        double lm = dloss(d);
        p[i] = keep;
        double fd = (lp - lm) / (2 * h), tol = 1e-3 * amax + 1e-3 * fabs(fd) + 1e-7;
        if (fabs(fd - an[i]) > tol) {
            if (bad < 3)
                fprintf(stderr, "  %s[%lld]: analytic %.9g, finite differences %.9g\n", what, (long long)i, an[i], fd);
            bad++;
        }
    }
    EXPECT(amax > 0, "%s: the analytic gradient is zero everywhere", what);
    return bad;
}

static void grad_case(int n_heads, int n_kv, bb_rope_style style, int bias) {
    dblock d = {0};
    bb_model_config *c = &d.c;
    c->dim = 16;
    c->hidden_dim = 24;
    c->n_heads = n_heads;
    c->n_kv_heads = n_kv;
    c->head_dim = 4;
    c->n_layers = 1;
    c->max_seq_len = 16;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = style;
    c->attn_bias = bias;
    d.S = 2;
    d.T = 5;
    d.rank = 2;
    int64_t R = (int64_t)d.S * d.T;
    d.an = drand_arr(c->dim, 0.2, 1);
    d.fn = drand_arr(c->dim, 0.2, 1);
    d.x = drand_arr(R * c->dim, 1, 0);
    d.gy = drand_arr(R * c->dim, 1, 0);
    bb_block_weights w = {0};
    bb_block_grads g = {0};
    float *fw[BB_LIN_COUNT], *fa[BB_LIN_COUNT], *fb[BB_LIN_COUNT], *fbias[3] = {0};
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out = lin_out(&d, k), in = lin_in(&d, k);
        /* q/k weights larger so that the softmax is far from uniform and its gradient matters */
        double s = (k == BB_LIN_Q || k == BB_LIN_K ? 1.5 : 0.6) / sqrt((double)in);
        d.w[k] = drand_arr(out * in, s, 0);
        d.a[k] = drand_arr(out * d.rank, 0.3, 0);
        d.b[k] = drand_arr(d.rank * in, 0.3 / sqrt((double)in), 0);
        fw[k] = to_f32(d.w[k], out * in);
        fa[k] = to_f32(d.a[k], out * d.rank);
        fb[k] = to_f32(d.b[k], d.rank * in);
        w.w[k] = fw[k];
        w.lora_a[k] = fa[k];
        w.lora_b[k] = fb[k];
        w.rank[k] = d.rank;
        g.d_a[k] = calloc((size_t)(out * d.rank), sizeof(float));
        g.d_b[k] = calloc((size_t)(d.rank * in), sizeof(float));
        g.d_w[k] = calloc((size_t)(out * in), sizeof(float));
        if (bias && k < 3) {
            d.bias[k] = drand_arr(out, 0.3, 0);
            fbias[k] = to_f32(d.bias[k], out);
            w.bias[k] = fbias[k];
        }
    }
    float *fan = to_f32(d.an, c->dim), *ffn = to_f32(d.fn, c->dim), *fx = to_f32(d.x, R * c->dim),
          *fgy = to_f32(d.gy, R * c->dim), *y = malloc(sizeof(float) * (size_t)(R * c->dim)),
          *dx = malloc(sizeof(float) * (size_t)(R * c->dim));
    w.attn_norm = fan;
    w.ffn_norm = ffn;
    bb_block *blk = NULL;
    EXPECT_OK(bb_block_create(c, d.S, d.T, d.rank, &blk));
    EXPECT_OK(bb_block_forward(blk, &w, fx, d.S, y));
    double L = 0;
    for (int64_t i = 0; i < R * c->dim; i++) L += (double)fgy[i] * y[i];
    double Ld = dloss(&d);
    EXPECT(fabs(L - Ld) <= 1e-5 * (fabs(Ld) + 1), "forward: loss %.9g vs double block %.9g", L, Ld);
    EXPECT_OK(bb_block_backward(blk, &w, fgy, dx, &g));
    int bad = fd_check(&d, d.x, R * c->dim, dx, "dx");
    char name[64];
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out = lin_out(&d, k), in = lin_in(&d, k);
        snprintf(name, sizeof name, "dA %s", bb_linear_name((bb_linear_kind)k));
        bad += fd_check(&d, d.a[k], out * d.rank, g.d_a[k], name);
        snprintf(name, sizeof name, "dB %s", bb_linear_name((bb_linear_kind)k));
        bad += fd_check(&d, d.b[k], d.rank * in, g.d_b[k], name);
        snprintf(name, sizeof name, "dW %s", bb_linear_name((bb_linear_kind)k));
        bad += fd_check(&d, d.w[k], out * in, g.d_w[k], name);
    }
    EXPECT(bad == 0, "heads %d/%d, %s pairs, bias %d: %d gradient entries off the finite differences", n_heads, n_kv,
           style == BB_ROPE_HALF ? "half" : "interleaved", bias, bad);
    /* a second backward adds the same gradients again */
    float a0 = g.d_a[BB_LIN_V][1], b0 = g.d_b[BB_LIN_O][2];
    EXPECT_OK(bb_block_backward(blk, &w, fgy, NULL, &g));
    EXPECT_NEAR(g.d_a[BB_LIN_V][1], 2 * a0, 1e-5 * fabs(a0) + 1e-7);
    EXPECT_NEAR(g.d_b[BB_LIN_O][2], 2 * b0, 1e-5 * fabs(b0) + 1e-7);
    bb_block_destroy(&blk);
    EXPECT(blk == NULL, "destroy nulls the pointer");
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        free(d.w[k]), free(d.a[k]), free(d.b[k]), free(fw[k]), free(fa[k]), free(fb[k]);
        free(g.d_a[k]), free(g.d_b[k]), free(g.d_w[k]);
    }
    for (int k = 0; k < 3; k++) free(d.bias[k]), free(fbias[k]);
    free(d.an), free(d.fn), free(d.x), free(d.gy), free(fan), free(ffn), free(fx), free(fgy), free(y), free(dx);
}

static void test_gradients_gqa(void) { grad_case(4, 2, BB_ROPE_INTERLEAVED, 0); }
static void test_gradients_mha_half_bias(void) { grad_case(4, 4, BB_ROPE_HALF, 1); }
static void test_gradients_mqa(void) { grad_case(4, 1, BB_ROPE_INTERLEAVED, 1); }

/* ---- against forward.c --------------------------------------------------------------------------------- */

typedef struct {
    float *xn[8]; /* the Q-hook input of each layer: rmsnorm(x_l) */
    int64_t rows;
} capture;

static bb_status grab(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    capture *c = ud;
    if (kind == BB_LIN_Q && layer < 8) {
        c->xn[layer] = malloc(sizeof(float) * (size_t)(rows * in));
        memcpy(c->xn[layer], x, sizeof(float) * (size_t)(rows * in));
        c->rows = rows;
    }
    return BB_OK;
}

static float *read_all(const bb_tensor *t) {
    float *p = malloc(sizeof(float) * (size_t)bb_tensor_numel(t));
    if (bb_tensor_read_f32(t, 0, bb_tensor_rows(t), p) != BB_OK) {
        free(p);
        return NULL;
    }
    return p;
}

static void test_matches_forward(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=3,dim=64,hidden=96,heads=4,kv_heads=2,ctx=32,vocab=64", &m));
    if (!m) return;
    const bb_model_config *c = &m->cfg;
    const int S = 2, T = 17;
    int64_t R = S * T;
    int tokens[2 * 17];
    for (int i = 0; i < S * T; i++) tokens[i] = (int)(urand() * c->vocab_size) % c->vocab_size;
    capture cap = {0};
    bb_forward *f = NULL;
    float *hidden = malloc(sizeof(float) * (size_t)(R * c->dim));
    EXPECT_OK(bb_forward_create(m, 0, &f));
    bb_forward_set_hook(f, grab, &cap);
    EXPECT_OK(bb_forward_prefill_hidden(f, tokens, S, T, hidden));
    float *emb = read_all(&m->tok_embd), *x = malloc(sizeof(float) * (size_t)(R * c->dim)),
          *y = malloc(sizeof(float) * (size_t)(R * c->dim)), *xn = malloc(sizeof(float) * (size_t)(R * c->dim));
    for (int64_t r = 0; r < R; r++)
        memcpy(x + r * c->dim, emb + (int64_t)tokens[r] * c->dim, sizeof(float) * (size_t)c->dim);
    bb_block *blk = NULL;
    EXPECT_OK(bb_block_create(c, S, T, 4, &blk));
    for (int l = 0; l < c->n_layers && blk; l++) {
        bb_layer_weights *lw = &m->layers[l];
        bb_block_weights w = {0};
        float *own[BB_LIN_COUNT + 2];
        for (int k = 0; k < BB_LIN_COUNT; k++) w.w[k] = own[k] = read_all(bb_layer_linear(lw, (bb_linear_kind)k));
        w.attn_norm = own[BB_LIN_COUNT] = read_all(&lw->attn_norm);
        w.ffn_norm = own[BB_LIN_COUNT + 1] = read_all(&lw->ffn_norm);
        bb_rmsnorm_ref(x, w.attn_norm, R, c->dim, c->norm_eps, xn);
        EXPECT(rel_err(xn, cap.xn[l], R * c->dim) < 1e-5, "layer %d input: %g", l, rel_err(xn, cap.xn[l], R * c->dim));
        EXPECT_OK(bb_block_forward(blk, &w, x, S, y));
        if (l == 0) {
            /* zero factors change nothing, bit for bit; factors equal to merging them into W */
            float *a = calloc((size_t)c->hidden_dim * 4, sizeof(float)), *b = calloc((size_t)c->dim * 4, sizeof(float)),
                  *y2 = malloc(sizeof(float) * (size_t)(R * c->dim));
            fill(b, c->dim * 4, 0.1);
            w.lora_a[BB_LIN_UP] = a;
            w.lora_b[BB_LIN_UP] = b;
            w.rank[BB_LIN_UP] = 4;
            EXPECT_OK(bb_block_forward(blk, &w, x, S, y2));
            EXPECT(!memcmp(y, y2, sizeof(float) * (size_t)(R * c->dim)), "zero factors changed the output");
            fill(a, c->hidden_dim * 4, 0.1);
            EXPECT_OK(bb_block_forward(blk, &w, x, S, y2));
            float *merged = malloc(sizeof(float) * (size_t)c->hidden_dim * c->dim),
                  *yref = malloc(sizeof(float) * (size_t)(R * c->dim));
            memcpy(merged, w.w[BB_LIN_UP], sizeof(float) * (size_t)c->hidden_dim * c->dim);
            for (int o = 0; o < c->hidden_dim; o++)
                for (int i = 0; i < c->dim; i++)
                    for (int r = 0; r < 4; r++) merged[o * c->dim + i] += a[o * 4 + r] * b[r * c->dim + i];
            bb_block_weights wm = w;
            wm.lora_a[BB_LIN_UP] = wm.lora_b[BB_LIN_UP] = NULL;
            wm.w[BB_LIN_UP] = merged;
            EXPECT_OK(bb_block_forward(blk, &wm, x, S, yref));
            EXPECT(rel_err(y2, yref, R * c->dim) < 1e-5, "factors vs merged: %g", rel_err(y2, yref, R * c->dim));
            double moved = rel_err(y2, y, R * c->dim);
            EXPECT(moved > 1e-4, "the factors had no effect (%g)", moved);
            free(a), free(b), free(y2), free(merged), free(yref);
            w.lora_a[BB_LIN_UP] = w.lora_b[BB_LIN_UP] = NULL;
            EXPECT_OK(bb_block_forward(blk, &w, x, S, y));
        }
        memcpy(x, y, sizeof(float) * (size_t)(R * c->dim));
        for (int k = 0; k < BB_LIN_COUNT + 2; k++) free(own[k]);
    }
    float *outn = read_all(&m->out_norm);
    bb_rmsnorm_ref(x, outn, R, c->dim, c->norm_eps, xn);
    EXPECT(rel_err(xn, hidden, R * c->dim) < 1e-5, "final hidden: %g", rel_err(xn, hidden, R * c->dim));
    free(outn);
    for (int l = 0; l < 8; l++) free(cap.xn[l]);
    bb_block_destroy(&blk);
    bb_forward_destroy(&f);
    free(hidden), free(emb), free(x), free(y), free(xn);
    bb_model_destroy(&m);
}

static void test_errors(void) {
    bb_model_config c = {.dim = 8,
                         .hidden_dim = 8,
                         .n_heads = 2,
                         .n_kv_heads = 2,
                         .head_dim = 4,
                         .max_seq_len = 8,
                         .norm_eps = 1e-5f,
                         .rope_theta = 10000.0f};
    bb_block *b = NULL;
    EXPECT_ERR(bb_block_create(&c, 1, 9, 2, &b), BB_ERR_ARG, "exceed the model's context");
    c.n_kv_heads = 3;
    EXPECT_ERR(bb_block_create(&c, 1, 4, 2, &b), BB_ERR_ARG, "whole number of query heads");
    c.n_kv_heads = 1;
    EXPECT_OK(bb_block_create(&c, 1, 4, 2, &b));
    float w8[64] = {0}, ones[8] = {1, 1, 1, 1, 1, 1, 1, 1}, x[32] = {0}, y[32], fact[64] = {0};
    bb_block_weights w = {.attn_norm = ones, .ffn_norm = ones};
    for (int k = 0; k < BB_LIN_COUNT; k++) w.w[k] = w8;
    bb_block_grads g = {0};
    EXPECT_ERR(bb_block_backward(b, &w, y, NULL, &g), BB_ERR_ARG, "without a forward");
    EXPECT_ERR(bb_block_forward(b, &w, x, 2, y), BB_ERR_ARG, "created for 1..1");
    w.lora_a[BB_LIN_O] = w.lora_b[BB_LIN_O] = fact;
    w.rank[BB_LIN_O] = 3;
    EXPECT_ERR(bb_block_forward(b, &w, x, 1, y), BB_ERR_ARG, "ranks 1..2");
    bb_block_destroy(&b);
    bb_block_destroy(&b); /* NULL-safe */
}

int main(void) {
    TEST_RUN(test_linear_bwd_fast_vs_ref);
    TEST_RUN(test_attention_fast_vs_ref);
    TEST_RUN(test_gradients_gqa);
    TEST_RUN(test_gradients_mha_half_bias);
    TEST_RUN(test_gradients_mqa);
    TEST_RUN(test_matches_forward);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
