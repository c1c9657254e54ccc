#!/usr/bin/env bash
# compress_outputs.sh RUN_DIR LAUNCH... : runs `LAUNCH compress --set run.dir=RUN_DIR`
# and checks the run files exist, the summary names the config hash printed by
# `birdbone config --hash`, and the resolved config reloads to the same hash.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"
"$@" "$bin" compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir" > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
cat "$dir.log"
for f in config.yaml summary.json; do [ -s "$dir/$f" ] || { echo "FAIL: $dir/$f missing"; exit 1; }; done
want="$("$bin" config -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir" --hash)"
grep -q "sha256:$want" "$dir/summary.json" || { echo "FAIL: summary.json lacks config hash $want"; exit 1; }
grep -q "sha256:$want" "$dir.log" || { echo "FAIL: the log does not print config hash $want"; exit 1; }
again="$("$bin" config -c "$dir/config.yaml" --hash)"
[ "$again" = "$want" ] || { echo "FAIL: resolved config reloads with hash $again, expected $want"; exit 1; }
grep -q "summary" "$dir.log" || { echo "FAIL: no summary printed"; exit 1; }
echo "ok: outputs and hash $want"
