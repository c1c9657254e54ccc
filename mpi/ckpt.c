/* ckpt.c — wave checkpoints in HDF5: crash-safe write with a DONE marker, verified read, find-last and pruning. */
#include "mpi/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/sha256.h"
#include "io/hash.h"
#include "io/model.h"
#include "mpi/h5.h"

void bb_ckpt_meta_free(bb_ckpt_meta *m) {
    if (!m) return;
    free(m->config_yaml);
    m->config_yaml = NULL;
    free(m->layer_target);
    m->layer_target = NULL;
    m->n_layer_target = 0;
    free(m->tensor_hist);
    m->tensor_hist = NULL;
    m->hist_waves = 0;
    free(m->records);
    m->records = NULL;
    m->n_records = 0;
}

static void group_name(int i, char *buf, size_t n) {
    snprintf(buf, n, "layer_%03d/%s", i / BB_LIN_COUNT, bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)));
}

/* ---- writing ------------------------------------------------------------------- */

bb_status bb_ckpt_write_metrics(hid_t f, const char *group, const bb_wave_metrics *rows, int n_rows) {
    int64_t n = n_rows, d8[2] = {n, 8};
    double *col = NULL, *sec = NULL;
    int32_t *ic = NULL;
    int64_t *lc = NULL;
    bb_status st = bb_malloc((void **)&col, sizeof *col * (size_t)(n ? n : 1), "metrics column");
    if (st == BB_OK) st = bb_malloc((void **)&sec, sizeof *sec * (size_t)(8 * (n ? n : 1)), "metrics seconds");
    if (st == BB_OK) st = bb_malloc((void **)&ic, sizeof *ic * (size_t)(n ? n : 1), "metrics column");
    if (st == BB_OK) st = bb_malloc((void **)&lc, sizeof *lc * (size_t)(n ? n : 1), "metrics column");
    hid_t g = -1;
    if (st == BB_OK) st = bb_h5_group_create(f, group, &g);
    const char *fnames[6] = {"ppl", "dppl", "kld", "top1", "sparsity", "bits"};
    for (int c = 0; st == BB_OK && c < 6; c++) {
        for (int64_t i = 0; i < n; i++) {
            const bb_wave_metrics *m = &rows[i];
            const double v[6] = {m->ppl, m->dppl, m->kld, m->top1, m->sparsity, m->bits};
            col[i] = v[c];
        }
        st = bb_h5_write(g, fnames[c], BB_H5_F64, 1, &n, col);
    }
    for (int64_t i = 0; st == BB_OK && i < n; i++) ic[i] = rows[i].wave;
    if (st == BB_OK) st = bb_h5_write(g, "wave", BB_H5_I32, 1, &n, ic);
    for (int64_t i = 0; st == BB_OK && i < n; i++) ic[i] = rows[i].rolled_back;
    if (st == BB_OK) st = bb_h5_write(g, "rolled_back", BB_H5_I32, 1, &n, ic);
    for (int64_t i = 0; st == BB_OK && i < n; i++) lc[i] = rows[i].lora_values;
    if (st == BB_OK) st = bb_h5_write(g, "lora_values", BB_H5_I64, 1, &n, lc);
    for (int64_t i = 0; st == BB_OK && i < n; i++) col[i] = rows[i].scaffold_tau;
    if (st == BB_OK) st = bb_h5_write(g, "scaffold_tau", BB_H5_F64, 1, &n, col);
    for (int64_t i = 0; st == BB_OK && i < n; i++) memcpy(sec + 8 * i, rows[i].seconds, 8 * sizeof(double));
    if (st == BB_OK) st = bb_h5_write(g, "seconds", BB_H5_F64, 2, d8, sec);
    bb_h5_close_id(g);
    free(col);
    free(sec);
    free(ic);
    free(lc);
    return st;
}

static bb_status write_tensor(hid_t g, const bb_state *s, int i) {
    const bb_tensor *t = s->t[i];
    const bb_mask *m = s->masks[i];
    const bb_lora *l = s->lora[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    bb_tensor_hash hw, hm;
    bb_hash_f32(t->name, rows, cols, s->w[i], &hw);
    bb_hash_u64(t->name, m->rows, m->words_per_row, m->bits, &hm);
    char hex[65];
    BB_CALL(bb_h5_attr_put_str(g, "name", t->name));
    BB_CALL(bb_h5_attr_put_i64(g, "rows", rows));
    BB_CALL(bb_h5_attr_put_i64(g, "cols", cols));
    BB_CALL(bb_h5_attr_put_i64(g, "words_per_row", m->words_per_row));
    BB_CALL(bb_h5_attr_put_i64(g, "kept", bb_mask_count(m)));
    BB_CALL(bb_h5_attr_put_i64(g, "bits", s->bits[i]));
    BB_CALL(bb_h5_attr_put_i64(g, "lora_rank", l ? l->rank : 0));
    bb_hash_hex(hw.digest, hex);
    BB_CALL(bb_h5_attr_put_str(g, "weight_sha256", hex));
    bb_hash_hex(hm.digest, hex);
    BB_CALL(bb_h5_attr_put_str(g, "mask_sha256", hex));
    int64_t dw[2] = {rows, cols}, dm[2] = {m->rows, m->words_per_row};
    BB_CALL(bb_h5_write(g, "weight", BB_H5_F32, 2, dw, s->w[i]));
    BB_CALL(bb_h5_write(g, "mask", BB_H5_U64, 2, dm, m->bits));
    if (l) {
        int64_t da[2] = {l->rows, l->rank}, db[2] = {l->rank, l->cols};
        BB_CALL(bb_h5_write(g, "lora_a", BB_H5_F32, 2, da, l->a));
        BB_CALL(bb_h5_write(g, "lora_b", BB_H5_F32, 2, db, l->b));
    }
    return BB_OK;
}

static bb_status write_all(hid_t f, const bb_state *s, const bb_ckpt_meta *meta) {
    BB_CALL(bb_h5_attr_put_str(f, "magic", BB_CKPT_MAGIC));
    BB_CALL(bb_h5_attr_put_i64(f, "version", BB_CKPT_VERSION));
    BB_CALL(bb_h5_attr_put_i64(f, "wave", s->wave));
    BB_CALL(bb_h5_attr_put_i64(f, "n_layers", s->n_layers));
    BB_CALL(bb_h5_attr_put_i64(f, "n_lin", s->n_lin));
    BB_CALL(bb_h5_attr_put_i64(f, "losing", s->losing));
    BB_CALL(bb_h5_attr_put_i64(f, "rollback_left", s->rollback_left));
    BB_CALL(bb_h5_attr_put_i64(f, "frozen", s->frozen));
    BB_CALL(bb_h5_attr_put_u64(f, "rng_counter", s->rng_counter));
    BB_CALL(bb_h5_attr_put_i64(f, "good_wave", s->good_wave));
    BB_CALL(bb_h5_attr_put_i64(f, "rb_wave", s->rb_wave));
    if (meta->layer_target && meta->n_layer_target > 0) {
        int64_t d = meta->n_layer_target;
        BB_CALL(bb_h5_write(f, "layer_target", BB_H5_F64, 1, &d, meta->layer_target));
    }
    if (meta->tensor_hist && meta->hist_waves > 0) {
        int64_t d[2] = {meta->hist_waves, (int64_t)s->n_lin * 3};
        BB_CALL(bb_h5_write(f, "tensor_hist", BB_H5_F32, 2, d, meta->tensor_hist));
    }
    if (meta->records && meta->n_records > 0) BB_CALL(bb_h5_write(f, "records", BB_H5_U8, 1, &meta->n_records, meta->records));
    BB_CALL(bb_h5_attr_put_i64(f, "n_metrics", s->n_metrics));
    BB_CALL(bb_h5_attr_put_str(f, "config_sha256", meta->config_sha256));
    BB_CALL(bb_h5_attr_put_str(f, "model_sha256", meta->model_sha256));
    BB_CALL(bb_h5_attr_put_str(f, "model_path", meta->model_path));
    BB_CALL(bb_h5_attr_put_str(f, "birdbone_version", BB_VERSION));
    const char *yaml = meta->config_yaml ? meta->config_yaml : "";
    int64_t ny = (int64_t)strlen(yaml), nl = s->n_lin;
    BB_CALL(bb_h5_write(f, "config_yaml", BB_H5_U8, 1, &ny, yaml));
    BB_CALL(bb_h5_write(f, "bits", BB_H5_I32, 1, &nl, s->bits));
    BB_CALL(bb_ckpt_write_metrics(f, "metrics", s->metrics, s->n_metrics));
    for (int i = 0; i < s->n_lin; i++) {
        char gname[64];
        group_name(i, gname, sizeof gname);
        hid_t g;
        BB_CALL(bb_h5_group_create(f, gname, &g));
        bb_status st = write_tensor(g, s, i);
        bb_h5_close_id(g);
        BB_CALL(st);
    }
    return BB_OK;
}

static bb_status check_state(const char *path, const bb_state *s) {
    BB_CHECK(s->n_layers >= 0 && s->n_lin == s->n_layers * BB_LIN_COUNT && s->n_metrics >= 1 && s->wave >= 0,
             BB_ERR_ARG, "%s: state with %d layers, %d linear weights, %d metrics rows, wave %d is inconsistent", path,
             s->n_layers, s->n_lin, s->n_metrics, s->wave);
    for (int i = 0; i < s->n_lin; i++) {
        BB_CHECK(s->t[i] && s->w[i] && s->masks[i], BB_ERR_ARG,
                 "%s: linear weight %d has no tensor, weights or mask in the state", path, i);
        int64_t rows = bb_tensor_rows(s->t[i]), cols = bb_tensor_cols(s->t[i]);
        BB_CHECK(s->masks[i]->rows == rows && s->masks[i]->cols == cols, BB_ERR_ARG,
                 "%s: the mask of %s is (%lld, %lld), the weight (%lld, %lld)", path, s->t[i]->name,
                 (long long)s->masks[i]->rows, (long long)s->masks[i]->cols, (long long)rows, (long long)cols);
        const bb_lora *l = s->lora[i];
        BB_CHECK(!l || (l->rows == rows && l->cols == cols), BB_ERR_ARG,
                 "%s: the factors of %s are for (%lld, %lld), the weight is (%lld, %lld)", path, s->t[i]->name,
                 (long long)l->rows, (long long)l->cols, (long long)rows, (long long)cols);
    }
    return BB_OK;
}

static bb_status marker_path(const char *path, char *buf, size_t n) {
    BB_CHECK(snprintf(buf, n, "%s.DONE", path) < (int)n, BB_ERR_ARG, "path too long: %s", path);
    return BB_OK;
}

/* fsync the directory holding path, so that the rename itself is on disk. */
static bb_status sync_dir_of(const char *path) {
    char dir[1200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    return bb_file_sync(dir);
}

bb_status bb_ckpt_write_file(const char *path, bb_ckpt_body_fn body, void *ud, const char *what) {
    char tmp[1200], done[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp", path) < (int)sizeof tmp, BB_ERR_ARG, "path too long: %s", path);
    BB_CALL(marker_path(path, done, sizeof done));
    BB_CHECK(unlink(done) == 0 || errno == ENOENT, BB_ERR_IO, "cannot remove the stale marker %s: %s", done,
             strerror(errno));
    hid_t f = -1;
    bb_status st = bb_h5_create(tmp, MPI_COMM_SELF, &f);
    if (st == BB_OK) st = body(f, ud);
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
    if (st == BB_OK) st = bb_file_sync(tmp);
    if (st == BB_OK && rename(tmp, path) != 0)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st == BB_OK) st = sync_dir_of(path);
    struct stat sb;
    if (st == BB_OK && stat(path, &sb) != 0)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot stat %s: %s", path, strerror(errno));
    if (st == BB_OK) {
        char text[512];
        int n = snprintf(text, sizeof text, "%s %d\n%s\nbytes %lld\n", BB_CKPT_MAGIC, BB_CKPT_VERSION, what,
                         (long long)sb.st_size);
        st = bb_file_write_atomic(done, text, (size_t)n);
    }
    if (st != BB_OK) {
        unlink(tmp);
        return bb_trace(st, __FILE__, __LINE__, "bb_ckpt_write_file");
    }
    return BB_OK;
}

typedef struct {
    const bb_state *s;
    const bb_ckpt_meta *meta;
} state_body;

static bb_status write_state_body(hid_t f, void *ud) {
    const state_body *b = ud;
    return write_all(f, b->s, b->meta);
}

bb_status bb_ckpt_write(const char *path, const bb_state *s, const bb_ckpt_meta *meta) {
    BB_CALL(check_state(path, s));
    state_body b = {s, meta};
    char what[64];
    snprintf(what, sizeof what, "wave %d", s->wave);
    return bb_ckpt_write_file(path, write_state_body, &b, what);
}

/* ---- the marker ---------------------------------------------------------------- */

/* BB_OK if path's marker exists and matches the file; else one message saying what is wrong. */
static bb_status check_marker(const char *path) {
    char done[1200];
    BB_CALL(marker_path(path, done, sizeof done));
    struct stat sb;
    BB_CHECK(stat(path, &sb) == 0, BB_ERR_IO, "cannot read checkpoint %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0;
    int had_err = bb_error_set_quiet(1);
    bb_status st = bb_file_read_all(done, 4096, &text, &len);
    bb_error_set_quiet(had_err);
    BB_CHECK(st == BB_OK, BB_ERR_FORMAT,
             "%s has no DONE marker (%s): the checkpoint is incomplete (its writer stopped before finishing); "
             "resume from an earlier wave or delete it",
             path, done);
    char magic[32] = "";
    int version = 0, wave = -1;
    long long bytes = -1;
    int got = sscanf(text, "%31s %d wave %d bytes %lld", magic, &version, &wave, &bytes);
    free(text);
    BB_CHECK(got == 4 && !strcmp(magic, BB_CKPT_MAGIC), BB_ERR_FORMAT,
             "%s: the DONE marker %s is not a birdbone checkpoint marker", path, done);
    BB_CHECK(bytes == (long long)sb.st_size, BB_ERR_FORMAT,
             "%s has %lld bytes, its DONE marker says %lld: the file is truncated or was replaced; delete it and "
             "resume from an earlier wave",
             path, (long long)sb.st_size, bytes);
    return BB_OK;
}

int bb_ckpt_is_complete(const char *path) {
    int q = bb_error_set_quiet(1);
    bb_status st = check_marker(path);
    bb_error_set_quiet(q);
    return st == BB_OK;
}

/* ---- reading ------------------------------------------------------------------- */

bb_status bb_ckpt_read_metrics(hid_t f, const char *group, int n_rows, bb_wave_metrics *out) {
    int64_t n = n_rows;
    hid_t g;
    BB_CALL(bb_h5_group_open(f, group, &g));
    double *col = NULL, *sec = NULL;
    int32_t *ic = NULL;
    int64_t *lc = NULL, d8[2] = {n, 8};
    bb_status st = bb_malloc((void **)&col, sizeof *col * (size_t)n, "metrics column");
    if (st == BB_OK) st = bb_malloc((void **)&sec, sizeof *sec * (size_t)(8 * n), "metrics seconds");
    if (st == BB_OK) st = bb_malloc((void **)&ic, sizeof *ic * (size_t)n, "metrics column");
    if (st == BB_OK) st = bb_malloc((void **)&lc, sizeof *lc * (size_t)n, "metrics column");
    const char *fnames[6] = {"ppl", "dppl", "kld", "top1", "sparsity", "bits"};
    for (int c = 0; st == BB_OK && c < 6; c++) {
        st = bb_h5_read(g, fnames[c], BB_H5_F64, 1, &n, col);
        for (int64_t i = 0; st == BB_OK && i < n; i++) {
            bb_wave_metrics *m = &out[i];
            double *v[6] = {&m->ppl, &m->dppl, &m->kld, &m->top1, &m->sparsity, &m->bits};
            *v[c] = col[i];
        }
    }
    if (st == BB_OK) st = bb_h5_read(g, "wave", BB_H5_I32, 1, &n, ic);
    for (int64_t i = 0; st == BB_OK && i < n; i++) out[i].wave = ic[i];
    if (st == BB_OK) st = bb_h5_read(g, "rolled_back", BB_H5_I32, 1, &n, ic);
    for (int64_t i = 0; st == BB_OK && i < n; i++) out[i].rolled_back = ic[i];
    if (st == BB_OK) st = bb_h5_read(g, "lora_values", BB_H5_I64, 1, &n, lc);
    for (int64_t i = 0; st == BB_OK && i < n; i++) out[i].lora_values = lc[i];
    if (st == BB_OK && bb_h5_exists(g, "scaffold_tau")) { /* absent in checkpoints from before scaffold mode: 0 */
        st = bb_h5_read(g, "scaffold_tau", BB_H5_F64, 1, &n, col);
        for (int64_t i = 0; st == BB_OK && i < n; i++) out[i].scaffold_tau = col[i];
    }
    if (st == BB_OK) st = bb_h5_read(g, "seconds", BB_H5_F64, 2, d8, sec);
    for (int64_t i = 0; st == BB_OK && i < n; i++) memcpy(out[i].seconds, sec + 8 * i, 8 * sizeof(double));
    bb_h5_close_id(g);
    free(col);
    free(sec);
    free(ic);
    free(lc);
    return st;
}

static bb_status verify(const char *path, const char *gname, hid_t g, const char *attr, const bb_tensor_hash *h) {
    char want[80], got[65];
    BB_CALL(bb_h5_attr_get_str(g, attr, want, sizeof want));
    bb_hash_hex(h->digest, got);
    BB_CHECK(!strcmp(want, got), BB_ERR_FORMAT,
             "%s:/%s: the %s read has SHA-256 %.16s..., the checkpoint recorded %.16s...: the file is corrupt", path,
             gname, attr, got, want);
    return BB_OK;
}

/* Read linear weight i into w (rows, cols) and new mask / factors. */
static bb_status read_tensor(const char *path, hid_t f, int i, const bb_tensor *t, float *w, bb_mask **mask,
                             bb_lora **lora, int *bits) {
    char gname[64];
    group_name(i, gname, sizeof gname);
    hid_t g;
    BB_CALL(bb_h5_group_open(f, gname, &g));
    int64_t rows = 0, cols = 0, rank = 0, b = 0;
    char name[BB_TENSOR_NAME_MAX + 8] = "";
    bb_status st = bb_h5_attr_get_str(g, "name", name, sizeof name);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "rows", &rows);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "cols", &cols);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "bits", &b);
    if (st == BB_OK) st = bb_h5_attr_get_i64(g, "lora_rank", &rank);
    int64_t trows = bb_tensor_rows(t), tcols = bb_tensor_cols(t);
    if (st == BB_OK && (strcmp(name, t->name) || rows != trows || cols != tcols))
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                      "%s:/%s holds %s (%lld, %lld), the model has %s (%lld, %lld): a checkpoint of another model",
                      path, gname, name, (long long)rows, (long long)cols, t->name, (long long)trows,
                      (long long)tcols);
    if (st == BB_OK && (rank < 0 || rank > (rows < cols ? rows : cols) || b < 0 || b > 64))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s:/%s: lora_rank %lld or bits %lld out of range", path,
                      gname, (long long)rank, (long long)b);
    int64_t dw[2] = {rows, cols}, dm[2] = {rows, (cols + 63) / 64};
    if (st == BB_OK) st = bb_h5_read(g, "weight", BB_H5_F32, 2, dw, w);
    if (st == BB_OK) st = bb_mask_create(rows, cols, 0, mask);
    if (st == BB_OK) st = bb_h5_read(g, "mask", BB_H5_U64, 2, dm, (*mask)->bits);
    bb_tensor_hash h;
    if (st == BB_OK) {
        bb_hash_f32(t->name, rows, cols, w, &h);
        st = verify(path, gname, g, "weight_sha256", &h);
    }
    if (st == BB_OK) {
        bb_hash_u64(t->name, rows, dm[1], (*mask)->bits, &h);
        st = verify(path, gname, g, "mask_sha256", &h);
    }
    if (st == BB_OK && rank > 0) {
        int64_t da[2] = {rows, rank}, db[2] = {rank, cols};
        st = bb_lora_create(rows, cols, (int)rank, lora);
        if (st == BB_OK) st = bb_h5_read(g, "lora_a", BB_H5_F32, 2, da, (*lora)->a);
        if (st == BB_OK) st = bb_h5_read(g, "lora_b", BB_H5_F32, 2, db, (*lora)->b);
    }
    *bits = (int)b;
    bb_h5_close_id(g);
    return st;
}

static bb_status read_header(const char *path, hid_t f, int64_t *v) {
    char magic[32] = "";
    int q = bb_error_set_quiet(1);
    bb_status st = bb_h5_attr_get_str(f, "magic", magic, sizeof magic);
    bb_error_set_quiet(q);
    BB_CHECK(st == BB_OK && !strcmp(magic, BB_CKPT_MAGIC), BB_ERR_FORMAT,
             "%s is not a birdbone checkpoint (magic \"%s\", expected \"%s\")", path, magic, BB_CKPT_MAGIC);
    int64_t version = 0;
    BB_CALL(bb_h5_attr_get_i64(f, "version", &version));
    BB_CHECK(version == BB_CKPT_VERSION, BB_ERR_FORMAT,
             "%s: checkpoint format version %lld, this build reads version %d: use the birdbone that wrote it", path,
             (long long)version, BB_CKPT_VERSION);
    const char *names[8] = {"wave", "n_layers", "n_lin", "losing", "rollback_left", "frozen", "n_metrics", "version"};
    for (int i = 0; i < 7; i++) BB_CALL(bb_h5_attr_get_i64(f, names[i], &v[i]));
    v[7] = version;
    BB_CHECK(v[0] >= 0 && v[1] >= 0 && v[1] < 100000 && v[2] == v[1] * BB_LIN_COUNT && v[6] >= 1 && v[6] < 1000000,
             BB_ERR_FORMAT, "%s: inconsistent header (wave %lld, %lld layers, %lld linear weights, %lld metrics rows)",
             path, (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[6]);
    return BB_OK;
}

static bb_status read_meta(hid_t f, bb_ckpt_meta *meta) {
    memset(meta, 0, sizeof *meta);
    meta->version = BB_CKPT_VERSION;
    BB_CALL(bb_h5_attr_get_str(f, "config_sha256", meta->config_sha256, sizeof meta->config_sha256));
    BB_CALL(bb_h5_attr_get_str(f, "model_sha256", meta->model_sha256, sizeof meta->model_sha256));
    BB_CALL(bb_h5_attr_get_str(f, "model_path", meta->model_path, sizeof meta->model_path));
    int rank = 0;
    int64_t dims[2];
    BB_CALL(bb_h5_shape(f, "config_yaml", &rank, dims));
    BB_CALL(bb_malloc((void **)&meta->config_yaml, (size_t)dims[0] + 1, "the checkpoint's YAML text"));
    bb_status st = bb_h5_read(f, "config_yaml", BB_H5_U8, 1, dims, meta->config_yaml);
    if (st != BB_OK) {
        bb_ckpt_meta_free(meta);
        return st;
    }
    meta->config_yaml[dims[0]] = 0;
    if (st == BB_OK && bb_h5_exists(f, "layer_target")) {
        st = bb_h5_shape(f, "layer_target", &rank, dims);
        if (st == BB_OK && (rank != 1 || dims[0] < 1 || dims[0] > 100000))
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "checkpoint: /layer_target has a bad shape");
        if (st == BB_OK) st = bb_malloc((void **)&meta->layer_target, sizeof(double) * (size_t)dims[0], "layer targets");
        if (st == BB_OK) st = bb_h5_read(f, "layer_target", BB_H5_F64, 1, dims, meta->layer_target);
        if (st == BB_OK) meta->n_layer_target = (int)dims[0];
    }
    if (st == BB_OK && bb_h5_exists(f, "tensor_hist")) {
        st = bb_h5_shape(f, "tensor_hist", &rank, dims);
        if (st == BB_OK && (rank != 2 || dims[0] < 1 || dims[0] > 1000000 || dims[1] < 0 || dims[1] > 100000000))
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "checkpoint: /tensor_hist has a bad shape");
        if (st == BB_OK)
            st = bb_malloc((void **)&meta->tensor_hist, sizeof(float) * (size_t)(dims[0] * dims[1]), "tensor history");
        if (st == BB_OK) st = bb_h5_read(f, "tensor_hist", BB_H5_F32, 2, dims, meta->tensor_hist);
        if (st == BB_OK) meta->hist_waves = (int)dims[0];
    }
    if (st == BB_OK && bb_h5_exists(f, "records")) {
        st = bb_h5_shape(f, "records", &rank, dims);
        if (st == BB_OK && (rank != 1 || dims[0] < 1 || dims[0] > ((int64_t)1 << 34)))
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "checkpoint: /records has a bad shape");
        if (st == BB_OK) st = bb_malloc((void **)&meta->records, (size_t)dims[0], "run records");
        if (st == BB_OK) st = bb_h5_read(f, "records", BB_H5_U8, 1, dims, meta->records);
        if (st == BB_OK) meta->n_records = dims[0];
    }
    if (st != BB_OK) bb_ckpt_meta_free(meta);
    return st;
}

/* Everything after the header into fresh owned parts, then swapped into s. */
static bb_status read_body(const char *path, hid_t f, const int64_t *v, bb_state *s, bb_ckpt_meta *meta) {
    BB_CHECK(v[1] == s->n_layers, BB_ERR_ARG,
             "%s is a checkpoint of a %lld-layer model, this model has %d layers: a checkpoint of another model", path,
             (long long)v[1], s->n_layers);
    bb_state n = *s;
    n.masks = NULL;
    n.lora = NULL;
    n.bits = NULL;
    n.metrics = NULL;
    n.n_metrics = (int)v[6];
    int64_t nl = s->n_lin;
    bb_status st = bb_calloc((void **)&n.masks, (size_t)nl, sizeof *n.masks, "checkpoint masks");
    if (st == BB_OK) st = bb_calloc((void **)&n.lora, (size_t)nl, sizeof *n.lora, "checkpoint factors");
    if (st == BB_OK) st = bb_calloc((void **)&n.bits, (size_t)nl, sizeof *n.bits, "checkpoint bits");
    if (st == BB_OK) st = bb_calloc((void **)&n.metrics, (size_t)v[6], sizeof *n.metrics, "checkpoint metrics");
    if (st == BB_OK) st = bb_ckpt_read_metrics(f, "metrics", (int)v[6], n.metrics);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        st = read_tensor(path, f, i, s->t[i], s->w[i], &n.masks[i], &n.lora[i], &n.bits[i]);
    int32_t *bits = NULL;
    if (st == BB_OK) st = bb_malloc((void **)&bits, sizeof *bits * (size_t)(nl ? nl : 1), "checkpoint bits");
    if (st == BB_OK) st = bb_h5_read(f, "bits", BB_H5_I32, 1, &nl, bits);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        if (bits[i] != n.bits[i])
            st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: /bits[%d] = %d but the group of %s says %d", path, i,
                          bits[i], s->t[i]->name, n.bits[i]);
    free(bits);
    uint64_t rng = 0;
    int64_t good = 0, rbw = 0;
    if (st == BB_OK) st = bb_h5_attr_get_u64(f, "rng_counter", &rng);
    if (st == BB_OK) st = bb_h5_attr_get_i64(f, "good_wave", &good);
    if (st == BB_OK) st = bb_h5_attr_get_i64(f, "rb_wave", &rbw);
    if (st == BB_OK && (good < 0 || good > v[0] || rbw < 0 || rbw > v[0]))
        st = bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: good_wave %lld / rb_wave %lld out of range for wave %lld",
                      path, (long long)good, (long long)rbw, (long long)v[0]);
    bb_ckpt_meta m = {0};
    if (st == BB_OK && meta) st = read_meta(f, &m);
    if (st != BB_OK) {
        bb_state_release(&n);
        return st;
    }
    bb_state_release(s);
    n.wave = (int)v[0];
    n.losing = (int)v[3];
    n.rollback_left = (int)v[4];
    n.frozen = (int)v[5];
    n.rng_counter = rng;
    n.good_wave = (int)good;
    n.rb_wave = (int)rbw;
    *s = n;
    if (meta) {
        m.version = (int)v[7];
        *meta = m;
    }
    return BB_OK;
}

bb_status bb_ckpt_read(const char *path, bb_state *s, bb_ckpt_meta *meta) {
    BB_CALL(check_marker(path));
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    int64_t v[8];
    bb_status st = read_header(path, f, v);
    if (st == BB_OK) st = read_body(path, f, v, s, meta);
    bb_h5_close_id(f);
    BB_CALL(st);
    return BB_OK;
}

void bb_ckpt_destroy(bb_ckpt **c) {
    if (!c || !*c) return;
    bb_ckpt *k = *c;
    bb_state_release(&k->state);
    bb_ckpt_meta_free(&k->meta);
    if (k->w)
        for (int i = 0; i < k->state.n_lin; i++) free(k->w[i]);
    free(k->w);
    free(k->tensors);
    free(k->tp);
    free(k);
    *c = NULL;
}

/* Tensor descriptions (name, shape) from the groups' attributes. */
static bb_status load_tensors(const char *path, hid_t f, bb_ckpt *k) {
    for (int i = 0; i < k->state.n_lin; i++) {
        char gname[64];
        group_name(i, gname, sizeof gname);
        hid_t g;
        BB_CALL(bb_h5_group_open(f, gname, &g));
        bb_tensor *t = &k->tensors[i];
        int64_t rows = 0, cols = 0;
        bb_status st = bb_h5_attr_get_str(g, "name", t->name, sizeof t->name);
        if (st == BB_OK) st = bb_h5_attr_get_i64(g, "rows", &rows);
        if (st == BB_OK) st = bb_h5_attr_get_i64(g, "cols", &cols);
        bb_h5_close_id(g);
        BB_CALL(st);
        BB_CHECK(rows >= 1 && cols >= 1 && rows < ((int64_t)1 << 31) && cols < ((int64_t)1 << 31), BB_ERR_FORMAT,
                 "%s:/%s: shape (%lld, %lld) is not a weight matrix", path, gname, (long long)rows, (long long)cols);
        t->dtype = BB_F32;
        t->ndim = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->file_offset = -1;
        k->tp[i] = t;
        BB_CALL(bb_malloc((void **)&k->w[i], sizeof(float) * (size_t)(rows * cols), "checkpoint weights"));
    }
    return BB_OK;
}

bb_status bb_ckpt_load(const char *path, bb_ckpt **out) {
    *out = NULL;
    BB_CALL(check_marker(path));
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    int64_t v[8];
    bb_ckpt *k = NULL;
    bb_status st = read_header(path, f, v);
    if (st == BB_OK) st = bb_calloc((void **)&k, 1, sizeof *k, "checkpoint");
    if (st == BB_OK) {
        k->state.n_layers = (int)v[1];
        k->state.n_lin = (int)v[2];
        size_t n = (size_t)(v[2] ? v[2] : 1);
        st = bb_calloc((void **)&k->tensors, n, sizeof *k->tensors, "checkpoint tensors");
        if (st == BB_OK) st = bb_calloc((void **)&k->w, n, sizeof *k->w, "checkpoint weights");
        if (st == BB_OK) st = bb_calloc((void **)&k->tp, n, sizeof *k->tp, "checkpoint tensors");
    }
    if (st == BB_OK) st = load_tensors(path, f, k);
    if (st == BB_OK) {
        k->state.w = k->w;
        k->state.t = k->tp;
        st = read_body(path, f, v, &k->state, &k->meta);
    }
    bb_h5_close_id(f);
    if (st != BB_OK) {
        bb_ckpt_destroy(&k);
        return bb_trace(st, __FILE__, __LINE__, "bb_ckpt_load");
    }
    *out = k;
    return BB_OK;
}

/* ---- the run directory --------------------------------------------------------- */

bb_status bb_ckpt_path(const char *run_dir, int wave, char *buf, size_t n) {
    BB_CHECK(snprintf(buf, n, "%s/checkpoints/wave_%04d.h5", run_dir, wave) < (int)n, BB_ERR_ARG,
             "run directory path too long: %s", run_dir);
    return BB_OK;
}

/* The wave of "wave_<digits>.h5" (exactly), else -1. */
static int wave_of(const char *name) {
    int k = -1, used = 0;
    if (sscanf(name, "wave_%d.h5%n", &k, &used) != 1 || name[used] != 0 || k < 0 || strncmp(name, "wave_", 5) ||
        name[5] < '0' || name[5] > '9')
        return -1;
    return k;
}

bb_status bb_ckpt_find_last(const char *run_dir, int *wave, char *path, size_t n) {
    *wave = -1;
    if (n) path[0] = 0;
    char dir[1200];
    BB_CHECK(snprintf(dir, sizeof dir, "%s/checkpoints", run_dir) < (int)sizeof dir, BB_ERR_ARG,
             "run directory path too long: %s", run_dir);
    DIR *d = opendir(dir);
    if (!d) {
        BB_CHECK(errno == ENOENT, BB_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
        return BB_OK;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        int k = wave_of(e->d_name);
        if (k <= *wave) continue;
        char p[1500];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!bb_ckpt_is_complete(p)) continue;
        *wave = k;
        snprintf(path, n, "%s", p);
    }
    closedir(d);
    return BB_OK;
}

static bb_status remove_file(const char *p) {
    BB_CHECK(unlink(p) == 0 || errno == ENOENT, BB_ERR_IO, "cannot remove %s: %s", p, strerror(errno));
    return BB_OK;
}

bb_status bb_ckpt_prune(const char *run_dir, int keep_wave) {
    char dir[1200];
    BB_CHECK(snprintf(dir, sizeof dir, "%s/checkpoints", run_dir) < (int)sizeof dir, BB_ERR_ARG,
             "run directory path too long: %s", run_dir);
    DIR *d = opendir(dir);
    if (!d) {
        BB_CHECK(errno == ENOENT, BB_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
        return BB_OK;
    }
    bb_status st = BB_OK;
    struct dirent *e;
    while (st == BB_OK && (e = readdir(d))) {
        char base[300];
        snprintf(base, sizeof base, "%s", e->d_name);
        size_t len = strlen(base);
        if (len > 4 && !strcmp(base + len - 4, ".tmp")) base[len - 4] = 0; /* a writer's leftover */
        int k = wave_of(base);
        if (k < 0 || k == keep_wave || strcmp(base, e->d_name)) {
            if (k >= 0 && k != keep_wave) { /* the .tmp of another wave */
                char p[1500];
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                st = remove_file(p);
            }
            continue;
        }
        char p[1500], m[1600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(m, sizeof m, "%s.DONE", p);
        st = remove_file(m);
        if (st == BB_OK) st = remove_file(p);
    }
    closedir(d);
    BB_CALL(st);
    return BB_OK;
}
