/* scalapack.h — ScaLAPACK process groups for matrices too large for one rank.
 *
 * A bb_pgrid is a BLACS process grid over the first nprow * npcol ranks of a
 * communicator (as square as possible); the other ranks of the communicator
 * are idle and must not call the routines below (every function returns at
 * once for them, so callers may call collectively and ignore the idle case).
 * Matrices live on one "owner" rank (rank 0 of the communicator) as row-major
 * arrays, are spread block-cyclically (block nb) over the grid in double
 * precision, worked on with PBLAS/ScaLAPACK, and gathered back to the owner.
 *
 * Functions are collective over the grid's ranks. Errors reach every grid
 * rank (agreed by an allreduce over the grid). ScaLAPACK has no C header:
 * the Fortran symbols are declared in scalapack.c. */
#ifndef BB_MPI_SCALAPACK_H
#define BB_MPI_SCALAPACK_H

#include <mpi.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    MPI_Comm comm;      /* the communicator the grid was made from (not owned) */
    int rank, size;     /* in comm */
    int nprow, npcol;   /* grid shape; nprow * npcol <= size */
    int myrow, mycol;   /* this rank's place, -1 when idle */
    int in_grid;        /* 1 when this rank is part of the grid */
    int nb;             /* block size of the block-cyclic layout */
    int ctxt;           /* BLACS context of the grid (-1 when idle) */
    int ctxt_owner;     /* BLACS context of the 1 x 1 grid of rank 0 (-1 elsewhere) */
    int sys;            /* BLACS system handle of comm */
} bb_pgrid;

/* A grid over at most max_procs ranks of comm (0 = all), block size nb (0 =
 * 64). Collective over comm. Errors: BB_ERR_ARG (nb < 0), BB_ERR_MPI. */
bb_status bb_pgrid_create(MPI_Comm comm, int max_procs, int nb, bb_pgrid *g);
void bb_pgrid_destroy(bb_pgrid *g); /* collective over comm */

/* The upper Cholesky factor U of a^-1 (a^-1 = U^T U), as
 * bb_linalg_inverse_cholesky_upper computes it: a (n, n) row-major symmetric
 * positive definite on the owner, overwritten there with U (upper triangle;
 * the lower triangle is zeroed). pdpotrf, pdpotri, pdpotrf in double. A matrix
 * that is not positive definite gives BB_ERR_NUMERIC without printing (the
 * caller raises its damping and retries), on every grid rank. */
bb_status bb_pchol_inverse_upper(const bb_pgrid *g, int64_t n, float *a);

/* As above with the damping loop GPTQ and SparseGPT use: diag(a) += lambda *
 * mean(diag a), lambda = damp, then x10 per failure up to damp_max; a zero
 * diagonal entry (a dead input) is set to 1 first. *used = the lambda that
 * worked. Errors: BB_ERR_NUMERIC naming `name` and the largest damping tried. */
bb_status bb_pchol_inverse_upper_damped(const bb_pgrid *g, const char *name, int64_t n, float *a, double damp,
                                        double damp_max, double *used);

/* Randomized SVD of a (m, n) row-major on the owner, rank k with oversampling
 * p and q power iterations, the sketch Omega drawn exactly as bb_rsvd_run
 * draws it (same seed, same values), so the result matches the single-rank
 * one up to rounding. On the owner: s (k) descending; u (m, k) and v (n, k)
 * row-major when not NULL. Errors: BB_ERR_ARG (k out of range), BB_ERR_OOM,
 * BB_ERR_NUMERIC. */
bb_status bb_prsvd(const bb_pgrid *g, int64_t m, int64_t n, const float *a, int k, int p, int q, uint64_t seed,
                   float *s, float *u, float *v);

/* All singular values of a (m, n) on the owner by pdgesvd (no vectors), into
 * s (min(m, n)) on the owner: the reference the randomized SVD is checked against. */
bb_status bb_pgesvd_values(const bb_pgrid *g, int64_t m, int64_t n, const float *a, double *s);

/* The dispatcher the pipeline uses for a Gram on rank 0 of comm: the local
 * LAPACK path (bb_linalg_inverse_cholesky_upper with the same damping loop)
 * when n * n * 8 bytes fit max_matrix_bytes, else a ScaLAPACK group over all
 * ranks of comm. Collective over comm; the result (upper triangle, lower
 * zeroed) is on rank 0. */
bb_status bb_inverse_cholesky_dist(MPI_Comm comm, int64_t max_matrix_bytes, const char *name, int64_t n, float *a,
                                   double damp, double damp_max, double *used);

#endif
