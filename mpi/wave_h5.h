/* wave_h5.h — one adaptive decay wave saved to HDF5: bit-packed masks, usage maps, OWL ratios and the wave's metrics.
 *
 * Layout (version 1):
 *   /                      attributes: magic "birdbone.wave", version 1, wave (1-based),
 *                          method, pattern, usage_block (strings), per_wave, target,
 *                          sparsity (pruned fraction of all linear weights), ppl,
 *                          dppl (relative to the dense PPL), kld_mean (NaN without
 *                          KLD), u_max (the maximum block usage of the wave),
 *                          kept, total (int64), n_layers, config_hash
 *   /owl_ratios            (n_layers) f64, the per-layer target sparsities; only with prune.owl
 *   /layer_003/attn_q/     one group per layer and linear kind; attributes name
 *                          (the tensor), rows, cols (the weight's shape),
 *                          words_per_row, kept (int64)
 *       mask   (rows, words_per_row) uint64 little-endian: compress/mask.h's words, 1 = kept
 *       u      (n_blocks) f64: mean Wanda score |W_ij| ||X_j|| of each usage block
 *       s      (n_blocks) f64: u / u_max
 * The usage maps are the ones the wave was decided on (weights and statistics
 * before it pruned); the masks are the state after it.
 *
 * The file is written to "<path>.tmp.<pid>", synced and renamed over path, so a
 * reader sees a whole file or none. Not collective: one rank writes alone
 * through the MPI-IO driver on MPI_COMM_SELF (mpi/h5.h). */
#ifndef BB_MPI_WAVE_H5_H
#define BB_MPI_WAVE_H5_H

#include <stdint.h>

#include "compress/mask.h"
#include "io/model.h"
#include "mpi/ckpt.h"

#define BB_WAVE_H5_VERSION 1

typedef struct {
    int wave;
    const char *method, *pattern, *usage_block, *config_hash;
    double per_wave, target, sparsity, ppl, dppl, kld_mean, u_max;
    int64_t kept, total;
    int n_layers;
    const double *owl_ratios; /* (n_layers) or NULL */
    /* per linear weight, index layer * BB_LIN_COUNT + kind: */
    const bb_tensor *const *tensors; /* name and shape */
    bb_mask *const *masks;
    const double *const *u, *const *s;
    const int64_t *n_blocks;
    const int64_t *tensor_kept; /* (n_lin) every mask's kept count, or NULL: counted from masks (one process) */
} bb_wave_h5;

/* Write w to path. Errors: BB_ERR_HDF5 / BB_ERR_IO naming the file and the
 * object; no partial file is left at path. */
bb_status bb_wave_h5_write(const char *path, const bb_wave_h5 *w);
/* The same written by the ranks of group->comm together (NULL: this process
 * alone): each rank fills the mask and usage datasets of the weights it holds
 * (group->owner), rank 0 the root's; the attributes (tensor_kept required with
 * several ranks) must be the same on every rank. Rank 0 renames the file after
 * every rank closed it. Collective; the same status on every rank. */
bb_status bb_wave_h5_write_dist(const char *path, const bb_wave_h5 *w, const bb_ckpt_group *group);

/* Read the mask of linear `kind` of `layer` from a wave file into a new mask
 * (*out). Errors: BB_ERR_HDF5 (unreadable), BB_ERR_FORMAT (bad magic or
 * version, missing group, a shape that contradicts rows/cols), BB_ERR_OOM. */
bb_status bb_wave_h5_read_mask(const char *path, int layer, bb_linear_kind kind, bb_mask **out);

/* Read the relative block usage s (u / u_max) of every linear weight of a wave
 * file, concatenated in layer then kind order, into a new array (*s, caller
 * frees; NULL when *n is 0), and the file's wave number (*wave). Errors: as
 * bb_wave_h5_read_mask. */
bb_status bb_wave_h5_read_usage(const char *path, int *wave, double **s, int64_t *n);

#endif
