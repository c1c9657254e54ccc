/* cmd_revert.c — `birdbone revert RUN_DIR --to-wave K`: wave K rebuilt from the last checkpoint and the deltas. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/file.h"
#include "core/log.h"
#include "io/hash.h"
#include "mpi/ckpt.h"
#include "pipeline/export.h"
#include "pipeline/history.h"
#include "pipeline/weights.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone revert RUN_DIR --to-wave K [-o OUT.h5] [--export OUT.gguf] [--hash]\n\n"
               "Rebuilds the state of wave K of a run: the last complete checkpoint in RUN_DIR/checkpoints,\n"
               "then the deltas of RUN_DIR/diffs applied backward (or forward) to K. Wave 0 is the dense model,\n"
               "bit for bit. Every step is checked against the SHA-256 the deltas recorded.\n"
               "  --to-wave K      the wave to rebuild (0 = dense)\n"
               "  -o OUT.h5        write wave K as a checkpoint (same format as RUN_DIR/checkpoints)\n"
               "  --export OUT     write wave K as an F32 GGUF: masks applied, low-rank factors merged into the\n"
               "                   weights; the rest of the model (embeddings, norms, vocabulary) comes from the\n"
               "                   run's input model, whose hash must match the checkpoint's\n"
               "  --model PATH     the input model, when it moved (default: the path the checkpoint records)\n"
               "  --hash           print the SHA-256 of each linear weight (birdbone hash format)\n"
               "  --force          overwrite existing outputs\n");
}

static bb_status export_gguf(const bb_ckpt *k, const char *model_path, const char *out) {
    bb_model *m = NULL;
    bb_weights *w = NULL;
    bb_status st;
    BB_CALL_GOTO(st, done, bb_model_open(model_path, &m));
    if (k->meta.model_sha256[0]) {
        uint8_t whole[32];
        char hex[65];
        BB_CALL_GOTO(st, done, bb_model_hash(m, 0, NULL, NULL, whole));
        bb_hash_hex(whole, hex);
        BB_CHECK_GOTO(st, done, !strcmp(hex, k->meta.model_sha256), BB_ERR_ARG,
                      "%s has SHA-256 %.16s..., the run was made from a model with %.16s...: pass the run's input "
                      "model with --model",
                      model_path, hex, k->meta.model_sha256);
    }
    BB_CHECK_GOTO(st, done, m->cfg.n_layers == k->state.n_layers, BB_ERR_ARG,
                  "%s has %d layers, the checkpoint %d: not the run's model", model_path, m->cfg.n_layers,
                  k->state.n_layers);
    BB_CALL_GOTO(st, done, bb_weights_create(m, 0, 0, &w));
    for (int i = 0; i < k->state.n_lin; i++) {
        const bb_tensor *t = bb_weights_tensor(w, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT));
        BB_CHECK_GOTO(st, done,
                      !strcmp(t->name, k->tensors[i].name) && bb_tensor_numel(t) == bb_tensor_numel(&k->tensors[i]),
                      BB_ERR_ARG, "%s: %s where the checkpoint has %s", model_path, t->name, k->tensors[i].name);
        float *dst = bb_weights_linear(w, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT));
        memcpy(dst, k->state.w[i], sizeof(float) * (size_t)bb_tensor_numel(t));
        bb_mask_apply(k->state.masks[i], dst);
        if (k->state.lora[i]) bb_lora_merge(k->state.lora[i], dst);
    }
    bb_export_opts eo;
    bb_export_opts_default(&eo);
    BB_CALL_GOTO(st, done, bb_export_gguf(m, bb_weights_model(w), NULL, &eo, out));
done:
    bb_weights_destroy(&w);
    bb_model_destroy(&m);
    return st;
}

static int refuse_existing(const char *path, int force) {
    if (path && !force && bb_path_exists(path)) {
        fprintf(stderr, "error: %s exists; pass --force to overwrite it\n", path);
        return 1;
    }
    return 0;
}

int bb_cmd_revert(int argc, char **argv) {
    const char *run_dir = NULL, *out = NULL, *gguf = NULL, *model = NULL;
    int to = -1, hash = 0, force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--to-wave") && more) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1000000) {
                fprintf(stderr, "error: --to-wave takes a wave number >= 0, got %s\n", argv[i]);
                return 2;
            }
            to = (int)v;
        } else if (!strcmp(a, "-o") && more) {
            out = argv[++i];
        } else if (!strcmp(a, "--export") && more) {
            gguf = argv[++i];
        } else if (!strcmp(a, "--model") && more) {
            model = argv[++i];
        } else if (!strcmp(a, "--hash")) {
            hash = 1;
        } else if (!strcmp(a, "--force")) {
            force = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "error: unknown option %s or a missing value (see birdbone revert --help)\n", a);
            return 2;
        } else if (!run_dir) {
            run_dir = a;
        } else {
            fprintf(stderr, "error: revert takes one RUN_DIR, got %s and %s\n", run_dir, a);
            return 2;
        }
    }
    if (!run_dir || to < 0) {
        fprintf(stderr, "error: revert needs RUN_DIR and --to-wave K (see birdbone revert --help)\n");
        return 2;
    }
    if (refuse_existing(out, force) || refuse_existing(gguf, force)) return 1;
    int last = -1;
    char path[1400];
    if (bb_ckpt_find_last(run_dir, &last, path, sizeof path) != BB_OK) return 1;
    if (last < 0) {
        fprintf(stderr, "error: %s/checkpoints holds no complete checkpoint (wave_KKKK.h5 with its .DONE marker): "
                        "nothing to revert from\n", run_dir);
        return 1;
    }
    bb_ckpt *k = NULL;
    if (bb_ckpt_load(path, &k) != BB_OK) return 1;
    int rc = 0;
    if (bb_history_goto(run_dir, &k->state, to) != BB_OK) {
        fprintf(stderr, "  reverting %s from wave %d (%s) to wave %d\n", run_dir, last, path, to);
        rc = 1;
    }
    bb_tensor_hash *h = NULL;
    if (!rc && bb_calloc((void **)&h, (size_t)(k->state.n_lin ? k->state.n_lin : 1), sizeof *h, "hashes") != BB_OK)
        rc = 1;
    if (!rc) {
        int64_t kept = 0, total = 0;
        for (int i = 0; i < k->state.n_lin; i++) {
            const bb_tensor *t = &k->tensors[i];
            bb_hash_f32(t->name, bb_tensor_rows(t), bb_tensor_cols(t), k->state.w[i], &h[i]);
            kept += bb_mask_count(k->state.masks[i]);
            total += bb_tensor_numel(t);
        }
        uint8_t whole[32];
        char hex[65];
        bb_hash_combine(h, k->state.n_lin, whole);
        bb_hash_hex(whole, hex);
        printf("%s: wave %d rebuilt from checkpoint wave %d and %d deltas: sparsity %.4f, weights sha256 %s\n",
               run_dir, to, last, last > to ? last - to : to - last, total ? 1.0 - (double)kept / (double)total : 0.0,
               hex);
        for (int i = 0; hash && i < k->state.n_lin; i++) {
            bb_hash_hex(h[i].digest, hex);
            printf("%s  %s\n", hex, h[i].name);
        }
    }
    free(h);
    if (!rc && out) {
        if (bb_ckpt_write(out, &k->state, &k->meta) != BB_OK)
            rc = 1;
        else
            printf("wrote %s\n", out);
    }
    if (!rc && gguf) {
        if (export_gguf(k, model ? model : k->meta.model_path, gguf) != BB_OK)
            rc = 1;
        else
            printf("wrote %s\n", gguf);
    }
    bb_ckpt_destroy(&k);
    return rc;
}
