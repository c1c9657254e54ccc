/* safetensors.h — validated reader of .safetensors files (tensor views, no copies).
 *
 * Format: an 8-byte little-endian header length N, N bytes of JSON, then the
 * data section. The JSON object maps each tensor name to
 *   {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}
 * with offsets relative to the data section (byte 8 + N), plus an optional
 * "__metadata__" object of string values.
 *
 * Everything is checked before a view is handed out: N fits the file and is at
 * most BB_SAFETENSORS_MAX_HEADER; the header is valid JSON of the layout above
 * (other per-tensor keys are ignored); dtypes are known (BOOL is read as U8; F8 and
 * unsigned types above 8 bits are BB_ERR_UNSUPPORTED); shape entries are
 * non-negative integers, at most BB_MAX_DIMS of them; shape x dtype size equals
 * end - begin without overflow; begin <= end <= data size; no two tensors
 * overlap. Errors (BB_ERR_FORMAT unless stated) name the file, the tensor and
 * expected vs found. Nothing here is collective. */
#ifndef BB_IO_SAFETENSORS_H
#define BB_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "core/tensor.h"
#include "io/json.h"

#define BB_SAFETENSORS_MAX_HEADER ((uint64_t)100000000)

typedef struct {
    const char *name; /* the name in the file (NUL-terminated), valid while the table lives */
    /* View into the file's bytes: t.name is `name` cut to BB_TENSOR_NAME_MAX - 1
     * characters, t.file_offset the absolute offset of the data, t.data points
     * into the input buffer. A scalar (shape []) has t.ndim 0 and one element
     * of t.nbytes; a shape with a 0 dimension has t.nbytes 0. */
    bb_tensor t;
} bb_st_entry;

typedef struct bb_safetensors bb_safetensors;

/* Parse and validate a safetensors image of `size` bytes at `data`; `what`
 * names it in messages (the file path). The table points into data, which the
 * caller keeps alive (and unchanged) while the table and its views are used. */
bb_status bb_safetensors_parse(const uint8_t *data, size_t size, const char *what, bb_safetensors **out);

/* Map path read-only and parse it; the table owns the mapping. Errors:
 * BB_ERR_IO if the file cannot be mapped, else as bb_safetensors_parse. */
bb_status bb_safetensors_open(const char *path, bb_safetensors **out);

/* NULL-safe; unmaps a file opened with bb_safetensors_open, nulls *st. */
void bb_safetensors_destroy(bb_safetensors **st);

/* Tensors in header order (the "__metadata__" entry is not one of them). */
size_t bb_safetensors_count(const bb_safetensors *st);
const bb_st_entry *bb_safetensors_entry(const bb_safetensors *st, size_t i); /* NULL if out of range */
/* The tensor named `name`, NULL if absent. O(1) on average. */
const bb_st_entry *bb_safetensors_find(const bb_safetensors *st, const char *name);
/* The "__metadata__" object (string values only), NULL if the file has none. */
const bb_json *bb_safetensors_metadata(const bb_safetensors *st);

#endif
