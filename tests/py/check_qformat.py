#!/usr/bin/env python3
"""check_qformat.py — birdbone's block decoders against the gguf package, bit for bit.

Reads what tests/unit/qformat_dump.c wrote into DIR (see its header), dequantizes every row with
gguf.quants.dequantize and requires birdbone's decoded floats to be identical bit patterns. The one
allowance: where both sides produce NaN (random bytes holding a NaN or Inf fp16 scale), the NaN
payloads are not compared, because which operand's payload survives Inf*0 or NaN*x depends on
operand order, which numpy and C need not share; IEEE 754 leaves it open.

Also checks the block sizes against gguf's GGML_QUANT_SIZES, that encoded rows decode to finite
values, and that birdbone's searched encoders beat the gguf package's reference quantizers
(max-abs round-to-nearest, as ggml's quantize_row_*_ref) on the Gaussian rows.

Exit status: 0 pass, 1 mismatch, 77 skipped (numpy or gguf missing). Needs: pip install numpy gguf
"""
import os
import sys

try:
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    import gguf.quants as gq
except ImportError as e:  # the package is an optional test dependency
    print(f"SKIP: {e} (pip install numpy gguf)")
    sys.exit(77)


def compare(name, what, ours, ref):
    """Bit-identical float32 arrays, NaN matching NaN. Returns the number of mismatches."""
    a = np.ascontiguousarray(ours, dtype=np.float32).reshape(-1)
    b = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
    if a.shape != b.shape:
        print(f"FAIL {name} {what}: {a.shape[0]} values vs gguf {b.shape[0]}")
        return 1
    both_nan = np.isnan(a) & np.isnan(b)
    bad = (a.view(np.uint32) != b.view(np.uint32)) & ~both_nan
    n_bad = int(bad.sum())
    if n_bad:
        idx = np.flatnonzero(bad)[:5]
        detail = ", ".join(f"[{i}] birdbone {a[i]!r} ({a.view(np.uint32)[i]:08x}) gguf {b[i]!r} "
                           f"({b.view(np.uint32)[i]:08x})" for i in idx)
        print(f"FAIL {name} {what}: {n_bad} of {a.size} values differ: {detail}")
    return n_bad


def rel_rmse(x, y):
    x = x.astype(np.float64)
    return float(np.sqrt(np.sum((x - y) ** 2) / np.sum(x * x)))


def main():
    if len(sys.argv) != 2:
        print("usage: check_qformat.py DIR")
        return 2
    d = sys.argv[1]
    failures = 0
    checked = 0
    with open(os.path.join(d, "manifest.txt")) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    if len(lines) != 13:
        print(f"FAIL manifest lists {len(lines)} types, expected 13")
        failures += 1
    for name, tid, n, rb, enc_rows, gauss_rows, raw_rows in lines:
        tid, n, rb, enc_rows, gauss_rows, raw_rows = map(int, (tid, n, rb, enc_rows, gauss_rows, raw_rows))
        qt = GGMLQuantizationType(tid)
        blck, tsize = GGML_QUANT_SIZES[qt]
        if n % blck or n // blck * tsize != rb:
            print(f"FAIL {name}: row of {n} is {rb} bytes, gguf says blocks of {blck} in {tsize} bytes")
            failures += 1
            continue
        src = np.fromfile(os.path.join(d, f"{name}.src.f32"), dtype=np.float32).reshape(enc_rows, n)
        for kind, rows in (("enc", enc_rows), ("raw", raw_rows)):
            blocks = np.fromfile(os.path.join(d, f"{name}.{kind}.bin"), dtype=np.uint8).reshape(rows, rb)
            ours = np.fromfile(os.path.join(d, f"{name}.{kind}.f32"), dtype=np.float32).reshape(rows, n)
            with np.errstate(all="ignore"):
                ref = gq.dequantize(blocks, qt)
            failures += compare(name, f"{kind} rows", ours, ref)
            checked += ours.size
            if kind == "enc" and not np.all(np.isfinite(ours)):
                print(f"FAIL {name}: finite input decoded to non-finite values")
                failures += 1
        # The gguf package quantizes the 32-element types (and BF16) with ggml's reference RTN.
        ours = np.fromfile(os.path.join(d, f"{name}.enc.f32"), dtype=np.float32).reshape(enc_rows, n)
        g = src[:gauss_rows]
        if qt in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1,
                  GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q5_1):
            with np.errstate(all="ignore"):
                theirs = gq.dequantize(gq.quantize(g, qt), qt)
            e_bb, e_ref = rel_rmse(g, ours[:gauss_rows]), rel_rmse(g, theirs)
            print(f"{name}: RMSE/RMS birdbone {e_bb:.5f}, gguf reference quantizer {e_ref:.5f}")
            if not e_bb < e_ref:
                print(f"FAIL {name}: birdbone's searched encoder is not better than gguf's RTN")
                failures += 1
        elif qt == GGMLQuantizationType.BF16:
            theirs = gq.dequantize(gq.quantize(g, qt), qt)
            failures += compare(name, "bf16 rounding vs gguf", ours[:gauss_rows], theirs)
    print(f"{checked} decoded values compared, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
