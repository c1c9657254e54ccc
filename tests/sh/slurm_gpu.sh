#!/usr/bin/env bash
# slurm_gpu.sh : the GPU recipes under a real Slurm, with stand-in GPUs. Brings up a private
# single-node Slurm whose node has 2 GPUs (gres/gpu on stand-in device files; no CUDA), submits
# gpu.sbatch (--gpus 2), multinode.sbatch (--nodes 1 --gpus 2) and strong.sbatch (--gpus 2,
# --array 1,2) through slurm/submit with a stand-in birdbone that prints what each rank got,
# and checks: every job completed; one rank per GPU, node-local ranks 0..n-1; every rank sees
# all the GPUs the job holds (CUDA_VISIBLE_DEVICES=0,1: what NCCL needs for CUDA IPC between
# ranks); NCCL_NVLS_ENABLE=0; birdbone asked for backend.device=cuda with one thread per core.
# Exits 77 (skipped) when the daemons cannot start here.
set -eu
dir="$1"
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
limit="${BB_SLURM_TIMEOUT:-60}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/slurm_cluster.sh"
# shellcheck disable=SC2034  # read by bb_slurm_up
BB_SLURM_GPUS=2
bb_slurm_up

rm -rf "$dir"
mkdir -p "$dir"
cat > "$dir/birdbone" <<'EOF'
#!/bin/bash
[ "${2:-}" = --help ] && exit 0
echo "rank $SLURM_PROCID local $SLURM_LOCALID visible=${CUDA_VISIBLE_DEVICES-unset} nvls=${NCCL_NVLS_ENABLE-unset} args: $*"
EOF
chmod +x "$dir/birdbone"

# check NAME LOG RANKS: the job's log holds exactly RANKS rank lines with the expected contents.
check() {
    local name=$1 log=$2 n=$3 r
    [ "$(grep -c '^rank ' "$log")" = "$n" ] || { cat "$log"; echo "FAIL: $name: expected $n ranks"; exit 1; }
    for ((r = 0; r < n; r++)); do
        grep -qE "^rank $r local $r visible=0,1 nvls=0 args: compress --set run.dir=[^ ]+ --set backend.device=cuda --set backend.threads=1$" "$log" ||
            { cat "$log"; echo "FAIL: $name: rank $r did not get local rank $r, GPUs 0,1, NVLS off, cuda"; exit 1; }
    done
    echo "ok: $name: $n ranks, each seeing GPUs 0,1, local ranks 0..$((n - 1))"
}
opts=(--cpus-per-rank 1 --mem 1G --time 5 --partition debug --birdbone "$dir/birdbone" --parsable)

id="$("$src/slurm/submit" gpu --name bbtest-gpu --run-dir "$dir/gpu" --gpus 2 "${opts[@]}")"
bb_slurm_wait "$id" "$limit"
[ "$(bb_slurm_state "$id")" = "COMPLETED 0:0" ] || { cat "$dir"/gpu/logs/*.out; echo "FAIL: gpu job"; exit 1; }
check gpu.sbatch "$dir/gpu/logs/bbtest-gpu-$id.out" 2

id="$("$src/slurm/submit" multinode --name bbtest-mn --run-dir "$dir/mn" --nodes 1 --gpus 2 "${opts[@]}")"
bb_slurm_wait "$id" "$limit"
[ "$(bb_slurm_state "$id")" = "COMPLETED 0:0" ] || { cat "$dir"/mn/logs/*.out; echo "FAIL: multinode job"; exit 1; }
check multinode.sbatch "$dir/mn/logs/bbtest-mn-$id.out" 2

id="$("$src/slurm/submit" strong --name bbtest-sg --run-dir "$dir/strong" --gpus 2 --array 1,2 "${opts[@]}")"
bb_slurm_wait "$id" "$limit"
for r in 1 2; do
    [ "$(bb_slurm_state "${id}_$r")" = "COMPLETED 0:0" ] ||
        { cat "$dir"/strong/logs/*.out; echo "FAIL: strong element $r"; exit 1; }
    check "strong.sbatch element $r" "$dir/strong/logs/bbtest-sg-${id}_$r.out" "$r"
done
echo "ok: gpu, multinode and strong (GPU) recipes place one rank per GPU with every allocated GPU visible"
