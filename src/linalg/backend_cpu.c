/* backend_cpu.c — the "cpu" linear-algebra backend: OpenBLAS (cblas) and LAPACKE on row-major f32. */
#include <cblas.h>
#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/backend.h"

static CBLAS_TRANSPOSE cb_op(bb_op op) { return op == BB_OP_T ? CblasTrans : CblasNoTrans; }

/* Both triangles from the one `uplo` wrote: copy it across the diagonal. */
static void mirror(bb_uplo from, int64_t n, float *a, int64_t lda) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            if (from == BB_UPLO_UPPER)
                a[j * lda + i] = a[i * lda + j];
            else
                a[i * lda + j] = a[j * lda + i];
        }
}

/* A row-major symmetric matrix read as column-major is the same matrix with its
 * triangles swapped: LAPACK can factor it in place, with no transposed copy
 * (which LAPACKE's row-major path would make, doubling memory for large Grams). */
static char colmajor_uplo(bb_uplo uplo) { return uplo == BB_UPLO_UPPER ? 'L' : 'U'; }

static bb_status cpu_gemm(bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("gemm A", ta == BB_OP_N ? m : k, ta == BB_OP_N ? k : m, lda, ta == BB_OP_N ? k : m));
    BB_CALL(bb_linalg_check_dims("gemm B", tb == BB_OP_N ? k : n, tb == BB_OP_N ? n : k, ldb, tb == BB_OP_N ? n : k));
    BB_CALL(bb_linalg_check_dims("gemm C", m, n, ldc, n));
    if (m == 0 || n == 0) return BB_OK;
    if (k == 0) {
        /* BLAS leaves C untouched for k = 0 only when beta = 1; make beta = 0 clear it. */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return BB_OK;
    }
    cblas_sgemm(CblasRowMajor, cb_op(ta), cb_op(tb), (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c,
                (int)ldc);
    return BB_OK;
}

static bb_status cpu_syrk(bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, float beta,
                          float *c, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("syrk A", k, n, lda, n));
    BB_CALL(bb_linalg_check_dims("syrk C", n, n, ldc, n));
    if (n == 0) return BB_OK;
    CBLAS_UPLO cu = uplo == BB_UPLO_LOWER ? CblasLower : CblasUpper;
    if (k == 0) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                if (uplo == BB_UPLO_FULL || (uplo == BB_UPLO_UPPER ? j >= i : j <= i))
                    c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return BB_OK;
    }
    cblas_ssyrk(CblasRowMajor, cu, CblasTrans, (int)n, (int)k, alpha, a, (int)lda, beta, c, (int)ldc);
    if (uplo == BB_UPLO_FULL) mirror(BB_UPLO_UPPER, n, c, ldc);
    return BB_OK;
}

static bb_status cpu_potrf(bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot) {
    if (bad_pivot) *bad_pivot = -1;
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "potrf: uplo must be UPPER or LOWER");
    BB_CALL(bb_linalg_check_dims("potrf", n, n, lda, n));
    if (n == 0) return BB_OK;
    lapack_int info = LAPACKE_spotrf(LAPACK_COL_MAJOR, colmajor_uplo(uplo), (int)n, a, (int)lda);
    BB_CHECK(info >= 0, BB_ERR_INTERNAL, "potrf: LAPACK rejected argument %d (n = %lld, lda = %lld)", -(int)info,
             (long long)n, (long long)lda);
    if (info > 0) {
        if (bad_pivot) *bad_pivot = info - 1;
        return bb_error(
            BB_ERR_NUMERIC, __FILE__, __LINE__,
            "Cholesky factorization of a (%lld, %lld) matrix failed: it is not positive definite at pivot %d "
            "(0-based); add damping to the diagonal",
            (long long)n, (long long)n, (int)info - 1);
    }
    return BB_OK;
}

static bb_status cpu_trsm(bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha, const float *t,
                          int64_t ldt, float *b, int64_t ldb) {
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "trsm: uplo must be UPPER or LOWER");
    int64_t nt = side == BB_SIDE_LEFT ? m : n;
    BB_CALL(bb_linalg_check_dims("trsm T", nt, nt, ldt, nt));
    BB_CALL(bb_linalg_check_dims("trsm B", m, n, ldb, n));
    if (m == 0 || n == 0) return BB_OK;
    for (int64_t i = 0; i < nt; i++)
        BB_CHECK(t[i * ldt + i] != 0.0f, BB_ERR_NUMERIC,
                 "trsm: the (%lld, %lld) triangular matrix is singular (zero at diagonal %lld)", (long long)nt,
                 (long long)nt, (long long)i);
    cblas_strsm(CblasRowMajor, side == BB_SIDE_LEFT ? CblasLeft : CblasRight,
                uplo == BB_UPLO_UPPER ? CblasUpper : CblasLower, cb_op(op), CblasNonUnit, (int)m, (int)n, alpha, t,
                (int)ldt, b, (int)ldb);
    return BB_OK;
}

static bb_status cpu_potri(bb_uplo uplo, int64_t n, float *a, int64_t lda) {
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "potri: uplo must be UPPER or LOWER");
    BB_CALL(bb_linalg_check_dims("potri", n, n, lda, n));
    if (n == 0) return BB_OK;
    lapack_int info = LAPACKE_spotri(LAPACK_COL_MAJOR, colmajor_uplo(uplo), (int)n, a, (int)lda);
    BB_CHECK(info >= 0, BB_ERR_INTERNAL, "potri: LAPACK rejected argument %d", -(int)info);
    BB_CHECK(info == 0, BB_ERR_NUMERIC, "potri: the (%lld, %lld) Cholesky factor is singular at diagonal %d (0-based)",
             (long long)n, (long long)n, (int)info - 1);
    mirror(uplo, n, a, lda);
    return BB_OK;
}

static bb_status cpu_qr(int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr) {
    BB_CHECK(m >= n, BB_ERR_ARG, "qr: thin QR needs rows >= cols, got (%lld, %lld)", (long long)m, (long long)n);
    BB_CALL(bb_linalg_check_dims("qr", m, n, lda, n));
    if (r) BB_CALL(bb_linalg_check_dims("qr R", n, n, ldr, n));
    if (n == 0) return BB_OK;
    float *tau;
    BB_MALLOC(tau, (size_t)n * sizeof *tau, "qr Householder scalars");
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (int)m, (int)n, a, (int)lda, tau);
    if (info == 0 && r)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) r[i * ldr + j] = j >= i ? a[i * lda + j] : 0.0f;
    if (info == 0) info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (int)m, (int)n, (int)n, a, (int)lda, tau);
    free(tau);
    BB_CHECK(info != LAPACK_WORK_MEMORY_ERROR && info != LAPACK_TRANSPOSE_MEMORY_ERROR, BB_ERR_OOM,
             "out of memory: LAPACK workspace for the QR of a (%lld, %lld) matrix", (long long)m, (long long)n);
    BB_CHECK(info == 0, BB_ERR_INTERNAL, "qr: LAPACK geqrf/orgqr returned %d for (%lld, %lld)", (int)info, (long long)m,
             (long long)n);
    return BB_OK;
}

static bb_status cpu_svd(int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu, float *vt,
                         int64_t ldvt) {
    int64_t mn = m < n ? m : n;
    int vec = u != NULL;
    BB_CHECK((u == NULL) == (vt == NULL), BB_ERR_ARG, "svd: U and Vt are both wanted or both skipped");
    BB_CALL(bb_linalg_check_dims("svd", m, n, lda, n));
    if (vec) {
        BB_CALL(bb_linalg_check_dims("svd U", m, mn, ldu, mn));
        BB_CALL(bb_linalg_check_dims("svd Vt", mn, n, ldvt, n));
    }
    if (mn == 0) return BB_OK;
    /* Row-major A (m, n) is column-major A^T (n, m) = U' S V'^T, so A = V' S U'^T:
     * LAPACK writes U' straight into our Vt and V'^T into our U, no transposed copies.
     * gesdd destroys A even when it fails; keep a copy for the gesvd fallback. */
    float *copy;
    BB_MALLOC(copy, (size_t)m * (size_t)n * sizeof *copy, "svd input copy (gesvd fallback)");
    for (int64_t i = 0; i < m; i++) memcpy(copy + i * n, a + i * lda, (size_t)n * sizeof *copy);
    float dummy = 0;
    lapack_int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, vec ? 'S' : 'N', (int)n, (int)m, a, (int)lda, s,
                                     vec ? vt : &dummy, vec ? (int)ldvt : 1, vec ? u : &dummy, vec ? (int)ldu : 1);
    if (info > 0) {
        float *superb = NULL;
        bb_status st = bb_malloc((void **)&superb, (size_t)mn * sizeof *superb, "gesvd workspace");
        if (st) {
            free(copy);
            return bb_trace(st, __FILE__, __LINE__, "gesvd workspace");
        }
        info = LAPACKE_sgesvd(LAPACK_COL_MAJOR, vec ? 'S' : 'N', vec ? 'S' : 'N', (int)n, (int)m, copy, (int)n, s,
                              vec ? vt : &dummy, vec ? (int)ldvt : 1, vec ? u : &dummy, vec ? (int)ldu : 1, superb);
        free(superb);
    }
    free(copy);
    BB_CHECK(info != LAPACK_WORK_MEMORY_ERROR && info != LAPACK_TRANSPOSE_MEMORY_ERROR, BB_ERR_OOM,
             "out of memory: LAPACK workspace for the SVD of a (%lld, %lld) matrix", (long long)m, (long long)n);
    BB_CHECK(info >= 0, BB_ERR_INTERNAL, "svd: LAPACK rejected argument %d", -(int)info);
    BB_CHECK(info == 0, BB_ERR_NUMERIC,
             "SVD of a (%lld, %lld) matrix did not converge (gesdd and gesvd); check the input for NaN/Inf",
             (long long)m, (long long)n);
    return BB_OK;
}

static bb_status cpu_syevd(int64_t n, float *a, int64_t lda, float *w) {
    BB_CALL(bb_linalg_check_dims("syevd", n, n, lda, n));
    if (n == 0) return BB_OK;
    lapack_int info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'U', (int)n, a, (int)lda, w);
    BB_CHECK(info != LAPACK_WORK_MEMORY_ERROR && info != LAPACK_TRANSPOSE_MEMORY_ERROR, BB_ERR_OOM,
             "out of memory: LAPACK workspace for the eigendecomposition of a (%lld, %lld) matrix", (long long)n,
             (long long)n);
    BB_CHECK(info >= 0, BB_ERR_INTERNAL, "syevd: LAPACK rejected argument %d", -(int)info);
    BB_CHECK(info == 0, BB_ERR_NUMERIC,
             "symmetric eigendecomposition of a (%lld, %lld) matrix did not converge; check the input for NaN/Inf",
             (long long)n, (long long)n);
    return BB_OK;
}

const bb_linalg_backend bb_linalg_backend_cpu = {
    .name = "cpu",
    .description = "OpenBLAS + LAPACKE (f32)",
    .gemm = cpu_gemm,
    .syrk = cpu_syrk,
    .potrf = cpu_potrf,
    .trsm = cpu_trsm,
    .potri = cpu_potri,
    .qr = cpu_qr,
    .svd = cpu_svd,
    .syevd = cpu_syevd,
};
