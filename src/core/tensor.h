/* tensor.h — tensor handles: name, dtype, shape, and where the values live.
 *
 * Shapes are row-major with the fastest dimension last: a linear layer's weight
 * is (out_features, in_features) = (rows, cols), as in PyTorch and safetensors.
 * (GGUF lists dimensions fastest-first; its reader reverses them.)
 *
 * A handle does not own its values. They live either in memory (a view into an
 * mmap'd model file or a buffer someone else owns) or come from a generator
 * (synthetic models, produced row block by row block, never whole). Consumers
 * read rows as f32 through bb_tensor_read_f32, whatever the storage. */
#ifndef BB_TENSOR_H
#define BB_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/status.h"

#define BB_MAX_DIMS 4
#define BB_TENSOR_NAME_MAX 96

struct bb_tensor;
/* Produce rows [row0, row0+nrows) of t as f32 into out, (nrows, cols) row-major. */
typedef bb_status (*bb_tensor_gen_fn)(const struct bb_tensor *t, int64_t row0, int64_t nrows, float *out);

typedef struct bb_tensor {
    char name[BB_TENSOR_NAME_MAX]; /* canonical (GGUF-style) name, e.g. "blk.0.attn_q.weight" */
    bb_dtype dtype;
    int ndim;                    /* 0 means "absent" (optional tensors such as biases) */
    int64_t shape[BB_MAX_DIMS]; /* row-major, fastest last */
    const void *data;           /* memory storage, or NULL */
    size_t nbytes;              /* bytes at data */
    bb_tensor_gen_fn gen;       /* generator storage, or NULL */
    const void *gen_ctx;        /* generator state (owned by the model) */
    uint64_t gen_id;            /* which tensor, for the generator */
    int64_t file_offset;        /* offset of data in its source file (-1 if none), for messages */
} bb_tensor;

static inline int bb_tensor_present(const bb_tensor *t) { return t->ndim > 0; }
int64_t bb_tensor_numel(const bb_tensor *t);
int64_t bb_tensor_cols(const bb_tensor *t); /* last dimension */
int64_t bb_tensor_rows(const bb_tensor *t); /* product of the others (1 for 1-D) */

/* Fill a handle describing memory storage; checks that nbytes matches the shape. */
bb_status bb_tensor_init_memory(bb_tensor *t, const char *name, bb_dtype dtype, int ndim, const int64_t *shape,
                                const void *data, size_t nbytes);

/* Read rows [row0, row0+nrows) as f32 into out, (nrows, cols) row-major.
 * Errors: BB_ERR_ARG for an out-of-range row block, BB_ERR_UNSUPPORTED for a
 * non-float dtype, BB_ERR_INTERNAL for a handle with no storage. */
bb_status bb_tensor_read_f32(const bb_tensor *t, int64_t row0, int64_t nrows, float *out);

/* "(4096, 11008)" style shape text. */
void bb_tensor_shape_str(const bb_tensor *t, char *buf, size_t n);

#endif
