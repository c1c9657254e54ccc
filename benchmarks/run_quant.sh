#!/bin/sh
# run_quant.sh — bench_quant (RTN encoding rates, GPTQ q4_0) and the numpy GPTQ on the same shape in one run, and their ratio.
# usage: benchmarks/run_quant.sh BUILD_DIR [--rows R --cols C]
# Both sides use OpenBLAS's threads (all cores) for their matrix products; birdbone's column loop runs rows on all cores.
set -eu
build=${1:?usage: run_quant.sh BUILD_DIR [--rows R --cols C]}
shift
here=$(dirname "$0")
echo "== $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
c_out=$("$build/benchmarks/bench_quant" "$@")
echo "$c_out"
py_out=$(python3 "$here/gptq_numpy.py" "$@")
echo "$py_out"
c=$(echo "$c_out" | sed -n 's/^GPTQ_SECONDS //p')
p=$(echo "$py_out" | sed -n 's/^RESULT gptq_s=//p')
awk -v c="$c" -v p="$p" 'BEGIN { printf "gptq q4_0   birdbone %8.3f s   numpy %8.3f s   numpy/birdbone %.1fx\n", c, p, p / c }'
