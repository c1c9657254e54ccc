#!/bin/bash
# run_shapes.sh — issue 11 on a machine with 2+ GPUs (device tool, carry ["build-carry"] from prepare_full.sh
# plus shared/data): the GPU unit tests that changed, the NCCL communicator on every GPU, the embedded
# default and stories260K on 1 and G GPUs (byte-identical model.gguf), then Llama-shaped synthetic models
# (real layer shapes, fewer layers) through `birdbone compress` on BB_GPUS with token files (tokens.py):
#   BB_SHAPES   "name=spec ..." (default "7b=llama2-7b,layers=2")
#   BB_SHAPE_SET extra key=value for the shapes (default: 1 wave to 10 %, Q4_0: the mask-aware GPTQ runs on
#               the CPU, and the budget's per-type search would multiply it by the candidate types)
#   BB_MODES ("strong"; "strong weak" adds the weak runs, BB_WEAK_LAYERS_PER_GPU), BB_GPUS ("2 1"), BB_TIMEOUT (per run, 250 s), BB_SKIP_SMALL=1 (only the shapes), BB_VOCAB (32000: the
#   token files' vocabulary, = the spec's vocab), BB_SEQS (32 sequences of 128 tokens)
# Output: $OUT/shape-NAME/ (run_scaling.sh's CSV and logs), $OUT/checks.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export OUT
source build-carry/env.sh >/dev/null || exit 1
G=$(nvidia-smi -L | wc -l)
if [ -z "${BB_SKIP_SMALL:-}" ]; then
    {
        nvidia-smi -L
        "$BBFULL/bin/test_cuda_linalg" > "$OUT/t_linalg.log" 2>&1
        echo "test_cuda_linalg rc=$? $(tail -1 "$OUT/t_linalg.log")"
        grep -E "FAIL|^ *[a-z_.]+:[0-9]+:" "$OUT/t_linalg.log" | head -8
        mpirun -np "$G" --bind-to none "$BBFULL/bin/test_cuda_comm" > "$OUT/t_comm.log" 2>&1
        echo "test_cuda_comm on $G ranks rc=$?"
    } 2>&1 | tee "$OUT/checks.log"
    BB_NP=$G bash benchmarks/gpu/run_multi.sh > "$OUT/multi-out.log" 2>&1
    tail -12 "$OUT/multi.log" | tee -a "$OUT/checks.log"
    BB_SKIP_SCALING=1 bash benchmarks/gpu/run_checks.sh 2>&1 | tee -a "$OUT/checks.log"
fi
for sh in ${BB_SHAPES:-7b=llama2-7b,layers=2}; do
    name=${sh%%=*}
    spec=${sh#*=}
    mkdir -p "$OUT/shape-$name"
    OUT="$OUT/shape-$name" BB_MODES="${BB_MODES:-strong}" BB_GPUS="${BB_GPUS:-2 1}" BB_MODEL="synthetic:$spec" BB_TOKENS="${BB_VOCAB:-32000}" \
        BB_TIMEOUT="${BB_TIMEOUT:-250}" BB_THREADS="${BB_THREADS:-$(( $(nproc) / G ))}" \
        BB_SET="${BB_SHAPE_SET:-waves.count=1 prune.target=0.1 quant.type=q4_0} run.progress=plain" \
        bash benchmarks/gpu/run_scaling.sh 2>&1 | tee -a "$OUT/checks.log"
    for f in "$OUT/shape-$name"/strong-*.log; do
        echo "== $f"
        grep -E "^(\[rank 0\] )?(wave [0-9]+/|time |quant |gpu |comm )" "$f"
        sed -n '/---- timing/,$p' "$f" | awk 'NR < 3 || $4 + 0 > 2.0 || $1 ~ /^(heal|rigl|stress)\./'
    done 2>&1 | tee -a "$OUT/checks.log"
done
