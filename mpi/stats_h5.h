/* stats_h5.h — calibration statistics (model/calib.h) saved to and loaded from HDF5.
 *
 * Layout (version 1):
 *   /                       attributes: magic "birdbone.calib", version 1,
 *                           n_layers, dim, hidden_dim, attn_width (n_heads*head_dim),
 *                           layer_begin, layer_end (the collected range [begin, end)),
 *                           precision "f32"|"f64", eps (usage.eps), model_path,
 *                           hash (the tokens hash or a config hash the caller gives),
 *                           birdbone_version
 *   /layer_003/attn_in/     one group per collected layer and input
 *                           (attn_in, attn_out_in, ffn_in, ffn_down_in);
 *                           attributes n_tokens, n_rows_nonfinite, n_nonfinite,
 *                           in_features (int64), precision (string)
 *       gram      (in, in) f32 or f64 little-endian, full symmetric, row-major
 *       norm      (in) f64   ||X_j||_2
 *       mean_abs  (in) f64
 *       freq      (in) f64   fraction of rows with |x_j| > eps
 *
 * The file is written to "<path>.tmp.<pid>", flushed to disk and renamed over
 * path when complete, so a reader sees the old file or the whole new one.
 *
 * Neither function is collective: one rank writes a file alone, through the
 * MPI-IO driver on MPI_COMM_SELF (mpi/h5.h; HDF5's default driver when MPI
 * is not initialized). With layer sharding each rank can save its own range
 * to its own file. */
#ifndef BB_MPI_STATS_H5_H
#define BB_MPI_STATS_H5_H

#include "model/calib.h"

#define BB_STATS_H5_VERSION 1
#define BB_STATS_H5_HASH_MAX 128

typedef struct {
    char model_path[1024];
    char hash[BB_STATS_H5_HASH_MAX];
    int layer_begin, layer_end;
    bb_calib_precision precision;
    double eps;
    int version;
} bb_stats_h5_info;

/* Save every collected input of c (finishing the statistics first) with the
 * hash string (may be NULL or ""; at most BB_STATS_H5_HASH_MAX - 1 chars).
 * Errors: BB_ERR_ARG (hash too long), BB_ERR_HDF5 / BB_ERR_IO naming the file
 * and object; no partial file is left at path. */
bb_status bb_stats_h5_write(const char *path, bb_calib *c, const char *hash);

/* Load a file written by bb_stats_h5_write for model m into a new, read-only
 * collector (*out) covering the file's layer range, and fill *info if non-NULL.
 * Everything is checked: magic and version, every group, dataset and attribute
 * present with the right type and shape, and the model dimensions (dim,
 * hidden_dim, attention width, layer count) equal to m's. The model path is
 * recorded but not compared (models move). Errors (one message naming the file
 * and the object): BB_ERR_HDF5 (not HDF5, truncated, unreadable object),
 * BB_ERR_FORMAT (missing or misshapen object, bad magic or version, bad
 * attribute), BB_ERR_ARG (statistics of a model with other dimensions),
 * BB_ERR_OOM. */
bb_status bb_stats_h5_read(const char *path, const bb_model *m, bb_calib **out, bb_stats_h5_info *info);

#endif
