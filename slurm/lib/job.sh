# job.sh — the resume loop that every slurm/*.sbatch recipe sources.
# shellcheck shell=bash
#
# bb_job_run LAUNCH...  runs `LAUNCH birdbone compress ...` for the run in BB_RUN_DIR:
#   - nothing to do when BB_RUN_DIR/DONE exists (a finished run stays finished);
#   - continues with `--resume BB_RUN_DIR` when an earlier attempt started the run (config.yaml);
#   - passes SIGUSR1 (sent by Slurm before the time limit: --signal=B:USR1@120) and SIGTERM
#     (preemption, scancel) on to every rank, so birdbone stops at a wave boundary and exits 75;
#   - after a SIGUSR1 or an exit status of 75 requeues the job (it must be submitted with
#     --requeue), which resumes from the last complete wave; after SIGTERM it leaves the
#     requeueing to Slurm (a preempted job is requeued by the controller, a cancelled one not).
#
# Inputs (environment; slurm/submit fills them in):
#   BB_BIN           birdbone executable          (default $SLURM_SUBMIT_DIR/build/birdbone)
#   BB_CONFIG        YAML configuration           (default: none, the embedded default)
#   BB_RUN_DIR       run directory                (default $SLURM_SUBMIT_DIR/runs/$SLURM_JOB_NAME)
#   BB_SET           extra overrides, KEY=VALUE separated by spaces (values without spaces)
#   BB_MAX_RESTARTS  requeue at most this many times (default 20)
#   BB_CKPT_GLOB     what a complete checkpoint looks like inside BB_RUN_DIR: patterns separated by
#                    spaces (default checkpoints/wave_*.h5.DONE: the marker birdbone writes after a
#                    checkpoint is complete); only used for the log line

: "${SLURM_SUBMIT_DIR:=$PWD}"
BB_BIN=${BB_BIN:-$SLURM_SUBMIT_DIR/build/birdbone}
BB_CONFIG=${BB_CONFIG:-}
BB_RUN_DIR=${BB_RUN_DIR:-$SLURM_SUBMIT_DIR/runs/${SLURM_JOB_NAME:-birdbone}}
BB_SET=${BB_SET:-}
BB_MAX_RESTARTS=${BB_MAX_RESTARTS:-20}
BB_CKPT_GLOB=${BB_CKPT_GLOB:-checkpoints/wave_*.h5.DONE}
BB_EX_TEMPFAIL=75

bb_log() { printf '[bb-job %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
bb_err() { bb_log "error: $*" >&2; }

# bb_has_checkpoint: true when BB_RUN_DIR holds a file matching BB_CKPT_GLOB.
bb_has_checkpoint() {
    local f p pats
    read -r -a pats <<< "$BB_CKPT_GLOB"
    for p in ${pats[@]+"${pats[@]}"}; do
        for f in "$BB_RUN_DIR"/$p; do
            [ -e "$f" ] && return 0
        done
    done
    return 1
}

# bb_job_args: the birdbone arguments for this attempt, in the array BB_ARGS. A run directory
# that an earlier attempt started (it holds config.yaml) is continued with `--resume RUN_DIR`,
# which takes the configuration the run recorded (no -c/--set: the run must not change under
# its own checkpoints) and starts from the dense model when no checkpoint was completed yet.
bb_job_args() {
    if [ -f "$BB_RUN_DIR/config.yaml" ]; then
        local help
        help="$("$BB_BIN" compress --help 2>&1 || true)"
        if [[ "$help" == *--resume* ]]; then
            BB_ARGS=(compress --resume "$BB_RUN_DIR")
            if bb_has_checkpoint; then
                bb_log "$BB_RUN_DIR holds a checkpoint: resuming from its last complete wave"
            else
                bb_log "$BB_RUN_DIR was started but holds no complete checkpoint: resuming from the dense model"
            fi
            return 0
        fi
        bb_log "warning: $BB_RUN_DIR was started but $BB_BIN has no --resume: starting over"
    fi
    BB_ARGS=(compress)
    [ -z "$BB_CONFIG" ] || BB_ARGS+=(-c "$BB_CONFIG")
    BB_ARGS+=(--set "run.dir=$BB_RUN_DIR")
    local kv sets
    read -r -a sets <<< "$BB_SET"
    for kv in ${sets[@]+"${sets[@]}"}; do BB_ARGS+=(--set "$kv"); done
}

bb_job_requeue() {
    local n=${SLURM_RESTART_COUNT:-0}
    if [ "$n" -ge "$BB_MAX_RESTARTS" ]; then
        bb_err "job requeued $n times already (BB_MAX_RESTARTS=$BB_MAX_RESTARTS): not again;" \
               "submit the same script again to continue from the last complete wave"
        return "$BB_EX_TEMPFAIL"
    fi
    # said before the requeue: scontrol requeue ends this running batch script, often before a line after it
    bb_log "requeueing job $SLURM_JOB_ID (restart $((n + 1))): it resumes from the last complete wave"
    if scontrol requeue "$SLURM_JOB_ID"; then
        return 0
    fi
    bb_err "scontrol requeue $SLURM_JOB_ID failed (was the job submitted with --requeue? the cluster" \
           "may disable requeueing): submit the same script again to continue from the last complete wave"
    return "$BB_EX_TEMPFAIL"
}

bb_job_run() {
    if [ ! -x "$BB_BIN" ]; then
        bb_err "birdbone executable $BB_BIN not found: build it (cmake --build build) or set BB_BIN"
        return 1
    fi
    if [ -n "$BB_CONFIG" ] && [ ! -r "$BB_CONFIG" ]; then
        bb_err "cannot read the configuration $BB_CONFIG: give an absolute path or submit from its directory"
        return 1
    fi
    if [ -e "$BB_RUN_DIR/DONE" ]; then
        bb_log "run $BB_RUN_DIR is complete ($BB_RUN_DIR/DONE exists): nothing to do"
        return 0
    fi
    mkdir -p "$BB_RUN_DIR"
    bb_job_args
    bb_log "job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-?}: $* $BB_BIN ${BB_ARGS[*]}"

    # The step runs in the background so that the traps fire at once (bash runs a trap only
    # between commands, and `wait` is interruptible where a foreground srun is not).
    BB_SIGNAL=""
    "$@" "$BB_BIN" "${BB_ARGS[@]}" &
    BB_STEP_PID=$!
    trap 'bb_job_forward USR1' USR1
    trap 'bb_job_forward TERM' TERM
    local rc
    while :; do
        rc=0
        wait "$BB_STEP_PID" || rc=$?
        # A status above 128 with the step still alive means a trap interrupted the wait.
        if [ "$rc" -gt 128 ] && kill -0 "$BB_STEP_PID" 2>/dev/null; then continue; fi
        break
    done
    trap - USR1 TERM

    if [ -e "$BB_RUN_DIR/DONE" ]; then
        bb_log "run complete: $BB_RUN_DIR/DONE"
        return 0
    fi
    if [ "$rc" -eq 0 ]; then
        bb_log "birdbone finished (status 0) without writing $BB_RUN_DIR/DONE (a birdbone without DONE markers)"
        return 0
    fi
    if [ "$BB_SIGNAL" = TERM ]; then
        bb_log "stopped by SIGTERM (status $rc): a preempted job is requeued by Slurm; after scancel," \
               "submit the same script again to continue from the last complete wave"
        return "$BB_EX_TEMPFAIL"
    fi
    if [ "$BB_SIGNAL" = USR1 ] || [ "$rc" -eq "$BB_EX_TEMPFAIL" ]; then
        bb_job_requeue
        return
    fi
    bb_err "the step (srun birdbone) failed with status $rc, not an interruption: not requeued;" \
           "the message is above"
    return "$rc"
}

# The signal goes to the step's tasks through slurmstepd (scancel without --batch leaves the
# batch shell alone), not to srun: srun forwards SIGUSR1 but answers SIGTERM by killing the step.
bb_job_forward() {
    [ "$BB_SIGNAL" = "$1" ] && return 0
    BB_SIGNAL=$1
    bb_log "SIG$1 received: asking birdbone to stop at a wave boundary"
    if [ -n "${SLURM_JOB_ID:-}" ] && scancel --signal="$1" "$SLURM_JOB_ID" 2>/dev/null; then return 0; fi
    kill -s "$1" "$BB_STEP_PID" 2>/dev/null || true
}

# bb_job_point R: one point of a scaling array on R ranks inside the element's allocation
# (SLURM_JOB_NUM_NODES nodes of SLURM_NTASKS_PER_NODE tasks): sets BB_POINT_ARGS to the srun
# options that place the R ranks on as few nodes as hold them, and the run directory to
# BB_RUN_DIR/r<R>.
bb_job_point() {
    local r=$1 per_node=${SLURM_NTASKS_PER_NODE:-1} nodes=${SLURM_JOB_NUM_NODES:-1}
    if ! [[ "$r" =~ ^[1-9][0-9]*$ ]]; then
        bb_err "array index '$r' is not a rank count: submit with --array=1,2,4,8"
        exit 1
    fi
    if [ "$r" -gt $((per_node * nodes)) ]; then
        bb_err "$r ranks do not fit the allocation ($nodes nodes x $per_node tasks): raise --nodes"
        exit 1
    fi
    local need=$(((r + per_node - 1) / per_node))
    # shellcheck disable=SC2034  # read by the recipe that sourced this file
    BB_POINT_ARGS=(--nodes="$need" --ntasks="$r" --ntasks-per-node=$((r < per_node ? r : per_node)))
    BB_RUN_DIR=$BB_RUN_DIR/r$r
}
