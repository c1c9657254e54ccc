/* calib.h — calibration statistics of every linear-layer input (Gram X^T X, channel norms, mean |x|, activation
 * frequency), collected through the forward pass's hook.
 *
 * A block has four distinct linear inputs; layers that read the same input
 * share one set of statistics:
 *   attn_in      the normed residual read by attn_q, attn_k, attn_v  (dim wide)
 *   attn_out_in  the attention output read by attn_output           (n_heads*head_dim)
 *   ffn_in       the normed residual read by ffn_gate, ffn_up        (dim wide)
 *   ffn_down_in  silu(gate) * up, read by ffn_down                   (hidden_dim)
 * bb_calib_input_of maps a bb_linear_kind to its input.
 *
 * For every input X (rows = tokens, in = features) the collector accumulates
 *   H = X^T X           (in, in): ssyrk in f32, or dsyrk on rows converted to
 *                       double in blocks (calib.gram_precision = f64),
 *   sum_t x_tj^2, sum_t |x_tj|, #{t : |x_tj| > eps}   per channel j (double / int64),
 * over the rows that are entirely finite. A row with a NaN or Inf is left out
 * of everything (its values are counted and reported in a warning), so that
 * trace(H) = sum_j norm_j^2 holds exactly in exact arithmetic.
 *
 * syrk writes the upper triangle only; the lower one is filled, and the
 * per-channel sums turned into norm / mean_abs / freq, when bb_calib_stats is
 * called (and again after further accumulation).
 *
 * Memory is one allocation made by bb_calib_create: bb_calib_memory_bytes
 * tells how much (about sum of in^2 * 4 or 8 bytes over the distinct inputs of
 * the collected layers). A layer range [layer_begin, layer_end) lets each MPI
 * rank collect only the layers it owns.
 *
 * Nothing here is collective; a collector is not thread-safe. */
#ifndef BB_MODEL_CALIB_H
#define BB_MODEL_CALIB_H

#include <stdint.h>

#include "io/config.h"
#include "io/model.h"
#include "io/tokens.h"
#include "model/forward.h"

/* The distinct linear inputs of a block. Reaches files (by name): append only. */
typedef enum {
    BB_CALIB_ATTN_IN = 0,
    BB_CALIB_ATTN_OUT_IN,
    BB_CALIB_FFN_IN,
    BB_CALIB_FFN_DOWN_IN,
    BB_CALIB_INPUT_COUNT
} bb_calib_input;

typedef enum { BB_CALIB_F32 = 0, BB_CALIB_F64, BB_CALIB_PRECISION_COUNT } bb_calib_precision;

typedef struct {
    int layer_begin, layer_end;   /* collect layers [begin, end); end = 0 means up to the last layer */
    bb_calib_precision precision; /* Gram accumulation type */
    double eps;                   /* an activation counts as active when |x| > eps (usage.eps) */
} bb_calib_opts;

/* Finished statistics of one input. Arrays are owned by the collector and stay
 * valid until it is destroyed or accumulates again. */
typedef struct {
    int layer;
    bb_calib_input input;
    int64_t in_features;
    bb_calib_precision precision;
    const float *gram;        /* (in, in) row-major, full symmetric; f32 mode, else NULL */
    const double *gram_f64;   /* (in, in) row-major, full symmetric; f64 mode, else NULL */
    const double *norm;       /* (in) ||X_j||_2 over the counted rows */
    const double *mean_abs;   /* (in) mean |x_j| over the counted rows (0 when none) */
    const double *freq;       /* (in) fraction of counted rows with |x_j| > eps (0 when none) */
    int64_t n_tokens;         /* rows counted (all finite) */
    int64_t n_rows_nonfinite; /* rows left out because they hold a NaN or Inf */
    int64_t n_nonfinite;      /* non-finite values in those rows */
} bb_calib_stat;

typedef struct bb_calib bb_calib;

const char *bb_calib_input_name(bb_calib_input in); /* "attn_in", ...; "?" if out of range */
/* The input kind of a linear weight kind; BB_CALIB_INPUT_COUNT if k is out of range. */
bb_calib_input bb_calib_input_of(bb_linear_kind k);
/* Width of input `in` for a model: dim, n_heads*head_dim or hidden_dim (0 if in is out of range). */
int64_t bb_calib_in_features(const bb_model_config *c, bb_calib_input in);
const char *bb_calib_precision_name(bb_calib_precision p); /* "f32" | "f64" | "?" */
/* Parse "f32" | "f64". Errors: BB_ERR_CONFIG naming the value. */
bb_status bb_calib_parse_precision(const char *s, bb_calib_precision *out);

/* All layers, f32, eps 1e-3 (the defaults of calib.gram_precision and usage.eps). */
void bb_calib_opts_default(bb_calib_opts *o);
/* Precision from calib.gram_precision and eps from usage.eps; all layers. */
bb_status bb_calib_opts_from_config(const bb_config *cfg, bb_calib_opts *o);

/* Bytes bb_calib_create allocates for c and o: Grams plus per-channel arrays.
 * Errors: BB_ERR_ARG for a bad layer range; BB_ERR_OOM if the size overflows. */
bb_status bb_calib_memory_bytes(const bb_model_config *c, const bb_calib_opts *o, size_t *bytes);

/* A collector for m (which must outlive it) with zeroed statistics. Logs the
 * memory it takes. Errors: BB_ERR_ARG (layer range outside the model, eps < 0
 * or not finite, unknown precision), BB_ERR_OOM naming the bytes needed and
 * suggesting fewer layers per rank. */
bb_status bb_calib_create(const bb_model *m, const bb_calib_opts *o, bb_calib **out);
void bb_calib_destroy(bb_calib **c); /* NULL-safe; nulls *c; does not detach a hook */

/* Install the collector as f's linear-input hook (f must run the same model
 * shape). Forward passes then accumulate until bb_forward_set_hook(f, NULL, NULL).
 * Errors: BB_ERR_ARG (other model dimensions, or statistics loaded from a file:
 * those are read-only). */
bb_status bb_calib_attach(bb_calib *c, bb_forward *f);
/* Undo bb_calib_attach: removes f's hook and forgets f (call it before f goes away). NULL-safe. */
void bb_calib_detach(bb_calib *c, bb_forward *f);

/* The hook itself: accumulate x (rows, in_features) row-major, the input of
 * linear `kind` of `layer`, as bb_forward calls it. Other producers of
 * activations (a pipelined or GPU forward pass, tests) call it directly. Layers
 * outside the range are ignored. The owner of a shared input (attn_q for
 * q/k/v, ffn_gate for gate/up) accumulates; the other kinds must come after it
 * with the same x and rows, and only that is checked. Errors: BB_ERR_ARG
 * (read-only statistics), BB_ERR_INTERNAL (width differs from the model's, a
 * sharer handed other rows). */
bb_status bb_calib_feed(bb_calib *c, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in_features);

/* Feed every sequence of stream (n_seq, seq_len) through bb_forward_prefill,
 * micro_batch sequences per call, with the collector attached for the duration
 * (the hook is removed afterwards). Shows a progress line; timing events
 * "calib.forward" (whole prefill, matmul flops; includes the nested gram time)
 * and "calib.gram" (the statistics, syrk flops counted as n^2 k). Warns with the
 * count if non-finite activations were left out. Errors: BB_ERR_ARG (flat stream:
 * cut it with bb_calib_sample_windows first; micro_batch < 1; seq_len beyond the
 * model's context), BB_ERR_OOM, forward errors. */
bb_status bb_calib_run(bb_calib *c, bb_forward *f, const bb_tokens *stream, int micro_batch);

/* The statistics of the input read by linear `kind` of `layer` (q, k and v give
 * the same object, as do gate and up), finished (symmetric, norms computed).
 * Errors: BB_ERR_ARG for a layer outside the collected range or a bad kind. */
bb_status bb_calib_stats(bb_calib *c, int layer, bb_linear_kind kind, const bb_calib_stat **out);
/* The same addressed by input kind. */
bb_status bb_calib_stats_input(bb_calib *c, int layer, bb_calib_input in, const bb_calib_stat **out);

const bb_calib_opts *bb_calib_options(const bb_calib *c); /* the resolved options (layer_end set) */
const bb_model *bb_calib_model(const bb_calib *c);

/* For readers of saved statistics (mpi/stats_h5.c): writable arrays of one
 * input, sized as in bb_calib_stat, to be filled completely. The collector is
 * marked loaded (read-only: attach and run refuse it). */
typedef struct {
    void *gram;                     /* (in, in) float or double per precision, full symmetric */
    double *norm, *mean_abs, *freq; /* (in) each */
    int64_t *n_tokens, *n_rows_nonfinite, *n_nonfinite;
} bb_calib_slot;
bb_status bb_calib_load_slot(bb_calib *c, int layer, bb_calib_input in, bb_calib_slot *out);

/* A seeded sampler of calibration windows: from a flat token stream (n tokens)
 * choose n_windows of the floor(n / seq_len) non-overlapping windows (0 = all)
 * uniformly without replacement (Philox stream "calib.windows" of seed), kept
 * in stream order; the first token of each window becomes bos_id unless it is
 * negative. out gets (n_windows, seq_len). Errors: BB_ERR_ARG (seq_len < 2,
 * fewer windows in the stream than asked), BB_ERR_OOM. */
bb_status bb_calib_sample_windows(const bb_tokens *flat, int n_windows, int seq_len, uint64_t seed, int bos_id,
                                  bb_tokens *out);

/* SHA-256 (hex) of a stream's ids, sequence length and vocabulary: the
 * "tokens hash" recorded beside saved statistics. */
void bb_calib_tokens_hash(const bb_tokens *t, char hex[65]);

/* Plain-C reference: accumulate the upper triangle of X^T X into h (in, in)
 * row-major (double) and the per-channel sums, for x (rows, in) row-major,
 * skipping rows with a non-finite value (counted in *bad_rows). The tests
 * check the collector against it. */
void bb_calib_accumulate_ref(const float *x, int64_t rows, int64_t in, double eps, double *h, double *sumsq,
                             double *sumabs, int64_t *active, int64_t *counted, int64_t *bad_rows);

#endif
