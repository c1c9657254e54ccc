/* dtype.h — dense element types and exact conversions (round-to-nearest-even).
 *
 * The enum reaches files (checkpoints): append only, keep _COUNT last. */
#ifndef BB_DTYPE_H
#define BB_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    BB_F32 = 0,
    BB_F16,
    BB_BF16,
    BB_F64,
    BB_I8,
    BB_I16,
    BB_I32,
    BB_I64,
    BB_U8,
    BB_DTYPE_COUNT
} bb_dtype;

typedef struct {
    const char *name; /* "f32", "f16", ... */
    size_t size;      /* bytes per element */
    int is_float;
} bb_dtype_traits;

const bb_dtype_traits *bb_dtype_info(bb_dtype t); /* NULL if t is out of range */
const char *bb_dtype_name(bb_dtype t);            /* "?" if out of range */
size_t bb_dtype_size(bb_dtype t);                 /* 0 if out of range */

/* Exact conversions. f32 -> f16/bf16 round to nearest, ties to even; overflow
 * gives +-Inf, NaN stays NaN (quiet), subnormals are handled exactly. */
float bb_f16_to_f32(uint16_t h);
uint16_t bb_f32_to_f16(float f);
float bb_bf16_to_f32(uint16_t b);
uint16_t bb_f32_to_bf16(float f);

/* Convert n elements of a float type (F32/F16/BF16/F64) to f32. src may be
 * unaligned (mmap'd files). Returns 0, or -1 for a non-float dtype. */
int bb_convert_to_f32(bb_dtype t, const void *src, size_t n, float *dst);
/* Convert n f32 values to F32/F16/BF16/F64. Returns 0, or -1 for other types. */
int bb_convert_from_f32(bb_dtype t, const float *src, size_t n, void *dst);

#endif
