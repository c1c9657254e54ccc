/* finite.h — the first NaN or Inf of a float array, over the process's threads (core/parallel.h) when the
 * array is large: a check that reads gigabytes (a 70B-shaped Gram is 3.3 GB) is memory-bound, and one
 * thread reads about 10 GB/s. The index is the same for any thread count. */
#ifndef BB_CORE_FINITE_H
#define BB_CORE_FINITE_H

#include <stdint.h>

/* Index of the first non-finite value of p[0, n), or -1 if all are finite. */
int64_t bb_first_nonfinite(const float *p, int64_t n);
/* The same on one thread, in order: the reference. */
int64_t bb_first_nonfinite_ref(const float *p, int64_t n);

#endif
