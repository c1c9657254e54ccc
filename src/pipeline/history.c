/* history.c — DeltaHistory: record, apply forward/backward, save and load the change of one wave. */
#include "pipeline/history.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/parallel.h"
#include "io/hash.h"
#include "io/model.h"
#include "mpi/ckpt.h"
#include "mpi/dist.h"
#include "mpi/h5.h"

static int64_t words_of(int64_t n) { return (n + 63) / 64; }

static void tensor_free(bb_tensor_delta *t) {
    free(t->changed);
    free(t->w_old);
    free(t->w_new);
    free(t->mask_xor);
    bb_lora_destroy(&t->lora_old);
    bb_lora_destroy(&t->lora_new);
}

void bb_delta_destroy(bb_delta **d) {
    if (!d || !*d) return;
    if ((*d)->t)
        for (int i = 0; i < (*d)->n_lin; i++) tensor_free(&(*d)->t[i]);
    free((*d)->t);
    free((*d)->metrics[0]);
    free((*d)->metrics[1]);
    free(*d);
    *d = NULL;
}

/* ---- recording ----------------------------------------------------------------- */

static int lora_equal(const bb_lora *a, const bb_lora *b) {
    if (!a || !b) return !a && !b;
    return a->rank == b->rank && !memcmp(a->a, b->a, sizeof(float) * (size_t)(a->rows * a->rank)) &&
           !memcmp(a->b, b->b, sizeof(float) * (size_t)(a->cols * a->rank));
}

/* ||(w1 + l1) - (w0 + l0)||_F with factors merged into copies. */
static bb_status effective_frob(const float *w0, const bb_lora *l0, const float *w1, const bb_lora *l1, int64_t n,
                                double *out) {
    float *m0, *m1;
    BB_CALL(bb_malloc((void **)&m0, sizeof(float) * (size_t)n, "merged weights"));
    bb_status st = bb_malloc((void **)&m1, sizeof(float) * (size_t)n, "merged weights");
    if (st != BB_OK) {
        free(m0);
        return st;
    }
    memcpy(m0, w0, sizeof(float) * (size_t)n);
    memcpy(m1, w1, sizeof(float) * (size_t)n);
    if (l0) bb_lora_merge_ref(l0, m0);
    if (l1) bb_lora_merge_ref(l1, m1);
    double s = 0;
    for (int64_t k = 0; k < n; k++) {
        double e = (double)m1[k] - (double)m0[k];
        s += e * e;
    }
    *out = sqrt(s);
    free(m0);
    free(m1);
    return BB_OK;
}

static bb_status record_tensor(const bb_state *a, const bb_state *b, int i, bb_tensor_delta *t) {
    const bb_tensor *ta = a->t[i], *tb = b->t[i];
    int64_t rows = bb_tensor_rows(ta), cols = bb_tensor_cols(ta), n = rows * cols;
    BB_CHECK(!strcmp(ta->name, tb->name) && rows == bb_tensor_rows(tb) && cols == bb_tensor_cols(tb), BB_ERR_ARG,
             "linear weight %d is %s (%lld, %lld) in one state and %s (%lld, %lld) in the other: states of "
             "different models",
             i, ta->name, (long long)rows, (long long)cols, tb->name, (long long)bb_tensor_rows(tb),
             (long long)bb_tensor_cols(tb));
    snprintf(t->name, sizeof t->name, "%s", ta->name);
    t->rows = rows;
    t->cols = cols;
    const uint32_t *ua = (const uint32_t *)a->w[i], *ub = (const uint32_t *)b->w[i];
    double frob = 0, norm = 0;
    int64_t nc = 0;
    for (int64_t k = 0; k < n; k++) {
        nc += ua[k] != ub[k];
        double e = (double)b->w[i][k] - (double)a->w[i][k];
        frob += e * e;
        norm += (double)a->w[i][k] * (double)a->w[i][k];
    }
    t->frob = sqrt(frob);
    t->norm_old = sqrt(norm);
    t->n_changed = nc;
    if (nc) {
        BB_CALL(bb_calloc((void **)&t->changed, (size_t)words_of(n), sizeof(uint64_t), "delta bitmap"));
        BB_CALL(bb_malloc((void **)&t->w_old, sizeof(float) * (size_t)nc, "delta old values"));
        BB_CALL(bb_malloc((void **)&t->w_new, sizeof(float) * (size_t)nc, "delta new values"));
        int64_t j = 0;
        for (int64_t k = 0; k < n; k++)
            if (ua[k] != ub[k]) {
                t->changed[k >> 6] |= (uint64_t)1 << (k & 63);
                t->w_old[j] = a->w[i][k];
                t->w_new[j++] = b->w[i][k];
            }
    }
    const bb_mask *ma = a->masks[i], *mb = b->masks[i];
    BB_CHECK(ma->rows == rows && ma->cols == cols && mb->rows == rows && mb->cols == cols, BB_ERR_ARG,
             "the masks of %s do not have the weight's shape (%lld, %lld)", ta->name, (long long)rows,
             (long long)cols);
    int64_t nw = rows * ma->words_per_row, pruned = 0, regrown = 0;
    for (int64_t k = 0; k < nw; k++) {
        uint64_t x = ma->bits[k] ^ mb->bits[k];
        pruned += __builtin_popcountll(x & ma->bits[k]);
        regrown += __builtin_popcountll(x & mb->bits[k]);
    }
    t->pruned = pruned;
    t->regrown = regrown;
    if (pruned || regrown) {
        BB_CALL(bb_malloc((void **)&t->mask_xor, sizeof(uint64_t) * (size_t)nw, "delta mask change"));
        for (int64_t k = 0; k < nw; k++) t->mask_xor[k] = ma->bits[k] ^ mb->bits[k];
    }
    t->bits_old = a->bits[i];
    t->bits_new = b->bits[i];
    t->lora_changed = !lora_equal(a->lora[i], b->lora[i]);
    if (t->lora_changed) {
        if (a->lora[i]) BB_CALL(bb_lora_clone(a->lora[i], &t->lora_old));
        if (b->lora[i]) BB_CALL(bb_lora_clone(b->lora[i], &t->lora_new));
        BB_CALL(effective_frob(a->w[i], a->lora[i], b->w[i], b->lora[i], n, &t->frob_effective));
    } else {
        t->frob_effective = t->frob;
    }
    t->rank_old = t->lora_old ? t->lora_old->rank : 0;
    t->rank_new = t->lora_new ? t->lora_new->rank : 0;
    bb_tensor_hash h;
    bb_hash_f32(ta->name, rows, cols, a->w[i], &h);
    memcpy(t->hash_old, h.digest, 32);
    bb_hash_f32(ta->name, rows, cols, b->w[i], &h);
    memcpy(t->hash_new, h.digest, 32);
    return BB_OK;
}

static bb_status copy_metrics(const bb_wave_metrics *src, int n, bb_wave_metrics **dst) {
    BB_CALL(bb_calloc((void **)dst, (size_t)(n ? n : 1), sizeof **dst, "delta metrics"));
    memcpy(*dst, src, sizeof **dst * (size_t)n);
    return BB_OK;
}

/* Tensors i = first, first + step, ... of a record_all (each tensor's record is its own: any split gives the
 * same delta). */
typedef struct {
    const bb_state *a, *b;
    const char *held;
    bb_delta *d;
    int first, step;
    bb_status st;
} record_job;

static void *record_some(void *arg) {
    record_job *j = arg;
    for (int i = j->first; j->st == BB_OK && i < j->d->n_lin; i += j->step)
        if (!j->held || j->held[i]) j->st = record_tensor(j->a, j->b, i, &j->d->t[i]);
    return NULL;
}

/* held (n_lin) or NULL (all): the tensors recorded; the others keep zeros for now. */
static bb_status record_all(const bb_state *a, const bb_state *b, const char *held, bb_delta *d) {
    BB_CHECK(a->n_lin == b->n_lin && a->n_layers == b->n_layers, BB_ERR_ARG,
             "states with %d and %d layers: states of different models", a->n_layers, b->n_layers);
    d->wave_old = a->wave;
    d->wave_new = b->wave;
    d->n_layers = a->n_layers;
    d->n_lin = a->n_lin;
    d->losing[0] = a->losing;
    d->losing[1] = b->losing;
    d->rollback_left[0] = a->rollback_left;
    d->rollback_left[1] = b->rollback_left;
    d->frozen[0] = a->frozen;
    d->frozen[1] = b->frozen;
    d->rng_counter[0] = a->rng_counter;
    d->rng_counter[1] = b->rng_counter;
    d->n_metrics[0] = a->n_metrics;
    d->n_metrics[1] = b->n_metrics;
    BB_CALL(copy_metrics(a->metrics, a->n_metrics, &d->metrics[0]));
    BB_CALL(copy_metrics(b->metrics, b->n_metrics, &d->metrics[1]));
    BB_CALL(bb_calloc((void **)&d->t, (size_t)(d->n_lin ? d->n_lin : 1), sizeof *d->t, "delta tensors"));
    /* the tensors over the rank's threads: hashing and comparing gigabytes is most of a wave's history */
    int n = 0;
    for (int i = 0; i < d->n_lin; i++) n += !held || held[i];
    record_job jobs[BB_PARALLEL_MAX];
    int nt = bb_parallel_threads(0, n, 1); /* the rank's threads (bb_parallel_set_default) */
    for (int t = 0; t < nt; t++) jobs[t] = (record_job){a, b, held, d, t, nt, BB_OK};
    bb_parallel_run(record_some, jobs, sizeof jobs[0], nt);
    for (int t = 0; t < nt; t++) BB_CALL(jobs[t].st);
    return BB_OK;
}

bb_status bb_delta_record(const bb_state *a, const bb_state *b, bb_delta **out) {
    *out = NULL;
    bb_delta *d;
    BB_CALL(bb_calloc((void **)&d, 1, sizeof *d, "delta"));
    bb_status st = record_all(a, b, NULL, d);
    if (st != BB_OK) {
        bb_delta_destroy(&d);
        return bb_trace(st, __FILE__, __LINE__, "bb_delta_record");
    }
    *out = d;
    return BB_OK;
}

/* ---- applying ------------------------------------------------------------------ */

static bb_status check_hash(const bb_state *s, int i, const uint8_t want[32], bb_status code, const char *what,
                            int wave) {
    bb_tensor_hash h;
    bb_hash_f32(s->t[i]->name, bb_tensor_rows(s->t[i]), bb_tensor_cols(s->t[i]), s->w[i], &h);
    if (!memcmp(h.digest, want, 32)) return BB_OK;
    char got[65], exp[65];
    bb_hash_hex(h.digest, got);
    bb_hash_hex(want, exp);
    return bb_error(code, __FILE__, __LINE__, "%s: weights with SHA-256 %.16s..., the delta expects %.16s... %s %d", 
                    s->t[i]->name, got, exp, what, wave);
}

bb_status bb_delta_apply(const bb_delta *d, bb_state *s, int dir) {
    BB_CHECK(dir == 1 || dir == -1, BB_ERR_INTERNAL, "bb_delta_apply direction %d", dir);
    int from = dir > 0 ? 0 : 1, to = 1 - from;
    int wave_from = dir > 0 ? d->wave_old : d->wave_new, wave_to = dir > 0 ? d->wave_new : d->wave_old;
    BB_CHECK(s->n_lin == d->n_lin && s->wave == wave_from, BB_ERR_ARG,
             "the delta of waves %d -> %d applies to wave %d of a %d-layer state; this state is wave %d with %d layers",
             d->wave_old, d->wave_new, wave_from, d->n_layers, s->wave, s->n_layers);
    for (int i = 0; i < d->n_lin; i++) {
        const bb_tensor_delta *t = &d->t[i];
        if (!s->w[i]) continue; /* another rank's */
        BB_CHECK(!strcmp(t->name, s->t[i]->name) && t->rows == bb_tensor_rows(s->t[i]) &&
                     t->cols == bb_tensor_cols(s->t[i]),
                 BB_ERR_ARG, "the delta holds %s (%lld, %lld) where the state has %s: another model", t->name,
                 (long long)t->rows, (long long)t->cols, s->t[i]->name);
        BB_CALL(check_hash(s, i, dir > 0 ? t->hash_old : t->hash_new, BB_ERR_ARG, "as it should be in wave",
                           wave_from));
    }
    /* Prepare the new factors first: nothing below fails once the state starts changing. */
    bb_lora **fresh;
    BB_CALL(bb_calloc((void **)&fresh, (size_t)(d->n_lin ? d->n_lin : 1), sizeof *fresh, "delta factors"));
    bb_wave_metrics *metrics = NULL;
    bb_status st = copy_metrics(d->metrics[to], d->n_metrics[to], &metrics);
    for (int i = 0; st == BB_OK && i < d->n_lin; i++) {
        const bb_lora *l = dir > 0 ? d->t[i].lora_new : d->t[i].lora_old;
        if (s->w[i] && d->t[i].lora_changed && l) st = bb_lora_clone(l, &fresh[i]);
    }
    if (st != BB_OK) {
        for (int i = 0; i < d->n_lin; i++) bb_lora_destroy(&fresh[i]);
        free(fresh);
        free(metrics);
        return st;
    }
    for (int i = 0; i < d->n_lin; i++) {
        const bb_tensor_delta *t = &d->t[i];
        if (!s->w[i]) continue;
        const float *vals = dir > 0 ? t->w_new : t->w_old;
        int64_t n = t->rows * t->cols, j = 0;
        for (int64_t w = 0; t->n_changed && w < words_of(n); w++) {
            uint64_t bits = t->changed[w];
            while (bits) {
                int b = __builtin_ctzll(bits);
                s->w[i][w * 64 + b] = vals[j++];
                bits &= bits - 1;
            }
        }
        if (t->mask_xor) {
            bb_mask *m = s->masks[i];
            for (int64_t k = 0; k < m->rows * m->words_per_row; k++) m->bits[k] ^= t->mask_xor[k];
        }
        s->bits[i] = dir > 0 ? t->bits_new : t->bits_old;
        if (t->lora_changed) {
            bb_lora_destroy(&s->lora[i]);
            s->lora[i] = fresh[i];
        }
    }
    free(fresh);
    free(s->metrics);
    s->metrics = metrics;
    s->n_metrics = d->n_metrics[to];
    s->wave = wave_to;
    s->losing = d->losing[to];
    s->rollback_left = d->rollback_left[to];
    s->frozen = d->frozen[to];
    s->rng_counter = d->rng_counter[to];
    for (int i = 0; i < d->n_lin; i++)
        if (s->w[i])
            BB_CALL(check_hash(s, i, dir > 0 ? d->t[i].hash_new : d->t[i].hash_old, BB_ERR_FORMAT,
                           "after applying the delta: it is damaged; wave", wave_to));
    return BB_OK;
}

/* ---- delta.h5 ------------------------------------------------------------------ */

static bb_status put_hash(hid_t g, const char *name, const uint8_t d[32]) {
    char hex[65];
    bb_hash_hex(d, hex);
    return bb_h5_attr_put_str(g, name, hex);
}

static bb_status get_hash(hid_t g, const char *name, uint8_t d[32]) {
    char hex[80];
    BB_CALL(bb_h5_attr_get_str(g, name, hex, sizeof hex));
    int ok = strlen(hex) == 64;
    for (int k = 0; ok && k < 32; k++) {
        unsigned v;
        ok = sscanf(hex + 2 * k, "%2x", &v) == 1;
        d[k] = (uint8_t)v;
    }
    if (!ok) {
        char where[1600];
        bb_h5_where(g, NULL, where, sizeof where);
        return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__, "%s: attribute %s is not a hex SHA-256", where, name);
    }
    return BB_OK;
}

static bb_status put_lora(hid_t g, const char *prefix, const bb_tensor_delta *t, const bb_lora *l, int rank, int held,
                          bb_status *local) {
    if (!t->lora_changed || rank <= 0) return BB_OK;
    char na[32], nb[32];
    snprintf(na, sizeof na, "%s_a", prefix);
    snprintf(nb, sizeof nb, "%s_b", prefix);
    int64_t da[2] = {t->rows, rank}, db[2] = {rank, t->cols};
    BB_CALL(bb_h5_write_shared(g, na, BB_H5_F32, 2, da, held ? l->a : NULL, local));
    BB_CALL(bb_h5_write_shared(g, nb, BB_H5_F32, 2, db, held ? l->b : NULL, local));
    return BB_OK;
}

/* Tensor t's group: attributes from its scalars (every rank has them), the
 * datasets' values from the rank holding it (held). */
static bb_status write_tensor(hid_t g, const bb_tensor_delta *t, int held, bb_status *local) {
    BB_CALL(bb_h5_attr_put_str(g, "name", t->name));
    BB_CALL(bb_h5_attr_put_i64(g, "rows", t->rows));
    BB_CALL(bb_h5_attr_put_i64(g, "cols", t->cols));
    BB_CALL(bb_h5_attr_put_i64(g, "n_changed", t->n_changed));
    BB_CALL(bb_h5_attr_put_i64(g, "pruned", t->pruned));
    BB_CALL(bb_h5_attr_put_i64(g, "regrown", t->regrown));
    BB_CALL(bb_h5_attr_put_i64(g, "bits_old", t->bits_old));
    BB_CALL(bb_h5_attr_put_i64(g, "bits_new", t->bits_new));
    BB_CALL(bb_h5_attr_put_i64(g, "lora_changed", t->lora_changed));
    BB_CALL(bb_h5_attr_put_i64(g, "rank_old", t->rank_old));
    BB_CALL(bb_h5_attr_put_i64(g, "rank_new", t->rank_new));
    BB_CALL(bb_h5_attr_put_f64(g, "frobenius", t->frob));
    BB_CALL(bb_h5_attr_put_f64(g, "frobenius_effective", t->frob_effective));
    BB_CALL(bb_h5_attr_put_f64(g, "norm_old", t->norm_old));
    BB_CALL(put_hash(g, "sha256_old", t->hash_old));
    BB_CALL(put_hash(g, "sha256_new", t->hash_new));
    if (t->n_changed) {
        int64_t nw = words_of(t->rows * t->cols);
        BB_CALL(bb_h5_write_shared(g, "changed", BB_H5_U64, 1, &nw, held ? t->changed : NULL, local));
        BB_CALL(bb_h5_write_shared(g, "w_old", BB_H5_F32, 1, &t->n_changed, held ? t->w_old : NULL, local));
        BB_CALL(bb_h5_write_shared(g, "w_new", BB_H5_F32, 1, &t->n_changed, held ? t->w_new : NULL, local));
    }
    if (t->pruned || t->regrown) {
        int64_t dm[2] = {t->rows, words_of(t->cols)};
        BB_CALL(bb_h5_write_shared(g, "mask_xor", BB_H5_U64, 2, dm, held ? t->mask_xor : NULL, local));
    }
    BB_CALL(put_lora(g, "lora_old", t, t->lora_old, t->rank_old, held, local));
    BB_CALL(put_lora(g, "lora_new", t, t->lora_new, t->rank_new, held, local));
    return BB_OK;
}

/* The whole file; held (n_lin) or NULL (all), root: this rank writes the run-level datasets. */
static bb_status write_all(hid_t f, const bb_delta *d, const char *held, int root, bb_status *local) {
    BB_CALL(bb_h5_attr_put_str(f, "magic", BB_DELTA_MAGIC));
    BB_CALL(bb_h5_attr_put_i64(f, "version", BB_DELTA_VERSION));
    BB_CALL(bb_h5_attr_put_i64(f, "wave_old", d->wave_old));
    BB_CALL(bb_h5_attr_put_i64(f, "wave_new", d->wave_new));
    BB_CALL(bb_h5_attr_put_i64(f, "n_layers", d->n_layers));
    BB_CALL(bb_h5_attr_put_i64(f, "n_lin", d->n_lin));
    const char *sfx[2] = {"old", "new"};
    for (int k = 0; k < 2; k++) {
        char n[40];
        snprintf(n, sizeof n, "losing_%s", sfx[k]);
        BB_CALL(bb_h5_attr_put_i64(f, n, d->losing[k]));
        snprintf(n, sizeof n, "rollback_left_%s", sfx[k]);
        BB_CALL(bb_h5_attr_put_i64(f, n, d->rollback_left[k]));
        snprintf(n, sizeof n, "frozen_%s", sfx[k]);
        BB_CALL(bb_h5_attr_put_i64(f, n, d->frozen[k]));
        snprintf(n, sizeof n, "rng_counter_%s", sfx[k]);
        BB_CALL(bb_h5_attr_put_u64(f, n, d->rng_counter[k]));
        snprintf(n, sizeof n, "n_metrics_%s", sfx[k]);
        BB_CALL(bb_h5_attr_put_i64(f, n, d->n_metrics[k]));
        snprintf(n, sizeof n, "metrics_%s", sfx[k]);
        BB_CALL(bb_ckpt_write_metrics_part(f, n, d->metrics[k], d->n_metrics[k], root));
    }
    for (int i = 0; i < d->n_lin; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "layer_%03d/%s", i / BB_LIN_COUNT,
                 bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)));
        hid_t g;
        BB_CALL(bb_h5_group_create(f, gname, &g));
        bb_status st = write_tensor(g, &d->t[i], !held || held[i], local);
        bb_h5_close_id(g);
        BB_CALL(st);
    }
    return BB_OK;
}

bb_status bb_delta_write(const char *path, const bb_delta *d) {
    char tmp[1200];
    BB_CHECK(snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) < (int)sizeof tmp, BB_ERR_ARG,
             "path too long: %s", path);
    hid_t f = -1;
    bb_status st = bb_h5_create(tmp, MPI_COMM_SELF, &f);
    bb_status local = BB_OK;
    if (st == BB_OK) st = write_all(f, d, NULL, 1, &local);
    if (st == BB_OK) st = local;
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
    if (st == BB_OK) st = bb_file_sync(tmp);
    if (st == BB_OK && rename(tmp, path) != 0)
        st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != BB_OK) {
        unlink(tmp);
        return bb_trace(st, __FILE__, __LINE__, "bb_delta_write");
    }
    return BB_OK;
}

static bb_status get_lora(hid_t g, const char *prefix, int64_t rows, int64_t cols, int64_t rank, bb_lora **out) {
    if (rank <= 0) return BB_OK;
    char na[32], nb[32];
    snprintf(na, sizeof na, "%s_a", prefix);
    snprintf(nb, sizeof nb, "%s_b", prefix);
    int64_t da[2] = {rows, rank}, db[2] = {rank, cols};
    BB_CALL(bb_lora_create(rows, cols, (int)rank, out));
    BB_CALL(bb_h5_read(g, na, BB_H5_F32, 2, da, (*out)->a));
    BB_CALL(bb_h5_read(g, nb, BB_H5_F32, 2, db, (*out)->b));
    return BB_OK;
}

static bb_status read_tensor(const char *path, hid_t g, bb_tensor_delta *t) {
    int64_t v[11];
    const char *names[11] = {"rows",     "cols",     "n_changed",    "pruned",   "regrown", "bits_old",
                             "bits_new", "lora_changed", "rank_old", "rank_new", NULL};
    for (int k = 0; names[k]; k++) BB_CALL(bb_h5_attr_get_i64(g, names[k], &v[k]));
    BB_CALL(bb_h5_attr_get_str(g, "name", t->name, sizeof t->name));
    int64_t rows = v[0], cols = v[1];
    BB_CHECK(rows >= 1 && cols >= 1 && rows < ((int64_t)1 << 31) && cols < ((int64_t)1 << 31) && v[2] >= 0 &&
                 v[2] <= rows * cols && v[8] >= 0 && v[9] >= 0,
             BB_ERR_FORMAT, "%s: %s has inconsistent sizes (shape (%lld, %lld), %lld changed)", path, t->name,
             (long long)rows, (long long)cols, (long long)v[2]);
    t->rows = rows;
    t->cols = cols;
    t->n_changed = v[2];
    t->pruned = v[3];
    t->regrown = v[4];
    t->bits_old = (int)v[5];
    t->bits_new = (int)v[6];
    t->lora_changed = (int)v[7];
    t->rank_old = (int)v[8];
    t->rank_new = (int)v[9];
    BB_CALL(bb_h5_attr_get_f64(g, "frobenius", &t->frob));
    BB_CALL(bb_h5_attr_get_f64(g, "frobenius_effective", &t->frob_effective));
    BB_CALL(bb_h5_attr_get_f64(g, "norm_old", &t->norm_old));
    BB_CALL(get_hash(g, "sha256_old", t->hash_old));
    BB_CALL(get_hash(g, "sha256_new", t->hash_new));
    if (t->n_changed) {
        int64_t nw = words_of(rows * cols), count = 0;
        BB_CALL(bb_malloc((void **)&t->changed, sizeof(uint64_t) * (size_t)nw, "delta bitmap"));
        BB_CALL(bb_malloc((void **)&t->w_old, sizeof(float) * (size_t)t->n_changed, "delta old values"));
        BB_CALL(bb_malloc((void **)&t->w_new, sizeof(float) * (size_t)t->n_changed, "delta new values"));
        BB_CALL(bb_h5_read(g, "changed", BB_H5_U64, 1, &nw, t->changed));
        BB_CALL(bb_h5_read(g, "w_old", BB_H5_F32, 1, &t->n_changed, t->w_old));
        BB_CALL(bb_h5_read(g, "w_new", BB_H5_F32, 1, &t->n_changed, t->w_new));
        for (int64_t w = 0; w < nw; w++) count += __builtin_popcountll(t->changed[w]);
        int tail = (int)((rows * cols) % 64);
        BB_CHECK(count == t->n_changed && (!tail || !(t->changed[nw - 1] >> tail)), BB_ERR_FORMAT,
                 "%s: %s: the change bitmap has %lld bits set (or bits past the end), n_changed says %lld", path,
                 t->name, (long long)count, (long long)t->n_changed);
    }
    if (t->pruned || t->regrown) {
        int64_t dm[2] = {rows, words_of(cols)};
        BB_CALL(bb_malloc((void **)&t->mask_xor, sizeof(uint64_t) * (size_t)(dm[0] * dm[1]), "delta mask change"));
        BB_CALL(bb_h5_read(g, "mask_xor", BB_H5_U64, 2, dm, t->mask_xor));
    }
    if (t->lora_changed) {
        BB_CALL(get_lora(g, "lora_old", rows, cols, v[8], &t->lora_old));
        BB_CALL(get_lora(g, "lora_new", rows, cols, v[9], &t->lora_new));
    }
    return BB_OK;
}

static bb_status read_all(const char *path, hid_t f, bb_delta *d) {
    char magic[32] = "";
    int q = bb_error_set_quiet(1);
    bb_status st = bb_h5_attr_get_str(f, "magic", magic, sizeof magic);
    bb_error_set_quiet(q);
    BB_CHECK(st == BB_OK && !strcmp(magic, BB_DELTA_MAGIC), BB_ERR_FORMAT,
             "%s is not a birdbone delta (magic \"%s\", expected \"%s\")", path, magic, BB_DELTA_MAGIC);
    int64_t v[4];
    const char *names[4] = {"version", "wave_old", "wave_new", "n_layers"};
    for (int k = 0; k < 4; k++) BB_CALL(bb_h5_attr_get_i64(f, names[k], &v[k]));
    BB_CHECK(v[0] == BB_DELTA_VERSION, BB_ERR_FORMAT, "%s: delta format version %lld, this build reads version %d",
             path, (long long)v[0], BB_DELTA_VERSION);
    BB_CHECK(v[3] >= 0 && v[3] < 100000, BB_ERR_FORMAT, "%s: %lld layers", path, (long long)v[3]);
    d->wave_old = (int)v[1];
    d->wave_new = (int)v[2];
    d->n_layers = (int)v[3];
    d->n_lin = d->n_layers * BB_LIN_COUNT;
    const char *sfx[2] = {"old", "new"};
    for (int k = 0; k < 2; k++) {
        char n[40];
        int64_t x;
        snprintf(n, sizeof n, "losing_%s", sfx[k]);
        BB_CALL(bb_h5_attr_get_i64(f, n, &x));
        d->losing[k] = (int)x;
        snprintf(n, sizeof n, "rollback_left_%s", sfx[k]);
        BB_CALL(bb_h5_attr_get_i64(f, n, &x));
        d->rollback_left[k] = (int)x;
        snprintf(n, sizeof n, "frozen_%s", sfx[k]);
        BB_CALL(bb_h5_attr_get_i64(f, n, &x));
        d->frozen[k] = (int)x;
        snprintf(n, sizeof n, "rng_counter_%s", sfx[k]);
        BB_CALL(bb_h5_attr_get_u64(f, n, &d->rng_counter[k]));
        snprintf(n, sizeof n, "n_metrics_%s", sfx[k]);
        BB_CALL(bb_h5_attr_get_i64(f, n, &x));
        BB_CHECK(x >= 1 && x < 1000000, BB_ERR_FORMAT, "%s: %s = %lld", path, n, (long long)x);
        d->n_metrics[k] = (int)x;
        BB_CALL(bb_calloc((void **)&d->metrics[k], (size_t)x, sizeof *d->metrics[k], "delta metrics"));
        snprintf(n, sizeof n, "metrics_%s", sfx[k]);
        BB_CALL(bb_ckpt_read_metrics(f, n, d->n_metrics[k], d->metrics[k]));
    }
    BB_CALL(bb_calloc((void **)&d->t, (size_t)(d->n_lin ? d->n_lin : 1), sizeof *d->t, "delta tensors"));
    for (int i = 0; i < d->n_lin; i++) {
        char gname[64];
        snprintf(gname, sizeof gname, "layer_%03d/%s", i / BB_LIN_COUNT,
                 bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)));
        hid_t g;
        BB_CALL(bb_h5_group_open(f, gname, &g));
        st = read_tensor(path, g, &d->t[i]);
        bb_h5_close_id(g);
        BB_CALL(st);
    }
    return BB_OK;
}

bb_status bb_delta_read(const char *path, bb_delta **out) {
    *out = NULL;
    hid_t f;
    BB_CALL(bb_h5_open(path, MPI_COMM_SELF, &f));
    bb_delta *d = NULL;
    bb_status st = bb_calloc((void **)&d, 1, sizeof *d, "delta");
    if (st == BB_OK) st = read_all(path, f, d);
    bb_h5_close_id(f);
    if (st != BB_OK) {
        bb_delta_destroy(&d);
        return bb_trace(st, __FILE__, __LINE__, "bb_delta_read");
    }
    *out = d;
    return BB_OK;
}

/* ---- diff.json ----------------------------------------------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

/* JSON has no NaN or Infinity: null. */
static void sb_num(sbuf *b, double x) {
    if (isfinite(x))
        sb_printf(b, "%.17g", x);
    else
        sb_printf(b, "null");
}

bb_status bb_delta_json(const bb_delta *d, char **out) {
    *out = NULL;
    sbuf b = {0};
    int64_t changed = 0, pruned = 0, regrown = 0, bits_changed = 0, rank_added = 0;
    double frob2 = 0, eff2 = 0;
    for (int i = 0; i < d->n_lin; i++) {
        const bb_tensor_delta *t = &d->t[i];
        changed += t->n_changed;
        pruned += t->pruned;
        regrown += t->regrown;
        bits_changed += t->bits_old != t->bits_new;
        rank_added += t->rank_new - t->rank_old;
        frob2 += t->frob * t->frob;
        eff2 += t->frob_effective * t->frob_effective;
    }
    sb_printf(&b, "{\n  \"format\": \"birdbone-diff\",\n  \"version\": 1,\n  \"wave_old\": %d,\n  \"wave_new\": %d,\n",
              d->wave_old, d->wave_new);
    sb_printf(&b,
              "  \"totals\": {\"weights_changed\": %lld, \"removed\": %lld, \"regrown\": %lld, "
              "\"tensors_bits_changed\": %lld, \"rank_added\": %lld, \"frobenius\": ",
              (long long)changed, (long long)pruned, (long long)regrown, (long long)bits_changed,
              (long long)rank_added);
    sb_num(&b, sqrt(frob2));
    sb_printf(&b, ", \"frobenius_effective\": ");
    sb_num(&b, sqrt(eff2));
    sb_printf(&b, "},\n  \"tensors\": [\n");
    for (int i = 0; i < d->n_lin; i++) {
        const bb_tensor_delta *t = &d->t[i];
        char h0[65], h1[65];
        bb_hash_hex(t->hash_old, h0);
        bb_hash_hex(t->hash_new, h1);
        int r0 = t->rank_old, r1 = t->rank_new;
        sb_printf(&b,
                  "    {\"name\": \"%s\", \"shape\": [%lld, %lld], \"weights_changed\": %lld, \"removed\": %lld, "
                  "\"regrown\": %lld, \"bits_old\": %d, \"bits_new\": %d, \"lora_changed\": %s, \"rank_added\": %d, "
                  "\"frobenius\": ",
                  t->name, (long long)t->rows, (long long)t->cols, (long long)t->n_changed, (long long)t->pruned,
                  (long long)t->regrown, t->bits_old, t->bits_new, t->lora_changed ? "true" : "false",
                  t->lora_changed ? r1 - r0 : 0);
        sb_num(&b, t->frob);
        sb_printf(&b, ", \"relative_frobenius\": ");
        sb_num(&b, t->norm_old > 0 ? t->frob / t->norm_old : (t->frob > 0 ? INFINITY : 0));
        sb_printf(&b, ", \"frobenius_effective\": ");
        sb_num(&b, t->frob_effective);
        sb_printf(&b, ", \"sha256_old\": \"%s\", \"sha256_new\": \"%s\"}%s\n", h0, h1, i + 1 < d->n_lin ? "," : "");
    }
    sb_printf(&b, "  ]\n}\n");
    if (b.oom) {
        free(b.s);
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: the diff summary");
    }
    *out = b.s;
    return BB_OK;
}

bb_status bb_delta_write_json(const char *path, const bb_delta *d) {
    char *text;
    BB_CALL(bb_delta_json(d, &text));
    bb_status st = bb_file_write_atomic(path, text, strlen(text));
    free(text);
    BB_CALL(st);
    return BB_OK;
}

/* ---- the run directory --------------------------------------------------------- */

bb_status bb_history_dir(const char *run_dir, int wave, char *buf, size_t n) {
    BB_CHECK(snprintf(buf, n, "%s/diffs/%04d", run_dir, wave) < (int)n, BB_ERR_ARG, "run directory path too long: %s",
             run_dir);
    return BB_OK;
}

bb_status bb_history_record(const char *run_dir, const bb_state *a, const bb_state *b) {
    char dir[1200], p[1300];
    BB_CALL(bb_history_dir(run_dir, b->wave, dir, sizeof dir));
    BB_CALL(bb_mkdir_p(dir));
    bb_delta *d;
    BB_CALL(bb_delta_record(a, b, &d));
    snprintf(p, sizeof p, "%s/delta.h5", dir);
    bb_status st = bb_delta_write(p, d);
    snprintf(p, sizeof p, "%s/diff.json", dir);
    if (st == BB_OK) st = bb_delta_write_json(p, d);
    bb_delta_destroy(&d);
    BB_CALL(st);
    return BB_OK;
}

/* ---- the record written by the ranks that hold the weights ----------------------- */

/* One tensor's scalars: what every rank needs for its group's attributes and
 * for the datasets it creates. */
typedef struct {
    int64_t i, rows, cols, n_changed, pruned, regrown, bits_old, bits_new, lora_changed, rank_old, rank_new;
    double frob, frob_effective, norm_old;
    uint8_t hash_old[32], hash_new[32];
    char name[BB_TENSOR_NAME_MAX];
} delta_hdr;

static void hdr_from(const bb_tensor_delta *t, int i, delta_hdr *h) {
    memset(h, 0, sizeof *h);
    h->i = i;
    h->rows = t->rows, h->cols = t->cols, h->n_changed = t->n_changed, h->pruned = t->pruned;
    h->regrown = t->regrown, h->bits_old = t->bits_old, h->bits_new = t->bits_new;
    h->lora_changed = t->lora_changed, h->rank_old = t->rank_old, h->rank_new = t->rank_new;
    h->frob = t->frob, h->frob_effective = t->frob_effective, h->norm_old = t->norm_old;
    memcpy(h->hash_old, t->hash_old, 32);
    memcpy(h->hash_new, t->hash_new, 32);
    memcpy(h->name, t->name, sizeof h->name);
}

static void hdr_to(const delta_hdr *h, bb_tensor_delta *t) {
    t->rows = h->rows, t->cols = h->cols, t->n_changed = h->n_changed, t->pruned = h->pruned;
    t->regrown = h->regrown, t->bits_old = (int)h->bits_old, t->bits_new = (int)h->bits_new;
    t->lora_changed = (int)h->lora_changed, t->rank_old = (int)h->rank_old, t->rank_new = (int)h->rank_new;
    t->frob = h->frob, t->frob_effective = h->frob_effective, t->norm_old = h->norm_old;
    memcpy(t->hash_old, h->hash_old, 32);
    memcpy(t->hash_new, h->hash_new, 32);
    memcpy(t->name, h->name, sizeof t->name);
}

/* Collective over comm: BB_OK everywhere only if local is BB_OK everywhere,
 * else the lowest failing rank's status (only that rank reported it). */
static bb_status agree(MPI_Comm comm, int rank, int size, bb_status local) {
    if (size == 1) return local;
    int mine = local != BB_OK ? rank : size, first = size;
    BB_MPI_CALL(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm));
    if (first == size) return BB_OK;
    int code = (int)local;
    BB_MPI_CALL(MPI_Bcast(&code, 1, MPI_INT, first, comm));
    return (bb_status)code;
}

/* Every rank gets the scalars of every tensor (each from its holder). Collective. */
static bb_status share_headers(MPI_Comm comm, int rank, int size, const char *held, bb_delta *d) {
    if (size == 1) return BB_OK;
    int n = 0;
    for (int i = 0; i < d->n_lin; i++) n += held[i] != 0;
    delta_hdr *mine = NULL, *all = NULL;
    int *counts = NULL, *displs = NULL;
    bb_status st = bb_calloc((void **)&mine, (size_t)(n ? n : 1), sizeof *mine, "delta headers");
    if (st == BB_OK) st = bb_calloc((void **)&all, (size_t)(d->n_lin ? d->n_lin : 1), sizeof *all, "delta headers");
    if (st == BB_OK) st = bb_calloc((void **)&counts, (size_t)size, sizeof *counts, "delta header counts");
    if (st == BB_OK) st = bb_calloc((void **)&displs, (size_t)size, sizeof *displs, "delta header offsets");
    st = agree(comm, rank, size, st);
    int bytes = n * (int)sizeof(delta_hdr), rc = MPI_SUCCESS;
    if (st == BB_OK) {
        for (int i = 0, j = 0; i < d->n_lin; i++)
            if (held[i]) hdr_from(&d->t[i], i, &mine[j++]);
        rc = MPI_Allgather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, comm);
    }
    int total = 0;
    for (int q = 0; st == BB_OK && rc == MPI_SUCCESS && q < size; q++) {
        displs[q] = total;
        total += counts[q];
    }
    if (st == BB_OK && rc == MPI_SUCCESS && total != d->n_lin * (int)sizeof(delta_hdr))
        st = bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__, "delta: the ranks hold %d tensor records of %d",
                      total / (int)sizeof(delta_hdr), d->n_lin);
    if (st == BB_OK && rc == MPI_SUCCESS)
        rc = MPI_Allgatherv(mine, bytes, MPI_BYTE, all, counts, displs, MPI_BYTE, comm);
    if (st == BB_OK && rc != MPI_SUCCESS) st = bb_mpi_error(rc, __FILE__, __LINE__, "MPI_Allgatherv(delta headers)");
    for (int k = 0; st == BB_OK && k < d->n_lin; k++) {
        int i = (int)all[k].i;
        if (i < 0 || i >= d->n_lin)
            st = bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__, "delta: a tensor record names tensor %d", i);
        else if (!held[i])
            hdr_to(&all[k], &d->t[i]);
    }
    free(mine);
    free(all);
    free(counts);
    free(displs);
    return st;
}

bb_status bb_history_record_dist(const char *run_dir, const bb_state *a, const bb_state *b, MPI_Comm comm,
                                 const int *owner) {
    int rank = 0, size = 1;
    if (comm == MPI_COMM_NULL) comm = MPI_COMM_SELF;
    BB_MPI_CALL(MPI_Comm_rank(comm, &rank));
    BB_MPI_CALL(MPI_Comm_size(comm, &size));
    char dir[1200], path[1300], tmp[1320];
    BB_CALL(bb_history_dir(run_dir, b->wave, dir, sizeof dir));
    snprintf(path, sizeof path, "%s/delta.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    bb_status st = rank == 0 ? bb_mkdir_p(dir) : BB_OK;
    BB_CALL(agree(comm, rank, size, st));
    char *held = NULL;
    bb_delta *d = NULL;
    st = bb_calloc((void **)&held, (size_t)(a->n_lin ? a->n_lin : 1), 1, "held tensors");
    for (int i = 0; st == BB_OK && i < a->n_lin; i++) held[i] = (owner ? owner[i] : 0) == rank;
    if (st == BB_OK) st = bb_calloc((void **)&d, 1, sizeof *d, "delta");
    if (st == BB_OK) st = record_all(a, b, held, d);
    st = agree(comm, rank, size, st);
    if (st == BB_OK) st = agree(comm, rank, size, share_headers(comm, rank, size, held, d));
    hid_t f = -1;
    if (st == BB_OK) {
        /* a collective create fails alike on every rank: rank 0 tells */
        int q = bb_error_set_quiet(0);
        bb_error_set_quiet(q || rank != 0);
        st = bb_h5_create(tmp, comm, &f);
        bb_error_set_quiet(q);
        st = agree(comm, rank, size, st);
    }
    bb_status local = BB_OK;
    if (st == BB_OK) st = write_all(f, d, held, rank == 0, &local);
    if (f >= 0) {
        bb_status cs = bb_h5_close(&f);
        if (st == BB_OK) st = cs;
    }
    if (st == BB_OK) st = local;
    st = agree(comm, rank, size, st);
    if (rank == 0) {
        if (st == BB_OK) st = bb_file_sync(tmp);
        if (st == BB_OK && rename(tmp, path) != 0)
            st = bb_error(BB_ERR_IO, __FILE__, __LINE__, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (st != BB_OK) unlink(tmp);
        snprintf(path, sizeof path, "%s/diff.json", dir);
        if (st == BB_OK) st = bb_delta_write_json(path, d); /* from the scalars alone */
    }
    st = agree(comm, rank, size, st);
    bb_delta_destroy(&d);
    free(held);
    if (st != BB_OK) return bb_trace(st, __FILE__, __LINE__, "bb_history_record_dist");
    return BB_OK;
}

bb_status bb_history_goto(const char *run_dir, bb_state *s, int to) {
    BB_CHECK(to >= 0, BB_ERR_ARG, "wave %d: waves are counted from 0 (the dense model)", to);
    while (s->wave != to) {
        int back = to < s->wave;
        int k = back ? s->wave : s->wave + 1; /* delta k moves wave k-1 <-> k */
        char dir[1200], p[1300];
        BB_CALL(bb_history_dir(run_dir, k, dir, sizeof dir));
        snprintf(p, sizeof p, "%s/delta.h5", dir);
        BB_CHECK(bb_path_exists(p), BB_ERR_IO,
                 "%s is missing: the history of %s cannot go from wave %d to wave %d without the delta of wave %d", p,
                 run_dir, s->wave, to, k);
        bb_delta *d;
        BB_CALL(bb_delta_read(p, &d));
        bb_status st = bb_delta_apply(d, s, back ? -1 : 1);
        bb_delta_destroy(&d);
        BB_CALL(st);
    }
    return BB_OK;
}
