/* cmd_scan.c — `birdbone scan MODEL`: stage 0, the spectral scan of every weight matrix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "compress/scan.h"
#include "core/events.h"
#include "io/model.h"

static void scan_usage(FILE *f) {
    fprintf(
        f,
        "usage: birdbone scan MODEL [options]\n\n"
        "Randomized SVD of every weight matrix (the 7 linear kinds of each block): top-R singular\n"
        "values, explained energy sum_{i<=k} s_i^2 / ||W||_F^2, the ranks reaching 50/90/99 %%,\n"
        "and the residual ||W - U S V^T||_F / ||W||_F. MODEL is a Hugging Face directory, a GGUF\n"
        "file, a llama2.c checkpoint or synthetic:<preset>[,key=value...].\n\n"
        "options:\n"
        "  --rank R          singular values per matrix (default 64; clipped to min(rows, cols))\n"
        "  --oversample P    extra sketch columns (default 8)\n"
        "  --power-iters Q   power iterations (default 2)\n"
        "  --seed S          seed of the random test matrix (default 0)\n"
        "  --tensors PAT     only names matching PAT (PCRE2 regex, or a plain substring), e.g. attn_q or 'blk\\.1\\.'\n"
        "  --all             also token_embd and output (output only when not tied)\n"
        "  --out DIR         output directory (default runs/scan): scan.json, scan.csv, spectra.svg, energy.svg\n"
        "  --backend NAME    linear-algebra backend (default cpu)\n\n"
        "See docs/scan.md for how to read the outputs.\n");
}

/* Parse an integer option value in [lo, hi]; prints the usage error itself. */
static int parse_int(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "error: %s %s: expected an integer in [%lld, %lld] (see birdbone scan --help)\n", opt, v, lo,
                hi);
        return -1;
    }
    *out = x;
    return 0;
}

int bb_cmd_scan(int argc, char **argv) {
    const char *path = NULL, *out_dir = "runs/scan", *backend = "cpu";
    bb_scan_opts o;
    bb_scan_opts_default(&o);
    o.progress = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            scan_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--all")) {
            o.all = 1;
        } else if (!strcmp(a, "--rank") || !strcmp(a, "--oversample") || !strcmp(a, "--power-iters") ||
                   !strcmp(a, "--seed") || !strcmp(a, "--tensors") || !strcmp(a, "--out") || !strcmp(a, "--backend")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "error: %s needs a value (see birdbone scan --help)\n", a);
                return 2;
            }
            const char *val = argv[++i];
            if (!strcmp(a, "--rank")) {
                if (parse_int(a, val, 1, 65536, &v)) return 2;
                o.rank = (int)v;
            } else if (!strcmp(a, "--oversample")) {
                if (parse_int(a, val, 0, 4096, &v)) return 2;
                o.oversample = (int)v;
            } else if (!strcmp(a, "--power-iters")) {
                if (parse_int(a, val, 0, 32, &v)) return 2;
                o.power_iters = (int)v;
            } else if (!strcmp(a, "--seed")) {
                if (parse_int(a, val, 0, 0x7fffffffffffffffLL, &v)) return 2;
                o.seed = (uint64_t)v;
            } else if (!strcmp(a, "--tensors")) {
                o.filter = val;
            } else if (!strcmp(a, "--out")) {
                out_dir = val;
            } else {
                backend = val;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone scan --help)\n", a);
            return 2;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "error: scan takes one MODEL, got %s and %s\n", path, a);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "error: scan needs a model (see birdbone scan --help)\n");
        return 2;
    }
    if (bb_linalg_backend_get(backend, &o.backend) != BB_OK) return 2;
    bb_model *m = NULL;
    bb_scan_result *r = NULL;
    int rc = 1;
    if (bb_model_open(path, &m) != BB_OK) goto out;
    if (bb_scan_model(m, &o, &r) != BB_OK) goto out;
    bb_scan_print_table(r, stdout);
    if (bb_scan_write(r, out_dir) != BB_OK) goto out;
    printf("wrote %s/scan.json, scan.csv, spectra.svg, energy.svg\n\n", out_dir);
    bb_events_print(stdout);
    rc = 0;
out:
    bb_scan_result_destroy(&r);
    bb_model_destroy(&m);
    return rc;
}
