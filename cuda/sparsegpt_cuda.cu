/* sparsegpt_cuda.cu — SparseGPT on the GPU (see prune_cuda.h): per 128-column batch a radix select over
 * the block's classes (keys, 4 histogram passes, the tie ranks by a scan over rows), then one kernel for
 * the OBS sweep of every row, then the trailing gemm.
 *
 * Built with --fmad=false (CMakeLists.txt) like gptq_cuda.cu: w * w / (d * d) and w - e * u round as in
 * compress/prune.c. */
#define _Static_assert static_assert
extern "C" {
#include "compress/mask.h"
#include "compress/prune.h"
#include "core/events.h"
#include "core/log.h"
#include "core/status.h"
#include "linalg/backend.h"
}
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/check.h"
#include "cuda/prune_cuda.h"

#define BW 128
#define WARPS 8
#define FULL 0xffffffffu

/* Selection state of one batch, in device memory. */
typedef struct {
    uint32_t hist[256];
    unsigned long long forced;
    uint32_t prefix, rank;
    long long need_eq; /* keys equal to prefix that go, lowest position first */
    int none;          /* nothing to prune in this block */
} sel_state;

__device__ __forceinline__ uint32_t score_class(float s) {
    uint32_t b = __float_as_uint(s);
    return (b & 0x80000000u) ? 1u : b + 1u;
}

/* keys (rows, BW) of block [j0, j0 + BW), the forced count and the top byte's histogram. */
__global__ void sg_keys(int64_t rows, int64_t n, int64_t j0, const float *__restrict__ W, const float *__restrict__ ub,
                        int64_t ldu,
                        const uint64_t *__restrict__ mask, int64_t wpr, uint32_t *keys, sel_state *st) {
    __shared__ uint32_t h[256];
    typedef cub::BlockReduce<int, 256> Reduce;
    __shared__ typename Reduce::TempStorage tmp;
    for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
    __syncthreads();
    int forced = 0;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < rows * BW; e += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = e / BW, j = j0 + e % BW;
        const float d = ub[(e % BW) * (ldu + 1)], w = W[i * n + j];
        const int keep = (int)((mask[i * wpr + (j >> 6)] >> (j & 63)) & 1u);
        const uint32_t k = keep ? score_class(w * w / (d * d)) : 0u;
        keys[e] = k;
        forced += !keep;
        atomicAdd(&h[k >> 24], 1u);
    }
    int tot = Reduce(tmp).Sum(forced);
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
        if (h[b]) atomicAdd(&st->hist[b], h[b]);
    if (threadIdx.x == 0 && tot) atomicAdd(&st->forced, (unsigned long long)tot);
}

__global__ void sg_hist(int64_t count, const uint32_t *__restrict__ keys, int shift, sel_state *st) {
    __shared__ uint32_t h[256];
    if (st->none) return;
    for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
    __syncthreads();
    const uint32_t hm = 0xffffffffu << (shift + 8), pre = st->prefix & hm;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < count; e += (int64_t)gridDim.x * blockDim.x) {
        const uint32_t k = keys[e];
        if ((k & hm) == pre) atomicAdd(&h[(k >> shift) & 255u], 1u);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
        if (h[b]) atomicAdd(&st->hist[b], h[b]);
}

/* One warp: the bin holding rank `rank` of this pass; clears the histogram for the next pass. */
__global__ void sg_pick(int64_t count, int64_t quota, int shift, sel_state *st) {
    const int lane = threadIdx.x;
    if (shift == 24) {
        long long kk = quota > (long long)st->forced ? quota : (long long)st->forced;
        if (lane == 0) {
            st->none = kk == 0;
            st->rank = kk > 0 ? (uint32_t)(kk - 1) : 0;
            st->prefix = 0;
            st->need_eq = 0;
        }
        __syncwarp();
    }
    if (st->none) {
        for (int b = lane; b < 256; b += 32) st->hist[b] = 0;
        return;
    }
    const uint32_t rank = st->rank;
    uint32_t s = 0;
    for (int b = 0; b < 8; b++) s += st->hist[8 * lane + b];
    uint32_t incl = s;
    for (int o = 1; o < 32; o <<= 1) {
        uint32_t v = __shfl_up_sync(FULL, incl, o);
        if (lane >= o) incl += v;
    }
    const uint32_t excl = incl - s;
    uint32_t newp = 0, newr = 0;
    int found = 0;
    if (excl <= rank && rank < incl) {
        uint32_t c = excl;
        for (int b = 0; b < 8; b++) {
            const uint32_t h = st->hist[8 * lane + b];
            if (c + h > rank) {
                newp = st->prefix | (uint32_t)(8 * lane + b) << shift;
                newr = rank - c;
                found = 1;
                break;
            }
            c += h;
        }
    }
    __syncwarp();
    for (int b = lane; b < 256; b += 32) st->hist[b] = 0;
    if (found) {
        st->prefix = newp;
        st->rank = newr;
        if (shift == 0) st->need_eq = (long long)newr + 1;
    }
}

/* cnt[r] = keys of row r equal to the threshold (a warp per row). */
__global__ void sg_rowties(int64_t rows, const uint32_t *__restrict__ keys, const sel_state *st, int *cnt) {
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const uint32_t t = st->prefix;
    int c = 0;
    for (int q = 0; q < BW / 32; q++) c += __popc(__ballot_sync(FULL, keys[r * BW + 32 * q + lane] == t));
    if (lane == 0) cnt[r] = c;
}

/* Exclusive prefix sums of cnt (rows) into base, one block. */
__global__ void __launch_bounds__(1024) sg_scan(int64_t rows, const int *cnt, long long *base) {
    typedef cub::BlockScan<long long, 1024> Scan;
    __shared__ typename Scan::TempStorage tmp;
    const int64_t per = (rows + 1023) / 1024, a = threadIdx.x * per, b = a + per < rows ? a + per : rows;
    long long s = 0;
    for (int64_t r = a; r < b; r++) s += cnt[r];
    long long off = 0;
    Scan(tmp).ExclusiveSum(s, off);
    for (int64_t r = a; r < b; r++) {
        base[r] = off;
        off += cnt[r];
    }
}

/* The OBS sweep of batch [j0, j0 + BW) for one row per warp. */
__global__ void __launch_bounds__(WARPS * 32) sg_batch(int64_t rows, int64_t n, int64_t j0, float *W,
                                                       const float *__restrict__ ub, int64_t ldu,
                                                       float *__restrict__ E,
                                                       const uint32_t *__restrict__ keys, const sel_state *st,
                                                       const long long *__restrict__ base, uint64_t *mask,
                                                       int64_t wpr) {
    extern __shared__ float us[]; /* (BW, BW) */
    for (int idx = threadIdx.x; idx < BW * BW; idx += blockDim.x) {
        int i = idx / BW, j = idx % BW;
        us[idx] = j >= i ? ub[i * ldu + j] : 0.0f;
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r >= rows) return;
    const uint32_t thr = st->prefix;
    const long long need = st->none ? 0 : st->need_eq;
    const int none = st->none;
    long long run = base[r];
    float w[4], ev[4];
    int pr[4];
#pragma unroll
    for (int t = 0; t < 4; t++) {
        w[t] = W[r * n + j0 + 32 * t + lane];
        const uint32_t k = keys[r * BW + 32 * t + lane];
        const unsigned ball = __ballot_sync(FULL, k == thr);
        const long long before = run + __popc(ball & ((1u << lane) - 1u));
        pr[t] = !none && (k < thr || (k == thr && before < need));
        run += __popc(ball);
        ev[t] = 0;
    }
#pragma unroll
    for (int t = 0; t < 4; t++) {
#pragma unroll
        for (int cc = 0; cc < 32; cc++) {
            const int i = 32 * t + cc;
            const float v = __shfl_sync(FULL, w[t], cc);
            const int p = __shfl_sync(FULL, pr[t], cc);
            const float q = p ? 0.0f : v, e = (v - q) / us[i * BW + i];
#pragma unroll
            for (int t2 = t; t2 < 4; t2++) {
                const int j = 32 * t2 + lane;
                if (j > i) w[t2] = w[t2] - e * us[i * BW + j];
            }
            if (lane == cc) {
                w[t] = q;
                ev[t] = e;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < 4; t++) {
        W[r * n + j0 + 32 * t + lane] = w[t];
        E[r * BW + 32 * t + lane] = ev[t];
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const unsigned lo = __ballot_sync(FULL, !pr[2 * h]), hi = __ballot_sync(FULL, !pr[2 * h + 1]);
        if (lane == 0) mask[r * wpr + j0 / 64 + h] &= (uint64_t)lo | (uint64_t)hi << 32;
    }
}

static bb_status sg_scratch(bb_cuda_ctx *c, int64_t rows, float **e, uint32_t **keys, int **cnt, long long **base,
                            sel_state **st, float **y);
static bb_status sg_select_and_sweep(int64_t rows, int64_t cols, int64_t j0, int64_t quota, float *w, const float *ub,
                                     int64_t ldu, float *e, uint32_t *keys, int *cnt, long long *base, sel_state *st,
                                     uint64_t *mask);

extern "C" bb_status bb_cuda_sparsegpt_factored(bb_cuda_ctx *c, int64_t rows, int64_t cols, double sparsity,
                                                bb_cuda_math trail, float *w, const float *u, uint64_t *mask) {
    BB_CHECK(rows >= 1 && cols >= BW && cols % BW == 0 && cols <= 2147483647 && rows * BW <= 2147483647, BB_ERR_ARG,
             "cuda SparseGPT: %lld x %lld: the columns must be a positive multiple of %d", (long long)rows,
             (long long)cols, BW);
    BB_CHECK(sparsity >= 0 && sparsity < 1, BB_ERR_ARG, "cuda SparseGPT: sparsity %g must be in [0, 1)", sparsity);
    const int64_t quota = (int64_t)floor((double)(rows * BW) * sparsity + 1e-9);
    float *e, *y;
    uint32_t *keys;
    int *cnt;
    long long *base;
    sel_state *st;
    BB_CALL(sg_scratch(c, rows, &e, &keys, &cnt, &base, &st, &y));
    for (int64_t j0 = 0; j0 < cols; j0 += BW) {
        BB_CALL(sg_select_and_sweep(rows, cols, j0, quota, w, u + j0 * cols + j0, cols, e, keys, cnt, base, st, mask));
        if (j0 + BW < cols)
            BB_CALL(bb_cuda_gemm(c, trail, BB_OP_N, BB_OP_N, rows, cols - j0 - BW, BW, -1.0f, e, BW,
                                 u + j0 * cols + j0 + BW, cols, 1.0f, w + j0 + BW, cols));
    }
    return BB_OK;
}

/* Scratch of the selection: e (rows, BW), keys (rows, BW), cnt (rows), base (rows), the state. */
static bb_status sg_scratch(bb_cuda_ctx *c, int64_t rows, float **e, uint32_t **keys, int **cnt, long long **base,
                            sel_state **st, float **y) {
    char *buf;
    const size_t bytes = (size_t)(rows * BW) * 4 * 3 + (size_t)rows * 4 + (size_t)rows * 8 + sizeof(sel_state) + 64;
    BB_CALL(bb_cuda_scratch(c, 2, bytes, (void **)&buf));
    *e = (float *)buf;
    *y = *e + rows * BW;
    *keys = (uint32_t *)(*y + rows * BW);
    *base = (long long *)(((uintptr_t)(*keys + rows * BW) + 7) & ~(uintptr_t)7);
    *cnt = (int *)(*base + rows);
    *st = (sel_state *)(((uintptr_t)(*cnt + rows) + 15) & ~(uintptr_t)15);
    return BB_OK;
}

static bb_status sg_select_and_sweep(int64_t rows, int64_t cols, int64_t j0, int64_t quota, float *w, const float *ub,
                                     int64_t ldu, float *e, uint32_t *keys, int *cnt, long long *base, sel_state *st,
                                     uint64_t *mask) {
    const int64_t wpr = cols / 64;
    const size_t shm = (size_t)BW * BW * sizeof(float);
    BB_CUDA_CALL(cudaFuncSetAttribute(sg_batch, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    const unsigned rb = (unsigned)((rows + WARPS - 1) / WARPS);
    const unsigned eb = (unsigned)((rows * BW + 255) / 256 < 1024 ? (rows * BW + 255) / 256 : 1024);
    {
        BB_CUDA_CALL(cudaMemsetAsync(st, 0, sizeof(sel_state)));
        sg_keys<<<eb, 256>>>(rows, cols, j0, w, ub, ldu, mask, wpr, keys, st);
        sg_pick<<<1, 32>>>(rows * BW, quota, 24, st);
        for (int shift = 16; shift >= 0; shift -= 8) {
            sg_hist<<<eb, 256>>>(rows * BW, keys, shift, st);
            sg_pick<<<1, 32>>>(rows * BW, quota, shift, st);
        }
        sg_rowties<<<rb, WARPS * 32>>>(rows, keys, st, cnt);
        sg_scan<<<1, 1024>>>(rows, cnt, base);
        sg_batch<<<rb, WARPS * 32, shm>>>(rows, cols, j0, w, ub, ldu, e, keys, st, base, mask, wpr);
        BB_CUDA_CALL(cudaGetLastError());
    }
    return BB_OK;
}

/* The batches on V = U^-1 (bb_cuda_obs_*), as GPTQ's. */
static bb_status sparsegpt_on_v(bb_cuda_ctx *c, int64_t rows, int64_t cols, double sparsity, bb_cuda_math trail,
                                float *w, const float *v, uint64_t *mask) {
    const int64_t quota = (int64_t)floor((double)(rows * BW) * sparsity + 1e-9);
    float *e, *y, *t = NULL, *ubb = NULL;
    uint32_t *keys;
    int *cnt;
    long long *base;
    sel_state *st;
    bb_status s = BB_OK;
    BB_CALL(sg_scratch(c, rows, &e, &keys, &cnt, &base, &st, &y));
    BB_CALL(bb_cuda_malloc((void **)&t, (size_t)(rows * cols) * sizeof(float), "SparseGPT accumulated updates"));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&ubb, (size_t)(cols * BW) * sizeof(float), "SparseGPT blocks"));
    {
        cudaError_t ce = cudaMemset(t, 0, (size_t)(rows * cols) * sizeof(float));
        if (ce != cudaSuccess) BB_CALL_GOTO(s, done, bb_cuda_error(ce, __FILE__, __LINE__, "cudaMemset"));
    }
    BB_CALL_GOTO(s, done, bb_cuda_obs_prepare(v, cols, ubb));
    for (int64_t b = 0; b < cols / BW; b++) {
        BB_CALL_GOTO(s, done, bb_cuda_obs_before(c, rows, cols, b, w, t, ubb));
        BB_CALL_GOTO(s, done, sg_select_and_sweep(rows, cols, b * BW, quota, w, ubb + b * BW * BW, BW, e, keys, cnt,
                                                  base, st, mask));
        BB_CALL_GOTO(s, done, bb_cuda_obs_after(c, trail, rows, cols, b, e, t, ubb, v, y));
    }
done:
    cudaFree(t);
    cudaFree(ubb);
    return s;
}

__global__ void sg_dead(float *w, int64_t rows, int64_t n, const float *h) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n || h[j * (n + 1)] != 0) return;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) w[r * n + j] = 0;
}

extern "C" bb_status bb_cuda_sparsegpt(bb_cuda_ctx *c, const char *name, int64_t rows, int64_t cols, double sparsity,
                                       double damp, double damp_max, bb_cuda_math trail, float *w, const float *h,
                                       uint64_t *mask, double *damp_used) {
    name = name ? name : "(unnamed)";
    float *u = NULL;
    bb_status st = BB_OK;
    double dummy;
    BB_CALL(bb_cuda_malloc((void **)&u, (size_t)(cols * cols) * sizeof(float), "SparseGPT inverse factor"));
    {
        dim3 g((unsigned)((cols + 255) / 256), 64);
        sg_dead<<<g, 256>>>(w, rows, cols, h);
        cudaError_t ce = cudaGetLastError();
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "sg_dead"));
    }
    BB_CHECK_GOTO(st, done, cols % BW == 0 && cols >= BW && sparsity >= 0 && sparsity < 1, BB_ERR_ARG,
                  "%s: cuda SparseGPT: %lld columns (a positive multiple of %d needed), sparsity %g", name,
                  (long long)cols, BW, sparsity);
    BB_CALL_GOTO(st, done, bb_cuda_factor_inverse_of_u(c, name, h, cols, damp, damp_max, u, damp_used ? damp_used : &dummy));
    BB_CALL_GOTO(st, done, sparsegpt_on_v(c, rows, cols, sparsity, trail, w, u, mask));
done:
    cudaFree(u);
    return st;
}

extern "C" bb_status bb_cuda_prune_sparsegpt(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    BB_CHECK(o && l && l->w && l->mask && l->mask->rows == l->rows && l->mask->cols == l->cols, BB_ERR_ARG,
             "cuda sparsegpt: NULL options, weights or a mask of the wrong shape");
    const char *name = l->name ? l->name : "?";
    BB_CHECK(!o->pattern.m && !o->per_row && !o->fixed_mask && o->block_size == BW && l->cols % BW == 0,
             BB_ERR_UNSUPPORTED,
             "%s: the cuda sparsegpt runs unstructured, per-block selection with prune.block_size %d on a multiple "
             "of %d columns (got pattern %d:%d, per_row %d, fixed_mask %d, block %d, %lld columns); use the cpu path",
             name, BW, BW, o->pattern.n, o->pattern.m, o->per_row, o->fixed_mask, o->block_size, (long long)l->cols);
    BB_CHECK(l->h, BB_ERR_ARG, "%s: sparsegpt needs the Gram H = X^T X of the layer input", name);
    const int64_t rows = l->rows, cols = l->cols, wpr = l->mask->words_per_row;
    for (int64_t k = 0; k < cols * cols; k++)
        BB_CHECK(isfinite(l->h[k]), BB_ERR_NUMERIC,
                 "%s: sparsegpt: the Gram H has %g at (%lld, %lld); recollect the calibration statistics", name,
                 (double)l->h[k], (long long)(k / cols), (long long)(k % cols));
    for (int64_t k = 0; k < rows * cols; k++)
        BB_CHECK(isfinite(l->w[k]), BB_ERR_NUMERIC, "%s: sparsegpt: weight (%lld, %lld) is %g", name,
                 (long long)(k / cols), (long long)(k % cols), (double)l->w[k]);
    double t0 = bb_now();
    bb_event_begin("cuda.sparsegpt");
    bb_cuda_ctx *c = NULL;
    float *dw = NULL, *dh = NULL;
    uint64_t *dm = NULL;
    bb_status s = BB_OK;
    double used = 0, d0 = o->damp > 0 ? o->damp : 0;
    double dmax = (o->damp > 0 ? o->damp : 1e-4) * pow(10.0, o->max_retries);
    BB_CALL_GOTO(s, done, bb_cuda_ctx_create(&c));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dw, (size_t)(rows * cols) * 4, "sparsegpt weights"));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dh, (size_t)(cols * cols) * 4, "sparsegpt Gram"));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dm, (size_t)(rows * wpr) * 8, "sparsegpt mask"));
    if (cudaMemcpy(dw, l->w, (size_t)(rows * cols) * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(dh, l->h, (size_t)(cols * cols) * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(dm, l->mask->bits, (size_t)(rows * wpr) * 8, cudaMemcpyHostToDevice) != cudaSuccess)
        BB_CALL_GOTO(s, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "upload"));
    BB_CALL_GOTO(s, done, bb_cuda_sparsegpt(c, name, rows, cols, o->sparsity, d0, dmax, BB_CUDA_FP32, dw, dh, dm, &used));
    if (cudaMemcpy(l->w, dw, (size_t)(rows * cols) * 4, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(l->mask->bits, dm, (size_t)(rows * wpr) * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
        BB_CALL_GOTO(s, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "download"));
    bb_mask_apply(l->mask, l->w);
    if (st) {
        memset(st, 0, sizeof *st);
        st->kept = bb_mask_count(l->mask);
        st->density = bb_mask_density(l->mask);
        st->mask_bytes = bb_mask_nbytes(l->mask);
        st->damp_used = used;
        for (int64_t j = 0; j < cols; j++) st->dead += l->h[j * (cols + 1)] == 0;
        st->seconds = bb_now() - t0;
    }
done:
    bb_event_end("cuda.sparsegpt", (double)rows * cols * cols * 2 + (double)cols * cols * cols / 3, 0);
    cudaFree(dw);
    cudaFree(dh);
    cudaFree(dm);
    bb_cuda_ctx_destroy(&c);
    return s;
}
