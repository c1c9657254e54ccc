/* cmd_report.c — `birdbone report RUN_DIR [--open]`: the run report (metrics CSVs, SVG plots, report.html). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/file.h"
#include "pipeline/report.h"

static void report_usage(FILE *f) {
    fprintf(f, "usage: birdbone report RUN_DIR [--open]\n\n"
               "Reads RUN_DIR/metrics.json (and, when present, RUN_DIR/wave_<k>.h5, RUN_DIR/scan/scan.json and\n"
               "RUN_DIR/config.yaml) and writes RUN_DIR/report/: metrics.csv, tensors.csv, stages.csv,\n"
               "healing.csv, usage.csv, spectra.csv, one SVG per plot and report.html, a single page with\n"
               "the summary table and every plot inlined that opens in a browser without a server.\n\n"
               "options:\n"
               "  --open    open report.html with xdg-open (or open) when one is on PATH\n\n"
               "See docs/report.md for the inputs, every output file and how to read each plot.\n");
}

/* The first of xdg-open / open found on PATH, else NULL. */
static const char *opener(void) {
    static const char *const cands[] = {"xdg-open", "open"};
    const char *path = getenv("PATH");
    for (int i = 0; path && i < 2; i++) {
        const char *p = path;
        while (*p) {
            const char *end = strchr(p, ':');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            char full[2048];
            if (n && n + strlen(cands[i]) + 2 < sizeof full) {
                snprintf(full, sizeof full, "%.*s/%s", (int)n, p, cands[i]);
                if (access(full, X_OK) == 0) return cands[i];
            }
            p += n + (end ? 1 : 0);
        }
    }
    return NULL;
}

static void open_page(const char *html) {
    const char *cmd = opener();
    if (!cmd) {
        printf("no xdg-open or open on PATH: open file://%s in a browser\n", html);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execlp(cmd, cmd, html, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "warning: %s %s did not succeed: open the file in a browser\n", cmd, html);
}

int bb_cmd_report(int argc, char **argv) {
    const char *dir = NULL;
    int open_it = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            report_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--open")) {
            open_it = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "error: unknown option %s (see birdbone report --help)\n", a);
            return 2;
        } else if (!dir) {
            dir = a;
        } else {
            fprintf(stderr, "error: report takes one RUN_DIR, got %s and %s\n", dir, a);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "error: report needs a run directory (see birdbone report --help)\n");
        return 2;
    }
    if (bb_report_write(dir) != BB_OK) return 1;
    char html[4200], *abs = realpath(dir, NULL);
    snprintf(html, sizeof html, "%s/report/report.html", abs ? abs : dir);
    free(abs);
    printf("wrote %s\n", html);
    if (open_it) open_page(html);
    return 0;
}
