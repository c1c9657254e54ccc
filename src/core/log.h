/* log.h — leveled logging with a rank prefix, and a progress line for long work.
 *
 * core knows no MPI: the distributed layer tells the logger its rank and size
 * with bb_log_set_rank(). Level from BB_LOG_LEVEL (error|warn|info|debug) or
 * bb_log_set_level(). Info goes to stdout on rank 0 only unless `all` ranks are
 * asked for; warnings and errors go to stderr from every rank. */
#ifndef BB_LOG_H
#define BB_LOG_H

typedef enum { BB_LOG_ERROR = 0, BB_LOG_WARN, BB_LOG_INFO, BB_LOG_DEBUG, BB_LOG_LEVEL_COUNT } bb_log_level;

void bb_log_set_rank(int rank, int size);
int bb_log_rank(void);
int bb_log_size(void);
void bb_log_set_level(bb_log_level level);
bb_log_level bb_log_get_level(void);
/* Parse "error|warn|info|debug"; returns -1 if unknown. */
int bb_log_parse_level(const char *s);
/* Read BB_LOG_LEVEL from the environment if set. */
void bb_log_init_from_env(void);

void bb_log(bb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Info from every rank (with its prefix), not just rank 0. */
void bb_log_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define bb_warn(...) bb_log(BB_LOG_WARN, __VA_ARGS__)
#define bb_info(...) bb_log(BB_LOG_INFO, __VA_ARGS__)
#define bb_debug(...) bb_log(BB_LOG_DEBUG, __VA_ARGS__)

/* Progress of long work on rank 0: one line rewritten in place on a terminal,
 * plain lines (at most every `min_interval` s) otherwise. Shows done/total and ETA. */
typedef struct {
    char label[64];
    long total;
    double t_start, t_last;
    int tty;
} bb_progress;

enum { BB_PROGRESS_AUTO, BB_PROGRESS_TTY, BB_PROGRESS_PLAIN, BB_PROGRESS_OFF };
/* run.progress: a line redrawn in place (tty), periodic lines for work that
 * takes over 5 s (plain), nothing (off); auto = tty on a terminal, else plain. */
void bb_progress_set_mode(int mode);
int bb_progress_parse_mode(const char *s); /* -1 for an unknown name */
void bb_progress_begin(bb_progress *p, const char *label, long total);
void bb_progress_update(bb_progress *p, long done, const char *detail);
void bb_progress_end(bb_progress *p);

/* Wall-clock seconds (monotonic). */
double bb_now(void);

#endif
