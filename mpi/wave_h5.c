/* wave_h5.c — HDF5 file of one decay wave (masks, usage maps, ratios, metrics), written crash-safe. */
#include "mpi/wave_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "mpi/h5check.h"

#define WAVE_MAGIC "birdbone.wave"

/* Runs expr only while st is OK and keeps the first failure, naming the file and
 * object: handles opened earlier must still be closed on the way out. */
#define STEP(st, where, expr)                                                                                          \
    do {                                                                                                               \
        if ((st) == BB_OK && (expr) < 0) {                                                                             \
            char what_[3072];                                                                                          \
            snprintf(what_, sizeof what_, "%s on %s", #expr, (where));                                                 \
            (st) = bb_h5_error(__FILE__, __LINE__, what_);                                                             \
        }                                                                                                              \
    } while (0)

static void close_id(hid_t id, herr_t (*fn)(hid_t)) {
    if (id >= 0) fn(id);
}

static bb_status put_attr(const char *where, hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    bb_status st = BB_OK;
    hid_t sp = -1, a = -1;
    STEP(st, where, sp = H5Screate(H5S_SCALAR));
    STEP(st, where, a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT));
    STEP(st, where, H5Awrite(a, mtype, v));
    close_id(a, H5Aclose);
    close_id(sp, H5Sclose);
    return st;
}

static bb_status put_i64(const char *where, hid_t loc, const char *name, int64_t v) {
    return put_attr(where, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static bb_status put_f64(const char *where, hid_t loc, const char *name, double v) {
    return put_attr(where, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static bb_status put_str(const char *where, hid_t loc, const char *name, const char *s) {
    bb_status st = BB_OK;
    hid_t t = -1;
    size_t n = strlen(s);
    STEP(st, where, t = H5Tcopy(H5T_C_S1));
    STEP(st, where, H5Tset_size(t, n ? n : 1));
    STEP(st, where, H5Tset_strpad(t, H5T_STR_NULLPAD));
    if (st == BB_OK) st = put_attr(where, loc, name, t, t, n ? s : "");
    close_id(t, H5Tclose);
    return st;
}

static bb_status put_dataset(const char *where, hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank,
                             const hsize_t *dims, const void *buf) {
    bb_status st = BB_OK;
    hid_t sp = -1, d = -1;
    STEP(st, where, sp = H5Screate_simple(rank, dims, NULL));
    STEP(st, where, d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    STEP(st, where, H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf));
    close_id(d, H5Dclose);
    close_id(sp, H5Sclose);
    return st;
}

static bb_status write_root(const char *where, hid_t f, const bb_wave_h5 *w) {
    BB_CALL(put_str(where, f, "magic", WAVE_MAGIC));
    BB_CALL(put_i64(where, f, "version", BB_WAVE_H5_VERSION));
    BB_CALL(put_i64(where, f, "wave", w->wave));
    BB_CALL(put_str(where, f, "method", w->method));
    BB_CALL(put_str(where, f, "pattern", w->pattern));
    BB_CALL(put_str(where, f, "usage_block", w->usage_block));
    BB_CALL(put_str(where, f, "config_hash", w->config_hash));
    BB_CALL(put_f64(where, f, "per_wave", w->per_wave));
    BB_CALL(put_f64(where, f, "target", w->target));
    BB_CALL(put_f64(where, f, "sparsity", w->sparsity));
    BB_CALL(put_f64(where, f, "ppl", w->ppl));
    BB_CALL(put_f64(where, f, "dppl", w->dppl));
    BB_CALL(put_f64(where, f, "kld_mean", w->kld_mean));
    BB_CALL(put_f64(where, f, "u_max", w->u_max));
    BB_CALL(put_i64(where, f, "kept", w->kept));
    BB_CALL(put_i64(where, f, "total", w->total));
    BB_CALL(put_i64(where, f, "n_layers", w->n_layers));
    if (w->owl_ratios) {
        hsize_t n = (hsize_t)w->n_layers;
        BB_CALL(put_dataset(where, f, "owl_ratios", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, w->owl_ratios));
    }
    return BB_OK;
}

static bb_status write_tensor(const char *path, hid_t f, const bb_wave_h5 *w, int layer, int kind) {
    int i = layer * BB_LIN_COUNT + kind;
    const bb_mask *m = w->masks[i];
    char gname[64], where[1400];
    snprintf(gname, sizeof gname, "layer_%03d/%s", layer, bb_linear_name((bb_linear_kind)kind));
    snprintf(where, sizeof where, "%s:/%s", path, gname);
    bb_status st = BB_OK;
    hid_t lcpl = -1, g = -1;
    STEP(st, where, lcpl = H5Pcreate(H5P_LINK_CREATE));
    STEP(st, where, H5Pset_create_intermediate_group(lcpl, 1));
    STEP(st, where, g = H5Gcreate2(f, gname, lcpl, H5P_DEFAULT, H5P_DEFAULT));
    if (st == BB_OK) st = put_str(where, g, "name", w->tensors[i]->name);
    if (st == BB_OK) st = put_i64(where, g, "rows", m->rows);
    if (st == BB_OK) st = put_i64(where, g, "cols", m->cols);
    if (st == BB_OK) st = put_i64(where, g, "words_per_row", m->words_per_row);
    if (st == BB_OK) st = put_i64(where, g, "kept", bb_mask_count(m));
    hsize_t dims[2] = {(hsize_t)m->rows, (hsize_t)m->words_per_row}, nb = (hsize_t)w->n_blocks[i];
    if (st == BB_OK) st = put_dataset(where, g, "mask", H5T_STD_U64LE, H5T_NATIVE_UINT64, 2, dims, m->bits);
    if (st == BB_OK) st = put_dataset(where, g, "u", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &nb, w->u[i]);
    if (st == BB_OK) st = put_dataset(where, g, "s", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &nb, w->s[i]);
    close_id(g, H5Gclose);
    close_id(lcpl, H5Pclose);
    return st;
}

static bb_status write_all(const char *path, hid_t f, const bb_wave_h5 *w) {
    BB_CALL(write_root(path, f, w));
    for (int l = 0; l < w->n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) BB_CALL(write_tensor(path, f, w, l, k));
    return BB_OK;
}

bb_status bb_wave_h5_write(const char *path, const bb_wave_h5 *w) {
    char tmp[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path too long: %s", path);
    bb_h5_quiet();
    bb_status st = BB_OK;
    hid_t fapl = -1, f = -1;
    /* Closing the file closes whatever an error path left open in it. */
    STEP(st, tmp, fapl = H5Pcreate(H5P_FILE_ACCESS));
    STEP(st, tmp, H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG));
    STEP(st, tmp, f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl));
    if (st == BB_OK) st = write_all(tmp, f, w);
    if (f >= 0) {
        herr_t e = H5Fclose(f);
        if (st == BB_OK && e < 0) st = bb_h5_error(__FILE__, __LINE__, "H5Fclose of the wave file");
    }
    close_id(fapl, H5Pclose);
    if (st == BB_OK) st = bb_file_sync(tmp);
    if (st == BB_OK && rename(tmp, path) != 0)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != BB_OK) {
        unlink(tmp);
        return bb_trace(st, __FILE__, __LINE__, "bb_wave_h5_write");
    }
    return BB_OK;
}

static bb_status get_i64(const char *where, hid_t loc, const char *name, int64_t *v) {
    bb_status st = BB_OK;
    hid_t a = -1;
    STEP(st, where, a = H5Aopen(loc, name, H5P_DEFAULT));
    STEP(st, where, H5Aread(a, H5T_NATIVE_INT64, v));
    close_id(a, H5Aclose);
    return st;
}

/* The root's magic and version; *n_layers and *wave if asked for. */
static bb_status check_header(const char *path, hid_t f, int64_t *n_layers, int64_t *wave) {
    char where[1400], magic[32] = "";
    snprintf(where, sizeof where, "%s:/", path);
    bb_status st = BB_OK;
    hid_t a = -1, t = -1;
    STEP(st, where, a = H5Aopen(f, "magic", H5P_DEFAULT));
    STEP(st, where, t = H5Aget_type(a));
    if (st == BB_OK && (H5Tget_class(t) != H5T_STRING || H5Tget_size(t) >= sizeof magic))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute magic is not a short string", where);
    STEP(st, where, H5Aread(a, t, magic));
    close_id(t, H5Tclose);
    close_id(a, H5Aclose);
    BB_CALL(st);
    BB_CHECK(!strcmp(magic, WAVE_MAGIC), BB_ERR_FORMAT, "%s: magic \"%s\" is not \"%s\": not a decay wave file", path,
             magic, WAVE_MAGIC);
    int64_t version = 0;
    BB_CALL(get_i64(where, f, "version", &version));
    BB_CHECK(version == BB_WAVE_H5_VERSION, BB_ERR_FORMAT, "%s: version %lld, this build reads version %d", path,
             (long long)version, BB_WAVE_H5_VERSION);
    if (n_layers) BB_CALL(get_i64(where, f, "n_layers", n_layers));
    if (wave) BB_CALL(get_i64(where, f, "wave", wave));
    return BB_OK;
}

static bb_status read_mask(const char *path, hid_t f, int layer, bb_linear_kind kind, bb_mask **out) {
    char where[1400], gname[64];
    bb_status st = BB_OK;
    int64_t rows = 0, cols = 0;
    BB_CALL(check_header(path, f, NULL, NULL));
    snprintf(gname, sizeof gname, "layer_%03d/%s", layer, bb_linear_name(kind));
    snprintf(where, sizeof where, "%s:/%s", path, gname);
    BB_CHECK(H5Lexists(f, "layer_000", H5P_DEFAULT) > 0 && H5Lexists(f, gname, H5P_DEFAULT) > 0, BB_ERR_FORMAT,
             "%s is missing", where);
    hid_t g = -1, d = -1, sp = -1;
    hsize_t dims[2] = {0, 0};
    STEP(st, where, g = H5Gopen2(f, gname, H5P_DEFAULT));
    if (st == BB_OK) st = get_i64(where, g, "rows", &rows);
    if (st == BB_OK) st = get_i64(where, g, "cols", &cols);
    STEP(st, where, d = H5Dopen2(g, "mask", H5P_DEFAULT));
    STEP(st, where, sp = H5Dget_space(d));
    if (st == BB_OK && (H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
                        rows < 0 || cols < 0 || dims[0] != (hsize_t)rows || dims[1] != (hsize_t)((cols + 63) / 64)))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                      "%s: mask is not (rows, ceil(cols / 64)) for the shape (%lld, %lld) it records", where,
                      (long long)rows, (long long)cols);
    if (st == BB_OK) st = bb_mask_create(rows, cols, 0, out);
    STEP(st, where, H5Dread(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, (*out)->bits));
    /* Popcounts count whole words: bits past cols must be 0, as bb_mask keeps them. */
    int tail = (int)(cols % 64);
    for (int64_t i = 0; st == BB_OK && tail && i < rows; i++)
        if ((*out)->bits[i * (*out)->words_per_row + (*out)->words_per_row - 1] >> tail)
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: mask row %lld has bits set past column %lld", where,
                          (long long)i, (long long)cols);
    close_id(sp, H5Sclose);
    close_id(d, H5Dclose);
    close_id(g, H5Gclose);
    if (st != BB_OK) bb_mask_destroy(out);
    return st;
}

bb_status bb_wave_h5_read_mask(const char *path, int layer, bb_linear_kind kind, bb_mask **out) {
    *out = NULL;
    BB_CHECK(kind >= 0 && kind < BB_LIN_COUNT && layer >= 0 && layer < 1000, BB_ERR_ARG,
             "%s: no linear kind %d of layer %d", path, (int)kind, layer);
    bb_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char what[1300];
        snprintf(what, sizeof what, "H5Fopen(%s)", path);
        return bb_h5_error(__FILE__, __LINE__, what);
    }
    bb_status st = read_mask(path, f, layer, kind, out);
    H5Fclose(f);
    return st;
}

/* Append dataset s of one tensor group to *all (*n values, capacity *cap). */
static bb_status append_usage(const char *path, hid_t f, const char *gname, double **all, int64_t *n, int64_t *cap) {
    char where[1400];
    snprintf(where, sizeof where, "%s:/%s/s", path, gname);
    bb_status st = BB_OK;
    hid_t g = -1, d = -1, sp = -1;
    hsize_t nb = 0;
    STEP(st, where, g = H5Gopen2(f, gname, H5P_DEFAULT));
    STEP(st, where, d = H5Dopen2(g, "s", H5P_DEFAULT));
    STEP(st, where, sp = H5Dget_space(d));
    if (st == BB_OK && (H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &nb, NULL) < 0))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s is not a one-dimensional array", where);
    if (st == BB_OK && *n + (int64_t)nb > *cap) {
        int64_t want = *cap * 2 > *n + (int64_t)nb ? *cap * 2 : *n + (int64_t)nb;
        double *grown = realloc(*all, (size_t)(want ? want : 1) * sizeof(double));
        if (!grown)
            st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: %lld usage values of %s", (long long)want,
                          path);
        else {
            *all = grown;
            *cap = want;
        }
    }
    if (nb) STEP(st, where, H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *all + *n));
    if (st == BB_OK) *n += (int64_t)nb;
    close_id(sp, H5Sclose);
    close_id(d, H5Dclose);
    close_id(g, H5Gclose);
    return st;
}

bb_status bb_wave_h5_read_usage(const char *path, int *wave, double **s, int64_t *n) {
    *s = NULL;
    *n = 0;
    bb_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char what[1300];
        snprintf(what, sizeof what, "H5Fopen(%s)", path);
        return bb_h5_error(__FILE__, __LINE__, what);
    }
    int64_t n_layers = 0, k = 0, cap = 0;
    bb_status st = check_header(path, f, &n_layers, &k);
    if (st == BB_OK && (n_layers < 0 || n_layers > 100000))
        st =
            bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: n_layers %lld is out of range", path, (long long)n_layers);
    for (int64_t l = 0; st == BB_OK && l < n_layers; l++)
        for (int kind = 0; st == BB_OK && kind < BB_LIN_COUNT; kind++) {
            char gname[64];
            snprintf(gname, sizeof gname, "layer_%03d/%s", (int)l, bb_linear_name((bb_linear_kind)kind));
            if (H5Lexists(f, "layer_000", H5P_DEFAULT) <= 0 || H5Lexists(f, gname, H5P_DEFAULT) <= 0)
                st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s is missing", path, gname);
            else
                st = append_usage(path, f, gname, s, n, &cap);
        }
    H5Fclose(f);
    if (st != BB_OK) {
        free(*s);
        *s = NULL;
        *n = 0;
        return bb_trace(st, __FILE__, __LINE__, "bb_wave_h5_read_usage");
    }
    *wave = (int)k;
    return BB_OK;
}
