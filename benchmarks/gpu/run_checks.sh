#!/bin/bash
# run_checks.sh — on a machine with 2+ GPUs (device tool, carry ["build-carry"] with shared/data from
# prepare_full.sh + the data copy in docs/cuda.md): GPU strong/weak scaling of synthetic:tiny on 1 and 2
# GPUs (run_scaling.sh), then stories260K (the stories260K.yaml preset, 3 waves to 25 %) compressed on 1 and
# BB_NP (default: every GPU) GPUs with NCCL: the two model.gguf must be identical. Output under $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export OUT
S=$PWD/build-carry/shared/data
export BB_GPUS="1 2" BB_MODEL=synthetic:tiny BB_WEAK_LAYERS_PER_GPU=2
if [ -z "${BB_SKIP_SCALING:-}" ]; then
timeout 200 bash benchmarks/gpu/run_scaling.sh 2>&1 | tail -12
mkdir -p $OUT/sc && cp $OUT/scaling-gpu.csv $OUT/sc/ 2>/dev/null
fi
source build-carry/env.sh
for np in 1 "${BB_NP:-$(nvidia-smi -L | wc -l)}"; do
  t0=$(date +%s)
  mpirun -np $np --bind-to none birdbone compress -c configs/stories260K.yaml --set model.path=$S/stories260K/stories260K.bin \
    --set data.calib=$S/tinystories/calib.txt --set data.eval=$S/tinystories/dev.txt --set waves.count=3 --set prune.target=0.25 \
    --set backend.device=cuda --set backend.threads=4 --set run.dir=$OUT/st$np > $OUT/st$np.log 2>&1
  echo "stories260K $np GPU rc=$? $(( $(date +%s) - t0 )) s $(sha256sum $OUT/st$np/model.gguf | cut -c1-16)"
  grep -E "comm  |gpu   |quantized|final|PPL" $OUT/st$np.log | tail -4
done
