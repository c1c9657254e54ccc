/* usage.c — Wanda scores, per-block usage, activation frequency per block, gradient proxy, reconstruction error. */
#include "compress/usage.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/reduce.h"

/* Rows of E formed at a time for the gemm-based helpers: about 16 M values (64 MB), at least 256 rows. Few
 * large products instead of many small ones (a 70B-shaped weight: 14 instead of 112), and a block large
 * enough for the threaded passes (core/reduce.h). The block depends on the shape alone, so the bits do not
 * depend on ranks or threads. */
static int64_t row_block(int64_t rows, int64_t cols) {
    int64_t rb = cols > 0 ? ((int64_t)1 << 24) / cols : rows;
    if (rb < 256) rb = 256;
    return rows < rb ? rows : rb;
}

bb_status bb_usage_block_parse(const char *kind, int64_t tile_rows, int64_t tile_cols, bb_usage_block *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(kind, "tensor") == 0)
        out->kind = BB_USAGE_TENSOR;
    else if (strcmp(kind, "row") == 0)
        out->kind = BB_USAGE_ROW;
    else if (strcmp(kind, "tile") == 0)
        out->kind = BB_USAGE_TILE;
    else
        return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "usage.block: unknown value \"%s\" (tensor|row|tile)", kind);
    BB_CHECK(out->kind != BB_USAGE_TILE || (tile_rows >= 1 && tile_cols >= 1), BB_ERR_CONFIG,
             "usage.tile_rows and usage.tile_cols must be >= 1 (got %lld and %lld)", (long long)tile_rows,
             (long long)tile_cols);
    out->tile_rows = tile_rows;
    out->tile_cols = tile_cols;
    return BB_OK;
}

/* Tile sides of the block grid: the tensor is one tile, or rows of full width, or tiles. */
static void tile_shape(const bb_usage_block *b, int64_t rows, int64_t cols, int64_t *tr, int64_t *tc) {
    switch (b->kind) {
    case BB_USAGE_ROW: *tr = 1, *tc = cols; break;
    case BB_USAGE_TILE: *tr = b->tile_rows, *tc = b->tile_cols; break;
    default: *tr = rows, *tc = cols; break;
    }
    if (*tr < 1) *tr = 1;
    if (*tc < 1) *tc = 1;
}

int64_t bb_usage_block_count(const bb_usage_block *b, int64_t rows, int64_t cols) {
    int64_t tr, tc;
    tile_shape(b, rows, cols, &tr, &tc);
    return ((rows + tr - 1) / tr) * ((cols + tc - 1) / tc);
}

bb_status bb_usage_xnorm_from_gram(const char *name, int64_t cols, const float *h, float *xnorm) {
    for (int64_t j = 0; j < cols; j++) {
        float d = h[j * cols + j];
        BB_CHECK(isfinite(d) && d >= 0.0f, BB_ERR_NUMERIC, "%s: Gram diagonal H[%lld][%lld] = %g is not a squared norm",
                 name, (long long)j, (long long)j, (double)d);
        xnorm[j] = sqrtf(d);
    }
    return BB_OK;
}

bb_status bb_usage_score(const char *name, int64_t rows, int64_t cols, const float *w, const float *xnorm,
                         float *score) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: bad shape (%lld, %lld)", name, (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows; i++) {
        const float *wr = w + i * cols;
        float *sr = score + i * cols;
        for (int64_t j = 0; j < cols; j++) sr[j] = fabsf(wr[j]) * xnorm[j];
    }
    /* one check pass after the vectorizable loop: NaN/Inf make every selection meaningless */
    for (int64_t k = 0; k < rows * cols; k++)
        BB_CHECK(isfinite(score[k]), BB_ERR_NUMERIC,
                 "%s: Wanda score at (%lld, %lld) is %g (weight or ||X_j|| not finite)", name, (long long)(k / cols),
                 (long long)(k % cols), (double)score[k]);
    return BB_OK;
}

bb_status bb_usage_blocks(const char *name, const bb_usage_block *b, int64_t rows, int64_t cols, const float *w,
                          const float *xnorm, double *u) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: bad shape (%lld, %lld)", name, (long long)rows, (long long)cols);
    int64_t tr, tc;
    tile_shape(b, rows, cols, &tr, &tc);
    int64_t ncb = (cols + tc - 1) / tc, nb = bb_usage_block_count(b, rows, cols);
    memset(u, 0, sizeof(double) * (size_t)nb);
    for (int64_t i = 0; i < rows; i++) {
        const float *wr = w + i * cols;
        double *ub = u + (i / tr) * ncb;
        for (int64_t c = 0; c < ncb; c++) {
            int64_t j1 = (c + 1) * tc < cols ? (c + 1) * tc : cols;
            double s = 0;
            for (int64_t j = c * tc; j < j1; j++) s += (double)(fabsf(wr[j]) * xnorm[j]);
            ub[c] += s;
        }
    }
    for (int64_t k = 0; k < nb; k++) {
        int64_t br = k / ncb, bc = k % ncb;
        int64_t nr = (br + 1) * tr < rows ? tr : rows - br * tr, nc = (bc + 1) * tc < cols ? tc : cols - bc * tc;
        u[k] /= (double)nr * (double)nc;
        BB_CHECK(isfinite(u[k]), BB_ERR_NUMERIC, "%s: usage of block %lld is %g (non-finite weights or norms)", name,
                 (long long)k, u[k]);
    }
    return BB_OK;
}

bb_status bb_usage_blocks_ref(const char *name, const bb_usage_block *b, int64_t rows, int64_t cols, const float *w,
                              const float *xnorm, double *u) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: bad shape (%lld, %lld)", name, (long long)rows, (long long)cols);
    int64_t tr, tc;
    tile_shape(b, rows, cols, &tr, &tc);
    int64_t k = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += tr)
        for (int64_t c0 = 0; c0 < cols; c0 += tc, k++) {
            double s = 0;
            int64_t n = 0;
            for (int64_t i = r0; i < rows && i < r0 + tr; i++)
                for (int64_t j = c0; j < cols && j < c0 + tc; j++, n++) s += fabs((double)w[i * cols + j]) * xnorm[j];
            u[k] = s / (double)n;
            BB_CHECK(isfinite(u[k]), BB_ERR_NUMERIC, "%s: usage of block %lld is %g (non-finite weights or norms)",
                     name, (long long)k, u[k]);
        }
    return BB_OK;
}

double bb_usage_max(const double *u, int64_t n) {
    double m = 0;
    for (int64_t k = 0; k < n; k++)
        if (u[k] > m) m = u[k];
    return m;
}

bb_status bb_usage_normalize(const double *u, int64_t n, double umax, double *s) {
    BB_CHECK(isfinite(umax) && umax >= 0, BB_ERR_ARG, "usage: the maximum block usage %g is not a usage", umax);
    for (int64_t k = 0; k < n; k++) s[k] = umax > 0 ? u[k] / umax : 0.0;
    return BB_OK;
}

void bb_usage_block_freq(const bb_usage_block *b, int64_t rows, int64_t cols, const float *freq, double *out) {
    int64_t tr, tc;
    tile_shape(b, rows, cols, &tr, &tc);
    int64_t nrb = (rows + tr - 1) / tr, ncb = (cols + tc - 1) / tc;
    /* the frequency is a property of input channels: every block row of the grid sees the same columns */
    for (int64_t c = 0; c < ncb; c++) {
        double s = 0;
        int64_t j1 = (c + 1) * tc < cols ? (c + 1) * tc : cols;
        for (int64_t j = c * tc; j < j1; j++) s += freq[j];
        double mean = j1 > c * tc ? s / (double)(j1 - c * tc) : 0.0;
        for (int64_t r = 0; r < nrb; r++) out[r * ncb + c] = mean;
    }
}

static bb_status pick_backend(const bb_linalg_backend **be) {
    if (!*be) BB_CALL(bb_linalg_backend_default_get(be));
    return BB_OK;
}

bb_status bb_usage_grad(const char *name, const bb_linalg_backend *be, int64_t rows, int64_t cols, const float *w,
                        const float *w_hat, const float *h, float *g) {
    BB_CALL(pick_backend(&be));
    int64_t rb = row_block(rows, cols);
    float *e = NULL;
    BB_CALL(bb_malloc((void **)&e, sizeof(float) * (size_t)(rb > 0 ? rb : 1) * (size_t)(cols > 0 ? cols : 1),
                      "gradient proxy: error rows"));
    /* H is read by every row block: a device backend keeps one copy for the loop */
    bb_status st = rb < rows ? bb_linalg_hold(be, h, cols, cols, cols) : BB_OK;
    const int held = rb < rows && st == BB_OK; /* a release only for a hold that was taken */
    for (int64_t r0 = 0; r0 < rows && st == BB_OK; r0 += rb) {
        int64_t nr = rows - r0 < rb ? rows - r0 : rb;
        bb_sub_f32(e, w + r0 * cols, w_hat + r0 * cols, nr * cols);
        st = be->gemm(BB_OP_N, BB_OP_N, nr, cols, cols, 2.0f, e, cols, h, cols, 0.0f, g + r0 * cols, cols);
    }
    if (held) bb_linalg_release(be, h);
    free(e);
    BB_CHECK(st == BB_OK, st, "%s: gradient proxy 2 E H failed", name);
    return BB_OK;
}

bb_status bb_usage_grad_ref(const char *name, int64_t rows, int64_t cols, const float *w, const float *w_hat,
                            const float *h, float *g) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: bad shape (%lld, %lld)", name, (long long)rows, (long long)cols);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t k = 0; k < cols; k++)
                s += ((double)w[i * cols + k] - (double)w_hat[i * cols + k]) * (double)h[k * cols + j];
            g[i * cols + j] = (float)(2.0 * s);
        }
    return BB_OK;
}

bb_status bb_usage_recon_error(const char *name, const bb_linalg_backend *be, int64_t rows, int64_t cols,
                               const float *w, const float *w_hat, const float *h, double *err) {
    BB_CALL(pick_backend(&be));
    int64_t rb = row_block(rows, cols);
    size_t n = (size_t)(rb > 0 ? rb : 1) * (size_t)(cols > 0 ? cols : 1);
    float *e = NULL, *t = NULL;
    BB_CALL(bb_malloc((void **)&e, 2 * sizeof(float) * n, "reconstruction error: error rows"));
    t = e + n;
    bb_status st = rb < rows ? bb_linalg_hold(be, h, cols, cols, cols) : BB_OK; /* as in bb_usage_grad */
    const int held = rb < rows && st == BB_OK;
    double sum = 0;
    for (int64_t r0 = 0; r0 < rows && st == BB_OK; r0 += rb) {
        int64_t nr = rows - r0 < rb ? rows - r0 : rb;
        bb_sub_f32(e, w + r0 * cols, w_hat + r0 * cols, nr * cols);
        st = be->gemm(BB_OP_N, BB_OP_N, nr, cols, cols, 1.0f, e, cols, h, cols, 0.0f, t, cols);
        if (st == BB_OK) sum += bb_dot_f64(t, e, nr * cols);
    }
    if (held) bb_linalg_release(be, h);
    free(e);
    BB_CHECK(st == BB_OK, st, "%s: reconstruction error tr(E H E^T) failed", name);
    BB_CHECK(isfinite(sum), BB_ERR_NUMERIC, "%s: reconstruction error is %g", name, sum);
    *err = sum;
    return BB_OK;
}

bb_status bb_usage_recon_error_ref(const char *name, int64_t rows, int64_t cols, const float *w, const float *w_hat,
                                   const float *h, double *err) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "%s: bad shape (%lld, %lld)", name, (long long)rows, (long long)cols);
    double sum = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            for (int64_t k = 0; k < cols; k++)
                sum += ((double)w[i * cols + j] - w_hat[i * cols + j]) * (double)h[j * cols + k] *
                       ((double)w[i * cols + k] - w_hat[i * cols + k]);
    BB_CHECK(isfinite(sum), BB_ERR_NUMERIC, "%s: reconstruction error is %g", name, sum);
    *err = sum;
    return BB_OK;
}
