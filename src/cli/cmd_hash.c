/* cmd_hash.c — `birdbone hash MODEL|CHECKPOINT`: deterministic per-tensor and whole SHA-256 of the weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/state_load.h"
#include "io/hash.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone hash PATH [--json] [--f32]\n\n"
               "Prints the SHA-256 of every tensor (sha256sum style: HASH  NAME) and of the whole model, the same\n"
               "on every machine and run (docs/checkpoints.md#hashes has the exact definition).\n"
               "PATH is a model (Hugging Face directory, GGUF, llama2.c, synthetic:<spec>) or a checkpoint:\n"
               "for a checkpoint each linear weight, its mask (NAME.mask) and its low-rank factors\n"
               "(NAME.lora_a, NAME.lora_b) are listed.\n"
               "  --json   one JSON object instead: {\"path\", \"kind\", \"sha256\", \"tensors\": [{name, dtype, shape, sha256}]}\n"
               "A GGUF with quantized tensors (birdbone export) is hashed tensor by tensor as stored (dtype q4_0, ...).\n"
               "  --f32    hash a model's values converted to f32 (an f16 model then hashes like its f32 weights)\n");
}

static int is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

static bb_status grow(bb_tensor_hash **list, int *n, int *cap) {
    if (*n < *cap) return BB_OK;
    int c = *cap ? 2 * *cap : 64;
    bb_tensor_hash *l = realloc(*list, sizeof *l * (size_t)c);
    BB_CHECK(l, BB_ERR_OOM, "out of memory: %zu bytes of tensor hashes", sizeof *l * (size_t)c);
    *list = l;
    *cap = c;
    return BB_OK;
}

/* Weights, masks and factors of a checkpoint's state. */
static bb_status hash_state(const bb_state *s, bb_tensor_hash **out, int *n) {
    int cap = 0;
    *out = NULL;
    *n = 0;
    for (int i = 0; i < s->n_lin; i++) {
        const bb_tensor *t = s->t[i];
        char name[BB_TENSOR_NAME_MAX + 16];
        BB_CALL(grow(out, n, &cap));
        bb_hash_f32(t->name, bb_tensor_rows(t), bb_tensor_cols(t), s->w[i], &(*out)[(*n)++]);
        BB_CALL(grow(out, n, &cap));
        snprintf(name, sizeof name, "%s.mask", t->name);
        bb_hash_u64(name, s->masks[i]->rows, s->masks[i]->words_per_row, s->masks[i]->bits, &(*out)[(*n)++]);
        const bb_lora *l = s->lora[i];
        if (!l) continue;
        BB_CALL(grow(out, n, &cap));
        snprintf(name, sizeof name, "%s.lora_a", t->name);
        bb_hash_f32(name, l->rows, l->rank, l->a, &(*out)[(*n)++]);
        BB_CALL(grow(out, n, &cap));
        snprintf(name, sizeof name, "%s.lora_b", t->name);
        bb_hash_f32(name, l->rank, l->cols, l->b, &(*out)[(*n)++]);
    }
    return BB_OK;
}

static void print(const char *path, const char *kind, const bb_tensor_hash *h, int n, const uint8_t whole[32],
                  int json) {
    char hex[65];
    bb_hash_hex(whole, hex);
    if (!json) {
        for (int i = 0; i < n; i++) {
            char th[65];
            bb_hash_hex(h[i].digest, th);
            printf("%s  %s\n", th, h[i].name);
        }
        printf("%s  (whole %s: %d tensors)\n", hex, kind, n);
        return;
    }
    printf("{\"path\": \"");
    for (const char *p = path; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        putchar(*p);
    }
    printf("\", \"kind\": \"%s\", \"sha256\": \"%s\", \"tensors\": [\n", kind, hex);
    for (int i = 0; i < n; i++) {
        char th[65];
        bb_hash_hex(h[i].digest, th);
        printf("  {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": [", h[i].name, h[i].dtype);
        for (int d = 0; d < h[i].ndim; d++) printf("%s%lld", d ? ", " : "", (long long)h[i].shape[d]);
        printf("], \"sha256\": \"%s\"}%s\n", th, i + 1 < n ? "," : "");
    }
    printf("]}\n");
}

int bb_cmd_hash(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, as_f32 = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--f32")) {
            as_f32 = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone hash --help)\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "error: hash takes one PATH, got %s and %s\n", path, argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "error: hash needs a model or checkpoint path (see birdbone hash --help)\n");
        return 2;
    }
    bb_tensor_hash *h = NULL;
    int n = 0;
    uint8_t whole[32];
    if (bb_cli_is_hdf5(path)) {
        bb_ckpt *k = NULL;
        if (bb_ckpt_load(path, &k) != BB_OK) return 1;
        bb_status st = hash_state(&k->state, &h, &n);
        bb_ckpt_destroy(&k);
        if (st != BB_OK) {
            free(h);
            return 1;
        }
        bb_hash_combine(h, n, whole);
        print(path, "checkpoint", h, n, whole, json);
    } else if (is_gguf(path) && !as_f32) {
        /* A quantized GGUF (what export writes) is no float model: its tensors are hashed as stored. An F32
         * one goes through the model reader, so that it hashes like any other float model. */
        int q = 0;
        if (bb_hash_gguf(path, &h, &n, &q, whole) != BB_OK) return 1;
        if (!q) {
            free(h);
            h = NULL;
            goto model;
        }
        print(path, "gguf", h, n, whole, json);
    } else {
    model:;
        bb_model *m = NULL;
        if (bb_model_open(path, &m) != BB_OK) return 1;
        bb_status st = bb_model_hash(m, as_f32, &h, &n, whole);
        bb_model_destroy(&m);
        if (st != BB_OK) return 1;
        print(path, "model", h, n, whole, json);
    }
    free(h);
    return 0;
}
