/* llama2c.c — llama2.c checkpoint reader: header validation, exact layout check, zero-copy tensor views. */
#include "io/llama2c.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The seven header integers, in file order. */
typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_header;

static const char *const l2c_field_names[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                               "n_kv_heads", "vocab_size", "seq_len"};

static int32_t rd_i32(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* "1,056,540" — sizes in messages are easier to compare with ls -l output this way. */
static void fmt_bytes(size_t n, char *buf, size_t cap) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%zu", n);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

static bb_status check_header(const char *label, const l2c_header *h, int *shared) {
    const int32_t v[7] = {h->dim, h->hidden_dim, h->n_layers, h->n_heads, h->n_kv_heads, h->vocab_size, h->seq_len};
    for (int i = 0; i < 7; i++) {
        /* vocab_size is the one field that may be negative: it flags a separate classifier. */
        int ok = i == 5 ? (v[i] != 0 && v[i] != INT32_MIN) : v[i] > 0;
        BB_CHECK(ok, BB_ERR_FORMAT, "%s: header field %s is %d (must be %s); not a llama2.c checkpoint?", label,
                 l2c_field_names[i], (int)v[i], i == 5 ? "non-zero" : "positive");
    }
    BB_CHECK(h->n_layers <= 100000, BB_ERR_FORMAT, "%s: header says %d layers, more than any real model", label,
             (int)h->n_layers);
    BB_CHECK(h->dim % h->n_heads == 0, BB_ERR_FORMAT, "%s: dim %d is not divisible by n_heads %d", label, (int)h->dim,
             (int)h->n_heads);
    BB_CHECK(h->n_kv_heads <= h->n_heads, BB_ERR_FORMAT, "%s: n_kv_heads %d is larger than n_heads %d", label,
             (int)h->n_kv_heads, (int)h->n_heads);
    BB_CHECK(h->n_heads % h->n_kv_heads == 0, BB_ERR_FORMAT,
             "%s: n_heads %d is not a multiple of n_kv_heads %d (grouped-query attention needs it)", label,
             (int)h->n_heads, (int)h->n_kv_heads);
    BB_CHECK((h->dim / h->n_heads) % 2 == 0, BB_ERR_FORMAT,
             "%s: head size %d (dim %d / n_heads %d) is odd; rotary "
             "embeddings need pairs",
             label, (int)(h->dim / h->n_heads), (int)h->dim, (int)h->n_heads);
    *shared = h->vocab_size > 0;
    return BB_OK;
}

/* One contiguous block of f32 values in the file. */
typedef struct {
    size_t off;   /* byte offset in the file */
    size_t count; /* f32 elements */
} l2c_seg;

typedef struct {
    size_t pos; /* next free byte offset */
    int overflow;
} l2c_cursor;

/* Reserve a*b*c floats at the cursor. */
static l2c_seg take(l2c_cursor *c, size_t a, size_t b, size_t d) {
    l2c_seg s = {c->pos, 0};
    size_t n, bytes;
    if (bb_mul_overflow(a, b, &n) || bb_mul_overflow(n, d, &n) || bb_mul_overflow(n, sizeof(float), &bytes) ||
        __builtin_add_overflow(c->pos, bytes, &c->pos))
        c->overflow = 1;
    else
        s.count = n;
    return s;
}

/* Where every weight group lives; per-layer groups hold n_layers consecutive tensors. */
typedef struct {
    l2c_seg emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
} l2c_layout;

static void plan_layout(const l2c_header *h, int version, int shared, size_t header_bytes, l2c_layout *lo,
                        l2c_cursor *c) {
    size_t dim = (size_t)h->dim, hid = (size_t)h->hidden_dim, L = (size_t)h->n_layers;
    size_t V = (size_t)(h->vocab_size < 0 ? -(int64_t)h->vocab_size : h->vocab_size);
    size_t hs = dim / (size_t)h->n_heads, kvd = hs * (size_t)h->n_kv_heads;
    memset(lo, 0, sizeof *lo);
    c->pos = header_bytes;
    c->overflow = 0;
    if (version == 0) {
        lo->emb = take(c, V, dim, 1);
        lo->rms_att = take(c, L, dim, 1);
        lo->wq = take(c, L, dim, dim);
        lo->wk = take(c, L, kvd, dim);
        lo->wv = take(c, L, kvd, dim);
        lo->wo = take(c, L, dim, dim);
        lo->rms_ffn = take(c, L, dim, 1);
        lo->w1 = take(c, L, hid, dim);
        lo->w2 = take(c, L, dim, hid);
        lo->w3 = take(c, L, hid, dim);
        lo->rms_final = take(c, dim, 1, 1);
        /* freq_cis_real and freq_cis_imag: RoPE tables the forward pass recomputes. */
        take(c, (size_t)h->seq_len, hs / 2, 2);
    } else {
        lo->rms_att = take(c, L, dim, 1);
        lo->rms_ffn = take(c, L, dim, 1);
        lo->rms_final = take(c, dim, 1, 1);
        lo->emb = take(c, V, dim, 1);
        lo->wq = take(c, L, dim, dim);
        lo->wk = take(c, L, kvd, dim);
        lo->wv = take(c, L, kvd, dim);
        lo->wo = take(c, L, dim, dim);
        lo->w1 = take(c, L, hid, dim);
        lo->w2 = take(c, L, dim, hid);
        lo->w3 = take(c, L, hid, dim);
    }
    if (!shared) lo->wcls = take(c, V, dim, 1);
}

/* A view of tensor `index` of a group of equal-shaped tensors. */
static bb_status view(bb_tensor *t, const uint8_t *base, l2c_seg seg, int index, const char *name, int64_t d0,
                      int64_t d1) {
    int64_t shape[2] = {d0, d1};
    int ndim = d1 > 0 ? 2 : 1;
    size_t n = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    size_t off = seg.off + (size_t)index * n * sizeof(float);
    BB_CALL(bb_tensor_init_memory(t, name, BB_F32, ndim, shape, base + off, n * sizeof(float)));
    t->file_offset = (int64_t)off;
    return BB_OK;
}

static bb_status fill_model(bb_model *m, const uint8_t *base, const l2c_header *h, const l2c_layout *lo, int shared) {
    bb_model_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama");
    c->dim = h->dim;
    c->hidden_dim = h->hidden_dim;
    c->n_layers = h->n_layers;
    c->n_heads = h->n_heads;
    c->n_kv_heads = h->n_kv_heads;
    c->head_dim = h->dim / h->n_heads;
    c->vocab_size = h->vocab_size < 0 ? -h->vocab_size : h->vocab_size;
    c->max_seq_len = h->seq_len;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = BB_ROPE_INTERLEAVED;
    c->rope_scaling = BB_ROPE_SCALING_NONE;
    c->tied_embeddings = shared;
    c->bos_id = 1;
    c->eos_id = 2;
    m->source = BB_SRC_LLAMA2C;
    int64_t dim = c->dim, hid = c->hidden_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim, V = c->vocab_size;
    BB_CALL(view(&m->tok_embd, base, lo->emb, 0, "token_embd.weight", V, dim));
    BB_CALL(view(&m->out_norm, base, lo->rms_final, 0, "output_norm.weight", dim, 0));
    if (shared)
        m->output = m->tok_embd;
    else
        BB_CALL(view(&m->output, base, lo->wcls, 0, "output.weight", V, dim));
    for (int l = 0; l < c->n_layers; l++) {
        bb_layer_weights *w = &m->layers[l];
        char nm[BB_TENSOR_NAME_MAX];
#define V_(field, seg, label, a, b)                                                                                    \
    snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, label);                                                             \
    BB_CALL(view(&w->field, base, lo->seg, l, nm, a, b))
        V_(attn_norm, rms_att, "attn_norm", dim, 0);
        V_(wq, wq, "attn_q", dim, dim);
        V_(wk, wk, "attn_k", kvd, dim);
        V_(wv, wv, "attn_v", kvd, dim);
        V_(wo, wo, "attn_output", dim, dim);
        V_(ffn_norm, rms_ffn, "ffn_norm", dim, 0);
        V_(w_gate, w1, "ffn_gate", hid, dim);
        V_(w_down, w2, "ffn_down", dim, hid);
        V_(w_up, w3, "ffn_up", hid, dim);
#undef V_
    }
    return BB_OK;
}

bb_status bb_llama2c_parse(const void *data, size_t size, const char *label, bb_model **out) {
    *out = NULL;
    const uint8_t *p = data;
    BB_CHECK(size >= BB_LLAMA2C_V0_HEADER, BB_ERR_FORMAT,
             "%s: file is %zu bytes, too short for the %d-byte llama2.c header (truncated?)", label, size,
             BB_LLAMA2C_V0_HEADER);
    int version = 0;
    size_t header_bytes = BB_LLAMA2C_V0_HEADER;
    const uint8_t *hp = p;
    if ((uint32_t)rd_i32(p) == BB_LLAMA2C_MAGIC) {
        version = rd_i32(p + 4);
        BB_CHECK(version == 1, version == 2 ? BB_ERR_UNSUPPORTED : BB_ERR_FORMAT,
                 "%s: llama2.c checkpoint version %d is not supported (only legacy and version 1, fp32)%s", label,
                 version, version == 2 ? "; version 2 is int8-quantized: export version 1 instead" : "");
        header_bytes = BB_LLAMA2C_V1_HEADER;
        BB_CHECK(size >= header_bytes, BB_ERR_FORMAT,
                 "%s: file is %zu bytes, too short for the %zu-byte version-1 header (truncated?)", label, size,
                 header_bytes);
        hp = p + 8;
    }
    l2c_header h = {rd_i32(hp),      rd_i32(hp + 4),  rd_i32(hp + 8), rd_i32(hp + 12),
                    rd_i32(hp + 16), rd_i32(hp + 20), rd_i32(hp + 24)};
    int shared = 0;
    BB_CALL(check_header(label, &h, &shared));
    if (version == 1) {
        uint8_t flag = hp[28];
        BB_CHECK(flag <= 1, BB_ERR_FORMAT, "%s: shared_classifier byte is %u (must be 0 or 1)", label, (unsigned)flag);
        BB_CHECK(h.vocab_size > 0, BB_ERR_FORMAT, "%s: version-1 header has vocab_size %d (must be positive)", label,
                 (int)h.vocab_size);
        shared = flag;
    }
    l2c_layout lo;
    l2c_cursor cur;
    plan_layout(&h, version, shared, header_bytes, &lo, &cur);
    char want[40] = "more than 2^64", got[40];
    if (!cur.overflow) fmt_bytes(cur.pos, want, sizeof want);
    fmt_bytes(size, got, sizeof got);
    BB_CHECK(!cur.overflow && cur.pos == size, BB_ERR_FORMAT,
             "%s: file is %s bytes but dim %d, hidden_dim %d, %d layers, %d heads, %d kv heads, vocab %d, seq_len %d "
             "(%s llama2.c layout, %s classifier) need %s bytes (%s)",
             label, got, (int)h.dim, (int)h.hidden_dim, (int)h.n_layers, (int)h.n_heads, (int)h.n_kv_heads,
             (int)h.vocab_size, (int)h.seq_len, version ? "version-1" : "legacy", shared ? "shared" : "separate", want,
             !cur.overflow && size > cur.pos ? "extra bytes at the end: wrong header or not a llama2.c checkpoint?"
                                             : "truncated?");
    bb_model *m;
    BB_CALL(bb_model_alloc(&m, h.n_layers));
    snprintf(m->path, sizeof m->path, "%s", label);
    bb_status st = fill_model(m, p, &h, &lo, shared);
    if (st) {
        bb_model_destroy(&m);
        return bb_trace(st, __FILE__, __LINE__, "fill_model");
    }
    *out = m;
    return BB_OK;
}

/* The tokenizer beside the model: tok<vocab>.bin first (it names this vocabulary,
 * as in llama2.c's tok512.bin for stories260K), then the generic tokenizer.bin. */
static void find_tokenizer(bb_model *m, const char *path) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char name[32], cand[1100];
    snprintf(name, sizeof name, "tok%d.bin", m->cfg.vocab_size);
    const char *names[2] = {name, "tokenizer.bin"};
    for (int i = 0; i < 2; i++) {
        int w = snprintf(cand, sizeof cand, "%s/%s", dir, names[i]);
        if (w > 0 && (size_t)w < sizeof m->tokenizer_path && bb_path_exists(cand) && !bb_path_is_dir(cand)) {
            memcpy(m->tokenizer_path, cand, (size_t)w + 1);
            return;
        }
    }
}

bb_status bb_llama2c_open(const char *path, bb_model **out) {
    *out = NULL;
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_model *m;
    bb_status st = bb_llama2c_parse(mf.data, mf.size, path, &m);
    if (st) {
        bb_file_unmap(&mf);
        return bb_trace(st, __FILE__, __LINE__, "bb_llama2c_parse");
    }
    m->files[0] = mf;
    m->n_files = 1;
    find_tokenizer(m, path);
    *out = m;
    return BB_OK;
}
