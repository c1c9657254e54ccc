# slurm_cluster.sh — sourced by the Slurm tests: a private single-node Slurm on this machine.
# shellcheck shell=bash
#
# bb_slurm_up   starts munged (as the munge user, its own key and socket), slurmctld and slurmd
#               (node bbnode with this machine's CPUs and memory, and BB_SLURM_GPUS stand-in
#               GPUs, default 0: gres/gpu on device files in the temporary directory, no CUDA)
#               from a generated slurm.conf in a fresh temporary directory, exports SLURM_CONF,
#               and waits until the node is idle.
#               Exits 77 (CTest SKIP) with the reason when that is impossible here (not root,
#               packages missing, a daemon that does not start) or BB_SKIP_SLOW is set (the
#               sanitizer pass of scripts/test); installs an EXIT trap that
#               stops the daemons by their PIDs.
# bb_slurm_wait JOBID SECONDS   waits until the job left the queue; fails after SECONDS.
# bb_slurm_state JOBID          prints "STATE EXITCODE" of a job the controller still remembers.
# bb_same_run A B               compares two run directories (A may hold logs/ besides): the same
#               files; byte-identical except the HDF5 files (same datasets and attributes,
#               h5diff, wall-clock seconds of the metrics tables left out; HDF5 stamps object
#               times), summary.json / scan/scan.json / metrics.json (identical once the
#               wall-clock "seconds" fields are dropped) and report/ (it plots timings).

bb_skip() { echo "SKIP: $*"; exit 77; }

BB_SLURM_TMP=""
BB_SLURM_PIDS=()

bb_slurm_down() {
    local pid
    if [ -n "${SLURM_CONF:-}" ] && [ -n "$BB_SLURM_TMP" ]; then
        scancel --quiet --user=root 2>/dev/null || true
    fi
    for pid in "${BB_SLURM_PIDS[@]+"${BB_SLURM_PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BB_SLURM_PIDS[@]+"${BB_SLURM_PIDS[@]}"}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    BB_SLURM_PIDS=()
    if [ -n "$BB_SLURM_TMP" ] && [ -z "${BB_SLURM_KEEP:-}" ]; then rm -rf "$BB_SLURM_TMP"; fi
}

bb_slurm_logs() {
    local f
    for f in "$BB_SLURM_TMP"/log/*.log "$BB_SLURM_TMP"/munge/munged.log; do
        [ -e "$f" ] && { echo "---- $f (last lines) ----"; tail -n 15 "$f"; }
    done
    return 0
}

bb_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bb_slurm_up() {
    [ -z "${BB_SKIP_SLOW:-}" ] || bb_skip "BB_SKIP_SLOW is set (the sanitizer pass; the regular build's run covers the recipes)"
    [ "$(id -u)" = 0 ] || bb_skip "starting munged and slurmd needs root (running as $(id -un))"
    local c
    for c in munged munge slurmctld slurmd sbatch srun scontrol squeue sinfo scancel runuser python3; do
        command -v "$c" >/dev/null || bb_skip "$c not found: install slurm-wlm and munge (scripts/setup.sh)"
    done
    id munge >/dev/null 2>&1 || bb_skip "no munge user: install munge (scripts/setup.sh)"

    # A short path under /tmp: the munge socket's path must stay short, and the munge user must
    # be able to reach its directory.
    BB_SLURM_TMP="$(mktemp -d /tmp/bb-slurm.XXXXXX)"
    trap bb_slurm_down EXIT
    chmod 755 "$BB_SLURM_TMP"
    local t="$BB_SLURM_TMP"
    mkdir -p "$t/munge" "$t/state" "$t/spool" "$t/log" "$t/tmp"
    chown munge: "$t/munge"
    dd if=/dev/urandom of="$t/munge/munge.key" bs=1024 count=1 status=none
    chown munge: "$t/munge/munge.key"
    chmod 600 "$t/munge/munge.key"
    runuser -u munge -- munged --socket="$t/munge/munge.socket" --key-file="$t/munge/munge.key" \
        --pid-file="$t/munge/munged.pid" --log-file="$t/munge/munged.log" --seed-file="$t/munge/munged.seed" ||
        { bb_slurm_logs; bb_skip "munged does not start here"; }
    BB_SLURM_PIDS+=("$(cat "$t/munge/munged.pid")")

    local node
    node="$(slurmd -C 2>/dev/null | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')"
    case "$node" in *CPUs=*RealMemory=*) ;; *) bb_skip "slurmd -C does not describe this machine: '$node'" ;; esac
    local host; host="$(hostname -s)"
    cat > "$t/slurm.conf" <<EOF
ClusterName=bbtest$$
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(bb_free_port)
SlurmdPort=$(bb_free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$t/munge/munge.socket
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
KillWait=10
MailProg=/bin/true
StateSaveLocation=$t/state
# Private scratch (PMIx puts its per-job directories there) and job ids apart from other
# private clusters on this machine.
TmpFS=$t/tmp
FirstJobId=$((RANDOM % 9000 * 100 + 1000))
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/log/slurmctld.log
SlurmdLogFile=$t/log/slurmd.log
GresTypes=gpu
NodeName=bbnode NodeAddr=127.0.0.1 NodeHostname=$host $node Gres=gpu:${BB_SLURM_GPUS:-0} State=UNKNOWN
PartitionName=debug Nodes=bbnode Default=YES MaxTime=INFINITE State=UP
EOF
    local g
    : > "$t/gres.conf"
    for ((g = 0; g < ${BB_SLURM_GPUS:-0}; g++)); do
        mkdir -p "$t/dev"
        mknod "$t/dev/gpu$g" c 1 3 || bb_skip "cannot make the stand-in GPU device $t/dev/gpu$g"
        echo "Name=gpu File=$t/dev/gpu$g" >> "$t/gres.conf"
    done
    export SLURM_CONF="$t/slurm.conf"
    slurmctld -D > "$t/log/slurmctld.out" 2>&1 &
    BB_SLURM_PIDS+=($!)
    slurmd -D -N bbnode > "$t/log/slurmd.out" 2>&1 &
    BB_SLURM_PIDS+=($!)
    local i state=""
    for i in $(seq 60); do
        state="$(sinfo -h -n bbnode -o %T 2>/dev/null || true)"
        [ "$state" = idle ] && break
        sleep 0.5
    done
    if [ "$state" != idle ]; then
        bb_slurm_logs
        bb_skip "the local Slurm did not come up (node state '$state' after 30 s)"
    fi
    srun --mpi=list 2>&1 | grep -q pmix || { srun --mpi=list; bb_skip "Slurm has no pmix MPI plugin"; }
    echo "slurm: private cluster up in $t ($node)"
}

bb_slurm_wait() {
    local id=$1 limit=$2 i
    for ((i = 0; i < limit * 2; i++)); do
        [ -z "$(squeue -h -j "$id" -o %T 2>/dev/null)" ] && return 0
        sleep 0.5
    done
    echo "FAIL: job $id still in the queue after $limit s: $(squeue -h -j "$id" -o '%T %r')"
    bb_slurm_logs
    return 1
}

bb_slurm_state() {
    scontrol show job "$1" | tr ' ' '\n' | sed -n -E 's/^(JobState|ExitCode)=//p' | tr '\n' ' ' | sed 's/ $//'
}

bb_same_run() {
    local a=$1 b=$2 f fa fb
    fa="$( (cd "$a" && find . -type f ! -path './logs/*' | sort) )"
    fb="$( (cd "$b" && find . -type f | sort) )"
    if [ "$fa" != "$fb" ]; then
        echo "FAIL: $a and $b hold different files:"; diff <(echo "$fa") <(echo "$fb"); return 1
    fi
    [ -n "$fa" ] || { echo "FAIL: $b is empty"; return 1; }
    local n=0
    for f in $fa; do
        case "$f" in
        *.h5)
            # wall-clock seconds are recorded in the metrics tables of checkpoints and deltas
            h5diff --exclude-path /metrics/seconds --exclude-path /metrics_old/seconds \
                --exclude-path /metrics_new/seconds "$a/$f" "$b/$f" > /dev/null ||
                { echo "FAIL: $f differs (h5diff $a/$f $b/$f)"; return 1; } ;;
        ./report/* | *.h5.DONE)
            ;; # the report plots timings; a checkpoint marker's content is checked by birdbone's reader
        ./summary.json | ./scan/scan.json | ./metrics.json | ./report/metrics.json)
            python3 - "$a/$f" "$b/$f" <<'EOF' || return 1
import json, sys
# measured, not computed: wall and CPU seconds, peak memory, the per-rank resource table, the GPU's memory,
# and the MPI traffic (a requeued run counts only what it sent after resuming)
MEASURED = {"seconds", "cpu_seconds", "comm_seconds", "peak_rss_mib", "resources", "gpu", "bytes_sent",
            "bytes_received"}
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in MEASURED}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
a, b = (strip(json.load(open(p))) for p in sys.argv[1:3])
if a != b:
    sys.exit(f"FAIL: {sys.argv[1]} and {sys.argv[2]} differ beyond their measured fields ({', '.join(sorted(MEASURED))})")
EOF
            ;;
        *)
            cmp "$a/$f" "$b/$f" || { echo "FAIL: $f differs"; return 1; } ;;
        esac
        n=$((n + 1))
    done
    echo "same: $n files of $a and $b ($(echo "$fa" | grep -c '\.h5$') HDF5 by content, the JSON summaries without timings, the rest byte for byte)"
}
