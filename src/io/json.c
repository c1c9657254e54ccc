/* json.c — RFC 8259 parser: recursive descent into an arena, hashed object lookup. */
#define _GNU_SOURCE
#include "io/json.h"

#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Objects with more members than this get a hash index; below it a linear
 * scan of a few keys is as fast and costs no memory. */
#define INDEX_MIN_MEMBERS 8

#define VALUE_KINDS "a value (object, array, string, number, true, false or null)"

typedef struct {
    const char *s; /* NUL-terminated, decoded */
    size_t len;
    uint64_t hash;
} json_key;

struct bb_json {
    uint8_t type;   /* bb_json_type */
    uint8_t is_int; /* numbers: u.num.i holds the exact value */
    uint32_t line, col;
    uint32_t index_mask; /* objects with an index: slot count - 1 */
    union {
        int b;
        struct {
            double d;
            int64_t i;
        } num;
        struct {
            const char *s;
            size_t len;
        } str;
        struct {
            bb_json *items;  /* [n] elements, or member values */
            json_key *keys;  /* objects: [n] keys */
            uint32_t *index; /* objects: [index_mask + 1] slots of member index + 1, 0 = empty */
            size_t n;
        } agg;
    } u;
};

typedef struct chunk {
    struct chunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} chunk;

struct bb_json_doc {
    chunk *chunks;
    size_t next_cap;
    bb_json *root;
};

/* A member under construction: its key and where the key was, for the
 * duplicate-key message. */
typedef struct {
    json_key key;
    uint32_t line, col;
} pending_key;

typedef struct {
    const unsigned char *p, *end, *line_start;
    uint32_t line;
    const char *what;
    bb_json_doc *doc;
    bb_json *vals; /* stack of finished values whose container is still open */
    pending_key *keys;
    size_t top, cap;
    locale_t c_locale; /* created on the first non-integer number */
} parser;

/* ---- arena ---------------------------------------------------------------- */

static bb_status arena_alloc(bb_json_doc *doc, size_t n, void **out) {
    n = (n + 15) & ~(size_t)15;
    chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = doc->next_cap > n ? doc->next_cap : n;
        BB_CALL(bb_malloc((void **)&c, sizeof(chunk) + cap, "JSON tree"));
        c->cap = cap;
        c->used = 0;
        c->next = doc->chunks;
        doc->chunks = c;
        if (doc->next_cap < ((size_t)64 << 20)) doc->next_cap *= 2;
    }
    *out = c->data + c->used;
    c->used += n;
    return BB_OK;
}

void bb_json_doc_destroy(bb_json_doc **pdoc) {
    if (!pdoc || !*pdoc) return;
    chunk *c = (*pdoc)->chunks;
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    free(*pdoc);
    *pdoc = NULL;
}

/* ---- errors --------------------------------------------------------------- */

static void describe_byte(const parser *ps, const unsigned char *at, char *buf, size_t n) {
    if (at >= ps->end)
        snprintf(buf, n, "end of input");
    else if (*at > 0x20 && *at < 0x7f)
        snprintf(buf, n, "'%c'", *at);
    else if (*at < 0x20)
        snprintf(buf, n, "control character 0x%02x", *at);
    else
        snprintf(buf, n, "byte 0x%02x", *at);
}

/* Report "<what>:<line>:<col>: expected <...>, found <byte at `at`>" (found_text
 * replaces the byte description when given). */
static bb_status fail_at(const parser *ps, const unsigned char *at, int src_line, const char *found_text,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bb_status fail_at(const parser *ps, const unsigned char *at, int src_line, const char *found_text,
                         const char *fmt, ...) {
    char expected[256], found[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(expected, sizeof expected, fmt, ap);
    va_end(ap);
    if (found_text)
        snprintf(found, sizeof found, "%s", found_text);
    else
        describe_byte(ps, at, found, sizeof found);
    return bb_error(BB_ERR_FORMAT, __FILE__, src_line, "%s:%u:%u: expected %s, found %s", ps->what, ps->line,
                    (unsigned)(at - ps->line_start) + 1, expected, found);
}
#define FAIL(at, ...) return fail_at(ps, (at), __LINE__, NULL, __VA_ARGS__)

/* ---- lexing helpers ------------------------------------------------------- */

static void skip_ws(parser *ps) {
    const unsigned char *p = ps->p, *end = ps->end;
    while (p < end) {
        unsigned char c = *p;
        if (c == '\n') {
            ps->line++;
            ps->line_start = p + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            break;
        }
        p++;
    }
    ps->p = p;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int hex_val(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (which must lie before stop) as a code unit, or -1. */
static long read_hex4(const unsigned char *p, const unsigned char *stop, const unsigned char **bad) {
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int h = p + k < stop ? hex_val(p[k]) : -1;
        if (h < 0) {
            *bad = p + k;
            return -1;
        }
        v = v * 16 + h;
    }
    return v;
}

static size_t put_utf8(unsigned char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of the valid UTF-8 sequence at p (before stop), 0 if invalid:
 * no overlong forms, no encoded surrogates, nothing above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *stop) {
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if ((size_t)(stop - p) < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (p[k] < 0x80 || p[k] > 0xbf) return 0;
    return n;
}

/* Escape letters that stand for one byte. */
static const char simple_escapes[0x80] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b', ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t'};

/* *p is at a backslash-u escape (before stop); writes its UTF-8 to *o, joining
 * a surrogate pair, and advances both. */
static bb_status decode_u_escape(parser *ps, const unsigned char **pp, const unsigned char *stop, unsigned char **po) {
    const unsigned char *p = *pp, *bad;
    long cu = read_hex4(p + 2, stop, &bad);
    if (cu < 0) FAIL(bad, "4 hex digits after \\u");
    uint32_t cp = (uint32_t)cu;
    if (cu >= 0xdc00 && cu <= 0xdfff) {
        char found[48];
        snprintf(found, sizeof found, "unpaired low surrogate \\u%04lx", cu);
        return fail_at(ps, p, __LINE__, found, "a high surrogate \\ud800-\\udbff before it");
    }
    p += 6;
    if (cu >= 0xd800 && cu <= 0xdbff) {
        long lo = -1;
        if (p + 1 < stop && p[0] == '\\' && p[1] == 'u') lo = read_hex4(p + 2, stop, &bad);
        if (lo < 0xdc00 || lo > 0xdfff) FAIL(p, "a low surrogate \\udc00-\\udfff after high surrogate \\u%04lx", cu);
        cp = 0x10000u + (((uint32_t)cu - 0xd800u) << 10) + ((uint32_t)lo - 0xdc00u);
        p += 6;
    }
    *po += put_utf8(*po, cp);
    *pp = p;
    return BB_OK;
}

/* ps->p is at the opening quote. Decodes into the arena; ps->p ends after the
 * closing quote. */
static bb_status parse_string(parser *ps, const char **out, size_t *out_len) {
    const unsigned char *open = ps->p, *q = ps->p + 1;
    /* Escapes never expand, so the raw span bounds the decoded size. A raw
     * control character ends the scan: it is an error, reported in place
     * (before any newline in it could shift the line count). */
    while (q < ps->end && *q != '"' && *q >= 0x20) q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end)
        FAIL(q, "'\"' to close the string that starts at column %u", (unsigned)(open - ps->line_start) + 1);
    if (*q != '"') FAIL(q, "a string character (control characters must be escaped)");
    const unsigned char *stop = q;
    unsigned char *buf;
    BB_CALL(arena_alloc(ps->doc, (size_t)(stop - open), (void **)&buf));
    unsigned char *o = buf;
    const unsigned char *p = open + 1;
    while (p < stop) {
        unsigned char c = *p;
        if (c == '\\') {
            unsigned char e = p + 1 < ps->end ? p[1] : 0;
            if (e < 0x80 && simple_escapes[e]) {
                *o++ = (unsigned char)simple_escapes[e];
                p += 2;
            } else if (e == 'u') {
                BB_CALL(decode_u_escape(ps, &p, stop, &o));
            } else {
                FAIL(p + 1, "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) after '\\'");
            }
        } else if (c < 0x20) {
            FAIL(p, "a string character (control characters must be escaped)");
        } else if (c < 0x80) {
            *o++ = c;
            p++;
        } else {
            size_t n = utf8_seq_len(p, stop);
            if (!n) FAIL(p, "valid UTF-8 in the string");
            memcpy(o, p, n);
            o += n;
            p += n;
        }
    }
    *o = '\0';
    *out = (const char *)buf;
    *out_len = (size_t)(o - buf);
    ps->p = stop + 1;
    return BB_OK;
}

static bb_status parse_number(parser *ps, bb_json *v) {
    const unsigned char *s = ps->p, *p = s, *end = ps->end;
    int neg = 0, integral = 1;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') FAIL(p, "a digit%s", neg ? " after '-'" : "");
    const unsigned char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9') FAIL(p, "'.', 'e' or the end of the number after a leading 0");
    } else {
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    const unsigned char *digits_end = p;
    if (p < end && *p == '.') {
        integral = 0;
        p++;
        if (p >= end || *p < '0' || *p > '9') FAIL(p, "a digit after '.'");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') FAIL(p, "a digit in the exponent");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    v->type = BB_JSON_NUMBER;
    if (integral) {
        uint64_t u = 0;
        int over = 0;
        for (const unsigned char *d = digits; d < digits_end; d++) {
            unsigned dig = (unsigned)(*d - '0');
            if (u > (UINT64_MAX - dig) / 10)
                over = 1;
            else
                u = u * 10 + dig;
        }
        const uint64_t lim = (uint64_t)INT64_MAX + (neg ? 1u : 0u);
        if (!over && u <= lim) {
            int64_t i = neg ? (u == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)u) : (int64_t)u;
            v->is_int = 1;
            v->u.num.i = i;
            v->u.num.d = (neg && u == 0) ? -0.0 : (double)i;
            ps->p = p;
            return BB_OK;
        }
    }
    if (!ps->c_locale) {
        ps->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        BB_CHECK(ps->c_locale, BB_ERR_OOM, "out of memory: cannot create the C locale to read JSON numbers");
    }
    size_t n = (size_t)(p - s);
    char small[64], *tmp = small;
    if (n >= sizeof small) BB_CALL(bb_malloc((void **)&tmp, n + 1, "JSON number text"));
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d = strtod_l(tmp, NULL, ps->c_locale);
    if (tmp != small) free(tmp);
    if (!isfinite(d)) {
        char found[96];
        snprintf(found, sizeof found, "%.*s%s", n > 40 ? 40 : (int)n, (const char *)s, n > 40 ? "..." : "");
        return fail_at(ps, s, __LINE__, found, "a number within the range of a double");
    }
    v->u.num.d = d;
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) {
        v->is_int = 1;
        v->u.num.i = (int64_t)d;
    }
    ps->p = p;
    return BB_OK;
}

static bb_status parse_literal(parser *ps, const char *lit) {
    size_t n = strlen(lit);
    for (size_t k = 0; k < n; k++)
        if (ps->p + k >= ps->end || ps->p[k] != (unsigned char)lit[k]) FAIL(ps->p + k, "'%s'", lit);
    ps->p += n;
    return BB_OK;
}

/* ---- tree building -------------------------------------------------------- */

static bb_status push(parser *ps, bb_json **slot) {
    if (ps->top == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 256;
        bb_json *vals = realloc(ps->vals, cap * sizeof *vals);
        BB_CHECK(vals, BB_ERR_OOM, "out of memory: JSON parse stack needs %zu bytes", cap * sizeof *vals);
        ps->vals = vals;
        pending_key *keys = realloc(ps->keys, cap * sizeof *keys);
        BB_CHECK(keys, BB_ERR_OOM, "out of memory: JSON parse stack needs %zu bytes", cap * sizeof *keys);
        ps->keys = keys;
        ps->cap = cap;
    }
    *slot = &ps->vals[ps->top++];
    memset(*slot, 0, sizeof **slot);
    return BB_OK;
}

static int key_eq(const json_key *a, const char *s, size_t len, uint64_t hash) {
    return a->hash == hash && a->len == len && memcmp(a->s, s, len) == 0;
}

static bb_status duplicate_key(const parser *ps, const pending_key *first, const pending_key *dup) {
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                    "%s:%u:%u: expected keys unique within an object, found duplicate key \"%.64s\"%s (first at "
                    "line %u, column %u)",
                    ps->what, dup->line, dup->col, first->key.s, first->key.len > 64 ? "..." : "", first->line,
                    first->col);
}

/* Move the values (and keys) above base on the stack into arena arrays of the
 * container v, index the keys of big objects and reject duplicates. */
static bb_status close_container(parser *ps, size_t base, bb_json *v) {
    size_t n = ps->top - base;
    v->u.agg.n = n;
    if (n == 0) return BB_OK;
    size_t bytes;
    BB_CHECK(!bb_mul_overflow(n, sizeof(bb_json), &bytes), BB_ERR_OOM, "out of memory: JSON container of %zu items", n);
    BB_CALL(arena_alloc(ps->doc, bytes, (void **)&v->u.agg.items));
    memcpy(v->u.agg.items, ps->vals + base, bytes);
    if (v->type != BB_JSON_OBJECT) return BB_OK;
    const pending_key *pk = ps->keys + base;
    json_key *keys;
    BB_CALL(arena_alloc(ps->doc, n * sizeof *keys, (void **)&keys));
    for (size_t i = 0; i < n; i++) keys[i] = pk[i].key;
    v->u.agg.keys = keys;
    if (n <= INDEX_MIN_MEMBERS) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (key_eq(&keys[j], keys[i].s, keys[i].len, keys[i].hash)) return duplicate_key(ps, &pk[j], &pk[i]);
        return BB_OK;
    }
    BB_CHECK(n < (size_t)UINT32_MAX / 4, BB_ERR_UNSUPPORTED, "%s: an object of %zu members is too large", ps->what, n);
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    uint32_t *index;
    BB_CALL(arena_alloc(ps->doc, slots * sizeof *index, (void **)&index));
    memset(index, 0, slots * sizeof *index);
    size_t mask = slots - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s = (size_t)keys[i].hash & mask;
        while (index[s]) {
            size_t j = index[s] - 1;
            if (key_eq(&keys[j], keys[i].s, keys[i].len, keys[i].hash)) return duplicate_key(ps, &pk[j], &pk[i]);
            s = (s + 1) & mask;
        }
        index[s] = (uint32_t)(i + 1);
    }
    v->u.agg.index = index;
    v->index_mask = (uint32_t)mask;
    return BB_OK;
}

static bb_status parse_value(parser *ps, int depth);

static bb_status parse_array(parser *ps, int depth, uint32_t line, uint32_t col) {
    size_t base = ps->top;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            BB_CALL(parse_value(ps, depth + 1));
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ']') {
                ps->p++;
                break;
            }
            if (ps->p >= ps->end || *ps->p != ',') FAIL(ps->p, "',' or ']' after an array element");
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ']') FAIL(ps->p, "a value after ',' (no trailing commas in JSON)");
        }
    }
    bb_json arr = {.type = BB_JSON_ARRAY, .line = line, .col = col};
    BB_CALL(close_container(ps, base, &arr));
    ps->top = base;
    bb_json *slot;
    BB_CALL(push(ps, &slot));
    *slot = arr;
    return BB_OK;
}

static bb_status parse_object(parser *ps, int depth, uint32_t line, uint32_t col) {
    size_t base = ps->top;
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            if (ps->p >= ps->end || *ps->p != '"')
                FAIL(ps->p, "a string key%s", ps->top == base ? " or '}'" : " after ','");
            pending_key k = {.line = ps->line, .col = (uint32_t)(ps->p - ps->line_start) + 1};
            BB_CALL(parse_string(ps, &k.key.s, &k.key.len));
            k.key.hash = hash_bytes(k.key.s, k.key.len);
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') FAIL(ps->p, "':' after the object key");
            ps->p++;
            BB_CALL(parse_value(ps, depth + 1));
            ps->keys[ps->top - 1] = k;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                break;
            }
            if (ps->p >= ps->end || *ps->p != ',') FAIL(ps->p, "',' or '}' after an object member");
            ps->p++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == '}') FAIL(ps->p, "a string key after ',' (no trailing commas in JSON)");
        }
    }
    bb_json obj = {.type = BB_JSON_OBJECT, .line = line, .col = col};
    BB_CALL(close_container(ps, base, &obj));
    ps->top = base;
    bb_json *slot;
    BB_CALL(push(ps, &slot));
    *slot = obj;
    return BB_OK;
}

/* Parse one value at ps->p (after whitespace) and push it on the stack. */
static bb_status parse_value(parser *ps, int depth) {
    skip_ws(ps);
    uint32_t line = ps->line, col = (uint32_t)(ps->p - ps->line_start) + 1;
    if (ps->p >= ps->end) FAIL(ps->p, "%s", VALUE_KINDS);
    unsigned char c = *ps->p;
    if (c == '[' || c == '{') {
        if (depth >= BB_JSON_MAX_DEPTH) FAIL(ps->p, "at most %d nested arrays and objects", BB_JSON_MAX_DEPTH);
        return c == '[' ? parse_array(ps, depth, line, col) : parse_object(ps, depth, line, col);
    }
    bb_json v = {.line = line, .col = col};
    if (c == '"') {
        v.type = BB_JSON_STRING;
        BB_CALL(parse_string(ps, &v.u.str.s, &v.u.str.len));
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        BB_CALL(parse_number(ps, &v));
    } else if (c == 't' || c == 'f') {
        BB_CALL(parse_literal(ps, c == 't' ? "true" : "false"));
        v.type = BB_JSON_BOOL;
        v.u.b = c == 't';
    } else if (c == 'n') {
        BB_CALL(parse_literal(ps, "null"));
        v.type = BB_JSON_NULL;
    } else {
        FAIL(ps->p, "%s", VALUE_KINDS);
    }
    bb_json *slot;
    BB_CALL(push(ps, &slot));
    *slot = v;
    return BB_OK;
}

bb_status bb_json_parse(const char *text, size_t len, const char *what, bb_json_doc **out) {
    *out = NULL;
    BB_CHECK(text || len == 0, BB_ERR_ARG, "bb_json_parse: no text");
    bb_json_doc *doc;
    BB_CALL(bb_calloc((void **)&doc, 1, sizeof *doc, "JSON document"));
    doc->next_cap = (size_t)64 << 10;
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    parser ps = {.p = s, .end = s + len, .line_start = s, .line = 1, .what = what ? what : "JSON", .doc = doc};
    if (len >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf) ps.p += 3;
    bb_status st = parse_value(&ps, 0);
    if (!st) {
        skip_ws(&ps);
        if (ps.p < ps.end) st = fail_at(&ps, ps.p, __LINE__, NULL, "the end of input after the top-level value");
    }
    if (!st) st = arena_alloc(doc, sizeof(bb_json), (void **)&doc->root);
    if (!st) *doc->root = ps.vals[0];
    free(ps.vals);
    free(ps.keys);
    if (ps.c_locale) freelocale(ps.c_locale);
    if (st) {
        bb_json_doc_destroy(&doc);
        return bb_trace(st, __FILE__, __LINE__, "bb_json_parse");
    }
    *out = doc;
    return BB_OK;
}

/* ---- accessors ------------------------------------------------------------ */

const bb_json *bb_json_root(const bb_json_doc *doc) { return doc ? doc->root : NULL; }

bb_json_kind bb_json_type(const bb_json *v) { return v ? (bb_json_kind)v->type : BB_JSON_MISSING; }

const char *bb_json_type_name(bb_json_kind t) {
    static const char *const names[BB_JSON_TYPE_COUNT] = {
        [BB_JSON_MISSING] = "missing", [BB_JSON_NULL] = "null",       [BB_JSON_BOOL] = "a boolean",
        [BB_JSON_NUMBER] = "a number", [BB_JSON_STRING] = "a string", [BB_JSON_ARRAY] = "an array",
        [BB_JSON_OBJECT] = "an object"};
    return (int)t >= 0 && t < BB_JSON_TYPE_COUNT ? names[t] : "?";
}

uint32_t bb_json_line(const bb_json *v) { return v ? v->line : 0; }
uint32_t bb_json_col(const bb_json *v) { return v ? v->col : 0; }

static int is_agg(const bb_json *v) { return v && (v->type == BB_JSON_ARRAY || v->type == BB_JSON_OBJECT); }

size_t bb_json_len(const bb_json *v) { return is_agg(v) ? v->u.agg.n : 0; }

const bb_json *bb_json_at(const bb_json *v, size_t i) {
    return is_agg(v) && i < v->u.agg.n ? &v->u.agg.items[i] : NULL;
}

const char *bb_json_key_at(const bb_json *v, size_t i, size_t *len) {
    if (len) *len = 0;
    if (!v || v->type != BB_JSON_OBJECT || i >= v->u.agg.n) return NULL;
    if (len) *len = v->u.agg.keys[i].len;
    return v->u.agg.keys[i].s;
}

long bb_json_find(const bb_json *obj, const char *key, size_t len) {
    if (!obj || obj->type != BB_JSON_OBJECT || !key) return -1;
    uint64_t h = hash_bytes(key, len);
    const json_key *keys = obj->u.agg.keys;
    if (!obj->u.agg.index) {
        for (size_t i = 0; i < obj->u.agg.n; i++)
            if (key_eq(&keys[i], key, len, h)) return (long)i;
        return -1;
    }
    size_t mask = obj->index_mask;
    for (size_t s = (size_t)h & mask; obj->u.agg.index[s]; s = (s + 1) & mask) {
        size_t i = obj->u.agg.index[s] - 1;
        if (key_eq(&keys[i], key, len, h)) return (long)i;
    }
    return -1;
}

const bb_json *bb_json_get_n(const bb_json *obj, const char *key, size_t len) {
    long i = bb_json_find(obj, key, len);
    return i < 0 ? NULL : &obj->u.agg.items[i];
}

const bb_json *bb_json_get(const bb_json *obj, const char *key) {
    return key ? bb_json_get_n(obj, key, strlen(key)) : NULL;
}

const char *bb_json_str(const bb_json *v, size_t *len) {
    int ok = v && v->type == BB_JSON_STRING;
    if (len) *len = ok ? v->u.str.len : 0;
    return ok ? v->u.str.s : NULL;
}

double bb_json_num(const bb_json *v) { return v && v->type == BB_JSON_NUMBER ? v->u.num.d : NAN; }

int bb_json_is_int(const bb_json *v) { return v && v->type == BB_JSON_NUMBER && v->is_int; }

bb_status bb_json_int64(const bb_json *v, int64_t *out) {
    *out = 0;
    if (bb_json_is_int(v)) {
        *out = v->u.num.i;
        return BB_OK;
    }
    if (v && v->type == BB_JSON_NUMBER)
        BB_CHECK(0, BB_ERR_FORMAT, "JSON value at line %u, column %u: expected an integer, found the number %.17g",
                 v->line, v->col, v->u.num.d);
    BB_CHECK(0, BB_ERR_FORMAT, "JSON value at line %u, column %u: expected an integer, found %s", bb_json_line(v),
             bb_json_col(v), bb_json_type_name(bb_json_type(v)));
}

int bb_json_bool(const bb_json *v) { return v && v->type == BB_JSON_BOOL ? v->u.b : -1; }
