#!/usr/bin/env bash
# ckpt_parallel.sh DIR MPIEXEC -np : the wave checkpoints are written collectively (parallel HDF5), each rank
# its own layers' datasets, and resume on any rank count.
#  1. an uninterrupted 3-rank run: summary.json's checkpoint_shares says each rank wrote exactly the weights,
#     masks and factors of its own layers (bytes checked against the datasets' shapes in the last checkpoint,
#     via h5ls) and only rank 0 the run-level datasets; the log names the communicator ("comm    mpi (3 ranks)");
#  2. a 3-rank run stopped (SIGUSR1) after its wave-2 checkpoint, resumed once on 2 ranks and once on 1 rank
#     (from the same saved directory): both end with the uninterrupted run's model.gguf, byte for byte.
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress -c "$BB_SOURCE/configs/default.yaml" --set backend.threads=1)
rm -rf "$dir".*

# 1. who wrote what
"$@" 3 --oversubscribe "$bin" "${args[@]}" --set run.dir="$dir.ref" > "$dir.ref.log" 2>&1 ||
    { tail -30 "$dir.ref.log"; echo "FAIL: 3-rank reference run"; exit 1; }
grep -q "comm    mpi (3 ranks)" "$dir.ref.log" || { echo "FAIL: the log does not name the communicator"; exit 1; }
last="$(ls "$dir.ref/checkpoints"/wave_*.h5 | sort | tail -1)"
h5ls -r "$last" > "$dir.ref.h5ls"
python3 - "$dir.ref/summary.json" "$dir.ref.h5ls" <<'PY' || exit 1
import json, re, sys
shares = json.load(open(sys.argv[1]))["checkpoint_shares"]
size = {"weight": 4, "mask": 8, "lora_a": 4, "lora_b": 4}
per_layer = {}
for line in open(sys.argv[2]):
    m = re.match(r"/layer_(\d+)/\w+/(weight|mask|lora_a|lora_b)\s+Dataset \{(\d+), (\d+)\}", line)
    if m:
        l = int(m.group(1))
        per_layer[l] = per_layer.get(l, 0) + int(m.group(3)) * int(m.group(4)) * size[m.group(2)]
n_layers = len(per_layer)
if len(shares) != 3:
    sys.exit(f"FAIL: {len(shares)} checkpoint shares, want 3")
covered = []
for s in shares:
    l0, l1 = s["layers"]
    want = sum(per_layer[l] for l in range(l0, l1))
    print(f"rank {s['rank']}: layers {l0}-{l1 - 1}, {s['tensors']} tensors, {s['tensor_bytes']} tensor bytes "
          f"(its layers' datasets: {want}), {s['other_bytes']} other bytes")
    if s["tensors"] != 7 * (l1 - l0) or s["tensor_bytes"] != want:
        sys.exit(f"FAIL: rank {s['rank']} wrote {s['tensors']} tensors / {s['tensor_bytes']} bytes, "
                 f"its layers {l0}-{l1 - 1} hold {7 * (l1 - l0)} / {want}")
    if (s["other_bytes"] > 0) != (s["rank"] == 0):
        sys.exit(f"FAIL: rank {s['rank']} wrote {s['other_bytes']} run-level bytes (only rank 0 should)")
    covered += range(l0, l1)
if sorted(covered) != list(range(n_layers)) or all(s["tensors"] == 7 * n_layers for s in shares):
    sys.exit(f"FAIL: the ranks' layers {covered} do not split the {n_layers} layers")
PY

# 2. stopped on 3 ranks, resumed on 2 and on 1
"$@" 3 --oversubscribe "$bin" "${args[@]}" --set run.dir="$dir.run" > "$dir.3.log" 2>&1 &
pid=$!
for _ in $(seq 1 6000); do
    [ -e "$dir.run/checkpoints/wave_0002.h5.DONE" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
[ -e "$dir.run/checkpoints/wave_0002.h5.DONE" ] || { tail -30 "$dir.3.log"; echo "FAIL: no wave 2 checkpoint"; exit 1; }
kill -USR1 $pid
set +e
wait $pid
rc=$?
set -e
[ "$rc" = 75 ] || { tail -20 "$dir.3.log"; echo "FAIL: 3 ranks stopped with $rc, want 75"; exit 1; }
[ ! -e "$dir.run/DONE" ] || { echo "FAIL: the run finished before it could be stopped"; exit 1; }
cp -a "$dir.run" "$dir.saved"
for n in 2 1; do
    rm -rf "$dir.run"
    cp -a "$dir.saved" "$dir.run"
    if [ "$n" = 1 ]; then
        "$bin" compress --resume "$dir.run" > "$dir.resume$n.log" 2>&1 || { tail -30 "$dir.resume$n.log"; echo "FAIL: resume on 1 rank"; exit 1; }
    else
        "$@" "$n" --oversubscribe "$bin" compress --resume "$dir.run" > "$dir.resume$n.log" 2>&1 ||
            { tail -30 "$dir.resume$n.log"; echo "FAIL: resume on $n ranks"; exit 1; }
    fi
    grep -q "resume  wave [2-9] of" "$dir.resume$n.log" || { tail -30 "$dir.resume$n.log"; echo "FAIL: no resume line"; exit 1; }
    cmp "$dir.ref/model.gguf" "$dir.run/model.gguf" ||
        { echo "FAIL: written by 3 ranks, resumed on $n: model.gguf differs from the uninterrupted run"; exit 1; }
    echo "ok: a checkpoint written by 3 ranks resumed on $n rank(s): the same model.gguf"
done
echo "ok: every rank wrote its own share; 3 -> 2 and 3 -> 1 resumes give the uninterrupted model.gguf"
