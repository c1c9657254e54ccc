/* ckpt.c — wave checkpoints in HDF5: the verified read (each rank its own linear weights), find-last and pruning;
 * ckpt_write.c writes them. */
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
#include "mpi/ckpt_internal.h"
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

/* ---- the marker ---------------------------------------------------------------- */

/* BB_OK if path's marker exists and matches the file; else one message saying what is wrong. */
static bb_status check_marker(const char *path) {
    char done[1200];
    BB_CALL(bb_ckpt_marker_path(path, done, sizeof done));
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
    bb_ckpt_group_name(i, gname, sizeof gname);
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

/* Everything after the header into fresh owned parts, then swapped into s:
 * the linear weights p holds on this rank (the others get no mask or factors,
 * their bits from /bits), the rest on every rank. Collective over p. */
static bb_status read_body(const char *path, hid_t f, const int64_t *v, bb_state *s, bb_ckpt_meta *meta,
                           const bb_ckpt_part *p, bb_ckpt_io *io) {
    bb_status st = BB_OK;
    if (v[1] != s->n_layers)
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                      "%s is a checkpoint of a %lld-layer model, this model has %d layers: a checkpoint of another "
                      "model",
                      path, (long long)v[1], s->n_layers);
    BB_CALL(bb_ckpt_part_agree(p, st));
    bb_state n = *s;
    n.masks = NULL;
    n.lora = NULL;
    n.bits = NULL;
    n.metrics = NULL;
    n.n_metrics = (int)v[6];
    int64_t nl = s->n_lin;
    st = bb_calloc((void **)&n.masks, (size_t)nl, sizeof *n.masks, "checkpoint masks");
    if (st == BB_OK) st = bb_calloc((void **)&n.lora, (size_t)nl, sizeof *n.lora, "checkpoint factors");
    if (st == BB_OK) st = bb_calloc((void **)&n.bits, (size_t)nl, sizeof *n.bits, "checkpoint bits");
    if (st == BB_OK) st = bb_calloc((void **)&n.metrics, (size_t)v[6], sizeof *n.metrics, "checkpoint metrics");
    if (st == BB_OK) st = bb_ckpt_read_metrics(f, "metrics", (int)v[6], n.metrics);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) {
        if (!bb_ckpt_part_holds(p, i)) continue;
        if (!s->w[i])
            st = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "%s: no weights to read %s into", path, s->t[i]->name);
        if (st == BB_OK) st = read_tensor(path, f, i, s->t[i], s->w[i], &n.masks[i], &n.lora[i], &n.bits[i]);
        if (st == BB_OK && io) {
            const bb_mask *m = n.masks[i];
            const bb_lora *l = n.lora[i];
            io->tensors++;
            io->tensor_bytes += 4 * m->rows * m->cols + 8 * m->rows * m->words_per_row +
                                (l ? 4 * (int64_t)l->rank * (l->rows + l->cols) : 0);
        }
    }
    int32_t *bits = NULL;
    if (st == BB_OK) st = bb_malloc((void **)&bits, sizeof *bits * (size_t)(nl ? nl : 1), "checkpoint bits");
    if (st == BB_OK) st = bb_h5_read(f, "bits", BB_H5_I32, 1, &nl, bits);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        if (!bb_ckpt_part_holds(p, i)) n.bits[i] = bits[i];
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
    st = bb_ckpt_part_agree(p, st);
    if (st != BB_OK) {
        if (meta) bb_ckpt_meta_free(&m);
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

bb_status bb_ckpt_read_dist(const char *path, bb_state *s, bb_ckpt_meta *meta, const bb_ckpt_group *g,
                            bb_ckpt_io *io) {
    if (io) memset(io, 0, sizeof *io);
    bb_ckpt_part p;
    memset(&p, 0, sizeof p);
    BB_CALL(bb_ckpt_part_of(g, s->n_lin, &p));
    BB_CALL(bb_ckpt_part_agree(&p, p.rank == 0 ? check_marker(path) : BB_OK));
    hid_t f = -1;
    /* opening and the header fail alike on every rank: rank 0 tells */
    int q = bb_error_set_quiet(0);
    bb_error_set_quiet(q || p.rank != 0);
    bb_status st = bb_h5_open(path, p.comm, &f);
    st = bb_ckpt_part_agree(&p, st);
    int64_t v[8];
    if (st == BB_OK) st = bb_ckpt_part_agree(&p, read_header(path, f, v));
    bb_error_set_quiet(q);
    if (st == BB_OK) st = read_body(path, f, v, s, meta, &p, io);
    if (f >= 0) bb_h5_close_id(f); /* collective: every rank opened it */
    BB_CALL(st);
    return BB_OK;
}

bb_status bb_ckpt_read(const char *path, bb_state *s, bb_ckpt_meta *meta) {
    return bb_ckpt_read_dist(path, s, meta, NULL, NULL);
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
        bb_ckpt_group_name(i, gname, sizeof gname);
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
        bb_ckpt_part alone;
        st = bb_ckpt_part_of(NULL, k->state.n_lin, &alone);
        if (st == BB_OK) st = read_body(path, f, v, &k->state, &k->meta, &alone, NULL);
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
