/* status.h — status codes, error reporting with trace frames, and the check macros.
 *
 * Every library function returns bb_status. The first failure is reported once
 * with BB_CHECK / bb_error (an actionable message to stderr, prefixed with the
 * rank); callers propagate with BB_CALL, which adds a "  from file:line" trace
 * frame. Only main() ends the program (see mpi/dist.h: bb_dist_abort). */
#ifndef BB_STATUS_H
#define BB_STATUS_H

#include <stddef.h>

typedef enum {
    BB_OK = 0,
    BB_ERR_ARG,         /* bad argument from the caller or the command line */
    BB_ERR_IO,          /* open/read/write/rename failed */
    BB_ERR_FORMAT,      /* input file is corrupt, truncated or inconsistent */
    BB_ERR_CONFIG,      /* configuration key, type or value is wrong */
    BB_ERR_OOM,         /* allocation failed */
    BB_ERR_UNSUPPORTED, /* valid input that this build does not handle */
    BB_ERR_NUMERIC,     /* NaN/Inf, failed factorization */
    BB_ERR_MPI,
    BB_ERR_CUDA,
    BB_ERR_HDF5,
    BB_ERR_YAML,
    BB_ERR_INTERNAL, /* a broken invariant: a bug in birdbone */
    BB_STATUS_COUNT
} bb_status;

const char *bb_status_name(bb_status s);

/* Report a new error: prints "[rank R] error: <msg>\n  at file:line" to stderr,
 * remembers the message (bb_last_error) and returns code. */
bb_status bb_error(bb_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Add a trace frame for an error that is being propagated; returns code. */
bb_status bb_trace(bb_status code, const char *file, int line, const char *expr);

/* The message of the most recent bb_error in this thread ("" if none). */
const char *bb_last_error(void);
void bb_clear_error(void);

/* Silence printing (expected failures); messages are still kept. Returns the
 * previous setting, so that a caller can restore it. */
int bb_error_set_quiet(int quiet);

#define BB_CALL(expr)                                                  \
    do {                                                               \
        bb_status bb_s_ = (expr);                                      \
        if (bb_s_ != BB_OK) return bb_trace(bb_s_, __FILE__, __LINE__, #expr); \
    } while (0)

#define BB_CHECK(cond, code, ...)                                          \
    do {                                                                   \
        if (!(cond)) return bb_error((code), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* Like BB_CALL but jumps to a cleanup label with the status in `st`. */
#define BB_CALL_GOTO(st, label, expr)                                   \
    do {                                                               \
        (st) = (expr);                                                 \
        if ((st) != BB_OK) {                                           \
            bb_trace((st), __FILE__, __LINE__, #expr);                 \
            goto label;                                                \
        }                                                              \
    } while (0)

#define BB_CHECK_GOTO(st, label, cond, code, ...)                          \
    do {                                                                   \
        if (!(cond)) {                                                     \
            (st) = bb_error((code), __FILE__, __LINE__, __VA_ARGS__);      \
            goto label;                                                    \
        }                                                                  \
    } while (0)

/* Checked allocation: on failure reports "out of memory: <what> needs N bytes". */
bb_status bb_malloc(void **p, size_t nbytes, const char *what);
bb_status bb_calloc(void **p, size_t n, size_t size, const char *what);
/* n*size with overflow check (returns 0 on success). */
int bb_mul_overflow(size_t a, size_t b, size_t *out);

#define BB_MALLOC(ptr, nbytes, what) BB_CALL(bb_malloc((void **)&(ptr), (nbytes), (what)))
#define BB_CALLOC(ptr, n, what) BB_CALL(bb_calloc((void **)&(ptr), (n), sizeof(*(ptr)), (what)))

#endif
