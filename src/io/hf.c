/* hf.c — Hugging Face directory reader: config.json, (sharded) safetensors weights, tensor name mapping. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/json.h"
#include "io/model.h"
#include "io/safetensors.h"

#define CONFIG_MAX_BYTES ((size_t)16 << 20)
#define INDEX_MAX_BYTES ((size_t)64 << 20)

/* ---- config.json ---------------------------------------------------------- */

static const struct {
    const char *model_type;
    const char *architecture;
    int qkv_bias; /* the architecture always has q/k/v biases */
} hf_archs[] = {
    {"llama", "LlamaForCausalLM", 0},
    {"mistral", "MistralForCausalLM", 0},
    {"qwen2", "Qwen2ForCausalLM", 1},
};
#define N_ARCHS (sizeof hf_archs / sizeof hf_archs[0])

/* Messages name the file, the key (with `scope`, e.g. "rope_scaling.") and
 * where the value is. */
typedef struct {
    const char *path;
    const bb_json *obj;
    const char *scope;
} cfg_ctx;

static const bb_json *cfg_value(const cfg_ctx *c, const char *key) {
    const bb_json *v = bb_json_get(c->obj, key);
    return bb_json_type(v) == BB_JSON_NULL ? NULL : v; /* null means "use the default" in HF configs */
}

/* An integer in [lo, hi]; when absent, def if !required, else an error. */
static bb_status cfg_int(const cfg_ctx *c, const char *key, int required, int64_t def, int64_t lo, int64_t hi,
                         int *out) {
    const bb_json *v = cfg_value(c, key);
    if (!v) {
        BB_CHECK(!required, BB_ERR_FORMAT, "%s: required key \"%s%s\" is missing (expected an integer)", c->path,
                 c->scope, key);
        *out = (int)def;
        return BB_OK;
    }
    BB_CHECK(bb_json_is_int(v), BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %s, expected an integer", c->path,
             bb_json_line(v), bb_json_col(v), c->scope, key,
             bb_json_type(v) == BB_JSON_NUMBER ? "a number with a fraction" : bb_json_type_name(bb_json_type(v)));
    int64_t x;
    BB_CALL(bb_json_int64(v, &x));
    BB_CHECK(x >= lo && x <= hi, BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %lld, expected an integer in [%lld, %lld]",
             c->path, bb_json_line(v), bb_json_col(v), c->scope, key, (long long)x, (long long)lo, (long long)hi);
    *out = (int)x;
    return BB_OK;
}

/* A positive number; when absent, def if !required, else an error. */
static bb_status cfg_pos_num(const cfg_ctx *c, const char *key, int required, double def, float *out) {
    const bb_json *v = cfg_value(c, key);
    if (!v) {
        BB_CHECK(!required, BB_ERR_FORMAT, "%s: required key \"%s%s\" is missing (expected a number)", c->path,
                 c->scope, key);
        *out = (float)def;
        return BB_OK;
    }
    BB_CHECK(bb_json_type(v) == BB_JSON_NUMBER, BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %s, expected a number",
             c->path, bb_json_line(v), bb_json_col(v), c->scope, key, bb_json_type_name(bb_json_type(v)));
    double x = bb_json_num(v);
    BB_CHECK(x > 0, BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %g, expected a positive number", c->path, bb_json_line(v),
             bb_json_col(v), c->scope, key, x);
    *out = (float)x;
    return BB_OK;
}

static bb_status cfg_bool(const cfg_ctx *c, const char *key, int def, int *out) {
    const bb_json *v = cfg_value(c, key);
    *out = def;
    if (!v) return BB_OK;
    BB_CHECK(bb_json_type(v) == BB_JSON_BOOL, BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %s, expected true or false",
             c->path, bb_json_line(v), bb_json_col(v), c->scope, key, bb_json_type_name(bb_json_type(v)));
    *out = bb_json_bool(v);
    return BB_OK;
}

/* A string, or NULL when absent. */
static bb_status cfg_str(const cfg_ctx *c, const char *key, const char **out) {
    const bb_json *v = cfg_value(c, key);
    *out = NULL;
    if (!v) return BB_OK;
    BB_CHECK(bb_json_type(v) == BB_JSON_STRING, BB_ERR_FORMAT, "%s:%u:%u: key \"%s%s\" is %s, expected a string",
             c->path, bb_json_line(v), bb_json_col(v), c->scope, key, bb_json_type_name(bb_json_type(v)));
    *out = bb_json_str(v, NULL);
    return BB_OK;
}

/* A token id: an integer, or a list of them (the first is taken), or absent (-1). */
static bb_status cfg_token_id(const cfg_ctx *c, const char *key, int *out) {
    const bb_json *v = cfg_value(c, key);
    *out = -1;
    if (bb_json_type(v) == BB_JSON_ARRAY) {
        if (bb_json_len(v) == 0) return BB_OK;
        BB_CHECK(bb_json_is_int(bb_json_at(v, 0)), BB_ERR_FORMAT,
                 "%s:%u:%u: key \"%s%s\" is a list whose first entry is %s, expected integer token ids", c->path,
                 bb_json_line(v), bb_json_col(v), c->scope, key, bb_json_type_name(bb_json_type(bb_json_at(v, 0))));
        int64_t x;
        BB_CALL(bb_json_int64(bb_json_at(v, 0), &x));
        BB_CHECK(x >= 0 && x <= INT32_MAX, BB_ERR_FORMAT, "%s: key \"%s%s\" has token id %lld, expected 0..%d", c->path,
                 c->scope, key, (long long)x, INT32_MAX);
        *out = (int)x;
        return BB_OK;
    }
    return cfg_int(c, key, 0, -1, 0, INT32_MAX, out);
}

static bb_status read_rope_scaling(const cfg_ctx *c, bb_model_config *cfg) {
    const bb_json *rs = cfg_value(c, "rope_scaling");
    cfg->rope_scaling = BB_ROPE_SCALING_NONE;
    if (!rs) return BB_OK;
    BB_CHECK(bb_json_type(rs) == BB_JSON_OBJECT, BB_ERR_FORMAT,
             "%s:%u:%u: key \"rope_scaling\" is %s, expected an object or null", c->path, bb_json_line(rs),
             bb_json_col(rs), bb_json_type_name(bb_json_type(rs)));
    cfg_ctx sc = {c->path, rs, "rope_scaling."};
    const char *type;
    BB_CALL(cfg_str(&sc, "rope_type", &type));
    if (!type) BB_CALL(cfg_str(&sc, "type", &type));
    BB_CHECK(type, BB_ERR_FORMAT, "%s: key \"rope_scaling\" has neither \"rope_type\" nor \"type\" (expected a string)",
             c->path);
    if (strcmp(type, "default") == 0) return BB_OK;
    if (strcmp(type, "linear") == 0) {
        cfg->rope_scaling = BB_ROPE_SCALING_LINEAR;
        BB_CALL(cfg_pos_num(&sc, "factor", 1, 0, &cfg->rope_factor));
        return BB_OK;
    }
    BB_CHECK(strcmp(type, "llama3") == 0, BB_ERR_UNSUPPORTED,
             "%s: rope_scaling type \"%.32s\" is not supported (linear, llama3 and default are)", c->path, type);
    cfg->rope_scaling = BB_ROPE_SCALING_LLAMA3;
    BB_CALL(cfg_pos_num(&sc, "factor", 1, 0, &cfg->rope_factor));
    BB_CALL(cfg_pos_num(&sc, "low_freq_factor", 1, 0, &cfg->rope_low_freq_factor));
    BB_CALL(cfg_pos_num(&sc, "high_freq_factor", 1, 0, &cfg->rope_high_freq_factor));
    BB_CALL(cfg_int(&sc, "original_max_position_embeddings", 1, 0, 1, INT32_MAX, &cfg->rope_orig_max_pos));
    BB_CHECK(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor, BB_ERR_FORMAT,
             "%s: rope_scaling.high_freq_factor %g must exceed low_freq_factor %g", c->path,
             (double)cfg->rope_high_freq_factor, (double)cfg->rope_low_freq_factor);
    return BB_OK;
}

static bb_status read_arch(const cfg_ctx *c, bb_model_config *cfg) {
    const char *mt;
    BB_CALL(cfg_str(c, "model_type", &mt));
    int found = -1;
    for (size_t i = 0; mt && i < N_ARCHS; i++)
        if (strcmp(mt, hf_archs[i].model_type) == 0) found = (int)i;
    const bb_json *archs = cfg_value(c, "architectures");
    for (size_t k = 0; found < 0 && k < bb_json_len(archs); k++) {
        const char *a = bb_json_str(bb_json_at(archs, k), NULL);
        for (size_t i = 0; a && i < N_ARCHS; i++)
            if (strcmp(a, hf_archs[i].architecture) == 0) found = (int)i;
    }
    if (found < 0) {
        const char *a0 = bb_json_str(bb_json_at(archs, 0), NULL);
        BB_CHECK(0, BB_ERR_UNSUPPORTED,
                 "%s: model_type \"%.40s\" (architectures [\"%.40s\"]) is not supported; expected model_type llama, "
                 "mistral or qwen2 (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                 c->path, mt ? mt : "(none)", a0 ? a0 : "");
    }
    snprintf(cfg->arch, sizeof cfg->arch, "%s", hf_archs[found].model_type);
    cfg->attn_bias = hf_archs[found].qkv_bias;
    return BB_OK;
}

static bb_status fill_config(const char *path, const bb_json *root, bb_model_config *cfg) {
    BB_CHECK(bb_json_type(root) == BB_JSON_OBJECT, BB_ERR_FORMAT, "%s: top level is %s, expected an object", path,
             bb_json_type_name(bb_json_type(root)));
    cfg_ctx c = {path, root, ""};
    BB_CALL(read_arch(&c, cfg));
    const char *act;
    BB_CALL(cfg_str(&c, "hidden_act", &act));
    BB_CHECK(!act || strcmp(act, "silu") == 0, BB_ERR_UNSUPPORTED,
             "%s: hidden_act \"%.32s\" is not supported (Llama-family models use silu)", path, act);
    BB_CALL(cfg_int(&c, "hidden_size", 1, 0, 1, INT32_MAX, &cfg->dim));
    BB_CALL(cfg_int(&c, "intermediate_size", 1, 0, 1, INT32_MAX, &cfg->hidden_dim));
    BB_CALL(cfg_int(&c, "num_hidden_layers", 1, 0, 1, 100000, &cfg->n_layers));
    BB_CALL(cfg_int(&c, "num_attention_heads", 1, 0, 1, INT32_MAX, &cfg->n_heads));
    BB_CALL(cfg_int(&c, "num_key_value_heads", 0, cfg->n_heads, 1, INT32_MAX, &cfg->n_kv_heads));
    int has_head_dim = cfg_value(&c, "head_dim") != NULL;
    BB_CHECK(has_head_dim || cfg->dim % cfg->n_heads == 0, BB_ERR_FORMAT,
             "%s: hidden_size %d is not a multiple of num_attention_heads %d and there is no head_dim", path, cfg->dim,
             cfg->n_heads);
    BB_CALL(cfg_int(&c, "head_dim", 0, cfg->dim / cfg->n_heads, 1, INT32_MAX, &cfg->head_dim));
    BB_CALL(cfg_int(&c, "vocab_size", 1, 0, 1, INT32_MAX, &cfg->vocab_size));
    BB_CALL(cfg_int(&c, "max_position_embeddings", 1, 0, 1, INT32_MAX, &cfg->max_seq_len));
    BB_CALL(cfg_pos_num(&c, "rms_norm_eps", 1, 0, &cfg->norm_eps));
    BB_CALL(cfg_pos_num(&c, "rope_theta", 0, 10000.0, &cfg->rope_theta));
    BB_CALL(read_rope_scaling(&c, cfg));
    BB_CALL(cfg_bool(&c, "tie_word_embeddings", 0, &cfg->tied_embeddings));
    int bias;
    BB_CALL(cfg_bool(&c, "attention_bias", cfg->attn_bias, &bias));
    cfg->attn_bias = cfg->attn_bias || bias;
    int mlp_bias;
    BB_CALL(cfg_bool(&c, "mlp_bias", 0, &mlp_bias));
    BB_CHECK(!mlp_bias, BB_ERR_UNSUPPORTED, "%s: mlp_bias true is not supported (no MLP biases in the model)", path);
    BB_CALL(cfg_token_id(&c, "bos_token_id", &cfg->bos_id));
    BB_CALL(cfg_token_id(&c, "eos_token_id", &cfg->eos_id));
    cfg->rope_style = BB_ROPE_HALF;
    return BB_OK;
}

static bb_status read_config(const char *dir, bb_model_config *cfg) {
    char path[1100];
    BB_CALL(bb_path_join(path, sizeof path, dir, "config.json"));
    char *text;
    size_t n;
    BB_CALL(bb_file_read_all(path, CONFIG_MAX_BYTES, &text, &n));
    bb_json_doc *doc;
    bb_status st = bb_json_parse(text, n, path, &doc);
    free(text);
    if (st) return bb_trace(st, __FILE__, __LINE__, "bb_json_parse");
    memset(cfg, 0, sizeof *cfg);
    st = fill_config(path, bb_json_root(doc), cfg);
    bb_json_doc_destroy(&doc);
    if (st) return bb_trace(st, __FILE__, __LINE__, "fill_config");
    return BB_OK;
}

/* ---- tensor names --------------------------------------------------------- */

typedef enum { SLOT_WEIGHT, SLOT_BIAS, SLOT_UNSUPPORTED } slot_kind;

static const struct {
    const char *hf;        /* after "model.layers.N." */
    const char *canonical; /* after "blk.N." */
    size_t offset;         /* in bb_layer_weights */
    slot_kind kind;
} layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", offsetof(bb_layer_weights, attn_norm), SLOT_WEIGHT},
    {"self_attn.q_proj.weight", "attn_q.weight", offsetof(bb_layer_weights, wq), SLOT_WEIGHT},
    {"self_attn.k_proj.weight", "attn_k.weight", offsetof(bb_layer_weights, wk), SLOT_WEIGHT},
    {"self_attn.v_proj.weight", "attn_v.weight", offsetof(bb_layer_weights, wv), SLOT_WEIGHT},
    {"self_attn.o_proj.weight", "attn_output.weight", offsetof(bb_layer_weights, wo), SLOT_WEIGHT},
    {"self_attn.q_proj.bias", "attn_q.bias", offsetof(bb_layer_weights, bq), SLOT_BIAS},
    {"self_attn.k_proj.bias", "attn_k.bias", offsetof(bb_layer_weights, bk), SLOT_BIAS},
    {"self_attn.v_proj.bias", "attn_v.bias", offsetof(bb_layer_weights, bv), SLOT_BIAS},
    {"post_attention_layernorm.weight", "ffn_norm.weight", offsetof(bb_layer_weights, ffn_norm), SLOT_WEIGHT},
    {"mlp.gate_proj.weight", "ffn_gate.weight", offsetof(bb_layer_weights, w_gate), SLOT_WEIGHT},
    {"mlp.up_proj.weight", "ffn_up.weight", offsetof(bb_layer_weights, w_up), SLOT_WEIGHT},
    {"mlp.down_proj.weight", "ffn_down.weight", offsetof(bb_layer_weights, w_down), SLOT_WEIGHT},
    {"self_attn.o_proj.bias", NULL, 0, SLOT_UNSUPPORTED},
    {"mlp.gate_proj.bias", NULL, 0, SLOT_UNSUPPORTED},
    {"mlp.up_proj.bias", NULL, 0, SLOT_UNSUPPORTED},
    {"mlp.down_proj.bias", NULL, 0, SLOT_UNSUPPORTED},
};
#define N_LAYER_NAMES (sizeof layer_names / sizeof layer_names[0])

static bb_tensor *layer_slot(bb_model *m, int l, size_t k) {
    return (bb_tensor *)((char *)&m->layers[l] + layer_names[k].offset);
}

/* Find the handle an HF tensor name maps to; *slot is NULL for tensors the
 * model does not use. `file` names the source for messages. */
static bb_status map_name(bb_model *m, const char *file, const char *name, bb_tensor **slot, char *canon, size_t n) {
    *slot = NULL;
    if (strcmp(name, "lm_head.weight") == 0) {
        *slot = &m->output;
        snprintf(canon, n, "output.weight");
        return BB_OK;
    }
    /* Weights saved from the bare LlamaModel lack the "model." prefix. */
    const char *s = strncmp(name, "model.", 6) == 0 ? name + 6 : name;
    if (strcmp(s, "embed_tokens.weight") == 0) {
        *slot = &m->tok_embd;
        snprintf(canon, n, "token_embd.weight");
        return BB_OK;
    }
    if (strcmp(s, "norm.weight") == 0) {
        *slot = &m->out_norm;
        snprintf(canon, n, "output_norm.weight");
        return BB_OK;
    }
    if (strncmp(s, "layers.", 7) != 0 || s[7] < '0' || s[7] > '9') return BB_OK;
    const char *p = s + 7;
    long long l = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        l = l < 1000000000LL ? l * 10 + (*p - '0') : l; /* saturates: out of range anyway */
    if (*p != '.') return BB_OK;
    p++;
    for (size_t k = 0; k < N_LAYER_NAMES; k++) {
        if (strcmp(p, layer_names[k].hf) != 0) continue;
        BB_CHECK(layer_names[k].kind != SLOT_UNSUPPORTED, BB_ERR_UNSUPPORTED,
                 "%s: tensor %s: this bias is not supported (only q/k/v projections may have biases)", file, name);
        BB_CHECK(l < m->cfg.n_layers, BB_ERR_FORMAT,
                 "%s: tensor %s: layer %lld is out of range (config.json has num_hidden_layers %d)", file, name, l,
                 m->cfg.n_layers);
        BB_CHECK(layer_names[k].kind != SLOT_BIAS || m->cfg.attn_bias, BB_ERR_FORMAT,
                 "%s: tensor %s is a bias but config.json does not set attention_bias (model_type %s)", file, name,
                 m->cfg.arch);
        *slot = layer_slot(m, (int)l, k);
        snprintf(canon, n, "blk.%lld.%s", l, layer_names[k].canonical);
        return BB_OK;
    }
    return BB_OK;
}

/* Point the model handle that `name` maps to at the entry's storage. */
static bb_status place_tensor(bb_model *m, const char *file, const char *name, const bb_st_entry *e) {
    bb_tensor *slot;
    char canon[BB_TENSOR_NAME_MAX];
    BB_CALL(map_name(m, file, name, &slot, canon, sizeof canon));
    if (!slot) {
        bb_debug("%s: ignoring tensor %s (not part of the model)", file, name);
        return BB_OK;
    }
    BB_CHECK(!bb_tensor_present(slot), BB_ERR_FORMAT, "%s: tensor %s maps to %s, which another tensor already filled",
             file, name, canon);
    BB_CHECK(e->t.ndim > 0, BB_ERR_FORMAT, "%s: tensor %s is a scalar, expected a vector or matrix", file, name);
    *slot = e->t;
    snprintf(slot->name, sizeof slot->name, "%s", canon);
    return BB_OK;
}

/* Every handle the config needs, reported by its Hugging Face name. */
static bb_status check_complete(const bb_model *m, const char *dir) {
    BB_CHECK(bb_tensor_present(&m->tok_embd), BB_ERR_FORMAT, "%s: tensor model.embed_tokens.weight is missing", dir);
    BB_CHECK(bb_tensor_present(&m->out_norm), BB_ERR_FORMAT, "%s: tensor model.norm.weight is missing", dir);
    BB_CHECK(bb_tensor_present(&m->output), BB_ERR_FORMAT,
             "%s: tensor lm_head.weight is missing and config.json does not set tie_word_embeddings", dir);
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (size_t k = 0; k < N_LAYER_NAMES; k++) {
            if (layer_names[k].kind == SLOT_UNSUPPORTED || (layer_names[k].kind == SLOT_BIAS && !m->cfg.attn_bias))
                continue;
            const bb_tensor *t = (const bb_tensor *)((const char *)&m->layers[l] + layer_names[k].offset);
            BB_CHECK(bb_tensor_present(t), BB_ERR_FORMAT, "%s: tensor model.layers.%d.%s (blk.%d.%s) is missing", dir,
                     l, layer_names[k].hf, l, layer_names[k].canonical);
        }
    return BB_OK;
}

/* ---- weights -------------------------------------------------------------- */

/* Map dir/file into the model's next file slot and parse its header. */
static bb_status map_shard(bb_model *m, const char *dir, const char *file, bb_safetensors **st) {
    *st = NULL;
    BB_CHECK(m->n_files < BB_MODEL_MAX_FILES, BB_ERR_UNSUPPORTED, "%s: more than %d weight files", dir,
             BB_MODEL_MAX_FILES);
    char path[1100];
    BB_CALL(bb_path_join(path, sizeof path, dir, file));
    bb_mapped_file *mf = &m->files[m->n_files];
    BB_CALL(bb_file_map(path, mf));
    m->n_files++;
    BB_CALL(bb_safetensors_parse(mf->data, mf->size, path, st));
    return BB_OK;
}

static bb_status load_single(bb_model *m, const char *dir) {
    bb_safetensors *st;
    BB_CALL(map_shard(m, dir, "model.safetensors", &st));
    bb_status s = BB_OK;
    for (size_t i = 0; i < bb_safetensors_count(st) && !s; i++) {
        const bb_st_entry *e = bb_safetensors_entry(st, i);
        s = place_tensor(m, m->files[m->n_files - 1].path, e->name, e);
    }
    bb_safetensors_destroy(&st);
    if (s) return bb_trace(s, __FILE__, __LINE__, "place_tensor");
    return BB_OK;
}

typedef struct {
    const char *names[BB_MODEL_MAX_FILES]; /* shard file names, into the index doc */
    bb_safetensors *tables[BB_MODEL_MAX_FILES];
    int file_slot[BB_MODEL_MAX_FILES]; /* index into m->files */
    int n;
} shard_set;

static int shard_find(const shard_set *ss, const char *name) {
    for (int i = 0; i < ss->n; i++)
        if (strcmp(ss->names[i], name) == 0) return i;
    return -1;
}

static bb_status collect_shards(const char *ipath, const bb_json *wm, shard_set *ss) {
    for (size_t i = 0; i < bb_json_len(wm); i++) {
        const char *tname = bb_json_key_at(wm, i, NULL);
        const bb_json *v = bb_json_at(wm, i);
        const char *f = bb_json_str(v, NULL);
        BB_CHECK(f, BB_ERR_FORMAT, "%s:%u:%u: weight_map entry for tensor %.200s is %s, expected a file name", ipath,
                 bb_json_line(v), bb_json_col(v), tname, bb_json_type_name(bb_json_type(v)));
        BB_CHECK(*f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0, BB_ERR_FORMAT,
                 "%s: weight_map entry for tensor %.200s names \"%.200s\", expected a file name in the model directory",
                 ipath, tname, f);
        if (shard_find(ss, f) >= 0) continue;
        BB_CHECK(ss->n < BB_MODEL_MAX_FILES, BB_ERR_UNSUPPORTED, "%s: more than %d shard files", ipath,
                 BB_MODEL_MAX_FILES);
        ss->names[ss->n++] = f;
    }
    return BB_OK;
}

static bb_status load_indexed_with(bb_model *m, const char *dir, const char *ipath, const bb_json *root,
                                   shard_set *ss) {
    BB_CHECK(bb_json_type(root) == BB_JSON_OBJECT, BB_ERR_FORMAT, "%s: top level is %s, expected an object", ipath,
             bb_json_type_name(bb_json_type(root)));
    const bb_json *wm = bb_json_get(root, "weight_map");
    BB_CHECK(bb_json_type(wm) == BB_JSON_OBJECT, BB_ERR_FORMAT,
             "%s: key \"weight_map\" is %s, expected an object of tensor name -> shard file", ipath,
             bb_json_type_name(bb_json_type(wm)));
    BB_CALL(collect_shards(ipath, wm, ss));
    for (int i = 0; i < ss->n; i++) {
        char path[1100];
        BB_CALL(bb_path_join(path, sizeof path, dir, ss->names[i]));
        BB_CHECK(bb_path_exists(path), BB_ERR_IO, "%s: weight_map names shard %s, which does not exist in %s", ipath,
                 ss->names[i], dir);
        ss->file_slot[i] = m->n_files;
        BB_CALL(map_shard(m, dir, ss->names[i], &ss->tables[i]));
    }
    for (size_t i = 0; i < bb_json_len(wm); i++) {
        const char *tname = bb_json_key_at(wm, i, NULL);
        int s = shard_find(ss, bb_json_str(bb_json_at(wm, i), NULL));
        const bb_st_entry *e = bb_safetensors_find(ss->tables[s], tname);
        const char *spath = m->files[ss->file_slot[s]].path;
        BB_CHECK(e, BB_ERR_FORMAT, "%s: weight_map puts tensor %.200s in %s, but that shard has no such tensor", ipath,
                 tname, spath);
        BB_CALL(place_tensor(m, spath, tname, e));
    }
    return BB_OK;
}

static bb_status load_indexed(bb_model *m, const char *dir, const char *ipath) {
    char *text;
    size_t n;
    BB_CALL(bb_file_read_all(ipath, INDEX_MAX_BYTES, &text, &n));
    bb_json_doc *doc;
    bb_status st = bb_json_parse(text, n, ipath, &doc);
    free(text);
    if (st) return bb_trace(st, __FILE__, __LINE__, "bb_json_parse");
    shard_set ss = {.n = 0};
    st = load_indexed_with(m, dir, ipath, bb_json_root(doc), &ss);
    for (int i = 0; i < ss.n; i++) bb_safetensors_destroy(&ss.tables[i]);
    bb_json_doc_destroy(&doc);
    if (st) return bb_trace(st, __FILE__, __LINE__, "load_indexed_with");
    return BB_OK;
}

static bb_status load_weights(bb_model *m, const char *dir) {
    char ipath[1100], single[1100];
    BB_CALL(bb_path_join(ipath, sizeof ipath, dir, "model.safetensors.index.json"));
    BB_CALL(bb_path_join(single, sizeof single, dir, "model.safetensors"));
    if (bb_path_exists(ipath))
        BB_CALL(load_indexed(m, dir, ipath));
    else {
        BB_CHECK(bb_path_exists(single), BB_ERR_IO,
                 "%s: no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)",
                 dir);
        BB_CALL(load_single(m, dir));
    }
    if (!bb_tensor_present(&m->output) && m->cfg.tied_embeddings && bb_tensor_present(&m->tok_embd)) {
        m->output = m->tok_embd;
        snprintf(m->output.name, sizeof m->output.name, "output.weight");
    } else if (m->cfg.tied_embeddings && bb_tensor_present(&m->output)) {
        bb_debug("%s: lm_head.weight is stored although tie_word_embeddings is set; using it as stored", dir);
        m->cfg.tied_embeddings = 0;
    } else {
        m->cfg.tied_embeddings = 0;
    }
    BB_CALL(check_complete(m, dir));
    return BB_OK;
}

static bb_status open_into(bb_model *m, const char *dir) {
    BB_CHECK(strlen(dir) < sizeof m->path, BB_ERR_ARG, "model path is too long: %s", dir);
    snprintf(m->path, sizeof m->path, "%s", dir);
    m->source = BB_SRC_HF;
    BB_CALL(load_weights(m, dir));
    char tok[1100];
    BB_CALL(bb_path_join(tok, sizeof tok, dir, "tokenizer.json"));
    if (bb_path_exists(tok)) {
        BB_CHECK(strlen(tok) < sizeof m->tokenizer_path, BB_ERR_ARG, "tokenizer path is too long: %s", tok);
        snprintf(m->tokenizer_path, sizeof m->tokenizer_path, "%s", tok);
    }
    return BB_OK;
}

bb_status bb_hf_open(const char *dir, bb_model **out) {
    *out = NULL;
    bb_model_config cfg;
    BB_CALL(read_config(dir, &cfg));
    bb_model *m;
    BB_CALL(bb_model_alloc(&m, cfg.n_layers));
    m->cfg = cfg;
    bb_status st = open_into(m, dir);
    if (st) {
        bb_model_destroy(&m);
        return bb_trace(st, __FILE__, __LINE__, "open_into");
    }
    bb_debug("%s: %s model, %d layers, %d weight file(s)", dir, cfg.arch, cfg.n_layers, m->n_files);
    *out = m;
    return BB_OK;
}
