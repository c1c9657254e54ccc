/* test_pipe.c — the pipelined forward over ranks (unit.pipe on one process, mpi.pipe_N under mpiexec): calibration
 * statistics and perplexity/KLD bit-identical to the single-process bb_calib_run and bb_eval_perplexity, which every
 * rank also computes locally as the reference; idle ranks; micro-batches in flight 1..3.
 *   test_pipe --inject MODEL: a pipelined calibration that a BB_INJECT_FAIL rank breaks (exit 3 on the agreed error).
 */
#include "core/file.h"
#include "core/log.h"
#include "core/rng.h"
#include "io/tokenizer.h"
#include "mpi/pipe.h"
#include "test.h"

static bb_dist D;

typedef struct {
    int32_t *flat; /* the text's tokens (evaluation) */
    int64_t n;
    bb_tokens win; /* calibration windows */
} token_set;

/* Tokens for path: calib.txt tokenized for stories260K, Philox ids for synthetic models. */
static int make_tokens(const bb_model *m, int n_windows, int seq_len, token_set *ts) {
    memset(ts, 0, sizeof *ts);
    bb_tokens flat = {0};
    int *ids = NULL, n = 0;
    if (!strncmp(m->path, "synthetic:", 10)) {
        n = 4096;
        ids = malloc(sizeof(int) * (size_t)n);
        bb_rng r = bb_rng_make(99, bb_rng_stream_id("test.pipe"));
        for (int i = 0; i < n; i++) ids[i] = (int)(bb_rng_u64(r, (uint64_t)i) % (uint64_t)m->cfg.vocab_size);
    } else {
        char tpath[1200];
        snprintf(tpath, sizeof tpath, "%s/data/tinystories/calib.txt", test_shared());
        bb_tokenizer *tok = NULL;
        char *text = NULL;
        size_t len;
        EXPECT_OK(bb_tokenizer_open_for_model(m, NULL, &tok));
        EXPECT_OK(bb_file_read_all(tpath, 1 << 26, &text, &len));
        if (tok && text) EXPECT_OK(bb_tokenizer_encode(tok, text, 1, 0, &ids, &n));
        free(text);
        bb_tokenizer_destroy(&tok);
        if (!ids) return -1;
    }
    flat.ids = ids;
    flat.n = flat.n_seq = n;
    flat.vocab_size = m->cfg.vocab_size;
    EXPECT_OK(bb_calib_sample_windows(&flat, n_windows, seq_len, 1234, m->cfg.bos_id, &ts->win));
    ts->flat = ids;
    ts->n = n;
    return ts->win.ids ? 0 : -1;
}

static int same_stat(const bb_calib_stat *a, const bb_calib_stat *b) {
    int64_t n = a->in_features;
    return a->in_features == b->in_features && a->n_tokens == b->n_tokens &&
           a->n_rows_nonfinite == b->n_rows_nonfinite && !memcmp(a->gram, b->gram, sizeof(float) * (size_t)(n * n)) &&
           !memcmp(a->norm, b->norm, sizeof(double) * (size_t)n) &&
           !memcmp(a->mean_abs, b->mean_abs, sizeof(double) * (size_t)n) &&
           !memcmp(a->freq, b->freq, sizeof(double) * (size_t)n);
}

/* One model: the single-process references, then the pipeline with in_flight k. */
static void check_model(const char *path, int n_windows, int seq_len, int micro_batch, const int *ks, int n_ks) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(path, &m));
    if (!m) return;
    token_set ts;
    if (make_tokens(m, n_windows, seq_len, &ts)) {
        EXPECT(0, "no tokens for %s", path);
        bb_model_destroy(&m);
        return;
    }
    /* references */
    bb_forward *f = NULL;
    bb_calib *ref = NULL;
    bb_calib_opts co;
    bb_calib_opts_default(&co);
    EXPECT_OK(bb_forward_create(m, 0, &f));
    EXPECT_OK(bb_calib_create(m, &co, &ref));
    bb_ppl_opts po = {.n_ctx = seq_len, .max_windows = 6, .bos_id = m->cfg.bos_id, .batch = 2};
    bb_ppl_result r_ref, r;
    bb_kld_result k_ref, k;
    bb_logprobs lp = {0}, lp_pipe = {0};
    if (f && ref) {
        EXPECT_OK(bb_calib_run(ref, f, &ts.win, micro_batch));
        EXPECT_OK(bb_eval_perplexity(f, ts.flat, ts.n, &po, &r_ref, &lp, NULL, NULL));
        /* KLD against itself is 0: perturb nothing, compare the full result bitwise instead */
        EXPECT_OK(bb_eval_perplexity(f, ts.flat, ts.n, &po, &r_ref, NULL, &lp, &k_ref));
    }
    bb_plan_opts plo = {.tokens = (int64_t)ts.win.n_seq * seq_len,
                        .seq_len = seq_len,
                        .micro_batch = micro_batch,
                        .in_flight = 2,
                        .gram_bytes = 4};
    bb_plan plan;
    EXPECT_OK(bb_plan_make(&m->cfg, &plo, D.size, &plan));
    if (D.rank == 0 && plan.ranks) bb_plan_print(&plan, stdout);
    for (int ik = 0; ik < n_ks && plan.ranks && f && ref; ik++) {
        int kf = ks[ik];
        bb_pipe *p = NULL;
        bb_calib *c = NULL;
        EXPECT_OK(bb_pipe_create(&D, m, &plan, 0, kf, &p));
        if (!p) break;
        EXPECT_OK(bb_pipe_calib_create(p, &co, &c));
        const bb_plan_rank *pr = bb_pipe_rank(p);
        EXPECT((c != NULL) == (pr->layer_end > pr->layer_begin), "rank %d: collector without blocks", D.rank);
        EXPECT_OK(bb_pipe_calib_run(p, c, &ts.win, micro_batch));
        int same = 1, checked = 0;
        for (int l = pr->layer_begin; c && l < pr->layer_end; l++)
            for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
                const bb_calib_stat *a = NULL, *b = NULL;
                EXPECT_OK(bb_calib_stats_input(c, l, (bb_calib_input)i, &a));
                EXPECT_OK(bb_calib_stats_input(ref, l, (bb_calib_input)i, &b));
                if (a && b) same &= same_stat(a, b), checked++;
            }
        EXPECT(same && checked == BB_CALIB_INPUT_COUNT * (pr->layer_end - pr->layer_begin),
               "%s, %d ranks, k %d: rank %d's statistics of layers [%d, %d) differ from bb_calib_run's (%d checked)",
               path, D.size, kf, D.rank, pr->layer_begin, pr->layer_end, checked);
        bb_calib_destroy(&c);
        bb_pipe_destroy(&p);

        EXPECT_OK(bb_pipe_create(&D, m, &plan, 1, kf, &p));
        if (!p) break;
        EXPECT_OK(bb_pipe_eval_perplexity(p, ts.flat, ts.n, &po, &r, &lp_pipe, &lp, &k));
        EXPECT(!memcmp(&r, &r_ref, sizeof r), "%s, %d ranks, k %d: PPL %.17g (n %lld) vs %.17g (n %lld)", path, D.size,
               kf, r.ppl, (long long)r.n_scored, r_ref.ppl, (long long)r_ref.n_scored);
        EXPECT(!memcmp(&k, &k_ref, sizeof k), "%s: KLD mean %.17g vs %.17g, top1 %g vs %g", path, k.kld_mean,
               k_ref.kld_mean, k.top1, k_ref.top1);
        int head = pr->active && pr->head;
        EXPECT(head ? (lp_pipe.n_pos == lp.n_pos &&
                       !memcmp(lp_pipe.logp, lp.logp, sizeof(float) * (size_t)lp.n_pos * (size_t)lp.vocab))
                    : lp_pipe.logp == NULL,
               "rank %d: saved log-probabilities", D.rank);
        if (D.rank == 0 && ik == 0)
            printf("%s on %d ranks: PPL %.6f over %d windows, calibration %d x %d tokens: bit-identical\n", path,
                   D.size, r.ppl, r.n_windows, ts.win.n_seq, seq_len);
        bb_logprobs_free(&lp_pipe);
        bb_pipe_destroy(&p);
    }
    /* a plan for another rank count is refused on every rank */
    bb_plan other;
    if (bb_plan_make(&m->cfg, &plo, D.size + 1, &other) == BB_OK) {
        bb_pipe *p = NULL;
        EXPECT_ERR(bb_pipe_create(&D, m, &other, 1, 2, &p), BB_ERR_ARG, "the sharding plan is for");
        bb_plan_free(&other);
    }
    bb_plan_free(&plan);
    bb_logprobs_free(&lp);
    bb_calib_destroy(&ref);
    bb_forward_destroy(&f);
    bb_tokens_free(&ts.win);
    free(ts.flat);
    bb_model_destroy(&m);
}

static void test_synthetic(void) {
    int ks[] = {2, 1, 3};
    check_model("synthetic:tiny", 7, 32, 2, ks, 3);
}

static void test_one_layer_idle_ranks(void) {
    int ks[] = {2};
    check_model("synthetic:tiny,layers=1", 5, 16, 2, ks, 1);
}

static void test_stories260k(void) {
    char path[1200];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", test_shared());
    int ks[] = {2};
    check_model(path, 6, 128, 4, ks, 1);
}

/* The failure path: a pipelined calibration on every rank; BB_INJECT_FAIL breaks one. */
static int run_inject(const char *path) {
    bb_model *m = NULL;
    bb_pipe *p = NULL;
    bb_calib *c = NULL;
    bb_plan plan = {0};
    token_set ts = {0};
    bb_calib_opts co;
    bb_calib_opts_default(&co);
    bb_status st = bb_model_open(path, &m);
    if (st == BB_OK && make_tokens(m, 4, 16, &ts)) st = BB_ERR_INTERNAL;
    bb_plan_opts plo = {.tokens = 64, .seq_len = 16, .micro_batch = 1, .in_flight = 2, .gram_bytes = 4};
    if (st == BB_OK) st = bb_plan_make(&m->cfg, &plo, D.size, &plan);
    if (st == BB_OK) st = bb_pipe_create(&D, m, &plan, 0, 2, &p);
    if (st == BB_OK) st = bb_pipe_calib_create(p, &co, &c);
    if (st == BB_OK) st = bb_pipe_calib_run(p, c, &ts.win, 1);
    if (st == BB_OK && D.rank == 0) printf("pipelined calibration finished\n");
    bb_calib_destroy(&c);
    bb_pipe_destroy(&p);
    bb_plan_free(&plan);
    bb_tokens_free(&ts.win);
    free(ts.flat);
    bb_model_destroy(&m);
    bb_dist_finalize(&D);
    return st == BB_OK ? 0 : 3;
}

int main(int argc, char **argv) {
    if (bb_dist_init(&argc, &argv, &D) != BB_OK) return 1;
    if (argc == 3 && !strcmp(argv[1], "--inject")) return run_inject(argv[2]);
    TEST_RUN(test_synthetic);
    TEST_RUN(test_one_layer_idle_ranks);
    TEST_RUN(test_stories260k);
    int mine = test_failures_, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, D.comm);
    if (D.rank == 0) EXPECT(total == mine, "%d failures on other ranks", total - mine);
    bb_dist_finalize(&D);
    return TEST_DONE();
}
