/* svg.c — SVG line plots, heatmaps and stacked bars written as text, no dependencies. */
#include "core/svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

/* A growing text buffer; the first failed allocation sticks in `oom`. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    if (need < 0) return;
    if ((size_t)need >= b->cap - b->n) {
        size_t cap = b->cap * 2 > b->n + (size_t)need + 1 ? b->cap * 2 : b->n + (size_t)need + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
        va_start(ap, fmt);
        vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
    }
    b->n += (size_t)need;
}

/* Text content with the XML special characters escaped. */
static void sb_text(sbuf *b, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': sb_printf(b, "&amp;"); break;
        case '<': sb_printf(b, "&lt;"); break;
        case '>': sb_printf(b, "&gt;"); break;
        case '"': sb_printf(b, "&quot;"); break;
        default: sb_printf(b, "%c", *s);
        }
    }
}

/* Tableau-10: distinguishable, and still readable when printed in grey. */
static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_PALETTE ((int)(sizeof palette / sizeof palette[0]))

/* A 1-2-5 step giving about `target` ticks over [lo, hi]. */
static double nice_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

typedef struct {
    double x0, x1, t0, t1; /* data range; t is y or log10(y) */
    double px0, px1, py0, py1;
    int log_y;
} frame;

static double fx(const frame *f, double x) { return f->px0 + (x - f->x0) / (f->x1 - f->x0) * (f->px1 - f->px0); }
/* Points outside a fixed y range are pinned to the frame (clip paths are not
 * supported by every SVG renderer). */
static double fy(const frame *f, double y) {
    double t = f->log_y ? log10(y) : y;
    double py = f->py1 - (t - f->t0) / (f->t1 - f->t0) * (f->py1 - f->py0);
    return py < f->py0 ? f->py0 : py > f->py1 ? f->py1 : py;
}
static int drawable(const frame *f, double y) { return isfinite(y) && (!f->log_y || y > 0); }
static double xat(const bb_svg_series *s, int i) { return s->x ? s->x[i] : (double)(i + 1); }
/* Palette slot of series k: the caller's (p->colors) or its position. */
static int slot(const bb_svg_plot *p, int k) {
    int c = p->colors ? p->colors[k] : k;
    return c < 0 ? 0 : c;
}
static const char *dash_of(int c) {
    return c >= N_PALETTE ? (c / N_PALETTE % 2 ? " stroke-dasharray=\"7,3\"" : " stroke-dasharray=\"2,2\"") : "";
}

/* Data ranges, from the series (and the fixed y range if given). Returns the
 * number of drawable points. */
static long ranges(const bb_svg_plot *p, const bb_svg_series *ss, int ns, frame *f) {
    long count = 0;
    double x0 = INFINITY, x1 = -INFINITY, t0 = INFINITY, t1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < ss[k].n; i++) {
            double x = xat(&ss[k], i), y = ss[k].y[i];
            if (!isfinite(x) || !drawable(f, y)) continue;
            double t = f->log_y ? log10(y) : y;
            x0 = fmin(x0, x);
            x1 = fmax(x1, x);
            t0 = fmin(t0, t);
            t1 = fmax(t1, t);
            count++;
        }
    if (!count) return 0;
    if (p->y_min < p->y_max && (!f->log_y || p->y_min > 0)) {
        t0 = f->log_y ? log10(p->y_min) : p->y_min;
        t1 = f->log_y ? log10(p->y_max) : p->y_max;
    } else if (f->log_y) {
        t0 = floor(t0);
        t1 = ceil(t1);
        if (t1 <= t0) t1 = t0 + 1;
    } else {
        double pad = t1 > t0 ? 0.05 * (t1 - t0) : fabs(t0) > 0 ? 0.1 * fabs(t0) : 1.0;
        t0 -= pad;
        t1 += pad;
    }
    if (x1 <= x0) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    f->x0 = x0;
    f->x1 = x1;
    f->t0 = t0;
    f->t1 = t1;
    return count;
}

static void axes(sbuf *b, const bb_svg_plot *p, const frame *f) {
    /* x grid and ticks */
    double st = nice_step(f->x0, f->x1, 8);
    if (p->x_integer && st < 1) st = 1;
    for (double x = ceil(f->x0 / st) * st; x <= f->x1 + 1e-9 * st; x += st) {
        double px = fx(f, x);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", px, f->py0, px,
                  f->py1);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n", px, f->py1 + 16, x);
    }
    /* y grid and ticks: decades (and 2..9 faintly when few) on a log axis */
    if (f->log_y) {
        int span = (int)ceil(f->t1 - f->t0), every = span > 10 ? (span + 9) / 10 : 1;
        for (int d = (int)floor(f->t0); d <= (int)ceil(f->t1); d++) {
            if (span <= 6)
                for (int mnr = 2; mnr <= 9; mnr++) {
                    double t = d + log10((double)mnr);
                    if (t < f->t0 || t > f->t1) continue;
                    double py = fy(f, pow(10.0, t));
                    sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#f2f2f2\"/>\n", f->px0,
                              py, f->px1, py);
                    /* a span of one or two decades has too few labels without 2 and 5 */
                    if (span <= 2 && (mnr == 2 || mnr == 5))
                        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%g</text>\n",
                                  f->px0 - 6, py + 4, mnr * pow(10.0, d));
                }
            if (d < f->t0 - 1e-9 || d > f->t1 + 1e-9 || d % every) continue;
            double py = fy(f, pow(10.0, d));
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d8d8d8\"/>\n", f->px0, py,
                      f->px1, py);
            if (d >= -3 && d <= 3)
                sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", f->px0 - 6, py + 4,
                          pow(10.0, d));
            else
                sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n", f->px0 - 6, py + 4, d);
        }
    } else {
        double sy = nice_step(f->t0, f->t1, 6);
        for (double y = ceil(f->t0 / sy) * sy; y <= f->t1 + 1e-9 * sy; y += sy) {
            double py = fy(f, y), shown = fabs(y) < 1e-12 * sy ? 0.0 : y;
            sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", f->px0, py,
                      f->px1, py);
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", f->px0 - 6, py + 4, shown);
        }
    }
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", f->px0,
              f->py0, f->px1 - f->px0, f->py1 - f->py0);
    if (p->title) {
        sb_printf(b, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">",
                  (f->px0 + f->px1) / 2);
        sb_text(b, p->title);
        sb_printf(b, "</text>\n");
    }
    if (p->xlabel) {
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (f->px0 + f->px1) / 2, f->py1 + 38);
        sb_text(b, p->xlabel);
        sb_printf(b, "</text>\n");
    }
    if (p->ylabel) {
        double cy = (f->py0 + f->py1) / 2;
        sb_printf(b, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">", cy, cy);
        sb_text(b, p->ylabel);
        sb_printf(b, "</text>\n");
    }
}

static void series_lines(sbuf *b, const bb_svg_plot *p, const bb_svg_series *ss, int ns, const frame *f) {
    sb_printf(b, "<g fill=\"none\" stroke-width=\"1.6\" stroke-linejoin=\"round\">\n");
    for (int h = 0; h < p->n_hlines; h++) {
        if (!drawable(f, p->hlines[h])) continue;
        double py = fy(f, p->hlines[h]);
        sb_printf(b,
                  "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"4,4\" "
                  "stroke-width=\"1\"/>\n",
                  f->px0, py, f->px1, py);
    }
    for (int k = 0; k < ns; k++) {
        int c = slot(p, k);
        const char *dash = dash_of(c);
        int open = 0;
        for (int i = 0; i < ss[k].n; i++) {
            double x = xat(&ss[k], i), y = ss[k].y[i];
            if (!isfinite(x) || !drawable(f, y)) {
                if (open) sb_printf(b, "\"/>\n");
                open = 0;
                continue;
            }
            if (!open) sb_printf(b, "<polyline stroke=\"%s\"%s points=\"", palette[c % N_PALETTE], dash);
            sb_printf(b, "%s%.1f,%.1f", open ? " " : "", fx(f, x), fy(f, y));
            open = 1;
        }
        if (open) sb_printf(b, "\"/>\n");
        for (int i = 0; p->markers && i < ss[k].n; i++) {
            double x = xat(&ss[k], i), y = ss[k].y[i];
            if (isfinite(x) && drawable(f, y))
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\" stroke=\"none\"/>\n", fx(f, x),
                          fy(f, y), palette[c % N_PALETTE]);
        }
    }
    sb_printf(b, "</g>\n");
    for (int h = 0; h < p->n_hlines; h++)
        if (drawable(f, p->hlines[h]))
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#666\" font-size=\"11\">%g</text>\n",
                      f->px1 - 4, fy(f, p->hlines[h]) - 3, p->hlines[h]);
}

static void legend(sbuf *b, const bb_svg_plot *p, const bb_svg_series *ss, int ns, const frame *f, int height) {
    int max_rows = (int)((height - f->py0 - 10) / 18), row = 0, shown = 0;
    for (int k = 0; k < ns; k++) {
        if (!ss[k].label || !*ss[k].label) continue;
        if (row == max_rows - 1 && shown < ns - 1) {
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">… and %d more</text>\n", f->px1 + 16, f->py0 + 12 + 18.0 * row,
                      ns - k);
            return;
        }
        double y = f->py0 + 8 + 18.0 * row;
        int c = slot(p, k);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"%s/>\n",
                  f->px1 + 16, y, f->px1 + 40, y, palette[c % N_PALETTE], dash_of(c));
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", f->px1 + 46, y + 4);
        sb_text(b, ss[k].label);
        sb_printf(b, "</text>\n");
        row++;
        shown++;
    }
}

bb_status bb_svg_render(const bb_svg_plot *p, const bb_svg_series *series, int n_series, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    int w = p->width > 0 ? p->width : 860, h = p->height > 0 ? p->height : 520;
    frame f = {0};
    f.log_y = p->log_y;
    BB_CHECK(ranges(p, series, n_series, &f) > 0, BB_ERR_ARG, "plot '%s': no drawable point in %d series%s",
             p->title ? p->title : "", n_series, p->log_y ? " (a log axis needs positive values)" : "");
    size_t longest = 0;
    for (int k = 0; k < n_series; k++)
        if (series[k].label && strlen(series[k].label) > longest) longest = strlen(series[k].label);
    double right = longest ? 60.0 + 7.0 * (double)longest : 20.0;
    if (right > w / 3.0) right = w / 3.0;
    f.px0 = 72;
    f.px1 = w - right;
    f.py0 = 40;
    f.py1 = h - 52;

    sbuf b = {0};
    BB_CALL(bb_malloc((void **)&b.p, 16384, "SVG text"));
    b.cap = 16384;
    sb_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
              w, h, w, h);
    sb_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    axes(&b, p, &f);
    series_lines(&b, p, series, n_series, &f);
    legend(&b, p, series, n_series, &f, h);
    sb_printf(&b, "</svg>\n");
    if (b.oom) {
        free(b.p);
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: SVG text of plot '%s' (%zu bytes so far)",
                        p->title ? p->title : "", b.n);
    }
    *out = b.p;
    if (len) *len = b.n;
    return BB_OK;
}

bb_status bb_svg_write(const char *path, const bb_svg_plot *p, const bb_svg_series *series, int n_series) {
    char *text;
    size_t n;
    BB_CALL(bb_svg_render(p, series, n_series, &text, &n));
    bb_status st = bb_file_write_atomic(path, text, n);
    free(text);
    BB_CALL(st);
    return BB_OK;
}

/* ---- heatmaps and bars ------------------------------------------------- */

static bb_status sb_start(sbuf *b, int w, int h) {
    BB_CALL(bb_malloc((void **)&b->p, 16384, "SVG text"));
    b->cap = 16384;
    sb_printf(b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
              "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
              w, h, w, h);
    sb_printf(b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    return BB_OK;
}

static bb_status sb_finish(sbuf *b, const char *title, char **out, size_t *len) {
    sb_printf(b, "</svg>\n");
    if (b->oom) {
        free(b->p);
        return bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: SVG text of plot '%s' (%zu bytes so far)",
                        title ? title : "", b->n);
    }
    *out = b->p;
    if (len) *len = b->n;
    return BB_OK;
}

static void title_and_labels(sbuf *b, const char *title, const char *xlabel, const char *ylabel, double px0, double px1,
                             double py0, double py1, double xlabel_y) {
    if (title) {
        sb_printf(b, "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">",
                  (px0 + px1) / 2);
        sb_text(b, title);
        sb_printf(b, "</text>\n");
    }
    if (xlabel) {
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (px0 + px1) / 2, xlabel_y);
        sb_text(b, xlabel);
        sb_printf(b, "</text>\n");
    }
    if (ylabel) {
        double cy = (py0 + py1) / 2;
        sb_printf(b, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.1f)\">", cy, cy);
        sb_text(b, ylabel);
        sb_printf(b, "</text>\n");
    }
}

/* Sequential yellow-green-blue scale, t in [0, 1]. */
static void colour_at(double t, int rgb[3]) {
    static const int stops[5][3] = {{255, 255, 217}, {199, 233, 180}, {65, 182, 196}, {34, 94, 168}, {8, 29, 88}};
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    double x = t * 4;
    int i = x >= 4 ? 3 : (int)x;
    double a = x - i;
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(stops[i][c] + a * (stops[i + 1][c] - stops[i][c]));
}

static const char *label_or_index(const char *const *labels, int i, char *buf, size_t n) {
    if (labels && labels[i]) return labels[i];
    snprintf(buf, n, "%d", i);
    return buf;
}

bb_status bb_svg_heatmap_render(const bb_svg_heatmap *h, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    BB_CHECK(h->rows > 0 && h->cols > 0, BB_ERR_ARG, "heatmap '%s': empty grid (%d x %d)", h->title ? h->title : "",
             h->rows, h->cols);
    double lo = INFINITY, hi = -INFINITY;
    size_t longest_row = 1;
    char buf[32];
    for (int r = 0; r < h->rows; r++) {
        size_t n = strlen(label_or_index(h->row_labels, r, buf, sizeof buf));
        if (n > longest_row) longest_row = n;
        for (int c = 0; c < h->cols; c++) {
            double v = h->v[(size_t)r * h->cols + c];
            if (!isfinite(v)) continue;
            lo = fmin(lo, v);
            hi = fmax(hi, v);
        }
    }
    BB_CHECK(lo <= hi, BB_ERR_ARG, "heatmap '%s': no finite value in %d x %d cells", h->title ? h->title : "", h->rows,
             h->cols);
    if (h->v_min < h->v_max) {
        lo = h->v_min;
        hi = h->v_max;
    }
    if (hi <= lo) hi = lo + (fabs(lo) > 0 ? 0.1 * fabs(lo) : 1.0);
    int w = h->width > 0 ? h->width : 860, ht = h->height > 0 ? h->height : 520;
    double px0 = 40 + 7.0 * (double)(longest_row > 30 ? 30 : longest_row), px1 = w - 120, py0 = 40, py1 = ht - 58;
    double cw = (px1 - px0) / h->cols, ch = (py1 - py0) / h->rows;
    sbuf b = {0};
    BB_CALL(sb_start(&b, w, ht));
    for (int r = 0; r < h->rows; r++)
        for (int c = 0; c < h->cols; c++) {
            double v = h->v[(size_t)r * h->cols + c];
            char rb[32], cb[32];
            if (isfinite(v)) {
                int rgb[3];
                colour_at((v - lo) / (hi - lo), rgb);
                sb_printf(&b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#%02x%02x%02x\">",
                          px0 + c * cw, py0 + r * ch, cw, ch, rgb[0], rgb[1], rgb[2]);
            } else {
                sb_printf(&b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#eeeeee\">",
                          px0 + c * cw, py0 + r * ch, cw, ch);
            }
            sb_printf(&b, "<title>");
            sb_text(&b, label_or_index(h->row_labels, r, rb, sizeof rb));
            sb_printf(&b, ", ");
            sb_text(&b, label_or_index(h->col_labels, c, cb, sizeof cb));
            if (isfinite(v))
                sb_printf(&b, ": %.6g</title></rect>\n", v);
            else
                sb_printf(&b, ": none</title></rect>\n");
            if (h->annotate && isfinite(v) && cw >= 34 && ch >= 14) {
                int rgb[3];
                colour_at((v - lo) / (hi - lo), rgb);
                int dark = rgb[0] * 299 + rgb[1] * 587 + rgb[2] * 114 < 128000;
                sb_printf(
                    &b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\" fill=\"%s\">%.3g</text>\n",
                    px0 + (c + 0.5) * cw, py0 + (r + 0.5) * ch + 3.5, dark ? "white" : "#222", v);
            }
        }
    sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", px0,
              py0, px1 - px0, py1 - py0);
    /* labels, thinned so that they do not overlap */
    int every_r = (int)ceil(13.0 / ch);
    for (int r = 0; r < h->rows; r += every_r < 1 ? 1 : every_r) {
        char rb[32];
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", px0 - 6, py0 + (r + 0.5) * ch + 4);
        sb_text(&b, label_or_index(h->row_labels, r, rb, sizeof rb));
        sb_printf(&b, "</text>\n");
    }
    size_t longest_col = 1;
    for (int c = 0; c < h->cols; c++) {
        size_t n = strlen(label_or_index(h->col_labels, c, buf, sizeof buf));
        if (n > longest_col) longest_col = n;
    }
    int every_c = (int)ceil((7.0 * (double)longest_col + 8) / cw);
    for (int c = 0; c < h->cols; c += every_c < 1 ? 1 : every_c) {
        char cb[32];
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px0 + (c + 0.5) * cw, py1 + 16);
        sb_text(&b, label_or_index(h->col_labels, c, cb, sizeof cb));
        sb_printf(&b, "</text>\n");
    }
    /* colour scale */
    double bx = px1 + 24, bh = py1 - py0;
    for (int i = 0; i < 32; i++) {
        int rgb[3];
        colour_at(1.0 - (i + 0.5) / 32, rgb);
        sb_printf(&b, "<rect x=\"%.1f\" y=\"%.2f\" width=\"16\" height=\"%.2f\" fill=\"#%02x%02x%02x\"/>\n", bx,
                  py0 + i * bh / 32, bh / 32 + 0.3, rgb[0], rgb[1], rgb[2]);
    }
    sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", bx, py0,
              bh);
    for (int i = 0; i <= 4; i++)
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">%.3g</text>\n", bx + 20, py1 - i * bh / 4 + 4,
                  lo + i * (hi - lo) / 4);
    if (h->value_label) {
        double cx = bx + 70, cy = (py0 + py1) / 2;
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(90 %.1f %.1f)\">", cx, cy,
                  cx, cy);
        sb_text(&b, h->value_label);
        sb_printf(&b, "</text>\n");
    }
    title_and_labels(&b, h->title, h->xlabel, h->ylabel, px0, px1, py0, py1, py1 + 40);
    return sb_finish(&b, h->title, out, len);
}

bb_status bb_svg_bars_render(const bb_svg_bars *bp, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    const char *title = bp->title ? bp->title : "";
    BB_CHECK(bp->n_bars > 0 && bp->n_stacks > 0, BB_ERR_ARG, "bar chart '%s': no bars (%d bars of %d segments)", title,
             bp->n_bars, bp->n_stacks);
    double top = 0;
    for (int i = 0; i < bp->n_bars; i++) {
        double sum = 0;
        for (int k = 0; k < bp->n_stacks; k++) {
            double v = bp->v[(size_t)i * bp->n_stacks + k];
            BB_CHECK(!(v < 0), BB_ERR_ARG, "bar chart '%s': bar %d segment %d is negative (%g)", title, i, k, v);
            if (isfinite(v)) sum += v;
        }
        top = fmax(top, sum);
    }
    if (top <= 0) top = 1;
    double step = nice_step(0, top, 6);
    top = ceil(top / step - 1e-9) * step;
    int w = bp->width > 0 ? bp->width : 860, h = bp->height > 0 ? bp->height : 520;
    size_t longest = 0;
    for (int k = 0; bp->stack_labels && k < bp->n_stacks; k++)
        if (bp->stack_labels[k] && strlen(bp->stack_labels[k]) > longest) longest = strlen(bp->stack_labels[k]);
    double right = longest ? 60.0 + 7.0 * (double)longest : 20.0;
    if (right > w / 3.0) right = w / 3.0;
    double px0 = 72, px1 = w - right, py0 = 40, py1 = h - 52;
    sbuf b = {0};
    BB_CALL(sb_start(&b, w, h));
    for (double y = 0; y <= top + 1e-9 * step; y += step) {
        double py = py1 - y / top * (py1 - py0);
        sb_printf(&b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", px0, py, px1, py);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", px0 - 6, py + 4, y);
    }
    double slot_w = (px1 - px0) / bp->n_bars, bw = 0.7 * slot_w;
    size_t longest_bar = 1;
    char buf[32];
    for (int i = 0; i < bp->n_bars; i++) {
        size_t n = strlen(label_or_index(bp->bar_labels, i, buf, sizeof buf));
        if (n > longest_bar) longest_bar = n;
    }
    int every = (int)ceil((7.0 * (double)longest_bar + 8) / slot_w);
    for (int i = 0; i < bp->n_bars; i++) {
        double x = px0 + i * slot_w + (slot_w - bw) / 2, y = py1;
        char lb[32];
        const char *lab = label_or_index(bp->bar_labels, i, lb, sizeof lb);
        for (int k = 0; k < bp->n_stacks; k++) {
            double v = bp->v[(size_t)i * bp->n_stacks + k];
            if (!isfinite(v) || v <= 0) continue;
            double hgt = v / top * (py1 - py0);
            y -= hgt;
            sb_printf(&b, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"><title>", x, y, bw,
                      hgt, palette[k % N_PALETTE]);
            sb_text(&b, lab);
            if (bp->stack_labels && bp->stack_labels[k]) {
                sb_printf(&b, ", ");
                sb_text(&b, bp->stack_labels[k]);
            }
            sb_printf(&b, ": %.6g</title></rect>\n", v);
        }
        if (i % (every < 1 ? 1 : every) == 0) {
            sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x + bw / 2, py1 + 16);
            sb_text(&b, lab);
            sb_printf(&b, "</text>\n");
        }
    }
    sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", px0,
              py0, px1 - px0, py1 - py0);
    for (int k = 0, row = 0; bp->stack_labels && k < bp->n_stacks; k++) {
        if (!bp->stack_labels[k] || !*bp->stack_labels[k]) continue;
        double y = py0 + 8 + 18.0 * row++;
        sb_printf(&b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"20\" height=\"10\" fill=\"%s\"/>\n", px1 + 16, y - 5,
                  palette[k % N_PALETTE]);
        sb_printf(&b, "<text x=\"%.1f\" y=\"%.1f\">", px1 + 42, y + 4);
        sb_text(&b, bp->stack_labels[k]);
        sb_printf(&b, "</text>\n");
    }
    title_and_labels(&b, bp->title, bp->xlabel, bp->ylabel, px0, px1, py0, py1, py1 + 38);
    return sb_finish(&b, bp->title, out, len);
}
