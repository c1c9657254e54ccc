/* model.h — the one in-memory description of a Llama-family model.
 *
 * Every reader (Hugging Face directory, GGUF, llama2.c checkpoint, synthetic
 * generator) fills this struct: the architecture and a tensor handle per weight.
 * Handles are views into mmap'd files or generator-backed (core/tensor.h); no
 * reader copies the weights. Tensor names are canonical GGUF-style names
 * ("token_embd.weight", "blk.N.attn_q.weight", ...) whatever the input format. */
#ifndef BB_IO_MODEL_H
#define BB_IO_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "core/file.h"
#include "core/tensor.h"

/* How rotary embeddings pair dimensions within a head. */
typedef enum {
    BB_ROPE_INTERLEAVED = 0, /* pairs (2i, 2i+1): Meta, llama2.c, GGUF llama */
    BB_ROPE_HALF,            /* pairs (i, i + head_dim/2): Hugging Face rotate_half */
    BB_ROPE_STYLE_COUNT
} bb_rope_style;

typedef enum {
    BB_ROPE_SCALING_NONE = 0,
    BB_ROPE_SCALING_LINEAR, /* positions divided by factor */
    BB_ROPE_SCALING_LLAMA3, /* Llama-3.1 frequency-dependent scaling */
    BB_ROPE_SCALING_COUNT
} bb_rope_scaling;

/* Where a model came from. Append only. */
typedef enum { BB_SRC_SYNTH = 0, BB_SRC_LLAMA2C, BB_SRC_HF, BB_SRC_GGUF, BB_SRC_COUNT } bb_model_source;

typedef struct {
    char arch[32];  /* "llama", "mistral", "qwen2" */
    int dim;        /* model width */
    int hidden_dim; /* MLP width */
    int n_layers;
    int n_heads;
    int n_kv_heads; /* n_heads % n_kv_heads == 0 (GQA) */
    int head_dim;   /* usually dim / n_heads */
    int vocab_size;
    int max_seq_len;
    float norm_eps; /* RMSNorm epsilon */
    float rope_theta;
    bb_rope_style rope_style;
    bb_rope_scaling rope_scaling;
    float rope_factor;
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;       /* llama3: original_max_position_embeddings */
    int tied_embeddings;         /* output shares token_embd */
    int attn_bias;               /* q/k/v have biases (Qwen2) */
    int bos_id, eos_id;          /* -1 if unknown */
} bb_model_config;

typedef struct {
    bb_tensor attn_norm;    /* (dim) */
    bb_tensor wq;           /* (n_heads*head_dim, dim) */
    bb_tensor wk;           /* (n_kv_heads*head_dim, dim) */
    bb_tensor wv;           /* (n_kv_heads*head_dim, dim) */
    bb_tensor bq, bk, bv;   /* (out) biases; absent (ndim 0) unless attn_bias */
    bb_tensor wo;           /* (dim, n_heads*head_dim) */
    bb_tensor ffn_norm;     /* (dim) */
    bb_tensor w_gate;       /* (hidden_dim, dim) */
    bb_tensor w_up;         /* (hidden_dim, dim) */
    bb_tensor w_down;       /* (dim, hidden_dim) */
} bb_layer_weights;

#define BB_MODEL_MAX_FILES 256

typedef struct bb_model {
    bb_model_config cfg;
    bb_model_source source;
    char path[1024];           /* what was opened */
    bb_tensor tok_embd;        /* (vocab, dim) */
    bb_tensor out_norm;        /* (dim) */
    bb_tensor output;          /* (vocab, dim); same storage as tok_embd when tied */
    bb_layer_weights *layers;  /* [n_layers] */
    bb_mapped_file files[BB_MODEL_MAX_FILES]; /* storage the handles point into */
    int n_files;
    char tokenizer_path[1024]; /* tokenizer file found beside the model, "" if none */
    void *priv;                /* reader-specific state (GGUF metadata, generator) */
    void (*priv_free)(void *);
} bb_model;

/* The linear (compressible) weight kinds of a block, in a fixed order. */
typedef enum {
    BB_LIN_Q = 0,
    BB_LIN_K,
    BB_LIN_V,
    BB_LIN_O,
    BB_LIN_GATE,
    BB_LIN_UP,
    BB_LIN_DOWN,
    BB_LIN_COUNT
} bb_linear_kind;

const char *bb_linear_name(bb_linear_kind k); /* "attn_q", ..., "ffn_down" */
bb_tensor *bb_layer_linear(bb_layer_weights *l, bb_linear_kind k);

/* Allocate an empty model with n_layers zeroed layers. */
bb_status bb_model_alloc(bb_model **out, int n_layers);
/* NULL-safe; unmaps files, frees priv, nulls *m. */
void bb_model_destroy(bb_model **m);

/* Open any supported input:
 *   - "synthetic:<preset>" (see io/synth.h),
 *   - a directory with config.json (Hugging Face),
 *   - a file starting with "GGUF",
 *   - otherwise a llama2.c checkpoint (tokenizer.bin / tok*.bin beside it is found).
 * Validates with bb_model_validate. Errors name the file and what is wrong. */
bb_status bb_model_open(const char *path, bb_model **out);

/* Check the config (positive sizes, head counts divide, ...) and that every
 * tensor is present with the shape the config implies and a float dtype.
 * Errors name the model path, the tensor and expected vs found. */
bb_status bb_model_validate(const bb_model *m);

/* Call fn for every tensor (embedding, per-layer in order, final norm, output
 * unless tied). Stops at and returns the first non-OK status. */
typedef bb_status (*bb_tensor_visit_fn)(const bb_tensor *t, void *ud);
bb_status bb_model_for_each_tensor(const bb_model *m, bb_tensor_visit_fn fn, void *ud);

/* Every weight finite? Reads every tensor once in row blocks (generator-backed
 * tensors are finite by construction and skipped). Errors: BB_ERR_NUMERIC
 * naming the file, tensor, row and column of the first NaN/Inf ("the model
 * file is damaged"), read errors. */
bb_status bb_model_check_finite(const bb_model *m);
/* The same for part of the model: layers [l0, l1) (norms, biases, linear
 * weights), the embedding if embedding != 0, the final norm and the output
 * matrix (when not tied) if head != 0. One rank's share of a sharded run. */
bb_status bb_model_check_finite_part(const bb_model *m, int l0, int l1, int embedding, int head);

/* Parameter count (tied output counted once). */
int64_t bb_model_param_count(const bb_model *m);
const char *bb_model_source_name(bb_model_source s);

/* Human-readable summary (architecture, sizes, parameter counts), and with
 * `tensors` a line per tensor: name, shape, dtype, parameters. */
void bb_model_print(const bb_model *m, int tensors, FILE *f);

/* Readers, called by bb_model_open; each validates all sizes and offsets. */
bb_status bb_llama2c_open(const char *path, bb_model **out);
bb_status bb_hf_open(const char *dir, bb_model **out);
bb_status bb_gguf_model_open(const char *path, bb_model **out);

#endif
