/* log.c — leveled logging and progress lines. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_rank = 0, log_size = 1;
static bb_log_level log_level = BB_LOG_INFO;

void bb_log_set_rank(int rank, int size) {
    log_rank = rank;
    log_size = size;
}
int bb_log_rank(void) { return log_rank; }
int bb_log_size(void) { return log_size; }
void bb_log_set_level(bb_log_level level) { log_level = level; }
bb_log_level bb_log_get_level(void) { return log_level; }

int bb_log_parse_level(const char *s) {
    static const char *const names[BB_LOG_LEVEL_COUNT] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < BB_LOG_LEVEL_COUNT; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    return -1;
}

void bb_log_init_from_env(void) {
    const char *e = getenv("BB_LOG_LEVEL");
    if (!e) return;
    int l = bb_log_parse_level(e);
    if (l >= 0) log_level = (bb_log_level)l;
    else fprintf(stderr, "warning: BB_LOG_LEVEL=%s is not one of error|warn|info|debug; keeping info\n", e);
}

static void vlog(FILE *f, const char *tag, const char *fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (log_size > 1) fprintf(f, "[rank %d] %s%s\n", log_rank, tag, buf);
    else fprintf(f, "%s%s\n", tag, buf);
    fflush(f);
}

void bb_log(bb_log_level level, const char *fmt, ...) {
    if (level > log_level) return;
    va_list ap;
    va_start(ap, fmt);
    if (level <= BB_LOG_WARN) vlog(stderr, level == BB_LOG_ERROR ? "error: " : "warning: ", fmt, ap);
    else if (log_rank == 0) vlog(stdout, level == BB_LOG_DEBUG ? "debug: " : "", fmt, ap);
    va_end(ap);
}

void bb_log_all(const char *fmt, ...) {
    if (log_level < BB_LOG_INFO) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(stdout, "", fmt, ap);
    va_end(ap);
}

double bb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_secs(char *out, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(out, n, "?");
    else if (s < 60) snprintf(out, n, "%.0fs", s);
    else if (s < 3600) snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(out, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

static int progress_mode = BB_PROGRESS_AUTO;

void bb_progress_set_mode(int mode) { progress_mode = mode; }

int bb_progress_parse_mode(const char *s) {
    return !strcmp(s, "auto")    ? BB_PROGRESS_AUTO
           : !strcmp(s, "tty")   ? BB_PROGRESS_TTY
           : !strcmp(s, "plain") ? BB_PROGRESS_PLAIN
           : !strcmp(s, "off")   ? BB_PROGRESS_OFF
                                 : -1;
}

void bb_progress_begin(bb_progress *p, const char *label, long total) {
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t_start = p->t_last = bb_now();
    p->tty = progress_mode == BB_PROGRESS_TTY ||
             (progress_mode == BB_PROGRESS_AUTO && isatty(STDOUT_FILENO) && !getenv("BB_NO_TTY"));
}

void bb_progress_update(bb_progress *p, long done, const char *detail) {
    if (log_rank != 0 || log_level < BB_LOG_INFO || progress_mode == BB_PROGRESS_OFF) return;
    double t = bb_now();
    int last = done >= p->total;
    if (!last && t - p->t_last < (p->tty ? 0.1 : 5.0)) return;
    /* plain lines are for long work: a job done within 5 s gets none */
    if (!p->tty && t - p->t_start < 5.0) return;
    p->t_last = t;
    double el = t - p->t_start;
    double eta = done > 0 ? el * (double)(p->total - done) / (double)done : -1;
    char se[32], st[32];
    fmt_secs(se, sizeof se, el);
    fmt_secs(st, sizeof st, eta);
    double pct = p->total > 0 ? 100.0 * (double)done / (double)p->total : 100.0;
    if (p->tty)
        printf("\r\033[K%s %ld/%ld (%.0f%%) %s elapsed %s eta %s", p->label, done, p->total, pct, detail ? detail : "", se, st);
    else
        printf("%s %ld/%ld (%.0f%%) %s elapsed %s eta %s\n", p->label, done, p->total, pct, detail ? detail : "", se, st);
    fflush(stdout);
}

void bb_progress_end(bb_progress *p) {
    if (log_rank != 0 || log_level < BB_LOG_INFO || progress_mode == BB_PROGRESS_OFF) return;
    if (p->tty) {
        printf("\n");
        fflush(stdout);
    }
}
