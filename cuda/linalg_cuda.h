/* linalg_cuda.h — the device-side dense linear algebra of the CUDA backend (cuBLAS, cuSOLVER, small kernels).
 *
 * Every matrix is f32 row-major with an explicit leading dimension, as in linalg/backend.h, but the
 * pointers here are DEVICE pointers. All work is queued on the legacy default stream; functions that
 * must read a result back (a factorization's info) synchronize. bb_linalg_backend_cuda (host pointers,
 * one upload and download per call) is the same operations behind the backend.h table, for code that
 * works on host memory; nothing above linalg/ and cuda/ calls the device functions directly.
 *
 * Precision of the matrix products (bb_cuda_math):
 *   FP32  plain f32 (cuBLAS SGEMM path, no tensor cores);
 *   TF32  f32 in and out, products on the tensor cores with 10-bit mantissas (about 3e-4 relative);
 *   BF16  inputs rounded to bf16 by a conversion kernel, f32 accumulation (about 3e-3 relative).
 * Factorizations (potrf, trtri, geqrf, syevd) are always f32 (syevd of the rSVD's small Gram: f64). */
#ifndef BB_CUDA_LINALG_CUDA_H
#define BB_CUDA_LINALG_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "linalg/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BB_CUDA_FP32 = 0, BB_CUDA_TF32, BB_CUDA_BF16 } bb_cuda_math;
const char *bb_cuda_math_name(bb_cuda_math m); /* "fp32", "tf32", "bf16" */

/* cuBLAS and cuSOLVER handles plus grow-only device scratch. One per thread. */
typedef struct bb_cuda_ctx bb_cuda_ctx;
/* Creates the handles on the current device (bind it first with bb_cuda_bind).
 * Errors: BB_ERR_CUDA when no GPU is usable, BB_ERR_OOM. */
bb_status bb_cuda_ctx_create(bb_cuda_ctx **out);
void bb_cuda_ctx_destroy(bb_cuda_ctx **c); /* NULL-safe; nulls *c */
/* Device scratch of at least nbytes, slot 0..3 (each slot grows independently; contents are not kept
 * across calls of the functions below, which use slots 0 and 1). */
bb_status bb_cuda_scratch(bb_cuda_ctx *c, int slot, size_t nbytes, void **p);
/* The context's cuBLAS handle (a cublasHandle_t), for callers with their own batched products. */
void *bb_cuda_ctx_cublas(bb_cuda_ctx *c);

/* C = alpha op(A) op(B) + beta C, op(A) (m, k), op(B) (k, n), C (m, n). */
bb_status bb_cuda_gemm(bb_cuda_ctx *c, bb_cuda_math math, bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                       int64_t ldc);

/* Gram accumulation C = beta C + X^T X, X (k, n) row-major (k tokens of n features), C (n, n) full
 * (both triangles written). Only the upper triangle's column panels are multiplied (about 57 % of the
 * full product for n = 28672), then mirrored. */
bb_status bb_cuda_gram(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x, int64_t ldx,
                       float beta, float *cm, int64_t ldc);

/* The same without the mirroring: only the upper triangle (row-major, diagonal included) is accumulated,
 * the strict lower one is left as it was; bb_cuda_mirror_upper copies it over once, after the last chunk. */
bb_status bb_cuda_gram_upper(bb_cuda_ctx *c, bb_cuda_math math, int64_t n, int64_t k, const float *x, int64_t ldx,
                             float beta, float *cm, int64_t ldc);
bb_status bb_cuda_mirror_upper(float *cm, int64_t n, int64_t ldc);

/* The backend.h operations on device pointers (same conventions and errors). */
bb_status bb_cuda_syrk(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                       float beta, float *cm, int64_t ldc);
bb_status bb_cuda_potrf(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot);
bb_status bb_cuda_trsm(bb_cuda_ctx *c, bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha,
                       const float *t, int64_t ldt, float *b, int64_t ldb);
bb_status bb_cuda_potri(bb_cuda_ctx *c, bb_uplo uplo, int64_t n, float *a, int64_t lda);
bb_status bb_cuda_qr(bb_cuda_ctx *c, int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr);
/* s is a DEVICE array too. */
bb_status bb_cuda_svd(bb_cuda_ctx *c, int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu,
                      float *vt, int64_t ldvt);
bb_status bb_cuda_syevd(bb_cuda_ctx *c, int64_t n, float *a, int64_t lda, float *w);
/* dst (cols, rows) = src^T for src (rows, cols). */
bb_status bb_cuda_transpose(bb_cuda_ctx *c, int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                            int64_t ldd);

/* GPTQ/SparseGPT's inverse factor: U (n, n) row-major upper with U^T U = (Hd)^-1, where Hd is H with
 * dead inputs (H_jj = 0) set to 1 on the diagonal plus damp * mean(diag) I. Computed as
 * U = J inv(chol(J Hd J)) J (J the reversal): one Cholesky and one triangular inverse, half the work of
 * potrf + potri + potrf and the same matrix in exact arithmetic. When the Cholesky fails the damping is
 * raised x10 (from 1e-4 when 0) up to damp_max. U's strict lower triangle is zero. h and u are device
 * (n, n), distinct. *damp_used gets the damping that worked. Errors: BB_ERR_NUMERIC naming `name` when
 * even damp_max fails. */
bb_status bb_cuda_inverse_factor(bb_cuda_ctx *c, const char *name, const float *h, int64_t n, double damp,
                                 double damp_max, float *u, double *damp_used);

/* The same factorization without the triangular inverse: v (n, n) row-major upper = U^-1 = J chol(J Hd J) J
 * (one Cholesky, a third of potrf + potri + potrf). GPTQ and SparseGPT run their lazy batches on it with
 * the bb_cuda_obs_* steps below. */
bb_status bb_cuda_factor_inverse_of_u(bb_cuda_ctx *c, const char *name, const float *h, int64_t n, double damp,
                                      double damp_max, float *v, double *damp_used);

/* Lazy batches of 128 columns on V = U^-1 instead of U. With Y = E U (E the scaled errors of every column),
 * Y V = E gives, batch by batch, the update GPTQ needs from the earlier batches without forming U:
 *   W_b += T_b U_bb                  (bb_cuda_obs_before; T accumulates the earlier batches' Y V),
 *   the column loop on U_bb          (the batch kernel: U_bb = inverse of V's diagonal block),
 *   Y_b = (E_b - T_b) U_bb,  T[:, later] += Y_b V[b, later]   (bb_cuda_obs_after; the one big gemm).
 * In exact arithmetic this is W_b -= sum_{b' < b} E_b' U[b', b], the update of the explicit path.
 * ubb (n / 128, 128, 128) from bb_cuda_obs_prepare; t (rows, n) starts at zero; e (rows, 128) the batch's
 * errors (overwritten); y (rows, 128) scratch. n must be a multiple of 128. */
bb_status bb_cuda_obs_prepare(const float *v, int64_t n, float *ubb);
bb_status bb_cuda_obs_before(bb_cuda_ctx *c, int64_t rows, int64_t n, int64_t b, float *w, const float *t,
                             const float *ubb);
bb_status bb_cuda_obs_after(bb_cuda_ctx *c, bb_cuda_math math, int64_t rows, int64_t n, int64_t b, float *e, float *t,
                            const float *ubb, const float *v, float *y);

/* Randomized SVD (Halko et al.) of A (m, n) on the device: Omega (n, k+p) N(0,1) from a counter hash of
 * seed; Y = A Omega; q power iterations re-orthonormalized by QR; B = Q^T A; the small SVD from the
 * eigendecomposition (f64) of B B^T. s (k) host; u (m, k) and v (n, k) device row-major, each may be
 * NULL. Products in `math`. Errors: BB_ERR_ARG for k outside [1, min(m, n)]. */
bb_status bb_cuda_rsvd(bb_cuda_ctx *c, bb_cuda_math math, int64_t m, int64_t n, const float *a, int64_t lda, int k,
                       int p, int q, uint64_t seed, float *s, float *u, float *v);

/* x (n) = scale * N(0, 1), a counter hash of (seed, index): test and benchmark data on the device. */
bb_status bb_cuda_fill_normal(float *x, int64_t n, uint64_t seed, float scale);

/* The "cuda" backend table (host pointers), and its registration (idempotent; BB_ERR_CUDA without a GPU). */
extern const bb_linalg_backend bb_linalg_backend_cuda;
bb_status bb_cuda_backend_register(void);

#ifdef __cplusplus
}
#endif
#endif
