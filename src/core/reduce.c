/* reduce.c — see reduce.h. */
#include "core/reduce.h"

#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"

/* Below this many values per thread the threads cost more than they save. */
#define REDUCE_PAR_MIN ((int64_t)1 << 21)
/* Chunk sums kept on the stack per thread pass; more chunks are done in rounds. */
#define ROUND_CHUNKS 4096

static int64_t n_chunks(int64_t n) { return (n + BB_REDUCE_CHUNK - 1) / BB_REDUCE_CHUNK; }

/* chunk c's sums into part[c * nsum ...] */
static void chunk_sums(const void *ctx, bb_reduce_fn fn, int64_t n, int nsum, int64_t c, double *part) {
    int64_t i0 = c * BB_REDUCE_CHUNK, i1 = i0 + BB_REDUCE_CHUNK < n ? i0 + BB_REDUCE_CHUNK : n;
    for (int s = 0; s < nsum; s++) part[s] = 0;
    fn(ctx, i0, i1, part);
}

void bb_reduce_f64_ref(const void *ctx, bb_reduce_fn fn, int64_t n, int nsum, double *out) {
    for (int s = 0; s < nsum; s++) out[s] = 0;
    double part[BB_REDUCE_MAX];
    for (int64_t c = 0; c < n_chunks(n); c++) {
        chunk_sums(ctx, fn, n, nsum, c, part);
        for (int s = 0; s < nsum; s++) out[s] += part[s];
    }
}

typedef struct {
    const void *ctx;
    bb_reduce_fn fn;
    int64_t n, c0, c1; /* chunks [c0, c1) of this round, this thread's share */
    int nsum;
    double *part; /* the round's chunk sums, indexed from the round's first chunk */
    int64_t base;
} reduce_job;

static void *reduce_range(void *arg) {
    reduce_job *j = arg;
    for (int64_t c = j->c0; c < j->c1; c++) chunk_sums(j->ctx, j->fn, j->n, j->nsum, c, j->part + (c - j->base) * j->nsum);
    return NULL;
}

void bb_reduce_f64(const void *ctx, bb_reduce_fn fn, int64_t n, int nsum, double *out) {
    int nt = n > 0 ? bb_parallel_threads(0, n, REDUCE_PAR_MIN) : 1;
    if (nt == 1) {
        bb_reduce_f64_ref(ctx, fn, n, nsum, out);
        return;
    }
    double part[ROUND_CHUNKS * BB_REDUCE_MAX]; /* 128 KiB */
    for (int s = 0; s < nsum; s++) out[s] = 0;
    int64_t nc = n_chunks(n);
    for (int64_t base = 0; base < nc; base += ROUND_CHUNKS) {
        int64_t cnt = nc - base < ROUND_CHUNKS ? nc - base : ROUND_CHUNKS;
        int use = nt;
        if (use > cnt) use = (int)cnt;
        reduce_job jobs[BB_PARALLEL_MAX];
        for (int t = 0; t < use; t++)
            jobs[t] = (reduce_job){ctx, fn, n, base + cnt * t / use, base + cnt * (t + 1) / use, nsum, part, base};
        bb_parallel_run(reduce_range, jobs, sizeof jobs[0], use);
        for (int64_t c = 0; c < cnt; c++) /* in chunk order, as the reference adds them */
            for (int s = 0; s < nsum; s++) out[s] += part[c * nsum + s];
    }
}

typedef struct {
    const float *a, *b;
} dot_ctx;

static void dot_terms(const void *ctx, int64_t i0, int64_t i1, double *acc) {
    const dot_ctx *d = ctx;
    double s = 0;
    if (d->b)
        for (int64_t i = i0; i < i1; i++) s += (double)d->a[i] * d->b[i];
    else
        for (int64_t i = i0; i < i1; i++) s += (double)d->a[i] * d->a[i];
    acc[0] += s;
}

double bb_dot_f64(const float *a, const float *b, int64_t n) {
    dot_ctx d = {a, b};
    double s;
    bb_reduce_f64(&d, dot_terms, n, 1, &s);
    return s;
}

double bb_dot_f64_ref(const float *a, const float *b, int64_t n) {
    dot_ctx d = {a, b};
    double s;
    bb_reduce_f64_ref(&d, dot_terms, n, 1, &s);
    return s;
}

typedef struct {
    float *d;
    const float *a, *b;
    int64_t i0, i1;
} sub_job;

static void *sub_range(void *arg) {
    sub_job *j = arg;
    if (j->b)
        for (int64_t i = j->i0; i < j->i1; i++) j->d[i] = j->a[i] - j->b[i];
    else
        memcpy(j->d + j->i0, j->a + j->i0, sizeof(float) * (size_t)(j->i1 - j->i0));
    return NULL;
}

void bb_sub_f32(float *d, const float *a, const float *b, int64_t n) {
    if (n <= 0) return;
    int nt = bb_parallel_threads(0, n, REDUCE_PAR_MIN);
    sub_job jobs[BB_PARALLEL_MAX];
    for (int t = 0; t < nt; t++) jobs[t] = (sub_job){d, a, b, n * t / nt, n * (t + 1) / nt};
    bb_parallel_run(sub_range, jobs, sizeof jobs[0], nt);
}
