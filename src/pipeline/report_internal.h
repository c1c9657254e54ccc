/* report_internal.h — shared by the run report's three files: the parsed metrics.json, notes, output helpers.
 *
 * report_metrics.c reads and checks metrics.json (and config.yaml), report_plots.c writes the CSVs and SVG
 * plots, report.c writes report.html and drives the whole. Not a public interface: see report.h. */
#ifndef BB_PIPELINE_REPORT_INTERNAL_H
#define BB_PIPELINE_REPORT_INTERNAL_H

#include <stdio.h>

#include "core/status.h"
#include "io/json.h"

#define BB_REPORT_JSON_MAX ((size_t)1 << 30)
#define BB_REPORT_MAX_NOTES 32

/* Per-wave phases of metrics.json "seconds", in stacking order; "total" last. */
enum { PH_DECAY, PH_HEAL, PH_REINFORCE, PH_REDISTRIBUTE, PH_EVAL, PH_CHECKPOINT, PH_TOTAL, PH_COUNT };
extern const char *const bb_report_phase_names[PH_COUNT];

typedef struct {
    int wave;
    double ppl, dppl, kld, top1, sparsity, bits, lora_values;
    int rolled_back;
    double sec[PH_COUNT]; /* NaN = not recorded */
} wave_row;

typedef struct {
    const char *name, *kind; /* into the JSON document */
    int layer;
    double rows, cols;
    double *density, *bits, *lora_rank; /* (n_*) per wave 0..K; NaN = null */
    int n_density, n_bits, n_lora;
} tensor_row;

typedef struct {
    int wave;
    const char *name;
    double *loss; /* (n) */
    int n;
} heal_row;

typedef struct {
    const char *name;
    double seconds;
} stage_row;

typedef struct {
    int wave;
    const char *name;
    double boost_bits;
} stress_row;

typedef struct {
    char dir[1024], out[1200], file[1200];
    char *text; /* metrics.json as read */
    size_t text_len;
    bb_json_doc *doc;
    const bb_json *root;
    wave_row *waves;
    int n_waves;
    tensor_row *tensors;
    int n_tensors;
    heal_row *heal;
    int n_heal;
    stage_row *stages;
    int n_stages;
    stress_row *stress;
    int n_stress;
    double dense_ppl, dense_err, max_dppl; /* max_dppl NaN: no stop-loss line */
    /* report.html: the plot figures are collected here and placed after the tables */
    FILE *figs;
    char *figs_buf;
    size_t figs_len;
    int n_plots;
    char notes[BB_REPORT_MAX_NOTES][480];
    int n_notes;
} report;

typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} membuf;

/* One line under "Not recorded" in report.html (at most BB_REPORT_MAX_NOTES). */
__attribute__((format(printf, 2, 3))) void bb_report_note(report *r, const char *fmt, ...);

/* report_metrics.c: read r->file into r (errors: BB_ERR_IO missing, BB_ERR_FORMAT with line, column and key) */
bb_status bb_report_parse_metrics(report *r);
/* r->max_dppl from RUN_DIR/config.yaml, NaN (and a note) when there is no stop-loss line to draw */
void bb_report_read_stoploss(report *r);

/* report_plots.c: the CSVs and plots whose inputs were recorded, a note for each left out */
bb_status bb_report_write_csvs(report *r);
bb_status bb_report_write_plots(report *r);

/* report.c: text built in memory, then written to report/<name> atomically */
bb_status bb_report_mb_open(membuf *m, const char *what);
bb_status bb_report_mb_write(report *r, membuf *m, const char *name);
void bb_report_html_text(FILE *f, const char *s);
/* Write report/<name> (taking ownership of svg) and add its figure and caption to report.html. */
bb_status bb_report_emit_plot(report *r, const char *name, const char *caption, char *svg, size_t len);

#endif
