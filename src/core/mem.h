/* mem.h — this process's resident memory (current, peak, a resettable peak for per-stage figures) and CPU time.
 *
 * Linux: VmRSS / VmHWM from /proc/self/status; the peak is reset by writing 5 to /proc/self/clear_refs
 * (Linux 4.0+). Elsewhere, or when /proc cannot be read, the peak is getrusage's ru_maxrss (never reset)
 * and the current size is 0. Not collective; no allocation. */
#ifndef BB_CORE_MEM_H
#define BB_CORE_MEM_H

#include <stdint.h>

/* Resident bytes now; 0 when unknown. */
int64_t bb_mem_rss_bytes(void);
/* The most resident bytes since the process started or since the last successful bb_mem_peak_reset. */
int64_t bb_mem_peak_bytes(void);
/* User + system CPU seconds of the whole process so far (every thread). */
double bb_cpu_seconds(void);
/* Start a new peak at the current size. Returns 1 when reset, 0 when the system cannot (the peak then
 * stays the process-wide high-water mark). */
int bb_mem_peak_reset(void);

#endif
