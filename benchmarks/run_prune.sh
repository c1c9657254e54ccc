#!/bin/sh
# run_prune.sh — bench_prune and the numpy version of the same algorithms in one run, and their ratio.
# usage: benchmarks/run_prune.sh BUILD_DIR [bench_prune/prune_numpy.py options, e.g. --rows 2752 --cols 1024]
# Both sides use the machine's cores (OpenBLAS threads; bench_prune's row threads = all cores).
set -eu
build=${1:?usage: run_prune.sh BUILD_DIR [options]}
shift
here=$(dirname "$0")
nproc_=$(nproc)
echo "== $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $nproc_ cores"
c_out=$("$build/benchmarks/bench_prune" "$@")
echo "$c_out"
py_out=$(python3 "$here/prune_numpy.py" "$@")
echo "$py_out"
c_res=$(echo "$c_out" | grep '^RESULT')
py_res=$(echo "$py_out" | grep '^RESULT')
get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
for k in wanda_s sparsegpt_s; do
  awk -v m="$k" -v c="$(get "$c_res" "$k")" -v p="$(get "$py_res" "$k")" \
    'BEGIN { printf "%-12s birdbone %8.3f s   numpy %8.3f s   numpy/birdbone %.1fx\n", m, c, p, p / c }'
done
