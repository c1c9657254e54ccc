/* fuzz_qformat.c — libFuzzer target: every block decoder on arbitrary bytes, the row API on
 * arbitrary lengths, and encode -> decode of arbitrary floats (finite input must decode finite).
 *
 * Input: byte 0 picks the type (modulo the registry), byte 1 the mode; the rest is the payload. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/qformat.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bb_error_set_quiet(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int nt;
    const int *types = bb_qformat_types(&nt);
    const bb_qformat_traits *t = bb_qformat_info(types[data[0] % nt]);
    const int mode = data[1];
    const uint8_t *p = data + 2;
    size_t len = size - 2;

    /* The row API on a length taken from the payload: any value must give a status, not a crash. */
    if (len >= 8) {
        int64_t n;
        memcpy(&n, p, 8);
        size_t bytes;
        bb_qformat_row_bytes(t->type, n, &bytes);
        bb_qformat_fallback(t->type, n);
    }

    /* Decode as many whole blocks as the payload holds, from an exact-size copy so that any read
     * past the end is caught by the sanitizer. */
    size_t nblocks = len / (size_t)t->block_bytes;
    if (nblocks > 0) {
        size_t n = nblocks * (size_t)t->blck;
        uint8_t *src = malloc(nblocks * (size_t)t->block_bytes);
        float *y = malloc(n * sizeof(float));
        if (src && y) {
            memcpy(src, p, nblocks * (size_t)t->block_bytes);
            if (bb_qformat_decode_row(t->type, src, (int64_t)n, y) != BB_OK) abort();
        }
        free(src);
        free(y);
    }

    /* Encode the payload read as floats (padded with zeros to whole blocks), optionally with
     * importance |x|; finite input must round-trip to finite output. */
    size_t nf = len / sizeof(float);
    if (nf == 0 || !(mode & 1)) return 0;
    size_t n = (nf + (size_t)t->blck - 1) / (size_t)t->blck * (size_t)t->blck, bytes;
    float *x = calloc(n, sizeof(float)), *imp = calloc(n, sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *blk = NULL;
    if (x && imp && y && bb_qformat_row_bytes(t->type, (int64_t)n, &bytes) == BB_OK && (blk = malloc(bytes))) {
        memcpy(x, p, nf * sizeof(float));
        for (size_t i = 0; i < n; i++) imp[i] = fabsf(x[i]);
        bb_status st = bb_qformat_encode_row(t->type, x, (int64_t)n, (mode & 2) ? imp : NULL, blk);
        if (st == BB_OK) {
            if (bb_qformat_decode_row(t->type, blk, (int64_t)n, y) != BB_OK) abort();
            for (size_t i = 0; i < n; i++)
                if (!isfinite(y[i])) abort();
        } else if (bb_qformat_check_finite(x, n, "x") == BB_OK &&
                   (!(mode & 2) || bb_qformat_check_finite(imp, n, "imp") == BB_OK)) {
            abort(); /* rejected although finite */
        }
    }
    free(x);
    free(imp);
    free(y);
    free(blk);
    return 0;
}
