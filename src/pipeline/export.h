/* export.h — a model as a GGUF v3 file that llama.cpp loads: llama architecture keys, the vocabulary, F32
 * embeddings and norms, linear weights in their quantized block types (or F32), output.weight when untied.
 *
 * Tensors and keys (docs/export.md has the full list and the llama.cpp checks):
 *   general.architecture "llama", general.name, general.file_type (llama_ftype of the dominant linear type),
 *   llama.context_length, embedding_length, block_count, feed_forward_length, attention.head_count,
 *   attention.head_count_kv, attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count,
 *   vocab_size (and rope.scaling.* for linear scaling);
 *   the vocabulary: copied key by key from a GGUF input (tokenizer.*); for a llama2.c tokenizer.bin the
 *   SentencePiece form llama.cpp's convert-llama2c-to-ggml writes (model "llama", spaces as U+2581, token
 *   0 <unk> UNKNOWN, BOS <s> and EOS </s> CONTROL, <0xAB> pieces BYTE, scores); a Hugging Face
 *   tokenizer.json BPE vocabulary with byte_fallback is written as "llama" (pieces as they are, score -id),
 *   a byte-level one as "gpt2" with its merges and tokenizer.ggml.pre told from the Split regex (llama-bpe,
 *   qwen2, gpt-2); added tokens CONTROL when special, else USER_DEFINED; ids without a token "[PAD<id>]".
 *   A model without a tokenizer, or another tokenizer kind, gets tokenizer.ggml.model "no_vocab" and a
 *   warning (llama.cpp then loads it but cannot tokenize text).
 * RoPE: llama.cpp rotates pairs (2i, 2i+1) for the llama architecture. A model whose rotary pairs are
 * (i, i + head_dim/2) (Hugging Face rotate_half, BB_ROPE_HALF) has its attn_q / attn_k rows permuted
 * within each head to the interleaved order, as llama.cpp's convert_hf_to_gguf does, so the exported file
 * computes the same function. Models with q/k/v biases (qwen2) are refused. Not collective. */
#ifndef BB_PIPELINE_EXPORT_H
#define BB_PIPELINE_EXPORT_H

#include "compress/lora.h"
#include "io/model.h"
#include "pipeline/quantize.h"

typedef struct {
    const char *name;      /* general.name; NULL: the model file's base name */
    const char *tokenizer; /* tokenizer file; NULL: the one beside the model or inside a GGUF */
    int output_type;       /* output.weight of an untied model when the linear weights are quantized:
                              Q8_0 (F16 when its rows fit no 32-block); F32 when they are not */
} bb_export_opts;

void bb_export_opts_default(bb_export_opts *o); /* name NULL, tokenizer NULL, output_type Q8_0 */

/* Write `path` (temp name, then rename). base gives the architecture, embeddings, norms, classifier and
 * vocabulary; cur the linear weights when q is NULL (F32; cur may be base or a derived working-weight
 * model); q, when given, the linear weights' stored blocks and types. Errors: BB_ERR_UNSUPPORTED (biases,
 * Llama-3 rope scaling), the tokenizer loaders' format errors, BB_ERR_IO, BB_ERR_OOM. */
bb_status bb_export_gguf(const bb_model *base, const bb_model *cur, const bb_quantized *q, const bb_export_opts *o,
                         const char *path);

/* Low-rank factors of one linear weight for bb_export_lora_gguf; the factors are borrowed. */
typedef struct {
    int layer;
    bb_linear_kind kind;
    const bb_lora *lora; /* (rows, cols) of the weight: W + A·B, A (rows, rank), B (rank, cols) */
} bb_export_lora_entry;

/* Write `path` (temp name, then rename) as a GGUF LoRA adapter for the file bb_export_gguf writes of `base`
 * (same tensor names and rotary row order), so that llama.cpp run with `-m base.gguf --lora path` computes
 * with W + A·B for every entry — what bb_lora_merge followed by bb_export_gguf writes as one model.
 *   keys     general.architecture "llama", general.type "adapter", general.name (name, or a default),
 *            adapter.type "lora", adapter.lora.alpha = the largest rank among the entries (f32);
 *   tensors  "<weight>.lora_a" F32 of shape (rank, cols) holding B, and "<weight>.lora_b" F32 of shape
 *            (rows, rank) holding A · rank/alpha (llama.cpp adds (alpha/rank) · lora_b · (lora_a · x));
 *            for a model that rotates halves (BB_ROPE_HALF) the rows of attn_q's and attn_k's lora_b are
 *            permuted as bb_export_gguf permutes the weights' rows (bb_export_rope_row).
 * Errors: BB_ERR_ARG for NULL arguments, no entries, a layer/kind outside the model, factors whose shape
 * is not the weight's, two entries for one weight; BB_ERR_NUMERIC for a non-finite factor;
 * BB_ERR_UNSUPPORTED for models with q/k/v biases; BB_ERR_IO, BB_ERR_OOM. Not collective. */
bb_status bb_export_lora_gguf(const bb_model *base, const bb_export_lora_entry *entries, int n, const char *name,
                              const char *path);

/* The row of the exported attn_q / attn_k that holds row `row` of a rotate_half (BB_ROPE_HALF) weight:
 * within head h, row h*hd + j*hd/2 + i goes to h*hd + 2i + j (j = 0, 1; i < hd/2). */
int64_t bb_export_rope_row(int64_t row, int head_dim);

#endif
