/* factorize.c — low-rank factorization as compression (lowrank.enabled), at the start of stage 6.
 *
 * Per linear weight the effective weight W = Ŵ + A·B (the waves' result) is compared in the layer loss
 * tr(E H Eᵀ) of its calibration Gram H with two ways of storing it:
 *   dense      quantized by the run's quantizer (quant.method) at quant.type (q4_0 when quant.type is auto):
 *              error e_q, bits b_q (its GGUF blocks, scales included);
 *   factored   W ≈ A·B by the truncation-aware whitened SVD (compress/lowrank.h), f16 factors:
 *              the smallest rank r whose predicted error (the whitened spectrum's tail) is <= e_q and whose
 *              16·r·(rows + cols) bits fit lowrank.rank_budget · b_q.
 * A weight is factored only when such a rank exists (the spectrum decays fast enough) and the fitted factors,
 * measured with the undamped H, really are no worse than e_q: then the factored form is at least as accurate
 * with at most rank_budget of the bits, i.e. better in error per bit. Otherwise it stays dense. A factored
 * weight becomes Ŵ = 0 (all pruned) with the factors in the run's low-rank slots, so that the evaluation, the
 * checkpoint of stage 6 (checkpoints/quantized.h5, group "factors") and the export (lowrank.export: merge
 * quantizes A·B as a dense matrix; adapter stores the factors in lora.gguf and a zero base) treat them like
 * healing factors. Every rank factors its own weights; rank 0 then holds the whole state. Collective. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compress/heal.h"
#include "compress/lowrank.h"
#include "compress/quant.h"
#include "core/events.h"
#include "core/log.h"
#include "pipeline/stages.h"

/* H of linear weight i as f32: borrowed from the statistics, or converted into *own. */
static bb_status gram_f32(bb_run *r, int i, int64_t cols, const float **h, float **own) {
    const bb_calib_stat *s;
    *own = NULL;
    BB_CHECK(r->stats, BB_ERR_CONFIG,
             "lowrank.enabled needs calibration statistics (data.calib) to weigh factors against the quantized "
             "weight: none were collected");
    BB_CALL(bb_calib_stats(r->stats, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), &s));
    BB_CHECK(s->in_features == cols, BB_ERR_INTERNAL, "statistics %lld wide for %lld columns",
             (long long)s->in_features, (long long)cols);
    if (s->gram) {
        *h = s->gram;
        return BB_OK;
    }
    BB_CALL(bb_malloc((void **)own, sizeof(float) * (size_t)(cols * cols), "H as f32"));
    for (int64_t e = 0; e < cols * cols; e++) (*own)[e] = (float)s->gram_f64[e];
    *h = *own;
    return BB_OK;
}

/* run.log_level debug: the rank the error target needs (full whitened spectrum) against the budget's and the
 * break-even rank, so that a user sees how far a weight is from factoring. */
static bb_status debug_needed_rank(const bb_heal_fit_opts *fo, const bb_tensor *t, const float *w, const float *h,
                                   const bb_lowrank_target *tg) {
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t), mn = rows < cols ? rows : cols;
    float *s = NULL;
    double total;
    BB_CALL(bb_malloc((void **)&s, sizeof(float) * (size_t)mn, "spectrum"));
    bb_status st = bb_lowrank_spectrum(fo, t->name, rows, cols, w, h, (int)mn, s, &total);
    if (st == BB_OK)
        bb_debug("lowrank %s: the error target %.3g needs rank %d; the budget holds %lld, the break-even is %lld",
                 t->name, tg->rel_err, bb_lowrank_rank_for_error(s, (int)mn, total, tg->rel_err),
                 (long long)bb_lowrank_rank_for_bits(rows, cols, tg->bits_per_value, tg->budget_bits),
                 (long long)bb_lowrank_breakeven_rank(rows, cols));
    free(s);
    return st;
}

/* sums: [0] weights factored, [1] quantized-dense bits of those, [2] their factor bits (f16),
 * [3] weights considered */
static bb_status factor_one(bb_run *r, int i, const bb_quantizer *qz, const bb_quant_opts *qo, double *sums) {
    bb_state *s = &r->state;
    const bb_config *c = &r->cfg;
    const bb_tensor *t = s->t[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    size_t nw = sizeof(float) * (size_t)(rows * cols);
    float *weff = NULL, *hown = NULL;
    const float *h = NULL;
    bb_quant_result *qr = NULL;
    bb_lora *lora = NULL;
    bb_status st = bb_malloc((void **)&weff, nw, "effective weight");
    if (st == BB_OK) st = gram_f32(r, i, cols, &h, &hown);
    if (st != BB_OK) goto out;
    memcpy(weff, s->w[i], nw);
    if (s->lora[i]) bb_lora_merge(s->lora[i], weff);
    bb_quant_input in = {.name = t->name, .rows = rows, .cols = cols, .w = weff, .h = h};
    double energy = 0, eq = 0, ef = 0;
    BB_CALL_GOTO(st, out, bb_heal_loss(t->name, weff, NULL, NULL, rows, cols, h, &energy));
    sums[3] += 1;
    if (!(energy > 0)) goto out; /* a weight the data never reaches: nothing to gain */
    BB_CALL_GOTO(st, out, qz->apply(qo, &in, &qr));
    BB_CALL_GOTO(st, out, bb_heal_loss(t->name, weff, qr->w_hat, NULL, rows, cols, h, &eq));
    int64_t bits_q = rows * (int64_t)qr->row_bytes * 8;
    bb_heal_fit_opts fo;
    bb_heal_fit_opts_default(&fo);
    fo.seed = (uint64_t)c->run.seed;
    bb_lowrank_target tg = {.rel_err = eq / energy,
                            .budget_bits = (int64_t)floor(c->lowrank.rank_budget * (double)bits_q),
                            .bits_per_value = 16};
    bb_lowrank_plan plan;
    if (!(tg.rel_err > 0)) goto out; /* the quantizer is exact here: no factorization can beat it */
    BB_CALL_GOTO(st, out, bb_lowrank_plan_rank(&fo, t->name, rows, cols, weff, h, &tg, &plan));
    if (plan.rank < 1 || !plan.saves) {
        if (bb_log_get_level() >= BB_LOG_DEBUG) BB_CALL_GOTO(st, out, debug_needed_rank(&fo, t, weff, h, &tg));
        bb_debug("lowrank %s stays dense: %s (%s error %.3g at %lld bits)", t->name, plan.reason,
                 bb_ggml_type_name(qr->type), tg.rel_err, (long long)bits_q);
        goto out;
    }
    BB_CALL_GOTO(st, out, bb_lora_create(rows, cols, plan.rank, &lora));
    BB_CALL_GOTO(st, out, bb_lowrank_factor(&fo, t->name, weff, h, lora, NULL));
    BB_CALL_GOTO(st, out, bb_heal_loss(t->name, weff, NULL, lora, rows, cols, h, &ef));
    if (ef > eq) { /* the fit is optimal for the damped H; on the undamped one it can miss by a little */
        bb_debug("lowrank %s stays dense: rank %d reaches error %.4g, above %s's %.4g", t->name, plan.rank,
                 ef / energy, bb_ggml_type_name(qr->type), tg.rel_err);
        goto out;
    }
    bb_info("lowrank %s factored at rank %d: error %.4g (%s dense: %.4g), %lld bits instead of %lld (%.1f %%)", t->name,
            plan.rank, ef / energy, bb_ggml_type_name(qr->type), tg.rel_err, (long long)(16 * bb_lora_numel(lora)),
            (long long)bits_q, 100.0 * 16 * (double)bb_lora_numel(lora) / (double)bits_q);
    sums[0] += 1;
    sums[1] += (double)bits_q;
    sums[2] += 16.0 * (double)bb_lora_numel(lora);
    bb_lora_destroy(&s->lora[i]);
    s->lora[i] = lora;
    lora = NULL;
    memset(s->w[i], 0, nw);
    for (int64_t a = 0; a < rows; a++)
        for (int64_t b = 0; b < cols; b++) bb_mask_set(s->masks[i], a, b, 0);
    r->factored[i] = 1;
out:
    free(weff);
    free(hown);
    bb_quant_result_destroy(&qr);
    bb_lora_destroy(&lora);
    return st;
}

bb_status bb_stage_factorize(bb_run *r) {
    const bb_config *c = &r->cfg;
    bb_state *s = &r->state;
    if (!c->lowrank.enabled || !s->n_lin) return BB_OK;
    const bb_quantizer *qz;
    bb_quant_opts qo;
    bb_quant_opts_default(&qo);
    bb_status st = bb_quant_get(c->quant.method, &qz);
    if (st == BB_OK) st = bb_quant_opts_from_config(&c->quant, &qo);
    qo.threads = (int)c->backend.threads;
    if (st == BB_OK && !r->factored) st = bb_calloc((void **)&r->factored, (size_t)s->n_lin, 1, "factored weights");
    BB_CALL(bb_dist_agree(r->dist, st));
    double sums[4] = {0, 0, 0, 0};
    bb_event_begin("quant.factorize");
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        if (bb_run_mine(r, i) && s->w[i]) st = factor_one(r, i, qz, &qo, sums);
    bb_event_end("quant.factorize", 0, 0);
    BB_CALL(bb_dist_agree(r->dist, st));
    if (r->dist->size > 1) {
        BB_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, 4, MPI_DOUBLE, MPI_SUM, r->dist->comm) == MPI_SUCCESS, BB_ERR_MPI,
                 "summing the factorization figures failed");
        BB_CHECK(MPI_Allreduce(MPI_IN_PLACE, r->factored, s->n_lin, MPI_UNSIGNED_CHAR, MPI_MAX, r->dist->comm) ==
                     MPI_SUCCESS,
                 BB_ERR_MPI, "gathering the factored weights failed");
    }
    r->lowrank_factored = (int64_t)sums[0];
    r->lowrank_bits[0] = sums[1];
    r->lowrank_bits[1] = sums[2];
    if (sums[0] > 0) {
        BB_CALL(bb_run_gather_factors(r)); /* rank 0 writes the checkpoint and the adapter */
        r->stats_stale = 1;
        if (strcmp(c->lowrank.export_, "adapter") != 0)
            bb_warn("lowrank.export merge: the %lld factored weights are merged back and quantized dense, so model.gguf "
                    "saves nothing and their quantization error adds to the factorization's; lowrank.export adapter "
                    "keeps them factored (lora.gguf)",
                    (long long)sums[0]);
    }
    bb_info("lowrank %lld of %lld weights factored (rank_budget %g, f16 factors): %.0f bits of factors instead of %.0f "
            "quantized dense%s",
            (long long)sums[0], (long long)sums[3], c->lowrank.rank_budget, sums[2], sums[1],
            sums[0] > 0 ? "" : " (no spectrum decays fast enough: every weight stays dense)");
    return BB_OK;
}
