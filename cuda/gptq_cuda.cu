/* gptq_cuda.cu — GPTQ's column loop, one kernel per 128-column lazy batch (see gptq_cuda.h).
 *
 * Built with --fmad=false (CMakeLists.txt): every a - b * c here is a multiply then a subtract, as in
 * compress/gptq.c (built with fp-contract off) and qformat's scale search, so that equal inputs give
 * equal bits. */
/* The C headers use C11 _Static_assert. */
#define _Static_assert static_assert
extern "C" {
#include "core/events.h"
#include "core/log.h"
#include "core/status.h"
#include "io/qformat.h"
#include "compress/quant.h"
#include "linalg/backend.h"
}
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/check.h"
#include "cuda/gptq_cuda.h"

#define BW 128   /* lazy-batch columns */
#define WARPS 8  /* rows (one warp each) per block */
#define FULL 0xffffffffu

/* qformat.c's symmetric search constants (bb_qformat_fit_symmetric). */
#define SEARCH_STEP 0.0125
#define SEARCH_DOWN 24
#define SEARCH_UP 8
#define REFINE_ITERS 4
#define NCAND (2 * (SEARCH_DOWN + SEARCH_UP + 1))

extern "C" void bb_cuda_gptq_opts_default(bb_cuda_gptq_opts *o) {
    o->grid = BB_CUDA_GRID_Q4_0;
    o->importance = 1;
    o->damp = 0.01;
    o->damp_max = 10;
    o->trail = BB_CUDA_FP32;
}

extern "C" int64_t bb_cuda_gptq_code_bytes(bb_cuda_grid g, int64_t rows, int64_t cols) {
    return g == BB_CUDA_GRID_Q4_0 ? rows * (cols / 32) * 18 : rows * cols;
}

/* bb_qformat_nearest */
__device__ __forceinline__ int nearest(double v, int lo, int hi) {
    if (!(v > lo)) return lo;
    if (v >= hi) return hi;
    return lo + (int)(v - lo + 0.5);
}

/* bb_qformat_fit_symmetric(x, wt, 32, 8) for Q4_0 by one warp: every lane scans the 32 values the same
 * way (the same double sums in the same order as the CPU), the 66 candidate scales are split over the
 * lanes and the best is the first (in the CPU's candidate order) of the largest gain. */
__device__ double fit_symmetric_warp(const float *x, const float *wt, int lane) {
    const int lo = -8, hi = 7;
    int uni = 1;
    if (wt)
        for (int i = 0; i < 32; i++)
            if (wt[i] > 0) uni = 0;
    if (!wt) uni = 1;
    double amax = 0, m = 0;
    for (int i = 0; i < 32; i++) {
        if (fabs((double)x[i]) > amax) {
            amax = fabs((double)x[i]);
            m = x[i];
        }
    }
    if (amax == 0) return 0;
    double bg = -1, bsxq = 0, bsqq = 1;
    int bc = 1 << 30;
    for (int cand = lane; cand < NCAND; cand += 32) {
        const int side = cand / (SEARCH_DOWN + SEARCH_UP + 1), k = cand % (SEARCH_DOWN + SEARCH_UP + 1) - SEARCH_DOWN;
        const double target = side ? hi : lo;
        double iscale = target * (1.0 + SEARCH_STEP * k) / m, sxq = 0, sqq = 0;
        for (int i = 0; i < 32; i++) {
            double wi = uni ? 1.0 : wt[i];
            int q = nearest(x[i] * iscale, lo, hi);
            sxq += wi * x[i] * q;
            sqq += wi * q * q;
        }
        if (sqq > 0 && sxq * sxq / sqq > bg) {
            bg = sxq * sxq / sqq;
            bsxq = sxq;
            bsqq = sqq;
            bc = cand;
        }
    }
    for (int o = 16; o; o >>= 1) {
        double og = __shfl_xor_sync(FULL, bg, o), ox = __shfl_xor_sync(FULL, bsxq, o),
               oq = __shfl_xor_sync(FULL, bsqq, o);
        int oc = __shfl_xor_sync(FULL, bc, o);
        if (og > bg || (og == bg && oc < bc)) {
            bg = og;
            bsxq = ox;
            bsqq = oq;
            bc = oc;
        }
    }
    double best_d = bg > -1 ? bsxq / bsqq : 0;
    for (int it = 0; it < REFINE_ITERS && best_d != 0; it++) {
        double sxq = 0, sqq = 0;
        for (int i = 0; i < 32; i++) {
            double wi = uni ? 1.0 : wt[i];
            int q = nearest(x[i] / best_d, lo, hi);
            sxq += wi * x[i] * q;
            sqq += wi * q * q;
        }
        if (!(sqq > 0) || sxq / sqq == best_d) break;
        best_d = sxq / sqq;
    }
    return best_d;
}

/* One lazy batch [i1, i1 + nb) for rows blockIdx.x * WARPS + warp; ub (nb, nb) the batch's diagonal block
 * of U (leading dimension ldu). Lane l holds columns 32 t + l of the
 * batch in w[t]. Columns go one by one: quantize, record the scaled error, update the later columns of
 * the batch. At the end the batch's columns of W hold Ŵ and E (rows, BW) the scaled errors. */
template <int GRID>
__global__ void __launch_bounds__(WARPS * 32) gptq_batch(int64_t rows, int64_t n, int64_t i1, int nb, float *W,
                                                         const float *__restrict__ ub, int64_t ldu,
                                                         float *__restrict__ E,
                                                         uint8_t *__restrict__ codes, float *__restrict__ params,
                                                         const float *__restrict__ imp) {
    extern __shared__ float smem[];
    float *us = smem;          /* (BW, BW): U[i1 + i][i1 + j] */
    float *imps = us + BW * BW; /* (BW) */
    float *xs = imps + BW;     /* (WARPS, 32) */
    for (int idx = threadIdx.x; idx < nb * nb; idx += blockDim.x) {
        int i = idx / nb, j = idx % nb;
        us[i * BW + j] = j >= i ? ub[i * ldu + j] : 0.0f;
    }
    if (imp)
        for (int idx = threadIdx.x; idx < nb; idx += blockDim.x) imps[idx] = imp[i1 + idx];
    __syncthreads();
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const int64_t r = (int64_t)blockIdx.x * WARPS + wid;
    if (r >= rows) return;
    float *wr = W + r * n + i1;
    float w[4], yv[4], ev[4];
    int qv[4];
#pragma unroll
    for (int t = 0; t < 4; t++) {
        w[t] = 32 * t + lane < nb ? wr[32 * t + lane] : 0.0f;
        yv[t] = ev[t] = 0;
        qv[t] = 0;
    }
    float *xw = xs + wid * 32;
    float sc = 0, zero = 0;
#pragma unroll
    for (int t = 0; t < 4; t++) {
        if (32 * t >= nb) break;
        if (GRID == BB_CUDA_GRID_Q4_0) {
            xw[lane] = w[t];
            __syncwarp();
            double bd = fit_symmetric_warp(xw, imp ? imps + 32 * t : NULL, lane);
            if (bd > 65504.0) bd = 65504.0;
            if (bd < -65504.0) bd = -65504.0;
            __half hd = __float2half_rn((float)bd);
            sc = __half2float(hd);
            if (lane == 0) {
                __half_raw raw = hd;
                *(uint16_t *)(codes + (r * (n / 32) + i1 / 32 + t) * 18) = raw.x;
            }
            __syncwarp();
        } else if (t == 0) {
            float mn = fminf(fminf(w[0], w[1]), fminf(w[2], w[3])), mx = fmaxf(fmaxf(w[0], w[1]), fmaxf(w[2], w[3]));
            for (int o = 16; o; o >>= 1) {
                mn = fminf(mn, __shfl_xor_sync(FULL, mn, o));
                mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, o));
            }
            mn = fminf(mn, 0.0f);
            mx = fmaxf(mx, 0.0f);
            sc = (mx - mn) / 15.0f;
            if (sc == 0) sc = 1;
            zero = rintf(-mn / sc);
            if (lane == 0) {
                params[(r * (n / BW) + i1 / BW) * 2] = sc;
                params[(r * (n / BW) + i1 / BW) * 2 + 1] = zero;
            }
        }
#pragma unroll
        for (int cc = 0; cc < 32; cc++) {
            const int i = 32 * t + cc;
            const float v = __shfl_sync(FULL, w[t], cc);
            int q;
            float y;
            if (GRID == BB_CUDA_GRID_Q4_0) {
                q = sc != 0 ? nearest((double)v / (double)sc, -8, 7) : 0;
                y = (float)q * sc;
            } else {
                float qq = fminf(fmaxf(rintf(v / sc) + zero, 0.0f), 15.0f);
                q = (int)qq;
                y = sc * (qq - zero);
            }
            const float d = (v - y) / us[i * BW + i];
            if (lane == cc) {
                qv[t] = q;
                yv[t] = y;
                ev[t] = d;
            }
#pragma unroll
            for (int t2 = t; t2 < 4; t2++) {
                const int j = 32 * t2 + lane;
                if (j > i && j < nb) w[t2] = w[t2] - d * us[i * BW + j];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < 4; t++) {
        if (32 * t >= nb) break;
        wr[32 * t + lane] = yv[t];
        E[r * BW + 32 * t + lane] = ev[t];
        if (GRID == BB_CUDA_GRID_Q4_0) {
            int hi = __shfl_sync(FULL, qv[t], (lane + 16) & 31);
            if (lane < 16) codes[(r * (n / 32) + i1 / 32 + t) * 18 + 2 + lane] = (uint8_t)((qv[t] + 8) | (hi + 8) << 4);
        } else {
            codes[r * n + i1 + 32 * t + lane] = (uint8_t)qv[t];
        }
    }
}

extern "C" bb_status bb_cuda_gptq_factored(bb_cuda_ctx *c, const bb_cuda_gptq_opts *o, int64_t rows, int64_t cols,
                                           float *w, const float *u, const float *imp, uint8_t *codes,
                                           float *params) {
    const int gsz = o->grid == BB_CUDA_GRID_Q4_0 ? 32 : BW;
    BB_CHECK(rows >= 1 && cols >= gsz && cols % gsz == 0 && cols <= 2147483647 && rows <= 2147483647, BB_ERR_ARG,
             "cuda GPTQ: %lld x %lld: the columns must be a positive multiple of %d for the %s grid", (long long)rows,
             (long long)cols, gsz, o->grid == BB_CUDA_GRID_Q4_0 ? "q4_0" : "g128");
    BB_CHECK(o->grid != BB_CUDA_GRID_G128 || params, BB_ERR_ARG, "cuda GPTQ g128: NULL params");
    float *e;
    BB_CALL(bb_cuda_scratch(c, 2, (size_t)(rows * BW) * sizeof(float), (void **)&e));
    const size_t shm = (size_t)(BW * BW + BW + WARPS * 32) * sizeof(float);
    if (o->grid == BB_CUDA_GRID_Q4_0)
        BB_CUDA_CALL(cudaFuncSetAttribute(gptq_batch<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    else
        BB_CUDA_CALL(cudaFuncSetAttribute(gptq_batch<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm));
    const unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
    for (int64_t i1 = 0; i1 < cols; i1 += BW) {
        const int64_t i2 = i1 + BW < cols ? i1 + BW : cols;
        const int nb = (int)(i2 - i1);
        const float *ub = u + i1 * cols + i1;
        if (o->grid == BB_CUDA_GRID_Q4_0)
            gptq_batch<0><<<blocks, WARPS * 32, shm>>>(rows, cols, i1, nb, w, ub, cols, e, codes, params, imp);
        else
            gptq_batch<1><<<blocks, WARPS * 32, shm>>>(rows, cols, i1, nb, w, ub, cols, e, codes, params, NULL);
        BB_CUDA_CALL(cudaGetLastError());
        if (i2 < cols)
            BB_CALL(bb_cuda_gemm(c, o->trail, BB_OP_N, BB_OP_N, rows, cols - i2, nb, -1.0f, e, BW, u + i1 * cols + i2,
                                 cols, 1.0f, w + i2, cols));
    }
    return BB_OK;
}

/* The batches on V = U^-1 (bb_cuda_obs_*): no triangular inverse. cols a multiple of 128. */
static bb_status gptq_on_v(bb_cuda_ctx *c, const bb_cuda_gptq_opts *o, int64_t rows, int64_t cols, float *w,
                           const float *v, const float *imp, uint8_t *codes, float *params) {
    float *t = NULL, *ubb = NULL, *e, *y;
    bb_status st = BB_OK;
    BB_CALL(bb_cuda_scratch(c, 2, (size_t)(rows * BW) * 2 * sizeof(float), (void **)&e));
    y = e + rows * BW;
    BB_CALL(bb_cuda_malloc((void **)&t, (size_t)(rows * cols) * sizeof(float), "GPTQ accumulated updates (rows x cols)"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&ubb, (size_t)(cols * BW) * sizeof(float), "GPTQ diagonal blocks"));
    {
        cudaError_t ce = cudaMemset(t, 0, (size_t)(rows * cols) * sizeof(float));
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "cudaMemset"));
    }
    BB_CALL_GOTO(st, done, bb_cuda_obs_prepare(v, cols, ubb));
    {
        const size_t shm = (size_t)(BW * BW + BW + WARPS * 32) * sizeof(float);
        cudaError_t ce = o->grid == BB_CUDA_GRID_Q4_0
                             ? cudaFuncSetAttribute(gptq_batch<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm)
                             : cudaFuncSetAttribute(gptq_batch<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shm);
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "cudaFuncSetAttribute"));
        const unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
        for (int64_t b = 0; b < cols / BW; b++) {
            const int64_t i1 = b * BW;
            BB_CALL_GOTO(st, done, bb_cuda_obs_before(c, rows, cols, b, w, t, ubb));
            const float *ub = ubb + b * BW * BW;
            if (o->grid == BB_CUDA_GRID_Q4_0)
                gptq_batch<0><<<blocks, WARPS * 32, shm>>>(rows, cols, i1, BW, w, ub, BW, e, codes, params, imp);
            else
                gptq_batch<1><<<blocks, WARPS * 32, shm>>>(rows, cols, i1, BW, w, ub, BW, e, codes, params, NULL);
            ce = cudaGetLastError();
            if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "gptq_batch"));
            BB_CALL_GOTO(st, done, bb_cuda_obs_after(c, o->trail, rows, cols, b, e, t, ubb, v, y));
        }
    }
done:
    cudaFree(t);
    cudaFree(ubb);
    return st;
}

/* Dead inputs (H_jj = 0): weights 0; imp (if non-NULL) = diag(H). */
__global__ void gptq_prep(float *w, int64_t rows, int64_t n, const float *h, float *imp) {
    int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float hjj = h[j * (n + 1)];
    if (imp && blockIdx.y == 0) imp[j] = hjj;
    if (hjj == 0)
        for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) w[r * n + j] = 0;
}

extern "C" bb_status bb_cuda_gptq(bb_cuda_ctx *c, const bb_cuda_gptq_opts *o, const char *name, int64_t rows,
                                  int64_t cols, float *w, const float *h, uint8_t *codes, float *params,
                                  double *damp_used) {
    name = name ? name : "(unnamed)";
    float *u = NULL, *imp = NULL;
    bb_status st = BB_OK;
    double dummy;
    BB_CALL(bb_cuda_malloc((void **)&u, (size_t)(cols * cols) * sizeof(float), "GPTQ inverse factor (cols^2 f32)"));
    if (o->grid == BB_CUDA_GRID_Q4_0 && o->importance)
        BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&imp, (size_t)cols * sizeof(float), "GPTQ fit weights"));
    {
        dim3 g((unsigned)((cols + 255) / 256), 64);
        gptq_prep<<<g, 256>>>(w, rows, cols, h, imp);
        cudaError_t ce = cudaGetLastError();
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "gptq_prep"));
    }
    if (cols % BW == 0) {
        BB_CALL_GOTO(st, done, bb_cuda_factor_inverse_of_u(c, name, h, cols, o->damp, o->damp_max, u,
                                                           damp_used ? damp_used : &dummy));
        BB_CALL_GOTO(st, done, gptq_on_v(c, o, rows, cols, w, u, imp, codes, params));
    } else {
        BB_CALL_GOTO(st, done, bb_cuda_inverse_factor(c, name, h, cols, o->damp, o->damp_max, u,
                                                      damp_used ? damp_used : &dummy));
        BB_CALL_GOTO(st, done, bb_cuda_gptq_factored(c, o, rows, cols, w, u, imp, codes, params));
    }
done:
    cudaFree(u);
    cudaFree(imp);
    return st;
}

extern "C" bb_status bb_cuda_quant_gptq(const bb_quant_opts *o, const bb_quant_input *in, bb_quant_result **out) {
    BB_CHECK(o && in && out, BB_ERR_ARG, "bb_cuda_quant_gptq: NULL argument");
    *out = NULL;
    BB_CALL(bb_quant_check_input(in, 1));
    const char *name = in->name ? in->name : "(unnamed)";
    BB_CHECK(o->type == BB_GGML_Q4_0 && !o->act_order && in->cols % 32 == 0, BB_ERR_UNSUPPORTED,
             "%s: the cuda GPTQ handles q4_0 without act-order on rows of a multiple of 32 (got type %d, act_order "
             "%d, %lld columns); use the cpu path for this tensor",
             name, o->type, o->act_order, (long long)in->cols);
    const int64_t m = in->rows, n = in->cols;
    bb_cuda_ctx *c = NULL;
    bb_quant_result *r = NULL;
    float *dw = NULL, *dh = NULL, *du = NULL, *dimp = NULL;
    uint8_t *dcodes = NULL;
    bb_status st = BB_OK;
    bb_cuda_gptq_opts go;
    bb_cuda_gptq_opts_default(&go);
    go.damp = o->damp;
    go.damp_max = o->damp_max;
    go.importance = o->importance || in->importance;
    bb_event_begin("cuda.gptq");
    BB_CALL_GOTO(st, done, bb_quant_result_create(BB_GGML_Q4_0, m, n, &r));
    BB_CALL_GOTO(st, done, bb_cuda_ctx_create(&c));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dw, (size_t)(m * n) * 4, "GPTQ weights"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dh, (size_t)(n * n) * 4, "GPTQ Gram"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&du, (size_t)(n * n) * 4, "GPTQ inverse factor"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dimp, (size_t)n * 4, "GPTQ fit weights"));
    BB_CALL_GOTO(st, done, bb_cuda_malloc((void **)&dcodes, r->row_bytes * (size_t)m, "GPTQ blocks"));
    if (cudaMemcpy(dw, in->w, (size_t)(m * n) * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
        cudaMemcpy(dh, in->h, (size_t)(n * n) * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        BB_CALL_GOTO(st, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "upload W, H"));
    {
        dim3 g((unsigned)((n + 255) / 256), 64);
        gptq_prep<<<g, 256>>>(dw, m, n, dh, dimp);
        cudaError_t ce = cudaGetLastError();
        if (ce != cudaSuccess) BB_CALL_GOTO(st, done, bb_cuda_error(ce, __FILE__, __LINE__, "gptq_prep"));
    }
    if (in->importance &&
        cudaMemcpy(dimp, in->importance, (size_t)n * 4, cudaMemcpyHostToDevice) != cudaSuccess)
        BB_CALL_GOTO(st, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "upload importance"));
    if (n % BW == 0) {
        BB_CALL_GOTO(st, done, bb_cuda_factor_inverse_of_u(c, name, dh, n, o->damp, o->damp_max, du, &r->damp));
        BB_CALL_GOTO(st, done, gptq_on_v(c, &go, m, n, dw, du, go.importance ? dimp : NULL, dcodes, NULL));
    } else {
        BB_CALL_GOTO(st, done, bb_cuda_inverse_factor(c, name, dh, n, o->damp, o->damp_max, du, &r->damp));
        BB_CALL_GOTO(st, done, bb_cuda_gptq_factored(c, &go, m, n, dw, du, go.importance ? dimp : NULL, dcodes, NULL));
    }
    if (cudaMemcpy(r->blocks, dcodes, r->row_bytes * (size_t)m, cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(r->w_hat, dw, (size_t)(m * n) * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
        BB_CALL_GOTO(st, done, bb_cuda_error(cudaGetLastError(), __FILE__, __LINE__, "download"));
    for (int64_t j = 0; j < n; j++) r->dead += in->h[j * (n + 1)] == 0;
    *out = r;
    r = NULL;
done:
    bb_event_end("cuda.gptq", (double)m * n * n * 2 + (double)n * n * n / 3, 0);
    cudaFree(dw);
    cudaFree(dh);
    cudaFree(du);
    cudaFree(dimp);
    cudaFree(dcodes);
    bb_cuda_ctx_destroy(&c);
    bb_quant_result_destroy(&r);
    return st;
}
