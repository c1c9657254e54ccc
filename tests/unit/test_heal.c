/* test_heal.c — closed-form low-rank compensation (against an eigendecomposition-based fit and the Jacobi
 * reference), loss gradients (against finite differences), Adam healing (fast vs reference curves, masks),
 * the schedule and the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/heal.h"
#include "core/rng.h"
#include "io/config.h"
#include "linalg/backend.h"
#include "test.h"

typedef struct {
    int64_t rows, cols;
    float *w, *what, *h;
} problem;

/* W (rows, cols) normal; Ŵ = W with every third entry pruned; H = XᵀX of ntok tokens whose
 * channels are correlated (x = z + 0.5 z shifted) and of uneven scale; dead columns zeroed. */
static problem make_problem(int64_t rows, int64_t cols, int64_t ntok, uint64_t seed, int dead) {
    problem p = {rows, cols, NULL, NULL, NULL};
    p.w = malloc(sizeof(float) * (size_t)(rows * cols));
    p.what = malloc(sizeof(float) * (size_t)(rows * cols));
    p.h = calloc((size_t)(cols * cols), sizeof(float));
    float *z = malloc(sizeof(float) * (size_t)(ntok * cols)), *x = malloc(sizeof(float) * (size_t)(ntok * cols));
    bb_rng_fill_normal(bb_rng_make(seed, 1), 0, (size_t)(rows * cols), p.w);
    bb_rng_fill_normal(bb_rng_make(seed, 2), 0, (size_t)(ntok * cols), z);
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t j = 0; j < cols; j++) {
            float v = z[t * cols + j] + 0.5f * z[t * cols + (j + 1) % cols];
            x[t * cols + j] = j < dead ? 0.0f : v * (1.0f + 0.2f * (float)(j % 5));
        }
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = 0; b < cols; b++) {
            double s = 0;
            for (int64_t t = 0; t < ntok; t++) s += (double)x[t * cols + a] * x[t * cols + b];
            p.h[a * cols + b] = (float)s;
        }
    for (int64_t i = 0; i < rows * cols; i++) p.what[i] = i % 3 == 0 ? 0.0f : p.w[i];
    free(z);
    free(x);
    return p;
}

static void problem_free(problem *p) {
    free(p->w);
    free(p->what);
    free(p->h);
}

/* A·B (rows, cols) in double. */
static double *product(const bb_lora *l) {
    double *p = calloc((size_t)(l->rows * l->cols), sizeof(double));
    for (int64_t i = 0; i < l->rows; i++)
        for (int64_t j = 0; j < l->cols; j++)
            for (int t = 0; t < l->rank; t++)
                p[i * l->cols + j] += (double)l->a[i * l->rank + t] * l->b[(int64_t)t * l->cols + j];
    return p;
}

static double rel_diff(const double *a, const double *b, int64_t n) {
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d += (a[i] - b[i]) * (a[i] - b[i]);
        s += b[i] * b[i];
    }
    return sqrt(d / (s > 0 ? s : 1));
}

/* Independent fit: H_d = Z diag(w) Zᵀ (LAPACK syevd), H_d^{±1/2} = Z diag(w^{±1/2}) Zᵀ, SVD of
 * E H_d^{1/2} (LAPACK), AB = U_r S_r V_rᵀ H_d^{-1/2}. Returns AB (rows, cols) and the optimal damped
 * loss Σ_{i>r} s_i² in *tail. */
static double *independent_fit(const problem *p, int r, double damp, double *tail) {
    const bb_linalg_backend *be;
    bb_linalg_backend_get("cpu", &be);
    int64_t m = p->rows, n = p->cols, mn = m < n ? m : n;
    float *z = malloc(sizeof(float) * (size_t)(n * n)), *ev = malloc(sizeof(float) * (size_t)n);
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += p->h[j * n + j];
    mean /= (double)n;
    memcpy(z, p->h, sizeof(float) * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) z[j * n + j] += (float)(damp * mean);
    be->syevd(n, z, n, ev);
    double *hs = calloc((size_t)(n * n), sizeof(double)), *hi = calloc((size_t)(n * n), sizeof(double));
    for (int64_t a = 0; a < n; a++)
        for (int64_t b = 0; b < n; b++)
            for (int64_t k = 0; k < n; k++) {
                double zz = (double)z[a * n + k] * z[b * n + k];
                hs[a * n + b] += zz * sqrt(ev[k]);
                hi[a * n + b] += zz / sqrt(ev[k]);
            }
    float *m1 = malloc(sizeof(float) * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += ((double)p->w[i * n + k] - p->what[i * n + k]) * hs[k * n + j];
            m1[i * n + j] = (float)s;
        }
    float *s = malloc(sizeof(float) * (size_t)mn), *u = malloc(sizeof(float) * (size_t)(m * mn)),
          *vt = malloc(sizeof(float) * (size_t)(mn * n));
    be->svd(m, n, m1, n, s, u, mn, vt, n);
    *tail = 0;
    for (int64_t k = r; k < mn; k++) *tail += (double)s[k] * s[k];
    double *usv = calloc((size_t)(m * n), sizeof(double)), *ab = calloc((size_t)(m * n), sizeof(double));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            for (int k = 0; k < r; k++) usv[i * n + j] += (double)u[i * mn + k] * s[k] * vt[k * n + j];
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            for (int64_t k = 0; k < n; k++) ab[i * n + j] += usv[i * n + k] * hi[k * n + j];
    free(z);
    free(ev);
    free(hs);
    free(hi);
    free(m1);
    free(s);
    free(u);
    free(vt);
    free(usv);
    return ab;
}

/* tr(M H_d Mᵀ) for M = w − what − AB, in double. */
static double damped_loss(const problem *p, const bb_lora *l, double damp) {
    double mean = 0;
    for (int64_t j = 0; j < p->cols; j++) mean += p->h[j * p->cols + j];
    mean /= (double)p->cols;
    double *ab = product(l), sum = 0;
    int64_t n = p->cols;
    for (int64_t i = 0; i < p->rows; i++)
        for (int64_t a = 0; a < n; a++)
            for (int64_t b = 0; b < n; b++) {
                double ea = (double)p->w[i * n + a] - p->what[i * n + a] - ab[i * n + a];
                double eb = (double)p->w[i * n + b] - p->what[i * n + b] - ab[i * n + b];
                sum += ea * ((double)p->h[a * n + b] + (a == b ? damp * mean : 0)) * eb;
            }
    free(ab);
    return sum;
}

static void closed_form_case(int64_t rows, int64_t cols) {
    problem p = make_problem(rows, cols, 60, 11, 0);
    const int r = 3;
    bb_heal_fit_opts o;
    bb_heal_fit_opts_default(&o);
    double tail;
    double *ab_ind = independent_fit(&p, r, o.damp, &tail);
    const char *label[3] = {"exact", "randomized", "reference"};
    for (int v = 0; v < 3; v++) {
        bb_lora *l = NULL;
        EXPECT_OK(bb_lora_create(p.rows, p.cols, r, &l));
        bb_heal_fit_stats st;
        o.svd = v == 1 ? BB_HEAL_SVD_RANDOMIZED : BB_HEAL_SVD_EXACT;
        o.power_iters = 6;
        if (v < 2)
            EXPECT_OK(bb_heal_closed_form(&o, "t", p.w, p.what, p.h, l, &st));
        else
            EXPECT_OK(bb_heal_closed_form_ref(&o, "t", p.w, p.what, p.h, l, &st));
        double *ab = product(l);
        double d = rel_diff(ab, ab_ind, p.rows * p.cols);
        EXPECT(d < 2e-3, "%s: AB differs from the eigendecomposition fit by %.3g (relative)", label[v], d);
        double dl = damped_loss(&p, l, o.damp);
        EXPECT(fabs(dl - tail) <= 1e-3 * tail, "%s: damped loss %.8g, optimal tail %.8g", label[v], dl, tail);
        EXPECT(fabs(st.tail - tail) <= 1e-3 * tail, "%s: reported tail %.8g vs %.8g", label[v], st.tail, tail);
        double before, after;
        EXPECT_OK(bb_heal_loss_ref("t", p.w, p.what, NULL, p.rows, p.cols, p.h, &before));
        EXPECT_OK(bb_heal_loss_ref("t", p.w, p.what, l, p.rows, p.cols, p.h, &after));
        EXPECT(fabs(st.loss_before - before) <= 1e-4 * before, "%s: loss before %.8g vs %.8g", label[v],
               st.loss_before, before);
        EXPECT(fabs(st.loss_after - after) <= 1e-4 * before, "%s: loss after %.8g vs %.8g", label[v], st.loss_after,
               after);
        EXPECT(after < 0.8 * before, "%s: rank-3 fit lowers the loss: %.6g -> %.6g", label[v], before, after);
        /* optimality: perturbing the product never lowers the damped loss */
        for (int k = 0; k < 4; k++) {
            bb_lora *q = NULL;
            bb_lora_clone(l, &q);
            q->a[k * 5 % (p.rows * r)] += 0.05f;
            q->b[k * 7 % (p.cols * r)] -= 0.05f;
            EXPECT(damped_loss(&p, q, o.damp) >= dl * (1 - 1e-6), "%s: perturbation %d lowers the loss", label[v], k);
            bb_lora_destroy(&q);
        }
        free(ab);
        bb_lora_destroy(&l);
    }
    free(ab_ind);
    problem_free(&p);
}

static void test_closed_form_matches_independent(void) {
    closed_form_case(24, 16); /* rows > cols */
    closed_form_case(12, 20); /* rows < cols */
}

static void test_closed_form_singular_and_exact(void) {
    /* 6 tokens for 16 inputs, 2 dead inputs: H singular; the fit still works through damping. */
    problem p = make_problem(20, 16, 6, 5, 2);
    bb_heal_fit_opts o;
    bb_heal_fit_opts_default(&o);
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(p.rows, p.cols, 4, &l));
    bb_heal_fit_stats st;
    EXPECT_OK(bb_heal_closed_form(&o, "singular", p.w, p.what, p.h, l, &st));
    EXPECT(st.loss_after < 0.5 * st.loss_before, "singular H: %.6g -> %.6g", st.loss_before, st.loss_after);
    /* damping 0 on a singular H: retried from 1e-6 and factored */
    o.damp = 0;
    EXPECT_OK(bb_heal_closed_form(&o, "singular", p.w, p.what, p.h, l, &st));
    EXPECT(st.damp_used > 0, "damping raised from 0, used %g", st.damp_used);
    /* with 6 tokens the data span has rank 6 (minus dead ones): rank 6 leaves almost nothing */
    bb_lora *l6 = NULL;
    EXPECT_OK(bb_lora_create(p.rows, p.cols, 6, &l6));
    o.damp = 1e-6;
    EXPECT_OK(bb_heal_closed_form(&o, "singular", p.w, p.what, p.h, l6, &st));
    EXPECT(st.loss_after < 1e-4 * st.loss_before, "rank of the data: %.6g -> %.6g", st.loss_before, st.loss_after);
    /* H = 0: nothing to fit, zero factors and zero loss */
    memset(p.h, 0, sizeof(float) * (size_t)(p.cols * p.cols));
    EXPECT_OK(bb_heal_closed_form(&o, "zero", p.w, p.what, p.h, l, &st));
    EXPECT(st.loss_before == 0 && st.loss_after == 0, "H = 0: losses %g %g", st.loss_before, st.loss_after);
    int nz = 0;
    for (int64_t i = 0; i < p.rows * 4; i++) nz += l->a[i] != 0;
    EXPECT(nz == 0, "H = 0 leaves zero factors (%d non-zero)", nz);
    bb_lora_destroy(&l);
    bb_lora_destroy(&l6);
    problem_free(&p);
}

/* rank above min(rows, cols): the fit is exact and the extra directions stay zero */
static void test_closed_form_full_rank(void) {
    problem p = make_problem(6, 4, 20, 13, 0);
    for (int v = 0; v < 2; v++) {
        bb_lora *l = NULL;
        EXPECT_OK(bb_lora_create(6, 4, 5, &l));
        bb_heal_fit_stats st;
        if (v)
            EXPECT_OK(bb_heal_closed_form_ref(NULL, "full", p.w, p.what, p.h, l, &st));
        else
            EXPECT_OK(bb_heal_closed_form(NULL, "full", p.w, p.what, p.h, l, &st));
        EXPECT(st.loss_after <= 1e-6 * st.loss_before, "%s: rank 5 of a 6x4 error: %.3g of %.3g", v ? "ref" : "fast",
               st.loss_after, st.loss_before);
        int extra = 0;
        for (int i = 0; i < 6; i++) extra += l->a[i * 5 + 4] != 0;
        for (int j = 0; j < 4; j++) extra += l->b[4 * 4 + j] != 0;
        EXPECT(extra == 0 && st.sigma_r == 0, "direction 5 is zero (%d entries), sigma_r %g", extra, st.sigma_r);
        bb_lora_destroy(&l);
    }
    problem_free(&p);
}

static void test_closed_form_errors(void) {
    problem p = make_problem(8, 6, 20, 3, 0);
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(8, 6, 2, &l));
    p.w[13] = NAN;
    EXPECT_ERR(bb_heal_closed_form(NULL, "nan", p.w, p.what, p.h, l, NULL), BB_ERR_NUMERIC, "row 2, column 1");
    p.w[13] = 0;
    bb_heal_fit_opts o;
    bb_heal_fit_opts_default(&o);
    o.damp = -1;
    EXPECT_ERR(bb_heal_closed_form(&o, "neg", p.w, p.what, p.h, l, NULL), BB_ERR_ARG, "must be >= 0");
    /* an indefinite "Gram" with a negative eigenvalue below the damping range fails clearly */
    float hbad[36] = {0};
    for (int j = 0; j < 6; j++) hbad[j * 6 + j] = 1;
    hbad[1] = hbad[6] = 50;
    o.damp = 0.01;
    o.max_retries = 1;
    EXPECT_ERR(bb_heal_closed_form(&o, "indef", p.w, p.what, hbad, l, NULL), BB_ERR_NUMERIC, "raise the healing");
    bb_lora_destroy(&l);
    problem_free(&p);
}

/* Gradients: fast (from G0) vs reference vs central finite differences of the reference loss. */
static void test_gradients(void) {
    problem p = make_problem(9, 7, 30, 21, 0);
    const int r = 2;
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(p.rows, p.cols, r, &l));
    bb_rng_fill_normal(bb_rng_make(4, 1), 0, (size_t)(p.rows * r), l->a);
    bb_rng_fill_normal(bb_rng_make(4, 2), 0, (size_t)(p.cols * r), l->b);
    int64_t m = p.rows, n = p.cols;
    float *g0 = malloc(sizeof(float) * (size_t)(m * n));
    double l0 = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < n; k++) s += ((double)p.w[i * n + k] - p.what[i * n + k]) * p.h[k * n + j];
            g0[i * n + j] = (float)s;
            l0 += s * ((double)p.w[i * n + j] - p.what[i * n + j]);
        }
    float ga[18], gb[14], ga_r[18], gb_r[14];
    double loss, loss_r, loss_direct;
    EXPECT_OK(bb_heal_grad(NULL, g0, l0, p.h, l, &loss, ga, gb));
    EXPECT_OK(bb_heal_grad_ref(p.w, p.what, p.h, l, &loss_r, ga_r, gb_r));
    EXPECT_OK(bb_heal_loss_ref("g", p.w, p.what, l, m, n, p.h, &loss_direct));
    EXPECT(fabs(loss - loss_direct) <= 1e-4 * loss_direct, "loss from G0 %.8g vs direct %.8g", loss, loss_direct);
    EXPECT(fabs(loss_r - loss_direct) <= 1e-9 * loss_direct, "reference loss %.10g vs %.10g", loss_r, loss_direct);
    double scale = 0;
    for (int k = 0; k < 18; k++) scale = fmax(scale, fabs(ga_r[k]));
    for (int k = 0; k < 14; k++) scale = fmax(scale, fabs(gb_r[k]));
    for (int which = 0; which < 2; which++) {
        int cnt = which ? 14 : 18;
        float *par = which ? l->b : l->a, *g = which ? gb : ga, *gr = which ? gb_r : ga_r;
        for (int k = 0; k < cnt; k++) {
            float keep = par[k];
            const float hstep = 1e-2f;
            double lp, lm;
            par[k] = keep + hstep;
            bb_heal_loss_ref("g", p.w, p.what, l, m, n, p.h, &lp);
            par[k] = keep - hstep;
            bb_heal_loss_ref("g", p.w, p.what, l, m, n, p.h, &lm);
            par[k] = keep;
            /* the loss is quadratic in one coordinate: the central difference is exact up to rounding */
            double fd = (lp - lm) / (2.0 * ((double)(keep + hstep) - (double)keep));
            EXPECT(fabs(gr[k] - fd) <= 1e-4 * scale, "%s[%d]: reference %.8g, finite difference %.8g",
                   which ? "dB" : "dA", k, gr[k], fd);
            EXPECT(fabs(g[k] - gr[k]) <= 1e-4 * scale, "%s[%d]: fast %.8g, reference %.8g", which ? "dB" : "dA", k,
                   g[k], gr[k]);
        }
    }
    free(g0);
    bb_lora_destroy(&l);
    problem_free(&p);
}

static void test_adam_fast_vs_ref(void) {
    problem p = make_problem(20, 12, 40, 8, 0);
    for (int tw = 0; tw < 2; tw++) {
        bb_lora *l1 = NULL, *l2 = NULL;
        EXPECT_OK(bb_lora_create(p.rows, p.cols, 3, &l1));
        bb_heal_lora_init(l1, 7, 0);
        EXPECT_OK(bb_lora_clone(l1, &l2));
        float *w1 = malloc(sizeof(float) * 240), *w2 = malloc(sizeof(float) * 240);
        memcpy(w1, p.what, sizeof(float) * 240);
        memcpy(w2, p.what, sizeof(float) * 240);
        bb_mask *mask = NULL;
        bb_mask_create(p.rows, p.cols, 1, &mask);
        bb_mask_from_nonzero(mask, p.what);
        bb_heal_adam_opts o;
        bb_heal_adam_opts_default(&o);
        o.steps = 60;
        o.lr = 0.02;
        o.train_weights = tw;
        o.mask = mask;
        double c1[61], c2[61];
        bb_heal_adam_stats s1, s2;
        EXPECT_OK(bb_heal_adam(&o, "adam", p.w, w1, p.h, l1, c1, &s1));
        EXPECT_OK(bb_heal_adam_ref(&o, "adam", p.w, w2, p.h, l2, c2, &s2));
        double worst = 0;
        for (int t = 0; t <= 60; t++) worst = fmax(worst, fabs(c1[t] - c2[t]) / c2[0]);
        EXPECT(worst < 1e-3, "train_weights %d: curves differ by %.3g of the start", tw, worst);
        EXPECT(c1[60] < 0.7 * c1[0], "train_weights %d: 60 steps lower the loss %.6g -> %.6g", tw, c1[0], c1[60]);
        EXPECT(s1.loss_before == c1[0] && s1.loss_after == c1[60], "stats hold the curve's ends");
        double direct;
        EXPECT_OK(bb_heal_loss_ref("adam", p.w, w1, l1, p.rows, p.cols, p.h, &direct));
        EXPECT(fabs(direct - c1[60]) <= 1e-4 * c1[0], "final loss %.8g, recomputed %.8g", c1[60], direct);
        int moved = 0, zero_kept = 1;
        for (int k = 0; k < 240; k++) {
            moved += w1[k] != p.what[k];
            if (p.what[k] == 0 && w1[k] != 0) zero_kept = 0;
        }
        EXPECT(zero_kept, "pruned entries stay exactly 0");
        EXPECT(tw ? moved > 100 : moved == 0, "train_weights %d: %d kept weights moved", tw, moved);
        bb_mask_destroy(&mask);
        free(w1);
        free(w2);
        bb_lora_destroy(&l1);
        bb_lora_destroy(&l2);
    }
    problem_free(&p);
}

static void test_adam_after_closed_form(void) {
    /* Adam starting from the damped closed form works on the undamped loss: it never ends above its start. */
    problem p = make_problem(30, 20, 12, 9, 1);
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(p.rows, p.cols, 4, &l));
    bb_heal_fit_opts fo;
    bb_heal_fit_opts_default(&fo);
    fo.damp = 0.1;
    bb_heal_fit_stats fs;
    EXPECT_OK(bb_heal_closed_form(&fo, "cf", p.w, p.what, p.h, l, &fs));
    bb_heal_adam_opts o;
    bb_heal_adam_opts_default(&o);
    o.steps = 100;
    o.lr = 1e-3;
    double curve[101];
    bb_heal_adam_stats s;
    EXPECT_OK(bb_heal_adam(&o, "cf", p.w, p.what, p.h, l, curve, &s));
    EXPECT(fabs(curve[0] - fs.loss_after) <= 1e-4 * fs.loss_before, "Adam starts at the fit: %.8g vs %.8g", curve[0],
           fs.loss_after);
    EXPECT(s.best <= curve[0] && curve[100] < curve[0], "Adam improves on the damped fit: %.8g -> %.8g", curve[0],
           curve[100]);
    bb_lora_destroy(&l);
    problem_free(&p);
}

/* From the closed form with a large lr Adam overshoots; the best iterate is what comes back. */
static void test_adam_keeps_best(void) {
    problem p = make_problem(16, 10, 30, 17, 0);
    for (int tw = 0; tw < 2; tw++) {
        bb_lora *l = NULL;
        EXPECT_OK(bb_lora_create(p.rows, p.cols, 2, &l));
        bb_heal_fit_opts fo;
        bb_heal_fit_opts_default(&fo);
        fo.damp = 1e-6;
        EXPECT_OK(bb_heal_closed_form(&fo, "best", p.w, p.what, p.h, l, NULL));
        float *wh = malloc(sizeof(float) * 160);
        memcpy(wh, p.what, sizeof(float) * 160);
        bb_mask *m = NULL;
        bb_mask_create(p.rows, p.cols, 1, &m);
        bb_mask_from_nonzero(m, p.what);
        bb_heal_adam_opts o;
        bb_heal_adam_opts_default(&o);
        o.steps = 20;
        o.lr = tw ? 3.0 : 0.05;
        o.train_weights = tw;
        o.mask = m;
        double c[21], mn = INFINITY, direct;
        int arg = -1;
        bb_heal_adam_stats s;
        EXPECT_OK(bb_heal_adam(&o, "best", p.w, wh, p.h, l, c, &s));
        for (int t = 0; t <= 20; t++)
            if (c[t] < mn) mn = c[t], arg = t;
        EXPECT(c[20] > c[0], "train_weights %d: a large lr overshoots the closed form: %.6g -> %.6g", tw, c[0], c[20]);
        EXPECT(s.loss_after == mn && s.best_step == arg && s.loss_after <= s.loss_before,
               "returned loss %.8g (step %d) vs curve minimum %.8g (step %d)", s.loss_after, s.best_step, mn, arg);
        EXPECT_OK(bb_heal_loss_ref("best", p.w, wh, l, p.rows, p.cols, p.h, &direct));
        EXPECT(fabs(direct - s.loss_after) <= 1e-4 * s.loss_before, "returned parameters give %.8g, stats %.8g",
               direct, s.loss_after);
        free(wh);
        bb_mask_destroy(&m);
        bb_lora_destroy(&l);
    }
    problem_free(&p);
}

static void test_adam_errors(void) {
    problem p = make_problem(6, 5, 10, 2, 0);
    bb_lora *l = NULL;
    EXPECT_OK(bb_lora_create(6, 5, 2, &l));
    bb_heal_adam_opts o;
    bb_heal_adam_opts_default(&o);
    EXPECT_ERR(bb_heal_adam(&o, "z", p.w, p.what, p.h, l, NULL, NULL), BB_ERR_ARG, "stationary point");
    bb_heal_lora_init(l, 1, 0);
    o.train_weights = 1;
    EXPECT_ERR(bb_heal_adam(&o, "z", p.w, p.what, p.h, l, NULL, NULL), BB_ERR_ARG, "needs the layer's mask");
    o.train_weights = 0;
    o.lr = 0;
    EXPECT_ERR(bb_heal_adam(&o, "z", p.w, p.what, p.h, l, NULL, NULL), BB_ERR_ARG, "lr 0 > 0");
    o.lr = 1e30;
    o.steps = 50;
    int quiet = bb_error_set_quiet(1);
    bb_status s = bb_heal_adam(&o, "z", p.w, p.what, p.h, l, NULL, NULL);
    bb_error_set_quiet(quiet);
    EXPECT(s == BB_OK || s == BB_ERR_NUMERIC, "a huge lr either survives or fails as numeric, got %s",
           bb_status_name(s));
    bb_lora_destroy(&l);
    problem_free(&p);
}

static void test_schedule_and_config(void) {
    int e;
    double lr;
    bb_heal_schedule(200, 2e-4, 1, 1, 5, &e, &lr);
    EXPECT(e == 200 && fabs(lr - 2e-4) < 1e-15, "k=1: %d %g", e, lr);
    bb_heal_schedule(200, 2e-4, 1, 2, 5, &e, &lr);
    EXPECT(e == 160 && fabs(lr - 1.6e-4) < 1e-15, "k=2: %d %g", e, lr);
    bb_heal_schedule(200, 2e-4, 1, 5, 5, &e, &lr);
    EXPECT(e == 40 && fabs(lr - 4e-5) < 1e-15, "k=5: %d %g", e, lr);
    bb_heal_schedule(200, 2e-4, 0, 5, 5, &e, &lr);
    EXPECT(e == 200 && lr == 2e-4, "no taper: %d %g", e, lr);
    bb_heal_schedule(7, 1, 1, 3, 3, &e, &lr);
    EXPECT(e == 2 && fabs(lr - 1.0 / 3) < 1e-15, "7 (1 - 2/3) rounds to 2: %d %g", e, lr);
    EXPECT(bb_heal_step_flops(4096, 11008, 8, 0) == 2.0 * 8 * 11008 * 11008 + 4.0 * 4096 * 11008 * 8 +
                                                         4.0 * 64 * (4096 + 11008),
           "flops formula");
    bb_config cfg;
    EXPECT_OK(bb_config_defaults(&cfg));
    bb_heal_adam_opts o;
    int rank, cf;
    EXPECT_OK(bb_config_set(&cfg, "waves.count=4"));
    EXPECT_OK(bb_heal_opts_from_config(&cfg, 3, &o, &rank, &cf));
    EXPECT(o.steps == 100 && fabs(o.lr - 1e-4) < 1e-15 && rank == 8 && cf == 1, "wave 3 of 4: %d %g rank %d", o.steps,
           o.lr, rank);
    EXPECT_ERR(bb_heal_opts_from_config(&cfg, 5, &o, NULL, NULL), BB_ERR_CONFIG, "outside 1..waves.count");
    EXPECT_OK(bb_config_set(&cfg, "heal.train_scales=true"));
    EXPECT_OK(bb_heal_opts_from_config(&cfg, 1, &o, NULL, NULL)); /* applied at quantization (compress/scales.h) */
    EXPECT_OK(bb_config_set(&cfg, "quant.method=none"));
    EXPECT_ERR(bb_config_validate(&cfg), BB_ERR_CONFIG, "no quantization scales to train");
}

int main(void) {
    TEST_RUN(test_closed_form_matches_independent);
    TEST_RUN(test_closed_form_singular_and_exact);
    TEST_RUN(test_closed_form_full_rank);
    TEST_RUN(test_closed_form_errors);
    TEST_RUN(test_gradients);
    TEST_RUN(test_adam_fast_vs_ref);
    TEST_RUN(test_adam_after_closed_form);
    TEST_RUN(test_adam_keeps_best);
    TEST_RUN(test_adam_errors);
    TEST_RUN(test_schedule_and_config);
    return TEST_DONE();
}
