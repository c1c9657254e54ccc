/* forward.h — CPU fp32 forward pass of a Llama-family model (OpenBLAS): KV cache, greedy/sampled generation.
 *
 * A context converts every weight it holds to f32 once, through
 * bb_tensor_read_f32, so it works for f32/f16/bf16 files and generator-backed
 * tensors alike. Those weights stay resident at 4 bytes per parameter (one
 * Llama-2-7B block is 810 MB, its embedding and classifier 524 MB each; the
 * full 7B model 27 GB); a part (below) holds only its blocks, which is how
 * ranks of a pipeline (mpi/pipe.h) share a model larger than one of them can
 * hold. Streaming layer by layer within one process is left to later work. Activations take about
 * 4 * (2 dim + 2 qd + 2 kvd + 2 hidden) bytes per row of B*T, grown on demand
 * (0.8 GB for 4096 rows of a 7B block), plus the attention scores of one
 * query block (bb_attention_scratch).
 *
 * Two entry points compute the same logits (tests/unit/test_forward.c checks it):
 *   - bb_forward_prefill: B independent sequences of T tokens from position 0,
 *     each linear layer one sgemm over all B*T rows; no cache
 *     (bb_forward_prefill_hidden: the same pass stopped before the classifier).
 *   - bb_forward_decode: tokens appended to the context's single KV-cached
 *     sequence (one at a time for generation, or a chunk).
 * A part of the model (bb_forward_create_part: blocks [l0, l1), optionally the
 * embedding and the final norm + classifier) is what one pipeline rank holds:
 * only those weights are converted, and bb_forward_embed, bb_forward_blocks and
 * bb_forward_head run the pieces; chained over parts they give the same logits
 * bit for bit as bb_forward_prefill (the same code on the same rows).
 * A hook sees the input of every linear layer just before its matmul.
 * Speed: each linear layer is one sgemm over all rows (the residual add folded
 * in), attention one sgemm pair per (query block, kv head); results are the
 * same bit for bit across runs with the same OpenBLAS thread count
 * (docs/performance-forward.md has the measured rates).
 * Contexts are not thread-safe (one workspace); not collective. */
#ifndef BB_MODEL_FORWARD_H
#define BB_MODEL_FORWARD_H

#include <stdint.h>

#include "io/model.h"

typedef struct bb_forward bb_forward;

/* Called right before linear layer `kind` of block `layer` multiplies x, (rows,
 * in_features) row-major, owned by the context and valid during the call only.
 * q/k/v receive the same pointer, as do gate/up. A non-OK status stops the pass
 * and is returned by it. */
typedef bb_status (*bb_forward_hook_fn)(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows,
                                        int64_t in_features);

/* Create a context for m (which must outlive it). cache_len is the KV-cache
 * length for bb_forward_decode: 0 means the model's max_seq_len. Errors:
 * BB_ERR_ARG (cache_len out of range), BB_ERR_OOM, read errors of the tensors. */
bb_status bb_forward_create(const bb_model *m, int cache_len, bb_forward **out);
void bb_forward_destroy(bb_forward **f); /* NULL-safe; nulls *f */

/* Which weights a context holds. */
typedef struct {
    int layer_begin, layer_end; /* blocks [begin, end); begin == end: none */
    int embed;                  /* token embedding (bb_forward_embed) */
    int head;                   /* final RMSNorm and classifier (bb_forward_head; a tied one loads the embedding) */
} bb_forward_part;

/* A context holding only part p of m: 4 bytes per parameter of those blocks,
 * plus vocab*dim for the embedding and (untied) as much again for the
 * classifier. bb_forward_prefill/_hidden/decode need the whole model ({0, n_layers,
 * 1, 1}, which is what bb_forward_create makes). Errors: as bb_forward_create, and
 * BB_ERR_ARG for a block range outside the model. */
bb_status bb_forward_create_part(const bb_model *m, const bb_forward_part *p, int cache_len, bb_forward **out);
void bb_forward_part_get(const bb_forward *f, bb_forward_part *out);

/* tokens (B, T) -> x (B, T, dim): the embedding rows. Errors: BB_ERR_ARG (no
 * embedding in this part, bad ids, B/T as bb_forward_prefill). */
bb_status bb_forward_embed(bb_forward *f, const int *tokens, int B, int T, float *x);
/* x (B, T, dim) in place: the residual stream after this part's blocks, each
 * sequence from position 0; the hook sees global layer indices. No blocks: x is
 * unchanged. Errors: BB_ERR_ARG (B/T), BB_ERR_OOM, the hook's status. */
bb_status bb_forward_blocks(bb_forward *f, float *x, int B, int T);
/* x (B, T, dim) -> logits (B, T, vocab): final RMSNorm and classifier.
 * Errors: BB_ERR_ARG (no head in this part, B/T), BB_ERR_OOM. */
bb_status bb_forward_head(bb_forward *f, const float *x, int B, int T, float *logits);

/* Process-wide: run the blocks of every prefill (bb_forward_prefill*, bb_forward_blocks) on the GPU
 * (cuda/forward_cuda.h, fp32 products) when use_cuda is set and birdbone is built with CUDA; decoding stays
 * on the CPU. Each context uploads its blocks' weights on its first GPU pass and keeps them for its
 * life (the pipeline makes a context per pass). The hook still sees host memory (each distinct layer
 * input is copied back once). The caller binds the GPU first (cuda/check.h bb_cuda_bind). Returns
 * whether the GPU path is on (0 in a build without CUDA). */
int bb_forward_set_device(int use_cuda);

/* Install (fn != NULL) or remove the linear-input hook. */
void bb_forward_set_hook(bb_forward *f, bb_forward_hook_fn fn, void *ud);

/* tokens (B, T) -> logits (B, T, vocab). Positions 0..T-1 of each sequence.
 * Errors: BB_ERR_ARG (token id outside the vocabulary, T > max_seq_len,
 * non-positive B or T), BB_ERR_OOM, or the hook's status. Non-finite logits
 * produce a warning with their count, not an error. */
bb_status bb_forward_prefill(bb_forward *f, const int *tokens, int B, int T, float *logits);

/* As bb_forward_prefill, but stop before the classifier: hidden (B, T, dim)
 * receives the final-normed hidden states (logits = hidden output^T). For
 * callers that want the blocks alone (the benchmark times a 7B block whose
 * vocab-32000 classifier would otherwise dominate) or logits in chunks. */
bb_status bb_forward_prefill_hidden(bb_forward *f, const int *tokens, int B, int T, float *hidden);

/* Wall-clock seconds and flops of the passes run since the context was created
 * or the counters were reset, by part. Hook time is in none of them. */
typedef struct {
    double matmul_s;        /* the 7 linear layers of every block */
    double attention_s;     /* scores, causal softmax, weighted sums, KV-cache stores */
    double elementwise_s;   /* embedding, RMSNorm, RoPE, SwiGLU */
    double classifier_s;    /* final RMSNorm and output matmul */
    double matmul_flop;     /* 2 rows in out summed over the 7 linears */
    double attention_flop;  /* 4 hd per visible (query head, key) pair: QK^T and PV, causal half only */
    double classifier_flop; /* 2 rows dim vocab */
    int64_t tokens;         /* rows passed through (B*T per prefill, n per decode) */
} bb_forward_stats;
void bb_forward_stats_get(const bb_forward *f, bb_forward_stats *out);
void bb_forward_stats_reset(bb_forward *f);

/* Feed tokens[0, n) at positions pos0..pos0+n-1 of the cached sequence and
 * write logits (n, vocab). pos0 may rewind (the cache after it is overwritten)
 * but may not skip ahead of what was fed. Errors: BB_ERR_ARG (pos0 beyond the
 * fed prefix, past the cache length, bad id), BB_ERR_OOM, the hook's status. */
bb_status bb_forward_decode(bb_forward *f, const int *tokens, int n, int pos0, float *logits);

const bb_model_config *bb_forward_config(const bb_forward *f);
int bb_forward_cache_len(const bb_forward *f);

/* Index of the largest logit; ties go to the lowest id; NaN never wins. */
int bb_argmax(const float *logits, int n);

/* Called for every generated token with the token before it (for decoding). */
typedef bb_status (*bb_generate_token_fn)(void *ud, int prev, int token);

/* Generate as llama2.c's run does: start with prompt[0] at position 0, feed the
 * rest of the prompt one position at a time, then pick each next token (argmax
 * when temperature is 0, else a sample of softmax(logits / temperature) with
 * uniform numbers from the Philox stream of seed). Runs `steps` positions at
 * most (clamped to the cache length) and stops early when BOS or EOS comes
 * next (llama2.c starts a new story with BOS). Every token after prompt[0] is
 * passed to on_token (if set) and stored in out (capacity steps), *n_out of them.
 * Errors: BB_ERR_ARG (empty prompt, bad ids, negative temperature), those of
 * bb_forward_decode and of on_token. */
bb_status bb_forward_generate(bb_forward *f, const int *prompt, int n_prompt, int steps, float temperature,
                              uint64_t seed, bb_generate_token_fn on_token, void *ud, int *out, int *n_out);

#endif
