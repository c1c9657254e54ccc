/* config.c — YAML configuration: parsing (libyaml), --set overrides, validation, dump, hash and docs. */
#define _GNU_SOURCE
#include "io/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/file.h"
#include "core/sha256.h"

#define CONFIG_FILE_MAX (16u << 20)  /* a config is a few KiB: anything this big is a wrong path */
#define SHOW_MAX 40                  /* bytes of an offending value quoted in a message */
#define FIELD_MAX BB_CONFIG_PATH_MAX /* the largest field; checked against the table */

/* ---- small text helpers ---------------------------------------------- */

/* Quote at most SHOW_MAX bytes of a value for a message, control bytes as '?'. */
static void show(const char *s, size_t len, char *buf, size_t n) {
    size_t m = len < SHOW_MAX ? len : SHOW_MAX;
    size_t j = 0;
    for (size_t i = 0; i < m && j + 1 < n; i++) buf[j++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    buf[j] = '\0';
    if (len > m && j + 4 < n) strcat(buf, "...");
}

static int ieq(const char *a, size_t alen, const char *b) { return alen == strlen(b) && strncasecmp(a, b, alen) == 0; }

/* Decode one UTF-8 code point at s[0..len); returns its length, or 0 if invalid
 * (overlong, surrogate, beyond U+10FFFF or truncated). */
static size_t utf8_decode(const unsigned char *s, size_t len, unsigned *cp) {
    unsigned c = s[0];
    size_t n;
    unsigned min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, min = 0x80, c &= 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, min = 0x800, c &= 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, min = 0x10000, c &= 0x07;
    } else {
        return 0;
    }
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return n;
}

static int utf8_valid(const char *s, size_t len) {
    unsigned cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!n) return 0;
        i += n;
    }
    return 1;
}

/* Edit distance of two short names ignoring case, a swap of neighbours counting
 * as one edit (optimal string alignment); longer names count as far apart. */
static int edit_distance(const char *a, const char *b) {
    enum { L = 64 };
    size_t na = strlen(a), nb = strlen(b);
    if (na >= L || nb >= L) return L;
    int d[L + 1][L + 1];
    for (size_t i = 0; i <= na; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        for (size_t j = 1; j <= nb; j++) {
            int best = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[na][nb];
}

/* Ties between equally distant names go to the one sharing the longer prefix
 * ("prun" is "prune", not "run"). */
static int closer(const char *typed, const char *cand, int d, const char *best, int best_d) {
    if (!best || d < best_d) return 1;
    if (d > best_d) return 0;
    size_t pc = 0, pb = 0;
    while (typed[pc] && typed[pc] == cand[pc]) pc++;
    while (typed[pb] && typed[pb] == best[pb]) pb++;
    return pc > pb;
}

/* A name within this distance of a valid one is probably a typo of it. */
static int close_enough(const char *valid, int d) {
    int len = (int)strlen(valid);
    int limit = len / 3 < 1 ? 1 : (len / 3 > 3 ? 3 : len / 3);
    return d <= limit;
}

static int section_index(const char *name, size_t len) {
    for (int i = 0; i < bb_config_section_count(); i++) {
        const char *s = bb_config_section_at(i)->name;
        if (strlen(s) == len && memcmp(s, name, len) == 0) return i;
    }
    return -1;
}

static const bb_config_key *key_in_section(const char *section, const char *name, size_t len) {
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        if (strcmp(k->section, section) == 0 && strlen(k->key) == len && memcmp(k->key, name, len) == 0) return k;
    }
    return NULL;
}

/* "; did you mean 'x'? Keys of <section>: a, b, c" for an unknown key, or the
 * section list for an unknown section (section == NULL). */
static void suggest(const char *section, const char *typed, size_t typed_len, char *buf, size_t n) {
    char t[64];
    snprintf(t, sizeof t, "%.*s", (int)(typed_len < 63 ? typed_len : 63), typed);
    const char *best = NULL, *best_other = NULL;
    int best_d = 1 << 20;
    buf[0] = '\0';
    if (!section) {
        for (int i = 0; i < bb_config_section_count(); i++) {
            const char *s = bb_config_section_at(i)->name;
            int d = edit_distance(t, s);
            if (close_enough(s, d) && closer(t, s, d, best, best_d)) best = s, best_d = d;
        }
        /* a key written at the top level, without its section */
        for (int i = 0; i < bb_config_key_count() && !best && !best_other; i++)
            if (strcmp(bb_config_key_at(i)->key, t) == 0) best_other = bb_config_key_at(i)->section;
        size_t used = best         ? (size_t)snprintf(buf, n, "; did you mean '%s'?", best)
                      : best_other ? (size_t)snprintf(buf, n, "; '%s' is a key of section %s: indent it under '%s:'", t,
                                                      best_other, best_other)
                                   : 0;
        if (used >= n) return;
        used += (size_t)snprintf(buf + used, n - used, " Sections:");
        for (int i = 0; i < bb_config_section_count() && used < n; i++)
            used += (size_t)snprintf(buf + used, n - used, "%s %s", i ? "," : "", bb_config_section_at(i)->name);
        return;
    }
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        if (strcmp(k->section, section) == 0) {
            int d = edit_distance(t, k->key);
            if (close_enough(k->key, d) && closer(t, k->key, d, best, best_d)) best = k->key, best_d = d;
        } else if (!best_other && strcmp(k->key, t) == 0) {
            best_other = k->section;
        }
    }
    size_t used;
    if (best)
        used = (size_t)snprintf(buf, n, "; did you mean '%s'?", best);
    else if (best_other)
        used = (size_t)snprintf(buf, n, "; did you mean '%s.%s' (a key of section %s)?", best_other, t, best_other);
    else
        used = 0;
    if (used >= n) return;
    used += (size_t)snprintf(buf + used, n - used, " Keys of %s:", section);
    int first = 1;
    for (int i = 0; i < bb_config_key_count() && used < n; i++) {
        const bb_config_key *k = bb_config_key_at(i);
        if (strcmp(k->section, section) != 0) continue;
        used += (size_t)snprintf(buf + used, n - used, "%s %s", first ? "" : ",", k->key);
        first = 0;
    }
}

/* ---- value conversion ------------------------------------------------- */

static void *field(bb_config *cfg, const bb_config_key *k) { return (char *)cfg + k->offset; }
static const void *cfield(const bb_config *cfg, const bb_config_key *k) { return (const char *)cfg + k->offset; }

static void fmt_number(double v, char *buf, size_t n) {
    if (isinf(v))
        snprintf(buf, n, "%sinf", v < 0 ? "-" : "");
    else
        snprintf(buf, n, "%.15g", v);
}

static void fmt_range(const bb_config_key *k, char *buf, size_t n) {
    char lo[32], hi[32];
    fmt_number(k->min, lo, sizeof lo);
    fmt_number(k->max, hi, sizeof hi);
    snprintf(buf, n, "%c%s, %s%c", (k->flags & BB_CFG_MIN_OPEN) || isinf(k->min) ? '(' : '[', lo, hi,
             (k->flags & BB_CFG_MAX_OPEN) || isinf(k->max) ? ')' : ']');
}

static int in_range(const bb_config_key *k, double v) {
    if ((k->flags & BB_CFG_MIN_OPEN) ? !(v > k->min) : !(v >= k->min)) return 0;
    if ((k->flags & BB_CFG_MAX_OPEN) ? !(v < k->max) : !(v <= k->max)) return 0;
    return 1;
}

/* The choice (of "a|b|c") that v names, ignoring case, or NULL; its length in *cl. */
static const char *choice_find(const char *choices, const char *v, size_t len, size_t *cl) {
    for (const char *c = choices; *c;) {
        const char *e = strchr(c, '|');
        *cl = e ? (size_t)(e - c) : strlen(c);
        if (*cl == len && strncasecmp(c, v, len) == 0) return c;
        if (!e) break;
        c = e + 1;
    }
    return NULL;
}

/* "a, b, c" from "a|b|c", and the choice closest to v (or "") into near. */
static void choices_text(const char *choices, const char *v, size_t vlen, char *buf, size_t n, char *near, size_t nn) {
    char t[64];
    snprintf(t, sizeof t, "%.*s", (int)(vlen < 63 ? vlen : 63), v);
    size_t used = 0;
    int best_d = 1 << 20;
    near[0] = '\0';
    for (const char *c = choices; *c && used < n;) {
        const char *e = strchr(c, '|');
        int cl = e ? (int)(e - c) : (int)strlen(c);
        char one[BB_CONFIG_ENUM_MAX + 1];
        snprintf(one, sizeof one, "%.*s", cl, c);
        used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "", one);
        int d = edit_distance(t, one);
        if (close_enough(one, d) && closer(t, one, d, near[0] ? near : NULL, best_d))
            best_d = d, snprintf(near, nn, "%s", one);
        if (!e) break;
        c = e + 1;
    }
}

typedef enum { CONV_OK = 0, CONV_TYPE, CONV_RANGE } conv_result;

static int is_space(char c) { return c == ' ' || c == '\t'; }

static conv_result conv_int(const char *s, size_t len, int64_t *out, char *why, size_t n) {
    char buf[64], shown[SHOW_MAX + 8];
    show(s, len, shown, sizeof shown);
    if (len == 0 || len >= sizeof buf) {
        snprintf(why, n, len ? "expected an integer, found '%s'" : "expected an integer, found an empty value", shown);
        return CONV_TYPE;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    /* strtoll would skip leading white space, YAML escapes can put some there */
    if (end == buf || *end || !(isdigit((unsigned char)buf[0]) || buf[0] == '+' || buf[0] == '-')) {
        snprintf(why, n, "expected an integer, found '%s'", shown);
        return CONV_TYPE;
    }
    if (errno == ERANGE) {
        snprintf(why, n, "%s does not fit a 64-bit integer", shown);
        return CONV_TYPE;
    }
    *out = v;
    return CONV_OK;
}

static conv_result conv_float(const char *s, size_t len, double *out, char *why, size_t n) {
    char buf[128], shown[SHOW_MAX + 8];
    show(s, len, shown, sizeof shown);
    if (len == 0 || len >= sizeof buf) {
        snprintf(why, n, len ? "expected a number, found '%s'" : "expected a number, found an empty value", shown);
        return CONV_TYPE;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (end == buf || *end || !(isdigit((unsigned char)buf[0]) || strchr("+-.", buf[0]))) {
        snprintf(why, n, "expected a number, found '%s'", shown);
        return CONV_TYPE;
    }
    if (!isfinite(v)) {
        snprintf(why, n, "expected a finite number, found '%s'", shown);
        return CONV_TYPE;
    }
    *out = v == 0 ? 0.0 : v; /* one spelling of zero: -0 would dump and hash differently */
    return CONV_OK;
}

static conv_result conv_bool(const char *s, size_t len, bool *out, char *why, size_t n) {
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (ieq(s, len, yes[i])) return *out = true, CONV_OK;
        if (ieq(s, len, no[i])) return *out = false, CONV_OK;
    }
    char shown[SHOW_MAX + 8];
    show(s, len, shown, sizeof shown);
    snprintf(why, n, "expected true or false, found '%s'", shown);
    return CONV_TYPE;
}

static void enum_error(const bb_config_key *k, const char *s, size_t len, char *why, size_t n) {
    char list[256], near[BB_CONFIG_ENUM_MAX + 1], shown[SHOW_MAX + 8];
    choices_text(k->choices, s, len, list, sizeof list, near, sizeof near);
    show(s, len, shown, sizeof shown);
    if (len == 0)
        snprintf(why, n, "expected one of %s, found an empty value", list);
    else if (near[0])
        snprintf(why, n, "'%s' is not one of %s; did you mean '%s'?", shown, list, near);
    else
        snprintf(why, n, "'%s' is not one of %s", shown, list);
}

/* Check a value already in its field's form (range, choices, length): shared by
 * the parsers and by bb_config_validate. */
static conv_result check_stored(const bb_config_key *k, const void *p, char *why, size_t n) {
    char range[96], num[40];
    fmt_range(k, range, sizeof range);
    switch (k->type) {
    case BB_CFG_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        if (in_range(k, (double)v)) return CONV_OK;
        snprintf(why, n, "%lld is outside %s", (long long)v, range);
        return CONV_RANGE;
    }
    case BB_CFG_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        if (isfinite(v) && in_range(k, v)) return CONV_OK;
        fmt_number(v, num, sizeof num);
        snprintf(why, n, "%s is outside %s", num, range);
        return CONV_RANGE;
    }
    case BB_CFG_BOOL: {
        unsigned char b;
        memcpy(&b, p, 1);
        if (b <= 1) return CONV_OK;
        snprintf(why, n, "holds %u, not a bool", b);
        return CONV_TYPE;
    }
    case BB_CFG_STRING:
    case BB_CFG_ENUM: {
        const char *s = p;
        size_t len = strnlen(s, k->size);
        if (len == k->size) {
            snprintf(why, n, "is not NUL-terminated within its %zu bytes", k->size);
            return CONV_TYPE;
        }
        if (k->type == BB_CFG_STRING) {
            if (utf8_valid(s, len)) return CONV_OK;
            snprintf(why, n, "is not valid UTF-8");
            return CONV_TYPE;
        }
        size_t cl;
        const char *c = choice_find(k->choices, s, len, &cl);
        if (c && memcmp(c, s, len) == 0) return CONV_OK; /* the struct holds the canonical spelling */
        enum_error(k, s, len, why, n);
        return CONV_TYPE;
    }
    case BB_CFG_INT_LIST: {
        bb_config_int_list l;
        memcpy(&l, p, sizeof l);
        if (l.n < 1 || l.n > BB_CONFIG_LIST_MAX) {
            snprintf(why, n, "expected a list of 1 to %d integers, found %d", BB_CONFIG_LIST_MAX, l.n);
            return CONV_TYPE;
        }
        for (int i = 0; i < l.n; i++) {
            if (!in_range(k, (double)l.v[i])) {
                snprintf(why, n, "element %d (%lld) is outside %s", i + 1, (long long)l.v[i], range);
                return CONV_TYPE;
            }
            if (i > 0 && l.v[i] <= l.v[i - 1]) {
                snprintf(why, n, "must be strictly increasing, but element %d (%lld) follows %lld", i + 1,
                         (long long)l.v[i], (long long)l.v[i - 1]);
                return CONV_TYPE;
            }
        }
        return CONV_OK;
    }
    default: snprintf(why, n, "has an unknown type in the key table"); return CONV_TYPE;
    }
}

/* Convert the text of a scalar to the key's type into out (k->size bytes) and
 * check it. `null` marks a YAML null (empty or ~ plain scalar): strings take it
 * as "", other types reject it. Lists are handled by their callers. */
static conv_result conv_scalar(const bb_config_key *k, const char *s, size_t len, int null, void *out, char *why,
                               size_t n) {
    conv_result r;
    switch (k->type) {
    case BB_CFG_INT: {
        int64_t v;
        if ((r = conv_int(s, len, &v, why, n))) return r;
        memcpy(out, &v, sizeof v);
        break;
    }
    case BB_CFG_FLOAT: {
        double v;
        if ((r = conv_float(s, len, &v, why, n))) return r;
        memcpy(out, &v, sizeof v);
        break;
    }
    case BB_CFG_BOOL: {
        bool v;
        if ((r = conv_bool(s, len, &v, why, n))) return r;
        memcpy(out, &v, sizeof v);
        break;
    }
    case BB_CFG_ENUM: {
        size_t cl = 0;
        const char *c = choice_find(k->choices, s, null ? 0 : len, &cl);
        if (!c) {
            enum_error(k, s, null ? 0 : len, why, n);
            return CONV_TYPE;
        }
        memset(out, 0, k->size);
        memcpy(out, c, cl < k->size ? cl : k->size - 1); /* "Q4_K" is stored as "q4_k" */
        break;
    }
    case BB_CFG_STRING:
        if (null) len = 0;
        if (memchr(s, '\0', len)) {
            snprintf(why, n, "the value contains a NUL character");
            return CONV_TYPE;
        }
        if (len >= k->size) {
            snprintf(why, n, "the value has %zu bytes, more than the %zu allowed", len, k->size - 1);
            return CONV_TYPE;
        }
        memset(out, 0, k->size);
        memcpy(out, s, len);
        break;
    default: snprintf(why, n, "expected a list of integers like [2, 4, 8], found a scalar"); return CONV_TYPE;
    }
    return check_stored(k, out, why, n);
}

/* "2,3,4" or "[2, 3, 4]" (the --set form and the default text) into a list. */
static conv_result conv_list_text(const bb_config_key *k, const char *s, size_t len, bb_config_int_list *out, char *why,
                                  size_t n) {
    while (len && is_space(*s)) s++, len--;
    while (len && is_space(s[len - 1])) len--;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') s++, len -= 2;
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && is_space(s[a])) a++;
        while (b > a && is_space(s[b - 1])) b--;
        if (out->n == BB_CONFIG_LIST_MAX) {
            snprintf(why, n, "expected a list of 1 to %d integers, found more", BB_CONFIG_LIST_MAX);
            return CONV_TYPE;
        }
        conv_result r = conv_int(s + a, b - a, &out->v[out->n], why, n);
        if (r) return r;
        out->n++;
        i = j + 1;
        if (j < len && i == len) {
            snprintf(why, n, "expected an integer after the last ','");
            return CONV_TYPE;
        }
    }
    return check_stored(k, out, why, n);
}

/* ---- defaults ---------------------------------------------------------- */

bb_status bb_config_defaults(bb_config *cfg) {
    bb_config c;
    memset(&c, 0, sizeof c);
    char why[512];
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        BB_CHECK(k->size <= FIELD_MAX && k->offset + k->size <= sizeof c, BB_ERR_INTERNAL,
                 "config key %s.%s: field of %zu bytes at %zu does not fit", k->section, k->key, k->size, k->offset);
        conv_result r = k->type == BB_CFG_INT_LIST
                            ? conv_list_text(k, k->def, strlen(k->def), field(&c, k), why, sizeof why)
                            : conv_scalar(k, k->def, strlen(k->def), 0, field(&c, k), why, sizeof why);
        BB_CHECK(r == CONV_OK, BB_ERR_INTERNAL, "config key %s.%s: the default '%s' is invalid: %s", k->section, k->key,
                 k->def, why);
    }
    *cfg = c;
    return BB_OK;
}

/* ---- cross-key checks --------------------------------------------------- */

static bb_status validate_named(const bb_config *c, const char *where) {
    char why[512];
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        conv_result r = check_stored(k, cfield(c, k), why, sizeof why);
        BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "%s%s.%s%s%s", where, k->section, k->key, r == CONV_RANGE ? " = " : ": ",
                 why);
    }
    const bb_config_int_list *bc = &c->budget.bits_choices;
    int64_t lo = bc->v[0], hi = bc->v[bc->n - 1];
    BB_CHECK(
        c->budget.target_bits >= (double)lo && c->budget.target_bits <= (double)hi, BB_ERR_CONFIG,
        "%sbudget.target_bits = %g is outside budget.bits_choices [%lld .. %lld]: no mix of those widths averages it",
        where, c->budget.target_bits, (long long)lo, (long long)hi);
    for (int which = 0; which < 2; which++) {
        int64_t b = which ? c->budget.init_bits : c->budget.base_bits;
        int found = 0;
        for (int i = 0; i < bc->n; i++) found |= bc->v[i] == b;
        BB_CHECK(found, BB_ERR_CONFIG, "%sbudget.%s = %lld is not one of budget.bits_choices", where,
                 which ? "init_bits" : "base_bits", (long long)b);
    }
    BB_CHECK(c->budget.base_bits <= c->budget.init_bits, BB_ERR_CONFIG,
             "%sbudget.base_bits = %lld exceeds budget.init_bits = %lld (low-usage blocks get the fewer bits)", where,
             (long long)c->budget.base_bits, (long long)c->budget.init_bits);
    BB_CHECK(c->waves.alpha_start <= c->waves.alpha_end, BB_ERR_CONFIG,
             "%swaves.alpha_start = %g exceeds waves.alpha_end = %g (the threshold rises wave by wave)", where,
             c->waves.alpha_start, c->waves.alpha_end);
    if (!c->scaffold.enabled && strcmp(c->prune.method, "none") != 0 && strcmp(c->prune.pattern, "unstructured") == 0) {
        double reach = 1.0 - pow(1.0 - c->prune.per_wave, (double)c->waves.count);
        BB_CHECK(c->prune.target <= reach + 1e-12, BB_ERR_CONFIG,
                 "%sprune.target = %g cannot be reached: prune.per_wave = %g over waves.count = %lld waves removes at "
                 "most %.4g; raise one of them",
                 where, c->prune.target, c->prune.per_wave, (long long)c->waves.count, reach);
    }
    BB_CHECK(!(c->data.calib[0] && c->data.calib_tokens[0]), BB_ERR_CONFIG,
             "%sdata.calib and data.calib_tokens are both set: give one calibration source", where);
    BB_CHECK(!(c->data.eval[0] && c->data.eval_tokens[0]), BB_ERR_CONFIG,
             "%sdata.eval and data.eval_tokens are both set: give one evaluation source", where);
    BB_CHECK(c->calib.micro_batch <= c->calib.samples, BB_ERR_CONFIG,
             "%scalib.micro_batch = %lld exceeds calib.samples = %lld", where, (long long)c->calib.micro_batch,
             (long long)c->calib.samples);
    BB_CHECK(!(strcmp(c->backend.device, "cpu") == 0 && strcmp(c->backend.comm, "nccl") == 0), BB_ERR_CONFIG,
             "%sbackend.comm = nccl needs GPUs, but backend.device = cpu", where);
    BB_CHECK(!c->lowrank.enabled || c->lowrank.rank_budget > 0, BB_ERR_CONFIG,
             "%slowrank.enabled is true but lowrank.rank_budget is 0: give the factors a share of the budget", where);
    BB_CHECK(!c->heal.train_scales || strcmp(c->quant.method, "none") != 0, BB_ERR_CONFIG,
             "%sheal.train_scales is true but quant.method is none: there are no quantization scales to train", where);
    BB_CHECK(!c->lowrank.enabled || strcmp(c->quant.method, "none") != 0, BB_ERR_CONFIG,
             "%slowrank.enabled is true but quant.method is none: factoring is weighed against the quantized dense "
             "weight; choose quant.method rtn or gptq",
             where);
    BB_CHECK(c->run.name[0] && c->run.dir[0] && c->model.path[0], BB_ERR_CONFIG,
             "%srun.name, run.dir and model.path must not be empty", where);
    return BB_OK;
}

bb_status bb_config_validate(const bb_config *cfg) { return validate_named(cfg, ""); }

/* ---- YAML ---------------------------------------------------------------- */

typedef struct {
    const char *name; /* the file, for messages */
    yaml_document_t *doc;
} walk;

static const char *node_kind(const yaml_node_t *nd) {
    switch (nd->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

static int is_null(const yaml_node_t *nd) {
    if (nd->type != YAML_SCALAR_NODE || nd->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)nd->data.scalar.value;
    size_t len = nd->data.scalar.length;
    return len == 0 || ieq(s, len, "~") || ieq(s, len, "null");
}

#define LOC(w, nd) (w)->name, (int)(nd)->start_mark.line + 1, (int)(nd)->start_mark.column + 1

/* The name of the key of a mapping pair (key and value nodes into *kn, *vn):
 * a scalar, else an error at the key. `in` is the mapping, for locating a
 * broken pair. */
static bb_status pair_nodes(const walk *w, const yaml_node_t *in, const yaml_node_pair_t *p, const char *what,
                            const yaml_node_t **kn, const yaml_node_t **vn, const char **s, size_t *len) {
    *kn = yaml_document_get_node(w->doc, p->key);
    *vn = yaml_document_get_node(w->doc, p->value);
    BB_CHECK(*kn && *vn, BB_ERR_INTERNAL, "%s:%d:%d: libyaml gave a mapping pair without its nodes", LOC(w, in));
    BB_CHECK((*kn)->type == YAML_SCALAR_NODE, BB_ERR_CONFIG, "%s:%d:%d: %s must be a plain name, found %s", LOC(w, *kn),
             what, node_kind(*kn));
    const yaml_node_t *k = *kn;
    *s = (const char *)k->data.scalar.value;
    *len = k->data.scalar.length;
    return BB_OK;
}

/* The earlier pair of the mapping nd whose key has this name, or NULL. */
static const yaml_node_t *earlier_key(const walk *w, const yaml_node_t *nd, const yaml_node_pair_t *upto, const char *s,
                                      size_t len) {
    for (const yaml_node_pair_t *p = nd->data.mapping.pairs.start; p < upto; p++) {
        const yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);
        if (kn && kn->type == YAML_SCALAR_NODE && kn->data.scalar.length == len &&
            memcmp(kn->data.scalar.value, s, len) == 0)
            return kn;
    }
    return NULL;
}

static bb_status apply_value(const walk *w, const bb_config_key *k, const yaml_node_t *vn, bb_config *c) {
    unsigned char tmp[FIELD_MAX];
    char why[512];
    conv_result r;
    if (k->type == BB_CFG_INT_LIST) {
        BB_CHECK(vn->type == YAML_SEQUENCE_NODE, BB_ERR_CONFIG,
                 "%s:%d:%d: %s.%s: expected a list of integers like [2, 4, 8], found %s", LOC(w, vn), k->section,
                 k->key, node_kind(vn));
        bb_config_int_list l;
        memset(&l, 0, sizeof l);
        for (const yaml_node_item_t *it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
            const yaml_node_t *e = yaml_document_get_node(w->doc, *it);
            BB_CHECK(e && e->type == YAML_SCALAR_NODE, BB_ERR_CONFIG,
                     "%s:%d:%d: %s.%s: expected an integer as list element, found %s", LOC(w, e ? e : vn), k->section,
                     k->key, e ? node_kind(e) : "nothing");
            BB_CHECK(l.n < BB_CONFIG_LIST_MAX, BB_ERR_CONFIG, "%s:%d:%d: %s.%s: more than %d elements", LOC(w, e),
                     k->section, k->key, BB_CONFIG_LIST_MAX);
            r = conv_int((const char *)e->data.scalar.value, e->data.scalar.length, &l.v[l.n], why, sizeof why);
            BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "%s:%d:%d: %s.%s: %s", LOC(w, e), k->section, k->key, why);
            l.n++;
            r = check_stored(k, &l, why, sizeof why); /* so a bad element is located at itself */
            BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "%s:%d:%d: %s.%s: %s", LOC(w, e), k->section, k->key, why);
        }
        r = check_stored(k, &l, why, sizeof why);
        BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "%s:%d:%d: %s.%s: %s", LOC(w, vn), k->section, k->key, why);
        memcpy(field(c, k), &l, sizeof l);
        return BB_OK;
    }
    static const char *const expect[BB_CFG_TYPE_COUNT] = {
        [BB_CFG_INT] = "an integer",  [BB_CFG_FLOAT] = "a number", [BB_CFG_BOOL] = "true or false",
        [BB_CFG_STRING] = "a string", [BB_CFG_ENUM] = "one value", [BB_CFG_INT_LIST] = "a list"};
    BB_CHECK(vn->type == YAML_SCALAR_NODE, BB_ERR_CONFIG, "%s:%d:%d: %s.%s: expected %s, found %s", LOC(w, vn),
             k->section, k->key, expect[k->type], node_kind(vn));
    r = conv_scalar(k, (const char *)vn->data.scalar.value, vn->data.scalar.length, is_null(vn), tmp, why, sizeof why);
    BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "%s:%d:%d: %s.%s%s%s", LOC(w, vn), k->section, k->key,
             r == CONV_RANGE ? " = " : ": ", why);
    memcpy(field(c, k), tmp, k->size);
    return BB_OK;
}

static bb_status apply_section(const walk *w, const char *section, const yaml_node_t *vn, bb_config *c) {
    if (is_null(vn)) return BB_OK; /* "prune:" with nothing under it */
    BB_CHECK(vn->type == YAML_MAPPING_NODE, BB_ERR_CONFIG,
             "%s:%d:%d: section '%s' must be a mapping of keys (key: value, indented below it), found %s", LOC(w, vn),
             section, node_kind(vn));
    for (const yaml_node_pair_t *p = vn->data.mapping.pairs.start; p < vn->data.mapping.pairs.top; p++) {
        const yaml_node_t *kk, *kv;
        const char *s;
        size_t len;
        BB_CALL(pair_nodes(w, vn, p, "a key", &kk, &kv, &s, &len));
        char shown[SHOW_MAX + 8];
        show(s, len, shown, sizeof shown);
        const bb_config_key *k = memchr(s, '\0', len) ? NULL : key_in_section(section, s, len);
        if (!k) {
            char hint[600];
            suggest(section, s, len, hint, sizeof hint);
            BB_CHECK(0, BB_ERR_CONFIG, "%s:%d:%d: unknown key '%s.%s'%s", LOC(w, kk), section, shown, hint);
        }
        const yaml_node_t *first = earlier_key(w, vn, p, s, len);
        BB_CHECK(!first, BB_ERR_CONFIG, "%s:%d:%d: duplicate key '%s.%s' (first at line %d, column %d)", LOC(w, kk),
                 section, k->key, (int)first->start_mark.line + 1, (int)first->start_mark.column + 1);
        BB_CALL(apply_value(w, k, kv, c));
    }
    return BB_OK;
}

static bb_status apply_document(const walk *w, bb_config *c) {
    const yaml_node_t *root = yaml_document_get_root_node(w->doc);
    if (!root || is_null(root)) return BB_OK; /* empty file: all defaults */
    BB_CHECK(root->type == YAML_MAPPING_NODE, BB_ERR_CONFIG,
             "%s:%d:%d: the top level must be a mapping of sections (run:, prune:, ...), found %s", LOC(w, root),
             node_kind(root));
    for (const yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const yaml_node_t *kn, *vn;
        const char *s;
        size_t len;
        BB_CALL(pair_nodes(w, root, p, "a section name", &kn, &vn, &s, &len));
        char shown[SHOW_MAX + 8];
        show(s, len, shown, sizeof shown);
        int si = memchr(s, '\0', len) ? -1 : section_index(s, len);
        if (si < 0) {
            char hint[600];
            suggest(NULL, s, len, hint, sizeof hint);
            BB_CHECK(0, BB_ERR_CONFIG, "%s:%d:%d: unknown section '%s'%s", LOC(w, kn), shown, hint);
        }
        const yaml_node_t *first = earlier_key(w, root, p, s, len);
        BB_CHECK(!first, BB_ERR_CONFIG,
                 "%s:%d:%d: duplicate section '%s' (first at line %d, column %d); merge the two into one", LOC(w, kn),
                 shown, (int)first->start_mark.line + 1, (int)first->start_mark.column + 1);
        BB_CALL(apply_section(w, bb_config_section_at(si)->name, vn, c));
    }
    return BB_OK;
}

/* libyaml's reader, scanner or parser error as one located message. */
static bb_status yaml_failure(const yaml_parser_t *ps, const char *name) {
    const char *problem = ps->problem ? ps->problem : "unknown error";
    if (ps->error == YAML_MEMORY_ERROR)
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory parsing %s", name);
    if (ps->error == YAML_READER_ERROR)
        return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "%s: byte offset %zu: %s (the file must be UTF-8 text)",
                        name, ps->problem_offset, problem);
    /* libyaml's usual complaint about a line indented like no key around it */
    const char *hint = strstr(problem, "expected key") ? "; check the indentation of this line" : "";
    if (ps->context)
        return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__,
                        "%s:%d:%d: YAML syntax error: %s %s (at line %d, column %d)%s", name,
                        (int)ps->problem_mark.line + 1, (int)ps->problem_mark.column + 1, problem, ps->context,
                        (int)ps->context_mark.line + 1, (int)ps->context_mark.column + 1, hint);
    return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "%s:%d:%d: YAML syntax error: %s", name,
                    (int)ps->problem_mark.line + 1, (int)ps->problem_mark.column + 1, problem);
}

bb_status bb_config_load_memory(const char *text, size_t len, const char *name, bb_config *cfg) {
    bb_config c;
    BB_CALL(bb_config_defaults(&c));
    if (!name || !*name) name = "<config>";
    yaml_parser_t ps;
    yaml_document_t doc, extra;
    int have_doc = 0, have_extra = 0;
    bb_status st = BB_OK;
    BB_CHECK(yaml_parser_initialize(&ps), BB_ERR_OOM, "out of memory starting the YAML parser for %s", name);
    yaml_parser_set_input_string(&ps, (const unsigned char *)(text ? text : ""), text ? len : 0);
    if (!yaml_parser_load(&ps, &doc)) {
        st = yaml_failure(&ps, name);
        goto done;
    }
    have_doc = 1;
    walk w = {name, &doc};
    BB_CALL_GOTO(st, done, apply_document(&w, &c));
    /* later documents may only be empty ("---" at the end of a file) */
    for (;;) {
        if (!yaml_parser_load(&ps, &extra)) {
            st = yaml_failure(&ps, name);
            goto done;
        }
        have_extra = 1;
        const yaml_node_t *root = yaml_document_get_root_node(&extra);
        if (!root) break; /* end of the stream */
        BB_CHECK_GOTO(st, done, is_null(root), BB_ERR_CONFIG,
                      "%s:%d:%d: a second YAML document ('---'); a config is one document", name,
                      (int)extra.start_mark.line + 1, (int)extra.start_mark.column + 1);
        yaml_document_delete(&extra);
        have_extra = 0;
    }
    char where[300];
    snprintf(where, sizeof where, "%.280s: ", name);
    BB_CALL_GOTO(st, done, validate_named(&c, where));
done:
    if (have_extra) yaml_document_delete(&extra);
    if (have_doc) yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
    if (st == BB_OK) *cfg = c;
    return st;
}

bb_status bb_config_load(const char *path, bb_config *cfg) {
    if (!path || !*path) {
        bb_config c;
        BB_CALL(bb_config_defaults(&c));
        *cfg = c;
        return BB_OK;
    }
    char *text = NULL;
    size_t len = 0;
    BB_CALL(bb_file_read_all(path, CONFIG_FILE_MAX, &text, &len));
    bb_status st = bb_config_load_memory(text, len, path, cfg);
    free(text);
    return st;
}

/* ---- overrides -------------------------------------------------------- */

bb_status bb_config_set(bb_config *cfg, const char *assignment) {
    BB_CHECK(assignment, BB_ERR_ARG, "--set needs section.key=value");
    char shown[256];
    snprintf(shown, sizeof shown, "%s", assignment);
    if (strlen(assignment) >= sizeof shown) strcpy(shown + sizeof shown - 4, "...");
    const char *eq = strchr(assignment, '=');
    BB_CHECK(eq, BB_ERR_CONFIG, "--set %s: expected section.key=value", shown);
    const char *dot = memchr(assignment, '.', (size_t)(eq - assignment));
    size_t nlen = (size_t)(eq - assignment);
    if (!dot) {
        char hint[600];
        int si = section_index(assignment, nlen);
        if (si >= 0)
            suggest(bb_config_section_at(si)->name, "", 0, hint, sizeof hint);
        else
            suggest(NULL, assignment, nlen, hint, sizeof hint);
        BB_CHECK(0, BB_ERR_CONFIG, "--set %s: expected section.key=value%s", shown, hint);
    }
    size_t slen = (size_t)(dot - assignment);
    int si = section_index(assignment, slen);
    if (si < 0) {
        char hint[600];
        suggest(NULL, assignment, slen, hint, sizeof hint);
        BB_CHECK(0, BB_ERR_CONFIG, "--set %s: unknown section '%.*s'%s", shown, (int)(slen < 64 ? slen : 64),
                 assignment, hint);
    }
    const char *section = bb_config_section_at(si)->name;
    const char *kname = dot + 1;
    size_t klen = (size_t)(eq - kname);
    const bb_config_key *k = key_in_section(section, kname, klen);
    if (!k) {
        char hint[600];
        suggest(section, kname, klen, hint, sizeof hint);
        BB_CHECK(0, BB_ERR_CONFIG, "--set %s: unknown key '%s.%.*s'%s", shown, section, (int)(klen < 64 ? klen : 64),
                 kname, hint);
    }
    const char *v = eq + 1;
    size_t vlen = strlen(v);
    if (k->type != BB_CFG_STRING) { /* numbers and names never need the spaces a shell may leave around them */
        while (vlen && is_space(*v)) v++, vlen--;
        while (vlen && is_space(v[vlen - 1])) vlen--;
    }
    unsigned char tmp[FIELD_MAX];
    char why[512];
    conv_result r;
    if (k->type == BB_CFG_INT_LIST) {
        r = conv_list_text(k, v, vlen, (bb_config_int_list *)(void *)tmp, why, sizeof why);
    } else {
        if (k->type == BB_CFG_STRING && !utf8_valid(v, vlen)) {
            snprintf(why, sizeof why, "the value is not valid UTF-8");
            r = CONV_TYPE;
        } else {
            r = conv_scalar(k, v, vlen, 0, tmp, why, sizeof why);
        }
    }
    BB_CHECK(r == CONV_OK, BB_ERR_CONFIG, "--set %s: %s", shown, why);
    memcpy(field(cfg, k), tmp, k->size);
    return BB_OK;
}

/* ---- output ------------------------------------------------------------ */

/* The shortest %.Ng that reads back to the same double, with ".0" when it would
 * otherwise look like an integer. */
static void fmt_double(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEni") && strlen(buf) + 3 <= n) strcat(buf, ".0");
}

/* Code points YAML lets stand raw inside a double-quoted scalar (printable and
 * not a line break such as NEL or U+2028). */
static int yaml_raw_ok(unsigned cp) {
    return (cp >= 0x20 && cp <= 0x7E && cp != '"' && cp != '\\') ||
           (cp >= 0xA0 && cp <= 0xD7FF && cp != 0x2028 && cp != 0x2029) ||
           (cp >= 0xE000 && cp <= 0xFFFD && cp != 0xFEFF) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

static int put(char *buf, size_t n, size_t *used, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int put(char *buf, size_t n, size_t *used, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *used, *used < n ? n - *used : 0, fmt, ap);
    va_end(ap);
    if (w < 0) return -1;
    *used += (size_t)w;
    return *used < n ? 0 : -1;
}

static int quote_string(const char *s, char *buf, size_t n, size_t *used) {
    size_t len = strlen(s);
    if (put(buf, n, used, "\"")) return -1;
    for (size_t i = 0; i < len;) {
        unsigned cp;
        size_t m = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        int rc;
        if (!m) { /* only a hand-filled struct gets here: keep the byte visible */
            rc = put(buf, n, used, "\\x%02X", (unsigned char)s[i]);
            m = 1;
        } else if (yaml_raw_ok(cp)) {
            rc = put(buf, n, used, "%.*s", (int)m, s + i);
        } else if (cp == '"' || cp == '\\') {
            rc = put(buf, n, used, "\\%c", (char)cp);
        } else if (cp == '\n') {
            rc = put(buf, n, used, "\\n");
        } else if (cp == '\t') {
            rc = put(buf, n, used, "\\t");
        } else if (cp < 0x100) {
            rc = put(buf, n, used, "\\x%02X", cp);
        } else if (cp < 0x10000) {
            rc = put(buf, n, used, "\\u%04X", cp);
        } else {
            rc = put(buf, n, used, "\\U%08X", cp);
        }
        if (rc) return -1;
        i += m;
    }
    return put(buf, n, used, "\"");
}

static int enum_plain(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

bb_status bb_config_format_value(const bb_config *cfg, const bb_config_key *k, char *buf, size_t n) {
    BB_CHECK(k && buf && n > 0, BB_ERR_ARG, "bb_config_format_value needs a key and a buffer");
    const void *p = cfield(cfg, k);
    size_t used = 0;
    int rc = 0;
    buf[0] = '\0';
    switch (k->type) {
    case BB_CFG_INT: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        rc = put(buf, n, &used, "%lld", (long long)v);
        break;
    }
    case BB_CFG_FLOAT: {
        double v;
        memcpy(&v, p, sizeof v);
        char num[40];
        fmt_double(v, num, sizeof num);
        rc = put(buf, n, &used, "%s", num);
        break;
    }
    case BB_CFG_BOOL: {
        bool v;
        memcpy(&v, p, sizeof v);
        rc = put(buf, n, &used, "%s", v ? "true" : "false");
        break;
    }
    case BB_CFG_ENUM: {
        char v[BB_CONFIG_ENUM_MAX + 1];
        snprintf(v, sizeof v, "%.*s", (int)strnlen(p, k->size < sizeof v ? k->size : sizeof v - 1), (const char *)p);
        rc = enum_plain(v) ? put(buf, n, &used, "%s", v) : quote_string(v, buf, n, &used);
        break;
    }
    case BB_CFG_STRING: {
        char v[FIELD_MAX + 1];
        size_t len = strnlen(p, k->size < FIELD_MAX ? k->size : FIELD_MAX);
        memcpy(v, p, len);
        v[len] = '\0';
        rc = quote_string(v, buf, n, &used);
        break;
    }
    case BB_CFG_INT_LIST: {
        bb_config_int_list l;
        memcpy(&l, p, sizeof l);
        int m = l.n < 0 ? 0 : (l.n > BB_CONFIG_LIST_MAX ? BB_CONFIG_LIST_MAX : l.n);
        rc = put(buf, n, &used, "[");
        for (int i = 0; i < m && !rc; i++) rc = put(buf, n, &used, "%s%lld", i ? ", " : "", (long long)l.v[i]);
        if (!rc) rc = put(buf, n, &used, "]");
        break;
    }
    default: BB_CHECK(0, BB_ERR_INTERNAL, "config key %s.%s has an unknown type", k->section, k->key);
    }
    BB_CHECK(!rc, BB_ERR_ARG, "the value of %s.%s does not fit in %zu bytes", k->section, k->key, n);
    return BB_OK;
}

/* Canonical text, optionally with comments; both come from here so that the
 * annotated file is the dump plus comments and nothing else. */
static bb_status write_yaml(const bb_config *cfg, FILE *f, int annotate) {
    char value[6 * FIELD_MAX + 8]; /* worst case: every byte escaped */
    const char *cur = NULL;
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        if (!cur || strcmp(cur, k->section) != 0) {
            cur = k->section;
            if (annotate) {
                const bb_config_section *s = bb_config_section_at(section_index(cur, strlen(cur)));
                fprintf(f, "\n# %s\n", s ? s->doc : "");
            }
            fprintf(f, "%s:\n", cur);
        }
        BB_CALL(bb_config_format_value(cfg, k, value, sizeof value));
        if (annotate) {
            char range[96] = "";
            if (k->type == BB_CFG_INT || k->type == BB_CFG_FLOAT || k->type == BB_CFG_INT_LIST)
                fmt_range(k, range, sizeof range);
            fprintf(f, "  # %s%s%s%s%s\n", k->doc, range[0] ? " Range " : "", range,
                    k->type == BB_CFG_ENUM ? " One of " : "", k->type == BB_CFG_ENUM ? k->choices : "");
        }
        fprintf(f, "  %s: %s\n", k->key, value);
    }
    BB_CHECK(!ferror(f), BB_ERR_IO, "writing the configuration failed");
    return BB_OK;
}

bb_status bb_config_dump(const bb_config *cfg, FILE *f) { return write_yaml(cfg, f, 0); }

bb_status bb_config_hash(const bb_config *cfg, char hex[65]) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    BB_CHECK(f, BB_ERR_OOM, "out of memory: cannot buffer the configuration text to hash it");
    bb_status st = write_yaml(cfg, f, 0);
    int closed = fclose(f);
    if (st == BB_OK && closed != 0)
        st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory buffering the configuration text");
    if (st == BB_OK) bb_sha256_hex(text, len, hex);
    free(text);
    return st;
}

bb_status bb_config_write_annotated(const bb_config *cfg, FILE *f) {
    fprintf(f, "# birdbone configuration. Generated from the key table (src/io/config_keys.c);\n"
               "# docs/config.md describes every key. A key left out takes its default, so a\n"
               "# config of your own needs only the lines you change. Override any key on the\n"
               "# command line with --set section.key=value.\n");
    return write_yaml(cfg, f, 1);
}

/* ---- Markdown reference --------------------------------------------------- */

/* Text for a Markdown table cell: '|' would end the cell, '*' start emphasis
 * and '<' an HTML tag. */
static void md_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|' || *s == '*')
            fprintf(f, "\\%c", *s);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

static const char doc_intro[] =
    "# Configuration reference\n"
    "\n"
    "<!-- Generated by bb_config_write_doc() from the key table in src/io/config_keys.c: do not edit.\n"
    "     Regenerate with `cmake --build <build-dir> --target config-doc`; the unit.config test fails\n"
    "     while this file differs from the table. -->\n"
    "\n"
    "birdbone reads its settings from one YAML file: a mapping of sections (`run`, `prune`, `quant`, ...),\n"
    "each a mapping of keys. Every key has a default, so a file holds only what it changes and an empty\n"
    "file is a valid configuration. An unknown section or key (with the closest valid name suggested), a\n"
    "value of the wrong type or out of range, and a duplicate key are errors that point at the file, line\n"
    "and column. After the file, `--set section.key=value` options override single keys with the same\n"
    "checks, and then the cross-key checks below run. The resolved configuration — every key, one\n"
    "canonical spelling — is printed at the start of a run and stored in every checkpoint with its\n"
    "SHA-256: equal hashes mean equal settings, whatever the files looked like. `configs/default.yaml`\n"
    "lists every key at its default with its description; `configs/` also holds presets for stories260K,\n"
    "Llama-2-7B, Llama-3-8B and Llama-2-70B.\n"
    "\n"
    "## Example\n"
    "\n"
    "```yaml\n"
    "run:\n"
    "  name: tiny-sparse\n"
    "  dir: runs/tiny-sparse\n"
    "model:\n"
    "  path: synthetic:tiny\n"
    "prune:\n"
    "  method: sparsegpt\n"
    "  target: 0.3\n"
    "waves:\n"
    "  count: 4\n"
    "budget:\n"
    "  target_bits: 4.5\n"
    "  bits_choices: [4, 5, 6, 8]\n"
    "```\n"
    "\n"
    "and on the command line, for instance `--set model.path=models/llama-2-7b --set prune.target=0.4\n"
    "--set budget.bits_choices=4,8`.\n"
    "\n"
    "## Value types\n"
    "\n"
    "| type | in YAML | with `--set` |\n"
    "|---|---|---|\n"
    "| integer | `128` | `128` |\n"
    "| number | `0.1`, `2e-4` (finite) | same |\n"
    "| bool | `true`, `false` (also `yes`/`no`, `on`/`off`) | same |\n"
    "| string | `runs/a` or `\"runs/a: b\"` (quote text with `: ` or `#`); `~` or nothing = empty | the text after `=` "
    "as is |\n"
    "| enum | one of the listed names, in any case (`Q4_K` is `q4_k`) | same |\n"
    "| list | `[2, 4, 8]` (increasing integers) | `2,4,8` or `[2,4,8]` |\n"
    "\n"
    "Ranges: `[a, b]` includes both ends, `(a, b]` excludes `a`, `inf` means no bound.\n"
    "\n"
    "## Cross-key checks\n"
    "\n"
    "Run after the file and after all `--set` options:\n"
    "\n"
    "- `budget.target_bits` lies between the smallest and the largest of `budget.bits_choices`;\n"
    "  `budget.base_bits` and `budget.init_bits` are among them, and `base_bits <= init_bits`.\n"
    "- `waves.alpha_start <= waves.alpha_end`.\n"
    "- `prune.target` is reachable: `1 - (1 - prune.per_wave)^waves.count >= prune.target` (unstructured\n"
    "  pattern, pruning on, not in scaffold mode).\n"
    "- At most one of `data.calib` and `data.calib_tokens`, and of `data.eval` and `data.eval_tokens`.\n"
    "- `calib.micro_batch <= calib.samples`.\n"
    "- `backend.comm = nccl` needs a GPU device (not `backend.device = cpu`).\n"
    "- `lowrank.enabled` needs `lowrank.rank_budget > 0` and `quant.method` other than `none`.\n"
    "- `heal.train_scales` needs `quant.method` other than `none`.\n"
    "- `run.name`, `run.dir` and `model.path` are not empty.\n";

bb_status bb_config_write_doc(FILE *f) {
    static const char *const type_name[BB_CFG_TYPE_COUNT] = {
        [BB_CFG_INT] = "integer",   [BB_CFG_FLOAT] = "number", [BB_CFG_BOOL] = "bool",
        [BB_CFG_STRING] = "string", [BB_CFG_ENUM] = "enum",    [BB_CFG_INT_LIST] = "list"};
    bb_config def;
    BB_CALL(bb_config_defaults(&def));
    char value[6 * FIELD_MAX + 8];
    fputs(doc_intro, f);
    const char *cur = NULL;
    for (int i = 0; i < bb_config_key_count(); i++) {
        const bb_config_key *k = bb_config_key_at(i);
        if (!cur || strcmp(cur, k->section) != 0) {
            cur = k->section;
            const bb_config_section *s = bb_config_section_at(section_index(cur, strlen(cur)));
            fprintf(f, "\n## %s\n\n", cur);
            if (s) {
                md_cell(f, s->doc);
                fputs("\n\n", f);
            }
            fputs("| key | type | default | range / values | description |\n|---|---|---|---|---|\n", f);
        }
        BB_CALL(bb_config_format_value(&def, k, value, sizeof value));
        fprintf(f, "| `%s.%s` | %s | `%s` | ", k->section, k->key, type_name[k->type], value);
        if (k->type == BB_CFG_INT || k->type == BB_CFG_FLOAT || k->type == BB_CFG_INT_LIST) {
            char range[96];
            fmt_range(k, range, sizeof range);
            fprintf(f, "%s", range);
        } else if (k->type == BB_CFG_ENUM) {
            for (const char *c = k->choices; *c;) {
                const char *e = strchr(c, '|');
                int cl = e ? (int)(e - c) : (int)strlen(c);
                fprintf(f, "%s`%.*s`", c == k->choices ? "" : ", ", cl, c);
                if (!e) break;
                c = e + 1;
            }
        }
        fputs(" | ", f);
        md_cell(f, k->doc);
        fputs(" |\n", f);
    }
    BB_CHECK(!ferror(f), BB_ERR_IO, "writing the configuration reference failed");
    return BB_OK;
}
