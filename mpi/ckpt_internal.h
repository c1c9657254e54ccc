/* ckpt_internal.h — what the checkpoint reader (ckpt.c) and writer (ckpt_write.c)
 * share: the ranks a file is written or read by, and the names inside it. */
#ifndef BB_MPI_CKPT_INTERNAL_H
#define BB_MPI_CKPT_INTERNAL_H

#include "mpi/ckpt.h"

/* A bb_ckpt_group resolved: comm is MPI_COMM_SELF (size 1) for a process alone. */
typedef struct {
    MPI_Comm comm;
    int rank, size;
    const int *owner; /* (n_lin) or NULL: rank 0 holds everything */
} bb_ckpt_part;

/* Resolve g (NULL: this process alone) for a state of n_lin linear weights.
 * Errors: BB_ERR_ARG (an owner outside the communicator), BB_ERR_MPI. Not
 * collective (every rank checks the same table). */
bb_status bb_ckpt_part_of(const bb_ckpt_group *g, int n_lin, bb_ckpt_part *p);
/* Whether this rank writes / reads linear weight i. */
int bb_ckpt_part_holds(const bb_ckpt_part *p, int i);
/* Collective over p: BB_OK everywhere only if local is BB_OK everywhere, else
 * the lowest failing rank's status on every rank (only that rank reported). */
bb_status bb_ckpt_part_agree(const bb_ckpt_part *p, bb_status local);

/* "layer_LLL/<kind>" of linear weight i. */
void bb_ckpt_group_name(int i, char *buf, size_t n);
/* "<path>.DONE". */
bb_status bb_ckpt_marker_path(const char *path, char *buf, size_t n);

#endif
