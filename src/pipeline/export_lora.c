/* export_lora.c — low-rank factors as a GGUF LoRA adapter that llama.cpp loads with --lora. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "io/gguf.h"
#include "pipeline/export.h"

/* The entry's weight in base, checked against the factors' shape. */
static bb_status entry_tensor(const bb_model *base, const bb_export_lora_entry *e, const bb_tensor **out) {
    BB_CHECK(e->lora != NULL, BB_ERR_ARG, "LoRA adapter: entry for layer %d %s has no factors", e->layer,
             e->kind >= 0 && e->kind < BB_LIN_COUNT ? bb_linear_name(e->kind) : "?");
    BB_CHECK(e->layer >= 0 && e->layer < base->cfg.n_layers && e->kind >= 0 && e->kind < BB_LIN_COUNT, BB_ERR_ARG,
             "LoRA adapter: layer %d kind %d is outside the model's %d layers x %d linear weights", e->layer,
             (int)e->kind, base->cfg.n_layers, BB_LIN_COUNT);
    const bb_tensor *t = bb_layer_linear(&base->layers[e->layer], e->kind);
    BB_CHECK(bb_tensor_present(t) && t->ndim == 2, BB_ERR_ARG, "LoRA adapter: the model has no %s in layer %d",
             bb_linear_name(e->kind), e->layer);
    const bb_lora *f = e->lora;
    BB_CHECK(f->rows == bb_tensor_rows(t) && f->cols == bb_tensor_cols(t) && f->rank >= 1, BB_ERR_ARG,
             "LoRA adapter: factors of %s are for a (%lld, %lld) weight with rank %d; the weight is (%lld, %lld)",
             t->name, (long long)f->rows, (long long)f->cols, f->rank, (long long)bb_tensor_rows(t),
             (long long)bb_tensor_cols(t));
    for (int64_t i = 0; i < f->rows * f->rank; i++)
        BB_CHECK(isfinite(f->a[i]), BB_ERR_NUMERIC, "LoRA adapter: %s factor A element %lld is %g", t->name,
                 (long long)i, (double)f->a[i]);
    for (int64_t i = 0; i < f->rank * f->cols; i++)
        BB_CHECK(isfinite(f->b[i]), BB_ERR_NUMERIC, "LoRA adapter: %s factor B element %lld is %g", t->name,
                 (long long)i, (double)f->b[i]);
    *out = t;
    return BB_OK;
}

bb_status bb_export_lora_gguf(const bb_model *base, const bb_export_lora_entry *entries, int n, const char *name,
                              const char *path) {
    BB_CHECK(base && entries && n >= 1 && path, BB_ERR_ARG, "bb_export_lora_gguf: NULL argument or no factors");
    BB_CHECK(!base->cfg.attn_bias, BB_ERR_UNSUPPORTED,
             "%s: q/k/v biases have no place in the llama architecture; adapters are written for llama-style models",
             base->path);
    int alpha = 0;
    for (int i = 0; i < n; i++) {
        const bb_tensor *t = NULL;
        BB_CALL(entry_tensor(base, &entries[i], &t));
        for (int j = 0; j < i; j++)
            BB_CHECK(entries[j].layer != entries[i].layer || entries[j].kind != entries[i].kind, BB_ERR_ARG,
                     "LoRA adapter: %s has two sets of factors (entries %d and %d)", t->name, j, i);
        if (entries[i].lora->rank > alpha) alpha = entries[i].lora->rank;
    }
    bb_gguf_writer *w = NULL;
    float **bufs = NULL;
    int nbufs = 0;
    bb_status st;
    BB_CALL_GOTO(st, out, bb_calloc((void **)&bufs, (size_t)n, sizeof *bufs, "LoRA adapter buffers"));
    BB_CALL_GOTO(st, out, bb_gguf_writer_create(&w));
    const char *gname = name ? name : "birdbone LoRA adapter";
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "general.type", "adapter", 7));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "general.name", gname, strlen(gname)));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_str(w, "adapter.type", "lora", 4));
    BB_CALL_GOTO(st, out, bb_gguf_writer_add_f32(w, "adapter.lora.alpha", (float)alpha));
    for (int i = 0; i < n; i++) {
        const bb_export_lora_entry *e = &entries[i];
        const bb_lora *f = e->lora;
        const bb_tensor *t = bb_layer_linear(&base->layers[e->layer], e->kind);
        char tn[BB_TENSOR_NAME_MAX + 8]; /* the writer refuses names of 64 characters or more */
        /* lora_a = B (rank, cols): llama.cpp multiplies it with the input first. */
        int64_t shape_a[2] = {f->rank, f->cols}, shape_b[2] = {f->rows, f->rank};
        snprintf(tn, sizeof tn, "%s.lora_a", t->name);
        BB_CALL_GOTO(st, out,
                     bb_gguf_writer_add_tensor(w, tn, BB_GGML_F32, 2, shape_a, f->b,
                                               sizeof(float) * (size_t)(f->rank * f->cols)));
        /* lora_b = A (rows, rank) times rank / alpha, so llama.cpp's scale alpha / rank gives A B exactly
         * (exactly A when every rank equals alpha); its rows follow the base's rotary permutation. */
        float *b;
        BB_CALL_GOTO(st, out, bb_malloc((void **)&b, sizeof(float) * (size_t)(f->rows * f->rank), tn));
        bufs[nbufs++] = b;
        const float s = (float)f->rank / (float)alpha;
        const int permute = base->cfg.rope_style == BB_ROPE_HALF && (e->kind == BB_LIN_Q || e->kind == BB_LIN_K);
        for (int64_t r = 0; r < f->rows; r++) {
            const int64_t to = permute ? bb_export_rope_row(r, base->cfg.head_dim) : r;
            for (int j = 0; j < f->rank; j++) b[to * f->rank + j] = f->a[r * f->rank + j] * s;
        }
        snprintf(tn, sizeof tn, "%s.lora_b", t->name);
        BB_CALL_GOTO(st, out,
                     bb_gguf_writer_add_tensor(w, tn, BB_GGML_F32, 2, shape_b, b,
                                               sizeof(float) * (size_t)(f->rows * f->rank)));
    }
    BB_CALL_GOTO(st, out, bb_gguf_writer_write(w, path));
    bb_info("export  LoRA adapter %s: %d weights, alpha %d", path, n, alpha);
out:
    bb_gguf_writer_destroy(&w);
    for (int i = 0; i < nbufs; i++) free(bufs[i]);
    free(bufs);
    return st;
}
