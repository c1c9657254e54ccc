/* quant_dump.c — writes random layers and birdbone's GPTQ and RTN results on the Q4_0 and Q8_0 grids,
 * for tests/py/gptq_ref.py to redo GPTQ in numpy and compare.
 *
 * Usage: quant_dump OUTDIR. Per case <c> (all f32 little-endian, row-major):
 *   <c>.W.f32 (rows, cols)   <c>.H.f32 (cols, cols), H = X^T X / samples of correlated random X
 *   <c>.<t>.gptq.f32 (rows, cols) GPTQ's Ŵ   <c>.<t>.gptq.bin the GGUF blocks (rows x row_bytes)
 *   <c>.<t>.rtn.f32 (rows, cols)  RTN's Ŵ (diag-H importance)
 *   manifest.txt: one line per (case, type): "c rows cols t damp block_size"; t is the ggml name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/quant.h"
#include "core/rng.h"
#include "io/qformat.h"

static int write_raw(const char *dir, const char *name, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "quant_dump: cannot write %s\n", path);
        return -1;
    }
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Inputs AR(1)-correlated across channels (0.6) with channel scales over two decades. */
static void make_layer(int64_t rows, int64_t cols, int64_t samples, uint64_t seed, float *w, float *h) {
    float *x = malloc(sizeof(float) * (size_t)(samples * cols));
    bb_rng_fill_normal(bb_rng_make(seed, 1), 0, (size_t)(samples * cols), x);
    for (int64_t s = 0; s < samples; s++)
        for (int64_t j = 1; j < cols; j++) x[s * cols + j] += 0.6f * x[s * cols + j - 1];
    for (int64_t j = 0; j < cols; j++) {
        float sc = powf(10.0f, (float)bb_rng_uniform(bb_rng_make(seed, 2), (uint64_t)j) * 2.0f - 1.0f);
        for (int64_t s = 0; s < samples; s++) x[s * cols + j] *= sc;
    }
    const bb_linalg_backend *cpu;
    bb_linalg_backend_get("cpu", &cpu);
    cpu->syrk(BB_UPLO_FULL, cols, samples, 1.0f / (float)samples, x, cols, 0.0f, h, cols);
    bb_rng_fill_normal(bb_rng_make(seed, 3), 0, (size_t)(rows * cols), w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] *= 0.02f;
    free(x);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: quant_dump OUTDIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *man = fopen(path, "w");
    if (!man) {
        fprintf(stderr, "quant_dump: cannot write %s\n", path);
        return 1;
    }
    const struct {
        const char *name;
        int64_t rows, cols, samples, block_size;
        double damp;
    } cases[] = {
        {"a", 32, 256, 1024, 128, 0.01},
        {"b", 16, 512, 2048, 64, 0.01},
        {"c", 24, 384, 512, 128, 0.1},
    };
    const int types[] = {BB_GGML_Q4_0, BB_GGML_Q8_0};
    int rc = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0] && rc == 0; c++) {
        const int64_t rows = cases[c].rows, cols = cases[c].cols;
        float *w = malloc(sizeof(float) * (size_t)(rows * cols)), *h = malloc(sizeof(float) * (size_t)(cols * cols));
        make_layer(rows, cols, cases[c].samples, 100 + c, w, h);
        char name[256];
        snprintf(name, sizeof name, "%s.W.f32", cases[c].name);
        rc |= write_raw(dir, name, w, sizeof(float) * (size_t)(rows * cols));
        snprintf(name, sizeof name, "%s.H.f32", cases[c].name);
        rc |= write_raw(dir, name, h, sizeof(float) * (size_t)(cols * cols));
        for (int t = 0; t < 2 && rc == 0; t++) {
            bb_quant_opts o;
            bb_quant_opts_default(&o);
            o.type = types[t];
            o.damp = cases[c].damp;
            o.block_size = cases[c].block_size;
            bb_quant_input in = {cases[c].name, rows, cols, w, h, NULL, NULL};
            bb_quant_result *g = NULL, *r = NULL;
            if (bb_quant_gptq(&o, &in, &g) != BB_OK || bb_quant_rtn(&o, &in, &r) != BB_OK) {
                rc = 1;
                break;
            }
            const char *tn = bb_ggml_type_name(types[t]);
            snprintf(name, sizeof name, "%s.%s.gptq.f32", cases[c].name, tn);
            rc |= write_raw(dir, name, g->w_hat, sizeof(float) * (size_t)(rows * cols));
            snprintf(name, sizeof name, "%s.%s.gptq.bin", cases[c].name, tn);
            rc |= write_raw(dir, name, g->blocks, g->row_bytes * (size_t)rows);
            snprintf(name, sizeof name, "%s.%s.rtn.f32", cases[c].name, tn);
            rc |= write_raw(dir, name, r->w_hat, sizeof(float) * (size_t)(rows * cols));
            fprintf(man, "%s %lld %lld %s %.17g %lld\n", cases[c].name, (long long)rows, (long long)cols, tn,
                    cases[c].damp, (long long)cases[c].block_size);
            bb_quant_result_destroy(&g);
            bb_quant_result_destroy(&r);
        }
        free(w);
        free(h);
    }
    if (fclose(man) != 0) rc = 1;
    if (rc) fprintf(stderr, "quant_dump: failed\n");
    return rc ? 1 : 0;
}
