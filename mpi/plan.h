/* plan.h — the layer-sharding plan: which contiguous blocks (plus the embedding
 * and the classifier) each MPI rank owns, balanced by estimated cost.
 *
 * The model is a chain of items: the embedding, blocks 0..L-1, the head (final
 * norm + classifier). Their costs, in multiply-adds per token:
 *   embedding  dim                           (a row copy)
 *   block      P_lin + G + qd (seq_len + 1)  P_lin = the 7 linear weights' parameters
 *                                            (q/k/v biases and norms count as parameters,
 *                                            not cost), G = the calibration Grams' syrk
 *                                            work (dim^2 + qd^2 + dim^2 + hidden^2) / 2,
 *                                            then causal attention (QK^T and PV)
 *   head       dim vocab + dim               (the classifier matmul: the big one)
 * so the cost of an item is this times the calibration tokens (parameters ×
 * tokens plus the Gram and attention terms). All of it is integer arithmetic.
 *
 * The chain is cut into contiguous groups, one per rank in rank order: the
 * first the embedding (rank 0 always), the last active rank the head. The cut
 * minimizes the largest group's cost (the pipeline's bottleneck); among the
 * cuts with that bottleneck, each rank in turn takes the item count whose cost
 * is closest to an even share of what is left, as long as the rest still fits
 * the bottleneck on the ranks after it. More ranks than items leaves the last
 * ranks idle (no items; the pipeline skips them). N = 1 gives everything to
 * rank 0. A pure function of the arguments: every rank computes the same plan
 * without communication. */
#ifndef BB_MPI_PLAN_H
#define BB_MPI_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "io/model.h"

typedef struct {
    int64_t tokens;  /* calibration tokens (n_seq * seq_len) */
    int seq_len;     /* tokens per sequence (attention term, activation memory) */
    int micro_batch; /* sequences per micro-batch (memory column) */
    int in_flight;   /* micro-batch buffers per rank, k (memory column; pipe.h) */
    int gram_bytes;  /* 4 or 8: calibration Grams in the memory column; 0 leaves them out */
} bb_plan_opts;

typedef struct {
    int layer_begin, layer_end; /* blocks [begin, end); begin == end: no blocks */
    int embed, head;            /* holds the embedding / the final norm + classifier */
    int active;                 /* holds any item */
    int64_t params;             /* parameters held (a tied classifier counts its shared embedding once) */
    double cost;                /* multiply-adds over the calibration tokens */
    double share;               /* cost / total cost */
    int64_t weight_bytes;       /* f32 weights (bb_forward_create_part) */
    int64_t work_bytes;         /* forward activations for one micro-batch (+ logits on the head rank) */
    int64_t buffer_bytes;       /* in_flight micro-batch hidden-state buffers */
    int64_t gram_bytes;         /* calibration statistics of its blocks */
    int64_t memory_bytes;       /* the sum of the four above */
} bb_plan_rank;

typedef struct {
    int n_ranks, n_active; /* ranks 0..n_active-1 hold items; the rest are idle */
    int n_layers;
    bb_plan_opts opts;
    int64_t item_cost[3]; /* per token: embedding, one block, head */
    double total_cost, max_cost;
    bb_plan_rank *ranks; /* [n_ranks] */
} bb_plan;

/* Plan for c on n_ranks ranks. Not collective (deterministic).
 * Errors: BB_ERR_ARG (n_ranks < 1, tokens < 0, seq_len < 1, micro_batch < 1,
 * in_flight < 1, gram_bytes not 0/4/8, a config without layers), BB_ERR_OOM. */
bb_status bb_plan_make(const bb_model_config *c, const bb_plan_opts *o, int n_ranks, bb_plan *out);
void bb_plan_free(bb_plan *p); /* NULL-safe; zeroes *p */

/* The rank owning block `layer`, or -1 when layer is out of range. */
int bb_plan_owner(const bb_plan *p, int layer);
/* The next and previous active rank in the pipeline order, or -1 at its ends. */
int bb_plan_next(const bb_plan *p, int rank);
int bb_plan_prev(const bb_plan *p, int rank);
/* The rank holding the head (the last active rank). */
int bb_plan_head_rank(const bb_plan *p);

/* Memory per rank, in bytes: weights 4 (P_blocks + [embed] V dim + [head] (dim + V dim
 * unless tied and embedded)) + activations 4 R (2 dim + 2 qd + 2 kvd + 2 hidden + hd)
 * + attention scratch + [head] 4 R (V + dim) logits and normed rows + in_flight 4 (R dim + 1) buffers + Grams,
 * with R = micro_batch seq_len rows. */

/* A table: rank, blocks, embedding/head, parameters, cost share, memory. */
void bb_plan_print(const bb_plan *p, FILE *f);

#endif
