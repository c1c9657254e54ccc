/* scan.h — stage 0, the spectral scan: top-R singular values and explained-energy curves of every weight matrix.
 *
 * For each selected matrix W (the 7 linear kinds of every block; with `all`
 * also token_embd and output), a randomized SVD (linalg/rsvd.h) gives
 * sigma_1..sigma_R and the energy curve E(k) = sum_{i<=k} sigma_i^2 / ||W||_F^2,
 * the ranks where E reaches 50/90/99 %, the energy the top R capture and the
 * residual ||W - U S V^T||_F / ||W||_F. Matrices are streamed in row blocks,
 * never copied whole unless they are f32 in memory.
 *
 * Local: runs on the calling rank only and never calls MPI. Each matrix is
 * timed as event "scan.rsvd" (core/events.h) with its flop count. */
#ifndef BB_COMPRESS_SCAN_H
#define BB_COMPRESS_SCAN_H

#include <stdint.h>
#include <stdio.h>

#include "io/model.h"
#include "linalg/rsvd.h"

typedef struct {
    int rank;        /* R; clipped per matrix to min(rows, cols) */
    int oversample;  /* p */
    int power_iters; /* q */
    uint64_t seed;
    int all;                          /* also token_embd and output (output only when not tied) */
    const char *filter;               /* PCRE2 pattern searched in tensor names (a pattern that does
                                         not compile is used as a plain substring); NULL or "" = all */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
    int progress;                     /* progress line on stdout (core/log.h) */
    int layer_begin, layer_end;       /* only blocks [begin, end) (a rank's share); end 0 = every block */
} bb_scan_opts;

/* rank 64, oversample 8, power_iters 2, seed 0 (scan.* defaults of the config). */
void bb_scan_opts_default(bb_scan_opts *o);

typedef struct {
    char name[BB_TENSOR_NAME_MAX]; /* "blk.3.attn_q.weight" */
    char kind[24];                 /* "attn_q", ..., "ffn_down", "token_embd", "output" */
    int layer;                     /* block index, -1 for token_embd and output */
    int64_t rows, cols;
    bb_rsvd_result svd; /* s, energy, fro, rank50/90/99, residual, orth_u/v, flops, seconds (no vectors) */
} bb_scan_entry;

typedef struct {
    char model[1024];
    int rank, oversample, power_iters;
    uint64_t seed;
    int n;            /* entries */
    bb_scan_entry *e; /* [n], in model order */
    double seconds, flops;
} bb_scan_result;

/* Scan the selected matrices of m. Errors: BB_ERR_ARG for options out of range
 * or a filter that selects nothing (the message shows the naming scheme);
 * read and numeric errors name the tensor. */
bb_status bb_scan_model(const bb_model *m, const bb_scan_opts *o, bb_scan_result **out);

/* NULL-safe; nulls *r. */
void bb_scan_result_destroy(bb_scan_result **r);

/* The entries of r as one byte blob (malloc'd into *buf, *bytes long; singular vectors are not kept), and
 * back: bb_scan_unpack appends the blob's entries to r (in blob order), so the blobs of ranks that scanned
 * consecutive blocks, unpacked in rank order, give the one-process result. Errors: BB_ERR_OOM, BB_ERR_ARG
 * for a truncated or inconsistent blob. */
bb_status bb_scan_pack(const bb_scan_result *r, void **buf, size_t *bytes);
bb_status bb_scan_unpack(bb_scan_result *r, const void *buf, size_t bytes);

/* One line per matrix: tensor, shape, ||W||_F, sigma_1, sigma_R, ranks at
 * 50/90/99 % energy ("> R" when the top R do not reach it), energy of the
 * top R, residual. */
void bb_scan_print_table(const bb_scan_result *r, FILE *f);

/* Into dir (created if missing), each file written atomically:
 *   scan.json    settings and, per matrix, shape, norms, ranks, residuals and
 *                the full sigma and energy arrays;
 *   scan.csv     long format, one row per (tensor, i): sigma_i, sigma_i/sigma_1, E(i);
 *   spectra.svg  sigma_i / sigma_1 on a log axis;
 *   energy.svg   E(k) with 50/90/99 % guides.
 * The plots draw one line per tensor when at most 12 are scanned, else one
 * per kind (the mean over layers). */
bb_status bb_scan_write(const bb_scan_result *r, const char *dir);

#endif
