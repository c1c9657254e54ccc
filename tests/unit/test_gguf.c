/* test_gguf.c — GGUF reader, model mapping and writer against fixtures made by
 * tests/py/make_gguf_fixtures.py (in $BB_TEST_TMP/gguf_fixtures), plus a writer round trip
 * whose output tests/py/check_gguf_written.py reads again with the gguf package. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/dtype.h"
#include "core/file.h"
#include "io/gguf.h"
#include "io/model.h"
#include "test.h"

static char fixdir[1024];

static void fixture(char *out, size_t n, const char *name) {
    int w = snprintf(out, n, "%s/%s", fixdir, name);
    EXPECT(w > 0 && (size_t)w < n, "fixture path %s/%s is too long", fixdir, name);
}

static int str_eq(bb_gguf_str s, const char *c) { return s.len == strlen(c) && memcmp(s.s, c, s.len) == 0; }

static void test_type_traits(void) {
    struct {
        int type, blck, size;
    } want[] = {
        {BB_GGML_F32, 1, 4},      {BB_GGML_F16, 1, 2},      {BB_GGML_BF16, 1, 2},     {BB_GGML_Q4_0, 32, 18},
        {BB_GGML_Q4_1, 32, 20},   {BB_GGML_Q5_0, 32, 22},   {BB_GGML_Q5_1, 32, 24},   {BB_GGML_Q8_0, 32, 34},
        {BB_GGML_Q8_1, 32, 40},   {BB_GGML_Q2_K, 256, 84},  {BB_GGML_Q3_K, 256, 110}, {BB_GGML_Q4_K, 256, 144},
        {BB_GGML_Q5_K, 256, 176}, {BB_GGML_Q6_K, 256, 210}, {BB_GGML_Q8_K, 256, 292}, {BB_GGML_IQ2_XXS, 256, 66},
        {BB_GGML_IQ2_XS, 256, 74}, {BB_GGML_IQ3_XXS, 256, 98}, {BB_GGML_IQ1_S, 256, 50}, {BB_GGML_IQ4_NL, 32, 18},
        {BB_GGML_IQ3_S, 256, 110}, {BB_GGML_IQ2_S, 256, 82}, {BB_GGML_IQ4_XS, 256, 136}, {BB_GGML_IQ1_M, 256, 56},
        {BB_GGML_I8, 1, 1},       {BB_GGML_I64, 1, 8},      {BB_GGML_F64, 1, 8},      {BB_GGML_TQ1_0, 256, 54},
        {BB_GGML_TQ2_0, 256, 66}, {BB_GGML_MXFP4, 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const bb_ggml_type_traits *t = bb_ggml_type_info(want[i].type);
        EXPECT(t && t->blck_size == want[i].blck && t->type_size == want[i].size, "type %d: %s %d/%d", want[i].type,
               t ? t->name : "NULL", t ? t->blck_size : -1, t ? t->type_size : -1);
    }
    EXPECT(bb_ggml_type_info(4) == NULL && bb_ggml_type_info(-1) == NULL && bb_ggml_type_info(BB_GGML_TYPE_COUNT) == NULL,
           "retired and out-of-range ids have no traits");
    EXPECT(strcmp(bb_ggml_type_name(BB_GGML_Q4_K), "q4_K") == 0, "name %s", bb_ggml_type_name(BB_GGML_Q4_K));
    size_t n = 0;
    EXPECT_OK(bb_ggml_row_size(BB_GGML_Q8_0, 4096, "x", &n));
    EXPECT(n == 128 * 34, "q8_0 row of 4096: %zu bytes", n);
    EXPECT_ERR(bb_ggml_row_size(BB_GGML_Q4_K, 100, "blk.0.ffn_down.weight", &n), BB_ERR_ARG,
               "not a multiple of the q4_K block size 256");
}

/* The traits table against the gguf package's GGML_QUANT_SIZES: a size that differs fails; a
 * type the package knows and birdbone does not is reported, not failed (newer package). */
static void test_type_table_vs_gguf_package(void) {
    char path[1200], name[64];
    fixture(path, sizeof path, "ggml_types.txt");
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL, "cannot open %s: run tests/py/make_gguf_fixtures.py first", path);
    if (!f) return;
    int id, blck, size, n = 0;
    while (fscanf(f, "%d %63s %d %d", &id, name, &blck, &size) == 4) {
        const bb_ggml_type_traits *t = bb_ggml_type_info(id);
        if (!t) {
            printf("note: ggml type %d (%s) from the gguf package is not in birdbone's table\n", id, name);
            continue;
        }
        EXPECT(strcasecmp(t->name, name) == 0 && t->blck_size == blck && t->type_size == size,
               "type %d: birdbone %s %d/%d, gguf package %s %d/%d", id, t->name, t->blck_size, t->type_size, name,
               blck, size);
        n++;
    }
    fclose(f);
    EXPECT(n >= 30, "only %d types compared", n);
}

/* The tensor of model m called name (output.weight of a tied model is token_embd's storage). */
typedef struct {
    const char *name;
    const bb_tensor *found;
} find_ctx;

static bb_status find_visit(const bb_tensor *t, void *ud) {
    find_ctx *f = ud;
    if (strcmp(t->name, f->name) == 0) f->found = t;
    return BB_OK;
}

static const bb_tensor *model_tensor(const bb_model *m, const char *name) {
    find_ctx f = {name, NULL};
    bb_model_for_each_tensor(m, find_visit, &f);
    return f.found;
}

static double config_value(const bb_model_config *c, const char *key, int *ok) {
    *ok = 1;
#define F(k)                                   \
    if (strcmp(key, #k) == 0) return (double)c->k;
    F(dim) F(hidden_dim) F(n_layers) F(n_heads) F(n_kv_heads) F(head_dim) F(vocab_size) F(max_seq_len) F(norm_eps)
    F(rope_theta) F(tied_embeddings) F(attn_bias) F(rope_style) F(bos_id) F(eos_id) F(rope_scaling) F(rope_factor)
    F(rope_low_freq_factor) F(rope_high_freq_factor) F(rope_orig_max_pos)
#undef F
    *ok = 0;
    return 0;
}

static void check_tensor_line(const bb_model *m, char *line) {
    char name[128], dt[16];
    int off = 0;
    EXPECT(sscanf(line, "tensor %127s %15s%n", name, dt, &off) == 2, "bad reference line: %s", line);
    const bb_tensor *t = model_tensor(m, name);
    EXPECT(t != NULL, "%s: tensor %s not found", m->path, name);
    if (!t) return;
    EXPECT(strcmp(bb_dtype_name(t->dtype), dt) == 0, "%s: dtype %s, expected %s", name, bb_dtype_name(t->dtype), dt);
    char *p = line + off;
    int nd = 0;
    long long dim;
    int k;
    while (sscanf(p, " %lld%n", &dim, &k) == 1) {
        EXPECT(nd < t->ndim && t->shape[nd] == dim, "%s: dimension %d is %lld, expected %lld", name, nd,
               nd < t->ndim ? (long long)t->shape[nd] : -1LL, dim);
        nd++;
        p += k;
    }
    EXPECT(nd == t->ndim, "%s: %d dimensions, expected %d", name, t->ndim, nd);
    double sum_ref, f[3];
    EXPECT(sscanf(p, " sum %lf first %lf %lf %lf", &sum_ref, &f[0], &f[1], &f[2]) == 4, "bad reference line: %s",
           line);
    int64_t n = bb_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    EXPECT_OK(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), v));
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    EXPECT_NEAR(sum, sum_ref, 1e-5 * (1 + fabs(sum_ref)));
    for (int i = 0; i < 3; i++) EXPECT(v[i] == (float)f[i], "%s[%d] = %.9g, expected %.9g", name, i, v[i], f[i]);
    free(v);
}

static void test_models(void) {
    char path[1200], line[4096];
    fixture(path, sizeof path, "reference.txt");
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL, "cannot open %s: run tests/py/make_gguf_fixtures.py first", path);
    if (!f) return;
    bb_model *m = NULL;
    int models = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char a[256];
        double v;
        if (sscanf(line, "model %255s", a) == 1) {
            fixture(path, sizeof path, a);
            EXPECT_OK(bb_model_open(path, &m));
            if (m) {
                models++;
                EXPECT(m->source == BB_SRC_GGUF && m->n_files == 1, "source %d, %d files", (int)m->source,
                       m->n_files);
                const bb_gguf *g = bb_gguf_of_model(m);
                EXPECT(g != NULL, "%s: no bb_gguf behind the model", path);
                bb_gguf_str tok = {0};
                if (g) EXPECT_OK(bb_gguf_get_arr_str(g, "tokenizer.ggml.tokens", 5, &tok));
                EXPECT(str_eq(tok, "tok5"), "token 5 is \"%.*s\"", (int)tok.len, tok.s ? tok.s : "");
                if (m->cfg.tied_embeddings)
                    EXPECT(m->output.data == m->tok_embd.data, "tied output does not share token_embd's storage");
            }
        } else if (!m) {
            continue;
        } else if (sscanf(line, "config %255s %lf", a, &v) == 2) {
            int ok;
            double got = config_value(&m->cfg, a, &ok);
            EXPECT(ok, "unknown config key %s", a);
            EXPECT(fabs(got - v) <= 1e-6 * (1 + fabs(v)), "%s: config %s is %g, expected %g", m->path, a, got, v);
        } else if (strncmp(line, "tensor ", 7) == 0) {
            check_tensor_line(m, line);
        } else if (strcmp(line, "end") == 0) {
            bb_model_destroy(&m);
        }
    }
    fclose(f);
    bb_model_destroy(&m);
    EXPECT(models == 5, "%d models in the reference, expected 5", models);
}

static bb_status status_by_name(const char *s) {
    static const struct {
        const char *name;
        bb_status st;
    } map[] = {{"BB_ERR_FORMAT", BB_ERR_FORMAT}, {"BB_ERR_UNSUPPORTED", BB_ERR_UNSUPPORTED}, {"BB_ERR_IO", BB_ERR_IO}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, s) == 0) return map[i].st;
    return BB_OK;
}

static bb_status open_gguf_and_destroy(const char *path) {
    bb_gguf *g = NULL;
    bb_status st = bb_gguf_open(path, &g);
    bb_gguf_destroy(&g);
    return st;
}

static bb_status open_model_and_destroy(const char *path) {
    bb_model *m = NULL;
    bb_status st = bb_model_open(path, &m);
    bb_model_destroy(&m);
    return st;
}

static void test_broken(void) {
    char path[1200], line[1024];
    fixture(path, sizeof path, "broken.txt");
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL, "cannot open %s: run tests/py/make_gguf_fixtures.py first", path);
    if (!f) return;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char name[256], code[64];
        int off = 0;
        if (sscanf(line, "%255s %63s %n", name, code, &off) != 2) continue;
        const char *words = line + off;
        bb_status want = status_by_name(code);
        EXPECT(want != BB_OK, "unknown status %s", code);
        fixture(path, sizeof path, name);
        /* bb_model_open sends files without the GGUF magic to the llama2.c reader. */
        if (strcmp(name, "bad_magic.gguf") == 0) EXPECT_ERR(open_gguf_and_destroy(path), want, words);
        else EXPECT_ERR(open_model_and_destroy(path), want, words);
        n++;
    }
    fclose(f);
    EXPECT(n >= 20, "only %d broken files listed", n);
}

static void test_all_types(void) {
    char path[1200];
    fixture(path, sizeof path, "all_types_v2.gguf");
    bb_gguf *g = NULL;
    EXPECT_OK(bb_gguf_open(path, &g));
    if (!g) return;
    EXPECT(bb_gguf_version(g) == 2 && bb_gguf_alignment(g) == 32 && bb_gguf_n_tensors(g) == 0, "version %u",
           bb_gguf_version(g));
    uint8_t u8 = 0;
    int8_t i8 = 0;
    uint16_t u16 = 0;
    int16_t i16 = 0;
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0;
    int64_t i64 = 0, anyint = 0;
    float f32 = 0;
    double f64 = 0, anyf = 0;
    int b = 0;
    bb_gguf_str s = {0};
    EXPECT_OK(bb_gguf_get_u8(g, "u8", &u8));
    EXPECT_OK(bb_gguf_get_i8(g, "i8", &i8));
    EXPECT_OK(bb_gguf_get_u16(g, "u16", &u16));
    EXPECT_OK(bb_gguf_get_i16(g, "i16", &i16));
    EXPECT_OK(bb_gguf_get_u32(g, "u32", &u32));
    EXPECT_OK(bb_gguf_get_i32(g, "i32", &i32));
    EXPECT_OK(bb_gguf_get_u64(g, "u64", &u64));
    EXPECT_OK(bb_gguf_get_i64(g, "i64", &i64));
    EXPECT_OK(bb_gguf_get_f32(g, "f32", &f32));
    EXPECT_OK(bb_gguf_get_f64(g, "f64", &f64));
    EXPECT_OK(bb_gguf_get_bool(g, "bool", &b));
    EXPECT_OK(bb_gguf_get_str(g, "str", &s));
    EXPECT(u8 == 7 && i8 == -7 && u16 == 700 && i16 == -700 && u32 == 70000 && i32 == -70000 &&
               u64 == (1ull << 40) && i64 == -(1ll << 40) && f32 == 1.5f && f64 == -2.25 && b == 1 && str_eq(s, "hello"),
           "values differ");
    EXPECT_OK(bb_gguf_get_int(g, "i16", &anyint));
    EXPECT(anyint == -700, "get_int(i16) = %lld", (long long)anyint);
    EXPECT_OK(bb_gguf_get_float(g, "f32", &anyf));
    EXPECT(anyf == 1.5, "get_float(f32) = %g", anyf);
    EXPECT_ERR(bb_gguf_get_u32(g, "str", &u32), BB_ERR_FORMAT, "str: expected uint32, found string");
    EXPECT_ERR(bb_gguf_get_int(g, "f64", &anyint), BB_ERR_FORMAT, "f64: expected an integer, found float64");
    EXPECT_ERR(bb_gguf_get_u32(g, "absent.key", &u32), BB_ERR_FORMAT, "key absent.key is missing");
    EXPECT(bb_gguf_find_key(g, "absent.key") == -1, "find_key of an absent key");
    int64_t id = bb_gguf_find_key(g, "nested");
    EXPECT(id >= 0 && bb_gguf_kv_type(g, id) == BB_GGUF_ARRAY && bb_gguf_arr_type(g, id) == BB_GGUF_ARRAY &&
               bb_gguf_arr_len(g, id) == 2 && strcmp(bb_gguf_key_name(g, id), "nested") == 0,
           "nested array metadata");
    EXPECT_ERR(bb_gguf_get_arr_str(g, "nested", 0, &s), BB_ERR_FORMAT, "expected array of string, found array of array");
    uint64_t n = 0;
    EXPECT_OK(bb_gguf_get_arr(g, "strs", BB_GGUF_STRING, &n));
    EXPECT(n == 3, "strs has %llu elements", (unsigned long long)n);
    const char *want[] = {"x", "", "zzz"};
    for (uint64_t i = 0; i < 3; i++) {
        EXPECT_OK(bb_gguf_get_arr_str(g, "strs", i, &s));
        EXPECT(str_eq(s, want[i]), "strs[%llu] = \"%.*s\"", (unsigned long long)i, (int)s.len, s.s);
    }
    EXPECT_ERR(bb_gguf_get_arr_str(g, "strs", 3, &s), BB_ERR_ARG, "index 3 is beyond its 3 strings");
    bb_gguf_destroy(&g);
    bb_gguf_destroy(&g);
    EXPECT(g == NULL, "destroy nulls the pointer");
}

/* Every prefix of a valid file must be rejected cleanly, and the whole file parse from memory. */
static void test_prefixes(void) {
    char path[1200];
    fixture(path, sizeof path, "llama_f32.gguf");
    char *buf = NULL;
    size_t size = 0;
    EXPECT_OK(bb_file_read_all(path, 1 << 24, &buf, &size));
    if (!buf) return;
    int accepted = 0;
    bb_error_set_quiet(1);
    for (size_t n = 0; n < size; n++) {
        bb_gguf *g = NULL;
        if (bb_gguf_open_memory(buf, n, "prefix", &g) == BB_OK) accepted++;
        bb_gguf_destroy(&g);
    }
    bb_error_set_quiet(0);
    EXPECT(accepted == 0, "%d truncated prefixes were accepted", accepted);
    bb_model *m = NULL;
    EXPECT_OK(bb_gguf_model_open_memory(buf, size, "llama_f32 in memory", &m));
    if (m) {
        EXPECT_OK(bb_model_validate(m));
        EXPECT(m->n_files == 0 && (const char *)m->tok_embd.data > buf &&
                   (const char *)m->tok_embd.data < buf + size,
               "tensors point into the caller's buffer");
    }
    bb_model_destroy(&m);
    bb_gguf *g = NULL;
    uint32_t swapped = 0x03000000u;
    memcpy(buf + 4, &swapped, 4);
    EXPECT_ERR(bb_gguf_open_memory(buf, size, "swapped", &g), BB_ERR_UNSUPPORTED, "big-endian GGUF files are not supported");
    EXPECT_ERR(bb_gguf_open_memory(NULL, 0, "empty", &g), BB_ERR_FORMAT, "empty: not a GGUF file");
    EXPECT(g == NULL, "a failed open leaves NULL");
    free(buf);
}

/* ---- writer: the values here are repeated in tests/py/check_gguf_written.py ---- */

static void fill_f32(float *v, int n) {
    for (int i = 0; i < n; i++) v[i] = (float)i * 0.25f - 1.0f;
}

static bb_status write_sample(const char *path, uint32_t alignment) {
    static float t32[3 * 5];
    static uint16_t t16[4 * 8], tb16[2 * 3 * 4];
    static uint8_t tq8[2 * 2 * 34];
    float tmp[32];
    fill_f32(t32, 15);
    fill_f32(tmp, 32);
    for (int i = 0; i < 32; i++) t16[i] = bb_f32_to_f16(tmp[i]);
    for (int i = 0; i < 24; i++) tb16[i] = bb_f32_to_bf16(tmp[i]);
    for (int i = 0; i < (int)sizeof tq8; i++) tq8[i] = (uint8_t)(i * 7);
    bb_gguf_writer *w = NULL;
    BB_CALL(bb_gguf_writer_create(&w));
    bb_status st = BB_OK;
    const char *strs[] = {"a", "bc", "", "d\xc3\xa9"};
    const int32_t ints[] = {-1, 0, 1, 2147483647};
    const float flts[] = {0.5f, -1.25f, 3.0f};
    const uint8_t bools[] = {1, 0, 1};
    const uint64_t u64s[] = {1, 1ull << 63};
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    if (alignment) BB_CALL_GOTO(st, out, bb_gguf_writer_add_u32(w, "general.alignment", alignment));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_u8(w, "t.u8", 200));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_i8(w, "t.i8", -100));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_u16(w, "t.u16", 60000));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_i16(w, "t.i16", -30000));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_u32(w, "t.u32", 4000000000u));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_i32(w, "t.i32", -2000000000));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_u64(w, "t.u64", 1ull << 50));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_i64(w, "t.i64", -(1ll << 50)));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_f32(w, "t.f32", 0.1f));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_f64(w, "t.f64", 0.1));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_bool(w, "t.bool", 1));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "t.str", "birdbone", 8));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr_str(w, "t.arr_str", strs, NULL, 4));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "t.arr_i32", BB_GGUF_INT32, ints, 4));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "t.arr_f32", BB_GGUF_FLOAT32, flts, 3));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "t.arr_bool", BB_GGUF_BOOL, bools, 3));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_arr(w, "t.arr_u64", BB_GGUF_UINT64, u64s, 2));
    int64_t s32[] = {3, 5}, s16[] = {4, 8}, sb16[] = {2, 3, 4}, sq8[] = {2, 64};
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_tensor(w, "w.f32", BB_GGML_F32, 2, s32, t32, sizeof t32));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_tensor(w, "w.f16", BB_GGML_F16, 2, s16, t16, sizeof t16));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_tensor(w, "w.bf16", BB_GGML_BF16, 3, sb16, tb16, sizeof tb16));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_tensor(w, "w.q8_0", BB_GGML_Q8_0, 2, sq8, tq8, sizeof tq8));
    BB_CALL_GOTO(st, out, bb_gguf_writer_write(w, path));
out:
    bb_gguf_writer_destroy(&w);
    return st;
}

static void check_written(const bb_gguf *g) {
    uint8_t u8 = 0;
    int8_t i8 = 0;
    uint16_t u16 = 0;
    int16_t i16 = 0;
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0, n = 0;
    int64_t i64 = 0, ints[4] = {0};
    float f32 = 0, flts[3] = {0};
    double f64 = 0;
    int b = 0;
    bb_gguf_str s = {0};
    EXPECT_OK(bb_gguf_get_u8(g, "t.u8", &u8));
    EXPECT_OK(bb_gguf_get_i8(g, "t.i8", &i8));
    EXPECT_OK(bb_gguf_get_u16(g, "t.u16", &u16));
    EXPECT_OK(bb_gguf_get_i16(g, "t.i16", &i16));
    EXPECT_OK(bb_gguf_get_u32(g, "t.u32", &u32));
    EXPECT_OK(bb_gguf_get_i32(g, "t.i32", &i32));
    EXPECT_OK(bb_gguf_get_u64(g, "t.u64", &u64));
    EXPECT_OK(bb_gguf_get_i64(g, "t.i64", &i64));
    EXPECT_OK(bb_gguf_get_f32(g, "t.f32", &f32));
    EXPECT_OK(bb_gguf_get_f64(g, "t.f64", &f64));
    EXPECT_OK(bb_gguf_get_bool(g, "t.bool", &b));
    EXPECT_OK(bb_gguf_get_str(g, "t.str", &s));
    EXPECT(u8 == 200 && i8 == -100 && u16 == 60000 && i16 == -30000 && u32 == 4000000000u && i32 == -2000000000 &&
               u64 == (1ull << 50) && i64 == -(1ll << 50) && f32 == 0.1f && f64 == 0.1 && b == 1 &&
               str_eq(s, "birdbone"),
           "scalar values differ after the round trip");
    EXPECT_OK(bb_gguf_get_arr(g, "t.arr_str", BB_GGUF_STRING, &n));
    EXPECT(n == 4, "t.arr_str has %llu strings", (unsigned long long)n);
    EXPECT_OK(bb_gguf_get_arr_str(g, "t.arr_str", 3, &s));
    EXPECT(str_eq(s, "d\xc3\xa9"), "t.arr_str[3]");
    EXPECT_OK(bb_gguf_get_arr_int(g, "t.arr_i32", 0, 4, ints));
    EXPECT(ints[0] == -1 && ints[3] == 2147483647, "t.arr_i32");
    EXPECT_OK(bb_gguf_get_arr_f32(g, "t.arr_f32", 1, 2, flts));
    EXPECT(flts[0] == -1.25f && flts[1] == 3.0f, "t.arr_f32");
    EXPECT_ERR(bb_gguf_get_arr_int(g, "t.arr_u64", 0, 2, ints), BB_ERR_FORMAT, "too large for int64");
    EXPECT_ERR(bb_gguf_get_arr_f32(g, "t.arr_f32", 2, 2, flts), BB_ERR_ARG, "beyond its 3 elements");
    const char *names[] = {"w.f32", "w.f16", "w.bf16", "w.q8_0"};
    const int types[] = {BB_GGML_F32, BB_GGML_F16, BB_GGML_BF16, BB_GGML_Q8_0};
    const size_t sizes[] = {60, 64, 48, 136};
    EXPECT(bb_gguf_n_tensors(g) == 4, "%lld tensors", (long long)bb_gguf_n_tensors(g));
    for (int i = 0; i < 4; i++) {
        const bb_gguf_tensor *t = bb_gguf_tensor_at(g, bb_gguf_find_tensor(g, names[i]));
        EXPECT(t && t->type == types[i] && t->nbytes == sizes[i], "tensor %s", names[i]);
        EXPECT(!t || (bb_gguf_data_offset(g) + t->offset) % bb_gguf_alignment(g) == 0, "%s is not aligned", names[i]);
    }
    const bb_gguf_tensor *t = bb_gguf_tensor_at(g, bb_gguf_find_tensor(g, "w.bf16"));
    EXPECT(t && t->ndim == 3 && t->shape[0] == 2 && t->shape[1] == 3 && t->shape[2] == 4, "w.bf16 shape");
    t = bb_gguf_tensor_at(g, bb_gguf_find_tensor(g, "w.f32"));
    float v = 0;
    if (t) memcpy(&v, (const char *)t->data + 4 * 7, 4);
    EXPECT(v == 0.75f, "w.f32[1][2] = %g", v);
    t = bb_gguf_tensor_at(g, bb_gguf_find_tensor(g, "w.q8_0"));
    EXPECT(t && ((const uint8_t *)t->data)[100] == (uint8_t)700, "w.q8_0 bytes");
}

static void test_writer(void) {
    char path[1200], path2[1200], path3[1200];
    snprintf(path, sizeof path, "%s/gguf_written.gguf", test_tmpdir());
    snprintf(path2, sizeof path2, "%s/gguf_written_align64.gguf", test_tmpdir());
    snprintf(path3, sizeof path3, "%s/gguf_copied.gguf", test_tmpdir());
    EXPECT_OK(write_sample(path, 0));
    EXPECT_OK(write_sample(path2, 64));
    bb_gguf *g = NULL, *g2 = NULL, *g3 = NULL;
    EXPECT_OK(bb_gguf_open(path, &g));
    EXPECT_OK(bb_gguf_open(path2, &g2));
    if (g) check_written(g);
    if (g2) {
        check_written(g2);
        EXPECT(bb_gguf_alignment(g2) == 64 && bb_gguf_data_offset(g2) % 64 == 0, "alignment %u",
               bb_gguf_alignment(g2));
    }
    /* Copy every key verbatim into a new file: the raw bytes must match. */
    bb_gguf_writer *w = NULL;
    EXPECT_OK(bb_gguf_writer_create(&w));
    for (int64_t i = 0; g2 && w && i < bb_gguf_n_kv(g2); i++) EXPECT_OK(bb_gguf_writer_copy_kv(w, g2, i));
    if (w) EXPECT_OK(bb_gguf_writer_write(w, path3));
    bb_gguf_writer_destroy(&w);
    EXPECT(w == NULL, "writer destroy nulls the pointer");
    EXPECT_OK(bb_gguf_open(path3, &g3));
    for (int64_t i = 0; g2 && g3 && i < bb_gguf_n_kv(g2); i++) {
        const char *k2, *k3;
        const void *r2, *r3;
        size_t n2 = 0, n3 = 0;
        EXPECT_OK(bb_gguf_kv_raw(g2, i, &k2, &r2, &n2));
        EXPECT_OK(bb_gguf_kv_raw(g3, i, &k3, &r3, &n3));
        EXPECT(strcmp(k2, k3) == 0 && n2 == n3 && memcmp(r2, r3, n2) == 0, "copied key %lld differs", (long long)i);
    }
    EXPECT(g3 && bb_gguf_alignment(g3) == 64, "copied alignment");
    bb_gguf_destroy(&g);
    bb_gguf_destroy(&g2);
    bb_gguf_destroy(&g3);

    EXPECT_OK(bb_gguf_writer_create(&w));
    if (!w) return;
    float x[64] = {0};
    int64_t s16[] = {2, 16}, s32[] = {2, 32};
    EXPECT_ERR(bb_gguf_writer_add_tensor(w, "q", BB_GGML_Q8_0, 2, s16, x, 68), BB_ERR_ARG,
               "not a multiple of the q8_0 block size 32");
    EXPECT_ERR(bb_gguf_writer_add_tensor(w, "q", BB_GGML_Q8_0, 2, s32, x, 64), BB_ERR_ARG,
               "needs 68 bytes but 64 were given");
    EXPECT_OK(bb_gguf_writer_add_tensor(w, "q", BB_GGML_Q8_0, 2, s32, x, 68));
    EXPECT_ERR(bb_gguf_writer_add_tensor(w, "q", BB_GGML_F32, 2, s16, x, 128), BB_ERR_ARG, "added twice");
    EXPECT_OK(bb_gguf_writer_add_u32(w, "k", 1));
    EXPECT_ERR(bb_gguf_writer_add_str(w, "k", "x", 1), BB_ERR_ARG, "key k is added twice");
    EXPECT_ERR(bb_gguf_writer_add_u32(w, "general.alignment", 48), BB_ERR_ARG, "power of two");
    EXPECT_ERR(bb_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), BB_ERR_IO, "cannot create");
    bb_gguf_writer_destroy(&w);
}

/* A model re-written through the writer (every key copied, every tensor re-added with its
 * ggml type) opens again with the same tensors. */
typedef struct {
    bb_gguf_writer *w;
    const bb_model *other;
    int n;
} rewrite_ctx;

static int ggml_type_of(bb_dtype d) {
    return d == BB_F16 ? BB_GGML_F16 : d == BB_BF16 ? BB_GGML_BF16 : d == BB_F64 ? BB_GGML_F64 : BB_GGML_F32;
}

static bb_status rewrite_visit(const bb_tensor *t, void *ud) {
    rewrite_ctx *r = ud;
    r->n++;
    return bb_gguf_writer_add_tensor(r->w, t->name, ggml_type_of(t->dtype), t->ndim, t->shape, t->data, t->nbytes);
}

static bb_status compare_visit(const bb_tensor *t, void *ud) {
    rewrite_ctx *r = ud;
    const bb_tensor *o = model_tensor(r->other, t->name);
    EXPECT(o && o->dtype == t->dtype && o->nbytes == t->nbytes && memcmp(o->data, t->data, t->nbytes) == 0,
           "tensor %s differs after the rewrite", t->name);
    r->n++;
    return BB_OK;
}

static void test_model_rewrite(void) {
    char src[1200], dst[1200];
    fixture(src, sizeof src, "llama_bf16_tied.gguf");
    snprintf(dst, sizeof dst, "%s/gguf_rewritten.gguf", test_tmpdir());
    bb_model *m = NULL, *m2 = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    if (!m) return;
    const bb_gguf *g = bb_gguf_of_model(m);
    rewrite_ctx r = {0};
    EXPECT_OK(bb_gguf_writer_create(&r.w));
    for (int64_t i = 0; r.w && i < bb_gguf_n_kv(g); i++) EXPECT_OK(bb_gguf_writer_copy_kv(r.w, g, i));
    if (r.w) EXPECT_OK(bb_model_for_each_tensor(m, rewrite_visit, &r));
    if (r.w) EXPECT_OK(bb_gguf_writer_write(r.w, dst));
    bb_gguf_writer_destroy(&r.w);
    EXPECT_OK(bb_model_open(dst, &m2));
    if (m2) {
        EXPECT(m2->cfg.tied_embeddings && m2->cfg.vocab_size == m->cfg.vocab_size && m2->cfg.dim == m->cfg.dim,
               "config differs after the rewrite");
        rewrite_ctx c = {.other = m2};
        EXPECT_OK(bb_model_for_each_tensor(m, compare_visit, &c));
        EXPECT(c.n == r.n && c.n == 1 + 2 * 9 + 1, "%d tensors compared, %d written", c.n, r.n);
    }
    bb_model_destroy(&m2);
    bb_model_destroy(&m);
}

int main(void) {
    snprintf(fixdir, sizeof fixdir, "%s/gguf_fixtures", test_tmpdir());
    TEST_RUN(test_type_traits);
    TEST_RUN(test_type_table_vs_gguf_package);
    TEST_RUN(test_models);
    TEST_RUN(test_broken);
    TEST_RUN(test_all_types);
    TEST_RUN(test_prefixes);
    TEST_RUN(test_writer);
    TEST_RUN(test_model_rewrite);
    return TEST_DONE();
}
