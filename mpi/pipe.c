/* pipe.c — micro-batches through the ranks' forward parts with non-blocking point-to-point; calibration and perplexity
 * drivers. The messages go through bb_comm's point-to-point (mpi/comm.h): MPI for host buffers here; a GPU forward
 * would pass device buffers through the NCCL implementation of the same calls. */
#include "mpi/pipe.h"

#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "mpi/comm.h"

struct bb_pipe {
    const bb_dist *d;
    bb_comm *c; /* the hidden states' point-to-point and the result's broadcast */
    const bb_model *m;
    const bb_plan *plan;
    bb_forward *f; /* NULL on idle ranks */
    int with_head, k;
    int prev, next; /* neighbours in the pipeline, -1 at its ends */
    int is_head;
};

#define PIPE_TAG_SPAN 30000 /* tags cycle below MPI's guaranteed 32767 */

static int working(const bb_plan *plan, int r, int with_head) {
    const bb_plan_rank *pr = &plan->ranks[r];
    return pr->active && (pr->embed || pr->layer_end > pr->layer_begin || (pr->head && with_head));
}

static bb_comm_kind pipe_kind = BB_COMM_MPI;

void bb_pipe_set_comm_kind(bb_comm_kind kind) { pipe_kind = kind; }

bb_status bb_pipe_create(const bb_dist *d, const bb_model *m, const bb_plan *plan, int with_head, int in_flight,
                         bb_pipe **out) {
    *out = NULL;
    BB_CHECK(plan->n_ranks == d->size && plan->n_layers == m->cfg.n_layers, BB_ERR_ARG,
             "the sharding plan is for %d layers on %d ranks, but the job runs %d ranks on a model of %d layers",
             plan->n_layers, plan->n_ranks, d->size, m->cfg.n_layers);
    BB_CHECK(in_flight >= 1 && in_flight < PIPE_TAG_SPAN, BB_ERR_ARG,
             "pipeline: %d micro-batches in flight (need 1..%d)", in_flight, PIPE_TAG_SPAN - 1);
    bb_pipe *p;
    BB_CALL(bb_calloc((void **)&p, 1, sizeof *p, "pipeline"));
    p->d = d, p->m = m, p->plan = plan, p->with_head = with_head, p->k = in_flight;
    /* Without the head, a rank holding nothing else has nothing to do. */
    p->prev = p->next = -1;
    const bb_plan_rank *pr = &plan->ranks[d->rank];
    int me = working(plan, d->rank, with_head);
    for (int r = d->rank - 1; me && r >= 0 && p->prev < 0; r--)
        if (working(plan, r, with_head)) p->prev = r;
    for (int r = d->rank + 1; me && r < plan->n_ranks && p->next < 0; r++)
        if (working(plan, r, with_head)) p->next = r;
    p->is_head = me && p->next < 0;
    bb_status st = BB_OK;
    if (me) {
        bb_forward_part part = {pr->layer_begin, pr->layer_end, pr->embed, pr->head && with_head};
        st = bb_forward_create_part(m, &part, 0, &p->f);
    }
    bb_status cs = bb_comm_create(pipe_kind, d, &p->c); /* collective: every rank */
    if (st == BB_OK) st = cs;
    st = bb_dist_agree(d, st);
    if (st != BB_OK) {
        bb_pipe_destroy(&p);
        return bb_trace(st, __FILE__, __LINE__, "bb_pipe_create");
    }
    *out = p;
    return BB_OK;
}

void bb_pipe_destroy(bb_pipe **pp) {
    if (!pp || !*pp) return;
    bb_forward_destroy(&(*pp)->f);
    bb_comm_destroy(&(*pp)->c);
    free(*pp);
    *pp = NULL;
}

bb_forward *bb_pipe_forward(bb_pipe *p) { return p->f; }
const bb_plan_rank *bb_pipe_rank(const bb_pipe *p) { return &p->plan->ranks[p->d->rank]; }

/* BB_INJECT_FAIL=RANK:STAGE makes that rank fail in that stage (tests of the failure path). */
static bb_status injected(const bb_pipe *p, const char *stage, int64_t mb) {
    const char *e = getenv("BB_INJECT_FAIL");
    if (!e || !*e) return BB_OK;
    char *end;
    long r = strtol(e, &end, 10);
    if (end == e || *end != ':' || r != p->d->rank || strcmp(end + 1, stage)) return BB_OK;
    return bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__,
                    "rank %d: injected failure in stage '%s' at micro-batch %lld (BB_INJECT_FAIL=%s)", p->d->rank,
                    stage, (long long)mb, e);
}

typedef struct {
    float **buf;               /* [k] (B T dim + 1) */
    bb_comm_req **rreq, **sreq; /* [k] NULL: none outstanding */
    float *logits;            /* (B, T, vocab) on the head rank with the head */
} pipe_bufs;

static void free_bufs(pipe_bufs *b, int k) {
    if (b->buf)
        for (int i = 0; i < k; i++) free(b->buf[i]);
    free(b->buf);
    free(b->rreq);
    free(b->sreq);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

static bb_status alloc_bufs(bb_pipe *p, int64_t rows, pipe_bufs *b) {
    int k = p->k;
    int64_t dim = p->m->cfg.dim;
    BB_CALL(bb_calloc((void **)&b->buf, (size_t)k, sizeof *b->buf, "pipeline buffers"));
    BB_CALL(bb_calloc((void **)&b->rreq, (size_t)k, sizeof *b->rreq, "pipeline requests"));
    BB_CALL(bb_calloc((void **)&b->sreq, (size_t)k, sizeof *b->sreq, "pipeline requests"));
    for (int i = 0; i < k; i++) {
        BB_CALL(bb_malloc((void **)&b->buf[i], sizeof(float) * (size_t)(rows * dim + 1),
                          "pipeline micro-batch buffer (lower the micro-batch or in_flight)"));
    }
    if (p->is_head && p->with_head)
        BB_CALL(bb_malloc((void **)&b->logits, sizeof(float) * (size_t)rows * (size_t)p->m->cfg.vocab_size,
                          "pipeline logits (lower the micro-batch)"));
    return BB_OK;
}

/* The pass on an active rank. Returns MPI errors directly (the job cannot go
 * on); a compute error goes to *local and the loop keeps draining. */
static bb_status pass(bb_pipe *p, pipe_bufs *bf, const int32_t *ids, int64_t n_seq, int T, int B, const char *stage,
                      bb_pipe_sink_fn sink, void *ud, bb_status *local) {
    int k = p->k, dim = p->m->cfg.dim;
    int64_t M = (n_seq + B - 1) / B, posted = 0;
    bb_comm *c = p->c;
    /* Receive micro-batch j into its slot once the slot's previous send is done. */
#define POST_UPTO(j)                                                                                                   \
    while (p->prev >= 0 && posted <= (j) && posted < M) {                                                              \
        int s_ = (int)(posted % k);                                                                                    \
        int64_t b_ = n_seq - posted * B < B ? n_seq - posted * B : B;                                                  \
        BB_CALL(bb_comm_wait(c, &bf->sreq[s_]));                                                                       \
        BB_CALL(bb_comm_irecv(c, bf->buf[s_], sizeof(float) * (size_t)(b_ * T * dim + 1), p->prev,                     \
                              (int)(posted % PIPE_TAG_SPAN), &bf->rreq[s_]));                                          \
        posted++;                                                                                                      \
    }
    POST_UPTO(k - 2);
    for (int64_t mb = 0; mb < M; mb++) {
        int s = (int)(mb % k);
        int b = (int)(n_seq - mb * B < B ? n_seq - mb * B : B);
        int64_t count = (int64_t)b * T * dim;
        float *x = bf->buf[s];
        int upstream_failed = 0;
        bb_event_begin("pipe.wait");
        if (p->prev >= 0) {
            POST_UPTO(mb);
            BB_CALL(bb_comm_wait(c, &bf->rreq[s]));
            upstream_failed = x[count] != 0;
        } else {
            BB_CALL(bb_comm_wait(c, &bf->sreq[s]));
        }
        bb_event_end("pipe.wait", 0, 0);
        if (*local == BB_OK && !upstream_failed) {
            bb_event_begin("pipe.compute");
            bb_status st = injected(p, stage, mb);
            if (st == BB_OK && p->prev < 0) st = bb_forward_embed(p->f, ids + mb * B * T, b, T, x);
            if (st == BB_OK) st = bb_forward_blocks(p->f, x, b, T);
            if (st == BB_OK && p->next < 0 && sink) {
                const float *out = x;
                if (p->with_head) {
                    st = bb_forward_head(p->f, x, b, T, bf->logits);
                    out = bf->logits;
                }
                if (st == BB_OK) st = sink(ud, mb * B, b, T, out);
            }
            bb_event_end("pipe.compute", 0, 0);
            if (st != BB_OK) *local = bb_trace(st, __FILE__, __LINE__, stage);
        }
        if (p->next >= 0) {
            x[count] = (*local != BB_OK || upstream_failed) ? 1.0f : 0.0f;
            BB_CALL(bb_comm_isend(c, x, sizeof(float) * (size_t)(count + 1), p->next, (int)(mb % PIPE_TAG_SPAN),
                                  &bf->sreq[s]));
        }
        POST_UPTO(mb + k - 1);
    }
#undef POST_UPTO
    for (int s = 0; s < k; s++) BB_CALL(bb_comm_wait(c, &bf->sreq[s]));
    for (int s = 0; s < k; s++) BB_CALL(bb_comm_wait(c, &bf->rreq[s]));
    return BB_OK;
}

bb_status bb_pipe_run(bb_pipe *p, const int32_t *ids, int64_t n_seq, int T, int micro_batch, const char *stage,
                      bb_pipe_sink_fn sink, void *ud) {
    /* Arguments are the same on every rank, so these errors are too. */
    BB_CHECK(n_seq >= 1 && T >= 1 && micro_batch >= 1, BB_ERR_ARG,
             "pipeline '%s': %lld sequences of %d tokens, micro-batch %d (all must be >= 1)", stage, (long long)n_seq,
             T, micro_batch);
    BB_CHECK(T <= p->m->cfg.max_seq_len, BB_ERR_ARG, "pipeline '%s': sequences of %d tokens exceed the context of %d",
             stage, T, p->m->cfg.max_seq_len);
    int B = micro_batch < n_seq ? micro_batch : (int)n_seq;
    BB_CHECK(((int64_t)B * T * p->m->cfg.dim + 1) * (int64_t)sizeof(float) <= (1ll << 31) - 1, BB_ERR_ARG,
             "pipeline '%s': a micro-batch of %d x %d rows of width %d exceeds one MPI message: lower the micro-batch",
             stage, B, T, p->m->cfg.dim);
    pipe_bufs bf = {0};
    /* Every working rank needs its buffers before any message moves. */
    bb_status local = p->f ? alloc_bufs(p, (int64_t)B * T, &bf) : BB_OK;
    bb_status st = bb_dist_agree(p->d, local);
    if (st == BB_OK && p->f) {
        st = pass(p, &bf, ids, n_seq, T, B, stage, sink, ud, &local);
        if (st != BB_OK) {
            /* A failed MPI call leaves the pipeline in an unknown state: the
             * caller's main() aborts the job (bb_dist_abort). */
            free_bufs(&bf, p->k);
            return st;
        }
    }
    free_bufs(&bf, p->k);
    if (st == BB_OK) st = bb_dist_agree(p->d, local);
    BB_CALL(st);
    return BB_OK;
}

/* ---- calibration ------------------------------------------------------------------ */

bb_status bb_pipe_calib_create(bb_pipe *p, const bb_calib_opts *o, bb_calib **out) {
    *out = NULL;
    const bb_plan_rank *pr = bb_pipe_rank(p);
    if (!pr->active || pr->layer_end == pr->layer_begin) return BB_OK;
    bb_calib_opts r = *o;
    r.layer_begin = pr->layer_begin;
    r.layer_end = pr->layer_end;
    BB_CALL(bb_calib_create(p->m, &r, out));
    return BB_OK;
}

/* Non-finite rows and values left out so far, over the collector's layers and inputs. */
static bb_status nonfinite_totals(bb_calib *c, int64_t *rows, int64_t *vals) {
    const bb_calib_opts *o = bb_calib_options(c);
    *rows = *vals = 0;
    for (int l = o->layer_begin; l < o->layer_end; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s;
            BB_CALL(bb_calib_stats_input(c, l, (bb_calib_input)i, &s));
            *rows += s->n_rows_nonfinite;
            *vals += s->n_nonfinite;
        }
    return BB_OK;
}

bb_status bb_pipe_calib_run(bb_pipe *p, bb_calib *c, const bb_tokens *stream, int micro_batch) {
    BB_CHECK(stream->seq_len > 0 && stream->n_seq > 0, BB_ERR_ARG,
             "calibration needs a stream of sequences, got a flat stream of %lld tokens: cut windows with "
             "bb_calib_sample_windows (calib.samples x calib.seq_len)",
             (long long)stream->n);
    const bb_plan_rank *pr = bb_pipe_rank(p);
    bb_status st = BB_OK;
    if (p->f && pr->layer_end > pr->layer_begin) {
        if (!c)
            st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                          "rank %d holds blocks [%d, %d) but was given no calibration collector (bb_pipe_calib_create)",
                          p->d->rank, pr->layer_begin, pr->layer_end);
        else
            st = bb_calib_attach(c, p->f);
    }
    BB_CALL(bb_dist_agree(p->d, st));
    int64_t rows0 = 0, vals0 = 0, rows1 = 0, vals1 = 0;
    if (c) BB_CALL(nonfinite_totals(c, &rows0, &vals0));
    bb_event_begin("calib.pipeline");
    st = bb_pipe_run(p, stream->ids, stream->n_seq, stream->seq_len, micro_batch, "calib", NULL, NULL);
    bb_event_end("calib.pipeline", 0, 0);
    if (p->f) bb_forward_set_hook(p->f, NULL, NULL);
    BB_CALL(st);
    if (c) BB_CALL(nonfinite_totals(c, &rows1, &vals1));
    if (rows1 > rows0)
        bb_warn("calibration: %lld NaN/Inf activation values in %lld rows (summed over the inputs of layers [%d, %d)) "
                "were left out of the statistics",
                (long long)(vals1 - vals0), (long long)(rows1 - rows0), pr->layer_begin, pr->layer_end);
    return BB_OK;
}

/* ---- perplexity ------------------------------------------------------------------- */

typedef struct {
    bb_ppl_scorer *s;
    const int32_t *wins; /* (n_windows, n_ctx) */
    int T;
} eval_sink;

static bb_status score_sink(void *ud, int64_t s0, int b, int T, const float *logits) {
    eval_sink *e = ud;
    BB_CALL(bb_ppl_scorer_add(e->s, logits, e->wins + s0 * e->T, b));
    return BB_OK;
}

bb_status bb_pipe_eval_perplexity(bb_pipe *p, const int32_t *tokens, int64_t n, const bb_ppl_opts *o, bb_ppl_result *r,
                                  bb_logprobs *save, const bb_logprobs *ref, bb_kld_result *kld) {
    memset(r, 0, sizeof *r);
    if (save) memset(save, 0, sizeof *save);
    BB_CHECK(!ref || kld, BB_ERR_ARG, "a reference needs a KLD result to fill");
    BB_CHECK(p->with_head, BB_ERR_ARG, "perplexity through the pipeline needs a pipe created with the head");
    int head = bb_plan_head_rank(p->plan); /* with the head, the last working rank is the plan's head rank */
    bb_ppl_scorer *s = NULL;
    /* Windowing errors are the same on every rank; allocation ones are agreed. */
    bb_status st = bb_ppl_scorer_create(&p->m->cfg, n, o, p->is_head ? save : NULL, p->is_head ? ref : NULL, &s);
    st = bb_dist_agree(p->d, st);
    if (st != BB_OK) {
        bb_ppl_scorer_destroy(&s);
        return bb_trace(st, __FILE__, __LINE__, "bb_ppl_scorer_create");
    }
    int32_t *wins = NULL;
    int64_t nw = bb_ppl_scorer_windows(s);
    int T = o->n_ctx;
    st = bb_malloc((void **)&wins, sizeof(int32_t) * (size_t)(nw * T), "evaluation windows");
    if (st == BB_OK) bb_ppl_scorer_fill(s, tokens, 0, (int)nw, wins);
    st = bb_dist_agree(p->d, st);
    eval_sink e = {s, wins, T};
    if (st == BB_OK) {
        bb_event_begin("eval.pipeline");
        st = bb_pipe_run(p, wins, nw, T, bb_ppl_scorer_batch(s), "eval", p->is_head ? score_sink : NULL, &e);
        bb_event_end("eval.pipeline", 0, 0);
    }
    if (st == BB_OK) {
        bb_kld_result kl = {0};
        bb_status fin = p->is_head ? bb_ppl_scorer_finish(s, r, &kl) : BB_OK;
        st = bb_dist_agree(p->d, fin);
        /* The head rank scored every window in order: its result is the answer. */
        if (st == BB_OK) {
            st = bb_comm_bcast(p->c, r, sizeof *r, head);
            if (st == BB_OK && ref) st = bb_comm_bcast(p->c, &kl, sizeof kl, head);
            if (ref) *kld = kl;
        }
    }
    free(wins);
    bb_ppl_scorer_destroy(&s);
    if (st != BB_OK) memset(r, 0, sizeof *r);
    BB_CALL(st);
    return BB_OK;
}
