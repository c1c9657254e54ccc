/* forward_cuda.cu — one transformer block on the GPU (forward_cuda.h). */
extern "C" {
#include "core/log.h"
#include "core/status.h"
#include "core/tensor.h"
#include "model/kernels.h"
}
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/check.h"
#include "cuda/forward_cuda.h"

struct bb_cuda_fwd {
    bb_cuda_ctx *ctx;
    bb_model_config c;
    int t, max_b, qd, kvd;
    bb_cuda_math math;
    int64_t rows;       /* max_b * t */
    int pairs;          /* (sequence, head) pairs whose scores are resident at once */
    float *xn, *q, *k, *v, *att, *h1, *h3; /* activations */
    float *sc;                             /* scores (pairs, t, t) */
    float *cos_t, *sin_t;                  /* (t, hd/2) */
    const void **ptrs;                     /* device pointer arrays: 3 * pairs (A, B, C) */
    bb_cuda_fwd_stats st;
};

#define LAUNCHED() BB_CUDA_CALL(cudaGetLastError())

/* ---- kernels ---- */

/* y[r] = w * x[r] / sqrt(mean(x[r]^2) + eps), the sum of squares in double as bb_rmsnorm_ref. One block
 * per row. */
__global__ void k_rmsnorm(const float *x, const float *w, int dim, float eps, float *y) {
    const float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    double ss = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * xr[i];
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_down_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        double s = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0;
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) part[0] = s;
    }
    __syncthreads();
    float inv = (float)(1.0 / sqrt(part[0] / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (inv * xr[i]);
}

/* y (rows, n) += b (n). */
__global__ void k_add_bias(float *y, const float *b, int64_t rows, int n) {
    int64_t total = rows * n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += b[i % n];
}

/* Rotate x (rows, nh * hd): row r at position r % t, pair j of every head. */
__global__ void k_rope(float *x, int64_t rows, int t, int nh, int hd, int half_style, const float *cos_t,
                       const float *sin_t) {
    int half = hd / 2;
    int64_t total = rows * nh * half;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int j = (int)(i % half);
        int64_t rh = i / half;
        int64_t r = rh / nh;
        float *v = x + rh * hd;
        int a = half_style ? j : 2 * j, b = half_style ? j + half : 2 * j + 1;
        int p = (int)(r % t);
        float c = cos_t[(int64_t)p * half + j], s = sin_t[(int64_t)p * half + j], x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
    }
}

/* g = silu(g) * u. */
__global__ void k_silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Causal softmax of score rows: s (n_rows, t, t) row-major, query row i of every matrix keeps keys
 * 0..i, the rest become 0. The scale is applied here. One warp per row. */
__global__ void k_causal_softmax(float *s, int64_t n_rows, int t, float scale) {
    int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= n_rows) return;
    int i = (int)(row % t), n = i + 1;
    float *r = s + row * t;
    float mx = -INFINITY;
    for (int j = lane; j < n; j += 32) mx = fmaxf(mx, r[j] * scale);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0;
    for (int j = lane; j < n; j += 32) {
        float e = expf(r[j] * scale - mx);
        r[j] = e;
        sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    float inv = 1.0f / sum;
    for (int j = lane; j < t; j += 32) r[j] = j < n ? r[j] * inv : 0.0f;
}

/* Pointer arrays for the batched products of pairs (sequence b0 + p / nh, head p % nh), p < np. */
__global__ void k_attn_ptrs(const float **pq, const float **pk, float **ps, const float **pv, float **po,
                            const float *q, const float *k, const float *v, float *att, float *sc, int b0, int np,
                            int nh, int group, int t, int hd, int qd, int kvd) {
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= np) return;
    int b = b0 + p / nh, h = p % nh, g = h / group;
    int64_t r0 = (int64_t)b * t;
    pq[p] = q + r0 * qd + (int64_t)h * hd;
    pk[p] = k + r0 * kvd + (int64_t)g * hd;
    pv[p] = v + r0 * kvd + (int64_t)g * hd;
    po[p] = att + r0 * qd + (int64_t)h * hd;
    ps[p] = sc + (int64_t)p * t * t;
}

static int grid_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return (int)(g > 65535 ? 65535 : g < 1 ? 1 : g);
}

/* ---- lifecycle ---- */

extern "C" void bb_cuda_fwd_destroy(bb_cuda_fwd **pf) {
    if (!pf || !*pf) return;
    bb_cuda_fwd *f = *pf;
    void *bufs[] = {f->xn, f->q, f->k, f->v, f->att, f->h1, f->h3, f->sc, f->cos_t, f->sin_t, (void *)f->ptrs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    free(f);
    *pf = NULL;
}

extern "C" bb_status bb_cuda_fwd_create(bb_cuda_ctx *ctx, const bb_model_config *c, int t, int max_b,
                                        bb_cuda_math math, bb_cuda_fwd **out) {
    *out = NULL;
    BB_CHECK(ctx && c, BB_ERR_ARG, "cuda forward: no context or config");
    BB_CHECK(t >= 1 && t <= c->max_seq_len, BB_ERR_ARG, "cuda forward: %d tokens per sequence, the model allows 1..%d",
             t, c->max_seq_len);
    BB_CHECK(max_b >= 1, BB_ERR_ARG, "cuda forward: %d sequences", max_b);
    BB_CHECK(c->head_dim % 2 == 0 && c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0, BB_ERR_ARG,
             "cuda forward: head_dim %d, %d heads, %d kv heads", c->head_dim, c->n_heads, c->n_kv_heads);
    bb_cuda_fwd *f = (bb_cuda_fwd *)calloc(1, sizeof *f);
    BB_CHECK(f, BB_ERR_OOM, "cuda forward context");
    bb_status st = BB_OK;
    f->ctx = ctx;
    f->c = *c;
    f->t = t;
    f->max_b = max_b;
    f->math = math;
    f->qd = c->n_heads * c->head_dim;
    f->kvd = c->n_kv_heads * c->head_dim;
    f->rows = (int64_t)max_b * t;
    /* Scores of at most 1 GiB, but at least one sequence's heads. */
    int64_t per_pair = (int64_t)t * t * 4, budget = (int64_t)1 << 30;
    int64_t pairs = budget / per_pair;
    if (pairs < c->n_heads) pairs = c->n_heads;
    if (pairs > (int64_t)max_b * c->n_heads) pairs = (int64_t)max_b * c->n_heads;
    pairs = pairs / c->n_heads * c->n_heads;
    f->pairs = (int)pairs;
    int64_t R = f->rows, half = c->head_dim / 2;
    struct {
        float **p;
        int64_t n;
        const char *what;
    } b[] = {{&f->xn, R * c->dim, "cuda forward normed input"},    {&f->q, R * f->qd, "cuda forward queries"},
             {&f->k, R * f->kvd, "cuda forward keys"},             {&f->v, R * f->kvd, "cuda forward values"},
             {&f->att, R * f->qd, "cuda forward attention output"}, {&f->h1, R * c->hidden_dim, "cuda forward gate"},
             {&f->h3, R * c->hidden_dim, "cuda forward up"},        {&f->sc, pairs * t * t, "cuda forward scores"},
             {&f->cos_t, t * half, "rope cos"},                    {&f->sin_t, t * half, "rope sin"}};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        BB_CALL_GOTO(st, fail, bb_cuda_malloc((void **)b[i].p, (size_t)b[i].n * sizeof(float), b[i].what));
    BB_CALL_GOTO(st, fail, bb_cuda_malloc((void **)&f->ptrs, (size_t)pairs * 5 * sizeof(void *), "attention pointers"));
    {
        double *inv_freq = (double *)malloc((size_t)half * sizeof(double));
        float *ct = (float *)malloc((size_t)(t * half) * sizeof(float)), *stb = (float *)malloc((size_t)(t * half) * sizeof(float));
        int *pos = (int *)malloc((size_t)t * sizeof(int));
        if (!inv_freq || !ct || !stb || !pos) {
            free(inv_freq), free(ct), free(stb), free(pos);
            BB_CALL_GOTO(st, fail, bb_error(BB_ERR_OOM, __FILE__, __LINE__, "rope table"));
        }
        for (int i = 0; i < t; i++) pos[i] = i;
        bb_rope_freqs(c, inv_freq);
        bb_rope_table(inv_freq, (int)half, pos, t, ct, stb);
        cudaError_t e1 = cudaMemcpy(f->cos_t, ct, (size_t)(t * half) * sizeof(float), cudaMemcpyHostToDevice);
        cudaError_t e2 = cudaMemcpy(f->sin_t, stb, (size_t)(t * half) * sizeof(float), cudaMemcpyHostToDevice);
        free(inv_freq), free(ct), free(stb), free(pos);
        BB_CALL_GOTO(st, fail, BB_CUDA_STATUS(e1 != cudaSuccess ? e1 : e2));
    }
    *out = f;
    return BB_OK;
fail:
    bb_cuda_fwd_destroy(&f);
    return st;
}

extern "C" void bb_cuda_fwd_stats_get(const bb_cuda_fwd *f, bb_cuda_fwd_stats *out) { *out = f->st; }

/* ---- the block ---- */

static void lap(double *t0, double *acc) {
    cudaDeviceSynchronize();
    double t1 = bb_now();
    *acc += t1 - *t0;
    *t0 = t1;
}

static bb_status linear(bb_cuda_fwd *f, const float *x, const float *w, const float *bias, int64_t rows, int64_t in,
                        int64_t out, float beta, float *y) {
    BB_CALL(bb_cuda_gemm(f->ctx, f->math, BB_OP_N, BB_OP_T, rows, out, in, 1.0f, x, in, w, in, beta, y, out));
    if (bias) {
        k_add_bias<<<grid_for(rows * out), 256>>>(y, bias, rows, (int)out);
        LAUNCHED();
    }
    return BB_OK;
}

static bb_status attention(bb_cuda_fwd *f, int B) {
    const bb_model_config *c = &f->c;
    int t = f->t, hd = c->head_dim, nh = c->n_heads, group = c->n_heads / c->n_kv_heads;
    cublasHandle_t h = (cublasHandle_t)bb_cuda_ctx_cublas(f->ctx);
    cublasComputeType_t ct = f->math == BB_CUDA_FP32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
    const float one = 1.0f, zero = 0.0f;
    int per_chunk = f->pairs / nh; /* sequences per chunk */
    for (int b0 = 0; b0 < B; b0 += per_chunk) {
        int nb = B - b0 < per_chunk ? B - b0 : per_chunk, np = nb * nh;
        const float **pq = (const float **)f->ptrs, **pk = pq + f->pairs, **pv = pq + 2 * (int64_t)f->pairs;
        float **ps = (float **)(pq + 3 * (int64_t)f->pairs), **po = (float **)(pq + 4 * (int64_t)f->pairs);
        k_attn_ptrs<<<(np + 127) / 128, 128>>>(pq, pk, ps, pv, po, f->q, f->k, f->v, f->att, f->sc, b0, np, nh, group, t,
                                              hd, f->qd, f->kvd);
        LAUNCHED();
        /* scores: S (t, t) row-major = Q Kᵀ, as column-major Sᵀ = K Qᵀ */
        BB_CUBLAS_CALL(cublasGemmBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, t, t, hd, &one, (const void **)pk, CUDA_R_32F,
                                           f->kvd, (const void **)pq, CUDA_R_32F, f->qd, &zero, (void **)ps, CUDA_R_32F,
                                           t, np, ct, CUBLAS_GEMM_DEFAULT));
        int64_t n_rows = (int64_t)np * t;
        k_causal_softmax<<<(unsigned)((n_rows + 7) / 8), 256>>>(f->sc, n_rows, t, 1.0f / sqrtf((float)hd));
        LAUNCHED();
        /* O (t, hd) row-major = P V, as column-major Oᵀ = Vᵀ Pᵀ */
        BB_CUBLAS_CALL(cublasGemmBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, hd, t, t, &one, (const void **)pv, CUDA_R_32F,
                                           f->kvd, (const void **)ps, CUDA_R_32F, t, &zero, (void **)po, CUDA_R_32F,
                                           f->qd, np, ct, CUBLAS_GEMM_DEFAULT));
    }
    return BB_OK;
}

extern "C" bb_status bb_cuda_fwd_block(bb_cuda_fwd *f, const bb_cuda_block_w *w, float *x, int B,
                                       bb_cuda_fwd_hook hook, void *ud) {
    BB_CHECK(B >= 1 && B <= f->max_b, BB_ERR_ARG, "cuda forward: %d sequences, the workspace holds 1..%d", B, f->max_b);
    const bb_model_config *c = &f->c;
    int64_t R = (int64_t)B * f->t;
    int dim = c->dim, hid = c->hidden_dim, qd = f->qd, kvd = f->kvd;
    int nthr = dim >= 1024 ? 1024 : 256;
    bb_cuda_fwd_stats *s = &f->st;
    double t0 = bb_now();
    k_rmsnorm<<<(unsigned)R, nthr>>>(x, w->attn_norm, dim, c->norm_eps, f->xn);
    LAUNCHED();
    lap(&t0, &s->elementwise_s);
    if (hook) {
        BB_CALL(hook(ud, BB_LIN_Q, f->xn, R, dim));
        BB_CALL(hook(ud, BB_LIN_K, f->xn, R, dim));
        BB_CALL(hook(ud, BB_LIN_V, f->xn, R, dim));
        cudaDeviceSynchronize();
        t0 = bb_now();
    }
    BB_CALL(linear(f, f->xn, w->wq, w->bq, R, dim, qd, 0.0f, f->q));
    BB_CALL(linear(f, f->xn, w->wk, w->bk, R, dim, kvd, 0.0f, f->k));
    BB_CALL(linear(f, f->xn, w->wv, w->bv, R, dim, kvd, 0.0f, f->v));
    lap(&t0, &s->matmul_s);
    int hs = c->rope_style == BB_ROPE_HALF;
    k_rope<<<grid_for(R * c->n_heads * c->head_dim / 2), 256>>>(f->q, R, f->t, c->n_heads, c->head_dim, hs, f->cos_t,
                                                                f->sin_t);
    LAUNCHED();
    k_rope<<<grid_for(R * c->n_kv_heads * c->head_dim / 2), 256>>>(f->k, R, f->t, c->n_kv_heads, c->head_dim, hs,
                                                                   f->cos_t, f->sin_t);
    LAUNCHED();
    lap(&t0, &s->elementwise_s);
    BB_CALL(attention(f, B));
    lap(&t0, &s->attention_s);
    if (hook) {
        BB_CALL(hook(ud, BB_LIN_O, f->att, R, qd));
        cudaDeviceSynchronize();
        t0 = bb_now();
    }
    BB_CALL(linear(f, f->att, w->wo, NULL, R, qd, dim, 1.0f, x));
    lap(&t0, &s->matmul_s);
    k_rmsnorm<<<(unsigned)R, nthr>>>(x, w->ffn_norm, dim, c->norm_eps, f->xn);
    LAUNCHED();
    lap(&t0, &s->elementwise_s);
    if (hook) {
        BB_CALL(hook(ud, BB_LIN_GATE, f->xn, R, dim));
        BB_CALL(hook(ud, BB_LIN_UP, f->xn, R, dim));
        cudaDeviceSynchronize();
        t0 = bb_now();
    }
    BB_CALL(linear(f, f->xn, w->w_gate, NULL, R, dim, hid, 0.0f, f->h1));
    BB_CALL(linear(f, f->xn, w->w_up, NULL, R, dim, hid, 0.0f, f->h3));
    lap(&t0, &s->matmul_s);
    k_silu_mul<<<grid_for(R * hid), 256>>>(f->h1, f->h3, R * hid);
    LAUNCHED();
    lap(&t0, &s->elementwise_s);
    if (hook) {
        BB_CALL(hook(ud, BB_LIN_DOWN, f->h1, R, hid));
        cudaDeviceSynchronize();
        t0 = bb_now();
    }
    BB_CALL(linear(f, f->h1, w->w_down, NULL, R, hid, dim, 1.0f, x));
    lap(&t0, &s->matmul_s);
    s->matmul_flop += 2.0 * R * ((double)dim * (qd + 2 * kvd) + (double)qd * dim + 3.0 * dim * hid);
    s->attention_flop += 4.0 * c->head_dim * c->n_heads * (double)B * ((double)f->t * (f->t + 1) / 2);
    s->tokens += R;
    return BB_OK;
}

extern "C" bb_status bb_cuda_fwd_block_host(bb_cuda_fwd *f, const bb_cuda_block_w *w, float *x, int b) {
    BB_CHECK(b >= 1 && b <= f->max_b, BB_ERR_ARG, "cuda forward: %d sequences, the workspace holds 1..%d", b, f->max_b);
    size_t bytes = (size_t)b * f->t * f->c.dim * sizeof(float);
    float *dx = NULL;
    BB_CALL(bb_cuda_malloc((void **)&dx, bytes, "cuda forward residual stream"));
    bb_status st = BB_CUDA_STATUS(cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice));
    if (!st) st = bb_cuda_fwd_block(f, w, dx, b, NULL, NULL);
    if (!st) st = BB_CUDA_STATUS(cudaMemcpy(x, dx, bytes, cudaMemcpyDeviceToHost));
    cudaFree(dx);
    return st;
}

extern "C" bb_status bb_cuda_upload(void *dst, const void *src, size_t bytes, const char *what) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? BB_OK : bb_cuda_error(e, __FILE__, __LINE__, what);
}

extern "C" bb_status bb_cuda_download(void *dst, const void *src, size_t bytes, const char *what) {
    cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? BB_OK : bb_cuda_error(e, __FILE__, __LINE__, what);
}

extern "C" void bb_cuda_free(void *p) {
    if (p) cudaFree(p);
}

/* ---- weights ---- */

extern "C" void bb_cuda_block_w_free(bb_cuda_block_w *w) {
    const float *ps[] = {w->attn_norm, w->wq, w->wk, w->wv, w->bq, w->bk, w->bv, w->wo, w->ffn_norm, w->w_gate,
                         w->w_up, w->w_down};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) cudaFree((void *)ps[i]);
    memset(w, 0, sizeof *w);
}

static bb_status upload(const bb_tensor *t, const float **out) {
    int64_t n = bb_tensor_numel(t);
    BB_CHECK(n > 0, BB_ERR_INTERNAL, "tensor %s is empty", t->name);
    float *h = (float *)malloc((size_t)n * sizeof(float)), *d = NULL;
    BB_CHECK(h, BB_ERR_OOM, "%s: %lld bytes of host memory", t->name, (long long)(n * 4));
    bb_status st = bb_tensor_read_f32(t, 0, bb_tensor_rows(t), h);
    if (!st) st = bb_cuda_malloc((void **)&d, (size_t)n * sizeof(float), t->name);
    if (!st) st = BB_CUDA_STATUS(cudaMemcpy(d, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    free(h);
    if (st) {
        cudaFree(d);
        return st;
    }
    *out = d;
    return BB_OK;
}

extern "C" bb_status bb_cuda_block_w_upload(const bb_model *m, int layer, bb_cuda_block_w *out) {
    memset(out, 0, sizeof *out);
    BB_CHECK(layer >= 0 && layer < m->cfg.n_layers, BB_ERR_ARG, "layer %d of %d", layer, m->cfg.n_layers);
    const bb_layer_weights *w = &m->layers[layer];
    bb_status st = BB_OK;
    BB_CALL_GOTO(st, fail, upload(&w->attn_norm, &out->attn_norm));
    BB_CALL_GOTO(st, fail, upload(&w->wq, &out->wq));
    BB_CALL_GOTO(st, fail, upload(&w->wk, &out->wk));
    BB_CALL_GOTO(st, fail, upload(&w->wv, &out->wv));
    BB_CALL_GOTO(st, fail, upload(&w->wo, &out->wo));
    BB_CALL_GOTO(st, fail, upload(&w->ffn_norm, &out->ffn_norm));
    BB_CALL_GOTO(st, fail, upload(&w->w_gate, &out->w_gate));
    BB_CALL_GOTO(st, fail, upload(&w->w_up, &out->w_up));
    BB_CALL_GOTO(st, fail, upload(&w->w_down, &out->w_down));
    if (m->cfg.attn_bias) {
        BB_CALL_GOTO(st, fail, upload(&w->bq, &out->bq));
        BB_CALL_GOTO(st, fail, upload(&w->bk, &out->bk));
        BB_CALL_GOTO(st, fail, upload(&w->bv, &out->bv));
    }
    return BB_OK;
fail:
    bb_cuda_block_w_free(out);
    return st;
}
