/* history.h — DeltaHistory: the invertible change between two states of a
 * run (wave k-1 -> k), applied forward or backward, saved per wave.
 *
 * Per linear weight a delta holds: a bitmap of the weights whose f32 bits
 * changed with their old and new values (so any change — pruning, regrowth,
 * an OBS update, healing — is undone exactly, -0.0 and NaN included); the
 * mask change as old XOR new (pruned = old & xor, regrown = new & xor); the
 * bit-width before and after; the low-rank factors before and after when
 * they changed; the Frobenius norm of the change and the SHA-256 of the
 * weights before and after (io/hash.h). Per state: the stop-loss counters,
 * the RNG counter and the metrics table before and after.
 *
 * On disk, per wave k: RUN_DIR/diffs/KKKK/delta.h5 (layout in
 * docs/checkpoints.md) and RUN_DIR/diffs/KKKK/diff.json (the summary).
 * Both are written to a temporary name and renamed.
 *
 * bb_history_record_dist is collective over the ranks that share the run's
 * weights (each writes its own tensors' datasets of one delta.h5); the rest
 * is local. */
#ifndef BB_PIPELINE_HISTORY_H
#define BB_PIPELINE_HISTORY_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/state.h"

#define BB_DELTA_MAGIC "birdbone-delta"
#define BB_DELTA_VERSION 1

typedef struct {
    char name[BB_TENSOR_NAME_MAX];
    int64_t rows, cols;
    int64_t n_changed;       /* weights whose f32 bit pattern changed */
    uint64_t *changed;       /* (ceil(rows*cols / 64)) bit k (LSB first) = weight k row-major changed; NULL if none */
    float *w_old, *w_new;    /* (n_changed) in increasing k */
    int64_t pruned, regrown; /* mask bits 1 -> 0 and 0 -> 1 */
    uint64_t *mask_xor;      /* (rows, ceil(cols / 64)) old ^ new; NULL when the mask did not change */
    int bits_old, bits_new;
    int lora_changed;                /* factors differ; then lora_old / lora_new hold both (NULL = none) */
    bb_lora *lora_old, *lora_new;
    int rank_old, rank_new;          /* their ranks (0: none), also where the factors are not held */
    double frob;                     /* ||W_new - W_old||_F (weights alone) */
    double frob_effective;           /* ||(W_new + A'B') - (W_old + AB)||_F (factors merged) */
    double norm_old;                 /* ||W_old||_F */
    uint8_t hash_old[32], hash_new[32]; /* the weights (bb_hash_f32) */
} bb_tensor_delta;

typedef struct {
    int wave_old, wave_new;
    int n_layers, n_lin;
    bb_tensor_delta *t; /* (n_lin) */
    int losing[2], rollback_left[2], frozen[2]; /* [0] before, [1] after */
    uint64_t rng_counter[2];
    int n_metrics[2];
    bb_wave_metrics *metrics[2]; /* the whole tables before and after */
} bb_delta;

/* The delta from state a to state b (same model: names and shapes equal).
 * Errors: BB_ERR_ARG (states of different models), BB_ERR_OOM. */
bb_status bb_delta_record(const bb_state *a, const bb_state *b, bb_delta **out);
void bb_delta_destroy(bb_delta **d); /* NULL-safe; nulls *d */

/* Apply d to s forward (dir = +1: s must be d's "before" state and becomes
 * its "after") or backward (dir = -1). The weights' SHA-256 is checked
 * before (s untouched on a mismatch: BB_ERR_ARG "is not the state of wave
 * k") and after (BB_ERR_FORMAT: the delta is damaged). A tensor whose
 * s->w[i] is NULL (another rank holds it) is skipped: its mask, bits and
 * factors stay as they are; the counters and metrics move as usual. */
bb_status bb_delta_apply(const bb_delta *d, bb_state *s, int dir);

/* delta.h5 and diff.json of d. */
bb_status bb_delta_write(const char *path, const bb_delta *d);
bb_status bb_delta_read(const char *path, bb_delta **out);
bb_status bb_delta_write_json(const char *path, const bb_delta *d);
/* The JSON summary as a malloc'd string (*out, caller frees). */
bb_status bb_delta_json(const bb_delta *d, char **out);

/* RUN_DIR/diffs/KKKK into buf. */
bb_status bb_history_dir(const char *run_dir, int wave, char *buf, size_t n);
/* Record the change a -> b as RUN_DIR/diffs/<b->wave>/{delta.h5,diff.json}. */
bb_status bb_history_record(const char *run_dir, const bb_state *a, const bb_state *b);
/* The same written by the ranks of comm together (MPI_COMM_NULL: this process
 * alone), rank owner[i] holding linear weight i (owner NULL: rank 0 holds all):
 * each rank records and writes only its own tensors (a->w[i], b->w[i] and the
 * masks and factors of those), the per-tensor scalars go to every rank for the
 * attributes (one allgather), rank 0 renames the file and writes diff.json.
 * The files are the same as bb_history_record's. Collective; every rank
 * returns the same status (the failing rank printed the error). */
bb_status bb_history_record_dist(const char *run_dir, const bb_state *a, const bb_state *b, MPI_Comm comm,
                                 const int *owner);
/* Move s to wave `to` by applying the deltas of RUN_DIR/diffs backward
 * (to < s->wave) or forward (to > s->wave). Errors: BB_ERR_IO naming a
 * missing delta file, the apply errors. */
bb_status bb_history_goto(const char *run_dir, bb_state *s, int to);

#endif
