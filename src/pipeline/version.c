/* version.c — stage 7 (Version bump): the run's final metrics, its report
 * (RUN_DIR/report/, docs/report.md) and its DONE marker. DONE is written last, after every output is complete: its presence
 * is what says the run finished (Slurm recipes and --resume look for it). */
#include <stdio.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/log.h"
#include "pipeline/report.h"
#include "pipeline/stages.h"

static bb_status version_rank0(bb_run *r) {
    struct stat sb;
    if (r->gguf_path[0] && stat(r->gguf_path, &sb) == 0) r->out_bytes = (double)sb.st_size;
    if (r->state.n_lin) {
        BB_CALL(bb_metrics_write(r));
        BB_CALL(bb_report_write(r->cfg.run.dir));
    }
    char path[1200], text[256];
    snprintf(path, sizeof path, "%s/DONE", r->cfg.run.dir);
    int n = snprintf(text, sizeof text, "birdbone %s\nconfig sha256:%s\nwaves %d\n", BB_VERSION, r->hash, r->n_waves);
    BB_CALL(bb_file_write_atomic(path, text, (size_t)n));
    bb_info("version %s written", path);
    return BB_OK;
}

bb_status bb_stage_version(bb_run *r) {
    bb_status st = r->dist->rank == 0 ? version_rank0(r) : BB_OK;
    return bb_dist_agree(r->dist, st);
}
