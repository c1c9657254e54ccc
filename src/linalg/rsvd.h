/* rsvd.h — randomized SVD (Halko, Martinsson & Tropp 2011) of a streamed f32 matrix, with accuracy figures.
 *
 * For A (m, n): Omega (n, k+p) Gaussian from the counter-based RNG; Y = A Omega;
 * q power iterations Y = A (A^T Q), re-orthonormalized by QR after each
 * half-step; Q = qr(Y); B = Q^T A; B = U_B S V^T (small SVD); U = Q U_B.
 * A is only read row block by row block (A Omega and A^T Q accumulate over
 * blocks), so a tensor larger than memory can be decomposed: it is read
 * 2q + 2 times, plus once more for the explicit residual.
 *
 * The result is a pure function of (A, options): the same seed gives bitwise the
 * same values on the same backend and thread count. Local, not collective. */
#ifndef BB_LINALG_RSVD_H
#define BB_LINALG_RSVD_H

#include <stdint.h>

#include "core/tensor.h"
#include "linalg/backend.h"

/* Rows [row0, row0 + nrows) of A into out, (nrows, n) row-major. */
typedef bb_status (*bb_rsvd_read_fn)(void *ctx, int64_t row0, int64_t nrows, float *out);

/* Where A comes from: a row reader, or (when data is non-NULL) memory. */
typedef struct {
    const char *name;  /* for messages ("blk.3.attn_q.weight") */
    int64_t m, n;      /* rows, cols */
    const float *data; /* (m, n) row-major, or NULL to use read */
    bb_rsvd_read_fn read;
    void *ctx;
} bb_rsvd_source;

typedef struct {
    int rank;           /* k: singular values wanted, 1 <= k <= min(m, n) */
    int oversample;     /* p: extra sketch columns (clipped so that k + p <= min(m, n)) */
    int power_iters;    /* q */
    uint64_t seed;      /* Omega = N(0, 1) from (seed, stream "rsvd.omega") */
    int want_u;         /* return U (m, k) */
    int want_v;         /* return V (n, k) */
    int residual;       /* one more pass over A for ||A - U S V^T||_F (else residual = -1) */
    int64_t block_rows; /* rows read per block; 0 picks about 16 MiB per block */
    /* bb_rsvd_tensor: a tensor that needs conversion or generation is read once
     * into memory when its f32 copy fits cache_bytes (default 1 GiB), else it is
     * streamed 2q + 3 times. */
    int64_t cache_bytes;
    const bb_linalg_backend *backend; /* NULL = "cpu" */
} bb_rsvd_opts;

/* rank 64, oversample 8, power_iters 2, seed 0, no vectors, residual on, 1 GiB cache, cpu. */
void bb_rsvd_opts_default(bb_rsvd_opts *o);

typedef struct {
    int64_t m, n;
    int k;          /* singular values returned */
    int l;          /* sketch width k + p actually used */
    float *s;       /* (k) descending */
    float *u;       /* (m, k) row-major, or NULL unless want_u */
    float *v;       /* (n, k) row-major, or NULL unless want_v */
    double *energy; /* (k): energy[i] = sum_{j <= i} s_j^2 / ||A||_F^2 */
    double fro;     /* ||A||_F, accumulated exactly in double */
    /* Smallest rank whose energy reaches 50/90/99 %, or -1 when the top k do not
     * ("> k"). A zero matrix has rank 0 for all three and energy 1. */
    int rank50, rank90, rank99;
    double residual; /* ||A - U S V^T||_F / ||A||_F, or -1 when not computed */
    double orth_u;   /* ||U^T U - I||_F */
    double orth_v;   /* ||V^T V - I||_F */
    double flops;    /* floating-point operations spent (for GFLOP/s) */
    double seconds;
} bb_rsvd_result;

/* Decompose. Errors: BB_ERR_ARG when k is outside [1, min(m, n)] or a size is
 * bad; BB_ERR_NUMERIC naming the matrix, row and column of the first NaN/Inf;
 * errors of the reader and backend pass through. On error *res is empty. */
bb_status bb_rsvd_run(const bb_rsvd_source *src, const bb_rsvd_opts *o, bb_rsvd_result *res);

/* A (m, n) row-major in memory. */
bb_status bb_rsvd_matrix(const char *name, int64_t m, int64_t n, const float *a, const bb_rsvd_opts *o,
                         bb_rsvd_result *res);

/* A 2-D tensor (any float dtype, memory or generator), read as f32 row blocks. */
bb_status bb_rsvd_tensor(const bb_tensor *t, const bb_rsvd_opts *o, bb_rsvd_result *res);

/* Free the arrays and zero *res (NULL-safe, idempotent). */
void bb_rsvd_result_clear(bb_rsvd_result *res);

/* Smallest rank whose energy reaches `frac`, or -1 when energy[k-1] < frac.
 * energy (k) as in bb_rsvd_result. */
int bb_rsvd_rank_at(const double *energy, int k, double frac);

#endif
