/* test_calib.c — calibration statistics: collector against a double-precision reference hook, shared inputs, f32 vs
 * f64, non-finite rows, layer ranges, HDF5 round trip and bad files, stories260K invariants. */
#include <hdf5.h>
#include <lapacke.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/file.h"
#include "core/rng.h"
#include "io/tokenizer.h"
#include "model/calib.h"
#include "model/sample.h"
#include "mpi/stats_h5.h"
#include "test.h"

#define SEQ 4
#define SEQ_LEN 48
#define MICRO 3 /* does not divide SEQ: the last micro-batch is short */

static bb_model *model;
static bb_forward *fwd;
static bb_tokens stream;

/* ---- the reference: X captured by its own hook, accumulated in double ------------ */

typedef struct {
    int64_t in;
    double *h, *sumsq, *sumabs;
    int64_t *active, counted, bad_rows;
} ref_stat;

typedef struct {
    int n_layers;
    double eps;
    ref_stat s[8][BB_CALIB_INPUT_COUNT];
} ref_calib;

static bb_status ref_hook(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in) {
    ref_calib *r = ud;
    /* The reference takes each input once, from the first kind that reads it. */
    if (kind == BB_LIN_K || kind == BB_LIN_V || kind == BB_LIN_UP) return BB_OK;
    ref_stat *s = &r->s[layer][bb_calib_input_of(kind)];
    bb_calib_accumulate_ref(x, rows, in, r->eps, s->h, s->sumsq, s->sumabs, s->active, &s->counted, &s->bad_rows);
    return BB_OK;
}

static void ref_init(ref_calib *r, double eps) {
    memset(r, 0, sizeof *r);
    r->n_layers = model->cfg.n_layers;
    r->eps = eps;
    for (int l = 0; l < r->n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            ref_stat *s = &r->s[l][i];
            s->in = bb_calib_in_features(&model->cfg, (bb_calib_input)i);
            s->h = calloc((size_t)(s->in * s->in), sizeof(double));
            s->sumsq = calloc((size_t)s->in, sizeof(double));
            s->sumabs = calloc((size_t)s->in, sizeof(double));
            s->active = calloc((size_t)s->in, sizeof(int64_t));
        }
}

static void ref_free(ref_calib *r) {
    for (int l = 0; l < r->n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            free(r->s[l][i].h);
            free(r->s[l][i].sumsq);
            free(r->s[l][i].sumabs);
            free(r->s[l][i].active);
        }
}

/* The same micro-batches as bb_calib_run, through the reference hook. */
static void ref_run(ref_calib *r) {
    float *logits = malloc(sizeof(float) * (size_t)MICRO * SEQ_LEN * model->cfg.vocab_size);
    bb_forward_set_hook(fwd, ref_hook, r);
    for (int s0 = 0; s0 < SEQ; s0 += MICRO) {
        int b = SEQ - s0 < MICRO ? SEQ - s0 : MICRO;
        EXPECT_OK(bb_forward_prefill(fwd, stream.ids + s0 * SEQ_LEN, b, SEQ_LEN, logits));
    }
    bb_forward_set_hook(fwd, NULL, NULL);
    free(logits);
}

static double gram_at(const bb_calib_stat *s, int64_t i, int64_t j) {
    return s->gram ? (double)s->gram[i * s->in_features + j] : s->gram_f64[i * s->in_features + j];
}

/* Compare one input with the reference. Gram: |H - ref| <= rel * sqrt(ref_ii ref_jj) + 1e-9,
 * both triangles (the reference fills the upper one). sqrt(H_ii H_jj) bounds
 * sum_t |x_ti x_tj| (Cauchy-Schwarz), so rel = k u covers the rounding of a sum
 * of k <= 300 rows: 2e-5 in f32 (u = 6e-8), 1e-13 in f64. Channel sums are
 * double in both: rel 1e-12; freq exact. */
static void compare(const bb_calib_stat *s, const ref_stat *r, double rel, const char *label) {
    int64_t n = r->in, bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double ref = i <= j ? r->h[i * n + j] : r->h[j * n + i];
            double tol = rel * sqrt(r->h[i * n + i] * r->h[j * n + j]) + 1e-9;
            double e = fabs(gram_at(s, i, j) - ref);
            if (e > tol && bad++ < 3)
                fprintf(stderr, "  %s H[%lld][%lld] = %.9g, reference %.9g (tol %.3g)\n", label, (long long)i,
                        (long long)j, gram_at(s, i, j), ref, tol);
            if (e / (tol - 1e-9 + 1e-300) > worst) worst = e / (tol - 1e-9 + 1e-300);
        }
    EXPECT(bad == 0, "%s: %lld Gram entries off the reference (worst %.3g of tolerance)", label, (long long)bad,
           worst * rel);
    EXPECT(s->n_tokens == r->counted && s->n_rows_nonfinite == r->bad_rows,
           "%s: %lld rows (%lld left out), "
           "reference %lld (%lld)",
           label, (long long)s->n_tokens, (long long)s->n_rows_nonfinite, (long long)r->counted,
           (long long)r->bad_rows);
    int64_t bn = 0, bm = 0, bf = 0;
    for (int64_t j = 0; j < n; j++) {
        double c = (double)r->counted;
        bn += fabs(s->norm[j] - sqrt(r->sumsq[j])) > 1e-12 * sqrt(r->sumsq[j]);
        bm += fabs(s->mean_abs[j] - r->sumabs[j] / c) > 1e-12 * r->sumabs[j] / c;
        bf += s->freq[j] != (double)r->active[j] / c;
    }
    EXPECT(bn == 0 && bm == 0 && bf == 0, "%s: channels off the reference: norm %lld, mean_abs %lld, freq %lld", label,
           (long long)bn, (long long)bm, (long long)bf);
}

static bb_calib *collect(bb_calib_precision p, int l0, int l1) {
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    o.precision = p;
    o.layer_begin = l0;
    o.layer_end = l1;
    bb_calib *c = NULL;
    EXPECT_OK(bb_calib_create(model, &o, &c));
    if (c) EXPECT_OK(bb_calib_run(c, fwd, &stream, MICRO));
    return c;
}

static void test_matches_reference(void) {
    ref_calib r;
    ref_init(&r, 1e-3);
    ref_run(&r);
    bb_calib_precision ps[2] = {BB_CALIB_F32, BB_CALIB_F64};
    double rels[2] = {2e-5, 1e-13};
    for (int k = 0; k < 2; k++) {
        bb_calib *c = collect(ps[k], 0, 0);
        if (!c) continue;
        for (int l = 0; l < model->cfg.n_layers; l++)
            for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
                const bb_calib_stat *s;
                EXPECT_OK(bb_calib_stats_input(c, l, (bb_calib_input)i, &s));
                char label[64];
                snprintf(label, sizeof label, "%s layer %d %s", bb_calib_precision_name(ps[k]), l,
                         bb_calib_input_name((bb_calib_input)i));
                if (s) compare(s, &r.s[l][i], rels[k], label);
                EXPECT(s && s->n_tokens == SEQ * SEQ_LEN, "%s: %lld tokens", label, s ? (long long)s->n_tokens : -1LL);
            }
        bb_calib_destroy(&c);
        EXPECT(c == NULL, "destroy nulls the pointer");
    }
    ref_free(&r);
    bb_calib_destroy(&(bb_calib *){NULL});
}

static void test_shared_inputs(void) {
    bb_calib *c = collect(BB_CALIB_F32, 0, 0);
    if (!c) return;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        const bb_calib_stat *s[BB_LIN_COUNT];
        for (int k = 0; k < BB_LIN_COUNT; k++) EXPECT_OK(bb_calib_stats(c, l, (bb_linear_kind)k, &s[k]));
        EXPECT(s[BB_LIN_Q] == s[BB_LIN_K] && s[BB_LIN_K] == s[BB_LIN_V], "layer %d: q/k/v share one object", l);
        EXPECT(s[BB_LIN_GATE] == s[BB_LIN_UP], "layer %d: gate/up share one object", l);
        EXPECT(s[BB_LIN_Q] != s[BB_LIN_GATE] && s[BB_LIN_O] != s[BB_LIN_DOWN] && s[BB_LIN_Q] != s[BB_LIN_O],
               "layer %d: distinct inputs are distinct objects", l);
        EXPECT(s[BB_LIN_O]->in_features == model->cfg.n_heads * model->cfg.head_dim &&
                   s[BB_LIN_DOWN]->in_features == model->cfg.hidden_dim && s[BB_LIN_UP]->input == BB_CALIB_FFN_IN,
               "layer %d: widths and input kinds", l);
    }
    const bb_calib_stat *s;
    EXPECT_ERR(bb_calib_stats(c, model->cfg.n_layers, BB_LIN_Q, &s), BB_ERR_ARG, "outside the collected layers");
    EXPECT_ERR(bb_calib_stats(c, 0, BB_LIN_COUNT, &s), BB_ERR_ARG, "unknown linear kind");
    /* A sharer handed other rows than its owner breaks the sharing contract. */
    int64_t dim = model->cfg.dim;
    float *x = calloc((size_t)(2 * 4 * dim), sizeof(float));
    EXPECT_OK(bb_calib_feed(c, 0, BB_LIN_Q, x, 4, dim));
    EXPECT_OK(bb_calib_feed(c, 0, BB_LIN_K, x, 4, dim));
    EXPECT_ERR(bb_calib_feed(c, 0, BB_LIN_V, x + 4 * dim, 4, dim), BB_ERR_INTERNAL, "share one attn_in Gram");
    EXPECT_ERR(bb_calib_feed(c, 0, BB_LIN_GATE, x, 4, dim + 1), BB_ERR_INTERNAL, "wide");
    free(x);
    bb_calib_destroy(&c);
}

/* f32 and f64 accumulation agree to the f32 rounding of the Gram. */
static void test_precisions_agree(void) {
    bb_calib *a = collect(BB_CALIB_F32, 0, 0), *b = collect(BB_CALIB_F64, 0, 0);
    if (!a || !b) goto out;
    for (int l = 0; l < model->cfg.n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s, *t;
            EXPECT_OK(bb_calib_stats_input(a, l, (bb_calib_input)i, &s));
            EXPECT_OK(bb_calib_stats_input(b, l, (bb_calib_input)i, &t));
            int64_t n = s->in_features, bad = 0;
            for (int64_t p = 0; p < n; p++)
                for (int64_t q = 0; q < n; q++) {
                    double tol = 2e-5 * sqrt(t->gram_f64[p * n + p] * t->gram_f64[q * n + q]) + 1e-9;
                    bad += fabs((double)s->gram[p * n + q] - t->gram_f64[p * n + q]) > tol;
                }
            EXPECT(bad == 0, "layer %d %s: %lld f32 Gram entries differ from f64 beyond 2e-5 sqrt(H_pp H_qq)", l,
                   bb_calib_input_name((bb_calib_input)i), (long long)bad);
            EXPECT(!memcmp(s->norm, t->norm, sizeof(double) * (size_t)n) &&
                       !memcmp(s->freq, t->freq, sizeof(double) * (size_t)n),
                   "layer %d %s: channel statistics do not depend on the Gram precision", l,
                   bb_calib_input_name((bb_calib_input)i));
        }
out:
    bb_calib_destroy(&a);
    bb_calib_destroy(&b);
}

/* Rows with NaN/Inf are left out of the Gram and the channel sums, and counted.
 * Fed in two calls so that f64 staging and f32 runs cross call boundaries. */
static void test_nonfinite_rows(void) {
    int64_t dim = model->cfg.dim, rows = 300;
    float *x = malloc(sizeof(float) * (size_t)(rows * dim));
    bb_rng g = bb_rng_make(7, 1);
    bb_rng_fill_normal(g, 0, (size_t)(rows * dim), x);
    x[0 * dim + 5] = NAN;
    x[1 * dim + 0] = INFINITY;
    x[1 * dim + 9] = -INFINITY;
    x[150 * dim + 100] = NAN;
    x[299 * dim + dim - 1] = NAN;
    for (int k = 0; k < 2; k++) {
        bb_calib_precision p = k ? BB_CALIB_F64 : BB_CALIB_F32;
        bb_calib_opts o;
        bb_calib_opts_default(&o);
        o.precision = p;
        o.eps = 0.5;
        bb_calib *c = NULL;
        EXPECT_OK(bb_calib_create(model, &o, &c));
        if (!c) continue;
        EXPECT_OK(bb_calib_feed(c, 1, BB_LIN_GATE, x, 200, dim));
        EXPECT_OK(bb_calib_feed(c, 1, BB_LIN_GATE, x + 200 * dim, rows - 200, dim));
        ref_stat r = {.in = dim};
        r.h = calloc((size_t)(dim * dim), sizeof(double));
        r.sumsq = calloc((size_t)dim, sizeof(double));
        r.sumabs = calloc((size_t)dim, sizeof(double));
        r.active = calloc((size_t)dim, sizeof(int64_t));
        bb_calib_accumulate_ref(x, rows, dim, 0.5, r.h, r.sumsq, r.sumabs, r.active, &r.counted, &r.bad_rows);
        const bb_calib_stat *s;
        EXPECT_OK(bb_calib_stats(c, 1, BB_LIN_UP, &s));
        compare(s, &r, p == BB_CALIB_F32 ? 2e-5 : 1e-13, bb_calib_precision_name(p));
        EXPECT(s->n_tokens == rows - 4 && s->n_rows_nonfinite == 4 && s->n_nonfinite == 5,
               "%lld rows counted, %lld left out with %lld non-finite values (want 296, 4, 5)", (long long)s->n_tokens,
               (long long)s->n_rows_nonfinite, (long long)s->n_nonfinite);
        free(r.h);
        free(r.sumsq);
        free(r.sumabs);
        free(r.active);
        bb_calib_destroy(&c);
    }
    free(x);
}

/* A rank's layer range gives the same numbers as collecting every layer. */
static void test_layer_range(void) {
    bb_calib *all = collect(BB_CALIB_F32, 0, 0), *part = collect(BB_CALIB_F32, 1, 2);
    if (!all || !part) goto out;
    const bb_calib_stat *s, *t;
    EXPECT_ERR(bb_calib_stats(part, 0, BB_LIN_Q, &s), BB_ERR_ARG, "outside the collected layers [1, 2)");
    for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
        EXPECT_OK(bb_calib_stats_input(all, 1, (bb_calib_input)i, &s));
        EXPECT_OK(bb_calib_stats_input(part, 1, (bb_calib_input)i, &t));
        int64_t n = s->in_features;
        EXPECT(!memcmp(s->gram, t->gram, sizeof(float) * (size_t)(n * n)) &&
                   !memcmp(s->norm, t->norm, sizeof(double) * (size_t)n) && s->n_tokens == t->n_tokens,
               "layer 1 %s: range [1, 2) differs from all layers", bb_calib_input_name((bb_calib_input)i));
    }
    size_t b_all, b_part, grams = 0;
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    EXPECT_OK(bb_calib_memory_bytes(&model->cfg, &o, &b_all));
    o.layer_begin = 1;
    EXPECT_OK(bb_calib_memory_bytes(&model->cfg, &o, &b_part));
    for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
        size_t n = (size_t)bb_calib_in_features(&model->cfg, (bb_calib_input)i);
        grams += n * n * 4;
    }
    EXPECT(b_part >= grams && b_part <= grams + grams / 8 && b_all >= 2 * grams && b_all <= 2 * b_part,
           "memory %zu (one layer) and %zu (two) against Grams of %zu bytes per layer", b_part, b_all, grams);
out:
    bb_calib_destroy(&all);
    bb_calib_destroy(&part);
}

static void test_bad_arguments(void) {
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    bb_calib *c = NULL;
    o.layer_begin = 1;
    o.layer_end = 1;
    EXPECT_ERR(bb_calib_create(model, &o, &c), BB_ERR_ARG, "layer range [1, 1)");
    o.layer_end = 3;
    EXPECT_ERR(bb_calib_create(model, &o, &c), BB_ERR_ARG, "within the model's 2 layers");
    bb_calib_opts_default(&o);
    o.eps = -1;
    EXPECT_ERR(bb_calib_create(model, &o, &c), BB_ERR_ARG, "usage.eps");
    bb_calib_precision p;
    EXPECT_ERR(bb_calib_parse_precision("f16", &p), BB_ERR_CONFIG, "\"f16\" is not one of f32|f64");
    bb_config cfg;
    EXPECT_OK(bb_config_defaults(&cfg));
    EXPECT_OK(bb_calib_opts_from_config(&cfg, &o));
    EXPECT(o.precision == BB_CALIB_F32 && o.eps == 1e-3 && o.layer_end == 0, "defaults from the config");
    bb_calib_opts_default(&o);
    EXPECT_OK(bb_calib_create(model, &o, &c));
    if (!c) return;
    bb_tokens flat = stream;
    flat.seq_len = 0;
    flat.n_seq = (int)flat.n;
    EXPECT_ERR(bb_calib_run(c, fwd, &flat, 2), BB_ERR_ARG, "bb_calib_sample_windows");
    EXPECT_ERR(bb_calib_run(c, fwd, &stream, 0), BB_ERR_ARG, "micro-batch 0");
    bb_tokens bad = stream;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)stream.n);
    memcpy(ids, stream.ids, sizeof(int32_t) * (size_t)stream.n);
    ids[5] = model->cfg.vocab_size;
    bad.ids = ids;
    EXPECT_ERR(bb_calib_run(c, fwd, &bad, 2), BB_ERR_ARG, "outside the vocabulary");
    free(ids);
    bb_model *other = NULL;
    bb_forward *of = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,dim=64,heads=2,kv_heads=1", &other));
    if (other) EXPECT_OK(bb_forward_create(other, 64, &of));
    if (of) EXPECT_ERR(bb_calib_attach(c, of), BB_ERR_ARG, "another shape");
    bb_forward_destroy(&of);
    bb_model_destroy(&other);
    bb_calib_destroy(&c);
}

/* The Grams of a 70B model do not fit this process: one clear message. The
 * address-space limit makes the failure certain whatever the overcommit policy. */
static void test_out_of_memory(void) {
#if defined(__SANITIZE_ADDRESS__)
    printf("     (skipped under AddressSanitizer, which needs the address space)\n");
    test_checks_++;
#else
    bb_model *big = NULL;
    EXPECT_OK(bb_model_open("synthetic:llama2-70b", &big));
    if (!big) return;
    struct rlimit old, lim;
    getrlimit(RLIMIT_AS, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)16 << 30;
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur) lim.rlim_cur = old.rlim_max;
    setrlimit(RLIMIT_AS, &lim);
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    bb_calib *c = NULL;
    size_t need = 0;
    EXPECT_OK(bb_calib_memory_bytes(&big->cfg, &o, &need));
    EXPECT(need > ((size_t)250 << 30), "80 layers of 70B Grams need %zu bytes", need);
    EXPECT_ERR(bb_calib_create(big, &o, &c), BB_ERR_OOM, "give each rank fewer layers");
    EXPECT(c == NULL, "no collector after a failed create");
    setrlimit(RLIMIT_AS, &old);
    bb_model_destroy(&big);
#endif
}

static void test_sample_windows(void) {
    bb_tokens flat = {0}, a = {0}, b = {0};
    flat.n = flat.n_seq = 1000;
    flat.vocab_size = 512;
    flat.ids = malloc(sizeof(int32_t) * 1000);
    for (int i = 0; i < 1000; i++) flat.ids[i] = i % 500 + 2;
    EXPECT_OK(bb_calib_sample_windows(&flat, 5, 64, 42, 1, &a));
    EXPECT_OK(bb_calib_sample_windows(&flat, 5, 64, 42, 1, &b));
    EXPECT(a.n_seq == 5 && a.seq_len == 64 && a.n == 320 && !memcmp(a.ids, b.ids, sizeof(int32_t) * 320),
           "deterministic (5 x 64)");
    int ordered = 1, aligned = 1;
    for (int w = 0; w < 5; w++) {
        EXPECT(a.ids[w * 64] == 1, "window %d starts with BOS", w);
        int start = -1;
        for (int s = 0; s < 15; s++)
            if (!memcmp(a.ids + w * 64 + 1, flat.ids + s * 64 + 1, sizeof(int32_t) * 63)) start = s;
        aligned &= start >= 0;
        if (w > 0) ordered &= a.ids[w * 64 + 1] != a.ids[(w - 1) * 64 + 1];
    }
    EXPECT(aligned && ordered, "windows are distinct non-overlapping windows of the stream");
    bb_tokens_free(&b);
    EXPECT_OK(bb_calib_sample_windows(&flat, 0, 64, 42, -1, &b));
    EXPECT(b.n_seq == 15 && !memcmp(b.ids, flat.ids, sizeof(int32_t) * 960), "0 windows = all, in order");
    bb_tokens_free(&b);
    EXPECT_ERR(bb_calib_sample_windows(&flat, 16, 64, 42, 1, &b), BB_ERR_ARG,
               "holds 15 windows of 64 tokens, 16 asked");
    EXPECT_ERR(bb_calib_sample_windows(&flat, 1, 1, 42, 1, &b), BB_ERR_ARG, "at least 2 tokens");
    char h1[65], h2[65];
    bb_calib_tokens_hash(&a, h1);
    a.ids[3]++;
    bb_calib_tokens_hash(&a, h2);
    EXPECT(strlen(h1) == 64 && strcmp(h1, h2), "tokens hash changes with the tokens");
    bb_tokens_free(&a);
    bb_tokens_free(&flat);
}

/* ---- HDF5 ------------------------------------------------------------------------ */

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", test_tmpdir(), name); }

static void expect_equal_stats(bb_calib *a, bb_calib *b, const char *label) {
    int64_t diff = 0;
    for (int l = bb_calib_options(a)->layer_begin; l < bb_calib_options(a)->layer_end; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s, *t;
            EXPECT_OK(bb_calib_stats_input(a, l, (bb_calib_input)i, &s));
            EXPECT_OK(bb_calib_stats_input(b, l, (bb_calib_input)i, &t));
            if (!s || !t) return;
            size_t n = (size_t)s->in_features, gb = n * n * (s->gram ? 4 : 8);
            diff += s->precision != t->precision || s->n_tokens != t->n_tokens ||
                    s->n_rows_nonfinite != t->n_rows_nonfinite || s->n_nonfinite != t->n_nonfinite;
            diff += memcmp(s->gram ? (const void *)s->gram : (const void *)s->gram_f64,
                           t->gram ? (const void *)t->gram : (const void *)t->gram_f64, gb) != 0;
            diff += memcmp(s->norm, t->norm, n * 8) != 0;
            diff += memcmp(s->mean_abs, t->mean_abs, n * 8) != 0;
            diff += memcmp(s->freq, t->freq, n * 8) != 0;
        }
    EXPECT(diff == 0, "%s: %lld differences after the round trip", label, (long long)diff);
}

static void test_h5_round_trip(void) {
    char path[1024];
    for (int k = 0; k < 2; k++) {
        bb_calib_precision p = k ? BB_CALIB_F64 : BB_CALIB_F32;
        bb_calib *c = collect(p, k, 2), *back = NULL;
        if (!c) continue;
        char hash[65];
        bb_calib_tokens_hash(&stream, hash);
        tmp_path(path, sizeof path, k ? "calib_f64.h5" : "calib_f32.h5");
        EXPECT_OK(bb_stats_h5_write(path, c, hash));
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
        EXPECT(!bb_path_exists(tmp) && bb_path_exists(path), "renamed into place, no temporary left");
        bb_stats_h5_info info;
        EXPECT_OK(bb_stats_h5_read(path, model, &back, &info));
        if (back) {
            expect_equal_stats(c, back, bb_calib_precision_name(p));
            EXPECT(info.layer_begin == k && info.layer_end == 2 && info.precision == p && info.eps == 1e-3 &&
                       !strcmp(info.hash, hash) && !strcmp(info.model_path, model->path) && info.version == 1,
                   "file attributes: layers [%d, %d) %s eps %g hash %s model %s", info.layer_begin, info.layer_end,
                   bb_calib_precision_name(info.precision), info.eps, info.hash, info.model_path);
            EXPECT_ERR(bb_calib_attach(back, fwd), BB_ERR_ARG, "read-only");
            EXPECT_ERR(bb_calib_run(back, fwd, &stream, 2), BB_ERR_ARG, "read-only");
        }
        bb_calib_destroy(&back);
        bb_calib_destroy(&c);
    }
    char long_hash[200];
    memset(long_hash, 'a', sizeof long_hash - 1);
    long_hash[sizeof long_hash - 1] = 0;
    bb_calib *c = collect(BB_CALIB_F32, 1, 2);
    tmp_path(path, sizeof path, "calib_longhash.h5");
    if (c) EXPECT_ERR(bb_stats_h5_write(path, c, long_hash), BB_ERR_ARG, "at most 127 fit");
    tmp_path(path, sizeof path, "no_such_dir/calib.h5");
    if (c) EXPECT_ERR(bb_stats_h5_write(path, c, NULL), BB_ERR_HDF5, "no_such_dir/calib.h5.tmp.");
    bb_calib_destroy(&c);
}

/* Edit a saved file with HDF5 directly: delete a link, or replace a dataset
 * with one of another shape, or rewrite an integer attribute of the root. */
static int h5_edit(const char *path, const char *del, const char *reshape, const char *attr, int64_t value) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = 0;
    if (del) rc |= H5Ldelete(f, del, H5P_DEFAULT) < 0;
    if (reshape) {
        rc |= H5Ldelete(f, reshape, H5P_DEFAULT) < 0;
        hsize_t d[1] = {3};
        double v[3] = {0};
        hid_t sp = H5Screate_simple(1, d, NULL);
        hid_t ds = H5Dcreate2(f, reshape, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc |= H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0;
        H5Dclose(ds);
        H5Sclose(sp);
    }
    if (attr) {
        hid_t a = H5Aopen(f, attr, H5P_DEFAULT);
        rc |= H5Awrite(a, H5T_NATIVE_INT64, &value) < 0;
        H5Aclose(a);
    }
    H5Fclose(f);
    return rc ? -1 : 0;
}

static int copy_file(const char *from, const char *to, size_t keep) {
    char *data = NULL;
    size_t n = 0;
    if (bb_file_read_all(from, 1 << 26, &data, &n) != BB_OK) return -1;
    int rc = test_write_file(to, data, keep && keep < n ? keep : n);
    free(data);
    return rc;
}

static void test_h5_bad_files(void) {
    char good[1024], bad[1024];
    tmp_path(good, sizeof good, "calib_good.h5");
    tmp_path(bad, sizeof bad, "calib_bad.h5");
    bb_calib *c = collect(BB_CALIB_F32, 0, 0), *back = NULL;
    if (!c) return;
    EXPECT_OK(bb_stats_h5_write(good, c, "cfg-hash"));
    bb_calib_destroy(&c);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    tmp_path(bad, sizeof bad, "calib_missing_file.h5");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_IO, "calib_missing_file.h5");
    tmp_path(bad, sizeof bad, "calib_bad.h5");
    EXPECT(test_write_file(bad, "not an HDF5 file at all", 23) == 0, "write garbage");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_HDF5, "calib_bad.h5");
    size_t size = 0;
    {
        char *d = NULL;
        if (bb_file_read_all(good, 1 << 26, &d, &size) == BB_OK) free(d);
    }
    EXPECT(copy_file(good, bad, size / 2) == 0, "truncate");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_HDF5, "calib_bad.h5");
    EXPECT(copy_file(good, bad, 0) == 0 && h5_edit(bad, "/layer_001/ffn_in/norm", NULL, NULL, 0) == 0, "delete");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_FORMAT,
               "calib_bad.h5: /layer_001/ffn_in/norm is missing");
    EXPECT(copy_file(good, bad, 0) == 0 && h5_edit(bad, "/layer_000", NULL, NULL, 0) == 0, "delete layer");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_FORMAT, "/layer_000 is missing");
    EXPECT(copy_file(good, bad, 0) == 0 && h5_edit(bad, NULL, "/layer_000/ffn_down_in/gram", NULL, 0) == 0, "reshape");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_FORMAT,
               "/layer_000/ffn_down_in/gram has shape (3), expected (352, 352)");
    EXPECT(copy_file(good, bad, 0) == 0 && h5_edit(bad, NULL, NULL, "version", 9) == 0, "version");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_FORMAT, "version 9");
    EXPECT(copy_file(good, bad, 0) == 0 && h5_edit(bad, NULL, NULL, "layer_end", 7) == 0, "range");
    EXPECT_ERR(bb_stats_h5_read(bad, model, &back, NULL), BB_ERR_FORMAT, "layer range [0, 7)");
    bb_model *other = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,hidden=320", &other));
    if (other) EXPECT_ERR(bb_stats_h5_read(good, other, &back, NULL), BB_ERR_ARG, "hidden_dim 352, but");
    bb_model_destroy(&other);
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=3", &other));
    if (other) EXPECT_ERR(bb_stats_h5_read(good, other, &back, NULL), BB_ERR_ARG, "n_layers 2, but");
    bb_model_destroy(&other);
    EXPECT(back == NULL, "no collector after a failed read");
}

/* ---- stories260K: invariants with no reference ------------------------------------ */

static void test_stories260k(void) {
    char mpath[1024], tpath[1024];
    snprintf(mpath, sizeof mpath, "%s/data/stories260K/stories260K.bin", test_shared());
    snprintf(tpath, sizeof tpath, "%s/data/tinystories/calib.txt", test_shared());
    bb_model *m = NULL;
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    bb_calib *c = NULL;
    char *text = NULL;
    size_t len;
    int *ids = NULL, n = 0;
    bb_tokens flat = {0}, win = {0};
    EXPECT_OK(bb_model_open(mpath, &m));
    if (!m) return;
    EXPECT_OK(bb_tokenizer_open_for_model(m, NULL, &tok));
    EXPECT_OK(bb_file_read_all(tpath, 1 << 26, &text, &len));
    if (!tok || !text) goto out;
    EXPECT_OK(bb_tokenizer_encode(tok, text, 1, 0, &ids, &n));
    flat.ids = ids;
    flat.n = flat.n_seq = n;
    flat.vocab_size = m->cfg.vocab_size;
    EXPECT_OK(bb_calib_sample_windows(&flat, 6, 256, 1234, m->cfg.bos_id, &win));
    EXPECT_OK(bb_forward_create(m, 256, &f));
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    EXPECT_OK(bb_calib_create(m, &o, &c));
    if (!f || !c || !win.ids) goto out;
    EXPECT_OK(bb_calib_run(c, f, &win, 4));
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s;
            EXPECT_OK(bb_calib_stats_input(c, l, (bb_calib_input)i, &s));
            if (!s) continue;
            int64_t nn = s->in_features;
            int sym = 1;
            double tr = 0, sn = 0;
            for (int64_t p = 0; p < nn; p++) {
                tr += s->gram[p * nn + p];
                sn += s->norm[p] * s->norm[p];
                for (int64_t q = 0; q < p; q++) sym &= s->gram[p * nn + q] == s->gram[q * nn + p];
            }
            float *a = malloc(sizeof(float) * (size_t)(nn * nn)), *w = malloc(sizeof(float) * (size_t)nn);
            memcpy(a, s->gram, sizeof(float) * (size_t)(nn * nn));
            lapack_int info = LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)nn, a, (lapack_int)nn, w);
            /* f32 rounding of the accumulation and of ssyev: eigenvalues may dip
             * below zero by a few ulps of the largest one. */
            double tol = 1e-5 * fabs((double)w[nn - 1]);
            EXPECT(info == 0 && w[0] >= -tol, "layer %d %s: min eigenvalue %g (max %g, tol %g, info %d)", l,
                   bb_calib_input_name((bb_calib_input)i), (double)w[0], (double)w[nn - 1], tol, (int)info);
            EXPECT(sym, "layer %d %s: Gram not exactly symmetric", l, bb_calib_input_name((bb_calib_input)i));
            EXPECT(fabs(tr - sn) <= 1e-5 * sn, "layer %d %s: trace(H) %.9g vs sum norm^2 %.9g", l,
                   bb_calib_input_name((bb_calib_input)i), tr, sn);
            EXPECT(s->n_tokens == 6 * 256 && s->n_rows_nonfinite == 0, "layer %d %s: %lld tokens", l,
                   bb_calib_input_name((bb_calib_input)i), (long long)s->n_tokens);
            free(a);
            free(w);
        }
out:
    bb_calib_destroy(&c);
    bb_forward_destroy(&f);
    bb_tokens_free(&win);
    free(ids);
    free(text);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&m);
}

/* test_calib --stats MODEL TOKENS OUT EPS: the numpy cross-check's runner
 * (tests/py/calib_ref.py). TOKENS is text "B T id..."; the B sequences go
 * through bb_calib_run (f64 Grams, micro-batch 2); OUT receives, for each layer
 * and input in order, gram (in, in), norm, mean_abs, freq (in) as f64, then
 * n_tokens as f64. */
static int run_stats(const char *spec, const char *tokens_path, const char *out_path, double eps) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    bb_calib *c = NULL;
    char *txt = NULL;
    bb_tokens t = {0};
    FILE *out = NULL;
    int rc = 1, off;
    if (bb_model_open(spec, &m) || bb_file_read_all(tokens_path, 1 << 20, &txt, NULL)) goto done;
    if (sscanf(txt, "%d %d%n", &t.n_seq, &t.seq_len, &off) != 2 || t.n_seq <= 0 || t.seq_len <= 0) goto done;
    t.n = (int64_t)t.n_seq * t.seq_len;
    t.vocab_size = m->cfg.vocab_size;
    t.ids = malloc(sizeof(int32_t) * (size_t)t.n);
    for (int64_t i = 0; i < t.n; i++) {
        int used;
        if (sscanf(txt + off, "%d%n", &t.ids[i], &used) != 1) goto done;
        off += used;
    }
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    o.precision = BB_CALIB_F64;
    o.eps = eps;
    if (bb_forward_create(m, t.seq_len, &f) || bb_calib_create(m, &o, &c) || bb_calib_run(c, f, &t, 2)) goto done;
    if (!(out = fopen(out_path, "wb"))) goto done;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s;
            if (bb_calib_stats_input(c, l, (bb_calib_input)i, &s)) goto done;
            size_t n = (size_t)s->in_features;
            double cnt = (double)s->n_tokens;
            if (fwrite(s->gram_f64, 8, n * n, out) != n * n || fwrite(s->norm, 8, n, out) != n ||
                fwrite(s->mean_abs, 8, n, out) != n || fwrite(s->freq, 8, n, out) != n || fwrite(&cnt, 8, 1, out) != 1)
                goto done;
        }
    rc = fclose(out) != 0;
    out = NULL;
done:
    if (out) fclose(out);
    if (rc) fprintf(stderr, "test_calib --stats %s failed: %s\n", spec, bb_last_error());
    free(txt);
    free(t.ids);
    bb_calib_destroy(&c);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "--stats")) return run_stats(argv[2], argv[3], argv[4], atof(argv[5]));
    if (bb_model_open("synthetic:tiny,layers=2", &model) != BB_OK || bb_forward_create(model, SEQ_LEN, &fwd) != BB_OK ||
        bb_sample_stream(fwd, 11, "calib", 0, SEQ, SEQ_LEN, 1.0f, &stream) != BB_OK) {
        fprintf(stderr, "setup failed: %s\n", bb_last_error());
        return 1;
    }
    TEST_RUN(test_matches_reference);
    TEST_RUN(test_shared_inputs);
    TEST_RUN(test_precisions_agree);
    TEST_RUN(test_nonfinite_rows);
    TEST_RUN(test_layer_range);
    TEST_RUN(test_bad_arguments);
    TEST_RUN(test_out_of_memory);
    TEST_RUN(test_sample_windows);
    TEST_RUN(test_h5_round_trip);
    TEST_RUN(test_h5_bad_files);
    TEST_RUN(test_stories260k);
    bb_tokens_free(&stream);
    bb_forward_destroy(&fwd);
    bb_model_destroy(&model);
    return TEST_DONE();
}
