#!/usr/bin/env bash
# rank0_traffic.sh DIR LAUNCH...: the default synthetic run (6 waves) on 3 ranks under LAUNCH (mpirun -n 3 ...), and
# what summary.json says came to rank 0, against the f32 bytes of the linear weights the other ranks own (one copy):
# in the wave stages (decay, heal, reinforce, redistribute; bytes_received.rank0) less than 1/8 of it, over the
# whole run (resources.per_rank[0]) less than half of it. The weights and masks stay on their owners — every file is
# written by every rank, each its own tensors, and only scalars, evaluation results, factors and the quantized
# blocks go to rank 0. (Before, every wave sent rank 0 all the weights and masks: 6 copies and more.)
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"
"$@" "$bin" compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir" --set backend.threads=1 \
    --set run.progress=off > "$dir.log" 2>&1 || { tail -30 "$dir.log"; echo "FAIL: $*"; exit 1; }
python3 - "$dir/summary.json" "$dir/metrics.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2]))
if s["ranks"] != 3:
    sys.exit(f'FAIL: {s["ranks"]} ranks, the test needs 3')
l0, l1 = next(x["layers"] for x in s["checkpoint_shares"] if x["rank"] == 0)
others = sum(4 * t["rows"] * t["cols"] for t in m["tensors"] if not l0 <= t["layer"] < l1)
stages = {x["name"]: x for x in s["stages"]}
waves = sum(stages[n]["bytes_received"]["rank0"] for n in ("decay", "heal", "reinforce", "redistribute"))
total = next(k for k in s["resources"]["per_rank"] if k["rank"] == 0)["bytes_received"]
n_waves = len(m["waves"]) - 1
print(f"rank 0 received {waves} B in {n_waves} waves, {total} B in the whole run; "
      f"the other ranks' linear weights: {others} B (f32)")
if n_waves < 2:
    sys.exit(f"FAIL: {n_waves} waves: the test needs several")
if not waves < others / 8:
    sys.exit("FAIL: rank 0 received the other ranks' weights during the waves")
if not total < others / 2:
    sys.exit("FAIL: rank 0 received a copy of the other ranks' weights during the run")
print("ok: the weights stayed on their owners")
PY
