/* calib.c — the calibration statistics collector: Gram matrices (ssyrk/dsyrk) and per-channel sums of every linear
 * input, fed by the forward hook. */
#include "model/calib.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#ifdef BB_HAVE_CUDA
#include "cuda/check.h"
#include "cuda/forward_cuda.h"
#include "cuda/linalg_cuda.h"
#endif
#include "core/rng.h"
#include "core/sha256.h"

/* Rows converted to double per dsyrk call in f64 mode: enough depth (k) that
 * dsyrk is compute-bound on the (in, in) output, small enough to stay a block
 * (256 x 11008 doubles = 22 MiB for Llama-2-7B's ffn_down), never the whole
 * activation tensor. */
#define F64_BLOCK_ROWS 256
/* Rows per ssyrk call: keeps k within the int of the BLAS interface. */
#define F32_MAX_ROWS (1 << 20)
/* Sub-arrays of the single allocation start on cache-line boundaries. */
#define ALIGN 64

static const char *const input_names[BB_CALIB_INPUT_COUNT] = {
    [BB_CALIB_ATTN_IN] = "attn_in",
    [BB_CALIB_ATTN_OUT_IN] = "attn_out_in",
    [BB_CALIB_FFN_IN] = "ffn_in",
    [BB_CALIB_FFN_DOWN_IN] = "ffn_down_in",
};

static const bb_calib_input input_of_kind[BB_LIN_COUNT] = {
    [BB_LIN_Q] = BB_CALIB_ATTN_IN,        [BB_LIN_K] = BB_CALIB_ATTN_IN,   [BB_LIN_V] = BB_CALIB_ATTN_IN,
    [BB_LIN_O] = BB_CALIB_ATTN_OUT_IN,    [BB_LIN_GATE] = BB_CALIB_FFN_IN, [BB_LIN_UP] = BB_CALIB_FFN_IN,
    [BB_LIN_DOWN] = BB_CALIB_FFN_DOWN_IN,
};

/* The kind that accumulates a shared input: the first one the forward pass
 * calls. The others only check that they were handed the same rows. */
static const bb_linear_kind owner_kind[BB_CALIB_INPUT_COUNT] = {
    [BB_CALIB_ATTN_IN] = BB_LIN_Q,
    [BB_CALIB_ATTN_OUT_IN] = BB_LIN_O,
    [BB_CALIB_FFN_IN] = BB_LIN_GATE,
    [BB_CALIB_FFN_DOWN_IN] = BB_LIN_DOWN,
};

static const char *const precision_names[BB_CALIB_PRECISION_COUNT] = {[BB_CALIB_F32] = "f32", [BB_CALIB_F64] = "f64"};

typedef struct {
    bb_calib_stat pub; /* what bb_calib_stats hands out */
    float *g32;        /* (in, in) upper triangle current, lower filled when finished */
    double *g64;
    double *sumsq, *sumabs;         /* (in) */
    int64_t *active;                /* (in) */
    double *norm, *mean_abs, *freq; /* (in) finished values */
    const float *last_x;            /* rows the owner kind accumulated last, for the sharing check */
    int64_t last_rows;
    int dirty; /* accumulated since last finished */
    float *dg32; /* device Gram (upper triangle) accumulated from the GPU forward's inputs, added at finish */
} calib_slot;

struct bb_calib {
    const bb_model *m;
    bb_calib_opts o;
    int n_layers;      /* o.layer_end - o.layer_begin */
    calib_slot *slots; /* [n_layers][BB_CALIB_INPUT_COUNT] */
    void *block;       /* the one allocation behind every array */
    double *conv;      /* (F64_BLOCK_ROWS, max in) f64 staging, f64 mode only */
    int loaded;        /* filled from a file: read-only */
    bb_forward *fwd;   /* the pass attached (bb_calib_attach): its GPU path hands device inputs */
    struct bb_cuda_ctx *gctx; /* device Grams: cuBLAS handles */
};

const char *bb_calib_input_name(bb_calib_input in) {
    return (unsigned)in < BB_CALIB_INPUT_COUNT ? input_names[in] : "?";
}

bb_calib_input bb_calib_input_of(bb_linear_kind k) {
    return (unsigned)k < BB_LIN_COUNT ? input_of_kind[k] : BB_CALIB_INPUT_COUNT;
}

int64_t bb_calib_in_features(const bb_model_config *c, bb_calib_input in) {
    switch (in) {
    case BB_CALIB_ATTN_IN:
    case BB_CALIB_FFN_IN: return c->dim;
    case BB_CALIB_ATTN_OUT_IN: return (int64_t)c->n_heads * c->head_dim;
    case BB_CALIB_FFN_DOWN_IN: return c->hidden_dim;
    default: return 0;
    }
}

const char *bb_calib_precision_name(bb_calib_precision p) {
    return (unsigned)p < BB_CALIB_PRECISION_COUNT ? precision_names[p] : "?";
}

bb_status bb_calib_parse_precision(const char *s, bb_calib_precision *out) {
    for (int p = 0; p < BB_CALIB_PRECISION_COUNT; p++)
        if (s && !strcmp(s, precision_names[p])) {
            *out = (bb_calib_precision)p;
            return BB_OK;
        }
    return bb_error(BB_ERR_CONFIG, __FILE__, __LINE__, "calib.gram_precision \"%s\" is not one of f32|f64",
                    s ? s : "(null)");
}

void bb_calib_opts_default(bb_calib_opts *o) {
    memset(o, 0, sizeof *o);
    o->precision = BB_CALIB_F32;
    o->eps = 1e-3;
}

bb_status bb_calib_opts_from_config(const bb_config *cfg, bb_calib_opts *o) {
    bb_calib_opts_default(o);
    BB_CALL(bb_calib_parse_precision(cfg->calib.gram_precision, &o->precision));
    o->eps = cfg->usage.eps;
    return BB_OK;
}

/* ---- layout of the single allocation ------------------------------------------- */

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

static bb_status resolve_opts(const bb_model_config *c, const bb_calib_opts *in, bb_calib_opts *o) {
    *o = *in;
    if (o->layer_end == 0) o->layer_end = c->n_layers;
    BB_CHECK(o->layer_begin >= 0 && o->layer_begin < o->layer_end && o->layer_end <= c->n_layers, BB_ERR_ARG,
             "calibration layer range [%d, %d) is not within the model's %d layers", in->layer_begin, in->layer_end,
             c->n_layers);
    BB_CHECK((unsigned)o->precision < BB_CALIB_PRECISION_COUNT, BB_ERR_ARG, "unknown Gram precision %d",
             (int)o->precision);
    BB_CHECK(isfinite(o->eps) && o->eps >= 0, BB_ERR_ARG, "activation threshold usage.eps = %g must be finite and >= 0",
             o->eps);
    for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
        int64_t n = bb_calib_in_features(c, (bb_calib_input)i);
        BB_CHECK(n > 0 && n <= INT_MAX, BB_ERR_ARG, "%s width %lld does not fit the BLAS interface",
                 bb_calib_input_name((bb_calib_input)i), (long long)n);
    }
    return BB_OK;
}

static int64_t max_in(const bb_model_config *c) {
    int64_t m = 0;
    for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
        int64_t n = bb_calib_in_features(c, (bb_calib_input)i);
        if (n > m) m = n;
    }
    return m;
}

/* Bytes of one slot's arrays: Gram, 6 per-channel arrays of 8 bytes. */
static int slot_bytes(int64_t in, bb_calib_precision p, size_t *out) {
    size_t g;
    if (bb_mul_overflow((size_t)in * (size_t)in, p == BB_CALIB_F64 ? 8 : 4, &g)) return -1;
    *out = align_up(g) + 6 * align_up((size_t)in * 8);
    return 0;
}

static bb_status layout_bytes(const bb_model_config *c, const bb_calib_opts *o, size_t *bytes) {
    int n_layers = o->layer_end - o->layer_begin;
    size_t total = align_up(sizeof(calib_slot) * (size_t)n_layers * BB_CALIB_INPUT_COUNT), per_layer = 0;
    for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
        size_t s;
        BB_CHECK(!slot_bytes(bb_calib_in_features(c, (bb_calib_input)i), o->precision, &s) && per_layer + s >= s,
                 BB_ERR_OOM, "calibration statistics: size overflows");
        per_layer += s;
    }
    size_t layers;
    BB_CHECK(!bb_mul_overflow(per_layer, (size_t)n_layers, &layers) && total + layers >= layers, BB_ERR_OOM,
             "calibration statistics: size overflows");
    total += layers;
    if (o->precision == BB_CALIB_F64) total += align_up((size_t)F64_BLOCK_ROWS * (size_t)max_in(c) * 8);
    *bytes = total;
    return BB_OK;
}

bb_status bb_calib_memory_bytes(const bb_model_config *c, const bb_calib_opts *o, size_t *bytes) {
    bb_calib_opts r;
    BB_CALL(resolve_opts(c, o, &r));
    BB_CALL(layout_bytes(c, &r, bytes));
    return BB_OK;
}

static void *carve(char **p, size_t n) {
    void *r = *p;
    *p += align_up(n);
    return r;
}

bb_status bb_calib_create(const bb_model *m, const bb_calib_opts *o, bb_calib **out) {
    *out = NULL;
    bb_calib_opts r;
    BB_CALL(resolve_opts(&m->cfg, o, &r));
    size_t bytes;
    BB_CALL(layout_bytes(&m->cfg, &r, &bytes));
    bb_info("calibration statistics: layers [%d, %d), %s Grams, %.1f MiB", r.layer_begin, r.layer_end,
            precision_names[r.precision], (double)bytes / (1024.0 * 1024.0));
    bb_calib *c;
    BB_CALLOC(c, 1, "calibration collector");
    c->m = m;
    c->o = r;
    c->n_layers = r.layer_end - r.layer_begin;
    char what[256];
    snprintf(what, sizeof what,
             "calibration statistics of layers [%d, %d) (%d Gram matrices in %s; give each rank fewer layers)",
             r.layer_begin, r.layer_end, c->n_layers * BB_CALIB_INPUT_COUNT, precision_names[r.precision]);
    bb_status st = bb_calloc(&c->block, 1, bytes, what);
    if (st != BB_OK) {
        free(c);
        return bb_trace(st, __FILE__, __LINE__, "bb_calloc(statistics)");
    }
    char *p = c->block;
    c->slots = carve(&p, sizeof(calib_slot) * (size_t)c->n_layers * BB_CALIB_INPUT_COUNT);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            calib_slot *s = &c->slots[l * BB_CALIB_INPUT_COUNT + i];
            int64_t in = bb_calib_in_features(&m->cfg, (bb_calib_input)i);
            size_t gb = (size_t)in * (size_t)in * (r.precision == BB_CALIB_F64 ? 8 : 4);
            if (r.precision == BB_CALIB_F64)
                s->g64 = carve(&p, gb);
            else
                s->g32 = carve(&p, gb);
            s->sumsq = carve(&p, (size_t)in * 8);
            s->sumabs = carve(&p, (size_t)in * 8);
            s->active = carve(&p, (size_t)in * 8);
            s->norm = carve(&p, (size_t)in * 8);
            s->mean_abs = carve(&p, (size_t)in * 8);
            s->freq = carve(&p, (size_t)in * 8);
            s->pub.layer = r.layer_begin + l;
            s->pub.input = (bb_calib_input)i;
            s->pub.in_features = in;
            s->pub.precision = r.precision;
            s->pub.gram = s->g32;
            s->pub.gram_f64 = s->g64;
            s->pub.norm = s->norm;
            s->pub.mean_abs = s->mean_abs;
            s->pub.freq = s->freq;
        }
    if (r.precision == BB_CALIB_F64) c->conv = carve(&p, (size_t)F64_BLOCK_ROWS * (size_t)max_in(&m->cfg) * 8);
    *out = c;
    return BB_OK;
}

void bb_calib_destroy(bb_calib **c) {
    if (!c || !*c) return;
#ifdef BB_HAVE_CUDA
    for (int i = 0; (*c)->slots && i < (*c)->n_layers * BB_CALIB_INPUT_COUNT; i++) bb_cuda_free((*c)->slots[i].dg32);
    bb_cuda_ctx_destroy(&(*c)->gctx);
#endif
    free((*c)->block);
    free(*c);
    *c = NULL;
}

const bb_calib_opts *bb_calib_options(const bb_calib *c) { return &c->o; }
const bb_model *bb_calib_model(const bb_calib *c) { return c->m; }

/* ---- accumulation -------------------------------------------------------------- */

void bb_calib_accumulate_ref(const float *x, int64_t rows, int64_t in, double eps, double *h, double *sumsq,
                             double *sumabs, int64_t *active, int64_t *counted, int64_t *bad_rows) {
    for (int64_t t = 0; t < rows; t++) {
        const float *r = x + t * in;
        int ok = 1;
        for (int64_t j = 0; j < in; j++) ok &= isfinite(r[j]) != 0;
        if (!ok) {
            (*bad_rows)++;
            continue;
        }
        (*counted)++;
        for (int64_t i = 0; i < in; i++) {
            double a = r[i];
            sumsq[i] += a * a;
            sumabs[i] += fabs(a);
            active[i] += fabs(a) > eps;
            for (int64_t j = i; j < in; j++) h[i * in + j] += a * (double)r[j];
        }
    }
}

/* Per-channel sums of one row, if it is all finite (returns 1); else counts its
 * non-finite values and returns 0. */
static int add_row(calib_slot *s, const float *r, int64_t in, double eps) {
    int64_t bad = 0;
    for (int64_t j = 0; j < in; j++) bad += !isfinite(r[j]);
    if (bad) {
        s->pub.n_nonfinite += bad;
        s->pub.n_rows_nonfinite++;
        return 0;
    }
    for (int64_t j = 0; j < in; j++) {
        double a = r[j], b = fabs(a);
        s->sumsq[j] += a * a;
        s->sumabs[j] += b;
        s->active[j] += b > eps;
    }
    s->pub.n_tokens++;
    return 1;
}

static void syrk_f32(calib_slot *s, const float *x, int64_t rows, int64_t in) {
    for (int64_t r0 = 0; r0 < rows; r0 += F32_MAX_ROWS) {
        int64_t k = rows - r0 < F32_MAX_ROWS ? rows - r0 : F32_MAX_ROWS;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)in, (int)k, 1.0f, x + r0 * in, (int)in, 1.0f, s->g32,
                    (int)in);
    }
}

static void syrk_f64(const bb_calib *c, calib_slot *s, int64_t k, int64_t in) {
    if (k > 0)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)in, (int)k, 1.0, c->conv, (int)in, 1.0, s->g64,
                    (int)in);
}

/* x (rows, in) row-major into slot s: finite rows only. f32 runs ssyrk on each
 * stretch of consecutive finite rows in place; f64 stages finite rows as
 * double in blocks of F64_BLOCK_ROWS. */
#ifdef BB_HAVE_CUDA
/* Rows [r0, r0 + k) of the device copy dx into the slot's device Gram (allocated and zeroed on first use). */
static bb_status syrk_device(bb_calib *c, calib_slot *s, const float *dx, int64_t r0, int64_t k, int64_t in) {
    if (k <= 0) return BB_OK;
    if (!c->gctx) BB_CALL(bb_cuda_ctx_create(&c->gctx));
    if (!s->dg32) {
        BB_CALL(bb_cuda_malloc((void **)&s->dg32, (size_t)(in * in) * sizeof(float), "device calibration Gram"));
        BB_CALL(bb_cuda_zero(s->dg32, (size_t)(in * in) * sizeof(float), "device calibration Gram"));
    }
    return bb_cuda_gram_upper(c->gctx, BB_CUDA_FP32, in, k, dx + r0 * in, in, 1.0f, s->dg32, in);
}

/* The device Gram into the host one (upper triangles), then zero it again. */
static bb_status flush_device(bb_calib *c, calib_slot *s) {
    if (!s->dg32) return BB_OK;
    int64_t n = s->pub.in_features;
    float *h = malloc((size_t)(n * n) * sizeof *h);
    BB_CHECK(h, BB_ERR_OOM, "device Gram download (%lld x %lld)", (long long)n, (long long)n);
    bb_status st = bb_cuda_download(h, s->dg32, (size_t)(n * n) * sizeof *h, "calibration Gram");
    if (st == BB_OK)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++) s->g32[i * n + j] += h[i * n + j];
    free(h);
    bb_cuda_free(s->dg32);
    s->dg32 = NULL;
    return st;
}
#endif

static void accumulate(bb_calib *c, calib_slot *s, const float *x, int64_t rows, int64_t in) {
    double eps = c->o.eps;
#ifdef BB_HAVE_CUDA
    /* The GPU forward hands its device copy too: the Gram of each stretch of finite rows on the GPU, the
     * per-channel sums here; a device failure falls back to the CPU syrk for the rest. */
    const float *dx = c->fwd ? bb_forward_hook_device_input(c->fwd) : NULL;
    if (dx && c->o.precision == BB_CALIB_F32) {
        int64_t run0 = 0, ok = 1;
        for (int64_t t = 0; t < rows; t++)
            if (!add_row(s, x + t * in, in, eps)) {
                if (ok && syrk_device(c, s, dx, run0, t - run0, in) != BB_OK) ok = 0;
                if (!ok) syrk_f32(s, x + run0 * in, t - run0, in);
                run0 = t + 1;
            }
        if (ok && syrk_device(c, s, dx, run0, rows - run0, in) != BB_OK) ok = 0;
        if (!ok) {
            bb_warn("calibration: the GPU Gram failed (%s); this batch and the rest use the CPU", bb_last_error());
            bb_clear_error();
            c->fwd = NULL;
            if (rows > run0) syrk_f32(s, x + run0 * in, rows - run0, in);
        }
        s->dirty = 1;
        return;
    }
#endif
    if (c->o.precision == BB_CALIB_F32) {
        int64_t run0 = 0;
        for (int64_t t = 0; t < rows; t++)
            if (!add_row(s, x + t * in, in, eps)) {
                if (t > run0) syrk_f32(s, x + run0 * in, t - run0, in);
                run0 = t + 1;
            }
        if (rows > run0) syrk_f32(s, x + run0 * in, rows - run0, in);
    } else {
        int64_t k = 0;
        for (int64_t t = 0; t < rows; t++) {
            const float *r = x + t * in;
            if (!add_row(s, r, in, eps)) continue;
            double *d = c->conv + k * in;
            for (int64_t j = 0; j < in; j++) d[j] = r[j];
            if (++k == F64_BLOCK_ROWS) {
                syrk_f64(c, s, k, in);
                k = 0;
            }
        }
        syrk_f64(c, s, k, in);
    }
    s->dirty = 1;
}

static calib_slot *slot_at(bb_calib *c, int layer, bb_calib_input in) {
    return &c->slots[(layer - c->o.layer_begin) * BB_CALIB_INPUT_COUNT + in];
}

bb_status bb_calib_feed(bb_calib *c, int layer, bb_linear_kind kind, const float *x, int64_t rows,
                        int64_t in_features) {
    BB_CHECK(!c->loaded, BB_ERR_ARG, "calibration statistics of %s were loaded from a file: they are read-only",
             c->m->path);
    if (layer < c->o.layer_begin || layer >= c->o.layer_end) return BB_OK;
    bb_calib_input in = bb_calib_input_of(kind);
    BB_CHECK(in < BB_CALIB_INPUT_COUNT, BB_ERR_INTERNAL, "calibration hook: unknown linear kind %d", (int)kind);
    calib_slot *s = slot_at(c, layer, in);
    BB_CHECK(in_features == s->pub.in_features, BB_ERR_INTERNAL,
             "calibration hook: layer %d %s is %lld wide, the statistics expect %lld", layer, bb_linear_name(kind),
             (long long)in_features, (long long)s->pub.in_features);
    if (kind != owner_kind[in]) {
        /* Shared statistics are only right if every sharer reads the same rows. */
        BB_CHECK(x == s->last_x && rows == s->last_rows, BB_ERR_INTERNAL,
                 "calibration hook: layer %d %s was not handed the rows %s was, but the two share one %s Gram", layer,
                 bb_linear_name(kind), bb_linear_name(owner_kind[in]), bb_calib_input_name(in));
        return BB_OK;
    }
    s->last_x = x;
    s->last_rows = rows;
    int64_t before = s->pub.n_tokens;
    bb_event_begin("calib.gram");
    accumulate(c, s, x, rows, in_features);
    double k = (double)(s->pub.n_tokens - before), n = (double)in_features;
    bb_event_end("calib.gram", n * n * k, (double)rows * n * sizeof(float));
    return BB_OK;
}

static bb_status hook(void *ud, int layer, bb_linear_kind kind, const float *x, int64_t rows, int64_t in_features) {
    return bb_calib_feed(ud, layer, kind, x, rows, in_features);
}

bb_status bb_calib_attach(bb_calib *c, bb_forward *f) {
    BB_CHECK(!c->loaded, BB_ERR_ARG, "calibration statistics of %s were loaded from a file: they are read-only",
             c->m->path);
    const bb_model_config *a = bb_forward_config(f), *b = &c->m->cfg;
    BB_CHECK(a->dim == b->dim && a->hidden_dim == b->hidden_dim && a->n_layers == b->n_layers &&
                 a->n_heads == b->n_heads && a->head_dim == b->head_dim,
             BB_ERR_ARG,
             "calibration collector for %s (dim %d, hidden %d, %d layers) cannot attach to a forward pass of another "
             "shape (dim %d, hidden %d, %d layers)",
             c->m->path, b->dim, b->hidden_dim, b->n_layers, a->dim, a->hidden_dim, a->n_layers);
    bb_forward_set_hook(f, hook, c);
    c->fwd = f;
    return BB_OK;
}

void bb_calib_detach(bb_calib *c, bb_forward *f) {
    if (f) bb_forward_set_hook(f, NULL, NULL);
    if (c) c->fwd = NULL;
}

/* Matmul flops of a prefill of B sequences of T tokens: the linear layers, the
 * classifier, and causal attention (QK^T and AV over T(T+1)/2 pairs per head). */
static double prefill_flops(const bb_model_config *c, int B, int T) {
    double qd = (double)c->n_heads * c->head_dim, kvd = (double)c->n_kv_heads * c->head_dim;
    double lin = 2.0 * ((double)c->dim * (qd + 2 * kvd) + qd * c->dim + 3.0 * c->dim * c->hidden_dim);
    double per_token = lin * c->n_layers + 2.0 * c->dim * c->vocab_size;
    double attn = 4.0 * qd * ((double)T * (T + 1) / 2) * c->n_layers;
    return B * ((double)T * per_token + attn);
}

static void nonfinite_totals(const bb_calib *c, int64_t *rows, int64_t *vals) {
    *rows = *vals = 0;
    for (int i = 0; i < c->n_layers * BB_CALIB_INPUT_COUNT; i++) {
        *rows += c->slots[i].pub.n_rows_nonfinite;
        *vals += c->slots[i].pub.n_nonfinite;
    }
}

bb_status bb_calib_run(bb_calib *c, bb_forward *f, const bb_tokens *stream, int micro_batch) {
    BB_CHECK(stream->seq_len > 0 && stream->n_seq > 0, BB_ERR_ARG,
             "calibration needs a stream of sequences, got a flat stream of %lld tokens: cut windows with "
             "bb_calib_sample_windows (calib.samples x calib.seq_len)",
             (long long)stream->n);
    BB_CHECK(micro_batch >= 1, BB_ERR_ARG, "calibration micro-batch %d must be >= 1", micro_batch);
    const bb_model_config *mc = &c->m->cfg;
    int T = stream->seq_len;
    BB_CHECK(T <= mc->max_seq_len, BB_ERR_ARG, "calibration sequences of %d tokens exceed the context of %s (%d)", T,
             c->m->path, mc->max_seq_len);
    BB_CALL(bb_calib_attach(c, f));
    int B = micro_batch < stream->n_seq ? micro_batch : stream->n_seq;
    float *logits = NULL;
    size_t nl;
    bb_status st = BB_OK;
    if (bb_mul_overflow((size_t)B * (size_t)T, (size_t)mc->vocab_size, &nl) || nl > SIZE_MAX / sizeof(float))
        st = bb_error(BB_ERR_OOM, __FILE__, __LINE__,
                      "calibration logits of %d x %d tokens overflow: lower the "
                      "micro-batch",
                      B, T);
    if (st == BB_OK)
        st = bb_malloc((void **)&logits, nl * sizeof(float), "calibration logits (lower calib.micro_batch)");
    int64_t bad_rows0, bad_vals0;
    nonfinite_totals(c, &bad_rows0, &bad_vals0);
    bb_progress pr;
    bb_progress_begin(&pr, "calib", stream->n_seq);
    for (int s0 = 0; st == BB_OK && s0 < stream->n_seq; s0 += B) {
        int b = stream->n_seq - s0 < B ? stream->n_seq - s0 : B;
        bb_event_begin("calib.forward");
        st = bb_forward_prefill(f, stream->ids + (int64_t)s0 * T, b, T, logits);
        bb_event_end("calib.forward", prefill_flops(mc, b, T), 0);
        if (st != BB_OK) {
            bb_trace(st, __FILE__, __LINE__, "bb_forward_prefill");
            break;
        }
        char detail[64];
        snprintf(detail, sizeof detail, "sequences, %lld tokens", (long long)(s0 + b) * T);
        bb_progress_update(&pr, s0 + b, detail);
    }
    bb_progress_end(&pr);
    bb_forward_set_hook(f, NULL, NULL);
    c->fwd = NULL;
    free(logits);
    BB_CALL(st);
    int64_t bad_rows, bad_vals;
    nonfinite_totals(c, &bad_rows, &bad_vals);
    if (bad_rows > bad_rows0)
        bb_warn("calibration: %lld NaN/Inf activation values in %lld rows (summed over layer inputs) were left out of "
                "the statistics",
                (long long)(bad_vals - bad_vals0), (long long)(bad_rows - bad_rows0));
    return BB_OK;
}

/* ---- finished statistics ------------------------------------------------------- */

/* Copy the upper triangle to the lower one in square tiles, so that both the
 * rows read and the columns written stay in cache. */
#define TILE 64
static void symmetrize_f32(float *h, int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += TILE)
        for (int64_t j0 = 0; j0 <= i0; j0 += TILE)
            for (int64_t i = i0; i < i0 + TILE && i < n; i++)
                for (int64_t j = j0; j < j0 + TILE && j < i; j++) h[i * n + j] = h[j * n + i];
}
static void symmetrize_f64(double *h, int64_t n) {
    for (int64_t i0 = 0; i0 < n; i0 += TILE)
        for (int64_t j0 = 0; j0 <= i0; j0 += TILE)
            for (int64_t i = i0; i < i0 + TILE && i < n; i++)
                for (int64_t j = j0; j < j0 + TILE && j < i; j++) h[i * n + j] = h[j * n + i];
}

static void finish(calib_slot *s) {
    int64_t n = s->pub.in_features;
#ifdef BB_HAVE_CUDA
    if (flush_device(NULL, s) != BB_OK) bb_warn("calibration: the device Gram could not be read back: %s", bb_last_error());
#endif
    if (s->g32) symmetrize_f32(s->g32, n);
    if (s->g64) symmetrize_f64(s->g64, n);
    double cnt = (double)s->pub.n_tokens;
    for (int64_t j = 0; j < n; j++) {
        s->norm[j] = sqrt(s->sumsq[j]);
        s->mean_abs[j] = cnt > 0 ? s->sumabs[j] / cnt : 0;
        s->freq[j] = cnt > 0 ? (double)s->active[j] / cnt : 0;
    }
    s->dirty = 0;
}

bb_status bb_calib_stats_input(bb_calib *c, int layer, bb_calib_input in, const bb_calib_stat **out) {
    *out = NULL;
    BB_CHECK(layer >= c->o.layer_begin && layer < c->o.layer_end, BB_ERR_ARG,
             "layer %d is outside the collected layers [%d, %d)", layer, c->o.layer_begin, c->o.layer_end);
    BB_CHECK((unsigned)in < BB_CALIB_INPUT_COUNT, BB_ERR_ARG, "unknown calibration input %d", (int)in);
    calib_slot *s = slot_at(c, layer, in);
    if (s->dirty) finish(s);
    *out = &s->pub;
    return BB_OK;
}

bb_status bb_calib_stats(bb_calib *c, int layer, bb_linear_kind kind, const bb_calib_stat **out) {
    *out = NULL;
    BB_CHECK((unsigned)kind < BB_LIN_COUNT, BB_ERR_ARG, "unknown linear kind %d", (int)kind);
    BB_CALL(bb_calib_stats_input(c, layer, input_of_kind[kind], out));
    return BB_OK;
}

bb_status bb_calib_load_slot(bb_calib *c, int layer, bb_calib_input in, bb_calib_slot *out) {
    BB_CHECK(layer >= c->o.layer_begin && layer < c->o.layer_end, BB_ERR_ARG,
             "layer %d is outside the collected layers [%d, %d)", layer, c->o.layer_begin, c->o.layer_end);
    BB_CHECK((unsigned)in < BB_CALIB_INPUT_COUNT, BB_ERR_ARG, "unknown calibration input %d", (int)in);
    calib_slot *s = slot_at(c, layer, in);
    c->loaded = 1;
    s->dirty = 0;
    out->gram = s->g32 ? (void *)s->g32 : (void *)s->g64;
    out->norm = s->norm;
    out->mean_abs = s->mean_abs;
    out->freq = s->freq;
    out->n_tokens = &s->pub.n_tokens;
    out->n_rows_nonfinite = &s->pub.n_rows_nonfinite;
    out->n_nonfinite = &s->pub.n_nonfinite;
    return BB_OK;
}

/* ---- calibration windows ------------------------------------------------------- */

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

bb_status bb_calib_sample_windows(const bb_tokens *flat, int n_windows, int seq_len, uint64_t seed, int bos_id,
                                  bb_tokens *out) {
    memset(out, 0, sizeof *out);
    BB_CHECK(seq_len >= 2, BB_ERR_ARG, "calibration windows need at least 2 tokens (calib.seq_len = %d)", seq_len);
    int64_t avail = flat->n / seq_len;
    BB_CHECK(n_windows >= 0, BB_ERR_ARG, "calibration window count %d must be >= 0", n_windows);
    if (n_windows == 0) n_windows = avail > INT_MAX ? INT_MAX : (int)avail;
    BB_CHECK(n_windows > 0 && n_windows <= avail, BB_ERR_ARG,
             "the calibration stream of %lld tokens holds %lld windows of %d tokens, %d asked: lower calib.samples or "
             "calib.seq_len, or give more text",
             (long long)flat->n, (long long)avail, seq_len, n_windows);
    int64_t *idx;
    BB_MALLOC(idx, sizeof *idx * (size_t)avail, "calibration window indices");
    for (int64_t i = 0; i < avail; i++) idx[i] = i;
    /* Partial Fisher-Yates: the first n_windows entries become a uniform sample.
     * The modulo bias of a 64-bit draw is below avail / 2^64. */
    bb_rng rng = bb_rng_make(seed, bb_rng_stream_id("calib.windows"));
    for (int64_t i = 0; i < n_windows; i++) {
        int64_t j = i + (int64_t)(bb_rng_u64(rng, (uint64_t)i) % (uint64_t)(avail - i));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    qsort(idx, (size_t)n_windows, sizeof *idx, cmp_int64);
    bb_status st = bb_malloc((void **)&out->ids, sizeof(int32_t) * (size_t)n_windows * seq_len, "calibration windows");
    if (st == BB_OK) {
        for (int w = 0; w < n_windows; w++) {
            memcpy(out->ids + (int64_t)w * seq_len, flat->ids + idx[w] * seq_len, sizeof(int32_t) * (size_t)seq_len);
            if (bos_id >= 0) out->ids[(int64_t)w * seq_len] = bos_id;
        }
        out->n = (int64_t)n_windows * seq_len;
        out->n_seq = n_windows;
        out->seq_len = seq_len;
        out->vocab_size = flat->vocab_size;
    }
    free(idx);
    BB_CALL(st);
    return BB_OK;
}

void bb_calib_tokens_hash(const bb_tokens *t, char hex[65]) {
    bb_sha256 h;
    bb_sha256_init(&h);
    unsigned char buf[4096];
    int64_t head[3] = {t->n, t->seq_len, t->vocab_size};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 8; b++) buf[i * 8 + b] = (unsigned char)((uint64_t)head[i] >> (8 * b));
    bb_sha256_update(&h, buf, 24);
    size_t nb = 0;
    for (int64_t i = 0; i < t->n; i++) {
        uint32_t v = (uint32_t)t->ids[i];
        for (int b = 0; b < 4; b++) buf[nb++] = (unsigned char)(v >> (8 * b));
        if (nb == sizeof buf) {
            bb_sha256_update(&h, buf, nb);
            nb = 0;
        }
    }
    bb_sha256_update(&h, buf, nb);
    uint8_t d[32];
    bb_sha256_final(&h, d);
    bb_sha256_to_hex(d, hex);
}
