#!/usr/bin/env bash
# export_cli.sh DIR S260_DIR : `birdbone export` on stories260K. The F32 file must reproduce the golden greedy
# text through `birdbone generate`; the Q4_0 file must warn about the F16 ffn_down fallback (once per tensor)
# and read back through `birdbone inspect` with Q4_0 and F16 tensors; a bad type is a usage error.
set -eu
dir="$1"; s260="$2"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"; mkdir -p "$dir"
"$bin" export "$s260/stories260K.bin" --type f32 -o "$dir/f32.gguf" > "$dir/f32.log" 2>&1 || { cat "$dir/f32.log"; exit 1; }
"$BB_SOURCE/tests/sh/generate_golden.sh" "$dir/f32.gguf" "$s260/expected_greedy_200.txt"
"$bin" export "$s260/stories260K.bin" --type q4_0 -o "$dir/q4_0.gguf" > "$dir/q4_0.log" 2>&1 ||
    { cat "$dir/q4_0.log"; exit 1; }
n=$(grep -c "ffn_down.weight: rows of 172 elements fit no q4_0 block; stored as f16" "$dir/q4_0.log" || true)
[ "$n" = 5 ] || { cat "$dir/q4_0.log"; echo "FAIL: expected 5 fallback warnings, got $n"; exit 1; }
"$bin" inspect "$dir/q4_0.gguf" > "$dir/q4_0.inspect" 2>&1 || { cat "$dir/q4_0.inspect"; exit 1; }
grep -q "blk.0.attn_q.weight .* q4_0 " "$dir/q4_0.inspect" || { cat "$dir/q4_0.inspect"; echo "FAIL: attn_q"; exit 1; }
grep -q "blk.0.ffn_down.weight .* f16 " "$dir/q4_0.inspect" || { cat "$dir/q4_0.inspect"; echo "FAIL: ffn_down"; exit 1; }
if "$bin" export "$s260/stories260K.bin" --type q9_9 -o "$dir/bad.gguf" > "$dir/bad.log" 2>&1; then
    echo "FAIL: --type q9_9 was accepted"; exit 1
fi
grep -q "q9_9" "$dir/bad.log" || { cat "$dir/bad.log"; echo "FAIL: the error does not name the type"; exit 1; }
# LoRA adapter: random rank-4 factors written as an adapter beside the F32 base, and merged into a second file
"$bin" export "$s260/stories260K.bin" --type f32 --lora-random 4 --lora-out "$dir/cli_lora.gguf" \
    -o "$dir/cli_base.gguf" > "$dir/lora.log" 2>&1 || { cat "$dir/lora.log"; exit 1; }
"$bin" export "$s260/stories260K.bin" --type f32 --lora-random 4 --lora-merge -o "$dir/cli_merged.gguf" \
    >> "$dir/lora.log" 2>&1 || { cat "$dir/lora.log"; exit 1; }
grep -q "LoRA adapter $dir/cli_lora.gguf: 35 weights, alpha 4" "$dir/lora.log" || { cat "$dir/lora.log"; exit 1; }
cmp -s "$dir/cli_base.gguf" "$dir/f32.gguf" || { echo "FAIL: --lora-out changed the base export"; exit 1; }
if cmp -s "$dir/cli_merged.gguf" "$dir/f32.gguf"; then echo "FAIL: --lora-merge left the weights as they were"; exit 1; fi
if "$bin" inspect "$dir/cli_lora.gguf" > "$dir/lora_inspect.log" 2>&1; then echo "FAIL: an adapter opened as a model"; exit 1; fi
grep -q 'is an adapter (general.type "adapter"), not a model' "$dir/lora_inspect.log" || { cat "$dir/lora_inspect.log"; exit 1; }
if "$bin" export "$s260/stories260K.bin" --lora-out "$dir/x.gguf" -o "$dir/y.gguf" > "$dir/bad_lora.log" 2>&1; then
    echo "FAIL: --lora-out without factors was accepted"; exit 1
fi
grep -q "need factors" "$dir/bad_lora.log" || { cat "$dir/bad_lora.log"; exit 1; }
echo "ok: export f32 (golden text), q4_0 (F16 ffn_down), bad type refused, LoRA adapter and merge"
