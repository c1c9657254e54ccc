/* check.c — CUDA library error reporting, device binding and checked allocation. */
#include "cuda/check.h"

#include <stdio.h>

#include "core/log.h"

static int current_device(void) {
    int d = -1;
    if (cudaGetDevice(&d) != cudaSuccess) d = -1;
    return d;
}

bb_status bb_cuda_error(cudaError_t e, const char *file, int line, const char *expr) {
    return bb_error(e == cudaErrorMemoryAllocation ? BB_ERR_OOM : BB_ERR_CUDA, file, line, "%s failed on GPU %d: %s (%s)",
                    expr, current_device(), cudaGetErrorName(e), cudaGetErrorString(e));
}

bb_status bb_cublas_error(cublasStatus_t e, const char *file, int line, const char *expr) {
    return bb_error(e == CUBLAS_STATUS_ALLOC_FAILED ? BB_ERR_OOM : BB_ERR_CUDA, file, line, "%s failed on GPU %d: %s",
                    expr, current_device(), cublasGetStatusName(e));
}

bb_status bb_cusolver_error(cusolverStatus_t e, const char *file, int line, const char *expr) {
    static const struct {
        cusolverStatus_t code;
        const char *name;
    } names[] = {
        {CUSOLVER_STATUS_NOT_INITIALIZED, "CUSOLVER_STATUS_NOT_INITIALIZED"},
        {CUSOLVER_STATUS_ALLOC_FAILED, "CUSOLVER_STATUS_ALLOC_FAILED"},
        {CUSOLVER_STATUS_INVALID_VALUE, "CUSOLVER_STATUS_INVALID_VALUE"},
        {CUSOLVER_STATUS_ARCH_MISMATCH, "CUSOLVER_STATUS_ARCH_MISMATCH"},
        {CUSOLVER_STATUS_EXECUTION_FAILED, "CUSOLVER_STATUS_EXECUTION_FAILED"},
        {CUSOLVER_STATUS_INTERNAL_ERROR, "CUSOLVER_STATUS_INTERNAL_ERROR"},
        {CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED, "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED"},
    };
    const char *name = "unknown cuSOLVER status";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == e) name = names[i].name;
    return bb_error(e == CUSOLVER_STATUS_ALLOC_FAILED ? BB_ERR_OOM : BB_ERR_CUDA, file, line,
                    "%s failed on GPU %d: %s (%d)", expr, current_device(), name, (int)e);
}

bb_status bb_nccl_error(ncclResult_t e, const char *file, int line, const char *expr) {
    return bb_error(BB_ERR_CUDA, file, line, "%s failed on GPU %d: %s%s", expr, current_device(),
                    ncclGetErrorString(e),
                    e == ncclSystemError || e == ncclRemoteError ? " (NCCL_DEBUG=WARN shows details)" : "");
}

bb_status bb_cuda_malloc(void **p, size_t nbytes, const char *what) {
    cudaError_t e = cudaMalloc(p, nbytes ? nbytes : 1);
    if (e == cudaSuccess) return BB_OK;
    size_t free_b = 0, total_b = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    BB_CHECK(0, e == cudaErrorMemoryAllocation ? BB_ERR_OOM : BB_ERR_CUDA,
             "out of memory on GPU %d: %s needs %zu bytes (%.2f GiB) but %.2f of %.2f GiB are free; use more ranks "
             "(layers spread over more GPUs) or smaller calib.micro_batch",
             current_device(), what, nbytes, nbytes / 1073741824.0, free_b / 1073741824.0, total_b / 1073741824.0);
}

int bb_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

bb_status bb_cuda_bind(int local_rank, int *device) {
    int n = bb_cuda_device_count();
    BB_CHECK(n > 0, BB_ERR_CUDA, "backend.device is cuda but no GPU is visible (check CUDA_VISIBLE_DEVICES and the driver)");
    *device = local_rank % n;
    BB_CUDA_CALL(cudaSetDevice(*device));
    if (local_rank >= n)
        bb_warn("local rank %d shares GPU %d with another rank (%d GPUs visible): start one rank per GPU", local_rank,
                *device, n);
    return BB_OK;
}

bb_status bb_cuda_describe(int device, char *buf, size_t n) {
    struct cudaDeviceProp p;
    BB_CUDA_CALL(cudaGetDeviceProperties(&p, device));
    snprintf(buf, n, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0);
    return BB_OK;
}
