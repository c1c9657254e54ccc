#!/usr/bin/env bash
# ranks_identical.sh DIR MPIRUN... : the same configuration gives the same run on 1, 2, 3 and 4 ranks.
# The default synthetic run (4 layers: 2 ranks split them, 4 ranks give one each, and the stop-loss's rollback
# runs) with backend.threads=1 on every rank, each time into the same run.dir (moved aside afterwards, so the
# configuration and its hash are equal). Compared with the 1-rank run: model.gguf byte for byte; the last
# checkpoint, every wave file and every DeltaHistory record by content (h5diff, wall-clock seconds left out);
# metrics.json without its timings.
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
# BB_RANKS: the rank counts (default "1 2 3 4"); BB_EXTRA: more --set arguments, space-separated
read -r -a extra <<< "${BB_EXTRA:-}"
args=(compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir" --set backend.threads=1)
for kv in ${extra[@]+"${extra[@]}"}; do args+=(--set "$kv"); done
ranks="${BB_RANKS:-1 2 3 4}"
rm -rf "$dir" "$dir".r*
for n in $ranks; do
    if [ "$n" = 1 ]; then
        "$bin" "${args[@]}" > "$dir.r$n.log" 2>&1 || { cat "$dir.r$n.log"; echo "FAIL: 1 rank"; exit 1; }
    else
        "$@" "$n" --oversubscribe "$bin" "${args[@]}" > "$dir.r$n.log" 2>&1 ||
            { tail -30 "$dir.r$n.log"; echo "FAIL: $n ranks"; exit 1; }
    fi
    mv "$dir" "$dir.r$n"
done
ex=(--exclude-path /metrics/seconds --exclude-path /metrics_old/seconds --exclude-path /metrics_new/seconds)
for n in $ranks; do
    [ "$n" = 1 ] && continue
    a="$dir.r1" b="$dir.r$n"
    cmp "$a/model.gguf" "$b/model.gguf" || { echo "FAIL: model.gguf differs between 1 and $n ranks"; exit 1; }
    # the spectral scan, split over the ranks' blocks: the same singular values
    cmp "$a/scan/scan.csv" "$b/scan/scan.csv" || { echo "FAIL: scan/scan.csv differs between 1 and $n ranks"; exit 1; }
    files="$(cd "$a" && find . -name '*.h5' | grep -v calib_stats | sort)"
    [ "$files" = "$(cd "$b" && find . -name '*.h5' | grep -v calib_stats | sort)" ] ||
        { echo "FAIL: 1 and $n ranks wrote different HDF5 files"; exit 1; }
    for f in $files; do
        h5diff "${ex[@]}" "$a/$f" "$b/$f" > /dev/null || { echo "FAIL: $f differs between 1 and $n ranks"; exit 1; }
    done
    python3 - "$a/metrics.json" "$b/metrics.json" <<'PY' || exit 1
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in ("seconds", "stages")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
if a != b:
    sys.exit(f"FAIL: {sys.argv[1]} and {sys.argv[2]} differ beyond their timings")
PY
    echo "same on $n ranks: model.gguf, scan.csv, $(echo "$files" | wc -l) HDF5 files, metrics.json"
done
grep -E "^\[rank 0\] ---- sharding plan" -A7 "$dir.r${ranks##* }.log" | head -8 || true
echo "ok: $ranks ranks give the same run"
