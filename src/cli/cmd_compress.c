/* cmd_compress.c — `birdbone compress -c CONFIG [--set key=value ...]`: the main job. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/events.h"
#include "core/log.h"
#include "pipeline/run.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone compress [-c CONFIG] [--set section.key=value ...] [--force]\n"
               "       birdbone compress --resume RUN_DIR\n\n"
               "Runs the bird-bone pipeline on the model named by model.path (default: the embedded\n"
               "synthetic model). Without -c every key has its default (see `birdbone config --doc`).\n"
               "Runs on any number of MPI ranks: mpirun -np N birdbone compress -c CONFIG.\n"
               "  -c, --config FILE   YAML configuration\n"
               "  --set KEY=VALUE     override one key, e.g. --set prune.target=0.5 (repeatable)\n"
               "  --force             replace a previous run in run.dir (refused otherwise)\n"
               "  --resume RUN_DIR    continue that run from its last complete wave checkpoint, with the\n"
               "                      configuration it recorded (RUN_DIR/config.yaml); the result is\n"
               "                      byte-identical to an uninterrupted run\n"
               "Exit status: 0 done, 1 error, 2 bad usage, 75 stopped by SIGUSR1/SIGTERM after a complete\n"
               "wave (continue with --resume).\n");
}

int bb_cmd_compress(int argc, char **argv) {
    const char *path = NULL, *resume = NULL;
    unsigned flags = 0;
    char *sets[256];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--force")) {
            flags |= BB_RUN_FORCE;
        } else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
            resume = argv[++i];
            flags |= BB_RUN_RESUME;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            if (n_sets == (int)(sizeof sets / sizeof sets[0])) {
                fprintf(stderr, "error: more than %d --set options\n", n_sets);
                return 2;
            }
            sets[n_sets++] = argv[++i];
        } else {
            fprintf(stderr, "error: unknown or incomplete argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    char resume_cfg[1200], resume_dir[1300];
    if (resume) {
        if (path || n_sets) {
            fprintf(stderr, "error: --resume continues a run with the configuration it recorded: leave out -c and --set\n");
            return 2;
        }
        snprintf(resume_cfg, sizeof resume_cfg, "%s/config.yaml", resume);
        snprintf(resume_dir, sizeof resume_dir, "run.dir=%s", resume);
        path = resume_cfg;
        sets[n_sets++] = resume_dir; /* the directory may have moved since */
    }
    bb_dist d;
    if (bb_dist_init(&argc, &argv, &d) != BB_OK) return 1;
    bb_run_install_signals();
    bb_run *r = NULL;
    bb_status st = bb_run_create(&d, path, sets, n_sets, flags, &r);
    if (st == BB_OK) st = bb_run_execute(r);
    if (st == BB_OK) {
        if (d.rank == 0) printf("\n---- timing ----\n");
        st = bb_dist_events_report(&d, stdout);
    }
    int preempted = st == BB_OK && r && r->preempted;
    bb_run_destroy(&r);
    /* Stages leave together on errors (bb_dist_agree), so a failed run still
     * finalizes cleanly here; main aborts only if MPI is left running. */
    bb_dist_finalize(&d);
    return st != BB_OK ? 1 : preempted ? 75 : 0;
}
