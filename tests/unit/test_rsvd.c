/* test_rsvd.c — randomized SVD against LAPACKE sgesdd on matrices with known spectra:
 * singular values, residual, orthogonality, energy ranks, determinism, streaming, errors. */
#include <lapacke.h>

#include "core/rng.h"
#include "linalg/rsvd.h"
#include "test.h"

static const bb_linalg_backend *cpu;

/* (rows, r) with orthonormal columns: QR of a Gaussian matrix. */
static float *orthonormal(int64_t rows, int64_t r, uint64_t stream) {
    float *q = malloc(sizeof(float) * (size_t)(rows * r));
    bb_rng_fill_normal(bb_rng_make(99, stream), 0, (size_t)(rows * r), q);
    EXPECT_OK(cpu->qr(rows, r, q, r, NULL, 0));
    return q;
}

/* A = U diag(s) V^T (m, n) row-major with r = min(m, n) terms; true factors returned when asked. */
static float *known(int64_t m, int64_t n, const float *s, uint64_t stream, float **u_out, float **v_out) {
    int64_t r = m < n ? m : n;
    float *u = orthonormal(m, r, stream), *v = orthonormal(n, r, stream + 1);
    float *a = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++) u[i * r + j] *= s[j];
    EXPECT_OK(cpu->gemm(BB_OP_N, BB_OP_T, m, n, r, 1.0f, u, r, v, r, 0.0f, a, n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < r; j++) u[i * r + j] /= s[j];
    if (u_out)
        *u_out = u;
    else
        free(u);
    if (v_out)
        *v_out = v;
    else
        free(v);
    return a;
}

/* Singular values by LAPACKE sgesdd (descending, min(m, n) of them). The row-major
 * A is handed over as the column-major A^T (same singular values): Debian's
 * LAPACKE 3.11 rejects jobz 'N' in its row-major path (argument 11). */
static float *lapack_svals(const float *a, int64_t m, int64_t n) {
    int64_t r = m < n ? m : n;
    float *c = malloc(sizeof(float) * (size_t)(m * n)), *s = malloc(sizeof(float) * (size_t)r), dummy = 0;
    memcpy(c, a, sizeof(float) * (size_t)(m * n));
    int info = LAPACKE_sgesdd(LAPACK_COL_MAJOR, 'N', (int)n, (int)m, c, (int)n, s, &dummy, 1, &dummy, 1);
    EXPECT(info == 0, "LAPACKE_sgesdd returned %d", info);
    free(c);
    return s;
}

static void test_known_spectrum(void) {
    const int64_t shapes[2][2] = {{300, 200}, {180, 420}};
    for (int sh = 0; sh < 2; sh++) {
        int64_t m = shapes[sh][0], n = shapes[sh][1], r = m < n ? m : n;
        float *s = malloc(sizeof(float) * (size_t)r);
        double total = 0;
        for (int64_t i = 0; i < r; i++) {
            s[i] = 10.0f * powf(0.8f, (float)i);
            total += (double)s[i] * s[i];
        }
        float *ut, *vt;
        float *a = known(m, n, s, 10 + (uint64_t)sh * 2, &ut, &vt);
        float *ls = lapack_svals(a, m, n);
        bb_rsvd_opts o;
        bb_rsvd_opts_default(&o);
        o.rank = 20;
        o.want_u = o.want_v = 1;
        bb_rsvd_result res;
        EXPECT_OK(bb_rsvd_matrix("known", m, n, a, &o, &res));
        if (!res.s) goto next;
        EXPECT(res.k == 20 && res.l == 28, "k %d l %d", res.k, res.l);
        double worst = 0;
        for (int i = 0; i < o.rank; i++) {
            double rel = fabs((double)res.s[i] - ls[i]) / ls[i];
            if (rel > worst) worst = rel;
            EXPECT(rel < 1e-4, "(%lld, %lld) sigma_%d: rsvd %.8g vs sgesdd %.8g (rel %.2g)", (long long)m, (long long)n,
                   i, res.s[i], ls[i], rel);
        }
        printf("  (%lld, %lld) k=20 p=8 q=2: max relative error of sigma_1..20 vs sgesdd %.2e, residual %.6f, "
               "||U^TU-I|| %.1e, ||V^TV-I|| %.1e\n",
               (long long)m, (long long)n, worst, res.residual, res.orth_u, res.orth_v);
        double tail = 0;
        for (int64_t i = o.rank; i < r; i++) tail += (double)s[i] * s[i];
        EXPECT_NEAR(res.fro, sqrt(total), 1e-5 * sqrt(total));
        EXPECT_NEAR(res.residual, sqrt(tail / total), 1e-4);
        EXPECT(res.orth_u < 1e-5 && res.orth_v < 1e-5, "orthogonality %.3g %.3g", res.orth_u, res.orth_v);
        /* the leading singular vectors are the planted ones (up to sign) */
        for (int j = 0; j < 10; j++) {
            double du = 0, dv = 0;
            for (int64_t i = 0; i < m; i++) du += (double)res.u[i * 20 + j] * ut[i * r + j];
            for (int64_t i = 0; i < n; i++) dv += (double)res.v[i * 20 + j] * vt[i * r + j];
            EXPECT(fabs(fabs(du) - 1) < 1e-4 && fabs(fabs(dv) - 1) < 1e-4, "vector %d: |u.u*| %.7f |v.v*| %.7f", j, du,
                   dv);
        }
        /* energy ranks from the known spectrum */
        int want[3] = {-1, -1, -1};
        const double fr[3] = {0.5, 0.9, 0.99};
        double cum = 0;
        for (int i = 0; i < o.rank; i++) {
            cum += (double)s[i] * s[i];
            for (int t = 0; t < 3; t++)
                if (want[t] < 0 && cum / total >= fr[t]) want[t] = i + 1;
        }
        EXPECT(res.rank50 == want[0] && res.rank90 == want[1] && res.rank99 == want[2],
               "ranks %d %d %d, expected %d %d %d", res.rank50, res.rank90, res.rank99, want[0], want[1], want[2]);
        EXPECT_NEAR(res.energy[o.rank - 1], 1 - tail / total, 1e-5);
    next:
        bb_rsvd_result_clear(&res);
        free(s);
        free(a);
        free(ls);
        free(ut);
        free(vt);
    }
}

/* A flat spectrum: the top k hold k/r of the energy, so 99 % is "> k". */
static void test_flat_spectrum(void) {
    const int64_t m = 120, n = 100;
    float s[100];
    for (int i = 0; i < 100; i++) s[i] = 1.0f;
    float *a = known(m, n, s, 30, NULL, NULL);
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    o.rank = 60;
    bb_rsvd_result res;
    EXPECT_OK(bb_rsvd_matrix("flat", m, n, a, &o, &res));
    EXPECT(res.rank50 == 50 && res.rank90 == -1 && res.rank99 == -1, "ranks %d %d %d", res.rank50, res.rank90,
           res.rank99);
    EXPECT(res.u == NULL && res.v == NULL, "vectors only when asked for");
    bb_rsvd_result_clear(&res);
    /* k = min(m, n): the sketch covers the whole range and the SVD is exact */
    o.rank = 100;
    EXPECT_OK(bb_rsvd_matrix("flat", m, n, a, &o, &res));
    EXPECT(res.l == 100, "sketch clipped to min(m, n): l = %d", res.l);
    EXPECT(res.residual < 1e-5 && res.rank99 == 99, "full rank: residual %.3g rank99 %d", res.residual, res.rank99);
    bb_rsvd_result_clear(&res);
    free(a);
}

/* A slowly decaying spectrum (sigma_i = 1/(1+i)) is where power iterations pay:
 * the error of sigma_1..k must shrink with q. */
static void test_power_iterations(void) {
    const int64_t m = 256, n = 192;
    float s[192];
    for (int i = 0; i < 192; i++) s[i] = 1.0f / (1.0f + (float)i);
    float *a = known(m, n, s, 50, NULL, NULL);
    float *ls = lapack_svals(a, m, n);
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    o.rank = 16;
    double prev = 1e9;
    for (int q = 0; q <= 3; q++) {
        o.power_iters = q;
        bb_rsvd_result res;
        EXPECT_OK(bb_rsvd_matrix("harmonic", m, n, a, &o, &res));
        if (!res.s) continue;
        double worst = 0;
        for (int i = 0; i < o.rank; i++) {
            double rel = fabs((double)res.s[i] - ls[i]) / ls[i];
            if (rel > worst) worst = rel;
        }
        double best = 0;
        for (int i = o.rank; i < 192; i++) best += (double)s[i] * s[i];
        printf("  harmonic (256, 192) k=16 p=8 q=%d: max relative error of sigma_1..16 %.2e, residual %.5f (optimal "
               "%.5f)\n",
               q, worst, res.residual, sqrt(best) / res.fro);
        EXPECT(worst < prev, "q=%d: error %.3g did not shrink from %.3g", q, worst, prev);
        if (q == 2) EXPECT(worst < 1e-2, "q=2: max relative error %.3g", worst);
        prev = worst;
        bb_rsvd_result_clear(&res);
    }
    free(a);
    free(ls);
}

static void test_determinism(void) {
    const int64_t m = 150, n = 130;
    float *a = malloc(sizeof(float) * (size_t)(m * n));
    bb_rng_fill_normal(bb_rng_make(5, 6), 0, (size_t)(m * n), a);
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    o.rank = 16;
    o.seed = 42;
    o.want_u = o.want_v = 1;
    bb_rsvd_result r1, r2, r3;
    EXPECT_OK(bb_rsvd_matrix("det", m, n, a, &o, &r1));
    EXPECT_OK(bb_rsvd_matrix("det", m, n, a, &o, &r2));
    o.seed = 43;
    EXPECT_OK(bb_rsvd_matrix("det", m, n, a, &o, &r3));
    if (r1.s && r2.s && r3.s) {
        EXPECT(!memcmp(r1.s, r2.s, 16 * sizeof(float)) && !memcmp(r1.u, r2.u, sizeof(float) * (size_t)(m * 16)) &&
                   !memcmp(r1.v, r2.v, sizeof(float) * (size_t)(n * 16)) && r1.residual == r2.residual,
               "same seed must give bitwise the same result");
        EXPECT(memcmp(r1.u, r3.u, sizeof(float) * (size_t)(m * 16)) != 0, "another seed gives another sketch");
    }
    bb_rsvd_result_clear(&r1);
    bb_rsvd_result_clear(&r2);
    bb_rsvd_result_clear(&r3);
    free(a);
}

typedef struct {
    const float *a;
    int64_t n;
    int calls;
} rows_ctx;

static bb_status read_rows(void *ctx, int64_t row0, int64_t nrows, float *out) {
    rows_ctx *c = ctx;
    memcpy(out, c->a + row0 * c->n, sizeof(float) * (size_t)(nrows * c->n));
    c->calls++;
    return BB_OK;
}

/* A row reader with 7-row blocks gives the in-memory result (up to summation order). */
static void test_streaming(void) {
    const int64_t m = 200, n = 90;
    float s[90];
    for (int i = 0; i < 90; i++) s[i] = 1.0f / (1.0f + (float)i);
    float *a = known(m, n, s, 40, NULL, NULL);
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    o.rank = 12;
    bb_rsvd_result whole, part;
    EXPECT_OK(bb_rsvd_matrix("stream", m, n, a, &o, &whole));
    rows_ctx c = {a, n, 0};
    bb_rsvd_source src = {"stream", m, n, NULL, read_rows, &c};
    o.block_rows = 7;
    EXPECT_OK(bb_rsvd_run(&src, &o, &part));
    /* (2q + 2) passes plus the residual pass, 29 blocks each */
    EXPECT(c.calls == 7 * 29, "reader calls %d, expected %d", c.calls, 7 * 29);
    if (whole.s && part.s) {
        for (int i = 0; i < 12; i++) EXPECT_NEAR(part.s[i], whole.s[i], 1e-5 * whole.s[0]);
        EXPECT_NEAR(part.residual, whole.residual, 1e-5);
        EXPECT(part.rank90 == whole.rank90, "rank90 %d vs %d", part.rank90, whole.rank90);
    }
    bb_rsvd_result_clear(&whole);
    bb_rsvd_result_clear(&part);
    /* the same on the reference backend (plain loops in double) */
    const bb_linalg_backend *ref;
    EXPECT_OK(bb_linalg_backend_get("ref", &ref));
    o.backend = ref;
    o.block_rows = 0;
    bb_rsvd_opts oc = o;
    oc.backend = cpu;
    EXPECT_OK(bb_rsvd_matrix("stream", m, n, a, &o, &part));
    EXPECT_OK(bb_rsvd_matrix("stream", m, n, a, &oc, &whole));
    if (whole.s && part.s)
        for (int i = 0; i < 12; i++) EXPECT_NEAR(part.s[i], whole.s[i], 1e-5 * whole.s[0]);
    bb_rsvd_result_clear(&whole);
    bb_rsvd_result_clear(&part);
    free(a);
}

static void test_errors(void) {
    const int64_t m = 40, n = 30;
    float *a = calloc((size_t)(m * n), sizeof(float));
    bb_rsvd_opts o;
    bb_rsvd_opts_default(&o);
    bb_rsvd_result res;
    o.rank = 31;
    EXPECT_ERR(bb_rsvd_matrix("blk.2.ffn_up.weight", m, n, a, &o, &res), BB_ERR_ARG,
               "blk.2.ffn_up.weight (40, 30): rank 31 is outside [1, min(m, n) = 30]");
    EXPECT(res.s == NULL, "no result on error");
    o.rank = 0;
    EXPECT_ERR(bb_rsvd_matrix("m", m, n, a, &o, &res), BB_ERR_ARG, "rank 0 is outside");
    /* the zero matrix is valid: zero singular values, orthonormal vectors */
    o.rank = 5;
    o.want_u = 1;
    EXPECT_OK(bb_rsvd_matrix("zero", m, n, a, &o, &res));
    EXPECT(res.s && res.s[0] == 0 && res.fro == 0 && res.orth_u == 0 && res.residual == 0 && res.rank50 == 0,
           "zero matrix result");
    bb_rsvd_result_clear(&res);
    bb_rsvd_result_clear(&res);
    /* a NaN in a tensor is found and named */
    a[3 * n + 5] = NAN;
    bb_tensor t;
    int64_t shape[2] = {m, n};
    EXPECT_OK(bb_tensor_init_memory(&t, "blk.0.attn_q.weight", BB_F32, 2, shape, a, sizeof(float) * (size_t)(m * n)));
    EXPECT_ERR(bb_rsvd_tensor(&t, &o, &res), BB_ERR_NUMERIC,
               "blk.0.attn_q.weight (40, 30): non-finite value nan at row 3, column 5");
    a[3 * n + 5] = INFINITY;
    rows_ctx c = {a, n, 0};
    bb_rsvd_source src = {"streamed", m, n, NULL, read_rows, &c};
    o.block_rows = 2;
    EXPECT_ERR(bb_rsvd_run(&src, &o, &res), BB_ERR_NUMERIC,
               "streamed (40, 30): non-finite value inf at row 3, column 5");
    int64_t vshape[1] = {m};
    EXPECT_OK(bb_tensor_init_memory(&t, "output_norm.weight", BB_F32, 1, vshape, a, sizeof(float) * (size_t)m));
    EXPECT_ERR(bb_rsvd_tensor(&t, &o, &res), BB_ERR_ARG, "output_norm.weight: needs a matrix");
    free(a);
}

int main(void) {
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    if (!cpu) return TEST_DONE();
    TEST_RUN(test_known_spectrum);
    TEST_RUN(test_flat_spectrum);
    TEST_RUN(test_power_iterations);
    TEST_RUN(test_determinism);
    TEST_RUN(test_streaming);
    TEST_RUN(test_errors);
    return TEST_DONE();
}
