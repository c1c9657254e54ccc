#!/usr/bin/env bash
# resume.sh DIR: --resume continues a run byte-identically.
#   1. a reference run of the default configuration (pruning with the stop-loss's rollback, GPTQ, GGUF);
#   2. the same run killed with SIGKILL in the middle of the rollback (once wave 4's checkpoint is complete),
#      then `birdbone compress --resume`: model.gguf has the reference's SHA-256 and the last checkpoint the
#      same weights and masks (`birdbone hash`);
#   3. the same run sent SIGUSR1 after wave 1: it stops after a complete wave with exit status 75 and no DONE,
#      and --resume again gives the reference's bytes.
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress -c "$BB_SOURCE/configs/default.yaml")
rm -rf "$dir".*
"$bin" "${args[@]}" --set run.dir="$dir.ref" > "$dir.ref.log" 2>&1 || { cat "$dir.ref.log"; echo "FAIL: reference run"; exit 1; }
ref="$(sha256sum < "$dir.ref/model.gguf")"
last="$(ls "$dir.ref/checkpoints/"*.h5 | tail -1)"
refck="$("$bin" hash "$last" | tail -1)"

wait_for() { # FILE PID: until FILE exists (or the process ended)
    for _ in $(seq 1 6000); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}

# 2. SIGKILL mid-rollback
"$bin" "${args[@]}" --set run.dir="$dir.kill" > "$dir.kill.log" 2>&1 &
pid=$!
wait_for "$dir.kill/checkpoints/wave_0004.h5.DONE" $pid || { cat "$dir.kill.log"; echo "FAIL: the run ended before wave 4's checkpoint"; exit 1; }
kill -9 $pid
wait $pid 2>/dev/null || true
[ ! -e "$dir.kill/DONE" ] || { echo "FAIL: the run finished before it could be killed: nothing was resumed"; exit 1; }
"$bin" compress --resume "$dir.kill" > "$dir.kill.resume.log" 2>&1 || { cat "$dir.kill.resume.log"; echo "FAIL: --resume after SIGKILL"; exit 1; }
grep -q "^resume  wave [4-6] of" "$dir.kill.resume.log" || { cat "$dir.kill.resume.log"; echo "FAIL: no resume line"; exit 1; }
[ "$(sha256sum < "$dir.kill/model.gguf")" = "$ref" ] || { echo "FAIL: model.gguf after SIGKILL + resume differs from the uninterrupted run"; exit 1; }
ck="$("$bin" hash "$(ls "$dir.kill/checkpoints/"*.h5 | tail -1)" | tail -1)"
[ "$ck" = "$refck" ] || { echo "FAIL: last checkpoint differs: $ck vs $refck"; exit 1; }

# 3. SIGUSR1: a clean stop after a complete wave, exit 75
"$bin" "${args[@]}" --set run.dir="$dir.sig" > "$dir.sig.log" 2>&1 &
pid=$!
wait_for "$dir.sig/checkpoints/wave_0001.h5.DONE" $pid || { cat "$dir.sig.log"; echo "FAIL: the run ended before wave 1's checkpoint"; exit 1; }
kill -USR1 $pid
set +e
wait $pid
rc=$?
set -e
[ "$rc" = 75 ] || { cat "$dir.sig.log"; echo "FAIL: SIGUSR1 gave exit status $rc, want 75"; exit 1; }
[ ! -e "$dir.sig/DONE" ] || { echo "FAIL: DONE written by a stopped run"; exit 1; }
grep -q "continue with birdbone compress --resume" "$dir.sig.log" || { cat "$dir.sig.log"; echo "FAIL: no resume hint"; exit 1; }
"$bin" compress --resume "$dir.sig" > "$dir.sig.resume.log" 2>&1 || { cat "$dir.sig.resume.log"; echo "FAIL: --resume after SIGUSR1"; exit 1; }
[ "$(sha256sum < "$dir.sig/model.gguf")" = "$ref" ] || { echo "FAIL: model.gguf after SIGUSR1 + resume differs"; exit 1; }
echo "ok: SIGKILL mid-rollback and SIGUSR1 after wave 1 both resume to the uninterrupted run's bytes"
