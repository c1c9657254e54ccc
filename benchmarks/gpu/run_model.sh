#!/bin/bash
# run_model.sh — on the GPU machine (device tool, carry build-gpu-carry from prepare.sh): the streamed
# whole-model compression (bench_gpu_model) with the arguments given, output and JSON under $OUT.
#   bash benchmarks/gpu/run_model.sh --model llama2-70b --json model-70b.json
# A bare file name after --json is put under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
C=build-gpu-carry
[ -d /tmp/bbgpu/lib ] || { mkdir -p /tmp/bbgpu && tar -C /tmp/bbgpu -xJf $C/lib.tar.xz; }
LD_LIBRARY_PATH=/tmp/bbgpu/lib:${LD_LIBRARY_PATH:-}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d $d ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
export LD_LIBRARY_PATH
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--json" ] && [ $# -gt 1 ]; then
        case "$2" in */*) args+=(--json "$2") ;; *) args+=(--json "$OUT/$2") ;; esac
        shift 2
    else
        args+=("$1")
        shift
    fi
done
$C/bin/bench_gpu_model "${args[@]}" 2>&1 | tee -a "$OUT/model.log"
