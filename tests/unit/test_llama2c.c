/* test_llama2c.c — llama2.c reader: stories260K header and tensors, version 1 vs legacy, header and size errors.
 *
 * Also `test_llama2c --dump MODEL`: prints the reader's view (config, tokenizer,
 * each tensor's shape, file offset, first/last values and sum) for
 * tests/py/check_stories260k.py to compare with its own numpy reading. */
#include <stdint.h>

#include "core/file.h"
#include "io/llama2c.h"
#include "io/model.h"
#include "test.h"

static char model_path[1200];

static void test_stories260k(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(model_path, &m));
    if (!m) return;
    const bb_model_config *c = &m->cfg;
    EXPECT(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4 &&
               c->vocab_size == 512 && c->max_seq_len == 512 && c->head_dim == 8,
           "header: dim %d hidden %d layers %d heads %d kv %d vocab %d seq %d", c->dim, c->hidden_dim, c->n_layers,
           c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len);
    EXPECT(c->tied_embeddings && c->rope_style == BB_ROPE_INTERLEAVED && c->rope_theta == 10000.0f &&
               c->norm_eps == 1e-5f && c->bos_id == 1 && c->eos_id == 2 && !strcmp(c->arch, "llama"),
           "derived config");
    EXPECT(m->source == BB_SRC_LLAMA2C && m->n_files == 1 && m->files[0].size == 1056540, "mapping kept");
    size_t tl = strlen(m->tokenizer_path);
    EXPECT(tl > 10 && !strcmp(m->tokenizer_path + tl - 10, "tok512.bin"), "tokenizer found: '%s'", m->tokenizer_path);
    EXPECT(!strcmp(m->layers[4].w_down.name, "blk.4.ffn_down.weight"), "name %s", m->layers[4].w_down.name);
    EXPECT(m->layers[4].w_down.shape[0] == 64 && m->layers[4].w_down.shape[1] == 172, "w2 is (dim, hidden)");
    EXPECT(m->tok_embd.file_offset == 28, "embedding at %lld", (long long)m->tok_embd.file_offset);
    /* zero-copy: the handle points into the mapping */
    EXPECT((const uint8_t *)m->tok_embd.data == m->files[0].data + 28, "token_embd is not a view of the mmap");
    EXPECT(m->output.data == m->tok_embd.data, "tied output shares storage");
    /* rms_final sits just before the two (512, 4) freq_cis tables at the end */
    EXPECT(m->out_norm.file_offset == 1056540 - 2 * 512 * 4 * 4 - 64 * 4, "rms_final at %lld",
           (long long)m->out_norm.file_offset);
    EXPECT(bb_model_param_count(m) == 264128 - 2 * 512 * 4, "parameters %lld", (long long)bb_model_param_count(m));
    bb_model_destroy(&m);
    EXPECT(m == NULL, "destroy nulls");
    bb_model_destroy(&m);
}

/* ---- synthetic checkpoints written here ---------------------------------------------- */

typedef struct {
    int32_t h[7];
    int version, shared;
} tiny_spec;

/* A small checkpoint with value i*0.001 at float index i of the weight area. */
static size_t make_ckpt(const tiny_spec *s, uint8_t **out) {
    int64_t dim = s->h[0], hid = s->h[1], L = s->h[2], nh = s->h[3], nkv = s->h[4];
    int64_t V = s->h[5] < 0 ? -s->h[5] : s->h[5], seq = s->h[6], hs = dim / nh, kvd = nkv * hs;
    int64_t n = V * dim + L * (2 * dim + 2 * dim * dim + 2 * dim * kvd + 3 * dim * hid) + dim;
    if (s->version == 0) n += seq * hs;
    if (!s->shared) n += V * dim;
    size_t hdr = s->version ? 256 : 28, size = hdr + (size_t)n * 4;
    uint8_t *b = calloc(1, size);
    if (s->version) {
        uint32_t magic = BB_LLAMA2C_MAGIC;
        int32_t ver = 1;
        memcpy(b, &magic, 4);
        memcpy(b + 4, &ver, 4);
        memcpy(b + 8, s->h, 28);
        b[36] = (uint8_t)s->shared;
    } else {
        memcpy(b, s->h, 28);
    }
    for (int64_t i = 0; i < n; i++) {
        float v = (float)i * 0.001f;
        memcpy(b + hdr + i * 4, &v, 4);
    }
    *out = b;
    return size;
}

static float first_value(const bb_tensor *t) {
    float row[64] = {NAN};
    if (bb_tensor_cols(t) > 64 || bb_tensor_read_f32(t, 0, 1, row)) return NAN;
    return row[0];
}

/* The same weights in both layouts land at different offsets: check each
 * tensor's first value against where that layout puts it. */
static void test_v1_and_legacy(void) {
    for (int shared = 0; shared < 2; shared++) {
        tiny_spec s0 = {{16, 24, 2, 4, 2, shared ? 10 : -10, 8}, 0, shared};
        tiny_spec s1 = {{16, 24, 2, 4, 2, 10, 8}, 1, shared};
        uint8_t *b0, *b1;
        size_t n0 = make_ckpt(&s0, &b0), n1 = make_ckpt(&s1, &b1);
        bb_model *m0 = NULL, *m1 = NULL;
        EXPECT_OK(bb_llama2c_parse(b0, n0, "legacy.bin", &m0));
        EXPECT_OK(bb_llama2c_parse(b1, n1, "v1.bin", &m1));
        if (m0 && m1) {
            EXPECT_OK(bb_model_validate(m0));
            EXPECT_OK(bb_model_validate(m1));
            EXPECT(m0->cfg.tied_embeddings == shared && m1->cfg.tied_embeddings == shared, "shared flag %d", shared);
            const int64_t dim = 16, hid = 24, L = 2, kvd = 8, V = 10;
            /* legacy: emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq, [wcls] */
            int64_t o = V * dim;
            EXPECT_NEAR(first_value(&m0->layers[1].attn_norm), (o + dim) * 0.001, 1e-6);
            o += L * dim;
            EXPECT_NEAR(first_value(&m0->layers[1].wq), (o + dim * dim) * 0.001, 1e-4);
            o += L * dim * dim;
            EXPECT_NEAR(first_value(&m0->layers[0].wk), o * 0.001, 1e-4);
            o += 2 * L * kvd * dim + L * dim * dim + L * dim;
            EXPECT_NEAR(first_value(&m0->layers[0].w_gate), o * 0.001, 1e-4);
            o += L * hid * dim;
            EXPECT_NEAR(first_value(&m0->layers[0].w_down), o * 0.001, 1e-4);
            o += L * hid * dim;
            EXPECT_NEAR(first_value(&m0->layers[1].w_up), (o + hid * dim) * 0.001, 1e-4);
            o += L * hid * dim;
            EXPECT_NEAR(first_value(&m0->out_norm), o * 0.001, 1e-4);
            o += dim + 8 * 4; /* freq_cis: seq_len 8 x head_size/2 2, twice */
            if (!shared) EXPECT_NEAR(first_value(&m0->output), o * 0.001, 1e-4);
            /* version 1: rms_att, rms_ffn, rms_final, emb, wq, wk, wv, wo, w1, w2, w3, [wcls] */
            EXPECT_NEAR(first_value(&m1->layers[1].ffn_norm), (L * dim + dim) * 0.001, 1e-6);
            EXPECT_NEAR(first_value(&m1->out_norm), 2 * L * dim * 0.001, 1e-6);
            o = 2 * L * dim + dim;
            EXPECT_NEAR(first_value(&m1->tok_embd), o * 0.001, 1e-5);
            o += V * dim;
            EXPECT_NEAR(first_value(&m1->layers[0].wq), o * 0.001, 1e-4);
            o += L * dim * dim + 2 * L * kvd * dim + L * dim * dim;
            EXPECT_NEAR(first_value(&m1->layers[0].w_gate), o * 0.001, 1e-4);
            o += 3 * L * hid * dim;
            if (!shared) EXPECT_NEAR(first_value(&m1->output), o * 0.001, 1e-3);
            EXPECT(m1->output.file_offset == (shared ? m1->tok_embd.file_offset : 256 + o * 4), "v1 classifier offset");
        }
        bb_model_destroy(&m0);
        bb_model_destroy(&m1);
        free(b0);
        free(b1);
    }
}

/* The tokenizer beside a checkpoint: tok<vocab>.bin before tokenizer.bin, "" if neither. */
static void test_find_tokenizer(void) {
    tiny_spec s = {{16, 24, 2, 4, 2, 10, 8}, 0, 1};
    uint8_t *b;
    size_t n = make_ckpt(&s, &b);
    char dir[1200], path[1300], tok[1300], tokv[1300];
    snprintf(dir, sizeof dir, "%s/l2c_find", test_tmpdir());
    EXPECT_OK(bb_mkdir_p(dir));
    snprintf(path, sizeof path, "%s/model.bin", dir);
    snprintf(tok, sizeof tok, "%s/tokenizer.bin", dir);
    snprintf(tokv, sizeof tokv, "%s/tok10.bin", dir);
    remove(tok);
    remove(tokv);
    EXPECT(test_write_file(path, b, n) == 0, "write %s", path);
    free(b);
    bb_model *m = NULL;
    EXPECT_OK(bb_llama2c_open(path, &m));
    EXPECT(m && m->tokenizer_path[0] == '\0', "no tokenizer expected, got '%s'", m ? m->tokenizer_path : "");
    bb_model_destroy(&m);
    EXPECT(test_write_file(tok, "x", 1) == 0, "write");
    EXPECT_OK(bb_llama2c_open(path, &m));
    EXPECT(m && !strcmp(m->tokenizer_path, tok), "found '%s'", m ? m->tokenizer_path : "");
    bb_model_destroy(&m);
    EXPECT(test_write_file(tokv, "x", 1) == 0, "write");
    EXPECT_OK(bb_llama2c_open(path, &m));
    EXPECT(m && !strcmp(m->tokenizer_path, tokv), "found '%s'", m ? m->tokenizer_path : "");
    bb_model_destroy(&m);
}

/* ---- errors ------------------------------------------------------------------------------- */

static bb_status parse_header(const int32_t h[7], size_t extra_floats) {
    size_t size = 28 + extra_floats * 4;
    uint8_t *b = calloc(1, size);
    memcpy(b, h, 28);
    bb_model *m = NULL;
    bb_status st = bb_llama2c_parse(b, size, "bad.bin", &m);
    bb_model_destroy(&m);
    free(b);
    return st;
}

static void test_errors(void) {
    char *data = NULL;
    size_t n = 0;
    EXPECT_OK(bb_file_read_all(model_path, 1 << 21, &data, &n));
    if (!data) return;
    char trunc[1300];
    snprintf(trunc, sizeof trunc, "%s/stories260K.bin", test_tmpdir());
    EXPECT(test_write_file(trunc, data, 1000) == 0, "write %s", trunc);
    bb_model *m = NULL;
    EXPECT_ERR(bb_model_open(trunc, &m), BB_ERR_FORMAT, "file is 1,000 bytes but dim 64, hidden_dim 172, 5 layers");
    EXPECT_ERR(bb_model_open(trunc, &m), BB_ERR_FORMAT, "need 1,056,540 bytes (truncated?)");
    EXPECT(m == NULL, "no model on error");
    EXPECT_OK(bb_llama2c_parse(data, n, "x.bin", &m));
    bb_model_destroy(&m);
    char *longer = calloc(1, n + 8);
    memcpy(longer, data, n);
    EXPECT_ERR(bb_llama2c_parse(longer, n + 8, "long.bin", &m), BB_ERR_FORMAT, "extra bytes at the end");
    free(longer);
    EXPECT_ERR(bb_llama2c_parse(data, 20, "short.bin", &m), BB_ERR_FORMAT, "too short");
    free(data);

    int32_t h[7] = {64, 172, 5, 8, 4, 512, 512};
    int32_t z[7];
    memcpy(z, h, sizeof z);
    z[0] = 0;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "header field dim is 0 (must be positive)");
    memcpy(z, h, sizeof z);
    z[2] = -3;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "n_layers is -3");
    memcpy(z, h, sizeof z);
    z[3] = 6;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "dim 64 is not divisible by n_heads 6");
    memcpy(z, h, sizeof z);
    z[4] = 3;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "not a multiple of n_kv_heads 3");
    memcpy(z, h, sizeof z);
    z[4] = 16;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "n_kv_heads 16 is larger than n_heads 8");
    memcpy(z, h, sizeof z);
    z[3] = 64;
    z[4] = 64;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "head size 1");
    memcpy(z, h, sizeof z);
    z[5] = 0;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "vocab_size is 0");
    memcpy(z, h, sizeof z);
    z[6] = -1;
    EXPECT_ERR(parse_header(z, 100), BB_ERR_FORMAT, "seq_len is -1");
    /* sizes whose product overflows 64 bits */
    int32_t big[7] = {2147483644, 2147483646, 100000, 2, 2, 2147483647, 2147483647};
    EXPECT_ERR(parse_header(big, 4), BB_ERR_FORMAT, "need more than 2^64 bytes");
    /* version 2 (int8) and unknown versions */
    uint8_t v2[256] = {0};
    uint32_t magic = BB_LLAMA2C_MAGIC;
    int32_t ver = 2;
    memcpy(v2, &magic, 4);
    memcpy(v2 + 4, &ver, 4);
    EXPECT_ERR(bb_llama2c_parse(v2, sizeof v2, "q8.bin", &m), BB_ERR_UNSUPPORTED, "int8-quantized");
    ver = 7;
    memcpy(v2 + 4, &ver, 4);
    EXPECT_ERR(bb_llama2c_parse(v2, sizeof v2, "v7.bin", &m), BB_ERR_FORMAT, "version 7 is not supported");
    ver = 1;
    memcpy(v2 + 4, &ver, 4);
    memcpy(v2 + 8, h, 28);
    v2[36] = 5;
    EXPECT_ERR(bb_llama2c_parse(v2, sizeof v2, "v1.bin", &m), BB_ERR_FORMAT, "shared_classifier byte is 5");
    EXPECT_ERR(bb_llama2c_parse(v2, 100, "v1short.bin", &m), BB_ERR_FORMAT, "256-byte version-1 header");
    EXPECT_ERR(bb_model_open("/nonexistent/model.bin", &m), BB_ERR_IO, "does not exist");
}

/* ---- dump for check_stories260k.py ------------------------------------------------------ */

static bb_status dump_tensor(const bb_tensor *t, void *ud) {
    (void)ud;
    int64_t n = bb_tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    BB_CHECK(v, BB_ERR_OOM, "dump");
    bb_status st = bb_tensor_read_f32(t, 0, bb_tensor_rows(t), v);
    if (st) {
        free(v);
        return st;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    printf("tensor %s offset %lld shape", t->name, (long long)t->file_offset);
    for (int i = 0; i < t->ndim; i++) printf(" %lld", (long long)t->shape[i]);
    printf(" sum %.17g values", sum);
    for (int64_t i = 0; i < n && i < 8; i++) printf(" %.9g", v[i]);
    printf(" last %.9g\n", v[n - 1]);
    free(v);
    return BB_OK;
}

static int dump(const char *path) {
    bb_model *m = NULL;
    if (bb_model_open(path, &m)) return 1;
    const bb_model_config *c = &m->cfg;
    printf("config dim %d hidden_dim %d n_layers %d n_heads %d n_kv_heads %d vocab_size %d seq_len %d head_dim %d "
           "tied %d\n",
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->max_seq_len, c->head_dim,
           c->tied_embeddings);
    printf("tokenizer %s\n", m->tokenizer_path);
    int rc = bb_model_for_each_tensor(m, dump_tensor, NULL) != BB_OK;
    bb_model_destroy(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump(argv[2]);
    snprintf(model_path, sizeof model_path, "%s/data/stories260K/stories260K.bin", test_shared());
    TEST_RUN(test_stories260k);
    TEST_RUN(test_v1_and_legacy);
    TEST_RUN(test_find_tokenizer);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
