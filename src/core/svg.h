/* svg.h — a small dependency-free SVG writer: line plots (linear or log y, several series, a legend), heatmaps and
 * stacked bars.
 *
 * Made for looking at curves (singular-value spectra, energy, loss) and maps
 * (density or bits per layer), not for reading exact values: those go to
 * CSV/JSON beside the plot. Every output is a standalone, well-formed SVG
 * document that can also be inlined into an HTML page. */
#ifndef BB_SVG_H
#define BB_SVG_H

#include <stddef.h>

#include "core/status.h"

typedef struct {
    const char *label; /* legend text (NULL or "" leaves the series out of the legend) */
    const double *x;   /* (n), or NULL for x = 1, 2, ..., n */
    const double *y;   /* (n); non-finite values, and values <= 0 on a log axis, break the line */
    int n;
} bb_svg_series;

typedef struct {
    const char *title, *xlabel, *ylabel;
    int width, height;    /* pixels; 0 gives 860 x 520 */
    int log_y;            /* log10 y axis */
    double y_min, y_max;  /* fixed y range when y_min < y_max, else from the data */
    const double *hlines; /* (n_hlines) dashed horizontal reference lines, labelled with their value */
    int n_hlines;
    const int *colors; /* (n_series) palette index of each series (several may share one), or NULL: by position */
    int markers;       /* also draw a dot at every point (for short series) */
    int x_integer;     /* x ticks at integers only (waves, steps) */
} bb_svg_plot;

/* Render the plot into a malloc'd NUL-terminated string (*out, caller frees).
 * Errors: BB_ERR_ARG for a plot with no drawable point, BB_ERR_OOM. */
bb_status bb_svg_render(const bb_svg_plot *p, const bb_svg_series *series, int n_series, char **out, size_t *len);

/* Render and write to path atomically (core/file.h). */
bb_status bb_svg_write(const char *path, const bb_svg_plot *p, const bb_svg_series *series, int n_series);

/* A (rows, cols) grid of coloured cells, with row and column labels and a colour
 * scale (light yellow = low, dark blue = high). */
typedef struct {
    const char *title, *xlabel, *ylabel;
    const char *value_label; /* names the colour scale */
    int width, height;       /* pixels; 0 gives 860 x 520 */
    int rows, cols;
    const double *v;               /* (rows, cols) row-major; non-finite = empty cell (light grey) */
    const char *const *row_labels; /* (rows), drawn top to bottom; NULL = 0, 1, ... */
    const char *const *col_labels; /* (cols), left to right; NULL = 0, 1, ... */
    double v_min, v_max;           /* colour range when v_min < v_max, else from the data */
    int annotate;                  /* print each value in its cell when the cells are big enough */
} bb_svg_heatmap;

/* Errors: BB_ERR_ARG for an empty grid or one without a finite value, BB_ERR_OOM. */
bb_status bb_svg_heatmap_render(const bb_svg_heatmap *h, char **out, size_t *len);

/* Bars side by side, each a stack of segments (n_stacks = 1 gives plain bars). */
typedef struct {
    const char *title, *xlabel, *ylabel;
    int width, height; /* pixels; 0 gives 860 x 520 */
    int n_bars, n_stacks;
    const double *v;                 /* (n_bars, n_stacks) row-major, >= 0; non-finite counts as 0 */
    const char *const *bar_labels;   /* (n_bars) under each bar; NULL = 0, 1, ... */
    const char *const *stack_labels; /* (n_stacks) legend; NULL = no legend */
} bb_svg_bars;

/* Errors: BB_ERR_ARG for no bars or a negative value, BB_ERR_OOM. */
bb_status bb_svg_bars_render(const bb_svg_bars *b, char **out, size_t *len);

#endif
