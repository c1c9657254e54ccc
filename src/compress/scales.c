/* scales.c — Adam on the per-block scales of Q8_0 / Q4_0 / Q5_0 weights against tr(E H Eᵀ), codes fixed (STE). */
#include "compress/scales.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/gguf.h"
#include "io/qformat.h"

int bb_scales_type_supported(int type) {
    return type == BB_GGML_Q8_0 || type == BB_GGML_Q4_0 || type == BB_GGML_Q5_0;
}

void bb_scales_opts_default(bb_scales_opts *o) {
    memset(o, 0, sizeof *o);
    o->steps = 100;
    o->lr = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

static bb_status check_shape(int64_t rows, int64_t cols, const void *w, const void *q, const void *d, const void *h) {
    BB_CHECK(rows >= 1 && cols >= BB_SCALES_BLOCK && cols % BB_SCALES_BLOCK == 0, BB_ERR_ARG,
             "scale training: a (%lld, %lld) weight; the columns must be a positive multiple of %d", (long long)rows,
             (long long)cols, BB_SCALES_BLOCK);
    BB_CHECK(w && q && d && h, BB_ERR_ARG, "scale training: weight, codes, scales and H are required");
    return BB_OK;
}

/* e = w − d·q (rows, cols). */
static void residual(int64_t rows, int64_t cols, const float *w, const float *q, const float *d, float *e) {
    int64_t nb = cols / BB_SCALES_BLOCK;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t b = 0; b < nb; b++) {
            float s = d[i * nb + b];
            int64_t o = i * cols + b * BB_SCALES_BLOCK;
            for (int j = 0; j < BB_SCALES_BLOCK; j++) e[o + j] = w[o + j] - s * q[o + j];
        }
}

/* loss = <E, G>, grad_b = −2 Σ_b q·G, with G = E·H given. */
static void reduce(int64_t rows, int64_t cols, const float *e, const float *q, const float *g, double *loss,
                   float *grad) {
    int64_t nb = cols / BB_SCALES_BLOCK;
    double acc = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t o = i * cols + b * BB_SCALES_BLOCK;
            double gq = 0;
            for (int j = 0; j < BB_SCALES_BLOCK; j++) {
                acc += (double)e[o + j] * g[o + j];
                gq += (double)q[o + j] * g[o + j];
            }
            if (grad) grad[i * nb + b] = (float)(-2.0 * gq);
        }
    *loss = acc;
}

/* The fast path with caller-provided scratch e, g (rows, cols). */
static bb_status loss_grad_ws(const bb_linalg_backend *be, int64_t rows, int64_t cols, const float *w, const float *q,
                              const float *d, const float *h, double *loss, float *grad, float *e, float *g) {
    residual(rows, cols, w, q, d, e);
    BB_CALL(be->gemm(BB_OP_N, BB_OP_N, rows, cols, cols, 1.0f, e, cols, h, cols, 0.0f, g, cols));
    reduce(rows, cols, e, q, g, loss, grad);
    return BB_OK;
}

bb_status bb_scales_loss_grad(const bb_linalg_backend *be, int64_t rows, int64_t cols, const float *w, const float *q,
                              const float *d, const float *h, double *loss, float *grad) {
    BB_CALL(check_shape(rows, cols, w, q, d, h));
    if (!be) BB_CALL(bb_linalg_backend_get("cpu", &be));
    float *e = NULL, *g = NULL;
    size_t nb = sizeof(float) * (size_t)(rows * cols);
    bb_status st = bb_malloc((void **)&e, nb, "scale training: residual");
    if (st == BB_OK) st = bb_malloc((void **)&g, nb, "scale training: E H");
    if (st == BB_OK) st = loss_grad_ws(be, rows, cols, w, q, d, h, loss, grad, e, g);
    free(e);
    free(g);
    return st;
}

bb_status bb_scales_loss_grad_ref(int64_t rows, int64_t cols, const float *w, const float *q, const float *d,
                                  const float *h, double *loss, float *grad) {
    BB_CALL(check_shape(rows, cols, w, q, d, h));
    int64_t nb = cols / BB_SCALES_BLOCK;
    double *e = NULL;
    BB_CALL(bb_malloc((void **)&e, sizeof(double) * (size_t)cols, "scale training: residual row"));
    double acc = 0;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < cols; j++)
            e[j] = (double)w[i * cols + j] - (double)d[i * nb + j / BB_SCALES_BLOCK] * q[i * cols + j];
        if (grad)
            for (int64_t b = 0; b < nb; b++) grad[i * nb + b] = 0;
        for (int64_t j = 0; j < cols; j++) {
            double gj = 0; /* (E H)_ij */
            for (int64_t k = 0; k < cols; k++) gj += e[k] * h[k * cols + j];
            acc += e[j] * gj;
            if (grad) grad[i * nb + j / BB_SCALES_BLOCK] += (float)(-2.0 * q[i * cols + j] * gj);
        }
    }
    free(e);
    *loss = acc;
    return BB_OK;
}

bb_status bb_scales_adam(const bb_scales_opts *o, const char *name, int64_t rows, int64_t cols, const float *w,
                         const float *q, float *d, const float *h, double *curve, bb_scales_stats *st) {
    name = name ? name : "layer";
    BB_CALL(check_shape(rows, cols, w, q, d, h));
    BB_CHECK(o && o->steps >= 0 && o->lr > 0 && isfinite(o->lr) && o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 &&
                 o->beta2 < 1 && o->eps > 0,
             BB_ERR_ARG, "%s: scale training needs steps >= 0, lr > 0, betas in [0, 1) and eps > 0", name);
    const bb_linalg_backend *be = o->backend;
    if (!be) BB_CALL(bb_linalg_backend_get("cpu", &be));
    int64_t nb = cols / BB_SCALES_BLOCK, ns = rows * nb;
    size_t nw = sizeof(float) * (size_t)(rows * cols);
    float *e = NULL, *g = NULL, *grad = NULL, *d0 = NULL, *best = NULL;
    double *m = NULL, *v = NULL;
    bb_status s = bb_malloc((void **)&e, nw, "scale training: residual");
    if (s == BB_OK) s = bb_malloc((void **)&g, nw, "scale training: E H");
    if (s == BB_OK) s = bb_malloc((void **)&grad, sizeof(float) * (size_t)ns, "scale training: gradient");
    if (s == BB_OK) s = bb_malloc((void **)&d0, sizeof(float) * (size_t)ns, "scale training: start");
    if (s == BB_OK) s = bb_malloc((void **)&best, sizeof(float) * (size_t)ns, "scale training: best");
    if (s == BB_OK) s = bb_calloc((void **)&m, (size_t)ns, sizeof *m, "scale training: first moment");
    if (s == BB_OK) s = bb_calloc((void **)&v, (size_t)ns, sizeof *v, "scale training: second moment");
    if (s != BB_OK) goto out;
    memcpy(d0, d, sizeof(float) * (size_t)ns);
    memcpy(best, d, sizeof(float) * (size_t)ns);
    int64_t trained = 0;
    for (int64_t b = 0; b < ns; b++) trained += d0[b] != 0;
    double loss = 0, best_loss = 0, b1t = 1, b2t = 1;
    int best_step = 0;
    for (int t = 0; t <= o->steps; t++) {
        BB_CALL_GOTO(s, out, loss_grad_ws(be, rows, cols, w, q, d, h, &loss, grad, e, g));
        if (!isfinite(loss)) {
            s = bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                         "%s: scale training reached a non-finite loss at step %d: lower heal.scale_lr (%g)", name, t,
                         o->lr);
            goto out;
        }
        if (curve) curve[t] = loss;
        if (t == 0 || loss < best_loss) {
            best_loss = loss;
            best_step = t;
            memcpy(best, d, sizeof(float) * (size_t)ns);
        }
        if (t == 0 && st) st->loss_before = loss;
        if (t == o->steps) break;
        b1t *= o->beta1;
        b2t *= o->beta2;
        for (int64_t b = 0; b < ns; b++) {
            if (d0[b] == 0) continue;
            double gr = (double)grad[b] * d0[b]; /* ∂L/∂ρ_b */
            m[b] = o->beta1 * m[b] + (1 - o->beta1) * gr;
            v[b] = o->beta2 * v[b] + (1 - o->beta2) * gr * gr;
            double step = o->lr * (m[b] / (1 - b1t)) / (sqrt(v[b] / (1 - b2t)) + o->eps);
            double rho = (double)d[b] / d0[b] - 1 - step;
            d[b] = (float)(d0[b] * (1 + rho));
        }
    }
    memcpy(d, best, sizeof(float) * (size_t)ns);
    if (st) {
        st->loss_after = best_loss;
        st->best_step = best_step;
        st->scales = trained;
    }
out:
    free(e);
    free(g);
    free(grad);
    free(d0);
    free(best);
    free(m);
    free(v);
    return s;
}

bb_status bb_scales_train_blocks(const bb_scales_opts *o, const char *name, int type, int64_t rows, int64_t cols,
                                 const float *w, const float *h, uint8_t *blocks, size_t row_bytes, float *w_hat,
                                 bb_scales_stats *st) {
    name = name ? name : "layer";
    BB_CHECK(bb_scales_type_supported(type), BB_ERR_ARG,
             "%s: scale training covers q8_0, q4_0 and q5_0 (one fp16 scale per 32 values), not %s", name,
             bb_ggml_type_name(type));
    BB_CALL(check_shape(rows, cols, w, w_hat, blocks, h));
    int64_t nb = cols / BB_SCALES_BLOCK, ns = rows * nb;
    BB_CHECK(row_bytes % (size_t)nb == 0, BB_ERR_ARG, "%s: %zu bytes per row for %lld blocks", name, row_bytes,
             (long long)nb);
    size_t bb = row_bytes / (size_t)nb; /* bytes per block; the fp16 scale d comes first in all three layouts */
    float *q = NULL, *d = NULL, *keep = NULL;
    uint8_t *orig = NULL;
    size_t nw = sizeof(float) * (size_t)(rows * cols);
    bb_status s = bb_malloc((void **)&q, nw, "scale training: codes");
    if (s == BB_OK) s = bb_malloc((void **)&d, sizeof(float) * (size_t)ns, "scale training: scales");
    if (s == BB_OK) s = bb_malloc((void **)&keep, nw, "scale training: decoded start");
    if (s == BB_OK) s = bb_malloc((void **)&orig, row_bytes * (size_t)rows, "scale training: blocks at the start");
    if (s != BB_OK) goto out;
    memcpy(orig, blocks, row_bytes * (size_t)rows);
    memcpy(keep, w_hat, nw);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t b = 0; b < nb; b++) {
            uint16_t hv;
            memcpy(&hv, blocks + (size_t)i * row_bytes + (size_t)b * bb, sizeof hv);
            float dv = bb_f16_to_f32(hv);
            d[i * nb + b] = isfinite(dv) ? dv : 0;
            for (int j = 0; j < BB_SCALES_BLOCK; j++) {
                int64_t e = i * cols + b * BB_SCALES_BLOCK + j;
                /* ŵ = d·q is exact in f32 (11-bit d times a code below 2^8), so the division recovers q */
                q[e] = dv != 0 && isfinite(dv) ? rintf(w_hat[e] / dv) : 0;
            }
        }
    bb_scales_stats ss;
    BB_CALL_GOTO(s, out, bb_scales_adam(o, name, rows, cols, w, q, d, h, NULL, &ss));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t b = 0; b < nb; b++) {
            uint16_t hv = bb_f32_to_f16(d[i * nb + b]);
            memcpy(blocks + (size_t)i * row_bytes + (size_t)b * bb, &hv, sizeof hv);
        }
    for (int64_t i = 0; i < rows && s == BB_OK; i++)
        s = bb_qformat_decode_row(type, blocks + (size_t)i * row_bytes, cols, w_hat + i * cols);
    double after = 0;
    const bb_linalg_backend *be = o->backend;
    if (s == BB_OK && !be) s = bb_linalg_backend_get("cpu", &be);
    /* the loss of what the file now stores: Ŵ(d) with d rounded to fp16 */
    for (int64_t e = 0; s == BB_OK && e < ns; e++) d[e] = bb_f16_to_f32(bb_f32_to_f16(d[e]));
    if (s == BB_OK) s = bb_scales_loss_grad(be, rows, cols, w, q, d, h, &after, NULL);
    if (s != BB_OK || !(after < ss.loss_before)) {
        memcpy(blocks, orig, row_bytes * (size_t)rows);
        memcpy(w_hat, keep, nw);
        after = ss.loss_before;
        ss.best_step = 0;
    }
    ss.loss_after = after;
    if (st) *st = ss;
out:
    free(q);
    free(d);
    free(keep);
    free(orig);
    return s;
}
