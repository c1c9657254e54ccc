#!/usr/bin/env bash
# summary_resources.sh DIR LAUNCH...: a short `birdbone compress` of synthetic:tiny under LAUNCH (mpirun -n 2 ...)
# and the checks on its summary.json: every stage that ran has a peak resident memory above 0 on every rank, the
# calibration forward (stage usage, point-to-point only) moved bytes and received what was sent, every rank sent
# and received something and spent time in MPI, and the summary table printed the memory and MPI lines.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"
"$@" "$bin" compress --set run.dir="$dir" --set backend.threads=1 --set run.progress=off --set waves.count=2 --set prune.target=0.15 \
    --set calib.samples=8 > "$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: $*"; exit 1; }
grep -q "memory       peak RSS per rank" "$dir.log" || { echo "FAIL: no memory line in the summary"; exit 1; }
grep -q "MPI          sent by all ranks" "$dir.log" || { echo "FAIL: no MPI line in the summary"; exit 1; }
python3 - "$dir/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
fail = []
ran = [x for x in s["stages"] if x["built"] and x["seconds"] > 0]
for x in ran:
    if not x["peak_rss_mib"]["min"] > 0:
        fail.append(f'stage {x["name"]}: peak RSS {x["peak_rss_mib"]}')
u = {x["name"]: x for x in s["stages"]}["usage"]
if not u["bytes_sent"]["sum"] > 0 or u["bytes_sent"]["sum"] != u["bytes_received"]["sum"]:
    fail.append(f'stage usage: sent {u["bytes_sent"]}, received {u["bytes_received"]}')
ranks = s["resources"]["per_rank"]
if len(ranks) != s["ranks"]:
    fail.append(f'{len(ranks)} per-rank entries for {s["ranks"]} ranks')
for k in ranks:
    if not (k["bytes_sent"] > 0 and k["bytes_received"] > 0 and k["comm_seconds"] > 0 and k["peak_rss_mib"] > 0):
        fail.append(f"rank entry {k}")
for f in fail:
    print("FAIL:", f)
print("ok:", len(ran), "stages with peak memory;", ", ".join(
    f'rank {k["rank"]} sent {k["bytes_sent"]:.0f} B, {k["comm_seconds"]:.2f} s in MPI' for k in ranks))
sys.exit(1 if fail else 0)
PY
