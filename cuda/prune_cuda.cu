/* prune_cuda.cu — Wanda's per-row selection on the GPU (see prune_cuda.h). */
/* The C headers use C11 _Static_assert. */
#define _Static_assert static_assert
extern "C" {
#include "compress/mask.h"
#include "compress/prune.h"
#include "compress/usage.h"
#include "core/events.h"
#include "core/log.h"
#include "core/status.h"
}
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <math.h>
#include <stdlib.h>

#include "cuda/check.h"
#include "cuda/prune_cuda.h"

#define THREADS 256
#define PRUNED 0xffffffffu /* no score class reaches it: classes are <= 0x80000000 */

/* One block per row. Class of a weight: 0 if the incoming mask prunes it, else 1 + the bits of its
 * non-negative f32 score (prune.c's score_class). The kk = max(k, forced) lowest (class, column) go. */
__global__ void __launch_bounds__(THREADS) wanda_rows(int64_t cols, int64_t k, float *W, const float *__restrict__ xn,
                                                     uint64_t *mask, int64_t wpr) {
    extern __shared__ uint32_t key[];
    __shared__ uint32_t hist[256];
    __shared__ uint32_t s_prefix, s_rank;
    __shared__ int64_t s_forced;
    typedef cub::BlockReduce<int, THREADS> Reduce;
    typedef cub::BlockScan<int, THREADS> Scan;
    __shared__ union {
        typename Reduce::TempStorage r;
        typename Scan::TempStorage s;
    } tmp;
    const int tid = threadIdx.x;
    float *wr = W + (int64_t)blockIdx.x * cols;
    uint64_t *mr = mask + (int64_t)blockIdx.x * wpr;
    int forced = 0;
    for (int64_t j = tid; j < cols; j += THREADS) {
        const int kept = (int)((mr[j >> 6] >> (j & 63)) & 1u);
        const uint32_t b = __float_as_uint(fabsf(wr[j]) * xn[j]);
        key[j] = kept ? ((b & 0x80000000u) ? 1u : b + 1u) : 0u;
        forced += !kept;
    }
    int total = Reduce(tmp.r).Sum(forced);
    if (tid == 0) s_forced = total;
    __syncthreads();
    const int64_t kk = k > s_forced ? k : s_forced;
    if (kk == 0) return; /* nothing pruned: mask and weights stay */
    /* Radix select of rank kk - 1 (0-based): 4 passes of 8 bits, most significant first. */
    uint32_t prefix = 0, rank = (uint32_t)(kk - 1);
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 24 - 8 * pass;
        const uint32_t hm = pass == 0 ? 0u : 0xffffffffu << (shift + 8);
        for (int b = tid; b < 256; b += THREADS) hist[b] = 0;
        __syncthreads();
        for (int64_t j = tid; j < cols; j += THREADS) {
            const uint32_t kj = key[j];
            if ((kj & hm) == (prefix & hm)) atomicAdd(&hist[(kj >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid < 32) {
            uint32_t s = 0;
            for (int b = 0; b < 8; b++) s += hist[8 * tid + b];
            uint32_t incl = s;
            for (int o = 1; o < 32; o <<= 1) {
                uint32_t v = __shfl_up_sync(0xffffffffu, incl, o);
                if (tid >= o) incl += v;
            }
            const uint32_t excl = incl - s;
            if (excl <= rank && rank < incl) {
                uint32_t c = excl;
                for (int b = 0; b < 8; b++) {
                    const uint32_t h = hist[8 * tid + b];
                    if (c + h > rank) {
                        s_prefix = prefix | (uint32_t)(8 * tid + b) << shift;
                        s_rank = rank - c;
                        break;
                    }
                    c += h;
                }
            }
        }
        __syncthreads();
        prefix = s_prefix;
        rank = s_rank;
        __syncthreads();
    }
    const uint32_t thr = prefix;
    const int64_t need_eq = (int64_t)rank + 1; /* keys equal to thr that go, lowest columns first */
    /* Tie ranks: each thread owns whole mask words, counts its ties, and a block scan orders them. */
    const int64_t wpt = (wpr + THREADS - 1) / THREADS, w0 = tid * wpt, w1 = w0 + wpt < wpr ? w0 + wpt : wpr;
    int eq = 0;
    for (int64_t wd = w0; wd < w1; wd++)
        for (int64_t j = wd * 64; j < wd * 64 + 64 && j < cols; j++) eq += key[j] == thr;
    int base = 0;
    Scan(tmp.s).ExclusiveSum(eq, base);
    __syncthreads();
    int64_t seen = base;
    for (int64_t wd = w0; wd < w1; wd++) {
        uint64_t bits = 0;
        for (int64_t j = wd * 64; j < wd * 64 + 64 && j < cols; j++) {
            const uint32_t kj = key[j];
            int pruned = kj < thr;
            if (kj == thr) pruned = seen++ < need_eq;
            if (pruned)
                key[j] = PRUNED;
            else
                bits |= (uint64_t)1 << (j & 63);
        }
        mr[wd] = bits;
    }
    __syncthreads();
    for (int64_t j = tid; j < cols; j += THREADS)
        if (key[j] == PRUNED) wr[j] = 0.0f;
}

extern "C" bb_status bb_cuda_wanda(int64_t rows, int64_t cols, double sparsity, float *w, const float *xnorm,
                                   uint64_t *mask) {
    BB_CHECK(rows >= 0 && cols >= 0 && cols <= 50000 && rows <= 2147483647, BB_ERR_UNSUPPORTED,
             "cuda wanda: %lld x %lld: at most 50000 columns fit a row's keys in shared memory; use the cpu path",
             (long long)rows, (long long)cols);
    BB_CHECK(sparsity >= 0 && sparsity < 1, BB_ERR_ARG, "cuda wanda: sparsity %g must be in [0, 1)", sparsity);
    if (rows == 0 || cols == 0) return BB_OK;
    const int64_t k = (int64_t)floor((double)cols * sparsity + 1e-9); /* prune.c's quota */
    const size_t shm = (size_t)cols * sizeof(uint32_t);
    BB_CUDA_CALL(cudaFuncSetAttribute(wanda_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    wanda_rows<<<(unsigned)rows, THREADS, shm>>>(cols, k, w, xnorm, mask, (cols + 63) / 64);
    BB_CUDA_CALL(cudaGetLastError());
    return BB_OK;
}

extern "C" bb_status bb_cuda_prune_wanda(const bb_prune_opts *o, bb_prune_layer *l, bb_prune_stats *st) {
    BB_CHECK(o && l && l->w && l->mask && l->mask->rows == l->rows && l->mask->cols == l->cols, BB_ERR_ARG,
             "cuda wanda: NULL options, weights or a mask of the wrong shape");
    const char *name = l->name ? l->name : "?";
    BB_CHECK(o->pattern.m == 0, BB_ERR_UNSUPPORTED, "%s: cuda wanda: N:M patterns run on the cpu path", name);
    double t0 = bb_now();
    const int64_t rows = l->rows, cols = l->cols, wpr = l->mask->words_per_row;
    float *xh = NULL, *dw = NULL, *dx = NULL;
    uint64_t *dm = NULL;
    bb_status s = BB_OK;
    if (!l->xnorm) {
        BB_CHECK(l->h, BB_ERR_ARG, "%s: wanda needs the input norms ||X_j|| or the Gram H", name);
        BB_CALL(bb_malloc((void **)&xh, sizeof(float) * (size_t)(cols ? cols : 1), "input norms"));
        BB_CALL_GOTO(s, done, bb_usage_xnorm_from_gram(name, cols, l->h, xh));
    } else {
        for (int64_t j = 0; j < cols; j++)
            BB_CHECK_GOTO(s, done, isfinite(l->xnorm[j]) && l->xnorm[j] >= 0, BB_ERR_NUMERIC,
                          "%s: wanda: ||X_%lld|| = %g", name, (long long)j, (double)l->xnorm[j]);
    }
    for (int64_t e = 0; e < rows * cols; e++)
        BB_CHECK_GOTO(s, done, isfinite(l->w[e]), BB_ERR_NUMERIC, "%s: wanda: weight (%lld, %lld) is %g", name,
                      (long long)(e / cols), (long long)(e % cols), (double)l->w[e]);
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dw, (size_t)(rows * cols) * 4 + 4, "wanda weights"));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dx, (size_t)cols * 4 + 4, "wanda norms"));
    BB_CALL_GOTO(s, done, bb_cuda_malloc((void **)&dm, (size_t)(rows * wpr) * 8 + 8, "wanda mask"));
    if (cudaMemcpy(dw, l->w, (size_t)(rows * cols) * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(dx, l->xnorm ? l->xnorm : xh, (size_t)cols * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(dm, l->mask->bits, (size_t)(rows * wpr) * 8, cudaMemcpyHostToDevice) != cudaSuccess)
        BB_CALL_GOTO(s, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "upload"));
    bb_event_begin("cuda.wanda");
    s = bb_cuda_wanda(rows, cols, o->sparsity, dw, dx, dm);
    if (s == BB_OK && cudaDeviceSynchronize() != cudaSuccess)
        s = bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "cudaDeviceSynchronize");
    bb_event_end("cuda.wanda", 0, (double)rows * cols * 6);
    if (s != BB_OK) {
        bb_trace(s, __FILE__, __LINE__, "bb_cuda_wanda");
        goto done;
    }
    if (cudaMemcpy(l->w, dw, (size_t)(rows * cols) * 4, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(l->mask->bits, dm, (size_t)(rows * wpr) * 8, cudaMemcpyDeviceToHost) != cudaSuccess)
        BB_CALL_GOTO(s, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "download"));
    if (st) {
        st->kept = bb_mask_count(l->mask);
        st->density = bb_mask_density(l->mask);
        st->mask_bytes = bb_mask_nbytes(l->mask);
        st->seconds = bb_now() - t0;
    }
done:
    free(xh);
    cudaFree(dw);
    cudaFree(dx);
    cudaFree(dm);
    return s;
}

/* ---- mask application (bb_mask_apply on the device) ---- */

__global__ void mask_apply_k(int64_t rows, int64_t cols, int64_t wpr, float *w, const uint64_t *mask) {
    int64_t total = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        if (!((mask[r * wpr + c / 64] >> (c % 64)) & 1u)) w[i] = 0.0f;
    }
}

extern "C" bb_status bb_cuda_mask_apply(int64_t rows, int64_t cols, float *w, const uint64_t *mask) {
    BB_CHECK(rows >= 0 && cols >= 0, BB_ERR_ARG, "cuda mask apply: %lld x %lld", (long long)rows, (long long)cols);
    if (rows == 0 || cols == 0) return BB_OK;
    int64_t blocks = (rows * cols + 255) / 256;
    mask_apply_k<<<(unsigned)(blocks > 65535 ? 65535 : blocks), 256>>>(rows, cols, (cols + 63) / 64, w, mask);
    BB_CUDA_CALL(cudaGetLastError());
    return BB_OK;
}
