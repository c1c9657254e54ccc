/* synth.h — synthetic Llama-shaped models, generated tensor by tensor from a seed.
 *
 * Weights are never materialized whole: each tensor is generator-backed and
 * produces any row block on demand, deterministically from (seed, tensor, row).
 * They carry structure that compression can find: each matrix is a low-rank
 * part with a decaying spectrum plus heavy-tailed noise (Student-t, 4 degrees
 * of freedom), and a few residual-stream channels get large RMSNorm gains, so
 * the inputs of q/k/v/gate/up have outlier channels as in real Llama models.
 *
 * Specs: "<preset>" or "<preset>,key=value,..." with presets
 *   tiny (the embedded default), small, llama2-7b, llama2-13b, llama2-70b,
 *   llama3-8b, llama3-70b
 * and keys dim, hidden, layers, heads, kv_heads, vocab, ctx, seed, rank,
 * energy, outliers, outlier_scale, theta. */
#ifndef BB_IO_SYNTH_H
#define BB_IO_SYNTH_H

#include <stdint.h>

#include "io/model.h"

typedef struct {
    char preset[32];
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len;
    float rope_theta;
    uint64_t seed;
    int rank;            /* planted rank of the low-rank part of each matrix */
    float lowrank_energy; /* fraction of a matrix's energy in the low-rank part */
    int n_outliers;      /* outlier channels of the residual stream (same in every layer) */
    float outlier_scale; /* gain of the outlier channels in the RMSNorm weights */
} bb_synth_spec;

/* Parse a spec string into s (preset defaults, then overrides). Errors name the
 * unknown preset or key and list the valid ones. */
bb_status bb_synth_parse(const char *spec, bb_synth_spec *s);
/* Open a synthetic model from a parsed spec. */
bb_status bb_synth_create(const bb_synth_spec *s, bb_model **out);
/* Parse + create (used by bb_model_open for "synthetic:<spec>"). */
bb_status bb_synth_open(const char *spec, bb_model **out);
/* Threads that generate a tensor's row block (0, the default: the processors online). The values do not
 * depend on it. Process-wide; set it before the work starts (compress sets backend.threads). */
void bb_synth_set_threads(int n);
/* Names of the presets, NULL-terminated. */
const char *const *bb_synth_presets(void);

#endif
