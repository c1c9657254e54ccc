/* tokenizer_gguf.c — the vocabulary stored in GGUF (tokenizer.ggml.*): llama.cpp's "llama" (SentencePiece) and "gpt2"
 * (byte-level BPE) models as a tokenizer kind. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/tokenizer.h"

/* llama.cpp's token types (tokenizer.ggml.token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* Pre-tokenizer regexes by tokenizer.ggml.pre, as the tokenizer.json files of
 * those models write them. Llama 3 also takes a whole pre-token that is a
 * token as it is (ignore_merges), as llama.cpp does for it. */
static const char llama3_re[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_re[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                               "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char gpt2_re[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const struct {
    const char *name, *regex;
    int ignore_merges;
} pre_types[] = {
    {"llama-bpe", llama3_re, 1}, {"llama3", llama3_re, 1}, {"llama-v3", llama3_re, 1}, {"default", gpt2_re, 0},
    {"gpt2", gpt2_re, 0},        {"gpt-2", gpt2_re, 0},    {"qwen2", qwen2_re, 0},
};

typedef struct {
    const bb_gguf *g;
    const char *label;
    int n;
    int *type; /* (n) token types */
} gg_ctx;

/* An optional integer key in [lo, hi]; *out keeps dflt when absent. */
static bb_status opt_int(const gg_ctx *c, const char *key, int64_t lo, int64_t hi, int *out) {
    if (bb_gguf_find_key(c->g, key) < 0) return BB_OK;
    int64_t v;
    BB_CALL(bb_gguf_get_int(c->g, key, &v));
    BB_CHECK(v >= lo && v <= hi, BB_ERR_FORMAT, "%s: %s is %lld, outside %lld..%lld", c->label, key, (long long)v,
             (long long)lo, (long long)hi);
    *out = (int)v;
    return BB_OK;
}

static bb_status opt_bool(const gg_ctx *c, const char *key, int *out) {
    if (bb_gguf_find_key(c->g, key) < 0) return BB_OK;
    BB_CALL(bb_gguf_get_bool(c->g, key, out));
    return BB_OK;
}

/* tokens, scores and token types into the shared vocabulary. */
static bb_status gg_vocab(gg_ctx *c, bb_tokenizer *t) {
    uint64_t n;
    BB_CALL(bb_gguf_get_arr(c->g, "tokenizer.ggml.tokens", BB_GGUF_STRING, &n));
    BB_CHECK(n >= 1 && n < (1u << 26), BB_ERR_FORMAT, "%s: tokenizer.ggml.tokens holds %llu tokens", c->label,
             (unsigned long long)n);
    c->n = (int)n;
    size_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) {
        bb_gguf_str s;
        BB_CALL(bb_gguf_get_arr_str(c->g, "tokenizer.ggml.tokens", i, &s));
        bytes += s.len + 1;
    }
    BB_CALL(bb_calloc((void **)&c->type, n, sizeof *c->type, "token types"));
    for (uint64_t i = 0; i < n; i++) c->type[i] = TT_NORMAL;
    if (bb_gguf_find_key(c->g, "tokenizer.ggml.token_type") >= 0) {
        uint64_t nt;
        BB_CALL(bb_gguf_get_arr(c->g, "tokenizer.ggml.token_type", BB_GGUF_TYPE_COUNT, &nt));
        BB_CHECK(nt == n, BB_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", c->label,
                 (unsigned long long)nt, (unsigned long long)n);
        int64_t v;
        for (uint64_t i = 0; i < n; i++) {
            BB_CALL(bb_gguf_get_arr_int(c->g, "tokenizer.ggml.token_type", i, 1, &v));
            c->type[i] = (int)(v >= 0 && v <= 6 ? v : TT_NORMAL);
        }
    }
    char *blob = NULL;
    size_t *off = NULL;
    float *score = NULL;
    bb_status st = bb_malloc((void **)&blob, bytes, "tokenizer pieces");
    if (!st) st = bb_malloc((void **)&off, ((size_t)n + 1) * sizeof *off, "tokenizer offsets");
    if (!st) st = bb_calloc((void **)&score, n, sizeof *score, "tokenizer scores");
    if (!st && bb_gguf_find_key(c->g, "tokenizer.ggml.scores") >= 0) {
        uint64_t ns;
        st = bb_gguf_get_arr(c->g, "tokenizer.ggml.scores", BB_GGUF_TYPE_COUNT, &ns);
        if (!st && ns != n)
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                          "%s: tokenizer.ggml.scores has %llu entries for %llu tokens", c->label,
                          (unsigned long long)ns, (unsigned long long)n);
        if (!st) st = bb_gguf_get_arr_f32(c->g, "tokenizer.ggml.scores", 0, n, score);
    }
    size_t o = 0;
    for (uint64_t i = 0; i < n && !st; i++) {
        bb_gguf_str s;
        bb_gguf_get_arr_str(c->g, "tokenizer.ggml.tokens", i, &s);
        off[i] = o;
        memcpy(blob + o, s.s, s.len);
        blob[o + s.len] = '\0';
        o += s.len + 1;
    }
    if (st) {
        free(blob);
        free(off);
        free(score);
        return bb_trace(st, __FILE__, __LINE__, "tokenizer arrays");
    }
    off[n] = o;
    BB_CALL(bb_tokenizer_set_vocab(t, (int)n, blob, off, score));
    return BB_OK;
}

static int hex(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* The bytes each token decodes to: "▁" as a space (llama) or the byte-level
 * map undone (gpt2); control, unknown and unused tokens give nothing. */
static bb_status gg_text(const gg_ctx *c, bb_tokenizer *t, int spm, int strip) {
    size_t total = 0;
    for (int i = 0; i < c->n; i++) {
        size_t l;
        bb_tokenizer_piece(t, i, &l);
        total += l;
    }
    char *text;
    size_t *off;
    BB_CALL(bb_malloc((void **)&text, total + 1, "decoded pieces"));
    bb_status st = bb_malloc((void **)&off, ((size_t)c->n + 1) * sizeof *off, "decoded piece offsets");
    if (st) {
        free(text);
        return bb_trace(st, __FILE__, __LINE__, "decoded pieces");
    }
    size_t o = 0;
    for (int i = 0; i < c->n; i++) {
        size_t l;
        const char *p = bb_tokenizer_piece(t, i, &l);
        off[i] = o;
        int ty = c->type[i];
        if (ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_UNUSED) continue;
        if (ty == TT_USER_DEFINED) {
            memcpy(text + o, p, l);
            o += l;
        } else if (!spm) {
            o += bb_tokenizer_byte_level_decode(p, l, text + o);
        } else if (ty == TT_BYTE && l == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && hex(p[3]) >= 0 &&
                   hex(p[4]) >= 0) {
            text[o++] = (char)(hex(p[3]) * 16 + hex(p[4]));
        } else {
            for (size_t k = 0; k < l;) {
                if (k + 3 <= l && memcmp(p + k, "\xe2\x96\x81", 3) == 0) {
                    text[o++] = ' ';
                    k += 3;
                } else {
                    text[o++] = p[k++];
                }
            }
        }
    }
    off[c->n] = o;
    bb_tokenizer_set_text(t, text, off, strip ? BB_TOK_STRIP_AT_START : BB_TOK_STRIP_NONE);
    return BB_OK;
}

static bb_status gg_merges(const gg_ctx *c, bb_tokenizer_bpe *b) {
    uint64_t n;
    BB_CALL(bb_gguf_get_arr(c->g, "tokenizer.ggml.merges", BB_GGUF_STRING, &n));
    BB_CHECK(n < (1u << 26), BB_ERR_FORMAT, "%s: tokenizer.ggml.merges holds %llu merges", c->label,
             (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        bb_gguf_str s;
        BB_CALL(bb_gguf_get_arr_str(c->g, "tokenizer.ggml.merges", i, &s));
        /* the first space after the first byte separates the pair (llama.cpp's rule) */
        const char *sp = s.len > 1 ? memchr(s.s + 1, ' ', s.len - 1) : NULL;
        BB_CHECK(sp, BB_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\" is not two tokens separated by a space",
                 c->label, (unsigned long long)i, (int)(s.len > 100 ? 100 : s.len), s.s);
        size_t la = (size_t)(sp - s.s);
        BB_CALL(bb_tokenizer_bpe_add_merge(b, s.s, la, sp + 1, s.len - la - 1, (int)i, c->label));
    }
    return BB_OK;
}

static bb_status gg_fill(bb_tokenizer *t, const void *src, const char *label) {
    gg_ctx c = {.g = src, .label = label};
    bb_gguf_str model;
    BB_CHECK(bb_gguf_find_key(c.g, "tokenizer.ggml.model") >= 0, BB_ERR_FORMAT,
             "%s: no tokenizer.ggml.model: the GGUF holds no vocabulary", label);
    BB_CALL(bb_gguf_get_str(c.g, "tokenizer.ggml.model", &model));
    int spm = model.len == 5 && memcmp(model.s, "llama", 5) == 0;
    int bpe = model.len == 4 && memcmp(model.s, "gpt2", 4) == 0;
    BB_CHECK(spm || bpe, BB_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (llama, gpt2)", label,
             (int)(model.len > 64 ? 64 : model.len), model.s);
    int regex = -1;
    if (bpe) {
        bb_gguf_str pre = {"default", 7};
        if (bb_gguf_find_key(c.g, "tokenizer.ggml.pre") >= 0) BB_CALL(bb_gguf_get_str(c.g, "tokenizer.ggml.pre", &pre));
        for (size_t k = 0; k < sizeof pre_types / sizeof pre_types[0] && regex < 0; k++)
            if (strlen(pre_types[k].name) == pre.len && memcmp(pre_types[k].name, pre.s, pre.len) == 0) regex = (int)k;
        BB_CHECK(regex >= 0, BB_ERR_UNSUPPORTED,
                 "%s: tokenizer.ggml.pre \"%.*s\" is not supported (llama-bpe, llama3, llama-v3, default, gpt2, gpt-2, "
                 "qwen2)",
                 label, (int)(pre.len > 64 ? 64 : pre.len), pre.s);
    }
    bb_status st = gg_vocab(&c, t);
    int bos = -1, eos = -1, unk = -1, add_bos = spm, prefix = 1, n_special = 0;
    int *special = NULL;
    bb_tokenizer_bpe *b = NULL;
    if (!st) st = opt_int(&c, "tokenizer.ggml.bos_token_id", 0, c.n - 1, &bos);
    if (!st) st = opt_int(&c, "tokenizer.ggml.eos_token_id", 0, c.n - 1, &eos);
    if (!st) st = opt_int(&c, "tokenizer.ggml.unknown_token_id", 0, c.n - 1, &unk);
    if (!st) st = opt_bool(&c, "tokenizer.ggml.add_bos_token", &add_bos);
    if (!st) st = opt_bool(&c, "tokenizer.ggml.add_space_prefix", &prefix);
    if (!st) st = bb_tokenizer_bpe_attach(t, spm ? BB_BPE_BY_SCORE : BB_BPE_BY_RANK, &b);
    if (!st) st = bb_malloc((void **)&special, (size_t)c.n * sizeof *special, "special tokens");
    if (!st) {
        /* control and user-defined tokens are cut out of the text (llama.cpp with parse_special) */
        for (int i = 0; i < c.n; i++) {
            if (c.type[i] == TT_CONTROL || c.type[i] == TT_USER_DEFINED) special[n_special++] = i;
            if (unk < 0 && c.type[i] == TT_UNKNOWN) unk = i;
        }
        st = bb_tokenizer_bpe_add_specials(b, special, n_special);
    }
    if (!st && spm) st = bb_tokenizer_bpe_add_spm_normalizer(b, prefix);
    if (!st && bpe) st = bb_tokenizer_bpe_add_regex(b, pre_types[regex].regex, strlen(pre_types[regex].regex), label);
    if (!st && bpe) st = bb_tokenizer_bpe_add_byte_level(b, label);
    if (!st && bpe) st = gg_merges(&c, b);
    if (!st) {
        bb_tokenizer_bpe_set_options(b, bpe && pre_types[regex].ignore_merges, 0, unk, 0, add_bos);
        bb_tokenizer_set_control(t, bos, eos);
        st = gg_text(&c, t, spm, spm && prefix);
    }
    free(special);
    free(c.type);
    if (st) return bb_trace(st, __FILE__, __LINE__, "GGUF vocabulary");
    return BB_OK;
}

bb_status bb_tokenizer_load_gguf(const bb_gguf *g, int vocab_size, bb_tokenizer **out) {
    BB_CALL(bb_tokenizer_build(&bb_tokenizer_kind_gguf, gg_fill, g, bb_gguf_what(g), vocab_size, out));
    return BB_OK;
}

static int gg_probe(const void *data, size_t size) { return size >= 4 && memcmp(data, "GGUF", 4) == 0; }

static bb_status gg_parse(bb_tokenizer *t, const void *data, size_t size, const char *label) {
    bb_gguf *g;
    BB_CALL(bb_gguf_open_memory(data, size, label, &g));
    bb_status st = gg_fill(t, g, label);
    bb_gguf_destroy(&g);
    if (st) return bb_trace(st, __FILE__, __LINE__, "GGUF vocabulary");
    return BB_OK;
}

static bb_status gg_encode(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **ids, int *n) {
    BB_CALL(bb_tokenizer_bpe_encode(t, text, add_bos, add_eos, ids, n));
    return BB_OK;
}

const bb_tokenizer_kind bb_tokenizer_kind_gguf = {"gguf", gg_probe, gg_parse, gg_encode};
