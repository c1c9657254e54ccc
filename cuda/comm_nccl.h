/* comm_nccl.h — the NCCL implementation of mpi/comm.h's communicator, for ranks that hold GPUs.
 *
 * bb_comm_nccl_register adds it as BB_COMM_NCCL (backend.comm = nccl, or auto when every rank bound a
 * GPU). Its create is collective over the bb_dist's ranks: rank 0 makes the NCCL unique id, MPI
 * broadcasts it, every rank joins with ncclCommInitRank on the GPU it bound (bb_cuda_bind first).
 * Every call works on host memory like the MPI implementation: data is copied to a device staging
 * buffer, the NCCL collective or send/recv runs on the communicator's stream, and the result is
 * copied back. The reductions are exact (int64 sums, f64 max/min with NaN kept), so results equal the
 * MPI implementation's bit for bit; allgatherv is an all-gather of the sizes and then of blobs padded
 * to the largest. Point-to-point: ncclSend/ncclRecv in posting order (tags are not needed: the pipe
 * posts each peer's messages in order); posted messages go out together as one NCCL group when a request is waited for. Bytes and calls are counted
 * (bb_comm_nccl_stats) so runs can log that the traffic went through NCCL.
 * Errors: BB_ERR_CUDA with the NCCL or CUDA message, BB_ERR_MPI for the id broadcast. */
#ifndef BB_CUDA_COMM_NCCL_H
#define BB_CUDA_COMM_NCCL_H

#include <stdint.h>

#include "core/status.h"

/* Idempotent. Errors: those of bb_comm_register. */
bb_status bb_comm_nccl_register(void);

typedef struct {
    int64_t collectives, p2p;   /* calls */
    int64_t bytes_collective;   /* payload bytes this rank contributed to collectives */
    int64_t bytes_sent, bytes_received;
    double seconds; /* wall time inside the communicator's calls: collectives (with their host copies and
                     * synchronization), posting and waiting for point-to-point messages */
} bb_comm_nccl_stats;
/* Totals of this process since start. */
void bb_comm_nccl_stats_get(bb_comm_nccl_stats *out);

#endif
