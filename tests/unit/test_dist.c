/* test_dist.c — the distributed lifecycle on 1..N ranks (run as unit.dist and
 * under mpiexec as mpi.dist_N): error agreement, event report, node-local ranks. */
#include "mpi/dist.h"
#include "core/events.h"
#include "test.h"

int main(int argc, char **argv) {
    bb_dist d;
    EXPECT_OK(bb_dist_init(&argc, &argv, &d));
    EXPECT(d.size >= 1 && d.rank >= 0 && d.rank < d.size, "rank %d of %d", d.rank, d.size);
    EXPECT(d.local_rank >= 0 && d.local_rank < d.local_size, "local rank %d of %d", d.local_rank, d.local_size);

    EXPECT_OK(bb_dist_agree(&d, BB_OK));
    /* The last rank fails: every rank must learn it, with that rank's status. */
    bb_status local = d.rank == d.size - 1 ? BB_ERR_FORMAT : BB_OK;
    bb_error_set_quiet(1);
    bb_status all = bb_dist_agree(&d, local);
    bb_error_set_quiet(0);
    EXPECT(all == BB_ERR_FORMAT, "rank %d got %s", d.rank, bb_status_name(all));

    bb_event_begin("test.work");
    volatile double x = 0;
    for (int i = 0; i < 100000 * (d.rank + 1); i++) x += i;
    bb_event_end("test.work", x > 0 ? 1e5 : 0, 0);
    FILE *f = tmpfile();
    EXPECT_OK(bb_dist_events_report(&d, f));
    if (d.rank == 0) {
        rewind(f);
        char buf[4096] = {0};
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        EXPECT(n > 0 && strstr(buf, "test.work") && strstr(buf, "max [s]"), "report: %s", buf);
    }
    fclose(f);
    /* Each rank's verdict reaches rank 0 so a failure anywhere fails the test. */
    int mine = test_failures_, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, d.comm);
    if (d.rank == 0) EXPECT(total == mine, "%d failures on other ranks", total - mine);
    bb_dist_finalize(&d);
    return TEST_DONE();
}
