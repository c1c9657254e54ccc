/* cmd_diff.c — `birdbone diff A B`: per tensor what changed from A to B (checkpoints or a model's dense state). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/state_load.h"
#include "core/file.h"
#include "io/hash.h"
#include "pipeline/history.h"

static void usage(FILE *f) {
    fprintf(f, "usage: birdbone diff A B [--json FILE]\n\n"
               "Compares two run states, A -> B. Each is a checkpoint (RUN_DIR/checkpoints/wave_KKKK.h5) or a\n"
               "model (its dense state: every weight kept, no factors, no bits). Per linear weight: weights\n"
               "changed, removed (pruned) and regrown, bits before -> after, rank added, the Frobenius norm of\n"
               "the change (absolute and relative to A), and the SHA-256 of the weights in A and in B.\n"
               "  --json FILE   also write the machine-readable summary (the format of RUN_DIR/diffs/*/diff.json;\n"
               "                '-' for stdout, then the table is not printed)\n");
}

static void print_table(const char *a, const char *b, const bb_delta *d) {
    printf("diff %s (wave %d) -> %s (wave %d)\n", a, d->wave_old, b, d->wave_new);
    printf("%-28s %10s %9s %9s %7s %6s %12s %9s  %-16s %-16s\n", "tensor", "changed", "removed", "regrown", "bits",
           "rank+", "|dW|_F", "relative", "sha256 A", "sha256 B");
    int64_t changed = 0, removed = 0, regrown = 0, bits = 0;
    int rank = 0;
    double f2 = 0, n2 = 0;
    for (int i = 0; i < d->n_lin; i++) {
        const bb_tensor_delta *t = &d->t[i];
        char h0[65], h1[65], bt[16];
        bb_hash_hex(t->hash_old, h0);
        bb_hash_hex(t->hash_new, h1);
        snprintf(bt, sizeof bt, "%d>%d", t->bits_old, t->bits_new);
        int ra = t->lora_changed ? (t->lora_new ? t->lora_new->rank : 0) - (t->lora_old ? t->lora_old->rank : 0) : 0;
        printf("%-28s %10lld %9lld %9lld %7s %6d %12.6g %9.3g  %.16s %.16s\n", t->name, (long long)t->n_changed,
               (long long)t->pruned, (long long)t->regrown, bt, ra, t->frob,
               t->norm_old > 0 ? t->frob / t->norm_old : 0.0, h0, h1);
        changed += t->n_changed;
        removed += t->pruned;
        regrown += t->regrown;
        bits += t->bits_old != t->bits_new;
        rank += ra;
        f2 += t->frob * t->frob;
        n2 += t->norm_old * t->norm_old;
    }
    printf("%-28s %10lld %9lld %9lld %7lld %6d %12.6g %9.3g\n", "total", (long long)changed, (long long)removed,
           (long long)regrown, (long long)bits, rank, sqrt(f2), n2 > 0 ? sqrt(f2 / n2) : 0.0);
}

int bb_cmd_diff(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL}, *json = NULL;
    int np = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: --json needs a file name ('-' for stdout)\n");
                return 2;
            }
            json = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone diff --help)\n", argv[i]);
            return 2;
        } else if (np < 2) {
            paths[np++] = argv[i];
        } else {
            fprintf(stderr, "error: diff takes two paths A and B, got a third: %s\n", argv[i]);
            return 2;
        }
    }
    if (np != 2) {
        fprintf(stderr, "error: diff needs two paths A and B (see birdbone diff --help)\n");
        return 2;
    }
    bb_cli_state a, b;
    if (bb_cli_state_load(paths[0], &a) != BB_OK) return 1;
    if (bb_cli_state_load(paths[1], &b) != BB_OK) {
        bb_cli_state_free(&a);
        return 1;
    }
    bb_delta *d = NULL;
    int rc = 0;
    if (bb_delta_record(a.state, b.state, &d) != BB_OK) {
        fprintf(stderr, "  comparing %s and %s\n", paths[0], paths[1]);
        rc = 1;
    }
    if (!rc && (!json || strcmp(json, "-"))) print_table(paths[0], paths[1], d);
    if (!rc && json) {
        char *text = NULL;
        if (bb_delta_json(d, &text) != BB_OK) {
            rc = 1;
        } else if (!strcmp(json, "-")) {
            fputs(text, stdout);
        } else if (bb_file_write_atomic(json, text, strlen(text)) != BB_OK) {
            rc = 1;
        }
        free(text);
    }
    bb_delta_destroy(&d);
    bb_cli_state_free(&a);
    bb_cli_state_free(&b);
    return rc;
}
