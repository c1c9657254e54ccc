/* stages.h — the pipeline's stage functions, for run.c and the wave loop
 * (waves.c). Internal to src/pipeline. Rank 0 does the stage work until the
 * MPI issue shards it; the *_stage entry points are collective. */
#ifndef BB_PIPELINE_STAGES_H
#define BB_PIPELINE_STAGES_H

#include "model/eval.h"
#include "pipeline/run.h"
#include "pipeline/state.h"

bb_status bb_stage_baseline(bb_run *r);
bb_status bb_stage_usage(bb_run *r);
bb_status bb_stage_waves(bb_run *r);
bb_status bb_stage_quantize(bb_run *r);
/* lowrank.enabled: the weights whose factored form beats their quantized dense form (factorize.c),
 * called by stage 6 before it quantizes. Collective. */
bb_status bb_stage_factorize(bb_run *r);
bb_status bb_stage_version(bb_run *r);

/* The calibration statistics of the current weights, replacing r->stats
 * (each rank: its own blocks). Collective. */
bb_status bb_run_recalibrate(bb_run *r);
/* Calibration statistics of model m's blocks on this rank (NULL *out on a
 * rank without blocks), the sequences of stream (read on rank 0), pipelined
 * over the plan. Collective. */
bb_status bb_run_calibrate(bb_run *r, const bb_model *m, const bb_tokens *stream, bb_calib **out);
/* Perplexity (and KLD against ref) of model m on ev, pipelined over the plan:
 * the result on every rank; save (the log-probabilities) and ref on the head
 * rank only. Collective. */
bb_status bb_run_evaluate(bb_run *r, const bb_model *m, const bb_tokens *ev, bb_ppl_result *res, bb_logprobs *save,
                          const bb_logprobs *ref, bb_kld_result *kld);
/* r->masks, all kept, created on first use (needs the working weights). */
bb_status bb_run_masks(bb_run *r);

/* The calibration windows (n_seq, seq_len): the run's stream, or (a text
 * stream) the seeded windows stage 1 drew; *stream points at one of them. */
bb_status bb_run_calib_windows(bb_run *r, bb_tokens *windows, const bb_tokens **stream);

/* The per-wave stages 3-5 (heal.c), on this rank's weights. Collective. */
bb_status bb_wave_heal(bb_run *r, int k);
bb_status bb_wave_reinforce(bb_run *r, int k);
bb_status bb_wave_redistribute(bb_run *r, int k);

/* Decay (decay.c), rank 0. bb_decay_begin does nothing when pruning is off
 * (prune.method none or a zero target): the other calls are then no-ops. */
int bb_decay_active(const bb_config *c);
bb_status bb_decay_begin(bb_run *r);
/* Prune one wave; *removed = weights pruned. Recalibrates first when the
 * weights changed since the statistics were taken (r->stats_stale). */
bb_status bb_decay_wave(bb_run *r, int k, int64_t *removed);
/* Whether another wave would prune anything. */
bb_status bb_decay_more(bb_run *r, int *more);
/* wave_<k>.h5: masks, usage maps, the wave's metrics. */
bb_status bb_decay_save(bb_run *r, int k, const bb_wave_metrics *m);
/* Per-layer target sparsities (OWL ratios or prune.target), (n_layers); NULL when not pruning. */
const double *bb_decay_layer_targets(const bb_run *r);
bb_status bb_decay_set_layer_targets(bb_run *r, const double *targets);
void bb_decay_end(bb_run *r);

#endif
