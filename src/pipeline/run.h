/* run.h — one compression run: configuration, model, run directory, the stage
 * plan and the final summary. `birdbone compress` is a thin shell around this.
 *
 * Every function here is collective over the run's communicator unless noted. */
#ifndef BB_PIPELINE_RUN_H
#define BB_PIPELINE_RUN_H

#include "compress/mask.h"
#include "io/config.h"
#include "io/model.h"
#include "io/tokens.h"
#include "model/calib.h"
#include "mpi/comm.h"
#include "mpi/dist.h"
#include "mpi/plan.h"
#include "mpi/traffic.h"
#include "pipeline/state.h"
#include "pipeline/weights.h"

typedef struct bb_run bb_run;

/* A healing loss curve (one layer or block, one wave), for the report. */
typedef struct {
    int wave;
    char name[96];
    int n;
    float *loss;
} bb_heal_curve;

/* What one stage used on this rank (bb_run_stage_enter books it). */
typedef struct {
    double comm_seconds;   /* inside MPI calls, waits included (mpi/traffic.h) */
    double cpu_seconds;    /* user + system time of the process (all its threads) */
    double bytes_sent, bytes_recv;
    int64_t peak_rss;      /* the most resident bytes while the stage ran (core/mem.h) */
} bb_stage_use;

/* A stress boost given in a wave. */
typedef struct {
    int wave;
    char name[96];
    int bits;
} bb_boost;

/* What a stage does to the run. A stage runs once (run) or once per wave
 * inside the wave loop (wave, called by waves.c with the wave number); neither
 * set means the stage is not built yet. */
typedef struct {
    const char *name;      /* "baseline" */
    const char *seed_name; /* the seed's name for it: "Baseline mapping" */
    const char *what;      /* one line */
    bb_status (*run)(bb_run *r);
    bb_status (*wave)(bb_run *r, int k);
} bb_stage;

struct bb_run {
    bb_config cfg;
    char config_path[1024];
    char hash[65];
    const bb_dist *dist;
    bb_comm *comm;         /* every global decision (budget, stop-loss, metrics, stress): backend.comm, made once */
    bb_model *model;
    bb_plan plan;          /* which blocks each rank owns (mpi/plan.h), the same on every rank */
    int l0, l1;            /* this rank's blocks [l0, l1) (empty on an idle rank) */
    int threads;           /* BLAS threads of this rank */
    int gpu;               /* the GPU this rank bound (backend.device), -1 = none */
    char gpu_name[128];
    int64_t gpu_mem_peak;  /* device memory in use, the most seen at stage ends */
    int64_t *gpu_report;   /* rank 0: (size, 7) per rank's GPU figures (run.c), NULL without GPUs */
    double t_start;
    double stage_seconds[16];
    bb_stage_use stage_use[16]; /* this rank's use per stage; summed over the stage's entries */
    bb_stage_use other_use; /* outside every stage: opening the model, the plan, the summary */
    int cur_stage;         /* the stage resources are booked to; -1 before the first */
    bb_traffic booked;     /* the MPI totals at the last booking */
    double booked_cpu;     /* the process's CPU seconds at the last booking */
    int peak_resets;       /* the peak could be reset at every booking: per-stage peaks, not running maxima */
    int n_stages_run;
    /* filled by stages */
    int64_t calib_tokens, eval_tokens;
    double dense_ppl, dense_ppl_err;
    bb_tokens calib;       /* calibration stream from stage 0 (flat or (n_seq, seq_len)) */
    bb_calib *stats;       /* calibration statistics from stage 1 */
    bb_weights *weights;   /* working copies once a stage changes weights (bb_run_weights) */
    float **dense;         /* (n_lin) f32 copies of this rank's dense weights the wave stages read, NULL = not kept */
    int64_t dense_bytes;   /* their bytes (at most backend.dense_cache_mib) */
    /* filled by stage 6 (quantize) on rank 0 */
    double quant_bits;     /* stored bits per linear weight, scales included; 0 = not quantized */
    double quant_ppl, quant_kld, quant_top1;
    double out_bytes;      /* bytes of the GGUF written, 0 if none */
    uint8_t *factored;     /* (n_lin) lowrank.enabled: 1 = stored as factors A·B (factorize.c); NULL before */
    int64_t lowrank_factored; /* weights factored */
    double lowrank_bits[2]; /* those weights' quantized-dense bits, and their factors' bits at f16 */
    int64_t scale_tensors; /* heal.train_scales: tensors whose scales were trained */
    double scale_loss[2];  /* their summed layer loss before and after */
    char gguf_path[1200];  /* the exported GGUF, "" if none */
    /* the wave loop (stages 2-5); masks, state and report on rank 0 only */
    bb_mask **masks;       /* (n_masks) one per linear weight, index layer * BB_LIN_COUNT + kind; 1 = kept */
    int n_masks;
    int n_waves;           /* waves run */
    double sparsity;       /* pruned fraction of all linear weights after the last wave */
    char *wave_report;     /* the per-wave lines, for the summary */
    struct bb_decay *decay; /* decay.c's state while the loop runs */
    int stats_stale;       /* weights changed since r->stats was collected */
    uint8_t *changed;      /* (n_lin) this wave pruned, restored or moved weights of it: healing's "affected modules" */
    bb_state state;        /* what the waves did: checkpointed, resumed, diffed */
    int preempted;         /* a signal stopped the loop: the run continues with --resume */
    unsigned flags;        /* BB_RUN_* */
    /* for metrics.json and the report (rank 0) */
    float *tensor_hist;    /* (hist_waves, n_lin, 3): density, bits, factor rank after each wave (0 = dense) */
    int hist_waves;
    bb_heal_curve *curves;
    int n_curves;
    bb_boost *boosts;
    int n_boosts;
    /* (size, 5) per rank: l0, l1, linear weights, their bytes, other bytes it wrote to the last checkpoint (rank 0) */
    int64_t *ckpt_shares;
};

/* The stages in pipeline order; returns their number. */
int bb_pipeline_stages(const bb_stage **stages);

/* bb_run_create flags. */
enum {
    BB_RUN_FORCE = 1,  /* replace a previous run in run.dir (its wave files, checkpoints, diffs, report, DONE) */
    BB_RUN_RESUME = 2, /* continue the run in run.dir from its last complete checkpoint */
};

/* Rank 0 loads config_path (NULL: defaults) and applies the overrides, every
 * rank receives the result; then the model is opened and the run directory
 * made. A run.dir that already holds a run is refused unless flags say
 * BB_RUN_FORCE or BB_RUN_RESUME. Errors reach all ranks (bb_dist_agree). */
bb_status bb_run_create(const bb_dist *d, const char *config_path, char **overrides, int n_overrides, unsigned flags,
                        bb_run **out);
/* Run every built stage in order, print the plan (built or not) first and the
 * summary last. */
bb_status bb_run_execute(bb_run *r);
void bb_run_destroy(bb_run **r); /* not collective; NULL-safe */
/* Back to the dense weights: drops the working weights, masks, wave state and
 * records (keeps the model, the streams and the statistics). Not collective. */
void bb_run_reset_waves(bb_run *r);

/* Book this rank's MPI traffic and peak memory since the last call to the current stage, then make stage i
 * (an index of bb_pipeline_stages, -1 for none) current. Returns the stage that was current, so that a
 * stage run inside another one can hand back to it. Not collective. */
int bb_run_stage_enter(bb_run *r, int i);

/* The run's working weights, created from the model on first use: rank 0
 * holds every layer (it writes the run's files), the others their own blocks
 * [l0, l1) of the plan; NULL on an idle rank other than 0. Not collective. */
bb_status bb_run_weights(bb_run *r, bb_weights **out);
/* The rank that owns linear weight i = layer * BB_LIN_COUNT + kind. */
int bb_run_owner(const bb_run *r, int i);
/* The model's whole SHA-256 (io/hash.h bb_model_hash, as stored bytes), each tensor read and hashed by the
 * rank holding it only. Collective; every rank gets it. */
bb_status bb_run_model_hash(bb_run *r, uint8_t whole[32]);
/* Whether this rank computes linear weight i. */
int bb_run_mine(const bb_run *r, int i);
/* Move linear weight i's weights, mask, bits and factors (NULL parts are not
 * moved; both ends pass the same parts) from its owner to rank 0 (to_root) or
 * back; a no-op when rank 0 owns it. Called by both ends, in the same order of
 * i on every rank. */
bb_status bb_run_move(bb_run *r, int i, int to_root, float *w, bb_mask *m, int *bits, bb_lora **lora);
/* Every weight's bits and factors rank 0 does not own, from its owner to rank
 * 0 (never the weights or masks, which stay on their owner): at stage 6, for
 * the LoRA adapter and checkpoints/quantized.h5 rank 0 writes. Collective. */
bb_status bb_run_gather_factors(bb_run *r);

/* Append a line to the wave report shown in the summary. Not collective. */
bb_status bb_run_report_line(bb_run *r, const char *line);
/* RUN_DIR/metrics.json from the run as it stands (docs/report.md has the
 * schema). Rank 0; not collective. */
bb_status bb_metrics_write(const bb_run *r);
/* Record every tensor's density, bits and factor rank as of now (one entry per
 * wave), each from its owner (a sum over ranks with one term per entry: exact).
 * Collective. */
bb_status bb_run_record_tensors(bb_run *r);
/* Keep a healing loss curve (copied) for metrics.json. */
bb_status bb_run_add_curve(bb_run *r, int wave, const char *name, const float *loss, int n);
void bb_state_free(bb_state *s); /* not collective; keeps the run's masks */
/* SIGUSR1: stop after the wave in progress (exit 75 through r->preempted);
 * SIGTERM: exit 75 at once (docs/pipeline.md). */
void bb_run_install_signals(void);

/* The model the next stage should evaluate: the working weights' derived model
 * once they exist, else the original. */
const bb_model *bb_run_current_model(const bb_run *r);

#endif
