/* passes.c — the run's forward passes over the sharding plan: calibration
 * statistics and perplexity/KLD, pipelined across ranks (mpi/pipe.h). On one
 * rank they are bb_calib_run and bb_eval_perplexity with the same numbers. */
#include "core/events.h"
#include "core/log.h"
#include "mpi/pipe.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

bb_status bb_run_calibrate(bb_run *r, const bb_model *m, const bb_tokens *stream, bb_calib **out) {
    const bb_config *c = &r->cfg;
    *out = NULL;
    bb_calib_opts o;
    BB_CALL(bb_calib_opts_from_config(c, &o));
    bb_pipe *p = NULL;
    bb_calib *cal = NULL;
    int mb = (int)(c->calib.micro_batch < stream->n_seq ? c->calib.micro_batch : stream->n_seq);
    bb_event_begin("calib.pipeline");
    bb_status st = bb_pipe_create(r->dist, m, &r->plan, 0, (int)c->calib.in_flight, &p);
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
    bb_status st = bb_pipe_create(r->dist, m, &r->plan, 1, (int)c->calib.in_flight, &p);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = bb_pipe_eval_perplexity(p, ev->ids, ev->n, &o, res, save, ref, kld);
    bb_event_end("eval.pipeline", 0, 0);
    bb_pipe_destroy(&p);
    return st;
}
