#!/usr/bin/env bash
# slurm_requeue.sh DIR MPIRUN... : preemption and resume under a real Slurm. Brings up a
# private single-node Slurm (slurm_cluster.sh), submits slurm/cpu.sbatch (2 tasks, embedded
# default model, 8 waves of at most 5 %) through slurm/submit, and as soon as the first wave
# checkpoint exists sends the batch shell the pre-timeout signal (scancel --signal=USR1
# --batch, what --signal=B:USR1@120 delivers). The recipe forwards it, birdbone stops at a
# wave boundary with status 75, the recipe requeues the job, and the requeued job must resume
# (`--resume`) and complete (RUN_DIR/DONE). The result must equal an uninterrupted
# `MPIRUN 2 birdbone compress` of the same configuration in the same run directory
# (bb_same_run). Needs birdbone's --resume and signal handling; registered only with
# -DBB_TEST_SLURM_REQUEUE=ON. Exits 77 (skipped) when the daemons cannot start here.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
limit="${BB_SLURM_TIMEOUT:-240}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/slurm_cluster.sh"
for c in h5diff "$1"; do command -v "$c" > /dev/null || bb_skip "$c not found (scripts/setup.sh installs it)"; done
bb_slurm_up

rm -rf "$dir" "$dir.slurm"
mkdir -p "$(dirname "$dir")"
sets=(--set prune.per_wave=0.05 --set waves.count=8)
ckpt="${BB_CKPT_GLOB:-checkpoints/wave_*.h5.DONE}"
id="$("$src/slurm/submit" cpu --name bbtest-requeue --run-dir "$dir" --ranks 2 --cpus-per-rank 1 --mem 1G \
      --time 10 --partition debug --birdbone "$bin" -c "$src/configs/default.yaml" "${sets[@]}" --parsable)"
log="$dir/logs/bbtest-requeue-$id.out"
echo "slurm: submitted job $id"

# Interrupt after the first complete wave checkpoint.
has_ckpt() { compgen -G "$dir/$ckpt" > /dev/null; }
for ((i = 0; i < limit * 4; i++)); do
    has_ckpt || [ -z "$(squeue -h -j "$id" -o %T)" ] && break
    sleep 0.25
done
has_ckpt || { cat "$log" 2>/dev/null; echo "FAIL: no checkpoint ($dir/$ckpt) after $limit s"; exit 1; }
[ "$(squeue -h -j "$id" -o %T)" = RUNNING ] ||
    { cat "$log"; echo "FAIL: job $id was no longer running at the first checkpoint: lengthen the run"; exit 1; }
scancel --signal=USR1 --batch "$id"
echo "slurm: sent SIGUSR1 to the batch shell of job $id"

# The recipe requeues the job; a requeued job waits for its begin time (2 minutes): release it.
for ((i = 0; i < limit * 2; i++)); do
    [ "$(scontrol show job "$id" | grep -o 'Restarts=[0-9]*')" = Restarts=1 ] &&
        [ "$(squeue -h -j "$id" -o %T)" = PENDING ] && break
    sleep 0.5
done
[ "$(squeue -h -j "$id" -o %T)" = PENDING ] || { cat "$log"; echo "FAIL: job $id was not requeued"; exit 1; }
# Release it once the node has cleaned up the first start, and not in the same second as the
# requeue: an immediate release once ended the second start as FAILED before it printed a line
# (slurmd compares the new job credential with the revoked one to the second).
for ((i = 0; i < 60; i++)); do [ "$(sinfo -h -n bbnode -o %T)" = idle ] && break; sleep 0.5; done
sleep 2
scontrol update JobId="$id" StartTime=now
bb_slurm_wait "$id" "$limit" || { cat "$log"; exit 1; }
cat "$log"
state="$(bb_slurm_state "$id")"
[ "$state" = "COMPLETED 0:0" ] || { echo "FAIL: job $id ended '$state', expected 'COMPLETED 0:0'"; exit 1; }
grep -q "SIGUSR1 received" "$log" || { echo "FAIL: the recipe did not see SIGUSR1"; exit 1; }
grep -q "requeueing job $id (restart 1)" "$log" || { echo "FAIL: the recipe did not requeue the job"; exit 1; }
grep -q "resuming from its last complete wave" "$log" && grep -q -- "--resume $dir" "$log" ||
    { echo "FAIL: the requeued job did not resume (no --resume $dir)"; exit 1; }
[ -e "$dir/DONE" ] || { echo "FAIL: the resumed run wrote no $dir/DONE"; exit 1; }

mv "$dir" "$dir.slurm"
timeout "$limit" "$@" 2 "$bin" compress -c "$src/configs/default.yaml" --set run.dir="$dir" "${sets[@]}" \
    --set backend.device=cpu --set backend.threads=1 > "$dir.mpirun.log" 2>&1 ||
    { cat "$dir.mpirun.log"; echo "FAIL: $* 2 birdbone compress"; exit 1; }
bb_same_run "$dir.slurm" "$dir"
echo "ok: interrupted by SIGUSR1, requeued and resumed under Slurm, the run equals an uninterrupted one"
