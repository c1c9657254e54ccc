#!/usr/bin/env python3
"""make_hf_fixtures.py — tiny Hugging Face model directories for the reader tests.

Usage: make_hf_fixtures.py OUTDIR [--seeds SEEDDIR]

Writes into OUTDIR:
  good/<name>/     models that must open (config.json, safetensors weights, ...)
  broken/<name>/   models that must fail with a given status and message
  reference.json   for each good model the config values bb_model_open must
                   produce and, per canonical tensor, shape, dtype, the first
                   values and the float64 sum of all values (as stored, i.e.
                   after rounding to f16/bf16); for each broken model the
                   expected status name and a substring of the message.
With --seeds, also writes small valid .safetensors files for the fuzzer.

Needs numpy and the `safetensors` package. bf16 files are written by hand
(numpy has no bf16), which also lets the broken variants corrupt any field.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np
from safetensors.numpy import save_file

BASE = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 40,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 32,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}

LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}

ST_DTYPE = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int32: "I32", np.int8: "I8", np.uint8: "U8"}


def canonical(name):
    if name == "lm_head.weight":
        return "output.weight"
    if name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if name == "model.norm.weight":
        return "output_norm.weight"
    parts = name.split(".", 3)  # model, layers, N, rest
    if len(parts) == 4 and parts[1] == "layers" and parts[3] in LAYER_MAP:
        return "blk.%s.%s" % (parts[2], LAYER_MAP[parts[3]])
    return None


def make_weights(cfg, rng, bias=False, lm_head=True):
    """HF tensors of a model with config cfg, float32, in a fixed order."""
    d, h, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim", d // nh)
    w = {"model.embed_tokens.weight": rng.standard_normal((v, d))}
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        w[p + "input_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
        w[p + "self_attn.q_proj.weight"] = rng.standard_normal((nh * hd, d))
        w[p + "self_attn.k_proj.weight"] = rng.standard_normal((nkv * hd, d))
        w[p + "self_attn.v_proj.weight"] = rng.standard_normal((nkv * hd, d))
        if bias:
            w[p + "self_attn.q_proj.bias"] = rng.standard_normal(nh * hd)
            w[p + "self_attn.k_proj.bias"] = rng.standard_normal(nkv * hd)
            w[p + "self_attn.v_proj.bias"] = rng.standard_normal(nkv * hd)
        w[p + "self_attn.o_proj.weight"] = rng.standard_normal((d, nh * hd))
        w[p + "post_attention_layernorm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
        w[p + "mlp.gate_proj.weight"] = rng.standard_normal((h, d))
        w[p + "mlp.up_proj.weight"] = rng.standard_normal((h, d))
        w[p + "mlp.down_proj.weight"] = rng.standard_normal((d, h))
    w["model.norm.weight"] = 1.0 + 0.1 * rng.standard_normal(d)
    if lm_head:
        w["lm_head.weight"] = rng.standard_normal((v, d))
    return {k: (0.1 * a).astype(np.float32) for k, a in w.items()}


def to_bf16_bits(a):
    """float32 -> bf16 bit patterns, round to nearest even (no NaNs here)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_raw(path, entries, metadata=None, header_edit=None, pad=True):
    """Write a safetensors file by hand. entries: list of (name, dtype, shape,
    bytes). header_edit(dict) may corrupt the header before it is written."""
    header, off = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    if header_edit:
        header_edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in entries:
            f.write(data)


def raw_entries(w, dtype):
    out = []
    for k, a in w.items():
        if dtype == "BF16":
            out.append((k, "BF16", a.shape, to_bf16_bits(a).tobytes()))
        else:
            out.append((k, ST_DTYPE[a.dtype.type], a.shape, a.tobytes()))
    return out


def stored_values(w, dtype):
    """The values the reader must see, as float32."""
    if dtype == "F16":
        return {k: a.astype(np.float16).astype(np.float32) for k, a in w.items()}
    if dtype == "BF16":
        return {k: bf16_bits_to_f32(to_bf16_bits(a)) for k, a in w.items()}
    return w


def ref_config(cfg, n_files, tied, has_tokenizer):
    nh = cfg["num_attention_heads"]
    rs = cfg.get("rope_scaling") or {}
    rtype = rs.get("rope_type", rs.get("type", "none"))
    eos = cfg.get("eos_token_id", -1)
    if isinstance(eos, list):
        eos = eos[0]
    return {
        "arch": cfg.get("model_type", "llama"),
        "dim": cfg["hidden_size"],
        "hidden_dim": cfg["intermediate_size"],
        "n_layers": cfg["num_hidden_layers"],
        "n_heads": nh,
        "n_kv_heads": cfg.get("num_key_value_heads", nh),
        "head_dim": cfg.get("head_dim", cfg["hidden_size"] // nh),
        "vocab_size": cfg["vocab_size"],
        "max_seq_len": cfg["max_position_embeddings"],
        "norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg.get("rope_theta", 10000.0),
        "rope_scaling": rtype if rtype != "default" else "none",
        "rope_factor": rs.get("factor", 0.0),
        "rope_low_freq_factor": rs.get("low_freq_factor", 0.0),
        "rope_high_freq_factor": rs.get("high_freq_factor", 0.0),
        "rope_orig_max_pos": rs.get("original_max_position_embeddings", 0),
        "tied_embeddings": int(tied),
        "attn_bias": int(cfg.get("model_type") == "qwen2" or cfg.get("attention_bias", False)),
        "bos_id": -1 if cfg.get("bos_token_id") is None else cfg["bos_token_id"],
        "eos_id": eos,
        "n_files": n_files,
        "has_tokenizer": int(has_tokenizer),
    }


def ref_tensors(vals, tied):
    out = {}
    for k, a in vals.items():
        c = canonical(k)
        if c is None:
            continue
        out[c] = {
            "shape": list(a.shape),
            "sum": float(a.astype(np.float64).sum()),
            "first": [float(x) for x in a.reshape(-1)[:4]],
            "last": float(a.reshape(-1)[-1]),
        }
    if tied:
        out["output.weight"] = dict(out["token_embd.weight"])
    return out


def write_config(d, cfg):
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def good_model(root, ref, name, cfg, rng, dtype="F32", bias=False, tied=False, shards=None, extra=None,
               tokenizer=False):
    d = os.path.join(root, "good", name)
    os.makedirs(d)
    write_config(d, cfg)
    w = make_weights(cfg, rng, bias=bias, lm_head=not tied)
    vals = stored_values(w, dtype)
    files = dict(w)
    if extra:
        files.update(extra)
    if dtype == "F16":
        files = {k: a.astype(np.float16) if a.dtype == np.float32 else a for k, a in files.items()}
    if dtype == "BF16":
        write_raw(os.path.join(d, "model.safetensors"), raw_entries(files, "BF16"), metadata={"format": "pt"})
        n_files = 1
    elif shards:
        names = list(files)
        cut = shards
        parts = [names[:cut], names[cut:]]
        wm = {}
        for i, part in enumerate(parts):
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(parts))
            save_file({k: files[k] for k in part}, os.path.join(d, fn), metadata={"format": "pt"})
            for k in part:
                wm[k] = fn
        index = {"metadata": {"total_size": sum(a.nbytes for a in files.values())}, "weight_map": wm}
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
        n_files = len(parts)
    else:
        save_file(files, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        n_files = 1
    if tokenizer:
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}, f)
    ref["models"][name] = {
        "config": ref_config(cfg, n_files, tied, tokenizer),
        "dtype": {"F32": "f32", "F16": "f16", "BF16": "bf16"}[dtype],
        "tensors": ref_tensors(vals, tied),
    }
    return d


def broken_model(root, ref, name, status, needle, cfg=None, weights=None, raw=None, header_edit=None,
                 config_text=None, truncate=0, header_len=None, files=None):
    """A broken directory: cfg -> config.json (or config_text verbatim);
    weights -> model.safetensors written by hand (header_edit, truncate bytes
    off the end, or a forged header length); files: extra {name: bytes}."""
    d = os.path.join(root, "broken", name)
    os.makedirs(d)
    if config_text is not None:
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(config_text)
    elif cfg is not None:
        write_config(d, cfg)
    if weights is not None or raw is not None:
        p = os.path.join(d, "model.safetensors")
        write_raw(p, raw if raw is not None else raw_entries(weights, "F32"), header_edit=header_edit)
        data = open(p, "rb").read()
        if truncate:
            data = data[:-truncate]
        if header_len is not None:
            data = struct.pack("<Q", header_len) + data[8:]
        with open(p, "wb") as f:
            f.write(data)
    for fn, content in (files or {}).items():
        with open(os.path.join(d, fn), "wb") as f:
            f.write(content)
    ref["broken"][name] = {"status": status, "needle": needle}


def make_all(root, seeds):
    rng = np.random.default_rng(20261126)
    ref = {"models": {}, "broken": {}}
    for sub in ("good", "broken"):
        shutil.rmtree(os.path.join(root, sub), ignore_errors=True)

    good_model(root, ref, "llama_f32", dict(BASE), rng, tokenizer=True,
               extra={"model.layers.0.self_attn.rotary_emb.inv_freq": np.arange(2, dtype=np.float32)})
    c = dict(BASE, torch_dtype="float16", rope_scaling={"type": "linear", "factor": 2.0})
    good_model(root, ref, "llama_f16", c, rng, dtype="F16")
    good_model(root, ref, "llama_bf16", dict(BASE, torch_dtype="bfloat16"), rng, dtype="BF16")
    c = dict(BASE, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=4096)
    c.pop("num_key_value_heads")
    good_model(root, ref, "mistral_sharded", c, rng, shards=7)
    good_model(root, ref, "llama_tied", dict(BASE, tie_word_embeddings=True), rng, tied=True)
    c = dict(BASE, model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True,
             rope_theta=1000000.0, rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=[3, 4], use_sliding_window=False)
    good_model(root, ref, "qwen2_bias", c, rng, bias=True, tied=True)
    c = dict(BASE, rope_theta=500000.0, head_dim=8, num_attention_heads=2, num_key_value_heads=1,
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192},
             eos_token_id=[2, 5])
    c.pop("model_type")
    good_model(root, ref, "llama3_rope", c, rng)

    w = make_weights(BASE, rng)
    FMT, IO, UNS = "bad file format", "I/O error", "unsupported"
    broken_model(root, ref, "truncated_shard", FMT, "(file truncated?)", cfg=BASE, weights=w, truncate=100)
    broken_model(root, ref, "header_beyond_file", FMT, "goes beyond the", cfg=BASE, weights=w, header_len=1 << 20)
    broken_model(root, ref, "header_over_limit", FMT, "exceeds the limit", cfg=BASE, weights=w,
                 header_len=200000000)

    # A raw control character inside a string: invalid JSON, reported with line:column.
    broken_model(root, ref, "header_invalid_json", FMT, "", cfg=BASE,
                 raw=[(k, "F32", a.shape, a.tobytes()) for k, a in w.items()])
    p = os.path.join(root, "broken", "header_invalid_json", "model.safetensors")
    data = bytearray(open(p, "rb").read())
    at = data.index(b'"dtype"')
    data[at + 1] = 0x01
    open(p, "wb").write(bytes(data))
    col = at + 1 - 8 + 1  # the header starts after the 8-byte length; columns are 1-based
    ref["broken"]["header_invalid_json"]["needle"] = "model.safetensors header:1:%d: expected a string character" % col

    def overlap(h):
        a = h["model.layers.0.self_attn.k_proj.weight"]["data_offsets"]
        b = h["model.layers.0.self_attn.v_proj.weight"]["data_offsets"]
        h["model.layers.0.self_attn.v_proj.weight"]["data_offsets"] = [a[0] + 4, b[1] - b[0] + a[0] + 4]

    broken_model(root, ref, "overlapping_offsets", FMT, "overlap", cfg=BASE, weights=w, header_edit=overlap)

    def beyond(h):
        o = h["model.norm.weight"]["data_offsets"]
        h["model.norm.weight"]["data_offsets"] = [o[0] + 1000000, o[1] + 1000000]

    broken_model(root, ref, "offsets_beyond_data", FMT, "end beyond the", cfg=BASE, weights=w, header_edit=beyond)

    def mismatch(h):
        h["model.layers.1.mlp.up_proj.weight"]["shape"] = [40, 15]

    broken_model(root, ref, "dtype_shape_mismatch", FMT, "needs 2400 bytes but data_offsets", cfg=BASE, weights=w,
                 header_edit=mismatch)

    def unknown_dtype(h):
        h["model.norm.weight"]["dtype"] = "Q4"

    broken_model(root, ref, "unknown_dtype", FMT, "unknown dtype \"Q4\"", cfg=BASE, weights=w,
                 header_edit=unknown_dtype)

    def negative_dim(h):
        h["model.norm.weight"]["shape"] = [-16]

    broken_model(root, ref, "negative_shape", FMT, "shape entry 0 is -16, expected a non-negative integer", cfg=BASE, weights=w, header_edit=negative_dim)

    w2 = dict(w)
    w2["model.layers.0.self_attn.q_proj.weight"] = w["model.layers.0.self_attn.q_proj.weight"][:8]
    broken_model(root, ref, "shape_vs_config", FMT, "blk.0.attn_q.weight has shape (8, 16) but the config implies (16, 16)",
                 cfg=BASE, weights=w2)

    w3 = {k: a for k, a in w.items() if k != "model.layers.1.mlp.up_proj.weight"}
    broken_model(root, ref, "missing_tensor", FMT, "model.layers.1.mlp.up_proj.weight (blk.1.ffn_up.weight) is missing",
                 cfg=BASE, weights=w3)

    w4 = dict(w, **{"model.layers.2.mlp.up_proj.weight": w["model.layers.1.mlp.up_proj.weight"]})
    broken_model(root, ref, "layer_out_of_range", FMT, "layer 2 is out of range", cfg=BASE, weights=w4)

    w5 = dict(w, **{"model.layers.0.self_attn.q_proj.bias": np.zeros(16, np.float32)})
    broken_model(root, ref, "unexpected_bias", FMT, "does not set attention_bias", cfg=BASE, weights=w5)

    c = dict(BASE)
    c.pop("hidden_size")
    broken_model(root, ref, "config_missing_key", FMT, "config.json: required key \"hidden_size\" is missing", cfg=c,
                 weights=w)
    broken_model(root, ref, "config_wrong_type", FMT, "key \"num_attention_heads\" is a string, expected an integer",
                 cfg=dict(BASE, num_attention_heads="4"), weights=w)
    broken_model(root, ref, "config_fraction", FMT, "key \"vocab_size\" is a number with a fraction",
                 cfg=dict(BASE, vocab_size=32.5), weights=w)
    broken_model(root, ref, "config_invalid_json", FMT, "config.json:3:3: expected ',' or '}' after an object member",
                 config_text='{\n  "model_type": "llama"\n  "hidden_size": 16\n}\n', weights=w)
    broken_model(root, ref, "config_bad_rope_scaling", UNS, "rope_scaling type \"yarn\" is not supported",
                 cfg=dict(BASE, rope_scaling={"rope_type": "yarn", "factor": 4.0}), weights=w)
    broken_model(root, ref, "config_llama3_missing_factor", FMT, "\"rope_scaling.low_freq_factor\" is missing",
                 cfg=dict(BASE, rope_scaling={"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 8192}), weights=w)
    broken_model(root, ref, "unsupported_model_type", UNS, "model_type \"gpt2\"",
                 cfg=dict(BASE, model_type="gpt2", architectures=["GPT2LMHeadModel"]), weights=w)
    broken_model(root, ref, "no_weights", IO, "no model.safetensors", cfg=BASE)
    broken_model(root, ref, "no_config", IO, "config.json", weights=w)

    names = list(w)
    wm = {k: "model-00001-of-00002.safetensors" for k in names[:5]}
    wm.update({k: "model-00002-of-00002.safetensors" for k in names[5:]})
    idx = json.dumps({"metadata": {}, "weight_map": wm}).encode()
    broken_model(root, ref, "index_missing_shard", IO, "names shard model-00002-of-00002.safetensors, which does not exist",
                 cfg=BASE, files={"model.safetensors.index.json": idx})
    p = os.path.join(root, "broken", "index_missing_shard", "model-00001-of-00002.safetensors")
    save_file({k: w[k] for k in names[:5]}, p)

    d = "index_tensor_absent"
    broken_model(root, ref, d, FMT, "but that shard has no such tensor", cfg=BASE,
                 files={"model.safetensors.index.json": idx})
    save_file({k: w[k] for k in names[:4]}, os.path.join(root, "broken", d, "model-00001-of-00002.safetensors"))
    save_file({k: w[k] for k in names[4:]}, os.path.join(root, "broken", d, "model-00002-of-00002.safetensors"))

    bad = json.dumps({"weight_map": {names[0]: "../elsewhere.safetensors"}}).encode()
    broken_model(root, ref, "index_path_escape", FMT, "expected a file name in the model directory", cfg=BASE,
                 files={"model.safetensors.index.json": bad})

    with open(os.path.join(root, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)

    if seeds:
        os.makedirs(seeds, exist_ok=True)
        tiny = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, np.float16),
                "c": np.array([1, -2], np.int8)}
        save_file(tiny, os.path.join(seeds, "tiny.safetensors"), metadata={"format": "pt"})
        write_raw(os.path.join(seeds, "bf16_scalar.safetensors"),
                  [("s", "BF16", (), to_bf16_bits(np.array([1.5], np.float32)).tobytes()),
                   ("e", "F32", (0, 4), b""), ("m", "BOOL", (3,), b"\x01\x00\x01")], metadata={"k": "v"})
        small = make_weights(dict(BASE, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, vocab_size=4), rng)
        save_file({k: a.astype(np.float16) for k, a in small.items()}, os.path.join(seeds, "llama_tiny.safetensors"))


def main():
    args = sys.argv[1:]
    seeds = None
    if "--seeds" in args:
        i = args.index("--seeds")
        seeds = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit(__doc__)
    os.makedirs(args[0], exist_ok=True)
    make_all(args[0], seeds)


if __name__ == "__main__":
    main()
