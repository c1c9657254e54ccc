/* bench_prefill.c — CPU prefill throughput of the forward pass against this machine's OpenBLAS sgemm rate.
 *
 * usage: bench_prefill [STORIES260K.bin] [--reps N] [--no-7b] [--logits]
 * The stories260K path defaults to $BB_SHARED/data/stories260K/stories260K.bin
 * (else ../shared/...). Rows:
 *   - stories260K at B=8,T=512 and B=1,T=512 (full prefill with its classifier);
 *   - one Llama-2-7B-shaped block (synthetic:llama2-7b,layers=1) at B=1,T=2048
 *     and B=8,T=512 through bb_forward_prefill_hidden, i.e. without the
 *     vocab-32000 classifier that would dominate a one-block model; --logits
 *     adds one full prefill with logits per shape.
 * The machine is shared, so its sgemm rate is measured paired with every
 * repetition, right before the prefill: a square 2048 sgemm, and the model's 7
 * linear shapes at the row's B*T rows as raw cblas_sgemm calls (x W^T, as
 * bb_matmul calls it). Each of the three takes its best over the repetitions
 * (default 3, stories260K at least 5; one untimed warm-up first), and the
 * table compares bests. Matmul flops are 2 rows in out over the 7 linears;
 * attention flops (QK^T and PV over the causal half) are counted separately.
 * Then determinism: two runs compared bit for bit, and 1 thread against all.
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

/* ---- the sgemm reference ------------------------------------------------------------ */

/* Operands for raw sgemms: x (rows, widest in), w (largest out*in), y (rows, widest out). */
typedef struct {
    float *x, *w, *y;
    int64_t rows, width, wsize;
} gemm_bufs;

static void free_bufs(gemm_bufs *g) {
    free(g->x);
    free(g->w);
    free(g->y);
    memset(g, 0, sizeof *g);
}

static bb_status make_bufs(gemm_bufs *g, int64_t rows, int64_t width, int64_t wsize) {
    memset(g, 0, sizeof *g);
    size_t nx = (size_t)rows * (size_t)width;
    bb_status st = bb_malloc((void **)&g->x, nx * sizeof(float), "bench sgemm x");
    if (!st) st = bb_malloc((void **)&g->y, nx * sizeof(float), "bench sgemm y");
    if (!st) st = bb_malloc((void **)&g->w, (size_t)wsize * sizeof(float), "bench sgemm w");
    if (st) {
        free_bufs(g);
        return st;
    }
    bb_rng r = bb_rng_make(1, bb_rng_stream_id("bench_prefill.sgemm"));
    bb_rng_fill_normal(r, 0, nx, g->x);
    bb_rng_fill_normal(r, nx, (size_t)wsize, g->w);
    g->rows = rows;
    g->width = width;
    g->wsize = wsize;
    return BB_OK;
}

/* Seconds for y (m, n) = x (m, k) W^T. */
static double gemm_seconds(const gemm_bufs *g, int m, int n, int k) {
    double t = bb_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, g->x, k, g->w, k, 0.0f, g->y, n);
    return bb_now() - t;
}

/* The 7 linears of one block of c at `rows` rows; returns seconds, adds flops. */
static double block_gemms(const gemm_bufs *g, const bb_model_config *c, int rows, double *flop) {
    int dim = c->dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    const int shape[7][2] = {{qd, dim}, {kvd, dim}, {kvd, dim}, {dim, qd}, {hid, dim}, {hid, dim}, {dim, hid}};
    double s = 0;
    for (int i = 0; i < 7; i++) {
        s += gemm_seconds(g, rows, shape[i][0], shape[i][1]);
        *flop += 2.0 * rows * shape[i][0] * shape[i][1];
    }
    return s;
}

/* ---- prefill rows ------------------------------------------------------------------ */

typedef struct {
    char what[48];
    int B, T;
    double best_s;
    bb_forward_stats s;           /* of the best prefill */
    double square_rate, blk_rate; /* best paired sgemm rates, flop/s */
} row;

/* Best of `reps` (after a warm-up) of: the square sgemm, the block's sgemms at
 * B*T rows, and a prefill of B x T tokens into out (final hidden states
 * (B, T, dim) when `hidden`, else logits (B, T, vocab)). */
static bb_status time_row(bb_forward *f, const gemm_bufs *g, const int *tokens, int B, int T, int hidden, float *out,
                          int reps, row *r) {
    const bb_model_config *c = bb_forward_config(f);
    r->B = B;
    r->T = T;
    r->best_s = 1e30;
    double sq_best = 1e30, blk_best = 1e30, blk_flop = 0;
    for (int i = 0; i <= reps; i++) {
        double sq = gemm_seconds(g, 2048, 2048, 2048), fl = 0;
        double blk = block_gemms(g, c, B * T, &fl);
        bb_forward_stats_reset(f);
        double t = bb_now();
        if (hidden)
            BB_CALL(bb_forward_prefill_hidden(f, tokens, B, T, out));
        else
            BB_CALL(bb_forward_prefill(f, tokens, B, T, out));
        t = bb_now() - t;
        if (i == 0) continue; /* warm-up: page faults, thread start */
        if (t < r->best_s) {
            r->best_s = t;
            bb_forward_stats_get(f, &r->s);
        }
        sq_best = sq < sq_best ? sq : sq_best;
        blk_best = blk < blk_best ? blk : blk_best;
        blk_flop = fl;
    }
    r->square_rate = 2.0 * 2048 * 2048 * 2048 / sq_best;
    r->blk_rate = blk_flop / blk_best;
    return BB_OK;
}

static void random_tokens(int *tokens, int64_t n, int vocab, uint64_t seed) {
    bb_rng g = bb_rng_make(seed, bb_rng_stream_id("bench_prefill.tokens"));
    for (int64_t i = 0; i < n; i++) tokens[i] = (int)(bb_rng_u64(g, (uint64_t)i) % (uint64_t)vocab);
}

static bb_status pass(bb_forward *f, const int *tokens, int B, int T, int hidden, float *out) {
    return hidden ? bb_forward_prefill_hidden(f, tokens, B, T, out) : bb_forward_prefill(f, tokens, B, T, out);
}

/* Bit-for-bit comparison of two runs, and of 1 thread against all, on B x T
 * tokens; prints the outcome. */
static bb_status check_determinism(bb_forward *f, const char *what, const int *tokens, int B, int T, int64_t n_out,
                                   int hidden) {
    float *a = NULL, *b = NULL;
    bb_status st = bb_malloc((void **)&a, (size_t)n_out * sizeof *a, "determinism run 1");
    if (!st) st = bb_malloc((void **)&b, (size_t)n_out * sizeof *b, "determinism run 2");
    if (!st) st = pass(f, tokens, B, T, hidden, a);
    if (!st) st = pass(f, tokens, B, T, hidden, b);
    if (!st) {
        int same = memcmp(a, b, (size_t)n_out * sizeof *a) == 0, threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        st = pass(f, tokens, B, T, hidden, b);
        openblas_set_num_threads(threads);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n_out; i++) {
            double d = fabs(a[i] - (double)b[i]);
            num = d > num ? d : num;
            den = fabs(a[i]) > den ? fabs(a[i]) : den;
        }
        int same1 = memcmp(a, b, (size_t)n_out * sizeof *a) == 0;
        if (!st)
            printf("determinism, %s: two runs (%d threads) %s; 1 thread vs %d: %s (max|a-b|/max|a| = %.2g)\n", what,
                   threads, same ? "bit-identical" : "DIFFER", threads, same1 ? "bit-identical" : "differ",
                   den > 0 ? num / den : 0.0);
    }
    free(a);
    free(b);
    return st;
}

/* ---- the models --------------------------------------------------------------------- */

/* Rows for each (B, T) of shapes: through bb_forward_prefill_hidden when
 * hidden_only (then, if with_logits, one full prefill as well), else full
 * prefills; then the determinism check on at most 256 tokens. */
static bb_status bench_model(const char *spec, const char *label, const int (*shapes)[2], int n_shapes, int reps,
                             int hidden_only, int with_logits, row *rows, int *nr) {
    bb_model *m = NULL;
    bb_forward *f = NULL;
    int *tokens = NULL;
    float *out = NULL;
    gemm_bufs g = {0};
    bb_status st = BB_OK;
    double t_load = bb_now();
    BB_CALL_GOTO(st, done, bb_model_open(spec, &m));
    BB_CALL_GOTO(st, done, bb_forward_create(m, 0, &f));
    t_load = bb_now() - t_load;
    const bb_model_config *c = &m->cfg;
    printf("%s: dim %d, hidden %d, layers %d, heads %d/%d kv, head dim %d, vocab %d; f32 weights made in %.1f s\n",
           label, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->vocab_size, t_load);
    fflush(stdout);
    int64_t max_rows = 0, qd = (int64_t)c->n_heads * c->head_dim;
    for (int i = 0; i < n_shapes; i++)
        if ((int64_t)shapes[i][0] * shapes[i][1] > max_rows) max_rows = (int64_t)shapes[i][0] * shapes[i][1];
    int64_t width = c->hidden_dim > qd ? c->hidden_dim : qd;
    width = width > 2048 ? width : 2048;
    int64_t wsize = (int64_t)c->hidden_dim * (c->dim > qd ? c->dim : qd);
    wsize = wsize > 2048 * 2048 ? wsize : 2048 * 2048;
    BB_CALL_GOTO(st, done, make_bufs(&g, max_rows > 2048 ? max_rows : 2048, width, wsize));
    BB_CALL_GOTO(st, done, bb_malloc((void **)&tokens, (size_t)max_rows * sizeof *tokens, "bench tokens"));
    random_tokens(tokens, max_rows, c->vocab_size, 3);
    int64_t out_w = hidden_only && !with_logits ? c->dim : c->vocab_size;
    out_w = out_w > c->dim ? out_w : c->dim;
    BB_CALL_GOTO(st, done, bb_malloc((void **)&out, (size_t)max_rows * (size_t)out_w * sizeof *out, "bench output"));
    for (int i = 0; i < n_shapes; i++) {
        int B = shapes[i][0], T = shapes[i][1];
        row *r = &rows[(*nr)++];
        snprintf(r->what, sizeof r->what, "%s%s", label, hidden_only ? " (no logits)" : "");
        BB_CALL_GOTO(st, done, time_row(f, &g, tokens, B, T, hidden_only, out, reps, r));
        printf("  %s B=%d T=%d: best %.3f s\n", r->what, B, T, r->best_s);
        fflush(stdout);
        if (hidden_only && with_logits) {
            r = &rows[(*nr)++];
            snprintf(r->what, sizeof r->what, "%s + logits", label);
            BB_CALL_GOTO(st, done, time_row(f, &g, tokens, B, T, 0, out, 1, r));
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
    free_bufs(&g);
    free(out);
    free(tokens);
    bb_forward_destroy(&f);
    bb_model_destroy(&m);
    return st;
}

static void print_table(const row *rows, int nr) {
    printf("\n%-30s %2s %5s %8s %8s %7s %7s %7s %7s %6s %6s %7s %6s %7s\n", "model", "B", "T", "best s", "tok/s",
           "GFLOP/s", "sq GF", "blk GF", "mm GF", "%sq", "%blk", "attn s", "att GF", "other s");
    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        const bb_forward_stats *s = &r->s;
        double all = s->matmul_flop + s->attention_flop + s->classifier_flop;
        double mm = s->matmul_flop / s->matmul_s;
        printf("%-30s %2d %5d %8.3f %8.0f %7.1f %7.1f %7.1f %7.1f %5.0f%% %5.0f%% %7.3f %6.1f %7.3f\n", r->what, r->B,
               r->T, r->best_s, r->B * (double)r->T / r->best_s, all / r->best_s * 1e-9, r->square_rate * 1e-9,
               r->blk_rate * 1e-9, mm * 1e-9, 100 * mm / r->square_rate, 100 * mm / r->blk_rate, s->attention_s,
               s->attention_flop / s->attention_s * 1e-9, s->elementwise_s + s->classifier_s);
    }
    printf("best s / tok/s: the whole prefill (best run); GFLOP/s: its matmul + attention + classifier flops.\n"
           "sq GF: square 2048 sgemm; blk GF: the model's 7 linear shapes at B*T rows as raw sgemms (both best\n"
           "of the paired runs); mm GF: the 7 linears inside the prefill (2 rows in out); %%sq, %%blk: mm GF of\n"
           "those. attn: QK^T and PV over the causal half (4 hd per query-key pair per head), softmax\n"
           "included. other: embedding, RMSNorm, RoPE, SwiGLU, and the final norm + classifier.\n");
}

static bb_status run(const char *stories, int reps, int do_7b, int with_logits) {
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
    printf("machine: %s; %s; %d OpenBLAS threads\n\n", cpu, openblas_get_config(), openblas_get_num_threads());
    fflush(stdout);
    row rows[16];
    int nr = 0;
    const int small[2][2] = {{8, 512}, {1, 512}}, big[2][2] = {{1, 2048}, {8, 512}};
    bb_status st = bench_model(stories, "stories260K", small, 2, reps < 5 ? 5 : reps, 0, 0, rows, &nr);
    if (!st && do_7b)
        st = bench_model("synthetic:llama2-7b,layers=1", "llama2-7b block", big, 2, reps, 1, with_logits, rows, &nr);
    print_table(rows, nr);
    return st;
}

int main(int argc, char **argv) {
    char stories[1200];
    const char *shared = getenv("BB_SHARED");
    snprintf(stories, sizeof stories, "%s/data/stories260K/stories260K.bin", shared ? shared : "../shared");
    int reps = 3, do_7b = 1, with_logits = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-7b"))
            do_7b = 0;
        else if (!strcmp(argv[i], "--logits"))
            with_logits = 1;
        else if (argv[i][0] != '-')
            snprintf(stories, sizeof stories, "%s", argv[i]);
        else {
            fprintf(stderr, "usage: bench_prefill [STORIES260K.bin] [--reps N] [--no-7b] [--logits]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    return run(stories, reps, do_7b, with_logits) == BB_OK ? 0 : 1;
}
