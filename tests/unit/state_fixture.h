/* state_fixture.h — a bb_state over a small synthetic model for checkpoint and history tests: dense weights
 * read from the model, and random changes (prune, regrow, weight edits, factors, bits, counters, metrics). */
#ifndef BB_TEST_STATE_FIXTURE_H
#define BB_TEST_STATE_FIXTURE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/model.h"
#include "pipeline/state.h"

typedef struct {
    bb_model *model;
    int n_lin;
    float **w;
    const bb_tensor **t;
    bb_state s;
} fixture;

/* Dense state of `spec` (a synthetic model). Returns 0 on success. */
static inline int fixture_open(fixture *fx, const char *spec) {
    memset(fx, 0, sizeof *fx);
    if (bb_model_open(spec, &fx->model) != BB_OK) return -1;
    int nl = fx->model->cfg.n_layers;
    fx->n_lin = nl * BB_LIN_COUNT;
    fx->w = calloc((size_t)fx->n_lin, sizeof *fx->w);
    fx->t = calloc((size_t)fx->n_lin, sizeof *fx->t);
    for (int i = 0; i < fx->n_lin; i++) {
        fx->t[i] = bb_layer_linear(&fx->model->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        int64_t rows = bb_tensor_rows(fx->t[i]), cols = bb_tensor_cols(fx->t[i]);
        fx->w[i] = malloc(sizeof(float) * (size_t)(rows * cols));
        if (bb_tensor_read_f32(fx->t[i], 0, rows, fx->w[i]) != BB_OK) return -1;
    }
    return bb_state_init_dense(&fx->s, nl, fx->w, fx->t) == BB_OK ? 0 : -1;
}

/* Fresh zeroed weight arrays with fx's shapes (for reading into). */
static inline float **fixture_blank_weights(const fixture *fx) {
    float **w = calloc((size_t)fx->n_lin, sizeof *w);
    for (int i = 0; i < fx->n_lin; i++)
        w[i] = calloc((size_t)bb_tensor_numel(fx->t[i]), sizeof(float));
    return w;
}

static inline void fixture_free_weights(float **w, int n) {
    if (!w) return;
    for (int i = 0; i < n; i++) free(w[i]);
    free(w);
}

static inline void fixture_close(fixture *fx) {
    bb_state_release(&fx->s);
    fixture_free_weights(fx->w, fx->n_lin);
    free(fx->t);
    bb_model_destroy(&fx->model);
}

static inline float fixture_uniform(unsigned *seed) { return (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f; }

/* One wave of random changes to s: prune ~frac of the kept weights (zeroing them), regrow a few pruned ones
 * with new values, nudge some kept values, attach or grow factors on a few tensors, change bits, counters and
 * append a metrics row. */
static inline void fixture_wave(bb_state *s, unsigned *seed, double frac) {
    for (int i = 0; i < s->n_lin; i++) {
        bb_mask *m = s->masks[i];
        float *w = s->w[i];
        for (int64_t r = 0; r < m->rows; r++)
            for (int64_t c = 0; c < m->cols; c++) {
                int64_t k = r * m->cols + c;
                double u = (double)rand_r(seed) / RAND_MAX;
                if (bb_mask_get(m, r, c)) {
                    if (u < frac) {
                        bb_mask_set(m, r, c, 0);
                        w[k] = 0.0f;
                    } else if (u < frac + 0.01) {
                        w[k] += 0.001f * fixture_uniform(seed);
                    }
                } else if (u < 0.02) {
                    bb_mask_set(m, r, c, 1);
                    w[k] = fixture_uniform(seed);
                }
            }
        if (rand_r(seed) % 5 == 0) {
            int rank = s->lora[i] ? s->lora[i]->rank + 1 : 2;
            bb_lora *l = NULL;
            if (bb_lora_create(m->rows, m->cols, rank, &l) == BB_OK) {
                for (int64_t k = 0; k < m->rows * rank; k++) l->a[k] = fixture_uniform(seed);
                for (int64_t k = 0; k < m->cols * rank; k++) l->b[k] = fixture_uniform(seed);
                bb_lora_destroy(&s->lora[i]);
                s->lora[i] = l;
            }
        }
        if (rand_r(seed) % 3 == 0) s->bits[i] = 2 + rand_r(seed) % 7;
    }
    s->wave++;
    s->losing = rand_r(seed) % 3;
    s->rollback_left = rand_r(seed) % 4;
    s->frozen = rand_r(seed) % 2;
    s->rng_counter += ((uint64_t)rand_r(seed) << 32) | 12345u;
    bb_wave_metrics *nm = realloc(s->metrics, sizeof *nm * (size_t)(s->n_metrics + 1));
    if (!nm) return;
    s->metrics = nm;
    bb_wave_metrics *row = &s->metrics[s->n_metrics++];
    memset(row, 0, sizeof *row);
    row->wave = s->wave;
    row->ppl = 5 + fixture_uniform(seed);
    row->dppl = 0.01 * s->wave;
    row->kld = s->wave % 2 ? NAN : 0.02;
    row->top1 = 0.9;
    row->sparsity = 0.1 * s->wave;
    row->bits = 4.5;
    row->lora_values = 1000 * s->wave;
    row->rolled_back = s->wave == 3;
    for (int k = 0; k < 8; k++) row->seconds[k] = k * 0.5 + s->wave;
}

/* 1 if the two states hold the same values bit for bit (weights, masks, factors, bits, counters, metrics). */
static inline int fixture_same(const bb_state *a, const bb_state *b, char *why, size_t n) {
    if (a->n_lin != b->n_lin || a->wave != b->wave || a->losing != b->losing || a->rollback_left != b->rollback_left ||
        a->frozen != b->frozen || a->rng_counter != b->rng_counter || a->n_metrics != b->n_metrics) {
        snprintf(why, n, "counters differ (wave %d vs %d)", a->wave, b->wave);
        return 0;
    }
    for (int i = 0; i < a->n_lin; i++) {
        size_t nw = (size_t)bb_tensor_numel(a->t[i]);
        if (memcmp(a->w[i], b->w[i], nw * sizeof(float))) {
            snprintf(why, n, "weights of %s differ", a->t[i]->name);
            return 0;
        }
        if (memcmp(a->masks[i]->bits, b->masks[i]->bits, bb_mask_nbytes(a->masks[i]))) {
            snprintf(why, n, "mask of %s differs", a->t[i]->name);
            return 0;
        }
        if (a->bits[i] != b->bits[i]) {
            snprintf(why, n, "bits of %s: %d vs %d", a->t[i]->name, a->bits[i], b->bits[i]);
            return 0;
        }
        const bb_lora *la = a->lora[i], *lb = b->lora[i];
        if (!la != !lb || (la && (la->rank != lb->rank ||
                                  memcmp(la->a, lb->a, sizeof(float) * (size_t)(la->rows * la->rank)) ||
                                  memcmp(la->b, lb->b, sizeof(float) * (size_t)(la->cols * la->rank))))) {
            snprintf(why, n, "factors of %s differ", a->t[i]->name);
            return 0;
        }
    }
    for (int k = 0; k < a->n_metrics; k++) {
        const bb_wave_metrics *x = &a->metrics[k], *y = &b->metrics[k];
        if (x->wave != y->wave || x->lora_values != y->lora_values || x->rolled_back != y->rolled_back ||
            memcmp(&x->ppl, &y->ppl, sizeof x->ppl) || memcmp(&x->dppl, &y->dppl, sizeof x->dppl) ||
            memcmp(&x->kld, &y->kld, sizeof x->kld) || memcmp(&x->top1, &y->top1, sizeof x->top1) ||
            memcmp(&x->sparsity, &y->sparsity, sizeof x->sparsity) || memcmp(&x->bits, &y->bits, sizeof x->bits) ||
            memcmp(x->seconds, y->seconds, sizeof x->seconds)) {
            snprintf(why, n, "metrics row %d differs", k);
            return 0;
        }
    }
    return 1;
}

#endif
