/* usage.c — stage 1 (Density assessment): calibration statistics of every
 * linear layer input, kept for the later stages and saved to HDF5. */
#include <stdio.h>

#include "core/events.h"
#include "core/log.h"
#include "mpi/stats_h5.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

/* The calibration statistics of the dense model, each rank those of its own
 * blocks (pipelined over the sharding plan), saved to HDF5: calib_stats.h5 on
 * one rank, else one file per rank with blocks, calib_stats.<l0>-<l1>.h5. */
bb_status bb_stage_usage(bb_run *r) {
    const bb_config *c = &r->cfg;
    bb_tokens windows = {0};
    const bb_tokens *stream = &r->calib;
    bb_status st = BB_OK;
    if (r->calib.seq_len == 0) {
        /* A text stream: the seeded sampler picks calib.samples windows of calib.seq_len (the same on every rank). */
        st = bb_calib_sample_windows(&r->calib, (int)c->calib.samples, (int)c->calib.seq_len, (uint64_t)c->run.seed,
                                     r->model->cfg.bos_id, &windows);
        stream = &windows;
    }
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
    BB_CALL_GOTO(st, out, bb_run_calibrate(r, r->model, stream, &r->stats));
    char path[1200];
    if (r->dist->size == 1)
        snprintf(path, sizeof path, "%s/calib_stats.h5", c->run.dir);
    else
        snprintf(path, sizeof path, "%s/calib_stats.%d-%d.h5", c->run.dir, r->l0, r->l1);
    st = r->stats ? bb_stats_h5_write(path, r->stats, r->hash) : BB_OK;
    BB_CALL_GOTO(st, out, bb_dist_agree(r->dist, st));
    bb_info("calib   %d sequences x %d tokens through %d layers; statistics in %s", stream->n_seq, stream->seq_len,
            r->model->cfg.n_layers,
            r->dist->size == 1 ? path : "calib_stats.<first>-<end>.h5, one file per rank's blocks");
out:
    bb_tokens_free(&windows);
    if (st != BB_OK) bb_calib_destroy(&r->stats);
    return st;
}
