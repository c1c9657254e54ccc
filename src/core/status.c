/* status.c — error reporting and checked allocation. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static _Thread_local char last_msg[1024];
static int quiet;

static const char *const names[BB_STATUS_COUNT] = {
    [BB_OK] = "ok",
    [BB_ERR_ARG] = "bad argument",
    [BB_ERR_IO] = "I/O error",
    [BB_ERR_FORMAT] = "bad file format",
    [BB_ERR_CONFIG] = "configuration error",
    [BB_ERR_OOM] = "out of memory",
    [BB_ERR_UNSUPPORTED] = "unsupported",
    [BB_ERR_NUMERIC] = "numerical error",
    [BB_ERR_MPI] = "MPI error",
    [BB_ERR_CUDA] = "CUDA error",
    [BB_ERR_HDF5] = "HDF5 error",
    [BB_ERR_YAML] = "YAML error",
    [BB_ERR_INTERNAL] = "internal error",
};

const char *bb_status_name(bb_status s) {
    if ((int)s < 0 || s >= BB_STATUS_COUNT) return "unknown status";
    return names[s];
}

int bb_error_set_quiet(int q) {
    int old = quiet;
    quiet = q;
    return old;
}

const char *bb_last_error(void) { return last_msg; }

void bb_clear_error(void) { last_msg[0] = '\0'; }

bb_status bb_error(bb_status code, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    if (!quiet) {
        if (bb_log_size() > 1)
            fprintf(stderr, "[rank %d] error: %s\n  at %s:%d\n", bb_log_rank(), last_msg, file, line);
        else
            fprintf(stderr, "error: %s\n  at %s:%d\n", last_msg, file, line);
    }
    return code;
}

bb_status bb_trace(bb_status code, const char *file, int line, const char *expr) {
    if (!quiet && bb_log_get_level() >= BB_LOG_DEBUG) fprintf(stderr, "  from %s:%d: %s\n", file, line, expr);
    return code;
}

int bb_mul_overflow(size_t a, size_t b, size_t *out) { return __builtin_mul_overflow(a, b, out); }

bb_status bb_malloc(void **p, size_t nbytes, const char *what) {
    *p = malloc(nbytes ? nbytes : 1);
    BB_CHECK(*p, BB_ERR_OOM, "out of memory: %s needs %zu bytes (%.2f GiB); use fewer calibration samples, more ranks, or a machine with more memory",
             what, nbytes, (double)nbytes / (1024.0 * 1024.0 * 1024.0));
    return BB_OK;
}

bb_status bb_calloc(void **p, size_t n, size_t size, const char *what) {
    size_t total;
    BB_CHECK(!bb_mul_overflow(n, size, &total), BB_ERR_OOM, "out of memory: %s asks for %zu x %zu bytes, which overflows", what, n, size);
    *p = calloc(n ? n : 1, size ? size : 1);
    BB_CHECK(*p, BB_ERR_OOM, "out of memory: %s needs %zu bytes (%.2f GiB); use fewer calibration samples, more ranks, or a machine with more memory",
             what, total, (double)total / (1024.0 * 1024.0 * 1024.0));
    return BB_OK;
}
