/* fuzz_json.c — libFuzzer target: bb_json_parse on arbitrary bytes, then every accessor over the tree. */
#include <stddef.h>
#include <stdint.h>

#include "io/json.h"

/* Visit every node the way a consumer would; returns a value so that nothing
 * is optimized away. Recursion is bounded by BB_JSON_MAX_DEPTH. */
static size_t walk(const bb_json *v) {
    size_t acc = (size_t)bb_json_type(v) + bb_json_line(v) + bb_json_col(v);
    size_t len;
    const char *s = bb_json_str(v, &len);
    if (s && len) acc += (unsigned char)s[len - 1] + (unsigned char)s[len];
    int64_t i;
    if (bb_json_is_int(v) && bb_json_int64(v, &i) == BB_OK) acc += (size_t)i;
    acc += (size_t)(bb_json_bool(v) + 1);
    for (size_t k = 0; k < bb_json_len(v); k++) {
        size_t klen;
        const char *key = bb_json_key_at(v, k, &klen);
        if (key) acc += bb_json_get_n(v, key, klen) == bb_json_at(v, k) ? 1 : 1000;
        acc += walk(bb_json_at(v, k));
    }
    return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bb_error_set_quiet(1);
    bb_json_doc *doc = NULL;
    if (bb_json_parse((const char *)data, size, "fuzz.json", &doc) == BB_OK) {
        volatile size_t sink = walk(bb_json_root(doc));
        (void)sink;
    }
    bb_json_doc_destroy(&doc);
    return 0;
}
