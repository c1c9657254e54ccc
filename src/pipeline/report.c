/* report.c — RUN_DIR/report/: the run report's driver, its shared output helpers and report.html. */
#include "pipeline/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"
#include "pipeline/report_internal.h"

/* Every file the report may write: removed first so that a plot whose input
 * went missing does not survive from an earlier report. */
static const char *const outputs[] = {"metrics.json",    "metrics.csv", "tensors.csv", "stages.csv",  "healing.csv",
                                      "usage.csv",       "spectra.csv", "ppl.svg",     "kld.svg",     "time_waves.svg",
                                      "time_stages.svg", "density.svg", "bits.svg",    "healing.svg", "usage.svg",
                                      "spectra.svg",     "report.html"};

void bb_report_note(report *r, const char *fmt, ...) {
    if (r->n_notes >= BB_REPORT_MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->n_notes++], sizeof r->notes[0], fmt, ap);
    va_end(ap);
}

/* ---- output helpers ---------------------------------------------------- */

bb_status bb_report_mb_open(membuf *m, const char *what) {
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    BB_CHECK(m->f, BB_ERR_OOM, "out of memory: text buffer for %s", what);
    return BB_OK;
}

/* Close m and write it to report/<name> atomically. */
bb_status bb_report_mb_write(report *r, membuf *m, const char *name) {
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

void bb_report_html_text(FILE *f, const char *s) {
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
bb_status bb_report_emit_plot(report *r, const char *name, const char *caption, char *svg, size_t len) {
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", r->out, name);
    bb_status st = bb_file_write_atomic(path, svg, len);
    if (st == BB_OK) {
        char id[64];
        snprintf(id, sizeof id, "%s", name);
        char *dot = strrchr(id, '.');
        if (dot) *dot = 0;
        fprintf(r->figs, "<figure id=\"%s\">\n%s<figcaption>", id, svg);
        bb_report_html_text(r->figs, caption);
        fprintf(r->figs, " <a href=\"%s\">%s</a></figcaption>\n</figure>\n", name, name);
        r->n_plots++;
    }
    free(svg);
    BB_CALL(st);
    return BB_OK;
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
    bb_report_html_text(f, *str_of(fin, "gguf") ? str_of(fin, "gguf") : "—");
    fprintf(f, "</td></tr>\n</table>\n");
    if (r->n_stages) {
        double total = 0;
        fprintf(f, "<h2>Time per stage</h2>\n<table class=\"stages\">\n<tr><th>stage</th><th>seconds</th></tr>\n");
        for (int i = 0; i < r->n_stages; i++) {
            fprintf(f, "<tr><td>");
            bb_report_html_text(f, r->stages[i].name);
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
            bb_report_html_text(f, r->stress[i].name);
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
    BB_CALL(bb_report_mb_open(&m, "report.html"));
    FILE *f = m.f;
    const bb_json *model = bb_json_get(r->root, "model");
    const char *run = *str_of(r->root, "run") ? str_of(r->root, "run") : r->dir;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>birdbone report: ");
    bb_report_html_text(f, run);
    fprintf(f,
            "</title>\n<style>\nbody{font-family:Helvetica,Arial,sans-serif;max-width:920px;margin:2em "
            "auto;color:#222}\ntable{border-collapse:collapse;margin:0.5em 0 1.5em}\nth,td{border:1px solid "
            "#ccc;padding:4px 10px;text-align:left}\nfigure{margin:2em 0}\nfigure svg{max-width:100%%;height:auto}\n"
            "figcaption{font-size:0.9em;color:#444}\n.meta{color:#555;font-size:0.9em}\n</style>\n</head>\n<body>\n");
    fprintf(f, "<h1>birdbone run report: ");
    bb_report_html_text(f, run);
    fprintf(f, "</h1>\n<p class=\"meta\">model ");
    bb_report_html_text(f, *str_of(model, "path") ? str_of(model, "path") : "—");
    double params = num_of(model, "parameters");
    if (isfinite(params)) fprintf(f, ", %.0f parameters", params);
    fprintf(f, "; config ");
    bb_report_html_text(f, *str_of(r->root, "config_hash") ? str_of(r->root, "config_hash") : "—");
    fprintf(f, "; birdbone ");
    bb_report_html_text(f, *str_of(r->root, "birdbone") ? str_of(r->root, "birdbone") : "—");
    fprintf(f, "; run directory ");
    bb_report_html_text(f, r->dir);
    fprintf(f, "</p>\n<h2>Summary</h2>\n");
    summary_table(r, f);
    if (r->n_notes) {
        fprintf(f, "<h2>Not recorded</h2>\n<ul class=\"notes\">\n");
        for (int i = 0; i < r->n_notes; i++) {
            fprintf(f, "<li>");
            bb_report_html_text(f, r->notes[i]);
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
    return bb_report_mb_write(r, &m, "report.html");
}

/* ---- the whole report -------------------------------------------------- */

static bb_status build(report *r) {
    BB_CALL(bb_report_parse_metrics(r));
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
    bb_report_read_stoploss(r);
    r->figs = open_memstream(&r->figs_buf, &r->figs_len);
    BB_CHECK(r->figs, BB_ERR_OOM, "out of memory: report.html figures");
    BB_CALL(bb_report_write_csvs(r));
    BB_CALL(bb_report_write_plots(r));
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
