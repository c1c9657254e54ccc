/* backend.c — the table of linear-algebra backends and the argument checks they share. */
#include "linalg/backend.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define MAX_BACKENDS 16

static const bb_linalg_backend *table[MAX_BACKENDS] = {&bb_linalg_backend_cpu, &bb_linalg_backend_ref};
static int n_table = 2;

void bb_linalg_backend_list(char *buf, size_t n) {
    size_t off = 0;
    if (n == 0) return;
    buf[0] = '\0';
    for (int i = 0; i < n_table && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", table[i]->name);
}

bb_status bb_linalg_backend_get(const char *name, const bb_linalg_backend **out) {
    *out = NULL;
    for (int i = 0; name && i < n_table; i++)
        if (!strcmp(table[i]->name, name)) {
            *out = table[i];
            return BB_OK;
        }
    char list[256];
    bb_linalg_backend_list(list, sizeof list);
    return bb_error(BB_ERR_ARG, __FILE__, __LINE__, "unknown linear-algebra backend '%s' (available: %s)",
                    name ? name : "(null)", list);
}

static const bb_linalg_backend *default_backend;

void bb_linalg_backend_set_default(const bb_linalg_backend *b) { default_backend = b; }

bb_status bb_linalg_backend_default_get(const bb_linalg_backend **out) {
    *out = default_backend ? default_backend : &bb_linalg_backend_cpu;
    return BB_OK;
}

bb_status bb_linalg_backend_register(const bb_linalg_backend *b) {
    BB_CHECK(b && b->name && *b->name, BB_ERR_ARG, "linalg backend registration without a name");
    BB_CHECK(
        b->gemm && b->syrk && b->potrf && b->trsm && b->potri && b->qr && b->svd && b->syevd, BB_ERR_ARG,
        "linalg backend '%s' lacks an operation (all of gemm, syrk, potrf, trsm, potri, qr, svd, syevd are needed)",
        b->name);
    for (int i = 0; i < n_table; i++)
        BB_CHECK(strcmp(table[i]->name, b->name) != 0, BB_ERR_ARG, "linalg backend '%s' is already registered",
                 b->name);
    BB_CHECK(n_table < MAX_BACKENDS, BB_ERR_ARG, "linalg backend table is full (%d entries) registering '%s'",
             MAX_BACKENDS, b->name);
    table[n_table++] = b;
    return BB_OK;
}

bb_status bb_linalg_check_dims(const char *op, int64_t rows, int64_t cols, int64_t ld, int64_t min_ld) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: negative size (%lld, %lld)", op, (long long)rows,
             (long long)cols);
    BB_CHECK(rows <= INT_MAX && cols <= INT_MAX && ld <= INT_MAX, BB_ERR_UNSUPPORTED,
             "%s: size (%lld, %lld) with leading dimension %lld exceeds the 32-bit BLAS/LAPACK interface", op,
             (long long)rows, (long long)cols, (long long)ld);
    BB_CHECK(ld >= (min_ld > 1 ? min_ld : 1), BB_ERR_ARG, "%s: leading dimension %lld is smaller than %lld", op,
             (long long)ld, (long long)(min_ld > 1 ? min_ld : 1));
    return BB_OK;
}

bb_status bb_linalg_inverse_cholesky_upper(const bb_linalg_backend *be, float *a, int64_t n) {
    int was_quiet = bb_error_set_quiet(1);
    bb_status st = be->potrf(BB_UPLO_UPPER, n, a, n, NULL);
    if (st == BB_OK) st = be->potri(BB_UPLO_UPPER, n, a, n);
    if (st == BB_OK) st = be->potrf(BB_UPLO_UPPER, n, a, n, NULL);
    bb_error_set_quiet(was_quiet);
    if (st != BB_OK && st != BB_ERR_NUMERIC)
        return bb_error(st, __FILE__, __LINE__, "inverse Cholesky factor of a %lld x %lld matrix failed: %s",
                        (long long)n, (long long)n, bb_last_error());
    return st;
}

bb_status bb_linalg_hold(const bb_linalg_backend *be, const float *p, int64_t rows, int64_t cols, int64_t ld) {
    BB_CALL(bb_linalg_check_dims("hold", rows, cols, ld, cols));
    return be && be->hold ? be->hold(p, rows, cols, ld) : BB_OK;
}

void bb_linalg_release(const bb_linalg_backend *be, const float *p) {
    if (be && be->release && p) be->release(p);
}
