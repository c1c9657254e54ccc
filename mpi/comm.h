/* comm.h — the communicator for global decisions (bit budget, stop-loss, metrics), with results bit-identical for any
 * rank count.
 *
 * Floating-point sums depend on their order, and an all-reduce's order depends
 * on the rank count. So a double sum is never an all-reduce here: every
 * contribution is an *item* with a global index (a layer, a tensor, a window),
 * the items are gathered to every rank and summed in index order — the same
 * additions in the same order whether 1 or 64 ranks hold them. Integer sums and
 * min/max are exact in any order and go through the all-reduce directly.
 *
 * Implementations sit behind a function table selected by `kind`: MPI (CPU
 * ranks) is built in; NCCL (ranks holding GPUs) is added by the CUDA build
 * with bb_comm_register before the run creates its communicator. Every
 * function is collective over the communicator's ranks, which must call it in
 * the same order with the same sizes (except the per-rank item counts and blob
 * sizes). Errors: BB_ERR_MPI (the library's message), BB_ERR_ARG, BB_ERR_OOM. */
#ifndef BB_MPI_COMM_H
#define BB_MPI_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "mpi/dist.h"

/* Append only. */
typedef enum { BB_COMM_MPI = 0, BB_COMM_NCCL, BB_COMM_KIND_COUNT } bb_comm_kind;

typedef enum { BB_COMM_SUM = 0, BB_COMM_MAX, BB_COMM_MIN, BB_COMM_OP_COUNT } bb_comm_op;

typedef struct bb_comm bb_comm;

/* One implementation. Every entry is collective; ctx is the implementation's state. */
typedef struct {
    const char *name;
    bb_status (*create)(const bb_dist *d, void **ctx); /* collective */
    /* x (n) in place: op over ranks; exact for int64. */
    bb_status (*allreduce_i64)(void *ctx, int64_t *x, int n, bb_comm_op op);
    /* x (n) in place: MAX or MIN over ranks (exact in any order). */
    bb_status (*allreduce_f64_minmax)(void *ctx, double *x, int n, bb_comm_op op);
    bb_status (*bcast)(void *ctx, void *buf, size_t bytes, int root);
    /* Every rank's blob (mine, bytes) concatenated in rank order into *all
     * (bb_malloc'd, caller frees); offsets (size + 1) says where each starts. */
    bb_status (*allgatherv)(void *ctx, const void *mine, size_t bytes, void **all, size_t *offsets);
    bb_status (*barrier)(void *ctx);
    /* Point-to-point, non-blocking (the pipelined forward's hidden states):
     * bytes from buf to rank peer / from peer into buf, matched by tag in
     * posting order; *req is the implementation's handle until wait. NCCL
     * maps these to ncclSend/ncclRecv on the communicator's stream, wait to
     * the stream's event. */
    bb_status (*isend)(void *ctx, const void *buf, size_t bytes, int peer, int tag, void **req);
    bb_status (*irecv)(void *ctx, void *buf, size_t bytes, int peer, int tag, void **req);
    bb_status (*wait)(void *ctx, void **req); /* completes and frees *req, sets it NULL; NULL *req: no-op */
    void (*destroy)(void *ctx);
} bb_comm_ops;

/* Add (or replace) the implementation of `kind`: the CUDA build registers
 * NCCL at start-up, before any bb_comm_create. Every entry of ops must be set
 * and ops must outlive every communicator made from it. Not collective (each
 * process registers the same), not thread-safe. Errors: BB_ERR_ARG (a kind out
 * of range, MPI replaced, an entry missing). */
bb_status bb_comm_register(bb_comm_kind kind, const bb_comm_ops *ops);
/* 1 if an implementation of kind is registered. */
int bb_comm_available(bb_comm_kind kind);

/* backend.comm ("auto" | "mpi" | "nccl") to a kind: auto is NCCL when every
 * rank holds a GPU (gpus_everywhere) and an NCCL implementation is built in,
 * else MPI. Errors: BB_ERR_CONFIG naming the value. */
bb_status bb_comm_kind_parse(const char *s, int gpus_everywhere, bb_comm_kind *out);

/* Create a communicator of `kind` over d's ranks. Collective. Errors:
 * BB_ERR_UNSUPPORTED for NCCL in a build without it (or until the CUDA side
 * registers), BB_ERR_MPI. */
bb_status bb_comm_create(bb_comm_kind kind, const bb_dist *d, bb_comm **out);
void bb_comm_destroy(bb_comm **c); /* NULL-safe; nulls *c; not collective for MPI */

bb_comm_kind bb_comm_kind_of(const bb_comm *c);
const char *bb_comm_kind_name(bb_comm_kind k); /* "mpi" | "nccl" | "?" */
int bb_comm_rank(const bb_comm *c);
int bb_comm_size(const bb_comm *c);

/* Exact reductions in place over x (n). */
bb_status bb_comm_allreduce_i64(bb_comm *c, int64_t *x, int n, bb_comm_op op);
/* MAX / MIN only: a double SUM must go through bb_comm_sum_items (BB_ERR_ARG
 * says so). NaN: any NaN on any rank gives NaN. */
bb_status bb_comm_allreduce_f64(bb_comm *c, double *x, int n, bb_comm_op op);
bb_status bb_comm_bcast(bb_comm *c, void *buf, size_t bytes, int root);
bb_status bb_comm_allgatherv(bb_comm *c, const void *mine, size_t bytes, void **all, size_t *offsets);
bb_status bb_comm_barrier(bb_comm *c);

/* BB_OK on every rank only if local is BB_OK on every rank, else the same
 * error code everywhere (only the failing rank has printed its message). */
bb_status bb_comm_agree(bb_comm *c, bb_status local);

/* Non-blocking point-to-point (see the ops table); a request is NULL once
 * waited for. Not collective: the two ends post matching calls. Messages of
 * more than INT_MAX bytes are refused (BB_ERR_ARG). */
typedef struct bb_comm_req bb_comm_req;
bb_status bb_comm_isend(bb_comm *c, const void *buf, size_t bytes, int peer, int tag, bb_comm_req **req);
bb_status bb_comm_irecv(bb_comm *c, void *buf, size_t bytes, int peer, int tag, bb_comm_req **req);
bb_status bb_comm_wait(bb_comm *c, bb_comm_req **req);

/* Entries held by one rank each: x (n, width) row-major, where row j is
 * valid on the one rank with mine[j] != 0; afterwards every rank has every
 * row (copied, not summed: exact). Errors as bb_comm_gather_items. */
bb_status bb_comm_share_owned(bb_comm *c, double *x, const uint8_t *mine, int64_t n, int width);

/* Items: each rank holds n_mine items with global indices ids[i] in [0,
 * n_items) and values vals (n_mine, width) row-major; every index must be held
 * by exactly one rank. Gather: out (n_items, width) on every rank, in index
 * order. Sum: out (width) = sum over indices 0, 1, ..., n_items-1 in that order
 * (left to right, in double). Errors: BB_ERR_ARG naming an index that is out of
 * range, held twice or by nobody (the same on every rank). */
bb_status bb_comm_gather_items(bb_comm *c, const int64_t *ids, const double *vals, int64_t n_mine, int width,
                               int64_t n_items, double *out);
bb_status bb_comm_sum_items(bb_comm *c, const int64_t *ids, const double *vals, int64_t n_mine, int width,
                            int64_t n_items, double *out);

#endif
