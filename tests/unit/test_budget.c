/* test_budget.c — bit-budget tables and assignments: width-to-type map and costs, the lagrange
 * allocation (budget respected, better than uniform, near the brute-force optimum, deterministic and
 * order-invariant), the seed policy's alpha schedule and demotion, fortress blocks, errors. */
#include "compress/budget.h"
#include "core/rng.h"
#include "io/qformat.h"
#include "test.h"

/* Synthetic distortion: D = sens * size * 4^-bpw, the classic rate-distortion slope of a quantizer. */
static void synth_distortion(bb_budget_block *b, double sens) {
    for (int i = 0; i < b->n; i++) {
        double bpw = (double)b->c[i].cost / (double)b->size;
        b->c[i].distortion = sens * (double)b->size * pow(4.0, -bpw);
    }
}

/* n blocks of varied shapes (some with row lengths that need fallbacks) and sensitivities spread
 * over six decades; usage in [0, 1]. */
static bb_budget_block *make_blocks(const bb_budget_opts *o, int n, uint64_t seed) {
    bb_budget_block *b = calloc((size_t)n, sizeof *b);
    const int64_t shapes[][2] = {{64, 512}, {128, 256}, {32, 768}, {64, 96}, {16, 1024}, {48, 256}};
    for (int i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.t%d.weight", i / 7, i % 7);
        const int64_t *s = shapes[i % 6];
        EXPECT_OK(bb_budget_block_init(o, name, (uint64_t)(1000 + 7 * i), s[0], s[1],
                                       bb_rng_uniform(bb_rng_make(seed, 1), (uint64_t)i), &b[i]));
        synth_distortion(&b[i], pow(10.0, 6.0 * bb_rng_uniform(bb_rng_make(seed, 2), (uint64_t)i) - 3.0));
    }
    return b;
}

static void test_types_and_costs(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    EXPECT(bb_budget_type_for_bits(2, 0) == BB_GGML_Q2_K && bb_budget_type_for_bits(3, 0) == BB_GGML_Q3_K &&
               bb_budget_type_for_bits(4, 0) == BB_GGML_Q4_K && bb_budget_type_for_bits(4, 1) == BB_GGML_Q4_0 &&
               bb_budget_type_for_bits(5, 0) == BB_GGML_Q5_K && bb_budget_type_for_bits(5, 1) == BB_GGML_Q5_0 &&
               bb_budget_type_for_bits(6, 0) == BB_GGML_Q6_K && bb_budget_type_for_bits(8, 0) == BB_GGML_Q8_0 &&
               bb_budget_type_for_bits(16, 0) == BB_GGML_F16 && bb_budget_type_for_bits(7, 0) == -1,
           "width -> type map");
    bb_budget_block b;
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_q.weight", 1, 64, 512, 0.5, &b));
    const double bpw[] = {2.625, 3.4375, 4.5, 5.5, 6.5625, 8.5, 16};
    EXPECT(b.n == 7, "7 candidates, got %d", b.n);
    for (int i = 0; i < b.n && i < 7; i++) EXPECT_NEAR((double)b.c[i].cost / (double)b.size, bpw[i], 1e-12);
    /* 96-wide rows: 2 and 3 bits both fall back to Q4_0, 6 and 8 both to Q8_0: duplicates dropped. */
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.ffn_down.weight", 2, 64, 96, 0.5, &b));
    const int types96[] = {BB_GGML_Q4_0, BB_GGML_Q5_0, BB_GGML_Q5_1, BB_GGML_Q8_0, BB_GGML_F16};
    EXPECT(b.n == 5, "96 wide: 5 candidates, got %d", b.n);
    for (int i = 0; i < b.n && i < 5; i++)
        EXPECT(b.c[i].type == types96[i], "candidate %d: %s", i, bb_ggml_type_name(b.c[i].type));
    /* 40-wide rows fit no block: only F16 is left. */
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.odd.weight", 3, 8, 40, 0.5, &b));
    EXPECT(b.n == 1 && b.c[0].type == BB_GGML_F16, "40 wide: F16 only");
    o.legacy = 1;
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_q.weight", 1, 64, 512, 0.5, &b));
    EXPECT(b.c[2].type == BB_GGML_Q4_0 && b.c[3].type == BB_GGML_Q5_0, "legacy 4/5 bits");
    o.choices[0] = 7;
    EXPECT_ERR(bb_budget_block_init(&o, "x", 1, 4, 32, 0, &b), BB_ERR_CONFIG, "7 bits has no GGUF type");
}

static void test_alpha_and_config(void) {
    EXPECT_NEAR(bb_budget_alpha(1, 5, 0.3, 0.7), 0.3, 1e-15);
    EXPECT_NEAR(bb_budget_alpha(3, 5, 0.3, 0.7), 0.5, 1e-15);
    EXPECT_NEAR(bb_budget_alpha(5, 5, 0.3, 0.7), 0.7, 1e-15);
    EXPECT_NEAR(bb_budget_alpha(1, 1, 0.3, 0.7), 0.3, 1e-15);
    bb_config cfg;
    EXPECT_OK(bb_config_defaults(&cfg));
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    EXPECT_OK(bb_budget_opts_from_config(&cfg, 2, &o));
    EXPECT(strcmp(o.policy, "optimal") == 0 && o.target_bits == 4 && o.init_bits == 8 && o.base_bits == 4 &&
               o.n_choices == 7 && o.choices[6] == 16,
           "budget.* defaults");
    EXPECT_NEAR(o.alpha, bb_budget_alpha(2, (int)cfg.waves.count, 0.3, 0.7), 1e-15);
    EXPECT(o.n_fortress == 0 && o.fortress_top == 0, "no fortress by default");
    EXPECT_ERR(bb_budget_opts_from_config(&cfg, 0, &o), BB_ERR_CONFIG, "outside 1..waves.count");
    /* budget.fortress: comma-separated patterns, spaces around them dropped; fortress_top and the policy alias */
    EXPECT_OK(bb_config_set(&cfg, "budget.fortress=output.weight, blk.*.attn_v.weight ,"));
    EXPECT_OK(bb_config_set(&cfg, "budget.fortress_top=0.25"));
    EXPECT_OK(bb_config_set(&cfg, "budget.policy=lagrange"));
    EXPECT_OK(bb_budget_opts_from_config(&cfg, 1, &o));
    EXPECT(o.n_fortress == 2 && !strcmp(o.fortress[0], "output.weight") && !strcmp(o.fortress[1], "blk.*.attn_v.weight") &&
               o.fortress_top == 0.25 && !strcmp(o.policy, "lagrange"),
           "budget.fortress, fortress_top, policy from config (%d patterns)", o.n_fortress);
    EXPECT(bb_budget_is_fortress(&o, "blk.3.attn_v.weight") && !bb_budget_is_fortress(&o, "blk.3.attn_q.weight"),
           "patterns match");
    EXPECT_ERR(bb_config_set(&cfg, "budget.fortress_top=1.5"), BB_ERR_CONFIG, "fortress_top");
}

/* optimal and its alias lagrange give the same assignment. */
static void test_optimal_alias(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    bb_budget_block *b = make_blocks(&o, 21, 9);
    int c1[21], c2[21];
    bb_budget_summary s1, s2;
    EXPECT_OK(bb_budget_assign(&o, b, 21, c1, &s1));
    strcpy(o.policy, "lagrange");
    EXPECT_OK(bb_budget_assign(&o, b, 21, c2, &s2));
    EXPECT(memcmp(c1, c2, sizeof c1) == 0 && s1.total == s2.total && s1.distortion == s2.distortion,
           "optimal = lagrange");
    free(b);
}

/* Fortress by sensitivity: hand-set distortions at the narrowest width; the floor(frac n) largest become F16,
 * ties to the smaller key, pattern fortress blocks not counted. */
static void test_fortress_top(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    EXPECT_OK(bb_budget_add_fortress(&o, "output.weight"));
    const char *names[6] = {"a.weight", "b.weight", "c.weight", "output.weight", "e.weight", "f.weight"};
    const double d0[6] = {1.0, 7.0, 3.0, 100.0, 3.0, 0.5}; /* c and e tie at 3: c has the smaller key */
    bb_budget_block b[6];
    for (int i = 0; i < 6; i++) {
        EXPECT_OK(bb_budget_block_init(&o, names[i], (uint64_t)(10 + i), 32, 256, 0.5, &b[i]));
        synth_distortion(&b[i], 1.0);
        b[i].c[0].distortion = d0[i];
    }
    const double f16_d = b[1].c[b[1].n - 1].distortion;
    int64_t made = -1;
    /* floor(0.34 * 6) = 2: b (7), then c (3, key 12) before e (3, key 14); output.weight was fortress already */
    EXPECT_OK(bb_budget_fortress_top(0.34, b, 6, &made));
    EXPECT(made == 2, "2 made fortress, got %lld", (long long)made);
    const int want[6] = {0, 1, 1, 1, 0, 0};
    for (int i = 0; i < 6; i++) {
        EXPECT(b[i].fortress == want[i], "%s fortress %d", names[i], b[i].fortress);
        if (want[i])
            EXPECT(b[i].n == 1 && b[i].c[0].bits == 16 && b[i].c[0].type == BB_GGML_F16 &&
                       b[i].c[0].cost == 32 * 256 * 16,
                   "%s: only F16 left", names[i]);
    }
    EXPECT(b[1].c[0].distortion == f16_d, "the measured 16-bit distortion is kept");
    EXPECT(b[0].n == 7 && b[4].n == 7, "the others keep every width");
    /* 0.1 of 6 = 0: nothing changes; a fraction outside [0, 1] is refused */
    EXPECT_OK(bb_budget_fortress_top(0.1, b, 6, &made));
    EXPECT(made == 0 && b[4].n == 7, "floor(0.6) = 0 blocks");
    EXPECT_ERR(bb_budget_fortress_top(-0.1, b, 6, &made), BB_ERR_CONFIG, "budget.fortress_top is -0.1");
    /* the assignment then keeps them at 16 bits */
    int ch[6];
    bb_budget_summary s;
    o.target_bits = 12;
    EXPECT_OK(bb_budget_assign(&o, b, 6, ch, &s));
    for (int i = 1; i < 4; i++) EXPECT(b[i].c[ch[i]].bits == 16, "%s at 16 bits", names[i]);
    EXPECT(s.total <= s.budget, "within the budget");
}

static double total_distortion_uniform(const bb_budget_opts *o, const bb_budget_block *b, int n, int *choice,
                                       bb_budget_summary *s) {
    bb_budget_opts u = *o;
    strcpy(u.policy, "uniform");
    EXPECT_OK(bb_budget_assign(&u, b, n, choice, s));
    return s->distortion;
}

static void test_lagrange(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    const int n = 40;
    bb_budget_block *b = make_blocks(&o, n, 7);
    int *ch = calloc(n, sizeof *ch), *chu = calloc(n, sizeof *chu);
    const double targets[] = {3.0, 4.0, 4.5, 5.0, 6.0, 9.0};
    for (int t = 0; t < 6; t++) {
        o.target_bits = targets[t];
        bb_budget_summary s, su;
        EXPECT_OK(bb_budget_assign(&o, b, n, ch, &s));
        int64_t total = 0;
        for (int i = 0; i < n; i++) total += b[i].c[ch[i]].cost;
        EXPECT(total == s.total && total <= s.budget, "target %g: %lld bits over the budget %lld", targets[t],
               (long long)total, (long long)s.budget);
        EXPECT(s.budget == (int64_t)floor(targets[t] * (double)s.weights) && s.budget_init == 8 * s.weights,
               "budget B and B_init");
        double du = total_distortion_uniform(&o, b, n, chu, &su);
        printf("  target %.2f: lagrange %.4f bits/weight, D %.4g (lambda %.3g); uniform %.4f, D %.4g\n", targets[t],
               s.avg_bits, s.distortion, s.lambda, su.avg_bits, du);
        EXPECT(su.total <= su.budget, "uniform within budget");
        EXPECT(s.distortion <= du, "target %g: lagrange D %.6g above uniform %.6g", targets[t], s.distortion, du);
        if (targets[t] == 4.5) EXPECT(s.distortion < 0.5 * du, "blocks of different sensitivity: a clear gain");
    }
    free(ch);
    free(chu);
    free(b);
}

/* Exhaustive search over 5 blocks x 7 widths: lagrange + greedy lands within 5 % of the optimum. */
static void test_lagrange_near_optimal(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    const int n = 5;
    bb_budget_block *b = calloc(n, sizeof *b);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "b%d", i);
        EXPECT_OK(bb_budget_block_init(&o, name, (uint64_t)i, 16 * (i + 1), 256, 0, &b[i]));
        synth_distortion(&b[i], pow(10.0, 1.5 * i - 3));
    }
    const double targets[] = {3.2, 4.0, 5.1, 7.0};
    for (int t = 0; t < 4; t++) {
        o.target_bits = targets[t];
        int ch[5], c[5] = {0};
        bb_budget_summary s;
        EXPECT_OK(bb_budget_assign(&o, b, n, ch, &s));
        double best = INFINITY;
        for (int k = 0; k < 16807; k++) {
            int64_t tot = 0;
            double d = 0;
            for (int i = 0, r = k; i < n; i++, r /= 7) {
                c[i] = r % 7;
                tot += b[i].c[c[i]].cost;
                d += b[i].c[c[i]].distortion;
            }
            if (tot <= s.budget && d < best) best = d;
        }
        printf("  target %.1f: lagrange D %.6g, exhaustive optimum %.6g\n", targets[t], s.distortion, best);
        EXPECT(s.distortion <= 1.05 * best, "target %g: %.6g vs optimum %.6g", targets[t], s.distortion, best);
    }
    free(b);
}

/* Same tables in another order (same keys) or again: the same width for every key. */
static void test_deterministic(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    o.target_bits = 4.3;
    const int n = 60;
    const char *policies[] = {"lagrange", "seed", "uniform"};
    for (int p = 0; p < 3; p++) {
        strcpy(o.policy, policies[p]);
        bb_budget_block *b = make_blocks(&o, n, 17), *sh = malloc(sizeof *sh * n);
        int *ch = calloc(n, sizeof *ch), *ch2 = calloc(n, sizeof *ch2), *ch3 = calloc(n, sizeof *ch3);
        int *perm = malloc(sizeof *perm * n);
        for (int i = 0; i < n; i++) perm[i] = i;
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates with the counter RNG */
            int j = (int)(bb_rng_u64(bb_rng_make(3, 9), (uint64_t)i) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int i = 0; i < n; i++) sh[i] = b[perm[i]];
        bb_budget_summary s1, s2, s3;
        EXPECT_OK(bb_budget_assign(&o, b, n, ch, &s1));
        EXPECT_OK(bb_budget_assign(&o, sh, n, ch2, &s2));
        EXPECT_OK(bb_budget_assign(&o, b, n, ch3, &s3));
        int same = 1;
        for (int i = 0; i < n; i++) same &= ch2[i] == ch[perm[i]] && ch3[i] == ch[i];
        EXPECT(same, "%s: assignment depends on the table order", policies[p]);
        EXPECT(s1.total == s2.total && s1.lambda == s2.lambda && s1.distortion == s2.distortion,
               "%s: summary depends on the table order", policies[p]);
        free(b);
        free(sh);
        free(ch);
        free(ch2);
        free(ch3);
        free(perm);
    }
}

static void test_seed(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    strcpy(o.policy, "seed");
    o.target_bits = 16;
    const int n = 20;
    bb_budget_block *b = calloc(n, sizeof *b);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "blk.%d.w", i);
        EXPECT_OK(bb_budget_block_init(&o, name, (uint64_t)i, 32, 512, (i + 0.5) / n, &b[i]));
    }
    int ch[20];
    bb_budget_summary s;
    for (int k = 1; k <= 5; k++) {
        o.alpha = bb_budget_alpha(k, 5, 0.3, 0.7);
        EXPECT_OK(bb_budget_assign(&o, b, n, ch, &s));
        int ok = 1;
        for (int i = 0; i < n; i++) ok &= b[i].c[ch[i]].bits == (b[i].usage < o.alpha ? 4 : 8);
        EXPECT(ok, "wave %d: s_b < alpha_k = %g -> 4 bits, else 8", k, o.alpha);
    }
    /* Tight budget (average 6.5 asked down to 5): demotion rounds from the lowest usage up, total
     * within the budget. */
    o.alpha = 0.5;
    o.target_bits = 5.0;
    EXPECT_OK(bb_budget_assign(&o, b, n, ch, &s));
    EXPECT(s.total <= s.budget, "seed demotion meets the budget");
    int mono = 1;
    for (int i = 1; i < n; i++) mono &= b[i].c[ch[i]].bits >= b[i - 1].c[ch[i - 1]].bits;
    EXPECT(mono, "lower usage never keeps more bits than higher usage");
    EXPECT(b[0].c[ch[0]].bits < 4 && b[n - 1].c[ch[n - 1]].bits > 4,
           "lowest usage demoted below 4, highest above (%d, %d)", b[0].c[ch[0]].bits, b[n - 1].c[ch[n - 1]].bits);
    free(b);
}

static void test_fortress_and_errors(void) {
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    EXPECT_OK(bb_budget_add_fortress(&o, "output.weight"));
    EXPECT_OK(bb_budget_add_fortress(&o, "blk.*.attn_v.weight"));
    bb_budget_block b[4];
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_q.weight", 0, 64, 512, 0.9, &b[0]));
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_v.weight", 1, 64, 512, 0.1, &b[1]));
    EXPECT_OK(bb_budget_block_init(&o, "output.weight", 2, 64, 512, 0.5, &b[2]));
    EXPECT_OK(bb_budget_block_init(&o, "blk.1.ffn_up.weight", 3, 256, 512, 0.2, &b[3]));
    EXPECT(!b[0].fortress && b[1].fortress && b[2].fortress && !b[3].fortress, "fortress patterns");
    EXPECT(b[1].n == 1 && b[1].c[0].type == BB_GGML_F16, "fortress: F16 only");
    for (int i = 0; i < 4; i++) synth_distortion(&b[i], 1.0 + i);
    int ch[4];
    bb_budget_summary s;
    o.target_bits = 7;
    EXPECT_OK(bb_budget_assign(&o, b, 4, ch, &s));
    EXPECT(b[1].c[ch[1]].bits == 16 && b[2].c[ch[2]].bits == 16 && s.total <= s.budget,
           "fortress kept at 16 and counted");
    /* Cheapest: the two fortress blocks at 16 plus Q2_K elsewhere = (2*16 + 5*2.625)/7 bits per weight. */
    o.target_bits = 5.5;
    EXPECT_ERR(bb_budget_assign(&o, b, 4, ch, &s), BB_ERR_CONFIG, "below the smallest achievable average, 6.4464");
    bb_budget_opts_default(&o);
    o.target_bits = 2.5;
    bb_budget_block q;
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_q.weight", 0, 64, 512, 0.9, &q));
    EXPECT_ERR(bb_budget_assign(&o, &q, 1, ch, &s), BB_ERR_CONFIG, "budget.target_bits = 2.5 is below");
    o.target_bits = 4;
    strcpy(o.policy, "greedy");
    EXPECT_ERR(bb_budget_assign(&o, &q, 1, ch, &s), BB_ERR_CONFIG, "budget.policy \"greedy\" is unknown");
    strcpy(o.policy, "optimal");
    bb_budget_block two[2] = {q, q};
    EXPECT_ERR(bb_budget_assign(&o, two, 2, ch, &s), BB_ERR_ARG, "share the key 0");
}

/* Measured distortions of a real layer (RTN with diag-H importance) fall with the width. */
static void test_measure(void) {
    const int64_t rows = 16, cols = 256, samples = 512;
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * samples * cols),
          *h = malloc(sizeof(float) * cols * cols);
    bb_rng_fill_normal(bb_rng_make(5, 1), 0, (size_t)(rows * cols), w);
    bb_rng_fill_normal(bb_rng_make(5, 2), 0, (size_t)(samples * cols), x);
    const bb_linalg_backend *cpu;
    bb_linalg_backend_get("cpu", &cpu);
    cpu->syrk(BB_UPLO_FULL, cols, samples, 1.0f, x, cols, 0.0f, h, cols);
    bb_budget_opts o;
    bb_budget_opts_default(&o);
    bb_budget_block b;
    EXPECT_OK(bb_budget_block_init(&o, "blk.0.attn_q.weight", 0, rows, cols, 1, &b));
    const bb_quantizer *qz;
    EXPECT_OK(bb_quant_get("rtn", &qz));
    bb_quant_opts q;
    bb_quant_opts_default(&q);
    bb_quant_input in = {"blk.0.attn_q.weight", rows, cols, w, h, NULL, NULL};
    EXPECT_OK(bb_budget_block_measure(&b, qz, &q, &in));
    for (int i = 1; i < b.n; i++)
        EXPECT(b.c[i].distortion < b.c[i - 1].distortion, "%d bits: D %.4g not below %d bits: %.4g", b.c[i].bits,
               b.c[i].distortion, b.c[i - 1].bits, b.c[i - 1].distortion);
    in.rows = 8;
    EXPECT_ERR(bb_budget_block_measure(&b, qz, &q, &in), BB_ERR_ARG, "budget table is for (16, 256)");
    free(w);
    free(x);
    free(h);
}

int main(void) {
    TEST_RUN(test_types_and_costs);
    TEST_RUN(test_alpha_and_config);
    TEST_RUN(test_lagrange);
    TEST_RUN(test_lagrange_near_optimal);
    TEST_RUN(test_deterministic);
    TEST_RUN(test_seed);
    TEST_RUN(test_fortress_and_errors);
    TEST_RUN(test_optimal_alias);
    TEST_RUN(test_fortress_top);
    TEST_RUN(test_measure);
    return TEST_DONE();
}
