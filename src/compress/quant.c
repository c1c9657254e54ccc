/* quant.c — the quantizer registry, options, results, round-to-nearest and the layer error. */

#include "compress/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/usage.h"
#include "core/dtype.h"
#include "core/events.h"
#include "core/log.h"
#include "core/parallel.h"
#include "io/qformat.h"

void bb_quant_opts_default(bb_quant_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = BB_GGML_Q4_0;
    o->fallback = BB_GGML_F16;
    o->importance = 1;
    o->damp = 0.01;
    o->damp_max = 10;
    o->block_size = 128;
    o->act_order = 0;
    o->backend = NULL;
    o->search = BB_QUANT_SEARCH_AUTO;
}

int bb_quant_search_for(const bb_quant_opts *o, int weighted) {
    if (o->search == BB_QUANT_SEARCH_FAST || o->search == BB_QUANT_SEARCH_FULL) return o->search;
    return weighted ? BB_QUANT_SEARCH_FULL : BB_QUANT_SEARCH_FAST;
}

bb_status bb_quant_opts_from_config(const bb_config_quant *c, bb_quant_opts *o) {
    BB_CHECK(c != NULL && o != NULL, BB_ERR_ARG, "bb_quant_opts_from_config: NULL argument");
    if (strcmp(c->type, "auto") != 0) BB_CALL(bb_qformat_parse_name(c->type, &o->type));
    BB_CALL(bb_qformat_parse_name(c->fallback, &o->fallback));
    o->importance = c->importance;
    o->damp = c->damp;
    o->damp_max = c->damp_max;
    BB_CHECK(o->damp_max >= o->damp, BB_ERR_CONFIG,
             "quant.damp_max %g is below quant.damp %g; the damping can only be raised: set damp_max >= damp",
             o->damp_max, o->damp);
    o->search = !strcmp(c->search, "fast") ? BB_QUANT_SEARCH_FAST
                : !strcmp(c->search, "full") ? BB_QUANT_SEARCH_FULL
                                             : BB_QUANT_SEARCH_AUTO;
    o->block_size = c->block_size;
    o->act_order = c->act_order;
    return BB_OK;
}

bb_status bb_quant_result_create(int type, int64_t rows, int64_t cols, bb_quant_result **out) {
    BB_CHECK(out != NULL, BB_ERR_ARG, "bb_quant_result_create: NULL output");
    *out = NULL;
    BB_CHECK(rows >= 1 && cols >= 1, BB_ERR_ARG, "quantized matrix: shape (%lld, %lld) must be positive",
             (long long)rows, (long long)cols);
    size_t row_bytes, total, nw;
    BB_CALL(bb_qformat_row_bytes(type, cols, &row_bytes));
    BB_CHECK(!bb_mul_overflow(row_bytes, (size_t)rows, &total) && !bb_mul_overflow((size_t)rows, (size_t)cols, &nw),
             BB_ERR_ARG, "quantized matrix (%lld, %lld) overflows size_t", (long long)rows, (long long)cols);
    bb_quant_result *r;
    BB_CALL(bb_calloc((void **)&r, 1, sizeof *r, "quantization result"));
    r->type = type;
    r->rows = rows;
    r->cols = cols;
    r->row_bytes = row_bytes;
    bb_status st;
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&r->blocks, total, "quantized blocks"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&r->w_hat, nw * sizeof(float), "dequantized weights"));
    *out = r;
    return BB_OK;
fail:
    bb_quant_result_destroy(&r);
    return st;
}

void bb_quant_result_destroy(bb_quant_result **r) {
    if (!r || !*r) return;
    free((*r)->blocks);
    free((*r)->w_hat);
    free(*r);
    *r = NULL;
}

static const bb_quantizer quantizers[] = {
    {"rtn", bb_quant_rtn},
    {"gptq", bb_quant_gptq},
};

bb_status bb_quant_get(const char *name, const bb_quantizer **out) {
    BB_CHECK(name != NULL && out != NULL, BB_ERR_ARG, "bb_quant_get: NULL argument");
    for (size_t i = 0; i < sizeof quantizers / sizeof quantizers[0]; i++)
        if (strcmp(quantizers[i].name, name) == 0) {
            *out = &quantizers[i];
            return BB_OK;
        }
    return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "unknown quantizer \"%s\"; valid: rtn, gptq", name);
}

/* RTN's per-channel weights: the caller's vector, else diag(H) when asked for, else none. */
static bb_status rtn_importance(const bb_quant_opts *o, const bb_quant_input *in, float **imp) {
    *imp = NULL;
    if (in->importance || !o->importance || !in->h) return BB_OK;
    BB_CALL(bb_malloc((void **)imp, (size_t)in->cols * sizeof(float), "importance (diag H)"));
    for (int64_t j = 0; j < in->cols; j++) (*imp)[j] = in->h[j * in->cols + j];
    return BB_OK;
}

bb_status bb_quant_check_input(const bb_quant_input *in, int need_h) {
    BB_CHECK(in != NULL && in->w != NULL, BB_ERR_ARG, "quantizer: NULL input or weights");
    const char *name = in->name ? in->name : "(unnamed)";
    BB_CHECK(in->rows >= 1 && in->cols >= 1 && in->cols <= INT32_MAX, BB_ERR_ARG,
             "%s: shape (%lld, %lld) must be positive with at most 2^31-1 columns", name, (long long)in->rows,
             (long long)in->cols);
    BB_CHECK(!need_h || in->h != NULL, BB_ERR_ARG, "%s: GPTQ needs the Gram H = X^T X of the layer's input", name);
    const int64_t n = in->cols;
    for (int64_t i = 0; i < in->rows * n; i++)
        BB_CHECK(isfinite(in->w[i]), BB_ERR_NUMERIC, "%s: weight (%lld, %lld) is %g; quantization needs finite weights",
                 name, (long long)(i / n), (long long)(i % n), (double)in->w[i]);
    if (in->h)
        for (int64_t i = 0; i < n * n; i++)
            BB_CHECK(isfinite(in->h[i]), BB_ERR_NUMERIC,
                     "%s: Gram H (%lld, %lld) is %g; check the calibration statistics", name, (long long)(i / n),
                     (long long)(i % n), (double)in->h[i]);
    if (in->importance)
        for (int64_t j = 0; j < n; j++)
            BB_CHECK(isfinite(in->importance[j]) && in->importance[j] >= 0, BB_ERR_NUMERIC,
                     "%s: importance of input %lld is %g; it must be finite and >= 0", name, (long long)j,
                     (double)in->importance[j]);
    return BB_OK;
}

bb_status bb_quant_stored_type(const bb_quant_opts *o, const char *name, int64_t cols, int *type) {
    int t = bb_qformat_fallback(o->type, cols);
    BB_CHECK(t >= 0, BB_ERR_ARG, "%s: ggml type %d (%s) has no birdbone encoder", name ? name : "(unnamed)", o->type,
             bb_ggml_type_name(o->type));
    /* No block fits: the configured float type (quant.fallback) rather than qformat's F16. */
    if (t == BB_GGML_F16 && o->type != BB_GGML_F16) {
        const bb_qformat_traits *f = bb_qformat_info(o->fallback);
        BB_CHECK(f != NULL && f->blck == 1, BB_ERR_ARG, "%s: fallback type %d (%s) is not a float type",
                 name ? name : "(unnamed)", o->fallback, bb_ggml_type_name(o->fallback));
        t = o->fallback;
    }
    if (t != o->type)
        bb_warn("%s: rows of %lld elements fit no %s block; stored as %s", name ? name : "(unnamed)", (long long)cols,
                bb_ggml_type_name(o->type), bb_ggml_type_name(t));
    *type = t;
    return BB_OK;
}

/* Rows [r0, r1) of an RTN job: inputs are checked before, so the unchecked encoder is safe here. */
typedef struct {
    const bb_quant_input *in;
    const float *imp;
    bb_qformat_encode_fn enc;
    bb_quant_result *r;
    int64_t r0, r1;
} rtn_job;

static void *rtn_rows(void *arg) {
    const rtn_job *jb = arg;
    const bb_qformat_encode_fn enc = jb->enc;
    const bb_qformat_decode_fn dec = bb_qformat_info(jb->r->type)->decode_ref;
    const int64_t n = jb->in->cols;
    for (int64_t i = jb->r0; i < jb->r1; i++) {
        uint8_t *blk = jb->r->blocks + (size_t)i * jb->r->row_bytes;
        enc(jb->in->w + i * n, jb->imp, (size_t)n, blk);
        dec(blk, (size_t)n, jb->r->w_hat + i * n);
    }
    return NULL;
}

bb_status bb_quant_rtn(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out) {
    BB_CHECK(o != NULL && out != NULL, BB_ERR_ARG, "bb_quant_rtn: NULL argument");
    *out = NULL;
    BB_CALL(bb_quant_check_input(in, 0));
    int type;
    BB_CALL(bb_quant_stored_type(o, in->name, in->cols, &type));
    float *imp = NULL;
    bb_quant_result *r = NULL;
    bb_status st = BB_OK;
    bb_event_begin("quant.rtn");
    BB_CALL_GOTO(st, done, rtn_importance(o, in, &imp));
    BB_CALL_GOTO(st, done, bb_quant_result_create(type, in->rows, in->cols, &r));
    r->fell_back = type != o->type;
    /* Rows are independent: contiguous row ranges in threads give the same bytes for any count. */
    int nt = bb_parallel_threads(o->threads, in->rows, 1);
    rtn_job jobs[BB_PARALLEL_MAX];
    const float *use = in->importance ? in->importance : imp;
    const bb_qformat_encode_fn enc = bb_quant_encoder(type, bb_quant_search_for(o, use != NULL));
    for (int t = 0; t < nt; t++) jobs[t] = (rtn_job){in, use, enc, r, in->rows * t / nt, in->rows * (t + 1) / nt};
    bb_parallel_run(rtn_rows, jobs, sizeof jobs[0], nt);
done:
    bb_event_end("quant.rtn", 0, (double)in->rows * (double)in->cols * sizeof(float));
    free(imp);
    if (st != BB_OK) bb_quant_result_destroy(&r);
    *out = r;
    return st;
}

bb_status bb_quant_layer_error(const bb_linalg_backend *be, const float *w, const float *w_hat, const float *h,
                               int64_t rows, int64_t cols, double *err) {
    BB_CHECK(w != NULL && w_hat != NULL && h != NULL && err != NULL, BB_ERR_ARG, "bb_quant_layer_error: NULL argument");
    BB_CHECK(rows >= 1 && cols >= 1, BB_ERR_ARG, "bb_quant_layer_error: shape (%lld, %lld) must be positive",
             (long long)rows, (long long)cols);
    /* tr(E H E^T): the usage helper's row blocks, H held on a device backend, sums over the threads */
    return bb_usage_recon_error("layer error", be, rows, cols, w, w_hat, h, err);
}
