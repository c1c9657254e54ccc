/* bench_block_heal.c — one block-healing step (forward + backward of one transformer block with low-rank factors)
 * against this machine's OpenBLAS sgemm rate measured in the same run.
 *
 * usage: bench_block_heal [--dim 4096] [--hidden 11008] [--heads 32] [--kv-heads 32] [--seq 512] [--nseq 2]
 *                         [--rank 8] [--reps 3] [--dw]
 * Defaults are a Llama-2-7B block on 2×512 tokens with rank-8 factors on all 7 linears (model/block_grad.h).
 * Each repetition times, back to back: the reference — the block's 7 linear shapes as raw cblas_sgemm calls at
 * its rows (x Wᵀ, the forward's matmuls) — then one bb_block_forward + bb_block_backward (with --dw also the
 * dense weight gradients). Bests over the repetitions (one untimed warm-up first) are compared. Step flops come
 * from bb_block_flops (attention counted on full T×T squares, as computed). Threads: OpenBLAS's
 * (OPENBLAS_NUM_THREADS). Not a test. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/rng.h"
#include "model/block_grad.h"

int openblas_get_num_threads(void);

static float *rand_buf(int64_t n, double scale, const char *stream) {
    float *p = malloc(sizeof(float) * (size_t)n);
    if (!p) return NULL;
    bb_rng_fill_normal(bb_rng_make(1, bb_rng_stream_id(stream)), 0, (size_t)n, p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(p[i] * scale);
    return p;
}

int main(int argc, char **argv) {
    bb_model_config c = {.dim = 4096,
                         .hidden_dim = 11008,
                         .n_layers = 1,
                         .n_heads = 32,
                         .n_kv_heads = 32,
                         .max_seq_len = 4096,
                         .norm_eps = 1e-5f,
                         .rope_theta = 10000.0f};
    int seq = 512, nseq = 2, rank = 8, reps = 3, dw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--dim") && more)
            c.dim = atoi(argv[++i]);
        else if (!strcmp(a, "--hidden") && more)
            c.hidden_dim = atoi(argv[++i]);
        else if (!strcmp(a, "--heads") && more)
            c.n_heads = atoi(argv[++i]);
        else if (!strcmp(a, "--kv-heads") && more)
            c.n_kv_heads = atoi(argv[++i]);
        else if (!strcmp(a, "--seq") && more)
            seq = atoi(argv[++i]);
        else if (!strcmp(a, "--nseq") && more)
            nseq = atoi(argv[++i]);
        else if (!strcmp(a, "--rank") && more)
            rank = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && more)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "--dw"))
            dw = 1;
        else {
            fprintf(stderr,
                    "usage: bench_block_heal [--dim N] [--hidden N] [--heads N] [--kv-heads N] [--seq T] [--nseq S] "
                    "[--rank R] [--reps N] [--dw]\n");
            return 2;
        }
    }
    if (c.n_heads < 1 || c.dim % c.n_heads || seq < 1 || nseq < 1 || rank < 1 || reps < 1) {
        fprintf(stderr, "bench_block_heal: dim must be a multiple of heads; seq, nseq, rank, reps >= 1\n");
        return 2;
    }
    c.head_dim = c.dim / c.n_heads;
    int64_t R = (int64_t)nseq * seq;
    bb_block_weights w = {0};
    bb_block_grads g = {0};
    float *own[3 * BB_LIN_COUNT + 6] = {0};
    int n_own = 0, ok = 1;
    int64_t widest = c.dim > c.hidden_dim ? c.dim : c.hidden_dim;
    for (int k = 0; k < BB_LIN_COUNT && ok; k++) {
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        w.w[k] = own[n_own++] = rand_buf(out * in, 0.02, "bench_block_heal.w");
        w.lora_a[k] = own[n_own++] = rand_buf(out * rank, 0.01, "bench_block_heal.a");
        w.lora_b[k] = own[n_own++] = rand_buf(rank * in, 0.01, "bench_block_heal.b");
        w.rank[k] = rank;
        g.d_a[k] = calloc((size_t)(out * rank), sizeof(float));
        g.d_b[k] = calloc((size_t)(rank * in), sizeof(float));
        if (dw) g.d_w[k] = calloc((size_t)(out * in), sizeof(float));
        ok = w.w[k] && w.lora_a[k] && w.lora_b[k] && g.d_a[k] && g.d_b[k] && (!dw || g.d_w[k]);
    }
    float *norm = own[n_own++] = rand_buf(c.dim, 0.1, "bench_block_heal.norm");
    float *x = own[n_own++] = rand_buf(R * c.dim, 1.0, "bench_block_heal.x");
    float *dy = own[n_own++] = rand_buf(R * c.dim, 1e-3, "bench_block_heal.dy");
    float *y = own[n_own++] = malloc(sizeof(float) * (size_t)(R * c.dim));
    float *dx = own[n_own++] = malloc(sizeof(float) * (size_t)(R * c.dim));
    float *gy = own[n_own++] = malloc(sizeof(float) * (size_t)(R * widest));
    ok = ok && norm && x && dy && y && dx && gy;
    bb_block *b = NULL;
    if (!ok || bb_block_create(&c, nseq, seq, rank, &b) != BB_OK) {
        fprintf(stderr, "bench_block_heal: out of memory (%s)\n", bb_last_error());
        return 1;
    }
    for (int i = 0; i < c.dim; i++) norm[i] += 1.0f;
    w.attn_norm = w.ffn_norm = norm;
    double fwd, bwd, ref_flop = 0;
    bb_block_flops(&c, nseq, seq, &w, dw, &fwd, &bwd);
    for (int k = 0; k < BB_LIN_COUNT; k++) {
        int64_t out, in;
        bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
        ref_flop += 2.0 * R * out * in;
    }
    printf("block dim %d hidden %d heads %d/%d head_dim %d, %d x %d tokens, rank %d on 7 linears%s; "
           "OpenBLAS threads %d; context %.2f GB\n",
           c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim, nseq, seq, rank, dw ? ", with dW" : "",
           openblas_get_num_threads(), bb_block_memory_bytes(&c, nseq, seq, rank) / 1e9);
    double best_ref = 1e300, best_f = 1e300, best_b = 1e300;
    for (int rep = 0; rep <= reps; rep++) {
        double t0 = bb_now();
        for (int k = 0; k < BB_LIN_COUNT; k++) {
            int64_t out, in;
            bb_block_linear_shape(&c, (bb_linear_kind)k, &out, &in);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)R, (blasint)out, (blasint)in, 1.0f,
                        k == BB_LIN_O || k == BB_LIN_DOWN ? gy : x, (blasint)in, w.w[k], (blasint)in, 0.0f,
                        k == BB_LIN_O || k == BB_LIN_DOWN ? y : gy, (blasint)out);
        }
        double t1 = bb_now();
        bb_status st = bb_block_forward(b, &w, x, nseq, y);
        double t2 = bb_now();
        if (st == BB_OK) st = bb_block_backward(b, &w, dy, dx, &g);
        double t3 = bb_now();
        if (st != BB_OK) {
            fprintf(stderr, "bench_block_heal: %s\n", bb_last_error());
            return 1;
        }
        if (rep == 0) continue; /* warm-up */
        best_ref = t1 - t0 < best_ref ? t1 - t0 : best_ref;
        best_f = t2 - t1 < best_f ? t2 - t1 : best_f;
        best_b = t3 - t2 < best_b ? t3 - t2 : best_b;
        printf("rep %d: sgemm ref %.3f s, forward %.3f s, backward %.3f s\n", rep, t1 - t0, t2 - t1, t3 - t2);
    }
    double ref_rate = ref_flop / best_ref / 1e9, step = best_f + best_b;
    printf("\n%-28s %10s %10s %10s %8s\n", "part", "seconds", "GFLOP", "GFLOP/s", "vs sgemm");
    printf("%-28s %10.3f %10.1f %10.1f %8s\n", "sgemm, 7 linear shapes", best_ref, ref_flop / 1e9, ref_rate, "1.00");
    printf("%-28s %10.3f %10.1f %10.1f %8.2f\n", "block forward", best_f, fwd / 1e9, fwd / best_f / 1e9,
           fwd / best_f / 1e9 / ref_rate);
    printf("%-28s %10.3f %10.1f %10.1f %8.2f\n", "block backward", best_b, bwd / 1e9, bwd / best_b / 1e9,
           bwd / best_b / 1e9 / ref_rate);
    printf("%-28s %10.3f %10.1f %10.1f %8.2f\n", "healing step (fwd + bwd)", step, (fwd + bwd) / 1e9,
           (fwd + bwd) / step / 1e9, (fwd + bwd) / step / 1e9 / ref_rate);
    printf("tokens per second in a healing step: %.0f\n", R / step);
    bb_block_destroy(&b);
    for (int i = 0; i < n_own; i++) free(own[i]);
    for (int k = 0; k < BB_LIN_COUNT; k++) free(g.d_a[k]), free(g.d_b[k]), free(g.d_w[k]);
    return 0;
}
