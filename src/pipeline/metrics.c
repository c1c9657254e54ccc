/* metrics.c — RUN_DIR/metrics.json: every wave's evaluation and timing, and
 * every linear tensor's density, bits and low-rank rank per wave, for the run
 * report (docs/report.md has the schema). Rewritten after every wave. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/run.h"

static void num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static const char *const time_names[] = {"decay", "heal", "reinforce", "redistribute", "eval", "checkpoint"};

static void waves(FILE *f, const bb_state *s) {
    fputs("  \"waves\": [", f);
    for (int k = 0; k < s->n_metrics; k++) {
        const bb_wave_metrics *m = &s->metrics[k];
        fprintf(f, "%s\n    {\"wave\": %d, \"ppl\": ", k ? "," : "", m->wave);
        num(f, m->ppl);
        fputs(", \"dppl\": ", f);
        num(f, m->dppl);
        fputs(", \"kld\": ", f);
        num(f, m->kld);
        fputs(", \"top1\": ", f);
        num(f, m->top1);
        fputs(", \"sparsity\": ", f);
        num(f, m->sparsity);
        fputs(", \"bits\": ", f);
        num(f, m->bits);
        if (m->scaffold_tau > 0) {
            fputs(", \"scaffold_tau\": ", f);
            num(f, m->scaffold_tau);
        }
        fprintf(f, ", \"lora_values\": %lld, \"rolled_back\": %s, \"seconds\": {", (long long)m->lora_values,
                m->rolled_back ? "true" : "false");
        for (int t = 0; t < 6; t++) {
            fprintf(f, "%s\"%s\": ", t ? ", " : "", time_names[t]);
            num(f, m->seconds[t]);
        }
        fputs(", \"total\": ", f);
        num(f, m->seconds[BB_T_TOTAL]);
        fputs("}}", f);
    }
    fputs("\n  ],\n", f);
}

/* Per tensor, density/bits/rank per wave: the history keeps only the current
 * values here, so the arrays are filled from the per-wave records the run
 * keeps (r->tensor_hist), one entry per completed wave. */
static void tensors(FILE *f, const bb_run *r) {
    const bb_state *s = &r->state;
    fputs("  \"tensors\": [", f);
    for (int i = 0; i < s->n_lin; i++) {
        const bb_tensor *t = s->t[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        str(f, t->name);
        fprintf(f, ", \"layer\": %d, \"kind\": \"%s\", \"rows\": %lld, \"cols\": %lld", i / BB_LIN_COUNT,
                bb_linear_name((bb_linear_kind)(i % BB_LIN_COUNT)), (long long)bb_tensor_rows(t),
                (long long)bb_tensor_cols(t));
        const char *keys[3] = {"density", "bits", "lora_rank"};
        for (int q = 0; q < 3; q++) {
            fprintf(f, ", \"%s\": [", keys[q]);
            for (int k = 0; k < r->hist_waves; k++) {
                const float *row = r->tensor_hist + ((size_t)k * (size_t)s->n_lin + (size_t)i) * 3;
                if (k) fputs(", ", f);
                if (q == 0)
                    num(f, row[0]);
                else
                    fprintf(f, "%d", (int)row[q]);
            }
            fputc(']', f);
        }
        fputc('}', f);
    }
    fputs("\n  ],\n", f);
}

bb_status bb_run_record_tensors(bb_run *r) {
    const bb_state *s = &r->state;
    size_t n = (size_t)(r->hist_waves + 1) * (size_t)s->n_lin * 3;
    float *grown = realloc(r->tensor_hist, n * sizeof(float));
    bb_status st =
        grown ? BB_OK : bb_error(BB_ERR_OOM, __FILE__, __LINE__, "out of memory: per-tensor history (%zu values)", n);
    BB_CALL(bb_dist_agree(r->dist, st));
    r->tensor_hist = grown;
    float *row = grown + (size_t)r->hist_waves * (size_t)s->n_lin * 3;
    for (int i = 0; i < s->n_lin; i++) {
        if (!bb_run_mine(r, i)) { /* its owner's entry; the sum adds it to these zeros */
            row[3 * i + 0] = row[3 * i + 1] = row[3 * i + 2] = 0;
            continue;
        }
        row[3 * i + 0] = (float)bb_mask_density(s->masks[i]);
        row[3 * i + 1] = (float)s->bits[i];
        row[3 * i + 2] = s->lora[i] ? (float)s->lora[i]->rank : 0;
    }
    if (r->dist->size > 1)
        BB_CHECK(MPI_Allreduce(MPI_IN_PLACE, row, 3 * s->n_lin, MPI_FLOAT, MPI_SUM, r->dist->comm) == MPI_SUCCESS,
                 BB_ERR_MPI, "summing the per-tensor records failed");
    r->hist_waves++;
    return BB_OK;
}

bb_status bb_metrics_write(const bb_run *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    BB_CHECK(f, BB_ERR_OOM, "out of memory: cannot buffer metrics.json");
    const bb_state *s = &r->state;
    fprintf(f, "{\n  \"birdbone\": \"%s\",\n  \"run\": ", BB_VERSION);
    str(f, r->cfg.run.name);
    fprintf(f, ",\n  \"config_hash\": \"sha256:%s\",\n  \"model\": {\"path\": ", r->hash);
    str(f, r->model->path);
    fprintf(f, ", \"parameters\": %lld, \"n_layers\": %d},\n", (long long)bb_model_param_count(r->model),
            r->model->cfg.n_layers);
    fputs("  \"dense\": {\"ppl\": ", f);
    num(f, r->dense_ppl);
    fputs(", \"ppl_err\": ", f);
    num(f, r->dense_ppl_err);
    fputs("},\n", f);
    waves(f, s);
    tensors(f, r);
    fputs("  \"heal_curves\": [", f);
    for (int c = 0; c < r->n_curves; c++) {
        const bb_heal_curve *hc = &r->curves[c];
        fprintf(f, "%s\n    {\"wave\": %d, \"name\": ", c ? "," : "", hc->wave);
        str(f, hc->name);
        fputs(", \"loss\": [", f);
        for (int j = 0; j < hc->n; j++) {
            if (j) fputs(", ", f);
            num(f, hc->loss[j]);
        }
        fputs("]}", f);
    }
    fputs("\n  ],\n  \"stress\": [", f);
    for (int q = 0; q < r->n_boosts; q++)
        fprintf(f, "%s\n    {\"wave\": %d, \"name\": \"%s\", \"boost_bits\": %d}", q ? "," : "", r->boosts[q].wave,
                r->boosts[q].name, r->boosts[q].bits);
    fputs("\n  ],\n  \"stages\": [", f);
    const bb_stage *st;
    int n = bb_pipeline_stages(&st);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\n    {\"name\": \"%s\", \"seconds\": ", i ? "," : "", st[i].name);
        num(f, r->stage_seconds[i]);
        fputc('}', f);
    }
    fputs("\n  ],\n  \"final\": {\"bits_per_weight\": ", f);
    num(f, r->quant_bits);
    fputs(", \"sparsity\": ", f);
    num(f, r->sparsity);
    fputs(", \"ppl\": ", f);
    const bb_wave_metrics *last = s->n_metrics ? &s->metrics[s->n_metrics - 1] : NULL;
    num(f, r->quant_bits > 0 ? r->quant_ppl : last ? last->ppl : r->dense_ppl);
    fputs(", \"kld\": ", f);
    num(f, r->quant_bits > 0 ? r->quant_kld : last ? last->kld : NAN);
    fputs(", \"top1\": ", f);
    num(f, r->quant_bits > 0 ? r->quant_top1 : last ? last->top1 : NAN);
    fputs(", \"bytes\": ", f);
    num(f, r->out_bytes);
    fputs(", \"lowrank_factored\": ", f);
    num(f, (double)r->lowrank_factored);
    fputs(", \"lowrank_bits_dense\": ", f);
    num(f, r->lowrank_bits[0]);
    fputs(", \"lowrank_bits_factors\": ", f);
    num(f, r->lowrank_bits[1]);
    fputs(", \"scale_loss_before\": ", f);
    num(f, r->scale_tensors ? r->scale_loss[0] : NAN);
    fputs(", \"scale_loss_after\": ", f);
    num(f, r->scale_tensors ? r->scale_loss[1] : NAN);
    fputs(", \"gguf\": ", f);
    str(f, r->gguf_path);
    fputs("}\n}\n", f);
    fclose(f);
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.json", r->cfg.run.dir);
    bb_status st2 = bb_file_write_atomic(path, text, len);
    free(text);
    return st2;
}

bb_status bb_run_add_curve(bb_run *r, int wave, const char *name, const float *loss, int n) {
    bb_heal_curve *grown = realloc(r->curves, sizeof *grown * (size_t)(r->n_curves + 1));
    BB_CHECK(grown, BB_ERR_OOM, "out of memory: healing curves");
    r->curves = grown;
    bb_heal_curve *c = &r->curves[r->n_curves];
    memset(c, 0, sizeof *c);
    c->wave = wave;
    snprintf(c->name, sizeof c->name, "%s", name);
    if (n > 0) {
        BB_CALL(bb_malloc((void **)&c->loss, sizeof(float) * (size_t)n, "healing curve"));
        memcpy(c->loss, loss, sizeof(float) * (size_t)n);
    }
    c->n = n;
    r->n_curves++;
    return BB_OK;
}
