/* gptq_ref.c — the plain-C reference of the GPU's G128 grid: GPTQ without lazy batches, every later
 * column updated in double right after each column, the group's scale and zero fit (as f32, the same
 * formulas as the kernel and the PyTorch reference) on the group's current values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/gptq_cuda.h"

bb_status bb_cuda_gptq_g128_ref(int64_t rows, int64_t cols, float *w, const float *u, uint8_t *codes, float *params) {
    BB_CHECK(rows >= 1 && cols >= 128 && cols % 128 == 0, BB_ERR_ARG,
             "g128 reference: %lld x %lld (columns must be a positive multiple of 128)", (long long)rows,
             (long long)cols);
    double *x;
    BB_CALL(bb_malloc((void **)&x, (size_t)cols * sizeof *x, "g128 reference row"));
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < cols; j++) x[j] = w[r * cols + j];
        float sc = 1, zero = 0;
        for (int64_t i = 0; i < cols; i++) {
            if (i % 128 == 0) {
                float mn = 0, mx = 0;
                for (int64_t j = i; j < i + 128; j++) {
                    float v = (float)x[j];
                    mn = v < mn ? v : mn;
                    mx = v > mx ? v : mx;
                }
                sc = (mx - mn) / 15.0f;
                if (sc == 0) sc = 1;
                zero = rintf(-mn / sc);
                params[(r * (cols / 128) + i / 128) * 2] = sc;
                params[(r * (cols / 128) + i / 128) * 2 + 1] = zero;
            }
            float q = rintf((float)x[i] / sc) + zero;
            q = q < 0 ? 0 : q > 15 ? 15 : q;
            float y = sc * (q - zero);
            codes[r * cols + i] = (uint8_t)q;
            w[r * cols + i] = y;
            double d = (x[i] - y) / u[i * cols + i];
            for (int64_t j = i + 1; j < cols; j++) x[j] -= d * u[i * cols + j];
        }
    }
    free(x);
    return BB_OK;
}
