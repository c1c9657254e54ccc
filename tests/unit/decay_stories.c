/* decay_stories.c — adaptive decay waves against one-shot pruning on stories260K (Wanda, SparseGPT; 20 % and 30 %).
 *
 * usage: decay_stories [SHARED_DIR [WORK_DIR]]   (default: BB_SHARED, else ../shared; BB_TEST_TMP, else /tmp)
 * The pipeline's own stages run: stage 0 (dev.txt tokenized, dense PPL and
 * log-probs at n_ctx 512) and stage 1 (f64 Grams from all 224 non-overlapping
 * 512-token windows of calib.txt, never dev.txt) once; then stage 2 once per
 * row, each time from the dense weights and the dense statistics (reloaded
 * from calib_stats.h5):
 *   one-shot  prune.per_wave = 1, waves.count = 1 (the method's one-shot pruner,
 *             which must land within +-2 % of DESIGN §7's PPL);
 *   waves     prune.per_wave = 0.1, waves.count = 10, statistics collected
 *             again on the pruned model before every wave after the first.
 * SparseGPT uses the table's per-row groups and B = 32. For every waves run the
 * saved masks are checked: pruned weights stay pruned, and no wave removes more
 * than floor(0.1 * kept) of a row (the comparison group of both methods here).
 * Prints the table for docs/pruning.md; exit 1 on a non-finite number, a miss of
 * the reference or a wave that breaks per_wave; 77 (skipped) under BB_SKIP_SLOW. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "mpi/stats_h5.h"
#include "mpi/wave_h5.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

typedef struct {
    const char *method;
    double target, ref_ppl; /* ref_ppl: DESIGN §7 one-shot */
} row;

static const row rows_[] = {
    {"wanda", 0.2, 5.4958}, {"wanda", 0.3, 6.4468}, {"sparsegpt", 0.2, 5.4413}, {"sparsegpt", 0.3, 6.1039}};

typedef struct {
    double ppl, kld, sparsity, seconds;
    int waves;
} result;

static double attr_f64(const char *path, const char *name) {
    double v = NAN;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return v;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a >= 0) {
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) v = NAN;
        H5Aclose(a);
    }
    H5Fclose(f);
    return v;
}

/* Every matrix of every wave: pruned stays pruned and each row loses at most
 * floor(per_wave * kept) (the 1e-9 slack of the kernels' counts). Returns violations. */
static int check_masks(bb_run *r, int n_waves, double per_wave) {
    int bad = 0;
    for (int l = 0; l < r->model->cfg.n_layers; l++)
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            bb_mask *prev = NULL;
            for (int w = 1; w <= n_waves && !bad; w++) {
                char path[1200];
                snprintf(path, sizeof path, "%s/wave_%d.h5", r->cfg.run.dir, w);
                bb_mask *m = NULL;
                if (bb_wave_h5_read_mask(path, l, (bb_linear_kind)k, &m) != BB_OK) {
                    printf("cannot read %s: %s\n", path, bb_last_error());
                    bad++;
                    break;
                }
                if (!prev && bb_mask_create(m->rows, m->cols, 1, &prev) != BB_OK) bad++;
                for (int64_t i = 0; i < m->rows && !bad; i++) {
                    int64_t kept = bb_mask_count_row(prev, i), now = bb_mask_count_row(m, i);
                    int64_t limit = (int64_t)floor(per_wave * (double)kept + 1e-9);
                    for (int64_t j = 0; j < m->cols; j++)
                        if (bb_mask_get(m, i, j) && !bb_mask_get(prev, i, j)) {
                            printf("layer %d %s wave %d: weight (%lld, %lld) came back\n", l,
                                   bb_linear_name((bb_linear_kind)k), w, (long long)i, (long long)j);
                            bad++;
                            break;
                        }
                    if (kept - now > limit) {
                        printf("layer %d %s wave %d row %lld: %lld of %lld removed, per_wave allows %lld\n", l,
                               bb_linear_name((bb_linear_kind)k), w, (long long)i, (long long)(kept - now),
                               (long long)kept, (long long)limit);
                        bad++;
                    }
                }
                bb_mask_destroy(&prev);
                prev = m;
            }
            bb_mask_destroy(&prev);
        }
    return bad;
}

/* Back to the dense model and its statistics, then stage 2 with the row's settings. */
static bb_status decay_once(bb_run *r, const row *w, int waves, result *out) {
    bb_run_reset_waves(r);
    bb_calib_destroy(&r->stats);
    char path[1200];
    for (int k = 1; k <= 20; k++) {
        snprintf(path, sizeof path, "%s/wave_%d.h5", r->cfg.run.dir, k);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/calib_stats.h5", r->cfg.run.dir);
    BB_CALL(bb_stats_h5_read(path, r->model, &r->stats, NULL));
    snprintf(r->cfg.prune.method, sizeof r->cfg.prune.method, "%s", w->method);
    r->cfg.prune.target = w->target;
    r->cfg.prune.per_wave = waves ? 0.1 : 1.0;
    r->cfg.waves.count = waves ? 10 : 1;
    BB_CALL(bb_config_validate(&r->cfg));
    double t0 = bb_now();
    BB_CALL(bb_stage_waves(r));
    out->seconds = bb_now() - t0;
    out->waves = r->n_waves;
    out->sparsity = r->sparsity;
    snprintf(path, sizeof path, "%s/wave_%d.h5", r->cfg.run.dir, r->n_waves);
    out->ppl = attr_f64(path, "ppl");
    out->kld = attr_f64(path, "kld_mean");
    return BB_OK;
}

int main(int argc, char **argv) {
    if (getenv("BB_SKIP_SLOW")) {
        printf("skipped: BB_SKIP_SLOW is set (this check takes about ten minutes)\n");
        return 77;
    }
    const char *shared = argc > 1 ? argv[1] : getenv("BB_SHARED") ? getenv("BB_SHARED") : "../shared";
    const char *work = argc > 2 ? argv[2] : getenv("BB_TEST_TMP") ? getenv("BB_TEST_TMP") : "/tmp";
    bb_dist d;
    if (bb_dist_init(&argc, &argv, &d) != BB_OK) return 1;
    char ov[8][1200];
    snprintf(ov[0], sizeof ov[0], "model.path=%s/data/stories260K/stories260K.bin", shared);
    snprintf(ov[1], sizeof ov[1], "data.calib=%s/data/tinystories/calib.txt", shared);
    snprintf(ov[2], sizeof ov[2], "data.eval=%s/data/tinystories/dev.txt", shared);
    snprintf(ov[3], sizeof ov[3], "run.dir=%s/decay_stories", work);
    const char *fixed[] = {"calib.samples=224",        "calib.seq_len=512", "calib.micro_batch=8",
                           "calib.gram_precision=f64", "eval.n_ctx=512",    "scan.enabled=false",
                           "prune.block_size=32",      "prune.groups=row",  "run.events=false",
                           "stoploss.enabled=false",   "heal.enabled=false", "rigl.enabled=false",
                           "stress.enabled=false"};
    char *overrides[24];
    int n = 0;
    for (int i = 0; i < 4; i++) overrides[n++] = ov[i];
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) overrides[n++] = (char *)fixed[i];
    bb_run *r = NULL;
    int failures = 0;
    result res[4][2];
    bb_status st;
    BB_CALL_GOTO(st, out, bb_run_create(&d, NULL, overrides, n, BB_RUN_FORCE, &r));
    BB_CALL_GOTO(st, out, bb_stage_baseline(r));
    double t0 = bb_now();
    BB_CALL_GOTO(st, out, bb_stage_usage(r));
    double calib_s = bb_now() - t0;
    BB_CHECK_GOTO(st, out, r->calib_tokens > 0 && r->stats, BB_ERR_INTERNAL, "no calibration statistics");
    for (int i = 0; i < 4; i++)
        for (int waves = 0; waves < 2; waves++) {
            result *x = &res[i][waves];
            BB_CALL_GOTO(st, out, decay_once(r, &rows_[i], waves, x));
            if (!isfinite(x->ppl) || !isfinite(x->kld) || !isfinite(x->sparsity)) {
                printf("%s %.0f %%: a non-finite result (PPL %g, KLD %g, sparsity %g)\n", rows_[i].method,
                       100 * rows_[i].target, x->ppl, x->kld, x->sparsity);
                failures++;
            }
            if (x->sparsity > rows_[i].target + 1e-9 || x->sparsity < rows_[i].target - 0.02) {
                printf("%s %.0f %%: sparsity %.4f is off the target\n", rows_[i].method, 100 * rows_[i].target,
                       x->sparsity);
                failures++;
            }
            if (!waves && fabs(x->ppl / rows_[i].ref_ppl - 1) > 0.02) {
                printf("%s %.0f %% one-shot: PPL %.4f outside +-2 %% of DESIGN §7's %.4f\n", rows_[i].method,
                       100 * rows_[i].target, x->ppl, rows_[i].ref_ppl);
                failures++;
            }
            if (waves) failures += check_masks(r, x->waves, 0.1) > 0;
        }
    printf("\ndense PPL %.4f; calibration (224 x 512 tokens, f64 Grams) %.1f s\n", r->dense_ppl, calib_s);
    printf("| method | target | one-shot sparsity | one-shot PPL | one-shot KLD | waves | waves sparsity | waves PPL "
           "| waves KLD | stage time one-shot / waves |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < 4; i++)
        printf("| %s | %.0f %% | %.4f | %.4f | %.4f | %d | %.4f | %.4f | %.4f | %.0f s / %.0f s |\n", rows_[i].method,
               100 * rows_[i].target, res[i][0].sparsity, res[i][0].ppl, res[i][0].kld, res[i][1].waves,
               res[i][1].sparsity, res[i][1].ppl, res[i][1].kld, res[i][0].seconds, res[i][1].seconds);
out:
    if (st != BB_OK) fprintf(stderr, "decay_stories: %s\n", bb_last_error());
    bb_run_destroy(&r);
    bb_dist_finalize(&d);
    return st != BB_OK || failures ? 1 : 0;
}
