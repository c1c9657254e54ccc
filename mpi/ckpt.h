/* ckpt.h — wave checkpoints: a bb_state (pipeline/state.h) in one HDF5 file
 * with a DONE marker, found, pruned and restored for `--resume`.
 *
 * Layout (format "birdbone-ckpt", version 1): docs/checkpoints.md lists every
 * attribute and dataset. In short: root attributes (magic, version, wave,
 * counters, RNG counter, config and model hashes), /config_yaml (the YAML
 * text), /bits, /metrics/<column>, and per linear weight a group
 * /layer_LLL/<kind> with weight (rows, cols) f32, mask (rows, words) u64 as in
 * compress/mask.h, lora_a / lora_b when factors exist, and the SHA-256 of the
 * weight and mask, which the reader verifies.
 *
 * Crash safety: bb_ckpt_write removes a stale "<path>.DONE", writes
 * "<path>.tmp", fsyncs it, renames it to path, fsyncs the directory, then
 * writes "<path>.DONE" (text: format, version, wave, file size; written
 * atomically). A checkpoint counts as complete only with its marker and the
 * size the marker records, so a crash at any point leaves either no
 * complete checkpoint of that wave or a whole one.
 *
 * Collectivity: bb_ckpt_write_dist / bb_ckpt_read_dist share one file among
 * the ranks of a communicator (parallel HDF5, MPI-IO driver): every rank
 * creates the same groups, attributes and datasets, each writes (reads) only
 * the datasets of the linear weights it holds, rank 0 the run-level datasets;
 * rank 0 alone renames the file and writes the marker after every rank has
 * closed it. The file does not depend on the rank count, so a checkpoint
 * written by N ranks resumes on any M. bb_ckpt_write / bb_ckpt_read are the
 * same for one process (MPI_COMM_SELF); nothing else here is collective. */
#ifndef BB_MPI_CKPT_H
#define BB_MPI_CKPT_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/state.h"

#define BB_CKPT_MAGIC "birdbone-ckpt"
#define BB_CKPT_VERSION 1

typedef struct {
    char *config_yaml;       /* the resolved YAML text; after bb_ckpt_read owned (bb_ckpt_meta_free) */
    char config_sha256[65];  /* hex SHA-256 of config_yaml */
    char model_sha256[65];   /* hex whole-model hash of the input (io/hash.h, as stored) */
    char model_path[1024];   /* what the run opened (informative: models move) */
    int version;             /* read: the file's format version */
    /* run-level records: borrowed when writing, owned after bb_ckpt_read (NULL / 0 when absent) */
    double *layer_target;    /* (n_layer_target) per-layer target sparsities (OWL ratios) */
    int n_layer_target;
    float *tensor_hist;      /* (hist_waves, n_lin, 3) density, bits, factor rank after each wave */
    int hist_waves;
    uint8_t *records;        /* the run's report records (healing curves, stress boosts), opaque bytes */
    int64_t n_records;
} bb_ckpt_meta;

void bb_ckpt_meta_free(bb_ckpt_meta *m); /* frees config_yaml and the records; NULL-safe */

/* The crash-safe protocol every checkpoint file uses: body(f, ud) writes the
 * content of a new HDF5 file "<path>.tmp", which is fsynced and renamed to
 * path, then "<path>.DONE" (magic, version, `what`, the file's size) is
 * written atomically. Errors: the body's, BB_ERR_IO; on error neither path
 * nor its marker claims completeness. */
typedef bb_status (*bb_ckpt_body_fn)(hid_t f, void *ud);
bb_status bb_ckpt_write_file(const char *path, bb_ckpt_body_fn body, void *ud, const char *what);

/* Write state s (every linear weight: s->w, s->t, masks, factors, bits,
 * counters, metrics) and meta to path, crash-safe as above. s->masks[i] must
 * exist with s->t[i]'s shape. Errors: BB_ERR_ARG (inconsistent state),
 * BB_ERR_HDF5 / BB_ERR_IO naming the file and object; on error neither path
 * nor its marker claims completeness. */
bb_status bb_ckpt_write(const char *path, const bb_state *s, const bb_ckpt_meta *meta);

/* The ranks that share a checkpoint file and who holds which linear weight. */
typedef struct {
    MPI_Comm comm;    /* every rank of the job; MPI_COMM_NULL: this process alone */
    const int *owner; /* (n_lin) the rank of comm holding linear weight i; NULL: rank 0 holds all */
} bb_ckpt_group;

/* What one rank moved: its share of a collective write (or read). */
typedef struct {
    int tensors;          /* linear weights written (read) by this rank */
    int64_t tensor_bytes; /* their weight, mask and factor bytes */
    int64_t other_bytes;  /* run-level datasets (rank 0: config, bits, metrics, records) */
} bb_ckpt_io;

/* bb_ckpt_write shared by g's ranks. Each rank passes the same s->n_lin,
 * s->t (every entry) and, for the weights it holds, s->w, s->masks, s->lora,
 * s->bits; rank 0 also the counters, metrics and meta (other ranks' are not
 * used; meta may be NULL there). Collective over g->comm; every rank returns
 * the same status, the failing rank having printed the error. io (optional):
 * this rank's share. */
bb_status bb_ckpt_write_dist(const char *path, const bb_state *s, const bb_ckpt_meta *meta, const bb_ckpt_group *g,
                             bb_ckpt_io *io);
/* bb_ckpt_read shared by g's ranks (any count, not necessarily the writer's):
 * each rank reads and verifies only the weights it holds (s->w[i] must exist
 * for those); the others get no mask or factors (NULL) and their bits from
 * /bits; counters, metrics and meta on every rank. Collective; the same
 * refusals as bb_ckpt_read, on every rank. */
bb_status bb_ckpt_read_dist(const char *path, bb_state *s, bb_ckpt_meta *meta, const bb_ckpt_group *g,
                            bb_ckpt_io *io);

/* 1 if path has a DONE marker matching the file (format, size), else 0. */
int bb_ckpt_is_complete(const char *path);

/* Restore a checkpoint into s: s->n_layers, s->n_lin, s->t and s->w (arrays
 * of t's shapes) must be set; the weights are overwritten, the owned parts
 * (masks, factors, bits, metrics) replaced, counters set. meta may be NULL.
 * Refuses, with one message naming the file and what is wrong: no DONE
 * marker or a size other than the marker's (incomplete or truncated:
 * BB_ERR_FORMAT), not HDF5 or damaged (BB_ERR_HDF5), wrong magic or version
 * (BB_ERR_FORMAT), another layer count, tensor name or shape than s
 * (BB_ERR_ARG: a checkpoint of another model), a weight or mask whose
 * SHA-256 differs from the recorded one (BB_ERR_FORMAT: corrupt). On error
 * s's owned parts are left as they were. */
bb_status bb_ckpt_read(const char *path, bb_state *s, bb_ckpt_meta *meta);

/* A checkpoint loaded without a model: owns its tensor descriptions (name,
 * shape; no storage) and weights. */
typedef struct {
    bb_state state;
    bb_ckpt_meta meta;
    bb_tensor *tensors; /* (n_lin) */
    float **w;          /* (n_lin) owned weight arrays */
    const bb_tensor **tp;
} bb_ckpt;

bb_status bb_ckpt_load(const char *path, bb_ckpt **out);
void bb_ckpt_destroy(bb_ckpt **c); /* NULL-safe; nulls *c */

/* The metrics table (n rows) as group `group` of loc: one dataset per column
 * (wave, ppl, dppl, kld, top1, sparsity, bits, lora_values, rolled_back,
 * seconds (n, 8)); shared with the DeltaHistory files. The reader checks every
 * column has n rows. */
bb_status bb_ckpt_write_metrics(hid_t loc, const char *group, const bb_wave_metrics *rows, int n);
/* The same in a file shared by several ranks: every rank creates the group and
 * its datasets (collective), only the rank with fill != 0 writes the values. */
bb_status bb_ckpt_write_metrics_part(hid_t loc, const char *group, const bb_wave_metrics *rows, int n, int fill);
bb_status bb_ckpt_read_metrics(hid_t loc, const char *group, int n, bb_wave_metrics *out);

/* RUN_DIR/checkpoints/wave_KKKK.h5 into buf. */
bb_status bb_ckpt_path(const char *run_dir, int wave, char *buf, size_t n);
/* The highest wave with a complete checkpoint in RUN_DIR/checkpoints:
 * *wave = -1 (and path "") when there is none (not an error). */
bb_status bb_ckpt_find_last(const char *run_dir, int *wave, char *path, size_t n);
/* checkpoint.keep = last: delete every checkpoint of RUN_DIR other than
 * wave `keep_wave` (markers first, then files, and stale .tmp files).
 * Errors: BB_ERR_IO naming the file that could not be removed. */
bb_status bb_ckpt_prune(const char *run_dir, int keep_wave);

#endif
