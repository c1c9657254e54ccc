/* prune.h — stage 2 pruning kernels: magnitude, Wanda and SparseGPT (unstructured and N:M), the pruner
 * registry chosen by prune.method, and the adaptive decay wave.
 *
 * A layer is W (rows, cols) row-major f32, rows = output features, cols = input
 * features, with the Gram H = X^T X (cols, cols) of its calibration input. The
 * layer's mask (compress/mask.h, 1 = kept) goes in and comes out: weights it
 * already prunes stay pruned (they sort before every kept weight and count
 * toward the quota), and on return every pruned weight of W is exactly 0.
 *
 * How many weights each method prunes (sparsity s, pattern N:M):
 *   magnitude   per tensor: the floor(rows*cols*s) smallest |W_ij| (one threshold
 *               per weight matrix, as the magnitude baseline of the Wanda paper's code);
 *               with per_row: the floor(cols*s) smallest of every output row;
 *   wanda       per output row: the floor(cols*s) smallest |W_ij| * ||X_j|| (Sun et al.
 *               2023: comparison group = one row; their code takes int(), i.e. floor);
 *   sparsegpt   per block of B columns: the floor(rows*B*s) smallest w^2 / U_jj^2 of the
 *               block, chosen when the lazy batch reaches it (adaptive mask selection,
 *               Frantar & Alistarh 2023), U the upper Cholesky factor of H^-1; with
 *               per_row: the floor(B*s) smallest of every row within the block;
 *   N:M         in every group of M consecutive input columns of a row the N highest
 *               scores stay (s and per_row are ignored); SparseGPT picks each group's
 *               mask when the column loop reaches the group's first column.
 * The reference table of DESIGN §7 (stories260K) was made with per-row groups:
 * magnitude per_row, SparseGPT per_row with B = 32 reproduce it to 4 digits
 * (docs/pruning.md); the defaults follow the papers.
 * Ties are broken by position (lower index pruned first), so fast and _ref paths
 * choose identical masks from identical scores. The paper's code prunes with
 * `score <= sorted[k]`, one more weight (plus ties) than k; birdbone prunes exactly k.
 *
 * SparseGPT numerics: inputs with H_jj = 0 (dead channels) get H_jj = 1 and
 * W[:, j] = 0, as the reference code does; then H + lambda * mean(diag H) * I is
 * factored (potrf), inverted (potri) and factored again (upper) for U. When a
 * Cholesky fails the damping is raised x10 and the factorization retried, up to
 * max_retries times (a damp of 0 retries from 1e-6); a success after retries
 * logs one warning naming the tensor and the damping used. H with NaN/Inf, or
 * no success within the retries, is BB_ERR_NUMERIC naming the tensor and
 * suggesting prune.damp.
 *
 * All functions are local (never MPI) and thread their row loops over
 * opts.threads POSIX threads; BLAS threads are OpenBLAS's. Each _ref twin is
 * plain single-threaded C (SparseGPT's in double precision, column by column
 * with the textbook OBS update of every later column) that the fast path is
 * tested against. */
#ifndef BB_COMPRESS_PRUNE_H
#define BB_COMPRESS_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "compress/mask.h"
#include "core/status.h"
#include "linalg/backend.h"

typedef struct {
    int n, m; /* keep n of every m consecutive inputs; m = 0: unstructured */
} bb_prune_pattern;

/* "unstructured", "2:4", "4:8" or any "N:M" with 0 < N < M <= 64 (prune.pattern).
 * Errors: BB_ERR_CONFIG. */
bb_status bb_prune_pattern_parse(const char *s, bb_prune_pattern *p);

typedef struct {
    double sparsity;                  /* pruned fraction in [0, 1) when unstructured (prune.target) */
    bb_prune_pattern pattern;         /* {0, 0} = unstructured */
    double damp;                      /* SparseGPT lambda: damping lambda * mean(diag H) (prune.damp) */
    int block_size;                   /* SparseGPT lazy-batch columns B (prune.block_size); N:M needs M | B */
    int max_retries;                  /* SparseGPT: Cholesky retries with damping x10 each */
    int fixed_mask;                   /* SparseGPT: keep the given mask, only update the kept weights */
    int per_row;                      /* magnitude, SparseGPT: one output row is the comparison group */
    int threads;                      /* row threads; 0 = online CPUs */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
} bb_prune_opts;

/* sparsity 0.5, unstructured, damp 0.01, block_size 128, max_retries 6, per_row 0, threads 0. */
void bb_prune_opts_default(bb_prune_opts *o);

typedef struct {
    const char *name;   /* tensor name, for messages */
    int64_t rows, cols; /* out, in */
    float *w;           /* (rows, cols) row-major, pruned (and, by SparseGPT, updated) in place */
    const float *h;     /* (cols, cols) row-major full symmetric Gram; SparseGPT needs it; Wanda
                           uses sqrt(diag H) when xnorm is NULL; magnitude ignores it */
    const float *xnorm; /* (cols) ||X_j||, or NULL */
    bb_mask *mask;      /* (rows, cols), in: current mask, out: the new mask; required */
} bb_prune_layer;

typedef struct {
    int64_t kept;      /* weights kept after the call */
    double density;    /* kept / (rows * cols) */
    size_t mask_bytes; /* packed mask size */
    double damp_used;  /* SparseGPT: the relative damping that factored H */
    int retries;       /* SparseGPT: failed Cholesky attempts before that */
    int64_t dead;      /* SparseGPT: inputs with H_jj = 0 */
    double seconds;
} bb_prune_stats;

/* One entry per prune.method. apply prunes l in place; st may be NULL. */
typedef struct {
    const char *name;
    const char *description;
    bb_status (*apply)(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
} bb_pruner;

/* The pruner named by prune.method ("wanda", "sparsegpt", "magnitude", "none").
 * Errors: BB_ERR_CONFIG listing the names. */
bb_status bb_pruner_get(const char *name, const bb_pruner **out);
/* Names, comma-separated, into buf (size n). */
void bb_pruner_list(char *buf, size_t n);

/* The methods and their plain-C twins. Errors: BB_ERR_ARG for shapes, options or
 * a missing input (naming the tensor), BB_ERR_NUMERIC for non-finite input or a
 * failed factorization, BB_ERR_OOM. */
bb_status bb_prune_magnitude(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
bb_status bb_prune_magnitude_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
bb_status bb_prune_wanda(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
bb_status bb_prune_wanda_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
bb_status bb_prune_sparsegpt(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);
bb_status bb_prune_sparsegpt_ref(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st);

/* One adaptive decay wave: among the weights `mask` keeps, prune the ones with
 * the lowest `score` (rows, cols) row-major (the usage recomputed for this wave),
 * at most floor(per_wave * kept) of them and never past `target` (pruned
 * fraction). per_row != 0 applies both limits to every row on its own (Wanda's
 * comparison group), else to the tensor. *removed (may be NULL) = how many were
 * pruned now; 0 means the target is reached or per_wave * kept < 1. Zeroing the
 * weights is the caller's (bb_mask_apply), so scores can come from elsewhere.
 * Errors: BB_ERR_ARG for per_wave or target outside [0, 1], BB_ERR_NUMERIC for a
 * non-finite score. */
bb_status bb_prune_wave(const char *name, int64_t rows, int64_t cols, const float *score, double per_wave,
                        double target, int per_row, bb_mask *mask, int64_t *removed);

#endif
