/* fuzz_tokenizer.c — libFuzzer target: tokenizer files parsed from memory (then encoding and
 * decoding with what was accepted), and fuzzed text through a fixed small vocabulary, which
 * must decode back to the same text. In both modes the heap-based encoder must give exactly
 * the ids of the run.c-style reference encoder.
 * The first input byte picks the mode: even = a tokenizer file, odd = text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bb_tokenizer *fixed;

static void put_piece(uint8_t *buf, size_t *n, const char *s, float score) {
    int32_t len = (int32_t)strlen(s);
    memcpy(buf + *n, &score, 4);
    memcpy(buf + *n + 4, &len, 4);
    memcpy(buf + *n + 8, s, (size_t)len);
    *n += 8 + (size_t)len;
}

/* <unk>, BOS, EOS, the 256 byte tokens, and a few merges and codepoints. */
static bb_tokenizer *make_fixed(void) {
    static uint8_t buf[8192];
    size_t n = 0;
    int32_t max_len = 8;
    memcpy(buf, &max_len, 4);
    n = 4;
    put_piece(buf, &n, "<unk>", 0);
    put_piece(buf, &n, "\n<s>\n", 0);
    put_piece(buf, &n, "\n</s>\n", 0);
    for (int b = 0; b < 256; b++) {
        char p[8];
        snprintf(p, sizeof p, "<0x%02X>", b);
        put_piece(buf, &n, p, 0);
    }
    const char *extra[] = {" ",  "a",   "e",  "h",    "t",  "o",  "n",        " t",           "th", "he", "the", " the",
                           "an", " an", "nd", " and", "aa", "aa", "\xc3\xa9", "\xe2\x80\x9c", " a", "o ", "  "};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) put_piece(buf, &n, extra[i], -(float)(i % 7));
    bb_tokenizer *t = NULL;
    bb_tokenizer_load_memory(buf, n, "fixed", 0, &t);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bb_error_set_quiet(1);
    bb_log_set_level(BB_LOG_ERROR);
    fixed = make_fixed();
    if (!fixed) abort(); /* the fixed vocabulary is part of the harness, not fuzzed input */
    return 0;
}

/* Trap unless the fast and the reference encoder agree (both failing counts as agreeing). */
static void check_same(const bb_tokenizer *t, const char *text, const int *ids, int n, int ok) {
    int *r = NULL, nr = 0;
    int ok_ref = bb_tokenizer_llama2c_encode_ref(t, text, 1, 1, &r, &nr) == BB_OK;
    if (ok != ok_ref || (ok && (n != nr || memcmp(ids, r, sizeof(int) * (size_t)n) != 0))) __builtin_trap();
    free(r);
}

static void parse_file(const uint8_t *data, size_t size) {
    bb_tokenizer *t = NULL;
    if (bb_tokenizer_load_memory(data, size, "fuzz.bin", 0, &t) != BB_OK) return;
    int *ids = NULL, n = 0;
    char *text = NULL;
    const char *sample = "Once upon a time \xc3\xa9\xff\x01 the end. aaaa abab";
    int ok = bb_tokenizer_encode(t, sample, 1, 1, &ids, &n) == BB_OK;
    check_same(t, sample, ids, n, ok);
    if (ok) bb_tokenizer_decode_seq(t, ids, n, &text, NULL);
    int V = bb_tokenizer_vocab_size(t);
    for (int id = 0; id < V && id < 1024; id++) {
        const char *p;
        size_t len;
        bb_tokenizer_decode(t, id % 3, id, &p, &len);
    }
    free(ids);
    free(text);
    bb_tokenizer_destroy(&t);
}

static void roundtrip(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return;
    memcpy(s, data, size);
    s[size] = '\0';
    int *ids = NULL, n = 0;
    char *back = NULL;
    int ok = bb_tokenizer_encode(fixed, s, 1, 1, &ids, &n) == BB_OK;
    /* the reference is quadratic: compare on short texts only */
    if (size <= 1024) check_same(fixed, s, ids, n, ok);
    if (ok && bb_tokenizer_decode_seq(fixed, ids, n, &back, NULL) == BB_OK && strcmp(back, s) != 0)
        __builtin_trap(); /* every byte has a token, so decoding must give the text back */
    free(ids);
    free(back);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] % 2 == 0)
        parse_file(data + 1, size - 1);
    else
        roundtrip(data + 1, size - 1);
    return 0;
}
