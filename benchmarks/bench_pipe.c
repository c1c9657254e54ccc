/* bench_pipe.c — the pipelined calibration forward against the single-process bb_calib_run, measured in the same run.
 *
 *   OPENBLAS_NUM_THREADS=1 mpiexec -n N bench_pipe [MODEL [SEQS [SEQ_LEN [MICRO [IN_FLIGHT]]]]]
 *
 * Rank 0 first times bb_calib_run on the whole model (the others wait), then every rank runs the pipeline; rank 0
 * prints one CSV line: ranks, the single-process and the pipelined seconds, speedup, parallel efficiency, the bytes a
 * rank sends, and the largest pipe.wait share. Defaults: synthetic:small, 16 sequences of 128 tokens, micro-batch 2,
 * 2 in flight. */
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "core/rng.h"
#include "mpi/pipe.h"

int main(int argc, char **argv) {
    bb_dist d;
    if (bb_dist_init(&argc, &argv, &d) != BB_OK) return 1;
    const char *path = argc > 1 ? argv[1] : "synthetic:small";
    int seqs = argc > 2 ? atoi(argv[2]) : 16, T = argc > 3 ? atoi(argv[3]) : 128, mb = argc > 4 ? atoi(argv[4]) : 2,
        k = argc > 5 ? atoi(argv[5]) : 2;
    bb_log_set_level(BB_LOG_WARN);
    bb_model *m = NULL;
    bb_status st = bb_model_open(path, &m);
    if (st != BB_OK) bb_dist_abort(&d, 1);
    bb_tokens win = {0};
    win.n_seq = seqs, win.seq_len = T, win.n = (int64_t)seqs * T, win.vocab_size = m->cfg.vocab_size;
    win.ids = malloc(sizeof(int32_t) * (size_t)win.n);
    bb_rng r = bb_rng_make(5, bb_rng_stream_id("bench.pipe"));
    for (int64_t i = 0; i < win.n; i++)
        win.ids[i] = (int32_t)(bb_rng_u64(r, (uint64_t)i) % (uint64_t)m->cfg.vocab_size);
    bb_calib_opts co;
    bb_calib_opts_default(&co);
    double t_single = 0;
    if (d.rank == 0) {
        bb_forward *f = NULL;
        bb_calib *c = NULL;
        if (bb_forward_create(m, 0, &f) || bb_calib_create(m, &co, &c)) bb_dist_abort(&d, 1);
        double t0 = bb_now();
        if (bb_calib_run(c, f, &win, mb)) bb_dist_abort(&d, 1);
        t_single = bb_now() - t0;
        bb_calib_destroy(&c);
        bb_forward_destroy(&f);
    }
    MPI_Barrier(d.comm);
    bb_plan plan;
    bb_plan_opts po = {.tokens = win.n, .seq_len = T, .micro_batch = mb, .in_flight = k, .gram_bytes = 4};
    bb_pipe *p = NULL;
    bb_calib *c = NULL;
    if (bb_plan_make(&m->cfg, &po, d.size, &plan) || bb_pipe_create(&d, m, &plan, 0, k, &p) ||
        bb_pipe_calib_create(p, &co, &c))
        bb_dist_abort(&d, 1);
    if (d.rank == 0) bb_plan_print(&plan, stderr);
    MPI_Barrier(d.comm);
    double t0 = bb_now();
    if (bb_pipe_calib_run(p, c, &win, mb)) bb_dist_abort(&d, 1);
    double t_pipe = bb_now() - t0, t_max = 0;
    MPI_Allreduce(&t_pipe, &t_max, 1, MPI_DOUBLE, MPI_MAX, d.comm);
    const bb_event_stat *ev;
    int ne = bb_events_get(&ev);
    double wait = 0, wait_max = 0;
    for (int i = 0; i < ne; i++)
        if (!strcmp(ev[i].name, "pipe.wait")) wait = ev[i].seconds;
    MPI_Allreduce(&wait, &wait_max, 1, MPI_DOUBLE, MPI_MAX, d.comm);
    double sent = (double)win.n * m->cfg.dim * 4;
    if (d.rank == 0) {
        printf("model,ranks,seqs,seq_len,micro,in_flight,single_s,pipe_s,speedup,efficiency,bytes_sent_per_rank,"
               "max_wait_share\n");
        printf("%s,%d,%d,%d,%d,%d,%.4f,%.4f,%.3f,%.3f,%.0f,%.3f\n", path, d.size, seqs, T, mb, k, t_single, t_max,
               t_single / t_max, t_single / t_max / d.size, d.size > 1 ? sent : 0.0, wait_max / t_max);
    }
    bb_calib_destroy(&c);
    bb_pipe_destroy(&p);
    bb_plan_free(&plan);
    free(win.ids);
    bb_model_destroy(&m);
    bb_dist_finalize(&d);
    return 0;
}
