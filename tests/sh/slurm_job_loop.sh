#!/usr/bin/env bash
# slurm_job_loop.sh : the resume loop of slurm/lib/job.sh, run as a filled cpu recipe by plain
# bash with stand-ins for srun (runs the command), scontrol (records its arguments), scancel
# (records them and signals the stand-in birdbone) and birdbone (records its arguments, then
# does what FAKE_MODE says). Checks, without Slurm:
# a DONE run is not started again; a checkpoint (any of the BB_CKPT_GLOB patterns) adds
# --resume RUN_DIR (only when birdbone offers --resume); status 75 requeues; SIGUSR1 to the batch shell reaches birdbone and
# requeues; SIGTERM reaches birdbone and does not requeue; a real failure is not requeued;
# BB_MAX_RESTARTS stops the requeueing.
set -eu
src="${BB_SOURCE:?BB_SOURCE must point at the source tree}"
t="$(mktemp -d)"
trap 'rm -rf "$t"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mkdir -p "$t/bin"

cat > "$t/bin/srun" <<'EOF'
#!/bin/bash
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do shift; done
exec "$@"
EOF
cat > "$t/bin/scontrol" <<'EOF'
#!/bin/bash
echo "scontrol $*" >> "$FAKE_LOG"
EOF
cat > "$t/bin/scancel" <<'EOF'
#!/bin/bash
echo "scancel $*" >> "$FAKE_LOG"
kill -s "${1#--signal=}" "$(cat "$FAKE_LOG.ready")"
EOF
cat > "$t/birdbone" <<'EOF'
#!/bin/bash
if [ "${2:-}" = --help ]; then
    [ "${FAKE_RESUME:-1}" = 1 ] && echo "  --resume RUN_DIR   continue from the last complete wave"
    exit 0
fi
echo "birdbone $*" >> "$FAKE_LOG"
case "$FAKE_MODE" in
complete)
    prev=
    for a in "$@"; do
        case "$a" in run.dir=*) touch "${a#run.dir=}/DONE" ;; esac
        [ "$prev" = --resume ] && touch "$a/DONE"
        prev=$a
    done
    exit 0 ;;
fail) echo "error: something the user must fix" >&2; exit 1 ;;
tempfail) exit 75 ;;
wait)
    trap 'echo "birdbone got USR1" >> "$FAKE_LOG"; exit 75' USR1
    trap 'echo "birdbone got TERM" >> "$FAKE_LOG"; exit 75' TERM
    echo $$ > "$FAKE_LOG.ready"
    for _ in $(seq 300); do sleep 0.1; done
    exit 0 ;;
esac
EOF
chmod +x "$t/bin/srun" "$t/bin/scontrol" "$t/bin/scancel" "$t/birdbone"
"$src/slurm/submit" cpu --ranks 2 --cpus-per-rank 1 --run-dir "$t/run" --birdbone "$t/birdbone" --dry-run \
    > "$t/job.sh"

# job CASE MODE [SIGNAL]: runs the filled recipe; sets rc and the log's text in $log.
job() {
    current=$1
    export FAKE_MODE=$2 FAKE_LOG="$t/$1.log"
    : > "$FAKE_LOG"
    rc=0
    env PATH="$t/bin:$PATH" SLURM_JOB_ID=42 SLURM_CPUS_PER_TASK=1 SLURM_SUBMIT_DIR="$t" \
        bash "$t/job.sh" > "$t/$1.out" 2>&1 &
    local pid=$!
    if [ -n "${3:-}" ]; then
        for _ in $(seq 100); do [ -e "$FAKE_LOG.ready" ] && break; sleep 0.1; done
        [ -e "$FAKE_LOG.ready" ] || fail "$1: birdbone never started"
        kill -s "$3" "$pid"
    fi
    wait "$pid" || rc=$?
    log="$(cat "$FAKE_LOG")"
    rm -f "$FAKE_LOG.ready"
}
expect() { [[ "$log" == *"$1"* ]] || { cat "$t/$current.out"; fail "$current: the log lacks '$1': $log"; }; }
refuse() { [[ "$log" != *"$1"* ]] || fail "$current: the log has '$1': $log"; }
status() { [ "$rc" = "$1" ] || { cat "$t/$current.out"; fail "$current: status $rc, expected $1"; }; }

job fresh complete
status 0
expect "birdbone compress --set run.dir=$t/run --set backend.device=cpu --set backend.threads=1"
refuse "--resume"
refuse "scontrol"
[ -e "$t/run/DONE" ] || fail "fresh: no DONE"

job finished complete
status 0
[ -z "$log" ] || fail "finished: a DONE run was started again: $log"
grep -q "is complete" "$t/finished.out" || fail "finished: no 'is complete' message"

# a run an earlier attempt started (config.yaml) continues with --resume alone: no -c/--set
rm -f "$t/run/DONE"
touch "$t/run/config.yaml"
job resume complete
status 0
expect "birdbone compress --resume $t/run"
refuse "run.dir="
grep -q "holds no complete checkpoint: resuming from the dense model" "$t/resume.out" || fail "resume: no log line"

rm -f "$t/run/DONE"
mkdir -p "$t/run/ckpt"
touch "$t/run/ckpt/w1.h5"
BB_CKPT_GLOB="checkpoints/*.DONE ckpt/*.h5" job resume-glob complete
status 0
expect "birdbone compress --resume $t/run"
grep -q "holds a checkpoint: resuming from its last complete wave" "$t/resume-glob.out" || fail "resume-glob: no log line"

rm -f "$t/run/DONE"
FAKE_RESUME=0 job no-resume-flag complete
status 0
refuse "--resume"
grep -q "has no --resume: starting over" "$t/no-resume-flag.out" || fail "no-resume-flag: no warning"
rm -f "$t/run/config.yaml"

rm -f "$t/run/DONE"
job tempfail tempfail
status 0
expect "scontrol requeue 42"

job usr1 wait USR1
status 0
expect "scancel --signal=USR1 42"
expect "birdbone got USR1"
expect "scontrol requeue 42"

job term wait TERM
status 75
expect "scancel --signal=TERM 42"
expect "birdbone got TERM"
refuse "scontrol"

job failure fail
status 1
refuse "scontrol"
grep -q "something the user must fix" "$t/failure.out" || fail "failure: birdbone's message is not in the job output"

SLURM_RESTART_COUNT=20 job max-restarts tempfail
status 75
refuse "scontrol"
grep -q "BB_MAX_RESTARTS=20" "$t/max-restarts.out" || fail "max-restarts: no message"

[ "$fails" = 0 ] || { echo "$fails failures"; exit 1; }
echo "ok: fresh, finished, resume (two checkpoint patterns), no --resume, status 75, SIGUSR1, SIGTERM, failure and restart limit"
