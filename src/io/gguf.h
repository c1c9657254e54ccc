/* gguf.h — GGUF v2/v3 reader, writer, ggml type traits, and the GGUF -> model mapping.
 *
 * File layout (little-endian throughout; this build requires a little-endian host):
 *   "GGUF" | u32 version (2 or 3) | u64 tensor_count | u64 kv_count
 *   kv_count x { string key | u32 value_type | value }
 *   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] (fastest first) | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (offsets relative to here, each aligned)
 * A string is u64 length + bytes (no NUL). An array is u32 element type + u64 count + elements.
 *
 * The reader validates everything before anyone sees it: every length against the bytes left,
 * tensor shapes, types, alignment, bounds and overlaps. It never aborts on bad input. Parsed
 * strings and tensor bytes are views into the file data, valid while the bb_gguf lives (and,
 * for bb_gguf_open_memory, while the caller's buffer lives). */
#ifndef BB_IO_GGUF_H
#define BB_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/model.h"

#define BB_GGUF_DEFAULT_ALIGNMENT 32
#define BB_GGUF_NAME_MAX 64    /* tensor names are shorter than this (ggml's GGML_MAX_NAME) */
#define BB_GGUF_MAX_DIMS 4
#define BB_GGUF_MAX_ARRAY_DEPTH 8 /* arrays of arrays nest at most this deep */

/* Metadata value types; the ids are the file's. */
typedef enum {
    BB_GGUF_UINT8 = 0,
    BB_GGUF_INT8 = 1,
    BB_GGUF_UINT16 = 2,
    BB_GGUF_INT16 = 3,
    BB_GGUF_UINT32 = 4,
    BB_GGUF_INT32 = 5,
    BB_GGUF_FLOAT32 = 6,
    BB_GGUF_BOOL = 7,
    BB_GGUF_STRING = 8,
    BB_GGUF_ARRAY = 9,
    BB_GGUF_UINT64 = 10,
    BB_GGUF_INT64 = 11,
    BB_GGUF_FLOAT64 = 12,
    BB_GGUF_TYPE_COUNT
} bb_gguf_type;

const char *bb_gguf_type_name(bb_gguf_type t); /* "uint32", ..., "?" if unknown */

/* ggml tensor types; the ids are the file's (gaps are retired types). */
typedef enum {
    BB_GGML_F32 = 0,
    BB_GGML_F16 = 1,
    BB_GGML_Q4_0 = 2,
    BB_GGML_Q4_1 = 3,
    BB_GGML_Q5_0 = 6,
    BB_GGML_Q5_1 = 7,
    BB_GGML_Q8_0 = 8,
    BB_GGML_Q8_1 = 9,
    BB_GGML_Q2_K = 10,
    BB_GGML_Q3_K = 11,
    BB_GGML_Q4_K = 12,
    BB_GGML_Q5_K = 13,
    BB_GGML_Q6_K = 14,
    BB_GGML_Q8_K = 15,
    BB_GGML_IQ2_XXS = 16,
    BB_GGML_IQ2_XS = 17,
    BB_GGML_IQ3_XXS = 18,
    BB_GGML_IQ1_S = 19,
    BB_GGML_IQ4_NL = 20,
    BB_GGML_IQ3_S = 21,
    BB_GGML_IQ2_S = 22,
    BB_GGML_IQ4_XS = 23,
    BB_GGML_I8 = 24,
    BB_GGML_I16 = 25,
    BB_GGML_I32 = 26,
    BB_GGML_I64 = 27,
    BB_GGML_F64 = 28,
    BB_GGML_IQ1_M = 29,
    BB_GGML_BF16 = 30,
    BB_GGML_TQ1_0 = 34,
    BB_GGML_TQ2_0 = 35,
    BB_GGML_MXFP4 = 39,
    BB_GGML_NVFP4 = 40,
    BB_GGML_Q1_0 = 41,
    BB_GGML_TYPE_COUNT
} bb_ggml_type;

/* A row of blck_size elements is stored as type_size bytes; a row length must be a
 * multiple of blck_size. */
typedef struct {
    const char *name; /* "f32", "q8_0", ... */
    int blck_size;    /* elements per block */
    int type_size;    /* bytes per block */
    int is_quantized;
} bb_ggml_type_traits;

/* NULL for an id that is out of range or retired. */
const bb_ggml_type_traits *bb_ggml_type_info(int type);
const char *bb_ggml_type_name(int type); /* "?" if unknown */
/* Bytes for n elements of type (n a multiple of the block size). Returns BB_ERR_ARG
 * naming `what` if the type is unknown, n is not a multiple, or the size overflows. */
bb_status bb_ggml_row_size(int type, int64_t n, const char *what, size_t *out);

/* A string view: len bytes at s, not NUL-terminated (GGUF strings may hold any byte). */
typedef struct {
    const char *s;
    size_t len;
} bb_gguf_str;

typedef struct {
    char name[BB_GGUF_NAME_MAX];
    int type;                        /* bb_ggml_type */
    int ndim;                        /* 1..4 */
    int64_t shape[BB_GGUF_MAX_DIMS]; /* row-major, fastest LAST (the file's order reversed) */
    uint64_t offset;                 /* from the start of the data section */
    const void *data;                /* the tensor's bytes (unaligned for the caller's purposes) */
    size_t nbytes;
} bb_gguf_tensor;

typedef struct bb_gguf bb_gguf;

/* Map path and parse it. Errors: BB_ERR_IO (cannot open/map), BB_ERR_FORMAT (corrupt,
 * truncated or inconsistent, naming the file, the key or tensor, expected vs found),
 * BB_ERR_UNSUPPORTED (version 1), BB_ERR_OOM. The bb_gguf owns the mapping. */
bb_status bb_gguf_open(const char *path, bb_gguf **out);
/* Parse size bytes at data (not copied: data must outlive the bb_gguf). `what` names the
 * source in messages. Same errors as bb_gguf_open, never reads outside [data, data+size). */
bb_status bb_gguf_open_memory(const void *data, size_t size, const char *what, bb_gguf **out);
void bb_gguf_destroy(bb_gguf **g); /* NULL-safe, nulls *g */

const char *bb_gguf_what(const bb_gguf *g); /* path or description given at open */
uint32_t bb_gguf_version(const bb_gguf *g);
uint32_t bb_gguf_alignment(const bb_gguf *g);
uint64_t bb_gguf_data_offset(const bb_gguf *g); /* file offset of the data section */

/* ---- metadata ---- */
int64_t bb_gguf_n_kv(const bb_gguf *g);
/* Index of key, or -1 if the key is absent. */
int64_t bb_gguf_find_key(const bb_gguf *g, const char *key);
const char *bb_gguf_key_name(const bb_gguf *g, int64_t id); /* NUL-terminated; NULL if id is out of range */
bb_gguf_type bb_gguf_kv_type(const bb_gguf *g, int64_t id); /* BB_GGUF_TYPE_COUNT if out of range */
/* For an array: its element type and length (BB_GGUF_TYPE_COUNT and 0 otherwise). */
bb_gguf_type bb_gguf_arr_type(const bb_gguf *g, int64_t id);
uint64_t bb_gguf_arr_len(const bb_gguf *g, int64_t id);

/* Typed getters: exactly the named type. Errors: BB_ERR_FORMAT if the key is absent
 * ("<file>: key llama.block_count is missing") or of another type
 * ("<file>: general.alignment: expected uint32, found string"). */
bb_status bb_gguf_get_u8(const bb_gguf *g, const char *key, uint8_t *out);
bb_status bb_gguf_get_i8(const bb_gguf *g, const char *key, int8_t *out);
bb_status bb_gguf_get_u16(const bb_gguf *g, const char *key, uint16_t *out);
bb_status bb_gguf_get_i16(const bb_gguf *g, const char *key, int16_t *out);
bb_status bb_gguf_get_u32(const bb_gguf *g, const char *key, uint32_t *out);
bb_status bb_gguf_get_i32(const bb_gguf *g, const char *key, int32_t *out);
bb_status bb_gguf_get_u64(const bb_gguf *g, const char *key, uint64_t *out);
bb_status bb_gguf_get_i64(const bb_gguf *g, const char *key, int64_t *out);
bb_status bb_gguf_get_f32(const bb_gguf *g, const char *key, float *out);
bb_status bb_gguf_get_f64(const bb_gguf *g, const char *key, double *out);
bb_status bb_gguf_get_bool(const bb_gguf *g, const char *key, int *out);
bb_status bb_gguf_get_str(const bb_gguf *g, const char *key, bb_gguf_str *out);
/* Lenient getters for model hyperparameters that converters store with varying widths:
 * any integer type (value must fit int64), any float type. Same errors. */
bb_status bb_gguf_get_int(const bb_gguf *g, const char *key, int64_t *out);
bb_status bb_gguf_get_float(const bb_gguf *g, const char *key, double *out);

/* Arrays. bb_gguf_get_arr checks that key is an array of elem (BB_GGUF_TYPE_COUNT: any
 * element type) and gives its length. Element access errors: BB_ERR_FORMAT for an absent key
 * or a type mismatch, BB_ERR_ARG for an index range beyond the length. */
bb_status bb_gguf_get_arr(const bb_gguf *g, const char *key, bb_gguf_type elem, uint64_t *n);
bb_status bb_gguf_get_arr_str(const bb_gguf *g, const char *key, uint64_t i, bb_gguf_str *out);
/* Elements [start, start+n) of a float32 or float64 array, as float. */
bb_status bb_gguf_get_arr_f32(const bb_gguf *g, const char *key, uint64_t start, uint64_t n, float *out);
/* Elements [start, start+n) of an integer or bool array, as int64 (uint64 values above
 * INT64_MAX are BB_ERR_FORMAT). */
bb_status bb_gguf_get_arr_int(const bb_gguf *g, const char *key, uint64_t start, uint64_t n, int64_t *out);

/* The raw bytes of key id as stored (u32 type + value), for verbatim copies.
 * Errors: BB_ERR_ARG for an id out of range. */
bb_status bb_gguf_kv_raw(const bb_gguf *g, int64_t id, const char **key, const void **raw, size_t *n);

/* ---- tensors ---- */
int64_t bb_gguf_n_tensors(const bb_gguf *g);
/* Index of the tensor, or -1 if absent. */
int64_t bb_gguf_find_tensor(const bb_gguf *g, const char *name);
/* NULL if id is out of range. */
const bb_gguf_tensor *bb_gguf_tensor_at(const bb_gguf *g, int64_t id);

/* ---- writer ---- */
typedef struct bb_gguf_writer bb_gguf_writer;

bb_status bb_gguf_writer_create(bb_gguf_writer **out);
void bb_gguf_writer_destroy(bb_gguf_writer **w); /* NULL-safe, nulls *w */

/* Metadata, written in the order added. Values are copied. A repeated key is BB_ERR_ARG.
 * general.alignment (uint32, a nonzero power of two) also sets the data alignment. */
bb_status bb_gguf_writer_add_u8(bb_gguf_writer *w, const char *key, uint8_t v);
bb_status bb_gguf_writer_add_i8(bb_gguf_writer *w, const char *key, int8_t v);
bb_status bb_gguf_writer_add_u16(bb_gguf_writer *w, const char *key, uint16_t v);
bb_status bb_gguf_writer_add_i16(bb_gguf_writer *w, const char *key, int16_t v);
bb_status bb_gguf_writer_add_u32(bb_gguf_writer *w, const char *key, uint32_t v);
bb_status bb_gguf_writer_add_i32(bb_gguf_writer *w, const char *key, int32_t v);
bb_status bb_gguf_writer_add_u64(bb_gguf_writer *w, const char *key, uint64_t v);
bb_status bb_gguf_writer_add_i64(bb_gguf_writer *w, const char *key, int64_t v);
bb_status bb_gguf_writer_add_f32(bb_gguf_writer *w, const char *key, float v);
bb_status bb_gguf_writer_add_f64(bb_gguf_writer *w, const char *key, double v);
bb_status bb_gguf_writer_add_bool(bb_gguf_writer *w, const char *key, int v);
bb_status bb_gguf_writer_add_str(bb_gguf_writer *w, const char *key, const char *s, size_t len);
/* n elements of a numeric or bool type elem (bool elements are one byte, 0 or 1), laid
 * out as in memory on this little-endian host. */
bb_status bb_gguf_writer_add_arr(bb_gguf_writer *w, const char *key, bb_gguf_type elem, const void *data,
                                 uint64_t n);
/* n strings; lens NULL means each is NUL-terminated. */
bb_status bb_gguf_writer_add_arr_str(bb_gguf_writer *w, const char *key, const char *const *strs,
                                     const size_t *lens, uint64_t n);
/* Copy key id of a parsed file (any type, nested arrays included) verbatim. */
bb_status bb_gguf_writer_copy_kv(bb_gguf_writer *w, const bb_gguf *src, int64_t id);

/* A tensor: shape row-major, fastest last; nbytes must equal the size the ggml type and
 * shape imply and the last dimension must be a multiple of the type's block size. The bytes
 * are NOT copied: data must stay valid until bb_gguf_writer_write returns. */
bb_status bb_gguf_writer_add_tensor(bb_gguf_writer *w, const char *name, int type, int ndim, const int64_t *shape,
                                    const void *data, size_t nbytes);

/* Write a v3 file to "<path>.tmp.<pid>", fsync, rename to path. Tensor bytes stream from the
 * caller's pointers. Errors: BB_ERR_IO naming the file and the system reason. */
bb_status bb_gguf_writer_write(const bb_gguf_writer *w, const char *path);

/* ---- model mapping (gguf_model.c) ---- */
/* bb_gguf_model_open (io/model.h) maps the file into m->files[0] (n_files = 1); the parsed
 * bb_gguf lives in m->priv and its views point into that mapping. This entry point parses a
 * caller's buffer instead (n_files = 0: tensors point into data, which must outlive *out).
 * Architectures "llama" (interleaved rope) and "qwen2" (rotate-half rope, q/k/v biases).
 * Rope scaling: <arch>.rope.scaling.type "none"/"linear" (+ .factor), the older
 * .rope.scale_linear, and Llama 3.x's rope_freqs.weight, recognised as Llama-3 scaling with
 * Meta's low/high frequency factors 1 and 4 and original context 8192. An absent output.weight
 * means tied embeddings (m->output is a copy of the tok_embd handle). The vocabulary
 * (tokenizer.ggml.*) stays in the bb_gguf: see bb_gguf_of_model. Does not call
 * bb_model_validate (bb_model_open does). Errors: BB_ERR_FORMAT for missing or mistyped keys
 * and tensors, BB_ERR_UNSUPPORTED for another architecture, quantized tensors, partial rotary
 * or other rope scaling. */
bb_status bb_gguf_model_open_memory(const void *data, size_t size, const char *what, bb_model **out);
/* The parsed GGUF behind a model, or NULL unless m came from GGUF. */
const bb_gguf *bb_gguf_of_model(const bb_model *m);

#endif
