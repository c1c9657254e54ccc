#!/usr/bin/env bash
# slurm_local.sh DIR MPIRUN... : the CPU recipe under a real Slurm. Brings up a private
# single-node Slurm (slurm_cluster.sh), submits slurm/cpu.sbatch through slurm/submit with
# 2 tasks of 1 core running `birdbone compress` on the embedded default model (srun --mpi=pmix),
# waits for it (at most BB_SLURM_TIMEOUT s, default 100), then runs the same configuration
# under `MPIRUN 2 birdbone compress` in the same run directory (the Slurm run is moved aside)
# and checks the two runs wrote the same outputs (bb_same_run). Exits 77 (skipped) when the
# daemons cannot start here. The calibration and evaluation sets are cut to 8 sequences so the
# test stays short; every stage still runs.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
limit="${BB_SLURM_TIMEOUT:-100}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/slurm_cluster.sh"
for c in h5diff "$1"; do command -v "$c" > /dev/null || bb_skip "$c not found (scripts/setup.sh installs it)"; done
bb_slurm_up

rm -rf "$dir" "$dir.slurm"
mkdir -p "$(dirname "$dir")"
sets=(--set calib.samples=8 --set eval.max_windows=8)
id="$("$src/slurm/submit" cpu --name bbtest-cpu --run-dir "$dir" --ranks 2 --cpus-per-rank 1 --mem 1G \
      --time 5 --partition debug --birdbone "$bin" -c "$src/configs/default.yaml" "${sets[@]}" --parsable)"
echo "slurm: submitted job $id"
bb_slurm_wait "$id" "$limit" || { cat "$dir"/logs/*.out 2>/dev/null; exit 1; }
state="$(bb_slurm_state "$id")"
log="$dir/logs/bbtest-cpu-$id.out"
cat "$log"
[ "$state" = "COMPLETED 0:0" ] || { echo "FAIL: job $id ended '$state', expected 'COMPLETED 0:0'"; exit 1; }
grep -q "srun --mpi=pmix --cpu-bind=cores $bin compress" "$log" ||
    { echo "FAIL: the job log does not show the srun --mpi=pmix launch"; exit 1; }
grep -q '"ranks": 2,' "$dir/summary.json" || { echo "FAIL: the Slurm run did not run on 2 ranks"; exit 1; }
[ -s "$dir/model.gguf" ] || { echo "FAIL: the Slurm run wrote no model.gguf"; exit 1; }

# The recipe runs every rank with backend.threads = its cores (1 here); the reference must
# resolve to the same configuration for config.yaml and the config hash to match.
mv "$dir" "$dir.slurm"
timeout "$limit" "$@" 2 "$bin" compress -c "$src/configs/default.yaml" --set run.dir="$dir" "${sets[@]}" \
    --set backend.device=cpu --set backend.threads=1 > "$dir.mpirun.log" 2>&1 ||
    { cat "$dir.mpirun.log"; echo "FAIL: $* 2 birdbone compress"; exit 1; }
bb_same_run "$dir.slurm" "$dir"
echo "ok: the cpu recipe under Slurm (srun --mpi=pmix, 2 tasks) wrote the same run as $* 2"
