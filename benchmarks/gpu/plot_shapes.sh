#!/bin/bash
# plot_shapes.sh — run HERE after the device runs: one stacked bar per (shape, GPU count) of the per-stage
# seconds of `birdbone compress` in run_scaling.sh's CSVs, with the speed-up over one GPU on top (strong rows) or
# the weak-scaling efficiency (weak rows, "weak:" before the label).
#   bash benchmarks/gpu/plot_shapes.sh OUT.svg [weak:]LABEL=FILE.csv [[weak:]LABEL=FILE.csv ...]
# BB_PLOT_TITLE replaces the title.
# e.g. bash benchmarks/gpu/plot_shapes.sh benchmarks/results/scaling-gpu-shapes.svg \
#        "7B=benchmarks/results/scaling-gpu-7b-2xh200.csv" "70B=benchmarks/results/scaling-gpu-70b-2xh200.csv"
set -euo pipefail
out=$1
shift
command -v gnuplot > /dev/null || { echo "plot_shapes.sh: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stages="baseline usage decay heal reinforce redistribute quantize"
{
    echo "run $stages speedup kind"
    for arg in "$@"; do
        label=${arg%%=*}
        csv=${arg#*=}
        mode=strong
        case $label in weak:*) mode=weak; label="${label#weak:} weak" ;; strong:*) label=${label#strong:} ;; esac
        [ -f "$csv" ] || { echo "plot_shapes.sh: no file $csv" >&2; exit 1; }
        for g in $(awk -F, -v m="$mode" '$1 == m && $3 == "total" {print $2}' "$csv"); do
            awk -F, -v g="$g" -v m="$mode" -v label="$label" -v stages="$stages" '
                $1 == m && $2 == g { s[$3] = $4; if ($3 == "total") sp = (m == "weak" ? $6 : $5) }
                END { n = split(stages, st, " "); printf "\"%s, %d GPU%s\"", label, g, (g > 1 ? "s" : "");
                      for (i = 1; i <= n; i++) printf " %s", (st[i] in s ? s[st[i]] : 0);
                      printf " %s %s\n", sp, (m == "weak" ? "w" : "s") }' "$csv"
        done
    done
} > "$work/bars.dat"
gnuplot <<GP
set terminal svg size 860,520 font "sans,11"
set output "$out"
set title "${BB_PLOT_TITLE:-birdbone compress: seconds per stage (speed-up over 1 GPU on top; weak: efficiency)}"
set style data histograms
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set key outside right top vertical
set ylabel "seconds"
set yrange [0:*]
set offsets 0, 0, graph 0.08, 0
set grid ytics
set xtics nomirror rotate by -30 font ",10"
set bmargin 6
plot for [c=2:8] "$work/bars.dat" using c:xtic(1) title columnheader(c), \
     "$work/bars.dat" using (\$0 - 1):(\$2+\$3+\$4+\$5+\$6+\$7+\$8):(strcol(10) eq "w" ? sprintf("eff %.2f", \$9) : sprintf("%.2fx", \$9)) with labels offset 0,0.8 notitle
GP
echo "plot: $out"
