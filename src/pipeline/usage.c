/* usage.c — stage 1 (Density assessment): calibration statistics of every
 * linear layer input, kept for the later stages and saved to HDF5. */
#include <stdio.h>

#include "core/events.h"
#include "core/log.h"
#include "mpi/stats_h5.h"
#include "pipeline/run.h"

static bb_status collect(bb_run *r) {
    const bb_config *c = &r->cfg;
    bb_tokens windows = {0};
    const bb_tokens *stream = &r->calib;
    if (r->calib.seq_len == 0) {
        /* A text stream: the seeded sampler picks calib.samples windows of calib.seq_len. */
        BB_CALL(bb_calib_sample_windows(&r->calib, (int)c->calib.samples, (int)c->calib.seq_len, (uint64_t)c->run.seed,
                                        r->model->cfg.bos_id, &windows));
        stream = &windows;
    }
    bb_calib_opts o;
    bb_forward *f = NULL;
    bb_status st;
    BB_CALL_GOTO(st, out, bb_calib_opts_from_config(c, &o));
    BB_CALL_GOTO(st, out, bb_calib_create(r->model, &o, &r->stats));
    BB_CALL_GOTO(st, out, bb_forward_create(r->model, stream->seq_len, &f));
    int mb = (int)(c->calib.micro_batch < stream->n_seq ? c->calib.micro_batch : stream->n_seq);
    BB_CALL_GOTO(st, out, bb_calib_run(r->stats, f, stream, mb));
    char path[1200];
    snprintf(path, sizeof path, "%s/calib_stats.h5", c->run.dir);
    BB_CALL_GOTO(st, out, bb_stats_h5_write(path, r->stats, r->hash));
    bb_info("calib   %d sequences x %d tokens through %d layers; statistics in %s", stream->n_seq, stream->seq_len,
            r->model->cfg.n_layers, path);
out:
    bb_forward_destroy(&f);
    bb_tokens_free(&windows);
    if (st != BB_OK) bb_calib_destroy(&r->stats);
    return st;
}

bb_status bb_stage_usage(bb_run *r) {
    /* One rank collects every layer until the pipelined calibration lands. */
    bb_status st = r->dist->rank == 0 ? collect(r) : BB_OK;
    return bb_dist_agree(r->dist, st);
}
