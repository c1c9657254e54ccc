/* cmd_compress.c — `birdbone compress -c CONFIG [--set key=value ...]`: the main job. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/events.h"
#include "core/log.h"
#include "pipeline/run.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone compress [-c CONFIG] [--set section.key=value ...]\n\n"
               "Runs the bird-bone pipeline on the model named by model.path (default: the embedded\n"
               "synthetic model). Without -c every key has its default (see `birdbone config --doc`).\n"
               "Runs on any number of MPI ranks: mpirun -np N birdbone compress -c CONFIG.\n"
               "  -c, --config FILE   YAML configuration\n"
               "  --set KEY=VALUE     override one key, e.g. --set prune.target=0.5 (repeatable)\n");
}

int bb_cmd_compress(int argc, char **argv) {
    const char *path = NULL;
    char *sets[256];
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            path = argv[++i];
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
    bb_dist d;
    if (bb_dist_init(&argc, &argv, &d) != BB_OK) return 1;
    bb_run *r = NULL;
    bb_status st = bb_run_create(&d, path, sets, n_sets, &r);
    if (st == BB_OK) st = bb_run_execute(r);
    if (st == BB_OK) {
        if (d.rank == 0) printf("\n---- timing ----\n");
        st = bb_dist_events_report(&d, stdout);
    }
    bb_run_destroy(&r);
    /* Stages leave together on errors (bb_dist_agree), so a failed run still
     * finalizes cleanly here; main aborts only if MPI is left running. */
    bb_dist_finalize(&d);
    return st == BB_OK ? 0 : 1;
}
