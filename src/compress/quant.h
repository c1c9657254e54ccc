/* quant.h — weight quantizers into GGUF block types: round-to-nearest and GPTQ with the block type as the grid.
 *
 * A quantizer takes one weight matrix W (rows = out, cols = in) and, optionally, the Gram
 * H = X^T X of its input, and produces the GGUF blocks of every row (bytes as io/qformat.h lays
 * them out) together with the dequantized matrix Ŵ, which is exactly what the blocks decode to.
 *
 *   "rtn"   round to nearest, per row: the block encoders (bb_quant_encoder, opts.search) with the
 *           per-input-channel importance (an explicit vector, else diag(H) when opts.importance,
 *           else none); rows in opts.threads threads.
 *   "gptq"  GPTQ (Frantar et al. 2022): error-compensating column-by-column quantization in the
 *           metric of H, with lazy batches. Each GGUF block's scales are fit (by qformat's own
 *           encoder) on the block's current, error-updated values when the column loop reaches the
 *           block's first column; the block's codes are then chosen column by column against those
 *           fixed scales, so the stored encoding is exactly the q GPTQ optimized.
 *
 * docs/quantization.md has the algorithm, the handling of K types and act-order, and measured
 * accuracy and speed. Local: nothing here calls MPI. Each matrix is timed as event "quant.rtn" or
 * "quant.gptq" (core/events.h). */
#ifndef BB_COMPRESS_QUANT_H
#define BB_COMPRESS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "compress/mask.h"
#include "core/status.h"
#include "io/config.h"
#include "io/qformat.h"
#include "linalg/backend.h"

/* How the round-to-nearest block encoders search a block's scale (quant.search). */
typedef enum {
    BB_QUANT_SEARCH_AUTO = 0, /* full when the fit is weighted by an importance (GPTQ, RTN with statistics), else fast */
    BB_QUANT_SEARCH_FAST = 1, /* 13 candidate scales + 2 refinements, f32 vector lanes (Q8_0, Q4_0, Q5_0) */
    BB_QUANT_SEARCH_FULL = 2, /* qformat's 66 candidates + 4 refinements, bit-identical to encode_ref */
} bb_quant_search;

typedef struct {
    int type;                         /* requested bb_ggml_type (BB_GGML_Q4_0, ...) */
    int fallback;                     /* float type for rows no block type fits (BB_GGML_F16) */
    int importance;                   /* weight the block fits by diag(H) when no explicit vector is given */
    double damp;                      /* GPTQ: damping as a fraction of mean(diag H) */
    double damp_max;                  /* GPTQ: damping is raised x10 on a failed Cholesky up to this */
    int64_t block_size;               /* GPTQ: columns per lazy batch (rounded up to whole GGUF blocks) */
    int act_order;                    /* GPTQ: blocks by decreasing diag(H), columns inside each block too */
    const bb_linalg_backend *backend; /* NULL = "cpu" */
    int threads;                      /* threads over rows (RTN; GPTQ's column loop); 0 = all cores */
    int search;                       /* bb_quant_search */
} bb_quant_opts;

/* Q4_0, fallback F16, importance on, damp 0.01, damp_max 10, block 128, no act-order, cpu backend,
 * all cores, search auto. */
void bb_quant_opts_default(bb_quant_opts *o);
/* From the quant.* keys. quant.type = "auto" leaves o->type as it was (the budget chooses it).
 * Errors: BB_ERR_CONFIG for a type name qformat does not know. */
bb_status bb_quant_opts_from_config(const bb_config_quant *c, bb_quant_opts *o);

/* One matrix to quantize. Arrays are borrowed, not copied. */
typedef struct {
    const char *name;        /* tensor name, for messages ("blk.0.attn_q.weight") */
    int64_t rows, cols;      /* W is (rows, cols): out x in */
    const float *w;          /* (rows, cols) row-major */
    const float *h;          /* (cols, cols) row-major, full symmetric X^T X; NULL: RTN only, no importance */
    const float *importance; /* (cols) per-input-channel weights >= 0, or NULL (then diag H if opts.importance) */
    const bb_mask *mask;     /* GPTQ: pruned weights (bit 0) are quantized to the grid value nearest 0 (exactly 0
                                on the symmetric types) and their error is compensated like any other; NULL = dense */
} bb_quant_input;

typedef struct {
    int type;      /* type stored: the requested one, or its fallback (bb_qformat_fallback) */
    int fell_back; /* 1 when type differs from the requested type */
    int64_t rows, cols;
    size_t row_bytes; /* bytes of one encoded row */
    uint8_t *blocks;  /* (rows, row_bytes): the GGUF tensor data, row after row */
    float *w_hat;     /* (rows, cols) row-major: exactly what blocks decode to */
    double damp;      /* GPTQ: damping fraction that factorized (0 for RTN) */
    int64_t dead;     /* GPTQ: inputs with H_jj = 0 (their weights are quantized as 0) */
} bb_quant_result;

/* Allocates blocks and w_hat for (rows, cols) of `type` (which must fit the row length).
 * Errors: BB_ERR_ARG for sizes or a type without a block fit, BB_ERR_OOM. */
bb_status bb_quant_result_create(int type, int64_t rows, int64_t cols, bb_quant_result **out);
void bb_quant_result_destroy(bb_quant_result **r); /* NULL-safe; nulls *r */

/* A quantizer: fills *out (created by apply). Errors of every apply: BB_ERR_ARG for NULL or
 * inconsistent arguments; BB_ERR_NUMERIC naming the tensor for NaN/Inf in W, H or the importance,
 * a negative importance, or (GPTQ) a Cholesky that fails even at damp_max; BB_ERR_OOM. A row length
 * that fits no block of the requested type is stored in its fallback (one warning). */
typedef bb_status (*bb_quant_apply_fn)(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out);

typedef struct {
    const char *name; /* "rtn", "gptq" */
    bb_quant_apply_fn apply;
} bb_quantizer;

/* The quantizer registered under name. Errors: BB_ERR_CONFIG listing the valid names. */
bb_status bb_quant_get(const char *name, const bb_quantizer **out);

/* Shape and finiteness checks shared by the quantizers: W (and H, the importance) finite, the
 * importance >= 0, H present when need_h. Errors: BB_ERR_ARG, BB_ERR_NUMERIC naming the tensor and
 * the element. */
bb_status bb_quant_check_input(const bb_quant_input *in, int need_h);
/* The type rows of `cols` elements are stored in when o->type is asked for: o->type when its block
 * divides cols, else qformat's fallback rule with o->fallback in place of F16; warns once (naming
 * `name`) when it differs. Errors: BB_ERR_ARG for a type without an encoder or a non-float fallback. */
bb_status bb_quant_stored_type(const bb_quant_opts *o, const char *name, int64_t cols, int *type);

/* The search a quantizer runs: o->search, with auto resolved to full when `weighted` (the block fits
 * are weighted by an importance vector) and to fast otherwise. */
int bb_quant_search_for(const bb_quant_opts *o, int weighted);

/* The block encoder the quantizers use for `type` (NULL for a type without one) with `search`
 * (BB_QUANT_SEARCH_FAST or _FULL):
 *   full  byte-identical to qformat's encode_ref (same scale search, same arithmetic); Q8_0, Q4_0 and
 *         Q5_0 run their candidate scales in vector lanes (AVX2/AVX-512 when the CPU has them);
 *   fast  Q8_0, Q4_0 and Q5_0: the scale by the search of bb_quant_fit_symmetric_fast_ref run on 8 blocks
 *         at once in vector lanes (docs/quantization.md), codes the nearest points of the stored fp16
 *         scale in f32; bytes identical to bb_quant_encoder_fast_ref's; the other types are encode_ref (their search is not
 *         the bottleneck of any path that needs speed). */
bb_qformat_encode_fn bb_quant_encoder(int type, int search);
/* The plain-C twin of bb_quant_encoder(type, BB_QUANT_SEARCH_FAST): one block at a time in scalar
 * loops (the vector path gives each lane one block and repeats these operations in this order). */
bb_qformat_encode_fn bb_quant_encoder_fast_ref(int type);
/* bb_qformat_encode_row through bb_quant_encoder(type, search): same checks, errors and bytes
 * (identical bytes for full). Errors also: BB_ERR_ARG for a search other than fast or full. */
bb_status bb_quant_encode_row(int type, int search, const float *x, int64_t n, const float *importance, void *dst);

/* The fast scale search of one 32-element block x (32), weights w (32) or NULL (all 1; all-zero w
 * also counts as all 1), grid q in [-nmax, nmax - 1], in f32: 13 candidate scales from the largest |x|
 * mapped to either end of the grid, each refit by weighted least squares, the best refined twice by
 * alternating nearest q and least-squares d. Returns d (0 when every |x| < 1e-30, which any fp16
 * scale decodes to zeros); x finite. Plain scalar C: the reference of the vectorized encoders. */
float bb_quant_fit_symmetric_fast_ref(const float *x, const float *w, int nmax);

bb_status bb_quant_rtn(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out);
/* Needs in->h. Lazy batches, f32, the backend's potrf/potri and gemm; the column loop runs the rows
 * in o->threads threads (rows are independent given H: the result does not depend on the count). */
bb_status bb_quant_gptq(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out);
/* The plain-C reference of bb_quant_gptq: no lazy batching (every later column updated after each
 * column), Cholesky and inverse in double, all updates in double. Same options and grid rules;
 * O(rows cols^2 + cols^3) plain loops, for tests. */
bb_status bb_quant_gptq_ref(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out);

/* Layer reconstruction error tr((W - Ŵ) H (W - Ŵ)^T) = sum over rows of e H e^T, e = w - ŵ, with
 * w, w_hat (rows, cols) and h (cols, cols) row-major; products in f32 (backend gemm, NULL = cpu),
 * sums in double. Errors: BB_ERR_ARG, BB_ERR_OOM. */
bb_status bb_quant_layer_error(const bb_linalg_backend *be, const float *w, const float *w_hat, const float *h,
                               int64_t rows, int64_t cols, double *err);

#endif
