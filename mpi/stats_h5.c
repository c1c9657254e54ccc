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
#include "mpi/h5.h"

#define STATS_MAGIC "birdbone.calib"

static bb_status write_file_attrs(hid_t f, const bb_calib *c, const char *hash) {
    const bb_model *m = bb_calib_model(c);
    const bb_calib_opts *o = bb_calib_options(c);
    BB_CALL(bb_h5_attr_put_str(f, "magic", STATS_MAGIC));
    BB_CALL(bb_h5_attr_put_i64(f, "version", BB_STATS_H5_VERSION));
    BB_CALL(bb_h5_attr_put_i64(f, "n_layers", m->cfg.n_layers));
    BB_CALL(bb_h5_attr_put_i64(f, "dim", m->cfg.dim));
    BB_CALL(bb_h5_attr_put_i64(f, "hidden_dim", m->cfg.hidden_dim));
    BB_CALL(bb_h5_attr_put_i64(f, "attn_width", bb_calib_in_features(&m->cfg, BB_CALIB_ATTN_OUT_IN)));
    BB_CALL(bb_h5_attr_put_i64(f, "layer_begin", o->layer_begin));
    BB_CALL(bb_h5_attr_put_i64(f, "layer_end", o->layer_end));
    BB_CALL(bb_h5_attr_put_str(f, "precision", bb_calib_precision_name(o->precision)));
    BB_CALL(bb_h5_attr_put_f64(f, "eps", o->eps));
    BB_CALL(bb_h5_attr_put_str(f, "model_path", m->path));
    BB_CALL(bb_h5_attr_put_str(f, "hash", hash ? hash : ""));
    BB_CALL(bb_h5_attr_put_str(f, "birdbone_version", BB_VERSION));
    return BB_OK;
}

static bb_status write_input_group(hid_t g, const bb_calib_stat *s) {
    BB_CALL(bb_h5_attr_put_i64(g, "n_tokens", s->n_tokens));
    BB_CALL(bb_h5_attr_put_i64(g, "n_rows_nonfinite", s->n_rows_nonfinite));
    BB_CALL(bb_h5_attr_put_i64(g, "n_nonfinite", s->n_nonfinite));
    BB_CALL(bb_h5_attr_put_i64(g, "in_features", s->in_features));
    BB_CALL(bb_h5_attr_put_str(g, "precision", bb_calib_precision_name(s->precision)));
    int64_t n = s->in_features, dims[2] = {n, n};
    if (s->precision == BB_CALIB_F64)
        BB_CALL(bb_h5_write(g, "gram", BB_H5_F64, 2, dims, s->gram_f64));
    else
        BB_CALL(bb_h5_write(g, "gram", BB_H5_F32, 2, dims, s->gram));
    const char *names[3] = {"norm", "mean_abs", "freq"};
    const double *vecs[3] = {s->norm, s->mean_abs, s->freq};
    for (int i = 0; i < 3; i++) BB_CALL(bb_h5_write(g, names[i], BB_H5_F64, 1, dims, vecs[i]));
    return BB_OK;
}

static bb_status write_input(hid_t f, const bb_calib_stat *s) {
    char gname[64];
    snprintf(gname, sizeof gname, "layer_%03d/%s", s->layer, bb_calib_input_name(s->input));
    hid_t g;
    /* The layer group is made on the way, with the input group. */
    BB_CALL(bb_h5_group_create(f, gname, &g));
    bb_status st = write_input_group(g, s);
    bb_h5_close_id(g);
    return st;
}

static bb_status write_all(hid_t f, bb_calib *c, const char *hash) {
    BB_CALL(write_file_attrs(f, c, hash));
    const bb_calib_opts *o = bb_calib_options(c);
    for (int l = o->layer_begin; l < o->layer_end; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT; i++) {
            const bb_calib_stat *s;
            BB_CALL(bb_calib_stats_input(c, l, (bb_calib_input)i, &s));
            BB_CALL(write_input(f, s));
        }
    return BB_OK;
}

bb_status bb_stats_h5_write(const char *path, bb_calib *c, const char *hash) {
    BB_CHECK(!hash || strlen(hash) < BB_STATS_H5_HASH_MAX, BB_ERR_ARG,
             "%s: the hash string has %zu characters, at most %d fit", path, strlen(hash), BB_STATS_H5_HASH_MAX - 1);
    char tmp[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path too long: %s", path);
    hid_t f = -1;
    bb_status st = bb_h5_create(tmp, MPI_COMM_SELF, &f);
    if (st == BB_OK) st = write_all(f, c, hash);
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
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

static bb_status read_input(hid_t f, const char *path, bb_calib *c, int layer, bb_calib_input in) {
    const char *iname = bb_calib_input_name(in);
    const bb_model_config *mc = &bb_calib_model(c)->cfg;
    bb_calib_precision prec = bb_calib_options(c)->precision;
    int64_t n = bb_calib_in_features(mc, in), dims[2] = {n, n};
    char gname[64];
    snprintf(gname, sizeof gname, "layer_%03d", layer);
    BB_CALL(bb_h5_require(f, gname));
    snprintf(gname, sizeof gname, "layer_%03d/%s", layer, iname);
    bb_calib_slot s;
    BB_CALL(bb_calib_load_slot(c, layer, in, &s));
    hid_t g;
    BB_CALL(bb_h5_group_open(f, gname, &g));
    bb_status st = BB_OK;
    int64_t width = 0;
    char pname[8];
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "in_features", &width);
    if (st == BB_OK && width != n)
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "%s: /%s has in_features %lld, the model's %s is %lld wide",
                      path, gname, (long long)width, iname, (long long)n);
    if (st == BB_OK) st = bb_h5_attr_get_str(g, "precision", pname, sizeof pname);
    if (st == BB_OK && strcmp(pname, bb_calib_precision_name(prec)))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: /%s has precision \"%s\", the file says %s", path,
                      gname, pname, bb_calib_precision_name(prec));
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "n_tokens", s.n_tokens);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "n_rows_nonfinite", s.n_rows_nonfinite);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "n_nonfinite", s.n_nonfinite);
    if (st == BB_OK && (*s.n_tokens < 0 || *s.n_rows_nonfinite < 0 || *s.n_nonfinite < *s.n_rows_nonfinite))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                      "%s: /%s has inconsistent counts (n_tokens %lld, n_rows_nonfinite %lld, n_nonfinite %lld)", path,
                      gname, (long long)*s.n_tokens, (long long)*s.n_rows_nonfinite, (long long)*s.n_nonfinite);
    if (st == BB_OK) st = bb_h5_read(g, "gram", prec == BB_CALIB_F64 ? BB_H5_F64 : BB_H5_F32, 2, dims, s.gram);
    const char *names[3] = {"norm", "mean_abs", "freq"};
    double *vecs[3] = {s.norm, s.mean_abs, s.freq};
    for (int i = 0; i < 3 && st == BB_OK; i++) st = bb_h5_read(g, names[i], BB_H5_F64, 1, dims, vecs[i]);
    bb_h5_close_id(g);
    return st;
}

static bb_status check_dim(const char *path, const bb_model *m, const char *what, int64_t file, int64_t model) {
    BB_CHECK(file == model, BB_ERR_ARG,
             "%s: statistics of a model with %s %lld, but %s has %lld (dim %d, hidden %d, %d layers): collect them "
             "again for this model",
             path, what, (long long)file, m->path, (long long)model, m->cfg.dim, m->cfg.hidden_dim, m->cfg.n_layers);
    return BB_OK;
}

static bb_status read_all(hid_t f, const char *path, const bb_model *m, bb_calib **out, bb_stats_h5_info *info) {
    char magic[32];
    int64_t v;
    BB_CALL(bb_h5_attr_get_str(f, "magic", magic, sizeof magic));
    BB_CHECK(!strcmp(magic, STATS_MAGIC), BB_ERR_FORMAT,
             "%s: magic \"%s\" is not \"%s\": not a calibration statistics "
             "file",
             path, magic, STATS_MAGIC);
    BB_CALL(bb_h5_attr_get_i64(f, "version", &v));
    BB_CHECK(v == BB_STATS_H5_VERSION, BB_ERR_FORMAT, "%s: version %lld, this build reads version %d", path,
             (long long)v, BB_STATS_H5_VERSION);
    info->version = (int)v;
    BB_CALL(bb_h5_attr_get_i64(f, "n_layers", &v));
    BB_CALL(check_dim(path, m, "n_layers", v, m->cfg.n_layers));
    BB_CALL(bb_h5_attr_get_i64(f, "dim", &v));
    BB_CALL(check_dim(path, m, "dim", v, m->cfg.dim));
    BB_CALL(bb_h5_attr_get_i64(f, "hidden_dim", &v));
    BB_CALL(check_dim(path, m, "hidden_dim", v, m->cfg.hidden_dim));
    BB_CALL(bb_h5_attr_get_i64(f, "attn_width", &v));
    BB_CALL(check_dim(path, m, "attention width", v, bb_calib_in_features(&m->cfg, BB_CALIB_ATTN_OUT_IN)));
    int64_t lb, le;
    BB_CALL(bb_h5_attr_get_i64(f, "layer_begin", &lb));
    BB_CALL(bb_h5_attr_get_i64(f, "layer_end", &le));
    BB_CHECK(lb >= 0 && lb < le && le <= m->cfg.n_layers, BB_ERR_FORMAT,
             "%s: layer range [%lld, %lld) is not within "
             "%d layers",
             path, (long long)lb, (long long)le, m->cfg.n_layers);
    char prec[8];
    BB_CALL(bb_h5_attr_get_str(f, "precision", prec, sizeof prec));
    bb_calib_opts o;
    bb_calib_opts_default(&o);
    bb_status st = bb_calib_parse_precision(prec, &o.precision);
    BB_CHECK(st == BB_OK, BB_ERR_FORMAT, "%s: precision \"%s\" is not f32 or f64", path, prec);
    BB_CALL(bb_h5_attr_get_f64(f, "eps", &o.eps));
    BB_CHECK(isfinite(o.eps) && o.eps >= 0, BB_ERR_FORMAT, "%s: eps %g is not a threshold >= 0", path, o.eps);
    BB_CALL(bb_h5_attr_get_str(f, "model_path", info->model_path, sizeof info->model_path));
    BB_CALL(bb_h5_attr_get_str(f, "hash", info->hash, sizeof info->hash));
    o.layer_begin = (int)lb;
    o.layer_end = (int)le;
    info->layer_begin = o.layer_begin;
    info->layer_end = o.layer_end;
    info->precision = o.precision;
    info->eps = o.eps;
    bb_calib *c = NULL;
    BB_CALL(bb_calib_create(m, &o, &c));
    for (int l = o.layer_begin; l < o.layer_end && st == BB_OK; l++)
        for (int i = 0; i < BB_CALIB_INPUT_COUNT && st == BB_OK; i++)
            st = read_input(f, path, c, l, (bb_calib_input)i);
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
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    bb_status st = read_all(f, path, m, out, info);
    bb_h5_close_id(f);
    BB_CALL(st);
    return BB_OK;
}
