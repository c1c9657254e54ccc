/* wave_h5.c — HDF5 file of one decay wave (masks, usage maps, ratios, metrics), written crash-safe. */
#include "mpi/wave_h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "mpi/ckpt_internal.h"
#include "mpi/h5.h"

#define WAVE_MAGIC "birdbone.wave"

static bb_status write_root(hid_t f, const bb_wave_h5 *w, int root, bb_status *local) {
    BB_CALL(bb_h5_attr_put_str(f, "magic", WAVE_MAGIC));
    BB_CALL(bb_h5_attr_put_i64(f, "version", BB_WAVE_H5_VERSION));
    BB_CALL(bb_h5_attr_put_i64(f, "wave", w->wave));
    BB_CALL(bb_h5_attr_put_str(f, "method", w->method));
    BB_CALL(bb_h5_attr_put_str(f, "pattern", w->pattern));
    BB_CALL(bb_h5_attr_put_str(f, "usage_block", w->usage_block));
    BB_CALL(bb_h5_attr_put_str(f, "config_hash", w->config_hash));
    BB_CALL(bb_h5_attr_put_f64(f, "per_wave", w->per_wave));
    BB_CALL(bb_h5_attr_put_f64(f, "target", w->target));
    BB_CALL(bb_h5_attr_put_f64(f, "sparsity", w->sparsity));
    BB_CALL(bb_h5_attr_put_f64(f, "ppl", w->ppl));
    BB_CALL(bb_h5_attr_put_f64(f, "dppl", w->dppl));
    BB_CALL(bb_h5_attr_put_f64(f, "kld_mean", w->kld_mean));
    BB_CALL(bb_h5_attr_put_f64(f, "u_max", w->u_max));
    BB_CALL(bb_h5_attr_put_i64(f, "kept", w->kept));
    BB_CALL(bb_h5_attr_put_i64(f, "total", w->total));
    BB_CALL(bb_h5_attr_put_i64(f, "n_layers", w->n_layers));
    if (w->owl_ratios) {
        int64_t n = w->n_layers;
        BB_CALL(bb_h5_write_shared(f, "owl_ratios", BB_H5_F64, 1, &n, root ? w->owl_ratios : NULL, local));
    }
    return BB_OK;
}

static bb_status write_group(hid_t g, const bb_wave_h5 *w, int i, int held, bb_status *local) {
    const bb_tensor *t = w->tensors[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), words = (cols + 63) / 64;
    BB_CALL(bb_h5_attr_put_str(g, "name", t->name));
    BB_CALL(bb_h5_attr_put_i64(g, "rows", rows));
    BB_CALL(bb_h5_attr_put_i64(g, "cols", cols));
    BB_CALL(bb_h5_attr_put_i64(g, "words_per_row", words));
    BB_CALL(bb_h5_attr_put_i64(g, "kept", w->tensor_kept ? w->tensor_kept[i] : bb_mask_count(w->masks[i])));
    int64_t dims[2] = {rows, words}, nb = w->n_blocks[i];
    BB_CALL(bb_h5_write_shared(g, "mask", BB_H5_U64, 2, dims, held ? w->masks[i]->bits : NULL, local));
    BB_CALL(bb_h5_write_shared(g, "u", BB_H5_F64, 1, &nb, held ? w->u[i] : NULL, local));
    BB_CALL(bb_h5_write_shared(g, "s", BB_H5_F64, 1, &nb, held ? w->s[i] : NULL, local));
    return BB_OK;
}

static bb_status write_all(hid_t f, const bb_wave_h5 *w, const bb_ckpt_part *p, bb_status *local) {
    BB_CALL(write_root(f, w, p->rank == 0, local));
    for (int l = 0; l < w->n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            char gname[64];
            snprintf(gname, sizeof gname, "layer_%03d/%s", l, bb_linear_name((bb_linear_kind)k));
            hid_t g;
            BB_CALL(bb_h5_group_create(f, gname, &g));
            int i = l * BB_LIN_COUNT + k;
            bb_status st = write_group(g, w, i, bb_ckpt_part_holds(p, i), local);
            bb_h5_close_id(g);
            BB_CALL(st);
        }
    return BB_OK;
}

bb_status bb_wave_h5_write_dist(const char *path, const bb_wave_h5 *w, const bb_ckpt_group *group) {
    char tmp[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp", path) < (int)sizeof tmp, BB_ERR_ARG, "path too long: %s", path);
    bb_ckpt_part p;
    BB_CALL(bb_ckpt_part_of(group, w->n_layers * BB_LIN_COUNT, &p));
    BB_CHECK(p.size == 1 || w->tensor_kept, BB_ERR_INTERNAL, "%s: a wave file shared by %d ranks needs tensor_kept",
             path, p.size);
    hid_t f = -1;
    /* a collective create fails alike on every rank: rank 0 tells */
    int q = bb_error_set_quiet(0);
    bb_error_set_quiet(q || p.rank != 0);
    bb_status st = bb_h5_create(tmp, p.comm, &f);
    bb_error_set_quiet(q);
    st = bb_ckpt_part_agree(&p, st);
    bb_status local = BB_OK;
    if (st == BB_OK) st = write_all(f, w, &p, &local);
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
    if (st == BB_OK) st = local;
    st = bb_ckpt_part_agree(&p, st);
    if (p.rank == 0) {
        if (st == BB_OK) st = bb_file_sync(tmp);
        if (st == BB_OK && rename(tmp, path) != 0)
            st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st != BB_OK) unlink(tmp);
    }
    st = bb_ckpt_part_agree(&p, st);
    if (st != BB_OK) return bb_trace(st, __FILE__, __LINE__, "bb_wave_h5_write");
    return BB_OK;
}

bb_status bb_wave_h5_write(const char *path, const bb_wave_h5 *w) { return bb_wave_h5_write_dist(path, w, NULL); }

/* The root's magic and version; *n_layers and *wave if asked for. */
static bb_status check_header(const char *path, hid_t f, int64_t *n_layers, int64_t *wave) {
    char magic[32] = "";
    BB_CALL(bb_h5_attr_get_str(f, "magic", magic, sizeof magic));
    BB_CHECK(!strcmp(magic, WAVE_MAGIC), BB_ERR_FORMAT, "%s: magic \"%s\" is not \"%s\": not a decay wave file", path,
             magic, WAVE_MAGIC);
    int64_t version = 0;
    BB_CALL(bb_h5_attr_get_i64(f, "version", &version));
    BB_CHECK(version == BB_WAVE_H5_VERSION, BB_ERR_FORMAT, "%s: version %lld, this build reads version %d", path,
             (long long)version, BB_WAVE_H5_VERSION);
    if (n_layers) BB_CALL(bb_h5_attr_get_i64(f, "n_layers", n_layers));
    if (wave) BB_CALL(bb_h5_attr_get_i64(f, "wave", wave));
    return BB_OK;
}

static bb_status read_mask(const char *path, hid_t f, int layer, bb_linear_kind kind, bb_mask **out) {
    int64_t rows = 0, cols = 0;
    BB_CALL(check_header(path, f, NULL, NULL));
    char gname[64];
    snprintf(gname, sizeof gname, "layer_%03d/%s", layer, bb_linear_name(kind));
    hid_t g;
    BB_CALL(bb_h5_group_open(f, gname, &g));
    bb_status st = bb_h5_attr_get_i64(g, "rows", &rows);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "cols", &cols);
    if (st == BB_OK && (rows < 0 || cols < 0))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s: negative shape (%lld, %lld)", path, gname,
                      (long long)rows, (long long)cols);
    if (st == BB_OK) st = bb_mask_create(rows, cols, 0, out);
    int64_t dims[2] = {rows, (cols + 63) / 64};
    if (st == BB_OK) st = bb_h5_read(g, "mask", BB_H5_U64, 2, dims, (*out)->bits);
    /* Popcounts count whole words: bits past cols must be 0, as bb_mask keeps them. */
    int tail = (int)(cols % 64);
    for (int64_t i = 0; st == BB_OK && tail && i < rows; i++)
        if ((*out)->bits[i * (*out)->words_per_row + (*out)->words_per_row - 1] >> tail)
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s: mask row %lld has bits set past column %lld",
                          path, gname, (long long)i, (long long)cols);
    bb_h5_close_id(g);
    if (st != BB_OK) bb_mask_destroy(out);
    return st;
}

bb_status bb_wave_h5_read_mask(const char *path, int layer, bb_linear_kind kind, bb_mask **out) {
    *out = NULL;
    BB_CHECK(kind >= 0 && kind < BB_LIN_COUNT && layer >= 0 && layer < 1000, BB_ERR_ARG,
             "%s: no linear kind %d of layer %d", path, (int)kind, layer);
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    bb_status st = read_mask(path, f, layer, kind, out);
    bb_h5_close_id(f);
    return st;
}

/* Append dataset s of one tensor group to *all (*n values, capacity *cap). */
static bb_status append_usage(const char *path, hid_t f, const char *gname, double **all, int64_t *n, int64_t *cap) {
    hid_t g;
    BB_CALL(bb_h5_group_open(f, gname, &g));
    int rank = 0;
    int64_t dims[2] = {0, 0};
    bb_status st = bb_h5_shape(g, "s", &rank, dims);
    if (st == BB_OK && rank != 1)
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s/s is not a one-dimensional array", path, gname);
    int64_t nb = dims[0];
    if (st == BB_OK && *n + nb > *cap) {
        int64_t want = *cap * 2 > *n + nb ? *cap * 2 : *n + nb;
        double *grown = realloc(*all, (size_t)(want ? want : 1) * sizeof(double));
        if (!grown)
            st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: %lld usage values of %s", (long long)want,
                          path);
        else {
            *all = grown;
            *cap = want;
        }
    }
    if (st == BB_OK && nb) st = bb_h5_read(g, "s", BB_H5_F64, 1, &nb, *all + *n);
    if (st == BB_OK) *n += nb;
    bb_h5_close_id(g);
    return st;
}

bb_status bb_wave_h5_read_usage(const char *path, int *wave, double **s, int64_t *n) {
    *s = NULL;
    *n = 0;
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    int64_t n_layers = 0, k = 0, cap = 0;
    bb_status st = check_header(path, f, &n_layers, &k);
    if (st == BB_OK && (n_layers < 0 || n_layers > 100000))
        st =
            bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: n_layers %lld is out of range", path, (long long)n_layers);
    for (int64_t l = 0; st == BB_OK && l < n_layers; l++)
        for (int kind = 0; st == BB_OK && kind < BB_LIN_COUNT; kind++) {
            char gname[64];
            snprintf(gname, sizeof gname, "layer_%03d/%s", (int)l, bb_linear_name((bb_linear_kind)kind));
            if (!bb_h5_exists(f, gname))
                st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s is missing", path, gname);
            else
                st = append_usage(path, f, gname, s, n, &cap);
        }
    bb_h5_close_id(f);
    if (st != BB_OK) {
        free(*s);
        *s = NULL;
        *n = 0;
        return bb_trace(st, __FILE__, __LINE__, "bb_wave_h5_read_usage");
    }
    *wave = (int)k;
    return BB_OK;
}
