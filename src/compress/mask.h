/* mask.h — bit-packed pruning masks: one bit per weight, 1 = kept, rows padded to 64-bit words.
 *
 * Layout: row i of a (rows, cols) weight matrix occupies words_per_row =
 * ceil(cols / 64) consecutive uint64_t words; weight (i, j) is bit (j % 64) of
 * word i * words_per_row + j / 64 (least significant bit first). Padding bits
 * past `cols` are always 0, so popcounts and comparisons need no masking, and
 * a row starts on a word boundary so row operations never straddle rows. The
 * words are the checkpoint form (little-endian uint64 in HDF5): nbytes =
 * rows * words_per_row * 8, i.e. 1/32 of the f32 weights plus < 8 bytes per row.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_MASK_H
#define BB_COMPRESS_MASK_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int64_t rows, cols;
    int64_t words_per_row; /* ceil(cols / 64) */
    uint64_t *bits;        /* (rows, words_per_row) row-major; 1 = kept */
} bb_mask;

/* A (rows, cols) mask with every weight kept (keep_all != 0) or every weight
 * pruned. Errors: BB_ERR_ARG for negative sizes, BB_ERR_OOM. */
bb_status bb_mask_create(int64_t rows, int64_t cols, int keep_all, bb_mask **out);
/* NULL-safe; nulls *m. */
void bb_mask_destroy(bb_mask **m);
/* A deep copy. */
bb_status bb_mask_clone(const bb_mask *src, bb_mask **out);
/* dst = src; both must have the same shape (BB_ERR_ARG otherwise). */
bb_status bb_mask_copy(bb_mask *dst, const bb_mask *src);

static inline int bb_mask_get(const bb_mask *m, int64_t i, int64_t j) {
    return (int)((m->bits[i * m->words_per_row + (j >> 6)] >> (j & 63)) & 1u);
}
static inline void bb_mask_set(bb_mask *m, int64_t i, int64_t j, int keep) {
    uint64_t *w = &m->bits[i * m->words_per_row + (j >> 6)];
    uint64_t b = (uint64_t)1 << (j & 63);
    *w = keep ? (*w | b) : (*w & ~b);
}

/* Kept weights in row i / in the whole mask. */
int64_t bb_mask_count_row(const bb_mask *m, int64_t i);
int64_t bb_mask_count(const bb_mask *m);
/* Kept fraction, count / (rows * cols); 1 for an empty matrix. */
double bb_mask_density(const bb_mask *m);
/* Bytes of the packed words (rows * words_per_row * 8). */
size_t bb_mask_nbytes(const bb_mask *m);

/* Pack one byte per weight (non-zero = kept) into m. keep (rows, cols) row-major,
 * with m's shape. */
void bb_mask_pack(bb_mask *m, const uint8_t *keep);
/* Unpack m into one byte per weight (1 = kept, 0 = pruned), keep (rows, cols) row-major. */
void bb_mask_unpack(const bb_mask *m, uint8_t *keep);
/* The mask of the non-zero entries of w (rows, cols) row-major, into m (same shape). */
void bb_mask_from_nonzero(bb_mask *m, const float *w);

/* Zero the pruned weights of row i: row (cols). */
void bb_mask_apply_row(const bb_mask *m, int64_t i, float *row);
/* Zero the pruned weights of w (rows, cols) row-major. */
void bb_mask_apply(const bb_mask *m, float *w);

#endif
