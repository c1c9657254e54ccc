/* passes.c — the run's forward passes over the sharding plan: calibration
 * statistics and perplexity/KLD, pipelined across ranks (mpi/pipe.h). On one
 * rank they are bb_calib_run and bb_eval_perplexity with the same numbers. */
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "mpi/pipe.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

/* The forward passes compute with Ŵ + A·B: the factors are merged into this
 * rank's working weights while the pipe copies them, then the sparse Ŵ comes
 * back bit for bit from *saved. Only when m is the run's working model. */
static bb_status factors_in(bb_run *r, const bb_model *m, float ***saved) {
    *saved = NULL;
    bb_state *s = &r->state;
    if (!s->n_lin || !r->weights || m != bb_run_current_model(r)) return BB_OK;
    int any = 0;
    for (int i = 0; i < s->n_lin; i++) any |= bb_run_mine(r, i) && s->lora[i] && s->w[i];
    if (!any) return BB_OK;
    BB_CALL(bb_calloc((void **)saved, (size_t)s->n_lin, sizeof **saved, "saved weights"));
    for (int i = 0; i < s->n_lin; i++) {
        if (!bb_run_mine(r, i) || !s->lora[i] || !s->w[i]) continue;
        size_t nb = sizeof(float) * (size_t)(bb_tensor_rows(s->t[i]) * bb_tensor_cols(s->t[i]));
        BB_CALL(bb_malloc((void **)&(*saved)[i], nb, "saved weight"));
        memcpy((*saved)[i], s->w[i], nb);
        bb_lora_merge(s->lora[i], s->w[i]);
    }
    return BB_OK;
}

static void factors_out(bb_run *r, float **saved) {
    if (!saved) return;
    bb_state *s = &r->state;
    for (int i = 0; i < s->n_lin; i++)
        if (saved[i]) {
            memcpy(s->w[i], saved[i], sizeof(float) * (size_t)(bb_tensor_rows(s->t[i]) * bb_tensor_cols(s->t[i])));
            free(saved[i]);
        }
    free(saved);
}

bb_status bb_run_calibrate(bb_run *r, const bb_model *m, const bb_tokens *stream, bb_calib **out) {
    const bb_config *c = &r->cfg;
    *out = NULL;
    bb_calib_opts o;
    BB_CALL(bb_calib_opts_from_config(c, &o));
    bb_pipe *p = NULL;
    bb_calib *cal = NULL;
    int mb = (int)(c->calib.micro_batch < stream->n_seq ? c->calib.micro_batch : stream->n_seq);
    bb_event_begin("calib.pipeline");
    float **saved = NULL;
    bb_status st = factors_in(r, m, &saved);
    if (st == BB_OK) st = bb_pipe_create(r->dist, m, &r->plan, 0, (int)c->calib.in_flight, &p);
    factors_out(r, saved);
    if (st == BB_OK) st = bb_pipe_calib_create(p, &o, &cal);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = bb_pipe_calib_run(p, cal, stream, mb);
    bb_event_end("calib.pipeline", 0, 0);
    bb_pipe_destroy(&p);
    if (st != BB_OK) {
        bb_calib_destroy(&cal);
        return st;
    }
    *out = cal;
    return BB_OK;
}

bb_status bb_run_evaluate(bb_run *r, const bb_model *m, const bb_tokens *ev, bb_ppl_result *res, bb_logprobs *save,
                          const bb_logprobs *ref, bb_kld_result *kld) {
    const bb_config *c = &r->cfg;
    bb_ppl_opts o = {.n_ctx = (int)c->eval.n_ctx, .max_windows = (int)c->eval.max_windows, .bos_id = m->cfg.bos_id};
    bb_pipe *p = NULL;
    bb_event_begin("eval.pipeline");
    float **saved = NULL;
    bb_status st = factors_in(r, m, &saved);
    if (st == BB_OK) st = bb_pipe_create(r->dist, m, &r->plan, 1, (int)c->calib.in_flight, &p);
    factors_out(r, saved);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = bb_pipe_eval_perplexity(p, ev->ids, ev->n, &o, res, save, ref, kld);
    bb_event_end("eval.pipeline", 0, 0);
    bb_pipe_destroy(&p);
    return st;
}
