#!/usr/bin/env bash
# generate_golden.sh MODEL EXPECTED: `birdbone generate MODEL -n 200` (greedy, from
# BOS, empty prompt) must print exactly EXPECTED (plus the final newline).
set -u
out="$(mktemp)"
"${BIRDBONE:?}" generate "$1" -n 200 > "$out" || { echo "FAIL: generate exited $?"; exit 1; }
if [ "$(cat "$out")" = "$(cat "$2")" ]; then echo "ok: $(wc -c < "$2") bytes match"; rm -f "$out"; exit 0; fi
echo "FAIL: output differs from $2"; diff <(cat "$out") <(cat "$2"; echo); rm -f "$out"; exit 1
