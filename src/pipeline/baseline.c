/* baseline.c — stage 0 (Baseline mapping): evaluation and calibration token
 * streams, and the dense model's perplexity and reference log-probabilities. */
#include <stdlib.h>
#include <string.h>

#include "compress/scan.h"
#include "mpi/comm.h"
#include "core/events.h"
#include "core/file.h"
#include "core/log.h"
#include "io/tokenizer.h"
#include "io/tokens.h"
#include "model/eval.h"
#include "model/sample.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

/* Windows sampled for synthetic models when eval.max_windows is 0 (all). */
#define SYNTH_EVAL_WINDOWS 32

/* Sequences [lo, hi) of n on rank r of size p: contiguous, balanced. */
static void split(int n, int r, int p, int *lo, int *hi) {
    *lo = (int)((int64_t)n * r / p);
    *hi = (int)((int64_t)n * (r + 1) / p);
}

/* Every rank samples its share of the sequences; the gather puts them in
 * sequence order, so the stream is identical for any rank count. */
static bb_status sample_shared(bb_run *r, bb_forward *f, const char *stream, int n_seq, int seq_len, bb_tokens *out) {
    const bb_dist *d = r->dist;
    int lo, hi;
    split(n_seq, d->rank, d->size, &lo, &hi);
    bb_tokens mine;
    bb_status st = bb_sample_stream(f, (uint64_t)r->cfg.run.seed, stream, lo, hi - lo, seq_len, 1.0f, &mine);
    BB_CALL(bb_dist_agree(d, st));
    int *counts = NULL, *displs = NULL;
    st = bb_calloc((void **)&counts, (size_t)d->size * 2, sizeof(int), "gather counts");
    if (st == BB_OK) {
        displs = counts + d->size;
        for (int q = 0; q < d->size; q++) {
            int a, b;
            split(n_seq, q, d->size, &a, &b);
            counts[q] = (b - a) * seq_len;
            displs[q] = a * seq_len;
        }
        *out = mine;
        out->ids = NULL;
        st = bb_malloc((void **)&out->ids, sizeof(int32_t) * (size_t)n_seq * seq_len, "token stream");
    }
    if (st == BB_OK && MPI_Allgatherv(mine.ids, (hi - lo) * seq_len, MPI_INT32_T, out->ids, counts, displs,
                                      MPI_INT32_T, d->comm) != MPI_SUCCESS)
        st = bb_error(BB_ERR_MPI, __FILE__, __LINE__, "gathering the %s stream failed", stream);
    free(counts);
    bb_tokens_free(&mine);
    if (st != BB_OK) bb_tokens_free(out);
    BB_CALL(st);
    out->n = (int64_t)n_seq * seq_len;
    out->n_seq = n_seq;
    out->seq_len = seq_len;
    return BB_OK;
}

/* The whole dense model for sampling streams from a synthetic model (every
 * rank samples its share of the sequences), made on first use. */
static bb_status sampler(bb_run *r, bb_forward **f, int ctx) {
    bb_status st = *f ? BB_OK : bb_forward_create(r->model, ctx, f);
    return bb_dist_agree(r->dist, st);
}

static bb_status tokenize_text(bb_run *r, const char *path, bb_tokens *out) {
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(path, (size_t)1 << 34, &text, &len));
    bb_tokenizer *tok = NULL;
    bb_status st = len ? BB_OK : bb_error(BB_ERR_ARG, __FILE__, __LINE__, "%s is empty: nothing to evaluate", path);
    if (st == BB_OK) st = bb_tokenizer_open_for_model(r->model, r->cfg.model.tokenizer, &tok);
    int *ids = NULL, n = 0;
    if (st == BB_OK) st = bb_tokenizer_encode(tok, text, 1, 0, &ids, &n);
    bb_tokenizer_destroy(&tok);
    free(text);
    BB_CALL(st);
    memset(out, 0, sizeof *out);
    out->ids = ids;
    out->n = out->n_seq = n;
    out->vocab_size = r->model->cfg.vocab_size;
    return BB_OK;
}

/* The evaluation stream: a token file, a text, or (synthetic models) sampled. */
static bb_status eval_tokens(bb_run *r, bb_forward **f, int ctx, bb_tokens *t, const char **origin) {
    const bb_config *c = &r->cfg;
    if (c->data.eval_tokens[0]) {
        *origin = c->data.eval_tokens;
        return bb_tokens_read(c->data.eval_tokens, r->model->cfg.vocab_size, t);
    }
    if (c->data.eval[0]) {
        *origin = c->data.eval;
        return tokenize_text(r, c->data.eval, t);
    }
    BB_CHECK(r->model->source == BB_SRC_SYNTH, BB_ERR_CONFIG,
             "no evaluation data: set data.eval (a text file) or data.eval_tokens for %s", r->model->path);
    *origin = "sampled from the dense synthetic model";
    int nw = c->eval.max_windows > 0 ? (int)c->eval.max_windows : SYNTH_EVAL_WINDOWS;
    BB_CALL(sampler(r, f, ctx));
    return sample_shared(r, *f, "eval", nw, (int)c->eval.n_ctx, t);
}

static bb_status calib_tokens(bb_run *r, bb_forward **f, int ctx, bb_tokens *t, const char **origin) {
    const bb_config *c = &r->cfg;
    if (c->data.calib_tokens[0]) {
        *origin = c->data.calib_tokens;
        return bb_tokens_read(c->data.calib_tokens, r->model->cfg.vocab_size, t);
    }
    if (c->data.calib[0]) {
        *origin = c->data.calib;
        return tokenize_text(r, c->data.calib, t);
    }
    BB_CHECK(r->model->source == BB_SRC_SYNTH, BB_ERR_CONFIG,
             "no calibration data: set data.calib (a text file, never the evaluation text) or data.calib_tokens for %s",
             r->model->path);
    *origin = "sampled from the dense synthetic model";
    BB_CALL(sampler(r, f, ctx));
    return sample_shared(r, *f, "calib", (int)c->calib.samples, (int)c->calib.seq_len, t);
}

static bb_status write_tokens(bb_run *r, const char *name, const bb_tokens *t) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", r->cfg.run.dir, name);
    return r->dist->rank == 0 ? bb_tokens_write(path, t) : BB_OK;
}

/* The spectral scan of every linear weight: each rank scans its own blocks (the randomized SVD's seed is
 * the same for every matrix, so the split does not change a value), the entries go to rank 0 in rank
 * order — the blocks' order — and rank 0 writes <run.dir>/scan/. Collective. */
static bb_status spectral_scan(bb_run *r) {
    const bb_config *c = &r->cfg;
    if (!c->scan.enabled) return BB_OK;
    bb_scan_opts o;
    bb_scan_opts_default(&o);
    o.rank = (int)c->scan.rank;
    o.oversample = (int)c->scan.oversample;
    o.power_iters = (int)c->scan.power_iters;
    o.seed = (uint64_t)c->run.seed;
    o.progress = r->dist->rank == 0;
    o.layer_begin = r->l0;
    o.layer_end = r->l1;
    double t0 = bb_now();
    bb_scan_result *mine = NULL, *all = NULL;
    void *blob = NULL, *blobs = NULL;
    size_t bytes = 0, *offsets = NULL;
    bb_status st = BB_OK;
    if (r->l1 > r->l0) {
        st = bb_scan_model(r->model, &o, &mine);
        if (st == BB_OK) st = bb_scan_pack(mine, &blob, &bytes);
    }
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&offsets, (size_t)r->dist->size + 1, sizeof *offsets, "scan offsets"));
    BB_CALL_GOTO(st, out, bb_comm_allgatherv(r->comm, blob, bytes, &blobs, offsets));
    if (r->dist->rank == 0) {
        BB_CALL_GOTO(st, out, bb_calloc((void **)&all, 1, sizeof *all, "scan result"));
        snprintf(all->model, sizeof all->model, "%s", r->model->path);
        all->rank = o.rank;
        all->oversample = o.oversample;
        all->power_iters = o.power_iters;
        all->seed = o.seed;
        st = bb_scan_unpack(all, blobs, offsets[r->dist->size]);
        all->seconds = bb_now() - t0;
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/scan", c->run.dir);
        if (st == BB_OK) st = bb_scan_write(all, dir);
        if (st == BB_OK && all->n > 0) {
            double e = 0;
            int r50 = 0;
            for (int i = 0; i < all->n; i++) {
                e += all->e[i].svd.energy[all->e[i].svd.k - 1];
                r50 += all->e[i].svd.rank50;
            }
            bb_info("scan    %d matrices, top-%d singular values: mean energy captured %.1f%%, mean rank at 50%% %.1f; "
                    "plots in %s/",
                    all->n, o.rank, 100.0 * e / all->n, (double)r50 / all->n, dir);
        }
    }
out:
    bb_scan_result_destroy(&mine);
    bb_scan_result_destroy(&all);
    free(blob);
    free(blobs);
    free(offsets);
    return st;
}

bb_status bb_stage_baseline(bb_run *r) {
    const bb_config *c = &r->cfg;
    int ctx = (int)(c->eval.n_ctx > c->calib.seq_len ? c->eval.n_ctx : c->calib.seq_len);
    BB_CHECK(ctx <= r->model->cfg.max_seq_len, BB_ERR_CONFIG,
             "eval.n_ctx %lld / calib.seq_len %lld exceed the context of %s (%d tokens): lower them",
             (long long)c->eval.n_ctx, (long long)c->calib.seq_len, r->model->path, r->model->cfg.max_seq_len);
    bb_forward *f = NULL;
    bb_tokens ev = {0}, cal = {0};
    bb_logprobs ref = {0};
    const char *ev_origin = "", *cal_origin = "";
    bb_status st;
    BB_CALL_GOTO(st, out, eval_tokens(r, &f, ctx, &ev, &ev_origin));
    BB_CALL_GOTO(st, out, calib_tokens(r, &f, ctx, &cal, &cal_origin));
    bb_forward_destroy(&f);
    r->eval_tokens = ev.n;
    r->calib_tokens = cal.n;
    bb_info("eval    %lld tokens (%s)", (long long)ev.n, ev_origin);
    bb_info("calib   %lld tokens (%s)", (long long)cal.n, cal_origin);
    st = write_tokens(r, "eval.tokens", &ev);
    if (st == BB_OK) st = write_tokens(r, "calib.tokens", &cal);
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
    st = spectral_scan(r);
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
    /* The dense perplexity, pipelined over the plan; the head rank keeps the
     * reference log-probabilities (dense.bblp) for the KLD of every later evaluation. */
    bb_ppl_result res;
    bb_event_begin("eval.dense");
    st = bb_run_evaluate(r, r->model, &ev, &res, c->eval.kld ? &ref : NULL, NULL, NULL);
    bb_event_end("eval.dense", 0, 0);
    BB_CALL_GOTO(st, out, st);
    r->dense_ppl = res.ppl;
    r->dense_ppl_err = res.ppl_err;
    bb_info("dense   PPL %.4f +/- %.4f (n_ctx %d, %d windows, %lld tokens scored)", res.ppl, res.ppl_err, res.n_ctx,
            res.n_windows, (long long)res.n_scored);
    if (c->eval.kld && r->dist->rank == bb_plan_head_rank(&r->plan)) {
        char path[1200];
        snprintf(path, sizeof path, "%s/dense.bblp", c->run.dir);
        st = bb_logprobs_write(path, &ref);
    }
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
out:
    bb_logprobs_free(&ref);
    bb_tokens_free(&ev);
    if (st == BB_OK) r->calib = cal; /* stage 1 calibrates on it */
    else bb_tokens_free(&cal);
    bb_forward_destroy(&f);
    return st;
}
