/* linalg_cuda.cu — cuBLAS/cuSOLVER behind birdbone's row-major conventions, the Gram panels, the inverse
 * factor and the randomized SVD on the device.
 *
 * Row-major X (r, c) with leading dimension ld is, to the column-major libraries, X^T (c, r) with the same
 * ld. So a row-major product C = A B is the column-major C^T = B^T A^T (operands swapped, flags kept), a
 * row-major UPPER triangle is a column-major LOWER one, and a triangular solve from the LEFT is one from
 * the RIGHT on the transposed operands. */
/* The C headers use C11 _Static_assert. */
#define _Static_assert static_assert
extern "C" {
#include "core/log.h"
#include "core/status.h"
#include "linalg/backend.h"
}
#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/check.h"
#include "cuda/linalg_cuda.h"

struct bb_cuda_ctx {
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    void *scratch[4];
    size_t scratch_bytes[4];
    int *info; /* device int for cuSOLVER */
};

extern "C" void *bb_cuda_ctx_cublas(bb_cuda_ctx *c) { return (void *)c->blas; }

extern "C" const char *bb_cuda_math_name(bb_cuda_math m) {
    return m == BB_CUDA_TF32 ? "tf32" : m == BB_CUDA_BF16 ? "bf16" : "fp32";
}

extern "C" bb_status bb_cuda_ctx_create(bb_cuda_ctx **out) {
    BB_CHECK(out, BB_ERR_ARG, "bb_cuda_ctx_create: NULL output");
    *out = NULL;
    BB_CHECK(bb_cuda_device_count() > 0, BB_ERR_CUDA,
             "the cuda backend needs a GPU but none is visible (check CUDA_VISIBLE_DEVICES and the driver)");
    bb_cuda_ctx *c = (bb_cuda_ctx *)calloc(1, sizeof *c);
    BB_CHECK(c, BB_ERR_OOM, "bb_cuda_ctx_create: out of host memory");
    bb_status st = BB_OK;
    cublasStatus_t be = cublasCreate(&c->blas);
    if (be != CUBLAS_STATUS_SUCCESS) st = bb_cublas_error(be, __FILE__, __LINE__, "cublasCreate");
    cusolverStatus_t se = st == BB_OK ? cusolverDnCreate(&c->solver) : CUSOLVER_STATUS_SUCCESS;
    if (se != CUSOLVER_STATUS_SUCCESS) st = bb_cusolver_error(se, __FILE__, __LINE__, "cusolverDnCreate");
    if (st == BB_OK) st = bb_cuda_malloc((void **)&c->info, sizeof(int), "cuSOLVER info");
    if (st != BB_OK) {
        bb_cuda_ctx_destroy(&c);
        return st;
    }
    *out = c;
    return BB_OK;
}

extern "C" void bb_cuda_ctx_destroy(bb_cuda_ctx **pc) {
    if (!pc || !*pc) return;
    bb_cuda_ctx *c = *pc;
    if (c->blas) cublasDestroy(c->blas);
    if (c->solver) cusolverDnDestroy(c->solver);
    for (int i = 0; i < 4; i++) cudaFree(c->scratch[i]);
    cudaFree(c->info);
    free(c);
    *pc = NULL;
}

extern "C" bb_status bb_cuda_scratch(bb_cuda_ctx *c, int slot, size_t nbytes, void **p) {
    BB_CHECK(slot >= 0 && slot < 4, BB_ERR_INTERNAL, "scratch slot %d", slot);
    if (c->scratch_bytes[slot] < nbytes) {
        BB_CUDA_CALL(cudaFree(c->scratch[slot]));
        c->scratch[slot] = NULL;
        c->scratch_bytes[slot] = 0;
        BB_CALL(bb_cuda_malloc(&c->scratch[slot], nbytes, "cuda backend scratch"));
        c->scratch_bytes[slot] = nbytes;
    }
    *p = c->scratch[slot];
    return BB_OK;
}

static cublasOperation_t cop(bb_op o) { return o == BB_OP_T ? CUBLAS_OP_T : CUBLAS_OP_N; }
/* The column-major fill mode of a row-major triangle. */
static cublasFillMode_t cfill(bb_uplo u) { return u == BB_UPLO_UPPER ? CUBLAS_FILL_MODE_LOWER : CUBLAS_FILL_MODE_UPPER; }

static const int64_t I32 = 2147483647;
#define DIMS(op, r, c, ld, minld)                                                                       \
    do {                                                                                                \
        BB_CHECK((r) >= 0 && (c) >= 0 && (r) <= I32 && (c) <= I32 && (ld) >= (minld) && (ld) >= 1 &&   \
                     (ld) <= I32,                                                                       \
                 BB_ERR_ARG, "%s: bad sizes %lld x %lld (leading dimension %lld, needs >= %lld)", op,   \
                 (long long)(r), (long long)(c), (long long)(ld), (long long)(minld));                   \
    } while (0)

/* ---- small kernels ---- */

__global__ void to_bf16(const float *x, int64_t rows, int64_t cols, int64_t ld, __nv_bfloat16 *y) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n = rows * cols;
    for (; i < n; i += (int64_t)gridDim.x * blockDim.x) y[i] = __float2bfloat16_rn(x[(i / cols) * ld + i % cols]);
}

/* Row-major: copy the `from_upper` triangle onto the other one. */
__global__ void mirror(float *a, int64_t n, int64_t lda, int from_upper) {
    int64_t i = (int64_t)blockIdx.y * 32 + threadIdx.y, j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (i >= n || j >= n || i <= j) return; /* (i, j) in the strict lower triangle */
    if (from_upper)
        a[i * lda + j] = a[j * lda + i];
    else
        a[j * lda + i] = a[i * lda + j];
}

static void launch_mirror(float *a, int64_t n, int64_t lda, int from_upper) {
    dim3 b(32, 32), g((unsigned)((n + 31) / 32), (unsigned)((n + 31) / 32));
    if (n > 0) mirror<<<g, b>>>(a, n, lda, from_upper);
}

/* Row-major: zero the strict lower (lower = 1) or upper triangle. */
__global__ void zero_triangle(float *a, int64_t n, int64_t lda, int lower) {
    int64_t i = (int64_t)blockIdx.y * 32 + threadIdx.y, j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (i >= n || j >= n) return;
    if (lower ? i > j : i < j) a[i * lda + j] = 0;
}

#define LAUNCHED() BB_CUDA_CALL(cudaGetLastError())
#define LAUNCH_GOTO(what)                                                                   \
    do {                                                                                    \
        cudaError_t ce_ = cudaGetLastError();                                               \
        if (ce_ != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce_, __FILE__, __LINE__, what)); \
    } while (0)

/* ---- products ---- */

static bb_status gemm_bf16(bb_cuda_ctx *c, bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                           int64_t ldc) {
    /* The stored shapes of A and B (rows, cols), packed densely as bf16. */
    const int64_t ar = ta == BB_OP_N ? m : k, ac = ta == BB_OP_N ? k : m;
    const int64_t br = tb == BB_OP_N ? k : n, bc = tb == BB_OP_N ? n : k;
    void *pa, *pb;
    BB_CALL(bb_cuda_scratch(c, 0, (size_t)(ar * ac) * 2, &pa));
    BB_CALL(bb_cuda_scratch(c, 1, (size_t)(br * bc) * 2, &pb));
    to_bf16<<<1024, 256>>>(a, ar, ac, lda, (__nv_bfloat16 *)pa);
    LAUNCHED();
    to_bf16<<<1024, 256>>>(b, br, bc, ldb, (__nv_bfloat16 *)pb);
    LAUNCHED();
    BB_CUBLAS_CALL(cublasGemmEx(c->blas, cop(tb), cop(ta), (int)n, (int)m, (int)k, &alpha, pb, CUDA_R_16BF, (int)bc,
                                pa, CUDA_R_16BF, (int)ac, &beta, cm, CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
    return BB_OK;
}

extern "C" bb_status bb_cuda_gemm(bb_cuda_ctx *c, bb_cuda_math math, bb_op ta, bb_op tb, int64_t m, int64_t n,
                                  int64_t k, float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                                  float beta, float *cm, int64_t ldc) {
    DIMS("cuda gemm A", ta == BB_OP_N ? m : k, ta == BB_OP_N ? k : m, lda, ta == BB_OP_N ? k : m);
    DIMS("cuda gemm B", tb == BB_OP_N ? k : n, tb == BB_OP_N ? n : k, ldb, tb == BB_OP_N ? n : k);
    DIMS("cuda gemm C", m, n, ldc, n);
    if (m == 0 || n == 0) return BB_OK;
    if (math == BB_CUDA_BF16 && k > 0) return gemm_bf16(c, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
    cublasComputeType_t ct = math == BB_CUDA_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    BB_CUBLAS_CALL(cublasGemmEx(c->blas, cop(tb), cop(ta), (int)n, (int)m, (int)k, &alpha, b, CUDA_R_32F, (int)ldb, a,
                                CUDA_R_32F, (int)lda, &beta, cm, CUDA_R_32F, (int)ldc, ct, CUBLAS_GEMM_DEFAULT));
    return BB_OK;
}

static bb_status gram_panels(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x, int64_t ldx,
                             float beta, float *cm, int64_t ldc, int mirror);

extern "C" bb_status bb_cuda_gram(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x,
                                  int64_t ldx, float beta, float *cm, int64_t ldc) {
    return gram_panels(c, math, n, k, x, ldx, beta, cm, ldc, 1);
}

extern "C" bb_status bb_cuda_gram_upper(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x,
                                        int64_t ldx, float beta, float *cm, int64_t ldc) {
    return gram_panels(c, math, n, k, x, ldx, beta, cm, ldc, 0);
}

extern "C" bb_status bb_cuda_mirror_upper(float *cm, int64_t n, int64_t ldc) {
    launch_mirror(cm, n, ldc, 1);
    LAUNCHED();
    return BB_OK;
}

static bb_status gram_panels(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x, int64_t ldx,
                             float beta, float *cm, int64_t ldc, int mirror) {
    DIMS("cuda gram X", k, n, ldx, n);
    DIMS("cuda gram C", n, n, ldc, n);
    if (math == BB_CUDA_BF16 && k > 0 && n > 0) {
        /* Convert X once, then the panels in bf16. */
        void *px;
        BB_CALL(bb_cuda_scratch(c, 2, (size_t)(k * n) * 2, &px));
        to_bf16<<<2048, 256>>>(x, k, n, ldx, (__nv_bfloat16 *)px);
        LAUNCHED();
        const __nv_bfloat16 *xb = (const __nv_bfloat16 *)px;
        const float one = 1;
        for (int64_t j0 = 0; j0 < n; j0 += 4096) {
            const int64_t j1 = j0 + 4096 < n ? j0 + 4096 : n;
            /* row-major C[0:j1, j0:j1] = X[:, 0:j1]^T X[:, j0:j1] */
            BB_CUBLAS_CALL(cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)(j1 - j0), (int)j1, (int)k, &one,
                                        xb + j0, CUDA_R_16BF, (int)n, xb, CUDA_R_16BF, (int)n, &beta, cm + j0,
                                        CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    } else if (math == BB_CUDA_TF32 && k > 0 && n > 0) {
        /* Hopper's tf32 matrix instructions read both operands K-major (tokens contiguous): transpose X once
         * (one pass over it) so that each panel is a "TN" product instead of an operand cuBLAS must stage. */
        void *pt;
        BB_CALL(bb_cuda_scratch(c, 2, (size_t)(k * n) * sizeof(float), &pt));
        float *xt = (float *)pt; /* (n, k) row-major */
        BB_CALL(bb_cuda_transpose(c, k, n, x, ldx, xt, k));
        for (int64_t j0 = 0; j0 < n; j0 += 4096) {
            const int64_t j1 = j0 + 4096 < n ? j0 + 4096 : n;
            /* row-major C[0:j1, j0:j1] = Xt[0:j1, :] Xt[j0:j1, :]^T */
            BB_CALL(bb_cuda_gemm(c, math, BB_OP_N, BB_OP_T, j1, j1 - j0, k, 1.0f, xt, k, xt + j0 * k, k, beta,
                                 cm + j0, ldc));
        }
    } else {
        for (int64_t j0 = 0; j0 < n; j0 += 4096) {
            const int64_t j1 = j0 + 4096 < n ? j0 + 4096 : n;
            BB_CALL(bb_cuda_gemm(c, math, BB_OP_T, BB_OP_N, j1, j1 - j0, k, 1.0f, x, ldx, x + j0, ldx, beta, cm + j0,
                                 ldc));
        }
    }
    if (mirror) {
        launch_mirror(cm, n, ldc, 1);
        LAUNCHED();
    }
    return BB_OK;
}

extern "C" bb_status bb_cuda_syrk(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a,
                                  int64_t lda, float beta, float *cm, int64_t ldc) {
    DIMS("cuda syrk A", k, n, lda, n);
    DIMS("cuda syrk C", n, n, ldc, n);
    if (n == 0) return BB_OK;
    /* Row-major A (k, n) is column-major A^T (n, k): C = A^T A is the column-major N product. */
    BB_CUBLAS_CALL(cublasSsyrk(c->blas, cfill(uplo == BB_UPLO_FULL ? BB_UPLO_UPPER : uplo), CUBLAS_OP_N, (int)n,
                               (int)k, &alpha, a, (int)lda, &beta, cm, (int)ldc));
    if (uplo == BB_UPLO_FULL) {
        launch_mirror(cm, n, ldc, 1);
        LAUNCHED();
    }
    return BB_OK;
}

/* ---- factorizations ---- */

static bb_status read_info(bb_cuda_ctx *c, int *info) {
    BB_CUDA_CALL(cudaMemcpy(info, c->info, sizeof(int), cudaMemcpyDeviceToHost));
    return BB_OK;
}

/* potrf without the message on a non-positive pivot (the damping loops retry quietly). */
static bb_status potrf_quiet(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad) {
    int lwork = 0;
    BB_CUSOLVER_CALL(cusolverDnSpotrf_bufferSize(c->solver, cfill(uplo), (int)n, a, (int)lda, &lwork));
    void *ws;
    BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float), &ws));
    BB_CUSOLVER_CALL(cusolverDnSpotrf(c->solver, cfill(uplo), (int)n, a, (int)lda, (float *)ws, lwork, c->info));
    int info = 0;
    BB_CALL(read_info(c, &info));
    *bad = info > 0 ? info - 1 : -1;
    BB_CHECK(info >= 0, BB_ERR_INTERNAL, "cusolverDnSpotrf: argument %d is bad", -info);
    return BB_OK;
}

extern "C" bb_status bb_cuda_potrf(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, float *a, int64_t lda,
                                   int64_t *bad_pivot) {
    DIMS("cuda potrf", n, n, lda, n);
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "cuda potrf: uplo must be upper or lower");
    int64_t bad = -1;
    if (bad_pivot) *bad_pivot = -1;
    if (n == 0) return BB_OK;
    BB_CALL(potrf_quiet(c, uplo, n, a, lda, &bad));
    if (bad_pivot) *bad_pivot = bad;
    BB_CHECK(bad < 0, BB_ERR_NUMERIC,
             "cuda potrf: the %lld x %lld matrix is not positive definite (pivot %lld); add damping", (long long)n,
             (long long)n, (long long)bad);
    return BB_OK;
}

extern "C" bb_status bb_cuda_trsm(bb_cuda_ctx *c, bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n,
                                  float alpha, const float *t, int64_t ldt, float *b, int64_t ldb) {
    const int64_t tn = side == BB_SIDE_LEFT ? m : n;
    DIMS("cuda trsm T", tn, tn, ldt, tn);
    DIMS("cuda trsm B", m, n, ldb, n);
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "cuda trsm: uplo must be upper or lower");
    if (m == 0 || n == 0) return BB_OK;
    BB_CUBLAS_CALL(cublasStrsm(c->blas, side == BB_SIDE_LEFT ? CUBLAS_SIDE_RIGHT : CUBLAS_SIDE_LEFT, cfill(uplo),
                               cop(op), CUBLAS_DIAG_NON_UNIT, (int)n, (int)m, &alpha, t, (int)ldt, b, (int)ldb));
    return BB_OK;
}

extern "C" bb_status bb_cuda_potri(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, float *a, int64_t lda) {
    DIMS("cuda potri", n, n, lda, n);
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "cuda potri: uplo must be upper or lower");
    if (n == 0) return BB_OK;
    int lwork = 0;
    BB_CUSOLVER_CALL(cusolverDnSpotri_bufferSize(c->solver, cfill(uplo), (int)n, a, (int)lda, &lwork));
    void *ws;
    BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float), &ws));
    BB_CUSOLVER_CALL(cusolverDnSpotri(c->solver, cfill(uplo), (int)n, a, (int)lda, (float *)ws, lwork, c->info));
    int info = 0;
    BB_CALL(read_info(c, &info));
    BB_CHECK(info == 0, BB_ERR_NUMERIC, "cuda potri: the factor is singular (info %d)", info);
    launch_mirror(a, n, lda, uplo == BB_UPLO_UPPER);
    LAUNCHED();
    return BB_OK;
}

extern "C" bb_status bb_cuda_transpose(bb_cuda_ctx *c, int64_t rows, int64_t cols, const float *src, int64_t lds,
                                       float *dst, int64_t ldd) {
    if (rows == 0 || cols == 0) return BB_OK;
    const float one = 1, zero = 0;
    /* Column-major: src is (cols, rows), dst (rows, cols) = src^T. */
    BB_CUBLAS_CALL(cublasSgeam(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)cols, &one, src, (int)lds, &zero,
                               dst, (int)ldd, dst, (int)ldd));
    return BB_OK;
}

/* Row-major r (n, n) upper from the column-major R in the top of q (ld m). */
__global__ void extract_r(const float *q, int64_t m, int64_t n, float *r, int64_t ldr) {
    int64_t i = (int64_t)blockIdx.y * 32 + threadIdx.y, j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (i >= n || j >= n) return;
    r[i * ldr + j] = i <= j ? q[j * m + i] : 0.0f;
}

extern "C" bb_status bb_cuda_qr(bb_cuda_ctx *c, int64_t m, int64_t n, float *a, int64_t lda, float *r,
                                int64_t ldr) {
    DIMS("cuda qr", m, n, lda, n);
    BB_CHECK(m >= n, BB_ERR_ARG, "cuda qr: needs rows >= cols (got %lld x %lld)", (long long)m, (long long)n);
    if (r) DIMS("cuda qr R", n, n, ldr, n);
    if (n == 0) return BB_OK;
    void *pq, *ptau, *ws;
    BB_CALL(bb_cuda_scratch(c, 2, (size_t)(m * n + n) * sizeof(float), &pq));
    float *q = (float *)pq, *tau = q + m * n;
    BB_CALL(bb_cuda_transpose(c, m, n, a, lda, q, m)); /* column-major (m, n) = row-major A^T */
    (void)ptau;
    int lw1 = 0, lw2 = 0;
    BB_CUSOLVER_CALL(cusolverDnSgeqrf_bufferSize(c->solver, (int)m, (int)n, q, (int)m, &lw1));
    BB_CUSOLVER_CALL(cusolverDnSorgqr_bufferSize(c->solver, (int)m, (int)n, (int)n, q, (int)m, tau, &lw2));
    int lw = lw1 > lw2 ? lw1 : lw2;
    BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lw > 0 ? lw : 1) * sizeof(float), &ws));
    BB_CUSOLVER_CALL(cusolverDnSgeqrf(c->solver, (int)m, (int)n, q, (int)m, tau, (float *)ws, lw, c->info));
    if (r) {
        dim3 b(32, 32), g((unsigned)((n + 31) / 32), (unsigned)((n + 31) / 32));
        extract_r<<<g, b>>>(q, m, n, r, ldr);
        LAUNCHED();
    }
    BB_CUSOLVER_CALL(cusolverDnSorgqr(c->solver, (int)m, (int)n, (int)n, q, (int)m, tau, (float *)ws, lw, c->info));
    int info = 0;
    BB_CALL(read_info(c, &info));
    BB_CHECK(info == 0, BB_ERR_INTERNAL, "cuda qr: orgqr info %d", info);
    BB_CALL(bb_cuda_transpose(c, n, m, q, m, a, lda)); /* q col-major (m, n) is row-major (n, m) */
    return BB_OK;
}

extern "C" bb_status bb_cuda_svd(bb_cuda_ctx *c, int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u,
                                 int64_t ldu, float *vt, int64_t ldvt) {
    DIMS("cuda svd", m, n, lda, n);
    const int64_t mn = m < n ? m : n;
    BB_CHECK((u == NULL) == (vt == NULL), BB_ERR_ARG, "cuda svd: U and Vt must both be given or both be NULL");
    if (u) {
        DIMS("cuda svd U", m, mn, ldu, mn);
        DIMS("cuda svd Vt", mn, n, ldvt, n);
    }
    if (mn == 0) return BB_OK;
    const signed char job = u ? 'S' : 'N';
    int lwork = 0;
    void *ws;
    if (m <= n) {
        /* Column-major A^T (n, m), n >= m: A^T = U' S V'^T, so A = V' S U'^T: U' (col-major n x m) is Vt
         * row-major and V'^T (col-major m x m) is U row-major, with no transposes. */
        BB_CUSOLVER_CALL(cusolverDnSgesvd_bufferSize(c->solver, (int)n, (int)m, &lwork));
        BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float), &ws));
        BB_CUSOLVER_CALL(cusolverDnSgesvd(c->solver, job, job, (int)n, (int)m, a, (int)lda, s, vt, (int)(u ? ldvt : 1),
                                          u, (int)(u ? ldu : 1), (float *)ws, lwork, NULL, c->info));
    } else {
        void *pb;
        BB_CALL(bb_cuda_scratch(c, 2, (size_t)(m * n + m * n + n * n) * sizeof(float), &pb));
        float *acm = (float *)pb, *ucm = acm + m * n, *vtcm = ucm + m * n;
        BB_CALL(bb_cuda_transpose(c, m, n, a, lda, acm, m)); /* column-major A (m, n) */
        BB_CUSOLVER_CALL(cusolverDnSgesvd_bufferSize(c->solver, (int)m, (int)n, &lwork));
        BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float), &ws));
        BB_CUSOLVER_CALL(cusolverDnSgesvd(c->solver, job, job, (int)m, (int)n, acm, (int)m, s, ucm, (int)m, vtcm,
                                          (int)n, (float *)ws, lwork, NULL, c->info));
        if (u) {
            BB_CALL(bb_cuda_transpose(c, n, m, ucm, m, u, ldu));
            BB_CALL(bb_cuda_transpose(c, n, n, vtcm, n, vt, ldvt));
        }
    }
    int info = 0;
    BB_CALL(read_info(c, &info));
    BB_CHECK(info == 0, BB_ERR_NUMERIC, "cuda svd: gesvd did not converge (%d superdiagonals left)", info);
    return BB_OK;
}

extern "C" bb_status bb_cuda_syevd(bb_cuda_ctx *c, int64_t n, float *a, int64_t lda, float *w) {
    DIMS("cuda syevd", n, n, lda, n);
    if (n == 0) return BB_OK;
    int lwork = 0;
    BB_CUSOLVER_CALL(cusolverDnSsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, (int)n,
                                                 a, (int)lda, w, &lwork));
    void *ws, *pz;
    BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(float), &ws));
    BB_CUSOLVER_CALL(cusolverDnSsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, (int)n, a, (int)lda,
                                      w, (float *)ws, lwork, c->info));
    int info = 0;
    BB_CALL(read_info(c, &info));
    BB_CHECK(info == 0, BB_ERR_NUMERIC, "cuda syevd: did not converge (info %d)", info);
    /* Column-major Z (eigenvector j in column j) reads row-major as Z^T: transpose. */
    BB_CALL(bb_cuda_scratch(c, 2, (size_t)(n * n) * sizeof(float), &pz));
    BB_CALL(bb_cuda_transpose(c, n, n, a, lda, (float *)pz, n));
    BB_CUDA_CALL(cudaMemcpy2D(a, (size_t)lda * sizeof(float), pz, (size_t)n * sizeof(float), (size_t)n * sizeof(float),
                              (size_t)n, cudaMemcpyDeviceToDevice));
    return BB_OK;
}

/* ---- GPTQ's inverse factor ---- */

/* m (n, n) = J Hd J with Hd = H, dead diagonal -> 1, plus add on the diagonal. */
__global__ void reversed_damped(const float *h, int64_t n, float add, float *m) {
    int64_t i = (int64_t)blockIdx.y * 32 + threadIdx.y, j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (i >= n || j >= n) return;
    const int64_t si = n - 1 - i, sj = n - 1 - j;
    float v = h[si * n + sj];
    if (i == j) {
        if (v == 0) v = 1;
        v += add;
    }
    m[i * n + j] = v;
}

/* u (row-major, upper) from L^-1 in the column-major lower triangle of l: u[i][j] = Linv[n-1-i][n-1-j]. */
__global__ void unreverse(const float *l, int64_t n, float *u) {
    int64_t i = (int64_t)blockIdx.y * 32 + threadIdx.y, j = (int64_t)blockIdx.x * 32 + threadIdx.x;
    if (i >= n || j >= n) return;
    /* column-major element (r, c) = (n-1-i, n-1-j) is at c * n + r */
    u[i * n + j] = i <= j ? l[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
}

__global__ void diag_mean_sum(const float *h, int64_t n, double *out) {
    double s = 0;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
        float v = h[j * (n + 1)];
        s += v == 0 ? 1.0 : (double)v;
    }
    for (int o = 16; o; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) atomicAdd(out, s);
}

/* In place inverse of the column-major lower triangular (n, n) at a (ld lda), recursively:
 * inv([A 0; B C]) = [A^-1 0; -C^-1 B A^-1  C^-1], the off-diagonal block by two trmm (cuBLAS runs them
 * near gemm speed, where cusolverDnXtrtri on the whole matrix ran at a fraction of it); leaves of at most
 * 1024 by cusolverDnXtrtri. work holds (n/2 + 32)^2 floats. *singular = 1 on a zero pivot. */
static bb_status tri_inv_lower(bb_cuda_ctx *c, float *a, int64_t n, int64_t lda, float *work, int *singular) {
    if (n <= 1024) {
        size_t wd = 0, wh = 0;
        BB_CUSOLVER_CALL(cusolverDnXtrtri_bufferSize(c->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                                     CUDA_R_32F, a, lda, &wd, &wh));
        void *ws, *hs = NULL;
        BB_CALL(bb_cuda_scratch(c, 0, wd ? wd : 1, &ws));
        if (wh) hs = malloc(wh);
        BB_CHECK(wh == 0 || hs, BB_ERR_OOM, "trtri host workspace of %zu bytes", wh);
        cusolverStatus_t se = cusolverDnXtrtri(c->solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, CUDA_R_32F,
                                               a, lda, ws, wd, hs, wh, c->info);
        free(hs);
        if (se != CUSOLVER_STATUS_SUCCESS) return bb_cusolver_error(se, __FILE__, __LINE__, "cusolverDnXtrtri");
        int info = 0;
        BB_CALL(read_info(c, &info));
        if (info != 0) *singular = 1;
        return BB_OK;
    }
    const int64_t n1 = (n / 2 + 31) / 32 * 32, n2 = n - n1;
    float *a11 = a, *a21 = a + n1, *a22 = a + n1 * lda + n1;
    BB_CALL(tri_inv_lower(c, a11, n1, lda, work, singular));
    BB_CALL(tri_inv_lower(c, a22, n2, lda, work, singular));
    if (*singular) return BB_OK;
    const float one = 1, mone = -1;
    /* work (n2, n1) = A21 A11^-1; A21 = -A22^-1 work */
    BB_CUBLAS_CALL(cublasStrmm(c->blas, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                               (int)n2, (int)n1, &one, a11, (int)lda, a21, (int)lda, work, (int)n2));
    BB_CUBLAS_CALL(cublasStrmm(c->blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                               (int)n2, (int)n1, &mone, a22, (int)lda, work, (int)n2, a21, (int)lda));
    return BB_OK;
}

static bb_status factor_common(bb_cuda_ctx *c, const char *name, const float *h, int64_t n, double damp,
                               double damp_max, float *u, double *damp_used, int invert) {
    DIMS("cuda inverse factor", n, n, n, n);
    BB_CHECK(damp >= 0 && damp_max >= damp, BB_ERR_ARG, "%s: need 0 <= damp <= damp_max (got %g, %g)", name, damp,
             damp_max);
    void *pm;
    BB_CALL(bb_cuda_scratch(c, 3, (size_t)(n * n) * sizeof(float) + 64, &pm));
    float *mtx = (float *)pm;
    double *dsum = (double *)(mtx + n * n + (n * n % 2)); /* 8-byte aligned after n*n floats */
    BB_CUDA_CALL(cudaMemset(dsum, 0, sizeof(double)));
    diag_mean_sum<<<64, 256>>>(h, n, dsum);
    LAUNCHED();
    double mean = 0;
    BB_CUDA_CALL(cudaMemcpy(&mean, dsum, sizeof mean, cudaMemcpyDeviceToHost));
    mean /= (double)n;
    dim3 b(32, 32), g((unsigned)((n + 31) / 32), (unsigned)((n + 31) / 32));
    for (double d = damp;; d = d > 0 ? d * 10 : 1e-4) {
        BB_CHECK(d <= damp_max * (1 + 1e-12), BB_ERR_NUMERIC,
                 "%s: the Gram H is not positive definite even with damping raised from %g to %g x mean(diag H) "
                 "(limit %g); check the calibration statistics of this layer",
                 name, damp, d, damp_max);
        reversed_damped<<<g, b>>>(h, n, (float)(d * mean), mtx);
        LAUNCHED();
        int64_t bad = -1;
        BB_CALL(potrf_quiet(c, BB_UPLO_UPPER, n, mtx, n, &bad)); /* column-major lower */
        if (bad >= 0) continue;
        if (invert) {
            void *work;
            BB_CALL(bb_cuda_scratch(c, 1, (size_t)((n / 2 + 32) * (n / 2 + 32)) * sizeof(float), &work));
            int singular = 0;
            BB_CALL(tri_inv_lower(c, mtx, n, n, (float *)work, &singular));
            if (singular) continue;
        }
        unreverse<<<g, b>>>(mtx, n, u);
        LAUNCHED();
        if (d != damp)
            bb_warn("%s: Cholesky of the damped Gram failed at damp %g; the cuda path uses damp %g x mean(diag H)",
                    name, damp, d);
        if (damp_used) *damp_used = d;
        return BB_OK;
    }
}

extern "C" bb_status bb_cuda_inverse_factor(bb_cuda_ctx *c, const char *name, const float *h, int64_t n, double damp,
                                            double damp_max, float *u, double *damp_used) {
    return factor_common(c, name, h, n, damp, damp_max, u, damp_used, 1);
}

extern "C" bb_status bb_cuda_factor_inverse_of_u(bb_cuda_ctx *c, const char *name, const float *h, int64_t n,
                                                 double damp, double damp_max, float *v, double *damp_used) {
    return factor_common(c, name, h, n, damp, damp_max, v, damp_used, 0);
}

/* ---- lazy batches without the explicit inverse (bb_cuda_obs_*) ---- */

#define OBS 128

/* ubb[b] (OBS, OBS) row-major = inverse of the upper triangular diagonal block b of v (n, n); one block of
 * OBS threads per diagonal block, thread j solving column j by back substitution (sums in f64). */
__global__ void __launch_bounds__(OBS) diag_block_inverse(const float *v, int64_t n, float *ubb) {
    extern __shared__ float sm[];
    float *vs = sm, *xs = sm + OBS * OBS;
    const int64_t i0 = (int64_t)blockIdx.x * OBS;
    for (int idx = threadIdx.x; idx < OBS * OBS; idx += OBS) {
        int i = idx / OBS, j = idx % OBS;
        vs[idx] = j >= i ? v[(i0 + i) * n + i0 + j] : 0.0f;
        xs[idx] = 0;
    }
    __syncthreads();
    const int j = threadIdx.x;
    xs[j * OBS + j] = 1.0f / vs[j * OBS + j];
    for (int i = j - 1; i >= 0; i--) {
        double t = 0;
        for (int k = i + 1; k <= j; k++) t += (double)vs[i * OBS + k] * xs[k * OBS + j];
        xs[i * OBS + j] = (float)(-t / vs[i * OBS + i]);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < OBS * OBS; idx += OBS) ubb[blockIdx.x * OBS * OBS + idx] = xs[idx];
}

extern "C" bb_status bb_cuda_obs_prepare(const float *v, int64_t n, float *ubb) {
    BB_CHECK(n % OBS == 0 && n > 0, BB_ERR_ARG, "obs: %lld columns is not a multiple of %d", (long long)n, OBS);
    const size_t shm = 2 * OBS * OBS * sizeof(float);
    BB_CUDA_CALL(cudaFuncSetAttribute(diag_block_inverse, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    diag_block_inverse<<<(unsigned)(n / OBS), OBS, shm>>>(v, n, ubb);
    LAUNCHED();
    return BB_OK;
}

extern "C" bb_status bb_cuda_obs_before(bb_cuda_ctx *c, int64_t rows, int64_t n, int64_t b, float *w, const float *t,
                                        const float *ubb) {
    if (b == 0) return BB_OK;
    const int64_t i1 = b * OBS;
    /* W_b += T_b U_bb */
    return bb_cuda_gemm(c, BB_CUDA_FP32, BB_OP_N, BB_OP_N, rows, OBS, OBS, 1.0f, t + i1, n, ubb + b * OBS * OBS, OBS,
                        1.0f, w + i1, n);
}

extern "C" bb_status bb_cuda_obs_after(bb_cuda_ctx *c, bb_cuda_math math, int64_t rows, int64_t n, int64_t b,
                                       float *e, float *t, const float *ubb, const float *v, float *y) {
    const int64_t i1 = b * OBS, i2 = i1 + OBS;
    if (b > 0) { /* E -= T_b */
        const float one = 1, mone = -1;
        BB_CUBLAS_CALL(cublasSgeam(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, OBS, (int)rows, &one, e, OBS, &mone, t + i1,
                                   (int)n, e, OBS));
    }
    if (i2 >= n) return BB_OK;
    /* Y_b = (E_b - T_b) U_bb; T[:, i2:] += Y_b V[b, i2:] */
    BB_CALL(bb_cuda_gemm(c, BB_CUDA_FP32, BB_OP_N, BB_OP_N, rows, OBS, OBS, 1.0f, e, OBS, ubb + b * OBS * OBS, OBS,
                         0.0f, y, OBS));
    return bb_cuda_gemm(c, math, BB_OP_N, BB_OP_N, rows, n - i2, OBS, 1.0f, y, OBS, v + i1 * n + i2, n, 1.0f, t + i2,
                        n);
}

/* ---- randomized SVD ---- */

__device__ static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* N(0, 1) by Box-Muller from two hashed uniforms per element. */
__global__ void gaussian(float *x, int64_t n, uint64_t seed, float scale) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t r = mix64(seed ^ mix64((uint64_t)i));
        double u1 = ((r >> 11) + 1.0) * (1.0 / 9007199254740994.0), u2 = (double)(mix64(r) >> 11) * (1.0 / 9007199254740992.0);
        x[i] = scale * (float)(sqrt(-2.0 * log(u1)) * cospi(2.0 * u2));
    }
}

extern "C" bb_status bb_cuda_fill_normal(float *x, int64_t n, uint64_t seed, float scale) {
    gaussian<<<2048, 256>>>(x, n, seed, scale);
    LAUNCHED();
    return BB_OK;
}

__global__ void f32_to_f64(const float *a, int64_t n, double *b) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        b[i] = a[i];
}

/* From syevd's ascending (w, Z) of B B^T (l x l, column-major Z): s_i = sqrt(w_{l-1-i}) for i < k, and
 * ub (l, k) row-major = Z[:, l-1-i] (the eigenvector), ubs = ub / s (for V = B^T ub / s). */
__global__ void take_top(const double *w, const double *z, int l, int k, float *s, float *ub, float *ubs) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= l * k) return;
    int r = idx / k, i = idx % k, col = l - 1 - i;
    double sv = sqrt(w[col] > 0 ? w[col] : 0.0);
    double zv = z[(int64_t)col * l + r];
    ub[idx] = (float)zv;
    ubs[idx] = sv > 0 ? (float)(zv / sv) : 0.0f;
    if (r == 0) s[i] = (float)sv;
}

__global__ void f64_to_f32(const double *a, int64_t n, float *b) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        b[i] = (float)a[i];
}

/* Orthonormalize the columns of Y (m, l) row-major in place by CholQR2: twice G = Y^T Y (f64), G = R^T R,
 * Y := Y R^-1. Falls back to Householder QR (bb_cuda_qr) when G is not numerically positive definite.
 * y64 (m * l) and g64 (l * l) f64, r32 (l * l) f32 scratch. */
static bb_status orthonormalize(bb_cuda_ctx *c, int64_t m, int l, float *y, double *y64, double *g64, float *r32) {
    for (int pass = 0; pass < 2; pass++) {
        f32_to_f64<<<512, 256>>>(y, m * l, y64);
        LAUNCHED();
        const double one = 1, zero = 0;
        /* column-major Y^T (l, m): G = Y^T (Y^T)^T */
        BB_CUBLAS_CALL(cublasDgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, l, l, (int)m, &one, y64, l, y64, l, &zero, g64, l));
        int lwork = 0;
        BB_CUSOLVER_CALL(cusolverDnDpotrf_bufferSize(c->solver, CUBLAS_FILL_MODE_UPPER, l, g64, l, &lwork));
        void *ws;
        BB_CALL(bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(double), &ws));
        BB_CUSOLVER_CALL(cusolverDnDpotrf(c->solver, CUBLAS_FILL_MODE_UPPER, l, g64, l, (double *)ws, lwork, c->info));
        int info = 0;
        BB_CALL(read_info(c, &info));
        if (info != 0) return bb_cuda_qr(c, m, l, y, l, NULL, 0);
        f64_to_f32<<<64, 256>>>(g64, (int64_t)l * l, r32);
        LAUNCHED();
        const float onef = 1;
        /* row-major Y R^-1 is column-major R^-T Y^T */
        BB_CUBLAS_CALL(cublasStrsm(c->blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_T, CUBLAS_DIAG_NON_UNIT,
                                   l, (int)m, &onef, r32, l, y, l));
    }
    return BB_OK;
}

extern "C" bb_status bb_cuda_rsvd(bb_cuda_ctx *c, bb_cuda_math math, int64_t m, int64_t n, const float *a,
                                  int64_t lda, int k, int p, int q, uint64_t seed, float *s, float *u, float *v) {
    DIMS("cuda rsvd", m, n, lda, n);
    const int64_t mn = m < n ? m : n;
    BB_CHECK(k >= 1 && k <= mn && p >= 0 && q >= 0, BB_ERR_ARG,
             "cuda rsvd: rank %d must be in [1, %lld], oversample and power iterations >= 0", k, (long long)mn);
    int l = k + p;
    if (l > mn) l = (int)mn;
    /* Buffers: Omega/Z (n, l), Y (m, l), B (l, n), G (l, l) f32 and f64, w (l) f64, top k of s and ub. */
    float *om, *y, *bm, *ub, *ubs, *ds;
    double *g64, *w64, *wsd, *b64;
    float *r32 = NULL;
    const int64_t mx = m > n ? m : n;
    size_t need = (size_t)(n * l + m * l + (int64_t)l * n + 2 * (int64_t)l * k + k) * sizeof(float);
    BB_CALL(bb_cuda_malloc((void **)&om, need, "rsvd buffers"));
    y = om + n * l;
    bm = y + m * l;
    ub = bm + (int64_t)l * n;
    ubs = ub + (int64_t)l * k;
    ds = ubs + (int64_t)l * k;
    bb_status st = BB_OK;
    int lwork = 0, info = 0;
    void *ws = NULL;
    g64 = w64 = wsd = b64 = NULL;
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&g64, ((size_t)l * l + l + (size_t)l * mx) * sizeof(double),
                                          "rsvd small Gram"));
    w64 = g64 + (int64_t)l * l;
    b64 = w64 + l;
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&r32, (size_t)l * l * sizeof(float), "rsvd R"));
    gaussian<<<1024, 256>>>(om, n * l, seed, 1.0f);
    LAUNCH_GOTO("gaussian");
    BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_N, BB_OP_N, m, l, n, 1, a, lda, om, l, 0, y, l));
    for (int it = 0; it < q; it++) {
        BB_CALL_GOTO(st, done, orthonormalize(c, m, l, y, b64, g64, r32));
        BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_T, BB_OP_N, n, l, m, 1, a, lda, y, l, 0, om, l));
        BB_CALL_GOTO(st, done, orthonormalize(c, n, l, om, b64, g64, r32));
        BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_N, BB_OP_N, m, l, n, 1, a, lda, om, l, 0, y, l));
    }
    BB_CALL_GOTO(st, done, orthonormalize(c, m, l, y, b64, g64, r32));
    /* B (l, n) = Q^T A; G = B B^T (l, l) */
    BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_T, BB_OP_N, l, n, m, 1, y, l, a, lda, 0, bm, n));
    /* G = B B^T in f64 (B converted): the small eigenproblem then loses nothing beyond B's own f32
     * rounding, although it squares the singular values. */
    f32_to_f64<<<256, 256>>>(bm, (int64_t)l * n, b64);
    {
        const double one = 1, zero = 0;
        cublasStatus_t be = cublasDgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, l, l, (int)n, &one, b64, (int)n, b64, (int)n,
                                        &zero, g64, l);
        if (be != CUBLAS_STATUS_SUCCESS) BB_CALL_GOTO(st, done, bb_cublas_error(be, __FILE__, __LINE__, "cublasDgemm"));
    }
    {
        cusolverStatus_t se = cusolverDnDsyevd_bufferSize(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER,
                                                          l, g64, l, w64, &lwork);
        if (se != CUSOLVER_STATUS_SUCCESS) BB_CALL_GOTO(st, done, bb_cusolver_error(se, __FILE__, __LINE__, "syevd size"));
        BB_CALL_GOTO(st, done, bb_cuda_scratch(c, 0, (size_t)(lwork > 0 ? lwork : 1) * sizeof(double), &ws));
        wsd = (double *)ws;
        se = cusolverDnDsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, l, g64, l, w64, wsd, lwork,
                              c->info);
        if (se != CUSOLVER_STATUS_SUCCESS) BB_CALL_GOTO(st, done, bb_cusolver_error(se, __FILE__, __LINE__, "cusolverDnDsyevd"));
        BB_CALL_GOTO(st, done, read_info(c, &info));
        BB_CHECK_GOTO(st, done, info == 0, BB_ERR_NUMERIC, "cuda rsvd: the small eigenproblem did not converge (%d)",
                      info);
    }
    take_top<<<(l * k + 255) / 256, 256>>>(w64, g64, l, k, ds, ub, ubs);
    LAUNCH_GOTO("take_top");
    if (u) BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_N, BB_OP_N, m, k, l, 1, y, l, ub, k, 0, u, k));
    if (v) BB_CALL_GOTO(st, done, bb_cuda_gemm(c, math, BB_OP_T, BB_OP_N, n, k, l, 1, bm, n, ubs, k, 0, v, k));
    {
        cudaError_t ce = cudaMemcpy(s, ds, (size_t)k * sizeof(float), cudaMemcpyDeviceToHost);
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "copy s"));
    }
done:
    cudaFree(om);
    cudaFree(g64);
    cudaFree(r32);
    return st;
}

/* ---- the host-pointer backend table ---- */

static bb_cuda_ctx *g_ctx;

static bb_status host_ctx(bb_cuda_ctx **c) {
    if (!g_ctx) BB_CALL(bb_cuda_ctx_create(&g_ctx));
    *c = g_ctx;
    return BB_OK;
}

/* A device copy of host (rows, cols, ld), packed with ld = cols. */
static bb_status up(const float *h, int64_t rows, int64_t cols, int64_t ld, float **d, const char *what) {
    BB_CALL(bb_cuda_malloc((void **)d, (size_t)(rows * cols) * sizeof(float) + 4, what));
    if (rows * cols > 0)
        BB_CUDA_CALL(cudaMemcpy2D(*d, (size_t)cols * 4, h, (size_t)ld * 4, (size_t)cols * 4, (size_t)rows,
                                  cudaMemcpyHostToDevice));
    return BB_OK;
}

/* Resident operands (backend.h, hold/release): host matrices the caller keeps unchanged, copied once. */
#define MAX_HELD 8
typedef struct {
    const float *host;
    int64_t rows, cols, ld;
    float *dev;
    int refs; /* holds not yet released */
} held_operand;
static held_operand g_held[MAX_HELD];

static float *held_copy(const float *h, int64_t rows, int64_t cols, int64_t ld) {
    for (int i = 0; i < MAX_HELD; i++)
        if (g_held[i].dev && g_held[i].host == h && g_held[i].rows == rows && g_held[i].cols == cols &&
            g_held[i].ld == ld)
            return g_held[i].dev;
    return NULL;
}

static int is_held(const float *d) {
    for (int i = 0; i < MAX_HELD; i++)
        if (d && g_held[i].dev == d) return 1;
    return 0;
}

/* An input operand: its held copy if there is one, else a fresh one (free it with drop). */
static bb_status up_ro(const float *h, int64_t rows, int64_t cols, int64_t ld, float **d, const char *what) {
    float *k = rows * cols > 0 ? held_copy(h, rows, cols, ld) : NULL;
    if (k) {
        *d = k;
        return BB_OK;
    }
    return up(h, rows, cols, ld, d, what);
}

static void drop(float *d) {
    if (!is_held(d)) cudaFree(d);
}

/* Diagnostics (docs/cuda.md): BB_CUDA_HOLD=0 turns holds off (every operand copied per call, as before they
 * existed); BB_CUDA_HOLD_ROUTE=0 keeps holds but routes cuda-auto products by their flops alone. */
static int env_off(const char *name) {
    const char *v = getenv(name);
    return v && !strcmp(v, "0");
}

static bb_status h_hold(const float *p, int64_t rows, int64_t cols, int64_t ld) {
    static int off = -1;
    if (off < 0) off = env_off("BB_CUDA_HOLD");
    if (!p || rows * cols == 0 || off) return BB_OK;
    for (int i = 0; i < MAX_HELD; i++)
        if (g_held[i].dev && g_held[i].host == p && g_held[i].rows == rows && g_held[i].cols == cols &&
            g_held[i].ld == ld) {
            g_held[i].refs++;
            return BB_OK;
        }
    int slot = -1;
    for (int i = 0; i < MAX_HELD && slot < 0; i++)
        if (!g_held[i].dev) slot = i;
    if (slot < 0) return BB_OK; /* full: later operations copy p as usual */
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *d = NULL;
    /* no room on the device is not an error: the operations then copy p as usual */
    int quiet = bb_error_set_quiet(1);
    bb_status st = up(p, rows, cols, ld, &d, "held operand");
    bb_error_set_quiet(quiet);
    if (st != BB_OK) {
        if (d) cudaFree(d);
        cudaGetLastError(); /* the failure's error state */
        bb_clear_error();
        return BB_OK;
    }
    g_held[slot] = (held_operand){p, rows, cols, ld, d, 1};
    return BB_OK;
}

static void h_release(const float *p) {
    for (int i = 0; i < MAX_HELD; i++)
        if (g_held[i].dev && g_held[i].host == p && --g_held[i].refs <= 0) {
            cudaFree(g_held[i].dev);
            g_held[i] = (held_operand){NULL, 0, 0, 0, NULL, 0};
        }
}

static bb_status down(const float *d, int64_t rows, int64_t cols, float *h, int64_t ld) {
    if (rows * cols > 0)
        BB_CUDA_CALL(cudaMemcpy2D(h, (size_t)ld * 4, d, (size_t)cols * 4, (size_t)cols * 4, (size_t)rows,
                                  cudaMemcpyDeviceToHost));
    return BB_OK;
}

/* The products' device buffers, reused from call to call (grow-only, one per operand): a cudaMalloc and a
 * cudaFree per call cost milliseconds at these sizes, and cudaFree waits for the device. */
static void *g_pool[3];
static size_t g_pool_bytes[3];

static bb_status pool_get(int slot, size_t nbytes, float **d) {
    if (g_pool_bytes[slot] < nbytes) {
        BB_CUDA_CALL(cudaFree(g_pool[slot]));
        g_pool[slot] = NULL;
        g_pool_bytes[slot] = 0;
        BB_CALL(bb_cuda_malloc(&g_pool[slot], nbytes, "cuda backend product buffer"));
        g_pool_bytes[slot] = nbytes;
    }
    *d = (float *)g_pool[slot];
    return BB_OK;
}

/* Operand h in pool buffer `slot` (packed, ld = cols), or its held copy when `held` allows (inputs only). */
static bb_status up_pool(int slot, const float *h, int64_t rows, int64_t cols, int64_t ld, int held, float **d) {
    float *k = held && rows * cols > 0 ? held_copy(h, rows, cols, ld) : NULL;
    if (k) {
        *d = k;
        return BB_OK;
    }
    BB_CALL(pool_get(slot, (size_t)(rows * cols) * sizeof(float) + 4, d));
    if (rows * cols > 0)
        BB_CUDA_CALL(cudaMemcpy2D(*d, (size_t)cols * 4, h, (size_t)ld * 4, (size_t)cols * 4, (size_t)rows,
                                  cudaMemcpyHostToDevice));
    return BB_OK;
}

static bb_status h_gemm(bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *cm, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("gemm A", ta == BB_OP_N ? m : k, ta == BB_OP_N ? k : m, lda, ta == BB_OP_N ? k : m));
    BB_CALL(bb_linalg_check_dims("gemm B", tb == BB_OP_N ? k : n, tb == BB_OP_N ? n : k, ldb, tb == BB_OP_N ? n : k));
    BB_CALL(bb_linalg_check_dims("gemm C", m, n, ldc, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL, *db = NULL, *dc = NULL;
    const int64_t ar = ta == BB_OP_N ? m : k, ac = ta == BB_OP_N ? k : m, br = tb == BB_OP_N ? k : n,
                  bc = tb == BB_OP_N ? n : k;
    BB_CALL(up_pool(0, a, ar, ac, lda, 1, &da));
    BB_CALL(up_pool(1, b, br, bc, ldb, 1, &db));
    if (beta != 0) BB_CALL(up_pool(2, cm, m, n, ldc, 0, &dc));
    else BB_CALL(pool_get(2, (size_t)(m * n) * 4 + 4, &dc));
    BB_CALL(bb_cuda_gemm(c, BB_CUDA_FP32, ta, tb, m, n, k, alpha, da, ac > 0 ? ac : 1, db, bc > 0 ? bc : 1, beta, dc,
                         n > 0 ? n : 1));
    return down(dc, m, n, cm, ldc);
}

static bb_status h_syrk(bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, float beta,
                        float *cm, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("syrk A", k, n, lda, n));
    BB_CALL(bb_linalg_check_dims("syrk C", n, n, ldc, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL, *dc = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up_ro(a, k, n, lda, &da, "syrk A"));
    BB_CALL_GOTO(st, done, up(cm, n, n, ldc, &dc, "syrk C"));
    BB_CALL_GOTO(st, done, bb_cuda_syrk(c, uplo, n, k, alpha, da, n > 0 ? n : 1, beta, dc, n > 0 ? n : 1));
    BB_CALL_GOTO(st, done, down(dc, n, n, cm, ldc));
done:
    drop(da);
    cudaFree(dc);
    return st;
}

static bb_status h_potrf(bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot) {
    BB_CALL(bb_linalg_check_dims("potrf", n, n, lda, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up(a, n, n, lda, &da, "potrf A"));
    BB_CALL_GOTO(st, done, bb_cuda_potrf(c, uplo, n, da, n > 0 ? n : 1, bad_pivot));
    {
        /* Only the factored triangle comes back (the other stays untouched, as backend.h promises). */
        float *tmp = NULL;
        BB_CALL_GOTO(st, done, bb_malloc((void **)&tmp, (size_t)(n * n) * sizeof(float) + 4, "potrf copy"));
        st = down(da, n, n, tmp, n);
        for (int64_t i = 0; st == BB_OK && i < n; i++) {
            int64_t j0 = uplo == BB_UPLO_UPPER ? i : 0, j1 = uplo == BB_UPLO_UPPER ? n : i + 1; /* row i's part */
            memcpy(a + i * lda + j0, tmp + i * n + j0, sizeof(float) * (size_t)(j1 - j0));
        }
        free(tmp);
    }
done:
    cudaFree(da);
    return st;
}

static bb_status h_trsm(bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha, const float *t,
                        int64_t ldt, float *b, int64_t ldb) {
    const int64_t tn = side == BB_SIDE_LEFT ? m : n;
    BB_CALL(bb_linalg_check_dims("trsm T", tn, tn, ldt, tn));
    BB_CALL(bb_linalg_check_dims("trsm B", m, n, ldb, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *dt = NULL, *db = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up_ro(t, tn, tn, ldt, &dt, "trsm T"));
    BB_CALL_GOTO(st, done, up(b, m, n, ldb, &db, "trsm B"));
    BB_CALL_GOTO(st, done, bb_cuda_trsm(c, side, uplo, op, m, n, alpha, dt, tn > 0 ? tn : 1, db, n > 0 ? n : 1));
    BB_CALL_GOTO(st, done, down(db, m, n, b, ldb));
done:
    drop(dt);
    cudaFree(db);
    return st;
}

static bb_status h_potri(bb_uplo uplo, int64_t n, float *a, int64_t lda) {
    BB_CALL(bb_linalg_check_dims("potri", n, n, lda, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up(a, n, n, lda, &da, "potri A"));
    BB_CALL_GOTO(st, done, bb_cuda_potri(c, uplo, n, da, n > 0 ? n : 1));
    BB_CALL_GOTO(st, done, down(da, n, n, a, lda));
done:
    cudaFree(da);
    return st;
}

static bb_status h_qr(int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr) {
    BB_CALL(bb_linalg_check_dims("qr", m, n, lda, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL, *dr = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up(a, m, n, lda, &da, "qr A"));
    if (r) BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dr, (size_t)(n * n) * 4 + 4, "qr R"));
    BB_CALL_GOTO(st, done, bb_cuda_qr(c, m, n, da, n > 0 ? n : 1, dr, n > 0 ? n : 1));
    BB_CALL_GOTO(st, done, down(da, m, n, a, lda));
    if (r) BB_CALL_GOTO(st, done, down(dr, n, n, r, ldr));
done:
    cudaFree(da);
    cudaFree(dr);
    return st;
}

static bb_status h_svd(int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu, float *vt,
                       int64_t ldvt) {
    BB_CALL(bb_linalg_check_dims("svd", m, n, lda, n));
    const int64_t mn = m < n ? m : n;
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL, *ds = NULL, *du = NULL, *dv = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up(a, m, n, lda, &da, "svd A"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&ds, (size_t)mn * 4 + 4, "svd s"));
    if (u) {
        BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&du, (size_t)(m * mn) * 4 + 4, "svd U"));
        BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dv, (size_t)(mn * n) * 4 + 4, "svd Vt"));
    }
    BB_CALL_GOTO(st, done, bb_cuda_svd(c, m, n, da, n > 0 ? n : 1, ds, du, mn > 0 ? mn : 1, dv, n > 0 ? n : 1));
    BB_CALL_GOTO(st, done, down(ds, 1, mn, s, mn > 0 ? mn : 1));
    if (u) {
        BB_CALL_GOTO(st, done, down(du, m, mn, u, ldu));
        BB_CALL_GOTO(st, done, down(dv, mn, n, vt, ldvt));
    }
done:
    cudaFree(da);
    cudaFree(ds);
    cudaFree(du);
    cudaFree(dv);
    return st;
}

static bb_status h_syevd(int64_t n, float *a, int64_t lda, float *w) {
    BB_CALL(bb_linalg_check_dims("syevd", n, n, lda, n));
    bb_cuda_ctx *c;
    BB_CALL(host_ctx(&c));
    float *da = NULL, *dw = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, up(a, n, n, lda, &da, "syevd A"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dw, (size_t)n * 4 + 4, "syevd w"));
    BB_CALL_GOTO(st, done, bb_cuda_syevd(c, n, da, n > 0 ? n : 1, dw));
    BB_CALL_GOTO(st, done, down(da, n, n, a, lda));
    BB_CALL_GOTO(st, done, down(dw, 1, n, w, n > 0 ? n : 1));
done:
    cudaFree(da);
    cudaFree(dw);
    return st;
}

extern "C" const bb_linalg_backend bb_linalg_backend_cuda = {
    "cuda", "cuBLAS/cuSOLVER on the GPU (host memory in and out; f32)",
    h_gemm, h_syrk, h_potrf, h_trsm, h_potri, h_qr, h_svd, h_syevd, h_hold, h_release,
};

/* ---- "cuda-auto": each operation where it runs faster ----
 * The host-pointer table moves every operand over PCIe and allocates per call, which costs more than it
 * saves on small matrices. This table sends an operation to the GPU only when its flops reach
 * BB_CUDA_AUTO_FLOPS (1 GFLOP: about 1 ms of a CPU core's sgemm against ~0.2 ms of transfers and
 * launches), else to the "cpu" table. The choice depends on the shapes only, so runs stay reproducible
 * and every rank decides a given operation the same way. */
#define BB_CUDA_AUTO_FLOPS 1e9

static int big(double flops) { return flops >= BB_CUDA_AUTO_FLOPS; }

/* A product one of whose operands is held (resident on the device) goes to the GPU from 1/64 of the bar:
 * what made small products cheaper on the CPU was copying that operand. */
static bb_status a_gemm(bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *cm, int64_t ldc) {
    static int plain = -1;
    if (plain < 0) plain = env_off("BB_CUDA_HOLD_ROUTE");
    const int held = !plain && m * n * k > 0 &&
                     (held_copy(a, ta == BB_OP_N ? m : k, ta == BB_OP_N ? k : m, lda) ||
                      held_copy(b, tb == BB_OP_N ? k : n, tb == BB_OP_N ? n : k, ldb));
    return (big(2.0 * m * n * k * (held ? 64 : 1)) ? h_gemm : bb_linalg_backend_cpu.gemm)(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta,
                                                                        cm, ldc);
}
static bb_status a_syrk(bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, float beta,
                        float *cm, int64_t ldc) {
    return (big((double)n * n * k) ? h_syrk : bb_linalg_backend_cpu.syrk)(uplo, n, k, alpha, a, lda, beta, cm, ldc);
}
static bb_status a_potrf(bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot) {
    return (big((double)n * n * n / 3) ? h_potrf : bb_linalg_backend_cpu.potrf)(uplo, n, a, lda, bad_pivot);
}
static bb_status a_trsm(bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha, const float *t,
                        int64_t ldt, float *b, int64_t ldb) {
    double f = side == BB_SIDE_LEFT ? (double)m * m * n : (double)m * n * n;
    return (big(f) ? h_trsm : bb_linalg_backend_cpu.trsm)(side, uplo, op, m, n, alpha, t, ldt, b, ldb);
}
static bb_status a_potri(bb_uplo uplo, int64_t n, float *a, int64_t lda) {
    return (big(2.0 * n * n * n / 3) ? h_potri : bb_linalg_backend_cpu.potri)(uplo, n, a, lda);
}
static bb_status a_qr(int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr) {
    return (big(2.0 * m * n * n) ? h_qr : bb_linalg_backend_cpu.qr)(m, n, a, lda, r, ldr);
}
static bb_status a_svd(int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu, float *vt,
                       int64_t ldvt) {
    double mn = (double)(m < n ? m : n), mx = (double)(m < n ? n : m);
    return (big(4.0 * mx * mn * mn) ? h_svd : bb_linalg_backend_cpu.svd)(m, n, a, lda, s, u, ldu, vt, ldvt);
}
static bb_status a_syevd(int64_t n, float *a, int64_t lda, float *w) {
    return (big(9.0 * n * n * n) ? h_syevd : bb_linalg_backend_cpu.syevd)(n, a, lda, w);
}

extern "C" const bb_linalg_backend bb_linalg_backend_cuda_auto = {
    "cuda-auto", "each operation on the GPU from 1 GFLOP up, else on the CPU (host memory in and out; f32)",
    a_gemm, a_syrk, a_potrf, a_trsm, a_potri, a_qr, a_svd, a_syevd, h_hold, h_release,
};

extern "C" bb_status bb_cuda_backend_register(void) {
    const bb_linalg_backend *b = NULL;
    bb_error_set_quiet(1);
    bb_status s = bb_linalg_backend_get("cuda", &b);
    bb_error_set_quiet(0);
    bb_clear_error();
    if (s == BB_OK) return BB_OK;
    BB_CHECK(bb_cuda_device_count() > 0, BB_ERR_CUDA,
             "backend cuda: no GPU is visible (check CUDA_VISIBLE_DEVICES and the driver, or use backend cpu)");
    BB_CALL(bb_linalg_backend_register(&bb_linalg_backend_cuda));
    return bb_linalg_backend_register(&bb_linalg_backend_cuda_auto);
}
