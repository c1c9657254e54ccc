/* tokenizer.c — shared vocabulary (hash index, byte fallback, decoding), the kind registry, and the llama2.c kind. */
#include "io/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "core/file.h"

struct bb_tokenizer {
    const bb_tokenizer_kind *kind;
    int n;             /* vocabulary size */
    char *blob;        /* all pieces, each NUL-terminated */
    size_t *off;       /* (n+1) piece i is blob[off[i], off[i+1]-1) */
    float *score;      /* (n) merge priority */
    int32_t *slots;    /* (cap) open-addressing hash index: token id or -1 */
    size_t cap;        /* power of two, at least 2n */
    int byte_id[256];  /* byte-fallback token of each byte, -1 if none */
    int16_t *byte_of;  /* (n) the byte a "<0xAB>" token stands for, -1 for other tokens */
    size_t max_len;    /* longest piece */
    int bos_id, eos_id;
    unsigned char bytes[256]; /* bytes[b] == b: what decoding a byte token points at */
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

bb_status bb_tokenizer_decode_seq(const bb_tokenizer *t, const int *ids, int n, char **text, size_t *len) {
    *text = NULL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t l;
        BB_CALL(bb_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &p, &l));
        total += l;
    }
    char *out;
    BB_CALL(bb_malloc((void **)&out, total + 1, "decoded text"));
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t l;
        bb_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &p, &l);
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

/* Replace ids[i] and ids[i+1] by `merged`. pair[k] is the token the pair
 * (ids[k], ids[k+1]) merges into, -1 if none. */
typedef struct {
    int *ids, *pair;
    int n;
    char *buf; /* 2 * max piece length */
} merge_state;

static int pair_token(const bb_tokenizer *t, merge_state *s, int k) {
    size_t la, lb;
    const char *a = bb_tokenizer_piece(t, s->ids[k], &la), *b = bb_tokenizer_piece(t, s->ids[k + 1], &lb);
    if (la + lb > t->max_len) return -1;
    memcpy(s->buf, a, la);
    memcpy(s->buf + la, b, lb);
    return bb_tokenizer_lookup(t, s->buf, la + lb);
}

/* llama2.c's encoder: dummy-prefix " ", one token per UTF-8 codepoint (byte
 * fallback when the codepoint is not a piece), then repeatedly merge the
 * leftmost adjacent pair whose concatenation is the highest-scoring piece.
 * Pair merges are cached so a merge costs O(n) instead of n lookups. */
static bb_status l2c_encode(const bb_tokenizer *t, const char *text, int add_bos, int add_eos, int **out, int *nout) {
    size_t tl = strlen(text);
    BB_CHECK(tl < (size_t)INT32_MAX - 8, BB_ERR_ARG, "text of %zu bytes is too long to encode", tl);
    merge_state s = {0};
    size_t cap = tl + 3;
    bb_status st = bb_malloc((void **)&s.ids, cap * sizeof *s.ids, "token ids");
    if (!st) st = bb_malloc((void **)&s.pair, cap * sizeof *s.pair, "merge table");
    if (!st) st = bb_malloc((void **)&s.buf, 2 * t->max_len + 1, "merge buffer");
    if (st) goto fail;
    if (add_bos) s.ids[s.n++] = t->bos_id;
    if (tl > 0) {
        int sp = bb_tokenizer_lookup(t, " ", 1);
        if (sp < 0) sp = t->byte_id[' '];
        BB_CHECK_GOTO(st, fail, sp >= 0, BB_ERR_ARG, "the vocabulary has no token for the dummy-prefix space");
        s.ids[s.n++] = sp;
    }
    for (size_t i = 0; i < tl;) {
        /* A codepoint: a lead byte and up to three continuation bytes (run.c caps at 4 bytes). */
        size_t j = i + 1;
        while (j < tl && ((unsigned char)text[j] & 0xC0) == 0x80 && j - i < 4) j++;
        int id = bb_tokenizer_lookup(t, text + i, j - i);
        if (id >= 0) {
            s.ids[s.n++] = id;
        } else {
            for (size_t k = i; k < j; k++) {
                int b = t->byte_id[(unsigned char)text[k]];
                BB_CHECK_GOTO(st, fail, b >= 0, BB_ERR_ARG,
                              "byte 0x%02x at offset %zu has no token and the vocabulary has no byte fallback for it",
                              (unsigned char)text[k], k);
                s.ids[s.n++] = b;
            }
        }
        i = j;
    }
    for (int k = 0; k + 1 < s.n; k++) s.pair[k] = pair_token(t, &s, k);
    for (;;) {
        float best = -1e10f;
        int bi = -1;
        for (int k = 0; k + 1 < s.n; k++)
            if (s.pair[k] >= 0 && t->score[s.pair[k]] > best) {
                best = t->score[s.pair[k]];
                bi = k;
            }
        if (bi < 0) break;
        s.ids[bi] = s.pair[bi];
        memmove(s.ids + bi + 1, s.ids + bi + 2, (size_t)(s.n - bi - 2) * sizeof *s.ids);
        memmove(s.pair + bi + 1, s.pair + bi + 2, (size_t)(s.n > bi + 3 ? s.n - bi - 3 : 0) * sizeof *s.pair);
        s.n--;
        if (bi > 0) s.pair[bi - 1] = pair_token(t, &s, bi - 1);
        if (bi + 1 < s.n) s.pair[bi] = pair_token(t, &s, bi);
    }
    if (add_eos) s.ids[s.n++] = t->eos_id;
    free(s.pair);
    free(s.buf);
    *out = s.ids;
    *nout = s.n;
    return BB_OK;
fail:
    free(s.ids);
    free(s.pair);
    free(s.buf);
    return bb_trace(st, __FILE__, __LINE__, "encode");
}

static const bb_tokenizer_kind kind_llama2c = {"llama2.c", l2c_probe, l2c_parse, l2c_encode};

static const bb_tokenizer_kind *const kinds[] = {&kind_llama2c, NULL};

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
    free(t);
    *pt = NULL;
}

bb_status bb_tokenizer_load_memory(const void *data, size_t size, const char *label, int vocab_size,
                                   bb_tokenizer **out) {
    *out = NULL;
    const bb_tokenizer_kind *kind = NULL;
    for (int i = 0; kinds[i] && !kind; i++)
        if (kinds[i]->probe(data, size)) kind = kinds[i];
    BB_CHECK(kind, BB_ERR_FORMAT, "%s: not a tokenizer file of a known kind (llama2.c tokenizer.bin)", label);
    bb_tokenizer *t;
    BB_CALL(bb_calloc((void **)&t, 1, sizeof *t, "tokenizer"));
    t->kind = kind;
    bb_status st = kind->parse(t, data, size, label);
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
