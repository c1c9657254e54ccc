/* test.h — a tiny test harness: checks that count failures, print evidence and
 * make the test exit non-zero. Each test file has main() calling TEST_RUN(fn)
 * for its cases and returning TEST_DONE(). */
#ifndef BB_TEST_H
#define BB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

static int test_failures_, test_checks_;

#define EXPECT(cond, ...)                                                         \
    do {                                                                          \
        test_checks_++;                                                           \
        if (!(cond)) {                                                            \
            test_failures_++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

#define EXPECT_OK(expr)                                                                           \
    do {                                                                                          \
        bb_status s_ = (expr);                                                                    \
        EXPECT(s_ == BB_OK, "%s returned %s: %s", #expr, bb_status_name(s_), bb_last_error());    \
    } while (0)

/* expr must fail with `code` and a message containing `needle`. */
#define EXPECT_ERR(expr, code, needle)                                                             \
    do {                                                                                           \
        bb_clear_error();                                                                          \
        bb_error_set_quiet(1);                                                                     \
        bb_status s_ = (expr);                                                                     \
        bb_error_set_quiet(0);                                                                     \
        EXPECT(s_ == (code), "%s returned %s, expected %s (message: %s)", #expr, bb_status_name(s_), \
               bb_status_name(code), bb_last_error());                                             \
        EXPECT(strstr(bb_last_error(), (needle)) != NULL, "message \"%s\" lacks \"%s\"", bb_last_error(), (needle)); \
    } while (0)

#define EXPECT_NEAR(a, b, tol) \
    EXPECT(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a), (double)(b), (double)(tol))

#define TEST_RUN(fn)                                                            \
    do {                                                                        \
        int before_ = test_failures_;                                           \
        fn();                                                                   \
        printf("%s %s\n", test_failures_ == before_ ? "ok  " : "FAIL", #fn);    \
    } while (0)

#define TEST_DONE()                                                                              \
    (printf("%d checks, %d failed\n", test_checks_, test_failures_),                              \
     (test_checks_ == 0 ? (fprintf(stderr, "no checks ran\n"), 1) : test_failures_ != 0))

/* Directory for files a test makes (BB_TEST_TMP, else /tmp). */
static inline const char *test_tmpdir(void) {
    const char *d = getenv("BB_TEST_TMP");
    return d && *d ? d : "/tmp";
}
/* The shared/ folder (BB_SHARED, else ../shared relative to the source). */
static inline const char *test_shared(void) {
    const char *d = getenv("BB_SHARED");
    return d && *d ? d : "../shared";
}
static inline int test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

#endif
