/* test_cuda_linalg.c — the cuda backend against the plain-C "ref" backend (double loops) and against
 * fp64 sums: gemm, syrk, potrf, trsm, potri, qr, svd, syevd through the host table; the Gram in
 * fp32/tf32/bf16 with its accuracy printed; GPTQ's inverse factor against the cpu potrf-potri-potrf;
 * the randomized SVD against LAPACK's full SVD. Tolerances are stated at each check (relative
 * Frobenius norms). Skips (77) without CUDA or a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#include <stdint.h>

#include "cuda/check.h"
#include "compress/heal.h"
#include "compress/lora.h"
#include "cuda/linalg_cuda.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand())); }
static float *randn(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = nrand();
    return p;
}
static float *copyf(const float *a, int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    memcpy(p, a, (size_t)n * sizeof *p);
    return p;
}
/* ||a - b||_F / ||b||_F over the (rows, cols) block, with leading dimensions. */
static double rel(const float *a, const float *b, int64_t rows, int64_t cols, int64_t ld) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double d = (double)a[i * ld + j] - b[i * ld + j];
            num += d * d;
            den += (double)b[i * ld + j] * b[i * ld + j];
        }
    return sqrt(num / (den > 0 ? den : 1));
}
/* A (n, n) SPD, well conditioned: B^T B / n + I. */
static float *spd(int64_t n) {
    float *b = randn(n * n), *a = malloc((size_t)(n * n) * sizeof *a);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += (double)b[k * n + i] * b[k * n + j];
            a[i * n + j] = (float)(s / n + (i == j));
        }
    free(b);
    return a;
}

static const bb_linalg_backend *cu, *ref;

static void test_gemm(void) {
    const int64_t m = 70, n = 45, k = 130;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *a = randn(m * k), *b = randn(k * n), *c0 = randn(m * n);
            float *c1 = copyf(c0, m * n), *c2 = copyf(c0, m * n);
            int64_t lda = ta ? m : k, ldb = tb ? k : n;
            EXPECT_OK(cu->gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c1, n));
            EXPECT_OK(ref->gemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c2, n));
            double e = rel(c1, c2, m, n, n);
            EXPECT(e < 1e-5, "gemm ta=%d tb=%d: %g (tol 1e-5)", ta, tb, e);
            free(a), free(b), free(c0), free(c1), free(c2);
        }
}

/* "cuda-auto" against "cpu": a gemm below its 1 GFLOP threshold (the cpu table: identical bytes) and one
 * above it (the GPU: 1e-5), and a potrf on each side of it. */
static void test_auto(void) {
    const bb_linalg_backend *au = NULL, *cpu = NULL;
    EXPECT_OK(bb_linalg_backend_get("cuda-auto", &au));
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    if (!au || !cpu) return;
    const int64_t shapes[2][3] = {{64, 48, 96}, {1024, 1024, 512}}; /* 0.6 MFLOP, 1.07 GFLOP */
    for (int big = 0; big < 2; big++) {
        int64_t m = shapes[big][0], n = shapes[big][1], k = shapes[big][2];
        float *a = randn(m * k), *b = randn(k * n), *c1 = calloc((size_t)(m * n), 4), *c2 = calloc((size_t)(m * n), 4);
        EXPECT_OK(au->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
        EXPECT_OK(cpu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n));
        double e = rel(c1, c2, m, n, n);
        if (big)
            EXPECT(e < 1e-5, "cuda-auto gemm %lldx%lldx%lld: %g (tol 1e-5)", (long long)m, (long long)n, (long long)k, e);
        else
            EXPECT(memcmp(c1, c2, (size_t)(m * n) * 4) == 0, "cuda-auto small gemm is not the cpu's");
        free(a), free(b), free(c1), free(c2);
    }
    for (int big = 0; big < 2; big++) {
        int64_t n = big ? 1500 : 200; /* 1.1 GFLOP / 2.7 MFLOP */
        float *h = spd(n), *h1 = copyf(h, n * n), *h2 = copyf(h, n * n);
        int64_t bad1 = -1, bad2 = -1;
        EXPECT_OK(au->potrf(BB_UPLO_UPPER, n, h1, n, &bad1));
        EXPECT_OK(cpu->potrf(BB_UPLO_UPPER, n, h2, n, &bad2));
        double e = rel(h1, h2, n, n, n);
        EXPECT(big ? e < 1e-5 : e == 0, "cuda-auto potrf n=%lld: %g", (long long)n, e);
        free(h), free(h1), free(h2);
    }
}

/* Resident operands (hold/release): a held operand gives the same bytes as a copied one; after release a
 * changed host matrix is read again (a stale copy would give the old product); a block of the held matrix
 * (other shape or ld) is copied as usual; cuda-auto sends a product under its bar to the GPU when an
 * operand is held (the "cuda" table's bytes) and to the CPU when not (the "cpu" table's bytes); more holds
 * than slots are accepted. */
static void test_hold(void) {
    const bb_linalg_backend *au = NULL, *cpu = NULL;
    EXPECT_OK(bb_linalg_backend_get("cuda-auto", &au));
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    if (!au || !cpu) return;
    const int64_t m = 256, n = 192, k = 320; /* 31 MFLOP: under the 1 GFLOP bar, over 1/64 of it */
    float *a = randn(m * k), *b = randn(k * n), *c0 = calloc((size_t)(m * n), 4), *c1 = calloc((size_t)(m * n), 4);
    float *c2 = calloc((size_t)(m * n), 4);
    EXPECT_OK(cu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c0, n));
    EXPECT_OK(bb_linalg_hold(cu, a, m, k, k));
    EXPECT_OK(cu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT(memcmp(c0, c1, (size_t)(m * n) * 4) == 0, "gemm with A held differs from A copied");
    /* a block of A (rows 0..m/2, cols 0..k/2, ld k): not the held shape, copied */
    EXPECT_OK(cu->gemm(BB_OP_N, BB_OP_N, m / 2, n, k / 2, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT_OK(ref->gemm(BB_OP_N, BB_OP_N, m / 2, n, k / 2, 1.0f, a, k, b, n, 0.0f, c2, n));
    EXPECT(rel(c1, c2, m / 2, n, n) < 1e-5, "gemm on a block of a held matrix: %g", rel(c1, c2, m / 2, n, n));
    /* cuda-auto: held -> GPU bytes */
    EXPECT_OK(au->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT(memcmp(c0, c1, (size_t)(m * n) * 4) == 0, "cuda-auto with A held did not run on the GPU");
    /* holds nest: a second hold and its release leave the first in force */
    EXPECT_OK(bb_linalg_hold(cu, a, m, k, k));
    bb_linalg_release(cu, a);
    EXPECT_OK(au->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT(memcmp(c0, c1, (size_t)(m * n) * 4) == 0, "the release of a nested hold ended the outer hold");
    bb_linalg_release(cu, a);
    EXPECT_OK(au->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT_OK(cpu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n));
    EXPECT(memcmp(c1, c2, (size_t)(m * n) * 4) == 0, "cuda-auto without a held operand did not run on the CPU");
    /* released: a changed A is read again */
    for (int64_t i = 0; i < m * k; i++) a[i] *= -2.0f;
    EXPECT_OK(cu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n));
    EXPECT_OK(ref->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n));
    EXPECT(rel(c1, c2, m, n, n) < 1e-5, "after release the changed A was not read: %g", rel(c1, c2, m, n, n));
    /* B held, transposed use (op(B) = B^T of a (n, k) matrix) */
    float *bt = randn(n * k);
    EXPECT_OK(bb_linalg_hold(au, bt, n, k, k));
    EXPECT_OK(au->gemm(BB_OP_N, BB_OP_T, m, n, k, 1.0f, a, k, bt, k, 0.0f, c1, n));
    EXPECT_OK(ref->gemm(BB_OP_N, BB_OP_T, m, n, k, 1.0f, a, k, bt, k, 0.0f, c2, n));
    EXPECT(rel(c1, c2, m, n, n) < 1e-5, "gemm with B^T held: %g", rel(c1, c2, m, n, n));
    bb_linalg_release(au, bt);
    /* more holds than slots: accepted, every product still right */
    float *many[12];
    for (int i = 0; i < 12; i++) {
        many[i] = randn(m * k);
        EXPECT_OK(bb_linalg_hold(cu, many[i], m, k, k));
    }
    EXPECT_OK(cu->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, many[11], k, b, n, 0.0f, c1, n));
    EXPECT_OK(ref->gemm(BB_OP_N, BB_OP_N, m, n, k, 1.0f, many[11], k, b, n, 0.0f, c2, n));
    EXPECT(rel(c1, c2, m, n, n) < 1e-5, "gemm with the 12th held operand: %g", rel(c1, c2, m, n, n));
    for (int i = 0; i < 12; i++) {
        bb_linalg_release(cu, many[i]);
        free(many[i]);
    }
    free(a), free(b), free(bt), free(c0), free(c1), free(c2);
}

/* Healing's Adam loop holds G0 and H: on cuda-auto (most step products on the GPU) the loss curve follows
 * the cpu backend's to 1e-4 and ends at the same loss to 1e-4. */
static void test_heal_held(void) {
    const bb_linalg_backend *au = NULL, *cpu = NULL;
    EXPECT_OK(bb_linalg_backend_get("cuda-auto", &au));
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    if (!au || !cpu) return;
    const int64_t rows = 384, cols = 1024, t = 1536;
    const int r = 8, steps = 30;
    float *w = randn(rows * cols), *what = copyf(w, rows * cols), *x = randn(t * cols);
    float *h = calloc((size_t)(cols * cols), 4);
    for (int64_t i = 0; i < rows * cols; i++) what[i] = (i % 3 == 0) ? 0.0f : w[i] + 0.1f * (float)(urand() - 0.5);
    EXPECT_OK(cpu->syrk(BB_UPLO_FULL, cols, t, 1.0f / (float)t, x, cols, 0.0f, h, cols));
    bb_lora *la = NULL, *lc = NULL;
    EXPECT_OK(bb_lora_create(rows, cols, r, &la));
    if (la) {
        bb_heal_lora_init(la, 7, 1);
        EXPECT_OK(bb_lora_clone(la, &lc));
    }
    double ca[steps + 1], cc[steps + 1];
    bb_heal_adam_opts o;
    bb_heal_adam_opts_default(&o);
    o.steps = steps;
    o.lr = 1e-2;
    bb_heal_adam_stats sa, sc;
    if (la && lc) {
        float *what2 = copyf(what, rows * cols);
        o.backend = au;
        EXPECT_OK(bb_heal_adam(&o, "held", w, what, h, la, ca, &sa));
        o.backend = cpu;
        EXPECT_OK(bb_heal_adam(&o, "cpu", w, what2, h, lc, cc, &sc));
        double worst = 0;
        for (int i = 0; i <= steps; i++) {
            double d = fabs(ca[i] - cc[i]) / fabs(cc[i]);
            if (d > worst) worst = d;
        }
        EXPECT(worst < 1e-4, "healing on cuda-auto with held G0, H: loss curve off the cpu's by %g", worst);
        EXPECT(sa.loss_after < sa.loss_before && sc.loss_after < sc.loss_before,
               "healing did not lower the loss: %g -> %g (cpu %g -> %g)", sa.loss_before, sa.loss_after,
               sc.loss_before, sc.loss_after);
        EXPECT(fabs(sa.loss_after - sc.loss_after) <= 1e-4 * sc.loss_after, "final loss %g vs cpu %g", sa.loss_after,
               sc.loss_after);
        free(what2);
    }
    bb_lora_destroy(&la);
    bb_lora_destroy(&lc);
    free(w), free(what), free(x), free(h);
}

static void test_syrk(void) {
    const int64_t n = 50, k = 90;
    for (int uplo = 0; uplo < 3; uplo++) {
        float *a = randn(k * n), *c = spd(n), *c1 = copyf(c, n * n), *c2 = copyf(c, n * n);
        EXPECT_OK(cu->syrk(uplo, n, k, 1.5f, a, n, 0.5f, c1, n));
        EXPECT_OK(ref->syrk(uplo, n, k, 1.5f, a, n, 0.5f, c2, n));
        double e = rel(c1, c2, n, n, n);
        EXPECT(e < 1e-5, "syrk uplo=%d: %g (tol 1e-5; untouched triangle must stay)", uplo, e);
        free(a), free(c), free(c1), free(c2);
    }
}

static void test_factorizations(void) {
    const int64_t n = 64;
    for (int uplo = 0; uplo < 2; uplo++) {
        float *a = spd(n), *a1 = copyf(a, n * n), *a2 = copyf(a, n * n);
        int64_t bad = 7;
        EXPECT_OK(cu->potrf(uplo, n, a1, n, &bad));
        EXPECT(bad == -1, "bad pivot %lld on success", (long long)bad);
        EXPECT_OK(ref->potrf(uplo, n, a2, n, NULL));
        double e = rel(a1, a2, n, n, n);
        EXPECT(e < 1e-5, "potrf uplo=%d: %g (tol 1e-5)", uplo, e);
        /* triangular solves with the factor, every side/op */
        for (int side = 0; side < 2; side++)
            for (int op = 0; op < 2; op++) {
                int64_t m = side == 0 ? n : 33, nn = side == 0 ? 21 : n;
                float *b = randn(m * nn), *b1 = copyf(b, m * nn), *b2 = copyf(b, m * nn);
                EXPECT_OK(cu->trsm(side, uplo, op, m, nn, 2.0f, a2, n, b1, nn));
                EXPECT_OK(ref->trsm(side, uplo, op, m, nn, 2.0f, a2, n, b2, nn));
                double et = rel(b1, b2, m, nn, nn);
                EXPECT(et < 1e-5, "trsm side=%d uplo=%d op=%d: %g (tol 1e-5)", side, uplo, op, et);
                free(b), free(b1), free(b2);
            }
        float *p1 = copyf(a2, n * n), *p2 = copyf(a2, n * n);
        EXPECT_OK(cu->potri(uplo, n, p1, n));
        EXPECT_OK(ref->potri(uplo, n, p2, n));
        double ei = rel(p1, p2, n, n, n);
        EXPECT(ei < 1e-5, "potri uplo=%d: %g (tol 1e-5)", uplo, ei);
        free(a), free(a1), free(a2), free(p1), free(p2);
    }
    /* not positive definite: the pivot is named */
    float *a = spd(8);
    a[3 * 8 + 3] = -5;
    int64_t bad = -1;
    EXPECT_ERR(cu->potrf(BB_UPLO_UPPER, 8, a, 8, &bad), BB_ERR_NUMERIC, "not positive definite");
    EXPECT(bad == 3, "bad pivot %lld, expected 3", (long long)bad);
    free(a);
}

static void test_qr_svd_eig(void) {
    const int64_t m = 90, n = 40;
    float *a = randn(m * n), *q = copyf(a, m * n), *r = malloc(n * n * sizeof(float));
    EXPECT_OK(cu->qr(m, n, q, n, r, n));
    /* Q R = A, Q^T Q = I, R upper */
    double num = 0, den = 0, orth = 0, low = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k <= j; k++) s += (double)q[i * n + k] * r[k * n + j];
            num += (s - a[i * n + j]) * (s - a[i * n + j]);
            den += (double)a[i * n + j] * a[i * n + j];
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < m; k++) s += (double)q[k * n + i] * q[k * n + j];
            orth += (s - (i == j)) * (s - (i == j));
            if (i > j) low += fabs(r[i * n + j]);
        }
    EXPECT(sqrt(num / den) < 1e-5, "qr: ||QR - A|| / ||A|| = %g (tol 1e-5)", sqrt(num / den));
    EXPECT(sqrt(orth) < 1e-5, "qr: ||Q^T Q - I|| = %g (tol 1e-5)", sqrt(orth));
    EXPECT(low == 0, "qr: R has %g below the diagonal", low);
    for (int tall = 0; tall < 2; tall++) {
        int64_t mm = tall ? m : n, nn = tall ? n : m, mn = n;
        float *a1 = copyf(a, m * n), *a2 = copyf(a, m * n), s1[40], s2[40];
        float *u = malloc(mm * mn * sizeof(float)), *vt = malloc(mn * nn * sizeof(float));
        float *u2 = malloc(mm * mn * sizeof(float)), *vt2 = malloc(mn * nn * sizeof(float));
        EXPECT_OK(cu->svd(mm, nn, a1, nn, s1, u, mn, vt, nn));
        EXPECT_OK(ref->svd(mm, nn, a2, nn, s2, u2, mn, vt2, nn));
        EXPECT(rel(s1, s2, 1, mn, mn) < 1e-5, "svd %s: singular values differ by %g (tol 1e-5)", tall ? "tall" : "wide",
               rel(s1, s2, 1, mn, mn));
        double rn = 0, rd = 0;
        for (int64_t i = 0; i < mm; i++)
            for (int64_t j = 0; j < nn; j++) {
                double s = 0;
                for (int64_t k = 0; k < mn; k++) s += (double)u[i * mn + k] * s1[k] * vt[k * nn + j];
                rn += (s - a[i * nn + j]) * (s - a[i * nn + j]);
                rd += (double)a[i * nn + j] * a[i * nn + j];
            }
        EXPECT(sqrt(rn / rd) < 1e-5, "svd %s: ||U S Vt - A|| / ||A|| = %g (tol 1e-5)", tall ? "tall" : "wide",
               sqrt(rn / rd));
        free(a1), free(a2), free(u), free(vt), free(u2), free(vt2);
    }
    float *h = spd(n), *z = copyf(h, n * n), *z2 = copyf(h, n * n), w[40], w2[40];
    EXPECT_OK(cu->syevd(n, z, n, w));
    EXPECT_OK(ref->syevd(n, z2, n, w2));
    EXPECT(rel(w, w2, 1, n, n) < 1e-5, "syevd: eigenvalues differ by %g (tol 1e-5)", rel(w, w2, 1, n, n));
    double res = 0, hn = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += (double)h[i * n + k] * z[k * n + j];
            res += (s - w[j] * z[i * n + j]) * (s - w[j] * z[i * n + j]);
            hn += (double)h[i * n + j] * h[i * n + j];
        }
    EXPECT(sqrt(res / hn) < 1e-5, "syevd: ||H Z - Z diag(w)|| / ||H|| = %g (tol 1e-5)", sqrt(res / hn));
    free(a), free(q), free(r), free(h), free(z), free(z2);
}

/* Gram X^T X of k tokens x n features against fp64 sums, in the three precisions. */
static void test_gram(void) {
    const int64_t n = 300, k = 2048;
    float *x = randn(k * n), *g = malloc(n * n * sizeof(float));
    double *g64 = calloc(n * n, sizeof(double));
    for (int64_t t = 0; t < k; t++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) g64[i * n + j] += (double)x[t * n + i] * x[t * n + j];
    bb_cuda_ctx *c = NULL;
    EXPECT_OK(bb_cuda_ctx_create(&c));
    float *dx, *dg;
    EXPECT_OK(bb_cuda_malloc((void **)&dx, k * n * 4, "X"));
    EXPECT_OK(bb_cuda_malloc((void **)&dg, n * n * 4, "G"));
    cudaMemcpy(dx, x, k * n * 4, cudaMemcpyHostToDevice);
    const double tol[3] = {1e-5, 2e-3, 1e-2};
    for (int math = 0; math < 3; math++) {
        cudaMemset(dg, 0xff, n * n * 4); /* NaN poison: every element must be written */
        /* two halves of the tokens accumulated: beta 0 then 1 */
        EXPECT_OK(bb_cuda_gram(c, math, n, k / 2, dx, n, 0.0f, dg, n));
        EXPECT_OK(bb_cuda_gram(c, math, n, k / 2, dx + (k / 2) * n, n, 1.0f, dg, n));
        cudaMemcpy(g, dg, n * n * 4, cudaMemcpyDeviceToHost);
        double num = 0, den = 0, sym = 0;
        for (int64_t i = 0; i < n * n; i++) {
            num += (g[i] - g64[i]) * (g[i] - g64[i]);
            den += g64[i] * g64[i];
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) sym += fabs(g[i * n + j] - g[j * n + i]);
        double e = sqrt(num / den);
        printf("gram %s: relative error against fp64 %.3g (n %lld, %lld tokens)\n", bb_cuda_math_name(math), e,
               (long long)n, (long long)k);
        EXPECT(e < tol[math], "gram %s: %g (tol %g)", bb_cuda_math_name(math), e, tol[math]);
        EXPECT(sym == 0, "gram %s: not symmetric (%g)", bb_cuda_math_name(math), sym);
    }
    /* the upper-only accumulation plus one mirror equals the mirrored one, bit for bit */
    float *g2 = malloc(n * n * sizeof(float));
    EXPECT_OK(bb_cuda_gram(c, BB_CUDA_FP32, n, k / 2, dx, n, 0.0f, dg, n));
    EXPECT_OK(bb_cuda_gram(c, BB_CUDA_FP32, n, k / 2, dx + (k / 2) * n, n, 1.0f, dg, n));
    cudaMemcpy(g, dg, n * n * 4, cudaMemcpyDeviceToHost);
    cudaMemset(dg, 0xff, n * n * 4);
    EXPECT_OK(bb_cuda_gram_upper(c, BB_CUDA_FP32, n, k / 2, dx, n, 0.0f, dg, n));
    EXPECT_OK(bb_cuda_gram_upper(c, BB_CUDA_FP32, n, k / 2, dx + (k / 2) * n, n, 1.0f, dg, n));
    EXPECT_OK(bb_cuda_mirror_upper(dg, n, n));
    cudaMemcpy(g2, dg, n * n * 4, cudaMemcpyDeviceToHost);
    EXPECT(memcmp(g, g2, n * n * 4) == 0, "gram_upper + mirror differs from gram");
    free(g2);
    cudaFree(dx);
    cudaFree(dg);
    bb_cuda_ctx_destroy(&c);
    free(x), free(g), free(g64);
}

/* The inverse factor (one potrf + trtri of the reversed matrix) against the cpu's potrf, potri, potrf. */
static void test_inverse_factor(void) {
    const int64_t n = 200, k = 400;
    float *x = randn(k * n), *h = malloc(n * n * 4), *u = malloc(n * n * 4), *uc = malloc(n * n * 4);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t t = 0; t < k; t++) s += (double)x[t * n + i] * x[t * n + j];
            h[i * n + j] = (float)(s / k);
        }
    for (int64_t i = 0; i < n; i++) h[i * n + 5] = h[5 * n + i] = 0; /* a dead input */
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += h[j * (n + 1)] == 0 ? 1 : h[j * (n + 1)];
    mean /= n;
    memcpy(uc, h, n * n * 4);
    for (int64_t j = 0; j < n; j++) {
        if (uc[j * (n + 1)] == 0) uc[j * (n + 1)] = 1;
        uc[j * (n + 1)] += (float)(0.01 * mean);
    }
    const bb_linalg_backend *cpu;
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    EXPECT_OK(bb_linalg_inverse_cholesky_upper(cpu, uc, n));
    bb_cuda_ctx *c = NULL;
    EXPECT_OK(bb_cuda_ctx_create(&c));
    float *dh, *du;
    EXPECT_OK(bb_cuda_malloc((void **)&dh, n * n * 4, "H"));
    EXPECT_OK(bb_cuda_malloc((void **)&du, n * n * 4, "U"));
    cudaMemcpy(dh, h, n * n * 4, cudaMemcpyHostToDevice);
    double used = -1;
    EXPECT_OK(bb_cuda_inverse_factor(c, "test", dh, n, 0.01, 10, du, &used));
    EXPECT(used == 0.01, "damping used %g", used);
    cudaMemcpy(u, du, n * n * 4, cudaMemcpyDeviceToHost);
    double num = 0, den = 0, low = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            if (j < i) {
                low += fabs(u[i * n + j]);
                continue;
            }
            num += (u[i * n + j] - uc[i * n + j]) * (double)(u[i * n + j] - uc[i * n + j]);
            den += (double)uc[i * n + j] * uc[i * n + j];
        }
    printf("inverse factor: relative difference to cpu potrf-potri-potrf %.3g\n", sqrt(num / den));
    EXPECT(sqrt(num / den) < 1e-4, "inverse factor differs from the cpu's by %g (tol 1e-4)", sqrt(num / den));
    EXPECT(low == 0, "inverse factor has %g below the diagonal", low);
    /* a matrix no damping up to damp_max fixes */
    for (int64_t i = 0; i < n * n; i++) h[i] = -1;
    cudaMemcpy(dh, h, n * n * 4, cudaMemcpyHostToDevice);
    EXPECT_ERR(bb_cuda_inverse_factor(c, "blk.0.bad", dh, n, 0.01, 0.1, du, NULL), BB_ERR_NUMERIC, "blk.0.bad");
    cudaFree(dh);
    cudaFree(du);
    bb_cuda_ctx_destroy(&c);
    free(x), free(h), free(u), free(uc);
}

/* rSVD on a matrix with a decaying spectrum: the top k singular values against LAPACK's full SVD. */
static void test_rsvd(void) {
    const int64_t m = 400, n = 300, r = 120;
    const int k = 20;
    float *g1 = randn(m * r), *g2 = randn(r * n), *a = malloc(m * n * 4);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t t = 0; t < r; t++) s += (double)g1[i * r + t] * pow(0.7, (double)t) * g2[t * n + j];
            a[i * n + j] = (float)s;
        }
    const bb_linalg_backend *cpu;
    EXPECT_OK(bb_linalg_backend_get("cpu", &cpu));
    float *a2 = copyf(a, m * n), s_ref[300], s[20];
    EXPECT_OK(cpu->svd(m, n, a2, n, s_ref, NULL, 0, NULL, 0));
    bb_cuda_ctx *c = NULL;
    EXPECT_OK(bb_cuda_ctx_create(&c));
    float *da, *du, *dv, *u = malloc(m * k * 4);
    EXPECT_OK(bb_cuda_malloc((void **)&da, m * n * 4, "A"));
    EXPECT_OK(bb_cuda_malloc((void **)&du, m * k * 4, "U"));
    EXPECT_OK(bb_cuda_malloc((void **)&dv, n * k * 4, "V"));
    cudaMemcpy(da, a, m * n * 4, cudaMemcpyHostToDevice);
    for (int math = 0; math < 2; math++) {
        EXPECT_OK(bb_cuda_rsvd(c, math, m, n, da, n, k, 8, 2, 42, s, du, dv));
        double e = rel(s, s_ref, 1, k, k);
        printf("rsvd %s: top-%d singular values within %.3g of LAPACK's\n", bb_cuda_math_name(math), k, e);
        EXPECT(e < (math ? 2e-3 : 1e-4), "rsvd %s: %g (tol %g)", bb_cuda_math_name(math), e, math ? 2e-3 : 1e-4);
        cudaMemcpy(u, du, m * k * 4, cudaMemcpyDeviceToHost);
        double orth = 0;
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++) {
                double t = 0;
                for (int64_t p = 0; p < m; p++) t += (double)u[p * k + i] * u[p * k + j];
                orth += (t - (i == j)) * (t - (i == j));
            }
        EXPECT(sqrt(orth) < (math ? 5e-3 : 1e-3), "rsvd %s: ||U^T U - I|| = %g (tol %g)", bb_cuda_math_name(math), sqrt(orth),
               math ? 5e-3 : 1e-3);
    }
    EXPECT_ERR(bb_cuda_rsvd(c, BB_CUDA_FP32, m, n, da, n, 0, 8, 2, 1, s, NULL, NULL), BB_ERR_ARG, "rank");
    cudaFree(da), cudaFree(du), cudaFree(dv);
    bb_cuda_ctx_destroy(&c);
    free(g1), free(g2), free(a), free(a2), free(u);
}

int main(void) {
    if (bb_cuda_device_count() == 0) {
        printf("skipped: no GPU visible\n");
        return 77;
    }
    int dev;
    EXPECT_OK(bb_cuda_bind(0, &dev));
    EXPECT_OK(bb_cuda_backend_register());
    EXPECT_OK(bb_linalg_backend_get("cuda", &cu));
    EXPECT_OK(bb_linalg_backend_get("ref", &ref));
    if (!cu || !ref) return TEST_DONE();
    TEST_RUN(test_gemm);
    TEST_RUN(test_syrk);
    TEST_RUN(test_auto);
    TEST_RUN(test_hold);
    TEST_RUN(test_heal_held);
    TEST_RUN(test_factorizations);
    TEST_RUN(test_qr_svd_eig);
    TEST_RUN(test_gram);
    TEST_RUN(test_inverse_factor);
    TEST_RUN(test_rsvd);
    return TEST_DONE();
}
#endif
