/* test_plan.c — the layer-sharding plan: coverage, optimal bottleneck (against brute force), balance bound, N = 1,
 * N > layers, a one-layer model and the 70B shapes. */
#include "mpi/plan.h"
#include "test.h"

/* The item costs per token, written out from the formulas in plan.h. */
static void costs_by_hand(const bb_model_config *c, int seq_len, double *emb, double *blk, double *head) {
    double d = c->dim, h = c->hidden_dim, q = (double)c->n_heads * c->head_dim,
           kv = (double)c->n_kv_heads * c->head_dim;
    *emb = d;
    *blk = d * q + 2 * d * kv + q * d + 3 * d * h + (2 * d * d + q * q + h * h) / 2 + q * (seq_len + 1);
    *head = d * c->vocab_size + d;
}

/* Smallest possible max group cost over every cut of items [i, n) into <= g groups. */
static double brute(const double *cost, int i, int n, int g) {
    if (i == n) return 0;
    if (g == 0) return 1e300;
    double best = 1e300, s = 0;
    for (int j = i; j < n; j++) {
        s += cost[j];
        double rest = brute(cost, j + 1, n, g - 1), m = s > rest ? s : rest;
        if (m < best) best = m;
    }
    return best;
}

static bb_model_config cfg_of(int L, int dim, int hidden, int heads, int kv, int vocab, int tied) {
    bb_model_config c = {0};
    c.n_layers = L, c.dim = dim, c.hidden_dim = hidden, c.n_heads = heads, c.n_kv_heads = kv;
    c.head_dim = dim / heads, c.vocab_size = vocab, c.tied_embeddings = tied, c.max_seq_len = 1024;
    return c;
}

/* Invariants every plan must meet. */
static void check_shape(const bb_plan *p, const bb_model_config *c, int N) {
    EXPECT(p->n_ranks == N && p->n_active >= 1 && p->n_active <= N, "N %d: %d active", N, p->n_active);
    EXPECT(p->ranks[0].embed && p->ranks[p->n_active - 1].head, "N %d: embedding on 0, head on the last active", N);
    int next = 0, embeds = 0, heads = 0;
    for (int r = 0; r < N; r++) {
        const bb_plan_rank *pr = &p->ranks[r];
        embeds += pr->embed, heads += pr->head;
        EXPECT(pr->active == (r < p->n_active), "N %d rank %d active %d", N, r, pr->active);
        if (pr->layer_end > pr->layer_begin) {
            EXPECT(pr->layer_begin == next, "N %d rank %d starts at %d, expected %d", N, r, pr->layer_begin, next);
            next = pr->layer_end;
        }
        for (int l = pr->layer_begin; l < pr->layer_end; l++) EXPECT(bb_plan_owner(p, l) == r, "owner of %d", l);
        if (!pr->active) EXPECT(pr->memory_bytes == 0 && pr->cost == 0, "idle rank %d has work", r);
    }
    EXPECT(next == c->n_layers && embeds == 1 && heads == 1, "N %d: layers covered to %d, %d embeds, %d heads", N, next,
           embeds, heads);
    EXPECT(bb_plan_next(p, p->n_active - 1) == -1 && bb_plan_prev(p, 0) == -1 &&
               bb_plan_head_rank(p) == p->n_active - 1,
           "pipeline ends");
    if (p->n_active > 1) EXPECT(bb_plan_next(p, 0) == 1 && bb_plan_prev(p, 1) == 0, "pipeline order");
}

static void test_small_vs_brute_force(void) {
    bb_plan_opts o = {.tokens = 1000, .seq_len = 64, .micro_batch = 2, .in_flight = 2, .gram_bytes = 4};
    int shapes[][6] = {
        {5, 64, 172, 8, 4, 512}, {4, 128, 352, 4, 2, 32000}, {7, 96, 256, 4, 4, 100}, {1, 64, 128, 4, 4, 50}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int *sh = shapes[s];
        bb_model_config c = cfg_of(sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], (int)(s & 1));
        double e, b, h, cost[16];
        costs_by_hand(&c, o.seq_len, &e, &b, &h);
        int n = c.n_layers + 2;
        cost[0] = e, cost[n - 1] = h;
        for (int i = 1; i <= c.n_layers; i++) cost[i] = b;
        double total = e + h + b * c.n_layers;
        for (int N = 1; N <= n + 3; N++) {
            bb_plan p;
            EXPECT_OK(bb_plan_make(&c, &o, N, &p));
            if (!p.ranks) continue;
            check_shape(&p, &c, N);
            double opt = brute(cost, 0, n, N);
            EXPECT(p.max_cost == opt * (double)o.tokens, "L %d N %d: bottleneck %.0f, brute force %.0f", c.n_layers, N,
                   p.max_cost, opt * (double)o.tokens);
            EXPECT(fabs(p.total_cost - total * (double)o.tokens) <= 1e-9 * p.total_cost, "total %.0f vs %.0f",
                   p.total_cost, total * (double)o.tokens);
            double shares = 0;
            for (int r = 0; r < N; r++) shares += p.ranks[r].share;
            EXPECT_NEAR(shares, 1.0, 1e-12);
            bb_plan_free(&p);
        }
    }
}

static void test_one_rank(void) {
    bb_model_config c = cfg_of(5, 64, 172, 8, 4, 512, 1);
    bb_plan_opts o = {.tokens = 512, .seq_len = 256, .micro_batch = 4, .in_flight = 2, .gram_bytes = 4};
    bb_plan p;
    EXPECT_OK(bb_plan_make(&c, &o, 1, &p));
    if (!p.ranks) return;
    const bb_plan_rank *r = &p.ranks[0];
    EXPECT(r->layer_begin == 0 && r->layer_end == 5 && r->embed && r->head && p.n_active == 1 && r->share == 1.0,
           "N = 1 must give everything to rank 0: [%d, %d) share %g", r->layer_begin, r->layer_end, r->share);
    /* tied: embedding once; per block 4*64*64 + 2*64*32 + 3*64*172 + 2*64 (norms), + final norm */
    int64_t want = 512 * 64 + 5 * (int64_t)(2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172 + 128) + 64;
    EXPECT(r->params == want, "params %lld, expected %lld", (long long)r->params, (long long)want);
    EXPECT(r->weight_bytes == 4 * want, "weight bytes");
    /* 2 buffers of 4 (4*256 rows * 64 + 1) bytes; logits 4 * 1024 * 512 are in the work column */
    EXPECT(r->buffer_bytes == 2 * 4 * (1024 * 64 + 1), "buffers %lld", (long long)r->buffer_bytes);
    EXPECT(r->work_bytes >= 4ll * 1024 * 512 && r->gram_bytes > 0, "work %lld, grams %lld", (long long)r->work_bytes,
           (long long)r->gram_bytes);
    FILE *f = tmpfile();
    bb_plan_print(&p, f);
    rewind(f);
    char buf[4096] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    EXPECT(n > 0 && strstr(buf, "0-4") && strstr(buf, "embed+head") && strstr(buf, "100.00%"), "table:\n%s", buf);
    bb_plan_free(&p);
}

static void test_more_ranks_than_layers(void) {
    bb_model_config c = cfg_of(4, 128, 352, 4, 2, 256, 0);
    bb_plan_opts o = {.tokens = 100, .seq_len = 32, .micro_batch = 1, .in_flight = 2, .gram_bytes = 0};
    for (int N = 5; N <= 12; N++) {
        bb_plan p;
        EXPECT_OK(bb_plan_make(&c, &o, N, &p));
        if (!p.ranks) continue;
        check_shape(&p, &c, N);
        EXPECT(p.n_active <= 6, "N %d: %d active ranks for 6 items", N, p.n_active);
        for (int r = 0; r < p.n_active; r++)
            EXPECT(p.ranks[r].layer_end - p.ranks[r].layer_begin <= 1, "N %d rank %d holds %d blocks", N, r,
                   p.ranks[r].layer_end - p.ranks[r].layer_begin);
        bb_plan_free(&p);
    }
    bb_model_config one = cfg_of(1, 64, 128, 4, 4, 50, 1);
    for (int N = 1; N <= 4; N++) {
        bb_plan p;
        EXPECT_OK(bb_plan_make(&one, &o, N, &p));
        if (!p.ranks) continue;
        check_shape(&p, &one, N);
        bb_plan_free(&p);
    }
}

static void test_70b(void) {
    /* Llama-2-70B: 68,976,648,192 parameters (Meta's model card: 70B; HF: 68.98B). */
    bb_model_config c = cfg_of(80, 8192, 28672, 64, 8, 32000, 0);
    bb_model_config c3 = cfg_of(80, 8192, 28672, 64, 8, 128256, 0);
    bb_plan_opts o = {.tokens = 128 * 2048, .seq_len = 2048, .micro_batch = 1, .in_flight = 2, .gram_bytes = 4};
    int Ns[] = {1, 2, 3, 4, 7, 8, 16, 32, 64, 80, 81, 82, 100};
    for (size_t i = 0; i < sizeof Ns / sizeof Ns[0]; i++) {
        int N = Ns[i];
        for (int v = 0; v < 2; v++) {
            const bb_model_config *cc = v ? &c3 : &c;
            bb_plan p;
            EXPECT_OK(bb_plan_make(cc, &o, N, &p));
            if (!p.ranks) continue;
            check_shape(&p, cc, N);
            double e, b, h;
            costs_by_hand(cc, o.seq_len, &e, &b, &h);
            double mx = (b > h ? b : h) * (double)o.tokens;
            /* no cut can beat the even share; the greedy bound is an even share plus one item */
            EXPECT(p.max_cost >= p.total_cost / N * (1 - 1e-12) && p.max_cost <= p.total_cost / N + mx,
                   "N %d: bottleneck %.4g, even %.4g, item %.4g", N, p.max_cost, p.total_cost / N, mx);
            int64_t params = 0;
            for (int r = 0; r < N; r++) params += p.ranks[r].params;
            if (!v) EXPECT(params == 68976648192ll, "70B: %lld parameters over the ranks", (long long)params);
            if (N == 4 && !v) {
                /* 80 equal blocks, a classifier of 0.19 block: 20 blocks each, the head on rank 3 */
                for (int r = 0; r < 4; r++)
                    EXPECT(p.ranks[r].layer_begin == 20 * r && p.ranks[r].layer_end == 20 * r + 20, "rank %d [%d, %d)",
                           r, p.ranks[r].layer_begin, p.ranks[r].layer_end);
                bb_plan_print(&p, stdout);
            }
            if (N == 82 && v) {
                /* Llama-3: the classifier (1.05e9 MACs/token) costs more than a block, so it gets a rank of its own */
                EXPECT(p.ranks[p.n_active - 1].layer_end == p.ranks[p.n_active - 1].layer_begin,
                       "llama3-70b on 82 ranks: the head rank also holds blocks");
            }
            bb_plan_free(&p);
        }
    }
}

static void test_bad_args(void) {
    bb_model_config c = cfg_of(4, 128, 352, 4, 2, 256, 0);
    bb_plan_opts o = {.tokens = 100, .seq_len = 32, .micro_batch = 1, .in_flight = 2, .gram_bytes = 0};
    bb_plan p;
    EXPECT_ERR(bb_plan_make(&c, &o, 0, &p), BB_ERR_ARG, "at least one rank");
    o.in_flight = 0;
    EXPECT_ERR(bb_plan_make(&c, &o, 2, &p), BB_ERR_ARG, "in_flight 0");
    o.in_flight = 2, o.gram_bytes = 3;
    EXPECT_ERR(bb_plan_make(&c, &o, 2, &p), BB_ERR_ARG, "gram_bytes 3");
    bb_plan_free(&p);
    bb_plan_free(NULL);
}

int main(void) {
    TEST_RUN(test_small_vs_brute_force);
    TEST_RUN(test_one_rank);
    TEST_RUN(test_more_ranks_than_layers);
    TEST_RUN(test_70b);
    TEST_RUN(test_bad_args);
    return TEST_DONE();
}
