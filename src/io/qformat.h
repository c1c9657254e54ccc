/* qformat.h — GGUF tensor block formats: reference encoders and bit-exact decoders.
 *
 * Types: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (32-element blocks) and Q2_K..Q6_K
 * (256-element super-blocks). The type ids are ggml's (bb_ggml_type in io/gguf.h). A row of n
 * elements is n / blck consecutive blocks; blocks are little-endian and may sit at any address.
 *
 * Decoders compute exactly what ggml's dequantize_row_* computes (same float operations in the
 * same order, each rounded to f32, no fused multiply-add), so a decoded row here equals what
 * llama.cpp sees bit for bit. Encoders are scalar round-to-nearest quantizers with a per-block
 * scale search that minimises the (importance-weighted) squared error; they are deterministic and
 * thread-safe (no state). docs/formats-quant.md describes the layouts and the algorithms.
 *
 * Out-of-range input: encoders saturate every fp16 field to the largest finite fp16 (and F16/BF16
 * elements to the largest finite value), so finite input always decodes to finite output. Non-finite
 * input (NaN, Inf) is rejected by bb_qformat_encode_row with BB_ERR_NUMERIC; the unchecked per-type
 * functions below assume finite input. */
#ifndef BB_IO_QFORMAT_H
#define BB_IO_QFORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "io/gguf.h"

#define BB_QK 32    /* elements per block of the 32-element types */
#define BB_QK_K 256 /* elements per super-block of the K types */

/* ---- block layouts (ggml-common.h); fp16 fields hold IEEE half bits ---- */

typedef struct {
    uint16_t d;            /* scale: x = d * (q - 8) */
    uint8_t qs[BB_QK / 2]; /* element j in the low nibble of qs[j], element j+16 in its high nibble */
} bb_block_q4_0;

typedef struct {
    uint16_t d, m; /* x = d * q + m */
    uint8_t qs[BB_QK / 2];
} bb_block_q4_1;

typedef struct {
    uint16_t d;            /* x = d * (q - 16) */
    uint8_t qh[4];         /* bit j (little-endian u32) is bit 4 of element j */
    uint8_t qs[BB_QK / 2]; /* low 4 bits, nibbles as in Q4_0 */
} bb_block_q5_0;

typedef struct {
    uint16_t d, m; /* x = d * q + m */
    uint8_t qh[4];
    uint8_t qs[BB_QK / 2];
} bb_block_q5_1;

typedef struct {
    uint16_t d; /* x = d * q */
    int8_t qs[BB_QK];
} bb_block_q8_0;

/* K types: a super-block of 256 elements split into sub-blocks (16 or 32 elements) whose scales
 * (and mins) are themselves quantized against the fp16 super-block scales d (and dmin). */
typedef struct {
    uint8_t scales[BB_QK_K / 16]; /* sub-block s of 16: low nibble scale, high nibble min */
    uint8_t qs[BB_QK_K / 4];      /* element 128h+32k+l: bits 2k..2k+1 of qs[32h+l] */
    uint16_t d, dmin;             /* x = d*sc*q - dmin*m, q in 0..3 */
} bb_block_q2_k;

typedef struct {
    uint8_t hmask[BB_QK_K / 8]; /* element e: bit e/32 of hmask[e%32], set means "no -4" */
    uint8_t qs[BB_QK_K / 4];    /* low 2 bits, layout as in Q2_K */
    uint8_t scales[12];         /* 16 six-bit scales (offset 32): low nibbles in 0..7, high pairs in 8..11 */
    uint16_t d;                 /* x = d*(sc-32)*q, q in -4..3 */
} bb_block_q3_k;

typedef struct {
    uint16_t d, dmin;        /* x = d*sc*q - dmin*m, q in 0..15 */
    uint8_t scales[12];      /* 8 six-bit scales and 8 six-bit mins, packed (docs/formats-quant.md) */
    uint8_t qs[BB_QK_K / 2]; /* element 64c+l: low nibble of qs[32c+l], 64c+32+l: high nibble */
} bb_block_q4_k;

typedef struct {
    uint16_t d, dmin;        /* x = d*sc*q - dmin*m, q in 0..31 */
    uint8_t scales[12];      /* as Q4_K */
    uint8_t qh[BB_QK_K / 8]; /* element e: bit e/32 of qh[e%32] is bit 4 of q */
    uint8_t qs[BB_QK_K / 2]; /* low 4 bits, as Q4_K */
} bb_block_q5_k;

typedef struct {
    uint8_t ql[BB_QK_K / 2];     /* low 4 bits (interleave: docs/formats-quant.md) */
    uint8_t qh[BB_QK_K / 4];     /* high 2 bits */
    int8_t scales[BB_QK_K / 16]; /* one per 16 elements */
    uint16_t d;                  /* x = d*sc*(q-32) */
} bb_block_q6_k;

_Static_assert(sizeof(bb_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(bb_block_q4_1) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(bb_block_q5_0) == 22, "Q5_0 block is 22 bytes");
_Static_assert(sizeof(bb_block_q5_1) == 24, "Q5_1 block is 24 bytes");
_Static_assert(sizeof(bb_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(bb_block_q2_k) == 84, "Q2_K block is 84 bytes");
_Static_assert(sizeof(bb_block_q3_k) == 110, "Q3_K block is 110 bytes");
_Static_assert(sizeof(bb_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(bb_block_q5_k) == 176, "Q5_K block is 176 bytes");
_Static_assert(sizeof(bb_block_q6_k) == 210, "Q6_K block is 210 bytes");

/* ---- the registry ---- */

/* Encode n elements of x (n) into n/blck blocks at dst. importance (n) weights each element's
 * squared error (NULL: all 1). Unchecked: n a multiple of blck, x finite, importance finite >= 0. */
typedef void (*bb_qformat_encode_fn)(const float *x, const float *importance, size_t n, void *dst);
/* Decode n elements (n/blck blocks at src, any alignment) into y (n). Any bytes are valid input. */
typedef void (*bb_qformat_decode_fn)(const void *src, size_t n, float *y);

typedef struct {
    int type;         /* bb_ggml_type */
    const char *name; /* ggml's name: "f16", "q8_0", "q4_K", ... */
    int blck;         /* elements per block: 1 (float types), 32 or 256 */
    int block_bytes;  /* bytes per block */
    double bits_per_weight;
    bb_qformat_encode_fn encode_ref;
    bb_qformat_decode_fn decode_ref;
} bb_qformat_traits;

/* Traits of an encodable type, or NULL for any other id (Q8_1, Q8_K, IQ*, out of range). */
const bb_qformat_traits *bb_qformat_info(int type);
/* The encodable types in registry order (F32, F16, BF16, Q8_0, Q4_0, ...), count in *n. */
const int *bb_qformat_types(int *n);

/* Type id from a config string: ggml's name, any letter case ("q4_k", "Q4_K", "bf16").
 * Errors: BB_ERR_CONFIG naming the string and listing the valid names. */
bb_status bb_qformat_parse_name(const char *name, int *type);

/* Bytes of a row of n elements. Errors: BB_ERR_ARG for an unknown type, n < 1, or n not a
 * multiple of the block size (the message names the type bb_qformat_fallback gives), and for a
 * size that overflows size_t. */
bb_status bb_qformat_row_bytes(int type, int64_t n, size_t *bytes);

/* The type to store a row of n elements in when the caller asked for `type`:
 *   type itself if blck divides n; else for K types the 32-element type of llama.cpp's rule
 *   (Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0) if 32 divides n; else F16.
 * -1 for a type without an encoder or n < 1. */
int bb_qformat_fallback(int type, int64_t n);

/* BB_OK if x (n) is all finite; else BB_ERR_NUMERIC naming `what` and the first bad index. */
bb_status bb_qformat_check_finite(const float *x, size_t n, const char *what);

/* Encode one row x (n) to dst (bb_qformat_row_bytes(type, n) bytes). importance (n) or NULL.
 * Errors: as bb_qformat_row_bytes; BB_ERR_ARG for NULL pointers; BB_ERR_NUMERIC if x holds NaN/Inf
 * or importance holds NaN/Inf or a negative value (nothing is written then). */
bb_status bb_qformat_encode_row(int type, const float *x, int64_t n, const float *importance, void *dst);
/* Decode one row of n elements from src (any alignment) to y (n). Errors: as bb_qformat_row_bytes;
 * BB_ERR_ARG for NULL pointers. Any block bytes decode (NaN/Inf scales give NaN/Inf values). */
bb_status bb_qformat_decode_row(int type, const void *src, int64_t n, float *y);

/* ---- per-type reference kernels (unchecked; the contract of bb_qformat_encode_fn/decode_fn) ---- */
void bb_qformat_encode_f32(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_f16(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_bf16(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q8_0(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q4_0(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q4_1(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q5_0(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q5_1(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q2_k(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q3_k(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q4_k(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q5_k(const float *x, const float *importance, size_t n, void *dst);
void bb_qformat_encode_q6_k(const float *x, const float *importance, size_t n, void *dst);

void bb_qformat_decode_f32(const void *src, size_t n, float *y);
void bb_qformat_decode_f16(const void *src, size_t n, float *y);
void bb_qformat_decode_bf16(const void *src, size_t n, float *y);
void bb_qformat_decode_q8_0(const void *src, size_t n, float *y);
void bb_qformat_decode_q4_0(const void *src, size_t n, float *y);
void bb_qformat_decode_q4_1(const void *src, size_t n, float *y);
void bb_qformat_decode_q5_0(const void *src, size_t n, float *y);
void bb_qformat_decode_q5_1(const void *src, size_t n, float *y);
void bb_qformat_decode_q2_k(const void *src, size_t n, float *y);
void bb_qformat_decode_q3_k(const void *src, size_t n, float *y);
void bb_qformat_decode_q4_k(const void *src, size_t n, float *y);
void bb_qformat_decode_q5_k(const void *src, size_t n, float *y);
void bb_qformat_decode_q6_k(const void *src, size_t n, float *y);

/* ---- scale search, shared by the encoders (and usable by GPTQ-style quantizers) ---- */

/* Symmetric grid y = d*q, q integer in [-nmax, nmax-1]. Finds d minimising sum w*(x-y)^2 for x (n)
 * with q the nearest grid point: candidate scales around "largest |x| maps to -nmax" and "to
 * nmax-1", each refitted by weighted least squares, then alternating q/d refinement. w (n) or NULL
 * (all 1; an all-zero w also counts as all 1). Returns d (0 for an all-zero x); x finite. */
double bb_qformat_fit_symmetric(const float *x, const float *w, int n, int nmax);

/* Affine grid y = s*q + b, q integer in [0, qmax], s >= 0; with min_le_zero the offset is kept
 * <= 0 (the K types store -b as an unsigned min). Same search and weights as above. Writes s, b. */
void bb_qformat_fit_affine(const float *x, const float *w, int n, int qmax, int min_le_zero, double *s, double *b);

/* Nearest integer to v clamped to [lo, hi]; NaN gives lo (never undefined behaviour). */
int bb_qformat_nearest(double v, int lo, int hi);
/* v clamped to the finite fp16 range, as fp16 bits (round to nearest even). */
uint16_t bb_qformat_f16_sat(double v);

#endif
