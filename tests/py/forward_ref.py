#!/usr/bin/env python3
"""forward_ref.py — an independent numpy (float64) Llama forward pass, compared with birdbone's logits.

Builds random tiny models, runs `test_forward --logits MODEL TOKENS OUT` (birdbone's
prefill and token-by-token decode) and checks both against the reference:
    err = max|birdbone - ref| / max|ref|  <=  1e-5
Models come as llama2.c checkpoints (legacy and version 1: interleaved RoPE,
theta 10000, eps 1e-5) and as raw tensor directories (config.txt + <name>.f32)
that the runner assembles in memory, covering half RoPE, q/k/v bias, linear and
llama3 RoPE scaling, head_dim != dim/n_heads and bf16 storage.
Exit status 1 on any mismatch.
"""
import argparse
import math
import os
import struct
import subprocess
import sys

import numpy as np

TOL = 1e-5


def random_model(rng, dim, hidden, n_layers, n_heads, n_kv, vocab, head_dim=None, bias=False, tied=True):
    hd = head_dim or dim // n_heads
    qd, kvd = n_heads * hd, n_kv * hd

    def mat(o, i):
        return (rng.standard_normal((o, i)) / math.sqrt(i)).astype(np.float32)

    def gain(n):
        return (1.0 + 0.3 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((vocab, dim)).astype(np.float32),
         "output_norm.weight": gain(dim)}
    if not tied:
        w["output.weight"] = mat(vocab, dim)
    for l in range(n_layers):
        p = f"blk.{l}."
        w[p + "attn_norm.weight"] = gain(dim)
        w[p + "attn_q.weight"] = mat(qd, dim)
        w[p + "attn_k.weight"] = mat(kvd, dim)
        w[p + "attn_v.weight"] = mat(kvd, dim)
        w[p + "attn_output.weight"] = mat(dim, qd)
        w[p + "ffn_norm.weight"] = gain(dim)
        w[p + "ffn_gate.weight"] = mat(hidden, dim)
        w[p + "ffn_up.weight"] = mat(hidden, dim)
        w[p + "ffn_down.weight"] = mat(dim, hidden)
        if bias:
            for k, n in (("q", qd), ("k", kvd), ("v", kvd)):
                w[p + f"attn_{k}.bias"] = (0.2 * rng.standard_normal(n)).astype(np.float32)
    cfg = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv, head_dim=hd,
               vocab_size=vocab, max_seq_len=64, norm_eps=1e-5, rope_theta=10000.0, rope_style=0, rope_scaling=0,
               rope_factor=1.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0, rope_orig_max_pos=8192,
               tied_embeddings=int(tied), attn_bias=int(bias))
    return cfg, w


# ---- reference -----------------------------------------------------------------------

def inv_freqs(cfg):
    hd = cfg["head_dim"]
    f = cfg["rope_theta"] ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    factor = cfg["rope_factor"]
    if cfg["rope_scaling"] == 1:
        f = f / factor
    elif cfg["rope_scaling"] == 2:
        orig, lo, hi = cfg["rope_orig_max_pos"], cfg["rope_low_freq_factor"], cfg["rope_high_freq_factor"]
        wavelen = 2 * math.pi / f
        smooth = (orig / wavelen - lo) / (hi - lo)
        scaled = np.where(wavelen > orig / lo, f / factor, f)
        medium = (wavelen >= orig / hi) & (wavelen <= orig / lo)
        f = np.where(medium, (1 - smooth) * f / factor + smooth * f, scaled)
    return f


def rope(x, pos, cfg):
    """x (T, heads, hd) rotated at positions pos (T)."""
    hd = cfg["head_dim"]
    ang = np.outer(pos, inv_freqs(cfg))[:, None, :]
    c, s = np.cos(ang), np.sin(ang)
    if cfg["rope_style"] == 0:
        a, b = x[..., 0::2], x[..., 1::2]
    else:
        a, b = x[..., : hd // 2], x[..., hd // 2:]
    ra, rb = a * c - b * s, a * s + b * c
    out = np.empty_like(x)
    if cfg["rope_style"] == 0:
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., : hd // 2], out[..., hd // 2:] = ra, rb
    return out


def rmsnorm(x, g, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def forward(cfg, w, tokens):
    """tokens (T) -> logits (T, vocab), all in float64."""
    W = {k: v.astype(np.float64) for k, v in w.items()}
    T, hd = len(tokens), cfg["head_dim"]
    nh, nkv, eps = cfg["n_heads"], cfg["n_kv_heads"], cfg["norm_eps"]
    pos = np.arange(T)
    x = W["token_embd.weight"][tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["n_layers"]):
        p = f"blk.{l}."
        xn = rmsnorm(x, W[p + "attn_norm.weight"], eps)
        q, k, v = (xn @ W[p + f"attn_{n}.weight"].T for n in "qkv")
        if cfg["attn_bias"]:
            q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
        q = rope(q.reshape(T, nh, hd), pos, cfg)
        k = rope(k.reshape(T, nkv, hd), pos, cfg)
        v = v.reshape(T, nkv, hd)
        rep = nh // nkv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / math.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, nh * hd)
        x = x + o @ W[p + "attn_output.weight"].T
        xn = rmsnorm(x, W[p + "ffn_norm.weight"], eps)
        g, u = xn @ W[p + "ffn_gate.weight"].T, xn @ W[p + "ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "ffn_down.weight"].T
    out = W["output.weight"] if "output.weight" in W else W["token_embd.weight"]
    return rmsnorm(x, W["output_norm.weight"], eps) @ out.T


# ---- writers ---------------------------------------------------------------------------

def layer_stack(w, cfg, name):
    return np.concatenate([w[f"blk.{l}.{name}"].ravel() for l in range(cfg["n_layers"])])


def write_llama2c(path, cfg, w, version):
    L, dim, hd = cfg["n_layers"], cfg["dim"], cfg["head_dim"]
    tied = cfg["tied_embeddings"]
    vocab = cfg["vocab_size"] if (tied or version == 1) else -cfg["vocab_size"]
    hdr = (dim, cfg["hidden_dim"], L, cfg["n_heads"], cfg["n_kv_heads"], vocab, cfg["max_seq_len"])
    st = lambda n: layer_stack(w, cfg, n)
    if version == 0:
        head = struct.pack("<7i", *hdr)
        pos = np.arange(cfg["max_seq_len"])[:, None] * inv_freqs(cfg)[None, :]
        parts = [w["token_embd.weight"].ravel(), st("attn_norm.weight"), st("attn_q.weight"), st("attn_k.weight"),
                 st("attn_v.weight"), st("attn_output.weight"), st("ffn_norm.weight"), st("ffn_gate.weight"),
                 st("ffn_down.weight"), st("ffn_up.weight"), w["output_norm.weight"],
                 np.cos(pos).ravel(), np.sin(pos).ravel()]
    else:
        head = struct.pack("<Ii7iB", 0x616B3432, 1, *hdr, int(tied))
        head += b"\0" * (256 - len(head))
        parts = [st("attn_norm.weight"), st("ffn_norm.weight"), w["output_norm.weight"], w["token_embd.weight"].ravel(),
                 st("attn_q.weight"), st("attn_k.weight"), st("attn_v.weight"), st("attn_output.weight"),
                 st("ffn_gate.weight"), st("ffn_down.weight"), st("ffn_up.weight")]
    if not tied:
        parts.append(w["output.weight"].ravel())
    with open(path, "wb") as f:
        f.write(head)
        f.write(np.concatenate([np.asarray(p, dtype=np.float32) for p in parts]).astype("<f4").tobytes())


def write_raw(d, cfg, w, bf16):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.txt"), "w") as f:
        for k, v in cfg.items():
            f.write(f"{k} {v}\n")
        f.write(f"bf16 {int(bf16)}\n")
    for name, t in w.items():
        t.astype("<f4").tofile(os.path.join(d, name + ".f32"))


def round_bf16(w):
    """The values birdbone sees after f32 -> bf16 (round to nearest even)."""
    out = {}
    for k, v in w.items():
        u = v.astype(np.float32).view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
        out[k] = u.astype(np.uint32).view(np.float32)
    return out


# ---- cases -------------------------------------------------------------------------------

def cases(rng):
    c, w = random_model(rng, 32, 48, 2, 4, 2, 64)
    yield "legacy, shared classifier, GQA 4/2", c, w, "v0", False
    c, w = random_model(rng, 24, 40, 2, 3, 3, 50, tied=False)
    yield "legacy, separate classifier, MHA", c, w, "v0", False
    c, w = random_model(rng, 32, 40, 3, 8, 2, 40, tied=False)
    yield "version 1, separate classifier, GQA 8/2", c, w, "v1", False
    c, w = random_model(rng, 16, 32, 2, 2, 1, 48)
    yield "version 1, shared classifier, GQA 2/1", c, w, "v1", False
    c, w = random_model(rng, 24, 40, 2, 4, 2, 48, head_dim=8, bias=True, tied=False)
    c.update(rope_style=1, rope_scaling=2, rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
             rope_orig_max_pos=64, rope_theta=10000.0)
    yield "half rope, q/k/v bias, llama3 scaling, head_dim 8 != dim/heads, untied", c, w, "raw", False
    c, w = random_model(rng, 32, 48, 2, 4, 1, 40, tied=True)
    c.update(rope_style=0, rope_scaling=1, rope_factor=4.0, rope_theta=500000.0, norm_eps=1e-6)
    yield "interleaved rope, linear scaling x4, theta 5e5, tied, GQA 4/1", c, w, "raw", False
    c, w = random_model(rng, 32, 48, 2, 4, 2, 40, bias=True, tied=False)
    c.update(rope_style=1)
    yield "half rope, bias, bf16 storage", c, w, "raw", True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", required=True, help="path to the test_forward executable")
    ap.add_argument("--tmp", required=True, help="scratch directory")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.tmp, exist_ok=True)
    failures = 0
    for i, (label, cfg, w, fmt, bf16) in enumerate(cases(rng)):
        B, T = 2, 12
        tokens = rng.integers(0, cfg["vocab_size"], size=(B, T))
        tokens[:, 0] = 1
        tok_path = os.path.join(a.tmp, f"fwd{i}.tokens")
        out_path = os.path.join(a.tmp, f"fwd{i}.logits")
        with open(tok_path, "w") as f:
            f.write(f"{B} {T}\n" + " ".join(str(t) for t in tokens.ravel()) + "\n")
        if fmt == "raw":
            model = os.path.join(a.tmp, f"fwd{i}.raw")
            write_raw(model, cfg, w, bf16)
        else:
            model = os.path.join(a.tmp, f"fwd{i}.bin")
            write_llama2c(model, cfg, w, 0 if fmt == "v0" else 1)
        r = subprocess.run([a.runner, "--logits", model, tok_path, out_path])
        if r.returncode != 0:
            print(f"FAIL {label}: runner exited {r.returncode}")
            failures += 1
            continue
        V = cfg["vocab_size"]
        got = np.fromfile(out_path, dtype="<f4").reshape(2, B, T, V)
        wref = round_bf16(w) if bf16 else w
        worst = 0.0
        for b in range(B):
            ref = forward(cfg, wref, tokens[b])
            scale = np.abs(ref).max()
            for mode, name in ((0, "prefill"), (1, "decode")):
                err = np.abs(got[mode, b] - ref).max() / scale
                worst = max(worst, err)
                if not err <= TOL:
                    print(f"FAIL {label}: {name} sequence {b}: max|a-b|/max|ref| = {err:.3g} > {TOL}")
                    bad = np.argwhere(np.abs(got[mode, b] - ref) > TOL * scale)[:5]
                    for t, v in bad:
                        print(f"    t={t} id={v}: birdbone {got[mode, b, t, v]:.7g} ref {ref[t, v]:.7g}")
                    failures += 1
        print(f"{'ok  ' if worst <= TOL else 'FAIL'} {label}: max|a-b|/max|ref| = {worst:.3g} (tol {TOL})")
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
