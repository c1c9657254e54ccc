/* test_comm.c — the deterministic communicator on 1..N ranks (unit.comm, and mpi.comm_N under mpiexec): exact integer
 * and min/max reductions, broadcast, variable-size allgather, item-ordered sums equal to the sequential sum whatever
 * the rank count, point-to-point, entries copied from their owners, error agreement, the registration hook (a
 * stand-in NCCL table), and the errors. */
#include "mpi/comm.h"
#include "test.h"

/* Values whose sum depends on the order of the additions: large, small, cancelling. */
static double value(int64_t i, int j) {
    double big = (i % 7 == 0) ? 1e16 : 1.0;
    double sign = (i % 3 == 1) ? -1.0 : 1.0;
    return sign * big * (1.0 + 0.1 * (double)j) + 1.0 / (double)(i + 1 + j);
}

static void test_items(bb_comm *c, int rank, int size) {
    enum { N = 37, W = 3 };
    int64_t ids[N];
    double vals[N * W];
    int64_t n = 0;
    /* round robin: rank order differs from item order */
    for (int64_t i = 0; i < N; i++)
        if (i % size == (size - 1 - rank)) {
            ids[n] = i;
            for (int j = 0; j < W; j++) vals[n * W + j] = value(i, j);
            n++;
        }
    double sum[W], all[N * W];
    EXPECT_OK(bb_comm_sum_items(c, ids, vals, n, W, N, sum));
    EXPECT_OK(bb_comm_gather_items(c, ids, vals, n, W, N, all));
    for (int j = 0; j < W; j++) {
        double want = 0;
        for (int64_t i = 0; i < N; i++) want += value(i, j);
        EXPECT(memcmp(&sum[j], &want, sizeof want) == 0, "column %d: %.17g, sequential %.17g", j, sum[j], want);
    }
    int same = 1;
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < W; j++) same &= all[i * W + j] == value(i, j);
    EXPECT(same, "gathered items out of order");
    /* the test can fail: summing the same values in another order changes the bits */
    double rev = 0, fwd = 0;
    for (int64_t i = N - 1; i >= 0; i--) rev += value(i, 0);
    for (int64_t i = 0; i < N; i++) fwd += value(i, 0);
    EXPECT(rev != fwd, "the test values do not depend on the order (%.17g)", fwd);
    /* errors, the same on every rank */
    int64_t dup = 0;
    double v[W] = {0};
    EXPECT_ERR(bb_comm_sum_items(c, &dup, v, 1, W, N, sum), BB_ERR_ARG,
               size > 1 ? "held by two ranks" : "held by no rank");
    EXPECT_ERR(bb_comm_sum_items(c, ids, vals, n, W, N + 1, sum), BB_ERR_ARG, "item 37 is held by no rank");
    int64_t out_of_range = N + 5;
    EXPECT_ERR(bb_comm_sum_items(c, &out_of_range, v, rank == 0, W, N, sum), BB_ERR_ARG, "item index 42 is outside");
}

static void test_reductions(bb_comm *c, int rank, int size) {
    int64_t x[3] = {rank + 1, -(int64_t)rank * 1000000000000ll, rank};
    EXPECT_OK(bb_comm_allreduce_i64(c, x, 3, BB_COMM_SUM));
    EXPECT(x[0] == (int64_t)size * (size + 1) / 2 && x[1] == -1000000000000ll * size * (size - 1) / 2,
           "int64 sum %lld %lld", (long long)x[0], (long long)x[1]);
    int64_t y[2] = {rank, -rank};
    EXPECT_OK(bb_comm_allreduce_i64(c, y, 2, BB_COMM_MAX));
    EXPECT(y[0] == size - 1 && y[1] == 0, "int64 max %lld %lld", (long long)y[0], (long long)y[1]);
    double d[3] = {rank * 0.5, -rank * 0.25, rank == size - 1 ? NAN : 1.0};
    EXPECT_OK(bb_comm_allreduce_f64(c, d, 3, BB_COMM_MIN));
    EXPECT(d[0] == 0 && d[1] == -(size - 1) * 0.25 && isnan(d[2]), "double min %g %g %g", d[0], d[1], d[2]);
    double e[1] = {rank};
    EXPECT_OK(bb_comm_allreduce_f64(c, e, 1, BB_COMM_MAX));
    EXPECT(e[0] == size - 1, "double max %g", e[0]);
    EXPECT_ERR(bb_comm_allreduce_f64(c, e, 1, BB_COMM_SUM), BB_ERR_ARG, "bb_comm_sum_items");
    char msg[32] = {0};
    if (rank == size - 1) snprintf(msg, sizeof msg, "from the last rank");
    EXPECT_OK(bb_comm_bcast(c, msg, sizeof msg, size - 1));
    EXPECT(!strcmp(msg, "from the last rank"), "broadcast got '%s'", msg);
    /* rank r contributes r bytes of value r */
    char mine[8];
    memset(mine, rank, sizeof mine);
    void *all = NULL;
    size_t off[9];
    EXPECT_OK(bb_comm_allgatherv(c, mine, (size_t)rank, &all, off));
    int ok = all != NULL;
    for (int r = 0; ok && r < size; r++) {
        ok &= off[r + 1] - off[r] == (size_t)r;
        for (size_t k = off[r]; k < off[r + 1]; k++) ok &= ((char *)all)[k] == r;
    }
    EXPECT(ok, "allgatherv blobs wrong");
    free(all);
    EXPECT_OK(bb_comm_barrier(c));
}

/* Point-to-point: a ring, each rank to the next (one rank: to itself). */
static void test_p2p(bb_comm *c, int rank, int size) {
    int out[4] = {rank, rank * 10, rank * 100, -rank}, in[4] = {-1, -1, -1, -1}, from = (rank + size - 1) % size;
    bb_comm_req *rq = NULL, *sq = NULL;
    EXPECT_OK(bb_comm_irecv(c, in, sizeof in, from, 7, &rq));
    EXPECT_OK(bb_comm_isend(c, out, sizeof out, (rank + 1) % size, 7, &sq));
    EXPECT_OK(bb_comm_wait(c, &sq));
    EXPECT_OK(bb_comm_wait(c, &rq));
    EXPECT_OK(bb_comm_wait(c, &rq)); /* a finished request is NULL: no-op */
    EXPECT(rq == NULL && sq == NULL && in[0] == from && in[1] == from * 10 && in[2] == from * 100 && in[3] == -from,
           "ring message from rank %d: %d %d %d %d", from, in[0], in[1], in[2], in[3]);
    EXPECT_ERR(bb_comm_isend(c, out, sizeof out, size, 7, &sq), BB_ERR_ARG, "send to rank");
}

/* Entries held by one rank each are copied to every rank; a failure on one rank is everyone's. */
static void test_share(bb_comm *c, int rank, int size) {
    enum { N = 11, W = 2 };
    double x[N * W];
    uint8_t mine[N];
    for (int j = 0; j < N; j++) {
        mine[j] = j % size == rank;
        for (int w = 0; w < W; w++) x[j * W + w] = mine[j] ? 10.0 * j + w + 0.25 : -1;
    }
    EXPECT_OK(bb_comm_share_owned(c, x, mine, N, W));
    int ok = 1;
    for (int j = 0; j < N; j++)
        for (int w = 0; w < W; w++) ok &= x[j * W + w] == 10.0 * j + w + 0.25;
    EXPECT(ok, "shared entries differ from their owners'");
    EXPECT(bb_comm_agree(c, rank == size - 1 ? BB_ERR_ARG : BB_OK) == BB_ERR_ARG, "agree: the last rank's error everywhere");
    EXPECT(bb_comm_agree(c, BB_OK) == BB_OK, "agree: all fine");
}

/* A stand-in "nccl" implementation that forwards to an MPI communicator: the registration hook the CUDA build uses. */
static bb_status fw_create(const bb_dist *d, void **ctx) { return bb_comm_create(BB_COMM_MPI, d, (bb_comm **)ctx); }
static bb_status fw_ar_i64(void *ctx, int64_t *x, int n, bb_comm_op op) { return bb_comm_allreduce_i64(ctx, x, n, op); }
static bb_status fw_ar_f64(void *ctx, double *x, int n, bb_comm_op op) { return bb_comm_allreduce_f64(ctx, x, n, op); }
static bb_status fw_bcast(void *ctx, void *b, size_t n, int root) { return bb_comm_bcast(ctx, b, n, root); }
static bb_status fw_agv(void *ctx, const void *m, size_t n, void **all, size_t *off) {
    return bb_comm_allgatherv(ctx, m, n, all, off);
}
static bb_status fw_barrier(void *ctx) { return bb_comm_barrier(ctx); }
static bb_status fw_isend(void *ctx, const void *b, size_t n, int peer, int tag, void **req) {
    return bb_comm_isend(ctx, b, n, peer, tag, (bb_comm_req **)req);
}
static bb_status fw_irecv(void *ctx, void *b, size_t n, int peer, int tag, void **req) {
    return bb_comm_irecv(ctx, b, n, peer, tag, (bb_comm_req **)req);
}
static bb_status fw_wait(void *ctx, void **req) { return bb_comm_wait(ctx, (bb_comm_req **)req); }
static void fw_destroy(void *ctx) {
    bb_comm *c = ctx;
    bb_comm_destroy(&c);
}

static void test_register(const bb_dist *d) {
    static const bb_comm_ops fw = {.name = "forward", .create = fw_create, .allreduce_i64 = fw_ar_i64,
                                   .allreduce_f64_minmax = fw_ar_f64, .bcast = fw_bcast, .allgatherv = fw_agv,
                                   .barrier = fw_barrier, .isend = fw_isend, .irecv = fw_irecv, .wait = fw_wait,
                                   .destroy = fw_destroy};
    bb_comm_ops partial = fw;
    partial.wait = NULL;
    EXPECT_ERR(bb_comm_register(BB_COMM_MPI, &fw), BB_ERR_ARG, "not a replaceable communicator");
    EXPECT_ERR(bb_comm_register(BB_COMM_NCCL, &partial), BB_ERR_ARG, "every entry of the table must be set");
    EXPECT(!bb_comm_available(BB_COMM_NCCL), "nccl is not registered yet");
    EXPECT_OK(bb_comm_register(BB_COMM_NCCL, &fw));
    EXPECT(bb_comm_available(BB_COMM_NCCL), "nccl registered");
    bb_comm_kind k = BB_COMM_KIND_COUNT;
    EXPECT_OK(bb_comm_kind_parse("auto", 1, &k));
    EXPECT(k == BB_COMM_NCCL, "auto with GPUs everywhere and NCCL registered is NCCL");
    bb_comm *c = NULL;
    EXPECT_OK(bb_comm_create(BB_COMM_NCCL, d, &c));
    if (c) {
        EXPECT(bb_comm_kind_of(c) == BB_COMM_NCCL, "the registered kind");
        test_items(c, d->rank, d->size);
        test_p2p(c, d->rank, d->size);
    }
    bb_comm_destroy(&c);
}

int main(int argc, char **argv) {
    bb_dist d;
    EXPECT_OK(bb_dist_init(&argc, &argv, &d));
    if (d.size > 8) {
        fprintf(stderr, "test_comm runs on at most 8 ranks\n");
        bb_dist_finalize(&d);
        return 1;
    }
    bb_comm *c = NULL, *nccl = NULL;
    EXPECT_OK(bb_comm_create(BB_COMM_MPI, &d, &c));
    EXPECT_ERR(bb_comm_create(BB_COMM_NCCL, &d, &nccl), BB_ERR_UNSUPPORTED, "not available in this build");
    bb_comm_kind k = BB_COMM_KIND_COUNT;
    EXPECT_OK(bb_comm_kind_parse("auto", 0, &k));
    EXPECT(k == BB_COMM_MPI, "auto without GPUs is MPI");
    EXPECT_OK(bb_comm_kind_parse("auto", 1, &k));
    EXPECT(k == BB_COMM_MPI, "auto without an NCCL build is MPI");
    EXPECT_OK(bb_comm_kind_parse("nccl", 0, &k));
    EXPECT(k == BB_COMM_NCCL, "nccl");
    EXPECT_ERR(bb_comm_kind_parse("gloo", 0, &k), BB_ERR_CONFIG, "'gloo' is not one of");
    if (c) {
        EXPECT(bb_comm_rank(c) == d.rank && bb_comm_size(c) == d.size && bb_comm_kind_of(c) == BB_COMM_MPI &&
                   !strcmp(bb_comm_kind_name(BB_COMM_MPI), "mpi"),
               "communicator identity");
        test_items(c, d.rank, d.size);
        test_reductions(c, d.rank, d.size);
        test_p2p(c, d.rank, d.size);
        test_share(c, d.rank, d.size);
    }
    bb_comm_destroy(&c);
    test_register(&d);
    bb_comm_destroy(&c);
    int mine = test_failures_, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, d.comm);
    if (d.rank == 0) EXPECT(total == mine, "%d failures on other ranks", total - mine);
    bb_dist_finalize(&d);
    return TEST_DONE();
}
