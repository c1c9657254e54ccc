#!/usr/bin/env python3
"""prune_numpy.py — the same Wanda and SparseGPT in straightforward numpy (float32), timed on a Llama-shaped layer.

usage: prune_numpy.py [--rows R] [--cols C] [--tokens T] [--sparsity S]
Same shapes and input model as bench_prune (W (11008 rows = out, 4096 cols = in),
H = X^T X from 2048 AR(1)-correlated tokens, channel scales over one decade);
the algorithms are tests/py/sparsegpt_ref.py's (the paper's code structure:
lazy batches of 128 columns, vectorized over rows). Threads: numpy's BLAS
(OPENBLAS_NUM_THREADS). Prints seconds and a line `RESULT key=value ...`.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
from sparsegpt_ref import sparsegpt, wanda  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=11008)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--sparsity", type=float, default=0.5)
    a = ap.parse_args()
    rng = np.random.default_rng(11)
    W = rng.standard_normal((a.rows, a.cols), dtype=np.float32)
    X = rng.standard_normal((a.tokens, a.cols), dtype=np.float32)
    rho = np.float32(0.7)
    c = np.sqrt(np.float32(1) - rho * rho)
    for j in range(1, a.cols):
        X[:, j] = rho * X[:, j - 1] + c * X[:, j]
    X *= (10.0 ** rng.uniform(-0.5, 0.5, a.cols)).astype(np.float32)
    H = X.T @ X
    print(f"numpy {np.__version__}: layer W ({a.rows} rows = out, {a.cols} cols = in), sparsity {a.sparsity}")
    t0 = time.perf_counter()
    wanda(W, H, a.sparsity, np.float32)
    t_w = time.perf_counter() - t0
    print(f"  wanda      unstructured {t_w:8.3f} s")
    sys.stdout.flush()
    t0 = time.perf_counter()
    _, keep = sparsegpt(W, H, a.sparsity, 0, 0, 128, 0.01, np.float32)
    t_s = time.perf_counter() - t0
    print(f"  sparsegpt  unstructured {t_s:8.3f} s  density {keep.mean():.4f}")
    print(f"RESULT rows={a.rows} cols={a.cols} wanda_s={t_w:.4f} sparsegpt_s={t_s:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
