/* quant.c — the quantizer registry, options, results, round-to-nearest (with vectorized symmetric encoders), and the
 * layer error. */

/* The fast encoders must repeat qformat's scale search operation for operation (bit-identical
 * blocks); a fused multiply-add would change the sums' last bits. GCC ignores the STDC pragma. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "compress/quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/events.h"
#include "core/log.h"
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
}

bb_status bb_quant_opts_from_config(const bb_config_quant *c, bb_quant_opts *o) {
    BB_CHECK(c != NULL && o != NULL, BB_ERR_ARG, "bb_quant_opts_from_config: NULL argument");
    if (strcmp(c->type, "auto") != 0) BB_CALL(bb_qformat_parse_name(c->type, &o->type));
    BB_CALL(bb_qformat_parse_name(c->fallback, &o->fallback));
    o->importance = c->importance;
    o->damp = c->damp;
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

/* ---- vectorized symmetric encoders (Q8_0, Q4_0, Q5_0) ----
 *
 * bb_qformat_fit_symmetric tries 66 candidate scales (two grid ends x 33 stretches), each a pass over
 * the block's 32 elements. Here the candidates run in the lanes of a vector and the elements in
 * order, so every lane computes exactly the scalar expression sequence of the reference (same
 * products, same left-to-right sums) and the winner, the refinement and the codes are the
 * reference's: the blocks are identical bytes, 8-10x faster on AVX2. */

#define SEARCH_STEP 0.0125 /* qformat.c's candidate grid: 1 + STEP k, k = -DOWN..UP */
#define SEARCH_DOWN 24
#define SEARCH_UP 8
#define REFINE_ITERS 4
#define NCAND (SEARCH_DOWN + SEARCH_UP + 1)
#define VL 8 /* two independent AVX2 chains per operation (the sums are latency-bound), one AVX-512 */
#define NGROUP ((NCAND + VL - 1) / VL)

typedef double vdbl __attribute__((vector_size(VL * sizeof(double))));
typedef long long vlong __attribute__((vector_size(VL * sizeof(long long))));
typedef int vint __attribute__((vector_size(VL * sizeof(int))));

/* mask ? a : b lane by lane (a macro: a vector-valued function would change the ABI between clones). */
#define VSELECT(mask, a, b) ((vdbl)(((vlong)(a) & (mask)) | ((vlong)(b) & ~(mask))))

#if defined(__x86_64__) && defined(__GNUC__) /* gcc and clang */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static double
fit_symmetric_fast(const float *x, const float *w, int n, int nmax) {
    int uni = 1;
    if (w)
        for (int i = 0; i < n; i++)
            if (w[i] > 0) {
                uni = 0;
                break;
            }
    const int lo = -nmax, hi = nmax - 1;
    double amax = 0, m = 0;
    for (int i = 0; i < n; i++) {
        if (fabs((double)x[i]) > amax) {
            amax = fabs((double)x[i]);
            m = x[i];
        }
    }
    if (amax == 0) return 0;
    double wd[BB_QK], wx[BB_QK];
    for (int i = 0; i < n; i++) {
        wd[i] = uni ? 1.0 : w[i];
        wx[i] = wd[i] * x[i];
    }
    const vdbl vzero = {0}, vlo = vzero + lo, vhi = vzero + hi, vspan = vzero + (hi - lo + 1);
    double best_d = 0, best_gain = -1;
    for (int side = 0; side < 2; side++) {
        const double target = side ? hi : lo;
        /* All groups of a side advance together: each lane's sums stay in element order, and the
         * groups give the adder independent chains (one chain alone is bound by its latency). */
        vdbl is[NGROUP], sxq[NGROUP], sqq[NGROUP];
        for (int g = 0; g < NGROUP; g++) {
            for (int l = 0; l < VL; l++) {
                int k = -SEARCH_DOWN + g * VL + l;
                is[g][l] = target * (1.0 + SEARCH_STEP * (k <= SEARCH_UP ? k : SEARCH_UP)) / m;
            }
            sxq[g] = sqq[g] = (vdbl){0};
        }
        for (int i = 0; i < n; i++) {
            const double xi = x[i];
#pragma GCC unroll 8
            for (int g = 0; g < NGROUP; g++) {
                vdbl v = xi * is[g];
                /* bb_qformat_nearest: lo + trunc(v - lo + 0.5) inside (lo, hi), clamped outside. */
                vdbl t = v - vlo + 0.5;
                /* Lanes outside (lo, hi) (NaN and Inf from a subnormal block maximum included) are
                 * replaced below; bounding t first keeps their conversion to int defined. */
                t = VSELECT(t > vzero, t, vzero);
                t = VSELECT(t < vspan, t, vspan);
                vdbl q = vlo + __builtin_convertvector(__builtin_convertvector(t, vint), vdbl);
                q = VSELECT(v > vlo, q, vlo);
                q = VSELECT(v >= vhi, vhi, q);
                sxq[g] += wx[i] * q;
                sqq[g] += wd[i] * q * q;
            }
        }
        for (int g = 0; g < NGROUP; g++)
            for (int l = 0; l < VL && -SEARCH_DOWN + g * VL + l <= SEARCH_UP; l++)
                if (sqq[g][l] > 0 && sxq[g][l] * sxq[g][l] / sqq[g][l] > best_gain) {
                    best_gain = sxq[g][l] * sxq[g][l] / sqq[g][l];
                    best_d = sxq[g][l] / sqq[g][l];
                }
    }
    for (int it = 0; it < REFINE_ITERS && best_d != 0; it++) {
        double sxq = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            int q = bb_qformat_nearest(x[i] / best_d, lo, hi);
            sxq += wd[i] * x[i] * q;
            sqq += wd[i] * q * q;
        }
        if (!(sqq > 0) || sxq / sqq == best_d) break;
        best_d = sxq / sqq;
    }
    return best_d;
}

/* One 32-element symmetric block as qformat's sym_block: fp16 scale, codes against the stored scale. */
static void sym_block_fast(const float *x, const float *w, int nmax, uint16_t *d16, int *code) {
    *d16 = bb_qformat_f16_sat(fit_symmetric_fast(x, w, BB_QK, nmax));
    const float d = bb_f16_to_f32(*d16);
    for (int j = 0; j < BB_QK; j++)
        code[j] = (d != 0 ? bb_qformat_nearest((double)x[j] / d, -nmax, nmax - 1) : 0) + nmax;
}

static void encode_q8_0_fast(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK; ib++) {
        bb_block_q8_0 blk;
        int code[BB_QK];
        sym_block_fast(x + ib * BB_QK, importance ? importance + ib * BB_QK : NULL, 128, &blk.d, code);
        for (int j = 0; j < BB_QK; j++) blk.qs[j] = (int8_t)(code[j] - 128);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

static void encode_q4_0_fast(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK; ib++) {
        bb_block_q4_0 blk;
        int code[BB_QK];
        sym_block_fast(x + ib * BB_QK, importance ? importance + ib * BB_QK : NULL, 8, &blk.d, code);
        for (int j = 0; j < BB_QK / 2; j++) blk.qs[j] = (uint8_t)(code[j] | code[j + BB_QK / 2] << 4);
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

static void encode_q5_0_fast(const float *x, const float *importance, size_t n, void *dst) {
    for (size_t ib = 0; ib < n / BB_QK; ib++) {
        bb_block_q5_0 blk;
        int code[BB_QK];
        sym_block_fast(x + ib * BB_QK, importance ? importance + ib * BB_QK : NULL, 16, &blk.d, code);
        for (int j = 0; j < BB_QK / 2; j++) blk.qs[j] = (uint8_t)((code[j] & 0xF) | (code[j + BB_QK / 2] & 0xF) << 4);
        memset(blk.qh, 0, sizeof blk.qh);
        for (int j = 0; j < BB_QK; j++) blk.qh[j / 8] |= (uint8_t)(((code[j] >> 4) & 1) << (j % 8));
        memcpy((uint8_t *)dst + ib * sizeof blk, &blk, sizeof blk);
    }
}

bb_qformat_encode_fn bb_quant_encoder(int type) {
    switch (type) {
    case BB_GGML_Q8_0: return encode_q8_0_fast;
    case BB_GGML_Q4_0: return encode_q4_0_fast;
    case BB_GGML_Q5_0: return encode_q5_0_fast;
    default: return bb_qformat_info(type) ? bb_qformat_info(type)->encode_ref : NULL;
    }
}

bb_status bb_quant_encode_row(int type, const float *x, int64_t n, const float *importance, void *dst) {
    size_t bytes;
    BB_CALL(bb_qformat_row_bytes(type, n, &bytes));
    BB_CHECK(x != NULL && dst != NULL, BB_ERR_ARG, "bb_quant_encode_row: NULL %s", x ? "destination" : "input row");
    BB_CALL(bb_qformat_check_finite(x, (size_t)n, "row to quantize"));
    if (importance) {
        BB_CALL(bb_qformat_check_finite(importance, (size_t)n, "importance"));
        for (int64_t i = 0; i < n; i++)
            BB_CHECK(importance[i] >= 0, BB_ERR_NUMERIC, "importance: element %lld is %g; weights must be >= 0",
                     (long long)i, (double)importance[i]);
    }
    bb_quant_encoder(type)(x, importance, (size_t)n, dst);
    return BB_OK;
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
    bb_quant_result *r;
    int64_t r0, r1;
} rtn_job;

static void *rtn_rows(void *arg) {
    const rtn_job *jb = arg;
    const bb_qformat_encode_fn enc = bb_quant_encoder(jb->r->type);
    const bb_qformat_decode_fn dec = bb_qformat_info(jb->r->type)->decode_ref;
    const int64_t n = jb->in->cols;
    for (int64_t i = jb->r0; i < jb->r1; i++) {
        uint8_t *blk = jb->r->blocks + (size_t)i * jb->r->row_bytes;
        enc(jb->in->w + i * n, jb->imp, (size_t)n, blk);
        dec(blk, (size_t)n, jb->r->w_hat + i * n);
    }
    return NULL;
}

#define RTN_MAX_THREADS 64

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
    int nt = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    nt = nt < 1 ? 1 : nt > RTN_MAX_THREADS ? RTN_MAX_THREADS : nt;
    if (nt > in->rows) nt = (int)in->rows;
    rtn_job jobs[RTN_MAX_THREADS];
    pthread_t tid[RTN_MAX_THREADS];
    int running[RTN_MAX_THREADS] = {0};
    for (int t = 0; t < nt; t++)
        jobs[t] = (rtn_job){in, in->importance ? in->importance : imp, r, in->rows * t / nt, in->rows * (t + 1) / nt};
    for (int t = 1; t < nt; t++) running[t] = pthread_create(&tid[t], NULL, rtn_rows, &jobs[t]) == 0;
    for (int t = 0; t < nt; t++)
        if (!running[t]) rtn_rows(&jobs[t]);
    for (int t = 1; t < nt; t++)
        if (running[t]) pthread_join(tid[t], NULL);
done:
    bb_event_end("quant.rtn", 0, (double)in->rows * (double)in->cols * sizeof(float));
    free(imp);
    if (st != BB_OK) bb_quant_result_destroy(&r);
    *out = r;
    return st;
}

/* Row blocks of this many rows bound the scratch of the layer error to ROWS x cols floats. */
#define ERR_ROWS 64

bb_status bb_quant_layer_error(const bb_linalg_backend *be, const float *w, const float *w_hat, const float *h,
                               int64_t rows, int64_t cols, double *err) {
    BB_CHECK(w != NULL && w_hat != NULL && h != NULL && err != NULL, BB_ERR_ARG, "bb_quant_layer_error: NULL argument");
    BB_CHECK(rows >= 1 && cols >= 1, BB_ERR_ARG, "bb_quant_layer_error: shape (%lld, %lld) must be positive",
             (long long)rows, (long long)cols);
    if (!be) BB_CALL(bb_linalg_backend_get("cpu", &be));
    int64_t nr = rows < ERR_ROWS ? rows : ERR_ROWS;
    float *e = NULL, *eh = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&e, (size_t)(nr * cols) * sizeof(float), "layer error scratch"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&eh, (size_t)(nr * cols) * sizeof(float), "layer error scratch"));
    double sum = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += nr) {
        int64_t m = rows - r0 < nr ? rows - r0 : nr;
        for (int64_t i = 0; i < m * cols; i++) e[i] = w[r0 * cols + i] - w_hat[r0 * cols + i];
        BB_CALL_GOTO(st, done, be->gemm(BB_OP_N, BB_OP_N, m, cols, cols, 1.0f, e, cols, h, cols, 0.0f, eh, cols));
        for (int64_t i = 0; i < m * cols; i++) sum += (double)e[i] * eh[i];
    }
    *err = sum;
done:
    free(e);
    free(eh);
    return st;
}
