/* test_json.c — JSON parser: values, escapes, surrogates, numbers, lookup, nesting limit, every error path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/json.h"
#include "test.h"

static bb_json_doc *parse_ok(const char *text, size_t len) {
    bb_json_doc *doc = NULL;
    EXPECT_OK(bb_json_parse(text, len, "t.json", &doc));
    return doc;
}
#define PARSE(lit) parse_ok((lit), sizeof(lit) - 1)

/* text must fail with a message containing needle ("t.json:L:C: expected ..."). */
static void parse_fails(const char *text, size_t len, const char *needle) {
    bb_json_doc *doc = (bb_json_doc *)&doc;
    EXPECT_ERR(bb_json_parse(text, len, "t.json", &doc), BB_ERR_FORMAT, needle);
    EXPECT(doc == NULL, "failed parse of \"%.*s\" left a document", (int)len, text);
}
#define FAILS(lit, needle) parse_fails((lit), sizeof(lit) - 1, (needle))

static void test_scalars(void) {
    bb_json_doc *d = PARSE(" null ");
    EXPECT(bb_json_type(bb_json_root(d)) == BB_JSON_NULL, "null");
    bb_json_doc_destroy(&d);
    EXPECT(d == NULL, "destroy nulls the pointer");
    bb_json_doc_destroy(&d);
    d = PARSE("true");
    EXPECT(bb_json_bool(bb_json_root(d)) == 1, "true");
    bb_json_doc_destroy(&d);
    d = PARSE("\t\r\nfalse\n");
    EXPECT(bb_json_bool(bb_json_root(d)) == 0, "false");
    EXPECT(bb_json_line(bb_json_root(d)) == 2 && bb_json_col(bb_json_root(d)) == 1, "position %u:%u",
           bb_json_line(bb_json_root(d)), bb_json_col(bb_json_root(d)));
    bb_json_doc_destroy(&d);
    d = PARSE("\xef\xbb\xbf\"bom\"");
    EXPECT(bb_json_str(bb_json_root(d), NULL) && strcmp(bb_json_str(bb_json_root(d), NULL), "bom") == 0, "BOM skipped");
    bb_json_doc_destroy(&d);
    /* The input need not be NUL-terminated: only len bytes are read. */
    d = parse_ok("12345", 3);
    EXPECT(bb_json_num(bb_json_root(d)) == 123, "length-bounded parse gives %g", bb_json_num(bb_json_root(d)));
    bb_json_doc_destroy(&d);
}

static void test_numbers(void) {
    static const struct {
        const char *text;
        double d;
        int is_int;
        int64_t i;
    } cases[] = {
        {"0", 0, 1, 0},
        {"-0", -0.0, 1, 0},
        {"123", 123, 1, 123},
        {"-123", -123, 1, -123},
        {"1.5", 1.5, 0, 0},
        {"-0.25", -0.25, 0, 0},
        {"1e3", 1000, 1, 1000},
        {"2.0", 2, 1, 2},
        {"1E-2", 0.01, 0, 0},
        {"12.5e+1", 125, 1, 125},
        {"9007199254740993", 9007199254740992.0, 1, 9007199254740993LL},
        {"9223372036854775807", 9223372036854775807.0, 1, INT64_MAX},
        {"-9223372036854775808", -9223372036854775808.0, 1, INT64_MIN},
        {"9223372036854775808", 9223372036854775808.0, 0, 0},
        {"1e19", 1e19, 0, 0},
        {"123456789012345678901234567890", 1.2345678901234568e29, 0, 0},
        {"1e-400", 0, 1, 0},
        {"0.1", 0.1, 0, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bb_json_doc *d = parse_ok(cases[k].text, strlen(cases[k].text));
        const bb_json *v = bb_json_root(d);
        EXPECT(bb_json_type(v) == BB_JSON_NUMBER, "%s is a number", cases[k].text);
        EXPECT(bb_json_num(v) == cases[k].d, "%s parses to %.17g, expected %.17g", cases[k].text, bb_json_num(v),
               cases[k].d);
        EXPECT(bb_json_is_int(v) == cases[k].is_int, "%s is_int %d", cases[k].text, bb_json_is_int(v));
        int64_t i = -7;
        if (cases[k].is_int) {
            EXPECT_OK(bb_json_int64(v, &i));
            EXPECT(i == cases[k].i, "%s as int64 is %lld", cases[k].text, (long long)i);
        } else {
            EXPECT_ERR(bb_json_int64(v, &i), BB_ERR_FORMAT, "expected an integer, found the number");
            EXPECT(i == 0, "failed int64 sets 0");
        }
        bb_json_doc_destroy(&d);
    }
    bb_json_doc *d = PARSE("-0");
    EXPECT(signbit(bb_json_num(bb_json_root(d))), "-0 keeps its sign");
    bb_json_doc_destroy(&d);
    /* A long number goes through the heap copy for strtod. */
    char big[303];
    memset(big, '1', 300);
    memcpy(big + 300, ".5", 3);
    d = parse_ok(big, strlen(big));
    EXPECT(bb_json_num(bb_json_root(d)) > 1.1e299 && bb_json_num(bb_json_root(d)) < 1.12e299, "long number %g",
           bb_json_num(bb_json_root(d)));
    bb_json_doc_destroy(&d);
}

static void test_strings(void) {
    static const struct {
        const char *text;
        const char *want;
        size_t len;
    } cases[] = {
        {"\"plain\"", "plain", 5},
        {"\"\"", "", 0},
        {"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4},
        {"\"a\\u0000b\"", "a\0b", 3},
        {"\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 12},
        {"\"\xc4\xa0the\"", "\xc4\xa0the", 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bb_json_doc *d = parse_ok(cases[k].text, strlen(cases[k].text));
        size_t len = 99;
        const char *s = bb_json_str(bb_json_root(d), &len);
        EXPECT(s && len == cases[k].len && memcmp(s, cases[k].want, len) == 0 && s[len] == '\0',
               "%s decodes to %zu bytes", cases[k].text, len);
        bb_json_doc_destroy(&d);
    }
}

static void test_containers(void) {
    bb_json_doc *d = PARSE("{\"z\": [1, [2, 3], {}], \"a\": {\"k\": \"v\"}, \"m\": null, \"e\": []}");
    const bb_json *r = bb_json_root(d);
    EXPECT(bb_json_type(r) == BB_JSON_OBJECT && bb_json_len(r) == 4, "object of 4");
    static const char *const order[] = {"z", "a", "m", "e"};
    for (size_t i = 0; i < 4; i++) {
        size_t len;
        const char *k = bb_json_key_at(r, i, &len);
        EXPECT(k && strcmp(k, order[i]) == 0 && len == 1, "key %zu is %s", i, k ? k : "NULL");
        EXPECT(bb_json_at(r, i) == bb_json_get(r, order[i]), "at and get agree for %s", order[i]);
    }
    const bb_json *z = bb_json_get(r, "z");
    EXPECT(bb_json_len(z) == 3 && bb_json_num(bb_json_at(z, 0)) == 1, "array z");
    EXPECT(bb_json_num(bb_json_at(bb_json_at(z, 1), 1)) == 3, "nested array");
    EXPECT(bb_json_type(bb_json_at(z, 2)) == BB_JSON_OBJECT && bb_json_len(bb_json_at(z, 2)) == 0, "empty object");
    EXPECT(bb_json_at(z, 3) == NULL, "out of range element");
    EXPECT(strcmp(bb_json_str(bb_json_get(bb_json_get(r, "a"), "k"), NULL), "v") == 0, "chained lookup");
    EXPECT(bb_json_type(bb_json_get(r, "m")) == BB_JSON_NULL, "null member");
    EXPECT(bb_json_get(r, "missing") == NULL && bb_json_find(r, "missing", 7) == -1, "missing key");
    EXPECT(bb_json_get(z, "x") == NULL, "get on an array");
    EXPECT(bb_json_key_at(z, 0, NULL) == NULL, "key_at on an array");
    EXPECT(bb_json_key_at(r, 4, NULL) == NULL, "key_at out of range");
    EXPECT(bb_json_type(bb_json_get(r, "e")) == BB_JSON_ARRAY && bb_json_len(bb_json_get(r, "e")) == 0, "empty array");
    bb_json_doc_destroy(&d);

    d = PARSE("{\"a\\u0000b\": 1, \"a\": 2}");
    EXPECT(bb_json_num(bb_json_get_n(bb_json_root(d), "a\0b", 3)) == 1, "key with NUL byte");
    EXPECT(bb_json_num(bb_json_get(bb_json_root(d), "a")) == 2, "prefix key is distinct");
    bb_json_doc_destroy(&d);
}

static void test_missing_values(void) {
    EXPECT(bb_json_type(NULL) == BB_JSON_MISSING, "type");
    EXPECT(strcmp(bb_json_type_name(bb_json_type(NULL)), "missing") == 0, "type name");
    EXPECT(bb_json_len(NULL) == 0 && bb_json_at(NULL, 0) == NULL && bb_json_get(NULL, "a") == NULL, "containers");
    size_t len = 5;
    EXPECT(bb_json_str(NULL, &len) == NULL && len == 0, "string");
    EXPECT(isnan(bb_json_num(NULL)) && bb_json_bool(NULL) == -1 && !bb_json_is_int(NULL), "scalars");
    EXPECT(bb_json_line(NULL) == 0 && bb_json_root(NULL) == NULL, "position");
    int64_t i;
    EXPECT_ERR(bb_json_int64(NULL, &i), BB_ERR_FORMAT, "expected an integer, found missing");
    bb_json_doc *d = PARSE("[\"7\", true]");
    EXPECT_ERR(bb_json_int64(bb_json_at(bb_json_root(d), 0), &i), BB_ERR_FORMAT,
               "line 1, column 2: expected an integer, found a string");
    EXPECT(isnan(bb_json_num(bb_json_at(bb_json_root(d), 0))), "num of a string");
    EXPECT(bb_json_bool(bb_json_at(bb_json_root(d), 0)) == -1, "bool of a string");
    bb_json_doc_destroy(&d);
}

/* Big objects are hash-indexed: every key found, in time linear in the size. */
static void test_big_object(void) {
    const int n = 200000;
    size_t cap = (size_t)n * 32 + 16, len = 0;
    char *text = malloc(cap);
    EXPECT(text != NULL, "out of memory");
    if (!text) return;
    text[len++] = '{';
    for (int i = 0; i < n; i++) len += (size_t)snprintf(text + len, cap - len, "%s\"tok%d\":%d", i ? "," : "", i, i);
    text[len++] = '}';
    double t0 = bb_now();
    bb_json_doc *d = parse_ok(text, len);
    double t1 = bb_now();
    const bb_json *r = bb_json_root(d);
    EXPECT(bb_json_len(r) == (size_t)n, "%zu members", bb_json_len(r));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "tok%d", i);
        int64_t v = -1;
        const bb_json *m = bb_json_get(r, key);
        if (!m || bb_json_int64(m, &v) || v != i) bad++;
    }
    double t2 = bb_now();
    EXPECT(bad == 0, "%d lookups failed", bad);
    EXPECT(bb_json_get(r, "tok200000") == NULL, "absent key in a big object");
    EXPECT(t1 - t0 < 5 && t2 - t1 < 5, "parse %.3f s, lookups %.3f s (quadratic?)", t1 - t0, t2 - t1);
    printf("  %d-member object: parse %.3f s, %d lookups %.3f s\n", n, t1 - t0, n, t2 - t1);
    bb_json_doc_destroy(&d);
    /* A duplicate key in a hashed object. */
    len -= 1;
    len += (size_t)snprintf(text + len, cap - len, ",\"tok5\":1}");
    parse_fails(text, len,
                "expected keys unique within an object, found duplicate key \"tok5\" (first at line 1, column");
    free(text);
}

static void test_depth_limit(void) {
    char buf[2 * BB_JSON_MAX_DEPTH + 4];
    for (int extra = 0; extra <= 1; extra++) {
        int n = BB_JSON_MAX_DEPTH + extra;
        for (int i = 0; i < n; i++) {
            buf[i] = '[';
            buf[n + i] = ']';
        }
        if (extra == 0) {
            bb_json_doc *d = parse_ok(buf, 2 * (size_t)n);
            const bb_json *v = bb_json_root(d);
            int depth = 0;
            while (bb_json_type(v) == BB_JSON_ARRAY) {
                depth++;
                v = bb_json_at(v, 0);
            }
            EXPECT(depth == n, "depth %d", depth);
            bb_json_doc_destroy(&d);
        } else {
            char needle[64];
            snprintf(needle, sizeof needle, "t.json:1:%d: expected at most %d nested", n, BB_JSON_MAX_DEPTH);
            parse_fails(buf, 2 * (size_t)n, needle);
        }
    }
}

static void test_errors(void) {
    FAILS("", "t.json:1:1: expected a value (object, array, string, number, true, false or null), found end of input");
    FAILS("   \n  ", "t.json:2:3: expected a value");
    FAILS("+1", "t.json:1:1: expected a value (object, array, string, number, true, false or null), found '+'");
    FAILS("NaN", "t.json:1:1: expected a value");
    FAILS("tru", "t.json:1:4: expected 'true', found end of input");
    FAILS("nul1", "t.json:1:4: expected 'null', found '1'");
    FAILS("fals", "t.json:1:5: expected 'false', found end of input");
    FAILS("truex", "t.json:1:5: expected the end of input after the top-level value, found 'x'");
    FAILS("1 2", "t.json:1:3: expected the end of input after the top-level value, found '2'");
    FAILS("[1,]", "t.json:1:4: expected a value after ',' (no trailing commas in JSON), found ']'");
    FAILS("[1 2]", "t.json:1:4: expected ',' or ']' after an array element, found '2'");
    FAILS("[1", "t.json:1:3: expected ',' or ']' after an array element, found end of input");
    FAILS("[", "t.json:1:2: expected a value");
    FAILS("{\"a\" 1}", "t.json:1:6: expected ':' after the object key, found '1'");
    FAILS("{1:2}", "t.json:1:2: expected a string key or '}', found '1'");
    FAILS("{\"a\":1,}", "t.json:1:8: expected a string key after ',' (no trailing commas in JSON), found '}'");
    FAILS("{\"a\":1, 2}", "t.json:1:9: expected a string key after ',', found '2'");
    FAILS("{\"a\":1 \"b\":2}", "t.json:1:8: expected ',' or '}' after an object member, found '\"'");
    FAILS("{\"a\":}", "t.json:1:6: expected a value");
    FAILS("{\"a\":1,\"a\":2}",
          "t.json:1:8: expected keys unique within an object, found duplicate key \"a\" (first at line 1, column 2)");
    FAILS("-", "t.json:1:2: expected a digit after '-', found end of input");
    FAILS("-a", "t.json:1:2: expected a digit after '-', found 'a'");
    FAILS("01", "t.json:1:2: expected '.', 'e' or the end of the number after a leading 0, found '1'");
    FAILS("1.", "t.json:1:3: expected a digit after '.', found end of input");
    FAILS(".5", "t.json:1:1: expected a value");
    FAILS("1.e5", "t.json:1:3: expected a digit after '.', found 'e'");
    FAILS("1e", "t.json:1:3: expected a digit in the exponent, found end of input");
    FAILS("1e+", "t.json:1:4: expected a digit in the exponent");
    FAILS("[1e999]", "t.json:1:2: expected a number within the range of a double, found 1e999");
    FAILS("-1e400", "t.json:1:1: expected a number within the range of a double, found -1e400");
    FAILS("\"abc", "t.json:1:5: expected '\"' to close the string that starts at column 1, found end of input");
    FAILS("\"ab\\", "t.json:1:5: expected '\"' to close the string");
    FAILS("\"a\\x\"",
          "t.json:1:4: expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX) after '\\', found 'x'");
    FAILS("\"\\u12G4\"", "t.json:1:6: expected 4 hex digits after \\u, found 'G'");
    FAILS("\"\\u12\"", "t.json:1:6: expected 4 hex digits after \\u, found '\"'");
    FAILS("\"\\ud800\"",
          "t.json:1:8: expected a low surrogate \\udc00-\\udfff after high surrogate \\ud800, found '\"'");
    FAILS("\"\\ud800\\u0041\"", "t.json:1:8: expected a low surrogate \\udc00-\\udfff after high surrogate \\ud800");
    FAILS("\"\\udc00\"",
          "t.json:1:2: expected a high surrogate \\ud800-\\udbff before it, found unpaired low surrogate \\udc00");
    FAILS("\"a\nb\"", "t.json:1:3: expected a string character (control characters must be escaped), found control "
                      "character 0x0a");
    FAILS("\"a\tb\"", "t.json:1:3: expected a string character");
    FAILS("[1,\0]", "t.json:1:4: expected a value (object, array, string, number, true, false or null), found control "
                    "character 0x00");
    FAILS("\"\xff\"", "t.json:1:2: expected valid UTF-8 in the string, found byte 0xff");
    FAILS("\"\xc0\x80\"", "t.json:1:2: expected valid UTF-8 in the string, found byte 0xc0");
    FAILS("\"\xed\xa0\x80\"", "t.json:1:2: expected valid UTF-8");
    FAILS("\"\xf4\x90\x80\x80\"", "t.json:1:2: expected valid UTF-8");
    FAILS("\"\xe2\x82\"", "t.json:1:2: expected valid UTF-8");
    FAILS("\"\x80\"", "t.json:1:2: expected valid UTF-8");
    FAILS("\xef\xbb", "t.json:1:1: expected a value");
    FAILS("{\n  \"a\": 1,\n  \"b\" 2\n}", "t.json:3:7: expected ':' after the object key, found '2'");
    FAILS("[\r\n1,\r\n x]", "t.json:3:2: expected a value");
    FAILS("// c\n1", "t.json:1:1: expected a value");
}

int main(void) {
    TEST_RUN(test_scalars);
    TEST_RUN(test_numbers);
    TEST_RUN(test_strings);
    TEST_RUN(test_containers);
    TEST_RUN(test_missing_values);
    TEST_RUN(test_big_object);
    TEST_RUN(test_depth_limit);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
