/* lora.h — low-rank factors attached to a linear weight.
 *
 * A weight W (rows, cols) with factors A (rows, rank) and B (rank, cols), both
 * row-major f32, computes W + A·B. Healing trains them (compress/heal.h), the
 * bit budget pays for them (rank * (rows + cols) values), and export either
 * merges them into W or writes them as a GGUF LoRA adapter.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_COMPRESS_LORA_H
#define BB_COMPRESS_LORA_H

#include <stdint.h>

#include "core/status.h"

typedef struct {
    int64_t rows, cols;
    int rank;
    float *a; /* (rows, rank) */
    float *b; /* (rank, cols) */
} bb_lora;

/* Zero factors of the given shape. Errors: BB_ERR_ARG (a size < 1), BB_ERR_OOM. */
bb_status bb_lora_create(int64_t rows, int64_t cols, int rank, bb_lora **out);
void bb_lora_destroy(bb_lora **l); /* NULL-safe; nulls *l */
bb_status bb_lora_clone(const bb_lora *src, bb_lora **out);
/* Values stored: rank * (rows + cols). */
int64_t bb_lora_numel(const bb_lora *l);
/* w (rows, cols) += A·B. The plain loop is bb_lora_merge_ref. */
void bb_lora_merge(const bb_lora *l, float *w);
void bb_lora_merge_ref(const bb_lora *l, float *w);

#endif
