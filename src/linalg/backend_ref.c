/* backend_ref.c — the "ref" linear-algebra backend: plain loops in double precision, the tests' reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linalg/backend.h"

/* Element (i, j) of op(X) for X row-major with leading dimension ld. */
static double at(const float *x, int64_t ld, bb_op op, int64_t i, int64_t j) {
    return op == BB_OP_N ? (double)x[i * ld + j] : (double)x[j * ld + i];
}

static bb_status ref_gemm(bb_op ta, bb_op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("gemm A", ta == BB_OP_N ? m : k, ta == BB_OP_N ? k : m, lda, ta == BB_OP_N ? k : m));
    BB_CALL(bb_linalg_check_dims("gemm B", tb == BB_OP_N ? k : n, tb == BB_OP_N ? n : k, ldb, tb == BB_OP_N ? n : k));
    BB_CALL(bb_linalg_check_dims("gemm C", m, n, ldc, n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double sum = 0;
            for (int64_t p = 0; p < k; p++) sum += at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
            double old = beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * sum + old);
        }
    return BB_OK;
}

static bb_status ref_syrk(bb_uplo uplo, int64_t n, int64_t k, float alpha, const float *a, int64_t lda, float beta,
                          float *c, int64_t ldc) {
    BB_CALL(bb_linalg_check_dims("syrk A", k, n, lda, n));
    BB_CALL(bb_linalg_check_dims("syrk C", n, n, ldc, n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            if ((uplo == BB_UPLO_UPPER && j < i) || (uplo == BB_UPLO_LOWER && j > i)) continue;
            double sum = 0;
            for (int64_t p = 0; p < k; p++) sum += (double)a[p * lda + i] * a[p * lda + j];
            double old = beta == 0.0f ? 0.0 : (double)beta * c[i * ldc + j];
            c[i * ldc + j] = (float)(alpha * sum + old);
        }
    return BB_OK;
}

/* Element (i, j), i >= j, of the lower Cholesky factor L as stored for `uplo`
 * (UPPER stores U = L^T). The same indexing reads the symmetric input. */
static int64_t lower_index(bb_uplo uplo, int64_t i, int64_t j, int64_t ld) {
    return uplo == BB_UPLO_LOWER ? i * ld + j : j * ld + i;
}

/* Cholesky-Banachiewicz, row by row, in double. */
static bb_status ref_potrf(bb_uplo uplo, int64_t n, float *a, int64_t lda, int64_t *bad_pivot) {
    if (bad_pivot) *bad_pivot = -1;
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "potrf: uplo must be UPPER or LOWER");
    BB_CALL(bb_linalg_check_dims("potrf", n, n, lda, n));
    double *l;
    BB_CALLOC(l, (size_t)(n * n), "reference Cholesky factor");
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double sum = a[lower_index(uplo, i, j, lda)];
            for (int64_t p = 0; p < j; p++) sum -= l[i * n + p] * l[j * n + p];
            if (i == j) {
                if (!(sum > 0)) {
                    free(l);
                    if (bad_pivot) *bad_pivot = i;
                    return bb_error(
                        BB_ERR_NUMERIC, __FILE__, __LINE__,
                        "Cholesky factorization of a (%lld, %lld) matrix failed: it is not positive definite "
                        "at pivot %lld (0-based); add damping to the diagonal",
                        (long long)n, (long long)n, (long long)i);
                }
                l[i * n + i] = sqrt(sum);
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) a[lower_index(uplo, i, j, lda)] = (float)l[i * n + j];
    free(l);
    return BB_OK;
}

/* T restricted to its triangle, read as a square matrix, transposed when `transposed`. */
typedef struct {
    const float *t;
    int64_t ld;
    bb_uplo uplo;
    int transposed;
} tri_view;

static double tri_at(const tri_view *v, int64_t i, int64_t j) {
    int64_t r = v->transposed ? j : i, c = v->transposed ? i : j;
    int inside = v->uplo == BB_UPLO_UPPER ? c >= r : c <= r;
    return inside ? (double)v->t[r * v->ld + c] : 0.0;
}

/* Solve M x = x in place for triangular M (n, n); `lower` says which triangle M has. */
static void tri_solve(const tri_view *v, int lower, int64_t n, double *x) {
    if (lower) {
        for (int64_t i = 0; i < n; i++) {
            double s = x[i];
            for (int64_t j = 0; j < i; j++) s -= tri_at(v, i, j) * x[j];
            x[i] = s / tri_at(v, i, i);
        }
    } else {
        for (int64_t i = n - 1; i >= 0; i--) {
            double s = x[i];
            for (int64_t j = i + 1; j < n; j++) s -= tri_at(v, i, j) * x[j];
            x[i] = s / tri_at(v, i, i);
        }
    }
}

static bb_status ref_trsm(bb_side side, bb_uplo uplo, bb_op op, int64_t m, int64_t n, float alpha, const float *t,
                          int64_t ldt, float *b, int64_t ldb) {
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "trsm: uplo must be UPPER or LOWER");
    int64_t nt = side == BB_SIDE_LEFT ? m : n;
    BB_CALL(bb_linalg_check_dims("trsm T", nt, nt, ldt, nt));
    BB_CALL(bb_linalg_check_dims("trsm B", m, n, ldb, n));
    for (int64_t i = 0; i < nt; i++)
        BB_CHECK(t[i * ldt + i] != 0.0f, BB_ERR_NUMERIC,
                 "trsm: the (%lld, %lld) triangular matrix is singular (zero at diagonal %lld)", (long long)nt,
                 (long long)nt, (long long)i);
    /* LEFT solves op(T) x = b for each column of B; RIGHT solves op(T)^T x = b
     * for each row (x op(T) = b transposed). */
    tri_view v = {t, ldt, uplo, op == BB_OP_T};
    if (side == BB_SIDE_RIGHT) v.transposed = !v.transposed;
    int lower = (uplo == BB_UPLO_LOWER) != v.transposed;
    int64_t count = side == BB_SIDE_LEFT ? n : m;
    double *x;
    BB_MALLOC(x, (size_t)(nt ? nt : 1) * sizeof *x, "reference trsm vector");
    for (int64_t c = 0; c < count; c++) {
        for (int64_t i = 0; i < nt; i++)
            x[i] = alpha * (double)(side == BB_SIDE_LEFT ? b[i * ldb + c] : b[c * ldb + i]);
        tri_solve(&v, lower, nt, x);
        for (int64_t i = 0; i < nt; i++) *(side == BB_SIDE_LEFT ? &b[i * ldb + c] : &b[c * ldb + i]) = (float)x[i];
    }
    free(x);
    return BB_OK;
}

/* inv(A) = inv(L)^T inv(L) with inv(L) by forward substitution on the identity. */
static bb_status ref_potri(bb_uplo uplo, int64_t n, float *a, int64_t lda) {
    BB_CHECK(uplo != BB_UPLO_FULL, BB_ERR_ARG, "potri: uplo must be UPPER or LOWER");
    BB_CALL(bb_linalg_check_dims("potri", n, n, lda, n));
    for (int64_t i = 0; i < n; i++)
        BB_CHECK(a[i * lda + i] != 0.0f, BB_ERR_NUMERIC,
                 "potri: the (%lld, %lld) Cholesky factor is singular at diagonal %lld (0-based)", (long long)n,
                 (long long)n, (long long)i);
    double *li;
    BB_CALLOC(li, (size_t)(n * n), "reference inverse factor");
    for (int64_t c = 0; c < n; c++)
        for (int64_t i = c; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int64_t p = c; p < i; p++) s -= (double)a[lower_index(uplo, i, p, lda)] * li[p * n + c];
            li[i * n + c] = s / a[lower_index(uplo, i, i, lda)];
        }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j <= i; j++) {
            double s = 0;
            for (int64_t p = i; p < n; p++) s += li[p * n + i] * li[p * n + j];
            a[i * lda + j] = a[j * lda + i] = (float)s;
        }
    free(li);
    return BB_OK;
}

/* Householder QR in double, with LAPACK's sign convention (R's diagonal is
 * -sign(x0) ||x||), so its Q and R agree with geqrf/orgqr column by column. */
static bb_status ref_qr(int64_t m, int64_t n, float *a, int64_t lda, float *r, int64_t ldr) {
    BB_CHECK(m >= n, BB_ERR_ARG, "qr: thin QR needs rows >= cols, got (%lld, %lld)", (long long)m, (long long)n);
    BB_CALL(bb_linalg_check_dims("qr", m, n, lda, n));
    if (r) BB_CALL(bb_linalg_check_dims("qr R", n, n, ldr, n));
    double *w, *v, *q;
    BB_CALLOC(w, (size_t)(m * n), "reference QR work");
    bb_status st = bb_calloc((void **)&v, (size_t)(m * n), sizeof *v, "reference QR reflectors");
    if (st == BB_OK) st = bb_calloc((void **)&q, (size_t)(m * n), sizeof *q, "reference QR factor");
    if (st != BB_OK) {
        free(w);
        free(v);
        return bb_trace(st, __FILE__, __LINE__, "reference QR buffers");
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) w[i * n + j] = a[i * lda + j];
    /* Column j of v holds the unit reflector v_j (zero above row j), H_j = I - 2 v_j v_j^T. */
    for (int64_t j = 0; j < n; j++) {
        double norm = 0;
        for (int64_t i = j; i < m; i++) norm += w[i * n + j] * w[i * n + j];
        norm = sqrt(norm);
        if (norm == 0) continue;
        double beta = w[j * n + j] >= 0 ? -norm : norm;
        double vnorm = 0;
        for (int64_t i = j; i < m; i++) {
            v[i * n + j] = w[i * n + j] - (i == j ? beta : 0.0);
            vnorm += v[i * n + j] * v[i * n + j];
        }
        vnorm = sqrt(vnorm);
        if (vnorm == 0) continue;
        for (int64_t i = j; i < m; i++) v[i * n + j] /= vnorm;
        for (int64_t c = j; c < n; c++) {
            double d = 0;
            for (int64_t i = j; i < m; i++) d += v[i * n + j] * w[i * n + c];
            for (int64_t i = j; i < m; i++) w[i * n + c] -= 2 * d * v[i * n + j];
        }
    }
    /* Q = H_0 H_1 ... H_{n-1} applied to the first n columns of the identity. */
    for (int64_t i = 0; i < n; i++) q[i * n + i] = 1.0;
    for (int64_t j = n - 1; j >= 0; j--)
        for (int64_t c = 0; c < n; c++) {
            double d = 0;
            for (int64_t i = j; i < m; i++) d += v[i * n + j] * q[i * n + c];
            for (int64_t i = j; i < m; i++) q[i * n + c] -= 2 * d * v[i * n + j];
        }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) a[i * lda + j] = (float)q[i * n + j];
    if (r)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) r[i * ldr + j] = j >= i ? (float)w[i * n + j] : 0.0f;
    free(w);
    free(v);
    free(q);
    return BB_OK;
}

/* One-sided Jacobi (Hestenes) on the columns of W (rows, cols), rows >= cols:
 * rotates column pairs until all are orthogonal, accumulating the rotations in
 * V (cols, cols). Then the column norms are the singular values. */
static void jacobi_columns(int64_t rows, int64_t cols, double *w, double *v) {
    for (int sweep = 0; sweep < 80; sweep++) {
        int rotated = 0;
        for (int64_t p = 0; p < cols; p++)
            for (int64_t q = p + 1; q < cols; q++) {
                double alpha = 0, beta = 0, gamma = 0;
                for (int64_t i = 0; i < rows; i++) {
                    alpha += w[i * cols + p] * w[i * cols + p];
                    beta += w[i * cols + q] * w[i * cols + q];
                    gamma += w[i * cols + p] * w[i * cols + q];
                }
                if (fabs(gamma) <= 1e-15 * sqrt(alpha * beta) || gamma == 0) continue;
                rotated = 1;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int64_t i = 0; i < rows; i++) {
                    double wp = w[i * cols + p], wq = w[i * cols + q];
                    w[i * cols + p] = c * wp - s * wq;
                    w[i * cols + q] = s * wp + c * wq;
                }
                for (int64_t i = 0; i < cols; i++) {
                    double vp = v[i * cols + p], vq = v[i * cols + q];
                    v[i * cols + p] = c * vp - s * vq;
                    v[i * cols + q] = s * vp + c * vq;
                }
            }
        if (!rotated) break;
    }
}

static bb_status ref_svd(int64_t m, int64_t n, float *a, int64_t lda, float *s, float *u, int64_t ldu, float *vt,
                         int64_t ldvt) {
    int64_t mn = m < n ? m : n;
    BB_CHECK((u == NULL) == (vt == NULL), BB_ERR_ARG, "svd: U and Vt are both wanted or both skipped");
    BB_CALL(bb_linalg_check_dims("svd", m, n, lda, n));
    if (u) {
        BB_CALL(bb_linalg_check_dims("svd U", m, mn, ldu, mn));
        BB_CALL(bb_linalg_check_dims("svd Vt", mn, n, ldvt, n));
    }
    if (mn == 0) return BB_OK;
    /* Work on A when tall, on A^T when wide: W (rows, cols) with rows >= cols = mn. */
    int wide = m < n;
    int64_t rows = wide ? n : m, cols = mn;
    double *w, *v;
    int64_t *order;
    BB_CALLOC(w, (size_t)(rows * cols), "reference SVD work");
    bb_status st = bb_calloc((void **)&v, (size_t)(cols * cols), sizeof *v, "reference SVD rotations");
    if (st == BB_OK) st = bb_malloc((void **)&order, (size_t)cols * sizeof *order, "reference SVD order");
    if (st != BB_OK) {
        free(w);
        free(v);
        return bb_trace(st, __FILE__, __LINE__, "reference SVD buffers");
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) w[i * cols + j] = wide ? a[j * lda + i] : a[i * lda + j];
    for (int64_t i = 0; i < cols; i++) v[i * cols + i] = 1.0;
    jacobi_columns(rows, cols, w, v);
    double *norms;
    st = bb_malloc((void **)&norms, (size_t)cols * sizeof *norms, "reference SVD norms");
    if (st != BB_OK) {
        free(w);
        free(v);
        free(order);
        return bb_trace(st, __FILE__, __LINE__, "reference SVD norms");
    }
    for (int64_t j = 0; j < cols; j++) {
        double nn = 0;
        for (int64_t i = 0; i < rows; i++) nn += w[i * cols + j] * w[i * cols + j];
        norms[j] = sqrt(nn);
        order[j] = j;
    }
    /* Insertion sort by descending singular value (cols is small in the tests). */
    for (int64_t i = 1; i < cols; i++)
        for (int64_t j = i; j > 0 && norms[order[j]] > norms[order[j - 1]]; j--) {
            int64_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int64_t r = 0; r < cols; r++) {
        int64_t j = order[r];
        s[r] = (float)norms[j];
        if (!u) continue;
        double inv = norms[j] > 0 ? 1.0 / norms[j] : 0.0;
        /* Tall: A = W_n V^T, so U = normalized W columns and Vt rows = V columns.
         * Wide: A^T = W_n V^T, so A = V W_n^T: U = V columns, Vt rows = normalized W columns. */
        for (int64_t i = 0; i < rows; i++) {
            float x = (float)(w[i * cols + j] * inv);
            if (wide)
                vt[r * ldvt + i] = x;
            else
                u[i * ldu + r] = x;
        }
        for (int64_t i = 0; i < cols; i++) {
            float x = (float)v[i * cols + j];
            if (wide)
                u[i * ldu + r] = x;
            else
                vt[r * ldvt + i] = x;
        }
    }
    free(norms);
    free(order);
    free(w);
    free(v);
    return BB_OK;
}

/* Cyclic Jacobi eigenvalue iteration in double: rotations J^T S J that zero one
 * off-diagonal pair at a time, accumulated in Z. */
static bb_status ref_syevd(int64_t n, float *a, int64_t lda, float *w) {
    BB_CALL(bb_linalg_check_dims("syevd", n, n, lda, n));
    if (n == 0) return BB_OK;
    double *sm, *z;
    BB_CALLOC(sm, (size_t)(n * n), "reference eigen work");
    bb_status st = bb_calloc((void **)&z, (size_t)(n * n), sizeof *z, "reference eigenvectors");
    if (st != BB_OK) {
        free(sm);
        return bb_trace(st, __FILE__, __LINE__, "reference eigenvectors");
    }
    for (int64_t i = 0; i < n; i++) {
        z[i * n + i] = 1.0;
        for (int64_t j = i; j < n; j++) sm[i * n + j] = sm[j * n + i] = a[i * lda + j];
    }
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, all = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                all += sm[i * n + j] * sm[i * n + j];
                if (i != j) off += sm[i * n + j] * sm[i * n + j];
            }
        if (off <= 1e-30 * all || off == 0) break;
        for (int64_t p = 0; p < n; p++)
            for (int64_t q = p + 1; q < n; q++) {
                double apq = sm[p * n + q];
                if (apq == 0) continue;
                double tau = (sm[q * n + q] - sm[p * n + p]) / (2 * apq);
                double t = (tau >= 0 ? 1.0 : -1.0) / (fabs(tau) + sqrt(1 + tau * tau));
                double c = 1 / sqrt(1 + t * t), s = t * c;
                for (int64_t k = 0; k < n; k++) {
                    double kp = sm[k * n + p], kq = sm[k * n + q];
                    sm[k * n + p] = c * kp - s * kq;
                    sm[k * n + q] = s * kp + c * kq;
                }
                for (int64_t k = 0; k < n; k++) {
                    double pk = sm[p * n + k], qk = sm[q * n + k];
                    sm[p * n + k] = c * pk - s * qk;
                    sm[q * n + k] = s * pk + c * qk;
                }
                for (int64_t k = 0; k < n; k++) {
                    double kp = z[k * n + p], kq = z[k * n + q];
                    z[k * n + p] = c * kp - s * kq;
                    z[k * n + q] = s * kp + c * kq;
                }
            }
    }
    /* Selection of ascending eigenvalues with their columns. */
    for (int64_t r = 0; r < n; r++) {
        int64_t best = r;
        for (int64_t j = r + 1; j < n; j++)
            if (sm[j * n + j] < sm[best * n + best]) best = j;
        if (best != r) {
            double t = sm[r * n + r];
            sm[r * n + r] = sm[best * n + best];
            sm[best * n + best] = t;
            for (int64_t k = 0; k < n; k++) {
                t = z[k * n + r];
                z[k * n + r] = z[k * n + best];
                z[k * n + best] = t;
            }
        }
        w[r] = (float)sm[r * n + r];
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) a[i * lda + j] = (float)z[i * n + j];
    free(sm);
    free(z);
    return BB_OK;
}

const bb_linalg_backend bb_linalg_backend_ref = {
    .name = "ref",
    .description = "plain C loops in double precision (reference for tests)",
    .gemm = ref_gemm,
    .syrk = ref_syrk,
    .potrf = ref_potrf,
    .trsm = ref_trsm,
    .potri = ref_potri,
    .qr = ref_qr,
    .svd = ref_svd,
    .syevd = ref_syevd,
};
