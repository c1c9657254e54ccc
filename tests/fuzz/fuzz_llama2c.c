/* fuzz_llama2c.c — libFuzzer target: the from-memory llama2.c reader, a full read of every
 * tensor it maps, and a two-token prefill plus cached decode on the small models it accepts. */
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"
#include "io/llama2c.h"
#include "io/model.h"
#include "model/forward.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bb_error_set_quiet(1);
    bb_log_set_level(BB_LOG_ERROR);
    return 0;
}

static bb_status read_all(const bb_tensor *t, void *ud) {
    (void)ud;
    float *buf = malloc(sizeof(float) * (size_t)bb_tensor_numel(t));
    BB_CHECK(buf, BB_ERR_OOM, "fuzz buffer");
    bb_status st = bb_tensor_read_f32(t, 0, bb_tensor_rows(t), buf);
    free(buf);
    return st;
}

/* Small enough that a forward pass stays fast: weights are bounded by the input size. */
static void run_forward(const bb_model *m) {
    const bb_model_config *c = &m->cfg;
    int T = c->max_seq_len < 2 ? c->max_seq_len : 2;
    bb_forward *f = NULL;
    if (bb_forward_create(m, T, &f) != BB_OK) return;
    float *logits = malloc(sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    int tokens[2] = {0, c->vocab_size - 1};
    if (logits) {
        bb_forward_prefill(f, tokens, 1, T, logits);
        for (int t = 0; t < T; t++) bb_forward_decode(f, &tokens[t], 1, t, logits);
        bb_argmax(logits, c->vocab_size);
    }
    free(logits);
    bb_forward_destroy(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bb_model *m = NULL;
    if (bb_llama2c_parse(data, size, "fuzz.bin", &m) != BB_OK) return 0;
    if (bb_model_validate(m) == BB_OK && bb_model_for_each_tensor(m, read_all, NULL) == BB_OK &&
        m->cfg.vocab_size <= 4096 && m->cfg.n_heads <= 64)
        run_forward(m);
    bb_model_destroy(&m);
    return 0;
}
