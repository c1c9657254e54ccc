/* test_safetensors.c — safetensors reader on hand-built images: views, offsets, and every validation error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "test.h"

/* An image: 8-byte length, header, then ndata bytes of value i & 0xff. */
static uint8_t *build(const char *header, size_t ndata, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + ndata;
    uint8_t *b = malloc(*size);
    if (!b) return NULL;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < ndata; i++) b[8 + h + i] = (uint8_t)i;
    return b;
}

static void expect_fail(const char *header, size_t ndata, bb_status code, const char *needle) {
    size_t n;
    uint8_t *b = build(header, ndata, &n);
    bb_safetensors *st = (bb_safetensors *)&st;
    EXPECT_ERR(bb_safetensors_parse(b, n, "x.safetensors", &st), code, needle);
    EXPECT(st == NULL, "failed parse left a table");
    free(b);
}

static void test_valid(void) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                      "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
                      "\"e\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[40,40]},"
                      "\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[40,43]}}  ";
    size_t n;
    uint8_t *b = build(hdr, 43, &n);
    bb_safetensors *st = NULL;
    EXPECT_OK(bb_safetensors_parse(b, n, "x.safetensors", &st));
    EXPECT(bb_safetensors_count(st) == 5, "%zu tensors", bb_safetensors_count(st));
    const char *order[] = {"w", "b", "s", "e", "m"};
    for (size_t i = 0; i < 5; i++) {
        const bb_st_entry *e = bb_safetensors_entry(st, i);
        EXPECT(e && strcmp(e->name, order[i]) == 0 && strcmp(e->t.name, order[i]) == 0, "entry %zu", i);
        EXPECT(e && bb_safetensors_find(st, order[i]) == e, "find %s", order[i]);
    }
    EXPECT(bb_safetensors_entry(st, 5) == NULL, "entry out of range");
    EXPECT(bb_safetensors_find(st, "__metadata__") == NULL && bb_safetensors_find(st, "zz") == NULL, "not tensors");
    size_t data0 = 8 + strlen(hdr);
    const bb_st_entry *w = bb_safetensors_find(st, "w");
    EXPECT(w->t.dtype == BB_F32 && w->t.ndim == 2 && w->t.shape[0] == 2 && w->t.shape[1] == 3, "w shape");
    EXPECT(w->t.data == b + data0 && w->t.nbytes == 24 && w->t.file_offset == (int64_t)data0, "w storage");
    const bb_st_entry *bf = bb_safetensors_find(st, "b");
    EXPECT(bf->t.dtype == BB_BF16 && bf->t.data == b + data0 + 24 && bf->t.file_offset == (int64_t)data0 + 24,
           "b storage");
    const bb_st_entry *s = bb_safetensors_find(st, "s");
    EXPECT(s->t.ndim == 0 && s->t.nbytes == 8 && s->t.dtype == BB_I64, "scalar");
    const bb_st_entry *e = bb_safetensors_find(st, "e");
    EXPECT(e->t.ndim == 2 && e->t.shape[0] == 0 && e->t.nbytes == 0, "empty tensor");
    EXPECT(bb_safetensors_find(st, "m")->t.dtype == BB_U8, "BOOL reads as U8");
    const bb_json *meta = bb_safetensors_metadata(st);
    EXPECT(meta && strcmp(bb_json_str(bb_json_get(meta, "format"), NULL), "pt") == 0, "metadata");
    bb_safetensors_destroy(&st);
    EXPECT(st == NULL, "destroy nulls");
    bb_safetensors_destroy(&st);
    free(b);

    /* No metadata, no tensors. */
    b = build("{}", 0, &n);
    EXPECT_OK(bb_safetensors_parse(b, n, "x", &st));
    EXPECT(bb_safetensors_count(st) == 0 && bb_safetensors_metadata(st) == NULL, "empty file");
    bb_safetensors_destroy(&st);
    free(b);

    /* Long names are kept whole; the handle's name is cut to fit. */
    char big[400];
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(big, sizeof big, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
    b = build(big, 1, &n);
    EXPECT_OK(bb_safetensors_parse(b, n, "x", &st));
    const bb_st_entry *l = bb_safetensors_entry(st, 0);
    EXPECT(l && strcmp(l->name, name) == 0 && strlen(l->t.name) == BB_TENSOR_NAME_MAX - 1, "long name");
    bb_safetensors_destroy(&st);
    free(b);
}

static void test_errors(void) {
    const bb_status F = BB_ERR_FORMAT;
    uint8_t small[7] = {0};
    bb_safetensors *st = NULL;
    EXPECT_ERR(bb_safetensors_parse(small, sizeof small, "x.safetensors", &st), F,
               "x.safetensors: file is 7 bytes, shorter than the 8-byte header length");
    EXPECT_ERR(bb_safetensors_parse(NULL, 0, "x.safetensors", &st), F, "file is 0 bytes");
    uint8_t lenonly[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
    EXPECT_ERR(bb_safetensors_parse(lenonly, sizeof lenonly, "x.safetensors", &st), F,
               "x.safetensors: header length 200 goes beyond the 4 bytes after the length field");
    uint8_t huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    EXPECT_ERR(bb_safetensors_parse(huge, sizeof huge, "x.safetensors", &st), F,
               "exceeds the limit of 100000000 bytes");

    expect_fail("{\"a\":1,}", 0, F, "x.safetensors header:1:8: expected a string key after ','");
    expect_fail("[]", 0, F, "x.safetensors: header is an array, expected a JSON object of tensors");
    expect_fail("{\"a\":[]}", 0, F, "tensor a: header entry is an array, expected an object");
    expect_fail("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, F,
                "tensor a: \"dtype\" is missing, expected a string");
    expect_fail("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, BB_ERR_UNSUPPORTED,
                "tensor a: dtype F8_E4M3 is not supported");
    expect_fail("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, F, "unknown dtype \"f32\"");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, F,
                "tensor a: \"shape\" is a number, expected an array of non-negative integers");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, BB_ERR_UNSUPPORTED,
                "tensor a: 5 dimensions, at most 4 are supported");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, F, "shape entry 0 is -1");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, F,
                "shape entry 0 is a number, expected a non-negative integer");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,\"2\"],\"data_offsets\":[0,2]}}", 2, F,
                "shape entry 1 is a string");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,1]}}", 1, F,
                "element count of the shape overflows");
    expect_fail("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,1]}}", 1, F,
                "byte size of the shape overflows");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, F,
                "tensor a: \"data_offsets\" is missing, expected [begin, end]");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, F,
                "an array of fewer than 2 entries");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, F, "of more than 2 entries");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, F, "data_offsets begin is -1");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,null]}}", 1, F, "data_offsets end is null");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}", 4, F,
                "tensor a: data_offsets [2, 1] has begin after end");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, F,
                "tensor a: data_offsets [0, 8] end beyond the 7 bytes of data (file truncated?)");
    expect_fail("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e30]}}", 7, F,
                "data_offsets end is a number");
    expect_fail("{\"a\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}", 8, F,
                "tensor a: shape (2, 3) of dtype F16 needs 12 bytes but data_offsets [0, 8] hold 8");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,12]},"
                "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
                12, F, "tensor c: data_offsets [6, 8] overlap those of tensor a [0, 8]");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
                8, F, "overlap");
    expect_fail("{\"__metadata__\":[]}", 0, F, "\"__metadata__\" is an array, expected an object of strings");
    expect_fail("{\"__metadata__\":{\"k\":1}}", 0, F, "\"__metadata__\" key \"k\" is a number, expected a string");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{}}", 1, F,
                "duplicate key \"a\"");
}

/* Empty tensors occupy no bytes and overlap nothing; touching tensors are fine. */
static void test_adjacent_and_empty(void) {
    size_t n;
    uint8_t *b = build("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                       8, &n);
    bb_safetensors *st = NULL;
    EXPECT_OK(bb_safetensors_parse(b, n, "x", &st));
    bb_safetensors_destroy(&st);
    free(b);
}

static void test_open_files(void) {
    char path[1200];
    const char *src = getenv("BB_SOURCE");
    if (src && *src) {
        static const char *const seeds[] = {"tiny.safetensors", "bf16_scalar.safetensors", "llama_tiny.safetensors"};
        for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
            snprintf(path, sizeof path, "%s/tests/fuzz/seeds/safetensors/%s", src, seeds[i]);
            bb_safetensors *st = NULL;
            EXPECT_OK(bb_safetensors_open(path, &st));
            EXPECT(bb_safetensors_count(st) >= 3, "%s has %zu tensors", seeds[i], bb_safetensors_count(st));
            bb_safetensors_destroy(&st);
        }
        snprintf(path, sizeof path, "%s/tests/fuzz/seeds/safetensors/tiny.safetensors", src);
        bb_safetensors *st = NULL;
        EXPECT_OK(bb_safetensors_open(path, &st));
        const bb_st_entry *a = bb_safetensors_find(st, "a");
        float v[6];
        EXPECT(a != NULL, "tiny has a");
        if (a) {
            EXPECT_OK(bb_tensor_read_f32(&a->t, 0, 2, v));
            EXPECT(v[0] == 0 && v[5] == 5, "tiny.a values %g %g", (double)v[0], (double)v[5]);
        }
        bb_safetensors_destroy(&st);
    }
    snprintf(path, sizeof path, "%s/st_truncated.safetensors", test_tmpdir());
    size_t n;
    uint8_t *b = build("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, &n);
    EXPECT(test_write_file(path, b, n) == 0, "cannot write %s", path);
    free(b);
    bb_safetensors *st = (bb_safetensors *)&st;
    EXPECT_ERR(bb_safetensors_open(path, &st), BB_ERR_FORMAT,
               "st_truncated.safetensors: tensor a: data_offsets [0, 16] end beyond the 12 bytes");
    EXPECT(st == NULL, "failed open left a table");
    snprintf(path, sizeof path, "%s/st_does_not_exist.safetensors", test_tmpdir());
    EXPECT_ERR(bb_safetensors_open(path, &st), BB_ERR_IO, "st_does_not_exist.safetensors");
}

int main(void) {
    TEST_RUN(test_valid);
    TEST_RUN(test_errors);
    TEST_RUN(test_adjacent_and_empty);
    TEST_RUN(test_open_files);
    return TEST_DONE();
}
