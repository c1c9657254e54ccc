#!/usr/bin/env bash
# expect_fail.sh CODE PATTERN -- COMMAND...: passes when COMMAND exits with CODE
# within 120 s (a hang fails) and its stderr matches the extended regex PATTERN.
set -u
want="$1"; pattern="$2"; shift 3
err="$(mktemp)"
timeout 120 "$@" >/dev/null 2>"$err"
rc=$?
ok=1
if [ "$rc" = 124 ]; then echo "FAIL: the command hung (killed after 120 s): $*"; ok=0
elif [ "$rc" != "$want" ]; then echo "FAIL: exit code $rc, expected $want: $*"; ok=0; fi
if ! grep -Eq -- "$pattern" "$err"; then echo "FAIL: stderr does not match /$pattern/"; ok=0; fi
echo "---- stderr ----"; cat "$err"; rm -f "$err"
[ $ok = 1 ] && echo "ok: exit $rc with the expected message"
[ $ok = 1 ]
