/* waves.c — the bird-bone loop (seed §6): stages 2–5 wave by wave, then the
 * evaluation, the stop-loss and the wave's files.
 *
 * Wave k = 1, 2, ...:
 *   decay          prune <= prune.per_wave of the remaining weights (decay.c);
 *                  during a rollback, restore 1/N_rb of what was pruned since
 *                  the last good wave instead
 *   heal, reinforce, redistribute
 *                  the per-wave stages of the stage table that are built
 *   evaluate       PPL, KLD and top-1 agreement on the evaluation stream
 *   stop-loss      dPPL > stoploss.max_dppl for stoploss.patience waves in a
 *                  row starts a rollback to the last good wave over
 *                  stoploss.rollback_waves waves, and stops pruning
 *   files          wave_<k>.h5 (masks, usage maps), the DeltaHistory record and
 *                  metrics.json from rank 0; the wave's checkpoint from every
 *                  rank (its own layers, parallel HDF5)
 * The loop ends after waves.count waves, or earlier when nothing is left to
 * prune and no rollback is running; a rollback that starts near the end runs
 * to completion even past waves.count (the model must not be left half rolled
 * back). A wave is "good" when its dPPL is within the limit; the dense model
 * (wave 0) is good by definition.
 *
 * Every rank works on the layers it owns (the sharding plan); the global
 * decisions go through the run's communicator (r->comm). Rank 0 also holds a
 * copy of every weight, gathered after each wave, for the files it writes
 * alone (docs/distribution.md). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/scaffold.h"
#include "core/events.h"
#include "core/file.h"
#include "core/log.h"
#include "io/hash.h"
#include "model/eval.h"
#include "mpi/ckpt.h"
#include "pipeline/history.h"
#include "pipeline/stages.h"

typedef struct {
    bb_run *r;
    const bb_config *c;
    bb_state *s;
    bb_tokens eval;
    bb_logprobs ref;
    /* the last good wave's weights, masks, bits and factors: the rollback's target */
    float **good_w;
    bb_mask **good_m;
    int *good_bits;
    bb_lora **good_lora;
    /* the state before the current wave, for its DeltaHistory record */
    bb_state prev;
    float **prev_w;
    /* what every checkpoint carries */
    bb_ckpt_meta meta;
    char *yaml;
    /* the state when the rollback started */
    bb_mask **rb_m;
    int *rb_bits;
    int rb_steps; /* stoploss.rollback_waves, fixed when the rollback started */
    float *scratch;
    int *owner;   /* (n_lin) the rank holding each linear weight: who writes and reads it in a checkpoint */
    bb_scaffold **sc; /* (n_lin) scaffold mode: the top waves.count singular triplets of each owned weight */
} wave_loop;

static volatile sig_atomic_t stop_signal;

/* SIGUSR1 (Slurm's warning before the time limit): finish the wave, write its
 * files, stop. SIGTERM (preemption, scancel; SIGKILL follows after KillWait,
 * 30 s by default): stop at once. Every file is written to a temporary name
 * and renamed, and a checkpoint counts only with its DONE marker, so leaving
 * mid-wave loses that wave's work and nothing else. */
static void on_signal(int sig) {
    if (sig == SIGTERM) {
        static const char msg[] = "birdbone: SIGTERM: stopping now; continue with birdbone compress --resume RUN_DIR "
                                  "(from the last complete wave)\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(75);
    }
    stop_signal = sig;
}

void bb_run_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int64_t numel(const bb_tensor *t) { return bb_tensor_rows(t) * bb_tensor_cols(t); }

/* ---- state ---------------------------------------------------------------- */

static bb_status state_init(bb_run *r) {
    bb_state *s = &r->state;
    if (s->n_lin) return BB_OK;
    bb_weights *w;
    BB_CALL(bb_run_weights(r, &w));
    BB_CALL(bb_run_masks(r));
    s->n_layers = r->model->cfg.n_layers;
    s->n_lin = s->n_layers * BB_LIN_COUNT;
    BB_CALL(bb_calloc((void **)&s->w, (size_t)s->n_lin, sizeof *s->w, "state weights"));
    BB_CALL(bb_calloc((void **)&s->t, (size_t)s->n_lin, sizeof *s->t, "state tensors"));
    BB_CALL(bb_calloc((void **)&s->lora, (size_t)s->n_lin, sizeof *s->lora, "state factors"));
    BB_CALL(bb_calloc((void **)&s->bits, (size_t)s->n_lin, sizeof *s->bits, "state bits"));
    BB_CALL(bb_calloc((void **)&r->changed, (size_t)s->n_lin, 1, "changed weights"));
    /* every rank holds working copies of its own blocks' weights only (NULL for the others) */
    for (int i = 0; i < s->n_lin; i++) {
        s->w[i] = w ? bb_weights_linear(w, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT)) : NULL;
        s->t[i] = bb_layer_linear(&r->model->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
    }
    s->masks = r->masks;
    return BB_OK;
}

void bb_state_free(bb_state *s) {
    for (int i = 0; s->lora && i < s->n_lin; i++) bb_lora_destroy(&s->lora[i]);
    free(s->lora);
    free(s->w);
    free(s->t);
    free(s->bits);
    free(s->metrics);
    memset(s, 0, sizeof *s); /* masks belong to the run */
}

static bb_status metrics_push(bb_state *s, const bb_wave_metrics *m) {
    bb_wave_metrics *grown = realloc(s->metrics, sizeof *grown * (size_t)(s->n_metrics + 1));
    BB_CHECK(grown, BB_ERR_OOM, "out of memory: wave metrics");
    s->metrics = grown;
    s->metrics[s->n_metrics++] = *m;
    return BB_OK;
}

/* Pruned fraction of all linear weights and the values held by factors: each
 * rank counts its own, integer sums over ranks (exact). Collective. */
static bb_status totals(const bb_run *r, double *sparsity, int64_t *lora_values) {
    const bb_state *s = &r->state;
    int64_t v[3] = {0, 0, 0}; /* kept, total, factor values */
    for (int i = 0; i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) continue;
        v[0] += bb_mask_count(s->masks[i]);
        v[1] += numel(s->t[i]);
        if (s->lora[i]) v[2] += bb_lora_numel(s->lora[i]);
    }
    BB_CALL(bb_comm_allreduce_i64(r->comm, v, 3, BB_COMM_SUM));
    *sparsity = v[1] ? 1.0 - (double)v[0] / (double)v[1] : 0;
    if (lora_values) *lora_values = v[2];
    return BB_OK;
}

/* ---- snapshots for the stop-loss ------------------------------------------- */

static bb_status snapshot_alloc(wave_loop *L) {
    const bb_state *s = L->s;
    BB_CALL(bb_calloc((void **)&L->good_w, (size_t)s->n_lin, sizeof *L->good_w, "good-wave weights"));
    BB_CALL(bb_calloc((void **)&L->good_m, (size_t)s->n_lin, sizeof *L->good_m, "good-wave masks"));
    BB_CALL(bb_calloc((void **)&L->rb_m, (size_t)s->n_lin, sizeof *L->rb_m, "rollback masks"));
    BB_CALL(bb_calloc((void **)&L->good_bits, (size_t)s->n_lin, sizeof *L->good_bits, "good-wave bits"));
    BB_CALL(bb_calloc((void **)&L->rb_bits, (size_t)s->n_lin, sizeof *L->rb_bits, "rollback bits"));
    BB_CALL(bb_calloc((void **)&L->good_lora, (size_t)s->n_lin, sizeof *L->good_lora, "good-wave factors"));
    BB_CALL(bb_calloc((void **)&L->prev_w, (size_t)s->n_lin, sizeof *L->prev_w, "previous weights"));
    int64_t most = 0;
    /* the weights' snapshots on their owner only (rank 0 too holds its own blocks' alone) */
    for (int i = 0; i < s->n_lin; i++) {
        if (s->w[i] && bb_run_mine(L->r, i)) {
            BB_CALL(bb_malloc((void **)&L->good_w[i], sizeof(float) * (size_t)numel(s->t[i]), "good-wave weights"));
            BB_CALL(bb_malloc((void **)&L->prev_w[i], sizeof(float) * (size_t)numel(s->t[i]), "previous weights"));
        }
        BB_CALL(bb_mask_clone(s->masks[i], &L->good_m[i]));
        BB_CALL(bb_mask_clone(s->masks[i], &L->rb_m[i]));
        if (numel(s->t[i]) > most) most = numel(s->t[i]);
    }
    BB_CALL(bb_malloc((void **)&L->scratch, sizeof(float) * (size_t)most, "rollback scores"));
    return BB_OK;
}

/* The current state becomes the rollback target. */
static bb_status snapshot_take(wave_loop *L, int wave) {
    const bb_state *s = L->s;
    for (int i = 0; i < s->n_lin; i++) {
        if (L->good_w[i]) memcpy(L->good_w[i], s->w[i], sizeof(float) * (size_t)numel(s->t[i]));
        BB_CALL(bb_mask_copy(L->good_m[i], s->masks[i]));
        L->good_bits[i] = s->bits[i];
        bb_lora_destroy(&L->good_lora[i]);
        if (s->lora[i]) BB_CALL(bb_lora_clone(s->lora[i], &L->good_lora[i]));
    }
    L->s->good_wave = wave;
    return BB_OK;
}

static void snapshot_free(wave_loop *L) {
    int n = L->s ? L->s->n_lin : 0;
    for (int i = 0; L->sc && i < n; i++) bb_scaffold_destroy(&L->sc[i]);
    free(L->sc);
    L->sc = NULL;
    for (int i = 0; i < n; i++) {
        if (L->good_w) free(L->good_w[i]);
        if (L->prev_w) free(L->prev_w[i]);
        if (L->good_lora) bb_lora_destroy(&L->good_lora[i]);
        if (L->good_m) bb_mask_destroy(&L->good_m[i]);
        if (L->rb_m) bb_mask_destroy(&L->rb_m[i]);
    }
    free(L->good_w);
    free(L->good_m);
    free(L->rb_m);
    free(L->good_bits);
    free(L->rb_bits);
    free(L->good_lora);
    free(L->prev_w);
    bb_state_release(&L->prev);
    free(L->scratch);
}

static int cmp_desc(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Rollback step j of n (1-based): weights kept at the good wave but pruned
 * when the rollback started are restored to their good values, the most
 * important first (|w| ||x_j||, ||x|| from the current statistics), up to
 * ceil(j/n) of them per matrix; bits fall back by j/n of what was added. The
 * last step restores the good wave exactly, kept weights and factors too. */
static bb_status rollback_step(wave_loop *L, int j, int n, int64_t *restored) {
    bb_state *s = L->s;
    bb_run *r = L->r;
    *restored = 0;
    for (int i = 0; i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) continue; /* its owner restores it */
        const bb_tensor *t = s->t[i];
        int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), m = 0;
        if (j == n) {
            for (int64_t a = 0; a < rows; a++)
                for (int64_t b = 0; b < cols; b++)
                    if (bb_mask_get(L->good_m[i], a, b) && !bb_mask_get(s->masks[i], a, b)) (*restored)++;
            memcpy(s->w[i], L->good_w[i], sizeof(float) * (size_t)(rows * cols));
            BB_CALL(bb_mask_copy(s->masks[i], L->good_m[i]));
            s->bits[i] = L->good_bits[i];
            continue;
        }
        const bb_calib_stat *cs = NULL;
        if (r->stats && bb_calib_stats(r->stats, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), &cs) != BB_OK)
            cs = NULL;
        for (int64_t a = 0; a < rows; a++)
            for (int64_t b = 0; b < cols; b++)
                if (bb_mask_get(L->good_m[i], a, b) && !bb_mask_get(L->rb_m[i], a, b))
                    L->scratch[m++] = fabsf(L->good_w[i][a * cols + b]) * (cs ? (float)cs->norm[b] : 1.0f);
        if (!m) continue;
        int64_t want = (m * j + n - 1) / n;
        qsort(L->scratch, (size_t)m, sizeof(float), cmp_desc);
        float thr = L->scratch[want - 1];
        int64_t done = 0;
        /* row-major order breaks ties deterministically */
        for (int64_t a = 0; a < rows && done < want; a++)
            for (int64_t b = 0; b < cols && done < want; b++) {
                if (!bb_mask_get(L->good_m[i], a, b) || bb_mask_get(L->rb_m[i], a, b)) continue;
                float sc = fabsf(L->good_w[i][a * cols + b]) * (cs ? (float)cs->norm[b] : 1.0f);
                if (sc < thr) continue;
                done++;
                if (bb_mask_get(s->masks[i], a, b)) continue;
                bb_mask_set(s->masks[i], a, b, 1);
                s->w[i][a * cols + b] = L->good_w[i][a * cols + b];
                (*restored)++;
                r->changed[i] = 1;
            }
        int added = L->rb_bits[i] - L->good_bits[i];
        s->bits[i] = L->rb_bits[i] - (int)lround((double)added * j / n);
    }
    for (int i = 0; j == n && i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) continue;
        bb_lora_destroy(&s->lora[i]);
        if (L->good_lora[i]) BB_CALL(bb_lora_clone(L->good_lora[i], &s->lora[i]));
    }
    BB_CALL(bb_comm_allreduce_i64(r->comm, restored, 1, BB_COMM_SUM));
    return BB_OK;
}

static bb_status rollback_begin(wave_loop *L) {
    bb_state *s = L->s;
    for (int i = 0; i < s->n_lin; i++) {
        BB_CALL(bb_mask_copy(L->rb_m[i], s->masks[i]));
        L->rb_bits[i] = s->bits[i];
    }
    L->rb_steps = (int)L->c->stoploss.rollback_waves;
    s->rollback_left = L->rb_steps;
    s->frozen = 1;
    s->rb_wave = s->wave;
    return BB_OK;
}

/* ---- history and checkpoints ------------------------------------------------- */

/* L->prev = the state as it stands (before the wave), with copies of this
 * rank's own weights (each rank writes its own tensors' part of the history). */
static bb_status prev_take(wave_loop *L) {
    const bb_state *s = L->s;
    bb_state_release(&L->prev);
    BB_CALL(bb_state_copy_owned(s, &L->prev));
    for (int i = 0; i < s->n_lin; i++)
        if (L->prev_w[i]) memcpy(L->prev_w[i], s->w[i], sizeof(float) * (size_t)numel(s->t[i]));
    L->prev.w = L->prev_w;
    return BB_OK;
}

/* The report records (healing curves, stress boosts) as bytes for the
 * checkpoint, so a resumed run reports every wave: "BBRC", then n_curves and
 * per curve (wave, n, name[96], n floats), then n_boosts and per boost (wave,
 * bits, name[96]); host byte order. */
static bb_status records_pack(const bb_run *r, uint8_t **out, int64_t *n) {
    size_t size = 4 + 4, off = 0;
    for (int c = 0; c < r->n_curves; c++) size += 8 + 96 + sizeof(float) * (size_t)r->curves[c].n;
    size += 4 + (size_t)r->n_boosts * (8 + 96);
    uint8_t *b;
    BB_CALL(bb_calloc((void **)&b, size, 1, "run records"));
#define PUT(p, len) (memcpy(b + off, (p), (len)), off += (len))
    int32_t v;
    PUT("BBRC", 4);
    v = r->n_curves;
    PUT(&v, 4);
    for (int c = 0; c < r->n_curves; c++) {
        const bb_heal_curve *hc = &r->curves[c];
        v = hc->wave;
        PUT(&v, 4);
        v = hc->n;
        PUT(&v, 4);
        PUT(hc->name, 96);
        if (hc->n) PUT(hc->loss, sizeof(float) * (size_t)hc->n);
    }
    v = r->n_boosts;
    PUT(&v, 4);
    for (int q = 0; q < r->n_boosts; q++) {
        v = r->boosts[q].wave;
        PUT(&v, 4);
        v = r->boosts[q].bits;
        PUT(&v, 4);
        PUT(r->boosts[q].name, 96);
    }
#undef PUT
    *out = b;
    *n = (int64_t)off;
    return BB_OK;
}

static bb_status records_unpack(bb_run *r, const uint8_t *b, int64_t n) {
    int64_t off = 0;
#define GET(p, len)                                                                                                   \
    do {                                                                                                              \
        BB_CHECK(off + (int64_t)(len) <= n, BB_ERR_FORMAT, "checkpoint: the run records are truncated");              \
        memcpy((p), b + off, (len));                                                                                  \
        off += (int64_t)(len);                                                                                        \
    } while (0)
    char magic[4];
    int32_t nc = 0, nb = 0, v[2];
    GET(magic, 4);
    BB_CHECK(!memcmp(magic, "BBRC", 4), BB_ERR_FORMAT, "checkpoint: the run records have no BBRC magic");
    GET(&nc, 4);
    BB_CHECK(nc >= 0 && nc < 100000000, BB_ERR_FORMAT, "checkpoint: %d healing curves", nc);
    for (int c = 0; c < nc; c++) {
        char name[96];
        GET(v, 8);
        GET(name, 96);
        name[95] = 0;
        BB_CHECK(v[1] >= 0 && (int64_t)v[1] * 4 <= n - off, BB_ERR_FORMAT, "checkpoint: a healing curve of %d steps", v[1]);
        BB_CALL(bb_run_add_curve(r, v[0], name, (const float *)(b + off), v[1]));
        off += (int64_t)v[1] * 4;
    }
    GET(&nb, 4);
    BB_CHECK(nb >= 0 && nb < 100000000, BB_ERR_FORMAT, "checkpoint: %d stress boosts", nb);
    for (int q = 0; q < nb; q++) {
        bb_boost bo;
        GET(v, 8);
        GET(bo.name, 96);
        bo.name[95] = 0;
        bo.wave = v[0];
        bo.bits = v[1];
        bb_boost *grown = realloc(r->boosts, sizeof *grown * (size_t)(r->n_boosts + 1));
        BB_CHECK(grown, BB_ERR_OOM, "out of memory: stress records");
        r->boosts = grown;
        r->boosts[r->n_boosts++] = bo;
    }
#undef GET
    return BB_OK;
}

/* The wave's DeltaHistory record (diffs/<k>/): every rank its own tensors'
 * datasets of one delta.h5, rank 0 diff.json. Collective. */
static bb_status history_write(wave_loop *L) {
    bb_event_begin("wave.history");
    bb_status st = bb_history_record_dist(L->c->run.dir, &L->prev, L->s, L->r->dist->comm, L->owner);
    bb_event_end("wave.history", 0, 0);
    return st;
}

/* Rank 0's run-level part of the checkpoint: layer targets, tensor history, report records. */
static bb_status ckpt_meta_rank0(wave_loop *L, uint8_t **rec) {
    bb_run *r = L->r;
    char dir[1400];
    snprintf(dir, sizeof dir, "%s/checkpoints", L->c->run.dir);
    BB_CALL(bb_mkdir_p(dir));
    L->meta.layer_target = (double *)bb_decay_layer_targets(r);
    L->meta.n_layer_target = L->meta.layer_target ? L->s->n_layers : 0;
    L->meta.tensor_hist = r->tensor_hist;
    L->meta.hist_waves = r->hist_waves;
    BB_CALL(records_pack(r, rec, &L->meta.n_records));
    L->meta.records = *rec;
    return BB_OK;
}

/* What each rank wrote to the checkpoint (tensors, bytes), kept on rank 0 for
 * summary.json and printed. Collective. */
static bb_status ckpt_shares(wave_loop *L, const char *path, const bb_ckpt_io *io) {
    bb_run *r = L->r;
    const bb_dist *d = r->dist;
    int64_t mine[5] = {r->l0, r->l1, io->tensors, io->tensor_bytes, io->other_bytes}, *all = NULL;
    size_t *offsets = NULL;
    BB_CALL(bb_malloc((void **)&offsets, sizeof *offsets * (size_t)(d->size + 1), "checkpoint shares"));
    bb_status st = bb_comm_allgatherv(r->comm, mine, sizeof mine, (void **)&all, offsets);
    free(offsets);
    BB_CALL(st);
    if (d->rank != 0) {
        free(all);
        return BB_OK;
    }
    free(r->ckpt_shares);
    r->ckpt_shares = all;
    char line[1024];
    int used = snprintf(line, sizeof line, "checkpoint %s: %d rank%s wrote", path, d->size, d->size > 1 ? "s" : "");
    for (int q = 0; q < d->size && used < (int)sizeof line; q++)
        used += snprintf(line + used, sizeof line - used, "%s %lld tensors %lld B", q ? "," : "",
                         (long long)all[5 * q + 2], (long long)(all[5 * q + 3] + all[5 * q + 4]));
    bb_info("%s", line);
    return BB_OK;
}

/* Collective: the DeltaHistory record and the checkpoint, written by every
 * rank, each its own linear weights. */
static bb_status wave_files(wave_loop *L) {
    bb_run *r = L->r;
    const bb_dist *d = r->dist;
    const bb_config *c = L->c;
    BB_CALL(history_write(L));
    if (!c->checkpoint.enabled) return BB_OK;
    char path[1400];
    BB_CALL(bb_ckpt_path(c->run.dir, L->s->wave, path, sizeof path));
    uint8_t *rec = NULL;
    bb_status st = d->rank == 0 ? ckpt_meta_rank0(L, &rec) : BB_OK;
    st = bb_dist_agree(d, st);
    bb_ckpt_io io = {0};
    bb_ckpt_group g = {.comm = d->comm, .owner = L->owner};
    if (st == BB_OK) {
        bb_event_begin("ckpt.write");
        st = bb_ckpt_write_dist(path, L->s, d->rank == 0 ? &L->meta : NULL, &g, &io);
        bb_event_end("ckpt.write", 0, (double)(io.tensor_bytes + io.other_bytes));
    }
    free(rec);
    L->meta.records = NULL;
    L->meta.n_records = 0;
    BB_CALL(st);
    BB_CALL(ckpt_shares(L, path, &io));
    st = d->rank == 0 && !strcmp(c->checkpoint.keep, "last") ? bb_ckpt_prune(c->run.dir, L->s->wave) : BB_OK;
    return bb_dist_agree(d, st);
}

static bb_status wave_line(bb_run *r, const bb_wave_metrics *m, const char *what);

/* The end of wave k, whatever ran it: its metrics row and per-tensor records, the wave's files (their time
 * booked as checkpoint time), the wave line and metrics.json. Collective. */
static bb_status wave_finish(wave_loop *L, const bb_wave_metrics *m, int k, double t0, const char *what) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    BB_CALL(metrics_push(s, m));
    BB_CALL(bb_run_record_tensors(r));
    double tw = bb_now();
    BB_CALL(wave_files(L));
    s->metrics[s->n_metrics - 1].seconds[BB_T_CHECKPOINT] += bb_now() - tw;
    s->metrics[s->n_metrics - 1].seconds[BB_T_TOTAL] = bb_now() - t0;
    r->sparsity = m->sparsity;
    r->n_waves = k;
    BB_CALL(wave_line(r, m, what));
    bb_status st = r->dist->rank == 0 ? bb_metrics_write(r) : BB_OK;
    return bb_dist_agree(r->dist, st);
}

static bb_status meta_init(wave_loop *L) {
    bb_run *r = L->r;
    uint8_t whole[32];
    bb_event_begin("model.hash");
    bb_status st = bb_run_model_hash(r, whole); /* collective: each rank hashes its own tensors */
    bb_event_end("model.hash", 0, 0);
    BB_CALL(st);
    if (r->dist->rank != 0) return BB_OK; /* the checkpoints' writer */
    char path[1200];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/config.yaml", r->cfg.run.dir);
    BB_CALL(bb_file_read_all(path, (size_t)1 << 24, &L->yaml, &n));
    L->meta.config_yaml = L->yaml;
    snprintf(L->meta.config_sha256, sizeof L->meta.config_sha256, "%s", r->hash);
    snprintf(L->meta.model_path, sizeof L->meta.model_path, "%s", r->model->path);
    bb_hash_hex(whole, L->meta.model_sha256);
    return BB_OK;
}

/* dst (masks, bits, factors of a snapshot) = the state at wave `to` of this
 * rank's own weights, rebuilt from the current state and the DeltaHistory. */
static bb_status state_at(wave_loop *L, int to, float **w_out, bb_mask **m_out, int *bits_out, bb_lora **lora_out) {
    const bb_state *s = L->s;
    bb_state tmp;
    BB_CALL(bb_state_copy_owned(s, &tmp));
    for (int i = 0; i < s->n_lin; i++)
        if (w_out[i]) memcpy(w_out[i], s->w[i], sizeof(float) * (size_t)numel(s->t[i]));
    tmp.w = w_out; /* NULL for the other ranks' weights: the history skips them */
    bb_status st = bb_history_goto(L->c->run.dir, &tmp, to);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) {
        st = bb_mask_copy(m_out[i], tmp.masks[i]);
        bits_out[i] = tmp.bits[i];
        if (lora_out) {
            bb_lora_destroy(&lora_out[i]);
            lora_out[i] = tmp.lora[i];
            tmp.lora[i] = NULL;
        }
    }
    bb_state_release(&tmp);
    return st;
}

/* --resume, on every rank: the checkpoint's part this rank holds (weights,
 * masks, factors, bits of its own linear weights; counters, metrics and layer
 * targets everywhere; rank 0 also the report records). Collective. */
static bb_status resume_read(wave_loop *L, const char *path) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    const bb_dist *d = r->dist;
    bb_state tmp = *s;
    tmp.masks = NULL;
    tmp.lora = NULL;
    tmp.bits = NULL;
    tmp.metrics = NULL;
    tmp.n_metrics = 0;
    bb_ckpt_meta m;
    memset(&m, 0, sizeof m);
    bb_ckpt_group g = {.comm = d->comm, .owner = L->owner};
    bb_ckpt_io io;
    bb_event_begin("ckpt.read");
    bb_status st = bb_ckpt_read_dist(path, &tmp, &m, &g, &io); /* the weights are read into s->w directly */
    bb_event_end("ckpt.read", 0, (double)io.tensor_bytes);
    BB_CALL(st);
    /* the same on every rank: rank 0 tells (it alone hashed the model) */
    if (d->rank == 0 && strcmp(m.config_sha256, r->hash))
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                      "resume: %s was written with another configuration (sha256 %.12s..., this run %.12s...): resume "
                      "with the run's own config.yaml, or start a new run",
                      path, m.config_sha256, r->hash);
    else if (d->rank == 0 && strcmp(m.model_sha256, L->meta.model_sha256))
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__,
                      "resume: %s belongs to another model (sha256 %.12s..., %s has %.12s...): point model.path at the "
                      "model the run started from",
                      path, m.model_sha256, r->model->path, L->meta.model_sha256);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) continue;
        st = bb_mask_copy(s->masks[i], tmp.masks[i]);
        bb_lora_destroy(&s->lora[i]);
        s->lora[i] = tmp.lora[i];
        tmp.lora[i] = NULL;
        s->bits[i] = tmp.bits[i];
    }
    if (st == BB_OK) {
        free(s->metrics);
        s->metrics = tmp.metrics;
        s->n_metrics = tmp.n_metrics;
        tmp.metrics = NULL;
        s->wave = tmp.wave;
        s->losing = tmp.losing;
        s->rollback_left = tmp.rollback_left;
        s->frozen = tmp.frozen;
        s->rng_counter = tmp.rng_counter;
        s->good_wave = tmp.good_wave;
        s->rb_wave = tmp.rb_wave;
        st = bb_decay_set_layer_targets(r, m.layer_target);
    }
    if (st == BB_OK && d->rank == 0 && m.records) st = records_unpack(r, m.records, m.n_records);
    if (st == BB_OK && d->rank == 0 && m.tensor_hist) {
        free(r->tensor_hist);
        r->tensor_hist = m.tensor_hist;
        r->hist_waves = m.hist_waves;
        m.tensor_hist = NULL;
    }
    bb_state_release(&tmp);
    bb_ckpt_meta_free(&m);
    return bb_dist_agree(d, st);
}

/* --resume, every rank: the stop-loss's snapshots of its own weights, rebuilt
 * from the history; rank 0 also the report lines. */
static bb_status resume_snapshots(wave_loop *L) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    for (int j = 1; r->dist->rank == 0 && j < s->n_metrics; j++) {
        const bb_wave_metrics *w = &s->metrics[j];
        char line[256];
        snprintf(line, sizeof line, "wave %d/%lld  sparsity %.4f  PPL %.4f  dPPL %+.2f %%  (from the checkpoint)",
                 w->wave, (long long)L->c->waves.count, w->sparsity, w->ppl, 100 * w->dppl);
        BB_CALL(bb_run_report_line(r, line));
    }
    if (s->good_wave != s->wave)
        BB_CALL(state_at(L, s->good_wave, L->good_w, L->good_m, L->good_bits, L->good_lora));
    else
        BB_CALL(snapshot_take(L, s->wave));
    if (s->rollback_left > 0) BB_CALL(state_at(L, s->rb_wave, L->prev_w, L->rb_m, L->rb_bits, NULL));
    return BB_OK;
}

/* --resume: every rank reads its own linear weights from the last complete
 * checkpoint (written by any number of ranks) and rebuilds its own part of
 * the stop-loss's snapshots from the history; nothing is gathered. Collective. */
static bb_status resume(wave_loop *L) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    const bb_dist *d = r->dist;
    int k = -1;
    char path[1400] = "";
    bb_status st = d->rank == 0 ? bb_ckpt_find_last(L->c->run.dir, &k, path, sizeof path) : BB_OK;
    BB_CALL(bb_dist_agree(d, st));
    BB_CALL(bb_comm_bcast(r->comm, &k, sizeof k, 0));
    if (k < 0) {
        bb_warn("resume: no complete checkpoint in %s: the waves start from the dense model", L->c->run.dir);
        return BB_OK;
    }
    BB_CALL(bb_comm_bcast(r->comm, path, sizeof path, 0));
    BB_CALL(resume_read(L, path));
    BB_CALL(bb_dist_agree(d, resume_snapshots(L)));
    r->stats_stale = 1;
    r->n_waves = s->wave;
    BB_CALL(totals(r, &r->sparsity, NULL));
    bb_info("resume  wave %d of %s: sparsity %.4f%s; continuing with wave %d", s->wave, path, r->sparsity,
            s->rollback_left ? ", rolling back" : "", s->wave + 1);
    return BB_OK;
}

/* ---- evaluation -------------------------------------------------------------- */

static bb_status evaluate(wave_loop *L, bb_wave_metrics *m) {
    const bb_config *c = L->c;
    bb_run *r = L->r;
    bb_ppl_result pr;
    bb_kld_result kr = {0};
    bb_event_begin("eval.wave");
    bb_status st = bb_run_evaluate(r, bb_run_current_model(r), &L->eval, &pr, NULL, c->eval.kld ? &L->ref : NULL,
                                   c->eval.kld ? &kr : NULL);
    bb_event_end("eval.wave", 0, 0);
    BB_CALL(st);
    m->ppl = pr.ppl;
    m->dppl = pr.ppl / r->dense_ppl - 1;
    m->kld = c->eval.kld ? kr.kld_mean : NAN;
    m->top1 = c->eval.kld ? kr.top1 : NAN;
    return BB_OK;
}

/* ---- per-wave stages ----------------------------------------------------------- */

static bb_status run_wave_stage(bb_run *r, const char *name, int k, double *seconds) {
    const bb_stage *st;
    int n = bb_pipeline_stages(&st);
    for (int i = 0; i < n; i++) {
        if (strcmp(st[i].name, name) || !st[i].wave) continue;
        char ev[64];
        snprintf(ev, sizeof ev, "wave.%s", name);
        double t0 = bb_now();
        bb_event_begin(ev);
        int outer = bb_run_stage_enter(r, i);
        bb_status s = st[i].wave(r, k);
        bb_run_stage_enter(r, outer);
        bb_event_end(ev, 0, 0);
        *seconds = bb_now() - t0;
        r->stage_seconds[i] += *seconds;
        return s;
    }
    return BB_OK;
}

static bb_status wave_line(bb_run *r, const bb_wave_metrics *m, const char *what) {
    const long long R = (long long)r->cfg.waves.count;
    char kld[48] = "";
    if (!isnan(m->kld)) snprintf(kld, sizeof kld, "  KLD %.4f  top-1 %.3f", m->kld, m->top1);
    char line[512];
    snprintf(line, sizeof line, "wave %d/%lld  sparsity %.4f  PPL %.4f  dPPL %+.2f %%%s  %s", m->wave, R, m->sparsity,
             m->ppl, 100 * m->dppl, kld, what);
    bb_info("%s  %.1f s", line, m->seconds[BB_T_TOTAL]);
    return bb_run_report_line(r, line);
}

/* ---- scaffold mode ------------------------------------------------------------ */

/* Halvings of τ one wave may take before its loss rise is accepted (τ₁/4096 keeps nearly every residual entry). */
#define SCAFFOLD_MAX_HALVINGS 12

/* Wave k of scaffold mode (scaffold.enabled, compress/scaffold.h): every owned weight becomes its rank-k scaffold
 * W_k (factors of rank k) plus the residual W − W_k with the entries below τ = tau_rel·σ₁ pruned (the mask).
 * The state is rebuilt from the dense weight each wave, so a wave depends only on k and τ: --resume needs the
 * τ of the last wave (its metrics row) and nothing else. The scaffold's SVD is taken once per weight. */
static bb_status scaffold_wave(wave_loop *L, int k, double tau_rel, int64_t *kept, int64_t *total) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    int R = (int)L->c->waves.count;
    int64_t v[2] = {0, 0};
    float *w = NULL;
    bb_status st = L->sc ? BB_OK : bb_calloc((void **)&L->sc, (size_t)s->n_lin, sizeof *L->sc, "scaffolds");
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) continue;
        const bb_tensor *t = s->t[i];
        int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), mn = rows < cols ? rows : cols;
        st = bb_malloc((void **)&w, sizeof(float) * (size_t)(rows * cols), "dense weight");
        if (st == BB_OK) st = bb_tensor_read_f32(t, 0, rows, w);
        if (st == BB_OK && !L->sc[i]) {
            if (R > mn)
                st = bb_error(BB_ERR_CONFIG, __FILE__, __LINE__,
                              "scaffold.enabled: waves.count = %d scaffold directions do not fit %s (%lld x %lld): "
                              "lower waves.count to at most %lld",
                              R, t->name, (long long)rows, (long long)cols, (long long)mn);
            else
                st = bb_scaffold_create(t->name, rows, cols, w, R, (uint64_t)L->c->run.seed, &L->sc[i]);
        }
        if (st == BB_OK) {
            bb_lora_destroy(&s->lora[i]);
            st = bb_lora_create(rows, cols, k, &s->lora[i]);
        }
        bb_scaffold_stats ss;
        if (st == BB_OK) st = bb_scaffold_state(L->sc[i], w, k, tau_rel, s->lora[i], s->w[i], s->masks[i], &ss);
        if (st == BB_OK) {
            v[0] += ss.kept;
            v[1] += rows * cols;
            r->changed[i] = 1;
        }
        free(w);
        w = NULL;
    }
    BB_CALL(bb_dist_agree(r->dist, st));
    BB_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT64_T, MPI_SUM, r->dist->comm) == MPI_SUCCESS, BB_ERR_MPI,
             "summing the scaffold residuals failed");
    *kept = v[0];
    *total = v[1];
    r->stats_stale = 1;
    return BB_OK;
}

/* Wave k of scaffold mode: the scaffold state at τ, the built per-wave stages (healing starts Adam from the
 * scaffold's factors), evaluation; the scaffold's stop-loss (the seed's §2.3): when the validation loss ln PPL
 * rises by more than 3 % over the previous wave's, τ is halved and the wave is redone from its start, up to
 * SCAFFOLD_MAX_HALVINGS times. prune.* and the rollback stop-loss (stoploss.*) are not used in this mode. */
static bb_status scaffold_one_wave(wave_loop *L, int k, int *more) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    const bb_config *c = L->c;
    const bb_wave_metrics *last = &s->metrics[s->n_metrics - 1];
    double tau = last->scaffold_tau > 0 ? last->scaffold_tau : c->scaffold.tau1;
    double prev_loss = log(last->ppl);
    double alpha = bb_scaffold_alpha(k, (int)c->waves.count);
    double t0 = bb_now();
    bb_wave_metrics m;
    char what[200];
    int64_t kept = 0, total = 0;
    /* a redone wave must leave no trace of the attempt: its stress boosts, healing curves and boost records */
    int *bits0 = NULL, n_curves0 = r->n_curves, n_boosts0 = r->n_boosts;
    BB_CALL(bb_malloc((void **)&bits0, sizeof(int) * (size_t)s->n_lin, "bits before the wave"));
    memcpy(bits0, s->bits, sizeof(int) * (size_t)s->n_lin);
    for (int halvings = 0;; halvings++) {
        memcpy(s->bits, bits0, sizeof(int) * (size_t)s->n_lin);
        while (r->n_curves > n_curves0) free(r->curves[--r->n_curves].loss);
        r->n_boosts = n_boosts0;
        memset(&m, 0, sizeof m);
        m.wave = k;
        memset(r->changed, 0, (size_t)s->n_lin);
        double t = bb_now();
        bb_event_begin("wave.scaffold");
        bb_status st = scaffold_wave(L, k, tau, &kept, &total);
        bb_event_end("wave.scaffold", 0, 0);
        m.seconds[BB_T_DECAY] = bb_now() - t;
        if (st == BB_OK) st = run_wave_stage(r, "heal", k, &m.seconds[BB_T_HEAL]);
        if (st == BB_OK) st = run_wave_stage(r, "reinforce", k, &m.seconds[BB_T_REINFORCE]);
        if (st == BB_OK) st = run_wave_stage(r, "redistribute", k, &m.seconds[BB_T_REDISTRIBUTE]);
        double te = bb_now();
        if (st == BB_OK) st = evaluate(L, &m);
        m.seconds[BB_T_EVAL] = bb_now() - te;
        if (st != BB_OK) {
            free(bits0);
            return st;
        }
        double tau_before = tau;
        if (!bb_scaffold_stoploss(prev_loss, log(m.ppl), 0.03, &tau)) break;
        if (halvings == SCAFFOLD_MAX_HALVINGS) {
            tau = tau_before;
            bb_warn("scaffold wave %d: the validation loss still rises by %.1f %% after %d halvings of tau (now %.4g): "
                    "kept",
                    k, 100 * (log(m.ppl) / prev_loss - 1), halvings, tau);
            break;
        }
        bb_info("scaffold wave %d: validation loss %.4f rose %.1f %% over %.4f (> 3 %%): tau %.4g -> %.4g, wave redone",
                k, log(m.ppl), 100 * (log(m.ppl) / prev_loss - 1), prev_loss, tau_before, tau);
    }
    free(bits0);
    m.scaffold_tau = tau;
    BB_CALL(totals(r, &m.sparsity, &m.lora_values));
    s->wave = k;
    snprintf(what, sizeof what, "(scaffold rank %d, tau %.4g sigma_1: %.4f of the residual kept; alpha_%d %.3f)", k, tau,
             total ? (double)kept / (double)total : 0.0, k, alpha);
    m.seconds[BB_T_TOTAL] = bb_now() - t0;
    BB_CALL(wave_finish(L, &m, k, t0, what));
    *more = k < c->waves.count;
    return BB_OK;
}

/* One wave: decay or a rollback step, the built per-wave stages, evaluation, stop-loss. */
static bb_status one_wave(wave_loop *L, int k, int *more) {
    bb_run *r = L->r;
    bb_state *s = L->s;
    const bb_config *c = L->c;
    bb_wave_metrics m = {.wave = k};
    double t0 = bb_now();
    char what[160];
    BB_CALL(prev_take(L));
    memset(r->changed, 0, (size_t)s->n_lin);
    if (c->scaffold.enabled) return scaffold_one_wave(L, k, more);
    if (s->rollback_left > 0) {
        int j = L->rb_steps - s->rollback_left + 1;
        int64_t restored = 0;
        double t = bb_now();
        BB_CALL(rollback_step(L, j, L->rb_steps, &restored));
        m.seconds[BB_T_DECAY] = bb_now() - t;
        s->rollback_left--;
        m.rolled_back = 1;
        r->stats_stale = 1;
        snprintf(what, sizeof what, "(rollback %d/%d toward wave %d: %lld weights restored)", j, L->rb_steps,
                 L->s->good_wave, (long long)restored);
    } else {
        int64_t removed = 0;
        double t = bb_now();
        bb_event_begin("wave.decay");
        bb_status st = bb_decay_wave(r, k, &removed);
        bb_event_end("wave.decay", 0, 0);
        BB_CALL(st);
        m.seconds[BB_T_DECAY] = bb_now() - t;
        snprintf(what, sizeof what, "(%lld weights removed)", (long long)removed);
    }
    /* the stage table's decay entry accounts for decay and rollback time */
    const bb_stage *tab;
    int n = bb_pipeline_stages(&tab);
    for (int i = 0; i < n; i++)
        if (!strcmp(tab[i].name, "decay")) r->stage_seconds[i] += m.seconds[BB_T_DECAY];
    /* a full rollback lands on the good wave exactly: no healing on top */
    if (!(m.rolled_back && s->rollback_left == 0)) {
        BB_CALL(run_wave_stage(r, "heal", k, &m.seconds[BB_T_HEAL]));
        BB_CALL(run_wave_stage(r, "reinforce", k, &m.seconds[BB_T_REINFORCE]));
        BB_CALL(run_wave_stage(r, "redistribute", k, &m.seconds[BB_T_REDISTRIBUTE]));
    }
    double te = bb_now();
    BB_CALL(evaluate(L, &m));
    m.seconds[BB_T_EVAL] = bb_now() - te;
    BB_CALL(totals(r, &m.sparsity, &m.lora_values));
    s->wave = k;
    /* stop-loss */
    if (c->stoploss.enabled && !m.rolled_back && !s->frozen) {
        if (m.dppl > c->stoploss.max_dppl) {
            s->losing++;
            if (s->losing >= c->stoploss.patience) {
                BB_CALL(rollback_begin(L));
                size_t len = strlen(what);
                snprintf(what + len, sizeof what - len, "; stop-loss: dPPL above %g %% for %d waves, rolling back to wave %d over %d waves",
                         100 * c->stoploss.max_dppl, s->losing, L->s->good_wave, L->rb_steps);
            }
        } else {
            s->losing = 0;
            BB_CALL(snapshot_take(L, k));
        }
    }
    double tc = bb_now();
    BB_CALL(bb_decay_save(r, k, &m));
    m.seconds[BB_T_CHECKPOINT] = bb_now() - tc;
    m.seconds[BB_T_TOTAL] = bb_now() - t0;
    BB_CALL(wave_finish(L, &m, k, t0, what));
    *more = 0;
    if (s->rollback_left > 0) *more = 1;
    else if (!s->frozen) BB_CALL(bb_decay_more(r, more));
    return BB_OK;
}

static bb_status loop_setup_local(wave_loop *L, bb_run *r) {
    BB_CALL(state_init(r));
    char path[1200];
    snprintf(path, sizeof path, "%s/eval.tokens", r->cfg.run.dir);
    BB_CALL(bb_tokens_read(path, r->model->cfg.vocab_size, &L->eval));
    if (r->cfg.eval.kld) {
        snprintf(path, sizeof path, "%s/dense.bblp", r->cfg.run.dir);
        BB_CALL(bb_logprobs_read(path, &L->ref));
    }
    BB_CALL(snapshot_alloc(L));
    BB_CALL(bb_calloc((void **)&L->owner, (size_t)L->s->n_lin, sizeof *L->owner, "weight owners"));
    for (int i = 0; i < L->s->n_lin; i++) L->owner[i] = bb_run_owner(r, i);
    BB_CALL(meta_init(L));
    if (L->s->n_metrics == 0) {
        bb_wave_metrics m0 = {.wave = 0, .ppl = r->dense_ppl, .dppl = 0, .kld = r->cfg.eval.kld ? 0 : NAN,
                              .top1 = r->cfg.eval.kld ? 1 : NAN};
        BB_CALL(metrics_push(L->s, &m0));
    }
    return BB_OK;
}

/* Collective: every rank's part of the state, the decay, and on --resume the checkpoint's state. */
static bb_status loop_setup(wave_loop *L, bb_run *r) {
    L->r = r;
    L->c = &r->cfg;
    L->s = &r->state;
    L->rb_steps = (int)r->cfg.stoploss.rollback_waves;
    BB_CALL(bb_dist_agree(r->dist, loop_setup_local(L, r)));
    if (r->hist_waves == 0) BB_CALL(bb_run_record_tensors(r));
    if (r->cfg.scaffold.enabled)
        bb_info("scaffold rank-k scaffold per weight over %lld waves, tau_1 %g sigma_1 (prune.* and the rollback "
                "stop-loss are not used in this mode)",
                (long long)r->cfg.waves.count, r->cfg.scaffold.tau1);
    else
        BB_CALL(bb_dist_agree(r->dist, bb_decay_begin(r)));
    if (r->flags & BB_RUN_RESUME) BB_CALL(resume(L));
    if (L->s->wave == 0) BB_CALL(bb_dist_agree(r->dist, snapshot_take(L, 0)));
    return BB_OK;
}

static void loop_teardown(wave_loop *L) {
    bb_decay_end(L->r);
    free(L->yaml);
    free(L->owner);
    snapshot_free(L);
    bb_tokens_free(&L->eval);
    bb_logprobs_free(&L->ref);
}

static bb_status loop_all(bb_run *r) {
    wave_loop L;
    memset(&L, 0, sizeof L);
    bb_status st = loop_setup(&L, r);
    st = bb_dist_agree(r->dist, st);
    const bb_config *c = &r->cfg;
    int more = c->scaffold.enabled || bb_decay_active(c);
    if (st == BB_OK && !more) bb_info("waves   nothing to prune: no waves run");
    if (st == BB_OK && more && L.s->wave > 0) { /* resumed */
        if (c->scaffold.enabled)
            more = L.s->wave < c->waves.count;
        else if (L.s->rollback_left > 0)
            more = 1;
        else if (L.s->frozen || L.s->wave >= c->waves.count)
            more = 0;
        else
            st = bb_decay_more(r, &more);
    }
    bb_progress pr;
    bb_progress_begin(&pr, "waves", (long)c->waves.count);
    for (int k = L.s->wave + 1; st == BB_OK && more && (k <= c->waves.count || L.s->rollback_left > 0); k++) {
        st = one_wave(&L, k, &more);
        if (st == BB_OK && more && k < c->waves.count) bb_progress_update(&pr, k, "");
        /* a signal to any rank stops every rank after this wave */
        int64_t sig = (int64_t)stop_signal;
        if (st == BB_OK) st = bb_comm_allreduce_i64(r->comm, &sig, 1, BB_COMM_MAX);
        if (st == BB_OK && sig) {
            stop_signal = (sig_atomic_t)sig;
            r->preempted = 1;
            bb_warn("waves: signal %d received: stopping after wave %d; continue with --resume", (int)sig, k);
            break;
        }
    }
    bb_progress_end(&pr);
    if (st == BB_OK && more && !L.s->rollback_left && !r->preempted && L.s->wave == c->waves.count && !L.s->frozen)
        bb_warn("waves: waves.count = %lld waves end at sparsity %.4f, before every matrix reached its target %g%s",
                (long long)c->waves.count, r->sparsity, c->prune.target, c->prune.owl ? " (or its OWL ratio)" : "");
    if (st == BB_OK && L.s->wave > 0) {
        char line[1400];
        snprintf(line, sizeof line,
                 "sparsity %.4f of the linear weights after %d wave%s; masks and usage maps in %s/wave_*.h5", r->sparsity,
                 L.s->wave, L.s->wave == 1 ? "" : "s", c->run.dir);
        bb_info("%s", line);
        st = bb_run_report_line(r, line);
    }
    loop_teardown(&L);
    return st;
}

bb_status bb_stage_waves(bb_run *r) { return loop_all(r); }
