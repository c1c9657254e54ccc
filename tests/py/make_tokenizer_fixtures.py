#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — tiny tokenizer.json files trained with the `tokenizers` package,
the same vocabularies as GGUF files (`gguf` package) and as a llama2.c tokenizer.bin, and the
reference ids the `tokenizers` package gives for a set of texts.

Usage: make_tokenizer_fixtures.py OUTDIR            fixtures for tests/unit/test_tokenizer_hf.c
       make_tokenizer_fixtures.py --seeds OUTDIR    small tokenizer.json files for the fuzz seeds

Training text is $BB_SHARED/data/tinystories/calib.txt (never dev.txt); dev.txt lines are only
encoded for reference ids. Kinds written:
  spm.json        SentencePiece-style BPE (Llama-2): Prepend+Replace normalizer, byte fallback,
                  merges as "a b" strings, decoder Replace/ByteFallback/Fuse/Strip
  spm_bare.json   spm.json without the dummy prefix (no Prepend, no Strip); spm_bare.gguf has
                  add_space_prefix = false
  spm_meta.json   the same vocabulary with the legacy Metaspace pre-tokenizer/decoder and
                  merges as ["a", "b"] arrays
  spm_added.json  spm.json with a splitting Metaspace and added tokens using single_word,
                  normalized, lstrip and rstrip
  bl_llama3.json  byte-level BPE (Llama-3): Split with the Llama-3 regex, ByteLevel, ignore_merges
  bl_split.json   bl_llama3.json split on spaces (String pattern, Removed), ByteLevel adding a prefix space
  bl_merged_with_previous.json, bl_merged_with_next.json, bl_contiguous.json   the other Split behaviors
  bl_digits.json, bl_digit_runs.json   the Digits pre-tokenizer (individual_digits true / false)
  bl_qwen2.json   byte-level BPE with the Qwen2 regex, NFC and no BOS
  bl_gpt2.json    byte-level BPE with ByteLevel's own (GPT-2) regex and an lstrip/rstrip added token
  spm.gguf, bl_llama3.gguf, bl_qwen2.gguf, bl_gpt2.gguf   the vocabularies as GGUF (tokenizer.ggml.*)
  spm.bin         the SentencePiece vocabulary as a llama2.c tokenizer.bin
  tokmodel.gguf   a tiny llama model whose GGUF carries the bl_llama3 vocabulary
  reference.json  {"tokenizers": [{"name", "file", "gguf", "lossless", "cases": [{"text", "ids",
                  "ids_special", "decoded", "added", "stripping"}], "big": {"ids_sha256", "count"}}]}
  broken/*.json + broken.txt   corrupt files: "<file> <status> <words in the message>"
"""
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

try:
    import numpy as np
    import gguf
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
except ImportError as e:  # the C test skips (exit 77) on this marker; scripts/setup.sh installs them
    if len(sys.argv) == 2:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        (Path(sys.argv[1]) / "missing_packages.txt").write_text(f"{e.name} (pip install numpy gguf tokenizers)\n")
    print(f"make_tokenizer_fixtures.py: missing Python package {e.name}", file=sys.stderr)
    sys.exit(0 if len(sys.argv) == 2 else 1)

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPM_SPECIAL = ["<unk>", "<s>", "</s>"]
BL_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]

EXTRA_TEXTS = [
    "", " ", "  ", "Hello world", " Hello world", "Hello  world   ", "\n", "a\n\nb\r\nc\t\td",
    "héllo wörld, ça va? naïve café", "日本語のテキストです。", "Привет, мир!", "👋🏽 family 👨‍👩‍👧 ok",
    "12345 3.14159 1,000,000 and 42nd 007", "I'm sure you'll see they'd DON'T we've", "x = f(a[0], b->c); // done",
    "   leading and trailing   ", "tab\there\n\n\n  spaces   \n", "<s>Hello</s> world", "a<s>b</s>c",
    "<|begin_of_text|>Once upon a time<|end_of_text|>", "x<|eot_id|>y <|eot_id|> z", "Lily said: \"Hi!\"",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "the the the the", "<sep> in <sep>the middle <sep>",
    "\u00a0non-breaking\u2003em space", "emoji🙂🙂🙂 mixed", "Ωmega ∑ ∞ → ✓",
    "a story, storyteller, the story.", "story", "  Lily  and\tLily<sep>  x", "bestory story_x",
]


def shared():
    return Path(os.environ.get("BB_SHARED") or Path(__file__).resolve().parents[3] / "shared")


def train_lines(limit=None):
    lines = [l for l in (shared() / "data/tinystories/calib.txt").read_text().splitlines() if l.strip()]
    return lines[:limit] if limit else lines


def byte_tokens():
    return [f"<0x{b:02X}>" for b in range(256)]


def train_spm(vocab_size, lines):
    """A SentencePiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, then trained pieces."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False))
    trained = json.loads(tok.to_str())["model"]
    pieces = sorted(trained["vocab"], key=trained["vocab"].get)
    vocab = {p: i for i, p in enumerate(SPM_SPECIAL + byte_tokens())}
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    merges = [m if isinstance(m, list) else m.split(" ") for m in trained["merges"]]
    return vocab, merges


def spm_tokenizer(vocab, merges, legacy, prefix=True):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m) for m in merges], unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True))
    if legacy:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        # without the dummy prefix (GGUF add_space_prefix = false) nothing is prepended or stripped
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁")] * prefix + [normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()] +
                                        [decoders.Strip(" ", 1, 0)] * prefix)
    tok.add_special_tokens(SPM_SPECIAL)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def train_bytelevel(vocab_size, lines, llama3, qwen2=False):
    """Byte-level BPE: Llama 3 (its regex, ignore_merges, a BOS template), Qwen2 (its regex, NFC,
    no BOS) or GPT-2 (ByteLevel's own regex)."""
    tok = Tokenizer(models.BPE(ignore_merges=llama3))
    if llama3 or qwen2:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE if qwen2 else LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    if llama3:
        tok.add_special_tokens(BL_SPECIAL)
        # as Llama 3 writes it: ByteLevel (offsets only) then the BOS template
        tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])])
    elif qwen2:
        tok.normalizer = normalizers.NFC()
        tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.add_special_tokens(["<|endoftext|>"])
        tok.add_tokens([AddedToken("<sep>", lstrip=True, rstrip=True, normalized=False)])
    return tok


def to_json_merges_as_strings(tok):
    d = json.loads(tok.to_str())
    d["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    return json.dumps(d, ensure_ascii=False, indent=1)


def token_table(tok):
    """Id-ordered pieces of the whole vocabulary (model and added tokens)."""
    v = tok.get_vocab(with_added_tokens=True)
    pieces = [None] * (max(v.values()) + 1)
    for p, i in v.items():
        pieces[i] = p
    assert None not in pieces
    return pieces


def write_gguf_spm(path, tok, merges, prefix=True):
    """llama.cpp's "llama" vocabulary: scores make the merge order (a merge's result scores -rank)."""
    pieces = token_table(tok)
    rank = {}
    for r, (a, b) in enumerate(merges):
        rank.setdefault(a + b, r)
    n = len(merges)
    scores = [-float(rank[p]) if p in rank else -float(n + i) for i, p in enumerate(pieces)]
    types = []
    for p in pieces:
        if p == "<unk>":
            types.append(gguf.TokenType.UNKNOWN)
        elif p in SPM_SPECIAL:
            types.append(gguf.TokenType.CONTROL)
        elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return pieces, scores


def write_gguf_bl(path, tok, pre, arch_writer=None):
    d = json.loads(tok.to_str())
    pieces = token_table(tok)
    added = {t["content"]: t for t in d["added_tokens"]}
    types = [gguf.TokenType.CONTROL if p in added and added[p]["special"] else
             gguf.TokenType.USER_DEFINED if p in added else gguf.TokenType.NORMAL for p in pieces]
    merges = [" ".join(m) if isinstance(m, list) else m for m in d["model"]["merges"]]
    w = arch_writer or gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(pieces)
    w.add_token_types(types)
    w.add_token_merges(merges)
    if "<|begin_of_text|>" in added:
        w.add_bos_token_id(added["<|begin_of_text|>"]["id"])
        w.add_eos_token_id(added["<|end_of_text|>"]["id"])
        w.add_add_bos_token(True)
    else:
        w.add_bos_token_id(added["<|endoftext|>"]["id"])
        w.add_eos_token_id(added["<|endoftext|>"]["id"])
        w.add_add_bos_token(False)
    if arch_writer is None:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return len(pieces)


def write_model_gguf(path, tok):
    """A tiny llama model (random weights) whose vocabulary is tok's."""
    n_vocab = len(token_table(tok))
    dim, hidden, heads, kv = 16, 32, 4, 2
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(dim)
    w.add_block_count(1)
    w.add_feed_forward_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    write_gguf_bl(None, tok, "llama-bpe", arch_writer=w)
    hd = dim // heads
    shapes = {"token_embd.weight": (n_vocab, dim), "output_norm.weight": (dim,),
              "blk.0.attn_norm.weight": (dim,), "blk.0.attn_q.weight": (heads * hd, dim),
              "blk.0.attn_k.weight": (kv * hd, dim), "blk.0.attn_v.weight": (kv * hd, dim),
              "blk.0.attn_output.weight": (dim, heads * hd), "blk.0.ffn_norm.weight": (dim,),
              "blk.0.ffn_gate.weight": (hidden, dim), "blk.0.ffn_up.weight": (hidden, dim),
              "blk.0.ffn_down.weight": (dim, hidden)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_llama2c_bin(path, pieces, scores):
    """llama2.c's export: "▁" becomes " ", BOS/EOS are "\\n<s>\\n" / "\\n</s>\\n"."""
    out = []
    for p in pieces:
        if p == "<s>":
            p = "\n<s>\n"
        elif p == "</s>":
            p = "\n</s>\n"
        out.append(p.replace("▁", " ").encode())
    blob = bytearray(struct.pack("<i", max(len(b) for b in out)))
    for b, s in zip(out, scores):
        blob += struct.pack("<fi", s, len(b)) + b
    Path(path).write_bytes(bytes(blob))


def texts():
    dev = [l for l in (shared() / "data/tinystories/dev.txt").read_text().splitlines()][:150]
    return EXTRA_TEXTS + dev


def reference(name, file, tok, lossless, gguf_file, big_text):
    """Per text: ids without and with the post-processor's special tokens, the decoded text
    (special tokens skipped); "added": the text holds an added token (so it cannot round-trip);
    "stripping": it holds one with lstrip/rstrip, which GGUF cannot express."""
    added = tok.get_added_tokens_decoder().values()
    cases = []
    for t in texts():
        e = tok.encode(t, add_special_tokens=False).ids
        cases.append({"text": t, "ids": e, "ids_special": tok.encode(t, add_special_tokens=True).ids,
                      "decoded": tok.decode(e, skip_special_tokens=True),
                      "added": any(a.content in t for a in added),
                      "stripping": any(a.content in t and (a.lstrip or a.rstrip) for a in added)})
    big = tok.encode(big_text, add_special_tokens=False).ids
    digest = hashlib.sha256(np.asarray(big, dtype="<i4").tobytes()).hexdigest()
    return {"name": name, "file": file, "gguf": gguf_file, "lossless": lossless, "cases": cases,
            "big": {"ids_sha256": digest, "count": len(big)}}


def write_broken(out, good):
    b = out / "broken"
    b.mkdir(exist_ok=True)
    d = json.loads(good)
    rows = []

    def put(name, text, status, words):
        (b / name).write_text(text)
        rows.append(f"broken/{name} {status} {words}")

    put("invalid.json", good[: len(good) // 2], "BB_ERR_FORMAT", "invalid.json")
    x = json.loads(good)
    x["model"]["type"] = "Unigram"
    put("unigram.json", json.dumps(x), "BB_ERR_UNSUPPORTED", "Unigram")
    x = json.loads(good)
    x["model"]["merges"].append("Ġzz qq")
    put("bad_merge.json", json.dumps(x), "BB_ERR_FORMAT", "zz")
    x = json.loads(good)
    x["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(?<unclosed"
    put("bad_regex.json", json.dumps(x), "BB_ERR_FORMAT", "regex")
    x = json.loads(good)
    del x["model"]["vocab"]
    put("no_vocab.json", json.dumps(x), "BB_ERR_FORMAT", "vocab")
    x = json.loads(good)
    x["model"]["merges"][3] = "onlyone"
    put("merge_one_part.json", json.dumps(x), "BB_ERR_FORMAT", "merge")
    x = json.loads(good)
    x["normalizer"] = {"type": "Lowercase"}
    put("lowercase.json", json.dumps(x), "BB_ERR_UNSUPPORTED", "Lowercase")
    x = json.loads(good)
    x["added_tokens"][0]["id"] = -4
    put("bad_added_id.json", json.dumps(x), "BB_ERR_FORMAT", "id")
    (out / "broken.txt").write_text("\n".join(rows) + "\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        lines = train_lines(400)
        vocab, merges = train_spm(259 + 48, lines)
        (out / "spm.json").write_text(spm_tokenizer(vocab, merges, False).to_str())
        (out / "spm_meta.json").write_text(spm_tokenizer(vocab, merges, True).to_str())
        small = train_bytelevel(256 + 40, lines, True)
        (out / "bl_llama3.json").write_text(to_json_merges_as_strings(small))
        small.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[ ,.!?\n]"), behavior="merged_with_previous", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
        (out / "bl_merged.json").write_text(small.to_str())
        (out / "bl_gpt2.json").write_text(train_bytelevel(256 + 40, lines, False).to_str())
        extra = spm_tokenizer(vocab, merges, False)
        extra.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
        extra.add_tokens([AddedToken("he", single_word=True, normalized=True), AddedToken("Lily", lstrip=True),
                          AddedToken("<sep>", rstrip=True, normalized=False)])
        (out / "spm_added.json").write_text(extra.to_str())
        return 0
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "missing_packages.txt").unlink(missing_ok=True)
    lines = train_lines()
    with open(shared() / "data/tinystories/dev.txt", newline="") as f:  # bytes as they are: no \r\n -> \n
        big_text = f.read()
    (out / "big.txt").write_text(big_text)
    refs = []

    vocab, merges = train_spm(1200, lines)
    spm = spm_tokenizer(vocab, merges, False)
    spm_json = to_json_merges_as_strings(spm)
    (out / "spm.json").write_text(spm_json)
    pieces, scores = write_gguf_spm(out / "spm.gguf", spm, merges)
    write_llama2c_bin(out / "spm.bin", pieces, scores)
    refs.append(reference("spm", "spm.json", Tokenizer.from_str(spm_json), True, "spm.gguf", big_text))
    bare = spm_tokenizer(vocab, merges, False, prefix=False)
    (out / "spm_bare.json").write_text(bare.to_str())
    write_gguf_spm(out / "spm_bare.gguf", bare, merges, prefix=False)
    refs.append(reference("spm_bare", "spm_bare.json", bare, True, "spm_bare.gguf", big_text))
    meta = spm_tokenizer(vocab, merges, True)
    (out / "spm_meta.json").write_text(meta.to_str())
    # prepend_scheme "first" adds no "▁" to a text that starts with a space, yet decoding strips one
    refs.append(reference("spm_meta", "spm_meta.json", meta, False, "", big_text))

    # added tokens with every matching option: single_word on the normalized text, lstrip, rstrip
    extra = spm_tokenizer(vocab, merges, False)
    extra.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    extra.add_tokens([AddedToken("story", single_word=True, normalized=True),
                      AddedToken("Lily", lstrip=True, normalized=False), AddedToken("<sep>", rstrip=True, normalized=False)])
    (out / "spm_added.json").write_text(extra.to_str())
    refs.append(reference("spm_added", "spm_added.json", extra, False, "", big_text))

    l3 = train_bytelevel(1000, lines, True)
    l3_json = to_json_merges_as_strings(l3)
    (out / "bl_llama3.json").write_text(l3_json)
    write_gguf_bl(out / "bl_llama3.gguf", l3, "llama-bpe")
    write_model_gguf(out / "tokmodel.gguf", l3)
    refs.append(reference("bl_llama3", "bl_llama3.json", l3, True, "bl_llama3.gguf", big_text))
    # a String Split that removes the spaces, then ByteLevel adding a prefix space to every piece
    feat = Tokenizer.from_str(l3_json)
    feat.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="removed", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    (out / "bl_split.json").write_text(feat.to_str())
    refs.append(reference("bl_split", "bl_split.json", feat, False, "", big_text))
    # Digits (one piece per digit, or per run of digits) before the ByteLevel regex
    for individual in (True, False):
        feat.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=individual),
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False)])
        name = "bl_digits" if individual else "bl_digit_runs"
        (out / f"{name}.json").write_text(feat.to_str())
        refs.append(reference(name, f"{name}.json", feat, True, "", big_text))
    # the other Split behaviors, on a regex of single delimiter characters
    for beh in ("merged_with_previous", "merged_with_next", "contiguous"):
        feat.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(r"[ ,.!?\n]"), behavior=beh, invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        (out / f"bl_{beh}.json").write_text(feat.to_str())
        refs.append(reference(f"bl_{beh}", f"bl_{beh}.json", feat, True, "", big_text))
    qw = train_bytelevel(900, lines, False, qwen2=True)
    (out / "bl_qwen2.json").write_text(qw.to_str())
    write_gguf_bl(out / "bl_qwen2.gguf", qw, "qwen2")
    refs.append(reference("bl_qwen2", "bl_qwen2.json", qw, True, "bl_qwen2.gguf", big_text))
    g2 = train_bytelevel(800, lines, False)
    (out / "bl_gpt2.json").write_text(g2.to_str())
    write_gguf_bl(out / "bl_gpt2.gguf", g2, "gpt-2")
    refs.append(reference("bl_gpt2", "bl_gpt2.json", g2, False, "bl_gpt2.gguf", big_text))

    (out / "reference.json").write_text(json.dumps({"tokenizers": refs}, ensure_ascii=False))
    write_broken(out, l3_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
