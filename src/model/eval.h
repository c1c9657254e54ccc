/* eval.h — perplexity by llama.cpp's method and KL-divergence against a reference.
 *
 * Perplexity (as llama-perplexity computes it, so numbers compare directly):
 * the token stream (the whole text tokenized once, with a leading BOS) is cut
 * into non-overlapping windows of n_ctx tokens; the first token of every window
 * is replaced by BOS; only the second half of each window is scored: logits at
 * positions n_ctx/2 .. n_ctx-2 predict the tokens after them. PPL = exp(mean
 * NLL); its error is PPL · sqrt(var(NLL) / (count - 1)).
 *
 * KL-divergence: with the reference model's log-probabilities at the scored
 * positions (kept in a bb_logprobs, in memory or a file), KLD(ref || model) per
 * position, its mean and 99th percentile, top-1 agreement and ln(PPL ratio). */
#ifndef BB_MODEL_EVAL_H
#define BB_MODEL_EVAL_H

#include <stdint.h>

#include "model/forward.h"

typedef struct {
    int n_ctx;       /* window length */
    int max_windows; /* 0 = all that fit */
    int bos_id;      /* placed at the start of each window; -1 keeps the stream's token */
    int batch;       /* windows per forward call; 0 = choose from memory (logits of a batch <= 256 MiB) */
} bb_ppl_opts;

typedef struct {
    double ppl, ppl_err; /* exp(mean NLL) and its standard error */
    double nll_mean;
    int64_t n_scored; /* tokens scored */
    int n_windows;
    int n_ctx;
    int64_t n_tokens;    /* tokens in the stream */
    int64_t n_nonfinite; /* positions whose logits were not finite (scored as errors) */
} bb_ppl_result;

/* Log-probabilities of a reference model at every scored position: (n_pos, vocab) row-major. */
typedef struct {
    float *logp;
    int64_t n_pos;
    int vocab;
    int n_ctx;      /* the windowing they were computed with */
    int n_windows;
} bb_logprobs;

typedef struct {
    double kld_mean, kld_p99, kld_max;
    double top1;          /* fraction of positions where both argmax agree */
    double ln_ppl_ratio;  /* mean NLL(model) - mean NLL(reference) */
    int64_t n_pos;
} bb_kld_result;

/* Perplexity of f on tokens[0, n). If save is non-NULL it receives this model's
 * log-probabilities at the scored positions (to be the reference later). If ref
 * is non-NULL (same windowing) kld receives the comparison. Errors: BB_ERR_ARG
 * (n_ctx < 4 or above the model's context, fewer tokens than one window, a
 * reference made with other windows or vocabulary), BB_ERR_OOM, forward errors.
 * A window with non-finite logits is reported with a warning and counted. */
bb_status bb_eval_perplexity(bb_forward *f, const int32_t *tokens, int64_t n, const bb_ppl_opts *o, bb_ppl_result *r,
                             bb_logprobs *save, const bb_logprobs *ref, bb_kld_result *kld);

/* The scoring half of bb_eval_perplexity, for passes that compute the logits
 * elsewhere (the pipelined evaluation, mpi/pipe.h): the windowing, the batch
 * size, the per-window scores and the result, in exactly the order and
 * arithmetic bb_eval_perplexity uses (it is built on these). Windows must be
 * added in order, b at a time with b = bb_ppl_scorer_batch except the last.
 * save (if set) is filled as bb_eval_perplexity does and freed by destroy
 * unless finish succeeded. Errors of create: those of bb_eval_perplexity. */
typedef struct bb_ppl_scorer bb_ppl_scorer;
bb_status bb_ppl_scorer_create(const bb_model_config *c, int64_t n, const bb_ppl_opts *o, bb_logprobs *save,
                               const bb_logprobs *ref, bb_ppl_scorer **out);
void bb_ppl_scorer_destroy(bb_ppl_scorer **s);         /* NULL-safe; nulls *s */
int64_t bb_ppl_scorer_windows(const bb_ppl_scorer *s); /* windows to score */
int bb_ppl_scorer_batch(const bb_ppl_scorer *s);       /* windows per forward call */
/* win (b, n_ctx) <- windows w0..w0+b-1 of tokens, BOS placed. */
void bb_ppl_scorer_fill(const bb_ppl_scorer *s, const int32_t *tokens, int64_t w0, int b, int32_t *win);
/* Score b windows: logits (b, n_ctx, vocab) of the windows win (b, n_ctx). */
bb_status bb_ppl_scorer_add(bb_ppl_scorer *s, const float *logits, const int32_t *win, int b);
/* All windows scored: the result (kld only with a reference). */
bb_status bb_ppl_scorer_finish(bb_ppl_scorer *s, bb_ppl_result *r, bb_kld_result *kld);

void bb_logprobs_free(bb_logprobs *lp); /* NULL-safe */
/* File form (magic "BBLP", version, vocab, n_ctx, n_windows, n_pos, then f32),
 * written atomically; read checks every size against the file. */
bb_status bb_logprobs_write(const char *path, const bb_logprobs *lp);
bb_status bb_logprobs_read(const char *path, bb_logprobs *lp);

/* Reference implementations the fast path is tested against: log-softmax of
 * one row in double precision, and KLD(p || q) of two log-prob rows. */
void bb_log_softmax_ref(const float *logits, int n, double *out);
double bb_kld_row_ref(const float *logp_ref, const double *logq, int n);

#endif
