/* svg.h — a small dependency-free SVG line-plot writer: axes with ticks, linear or log y, several series, a legend.
 *
 * Made for looking at curves (singular-value spectra, energy, loss), not for
 * reading exact values: those go to CSV/JSON beside the plot. */
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
} bb_svg_plot;

/* Render the plot into a malloc'd NUL-terminated string (*out, caller frees).
 * Errors: BB_ERR_ARG for a plot with no drawable point, BB_ERR_OOM. */
bb_status bb_svg_render(const bb_svg_plot *p, const bb_svg_series *series, int n_series, char **out, size_t *len);

/* Render and write to path atomically (core/file.h). */
bb_status bb_svg_write(const char *path, const bb_svg_plot *p, const bb_svg_series *series, int n_series);

#endif
