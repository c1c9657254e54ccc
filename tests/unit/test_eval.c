/* test_eval.c — perplexity by llama.cpp's method on stories260K (against the
 * number llama.cpp itself prints), window scoring against a direct reference,
 * KLD invariants, log-probability files, and bad input. */
#include <math.h>

#include "core/file.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "model/eval.h"
#include "test.h"

static bb_model *model;
static int *ids, n_ids;

static int setup(void) {
    char path[1024], text_path[1024];
    snprintf(path, sizeof path, "%s/data/stories260K/stories260K.bin", test_shared());
    snprintf(text_path, sizeof text_path, "%s/data/tinystories/dev.txt", test_shared());
    if (bb_model_open(path, &model) != BB_OK) return -1;
    bb_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len;
    if (bb_tokenizer_open_for_model(model, NULL, &tok) != BB_OK) return -1;
    if (bb_file_read_all(text_path, 1 << 24, &text, &len) != BB_OK) return -1;
    bb_status st = bb_tokenizer_encode(tok, text, 1, 0, &ids, &n_ids);
    free(text);
    bb_tokenizer_destroy(&tok);
    return st == BB_OK ? 0 : -1;
}

/* Direct reference: each window through the KV-cached decode path, token by token,
 * with the double-precision log-softmax. */
static double ref_nll(bb_forward *f, int T, int nw, int64_t *count) {
    double nll = 0;
    float *lg = malloc(sizeof(float) * (size_t)model->cfg.vocab_size);
    double *ls = malloc(sizeof(double) * (size_t)model->cfg.vocab_size);
    *count = 0;
    for (int w = 0; w < nw; w++) {
        for (int j = 0; j < T - 1; j++) {
            int tok = j == 0 ? model->cfg.bos_id : ids[w * T + j];
            if (bb_forward_decode(f, &tok, 1, j, lg) != BB_OK) return NAN;
            if (j < T / 2) continue;
            bb_log_softmax_ref(lg, model->cfg.vocab_size, ls);
            nll -= ls[ids[w * T + j + 1]];
            (*count)++;
        }
    }
    free(lg);
    free(ls);
    return nll / (double)*count;
}

static void test_windows_match_reference(void) {
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 128, &f));
    if (!f) return;
    bb_ppl_opts o = {.n_ctx = 128, .max_windows = 6, .bos_id = model->cfg.bos_id, .batch = 4};
    bb_ppl_result r;
    EXPECT_OK(bb_eval_perplexity(f, ids, n_ids, &o, &r, NULL, NULL, NULL));
    int64_t count;
    double nll = ref_nll(f, 128, 6, &count);
    EXPECT(r.n_scored == count && count == 6 * 63, "scored %lld, reference %lld", (long long)r.n_scored,
           (long long)count);
    EXPECT(fabs(r.nll_mean - nll) <= 1e-5 * fabs(nll), "mean NLL %.9f vs reference %.9f", r.nll_mean, nll);
    bb_forward_destroy(&f);
}

static void test_kld_invariants(void) {
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 64, &f));
    if (!f) return;
    bb_ppl_opts o = {.n_ctx = 64, .max_windows = 8, .bos_id = model->cfg.bos_id};
    bb_ppl_result r, r2;
    bb_logprobs lp = {0}, back = {0};
    bb_kld_result k;
    EXPECT_OK(bb_eval_perplexity(f, ids, n_ids, &o, &r, &lp, NULL, NULL));
    char path[1024];
    snprintf(path, sizeof path, "%s/eval_ref.bblp", test_tmpdir());
    EXPECT_OK(bb_logprobs_write(path, &lp));
    EXPECT_OK(bb_logprobs_read(path, &back));
    EXPECT(back.n_pos == lp.n_pos && !memcmp(back.logp, lp.logp, sizeof(float) * (size_t)lp.n_pos * lp.vocab),
           "log-prob file round trip");
    /* stored as f32: a self-comparison is zero up to float rounding of the log-probs */
    EXPECT_OK(bb_eval_perplexity(f, ids, n_ids, &o, &r2, NULL, &back, &k));
    EXPECT(k.kld_mean < 1e-6 && k.top1 == 1.0 && fabs(k.ln_ppl_ratio) < 1e-6, "self KLD %g top1 %g", k.kld_mean, k.top1);
    /* another windowing is refused */
    o.max_windows = 4;
    EXPECT_ERR(bb_eval_perplexity(f, ids, n_ids, &o, &r2, NULL, &back, &k), BB_ERR_ARG, "reference log-probabilities");
    /* shifted tokens: a different model of the text gives a positive KLD */
    o.max_windows = 8;
    bb_logprobs shifted = back;
    shifted.logp = malloc(sizeof(float) * (size_t)back.n_pos * back.vocab);
    for (int64_t p = 0; p < back.n_pos; p++)
        for (int v = 0; v < back.vocab; v++)
            shifted.logp[p * back.vocab + v] = back.logp[p * back.vocab + (v + 1) % back.vocab];
    EXPECT_OK(bb_eval_perplexity(f, ids, n_ids, &o, &r2, NULL, &shifted, &k));
    EXPECT(k.kld_mean > 0.1 && k.kld_p99 >= k.kld_mean && k.top1 < 0.5, "shifted KLD %g p99 %g top1 %g", k.kld_mean,
           k.kld_p99, k.top1);
    free(shifted.logp);
    /* a truncated file is refused */
    bb_mapped_file mf;
    EXPECT_OK(bb_file_map(path, &mf));
    char tpath[1100];
    snprintf(tpath, sizeof tpath, "%s.trunc", path);
    test_write_file(tpath, mf.data, mf.size - 7);
    bb_file_unmap(&mf);
    bb_logprobs bad;
    EXPECT_ERR(bb_logprobs_read(tpath, &bad), BB_ERR_FORMAT, "truncated");
    bb_logprobs_free(&lp);
    bb_logprobs_free(&back);
    bb_forward_destroy(&f);
}

static void test_bad_input(void) {
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 0, &f));
    if (!f) return;
    bb_ppl_opts o = {.n_ctx = 1024, .bos_id = 1};
    bb_ppl_result r;
    EXPECT_ERR(bb_eval_perplexity(f, ids, n_ids, &o, &r, NULL, NULL, NULL), BB_ERR_ARG, "exceeds the model's context");
    o.n_ctx = 512;
    EXPECT_ERR(bb_eval_perplexity(f, ids, 100, &o, &r, NULL, NULL, NULL), BB_ERR_ARG, "fewer than one window");
    bb_forward_destroy(&f);
}

/* The full dev.txt at n_ctx 512: llama.cpp (build c392e50) prints 5.1990 +/- 0.0505 over 227 windows. */
static void test_llama_cpp_number(void) {
    if (getenv("BB_SKIP_SLOW")) {
        printf("  (skipped: BB_SKIP_SLOW)\n");
        return;
    }
    bb_forward *f = NULL;
    EXPECT_OK(bb_forward_create(model, 512, &f));
    if (!f) return;
    bb_ppl_opts o = {.n_ctx = 512, .bos_id = model->cfg.bos_id};
    bb_ppl_result r;
    EXPECT_OK(bb_eval_perplexity(f, ids, n_ids, &o, &r, NULL, NULL, NULL));
    printf("  stories260K dev.txt n_ctx 512: PPL %.4f +/- %.4f over %d windows (llama.cpp: 5.1990 +/- 0.0505, 227)\n",
           r.ppl, r.ppl_err, r.n_windows);
    EXPECT(r.n_windows == 227, "windows %d", r.n_windows);
    EXPECT_NEAR(r.ppl, 5.1990, 0.002);
    EXPECT_NEAR(r.ppl_err, 0.0505, 0.0005);
    bb_forward_destroy(&f);
}

int main(void) {
    if (setup() != 0) {
        fprintf(stderr, "setup failed: %s\n", bb_last_error());
        return 1;
    }
    TEST_RUN(test_windows_match_reference);
    TEST_RUN(test_kld_invariants);
    TEST_RUN(test_bad_input);
    TEST_RUN(test_llama_cpp_number);
    free(ids);
    bb_model_destroy(&model);
    return TEST_DONE();
}
