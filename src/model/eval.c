/* eval.c — perplexity (llama.cpp's windowing) and KL-divergence against a reference. */
#include "model/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/file.h"
#include "core/log.h"

void bb_log_softmax_ref(const float *logits, int n, double *out) {
    double mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)logits[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < n; i++) out[i] = (double)logits[i] - lse;
}

double bb_kld_row_ref(const float *logp_ref, const double *logq, int n) {
    double k = 0;
    for (int i = 0; i < n; i++) {
        double lp = logp_ref[i];
        if (lp > -INFINITY) k += exp(lp) * (lp - logq[i]);
    }
    return k > 0 ? k : 0;
}

static int row_finite(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double nll, nll2;
    int64_t count, nonfinite;
    /* KLD */
    double *klds;
    int64_t n_kld, top1;
    double nll_ref;
} accum;

/* Score positions first..T-2 of one window's logits (T, vocab). */
static void score_window(const float *logits, const int32_t *win, int T, int vocab, double *lsm, accum *a,
                         bb_logprobs *save, const bb_logprobs *ref, int64_t *pos) {
    int first = T / 2;
    for (int j = first; j < T - 1; j++, (*pos)++) {
        const float *lg = logits + (size_t)j * vocab;
        if (!row_finite(lg, vocab)) {
            a->nonfinite++;
            if (save) memset(save->logp + (size_t)*pos * vocab, 0, sizeof(float) * (size_t)vocab);
            continue;
        }
        bb_log_softmax_ref(lg, vocab, lsm);
        double lp = lsm[win[j + 1]];
        a->nll -= lp;
        a->nll2 += lp * lp;
        a->count++;
        if (save)
            for (int v = 0; v < vocab; v++) save->logp[(size_t)*pos * vocab + v] = (float)lsm[v];
        if (ref) {
            const float *lr = ref->logp + (size_t)*pos * vocab;
            a->klds[a->n_kld++] = bb_kld_row_ref(lr, lsm, vocab);
            a->nll_ref -= lr[win[j + 1]];
            if (bb_argmax(lg, vocab) == bb_argmax(lr, vocab)) a->top1++;
        }
    }
}

struct bb_ppl_scorer {
    int T, vocab, B, bos_id;
    int64_t nw, n_pos, n_tokens, next_window, pos;
    accum a;
    double *lsm;
    bb_logprobs *save;
    const bb_logprobs *ref;
    int done; /* finish succeeded: save belongs to the caller */
};

bb_status bb_ppl_scorer_create(const bb_model_config *c, int64_t n, const bb_ppl_opts *o, bb_logprobs *save,
                               const bb_logprobs *ref, bb_ppl_scorer **out) {
    *out = NULL;
    int T = o->n_ctx, vocab = c->vocab_size;
    BB_CHECK(T >= 4, BB_ERR_ARG, "eval.n_ctx = %d is too small (at least 4)", T);
    BB_CHECK(T <= c->max_seq_len, BB_ERR_ARG, "eval.n_ctx = %d exceeds the model's context of %d tokens", T,
             c->max_seq_len);
    int64_t nw = n / T;
    BB_CHECK(nw >= 1, BB_ERR_ARG, "the evaluation text has %lld tokens, fewer than one window of eval.n_ctx = %d",
             (long long)n, T);
    if (o->max_windows > 0 && nw > o->max_windows) nw = o->max_windows;
    int per = T - 1 - T / 2;
    int64_t n_pos = nw * per;
    if (ref)
        BB_CHECK(ref->vocab == vocab && ref->n_ctx == T && ref->n_windows == nw && ref->n_pos == n_pos, BB_ERR_ARG,
                 "the reference log-probabilities were computed with vocab %d, n_ctx %d, %d windows; this evaluation "
                 "has vocab %d, n_ctx %d, %lld windows",
                 ref->vocab, ref->n_ctx, ref->n_windows, vocab, T, (long long)nw);
    int B = o->batch;
    if (B <= 0) {
        int64_t per_win = (int64_t)T * vocab * 4;
        B = (int)((256ll << 20) / (per_win > 0 ? per_win : 1));
        if (B < 1) B = 1;
        if (B > 16) B = 16;
    }
    if (B > nw) B = (int)nw;
    bb_ppl_scorer *s;
    BB_CALLOC(s, 1, "perplexity scorer");
    s->T = T, s->vocab = vocab, s->B = B, s->bos_id = o->bos_id;
    s->nw = nw, s->n_pos = n_pos, s->n_tokens = n;
    s->save = save, s->ref = ref;
    if (save) memset(save, 0, sizeof *save);
    bb_status st = bb_malloc((void **)&s->lsm, sizeof(double) * (size_t)vocab, "log-softmax row");
    if (st == BB_OK && ref) st = bb_malloc((void **)&s->a.klds, sizeof(double) * (size_t)n_pos, "KLD values");
    if (st == BB_OK && save) {
        st = bb_malloc((void **)&save->logp, sizeof(float) * (size_t)n_pos * vocab, "reference log-probabilities");
        save->n_pos = n_pos;
        save->vocab = vocab;
        save->n_ctx = T;
        save->n_windows = (int)nw;
    }
    if (st != BB_OK) {
        bb_ppl_scorer_destroy(&s);
        return st;
    }
    *out = s;
    return BB_OK;
}

void bb_ppl_scorer_destroy(bb_ppl_scorer **ps) {
    if (!ps || !*ps) return;
    bb_ppl_scorer *s = *ps;
    if (!s->done && s->save) bb_logprobs_free(s->save);
    free(s->lsm);
    free(s->a.klds);
    free(s);
    *ps = NULL;
}

int64_t bb_ppl_scorer_windows(const bb_ppl_scorer *s) { return s->nw; }
int bb_ppl_scorer_batch(const bb_ppl_scorer *s) { return s->B; }

void bb_ppl_scorer_fill(const bb_ppl_scorer *s, const int32_t *tokens, int64_t w0, int b, int32_t *win) {
    for (int i = 0; i < b; i++) {
        memcpy(win + (size_t)i * s->T, tokens + (w0 + i) * s->T, sizeof(int32_t) * (size_t)s->T);
        if (s->bos_id >= 0) win[(size_t)i * s->T] = s->bos_id;
    }
}

bb_status bb_ppl_scorer_add(bb_ppl_scorer *s, const float *logits, const int32_t *win, int b) {
    BB_CHECK(b >= 1 && s->next_window + b <= s->nw, BB_ERR_ARG, "perplexity scorer: %d more windows after %lld of %lld",
             b, (long long)s->next_window, (long long)s->nw);
    for (int i = 0; i < b; i++)
        score_window(logits + (size_t)i * s->T * s->vocab, win + (size_t)i * s->T, s->T, s->vocab, s->lsm, &s->a,
                     s->save, s->ref, &s->pos);
    s->next_window += b;
    return BB_OK;
}

bb_status bb_ppl_scorer_finish(bb_ppl_scorer *s, bb_ppl_result *r, bb_kld_result *kld) {
    memset(r, 0, sizeof *r);
    BB_CHECK(s->next_window == s->nw, BB_ERR_ARG, "perplexity scorer: %lld of %lld windows scored",
             (long long)s->next_window, (long long)s->nw);
    accum *a = &s->a;
    if (a->nonfinite)
        bb_warn("%lld of %lld scored positions had non-finite logits and were left out of the perplexity",
                (long long)a->nonfinite, (long long)s->n_pos);
    BB_CHECK(a->count > 1, BB_ERR_NUMERIC, "no position had finite logits: the model produces NaN/Inf");
    r->n_ctx = s->T;
    r->n_windows = (int)s->nw;
    r->n_tokens = s->n_tokens;
    r->n_scored = a->count;
    r->n_nonfinite = a->nonfinite;
    r->nll_mean = a->nll / (double)a->count;
    r->ppl = exp(r->nll_mean);
    double var = a->nll2 / (double)a->count - r->nll_mean * r->nll_mean;
    r->ppl_err = var > 0 ? r->ppl * sqrt(var / (double)(a->count - 1)) : 0;
    if (s->ref) {
        memset(kld, 0, sizeof *kld);
        kld->n_pos = a->n_kld;
        if (a->n_kld > 0) {
            double sum = 0;
            for (int64_t i = 0; i < a->n_kld; i++) sum += a->klds[i];
            qsort(a->klds, (size_t)a->n_kld, sizeof(double), cmp_double);
            kld->kld_mean = sum / (double)a->n_kld;
            kld->kld_max = a->klds[a->n_kld - 1];
            /* nearest rank */
            int64_t k = (int64_t)ceil(0.99 * (double)a->n_kld) - 1;
            kld->kld_p99 = a->klds[k < 0 ? 0 : k];
            kld->top1 = (double)a->top1 / (double)a->n_kld;
            kld->ln_ppl_ratio = (a->nll - a->nll_ref) / (double)a->n_kld;
        }
    }
    s->done = 1;
    return BB_OK;
}

bb_status bb_eval_perplexity(bb_forward *f, const int32_t *tokens, int64_t n, const bb_ppl_opts *o, bb_ppl_result *r,
                             bb_logprobs *save, const bb_logprobs *ref, bb_kld_result *kld) {
    memset(r, 0, sizeof *r);
    BB_CHECK(!ref || kld, BB_ERR_ARG, "a reference needs a KLD result to fill");
    bb_ppl_scorer *s;
    BB_CALL(bb_ppl_scorer_create(bb_forward_config(f), n, o, save, ref, &s));
    int T = s->T, B = s->B;
    int64_t nw = s->nw;
    bb_status st = BB_OK;
    float *logits = NULL;
    int32_t *win = NULL;
    BB_CALL_GOTO(st, out, bb_malloc((void **)&logits, sizeof(float) * (size_t)B * T * s->vocab, "evaluation logits"));
    BB_CALL_GOTO(st, out, bb_malloc((void **)&win, sizeof(int32_t) * (size_t)B * T, "evaluation windows"));
    bb_progress prog;
    bb_progress_begin(&prog, "eval", nw);
    for (int64_t w0 = 0; w0 < nw; w0 += B) {
        int b = (int)(nw - w0 < B ? nw - w0 : B);
        bb_ppl_scorer_fill(s, tokens, w0, b, win);
        bb_event_begin("eval.forward");
        st = bb_forward_prefill(f, win, b, T, logits);
        bb_event_end("eval.forward", 0, 0);
        if (st != BB_OK) goto out;
        BB_CALL_GOTO(st, out, bb_ppl_scorer_add(s, logits, win, b));
        bb_progress_update(&prog, w0 + b, "windows");
    }
    bb_progress_end(&prog);
    BB_CALL_GOTO(st, out, bb_ppl_scorer_finish(s, r, kld));
out:
    free(logits);
    free(win);
    bb_ppl_scorer_destroy(&s);
    return st;
}

void bb_logprobs_free(bb_logprobs *lp) {
    if (!lp) return;
    free(lp->logp);
    memset(lp, 0, sizeof *lp);
}

#define LP_MAGIC "BBLP"
#define LP_HEADER 32

bb_status bb_logprobs_write(const char *path, const bb_logprobs *lp) {
    size_t payload = sizeof(float) * (size_t)lp->n_pos * (size_t)lp->vocab;
    unsigned char *buf;
    BB_MALLOC(buf, LP_HEADER + payload, "log-probability file");
    memset(buf, 0, LP_HEADER);
    memcpy(buf, LP_MAGIC, 4);
    int32_t h[4] = {1, lp->vocab, lp->n_ctx, lp->n_windows};
    memcpy(buf + 4, h, sizeof h);
    int64_t np = lp->n_pos;
    memcpy(buf + 20, &np, 8);
    memcpy(buf + LP_HEADER, lp->logp, payload);
    bb_status st = bb_file_write_atomic(path, buf, LP_HEADER + payload);
    free(buf);
    return st;
}

bb_status bb_logprobs_read(const char *path, bb_logprobs *lp) {
    memset(lp, 0, sizeof *lp);
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status st = BB_OK;
    int32_t h[4];
    int64_t np = 0;
    BB_CHECK_GOTO(st, out, mf.size >= LP_HEADER && !memcmp(mf.data, LP_MAGIC, 4), BB_ERR_FORMAT,
                  "%s is not a birdbone log-probability file (no BBLP header)", path);
    memcpy(h, mf.data + 4, sizeof h);
    memcpy(&np, mf.data + 20, 8);
    BB_CHECK_GOTO(st, out, h[0] == 1 && h[1] > 0 && h[2] > 0 && h[3] > 0 && np > 0, BB_ERR_FORMAT,
                  "%s: bad header (version %d, vocab %d, n_ctx %d, windows %d, positions %lld)", path, h[0], h[1],
                  h[2], h[3], (long long)np);
    BB_CHECK_GOTO(st, out, (uint64_t)np <= (mf.size - LP_HEADER) / 4 / (uint64_t)h[1] &&
                               (uint64_t)np * (uint64_t)h[1] * 4 == mf.size - LP_HEADER,
                  BB_ERR_FORMAT, "%s: %lld positions x %d tokens do not match the %zu bytes stored (truncated?)", path,
                  (long long)np, h[1], mf.size - LP_HEADER);
    BB_CALL_GOTO(st, out, bb_malloc((void **)&lp->logp, mf.size - LP_HEADER, "reference log-probabilities"));
    memcpy(lp->logp, mf.data + LP_HEADER, mf.size - LP_HEADER);
    lp->vocab = h[1];
    lp->n_ctx = h[2];
    lp->n_windows = h[3];
    lp->n_pos = np;
out:
    bb_file_unmap(&mf);
    return st;
}
