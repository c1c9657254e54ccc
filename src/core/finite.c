/* finite.c — see finite.h. */
#include "core/finite.h"

#include <math.h>

#include "core/parallel.h"

/* Below this many values per thread the threads cost more than they save. */
#define FINITE_PAR_MIN ((int64_t)1 << 22)

int64_t bb_first_nonfinite_ref(const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return i;
    return -1;
}

typedef struct {
    const float *p;
    int64_t a, b, found; /* [a, b) scanned; found = first bad index in it, or -1 */
} scan_job;

static void *scan_range(void *arg) {
    scan_job *j = arg;
    int64_t k = bb_first_nonfinite_ref(j->p + j->a, j->b - j->a);
    j->found = k < 0 ? -1 : j->a + k;
    return 0;
}

int64_t bb_first_nonfinite(const float *p, int64_t n) {
    if (n <= 0) return -1;
    int nt = bb_parallel_threads(0, n, FINITE_PAR_MIN);
    if (nt == 1) return bb_first_nonfinite_ref(p, n);
    scan_job jobs[BB_PARALLEL_MAX];
    for (int t = 0; t < nt; t++) jobs[t] = (scan_job){p, n * t / nt, n * (t + 1) / nt, -1};
    bb_parallel_run(scan_range, jobs, sizeof jobs[0], nt);
    for (int t = 0; t < nt; t++) /* the ranges are in order: the first thread that found one has the first */
        if (jobs[t].found >= 0) return jobs[t].found;
    return -1;
}
