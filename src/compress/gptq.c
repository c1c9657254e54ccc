/* gptq.c — GPTQ with a GGUF block type as the grid: the lazy-batch f32 path and its plain double reference. */

/* The value GPTQ feeds back as "q" is computed with the decoder's own f32 operations; a fused
 * multiply-add would change its last bit and break decode(blocks) == Ŵ (see io/qformat.c). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/quant.h"
#include "core/dtype.h"
#include "core/events.h"
#include "core/log.h"
#include "io/qformat.h"

/* ---- block grids ----
 *
 * Once a block's scales are fixed (the encoder has run on the block), every element e of the block
 * can take the values y = (float)q * s[e] (+ b[e] when the type has an offset), q in [qlo, qhi],
 * where s and b are the f32 sub-block scale and offset the decoder computes. `read` derives s and b
 * from the block bytes exactly as the decoder does; `set` stores code q for element e. */

typedef struct {
    int type, qlo, qhi, has_b;
    void (*read)(const uint8_t *blk, float *s, float *b);
    void (*set)(uint8_t *blk, int e, int q);
} grid_ops;

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return bb_f16_to_f32(h);
}

static void fill(float *v, int n, float x) {
    for (int i = 0; i < n; i++) v[i] = x;
}

/* Nibble j of a 32-element block: low nibble of qs[j] for j < 16, high nibble of qs[j - 16]. */
static void set_nibble32(uint8_t *qs, int e, int u) {
    int j = e % 16, sh = e < 16 ? 0 : 4;
    qs[j] = (uint8_t)((qs[j] & ~(0xF << sh)) | (u & 0xF) << sh);
}

static void set_bit(uint8_t *p, int byte, int bit, int v) {
    p[byte] = (uint8_t)((p[byte] & ~(1 << bit)) | (v & 1) << bit);
}

static void set_2bits(uint8_t *p, int byte, int shift, int v) {
    p[byte] = (uint8_t)((p[byte] & ~(3 << shift)) | (v & 3) << shift);
}

static void read_q8_0(const uint8_t *blk, float *s, float *b) {
    (void)b;
    fill(s, BB_QK, f16_at(blk + offsetof(bb_block_q8_0, d)));
}
static void set_q8_0(uint8_t *blk, int e, int q) { blk[offsetof(bb_block_q8_0, qs) + e] = (uint8_t)(int8_t)q; }

static void read_q4_0(const uint8_t *blk, float *s, float *b) {
    (void)b;
    fill(s, BB_QK, f16_at(blk + offsetof(bb_block_q4_0, d)));
}
static void set_q4_0(uint8_t *blk, int e, int q) { set_nibble32(blk + offsetof(bb_block_q4_0, qs), e, q + 8); }

static void read_q4_1(const uint8_t *blk, float *s, float *b) {
    fill(s, BB_QK, f16_at(blk + offsetof(bb_block_q4_1, d)));
    fill(b, BB_QK, f16_at(blk + offsetof(bb_block_q4_1, m)));
}
static void set_q4_1(uint8_t *blk, int e, int q) { set_nibble32(blk + offsetof(bb_block_q4_1, qs), e, q); }

static void read_q5_0(const uint8_t *blk, float *s, float *b) {
    (void)b;
    fill(s, BB_QK, f16_at(blk + offsetof(bb_block_q5_0, d)));
}
static void set_q5_0(uint8_t *blk, int e, int q) {
    set_nibble32(blk + offsetof(bb_block_q5_0, qs), e, q + 16);
    set_bit(blk + offsetof(bb_block_q5_0, qh), e / 8, e % 8, (q + 16) >> 4);
}

static void read_q5_1(const uint8_t *blk, float *s, float *b) {
    fill(s, BB_QK, f16_at(blk + offsetof(bb_block_q5_1, d)));
    fill(b, BB_QK, f16_at(blk + offsetof(bb_block_q5_1, m)));
}
static void set_q5_1(uint8_t *blk, int e, int q) {
    set_nibble32(blk + offsetof(bb_block_q5_1, qs), e, q);
    set_bit(blk + offsetof(bb_block_q5_1, qh), e / 8, e % 8, q >> 4);
}

/* Two-bit fields of Q2_K, Q3_K and Q6_K's high bits: element 128h + 32k + l in bits 2k..2k+1 of byte 32h + l. */
static int qs2_index(int e) { return 32 * (e / 128) + e % 32; }
static int qs2_shift(int e) { return 2 * ((e % 128) / 32); }

/* Q2_K: y = d*sc*q - dmin*m; the offset -(dmin*m) is added, which is the same f32 operation. */
static void read_q2_k(const uint8_t *blk, float *s, float *b) {
    const float d = f16_at(blk + offsetof(bb_block_q2_k, d)), dmin = f16_at(blk + offsetof(bb_block_q2_k, dmin));
    const uint8_t *sc = blk + offsetof(bb_block_q2_k, scales);
    for (int j = 0; j < 16; j++) {
        fill(s + 16 * j, 16, d * (float)(sc[j] & 0xF));
        fill(b + 16 * j, 16, -(dmin * (float)(sc[j] >> 4)));
    }
}
static void set_q2_k(uint8_t *blk, int e, int q) {
    set_2bits(blk + offsetof(bb_block_q2_k, qs), qs2_index(e), qs2_shift(e), q);
}

static void read_q3_k(const uint8_t *blk, float *s, float *b) {
    (void)b;
    const float d = f16_at(blk + offsetof(bb_block_q3_k, d));
    const uint8_t *sc = blk + offsetof(bb_block_q3_k, scales);
    for (int k = 0; k < 16; k++) {
        int v = ((sc[k % 8] >> (k < 8 ? 0 : 4)) & 0xF) | ((sc[8 + k % 4] >> (2 * (k / 4))) & 3) << 4;
        fill(s + 16 * k, 16, d * (float)(v - 32));
    }
}
static void set_q3_k(uint8_t *blk, int e, int q) {
    int u = q + 4; /* bit 2 set means "do not subtract 4" */
    set_2bits(blk + offsetof(bb_block_q3_k, qs), qs2_index(e), qs2_shift(e), u);
    set_bit(blk + offsetof(bb_block_q3_k, hmask), e % 32, e / 32, u >> 2);
}

/* Six-bit scale and min of sub-block j in the 12-byte field of Q4_K and Q5_K. */
static void k4_scale(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

static void read_k4(const uint8_t *blk, size_t off_d, size_t off_dmin, size_t off_sc, float *s, float *b) {
    const float d = f16_at(blk + off_d), dmin = f16_at(blk + off_dmin);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        k4_scale(blk + off_sc, j, &sc, &mn);
        fill(s + 32 * j, 32, d * (float)sc);
        fill(b + 32 * j, 32, -(dmin * (float)mn));
    }
}

/* Q4_K/Q5_K nibbles: element 64c + l low nibble of qs[32c + l], 64c + 32 + l its high nibble. */
static void set_nibble_k(uint8_t *qs, int e, int u) {
    int byte = 32 * (e / 64) + e % 32, sh = (e % 64) < 32 ? 0 : 4;
    qs[byte] = (uint8_t)((qs[byte] & ~(0xF << sh)) | (u & 0xF) << sh);
}

static void read_q4_k(const uint8_t *blk, float *s, float *b) {
    read_k4(blk, offsetof(bb_block_q4_k, d), offsetof(bb_block_q4_k, dmin), offsetof(bb_block_q4_k, scales), s, b);
}
static void set_q4_k(uint8_t *blk, int e, int q) { set_nibble_k(blk + offsetof(bb_block_q4_k, qs), e, q); }

static void read_q5_k(const uint8_t *blk, float *s, float *b) {
    read_k4(blk, offsetof(bb_block_q5_k, d), offsetof(bb_block_q5_k, dmin), offsetof(bb_block_q5_k, scales), s, b);
}
static void set_q5_k(uint8_t *blk, int e, int q) {
    set_nibble_k(blk + offsetof(bb_block_q5_k, qs), e, q);
    set_bit(blk + offsetof(bb_block_q5_k, qh), e % 32, e / 32, q >> 4);
}

static void read_q6_k(const uint8_t *blk, float *s, float *b) {
    (void)b;
    const float d = f16_at(blk + offsetof(bb_block_q6_k, d));
    const int8_t *sc = (const int8_t *)(blk + offsetof(bb_block_q6_k, scales));
    for (int j = 0; j < 16; j++) fill(s + 16 * j, 16, d * (float)sc[j]);
}
static void set_q6_k(uint8_t *blk, int e, int q) {
    int u = q + 32;
    int ql = 64 * (e / 128) + 32 * (((e % 128) / 32) & 1) + e % 32, sh = 4 * (((e % 128) / 32) >> 1);
    uint8_t *p = blk + offsetof(bb_block_q6_k, ql);
    p[ql] = (uint8_t)((p[ql] & ~(0xF << sh)) | (u & 0xF) << sh);
    set_2bits(blk + offsetof(bb_block_q6_k, qh), qs2_index(e), qs2_shift(e), u >> 4);
}

static const grid_ops grids[] = {
    {BB_GGML_Q8_0, -128, 127, 0, read_q8_0, set_q8_0}, {BB_GGML_Q4_0, -8, 7, 0, read_q4_0, set_q4_0},
    {BB_GGML_Q4_1, 0, 15, 1, read_q4_1, set_q4_1},     {BB_GGML_Q5_0, -16, 15, 0, read_q5_0, set_q5_0},
    {BB_GGML_Q5_1, 0, 31, 1, read_q5_1, set_q5_1},     {BB_GGML_Q2_K, 0, 3, 1, read_q2_k, set_q2_k},
    {BB_GGML_Q3_K, -4, 3, 0, read_q3_k, set_q3_k},     {BB_GGML_Q4_K, 0, 15, 1, read_q4_k, set_q4_k},
    {BB_GGML_Q5_K, 0, 31, 1, read_q5_k, set_q5_k},     {BB_GGML_Q6_K, -32, 31, 0, read_q6_k, set_q6_k},
};

static const grid_ops *grid_of(int type) {
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++)
        if (grids[i].type == type) return &grids[i];
    return NULL;
}

/* Nearest grid value to w for element scale s and offset b; writes the code, returns the value
 * as the decoder computes it. A zero scale leaves only q = 0 (or the offset) reachable. */
static float grid_round(const grid_ops *g, double w, float s, float b, int *code) {
    int q;
    if (s != 0)
        q = bb_qformat_nearest(g->has_b ? (w - b) / s : w / s, g->qlo, g->qhi);
    else
        q = g->qlo > 0 ? g->qlo : g->qhi < 0 ? g->qhi : 0;
    *code = q;
    return g->has_b ? (float)q * s + b : (float)q * s;
}

/* ---- shared set-up ---- */

typedef struct {
    int key_i;
    double key;
} order_item;

static int by_key_desc(const void *pa, const void *pb) {
    const order_item *a = pa, *b = pb;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return (a->key_i > b->key_i) - (a->key_i < b->key_i);
}

/* perm[i] = the original column quantized i-th. Without act-order the identity. With act-order
 * GGUF blocks stay whole (a block's scales cover its own contiguous columns): blocks go by
 * decreasing sum of diag(H) over their columns, and inside a block the columns by decreasing H_jj;
 * ties by index. */
static bb_status column_order(const float *h, int64_t n, int blck, int act_order, int64_t *perm) {
    for (int64_t j = 0; j < n; j++) perm[j] = j;
    if (!act_order) return BB_OK;
    const int64_t nb = n / blck;
    order_item *it;
    BB_CALL(bb_malloc((void **)&it, (size_t)(nb > blck ? nb : blck) * sizeof *it, "act-order keys"));
    for (int64_t k = 0; k < nb; k++) {
        double s = 0;
        for (int e = 0; e < blck; e++) s += h[(k * blck + e) * (n + 1)];
        it[k] = (order_item){(int)k, s};
    }
    qsort(it, (size_t)nb, sizeof *it, by_key_desc);
    int64_t *bo;
    bb_status st = bb_malloc((void **)&bo, (size_t)nb * sizeof *bo, "act-order blocks");
    if (st != BB_OK) {
        free(it);
        return st;
    }
    for (int64_t k = 0; k < nb; k++) bo[k] = it[k].key_i;
    for (int64_t k = 0; k < nb; k++) {
        for (int e = 0; e < blck; e++) it[e] = (order_item){e, h[(bo[k] * blck + e) * (n + 1)]};
        qsort(it, (size_t)blck, sizeof *it, by_key_desc);
        for (int e = 0; e < blck; e++) perm[k * blck + e] = bo[k] * blck + it[e].key_i;
    }
    free(bo);
    free(it);
    return BB_OK;
}

/* Next damping after a failed factorization: x10, starting from 1e-4 when damping was off. */
static double next_damp(double d) { return d > 0 ? d * 10 : 1e-4; }

static bb_status damp_failed(const char *name, double first, double last, const bb_quant_opts *o) {
    return bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                    "%s: the Gram H is not positive definite even with damping raised from %g to %g x mean(diag H) "
                    "(limit quant.damp_max %g); check the calibration statistics of this layer or raise quant.damp_max",
                    name, first, last, o->damp_max);
}

/* The per-channel weights of the block fits: the caller's vector, else diag(H) if asked for. */
static bb_status fit_weights(const bb_quant_opts *o, const bb_quant_input *in, float **imp) {
    *imp = NULL;
    if (!in->importance && !o->importance) return BB_OK;
    BB_CALL(bb_malloc((void **)imp, (size_t)in->cols * sizeof(float), "block-fit weights"));
    for (int64_t j = 0; j < in->cols; j++) (*imp)[j] = in->importance ? in->importance[j] : in->h[j * in->cols + j];
    return BB_OK;
}

/* Fit block `ob` of a row on its current values x (blck, original element order): the type's
 * encoder writes the block (scales and provisional codes) and the grid is read back from it. */
static bb_status fit_block(const bb_qformat_traits *t, bb_qformat_encode_fn enc, const grid_ops *g, const char *name, int64_t row, int64_t ob,
                           const float *x, const float *wimp, uint8_t *blk, float *s, float *b) {
    for (int e = 0; e < t->blck; e++)
        BB_CHECK(isfinite(x[e]), BB_ERR_NUMERIC,
                 "%s: GPTQ's updated weight (%lld, %lld) is %g (the error updates overflowed); raise quant.damp", name,
                 (long long)row, (long long)(ob * t->blck + e), (double)x[e]);
    enc(x, wimp ? wimp + ob * t->blck : NULL, (size_t)t->blck, blk);
    g->read(blk, s, b);
    return BB_OK;
}

/* Float-type storage (the fallback of an unfittable row length): nothing to compensate, encode the rows. */
static bb_status encode_float_rows(const bb_quant_input *in, int type, bb_quant_result *r) {
    for (int64_t i = 0; i < in->rows; i++) {
        uint8_t *blk = r->blocks + (size_t)i * r->row_bytes;
        BB_CALL(bb_qformat_encode_row(type, in->w + i * in->cols, in->cols, NULL, blk));
        BB_CALL(bb_qformat_decode_row(type, blk, in->cols, r->w_hat + i * in->cols));
    }
    return BB_OK;
}

/* Common start of both paths: checks, stored type, result, column order, fit weights. g stays NULL
 * when the stored type is a float type (then the result is already complete). */
typedef struct {
    const char *name;
    int type;
    const bb_qformat_traits *t;
    bb_qformat_encode_fn enc; /* the block fits (quant.search; auto: full when weighted by imp) */
    const grid_ops *g;
    bb_quant_result *r;
    int64_t *perm;
    float *imp;
} gptq_setup;

static void setup_free(gptq_setup *s) {
    free(s->perm);
    free(s->imp);
    bb_quant_result_destroy(&s->r);
}

static bb_status setup_begin(const bb_quant_opts *o, const bb_quant_input *in, gptq_setup *s) {
    memset(s, 0, sizeof *s);
    BB_CHECK(o != NULL, BB_ERR_ARG, "GPTQ: NULL options");
    BB_CALL(bb_quant_check_input(in, 1));
    s->name = in->name ? in->name : "(unnamed)";
    BB_CHECK(o->block_size >= 1 && o->damp >= 0 && o->damp_max >= o->damp, BB_ERR_ARG,
             "%s: GPTQ needs block_size >= 1 and 0 <= damp <= damp_max (got %lld, %g, %g)", s->name,
             (long long)o->block_size, o->damp, o->damp_max);
    BB_CHECK(!in->mask || (in->mask->rows == in->rows && in->mask->cols == in->cols), BB_ERR_ARG,
             "%s: GPTQ mask is (%lld, %lld) for a (%lld, %lld) weight", s->name, (long long)in->mask->rows,
             (long long)in->mask->cols, (long long)in->rows, (long long)in->cols);
    BB_CALL(bb_quant_stored_type(o, s->name, in->cols, &s->type));
    BB_CALL(bb_quant_result_create(s->type, in->rows, in->cols, &s->r));
    s->r->fell_back = s->type != o->type;
    s->t = bb_qformat_info(s->type);
    if (s->t->blck == 1) return encode_float_rows(in, s->type, s->r);
    s->g = grid_of(s->type);
    BB_CHECK(s->g != NULL, BB_ERR_INTERNAL, "%s: no GPTQ grid for %s", s->name, s->t->name);
    BB_CALL(bb_malloc((void **)&s->perm, (size_t)in->cols * sizeof *s->perm, "GPTQ column order"));
    BB_CALL(column_order(in->h, in->cols, s->t->blck, o->act_order, s->perm));
    BB_CALL(fit_weights(o, in, &s->imp));
    s->enc = bb_quant_encoder(s->type, bb_quant_search_for(o, s->imp != NULL));
    for (int64_t j = 0; j < in->cols; j++) s->r->dead += in->h[j * (in->cols + 1)] == 0;
    return BB_OK;
}

/* ---- the fast path ---- */

/* On success u (n, n) holds in its upper triangle the upper Cholesky factor of (Hp + damp mean I)^-1,
 * where Hp is H (n, n) permuted by perm with dead inputs (H_jj = 0) set to 1 on the diagonal and
 * mean is Hp's mean diagonal. Each attempt rebuilds u from H, so no second n x n copy is kept. */
static bb_status inverse_factor_f32(const bb_linalg_backend *be, const bb_quant_opts *o, const char *name,
                                    const float *h, const int64_t *perm, int64_t n, float *u, double *damp_used) {
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += h[j * (n + 1)] == 0 ? 1 : h[j * (n + 1)];
    mean /= (double)n;
    for (double damp = o->damp;; damp = next_damp(damp)) {
        if (damp > o->damp_max * (1 + 1e-12)) return damp_failed(name, o->damp, damp, o);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) u[i * n + j] = h[perm[i] * n + perm[j]];
        for (int64_t j = 0; j < n; j++) {
            if (u[j * (n + 1)] == 0) u[j * (n + 1)] = 1;
            u[j * (n + 1)] += (float)(damp * mean);
        }
        bb_status st = bb_linalg_inverse_cholesky_upper(be, u, n);
        if (st == BB_OK) {
            if (damp != o->damp)
                bb_warn("%s: Cholesky of the damped Gram failed at damp %g; GPTQ uses damp %g x mean(diag H)", name,
                        o->damp, damp);
            *damp_used = damp;
            return BB_OK;
        }
        if (st != BB_ERR_NUMERIC) return bb_trace(st, __FILE__, __LINE__, "potrf/potri");
    }
}

typedef float vflt __attribute__((vector_size(8 * sizeof(float))));

/* w[j] -= d * u[j] for j < n: element by element (no reduction), so the vector form gives the
 * same values as the scalar loop. */
static void sub_scaled(float *restrict w, const float *restrict u, float d, int64_t n) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        vflt a, b;
        memcpy(&a, w + j, sizeof a);
        memcpy(&b, u + j, sizeof b);
        a -= d * b;
        memcpy(w + j, &a, sizeof a);
    }
    for (; j < n; j++) w[j] -= d * u[j];
}

/* Rows [r0, r1) of columns [i1, i2), one row at a time: the row's batch stays in cache while each
 * column is quantized and its error spread over the rest of the batch. err (rows, i2 - i1) receives
 * the scaled errors for the trailing gemm. A non-finite updated weight stops the row range and is
 * reported through *bad_row (else left at -1), so that the calling thread raises the error. */
typedef struct {
    const gptq_setup *s;
    const bb_quant_input *in;
    const float *u;
    float *wp, *err;
    int64_t i1, i2, r0, r1;
    int64_t bad_row, bad_col;
    float bad_val;
} batch_job;

static void *batch_rows(void *arg) {
    batch_job *jb = arg;
    const gptq_setup *s = jb->s;
    const int64_t n = jb->in->cols, i1 = jb->i1, i2 = jb->i2, nb = i2 - i1;
    const int blck = s->t->blck;
    const bb_qformat_encode_fn enc = s->enc;
    const bb_mask *mask = jb->in->mask;
    const float *u = jb->u;
    float x[BB_QK_K], sc[BB_QK_K], of[BB_QK_K];
    for (int64_t r = jb->r0; r < jb->r1; r++) {
        float *w = jb->wp + r * n, *er = jb->err + r * nb, *what = s->r->w_hat + r * n;
        uint8_t *row = s->r->blocks + (size_t)r * s->r->row_bytes;
        uint8_t *blk = row;
        for (int64_t i = i1; i < i2; i++) {
            if (i % blck == 0) {
                /* The block's scales, fit by the type's encoder on the block's current values. */
                int64_t ob = s->perm[i] / blck;
                for (int e = 0; e < blck; e++) {
                    /* pruned weights go to 0: the block's scale fits the kept ones */
                    x[s->perm[i + e] % blck] = mask && !bb_mask_get(mask, r, s->perm[i + e]) ? 0 : w[i + e];
                    if (!isfinite(w[i + e])) {
                        jb->bad_row = r;
                        jb->bad_col = s->perm[i + e];
                        jb->bad_val = w[i + e];
                        return NULL;
                    }
                }
                blk = row + (size_t)ob * (size_t)s->t->block_bytes;
                enc(x, s->imp ? s->imp + ob * blck : NULL, (size_t)blck, blk);
                s->g->read(blk, sc, of);
            }
            const int e = (int)(s->perm[i] % blck);
            int q;
            const float target = mask && !bb_mask_get(mask, r, s->perm[i]) ? 0.0f : w[i];
            const float y = grid_round(s->g, target, sc[e], of[e], &q);
            s->g->set(blk, e, q);
            what[s->perm[i]] = y;
            const float d = (w[i] - y) / u[i * n + i];
            er[i - i1] = d;
            sub_scaled(w + i + 1, u + i * n + i + 1, d, i2 - i - 1);
        }
    }
    return NULL;
}

#define MAX_THREADS 64

/* The batch's rows split over `threads` contiguous ranges (rows are independent given H, so the
 * result does not depend on the split). */
static bb_status batch_all_rows(const gptq_setup *s, const bb_quant_input *in, const float *u, float *wp, int64_t i1,
                                int64_t i2, float *err, int threads) {
    batch_job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    const int64_t m = in->rows;
    int nt = threads < 1 ? 1 : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (nt > m) nt = (int)m;
    int running[MAX_THREADS] = {0};
    for (int t = 0; t < nt; t++)
        jobs[t] = (batch_job){s, in, u, wp, err, i1, i2, m * t / nt, m * (t + 1) / nt, -1, -1, 0};
    for (int t = 1; t < nt; t++) running[t] = pthread_create(&tid[t], NULL, batch_rows, &jobs[t]) == 0;
    /* Thread 0's share runs on the calling thread, and so does any share whose thread did not start. */
    for (int t = 0; t < nt; t++)
        if (!running[t]) batch_rows(&jobs[t]);
    for (int t = 1; t < nt; t++)
        if (running[t]) pthread_join(tid[t], NULL);
    for (int t = 0; t < nt; t++)
        BB_CHECK(jobs[t].bad_row < 0, BB_ERR_NUMERIC,
                 "%s: GPTQ's updated weight (%lld, %lld) is %g (the error updates overflowed); raise quant.damp",
                 s->name, (long long)jobs[t].bad_row, (long long)jobs[t].bad_col, (double)jobs[t].bad_val);
    return BB_OK;
}

/* Lazy batch length: o->block_size rounded up to whole GGUF blocks, so that a block's first column
 * sees all its columns fully updated (columns past the batch only get the batch's errors in the
 * trailing gemm). K types therefore use batches of at least 256 columns. */
static int64_t batch_len(const bb_quant_opts *o, int blck, int64_t n) {
    int64_t b = (o->block_size + blck - 1) / blck * blck;
    return b < n ? b : n;
}

bb_status bb_quant_gptq(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out) {
    BB_CHECK(out != NULL, BB_ERR_ARG, "bb_quant_gptq: NULL output");
    *out = NULL;
    gptq_setup s;
    bb_status st = setup_begin(o, in, &s);
    if (st != BB_OK || !s.g) {
        if (st == BB_OK) *out = s.r, s.r = NULL;
        setup_free(&s);
        return st == BB_OK ? st : bb_trace(st, __FILE__, __LINE__, "setup_begin");
    }
    const bb_linalg_backend *be = o->backend;
    const int64_t n = in->cols, m = in->rows;
    float *u = NULL, *wp = NULL, *err = NULL;
    bb_event_begin("quant.gptq");
    if (!be) BB_CALL_GOTO(st, done, bb_linalg_backend_default_get(&be));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&u, (size_t)(n * n) * sizeof *u, "GPTQ inverse factor"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&wp, (size_t)(m * n) * sizeof *wp, "GPTQ working weights"));
    const int64_t bl = batch_len(o, s.t->blck, n);
    const int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    BB_CALL_GOTO(st, done, bb_malloc((void **)&err, (size_t)(m * bl) * sizeof *err, "GPTQ batch errors"));
    /* Permuted copy of W; a dead input (H_jj = 0) gets zero weights (and H_jj = 1), as in GPTQ. */
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) wp[r * n + j] = in->h[s.perm[j] * (n + 1)] == 0 ? 0 : in->w[r * n + s.perm[j]];
    BB_CALL_GOTO(st, done, inverse_factor_f32(be, o, s.name, in->h, s.perm, n, u, &s.r->damp));
    for (int64_t i1 = 0; i1 < n; i1 += bl) {
        const int64_t i2 = i1 + bl < n ? i1 + bl : n;
        BB_CALL_GOTO(st, done, batch_all_rows(&s, in, u, wp, i1, i2, err, threads));
        if (i2 < n)
            BB_CALL_GOTO(st, done,
                         be->gemm(BB_OP_N, BB_OP_N, m, n - i2, i2 - i1, -1.0f, err, i2 - i1, u + i1 * n + i2, n, 1.0f,
                                  wp + i2, n));
    }
    *out = s.r;
    s.r = NULL;
done:
    bb_event_end("quant.gptq", (double)m * (double)n * (double)n * 2 + (double)n * n * n * 4.0 / 3, 0);
    free(u);
    free(wp);
    free(err);
    setup_free(&s);
    return st;
}

/* ---- the reference ---- */

/* Upper Cholesky factor in place, a = U^T U (upper triangle read and written, lower zeroed).
 * Returns 0, or -1 when a pivot is not positive. */
static int chol_upper_f64(double *a, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= a[k * n + j] * a[k * n + j];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double v = a[j * n + i];
            for (int64_t k = 0; k < j; k++) v -= a[k * n + j] * a[k * n + i];
            a[j * n + i] = v / d;
        }
        for (int64_t i = 0; i < j; i++) a[j * n + i] = 0;
    }
    return 0;
}

/* a = U^T U (U upper in a) -> a = (U^T U)^-1 = U^-1 U^-T, full, in double. */
static bb_status inverse_from_chol_f64(double *a, int64_t n) {
    double *v;
    BB_CALL(bb_calloc((void **)&v, (size_t)(n * n), sizeof *v, "reference inverse"));
    for (int64_t j = n - 1; j >= 0; j--) { /* V = U^-1, upper, by back substitution column by column */
        v[j * n + j] = 1.0 / a[j * n + j];
        for (int64_t i = j - 1; i >= 0; i--) {
            double t = 0;
            for (int64_t k = i + 1; k <= j; k++) t += a[i * n + k] * v[k * n + j];
            v[i * n + j] = -t / a[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) {
            double t = 0;
            for (int64_t k = j; k < n; k++) t += v[i * n + k] * v[j * n + k];
            a[i * n + j] = a[j * n + i] = t;
        }
    free(v);
    return BB_OK;
}

bb_status bb_quant_gptq_ref(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out) {
    BB_CHECK(out != NULL, BB_ERR_ARG, "bb_quant_gptq_ref: NULL output");
    *out = NULL;
    gptq_setup s;
    bb_status st = setup_begin(o, in, &s);
    if (st != BB_OK || !s.g) {
        if (st == BB_OK) *out = s.r, s.r = NULL;
        setup_free(&s);
        return st == BB_OK ? st : bb_trace(st, __FILE__, __LINE__, "setup_begin");
    }
    const int64_t n = in->cols, m = in->rows;
    const int blck = s.t->blck;
    double *hp = NULL, *u = NULL, *w = NULL;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&hp, (size_t)(n * n) * sizeof *hp, "reference Gram"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&u, (size_t)(n * n) * sizeof *u, "reference inverse factor"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&w, (size_t)n * sizeof *w, "reference row"));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) hp[i * n + j] = in->h[s.perm[i] * n + s.perm[j]];
    double mean = 0;
    for (int64_t j = 0; j < n; j++) {
        if (hp[j * (n + 1)] == 0) hp[j * (n + 1)] = 1;
        mean += hp[j * (n + 1)];
    }
    mean /= (double)n;
    for (double damp = o->damp;; damp = next_damp(damp)) {
        if (damp > o->damp_max * (1 + 1e-12)) {
            st = damp_failed(s.name, o->damp, damp, o);
            goto done;
        }
        memcpy(u, hp, (size_t)(n * n) * sizeof *u);
        for (int64_t j = 0; j < n; j++) u[j * (n + 1)] += damp * mean;
        if (chol_upper_f64(u, n) != 0) continue;
        BB_CALL_GOTO(st, done, inverse_from_chol_f64(u, n));
        if (chol_upper_f64(u, n) != 0) continue;
        if (damp != o->damp)
            bb_warn("%s: Cholesky of the damped Gram failed at damp %g; GPTQ uses damp %g x mean(diag H)", s.name,
                    o->damp, damp);
        s.r->damp = damp;
        break;
    }
    float x[BB_QK_K], sc[BB_QK_K], of[BB_QK_K];
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = s.r->blocks + (size_t)r * s.r->row_bytes, *blk = row;
        for (int64_t j = 0; j < n; j++) w[j] = in->h[s.perm[j] * (n + 1)] == 0 ? 0 : in->w[r * n + s.perm[j]];
        for (int64_t i = 0; i < n; i++) {
            if (i % blck == 0) {
                int64_t ob = s.perm[i] / blck;
                for (int e = 0; e < blck; e++)
                    x[s.perm[i + e] % blck] = in->mask && !bb_mask_get(in->mask, r, s.perm[i + e]) ? 0 : (float)w[i + e];
                blk = row + (size_t)ob * (size_t)s.t->block_bytes;
                BB_CALL_GOTO(st, done, fit_block(s.t, s.enc, s.g, s.name, r, ob, x, s.imp, blk, sc, of));
            }
            const int e = (int)(s.perm[i] % blck);
            int q;
            const double target = in->mask && !bb_mask_get(in->mask, r, s.perm[i]) ? 0.0 : w[i];
            const float y = grid_round(s.g, target, sc[e], of[e], &q);
            s.g->set(blk, e, q);
            s.r->w_hat[r * n + s.perm[i]] = y;
            const double d = (w[i] - y) / u[i * n + i];
            for (int64_t j = i + 1; j < n; j++) w[j] -= d * u[i * n + j];
        }
    }
    *out = s.r;
    s.r = NULL;
done:
    free(hp);
    free(u);
    free(w);
    setup_free(&s);
    return st;
}
