#!/bin/bash
# run.sh — on the GPU machine (device tool, carry build-gpu-carry from prepare.sh): the gpu tests, the
# benchmark on the issue's shapes, and the PyTorch reference in the same job; results under $OUT:
# tests.log, bench.log, bench_gpu.json, torch_reference.json, torch.log, ratios.csv.
# BENCH_MODE=quick runs small shapes; BB_NO_TORCH=1 skips the PyTorch reference.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export OUT
C=build-gpu-carry
mkdir -p /tmp/bbgpu && tar -C /tmp/bbgpu -xJf $C/lib.tar.xz
LD_LIBRARY_PATH=/tmp/bbgpu/lib:${LD_LIBRARY_PATH:-}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d $d ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
export LD_LIBRARY_PATH
if ldd $C/bin/bench_gpu | grep -q "not found"; then
    # CUDA libraries outside the toolkit folder (PyTorch's pip wheels)
    for d in $(find / -xdev \( -name 'libcusolver.so.12' -o -name 'libnccl.so.2' -o -name 'libcublas.so.13' \
        -o -name 'libcusparse.so.12' -o -name 'libnvJitLink.so.13' -o -name 'libcudart.so.13' \) -printf '%h\n' \
        2>/dev/null | sort -u); do LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    ldd --version | head -1
    grep PRETTY /etc/os-release
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd $C/bin/bench_gpu | grep -E "not found|cublas|cusolver|openblas"
} 2>&1 | tee "$OUT/bench.log"
fails=0
[ -d $C/shared ] && export BB_SHARED=$PWD/$C/shared
for t in ${BB_GPU_TESTS:-smoke linalg gptq wanda sparsegpt forward}; do
    $C/bin/test_cuda_$t >"$OUT/t.log" 2>&1
    rc=$?
    { echo "== unit.cuda_$t rc=$rc"; cat "$OUT/t.log"; } >>"$OUT/tests.log"
    echo "unit.cuda_$t rc=$rc"
    grep -E "FAIL|checks|gram|rsvd|inverse|q4_0|g128|sparsegpt" "$OUT/t.log" | head -20
    [ $rc -ne 0 ] && fails=$((fails + 1))
done
rm -f "$OUT/t.log"
echo "gpu tests failed: $fails"
[ -n "${BB_ONLY_TESTS:-}" ] && exit $fails
$C/bin/bench_gpu "$OUT/bench_gpu.json" ${BENCH_MODE:-} 2>&1 | tee -a "$OUT/bench.log"
if [ -z "${BB_NO_TORCH:-}" ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    PYTHONUNBUFFERED=1 python3 $C/torch_reference.py >"$OUT/torch.log" 2>&1
    tail -n 5 "$OUT/torch.log"
else
    echo "PyTorch reference not run (BB_NO_TORCH set, or torch not importable with a GPU)" | tee "$OUT/torch.log"
fi
python3 benchmarks/gpu/ratios.py "$OUT/bench_gpu.json" "$OUT/torch_reference.json" | tee "$OUT/ratios.csv"
exit $fails
