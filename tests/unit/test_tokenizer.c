/* test_tokenizer.c — llama2.c tokenizer: tok512.bin encodings, merge rules, round trip on dev.txt, file errors. */
#include <stdint.h>

#include "core/file.h"
#include "core/log.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "model/forward.h"
#include "test.h"

static char tok_path[1200], model_path[1200], dev_path[1200];

/* A tokenizer.bin image: max_len, then (score, length, bytes) per piece. */
typedef struct {
    uint8_t buf[16384];
    size_t n;
} tok_image;

static void img_i32(tok_image *im, int32_t v) {
    memcpy(im->buf + im->n, &v, 4);
    im->n += 4;
}

static void img_piece(tok_image *im, const char *s, size_t len, float score) {
    memcpy(im->buf + im->n, &score, 4);
    im->n += 4;
    img_i32(im, (int32_t)len);
    memcpy(im->buf + im->n, s, len);
    im->n += len;
}

/* <unk>, BOS, EOS, 256 byte tokens, then extra pieces with scores. */
static void img_base(tok_image *im, int max_len) {
    im->n = 0;
    img_i32(im, max_len);
    img_piece(im, "<unk>", 5, 0);
    img_piece(im, "\n<s>\n", 5, 0);
    img_piece(im, "\n</s>\n", 6, 0);
    for (int b = 0; b < 256; b++) {
        char p[8];
        snprintf(p, sizeof p, "<0x%02X>", b);
        img_piece(im, p, 6, 0);
    }
}

static int encode_eq(const bb_tokenizer *t, const char *text, int bos, int eos, const int *want, int n_want) {
    int *ids = NULL, n = 0;
    if (bb_tokenizer_encode(t, text, bos, eos, &ids, &n) != BB_OK) return 0;
    int ok = n == n_want && memcmp(ids, want, sizeof(int) * (size_t)n) == 0;
    if (!ok) {
        fprintf(stderr, "encode(\"%s\") = [", text);
        for (int i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? ", " : "", ids[i]);
        fprintf(stderr, "]\n");
    }
    free(ids);
    return ok;
}

static void test_tok512(void) {
    bb_tokenizer *t = NULL;
    EXPECT_OK(bb_tokenizer_load(tok_path, 512, &t));
    if (!t) return;
    EXPECT(bb_tokenizer_vocab_size(t) == 512 && bb_tokenizer_bos_id(t) == 1 && bb_tokenizer_eos_id(t) == 2, "vocab %d",
           bb_tokenizer_vocab_size(t));
    EXPECT(!strcmp(bb_tokenizer_kind_name(t), "llama2.c"), "kind %s", bb_tokenizer_kind_name(t));
    EXPECT(bb_tokenizer_max_piece_len(t) == 7, "max piece %zu", bb_tokenizer_max_piece_len(t));
    EXPECT(bb_tokenizer_lookup(t, " Once", 5) == 403 && bb_tokenizer_lookup(t, " ", 1) == 410, "lookups");
    EXPECT(bb_tokenizer_lookup(t, "zzzz", 4) == -1, "absent piece");
    EXPECT(bb_tokenizer_byte_id(t, 'A') == 'A' + 3 && bb_tokenizer_byte_id(t, 0xFF) == 258, "byte fallback ids");
    /* Known encodings: pieces of tok512 (ids read off the file). */
    EXPECT(encode_eq(t, "Once upon", 1, 0, (int[]){1, 403, 407}, 3), "Once upon");
    EXPECT(encode_eq(t, "", 1, 0, (int[]){1}, 1), "empty with BOS");
    EXPECT(encode_eq(t, "", 0, 1, (int[]){2}, 1), "empty with EOS");
    EXPECT(encode_eq(t, "t", 0, 0, (int[]){259}, 1), "dummy prefix merges: \" t\" is 259");
    /* 0x01 and the snowman (E2 98 83) are not pieces: byte fallback, id = byte + 3 */
    EXPECT(encode_eq(t, "\x01", 1, 0, (int[]){1, 410, 4}, 3), "control byte");
    EXPECT(encode_eq(t, "\xe2\x98\x83", 1, 0, (int[]){1, 410, 0xE2 + 3, 0x98 + 3, 0x83 + 3}, 5), "3-byte codepoint");
    EXPECT(encode_eq(t, "\xc3\xa9", 1, 0, (int[]){1, 410, 485}, 3), "e-acute is piece 485");
    const char *p;
    size_t len;
    EXPECT_OK(bb_tokenizer_decode(t, 1, 403, &p, &len));
    EXPECT(len == 4 && !memcmp(p, "Once", 4), "leading space stripped after BOS");
    EXPECT_OK(bb_tokenizer_decode(t, 5, 403, &p, &len));
    EXPECT(len == 5 && !memcmp(p, " Once", 5), "kept otherwise");
    EXPECT_OK(bb_tokenizer_decode(t, 5, 0xE2 + 3, &p, &len));
    EXPECT(len == 1 && (unsigned char)p[0] == 0xE2, "byte token gives the raw byte");
    EXPECT_OK(bb_tokenizer_decode(t, 5, 1, &p, &len));
    EXPECT(len == 0, "BOS decodes to nothing");
    EXPECT_ERR(bb_tokenizer_decode(t, 1, 512, &p, &len), BB_ERR_ARG, "outside the vocabulary");
    EXPECT_ERR(bb_tokenizer_decode(t, 1, -1, &p, &len), BB_ERR_ARG, "token id -1");
    bb_tokenizer_destroy(&t);
    EXPECT(t == NULL, "destroy nulls");
    bb_tokenizer_destroy(&t);
}

/* The model's greedy output, re-encoded, gives back the ids it generated. */
static void test_reencode_greedy(void) {
    bb_model *m = NULL;
    bb_tokenizer *t = NULL;
    bb_forward *f = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    EXPECT_OK(bb_tokenizer_load(tok_path, 512, &t));
    EXPECT_OK(bb_forward_create(m, 0, &f));
    if (t && f) {
        enum { N = 40 };
        int bos = 1, gen[N + 1], n = 0;
        EXPECT_OK(bb_forward_generate(f, &bos, 1, N, 0.0f, 0, NULL, NULL, gen + 1, &n));
        gen[0] = 1;
        char *text = NULL;
        EXPECT_OK(bb_tokenizer_decode_seq(t, gen, n + 1, &text, NULL));
        if (text) {
            printf("  greedy %d tokens: \"%s\"\n", n, text);
            EXPECT(!strncmp(text, "Once upon a time, there was a little girl named Lily.", 53), "text %s", text);
            EXPECT(encode_eq(t, text, 1, 0, gen, n + 1), "re-encoding the greedy text");
        }
        free(text);
    }
    bb_forward_destroy(&f);
    bb_tokenizer_destroy(&t);
    bb_model_destroy(&m);
}

/* The heap-based encoder against the run.c-style reference on every dev.txt
 * line, and the whole file (one string, as perplexity evaluation encodes it)
 * against the token count and checksum that bb_tokenizer_llama2c_encode_ref
 * gives for it (computed once: the quadratic loop takes about 10 minutes). */
static void test_fast_matches_ref(void) {
    bb_tokenizer *t = NULL;
    char *txt = NULL;
    size_t n = 0;
    EXPECT_OK(bb_tokenizer_load(tok_path, 512, &t));
    EXPECT_OK(bb_file_read_all(dev_path, 1 << 24, &txt, &n));
    if (!t || !txt) goto done;
    int *ids = NULL, k = 0;
    double t0 = bb_now();
    EXPECT_OK(bb_tokenizer_encode(t, txt, 1, 0, &ids, &k));
    double secs = bb_now() - t0;
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < k; i++) h = (h ^ (uint64_t)ids[i]) * 1099511628211ull;
    printf("  dev.txt as one string: %zu bytes -> %d tokens in %.3f s, FNV-1a 0x%016llx\n", n, k, secs,
           (unsigned long long)h);
    EXPECT(k == 116651 && h == 0x8dc1f21c97a9cfcaull, "whole-file encoding differs from the reference's");
    free(ids);
    char *copy = strdup(txt);
    int lines = 0, diff = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        int *a = NULL, *b = NULL, na = 0, nb = 0;
        EXPECT_OK(bb_tokenizer_encode(t, line, 1, 1, &a, &na));
        EXPECT_OK(bb_tokenizer_llama2c_encode_ref(t, line, 1, 1, &b, &nb));
        lines++;
        diff += !(a && b && na == nb && memcmp(a, b, sizeof(int) * (size_t)na) == 0);
        free(a);
        free(b);
    }
    EXPECT(lines > 1000 && diff == 0, "%d of %d lines encode differently from the reference", diff, lines);
    free(copy);
done:
    free(txt);
    bb_tokenizer_destroy(&t);
}

static void test_roundtrip_dev(void) {
    bb_tokenizer *t = NULL;
    char *txt = NULL;
    EXPECT_OK(bb_tokenizer_load(tok_path, 512, &t));
    EXPECT_OK(bb_file_read_all(dev_path, 1 << 24, &txt, NULL));
    if (!t || !txt) goto done;
    int lines = 0, ascii = 0, bad = 0;
    long tokens = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        int *ids = NULL, n = 0;
        char *back = NULL;
        lines++;
        int is_ascii = 1;
        for (const char *c = line; *c; c++) is_ascii &= (unsigned char)*c < 0x80;
        ascii += is_ascii;
        if (bb_tokenizer_encode(t, line, 1, 0, &ids, &n) || bb_tokenizer_decode_seq(t, ids, n, &back, NULL) ||
            strcmp(back, line) != 0) {
            if (bad++ < 3)
                fprintf(stderr, "round trip differs:\n  in : %s\n  out: %s\n", line, back ? back : "(error)");
        }
        tokens += n;
        free(ids);
        free(back);
    }
    printf("  dev.txt: %d lines (%d ASCII), %ld tokens, %d round-trip failures\n", lines, ascii, tokens, bad);
    EXPECT(lines > 1000 && bad == 0, "%d of %d lines do not round-trip", bad, lines);
done:
    free(txt);
    bb_tokenizer_destroy(&t);
}

static void test_merge_rules(void) {
    static tok_image im;
    img_base(&im, 6);
    img_piece(&im, " ", 1, -10);        /* 259 */
    img_piece(&im, "a", 1, -10);        /* 260 */
    img_piece(&im, "b", 1, -10);        /* 261 */
    img_piece(&im, "c", 1, -10);        /* 262 */
    img_piece(&im, "ab", 2, 1);         /* 263 */
    img_piece(&im, "bc", 2, 5);         /* 264 */
    img_piece(&im, "abc", 3, 0);        /* 265 */
    img_piece(&im, "aa", 2, 2);         /* 266 */
    img_piece(&im, "aa", 2, 9);         /* 267: repeated piece, the lower id wins lookups */
    img_piece(&im, "\xc3\xa9", 2, -10); /* 268: é as one codepoint piece */
    bb_tokenizer *t = NULL;
    EXPECT_OK(bb_tokenizer_load_memory(im.buf, im.n, "merge.bin", 269, &t));
    if (!t) return;
    /* bc (5) beats ab (1), then a+bc makes abc */
    EXPECT(encode_eq(t, "abc", 0, 0, (int[]){259, 265}, 2), "highest score first");
    /* equal scores: the leftmost pair merges */
    EXPECT(encode_eq(t, "aaa", 0, 0, (int[]){259, 266, 260}, 3), "leftmost on ties");
    EXPECT(bb_tokenizer_lookup(t, "aa", 2) == 266, "repeated piece resolves to its first id");
    EXPECT(encode_eq(t, "\xc3\xa9z", 0, 1, (int[]){259, 268, 'z' + 3, 2}, 4), "codepoint piece, byte fallback, EOS");
    /* a lone continuation byte and an overlong run (5 continuation bytes) fall back to bytes */
    EXPECT(
        encode_eq(t, "\xa9\xa9\xa9\xa9\xa9", 0, 0, (int[]){259, 0xA9 + 3, 0xA9 + 3, 0xA9 + 3, 0xA9 + 3, 0xA9 + 3}, 6),
        "continuation bytes");
    char *back = NULL;
    int *ids = NULL, n = 0;
    EXPECT_OK(bb_tokenizer_encode(t, " abc aa\xc3\xa9", 1, 1, &ids, &n));
    EXPECT_OK(bb_tokenizer_decode_seq(t, ids, n, &back, NULL));
    EXPECT(back && !strcmp(back, " abc aa\xc3\xa9"), "round trip '%s'", back ? back : "");
    free(ids);
    free(back);
    bb_tokenizer_destroy(&t);
    /* Without a " " piece the dummy prefix is the byte token for 0x20. */
    img_base(&im, 6);
    EXPECT_OK(bb_tokenizer_load_memory(im.buf, im.n, "bytes.bin", 0, &t));
    if (t) EXPECT(encode_eq(t, "hi", 0, 0, (int[]){0x20 + 3, 'h' + 3, 'i' + 3}, 3), "byte-only vocabulary");
    bb_tokenizer_destroy(&t);
    /* Without byte fallback a byte that is no piece cannot be encoded. */
    im.n = 0;
    img_i32(&im, 6);
    img_piece(&im, "<unk>", 5, 0);
    img_piece(&im, "<s>", 3, 0);
    img_piece(&im, "</s>", 4, 0);
    img_piece(&im, " ", 1, 0);
    EXPECT_OK(bb_tokenizer_load_memory(im.buf, im.n, "nobytes.bin", 4, &t));
    if (t) {
        EXPECT_ERR(bb_tokenizer_encode(t, "q", 1, 0, &ids, &n), BB_ERR_ARG, "byte 0x71 at offset 0 has no token");
        EXPECT(ids == NULL, "no ids on error");
    }
    bb_tokenizer_destroy(&t);
}

static void test_errors(void) {
    bb_tokenizer *t = NULL;
    EXPECT_ERR(bb_tokenizer_load(tok_path, 32000, &t), BB_ERR_FORMAT,
               "holds 512 tokens but the model's vocabulary has 32000");
    EXPECT(t == NULL, "no tokenizer on error");
    EXPECT_ERR(bb_tokenizer_load("/nonexistent/tok.bin", 0, &t), BB_ERR_IO, "cannot open");
    char *data = NULL;
    size_t n = 0;
    EXPECT_OK(bb_file_read_all(tok_path, 1 << 20, &data, &n));
    if (data) {
        EXPECT_ERR(bb_tokenizer_load_memory(data, 3000, "cut.bin", 512, &t), BB_ERR_FORMAT, "truncated");
        EXPECT_ERR(bb_tokenizer_load_memory(data, 2, "tiny.bin", 512, &t), BB_ERR_FORMAT, "not a tokenizer file");
        /* token 0's length field set beyond the file / negative / above max_token_length */
        int32_t v = 100000;
        memcpy(data + 8, &v, 4);
        EXPECT_ERR(bb_tokenizer_load_memory(data, n, "len.bin", 512, &t), BB_ERR_FORMAT, "token 0 has length 100000");
        v = -1;
        memcpy(data + 8, &v, 4);
        EXPECT_ERR(bb_tokenizer_load_memory(data, n, "neg.bin", 512, &t), BB_ERR_FORMAT, "token 0 has length -1");
        v = 5;
        memcpy(data + 8, &v, 4);
        v = 3;
        memcpy(data, &v, 4);
        EXPECT_ERR(bb_tokenizer_load_memory(data, n, "max.bin", 512, &t), BB_ERR_FORMAT, "max_token_length 3");
        free(data);
    }
    static tok_image im;
    im.n = 0;
    img_i32(&im, 4);
    img_piece(&im, "a", 1, 0);
    img_piece(&im, "b", 1, 0);
    EXPECT_ERR(bb_tokenizer_load_memory(im.buf, im.n, "two.bin", 0, &t), BB_ERR_FORMAT, "holds 2 tokens");
    im.buf[im.n++] = 7; /* a stray byte after the last token */
    EXPECT_ERR(bb_tokenizer_load_memory(im.buf, im.n, "stray.bin", 0, &t), BB_ERR_FORMAT,
               "ends inside the header of token 2");
}

int main(void) {
    snprintf(tok_path, sizeof tok_path, "%s/data/stories260K/tok512.bin", test_shared());
    snprintf(model_path, sizeof model_path, "%s/data/stories260K/stories260K.bin", test_shared());
    snprintf(dev_path, sizeof dev_path, "%s/data/tinystories/dev.txt", test_shared());
    TEST_RUN(test_tok512);
    TEST_RUN(test_merge_rules);
    TEST_RUN(test_reencode_greedy);
    TEST_RUN(test_fast_matches_ref);
    TEST_RUN(test_roundtrip_dev);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
