#!/usr/bin/env bash
# report_run.sh fixture DIR PLOT...   : birdbone report on a copy of tests/data/report/run
# report_run.sh compress DIR PLOT...  : birdbone compress on the default config into DIR, then birdbone report;
#   until the wave loop writes DIR/metrics.json, the fixture's metrics.json stands in (the wave files, scan and
#   config.yaml are the run's own) and the script says so.
# Both then check the report with tests/py/check_report.py, which must find each PLOT.
set -eu
mode="$1"; dir="$2"; shift 2
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
py="${PYTHON:-python3}"
rm -rf "$dir"
if [ "$mode" = fixture ]; then
    cp -r "$BB_SOURCE/tests/data/report/run" "$dir"
else
    mkdir -p "$dir"
    "$bin" compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir" > "$dir.log" 2>&1 ||
        { cat "$dir.log"; exit 1; }
    if [ -s "$dir/metrics.json" ]; then
        echo "report on the run's own metrics.json"
    else
        echo "NOTE: compress wrote no metrics.json yet: the report reads the fixture's with this run's wave files and scan"
        cp "$BB_SOURCE/tests/data/report/run/metrics.json" "$dir/metrics.json"
    fi
fi
"$bin" report "$dir"
"$py" "$BB_SOURCE/tests/py/check_report.py" "$dir" "$@"
