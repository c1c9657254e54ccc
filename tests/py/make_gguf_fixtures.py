#!/usr/bin/env python3
"""make_gguf_fixtures.py — tiny llama/qwen2 GGUF models (gguf.GGUFWriter + numpy), a reference
file with their config and tensor values, and broken variants for the reader's error paths.

Usage: make_gguf_fixtures.py OUTDIR            fixtures for tests/unit/test_gguf.c
       make_gguf_fixtures.py --seeds OUTDIR    minimal valid models for tests/fuzz/seeds/gguf

reference.txt (line based, so the C test needs no JSON parser):
    model <file>
    config <name> <value>
    tensor <name> <dtype> <shape...> sum <float64 sum> first <v0> <v1> <v2>
    end
broken.txt: <file> <status name> <words the error message must contain>
ggml_types.txt: <type id> <name> <block size> <type size> for every type the gguf package knows
"""
import struct
import sys
from pathlib import Path

import numpy as np
import gguf

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, CTX = 16, 32, 2, 4, 2, 32, 64
EPS, THETA, BOS, EOS = 1e-5, 10000.0, 1, 2


def set_sizes(dim, hidden, layers, heads, kv_heads, vocab):
    global DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, HEAD_DIM
    DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB = dim, hidden, layers, heads, kv_heads, vocab
    HEAD_DIM = DIM // HEADS


set_sizes(DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB)


def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (what the converters do)."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def model_tensors(rng, arch, tied):
    """Canonical name -> float32 array, row-major (rows, cols)."""
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    t = {"token_embd.weight": rng.standard_normal((VOCAB, DIM))}
    for l in range(LAYERS):
        p = f"blk.{l}."
        t[p + "attn_norm.weight"] = 1.0 + 0.1 * rng.standard_normal(DIM)
        t[p + "attn_q.weight"] = rng.standard_normal((q, DIM))
        t[p + "attn_k.weight"] = rng.standard_normal((kv, DIM))
        t[p + "attn_v.weight"] = rng.standard_normal((kv, DIM))
        if arch == "qwen2":
            t[p + "attn_q.bias"] = rng.standard_normal(q)
            t[p + "attn_k.bias"] = rng.standard_normal(kv)
            t[p + "attn_v.bias"] = rng.standard_normal(kv)
        t[p + "attn_output.weight"] = rng.standard_normal((DIM, q))
        t[p + "ffn_norm.weight"] = 1.0 + 0.1 * rng.standard_normal(DIM)
        t[p + "ffn_gate.weight"] = rng.standard_normal((HIDDEN, DIM))
        t[p + "ffn_up.weight"] = rng.standard_normal((HIDDEN, DIM))
        t[p + "ffn_down.weight"] = rng.standard_normal((DIM, HIDDEN))
    t["output_norm.weight"] = 1.0 + 0.1 * rng.standard_normal(DIM)
    if not tied:
        t["output.weight"] = rng.standard_normal((VOCAB, DIM))
    return {k: (0.1 * v).astype(np.float32) for k, v in t.items()}


def llama3_rope_factors(theta, factor, low=1.0, high=4.0, orig=8192):
    """Per-frequency divisors as llama.cpp's converter writes rope_freqs.weight for Llama 3.x."""
    freqs = 1.0 / (theta ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM))
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_model(path, dtype, tied, arch="llama", seed=0, drop_keys=(), key_override=None, tensor_override=None,
                theta=THETA, rope_freqs=None):
    """Write a model; returns (config dict, {name: (dtype, stored values as float64)})."""
    rng = np.random.default_rng(seed)
    tensors = model_tensors(rng, arch, tied)
    if rope_freqs is not None:
        tensors["rope_freqs.weight"] = rope_freqs
    w = gguf.GGUFWriter(str(path), arch)
    a = arch
    kv = {
        f"{a}.block_count": (LAYERS, gguf.GGUFValueType.UINT32),
        f"{a}.context_length": (CTX, gguf.GGUFValueType.UINT32),
        f"{a}.embedding_length": (DIM, gguf.GGUFValueType.UINT32),
        f"{a}.feed_forward_length": (HIDDEN, gguf.GGUFValueType.UINT32),
        f"{a}.attention.head_count": (HEADS, gguf.GGUFValueType.UINT32),
        f"{a}.attention.head_count_kv": (KV_HEADS, gguf.GGUFValueType.UINT32),
        f"{a}.attention.layer_norm_rms_epsilon": (EPS, gguf.GGUFValueType.FLOAT32),
        f"{a}.rope.freq_base": (theta, gguf.GGUFValueType.FLOAT32),
        f"{a}.rope.dimension_count": (HEAD_DIM, gguf.GGUFValueType.UINT32),
        "tokenizer.ggml.model": ("llama", gguf.GGUFValueType.STRING),
        "tokenizer.ggml.bos_token_id": (BOS, gguf.GGUFValueType.UINT32),
        "tokenizer.ggml.eos_token_id": (EOS, gguf.GGUFValueType.UINT32),
    }
    kv.update(key_override or {})
    for k, (v, vt) in kv.items():
        if k not in drop_keys:
            w.add_key_value(k, v, vt)
    w.add_token_list([f"tok{i}" for i in range(VOCAB)])
    stored = {}
    for name, x in tensors.items():
        if tensor_override and name in tensor_override:
            x = tensor_override[name](x)
        if isinstance(x, tuple):  # (raw bytes as uint8, ggml type): a quantized tensor
            w.add_tensor(name, x[0], raw_dtype=x[1])
            continue
        if dtype == "f32" or x.ndim == 1:  # norms and biases stay f32, as llama.cpp writes them
            w.add_tensor(name, x)
            stored[name] = ("f32", x.astype(np.float64))
        elif dtype == "f16":
            h = x.astype(np.float16)
            w.add_tensor(name, h)
            stored[name] = ("f16", h.astype(np.float64))
        else:
            b = bf16_bits(x)
            w.add_tensor(name, b, raw_dtype=gguf.GGMLQuantizationType.BF16)
            stored[name] = ("bf16", bf16_value(b).astype(np.float64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cfg = {
        "dim": DIM, "hidden_dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS, "n_kv_heads": KV_HEADS,
        "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_seq_len": CTX, "norm_eps": EPS, "rope_theta": theta,
        "tied_embeddings": int(tied), "attn_bias": int(arch == "qwen2"),
        "rope_style": 1 if arch == "qwen2" else 0, "bos_id": BOS, "eos_id": EOS,
        "rope_scaling": 0, "rope_factor": 1.0,
    }
    if rope_freqs is not None:
        del stored["rope_freqs.weight"]  # not a model weight: it becomes the rope config
        cfg.update(rope_scaling=2, rope_factor=float(rope_freqs.max()), rope_low_freq_factor=1.0,
                   rope_high_freq_factor=4.0, rope_orig_max_pos=8192)
    return cfg, stored


# ---- raw files for the reader's error paths ----

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def raw_gguf(kvs, tensors, version=3, alignment=32, data=None, tensor_count=None):
    """kvs: [(key, type id, packed value bytes)]; tensors: [(name, ne fastest-first, ggml type, offset)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if tensor_count is None else tensor_count, len(kvs))
    for k, t, v in kvs:
        out += gstr(k) + struct.pack("<I", t) + v
    for name, ne, t, off in tensors:
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", t, off)
    out += b"\0" * ((-len(out)) % alignment)
    return out + (data if data is not None else b"")


def u32kv(k, v):
    return (k, 4, struct.pack("<I", v))


def write_seeds(out):
    """Models small enough that fuzzer mutations mostly land in the header."""
    set_sizes(4, 4, 1, 2, 1, 4)
    write_model(out / "tiny_llama_f32.gguf", "f32", False)
    write_model(out / "tiny_llama_f16_tied.gguf", "f16", True)
    write_model(out / "tiny_llama_bf16.gguf", "bf16", False)
    write_model(out / "tiny_qwen2_f32.gguf", "f32", True, arch="qwen2")
    write_model(out / "tiny_llama3_rope_freqs.gguf", "f32", True, theta=500000.0,
                rope_freqs=llama3_rope_factors(500000.0, 8.0))


def emit(ref, fname, cfg, stored):
    ref.append(f"model {fname}")
    ref += [f"config {k} {v!r}" for k, v in cfg.items()]
    for name, (dt, v) in stored.items():
        flat = v.reshape(-1)
        ref.append(f"tensor {name} {dt} {' '.join(map(str, v.shape))} sum {float(flat.sum())!r} first "
                   + " ".join(repr(float(x)) for x in flat[:3]))
    ref.append("end")


def main():
    if sys.argv[1] == "--seeds":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        write_seeds(out)
        return
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ref = []
    models = [("llama_f32.gguf", "f32", False, "llama"), ("llama_f16.gguf", "f16", False, "llama"),
              ("llama_bf16_tied.gguf", "bf16", True, "llama"), ("qwen2_f32.gguf", "f32", True, "qwen2")]
    for i, (fname, dtype, tied, arch) in enumerate(models):
        cfg, stored = write_model(out / fname, dtype, tied, arch, seed=i)
        emit(ref, fname, cfg, stored)
    # Llama 3.x: rope scaling only as rope_freqs.weight; frequency 1 of head_dim 4 lies in the smoothed band.
    cfg, stored = write_model(out / "llama3_rope_freqs.gguf", "f16", True, seed=7, theta=500000.0,
                              rope_freqs=llama3_rope_factors(500000.0, 8.0))
    cfg["rope_factor"] = 8.0
    emit(ref, "llama3_rope_freqs.gguf", cfg, stored)
    (out / "reference.txt").write_text("\n".join(ref) + "\n")


    broken = []
    good = (out / "llama_f32.gguf").read_bytes()

    def put(name, data, status, words):
        (out / name).write_bytes(data)
        broken.append(f"{name} {status} {words}")

    put("truncated.gguf", good[: len(good) // 2], "BB_ERR_FORMAT", "truncated")
    put("bad_magic.gguf", b"GGUX" + good[4:], "BB_ERR_FORMAT", "magic")
    put("version1.gguf", good[:4] + struct.pack("<I", 1) + good[8:], "BB_ERR_UNSUPPORTED", "version 1")
    put("version9.gguf", good[:4] + struct.pack("<I", 9) + good[8:], "BB_ERR_FORMAT", "version 9")
    put("huge_string.gguf", good[:24] + struct.pack("<Q", 1 << 60) + good[32:], "BB_ERR_FORMAT", "string length")
    put("huge_tensor_count.gguf", good[:8] + struct.pack("<Q", 1 << 62) + good[16:], "BB_ERR_FORMAT",
        "tensor count")
    put("huge_kv_count.gguf", good[:16] + struct.pack("<Q", 1 << 62) + good[24:], "BB_ERR_FORMAT",
        "metadata key count")
    arch = ("general.architecture", 8, gstr("llama"))
    f32 = gguf.GGMLQuantizationType.F32
    put("misaligned.gguf", raw_gguf([arch], [("a", [8], f32, 4)], data=b"\0" * 64), "BB_ERR_FORMAT",
        "not a multiple of the alignment")
    put("beyond_eof.gguf", raw_gguf([arch], [("a", [8], f32, 0), ("b", [8], f32, 64)], data=b"\0" * 64),
        "BB_ERR_FORMAT", "data section")
    put("overlap.gguf", raw_gguf([arch], [("a", [16], f32, 0), ("b", [8], f32, 32)], data=b"\0" * 96),
        "BB_ERR_FORMAT", "overlap")
    put("duplicate_tensor.gguf", raw_gguf([arch], [("a", [8], f32, 0), ("a", [8], f32, 32)], data=b"\0" * 64),
        "BB_ERR_FORMAT", "appears more than once")
    put("duplicate_key.gguf", raw_gguf([arch, arch], []), "BB_ERR_FORMAT", "appears more than once")
    put("bad_alignment.gguf", raw_gguf([arch, u32kv("general.alignment", 24)], []), "BB_ERR_FORMAT",
        "power of two")
    put("alignment_string.gguf", raw_gguf([arch, ("general.alignment", 8, gstr("32"))], []), "BB_ERR_FORMAT",
        "general.alignment: expected uint32, found string")
    put("bad_type.gguf", raw_gguf([arch], [("a", [8], 4, 0)], data=b"\0" * 32), "BB_ERR_FORMAT",
        "unknown ggml type")
    put("bad_block.gguf", raw_gguf([arch], [("a", [16], gguf.GGMLQuantizationType.Q8_0, 0)], data=b"\0" * 64),
        "BB_ERR_FORMAT", "block size")
    put("deep_array.gguf", raw_gguf([arch, ("x", 9, (struct.pack("<IQ", 9, 1)) * 9 + struct.pack("<IQ", 0, 0))],
                                    []), "BB_ERR_FORMAT", "deeper")
    put("five_dims.gguf", raw_gguf([arch], [("a", [1, 1, 1, 1, 8], f32, 0)], data=b"\0" * 32), "BB_ERR_FORMAT",
        "dimensions")

    # Quantized tensors are decoded at open: a type birdbone has no decoder for is refused, and so is a Q8_0
    # block whose fp16 scale is +Inf (0x7c00; with zero codes it decodes to NaN).
    iq4 = gguf.GGMLQuantizationType.IQ4_NL
    quant = {"blk.0.ffn_down.weight": lambda x: (np.zeros((DIM, HIDDEN // 32 * 18), np.uint8), iq4)}
    write_model(out / "quantized.gguf", "f32", False, tensor_override=quant)
    broken.append("quantized.gguf BB_ERR_UNSUPPORTED has type iq4_nl, which birdbone cannot decode")

    def inf_scale(x):
        b = np.zeros((DIM, HIDDEN // 32 * 34), np.uint8)
        b[1, 0:2] = (0x00, 0x7C)  # row 1, first block
        return (b, gguf.GGMLQuantizationType.Q8_0)
    write_model(out / "q8_inf_scale.gguf", "f32", False, tensor_override={"blk.0.ffn_down.weight": inf_scale})
    broken.append("q8_inf_scale.gguf BB_ERR_FORMAT (q8_0) decodes to a non-finite value (NaN) at row 1, column 0: a block's scale field is damaged")
    write_model(out / "missing_key.gguf", "f32", False, drop_keys=("llama.block_count",))
    broken.append("missing_key.gguf BB_ERR_FORMAT key llama.block_count is missing")
    write_model(out / "wrong_key_type.gguf", "f32", False,
                key_override={"llama.embedding_length": ("sixteen", gguf.GGUFValueType.STRING)})
    broken.append("wrong_key_type.gguf BB_ERR_FORMAT llama.embedding_length: expected an integer, found string")
    write_model(out / "bad_shape.gguf", "f32", False, tensor_override={"blk.1.attn_k.weight": lambda x: x[:4]})
    broken.append("bad_shape.gguf BB_ERR_FORMAT blk.1.attn_k.weight has shape (4, 16) but the config implies (8, 16)")
    write_model(out / "bad_arch.gguf", "f32", False, arch="gpt2")
    broken.append("bad_arch.gguf BB_ERR_UNSUPPORTED general.architecture is \"gpt2\"")
    write_model(out / "partial_rope.gguf", "f32", False,
                key_override={"llama.rope.dimension_count": (2, gguf.GGUFValueType.UINT32)})
    broken.append("partial_rope.gguf BB_ERR_UNSUPPORTED partial rotary")
    bad_freqs = llama3_rope_factors(500000.0, 8.0)
    bad_freqs[0] = 2.0
    write_model(out / "bad_rope_freqs.gguf", "f32", False, theta=500000.0, rope_freqs=bad_freqs)
    broken.append("bad_rope_freqs.gguf BB_ERR_UNSUPPORTED rope_freqs.weight[0] is 2 where Llama-3 rope scaling")
    (out / "broken.txt").write_text("\n".join(broken) + "\n")

    # Valid files the reader must accept: nested arrays and every value type, v2, no tensors.
    allkv = [arch, ("u8", 0, b"\x07"), ("i8", 1, b"\xf9"), ("u16", 2, struct.pack("<H", 700)),
             ("i16", 3, struct.pack("<h", -700)), u32kv("u32", 70000), ("i32", 5, struct.pack("<i", -70000)),
             ("f32", 6, struct.pack("<f", 1.5)), ("bool", 7, b"\x01"), ("str", 8, gstr("hello")),
             ("u64", 10, struct.pack("<Q", 1 << 40)), ("i64", 11, struct.pack("<q", -(1 << 40))),
             ("f64", 12, struct.pack("<d", -2.25)),
             ("nested", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ", 8, 1) + gstr("ab")
              + struct.pack("<IQ", 5, 2) + struct.pack("<ii", -1, 2)),
             ("strs", 9, struct.pack("<IQ", 8, 3) + gstr("x") + gstr("") + gstr("zzz"))]
    (out / "all_types_v2.gguf").write_bytes(raw_gguf(allkv, [], version=2))
    (out / "ggml_types.txt").write_text("".join(f"{int(t)} {t.name} {b} {n}\n"
                                                for t, (b, n) in gguf.GGML_QUANT_SIZES.items()))
    print(f"wrote {len(models) + 1} models, {len(broken)} broken files and all_types_v2.gguf to {out}")


if __name__ == "__main__":
    main()
