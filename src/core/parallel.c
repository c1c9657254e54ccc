/* parallel.c — the calling thread plus n - 1 pthreads over an array of jobs. */
#include "core/parallel.h"

#include <pthread.h>
#include <unistd.h>

void bb_parallel_run(void *(*fn)(void *), void *jobs, size_t job_size, int n) {
    pthread_t tid[BB_PARALLEL_MAX];
    int running[BB_PARALLEL_MAX] = {0};
    if (n > BB_PARALLEL_MAX) n = BB_PARALLEL_MAX;
    char *j = jobs;
    for (int t = 1; t < n; t++) running[t] = pthread_create(&tid[t], NULL, fn, j + (size_t)t * job_size) == 0;
    for (int t = 0; t < n; t++)
        if (t == 0 || !running[t]) fn(j + (size_t)t * job_size);
    for (int t = 1; t < n; t++)
        if (running[t]) pthread_join(tid[t], NULL);
}

static int g_default = 0;

void bb_parallel_set_default(int n) { g_default = n < 0 ? 0 : n; }

int bb_parallel_threads(int want, long long units, long long min_per_thread) {
    long long n = want > 0 ? want : g_default > 0 ? g_default : sysconf(_SC_NPROCESSORS_ONLN);
    if (n > BB_PARALLEL_MAX) n = BB_PARALLEL_MAX;
    if (min_per_thread > 0 && n > units / min_per_thread) n = units / min_per_thread;
    return n < 1 ? 1 : (int)n;
}
