/* backend.h — the dense linear-algebra backend interface: an ops table per backend, chosen by name.
 *
 * Every matrix is f32, row-major, with an explicit leading dimension (the
 * distance in elements between the starts of consecutive rows), so a backend
 * can work on a block of a larger matrix. Built-in backends:
 *   "cpu"  OpenBLAS (cblas_*) and LAPACKE,
 *   "ref"  plain C loops in double precision: readable, slow, the reference the
 *          tests check every optimized backend against.
 * Optional backends (CUDA) add themselves with bb_linalg_backend_register when
 * they are built in; nothing above linalg/ calls them directly.
 *
 * All operations are local (not collective) and report bad sizes or failed
 * factorizations with a message naming the operation and the sizes. Sizes must
 * fit a 32-bit int (the BLAS/LAPACK interface this build links). */
#ifndef BB_LINALG_BACKEND_H
#define BB_LINALG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum { BB_OP_N = 0, BB_OP_T } bb_op;                             /* op(X) = X or X^T */
typedef enum { BB_UPLO_UPPER = 0, BB_UPLO_LOWER, BB_UPLO_FULL } bb_uplo; /* triangle read or written */
typedef enum { BB_SIDE_LEFT = 0, BB_SIDE_RIGHT } bb_side;

typedef struct bb_linalg_backend {
    const char *name;        /* "cpu", "ref", ... */
    const char *description; /* one line for listings */

    /* C = alpha op(A) op(B) + beta C.
     * op(A) (m, k), op(B) (k, n), C (m, n); all row-major. beta = 0 ignores C's old values. */
    bb_status (*gemm)(bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

    /* C = alpha A^T A + beta C (a Gram matrix).
     * A (k, n) row-major, C (n, n) row-major. uplo UPPER or LOWER writes that
     * triangle only (the other is left untouched); FULL writes both, from the
     * upper triangle of the old C (so C must be symmetric unless beta = 0). */
    bb_status (*syrk)(bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, float beta,
                      float *c, int64_t ldc);

    /* Cholesky factorization in place of the symmetric positive definite A (n, n),
     * reading the `uplo` triangle: UPPER gives A = U^T U, LOWER gives A = L L^T,
     * written into that triangle; the other triangle is left untouched.
     * A matrix that is not positive definite gives BB_ERR_NUMERIC naming the
     * pivot, and *bad_pivot (if non-NULL) = its 0-based index (-1 on success). */
    bb_status (*potrf)(bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot);

    /* Triangular solve with T non-unit triangular (uplo UPPER or LOWER):
     * side LEFT:  B := alpha op(T)^-1 B, T (m, m);
     * side RIGHT: B := alpha B op(T)^-1, T (n, n);  B (m, n) row-major. */
    bb_status (*trsm)(bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha, const float *t,
                      int64_t ldt, float *b, int64_t ldb);

    /* Inverse of a symmetric positive definite matrix from its Cholesky factor:
     * A (n, n) holds the factor as potrf left it (same uplo); on return A holds
     * the full (both triangles) symmetric inverse. */
    bb_status (*potri)(bb_uplo uplo, int64_t n, float *a, int64_t lda);

    /* Thin QR (geqrf + orgqr): A (m, n), m >= n, is overwritten by Q (m, n) with
     * orthonormal columns; if r is non-NULL, R (n, n) row-major (upper, zeros
     * below) is written there, so A_in = Q R. */
    bb_status (*qr)(int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr);

    /* Thin SVD A = U diag(s) Vt of A (m, n); mn = min(m, n). s (mn) descending;
     * U (m, mn) and Vt (mn, n) row-major, each skipped when NULL (both or neither).
     * A is destroyed. The cpu backend uses gesdd and falls back to gesvd when
     * divide and conquer does not converge. */
    bb_status (*svd)(int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu, float *vt,
                     int64_t ldvt);

    /* Symmetric eigendecomposition A = Z diag(w) Z^T of A (n, n) (upper triangle
     * read): w (n) ascending; A is overwritten by Z, eigenvector j in column j. */
    bb_status (*syevd)(int64_t n, float *a, int64_t lda, float *w);

    /* Optional (NULL in the host backends; call them through bb_linalg_hold/release): resident operands.
     * hold: the caller promises that the host matrix (rows, cols) with leading dimension ld at p stays
     * unchanged until release(p); a device backend may keep one copy of it and read that copy in every
     * later operation whose input operand is exactly (p, rows, cols, ld), instead of sending it again
     * (an operation that writes p is the caller's error). Holds nest: holding (p, rows, cols, ld) again
     * counts one more hold, and the copy goes at the release that ends the last one; every hold needs its
     * release(p). Holding more than the backend keeps (slots or device memory) is not an error: the later
     * operations then copy those matrices as usual. */
    bb_status (*hold)(const float *p, int64_t rows, int64_t cols, int64_t ld);
    void (*release)(const float *p);
} bb_linalg_backend;

/* be->hold / be->release where the backend has them, else nothing (a host backend reads host memory). */
bb_status bb_linalg_hold(const bb_linalg_backend *be, const float *p, int64_t rows, int64_t cols, int64_t ld);
void bb_linalg_release(const bb_linalg_backend *be, const float *p);

/* The backend registered under `name`. Errors: BB_ERR_ARG listing the available names. */
bb_status bb_linalg_backend_get(const char *name, const bb_linalg_backend **out);

/* Add a backend to the table (at most 16; a name may appear once). The table
 * holds the pointer: `b` must outlive every use. Not thread-safe: register at
 * start-up. Errors: BB_ERR_ARG for a duplicate name or a missing operation. */
bb_status bb_linalg_backend_register(const bb_linalg_backend *b);

/* The backend that options without one (backend = NULL) use: "cpu" unless a run chose another
 * (backend.device = cuda sets "cuda"). Process-wide; set it before the work starts. */
void bb_linalg_backend_set_default(const bb_linalg_backend *b); /* NULL = "cpu" */
bb_status bb_linalg_backend_default_get(const bb_linalg_backend **out);

/* Names of the registered backends, comma-separated, into buf (size n). */
void bb_linalg_backend_list(char *buf, size_t n);

/* a (n, n) row-major symmetric positive definite in; out: the upper Cholesky
 * factor of a^-1 in a's upper triangle (potrf, potri, potrf), as GPTQ and
 * SparseGPT use it. A matrix that is not positive definite returns
 * BB_ERR_NUMERIC without printing (callers raise the damping and retry);
 * other errors are reported. */
bb_status bb_linalg_inverse_cholesky_upper(const bb_linalg_backend *be, float *a, int64_t n);

/* The built-in tables (backend_cpu.c, backend_ref.c). */
extern const bb_linalg_backend bb_linalg_backend_cpu;
extern const bb_linalg_backend bb_linalg_backend_ref;

/* Shared argument checks used by the implementations: sizes non-negative and
 * within a 32-bit int, leading dimension at least `min_ld`. */
bb_status bb_linalg_check_dims(const char *op, int64_t rows, int64_t cols, int64_t ld, int64_t min_ld);

#endif
