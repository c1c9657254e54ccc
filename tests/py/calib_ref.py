#!/usr/bin/env python3
"""calib_ref.py — calibration statistics against an independent numpy (float64) forward pass.

Builds random tiny llama2.c models (forward_ref.py's generator and writer), runs
`test_calib --stats MODEL TOKENS OUT EPS` (birdbone's collector with f64 Grams
behind its f32 forward pass) and recomputes every linear input's statistics in
numpy from a float64 forward pass that captures the inputs itself. Tolerances
(birdbone's activations are f32, the reference's f64):
    Gram:      |H - ref| <= 1e-5 sqrt(ref_ii ref_jj)  (the Cauchy-Schwarz scale of entry ij)
    norm, mean |x|: relative 1e-5
    freq:      within 2 / n_tokens (a value within rounding of eps may flip)
    n_tokens:  exact
Exit status 1 on any mismatch.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_ref import random_model, rmsnorm, rope, write_llama2c  # noqa: E402

INPUTS = ("attn_in", "attn_out_in", "ffn_in", "ffn_down_in")


def capture(cfg, w, tokens):
    """tokens (T) -> {(layer, input): X (T, in)} in float64, the inputs of the linear layers."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T, hd = len(tokens), cfg["head_dim"]
    nh, nkv, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["norm_eps"]
    pos = np.arange(T)
    x = W["token_embd.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    got = {}
    for l in range(cfg["n_layers"]):
        p = f"blk.{l}."
        xn = rmsnorm(x, W[p + "attn_norm.weight"], eps)
        got[l, "attn_in"] = xn
        q, k, v = (xn @ W[p + f"attn_{n}.weight"].T for n in "qkv")
        q = rope(q.reshape(T, nh, hd), pos, cfg)
        k = rope(k.reshape(T, nkv, hd), pos, cfg)
        v = v.reshape(T, nkv, hd)
        rep = nh // nkv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, nh * hd)
        got[l, "attn_out_in"] = o
        x = x + o @ W[p + "attn_output.weight"].T
        xn = rmsnorm(x, W[p + "ffn_norm.weight"], eps)
        got[l, "ffn_in"] = xn
        g, u = xn @ W[p + "ffn_gate.weight"].T, xn @ W[p + "ffn_up.weight"].T
        h = g / (1 + np.exp(-g)) * u
        got[l, "ffn_down_in"] = h
        x = x + h @ W[p + "ffn_down.weight"].T
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", required=True, help="path to the test_calib executable")
    ap.add_argument("--tmp", required=True, help="scratch directory")
    ap.add_argument("--seed", type=int, default=4321)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.tmp, exist_ok=True)
    failures = 0
    for i, (shape, eps) in enumerate((((32, 48, 2, 4, 2, 64), 0.05), ((24, 40, 3, 3, 3, 50), 0.2))):
        cfg, w = random_model(rng, *shape)
        B, T = 3, 20
        tokens = rng.integers(0, cfg["vocab_size"], size=(B, T))
        tokens[:, 0] = 1
        model = os.path.join(a.tmp, f"calib{i}.bin")
        tok_path = os.path.join(a.tmp, f"calib{i}.tokens")
        out_path = os.path.join(a.tmp, f"calib{i}.stats")
        write_llama2c(model, cfg, w, 1)
        with open(tok_path, "w") as f:
            f.write(f"{B} {T}\n" + " ".join(str(t) for t in tokens.ravel()) + "\n")
        r = subprocess.run([a.runner, "--stats", model, tok_path, out_path, repr(eps)])
        if r.returncode != 0:
            print(f"FAIL model {i}: runner exited {r.returncode}")
            failures += 1
            continue
        caps = [capture(cfg, w, tokens[b]) for b in range(B)]
        data = np.fromfile(out_path, dtype="<f8")
        off = 0
        for l in range(cfg["n_layers"]):
            for name in INPUTS:
                X = np.concatenate([c[l, name] for c in caps])
                n = X.shape[1]
                gram = data[off: off + n * n].reshape(n, n)
                off += n * n
                norm, mean_abs, freq = (data[off + k * n: off + (k + 1) * n] for k in range(3))
                off += 3 * n
                count = data[off]
                off += 1
                H = X.T @ X
                d = np.sqrt(np.diag(H))
                errs = {
                    "gram": np.max(np.abs(gram - H) / (np.outer(d, d) + 1e-300)),
                    "norm": np.max(np.abs(norm - d) / d),
                    "mean_abs": np.max(np.abs(mean_abs - np.abs(X).mean(0)) / np.abs(X).mean(0)),
                }
                fdiff = np.max(np.abs(freq - (np.abs(X) > eps).mean(0))) * len(X)
                ok = all(v <= 1e-5 for v in errs.values()) and fdiff <= 2 and count == len(X)
                if not ok:
                    failures += 1
                print(f"{'ok  ' if ok else 'FAIL'} model {i} layer {l} {name:12s} (in {n}): "
                      + ", ".join(f"{k} {v:.2g}" for k, v in errs.items())
                      + f", freq {fdiff:.0f}/{len(X)} rows, n_tokens {count:.0f}")
        if off != len(data):
            print(f"FAIL model {i}: {len(data) - off} values left over in {out_path}")
            failures += 1
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
