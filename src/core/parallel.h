/* parallel.h — run n jobs on n threads: the calling thread takes job 0 and one new thread each of the
 * others; a thread that cannot be created leaves its job to the calling thread. Jobs must be independent
 * (results that do not depend on how many threads ran them are the caller's design: split rows, not sums). */
#ifndef BB_CORE_PARALLEL_H
#define BB_CORE_PARALLEL_H

#include <stddef.h>

/* Most threads bb_parallel_run starts for one call. */
#define BB_PARALLEL_MAX 64

/* fn(jobs + i * job_size) for i in [0, n), n <= BB_PARALLEL_MAX; returns when all are done. */
void bb_parallel_run(void *(*fn)(void *), void *jobs, size_t job_size, int n);

/* Threads for `units` units of work of which each thread should get at least `min_per_thread`: `want`
 * (<= 0: the default below, else the processors online), capped at BB_PARALLEL_MAX and
 * units / min_per_thread, at least 1. */
int bb_parallel_threads(int want, long long units, long long min_per_thread);

/* The process's thread count for want <= 0 (a run sets its rank's backend.threads; 0 = the processors
 * online). Not thread-safe: set it once, before the work. */
void bb_parallel_set_default(int n);

#endif
