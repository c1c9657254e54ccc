/* decay.c — stage 2 (Adaptive decay wave): prune the least-used weights, one
 * wave per call from the wave loop (waves.c).
 *
 * Wave k: usage from the working weights and the calibration statistics of the
 * weights as they now stand (recollected when a wave, healing or RigL changed
 * them); each matrix loses at most prune.per_wave of its remaining weights
 * (bb_prune_wave), never past its target (prune.target, or its layer's OWL
 * ratio); SparseGPT then corrects the kept weights with the OBS update for that
 * mask (fixed_mask). When one wave may reach the target (per_wave >= target)
 * or the pattern is N:M, the method's own one-shot pruner runs instead: N:M
 * groups cannot be filled a little at a time, and SparseGPT's adaptive mask
 * selection beats a static saliency when nothing limits the wave. Rank 0 does
 * all of it; the sharded version (each rank its layers, a MAX reduction for
 * u_max) comes with the MPI issue. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/owl.h"
#include "compress/prune.h"
#include "compress/usage.h"
#include "core/events.h"
#include "core/log.h"
#include "mpi/wave_h5.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

typedef enum { SCORE_WANDA = 0, SCORE_MAGNITUDE, SCORE_OBS } score_kind;

struct bb_decay {
    bb_run *r;
    const bb_config *c;
    bb_weights *w;
    const bb_pruner *pruner;
    score_kind score_kind;
    bb_prune_opts opts; /* the one-shot pruner's options (sparsity set per layer) */
    bb_usage_block ub;
    int per_row, one_shot; /* wave comparison group; one-shot mode (see the file comment) */
    int n_layers, n_mat;   /* n_mat = n_layers * BB_LIN_COUNT */
    int64_t max_numel, max_cols;
    double *layer_target; /* (n_layers) */
    double *owl;          /* (n_layers) OWL ratios, or NULL */
    const bb_tensor **tensors;
    double **u, **s; /* (n_mat) arrays of (n_blocks[i]) */
    int64_t *n_blocks;
    double u_max;
    float *score, *h, *xnorm; /* scratch: (max_numel), (max_cols^2), (max_cols) */
    int owl_done;             /* OWL ratios fixed (first wave, or restored on resume) */
};
typedef struct bb_decay decay;

bb_status bb_run_calib_windows(bb_run *r, bb_tokens *windows, const bb_tokens **stream) {
    *stream = &r->calib;
    if (r->calib.seq_len) return BB_OK;
    /* A text stream: the same seeded windows stage 1 drew. */
    const bb_config *c = &r->cfg;
    BB_CALL(bb_calib_sample_windows(&r->calib, (int)c->calib.samples, (int)c->calib.seq_len, (uint64_t)c->run.seed,
                                    r->model->cfg.bos_id, windows));
    *stream = windows;
    return BB_OK;
}

/* The calibration statistics of the current weights, replacing the run's. Collective. */
bb_status bb_run_recalibrate(bb_run *r) {
    const bb_model *m = bb_run_current_model(r);
    bb_tokens windows = {0};
    const bb_tokens *stream;
    bb_calib *fresh = NULL;
    bb_status st = bb_run_calib_windows(r, &windows, &stream);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = bb_run_calibrate(r, m, stream, &fresh);
    bb_tokens_free(&windows);
    BB_CALL(st);
    bb_calib_destroy(&r->stats);
    r->stats = fresh;
    r->stats_stale = 0;
    return BB_OK;
}

/* H (f32, full) and xnorm of the input of linear `kind` of `layer`, into d's scratch. */
static bb_status load_stats(decay *d, int layer, bb_linear_kind kind, int64_t cols) {
    const bb_calib_stat *s;
    BB_CALL(bb_calib_stats(d->r->stats, layer, kind, &s));
    BB_CHECK(s->in_features == cols, BB_ERR_INTERNAL, "%s: statistics of width %lld for %lld columns",
             d->tensors[layer * BB_LIN_COUNT + kind]->name, (long long)s->in_features, (long long)cols);
    for (int64_t j = 0; j < cols; j++) d->xnorm[j] = (float)s->norm[j];
    if (d->score_kind == SCORE_OBS) { /* only SparseGPT reads H */
        if (s->gram)
            memcpy(d->h, s->gram, sizeof(float) * (size_t)(cols * cols));
        else
            for (int64_t e = 0; e < cols * cols; e++) d->h[e] = (float)s->gram_f64[e];
    }
    return BB_OK;
}

/* OBS saliency w_ij^2 / [H^-1]_jj (Hassibi & Stork; SparseGPT's score) with
 * H damped as SparseGPT does (dead inputs set to 1, lambda * mean(diag H)
 * added, raised x10 on a failed Cholesky). d->h is destroyed. */
static bb_status obs_scores(decay *d, const char *name, int64_t rows, int64_t cols, const float *w) {
    const bb_linalg_backend *be = d->opts.backend;
    if (!be) BB_CALL(bb_linalg_backend_default_get(&be));
    float *hinv = NULL;
    size_t nb = sizeof(float) * (size_t)(cols * cols);
    BB_CALL(bb_malloc((void **)&hinv, nb, "OBS inverse Gram"));
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) {
        if (d->h[j * cols + j] == 0) d->h[j * cols + j] = 1;
        mean += d->h[j * cols + j];
    }
    mean /= (double)cols;
    double lambda = d->opts.damp, tried = lambda;
    bb_status st = BB_ERR_NUMERIC;
    int prev = bb_error_set_quiet(1);
    /* as SparseGPT: x10 per retry, a damping of 0 retries from 1e-6 */
    for (int t = 0; t <= d->opts.max_retries && st != BB_OK; t++, lambda = lambda > 0 ? lambda * 10 : 1e-6) {
        tried = lambda;
        memcpy(hinv, d->h, nb);
        for (int64_t j = 0; j < cols; j++) hinv[j * cols + j] += (float)(lambda * mean);
        st = be->potrf(BB_UPLO_UPPER, cols, hinv, cols, NULL);
        if (st == BB_OK) st = be->potri(BB_UPLO_UPPER, cols, hinv, cols);
    }
    bb_error_set_quiet(prev);
    if (st != BB_OK) {
        free(hinv);
        BB_CHECK(0, BB_ERR_NUMERIC,
                 "%s: wave saliency: H + lambda mean(diag H) I is not positive definite up to "
                 "lambda %g: raise prune.damp",
                 name, tried);
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            float v = w[i * cols + j];
            d->score[i * cols + j] = v * v / hinv[j * cols + j];
        }
    free(hinv);
    return BB_OK;
}

/* The usage maps of every matrix from the current weights and statistics:
 * u_b (mean Wanda score per block) and s_b = u_b / u_max over the model. Each
 * rank maps its own matrices; u_max is a MAX reduction (exact, so the same for
 * any rank count). Collective. */
static bb_status usage_maps(decay *d) {
    double umax = 0;
    bb_status st = BB_OK;
    for (int i = 0; i < d->n_mat && st == BB_OK; i++) {
        if (!bb_run_mine(d->r, i)) continue;
        int l = i / BB_LIN_COUNT;
        bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
        const bb_tensor *t = d->tensors[i];
        int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
        st = load_stats(d, l, k, cols);
        if (st == BB_OK)
            st = bb_usage_blocks(t->name, &d->ub, rows, cols, bb_weights_linear(d->w, l, k), d->xnorm, d->u[i]);
        double m = bb_usage_max(d->u[i], d->n_blocks[i]);
        if (st == BB_OK && m > umax) umax = m;
    }
    BB_CALL(bb_dist_agree(d->r->dist, st));
    d->u_max = umax;
    BB_CALL(bb_comm_allreduce_f64(d->r->comm, &d->u_max, 1, BB_COMM_MAX));
    for (int i = 0; i < d->n_mat && st == BB_OK; i++)
        if (bb_run_mine(d->r, i)) st = bb_usage_normalize(d->u[i], d->n_blocks[i], d->u_max, d->s[i]);
    return bb_dist_agree(d->r->dist, st);
}

/* OWL per-layer target sparsities from the outlier ratios of the current
 * Wanda scores. */
static bb_status owl_ratios(decay *d) {
    const bb_config *c = d->c;
    double *ratio = NULL;
    BB_CALL(bb_calloc((void **)&ratio, (size_t)d->n_layers, sizeof(double), "OWL outlier ratios"));
    bb_status st = BB_OK;
    for (int l = 0; l < d->n_layers && st == BB_OK; l++) {
        if (!bb_run_mine(d->r, l * BB_LIN_COUNT)) continue; /* its owner measures it */
        double sum = 0;
        int64_t n = 0, count = 0;
        for (int pass = 0; pass < 2 && st == BB_OK; pass++)
            for (int k = 0; k < BB_LIN_COUNT && st == BB_OK; k++) {
                const bb_tensor *t = d->tensors[l * BB_LIN_COUNT + k];
                int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), part = 0;
                const float *w = bb_weights_linear(d->w, l, (bb_linear_kind)k);
                st = load_stats(d, l, (bb_linear_kind)k, cols);
                if (st == BB_OK && pass == 0) {
                    double s1;
                    st = bb_owl_score_sum(t->name, rows, cols, w, d->xnorm, &s1, &part);
                    sum += s1;
                    n += part;
                } else if (st == BB_OK) {
                    st = bb_owl_count_above(t->name, rows, cols, w, d->xnorm, c->prune.owl_m * sum / (double)n, &part);
                    count += part;
                }
            }
        ratio[l] = n ? (double)count / (double)n : 0;
    }
    /* every layer's ratio everywhere, copied from its owner (exact) */
    uint8_t *mine = NULL;
    st = bb_dist_agree(d->r->dist, st);
    if (st == BB_OK) st = bb_dist_agree(d->r->dist, bb_calloc((void **)&mine, (size_t)d->n_layers, 1, "layer owners"));
    for (int l = 0; st == BB_OK && l < d->n_layers; l++) mine[l] = (uint8_t)bb_run_mine(d->r, l * BB_LIN_COUNT);
    if (st == BB_OK) st = bb_comm_share_owned(d->r->comm, ratio, mine, d->n_layers, 1);
    free(mine);
    if (st == BB_OK) st = bb_owl_ratios(d->n_layers, ratio, c->prune.target, c->prune.owl_lambda, d->owl);
    free(ratio);
    BB_CALL(st);
    for (int l = 0; l < d->n_layers; l++) d->layer_target[l] = d->owl[l];
    return BB_OK;
}

/* Prune one matrix by one wave (or one-shot); *removed = weights pruned now. */
static bb_status prune_matrix(decay *d, int i, int64_t *removed) {
    int l = i / BB_LIN_COUNT;
    bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
    const bb_tensor *t = d->tensors[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    float *w = bb_weights_linear(d->w, l, k);
    bb_mask *mask = d->r->masks[i];
    int64_t before = bb_mask_count(mask);
    BB_CALL(load_stats(d, l, k, cols));
    bb_prune_opts o = d->opts;
    bb_prune_layer pl = {t->name, rows, cols, w, d->h, d->xnorm, mask};
    if (d->one_shot) {
        o.sparsity = d->layer_target[l];
        BB_CALL(d->pruner->apply(&o, &pl, NULL));
    } else {
        if (d->score_kind == SCORE_WANDA)
            BB_CALL(bb_usage_score(t->name, rows, cols, w, d->xnorm, d->score));
        else if (d->score_kind == SCORE_MAGNITUDE)
            for (int64_t e = 0; e < rows * cols; e++) d->score[e] = fabsf(w[e]);
        else
            BB_CALL(obs_scores(d, t->name, rows, cols, w));
        BB_CALL(bb_prune_wave(t->name, rows, cols, d->score, d->c->prune.per_wave, d->layer_target[l], d->per_row, mask,
                              NULL));
        if (d->score_kind == SCORE_OBS) {
            BB_CALL(load_stats(d, l, k, cols)); /* obs_scores damped d->h in place */
            o.fixed_mask = 1;
            BB_CALL(bb_prune_sparsegpt(&o, &pl, NULL));
        } else {
            bb_mask_apply(mask, w);
        }
    }
    *removed = before - bb_mask_count(mask);
    return BB_OK;
}

/* Whether another wave would prune anything: bb_prune_wave's count depends on
 * the mask's counts only, so a dry run on copies with zero scores tells. */
static bb_status more_to_prune(decay *d, int *more) {
    *more = 0;
    if (d->one_shot) return BB_OK;
    memset(d->score, 0, sizeof(float) * (size_t)d->max_numel);
    for (int i = 0; i < d->n_mat && !*more; i++) {
        if (!bb_run_mine(d->r, i)) continue;
        const bb_tensor *t = d->tensors[i];
        bb_mask *copy = NULL;
        int64_t removed = 0;
        BB_CALL(bb_mask_clone(d->r->masks[i], &copy));
        bb_status st = bb_prune_wave(t->name, bb_tensor_rows(t), bb_tensor_cols(t), d->score, d->c->prune.per_wave,
                                     d->layer_target[i / BB_LIN_COUNT], d->per_row, copy, &removed);
        bb_mask_destroy(&copy);
        BB_CALL(st);
        *more = removed > 0;
    }
    return BB_OK;
}

/* wave_<k>.h5: masks, usage maps and the wave's metrics. */
bb_status bb_decay_save(bb_run *r, int k, const bb_wave_metrics *m) {
    decay *d = r->decay;
    if (!d) return BB_OK;
    const bb_config *c = d->c;
    /* every rank writes its own matrices' masks and usage maps into the file; the kept counts come from the
     * owners (integer sums, one term per entry) */
    int64_t *kept_t = NULL, kept = 0, total = 0;
    int *owner = NULL;
    bb_status st = bb_calloc((void **)&kept_t, (size_t)(d->n_mat ? d->n_mat : 1), sizeof *kept_t, "kept counts");
    if (st == BB_OK) st = bb_calloc((void **)&owner, (size_t)(d->n_mat ? d->n_mat : 1), sizeof *owner, "owners");
    for (int i = 0; st == BB_OK && i < d->n_mat; i++) {
        owner[i] = bb_run_owner(r, i);
        if (bb_run_mine(r, i)) kept_t[i] = bb_mask_count(r->masks[i]);
        total += bb_tensor_rows(d->tensors[i]) * bb_tensor_cols(d->tensors[i]);
    }
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = bb_comm_allreduce_i64(r->comm, kept_t, d->n_mat, BB_COMM_SUM);
    for (int i = 0; st == BB_OK && i < d->n_mat; i++) kept += kept_t[i];
    bb_wave_h5 wf = {.wave = k,
                     .method = c->prune.method,
                     .pattern = c->prune.pattern,
                     .usage_block = c->usage.block,
                     .config_hash = r->hash,
                     .per_wave = c->prune.per_wave,
                     .target = c->prune.target,
                     .sparsity = m->sparsity,
                     .ppl = m->ppl,
                     .dppl = m->dppl,
                     .kld_mean = m->kld,
                     .u_max = d->u_max,
                     .kept = kept,
                     .total = total,
                     .n_layers = d->n_layers,
                     .owl_ratios = d->owl,
                     .tensors = d->tensors,
                     .masks = r->masks,
                     .u = (const double *const *)d->u,
                     .s = (const double *const *)d->s,
                     .n_blocks = d->n_blocks,
                     .tensor_kept = kept_t};
    char path[1200];
    snprintf(path, sizeof path, "%s/wave_%d.h5", c->run.dir, k);
    bb_ckpt_group g = {.comm = r->dist->comm, .owner = owner};
    if (st == BB_OK) {
        bb_event_begin("decay.write");
        st = bb_wave_h5_write_dist(path, &wf, &g);
        bb_event_end("decay.write", 0, 0);
    }
    free(kept_t);
    free(owner);
    return st;
}

bb_status bb_decay_wave(bb_run *r, int k, int64_t *removed_out) {
    decay *d = r->decay;
    *removed_out = 0;
    if (!d) return BB_OK;
    if (r->stats_stale) {
        bb_event_begin("decay.recalib");
        bb_status st = bb_run_recalibrate(r);
        bb_event_end("decay.recalib", 0, 0);
        BB_CALL(st);
    }
    BB_CALL(usage_maps(d));
    if (d->owl && !d->owl_done) {
        BB_CALL(owl_ratios(d));
        d->owl_done = 1;
    }
    int64_t removed = 0;
    char label[64];
    snprintf(label, sizeof label, "wave %d decay", k);
    bb_progress pr;
    bb_progress_begin(&pr, label, d->n_mat);
    bb_event_begin("decay.prune");
    bb_status st = BB_OK;
    for (int i = 0; i < d->n_mat && st == BB_OK; i++) {
        if (!bb_run_mine(r, i)) continue;
        int64_t now = 0;
        st = prune_matrix(d, i, &now);
        removed += now;
        if (now) r->changed[i] = 1;
        bb_progress_update(&pr, i + 1, d->tensors[i]->name);
    }
    bb_event_end("decay.prune", 0, 0);
    bb_progress_end(&pr);
    BB_CALL(bb_dist_agree(r->dist, st));
    BB_CALL(bb_comm_allreduce_i64(r->comm, &removed, 1, BB_COMM_SUM));
    if (removed) r->stats_stale = 1;
    *removed_out = removed;
    return BB_OK;
}

bb_status bb_decay_more(bb_run *r, int *more) {
    *more = 0;
    bb_status st = r->decay ? more_to_prune(r->decay, more) : BB_OK;
    BB_CALL(bb_dist_agree(r->dist, st));
    int64_t vote = *more;
    BB_CALL(bb_comm_allreduce_i64(r->comm, &vote, 1, BB_COMM_MAX));
    *more = (int)vote;
    return BB_OK;
}

const double *bb_decay_layer_targets(const bb_run *r) {
    const decay *d = r->decay;
    return d ? d->layer_target : NULL;
}

bb_status bb_decay_set_layer_targets(bb_run *r, const double *t) {
    decay *d = r->decay;
    if (!d || !t) return BB_OK;
    memcpy(d->layer_target, t, sizeof(double) * (size_t)d->n_layers);
    if (d->owl) {
        memcpy(d->owl, t, sizeof(double) * (size_t)d->n_layers);
        d->owl_done = 1;
    }
    return BB_OK;
}

static bb_status setup(decay *d, bb_run *r) {
    const bb_config *c = &r->cfg;
    d->r = r;
    d->c = c;
    BB_CALL(bb_pruner_get(c->prune.method, &d->pruner));
    BB_CALL(bb_usage_block_parse(c->usage.block, c->usage.tile_rows, c->usage.tile_cols, &d->ub));
    bb_prune_opts_default(&d->opts);
    BB_CALL(bb_prune_pattern_parse(c->prune.pattern, &d->opts.pattern));
    d->opts.damp = c->prune.damp;
    d->opts.block_size = (int)c->prune.block_size;
    d->opts.threads = (int)c->backend.threads;
    int groups_row = strcmp(c->prune.groups, "row") == 0;
    d->opts.per_row = groups_row;
    /* Wanda compares within an output row by definition; the others follow prune.groups. */
    d->score_kind = !strcmp(c->prune.method, "sparsegpt")   ? SCORE_OBS
                    : !strcmp(c->prune.method, "magnitude") ? SCORE_MAGNITUDE
                                                            : SCORE_WANDA;
    d->per_row = d->score_kind == SCORE_WANDA ? 1 : groups_row;
    d->one_shot = d->opts.pattern.m || c->prune.per_wave >= c->prune.target;
    BB_CHECK(r->stats || r->l0 == r->l1, BB_ERR_INTERNAL, "decay: no calibration statistics (stage 1 did not run)");
    BB_CALL(bb_run_weights(r, &d->w));
    d->n_layers = r->model->cfg.n_layers;
    d->n_mat = d->n_layers * BB_LIN_COUNT;
    BB_CALL(bb_calloc((void **)&d->layer_target, (size_t)d->n_layers, sizeof(double), "layer targets"));
    for (int l = 0; l < d->n_layers; l++) d->layer_target[l] = c->prune.target;
    if (c->prune.owl) BB_CALL(bb_calloc((void **)&d->owl, (size_t)d->n_layers, sizeof(double), "OWL ratios"));
    BB_CALL(bb_calloc((void **)&d->tensors, (size_t)d->n_mat, sizeof *d->tensors, "decay tensors"));
    BB_CALL(bb_calloc((void **)&d->u, (size_t)d->n_mat * 2, sizeof *d->u, "usage maps"));
    d->s = d->u + d->n_mat;
    BB_CALL(bb_calloc((void **)&d->n_blocks, (size_t)d->n_mat, sizeof *d->n_blocks, "usage block counts"));
    BB_CALL(bb_run_masks(r));
    for (int i = 0; i < d->n_mat; i++) {
        const bb_tensor *t = bb_layer_linear(&r->model->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
        d->tensors[i] = t;
        d->n_blocks[i] = bb_usage_block_count(&d->ub, rows, cols);
        BB_CALL(bb_calloc((void **)&d->u[i], (size_t)d->n_blocks[i] * 2, sizeof(double), "usage map"));
        d->s[i] = d->u[i] + d->n_blocks[i];
        if (rows * cols > d->max_numel) d->max_numel = rows * cols;
        if (cols > d->max_cols) d->max_cols = cols;
    }
    BB_CALL(bb_malloc((void **)&d->score, sizeof(float) * (size_t)d->max_numel, "wave scores"));
    BB_CALL(bb_malloc((void **)&d->h, sizeof(float) * (size_t)(d->max_cols * d->max_cols), "Gram f32"));
    BB_CALL(bb_malloc((void **)&d->xnorm, sizeof(float) * (size_t)d->max_cols, "channel norms"));
    return BB_OK;
}

static void teardown(decay *d) {
    for (int i = 0; d->u && i < d->n_mat; i++) free(d->u[i]);
    free(d->u);
    free(d->n_blocks);
    free(d->tensors);
    free(d->layer_target);
    free(d->owl);
    free(d->score);
    free(d->h);
    free(d->xnorm);
}

int bb_decay_active(const bb_config *c) {
    return strcmp(c->prune.method, "none") && !(c->prune.target == 0 && !strcmp(c->prune.pattern, "unstructured"));
}

bb_status bb_decay_begin(bb_run *r) {
    const bb_config *c = &r->cfg;
    if (!bb_decay_active(c)) {
        bb_info("decay   nothing to prune: prune.method = %s, prune.target = %g", c->prune.method, c->prune.target);
        return BB_OK;
    }
    decay *d;
    BB_CALL(bb_calloc((void **)&d, 1, sizeof *d, "decay state"));
    bb_status st = setup(d, r);
    if (st != BB_OK) {
        teardown(d);
        free(d);
        return st;
    }
    r->decay = d;
    if (d->opts.pattern.m)
        bb_info("decay   %s %s in one wave (N:M groups are filled at once; prune.target is ignored)", c->prune.method,
                c->prune.pattern);
    else
        bb_info("decay   %s to sparsity %g, at most %g of the remaining weights per wave%s%s", c->prune.method,
                c->prune.target, c->prune.per_wave, d->one_shot ? " (one wave reaches it: one-shot)" : "",
                c->prune.owl ? ", OWL layer ratios" : "");
    return BB_OK;
}

void bb_decay_end(bb_run *r) {
    if (!r->decay) return;
    teardown(r->decay);
    free(r->decay);
    r->decay = NULL;
}
