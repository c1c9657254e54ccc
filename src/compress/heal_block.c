/* heal_block.c — block-level healing: Adam on low-rank factors against the dense block's outputs. */
#include "compress/heal_block.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/events.h"
#include "core/log.h"
#include "core/rng.h"

void bb_heal_block_opts_default(bb_heal_block_opts *o) {
    *o = (bb_heal_block_opts){.steps = 200,
                              .lr = 1e-3,
                              .beta1 = 0.9,
                              .beta2 = 0.999,
                              .eps = 1e-8,
                              .micro_batch = 8,
                              .rank = 8,
                              .train_weights = 0,
                              .seed = 0};
}

double bb_heal_block_mse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        s += d * d;
    }
    return n > 0 ? s / (double)n : 0.0;
}

static int healed(const bb_heal_block_layer *L, int k) { return !L->linears || (L->linears >> k & 1u); }

static void block_weights(const bb_heal_block_layer *L, bb_block_weights *w, int *max_rank) {
    memset(w, 0, sizeof *w);
    w->attn_norm = L->attn_norm;
    w->ffn_norm = L->ffn_norm;
    for (int k = 0; k < 3; k++) w->bias[k] = L->bias[k];
    *max_rank = 0;
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        w->w[k] = L->w[k];
        if (L->lora[k]) {
            w->lora_a[k] = L->lora[k]->a;
            w->lora_b[k] = L->lora[k]->b;
            w->rank[k] = L->lora[k]->rank;
            if (w->rank[k] > *max_rank) *max_rank = w->rank[k];
        }
    }
}

bb_status bb_heal_block_forward(const bb_model_config *c, const bb_heal_block_layer *L, const float *x, int n_seq,
                                int seq_len, int micro_batch, float *y) {
    BB_CHECK(n_seq >= 1 && micro_batch >= 1, BB_ERR_ARG, "block forward of %d sequences in micro-batches of %d", n_seq,
             micro_batch);
    bb_block_weights w;
    int max_rank;
    block_weights(L, &w, &max_rank);
    int mb = micro_batch < n_seq ? micro_batch : n_seq;
    int64_t per_seq = (int64_t)seq_len * c->dim;
    bb_block *b = NULL;
    BB_CALL(bb_block_create(c, mb, seq_len, max_rank, &b));
    bb_status st = BB_OK;
    for (int s0 = 0; s0 < n_seq && !st; s0 += mb) {
        int ns = n_seq - s0 < mb ? n_seq - s0 : mb;
        st = bb_block_forward(b, &w, x + s0 * per_seq, ns, y + s0 * per_seq);
    }
    bb_block_destroy(&b);
    return st;
}

/* ---- the optimizer ---------------------------------------------------------------------------------------- */

/* One trained array: parameters, gradient, Adam moments; keep (NULL = all) freezes the pruned entries. */
typedef struct {
    float *p, *g, *m, *v;
    int64_t n;
    const bb_mask *keep;
    float *proj;   /* straight-through: the weights the block uses, project(p) after each update; else NULL */
    float *latent; /* owned p when proj is set */
    int kind;      /* the linear, for the projection */
    int64_t rows, cols;
} param;

static void adam(param *q, double lr, double b1, double b2, double eps, int t) {
    double c1 = 1 - pow(b1, t), c2 = 1 - pow(b2, t);
    for (int64_t i = 0; i < q->n; i++) {
        if (q->keep && !bb_mask_get(q->keep, i / q->keep->cols, i % q->keep->cols)) continue;
        double g = q->g[i], m = b1 * q->m[i] + (1 - b1) * g, v = b2 * q->v[i] + (1 - b2) * g * g;
        q->m[i] = (float)m;
        q->v[i] = (float)v;
        q->p[i] -= (float)(lr * (m / c1) / (sqrt(v / c2) + eps));
    }
}

static bb_status check_opts(const bb_heal_block_opts *o, int n_seq, int seq_len) {
    BB_CHECK(o->steps >= 0, BB_ERR_ARG, "block healing: steps %d must be >= 0", o->steps);
    BB_CHECK(o->lr > 0 && isfinite(o->lr), BB_ERR_ARG, "block healing: learning rate %g must be positive", o->lr);
    BB_CHECK(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1, BB_ERR_ARG,
             "block healing: Adam betas %g, %g must lie in [0, 1)", o->beta1, o->beta2);
    BB_CHECK(o->eps > 0 && isfinite(o->eps), BB_ERR_ARG, "block healing: Adam eps %g must be positive", o->eps);
    BB_CHECK(o->micro_batch >= 1, BB_ERR_ARG, "block healing: micro-batch %d must be >= 1", o->micro_batch);
    BB_CHECK(o->rank >= 1 || (o->rank == 0 && o->train_weights), BB_ERR_ARG,
             "block healing: rank %d must be >= 1 (0 only with train_weights: weights alone, no factors)", o->rank);
    BB_CHECK(n_seq >= 1 && seq_len >= 1, BB_ERR_ARG, "block healing on %d sequences of %d tokens: need at least one",
             n_seq, seq_len);
    return BB_OK;
}

/* Create missing factors, give all-zero ones a random B, and check shapes. */
static bb_status prepare_factors(const bb_model_config *c, bb_heal_block_layer *L, const bb_heal_block_opts *o) {
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(c, (bb_linear_kind)k, &out, &in);
        const char *name = bb_linear_name((bb_linear_kind)k);
        if (L->mask[k])
            BB_CHECK(L->mask[k]->rows == out && L->mask[k]->cols == in, BB_ERR_ARG,
                     "mask of %s is (%lld, %lld); the weight is (%lld, %lld)", name, (long long)L->mask[k]->rows,
                     (long long)L->mask[k]->cols, (long long)out, (long long)in);
        if (!healed(L, k)) continue;
        if (!L->lora[k] && o->rank == 0) continue;
        if (!L->lora[k]) BB_CALL(bb_lora_create(out, in, o->rank, &L->lora[k]));
        bb_lora *f = L->lora[k];
        BB_CHECK(f->rows == out && f->cols == in, BB_ERR_ARG,
                 "factors of %s are for a (%lld, %lld) weight; the block's is (%lld, %lld)", name, (long long)f->rows,
                 (long long)f->cols, (long long)out, (long long)in);
        int zero = 1;
        for (int64_t i = 0; i < out * f->rank && zero; i++) zero = f->a[i] == 0.0f;
        for (int64_t i = 0; i < in * f->rank && zero; i++) zero = f->b[i] == 0.0f;
        if (zero) {
            char stream[64];
            snprintf(stream, sizeof stream, "heal_block.%s", name);
            bb_rng_fill_normal(bb_rng_make(o->seed, bb_rng_stream_id(stream)), 0, (size_t)(in * f->rank), f->b);
            float s = (float)(1.0 / sqrt((double)in));
            for (int64_t i = 0; i < in * f->rank; i++) f->b[i] *= s;
        }
    }
    return BB_OK;
}

bb_status bb_heal_block(const bb_model_config *c, bb_heal_block_layer *L, const float *x, const float *y, int n_seq,
                        int seq_len, const bb_heal_block_opts *o, double *loss) {
    BB_CALL(check_opts(o, n_seq, seq_len));
    BB_CALL(prepare_factors(c, L, o));
    bb_block_weights w;
    int max_rank;
    block_weights(L, &w, &max_rank);
    int mb = o->micro_batch < n_seq ? o->micro_batch : n_seq, np = 0;
    int64_t per_seq = (int64_t)seq_len * c->dim, N = (int64_t)n_seq * per_seq;
    param ps[3 * BB_LIN_COUNT];
    bb_block_grads g;
    memset(&g, 0, sizeof g);
    memset(ps, 0, sizeof ps);
    bb_block *b = NULL;
    float *yb = NULL, *dy = NULL;
    bb_status st = BB_OK;
    int timing = 0;
    double fwd = 0, bwd = 0;
    BB_CALL_GOTO(st, done, bb_block_create(c, mb, seq_len, max_rank, &b));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&yb, sizeof(float) * (size_t)(mb * per_seq), "healing outputs"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&dy, sizeof(float) * (size_t)(mb * per_seq), "healing gradients"));
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        if (!healed(L, k)) continue;
        int64_t out, in;
        bb_block_linear_shape(c, (bb_linear_kind)k, &out, &in);
        bb_lora *f = L->lora[k];
        param want[3] = {{.p = f ? f->a : NULL, .n = f ? out * f->rank : 0},
                         {.p = f ? f->b : NULL, .n = f ? in * f->rank : 0},
                         {.p = L->w[k], .n = out * in, .keep = L->mask[k]}};
        float **dst[3] = {&g.d_a[k], &g.d_b[k], &g.d_w[k]};
        for (int j = f ? 0 : 2; j < (o->train_weights ? 3 : 2); j++) {
            param *q = &ps[np++];
            *q = want[j];
            BB_CALL_GOTO(st, done, bb_calloc((void **)&q->g, (size_t)q->n, sizeof(float), "healing gradient"));
            BB_CALL_GOTO(st, done, bb_calloc((void **)&q->m, (size_t)q->n, sizeof(float), "Adam first moment"));
            BB_CALL_GOTO(st, done, bb_calloc((void **)&q->v, (size_t)q->n, sizeof(float), "Adam second moment"));
            *dst[j] = q->g;
        }
        if (o->train_weights && o->project) { /* W trains as a latent copy; the block uses its projection */
            param *q = &ps[np - 1];
            BB_CALL_GOTO(st, done, bb_malloc((void **)&q->latent, sizeof(float) * (size_t)q->n, "latent weights"));
            memcpy(q->latent, L->w[k], sizeof(float) * (size_t)q->n);
            q->proj = L->w[k];
            q->p = q->latent;
            q->kind = k;
            q->rows = out;
            q->cols = in;
        }
    }
    bb_block_flops(c, n_seq, seq_len, &w, o->train_weights, &fwd, &bwd);
    bb_event_begin("heal.block");
    timing = 1;
    for (int step = 0; step <= o->steps; step++) {
        int last = step == o->steps; /* the final pass only measures the loss */
        if (last && !loss) break;
        for (int i = 0; i < np; i++) memset(ps[i].g, 0, sizeof(float) * (size_t)ps[i].n);
        double sum = 0, scale = 2.0 / (double)N;
        for (int s0 = 0; s0 < n_seq; s0 += mb) {
            int ns = n_seq - s0 < mb ? n_seq - s0 : mb;
            int64_t n = ns * per_seq;
            const float *ys = y + s0 * per_seq;
            BB_CALL_GOTO(st, done, bb_block_forward(b, &w, x + s0 * per_seq, ns, yb));
            for (int64_t i = 0; i < n; i++) {
                double d = (double)yb[i] - ys[i];
                sum += d * d;
                dy[i] = (float)(scale * d);
            }
            if (!last) BB_CALL_GOTO(st, done, bb_block_backward(b, &w, dy, NULL, &g));
        }
        double l = sum / (double)N;
        if (loss) loss[step] = l;
        BB_CHECK_GOTO(st, done, isfinite(l), BB_ERR_NUMERIC,
                      "block healing: the loss is %g at step %d (learning rate %g too high?)", l, step, o->lr);
        if (!last)
            for (int i = 0; i < np; i++) {
                param *q = &ps[i];
                adam(q, o->lr, o->beta1, o->beta2, o->eps, step + 1);
                if (q->proj) {
                    memcpy(q->proj, q->latent, sizeof(float) * (size_t)q->n);
                    BB_CALL_GOTO(
                        st, done,
                        o->project(o->project_ud, L->layer, (bb_linear_kind)q->kind, q->rows, q->cols, q->proj));
                }
            }
    }
done:
    if (timing) bb_event_end("heal.block", o->steps * (fwd + bwd), 0);
    for (int i = 0; i < np; i++) {
        free(ps[i].g);
        free(ps[i].m);
        free(ps[i].v);
        free(ps[i].latent);
    }
    free(yb);
    free(dy);
    bb_block_destroy(&b);
    return st;
}

/* ---- a whole model ---------------------------------------------------------------------------------------- */

typedef struct {
    float *norm[2], *bias[3], *w[BB_LIN_COUNT];
} dense_layer;

static void free_dense(dense_layer *d) {
    for (int i = 0; i < 2; i++) free(d->norm[i]);
    for (int i = 0; i < 3; i++) free(d->bias[i]);
    for (int k = 0; k < BB_LIN_COUNT; k++) free(d->w[k]);
    memset(d, 0, sizeof *d);
}

static bb_status read_f32(const bb_tensor *t, float **out) {
    BB_CALL(bb_malloc((void **)out, sizeof(float) * (size_t)bb_tensor_numel(t), t->name));
    BB_CALL(bb_tensor_read_f32(t, 0, bb_tensor_rows(t), *out));
    return BB_OK;
}

static bb_status load_dense(const bb_model *m, int l, dense_layer *d) {
    bb_layer_weights *lw = &m->layers[l];
    BB_CALL(read_f32(&lw->attn_norm, &d->norm[0]));
    BB_CALL(read_f32(&lw->ffn_norm, &d->norm[1]));
    if (m->cfg.attn_bias) {
        BB_CALL(read_f32(&lw->bq, &d->bias[0]));
        BB_CALL(read_f32(&lw->bk, &d->bias[1]));
        BB_CALL(read_f32(&lw->bv, &d->bias[2]));
    }
    for (int k = 0; k < BB_LIN_COUNT; k++) BB_CALL(read_f32(bb_layer_linear(lw, (bb_linear_kind)k), &d->w[k]));
    return BB_OK;
}

static void swap(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

bb_status bb_heal_block_model(const bb_model *dense, float *const *work, const bb_mask *const *masks, bb_lora **lora,
                              const bb_tokens *windows, int layer_begin, int layer_end, bb_heal_target target,
                              const bb_heal_block_opts *o, double *loss) {
    const bb_model_config *c = &dense->cfg;
    int S = windows->n_seq, T = windows->seq_len;
    BB_CHECK(layer_begin >= 0 && layer_begin < layer_end && layer_end <= c->n_layers, BB_ERR_ARG,
             "block healing of layers [%d, %d): the model has layers 0..%d", layer_begin, layer_end, c->n_layers - 1);
    BB_CHECK(T >= 1 && S >= 1 && T <= c->max_seq_len, BB_ERR_ARG,
             "block healing needs calibration windows (n_seq, seq_len) within the context %d (got %d x %d; cut a "
             "flat stream with bb_calib_sample_windows)",
             c->max_seq_len, S, T);
    BB_CHECK(target >= 0 && target < BB_HEAL_TARGET_COUNT, BB_ERR_ARG, "unknown healing target %d", (int)target);
    BB_CALL(check_opts(o, S, T));
    int64_t n = (int64_t)S * T * c->dim;
    float *x = NULL, *xd = NULL, *y = NULL, *tmp = NULL;
    dense_layer d;
    memset(&d, 0, sizeof d);
    bb_status st = BB_OK;
    int model = target == BB_HEAL_TARGET_MODEL;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&x, sizeof(float) * (size_t)n, "healing stream"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&y, sizeof(float) * (size_t)n, "healing targets"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&tmp, sizeof(float) * (size_t)n, "healing stream"));
    if (model) BB_CALL_GOTO(st, done, bb_malloc((void **)&xd, sizeof(float) * (size_t)n, "dense stream"));
    for (int64_t r = 0; r < (int64_t)S * T; r++) {
        int id = windows->ids[r];
        BB_CHECK_GOTO(st, done, id >= 0 && id < c->vocab_size, BB_ERR_ARG,
                      "token id %d at index %lld is outside the "
                      "vocabulary (0..%d)",
                      id, (long long)r, c->vocab_size - 1);
        BB_CALL_GOTO(st, done, bb_tensor_read_f32(&dense->tok_embd, id, 1, x + r * c->dim));
    }
    if (model) memcpy(xd, x, sizeof(float) * (size_t)n);
    int mb = o->micro_batch;
    for (int l = 0; l < layer_end; l++) {
        BB_CALL_GOTO(st, done, load_dense(dense, l, &d));
        bb_heal_block_layer L = {.attn_norm = d.norm[0], .ffn_norm = d.norm[1], .layer = l};
        for (int k = 0; k < 3; k++) L.bias[k] = d.bias[k];
        bb_heal_block_layer D = L; /* the dense block */
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            L.w[k] = work[l * BB_LIN_COUNT + k];
            L.mask[k] = masks ? masks[l * BB_LIN_COUNT + k] : NULL;
            L.lora[k] = lora[l * BB_LIN_COUNT + k];
            D.w[k] = d.w[k];
        }
        if (l >= layer_begin) {
            double t0 = bb_now(), *lc = loss ? loss + (int64_t)(l - layer_begin) * (o->steps + 1) : NULL;
            BB_CALL_GOTO(st, done, bb_heal_block_forward(c, &D, model ? xd : x, S, T, mb, y));
            bb_status hs = bb_heal_block(c, &L, x, y, S, T, o, lc);
            for (int k = 0; k < BB_LIN_COUNT; k++) lora[l * BB_LIN_COUNT + k] = L.lora[k]; /* created ones */
            BB_CALL_GOTO(st, done, hs);
            if (lc)
                bb_info("heal_block: layer %d: loss %.5g -> %.5g in %d steps (%.1f s)", l, lc[0], lc[o->steps],
                        o->steps, bb_now() - t0);
            if (model) swap(&xd, &y);
        } else if (model) {
            BB_CALL_GOTO(st, done, bb_heal_block_forward(c, &D, xd, S, T, mb, tmp));
            swap(&xd, &tmp);
        }
        if (l + 1 < layer_end) {
            BB_CALL_GOTO(st, done, bb_heal_block_forward(c, &L, x, S, T, mb, tmp));
            swap(&x, &tmp);
        }
        free_dense(&d);
    }
done:
    free_dense(&d);
    free(x);
    free(xd);
    free(y);
    free(tmp);
    return st;
}

bb_status bb_heal_block_embed(const bb_model *dense, const bb_tokens *windows, float *x) {
    const bb_model_config *c = &dense->cfg;
    int64_t rows = (int64_t)windows->n_seq * windows->seq_len;
    for (int64_t r = 0; r < rows; r++) {
        int id = windows->ids[r];
        BB_CHECK(id >= 0 && id < c->vocab_size, BB_ERR_ARG, "token id %d at index %lld is outside the vocabulary (0..%d)",
                 id, (long long)r, c->vocab_size - 1);
        BB_CALL(bb_tensor_read_f32(&dense->tok_embd, id, 1, x + r * c->dim));
    }
    return BB_OK;
}

bb_status bb_heal_block_range(const bb_model *dense, float *const *work, const bb_mask *const *masks, bb_lora **lora,
                              const unsigned *linears, float *x, int n_seq, int seq_len, int layer_begin,
                              int layer_end, const bb_heal_block_opts *o, double *loss) {
    const bb_model_config *c = &dense->cfg;
    BB_CHECK(layer_begin >= 0 && layer_begin <= layer_end && layer_end <= c->n_layers, BB_ERR_ARG,
             "block healing of layers [%d, %d): the model has layers 0..%d", layer_begin, layer_end, c->n_layers - 1);
    BB_CALL(check_opts(o, n_seq, seq_len));
    int64_t n = (int64_t)n_seq * seq_len * c->dim;
    float *y = NULL, *tmp = NULL;
    dense_layer d;
    memset(&d, 0, sizeof d);
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&y, sizeof(float) * (size_t)n, "healing targets"));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&tmp, sizeof(float) * (size_t)n, "healing stream"));
    for (int l = layer_begin; l < layer_end; l++) {
        BB_CALL_GOTO(st, done, load_dense(dense, l, &d));
        bb_heal_block_layer L = {.attn_norm = d.norm[0], .ffn_norm = d.norm[1], .layer = l};
        for (int k = 0; k < 3; k++) L.bias[k] = d.bias[k];
        bb_heal_block_layer D = L;
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            L.w[k] = work[l * BB_LIN_COUNT + k];
            L.mask[k] = masks ? masks[l * BB_LIN_COUNT + k] : NULL;
            L.lora[k] = lora[l * BB_LIN_COUNT + k];
            D.w[k] = d.w[k];
        }
        unsigned which = linears ? linears[l] : 0x7f;
        if (which) {
            L.linears = which;
            double *lc = loss ? loss + (int64_t)(l - layer_begin) * (o->steps + 1) : NULL;
            BB_CALL_GOTO(st, done, bb_heal_block_forward(c, &D, x, n_seq, seq_len, o->micro_batch, y));
            bb_status hs = bb_heal_block(c, &L, x, y, n_seq, seq_len, o, lc);
            for (int k = 0; k < BB_LIN_COUNT; k++) lora[l * BB_LIN_COUNT + k] = L.lora[k];
            BB_CALL_GOTO(st, done, hs);
        }
        BB_CALL_GOTO(st, done, bb_heal_block_forward(c, &L, x, n_seq, seq_len, o->micro_batch, tmp));
        memcpy(x, tmp, sizeof(float) * (size_t)n);
        free_dense(&d);
    }
done:
    free_dense(&d);
    free(y);
    free(tmp);
    return st;
}
