#!/usr/bin/env python3
"""make_fuzz_seeds.py — write the seed corpora of fuzz_llama2c and fuzz_tokenizer.

    python3 tests/py/make_fuzz_seeds.py tests/fuzz/seeds

llama2c/: tiny random llama2.c checkpoints (legacy and version 1, shared and
separate classifier, GQA) and a truncated one. tokenizer/: first byte 0x00 +
tokenizer.bin images (a byte-fallback vocabulary with merges, a truncated copy),
first byte 0x01 + text for the fixed-vocabulary round trip.
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_ref import random_model, write_llama2c  # noqa: E402


def tokenizer_image(extra):
    pieces = [(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0)]
    pieces += [(b"<0x%02X>" % b, 0.0) for b in range(256)]
    pieces += extra
    out = struct.pack("<i", max(len(p) for p, _ in pieces))
    for p, s in pieces:
        out += struct.pack("<fi", s, len(p)) + p
    return out


def main():
    root = sys.argv[1]
    l2c, tok = os.path.join(root, "llama2c"), os.path.join(root, "tokenizer")
    os.makedirs(l2c, exist_ok=True)
    os.makedirs(tok, exist_ok=True)
    rng = np.random.default_rng(5)
    for name, version, tied, kv in (("legacy_shared", 0, True, 1), ("legacy_separate", 0, False, 2),
                                    ("v1_shared", 1, True, 1), ("v1_separate", 1, False, 2)):
        cfg, w = random_model(rng, 8, 8, 1, 2, kv, 8, tied=tied)
        cfg["max_seq_len"] = 4
        write_llama2c(os.path.join(l2c, name + ".bin"), cfg, w, version)
    data = open(os.path.join(l2c, "legacy_shared.bin"), "rb").read()
    open(os.path.join(l2c, "truncated.bin"), "wb").write(data[:100])
    merges = [(b" ", -1.0), (b"a", -1.0), (b"b", -1.0), (b"ab", 2.0), (b" ab", 1.0), (b"\xc3\xa9", -3.0)]
    img = tokenizer_image(merges)
    open(os.path.join(tok, "file_bytes_merges.bin"), "wb").write(b"\x00" + img)
    open(os.path.join(tok, "file_truncated.bin"), "wb").write(b"\x00" + img[:700])
    texts = {"text_story": "Once upon a time, there was a little girl named Lily.",
             "text_utf8": "caf\u00e9 \u201cquoted\u201d \u2603 the and an",
             "text_spaces": "  leading spaces and a tab\there\n"}
    for name, t in texts.items():
        open(os.path.join(tok, name + ".txt"), "wb").write(b"\x01" + t.encode())
    open(os.path.join(tok, "text_bytes.bin"), "wb").write(b"\x01" + bytes(range(1, 256)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
