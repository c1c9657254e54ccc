#!/usr/bin/env python3
"""check_export_gguf.py — the gguf package's view of the GGUF files unit.export writes.

Usage: check_export_gguf.py DIR

For every exported file: the llama architecture keys llama.cpp reads are present with the model's values,
general.file_type matches the dominant linear type, the tensors have the expected types (stories260K: token_embd
and norms F32, linear weights in the requested type, ffn_down F16 because 172-wide rows fit no 32-element
block, no output.weight since the model is tied), the llama2.c vocabulary is in SentencePiece form (U+2581 for
spaces, byte tokens type 6, BOS/EOS type 3), and every quantized tensor dequantizes (gguf.quants) to finite
values. Exit 77 (skipped) without the gguf package.
"""
import os
import sys

try:
    import numpy as np
    import gguf
    from gguf.quants import dequantize
except ImportError:
    print("skipped: the gguf and numpy packages are not installed (pip install gguf)")
    sys.exit(77)

failures = 0


def expect(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL", msg)


def field(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    v = f.contents()
    return v


def check_stories(path, linear_type, file_type):
    r = gguf.GGUFReader(path)
    name = os.path.basename(path)
    expect(field(r, "general.architecture") == "llama", f"{name}: architecture")
    want = {"llama.context_length": 512, "llama.embedding_length": 64, "llama.block_count": 5,
            "llama.feed_forward_length": 172, "llama.attention.head_count": 8, "llama.attention.head_count_kv": 4,
            "llama.rope.dimension_count": 8, "llama.vocab_size": 512, "general.file_type": file_type,
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    for k, v in want.items():
        expect(field(r, k) == v, f"{name}: {k} = {field(r, k)}, expected {v}")
    expect(abs(field(r, "llama.attention.layer_norm_rms_epsilon") - 1e-5) < 1e-9, f"{name}: rms epsilon")
    expect(field(r, "llama.rope.freq_base") == 10000.0, f"{name}: rope freq_base")
    expect(field(r, "tokenizer.ggml.model") == "llama", f"{name}: tokenizer model")
    expect(field(r, "tokenizer.ggml.add_bos_token") is True, f"{name}: add_bos_token")
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    scores = field(r, "tokenizer.ggml.scores")
    expect(len(tokens) == 512 and len(types) == 512 and len(scores) == 512, f"{name}: vocabulary size")
    expect(tokens[:3] == ["<unk>", "<s>", "</s>"] and types[:3] == [2, 3, 3], f"{name}: control tokens {tokens[:3]}")
    expect(tokens[3 + 0x41] == "<0x41>" and types[3 + 0x41] == 6, f"{name}: byte token <0x41>")
    expect(all(" " not in t for t in tokens), f"{name}: a token holds a plain space")
    expect(any(t.startswith("\u2581") for t in tokens), f"{name}: no token starts with U+2581")
    tensors = {t.name: t for t in r.tensors}
    expect("output.weight" not in tensors, f"{name}: tied model carries output.weight")
    for n, t in tensors.items():
        if n.endswith("norm.weight") or n == "token_embd.weight":
            want_t = "F32"
        elif n.endswith("ffn_down.weight") and linear_type != "F32":
            want_t = "F16"
        else:
            want_t = linear_type
        expect(t.tensor_type.name == want_t, f"{name}: {n} is {t.tensor_type.name}, expected {want_t}")
        x = dequantize(t.data, t.tensor_type)
        expect(np.all(np.isfinite(x)), f"{name}: {n} dequantizes to non-finite values")
    expect(len(tensors) == 2 + 5 * 9, f"{name}: {len(tensors)} tensors")
    print(f"ok   {name}: {len(r.fields)} keys, {len(tensors)} tensors")


d = sys.argv[1]
check_stories(os.path.join(d, "stories260k_f32.gguf"), "F32", 0)
check_stories(os.path.join(d, "stories260k_q8_0.gguf"), "Q8_0", 7)
check_stories(os.path.join(d, "stories260k_q4_0.gguf"), "Q4_0", 2)
check_stories(os.path.join(d, "stories260k_q4_1.gguf"), "Q4_1", 3)
print(f"{failures} failed")
sys.exit(1 if failures else 0)
