/* test_export.c — GGUF export read back by birdbone's own reader: F32 logits equal the source model's, quantized
 * tensors decode to exactly the dequantized working weights, Hugging Face rotary rows are permuted so the
 * exported file computes the same function, the vocabulary round-trips. Files are left in
 * $BB_TEST_TMP/export/ for export.gguf_py (the gguf package's view of them). */
#include <sys/stat.h>

#include "core/parallel.h"
#include "io/gguf.h"
#include "io/model.h"
#include "io/qformat.h"
#include "io/tokenizer.h"
#include "model/forward.h"
#include "pipeline/export.h"
#include "pipeline/quantize.h"
#include "test.h"

static char dir_[1024];

static const char *out_path(const char *name) {
    static char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir_, name);
    return p;
}

/* Logits of a fixed token sequence (T tokens) from m; caller frees. */
static float *logits_of(const bb_model *m, int T) {
    bb_forward *f = NULL;
    float *lg = malloc(sizeof(float) * (size_t)T * (size_t)m->cfg.vocab_size);
    int *tok = malloc(sizeof(int) * (size_t)T);
    for (int t = 0; t < T; t++) tok[t] = (t * 37 + 1) % m->cfg.vocab_size;
    EXPECT_OK(bb_forward_create(m, 0, &f));
    if (f) EXPECT_OK(bb_forward_prefill(f, tok, 1, T, lg));
    bb_forward_destroy(&f);
    free(tok);
    return lg;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static void f32_export(const char *src, const char *name, double tol) {
    bb_model *m = NULL, *g = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    if (!m) return;
    bb_export_opts o;
    bb_export_opts_default(&o);
    EXPECT_OK(bb_export_gguf(m, m, NULL, &o, out_path(name)));
    EXPECT_OK(bb_model_open(out_path(name), &g));
    if (g) {
        EXPECT(g->cfg.rope_style == BB_ROPE_INTERLEAVED, "%s: rope style %d", name, g->cfg.rope_style);
        EXPECT(g->cfg.tied_embeddings == m->cfg.tied_embeddings, "%s: tied %d vs %d", name, g->cfg.tied_embeddings,
               m->cfg.tied_embeddings);
        int T = 24;
        float *a = logits_of(m, T), *b = logits_of(g, T);
        double d = max_abs_diff(a, b, (size_t)T * (size_t)m->cfg.vocab_size);
        EXPECT(d <= tol, "%s: exported logits differ from the source's by %g (tol %g)", name, d, tol);
        printf("  %s: max |logit difference| %g\n", name, d);
        free(a);
        free(b);
    }
    bb_model_destroy(&g);
    bb_model_destroy(&m);
}

static void test_f32_stories(void) {
    char src[1200];
    snprintf(src, sizeof src, "%s/data/stories260K/stories260K.bin", test_shared());
    /* llama2.c is already interleaved: the same numbers in the same order give the same logits bit for bit */
    f32_export(src, "stories260k_f32.gguf", 0);
    bb_model *m = NULL, *g = NULL;
    bb_tokenizer *a = NULL, *b = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    EXPECT_OK(bb_model_open(out_path("stories260k_f32.gguf"), &g));
    if (m && g) {
        EXPECT_OK(bb_tokenizer_open_for_model(m, NULL, &a));
        EXPECT_OK(bb_tokenizer_open_for_model(g, NULL, &b));
    }
    if (a && b) {
        const char *text =
            "Once upon a time, there was a little girl named Lily. She said: \"Hi!\" \xc3\xa9t\xc3\xa9 42";
        int *x = NULL, *y = NULL, nx = 0, ny = 0;
        EXPECT_OK(bb_tokenizer_encode(a, text, 1, 0, &x, &nx));
        EXPECT_OK(bb_tokenizer_encode(b, text, 1, 0, &y, &ny));
        EXPECT(nx == ny && x && y && !memcmp(x, y, sizeof(int) * (size_t)nx), "token ids differ (%d vs %d tokens)", nx,
               ny);
        EXPECT(bb_tokenizer_bos_id(b) == 1 && bb_tokenizer_eos_id(b) == 2, "BOS %d EOS %d", bb_tokenizer_bos_id(b),
               bb_tokenizer_eos_id(b));
        free(x);
        free(y);
    }
    bb_tokenizer_destroy(&a);
    bb_tokenizer_destroy(&b);
    bb_model_destroy(&g);
    bb_model_destroy(&m);
}

static void test_f32_hf_rope(void) {
    char src[1200];
    struct stat sb;
    snprintf(src, sizeof src, "%s/hf_fixtures/good/llama_f32", test_tmpdir());
    if (stat(src, &sb) != 0) {
        printf("  no HF fixture at %s (run hf.fixtures): the HF rope check is skipped\n", src);
        return;
    }
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    EXPECT(m && m->cfg.rope_style == BB_ROPE_HALF, "the HF fixture should rotate halves");
    bb_model_destroy(&m);
    /* rotate_half pairs become interleaved pairs: the same function */
    f32_export(src, "hf_llama_f32.gguf", 1e-5);
    snprintf(src, sizeof src, "%s/hf_fixtures/good/llama_tied", test_tmpdir());
    f32_export(src, "hf_llama_tied.gguf", 1e-5);
}

static void test_rope_row(void) {
    /* head_dim 8: rows 0..3 hold the first halves of the pairs, 4..7 the second */
    const int64_t want[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int r = 0; r < 8; r++)
        EXPECT(bb_export_rope_row(r, 8) == want[r], "row %d -> %lld", r, (long long)bb_export_rope_row(r, 8));
    EXPECT(bb_export_rope_row(8 + 5, 8) == 8 + 3, "second head");
}

/* Quantize src with cfg overrides, export, and check every linear tensor decodes to the working weights. */
static void quantized_export(const char *src, const char *type, const char *name, int expect_down_f16) {
    bb_model *m = NULL;
    bb_weights *w = NULL;
    bb_quantized *q = NULL;
    bb_gguf *g = NULL;
    bb_config cfg;
    char set[64];
    EXPECT_OK(bb_config_defaults(&cfg));
    EXPECT_OK(bb_config_set(&cfg, "quant.method=rtn"));
    snprintf(set, sizeof set, "quant.type=%s", type);
    EXPECT_OK(bb_config_set(&cfg, set));
    EXPECT_OK(bb_model_open(src, &m));
    if (m) EXPECT_OK(bb_weights_create(m, 0, 0, &w));
    if (w) EXPECT_OK(bb_quantize_model(&cfg, w, NULL, &q));
    if (!q) goto done;
    bb_export_opts o;
    bb_export_opts_default(&o);
    EXPECT_OK(bb_export_gguf(m, bb_weights_model(w), q, &o, out_path(name)));
    EXPECT_OK(bb_gguf_open(out_path(name), &g));
    if (!g) goto done;
    int want;
    EXPECT_OK(bb_qformat_parse_name(type, &want));
    uint32_t ft = 99;
    EXPECT_OK(bb_gguf_get_u32(g, "general.file_type", &ft));
    EXPECT((int)ft == bb_quantize_file_type(want), "%s: file_type %u", name, ft);
    int64_t mismatched = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            const bb_tensor *t = bb_weights_tensor(w, l, (bb_linear_kind)k);
            int64_t id = bb_gguf_find_tensor(g, t->name);
            EXPECT(id >= 0, "%s: %s missing", name, t->name);
            if (id < 0) continue;
            const bb_gguf_tensor *gt = bb_gguf_tensor_at(g, id);
            int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
            int down_f16 = k == BB_LIN_DOWN && expect_down_f16;
            EXPECT(gt->type == (down_f16 ? BB_GGML_F16 : want), "%s: %s stored as %s", name, t->name,
                   bb_ggml_type_name(gt->type));
            size_t rb = gt->nbytes / (size_t)rows;
            float *y = malloc(sizeof(float) * (size_t)cols);
            const float *x = bb_weights_linear(w, l, (bb_linear_kind)k);
            for (int64_t r = 0; r < rows; r++) {
                EXPECT_OK(bb_qformat_decode_row(gt->type, (const uint8_t *)gt->data + (size_t)r * rb, cols, y));
                mismatched += memcmp(y, x + r * cols, sizeof(float) * (size_t)cols) != 0;
            }
            free(y);
        }
    EXPECT(mismatched == 0, "%s: %lld rows decode to other values than the working weights", name,
           (long long)mismatched);
    int64_t out_id = bb_gguf_find_tensor(g, "output.weight");
    if (m->cfg.tied_embeddings) {
        EXPECT(out_id < 0, "%s: a tied model must not carry output.weight", name);
    } else {
        EXPECT(out_id >= 0 && bb_gguf_tensor_at(g, out_id)->type == BB_GGML_Q8_0, "%s: output.weight not Q8_0", name);
        /* the classifier is encoded over the threads at export: every row's blocks are the one-row encoder's */
        if (out_id >= 0) {
            const bb_gguf_tensor *gt = bb_gguf_tensor_at(g, out_id);
            int64_t rows = bb_tensor_rows(&m->output), cols = bb_tensor_cols(&m->output), differ = 0;
            size_t rb = gt->nbytes / (size_t)rows;
            float *x = malloc(sizeof(float) * (size_t)(rows * cols));
            uint8_t *blk = malloc(rb);
            EXPECT_OK(bb_tensor_read_f32(&m->output, 0, rows, x));
            for (int64_t r = 0; r < rows; r++) {
                EXPECT_OK(bb_qformat_encode_row(BB_GGML_Q8_0, x + r * cols, cols, NULL, blk));
                differ += memcmp(blk, (const uint8_t *)gt->data + (size_t)r * rb, rb) != 0;
            }
            EXPECT(differ == 0, "%s: %lld rows of output.weight differ from the one-row encoder's", name,
                   (long long)differ);
            free(x);
            free(blk);
        }
    }
    EXPECT(bb_gguf_tensor_at(g, bb_gguf_find_tensor(g, "token_embd.weight"))->type == BB_GGML_F32,
           "%s: token_embd not F32", name);
    /* Opened as a model, the file's quantized tensors are decoded at open: the layers birdbone's export
     * does not permute hold exactly the working weights, and a tied model (output = token_embd, F32)
     * computes exactly the working copy's logits. */
    bb_model *r = NULL;
    EXPECT_OK(bb_model_open(out_path(name), &r));
    if (r) {
        int64_t differ = 0;
        for (int l = 0; l < m->cfg.n_layers; l++) {
            const bb_tensor *rt[] = {&r->layers[l].wv, &r->layers[l].wo, &r->layers[l].w_gate, &r->layers[l].w_up,
                                     &r->layers[l].w_down};
            const bb_linear_kind kinds[] = {BB_LIN_V, BB_LIN_O, BB_LIN_GATE, BB_LIN_UP, BB_LIN_DOWN};
            for (int i = 0; i < 5; i++) {
                const bb_tensor *t = bb_weights_tensor(w, l, kinds[i]);
                size_t n = (size_t)(bb_tensor_rows(t) * bb_tensor_cols(t));
                float *y = malloc(sizeof(float) * n);
                EXPECT(bb_tensor_numel(rt[i]) == (int64_t)n, "%s: %s opened with %lld elements", name, t->name,
                       (long long)bb_tensor_numel(rt[i]));
                EXPECT_OK(bb_tensor_read_f32(rt[i], 0, bb_tensor_rows(t), y));
                differ += memcmp(y, bb_weights_linear(w, l, kinds[i]), sizeof(float) * n) != 0;
                free(y);
            }
        }
        EXPECT(differ == 0, "%s: %lld tensors opened from the file differ from the working weights", name,
               (long long)differ);
        if (m->cfg.tied_embeddings) {
            const int T = 16;
            float *a = logits_of(bb_weights_model(w), T), *b = logits_of(r, T);
            double d = max_abs_diff(a, b, (size_t)T * (size_t)m->cfg.vocab_size);
            EXPECT(d == 0, "%s: logits of the opened file differ from the quantized working copy's by %g", name, d);
            free(a);
            free(b);
        }
    }
    bb_model_destroy(&r);
done:
    bb_gguf_destroy(&g);
    bb_quantized_destroy(&q);
    bb_weights_destroy(&w);
    bb_model_destroy(&m);
}

/* A non-finite value in the classifier at export is one clear error naming the tensor, row and column (the
 * rows are encoded over the threads after one check of the whole tensor). */
static void test_nan_classifier(void) {
    bb_model *m = NULL;
    bb_weights *w = NULL;
    bb_quantized *q = NULL;
    bb_config cfg;
    EXPECT_OK(bb_config_defaults(&cfg));
    EXPECT_OK(bb_config_set(&cfg, "quant.method=rtn"));
    EXPECT_OK(bb_config_set(&cfg, "quant.type=q8_0"));
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=1", &m));
    if (m) EXPECT_OK(bb_weights_create(m, 0, 0, &w));
    if (w) EXPECT_OK(bb_quantize_model(&cfg, w, NULL, &q));
    float *x = NULL;
    if (q) {
        bb_tensor *o = &m->output;
        int64_t rows = bb_tensor_rows(o), cols = bb_tensor_cols(o);
        x = malloc(sizeof(float) * (size_t)(rows * cols));
        EXPECT_OK(bb_tensor_read_f32(o, 0, rows, x));
        x[3 * cols + 5] = NAN;
        o->gen = NULL; /* the classifier as an in-memory f32 tensor holding the NaN */
        o->dtype = BB_F32;
        o->data = x;
        o->nbytes = sizeof(float) * (size_t)(rows * cols);
        bb_export_opts eo;
        bb_export_opts_default(&eo);
        EXPECT_ERR(bb_export_gguf(m, bb_weights_model(w), q, &eo, out_path("nan_output.gguf")), BB_ERR_NUMERIC,
                   "output.weight: nan at row 3, column 5");
        struct stat sb;
        EXPECT(stat(out_path("nan_output.gguf"), &sb) != 0, "a failed export must leave no file");
    }
    bb_quantized_destroy(&q);
    bb_weights_destroy(&w);
    bb_model_destroy(&m);
    free(x);
}

static void test_quantized(void) {
    char src[1200];
    snprintf(src, sizeof src, "%s/data/stories260K/stories260K.bin", test_shared());
    /* ffn_down rows are 172 wide: no 32-element block fits, F16 */
    quantized_export(src, "q8_0", "stories260k_q8_0.gguf", 1);
    quantized_export(src, "q4_0", "stories260k_q4_0.gguf", 1);
    quantized_export(src, "q4_1", "stories260k_q4_1.gguf", 1);
    quantized_export("synthetic:tiny,layers=2,dim=256,hidden=512,heads=4,kv_heads=2", "q4_k", "synth_q4_k.gguf", 0);
    quantized_export("synthetic:tiny,layers=2", "q5_0", "synth_q5_0.gguf", 0);
    bb_parallel_set_default(3); /* the classifier's rows over 3 threads: the same bytes */
    quantized_export("synthetic:tiny,layers=2", "q5_0", "synth_q5_0_3threads.gguf", 0);
    bb_parallel_set_default(0);
}

/* Damaged quantized data is one clear error at open: a block scale set to Inf in a copy of the Q4_0
 * file, and the same file cut short. */
static void test_damaged_quantized(void) {
    bb_gguf *g = NULL;
    EXPECT_OK(bb_gguf_open(out_path("stories260k_q4_0.gguf"), &g));
    if (!g) return;
    int64_t id = bb_gguf_find_tensor(g, "blk.1.attn_v.weight");
    EXPECT(id >= 0 && bb_gguf_tensor_at(g, id)->type == BB_GGML_Q4_0, "attn_v is Q4_0");
    size_t at = bb_gguf_data_offset(g) + bb_gguf_tensor_at(g, id)->offset;
    bb_gguf_destroy(&g);
    FILE *f = fopen(out_path("stories260k_q4_0.gguf"), "rb");
    EXPECT(f != NULL, "reopen");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size);
    EXPECT(fread(buf, 1, (size_t)size, f) == (size_t)size, "read the file");
    fclose(f);
    uint8_t *blk = buf + at + 5 * sizeof(bb_block_q4_0); /* rows of 64: row 2, columns 32..63 */
    blk[0] = 0x00;
    blk[1] = 0x7c; /* d = +Inf (fp16 0x7c00) */
    blk[2] = 0x00; /* columns 32 and 48: q = 0, so d (q - 8) = -Inf */
    f = fopen(out_path("damaged_scale.gguf"), "wb");
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    f = fopen(out_path("truncated.gguf"), "wb");
    fwrite(buf, 1, (size_t)size - 1000, f);
    fclose(f);
    free(buf);
    bb_model *m = NULL;
    EXPECT_ERR(bb_model_open(out_path("damaged_scale.gguf"), &m), BB_ERR_FORMAT,
               "tensor blk.1.attn_v.weight (q4_0) decodes to a non-finite value (-Inf) at row 2, column 32: a "
               "block's scale field is damaged");
    EXPECT(m == NULL, "no model from a damaged file");
    EXPECT_ERR(bb_model_open(out_path("truncated.gguf"), &m), BB_ERR_FORMAT, "truncated");
    EXPECT(m == NULL, "no model from a truncated file");
    remove(out_path("damaged_scale.gguf"));
    remove(out_path("truncated.gguf"));
}

/* A tokenizer.json vocabulary written to GGUF must tokenize like the tokenizer.json itself in birdbone's GGUF
 * tokenizer (the llama.cpp rules: "llama" for byte-fallback SentencePiece BPE, "gpt2" + merges + pre otherwise). */
static void hf_vocab(const char *file, const char *want_model, const char *want_pre) {
    char tok_path[1200], spec[128], gguf_name[128];
    struct stat sb;
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer_fixtures/%s", test_tmpdir(), file);
    if (stat(tok_path, &sb) != 0) {
        printf("  no tokenizer fixture %s (run tokenizer_hf.fixtures): skipped\n", tok_path);
        return;
    }
    bb_tokenizer *a = NULL, *b = NULL;
    bb_model *m = NULL;
    bb_gguf *g = NULL;
    EXPECT_OK(bb_tokenizer_load(tok_path, 0, &a));
    if (!a) return;
    snprintf(spec, sizeof spec, "synthetic:tiny,layers=1,vocab=%d", bb_tokenizer_vocab_size(a));
    snprintf(gguf_name, sizeof gguf_name, "vocab_%s.gguf", file);
    EXPECT_OK(bb_model_open(spec, &m));
    bb_export_opts o;
    bb_export_opts_default(&o);
    o.tokenizer = tok_path;
    if (m) EXPECT_OK(bb_export_gguf(m, m, NULL, &o, out_path(gguf_name)));
    EXPECT_OK(bb_gguf_open(out_path(gguf_name), &g));
    if (g) {
        bb_gguf_str model = {"", 0}, pre = {"", 0};
        EXPECT_OK(bb_gguf_get_str(g, "tokenizer.ggml.model", &model));
        EXPECT(model.len == strlen(want_model) && !memcmp(model.s, want_model, model.len), "%s: model %.*s", file,
               (int)model.len, model.s);
        if (want_pre) {
            EXPECT_OK(bb_gguf_get_str(g, "tokenizer.ggml.pre", &pre));
            EXPECT(pre.len == strlen(want_pre) && !memcmp(pre.s, want_pre, pre.len), "%s: pre %.*s", file, (int)pre.len,
                   pre.s);
        }
        EXPECT_OK(bb_tokenizer_load_gguf(g, bb_tokenizer_vocab_size(a), &b));
    }
    const char *texts[] = {"Hello world! It's 2024: 12345 apples.", " leading space and  two",
                           "caf\xc3\xa9 \xe2\x96\x81x\n\nnew lines"};
    for (int i = 0; b && i < 3; i++) {
        int *x = NULL, *y = NULL, nx = 0, ny = 0;
        EXPECT_OK(bb_tokenizer_encode(a, texts[i], 1, 0, &x, &nx));
        EXPECT_OK(bb_tokenizer_encode(b, texts[i], 1, 0, &y, &ny));
        EXPECT(nx == ny && x && y && !memcmp(x, y, sizeof(int) * (size_t)nx), "%s: \"%s\" gives %d vs %d tokens", file,
               texts[i], nx, ny);
        free(x);
        free(y);
    }
    bb_tokenizer_destroy(&a);
    bb_tokenizer_destroy(&b);
    bb_gguf_destroy(&g);
    bb_model_destroy(&m);
}

static void test_hf_vocab(void) {
    hf_vocab("spm.json", "llama", NULL);
    hf_vocab("bl_llama3.json", "gpt2", "llama-bpe");
    hf_vocab("bl_qwen2.json", "gpt2", "qwen2");
    hf_vocab("bl_gpt2.json", "gpt2", "gpt-2");
}

/* quant.type auto: every policy stays within budget.target_bits; lagrange's squared error is the smallest. */
static void test_budget_policies(void) {
    const char *policies[] = {"uniform", "seed", "lagrange"};
    double err[3] = {0};
    for (int p = 0; p < 3; p++) {
        bb_model *m = NULL;
        bb_weights *w = NULL;
        bb_quantized *q = NULL;
        bb_config cfg;
        char set[64];
        EXPECT_OK(bb_config_defaults(&cfg));
        EXPECT_OK(bb_config_set(&cfg, "quant.method=rtn"));
        EXPECT_OK(bb_config_set(&cfg, "budget.target_bits=5"));
        snprintf(set, sizeof set, "budget.policy=%s", policies[p]);
        EXPECT_OK(bb_config_set(&cfg, set));
        EXPECT_OK(bb_model_open("synthetic:tiny,layers=2,dim=256,hidden=512,heads=4,kv_heads=2", &m));
        if (m) EXPECT_OK(bb_weights_create(m, 0, 0, &w));
        if (w) EXPECT_OK(bb_quantize_model(&cfg, w, NULL, &q));
        if (q) {
            EXPECT(q->bits <= (int64_t)floor(5.0 * (double)q->weights), "%s: %lld bits for %lld weights", policies[p],
                   (long long)q->bits, (long long)q->weights);
            EXPECT(q->sum.total == q->bits, "%s: budget summary %lld, stored %lld", policies[p],
                   (long long)q->sum.total, (long long)q->bits);
            for (int l = 0; l < m->cfg.n_layers; l++)
                for (int k = 0; k < BB_LIN_COUNT; k++) {
                    const bb_tensor *t = bb_layer_linear(&m->layers[l], (bb_linear_kind)k);
                    int64_t n = bb_tensor_numel(t);
                    float *x = malloc(sizeof(float) * (size_t)n);
                    EXPECT_OK(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), x));
                    const float *y = bb_weights_linear(w, l, (bb_linear_kind)k);
                    for (int64_t i = 0; i < n; i++) err[p] += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                    free(x);
                }
            printf("  %s: %.3f bits per weight, squared error %.6g\n", policies[p], (double)q->bits / q->weights,
                   err[p]);
        }
        bb_quantized_destroy(&q);
        bb_weights_destroy(&w);
        bb_model_destroy(&m);
    }
    EXPECT(err[2] <= err[0] && err[2] <= err[1], "lagrange %g, uniform %g, seed %g", err[2], err[0], err[1]);
}

static void test_refusals(void) {
    char src[1200];
    struct stat sb;
    snprintf(src, sizeof src, "%s/hf_fixtures/good/qwen2_bias", test_tmpdir());
    if (stat(src, &sb) != 0) return;
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    bb_export_opts o;
    bb_export_opts_default(&o);
    if (m) EXPECT_ERR(bb_export_gguf(m, m, NULL, &o, out_path("never.gguf")), BB_ERR_UNSUPPORTED, "biases");
    bb_model_destroy(&m);
}

int main(void) {
    snprintf(dir_, sizeof dir_, "%s/export", test_tmpdir());
    mkdir(dir_, 0755);
    TEST_RUN(test_rope_row);
    TEST_RUN(test_f32_stories);
    TEST_RUN(test_f32_hf_rope);
    TEST_RUN(test_quantized);
    TEST_RUN(test_damaged_quantized);
    TEST_RUN(test_nan_classifier);
    TEST_RUN(test_budget_policies);
    TEST_RUN(test_hf_vocab);
    TEST_RUN(test_refusals);
    return TEST_DONE();
}
