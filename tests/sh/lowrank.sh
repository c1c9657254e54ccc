#!/usr/bin/env bash
# lowrank.sh DIR: factorization as compression (lowrank.enabled) on a synthetic model whose matrices are low rank
# (synthetic:tiny,energy=1), no pruning, RTN q4_0, lowrank.export adapter, rank_budget 1:
#   every factored weight's error is at most its q4_0 error with at most as many bits (the log's lines);
#   summary.json reports the factored weights and fewer factor bits than quantized-dense bits;
#   checkpoints/quantized.h5 stores factor_a / factor_b of the factored weights; lora.gguf is written.
# Then the default synthetic model (energy 0.6, noisier): no weight factors, and the run says why.
set -eu
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress --set prune.method=none --set quant.method=rtn --set quant.type=q4_0 --set lowrank.enabled=true
      --set lowrank.rank_budget=1 --set lowrank.export=adapter --set backend.threads=1)
rm -rf "$dir".*
"$bin" "${args[@]}" --set model.path=synthetic:tiny,energy=1 --set run.dir="$dir.low" > "$dir.low.log" 2>&1 || { cat "$dir.low.log"; echo "FAIL: low-rank run"; exit 1; }
python3 - "$dir.low" "$dir.low.log" <<'PY'
import json, re, sys
run, log = sys.argv[1], open(sys.argv[2]).read()
lines = re.findall(r"^lowrank (\S+) factored at rank (\d+): error ([0-9.e-]+) \(q4_0 dense: ([0-9.e-]+)\), (\d+) bits instead of (\d+)", log, re.M)
bad = []
if not lines: bad.append("no weight factored")
for name, r, ef, eq, bf, bq in lines:
    if float(ef) > float(eq): bad.append("%s: factored error %s above q4_0's %s" % (name, ef, eq))
    if int(bf) > int(bq): bad.append("%s: %s factor bits above %s" % (name, bf, bq))
s = json.load(open(run + "/summary.json"))["lowrank"]
if s["factored"] != len(lines): bad.append("summary says %s factored, the log %d" % (s["factored"], len(lines)))
if not s["bits_factors"] < s["bits_dense"]: bad.append("no saving: %s" % s)
if bad: print("FAIL:\n  " + "\n  ".join(bad)); sys.exit(1)
print("ok: %d weights factored, %d bits of f16 factors instead of %d quantized dense" % (len(lines), s["bits_factors"], s["bits_dense"]))
PY
h5ls -r "$dir.low/checkpoints/quantized.h5" | grep -q "layer_000/attn_q/factor_a" || { h5ls -r "$dir.low/checkpoints/quantized.h5" | head; echo "FAIL: no factors in quantized.h5"; exit 1; }
[ -s "$dir.low/lora.gguf" ] || { echo "FAIL: no lora.gguf"; exit 1; }
"$bin" "${args[@]}" --set run.dir="$dir.noisy" > "$dir.noisy.log" 2>&1 || { cat "$dir.noisy.log"; echo "FAIL: default-model run"; exit 1; }
grep -q "^lowrank 0 of 28 weights factored.*every weight stays dense" "$dir.noisy.log" || { grep lowrank "$dir.noisy.log"; echo "FAIL: the noisy model should stay dense"; exit 1; }
echo "ok: factors in quantized.h5 and lora.gguf; the noisy model stays dense"
