/* resources.c — per-stage memory and MPI traffic of every rank, for the run summary (resources.h). */
#include "pipeline/resources.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MIB (1024.0 * 1024.0)

bb_status bb_run_resources_gather(const bb_run *r, bb_run_resources *out) {
    memset(out, 0, sizeof *out);
    const bb_stage *s;
    int n = bb_pipeline_stages(&s);
    BB_CHECK(n <= 16, BB_ERR_ARG, "%d stages: the run keeps the use of 16", n);
    const bb_dist *d = r->dist;
    int per = (n + 1) * BB_USE_FIELDS;
    double mine[(16 + 1) * BB_USE_FIELDS];
    for (int i = 0; i <= n; i++) {
        const bb_stage_use *u = i < n ? &r->stage_use[i] : &r->other_use;
        double *m = mine + i * BB_USE_FIELDS;
        m[BB_USE_COMM_S] = u->comm_seconds;
        m[BB_USE_SENT] = u->bytes_sent;
        m[BB_USE_RECV] = u->bytes_recv;
        m[BB_USE_PEAK] = (double)u->peak_rss;
        m[BB_USE_CPU_S] = u->cpu_seconds;
    }
    out->n_ranks = d->size;
    out->n_slots = n + 1;
    if (d->rank == 0) BB_CALL(bb_malloc((void **)&out->v, sizeof(double) * (size_t)per * (size_t)d->size, "stage use"));
    int rc = MPI_Gather(mine, per, MPI_DOUBLE, out->v, per, MPI_DOUBLE, 0, d->comm);
    int resets = r->peak_resets, all = 0;
    if (rc == MPI_SUCCESS) rc = MPI_Reduce(&resets, &all, 1, MPI_INT, MPI_MIN, 0, d->comm);
    out->peak_per_stage = all;
    if (rc != MPI_SUCCESS) {
        bb_run_resources_free(out);
        return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Gather(stage use)");
    }
    return BB_OK;
}

void bb_run_resources_free(bb_run_resources *res) {
    if (!res) return;
    free(res->v);
    res->v = NULL;
}

/* min, max and sum over ranks of one field of slot s. */
static void over_ranks(const bb_run_resources *res, int s, int field, double *mn, double *mx, double *sum) {
    *mn = INFINITY;
    *mx = -INFINITY;
    *sum = 0;
    for (int k = 0; k < res->n_ranks; k++) {
        double x = res->v[((size_t)k * (size_t)res->n_slots + (size_t)s) * BB_USE_FIELDS + field];
        *mn = fmin(*mn, x);
        *mx = fmax(*mx, x);
        *sum += x;
    }
}

/* One rank's totals over every slot: seconds and bytes summed, the peak the largest. */
static void rank_totals(const bb_run_resources *res, int k, double t[BB_USE_FIELDS]) {
    memset(t, 0, sizeof(double) * BB_USE_FIELDS);
    for (int s = 0; s < res->n_slots; s++) {
        const double *x = res->v + ((size_t)k * (size_t)res->n_slots + (size_t)s) * BB_USE_FIELDS;
        t[BB_USE_COMM_S] += x[BB_USE_COMM_S];
        t[BB_USE_SENT] += x[BB_USE_SENT];
        t[BB_USE_RECV] += x[BB_USE_RECV];
        t[BB_USE_CPU_S] += x[BB_USE_CPU_S];
        t[BB_USE_PEAK] = fmax(t[BB_USE_PEAK], x[BB_USE_PEAK]);
    }
}

static const char *slot_name(int s) {
    const bb_stage *st;
    int n = bb_pipeline_stages(&st);
    return s < n ? st[s].name : "other";
}

static void human(double b, char *buf, size_t n) {
    if (b < 1024) snprintf(buf, n, "%.0f B", b);
    else if (b < MIB) snprintf(buf, n, "%.1f KiB", b / 1024);
    else if (b < 1024 * MIB) snprintf(buf, n, "%.1f MiB", b / MIB);
    else snprintf(buf, n, "%.2f GiB", b / (1024 * MIB));
}

void bb_run_resources_print(const bb_run_resources *res) {
    if (!res->v) return;
    char mem[1024] = "", comm[1024] = "";
    size_t um = 0, uc = 0;
    for (int s = 0; s < res->n_slots; s++) {
        double mn, mx, sum, tmn, tmx, tsum, rmn, rmx, rsum;
        over_ranks(res, s, BB_USE_PEAK, &mn, &mx, &sum);
        over_ranks(res, s, BB_USE_COMM_S, &tmn, &tmx, &tsum);
        over_ranks(res, s, BB_USE_SENT, &rmn, &rmx, &rsum);
        if (mx <= 0 && tmx <= 0) continue; /* a stage that did not run */
        if (um < sizeof mem)
            um += (size_t)snprintf(mem + um, sizeof mem - um, "%s%s %.0f-%.0f", um ? ", " : "", slot_name(s), mn / MIB,
                                   mx / MIB);
        char hb[32];
        human(rsum, hb, sizeof hb);
        if (uc < sizeof comm)
            uc += (size_t)snprintf(comm + uc, sizeof comm - uc, "%s%s %s %.2f s", uc ? ", " : "", slot_name(s), hb, tmx);
    }
    bb_info("memory       peak RSS per rank, MiB (min-max over ranks%s): %s",
            res->peak_per_stage ? "" : "; running maxima, the peak could not be reset", mem);
    if (res->n_ranks > 1) bb_info("MPI          sent by all ranks, most seconds in MPI on one rank: %s", comm);
    for (int k = 0; k < res->n_ranks && res->n_ranks > 1; k++) {
        double t[BB_USE_FIELDS];
        rank_totals(res, k, t);
        char hs[32], hr[32];
        human(t[BB_USE_SENT], hs, sizeof hs);
        human(t[BB_USE_RECV], hr, sizeof hr);
        bb_info("             rank %d: peak %.0f MiB, sent %s, received %s, %.2f s in MPI, %.1f CPU s", k,
                t[BB_USE_PEAK] / MIB, hs, hr, t[BB_USE_COMM_S], t[BB_USE_CPU_S]);
    }
}

static void slot_json(const bb_run_resources *res, int s, FILE *f) {
    double mn, mx, sum;
    over_ranks(res, s, BB_USE_PEAK, &mn, &mx, &sum);
    fprintf(f, "\"peak_rss_mib\": {\"min\": %.1f, \"max\": %.1f}", mn / MIB, mx / MIB);
    over_ranks(res, s, BB_USE_COMM_S, &mn, &mx, &sum);
    fprintf(f, ", \"comm_seconds\": {\"min\": %.6f, \"max\": %.6f}", mn, mx);
    over_ranks(res, s, BB_USE_CPU_S, &mn, &mx, &sum);
    fprintf(f, ", \"cpu_seconds\": {\"min\": %.6f, \"max\": %.6f}", mn, mx);
    over_ranks(res, s, BB_USE_SENT, &mn, &mx, &sum);
    fprintf(f, ", \"bytes_sent\": {\"sum\": %.0f, \"max\": %.0f}", sum, mx);
    over_ranks(res, s, BB_USE_RECV, &mn, &mx, &sum);
    /* rank 0's own: what came to the rank that writes the run-level files (mpi.rank0_traffic) */
    fprintf(f, ", \"bytes_received\": {\"sum\": %.0f, \"max\": %.0f, \"rank0\": %.0f}", sum, mx,
            res->v[(size_t)s * BB_USE_FIELDS + BB_USE_RECV]);
}

void bb_run_resources_stage_json(const bb_run_resources *res, int s, FILE *f) {
    if (!res->v) return;
    fprintf(f, ", ");
    slot_json(res, s, f);
}

void bb_run_resources_json(const bb_run_resources *res, FILE *f) {
    if (!res->v) return;
    fprintf(f, "  \"resources\": {\n    \"peak_rss_per_stage\": %s,\n    \"outside_stages\": {",
            res->peak_per_stage ? "true" : "false");
    slot_json(res, res->n_slots - 1, f);
    fprintf(f, "},\n    \"per_rank\": [");
    for (int k = 0; k < res->n_ranks; k++) {
        double t[BB_USE_FIELDS];
        rank_totals(res, k, t);
        fprintf(f,
                "%s\n      {\"rank\": %d, \"peak_rss_mib\": %.1f, \"comm_seconds\": %.6f, \"cpu_seconds\": %.6f, "
                "\"bytes_sent\": %.0f, \"bytes_received\": %.0f}",
                k ? "," : "", k, t[BB_USE_PEAK] / MIB, t[BB_USE_COMM_S], t[BB_USE_CPU_S], t[BB_USE_SENT],
                t[BB_USE_RECV]);
    }
    fprintf(f, "\n    ]\n  },\n");
}
