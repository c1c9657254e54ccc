/* bench_heal.c — one Adam healing step and the closed-form fit on one Llama-shaped layer.
 *
 * usage: bench_heal [--rows R] [--cols C] [--tokens T] [--ranks r1,r2,...] [--steps S] [--naive 0|1]
 * Default: the Llama-2-7B down projection, W (4096 rows = out, 11008 cols = in), ranks 8 and 64,
 * H = X^T X from T = 2048 correlated tokens (AR(1) across channels, rho 0.7, channel scales over one
 * decade), Ŵ = W with the 30 % smallest |w| of every row pruned. For each rank it prints
 *   closed form   seconds of bb_heal_closed_form (randomized SVD of E·L: Cholesky, E·H, E·L, sketch)
 *   G0            seconds of the one-off G0 = (W − Ŵ)·H
 *   Adam step     seconds per step (the step loop of S steps, timed inside bb_heal_adam) and GFLOP/s of
 *                 bb_heal_step_flops: 2·r·cols² + 4·rows·cols·r + 4·r²·(rows + cols)
 *   naive step    the reference measured in the same run (--naive 1, default): a step that forms
 *                 E' = W − Ŵ − A·B and E'·H explicitly (2·rows·cols² flops; this is the
 *                 train_weights path: one update with two E'H evaluations, halved), and the
 *                 ratio naive / G0-form.
 * and a line `RESULT key=value ...`. Threads: OpenBLAS's (OPENBLAS_NUM_THREADS).
 * Not a test: it takes a minute or more on a few cores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/heal.h"
#include "core/log.h"
#include "core/rng.h"

typedef struct {
    int64_t rows, cols, tokens;
    int ranks[8], n_ranks, steps, naive;
} bench_args;

static int by_value(const void *p, const void *q) {
    float a = *(const float *)p, b = *(const float *)q;
    return (a > b) - (a < b);
}

static bb_status make_inputs(const bench_args *a, float *w, float *w_hat, float *h, bb_mask *mask) {
    const bb_linalg_backend *cpu;
    BB_CALL(bb_linalg_backend_get("cpu", &cpu));
    float *x = NULL, *scale = NULL;
    BB_CALL(bb_malloc((void **)&x, sizeof(float) * (size_t)(a->tokens * a->cols), "bench activations (T, cols)"));
    bb_status st = bb_malloc((void **)&scale, sizeof(float) * (size_t)a->cols, "bench scales");
    if (st != BB_OK) {
        free(x);
        return st;
    }
    bb_rng r = bb_rng_make(11, bb_rng_stream_id("bench_heal"));
    bb_rng_fill_normal(bb_rng_split(r, 1), 0, (size_t)(a->rows * a->cols), w);
    for (int64_t k = 0; k < a->rows * a->cols; k++) w[k] *= 0.02f;
    bb_rng_fill_normal(bb_rng_split(r, 2), 0, (size_t)(a->tokens * a->cols), x);
    bb_rng_fill_uniform(bb_rng_split(r, 3), 0, (size_t)a->cols, -0.5f, 0.5f, scale);
    const float rho = 0.7f, c = sqrtf(1 - rho * rho);
    for (int64_t t = 0; t < a->tokens; t++) {
        float *xt = x + t * a->cols;
        for (int64_t j = 1; j < a->cols; j++) xt[j] = rho * xt[j - 1] + c * xt[j];
        for (int64_t j = 0; j < a->cols; j++) xt[j] *= powf(10.0f, scale[j]);
    }
    st = cpu->syrk(BB_UPLO_FULL, a->cols, a->tokens, 1.0f, x, a->cols, 0.0f, h, a->cols);
    free(x);
    free(scale);
    BB_CALL(st);
    /* 30 % smallest |w| per row: threshold from a sorted copy of the row */
    float *row = NULL;
    BB_CALL(bb_malloc((void **)&row, sizeof(float) * (size_t)a->cols, "bench row"));
    int64_t drop = (int64_t)(0.3 * (double)a->cols);
    for (int64_t i = 0; i < a->rows; i++) {
        for (int64_t j = 0; j < a->cols; j++) row[j] = fabsf(w[i * a->cols + j]);
        qsort(row, (size_t)a->cols, sizeof(float), by_value);
        float thr = row[drop];
        for (int64_t j = 0; j < a->cols; j++) bb_mask_set(mask, i, j, fabsf(w[i * a->cols + j]) >= thr);
    }
    free(row);
    memcpy(w_hat, w, sizeof(float) * (size_t)(a->rows * a->cols));
    bb_mask_apply(mask, w_hat);
    return BB_OK;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){4096, 11008, 2048, {8, 64}, 2, 5, 1};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows"))
            a->rows = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols"))
            a->cols = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--tokens"))
            a->tokens = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            a->steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--naive"))
            a->naive = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ranks")) {
            a->n_ranks = 0;
            for (char *s = argv[i + 1]; *s && a->n_ranks < 8;) {
                a->ranks[a->n_ranks++] = (int)strtol(s, &s, 10);
                if (*s == ',') s++;
            }
        } else {
            fprintf(stderr, "bench_heal: unknown option %s\n", argv[i]);
            return 1;
        }
    }
    if (a->rows < 1 || a->cols < 1 || a->tokens < 1 || a->steps < 1 || a->n_ranks < 1) {
        fprintf(stderr, "bench_heal: sizes, --steps and --ranks must be positive\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    bench_args a;
    if (parse_args(argc, argv, &a)) return 2;
    size_t nw = (size_t)(a.rows * a.cols);
    float *w = NULL, *w_hat = NULL, *h = NULL, *tmp = NULL;
    bb_mask *mask = NULL;
    bb_lora *l = NULL;
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, out, bb_malloc((void **)&w, sizeof(float) * nw, "W"));
    BB_CALL_GOTO(st, out, bb_malloc((void **)&w_hat, sizeof(float) * nw, "W hat"));
    BB_CALL_GOTO(st, out, bb_malloc((void **)&tmp, sizeof(float) * nw, "W hat copy"));
    BB_CALL_GOTO(st, out, bb_malloc((void **)&h, sizeof(float) * (size_t)(a.cols * a.cols), "H"));
    BB_CALL_GOTO(st, out, bb_mask_create(a.rows, a.cols, 1, &mask));
    BB_CALL_GOTO(st, out, make_inputs(&a, w, w_hat, h, mask));
    printf("layer %lld x %lld (rows = out, cols = in), H from %lld tokens, 30 %% pruned per row\n",
           (long long)a.rows, (long long)a.cols, (long long)a.tokens);
    for (int ri = 0; ri < a.n_ranks; ri++) {
        int r = a.ranks[ri];
        BB_CALL_GOTO(st, out, bb_lora_create(a.rows, a.cols, r, &l));
        bb_heal_fit_opts fo;
        bb_heal_fit_opts_default(&fo);
        bb_heal_fit_stats fs;
        BB_CALL_GOTO(st, out, bb_heal_closed_form(&fo, "bench", w, w_hat, h, l, &fs));
        printf("rank %3d  closed form      %8.3f s  loss %.6g -> %.6g (%.2f %%)\n", r, fs.seconds, fs.loss_before,
               fs.loss_after, 100 * fs.loss_after / fs.loss_before);
        /* G0 once, then the steps: the step loop is timed inside bb_heal_adam (steps updates and
         * steps + 1 loss evaluations; the last evaluation is a small part of a step) */
        bb_heal_adam_opts ao;
        bb_heal_adam_opts_default(&ao);
        bb_heal_adam_stats s1;
        ao.steps = a.steps;
        BB_CALL_GOTO(st, out, bb_heal_adam(&ao, "bench", w, w_hat, h, l, NULL, &s1));
        double step = s1.seconds_steps / a.steps;
        double gf = s1.flops_per_step / step * 1e-9;
        printf("rank %3d  G0 = (W - What) H %8.3f s\n", r, s1.seconds_setup);
        printf("rank %3d  Adam step        %8.4f s  %8.1f GFLOP/s (%.3g GFLOP per step)\n", r, step, gf,
               s1.flops_per_step * 1e-9);
        double naive = 0, ratio = 0;
        if (a.naive) {
            memcpy(tmp, w_hat, sizeof(float) * nw);
            bb_heal_adam_opts no = ao;
            no.steps = 1;
            no.train_weights = 1;
            no.mask = mask;
            bb_heal_adam_stats sn;
            BB_CALL_GOTO(st, out, bb_heal_adam(&no, "bench", w, tmp, h, l, NULL, &sn));
            naive = sn.seconds_steps / 2; /* one update and two E'H evaluations: about two step costs */
            ratio = naive / step;
            printf("rank %3d  naive step (E'H) %8.3f s  %8.1f GFLOP/s  -> G0 form %.1fx faster\n", r, naive,
                   sn.flops_per_step * 1e-9 / naive, ratio);
        }
        printf("RESULT rows=%lld cols=%lld rank=%d closed_form_s=%.4f g0_s=%.4f step_s=%.5f step_gflops=%.2f "
               "naive_step_s=%.4f ratio=%.2f\n",
               (long long)a.rows, (long long)a.cols, r, fs.seconds, s1.seconds_setup, step, gf, naive, ratio);
        fflush(stdout);
        bb_lora_destroy(&l);
    }
out:
    if (st != BB_OK) fprintf(stderr, "bench_heal: %s\n", bb_last_error());
    bb_lora_destroy(&l);
    bb_mask_destroy(&mask);
    free(w);
    free(w_hat);
    free(tmp);
    free(h);
    return st == BB_OK ? 0 : 1;
}
