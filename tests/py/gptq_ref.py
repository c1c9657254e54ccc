#!/usr/bin/env python3
"""gptq_ref.py — GPTQ on the GGUF Q4_0 and Q8_0 grids, written straightforwardly in numpy, against birdbone.

Reads what tests/unit/quant_dump.c wrote into DIR (see its header) and, for every (layer, type):
  1. decodes birdbone's stored GGUF blocks in numpy (the Q4_0/Q8_0 layouts) and requires exactly
     birdbone's Ŵ, bit for bit: what is stored is what GPTQ optimized;
  2. runs its own GPTQ in float64 (damping, Cholesky of H^-1, lazy batches, column loop vectorized
     over rows; each 32-column block's scale fit on the block's current values at its first column
     with qformat's scale search, weights diag(H), fp16 scale, codes against the stored scale) and
     requires >= 98 % of the weights to get the identical value and tr(E H E^T) to agree within 1 %
     (birdbone works in f32; a code on a rounding boundary may flip and steer its row differently);
  3. requires GPTQ to beat RTN in tr(E H E^T).

Also importable: benchmarks/gptq_numpy.py times gptq() on a large layer.
Exit status: 0 pass, 1 mismatch, 77 skipped (numpy missing), 2 usage.
"""
import os
import sys

try:
    import numpy as np
except ImportError as e:  # numpy is an optional test dependency
    print(f"SKIP: {e} (pip install numpy)")
    sys.exit(77)

QK = 32
GRIDS = {"q4_0": 8, "q8_0": 128}  # symmetric grids q in [-nmax, nmax-1]
SEARCH_STEP, SEARCH_DOWN, SEARCH_UP, REFINE_ITERS = 0.0125, 24, 8, 4


def nearest(v, lo, hi):
    """bb_qformat_nearest: round half up, clamped; NaN gives lo."""
    q = np.floor(v - lo + 0.5) + lo
    q = np.where(v > lo, q, lo)
    return np.where(v >= hi, hi, q)


def seqsum(a):
    """Row sums accumulated left to right, as the C loops do (numpy's sum is pairwise)."""
    return np.cumsum(a, axis=1)[:, -1]


def fit_symmetric(x, w, nmax):
    """bb_qformat_fit_symmetric for each row of x (n, 32) with weights w (32,) or None; returns d (n,)."""
    x = x.astype(np.float64)
    lo, hi = -nmax, nmax - 1
    if w is None or not np.any(w > 0):
        w = np.ones(x.shape[1])
    w = w.astype(np.float64)
    idx = np.argmax(np.abs(x), axis=1)  # first index of the largest magnitude, as the strict > in C
    m = x[np.arange(x.shape[0]), idx]
    nz = m != 0
    msafe = np.where(nz, m, 1.0)
    best_d = np.zeros(x.shape[0])
    best_gain = np.full(x.shape[0], -1.0)
    for target in (lo, hi):
        for k in range(-SEARCH_DOWN, SEARCH_UP + 1):
            iscale = target * (1.0 + SEARCH_STEP * k) / msafe
            q = nearest(x * iscale[:, None], lo, hi)
            sxq = seqsum(w * x * q)
            sqq = seqsum(w * q * q)
            ok = sqq > 0
            gain = np.where(ok, sxq * sxq / np.where(ok, sqq, 1), -np.inf)
            better = ok & (gain > best_gain)
            best_gain = np.where(better, gain, best_gain)
            best_d = np.where(better, sxq / np.where(ok, sqq, 1), best_d)
    active = nz & (best_d != 0)
    for _ in range(REFINE_ITERS):
        dsafe = np.where(best_d != 0, best_d, 1.0)
        q = nearest(x / dsafe[:, None], lo, hi)
        sxq = seqsum(w * x * q)
        sqq = seqsum(w * q * q)
        ok = sqq > 0
        new = np.where(ok, sxq / np.where(ok, sqq, 1), best_d)
        upd = active & ok & (new != best_d)
        best_d = np.where(upd, new, best_d)
        active = upd & (best_d != 0)
    return np.where(nz, best_d, 0.0)


def f16_sat(d):
    """bb_qformat_f16_sat: clamp to the fp16 range, then double -> float -> half, each round-to-nearest-even."""
    return np.clip(d, -65504.0, 65504.0).astype(np.float32).astype(np.float16)


def quant_block(x, w, nmax):
    """Fit a block's scale on x (n, 32); returns (stored scale as f32 (n,), codes (n, 32), values f32 (n, 32))."""
    d = f16_sat(fit_symmetric(x, w, nmax)).astype(np.float32)
    dsafe = np.where(d != 0, d, 1).astype(np.float64)
    q = np.where(d[:, None] != 0, nearest(x / dsafe[:, None], -nmax, nmax - 1), 0)
    return d, q, quant_values(d, q)


def quant_values(d, q):
    """The decoder's arithmetic: (float)q * d in f32."""
    return (q.astype(np.float32) * d[:, None].astype(np.float32)).astype(np.float32)


def gptq(W, H, nmax, damp=0.01, block_size=128, importance=True, dtype=np.float64):
    """Plain GPTQ (Frantar et al. 2022) with the symmetric GGUF grid of nmax, arithmetic in dtype
    (float64 for the cross-check; the benchmark also times float32): returns Ŵ as f32."""
    W = W.astype(dtype).copy()
    H = H.astype(np.float64).copy()
    rows, cols = W.shape
    wdiag = np.diag(H).copy() if importance else None
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H[np.diag_indices(cols)] += damp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T.astype(dtype)  # upper, H^-1 = U^T U
    Q = np.zeros((rows, cols), dtype=np.float32)
    bl = -(-block_size // QK) * QK
    for i1 in range(0, cols, bl):
        i2 = min(i1 + bl, cols)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = None
        for i in range(i2 - i1):
            col = i1 + i
            if col % QK == 0:
                wb = wdiag[col:col + QK] if wdiag is not None else None
                d, _, _ = quant_block(W1[:, i:i + QK].astype(np.float32), wb, nmax)
                dsafe = np.where(d != 0, d, 1).astype(dtype)
            w = W1[:, i]
            q = np.where(d != 0, nearest(w / dsafe, -nmax, nmax - 1), 0)
            y = (q.astype(np.float32) * d).astype(np.float32)
            Q[:, col] = y
            e = (w - y) / U1[i, i]
            W1[:, i:] -= np.outer(e, U1[i, i:])
            E1[:, i] = e
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    return Q


def decode_blocks(raw, rows, cols, tname):
    """Numpy decoder of Q4_0 / Q8_0 rows (ggml-common.h layouts)."""
    nb = cols // QK
    if tname == "q4_0":
        blk = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb, 18)
        d = blk[:, :, 0:2].copy().view(np.float16).astype(np.float32)  # (rows, nb, 1)
        qs = blk[:, :, 2:18]
        q = np.concatenate([(qs & 0xF).astype(np.int32) - 8, (qs >> 4).astype(np.int32) - 8], axis=2)
    else:
        blk = np.frombuffer(raw, dtype=np.uint8).reshape(rows, nb, 34)
        d = blk[:, :, 0:2].copy().view(np.float16).astype(np.float32)
        q = blk[:, :, 2:34].copy().view(np.int8).astype(np.int32)
    return (q.astype(np.float32) * d).astype(np.float32).reshape(rows, cols)


def herr(W, Wh, H):
    E = W.astype(np.float64) - Wh.astype(np.float64)
    return float(np.einsum("ij,jk,ik->", E, H.astype(np.float64), E))


def main():
    if len(sys.argv) != 2:
        print("usage: gptq_ref.py DIR")
        return 2
    d = sys.argv[1]
    fails = 0
    with open(os.path.join(d, "manifest.txt")) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    for case, rows, cols, tname, damp, bsize in lines:
        rows, cols, damp, bsize = int(rows), int(cols), float(damp), int(bsize)

        def load(name, shape, dtype=np.float32):
            return np.fromfile(os.path.join(d, name), dtype=dtype).reshape(shape)

        W = load(f"{case}.W.f32", (rows, cols))
        H = load(f"{case}.H.f32", (cols, cols))
        ours = load(f"{case}.{tname}.gptq.f32", (rows, cols))
        rtn = load(f"{case}.{tname}.rtn.f32", (rows, cols))
        raw = open(os.path.join(d, f"{case}.{tname}.gptq.bin"), "rb").read()
        dec = decode_blocks(raw, rows, cols, tname)
        if not np.array_equal(dec.view(np.uint32), ours.view(np.uint32)):
            bad = np.argwhere(dec.view(np.uint32) != ours.view(np.uint32))[0]
            print(f"FAIL {case} {tname}: stored blocks decode to {dec[tuple(bad)]!r} at {tuple(bad)}, "
                  f"birdbone's Ŵ has {ours[tuple(bad)]!r}")
            fails += 1
        ref = gptq(W, H, GRIDS[tname], damp=damp, block_size=bsize)
        same = float(np.mean(ref == ours))
        e_ours, e_ref, e_rtn = herr(W, ours, H), herr(W, ref, H), herr(W, rtn, H)
        ok = same >= 0.98 and abs(e_ours - e_ref) <= 0.01 * e_ref and e_ours < e_rtn
        print(f"{'ok  ' if ok else 'FAIL'} {case} ({rows}x{cols}) {tname}: {100 * same:.3f} % identical to numpy; "
              f"tr(EHE^T) birdbone {e_ours:.6g}, numpy {e_ref:.6g}, RTN {e_rtn:.6g}")
        fails += not ok
    print(f"{len(lines)} layer/type pairs, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
