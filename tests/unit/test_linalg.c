/* test_linalg.c — the "cpu" backend (OpenBLAS/LAPACKE) against the plain-C "ref" backend,
 * operation by operation, with tolerances tol = abs + rel * |ref|. */
#include "core/rng.h"
#include "linalg/backend.h"
#include "test.h"

static const bb_linalg_backend *cpu, *ref;

/* (rows, cols) row-major with leading dimension ld, N(0, 1) entries; padding gets a marker value. */
static float *randmat(int64_t rows, int64_t cols, int64_t ld, uint64_t stream) {
    float *a = malloc(sizeof(float) * (size_t)(rows * ld + 1));
    for (int64_t i = 0; i < rows * ld; i++) a[i] = 777.0f;
    bb_rng r = bb_rng_make(1234, stream);
    for (int64_t i = 0; i < rows; i++) bb_rng_fill_normal(r, (uint64_t)(i * cols), (size_t)cols, a + i * ld);
    return a;
}

static float *dup(const float *a, size_t n) {
    float *b = malloc(sizeof(float) * (n ? n : 1));
    memcpy(b, a, sizeof(float) * n);
    return b;
}

/* Elementwise check of x against ref (rows, cols), both with leading dimension ld.
 * Reports the first mismatch and the max error; returns the number of mismatches. */
static int compare(const char *what, const float *x, const float *r, int64_t rows, int64_t cols, int64_t ld,
                   double abs_tol, double rel_tol) {
    int bad = 0;
    double maxerr = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double d = fabs((double)x[i * ld + j] - r[i * ld + j]);
            if (d > maxerr || d != d) maxerr = d;
            if (!(d <= abs_tol + rel_tol * fabs(r[i * ld + j]))) {
                if (!bad)
                    fprintf(stderr, "  %s: first mismatch at (%lld, %lld): %.9g vs ref %.9g\n", what, (long long)i,
                            (long long)j, x[i * ld + j], r[i * ld + j]);
                bad++;
            }
        }
    EXPECT(bad == 0, "%s: %d of %lld entries outside tol %g + %g*|ref| (max error %.3g)", what, bad,
           (long long)(rows * cols), abs_tol, rel_tol, maxerr);
    return bad;
}

/* SPD test matrix X^T X / k + shift I, (n, n) with leading dimension ld. */
static float *spd(int64_t n, int64_t ld, uint64_t stream) {
    int64_t k = n + 5;
    float *x = randmat(k, n, n, stream), *a = randmat(n, n, ld, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++) s += (double)x[p * n + i] * x[p * n + j];
            a[i * ld + j] = (float)(s / (double)k + (i == j ? 0.5 : 0.0));
        }
    free(x);
    return a;
}

static void test_registry(void) {
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    EXPECT_OK(bb_linalg_backend_get("ref", &ref));
    const bb_linalg_backend *b = NULL;
    EXPECT_ERR(bb_linalg_backend_get("tpu", &b), BB_ERR_ARG, "available: cpu, ref");
    EXPECT(b == NULL, "failed lookup leaves NULL");
    EXPECT_ERR(bb_linalg_backend_register(&bb_linalg_backend_cpu), BB_ERR_ARG, "already registered");
    bb_linalg_backend half = {.name = "half", .gemm = bb_linalg_backend_cpu.gemm};
    EXPECT_ERR(bb_linalg_backend_register(&half), BB_ERR_ARG, "lacks an operation");
}

static void test_gemm(void) {
    const int64_t m = 37, n = 29, k = 41;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* padded leading dimensions check that strides are honoured */
            int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 4;
            float *a = randmat(ta ? k : m, ta ? m : k, lda, 1), *b = randmat(tb ? n : k, tb ? k : n, ldb, 2);
            float *c0 = randmat(m, n, ldc, 3), *c1 = dup(c0, (size_t)(m * ldc));
            EXPECT_OK(cpu->gemm(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, -0.5f, c0, ldc));
            EXPECT_OK(ref->gemm(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, -0.5f, c1, ldc));
            char what[32];
            snprintf(what, sizeof what, "gemm %c%c", ta ? 'T' : 'N', tb ? 'T' : 'N');
            compare(what, c0, c1, m, ldc, ldc, 1e-5, 1e-5); /* includes the padding, which must be untouched */
            free(a);
            free(b);
            free(c0);
            free(c1);
        }
    float c = 5.0f;
    EXPECT_OK(cpu->gemm(BB_OP_N, BB_OP_N, 1, 1, 0, 1.0f, &c, 1, &c, 1, 0.0f, &c, 1));
    EXPECT(c == 0.0f, "k = 0 with beta = 0 clears C (got %g)", c);
    float a[4] = {0};
    EXPECT_ERR(cpu->gemm(BB_OP_N, BB_OP_N, 2, 2, 2, 1, a, 1, a, 2, 0, a, 2), BB_ERR_ARG, "gemm A: leading dimension 1");
    EXPECT_ERR(ref->gemm(BB_OP_N, BB_OP_N, -1, 2, 2, 1, a, 2, a, 2, 0, a, 2), BB_ERR_ARG, "negative size");
}

static void test_syrk(void) {
    const int64_t n = 33, k = 50, ld = n + 1;
    float *a = randmat(k, n, n, 4);
    for (int u = 0; u < 3; u++) {
        float *c0 = randmat(n, n, ld, 5);
        if (u == BB_UPLO_FULL) /* FULL accumulates into a symmetric C */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < i; j++) c0[i * ld + j] = c0[j * ld + i];
        float *c1 = dup(c0, (size_t)(n * ld));
        EXPECT_OK(cpu->syrk((bb_uplo)u, n, k, 1.5f, a, n, 0.25f, c0, ld));
        EXPECT_OK(ref->syrk((bb_uplo)u, n, k, 1.5f, a, n, 0.25f, c1, ld));
        compare(u == 0 ? "syrk upper" : u == 1 ? "syrk lower" : "syrk full", c0, c1, n, ld, ld, 1e-4, 1e-5);
        free(c0);
        free(c1);
    }
    free(a);
}

static void test_potrf(void) {
    const int64_t n = 45, ld = 48;
    for (int u = 0; u < 2; u++) {
        float *a0 = spd(n, ld, 6), *a1 = dup(a0, (size_t)(n * ld));
        int64_t piv = 99;
        EXPECT_OK(cpu->potrf((bb_uplo)u, n, a0, ld, &piv));
        EXPECT(piv == -1, "success sets the pivot to -1, got %lld", (long long)piv);
        EXPECT_OK(ref->potrf((bb_uplo)u, n, a1, ld, NULL));
        compare(u ? "potrf lower" : "potrf upper", a0, a1, n, ld, ld, 1e-5, 1e-4);
        free(a0);
        free(a1);
    }
    /* Positive definite up to pivot 2, where the leading 3x3 minor turns negative. */
    float bad[16] = {4, 2, 0, 0, 2, 5, 3, 0, 0, 3, 1, 0, 0, 0, 0, 1};
    for (int b = 0; b < 2; b++) {
        const bb_linalg_backend *be = b ? ref : cpu;
        float x[16];
        memcpy(x, bad, sizeof x);
        int64_t piv = -7;
        EXPECT_ERR(be->potrf(BB_UPLO_LOWER, 4, x, 4, &piv), BB_ERR_NUMERIC, "not positive definite at pivot 2");
        EXPECT(piv == 2, "%s: failing pivot %lld, expected 2", be->name, (long long)piv);
    }
}

static void test_trsm(void) {
    const int64_t m = 23, n = 17;
    for (int side = 0; side < 2; side++)
        for (int u = 0; u < 2; u++)
            for (int op = 0; op < 2; op++) {
                int64_t nt = side ? n : m, ldt = nt + 2, ldb = n + 1;
                float *t = randmat(nt, nt, ldt, 7);
                /* a dominant diagonal keeps the solve well conditioned */
                for (int64_t i = 0; i < nt; i++) {
                    for (int64_t j = 0; j < nt; j++) t[i * ldt + j] *= 0.1f;
                    t[i * ldt + i] = 2.0f + fabsf(t[i * ldt + i]);
                }
                float *b0 = randmat(m, n, ldb, 8), *b1 = dup(b0, (size_t)(m * ldb));
                EXPECT_OK(cpu->trsm((bb_side)side, (bb_uplo)u, (bb_op)op, m, n, 2.0f, t, ldt, b0, ldb));
                EXPECT_OK(ref->trsm((bb_side)side, (bb_uplo)u, (bb_op)op, m, n, 2.0f, t, ldt, b1, ldb));
                char what[48];
                snprintf(what, sizeof what, "trsm %s %s %s", side ? "right" : "left", u ? "lower" : "upper",
                         op ? "T" : "N");
                compare(what, b0, b1, m, ldb, ldb, 1e-5, 1e-4);
                free(t);
                free(b0);
                free(b1);
            }
    float z[4] = {1, 0, 0, 0}, b[2] = {1, 1};
    EXPECT_ERR(cpu->trsm(BB_SIDE_LEFT, BB_UPLO_LOWER, BB_OP_N, 2, 1, 1, z, 2, b, 1), BB_ERR_NUMERIC, "singular");
}

static void test_potri(void) {
    const int64_t n = 30, ld = 31;
    for (int u = 0; u < 2; u++) {
        float *orig = spd(n, ld, 9), *a0 = dup(orig, (size_t)(n * ld)), *a1 = dup(orig, (size_t)(n * ld));
        EXPECT_OK(cpu->potrf((bb_uplo)u, n, a0, ld, NULL));
        EXPECT_OK(cpu->potri((bb_uplo)u, n, a0, ld));
        EXPECT_OK(ref->potrf((bb_uplo)u, n, a1, ld, NULL));
        EXPECT_OK(ref->potri((bb_uplo)u, n, a1, ld));
        compare(u ? "potri lower" : "potri upper", a0, a1, n, n, ld, 1e-4, 1e-3);
        /* A inv(A) = I */
        double worst = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < n; p++) s += (double)orig[i * ld + p] * a0[p * ld + j];
                double e = fabs(s - (i == j));
                if (e > worst) worst = e;
            }
        EXPECT(worst < 1e-4, "potri: max |A inv(A) - I| = %.3g", worst);
        free(orig);
        free(a0);
        free(a1);
    }
}

/* Largest |X^T X - I| entry of X (rows, cols). */
static double orth_err(const float *x, int64_t rows, int64_t cols, int64_t ld) {
    double worst = 0;
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t p = 0; p < rows; p++) s += (double)x[p * ld + i] * x[p * ld + j];
            double e = fabs(s - (i == j));
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_qr(void) {
    const int64_t m = 60, n = 21, ld = 24;
    float *a0 = randmat(m, n, ld, 10), *a1 = dup(a0, (size_t)(m * ld)), *orig = dup(a0, (size_t)(m * ld));
    float *r0 = calloc((size_t)(n * n), sizeof(float)), *r1 = calloc((size_t)(n * n), sizeof(float));
    EXPECT_OK(cpu->qr(m, n, a0, ld, r0, n));
    EXPECT_OK(ref->qr(m, n, a1, ld, r1, n));
    compare("qr Q", a0, a1, m, n, ld, 1e-5, 1e-4);
    compare("qr R", r0, r1, n, n, n, 1e-5, 1e-4);
    EXPECT(orth_err(a0, m, n, ld) < 1e-5, "cpu Q^T Q - I = %.3g", orth_err(a0, m, n, ld));
    double worst = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p <= j; p++) s += (double)a0[i * ld + p] * r0[p * n + j];
            if (fabs(s - orig[i * ld + j]) > worst) worst = fabs(s - orig[i * ld + j]);
        }
    EXPECT(worst < 1e-5, "QR reproduces A: max error %.3g", worst);
    EXPECT_ERR(cpu->qr(3, 4, a0, 4, NULL, 0), BB_ERR_ARG, "rows >= cols");
    free(a0);
    free(a1);
    free(orig);
    free(r0);
    free(r1);
}

/* Column i of X and of R agree up to sign (|x_i . r_i| = 1). */
static void same_columns(const char *what, const float *x, const float *r, int64_t rows, int64_t cols, int64_t ld) {
    for (int64_t i = 0; i < cols; i++) {
        double d = 0;
        for (int64_t p = 0; p < rows; p++) d += (double)x[p * ld + i] * r[p * ld + i];
        EXPECT(fabs(fabs(d) - 1) < 1e-4, "%s: column %lld: |x . ref| = %.9g", what, (long long)i, fabs(d));
    }
}

static void test_svd(void) {
    for (int wide = 0; wide < 2; wide++) {
        int64_t m = wide ? 19 : 47, n = wide ? 47 : 19, mn = 19;
        float *a0 = randmat(m, n, n, 11 + wide), *a1 = dup(a0, (size_t)(m * n)), *a2 = dup(a0, (size_t)(m * n));
        float *orig = dup(a0, (size_t)(m * n));
        float s0[19], s1[19], s2[19];
        float *u0 = malloc(sizeof(float) * (size_t)(m * mn)), *u1 = malloc(sizeof(float) * (size_t)(m * mn));
        float *v0 = malloc(sizeof(float) * (size_t)(mn * n)), *v1 = malloc(sizeof(float) * (size_t)(mn * n));
        EXPECT_OK(cpu->svd(m, n, a0, n, s0, u0, mn, v0, n));
        EXPECT_OK(ref->svd(m, n, a1, n, s1, u1, mn, v1, n));
        EXPECT_OK(cpu->svd(m, n, a2, n, s2, NULL, 0, NULL, 0));
        compare(wide ? "svd s (wide)" : "svd s (tall)", s0, s1, 1, mn, mn, 1e-5, 1e-5);
        compare("svd s without vectors", s2, s1, 1, mn, mn, 1e-5, 1e-5);
        for (int i = 1; i < mn; i++) EXPECT(s0[i] <= s0[i - 1], "descending at %d", i);
        same_columns("svd U", u0, u1, m, mn, mn);
        /* rows of Vt: compare as columns of the transposed layout */
        for (int64_t i = 0; i < mn; i++) {
            double d = 0;
            for (int64_t p = 0; p < n; p++) d += (double)v0[i * n + p] * v1[i * n + p];
            EXPECT(fabs(fabs(d) - 1) < 1e-4, "svd Vt row %lld: |x . ref| = %.9g", (long long)i, fabs(d));
        }
        double worst = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < mn; p++) s += (double)u1[i * mn + p] * s1[p] * v1[p * n + j];
                if (fabs(s - orig[i * n + j]) > worst) worst = fabs(s - orig[i * n + j]);
            }
        EXPECT(worst < 1e-5, "ref SVD reproduces A: max error %.3g", worst);
        free(a0);
        free(a1);
        free(a2);
        free(orig);
        free(u0);
        free(u1);
        free(v0);
        free(v1);
    }
}

static void test_syevd(void) {
    const int64_t n = 26, ld = 27;
    float *a0 = spd(n, ld, 13), *a1 = dup(a0, (size_t)(n * ld));
    float w0[26], w1[26];
    /* syevd reads the upper triangle only: spoil the lower one */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < i; j++) a0[i * ld + j] = a1[i * ld + j] = -1e3f;
    EXPECT_OK(cpu->syevd(n, a0, ld, w0));
    EXPECT_OK(ref->syevd(n, a1, ld, w1));
    compare("syevd w", w0, w1, 1, n, n, 1e-5, 1e-5);
    for (int i = 1; i < n; i++) EXPECT(w0[i] >= w0[i - 1], "ascending at %d", i);
    same_columns("syevd Z", a0, a1, n, n, ld);
    free(a0);
    free(a1);
}

int main(void) {
    TEST_RUN(test_registry);
    if (!cpu || !ref) return TEST_DONE();
    TEST_RUN(test_gemm);
    TEST_RUN(test_syrk);
    TEST_RUN(test_potrf);
    TEST_RUN(test_trsm);
    TEST_RUN(test_potri);
    TEST_RUN(test_qr);
    TEST_RUN(test_svd);
    TEST_RUN(test_syevd);
    return TEST_DONE();
}
