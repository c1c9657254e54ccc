#!/usr/bin/env bash
# slurm_array.sh DIR : the strong-scaling array under a real Slurm. Brings up a private
# single-node Slurm (slurm_cluster.sh), submits slurm/strong.sbatch for CPU ranks through
# slurm/submit with --array=1,2 (element R runs R ranks of 1 core), waits for both elements
# (at most BB_SLURM_TIMEOUT s, default 150), and checks that each wrote its own run directory
# DIR/r<R> on R ranks, and that both wrote the same model.gguf (byte-identical on 1 and 2
# ranks). The calibration and evaluation sets are cut to 8 sequences to keep it short.
# Exits 77 (skipped) when the daemons cannot start here.
set -eu
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
limit="${BB_SLURM_TIMEOUT:-150}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/slurm_cluster.sh"
bb_slurm_up

rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
id="$("$src/slurm/submit" strong --cpu --name bbtest-strong --run-dir "$dir" --ranks 2 --cpus-per-rank 1 \
      --array 1,2 --mem 1G --time 5 --partition debug --birdbone "$bin" \
      --set calib.samples=8 --set eval.max_windows=8 --parsable)"
echo "slurm: submitted array job $id"
bb_slurm_wait "$id" "$limit" || { cat "$dir"/logs/*.out 2>/dev/null; exit 1; }
for r in 1 2; do
    log="$dir/logs/bbtest-strong-${id}_$r.out"
    [ -s "$log" ] || { ls "$dir/logs"; echo "FAIL: no output $log for element $r"; exit 1; }
    grep "^\[bb-job" "$log"
    state="$(bb_slurm_state "${id}_$r")"
    [ "$state" = "COMPLETED 0:0" ] || { cat "$log"; echo "FAIL: element $r ended '$state'"; exit 1; }
    grep -q -- "--ntasks=$r --ntasks-per-node=$r $bin compress --set run.dir=$dir/r$r" "$log" ||
        { echo "FAIL: element $r did not start $r ranks in $dir/r$r"; exit 1; }
    grep -q "\"ranks\": $r," "$dir/r$r/summary.json" || { echo "FAIL: element $r did not run on $r ranks"; exit 1; }
    [ -s "$dir/r$r/model.gguf" ] || { echo "FAIL: element $r wrote no model.gguf"; exit 1; }
done
cmp "$dir/r1/model.gguf" "$dir/r2/model.gguf" || { echo "FAIL: 1 and 2 ranks wrote different GGUF files"; exit 1; }
echo "ok: the strong-scaling array ran 1 and 2 ranks under Slurm, each in its own run directory, same GGUF"
