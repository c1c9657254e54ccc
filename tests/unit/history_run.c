/* history_run.c — makes a fake run directory for the CLI tests: history_run MODEL_SPEC RUN_DIR WAVES.
 * Random waves (state_fixture.h) over a synthetic model, each recorded as RUN_DIR/diffs/KKKK/{delta.h5,diff.json}
 * and checkpointed to RUN_DIR/checkpoints/wave_KKKK.h5 with checkpoint.keep = last, as the wave loop will. */
#include <stdio.h>
#include <stdlib.h>

#include "core/file.h"
#include "core/sha256.h"
#include "io/hash.h"
#include "mpi/ckpt.h"
#include "pipeline/history.h"
#include "state_fixture.h"

static int fail(const char *what) {
    fprintf(stderr, "history_run: %s failed\n", what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: history_run MODEL_SPEC RUN_DIR WAVES\n");
        return 2;
    }
    const char *spec = argv[1], *dir = argv[2];
    int waves = atoi(argv[3]);
    fixture fx;
    if (fixture_open(&fx, spec) != 0) return fail("opening the model");
    static const char yaml[] = "model:\n  path: synthetic:tiny\nprune:\n  per_wave: 0.1\ncheckpoint:\n  keep: last\n";
    bb_ckpt_meta meta = {.config_yaml = (char *)yaml};
    bb_sha256_hex(yaml, sizeof yaml - 1, meta.config_sha256);
    uint8_t whole[32];
    if (bb_model_hash(fx.model, 0, NULL, NULL, whole) != BB_OK) return fail("hashing the model");
    bb_hash_hex(whole, meta.model_sha256);
    snprintf(meta.model_path, sizeof meta.model_path, "%s", spec);
    unsigned seed = 77;
    for (int k = 1; k <= waves; k++) {
        bb_state prev;
        float **w = fixture_blank_weights(&fx);
        for (int i = 0; i < fx.n_lin; i++)
            memcpy(w[i], fx.s.w[i], sizeof(float) * (size_t)bb_tensor_numel(fx.t[i]));
        if (bb_state_copy_owned(&fx.s, &prev) != BB_OK) return fail("copying the state");
        prev.w = w;
        fixture_wave(&fx.s, &seed, 0.1);
        char path[1400];
        if (bb_history_record(dir, &prev, &fx.s) != BB_OK) return fail("bb_history_record");
        if (bb_ckpt_path(dir, k, path, sizeof path) != BB_OK) return fail("bb_ckpt_path");
        char cdir[1300];
        snprintf(cdir, sizeof cdir, "%s/checkpoints", dir);
        if (bb_mkdir_p(cdir) != BB_OK) return fail("mkdir");
        if (bb_ckpt_write(path, &fx.s, &meta) != BB_OK) return fail("bb_ckpt_write");
        if (bb_ckpt_prune(dir, k) != BB_OK) return fail("bb_ckpt_prune");
        bb_state_release(&prev);
        fixture_free_weights(w, fx.n_lin);
    }
    printf("history_run: %d waves of %s in %s\n", waves, spec, dir);
    fixture_close(&fx);
    return 0;
}
