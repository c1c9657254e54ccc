/* fuzz_gguf.c — libFuzzer target: the from-memory GGUF reader, every accessor on what it
 * accepts, then the llama/qwen2 model mapping and a full read of every tensor. */
#include <stdint.h>
#include <stdlib.h>

#include "core/log.h"
#include "io/gguf.h"
#include "io/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bb_error_set_quiet(1);
    bb_log_set_level(BB_LOG_ERROR);
    return 0;
}

static void touch_metadata(const bb_gguf *g) {
    int64_t iv[64];
    float fv[64];
    for (int64_t i = 0; i < bb_gguf_n_kv(g); i++) {
        const char *key = bb_gguf_key_name(g, i);
        bb_gguf_str s;
        int64_t n;
        double d;
        bb_gguf_get_int(g, key, &n);
        bb_gguf_get_float(g, key, &d);
        bb_gguf_get_str(g, key, &s);
        uint64_t len = bb_gguf_arr_len(g, i);
        for (uint64_t k = 0; k < len; k += 64) {
            uint64_t m = len - k < 64 ? len - k : 64;
            bb_gguf_get_arr_int(g, key, k, m, iv);
            bb_gguf_get_arr_f32(g, key, k, m, fv);
        }
        for (uint64_t k = 0; k < len; k++)
            if (bb_gguf_get_arr_str(g, key, k, &s) != BB_OK) break;
    }
}

static unsigned touch_tensors(const bb_gguf *g) {
    unsigned acc = 0;
    for (int64_t i = 0; i < bb_gguf_n_tensors(g); i++) {
        const bb_gguf_tensor *t = bb_gguf_tensor_at(g, i);
        const uint8_t *p = t->data;
        acc += p[0] + p[t->nbytes - 1];
    }
    return acc;
}

static bb_status read_visit(const bb_tensor *t, void *ud) {
    int64_t cols = bb_tensor_cols(t);
    float *row = malloc((size_t)cols * sizeof *row);
    if (!row) return BB_ERR_OOM;
    for (int64_t r = 0; r < bb_tensor_rows(t); r++) {
        bb_status st = bb_tensor_read_f32(t, r, 1, row);
        if (st) {
            free(row);
            return st;
        }
        *(float *)ud += row[0] + row[cols - 1];
    }
    free(row);
    return BB_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bb_gguf *g = NULL;
    if (bb_gguf_open_memory(data, size, "fuzz input", &g) == BB_OK) {
        touch_metadata(g);
        volatile unsigned sink = touch_tensors(g);
        (void)sink;
        bb_gguf_destroy(&g);
        bb_model *m = NULL;
        if (bb_gguf_model_open_memory(data, size, "fuzz input", &m) == BB_OK && bb_model_validate(m) == BB_OK) {
            float acc = 0;
            bb_model_for_each_tensor(m, read_visit, &acc);
        }
        bb_model_destroy(&m);
    }
    bb_clear_error();
    return 0;
}
