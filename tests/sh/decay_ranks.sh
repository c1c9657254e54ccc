#!/usr/bin/env bash
# decay_ranks.sh DIR LAUNCH...: `birdbone compress` on the default synthetic model
# (prune.target 0.3) once alone and once under LAUNCH (mpirun -n 3 ...), with the
# same configuration (same run.dir: the first run is moved aside), and checks that
# the decay stage wrote the same wave_*.h5 files (h5diff: every dataset and
# attribute) and printed the same per-wave lines. Quantization is left out: this
# is about stage 2.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
args=(compress --set run.dir="$dir" --set quant.method=none --set stoploss.enabled=false --set backend.threads=1)
rm -rf "$dir" "$dir.1rank"
"$bin" "${args[@]}" > "$dir.1rank.log" 2>&1 || { cat "$dir.1rank.log"; echo "FAIL: 1 rank"; exit 1; }
mv "$dir" "$dir.1rank"
"$@" "$bin" "${args[@]}" > "$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: $*"; exit 1; }
cat "$dir.log"
n=0
for f in "$dir.1rank"/wave_*.h5; do
    [ -e "$f" ] || { echo "FAIL: no wave_*.h5 in $dir.1rank"; exit 1; }
    b="$(basename "$f")"
    [ -s "$dir/$b" ] || { echo "FAIL: $dir/$b missing"; exit 1; }
    h5diff "$f" "$dir/$b" || { echo "FAIL: $b differs between 1 rank and $*"; exit 1; }
    n=$((n + 1))
done
[ "$(ls "$dir"/wave_*.h5 | wc -l)" = "$n" ] || { echo "FAIL: the runs wrote different numbers of wave files"; exit 1; }
# Lines of several ranks carry a "[rank 0] " prefix; the stage's time differs.
waves() { sed -E 's/^\[rank [0-9]+\] //' "$1" | grep -E '^wave [0-9]+/' | sed -E 's/  [0-9.]+ s$//'; }
one="$(waves "$dir.1rank.log")"
many="$(waves "$dir.log")"
[ -n "$one" ] && [ "$one" = "$many" ] || { echo "FAIL: per-wave lines differ:"; echo "$one"; echo "$many"; exit 1; }
echo "ok: $n wave files and the per-wave lines identical on 1 rank and under $*"
