/* report.c — RUN_DIR/report/: metrics.json read and checked, CSVs, SVG plots and report.html. */
#include "pipeline/report.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"
#include "core/svg.h"
#include "io/config.h"
#include "io/json.h"
#include "mpi/wave_h5.h"

#define JSON_MAX ((size_t)1 << 30)
#define MAX_NOTES 32
#define HIST_BINS 20

/* Per-wave phases of metrics.json "seconds", in stacking order; "total" last. */
enum { PH_DECAY, PH_HEAL, PH_REINFORCE, PH_REDISTRIBUTE, PH_EVAL, PH_CHECKPOINT, PH_TOTAL, PH_COUNT };
static const char *const phase_names[PH_COUNT] = {"decay", "heal",       "reinforce", "redistribute",
                                                  "eval",  "checkpoint", "total"};

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
    char notes[MAX_NOTES][480];
    int n_notes;
} report;

/* Every file the report may write: removed first so that a plot whose input
 * went missing does not survive from an earlier report. */
static const char *const outputs[] = {"metrics.json",    "metrics.csv", "tensors.csv", "stages.csv",  "healing.csv",
                                      "usage.csv",       "spectra.csv", "ppl.svg",     "kld.svg",     "time_waves.svg",
                                      "time_stages.svg", "density.svg", "bits.svg",    "healing.svg", "usage.svg",
                                      "spectra.svg",     "report.html"};

__attribute__((format(printf, 2, 3))) static void note(report *r, const char *fmt, ...) {
    if (r->n_notes >= MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], sizeof r->notes[0], fmt, ap);
    va_end(ap);
}

/* ---- metrics.json ------------------------------------------------------ */

static bb_status wrong_type(const report *r, const bb_json *v, const char *where, const char *expected) {
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                    "%s:%u:%u: %s: expected %s, found %s (docs/report.md gives the metrics.json schema)", r->file,
                    bb_json_line(v), bb_json_col(v), where, expected, bb_json_type_name(bb_json_type(v)));
}

static bb_status missing(const report *r, const bb_json *parent, const char *where) {
    return bb_error(BB_ERR_FORMAT, __FILE__, __LINE__,
                    "%s:%u:%u: %s is missing (docs/report.md gives the metrics.json schema)", r->file,
                    bb_json_line(parent), bb_json_col(parent), where);
}

/* Number member `key` of obj: null or absent gives NaN unless required. */
static bb_status get_num(const report *r, const bb_json *obj, const char *key, const char *at, int required,
                         double *out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    *out = NAN;
    if (!v || bb_json_type(v) == BB_JSON_NULL) return required ? missing(r, obj, where) : BB_OK;
    if (bb_json_type(v) != BB_JSON_NUMBER) return wrong_type(r, v, where, "a number");
    *out = bb_json_num(v);
    return BB_OK;
}

static bb_status get_int(const report *r, const bb_json *obj, const char *key, const char *at, int *out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    if (!v) return missing(r, obj, where);
    int64_t x = 0;
    if (!bb_json_is_int(v) || bb_json_int64(v, &x) != BB_OK || x < -1 || x > 1000000)
        return wrong_type(r, v, where, "an integer in [-1, 1000000]");
    *out = (int)x;
    return BB_OK;
}

static bb_status get_str(const report *r, const bb_json *obj, const char *key, const char *at, const char **out) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    if (!v) return missing(r, obj, where);
    *out = bb_json_str(v, NULL);
    if (!*out) return wrong_type(r, v, where, "a string");
    return BB_OK;
}

/* An array member of numbers (null elements give NaN); absent or null gives
 * n = 0 unless required. */
static bb_status get_nums(const report *r, const bb_json *obj, const char *key, const char *at, int required,
                          double **out, int *n) {
    char where[256];
    snprintf(where, sizeof where, "%s%s%s", at, *at ? "." : "", key);
    const bb_json *v = bb_json_get(obj, key);
    *out = NULL;
    *n = 0;
    if (!v || bb_json_type(v) == BB_JSON_NULL) return required ? missing(r, obj, where) : BB_OK;
    if (bb_json_type(v) != BB_JSON_ARRAY) return wrong_type(r, v, where, "an array of numbers");
    size_t len = bb_json_len(v);
    if (!len) return BB_OK;
    BB_CALL(bb_malloc((void **)out, len * sizeof(double), "metrics.json array"));
    for (size_t i = 0; i < len; i++) {
        const bb_json *e = bb_json_at(v, i);
        if (bb_json_type(e) == BB_JSON_NULL) {
            (*out)[i] = NAN;
        } else if (bb_json_type(e) == BB_JSON_NUMBER) {
            (*out)[i] = bb_json_num(e);
        } else {
            char w[300];
            snprintf(w, sizeof w, "%s[%zu]", where, i);
            free(*out);
            *out = NULL;
            return wrong_type(r, e, w, "a number");
        }
    }
    *n = (int)len;
    return BB_OK;
}

/* An optional member that must be of kind t when present; *out NULL when absent. */
static bb_status get_kind(const report *r, const bb_json *obj, const char *key, bb_json_kind t, const bb_json **out) {
    *out = bb_json_get(obj, key);
    if (*out && bb_json_type(*out) != t) return wrong_type(r, *out, key, bb_json_type_name(t));
    return BB_OK;
}

static bb_status parse_waves(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->waves, (size_t)n, "report waves");
    for (int i = 0; i < n; i++) {
        const bb_json *w = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "waves[%d]", i);
        if (bb_json_type(w) != BB_JSON_OBJECT) return wrong_type(r, w, at, "an object");
        wave_row *row = &r->waves[i];
        r->n_waves = i + 1;
        BB_CALL(get_int(r, w, "wave", at, &row->wave));
        BB_CALL(get_num(r, w, "ppl", at, 1, &row->ppl));
        BB_CALL(get_num(r, w, "dppl", at, 0, &row->dppl));
        BB_CALL(get_num(r, w, "kld", at, 0, &row->kld));
        BB_CALL(get_num(r, w, "top1", at, 0, &row->top1));
        BB_CALL(get_num(r, w, "sparsity", at, 0, &row->sparsity));
        BB_CALL(get_num(r, w, "bits", at, 0, &row->bits));
        BB_CALL(get_num(r, w, "lora_values", at, 0, &row->lora_values));
        const bb_json *rb = bb_json_get(w, "rolled_back");
        if (rb && bb_json_bool(rb) < 0) {
            char where[96];
            snprintf(where, sizeof where, "%s.rolled_back", at);
            return wrong_type(r, rb, where, "a boolean");
        }
        row->rolled_back = rb ? bb_json_bool(rb) : 0;
        const bb_json *sec = bb_json_get(w, "seconds");
        char sat[96];
        snprintf(sat, sizeof sat, "%s.seconds", at);
        if (sec && bb_json_type(sec) != BB_JSON_OBJECT) return wrong_type(r, sec, sat, "an object");
        for (int p = 0; p < PH_COUNT; p++) BB_CALL(get_num(r, sec, phase_names[p], sat, 0, &row->sec[p]));
    }
    return BB_OK;
}

static bb_status parse_tensors(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->tensors, (size_t)n, "report tensors");
    for (int i = 0; i < n; i++) {
        const bb_json *t = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "tensors[%d]", i);
        if (bb_json_type(t) != BB_JSON_OBJECT) return wrong_type(r, t, at, "an object");
        tensor_row *row = &r->tensors[i];
        r->n_tensors = i + 1;
        BB_CALL(get_str(r, t, "name", at, &row->name));
        BB_CALL(get_str(r, t, "kind", at, &row->kind));
        BB_CALL(get_int(r, t, "layer", at, &row->layer));
        BB_CALL(get_num(r, t, "rows", at, 0, &row->rows));
        BB_CALL(get_num(r, t, "cols", at, 0, &row->cols));
        BB_CALL(get_nums(r, t, "density", at, 0, &row->density, &row->n_density));
        BB_CALL(get_nums(r, t, "bits", at, 0, &row->bits, &row->n_bits));
        BB_CALL(get_nums(r, t, "lora_rank", at, 0, &row->lora_rank, &row->n_lora));
    }
    return BB_OK;
}

static bb_status parse_heal(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->heal, (size_t)n, "report healing curves");
    for (int i = 0; i < n; i++) {
        const bb_json *h = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "heal_curves[%d]", i);
        if (bb_json_type(h) != BB_JSON_OBJECT) return wrong_type(r, h, at, "an object");
        heal_row *row = &r->heal[i];
        r->n_heal = i + 1;
        BB_CALL(get_int(r, h, "wave", at, &row->wave));
        BB_CALL(get_str(r, h, "name", at, &row->name));
        BB_CALL(get_nums(r, h, "loss", at, 1, &row->loss, &row->n));
    }
    return BB_OK;
}

static bb_status parse_stages(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->stages, (size_t)n, "report stages");
    for (int i = 0; i < n; i++) {
        const bb_json *s = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "stages[%d]", i);
        if (bb_json_type(s) != BB_JSON_OBJECT) return wrong_type(r, s, at, "an object");
        r->n_stages = i + 1;
        BB_CALL(get_str(r, s, "name", at, &r->stages[i].name));
        BB_CALL(get_num(r, s, "seconds", at, 1, &r->stages[i].seconds));
    }
    return BB_OK;
}

static bb_status parse_stress(report *r, const bb_json *arr) {
    int n = (int)bb_json_len(arr);
    if (!n) return BB_OK;
    BB_CALLOC(r->stress, (size_t)n, "report stress boosts");
    for (int i = 0; i < n; i++) {
        const bb_json *s = bb_json_at(arr, (size_t)i);
        char at[64];
        snprintf(at, sizeof at, "stress[%d]", i);
        if (bb_json_type(s) != BB_JSON_OBJECT) return wrong_type(r, s, at, "an object");
        r->n_stress = i + 1;
        BB_CALL(get_int(r, s, "wave", at, &r->stress[i].wave));
        BB_CALL(get_str(r, s, "name", at, &r->stress[i].name));
        BB_CALL(get_num(r, s, "boost_bits", at, 0, &r->stress[i].boost_bits));
    }
    return BB_OK;
}

static bb_status parse_metrics(report *r) {
    BB_CHECK(bb_path_exists(r->file), BB_ERR_IO,
             "%s does not exist: the report reads the metrics the wave loop writes there (run birdbone compress "
             "with run.dir=%s first)",
             r->file, r->dir);
    BB_CALL(bb_file_read_all(r->file, JSON_MAX, &r->text, &r->text_len));
    BB_CALL(bb_json_parse(r->text, r->text_len, r->file, &r->doc));
    r->root = bb_json_root(r->doc);
    if (bb_json_type(r->root) != BB_JSON_OBJECT) return wrong_type(r, r->root, "the top level", "an object");
    const bb_json *v;
    static const char *const objects[] = {"model", "dense", "final"};
    for (int i = 0; i < 3; i++) BB_CALL(get_kind(r, r->root, objects[i], BB_JSON_OBJECT, &v));
    BB_CALL(get_num(r, bb_json_get(r->root, "dense"), "ppl", "dense", 0, &r->dense_ppl));
    BB_CALL(get_num(r, bb_json_get(r->root, "dense"), "ppl_err", "dense", 0, &r->dense_err));
    BB_CALL(get_kind(r, r->root, "waves", BB_JSON_ARRAY, &v));
    BB_CALL(parse_waves(r, v));
    BB_CALL(get_kind(r, r->root, "tensors", BB_JSON_ARRAY, &v));
    BB_CALL(parse_tensors(r, v));
    BB_CALL(get_kind(r, r->root, "heal_curves", BB_JSON_ARRAY, &v));
    BB_CALL(parse_heal(r, v));
    BB_CALL(get_kind(r, r->root, "stages", BB_JSON_ARRAY, &v));
    BB_CALL(parse_stages(r, v));
    BB_CALL(get_kind(r, r->root, "stress", BB_JSON_ARRAY, &v));
    BB_CALL(parse_stress(r, v));
    /* the dense PPL: dense.ppl, else the PPL of wave 0 */
    for (int i = 0; isnan(r->dense_ppl) && i < r->n_waves; i++)
        if (r->waves[i].wave == 0) r->dense_ppl = r->waves[i].ppl;
    return BB_OK;
}

/* stoploss.max_dppl from RUN_DIR/config.yaml when the run had a stop-loss. */
static void read_stoploss(report *r) {
    r->max_dppl = NAN;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.yaml", r->dir);
    if (!bb_path_exists(path)) {
        note(r, "no config.yaml in the run directory: the PPL plot has no stop-loss line");
        return;
    }
    bb_config *cfg = NULL;
    if (bb_calloc((void **)&cfg, 1, sizeof *cfg, "config") != BB_OK) return;
    int quiet = bb_error_set_quiet(1);
    bb_status st = bb_config_load(path, cfg);
    bb_error_set_quiet(quiet);
    if (st != BB_OK)
        note(r, "config.yaml could not be read (%s): the PPL plot has no stop-loss line", bb_last_error());
    else if (!cfg->stoploss.enabled)
        note(r, "the stop-loss was disabled in this run (stoploss.enabled: false): no threshold line");
    else
        r->max_dppl = cfg->stoploss.max_dppl;
    free(cfg);
}

/* ---- output helpers ---------------------------------------------------- */

typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} membuf;

static bb_status mb_open(membuf *m, const char *what) {
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    BB_CHECK(m->f, BB_ERR_OOM, "out of memory: text buffer for %s", what);
    return BB_OK;
}

/* Close m and write it to report/<name> atomically. */
static bb_status mb_write(report *r, membuf *m, const char *name) {
    int bad = ferror(m->f);
    fclose(m->f);
    m->f = NULL;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", r->out, name);
    bb_status st = bad ? bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory while building %s", path)
                       : bb_file_write_atomic(path, m->buf, m->len);
    free(m->buf);
    m->buf = NULL;
    BB_CALL(st);
    return BB_OK;
}

/* A CSV field: empty for NaN (not recorded), else the shortest round-trip-safe text. */
static void csv_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
}

/* A CSV text field, quoted when it holds a comma, quote or newline. */
static void csv_str(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void html_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* Write an SVG (taking ownership of svg) and add its figure to report.html. */
static bb_status emit_plot(report *r, const char *name, const char *caption, char *svg, size_t len) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", r->out, name);
    bb_status st = bb_file_write_atomic(path, svg, len);
    if (st == BB_OK) {
        char id[64];
        snprintf(id, sizeof id, "%s", name);
        char *dot = strrchr(id, '.');
        if (dot) *dot = 0;
        fprintf(r->figs, "<figure id=\"%s\">\n%s<figcaption>", id, svg);
        html_text(r->figs, caption);
        fprintf(r->figs, " <a href=\"%s\">%s</a></figcaption>\n</figure>\n", name, name);
        r->n_plots++;
    }
    free(svg);
    BB_CALL(st);
    return BB_OK;
}

/* A render that found nothing to draw (BB_ERR_ARG: every value null) becomes a note. */
static bb_status rendered(report *r, const char *name, bb_status st) {
    if (st != BB_ERR_ARG) return st;
    note(r, "%s left out: %s", name, bb_last_error());
    return BB_OK;
}

static bb_status emit_lines(report *r, const char *name, const char *caption, const bb_svg_plot *p,
                            const bb_svg_series *s, int n) {
    char *svg = NULL;
    size_t len = 0;
    int quiet = bb_error_set_quiet(1);
    bb_status st = bb_svg_render(p, s, n, &svg, &len);
    bb_error_set_quiet(quiet);
    if (st != BB_OK) return rendered(r, name, st);
    return emit_plot(r, name, caption, svg, len);
}

/* ---- CSVs -------------------------------------------------------------- */

static bb_status write_metrics_csv(report *r) {
    if (!r->n_waves) {
        note(r, "no waves in metrics.json: no metrics.csv, PPL, KLD or time-per-wave plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(mb_open(&m, "metrics.csv"));
    fprintf(m.f, "wave,ppl,dppl,kld,top1,sparsity,bits,lora_values,rolled_back");
    for (int p = 0; p < PH_COUNT; p++) fprintf(m.f, ",seconds_%s", phase_names[p]);
    fputc('\n', m.f);
    for (int i = 0; i < r->n_waves; i++) {
        const wave_row *w = &r->waves[i];
        double v[] = {w->ppl, w->dppl, w->kld, w->top1, w->sparsity, w->bits, w->lora_values};
        fprintf(m.f, "%d", w->wave);
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
            fputc(',', m.f);
            csv_num(m.f, v[k]);
        }
        fprintf(m.f, ",%d", w->rolled_back);
        for (int p = 0; p < PH_COUNT; p++) {
            fputc(',', m.f);
            csv_num(m.f, w->sec[p]);
        }
        fputc('\n', m.f);
    }
    return mb_write(r, &m, "metrics.csv");
}

static double at_or_nan(const double *a, int n, int i) { return i < n ? a[i] : NAN; }

/* Long format: one row per (tensor, wave). */
static bb_status write_tensors_csv(report *r) {
    if (!r->n_tensors) {
        note(r, "no tensors in metrics.json: no tensors.csv, density or bits map");
        return BB_OK;
    }
    membuf m;
    BB_CALL(mb_open(&m, "tensors.csv"));
    fprintf(m.f, "name,layer,kind,rows,cols,wave,density,bits,lora_rank\n");
    for (int i = 0; i < r->n_tensors; i++) {
        const tensor_row *t = &r->tensors[i];
        int n = t->n_density > t->n_bits ? t->n_density : t->n_bits;
        if (t->n_lora > n) n = t->n_lora;
        for (int k = 0; k < n; k++) {
            csv_str(m.f, t->name);
            fprintf(m.f, ",%d,", t->layer);
            csv_str(m.f, t->kind);
            fputc(',', m.f);
            csv_num(m.f, t->rows);
            fputc(',', m.f);
            csv_num(m.f, t->cols);
            fprintf(m.f, ",%d,", k);
            csv_num(m.f, at_or_nan(t->density, t->n_density, k));
            fputc(',', m.f);
            csv_num(m.f, at_or_nan(t->bits, t->n_bits, k));
            fputc(',', m.f);
            csv_num(m.f, at_or_nan(t->lora_rank, t->n_lora, k));
            fputc('\n', m.f);
        }
    }
    return mb_write(r, &m, "tensors.csv");
}

static bb_status write_stages_csv(report *r) {
    if (!r->n_stages) {
        note(r, "no stages in metrics.json: no stages.csv or time-per-stage plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(mb_open(&m, "stages.csv"));
    fprintf(m.f, "stage,seconds\n");
    for (int i = 0; i < r->n_stages; i++) {
        csv_str(m.f, r->stages[i].name);
        fputc(',', m.f);
        csv_num(m.f, r->stages[i].seconds);
        fputc('\n', m.f);
    }
    return mb_write(r, &m, "stages.csv");
}

static bb_status write_healing_csv(report *r) {
    if (!r->n_heal) {
        note(r, "no healing curves in metrics.json (healing off or not recorded): no healing.csv or plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(mb_open(&m, "healing.csv"));
    fprintf(m.f, "wave,name,step,loss\n");
    for (int i = 0; i < r->n_heal; i++)
        for (int k = 0; k < r->heal[i].n; k++) {
            fprintf(m.f, "%d,", r->heal[i].wave);
            csv_str(m.f, r->heal[i].name);
            fprintf(m.f, ",%d,", k + 1);
            csv_num(m.f, r->heal[i].loss[k]);
            fputc('\n', m.f);
        }
    return mb_write(r, &m, "healing.csv");
}

/* ---- plots from metrics.json ------------------------------------------- */

static bb_status plot_ppl_kld(report *r) {
    if (!r->n_waves) return BB_OK;
    double *x = NULL, *ppl = NULL, *rb = NULL, *kld = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, done, bb_calloc((void **)&x, (size_t)r->n_waves * 4, sizeof(double), "report PPL plot"));
    ppl = x + r->n_waves;
    rb = ppl + r->n_waves;
    kld = rb + r->n_waves;
    int n_rb = 0, n_kld = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < r->n_waves; i++) {
        x[i] = r->waves[i].wave;
        ppl[i] = r->waves[i].ppl;
        rb[i] = r->waves[i].rolled_back ? ppl[i] : NAN;
        kld[i] = r->waves[i].kld;
        n_rb += r->waves[i].rolled_back;
        n_kld += isfinite(kld[i]);
        if (isfinite(ppl[i])) lo = fmin(lo, ppl[i]), hi = fmax(hi, ppl[i]);
    }
    double hl[2];
    int n_hl = 0;
    char cap[600], title[200];
    if (isfinite(r->dense_ppl)) hl[n_hl++] = r->dense_ppl;
    if (isfinite(r->dense_ppl) && isfinite(r->max_dppl)) hl[n_hl++] = r->dense_ppl * (1 + r->max_dppl);
    for (int h = 0; h < n_hl; h++) lo = fmin(lo, hl[h]), hi = fmax(hi, hl[h]);
    double pad = hi > lo ? 0.08 * (hi - lo) : 0.05 * fabs(hi) + 1e-3;
    snprintf(cap, sizeof cap,
             "Perplexity on the evaluation set after each wave (wave 0 = dense)%s%s%s. Red dots: waves the stop-loss "
             "rolled back (%d).",
             n_hl ? "; dashed: the dense PPL" : "", n_hl > 1 ? " and the stop-loss threshold" : "",
             n_hl > 1 ? " (dense x (1 + stoploss.max_dppl))" : "", n_rb);
    snprintf(title, sizeof title, "Perplexity per wave");
    bb_svg_series s[2] = {{"PPL", x, ppl, r->n_waves}, {n_rb ? "rolled back" : "", x, rb, r->n_waves}};
    static const int colors[2] = {0, 3};
    bb_svg_plot p = {.title = title,
                     .xlabel = "wave",
                     .ylabel = "perplexity",
                     .y_min = lo - pad,
                     .y_max = hi + pad,
                     .hlines = hl,
                     .n_hlines = n_hl,
                     .colors = colors,
                     .markers = 1,
                     .x_integer = 1};
    BB_CALL_GOTO(st, done, emit_lines(r, "ppl.svg", cap, &p, s, n_rb ? 2 : 1));
    if (!n_kld) {
        note(r, "no KLD recorded in the waves (eval.kld off): no KLD plot");
        goto done;
    }
    bb_svg_series k = {"KLD", x, kld, r->n_waves};
    bb_svg_plot pk = {.title = "KL divergence to the dense model per wave",
                      .xlabel = "wave",
                      .ylabel = "mean KLD (nats per token)",
                      .markers = 1,
                      .x_integer = 1};
    BB_CALL_GOTO(st, done,
                 emit_lines(r, "kld.svg",
                            "Mean KL divergence of the next-token distribution from the dense model's, per wave.", &pk,
                            &k, 1));
done:
    free(x);
    return st;
}

static bb_status plot_time(report *r) {
    bb_status st = BB_OK;
    double *v = NULL;
    const char **labels = NULL;
    char(*names)[16] = NULL;
    int with_time = 0;
    for (int i = 0; i < r->n_waves; i++)
        for (int p = 0; p < PH_COUNT; p++) with_time |= isfinite(r->waves[i].sec[p]);
    if (r->n_waves && !with_time) note(r, "no seconds recorded per wave: no time-per-wave plot");
    if (with_time) {
        /* stacks: the phases without "total", then "other" = total minus the phases */
        const int ns = PH_COUNT;
        static const char *const stack_labels[PH_COUNT] = {"decay", "heal",       "reinforce", "redistribute",
                                                           "eval",  "checkpoint", "other"};
        BB_CALL_GOTO(st, done, bb_calloc((void **)&v, (size_t)r->n_waves * ns, sizeof(double), "time plot"));
        BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, (size_t)r->n_waves, sizeof *labels, "time plot"));
        BB_CALL_GOTO(st, done, bb_calloc((void **)&names, (size_t)r->n_waves, sizeof *names, "time plot"));
        for (int i = 0; i < r->n_waves; i++) {
            double sum = 0;
            for (int p = 0; p < PH_TOTAL; p++) {
                double s = r->waves[i].sec[p];
                v[(size_t)i * ns + p] = isfinite(s) ? s : 0;
                sum += v[(size_t)i * ns + p];
            }
            double total = r->waves[i].sec[PH_TOTAL];
            v[(size_t)i * ns + PH_TOTAL] = isfinite(total) && total > sum ? total - sum : 0;
            snprintf(names[i], sizeof names[i], "%d", r->waves[i].wave);
            labels[i] = names[i];
        }
        bb_svg_bars b = {.title = "Time per wave",
                         .xlabel = "wave",
                         .ylabel = "seconds",
                         .n_bars = r->n_waves,
                         .n_stacks = ns,
                         .v = v,
                         .bar_labels = labels,
                         .stack_labels = stack_labels};
        char *svg = NULL;
        size_t len = 0;
        BB_CALL_GOTO(st, done, bb_svg_bars_render(&b, &svg, &len));
        BB_CALL_GOTO(st, done,
                     emit_plot(r, "time_waves.svg",
                               "Seconds of each wave by phase; \"other\" is the wave's total minus its phases.", svg,
                               len));
    }
    if (r->n_stages) {
        free(v);
        free(labels);
        v = NULL;
        labels = NULL;
        BB_CALL_GOTO(st, done, bb_calloc((void **)&v, (size_t)r->n_stages, sizeof(double), "stage plot"));
        BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, (size_t)r->n_stages, sizeof *labels, "stage plot"));
        for (int i = 0; i < r->n_stages; i++) {
            v[i] = isfinite(r->stages[i].seconds) && r->stages[i].seconds > 0 ? r->stages[i].seconds : 0;
            labels[i] = r->stages[i].name;
        }
        bb_svg_bars b = {.title = "Time per stage",
                         .xlabel = "stage",
                         .ylabel = "seconds",
                         .n_bars = r->n_stages,
                         .n_stacks = 1,
                         .v = v,
                         .bar_labels = labels};
        char *svg = NULL;
        size_t len = 0;
        BB_CALL_GOTO(st, done, bb_svg_bars_render(&b, &svg, &len));
        BB_CALL_GOTO(st, done, emit_plot(r, "time_stages.svg", "Wall-clock seconds of each pipeline stage.", svg, len));
    }
done:
    free(v);
    free(labels);
    free(names);
    return st;
}

/* Layer labels "0".."L-1" for heatmap rows. */
static bb_status layer_labels(int n, char (**names)[12], const char ***labels) {
    BB_CALL(bb_calloc((void **)names, (size_t)n, sizeof **names, "heatmap labels"));
    bb_status st = bb_calloc((void **)labels, (size_t)n, sizeof **labels, "heatmap labels");
    if (st != BB_OK) {
        free(*names);
        *names = NULL;
        return st;
    }
    for (int i = 0; i < n; i++) {
        snprintf((*names)[i], sizeof(*names)[i], "%d", i);
        (*labels)[i] = (*names)[i];
    }
    return BB_OK;
}

static bb_status emit_heatmap(report *r, const char *name, const char *caption, const bb_svg_heatmap *h) {
    char *svg = NULL;
    size_t len = 0;
    int quiet = bb_error_set_quiet(1);
    bb_status st = bb_svg_heatmap_render(h, &svg, &len);
    bb_error_set_quiet(quiet);
    if (st != BB_OK) return rendered(r, name, st);
    return emit_plot(r, name, caption, svg, len);
}

/* Density per (layer, wave), weighted by the tensors' sizes; bits per (layer,
 * kind) after the last wave that assigned any. */
static bb_status plot_maps(report *r) {
    int n_layers = 0, n_cols = 0, n_bits = 0;
    for (int i = 0; i < r->n_tensors; i++) {
        const tensor_row *t = &r->tensors[i];
        if (t->layer < 0) continue;
        if (t->layer + 1 > n_layers) n_layers = t->layer + 1;
        if (t->n_density > n_cols) n_cols = t->n_density;
        if (t->n_bits > n_bits) n_bits = t->n_bits;
    }
    if (!n_layers) return BB_OK;
    bb_status st = BB_OK;
    double *v = NULL, *wsum = NULL;
    char(*lnames)[12] = NULL, (*cnames)[12] = NULL;
    const char **llabels = NULL, **clabels = NULL, **kinds = NULL;
    BB_CALL_GOTO(st, done, layer_labels(n_layers, &lnames, &llabels));
    if (!n_cols) {
        note(r, "no density per wave in tensors: no density map");
    } else {
        BB_CALL_GOTO(st, done, layer_labels(n_cols, &cnames, &clabels));
        BB_CALL_GOTO(st, done, bb_calloc((void **)&v, (size_t)n_layers * n_cols * 2, sizeof(double), "density map"));
        wsum = v + (size_t)n_layers * n_cols;
        for (int i = 0; i < r->n_tensors; i++) {
            const tensor_row *t = &r->tensors[i];
            double w = isfinite(t->rows) && isfinite(t->cols) && t->rows * t->cols > 0 ? t->rows * t->cols : 1;
            for (int k = 0; t->layer >= 0 && k < t->n_density; k++)
                if (isfinite(t->density[k])) {
                    v[(size_t)t->layer * n_cols + k] += w * t->density[k];
                    wsum[(size_t)t->layer * n_cols + k] += w;
                }
        }
        for (size_t c = 0; c < (size_t)n_layers * n_cols; c++) v[c] = wsum[c] > 0 ? v[c] / wsum[c] : NAN;
        bb_svg_heatmap h = {.title = "Density per layer and wave",
                            .xlabel = "wave",
                            .ylabel = "layer",
                            .value_label = "kept fraction of the layer's linear weights",
                            .rows = n_layers,
                            .cols = n_cols,
                            .v = v,
                            .row_labels = llabels,
                            .col_labels = clabels,
                            .annotate = 1};
        BB_CALL_GOTO(st, done,
                     emit_heatmap(r, "density.svg",
                                  "Kept fraction of each layer's linear weights after each wave (size-weighted over "
                                  "its tensors); grey: not recorded.",
                                  &h));
        free(v);
        v = NULL;
    }
    /* bits: kinds in order of first appearance */
    int n_kinds = 0, any = 0;
    BB_CALL_GOTO(st, done, bb_calloc((void **)&kinds, (size_t)r->n_tensors, sizeof *kinds, "bits map"));
    for (int i = 0; i < r->n_tensors; i++) {
        int k = 0;
        while (k < n_kinds && strcmp(kinds[k], r->tensors[i].kind) != 0) k++;
        if (k == n_kinds) kinds[n_kinds++] = r->tensors[i].kind;
    }
    BB_CALL_GOTO(st, done, bb_calloc((void **)&v, (size_t)n_layers * n_kinds, sizeof(double), "bits map"));
    for (size_t c = 0; c < (size_t)n_layers * n_kinds; c++) v[c] = NAN;
    for (int i = 0; i < r->n_tensors; i++) {
        const tensor_row *t = &r->tensors[i];
        int k = 0;
        while (strcmp(kinds[k], t->kind) != 0) k++;
        for (int w = t->n_bits - 1; t->layer >= 0 && w >= 0; w--)
            if (isfinite(t->bits[w]) && t->bits[w] > 0) {
                v[(size_t)t->layer * n_kinds + k] = t->bits[w];
                any = 1;
                break;
            }
    }
    if (!any) {
        note(r, "no bit widths assigned in tensors (no quantization yet): no bits map");
        goto done;
    }
    bb_svg_heatmap h = {.title = "Bits per weight by layer and tensor kind",
                        .xlabel = "tensor kind",
                        .ylabel = "layer",
                        .value_label = "bits per weight",
                        .rows = n_layers,
                        .cols = n_kinds,
                        .v = v,
                        .row_labels = llabels,
                        .col_labels = kinds,
                        .annotate = 1};
    BB_CALL_GOTO(st, done,
                 emit_heatmap(r, "bits.svg",
                              "Bits per weight of each tensor after the last wave that assigned one; grey: not "
                              "assigned.",
                              &h));
done:
    free(v);
    free(lnames);
    free(llabels);
    free(cnames);
    free(clabels);
    free(kinds);
    return st;
}

/* More curves than this are drawn as one mean curve per wave. */
#define HEAL_LINES_MAX 60

static bb_status plot_healing(report *r) {
    if (!r->n_heal) return BB_OK;
    int per_curve = r->n_heal <= HEAL_LINES_MAX, n_lines = 0, n_waves = 0;
    bb_svg_series *s = NULL;
    int *colors = NULL, *waves = NULL, *count = NULL, *len_of = NULL;
    double **mean = NULL;
    char(*labels)[48] = NULL;
    bb_status st = BB_OK;
    size_t n = (size_t)r->n_heal;
    BB_CALL_GOTO(st, done, bb_calloc((void **)&s, n, sizeof *s, "healing plot"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&colors, n * 4, sizeof *colors, "healing plot"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, n, sizeof *labels, "healing plot"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&mean, n, sizeof *mean, "healing plot"));
    waves = colors + n;
    count = waves + n;
    len_of = count + n; /* per wave: the steps all its curves have */
    for (int i = 0; i < r->n_heal; i++) {
        const heal_row *h = &r->heal[i];
        int c = 0;
        while (c < n_waves && waves[c] != h->wave) c++;
        if (c == n_waves) {
            waves[n_waves++] = h->wave;
            len_of[c] = h->n;
        }
        count[c]++;
        if (h->n < len_of[c]) len_of[c] = h->n;
        if (per_curve) {
            if (count[c] == 1) snprintf(labels[i], sizeof labels[i], "wave %d", h->wave);
            colors[i] = c;
            s[i] = (bb_svg_series){labels[i], NULL, h->loss, h->n};
        }
    }
    if (per_curve) {
        n_lines = r->n_heal;
    } else {
        /* the mean of each wave's curves over the steps all of them have */
        for (int c = 0; c < n_waves; c++) {
            BB_CALL_GOTO(
                st, done,
                bb_calloc((void **)&mean[c], (size_t)(len_of[c] ? len_of[c] : 1), sizeof(double), "healing plot"));
            snprintf(labels[c], sizeof labels[c], "wave %d (mean of %d)", waves[c], count[c]);
            colors[c] = c;
        }
        for (int i = 0; i < r->n_heal; i++) {
            int c = 0;
            while (waves[c] != r->heal[i].wave) c++;
            for (int j = 0; j < len_of[c]; j++) mean[c][j] += r->heal[i].loss[j] / count[c];
        }
        for (int c = 0; c < n_waves; c++) s[c] = (bb_svg_series){labels[c], NULL, mean[c], len_of[c]};
        n_lines = n_waves;
    }
    bb_svg_plot p = {
        .title = "Healing loss", .xlabel = "step", .ylabel = "loss", .log_y = 1, .colors = colors, .x_integer = 1};
    BB_CALL_GOTO(st, done,
                 emit_lines(r, "healing.svg",
                            per_curve ? "Healing loss against the step, one line per healed tensor or block, coloured "
                                        "by wave."
                                      : "Healing loss against the step: the mean over each wave's healed tensors or "
                                        "blocks (too many to draw one by one; healing.csv has every curve).",
                            &p, s, n_lines));
done:
    for (int c = 0; mean && c < n_waves; c++) free(mean[c]);
    free(mean);
    free(s);
    free(colors);
    free(labels);
    return st;
}

/* ---- usage histograms from wave_<k>.h5 ---------------------------------- */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static bb_status plot_usage(report *r) {
    int *ks = NULL, n = 0, cap = 0;
    DIR *d = opendir(r->dir);
    BB_CHECK(d, BB_ERR_IO, "cannot list %s: %s", r->dir, strerror(errno));
    bb_status st = BB_OK;
    for (struct dirent *e; st == BB_OK && (e = readdir(d));) {
        int k = -1, end = 0;
        if (sscanf(e->d_name, "wave_%d.h5%n", &k, &end) != 1 || end == 0 || e->d_name[end] || k < 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int *g = realloc(ks, (size_t)cap * sizeof *ks);
            if (!g) {
                st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: wave file list");
                break;
            }
            ks = g;
        }
        ks[n++] = k;
    }
    closedir(d);
    if (st != BB_OK) {
        free(ks);
        return st;
    }
    if (!n) {
        note(r, "no wave_<k>.h5 files in the run directory: no usage histograms");
        free(ks);
        return BB_OK;
    }
    qsort(ks, (size_t)n, sizeof *ks, cmp_int);
    double *hist = NULL, x[HIST_BINS];
    bb_svg_series *s = NULL;
    char(*labels)[24] = NULL;
    membuf m = {0};
    int drawn = 0;
    BB_CALL_GOTO(st, done, bb_calloc((void **)&hist, (size_t)n * HIST_BINS, sizeof(double), "usage histograms"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&s, (size_t)n, sizeof *s, "usage histograms"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, (size_t)n, sizeof *labels, "usage histograms"));
    BB_CALL_GOTO(st, done, mb_open(&m, "usage.csv"));
    fprintf(m.f, "wave,bin_lo,bin_hi,blocks,fraction\n");
    for (int b = 0; b < HIST_BINS; b++) x[b] = (b + 0.5) / HIST_BINS;
    for (int i = 0; i < n; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/wave_%d.h5", r->dir, ks[i]);
        double *u = NULL;
        int64_t nu = 0;
        int wave = 0;
        int quiet = bb_error_set_quiet(1);
        bb_status rs = bb_wave_h5_read_usage(path, &wave, &u, &nu);
        bb_error_set_quiet(quiet);
        if (rs != BB_OK) {
            bb_warn("report: %s skipped: %s", path, bb_last_error());
            note(r, "wave_%d.h5 could not be read (%s): left out of the usage histograms", ks[i], bb_last_error());
            continue;
        }
        double *h = hist + (size_t)drawn * HIST_BINS;
        int64_t counted = 0;
        /* s = u / u_max lies in [0, 1]; 1 itself goes into the last bin */
        for (int64_t j = 0; j < nu; j++) {
            if (!isfinite(u[j])) continue;
            int b = (int)floor(u[j] * HIST_BINS);
            h[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b] += 1;
            counted++;
        }
        free(u);
        for (int b = 0; b < HIST_BINS; b++) {
            fprintf(m.f, "%d,%.10g,%.10g,%.0f,", wave, (double)b / HIST_BINS, (double)(b + 1) / HIST_BINS, h[b]);
            h[b] = counted ? h[b] / (double)counted : NAN;
            csv_num(m.f, h[b]);
            fputc('\n', m.f);
        }
        snprintf(labels[drawn], sizeof labels[drawn], "wave %d", wave);
        s[drawn] = (bb_svg_series){labels[drawn], x, h, HIST_BINS};
        drawn++;
    }
    if (!drawn) {
        fclose(m.f);
        free(m.buf);
        m.f = NULL;
        goto done;
    }
    BB_CALL_GOTO(st, done, mb_write(r, &m, "usage.csv"));
    bb_svg_plot p = {.title = "Block usage per wave",
                     .xlabel = "relative usage s = u / u_max of a block",
                     .ylabel = "fraction of blocks",
                     .y_min = 0,
                     .y_max = 1,
                     .markers = 1};
    BB_CALL_GOTO(st, done,
                 emit_lines(r, "usage.svg",
                            "Histogram (20 bins) of the relative usage of every usage block of every linear weight, "
                            "per wave file; each wave's usage is measured before it prunes.",
                            &p, s, drawn));
done:
    if (m.f) {
        fclose(m.f);
        free(m.buf);
    }
    free(ks);
    free(hist);
    free(s);
    free(labels);
    return st;
}

/* ---- spectra from scan/scan.json ---------------------------------------- */

typedef struct {
    const char *kind;
    int count, len;
    double *mean; /* (len) */
} spec_line;

static bb_status spectra_lines(const bb_json *arr, spec_line *sl, int *n_out) {
    int n = 0;
    for (size_t i = 0; i < bb_json_len(arr); i++) {
        const bb_json *t = bb_json_at(arr, i);
        const char *kind = bb_json_str(bb_json_get(t, "kind"), NULL);
        const bb_json *sig = bb_json_get(t, "sigma");
        if (!kind || bb_json_type(sig) != BB_JSON_ARRAY || !bb_json_len(sig) || !(bb_json_num(bb_json_at(sig, 0)) > 0))
            continue;
        int g = 0;
        while (g < n && strcmp(sl[g].kind, kind) != 0) g++;
        if (g == n) {
            sl[n++] = (spec_line){kind, 0, (int)bb_json_len(sig), NULL};
        } else if ((int)bb_json_len(sig) < sl[g].len) {
            sl[g].len = (int)bb_json_len(sig);
        }
        sl[g].count++;
    }
    for (int g = 0; g < n; g++) BB_CALL(bb_calloc((void **)&sl[g].mean, (size_t)sl[g].len, sizeof(double), "spectra"));
    for (size_t i = 0; i < bb_json_len(arr); i++) {
        const bb_json *t = bb_json_at(arr, i);
        const char *kind = bb_json_str(bb_json_get(t, "kind"), NULL);
        const bb_json *sig = bb_json_get(t, "sigma");
        if (!kind || bb_json_type(sig) != BB_JSON_ARRAY || !bb_json_len(sig) || !(bb_json_num(bb_json_at(sig, 0)) > 0))
            continue;
        int g = 0;
        while (strcmp(sl[g].kind, kind) != 0) g++;
        double s1 = bb_json_num(bb_json_at(sig, 0));
        for (int j = 0; j < sl[g].len; j++) sl[g].mean[j] += bb_json_num(bb_json_at(sig, (size_t)j)) / s1 / sl[g].count;
    }
    *n_out = n;
    return BB_OK;
}

static bb_status plot_spectra(report *r) {
    char path[1200];
    snprintf(path, sizeof path, "%s/scan/scan.json", r->dir);
    if (!bb_path_exists(path)) {
        note(r, "no scan/scan.json in the run directory (scan.enabled off): no spectra");
        return BB_OK;
    }
    char *text = NULL;
    size_t len = 0;
    bb_json_doc *doc = NULL;
    int quiet = bb_error_set_quiet(1);
    bb_status rs = bb_file_read_all(path, JSON_MAX, &text, &len);
    if (rs == BB_OK) rs = bb_json_parse(text, len, path, &doc);
    bb_error_set_quiet(quiet);
    free(text);
    const bb_json *arr = doc ? bb_json_get(bb_json_root(doc), "tensors") : NULL;
    if (rs != BB_OK || bb_json_type(arr) != BB_JSON_ARRAY) {
        bb_warn("report: %s skipped: %s", path, rs != BB_OK ? bb_last_error() : "no \"tensors\" array");
        note(r, "scan/scan.json could not be read (%s): no spectra",
             rs != BB_OK ? bb_last_error() : "no \"tensors\" array");
        bb_json_doc_destroy(&doc);
        return BB_OK;
    }
    bb_status st = BB_OK;
    spec_line *sl = NULL;
    bb_svg_series *s = NULL;
    char(*labels)[64] = NULL;
    int n = 0;
    membuf m = {0};
    size_t cnt = bb_json_len(arr) ? bb_json_len(arr) : 1;
    BB_CALL_GOTO(st, done, bb_calloc((void **)&sl, cnt, sizeof *sl, "spectra"));
    BB_CALL_GOTO(st, done, spectra_lines(arr, sl, &n));
    if (!n) {
        note(r, "scan/scan.json holds no singular values: no spectra");
        goto done;
    }
    BB_CALL_GOTO(st, done, bb_calloc((void **)&s, (size_t)n, sizeof *s, "spectra"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, (size_t)n, sizeof *labels, "spectra"));
    BB_CALL_GOTO(st, done, mb_open(&m, "spectra.csv"));
    fprintf(m.f, "kind,tensors,i,sigma_rel_mean\n");
    for (int g = 0; g < n; g++) {
        snprintf(labels[g], sizeof labels[g], "%.40s (mean of %d)", sl[g].kind, sl[g].count);
        s[g] = (bb_svg_series){labels[g], NULL, sl[g].mean, sl[g].len};
        for (int j = 0; j < sl[g].len; j++) {
            csv_str(m.f, sl[g].kind);
            fprintf(m.f, ",%d,%d,", sl[g].count, j + 1);
            csv_num(m.f, sl[g].mean[j]);
            fputc('\n', m.f);
        }
    }
    BB_CALL_GOTO(st, done, mb_write(r, &m, "spectra.csv"));
    bb_svg_plot p = {.title = "Singular value spectra per tensor kind",
                     .xlabel = "index i",
                     .ylabel = "sigma_i / sigma_1",
                     .log_y = 1};
    BB_CALL_GOTO(st, done,
                 emit_lines(r, "spectra.svg",
                            "Singular values of the dense weights from the stage-0 scan, normalized by the largest and "
                            "averaged over the layers, one line per tensor kind.",
                            &p, s, n));
done:
    if (m.f) {
        fclose(m.f);
        free(m.buf);
    }
    for (int g = 0; sl && g < n; g++) free(sl[g].mean);
    free(sl);
    free(s);
    free(labels);
    bb_json_doc_destroy(&doc);
    return st;
}

/* ---- report.html ------------------------------------------------------- */

static const char *str_of(const bb_json *obj, const char *key) {
    const char *s = bb_json_str(bb_json_get(obj, key), NULL);
    return s ? s : "";
}

static double num_of(const bb_json *obj, const char *key) {
    const bb_json *v = bb_json_get(obj, key);
    return bb_json_type(v) == BB_JSON_NUMBER ? bb_json_num(v) : NAN;
}

static void human_bytes(double b, char *out, size_t n) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, u++;
    snprintf(out, n, u ? "%.2f %s" : "%.0f %s", b, unit[u]);
}

/* A table row: label, then before and after columns printed with fmt (NaN: "—"). */
static void row3(FILE *f, const char *label, const char *fmt, double before, double after) {
    fprintf(f, "<tr><th>%s</th>", label);
    double v[2] = {before, after};
    for (int i = 0; i < 2; i++) {
        fprintf(f, "<td>");
        if (isfinite(v[i]))
            fprintf(f, fmt, v[i]);
        else
            fprintf(f, "—");
        fprintf(f, "</td>");
    }
    fprintf(f, "</tr>\n");
}

static void summary_table(const report *r, FILE *f) {
    const bb_json *model = bb_json_get(r->root, "model"), *fin = bb_json_get(r->root, "final");
    double params = num_of(model, "parameters"), bytes = num_of(model, "bytes"), after = num_of(fin, "bytes");
    char hb[32] = "—", ha[32] = "—";
    if (isfinite(bytes)) human_bytes(bytes, hb, sizeof hb);
    if (isfinite(after)) human_bytes(after, ha, sizeof ha);
    fprintf(f, "<table class=\"summary\">\n<tr><th></th><th>dense</th><th>final</th></tr>\n");
    fprintf(f, "<tr><th>size</th><td>%s</td><td>%s", hb, ha);
    if (isfinite(bytes) && isfinite(after) && after > 0) fprintf(f, " (%.2fx smaller)", bytes / after);
    fprintf(f, "</td></tr>\n");
    row3(f, "bits per weight", "%.3f", isfinite(bytes) && params > 0 ? 8 * bytes / params : NAN,
         num_of(fin, "bits_per_weight"));
    row3(f, "sparsity", "%.4f", 0, num_of(fin, "sparsity"));
    double fppl = num_of(fin, "ppl");
    fprintf(f, "<tr><th>perplexity</th><td>");
    if (isfinite(r->dense_ppl))
        fprintf(f, isfinite(r->dense_err) ? "%.4f ± %.4f" : "%.4f", r->dense_ppl, r->dense_err);
    else
        fprintf(f, "—");
    fprintf(f, "</td><td>");
    if (isfinite(fppl)) {
        fprintf(f, "%.4f", fppl);
        if (isfinite(r->dense_ppl) && r->dense_ppl > 0) fprintf(f, " (%+.2f %%)", 100 * (fppl / r->dense_ppl - 1));
    } else {
        fprintf(f, "—");
    }
    fprintf(f, "</td></tr>\n");
    row3(f, "KLD to dense", "%.5f", 0, num_of(fin, "kld"));
    row3(f, "top-1 agreement", "%.4f", 1, num_of(fin, "top1"));
    int rolled = 0, pruned = 0;
    for (int i = 0; i < r->n_waves; i++) rolled += r->waves[i].rolled_back, pruned += r->waves[i].wave > 0;
    fprintf(f, "<tr><th>waves</th><td></td><td>%d (%d rolled back)</td></tr>\n", pruned, rolled);
    fprintf(f, "<tr><th>GGUF</th><td></td><td>");
    html_text(f, *str_of(fin, "gguf") ? str_of(fin, "gguf") : "—");
    fprintf(f, "</td></tr>\n</table>\n");
    if (r->n_stages) {
        double total = 0;
        fprintf(f, "<h2>Time per stage</h2>\n<table class=\"stages\">\n<tr><th>stage</th><th>seconds</th></tr>\n");
        for (int i = 0; i < r->n_stages; i++) {
            fprintf(f, "<tr><td>");
            html_text(f, r->stages[i].name);
            fprintf(f, "</td><td>%.2f</td></tr>\n", r->stages[i].seconds);
            if (isfinite(r->stages[i].seconds)) total += r->stages[i].seconds;
        }
        fprintf(f, "<tr><th>total</th><th>%.2f</th></tr>\n</table>\n", total);
    }
    if (r->n_stress) {
        fprintf(f, "<h2>Stress boosts</h2>\n<table class=\"stress\">\n<tr><th>wave</th><th>tensor or block</th>"
                   "<th>boost bits</th></tr>\n");
        for (int i = 0; i < r->n_stress; i++) {
            fprintf(f, "<tr><td>%d</td><td>", r->stress[i].wave);
            html_text(f, r->stress[i].name);
            fprintf(f, "</td><td>");
            if (isfinite(r->stress[i].boost_bits))
                fprintf(f, "%g", r->stress[i].boost_bits);
            else
                fprintf(f, "—");
            fprintf(f, "</td></tr>\n");
        }
        fprintf(f, "</table>\n");
    }
}

static bb_status write_html(report *r) {
    fflush(r->figs);
    membuf m;
    BB_CALL(mb_open(&m, "report.html"));
    FILE *f = m.f;
    const bb_json *model = bb_json_get(r->root, "model");
    const char *run = *str_of(r->root, "run") ? str_of(r->root, "run") : r->dir;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>birdbone report: ");
    html_text(f, run);
    fprintf(f,
            "</title>\n<style>\nbody{font-family:Helvetica,Arial,sans-serif;max-width:920px;margin:2em "
            "auto;color:#222}\ntable{border-collapse:collapse;margin:0.5em 0 1.5em}\nth,td{border:1px solid "
            "#ccc;padding:4px 10px;text-align:left}\nfigure{margin:2em 0}\nfigure svg{max-width:100%%;height:auto}\n"
            "figcaption{font-size:0.9em;color:#444}\n.meta{color:#555;font-size:0.9em}\n</style>\n</head>\n<body>\n");
    fprintf(f, "<h1>birdbone run report: ");
    html_text(f, run);
    fprintf(f, "</h1>\n<p class=\"meta\">model ");
    html_text(f, *str_of(model, "path") ? str_of(model, "path") : "—");
    double params = num_of(model, "parameters");
    if (isfinite(params)) fprintf(f, ", %.0f parameters", params);
    fprintf(f, "; config ");
    html_text(f, *str_of(r->root, "config_hash") ? str_of(r->root, "config_hash") : "—");
    fprintf(f, "; birdbone ");
    html_text(f, *str_of(r->root, "birdbone") ? str_of(r->root, "birdbone") : "—");
    fprintf(f, "; run directory ");
    html_text(f, r->dir);
    fprintf(f, "</p>\n<h2>Summary</h2>\n");
    summary_table(r, f);
    if (r->n_notes) {
        fprintf(f, "<h2>Not recorded</h2>\n<ul class=\"notes\">\n");
        for (int i = 0; i < r->n_notes; i++) {
            fprintf(f, "<li>");
            html_text(f, r->notes[i]);
            fprintf(f, "</li>\n");
        }
        fprintf(f, "</ul>\n");
    }
    fprintf(f, "<h2>Plots</h2>\n");
    if (r->figs_len) fwrite(r->figs_buf, 1, r->figs_len, f);
    if (!r->n_plots) fprintf(f, "<p>No plot: nothing was recorded that could be drawn.</p>\n");
    fprintf(f, "<h2>Data</h2>\n<ul>\n");
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        const char *name = outputs[i], *dot = strrchr(name, '.');
        if (strcmp(dot, ".svg") == 0 || strcmp(name, "report.html") == 0) continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", r->out, name);
        if (bb_path_exists(path)) fprintf(f, "<li><a href=\"%s\">%s</a></li>\n", name, name);
    }
    fprintf(f, "</ul>\n</body>\n</html>\n");
    return mb_write(r, &m, "report.html");
}

/* ---- the whole report -------------------------------------------------- */

static bb_status build(report *r) {
    BB_CALL(parse_metrics(r));
    BB_CALL(bb_mkdir_p(r->out));
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", r->out, outputs[i]);
        BB_CHECK(unlink(path) == 0 || errno == ENOENT, BB_ERR_IO, "cannot remove the old %s: %s", path,
                 strerror(errno));
    }
    char copy[1400];
    snprintf(copy, sizeof copy, "%s/metrics.json", r->out);
    BB_CALL(bb_file_write_atomic(copy, r->text, r->text_len));
    read_stoploss(r);
    r->figs = open_memstream(&r->figs_buf, &r->figs_len);
    BB_CHECK(r->figs, BB_ERR_OOM, "out of memory: report.html figures");
    BB_CALL(write_metrics_csv(r));
    BB_CALL(write_tensors_csv(r));
    BB_CALL(write_stages_csv(r));
    BB_CALL(write_healing_csv(r));
    BB_CALL(plot_ppl_kld(r));
    BB_CALL(plot_time(r));
    BB_CALL(plot_maps(r));
    BB_CALL(plot_healing(r));
    BB_CALL(plot_usage(r));
    BB_CALL(plot_spectra(r));
    BB_CHECK(!ferror(r->figs), BB_ERR_OOM, "out of memory while building report.html");
    BB_CALL(write_html(r));
    bb_info("report   %s/report.html: %d plots, %d inputs not recorded", r->out, r->n_plots, r->n_notes);
    for (int i = 0; i < r->n_notes; i++) bb_info("         - %s", r->notes[i]);
    return BB_OK;
}

bb_status bb_report_write(const char *run_dir) {
    BB_CHECK(run_dir && *run_dir, BB_ERR_ARG, "report: no run directory given");
    BB_CHECK(bb_path_is_dir(run_dir), BB_ERR_IO, "report: run directory %s does not exist", run_dir);
    report *r;
    BB_CALLOC(r, 1, "report");
    bb_status st = BB_OK;
    size_t n = strlen(run_dir);
    while (n > 1 && run_dir[n - 1] == '/') n--;
    if (n >= sizeof r->dir) {
        st = bb_error(BB_ERR_ARG, __FILE__, __LINE__, "report: run directory path too long: %s", run_dir);
    } else {
        memcpy(r->dir, run_dir, n);
        snprintf(r->out, sizeof r->out, "%s/report", r->dir);
        snprintf(r->file, sizeof r->file, "%s/metrics.json", r->dir);
        r->dense_ppl = r->dense_err = r->max_dppl = NAN;
        st = build(r);
    }
    if (r->figs) fclose(r->figs);
    free(r->figs_buf);
    for (int i = 0; i < r->n_tensors; i++) {
        free(r->tensors[i].density);
        free(r->tensors[i].bits);
        free(r->tensors[i].lora_rank);
    }
    for (int i = 0; i < r->n_heal; i++) free(r->heal[i].loss);
    free(r->tensors);
    free(r->heal);
    free(r->waves);
    free(r->stages);
    free(r->stress);
    bb_json_doc_destroy(&r->doc);
    free(r->text);
    free(r);
    BB_CALL(st);
    return BB_OK;
}
