/* quantize.c — stage 6 (Quantize + low-rank merge): per-tensor GGUF types from quant.type or the bit budget,
 * RTN or GPTQ on the working weights, evaluation of the quantized model and the GGUF export. */
#include "pipeline/quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/scales.h"
#include "compress/stress.h"
#include "core/file.h"
#include "core/sha256.h"
#include "mpi/ckpt.h"
#include "mpi/h5.h"
#include "core/events.h"
#include "core/log.h"
#include "io/tokens.h"
#include "linalg/backend.h"
#ifdef BB_HAVE_CUDA
#include "cuda/gptq_cuda.h"
#endif
#include "model/eval.h"
#include "pipeline/export.h"
#include "pipeline/run.h"
#include "pipeline/stages.h"

void bb_quantized_destroy(bb_quantized **pq) {
    if (!pq || !*pq) return;
    bb_quantized *q = *pq;
    if (q->q)
        for (int i = 0; i < q->n_layers * BB_LIN_COUNT; i++) bb_quant_result_destroy(&q->q[i]);
    free(q->q);
    free(q);
    *pq = NULL;
}

int bb_quantize_file_type(int type) {
    /* ggml's enum llama_ftype; for K types the _M variant, as llama.cpp names a file mostly of that type */
    switch (type) {
    case BB_GGML_F32: return 0;
    case BB_GGML_F16: return 1;
    case BB_GGML_Q4_0: return 2;
    case BB_GGML_Q4_1: return 3;
    case BB_GGML_Q8_0: return 7;
    case BB_GGML_Q5_0: return 8;
    case BB_GGML_Q5_1: return 9;
    case BB_GGML_Q2_K: return 10;
    case BB_GGML_Q3_K: return 12;
    case BB_GGML_Q4_K: return 15;
    case BB_GGML_Q5_K: return 17;
    case BB_GGML_Q6_K: return 18;
    case BB_GGML_BF16: return 32;
    default: return -1;
    }
}

/* Which tensors this process quantizes: [i0, i1) of the layer-major linear
 * weights, and the ranks to agree with (NULL: one process, all tensors). The
 * plan gives each rank a contiguous range, in rank order. */
typedef struct {
    const bb_dist *d;
    bb_comm *comm; /* the run's: the budget's global decisions (with d) */
    int i0, i1;
    const int *boost; /* (n) bits the stress stage asked for per tensor (0: none), the same on every rank; or NULL */
} part;

/* One linear weight's inputs to a quantizer: H as f32 (converted from f64 statistics) or NULL. */
typedef struct {
    bb_quant_input in;
    float *h_own; /* set when H was converted */
} lin_input;

static bb_status lin_input_make(bb_weights *w, bb_calib *stats, int l, bb_linear_kind k, lin_input *li) {
    memset(li, 0, sizeof *li);
    const bb_tensor *t = bb_weights_tensor(w, l, k);
    li->in.name = t->name;
    li->in.rows = bb_tensor_rows(t);
    li->in.cols = bb_tensor_cols(t);
    li->in.w = bb_weights_linear(w, l, k);
    li->in.mask = bb_weights_mask(w, l, k);
    if (!stats) return BB_OK;
    const bb_calib_stat *s;
    BB_CALL(bb_calib_stats(stats, l, k, &s));
    BB_CHECK(s->in_features == li->in.cols, BB_ERR_INTERNAL, "%s: statistics are %lld wide, the weight %lld", t->name,
             (long long)s->in_features, (long long)li->in.cols);
    if (s->gram) {
        li->in.h = s->gram;
        return BB_OK;
    }
    size_t n = (size_t)(s->in_features * s->in_features);
    BB_CALL(bb_malloc((void **)&li->h_own, n * sizeof(float), "H as f32"));
    for (size_t e = 0; e < n; e++) li->h_own[e] = (float)s->gram_f64[e];
    li->in.h = li->h_own;
    return BB_OK;
}

/* s_b before normalisation: mean |W_ij| ||X_j|| (the seed's usage score), 1 without statistics. */
static bb_status usage_score(bb_weights *w, bb_calib *stats, int l, bb_linear_kind k, double *u) {
    *u = 1;
    if (!stats) return BB_OK;
    const bb_calib_stat *s;
    BB_CALL(bb_calib_stats(stats, l, k, &s));
    const bb_tensor *t = bb_weights_tensor(w, l, k);
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    const float *x = bb_weights_linear(w, l, k);
    double acc = 0;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) acc += fabs((double)x[i * cols + j]) * s->norm[j];
    *u = acc / (double)(rows * cols);
    return BB_OK;
}

/* Every rank's block tables to every rank, in tensor order (the plan's ranges
 * are contiguous and in rank order): then each rank's assignment is the same
 * pure function of the same bytes. The tables are plain data. */
static bb_status gather_tables(const part *pt, bb_budget_block *blocks, int n, bb_status st) {
    const bb_dist *d = pt->d;
    BB_CALL(bb_dist_agree(d, st));
    size_t *offsets = NULL;
    char *all = NULL;
    BB_CALL(bb_malloc((void **)&offsets, sizeof *offsets * (size_t)(d->size + 1), "budget gather offsets"));
    st = bb_comm_allgatherv(pt->comm, blocks + pt->i0, sizeof *blocks * (size_t)(pt->i1 - pt->i0), (void **)&all,
                            offsets);
    if (st == BB_OK && offsets[d->size] != sizeof *blocks * (size_t)n)
        st = bb_error(BB_ERR_INTERNAL, __FILE__, __LINE__, "the ranks' tensors cover %zu of %d",
                      offsets[d->size] / sizeof *blocks, n);
    if (st == BB_OK) memcpy(blocks, all, sizeof *blocks * (size_t)n);
    free(all);
    free(offsets);
    return st;
}

/* The stress stage's boosts (compress/stress.h): the stressed tensors move up
 * to wider types and the budget is kept by demoting the lowest-usage others.
 * When the boosts cannot fit the budget, the unboosted assignment stands
 * (one warning): the budget is the user's hard limit. */
static bb_status grant_boosts(const bb_config *cfg, const int *boost, const bb_budget_block *blocks, int n, int *choice,
                              bb_budget_summary *sum) {
    uint8_t *stressed = NULL;
    int *trial = NULL;
    BB_CALL(bb_calloc((void **)&stressed, (size_t)n, 1, "stress flags"));
    int count = 0;
    for (int i = 0; i < n; i++) count += stressed[i] = boost[i] > 0;
    bb_status st = count ? bb_malloc((void **)&trial, sizeof(int) * (size_t)n, "trial choices") : BB_OK;
    if (st == BB_OK && count) {
        memcpy(trial, choice, sizeof(int) * (size_t)n);
        bb_stress_opts so;
        bb_stress_opts_from_config(cfg, &so);
        bb_stress_summary ss;
        int q = bb_error_set_quiet(1);
        bb_status rs = bb_stress_rebalance(&so, blocks, n, stressed, sum->budget, trial, &ss);
        bb_error_set_quiet(q);
        if (rs == BB_OK) {
            memcpy(choice, trial, sizeof(int) * (size_t)n);
            sum->total = ss.total;
            bb_info("stress  %lld stressed tensors boosted, %lld demotions to stay within %lld bits", (long long)ss.boosted,
                    (long long)ss.demoted, (long long)ss.budget);
        } else if (rs == BB_ERR_CONFIG) {
            bb_warn("stress  %d stressed tensors asked for more bits than the budget can give (%s): kept the "
                    "unboosted assignment",
                    count, bb_last_error());
        } else {
            st = rs;
        }
    }
    free(stressed);
    free(trial);
    return st;
}

/* The stored type of every tensor (types[l * 7 + k]) from the budget. */
static bb_status budget_types(const bb_config *cfg, bb_weights *w, bb_calib *stats, const bb_quantizer *qz,
                              const bb_quant_opts *qo, int *types, bb_budget_summary *sum, const part *pt) {
    int L = bb_weights_model(w)->cfg.n_layers, n = L * BB_LIN_COUNT;
    bb_budget_opts bo;
    bb_budget_opts_default(&bo);
    BB_CALL(bb_budget_opts_from_config(cfg, (int)cfg->waves.count, &bo));
    bb_budget_block *blocks = NULL;
    int *choice = NULL;
    double *usage = NULL;
    bb_status st = bb_calloc((void **)&blocks, (size_t)n, sizeof *blocks, "budget tables");
    if (st == BB_OK) st = bb_calloc((void **)&choice, (size_t)n, sizeof *choice, "budget choices");
    if (st == BB_OK) st = bb_calloc((void **)&usage, (size_t)n, sizeof *usage, "usage scores");
    double umax = 0;
    for (int i = pt->i0; st == BB_OK && i < pt->i1; i++) {
        st = usage_score(w, stats, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), &usage[i]);
        if (usage[i] > umax) umax = usage[i];
    }
    if (pt->d) { /* s_b = u_b / max over the model: a MAX reduction (exact) */
        st = bb_dist_agree(pt->d, st);
        if (st == BB_OK) st = bb_comm_allreduce_f64(pt->comm, &umax, 1, BB_COMM_MAX);
    }
    int measure = !strcmp(bo.policy, "lagrange") || !strcmp(bo.policy, "optimal") || bo.fortress_top > 0;
    for (int i = pt->i0; st == BB_OK && i < pt->i1; i++) {
        int l = i / BB_LIN_COUNT;
        bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
        const bb_tensor *t = bb_weights_tensor(w, l, k);
        st = bb_budget_block_init(&bo, t->name, (uint64_t)i, bb_tensor_rows(t), bb_tensor_cols(t),
                                  umax > 0 ? usage[i] / umax : 1, &blocks[i]);
        if (st == BB_OK && measure) {
            lin_input li;
            st = lin_input_make(w, stats, l, k, &li);
            if (st == BB_OK) st = bb_budget_block_measure(&blocks[i], qz, qo, &li.in);
            free(li.h_own);
        }
    }
    if (pt->d) st = gather_tables(pt, blocks, n, st);
    if (st == BB_OK && bo.fortress_top > 0) {
        int64_t made = 0;
        st = bb_budget_fortress_top(bo.fortress_top, blocks, n, &made);
        for (int i = 0; st == BB_OK && i < n; i++)
            if (blocks[i].fortress && blocks[i].n == 1 && blocks[i].c[0].bits == 16)
                bb_debug("budget  fortress %s at 16 bits", blocks[i].name);
        if (st == BB_OK)
            bb_info("budget  fortress_top %g: the %lld most sensitive tensors (distortion at their narrowest width) "
                    "kept at 16 bits",
                    bo.fortress_top, (long long)made);
    }
    if (st == BB_OK) {
        /* A budget below every tensor's narrowest width (small models whose rows fit no K block) is spent at
         * that width with a warning: failing here would lose the whole run's work. */
        int64_t weights = 0, least = 0;
        for (int i = 0; i < n; i++) {
            weights += blocks[i].size;
            least += blocks[i].c[0].cost;
        }
        if ((double)least > floor(bo.target_bits * (double)weights)) {
            double t = nextafter((double)least / (double)weights, INFINITY);
            bb_warn("budget.target_bits %.4g is below the narrowest this model's tensors can be stored in (%.4f bits "
                    "per weight, scales included): using %.4f",
                    bo.target_bits, (double)least / (double)weights, t);
            bo.target_bits = t;
        }
        st = bb_budget_assign(&bo, blocks, n, choice, sum);
    }
    if (st == BB_OK && pt->boost) st = grant_boosts(cfg, pt->boost, blocks, n, choice, sum);
    for (int i = 0; st == BB_OK && i < n; i++) types[i] = blocks[i].c[choice[i]].type;
    if (st == BB_OK)
        bb_info("budget  %s: %.3f bits per weight (budget %.3f), %lld of %lld bits, distortion %.6g", bo.policy,
                sum->avg_bits, (double)sum->budget / (double)sum->weights, (long long)sum->total,
                (long long)sum->budget, sum->distortion);
    free(blocks);
    free(choice);
    free(usage);
    return st;
}

static bb_status quantize_part(const bb_config *cfg, bb_weights *w, bb_calib *stats, const part *pt,
                               bb_quantized **out);

/* heal.train_scales: the scales of one quantized tensor trained in place (blocks and w_hat), straight-through with
 * the quantizer's codes fixed, against the quantizer's own target and H. Types without one scale per 32 values
 * are left as they are (debug line). */
static bb_status train_scales(const bb_config *cfg, const bb_quant_input *in, bb_quant_result *res, bb_quantized *q) {
    if (!bb_scales_type_supported(res->type)) {
        bb_debug("scales  %s is stored as %s: its scales are not trained (q8_0, q4_0, q5_0 only)", in->name,
                 bb_ggml_type_name(res->type));
        return BB_OK;
    }
    BB_CHECK(in->h, BB_ERR_CONFIG,
             "%s: heal.train_scales needs calibration statistics (data.calib; birdbone export --calib) for the layer "
             "loss tr(E H E^T): none were collected",
             in->name);
    bb_scales_opts so;
    bb_scales_opts_default(&so);
    so.steps = (int)cfg->heal.scale_steps;
    so.lr = cfg->heal.scale_lr;
    bb_scales_stats ss;
    bb_event_begin("quant.scales");
    bb_status st = bb_scales_train_blocks(&so, in->name, res->type, res->rows, res->cols, in->w, in->h, res->blocks,
                                          res->row_bytes, res->w_hat, &ss);
    bb_event_end("quant.scales", 0, 0);
    BB_CALL(st);
    q->scale_tensors++;
    q->scale_loss[0] += ss.loss_before;
    q->scale_loss[1] += ss.loss_after;
    bb_debug("scales  %s: layer loss %.6g -> %.6g (best step %d)", in->name, ss.loss_before, ss.loss_after,
             ss.best_step);
    return BB_OK;
}

bb_status bb_quantize_model(const bb_config *cfg, bb_weights *w, bb_calib *stats, bb_quantized **out) {
    *out = NULL;
    const bb_model *m = bb_weights_model(w);
    int l0, l1;
    bb_weights_range(w, &l0, &l1);
    BB_CHECK(l0 == 0 && l1 == m->cfg.n_layers, BB_ERR_ARG,
             "quantization needs the working weights of every layer (have [%d, %d) of %d)", l0, l1, m->cfg.n_layers);
    part pt = {NULL, NULL, 0, m->cfg.n_layers * BB_LIN_COUNT, NULL};
    return quantize_part(cfg, w, stats, &pt, out);
}

static bb_status quantize_part(const bb_config *cfg, bb_weights *w, bb_calib *stats, const part *pt,
                               bb_quantized **out) {
    *out = NULL;
    const bb_model *m = bb_weights_model(w);
    BB_CHECK(strcmp(cfg->quant.method, "none") != 0, BB_ERR_CONFIG, "quant.method is none: nothing to quantize");
    const bb_quantizer *qz;
    BB_CALL(bb_quant_get(cfg->quant.method, &qz));
    BB_CHECK(
        stats || pt->i0 == pt->i1 || strcmp(cfg->quant.method, "gptq") != 0, BB_ERR_CONFIG,
        "quant.method gptq needs calibration statistics (data.calib; birdbone export --calib): none were collected; "
        "give calibration text or use quant.method rtn");
    bb_quant_opts qo;
    bb_quant_opts_default(&qo);
    BB_CALL(bb_quant_opts_from_config(&cfg->quant, &qo));
    qo.threads = (int)cfg->backend.threads;
    int auto_type = !strcmp(cfg->quant.type, "auto");
    int n = m->cfg.n_layers * BB_LIN_COUNT;
#ifdef BB_HAVE_CUDA
    const bb_linalg_backend *dbe;
    BB_CALL(bb_linalg_backend_default_get(&dbe));
    int gpu_gptq = !strcmp(cfg->quant.method, "gptq") && !strncmp(dbe->name, "cuda", 4);
#endif
    bb_quantized *q;
    BB_CALL(bb_calloc((void **)&q, 1, sizeof *q, "quantized model"));
    q->n_layers = m->cfg.n_layers;
    int *types = NULL;
    int64_t per_type[BB_GGML_TYPE_COUNT] = {0};
    bb_status st = bb_calloc((void **)&q->q, (size_t)n + 1, sizeof *q->q, "quantized tensors");
    if (st == BB_OK) st = bb_calloc((void **)&types, (size_t)n + 1, sizeof *types, "tensor types");
    if (st == BB_OK && auto_type) st = budget_types(cfg, w, stats, qz, &qo, types, &q->sum, pt);
    for (int i = pt->i0; st == BB_OK && i < pt->i1; i++) {
        int l = i / BB_LIN_COUNT;
        bb_linear_kind k = (bb_linear_kind)(i % BB_LIN_COUNT);
        lin_input li;
        st = lin_input_make(w, stats, l, k, &li);
        if (st != BB_OK) break;
        bb_quant_opts o = qo;
        if (auto_type) o.type = types[i];
        st = BB_ERR_UNSUPPORTED;
#ifdef BB_HAVE_CUDA
        /* GPTQ's column loop on the GPU where it applies (dense Q4_0 weights; docs/cuda.md), else the cpu's */
        if (gpu_gptq && !li.in.mask) st = bb_cuda_quant_gptq(&o, &li.in, &q->q[i]);
        if (st == BB_ERR_UNSUPPORTED) bb_clear_error();
#endif
        if (st == BB_ERR_UNSUPPORTED) st = qz->apply(&o, &li.in, &q->q[i]);
        if (st == BB_OK && cfg->heal.train_scales) st = train_scales(cfg, &li.in, q->q[i], q);
        free(li.h_own);
        if (st != BB_OK) break;
        const bb_quant_result *res = q->q[i];
        /* later stages and the evaluation see exactly what the file stores */
        memcpy(bb_weights_linear(w, l, k), res->w_hat, sizeof(float) * (size_t)(res->rows * res->cols));
        q->weights += res->rows * res->cols;
        q->bits += res->rows * (int64_t)res->row_bytes * 8;
        per_type[res->type] += res->rows * res->cols;
    }
    free(types);
    if (pt->d) { /* totals over ranks: integer sums */
        st = bb_dist_agree(pt->d, st);
        int64_t v[2 + BB_GGML_TYPE_COUNT];
        v[0] = q->weights, v[1] = q->bits;
        memcpy(v + 2, per_type, sizeof per_type);
        if (st == BB_OK) st = bb_comm_allreduce_i64(pt->comm, v, 2 + BB_GGML_TYPE_COUNT, BB_COMM_SUM);
        q->weights = v[0], q->bits = v[1];
        memcpy(per_type, v + 2, sizeof per_type);
        double sl[3] = {q->scale_loss[0], q->scale_loss[1], (double)q->scale_tensors};
        if (st == BB_OK && cfg->heal.train_scales &&
            MPI_Allreduce(MPI_IN_PLACE, sl, 3, MPI_DOUBLE, MPI_SUM, pt->d->comm) != MPI_SUCCESS)
            st = bb_error(BB_ERR_MPI, __FILE__, __LINE__, "summing the scale-training losses failed");
        q->scale_loss[0] = sl[0], q->scale_loss[1] = sl[1], q->scale_tensors = (int64_t)sl[2];
    }
    if (st == BB_OK && cfg->heal.train_scales)
        bb_info("scales  heal.train_scales: %lld tensors, %lld Adam steps each at lr %g: layer loss %.6g -> %.6g "
                "(%.2f %% lower)",
                (long long)q->scale_tensors, (long long)cfg->heal.scale_steps, cfg->heal.scale_lr, q->scale_loss[0],
                q->scale_loss[1], q->scale_loss[0] > 0 ? 100 * (1 - q->scale_loss[1] / q->scale_loss[0]) : 0.0);
    if (st != BB_OK) {
        bb_quantized_destroy(&q);
        return bb_trace(st, __FILE__, __LINE__, "bb_quantize_model");
    }
    q->dominant = BB_GGML_F32;
    for (int t = 0; t < BB_GGML_TYPE_COUNT; t++)
        if (per_type[t] > per_type[q->dominant]) q->dominant = t;
    *out = q;
    return BB_OK;
}

/* ---- the stage ---- */

/* The quantized model's perplexity and KLD, pipelined over the plan (every
 * owner's working weights hold what its tensors store). Collective. */
static bb_status evaluate(bb_run *r) {
    const bb_config *c = &r->cfg;
    char path[1200];
    bb_tokens ev = {0};
    bb_logprobs ref = {0};
    snprintf(path, sizeof path, "%s/eval.tokens", c->run.dir);
    bb_status st = bb_tokens_read(path, r->model->cfg.vocab_size, &ev);
    if (st == BB_OK && c->eval.kld) {
        snprintf(path, sizeof path, "%s/dense.bblp", c->run.dir);
        st = bb_logprobs_read(path, &ref);
    }
    st = bb_dist_agree(r->dist, st);
    bb_ppl_result pr;
    bb_kld_result kr = {0};
    if (st == BB_OK) {
        bb_event_begin("eval.quant");
        st = bb_run_evaluate(r, bb_run_current_model(r), &ev, &pr, NULL, c->eval.kld ? &ref : NULL,
                             c->eval.kld ? &kr : NULL);
        bb_event_end("eval.quant", 0, 0);
    }
    if (st == BB_OK) {
        r->quant_ppl = pr.ppl;
        r->quant_kld = c->eval.kld ? kr.kld_mean : 0;
        r->quant_top1 = c->eval.kld ? kr.top1 : 0;
        if (c->eval.kld)
            bb_info("quant   PPL %.4f +/- %.4f (dense %.4f, %+.2f%%); KLD mean %.5f, p99 %.4f; top-1 %.4f", pr.ppl,
                    pr.ppl_err, r->dense_ppl, 100 * (pr.ppl / r->dense_ppl - 1), kr.kld_mean, kr.kld_p99, kr.top1);
        else
            bb_info("quant   PPL %.4f +/- %.4f (dense %.4f, %+.2f%%)", pr.ppl, pr.ppl_err, r->dense_ppl,
                    100 * (pr.ppl / r->dense_ppl - 1));
    }
    bb_logprobs_free(&ref);
    bb_tokens_free(&ev);
    return st;
}

/* Tensor i's quantized blocks from its owner to rank 0, which writes the GGUF. */
static bb_status move_result(bb_run *r, bb_quantized *q, int i) {
    int owner = bb_run_owner(r, i), me = r->dist->rank;
    if (owner <= 0 || (me != 0 && me != owner)) return BB_OK;
    MPI_Comm comm = r->dist->comm;
    int64_t hdr[5] = {0};
    double dd[1] = {0};
    if (me == owner) {
        const bb_quant_result *x = q->q[i];
        hdr[0] = x->type, hdr[1] = x->rows, hdr[2] = x->cols, hdr[3] = x->fell_back, hdr[4] = x->dead;
        dd[0] = x->damp;
        int rc = MPI_Send(hdr, 5, MPI_INT64_T, 0, 4444, comm);
        if (rc == MPI_SUCCESS) rc = MPI_Send(dd, 1, MPI_DOUBLE, 0, 4444, comm);
        if (rc == MPI_SUCCESS) rc = MPI_Send(x->blocks, (int)(x->rows * (int64_t)x->row_bytes), MPI_BYTE, 0, 4444, comm);
        BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "sending tensor %d's quantized blocks to rank 0 failed", i);
        return BB_OK;
    }
    int rc = MPI_Recv(hdr, 5, MPI_INT64_T, owner, 4444, comm, MPI_STATUS_IGNORE);
    if (rc == MPI_SUCCESS) rc = MPI_Recv(dd, 1, MPI_DOUBLE, owner, 4444, comm, MPI_STATUS_IGNORE);
    BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "receiving tensor %d's quantized blocks from rank %d failed", i, owner);
    bb_quant_result_destroy(&q->q[i]);
    BB_CALL(bb_quant_result_create((int)hdr[0], hdr[1], hdr[2], &q->q[i]));
    bb_quant_result *x = q->q[i];
    x->fell_back = (int)hdr[3];
    x->dead = hdr[4];
    x->damp = dd[0];
    BB_CHECK(MPI_Recv(x->blocks, (int)(x->rows * (int64_t)x->row_bytes), MPI_BYTE, owner, 4444, comm,
                      MPI_STATUS_IGNORE) == MPI_SUCCESS,
             BB_ERR_MPI, "receiving tensor %d's quantized blocks from rank %d failed", i, owner);
    /* what the blocks decode to, as the owner's quantizer left it */
    for (int64_t row = 0; row < x->rows; row++)
        bb_qformat_decode_row(x->type, x->blocks + (size_t)row * x->row_bytes, x->cols, x->w_hat + row * x->cols);
    return BB_OK;
}

/* checkpoints/quantized.h5: the GGUF blocks (codes and scales as stored) of
 * every linear weight, beside the wave checkpoints (docs/checkpoints.md). */
typedef struct {
    const bb_run *r;
    const bb_quantized *q;
    bb_lora *const *fac; /* (n_lin) the factors of the weights stored factored (lowrank.enabled), or NULL */
} qckpt;

static bb_status qckpt_body(hid_t f, void *ud) {
    const qckpt *b = ud;
    const bb_run *r = b->r;
    BB_CALL(bb_h5_attr_put_str(f, "magic", "birdbone-quantized"));
    BB_CALL(bb_h5_attr_put_i64(f, "version", 1));
    BB_CALL(bb_h5_attr_put_i64(f, "wave", r->n_waves));
    BB_CALL(bb_h5_attr_put_str(f, "config_sha256", r->hash));
    BB_CALL(bb_h5_attr_put_f64(f, "bits_per_weight", r->quant_bits));
    for (int i = 0; i < b->q->n_layers * BB_LIN_COUNT; i++) {
        const bb_quant_result *x = b->q->q[i];
        const bb_tensor *t = r->state.t[i];
        char gname[64], hex[65];
        snprintf(gname, sizeof gname, "layer_%03d/%s", i / BB_LIN_COUNT, bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)));
        bb_sha256_hex(x->blocks, (size_t)x->rows * x->row_bytes, hex);
        hid_t g;
        BB_CALL(bb_h5_group_create(f, gname, &g));
        int64_t dims[2] = {x->rows, (int64_t)x->row_bytes};
        bb_status st = bb_h5_attr_put_str(g, "name", t->name);
        if (st == BB_OK) st = bb_h5_attr_put_str(g, "type", bb_ggml_type_name(x->type));
        if (st == BB_OK) st = bb_h5_attr_put_i64(g, "ggml_type", x->type);
        if (st == BB_OK) st = bb_h5_attr_put_i64(g, "rows", x->rows);
        if (st == BB_OK) st = bb_h5_attr_put_i64(g, "cols", x->cols);
        if (st == BB_OK) st = bb_h5_attr_put_str(g, "blocks_sha256", hex);
        if (st == BB_OK) st = bb_h5_write(g, "blocks", BB_H5_U8, 2, dims, x->blocks);
        const bb_lora *f = b->fac ? b->fac[i] : NULL;
        if (st == BB_OK) st = bb_h5_attr_put_i64(g, "factored_rank", f ? f->rank : 0);
        if (st == BB_OK && f) { /* the weight is A·B (the blocks hold its base: zeros, or A·B merged) */
            int64_t da[2] = {f->rows, f->rank}, db[2] = {f->rank, f->cols};
            st = bb_h5_write(g, "factor_a", BB_H5_F32, 2, da, f->a);
            if (st == BB_OK) st = bb_h5_write(g, "factor_b", BB_H5_F32, 2, db, f->b);
        }
        bb_h5_close_id(g);
        BB_CALL(st);
    }
    return BB_OK;
}

static bb_status write_quantized_checkpoint(const bb_run *r, const bb_quantized *q, bb_lora *const *fac) {
    char path[1200], what[64];
    snprintf(path, sizeof path, "%s/checkpoints", r->cfg.run.dir);
    BB_CALL(bb_mkdir_p(path));
    snprintf(path, sizeof path, "%s/checkpoints/quantized.h5", r->cfg.run.dir);
    snprintf(what, sizeof what, "wave %d", r->n_waves);
    qckpt b = {r, q, fac};
    BB_CALL(bb_ckpt_write_file(path, qckpt_body, &b, what));
    bb_info("ckpt    %s: the GGUF blocks of every linear weight", path);
    return BB_OK;
}

/* The factors as a GGUF LoRA adapter (rank 0 holds them all after the waves). */
static bb_status export_adapter(bb_run *r) {
    const bb_state *s = &r->state;
    const bb_config *c = &r->cfg;
    bb_export_lora_entry *e = NULL;
    BB_CALL(bb_calloc((void **)&e, (size_t)s->n_lin, sizeof *e, "adapter entries"));
    int n = 0;
    for (int i = 0; i < s->n_lin; i++)
        if (s->lora[i]) e[n++] = (bb_export_lora_entry){i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), s->lora[i]};
    char path[1200];
    if (c->output.lora_path[0])
        snprintf(path, sizeof path, "%s", c->output.lora_path);
    else
        snprintf(path, sizeof path, "%s/lora.gguf", c->run.dir);
    bb_status st = bb_export_lora_gguf(r->model, e, n, c->run.name, path);
    free(e);
    if (st == BB_OK) bb_info("export  %s (LoRA adapter: %d weights; llama.cpp: -m %s --lora %s)", path, n, r->gguf_path, path);
    return st;
}

/* Every rank quantizes its own blocks' tensors (the budget agreed from the
 * gathered tables), the quantized model is evaluated through the pipeline,
 * and rank 0 gathers the blocks and writes the GGUF. Collective. */
static bb_status quantize_all(bb_run *r) {
    const bb_config *c = &r->cfg;
    bb_weights *w;
    BB_CALL(bb_dist_agree(r->dist, bb_run_weights(r, &w)));
    if (r->stats_stale) { /* GPTQ's Hessians must see the inputs the compressed model now produces */
        bb_event_begin("quant.recalib");
        bb_status rs = bb_run_recalibrate(r);
        bb_event_end("quant.recalib", 0, 0);
        BB_CALL(rs);
    }
    /* lowrank.enabled: the weights that store better as factors become Ŵ = 0 plus factors; the later layers'
     * Hessians then see the factored model */
    BB_CALL(bb_stage_factorize(r));
    if (r->stats_stale && r->lowrank_factored) {
        bb_event_begin("quant.recalib");
        bb_status rs = bb_run_recalibrate(r);
        bb_event_end("quant.recalib", 0, 0);
        BB_CALL(rs);
    }
    /* The healed model is Ŵ + A·B. lowrank.export = merge: the factors go into the weights, which are then
     * quantized as dense matrices (GGUF stores no sparsity); adapter: Ŵ is quantized with its mask (pruned
     * weights stay 0) and the factors are written beside it as a LoRA adapter. */
    bb_state *s = &r->state;
    int adapter = !strcmp(c->lowrank.export_, "adapter"), n_factors = 0;
    for (int i = 0; i < s->n_lin; i++) n_factors += s->lora && s->lora[i] != NULL;
    /* the factored weights' factors for checkpoints/quantized.h5 (rank 0 holds them all), before a merge */
    bb_lora **fac = NULL;
    if (r->lowrank_factored && r->dist->rank == 0) {
        BB_CALL(bb_calloc((void **)&fac, (size_t)s->n_lin, sizeof *fac, "factored weights"));
        for (int i = 0; i < s->n_lin; i++)
            if (r->factored[i] && s->lora[i]) BB_CALL(bb_lora_clone(s->lora[i], &fac[i]));
    }
    if (n_factors && !adapter) {
        /* merged: the weights hold them now, and the evaluation must not add them a second time */
        for (int i = 0; i < s->n_lin; i++) {
            if (bb_run_mine(r, i) && s->lora[i] && s->w[i]) bb_lora_merge(s->lora[i], s->w[i]);
            bb_lora_destroy(&s->lora[i]);
        }
        bb_weights_set_masks(w, NULL);
    }
    bb_quantized *q = NULL;
    /* rank 0 holds every weight's record after the waves: its boosts decide everywhere */
    if (s->bits && r->dist->size > 1) BB_CALL(bb_comm_bcast(r->comm, s->bits, sizeof *s->bits * (size_t)s->n_lin, 0));
    int boosted = 0;
    for (int i = 0; s->bits && i < s->n_lin; i++) boosted |= s->bits[i] > 0;
    part pt = {r->dist, r->comm, r->l0 * BB_LIN_COUNT, r->l1 * BB_LIN_COUNT, boosted ? s->bits : NULL};
    if (pt.i0 > pt.i1) pt.i0 = pt.i1;
    bb_event_begin("quant.model");
    bb_status st = w ? quantize_part(c, w, r->stats, &pt, &q) : BB_ERR_INTERNAL;
    bb_event_end("quant.model", 0, 0);
    BB_CALL(bb_dist_agree(r->dist, st));
    r->quant_bits = q->weights ? (double)q->bits / (double)q->weights : 0;
    bb_info("quant   %s, %lld linear weights in %.3f bits per weight (scales included), mostly %s", c->quant.method,
            (long long)q->weights, r->quant_bits, bb_ggml_type_name(q->dominant));
    if (r->eval_tokens) st = evaluate(r);
    for (int i = 0; st == BB_OK && r->dist->size > 1 && i < q->n_layers * BB_LIN_COUNT; i++) st = move_result(r, q, i);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK && c->output.gguf) {
        if (c->output.gguf_path[0])
            snprintf(r->gguf_path, sizeof r->gguf_path, "%s", c->output.gguf_path);
        else
            snprintf(r->gguf_path, sizeof r->gguf_path, "%s/model.gguf", c->run.dir);
        if (r->dist->rank == 0) {
            bb_export_opts eo;
            bb_export_opts_default(&eo);
            eo.tokenizer = c->model.tokenizer[0] ? c->model.tokenizer : NULL;
            bb_event_begin("export.gguf");
            st = bb_export_gguf(r->model, bb_run_current_model(r), q, &eo, r->gguf_path);
            bb_event_end("export.gguf", 0, 0);
            if (st == BB_OK) bb_info("export  %s", r->gguf_path);
            if (st == BB_OK && adapter && n_factors) st = export_adapter(r);
        }
        st = bb_dist_agree(r->dist, st);
    }
    if (st == BB_OK && c->checkpoint.enabled) {
        if (r->dist->rank == 0) {
            bb_event_begin("quant.checkpoint");
            st = write_quantized_checkpoint(r, q, fac);
            bb_event_end("quant.checkpoint", 0, 0);
        }
        st = bb_dist_agree(r->dist, st);
    }
    r->scale_tensors = q->scale_tensors;
    r->scale_loss[0] = q->scale_loss[0];
    r->scale_loss[1] = q->scale_loss[1];
    bb_quantized_destroy(&q);
    for (int i = 0; fac && i < s->n_lin; i++) bb_lora_destroy(&fac[i]);
    free(fac);
    return st;
}

bb_status bb_stage_quantize(bb_run *r) {
    /* rank 0 writes the GGUF (from the quantized blocks), the adapter and checkpoints/quantized.h5 (the factors):
     * the owners' bits and factors come to it here; the weights and masks stay on their owners */
    BB_CALL(bb_run_gather_factors(r));
    if (!strcmp(r->cfg.quant.method, "none")) {
        bb_info("quant   quant.method none: the weights keep their float type");
        return BB_OK;
    }
    return quantize_all(r);
}
