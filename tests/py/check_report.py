#!/usr/bin/env python3
"""check_report.py RUN_DIR [PLOT...]: an independent check of RUN_DIR/report/.

Every SVG and report.html must parse as XML; report.html must inline (a <figure id=NAME> holding an <svg>) and link
(href=NAME.svg) every SVG in the folder, and nothing else; metrics.csv and tensors.csv must hold exactly the numbers
of metrics.json as Python's json module reads them; each PLOT named on the command line must exist."""
import csv
import json
import math
import os
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}svg"


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def num(cell):
    return math.nan if cell == "" else float(cell)


def same(a, b):
    if a is None or (isinstance(b, float) and math.isnan(b)):
        return a is None and math.isnan(b)
    return float(a) == b


def main():
    run = sys.argv[1]
    out = os.path.join(run, "report")
    svgs = sorted(f for f in os.listdir(out) if f.endswith(".svg"))
    for f in svgs:
        try:
            root = ET.parse(os.path.join(out, f)).getroot()
        except ET.ParseError as e:
            fail(f"{f} is not well-formed XML: {e}")
        if root.tag != SVG:
            fail(f"{f}: root element {root.tag}, expected an svg")
    try:
        html = ET.parse(os.path.join(out, "report.html")).getroot()
    except ET.ParseError as e:
        fail(f"report.html is not well-formed XML: {e}")
    figures = {fig.get("id"): fig for fig in html.iter("figure")}
    hrefs = {a.get("href") for a in html.iter("a")}
    for f in svgs:
        name = f[:-4]
        if name not in figures or figures[name].find(SVG) is None:
            fail(f"report.html does not inline {f}")
        if f not in hrefs:
            fail(f"report.html does not link {f}")
    extra = set(figures) - {f[:-4] for f in svgs}
    if extra:
        fail(f"report.html shows plots with no file: {sorted(extra)}")
    for p in sys.argv[2:]:
        if p + ".svg" not in svgs:
            fail(f"{p}.svg was not written (written: {svgs})")

    m = json.load(open(os.path.join(run, "metrics.json")))
    waves = m.get("waves", [])
    if waves:
        rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
        if len(rows) != len(waves):
            fail(f"metrics.csv has {len(rows)} rows for {len(waves)} waves")
        for w, r in zip(waves, rows):
            for k in ("wave", "ppl", "dppl", "kld", "top1", "sparsity", "bits", "lora_values"):
                if not same(w.get(k), num(r[k])):
                    fail(f"wave {w['wave']} {k}: metrics.json {w.get(k)}, metrics.csv {r[k]!r}")
            if int(r["rolled_back"]) != int(bool(w.get("rolled_back", False))):
                fail(f"wave {w['wave']} rolled_back differs")
            for k, v in w.get("seconds", {}).items():
                if not same(v, num(r["seconds_" + k])):
                    fail(f"wave {w['wave']} seconds.{k}: {v} vs {r['seconds_' + k]!r}")
    tensors = m.get("tensors", [])
    if tensors:
        rows = list(csv.DictReader(open(os.path.join(out, "tensors.csv"))))
        want = []
        for t in tensors:
            n = max(len(t.get(k, [])) for k in ("density", "bits", "lora_rank"))
            for i in range(n):
                want.append((t["name"], i, *(t.get(k, [])[i] if i < len(t.get(k, [])) else None
                                             for k in ("density", "bits", "lora_rank"))))
        if len(rows) != len(want):
            fail(f"tensors.csv has {len(rows)} rows, metrics.json gives {len(want)}")
        for w, r in zip(want, rows):
            got = (r["name"], int(r["wave"]), num(r["density"]), num(r["bits"]), num(r["lora_rank"]))
            if w[:2] != got[:2] or not all(same(a, b) for a, b in zip(w[2:], got[2:])):
                fail(f"tensors.csv row {got} differs from metrics.json {w}")
    print(f"ok: {len(svgs)} SVGs and report.html well-formed, every plot inlined and linked, "
          f"{len(waves)} waves and {len(tensors)} tensors match metrics.json")


main()
