/* heal_block_stories.c — block-level healing on stories260K: SparseGPT 30 %, GPTQ Q4_0 and both, each before
 * and after healing every block (compress/heal_block.h), evaluated on dev.txt against the dense model.
 *
 * usage: heal_block_stories [SHARED_DIR]   (default: BB_SHARED, else ../shared)
 * Protocol: Grams (f64) from all 224 non-overlapping 512-token windows of tinystories/calib.txt with BOS at each
 * window start, taken once from the dense model, drive SparseGPT (per row, B = 32, damping 0.01, as the
 * reference table of DESIGN §7) and GPTQ Q4_0 (block 32, importance on: bb_quantize_model). Healing uses
 * BB_HEAL_WINDOWS (default 32) windows of BB_HEAL_SEQ (256) tokens of calib.txt (seed 1), BB_HEAL_STEPS (100)
 * Adam steps per block at BB_HEAL_LR (2e-3; the straight-through rows BB_HEAL_STE_LR, 1e-4), rank BB_HEAL_RANK
 * (8), micro-batch 8, blocks healed in order on the compressed model's stream. Perplexity on dev.txt at n_ctx
 * 512 by llama.cpp's method, KLD against the dense model. Rows:
 *   unhealed               the compressed model
 *   heal block, merged     factors trained against block_dense(X), merged into W in f32 (adapter-equivalent)
 *   heal model, merged     the same against the dense model's stream
 *   merged, re-masked      merged, then the pruning mask applied again (the sparse model's size)
 *   heal W, mask fixed     no factors: the kept weights trained (the sparse model's size)
 *   merged, requantized    merged, then GPTQ Q4_0 again from the dense statistics (the Q4_0 size)
 *   heal W, requantized    no factors: the dequantized (kept) weights trained, then GPTQ Q4_0 again
 *   heal W, STE Q4_0       no factors: the weights trained through a straight-through estimator whose projection
 *                          rounds to GPTQ's Q4_0 grid with its block scales fixed (F16 rows to f16): the Q4_0 size
 * Check: every healed row's KLD is below its unhealed row's, except the requantized, re-masked and f32 rows,
 * which are printed for information. Exit 1 on a miss, 77 (skipped) when BB_SKIP_SLOW is set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/heal_block.h"
#include "compress/prune.h"
#include "core/dtype.h"
#include "core/file.h"
#include "core/log.h"
#include "io/config.h"
#include "io/model.h"
#include "io/qformat.h"
#include "io/tokenizer.h"
#include "model/calib.h"
#include "model/eval.h"
#include "pipeline/quantize.h"
#include "pipeline/weights.h"

#define NL_MAX 64

typedef struct {
    bb_model *m;
    bb_calib *stats;
    int *dev, n_dev;
    bb_tokens heal_win;
    bb_logprobs dense_lp;
    bb_heal_block_opts ho;
    double ste_lr; /* the straight-through rows' learning rate */
    int n_weights; /* linear weights of the model */
    int failures;
} ctx;

static bb_status encode_file(bb_tokenizer *tok, const char *path, int **ids, int *n) {
    char *text = NULL;
    size_t len;
    BB_CALL(bb_file_read_all(path, (size_t)1 << 26, &text, &len));
    bb_status st = bb_tokenizer_encode(tok, text, 1, 0, ids, n);
    free(text);
    return st;
}

typedef struct {
    double ppl, kld, top1;
} result;

static bb_status eval_model(ctx *c, const bb_model *m, result *r) {
    bb_forward *f = NULL;
    BB_CALL(bb_forward_create(m, 512, &f));
    bb_ppl_opts o = {.n_ctx = 512, .bos_id = c->m->cfg.bos_id};
    bb_ppl_result pr;
    bb_kld_result kr;
    bb_status st = bb_eval_perplexity(f, c->dev, c->n_dev, &o, &pr, NULL, &c->dense_lp, &kr);
    bb_forward_destroy(&f);
    *r = (result){pr.ppl, kr.kld_mean, kr.top1};
    return st;
}

static void print_row(const char *setting, const char *variant, double bits, const result *r, const result *base) {
    printf("%-22s %-22s %6.2f %8.4f %9.5f %7.4f", setting, variant, bits, r->ppl, r->kld, r->top1);
    if (base) printf("   KLD %+.1f %%", 100 * (r->kld / base->kld - 1));
    printf("\n");
    fflush(stdout);
}

/* SparseGPT 30 % on every linear of w, masks out. */
static bb_status prune(ctx *c, bb_weights *w, bb_mask **masks) {
    const bb_pruner *p;
    BB_CALL(bb_pruner_get("sparsegpt", &p));
    bb_prune_opts o;
    bb_prune_opts_default(&o);
    o.sparsity = 0.3;
    o.per_row = 1;
    o.block_size = 32;
    for (int l = 0; l < c->m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            const bb_calib_stat *s;
            BB_CALL(bb_calib_stats(c->stats, l, (bb_linear_kind)k, &s));
            int64_t n = s->in_features;
            const bb_tensor *t = bb_weights_tensor(w, l, (bb_linear_kind)k);
            int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
            float *h = malloc(sizeof(float) * (size_t)(n * n)), *xn = malloc(sizeof(float) * (size_t)n);
            BB_CHECK(h && xn, BB_ERR_OOM, "out of memory: Gram of %s", t->name);
            for (int64_t e = 0; e < n * n; e++) h[e] = (float)s->gram_f64[e];
            for (int64_t j = 0; j < n; j++) xn[j] = (float)s->norm[j];
            bb_mask **mk = &masks[l * BB_LIN_COUNT + k];
            bb_status st = bb_mask_create(rows, cols, 1, mk);
            bb_prune_layer pl = {t->name, rows, cols, bb_weights_linear(w, l, (bb_linear_kind)k), h, xn, *mk};
            if (st == BB_OK) st = p->apply(&o, &pl, NULL);
            free(h);
            free(xn);
            BB_CALL(st);
        }
    return BB_OK;
}

/* The straight-through projection: onto the stored grid of a quantized model with its block scales fixed.
 * Q4_0 rows: w = d·clamp(round(w / d), -8, 7) with each 32-block's scale d as GPTQ chose it; F16 rows (ffn_down,
 * whose 172 fit no block): rounded to f16. So the trained model stays the size of the quantized one. */
static bb_status grid_project(void *ud, int layer, bb_linear_kind kind, int64_t rows, int64_t cols, float *w) {
    const bb_quantized *q = ud;
    const bb_quant_result *r = q->q[layer * BB_LIN_COUNT + kind];
    static int q4_0 = -1, f16 = -1;
    if (q4_0 < 0) BB_CALL(bb_qformat_parse_name("q4_0", &q4_0));
    if (f16 < 0) BB_CALL(bb_qformat_parse_name("f16", &f16));
    BB_CHECK(r->rows == rows && r->cols == cols && (r->type == q4_0 || r->type == f16), BB_ERR_INTERNAL,
             "layer %d %s: stored as type %d, (%lld, %lld)", layer, bb_linear_name(kind), r->type, (long long)r->rows,
             (long long)r->cols);
    for (int64_t i = 0; i < rows; i++) {
        float *row = w + i * cols;
        if (r->type == f16) {
            for (int64_t j = 0; j < cols; j++) row[j] = bb_f16_to_f32(bb_f32_to_f16(row[j]));
            continue;
        }
        for (int64_t b = 0; b < cols / 32; b++) {
            const uint8_t *blk = r->blocks + i * r->row_bytes + b * 18; /* f16 d, then 16 bytes of nibbles */
            float d = bb_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            for (int j = 0; j < 32; j++) {
                float k = d != 0 ? roundf(row[b * 32 + j] / d) : 0;
                row[b * 32 + j] = d * (k < -8 ? -8 : k > 7 ? 7 : k);
            }
        }
    }
    return BB_OK;
}

static bb_status quantize(ctx *c, bb_weights *w, int64_t *bits, bb_quantized **keep) {
    bb_config cfg;
    BB_CALL(bb_config_defaults(&cfg));
    BB_CALL(bb_config_set(&cfg, "quant.method=gptq"));
    BB_CALL(bb_config_set(&cfg, "quant.type=q4_0"));
    BB_CALL(bb_config_set(&cfg, "quant.block_size=32"));
    BB_CALL(bb_config_set(&cfg, "quant.importance=true"));
    bb_quantized *q = NULL;
    BB_CALL(bb_quantize_model(&cfg, w, c->stats, &q));
    *bits = q->bits;
    if (keep)
        *keep = q;
    else
        bb_quantized_destroy(&q);
    return BB_OK;
}

/* A copy of src's working weights (the model must be the same). */
static bb_status clone_weights(ctx *c, bb_weights *src, bb_weights **out) {
    BB_CALL(bb_weights_create(c->m, 0, 0, out));
    for (int l = 0; l < c->m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            const bb_tensor *t = bb_weights_tensor(src, l, (bb_linear_kind)k);
            memcpy(bb_weights_linear(*out, l, (bb_linear_kind)k), bb_weights_linear(src, l, (bb_linear_kind)k),
                   sizeof(float) * (size_t)bb_tensor_numel(t));
        }
    return BB_OK;
}

/* Heal every block of a copy of w; the copy with the factors merged goes to *healed, factors to lora. */
static bb_status heal(ctx *c, bb_weights *w, bb_mask **masks, bb_heal_target target, int weights_only,
                      bb_quantized *ste, bb_lora **lora, bb_weights **healed) {
    int L = c->m->cfg.n_layers;
    BB_CALL(clone_weights(c, w, healed));
    float *work[NL_MAX * BB_LIN_COUNT];
    for (int l = 0; l < L; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++)
            work[l * BB_LIN_COUNT + k] = bb_weights_linear(*healed, l, (bb_linear_kind)k);
    bb_heal_block_opts o = c->ho;
    if (weights_only) {
        o.rank = 0;
        o.train_weights = 1;
    }
    if (ste) {
        o.project = grid_project;
        o.project_ud = ste;
        o.lr = c->ste_lr;
    }
    double *loss = malloc(sizeof(double) * (size_t)(L * (o.steps + 1)));
    BB_CHECK(loss, BB_ERR_OOM, "out of memory: loss curves");
    double t0 = bb_now();
    bb_status st =
        bb_heal_block_model(c->m, work, (const bb_mask *const *)masks, lora, &c->heal_win, 0, L, target, &o, loss);
    if (st == BB_OK) {
        printf("    healing %s%s: %.1f s; loss per block (first -> last step):", target ? "model" : "block",
               weights_only ? " (weights)" : "", bb_now() - t0);
        for (int l = 0; l < L; l++) printf(" %.4g->%.4g", loss[l * (o.steps + 1)], loss[l * (o.steps + 1) + o.steps]);
        printf("\n");
        const char *curves = getenv("BB_HEAL_CURVES");
        if (curves) { /* append: setting, layer, step, loss */
            FILE *f = fopen(curves, "a");
            if (f) {
                for (int l = 0; l < L; l++)
                    for (int s = 0; s <= o.steps; s++)
                        fprintf(f, "%s%s,%d,%d,%.9g\n", target ? "model" : "block", weights_only ? "_w" : "", l, s,
                                loss[l * (o.steps + 1) + s]);
                fclose(f);
            }
        }
    }
    free(loss);
    BB_CALL(st);
    for (int i = 0; i < L * BB_LIN_COUNT; i++)
        if (lora[i]) bb_lora_merge(lora[i], work[i]);
    return BB_OK;
}

static void free_lora(bb_lora **lora, int n) {
    for (int i = 0; i < n; i++) bb_lora_destroy(&lora[i]);
}

static int64_t lora_values(bb_lora **lora, int n) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) v += lora[i] ? bb_lora_numel(lora[i]) : 0;
    return v;
}

static void expect_better(ctx *c, const char *what, const result *healed, const result *base) {
    if (!(healed->kld < base->kld)) {
        printf("    <- %s: healed KLD %.5f is not below the unhealed %.5f\n", what, healed->kld, base->kld);
        c->failures++;
    }
}

static bb_status run_rows(ctx *c) {
    int L = c->m->cfg.n_layers, n = L * BB_LIN_COUNT;
    double nw = c->n_weights;
    bb_mask *masks[NL_MAX * BB_LIN_COUNT] = {0};
    bb_lora *lora[NL_MAX * BB_LIN_COUNT] = {0};
    bb_weights *sp = NULL, *hw = NULL, *q = NULL, *spq = NULL;
    bb_quantized *qz = NULL;
    result base, r;
    int64_t qbits = 0;
    bb_status st = BB_OK;
    const char *rows = getenv("BB_HEAL_ROWS");
    /* ---- SparseGPT 30 % ---- */
    if (!rows || strstr(rows, "sparse")) {
        BB_CALL_GOTO(st, out, bb_weights_create(c->m, 0, 0, &sp));
        BB_CALL_GOTO(st, out, prune(c, sp, masks));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(sp), &base));
        print_row("sparsegpt 30%", "unhealed", 32 * 0.7, &base, NULL);
        BB_CALL_GOTO(st, out, heal(c, sp, masks, BB_HEAL_TARGET_BLOCK, 0, NULL, lora, &hw));
        double extra = 16.0 * (double)lora_values(lora, n) / nw; /* f16 factors per linear weight */
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal block, merged", 32 * 0.7 + extra, &r, &base);
        expect_better(c, "sparsegpt heal block", &r, &base);
        for (int i = 0; i < n; i++) bb_mask_apply(masks[i], bb_weights_linear(hw, i / BB_LIN_COUNT, i % BB_LIN_COUNT));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "merged, re-masked", 32 * 0.7, &r, &base);
        bb_weights_destroy(&hw);
        free_lora(lora, n);
        BB_CALL_GOTO(st, out, heal(c, sp, masks, BB_HEAL_TARGET_MODEL, 0, NULL, lora, &hw));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal model, merged", 32 * 0.7 + extra, &r, &base);
        expect_better(c, "sparsegpt heal model", &r, &base);
        bb_weights_destroy(&hw);
        free_lora(lora, n);
        BB_CALL_GOTO(st, out, heal(c, sp, masks, BB_HEAL_TARGET_BLOCK, 1, NULL, lora, &hw));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W, mask fixed", 32 * 0.7, &r, &base);
        expect_better(c, "sparsegpt heal weights", &r, &base);
        bb_weights_destroy(&hw);
        free_lora(lora, n);
    }
    /* ---- GPTQ Q4_0 ---- */
    if (!rows || strstr(rows, "q4")) {
        BB_CALL_GOTO(st, out, bb_weights_create(c->m, 0, 0, &q));
        BB_CALL_GOTO(st, out, quantize(c, q, &qbits, &qz));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(q), &base));
        print_row("gptq q4_0", "unhealed", qbits / nw, &base, NULL);
        BB_CALL_GOTO(st, out, heal(c, q, NULL, BB_HEAL_TARGET_BLOCK, 0, NULL, lora, &hw));
        double extra = 16.0 * (double)lora_values(lora, n) / nw;
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal block, adapter", qbits / nw + extra, &r, &base);
        expect_better(c, "q4_0 heal block", &r, &base);
        int64_t b2;
        BB_CALL_GOTO(st, out, quantize(c, hw, &b2, NULL));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "merged, requantized", b2 / nw, &r, &base);
        bb_weights_destroy(&hw);
        free_lora(lora, n);
        BB_CALL_GOTO(st, out, heal(c, q, NULL, BB_HEAL_TARGET_BLOCK, 1, NULL, lora, &hw));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W (f32)", 32, &r, &base);
        BB_CALL_GOTO(st, out, quantize(c, hw, &b2, NULL));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W, requantized", b2 / nw, &r, &base);
        bb_weights_destroy(&hw);
        BB_CALL_GOTO(st, out, heal(c, q, NULL, BB_HEAL_TARGET_BLOCK, 1, qz, lora, &hw));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W, STE Q4_0", qbits / nw, &r, &base);
        expect_better(c, "q4_0 straight-through", &r, &base);
        bb_weights_destroy(&hw);
        bb_quantized_destroy(&qz);
    }
    /* ---- SparseGPT 30 % then GPTQ Q4_0 ---- */
    if (!rows || strstr(rows, "both")) {
        if (!masks[0]) {
            BB_CALL_GOTO(st, out, bb_weights_create(c->m, 0, 0, &sp));
            BB_CALL_GOTO(st, out, prune(c, sp, masks));
        }
        BB_CALL_GOTO(st, out, clone_weights(c, sp, &spq));
        BB_CALL_GOTO(st, out, quantize(c, spq, &qbits, &qz));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(spq), &base));
        print_row("sparsegpt 30% + q4_0", "unhealed", qbits / nw, &base, NULL);
        BB_CALL_GOTO(st, out, heal(c, spq, masks, BB_HEAL_TARGET_BLOCK, 0, NULL, lora, &hw));
        double extra = 16.0 * (double)lora_values(lora, n) / nw;
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal block, adapter", qbits / nw + extra, &r, &base);
        expect_better(c, "sparse+q4_0 heal block", &r, &base);
        for (int i = 0; i < n; i++) bb_mask_apply(masks[i], bb_weights_linear(hw, i / BB_LIN_COUNT, i % BB_LIN_COUNT));
        int64_t b2;
        BB_CALL_GOTO(st, out, quantize(c, hw, &b2, NULL));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "merged, re-masked, rq", b2 / nw, &r, &base);
        bb_weights_destroy(&hw);
        free_lora(lora, n);
        BB_CALL_GOTO(st, out, heal(c, spq, masks, BB_HEAL_TARGET_BLOCK, 1, NULL, lora, &hw));
        BB_CALL_GOTO(st, out, quantize(c, hw, &b2, NULL));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W, mask fixed, rq", b2 / nw, &r, &base);
        bb_weights_destroy(&hw);
        BB_CALL_GOTO(st, out, heal(c, spq, masks, BB_HEAL_TARGET_BLOCK, 1, qz, lora, &hw));
        BB_CALL_GOTO(st, out, eval_model(c, bb_weights_model(hw), &r));
        print_row("", "heal W, mask, STE Q4_0", qbits / nw, &r, &base);
        expect_better(c, "sparse+q4_0 straight-through", &r, &base);
        bb_weights_destroy(&hw);
        bb_quantized_destroy(&qz);
    }
out:
    bb_quantized_destroy(&qz);
    free_lora(lora, n);
    for (int i = 0; i < n; i++) bb_mask_destroy(&masks[i]);
    bb_weights_destroy(&sp);
    bb_weights_destroy(&hw);
    bb_weights_destroy(&q);
    bb_weights_destroy(&spq);
    return st;
}

static double env_num(const char *name, double def) {
    const char *v = getenv(name);
    return v && *v ? atof(v) : def;
}

int main(int argc, char **argv) {
    if (getenv("BB_SKIP_SLOW")) {
        printf("skipped: BB_SKIP_SLOW is set (this check takes minutes)\n");
        return 77;
    }
    /* Ten block healings of stories260K on one core take 40 minutes at the documented settings (32 windows):
     * too long for every CI run. BB_LONG=1 runs it (the table in docs/healing-block.md comes from it). */
    if (!getenv("BB_LONG")) {
        printf("skipped: a long check (about 40 minutes on one core); run it with BB_LONG=1\n");
        return 77;
    }
    const char *shared = argc > 1 ? argv[1] : getenv("BB_SHARED") ? getenv("BB_SHARED") : "../shared";
    char mpath[1024], cpath[1024], dpath[1024];
    snprintf(mpath, sizeof mpath, "%s/data/stories260K/stories260K.bin", shared);
    snprintf(cpath, sizeof cpath, "%s/data/tinystories/calib.txt", shared);
    snprintf(dpath, sizeof dpath, "%s/data/tinystories/dev.txt", shared);
    ctx c;
    memset(&c, 0, sizeof c);
    bb_heal_block_opts_default(&c.ho);
    c.ho.steps = (int)env_num("BB_HEAL_STEPS", 100);
    c.ho.lr = env_num("BB_HEAL_LR", 2e-3);
    c.ho.rank = (int)env_num("BB_HEAL_RANK", 8);
    c.ste_lr = env_num("BB_HEAL_STE_LR", 1e-4);
    c.ho.micro_batch = 8;
    int n_win = (int)env_num("BB_HEAL_WINDOWS", 32), seq = (int)env_num("BB_HEAL_SEQ", 256);
    bb_tokenizer *tok = NULL;
    bb_forward *f = NULL;
    int *cal = NULL, n_cal = 0;
    bb_tokens flat = {0}, win = {0};
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, out, bb_model_open(mpath, &c.m));
    BB_CHECK_GOTO(st, out, c.m->cfg.n_layers <= NL_MAX, BB_ERR_UNSUPPORTED, "more than %d layers", NL_MAX);
    BB_CALL_GOTO(st, out, bb_tokenizer_open_for_model(c.m, NULL, &tok));
    BB_CALL_GOTO(st, out, encode_file(tok, cpath, &cal, &n_cal));
    BB_CALL_GOTO(st, out, encode_file(tok, dpath, &c.dev, &c.n_dev));
    flat = (bb_tokens){cal, n_cal, n_cal, 0, c.m->cfg.vocab_size};
    BB_CALL_GOTO(st, out, bb_calib_sample_windows(&flat, 0, 512, 0, c.m->cfg.bos_id, &win));
    BB_CALL_GOTO(st, out, bb_calib_sample_windows(&flat, n_win, seq, 1, c.m->cfg.bos_id, &c.heal_win));
    bb_calib_opts co;
    bb_calib_opts_default(&co);
    co.precision = BB_CALIB_F64;
    BB_CALL_GOTO(st, out, bb_calib_create(c.m, &co, &c.stats));
    BB_CALL_GOTO(st, out, bb_forward_create(c.m, 512, &f));
    BB_CALL_GOTO(st, out, bb_calib_run(c.stats, f, &win, 8));
    bb_ppl_opts po = {.n_ctx = 512, .bos_id = c.m->cfg.bos_id};
    bb_ppl_result dense;
    BB_CALL_GOTO(st, out, bb_eval_perplexity(f, c.dev, c.n_dev, &po, &dense, &c.dense_lp, NULL, NULL));
    bb_forward_destroy(&f);
    for (int l = 0; l < c.m->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++)
            c.n_weights += (int)bb_tensor_numel(bb_layer_linear(&c.m->layers[l], (bb_linear_kind)k));
    printf("calibration: %d x 512 tokens (statistics); healing: %d x %d tokens, %d steps, lr %g, rank %d\n", win.n_seq,
           n_win, seq, c.ho.steps, c.ho.lr, c.ho.rank);
    printf("%-22s %-22s %6s %8s %9s %7s\n", "setting", "variant", "bits/w", "PPL", "mean KLD", "top-1");
    result d = {dense.ppl, 0, 1};
    print_row("dense", "-", 32, &d, NULL);
    BB_CALL_GOTO(st, out, run_rows(&c));
out:
    bb_logprobs_free(&c.dense_lp);
    bb_forward_destroy(&f);
    bb_calib_destroy(&c.stats);
    bb_tokens_free(&win);
    bb_tokens_free(&c.heal_win);
    free(cal);
    free(c.dev);
    bb_tokenizer_destroy(&tok);
    bb_model_destroy(&c.m);
    if (st != BB_OK) fprintf(stderr, "heal_block_stories: %s\n", bb_last_error());
    return st != BB_OK || c.failures ? 1 : 0;
}
