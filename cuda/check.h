/* check.h — one error wrapper per CUDA library: runtime, cuBLAS, cuSOLVER, NCCL.
 * Each reports the failing statement, the library's error name, the rank and the
 * device; out-of-memory says how much was asked for when the caller knows. */
#ifndef BB_CUDA_CHECK_H
#define BB_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <nccl.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

bb_status bb_cuda_error(cudaError_t e, const char *file, int line, const char *expr);
bb_status bb_cublas_error(cublasStatus_t e, const char *file, int line, const char *expr);
bb_status bb_cusolver_error(cusolverStatus_t e, const char *file, int line, const char *expr);
bb_status bb_nccl_error(ncclResult_t e, const char *file, int line, const char *expr);

/* The status of a call as a value (BB_OK on success), for code that cannot return from the macros below. */
#define BB_CUDA_STATUS(expr) bb_cuda_status_((expr), __FILE__, __LINE__, #expr)
#define BB_CUBLAS_STATUS(expr) bb_cublas_status_((expr), __FILE__, __LINE__, #expr)
static inline bb_status bb_cuda_status_(cudaError_t e, const char *file, int line, const char *expr) {
    return e == cudaSuccess ? BB_OK : bb_cuda_error(e, file, line, expr);
}
static inline bb_status bb_cublas_status_(cublasStatus_t e, const char *file, int line, const char *expr) {
    return e == CUBLAS_STATUS_SUCCESS ? BB_OK : bb_cublas_error(e, file, line, expr);
}

#define BB_CUDA_CALL(expr)                                                             \
    do {                                                                               \
        cudaError_t bb_e_ = (expr);                                                    \
        if (bb_e_ != cudaSuccess) return bb_cuda_error(bb_e_, __FILE__, __LINE__, #expr); \
    } while (0)
#define BB_CUBLAS_CALL(expr)                                                                     \
    do {                                                                                         \
        cublasStatus_t bb_e_ = (expr);                                                           \
        if (bb_e_ != CUBLAS_STATUS_SUCCESS) return bb_cublas_error(bb_e_, __FILE__, __LINE__, #expr); \
    } while (0)
#define BB_CUSOLVER_CALL(expr)                                                                       \
    do {                                                                                             \
        cusolverStatus_t bb_e_ = (expr);                                                             \
        if (bb_e_ != CUSOLVER_STATUS_SUCCESS) return bb_cusolver_error(bb_e_, __FILE__, __LINE__, #expr); \
    } while (0)
#define BB_NCCL_CALL(expr)                                                              \
    do {                                                                                \
        ncclResult_t bb_e_ = (expr);                                                    \
        if (bb_e_ != ncclSuccess) return bb_nccl_error(bb_e_, __FILE__, __LINE__, #expr); \
    } while (0)

/* Checked device allocation: "out of memory on GPU d: <what> needs N bytes
 * (free F of T); use more ranks or smaller micro-batches". */
bb_status bb_cuda_malloc(void **p, size_t nbytes, const char *what);

/* Number of visible devices (0 when there is no driver or no GPU: not an error). */
int bb_cuda_device_count(void);
/* Bind this process to device local_rank % count; fills the chosen device id. */
bb_status bb_cuda_bind(int local_rank, int *device);
/* "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" */
bb_status bb_cuda_describe(int device, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
