/* state_load.c — a checkpoint's state or a model's dense state, for diff, hash and revert. */
#include "cli/state_load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bb_cli_is_hdf5(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8] = {0};
    FILE *f = fopen(path, "rb");
    int yes = f && fread(head, 1, 8, f) == 8 && !memcmp(head, sig, 8);
    if (f) fclose(f);
    return yes;
}

static bb_status load_model(const char *path, bb_cli_state *s) {
    BB_CALL(bb_model_open(path, &s->model));
    int n_lin = s->model->cfg.n_layers * BB_LIN_COUNT;
    BB_CALL(bb_calloc((void **)&s->w, (size_t)(n_lin ? n_lin : 1), sizeof *s->w, "model weights"));
    BB_CALL(bb_calloc((void **)&s->t, (size_t)(n_lin ? n_lin : 1), sizeof *s->t, "model tensors"));
    for (int i = 0; i < n_lin; i++) {
        s->t[i] = bb_layer_linear(&s->model->layers[i / BB_LIN_COUNT], (bb_linear_kind)(i % BB_LIN_COUNT));
        int64_t rows = bb_tensor_rows(s->t[i]);
        BB_CALL(bb_malloc((void **)&s->w[i], sizeof(float) * (size_t)bb_tensor_numel(s->t[i]), "model weights"));
        BB_CALL(bb_tensor_read_f32(s->t[i], 0, rows, s->w[i]));
    }
    BB_CALL(bb_state_init_dense(&s->dense, s->model->cfg.n_layers, s->w, s->t));
    s->state = &s->dense;
    return BB_OK;
}

bb_status bb_cli_state_load(const char *path, bb_cli_state *out) {
    memset(out, 0, sizeof *out);
    bb_status st;
    if (bb_cli_is_hdf5(path)) {
        st = bb_ckpt_load(path, &out->ckpt);
        if (st == BB_OK) out->state = &out->ckpt->state;
    } else {
        st = load_model(path, out);
    }
    if (st != BB_OK) {
        bb_cli_state_free(out);
        return bb_trace(st, __FILE__, __LINE__, path);
    }
    return BB_OK;
}

void bb_cli_state_free(bb_cli_state *s) {
    bb_ckpt_destroy(&s->ckpt);
    if (s->model) {
        bb_state_release(&s->dense);
        int n_lin = s->model->cfg.n_layers * BB_LIN_COUNT;
        for (int i = 0; s->w && i < n_lin; i++) free(s->w[i]);
    }
    free(s->w);
    free(s->t);
    bb_model_destroy(&s->model);
    memset(s, 0, sizeof *s);
}
