/* test_cuda_smoke.c — the CUDA wrappers on a real GPU: binding, allocation,
 * a cuBLAS sgemm checked against a plain-C reference, and the error paths.
 * Skips (exit 77) without CUDA support or without a GPU. */
#include "test.h"

#ifndef BB_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return 77;
}
#else
#include "cuda/check.h"

static void sgemm_ref(int m, int n, int k, const float *a, const float *b, float *c) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) s += (double)a[i * k + p] * b[p * n + j];
            c[i * n + j] = (float)s;
        }
}

static bb_status run_gemm(float *max_err) {
    enum { M = 64, N = 48, K = 80 };
    static float a[M * K], b[K * N], c[M * N], ref[M * N];
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 53) % 97) / 97.0f - 0.5f;
    sgemm_ref(M, N, K, a, b, ref);
    float *da, *db, *dc;
    BB_CALL(bb_cuda_malloc((void **)&da, sizeof a, "A"));
    BB_CALL(bb_cuda_malloc((void **)&db, sizeof b, "B"));
    BB_CALL(bb_cuda_malloc((void **)&dc, sizeof c, "C"));
    BB_CUDA_CALL(cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice));
    BB_CUDA_CALL(cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice));
    cublasHandle_t h;
    BB_CUBLAS_CALL(cublasCreate(&h));
    float one = 1, zero = 0;
    /* row-major C = A B is column-major C^T = B^T A^T */
    BB_CUBLAS_CALL(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, N, da, K, &zero, dc, N));
    BB_CUDA_CALL(cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost));
    cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    *max_err = 0;
    for (int i = 0; i < M * N; i++) {
        float e = fabsf(c[i] - ref[i]);
        if (e > *max_err) *max_err = e;
    }
    return BB_OK;
}

int main(void) {
    if (bb_cuda_device_count() == 0) {
        printf("skipped: no GPU visible\n");
        return 77;
    }
    int dev = -1;
    EXPECT_OK(bb_cuda_bind(0, &dev));
    char desc[256];
    EXPECT_OK(bb_cuda_describe(dev, desc, sizeof desc));
    printf("GPU %d: %s\n", dev, desc);
    float err = 1;
    EXPECT_OK(run_gemm(&err));
    EXPECT(err < 1e-4f, "cuBLAS sgemm differs from the reference by %g", err);
    void *p = NULL;
    EXPECT_ERR(bb_cuda_malloc(&p, (size_t)1 << 50, "a huge buffer"), BB_ERR_OOM, "a huge buffer needs");
    return TEST_DONE();
}
#endif
