/* cmd_eval.c — `birdbone eval`: perplexity (llama.cpp's method) and KL-divergence. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/file.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "io/tokens.h"
#include "model/eval.h"

bb_status bb_tokenizer_open_for_model(const bb_model *m, const char *path, bb_tokenizer **out);

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone eval MODEL (--text FILE | --tokens FILE) [options]\n\n"
               "Perplexity exactly as llama.cpp's llama-perplexity computes it (the whole text tokenized\n"
               "once with a leading BOS, non-overlapping windows of n_ctx tokens with BOS first, the second\n"
               "half of each window scored), and KL-divergence against a reference.\n"
               "  --text FILE          evaluation text (tokenized with the model's tokenizer)\n"
               "  --tokens FILE        a birdbone token file instead of text\n"
               "  --tokenizer PATH     tokenizer (default: found beside the model)\n"
               "  --n-ctx N            window length (default 512)\n"
               "  --max-windows N      evaluate at most N windows (default: all)\n"
               "  --save-ref FILE      save this model's log-probabilities as a KLD reference\n"
               "  --ref FILE           compare against a saved reference: mean/p99 KLD, top-1, ln(PPL ratio)\n");
}

static bb_status load_tokens(const bb_model *m, const char *text_path, const char *tok_file, const char *tokenizer,
                             bb_tokens *t) {
    if (tok_file) return bb_tokens_read(tok_file, m->cfg.vocab_size, t);
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(text_path, (size_t)1 << 32, &text, &len));
    BB_CHECK(len > 0, BB_ERR_ARG, "%s is empty: nothing to evaluate", text_path);
    bb_tokenizer *tok = NULL;
    bb_status st = bb_tokenizer_open_for_model(m, tokenizer, &tok);
    int *ids = NULL, n = 0;
    if (st == BB_OK) st = bb_tokenizer_encode(tok, text, 1, 0, &ids, &n);
    bb_tokenizer_destroy(&tok);
    free(text);
    BB_CALL(st);
    memset(t, 0, sizeof *t);
    t->ids = ids;
    t->n = n;
    t->n_seq = n;
    t->vocab_size = m->cfg.vocab_size;
    return BB_OK;
}

static bb_status run(const char *model, const char *text, const char *tokens, const char *tokenizer, int n_ctx,
                     int max_windows, const char *save_ref, const char *ref_path) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    bb_tokens t = {0};
    bb_logprobs save = {0}, ref = {0};
    bb_status st;
    BB_CALL_GOTO(st, out, bb_model_open(model, &m));
    BB_CALL_GOTO(st, out, load_tokens(m, text, tokens, tokenizer, &t));
    if (ref_path) BB_CALL_GOTO(st, out, bb_logprobs_read(ref_path, &ref));
    BB_CALL_GOTO(st, out, bb_forward_create(m, n_ctx, &f));
    bb_ppl_opts o = {.n_ctx = n_ctx, .max_windows = max_windows, .bos_id = m->cfg.bos_id};
    bb_ppl_result r;
    bb_kld_result k;
    BB_CALL_GOTO(st, out, bb_eval_perplexity(f, t.ids, t.n, &o, &r, save_ref ? &save : NULL, ref_path ? &ref : NULL, &k));
    printf("PPL = %.4f +/- %.4f   (n_ctx %d, %d windows, %lld tokens scored of %lld, %s)\n", r.ppl, r.ppl_err,
           r.n_ctx, r.n_windows, (long long)r.n_scored, (long long)r.n_tokens, text ? text : tokens);
    if (ref_path)
        printf("KLD mean %.6f  p99 %.6f  max %.6f   top-1 %.4f   ln(PPL/PPL_ref) %.6f   (%lld positions)\n",
               k.kld_mean, k.kld_p99, k.kld_max, k.top1, k.ln_ppl_ratio, (long long)k.n_pos);
    if (save_ref) {
        BB_CALL_GOTO(st, out, bb_logprobs_write(save_ref, &save));
        printf("reference log-probabilities saved to %s\n", save_ref);
    }
out:
    bb_logprobs_free(&save);
    bb_logprobs_free(&ref);
    bb_tokens_free(&t);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    return st;
}

int bb_cmd_eval(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *tokens = NULL, *tokenizer = NULL, *save_ref = NULL, *ref = NULL;
    int n_ctx = 512, max_windows = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--text") && has) text = argv[++i];
        else if (!strcmp(a, "--tokens") && has) tokens = argv[++i];
        else if (!strcmp(a, "--tokenizer") && has) tokenizer = argv[++i];
        else if (!strcmp(a, "--save-ref") && has) save_ref = argv[++i];
        else if (!strcmp(a, "--ref") && has) ref = argv[++i];
        else if (!strcmp(a, "--n-ctx") && has) n_ctx = atoi(argv[++i]);
        else if (!strcmp(a, "--max-windows") && has) max_windows = atoi(argv[++i]);
        else if (a[0] != '-' && !model) model = a;
        else {
            fprintf(stderr, "error: unknown or incomplete argument '%s' (see birdbone eval --help)\n", a);
            return 2;
        }
    }
    if (!model || (!text == !tokens)) {
        fprintf(stderr, "error: eval needs a MODEL and exactly one of --text or --tokens (see birdbone eval --help)\n");
        return 2;
    }
    return run(model, text, tokens, tokenizer, n_ctx, max_windows, save_ref, ref) == BB_OK ? 0 : 1;
}
