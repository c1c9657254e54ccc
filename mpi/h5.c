/* h5.c — shared HDF5 helpers: MPI-IO files, groups, attributes, checked datasets, messages naming file and object. */
#include "mpi/h5.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi/h5check.h"

typedef struct {
    const char *name;
    hid_t file, mem;
    H5T_class_t cls;
    size_t size;
    H5T_sign_t sign; /* integers only */
} h5type;

/* H5T_* are run-time values, so the table is built on each call. */
static h5type type_of(bb_h5_type t) {
    const h5type table[BB_H5_TYPE_COUNT] = {
        [BB_H5_F32] = {"f32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, H5T_FLOAT, 4, H5T_SGN_ERROR},
        [BB_H5_F64] = {"f64", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, H5T_FLOAT, 8, H5T_SGN_ERROR},
        [BB_H5_I32] = {"i32", H5T_STD_I32LE, H5T_NATIVE_INT32, H5T_INTEGER, 4, H5T_SGN_2},
        [BB_H5_I64] = {"i64", H5T_STD_I64LE, H5T_NATIVE_INT64, H5T_INTEGER, 8, H5T_SGN_2},
        [BB_H5_U8] = {"u8", H5T_STD_U8LE, H5T_NATIVE_UINT8, H5T_INTEGER, 1, H5T_SGN_NONE},
        [BB_H5_U64] = {"u64", H5T_STD_U64LE, H5T_NATIVE_UINT64, H5T_INTEGER, 8, H5T_SGN_NONE},
    };
    return table[t];
}

const char *bb_h5_type_name(bb_h5_type t) { return t >= 0 && t < BB_H5_TYPE_COUNT ? type_of(t).name : "?"; }
size_t bb_h5_type_size(bb_h5_type t) { return t >= 0 && t < BB_H5_TYPE_COUNT ? type_of(t).size : 0; }

/* ---- messages ------------------------------------------------------------------ */

typedef struct {
    char api[320];  /* the outermost failure: "unable to open file (in H5Fopen)" */
    char root[256]; /* the innermost: "truncated file", "file signature not found" */
} h5cause;

static herr_t walk_cause(unsigned n, const H5E_error2_t *e, void *ud) {
    h5cause *c = ud;
    if (n == 0)
        snprintf(c->api, sizeof c->api, "%s (in %s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    if (e->desc) snprintf(c->root, sizeof c->root, "%s", e->desc);
    return 0;
}

/* Read HDF5's error stack before any other HDF5 call clears it. */
static void take_cause(h5cause *c) {
    c->api[0] = c->root[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cause, c);
    H5Eclear2(H5E_DEFAULT);
}

static bb_status report(const h5cause *c, const char *where, const char *file, int line, const char *expr) {
    int extra = c->root[0] && !strstr(c->api, c->root);
    return bb_error(BB_ERR_HDF5, file, line, "%s failed on %s: %s%s%s%s", expr, where,
                    c->api[0] ? c->api : "no HDF5 error description", extra ? " (" : "", extra ? c->root : "",
                    extra ? ")" : "");
}

void bb_h5_where(hid_t loc, const char *name, char *buf, size_t n) {
    char fname[1024] = "?", oname[512] = "";
    if (loc >= 0) {
        if (H5Fget_name(loc, fname, sizeof fname) < 0) snprintf(fname, sizeof fname, "?");
        if (H5Iget_type(loc) != H5I_FILE && H5Iget_name(loc, oname, sizeof oname) < 0) oname[0] = 0;
    }
    H5Eclear2(H5E_DEFAULT);
    size_t ol = strlen(oname);
    int slash = name && name[0] && !(ol && oname[ol - 1] == '/');
    snprintf(buf, n, "%s:%s%s%s", fname, ol ? oname : (slash ? "" : "/"), slash ? "/" : "", name ? name : "");
}

bb_status bb_h5_fail(hid_t loc, const char *name, const char *file, int line, const char *expr) {
    h5cause c;
    take_cause(&c);
    char where[1600];
    bb_h5_where(loc, name, where, sizeof where);
    return report(&c, where, file, line, expr);
}

/* The object path alone ("/layer_000/attn_q/mask") and the file name, for
 * the messages that are not HDF5 failures. */
static void names(hid_t loc, const char *name, char *file, size_t nf, char *obj, size_t no) {
    char where[1600];
    bb_h5_where(loc, name, where, sizeof where);
    char *colon = strrchr(where, ':');
    /* The object path never contains ':' (birdbone's names do not). */
    if (colon) {
        *colon = 0;
        snprintf(obj, no, "%s", colon + 1);
    } else {
        snprintf(obj, no, "%s", name ? name : "/");
    }
    snprintf(file, nf, "%s", where);
}

/* Run expr only while st is OK; keep the first failure (handles opened before
 * must still be closed on the way out). */
#define STEP(st, loc, name, expr)                                                                                      \
    do {                                                                                                               \
        if ((st) == BB_OK && (expr) < 0) (st) = bb_h5_fail((loc), (name), __FILE__, __LINE__, #expr);                  \
    } while (0)

void bb_h5_close_id(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
}

/* ---- files --------------------------------------------------------------------- */

static int mpi_usable(MPI_Comm comm) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    return comm != MPI_COMM_NULL && inited && !fin;
}

static bb_status file_access(const char *path, MPI_Comm comm, hid_t *fapl) {
    h5cause c;
    *fapl = H5Pcreate(H5P_FILE_ACCESS);
    herr_t e = *fapl < 0 ? -1 : H5Pset_fclose_degree(*fapl, H5F_CLOSE_STRONG);
    if (e >= 0 && mpi_usable(comm)) e = H5Pset_fapl_mpio(*fapl, comm, MPI_INFO_NULL);
    if (e < 0) {
        take_cause(&c);
        bb_h5_close_id(*fapl);
        *fapl = -1;
        return report(&c, path, __FILE__, __LINE__, "file access properties (MPI-IO driver)");
    }
    return BB_OK;
}

bb_status bb_h5_create(const char *path, MPI_Comm comm, hid_t *f) {
    *f = -1;
    bb_h5_quiet();
    hid_t fapl;
    BB_CALL(file_access(path, comm, &fapl));
    *f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    h5cause c;
    if (*f < 0) take_cause(&c);
    H5Pclose(fapl);
    if (*f < 0) return report(&c, path, __FILE__, __LINE__, "H5Fcreate");
    return BB_OK;
}

bb_status bb_h5_open(const char *path, MPI_Comm comm, hid_t *f) {
    *f = -1;
    BB_CHECK(access(path, R_OK) == 0, BB_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    bb_h5_quiet();
    hid_t fapl;
    BB_CALL(file_access(path, comm, &fapl));
    *f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5cause c;
    if (*f < 0) take_cause(&c);
    H5Pclose(fapl);
    if (*f < 0) return report(&c, path, __FILE__, __LINE__, "H5Fopen");
    return BB_OK;
}

bb_status bb_h5_close(hid_t *f) {
    if (*f < 0) return BB_OK;
    char fname[1024] = "?";
    if (H5Fget_name(*f, fname, sizeof fname) < 0) snprintf(fname, sizeof fname, "?");
    herr_t e = H5Fclose(*f);
    *f = -1;
    if (e < 0) {
        h5cause c;
        take_cause(&c);
        return report(&c, fname, __FILE__, __LINE__, "H5Fclose");
    }
    return BB_OK;
}

/* ---- groups -------------------------------------------------------------------- */

int bb_h5_exists(hid_t loc, const char *name) {
    /* Check each component: H5Lexists fails (rather than saying 0) when an
     * intermediate group is missing. */
    char part[512];
    const char *p = name;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - name) : strlen(name);
        if (n == 0) { /* an absolute path's leading '/' */
            p = slash + 1;
            continue;
        }
        if (n >= sizeof part) return 0;
        memcpy(part, name, n);
        part[n] = 0;
        htri_t e = H5Lexists(loc, part, H5P_DEFAULT);
        H5Eclear2(H5E_DEFAULT);
        if (e <= 0) return 0;
        if (!slash) break;
        p = slash + 1;
    }
    return 1;
}

bb_status bb_h5_require(hid_t loc, const char *name) {
    if (bb_h5_exists(loc, name)) return BB_OK;
    char file[1600], obj[600];
    names(loc, name, file, sizeof file, obj, sizeof obj);
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s is missing", file, obj);
}

bb_status bb_h5_group_create(hid_t loc, const char *name, hid_t *g) {
    *g = -1;
    bb_status st = BB_OK;
    hid_t lcpl = -1;
    STEP(st, loc, name, lcpl = H5Pcreate(H5P_LINK_CREATE));
    STEP(st, loc, name, H5Pset_create_intermediate_group(lcpl, 1));
    STEP(st, loc, name, *g = H5Gcreate2(loc, name, lcpl, H5P_DEFAULT, H5P_DEFAULT));
    bb_h5_close_id(lcpl);
    return st;
}

bb_status bb_h5_group_open(hid_t loc, const char *name, hid_t *g) {
    *g = -1;
    BB_CALL(bb_h5_require(loc, name));
    bb_status st = BB_OK;
    STEP(st, loc, name, *g = H5Gopen2(loc, name, H5P_DEFAULT));
    return st;
}

/* ---- attributes ---------------------------------------------------------------- */

static bb_status put_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    bb_status st = BB_OK;
    hid_t sp = -1, a = -1;
    STEP(st, loc, name, sp = H5Screate(H5S_SCALAR));
    STEP(st, loc, name, a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT));
    STEP(st, loc, name, H5Awrite(a, mtype, v));
    bb_h5_close_id(a);
    bb_h5_close_id(sp);
    return st;
}

bb_status bb_h5_attr_put_i64(hid_t loc, const char *name, int64_t v) {
    return put_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
bb_status bb_h5_attr_put_u64(hid_t loc, const char *name, uint64_t v) {
    return put_attr(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
bb_status bb_h5_attr_put_f64(hid_t loc, const char *name, double v) {
    return put_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

bb_status bb_h5_attr_put_str(hid_t loc, const char *name, const char *s) {
    bb_status st = BB_OK;
    hid_t t = -1;
    size_t n = strlen(s);
    STEP(st, loc, name, t = H5Tcopy(H5T_C_S1));
    STEP(st, loc, name, H5Tset_size(t, n ? n : 1));
    STEP(st, loc, name, H5Tset_strpad(t, H5T_STR_NULLPAD));
    if (st == BB_OK) st = put_attr(loc, name, t, t, n ? s : "");
    bb_h5_close_id(t);
    return st;
}

static const char *class_name(H5T_class_t c) {
    return c == H5T_STRING ? "string" : c == H5T_FLOAT ? "float" : "integer";
}

/* Open attribute `name` of loc, checking it exists, is scalar and of `cls`. */
static bb_status open_attr(hid_t loc, const char *name, H5T_class_t cls, hid_t *out) {
    *out = -1;
    htri_t e = H5Aexists(loc, name);
    if (e < 0) return bb_h5_fail(loc, NULL, __FILE__, __LINE__, "H5Aexists(loc, name)");
    char file[1600], obj[600];
    if (!e) {
        names(loc, NULL, file, sizeof file, obj, sizeof obj);
        return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s of %s is missing", file, name, obj);
    }
    bb_status st = BB_OK;
    hid_t a = -1, sp = -1, t = -1;
    H5S_class_t sc = H5S_NO_CLASS;
    H5T_class_t tc = H5T_NO_CLASS;
    STEP(st, loc, NULL, a = H5Aopen(loc, name, H5P_DEFAULT));
    STEP(st, loc, NULL, sp = H5Aget_space(a));
    STEP(st, loc, NULL, sc = H5Sget_simple_extent_type(sp));
    STEP(st, loc, NULL, t = H5Aget_type(a));
    STEP(st, loc, NULL, tc = H5Tget_class(t));
    if (st == BB_OK && (sc != H5S_SCALAR || tc != cls)) {
        names(loc, NULL, file, sizeof file, obj, sizeof obj);
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s of %s is not a scalar %s", file, name, obj,
                      class_name(cls));
    }
    bb_h5_close_id(t);
    bb_h5_close_id(sp);
    if (st != BB_OK)
        bb_h5_close_id(a);
    else
        *out = a;
    return st;
}

static bb_status get_attr(hid_t loc, const char *name, H5T_class_t cls, hid_t mtype, void *v) {
    hid_t a;
    BB_CALL(open_attr(loc, name, cls, &a));
    bb_status st = BB_OK;
    STEP(st, loc, name, H5Aread(a, mtype, v));
    bb_h5_close_id(a);
    return st;
}

bb_status bb_h5_attr_get_i64(hid_t loc, const char *name, int64_t *v) {
    return get_attr(loc, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
}
bb_status bb_h5_attr_get_u64(hid_t loc, const char *name, uint64_t *v) {
    return get_attr(loc, name, H5T_INTEGER, H5T_NATIVE_UINT64, v);
}
bb_status bb_h5_attr_get_f64(hid_t loc, const char *name, double *v) {
    return get_attr(loc, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

/* Read a fixed-length string attribute; *len is its stored size. buf of n
 * bytes, or NULL to allocate. */
static bb_status get_str(hid_t loc, const char *name, char *buf, size_t n, char **alloc) {
    hid_t a;
    BB_CALL(open_attr(loc, name, H5T_STRING, &a));
    bb_status st = BB_OK;
    hid_t ft = -1, mt = -1;
    size_t len = 0;
    htri_t var = 0;
    STEP(st, loc, name, ft = H5Aget_type(a));
    STEP(st, loc, name, var = H5Tis_variable_str(ft));
    if (st == BB_OK) len = H5Tget_size(ft);
    if (st == BB_OK && (var || len == 0 || (buf && len >= n))) {
        char file[1600], obj[600];
        names(loc, NULL, file, sizeof file, obj, sizeof obj);
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s of %s is not a fixed string of < %zu bytes",
                      file, name, obj, buf ? n : (size_t)-1);
    }
    if (st == BB_OK && !buf) {
        st = bb_malloc((void **)alloc, len + 1, "a string attribute");
        if (st == BB_OK) {
            buf = *alloc;
            n = len + 1;
        }
    }
    STEP(st, loc, name, mt = H5Tcopy(H5T_C_S1));
    STEP(st, loc, name, H5Tset_size(mt, len));
    STEP(st, loc, name, H5Tset_strpad(mt, H5T_STR_NULLPAD));
    if (st == BB_OK) memset(buf, 0, n);
    STEP(st, loc, name, H5Aread(a, mt, buf));
    bb_h5_close_id(mt);
    bb_h5_close_id(ft);
    bb_h5_close_id(a);
    if (st != BB_OK && alloc) {
        free(*alloc);
        *alloc = NULL;
    }
    return st;
}

bb_status bb_h5_attr_get_str(hid_t loc, const char *name, char *buf, size_t n) {
    return get_str(loc, name, buf, n, NULL);
}

bb_status bb_h5_attr_get_str_alloc(hid_t loc, const char *name, char **out) {
    *out = NULL;
    return get_str(loc, name, NULL, 0, out);
}

/* ---- datasets ------------------------------------------------------------------ */

bb_status bb_h5_dataset_create(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, hid_t *d) {
    *d = -1;
    BB_CHECK(t >= 0 && t < BB_H5_TYPE_COUNT && (rank == 1 || rank == 2) && dims[0] >= 0 && (rank == 1 || dims[1] >= 0),
             BB_ERR_INTERNAL, "bb_h5_dataset_create(%s): type %d, rank %d", name, (int)t, rank);
    hsize_t hd[2] = {(hsize_t)dims[0], rank == 2 ? (hsize_t)dims[1] : 1};
    bb_status st = BB_OK;
    hid_t sp = -1;
    STEP(st, loc, name, sp = H5Screate_simple(rank, hd, NULL));
    STEP(st, loc, name, *d = H5Dcreate2(loc, name, type_of(t).file, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    bb_h5_close_id(sp);
    return st;
}

/* One H5Dwrite/H5Dread moves at most this many bytes: MPI-IO counts bytes in an int, so a transfer of
 * 2 GiB or more fails inside HDF5 ("can't convert from size to size_i"): a 70B model's ffn_down Gram is
 * 3.3 GB. Larger transfers go in row slabs. */
static int64_t g_max_io = (int64_t)1 << 30;

void bb_h5_set_max_io(int64_t bytes) { g_max_io = bytes > 0 ? bytes : (int64_t)1 << 30; }

/* Rows [row0, row0 + nrows) of d (dims) between the file and buf (packed rows), in slabs of at most
 * g_max_io bytes (one row at least). */
static bb_status rows_io(hid_t d, hid_t mem, int rank, const hsize_t *dims, size_t elem, int64_t row0, int64_t nrows,
                         void *rbuf, const void *wbuf) {
    bb_status st = BB_OK;
    const int64_t row_bytes = (int64_t)elem * (int64_t)(rank == 2 ? dims[1] : 1);
    int64_t per = row_bytes > 0 ? g_max_io / row_bytes : nrows;
    if (per < 1) per = 1;
    for (int64_t r = 0; r < nrows && st == BB_OK; r += per) {
        int64_t n = nrows - r < per ? nrows - r : per;
        hid_t fsp = -1, msp = -1;
        hsize_t start[2] = {(hsize_t)(row0 + r), 0}, count[2] = {(hsize_t)n, rank == 2 ? dims[1] : 1};
        STEP(st, d, NULL, fsp = H5Dget_space(d));
        STEP(st, d, NULL, H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL));
        STEP(st, d, NULL, msp = H5Screate_simple(rank, count, NULL));
        if (wbuf)
            STEP(st, d, NULL, H5Dwrite(d, mem, msp, fsp, H5P_DEFAULT, (const char *)wbuf + r * row_bytes));
        else
            STEP(st, d, NULL, H5Dread(d, mem, msp, fsp, H5P_DEFAULT, (char *)rbuf + r * row_bytes));
        bb_h5_close_id(msp);
        bb_h5_close_id(fsp);
    }
    return st;
}

bb_status bb_h5_write_rows(hid_t d, bb_h5_type t, int64_t row0, int64_t nrows, const void *buf) {
    if (nrows == 0) return BB_OK;
    bb_status st = BB_OK;
    hid_t fsp = -1;
    int rank = 0;
    hsize_t dims[2] = {0, 0};
    STEP(st, d, NULL, fsp = H5Dget_space(d));
    STEP(st, d, NULL, rank = H5Sget_simple_extent_ndims(fsp));
    STEP(st, d, NULL, H5Sget_simple_extent_dims(fsp, dims, NULL));
    bb_h5_close_id(fsp);
    if (st == BB_OK && (row0 < 0 || nrows < 0 || (hsize_t)(row0 + nrows) > dims[0]))
        st = bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__, "rows [%lld, %lld) outside a dataset of %llu rows",
                      (long long)row0, (long long)(row0 + nrows), (unsigned long long)dims[0]);
    if (st != BB_OK || (rank == 2 && dims[1] == 0)) return st;
    return rows_io(d, type_of(t).mem, rank, dims, type_of(t).size, row0, nrows, NULL, buf);
}

bb_status bb_h5_write(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, const void *buf) {
    hid_t d;
    BB_CALL(bb_h5_dataset_create(loc, name, t, rank, dims, &d));
    bb_status st = bb_h5_write_rows(d, t, 0, dims[0], buf);
    bb_h5_close_id(d);
    return st;
}

bb_status bb_h5_write_shared(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims,
                             const void *buf, bb_status *local) {
    hid_t d;
    BB_CALL(bb_h5_dataset_create(loc, name, t, rank, dims, &d));
    if (buf && *local == BB_OK) *local = bb_h5_write_rows(d, t, 0, dims[0], buf);
    bb_h5_close_id(d);
    return BB_OK;
}

static void shape_text(char *buf, size_t n, int rank, const int64_t *dims) {
    if (rank == 1)
        snprintf(buf, n, "(%lld)", (long long)dims[0]);
    else if (rank == 2)
        snprintf(buf, n, "(%lld, %lld)", (long long)dims[0], (long long)dims[1]);
    else
        snprintf(buf, n, "rank %d", rank);
}

/* Open dataset name; its rank, dims and type id. */
static bb_status open_dataset(hid_t loc, const char *name, hid_t *d, int *rank, int64_t dims[2], hid_t *type) {
    *d = *type = -1;
    BB_CALL(bb_h5_require(loc, name));
    bb_status st = BB_OK;
    hid_t sp = -1;
    hsize_t hd[2] = {0, 1};
    STEP(st, loc, name, *d = H5Dopen2(loc, name, H5P_DEFAULT));
    STEP(st, loc, name, sp = H5Dget_space(*d));
    STEP(st, loc, name, *rank = H5Sget_simple_extent_ndims(sp));
    if (st == BB_OK && *rank >= 1 && *rank <= 2) STEP(st, loc, name, H5Sget_simple_extent_dims(sp, hd, NULL));
    STEP(st, loc, name, *type = H5Dget_type(*d));
    dims[0] = (int64_t)hd[0];
    dims[1] = *rank == 2 ? (int64_t)hd[1] : 1;
    bb_h5_close_id(sp);
    if (st != BB_OK) {
        bb_h5_close_id(*type);
        bb_h5_close_id(*d);
        *d = *type = -1;
    }
    return st;
}

bb_status bb_h5_shape(hid_t loc, const char *name, int *rank, int64_t dims[2]) {
    hid_t d, type;
    BB_CALL(open_dataset(loc, name, &d, rank, dims, &type));
    bb_h5_close_id(type);
    bb_h5_close_id(d);
    if (*rank != 1 && *rank != 2) {
        char file[1600], obj[600];
        names(loc, name, file, sizeof file, obj, sizeof obj);
        return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s has rank %d, expected 1 or 2", file, obj, *rank);
    }
    return BB_OK;
}

bb_status bb_h5_read(hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims, void *buf) {
    hid_t d, type;
    int frank = 0;
    int64_t fdims[2];
    BB_CALL(open_dataset(loc, name, &d, &frank, fdims, &type));
    h5type want = type_of(t);
    bb_status st = BB_OK;
    char file[1600], obj[600];
    if (frank != rank || fdims[0] != dims[0] || (rank == 2 && fdims[1] != dims[1])) {
        char found[64], expected[64];
        shape_text(found, sizeof found, frank, fdims);
        shape_text(expected, sizeof expected, rank, dims);
        names(loc, name, file, sizeof file, obj, sizeof obj);
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s has shape %s, expected %s", file, obj, found,
                      expected);
    }
    if (st == BB_OK) {
        H5T_class_t cls = H5Tget_class(type);
        size_t size = H5Tget_size(type);
        H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(type) : H5T_SGN_ERROR;
        H5Eclear2(H5E_DEFAULT);
        if (cls != want.cls || size != want.size || (cls == H5T_INTEGER && sign != want.sign)) {
            names(loc, name, file, sizeof file, obj, sizeof obj);
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s is not a %s dataset (found a %zu-byte %s%s)",
                          file, obj, want.name, size, cls == H5T_INTEGER && sign == H5T_SGN_NONE ? "unsigned " : "",
                          class_name(cls));
        }
    }
    int empty = dims[0] == 0 || (rank == 2 && dims[1] == 0);
    if (!empty && st == BB_OK) {
        hsize_t hd[2] = {(hsize_t)dims[0], rank == 2 ? (hsize_t)dims[1] : 1};
        st = rows_io(d, want.mem, rank, hd, want.size, 0, dims[0], buf, NULL);
    }
    bb_h5_close_id(type);
    bb_h5_close_id(d);
    return st;
}
