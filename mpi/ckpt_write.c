/* ckpt_write.c — writing checkpoints: the crash-safe protocol (tmp, fsync,
 * rename, DONE marker) and the state written collectively by the ranks that
 * hold it, each rank the datasets of its own linear weights.
 *
 * Parallel HDF5 needs every rank to create the same objects with the same
 * attributes, in the same order; only the data may come from one rank. So a
 * write has three passes: (1) every rank learns the small per-tensor facts it
 * needs for the attributes (kept count, bits, factor rank, hashes: one
 * allgather) and rank 0's run-level header (one broadcast); (2) every rank
 * creates every group, attribute and dataset (collective), remembering which
 * datasets it fills itself; (3) each rank writes its datasets (independent
 * I/O: a rank's tensors are whole datasets, so nothing is shared), then all
 * close the objects in the same order. Failures agree across ranks between
 * passes, so a rank never waits in a collective call the others left. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/parallel.h"
#include "io/hash.h"
#include "io/model.h"
#include "mpi/ckpt_internal.h"
#include "mpi/dist.h"
#include "mpi/h5.h"

/* ---- the ranks of a file --------------------------------------------------------- */

bb_status bb_ckpt_part_of(const bb_ckpt_group *g, int n_lin, bb_ckpt_part *p) {
    p->comm = MPI_COMM_SELF;
    p->rank = 0;
    p->size = 1;
    p->owner = g ? g->owner : NULL;
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (g && g->comm != MPI_COMM_NULL) {
        BB_CHECK(inited && !fin, BB_ERR_ARG, "a checkpoint shared by a communicator needs MPI to be running");
        p->comm = g->comm;
        BB_MPI_CALL(MPI_Comm_rank(p->comm, &p->rank));
        BB_MPI_CALL(MPI_Comm_size(p->comm, &p->size));
    }
    for (int i = 0; p->owner && i < n_lin; i++)
        BB_CHECK(p->owner[i] >= 0 && p->owner[i] < p->size, BB_ERR_ARG,
                 "checkpoint: linear weight %d is assigned to rank %d of a %d-rank communicator", i, p->owner[i],
                 p->size);
    return BB_OK;
}

int bb_ckpt_part_holds(const bb_ckpt_part *p, int i) { return (p->owner ? p->owner[i] : 0) == p->rank; }

bb_status bb_ckpt_part_agree(const bb_ckpt_part *p, bb_status local) {
    if (p->size == 1) return local;
    int mine = local != BB_OK ? p->rank : p->size, first = p->size;
    BB_MPI_CALL(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, p->comm));
    if (first == p->size) return BB_OK;
    int code = (int)local;
    BB_MPI_CALL(MPI_Bcast(&code, 1, MPI_INT, first, p->comm));
    return (bb_status)code;
}

void bb_ckpt_group_name(int i, char *buf, size_t n) {
    snprintf(buf, n, "layer_%03d/%s", i / BB_LIN_COUNT, bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)));
}

bb_status bb_ckpt_marker_path(const char *path, char *buf, size_t n) {
    BB_CHECK(snprintf(buf, n, "%s.DONE", path) < (int)n, BB_ERR_ARG, "path too long: %s", path);
    return BB_OK;
}

/* Silence every rank but 0 (for failures that are the same on every rank);
 * returns the setting to restore. */
static int quiet_unless_root(const bb_ckpt_part *p) {
    int q = bb_error_set_quiet(0);
    bb_error_set_quiet(q || p->rank != 0);
    return q;
}

/* ---- pending writes ------------------------------------------------------------- */

/* Every object created in pass 2, in creation order (closed in that order by
 * every rank); buf is set on the rank that fills the dataset. */
typedef struct {
    hid_t id;
    bb_h5_type t;
    int64_t rows, bytes;
    const void *buf;
    int tensor; /* a linear weight's dataset (counted in tensor_bytes) */
} pending;

typedef struct {
    pending *v;
    int n, cap;
    bb_ckpt_io io;
} writes;

static bb_status writes_init(writes *w, int cap) {
    memset(w, 0, sizeof *w);
    w->cap = cap;
    return bb_calloc((void **)&w->v, (size_t)cap, sizeof *w->v, "checkpoint write list");
}

/* Close every object (collective: the same list on every rank), free the list. */
static void writes_close(writes *w) {
    for (int i = 0; i < w->n; i++) bb_h5_close_id(w->v[i].id);
    free(w->v);
    w->v = NULL;
    w->n = 0;
}

static bb_status keep(writes *w, hid_t id) {
    /* the capacity is sized before pass 2 so that no rank fails alone here */
    BB_CHECK(w->n < w->cap, BB_ERR_INTERNAL, "checkpoint write list overflow (%d objects)", w->cap);
    w->v[w->n++] = (pending){.id = id};
    return BB_OK;
}

/* Create dataset `name` (collective); buf != NULL on the rank that writes it. */
static bb_status dataset(writes *w, hid_t loc, const char *name, bb_h5_type t, int rank, const int64_t *dims,
                         const void *buf, int tensor) {
    hid_t d;
    BB_CALL(bb_h5_dataset_create(loc, name, t, rank, dims, &d));
    BB_CALL(keep(w, d));
    pending *p = &w->v[w->n - 1];
    p->t = t;
    p->rows = dims[0];
    p->bytes = dims[0] * (rank == 2 ? dims[1] : 1) * (int64_t)bb_h5_type_size(t);
    p->buf = buf;
    p->tensor = tensor;
    return BB_OK;
}

static bb_status group(writes *w, hid_t loc, const char *name, hid_t *g) {
    BB_CALL(bb_h5_group_create(loc, name, g));
    return keep(w, *g);
}

/* Pass 3: this rank's datasets (independent I/O). */
static bb_status writes_flush(writes *w) {
    for (int i = 0; i < w->n; i++) {
        const pending *p = &w->v[i];
        if (!p->buf) continue;
        BB_CALL(bb_h5_write_rows(p->id, p->t, 0, p->rows, p->buf));
        if (p->tensor) w->io.tensor_bytes += p->bytes;
        else w->io.other_bytes += p->bytes;
    }
    return BB_OK;
}

/* ---- metrics ---------------------------------------------------------------------- */

/* The metrics table as columns, one allocation (block). */
typedef struct {
    double *f[6]; /* ppl, dppl, kld, top1, sparsity, bits */
    int32_t *wave, *rolled_back;
    int64_t *lora_values;
    double *seconds; /* (n, 8) */
    double *scaffold_tau;
    void *block;
} columns;

static const char *const fcol_names[6] = {"ppl", "dppl", "kld", "top1", "sparsity", "bits"};

static bb_status columns_make(const bb_wave_metrics *rows, int n, columns *c) {
    size_t m = (size_t)(n ? n : 1);
    char *b;
    BB_CALL(bb_malloc((void **)&b, m * (6 * 8 + 4 + 4 + 8 + 64 + 8), "metrics columns"));
    c->block = b;
    for (int k = 0; k < 6; k++) c->f[k] = (double *)(b + m * 8 * (size_t)k);
    c->seconds = (double *)(b + m * 48);
    c->lora_values = (int64_t *)(b + m * 112);
    c->wave = (int32_t *)(b + m * 120);
    c->rolled_back = (int32_t *)(b + m * 124);
    c->scaffold_tau = (double *)(b + m * 128);
    for (int i = 0; i < n; i++) {
        const bb_wave_metrics *r = &rows[i];
        const double v[6] = {r->ppl, r->dppl, r->kld, r->top1, r->sparsity, r->bits};
        for (int k = 0; k < 6; k++) c->f[k][i] = v[k];
        memcpy(c->seconds + 8 * (size_t)i, r->seconds, 8 * sizeof(double));
        c->lora_values[i] = r->lora_values;
        c->wave[i] = r->wave;
        c->rolled_back[i] = r->rolled_back;
        c->scaffold_tau[i] = r->scaffold_tau;
    }
    return BB_OK;
}

/* Group `name` with the columns of n rows; c NULL on ranks that do not write. */
static bb_status metrics_create(writes *w, hid_t loc, const char *name, int n, const columns *c) {
    int64_t d1 = n, d8[2] = {n, 8};
    hid_t g;
    BB_CALL(group(w, loc, name, &g));
    for (int k = 0; k < 6; k++) BB_CALL(dataset(w, g, fcol_names[k], BB_H5_F64, 1, &d1, c ? c->f[k] : NULL, 0));
    BB_CALL(dataset(w, g, "wave", BB_H5_I32, 1, &d1, c ? c->wave : NULL, 0));
    BB_CALL(dataset(w, g, "rolled_back", BB_H5_I32, 1, &d1, c ? c->rolled_back : NULL, 0));
    BB_CALL(dataset(w, g, "lora_values", BB_H5_I64, 1, &d1, c ? c->lora_values : NULL, 0));
    BB_CALL(dataset(w, g, "scaffold_tau", BB_H5_F64, 1, &d1, c ? c->scaffold_tau : NULL, 0));
    BB_CALL(dataset(w, g, "seconds", BB_H5_F64, 2, d8, c ? c->seconds : NULL, 0));
    return BB_OK;
}

bb_status bb_ckpt_write_metrics_part(hid_t loc, const char *name, const bb_wave_metrics *rows, int n, int fill) {
    columns c = {0};
    if (fill) BB_CALL(columns_make(rows, n, &c));
    writes w;
    bb_status st = writes_init(&w, 16);
    if (st == BB_OK) st = metrics_create(&w, loc, name, n, fill ? &c : NULL);
    if (st == BB_OK) st = writes_flush(&w);
    writes_close(&w);
    free(c.block);
    return st;
}

bb_status bb_ckpt_write_metrics(hid_t loc, const char *name, const bb_wave_metrics *rows, int n) {
    return bb_ckpt_write_metrics_part(loc, name, rows, n, 1);
}

/* ---- the crash-safe protocol --------------------------------------------------------- */

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

/* Rank 0's half after the file is closed: fsync, rename, marker. */
static bb_status finish(const char *tmp, const char *path, const char *done, const char *what) {
    BB_CALL(bb_file_sync(tmp));
    BB_CHECK(rename(tmp, path) == 0, BB_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    BB_CALL(sync_dir_of(path));
    struct stat sb;
    BB_CHECK(stat(path, &sb) == 0, BB_ERR_IO, "cannot stat %s: %s", path, strerror(errno));
    char text[512];
    int n = snprintf(text, sizeof text, "%s %d\n%s\nbytes %lld\n", BB_CKPT_MAGIC, BB_CKPT_VERSION, what,
                     (long long)sb.st_size);
    return bb_file_write_atomic(done, text, (size_t)n);
}

/* Collective over p: stale marker removed (rank 0), "<path>.tmp" created by
 * every rank, body, closed by every rank (MPI_File_close: everything written
 * is in the file), then rank 0 fsyncs, renames and writes the marker. */
static bb_status protocol(const char *path, const bb_ckpt_part *p, bb_ckpt_body_fn body, void *ud, const char *what) {
    char tmp[1200], done[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp", path) < (int)sizeof tmp, BB_ERR_ARG, "path too long: %s", path);
    BB_CALL(bb_ckpt_marker_path(path, done, sizeof done));
    bb_status st = BB_OK;
    if (p->rank == 0 && unlink(done) != 0 && errno != ENOENT)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot remove the stale marker %s: %s", done, strerror(errno));
    BB_CALL(bb_ckpt_part_agree(p, st));
    hid_t f = -1;
    /* a collective create fails alike on every rank: rank 0 tells */
    int q = quiet_unless_root(p);
    st = bb_h5_create(tmp, p->comm, &f);
    bb_error_set_quiet(q);
    st = bb_ckpt_part_agree(p, st);
    if (st == BB_OK) st = body(f, ud); /* the body agrees across ranks itself */
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
    st = bb_ckpt_part_agree(p, st);
    if (st == BB_OK && p->rank == 0) st = finish(tmp, path, done, what);
    if (st != BB_OK && p->rank == 0) unlink(tmp);
    st = bb_ckpt_part_agree(p, st);
    if (st != BB_OK) return bb_trace(st, __FILE__, __LINE__, "checkpoint write protocol");
    return BB_OK;
}

bb_status bb_ckpt_write_file(const char *path, bb_ckpt_body_fn body, void *ud, const char *what) {
    bb_ckpt_part p;
    BB_CALL(bb_ckpt_part_of(NULL, 0, &p));
    return protocol(path, &p, body, ud, what);
}

/* ---- the state -------------------------------------------------------------------------- */

/* What every rank needs to know of linear weight i for its attributes. */
typedef struct {
    int64_t i, kept, bits, lora_rank;
    uint8_t weight_sha[32], mask_sha[32];
} tensor_rec;

/* Rank 0's run-level values (counters, sizes of its datasets, meta strings). */
typedef struct {
    int64_t wave, n_layers, n_lin, losing, rollback_left, frozen, good_wave, rb_wave, n_metrics;
    int64_t n_yaml, n_target, hist_waves, n_records;
    uint64_t rng_counter;
    char config_sha256[65], model_sha256[65], model_path[1024];
} root_hdr;

typedef struct {
    const bb_state *s;
    const bb_ckpt_meta *meta; /* rank 0 */
    const bb_ckpt_part *p;
    const tensor_rec *tab;    /* (n_lin) on every rank */
    const root_hdr *h;
    const int32_t *bits;      /* (n_lin) from tab */
    const columns *metrics;   /* rank 0 */
    bb_ckpt_io io;
} state_job;

static bb_status check_held(const char *path, const bb_state *s, const bb_ckpt_part *p) {
    BB_CHECK(s->n_layers >= 0 && s->n_lin == s->n_layers * BB_LIN_COUNT && s->n_metrics >= 1 && s->wave >= 0,
             BB_ERR_ARG, "%s: state with %d layers, %d linear weights, %d metrics rows, wave %d is inconsistent", path,
             s->n_layers, s->n_lin, s->n_metrics, s->wave);
    for (int i = 0; i < s->n_lin; i++) {
        BB_CHECK(s->t[i], BB_ERR_ARG, "%s: linear weight %d has no tensor description in the state", path, i);
        if (!bb_ckpt_part_holds(p, i)) continue;
        BB_CHECK(s->w[i] && s->masks[i], BB_ERR_ARG, "%s: linear weight %d has no weights or mask in the state", path,
                 i);
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

/* Records k = first, first + step, ... of n (their .i set): counts, bits, rank and the two hashes. */
typedef struct {
    const bb_state *s;
    tensor_rec *recs;
    int n, first, step;
} record_job;

static void *fill_records(void *arg) {
    const record_job *j = arg;
    const bb_state *s = j->s;
    for (int k = j->first; k < j->n; k += j->step) {
        tensor_rec *r = &j->recs[k];
        int i = r->i;
        const bb_tensor *t = s->t[i];
        const bb_mask *m = s->masks[i];
        bb_tensor_hash h;
        r->kept = bb_mask_count(m);
        r->bits = s->bits[i];
        r->lora_rank = s->lora[i] ? s->lora[i]->rank : 0;
        bb_hash_f32(t->name, bb_tensor_rows(t), bb_tensor_cols(t), s->w[i], &h);
        memcpy(r->weight_sha, h.digest, 32);
        bb_hash_u64(t->name, m->rows, m->words_per_row, m->bits, &h);
        memcpy(r->mask_sha, h.digest, 32);
    }
    return NULL;
}

/* This rank's records, then every rank's in tab (n_lin), each weight exactly once. */
static bb_status gather_records(const bb_state *s, const bb_ckpt_part *p, tensor_rec *tab) {
    int n_mine = 0;
    for (int i = 0; i < s->n_lin; i++) n_mine += bb_ckpt_part_holds(p, i);
    tensor_rec *mine = NULL, *all = NULL;
    int *counts = NULL;
    bb_status st = bb_calloc((void **)&mine, (size_t)(n_mine ? n_mine : 1), sizeof *mine, "checkpoint records");
    for (int i = 0, k = 0; st == BB_OK && i < s->n_lin; i++)
        if (bb_ckpt_part_holds(p, i)) mine[k++].i = i;
    if (st == BB_OK) {
        /* the records over the rank's threads (bb_parallel_set_default): hashing is most of the work */
        record_job jobs[BB_PARALLEL_MAX];
        int nt = bb_parallel_threads(0, n_mine, 1);
        for (int t = 0; t < nt; t++) jobs[t] = (record_job){s, mine, n_mine, t, nt};
        bb_parallel_run(fill_records, jobs, sizeof jobs[0], nt);
    }
    if (st == BB_OK) st = bb_calloc((void **)&counts, (size_t)p->size * 2, sizeof *counts, "record counts");
    if (st == BB_OK) st = bb_calloc((void **)&all, (size_t)(s->n_lin ? s->n_lin : 1), sizeof *all, "records");
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) tab[i].i = -1;
    st = bb_ckpt_part_agree(p, st);
    if (st == BB_OK && p->size == 1) {
        memcpy(all, mine, sizeof *mine * (size_t)n_mine);
    } else if (st == BB_OK) {
        int my = n_mine * (int)sizeof *mine, *displs = counts + p->size, total = 0;
        int rc = MPI_Allgather(&my, 1, MPI_INT, counts, 1, MPI_INT, p->comm);
        for (int r = 0; rc == MPI_SUCCESS && r < p->size; r++) {
            displs[r] = total;
            total += counts[r];
        }
        if (rc == MPI_SUCCESS && total != s->n_lin * (int)sizeof *mine)
            st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                          "checkpoint: the ranks hold %d linear weights in all, the state has %d",
                          total / (int)sizeof *mine, s->n_lin);
        else if (rc == MPI_SUCCESS)
            rc = MPI_Allgatherv(mine, my, MPI_BYTE, all, counts, displs, MPI_BYTE, p->comm);
        if (rc != MPI_SUCCESS) st = bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allgatherv(checkpoint records)");
    }
    /* index order; every rank checks the same records */
    for (int k = 0; st == BB_OK && k < s->n_lin; k++) {
        int64_t i = all[k].i;
        BB_CHECK_GOTO(st, out, i >= 0 && i < s->n_lin && tab[i].i < 0, BB_ERR_ARG,
                      "checkpoint: linear weight %lld is held by two ranks or does not exist", (long long)i);
        tab[i] = all[k];
    }
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        BB_CHECK_GOTO(st, out, tab[i].i == i, BB_ERR_ARG, "checkpoint: linear weight %d is held by no rank", i);
out:
    free(mine);
    free(all);
    free(counts);
    return st;
}

static void root_fill(const bb_state *s, const bb_ckpt_meta *meta, root_hdr *h) {
    memset(h, 0, sizeof *h);
    *h = (root_hdr){.wave = s->wave, .n_layers = s->n_layers, .n_lin = s->n_lin, .losing = s->losing,
                    .rollback_left = s->rollback_left, .frozen = s->frozen, .good_wave = s->good_wave,
                    .rb_wave = s->rb_wave, .n_metrics = s->n_metrics, .rng_counter = s->rng_counter};
    h->n_yaml = meta->config_yaml ? (int64_t)strlen(meta->config_yaml) : 0;
    h->n_target = meta->layer_target && meta->n_layer_target > 0 ? meta->n_layer_target : 0;
    h->hist_waves = meta->tensor_hist && meta->hist_waves > 0 ? meta->hist_waves : 0;
    h->n_records = meta->records && meta->n_records > 0 ? meta->n_records : 0;
    snprintf(h->config_sha256, sizeof h->config_sha256, "%s", meta->config_sha256);
    snprintf(h->model_sha256, sizeof h->model_sha256, "%s", meta->model_sha256);
    snprintf(h->model_path, sizeof h->model_path, "%s", meta->model_path);
}

/* Pass 2 for one linear weight: group, attributes, datasets (filled by its holder). */
static bb_status tensor_create(writes *w, hid_t f, const state_job *j, int i) {
    const bb_state *s = j->s;
    const tensor_rec *r = &j->tab[i];
    const bb_tensor *t = s->t[i];
    int mine = bb_ckpt_part_holds(j->p, i);
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), words = (cols + 63) / 64;
    char gname[64], hex[65];
    bb_ckpt_group_name(i, gname, sizeof gname);
    hid_t g;
    BB_CALL(group(w, f, gname, &g));
    BB_CALL(bb_h5_attr_put_str(g, "name", t->name));
    BB_CALL(bb_h5_attr_put_i64(g, "rows", rows));
    BB_CALL(bb_h5_attr_put_i64(g, "cols", cols));
    BB_CALL(bb_h5_attr_put_i64(g, "words_per_row", words));
    BB_CALL(bb_h5_attr_put_i64(g, "kept", r->kept));
    BB_CALL(bb_h5_attr_put_i64(g, "bits", r->bits));
    BB_CALL(bb_h5_attr_put_i64(g, "lora_rank", r->lora_rank));
    bb_hash_hex(r->weight_sha, hex);
    BB_CALL(bb_h5_attr_put_str(g, "weight_sha256", hex));
    bb_hash_hex(r->mask_sha, hex);
    BB_CALL(bb_h5_attr_put_str(g, "mask_sha256", hex));
    int64_t dw[2] = {rows, cols}, dm[2] = {rows, words};
    BB_CALL(dataset(w, g, "weight", BB_H5_F32, 2, dw, mine ? s->w[i] : NULL, 1));
    BB_CALL(dataset(w, g, "mask", BB_H5_U64, 2, dm, mine ? s->masks[i]->bits : NULL, 1));
    if (r->lora_rank > 0) {
        const bb_lora *l = mine ? s->lora[i] : NULL;
        int64_t da[2] = {rows, r->lora_rank}, db[2] = {r->lora_rank, cols};
        BB_CALL(dataset(w, g, "lora_a", BB_H5_F32, 2, da, l ? l->a : NULL, 1));
        BB_CALL(dataset(w, g, "lora_b", BB_H5_F32, 2, db, l ? l->b : NULL, 1));
    }
    return BB_OK;
}

/* Pass 2 for everything: the same calls with the same values on every rank. */
static bb_status state_create(writes *w, hid_t f, const state_job *j) {
    const root_hdr *h = j->h;
    const bb_ckpt_meta *meta = j->p->rank == 0 ? j->meta : NULL;
    BB_CALL(bb_h5_attr_put_str(f, "magic", BB_CKPT_MAGIC));
    BB_CALL(bb_h5_attr_put_i64(f, "version", BB_CKPT_VERSION));
    BB_CALL(bb_h5_attr_put_i64(f, "wave", h->wave));
    BB_CALL(bb_h5_attr_put_i64(f, "n_layers", h->n_layers));
    BB_CALL(bb_h5_attr_put_i64(f, "n_lin", h->n_lin));
    BB_CALL(bb_h5_attr_put_i64(f, "losing", h->losing));
    BB_CALL(bb_h5_attr_put_i64(f, "rollback_left", h->rollback_left));
    BB_CALL(bb_h5_attr_put_i64(f, "frozen", h->frozen));
    BB_CALL(bb_h5_attr_put_u64(f, "rng_counter", h->rng_counter));
    BB_CALL(bb_h5_attr_put_i64(f, "good_wave", h->good_wave));
    BB_CALL(bb_h5_attr_put_i64(f, "rb_wave", h->rb_wave));
    if (h->n_target > 0)
        BB_CALL(dataset(w, f, "layer_target", BB_H5_F64, 1, &h->n_target, meta ? meta->layer_target : NULL, 0));
    if (h->hist_waves > 0) {
        int64_t d[2] = {h->hist_waves, h->n_lin * 3};
        BB_CALL(dataset(w, f, "tensor_hist", BB_H5_F32, 2, d, meta ? meta->tensor_hist : NULL, 0));
    }
    if (h->n_records > 0) BB_CALL(dataset(w, f, "records", BB_H5_U8, 1, &h->n_records, meta ? meta->records : NULL, 0));
    BB_CALL(bb_h5_attr_put_i64(f, "n_metrics", h->n_metrics));
    BB_CALL(bb_h5_attr_put_str(f, "config_sha256", h->config_sha256));
    BB_CALL(bb_h5_attr_put_str(f, "model_sha256", h->model_sha256));
    BB_CALL(bb_h5_attr_put_str(f, "model_path", h->model_path));
    BB_CALL(bb_h5_attr_put_str(f, "birdbone_version", BB_VERSION));
    BB_CALL(dataset(w, f, "config_yaml", BB_H5_U8, 1, &h->n_yaml,
                    meta ? (meta->config_yaml ? meta->config_yaml : "") : NULL, 0));
    BB_CALL(dataset(w, f, "bits", BB_H5_I32, 1, &h->n_lin, j->p->rank == 0 ? j->bits : NULL, 0));
    BB_CALL(metrics_create(w, f, "metrics", (int)h->n_metrics, j->p->rank == 0 ? j->metrics : NULL));
    for (int i = 0; i < j->s->n_lin; i++) BB_CALL(tensor_create(w, f, j, i));
    return BB_OK;
}

static bb_status state_body(hid_t f, void *ud) {
    state_job *j = ud;
    const bb_ckpt_part *p = j->p;
    writes w;
    /* root objects and metrics (< 40) plus a group and up to 4 datasets per weight */
    bb_status st = writes_init(&w, 64 + 5 * j->s->n_lin);
    st = bb_ckpt_part_agree(p, st);
    if (st != BB_OK) return st;
    /* identical on every rank: a failure is everyone's, rank 0 reports it */
    int q = quiet_unless_root(p);
    st = state_create(&w, f, j);
    bb_error_set_quiet(q);
    st = bb_ckpt_part_agree(p, st);
    if (st == BB_OK) st = bb_ckpt_part_agree(p, writes_flush(&w));
    j->io = w.io;
    writes_close(&w);
    return st;
}

bb_status bb_ckpt_write_dist(const char *path, const bb_state *s, const bb_ckpt_meta *meta, const bb_ckpt_group *g,
                             bb_ckpt_io *io) {
    if (io) memset(io, 0, sizeof *io);
    bb_ckpt_part p;
    memset(&p, 0, sizeof p);
    BB_CALL(bb_ckpt_part_of(g, s->n_lin, &p));
    bb_status cs = check_held(path, s, &p);
    if (cs == BB_OK && p.rank == 0 && !meta)
        cs = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "%s: rank 0 writes a checkpoint without its metadata", path);
    BB_CALL(bb_ckpt_part_agree(&p, cs));
    tensor_rec *tab = NULL;
    int32_t *bits = NULL;
    columns mc = {0};
    root_hdr h;
    bb_status st = bb_calloc((void **)&tab, (size_t)(s->n_lin ? s->n_lin : 1), sizeof *tab, "checkpoint records");
    if (st == BB_OK) st = bb_calloc((void **)&bits, (size_t)(s->n_lin ? s->n_lin : 1), sizeof *bits, "bits");
    if (st == BB_OK && p.rank == 0) {
        root_fill(s, meta, &h);
        st = columns_make(s->metrics, s->n_metrics, &mc);
    }
    st = bb_ckpt_part_agree(&p, st);
    if (st == BB_OK) st = gather_records(s, &p, tab);
    if (st == BB_OK && p.size > 1) {
        int rc = MPI_Bcast(&h, (int)sizeof h, MPI_BYTE, 0, p.comm);
        if (rc != MPI_SUCCESS) st = bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Bcast(checkpoint header)");
    }
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) bits[i] = (int32_t)tab[i].bits;
    state_job j = {.s = s, .meta = meta, .p = &p, .tab = tab, .h = &h, .bits = bits, .metrics = &mc};
    char what[64];
    snprintf(what, sizeof what, "wave %d", s->wave);
    if (st == BB_OK) st = protocol(path, &p, state_body, &j, what);
    free(tab);
    free(bits);
    free(mc.block);
    if (st == BB_OK && io) {
        *io = j.io;
        for (int i = 0; i < s->n_lin; i++) io->tensors += bb_ckpt_part_holds(&p, i);
    }
    return st;
}

bb_status bb_ckpt_write(const char *path, const bb_state *s, const bb_ckpt_meta *meta) {
    return bb_ckpt_write_dist(path, s, meta, NULL, NULL);
}
