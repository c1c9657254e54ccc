/* mem.c — resident memory and CPU time of this process (mem.h). */
#include "core/mem.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

/* A "Key:   1234 kB" line of /proc/self/status in bytes, or -1. */
static int64_t proc_status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    size_t n = strlen(key);
    long long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            if (sscanf(line + n + 1, "%lld", &kib) != 1) kib = -1;
            break;
        }
    fclose(f);
    return kib < 0 ? -1 : (int64_t)kib * 1024;
}

int64_t bb_mem_rss_bytes(void) {
    int64_t b = proc_status_kib("VmRSS");
    return b < 0 ? 0 : b;
}

int64_t bb_mem_peak_bytes(void) {
    int64_t b = proc_status_kib("VmHWM");
    if (b >= 0) return b;
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? (int64_t)u.ru_maxrss * 1024 : 0; /* ru_maxrss is in KiB on Linux */
}

double bb_cpu_seconds(void) {
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

int bb_mem_peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}
