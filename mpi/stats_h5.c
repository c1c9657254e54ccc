/* stats_h5.c — HDF5 save and load of calibration statistics, crash-safe and fully validated on read. */
#include "mpi/stats_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/file.h"
#include "mpi/h5check.h"

#define STATS_MAGIC "birdbone.calib"

/* What is being read or written, for messages: the file and the object. */
typedef struct {
    const char *path;
    char obj[160];
} h5ctx;

/* BB_H5_CALL's report, with the file and object named so that one message
 * says where the failure is. Called before any handle is closed: HDF5 clears
 * its error stack at the start of every API call. */
static herr_t deepest(unsigned n, const H5E_error2_t *e, void *ud) {
    if (e->desc) snprintf((char *)ud, 256, "%s", e->desc);
    return 0;
}

static bb_status h5_fail(const h5ctx *x, int line, const char *expr) {
    /* bb_h5_error names the API-level failure ("unable to open file"); the
     * bottom of the stack says why ("truncated file", "file signature not found"). */
    char cause[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, deepest, cause);
    char what[1600];
    snprintf(what, sizeof what, "%s on %s:%s%s%s%s", expr, x->path, x->obj[0] ? x->obj : "/", cause[0] ? " (" : "",
             cause, cause[0] ? ")" : "");
    return bb_h5_error(__FILE__, line, what);
}

/* One step of a sequence that must close its handles whatever happens: runs
 * expr only while st is OK and records the first failure. */
#define H5_STEP(st, x, expr)                                                                                           \
    do {                                                                                                               \
        if ((st) == BB_OK && (expr) < 0) (st) = h5_fail((x), __LINE__, #expr);                                         \
    } while (0)

static void close_id(hid_t id, herr_t (*fn)(hid_t)) {
    if (id >= 0) fn(id);
}

static void obj_name(h5ctx *x, int layer, const char *input, const char *name) {
    if (input)
        snprintf(x->obj, sizeof x->obj, "/layer_%03d/%s%s%s", layer, input, name ? "/" : "", name ? name : "");
    else
        snprintf(x->obj, sizeof x->obj, "/%s", name ? name : "");
}

/* ---- writing ------------------------------------------------------------------- */

static bb_status put_attr(h5ctx *x, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    bb_status st = BB_OK;
    hid_t sp = -1, a = -1;
    H5_STEP(st, x, sp = H5Screate(H5S_SCALAR));
    H5_STEP(st, x, a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT));
    H5_STEP(st, x, H5Awrite(a, mtype, v));
    close_id(a, H5Aclose);
    close_id(sp, H5Sclose);
    return st;
}

static bb_status put_i64(h5ctx *x, hid_t loc, const char *name, int64_t v) {
    return put_attr(x, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static bb_status put_f64(h5ctx *x, hid_t loc, const char *name, double v) {
    return put_attr(x, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static bb_status put_str(h5ctx *x, hid_t loc, const char *name, const char *s) {
    bb_status st = BB_OK;
    hid_t t = -1;
    size_t n = strlen(s);
    H5_STEP(st, x, t = H5Tcopy(H5T_C_S1));
    H5_STEP(st, x, H5Tset_size(t, n ? n : 1));
    H5_STEP(st, x, H5Tset_strpad(t, H5T_STR_NULLPAD));
    if (st == BB_OK) st = put_attr(x, loc, name, t, t, n ? s : "");
    close_id(t, H5Tclose);
    return st;
}

static bb_status put_dataset(h5ctx *x, hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, int64_t n,
                             const void *buf) {
    bb_status st = BB_OK;
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)n};
    hid_t sp = -1, d = -1;
    H5_STEP(st, x, sp = H5Screate_simple(rank, dims, NULL));
    H5_STEP(st, x, d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5_STEP(st, x, H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    close_id(d, H5Dclose);
    close_id(sp, H5Sclose);
    return st;
}

static bb_status write_file_attrs(h5ctx *x, hid_t f, const bb_calib *c, const char *hash) {
    const bb_model *m = bb_calib_model(c);
    const bb_calib_opts *o = bb_calib_options(c);
    obj_name(x, 0, NULL, NULL);
    BB_CALL(put_str(x, f, "magic", STATS_MAGIC));
    BB_CALL(put_i64(x, f, "version", BB_STATS_H5_VERSION));
    BB_CALL(put_i64(x, f, "n_layers", m->cfg.n_layers));
    BB_CALL(put_i64(x, f, "dim", m->cfg.dim));
    BB_CALL(put_i64(x, f, "hidden_dim", m->cfg.hidden_dim));
    BB_CALL(put_i64(x, f, "attn_width", bb_calib_in_features(&m->cfg, BB_CALIB_ATTN_OUT_IN)));
    BB_CALL(put_i64(x, f, "layer_begin", o->layer_begin));
    BB_CALL(put_i64(x, f, "layer_end", o->layer_end));
    BB_CALL(put_str(x, f, "precision", bb_calib_precision_name(o->precision)));
    BB_CALL(put_f64(x, f, "eps", o->eps));
    BB_CALL(put_str(x, f, "model_path", m->path));
    BB_CALL(put_str(x, f, "hash", hash ? hash : ""));
    BB_CALL(put_str(x, f, "birdbone_version", BB_VERSION));
    return BB_OK;
}

static bb_status write_input(h5ctx *x, hid_t f, const bb_calib_stat *s) {
    const char *iname = bb_calib_input_name(s->input);
    char gname[64];
    snprintf(gname, sizeof gname, "layer_%03d/%s", s->layer, iname);
    bb_status st = BB_OK;
    hid_t lcpl = -1, g = -1;
    obj_name(x, s->layer, iname, NULL);
    /* The layer group is made on the way, with the input group. */
    H5_STEP(st, x, lcpl = H5Pcreate(H5P_LINK_CREATE));
    H5_STEP(st, x, H5Pset_create_intermediate_group(lcpl, 1));
    H5_STEP(st, x, g = H5Gcreate2(f, gname, lcpl, H5P_DEFAULT, H5P_DEFAULT));
    if (st == BB_OK) st = put_i64(x, g, "n_tokens", s->n_tokens);
    if (st == BB_OK) st = put_i64(x, g, "n_rows_nonfinite", s->n_rows_nonfinite);
    if (st == BB_OK) st = put_i64(x, g, "n_nonfinite", s->n_nonfinite);
    if (st == BB_OK) st = put_i64(x, g, "in_features", s->in_features);
    if (st == BB_OK) st = put_str(x, g, "precision", bb_calib_precision_name(s->precision));
    int64_t n = s->in_features;
    if (st == BB_OK) {
        obj_name(x, s->layer, iname, "gram");
        if (s->precision == BB_CALIB_F64)
            st = put_dataset(x, g, "gram", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, n, s->gram_f64);
        else
            st = put_dataset(x, g, "gram", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, n, s->gram);
    }
    const char *names[3] = {"norm", "mean_abs", "freq"};
    const double *vecs[3] = {s->norm, s->mean_abs, s->freq};
    for (int i = 0; i < 3 && st == BB_OK; i++) {
        obj_name(x, s->layer, iname, names[i]);
        st = put_dataset(x, g, names[i], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, n, vecs[i]);
    }
    close_id(g, H5Gclose);
    close_id(lcpl, H5Pclose);
    return st;
}

static bb_status write_all(h5ctx *x, hid_t f, bb_calib *c, const char *hash) {
    BB_CALL(write_file_attrs(x, f, c, hash));
    const bb_calib_opts *o = bb_calib_options(c);
    for (int l = o->layer_begin; l < o->layer_end; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s;
            BB_CALL(bb_calib_stats_input(c, l, (bb_calib_input)i, &s));
            BB_CALL(write_input(x, f, s));
        }
    return BB_OK;
}

bb_status bb_stats_h5_write(const char *path, bb_calib *c, const char *hash) {
    BB_CHECK(!hash || strlen(hash) < BB_STATS_H5_HASH_MAX, BB_ERR_ARG,
             "%s: the hash string has %zu characters, at most %d fit", path, strlen(hash), BB_STATS_H5_HASH_MAX - 1);
    char tmp[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path too long: %s", path);
    bb_h5_quiet();
    h5ctx x = {.path = tmp};
    bb_status st = BB_OK;
    hid_t fapl = -1, f = -1;
    /* Closing the file closes every object still open in it (error paths). */
    H5_STEP(st, &x, fapl = H5Pcreate(H5P_FILE_ACCESS));
    H5_STEP(st, &x, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
    H5_STEP(st, &x, f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    if (st == BB_OK) st = write_all(&x, f, c, hash);
    if (f >= 0) {
        x.obj[0] = 0;
        herr_t e = H5Fclose(f);
        if (st == BB_OK && e < 0) st = h5_fail(&x, __LINE__, "H5Fclose(f)");
    }
    close_id(fapl, H5Pclose);
    if (st == BB_OK) st = bb_file_sync(tmp);
    if (st == BB_OK && rename(tmp, path) != 0)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != BB_OK) {
        unlink(tmp);
        return bb_trace(st, __FILE__, __LINE__, "bb_stats_h5_write");
    }
    return BB_OK;
}

/* ---- reading ------------------------------------------------------------------- */

/* A link that must exist under loc. */
static bb_status need_link(h5ctx *x, hid_t loc, const char *name) {
    htri_t e = H5Lexists(loc, name, H5P_DEFAULT);
    if (e < 0) return h5_fail(x, __LINE__, "H5Lexists(loc, name, H5P_DEFAULT)");
    BB_CHECK(e > 0, BB_ERR_FORMAT, "%s: %s is missing (incomplete or foreign statistics file)", x->path, x->obj);
    return BB_OK;
}

/* Open attribute `name` of loc, checking it exists, is scalar and of `cls`. */
static bb_status open_attr(h5ctx *x, hid_t loc, const char *name, H5T_class_t cls, hid_t *out) {
    *out = -1;
    htri_t e = H5Aexists(loc, name);
    if (e < 0) return h5_fail(x, __LINE__, "H5Aexists(loc, name)");
    BB_CHECK(e > 0, BB_ERR_FORMAT, "%s: attribute %s of %s is missing", x->path, name, x->obj[0] ? x->obj : "/");
    bb_status st = BB_OK;
    hid_t a = -1, sp = -1, t = -1;
    H5S_class_t sc = H5S_NO_CLASS;
    H5T_class_t tc = H5T_NO_CLASS;
    H5_STEP(st, x, a = H5Aopen(loc, name, H5P_DEFAULT));
    H5_STEP(st, x, sp = H5Aget_space(a));
    H5_STEP(st, x, sc = H5Sget_simple_extent_type(sp));
    H5_STEP(st, x, t = H5Aget_type(a));
    H5_STEP(st, x, tc = H5Tget_class(t));
    if (st == BB_OK && (sc != H5S_SCALAR || tc != cls))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s of %s is not a scalar %s", x->path, name,
                      x->obj[0] ? x->obj : "/",
                      cls == H5T_STRING  ? "string"
                      : cls == H5T_FLOAT ? "float"
                                         : "integer");
    close_id(t, H5Tclose);
    close_id(sp, H5Sclose);
    if (st != BB_OK)
        close_id(a, H5Aclose);
    else
        *out = a;
    return st;
}

static bb_status get_i64(h5ctx *x, hid_t loc, const char *name, int64_t *v) {
    hid_t a;
    BB_CALL(open_attr(x, loc, name, H5T_INTEGER, &a));
    bb_status st = BB_OK;
    H5_STEP(st, x, H5Aread(a, H5T_NATIVE_INT64, v));
    H5Aclose(a);
    return st;
}

static bb_status get_f64(h5ctx *x, hid_t loc, const char *name, double *v) {
    hid_t a;
    BB_CALL(open_attr(x, loc, name, H5T_FLOAT, &a));
    bb_status st = BB_OK;
    H5_STEP(st, x, H5Aread(a, H5T_NATIVE_DOUBLE, v));
    H5Aclose(a);
    return st;
}

/* A fixed-length string attribute into buf[n] (NUL-terminated). */
static bb_status get_str(h5ctx *x, hid_t loc, const char *name, char *buf, size_t n) {
    hid_t a;
    BB_CALL(open_attr(x, loc, name, H5T_STRING, &a));
    bb_status st = BB_OK;
    hid_t ft = -1, mt = -1;
    size_t len = 0;
    htri_t var = 0;
    H5_STEP(st, x, ft = H5Aget_type(a));
    H5_STEP(st, x, var = H5Tis_variable_str(ft));
    if (st == BB_OK) len = H5Tget_size(ft);
    if (st == BB_OK && (var || len == 0 || len >= n))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s of %s is not a fixed string of < %zu bytes",
                      x->path, name, x->obj[0] ? x->obj : "/", n);
    H5_STEP(st, x, mt = H5Tcopy(H5T_C_S1));
    H5_STEP(st, x, H5Tset_size(mt, len));
    H5_STEP(st, x, H5Tset_strpad(mt, H5T_STR_NULLPAD));
    if (st == BB_OK) memset(buf, 0, n);
    H5_STEP(st, x, H5Aread(a, mt, buf));
    close_id(mt, H5Tclose);
    close_id(ft, H5Tclose);
    H5Aclose(a);
    return st;
}

/* Read dataset `name` of group g: rank 1 (n) or 2 (n, n) of class float, into
 * buf as `mtype`. The stored float width must match: a f32 Gram is never read
 * into a f64 collector or the reverse. */
static bb_status get_dataset(h5ctx *x, hid_t g, const char *name, int rank, int64_t n, size_t width, hid_t mtype,
                             void *buf) {
    BB_CALL(need_link(x, g, name));
    bb_status st = BB_OK;
    hid_t d = -1, sp = -1, t = -1;
    hsize_t dims[2] = {0, 0};
    int nd = -1;
    H5T_class_t tc = H5T_NO_CLASS;
    size_t tw = 0;
    H5_STEP(st, x, d = H5Dopen2(g, name, H5P_DEFAULT));
    H5_STEP(st, x, sp = H5Dget_space(d));
    H5_STEP(st, x, nd = H5Sget_simple_extent_ndims(sp));
    if (st == BB_OK && nd >= 1 && nd <= 2) H5_STEP(st, x, H5Sget_simple_extent_dims(sp, dims, NULL));
    H5_STEP(st, x, t = H5Dget_type(d));
    H5_STEP(st, x, tc = H5Tget_class(t));
    if (st == BB_OK) tw = H5Tget_size(t);
    if (st == BB_OK && (nd != rank || dims[0] != (hsize_t)n || (rank == 2 && dims[1] != (hsize_t)n))) {
        char found[64];
        if (nd == 1)
            snprintf(found, sizeof found, "(%llu)", (unsigned long long)dims[0]);
        else if (nd == 2)
            snprintf(found, sizeof found, "(%llu, %llu)", (unsigned long long)dims[0], (unsigned long long)dims[1]);
        else
            snprintf(found, sizeof found, "rank %d", nd);
        char want[64];
        if (rank == 2)
            snprintf(want, sizeof want, "(%lld, %lld)", (long long)n, (long long)n);
        else
            snprintf(want, sizeof want, "(%lld)", (long long)n);
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s has shape %s, expected %s for this model", x->path,
                      x->obj, found, want);
    }
    if (st == BB_OK && (tc != H5T_FLOAT || tw != width))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s is not a %zu-byte float dataset", x->path, x->obj,
                      width);
    H5_STEP(st, x, H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    close_id(t, H5Tclose);
    close_id(sp, H5Sclose);
    close_id(d, H5Dclose);
    return st;
}

static bb_status read_input(h5ctx *x, hid_t f, bb_calib *c, int layer, bb_calib_input in) {
    const char *iname = bb_calib_input_name(in);
    const bb_model_config *mc = &bb_calib_model(c)->cfg;
    bb_calib_precision prec = bb_calib_options(c)->precision;
    int64_t n = bb_calib_in_features(mc, in);
    char gname[64];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    snprintf(x->obj, sizeof x->obj, "/%s", gname);
    BB_CALL(need_link(x, f, gname));
    snprintf(gname, sizeof gname, "layer_%03d/%s", layer, iname);
    obj_name(x, layer, iname, NULL);
    BB_CALL(need_link(x, f, gname));
    bb_calib_slot s;
    BB_CALL(bb_calib_load_slot(c, layer, in, &s));
    bb_status st = BB_OK;
    hid_t g = -1;
    int64_t width = 0;
    char pname[8];
    H5_STEP(st, x, g = H5Gopen2(f, gname, H5P_DEFAULT));
    if (st == BB_OK) st = get_i64(x, g, "in_features", &width);
    if (st == BB_OK && width != n)
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "%s: %s has in_features %lld, the model's %s is %lld wide",
                      x->path, x->obj, (long long)width, iname, (long long)n);
    if (st == BB_OK) st = get_str(x, g, "precision", pname, sizeof pname);
    if (st == BB_OK && strcmp(pname, bb_calib_precision_name(prec)))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: %s has precision \"%s\", the file says %s", x->path,
                      x->obj, pname, bb_calib_precision_name(prec));
    if (st == BB_OK) st = get_i64(x, g, "n_tokens", s.n_tokens);
    if (st == BB_OK) st = get_i64(x, g, "n_rows_nonfinite", s.n_rows_nonfinite);
    if (st == BB_OK) st = get_i64(x, g, "n_nonfinite", s.n_nonfinite);
    if (st == BB_OK && (*s.n_tokens < 0 || *s.n_rows_nonfinite < 0 || *s.n_nonfinite < *s.n_rows_nonfinite))
        st =
            bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                     "%s: %s has inconsistent counts (n_tokens %lld, n_rows_nonfinite %lld, n_nonfinite %lld)", x->path,
                     x->obj, (long long)*s.n_tokens, (long long)*s.n_rows_nonfinite, (long long)*s.n_nonfinite);
    if (st == BB_OK) {
        obj_name(x, layer, iname, "gram");
        st = prec == BB_CALIB_F64 ? get_dataset(x, g, "gram", 2, n, 8, H5T_NATIVE_DOUBLE, s.gram)
                                  : get_dataset(x, g, "gram", 2, n, 4, H5T_NATIVE_FLOAT, s.gram);
    }
    const char *names[3] = {"norm", "mean_abs", "freq"};
    double *vecs[3] = {s.norm, s.mean_abs, s.freq};
    for (int i = 0; i < 3 && st == BB_OK; i++) {
        obj_name(x, layer, iname, names[i]);
        st = get_dataset(x, g, names[i], 1, n, 8, H5T_NATIVE_DOUBLE, vecs[i]);
    }
    close_id(g, H5Gclose);
    return st;
}

static bb_status check_dim(const h5ctx *x, const bb_model *m, const char *what, int64_t file, int64_t model) {
    BB_CHECK(file == model, BB_ERR_ARG,
             "%s: statistics of a model with %s %lld, but %s has %lld (dim %d, hidden %d, %d layers): collect them "
             "again for this model",
             x->path, what, (long long)file, m->path, (long long)model, m->cfg.dim, m->cfg.hidden_dim, m->cfg.n_layers);
    return BB_OK;
}

static bb_status read_all(h5ctx *x, hid_t f, const bb_model *m, bb_calib **out, bb_stats_h5_info *info) {
    char magic[32];
    int64_t v;
    obj_name(x, 0, NULL, NULL);
    BB_CALL(get_str(x, f, "magic", magic, sizeof magic));
    BB_CHECK(!strcmp(magic, STATS_MAGIC), BB_ERR_FORMAT,
             "%s: magic \"%s\" is not \"%s\": not a calibration statistics "
             "file",
             x->path, magic, STATS_MAGIC);
    BB_CALL(get_i64(x, f, "version", &v));
    BB_CHECK(v == BB_STATS_H5_VERSION, BB_ERR_FORMAT, "%s: version %lld, this build reads version %d", x->path,
             (long long)v, BB_STATS_H5_VERSION);
    info->version = (int)v;
    BB_CALL(get_i64(x, f, "n_layers", &v));
    BB_CALL(check_dim(x, m, "n_layers", v, m->cfg.n_layers));
    BB_CALL(get_i64(x, f, "dim", &v));
    BB_CALL(check_dim(x, m, "dim", v, m->cfg.dim));
    BB_CALL(get_i64(x, f, "hidden_dim", &v));
    BB_CALL(check_dim(x, m, "hidden_dim", v, m->cfg.hidden_dim));
    BB_CALL(get_i64(x, f, "attn_width", &v));
    BB_CALL(check_dim(x, m, "attention width", v, bb_calib_in_features(&m->cfg, BB_CALIB_ATTN_OUT_IN)));
    int64_t lb, le;
    BB_CALL(get_i64(x, f, "layer_begin", &lb));
    BB_CALL(get_i64(x, f, "layer_end", &le));
    BB_CHECK(lb >= 0 && lb < le && le <= m->cfg.n_layers, BB_ERR_FORMAT,
             "%s: layer range [%lld, %lld) is not within "
             "%d layers",
             x->path, (long long)lb, (long long)le, m->cfg.n_layers);
    char prec[8];
    BB_CALL(get_str(x, f, "precision", prec, sizeof prec));
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    bb_status st = bb_calib_parse_precision(prec, &o.precision);
    BB_CHECK(st == BB_OK, BB_ERR_FORMAT, "%s: precision \"%s\" is not f32 or f64", x->path, prec);
    BB_CALL(get_f64(x, f, "eps", &o.eps));
    BB_CHECK(isfinite(o.eps) && o.eps >= 0, BB_ERR_FORMAT, "%s: eps %g is not a threshold >= 0", x->path, o.eps);
    BB_CALL(get_str(x, f, "model_path", info->model_path, sizeof info->model_path));
    BB_CALL(get_str(x, f, "hash", info->hash, sizeof info->hash));
    o.layer_begin = (int)lb;
    o.layer_end = (int)le;
    info->layer_begin = o.layer_begin;
    info->layer_end = o.layer_end;
    info->precision = o.precision;
    info->eps = o.eps;
    bb_calib *c = NULL;
    BB_CALL(bb_calib_create(m, &o, &c));
    for (int l = o.layer_begin; l < o.layer_end && st == BB_OK; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT && st == BB_OK; i++) st = read_input(x, f, c, l, (bb_calib_input)i);
    if (st != BB_OK) {
        bb_calib_destroy(&c);
        return bb_trace(st, __FILE__, __LINE__, "read_input");
    }
    *out = c;
    return BB_OK;
}

bb_status bb_stats_h5_read(const char *path, const bb_model *m, bb_calib **out, bb_stats_h5_info *info) {
    *out = NULL;
    bb_stats_h5_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    BB_CHECK(access(path, R_OK) == 0, BB_ERR_IO, "cannot read calibration statistics %s: %s", path, strerror(errno));
    bb_h5_quiet();
    h5ctx x = {.path = path};
    bb_status st = BB_OK;
    hid_t fapl = -1, f = -1;
    H5_STEP(st, &x, fapl = H5Pcreate(H5P_FILE_ACCESS));
    H5_STEP(st, &x, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
    H5_STEP(st, &x, f = H5Fopen(path, H5F_ACC_RDONLY, fapl));
    if (st == BB_OK) st = read_all(&x, f, m, out, info);
    close_id(f, H5Fclose);
    close_id(fapl, H5Pclose);
    BB_CALL(st);
    return BB_OK;
}
