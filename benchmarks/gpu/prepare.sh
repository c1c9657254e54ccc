#!/bin/bash
# prepare.sh — run HERE (no GPU needed): build the gpu tests and bench_gpu with this machine's nvcc and
# pack them, with the shared libraries the GPU machine lacks (OpenBLAS, LAPACKE, gfortran; not glibc,
# not CUDA's own), into build-gpu-carry/ (ignored by git through /build*/). Then call the device tool
# with carry ["build-gpu-carry"] and command "bash benchmarks/gpu/run.sh". docs/cuda.md explains why.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BB_GPU_BUILD:-build-gpu}
C=build-gpu-carry
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j2 --target test_cuda_smoke test_cuda_linalg test_cuda_gptq test_cuda_wanda test_cuda_sparsegpt test_cuda_forward bench_gpu bench_gpu_model
rm -rf "$C"
mkdir -p "$C/bin" "$C/lib"
cp "$B"/tests/test_cuda_* "$B"/benchmarks/bench_gpu "$B"/benchmarks/bench_gpu_model "$C/bin/"
strip "$C"/bin/*
for f in "$C"/bin/*; do ldd "$f"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so|ld-linux|/usr/local/cuda|libcudart|libcublas|libcusolver|libcusparse|libnvJitLink|libnccl' |
    while read -r l; do cp -L "$l" "$C/lib/"; done
tar -C "$C" -cJf "$C/lib.tar.xz" lib
rm -rf "$C/lib"
cp ../shared/bench/torch_reference.py "$C/" 2>/dev/null || cp /work/shared/bench/torch_reference.py "$C/"
# stories260K for unit.cuda_forward's real-model case (read in place from ../shared here; carried, never
# committed)
S=../shared/data/stories260K
[ -d "$S" ] || S=/work/shared/data/stories260K
if [ -d "$S" ]; then mkdir -p "$C/shared/data/stories260K" && cp "$S"/* "$C/shared/data/stories260K/"; fi
du -sh "$C"
