#!/bin/bash
# run_scaling.sh — multi-GPU scaling of `birdbone compress` on one node (device tool, carry ["build-carry"]):
# one rank per GPU, backend.device=cuda (comm auto = NCCL), NCCL_NVLS_ENABLE=0 (env.sh).
#   strong: the same model on 1, 2, ..., G GPUs (model.gguf must be byte-identical across G);
#   weak:   BB_WEAK_LAYERS_PER_GPU (2) blocks per GPU (a strong run of that model, BB_MODEL with
#           layers=LPG*g, stands for the weak run on g GPUs).
# Environment: BB_MODES ("strong weak"), BB_CPU_BASELINE=1 (also one CPU rank), BB_MODEL (synthetic:small), BB_GPUS ("1 2 4", capped at the GPUs present), BB_SET (extra
# "key=value ..."), BB_TOKENS=VOCAB (calibration and evaluation token files of calib.samples x calib.seq_len
# Zipf ids from tokens.py instead of streams sampled from the synthetic model: the large shapes; BB_SEQS, 32),
# BB_TIMEOUT (seconds per run, 0 = none), BB_THREADS (4). Writes $OUT/scaling-gpu.csv (one row per run and stage: seconds, the
# speedup/efficiency against 1 GPU, NCCL bytes, peak device memory of the busiest rank, seconds in NCCL calls
# of the busiest rank: whole run, repeated on every stage row) and the logs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
source build-carry/env.sh || exit 1
NG=$(nvidia-smi -L | wc -l)
MODEL=${BB_MODEL:-synthetic:small}
LPG=${BB_WEAK_LAYERS_PER_GPU:-2}
sets=(--set backend.device=cuda --set backend.threads="${BB_THREADS:-4}")
for kv in ${BB_SET:-}; do sets+=(--set "$kv"); done
if [ -n "${BB_TOKENS:-}" ]; then
    python3 benchmarks/gpu/tokens.py "$OUT/calib.tokens" "$BB_TOKENS" "${BB_SEQS:-32}" 128 1 &&
        python3 benchmarks/gpu/tokens.py "$OUT/eval.tokens" "$BB_TOKENS" "${BB_SEQS:-32}" 128 2 || exit 1
    sets+=(--set data.calib_tokens="$OUT/calib.tokens" --set data.eval_tokens="$OUT/eval.tokens")
fi
for mode in ${BB_MODES:-strong weak}; do
    for g in ${BB_GPUS:-1 2 4}; do
        [ "$g" -gt "$NG" ] && continue
        m=$MODEL
        [ $mode = weak ] && m="$MODEL,layers=$((LPG * g))"
        d="$OUT/$mode-$g"
        rm -rf "$d"
        if [ $mode = weak ] && [[ ",$MODEL," == *",layers=$((LPG * g)),"* ]] && [ -f "$OUT/strong-$g/summary.json" ]; then
            # the same model as the strong run on g GPUs (BB_MODEL says layers=LPG*g): its figures
            mkdir -p "$d" && cp "$OUT/strong-$g/summary.json" "$d/" && cp "$OUT/strong-$g.log" "$d.log"
            echo "$mode $g GPU(s) $m: the strong run on $g GPU(s)"
            continue
        fi
        t0=$(date +%s%N)
        timeout -k 20 "${BB_TIMEOUT:-0}" mpirun -np "$g" --bind-to none birdbone compress --set model.path="$m" "${sets[@]}" --set run.dir="$d" \
            > "$d.log" 2>&1
        rc=$?
        echo "$mode $g GPU(s) $m: rc=$rc $(( ($(date +%s%N) - t0) / 1000000 )) ms $(sha256sum "$d/model.gguf" 2>/dev/null | cut -c1-16)"
        grep -E "comm  |gpu   " "$d.log" | head -3
    done
done
if [ -n "${BB_CPU_BASELINE:-}" ]; then
    # the same strong-scaling model on the CPU cores of one rank, for the GPU-vs-CPU ratio
    d="$OUT/cpu-1"
    rm -rf "$d"
    t0=$(date +%s%N)
    birdbone compress --set model.path="$MODEL" --set backend.device=cpu --set backend.threads="${BB_CPU_THREADS:-16}" \
        $(for kv in ${BB_SET:-}; do echo --set "$kv"; done) --set run.dir="$d" > "$d.log" 2>&1
    echo "cpu 1 rank x ${BB_CPU_THREADS:-16} threads $MODEL: rc=$? $(( ($(date +%s%N) - t0) / 1000000 )) ms"
fi
python3 - "$OUT" <<'PY'
import json, os, sys, glob
out = sys.argv[1]
rows = []
for mode in ("strong", "weak"):
    base = None
    for g in (1, 2, 4, 8):
        p = os.path.join(out, f"{mode}-{g}", "summary.json")
        if not os.path.exists(p):
            continue
        s = json.load(open(p))
        gpu = s.get("gpu", {}).get("ranks", [])
        nccl = sum(r["nccl_collective_bytes"] + r["nccl_sent_bytes"] for r in gpu)
        peak = max((r["memory_peak_bytes"] for r in gpu), default=0)
        nsec = max((r.get("nccl_seconds", 0) for r in gpu), default=0)  # builds before nccl_seconds: 0
        stages = {st["name"]: st["seconds"] for st in s["stages"]}
        stages["total"] = s["seconds"]
        if base is None:
            base = stages
        for name, sec in stages.items():
            b = base.get(name, 0)
            sp = b / sec if sec > 0 else 0
            eff = sp / g if mode == "strong" else sp
            rows.append((mode, g, name, sec, sp, eff, nccl, peak, nsec))
with open(os.path.join(out, "scaling-gpu.csv"), "w") as f:
    f.write("mode,gpus,stage,seconds,speedup,efficiency,nccl_bytes,gpu_mem_peak_bytes,nccl_seconds_max\n")
    for r in rows:
        f.write("%s,%d,%s,%.3f,%.3f,%.3f,%d,%d,%.3f\n" % r)
for r in rows:
    if r[2] == "total":
        print("%-6s %d GPU  %8.1f s  speedup %.2f  efficiency %.2f  NCCL %d B in %.2f s  peak %.0f MiB" % (r[0], r[1], r[3], r[4], r[5], r[6], r[8], r[7] / 2**20))
PY
