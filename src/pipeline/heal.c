/* heal.c — stages 3, 4 and 5 of each wave: healing, structural reinforcement
 * and density redistribution, on the linear weights this rank owns.
 *
 * heal          every weight the wave changed (pruned, or restored by a
 *               rollback) gets low-rank factors A·B fitted in the data metric
 *               (compress/heal.h: the closed form, then E_k Adam steps at
 *               lr_k, the seed's tapering schedule), so that the model the
 *               wave leaves computes with Ŵ + A·B. The factors stay separate
 *               from the sparse Ŵ: they are checkpointed as such, merged into
 *               the weights only for the forward passes and at export
 *               (lowrank.export = merge) or written as a GGUF LoRA adapter.
 * reinforce     a weight whose output error after healing, tr(E' H E'^T) /
 *               tr(W H W^T), exceeds stress.delta, or whose gradient norm
 *               2 ||E' H||_F exceeds stress.gamma times the mean, is stressed:
 *               it asks for stress.boost_bits more bits, which the bit budget
 *               grants at quantization by demoting the lowest-usage blocks
 *               (compress/stress.h).
 * redistribute  RigL (compress/rigl.h): up to rigl.fraction of the kept
 *               weights move to the pruned positions with the largest
 *               reconstruction-loss gradient, density unchanged.
 * The Gram H is the one the wave's decay used (the inputs before this wave's
 * pruning). Every rank works on its own weights; the sums printed are exact
 * integer or order-fixed reductions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/bundles.h"
#include "compress/heal.h"
#include "compress/heal_block.h"
#include "compress/rigl.h"
#include "compress/stress.h"
#include "compress/usage.h"
#include "core/events.h"
#include "core/log.h"
#include "core/reduce.h"
#include "pipeline/stages.h"

/* The dense weight, H (f32) and the channel norms of linear weight i. w is r->dense[i] when kept there; H
 * is held on the default backend (backend.h) while the stage works on the weight: every product with it
 * (the loss, the fit, the gradients, the stress signals) then reads one device copy. */
typedef struct {
    float *w_own, *h_own, *xnorm;
    const float *w, *h;
    const bb_linalg_backend *be; /* holding h, NULL = not held */
} lin_data;

static void lin_free(lin_data *d) {
    if (d->be) bb_linalg_release(d->be, d->h);
    free(d->w_own);
    free(d->h_own);
    free(d->xnorm);
    memset(d, 0, sizeof *d);
}

/* Dense weight i, read from the model once and kept in r->dense while this rank's kept copies stay within
 * backend.dense_cache_mib (the dense weights never change: the copies serve every wave), else read into a
 * buffer of the caller's (*own). */
static bb_status dense_weight(bb_run *r, int i, const float **w, float **own) {
    const bb_tensor *t = r->state.t[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    size_t nb = sizeof(float) * (size_t)(rows * cols);
    *own = NULL;
    if (r->dense && r->dense[i]) {
        *w = r->dense[i];
        return BB_OK;
    }
    float *p = NULL;
    BB_CALL(bb_malloc((void **)&p, nb, "dense weight"));
    bb_status st = bb_tensor_read_f32(t, 0, rows, p);
    if (st != BB_OK) {
        free(p);
        return st;
    }
    *w = p;
    int keep = r->dense_bytes + (int64_t)nb <= r->cfg.backend.dense_cache_mib * 1048576;
    if (keep && !r->dense && bb_calloc((void **)&r->dense, (size_t)r->state.n_lin, sizeof *r->dense, "dense copies")) {
        bb_clear_error(); /* no table: the copy is the caller's, as beyond the limit */
        keep = 0;
    }
    if (keep) {
        r->dense[i] = p;
        r->dense_bytes += (int64_t)nb;
    } else {
        *own = p;
    }
    return BB_OK;
}

static bb_status lin_load(bb_run *r, int i, lin_data *d) {
    memset(d, 0, sizeof *d);
    const bb_tensor *t = r->state.t[i];
    int64_t cols = bb_tensor_cols(t);
    const bb_calib_stat *s;
    BB_CHECK(r->stats, BB_ERR_INTERNAL, "healing %s: no calibration statistics", t->name);
    BB_CALL(bb_calib_stats(r->stats, i / BB_LIN_COUNT, (bb_linear_kind)(i % BB_LIN_COUNT), &s));
    BB_CHECK(s->in_features == cols, BB_ERR_INTERNAL, "%s: statistics %lld wide for %lld columns", t->name,
             (long long)s->in_features, (long long)cols);
    bb_status st = dense_weight(r, i, &d->w, &d->w_own);
    if (st == BB_OK) st = bb_malloc((void **)&d->xnorm, sizeof(float) * (size_t)cols, "channel norms");
    for (int64_t j = 0; st == BB_OK && j < cols; j++) d->xnorm[j] = (float)s->norm[j];
    if (st == BB_OK && s->gram) d->h = s->gram;
    else if (st == BB_OK) {
        st = bb_malloc((void **)&d->h_own, sizeof(float) * (size_t)(cols * cols), "H as f32");
        for (int64_t e = 0; st == BB_OK && e < cols * cols; e++) d->h_own[e] = (float)s->gram_f64[e];
        d->h = d->h_own;
    }
    const bb_linalg_backend *be = NULL;
    if (st == BB_OK) st = bb_linalg_backend_default_get(&be);
    if (st == BB_OK) st = bb_linalg_hold(be, d->h, cols, cols, cols);
    if (st == BB_OK) d->be = be;
    if (st != BB_OK) lin_free(d);
    return st;
}

static bb_status sum_over_ranks(bb_run *r, double *v, int n) {
    /* one value per rank in rank order, added in that order on every rank: the same bits everywhere */
    const bb_dist *d = r->dist;
    if (d->size == 1) return BB_OK;
    double *all = NULL;
    size_t *offsets = NULL;
    BB_CALL(bb_malloc((void **)&offsets, sizeof *offsets * (size_t)(d->size + 1), "reduction"));
    bb_status st = bb_comm_allgatherv(r->comm, v, sizeof *v * (size_t)n, (void **)&all, offsets);
    for (int j = 0; st == BB_OK && j < n; j++) {
        v[j] = 0;
        for (int q = 0; q < d->size; q++) v[j] += all[q * n + j];
    }
    free(all);
    free(offsets);
    return st;
}

/* Every owner's healing curves to rank 0 (which writes metrics.json), in weight order. */
static bb_status gather_curves(bb_run *r, int k, double **curves, int *lens) {
    const bb_dist *d = r->dist;
    for (int i = 0; i < r->state.n_lin; i++) {
        int owner = bb_run_owner(r, i), n = lens[i];
        if (d->size > 1 && owner > 0 && (d->rank == 0 || d->rank == owner)) {
            int rc = d->rank == owner ? MPI_Send(&n, 1, MPI_INT, 0, 4545, d->comm)
                                      : MPI_Recv(&n, 1, MPI_INT, owner, 4545, d->comm, MPI_STATUS_IGNORE);
            BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "moving a healing curve failed");
            if (d->rank == 0 && n > 0) {
                free(curves[i]);
                BB_CALL(bb_malloc((void **)&curves[i], sizeof(double) * (size_t)n, "healing curve"));
            }
            if (n > 0) {
                rc = d->rank == owner ? MPI_Send(curves[i], n, MPI_DOUBLE, 0, 4546, d->comm)
                                      : MPI_Recv(curves[i], n, MPI_DOUBLE, owner, 4546, d->comm, MPI_STATUS_IGNORE);
                BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "moving a healing curve failed");
            }
        }
        if (d->rank == 0 && n > 0) {
            float *f = NULL;
            BB_CALL(bb_malloc((void **)&f, sizeof(float) * (size_t)n, "healing curve"));
            for (int j = 0; j < n; j++) f[j] = (float)curves[i][j];
            bb_status st = bb_run_add_curve(r, k, r->state.t[i]->name, f, n);
            free(f);
            BB_CALL(st);
        }
    }
    return BB_OK;
}

static bb_status heal_one(bb_run *r, int i, int k, const bb_heal_adam_opts *ao0, int rank, int closed_form,
                          double *sums, double **curve, int *len) {
    bb_state *s = &r->state;
    const bb_tensor *t = s->t[i];
    int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
    lin_data ld;
    bb_event_begin("heal.load");
    bb_status st = lin_load(r, i, &ld);
    bb_event_end("heal.load", 0, 0);
    BB_CALL(st);
    int fresh = !s->lora[i] || s->lora[i]->rank != rank;
    if (fresh) {
        bb_lora_destroy(&s->lora[i]);
        st = bb_lora_create(rows, cols, rank, &s->lora[i]);
    }
    double before = 0, after = 0;
    if (st == BB_OK) st = bb_heal_loss(t->name, ld.w, s->w[i], NULL, rows, cols, ld.h, &before);
    if (st == BB_OK && closed_form) {
        bb_heal_fit_opts fo;
        bb_heal_fit_opts_default(&fo);
        fo.seed = (uint64_t)r->cfg.run.seed;
        bb_event_begin("heal.closed_form");
        st = bb_heal_closed_form(&fo, t->name, ld.w, s->w[i], ld.h, s->lora[i], NULL);
        bb_event_end("heal.closed_form", 0, 0);
    } else if (st == BB_OK && fresh) {
        bb_heal_lora_init(s->lora[i], (uint64_t)r->cfg.run.seed, (uint64_t)i);
    }
    bb_heal_adam_opts ao = *ao0;
    ao.mask = s->masks[i];
    if (st == BB_OK && ao.steps > 0) {
        st = bb_malloc((void **)curve, sizeof(double) * (size_t)(ao.steps + 1), "healing curve");
        bb_heal_adam_stats as;
        bb_event_begin("heal.adam");
        if (st == BB_OK) st = bb_heal_adam(&ao, t->name, ld.w, s->w[i], ld.h, s->lora[i], *curve, &as);
        bb_event_end("heal.adam", 0, 0);
        if (st == BB_OK) *len = ao.steps + 1;
    }
    if (st == BB_OK) st = bb_heal_loss(t->name, ld.w, s->w[i], s->lora[i], rows, cols, ld.h, &after);
    sums[0] += before;
    sums[1] += after;
    sums[2] += 1;
    lin_free(&ld);
    (void)k;
    return st;
}

static bb_status move_floats(float *p, int64_t n, int peer, int send, MPI_Comm comm) {
    while (n > 0) {
        int m = n > (1 << 30) ? (1 << 30) : (int)n;
        int rc = send ? MPI_Send(p, m, MPI_FLOAT, peer, 4747, comm)
                      : MPI_Recv(p, m, MPI_FLOAT, peer, 4747, comm, MPI_STATUS_IGNORE);
        BB_CHECK(rc == MPI_SUCCESS, BB_ERR_MPI, "moving the healing stream %s rank %d failed", send ? "to" : "from",
                 peer);
        p += m;
        n -= m;
    }
    return BB_OK;
}

/* Block healing (heal.level block or both): the calibration windows' stream
 * runs through the compressed model block by block — rank 0 embeds, each rank
 * heals its blocks in order against the dense block's outputs on the same
 * inputs (compress/heal_block.h) and hands the stream, advanced through its
 * healed blocks, to the rank owning the next block. Blocks none of whose
 * linears the wave changed are only advanced. Collective. */
static bb_status heal_blocks(bb_run *r, int k, int ks, double *loss_sum) {
    const bb_config *c = &r->cfg;
    const bb_dist *d = r->dist;
    bb_state *s = &r->state;
    int L = s->n_layers, steps = 0;
    double lr = 0;
    bb_heal_schedule((int)c->heal.block_steps, c->heal.block_lr, c->heal.taper, ks, (int)c->waves.count, &steps, &lr);
    if (steps <= 0) return BB_OK;
    bb_tokens windows = {0};
    const bb_tokens *stream = NULL;
    bb_status st = bb_run_calib_windows(r, &windows, &stream);
    BB_CALL(bb_dist_agree(d, st));
    int S = stream->n_seq, T = stream->seq_len, dim = r->model->cfg.dim;
    int64_t n = (int64_t)S * T * dim;
    unsigned *linears = NULL;
    float *x = NULL;
    double *curves = NULL;
    int has = r->l0 < r->l1, first = bb_plan_owner(&r->plan, 0);
    st = bb_calloc((void **)&linears, (size_t)L, sizeof *linears, "healed linears");
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        if (r->changed[i]) linears[i / BB_LIN_COUNT] |= 1u << (i % BB_LIN_COUNT);
    if (st == BB_OK && (d->rank == 0 || has)) st = bb_malloc((void **)&x, sizeof(float) * (size_t)n, "healing stream");
    if (st == BB_OK && has)
        st = bb_calloc((void **)&curves, (size_t)(r->l1 - r->l0) * (size_t)(steps + 1), sizeof *curves, "block curves");
    st = bb_dist_agree(d, st);
    bb_heal_block_opts o;
    bb_heal_block_opts_default(&o);
    o.steps = steps;
    o.lr = lr;
    o.micro_batch = (int)(c->calib.micro_batch < S ? c->calib.micro_batch : S);
    o.rank = (int)c->heal.rank;
    o.train_weights = c->heal.train_weights;
    o.seed = (uint64_t)c->run.seed + (uint64_t)k;
    /* the chain: embedding on rank 0, then each rank's blocks in order */
    if (st == BB_OK && d->rank == 0) st = bb_heal_block_embed(r->model, stream, x);
    if (st == BB_OK && d->rank == 0 && first != 0) st = move_floats(x, n, first, 1, d->comm);
    if (st == BB_OK && has) {
        if (d->rank != first) st = move_floats(x, n, r->l0 > 0 ? bb_plan_owner(&r->plan, r->l0 - 1) : 0, 0, d->comm);
        if (st == BB_OK)
            st = bb_heal_block_range(r->model, s->w, (const bb_mask *const *)s->masks, s->lora, linears, x, S, T, r->l0,
                                     r->l1, &o, curves);
        if (st == BB_OK && r->l1 < L) st = move_floats(x, n, bb_plan_owner(&r->plan, r->l1), 1, d->comm);
    }
    /* a failure mid-chain leaves the later ranks waiting on a receive: MPI_Abort through main is the way out,
     * as with any failed MPI exchange */
    st = bb_dist_agree(d, st);
    /* the curves to rank 0, one per healed block */
    for (int l = 0; st == BB_OK && l < L; l++) {
        if (!linears[l]) continue;
        int owner = bb_plan_owner(&r->plan, l);
        double *lc = NULL, *buf = NULL;
        if (d->rank == owner) lc = curves + (int64_t)(l - r->l0) * (steps + 1);
        if (owner != 0 && d->size > 1) {
            if (d->rank == owner) st = MPI_Send(lc, steps + 1, MPI_DOUBLE, 0, 4848, d->comm) == MPI_SUCCESS ? BB_OK : BB_ERR_MPI;
            if (d->rank == 0) {
                st = bb_malloc((void **)&buf, sizeof(double) * (size_t)(steps + 1), "block curve");
                if (st == BB_OK && MPI_Recv(buf, steps + 1, MPI_DOUBLE, owner, 4848, d->comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                    st = BB_ERR_MPI;
                lc = buf;
            }
        }
        if (st == BB_OK && d->rank == 0) {
            float *f = NULL;
            st = bb_malloc((void **)&f, sizeof(float) * (size_t)(steps + 1), "block curve");
            for (int j = 0; st == BB_OK && j <= steps; j++) f[j] = (float)lc[j];
            char name[32];
            snprintf(name, sizeof name, "blk.%d", l);
            if (st == BB_OK) st = bb_run_add_curve(r, k, name, f, steps + 1);
            free(f);
            loss_sum[0] += lc[0];
            loss_sum[1] += lc[steps];
        }
        free(buf);
    }
    free(linears);
    free(x);
    free(curves);
    bb_tokens_free(&windows);
    BB_CALL(bb_dist_agree(d, st));
    BB_CALL(bb_comm_bcast(r->comm, loss_sum, sizeof(double) * 2, 0));
    bb_info("heal    wave %d: block healing of the changed blocks, %d Adam steps at lr %.3g: block output error "
            "%.4g -> %.4g (summed over blocks)",
            k, steps, lr, loss_sum[0], loss_sum[1]);
    return BB_OK;
}

bb_status bb_wave_heal(bb_run *r, int k) {
    const bb_config *c = &r->cfg;
    if (!c->heal.enabled) return BB_OK;
    bb_heal_adam_opts ao;
    int rank = 0, closed_form = 0;
    /* a rollback may run past waves.count: its healing takes the last wave's schedule */
    int ks = k < (int)c->waves.count ? k : (int)c->waves.count;
    BB_CALL(bb_dist_agree(r->dist, bb_heal_opts_from_config(c, ks, &ao, &rank, &closed_form)));
    bb_state *s = &r->state;
    double sums[3] = {0, 0, 0}; /* loss before, after, weights healed */
    double **curves = NULL;
    int *lens = NULL;
    int layer = strcmp(c->heal.level, "block") != 0, block = strcmp(c->heal.level, "layer") != 0;
    /* which weights the wave changed, everywhere (each rank marked its own) */
    int64_t *flags = NULL;
    bb_status st = bb_dist_agree(r->dist, bb_calloc((void **)&flags, (size_t)s->n_lin, sizeof *flags, "changed weights"));
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) flags[i] = r->changed[i];
    if (st == BB_OK) st = bb_comm_allreduce_i64(r->comm, flags, s->n_lin, BB_COMM_MAX);
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) r->changed[i] = (uint8_t)flags[i];
    free(flags);
    BB_CALL(st);
    st = bb_calloc((void **)&curves, (size_t)s->n_lin, sizeof *curves, "healing curves");
    if (st == BB_OK) st = bb_calloc((void **)&lens, (size_t)s->n_lin, sizeof *lens, "healing curves");
    /* scaffold mode: the factors are the wave's scaffold (waves.c); Adam starts from it, at its rank */
    int sc = c->scaffold.enabled;
    for (int i = 0; st == BB_OK && i < s->n_lin; i++)
        if (layer && bb_run_mine(r, i) && r->changed[i])
            st = heal_one(r, i, k, &ao, sc && s->lora[i] ? s->lora[i]->rank : rank, sc ? 0 : closed_form, sums,
                          &curves[i], &lens[i]);
    st = bb_dist_agree(r->dist, st);
    if (st == BB_OK) st = sum_over_ranks(r, sums, 3);
    if (st == BB_OK) st = bb_dist_agree(r->dist, gather_curves(r, k, curves, lens));
    for (int i = 0; curves && i < s->n_lin; i++) free(curves[i]);
    free(curves);
    free(lens);
    BB_CALL(st);
    if (sums[2] > 0) {
        r->stats_stale = 1; /* the model now computes with the factors */
        bb_info("heal    wave %d: %d weights, rank %d, %s%d Adam steps at lr %.3g: reconstruction loss %.4g -> %.4g "
                "(%.1f %%)",
                k, (int)sums[2], sc ? k : rank, sc ? "from the scaffold, " : closed_form ? "closed form + " : "", ao.steps, ao.lr, sums[0], sums[1],
                sums[0] > 0 ? 100 * sums[1] / sums[0] : 0.0);
    }
    double bl[2] = {0, 0};
    int any = 0;
    for (int i = 0; i < s->n_lin; i++) any |= r->changed[i];
    if (block && any) {
        BB_CALL(heal_blocks(r, k, ks, bl));
        r->stats_stale = 1;
    }
    return BB_OK;
}

bb_status bb_wave_redistribute(bb_run *r, int k) {
    const bb_config *c = &r->cfg;
    if (!c->rigl.enabled || c->rigl.fraction <= 0) return BB_OK;
    bb_rigl_opts ro;
    bb_rigl_opts_from_config(c, &ro);
    ro.threads = r->threads;
    bb_state *s = &r->state;
    double sums[3] = {0, 0, 0}; /* swapped, loss before, after */
    bb_status st = BB_OK;
    for (int i = 0; st == BB_OK && i < s->n_lin; i++) {
        if (!bb_run_mine(r, i) || bb_mask_count(s->masks[i]) == bb_tensor_rows(s->t[i]) * bb_tensor_cols(s->t[i]))
            continue; /* nothing pruned: nothing to regrow */
        lin_data ld;
        bb_event_begin("rigl.load");
        st = lin_load(r, i, &ld);
        bb_event_end("rigl.load", 0, 0);
        bb_rigl_stats rs;
        const bb_tensor *t = s->t[i];
        bb_event_begin("rigl.step");
        if (st == BB_OK)
            st = bb_rigl_step(&ro, t->name, bb_tensor_rows(t), bb_tensor_cols(t), ld.w, s->w[i], s->lora[i], ld.h,
                              ld.xnorm, s->masks[i], &rs);
        if (st == BB_OK) {
            sums[0] += (double)rs.swapped;
            sums[1] += rs.loss_before;
            sums[2] += rs.loss_after;
            if (rs.swapped) r->changed[i] = 1;
        }
        bb_event_end("rigl.step", 0, 0);
        lin_free(&ld);
    }
    BB_CALL(bb_dist_agree(r->dist, st));
    BB_CALL(sum_over_ranks(r, sums, 3));
    if (sums[0] > 0) {
        r->stats_stale = 1;
        bb_info("rigl    wave %d: %lld weights regrown and as many dropped; reconstruction loss %.4g -> %.4g", k,
                (long long)sums[0], sums[1], sums[2]);
    }
    return BB_OK;
}

/* The stress signals' sums over a weight: 0.5 (W - Ŵ_eff) . G and ||G||² (core/reduce.h). */
typedef struct {
    const float *w, *eff, *g;
} stress_sums;

static void stress_terms(const void *ctx, int64_t i0, int64_t i1, double *acc) {
    const stress_sums *c = ctx;
    double err = 0, gn = 0;
    for (int64_t e = i0; e < i1; e++) {
        err += 0.5 * ((double)c->w[e] - c->eff[e]) * c->g[e];
        gn += (double)c->g[e] * c->g[e];
    }
    acc[0] += err;
    acc[1] += gn;
}

bb_status bb_wave_reinforce(bb_run *r, int k) {
    const bb_config *c = &r->cfg;
    if (!c->stress.enabled) return BB_OK;
    bb_stress_opts so;
    bb_stress_opts_from_config(c, &so);
    bb_state *s = &r->state;
    int n = s->n_lin;
    double *rise = NULL, *gnorm = NULL;
    uint8_t *stressed = NULL;
    bb_status st = bb_calloc((void **)&rise, (size_t)n * 2, sizeof *rise, "stress signals");
    if (st == BB_OK) gnorm = rise + n;
    if (st == BB_OK) st = bb_calloc((void **)&stressed, (size_t)n, 1, "stress flags");
    for (int i = 0; st == BB_OK && i < n; i++) {
        if (!bb_run_mine(r, i)) continue;
        const bb_tensor *t = s->t[i];
        int64_t rows = bb_tensor_rows(t), cols = bb_tensor_cols(t);
        lin_data ld;
        bb_event_begin("stress.load");
        st = lin_load(r, i, &ld);
        bb_event_end("stress.load", 0, 0);
        bb_event_begin("stress.signals");
        /* E' = W - (Ŵ + AB); G = 2 E' H (one gemm): the error tr(E' H E'^T) = <E', G> / 2 and the gradient
         * norm ||dL/dŴ||_F = ||G||_F; the output energy tr(W H W^T) is the same with Ŵ = 0 */
        float *eff = NULL, *g = NULL;
        size_t nb = sizeof(float) * (size_t)(rows * cols);
        double err = 0, energy = 0, gn = 0;
        if (st == BB_OK) st = bb_malloc((void **)&eff, nb, "effective weight");
        if (st == BB_OK) st = bb_malloc((void **)&g, nb, "gradient");
        if (st == BB_OK) {
            bb_sub_f32(eff, s->w[i], NULL, rows * cols);
            if (s->lora[i]) bb_lora_merge(s->lora[i], eff);
            st = bb_usage_grad(t->name, NULL, rows, cols, ld.w, eff, ld.h, g);
        }
        if (st == BB_OK) { /* over the rank's threads, the same bits for any count */
            double sums[2];
            bb_reduce_f64(&(stress_sums){ld.w, eff, g}, stress_terms, rows * cols, 2, sums);
            err = sums[0];
            gn = sums[1];
        }
        if (st == BB_OK) {
            memset(eff, 0, nb);
            st = bb_usage_grad(t->name, NULL, rows, cols, ld.w, eff, ld.h, g);
        }
        if (st == BB_OK) energy = 0.5 * bb_dot_f64(ld.w, g, rows * cols);
        free(eff);
        free(g);
        rise[i] = energy > 0 ? err / energy : 0;
        gnorm[i] = sqrt(gn);
        bb_event_end("stress.signals", 0, 0);
        lin_free(&ld);
    }
    st = bb_dist_agree(r->dist, st);
    /* every weight's signals everywhere, copied from its owner (exact) */
    uint8_t *mine = NULL;
    if (st == BB_OK) st = bb_dist_agree(r->dist, bb_calloc((void **)&mine, (size_t)n, 1, "weight owners"));
    for (int i = 0; st == BB_OK && i < n; i++) mine[i] = (uint8_t)bb_run_mine(r, i);
    if (st == BB_OK) st = bb_comm_share_owned(r->comm, rise, mine, n, 1);
    if (st == BB_OK) st = bb_comm_share_owned(r->comm, gnorm, mine, n, 1);
    free(mine);
    int64_t count = st == BB_OK ? bb_stress_detect(&so, n, rise, gnorm, stressed) : 0;
    int bundle = -1;
    if (st == BB_OK && count && c->bundles.enabled) {
        /* Biophase density management: the weights fall into bundles.count synergy bundles by k-means on
         * (output error, gradient norm, depth); the wave stresses the members of one bundle only (phased).
         * The clustering is redone each wave from that wave's signals, so it needs no state (--resume). */
        double *feat = NULL;
        int *label = NULL;
        st = bb_calloc((void **)&feat, (size_t)n * 3, sizeof *feat, "bundle features");
        if (st == BB_OK) st = bb_calloc((void **)&label, (size_t)n, sizeof *label, "bundle labels");
        for (int i = 0; st == BB_OK && i < n; i++) {
            feat[3 * i] = rise[i];
            feat[3 * i + 1] = gnorm[i];
            feat[3 * i + 2] = (double)(i / BB_LIN_COUNT) / (double)s->n_layers;
        }
        int M = (int)c->bundles.count < n ? (int)c->bundles.count : n;
        if (st == BB_OK) st = bb_bundles_kmeans(feat, n, 3, M, (uint64_t)c->run.seed, 100, 1, label, NULL, NULL);
        if (st == BB_OK) {
            bundle = bb_bundles_wave_bundle(k, M, c->bundles.phased);
            count = 0;
            for (int i = 0; i < n; i++) {
                if (!bb_bundles_active(label[i], k, M, c->bundles.phased)) stressed[i] = 0;
                count += stressed[i];
            }
        }
        free(feat);
        free(label);
    }
    int boosted = 0;
    for (int i = 0; st == BB_OK && i < n; i++) {
        if (!stressed[i]) continue;
        int want = s->bits[i] + so.boost_bits;
        if (want > so.max_bits) want = so.max_bits;
        if (want == s->bits[i]) continue;
        s->bits[i] = want; /* every rank the same: the signals are the same everywhere */
        boosted++;
        if (r->dist->rank == 0) {
            bb_boost *grown = realloc(r->boosts, sizeof *grown * (size_t)(r->n_boosts + 1));
            if (!grown) {
                st = bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: stress records");
                break;
            }
            r->boosts = grown;
            bb_boost *b = &r->boosts[r->n_boosts++];
            memset(b, 0, sizeof *b); /* the record's bytes go into checkpoints as they are */
            b->wave = k;
            snprintf(b->name, sizeof b->name, "%s", s->t[i]->name);
            b->bits = so.boost_bits;
        }
    }
    free(rise);
    free(stressed);
    BB_CALL(st);
    if (bundle >= 0) bb_info("bundles wave %d: bundle %d of %lld is the one stressed", k, bundle, (long long)c->bundles.count);
    if (count)
        bb_info("stress  wave %d: %lld of %d weights stressed (output error > %g or gradient > %g x mean); %d "
                "boosted by %d bits (granted at quantization within the budget)",
                k, (long long)count, n, so.delta, so.gamma, boosted, so.boost_bits);
    return BB_OK;
}
