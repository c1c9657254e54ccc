/* report.h — the run report: RUN_DIR/report/ with the metrics as CSV, SVG plots and one self-contained report.html.
 *
 * Inputs, all in RUN_DIR (docs/report.md gives the metrics.json schema):
 *   metrics.json    required: per wave PPL/KLD/sparsity/bits/times, per tensor
 *                   density and bits per wave, healing curves, stages, final;
 *   wave_<k>.h5     optional: usage maps of wave k (mpi/wave_h5.h);
 *   scan/scan.json  optional: the spectral scan (compress/scan.h);
 *   config.yaml     optional: the resolved config (for the stop-loss line).
 * Outputs, in RUN_DIR/report/, each written atomically (core/file.h):
 *   metrics.json (a copy), metrics.csv, tensors.csv, stages.csv, healing.csv,
 *   usage.csv, spectra.csv, the plots ppl.svg, kld.svg, time_waves.svg,
 *   time_stages.svg, density.svg, bits.svg, healing.svg, usage.svg,
 *   spectra.svg, and report.html (plots inlined, readable without a server).
 * A CSV or plot whose input was not recorded is left out and report.html says
 * so in one line each; an optional input that cannot be read (a corrupt wave
 * file) is reported the same way, with its error, and logged as a warning.
 *
 * Not collective: call it on one rank. */
#ifndef BB_PIPELINE_REPORT_H
#define BB_PIPELINE_REPORT_H

#include "core/status.h"

/* Errors: BB_ERR_IO when RUN_DIR/metrics.json is missing or report/ cannot be
 * written; BB_ERR_FORMAT naming the file, line, column and key when
 * metrics.json is not JSON or has a value of the wrong type; BB_ERR_OOM. */
bb_status bb_report_write(const char *run_dir);

#endif
