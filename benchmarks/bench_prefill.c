/* bench_prefill.c — CPU prefill throughput of the forward pass against this machine's OpenBLAS sgemm rate.
 *
 * usage: bench_prefill [STORIES260K.bin] [--reps N] [--no-7b] [--no-logits]
 * The stories260K path defaults to $BB_SHARED/data/stories260K/stories260K.bin
 * (else ../shared/...). Measures:
 *   - sgemm: a square 2048 product and the three shapes of a Llama-2-7B block's
 *     linears at 2048 rows (x W^T as bb_matmul calls it), best of 3 after one
 *     warm-up;
 *   - prefill of stories260K at B=8,T=512 and B=1,T=512 (with its classifier);
 *   - one Llama-2-7B-shaped block (synthetic:llama2-7b,layers=1) at B=1,T=2048
 *     and B=8,T=512 through bb_forward_prefill_hidden, i.e. without the
 *     vocab-32000 classifier that would dominate a one-block model, then once
 *     with it (full logits) for comparison.
 * Each row: best of N repetitions (default 3; 1 for the rows with the 7B
 * classifier) after one warm-up, with the per-part times of that best run from
 * bb_forward_stats. Matmul flops are 2 rows in out over the 7 linears;
 * attention flops (QK^T and PV, causal half) are counted separately. Then
 * determinism: two runs compared bit for bit, and 1 thread against all.
 * Threads: OpenBLAS's (OPENBLAS_NUM_THREADS). Not a test. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "io/model.h"
#include "model/forward.h"

int openblas_get_num_threads(void);
void openblas_set_num_threads(int n);
char *openblas_get_config(void);

/* ---- sgemm reference rate -------------------------------------------------------- */

/* Best seconds of y (m, n) = x (m, k) W^T, W (n, k): one warm-up, then reps. */
static bb_status sgemm_best(int m, int n, int k, int reps, double *best) {
    float *a = NULL, *b = NULL, *c = NULL;
    bb_status st = bb_malloc((void **)&a, (size_t)m * k * sizeof *a, "bench sgemm A");
    if (!st) st = bb_malloc((void **)&b, (size_t)n * k * sizeof *b, "bench sgemm B");
    if (!st) st = bb_malloc((void **)&c, (size_t)m * n * sizeof *c, "bench sgemm C");
    if (!st) {
        bb_rng g = bb_rng_make(1, bb_rng_stream_id("bench_prefill.sgemm"));
        bb_rng_fill_normal(g, 0, (size_t)m * k, a);
        bb_rng_fill_normal(g, (size_t)m * k, (size_t)n * k, b);
        *best = 1e30;
        for (int r = 0; r <= reps; r++) {
            double t = bb_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
            t = bb_now() - t;
            if (r > 0 && t < *best) *best = t;
        }
    }
    free(a);
    free(b);
    free(c);
    return st;
}

/* ---- prefill rows ------------------------------------------------------------------ */

typedef struct {
    char what[64];
    int B, T;
    double best_s;
    bb_forward_stats s; /* of the best run */
} row;

/* Best of `reps` prefills (after a warm-up) of B x T tokens into out: final
 * hidden states (B, T, dim) when `hidden`, else logits (B, T, vocab). */
static bb_status time_prefill(bb_forward *f, const int *tokens, int B, int T, int hidden, float *out, int reps,
                              row *r) {
    r->B = B;
    r->T = T;
    r->best_s = 1e30;
    for (int i = 0; i <= reps; i++) {
        bb_forward_stats_reset(f);
        double t = bb_now();
        if (hidden)
            BB_CALL(bb_forward_prefill_hidden(f, tokens, B, T, out));
        else
            BB_CALL(bb_forward_prefill(f, tokens, B, T, out));
        t = bb_now() - t;
        if (i > 0 && t < r->best_s) {
            r->best_s = t;
            bb_forward_stats_get(f, &r->s);
        }
    }
    return BB_OK;
}

static void random_tokens(int *tokens, int64_t n, int vocab, uint64_t seed) {
    bb_rng g = bb_rng_make(seed, bb_rng_stream_id("bench_prefill.tokens"));
    for (int64_t i = 0; i < n; i++) tokens[i] = (int)(bb_rng_u64(g, (uint64_t)i) % (uint64_t)vocab);
}

/* Bit-for-bit comparison of two runs, and of 1 thread against all, on B x T
 * tokens; prints the outcome. */
static bb_status check_determinism(bb_forward *f, const char *what, const int *tokens, int B, int T, int64_t n_out,
                                   int hidden) {
    float *a = NULL, *b = NULL;
    bb_status st = bb_malloc((void **)&a, (size_t)n_out * sizeof *a, "determinism run 1");
    if (!st) st = bb_malloc((void **)&b, (size_t)n_out * sizeof *b, "determinism run 2");
#define PASS(buf) (hidden ? bb_forward_prefill_hidden(f, tokens, B, T, (buf)) : bb_forward_prefill(f, tokens, B, T, (buf)))
    if (!st) st = PASS(a);
    if (!st) st = PASS(b);
    if (!st) {
        int same = memcmp(a, b, (size_t)n_out * sizeof *a) == 0, threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        st = PASS(b);
        openblas_set_num_threads(threads);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n_out; i++) {
            double d = a[i] - (double)b[i];
            num = d * d > num ? d * d : num;
            den = (double)a[i] * a[i] > den ? (double)a[i] * a[i] : den;
        }
        int same1 = memcmp(a, b, (size_t)n_out * sizeof *a) == 0;
        if (!st)
            printf("%-34s two runs (%d threads): %s; 1 thread vs %d: %s (max|a-b|/max|a| = %.2g)\n", what, threads,
                   same ? "bit-identical" : "DIFFERENT", threads, same1 ? "bit-identical" : "differ",
                   den > 0 ? sqrt(num / den) : 0.0);
    }
#undef PASS
    free(a);
    free(b);
    return st;
}

/* ---- the models --------------------------------------------------------------------- */

/* Rows for each (B, T) of shapes: through bb_forward_prefill_hidden when
 * hidden_only (then, if full_once, one full prefill with logits as well), else
 * full prefills; then the determinism check on the first shape's B, T capped
 * at 256 tokens. */
static bb_status bench_model(const char *spec, const char *label, const int (*shapes)[2], int n_shapes, int reps,
                             int hidden_only, int full_once, row *rows, int *nr) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    int *tokens = NULL;
    float *out = NULL;
    bb_status st = BB_OK;
    double t_load = bb_now();
    BB_CALL_GOTO(st, done, bb_model_open(spec, &m));
    BB_CALL_GOTO(st, done, bb_forward_create(m, 0, &f));
    t_load = bb_now() - t_load;
    const bb_model_config *c = &m->cfg;
    printf("%s: dim %d, hidden %d, layers %d, heads %d/%d kv, vocab %d; f32 weights materialized in %.1f s\n", label,
           c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, t_load);
    fflush(stdout);
    int64_t max_rows = 0, width = hidden_only && !full_once ? c->dim : c->vocab_size;
    if (width < c->dim) width = c->dim;
    for (int i = 0; i < n_shapes; i++)
        if ((int64_t)shapes[i][0] * shapes[i][1] > max_rows) max_rows = (int64_t)shapes[i][0] * shapes[i][1];
    BB_CALL_GOTO(st, done, bb_malloc((void **)&tokens, (size_t)max_rows * sizeof *tokens, "bench tokens"));
    random_tokens(tokens, max_rows, c->vocab_size, 3);
    BB_CALL_GOTO(st, done, bb_malloc((void **)&out, (size_t)max_rows * (size_t)width * sizeof *out, "bench output"));
    for (int i = 0; i < n_shapes; i++) {
        int B = shapes[i][0], T = shapes[i][1];
        row *r = &rows[(*nr)++];
        snprintf(r->what, sizeof r->what, "%s%s", label, hidden_only ? " (no logits)" : "");
        BB_CALL_GOTO(st, done, time_prefill(f, tokens, B, T, hidden_only, out, reps, r));
        printf("  %s B=%d T=%d: best %.3f s\n", r->what, B, T, r->best_s);
        fflush(stdout);
        if (hidden_only && full_once) {
            r = &rows[(*nr)++];
            snprintf(r->what, sizeof r->what, "%s + logits", label);
            BB_CALL_GOTO(st, done, time_prefill(f, tokens, B, T, 0, out, 1, r));
            printf("  %s B=%d T=%d: %.3f s\n", r->what, B, T, r->best_s);
            fflush(stdout);
        }
    }
    {
        int B = shapes[0][0], T = shapes[0][1];
        if ((int64_t)B * T > 256) B = 1, T = T < 256 ? T : 256;
        char what[96];
        snprintf(what, sizeof what, "%s B=%d T=%d", label, B, T);
        int64_t n_out = (int64_t)B * T * (hidden_only ? c->dim : c->vocab_size);
        BB_CALL_GOTO(st, done, check_determinism(f, what, tokens, B, T, n_out, hidden_only));
    }
done:
    free(out);
    free(tokens);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    return st;
}

static void print_table(const row *rows, int nr, double sgemm_rate, double block_rate) {
    printf("\n%-26s %2s %5s %9s %9s %8s %8s %7s %7s %8s %8s %7s %7s\n", "model", "B", "T", "best s", "tok/s",
           "GFLOP/s", "mm s", "mm GF/s", "%sgemm", "%blk-sg", "attn s", "attn GF", "other s");
    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        const bb_forward_stats *s = &r->s;
        double all = s->matmul_flop + s->attention_flop + s->classifier_flop;
        double mm = s->matmul_flop / s->matmul_s;
        printf("%-26s %2d %5d %9.3f %9.0f %8.1f %8.3f %7.1f %6.1f%% %7.1f%% %8.3f %7.1f %7.3f\n", r->what, r->B, r->T,
               r->best_s, r->B * (double)r->T / r->best_s, all / r->best_s * 1e-9, s->matmul_s, mm * 1e-9,
               100 * mm / sgemm_rate, 100 * mm / block_rate, s->attention_s, s->attention_flop / s->attention_s * 1e-9,
               s->elementwise_s + s->classifier_s);
    }
    printf("GFLOP/s counts matmul + attention + classifier flops over the whole pass; mm = the 7 linears of every\n"
           "block (2 rows in out), %%sgemm against the square 2048 sgemm, %%blk-sg against the block-shaped\n"
           "sgemms; attn = QK^T and PV over the causal half (4 hd per query-key pair per head); other =\n"
           "embedding, RMSNorm, RoPE, SwiGLU, and the final norm + classifier (when logits are computed).\n");
}

static bb_status run(const char *stories, int reps, int do_7b, int with_logits) {
    int threads = openblas_get_num_threads();
    char cpu[128] = "unknown CPU";
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp) {
        char line[256];
        while (fgets(line, sizeof line, fp))
            if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
                snprintf(cpu, sizeof cpu, "%s", strchr(line, ':') + 2);
                cpu[strcspn(cpu, "\n")] = 0;
                break;
            }
        fclose(fp);
    }
    printf("machine: %s; OpenBLAS %s, %d threads\n", cpu, openblas_get_config(), threads);

    /* The block's linears at 2048 rows: q/k/v/o (4096 -> 4096), gate/up (4096 -> 11008), down (11008 -> 4096). */
    const int shape[3][3] = {{2048, 4096, 4096}, {2048, 11008, 4096}, {2048, 4096, 11008}};
    const int count[3] = {4, 2, 1};
    double sq, t, blk_flop = 0, blk_s = 0;
    BB_CALL(sgemm_best(2048, 2048, 2048, 3, &sq));
    double sgemm_rate = 2.0 * 2048 * 2048 * 2048 / sq;
    printf("sgemm 2048x2048x2048: best %.4f s, %.1f GFLOP/s\n", sq, sgemm_rate * 1e-9);
    for (int i = 0; i < 3; i++) {
        BB_CALL(sgemm_best(shape[i][0], shape[i][1], shape[i][2], 3, &t));
        double fl = 2.0 * shape[i][0] * shape[i][1] * shape[i][2];
        printf("sgemm x(%d,%d) W(%d,%d)^T: best %.4f s, %.1f GFLOP/s\n", shape[i][0], shape[i][2], shape[i][1],
               shape[i][2], t, fl / t * 1e-9);
        blk_flop += count[i] * fl;
        blk_s += count[i] * t;
    }
    double block_rate = blk_flop / blk_s;
    printf("block-shaped sgemm (the 7 linears, 2048 rows): %.1f GFLOP/s\n\n", block_rate * 1e-9);
    fflush(stdout);

    row rows[16];
    int nr = 0;
    const int small[2][2] = {{8, 512}, {1, 512}}, big[2][2] = {{1, 2048}, {8, 512}};
    BB_CALL(bench_model(stories, "stories260K", small, 2, reps < 5 ? 5 : reps, 0, 0, rows, &nr));
    if (do_7b) {
        bb_status st = bench_model("synthetic:llama2-7b,layers=1", "llama2-7b 1 block", big, 2, reps, 1, with_logits,
                                   rows, &nr);
        if (st) {
            print_table(rows, nr, sgemm_rate, block_rate);
            return st;
        }
    }
    print_table(rows, nr, sgemm_rate, block_rate);
    return BB_OK;
}

int main(int argc, char **argv) {
    char stories[1200];
    const char *shared = getenv("BB_SHARED");
    snprintf(stories, sizeof stories, "%s/data/stories260K/stories260K.bin", shared ? shared : "../shared");
    int reps = 3, do_7b = 1, with_logits = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-7b"))
            do_7b = 0;
        else if (!strcmp(argv[i], "--no-logits"))
            with_logits = 0;
        else if (argv[i][0] != '-')
            snprintf(stories, sizeof stories, "%s", argv[i]);
        else {
            fprintf(stderr, "usage: bench_prefill [STORIES260K.bin] [--reps N] [--no-7b] [--no-logits]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    return run(stories, reps, do_7b, with_logits) == BB_OK ? 0 : 1;
}
