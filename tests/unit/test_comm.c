/* test_comm.c — the deterministic communicator on 1..N ranks (unit.comm, and mpi.comm_N under mpiexec): exact integer
 * and min/max reductions, broadcast, variable-size allgather, item-ordered sums equal to the sequential sum whatever
 * the rank count, and the errors. */
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
    }
    bb_comm_destroy(&c);
    bb_comm_destroy(&c);
    int mine = test_failures_, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, d.comm);
    if (d.rank == 0) EXPECT(total == mine, "%d failures on other ranks", total - mine);
    bb_dist_finalize(&d);
    return TEST_DONE();
}
