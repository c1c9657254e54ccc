/* test_forward.c — forward pass: stories260K greedy text, decode vs prefill, kernels vs _ref, hook, generation.
 *
 * Also a runner for tests/py/forward_ref.py:
 *   test_forward --logits MODEL TOKENS OUT
 * MODEL is a llama2.c .bin, or a directory with config.txt and <tensor>.f32
 * files (a model assembled in memory: any rope style, scaling, bias, dtype).
 * TOKENS is text "B T id...". OUT receives f32 logits (B, T, vocab) from
 * prefill, then (B, T, vocab) from token-by-token decoding. */
#include <stdint.h>

#include "core/dtype.h"
#include "core/file.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "model/forward.h"
#include "model/kernels.h"
#include "test.h"

static char model_path[1200], tok_path[1200], expected_path[1200];

static void set_paths(void) {
    snprintf(model_path, sizeof model_path, "%s/data/stories260K/stories260K.bin", test_shared());
    snprintf(tok_path, sizeof tok_path, "%s/data/stories260K/tok512.bin", test_shared());
    snprintf(expected_path, sizeof expected_path, "%s/data/stories260K/expected_greedy_200.txt", test_shared());
}

/* max |a-b| / max |ref| over n values */
static double rel_err(const float *a, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - ref[i]));
        den = fmax(den, fabs((double)ref[i]));
    }
    return den > 0 ? num / den : num;
}

/* ---- golden text ------------------------------------------------------------------ */

typedef struct {
    const bb_tokenizer *tok;
    char buf[8192];
    size_t n;
} text_sink;

static bb_status sink_token(void *ud, int prev, int token) {
    text_sink *s = ud;
    const char *p;
    size_t len;
    BB_CALL(bb_tokenizer_decode(s->tok, prev, token, &p, &len));
    BB_CHECK(s->n + len < sizeof s->buf, BB_ERR_INTERNAL, "sink overflow");
    memcpy(s->buf + s->n, p, len);
    s->n += len;
    return BB_OK;
}

/* llama2.c `run stories260K.bin -z tok512.bin -t 0 -n 200`: the loop runs
 * positions 0..199 from BOS, i.e. 200 forward steps, each printing the token it
 * produced (none is BOS here, so all 200 are printed). */
static void test_greedy_stories260k(void) {
    bb_model *m = NULL;
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_tokenizer_load(tok_path, m->cfg.vocab_size, &tok));
    EXPECT_OK(bb_forward_create(m, 0, &f));
    char *want = NULL;
    size_t want_n = 0;
    EXPECT_OK(bb_file_read_all(expected_path, 1 << 20, &want, &want_n));
    if (tok && f && want) {
        int *prompt = NULL, n_prompt = 0, out[200], n_out = 0;
        EXPECT_OK(bb_tokenizer_encode(tok, "", 1, 0, &prompt, &n_prompt));
        EXPECT(n_prompt == 1 && prompt[0] == 1, "empty prompt encodes to [BOS], got %d ids", n_prompt);
        text_sink s = {.tok = tok};
        EXPECT_OK(bb_forward_generate(f, prompt, n_prompt, 200, 0.0f, 0, sink_token, &s, out, &n_out));
        EXPECT(n_out == 200, "generated %d tokens, expected 200", n_out);
        EXPECT(s.n == want_n && memcmp(s.buf, want, want_n) == 0,
               "greedy text differs from %s:\n--- got (%zu bytes)\n%.*s\n"
               "--- expected (%zu bytes)\n%s",
               expected_path, s.n, (int)s.n, s.buf, want_n, want);
        /* decode_seq of [BOS, generated...] gives the same text */
        int all[201];
        all[0] = 1;
        memcpy(all + 1, out, sizeof out);
        char *txt = NULL;
        size_t len = 0;
        EXPECT_OK(bb_tokenizer_decode_seq(tok, all, 1 + n_out, &txt, &len));
        EXPECT(txt && len == want_n && memcmp(txt, want, want_n) == 0, "decode_seq differs");
        free(txt);
        free(prompt);
    }
    free(want);
    bb_forward_destroy(&f);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&m);
}

/* ---- decode with cache == prefill --------------------------------------------------- */

static void test_decode_matches_prefill(void) {
    bb_model *m = NULL;
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_tokenizer_load(tok_path, m->cfg.vocab_size, &tok));
    EXPECT_OK(bb_forward_create(m, 64, &f));
    if (!tok || !f) goto done;
    const char *texts[2] = {"Tom and Sue went to the big park to play with a red ball and a small dog.",
                            "The cat sat on the mat. It was a sunny day and the birds sang a happy song."};
    enum { T = 24, B = 2 };
    int V = m->cfg.vocab_size, tokens[B * T];
    for (int b = 0; b < B; b++) {
        int *ids = NULL, n = 0;
        EXPECT_OK(bb_tokenizer_encode(tok, texts[b], 1, 0, &ids, &n));
        EXPECT(n >= T, "text %d encodes to only %d tokens", b, n);
        for (int t = 0; t < T; t++) tokens[b * T + t] = t < n ? ids[t] : 0;
        free(ids);
    }
    float *pre = calloc((size_t)B * T * V, sizeof(float)), *dec = calloc((size_t)B * T * V, sizeof(float));
    float *chunk = calloc((size_t)T * V, sizeof(float));
    EXPECT_OK(bb_forward_prefill(f, tokens, B, T, pre));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            EXPECT_OK(bb_forward_decode(f, &tokens[b * T + t], 1, t, dec + ((int64_t)b * T + t) * V));
    double e = rel_err(dec, pre, (int64_t)B * T * V);
    printf("  decode vs prefill (B=%d, T=%d): max|a-b|/max|ref| = %.3g (tol 1e-5)\n", B, T, e);
    EXPECT(e <= 1e-5, "decode logits differ from prefill: %.3g", e);
    /* A chunk of 10 then the rest: a prompt ingested in pieces. */
    EXPECT_OK(bb_forward_decode(f, tokens, 10, 0, chunk));
    EXPECT_OK(bb_forward_decode(f, tokens + 10, T - 10, 10, chunk + (int64_t)10 * V));
    e = rel_err(chunk, pre, (int64_t)T * V);
    EXPECT(e <= 1e-5, "chunked decode differs from prefill: %.3g", e);
    /* One sequence alone through prefill equals its row of the batch. */
    EXPECT_OK(bb_forward_prefill(f, tokens + T, 1, T, chunk));
    e = rel_err(chunk, pre + (int64_t)T * V, (int64_t)T * V);
    EXPECT(e <= 1e-5, "batch row differs from the sequence alone: %.3g", e);
    int skip = 5;
    EXPECT_ERR(bb_forward_decode(f, &skip, 1, 40, chunk), BB_ERR_ARG, "have been fed");
    int bad = V;
    EXPECT_ERR(bb_forward_prefill(f, &bad, 1, 1, chunk), BB_ERR_ARG, "outside the vocabulary");
    EXPECT_ERR(bb_forward_decode(f, tokens, 1, 64, chunk), BB_ERR_ARG, "");
    free(pre);
    free(dec);
    free(chunk);
done:
    bb_forward_destroy(&f);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&m);
}

/* ---- kernels against their _ref -------------------------------------------------- */

static void fill(float *x, int64_t n, uint64_t stream) { bb_rng_fill_normal(bb_rng_make(7, stream), 0, (size_t)n, x); }

/* tol = abs + rel * |ref| elementwise */
static int64_t count_bad(const float *a, const float *ref, int64_t n, double abs_tol, double rel_tol, double *worst) {
    int64_t bad = 0;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        *worst = fmax(*worst, d);
        if (!(d <= abs_tol + rel_tol * fabs(ref[i]))) bad++;
    }
    return bad;
}

static void test_matmul_vs_ref(void) {
    const int64_t shapes[][3] = {{1, 64, 172}, {7, 33, 5}, {48, 64, 512}};
    for (size_t s = 0; s < 3; s++) {
        int64_t rows = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
        float *x = malloc(sizeof(float) * rows * in), *w = malloc(sizeof(float) * out * in),
              *b = malloc(sizeof(float) * out);
        float *y = malloc(sizeof(float) * rows * out), *yr = malloc(sizeof(float) * rows * out);
        fill(x, rows * in, 1);
        fill(w, out * in, 2);
        fill(b, out, 3);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            bb_matmul(x, w, with_bias ? b : NULL, rows, in, out, y);
            bb_matmul_ref(x, w, with_bias ? b : NULL, rows, in, out, yr);
            double worst;
            int64_t bad = count_bad(y, yr, rows * out, 1e-4, 1e-5, &worst);
            EXPECT(bad == 0, "matmul (%lld,%lld)x(%lld) bias %d: %lld values off, worst %.3g (tol 1e-4 + 1e-5|ref|)",
                   (long long)rows, (long long)in, (long long)out, with_bias, (long long)bad, worst);
        }
        free(x), free(w), free(b), free(y), free(yr);
    }
}

static void test_matmul_add_vs_ref(void) {
    enum { R = 5, IN = 37, OUT = 70 };
    float x[R * IN], w[OUT * IN], y[R * OUT], yr[R * OUT];
    fill(x, R * IN, 4);
    fill(w, OUT * IN, 5);
    fill(y, R * OUT, 6);
    memcpy(yr, y, sizeof y);
    bb_matmul_add(x, w, R, IN, OUT, y);
    bb_matmul_add_ref(x, w, R, IN, OUT, yr);
    double worst;
    int64_t bad = count_bad(y, yr, R * OUT, 1e-4, 1e-5, &worst);
    EXPECT(bad == 0, "matmul_add: %lld values off, worst %.3g (tol 1e-4 + 1e-5|ref|)", (long long)bad, worst);
}

/* bb_exp against expf: 2 ulp (rel 2.4e-7) inside |x| <= 87.3, saturation
 * outside, NaN kept; bb_silu_mul against its _ref with the same bound plus the
 * rounding of the division. Lengths not a multiple of the chunk exercise the
 * scalar tail. */
static void test_exp_silu_vs_ref(void) {
    enum { N = 4099 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N), *yr = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) x[i] = -87.3f + 174.6f * (float)i / (N - 1);
    bb_exp(x, N, y);
    bb_exp_ref(x, N, yr);
    double worst;
    int64_t bad = count_bad(y, yr, N, 0, 2.4e-7, &worst);
    EXPECT(bad == 0, "exp: %lld of %d values off by more than 2.4e-7 |ref|", (long long)bad, N);
    float edge[6] = {-1000, 1000, -INFINITY, INFINITY, NAN, 0}, ey[6];
    bb_exp(edge, 6, ey);
    EXPECT(ey[0] > 0 && ey[0] < 1.3e-38f && ey[2] == ey[0], "exp saturates low: %g %g", ey[0], ey[2]);
    EXPECT(ey[1] > 8e37f && isfinite(ey[1]) && ey[3] == ey[1], "exp saturates high: %g %g", ey[1], ey[3]);
    EXPECT(isnan(ey[4]) && ey[5] == 1.0f, "exp(NaN) %g, exp(0) %g", ey[4], ey[5]);
    /* in place */
    memcpy(y, x, sizeof(float) * N);
    bb_exp(y, N, y);
    bad = count_bad(y, yr, N, 0, 2.4e-7, &worst);
    EXPECT(bad == 0, "exp in place: %lld values off", (long long)bad);

    float *g = malloc(sizeof(float) * N), *gr = malloc(sizeof(float) * N), *u = malloc(sizeof(float) * N);
    fill(g, N, 40);
    fill(u, N, 41);
    for (int i = 0; i < N; i++) g[i] *= 8, gr[i] = g[i];
    g[0] = gr[0] = -200; /* exp(200) saturates: silu is -0 in the _ref, -1e-36 here */
    bb_silu_mul(g, u, N);
    bb_silu_mul_ref(gr, u, N);
    bad = count_bad(g, gr, N, 1e-30, 5e-7, &worst);
    EXPECT(bad == 0, "silu_mul: %lld of %d values off, worst %.3g (tol 1e-30 + 5e-7|ref|)", (long long)bad, N, worst);
    free(x), free(y), free(yr), free(g), free(gr), free(u);
}

static void test_attention_vs_ref(void) {
    /* (T, pos0, heads, kv heads, head dim): prefill, decode step, chunk after a
     * prefix, MHA, then several query blocks (64 queries each below head dim
     * 64, 256 from it) with and without sharing and a prefix */
    const int cases[][5] = {{9, 0, 8, 4, 8},    {1, 13, 8, 2, 16},  {5, 6, 4, 1, 8},   {6, 0, 3, 3, 4},
                            {150, 0, 4, 2, 16}, {130, 0, 2, 2, 32}, {70, 45, 6, 2, 8}, {1, 200, 4, 4, 8},
                            {300, 0, 2, 1, 64}, {260, 20, 2, 2, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int T = cases[c][0], pos0 = cases[c][1], nh = cases[c][2], nkv = cases[c][3], hd = cases[c][4], S = pos0 + T;
        float *q = malloc(sizeof(float) * T * nh * hd), *k = malloc(sizeof(float) * S * nkv * hd);
        float *v = malloc(sizeof(float) * S * nkv * hd), *o = malloc(sizeof(float) * T * nh * hd);
        float *orf = malloc(sizeof(float) * T * nh * hd);
        float *sc = malloc(sizeof(float) * bb_attention_scratch(T, pos0, nh, nkv, hd));
        fill(q, T * nh * hd, 10 + c);
        fill(k, S * nkv * hd, 20 + c);
        fill(v, S * nkv * hd, 30 + c);
        bb_attention(q, k, v, T, pos0, nh, nkv, hd, o, sc);
        bb_attention_ref(q, k, v, T, pos0, nh, nkv, hd, orf);
        double worst;
        int64_t bad = count_bad(o, orf, (int64_t)T * nh * hd, 1e-5, 1e-5, &worst);
        EXPECT(bad == 0, "attention case %zu: %lld values off, worst %.3g (tol 1e-5 + 1e-5|ref|)", c, (long long)bad,
               worst);
        /* causality: the first query's output depends only on keys up to pos0 */
        if (pos0 == 0) {
            for (int i = 0; i < hd; i++) EXPECT_NEAR(orf[i], v[i], 1e-6);
        }
        free(q), free(k), free(v), free(o), free(orf), free(sc);
    }
}

static void test_rmsnorm_silu_ref(void) {
    float x[6] = {1, 2, 3, -1, 0, 1}, w[3] = {1, 2, 0.5f}, y[6];
    bb_rmsnorm_ref(x, w, 2, 3, 1e-5f, y);
    double inv = 1 / sqrt((1 + 4 + 9) / 3.0 + 1e-5);
    EXPECT_NEAR(y[1], 2 * 2 * inv, 1e-6);
    EXPECT_NEAR(y[5], 0.5 * 1 / sqrt(2 / 3.0 + 1e-5), 1e-6);
    float g[3] = {0, 1, -2}, u[3] = {5, 2, 3};
    bb_silu_mul_ref(g, u, 3);
    EXPECT_NEAR(g[0], 0, 1e-7);
    EXPECT_NEAR(g[1], 2 / (1 + exp(-1.0)), 1e-6);
    EXPECT_NEAR(g[2], 3 * -2 / (1 + exp(2.0)), 1e-6);
}

static void test_rope(void) {
    bb_model_config c = {.head_dim = 8, .rope_theta = 10000, .rope_scaling = BB_ROPE_SCALING_NONE};
    double f0[4], f1[4], f2[4];
    bb_rope_freqs(&c, f0);
    for (int i = 0; i < 4; i++) EXPECT_NEAR(f0[i], pow(10000, -2.0 * i / 8), 1e-15);
    c.rope_scaling = BB_ROPE_SCALING_LINEAR;
    c.rope_factor = 4;
    bb_rope_freqs(&c, f1);
    for (int i = 0; i < 4; i++) EXPECT_NEAR(f1[i], f0[i] / 4, 1e-15);
    /* llama3 with original context 64, low 1, high 4: wavelengths 6.3 (kept),
     * 62.8 (smoothed between), 628 and 6283 (divided by the factor). */
    c.rope_scaling = BB_ROPE_SCALING_LLAMA3;
    c.rope_factor = 8;
    c.rope_low_freq_factor = 1;
    c.rope_high_freq_factor = 4;
    c.rope_orig_max_pos = 64;
    bb_rope_freqs(&c, f2);
    double sm = (64 / (2 * M_PI / f0[1]) - 1) / 3;
    EXPECT_NEAR(f2[0], f0[0], 1e-15);
    EXPECT_NEAR(f2[1], (1 - sm) * f0[1] / 8 + sm * f0[1], 1e-15);
    EXPECT_NEAR(f2[2], f0[2] / 8, 1e-15);
    EXPECT_NEAR(f2[3], f0[3] / 8, 1e-15);
    /* Both pairings rotate the same pairs once the layout is permuted, and keep norms. */
    int pos[2] = {3, 17};
    float cs[8], sn[8], xi[16], xh[16];
    bb_rope_table(f0, 4, pos, 2, cs, sn);
    fill(xi, 16, 99);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++) {
            xh[r * 8 + i] = xi[r * 8 + 2 * i];
            xh[r * 8 + 4 + i] = xi[r * 8 + 2 * i + 1];
        }
    double n0 = 0, n1 = 0;
    for (int i = 0; i < 16; i++) n0 += (double)xi[i] * xi[i];
    bb_rope_ref(xi, 2, 1, 8, BB_ROPE_INTERLEAVED, cs, sn);
    bb_rope_ref(xh, 2, 1, 8, BB_ROPE_HALF, cs, sn);
    for (int i = 0; i < 16; i++) n1 += (double)xi[i] * xi[i];
    EXPECT_NEAR(n0, n1, 1e-4);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 4; i++) {
            EXPECT_NEAR(xh[r * 8 + i], xi[r * 8 + 2 * i], 1e-6);
            EXPECT_NEAR(xh[r * 8 + 4 + i], xi[r * 8 + 2 * i + 1], 1e-6);
        }
}

/* ---- hidden states and stats ---------------------------------------------------- */

/* prefill_hidden stops before the classifier: its hidden states times the
 * classifier give prefill's logits; the stats count the pass. */
static void test_prefill_hidden_and_stats(void) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_forward_create(m, 16, &f));
    if (f) {
        enum { B = 2, T = 5 };
        int tokens[B * T] = {1, 400, 300, 280, 17, 1, 9, 33, 260, 501};
        int V = m->cfg.vocab_size, dim = m->cfg.dim;
        float *logits = malloc(sizeof(float) * B * T * V), *hidden = malloc(sizeof(float) * B * T * dim);
        float *w = malloc(sizeof(float) * V * dim), *again = malloc(sizeof(float) * B * T * V);
        bb_forward_stats_reset(f);
        EXPECT_OK(bb_forward_prefill(f, tokens, B, T, logits));
        bb_forward_stats s;
        bb_forward_stats_get(f, &s);
        const bb_model_config *c = &m->cfg;
        int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
        double mm =
            2.0 * B * T * c->n_layers * ((double)dim * (qd + 2 * kvd) + (double)qd * dim + 3.0 * dim * c->hidden_dim);
        EXPECT(s.tokens == B * T && s.matmul_flop == mm && s.classifier_flop == 2.0 * B * T * dim * V,
               "stats: %lld tokens, %.0f matmul flops (expected %.0f)", (long long)s.tokens, s.matmul_flop, mm);
        EXPECT(s.attention_flop == 4.0 * c->head_dim * c->n_heads * c->n_layers * B * (T * (T + 1) / 2),
               "attention flops %.0f", s.attention_flop);
        EXPECT(s.matmul_s > 0 && s.attention_s > 0 && s.elementwise_s > 0 && s.classifier_s > 0, "part times");
        EXPECT_OK(bb_forward_prefill_hidden(f, tokens, B, T, hidden));
        EXPECT_OK(bb_tensor_read_f32(&m->output, 0, V, w));
        bb_matmul_ref(hidden, w, NULL, B * T, dim, V, again);
        double e = rel_err(again, logits, (int64_t)B * T * V);
        EXPECT(e <= 1e-5, "hidden x classifier differs from the logits: %.3g (tol 1e-5)", e);
        /* the same tokens again: the same logits, bit for bit */
        EXPECT_OK(bb_forward_prefill(f, tokens, B, T, again));
        EXPECT(memcmp(again, logits, sizeof(float) * B * T * V) == 0, "two prefills differ");
        bb_forward_stats_reset(f);
        bb_forward_stats_get(f, &s);
        EXPECT(s.tokens == 0 && s.matmul_s == 0, "reset");
        EXPECT_ERR(bb_forward_prefill_hidden(f, tokens, 0, T, hidden), BB_ERR_ARG, "at least one sequence");
        free(logits), free(hidden), free(w), free(again);
    }
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
}

/* ---- hook ----------------------------------------------------------------------- */

typedef struct {
    int calls[BB_LIN_COUNT];
    const float *last[BB_LIN_COUNT];
    int64_t rows, in[BB_LIN_COUNT];
    int same_qkv, same_gate_up, fail_at;
} hook_log;

static bb_status hook_fn(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    hook_log *h = ud;
    h->calls[kind]++;
    h->last[kind] = x;
    h->rows = rows;
    h->in[kind] = in;
    if (kind == BB_LIN_V) h->same_qkv += h->last[BB_LIN_Q] == x && h->last[BB_LIN_K] == x;
    if (kind == BB_LIN_UP) h->same_gate_up += h->last[BB_LIN_GATE] == x;
    BB_CHECK(!(h->fail_at && layer == 1 && kind == BB_LIN_DOWN), BB_ERR_NUMERIC, "hook asked to fail");
    return BB_OK;
}

static void test_hook(void) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_forward_create(m, 16, &f));
    if (f) {
        hook_log h = {0};
        bb_forward_set_hook(f, hook_fn, &h);
        int tokens[6] = {1, 400, 300, 280, 17, 9};
        float *logits = malloc(sizeof(float) * 6 * 512);
        EXPECT_OK(bb_forward_prefill(f, tokens, 2, 3, logits));
        for (int k = 0; k < BB_LIN_COUNT; k++)
            EXPECT(h.calls[k] == 5, "%s hooked %d times", bb_linear_name(k), h.calls[k]);
        EXPECT(h.rows == 6, "hook saw %lld rows", (long long)h.rows);
        EXPECT(h.same_qkv == 5 && h.same_gate_up == 5, "q/k/v or gate/up got different pointers");
        EXPECT(h.in[BB_LIN_DOWN] == 172 && h.in[BB_LIN_O] == 64 && h.in[BB_LIN_Q] == 64, "in_features wrong");
        h.fail_at = 1;
        EXPECT_ERR(bb_forward_prefill(f, tokens, 2, 3, logits), BB_ERR_NUMERIC, "hook asked to fail");
        bb_forward_set_hook(f, NULL, NULL);
        EXPECT_OK(bb_forward_prefill(f, tokens, 2, 3, logits));
        free(logits);
    }
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
}

/* ---- parts: chained block ranges ---------------------------------------------------- */

typedef struct {
    int first, last, calls;
} layer_seen;

static bb_status seen_fn(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    layer_seen *s = ud;
    if (s->calls++ == 0) s->first = layer;
    s->last = layer;
    return BB_OK;
}

/* Prefill of the whole model against the chain [0,a) [a,b) [b,L) on model `path`,
 * for every a <= b (empty ranges included): the logits must agree bit for bit. */
static void check_parts(const char *path) {
    bb_model *m = NULL;
    bb_forward *whole = NULL;
    EXPECT_OK(bb_model_open(path, &m));
    if (!m) return;
    EXPECT_OK(bb_forward_create(m, 0, &whole));
    enum { B = 2, T = 7 };
    int L = m->cfg.n_layers, V = m->cfg.vocab_size, dim = m->cfg.dim;
    int tokens[B * T];
    for (int i = 0; i < B * T; i++) tokens[i] = (i * 37 + 1) % V;
    float *ref = malloc(sizeof(float) * B * T * V), *got = malloc(sizeof(float) * B * T * V);
    float *x = malloc(sizeof(float) * B * T * dim);
    if (whole) EXPECT_OK(bb_forward_prefill(whole, tokens, B, T, ref));
    for (int a = 0; a <= L; a++)
        for (int b = a; b <= L; b++) {
            bb_forward_part parts[3] = {{0, a, 1, 0}, {a, b, 0, 0}, {b, L, 0, 1}};
            bb_forward *f[3] = {NULL, NULL, NULL};
            layer_seen seen[3] = {{-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}};
            int ok = 1;
            for (int i = 0; i < 3; i++) {
                bb_status st = bb_forward_create_part(m, &parts[i], 0, &f[i]);
                EXPECT(st == BB_OK, "part %d [%d, %d): %s", i, parts[i].layer_begin, parts[i].layer_end,
                       bb_last_error());
                ok &= st == BB_OK;
                if (f[i]) bb_forward_set_hook(f[i], seen_fn, &seen[i]);
            }
            if (ok) {
                EXPECT_OK(bb_forward_embed(f[0], tokens, B, T, x));
                for (int i = 0; i < 3; i++) EXPECT_OK(bb_forward_blocks(f[i], x, B, T));
                EXPECT_OK(bb_forward_head(f[2], x, B, T, got));
                EXPECT(memcmp(got, ref, sizeof(float) * B * T * V) == 0, "%s: chain [0,%d) [%d,%d) [%d,%d) differs",
                       path, a, a, b, b, L);
                for (int i = 0; i < 3; i++) {
                    int n = parts[i].layer_end - parts[i].layer_begin;
                    EXPECT(seen[i].calls == 7 * n && (n == 0 || (seen[i].first == parts[i].layer_begin &&
                                                                 seen[i].last == parts[i].layer_end - 1)),
                           "part %d hooked %d calls, layers %d..%d", i, seen[i].calls, seen[i].first, seen[i].last);
                }
            }
            for (int i = 0; i < 3; i++) bb_forward_destroy(&f[i]);
        }
    /* The pieces a part lacks are refused with a message naming what is missing. */
    bb_forward *mid = NULL;
    bb_forward_part p = {1, 2, 0, 0}, bad = {2, L + 1, 0, 0};
    EXPECT_OK(bb_forward_create_part(m, &p, 0, &mid));
    if (mid) {
        EXPECT_ERR(bb_forward_embed(mid, tokens, B, T, x), BB_ERR_ARG, "without the token embedding");
        EXPECT_ERR(bb_forward_head(mid, x, B, T, got), BB_ERR_ARG, "without the final norm");
        EXPECT_ERR(bb_forward_prefill(mid, tokens, B, T, got), BB_ERR_ARG, "holds blocks [1, 2)");
        bb_forward_part q;
        bb_forward_part_get(mid, &q);
        EXPECT(q.layer_begin == 1 && q.layer_end == 2 && !q.embed && !q.head, "part_get");
    }
    bb_forward *none = NULL;
    EXPECT_ERR(bb_forward_create_part(m, &bad, 0, &none), BB_ERR_ARG, "outside the model");
    bb_forward_destroy(&mid);
    free(ref), free(got), free(x);
    bb_forward_destroy(&whole);
    bb_model_destroy(&m);
}

static void test_parts(void) {
    check_parts(model_path);
    check_parts("synthetic:tiny");
}

static void test_argmax_and_sampling(void) {
    float l[5] = {1, 3, NAN, 3, -1};
    EXPECT(bb_argmax(l, 5) == 1, "ties go to the lowest id, got %d", bb_argmax(l, 5));
    float l2[3] = {NAN, -5, -4};
    EXPECT(bb_argmax(l2, 3) == 2, "NaN must not win, got %d", bb_argmax(l2, 3));
    bb_model *m = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_forward_create(m, 40, &f));
    if (f) {
        int bos = 1, a[40], b[40], c[40], na, nb, nc;
        EXPECT_OK(bb_forward_generate(f, &bos, 1, 40, 1.0f, 123, NULL, NULL, a, &na));
        EXPECT_OK(bb_forward_generate(f, &bos, 1, 40, 1.0f, 123, NULL, NULL, b, &nb));
        EXPECT_OK(bb_forward_generate(f, &bos, 1, 40, 1.0f, 124, NULL, NULL, c, &nc));
        EXPECT(na == nb && memcmp(a, b, sizeof(int) * na) == 0, "sampling with one seed is not reproducible");
        EXPECT(na != nc || memcmp(a, c, sizeof(int) * na) != 0, "different seeds gave the same 40 tokens");
        EXPECT_ERR(bb_forward_generate(f, &bos, 1, 4, -1.0f, 1, NULL, NULL, a, &na), BB_ERR_ARG, "temperature");
    }
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
}

/* A model stored as bf16 (converted in memory) reads through bb_tensor_read_f32
 * and gives logits close to the f32 model's. */
static void test_bf16_weights(void) {
    bb_model *m = NULL, *h = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_model_alloc(&h, m->cfg.n_layers));
    h->cfg = m->cfg;
    snprintf(h->path, sizeof h->path, "bf16 copy");
    size_t total = (size_t)bb_model_param_count(m);
    uint16_t *buf = malloc(total * 2), *p = buf;
    float *tmp = malloc(sizeof(float) * 512 * 64);
    bb_tensor *src[64], *dst[64];
    int n = 0;
    src[n] = &m->tok_embd, dst[n++] = &h->tok_embd;
    src[n] = &m->out_norm, dst[n++] = &h->out_norm;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        bb_layer_weights *a = &m->layers[l], *b = &h->layers[l];
        bb_tensor *sa[] = {&a->attn_norm, &a->wq,     &a->wk,   &a->wv,    &a->wo,
                           &a->ffn_norm,  &a->w_gate, &a->w_up, &a->w_down};
        bb_tensor *sb[] = {&b->attn_norm, &b->wq,     &b->wk,   &b->wv,    &b->wo,
                           &b->ffn_norm,  &b->w_gate, &b->w_up, &b->w_down};
        for (int i = 0; i < 9; i++) src[n] = sa[i], dst[n++] = sb[i];
    }
    for (int i = 0; i < n; i++) {
        int64_t ne = bb_tensor_numel(src[i]);
        EXPECT_OK(bb_tensor_read_f32(src[i], 0, bb_tensor_rows(src[i]), tmp));
        bb_convert_from_f32(BB_BF16, tmp, (size_t)ne, p);
        EXPECT_OK(bb_tensor_init_memory(dst[i], src[i]->name, BB_BF16, src[i]->ndim, src[i]->shape, p, (size_t)ne * 2));
        p += ne;
    }
    h->output = h->tok_embd;
    bb_forward *f32 = NULL, *f16 = NULL;
    EXPECT_OK(bb_forward_create(m, 8, &f32));
    EXPECT_OK(bb_forward_create(h, 8, &f16));
    if (f32 && f16) {
        int tokens[8] = {1, 403, 261, 300, 290, 19, 280, 333};
        float *a = malloc(sizeof(float) * 8 * 512), *b = malloc(sizeof(float) * 8 * 512);
        EXPECT_OK(bb_forward_prefill(f32, tokens, 1, 8, a));
        EXPECT_OK(bb_forward_prefill(f16, tokens, 1, 8, b));
        double e = rel_err(b, a, 8 * 512);
        printf("  bf16 weights vs f32: max|a-b|/max|ref| = %.3g (tol 0.05)\n", e);
        EXPECT(e > 0 && e < 0.05, "bf16 logits error %.3g", e);
        free(a), free(b);
    }
    bb_forward_destroy(&f32);
    bb_forward_destroy(&f16);
    /* A NaN gain in the final norm poisons every logit: the pass still
     * succeeds (it warns with the count) so callers can inspect the damage. */
    uint16_t nan_bf16 = bb_f32_to_bf16(NAN);
    memcpy((void *)h->out_norm.data, &nan_bf16, 2);
    EXPECT_OK(bb_forward_create(h, 8, &f16));
    if (f16) {
        int tokens[2] = {1, 403};
        float *a = malloc(sizeof(float) * 2 * 512);
        EXPECT_OK(bb_forward_prefill(f16, tokens, 1, 2, a));
        int bad = 0;
        for (int i = 0; i < 2 * 512; i++) bad += !isfinite(a[i]);
        EXPECT(bad == 2 * 512, "%d non-finite logits", bad);
        free(a);
    }
    bb_forward_destroy(&f16);
    free(buf);
    free(tmp);
    bb_model_destroy(&h);
    bb_model_destroy(&m);
}

/* ---- runner for tests/py/forward_ref.py ------------------------------------------- */

typedef struct {
    void *bufs[1024];
    int n;
} owned_bufs;

static void free_owned(void *p) {
    owned_bufs *o = p;
    for (int i = 0; i < o->n; i++) free(o->bufs[i]);
    free(o);
}

/* Set config key `key` to v; returns 0 for an unknown key. */
static int set_cfg_key(bb_model_config *c, const char *key, double v) {
    const struct {
        const char *name;
        int *field;
    } ints[] = {{"dim", &c->dim},
                {"hidden_dim", &c->hidden_dim},
                {"n_layers", &c->n_layers},
                {"n_heads", &c->n_heads},
                {"n_kv_heads", &c->n_kv_heads},
                {"head_dim", &c->head_dim},
                {"vocab_size", &c->vocab_size},
                {"max_seq_len", &c->max_seq_len},
                {"rope_orig_max_pos", &c->rope_orig_max_pos},
                {"tied_embeddings", &c->tied_embeddings},
                {"attn_bias", &c->attn_bias}};
    const struct {
        const char *name;
        float *field;
    } floats[] = {{"norm_eps", &c->norm_eps},
                  {"rope_theta", &c->rope_theta},
                  {"rope_factor", &c->rope_factor},
                  {"rope_low_freq_factor", &c->rope_low_freq_factor},
                  {"rope_high_freq_factor", &c->rope_high_freq_factor}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!strcmp(key, ints[i].name)) return *ints[i].field = (int)v, 1;
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (!strcmp(key, floats[i].name)) return *floats[i].field = (float)v, 1;
    if (!strcmp(key, "rope_style")) return c->rope_style = (bb_rope_style)v, 1;
    if (!strcmp(key, "rope_scaling")) return c->rope_scaling = (bb_rope_scaling)v, 1;
    return 0;
}

/* config.txt: "key value" lines (tests/py/forward_ref.py write_raw). */
static bb_status read_cfg(const char *dir, bb_model_config *c, bb_dtype *dtype) {
    char path[1200], *txt;
    BB_CALL(bb_path_join(path, sizeof path, dir, "config.txt"));
    BB_CALL(bb_file_read_all(path, 1 << 16, &txt, NULL));
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->bos_id = 1;
    c->eos_id = 2;
    *dtype = BB_F32;
    char key[64];
    double v;
    int off = 0, used;
    while (sscanf(txt + off, "%63s %lf%n", key, &v, &used) == 2) {
        off += used;
        if (!strcmp(key, "bf16")) {
            *dtype = v ? BB_BF16 : BB_F32;
        } else if (!set_cfg_key(c, key, v)) {
            free(txt);
            BB_CHECK(0, BB_ERR_CONFIG, "%s: unknown key %s", path, key);
        }
    }
    free(txt);
    return BB_OK;
}

static bb_status load_raw_tensor(const char *dir, owned_bufs *o, bb_tensor *t, const char *name, bb_dtype dt,
                                 int64_t d0, int64_t d1) {
    char path[1200];
    char file[128];
    snprintf(file, sizeof file, "%s.f32", name);
    BB_CALL(bb_path_join(path, sizeof path, dir, file));
    char *data;
    size_t n;
    BB_CALL(bb_file_read_all(path, 1 << 28, &data, &n));
    BB_CHECK(o->n < 1024, BB_ERR_INTERNAL, "too many tensors");
    o->bufs[o->n++] = data;
    int64_t shape[2] = {d0, d1};
    if (dt == BB_BF16) {
        /* in place: bf16 needs half the bytes */
        bb_convert_from_f32(BB_BF16, (const float *)data, n / 4, data);
        n /= 2;
    }
    BB_CALL(bb_tensor_init_memory(t, name, dt, d1 ? 2 : 1, shape, data, n));
    return BB_OK;
}

static bb_status build_raw_model(const char *dir, bb_model **out) {
    bb_model_config c;
    bb_dtype dt = BB_F32;
    BB_CALL(read_cfg(dir, &c, &dt));
    int L = c.n_layers;
    bb_model *m;
    BB_CALL(bb_model_alloc(&m, L));
    m->cfg = c;
    snprintf(m->path, sizeof m->path, "%s", dir);
    owned_bufs *o = calloc(1, sizeof *o);
    if (!o) bb_model_destroy(&m);
    BB_CHECK(o, BB_ERR_OOM, "out of memory: tensor list");
    m->priv = o;
    m->priv_free = free_owned;
    int64_t qd = (int64_t)c.n_heads * c.head_dim, kvd = (int64_t)c.n_kv_heads * c.head_dim;
    bb_status st = BB_OK;
    char nm[96];
#define LOAD(t, name, a, b) BB_CALL_GOTO(st, fail, load_raw_tensor(dir, o, t, name, dt, a, b))
    LOAD(&m->tok_embd, "token_embd.weight", c.vocab_size, c.dim);
    LOAD(&m->out_norm, "output_norm.weight", c.dim, 0);
    if (c.tied_embeddings)
        m->output = m->tok_embd;
    else
        LOAD(&m->output, "output.weight", c.vocab_size, c.dim);
    for (int l = 0; l < L; l++) {
        bb_layer_weights *w = &m->layers[l];
#define LW(field, label, a, b)                                                                                         \
    snprintf(nm, sizeof nm, "blk.%d.%s", l, label);                                                                    \
    LOAD(&w->field, nm, a, b)
        LW(attn_norm, "attn_norm.weight", c.dim, 0);
        LW(wq, "attn_q.weight", qd, c.dim);
        LW(wk, "attn_k.weight", kvd, c.dim);
        LW(wv, "attn_v.weight", kvd, c.dim);
        LW(wo, "attn_output.weight", c.dim, qd);
        LW(ffn_norm, "ffn_norm.weight", c.dim, 0);
        LW(w_gate, "ffn_gate.weight", c.hidden_dim, c.dim);
        LW(w_up, "ffn_up.weight", c.hidden_dim, c.dim);
        LW(w_down, "ffn_down.weight", c.dim, c.hidden_dim);
        if (c.attn_bias) {
            LW(bq, "attn_q.bias", qd, 0);
            LW(bk, "attn_k.bias", kvd, 0);
            LW(bv, "attn_v.bias", kvd, 0);
        }
#undef LW
    }
#undef LOAD
    BB_CALL_GOTO(st, fail, bb_model_validate(m));
    *out = m;
    return BB_OK;
fail:
    bb_model_destroy(&m);
    return st;
}

static int run_logits(const char *spec, const char *tokens_path, const char *out_path) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    char *txt = NULL;
    int *tokens = NULL, rc = 1;
    float *logits = NULL;
    if (bb_path_is_dir(spec) ? build_raw_model(spec, &m) : bb_model_open(spec, &m)) goto done;
    if (bb_file_read_all(tokens_path, 1 << 20, &txt, NULL)) goto done;
    int B, T, off;
    if (sscanf(txt, "%d %d%n", &B, &T, &off) != 2 || B <= 0 || T <= 0 || B * T > 100000) goto done;
    tokens = malloc(sizeof(int) * B * T);
    for (int i = 0, used; i < B * T; i++, off += used)
        if (sscanf(txt + off, "%d%n", &tokens[i], &used) != 1) goto done;
    int V = m->cfg.vocab_size;
    logits = malloc(sizeof(float) * 2 * B * T * V);
    if (bb_forward_create(m, T, &f) || bb_forward_prefill(f, tokens, B, T, logits)) goto done;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            if (bb_forward_decode(f, &tokens[b * T + t], 1, t, logits + ((int64_t)(B + b) * T + t) * V)) goto done;
    if (bb_file_write_atomic(out_path, logits, sizeof(float) * 2 * B * T * V)) goto done;
    rc = 0;
done:
    if (rc) fprintf(stderr, "test_forward --logits %s failed: %s\n", spec, bb_last_error());
    free(txt);
    free(tokens);
    free(logits);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--logits")) return run_logits(argv[2], argv[3], argv[4]);
    set_paths();
    TEST_RUN(test_matmul_vs_ref);
    TEST_RUN(test_matmul_add_vs_ref);
    TEST_RUN(test_exp_silu_vs_ref);
    TEST_RUN(test_attention_vs_ref);
    TEST_RUN(test_rmsnorm_silu_ref);
    TEST_RUN(test_rope);
    TEST_RUN(test_greedy_stories260k);
    TEST_RUN(test_decode_matches_prefill);
    TEST_RUN(test_prefill_hidden_and_stats);
    TEST_RUN(test_hook);
    TEST_RUN(test_parts);
    TEST_RUN(test_argmax_and_sampling);
    TEST_RUN(test_bf16_weights);
    return TEST_DONE();
}
