/* cmd_eval.c — `birdbone eval`: perplexity (llama.cpp's method), KL-divergence, multiple choice, canaries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/file.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "io/tokens.h"
#include "model/eval.h"
#include "model/tasks.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone eval MODEL [--text FILE | --tokens FILE] [--mc FILE] [--canaries FILE] [options]\n\n"
               "Perplexity exactly as llama.cpp's llama-perplexity computes it (the whole text tokenized\n"
               "once with a leading BOS, non-overlapping windows of n_ctx tokens with BOS first, the second\n"
               "half of each window scored), and KL-divergence against a reference. Task metrics run with\n"
               "or without it (formats and scoring: docs/tasks.md). At least one of --text, --tokens, --mc\n"
               "or --canaries is needed.\n"
               "  --text FILE          evaluation text (tokenized with the model's tokenizer)\n"
               "  --tokens FILE        a birdbone token file instead of text\n"
               "  --tokenizer PATH     tokenizer (default: found beside the model)\n"
               "  --n-ctx N            window length (default 512)\n"
               "  --max-windows N      evaluate at most N windows (default: all)\n"
               "  --save-ref FILE      save this model's log-probabilities as a KLD reference\n"
               "  --ref FILE           compare against a saved reference: mean/p99 KLD, top-1, ln(PPL ratio)\n"
               "  --mc FILE            multiple-choice JSONL (question/choices/answer; HellaSwag and\n"
               "                       query/gold shapes too): acc and acc_norm by log-likelihood\n"
               "  --canaries FILE      JSONL of {\"prompt\", \"expected\"[, \"name\"]}: PASS/FAIL per canary\n"
               "                       by greedy generation (failed canaries do not change the exit status)\n");
}

static bb_status load_tokens(const bb_model *m, const char *text_path, const char *tok_file, const bb_tokenizer *tok,
                             bb_tokens *t) {
    if (tok_file) return bb_tokens_read(tok_file, m->cfg.vocab_size, t);
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(text_path, (size_t)1 << 32, &text, &len));
    BB_CHECK(len > 0, BB_ERR_ARG, "%s is empty: nothing to evaluate", text_path);
    int *ids = NULL, n = 0;
    bb_status st = bb_tokenizer_encode(tok, text, 1, 0, &ids, &n);
    free(text);
    BB_CALL(st);
    memset(t, 0, sizeof *t);
    t->ids = ids;
    t->n = n;
    t->n_seq = n;
    t->vocab_size = m->cfg.vocab_size;
    return BB_OK;
}

/* Up to max bytes of s[0, n) on one line, escaped so that the reader sees exactly what differs. */
static void print_snippet(const char *s, size_t n, size_t max) {
    putchar('"');
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf(n > max ? "\"..." : "\"");
}

static bb_status run_mc(bb_forward *f, const bb_tokenizer *tok, const char *path) {
    bb_mc_set *set = NULL;
    bb_mc_result r = {0};
    bb_status st;
    BB_CALL_GOTO(st, out, bb_tasks_mc_load(path, &set));
    BB_CALL_GOTO(st, out, bb_tasks_mc_score(f, tok, set, NULL, &r));
    printf("MC acc = %.4f +/- %.4f   acc_norm = %.4f +/- %.4f   (%d and %d of %d right, chance %.4f, %lld choice "
           "tokens scored, %s)\n",
           r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr, r.correct, r.correct_norm, r.n, r.chance,
           (long long)r.n_tokens_scored, path);
out:
    bb_tasks_mc_result_free(&r);
    bb_tasks_mc_destroy(&set);
    return st;
}

static bb_status run_canaries(bb_forward *f, const bb_tokenizer *tok, const bb_canary_set *set) {
    bb_canary_result r = {0};
    BB_CALL(bb_tasks_canaries_run(f, tok, set, &r));
    for (int i = 0; i < r.n; i++) {
        const bb_canary *c = &set->items[i];
        const bb_canary_outcome *o = &r.c[i];
        printf("canary %s  %s", o->pass ? "PASS" : "FAIL", c->name);
        if (!o->pass) {
            size_t at = o->diverge, el = strlen(c->expected);
            printf("  (line %d) differs at byte %zu of the expected text: expected ", c->line, at);
            print_snippet(c->expected + at, el - at, 40);
            if (o->ended) {
                printf(", but the output ended there");
            } else {
                printf(", got ");
                print_snippet(o->got + at, o->got_len - at, 40);
            }
        }
        printf("\n");
    }
    printf("canaries: %d of %d passed (%s)\n", r.n_pass, r.n, set->label);
    bb_tasks_canaries_result_free(&r);
    return BB_OK;
}

typedef struct {
    const char *model, *text, *tokens, *tokenizer, *save_ref, *ref, *mc, *canaries;
    int n_ctx, max_windows;
} eval_args;

static bb_status run(const eval_args *a) {
    bb_model *m = NULL;
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    bb_canary_set *canaries = NULL;
    bb_tokens t = {0};
    bb_logprobs save = {0}, ref = {0};
    int ppl = a->text || a->tokens;
    bb_status st;
    BB_CALL_GOTO(st, out, bb_model_open(a->model, &m));
    BB_CALL_GOTO(st, out, bb_model_check_finite(m));
    if (a->text || a->mc || a->canaries) BB_CALL_GOTO(st, out, bb_tokenizer_open_for_model(m, a->tokenizer, &tok));
    if (ppl) BB_CALL_GOTO(st, out, load_tokens(m, a->text, a->tokens, tok, &t));
    if (a->ref) BB_CALL_GOTO(st, out, bb_logprobs_read(a->ref, &ref));
    /* Only decoding (the canaries) uses the KV cache, so it is sized for them:
     * a model's full context can be far larger than they need. */
    int cache = ppl ? a->n_ctx : 0;
    if (a->canaries) {
        BB_CALL_GOTO(st, out, bb_tasks_canaries_load(a->canaries, &canaries));
        int need = bb_tasks_canaries_positions(canaries);
        if (need > m->cfg.max_seq_len) need = m->cfg.max_seq_len;
        if (need > cache) cache = need;
    }
    BB_CALL_GOTO(st, out, bb_forward_create(m, cache, &f));
    if (ppl) {
        bb_ppl_opts o = {.n_ctx = a->n_ctx, .max_windows = a->max_windows, .bos_id = m->cfg.bos_id};
        bb_ppl_result r;
        bb_kld_result k;
        BB_CALL_GOTO(st, out,
                     bb_eval_perplexity(f, t.ids, t.n, &o, &r, a->save_ref ? &save : NULL, a->ref ? &ref : NULL, &k));
        printf("PPL = %.4f +/- %.4f   (n_ctx %d, %d windows, %lld tokens scored of %lld, %s)\n", r.ppl, r.ppl_err,
               r.n_ctx, r.n_windows, (long long)r.n_scored, (long long)r.n_tokens, a->text ? a->text : a->tokens);
        if (a->ref)
            printf("KLD mean %.6f  p99 %.6f  max %.6f   top-1 %.4f   ln(PPL/PPL_ref) %.6f   (%lld positions)\n",
                   k.kld_mean, k.kld_p99, k.kld_max, k.top1, k.ln_ppl_ratio, (long long)k.n_pos);
        if (a->save_ref) {
            BB_CALL_GOTO(st, out, bb_logprobs_write(a->save_ref, &save));
            printf("reference log-probabilities saved to %s\n", a->save_ref);
        }
    }
    if (a->mc) BB_CALL_GOTO(st, out, run_mc(f, tok, a->mc));
    if (canaries) BB_CALL_GOTO(st, out, run_canaries(f, tok, canaries));
out:
    bb_logprobs_free(&save);
    bb_logprobs_free(&ref);
    bb_tokens_free(&t);
    bb_tasks_canaries_destroy(&canaries);
    bb_forward_destroy(&f);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&m);
    return st;
}

int bb_cmd_eval(int argc, char **argv) {
    eval_args a = {.n_ctx = 512};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(arg, "--text") && has) a.text = argv[++i];
        else if (!strcmp(arg, "--tokens") && has) a.tokens = argv[++i];
        else if (!strcmp(arg, "--tokenizer") && has) a.tokenizer = argv[++i];
        else if (!strcmp(arg, "--save-ref") && has) a.save_ref = argv[++i];
        else if (!strcmp(arg, "--ref") && has) a.ref = argv[++i];
        else if (!strcmp(arg, "--mc") && has) a.mc = argv[++i];
        else if (!strcmp(arg, "--canaries") && has) a.canaries = argv[++i];
        else if (!strcmp(arg, "--n-ctx") && has) a.n_ctx = atoi(argv[++i]);
        else if (!strcmp(arg, "--max-windows") && has) a.max_windows = atoi(argv[++i]);
        else if (arg[0] != '-' && !a.model) a.model = arg;
        else {
            fprintf(stderr, "error: unknown or incomplete argument '%s' (see birdbone eval --help)\n", arg);
            return 2;
        }
    }
    if (!a.model || (a.text && a.tokens) || !(a.text || a.tokens || a.mc || a.canaries)) {
        fprintf(stderr, "error: eval needs a MODEL and at most one of --text or --tokens, and at least one of --text, "
                        "--tokens, --mc or --canaries (see birdbone eval --help)\n");
        return 2;
    }
    if ((a.save_ref || a.ref) && !(a.text || a.tokens)) {
        fprintf(stderr, "error: --save-ref and --ref belong to the perplexity: give --text or --tokens too\n");
        return 2;
    }
    return run(&a) == BB_OK ? 0 : 1;
}
