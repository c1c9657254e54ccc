/* test_hf.c — Hugging Face reader against the numpy fixtures of tests/py/make_hf_fixtures.py.
 *
 * The fixtures live in $BB_TEST_TMP/hf_fixtures (the CTest fixture hf.fixtures
 * writes them); reference.json there holds the expected config and tensor sums
 * of each good model and the expected status and message of each broken one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/json.h"
#include "io/model.h"
#include "test.h"

static char fixtures[1024];
static bb_json_doc *ref_doc;

typedef struct {
    const bb_tensor *t[4096];
    int n;
} tensor_list;

static bb_status collect(const bb_tensor *t, void *ud) {
    tensor_list *l = ud;
    if (l->n < 4096) l->t[l->n++] = t;
    return BB_OK;
}

static const bb_tensor *find_tensor(const tensor_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->t[i]->name, name) == 0) return l->t[i];
    return NULL;
}

static double ref_num(const bb_json *obj, const char *key) {
    const bb_json *v = bb_json_get(obj, key);
    EXPECT(bb_json_type(v) == BB_JSON_NUMBER, "reference key %s is %s", key, bb_json_type_name(bb_json_type(v)));
    return bb_json_num(v);
}

static void check_config(const char *name, const bb_model *m, const bb_json *rc) {
    const bb_model_config *c = &m->cfg;
    EXPECT(strcmp(c->arch, bb_json_str(bb_json_get(rc, "arch"), NULL)) == 0, "%s: arch %s", name, c->arch);
#define INT_FIELD(field)                                                                                               \
    EXPECT(c->field == (int)ref_num(rc, #field), "%s: " #field " %d, reference %g", name, c->field, ref_num(rc, #field))
    INT_FIELD(dim);
    INT_FIELD(hidden_dim);
    INT_FIELD(n_layers);
    INT_FIELD(n_heads);
    INT_FIELD(n_kv_heads);
    INT_FIELD(head_dim);
    INT_FIELD(vocab_size);
    INT_FIELD(max_seq_len);
    INT_FIELD(rope_orig_max_pos);
    INT_FIELD(tied_embeddings);
    INT_FIELD(attn_bias);
#undef INT_FIELD
    EXPECT(c->bos_id == (int)ref_num(rc, "bos_id"), "%s: bos %d", name, c->bos_id);
    EXPECT(c->eos_id == (int)ref_num(rc, "eos_id"), "%s: eos %d", name, c->eos_id);
    EXPECT_NEAR(c->norm_eps, ref_num(rc, "norm_eps"), 1e-12);
    EXPECT_NEAR(c->rope_theta, ref_num(rc, "rope_theta"), 1e-3);
    EXPECT_NEAR(c->rope_factor, ref_num(rc, "rope_factor"), 1e-6);
    EXPECT_NEAR(c->rope_low_freq_factor, ref_num(rc, "rope_low_freq_factor"), 1e-6);
    EXPECT_NEAR(c->rope_high_freq_factor, ref_num(rc, "rope_high_freq_factor"), 1e-6);
    const char *rs = bb_json_str(bb_json_get(rc, "rope_scaling"), NULL);
    bb_rope_scaling want = strcmp(rs, "linear") == 0   ? BB_ROPE_SCALING_LINEAR
                           : strcmp(rs, "llama3") == 0 ? BB_ROPE_SCALING_LLAMA3
                                                       : BB_ROPE_SCALING_NONE;
    EXPECT(c->rope_scaling == want, "%s: rope scaling %d, reference %s", name, (int)c->rope_scaling, rs);
    EXPECT(c->rope_style == BB_ROPE_HALF, "%s: rope style %d", name, (int)c->rope_style);
    EXPECT(m->source == BB_SRC_HF, "%s: source %s", name, bb_model_source_name(m->source));
    EXPECT(m->n_files == (int)ref_num(rc, "n_files"), "%s: %d files", name, m->n_files);
    int has_tok = (int)ref_num(rc, "has_tokenizer");
    EXPECT((m->tokenizer_path[0] != 0) == has_tok, "%s: tokenizer path \"%s\"", name, m->tokenizer_path);
    if (has_tok) EXPECT(strstr(m->tokenizer_path, "tokenizer.json") != NULL, "%s: %s", name, m->tokenizer_path);
}

static void check_tensor(const char *model, const bb_tensor *t, const bb_json *rt, const char *dtype) {
    const bb_json *shape = bb_json_get(rt, "shape");
    EXPECT(t->ndim == (int)bb_json_len(shape), "%s: %s has %d dims", model, t->name, t->ndim);
    for (int i = 0; i < t->ndim && i < (int)bb_json_len(shape); i++)
        EXPECT(t->shape[i] == (int64_t)bb_json_num(bb_json_at(shape, (size_t)i)), "%s: %s dim %d is %lld", model,
               t->name, i, (long long)t->shape[i]);
    EXPECT(strcmp(bb_dtype_name(t->dtype), dtype) == 0, "%s: %s has dtype %s, reference %s", model, t->name,
           bb_dtype_name(t->dtype), dtype);
    EXPECT(t->file_offset >= 8, "%s: %s file offset %lld", model, t->name, (long long)t->file_offset);
    int64_t n = bb_tensor_numel(t);
    float *buf = malloc((size_t)n * sizeof *buf);
    EXPECT(buf != NULL, "out of memory");
    if (!buf) return;
    EXPECT_OK(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), buf));
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += buf[i];
    double want = ref_num(rt, "sum");
    EXPECT(fabs(sum - want) <= 1e-9 + 1e-12 * fabs(want) * (double)n, "%s: %s sum %.17g, reference %.17g", model,
           t->name, sum, want);
    const bb_json *first = bb_json_get(rt, "first");
    for (size_t i = 0; i < bb_json_len(first) && (int64_t)i < n; i++)
        EXPECT(buf[i] == (float)bb_json_num(bb_json_at(first, i)), "%s: %s[%zu] = %.9g, reference %.9g", model, t->name,
               i, (double)buf[i], bb_json_num(bb_json_at(first, i)));
    EXPECT(buf[n - 1] == (float)ref_num(rt, "last"), "%s: %s last value %.9g", model, t->name, (double)buf[n - 1]);
    free(buf);
}

static void check_good_model(const char *name, const bb_json *ref) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/good/%s", fixtures, name);
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(dir, &m));
    if (!m) return;
    check_config(name, m, bb_json_get(ref, "config"));
    static tensor_list list;
    list.n = 0;
    bb_model_for_each_tensor(m, collect, &list);
    if (m->cfg.tied_embeddings) {
        EXPECT(m->output.data == m->tok_embd.data, "%s: tied output does not share the embedding", name);
        collect(&m->output, &list);
    }
    const bb_json *rts = bb_json_get(ref, "tensors");
    const char *dtype = bb_json_str(bb_json_get(ref, "dtype"), NULL);
    EXPECT(list.n == (int)bb_json_len(rts), "%s: model has %d tensors, reference %zu", name, list.n, bb_json_len(rts));
    for (size_t i = 0; i < bb_json_len(rts); i++) {
        const char *tn = bb_json_key_at(rts, i, NULL);
        const bb_tensor *t = find_tensor(&list, tn);
        EXPECT(t != NULL, "%s: tensor %s not found", name, tn);
        if (t) check_tensor(name, t, bb_json_at(rts, i), dtype);
    }
    bb_model_destroy(&m);
    EXPECT(m == NULL, "destroy did not null the pointer");
}

static bb_status status_by_name(const char *s) {
    for (int i = 0; i < BB_STATUS_COUNT; i++)
        if (strcmp(bb_status_name((bb_status)i), s) == 0) return (bb_status)i;
    return BB_STATUS_COUNT;
}

static void test_good_models(void) {
    const bb_json *models = bb_json_get(bb_json_root(ref_doc), "models");
    EXPECT(bb_json_len(models) >= 7, "reference lists %zu good models", bb_json_len(models));
    for (size_t i = 0; i < bb_json_len(models); i++) {
        const char *name = bb_json_key_at(models, i, NULL);
        int before = test_failures_;
        check_good_model(name, bb_json_at(models, i));
        printf("  good   %-28s %s\n", name, test_failures_ == before ? "ok" : "FAIL");
    }
}

static void test_broken_models(void) {
    const bb_json *broken = bb_json_get(bb_json_root(ref_doc), "broken");
    EXPECT(bb_json_len(broken) >= 20, "reference lists %zu broken models", bb_json_len(broken));
    for (size_t i = 0; i < bb_json_len(broken); i++) {
        const char *name = bb_json_key_at(broken, i, NULL);
        const bb_json *b = bb_json_at(broken, i);
        bb_status code = status_by_name(bb_json_str(bb_json_get(b, "status"), NULL));
        const char *needle = bb_json_str(bb_json_get(b, "needle"), NULL);
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/broken/%s", fixtures, name);
        bb_model *m = (bb_model *)&m;
        int before = test_failures_;
        EXPECT_ERR(bb_model_open(dir, &m), code, needle);
        EXPECT(m == NULL, "%s: failed open left a model", name);
        printf("  broken %-28s %s: %s\n", name, test_failures_ == before ? "ok" : "FAIL", bb_last_error());
    }
}

/* A directory given straight to bb_hf_open also gets the reader's own checks
 * (bb_model_open adds validation on top). */
static void test_hf_open_direct(void) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/good/llama_tied", fixtures);
    bb_model *m = NULL;
    EXPECT_OK(bb_hf_open(dir, &m));
    if (m) {
        EXPECT(m->cfg.tied_embeddings == 1, "tied flag");
        EXPECT(strcmp(m->output.name, "output.weight") == 0, "tied output is named %s", m->output.name);
        EXPECT(strcmp(m->path, dir) == 0, "path %s", m->path);
    }
    bb_model_destroy(&m);
    bb_model_destroy(&m);
    snprintf(dir, sizeof dir, "%s/does-not-exist", fixtures);
    EXPECT_ERR(bb_hf_open(dir, &m), BB_ERR_IO, "config.json");
}

int main(void) {
    snprintf(fixtures, sizeof fixtures, "%s/hf_fixtures", test_tmpdir());
    char refpath[1200];
    snprintf(refpath, sizeof refpath, "%s/reference.json", fixtures);
    char *text = NULL;
    size_t n = 0;
    bb_status st = bb_file_read_all(refpath, (size_t)64 << 20, &text, &n);
    EXPECT(st == BB_OK, "no fixtures at %s: run tests/py/make_hf_fixtures.py %s (CTest test hf.fixtures)", fixtures,
           fixtures);
    if (st) return TEST_DONE();
    EXPECT_OK(bb_json_parse(text, n, refpath, &ref_doc));
    free(text);
    if (!ref_doc) return TEST_DONE();
    TEST_RUN(test_good_models);
    TEST_RUN(test_broken_models);
    TEST_RUN(test_hf_open_direct);
    bb_json_doc_destroy(&ref_doc);
    return TEST_DONE();
}
