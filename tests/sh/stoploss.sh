#!/usr/bin/env bash
# stoploss.sh DIR: the default synthetic run with the stop-loss on (prune.target
# 0.3 in waves of 10 %, no healing) loses more than 3 % PPL for two waves in a
# row, rolls back over stoploss.rollback_waves = 3 waves and stops pruning.
# Checked from the run's own files: the rollback restores about 1/3 of the
# weights pruned since the last good wave per wave (sparsity falls
# monotonically), and its last wave is the last good wave again — every mask
# equal to that wave's (h5diff) and the same PPL to the last digit.
set -eu
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"
"$bin" compress --set run.dir="$dir" --set quant.method=none --set heal.enabled=false --set rigl.enabled=false \
    --set stress.enabled=false > "$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: compress"; exit 1; }
grep -E '^wave [0-9]+/' "$dir.log" || true
read -r good last < <(python3 - "$dir/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
w = m["waves"]
rb = [x for x in w if x["rolled_back"]]
assert len(rb) == 3, f"expected 3 rollback waves, got {len(rb)}"
first = w.index(rb[0])
# the waves before the rollback: the last two lost more than 3 %, the good one is the last within it
losing = [x for x in w[1:first] if x["dppl"] > 0.03]
assert len(losing) >= 2 and w[first - 1]["dppl"] > 0.03 and w[first - 2]["dppl"] > 0.03, "no two losing waves before the rollback"
good = max(x["wave"] for x in w[:first] if x["dppl"] <= 0.03)
sp = [x["sparsity"] for x in w[first - 1:]]
assert all(a > b for a, b in zip(sp, sp[1:])), f"sparsity does not fall during the rollback: {sp}"
# each step restores about a third of what was pruned since the good wave
span = w[first - 1]["sparsity"] - w[good]["sparsity"]
for j, x in enumerate(rb, 1):
    want = w[first - 1]["sparsity"] - span * j / 3
    assert abs(x["sparsity"] - want) < 0.01 * span + 1e-9, f"rollback {j}: sparsity {x['sparsity']}, want {want}"
assert rb[-1]["ppl"] == w[good]["ppl"], f"rolled back PPL {rb[-1]['ppl']} != good wave's {w[good]['ppl']}"
print(good, rb[-1]["wave"])
PY
) || { echo "FAIL: metrics.json check"; exit 1; }
[ "$good" -ge 1 ] || { echo "FAIL: the good wave is the dense model: the test expects wave 1 to be within 3 %"; exit 1; }
# the masks at the end of the rollback are the good wave's
for g in $(h5ls -r "$dir/wave_$good.h5" | awk '/\/mask +Dataset/ {print $1}'); do
    h5diff "$dir/wave_$good.h5" "$dir/wave_$last.h5" "$g" "$g" || { echo "FAIL: $g differs (wave $good vs $last)"; exit 1; }
done
grep -q "stop-loss: dPPL above 3 % for 2 waves, rolling back to wave $good over 3 waves" "$dir.log" ||
    { echo "FAIL: no stop-loss line"; exit 1; }
echo "ok: rolled back to wave $good over 3 waves (last wave $last); masks and PPL equal wave $good's"
