/* cmd_config.c — `birdbone config`: the configuration reference and resolved configs. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "io/config.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone config [-c CONFIG] [--set section.key=value ...] [--annotated | --hash]\n"
               "       birdbone config --doc\n\n"
               "Prints the resolved configuration (defaults, then CONFIG, then each --set) as canonical\n"
               "YAML followed by its SHA-256, which every output of a run records.\n"
               "  --annotated  with each key's description, range and default as comments\n"
               "  --hash       only the hash\n"
               "  --doc        the Markdown reference of every key (docs/config.md)\n");
}

int bb_cmd_config(int argc, char **argv) {
    const char *path = NULL;
    int annotated = 0, hash_only = 0, doc = 0;
    bb_config cfg;
    if (bb_config_defaults(&cfg) != BB_OK) return 1;
    /* The file is loaded before the overrides whatever the argument order. */
    for (int i = 1; i < argc; i++)
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) path = argv[++i];
    if (path && bb_config_load(path, &cfg) != BB_OK) return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s needs a file\n", argv[i]);
                return 2;
            }
            i++;
        } else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: --set needs section.key=value\n");
                return 2;
            }
            if (bb_config_set(&cfg, argv[++i]) != BB_OK) return 1;
        } else if (!strcmp(argv[i], "--annotated")) {
            annotated = 1;
        } else if (!strcmp(argv[i], "--hash")) {
            hash_only = 1;
        } else if (!strcmp(argv[i], "--doc")) {
            doc = 1;
        } else {
            fprintf(stderr, "error: unknown argument %s\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (doc) return bb_config_write_doc(stdout) == BB_OK ? 0 : 1;
    if (bb_config_validate(&cfg) != BB_OK) return 1;
    char hex[65];
    if (bb_config_hash(&cfg, hex) != BB_OK) return 1;
    if (!hash_only) {
        bb_status st = annotated ? bb_config_write_annotated(&cfg, stdout) : bb_config_dump(&cfg, stdout);
        if (st != BB_OK) return 1;
        printf("# config hash: sha256:%s\n", hex);
    } else {
        printf("%s\n", hex);
    }
    return 0;
}
