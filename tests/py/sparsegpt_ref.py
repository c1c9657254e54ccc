#!/usr/bin/env python3
"""sparsegpt_ref.py — SparseGPT and Wanda written straightforwardly in numpy, against birdbone's output.

SparseGPT follows Frantar & Alistarh (2023) and their reference code: dead
inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0; damping lambda * mean(diag H);
U = upper Cholesky factor of H^-1; lazy batches of B columns; unstructured
masks chosen per batch over all rows (or, with per_row, within each row of the batch) from
w^2 / U_jj^2; N:M masks chosen per
row and group when the column loop reaches the group; OBS update inside the
batch and one matrix product for the later columns. Selection rule as in
birdbone (prune.h): exactly floor(n * s) weights (ties by position, a stable
sort), where the paper's code prunes `score <= sorted[k]`.

usage: sparsegpt_ref.py DIR   (DIR written by the prune_dump program)
Checks, per case of DIR/cases.txt:
  float64 reference: masks identical; weights within 1e-4 * max|W| + 1e-4 * |ref|
  float32 reference: reported (its own rounding may flip a near-tie in a mask)
  Wanda: masks and weights identical (same f32 products, same ranking)
Exit 0 when all agree, 1 on a mismatch, 77 when numpy is missing.
The functions are imported by benchmarks/prune_numpy.py for the speed comparison.
"""
import math
import os
import sys

try:
    import numpy as np
except ImportError:  # reported as skipped by CTest (SKIP_RETURN_CODE 77)
    print("numpy is not installed (pip install numpy)")
    sys.exit(77)


def upper_inverse_factor(H, damp, dtype, max_retries=6):
    """U with U^T U = (H + lambda mean(diag H) I)^-1, retrying with damping x10; returns (U, lambda)."""
    mean = np.mean(np.diag(H))
    eye = np.eye(H.shape[0], dtype=dtype)
    for attempt in range(max_retries + 1):
        lam = damp if attempt == 0 else (damp if damp > 0 else 1e-7) * 10.0**attempt
        try:
            L = np.linalg.cholesky(H + dtype(lam * mean) * eye)
            Linv = np.linalg.inv(L)
            Hinv = Linv.T @ Linv
            return np.linalg.cholesky(Hinv).T.astype(dtype), lam
        except np.linalg.LinAlgError:
            continue
    raise RuntimeError("H is not positive definite at any damping tried")


def lowest(scores, k):
    """Boolean array, True for the k lowest of a 1-D array (ties: lower index first)."""
    out = np.zeros(scores.shape, dtype=bool)
    out[np.argsort(scores, kind="stable")[:k]] = True
    return out


def sparsegpt(W, H, sparsity, n=0, m=0, block=128, damp=0.01, dtype=np.float64, per_row=False):
    """Returns (pruned W, keep mask). W (rows, cols), H (cols, cols)."""
    W = W.astype(dtype).copy()
    H = H.astype(dtype).copy()
    rows, cols = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    U, _ = upper_inverse_factor(H, damp, dtype)
    pruned = np.zeros(W.shape, dtype=bool)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].copy()
        Q1 = np.zeros_like(W1)
        Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        d = np.diag(U1)
        if m == 0 and per_row:
            tmp = W1**2 / d[None, :] ** 2
            k = int(math.floor(count * sparsity + 1e-9))
            mask1 = np.zeros(W1.shape, dtype=bool)
            np.put_along_axis(mask1, np.argsort(tmp, axis=1, kind="stable")[:, :k], True, axis=1)
        elif m == 0:
            tmp = W1**2 / d[None, :] ** 2
            k = int(math.floor(tmp.size * sparsity + 1e-9))
            mask1 = lowest(tmp.ravel(), k).reshape(tmp.shape)
        else:
            mask1 = np.zeros(W1.shape, dtype=bool)
        for i in range(count):
            if m and i % m == 0:
                tmp = W1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, : m - n]
                grp = np.zeros(tmp.shape, dtype=bool)
                np.put_along_axis(grp, idx, True, axis=1)
                mask1[:, i : i + m] = grp
            w = W1[:, i]
            q = w.copy()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / U1[i, i]
            W1[:, i:] -= np.outer(err, U1[i, i:])
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W, ~pruned


def wanda(W, H, sparsity, dtype=np.float32):
    """Per row: prune the floor(cols * s) lowest |W_ij| sqrt(H_jj); no update. Returns (W, keep)."""
    W = W.astype(dtype).copy()
    score = np.abs(W) * np.sqrt(np.diag(H).astype(dtype))
    k = int(math.floor(W.shape[1] * sparsity + 1e-9))
    keep = np.ones(W.shape, dtype=bool)
    order = np.argsort(score, axis=1, kind="stable")[:, :k]
    np.put_along_axis(keep, order, False, axis=1)
    W[~keep] = 0
    return W, keep


def load(d, name, ext, shape, dtype):
    return np.fromfile(os.path.join(d, f"{name}.{ext}"), dtype=dtype).reshape(shape)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    d = sys.argv[1]
    failed = 0
    with open(os.path.join(d, "cases.txt")) as f:
        lines = [ln.split() for ln in f if ln.strip()]
    if not lines:
        print("no cases in", d)
        return 1
    for name, method, rows, cols, sp, n, m, block, damp, per_row in lines:
        rows, cols, n, m, block, per_row = int(rows), int(cols), int(n), int(m), int(block), int(per_row) != 0
        sp, damp = float(sp), float(damp)
        W = load(d, name, "w.f32", (rows, cols), np.float32)
        H = load(d, name, "h.f32", (cols, cols), np.float32)
        got_w = load(d, name, "out.f32", (rows, cols), np.float32)
        got_keep = load(d, name, "mask.u8", (rows, cols), np.uint8).astype(bool)
        if method == "wanda":
            ref_w, ref_keep = wanda(W, H, sp)
            bad_mask = int(np.sum(ref_keep != got_keep))
            bad_w = int(np.sum(ref_w != got_w))
            ok = bad_mask == 0 and bad_w == 0
            print(f"{name}: wanda ({rows}, {cols}) s={sp}: mask mismatches {bad_mask}, weight mismatches {bad_w}")
        else:
            ref_w, ref_keep = sparsegpt(W, H, sp, n, m, block, damp, np.float64, per_row)
            f32_w, f32_keep = sparsegpt(W, H, sp, n, m, block, damp, np.float32, per_row)
            bad_mask = int(np.sum(ref_keep != got_keep))
            tol = 1e-4 * np.max(np.abs(W)) + 1e-4 * np.abs(ref_w)
            diff = np.abs(got_w.astype(np.float64) - ref_w)
            bad_w = int(np.sum(diff > tol))
            ok = bad_mask == 0 and bad_w == 0 and np.all(got_w[~got_keep] == 0)
            pattern = f"{n}:{m}" if m else f"s={sp}" + (" per row" if per_row else "")
            print(
                f"{name}: sparsegpt ({rows}, {cols}) {pattern} B={block}: vs float64 mask mismatches {bad_mask}, "
                f"max |w - ref| {diff.max():.3g} (max |W| {np.max(np.abs(W)):.3g}), outside tol {bad_w}; "
                f"vs float32 numpy: mask mismatches {int(np.sum(f32_keep != got_keep))}, "
                f"max |w - ref32| {np.max(np.abs(got_w - f32_w)):.3g}"
            )
        if not ok:
            failed += 1
            print(f"FAIL {name}")
    print(f"{len(lines)} cases, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
