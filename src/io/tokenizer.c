/* tokenizer.c — shared vocabulary (hash index, byte fallback, decoding), the kind registry, and the llama2.c kind. */
#include "io/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"

struct bb_tokenizer {
    const bb_tokenizer_kind *kind;
    int n;            /* vocabulary size */
    char *blob;       /* all pieces, each NUL-terminated */
    size_t *off;      /* (n+1) piece i is blob[off[i], off[i+1]-1) */
    float *score;     /* (n) merge priority */
    int32_t *slots;   /* (cap) open-addressing hash index: token id or -1 */
    size_t cap;       /* power of two, at least 2n */
    int byte_id[256]; /* byte-fallback token of each byte, -1 if none */
    int16_t *byte_of; /* (n) the byte a "<0xAB>" token stands for, -1 for other tokens */
    size_t max_len;   /* longest piece */
    int bos_id, eos_id;
    unsigned char bytes[256]; /* bytes[b] == b: what decoding a byte token points at */
    char *text;               /* decoded bytes of every token (kinds other than llama2.c), or NULL */
    size_t *text_off;         /* (n+1) token i decodes to text[text_off[i], text_off[i+1]) */
    bb_tokenizer_strip strip;
    void *priv; /* the kind's encoder state */
    void (*priv_free)(void *);
};

/* ---- vocabulary ------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static size_t piece_len(const bb_tokenizer *t, int id) { return t->off[id + 1] - t->off[id] - 1; }

int bb_tokenizer_lookup(const bb_tokenizer *t, const char *s, size_t len) {
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        if (piece_len(t, id) == len && memcmp(t->blob + t->off[id], s, len) == 0) return id;
    }
}

/* "<0xAB>" with two upper-case hex digits, as SentencePiece writes byte tokens. */
static int parse_byte_piece(const char *p, size_t len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

bb_status bb_tokenizer_set_vocab(bb_tokenizer *t, int n, char *blob, size_t *off, float *score) {
    t->blob = blob;
    t->off = off;
    t->score = score;
    t->n = n;
    size_t cap = 16;
    while (cap < 2 * (size_t)n) cap *= 2;
    t->cap = cap;
    BB_CALL(bb_malloc((void **)&t->slots, cap * sizeof *t->slots, "tokenizer index"));
    memset(t->slots, 0xff, cap * sizeof *t->slots);
    BB_CALL(bb_malloc((void **)&t->byte_of, (size_t)n * sizeof *t->byte_of, "tokenizer byte table"));
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->bytes[b] = (unsigned char)b;
    }
    t->max_len = 0;
    for (int id = 0; id < n; id++) {
        const char *p = blob + off[id];
        size_t len = piece_len(t, id);
        if (len > t->max_len) t->max_len = len;
        int b = parse_byte_piece(p, len);
        t->byte_of[id] = (int16_t)b;
        if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = id;
        /* First id wins for repeated pieces, so lookups are deterministic. */
        if (bb_tokenizer_lookup(t, p, len) >= 0) continue;
        size_t mask = cap - 1, i = (size_t)hash_bytes(p, len) & mask;
        while (t->slots[i] >= 0) i = (i + 1) & mask;
        t->slots[i] = id;
    }
    return BB_OK;
}

void bb_tokenizer_set_control(bb_tokenizer *t, int bos_id, int eos_id) {
    t->bos_id = bos_id;
    t->eos_id = eos_id;
}

void bb_tokenizer_set_text(bb_tokenizer *t, char *text, size_t *off, bb_tokenizer_strip strip) {
    free(t->text);
    free(t->text_off);
    t->text = text;
    t->text_off = off;
    t->strip = strip;
}

void bb_tokenizer_set_priv(bb_tokenizer *t, void *priv, void (*free_fn)(void *)) {
    if (t->priv_free) t->priv_free(t->priv);
    t->priv = priv;
    t->priv_free = free_fn;
}

void *bb_tokenizer_priv(const bb_tokenizer *t) { return t->priv; }

/* Grow the vocabulary to v tokens with empty pieces that decode to nothing:
 * models pad their embedding beyond the tokenizer.json's tokens. */
static bb_status pad_vocab(bb_tokenizer *t, int v) {
    size_t extra = (size_t)(v - t->n), blob_end = t->off[t->n];
    char *blob = realloc(t->blob, blob_end + extra);
    if (blob) t->blob = blob;
    size_t *off = blob ? realloc(t->off, ((size_t)v + 1) * sizeof *off) : NULL;
    if (off) t->off = off;
    float *score = off ? realloc(t->score, (size_t)v * sizeof *score) : NULL;
    if (score) t->score = score;
    int16_t *byte_of = score ? realloc(t->byte_of, (size_t)v * sizeof *byte_of) : NULL;
    if (byte_of) t->byte_of = byte_of;
    size_t *toff = byte_of && t->text_off ? realloc(t->text_off, ((size_t)v + 1) * sizeof *toff) : NULL;
    if (toff) t->text_off = toff;
    BB_CHECK(byte_of && (toff || !t->text_off), BB_ERR_OOM, "out of memory: padding the vocabulary to %d tokens", v);
    for (int i = t->n; i < v; i++) {
        t->blob[blob_end + (size_t)(i - t->n)] = '\0';
        t->off[i + 1] = blob_end + (size_t)(i - t->n) + 1;
        t->score[i] = 0;
        t->byte_of[i] = -1;
        if (toff) toff[i + 1] = toff[t->n];
    }
    t->n = v;
    return BB_OK;
}

int bb_tokenizer_byte_id(const bb_tokenizer *t, unsigned char b) { return t->byte_id[b]; }
int bb_tokenizer_vocab_size(const bb_tokenizer *t) { return t->n; }
int bb_tokenizer_bos_id(const bb_tokenizer *t) { return t->bos_id; }
int bb_tokenizer_eos_id(const bb_tokenizer *t) { return t->eos_id; }
const char *bb_tokenizer_kind_name(const bb_tokenizer *t) { return t->kind->name; }
float bb_tokenizer_score(const bb_tokenizer *t, int id) { return t->score[id]; }
size_t bb_tokenizer_max_piece_len(const bb_tokenizer *t) { return t->max_len; }

const char *bb_tokenizer_piece(const bb_tokenizer *t, int id, size_t *len) {
    *len = piece_len(t, id);
    return t->blob + t->off[id];
}

/* ---- decoding --------------------------------------------------------------- */

bb_status bb_tokenizer_decode(const bb_tokenizer *t, int prev, int id, const char **piece, size_t *len) {
    BB_CHECK(id >= 0 && id < t->n, BB_ERR_ARG, "token id %d is outside the vocabulary (0..%d)", id, t->n - 1);
    if (t->text) {
        const char *p = t->text + t->text_off[id];
        size_t n = t->text_off[id + 1] - t->text_off[id];
        int start = prev == t->bos_id && prev >= 0;
        if (t->strip == BB_TOK_STRIP_AT_START) start |= prev < 0;
        if (t->strip != BB_TOK_STRIP_NONE && start && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        *piece = p;
        *len = n;
        return BB_OK;
    }
    if (id == t->bos_id || id == t->eos_id) {
        *piece = "";
        *len = 0;
        return BB_OK;
    }
    if (t->byte_of[id] >= 0) {
        *piece = (const char *)&t->bytes[t->byte_of[id]];
        *len = 1;
        return BB_OK;
    }
    const char *p = t->blob + t->off[id];
    size_t n = piece_len(t, id);
    if (prev == t->bos_id && n > 0 && p[0] == ' ') {
        p++;
        n--;
    }
    *piece = p;
    *len = n;
    return BB_OK;
}

/* The prev to decode ids[i] with. For STRIP_AT_START the text starts at the
 * first token whose piece is not empty and later tokens follow the last such
 * token: special tokens do not count, as the Strip decoder sees the text after
 * they are skipped. *last is -1 before that first token. */
static int seq_prev(const bb_tokenizer *t, const int *ids, int i, int *last) {
    if (!t->text || t->strip != BB_TOK_STRIP_AT_START) return i ? ids[i - 1] : -1;
    int prev = *last;
    if (ids[i] >= 0 && ids[i] < t->n && t->text_off[ids[i] + 1] > t->text_off[ids[i]]) *last = ids[i];
    return prev;
}

bb_status bb_tokenizer_decode_seq(const bb_tokenizer *t, const int *ids, int n, char **text, size_t *len) {
    *text = NULL;
    size_t total = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t l;
        BB_CALL(bb_tokenizer_decode(t, seq_prev(t, ids, i, &last), ids[i], &p, &l));
        total += l;
    }
    char *out;
    BB_CALL(bb_malloc((void **)&out, total + 1, "decoded text"));
    size_t o = 0;
    last = -1;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t l;
        bb_tokenizer_decode(t, seq_prev(t, ids, i, &last), ids[i], &p, &l);
        memcpy(out + o, p, l);
        o += l;
    }
    out[o] = '\0';
    *text = out;
    if (len) *len = o;
    return BB_OK;
}

/* ---- the llama2.c kind -------------------------------------------------------
 * tokenizer.bin: int32 max_token_length, then per token float32 score, int32
 * length, the piece bytes. The token count is not stored: the file ends after
 * the last token. Ids 0, 1, 2 are <unk>, BOS, EOS. */

static int32_t rd_i32(const unsigned char *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int l2c_probe(const void *data, size_t size) { return size >= 4 && rd_i32(data) >= 0; }

static bb_status l2c_parse(bb_tokenizer *t, const void *data, size_t size, const char *label) {
    const unsigned char *p = data;
    BB_CHECK(size >= 4, BB_ERR_FORMAT, "%s: %zu bytes is too short for a llama2.c tokenizer (truncated?)", label, size);
    int32_t max_len = rd_i32(p);
    BB_CHECK(max_len >= 0, BB_ERR_FORMAT, "%s: max_token_length is %d (must be >= 0)", label, (int)max_len);
    /* Pass 1: walk the entries, checking each lies inside the file. */
    size_t pos = 4, blob_bytes = 0;
    int n = 0;
    while (pos < size) {
        BB_CHECK(size - pos >= 8, BB_ERR_FORMAT, "%s: file ends inside the header of token %d (truncated?)", label, n);
        int32_t len = rd_i32(p + pos + 4);
        BB_CHECK(len >= 0 && len <= max_len, BB_ERR_FORMAT,
                 "%s: token %d has length %d, outside 0..max_token_length %d", label, n, (int)len, (int)max_len);
        BB_CHECK((size_t)len <= size - pos - 8, BB_ERR_FORMAT,
                 "%s: token %d needs %d bytes but the file ends after %zu (truncated?)", label, n, (int)len,
                 size - pos - 8);
        BB_CHECK(n < INT32_MAX / 2, BB_ERR_FORMAT, "%s: too many tokens", label);
        pos += 8 + (size_t)len;
        blob_bytes += (size_t)len + 1;
        n++;
    }
    BB_CHECK(n >= 3, BB_ERR_FORMAT, "%s: holds %d tokens; a llama2.c vocabulary has at least <unk>, BOS and EOS", label,
             n);
    char *blob = NULL;
    size_t *off = NULL;
    float *score = NULL;
    bb_status st = bb_malloc((void **)&blob, blob_bytes, "tokenizer pieces");
    if (!st) st = bb_malloc((void **)&off, ((size_t)n + 1) * sizeof *off, "tokenizer offsets");
    if (!st) st = bb_malloc((void **)&score, (size_t)n * sizeof *score, "tokenizer scores");
    if (st) {
        free(blob);
        free(off);
        free(score);
        return bb_trace(st, __FILE__, __LINE__, "tokenizer arrays");
    }
    /* Pass 2: copy (already bounds-checked). */
    pos = 4;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(&score[i], p + pos, sizeof(float));
        size_t len = (size_t)rd_i32(p + pos + 4);
        off[i] = o;
        memcpy(blob + o, p + pos + 8, len);
        blob[o + len] = '\0';
        o += len + 1;
        pos += 8 + len;
    }
    off[n] = o;
    BB_CALL(bb_tokenizer_set_vocab(t, n, blob, off, score));
    bb_tokenizer_set_control(t, 1, 2);
    return BB_OK;
}

/* The token the concatenation of pieces a and b is, -1 if none; buf holds
 * 2 * max piece length bytes. */
static int pair_token(const bb_tokenizer *t, int a, int b, char *buf) {
    size_t la, lb;
    const char *pa = bb_tokenizer_piece(t, a, &la), *pb = bb_tokenizer_piece(t, b, &lb);
    if (la + lb > t->max_len) return -1;
    memcpy(buf, pa, la);
    memcpy(buf + la, pb, lb);
    return bb_tokenizer_lookup(t, buf, la + lb);
}

/* llama2.c merges only pairs scoring above this (its search starts there). */
#define L2C_MIN_SCORE (-1e10f)

/* The ids before merging: optional BOS, the dummy-prefix " ", then one token
 * per UTF-8 codepoint, or its bytes' fallback tokens when the codepoint is no
 * piece. ids has room for strlen(text) + 3. */
static bb_status l2c_split(const bb_tokenizer *t, const char *text, size_t tl, int add_bos, int *ids, int *n) {
    *n = 0;
    if (add_bos) ids[(*n)++] = t->bos_id;
    if (tl > 0) {
        int sp = bb_tokenizer_lookup(t, " ", 1);
        if (sp < 0) sp = t->byte_id[' '];
        BB_CHECK(sp >= 0, BB_ERR_ARG, "the vocabulary has no token for the dummy-prefix space");
        ids[(*n)++] = sp;
    }
    for (size_t i = 0; i < tl;) {
        /* a lead byte and its continuation bytes, at most 4 bytes (as run.c groups them) */
        size_t j = i + 1;
        while (j < tl && ((unsigned char)text[j] & 0xC0) == 0x80 && j - i < 4) j++;
        int id = bb_tokenizer_lookup(t, text + i, j - i);
        if (id >= 0) {
            ids[(*n)++] = id;
        } else {
            for (size_t k = i; k < j; k++) {
                int b = t->byte_id[(unsigned char)text[k]];
                BB_CHECK(b >= 0, BB_ERR_ARG,
                         "byte 0x%02x at offset %zu has no token and the vocabulary has no byte fallback for it",
                         (unsigned char)text[k], k);
                ids[(*n)++] = b;
            }
        }
        i = j;
    }
    return BB_OK;
}

/* A candidate merge of the adjacent nodes left and right into token id. It is
 * stale once either node changed (version) or died. */
typedef struct {
    float score;
    int left, right, id;
    unsigned vl, vr;
} l2c_cand;

/* Heap order: higher score first, then the leftmost pair, which is exactly
 * llama2.c's choice (the first maximum in a left-to-right scan). Nodes never
 * move, so a node's index orders it. */
static int cand_before(const l2c_cand *a, const l2c_cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    l2c_cand *h;
    int n;
} l2c_heap;

static void heap_push(l2c_heap *q, l2c_cand c) {
    int i = q->n++;
    while (i > 0 && cand_before(&c, &q->h[(i - 1) / 2])) {
        q->h[i] = q->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->h[i] = c;
}

static l2c_cand heap_pop(l2c_heap *q) {
    l2c_cand top = q->h[0], last = q->h[--q->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && cand_before(&q->h[c + 1], &q->h[c])) c++;
        if (!cand_before(&q->h[c], &last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    q->h[i] = last;
    return top;
}

typedef struct {
    int *ids, *next, *prev; /* (n) a doubly linked list over the initial tokens */
    unsigned *ver;          /* (n) bumped when a node's token changes or it dies */
    l2c_heap q;             /* capacity 3n: n-1 initial pairs, at most 2 per merge */
    char *buf;
} l2c_merge;

static void push_pair(const bb_tokenizer *t, l2c_merge *m, int l) {
    if (l < 0) return;
    int r = m->next[l];
    if (r < 0) return;
    int id = pair_token(t, m->ids[l], m->ids[r], m->buf);
    if (id >= 0 && t->score[id] > L2C_MIN_SCORE) {
        l2c_cand c = {t->score[id], l, r, id, m->ver[l], m->ver[r]};
        heap_push(&m->q, c);
    }
}

/* Merge with a heap of candidate pairs: O(n log n) instead of llama2.c's
 * O(n^2) rescans, with the same result (l2c_merge_ref). */
static bb_status l2c_merge_fast(const bb_tokenizer *t, int *ids, int *n) {
    int cnt = *n;
    if (cnt < 2) return BB_OK;
    l2c_merge m = {.ids = ids};
    bb_status st = bb_malloc((void **)&m.next, (size_t)cnt * sizeof(int), "merge links");
    if (!st) st = bb_malloc((void **)&m.prev, (size_t)cnt * sizeof(int), "merge links");
    if (!st) st = bb_calloc((void **)&m.ver, (size_t)cnt, sizeof(unsigned), "merge versions");
    if (!st) st = bb_malloc((void **)&m.q.h, 3 * (size_t)cnt * sizeof(l2c_cand), "merge heap");
    if (!st) st = bb_malloc((void **)&m.buf, 2 * t->max_len + 1, "merge buffer");
    if (!st) {
        for (int i = 0; i < cnt; i++) {
            m.next[i] = i + 1 < cnt ? i + 1 : -1;
            m.prev[i] = i - 1;
        }
        for (int i = 0; i + 1 < cnt; i++) push_pair(t, &m, i);
        while (m.q.n > 0) {
            l2c_cand c = heap_pop(&m.q);
            if (m.ver[c.left] != c.vl || m.ver[c.right] != c.vr || m.next[c.left] != c.right) continue;
            /* the right node dies; the left one becomes the merged token */
            ids[c.left] = c.id;
            m.ver[c.left]++;
            m.ver[c.right]++;
            m.next[c.left] = m.next[c.right];
            if (m.next[c.right] >= 0) m.prev[m.next[c.right]] = c.left;
            m.next[c.right] = -1;
            push_pair(t, &m, m.prev[c.left]);
            push_pair(t, &m, c.left);
        }
        int o = 0;
        for (int i = 0; i >= 0; i = m.next[i]) ids[o++] = ids[i];
        *n = o;
    }
    free(m.next);
    free(m.prev);
    free(m.ver);
    free(m.q.h);
    free(m.buf);
    return st;
}

/* The merge loop as run.c writes it: rescan every pair after each merge. */
static bb_status l2c_merge_ref(const bb_tokenizer *t, int *ids, int *n) {
    char *buf;
    BB_CALL(bb_malloc((void **)&buf, 2 * t->max_len + 1, "merge buffer"));
    for (;;) {
        float best = L2C_MIN_SCORE;
        int bi = -1, bid = -1;
        for (int k = 0; k + 1 < *n; k++) {
            int id = pair_token(t, ids[k], ids[k + 1], buf);
            if (id >= 0 && t->score[id] > best) {
                best = t->score[id];
                bi = k;
                bid = id;
            }
        }
        if (bi < 0) break;
        ids[bi] = bid;
        memmove(ids + bi + 1, ids + bi + 2, (size_t)(*n - bi - 2) * sizeof *ids);
        (*n)--;
    }
    free(buf);
    return BB_OK;
}

/* llama2.c's encoder (run.c encode): split, then repeatedly merge the
 * highest-scoring adjacent pair, leftmost on ties; optional EOS. */
static bb_status l2c_encode_with(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int ref, int **out,
                                 int *nout) {
    size_t tl = strlen(text);
    BB_CHECK(tl < (size_t)INT32_MAX / 3 - 8, BB_ERR_ARG, "text of %zu bytes is too long to encode", tl);
    int *ids, n = 0;
    BB_CALL(bb_malloc((void **)&ids, (tl + 3) * sizeof *ids, "token ids"));
    bb_status st = l2c_split(t, text, tl, add_bos, ids, &n);
    if (!st) st = ref ? l2c_merge_ref(t, ids, &n) : l2c_merge_fast(t, ids, &n);
    if (st) {
        free(ids);
        return bb_trace(st, __FILE__, __LINE__, "encode");
    }
    if (add_eos) ids[n++] = t->eos_id;
    *out = ids;
    *nout = n;
    return BB_OK;
}

static bb_status l2c_encode(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **out, int *nout) {
    return l2c_encode_with(t, text, add_bos, add_eos, 0, out, nout);
}

bb_status bb_tokenizer_llama2c_encode_ref(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **ids,
                                          int *n) {
    *ids = NULL;
    *n = 0;
    BB_CHECK(text, BB_ERR_ARG, "no text to encode");
    BB_CALL(l2c_encode_with(t, text, add_bos, add_eos, 1, ids, n));
    return BB_OK;
}

static const bb_tokenizer_kind kind_llama2c = {"llama2.c", l2c_probe, l2c_parse, l2c_encode};

/* tokenizer.json and GGUF probe for their leading bytes ("{", "GGUF") and go
 * first: the llama2.c probe accepts nearly anything. */
static const bb_tokenizer_kind *const kinds[] = {&bb_tokenizer_kind_hf_json, &bb_tokenizer_kind_gguf, &kind_llama2c,
                                                 NULL};

const bb_tokenizer_kind *const *bb_tokenizer_kinds(void) { return kinds; }

/* ---- lifecycle ---------------------------------------------------------------- */

void bb_tokenizer_destroy(bb_tokenizer **pt) {
    if (!pt || !*pt) return;
    bb_tokenizer *t = *pt;
    free(t->blob);
    free(t->off);
    free(t->score);
    free(t->slots);
    free(t->byte_of);
    free(t->text);
    free(t->text_off);
    if (t->priv_free) t->priv_free(t->priv);
    free(t);
    *pt = NULL;
}

/* The checks every loaded tokenizer passes; destroys t on error. */
static bb_status finish_load(bb_tokenizer *t, bb_status st, const char *label, int vocab_size, bb_tokenizer **out) {
    if (!st && vocab_size > 0 && t->n < vocab_size && t->kind == &bb_tokenizer_kind_hf_json)
        st = pad_vocab(t, vocab_size);
    if (!st && vocab_size > 0 && t->n != vocab_size)
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                      "%s holds %d tokens but the model's vocabulary has %d (wrong tokenizer for this model?)", label,
                      t->n, vocab_size);
    if (!st && (t->bos_id >= t->n || t->eos_id >= t->n))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: BOS %d / EOS %d are outside its %d tokens", label,
                      t->bos_id, t->eos_id, t->n);
    if (st) {
        bb_tokenizer_destroy(&t);
        return bb_trace(st, __FILE__, __LINE__, "tokenizer parse");
    }
    *out = t;
    return BB_OK;
}

bb_status bb_tokenizer_build(const bb_tokenizer_kind *kind,
                             bb_status (*fill)(bb_tokenizer *tok, const void *src, const char *label), const void *src,
                             const char *label, int vocab_size, bb_tokenizer **out) {
    *out = NULL;
    bb_tokenizer *t;
    BB_CALL(bb_calloc((void **)&t, 1, sizeof *t, "tokenizer"));
    t->kind = kind;
    t->bos_id = t->eos_id = -1;
    BB_CALL(finish_load(t, fill(t, src, label), label, vocab_size, out));
    return BB_OK;
}

bb_status bb_tokenizer_load_memory(const void *data, size_t size, const char *label, int vocab_size,
                                   bb_tokenizer **out) {
    *out = NULL;
    const bb_tokenizer_kind *kind = NULL;
    for (int i = 0; kinds[i] && !kind; i++)
        if (kinds[i]->probe(data, size)) kind = kinds[i];
    BB_CHECK(kind, BB_ERR_FORMAT,
             "%s: not a tokenizer file of a known kind (llama2.c tokenizer.bin, tokenizer.json, GGUF)", label);
    bb_tokenizer *t;
    BB_CALL(bb_calloc((void **)&t, 1, sizeof *t, "tokenizer"));
    t->kind = kind;
    t->bos_id = t->eos_id = -1;
    BB_CALL(finish_load(t, kind->parse(t, data, size, label), label, vocab_size, out));
    return BB_OK;
}

bb_status bb_tokenizer_load(const char *path, int vocab_size, bb_tokenizer **out) {
    *out = NULL;
    bb_mapped_file mf;
    BB_CALL(bb_file_map(path, &mf));
    bb_status st = bb_tokenizer_load_memory(mf.data, mf.size, path, vocab_size, out);
    bb_file_unmap(&mf);
    if (st) return bb_trace(st, __FILE__, __LINE__, "bb_tokenizer_load_memory");
    return BB_OK;
}

bb_status bb_tokenizer_encode(const bb_tokenizer *tok, const char *text, int add_bos, int add_eos, int **ids, int *n) {
    *ids = NULL;
    *n = 0;
    BB_CHECK(text, BB_ERR_ARG, "no text to encode");
    BB_CALL(tok->kind->encode(tok, text, add_bos, add_eos, ids, n));
    return BB_OK;
}
