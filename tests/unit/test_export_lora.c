/* test_export_lora.c — GGUF LoRA adapters: keys, tensor names, shapes and values read back by birdbone's GGUF
 * reader; the adapter's delta (alpha/rank) lora_b lora_a equals what the merged export adds to the base export,
 * also for a model that rotates halves (q/k rows permuted); refusals. Files stay in $BB_TEST_TMP/export_lora/
 * for export.lora_py (the gguf package's view) and the llama.cpp check of docs/export.md. */
#include <sys/stat.h>

#include "core/rng.h"
#include "io/gguf.h"
#include "io/model.h"
#include "pipeline/export.h"
#include "pipeline/weights.h"
#include "test.h"

static char dir_[1024];

static const char *out_path(const char *name) {
    static char p[4][1200];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir_, name);
    return p[k];
}

/* Random factors for every linear weight of m: rank 4, except attn_v (rank 2, so alpha 4 rescales its
 * lora_b); entries (n_layers * 7). Values N(0, 0.1^2): a change to the model llama.cpp can see. */
static bb_lora **make_factors(const bb_model *m, bb_export_lora_entry *e, uint64_t seed) {
    const int n = m->cfg.n_layers * BB_LIN_COUNT;
    bb_lora **f = calloc((size_t)n, sizeof *f);
    for (int i = 0; i < n; i++) {
        const int l = i / BB_LIN_COUNT;
        const bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
        const bb_tensor *t = bb_layer_linear(&m->layers[l], k);
        EXPECT_OK(bb_lora_create(bb_tensor_rows(t), bb_tensor_cols(t), k == BB_LIN_V ? 2 : 4, &f[i]));
        if (!f[i]) continue;
        bb_rng_fill_normal(bb_rng_make(seed, 2 * (uint64_t)i), 0, (size_t)(f[i]->rows * f[i]->rank), f[i]->a);
        bb_rng_fill_normal(bb_rng_make(seed, 2 * (uint64_t)i + 1), 0, (size_t)(f[i]->rank * f[i]->cols), f[i]->b);
        for (int64_t j = 0; j < f[i]->rows * f[i]->rank; j++) f[i]->a[j] *= 0.1f;
        for (int64_t j = 0; j < f[i]->rank * f[i]->cols; j++) f[i]->b[j] *= 0.1f;
        e[i] = (bb_export_lora_entry){l, k, f[i]};
    }
    return f;
}

/* Where row r of a rotate-half weight goes in llama.cpp's interleaved order, written out here apart from
 * export.c: head h's rows are (first halves, second halves); element i of the first half goes to 2i, of the
 * second half to 2i + 1. */
static int64_t interleaved_row(int64_t r, int hd) {
    int64_t h = r / hd, j = r % hd;
    return j < hd / 2 ? h * hd + 2 * j : h * hd + 2 * (j - hd / 2) + 1;
}

static const bb_gguf_tensor *tensor(const bb_gguf *g, const char *name) {
    int64_t id = bb_gguf_find_tensor(g, name);
    EXPECT(id >= 0, "%s missing", name);
    return id >= 0 ? bb_gguf_tensor_at(g, id) : NULL;
}

/* One model variant: write base (F32), adapter and merged (F32, base + A B) exports, then check the adapter's
 * layout against the factors and its delta against merged - base for every weight. */
static void adapter_variant(const char *src, int rope_half, const char *tag) {
    bb_model *m = NULL;
    bb_weights *w = NULL;
    EXPECT_OK(bb_model_open(src, &m));
    if (!m) return;
    if (rope_half) m->cfg.rope_style = BB_ROPE_HALF; /* the export then permutes q/k rows, as for HF models */
    const int n = m->cfg.n_layers * BB_LIN_COUNT;
    bb_export_lora_entry *e = calloc((size_t)n, sizeof *e);
    bb_lora **f = make_factors(m, e, 7);
    char base_n[64], lora_n[64], merged_n[64];
    snprintf(base_n, sizeof base_n, "%s_base.gguf", tag);
    snprintf(lora_n, sizeof lora_n, "%s_lora.gguf", tag);
    snprintf(merged_n, sizeof merged_n, "%s_merged.gguf", tag);
    bb_export_opts o;
    bb_export_opts_default(&o);
    EXPECT_OK(bb_export_gguf(m, m, NULL, &o, out_path(base_n)));
    EXPECT_OK(bb_export_lora_gguf(m, e, n, "test adapter", out_path(lora_n)));
    EXPECT_OK(bb_weights_create(m, 0, 0, &w));
    if (w) {
        for (int i = 0; i < n; i++) bb_lora_merge(f[i], bb_weights_linear(w, e[i].layer, e[i].kind));
        EXPECT_OK(bb_export_gguf(m, bb_weights_model(w), NULL, &o, out_path(merged_n)));
    }
    bb_gguf *ga = NULL, *gb = NULL, *gm = NULL;
    EXPECT_OK(bb_gguf_open(out_path(lora_n), &ga));
    EXPECT_OK(bb_gguf_open(out_path(base_n), &gb));
    EXPECT_OK(bb_gguf_open(out_path(merged_n), &gm));
    if (!ga || !gb || !gm) goto done;
    bb_gguf_str s;
    EXPECT_OK(bb_gguf_get_str(ga, "general.type", &s));
    EXPECT(s.len == 7 && !memcmp(s.s, "adapter", 7), "general.type");
    EXPECT_OK(bb_gguf_get_str(ga, "adapter.type", &s));
    EXPECT(s.len == 4 && !memcmp(s.s, "lora", 4), "adapter.type");
    EXPECT_OK(bb_gguf_get_str(ga, "general.architecture", &s));
    EXPECT(s.len == 5 && !memcmp(s.s, "llama", 5), "general.architecture");
    double alpha = 0;
    EXPECT_OK(bb_gguf_get_float(ga, "adapter.lora.alpha", &alpha));
    EXPECT(alpha == 4, "alpha = the largest rank, 4 (got %g)", alpha);
    EXPECT(bb_gguf_n_tensors(ga) == 2 * n, "%lld tensors, want %d", (long long)bb_gguf_n_tensors(ga), 2 * n);
    int64_t bad_layout = 0, bad_delta = 0;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const bb_lora *l = f[i];
        const bb_tensor *t = bb_layer_linear(&m->layers[e[i].layer], e[i].kind);
        char an[128], bn[128];
        snprintf(an, sizeof an, "%s.lora_a", t->name);
        snprintf(bn, sizeof bn, "%s.lora_b", t->name);
        const bb_gguf_tensor *ta = tensor(ga, an), *tb = tensor(ga, bn), *tw = tensor(gb, t->name),
                             *tm = tensor(gm, t->name);
        if (!ta || !tb || !tw || !tm) continue;
        /* shapes (row-major): lora_a (rank, cols), lora_b (rows, rank); in ggml's order llama.cpp checks
         * a.ne[0] = W.ne[0] (cols), b.ne[1] = W.ne[1] (rows), a.ne[1] = b.ne[0] (rank) */
        EXPECT(ta->type == BB_GGML_F32 && tb->type == BB_GGML_F32 && ta->ndim == 2 && tb->ndim == 2 &&
                   ta->shape[0] == l->rank && ta->shape[1] == l->cols && tb->shape[0] == l->rows &&
                   tb->shape[1] == l->rank && tw->shape[0] == l->rows && tw->shape[1] == l->cols,
               "%s: shapes a (%lld, %lld), b (%lld, %lld)", t->name, (long long)ta->shape[0], (long long)ta->shape[1],
               (long long)tb->shape[0], (long long)tb->shape[1]);
        const float *a = ta->data, *b = tb->data, *wb = tw->data, *wm = tm->data;
        const int perm = rope_half && (e[i].kind == BB_LIN_Q || e[i].kind == BB_LIN_K);
        const double scale = alpha / l->rank;
        bad_layout += memcmp(a, l->b, sizeof(float) * (size_t)(l->rank * l->cols)) != 0;
        for (int64_t r = 0; r < l->rows; r++) {
            const int64_t to = perm ? interleaved_row(r, m->cfg.head_dim) : r;
            for (int j = 0; j < l->rank; j++) bad_layout += b[to * l->rank + j] != l->a[r * l->rank + j] / (float)scale;
        }
        /* what llama.cpp adds, (alpha/rank) lora_b lora_a, against what the merged file adds to the base */
        for (int64_t r = 0; r < l->rows; r++)
            for (int64_t c = 0; c < l->cols; c++) {
                double d = 0;
                for (int j = 0; j < l->rank; j++) d += (double)b[r * l->rank + j] * a[j * l->cols + c];
                d *= scale;
                const double want = (double)wm[r * l->cols + c] - wb[r * l->cols + c];
                const double err = fabs(d - want);
                if (err > worst) worst = err;
                bad_delta += err > 1e-6 + 1e-5 * fabs(want);
            }
    }
    EXPECT(bad_layout == 0, "%s: %lld tensors/rows laid out other than the factors", tag, (long long)bad_layout);
    EXPECT(bad_delta == 0, "%s: %lld weights where the adapter's delta differs from merged - base (worst %g)", tag,
           (long long)bad_delta, worst);
    printf("  %s: %d weights, max |adapter delta - (merged - base)| %g\n", tag, n, worst);
    bb_model *am = NULL;
    EXPECT_ERR(bb_model_open(out_path(lora_n), &am), BB_ERR_UNSUPPORTED, "is an adapter (general.type \"adapter\"), not a model");
done:
    bb_gguf_destroy(&ga);
    bb_gguf_destroy(&gb);
    bb_gguf_destroy(&gm);
    for (int i = 0; i < n; i++) bb_lora_destroy(&f[i]);
    free(f);
    free(e);
    bb_weights_destroy(&w);
    bb_model_destroy(&m);
}

static void test_stories(void) {
    char src[1200];
    snprintf(src, sizeof src, "%s/data/stories260K/stories260K.bin", test_shared());
    adapter_variant(src, 0, "s260");
    adapter_variant(src, 1, "s260_half"); /* q/k rows permuted in base, merged and adapter alike */
}

static void test_refusals(void) {
    bb_model *m = NULL;
    EXPECT_OK(bb_model_open("synthetic:tiny,layers=2", &m));
    if (!m) return;
    const bb_tensor *q = bb_layer_linear(&m->layers[0], BB_LIN_Q);
    bb_lora *l = NULL, *odd = NULL;
    EXPECT_OK(bb_lora_create(bb_tensor_rows(q), bb_tensor_cols(q), 2, &l));
    EXPECT_OK(bb_lora_create(bb_tensor_rows(q) + 1, bb_tensor_cols(q), 2, &odd));
    bb_export_lora_entry e[2] = {{0, BB_LIN_Q, l}, {0, BB_LIN_Q, l}};
    const char *p = out_path("never.gguf");
    EXPECT_ERR(bb_export_lora_gguf(m, e, 2, NULL, p), BB_ERR_ARG, "blk.0.attn_q.weight has two sets of factors");
    e[1] = (bb_export_lora_entry){5, BB_LIN_K, l};
    EXPECT_ERR(bb_export_lora_gguf(m, e, 2, NULL, p), BB_ERR_ARG, "layer 5 kind 1 is outside the model's 2 layers");
    e[1] = (bb_export_lora_entry){1, BB_LIN_Q, odd};
    EXPECT_ERR(bb_export_lora_gguf(m, e, 2, NULL, p), BB_ERR_ARG, "factors of blk.1.attn_q.weight are for a");
    e[1] = (bb_export_lora_entry){1, BB_LIN_Q, l};
    l->b[3] = NAN;
    EXPECT_ERR(bb_export_lora_gguf(m, e + 1, 1, NULL, p), BB_ERR_NUMERIC, "factor B element 3 is nan");
    EXPECT_ERR(bb_export_lora_gguf(m, e, 0, NULL, p), BB_ERR_ARG, "no factors");
    struct stat sb;
    EXPECT(stat(p, &sb) != 0, "nothing written on error");
    bb_lora_destroy(&l);
    bb_lora_destroy(&odd);
    bb_model_destroy(&m);
}

int main(void) {
    snprintf(dir_, sizeof dir_, "%s/export_lora", test_tmpdir());
    mkdir(dir_, 0755);
    TEST_RUN(test_stories);
    TEST_RUN(test_refusals);
    return TEST_DONE();
}
