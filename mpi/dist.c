/* dist.c — MPI lifecycle, error agreement and the cross-rank event report. */
#include "mpi/dist.h"

#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "core/status.h"

bb_status bb_mpi_error(int rc, const char *file, int line, const char *expr) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error code %d", rc);
    return bb_error(BB_ERR_MPI, file, line, "%s failed: %s", expr, msg);
}

bb_status bb_dist_init(int *argc, char ***argv, bb_dist *d) {
    memset(d, 0, sizeof *d);
    int inited = 0;
    BB_MPI_CALL(MPI_Initialized(&inited));
    if (!inited) {
        int provided;
        BB_MPI_CALL(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
        d->we_initialized = 1;
    }
    BB_MPI_CALL(MPI_Comm_dup(MPI_COMM_WORLD, &d->comm));
    /* Errors come back as codes so that BB_MPI_CALL can report them with context. */
    BB_MPI_CALL(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN));
    BB_MPI_CALL(MPI_Comm_rank(d->comm, &d->rank));
    BB_MPI_CALL(MPI_Comm_size(d->comm, &d->size));
    BB_MPI_CALL(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &d->node_comm));
    BB_MPI_CALL(MPI_Comm_rank(d->node_comm, &d->local_rank));
    BB_MPI_CALL(MPI_Comm_size(d->node_comm, &d->local_size));
    int len = 0;
    BB_MPI_CALL(MPI_Get_processor_name(d->processor, &len));
    bb_log_set_rank(d->rank, d->size);
    return BB_OK;
}

void bb_dist_finalize(bb_dist *d) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (d->node_comm != MPI_COMM_NULL && d->node_comm) MPI_Comm_free(&d->node_comm);
    if (d->comm != MPI_COMM_NULL && d->comm) MPI_Comm_free(&d->comm);
    if (d->we_initialized) MPI_Finalize();
    d->we_initialized = 0;
}

bb_status bb_dist_agree(const bb_dist *d, bb_status local) {
    /* The lowest failing rank (or size if none) tells everyone its status. */
    int mine = local != BB_OK ? d->rank : d->size, first;
    BB_MPI_CALL(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm));
    if (first == d->size) return BB_OK;
    int code = (int)local;
    BB_MPI_CALL(MPI_Bcast(&code, 1, MPI_INT, first, d->comm));
    if (local != BB_OK) return local;
    /* The failing rank has reported the error; the others stop quietly. */
    bb_debug("stopping because rank %d failed (%s)", first, bb_status_name((bb_status)code));
    return (bb_status)code;
}

_Noreturn void bb_dist_abort(const bb_dist *d, int code) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    fflush(stdout);
    fflush(stderr);
    if (inited && !fin && d && d->size > 1) MPI_Abort(d->comm ? d->comm : MPI_COMM_WORLD, code);
    if (inited && !fin) MPI_Finalize();
    exit(code);
}

bb_status bb_dist_events_report(const bb_dist *d, FILE *f) {
    const bb_event_stat *ev;
    int n = bb_events_get(&ev);
    /* Rank 0's event names define the rows; others look them up by name. */
    int n0 = n;
    BB_MPI_CALL(MPI_Bcast(&n0, 1, MPI_INT, 0, d->comm));
    if (n0 == 0) return BB_OK;
    char *names;
    double *mine, *mn, *mx, *sum;
    BB_CALL(bb_calloc((void **)&names, (size_t)n0, BB_EVENT_NAME_MAX, "event names"));
    bb_status st = bb_calloc((void **)&mine, (size_t)n0 * 4, sizeof(double), "event times");
    if (st) {
        free(names);
        return st;
    }
    mn = mine + n0;
    mx = mine + 2 * n0;
    sum = mine + 3 * n0;
    if (d->rank == 0)
        for (int i = 0; i < n0; i++) memcpy(names + (size_t)i * BB_EVENT_NAME_MAX, ev[i].name, BB_EVENT_NAME_MAX);
    int rc = MPI_Bcast(names, n0 * BB_EVENT_NAME_MAX, MPI_CHAR, 0, d->comm);
    for (int i = 0; rc == MPI_SUCCESS && i < n0; i++)
        for (int j = 0; j < n; j++)
            if (!strncmp(ev[j].name, names + (size_t)i * BB_EVENT_NAME_MAX, BB_EVENT_NAME_MAX)) mine[i] = ev[j].seconds;
    if (rc == MPI_SUCCESS) rc = MPI_Reduce(mine, mn, n0, MPI_DOUBLE, MPI_MIN, 0, d->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Reduce(mine, mx, n0, MPI_DOUBLE, MPI_MAX, 0, d->comm);
    if (rc == MPI_SUCCESS) rc = MPI_Reduce(mine, sum, n0, MPI_DOUBLE, MPI_SUM, 0, d->comm);
    if (rc == MPI_SUCCESS && d->rank == 0) {
        fprintf(f, "%-28s %8s %10s %10s %10s %10s\n", "event", "count", "min [s]", "avg [s]", "max [s]", "GFLOP/s");
        for (int i = 0; i < n0; i++) {
            double gf = ev[i].seconds > 0 && ev[i].flops > 0 ? ev[i].flops / ev[i].seconds * 1e-9 : 0;
            fprintf(f, "%-28s %8ld %10.4f %10.4f %10.4f %10.2f\n", names + (size_t)i * BB_EVENT_NAME_MAX, ev[i].count,
                    mn[i], sum[i] / d->size, mx[i], gf);
        }
    }
    free(mine);
    free(names);
    if (rc != MPI_SUCCESS) return bb_mpi_error(rc, __FILE__, __LINE__, "event report");
    return BB_OK;
}
