#!/usr/bin/env bash
# benchmarks/scaling/run.sh — strong and weak scaling of `birdbone compress` over MPI ranks.
#
#   benchmarks/scaling/run.sh [strong|weak] [RANKS...]          (default: strong 1 2)
#
# strong: one fixed synthetic model (BB_SCALING_MODEL, default synthetic:small) on each rank count.
# weak:   the blocks per rank fixed (BB_SCALING_LAYERS_PER_RANK, default 4): synthetic:small,layers=R*L.
# Every run uses backend.threads=BB_SCALING_THREADS (default 1) per rank, so that R ranks use R cores and
# the outputs are byte-identical across R (docs/distribution.md), and the same configuration otherwise
# (BB_SCALING_SET: extra --set arguments). Writes benchmarks/results/scaling-<mode>.csv (one row per rank
# count and stage: seconds, speedup and efficiency against 1 rank, the most seconds one rank spent in MPI, the bytes
# all ranks sent and received, the most CPU seconds of one rank, the smallest and largest per-rank peak resident
# memory, the machine's load average as the run ended) and, when gnuplot is on PATH,
# scaling-<mode>.svg. On a cluster use slurm/strong.sbatch / weak.sbatch (slurm/README.md), which run the
# same configurations as a job array; this script is the single-node form. Each run's timing events go to
# scaling-events.csv and its sizes to scaling-config.json, which benchmarks/scaling/perfmodel.py reads.
#
#   benchmarks/scaling/run.sh collect [strong|weak] RUN_DIR    (a Slurm scaling array's RUN_DIR/r<R>/, slurm/README.md)
#
# collect runs nothing: it makes the same CSV, plot and event table from the summary.json of every RUN_DIR/r<R>/
# and the timing table in RUN_DIR/logs/*_<R>.out. replot [strong|weak] recomputes the efficiencies and the plot of
# benchmarks/results/scaling-<mode>.csv.
set -euo pipefail
mode="${1:-strong}"
shift || true
collect=""
replot=""
if [ "$mode" = replot ]; then
    mode="${1:?replot needs strong or weak}"
    replot=1
    set -- 0
fi
if [ "$mode" = collect ]; then
    mode="${1:?collect needs strong or weak}"
    collect="${2:?collect needs the RUN_DIR of the array}"
    set --
    for d in "$collect"/r*/; do
        [ -s "$d/summary.json" ] && set -- "$@" "$(basename "$d" | tr -d r)"
    done
    [ $# -gt 0 ] || { echo "no RUN_DIR/r<R>/summary.json in $collect"; exit 1; }
    # shellcheck disable=SC2046 # rank counts: plain numbers
    set -- $(printf '%s\n' "$@" | sort -n)
fi
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(1 2)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${BIRDBONE:-$root/build/birdbone}"
out="${BB_SCALING_OUT:-$root/benchmarks/results}"
work="${BB_SCALING_WORK:-/tmp/bb-scaling}"
model="${BB_SCALING_MODEL:-synthetic:small}"
lpr="${BB_SCALING_LAYERS_PER_RANK:-4}"
threads="${BB_SCALING_THREADS:-1}"
read -r -a extra <<< "${BB_SCALING_SET:-}"
mkdir -p "$out" "$work"
csv="$out/scaling-$mode.csv"
echo "mode,ranks,model,stage,seconds,speedup,efficiency,comm_seconds_max,cpu_seconds_max,bytes_sent,bytes_received,peak_rss_mib_min,peak_rss_mib_max,load_avg" > "$csv.tmp"
# one CSV row per stage (and the total) of the run in $1, with $2 ranks, of model $3
point() {
    python3 - "$1/summary.json" "$2" "$3" "$mode" "$collect" >> "$csv.tmp" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
r, m, mode = int(sys.argv[2]), sys.argv[3].replace(",", ";"), sys.argv[4]
# the machine's 1-minute load as the run ended (unknown for collected runs)
load = "" if sys.argv[5] else open("/proc/loadavg").read().split()[0]
def use(x):
    return (x["comm_seconds"]["max"], x.get("cpu_seconds", {}).get("max", ""), x["bytes_sent"]["sum"],
            x["bytes_received"]["sum"], x["peak_rss_mib"]["min"], x["peak_rss_mib"]["max"])
rows = [(x["name"], x["seconds"], use(x)) for x in s["stages"] if x["built"]]
# the whole run: the most seconds in MPI on one rank, bytes over all ranks, the smallest and largest rank peak
k = s["resources"]["per_rank"]
cpu = max(x["cpu_seconds"] for x in k) if all("cpu_seconds" in x for x in k) else ""
rows.append(("total", s["seconds"], (max(x["comm_seconds"] for x in k), cpu,
                                     sum(x["bytes_sent"] for x in k),
                                     sum(x["bytes_received"] for x in k), min(x["peak_rss_mib"] for x in k),
                                     max(x["peak_rss_mib"] for x in k))))
for name, sec, (cs, cpu, bs, br, pmin, pmax) in rows:
    print(f"{mode},{r},{m},{name},{sec:.6f},,,{cs:.6f},{cpu},{bs:.0f},{br:.0f},{pmin:.1f},{pmax:.1f},{load}")
PY
}
[ -n "$replot" ] && { ranks=(); cp "$csv" "$csv.tmp"; }
for r in ${ranks[@]+"${ranks[@]}"}; do
    m="$model"
    [ "$mode" = weak ] && m="$model,layers=$((r * lpr))"
    dir="$work/$mode-$r"
    if [ -n "$collect" ]; then
        dir="$collect/r$r"
        m="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["model"]["path"])' "$dir/summary.json")"
        log="$(ls "$collect"/logs/*_"$r".out 2> /dev/null | head -1 || true)"
        [ -n "$log" ] && python3 "$root/benchmarks/scaling/perfmodel.py" --out "$out" --ingest "$mode" "$r" "$log" "$dir"
        point "$dir" "$r" "$m"
        continue
    fi
    args=(compress --force --set run.dir="$dir" --set model.path="$m" --set backend.threads="$threads"
          --set run.progress=off)
    for kv in ${extra[@]+"${extra[@]}"}; do args+=(--set "$kv"); done
    echo "== $mode scaling: $r rank(s), $m"
    if [ "$r" = 1 ]; then
        "$bin" "${args[@]}" > "$dir.log" 2>&1 || { tail -20 "$dir.log"; exit 1; }
    else
        OMPI_MCA_mpi_yield_when_idle=1 mpirun --allow-run-as-root --oversubscribe -np "$r" "$bin" "${args[@]}" \
            > "$dir.log" 2>&1 || { tail -20 "$dir.log"; exit 1; }
    fi
    # the run's timing events and sizes, for the performance model (perfmodel.py, docs/performance.md)
    python3 "$root/benchmarks/scaling/perfmodel.py" --out "$out" --ingest "$mode" "$r" "$dir.log" "$dir"
    point "$dir" "$r" "$m"
done
# speedup and efficiency against the first rank count (strong: T1 / (R T_R) per rank; weak: T1 / T_R)
python3 - "$csv.tmp" "$mode" > "$csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mode = sys.argv[2]
r0 = min(int(x["ranks"]) for x in rows)
base = {x["stage"]: float(x["seconds"]) for x in rows if int(x["ranks"]) == r0}
# the same on the busiest rank's CPU seconds: the work's efficiency, whatever share of a core the ranks got
cpu0 = {x["stage"]: float(x["cpu_seconds_max"]) for x in rows if int(x["ranks"]) == r0 and x.get("cpu_seconds_max")}
names = [k for k in rows[0].keys() if k != "cpu_efficiency"] + ["cpu_efficiency"]
w = csv.DictWriter(sys.stdout, fieldnames=names, lineterminator="\n")
w.writeheader()
for x in rows:
    r, t = int(x["ranks"]), float(x["seconds"])
    b = base.get(x["stage"], 0)
    sp = b / t if t > 0 else 0
    x["speedup"] = f"{sp:.3f}"
    x["efficiency"] = f"{sp * r0 / r if mode == 'strong' else sp:.3f}"
    c, c0 = x.get("cpu_seconds_max"), cpu0.get(x["stage"])
    ce = c0 / float(c) * (r0 / r if mode == "strong" else 1) if c and c0 and float(c) > 0 else None
    x["cpu_efficiency"] = f"{ce:.3f}" if ce is not None else ""
    w.writerow(x)
PY
rm -f "$csv.tmp"
cut -d, -f1-2,4-15 "$csv" | column -s, -t | grep -E "total|ranks"
if command -v gnuplot > /dev/null; then
    grep ",total," "$csv" | awk -F, '{print $2, $5, $7, $8, ($NF == "" ? "NaN" : $NF)}' > "$work/total.dat"
    # the first point's model (weak: the blocks per rank stay what it has on its rank count)
    desc="$(awk -F, 'NR == 2 { n = split($3, p, ";layers="); gsub(";", ",", $3)
        print ($1 == "weak" && n == 2 ? p[1] ", " p[2] / $2 " blocks per rank" : $3) }' "$csv")"
    gnuplot <<GP
set terminal svg size 640,460
set key below
set output "$out/scaling-$mode.svg"
set title "birdbone compress, $mode scaling ($desc, $threads BLAS thread per rank)"
set xlabel "ranks${BB_SCALING_NOTE:+ ($BB_SCALING_NOTE)}"
set ylabel "seconds"
set y2label "efficiency"
set y2range [0:*]
set ytics nomirror
set y2tics
plot "$work/total.dat" using 1:2 with linespoints title "total time", \
     "$work/total.dat" using 1:4 with linespoints title "seconds in MPI (most on one rank)", \
     "$work/total.dat" using 1:3 axes x1y2 with linespoints title "efficiency (wall time)", \
     "$work/total.dat" using 1:5 axes x1y2 with linespoints title "efficiency (busiest rank's CPU seconds)"
GP
    echo "plot: $out/scaling-$mode.svg"
fi
echo "csv: $csv"
