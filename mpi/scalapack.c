/* scalapack.c — BLACS grids, block-cyclic scatter/gather, distributed inverse
 * Cholesky and randomized SVD (see scalapack.h). */
#include "mpi/scalapack.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "linalg/backend.h"

/* ---- the BLACS / PBLAS / ScaLAPACK symbols (no C header exists) ---- */

extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridmap(int *ctxt, int *usermap, int ldumap, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
                      const int *icsrc, const int *ictxt, const int *lld, int *info);
extern void pdgemr2d_(const int *m, const int *n, const double *a, const int *ia, const int *ja, const int *desca,
                      double *b, const int *ib, const int *jb, const int *descb, const int *ictxt);
extern void pdgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const double *alpha,
                    const double *a, const int *ia, const int *ja, const int *desca, const double *b, const int *ib,
                    const int *jb, const int *descb, const double *beta, double *c, const int *ic, const int *jc,
                    const int *descc, size_t lta, size_t ltb);
extern void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca,
                     int *info, size_t luplo);
extern void pdpotri_(const char *uplo, const int *n, double *a, const int *ia, const int *ja, const int *desca,
                     int *info, size_t luplo);
extern void pdgeqrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca,
                     double *tau, double *work, const int *lwork, int *info);
extern void pdorgqr_(const int *m, const int *n, const int *k, double *a, const int *ia, const int *ja,
                     const int *desca, const double *tau, double *work, const int *lwork, int *info);
extern void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
                     const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju,
                     const int *descu, double *vt, const int *ivt, const int *jvt, const int *descvt, double *work,
                     const int *lwork, int *info, size_t ljobu, size_t ljobvt);

static const int I0 = 0, I1 = 1;

/* ---- grids ---- */

bb_status bb_pgrid_create(MPI_Comm comm, int max_procs, int nb, bb_pgrid *g) {
    memset(g, 0, sizeof *g);
    g->ctxt = g->ctxt_owner = -1;
    g->myrow = g->mycol = -1;
    BB_CHECK(nb >= 0 && max_procs >= 0, BB_ERR_ARG, "process grid: block size %d and rank cap %d must be >= 0", nb,
             max_procs);
    g->comm = comm;
    g->nb = nb ? nb : 64;
    BB_CHECK(MPI_Comm_rank(comm, &g->rank) == MPI_SUCCESS && MPI_Comm_size(comm, &g->size) == MPI_SUCCESS, BB_ERR_MPI,
             "process grid: cannot query the communicator");
    int q = max_procs && max_procs < g->size ? max_procs : g->size;
    int pr = 1;
    for (int d = 1; d * d <= q; d++)
        if (q % d == 0) pr = d;
    g->nprow = pr;
    g->npcol = q / pr;
    g->sys = Csys2blacs_handle(comm);
    int *map = malloc(sizeof(int) * (size_t)q);
    BB_CHECK(map, BB_ERR_OOM, "process grid: out of memory");
    /* column-major map, as BLACS reads it: rank = row + col * nprow */
    for (int i = 0; i < q; i++) map[i] = i;
    int ctxt = g->sys;
    Cblacs_gridmap(&ctxt, map, g->nprow, g->nprow, g->npcol);
    int ctxt1 = g->sys, owner = 0;
    Cblacs_gridmap(&ctxt1, &owner, 1, 1, 1);
    free(map);
    g->in_grid = g->rank < q;
    if (g->in_grid) {
        int pr2, pc2;
        g->ctxt = ctxt;
        Cblacs_gridinfo(ctxt, &pr2, &pc2, &g->myrow, &g->mycol);
        BB_CHECK(pr2 == g->nprow && pc2 == g->npcol && g->myrow >= 0, BB_ERR_MPI,
                 "process grid: BLACS made a %d x %d grid (asked %d x %d)", pr2, pc2, g->nprow, g->npcol);
    }
    if (g->rank == 0) g->ctxt_owner = ctxt1;
    return BB_OK;
}

void bb_pgrid_destroy(bb_pgrid *g) {
    if (g->ctxt >= 0) Cblacs_gridexit(g->ctxt);
    if (g->ctxt_owner >= 0) Cblacs_gridexit(g->ctxt_owner);
    if (g->size) Cfree_blacs_system_handle(g->sys);
    memset(g, 0, sizeof *g);
    g->ctxt = g->ctxt_owner = -1;
}

/* The first grid rank's status reaches every grid rank: the worst one wins (any failure fails all). */
static bb_status agree(const bb_pgrid *g, bb_status st) {
    int mine = st != BB_OK, any = 0;
    /* grid ranks are 0 .. nprow*npcol-1 of comm; an allreduce over comm would need the idle ranks, so
     * the grid's first rank gathers by point-to-point */
    int q = g->nprow * g->npcol;
    if (g->rank == 0) {
        any = mine;
        for (int r = 1; r < q; r++) {
            int v = 0;
            MPI_Recv(&v, 1, MPI_INT, r, 7101, g->comm, MPI_STATUS_IGNORE);
            any |= v;
        }
        for (int r = 1; r < q; r++) MPI_Send(&any, 1, MPI_INT, r, 7102, g->comm);
    } else {
        MPI_Send(&mine, 1, MPI_INT, 0, 7101, g->comm);
        MPI_Recv(&any, 1, MPI_INT, 0, 7102, g->comm, MPI_STATUS_IGNORE);
    }
    if (st != BB_OK) return st;
    return any ? bb_error(BB_ERR_MPI, __FILE__, __LINE__, "another rank of the process grid failed") : BB_OK;
}

/* The owner's value of *v to every grid rank (point-to-point: the idle ranks of comm stay out). */
static void grid_bcast_int(const bb_pgrid *g, int *v) {
    int q = g->nprow * g->npcol;
    if (g->rank == 0)
        for (int r = 1; r < q; r++) MPI_Send(v, 1, MPI_INT, r, 7103, g->comm);
    else
        MPI_Recv(v, 1, MPI_INT, 0, 7103, g->comm, MPI_STATUS_IGNORE);
}

/* ---- distributed matrices ---- */

typedef struct {
    int m, n, mloc, nloc;
    int desc[9];
    double *a; /* (mloc, nloc) column-major, lld = max(1, mloc) */
} dmat;

static bb_status dmat_create(const bb_pgrid *g, int m, int n, dmat *d) {
    memset(d, 0, sizeof *d);
    d->m = m;
    d->n = n;
    d->mloc = numroc_(&m, &g->nb, &g->myrow, &I0, &g->nprow);
    d->nloc = numroc_(&n, &g->nb, &g->mycol, &I0, &g->npcol);
    int lld = d->mloc > 1 ? d->mloc : 1, info = 0;
    descinit_(d->desc, &m, &n, &g->nb, &g->nb, &I0, &I0, &g->ctxt, &lld, &info);
    BB_CHECK(info == 0, BB_ERR_INTERNAL, "descinit: argument %d is wrong (%d x %d, nb %d)", -info, m, n, g->nb);
    size_t cnt = (size_t)lld * (size_t)(d->nloc > 1 ? d->nloc : 1);
    d->a = calloc(cnt, sizeof(double));
    BB_CHECK(d->a, BB_ERR_OOM, "out of memory: a %d x %d block-cyclic piece (%zu bytes)", d->mloc, d->nloc,
             cnt * sizeof(double));
    return BB_OK;
}

static void dmat_free(dmat *d) {
    free(d->a);
    d->a = NULL;
}

/* Global (row, col) of local (li, lj). */
static int64_t grow(const bb_pgrid *g, int li) { return ((int64_t)(li / g->nb) * g->nprow + g->myrow) * g->nb + li % g->nb; }
static int64_t gcol(const bb_pgrid *g, int lj) { return ((int64_t)(lj / g->nb) * g->npcol + g->mycol) * g->nb + lj % g->nb; }

/* The owner's whole (m, n) column-major matrix full (lld m) to / from d. */
static void owner_desc(const bb_pgrid *g, int m, int n, int *desc) {
    memset(desc, 0, sizeof(int) * 9);
    desc[1] = -1; /* not in the owner's 1 x 1 grid */
    if (g->ctxt_owner < 0) return;
    int info = 0, lld = m > 1 ? m : 1;
    descinit_(desc, &m, &n, &m, &n, &I0, &I0, &g->ctxt_owner, &lld, &info);
}

static void scatter(const bb_pgrid *g, const double *full, dmat *d) {
    int desc0[9];
    owner_desc(g, d->m, d->n, desc0);
    pdgemr2d_(&d->m, &d->n, full, &I1, &I1, desc0, d->a, &I1, &I1, d->desc, &g->ctxt);
}

static void gather(const bb_pgrid *g, const dmat *d, double *full) {
    int desc0[9];
    owner_desc(g, d->m, d->n, desc0);
    pdgemr2d_(&d->m, &d->n, d->a, &I1, &I1, d->desc, full, &I1, &I1, desc0, &g->ctxt);
}

static void gemm(const char *ta, const char *tb, int m, int n, int k, const dmat *a, const dmat *b, dmat *c) {
    const double one = 1, zero = 0;
    pdgemm_(ta, tb, &m, &n, &k, &one, a->a, &I1, &I1, a->desc, b->a, &I1, &I1, b->desc, &zero, c->a, &I1, &I1, c->desc,
            1, 1);
}

/* ---- inverse Cholesky ---- */

bb_status bb_pchol_inverse_upper(const bb_pgrid *g, int64_t n64, float *a) {
    if (!g->in_grid) return BB_OK;
    bb_status st = n64 >= 1 && n64 <= INT32_MAX ? BB_OK : BB_ERR_ARG;
    BB_CALL(agree(g, st == BB_OK ? BB_OK : bb_error(st, __FILE__, __LINE__, "inverse Cholesky: size %lld", (long long)n64)));
    const int n = (int)n64;
    double *full = NULL;
    dmat h = {0};
    if (g->rank == 0) {
        full = malloc(sizeof(double) * (size_t)n * (size_t)n);
        st = full ? BB_OK : bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: a %d x %d Gram in double", n, n);
        if (full)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) full[i + (size_t)j * n] = a[(size_t)i * n + j];
    }
    if (st == BB_OK) st = dmat_create(g, n, n, &h);
    st = agree(g, st);
    int info = 0;
    if (st == BB_OK) {
        scatter(g, full, &h);
        pdpotrf_("U", &n, h.a, &I1, &I1, h.desc, &info, 1);
        if (info == 0) pdpotri_("U", &n, h.a, &I1, &I1, h.desc, &info, 1);
        if (info == 0) pdpotrf_("U", &n, h.a, &I1, &I1, h.desc, &info, 1);
        if (info == 0) gather(g, &h, full);
    }
    if (st == BB_OK && info != 0) {
        /* info is global in ScaLAPACK: every grid rank sees the same value */
        int prev = bb_error_set_quiet(1);
        st = bb_error(info > 0 ? BB_ERR_NUMERIC : BB_ERR_INTERNAL, __FILE__, __LINE__,
                      info > 0 ? "the matrix is not positive definite (pivot %d)" : "ScaLAPACK argument %d is wrong",
                      info > 0 ? info : -info);
        bb_error_set_quiet(prev);
    }
    if (st == BB_OK && g->rank == 0)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) a[(size_t)i * n + j] = j >= i ? (float)full[i + (size_t)j * n] : 0.0f;
    dmat_free(&h);
    free(full);
    return st;
}

bb_status bb_pchol_inverse_upper_damped(const bb_pgrid *g, const char *name, int64_t n, float *a, double damp,
                                        double damp_max, double *used) {
    if (!g->in_grid) return BB_OK;
    float *orig = NULL;
    double mean = 0;
    bb_status st = BB_OK;
    if (g->rank == 0) {
        orig = malloc(sizeof(float) * (size_t)(n * n));
        st = orig ? BB_OK : bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: copy of %s's Gram", name);
        for (int64_t j = 0; orig && j < n; j++) {
            if (a[j * n + j] == 0) a[j * n + j] = 1;
            mean += a[j * n + j];
        }
        mean /= (double)n;
        if (orig) memcpy(orig, a, sizeof(float) * (size_t)(n * n));
    }
    BB_CALL(agree(g, st));
    double lambda = damp, tried = damp;
    st = BB_ERR_NUMERIC;
    while (st == BB_ERR_NUMERIC && lambda <= damp_max * (1 + 1e-12)) {
        tried = lambda;
        if (g->rank == 0) {
            memcpy(a, orig, sizeof(float) * (size_t)(n * n));
            for (int64_t j = 0; j < n; j++) a[j * n + j] += (float)(lambda * mean);
        }
        st = bb_pchol_inverse_upper(g, n, a);
        if (st == BB_ERR_NUMERIC) lambda = lambda > 0 ? lambda * 10 : 1e-6;
    }
    free(orig);
    if (st == BB_OK) {
        if (used) *used = tried;
        return BB_OK;
    }
    if (st != BB_ERR_NUMERIC) return st;
    return bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                    "%s: H + lambda mean(diag H) I is not positive definite up to lambda %g: raise the damping limit",
                    name, tried);
}

/* ---- randomized SVD ---- */

/* Q of the QR of y, in place (pdgeqrf + pdorgqr). */
static bb_status orthonormalize(const bb_pgrid *g, dmat *y) {
    int m = y->m, n = y->n, info = 0, lwork = -1;
    double wq = 0;
    double *tau = calloc((size_t)(y->nloc + g->nb), sizeof(double));
    BB_CHECK(tau, BB_ERR_OOM, "out of memory: QR factors");
    pdgeqrf_(&m, &n, y->a, &I1, &I1, y->desc, tau, &wq, &lwork, &info);
    double wq2 = 0;
    pdorgqr_(&m, &n, &n, y->a, &I1, &I1, y->desc, tau, &wq2, &lwork, &info);
    lwork = (int)fmax(wq, wq2) + 1;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    if (!work) {
        free(tau);
        BB_CHECK(0, BB_ERR_OOM, "out of memory: QR workspace (%d doubles)", lwork);
    }
    pdgeqrf_(&m, &n, y->a, &I1, &I1, y->desc, tau, work, &lwork, &info);
    if (info == 0) pdorgqr_(&m, &n, &n, y->a, &I1, &I1, y->desc, tau, work, &lwork, &info);
    free(work);
    free(tau);
    BB_CHECK(info == 0, BB_ERR_NUMERIC, "distributed QR failed (info %d)", info);
    return BB_OK;
}

static double *owner_colmajor(const bb_pgrid *g, int64_t m, int64_t n, const float *a) {
    if (g->rank != 0) return NULL;
    double *full = malloc(sizeof(double) * (size_t)(m * n));
    if (full)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) full[i + j * m] = a[i * n + j];
    return full;
}

bb_status bb_prsvd(const bb_pgrid *g, int64_t m64, int64_t n64, const float *a, int k, int p, int q, uint64_t seed,
                   float *s, float *u, float *v) {
    if (!g->in_grid) return BB_OK;
    int64_t mn = m64 < n64 ? m64 : n64;
    bb_status st = BB_OK;
    if (!(m64 >= 1 && n64 >= 1 && m64 <= INT32_MAX && n64 <= INT32_MAX && k >= 1 && k <= mn && p >= 0 && q >= 0))
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                      "distributed randomized SVD: rank %d of a %lld x %lld matrix (oversample %d, iterations %d)", k,
                      (long long)m64, (long long)n64, p, q);
    BB_CALL(agree(g, st));
    const int m = (int)m64, n = (int)n64, l = (int)(k + p < mn ? k + p : mn);
    double *full = owner_colmajor(g, m64, n64, a), *bfull = NULL, *sv = NULL, *ub = NULL, *vt = NULL, *ufull = NULL;
    if (g->rank == 0 && !full) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: %d x %d in double", m, n);
    dmat A = {0}, om = {0}, y = {0}, z = {0}, bm = {0}, ubd = {0}, ud = {0};
    if (st == BB_OK) st = dmat_create(g, m, n, &A);
    if (st == BB_OK) st = dmat_create(g, n, l, &om);
    if (st == BB_OK) st = dmat_create(g, m, l, &y);
    if (st == BB_OK) st = dmat_create(g, n, l, &z);
    if (st == BB_OK) st = dmat_create(g, l, n, &bm);
    BB_CALL_GOTO(st, done, agree(g, st));
    scatter(g, full, &A);
    /* Omega exactly as bb_rsvd_run: column j, row i is normal(j * n + i) of the "rsvd.omega" stream */
    bb_rng rng = bb_rng_make(seed, bb_rng_stream_id("rsvd.omega"));
    for (int lj = 0; lj < om.nloc; lj++)
        for (int li = 0; li < om.mloc; li++) {
            int64_t i = grow(g, li), j = gcol(g, lj);
            om.a[li + (size_t)lj * (size_t)om.mloc] = (float)bb_rng_normal(rng, (uint64_t)(j * n + i));
        }
    gemm("N", "N", m, l, n, &A, &om, &y);
    for (int it = 0; it < q && st == BB_OK; it++) {
        st = orthonormalize(g, &y);
        if (st == BB_OK) gemm("T", "N", n, l, m, &A, &y, &z);
        if (st == BB_OK) st = orthonormalize(g, &z);
        if (st == BB_OK) gemm("N", "N", m, l, n, &A, &z, &y);
    }
    if (st == BB_OK) st = orthonormalize(g, &y);
    BB_CALL_GOTO(st, done, agree(g, st));
    gemm("T", "N", l, n, m, &y, &A, &bm);
    if (g->rank == 0) {
        bfull = malloc(sizeof(double) * (size_t)l * (size_t)n);
        sv = malloc(sizeof(double) * (size_t)l);
        ub = malloc(sizeof(double) * (size_t)l * (size_t)l);
        vt = malloc(sizeof(double) * (size_t)l * (size_t)n);
        if (!bfull || !sv || !ub || !vt) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: the small SVD");
    }
    BB_CALL_GOTO(st, done, agree(g, st));
    gather(g, &bm, bfull);
    if (g->rank == 0) {
        lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', l, n, bfull, l, sv, ub, l, vt, l);
        if (info != 0) st = bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__, "small SVD of the sketch failed (info %d)", (int)info);
        for (int i = 0; st == BB_OK && i < k; i++) s[i] = (float)sv[i];
        for (int64_t j = 0; st == BB_OK && v && j < n; j++)
            for (int c = 0; c < k; c++) v[j * k + c] = (float)vt[c + (size_t)j * l];
    }
    BB_CALL_GOTO(st, done, agree(g, st));
    int want_u = u != NULL; /* the owner's call */
    grid_bcast_int(g, &want_u);
    if (want_u) {
        st = dmat_create(g, l, k, &ubd);
        if (st == BB_OK) st = dmat_create(g, m, k, &ud);
        if (st == BB_OK && g->rank == 0) {
            ufull = malloc(sizeof(double) * (size_t)m * (size_t)k);
            if (!ufull) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: U (%d x %d)", m, k);
        }
        BB_CALL_GOTO(st, done, agree(g, st));
        scatter(g, ub, &ubd); /* the leading l x k block of ub (lld l) */
        gemm("N", "N", m, k, l, &y, &ubd, &ud);
        gather(g, &ud, ufull);
        if (g->rank == 0)
            for (int64_t i = 0; i < m; i++)
                for (int c = 0; c < k; c++) u[i * k + c] = (float)ufull[i + (size_t)c * m];
    }
done:
    dmat_free(&A);
    dmat_free(&om);
    dmat_free(&y);
    dmat_free(&z);
    dmat_free(&bm);
    dmat_free(&ubd);
    dmat_free(&ud);
    free(full);
    free(bfull);
    free(sv);
    free(ub);
    free(vt);
    free(ufull);
    return st;
}

bb_status bb_pgesvd_values(const bb_pgrid *g, int64_t m64, int64_t n64, const float *a, double *s) {
    if (!g->in_grid) return BB_OK;
    const int m = (int)m64, n = (int)n64, mn = m < n ? m : n;
    double *full = owner_colmajor(g, m64, n64, a), *sv = NULL, *work = NULL;
    bb_status st = g->rank == 0 && !full ? bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory") : BB_OK;
    dmat A = {0};
    if (st == BB_OK) st = dmat_create(g, m, n, &A);
    sv = malloc(sizeof(double) * (size_t)mn);
    if (st == BB_OK && !sv) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory");
    BB_CALL_GOTO(st, done, agree(g, st));
    scatter(g, full, &A);
    int info = 0, lwork = -1;
    double wq = 0, dummy = 0;
    pdgesvd_("N", "N", &m, &n, A.a, &I1, &I1, A.desc, sv, &dummy, &I1, &I1, A.desc, &dummy, &I1, &I1, A.desc, &wq,
             &lwork, &info, 1, 1);
    lwork = (int)wq + 1;
    work = malloc(sizeof(double) * (size_t)lwork);
    if (!work) st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: pdgesvd workspace");
    BB_CALL_GOTO(st, done, agree(g, st));
    pdgesvd_("N", "N", &m, &n, A.a, &I1, &I1, A.desc, sv, &dummy, &I1, &I1, A.desc, &dummy, &I1, &I1, A.desc, work,
             &lwork, &info, 1, 1);
    if (info != 0) st = bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__, "pdgesvd failed (info %d)", info);
    if (st == BB_OK && g->rank == 0) memcpy(s, sv, sizeof(double) * (size_t)mn);
    st = agree(g, st);
done:
    dmat_free(&A);
    free(full);
    free(sv);
    free(work);
    return st;
}

/* ---- the dispatcher ---- */

static bb_status local_inverse(const char *name, int64_t n, float *a, double damp, double damp_max, double *used) {
    const bb_linalg_backend *be;
    BB_CALL(bb_linalg_backend_get("cpu", &be));
    float *orig = malloc(sizeof(float) * (size_t)(n * n));
    BB_CHECK(orig, BB_ERR_OOM, "out of memory: copy of %s's Gram", name);
    double mean = 0;
    for (int64_t j = 0; j < n; j++) {
        if (a[j * n + j] == 0) a[j * n + j] = 1;
        mean += a[j * n + j];
    }
    mean /= (double)n;
    memcpy(orig, a, sizeof(float) * (size_t)(n * n));
    bb_status st = BB_ERR_NUMERIC;
    double lambda = damp, tried = damp;
    while (st == BB_ERR_NUMERIC && lambda <= damp_max * (1 + 1e-12)) {
        tried = lambda;
        memcpy(a, orig, sizeof(float) * (size_t)(n * n));
        for (int64_t j = 0; j < n; j++) a[j * n + j] += (float)(lambda * mean);
        st = bb_linalg_inverse_cholesky_upper(be, a, n);
        if (st == BB_ERR_NUMERIC) lambda = lambda > 0 ? lambda * 10 : 1e-6;
    }
    free(orig);
    if (st == BB_OK && used) *used = tried;
    for (int64_t i = 0; st == BB_OK && i < n; i++)
        for (int64_t j = 0; j < i; j++) a[i * n + j] = 0; /* as the ScaLAPACK path: the upper factor alone */
    if (st == BB_ERR_NUMERIC)
        return bb_error(BB_ERR_NUMERIC, __FILE__, __LINE__,
                        "%s: H + lambda mean(diag H) I is not positive definite up to lambda %g: raise the damping limit",
                        name, tried);
    return st;
}

bb_status bb_inverse_cholesky_dist(MPI_Comm comm, int64_t max_matrix_bytes, const char *name, int64_t n, float *a,
                                   double damp, double damp_max, double *used) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    int64_t bytes = n * n * (int64_t)sizeof(double);
    if (bytes <= max_matrix_bytes) {
        bb_status st = rank == 0 ? local_inverse(name, n, a, damp, damp_max, used) : BB_OK;
        int code = (int)st;
        MPI_Bcast(&code, 1, MPI_INT, 0, comm);
        if (rank != 0 && code != BB_OK)
            return bb_error((bb_status)code, __FILE__, __LINE__, "%s: the inverse Cholesky failed on rank 0", name);
        return st;
    }
    bb_pgrid g;
    BB_CALL(bb_pgrid_create(comm, 0, 0, &g));
    if (rank == 0)
        bb_debug("%s: %lld x %lld Gram (%.1f MiB in double) over a %d x %d ScaLAPACK grid", name, (long long)n,
                 (long long)n, (double)bytes / 1048576.0, g.nprow, g.npcol);
    bb_status st = bb_pchol_inverse_upper_damped(&g, name, n, a, damp, damp_max, used);
    bb_pgrid_destroy(&g);
    return st;
}
