/* main.c — the birdbone command line: dispatch to subcommands; the only place
 * that ends the program (through MPI_Abort when several ranks run). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/log.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"compress", bb_cmd_compress, "run the bird-bone pipeline: birdbone compress -c CONFIG [--set key=value ...]"},
    {"scan", bb_cmd_scan, "spectral scan: singular values and energy of every weight matrix: birdbone scan MODEL [--rank R]"},
    {"inspect", bb_cmd_inspect, "print a model's architecture, tensors and parameter counts: birdbone inspect PATH"},
    {"generate", bb_cmd_generate, "greedy text generation: birdbone generate MODEL [--prompt TEXT] [-n N]"},
    {"eval", bb_cmd_eval, "perplexity and KL-divergence: birdbone eval MODEL --text FILE [--n-ctx N] [--ref FILE]"},
    {"export", bb_cmd_export, "quantize into GGUF for llama.cpp: birdbone export MODEL --type q4_0 [--method gptq --calib TEXT] -o OUT"},
    {"report", bb_cmd_report, "metrics CSVs, SVG plots and report.html of a run: birdbone report RUN_DIR [--open]"},
    {"hash", bb_cmd_hash, "per-tensor and whole SHA-256 of a model or checkpoint: birdbone hash PATH [--json]"},
    {"diff", bb_cmd_diff, "what changed between two checkpoints or a checkpoint and the model: birdbone diff A B [--json FILE]"},
    {"revert", bb_cmd_revert, "rebuild a run's wave K from its history: birdbone revert RUN_DIR --to-wave K [-o OUT.h5] [--export OUT.gguf]"},
    {"config", bb_cmd_config, "configuration reference and resolved configs: birdbone config [--doc] [-c CONFIG]"},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *f) {
    fprintf(f, "birdbone %s — bird-bone compression of Llama-family models\n\nusage: birdbone <command> [options]\n\n",
            BB_VERSION);
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  %-10s print the version\n\n", "version");
    fprintf(f, "Run `birdbone <command> --help` for a command's options. Environment: BB_LOG_LEVEL=error|warn|info|debug.\n");
}

int main(int argc, char **argv) {
    bb_log_init_from_env();
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("birdbone %s\n", BB_VERSION);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        int rc = commands[i].fn(argc - 1, argv + 1);
        int inited = 0, fin = 0, size = 1;
        MPI_Initialized(&inited);
        MPI_Finalized(&fin);
        if (inited && !fin) {
            /* A command that failed on some ranks only: end all of them. */
            MPI_Comm_size(MPI_COMM_WORLD, &size);
            fflush(stdout);
            fflush(stderr);
            if (rc != 0 && size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
            MPI_Finalize();
        }
        return rc;
    }
    fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
