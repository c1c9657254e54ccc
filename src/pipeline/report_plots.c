/* report_plots.c — the run report's CSVs and plots: PPL/KLD, time, density and bits maps, healing, usage, spectra. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/log.h"
#include "core/svg.h"
#include "mpi/wave_h5.h"
#include "pipeline/report_internal.h"

#define HIST_BINS 20

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

/* A render that found nothing to draw (BB_ERR_ARG: every value null) becomes a note. */
static bb_status rendered(report *r, const char *name, bb_status st) {
    if (st != BB_ERR_ARG) return st;
    bb_report_note(r, "%s left out: %s", name, bb_last_error());
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
    return bb_report_emit_plot(r, name, caption, svg, len);
}

/* ---- CSVs -------------------------------------------------------------- */

static bb_status write_metrics_csv(report *r) {
    if (!r->n_waves) {
        bb_report_note(r, "no waves in metrics.json: no metrics.csv, PPL, KLD or time-per-wave plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(bb_report_mb_open(&m, "metrics.csv"));
    fprintf(m.f, "wave,ppl,dppl,kld,top1,sparsity,bits,lora_values,rolled_back");
    for (int p = 0; p < PH_COUNT; p++) fprintf(m.f, ",seconds_%s", bb_report_phase_names[p]);
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
    return bb_report_mb_write(r, &m, "metrics.csv");
}

static double at_or_nan(const double *a, int n, int i) { return i < n ? a[i] : NAN; }

/* Long format: one row per (tensor, wave). */
static bb_status write_tensors_csv(report *r) {
    if (!r->n_tensors) {
        bb_report_note(r, "no tensors in metrics.json: no tensors.csv, density or bits map");
        return BB_OK;
    }
    membuf m;
    BB_CALL(bb_report_mb_open(&m, "tensors.csv"));
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
    return bb_report_mb_write(r, &m, "tensors.csv");
}

static bb_status write_stages_csv(report *r) {
    if (!r->n_stages) {
        bb_report_note(r, "no stages in metrics.json: no stages.csv or time-per-stage plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(bb_report_mb_open(&m, "stages.csv"));
    fprintf(m.f, "stage,seconds\n");
    for (int i = 0; i < r->n_stages; i++) {
        csv_str(m.f, r->stages[i].name);
        fputc(',', m.f);
        csv_num(m.f, r->stages[i].seconds);
        fputc('\n', m.f);
    }
    return bb_report_mb_write(r, &m, "stages.csv");
}

static bb_status write_healing_csv(report *r) {
    if (!r->n_heal) {
        bb_report_note(r, "no healing curves in metrics.json (healing off or not recorded): no healing.csv or plot");
        return BB_OK;
    }
    membuf m;
    BB_CALL(bb_report_mb_open(&m, "healing.csv"));
    fprintf(m.f, "wave,name,step,loss\n");
    for (int i = 0; i < r->n_heal; i++)
        for (int k = 0; k < r->heal[i].n; k++) {
            fprintf(m.f, "%d,", r->heal[i].wave);
            csv_str(m.f, r->heal[i].name);
            fprintf(m.f, ",%d,", k + 1);
            csv_num(m.f, r->heal[i].loss[k]);
            fputc('\n', m.f);
        }
    return bb_report_mb_write(r, &m, "healing.csv");
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
        bb_report_note(r, "no KLD recorded in the waves (eval.kld off): no KLD plot");
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
    if (r->n_waves && !with_time) bb_report_note(r, "no seconds recorded per wave: no time-per-wave plot");
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
                     bb_report_emit_plot(
                         r, "time_waves.svg",
                         "Seconds of each wave by phase; \"other\" is the wave's total minus its phases.", svg, len));
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
        BB_CALL_GOTO(st, done,
                     bb_report_emit_plot(r, "time_stages.svg", "Wall-clock seconds of each pipeline stage.", svg, len));
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
    return bb_report_emit_plot(r, name, caption, svg, len);
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
        bb_report_note(r, "no density per wave in tensors: no density map");
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
        bb_report_note(r, "no bit widths assigned in tensors (no quantization yet): no bits map");
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
        bb_report_note(r, "no wave_<k>.h5 files in the run directory: no usage histograms");
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
    BB_CALL_GOTO(st, done, bb_report_mb_open(&m, "usage.csv"));
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
            bb_report_note(r, "wave_%d.h5 could not be read (%s): left out of the usage histograms", ks[i],
                           bb_last_error());
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
    BB_CALL_GOTO(st, done, bb_report_mb_write(r, &m, "usage.csv"));
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
        bb_report_note(r, "no scan/scan.json in the run directory (scan.enabled off): no spectra");
        return BB_OK;
    }
    char *text = NULL;
    size_t len = 0;
    bb_json_doc *doc = NULL;
    int quiet = bb_error_set_quiet(1);
    bb_status rs = bb_file_read_all(path, BB_REPORT_JSON_MAX, &text, &len);
    if (rs == BB_OK) rs = bb_json_parse(text, len, path, &doc);
    bb_error_set_quiet(quiet);
    free(text);
    const bb_json *arr = doc ? bb_json_get(bb_json_root(doc), "tensors") : NULL;
    if (rs != BB_OK || bb_json_type(arr) != BB_JSON_ARRAY) {
        bb_warn("report: %s skipped: %s", path, rs != BB_OK ? bb_last_error() : "no \"tensors\" array");
        bb_report_note(r, "scan/scan.json could not be read (%s): no spectra",
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
        bb_report_note(r, "scan/scan.json holds no singular values: no spectra");
        goto done;
    }
    BB_CALL_GOTO(st, done, bb_calloc((void **)&s, (size_t)n, sizeof *s, "spectra"));
    BB_CALL_GOTO(st, done, bb_calloc((void **)&labels, (size_t)n, sizeof *labels, "spectra"));
    BB_CALL_GOTO(st, done, bb_report_mb_open(&m, "spectra.csv"));
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
    BB_CALL_GOTO(st, done, bb_report_mb_write(r, &m, "spectra.csv"));
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

bb_status bb_report_write_csvs(report *r) {
    BB_CALL(write_metrics_csv(r));
    BB_CALL(write_tensors_csv(r));
    BB_CALL(write_stages_csv(r));
    BB_CALL(write_healing_csv(r));
    return BB_OK;
}

bb_status bb_report_write_plots(report *r) {
    BB_CALL(plot_ppl_kld(r));
    BB_CALL(plot_time(r));
    BB_CALL(plot_maps(r));
    BB_CALL(plot_healing(r));
    BB_CALL(plot_usage(r));
    BB_CALL(plot_spectra(r));
    return BB_OK;
}
