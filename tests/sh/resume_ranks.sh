#!/usr/bin/env bash
# resume_ranks.sh DIR MPIEXEC -np : a run stopped on 2 ranks (SIGUSR1 after wave 2, exit 75) and resumed on 3
# ranks ends with the same model.gguf as an uninterrupted 1-rank run (backend.threads=1 everywhere).
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress -c "$BB_SOURCE/configs/default.yaml" --set backend.threads=1)
rm -rf "$dir".*
"$bin" "${args[@]}" --set run.dir="$dir.ref" > "$dir.ref.log" 2>&1 || { cat "$dir.ref.log"; echo "FAIL: reference"; exit 1; }
"$@" 2 --oversubscribe "$bin" "${args[@]}" --set run.dir="$dir.run" > "$dir.2.log" 2>&1 &
pid=$!
for _ in $(seq 1 6000); do
    [ -e "$dir.run/checkpoints/wave_0002.h5.DONE" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.02
done
[ -e "$dir.run/checkpoints/wave_0002.h5.DONE" ] || { cat "$dir.2.log"; echo "FAIL: no wave 2 checkpoint"; exit 1; }
kill -USR1 $pid
set +e
wait $pid
rc=$?
set -e
[ "$rc" = 75 ] || { tail -20 "$dir.2.log"; echo "FAIL: 2 ranks stopped with $rc, want 75"; exit 1; }
[ ! -e "$dir.run/DONE" ] || { echo "FAIL: the run finished before it could be stopped"; exit 1; }
"$@" 3 --oversubscribe "$bin" compress --resume "$dir.run" > "$dir.3.log" 2>&1 ||
    { tail -30 "$dir.3.log"; echo "FAIL: resume on 3 ranks"; exit 1; }
grep -q "resume  wave [2-9] of" "$dir.3.log" || { cat "$dir.3.log"; echo "FAIL: no resume line"; exit 1; }
cmp "$dir.ref/model.gguf" "$dir.run/model.gguf" || { echo "FAIL: stopped on 2 ranks + resumed on 3 differs from 1 rank"; exit 1; }
echo "ok: stopped on 2 ranks after wave 2, resumed on 3 ranks: model.gguf equals the uninterrupted 1-rank run's"
