/* pipe.h — the forward pass pipelined over ranks (layer sharding): calibration statistics and perplexity/KLD with
 * every rank holding only its plan's blocks.
 *
 * Micro-batch m (micro_batch sequences of T tokens) flows through the active
 * ranks of a bb_plan in order: rank 0 embeds, every active rank runs its
 * blocks (the linear-input hook sees them: calibration statistics accumulate
 * where the layers live), hands the hidden states (b, T, dim) to the next rank
 * with bb_comm_isend/bb_comm_irecv (mpi/comm.h; an MPI communicator the pipe
 * makes for itself), and the last active rank applies the head and
 * gives the logits (or the hidden states) to a sink. Idle ranks (more ranks
 * than the plan could use) skip the pass and only join the final agreement.
 *
 * Buffers: each active rank owns k = in_flight buffers of b T dim + 1 floats
 * (the +1 carries an "upstream failed" flag) and computes in place. Receives
 * run k - 1 micro-batches ahead and a buffer is reused only after its send
 * completed, so with k = 2 the send of micro-batch m overlaps the compute of
 * m + 1, and with k >= 3 the receive of m + 2 overlaps it too. At most k
 * micro-batches are in flight per rank. Memory per rank:
 *     4 (weights of its part)                           bb_plan_rank.weight_bytes
 *   + 4 R (2 dim + 2 qd + 2 kvd + 2 hidden + hd) + attention scratch   (forward work)
 *   + 4 R (vocab + dim) on the head rank when logits are made  (bb_plan_rank.work_bytes)
 *   + k 4 (R dim + 1)                                   (bb_plan_rank.buffer_bytes)
 *   + the calibration Grams of its blocks               (bb_plan_rank.gram_bytes)
 * with R = micro_batch T rows.
 *
 * Results are bit-identical to the single-process bb_calib_run and
 * bb_eval_perplexity (same micro-batches, same rows per matmul, same order of
 * accumulation, all scoring on one rank), so they do not depend on the rank
 * count. OpenBLAS must run the same thread count on every rank as in the
 * single-process run it is compared with.
 *
 * Failure: a rank that fails (or is told to by BB_INJECT_FAIL=RANK:STAGE,
 * STAGE "calib" or "eval", for tests) reports its error once, stops computing
 * and marks every later micro-batch it sends as failed; the others drain the
 * pipeline without computing, and the pass ends with bb_dist_agree: every rank
 * returns the failing rank's status. No rank waits forever on a message.
 *
 * Every function taking the pipe is collective over the dist's ranks. */
#ifndef BB_MPI_PIPE_H
#define BB_MPI_PIPE_H

#include <stdint.h>

#include "io/tokens.h"
#include "model/calib.h"
#include "model/eval.h"
#include "model/forward.h"
#include "mpi/comm.h"
#include "mpi/dist.h"
#include "mpi/plan.h"

typedef struct bb_pipe bb_pipe;

/* This rank's part of the pipeline for m (which, with d and plan, must outlive
 * it): the forward part of plan->ranks[d->rank], with the head only when
 * with_head (evaluation; calibration needs none: then a rank holding only the
 * head sits idle, and the rank with the last block ends the pipeline). plan must be made for
 * d->size ranks. Errors (agreed over ranks): BB_ERR_ARG (a plan for another
 * rank count or model, in_flight < 1), those of bb_forward_create_part. */
/* Process-wide: the communicator kind new pipes send their hidden states with (default MPI; a run whose
 * global communicator is NCCL sets NCCL, so the activations between GPUs go through NCCL too). */
void bb_pipe_set_comm_kind(bb_comm_kind kind);

bb_status bb_pipe_create(const bb_dist *d, const bb_model *m, const bb_plan *plan, int with_head, int in_flight,
                         bb_pipe **out);
void bb_pipe_destroy(bb_pipe **p); /* NULL-safe; nulls *p; not collective */

/* This rank's forward part (NULL on an idle rank): install hooks on it. */
bb_forward *bb_pipe_forward(bb_pipe *p);
const bb_plan_rank *bb_pipe_rank(const bb_pipe *p);

/* Called on the last working rank for every micro-batch in order: sequences
 * [s0, s0 + b) of T tokens; out is logits (b, T, vocab) with the head, else the
 * hidden states after the last block (b, T, dim), valid during the call. */
typedef bb_status (*bb_pipe_sink_fn)(void *ud, int64_t s0, int b, int T, const float *out);

/* Run the sequences ids (n_seq, T) row-major (read on rank 0 only; others may
 * pass NULL) through the pipeline, micro_batch sequences at a time; `stage`
 * names the pass in messages and BB_INJECT_FAIL. Every rank returns the same
 * status (bb_dist_agree). Errors: BB_ERR_ARG (sizes), BB_ERR_MPI, the
 * forward's, the hook's and the sink's, from whichever rank failed first. */
bb_status bb_pipe_run(bb_pipe *p, const int32_t *ids, int64_t n_seq, int T, int micro_batch, const char *stage,
                      bb_pipe_sink_fn sink, void *ud);

/* A calibration collector for this rank's blocks (o's layer range is
 * replaced), or *out = NULL on a rank without blocks. Not collective. */
bb_status bb_pipe_calib_create(bb_pipe *p, const bb_calib_opts *o, bb_calib **out);

/* Pipelined bb_calib_run: every sequence of stream (n_seq, seq_len; needed on
 * rank 0) through the pipeline, micro_batch per step, c (from
 * bb_pipe_calib_create; NULL where the rank has no blocks) attached to this
 * rank's part for the duration. Each rank ends with the statistics of its own
 * blocks, bit-identical to bb_calib_run's for those layers. Errors: as
 * bb_calib_run and bb_pipe_run, the same on every rank. */
bb_status bb_pipe_calib_run(bb_pipe *p, bb_calib *c, const bb_tokens *stream, int micro_batch);

/* Pipelined bb_eval_perplexity (the pipe needs with_head): tokens[0, n) on
 * every rank. r (and kld with a reference) reach every rank, bit-identical to
 * bb_eval_perplexity's. save is filled on the head rank only (others get an
 * empty one); ref is read on the head rank only (other ranks may pass any
 * reference with the same windowing, or the same one). Errors: as
 * bb_eval_perplexity and bb_pipe_run, the same on every rank. */
bb_status bb_pipe_eval_perplexity(bb_pipe *p, const int32_t *tokens, int64_t n, const bb_ppl_opts *o, bb_ppl_result *r,
                                  bb_logprobs *save, const bb_logprobs *ref, bb_kld_result *kld);

#endif
