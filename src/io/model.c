/* model.c — model description: lifecycle, format dispatch, validation, summary. */
#include "io/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/synth.h"

static const char *const lin_names[BB_LIN_COUNT] = {
    [BB_LIN_Q] = "attn_q",     [BB_LIN_K] = "attn_k",   [BB_LIN_V] = "attn_v",     [BB_LIN_O] = "attn_output",
    [BB_LIN_GATE] = "ffn_gate", [BB_LIN_UP] = "ffn_up", [BB_LIN_DOWN] = "ffn_down",
};

const char *bb_linear_name(bb_linear_kind k) { return (int)k >= 0 && k < BB_LIN_COUNT ? lin_names[k] : "?"; }

bb_tensor *bb_layer_linear(bb_layer_weights *l, bb_linear_kind k) {
    switch (k) {
    case BB_LIN_Q: return &l->wq;
    case BB_LIN_K: return &l->wk;
    case BB_LIN_V: return &l->wv;
    case BB_LIN_O: return &l->wo;
    case BB_LIN_GATE: return &l->w_gate;
    case BB_LIN_UP: return &l->w_up;
    case BB_LIN_DOWN: return &l->w_down;
    default: return NULL;
    }
}

static const char *const src_names[BB_SRC_COUNT] = {
    [BB_SRC_SYNTH] = "synthetic", [BB_SRC_LLAMA2C] = "llama2.c", [BB_SRC_HF] = "huggingface", [BB_SRC_GGUF] = "gguf"};

const char *bb_model_source_name(bb_model_source s) { return (int)s >= 0 && s < BB_SRC_COUNT ? src_names[s] : "?"; }

bb_status bb_model_alloc(bb_model **out, int n_layers) {
    *out = NULL;
    BB_CHECK(n_layers >= 0 && n_layers <= 100000, BB_ERR_FORMAT, "layer count %d is out of range", n_layers);
    bb_model *m;
    BB_CALL(bb_calloc((void **)&m, 1, sizeof *m, "model description"));
    bb_status st = bb_calloc((void **)&m->layers, (size_t)(n_layers ? n_layers : 1), sizeof *m->layers, "layer table");
    if (st) {
        free(m);
        return bb_trace(st, __FILE__, __LINE__, "layer table");
    }
    m->cfg.n_layers = n_layers;
    m->cfg.bos_id = m->cfg.eos_id = -1;
    *out = m;
    return BB_OK;
}

void bb_model_destroy(bb_model **pm) {
    if (!pm || !*pm) return;
    bb_model *m = *pm;
    for (int i = 0; i < m->n_files; i++) bb_file_unmap(&m->files[i]);
    if (m->priv && m->priv_free) m->priv_free(m->priv);
    free(m->layers);
    free(m);
    *pm = NULL;
}

static int starts_with_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

bb_status bb_model_open(const char *path, bb_model **out) {
    *out = NULL;
    BB_CHECK(path && *path, BB_ERR_ARG, "no model given: pass a Hugging Face directory, a .gguf file, a llama2.c .bin "
                                        "checkpoint or synthetic:<preset>");
    if (strncmp(path, "synthetic:", 10) == 0) {
        BB_CALL(bb_synth_open(path + 10, out));
    } else if (bb_path_is_dir(path)) {
        BB_CALL(bb_hf_open(path, out));
    } else {
        BB_CHECK(bb_path_exists(path), BB_ERR_IO, "model %s does not exist", path);
        if (starts_with_gguf(path)) BB_CALL(bb_gguf_model_open(path, out));
        else BB_CALL(bb_llama2c_open(path, out));
    }
    bb_status st = bb_model_validate(*out);
    if (st) {
        bb_model_destroy(out);
        return bb_trace(st, __FILE__, __LINE__, "bb_model_validate");
    }
    return BB_OK;
}

static bb_status check_tensor(const bb_model *m, const bb_tensor *t, const char *what, int ndim, int64_t d0,
                              int64_t d1) {
    BB_CHECK(bb_tensor_present(t), BB_ERR_FORMAT, "%s: tensor %s is missing", m->path, what);
    const bb_dtype_traits *ti = bb_dtype_info(t->dtype);
    BB_CHECK(ti && ti->is_float, BB_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; only f32, f16, bf16 weights are supported",
             m->path, t->name, bb_dtype_name(t->dtype));
    int64_t want[2] = {d0, d1};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[64];
        bb_tensor_shape_str(t, got, sizeof got);
        if (ndim == 1)
            BB_CHECK(0, BB_ERR_FORMAT, "%s: tensor %s has shape %s but the config implies (%lld)", m->path, t->name, got,
                     (long long)d0);
        BB_CHECK(0, BB_ERR_FORMAT, "%s: tensor %s has shape %s but the config implies (%lld, %lld)", m->path, t->name,
                 got, (long long)d0, (long long)d1);
    }
    BB_CHECK(t->data || t->gen, BB_ERR_INTERNAL, "%s: tensor %s has no storage", m->path, t->name);
    return BB_OK;
}

bb_status bb_model_validate(const bb_model *m) {
    const bb_model_config *c = &m->cfg;
    BB_CHECK(c->dim > 0 && c->hidden_dim > 0 && c->n_layers > 0 && c->n_heads > 0 && c->n_kv_heads > 0 &&
                 c->vocab_size > 0 && c->head_dim > 0,
             BB_ERR_FORMAT,
             "%s: config has a non-positive size (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, "
             "head_dim %d, vocab %d)",
             m->path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size);
    BB_CHECK(c->n_heads % c->n_kv_heads == 0, BB_ERR_FORMAT,
             "%s: n_heads %d is not a multiple of n_kv_heads %d (grouped-query attention needs it)", m->path, c->n_heads,
             c->n_kv_heads);
    BB_CHECK(c->head_dim % 2 == 0, BB_ERR_FORMAT, "%s: head_dim %d is odd; rotary embeddings need pairs", m->path,
             c->head_dim);
    BB_CHECK(c->max_seq_len > 0, BB_ERR_FORMAT, "%s: max_seq_len %d must be positive", m->path, c->max_seq_len);
    BB_CHECK(c->norm_eps > 0 && c->norm_eps < 1, BB_ERR_FORMAT, "%s: RMSNorm epsilon %g is outside (0, 1)", m->path,
             (double)c->norm_eps);
    BB_CHECK(c->rope_theta > 0, BB_ERR_FORMAT, "%s: rope_theta %g must be positive", m->path, (double)c->rope_theta);
    BB_CHECK((int)c->rope_style >= 0 && c->rope_style < BB_ROPE_STYLE_COUNT, BB_ERR_FORMAT, "%s: bad rope style",
             m->path);
    BB_CHECK((int)c->rope_scaling >= 0 && c->rope_scaling < BB_ROPE_SCALING_COUNT, BB_ERR_FORMAT,
             "%s: bad rope scaling type", m->path);
    if (c->rope_scaling != BB_ROPE_SCALING_NONE)
        BB_CHECK(c->rope_factor > 0, BB_ERR_FORMAT, "%s: rope scaling factor %g must be positive", m->path,
                 (double)c->rope_factor);
    int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    BB_CALL(check_tensor(m, &m->tok_embd, "token_embd.weight", 2, c->vocab_size, c->dim));
    BB_CALL(check_tensor(m, &m->out_norm, "output_norm.weight", 1, c->dim, 0));
    BB_CALL(check_tensor(m, &m->output, "output.weight", 2, c->vocab_size, c->dim));
    BB_CHECK(m->layers, BB_ERR_INTERNAL, "%s: no layer table", m->path);
    for (int l = 0; l < c->n_layers; l++) {
        const bb_layer_weights *L = &m->layers[l];
        char nm[64];
#define T(field, label, nd, a, b)                                        \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, label);               \
    BB_CALL(check_tensor(m, &L->field, nm, nd, a, b))
        T(attn_norm, "attn_norm", 1, c->dim, 0);
        T(wq, "attn_q", 2, qd, c->dim);
        T(wk, "attn_k", 2, kvd, c->dim);
        T(wv, "attn_v", 2, kvd, c->dim);
        T(wo, "attn_output", 2, c->dim, qd);
        T(ffn_norm, "ffn_norm", 1, c->dim, 0);
        T(w_gate, "ffn_gate", 2, c->hidden_dim, c->dim);
        T(w_up, "ffn_up", 2, c->hidden_dim, c->dim);
        T(w_down, "ffn_down", 2, c->dim, c->hidden_dim);
#undef T
        if (c->attn_bias) {
            snprintf(nm, sizeof nm, "blk.%d.attn_q.bias", l);
            BB_CALL(check_tensor(m, &L->bq, nm, 1, qd, 0));
            snprintf(nm, sizeof nm, "blk.%d.attn_k.bias", l);
            BB_CALL(check_tensor(m, &L->bk, nm, 1, kvd, 0));
            snprintf(nm, sizeof nm, "blk.%d.attn_v.bias", l);
            BB_CALL(check_tensor(m, &L->bv, nm, 1, kvd, 0));
        }
    }
    return BB_OK;
}

bb_status bb_model_for_each_tensor(const bb_model *m, bb_tensor_visit_fn fn, void *ud) {
    BB_CALL(fn(&m->tok_embd, ud));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const bb_layer_weights *L = &m->layers[l];
        const bb_tensor *ts[] = {&L->attn_norm, &L->wq, &L->bq,       &L->wk,   &L->bk,     &L->wv,
                                 &L->bv,        &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            if (bb_tensor_present(ts[i])) BB_CALL(fn(ts[i], ud));
    }
    BB_CALL(fn(&m->out_norm, ud));
    if (!m->cfg.tied_embeddings) BB_CALL(fn(&m->output, ud));
    return BB_OK;
}

static bb_status finite_visit(const bb_tensor *t, void *ud) {
    const bb_model *m = ud;
    if (t->gen) return BB_OK;
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    int64_t block = cols > 0 && cols < (1 << 20) ? (1 << 20) / cols : 1;
    if (block < 1) block = 1;
    float *buf;
    BB_CALL(bb_malloc((void **)&buf, sizeof(float) * (size_t)(block * cols), "finiteness check"));
    bb_status st = BB_OK;
    for (int64_t r0 = 0; st == BB_OK && r0 < rows; r0 += block) {
        int64_t n = rows - r0 < block ? rows - r0 : block;
        st = bb_tensor_read_f32(t, r0, n, buf);
        for (int64_t i = 0; st == BB_OK && i < n * cols; i++)
            if (!isfinite(buf[i]))
                st = bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                              "%s: tensor %s has a non-finite value (%g) at row %lld, column %lld: the model file is "
                              "damaged",
                              m->path, t->name, (double)buf[i], (long long)(r0 + i / cols), (long long)(i % cols));
    }
    free(buf);
    return st;
}

bb_status bb_model_check_finite(const bb_model *m) {
    BB_CALL(bb_model_for_each_tensor(m, finite_visit, (void *)m));
    return BB_OK;
}

bb_status bb_model_check_finite_part(const bb_model *m, int l0, int l1, int embedding, int head) {
    if (embedding) BB_CALL(finite_visit(&m->tok_embd, (void *)m));
    for (int l = l0 < 0 ? 0 : l0; l < l1 && l < m->cfg.n_layers; l++) {
        const bb_layer_weights *L = &m->layers[l];
        const bb_tensor *ts[] = {&L->attn_norm, &L->wq, &L->bq,       &L->wk,   &L->bk,     &L->wv,
                                 &L->bv,        &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
            if (bb_tensor_present(ts[i])) BB_CALL(finite_visit(ts[i], (void *)m));
    }
    if (head) {
        BB_CALL(finite_visit(&m->out_norm, (void *)m));
        if (!m->cfg.tied_embeddings) BB_CALL(finite_visit(&m->output, (void *)m));
    }
    return BB_OK;
}

static bb_status count_visit(const bb_tensor *t, void *ud) {
    *(int64_t *)ud += bb_tensor_numel(t);
    return BB_OK;
}

int64_t bb_model_param_count(const bb_model *m) {
    int64_t n = 0;
    bb_model_for_each_tensor(m, count_visit, &n);
    return n;
}

static bb_status print_visit(const bb_tensor *t, void *ud) {
    char shp[64];
    bb_tensor_shape_str(t, shp, sizeof shp);
    fprintf((FILE *)ud, "  %-32s %-16s %-5s %12lld\n", t->name, shp, bb_dtype_name(t->dtype),
            (long long)bb_tensor_numel(t));
    return BB_OK;
}

static const char *rope_style_name(bb_rope_style s) { return s == BB_ROPE_HALF ? "half (HF rotate_half)" : "interleaved"; }

void bb_model_print(const bb_model *m, int tensors, FILE *f) {
    const bb_model_config *c = &m->cfg;
    int64_t n = bb_model_param_count(m);
    int64_t lin = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) lin += bb_tensor_numel(bb_layer_linear(&m->layers[l], (bb_linear_kind)k));
    fprintf(f, "model        %s (%s)\n", m->path, bb_model_source_name(m->source));
    fprintf(f, "architecture %s: dim %d, hidden %d, layers %d, heads %d, kv heads %d, head dim %d, vocab %d, context %d\n",
            c->arch, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size,
            c->max_seq_len);
    fprintf(f, "rope         theta %g, %s", (double)c->rope_theta, rope_style_name(c->rope_style));
    if (c->rope_scaling == BB_ROPE_SCALING_LINEAR) fprintf(f, ", linear scaling x%g", (double)c->rope_factor);
    if (c->rope_scaling == BB_ROPE_SCALING_LLAMA3)
        fprintf(f, ", llama3 scaling x%g (low %g, high %g, original context %d)", (double)c->rope_factor,
                (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor, c->rope_orig_max_pos);
    fprintf(f, "\nnorm eps     %g; %s classifier%s\n", (double)c->norm_eps, c->tied_embeddings ? "tied" : "separate",
            c->attn_bias ? "; q/k/v bias" : "");
    fprintf(f, "parameters   %lld total, %lld in linear layers (%.1f%%)\n", (long long)n, (long long)lin,
            n ? 100.0 * (double)lin / (double)n : 0.0);
    if (m->tokenizer_path[0]) fprintf(f, "tokenizer    %s\n", m->tokenizer_path);
    if (tensors) {
        fprintf(f, "tensors:\n  %-32s %-16s %-5s %12s\n", "name", "shape", "dtype", "params");
        bb_model_for_each_tensor(m, print_visit, f);
    }
}
