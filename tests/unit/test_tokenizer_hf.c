/* test_tokenizer_hf.c — tokenizer.json and GGUF vocabularies against the ids of the `tokenizers` package, round trips,
 * GGUF = tokenizer.json = llama2.c, corrupt files, model lookup, speed.
 *
 * The fixtures come from tests/py/make_tokenizer_fixtures.py (tokenizer_hf.fixtures in CTest) in
 * $BB_TEST_TMP/tokenizer_fixtures. Exits 77 (skipped) only when that script found its Python
 * packages missing and said so in missing_packages.txt. */
#include <stdint.h>

#include "core/file.h"
#include "core/log.h"
#include "core/sha256.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/model.h"
#include "io/tokenizer.h"
#include "test.h"

/* Sanitizers slow encoding about tenfold: the speed bound holds for plain builds only. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char fix[1024];
static bb_json_doc *ref;

static const char *fx(const char *name) {
    static char buf[4][1400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fix, name);
    return buf[k];
}

/* The reference.json entry of tokenizer `name`. */
static const bb_json *ref_entry(const char *name) {
    const bb_json *list = bb_json_get(bb_json_root(ref), "tokenizers");
    for (size_t k = 0; k < bb_json_len(list); k++)
        if (strcmp(bb_json_str(bb_json_get(bb_json_at(list, k), "name"), NULL), name) == 0) return bb_json_at(list, k);
    return NULL;
}

/* ids as JSON array == ids[0, n) */
static int ids_equal(const bb_json *want, const int *ids, int n) {
    if (bb_json_len(want) != (size_t)n) return 0;
    for (int i = 0; i < n; i++)
        if (bb_json_num(bb_json_at(want, (size_t)i)) != ids[i]) return 0;
    return 1;
}

static void show(const char *what, const char *text, const bb_json *want, const int *ids, int n) {
    fprintf(stderr, "  %s \"%.60s\":\n    want", what, text);
    for (size_t i = 0; i < bb_json_len(want) && i < 40; i++) fprintf(stderr, " %g", bb_json_num(bb_json_at(want, i)));
    fprintf(stderr, "\n    got ");
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static char *read_text(const char *path) {
    char *s = NULL;
    size_t n;
    if (bb_file_read_all(path, 64u << 20, &s, &n) != BB_OK) return NULL;
    return s;
}

/* sha256 of the ids as little-endian int32, as the fixture script hashes them. */
static void ids_sha(const int *ids, int n, char hex[65]) {
    int32_t *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) v[i] = ids[i];
    bb_sha256_hex(v, sizeof *v * (size_t)n, hex);
    free(v);
}

/* Every case of one reference entry through tokenizer t (from GGUF: without
 * the texts holding lstrip/rstrip added tokens, which GGUF cannot express).
 * Lossless tokenizers must give back every text that holds no added token. */
static void check_cases(const bb_tokenizer *t, const bb_json *entry, const char *what, int gguf) {
    const bb_json *cases = bb_json_get(entry, "cases");
    int lossless = bb_json_bool(bb_json_get(entry, "lossless")) == 1, bad = 0, bad_dec = 0, round = 0;
    for (size_t i = 0; i < bb_json_len(cases); i++) {
        const bb_json *c = bb_json_at(cases, i);
        const char *text = bb_json_str(bb_json_get(c, "text"), NULL);
        if (gguf && bb_json_bool(bb_json_get(c, "stripping")) == 1) continue;
        int *ids = NULL, n = 0;
        bb_status st = bb_tokenizer_encode(t, text, 0, 0, &ids, &n);
        EXPECT(st == BB_OK, "%s: encode failed: %s", what, bb_last_error());
        if (st) continue;
        if (!ids_equal(bb_json_get(c, "ids"), ids, n)) {
            if (bad++ < 3) show(what, text, bb_json_get(c, "ids"), ids, n);
        }
        char *back = NULL;
        size_t blen;
        EXPECT_OK(bb_tokenizer_decode_seq(t, ids, n, &back, &blen));
        const char *want = bb_json_str(bb_json_get(c, "decoded"), NULL);
        if (back && strcmp(back, want) != 0 && bad_dec++ < 3)
            fprintf(stderr, "  %s decode \"%.60s\": got \"%.60s\" want \"%.60s\"\n", what, text, back, want);
        if (back && lossless && bb_json_bool(bb_json_get(c, "added")) == 0) {
            EXPECT(strcmp(back, text) == 0, "%s: decode(encode(\"%.40s\")) = \"%.40s\"", what, text, back);
            round++;
        }
        free(back);
        free(ids);
        EXPECT_OK(bb_tokenizer_encode(t, text, 1, 0, &ids, &n));
        if (!ids_equal(bb_json_get(c, "ids_special"), ids, n) && bad++ < 3)
            show("with specials", text, bb_json_get(c, "ids_special"), ids, n);
        free(ids);
    }
    EXPECT(!lossless || round > 100, "%s: only %d round trips checked", what, round);
    EXPECT(bad == 0, "%s: %d of %zu texts encode differently from the tokenizers package", what, bad,
           bb_json_len(cases));
    EXPECT(bad_dec == 0, "%s: %d texts decode differently from the tokenizers package", what, bad_dec);
}

/* The whole of dev.txt (235 KB) as one text: same ids (by hash) and fast. */
static void check_big(const bb_tokenizer *t, const bb_json *entry, const char *what) {
    char *big = read_text(fx("big.txt"));
    EXPECT(big != NULL, "cannot read big.txt");
    if (!big) return;
    int *ids = NULL, n = 0;
    double t0 = bb_now();
    EXPECT_OK(bb_tokenizer_encode(t, big, 0, 0, &ids, &n));
    double dt = bb_now() - t0;
    char hex[65];
    ids_sha(ids, n, hex);
    const bb_json *b = bb_json_get(entry, "big");
    EXPECT(n == (int)bb_json_num(bb_json_get(b, "count")), "%s: dev.txt gives %d ids, tokenizers %g", what, n,
           bb_json_num(bb_json_get(b, "count")));
    EXPECT(strcmp(hex, bb_json_str(bb_json_get(b, "ids_sha256"), NULL)) == 0, "%s: dev.txt ids differ (sha256 %s)",
           what, hex);
    EXPECT(SANITIZED || dt < 1.0, "%s: encoding %zu bytes took %.3f s", what, strlen(big), dt);
    printf("     %-22s %zu bytes -> %d ids in %.3f s\n", what, strlen(big), n, dt);
    free(ids);
    free(big);
}

static void test_reference(void) {
    const bb_json *list = bb_json_get(bb_json_root(ref), "tokenizers");
    EXPECT(bb_json_len(list) >= 5, "reference.json lists %zu tokenizers", bb_json_len(list));
    for (size_t k = 0; k < bb_json_len(list); k++) {
        const bb_json *e = bb_json_at(list, k);
        const char *file = bb_json_str(bb_json_get(e, "file"), NULL);
        bb_tokenizer *t = NULL;
        EXPECT_OK(bb_tokenizer_load(fx(file), 0, &t));
        if (!t) continue;
        EXPECT(strcmp(bb_tokenizer_kind_name(t), "tokenizer.json") == 0, "%s loads as %s", file,
               bb_tokenizer_kind_name(t));
        check_cases(t, e, file, 0);
        check_big(t, e, file);
        bb_tokenizer_destroy(&t);
    }
}

/* The GGUF copies of the vocabularies encode as their tokenizer.json. */
static void test_gguf_vocab(void) {
    const bb_json *list = bb_json_get(bb_json_root(ref), "tokenizers");
    for (size_t k = 0; k < bb_json_len(list); k++) {
        const bb_json *e = bb_json_at(list, k);
        const char *file = bb_json_str(bb_json_get(e, "gguf"), NULL);
        if (!file || !*file) continue;
        bb_gguf *g = NULL;
        bb_tokenizer *t = NULL;
        EXPECT_OK(bb_gguf_open(fx(file), &g));
        if (!g) continue;
        EXPECT_ERR(bb_tokenizer_load_gguf(g, 7, &t), BB_ERR_FORMAT, "model's vocabulary has 7");
        EXPECT_OK(bb_tokenizer_load_gguf(g, 0, &t));
        bb_gguf_destroy(&g); /* nothing may point into it */
        if (!t) continue;
        EXPECT(strcmp(bb_tokenizer_kind_name(t), "gguf") == 0, "%s loads as %s", file, bb_tokenizer_kind_name(t));
        check_cases(t, e, file, 1);
        check_big(t, e, file);
        bb_tokenizer_destroy(&t);
        /* the same file through the registry (bb_tokenizer_load probes "GGUF") */
        EXPECT_OK(bb_tokenizer_load(fx(file), 0, &t));
        EXPECT(t && strcmp(bb_tokenizer_kind_name(t), "gguf") == 0, "%s via bb_tokenizer_load", file);
        bb_tokenizer_destroy(&t);
    }
}

/* SentencePiece from GGUF against llama2.c's encoder on the same vocabulary as
 * tokenizer.bin: the same ids wherever every character has a piece (llama2.c
 * falls back to bytes before merging, llama.cpp after). */
static void test_llama2c_equivalent(void) {
    bb_tokenizer *g = NULL, *l = NULL;
    EXPECT_OK(bb_tokenizer_load(fx("spm.gguf"), 0, &g));
    EXPECT_OK(bb_tokenizer_load(fx("spm.bin"), 0, &l));
    if (!g || !l) goto done;
    EXPECT(strcmp(bb_tokenizer_kind_name(l), "llama2.c") == 0, "spm.bin loads as %s", bb_tokenizer_kind_name(l));
    const bb_json *cases = bb_json_get(ref_entry("spm"), "cases");
    int compared = 0, bad = 0;
    for (size_t i = 0; i < bb_json_len(cases); i++) {
        const char *text = bb_json_str(bb_json_get(bb_json_at(cases, i), "text"), NULL);
        int *a = NULL, *b = NULL, na = 0, nb = 0;
        EXPECT_OK(bb_tokenizer_encode(g, text, 1, 0, &a, &na));
        EXPECT_OK(bb_tokenizer_encode(l, text, 1, 0, &b, &nb));
        int fallback = 0;
        for (int k = 0; k < na; k++) fallback |= a[k] >= 3 && a[k] < 259;
        if (!fallback && !strstr(text, "<s>") && !strstr(text, "</s>") && !strstr(text, "<unk>")) {
            compared++;
            if (na != nb || memcmp(a, b, sizeof(int) * (size_t)na) != 0) bad++;
        }
        char *da = NULL, *db = NULL;
        if (a && b) {
            EXPECT_OK(bb_tokenizer_decode_seq(g, a, na, &da, NULL));
            EXPECT_OK(bb_tokenizer_decode_seq(l, b, nb, &db, NULL));
            if (!strstr(text, "<s>") && !strstr(text, "</s>"))
                EXPECT(da && db && strcmp(da, text) == 0 && strcmp(db, text) == 0,
                       "round trip of \"%.40s\": gguf \"%.40s\", llama2.c \"%.40s\"", text, da, db);
        }
        free(da);
        free(db);
        free(a);
        free(b);
    }
    EXPECT(compared > 100 && bad == 0, "GGUF llama vs llama2.c: %d of %d texts differ", bad, compared);
    printf("     %d texts: GGUF llama == llama2.c tokenizer.bin\n", compared);
done:
    bb_tokenizer_destroy(&g);
    bb_tokenizer_destroy(&l);
}

static bb_status status_by_name(const char *name) {
    if (strcmp(name, "BB_ERR_FORMAT") == 0) return BB_ERR_FORMAT;
    if (strcmp(name, "BB_ERR_UNSUPPORTED") == 0) return BB_ERR_UNSUPPORTED;
    return BB_STATUS_COUNT;
}

static void test_broken(void) {
    char *list = read_text(fx("broken.txt"));
    EXPECT(list != NULL, "cannot read broken.txt");
    int count = 0;
    for (char *line = list ? strtok(list, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char file[256], code[64], words[256];
        if (sscanf(line, "%255s %63s %255[^\n]", file, code, words) != 3) continue;
        bb_tokenizer *t = NULL;
        EXPECT_ERR(bb_tokenizer_load(fx(file), 0, &t), status_by_name(code), words);
        EXPECT(strstr(bb_last_error(), file) != NULL, "message \"%s\" does not name %s", bb_last_error(), file);
        EXPECT(t == NULL, "%s: a tokenizer came back", file);
        count++;
    }
    EXPECT(count >= 8, "broken.txt lists %d files", count);
    free(list);
}

/* Corrupt inputs the fixtures cannot express compactly. */
static void test_small_errors(void) {
    bb_tokenizer *t = NULL;
    const char *unknown_pre = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                              "\"pre_tokenizer\":{\"type\":\"Whitespace\"}}";
    EXPECT_ERR(bb_tokenizer_load_memory(unknown_pre, strlen(unknown_pre), "mem.json", 0, &t), BB_ERR_UNSUPPORTED,
               "Whitespace");
    const char *dup = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}";
    EXPECT_ERR(bb_tokenizer_load_memory(dup, strlen(dup), "dup.json", 0, &t), BB_ERR_FORMAT, "dup.json");
    const char *far = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":60000000},\"merges\":[]}}";
    EXPECT_ERR(bb_tokenizer_load_memory(far, strlen(far), "far.json", 0, &t), BB_ERR_FORMAT, "far.json");
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}";
    EXPECT_ERR(bb_tokenizer_load_memory(ok, strlen(ok), "ok.json", 2, &t), BB_ERR_FORMAT, "3 tokens");
    EXPECT_OK(bb_tokenizer_load_memory(ok, strlen(ok), "ok.json", 0, &t));
    int *ids = NULL, n = 0;
    if (t) {
        EXPECT_OK(bb_tokenizer_encode(t, "abab", 1, 1, &ids, &n));
        EXPECT(n == 2 && ids[0] == 2 && ids[1] == 2, "abab -> %d ids", n);
        free(ids);
        EXPECT_ERR(bb_tokenizer_encode(t, "abc", 0, 0, &ids, &n), BB_ERR_ARG, "no token");
        EXPECT_OK(bb_tokenizer_encode(t, "", 0, 0, &ids, &n));
        EXPECT(n == 0, "empty text -> %d ids", n);
        free(ids);
    }
    bb_tokenizer_destroy(&t);
    /* a regex with capturing groups: only the whole match counts */
    const char *groups = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"c\":3},\"merges\":[[\"a\","
                         "\"b\"]]},\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a)(b)|(c)\"},"
                         "\"behavior\":\"Removed\",\"invert\":false}}";
    EXPECT_OK(bb_tokenizer_load_memory(groups, strlen(groups), "groups.json", 0, &t));
    if (t) {
        EXPECT_OK(bb_tokenizer_encode(t, "aabcbab", 0, 0, &ids, &n));
        EXPECT(n == 2 && ids[0] == 0 && ids[1] == 1, "aabcbab without the matches ab, c, ab -> %d ids", n);
        free(ids);
    }
    bb_tokenizer_destroy(&t);
}

/* bb_tokenizer_open_for_model: the GGUF's own vocabulary, a tokenizer.json
 * beside an HF model (padded to the model's vocabulary), an explicit path. */
static void test_open_for_model(void) {
    bb_model *m = NULL;
    bb_tokenizer *t = NULL;
    EXPECT_OK(bb_model_open(fx("tokmodel.gguf"), &m));
    if (m) {
        EXPECT_OK(bb_tokenizer_open_for_model(m, NULL, &t));
        EXPECT(t && strcmp(bb_tokenizer_kind_name(t), "gguf") == 0, "GGUF model: kind %s",
               t ? bb_tokenizer_kind_name(t) : "-");
        if (t) {
            const bb_json *e = ref_entry("bl_llama3");
            check_cases(t, e, "tokmodel.gguf", 1);
            EXPECT(bb_tokenizer_bos_id(t) == m->cfg.bos_id, "BOS %d vs model %d", bb_tokenizer_bos_id(t),
                   m->cfg.bos_id);
        }
        bb_tokenizer_destroy(&t);
        EXPECT_OK(bb_tokenizer_open_for_model(m, fx("bl_llama3.json"), &t));
        EXPECT(t && strcmp(bb_tokenizer_kind_name(t), "tokenizer.json") == 0, "explicit path wins");
        bb_tokenizer_destroy(&t);
        bb_model_destroy(&m);
    }
    EXPECT_OK(bb_model_alloc(&m, 0));
    if (!m) return;
    m->source = BB_SRC_HF;
    snprintf(m->path, sizeof m->path, "%s", fix);
    snprintf(m->tokenizer_path, sizeof m->tokenizer_path, "%s", fx("bl_gpt2.json"));
    m->cfg.vocab_size = 900;
    m->cfg.bos_id = 5;
    m->cfg.eos_id = -1;
    EXPECT_OK(bb_tokenizer_open_for_model(m, NULL, &t));
    if (t) {
        EXPECT(bb_tokenizer_vocab_size(t) == 900, "padded to %d", bb_tokenizer_vocab_size(t));
        const char *p;
        size_t len = 9;
        EXPECT_OK(bb_tokenizer_decode(t, -1, 899, &p, &len));
        EXPECT(len == 0, "a padding id decodes to %zu bytes", len);
        EXPECT(bb_tokenizer_bos_id(t) == 5, "BOS from the model's config: %d", bb_tokenizer_bos_id(t));
        int *ids = NULL, n = 0;
        EXPECT_OK(bb_tokenizer_encode(t, "Hi", 1, 0, &ids, &n));
        EXPECT(n >= 1 && ids[0] != 5, "no BOS added when the post-processor adds none");
        free(ids);
    }
    bb_tokenizer_destroy(&t);
    m->tokenizer_path[0] = '\0';
    EXPECT_ERR(bb_tokenizer_open_for_model(m, NULL, &t), BB_ERR_ARG, "no tokenizer found");
    bb_model_destroy(&m);
}

/* Streaming decode (one token at a time) joins to what decode_seq gives, and
 * text that is not UTF-8 survives the byte-level round trip. */
static void test_decode_stream(void) {
    bb_tokenizer *t = NULL;
    EXPECT_OK(bb_tokenizer_load(fx("bl_llama3.json"), 0, &t));
    if (!t) return;
    const char *text = "Once upon a time \xff\xfe in a \xc3 land";
    int *ids = NULL, n = 0;
    EXPECT_OK(bb_tokenizer_encode(t, text, 1, 1, &ids, &n));
    char joined[256] = "";
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        const char *p;
        size_t l;
        EXPECT_OK(bb_tokenizer_decode(t, i ? ids[i - 1] : -1, ids[i], &p, &l));
        if (o + l < sizeof joined) {
            memcpy(joined + o, p, l);
            o += l;
        }
    }
    joined[o] = '\0';
    EXPECT(strcmp(joined, text) == 0, "streamed \"%s\"", joined);
    EXPECT(ids[0] == bb_tokenizer_bos_id(t) && ids[n - 1] == bb_tokenizer_eos_id(t), "BOS/EOS around the text");
    EXPECT_ERR(bb_tokenizer_decode(t, -1, n + 100000, (const char **)&text, &o), BB_ERR_ARG, "outside");
    free(ids);
    bb_tokenizer_destroy(&t);
}

int main(void) {
    bb_log_set_level(BB_LOG_ERROR);
    const char *env = getenv("BB_TOK_FIXTURES");
    snprintf(fix, sizeof fix, "%s/tokenizer_fixtures", test_tmpdir());
    if (env && *env) snprintf(fix, sizeof fix, "%s", env);
    char *missing = bb_path_exists(fx("missing_packages.txt")) ? read_text(fx("missing_packages.txt")) : NULL;
    if (missing) {
        printf("skipped: the fixture script lacks Python packages: %s\n", missing);
        free(missing);
        return 77;
    }
    char *text = read_text(fx("reference.json"));
    if (!text || bb_json_parse(text, strlen(text), "reference.json", &ref) != BB_OK) {
        fprintf(stderr,
                "no fixtures in %s: run tests/py/make_tokenizer_fixtures.py %s (CTest: tokenizer_hf.fixtures)\n", fix,
                fix);
        free(text);
        return 1;
    }
    free(text);
    TEST_RUN(test_reference);
    TEST_RUN(test_gguf_vocab);
    TEST_RUN(test_llama2c_equivalent);
    TEST_RUN(test_broken);
    TEST_RUN(test_small_errors);
    TEST_RUN(test_open_for_model);
    TEST_RUN(test_decode_stream);
    bb_json_doc_destroy(&ref);
    return TEST_DONE();
}
