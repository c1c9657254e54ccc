#!/usr/bin/env bash
# expect_output.sh PATTERN... -- COMMAND...: passes when COMMAND exits 0 within
# 300 s and its output (stdout and stderr) matches every extended regex PATTERN.
set -u
pats=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do pats+=("$1"); shift; done
shift
out="$(mktemp)"
timeout 300 "$@" >"$out" 2>&1
rc=$?
cat "$out"
ok=1
[ $rc = 0 ] || { echo "FAIL: exit code $rc: $*"; ok=0; }
for p in "${pats[@]}"; do grep -Eq -- "$p" "$out" || { echo "FAIL: output does not match /$p/"; ok=0; }; done
rm -f "$out"
[ $ok = 1 ] && echo "ok: all ${#pats[@]} patterns found"
[ $ok = 1 ]
