/* state.c — the owned parts of a bb_state: a dense start, a deep copy, and their release. */
#include "pipeline/state.h"

#include "io/model.h"

#include <stdlib.h>
#include <string.h>

bb_status bb_state_init_dense(bb_state *s, int n_layers, float **w, const bb_tensor **t) {
    memset(s, 0, sizeof *s);
    s->n_layers = n_layers;
    s->n_lin = n_layers * BB_LIN_COUNT;
    s->w = w;
    s->t = t;
    bb_status st = bb_calloc((void **)&s->masks, (size_t)s->n_lin, sizeof *s->masks, "state masks");
    if (st == BB_OK) st = bb_calloc((void **)&s->lora, (size_t)s->n_lin, sizeof *s->lora, "state factors");
    if (st == BB_OK) st = bb_calloc((void **)&s->bits, (size_t)s->n_lin, sizeof *s->bits, "state bits");
    if (st == BB_OK) st = bb_calloc((void **)&s->metrics, 1, sizeof *s->metrics, "state metrics");
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        st = bb_mask_create(bb_tensor_rows(t[i]), bb_tensor_cols(t[i]), 1, &s->masks[i]);
    if (st != BB_OK) {
        bb_state_release(s);
        return bb_trace(st, __FILE__, __LINE__, "bb_state_init_dense");
    }
    s->n_metrics = 1;
    return BB_OK;
}

bb_status bb_state_copy_owned(const bb_state *src, bb_state *dst) {
    memset(dst, 0, sizeof *dst);
    *dst = *src;
    dst->masks = NULL;
    dst->lora = NULL;
    dst->bits = NULL;
    dst->metrics = NULL;
    int n = src->n_lin;
    bb_status st = bb_calloc((void **)&dst->masks, (size_t)n, sizeof *dst->masks, "state masks");
    if (st == BB_OK) st = bb_calloc((void **)&dst->lora, (size_t)n, sizeof *dst->lora, "state factors");
    if (st == BB_OK) st = bb_calloc((void **)&dst->bits, (size_t)n, sizeof *dst->bits, "state bits");
    if (st == BB_OK)
        st = bb_calloc((void **)&dst->metrics, (size_t)(src->n_metrics ? src->n_metrics : 1), sizeof *dst->metrics,
                       "state metrics");
    for (int i = 0; st == BB_OK && i < n; i++) {
        if (src->masks[i]) st = bb_mask_clone(src->masks[i], &dst->masks[i]);
        if (st == BB_OK && src->lora[i]) st = bb_lora_clone(src->lora[i], &dst->lora[i]);
    }
    if (st != BB_OK) {
        bb_state_release(dst);
        return bb_trace(st, __FILE__, __LINE__, "bb_state_copy_owned");
    }
    memcpy(dst->bits, src->bits, sizeof *dst->bits * (size_t)n);
    memcpy(dst->metrics, src->metrics, sizeof *dst->metrics * (size_t)src->n_metrics);
    return BB_OK;
}

void bb_state_release(bb_state *s) {
    if (!s) return;
    for (int i = 0; i < s->n_lin; i++) {
        if (s->masks) bb_mask_destroy(&s->masks[i]);
        if (s->lora) bb_lora_destroy(&s->lora[i]);
    }
    free(s->masks);
    free(s->lora);
    free(s->bits);
    free(s->metrics);
    s->masks = NULL;
    s->lora = NULL;
    s->bits = NULL;
    s->metrics = NULL;
    s->n_metrics = 0;
}
