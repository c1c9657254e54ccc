/* resources.h — what each rank used per stage (peak resident memory, CPU seconds, MPI seconds and bytes), gathered to
 * rank 0 for the run's summary table and summary.json. Internal to src/pipeline. */
#ifndef BB_PIPELINE_RESOURCES_H
#define BB_PIPELINE_RESOURCES_H

#include <stdio.h>

#include "pipeline/run.h"

/* Fields of one (rank, slot) entry. */
enum { BB_USE_COMM_S = 0, BB_USE_SENT, BB_USE_RECV, BB_USE_PEAK, BB_USE_CPU_S, BB_USE_FIELDS };

typedef struct {
    int n_ranks;
    int n_slots;        /* the stages of bb_pipeline_stages, then one slot for the time outside them */
    int peak_per_stage; /* every rank could reset its peak at each stage boundary */
    double *v;          /* (n_ranks, n_slots, BB_USE_FIELDS) on rank 0, NULL elsewhere */
} bb_run_resources;

/* Every rank's r->stage_use and r->other_use to rank 0. Collective. Errors: BB_ERR_MPI, BB_ERR_OOM. */
bb_status bb_run_resources_gather(const bb_run *r, bb_run_resources *out);
void bb_run_resources_free(bb_run_resources *res); /* NULL-safe */

/* The summary table's lines (rank 0). */
void bb_run_resources_print(const bb_run_resources *res);
/* `, "peak_rss_mib": {...}, "comm_seconds": {...}, "cpu_seconds": {...}, "bytes_sent": {...},
 * "bytes_received": {...}` for slot s: min/max over ranks of the peak and the seconds, sum/max of the bytes. */
void bb_run_resources_stage_json(const bb_run_resources *res, int s, FILE *f);
/* `"resources": {...}`: the slot outside the stages, and every rank's totals. */
void bb_run_resources_json(const bb_run_resources *res, FILE *f);

#endif
