#!/usr/bin/env python3
"""gptq_numpy.py — straightforward numpy GPTQ on the Q4_0 grid, timed on the layer shape of bench_quant.

usage: gptq_numpy.py [--rows R] [--cols C] [--samples S] [--dtype float32|float64]
W ~ N(0, 0.02^2) (R rows = out, C cols = in; default 4096 x 4096), H = X^T X / S of AR(1)-correlated
X (coefficient 0.6, S = 4096 samples), as bench_quant. The algorithm is tests/py/gptq_ref.py's (the
paper's code structure: lazy batches of 128 columns, the column loop vectorized over rows, each
32-column block's scale fit with qformat's 66-candidate search at its first column, damping
0.01 mean(diag H)). Threads: numpy's BLAS (OPENBLAS_NUM_THREADS). Prints the time and a line
`RESULT gptq_s=<seconds>`.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from gptq_ref import gptq, herr  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((a.samples, a.cols), dtype=np.float32)
    for j in range(1, a.cols):
        X[:, j] += np.float32(0.6) * X[:, j - 1]
    H = (X.T @ X) / np.float32(a.samples)
    W = (rng.standard_normal((a.rows, a.cols), dtype=np.float32) * np.float32(0.02)).astype(np.float32)
    print(f"numpy {np.__version__}: GPTQ q4_0 on W ({a.rows} x {a.cols}), {a.dtype}")
    t0 = time.perf_counter()
    Q = gptq(W, H, 8, dtype=getattr(np, a.dtype))
    t = time.perf_counter() - t0
    print(f"  gptq {t:.3f} s, tr(EHE^T) {herr(W, Q, H):.6g}")
    print(f"RESULT gptq_s={t:.4f}")


if __name__ == "__main__":
    main()
