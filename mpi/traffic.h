/* traffic.h — what this rank spent in MPI: calls, seconds inside them, payload bytes sent and received.
 *
 * Counted through MPI's profiling interface: traffic.c defines the MPI calls birdbone makes (point-to-point,
 * waits, the collectives) and forwards each to its PMPI_ twin, so every call site — the pipeline, the
 * deterministic communicator, the moves to rank 0, the checkpoint and HDF5's own collectives — is counted
 * without touching it. Calls the library makes internally are not seen, nor NCCL's transfers (cuda/comm_nccl.h).
 *
 * Bytes are the payload the call moves for this rank, independent of the algorithm MPI picks:
 *   Send/Isend  count·size sent                 Recv  the received size; Irecv  the posted size
 *   Bcast       root (n−1)·bytes sent, others bytes received
 *   Allreduce   bytes sent and bytes received   Reduce  non-root bytes sent, root (n−1)·bytes received
 *   Allgather(v) its block to n−1 ranks sent, the n−1 other blocks received
 * On one rank the collectives move nothing. Seconds are wall time inside the calls, waiting for a slow peer
 * included (in the pipeline that is mostly the fill and drain). Not thread-safe: birdbone calls MPI from
 * one thread (MPI_THREAD_FUNNELED). */
#ifndef BB_MPI_TRAFFIC_H
#define BB_MPI_TRAFFIC_H

#include <stdint.h>

typedef struct {
    int64_t calls;
    double seconds;
    double bytes_sent, bytes_recv;
} bb_traffic;

/* This rank's totals since the process started. Not collective. */
void bb_traffic_get(bb_traffic *out);
/* a − b, field by field. */
bb_traffic bb_traffic_diff(const bb_traffic *a, const bb_traffic *b);

#endif
