#!/usr/bin/env bash
# run_dir_guard.sh DIR: a finished run is never overwritten by accident.
# A second `birdbone compress` into the same run.dir fails with one clear
# message and leaves the first run's files untouched (same hashes); --force
# replaces the run and clears what the old one left (a stray wave file);
# --resume refuses -c/--set (bad usage, exit 2).
set -eu
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress --set run.dir="$dir" --set quant.method=none --set waves.count=1 --set prune.target=0.1 --set scan.enabled=false)
rm -rf "$dir"
"$bin" "${args[@]}" > "$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: first run"; exit 1; }
[ -f "$dir/DONE" ] || { echo "FAIL: no DONE marker after a complete run"; exit 1; }
before="$(cd "$dir" && sha256sum DONE metrics.json wave_1.h5)"
set +e
"$bin" "${args[@]}" > "$dir.2.log" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$dir.2.log"; echo "FAIL: second run into the same dir exited $rc, want 1"; exit 1; }
grep -q "already holds a run (.*): pass --force to replace it, --resume $dir to continue it" "$dir.2.log" ||
    { cat "$dir.2.log"; echo "FAIL: no clear message"; exit 1; }
[ "$(grep -c 'error' "$dir.2.log")" = 1 ] || { cat "$dir.2.log"; echo "FAIL: want exactly one error line"; exit 1; }
after="$(cd "$dir" && sha256sum DONE metrics.json wave_1.h5)"
[ "$before" = "$after" ] || { echo "FAIL: the refused run changed the first run's files"; exit 1; }
cp "$dir/wave_1.h5" "$dir/wave_7.h5"
"$bin" "${args[@]}" --force > "$dir.3.log" 2>&1 || { cat "$dir.3.log"; echo "FAIL: --force"; exit 1; }
[ ! -e "$dir/wave_7.h5" ] || { echo "FAIL: --force left the old run's wave_7.h5"; exit 1; }
[ -f "$dir/DONE" ] && [ -f "$dir/wave_1.h5" ] || { echo "FAIL: --force run incomplete"; exit 1; }
set +e
"$bin" compress --resume "$dir" --set prune.target=0.5 > "$dir.4.log" 2>&1
rc=$?
set -e
[ "$rc" = 2 ] || { cat "$dir.4.log"; echo "FAIL: --resume with --set exited $rc, want 2"; exit 1; }
echo "ok: refused without --force (files unchanged), replaced with --force, --resume takes no --set"
