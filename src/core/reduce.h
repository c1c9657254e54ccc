/* reduce.h — sums over large float arrays in double, over the process's threads (core/parallel.h), with the
 * same bits for any thread count: the array is cut into fixed chunks of BB_REDUCE_CHUNK values, each chunk is
 * summed in index order, and the chunks' sums are added in chunk order. The _ref functions are that order on
 * one thread, so a threaded result equals its reference exactly.
 *
 * Why: a healing fit or a stress signal of a 70B-shaped weight sums 235 M products several times; one thread
 * takes about 0.3 s per pass, where the matrix products around them take less on a GPU. */
#ifndef BB_CORE_REDUCE_H
#define BB_CORE_REDUCE_H

#include <stdint.h>

#define BB_REDUCE_CHUNK ((int64_t)1 << 16)
/* Most sums one pass accumulates (bb_reduce_f64's nsum). */
#define BB_REDUCE_MAX 4

/* Adds to acc[0 .. nsum) the terms of values [i0, i1), in index order. */
typedef void (*bb_reduce_fn)(const void *ctx, int64_t i0, int64_t i1, double *acc);

/* out[0 .. nsum) = the chunked sums of fn's terms over [0, n). nsum <= BB_REDUCE_MAX. */
void bb_reduce_f64(const void *ctx, bb_reduce_fn fn, int64_t n, int nsum, double *out);
void bb_reduce_f64_ref(const void *ctx, bb_reduce_fn fn, int64_t n, int nsum, double *out);

/* Σ a[i] · b[i] (b = NULL: Σ a[i]²), in double, chunked as above. */
double bb_dot_f64(const float *a, const float *b, int64_t n);
double bb_dot_f64_ref(const float *a, const float *b, int64_t n);

/* d[i] = a[i] - b[i] (b = NULL: d = a) over the threads; exact, so no reference beyond the loop itself. */
void bb_sub_f32(float *d, const float *a, const float *b, int64_t n);

#endif
