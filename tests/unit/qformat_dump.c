/* qformat_dump.c — writes birdbone-encoded blocks, random block bytes and birdbone's decoding of
 * both, per type, for tests/py/check_qformat.py to dequantize with the gguf package and compare.
 *
 * Usage: qformat_dump OUTDIR. Files per type (ggml name, e.g. q4_K), all rows of ROW elements:
 *   <name>.enc.bin  encoded rows (rows x row_bytes)   <name>.enc.f32  their decoding (rows x ROW f32)
 *   <name>.src.f32  the rows that were encoded         <name>.raw.bin  random bytes (rows x row_bytes)
 *   <name>.raw.f32  their decoding
 *   manifest.txt: one line per type: "name ggml_id ROW row_bytes enc_rows gauss_rows raw_rows"; the
 *   first gauss_rows encoded rows are plain Gaussian rows (no importance), the rest are edge cases. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/qformat.h"

#define ROW 512
#define GAUSS_ROWS 16
#define EDGE_ROWS 14
#define RAW_ROWS 64
#define ENC_ROWS (GAUSS_ROWS + EDGE_ROWS)

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t next_u64(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double uniform01(void) { return ((next_u64() >> 11) + 0.5) * 0x1p-53; }
static float gauss(void) { return (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01())); }

/* Edge row r (0..EDGE_ROWS-1) into x; importance into imp, or returns 0 for none. */
static int edge_row(int r, float *x, float *imp) {
    for (int i = 0; i < ROW; i++) {
        float g = gauss();
        switch (r) {
        case 0: x[i] = 0; break;
        case 1: x[i] = 1e-30f * g; break;
        case 2: x[i] = 1e30f * g; break;
        case 3: x[i] = (i / 16) % 2 ? 1e30f * g : 1e-30f * g; break;
        case 4: x[i] = i % 97 == 0 ? (i % 2 ? FLT_MAX : -FLT_MAX) : g; break;
        case 5: x[i] = 1e-40f * g; break; /* f32 subnormals */
        case 6: x[i] = 1e-6f * g; break;  /* fp16 scales become subnormal */
        case 7: x[i] = 0.75f; break;
        case 8: x[i] = i == 37 ? 100.0f : 0.01f * g; break;
        case 9: x[i] = fabsf(g) + 1.0f; break;
        case 10: x[i] = -fabsf(g) - 1.0f; break;
        case 11: x[i] = 70000.0f * g; break; /* beyond the fp16 range */
        default: x[i] = 0.05f * g; break;
        }
        imp[i] = r == 12 ? (uniform01() < 0.1 ? 50.0f : 0.5f) : r == 13 ? (float)(i % 5) : 1.0f;
    }
    return r >= 12;
}

static int write_or_fail(const char *dir, const char *name, const char *ext, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
        fprintf(stderr, "qformat_dump: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: qformat_dump OUTDIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s/manifest.txt", dir);
    FILE *manifest = fopen(mpath, "w");
    if (!manifest) {
        fprintf(stderr, "qformat_dump: cannot write %s\n", mpath);
        return 1;
    }
    int nt, rc = 0;
    const int *types = bb_qformat_types(&nt);
    float *src = malloc(sizeof(float) * ROW * ENC_ROWS), *dec = malloc(sizeof(float) * ROW * RAW_ROWS),
          *imp = malloc(sizeof(float) * ROW);
    uint8_t *blocks = malloc((size_t)ROW * 4 * RAW_ROWS);
    if (!src || !dec || !imp || !blocks) return 1;
    for (int k = 0; k < nt && rc == 0; k++) {
        const bb_qformat_traits *t = bb_qformat_info(types[k]);
        size_t rb;
        if (bb_qformat_row_bytes(t->type, ROW, &rb) != BB_OK) return 1;
        for (int r = 0; r < ENC_ROWS; r++) {
            float *x = src + (size_t)r * ROW;
            int weighted = 0;
            if (r < GAUSS_ROWS) {
                float scale = r % 4 == 0 ? 0.02f : r % 4 == 1 ? 1.0f : r % 4 == 2 ? 1000.0f : 1e-3f;
                for (int i = 0; i < ROW; i++) x[i] = scale * gauss();
            } else {
                weighted = edge_row(r - GAUSS_ROWS, x, imp);
            }
            if (bb_qformat_encode_row(t->type, x, ROW, weighted ? imp : NULL, blocks + (size_t)r * rb) != BB_OK ||
                bb_qformat_decode_row(t->type, blocks + (size_t)r * rb, ROW, dec + (size_t)r * ROW) != BB_OK)
                return 1;
        }
        rc |= write_or_fail(dir, t->name, "src.f32", src, sizeof(float) * ROW * ENC_ROWS);
        rc |= write_or_fail(dir, t->name, "enc.bin", blocks, rb * ENC_ROWS);
        rc |= write_or_fail(dir, t->name, "enc.f32", dec, sizeof(float) * ROW * ENC_ROWS);
        /* Arbitrary bytes: every scale bit pattern (NaN, Inf, subnormal fp16) and every code. */
        for (size_t i = 0; i < rb * RAW_ROWS; i++) blocks[i] = (uint8_t)(next_u64() >> 56);
        for (int r = 0; r < RAW_ROWS; r++)
            if (bb_qformat_decode_row(t->type, blocks + (size_t)r * rb, ROW, dec + (size_t)r * ROW) != BB_OK) return 1;
        rc |= write_or_fail(dir, t->name, "raw.bin", blocks, rb * RAW_ROWS);
        rc |= write_or_fail(dir, t->name, "raw.f32", dec, sizeof(float) * ROW * RAW_ROWS);
        fprintf(manifest, "%s %d %d %zu %d %d %d\n", t->name, t->type, ROW, rb, ENC_ROWS, GAUSS_ROWS, RAW_ROWS);
    }
    if (fclose(manifest) != 0) rc = -1;
    free(src);
    free(dec);
    free(imp);
    free(blocks);
    printf("qformat_dump: %d types written to %s\n", nt, dir);
    return rc ? 1 : 0;
}
