/* prune_dump.c — writes random layers and birdbone's SparseGPT and Wanda results as raw files for
 * tests/py/sparsegpt_ref.py.
 *
 * usage: prune_dump DIR
 * For each case NAME: DIR/NAME.w.f32 (rows, cols) and DIR/NAME.h.f32 (cols, cols)
 * inputs, DIR/NAME.out.f32 (rows, cols) pruned weights and DIR/NAME.mask.u8
 * (rows, cols, 1 = kept) results, all row-major little-endian; DIR/cases.txt has
 * one line per case: "NAME METHOD ROWS COLS SPARSITY N M BLOCK DAMP PER_ROW". Exit 1 on error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/prune.h"
#include "core/rng.h"

typedef struct {
    const char *name, *method;
    int64_t rows, cols, tokens;
    double sparsity;
    int n, m, block;
    int dead;    /* make input 3 dead (H row and column 0) */
    int per_row; /* per-row comparison groups */
} dump_case;

static const dump_case cases[] = {
    {"sgpt_u50", "sparsegpt", 64, 192, 384, 0.5, 0, 0, 64, 0, 0},
    {"sgpt_u30_b128", "sparsegpt", 40, 256, 512, 0.3, 0, 0, 128, 0, 0},
    {"sgpt_u50_row_b32", "sparsegpt", 56, 172, 344, 0.5, 0, 0, 32, 0, 1},
    {"sgpt_24", "sparsegpt", 48, 128, 256, 0.5, 2, 4, 32, 0, 0},
    {"sgpt_48_dead", "sparsegpt", 32, 96, 192, 0.5, 4, 8, 32, 1, 0},
    {"wanda_u50", "wanda", 50, 160, 320, 0.5, 0, 0, 128, 0, 0},
};

static bb_status write_raw(const char *dir, const char *name, const char *ext, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    BB_CHECK(f, BB_ERR_IO, "cannot write %s", path);
    size_t w = fwrite(p, 1, n, f);
    int c = fclose(f);
    BB_CHECK(w == n && c == 0, BB_ERR_IO, "short write to %s", path);
    return BB_OK;
}

/* Correlated inputs: an AR(1) chain across channels (rho 0.7), scales over one decade. */
static bb_status make_case(const dump_case *c, float *w, float *h) {
    const bb_linalg_backend *cpu;
    BB_CALL(bb_linalg_backend_get("cpu", &cpu));
    float *x = NULL, *scale = NULL;
    BB_CALL(bb_malloc((void **)&x, sizeof(float) * (size_t)(c->tokens * c->cols), "activations"));
    bb_status st = bb_malloc((void **)&scale, sizeof(float) * (size_t)c->cols, "scales");
    if (st != BB_OK) {
        free(x);
        return st;
    }
    bb_rng r = bb_rng_make(2026, bb_rng_stream_id(c->name));
    bb_rng_fill_normal(bb_rng_split(r, 1), 0, (size_t)(c->rows * c->cols), w);
    bb_rng_fill_normal(bb_rng_split(r, 2), 0, (size_t)(c->tokens * c->cols), x);
    bb_rng_fill_uniform(bb_rng_split(r, 3), 0, (size_t)c->cols, -0.5f, 0.5f, scale);
    for (int64_t t = 0; t < c->tokens; t++) {
        float *xt = x + t * c->cols;
        for (int64_t j = 1; j < c->cols; j++) xt[j] = 0.7f * xt[j - 1] + 0.714f * xt[j];
        for (int64_t j = 0; j < c->cols; j++) xt[j] *= powf(10.0f, scale[j]);
        if (c->dead) xt[3] = 0.0f;
    }
    st = cpu->syrk(BB_UPLO_FULL, c->cols, c->tokens, 1.0f, x, c->cols, 0.0f, h, c->cols);
    free(x);
    free(scale);
    return st;
}

static bb_status run_case(const char *dir, const dump_case *c, FILE *list) {
    size_t nw = (size_t)(c->rows * c->cols), nh = (size_t)(c->cols * c->cols);
    float *w = malloc(sizeof(float) * nw), *w0 = malloc(sizeof(float) * nw), *h = malloc(sizeof(float) * nh);
    uint8_t *keep = malloc(nw);
    bb_mask *mask = NULL;
    bb_status st = BB_OK;
    BB_CHECK_GOTO(st, done, w && w0 && h && keep, BB_ERR_OOM, "out of memory: case %s", c->name);
    BB_CALL_GOTO(st, done, make_case(c, w, h));
    memcpy(w0, w, sizeof(float) * nw);
    BB_CALL_GOTO(st, done, bb_mask_create(c->rows, c->cols, 1, &mask));
    bb_prune_opts o;
    bb_prune_opts_default(&o);
    o.sparsity = c->sparsity;
    o.pattern = (bb_prune_pattern){c->n, c->m};
    o.block_size = c->block;
    o.per_row = c->per_row;
    const bb_pruner *p;
    BB_CALL_GOTO(st, done, bb_pruner_get(c->method, &p));
    bb_prune_layer l = {c->name, c->rows, c->cols, w, h, NULL, mask};
    BB_CALL_GOTO(st, done, p->apply(&o, &l, NULL));
    bb_mask_unpack(mask, keep);
    BB_CALL_GOTO(st, done, write_raw(dir, c->name, "w.f32", w0, sizeof(float) * nw));
    BB_CALL_GOTO(st, done, write_raw(dir, c->name, "h.f32", h, sizeof(float) * nh));
    BB_CALL_GOTO(st, done, write_raw(dir, c->name, "out.f32", w, sizeof(float) * nw));
    BB_CALL_GOTO(st, done, write_raw(dir, c->name, "mask.u8", keep, nw));
    fprintf(list, "%s %s %lld %lld %.17g %d %d %d %.17g %d\n", c->name, c->method, (long long)c->rows,
            (long long)c->cols, c->sparsity, c->n, c->m, c->block, o.damp, c->per_row);
done:
    free(w);
    free(w0);
    free(h);
    free(keep);
    bb_mask_destroy(&mask);
    return st;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: prune_dump DIR\n");
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
    FILE *list = fopen(path, "w");
    if (!list) {
        fprintf(stderr, "error: cannot write %s\n", path);
        return 1;
    }
    bb_status st = BB_OK;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && st == BB_OK; i++) st = run_case(argv[1], &cases[i], list);
    if (fclose(list) != 0 && st == BB_OK) st = BB_ERR_IO;
    return st == BB_OK ? 0 : 1;
}
