#!/usr/bin/env python3
"""check_stories260k.py — read stories260K.bin with numpy alone and compare with birdbone's reader.

Runs `test_llama2c --dump MODEL` (birdbone's view: config, tokenizer path, and per
tensor the file offset, shape, first 8 values, last value and f64 sum) and checks
every line against an independent reading of the legacy llama2.c layout:
header fields exactly, offsets and shapes exactly, values exactly (both print
the same f32 with 9 significant digits), sums to 1e-9 relative. It also checks
the file's own freq_cis tables against cos/sin(pos * 10000^(-2i/head_size)),
the RoPE birdbone recomputes. Exit status 1 on any difference.
"""
import argparse
import struct
import subprocess
import sys

import numpy as np

FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]


def reference(path):
    raw = open(path, "rb").read()
    hdr = dict(zip(FIELDS, struct.unpack("<7i", raw[:28])))
    dim, hid, L = hdr["dim"], hdr["hidden_dim"], hdr["n_layers"]
    hs = dim // hdr["n_heads"]
    kvd = hdr["n_kv_heads"] * hs
    V = abs(hdr["vocab_size"])
    f = np.frombuffer(raw, dtype="<f4", offset=28)
    tensors, pos = {}, 0

    def take(name_fmt, count, shape):
        nonlocal pos
        n = int(np.prod(shape))
        for i in range(count):
            tensors[name_fmt.format(i)] = (28 + 4 * pos, shape, f[pos:pos + n])
            pos += n

    take("token_embd.weight", 1, (V, dim))
    take("blk.{}.attn_norm.weight", L, (dim,))
    take("blk.{}.attn_q.weight", L, (dim, dim))
    take("blk.{}.attn_k.weight", L, (kvd, dim))
    take("blk.{}.attn_v.weight", L, (kvd, dim))
    take("blk.{}.attn_output.weight", L, (dim, dim))
    take("blk.{}.ffn_norm.weight", L, (dim,))
    take("blk.{}.ffn_gate.weight", L, (hid, dim))
    take("blk.{}.ffn_down.weight", L, (dim, hid))
    take("blk.{}.ffn_up.weight", L, (hid, dim))
    take("output_norm.weight", 1, (dim,))
    take("freq_cis_real", 1, (hdr["seq_len"], hs // 2))
    take("freq_cis_imag", 1, (hdr["seq_len"], hs // 2))
    if hdr["vocab_size"] < 0:
        take("output.weight", 1, (V, dim))
    assert 28 + 4 * pos == len(raw), f"layout covers {28 + 4 * pos} bytes of {len(raw)}"
    return hdr, hs, tensors


def parse_dump(text):
    cfg, tok, tensors = {}, None, {}
    for line in text.splitlines():
        w = line.split()
        if w[0] == "config":
            cfg = {w[i]: int(w[i + 1]) for i in range(1, len(w), 2)}
        elif w[0] == "tokenizer":
            tok = w[1] if len(w) > 1 else ""
        elif w[0] == "tensor":
            i_shape, i_sum, i_vals, i_last = w.index("shape"), w.index("sum"), w.index("values"), w.index("last")
            tensors[w[1]] = dict(offset=int(w[3]), shape=tuple(int(x) for x in w[i_shape + 1:i_sum]),
                                 sum=float(w[i_sum + 1]), values=w[i_vals + 1:i_last], last=w[i_last + 1])
    return cfg, tok, tensors


def g9(x):
    """The C side's %.9g of an f32 value."""
    return "%.9g" % float(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", required=True, help="path to the test_llama2c executable")
    ap.add_argument("--model", required=True, help="stories260K.bin")
    a = ap.parse_args()
    errors = []
    hdr, hs, ref = reference(a.model)
    print("numpy header:", ", ".join(f"{k} {v}" for k, v in hdr.items()))
    out = subprocess.run([a.dump, "--dump", a.model], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        print("FAIL: birdbone could not read the model")
        return 1
    cfg, tok, got = parse_dump(out.stdout)

    for k in FIELDS:
        want = abs(hdr[k]) if k == "vocab_size" else hdr[k]
        if cfg.get(k) != want:
            errors.append(f"header {k}: birdbone {cfg.get(k)} numpy {want}")
    if cfg.get("head_dim") != hs or cfg.get("tied") != int(hdr["vocab_size"] > 0):
        errors.append(f"head_dim/tied: birdbone {cfg.get('head_dim')}/{cfg.get('tied')}")
    if not (tok or "").endswith("tok512.bin"):
        errors.append(f"tokenizer beside the model not found: '{tok}'")

    names = [n for n in ref if not n.startswith("freq_cis")]
    if sorted(names) != sorted(got):
        errors.append(f"tensor sets differ: only numpy {sorted(set(names) - set(got))}, "
                      f"only birdbone {sorted(set(got) - set(names))}")
    for n in names:
        if n not in got:
            continue
        off, shape, vals = ref[n]
        g = got[n]
        if g["offset"] != off or g["shape"] != shape:
            errors.append(f"{n}: birdbone offset {g['offset']} shape {g['shape']}, numpy {off} {shape}")
        if g["values"] != [g9(v) for v in vals[:8]] or g["last"] != g9(vals[-1]):
            errors.append(f"{n}: values birdbone {g['values'][:3]}... numpy {[g9(v) for v in vals[:3]]}...")
        s = float(np.sum(vals, dtype=np.float64))
        if abs(g["sum"] - s) > 1e-9 * max(1.0, abs(s)):
            errors.append(f"{n}: sum birdbone {g['sum']!r} numpy {s!r}")

    # The checkpoint's own RoPE tables say theta 10000 with interleaved pairs.
    seq = hdr["seq_len"]
    ang = np.arange(seq)[:, None] * 10000.0 ** (-np.arange(0, hs, 2) / hs)[None, :]
    for name, fn in (("freq_cis_real", np.cos), ("freq_cis_imag", np.sin)):
        err = np.abs(ref[name][2].reshape(seq, hs // 2) - fn(ang)).max()
        if err > 1e-4:
            errors.append(f"{name} differs from theta-10000 RoPE by {err:.3g}")

    tok_embd = ref["token_embd.weight"][2]
    print("token_embd[0, :4] =", " ".join(g9(v) for v in tok_embd[:4]),
          "| blk.0.attn_q[0, :4] =", " ".join(g9(v) for v in ref["blk.0.attn_q.weight"][2][:4]),
          "| output_norm[:4] =", " ".join(g9(v) for v in ref["output_norm.weight"][2][:4]))
    print(f"compared {len(names)} tensors")
    for e in errors:
        print("FAIL", e)
    print("ok" if not errors else f"{len(errors)} differences")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
