/* gguf_model.c — GGUF (architectures llama and qwen2) to bb_model: config from the metadata,
 * float tensors as views into the file, quantized ones (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K)
 * decoded to f32 buffers the model owns. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/gguf.h"
#include "io/qformat.h"

/* llama.cpp's converter permutes the Hugging Face q/k rows for llama so the interleaved
 * pairing applies to the weights as stored; qwen2 keeps the NEOX (rotate-half) pairing. */
typedef struct {
    const char *name;
    bb_rope_style rope;
} arch_info;

static const arch_info arches[] = {
    {.name = "llama", .rope = BB_ROPE_INTERLEAVED},
    {.name = "qwen2", .rope = BB_ROPE_HALF},
};

/* What a GGUF model owns besides its mapping: the parsed file and the decoded quantized tensors. */
typedef struct {
    bb_gguf *g;
    int n_decoded;
    float **decoded; /* [n_decoded] f32 buffers, one per quantized tensor */
} gguf_priv;

static void gguf_priv_free(void *p) {
    gguf_priv *gp = p;
    if (!gp) return;
    bb_gguf_destroy(&gp->g);
    for (int i = 0; i < gp->n_decoded; i++) free(gp->decoded[i]);
    free(gp->decoded);
    free(gp);
}

const bb_gguf *bb_gguf_of_model(const bb_model *m) {
    return m && m->source == BB_SRC_GGUF && m->priv_free == gguf_priv_free ? ((const gguf_priv *)m->priv)->g : NULL;
}

typedef struct {
    const bb_gguf *g;
    gguf_priv *own; /* where decoded tensors go */
    const char *what;
    const char *arch;
    char key[128];
} keys;

static const char *arch_key(keys *k, const char *suffix) {
    snprintf(k->key, sizeof k->key, "%s.%s", k->arch, suffix);
    return k->key;
}

/* An integer hyperparameter in [lo, hi]; def is used when the key is absent and !required. */
static bb_status get_int(keys *k, const char *key, int required, int64_t def, int64_t lo, int64_t hi, int *out) {
    int64_t v = def;
    if (required || bb_gguf_find_key(k->g, key) >= 0) BB_CALL(bb_gguf_get_int(k->g, key, &v));
    BB_CHECK(v >= lo && v <= hi, BB_ERR_FORMAT, "%s: key %s is %lld; expected a value in [%lld, %lld]", k->what, key,
             (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return BB_OK;
}

static bb_status get_float(keys *k, const char *key, int required, double def, float *out) {
    double v = def;
    if (required || bb_gguf_find_key(k->g, key) >= 0) BB_CALL(bb_gguf_get_float(k->g, key, &v));
    *out = (float)v;
    return BB_OK;
}

static bb_status read_rope_scaling(keys *k, bb_model_config *c) {
    c->rope_scaling = BB_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    if (bb_gguf_find_key(k->g, arch_key(k, "rope.scaling.type")) >= 0) {
        bb_gguf_str s;
        BB_CALL(bb_gguf_get_str(k->g, k->key, &s));
        if (s.len == 4 && memcmp(s.s, "none", 4) == 0) return BB_OK;
        BB_CHECK(s.len == 6 && memcmp(s.s, "linear", 6) == 0, BB_ERR_UNSUPPORTED,
                 "%s: %s is \"%.*s\"; only \"none\" and \"linear\" rope scaling are supported", k->what, k->key,
                 (int)(s.len > 32 ? 32 : s.len), s.s);
        BB_CALL(get_float(k, arch_key(k, "rope.scaling.factor"), 1, 1.0, &c->rope_factor));
        c->rope_scaling = BB_ROPE_SCALING_LINEAR;
        return BB_OK;
    }
    /* Files from before rope.scaling.* stored the linear factor alone. */
    if (bb_gguf_find_key(k->g, arch_key(k, "rope.scale_linear")) >= 0) {
        BB_CALL(get_float(k, k->key, 1, 1.0, &c->rope_factor));
        if (c->rope_factor != 1.0f) c->rope_scaling = BB_ROPE_SCALING_LINEAR;
    }
    return BB_OK;
}

/* Llama 3.x GGUFs carry their rope scaling only as rope_freqs.weight: per frequency, the
 * divisor the Llama-3 rule gives. birdbone evaluates that rule from its parameters
 * (model/kernels.c), so recover them. Meta's models all use low_freq_factor 1,
 * high_freq_factor 4 and an original context of 8192, which leaves the factor to find from the
 * first frequency it affects; every divisor is then checked against the rule. */
static bb_status read_rope_freqs(keys *k, bb_model_config *c, int *used) {
    int64_t id = bb_gguf_find_tensor(k->g, "rope_freqs.weight");
    if (id < 0) return BB_OK;
    const bb_gguf_tensor *t = bb_gguf_tensor_at(k->g, id);
    const int half = c->head_dim / 2;
    BB_CHECK(t->type == BB_GGML_F32 && t->ndim == 1 && t->shape[0] == half, BB_ERR_FORMAT,
             "%s: rope_freqs.weight must be f32 of shape (%d) (head_dim / 2); found %s with %lld elements", k->what,
             half, bb_ggml_type_name(t->type), (long long)(t->nbytes / (size_t)bb_ggml_type_info(t->type)->type_size));
    BB_CHECK(c->rope_scaling == BB_ROPE_SCALING_NONE, BB_ERR_UNSUPPORTED,
             "%s: both rope_freqs.weight and linear rope scaling are given; only one kind is supported", k->what);
    (*used)++;
    const double lo = 1, hi = 4, orig = 8192, pi = 3.14159265358979323846;
    double factor = 1;
    int found = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < half; i++) {
            float d;
            memcpy(&d, (const char *)t->data + 4 * (size_t)i, 4);
            double wl = 2 * pi / pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            double s = (orig / wl - lo) / (hi - lo);
            if (pass == 0 && !found && wl >= orig / hi) {
                BB_CHECK(isfinite(d) && d > 0, BB_ERR_FORMAT,
                         "%s: rope_freqs.weight[%d] is %g, not a positive frequency divisor", k->what, i, (double)d);
                factor = wl > orig / lo ? d : (1 - s) / (1.0 / d - s);
                BB_CHECK(isfinite(factor) && factor > 0, BB_ERR_UNSUPPORTED,
                         "%s: rope_freqs.weight[%d] = %g fits no Llama-3 rope scaling factor; open the Hugging Face "
                         "checkpoint instead",
                         k->what, i, (double)d);
                found = 1;
            }
            if (pass == 0) continue;
            double e = wl > orig / lo ? factor : wl >= orig / hi ? 1 / ((1 - s) / factor + s) : 1;
            BB_CHECK(fabs(d - e) <= 1e-3 * e, BB_ERR_UNSUPPORTED,
                     "%s: rope_freqs.weight[%d] is %g where Llama-3 rope scaling (factor %g, low_freq_factor 1, "
                     "high_freq_factor 4, original context 8192) gives %g; open the Hugging Face checkpoint instead",
                     k->what, i, (double)d, factor, e);
        }
    if (fabs(factor - 1) <= 1e-6) return BB_OK; /* all divisors 1: no scaling */
    c->rope_scaling = BB_ROPE_SCALING_LLAMA3;
    c->rope_factor = (float)factor;
    c->rope_low_freq_factor = (float)lo;
    c->rope_high_freq_factor = (float)hi;
    c->rope_orig_max_pos = (int)orig;
    return BB_OK;
}

/* Everything but block_count, which sized the layer table already. */
static bb_status read_config(keys *k, bb_model_config *c) {
    const int big = 1 << 24;
    BB_CALL(get_int(k, arch_key(k, "embedding_length"), 1, 0, 1, big, &c->dim));
    BB_CALL(get_int(k, arch_key(k, "feed_forward_length"), 1, 0, 1, big, &c->hidden_dim));
    BB_CALL(get_int(k, arch_key(k, "attention.head_count"), 1, 0, 1, 65536, &c->n_heads));
    BB_CALL(get_int(k, arch_key(k, "attention.head_count_kv"), 0, c->n_heads, 1, 65536, &c->n_kv_heads));
    BB_CALL(get_int(k, arch_key(k, "context_length"), 1, 0, 1, 1 << 30, &c->max_seq_len));
    BB_CALL(get_float(k, arch_key(k, "rope.freq_base"), 0, 10000.0, &c->rope_theta));
    BB_CALL(get_float(k, arch_key(k, "attention.layer_norm_rms_epsilon"), 1, 0.0, &c->norm_eps));
    if (bb_gguf_find_key(k->g, arch_key(k, "attention.key_length")) >= 0) {
        BB_CALL(get_int(k, k->key, 1, 0, 1, 65536, &c->head_dim));
        int vl;
        BB_CALL(get_int(k, arch_key(k, "attention.value_length"), 0, c->head_dim, 1, 65536, &vl));
        BB_CHECK(vl == c->head_dim, BB_ERR_UNSUPPORTED,
                 "%s: attention key length %d differs from value length %d; only equal head sizes are supported",
                 k->what, c->head_dim, vl);
    } else {
        BB_CHECK(c->dim % c->n_heads == 0, BB_ERR_FORMAT,
                 "%s: embedding_length %d is not a multiple of head_count %d and attention.key_length is absent",
                 k->what, c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    int rope_dim;
    BB_CALL(get_int(k, arch_key(k, "rope.dimension_count"), 0, c->head_dim, 1, 65536, &rope_dim));
    BB_CHECK(rope_dim == c->head_dim, BB_ERR_UNSUPPORTED,
             "%s: %s is %d but the head dimension is %d; partial rotary embeddings are not supported", k->what,
             k->key, rope_dim, c->head_dim);
    BB_CALL(read_rope_scaling(k, c));
    c->vocab_size = 0;
    if (bb_gguf_find_key(k->g, arch_key(k, "vocab_size")) >= 0) {
        BB_CALL(get_int(k, k->key, 1, 0, 1, 1 << 30, &c->vocab_size));
    } else if (bb_gguf_find_key(k->g, "tokenizer.ggml.tokens") >= 0) {
        uint64_t n;
        BB_CALL(bb_gguf_get_arr(k->g, "tokenizer.ggml.tokens", BB_GGUF_STRING, &n));
        BB_CHECK(n >= 1 && n <= (1u << 30), BB_ERR_FORMAT, "%s: tokenizer.ggml.tokens holds %llu tokens", k->what,
                 (unsigned long long)n);
        c->vocab_size = (int)n;
    }
    BB_CALL(get_int(k, "tokenizer.ggml.bos_token_id", 0, -1, -1, (1 << 30) - 1, &c->bos_id));
    BB_CALL(get_int(k, "tokenizer.ggml.eos_token_id", 0, -1, -1, (1 << 30) - 1, &c->eos_id));
    return BB_OK;
}

/* Decode quantized tensor t (name) into an f32 buffer owned by the model and point dst at it. Every
 * value must decode finite: a NaN/Inf comes from a damaged scale field, reported with its row. */
static bb_status bind_decoded(keys *k, const char *name, const bb_gguf_tensor *t, bb_tensor *dst) {
    const bb_ggml_type_traits *tr = bb_ggml_type_info(t->type);
    const bb_qformat_traits *q = bb_qformat_info(t->type);
    BB_CHECK(q != NULL, BB_ERR_UNSUPPORTED,
             "%s: tensor %s has type %s, which birdbone cannot decode; supported quantized types are q8_0, q4_0, "
             "q4_1, q5_0, q5_1 and q2_K..q6_K: re-quantize with one of them or start from the F16/BF16/F32 GGUF",
             k->what, name, tr->name);
    BB_CHECK(t->ndim >= 1 && t->shape[t->ndim - 1] >= 1, BB_ERR_FORMAT, "%s: tensor %s has an empty shape", k->what,
             name);
    int64_t cols = t->shape[t->ndim - 1], rows = 1;
    for (int d = 0; d + 1 < t->ndim; d++) rows *= t->shape[d];
    size_t row_bytes, n;
    BB_CALL(bb_qformat_row_bytes(t->type, cols, &row_bytes));
    BB_CHECK(t->nbytes == row_bytes * (size_t)rows && !bb_mul_overflow((size_t)rows, (size_t)cols, &n) &&
                 n <= SIZE_MAX / sizeof(float),
             BB_ERR_FORMAT, "%s: tensor %s: %zu bytes of %s data where shape (%lld rows of %lld) needs %zu", k->what,
             name, t->nbytes, tr->name, (long long)rows, (long long)cols, row_bytes * (size_t)rows);
    float **grown = realloc(k->own->decoded, sizeof *grown * (size_t)(k->own->n_decoded + 1));
    BB_CHECK(grown != NULL, BB_ERR_OOM, "out of memory for the decoded-tensor table");
    k->own->decoded = grown;
    float *buf;
    BB_CALL(bb_malloc((void **)&buf, n * sizeof(float), name));
    k->own->decoded[k->own->n_decoded++] = buf; /* owned from here, freed with the model */
    for (int64_t r = 0; r < rows; r++) {
        float *y = buf + (size_t)r * (size_t)cols;
        q->decode_ref((const uint8_t *)t->data + (size_t)r * row_bytes, (size_t)cols, y);
        for (int64_t j = 0; j < cols; j++)
            BB_CHECK(isfinite(y[j]), BB_ERR_FORMAT,
                     "%s: tensor %s (%s) decodes to a non-finite value (%s) at row %lld, column %lld: a block's "
                     "scale field is damaged; re-export or re-download the file",
                     k->what, name, tr->name, isnan(y[j]) ? "NaN" : y[j] > 0 ? "+Inf" : "-Inf", (long long)r,
                     (long long)j);
    }
    return bb_tensor_init_memory(dst, name, BB_F32, t->ndim, t->shape, buf, n * sizeof(float));
}

/* Point dst at tensor name if the file has it (absent tensors are left for bb_model_validate
 * to report). Float types map to views, quantized types are decoded (bind_decoded). */
static bb_status bind(keys *k, const char *name, bb_tensor *dst, int *used) {
    int64_t id = bb_gguf_find_tensor(k->g, name);
    if (id < 0) return BB_OK;
    const bb_gguf_tensor *t = bb_gguf_tensor_at(k->g, id);
    const bb_ggml_type_traits *tr = bb_ggml_type_info(t->type);
    if (tr->is_quantized) {
        BB_CALL(bind_decoded(k, name, t, dst));
        dst->file_offset = (int64_t)(bb_gguf_data_offset(k->g) + t->offset);
        (*used)++;
        return BB_OK;
    }
    bb_dtype dt;
    switch (t->type) {
    case BB_GGML_F32: dt = BB_F32; break;
    case BB_GGML_F16: dt = BB_F16; break;
    case BB_GGML_BF16: dt = BB_BF16; break;
    case BB_GGML_F64: dt = BB_F64; break;
    default:
        BB_CHECK(0, BB_ERR_UNSUPPORTED, "%s: tensor %s has integer type %s; model weights must be f32, f16 or bf16",
                 k->what, name, tr->name);
    }
    BB_CALL(bb_tensor_init_memory(dst, name, dt, t->ndim, t->shape, t->data, t->nbytes));
    dst->file_offset = (int64_t)(bb_gguf_data_offset(k->g) + t->offset);
    (*used)++;
    return BB_OK;
}

static bb_status bind_layer(keys *k, bb_model *m, int l, int *used) {
    static const struct {
        const char *suffix;
        size_t field;
    } map[] = {
        {"attn_norm.weight", offsetof(bb_layer_weights, attn_norm)},
        {"attn_q.weight", offsetof(bb_layer_weights, wq)},
        {"attn_k.weight", offsetof(bb_layer_weights, wk)},
        {"attn_v.weight", offsetof(bb_layer_weights, wv)},
        {"attn_q.bias", offsetof(bb_layer_weights, bq)},
        {"attn_k.bias", offsetof(bb_layer_weights, bk)},
        {"attn_v.bias", offsetof(bb_layer_weights, bv)},
        {"attn_output.weight", offsetof(bb_layer_weights, wo)},
        {"ffn_norm.weight", offsetof(bb_layer_weights, ffn_norm)},
        {"ffn_gate.weight", offsetof(bb_layer_weights, w_gate)},
        {"ffn_up.weight", offsetof(bb_layer_weights, w_up)},
        {"ffn_down.weight", offsetof(bb_layer_weights, w_down)},
    };
    bb_layer_weights *L = &m->layers[l];
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        char name[BB_GGUF_NAME_MAX + 16];
        snprintf(name, sizeof name, "blk.%d.%s", l, map[i].suffix);
        BB_CALL(bind(k, name, (bb_tensor *)((char *)L + map[i].field), used));
    }
    if (bb_tensor_present(&L->bq) || bb_tensor_present(&L->bk) || bb_tensor_present(&L->bv)) m->cfg.attn_bias = 1;
    return BB_OK;
}

static bb_status fill_model(keys *k, bb_model *m, int rope_style) {
    bb_model_config *c = &m->cfg;
    BB_CALL(read_config(k, c));
    c->rope_style = (bb_rope_style)rope_style;
    c->attn_bias = rope_style == BB_ROPE_HALF; /* qwen2 always has q/k/v biases */
    int used = 0;
    BB_CALL(read_rope_freqs(k, c, &used));
    BB_CALL(bind(k, "token_embd.weight", &m->tok_embd, &used));
    BB_CALL(bind(k, "output_norm.weight", &m->out_norm, &used));
    BB_CALL(bind(k, "output.weight", &m->output, &used));
    if (!bb_tensor_present(&m->output)) {
        m->output = m->tok_embd;
        c->tied_embeddings = 1;
    }
    if (c->vocab_size == 0 && bb_tensor_present(&m->tok_embd)) {
        BB_CHECK(m->tok_embd.ndim == 2 && m->tok_embd.shape[0] <= (1 << 30), BB_ERR_FORMAT,
                 "%s: no vocabulary size in the metadata and token_embd.weight is not a (vocab, dim) matrix", k->what);
        c->vocab_size = (int)m->tok_embd.shape[0];
    }
    for (int l = 0; l < c->n_layers; l++) BB_CALL(bind_layer(k, m, l, &used));
    int64_t unused = bb_gguf_n_tensors(k->g) - used;
    if (unused > 0) bb_warn("%s: ignoring %lld tensors that a %s model does not use", k->what, (long long)unused, k->arch);
    return BB_OK;
}

bb_status bb_gguf_model_open_memory(const void *data, size_t size, const char *what, bb_model **out) {
    *out = NULL;
    bb_gguf *g;
    BB_CALL(bb_gguf_open_memory(data, size, what, &g));
    bb_status st = BB_OK;
    bb_model *m = NULL;
    gguf_priv *gp = NULL;
    keys k = {.g = g, .what = bb_gguf_what(g)};
    bb_gguf_str arch, gtype;
    if (bb_gguf_find_key(g, "general.type") >= 0) {
        BB_CALL_GOTO(st, fail, bb_gguf_get_str(g, "general.type", &gtype));
        BB_CHECK_GOTO(st, fail, !(gtype.len == 7 && memcmp(gtype.s, "adapter", 7) == 0), BB_ERR_UNSUPPORTED,
                      "%s is an adapter (general.type \"adapter\"), not a model: load it on top of its base model "
                      "(llama.cpp: -m BASE.gguf --lora %s)",
                      k.what, k.what);
    }
    BB_CALL_GOTO(st, fail, bb_gguf_get_str(g, "general.architecture", &arch));
    const arch_info *ai = NULL;
    for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
        if (arch.len == strlen(arches[i].name) && memcmp(arch.s, arches[i].name, arch.len) == 0) ai = &arches[i];
    BB_CHECK_GOTO(st, fail, ai, BB_ERR_UNSUPPORTED,
                  "%s: general.architecture is \"%.*s\"; supported are \"llama\" (Llama, Mistral, TinyLlama) and "
                  "\"qwen2\"",
                  k.what, (int)(arch.len > 32 ? 32 : arch.len), arch.s);
    k.arch = ai->name;
    int n_layers;
    BB_CALL_GOTO(st, fail, get_int(&k, arch_key(&k, "block_count"), 1, 0, 1, 100000, &n_layers));
    BB_CALL_GOTO(st, fail, bb_model_alloc(&m, n_layers));
    m->source = BB_SRC_GGUF;
    snprintf(m->path, sizeof m->path, "%s", k.what);
    snprintf(m->cfg.arch, sizeof m->cfg.arch, "%s", ai->name);
    BB_CALL_GOTO(st, fail, bb_calloc((void **)&gp, 1, sizeof *gp, "GGUF model state"));
    gp->g = g;
    g = NULL;
    m->priv = gp;
    m->priv_free = gguf_priv_free;
    k.own = gp;
    BB_CALL_GOTO(st, fail, fill_model(&k, m, ai->rope));
    *out = m;
    return BB_OK;
fail:
    bb_gguf_destroy(&g);
    bb_model_destroy(&m);
    return st;
}

bb_status bb_gguf_model_open(const char *path, bb_model **out) {
    *out = NULL;
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status st = bb_gguf_model_open_memory(mf.data, mf.size, path, out);
    if (st) {
        bb_file_unmap(&mf);
        return bb_trace(st, __FILE__, __LINE__, "bb_gguf_model_open_memory");
    }
    (*out)->files[0] = mf;
    (*out)->n_files = 1;
    return BB_OK;
}
