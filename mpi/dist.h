/* dist.h — the one distributed lifecycle: MPI init/finalize, node-local ranks,
 * error agreement across ranks, abort, and the cross-rank timing report.
 *
 * MPI is initialized only if nobody did (a host application may own it) and
 * finalized only by whoever initialized it. A single process started without
 * mpirun works: Open MPI runs it as a singleton. */
#ifndef BB_MPI_DIST_H
#define BB_MPI_DIST_H

#include <mpi.h>
#include <stdio.h>

#include "core/status.h"

typedef struct {
    MPI_Comm comm;       /* the job's communicator (a dup of MPI_COMM_WORLD) */
    MPI_Comm node_comm;  /* ranks on this node */
    int rank, size;
    int local_rank, local_size; /* within the node: binds GPUs */
    int we_initialized;  /* finalize only what we initialized */
    char processor[MPI_MAX_PROCESSOR_NAME];
} bb_dist;

/* Report a failed MPI call (with the library's error string). */
bb_status bb_mpi_error(int rc, const char *file, int line, const char *expr);
#define BB_MPI_CALL(expr)                                                      \
    do {                                                                       \
        int bb_rc_ = (expr);                                                   \
        if (bb_rc_ != MPI_SUCCESS) return bb_mpi_error(bb_rc_, __FILE__, __LINE__, #expr); \
    } while (0)

/* Collective over MPI_COMM_WORLD. Sets the log rank prefix. */
bb_status bb_dist_init(int *argc, char ***argv, bb_dist *d);
/* Collective. Frees communicators; finalizes MPI if bb_dist_init started it. */
void bb_dist_finalize(bb_dist *d);

/* Collective: every rank passes its local status; returns BB_OK on all ranks
 * only if all were OK, otherwise the lowest failing rank's status everywhere
 * (so ranks leave a stage together instead of one hanging in a later call).
 * Only the failing rank has printed an error; the others stay quiet. */
bb_status bb_dist_agree(const bb_dist *d, bb_status local);

/* End the whole job after a reported error: MPI_Abort when several ranks run
 * (no rank is left hanging), else exit. Only main() calls this. */
_Noreturn void bb_dist_abort(const bb_dist *d, int code);

/* Collective: table of timing events with min/avg/max seconds over ranks,
 * printed by rank 0 (events missing on a rank count as 0 there). */
bb_status bb_dist_events_report(const bb_dist *d, FILE *f);

#endif
