/* fuzz_tokenizer_json.c — libFuzzer target: arbitrary bytes loaded as a tokenizer.json, then a fixed text
 * encoded and decoded with whatever was accepted. Loading must fail cleanly or give a tokenizer whose ids
 * all lie in its vocabulary; nothing may crash, leak or hang. Seeds: tests/py/make_tokenizer_fixtures.py --seeds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bb_error_set_quiet(1);
    bb_log_set_level(BB_LOG_ERROR);
    return 0;
}

static const char sample[] = "Once upon a time, Lily's  dog ran\n\n to the <s>park</s> 123456 \xc3\xa9\xf0\x9f\x99\x82"
                             "<|begin_of_text|> story\t\xff\xfe end.";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* only what the registry would take for a tokenizer.json: other kinds have their own fuzzers */
    if (!bb_tokenizer_kind_hf_json.probe(data, size)) return 0;
    bb_tokenizer *t = NULL;
    if (bb_tokenizer_load_memory(data, size, "fuzz.json", 0, &t) != BB_OK) return 0;
    int V = bb_tokenizer_vocab_size(t);
    int *ids = NULL, n = 0;
    if (bb_tokenizer_encode(t, sample, 1, 1, &ids, &n) == BB_OK) {
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V) __builtin_trap();
        char *text = NULL;
        if (bb_tokenizer_decode_seq(t, ids, n, &text, NULL) != BB_OK) __builtin_trap();
        free(text);
    }
    free(ids);
    for (int id = 0; id < V && id < 512; id++) {
        const char *p;
        size_t len;
        if (bb_tokenizer_decode(t, id % 3 - 1, id, &p, &len) != BB_OK) __builtin_trap();
    }
    bb_tokenizer_destroy(&t);
    return 0;
}
