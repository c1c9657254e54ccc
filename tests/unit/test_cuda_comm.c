/* test_cuda_comm.c — the NCCL communicator (cuda/comm_nccl.h) through the same checks as the MPI one
 * (tests/unit/test_comm.c: item-ordered sums bit-identical to the sequential sum, exact reductions with
 * NaN kept, broadcast, variable-size allgather, a point-to-point ring, entries copied from their owners,
 * error agreement), then the byte counts that show the traffic went through NCCL. One rank per GPU:
 * run it under mpiexec with as many ranks as GPUs (unit.cuda_comm is the one-rank case). Skips (77)
 * without CUDA or a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#define main test_comm_main
#include "test_comm.c"
#undef main

#include "core/log.h"
#include "cuda/check.h"
#include "cuda/comm_nccl.h"

int main(int argc, char **argv) {
    bb_dist d;
    double t_start = bb_now();
    EXPECT_OK(bb_dist_init(&argc, &argv, &d));
    int n = bb_cuda_device_count();
    if (n == 0 || d.size > n) {
        if (d.rank == 0) printf("skipped: %d GPU(s) for %d rank(s)\n", n, d.size);
        bb_dist_finalize(&d);
        return 77;
    }
    int dev = -1;
    EXPECT_OK(bb_cuda_bind(d.local_rank, &dev));
    EXPECT_OK(bb_comm_nccl_register());
    EXPECT(bb_comm_available(BB_COMM_NCCL), "NCCL registered");
    bb_comm_kind k = BB_COMM_KIND_COUNT;
    EXPECT_OK(bb_comm_kind_parse("auto", 1, &k));
    EXPECT(k == BB_COMM_NCCL, "auto with GPUs everywhere and NCCL registered is NCCL");
    bb_comm *c = NULL;
    EXPECT_OK(bb_comm_create(BB_COMM_NCCL, &d, &c));
    if (c) {
        EXPECT(bb_comm_kind_of(c) == BB_COMM_NCCL && bb_comm_rank(c) == d.rank && bb_comm_size(c) == d.size,
               "communicator identity");
        test_items(c, d.rank, d.size);
        test_reductions(c, d.rank, d.size);
        test_p2p(c, d.rank, d.size);
        test_share(c, d.rank, d.size);
        bb_comm_nccl_stats s;
        bb_comm_nccl_stats_get(&s);
        printf("rank %d (GPU %d): %lld NCCL collectives (%lld bytes), %lld point-to-point (%lld sent, %lld received), "
               "%.4f s\n",
               d.rank, dev, (long long)s.collectives, (long long)s.bytes_collective, (long long)s.p2p,
               (long long)s.bytes_sent, (long long)s.bytes_received, s.seconds);
        EXPECT(s.collectives > 0 && s.bytes_collective > 0 && s.p2p >= 2 && s.bytes_sent > 0 && s.bytes_received > 0,
               "the traffic went through NCCL");
        /* the calls took some time, and not more than the whole test has run */
        EXPECT(s.seconds > 0 && s.seconds < bb_now() - t_start + 1e-3, "NCCL seconds %g of %g", s.seconds,
               bb_now() - t_start);
    }
    bb_comm_destroy(&c);
    int failures = TEST_DONE();
    bb_dist_finalize(&d);
    return failures;
}
#endif
