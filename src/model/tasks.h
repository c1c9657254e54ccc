/* tasks.h — task metrics: multiple-choice accuracy by log-likelihood (MMLU/ARC/HellaSwag shapes) and greedy canaries.
 *
 * Multiple choice (file format and method in docs/tasks.md). Each line of a
 * JSONL file is one question: a context, two or more choices and the index of
 * the right one. Accepted keys, one of each group:
 *   context  "question" | "context" | "ctx" | "query"
 *   choices  "choices" | "endings"              (an array of non-empty strings)
 *   answer   "answer" | "label" | "gold"        (0-based integer, a string of
 *            digits such as HellaSwag's "3", or one letter "A".."Z" for 0..25)
 * Other keys are ignored; blank lines are skipped.
 *
 * A choice is scored as lm-evaluation-harness scores a (context, continuation)
 * pair: trailing whitespace of the question moves to the front of the
 * continuation; otherwise the continuation is " " + choice (no space when the
 * question is empty or the choice starts with whitespace). With
 *   ctx   = encode(BOS, question without its trailing whitespace)
 *   whole = encode(BOS, question without its trailing whitespace + continuation)
 * the continuation tokens are whole[len(ctx):], and the score is the sum of
 * their log-probabilities under the model (prefix of whole as context). For
 * SentencePiece-style vocabularies ctx is a prefix of whole; when it is not
 * (a merge across the boundary) the slice is still taken at len(ctx), as the
 * harness does, and the case is counted in bb_mc_result.n_prefix_mismatch.
 * acc takes the argmax of the total log-likelihood, acc_norm the argmax of the
 * log-likelihood divided by the choice's length in Unicode characters (the
 * choice text alone, as the harness's acc_norm; equal to its byte length for
 * ASCII). Ties go to the lowest index; a non-finite score never wins. Unlike
 * the harness's default for Llama models (no BOS unless add_bos_token=True),
 * every sequence starts with BOS, as the models were trained and as llama.cpp
 * evaluates them.
 *
 * Canaries: a JSONL file, each line {"prompt": str, "expected": str} with an
 * optional "name": str. The prompt (with BOS) is continued greedily; the canary
 * passes when the decoded continuation starts with `expected` byte for byte.
 * An empty prompt continues from BOS alone (the leading dummy-prefix space is
 * then not part of the text, as in llama2.c's output).
 *
 * Errors of the loaders are BB_ERR_FORMAT "<file>:<line>: <what is wrong>"
 * (the first malformed line stops the load), BB_ERR_IO, BB_ERR_OOM. Nothing
 * here is collective; a bb_forward is not thread-safe, so one call at a time. */
#ifndef BB_MODEL_TASKS_H
#define BB_MODEL_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "model/forward.h"

/* ---- multiple choice ---------------------------------------------------------------- */

typedef struct {
    char *question; /* context text (UTF-8) */
    char **choices; /* [n_choices] */
    int n_choices;  /* >= 2 */
    int answer;     /* 0 <= answer < n_choices */
    int line;       /* 1-based line in the source file */
} bb_mc_item;

typedef struct {
    bb_mc_item *items; /* [n] */
    int n;
    int n_choices_total; /* sum of n_choices */
    char label[1024];    /* the file (or label) it came from */
} bb_mc_set;

/* Load a JSONL file / parse text[0, len) (label names it in messages). An empty
 * set (no question) is an error. */
bb_status bb_tasks_mc_load(const char *path, bb_mc_set **out);
bb_status bb_tasks_mc_parse(const char *text, size_t len, const char *label, bb_mc_set **out);
void bb_tasks_mc_destroy(bb_mc_set **set); /* NULL-safe; nulls *set */

typedef struct {
    int max_batch; /* sequences per prefill; 0 = as many as fit 2048 positions and 256 MiB of logits */
} bb_mc_opts;

typedef struct {
    int n;                     /* questions */
    int correct, correct_norm; /* right by acc / by acc_norm */
    double acc, acc_stderr;    /* stderr = sqrt(acc (1 - acc) / (n - 1)), lm-eval's sample form */
    double acc_norm, acc_norm_stderr;
    double chance;           /* mean of 1 / n_choices */
    int64_t n_tokens_scored; /* continuation tokens over all choices */
    int n_prefix_mismatch;   /* choices whose ctx tokens were not a prefix of whole */
    int n_nonfinite;         /* choices whose score was not finite */
    double *loglik;          /* (n_choices_total) total log-likelihood, items in order */
    int *n_cont;             /* (n_choices_total) continuation tokens of each choice */
    int *pred, *pred_norm;   /* (n) chosen index by acc / acc_norm, -1 if no finite score */
} bb_mc_result;

/* Score every choice of set with f (tokenized with tok; BOS first) and fill r
 * (free with bb_tasks_mc_result_free, also after an error). Errors: BB_ERR_ARG
 * (a question with a choice longer than the model's context, naming file:line;
 * a choice that tokenizes to nothing; tokenizer and model vocabularies differ),
 * BB_ERR_OOM, forward and tokenizer errors. */
bb_status bb_tasks_mc_score(bb_forward *f, const bb_tokenizer *tok, const bb_mc_set *set, const bb_mc_opts *o,
                            bb_mc_result *r);
void bb_tasks_mc_result_free(bb_mc_result *r); /* NULL-safe */

/* ---- canaries ------------------------------------------------------------------------- */

typedef struct {
    char *name; /* "name" of the line, else "line N" */
    char *prompt;
    char *expected; /* non-empty */
    int line;
} bb_canary;

typedef struct {
    bb_canary *items; /* [n] */
    int n;
    char label[1024];
} bb_canary_set;

bb_status bb_tasks_canaries_load(const char *path, bb_canary_set **out);
bb_status bb_tasks_canaries_parse(const char *text, size_t len, const char *label, bb_canary_set **out);
void bb_tasks_canaries_destroy(bb_canary_set **set); /* NULL-safe; nulls *set */

/* KV-cache positions that always suffice to run every canary of set (prompt
 * bytes + expected bytes + 3, since every token is at least one byte): a
 * cache_len for bb_forward_create. A shorter cache ends generation early,
 * which then reads as a failure at the point where the output stopped. */
int bb_tasks_canaries_positions(const bb_canary_set *set);

typedef struct {
    int pass;
    size_t diverge; /* failures: byte offset into expected of the first difference; 0 for a pass */
    int ended;      /* failures: the output stopped (EOS/BOS or cache full) before covering expected */
    char *got;      /* decoded continuation (NUL-terminated) */
    size_t got_len;
    int n_generated; /* tokens generated after the prompt */
} bb_canary_outcome;

typedef struct {
    bb_canary_outcome *c; /* [n] in set order */
    int n, n_pass;
} bb_canary_result;

/* Run every canary greedily (temperature 0) with bb_forward_generate; r is
 * freed with bb_tasks_canaries_result_free, also after an error. Generation
 * first runs for the expected text's own token count plus a margin and only
 * when that output matched so far but fell short, again with the byte bound.
 * Errors: BB_ERR_ARG (vocabularies differ), BB_ERR_OOM, forward and tokenizer
 * errors (a canary failing is no error). */
bb_status bb_tasks_canaries_run(bb_forward *f, const bb_tokenizer *tok, const bb_canary_set *set, bb_canary_result *r);
void bb_tasks_canaries_result_free(bb_canary_result *r); /* NULL-safe */

#endif
