/* tokenizer_hf.c — the Hugging Face encoding pipeline (added tokens, normalizers, pre-tokenizers, BPE by merge rank or
 * by piece score) and the tokenizer.json kind. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/json.h"
#include "io/tokenizer.h"

/* ---- UTF-8 and the GPT-2 byte map ------------------------------------------- */

/* Bytes of the character starting at s[0] (lead byte's length, cut short at the
 * first byte that is not a continuation, so invalid UTF-8 still advances). */
static size_t utf8_len(const char *s, size_t left) {
    unsigned char c = (unsigned char)s[0];
    size_t want = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    size_t n = 1;
    while (n < want && n < left && ((unsigned char)s[n] & 0xC0) == 0x80) n++;
    return n;
}

/* Code point of the valid UTF-8 character s[0, n), or -1. */
static long utf8_cp(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 1) return u[0] < 0x80 ? u[0] : -1;
    if (n == 2 && (u[0] >> 5) == 6) return ((long)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    if (n == 3 && (u[0] >> 4) == 14) return ((long)(u[0] & 0x0F) << 12) | ((long)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    if (n == 4 && (u[0] >> 3) == 30)
        return ((long)(u[0] & 0x07) << 18) | ((long)(u[1] & 0x3F) << 12) | ((long)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return -1;
}

/* GPT-2's map keeps the printable bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) and
 * moves the others, in byte order, to U+0100 onwards, so every byte becomes a
 * visible character. */
static unsigned byte_level_cp(unsigned char b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 256u + 33u + (b - 127u);
    if (b == 173) return 256u + 67u;
    return b;
}

static int byte_level_byte(long cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}

/* UTF-8 of byte b's character into out (1 or 2 bytes). */
static size_t byte_level_char(unsigned char b, char *out) {
    unsigned cp = byte_level_cp(b);
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

size_t bb_tokenizer_byte_level_decode(const char *piece, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(piece + i, len - i);
        int b = byte_level_byte(utf8_cp(piece + i, n));
        if (b < 0) {
            memcpy(out, piece, len);
            return len;
        }
        out[o++] = (char)b;
        i += n;
    }
    return o;
}

/* ---- the pipeline's parts ---------------------------------------------------- */

typedef struct {
    int id;
    char *s; /* what is matched: the content, or its normalized form */
    size_t len;
    unsigned char lstrip, rstrip, single_word;
} added_tok;

/* Added tokens matched leftmost-longest; sorted by first byte so a position
 * only tries the tokens that can start there. */
typedef struct {
    added_tok *v;
    int n, cap;
    int first[257]; /* tokens starting with byte c are v[first[c], first[c+1]) */
} added_set;

typedef enum { NORM_PREPEND, NORM_REPLACE } norm_type;

typedef struct {
    norm_type type;
    char *a, *b; /* Prepend: a; Replace: a -> b */
    size_t la, lb;
} norm_step;

typedef enum { PRE_SPLIT, PRE_BYTE_LEVEL, PRE_METASPACE } pre_type;
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum { SCHEME_ALWAYS, SCHEME_FIRST, SCHEME_NEVER } prepend_scheme;

typedef struct {
    pre_type type;
    pcre2_code *re;          /* SPLIT, and BYTE_LEVEL with use_regex */
    split_behavior behavior; /* SPLIT */
    int add_prefix_space;    /* BYTE_LEVEL */
    char repl[8];            /* METASPACE: the replacement character */
    size_t lrepl;
    prepend_scheme scheme;
    int split;
} pre_step;

typedef struct {
    uint64_t key; /* (left id << 32 | right id) + 1; 0 = empty slot */
    int rank, id;
} merge_slot;

struct bb_tokenizer_bpe {
    const bb_tokenizer *tok;
    bb_bpe_mode mode;
    int byte_level;    /* pre-tokens are mapped byte by byte before the model sees them */
    int byte_sym[256]; /* byte-level: the token of each byte's character, -1 if none */
    int ignore_merges, byte_fallback, unk_id, fuse_unk, add_bos;
    uint8_t *model_tok; /* (n) 1 for tokens of the model's vocabulary, 0 for added-only ones */
    merge_slot *merges; /* open addressing, mcap a power of two */
    size_t mcap, mcount;
    added_set raw, normed; /* matched in the text / in each normalized segment */
    norm_step norms[8];
    int n_norms;
    pre_step pres[8];
    int n_pres;
    pcre2_code *word_re; /* \w, for added tokens that must be single words */
};

static void bpe_free(void *p) {
    bb_tokenizer_bpe *b = p;
    if (!b) return;
    free(b->model_tok);
    free(b->merges);
    for (int i = 0; i < b->raw.n; i++) free(b->raw.v[i].s);
    for (int i = 0; i < b->normed.n; i++) free(b->normed.v[i].s);
    free(b->raw.v);
    free(b->normed.v);
    for (int i = 0; i < b->n_norms; i++) {
        free(b->norms[i].a);
        free(b->norms[i].b);
    }
    for (int i = 0; i < b->n_pres; i++) pcre2_code_free(b->pres[i].re);
    pcre2_code_free(b->word_re);
    free(b);
}

bb_status bb_tokenizer_bpe_attach(bb_tokenizer *tok, bb_bpe_mode mode, bb_tokenizer_bpe **out) {
    *out = NULL;
    int n = bb_tokenizer_vocab_size(tok);
    bb_tokenizer_bpe *b;
    BB_CALL(bb_calloc((void **)&b, 1, sizeof *b, "tokenizer pipeline"));
    b->tok = tok;
    b->mode = mode;
    b->unk_id = -1;
    b->add_bos = 1;
    for (int i = 0; i < 256; i++) b->byte_sym[i] = -1;
    bb_status st = bb_malloc((void **)&b->model_tok, (size_t)n + 1, "tokenizer model vocabulary");
    if (st) {
        bpe_free(b);
        return bb_trace(st, __FILE__, __LINE__, "bpe attach");
    }
    memset(b->model_tok, 1, (size_t)n + 1);
    bb_tokenizer_set_priv(tok, b, bpe_free);
    *out = b;
    return BB_OK;
}

void bb_tokenizer_bpe_set_options(bb_tokenizer_bpe *b, int ignore_merges, int byte_fallback, int unk_id, int fuse_unk,
                                  int add_bos) {
    b->ignore_merges = ignore_merges;
    b->byte_fallback = byte_fallback;
    b->unk_id = unk_id;
    b->fuse_unk = fuse_unk;
    b->add_bos = add_bos;
}

/* Id of the model-vocabulary token s[0, len), -1 if none. */
static int model_lookup(const bb_tokenizer_bpe *b, const char *s, size_t len) {
    int id = bb_tokenizer_lookup(b->tok, s, len);
    return id >= 0 && b->model_tok[id] ? id : -1;
}

static bb_status add_to_set(added_set *set, int id, const char *s, size_t len, int lstrip, int rstrip,
                            int single_word) {
    if (set->n == set->cap) {
        int cap = set->cap ? 2 * set->cap : 16;
        added_tok *v = realloc(set->v, (size_t)cap * sizeof *v);
        BB_CHECK(v, BB_ERR_OOM, "out of memory: %d added tokens", cap);
        set->v = v;
        set->cap = cap;
    }
    char *c;
    BB_CALL(bb_malloc((void **)&c, len + 1, "added token"));
    memcpy(c, s, len);
    c[len] = '\0';
    set->v[set->n++] =
        (added_tok){id, c, len, (unsigned char)lstrip, (unsigned char)rstrip, (unsigned char)single_word};
    return BB_OK;
}

static int cmp_added(const void *x, const void *y) {
    const added_tok *a = x, *b = y;
    int ca = (unsigned char)a->s[0], cb = (unsigned char)b->s[0];
    return ca != cb ? ca - cb : a->id - b->id;
}

static void index_set(added_set *set) {
    if (set->n > 0) qsort(set->v, (size_t)set->n, sizeof *set->v, cmp_added);
    int i = 0;
    for (int c = 0; c < 256; c++) {
        set->first[c] = i;
        while (i < set->n && (unsigned char)set->v[i].s[0] == c) i++;
    }
    set->first[256] = set->n;
}

bb_status bb_tokenizer_bpe_add_specials(bb_tokenizer_bpe *b, const int *ids, int n) {
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = bb_tokenizer_piece(b->tok, ids[i], &len);
        if (len > 0) BB_CALL(add_to_set(&b->raw, ids[i], p, len, 0, 0, 0)); /* the library ignores empty ones */
    }
    index_set(&b->raw);
    return BB_OK;
}

static bb_status add_norm(bb_tokenizer_bpe *b, norm_type type, const char *a, size_t la, const char *bs, size_t lb,
                          const char *label) {
    BB_CHECK(b->n_norms < 8, BB_ERR_UNSUPPORTED, "%s: more than 8 normalizers", label);
    norm_step *n = &b->norms[b->n_norms];
    BB_CALL(bb_malloc((void **)&n->a, la + 1, "normalizer"));
    memcpy(n->a, a, la);
    n->la = la;
    n->type = type;
    b->n_norms++;
    if (bs) {
        BB_CALL(bb_malloc((void **)&n->b, lb + 1, "normalizer"));
        memcpy(n->b, bs, lb);
        n->lb = lb;
    }
    return BB_OK;
}

bb_status bb_tokenizer_bpe_add_spm_normalizer(bb_tokenizer_bpe *b, int prefix) {
    if (prefix) BB_CALL(add_norm(b, NORM_PREPEND, "\xe2\x96\x81", 3, NULL, 0, "normalizer"));
    BB_CALL(add_norm(b, NORM_REPLACE, " ", 1, "\xe2\x96\x81", 3, "normalizer"));
    return BB_OK;
}

/* literal: the pattern is a plain string (Split's String pattern). */
static bb_status compile_re(const char *pattern, size_t len, int literal, const char *label, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    /* MATCH_INVALID_UTF: text that is not UTF-8 is matched around, never rejected or misread. */
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                        "%s: pre-tokenizer regex \"%.*s\" does not compile at offset %zu: %s", label,
                        (int)(len > 200 ? 200 : len), pattern, (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT the interpreter runs: same matches */
    *out = re;
    return BB_OK;
}

static bb_status add_pre(bb_tokenizer_bpe *b, pre_step s, const char *label) {
    if (b->n_pres >= 8) {
        pcre2_code_free(s.re);
        return bb_error(BB_ERR_UNSUPPORTED, __FILE__, __LINE__, "%s: more than 8 pre-tokenizers", label);
    }
    b->pres[b->n_pres++] = s;
    return BB_OK;
}

bb_status bb_tokenizer_bpe_add_regex(bb_tokenizer_bpe *b, const char *pattern, size_t len, const char *label) {
    pre_step s = {.type = PRE_SPLIT, .behavior = SPLIT_ISOLATED};
    BB_CALL(compile_re(pattern, len, 0, label, &s.re));
    BB_CALL(add_pre(b, s, label));
    return BB_OK;
}

/* The ByteLevel pre-tokenizer's own regex (GPT-2's), used when use_regex is true. */
static const char gpt2_regex[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static bb_status add_byte_level(bb_tokenizer_bpe *b, int add_prefix_space, int use_regex, const char *label) {
    pre_step s = {.type = PRE_BYTE_LEVEL, .add_prefix_space = add_prefix_space};
    if (use_regex) BB_CALL(compile_re(gpt2_regex, sizeof gpt2_regex - 1, 0, label, &s.re));
    BB_CALL(add_pre(b, s, label));
    b->byte_level = 1;
    for (int c = 0; c < 256; c++) {
        char ch[2];
        size_t n = byte_level_char((unsigned char)c, ch);
        b->byte_sym[c] = model_lookup(b, ch, n);
    }
    return BB_OK;
}

bb_status bb_tokenizer_bpe_add_byte_level(bb_tokenizer_bpe *b, const char *label) {
    BB_CALL(add_byte_level(b, 0, 0, label));
    return BB_OK;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static merge_slot *merge_find(const bb_tokenizer_bpe *b, int l, int r) {
    if (!b->mcap) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    for (size_t i = mix64(key) & (b->mcap - 1);; i = (i + 1) & (b->mcap - 1)) {
        if (b->merges[i].key == key) return &b->merges[i];
        if (b->merges[i].key == 0) return NULL;
    }
}

static bb_status merge_grow(bb_tokenizer_bpe *b) {
    size_t cap = b->mcap ? 2 * b->mcap : 1024;
    merge_slot *m;
    BB_CALL(bb_calloc((void **)&m, cap, sizeof *m, "merge table"));
    for (size_t i = 0; i < b->mcap; i++) {
        if (!b->merges[i].key) continue;
        size_t j = mix64(b->merges[i].key) & (cap - 1);
        while (m[j].key) j = (j + 1) & (cap - 1);
        m[j] = b->merges[i];
    }
    free(b->merges);
    b->merges = m;
    b->mcap = cap;
    return BB_OK;
}

bb_status bb_tokenizer_bpe_add_merge(bb_tokenizer_bpe *b, const char *a, size_t la, const char *bp, size_t lb, int rank,
                                     const char *label) {
    int ia = model_lookup(b, a, la), ib = model_lookup(b, bp, lb);
    BB_CHECK(ia >= 0, BB_ERR_FORMAT, "%s: merge %d names \"%.*s\", which is not in the vocabulary", label, rank,
             (int)(la > 100 ? 100 : la), a);
    BB_CHECK(ib >= 0, BB_ERR_FORMAT, "%s: merge %d names \"%.*s\", which is not in the vocabulary", label, rank,
             (int)(lb > 100 ? 100 : lb), bp);
    BB_CHECK(la + lb <= bb_tokenizer_max_piece_len(b->tok), BB_ERR_FORMAT,
             "%s: merge %d (\"%.*s\" \"%.*s\") makes a token longer than any in the vocabulary", label, rank,
             (int)(la > 100 ? 100 : la), a, (int)(lb > 100 ? 100 : lb), bp);
    char buf[2048];
    char *cat = la + lb <= sizeof buf ? buf : NULL;
    if (!cat) BB_CALL(bb_malloc((void **)&cat, la + lb, "merge"));
    memcpy(cat, a, la);
    memcpy(cat + la, bp, lb);
    int id = model_lookup(b, cat, la + lb);
    if (cat != buf) free(cat);
    BB_CHECK(id >= 0, BB_ERR_FORMAT,
             "%s: merge %d (\"%.*s\" \"%.*s\") makes \"%.*s%.*s\", which is not in the vocabulary", label, rank,
             (int)(la > 100 ? 100 : la), a, (int)(lb > 100 ? 100 : lb), bp, (int)(la > 100 ? 100 : la), a,
             (int)(lb > 100 ? 100 : lb), bp);
    merge_slot *m = merge_find(b, ia, ib);
    if (m) { /* a repeated pair: the later rank wins, as in the library's hash map */
        m->rank = rank;
        return BB_OK;
    }
    if (2 * (b->mcount + 1) > b->mcap) BB_CALL(merge_grow(b));
    uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
    size_t j = mix64(key) & (b->mcap - 1);
    while (b->merges[j].key) j = (j + 1) & (b->mcap - 1);
    b->merges[j] = (merge_slot){key, rank, id};
    b->mcount++;
    return BB_OK;
}

/* ---- encoding ----------------------------------------------------------------- */

typedef struct {
    int id;              /* token, or -1 for a character without one (BY_SCORE) */
    uint32_t start, len; /* bytes of the word it covers; len 0 once merged away */
    int prev, next;
} sym;

typedef struct {
    uint32_t key; /* smaller merges first: the rank, or the score in an order-reversing code */
    uint32_t pos;
    int id;
} cand;

/* Scratch for one encode call (the tokenizer itself stays read-only). */
typedef struct {
    const bb_tokenizer *t;
    const bb_tokenizer_bpe *b;
    int *ids;
    size_t n, cap;
    sym *syms;
    cand *heap;
    size_t scap, hn;
    char *buf;
    size_t bcap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
} enc;

static bb_status emit(enc *e, int id) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 256;
        int *v = realloc(e->ids, cap * sizeof *v);
        BB_CHECK(v, BB_ERR_OOM, "out of memory: %zu token ids", cap);
        e->ids = v;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return BB_OK;
}

static bb_status reserve_buf(enc *e, size_t n) {
    if (n <= e->bcap) return BB_OK;
    char *p = realloc(e->buf, n);
    BB_CHECK(p, BB_ERR_OOM, "out of memory: encode buffer of %zu bytes", n);
    e->buf = p;
    e->bcap = n;
    return BB_OK;
}

static uint64_t cand_order(const cand *c) { return (uint64_t)c->key << 32 | c->pos; }

/* A 4-ary min-heap on (key, pos): half the depth of a binary heap, and the four
 * children share a cache line or two (a SentencePiece-style text is one word
 * of up to millions of symbols). */
static void heap_push(enc *e, cand c) {
    size_t i = e->hn++;
    uint64_t o = cand_order(&c);
    while (i > 0 && o < cand_order(&e->heap[(i - 1) / 4])) {
        e->heap[i] = e->heap[(i - 1) / 4];
        i = (i - 1) / 4;
    }
    e->heap[i] = c;
}

static cand heap_pop(enc *e) {
    cand top = e->heap[0], last = e->heap[--e->hn];
    uint64_t o = cand_order(&last);
    size_t i = 0;
    for (;;) {
        size_t c = 4 * i + 1, end = c + 4 < e->hn ? c + 4 : e->hn;
        if (c >= e->hn) break;
        size_t best = c;
        for (size_t k = c + 1; k < end; k++)
            if (cand_order(&e->heap[k]) < cand_order(&e->heap[best])) best = k;
        if (cand_order(&e->heap[best]) >= o) break;
        e->heap[i] = e->heap[best];
        i = best;
    }
    e->heap[i] = last;
    return top;
}

/* Scores as keys: higher scores give smaller keys (IEEE order, reversed). */
static uint32_t score_key(float score) {
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    u = u & 0x80000000u ? ~u : u | 0x80000000u;
    return ~u;
}

/* The merge of symbols l and r (adjacent): its key and resulting token. */
static int pair_merge(const enc *e, const char *w, int l, int r, cand *c) {
    const sym *a = &e->syms[l], *s = &e->syms[r];
    if (e->b->mode == BB_BPE_BY_RANK) {
        if (a->id < 0 || s->id < 0) return 0;
        const merge_slot *m = merge_find(e->b, a->id, s->id);
        if (!m) return 0;
        *c = (cand){(uint32_t)m->rank, (uint32_t)l, m->id};
        return 1;
    }
    int id = bb_tokenizer_lookup(e->t, w + a->start, (size_t)a->len + s->len);
    if (id < 0) return 0;
    *c = (cand){score_key(bb_tokenizer_score(e->t, id)), (uint32_t)l, id};
    return 1;
}

static void push_pair(enc *e, const char *w, int l) {
    cand c;
    if (l >= 0 && e->syms[l].next >= 0 && pair_merge(e, w, l, e->syms[l].next, &c)) heap_push(e, c);
}

/* Merge until no adjacent pair has a merge: the best key first, the leftmost
 * among equals. A popped candidate counts only if its pair still makes the
 * same token (the library's staleness rule). O(n log n) in the symbols. */
static void merge_all(enc *e, const char *w, int ns) {
    e->hn = 0;
    for (int i = 0; i + 1 < ns; i++) push_pair(e, w, i);
    while (e->hn > 0) {
        cand c = heap_pop(e);
        int pos = (int)c.pos;
        sym *l = &e->syms[pos];
        if (l->len == 0 || l->next < 0) continue;
        cand now;
        if (!pair_merge(e, w, pos, l->next, &now) || now.id != c.id) continue;
        sym *r = &e->syms[l->next];
        l->id = c.id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) e->syms[r->next].prev = pos;
        push_pair(e, w, l->prev);
        push_pair(e, w, pos);
    }
}

static bb_status reserve_syms(enc *e, size_t n) {
    if (n <= e->scap) return BB_OK;
    sym *s = realloc(e->syms, n * sizeof *s);
    if (s) e->syms = s;
    cand *h = s ? realloc(e->heap, 3 * n * sizeof *h) : NULL;
    if (h) e->heap = h;
    BB_CHECK(h, BB_ERR_OOM, "out of memory: merging a word of %zu symbols", n);
    e->scap = n;
    return BB_OK;
}

static void add_sym(enc *e, int *ns, int id, size_t start, size_t len) {
    sym *s = &e->syms[*ns];
    *s = (sym){id, (uint32_t)start, (uint32_t)len, *ns - 1, -1};
    if (*ns > 0) e->syms[*ns - 1].next = *ns;
    (*ns)++;
}

/* The initial symbols of a word: one per byte (byte-level), else one per
 * character, with byte-fallback tokens or the unknown token for characters
 * the vocabulary lacks (BY_SCORE keeps them as id -1 until the end). */
static bb_status word_symbols(enc *e, const char *w, size_t len, int *ns) {
    const bb_tokenizer_bpe *b = e->b;
    *ns = 0;
    if (b->byte_level) {
        for (size_t i = 0; i < len; i++) {
            int id = b->byte_sym[(unsigned char)w[i]];
            BB_CHECK(id >= 0, BB_ERR_ARG, "byte 0x%02x has no token in this byte-level vocabulary",
                     (unsigned char)w[i]);
            add_sym(e, ns, id, i, 1);
        }
        return BB_OK;
    }
    int unk_open = 0; /* the last symbol is an unknown token that may absorb the next */
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(w + i, len - i);
        int id = b->mode == BB_BPE_BY_SCORE ? bb_tokenizer_lookup(e->t, w + i, n) : model_lookup(b, w + i, n);
        if (id >= 0 || b->mode == BB_BPE_BY_SCORE) {
            add_sym(e, ns, id, i, n);
            unk_open = 0;
            i += n;
            continue;
        }
        int all = b->byte_fallback;
        for (size_t k = 0; k < n && all; k++) all = bb_tokenizer_byte_id(e->t, (unsigned char)w[i + k]) >= 0;
        if (all) {
            for (size_t k = 0; k < n; k++)
                add_sym(e, ns, bb_tokenizer_byte_id(e->t, (unsigned char)w[i + k]), i + k, 1);
            unk_open = 0;
        } else {
            BB_CHECK(b->unk_id >= 0, BB_ERR_ARG,
                     "character at byte %zu of a pre-token has no token, no byte-fallback token and there is no "
                     "unknown token",
                     i);
            if (unk_open && b->fuse_unk) {
                e->syms[*ns - 1].len += (uint32_t)n;
            } else {
                add_sym(e, ns, b->unk_id, i, n);
                unk_open = 1;
            }
        }
        i += n;
    }
    return BB_OK;
}

/* BPE on one pre-token. */
static bb_status model_word(enc *e, const char *w, size_t len) {
    const bb_tokenizer_bpe *b = e->b;
    BB_CHECK(len < UINT32_MAX / 4, BB_ERR_ARG, "a pre-token of %zu bytes is too long to encode", len);
    if (b->ignore_merges) {
        const char *key = w;
        size_t klen = len;
        if (b->byte_level) {
            BB_CALL(reserve_buf(e, 2 * len));
            klen = 0;
            for (size_t i = 0; i < len; i++) klen += byte_level_char((unsigned char)w[i], e->buf + klen);
            key = e->buf;
        }
        int id = model_lookup(b, key, klen);
        if (id >= 0) return emit(e, id);
    }
    BB_CALL(reserve_syms(e, len + 1));
    int ns;
    BB_CALL(word_symbols(e, w, len, &ns));
    merge_all(e, w, ns);
    for (int i = 0; i >= 0 && ns > 0; i = e->syms[i].next) {
        const sym *s = &e->syms[i];
        if (s->id >= 0) {
            BB_CALL(emit(e, s->id));
            continue;
        }
        /* BY_SCORE: a character without a token becomes its bytes (llama.cpp) */
        for (uint32_t k = 0; k < s->len; k++) {
            int id = bb_tokenizer_byte_id(e->t, (unsigned char)w[s->start + k]);
            if (id < 0) id = b->unk_id;
            BB_CHECK(id >= 0, BB_ERR_ARG, "byte 0x%02x has no token and the vocabulary has no unknown token",
                     (unsigned char)w[s->start + k]);
            BB_CALL(emit(e, id));
        }
    }
    return BB_OK;
}

static bb_status pretokenize(enc *e, int k, const char *s, size_t len, int first);

/* A piece of a split: bytes [a, b), a regex match or the gap between two. */
typedef struct {
    size_t a, b;
    int match;
} span;

static bb_status push_span(span **v, size_t *n, size_t *cap, size_t a, size_t b, int match) {
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        span *p = realloc(*v, c * sizeof *p);
        BB_CHECK(p, BB_ERR_OOM, "out of memory: %zu pre-token pieces", c);
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = (span){a, b, match};
    return BB_OK;
}

/* The library's split: matches and the gaps between them (an empty match
 * counts: it ends the gap before it), ... */
static bb_status find_spans(enc *e, const pcre2_code *re, const char *s, size_t len, span **v, size_t *n) {
    size_t prev = 0, off = 0, cap = 0;
    while (off < len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, off, 0, e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        BB_CHECK(rc >= 0, BB_ERR_ARG, "pre-tokenizer regex failed (PCRE2 error %d) at byte %zu", rc, off);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev) BB_CALL(push_span(v, n, &cap, prev, ms, 0));
        BB_CALL(push_span(v, n, &cap, ms, me, 1));
        prev = me;
        /* after an empty match the search resumes one character on */
        off = me > ms ? me : ms < len ? ms + utf8_len(s + ms, len - ms) : len + 1;
    }
    if (prev < len) BB_CALL(push_span(v, n, &cap, prev, len, 0));
    return BB_OK;
}

/* ... then folded by the Split behavior (the library's rules, in place) into
 * the pieces that go on to the steps after k. */
static bb_status split_regex(enc *e, int k, const pcre2_code *re, split_behavior beh, const char *s, size_t len,
                             int first) {
    span *v = NULL;
    size_t n = 0, lo = 0, w = 0;
    bb_status st = find_spans(e, re, s, len, &v, &n);
    int prevm = 0;
    if (!st && beh == SPLIT_MERGED_NEXT) {
        /* a match joins the piece after it: fold from the end */
        w = n;
        for (size_t i = n; i-- > 0;) {
            span sp = v[i];
            if (sp.match && !prevm && w < n)
                v[w].a = sp.a;
            else
                v[--w] = sp;
            prevm = sp.match;
        }
        lo = w;
        w = n;
    } else if (!st) {
        for (size_t i = 0; i < n; i++) {
            span sp = v[i];
            int join =
                (beh == SPLIT_MERGED_PREV && sp.match && !prevm) || (beh == SPLIT_CONTIGUOUS && sp.match == prevm);
            prevm = sp.match;
            if (beh == SPLIT_REMOVED && sp.match) continue;
            if (join && w > 0)
                v[w - 1].b = sp.b;
            else
                v[w++] = sp;
        }
    }
    for (size_t i = lo; i < w && !st; i++)
        st = pretokenize(e, k + 1, s + v[i].a, v[i].b - v[i].a, first && v[i].a == 0);
    free(v);
    return st;
}

static bb_status metaspace(enc *e, int k, const pre_step *p, const char *s, size_t len, int first) {
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += s[i] == ' ';
    char *buf;
    BB_CALL(bb_malloc((void **)&buf, len + spaces * p->lrepl + p->lrepl + 1, "metaspace buffer"));
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(buf + o, p->repl, p->lrepl);
            o += p->lrepl;
        } else {
            buf[o++] = s[i];
        }
    }
    int starts = o >= p->lrepl && memcmp(buf, p->repl, p->lrepl) == 0;
    if (!starts && (p->scheme == SCHEME_ALWAYS || (p->scheme == SCHEME_FIRST && first))) {
        memmove(buf + p->lrepl, buf, o);
        memcpy(buf, p->repl, p->lrepl);
        o += p->lrepl;
    }
    bb_status st = BB_OK;
    if (!p->split) {
        st = pretokenize(e, k + 1, buf, o, first);
    } else {
        /* each replacement character starts a new piece (MergedWithNext) */
        size_t from = 0;
        for (size_t i = p->lrepl; i + p->lrepl <= o && !st; i++) {
            if (memcmp(buf + i, p->repl, p->lrepl) != 0) continue;
            st = pretokenize(e, k + 1, buf + from, i - from, first && from == 0);
            from = i;
        }
        if (!st) st = pretokenize(e, k + 1, buf + from, o - from, first && from == 0);
    }
    free(buf);
    return st;
}

/* Pre-tokenizer step k on the piece s (first: it starts the original text). */
static bb_status pretokenize(enc *e, int k, const char *s, size_t len, int first) {
    if (len == 0) return BB_OK; /* the library drops empty pieces */
    if (k == e->b->n_pres) return model_word(e, s, len);
    const pre_step *p = &e->b->pres[k];
    switch (p->type) {
    case PRE_SPLIT: return split_regex(e, k, p->re, p->behavior, s, len, first);
    case PRE_METASPACE: return metaspace(e, k, p, s, len, first);
    case PRE_BYTE_LEVEL:
    default: {
        char *buf = NULL;
        if (p->add_prefix_space && s[0] != ' ') {
            BB_CALL(bb_malloc((void **)&buf, len + 1, "byte-level buffer"));
            buf[0] = ' ';
            memcpy(buf + 1, s, len);
            s = buf;
            len++;
        }
        bb_status st =
            p->re ? split_regex(e, k, p->re, SPLIT_ISOLATED, s, len, first) : pretokenize(e, k + 1, s, len, first);
        free(buf);
        return st;
    }
    }
}

/* Apply the normalizers to s into a malloc'd string. */
static bb_status normalize(const bb_tokenizer_bpe *b, const char *s, size_t len, char **out, size_t *olen) {
    char *cur;
    BB_CALL(bb_malloc((void **)&cur, len + 1, "normalized text"));
    memcpy(cur, s, len);
    size_t n = len;
    for (int i = 0; i < b->n_norms; i++) {
        const norm_step *st = &b->norms[i];
        if (st->type == NORM_PREPEND && n == 0) continue;
        size_t hits = 0;
        if (st->type == NORM_REPLACE && st->la > 0)
            for (size_t j = 0; j + st->la <= n;) {
                if (memcmp(cur + j, st->a, st->la) == 0) {
                    hits++;
                    j += st->la;
                } else {
                    j++;
                }
            }
        size_t cap = st->type == NORM_PREPEND ? n + st->la : n + hits * st->lb;
        char *nx = malloc(cap + 1);
        if (!nx) {
            free(cur);
            return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: normalized text of %zu bytes", cap);
        }
        size_t o = 0;
        if (st->type == NORM_PREPEND) {
            memcpy(nx, st->a, st->la);
            memcpy(nx + st->la, cur, n);
            o = cap;
        } else {
            for (size_t j = 0; j < n;) {
                if (st->la > 0 && j + st->la <= n && memcmp(cur + j, st->a, st->la) == 0) {
                    memcpy(nx + o, st->b, st->lb);
                    o += st->lb;
                    j += st->la;
                } else {
                    nx[o++] = cur[j++];
                }
            }
        }
        free(cur);
        cur = nx;
        n = o;
    }
    *out = cur;
    *olen = n;
    return BB_OK;
}

/* Unicode White_Space, as the library's \s for lstrip/rstrip. */
static int is_space_cp(long c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Start of the whitespace run that ends at s[end]. */
static size_t space_before(const char *s, size_t from, size_t end) {
    size_t i = end;
    while (i > from) {
        size_t j = i - 1;
        while (j > from && ((unsigned char)s[j] & 0xC0) == 0x80 && i - j < 4) j--;
        if (!is_space_cp(utf8_cp(s + j, i - j))) break;
        i = j;
    }
    return i;
}

static size_t space_after(const char *s, size_t start, size_t len) {
    size_t i = start;
    while (i < len) {
        size_t n = utf8_len(s + i, len - i);
        if (!is_space_cp(utf8_cp(s + i, n))) break;
        i += n;
    }
    return i;
}

static int word_char_at(const enc *e, const char *s, size_t len, size_t at) {
    return pcre2_match(e->b->word_re, (PCRE2_SPTR)s, len, at, PCRE2_ANCHORED, e->md, e->mctx) >= 0;
}

/* The longest token of set starting at s[i], or NULL. */
static const added_tok *match_at(const added_set *set, const char *s, size_t len, size_t i) {
    const added_tok *best = NULL;
    int c = (unsigned char)s[i];
    for (int k = set->first[c]; k < set->first[c + 1]; k++) {
        const added_tok *a = &set->v[k];
        if (a->len <= len - i && (!best || a->len > best->len) && memcmp(s + i, a->s, a->len) == 0) best = a;
    }
    return best;
}

static bb_status segment(enc *e, const char *s, size_t len, int first, int stage);

/* Cut the tokens of set out of s (leftmost-longest, as the library's
 * Aho-Corasick automaton); the gaps go on to the next stage. */
static bb_status cut_added(enc *e, const added_set *set, const char *s, size_t len, int first, int stage) {
    size_t done = 0;
    for (size_t i = 0; set->n > 0 && i < len;) {
        const added_tok *a = match_at(set, s, len, i);
        if (!a) {
            i++;
            continue;
        }
        size_t start = i, stop = i + a->len;
        i = stop;
        if (a->single_word) {
            size_t pc = start > 0 ? start - 1 : 0; /* where the character before the match starts */
            while (pc > 0 && ((unsigned char)s[pc] & 0xC0) == 0x80) pc--;
            int word_before = start > 0 && word_char_at(e, s, len, pc);
            int word_after = stop < len && word_char_at(e, s, len, stop);
            if (word_before || word_after) continue;
        }
        if (a->lstrip) {
            size_t ns = space_before(s, 0, start);
            start = ns > done ? ns : done;
        }
        if (a->rstrip) stop = space_after(s, stop, len);
        if (start > done) BB_CALL(segment(e, s + done, start - done, first && done == 0, stage));
        BB_CALL(emit(e, a->id));
        done = i = stop;
    }
    if (done < len) BB_CALL(segment(e, s + done, len - done, first && done == 0, stage));
    return BB_OK;
}

/* stage 0: a gap of the raw text: normalize, then cut the normalized added
 * tokens; stage 1: a normalized gap: pre-tokenize. */
static bb_status segment(enc *e, const char *s, size_t len, int first, int stage) {
    if (len == 0) return BB_OK;
    if (stage == 1) return pretokenize(e, 0, s, len, first);
    if (e->b->n_norms == 0) return cut_added(e, &e->b->normed, s, len, first, 1);
    char *ns;
    size_t nl;
    BB_CALL(normalize(e->b, s, len, &ns, &nl));
    bb_status st = cut_added(e, &e->b->normed, ns, nl, first, 1);
    free(ns);
    return st;
}

bb_status bb_tokenizer_bpe_encode(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **out,
                                  int *nout) {
    const bb_tokenizer_bpe *b = bb_tokenizer_priv(t);
    size_t len = strlen(text);
    BB_CHECK(len < (size_t)INT32_MAX / 4, BB_ERR_ARG, "text of %zu bytes is too long to encode", len);
    enc e = {.t = t, .b = b};
    bb_status st = BB_OK;
    /* one match data for every regex: only the whole match (pair 0) is read, and
     * pcre2_match still fills it when a pattern has more groups than room */
    e.md = pcre2_match_data_create(1, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    e.jit = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!e.md || !e.mctx || !e.jit) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: regex match state");
    if (!st) pcre2_jit_stack_assign(e.mctx, NULL, e.jit);
    int bos = bb_tokenizer_bos_id(t), eos = bb_tokenizer_eos_id(t);
    if (!st && add_bos && b->add_bos && bos >= 0) st = emit(&e, bos);
    if (!st) st = cut_added(&e, &b->raw, text, len, 1, 0);
    if (!st && add_eos && eos >= 0) st = emit(&e, eos);
    if (!st && !e.ids) st = bb_malloc((void **)&e.ids, sizeof *e.ids, "token ids"); /* never NULL on success */
    free(e.syms);
    free(e.heap);
    free(e.buf);
    pcre2_match_data_free(e.md);
    pcre2_match_context_free(e.mctx);
    pcre2_jit_stack_free(e.jit);
    if (st) {
        free(e.ids);
        return bb_trace(st, __FILE__, __LINE__, "encode");
    }
    *out = e.ids;
    *nout = (int)e.n;
    return BB_OK;
}

/* ---- the tokenizer.json kind ---------------------------------------------------- */

static int hf_probe(const void *data, size_t size) {
    const unsigned char *p = data;
    size_t i = size >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF ? 3 : 0;
    while (i < size && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    if (i >= size || p[i] != '{') return 0;
    for (i++; i < size && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'); i++) continue;
    return i < size && (p[i] == '"' || p[i] == '}');
}

typedef enum { DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_BYTE_LEVEL } dec_type;

typedef struct {
    dec_type type;
    const char *a, *b; /* DEC_REPLACE: a -> b (views into the JSON document) */
    size_t la, lb;
} dec_step;

typedef struct {
    const char *label;
    bb_tokenizer *t;
    bb_tokenizer_bpe *b;
    const bb_json *root, *model;
    int n;
    int *src;         /* (n) vocab member index, -2 - added index, or -1 for an id nobody uses */
    uint8_t *special; /* (n) 1 for added tokens marked special: they decode to nothing */
    dec_step dec[8];
    int n_dec;
    int strip; /* a decoder drops the first leading space */
    int bos, eos, add_bos;
} hf_ctx;

/* String member key of obj, or NULL (absent or null); a value of another type is an error. */
static bb_status get_str(const hf_ctx *c, const bb_json *obj, const char *key, const char *where, const char **s,
                         size_t *len) {
    const bb_json *v = bb_json_get(obj, key);
    *s = NULL;
    *len = 0;
    if (bb_json_type(v) == BB_JSON_MISSING || bb_json_type(v) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(bb_json_type(v) == BB_JSON_STRING, BB_ERR_FORMAT, "%s:%u:%u: %s.%s must be a string, found %s", c->label,
             bb_json_line(v), bb_json_col(v), where, key, bb_json_type_name(bb_json_type(v)));
    *s = bb_json_str(v, len);
    return BB_OK;
}

static bb_status get_flag(const hf_ctx *c, const bb_json *obj, const char *key, const char *where, int dflt, int *out) {
    const bb_json *v = bb_json_get(obj, key);
    *out = dflt;
    if (bb_json_type(v) == BB_JSON_MISSING || bb_json_type(v) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(bb_json_type(v) == BB_JSON_BOOL, BB_ERR_FORMAT, "%s:%u:%u: %s.%s must be true or false, found %s",
             c->label, bb_json_line(v), bb_json_col(v), where, key, bb_json_type_name(bb_json_type(v)));
    *out = bb_json_bool(v);
    return BB_OK;
}

/* A component's "type" string. */
static bb_status get_type(const hf_ctx *c, const bb_json *obj, const char *where, const char **type) {
    size_t len;
    BB_CHECK(bb_json_type(obj) == BB_JSON_OBJECT, BB_ERR_FORMAT, "%s:%u:%u: %s must be an object, found %s", c->label,
             bb_json_line(obj), bb_json_col(obj), where, bb_json_type_name(bb_json_type(obj)));
    BB_CALL(get_str(c, obj, "type", where, type, &len));
    BB_CHECK(*type, BB_ERR_FORMAT, "%s:%u:%u: %s has no \"type\"", c->label, bb_json_line(obj), bb_json_col(obj),
             where);
    return BB_OK;
}

static bb_status get_id(const hf_ctx *c, const bb_json *v, const char *what, int64_t *id) {
    BB_CHECK(bb_json_is_int(v), BB_ERR_FORMAT, "%s:%u:%u: %s: the token id must be an integer, found %s", c->label,
             bb_json_line(v), bb_json_col(v), what, bb_json_type_name(bb_json_type(v)));
    BB_CALL(bb_json_int64(v, id));
    BB_CHECK(*id >= 0 && *id < (1 << 26), BB_ERR_FORMAT, "%s:%u:%u: %s: token id %lld is outside 0..%d", c->label,
             bb_json_line(v), bb_json_col(v), what, (long long)*id, (1 << 26) - 1);
    return BB_OK;
}

/* model.vocab and added_tokens into the shared vocabulary. */
static bb_status hf_vocab(hf_ctx *c) {
    const bb_json *vocab = bb_json_get(c->model, "vocab"), *added = bb_json_get(c->root, "added_tokens");
    BB_CHECK(bb_json_type(vocab) == BB_JSON_OBJECT, BB_ERR_FORMAT, "%s: model.vocab is missing or not an object (%s)",
             c->label, bb_json_type_name(bb_json_type(vocab)));
    BB_CHECK(bb_json_type(added) == BB_JSON_MISSING || bb_json_type(added) == BB_JSON_NULL ||
                 bb_json_type(added) == BB_JSON_ARRAY,
             BB_ERR_FORMAT, "%s: added_tokens must be an array, found %s", c->label,
             bb_json_type_name(bb_json_type(added)));
    size_t nv = bb_json_len(vocab), na = bb_json_len(added);
    int64_t max_id = -1, id;
    for (size_t i = 0; i < nv; i++) {
        BB_CALL(get_id(c, bb_json_at(vocab, i), "model.vocab", &id));
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < na; i++) {
        const bb_json *a = bb_json_at(added, i);
        const char *s;
        size_t l;
        BB_CALL(get_str(c, a, "content", "added_tokens[]", &s, &l));
        BB_CHECK(s, BB_ERR_FORMAT, "%s:%u:%u: added token %zu has no content", c->label, bb_json_line(a),
                 bb_json_col(a), i);
        BB_CALL(get_id(c, bb_json_get(a, "id"), "added_tokens[].id", &id));
        if (id > max_id) max_id = id;
    }
    BB_CHECK(max_id >= 0, BB_ERR_FORMAT, "%s: the vocabulary is empty", c->label);
    /* ids leave no room for long runs of unused ids: a corrupt id cannot make us allocate gigabytes */
    BB_CHECK((size_t)max_id < 2 * (nv + na) + 1024, BB_ERR_FORMAT,
             "%s: token id %lld is far beyond the %zu tokens the file lists", c->label, (long long)max_id, nv + na);
    c->n = (int)max_id + 1;
    BB_CALL(bb_malloc((void **)&c->src, (size_t)c->n * sizeof *c->src, "tokenizer id table"));
    BB_CALL(bb_calloc((void **)&c->special, (size_t)c->n, 1, "tokenizer special flags"));
    for (int i = 0; i < c->n; i++) c->src[i] = -1;
    size_t bytes = (size_t)c->n;
    for (size_t i = 0; i < nv; i++) {
        size_t l;
        const char *k = bb_json_key_at(vocab, i, &l);
        bb_json_int64(bb_json_at(vocab, i), &id);
        BB_CHECK(c->src[id] == -1, BB_ERR_FORMAT, "%s: token id %lld is given to \"%s\" and to \"%s\"", c->label,
                 (long long)id, bb_json_key_at(vocab, (size_t)c->src[id], NULL), k);
        c->src[id] = (int)i;
        bytes += l;
    }
    for (size_t i = 0; i < na; i++) {
        const bb_json *a = bb_json_at(added, i);
        size_t l;
        const char *s = bb_json_str(bb_json_get(a, "content"), &l);
        int special;
        bb_json_int64(bb_json_get(a, "id"), &id);
        BB_CALL(get_flag(c, a, "special", "added_tokens[]", 0, &special));
        c->special[id] = (uint8_t)special;
        int o = c->src[id];
        if (o >= 0) {
            size_t lv;
            const char *kv = bb_json_key_at(vocab, (size_t)o, &lv);
            BB_CHECK(lv == l && memcmp(kv, s, l) == 0, BB_ERR_FORMAT,
                     "%s: token id %lld is \"%s\" in model.vocab but \"%s\" in added_tokens", c->label, (long long)id,
                     kv, s);
        } else {
            BB_CHECK(o == -1, BB_ERR_FORMAT, "%s: added_tokens give id %lld twice", c->label, (long long)id);
            bytes += l;
        }
        c->src[id] = o >= 0 ? o : -2 - (int)i;
    }
    char *blob = NULL;
    size_t *off = NULL;
    float *score = NULL;
    bb_status st = bb_malloc((void **)&blob, bytes, "tokenizer pieces");
    if (!st) st = bb_malloc((void **)&off, ((size_t)c->n + 1) * sizeof *off, "tokenizer offsets");
    if (!st) st = bb_calloc((void **)&score, (size_t)c->n, sizeof *score, "tokenizer scores");
    if (st) {
        free(blob);
        free(off);
        free(score);
        return bb_trace(st, __FILE__, __LINE__, "tokenizer arrays");
    }
    size_t o = 0;
    for (int i = 0; i < c->n; i++) {
        const char *p = "";
        size_t l = 0;
        if (c->src[i] >= 0) p = bb_json_key_at(vocab, (size_t)c->src[i], &l);
        if (c->src[i] <= -2) p = bb_json_str(bb_json_get(bb_json_at(added, (size_t)(-2 - c->src[i])), "content"), &l);
        off[i] = o;
        memcpy(blob + o, p, l);
        blob[o + l] = '\0';
        o += l + 1;
    }
    off[c->n] = o;
    BB_CALL(bb_tokenizer_set_vocab(c->t, c->n, blob, off, score));
    return BB_OK;
}

static bb_status hf_normalizer(hf_ctx *c, const bb_json *n, int depth) {
    if (bb_json_type(n) == BB_JSON_MISSING || bb_json_type(n) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(depth < 8, BB_ERR_UNSUPPORTED, "%s: normalizer Sequences nest too deep", c->label);
    const char *type, *a, *b;
    size_t la, lb;
    BB_CALL(get_type(c, n, "normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const bb_json *list = bb_json_get(n, "normalizers");
        BB_CHECK(bb_json_type(list) == BB_JSON_ARRAY, BB_ERR_FORMAT,
                 "%s:%u:%u: normalizer Sequence has no array \"normalizers\"", c->label, bb_json_line(n),
                 bb_json_col(n));
        for (size_t i = 0; i < bb_json_len(list); i++) BB_CALL(hf_normalizer(c, bb_json_at(list, i), depth + 1));
    } else if (strcmp(type, "Prepend") == 0) {
        BB_CALL(get_str(c, n, "prepend", "Prepend", &a, &la));
        BB_CHECK(a, BB_ERR_FORMAT, "%s:%u:%u: Prepend has no string \"prepend\"", c->label, bb_json_line(n),
                 bb_json_col(n));
        BB_CALL(add_norm(c->b, NORM_PREPEND, a, la, NULL, 0, c->label));
    } else if (strcmp(type, "Replace") == 0) {
        const bb_json *pat = bb_json_get(n, "pattern");
        BB_CALL(get_str(c, pat, "String", "Replace.pattern", &a, &la));
        BB_CHECK(a, BB_ERR_UNSUPPORTED, "%s:%u:%u: only a String pattern is supported in the Replace normalizer",
                 c->label, bb_json_line(n), bb_json_col(n));
        BB_CALL(get_str(c, n, "content", "Replace", &b, &lb));
        BB_CHECK(b, BB_ERR_FORMAT, "%s:%u:%u: Replace has no string \"content\"", c->label, bb_json_line(n),
                 bb_json_col(n));
        BB_CALL(add_norm(c->b, NORM_REPLACE, a, la, b, lb, c->label));
    } else if (strcmp(type, "NFC") == 0) {
        /* Composing needs Unicode tables this build does not carry; text that is
         * already NFC (nearly all text) is unchanged by it. */
        bb_warn("%s: the NFC normalizer is not applied: texts must already be in NFC to match the reference", c->label);
    } else {
        return bb_error(BB_ERR_UNSUPPORTED, __FILE__, __LINE__,
                        "%s:%u:%u: normalizer \"%s\" is not supported (Sequence, Prepend, Replace, NFC)", c->label,
                        bb_json_line(n), bb_json_col(n), type);
    }
    return BB_OK;
}

static bb_status hf_pre_tokenizer(hf_ctx *c, const bb_json *p, int depth) {
    if (bb_json_type(p) == BB_JSON_MISSING || bb_json_type(p) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(depth < 8, BB_ERR_UNSUPPORTED, "%s: pre_tokenizer Sequences nest too deep", c->label);
    const char *type;
    BB_CALL(get_type(c, p, "pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const bb_json *list = bb_json_get(p, "pretokenizers");
        BB_CHECK(bb_json_type(list) == BB_JSON_ARRAY, BB_ERR_FORMAT,
                 "%s:%u:%u: pre_tokenizer Sequence has no array \"pretokenizers\"", c->label, bb_json_line(p),
                 bb_json_col(p));
        for (size_t i = 0; i < bb_json_len(list); i++) BB_CALL(hf_pre_tokenizer(c, bb_json_at(list, i), depth + 1));
    } else if (strcmp(type, "Split") == 0) {
        const bb_json *pat = bb_json_get(p, "pattern");
        const char *re, *lit, *beh;
        size_t lre, llit, lbeh;
        int invert;
        BB_CALL(get_str(c, pat, "Regex", "Split.pattern", &re, &lre));
        BB_CALL(get_str(c, pat, "String", "Split.pattern", &lit, &llit));
        BB_CHECK(re || lit, BB_ERR_FORMAT, "%s:%u:%u: Split.pattern must hold a Regex or a String", c->label,
                 bb_json_line(p), bb_json_col(p));
        BB_CALL(get_str(c, p, "behavior", "Split", &beh, &lbeh));
        BB_CALL(get_flag(c, p, "invert", "Split", 0, &invert));
        static const char *const behaviors[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext",
                                                "Contiguous"};
        pre_step s = {.type = PRE_SPLIT, .behavior = SPLIT_ISOLATED};
        int known = 0;
        for (int i = 0; i < 5 && beh; i++)
            if (strcmp(beh, behaviors[i]) == 0) {
                s.behavior = (split_behavior)i;
                known = 1;
            }
        BB_CHECK(known, BB_ERR_FORMAT,
                 "%s:%u:%u: Split behavior \"%s\" is not one of Isolated, Removed, "
                 "MergedWithPrevious, MergedWithNext, Contiguous",
                 c->label, bb_json_line(p), bb_json_col(p), beh ? beh : "(none)");
        BB_CHECK(!invert, BB_ERR_UNSUPPORTED, "%s:%u:%u: Split with invert = true is not supported", c->label,
                 bb_json_line(p), bb_json_col(p));
        BB_CALL(compile_re(re ? re : lit, re ? lre : llit, !re, c->label, &s.re));
        BB_CALL(add_pre(c->b, s, c->label));
    } else if (strcmp(type, "Digits") == 0) {
        /* each numeric character (Rust's char::is_numeric: Nd, Nl, No) is a match */
        int individual;
        BB_CALL(get_flag(c, p, "individual_digits", "Digits", 0, &individual));
        pre_step s = {.type = PRE_SPLIT, .behavior = individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS};
        BB_CALL(compile_re("\\p{N}", 5, 0, c->label, &s.re));
        BB_CALL(add_pre(c->b, s, c->label));
    } else if (strcmp(type, "ByteLevel") == 0) {
        int prefix, use_regex;
        BB_CALL(get_flag(c, p, "add_prefix_space", "ByteLevel", 1, &prefix));
        BB_CALL(get_flag(c, p, "use_regex", "ByteLevel", 1, &use_regex));
        BB_CALL(add_byte_level(c->b, prefix, use_regex, c->label));
    } else if (strcmp(type, "Metaspace") == 0) {
        const char *repl, *scheme;
        size_t lrepl, lscheme;
        int prefix, split;
        BB_CALL(get_str(c, p, "replacement", "Metaspace", &repl, &lrepl));
        BB_CALL(get_str(c, p, "prepend_scheme", "Metaspace", &scheme, &lscheme));
        BB_CALL(get_flag(c, p, "add_prefix_space", "Metaspace", 1, &prefix));
        BB_CALL(get_flag(c, p, "split", "Metaspace", 1, &split));
        BB_CHECK(repl && lrepl > 0 && lrepl == utf8_len(repl, lrepl), BB_ERR_FORMAT,
                 "%s:%u:%u: Metaspace.replacement must be one character", c->label, bb_json_line(p), bb_json_col(p));
        pre_step s = {.type = PRE_METASPACE, .lrepl = lrepl, .split = split, .scheme = SCHEME_ALWAYS};
        memcpy(s.repl, repl, lrepl);
        if (scheme && strcmp(scheme, "first") == 0)
            s.scheme = SCHEME_FIRST;
        else if (scheme && strcmp(scheme, "never") == 0)
            s.scheme = SCHEME_NEVER;
        else
            BB_CHECK(!scheme || strcmp(scheme, "always") == 0, BB_ERR_FORMAT,
                     "%s:%u:%u: Metaspace.prepend_scheme \"%s\" is not always, first or never", c->label,
                     bb_json_line(p), bb_json_col(p), scheme);
        if (!prefix) s.scheme = SCHEME_NEVER;
        BB_CALL(add_pre(c->b, s, c->label));
    } else {
        return bb_error(
            BB_ERR_UNSUPPORTED, __FILE__, __LINE__,
            "%s:%u:%u: pre_tokenizer \"%s\" is not supported (Sequence, Split, Digits, ByteLevel, Metaspace)", c->label,
            bb_json_line(p), bb_json_col(p), type);
    }
    return BB_OK;
}

static bb_status hf_model(hf_ctx *c) {
    const bb_json *m = c->model;
    const char *unk, *prefix, *suffix;
    size_t lunk, lprefix, lsuffix;
    int fuse, fallback, ignore;
    BB_CALL(get_str(c, m, "unk_token", "model", &unk, &lunk));
    BB_CALL(get_str(c, m, "continuing_subword_prefix", "model", &prefix, &lprefix));
    BB_CALL(get_str(c, m, "end_of_word_suffix", "model", &suffix, &lsuffix));
    BB_CALL(get_flag(c, m, "fuse_unk", "model", 0, &fuse));
    BB_CALL(get_flag(c, m, "byte_fallback", "model", 0, &fallback));
    BB_CALL(get_flag(c, m, "ignore_merges", "model", 0, &ignore));
    BB_CHECK(!lprefix && !lsuffix, BB_ERR_UNSUPPORTED,
             "%s: BPE with a continuing_subword_prefix or end_of_word_suffix is not supported", c->label);
    const bb_json *drop = bb_json_get(m, "dropout");
    BB_CHECK(bb_json_type(drop) != BB_JSON_NUMBER || bb_json_num(drop) == 0, BB_ERR_UNSUPPORTED,
             "%s: BPE dropout %g makes encoding random; it is not supported", c->label, bb_json_num(drop));
    int unk_id = -1;
    if (unk) {
        unk_id = model_lookup(c->b, unk, lunk);
        BB_CHECK(unk_id >= 0, BB_ERR_FORMAT, "%s: model.unk_token \"%s\" is not in the vocabulary", c->label, unk);
    }
    bb_tokenizer_bpe_set_options(c->b, ignore, fallback, unk_id, fuse, 0);
    const bb_json *merges = bb_json_get(m, "merges");
    BB_CHECK(bb_json_type(merges) == BB_JSON_ARRAY, BB_ERR_FORMAT, "%s: model.merges is missing or not an array (%s)",
             c->label, bb_json_type_name(bb_json_type(merges)));
    int rank = 0;
    for (size_t i = 0; i < bb_json_len(merges); i++) {
        const bb_json *e = bb_json_at(merges, i);
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (bb_json_type(e) == BB_JSON_STRING) {
            size_t l;
            const char *s = bb_json_str(e, &l);
            if (l >= 8 && memcmp(s, "#version", 8) == 0) continue;
            const char *sp = memchr(s, ' ', l);
            BB_CHECK(sp && !memchr(sp + 1, ' ', l - (size_t)(sp + 1 - s)), BB_ERR_FORMAT,
                     "%s:%u:%u: merge %d \"%s\" is not two tokens separated by one space", c->label, bb_json_line(e),
                     bb_json_col(e), rank, s);
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = l - la - 1;
        } else {
            BB_CHECK(bb_json_type(e) == BB_JSON_ARRAY && bb_json_len(e) == 2 &&
                         bb_json_type(bb_json_at(e, 0)) == BB_JSON_STRING &&
                         bb_json_type(bb_json_at(e, 1)) == BB_JSON_STRING,
                     BB_ERR_FORMAT, "%s:%u:%u: merge %d must be \"a b\" or [\"a\", \"b\"]", c->label, bb_json_line(e),
                     bb_json_col(e), rank);
            a = bb_json_str(bb_json_at(e, 0), &la);
            b = bb_json_str(bb_json_at(e, 1), &lb);
        }
        BB_CALL(bb_tokenizer_bpe_add_merge(c->b, a, la, b, lb, rank, c->label));
        rank++;
    }
    return BB_OK;
}

/* added_tokens: cut out of the raw text, or (normalized: true) out of each
 * normalized segment, matched by their normalized form. */
static bb_status hf_added(hf_ctx *c) {
    const bb_json *added = bb_json_get(c->root, "added_tokens");
    int single = 0;
    for (size_t i = 0; i < bb_json_len(added); i++) {
        const bb_json *a = bb_json_at(added, i);
        int lstrip, rstrip, sw, normed, special;
        int64_t id;
        size_t l;
        const char *s = bb_json_str(bb_json_get(a, "content"), &l);
        bb_json_int64(bb_json_get(a, "id"), &id);
        BB_CALL(get_flag(c, a, "lstrip", "added_tokens[]", 0, &lstrip));
        BB_CALL(get_flag(c, a, "rstrip", "added_tokens[]", 0, &rstrip));
        BB_CALL(get_flag(c, a, "single_word", "added_tokens[]", 0, &sw));
        BB_CALL(get_flag(c, a, "special", "added_tokens[]", 0, &special));
        BB_CALL(get_flag(c, a, "normalized", "added_tokens[]", !special, &normed));
        if (l == 0) continue;
        single |= sw;
        if (normed && c->b->n_norms > 0) {
            char *ns;
            size_t nl;
            BB_CALL(normalize(c->b, s, l, &ns, &nl));
            bb_status st = nl ? add_to_set(&c->b->normed, (int)id, ns, nl, lstrip, rstrip, sw) : BB_OK;
            free(ns);
            BB_CALL(st);
        } else {
            BB_CALL(add_to_set(normed ? &c->b->normed : &c->b->raw, (int)id, s, l, lstrip, rstrip, sw));
        }
    }
    index_set(&c->b->raw);
    index_set(&c->b->normed);
    if (single) BB_CALL(compile_re("\\w", 2, 0, c->label, &c->b->word_re));
    return BB_OK;
}

/* The id of special token `name` in a TemplateProcessing. */
static bb_status template_id(hf_ctx *c, const bb_json *proc, const bb_json *item, int *id) {
    const char *name;
    size_t l;
    BB_CALL(get_str(c, bb_json_get(item, "SpecialToken"), "id", "SpecialToken", &name, &l));
    BB_CHECK(name, BB_ERR_FORMAT, "%s:%u:%u: SpecialToken has no id", c->label, bb_json_line(item), bb_json_col(item));
    const bb_json *ids = bb_json_get(bb_json_get(bb_json_get(proc, "special_tokens"), name), "ids");
    if (bb_json_len(ids) > 0) {
        int64_t v;
        BB_CALL(get_id(c, bb_json_at(ids, 0), "special_tokens.ids", &v));
        BB_CHECK(v < c->n, BB_ERR_FORMAT, "%s: special token %s has id %lld beyond the vocabulary", c->label, name,
                 (long long)v);
        *id = (int)v;
        return BB_OK;
    }
    *id = bb_tokenizer_lookup(c->t, name, l);
    BB_CHECK(*id >= 0, BB_ERR_FORMAT, "%s: the post_processor's special token %s is not in the vocabulary", c->label,
             name);
    return BB_OK;
}

static bb_status hf_post(hf_ctx *c, const bb_json *p, int depth) {
    if (bb_json_type(p) == BB_JSON_MISSING || bb_json_type(p) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(depth < 8, BB_ERR_UNSUPPORTED, "%s: post_processor Sequences nest too deep", c->label);
    const char *type;
    BB_CALL(get_type(c, p, "post_processor", &type));
    if (strcmp(type, "Sequence") == 0) {
        const bb_json *list = bb_json_get(p, "processors");
        for (size_t i = 0; i < bb_json_len(list); i++) BB_CALL(hf_post(c, bb_json_at(list, i), depth + 1));
    } else if (strcmp(type, "TemplateProcessing") == 0) {
        const bb_json *single = bb_json_get(p, "single");
        int seen_seq = 0;
        for (size_t i = 0; i < bb_json_len(single); i++) {
            const bb_json *it = bb_json_at(single, i);
            if (bb_json_get(it, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            if (!bb_json_get(it, "SpecialToken")) continue;
            int id = -1;
            BB_CALL(template_id(c, p, it, &id));
            if (!seen_seq && c->bos < 0) {
                c->bos = id;
                c->add_bos = 1;
            }
            if (seen_seq && c->eos < 0) c->eos = id;
        }
    } else if (strcmp(type, "ByteLevel") != 0) {
        return bb_error(BB_ERR_UNSUPPORTED, __FILE__, __LINE__,
                        "%s:%u:%u: post_processor \"%s\" is not supported (TemplateProcessing, ByteLevel, Sequence)",
                        c->label, bb_json_line(p), bb_json_col(p), type);
    }
    return BB_OK;
}

static bb_status add_dec(hf_ctx *c, dec_step d) {
    BB_CHECK(c->n_dec < 8, BB_ERR_UNSUPPORTED, "%s: more than 8 decoders", c->label);
    c->dec[c->n_dec++] = d;
    return BB_OK;
}

static bb_status hf_decoder(hf_ctx *c, const bb_json *d, int depth) {
    if (bb_json_type(d) == BB_JSON_MISSING || bb_json_type(d) == BB_JSON_NULL) return BB_OK;
    BB_CHECK(depth < 8, BB_ERR_UNSUPPORTED, "%s: decoder Sequences nest too deep", c->label);
    const char *type;
    BB_CALL(get_type(c, d, "decoder", &type));
    if (strcmp(type, "Sequence") == 0) {
        const bb_json *list = bb_json_get(d, "decoders");
        for (size_t i = 0; i < bb_json_len(list); i++) BB_CALL(hf_decoder(c, bb_json_at(list, i), depth + 1));
    } else if (strcmp(type, "Replace") == 0) {
        dec_step s = {.type = DEC_REPLACE};
        BB_CALL(get_str(c, bb_json_get(d, "pattern"), "String", "Replace.pattern", &s.a, &s.la));
        BB_CALL(get_str(c, d, "content", "Replace", &s.b, &s.lb));
        BB_CHECK(s.a && s.la > 0 && s.b, BB_ERR_UNSUPPORTED,
                 "%s:%u:%u: the Replace decoder needs a non-empty String pattern and a content", c->label,
                 bb_json_line(d), bb_json_col(d));
        BB_CALL(add_dec(c, s));
    } else if (strcmp(type, "ByteFallback") == 0) {
        BB_CALL(add_dec(c, (dec_step){.type = DEC_BYTE_FALLBACK}));
    } else if (strcmp(type, "ByteLevel") == 0) {
        BB_CALL(add_dec(c, (dec_step){.type = DEC_BYTE_LEVEL}));
    } else if (strcmp(type, "Metaspace") == 0) {
        dec_step s = {.type = DEC_REPLACE, .b = " ", .lb = 1};
        const char *scheme;
        size_t l;
        int prefix;
        BB_CALL(get_str(c, d, "replacement", "Metaspace", &s.a, &s.la));
        BB_CALL(get_str(c, d, "prepend_scheme", "Metaspace", &scheme, &l));
        BB_CALL(get_flag(c, d, "add_prefix_space", "Metaspace", 1, &prefix));
        BB_CHECK(s.a && s.la > 0, BB_ERR_FORMAT, "%s:%u:%u: Metaspace decoder has no replacement", c->label,
                 bb_json_line(d), bb_json_col(d));
        BB_CALL(add_dec(c, s));
        if (prefix && !(scheme && strcmp(scheme, "never") == 0)) c->strip = 1;
    } else if (strcmp(type, "Strip") == 0) {
        const char *content;
        size_t l;
        const bb_json *start = bb_json_get(d, "start"), *stop = bb_json_get(d, "stop");
        BB_CALL(get_str(c, d, "content", "Strip", &content, &l));
        BB_CHECK(content && l == 1 && content[0] == ' ' && bb_json_is_int(start) && bb_json_num(start) <= 1 &&
                     bb_json_num(stop) == 0,
                 BB_ERR_UNSUPPORTED, "%s:%u:%u: only Strip(\" \", start 0 or 1, stop 0) is supported", c->label,
                 bb_json_line(d), bb_json_col(d));
        c->strip = bb_json_num(start) == 1;
    } else if (strcmp(type, "Fuse") != 0) {
        return bb_error(BB_ERR_UNSUPPORTED, __FILE__, __LINE__,
                        "%s:%u:%u: decoder \"%s\" is not supported (Sequence, Replace, ByteFallback, Fuse, Strip, "
                        "ByteLevel, Metaspace)",
                        c->label, bb_json_line(d), bb_json_col(d), type);
    }
    return BB_OK;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* A growing byte buffer: a decoder may lengthen pieces by any factor its file asks for. */
typedef struct {
    char *p;
    size_t n, cap;
} gbuf;

static bb_status gbuf_put(gbuf *g, const char *s, size_t n) {
    if (n == 0) return BB_OK;
    if (g->n + n > g->cap) {
        size_t cap = g->cap ? g->cap : 256;
        while (cap < g->n + n) cap *= 2;
        char *p = realloc(g->p, cap);
        BB_CHECK(p, BB_ERR_OOM, "out of memory: %zu bytes of decoded pieces", cap);
        g->p = p;
        g->cap = cap;
    }
    memcpy(g->p + g->n, s, n);
    g->n += n;
    return BB_OK;
}

/* One piece through the decoders: the result is in cur->p[0, cur->n). */
static bb_status decode_piece(const hf_ctx *c, const char *p, size_t len, gbuf *cur, gbuf *nxt) {
    cur->n = 0;
    BB_CALL(gbuf_put(cur, p, len));
    for (int k = 0; k < c->n_dec; k++) {
        const dec_step *d = &c->dec[k];
        nxt->n = 0;
        if (d->type == DEC_BYTE_FALLBACK) {
            int hi = cur->n == 6 && memcmp(cur->p, "<0x", 3) == 0 && cur->p[5] == '>' ? hex_digit(cur->p[3]) : -1;
            int lo = hi >= 0 ? hex_digit(cur->p[4]) : -1;
            if (lo < 0) continue;
            char byte = (char)(hi * 16 + lo);
            BB_CALL(gbuf_put(nxt, &byte, 1));
        } else if (d->type == DEC_BYTE_LEVEL) {
            BB_CALL(gbuf_put(nxt, cur->p, cur->n)); /* room: undoing the map never lengthens */
            nxt->n = bb_tokenizer_byte_level_decode(cur->p, cur->n, nxt->p);
        } else {
            for (size_t i = 0; i < cur->n;) {
                if (i + d->la <= cur->n && memcmp(cur->p + i, d->a, d->la) == 0) {
                    BB_CALL(gbuf_put(nxt, d->b, d->lb));
                    i += d->la;
                } else {
                    BB_CALL(gbuf_put(nxt, cur->p + i, 1));
                    i++;
                }
            }
        }
        gbuf t = *cur;
        *cur = *nxt;
        *nxt = t;
    }
    return BB_OK;
}

/* The decoded bytes of every token: special tokens and unused ids give none. */
static bb_status hf_text(hf_ctx *c) {
    gbuf text = {0}, cur = {0}, nxt = {0};
    size_t *off;
    BB_CALL(bb_malloc((void **)&off, ((size_t)c->n + 1) * sizeof *off, "decoded piece offsets"));
    bb_status st = BB_OK;
    for (int i = 0; i < c->n && !st; i++) {
        off[i] = text.n;
        if (c->special[i] || c->src[i] == -1) continue;
        size_t l;
        const char *p = bb_tokenizer_piece(c->t, i, &l);
        st = decode_piece(c, p, l, &cur, &nxt);
        if (!st) st = gbuf_put(&text, cur.p, cur.n);
    }
    off[c->n] = text.n;
    /* non-NULL even when every piece decodes to nothing: its presence selects table decoding */
    if (!st && !text.p) st = bb_malloc((void **)&text.p, 1, "decoded pieces");
    free(cur.p);
    free(nxt.p);
    if (st) {
        free(text.p);
        free(off);
        return bb_trace(st, __FILE__, __LINE__, "decoded pieces");
    }
    bb_tokenizer_set_text(c->t, text.p, off, c->strip ? BB_TOK_STRIP_AT_START : BB_TOK_STRIP_NONE);
    return BB_OK;
}

/* BOS/EOS that no post-processor names: the usual special tokens. */
static int named_special(const hf_ctx *c, const char *const *names) {
    for (int k = 0; names[k]; k++) {
        int id = bb_tokenizer_lookup(c->t, names[k], strlen(names[k]));
        if (id >= 0) return id;
    }
    return -1;
}

static bb_status hf_parse(bb_tokenizer *t, const void *data, size_t size, const char *label) {
    bb_json_doc *doc = NULL;
    BB_CALL(bb_json_parse(data, size, label, &doc));
    hf_ctx c = {.label = label, .t = t, .root = bb_json_root(doc), .bos = -1, .eos = -1};
    const char *type = NULL;
    size_t l;
    bb_status st = BB_OK;
    c.model = bb_json_get(c.root, "model");
    BB_CHECK_GOTO(st, done, bb_json_type(c.model) == BB_JSON_OBJECT, BB_ERR_FORMAT,
                  "%s: no \"model\" object: not a Hugging Face tokenizer.json", label);
    BB_CALL_GOTO(st, done, get_str(&c, c.model, "type", "model", &type, &l));
    /* files older than the "type" tag hold a BPE model when they list merges */
    if (!type && bb_json_get(c.model, "merges")) type = "BPE";
    BB_CHECK_GOTO(st, done, type && strcmp(type, "BPE") == 0, BB_ERR_UNSUPPORTED,
                  "%s: model type \"%s\" is not supported (only BPE)", label, type ? type : "(none)");
    BB_CALL_GOTO(st, done, hf_vocab(&c));
    BB_CALL_GOTO(st, done, bb_tokenizer_bpe_attach(t, BB_BPE_BY_RANK, &c.b));
    for (int i = 0; i < c.n; i++) c.b->model_tok[i] = c.src[i] >= 0;
    BB_CALL_GOTO(st, done, hf_normalizer(&c, bb_json_get(c.root, "normalizer"), 0));
    BB_CALL_GOTO(st, done, hf_pre_tokenizer(&c, bb_json_get(c.root, "pre_tokenizer"), 0));
    BB_CALL_GOTO(st, done, hf_model(&c));
    BB_CALL_GOTO(st, done, hf_added(&c));
    BB_CALL_GOTO(st, done, hf_post(&c, bb_json_get(c.root, "post_processor"), 0));
    BB_CALL_GOTO(st, done, hf_decoder(&c, bb_json_get(c.root, "decoder"), 0));
    BB_CALL_GOTO(st, done, hf_text(&c));
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", NULL};
    if (c.bos < 0) c.bos = named_special(&c, bos_names);
    if (c.eos < 0) c.eos = named_special(&c, eos_names);
    bb_tokenizer_set_control(t, c.bos, c.eos);
    c.b->add_bos = c.add_bos;
done:
    free(c.src);
    free(c.special);
    bb_json_doc_destroy(&doc);
    return st;
}

static bb_status hf_encode(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **ids, int *n) {
    BB_CALL(bb_tokenizer_bpe_encode(t, text, add_bos, add_eos, ids, n));
    return BB_OK;
}

const bb_tokenizer_kind bb_tokenizer_kind_hf_json = {"tokenizer.json", hf_probe, hf_parse, hf_encode};
