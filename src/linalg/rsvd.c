/* rsvd.c — randomized SVD of a matrix read in row blocks, with residual and orthogonality checks. */
#include "linalg/rsvd.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"

void bb_rsvd_opts_default(bb_rsvd_opts *o) {
    memset(o, 0, sizeof *o);
    o->rank = 64;
    o->oversample = 8;
    o->power_iters = 2;
    o->residual = 1;
    o->cache_bytes = (int64_t)1 << 30;
}

void bb_rsvd_result_clear(bb_rsvd_result *res) {
    if (!res) return;
    free(res->s);
    free(res->u);
    free(res->v);
    free(res->energy);
    memset(res, 0, sizeof *res);
}

int bb_rsvd_rank_at(const double *energy, int k, double frac) {
    for (int i = 0; i < k; i++)
        if (energy[i] >= frac) return i + 1;
    return -1;
}

/* The row-block reader: blocks point into memory, or into buf after a read. */
typedef struct {
    const bb_rsvd_source *src;
    int64_t block; /* rows per block */
    float *buf;    /* (block, n) when the source is a reader, else NULL */
} blocks;

static bb_status block_get(blocks *b, int64_t row0, int64_t nr, const float **out) {
    if (b->src->data) {
        *out = b->src->data + row0 * b->src->n;
        return BB_OK;
    }
    BB_CALL(b->src->read(b->src->ctx, row0, nr, b->buf));
    *out = b->buf;
    return BB_OK;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* First pass: Y = A Omega (m, l), ||A||_F^2 in double, and the NaN/Inf check. */
static bb_status pass_sketch(blocks *b, const bb_linalg_backend *be, const float *omega, int64_t l, float *y,
                             double *fro2) {
    const bb_rsvd_source *s = b->src;
    double sum = 0;
    for (int64_t r0 = 0; r0 < s->m; r0 += b->block) {
        int64_t nr = min64(b->block, s->m - r0);
        const float *a;
        BB_CALL(block_get(b, r0, nr, &a));
        for (int64_t i = 0; i < nr * s->n; i++) {
            double x = a[i];
            BB_CHECK(
                isfinite(a[i]), BB_ERR_NUMERIC,
                "%s (%lld, %lld): non-finite value %g at row %lld, column %lld; the weights are corrupt or overflowed",
                s->name, (long long)s->m, (long long)s->n, x, (long long)(r0 + i / s->n), (long long)(i % s->n));
            sum += x * x;
        }
        BB_CALL(be->gemm(BB_OP_N, BB_OP_N, nr, l, s->n, 1.0f, a, s->n, omega, l, 0.0f, y + r0 * l, l));
    }
    *fro2 = sum;
    return BB_OK;
}

/* Z (n, l) = A^T Q, accumulated over row blocks (Q (m, l)). */
static bb_status pass_at(blocks *b, const bb_linalg_backend *be, const float *q, int64_t l, float *z) {
    const bb_rsvd_source *s = b->src;
    for (int64_t r0 = 0; r0 < s->m; r0 += b->block) {
        int64_t nr = min64(b->block, s->m - r0);
        const float *a;
        BB_CALL(block_get(b, r0, nr, &a));
        BB_CALL(be->gemm(BB_OP_T, BB_OP_N, s->n, l, nr, 1.0f, a, s->n, q + r0 * l, l, r0 ? 1.0f : 0.0f, z, l));
    }
    return BB_OK;
}

/* Y (m, l) = A Z, Z (n, l). */
static bb_status pass_a(blocks *b, const bb_linalg_backend *be, const float *z, int64_t l, float *y) {
    const bb_rsvd_source *s = b->src;
    for (int64_t r0 = 0; r0 < s->m; r0 += b->block) {
        int64_t nr = min64(b->block, s->m - r0);
        const float *a;
        BB_CALL(block_get(b, r0, nr, &a));
        BB_CALL(be->gemm(BB_OP_N, BB_OP_N, nr, l, s->n, 1.0f, a, s->n, z, l, 0.0f, y + r0 * l, l));
    }
    return BB_OK;
}

/* ||A - U S V^T||_F^2 in double, `rows` rows at a time (at most the reader's
 * block): the block of the difference is formed in `work` (rows, n), never the
 * whole m x n product. us is scratch (rows, k). */
static bb_status pass_residual(blocks *b, const bb_linalg_backend *be, const float *u, const float *sv, const float *v,
                               int k, int64_t rows, float *work, float *us, double *out) {
    const bb_rsvd_source *s = b->src;
    double sum = 0;
    for (int64_t r0 = 0; r0 < s->m; r0 += rows) {
        int64_t nr = min64(rows, s->m - r0);
        const float *a;
        BB_CALL(block_get(b, r0, nr, &a));
        if (a != work) memcpy(work, a, (size_t)(nr * s->n) * sizeof *work);
        for (int64_t i = 0; i < nr; i++)
            for (int j = 0; j < k; j++) us[i * k + j] = u[(r0 + i) * k + j] * sv[j];
        BB_CALL(be->gemm(BB_OP_N, BB_OP_T, nr, s->n, k, -1.0f, us, k, v, k, 1.0f, work, s->n));
        for (int64_t i = 0; i < nr * s->n; i++) sum += (double)work[i] * work[i];
    }
    *out = sum;
    return BB_OK;
}

/* ||X^T X - I||_F for X (rows, k); g is scratch (k, k). */
static bb_status orth_error(const bb_linalg_backend *be, const float *x, int64_t rows, int k, float *g, double *out) {
    BB_CALL(be->syrk(BB_UPLO_FULL, k, rows, 1.0f, x, k, 0.0f, g, k));
    double sum = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double d = (double)g[i * k + j] - (i == j ? 1.0 : 0.0);
            sum += d * d;
        }
    *out = sqrt(sum);
    return BB_OK;
}

/* The zero matrix: every k-dimensional subspace is optimal; return coordinate
 * vectors so that U and V are still orthonormal. */
static void zero_matrix_result(bb_rsvd_result *r, float *u, float *v) {
    for (int i = 0; i < r->k; i++) {
        r->s[i] = 0.0f;
        r->energy[i] = 1.0;
        u[(int64_t)i * r->k + i] = 1.0f;
        v[(int64_t)i * r->k + i] = 1.0f;
    }
    r->rank50 = r->rank90 = r->rank99 = 0;
}

static bb_status check_opts(const bb_rsvd_source *src, const bb_rsvd_opts *o) {
    const char *nm = src->name ? src->name : "matrix";
    BB_CHECK(src->m > 0 && src->n > 0, BB_ERR_ARG, "randomized SVD of %s: empty matrix (%lld, %lld)", nm,
             (long long)src->m, (long long)src->n);
    BB_CHECK(src->data || src->read, BB_ERR_ARG, "randomized SVD of %s: no data and no row reader", nm);
    int64_t mn = min64(src->m, src->n);
    BB_CHECK(o->rank >= 1 && o->rank <= mn, BB_ERR_ARG,
             "randomized SVD of %s (%lld, %lld): rank %d is outside [1, min(m, n) = %lld]; ask for at most %lld "
             "singular values",
             nm, (long long)src->m, (long long)src->n, o->rank, (long long)mn, (long long)mn);
    BB_CHECK(o->oversample >= 0, BB_ERR_ARG, "randomized SVD of %s: oversample %d is negative", nm, o->oversample);
    BB_CHECK(o->power_iters >= 0, BB_ERR_ARG, "randomized SVD of %s: power_iters %d is negative", nm, o->power_iters);
    BB_CHECK(o->block_rows >= 0, BB_ERR_ARG, "randomized SVD of %s: block_rows %lld is negative", nm,
             (long long)o->block_rows);
    return BB_OK;
}

bb_status bb_rsvd_run(const bb_rsvd_source *src, const bb_rsvd_opts *o, bb_rsvd_result *res) {
    memset(res, 0, sizeof *res);
    BB_CALL(check_opts(src, o));
    const bb_linalg_backend *be = o->backend;
    if (!be) BB_CALL(bb_linalg_backend_default_get(&be));
    const int64_t m = src->m, n = src->n, mn = min64(m, n);
    const int k = o->rank;
    const int64_t l = min64((int64_t)k + o->oversample, mn);
    double t0 = bb_now();

    blocks b = {src, o->block_rows, NULL};
    if (b.block == 0) b.block = src->data ? m : (int64_t)((16u << 20) / sizeof(float)) / n;
    b.block = b.block < 1 ? 1 : min64(b.block, m);
    /* A in memory, read whole by every pass: a device backend keeps one copy for the run (released at out) */
    const int held = src->data && b.block >= m;
    if (held) BB_CALL(bb_linalg_hold(be, src->data, m, n, n));

    float *omega = NULL, *y = NULL, *z = NULL, *ub = NULL, *vt = NULL, *u = NULL, *v = NULL, *work = NULL, *us = NULL,
          *g = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, fail,
                 bb_malloc((void **)&omega, (size_t)(n * l) * sizeof(float), "randomized SVD test matrix (n, k+p)"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&y, (size_t)(m * l) * sizeof(float), "randomized SVD sketch (m, k+p)"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&z, (size_t)(n * l) * sizeof(float), "randomized SVD sketch (n, k+p)"));
    BB_CALL_GOTO(st, fail,
                 bb_malloc((void **)&ub, (size_t)(n * l) * sizeof(float), "randomized SVD factor of B (n, k+p)"));
    BB_CALL_GOTO(st, fail,
                 bb_malloc((void **)&vt, (size_t)(l * l) * sizeof(float), "randomized SVD factor of B (k+p, k+p)"));
    BB_CALL_GOTO(st, fail, bb_calloc((void **)&u, (size_t)(m * k), sizeof(float), "randomized SVD U (m, k)"));
    BB_CALL_GOTO(st, fail, bb_calloc((void **)&v, (size_t)(n * k), sizeof(float), "randomized SVD V (n, k)"));
    BB_CALL_GOTO(st, fail, bb_calloc((void **)&g, (size_t)k * (size_t)k, sizeof(float), "randomized SVD Gram (k, k)"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&res->s, (size_t)l * sizeof(float), "singular values"));
    BB_CALL_GOTO(st, fail, bb_malloc((void **)&res->energy, (size_t)k * sizeof(double), "energy curve"));
    /* The residual works on blocks of about 16 MiB even when A is in memory (one
     * block then), so it never holds a second m x n array. */
    int64_t rrows = min64(b.block, (int64_t)((16u << 20) / sizeof(float)) / n);
    rrows = rrows < 1 ? 1 : rrows;
    if (!src->data || o->residual)
        BB_CALL_GOTO(st, fail,
                     bb_malloc((void **)&work, (size_t)((src->data ? rrows : b.block) * n) * sizeof(float),
                               "randomized SVD row block"));
    b.buf = work;
    res->m = m;
    res->n = n;
    res->k = k;
    res->l = (int)l;
    res->residual = -1;

    /* Column j of Omega is normal(j*n + i): the first columns do not depend on
     * the oversampling, so a larger p only adds directions. */
    bb_rng rng = bb_rng_make(o->seed, bb_rng_stream_id("rsvd.omega"));
    for (int64_t j = 0; j < l; j++)
        for (int64_t i = 0; i < n; i++) omega[i * l + j] = (float)bb_rng_normal(rng, (uint64_t)(j * n + i));

    double fro2 = 0;
    BB_CALL_GOTO(st, fail, pass_sketch(&b, be, omega, l, y, &fro2));
    res->fro = sqrt(fro2);
    double flops = 2.0 * (double)m * (double)n * (double)l;
    if (fro2 == 0) {
        zero_matrix_result(res, u, v);
        if (o->residual) res->residual = 0;
        goto done;
    }
    BB_CALL_GOTO(st, fail, be->qr(m, l, y, l, NULL, 0));
    for (int it = 0; it < o->power_iters; it++) {
        BB_CALL_GOTO(st, fail, pass_at(&b, be, y, l, z));
        BB_CALL_GOTO(st, fail, be->qr(n, l, z, l, NULL, 0));
        BB_CALL_GOTO(st, fail, pass_a(&b, be, z, l, y));
        BB_CALL_GOTO(st, fail, be->qr(m, l, y, l, NULL, 0));
    }
    flops += 4.0 * (double)m * (double)n * (double)l * o->power_iters + 4.0 * (double)(m + n) * l * l * o->power_iters +
             4.0 * (double)m * l * l;
    /* B^T = A^T Q (n, l) = U' S V'^T, so B = V' S U'^T: U = Q V' and V = U'. */
    BB_CALL_GOTO(st, fail, pass_at(&b, be, y, l, z));
    BB_CALL_GOTO(st, fail, be->svd(n, l, z, l, res->s, ub, l, vt, l));
    BB_CALL_GOTO(st, fail, be->gemm(BB_OP_N, BB_OP_T, m, k, l, 1.0f, y, l, vt, l, 0.0f, u, k));
    for (int64_t i = 0; i < n; i++) memcpy(v + i * k, ub + i * l, (size_t)k * sizeof *v);
    flops += 2.0 * (double)m * n * l + 14.0 * (double)n * l * l + 2.0 * (double)m * k * l;

    double cum = 0;
    for (int i = 0; i < k; i++) {
        cum += (double)res->s[i] * res->s[i];
        res->energy[i] = cum / fro2;
    }
    res->rank50 = bb_rsvd_rank_at(res->energy, k, 0.50);
    res->rank90 = bb_rsvd_rank_at(res->energy, k, 0.90);
    res->rank99 = bb_rsvd_rank_at(res->energy, k, 0.99);

    if (o->residual) {
        BB_CALL_GOTO(st, fail,
                     bb_malloc((void **)&us, (size_t)(rrows * k) * sizeof(float), "residual block (rows, k)"));
        double r2 = 0;
        BB_CALL_GOTO(st, fail, pass_residual(&b, be, u, res->s, v, k, rrows, work, us, &r2));
        res->residual = sqrt(r2) / res->fro;
        flops += 2.0 * (double)m * n * k;
    }
done:
    BB_CALL_GOTO(st, fail, orth_error(be, u, m, k, g, &res->orth_u));
    BB_CALL_GOTO(st, fail, orth_error(be, v, n, k, g, &res->orth_v));
    flops += (double)(m + n) * k * k;
    if (o->want_u) {
        res->u = u;
        u = NULL;
    }
    if (o->want_v) {
        res->v = v;
        v = NULL;
    }
    res->flops = flops;
    res->seconds = bb_now() - t0;
    goto out;
fail:
    bb_rsvd_result_clear(res);
out:
    if (held) bb_linalg_release(be, src->data);
    free(omega);
    free(y);
    free(z);
    free(ub);
    free(vt);
    free(u);
    free(v);
    free(work);
    free(us);
    free(g);
    return st;
}

bb_status bb_rsvd_matrix(const char *name, int64_t m, int64_t n, const float *a, const bb_rsvd_opts *o,
                         bb_rsvd_result *res) {
    bb_rsvd_source src = {name ? name : "matrix", m, n, a, NULL, NULL};
    BB_CHECK(a, BB_ERR_ARG, "randomized SVD of %s: no data", src.name);
    BB_CALL(bb_rsvd_run(&src, o, res));
    return BB_OK;
}

static bb_status read_tensor(void *ctx, int64_t row0, int64_t nrows, float *out) {
    return bb_tensor_read_f32(ctx, row0, nrows, out);
}

bb_status bb_rsvd_tensor(const bb_tensor *t, const bb_rsvd_opts *o, bb_rsvd_result *res) {
    memset(res, 0, sizeof *res);
    BB_CHECK(t->ndim == 2, BB_ERR_ARG, "randomized SVD of tensor %s: needs a matrix, it has %d dimensions", t->name,
             t->ndim);
    bb_rsvd_source src = {t->name, t->shape[0], t->shape[1], NULL, read_tensor, (void *)t};
    /* An aligned f32 tensor in memory is used in place, without a copy per block. */
    if (t->dtype == BB_F32 && t->data && !t->gen && (uintptr_t)t->data % sizeof(float) == 0) {
        src.data = t->data;
        BB_CALL(bb_rsvd_run(&src, o, res));
        return BB_OK;
    }
    /* Otherwise convert (or generate) once instead of 2q + 3 times when the copy
     * fits the cache. The cache is optional: plain malloc, and a failure falls
     * back to streaming rather than being an error. */
    float *copy = NULL;
    size_t bytes = (size_t)src.m * (size_t)src.n * sizeof(float);
    if ((int64_t)bytes <= o->cache_bytes) copy = malloc(bytes);
    if (copy) {
        bb_status st = bb_tensor_read_f32(t, 0, src.m, copy);
        if (st == BB_OK) {
            src.data = copy;
            st = bb_rsvd_run(&src, o, res);
        }
        free(copy);
        BB_CALL(st);
        return BB_OK;
    }
    BB_CALL(bb_rsvd_run(&src, o, res));
    return BB_OK;
}
