#!/bin/bash
# run_full.sh — on the GPU machine (device tool, carry ["build-carry"] from prepare_full.sh): the whole
# birdbone with its carried Open MPI. Runs `birdbone compress` once as a single process (MPI singleton)
# and once under `mpirun -np $BB_NP`, and compares the two model.gguf by sha256.
#   bash benchmarks/gpu/run_full.sh [--set KEY=VALUE ...]     extra arguments go to both compress runs
# Environment: BB_NP (ranks of the mpirun run, default 2), BB_CONFIG (default configs/default.yaml),
# BB_THREADS (backend.threads on every rank, default 4: equal bytes need the same BLAS thread count per
# rank, docs/distribution.md; a --set backend.threads=N in the arguments wins), BB_QUICK=1 (a short
# run: 1 wave, few steps), BB_MPIRUN_ARGS (default "--bind-to none --oversubscribe").
# Results under $OUT: full.log (environment), r1/ + r1.log, rN/ + rN.log, sha256.txt.
# Exit status: 0 when both runs succeed and the model.gguf are identical.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export OUT
source build-carry/env.sh || { echo "run_full: build-carry/env.sh failed (carry build-carry?)"; exit 1; }
NP=${BB_NP:-2}
CFG=${BB_CONFIG:-configs/default.yaml}
read -r -a MPIARGS <<< "${BB_MPIRUN_ARGS:---bind-to none --oversubscribe}"
args=(compress -c "$CFG" --set backend.threads="${BB_THREADS:-4}")
if [ -n "${BB_QUICK:-}" ]; then
    for kv in waves.count=1 prune.target=0.1 heal.steps=20 calib.samples=8 eval.max_windows=4; do
        args+=(--set "$kv")
    done
fi
args+=("$@")
{
    nvidia-smi -L
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    grep PRETTY /etc/os-release
    ldd --version | head -1
    echo "nproc: $(nproc)"
    echo "BBFULL=$BBFULL"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    command -v mpirun birdbone
    mpirun --version | head -1
    birdbone --version
    ompi_info --parsable --all 2>/dev/null | grep -E "^path:(prefix|bindir|pkglibdir|pkgdatadir|sysconfdir):"
    for b in birdbone mpirun orted test_cuda_smoke; do
        ldd "$BBFULL/bin/$b" | grep -q "not found" && { echo "MISSING libraries of $b:"; ldd "$BBFULL/bin/$b" | grep "not found"; }
    done
    ldd "$BBFULL/bin/test_cuda_smoke" | grep -E "cudart|cublas\.|cusolver|nccl"
    echo "compress arguments: ${args[*]}"
} 2>&1 | tee "$OUT/full.log"
if [ -x "$BBFULL/bin/test_cuda_smoke" ] && [ -z "${BB_NO_CUDA_TEST:-}" ]; then
    "$BBFULL/bin/test_cuda_smoke" > "$OUT/cuda_smoke.log" 2>&1
    echo "test_cuda_smoke rc=$?" | tee -a "$OUT/full.log"
fi
rm -rf "$OUT/r1" "$OUT/r$NP"
t0=$(date +%s)
birdbone "${args[@]}" --set run.dir="$OUT/r1" > "$OUT/r1.log" 2>&1
rc1=$?
t1=$(date +%s)
echo "1 rank (singleton): rc=$rc1, $((t1 - t0)) s" | tee -a "$OUT/full.log"
[ $rc1 -ne 0 ] && tail -30 "$OUT/r1.log"
mpirun -np "$NP" "${MPIARGS[@]}" birdbone "${args[@]}" --set run.dir="$OUT/r$NP" > "$OUT/r$NP.log" 2>&1
rcn=$?
t2=$(date +%s)
echo "mpirun -np $NP: rc=$rcn, $((t2 - t1)) s" | tee -a "$OUT/full.log"
[ $rcn -ne 0 ] && tail -30 "$OUT/r$NP.log"
head -1 "$OUT/r1.log" "$OUT/r$NP.log" | tee -a "$OUT/full.log"
sha256sum "$OUT/r1/model.gguf" "$OUT/r$NP/model.gguf" 2>&1 | tee "$OUT/sha256.txt"
a=$(sha256sum < "$OUT/r1/model.gguf" 2>/dev/null | cut -d' ' -f1)
b=$(sha256sum < "$OUT/r$NP/model.gguf" 2>/dev/null | cut -d' ' -f1)
if [ $rc1 -eq 0 ] && [ $rcn -eq 0 ] && [ -n "$a" ] && [ "$a" = "$b" ]; then
    echo "ok: model.gguf identical on 1 and $NP ranks" | tee -a "$OUT/full.log"
    exit 0
fi
echo "FAIL: runs failed or model.gguf differs between 1 and $NP ranks" | tee -a "$OUT/full.log"
exit 1
