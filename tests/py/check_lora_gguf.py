#!/usr/bin/env python3
"""check_lora_gguf.py — the gguf package's view of the LoRA adapters unit.export_lora writes.

Usage: check_lora_gguf.py DIR

For each <tag>_lora.gguf with its <tag>_base.gguf and <tag>_merged.gguf: the keys llama.cpp's adapter loader
reads (general.type "adapter", general.architecture equal to the base's, adapter.type "lora",
adapter.lora.alpha a float), every tensor named "<base tensor>.lora_a" / ".lora_b" in pairs, the shape rule
llama.cpp applies in ggml's dimension order (a.ne[0] == W.ne[0], b.ne[1] == W.ne[1], a.ne[1] == b.ne[0]),
and, computed here with numpy, (alpha / rank) * B @ A == merged - base for every adapted weight.
Exit 77 (skipped) without the gguf package.
"""
import os
import sys

try:
    import numpy as np
    import gguf
except ImportError:
    print("skipped: the gguf and numpy packages are not installed (pip install gguf)")
    sys.exit(77)

failures = 0


def expect(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)


def field_str(r, key):
    f = r.fields[key]
    return bytes(f.parts[f.data[0]]).decode()


def field_num(r, key):
    f = r.fields[key]
    return f.parts[f.data[0]][0]


def tensors(r):
    return {t.name: t for t in r.tensors}


def check(d, tag):
    a = gguf.GGUFReader(os.path.join(d, tag + "_lora.gguf"))
    base = gguf.GGUFReader(os.path.join(d, tag + "_base.gguf"))
    merged = gguf.GGUFReader(os.path.join(d, tag + "_merged.gguf"))
    expect(field_str(a, "general.type") == "adapter", f"{tag}: general.type")
    expect(field_str(a, "adapter.type") == "lora", f"{tag}: adapter.type")
    expect(field_str(a, "general.architecture") == field_str(base, "general.architecture"), f"{tag}: architecture")
    expect(a.fields["adapter.lora.alpha"].types == [gguf.GGUFValueType.FLOAT32], f"{tag}: alpha is not f32")
    alpha = float(field_num(a, "adapter.lora.alpha"))
    ta, tb, tm = tensors(a), tensors(base), tensors(merged)
    names = sorted({n[: -len(".lora_a")] for n in ta if n.endswith(".lora_a")})
    expect(len(ta) == 2 * len(names) and len(names) > 0, f"{tag}: tensors are not lora_a/lora_b pairs")
    worst = 0.0
    for n in names:
        la, lb = ta.get(n + ".lora_a"), ta.get(n + ".lora_b")
        w = tb.get(n)
        expect(lb is not None and w is not None, f"{tag}: {n}: lora_b or base tensor missing")
        if lb is None or w is None:
            continue
        ne_a, ne_b, ne_w = [int(x) for x in la.shape], [int(x) for x in lb.shape], [int(x) for x in w.shape]
        expect(ne_a[0] == ne_w[0] and ne_b[1] == ne_w[1] and ne_a[1] == ne_b[0],
               f"{tag}: {n}: ggml shapes a {ne_a} b {ne_b} W {ne_w} break llama.cpp's rule")
        rank = ne_b[0]
        A = np.asarray(la.data, dtype=np.float64).reshape(ne_a[1], ne_a[0])  # (rank, cols)
        B = np.asarray(lb.data, dtype=np.float64).reshape(ne_b[1], ne_b[0])  # (rows, rank)
        delta = (alpha / rank) * (B @ A)
        want = np.asarray(tm[n].data, dtype=np.float64).reshape(delta.shape) - \
            np.asarray(w.data, dtype=np.float64).reshape(delta.shape)
        err = np.abs(delta - want)
        worst = max(worst, float(err.max()))
        expect(np.all(err <= 1e-6 + 1e-5 * np.abs(want)), f"{tag}: {n}: delta differs by {err.max():g}")
    print(f"{tag}: {len(names)} adapted weights, alpha {alpha:g}, max |delta - (merged - base)| {worst:.3g}")


def main():
    d = sys.argv[1]
    tags = sorted(f[: -len("_lora.gguf")] for f in os.listdir(d) if f.endswith("_lora.gguf"))
    expect(len(tags) > 0, f"no *_lora.gguf in {d}")
    for t in tags:
        check(d, t)
    if failures:
        print(f"{failures} failures")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
