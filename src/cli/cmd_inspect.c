/* cmd_inspect.c — `birdbone inspect PATH`: architecture, tensors, dtypes, parameter counts. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "io/model.h"

int bb_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int brief = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: birdbone inspect [--brief] PATH\n\n"
                   "PATH is a Hugging Face model directory, a GGUF file, a llama2.c checkpoint, or\n"
                   "synthetic:<preset>[,key=value...]. Prints the architecture and, unless --brief,\n"
                   "every tensor with its shape, dtype and parameter count.\n");
            return 0;
        } else if (!strcmp(argv[i], "--brief")) {
            brief = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone inspect --help)\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "error: inspect takes one PATH, got %s and %s\n", path, argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "error: inspect needs a model path (see birdbone inspect --help)\n");
        return 2;
    }
    bb_model *m = NULL;
    if (bb_model_open(path, &m) != BB_OK) return 1;
    bb_model_print(m, !brief, stdout);
    bb_model_destroy(&m);
    return 0;
}
