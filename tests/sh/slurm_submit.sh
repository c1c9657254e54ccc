#!/usr/bin/env bash
# slurm_submit.sh : slurm/submit --dry-run for every recipe. The filled script must parse
# (bash -n), carry exactly the #SBATCH options that the command line asked for (each once),
# export the run's inputs, and every bad command line must end with status 2 and a message
# saying what is wrong. Needs no Slurm.
set -eu
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
sub="$src/slurm/submit"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# run NAME ARGS...: fill a recipe; it must succeed and parse.
run() {
    local name=$1; shift
    current=$name
    if ! "$sub" "$@" --birdbone /bin/true --dry-run > "$out" 2> "$out.err"; then
        cat "$out.err"; fail "$name: slurm/submit $* failed"; return
    fi
    bash -n "$out" || fail "$name: the filled script does not parse"
    local dup
    dup="$(grep -oE '^#SBATCH --[a-z-]+' "$out" | sort | uniq -d)"
    [ -z "$dup" ] || fail "$name: options given twice: $dup"
}
has() { grep -qxF -- "$1" "$out" || fail "$current: no line '$1'"; }
lacks() { ! grep -qF -- "$1" "$out" || fail "$current: unexpected '$1'"; }

run cpu cpu --ranks 2 --cpus-per-rank 3 --mem 8G --time 30 --partition p1 --account a1 --qos q1 \
    -c "$src/configs/default.yaml" --run-dir /scratch/r1 --name n1 --set prune.target=0.5 --model synthetic:small
has "#SBATCH --job-name=n1"
has "#SBATCH --nodes=1"
has "#SBATCH --ntasks-per-node=2"
has "#SBATCH --cpus-per-task=3"
has "#SBATCH --mem=8G"
has "#SBATCH --time=30"
has "#SBATCH --partition=p1"
has "#SBATCH --account=a1"
has "#SBATCH --qos=q1"
has "#SBATCH --requeue"
has "#SBATCH --signal=B:USR1@120"
has "#SBATCH --open-mode=append"
has "#SBATCH --output=/scratch/r1/logs/%x-%j.out"
has "export BB_RUN_DIR=/scratch/r1"
has "export BB_CONFIG=$src/configs/default.yaml"
has "export BB_SET='prune.target=0.5 model.path=synthetic:small'"
has "export BB_BIN=/bin/true"
has "export BB_SLURM_DIR=$src/slurm"
lacks "gpus-per"
lacks "NCCL"
grep -q -- "--mpi=.*pmix" "$out" || fail "cpu: srun without --mpi=pmix"

run gpu gpu --gpus 4 --cpus-per-rank 16 --time 1:00:00 --run-dir /scratch/r2
has "#SBATCH --ntasks-per-node=4"
has "#SBATCH --gpus-per-node=4"
has "#SBATCH --cpus-per-task=16"
has "#SBATCH --time=1:00:00"
has "#SBATCH --job-name=gpu-default"
has "#SBATCH --output=/scratch/r2/logs/%x-%j.out"
has "export NCCL_NVLS_ENABLE=0"
lacks "export BB_CONFIG"

run multinode multinode --nodes 2 --gpus 8 --signal-lead 300 --sbatch-arg=--constraint=h100 --run-dir /scratch/r3
has "#SBATCH --nodes=2"
has "#SBATCH --ntasks-per-node=8"
has "#SBATCH --gpus-per-node=8"
has "#SBATCH --signal=B:USR1@300"
has "#SBATCH --constraint=h100"
has "export NCCL_NVLS_ENABLE=0"

run strong-cpu strong --cpu --ranks 4 --array 1,2,4 --run-dir /scratch/r4
has "#SBATCH --array=1,2,4"
has "#SBATCH --ntasks-per-node=4"
has "#SBATCH --output=/scratch/r4/logs/%x-%A_%a.out"
has "export BB_DEVICE=cpu"
lacks "gpus-per"

run weak-gpu weak --nodes 2 --gpus 8 --array 1,2,4,8,16 --blocks-per-rank 2 --weak-model synthetic:llama3-8b \
    --run-dir /scratch/r5
has "#SBATCH --array=1,2,4,8,16"
has "#SBATCH --nodes=2"
has "#SBATCH --gpus-per-node=8"
has "export BB_DEVICE=cuda"
has "export BB_BLOCKS_PER_RANK=2"
has "export BB_WEAK_MODEL=synthetic:llama3-8b"

# bad NEEDLE ARGS...: slurm/submit must exit 2 and say NEEDLE on stderr.
bad() {
    local needle=$1; shift
    local rc=0
    "$sub" "$@" --birdbone /bin/true --dry-run > /dev/null 2> "$out" || rc=$?
    [ "$rc" = 2 ] || fail "slurm/submit $*: status $rc, expected 2"
    grep -qF -- "$needle" "$out" || { cat "$out"; fail "slurm/submit $*: no message '$needle'"; }
}
bad "unknown recipe 'cpus' (recipes: cpu, gpu, multinode, strong, weak)" cpus
bad "recipe gpu runs one rank per GPU: give --gpus" gpu --ranks 4
bad "recipe cpu runs on CPUs: give --ranks" cpu --gpus 2
bad "8 ranks do not fit 1 node(s) x 4 ranks per node" strong --gpus 4 --array 1,2,8
bad "--array 1,x: expected rank counts" strong --array 1,x
bad "--set prune.target: expected KEY=VALUE" cpu --set prune.target
bad "give --run-dir instead" cpu --set run.dir=/x
bad "recipe cpu is for one node" cpu --nodes 2
bad "--time 1h: expected minutes or [D-]HH:MM:SS" cpu --time 1h
bad "config /nonexistent.yaml does not exist" cpu -c /nonexistent.yaml
bad "--nodes 0: expected a positive number" multinode --nodes 0
bad "--cpu applies to the scaling arrays" gpu --cpu

rm -f "$out.err"
[ "$fails" = 0 ] || { echo "$fails failures"; exit 1; }
echo "ok: filled scripts for cpu, gpu, multinode, strong and weak; 12 bad command lines refused"
