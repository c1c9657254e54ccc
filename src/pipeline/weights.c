/* weights.c — f32 working copies of the linear weights and the derived model that views them. */
#include "pipeline/weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct bb_weights {
    const bb_model *base;
    bb_model derived; /* shallow copy of base with its own layer table */
    int l0, l1;
    float **w; /* [(l1 - l0) * BB_LIN_COUNT] */
    size_t bytes;
    bb_mask *const *masks; /* borrowed: [n_layers * BB_LIN_COUNT] or NULL */
};

static bb_status copy_one(bb_weights *ws, int layer, bb_linear_kind k) {
    bb_tensor *t = bb_layer_linear(&ws->derived.layers[layer], k);
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    size_t n = (size_t)rows * (size_t)cols;
    float *buf;
    BB_CALL(bb_malloc((void **)&buf, n * sizeof(float), t->name));
    ws->w[(layer - ws->l0) * BB_LIN_COUNT + k] = buf;
    ws->bytes += n * sizeof(float);
    BB_CALL(bb_tensor_read_f32(t, 0, rows, buf));
    for (size_t i = 0; i < n; i++)
        BB_CHECK(isfinite(buf[i]), BB_ERR_NUMERIC,
                 "%s: tensor %s has a non-finite value (%g) at row %lld, column %lld: the model file is damaged",
                 ws->base->path, t->name, (double)buf[i], (long long)(i / (size_t)cols), (long long)(i % (size_t)cols));
    char name[BB_TENSOR_NAME_MAX];
    int64_t shape[2] = {rows, cols};
    memcpy(name, t->name, sizeof name);
    BB_CALL(bb_tensor_init_memory(t, name, BB_F32, 2, shape, buf, n * sizeof(float)));
    return BB_OK;
}

bb_status bb_weights_create(const bb_model *base, int layer_begin, int layer_end, bb_weights **out) {
    *out = NULL;
    int L = base->cfg.n_layers;
    if (layer_end == 0) layer_end = L;
    BB_CHECK(layer_begin >= 0 && layer_begin <= layer_end && layer_end <= L, BB_ERR_ARG,
             "layer range [%d, %d) is outside the model's %d layers", layer_begin, layer_end, L);
    bb_weights *ws;
    BB_CALL(bb_calloc((void **)&ws, 1, sizeof *ws, "working weights"));
    ws->base = base;
    ws->l0 = layer_begin;
    ws->l1 = layer_end;
    ws->derived = *base;
    /* The derived model owns no files or reader state: the base does. */
    ws->derived.n_files = 0;
    ws->derived.priv = NULL;
    ws->derived.priv_free = NULL;
    ws->derived.layers = NULL;
    bb_status st = bb_calloc((void **)&ws->derived.layers, (size_t)(L ? L : 1), sizeof(bb_layer_weights), "layer table");
    if (st == BB_OK) {
        memcpy(ws->derived.layers, base->layers, (size_t)L * sizeof(bb_layer_weights));
        st = bb_calloc((void **)&ws->w, (size_t)((layer_end - layer_begin) * BB_LIN_COUNT + 1), sizeof(float *),
                       "working weight table");
    }
    for (int l = layer_begin; st == BB_OK && l < layer_end; l++)
        for (int k = 0; st == BB_OK && k < BB_LIN_COUNT; k++) st = copy_one(ws, l, (bb_linear_kind)k);
    if (st != BB_OK) {
        bb_weights_destroy(&ws);
        return bb_trace(st, __FILE__, __LINE__, "bb_weights_create");
    }
    *out = ws;
    return BB_OK;
}

void bb_weights_destroy(bb_weights **pw) {
    if (!pw || !*pw) return;
    bb_weights *ws = *pw;
    if (ws->w)
        for (int i = 0; i < (ws->l1 - ws->l0) * BB_LIN_COUNT; i++) free(ws->w[i]);
    free(ws->w);
    free(ws->derived.layers);
    free(ws);
    *pw = NULL;
}

float *bb_weights_linear(bb_weights *w, int layer, bb_linear_kind kind) {
    if (layer < w->l0 || layer >= w->l1 || (int)kind < 0 || kind >= BB_LIN_COUNT) return NULL;
    return w->w[(layer - w->l0) * BB_LIN_COUNT + kind];
}

const bb_tensor *bb_weights_tensor(const bb_weights *w, int layer, bb_linear_kind kind) {
    if (layer < 0 || layer >= w->derived.cfg.n_layers || (int)kind < 0 || kind >= BB_LIN_COUNT) return NULL;
    return bb_layer_linear(&w->derived.layers[layer], kind);
}

const bb_model *bb_weights_model(const bb_weights *w) { return &w->derived; }

void bb_weights_range(const bb_weights *w, int *layer_begin, int *layer_end) {
    *layer_begin = w->l0;
    *layer_end = w->l1;
}

size_t bb_weights_bytes(const bb_weights *w) { return w->bytes; }

void bb_weights_set_masks(bb_weights *w, bb_mask *const *masks) { w->masks = masks; }

const bb_mask *bb_weights_mask(const bb_weights *w, int layer, bb_linear_kind kind) {
    if (!w->masks || layer < w->l0 || layer >= w->l1) return NULL;
    return w->masks[layer * BB_LIN_COUNT + kind];
}
