/* comm_nccl.c — NCCL behind mpi/comm.h (comm_nccl.h). */
#include "cuda/comm_nccl.h"

#include <cuda_runtime.h>
#include <math.h>
#include <mpi.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "cuda/check.h"
#include "mpi/comm.h"
#include "mpi/dist.h"

typedef struct {
    void *dev;       /* the message on the device */
    void *host;      /* receive: where it goes on wait; NULL for a send */
    size_t bytes;
    int peer, issued;
    cudaEvent_t done;
} nccl_req;

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    int rank, size;
    void *stage; /* device staging buffer for the collectives */
    size_t stage_bytes;
    nccl_req *pending[256]; /* posted, not yet issued */
    int n_pending;
} nccl_ctx;

static bb_comm_nccl_stats stats;

void bb_comm_nccl_stats_get(bb_comm_nccl_stats *out) { *out = stats; }

static bb_status stage(nccl_ctx *c, size_t bytes) {
    if (bytes <= c->stage_bytes) return BB_OK;
    if (c->stage) cudaFree(c->stage);
    c->stage = NULL;
    c->stage_bytes = 0;
    BB_CALL(bb_cuda_malloc(&c->stage, bytes, "NCCL staging buffer"));
    c->stage_bytes = bytes;
    return BB_OK;
}

static bb_status flush(nccl_ctx *c);

static bb_status sync(nccl_ctx *c) {
    BB_CUDA_CALL(cudaStreamSynchronize(c->stream));
    return BB_OK;
}

static ncclRedOp_t red_op(bb_comm_op op) { return op == BB_COMM_MAX ? ncclMax : op == BB_COMM_MIN ? ncclMin : ncclSum; }

static bb_status nccl_allreduce_i64(void *ctx, int64_t *x, int n, bb_comm_op op) {
    nccl_ctx *c = ctx;
    size_t bytes = (size_t)n * sizeof *x;
    if (n <= 0) return BB_OK;
    BB_CALL(stage(c, bytes));
    BB_CUDA_CALL(cudaMemcpy(c->stage, x, bytes, cudaMemcpyHostToDevice));
    BB_NCCL_CALL(ncclAllReduce(c->stage, c->stage, (size_t)n, ncclInt64, red_op(op), c->comm, c->stream));
    BB_CALL(sync(c));
    BB_CUDA_CALL(cudaMemcpy(x, c->stage, bytes, cudaMemcpyDeviceToHost));
    stats.collectives++;
    stats.bytes_collective += (int64_t)bytes;
    return BB_OK;
}

/* Max/min of doubles with NaN kept (as the MPI implementation): a NaN anywhere makes the entry NaN. The
 * NaN flags travel as an int64 max first. */
static bb_status nccl_allreduce_f64_minmax(void *ctx, double *x, int n, bb_comm_op op) {
    nccl_ctx *c = ctx;
    if (n <= 0) return BB_OK;
    int64_t *nan_flag = malloc((size_t)n * sizeof *nan_flag);
    BB_CHECK(nan_flag, BB_ERR_OOM, "NaN flags");
    for (int i = 0; i < n; i++) {
        nan_flag[i] = isnan(x[i]);
        if (nan_flag[i]) x[i] = op == BB_COMM_MAX ? -INFINITY : INFINITY;
    }
    bb_status st = nccl_allreduce_i64(ctx, nan_flag, n, BB_COMM_MAX);
    size_t bytes = (size_t)n * sizeof *x;
    if (!st) st = stage(c, bytes);
    if (!st) st = BB_CUDA_STATUS(cudaMemcpy(c->stage, x, bytes, cudaMemcpyHostToDevice));
    if (!st) {
        ncclResult_t e = ncclAllReduce(c->stage, c->stage, (size_t)n, ncclFloat64, red_op(op), c->comm, c->stream);
        if (e != ncclSuccess) st = bb_nccl_error(e, __FILE__, __LINE__, "ncclAllReduce(double)");
    }
    if (!st) st = sync(c);
    if (!st) st = BB_CUDA_STATUS(cudaMemcpy(x, c->stage, bytes, cudaMemcpyDeviceToHost));
    for (int i = 0; !st && i < n; i++)
        if (nan_flag[i]) x[i] = NAN;
    free(nan_flag);
    stats.collectives++;
    stats.bytes_collective += (int64_t)bytes;
    return st;
}

static bb_status nccl_bcast(void *ctx, void *buf, size_t bytes, int root) {
    nccl_ctx *c = ctx;
    if (bytes == 0) return BB_OK;
    BB_CALL(stage(c, bytes));
    if (c->rank == root) BB_CUDA_CALL(cudaMemcpy(c->stage, buf, bytes, cudaMemcpyHostToDevice));
    BB_NCCL_CALL(ncclBroadcast(c->stage, c->stage, bytes, ncclUint8, root, c->comm, c->stream));
    BB_CALL(sync(c));
    if (c->rank != root) BB_CUDA_CALL(cudaMemcpy(buf, c->stage, bytes, cudaMemcpyDeviceToHost));
    stats.collectives++;
    stats.bytes_collective += (int64_t)bytes;
    return BB_OK;
}

static bb_status nccl_allgatherv(void *ctx, const void *mine, size_t bytes, void **all, size_t *offsets) {
    nccl_ctx *c = ctx;
    *all = NULL;
    int64_t *sizes = calloc((size_t)c->size, sizeof *sizes);
    BB_CHECK(sizes, BB_ERR_OOM, "allgatherv sizes");
    sizes[c->rank] = (int64_t)bytes;
    bb_status st = nccl_allreduce_i64(ctx, sizes, c->size, BB_COMM_SUM); /* each entry comes from one rank */
    size_t pad = 0, total = 0;
    for (int r = 0; !st && r < c->size; r++) {
        offsets[r] = total;
        total += (size_t)sizes[r];
        if ((size_t)sizes[r] > pad) pad = (size_t)sizes[r];
    }
    offsets[c->size] = total;
    char *out = NULL;
    if (!st) st = bb_malloc((void **)&out, total ? total : 1, "allgatherv result");
    if (!st && pad > 0) {
        /* device: [my blob padded][everyone's padded blobs] */
        st = stage(c, pad * (size_t)(c->size + 1));
        char *d = c->stage;
        if (!st && bytes) st = BB_CUDA_STATUS(cudaMemcpy(d, mine, bytes, cudaMemcpyHostToDevice));
        if (!st) {
            ncclResult_t e = ncclAllGather(d, d + pad, pad, ncclUint8, c->comm, c->stream);
            if (e != ncclSuccess) st = bb_nccl_error(e, __FILE__, __LINE__, "ncclAllGather");
        }
        if (!st) st = sync(c);
        for (int r = 0; !st && r < c->size; r++)
            if (sizes[r]) st = BB_CUDA_STATUS(cudaMemcpy(out + offsets[r], d + pad * (size_t)(r + 1), (size_t)sizes[r],
                                                         cudaMemcpyDeviceToHost));
    }
    free(sizes);
    if (st) {
        free(out);
        return st;
    }
    stats.collectives++;
    stats.bytes_collective += (int64_t)bytes;
    *all = out;
    return BB_OK;
}

static bb_status nccl_barrier(void *ctx) {
    int64_t one = 1;
    return nccl_allreduce_i64(ctx, &one, 1, BB_COMM_SUM);
}

/* Point-to-point: a posted message is staged on the device at once but issued only when some request is
 * waited for: then every pending send and receive of this rank goes out in one NCCL group, so any
 * posting order works (a ring's receive-then-send included), as with MPI's non-blocking calls. */
static bb_status flush(nccl_ctx *c) {
    if (c->n_pending == 0) return BB_OK;
    bb_status st = BB_OK;
    ncclResult_t e = ncclGroupStart();
    for (int i = 0; e == ncclSuccess && i < c->n_pending; i++) {
        nccl_req *q = c->pending[i];
        e = q->host ? ncclRecv(q->dev, q->bytes, ncclUint8, q->peer, c->comm, c->stream)
                    : ncclSend(q->dev, q->bytes, ncclUint8, q->peer, c->comm, c->stream);
    }
    ncclResult_t e2 = ncclGroupEnd();
    if (e == ncclSuccess) e = e2;
    if (e != ncclSuccess) st = bb_nccl_error(e, __FILE__, __LINE__, "ncclSend/ncclRecv group");
    for (int i = 0; i < c->n_pending; i++) {
        nccl_req *q = c->pending[i];
        q->issued = 1;
        if (!st) st = BB_CUDA_STATUS(cudaEventRecord(q->done, c->stream));
    }
    c->n_pending = 0;
    return st;
}

static bb_status post(nccl_ctx *c, void *host, size_t bytes, int peer, int send, void **req) {
    *req = NULL;
    BB_CHECK(peer >= 0 && peer < c->size, BB_ERR_ARG, "NCCL %s rank %d of %d", send ? "send to" : "receive from", peer,
             c->size);
    BB_CHECK(c->n_pending < (int)(sizeof c->pending / sizeof c->pending[0]), BB_ERR_ARG,
             "more than %d NCCL messages posted without a wait", (int)(sizeof c->pending / sizeof c->pending[0]));
    nccl_req *q = calloc(1, sizeof *q);
    BB_CHECK(q, BB_ERR_OOM, "NCCL request");
    q->bytes = bytes;
    q->peer = peer;
    q->host = send ? NULL : host;
    bb_status st = bb_cuda_malloc(&q->dev, bytes ? bytes : 1, send ? "NCCL send buffer" : "NCCL receive buffer");
    /* the copy runs on the legacy stream, which does not wait for the communicator's (non-blocking) stream */
    if (!st && send && bytes) st = BB_CUDA_STATUS(cudaMemcpy(q->dev, host, bytes, cudaMemcpyHostToDevice));
    if (!st) st = BB_CUDA_STATUS(cudaEventCreateWithFlags(&q->done, cudaEventDisableTiming));
    if (st) {
        if (q->dev) cudaFree(q->dev);
        free(q);
        return st;
    }
    c->pending[c->n_pending++] = q;
    stats.p2p++;
    if (send)
        stats.bytes_sent += (int64_t)bytes;
    else
        stats.bytes_received += (int64_t)bytes;
    *req = q;
    return BB_OK;
}

static bb_status nccl_isend(void *ctx, const void *buf, size_t bytes, int peer, int tag, void **req) {
    (void)tag;
    return post(ctx, (void *)buf, bytes, peer, 1, req);
}

static bb_status nccl_irecv(void *ctx, void *buf, size_t bytes, int peer, int tag, void **req) {
    (void)tag;
    return post(ctx, buf, bytes, peer, 0, req);
}

static bb_status nccl_wait(void *ctx, void **preq) {
    nccl_ctx *c = ctx;
    nccl_req *q = *preq;
    if (!q) return BB_OK;
    bb_status st = q->issued ? BB_OK : flush(c);
    if (!st) st = BB_CUDA_STATUS(cudaEventSynchronize(q->done));
    if (!st && q->host && q->bytes) st = BB_CUDA_STATUS(cudaMemcpy(q->host, q->dev, q->bytes, cudaMemcpyDeviceToHost));
    cudaEventDestroy(q->done);
    cudaFree(q->dev);
    free(q);
    *preq = NULL;
    return st;
}

static void nccl_destroy(void *ctx) {
    nccl_ctx *c = ctx;
    if (!c) return;
    if (c->comm) ncclCommDestroy(c->comm);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->stage) cudaFree(c->stage);
    free(c);
}

static bb_status nccl_create(const bb_dist *d, void **out) {
    *out = NULL;
    int dev = -1;
    BB_CUDA_CALL(cudaGetDevice(&dev));
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    bb_status st = BB_OK;
    if (d->rank == 0) {
        ncclResult_t e = ncclGetUniqueId(&id);
        if (e != ncclSuccess) st = bb_nccl_error(e, __FILE__, __LINE__, "ncclGetUniqueId");
    }
    BB_CALL(bb_dist_agree(d, st));
    BB_MPI_CALL(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, d->comm));
    nccl_ctx *c = calloc(1, sizeof *c);
    BB_CHECK(c, BB_ERR_OOM, "NCCL communicator");
    c->rank = d->rank;
    c->size = d->size;
    st = BB_CUDA_STATUS(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    if (!st) {
        ncclResult_t e = ncclCommInitRank(&c->comm, d->size, id, d->rank);
        if (e != ncclSuccess) st = bb_nccl_error(e, __FILE__, __LINE__, "ncclCommInitRank");
    }
    st = bb_dist_agree(d, st);
    if (st) {
        nccl_destroy(c);
        return st;
    }
    bb_debug("NCCL communicator: rank %d of %d on GPU %d", d->rank, d->size, dev);
    *out = c;
    return BB_OK;
}

/* The table's entries, timed into stats.seconds (the inner calls, e.g. allgatherv's allreduce, are not
 * counted twice: only these wrappers add). */
#define TIMED(call)                                  \
    do {                                             \
        double t0_ = bb_now();                       \
        bb_status st_ = (call);                      \
        stats.seconds += bb_now() - t0_;             \
        return st_;                                  \
    } while (0)

static bb_status t_allreduce_i64(void *ctx, int64_t *x, int n, bb_comm_op op) { TIMED(nccl_allreduce_i64(ctx, x, n, op)); }
static bb_status t_allreduce_f64_minmax(void *ctx, double *x, int n, bb_comm_op op) {
    TIMED(nccl_allreduce_f64_minmax(ctx, x, n, op));
}
static bb_status t_bcast(void *ctx, void *buf, size_t bytes, int root) { TIMED(nccl_bcast(ctx, buf, bytes, root)); }
static bb_status t_allgatherv(void *ctx, const void *mine, size_t bytes, void **all, size_t *offsets) {
    TIMED(nccl_allgatherv(ctx, mine, bytes, all, offsets));
}
static bb_status t_barrier(void *ctx) { TIMED(nccl_barrier(ctx)); }
static bb_status t_isend(void *ctx, const void *buf, size_t bytes, int peer, int tag, void **req) {
    TIMED(nccl_isend(ctx, buf, bytes, peer, tag, req));
}
static bb_status t_irecv(void *ctx, void *buf, size_t bytes, int peer, int tag, void **req) {
    TIMED(nccl_irecv(ctx, buf, bytes, peer, tag, req));
}
static bb_status t_wait(void *ctx, void **preq) { TIMED(nccl_wait(ctx, preq)); }

static const bb_comm_ops nccl_ops = {
    .name = "nccl",
    .create = nccl_create,
    .allreduce_i64 = t_allreduce_i64,
    .allreduce_f64_minmax = t_allreduce_f64_minmax,
    .bcast = t_bcast,
    .allgatherv = t_allgatherv,
    .barrier = t_barrier,
    .isend = t_isend,
    .irecv = t_irecv,
    .wait = t_wait,
    .destroy = nccl_destroy,
};

bb_status bb_comm_nccl_register(void) { return bb_comm_register(BB_COMM_NCCL, &nccl_ops); }
