/* export.c — GGUF v3 export for llama.cpp: architecture keys, vocabulary, and per-tensor types. */
#include "pipeline/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/finite.h"
#include "core/log.h"
#include "core/parallel.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/qformat.h"
#include "io/tokenizer.h"

/* llama.cpp's llama_token_type */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

void bb_export_opts_default(bb_export_opts *o) {
    memset(o, 0, sizeof *o);
    o->output_type = BB_GGML_Q8_0;
}

int64_t bb_export_rope_row(int64_t row, int head_dim) {
    int64_t h = row / head_dim, r = row % head_dim, half = head_dim / 2;
    return h * head_dim + 2 * (r % half) + r / half;
}

/* Buffers the writer streams from: freed after the file is written. */
typedef struct {
    void **p;
    int n, cap;
} owned;

static bb_status own(owned *o, void *p) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        void **np = realloc(o->p, (size_t)cap * sizeof *np);
        if (!np) {
            free(p);
            BB_CHECK(0, BB_ERR_OOM, "out of memory: export buffer table (%d entries)", cap);
        }
        o->p = np;
        o->cap = cap;
    }
    o->p[o->n++] = p;
    return BB_OK;
}

static void owned_free(owned *o) {
    for (int i = 0; i < o->n; i++) free(o->p[i]);
    free(o->p);
}

/* Rows [r0, r1) of a float matrix encoded into a block format (values checked finite before). */
typedef struct {
    bb_qformat_encode_fn enc;
    const float *x;
    int64_t cols, r0, r1;
    size_t row_bytes;
    uint8_t *dst;
} encode_job;

static void *encode_rows(void *arg) {
    const encode_job *j = arg;
    for (int64_t i = j->r0; i < j->r1; i++)
        j->enc(j->x + i * j->cols, NULL, (size_t)j->cols, j->dst + (size_t)i * j->row_bytes);
    return NULL;
}

/* A float tensor of the model as F32 (or, for `type` other than F32, encoded row by row over the threads). */
static bb_status add_float(bb_gguf_writer *w, owned *ow, const bb_tensor *t, int type) {
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    float *x;
    BB_CALL(bb_malloc((void **)&x, sizeof(float) * (size_t)(rows * cols), t->name));
    BB_CALL(own(ow, x));
    BB_CALL(bb_tensor_read_f32(t, 0, rows, x));
    int64_t shape[2] = {rows, cols};
    int ndim = t->ndim == 1 ? 1 : 2;
    const int64_t *sh = ndim == 1 ? &shape[1] : shape;
    if (type == BB_GGML_F32)
        return bb_gguf_writer_add_tensor(w, t->name, BB_GGML_F32, ndim, sh, x, sizeof(float) * (size_t)(rows * cols));
    size_t rb;
    BB_CALL(bb_qformat_row_bytes(type, cols, &rb));
    uint8_t *b;
    BB_CALL(bb_malloc((void **)&b, rb * (size_t)rows, t->name));
    BB_CALL(own(ow, b));
    /* The encoders search each block's scale (about 160 ns a value on one thread: a Llama-2-70B classifier,
     * 262 M values, would take 40 s on rank 0), so the rows go over the process's threads; rows are
     * independent, so the bytes are the same for any thread count. */
    int64_t bad = bb_first_nonfinite(x, rows * cols);
    BB_CHECK(bad < 0, BB_ERR_NUMERIC, "%s: %g at row %lld, column %lld: %s needs finite values; the model's weights are "
             "damaged (check the file, or `birdbone hash` it against a good copy)", t->name,
             bad < 0 ? 0.0 : (double)x[bad], (long long)(bad < 0 ? 0 : bad / cols), (long long)(bad < 0 ? 0 : bad % cols),
             bb_ggml_type_name(type));
    encode_job jobs[BB_PARALLEL_MAX];
    int nt = bb_parallel_threads(0, rows, 8);
    for (int k = 0; k < nt; k++)
        jobs[k] = (encode_job){bb_qformat_info(type)->encode_ref, x, cols, rows * k / nt, rows * (k + 1) / nt, rb, b};
    bb_parallel_run(encode_rows, jobs, sizeof jobs[0], nt);
    return bb_gguf_writer_add_tensor(w, t->name, type, ndim, sh, b, rb * (size_t)rows);
}

/* Rows of data (rows, row_bytes) permuted to llama.cpp's rotary order when the model rotates halves. */
static bb_status rope_rows(owned *ow, const bb_model *m, bb_linear_kind k, int64_t rows, size_t row_bytes,
                           const void *data, const void **out) {
    *out = data;
    if (m->cfg.rope_style != BB_ROPE_HALF || (k != BB_LIN_Q && k != BB_LIN_K)) return BB_OK;
    uint8_t *p;
    BB_CALL(bb_malloc((void **)&p, row_bytes * (size_t)rows, "rope-permuted rows"));
    BB_CALL(own(ow, p));
    for (int64_t r = 0; r < rows; r++)
        memcpy(p + (size_t)bb_export_rope_row(r, m->cfg.head_dim) * row_bytes,
               (const uint8_t *)data + (size_t)r * row_bytes, row_bytes);
    *out = p;
    return BB_OK;
}

static bb_status add_linear(bb_gguf_writer *w, owned *ow, const bb_model *base, const bb_model *cur,
                            const bb_quantized *q, int l, bb_linear_kind k) {
    const bb_tensor *t = bb_layer_linear(&cur->layers[l], k);
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), shape[2] = {rows, cols};
    const void *data;
    if (q) {
        const bb_quant_result *res = q->q[l * BB_LIN_COUNT + k];
        BB_CHECK(res && res->rows == rows && res->cols == cols, BB_ERR_INTERNAL, "%s: quantized shape differs",
                 t->name);
        BB_CALL(rope_rows(ow, base, k, rows, res->row_bytes, res->blocks, &data));
        return bb_gguf_writer_add_tensor(w, t->name, res->type, 2, shape, data, res->row_bytes * (size_t)rows);
    }
    float *x;
    size_t rb = sizeof(float) * (size_t)cols;
    BB_CALL(bb_malloc((void **)&x, rb * (size_t)rows, t->name));
    BB_CALL(own(ow, x));
    BB_CALL(bb_tensor_read_f32(t, 0, rows, x));
    BB_CALL(rope_rows(ow, base, k, rows, rb, x, &data));
    return bb_gguf_writer_add_tensor(w, t->name, BB_GGML_F32, 2, shape, data, rb * (size_t)rows);
}

static bb_status add_arch(bb_gguf_writer *w, const bb_model *m, const bb_quantized *q, const bb_export_opts *o) {
    const bb_model_config *c = &m->cfg;
    BB_CHECK(!c->attn_bias, BB_ERR_UNSUPPORTED,
             "%s: q/k/v biases (%s) have no place in the llama architecture; export supports llama-style models",
             m->path, c->arch);
    BB_CHECK(c->rope_scaling != BB_ROPE_SCALING_LLAMA3, BB_ERR_UNSUPPORTED,
             "%s: Llama-3 rope scaling is not exported yet (it needs rope_freqs.weight)", m->path);
    BB_CALL(bb_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    const char *name = o->name;
    if (!name) {
        const char *s = strrchr(m->path, '/');
        name = s && s[1] ? s + 1 : m->path;
    }
    BB_CALL(bb_gguf_writer_add_str(w, "general.name", name, strlen(name)));
    int ft = bb_quantize_file_type(q ? q->dominant : BB_GGML_F32);
    BB_CALL(bb_gguf_writer_add_u32(w, "general.file_type", (uint32_t)(ft < 0 ? 0 : ft)));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->max_seq_len));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->dim));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->n_layers));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads));
    BB_CALL(bb_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps));
    BB_CALL(bb_gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_theta));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim));
    if (c->head_dim * c->n_heads != c->dim)
        BB_CALL(bb_gguf_writer_add_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim));
    if (c->head_dim * c->n_heads != c->dim)
        BB_CALL(bb_gguf_writer_add_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim));
    BB_CALL(bb_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    if (c->rope_scaling == BB_ROPE_SCALING_LINEAR) {
        BB_CALL(bb_gguf_writer_add_str(w, "llama.rope.scaling.type", "linear", 6));
        BB_CALL(bb_gguf_writer_add_f32(w, "llama.rope.scaling.factor", c->rope_factor));
    }
    return BB_OK;
}

static int parse_byte_piece(const char *s, size_t len) {
    unsigned v;
    char tail;
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    char hex[3] = {s[3], s[4], 0};
    return sscanf(hex, "%2x%c", &v, &tail) == 1;
}

/* A llama2.c vocabulary in the form convert-llama2c-to-ggml writes. */
static bb_status add_vocab_llama(bb_gguf_writer *w, owned *ow, const bb_tokenizer *tok) {
    int n = bb_tokenizer_vocab_size(tok), bos = bb_tokenizer_bos_id(tok), eos = bb_tokenizer_eos_id(tok);
    char **strs;
    size_t *lens;
    float *scores;
    int32_t *types;
    BB_CALL(bb_calloc((void **)&strs, (size_t)n, sizeof *strs, "token texts"));
    BB_CALL(own(ow, strs));
    BB_CALL(bb_calloc((void **)&lens, (size_t)n, sizeof *lens, "token lengths"));
    BB_CALL(own(ow, lens));
    BB_CALL(bb_calloc((void **)&scores, (size_t)n, sizeof *scores, "token scores"));
    BB_CALL(own(ow, scores));
    BB_CALL(bb_calloc((void **)&types, (size_t)n, sizeof *types, "token types"));
    BB_CALL(own(ow, types));
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = bb_tokenizer_piece(tok, i, &len);
        const char *fixed = NULL;
        types[i] = TT_NORMAL;
        if (i == 0) {
            fixed = "<unk>";
            types[i] = TT_UNKNOWN;
        } else if (i == bos) {
            fixed = "<s>";
            types[i] = TT_CONTROL;
        } else if (i == eos) {
            fixed = "</s>";
            types[i] = TT_CONTROL;
        } else if (len == 0) {
            types[i] = TT_CONTROL;
        } else if (parse_byte_piece(p, len)) {
            types[i] = TT_BYTE;
        }
        scores[i] = bb_tokenizer_score(tok, i);
        if (fixed) {
            p = fixed;
            len = strlen(fixed);
        }
        /* SentencePiece writes a space as U+2581 (3 bytes) */
        size_t spaces = 0;
        for (size_t j = 0; j < len; j++) spaces += p[j] == ' ';
        char *s;
        BB_CALL(bb_malloc((void **)&s, len + 2 * spaces + 1, "token text"));
        BB_CALL(own(ow, s));
        size_t o = 0;
        for (size_t j = 0; j < len; j++) {
            if (p[j] == ' ') {
                memcpy(s + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                s[o++] = p[j];
            }
        }
        s[o] = 0;
        strs[i] = s;
        lens[i] = o;
    }
    BB_CALL(bb_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5));
    BB_CALL(bb_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, lens, (uint64_t)n));
    BB_CALL(bb_gguf_writer_add_arr(w, "tokenizer.ggml.scores", BB_GGUF_FLOAT32, scores, (uint64_t)n));
    BB_CALL(bb_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", BB_GGUF_INT32, types, (uint64_t)n));
    BB_CALL(bb_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0));
    if (bos >= 0) BB_CALL(bb_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos));
    if (eos >= 0) BB_CALL(bb_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
    BB_CALL(bb_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1));
    BB_CALL(bb_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0));
    return BB_OK;
}

/* A copy of s[0, len) kept until the file is written. */
static bb_status keep_str(owned *ow, const char *s, size_t len, char **out) {
    char *c;
    BB_CALL(bb_malloc((void **)&c, len + 1, "token text"));
    BB_CALL(own(ow, c));
    memcpy(c, s, len);
    c[len] = 0;
    *out = c;
    return BB_OK;
}

/* llama.cpp's tokenizer.ggml.pre for a byte-level pre-tokenizer, told by its Split regex: Llama 3 splits digits in
 * runs of up to 3, Qwen2 one by one; a bare ByteLevel pre-tokenizer is GPT-2's. */
static const char *pre_name(const bb_json *pre) {
    const char *type = bb_json_str(bb_json_get(pre, "type"), NULL);
    if (type && !strcmp(type, "Sequence")) {
        const bb_json *seq = bb_json_get(pre, "pretokenizers");
        for (size_t i = 0; i < bb_json_len(seq); i++) {
            const char *name = pre_name(bb_json_at(seq, i));
            if (strcmp(name, "gpt-2") != 0) return name;
        }
        return "gpt-2";
    }
    const char *re =
        type && !strcmp(type, "Split") ? bb_json_str(bb_json_get(bb_json_get(pre, "pattern"), "Regex"), NULL) : NULL;
    if (re && strstr(re, "\\p{N}{1,3}")) return "llama-bpe";
    if (re && !strncmp(re, "(?i:'s", 6)) return "qwen2";
    return "gpt-2";
}

/* tokenizer.json (model type BPE): with byte_fallback the SentencePiece form ("llama": pieces as they are, with
 * U+2581; <0xAB> BYTE; score -id, so earlier pieces, which SentencePiece BPE creates by earlier merges, merge
 * first), else the byte-level form ("gpt2": pieces as they are, the merges as "a b"). Added tokens are CONTROL
 * when special, USER_DEFINED otherwise; ids the file does not name are "[PAD<id>]" (UNUSED), as llama.cpp's
 * convert_hf_to_gguf pads. Other model types (Unigram, WordPiece) write nothing: *written = 0. */
static bb_status add_vocab_hf(bb_gguf_writer *w, owned *ow, const bb_model *m, const bb_tokenizer *tok,
                              const char *path, int *written) {
    char *text = NULL;
    size_t len = 0;
    bb_json_doc *doc = NULL;
    BB_CALL(bb_file_read_all(path, (size_t)1 << 31, &text, &len));
    bb_status st = bb_json_parse(text, len, path, &doc);
    free(text);
    BB_CALL(st);
    const bb_json *root = bb_json_root(doc), *model = bb_json_get(root, "model");
    const bb_json *vocab = bb_json_get(model, "vocab"), *merges = bb_json_get(model, "merges");
    const bb_json *added = bb_json_get(root, "added_tokens");
    const char *type = bb_json_str(bb_json_get(model, "type"), NULL);
    int n = m->cfg.vocab_size, spm = bb_json_bool(bb_json_get(model, "byte_fallback")) == 1;
    char **strs = NULL;
    size_t *lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    *written = type && !strcmp(type, "BPE") && bb_json_type(vocab) == BB_JSON_OBJECT;
    if (!*written) {
        bb_warn("export: %s: model.type %s: only BPE vocabularies are written to GGUF; the GGUF gets "
                "tokenizer.ggml.model \"no_vocab\"",
                path, type ? type : "missing");
        goto out;
    }
    BB_CALL_GOTO(st, out, bb_calloc((void **)&strs, (size_t)n, sizeof *strs, "token texts"));
    BB_CALL_GOTO(st, out, own(ow, strs));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&lens, (size_t)n, sizeof *lens, "token lengths"));
    BB_CALL_GOTO(st, out, own(ow, lens));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&scores, (size_t)n, sizeof *scores, "token scores"));
    BB_CALL_GOTO(st, out, own(ow, scores));
    BB_CALL_GOTO(st, out, bb_calloc((void **)&types, (size_t)n, sizeof *types, "token types"));
    BB_CALL_GOTO(st, out, own(ow, types));
    for (size_t i = 0; i < bb_json_len(vocab); i++) {
        size_t kl;
        const char *k = bb_json_key_at(vocab, i, &kl);
        int64_t id;
        BB_CALL_GOTO(st, out, bb_json_int64(bb_json_at(vocab, i), &id));
        if (id < 0 || id >= n) continue;
        BB_CALL_GOTO(st, out, keep_str(ow, k, kl, &strs[id]));
        lens[id] = kl;
        types[id] = spm && parse_byte_piece(k, kl) ? TT_BYTE : TT_NORMAL;
        scores[id] = spm ? -(float)id : 0;
    }
    for (size_t i = 0; i < bb_json_len(added); i++) {
        const bb_json *a = bb_json_at(added, i);
        size_t cl;
        const char *c = bb_json_str(bb_json_get(a, "content"), &cl);
        int64_t id;
        if (!c || bb_json_int64(bb_json_get(a, "id"), &id) != BB_OK || id < 0 || id >= n) continue;
        BB_CALL_GOTO(st, out, keep_str(ow, c, cl, &strs[id]));
        lens[id] = cl;
        types[id] = bb_json_bool(bb_json_get(a, "special")) == 1 ? TT_CONTROL : TT_USER_DEFINED;
        scores[id] = 0;
    }
    for (int id = 0; id < n; id++)
        if (!strs[id]) {
            char pad[32];
            int pl = snprintf(pad, sizeof pad, "[PAD%d]", id);
            BB_CALL_GOTO(st, out, keep_str(ow, pad, (size_t)pl, &strs[id]));
            lens[id] = (size_t)pl;
            types[id] = TT_UNUSED;
        }
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2", spm ? 5 : 4));
    if (!spm) {
        const char *pre = pre_name(bb_json_get(root, "pre_tokenizer"));
        BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre, strlen(pre)));
    }
    BB_CALL_GOTO(st, out,
                 bb_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, lens, (uint64_t)n));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", BB_GGUF_INT32, types, (uint64_t)n));
    if (spm)
        BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "tokenizer.ggml.scores", BB_GGUF_FLOAT32, scores, (uint64_t)n));
    if (!spm && bb_json_len(merges)) {
        size_t nm = bb_json_len(merges);
        char **ms;
        BB_CALL_GOTO(st, out, bb_calloc((void **)&ms, nm, sizeof *ms, "merges"));
        BB_CALL_GOTO(st, out, own(ow, ms));
        for (size_t i = 0; i < nm; i++) {
            const bb_json *e = bb_json_at(merges, i);
            size_t al = 0, bl = 0;
            const char *a = bb_json_str(e, &al), *b = NULL;
            if (!a) {
                /* the newer form: ["a", "b"] */
                a = bb_json_str(bb_json_at(e, 0), &al);
                b = bb_json_str(bb_json_at(e, 1), &bl);
                BB_CHECK_GOTO(st, out, a && b, BB_ERR_FORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]",
                              path, i);
            }
            BB_CALL_GOTO(st, out, bb_malloc((void **)&ms[i], al + bl + 2, "merge"));
            BB_CALL_GOTO(st, out, own(ow, ms[i]));
            memcpy(ms[i], a, al);
            ms[i][al] = 0;
            if (b) {
                ms[i][al] = ' ';
                memcpy(ms[i] + al + 1, b, bl);
                ms[i][al + 1 + bl] = 0;
            }
        }
        BB_CALL_GOTO(st, out,
                     bb_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nm));
    }
    int bos = bb_tokenizer_bos_id(tok), eos = bb_tokenizer_eos_id(tok);
    if (bos >= 0) BB_CALL_GOTO(st, out, bb_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos));
    if (eos >= 0) BB_CALL_GOTO(st, out, bb_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
    /* whether the post-processor puts BOS first: encode nothing and look */
    int *ids = NULL, nid = 0;
    BB_CALL_GOTO(st, out, bb_tokenizer_encode(tok, "", 1, 0, &ids, &nid));
    int add_bos = nid > 0 && bos >= 0 && ids[0] == bos;
    free(ids);
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", add_bos));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", 0));
out:
    bb_json_doc_destroy(&doc);
    return st;
}

static bb_status add_vocab(bb_gguf_writer *w, owned *ow, const bb_model *m, const bb_export_opts *o) {
    const bb_gguf *g = bb_gguf_of_model(m);
    if (g && !o->tokenizer && bb_gguf_find_key(g, "tokenizer.ggml.model") >= 0) {
        for (int64_t i = 0; i < bb_gguf_n_kv(g); i++)
            if (!strncmp(bb_gguf_key_name(g, i), "tokenizer.", 10)) BB_CALL(bb_gguf_writer_copy_kv(w, g, i));
        return BB_OK;
    }
    bb_tokenizer *tok = NULL;
    int quiet = bb_error_set_quiet(1);
    bb_status st = bb_tokenizer_open_for_model(m, o->tokenizer, &tok);
    bb_error_set_quiet(quiet);
    if (st == BB_OK && !strcmp(bb_tokenizer_kind_name(tok), "llama2.c")) {
        st = add_vocab_llama(w, ow, tok);
        bb_tokenizer_destroy(&tok);
        return st;
    }
    if (st != BB_OK && o->tokenizer)
        return bb_trace(st, __FILE__, __LINE__, "bb_tokenizer_open_for_model(m, o->tokenizer, &tok)");
    if (st == BB_OK && !strcmp(bb_tokenizer_kind_name(tok), "tokenizer.json")) {
        const char *path = o->tokenizer ? o->tokenizer : m->tokenizer_path;
        int written = 0;
        st = add_vocab_hf(w, ow, m, tok, path, &written);
        bb_tokenizer_destroy(&tok);
        BB_CALL(st);
        return written ? BB_OK : bb_gguf_writer_add_str(w, "tokenizer.ggml.model", "no_vocab", 8);
    }
    bb_warn("export: %s: %s; the GGUF gets tokenizer.ggml.model \"no_vocab\" (llama.cpp loads it but cannot "
            "tokenize text)",
            m->path, st == BB_OK ? "this tokenizer kind is not written to GGUF" : "no tokenizer found");
    bb_tokenizer_destroy(&tok);
    return bb_gguf_writer_add_str(w, "tokenizer.ggml.model", "no_vocab", 8);
}

bb_status bb_export_gguf(const bb_model *base, const bb_model *cur, const bb_quantized *q, const bb_export_opts *o,
                         const char *path) {
    BB_CHECK(base && cur && o && path, BB_ERR_ARG, "bb_export_gguf: NULL argument");
    BB_CHECK(!q || q->n_layers == base->cfg.n_layers, BB_ERR_ARG, "bb_export_gguf: %d quantized layers, model has %d",
             q ? q->n_layers : 0, base->cfg.n_layers);
    bb_gguf_writer *w = NULL;
    owned ow = {0};
    bb_status st;
    BB_CALL_GOTO(st, out, bb_gguf_writer_create(&w));
    BB_CALL_GOTO(st, out, add_arch(w, base, q, o));
    BB_CALL_GOTO(st, out, add_vocab(w, &ow, base, o));
    BB_CALL_GOTO(st, out, add_float(w, &ow, &base->tok_embd, BB_GGML_F32));
    BB_CALL_GOTO(st, out, add_float(w, &ow, &base->out_norm, BB_GGML_F32));
    if (!base->cfg.tied_embeddings) {
        int type = BB_GGML_F32;
        if (q) {
            type = bb_qformat_fallback(o->output_type, bb_tensor_cols(&base->output));
            if (type != o->output_type)
                bb_warn("%s: rows of %lld fit no %s block: stored as %s", base->output.name,
                        (long long)bb_tensor_cols(&base->output), bb_ggml_type_name(o->output_type),
                        bb_ggml_type_name(type));
        }
        BB_CALL_GOTO(st, out, add_float(w, &ow, &base->output, type));
    }
    for (int l = 0; l < base->cfg.n_layers; l++) {
        BB_CALL_GOTO(st, out, add_float(w, &ow, &base->layers[l].attn_norm, BB_GGML_F32));
        BB_CALL_GOTO(st, out, add_float(w, &ow, &base->layers[l].ffn_norm, BB_GGML_F32));
        for (int k = 0; k < BB_LIN_COUNT; k++)
            BB_CALL_GOTO(st, out, add_linear(w, &ow, base, cur, q, l, (bb_linear_kind)k));
    }
    BB_CALL_GOTO(st, out, bb_gguf_writer_write(w, path));
out:
    bb_gguf_writer_destroy(&w);
    owned_free(&ow);
    return st;
}
