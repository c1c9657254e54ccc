#!/bin/bash
# run_multi.sh — on a GPU machine with G GPUs (device tool, carry ["build-carry"] from prepare_full.sh):
# issue 11's checks. One rank per GPU, NCCL_NVLS_ENABLE=0 (env.sh).
#   1. test_cuda_comm under mpirun -np G: the NCCL communicator against the exact sums, NaN-keeping
#      reductions, allgatherv, a point-to-point ring;
#   2. birdbone compress with backend.device=cuda (comm auto = NCCL) on 1 rank and on G ranks: model.gguf
#      byte-identical (run_full.sh), the NCCL use shown by the logs' "comm" and "device" lines;
#   3. the same config on the CPU (backend.device=cpu, 1 rank): PPL/KLD side by side with the GPU's.
# Results under $OUT (multi.log, the run dirs' summary.json and logs).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export OUT
source build-carry/env.sh || exit 1
G=${BB_NP:-$(nvidia-smi -L | wc -l)}
export BB_NP=$G
[ -d build-carry/shared ] && export BB_SHARED=$PWD/build-carry/shared
{
    nvidia-smi -L
    echo "== test_cuda_comm, $G ranks"
    mpirun -np "$G" --bind-to none "$BBFULL/bin/test_cuda_comm" 2>&1 | tail -8
    echo "rc=${PIPESTATUS[0]}"
    for t in forward gptq; do
        [ -x "$BBFULL/bin/test_cuda_$t" ] && { "$BBFULL/bin/test_cuda_$t" > "$OUT/t_$t.log" 2>&1; echo "test_cuda_$t rc=$?"; }
    done
} 2>&1 | tee "$OUT/multi.log"
echo "== compress, backend.device=cuda: 1 rank vs $G ranks" | tee -a "$OUT/multi.log"
bash benchmarks/gpu/run_full.sh --set backend.device=cuda "$@" 2>&1 | tail -6 | tee -a "$OUT/multi.log"
grep -hE "comm  |device  " "$OUT/r1.log" "$OUT/r$G.log" | sort | uniq -c | tee -a "$OUT/multi.log"
echo "== the same on the CPU, 1 rank" | tee -a "$OUT/multi.log"
birdbone compress -c "${BB_CONFIG:-configs/default.yaml}" --set backend.threads="${BB_THREADS:-4}" --set backend.device=cpu \
    "$@" --set run.dir="$OUT/cpu" > "$OUT/cpu.log" 2>&1
echo "cpu rc=$?" | tee -a "$OUT/multi.log"
for d in r1 "r$G" cpu; do
    python3 - "$OUT/$d/summary.json" "$d" <<'PY' 2>&1 | tee -a "$OUT/multi.log"
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception as e:
    print(sys.argv[2], "no summary:", e); sys.exit(0)
keep = {k: s[k] for k in s if any(w in k for w in ("ppl", "kld", "top1", "seconds", "bits", "sparsity")) and not isinstance(s[k], (dict, list))}
print(sys.argv[2], json.dumps(keep))
PY
done
echo "per wave, GPU (1 rank) vs CPU: PPL and KLD" | tee -a "$OUT/multi.log"
paste <(grep -oE "wave [0-9]+/[0-9]+ +sparsity [0-9.]+ +PPL [0-9.]+ +dPPL [-+0-9.]+ % +KLD [0-9.]+" "$OUT/r1.log") \
      <(grep -oE "PPL [0-9.]+ +dPPL [-+0-9.]+ % +KLD [0-9.]+" "$OUT/cpu.log") | tee -a "$OUT/multi.log"
sha256sum "$OUT"/r1/model.gguf "$OUT/r$G"/model.gguf "$OUT"/cpu/model.gguf 2>/dev/null | tee -a "$OUT/multi.log"
