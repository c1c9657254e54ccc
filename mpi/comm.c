/* comm.c — the communicator table, the MPI implementation and the item-ordered (rank-count independent) sums. */
#include "mpi/comm.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct bb_comm {
    bb_comm_kind kind;
    const bb_comm_ops *ops;
    void *ctx;
    int rank, size;
};

/* ---- MPI ------------------------------------------------------------------------ */

typedef struct {
    MPI_Comm comm;
    int size;
} mpi_ctx;

static MPI_Op mpi_op(bb_comm_op op) { return op == BB_COMM_MAX ? MPI_MAX : op == BB_COMM_MIN ? MPI_MIN : MPI_SUM; }

static bb_status mpi_allreduce_i64(void *ctx, int64_t *x, int n, bb_comm_op op) {
    mpi_ctx *m = ctx;
    BB_MPI_CALL(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_INT64_T, mpi_op(op), m->comm));
    return BB_OK;
}

static bb_status mpi_allreduce_f64_minmax(void *ctx, double *x, int n, bb_comm_op op) {
    mpi_ctx *m = ctx;
    /* MPI_MAX/MIN may drop NaNs depending on the order: count them separately. */
    int nan_here = 0, nan_any = 0;
    for (int i = 0; i < n; i++) nan_here |= isnan(x[i]);
    BB_MPI_CALL(MPI_Allreduce(&nan_here, &nan_any, 1, MPI_INT, MPI_MAX, m->comm));
    double *nan_mask = NULL;
    if (nan_any) {
        BB_CALL(bb_malloc((void **)&nan_mask, sizeof(double) * (size_t)n, "NaN mask"));
        for (int i = 0; i < n; i++) nan_mask[i] = isnan(x[i]) ? 1 : 0;
        int rc = MPI_Allreduce(MPI_IN_PLACE, nan_mask, n, MPI_DOUBLE, MPI_MAX, m->comm);
        if (rc != MPI_SUCCESS) {
            free(nan_mask);
            return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allreduce(NaN mask)");
        }
        for (int i = 0; i < n; i++)
            if (isnan(x[i])) x[i] = op == BB_COMM_MAX ? -INFINITY : INFINITY;
    }
    int rc = MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, mpi_op(op), m->comm);
    if (nan_mask)
        for (int i = 0; i < n; i++)
            if (nan_mask[i] > 0) x[i] = NAN;
    free(nan_mask);
    if (rc != MPI_SUCCESS) return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allreduce(double)");
    return BB_OK;
}

/* Messages of more than INT_MAX bytes go in INT_MAX-sized pieces. */
static bb_status mpi_bcast(void *ctx, void *buf, size_t bytes, int root) {
    mpi_ctx *m = ctx;
    for (size_t off = 0; off < bytes; off += INT_MAX) {
        size_t k = bytes - off < INT_MAX ? bytes - off : INT_MAX;
        BB_MPI_CALL(MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, m->comm));
    }
    return BB_OK;
}

static bb_status mpi_allgatherv(void *ctx, const void *mine, size_t bytes, void **all, size_t *offsets) {
    mpi_ctx *m = ctx;
    *all = NULL;
    BB_CHECK(bytes <= INT_MAX, BB_ERR_ARG, "allgather of %zu bytes from one rank: at most %d", bytes, INT_MAX);
    int n = m->size, my = (int)bytes;
    int *counts, *displs;
    BB_CALL(bb_calloc((void **)&counts, (size_t)n * 2, sizeof(int), "allgather counts"));
    displs = counts + n;
    int rc = MPI_Allgather(&my, 1, MPI_INT, counts, 1, MPI_INT, m->comm);
    if (rc != MPI_SUCCESS) {
        free(counts);
        return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allgather(sizes)");
    }
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        offsets[r] = total;
        total += (size_t)counts[r];
    }
    offsets[n] = total;
    bb_status st = BB_OK;
    if (total > INT_MAX)
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "allgather of %zu bytes in all: at most %d", total, INT_MAX);
    for (int r = 0; r < n; r++) displs[r] = (int)offsets[r];
    char *buf = NULL;
    if (st == BB_OK) st = bb_malloc((void **)&buf, total ? total : 1, "allgather buffer");
    if (st == BB_OK) {
        rc = MPI_Allgatherv(mine, my, MPI_BYTE, buf, counts, displs, MPI_BYTE, m->comm);
        if (rc != MPI_SUCCESS) st = bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allgatherv");
    }
    free(counts);
    if (st != BB_OK) {
        free(buf);
        return st;
    }
    *all = buf;
    return BB_OK;
}

static bb_status mpi_barrier(void *ctx) {
    BB_MPI_CALL(MPI_Barrier(((mpi_ctx *)ctx)->comm));
    return BB_OK;
}

/* A request is a malloc'd MPI_Request. */
static bb_status mpi_post(mpi_ctx *m, void *buf, size_t bytes, int peer, int tag, int send, void **req) {
    *req = NULL;
    BB_CHECK(bytes <= INT_MAX, BB_ERR_ARG, "a point-to-point message of %zu bytes: at most %d", bytes, INT_MAX);
    MPI_Request *q;
    BB_CALL(bb_malloc((void **)&q, sizeof *q, "MPI request"));
    int rc = send ? MPI_Isend(buf, (int)bytes, MPI_BYTE, peer, tag, m->comm, q)
                  : MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, m->comm, q);
    if (rc != MPI_SUCCESS) {
        free(q);
        return bb_mpi_error(rc, __FILE__, __LINE__, send ? "MPI_Isend" : "MPI_Irecv");
    }
    *req = q;
    return BB_OK;
}

static bb_status mpi_isend(void *ctx, const void *buf, size_t bytes, int peer, int tag, void **req) {
    return mpi_post(ctx, (void *)buf, bytes, peer, tag, 1, req);
}

static bb_status mpi_irecv(void *ctx, void *buf, size_t bytes, int peer, int tag, void **req) {
    return mpi_post(ctx, buf, bytes, peer, tag, 0, req);
}

static bb_status mpi_wait(void *ctx, void **req) {
    (void)ctx;
    if (!*req) return BB_OK;
    MPI_Request *q = *req;
    int rc = MPI_Wait(q, MPI_STATUS_IGNORE);
    free(q);
    *req = NULL;
    if (rc != MPI_SUCCESS) return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Wait");
    return BB_OK;
}

static void mpi_destroy(void *ctx) {
    mpi_ctx *m = ctx;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
    free(m);
}

static bb_status mpi_create(const bb_dist *d, void **out) {
    *out = NULL;
    mpi_ctx *m;
    BB_CALL(bb_calloc((void **)&m, 1, sizeof *m, "communicator"));
    int rc = MPI_Comm_dup(d->comm, &m->comm);
    if (rc != MPI_SUCCESS) {
        free(m);
        return bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Comm_dup");
    }
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    m->size = d->size;
    *out = m;
    return BB_OK;
}

static const bb_comm_ops mpi_ops = {
    .name = "mpi",
    .create = mpi_create,
    .allreduce_i64 = mpi_allreduce_i64,
    .allreduce_f64_minmax = mpi_allreduce_f64_minmax,
    .bcast = mpi_bcast,
    .allgatherv = mpi_allgatherv,
    .barrier = mpi_barrier,
    .isend = mpi_isend,
    .irecv = mpi_irecv,
    .wait = mpi_wait,
    .destroy = mpi_destroy,
};

/* ---- the table ------------------------------------------------------------------ */

static const char *const kind_names[BB_COMM_KIND_COUNT] = {"mpi", "nccl"};

const char *bb_comm_kind_name(bb_comm_kind k) { return k >= 0 && k < BB_COMM_KIND_COUNT ? kind_names[k] : "?"; }

/* MPI built in; NCCL when the CUDA build registers it (bb_comm_register). */
static const bb_comm_ops *impls[BB_COMM_KIND_COUNT] = {[BB_COMM_MPI] = &mpi_ops};

bb_status bb_comm_register(bb_comm_kind kind, const bb_comm_ops *ops) {
    BB_CHECK(kind > BB_COMM_MPI && kind < BB_COMM_KIND_COUNT, BB_ERR_ARG,
             "bb_comm_register: kind %d is not a replaceable communicator (nccl = %d)", (int)kind, (int)BB_COMM_NCCL);
    BB_CHECK(ops && ops->name && ops->create && ops->allreduce_i64 && ops->allreduce_f64_minmax && ops->bcast &&
                 ops->allgatherv && ops->barrier && ops->isend && ops->irecv && ops->wait && ops->destroy,
             BB_ERR_ARG, "bb_comm_register(%s): every entry of the table must be set", bb_comm_kind_name(kind));
    impls[kind] = ops;
    return BB_OK;
}

int bb_comm_available(bb_comm_kind kind) { return kind >= 0 && kind < BB_COMM_KIND_COUNT && impls[kind] != NULL; }

bb_status bb_comm_kind_parse(const char *s, int gpus_everywhere, bb_comm_kind *out) {
    if (!strcmp(s, "auto")) {
        *out = gpus_everywhere && impls[BB_COMM_NCCL] ? BB_COMM_NCCL : BB_COMM_MPI;
        return BB_OK;
    }
    for (int k = 0; k < BB_COMM_KIND_COUNT; k++)
        if (!strcmp(s, kind_names[k])) {
            *out = (bb_comm_kind)k;
            return BB_OK;
        }
    BB_CHECK(0, BB_ERR_CONFIG, "backend.comm = '%s' is not one of auto, mpi, nccl", s);
    return BB_OK;
}

bb_status bb_comm_create(bb_comm_kind kind, const bb_dist *d, bb_comm **out) {
    *out = NULL;
    BB_CHECK(kind >= 0 && kind < BB_COMM_KIND_COUNT && impls[kind], BB_ERR_UNSUPPORTED,
             "communicator '%s' is not available in this build: use 'mpi' (NCCL comes with the CUDA build)",
             bb_comm_kind_name(kind));
    bb_comm *c;
    BB_CALL(bb_calloc((void **)&c, 1, sizeof *c, "communicator"));
    bb_status st = impls[kind]->create(d, &c->ctx);
    if (st != BB_OK) {
        free(c);
        return bb_trace(st, __FILE__, __LINE__, impls[kind]->name);
    }
    c->kind = kind;
    c->ops = impls[kind];
    c->rank = d->rank;
    c->size = d->size;
    *out = c;
    return BB_OK;
}

void bb_comm_destroy(bb_comm **pc) {
    if (!pc || !*pc) return;
    (*pc)->ops->destroy((*pc)->ctx);
    free(*pc);
    *pc = NULL;
}

bb_comm_kind bb_comm_kind_of(const bb_comm *c) { return c->kind; }
int bb_comm_rank(const bb_comm *c) { return c->rank; }
int bb_comm_size(const bb_comm *c) { return c->size; }

bb_status bb_comm_allreduce_i64(bb_comm *c, int64_t *x, int n, bb_comm_op op) {
    BB_CHECK(op >= 0 && op < BB_COMM_OP_COUNT && n >= 0, BB_ERR_ARG, "all-reduce: bad op %d or count %d", (int)op, n);
    BB_CALL(c->ops->allreduce_i64(c->ctx, x, n, op));
    return BB_OK;
}

bb_status bb_comm_allreduce_f64(bb_comm *c, double *x, int n, bb_comm_op op) {
    BB_CHECK(op == BB_COMM_MAX || op == BB_COMM_MIN, BB_ERR_ARG,
             "a double all-reduce takes MAX or MIN only: a sum depends on the rank count, so sum per-item "
             "contributions with bb_comm_sum_items");
    BB_CHECK(n >= 0, BB_ERR_ARG, "all-reduce of %d values", n);
    BB_CALL(c->ops->allreduce_f64_minmax(c->ctx, x, n, op));
    return BB_OK;
}

bb_status bb_comm_bcast(bb_comm *c, void *buf, size_t bytes, int root) {
    BB_CHECK(root >= 0 && root < c->size, BB_ERR_ARG, "broadcast from rank %d of %d", root, c->size);
    BB_CALL(c->ops->bcast(c->ctx, buf, bytes, root));
    return BB_OK;
}

bb_status bb_comm_allgatherv(bb_comm *c, const void *mine, size_t bytes, void **all, size_t *offsets) {
    BB_CALL(c->ops->allgatherv(c->ctx, mine, bytes, all, offsets));
    return BB_OK;
}

bb_status bb_comm_barrier(bb_comm *c) {
    BB_CALL(c->ops->barrier(c->ctx));
    return BB_OK;
}

bb_status bb_comm_agree(bb_comm *c, bb_status local) {
    int64_t code = (int64_t)local;
    BB_CALL(c->ops->allreduce_i64(c->ctx, &code, 1, BB_COMM_MAX));
    return (bb_status)code;
}

bb_status bb_comm_isend(bb_comm *c, const void *buf, size_t bytes, int peer, int tag, bb_comm_req **req) {
    BB_CHECK(peer >= 0 && peer < c->size, BB_ERR_ARG, "send to rank %d of %d", peer, c->size);
    BB_CALL(c->ops->isend(c->ctx, buf, bytes, peer, tag, (void **)req));
    return BB_OK;
}

bb_status bb_comm_irecv(bb_comm *c, void *buf, size_t bytes, int peer, int tag, bb_comm_req **req) {
    BB_CHECK(peer >= 0 && peer < c->size, BB_ERR_ARG, "receive from rank %d of %d", peer, c->size);
    BB_CALL(c->ops->irecv(c->ctx, buf, bytes, peer, tag, (void **)req));
    return BB_OK;
}

bb_status bb_comm_wait(bb_comm *c, bb_comm_req **req) {
    BB_CALL(c->ops->wait(c->ctx, (void **)req));
    return BB_OK;
}

/* ---- items ---------------------------------------------------------------------- */

bb_status bb_comm_gather_items(bb_comm *c, const int64_t *ids, const double *vals, int64_t n_mine, int width,
                               int64_t n_items, double *out) {
    BB_CHECK(width >= 1 && n_mine >= 0 && n_items >= 0, BB_ERR_ARG, "items: width %d, %lld here, %lld in all", width,
             (long long)n_mine, (long long)n_items);
    /* One blob per rank: (id, width values) records. */
    size_t rec = sizeof(int64_t) + sizeof(double) * (size_t)width, bytes = rec * (size_t)n_mine;
    char *mine = NULL, *all = NULL;
    size_t *offsets = NULL;
    unsigned char *seen = NULL;
    bb_status st = bb_malloc((void **)&mine, bytes ? bytes : 1, "item records");
    for (int64_t i = 0; st == BB_OK && i < n_mine; i++) {
        memcpy(mine + rec * (size_t)i, &ids[i], sizeof(int64_t));
        memcpy(mine + rec * (size_t)i + sizeof(int64_t), vals + (size_t)i * width, sizeof(double) * (size_t)width);
    }
    if (st == BB_OK) st = bb_malloc((void **)&offsets, sizeof(size_t) * (size_t)(c->size + 1), "item offsets");
    if (st == BB_OK) st = bb_comm_allgatherv(c, mine, bytes, (void **)&all, offsets);
    if (st == BB_OK) st = bb_calloc((void **)&seen, (size_t)(n_items ? n_items : 1), 1, "item flags");
    /* Every rank checks the same gathered records, so all agree on an error. */
    for (size_t p = 0; st == BB_OK && p < (all ? offsets[c->size] : 0); p += rec) {
        int64_t id;
        memcpy(&id, all + p, sizeof id);
        BB_CHECK_GOTO(st, out, id >= 0 && id < n_items, BB_ERR_ARG, "item index %lld is outside 0..%lld", (long long)id,
                      (long long)n_items - 1);
        BB_CHECK_GOTO(st, out, !seen[id], BB_ERR_ARG, "item %lld is held by two ranks", (long long)id);
        seen[id] = 1;
        memcpy(out + (size_t)id * width, all + p + sizeof(int64_t), sizeof(double) * (size_t)width);
    }
    for (int64_t i = 0; st == BB_OK && i < n_items; i++)
        BB_CHECK_GOTO(st, out, seen[i], BB_ERR_ARG, "item %lld is held by no rank", (long long)i);
out:
    free(mine);
    free(all);
    free(offsets);
    free(seen);
    return st;
}

bb_status bb_comm_sum_items(bb_comm *c, const int64_t *ids, const double *vals, int64_t n_mine, int width,
                            int64_t n_items, double *out) {
    BB_CHECK(width >= 1 && n_items >= 0, BB_ERR_ARG, "items: width %d, %lld in all", width, (long long)n_items);
    double *all;
    size_t n;
    BB_CHECK(!bb_mul_overflow((size_t)(n_items ? n_items : 1), (size_t)width * sizeof(double), &n), BB_ERR_OOM,
             "%lld items of %d values overflow", (long long)n_items, width);
    BB_CALL(bb_malloc((void **)&all, n, "gathered items"));
    bb_status st = bb_comm_gather_items(c, ids, vals, n_mine, width, n_items, all);
    if (st == BB_OK) {
        for (int j = 0; j < width; j++) out[j] = 0;
        for (int64_t i = 0; i < n_items; i++)
            for (int j = 0; j < width; j++) out[j] += all[(size_t)i * width + j];
    }
    free(all);
    return st;
}

bb_status bb_comm_share_owned(bb_comm *c, double *x, const uint8_t *mine, int64_t n, int width) {
    BB_CHECK(n >= 0 && width >= 1, BB_ERR_ARG, "share: %lld entries of width %d", (long long)n, width);
    if (c->size == 1) return BB_OK;
    int64_t k = 0;
    for (int64_t j = 0; j < n; j++) k += mine[j] != 0;
    int64_t *ids = NULL;
    double *vals = NULL;
    bb_status st = bb_malloc((void **)&ids, sizeof *ids * (size_t)(k ? k : 1), "shared entries");
    if (st == BB_OK) st = bb_malloc((void **)&vals, sizeof *vals * (size_t)(k ? k : 1) * (size_t)width, "shared entries");
    for (int64_t j = 0, q = 0; st == BB_OK && j < n; j++) {
        if (!mine[j]) continue;
        ids[q] = j;
        memcpy(vals + (size_t)q * width, x + (size_t)j * width, sizeof(double) * (size_t)width);
        q++;
    }
    st = bb_comm_agree(c, st); /* no rank enters the gather alone */
    if (st == BB_OK) st = bb_comm_gather_items(c, ids, vals, k, width, n, x);
    free(ids);
    free(vals);
    return st;
}
