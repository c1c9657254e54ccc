/* hash.h — deterministic SHA-256 weight hashes: per tensor and whole model.
 *
 * Tensor hash = SHA-256 of, in order:
 *   "birdbone-tensor-v1" NUL, the tensor name NUL, the dtype name NUL ("f32"),
 *   ndim as uint32 little-endian, each dimension as int64 little-endian
 *   (row-major, fastest last), then the values as stored (little-endian).
 * Memory tensors hash their bytes as stored (f16 stays f16). Generator-backed
 * (synthetic) tensors hash the f32 values they produce, dtype "f32". With
 * as_f32, every tensor hashes its values converted to f32 with dtype "f32":
 * an f16 model and its f32 working copy then hash alike. A checkpoint's
 * weights are f32, so for an f32 model the dense checkpoint's tensor hashes
 * equal the model's.
 *
 * Whole hash = SHA-256 of, for each tensor in order, its name NUL and its
 * 32-byte digest. Order is the model's (bb_model_for_each_tensor: embedding,
 * per layer, final norm, output unless tied). The name, shape and dtype are
 * inside each digest, so renaming or reshaping changes the hash.
 *
 * Local: nothing here calls MPI. */
#ifndef BB_IO_HASH_H
#define BB_IO_HASH_H

#include <stdint.h>

#include "io/model.h"

typedef struct {
    char name[BB_TENSOR_NAME_MAX + 16];
    char dtype[8];
    int ndim;
    int64_t shape[BB_MAX_DIMS];
    uint8_t digest[32];
} bb_tensor_hash;

/* The hash of one tensor handle (reads it in row blocks). Errors: read errors
 * of the tensor, BB_ERR_OOM. */
bb_status bb_tensor_hash_compute(const bb_tensor *t, int as_f32, bb_tensor_hash *out);

/* The hash of values held in memory: a (rows, cols) f32 matrix (cols = 0 for
 * a 1-D tensor of `rows` values), or a u64 array (bit-packed masks) with
 * dtype "u64". */
void bb_hash_f32(const char *name, int64_t rows, int64_t cols, const float *w, bb_tensor_hash *out);
void bb_hash_u64(const char *name, int64_t rows, int64_t cols, const uint64_t *w, bb_tensor_hash *out);

/* Per-tensor hashes of every tensor of m (*per, n entries; caller frees) and
 * the whole-model digest. per may be NULL when only the whole hash is wanted. */
bb_status bb_model_hash(const bb_model *m, int as_f32, bb_tensor_hash **per, int *n, uint8_t whole[32]);
/* The per-tensor list of bb_model_hash with only the tensors keep() accepts hashed (read); the others'
 * entries are all zero bytes (*per, n entries in model order; caller frees). Ranks that split the tensors
 * between them can merge their lists exactly (each entry non-zero on one rank) and bb_hash_combine it. */
bb_status bb_model_hash_some(const bb_model *m, int as_f32, int (*keep)(const char *name, void *ud), void *ud,
                             bb_tensor_hash **per, int *n);

/* Every tensor of a GGUF file as stored, quantized blocks included (dtype =
 * the ggml type name, "q4_0"), in file order: for exported files that are not
 * a float model. *quantized = how many tensors are quantized. */
bb_status bb_hash_gguf(const char *path, bb_tensor_hash **per, int *n, int *quantized, uint8_t whole[32]);

/* The whole digest of a list of tensor hashes. */
void bb_hash_combine(const bb_tensor_hash *t, int n, uint8_t whole[32]);

/* Hex of a digest: 64 chars + NUL. */
void bb_hash_hex(const uint8_t digest[32], char hex[65]);

#endif
