#!/usr/bin/env bash
# compress_eval_gguf.sh DIR SHARED_DATA : `birdbone compress` on stories260K (RTN Q4_0, no pruning, one wave) writes
# model.gguf and reports the quantized model's perplexity; `birdbone eval` on that GGUF (its quantized tensors
# decoded at open) must print the same perplexity to the last digit, as both run on the same decoded weights;
# `birdbone generate` must run on it.
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"; data="$2"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"; mkdir -p "$dir"
"$bin" compress -c "$BB_SOURCE/configs/stories260K.yaml" --set run.dir="$dir/run" \
    --set model.path="$data/stories260K/stories260K.bin" --set data.calib="$data/tinystories/calib.txt" \
    --set data.eval="$data/tinystories/dev.txt" --set calib.samples=16 --set eval.max_windows=24 \
    --set prune.method=none --set waves.count=1 --set heal.enabled=false \
    --set quant.method=rtn --set quant.type=q4_0 > "$dir/compress.log" 2>&1 || { cat "$dir/compress.log"; exit 1; }
want=$(sed -n 's/^quant   PPL \([0-9.]*\) .*/\1/p' "$dir/compress.log")
[ -n "$want" ] || { cat "$dir/compress.log"; echo "FAIL: compress reported no quantized PPL"; exit 1; }
"$bin" eval "$dir/run/model.gguf" --text "$data/tinystories/dev.txt" --n-ctx 512 --max-windows 24 \
    > "$dir/eval.log" 2>&1 || { cat "$dir/eval.log"; exit 1; }
got=$(sed -n 's/^PPL = \([0-9.]*\) .*/\1/p' "$dir/eval.log")
[ "$got" = "$want" ] || { cat "$dir/eval.log"; echo "FAIL: eval of the GGUF gives PPL $got, compress reported $want"; exit 1; }
"$bin" generate "$dir/run/model.gguf" --prompt "Once upon a time" -n 24 > "$dir/generate.log" 2>&1 ||
    { cat "$dir/generate.log"; exit 1; }
echo "ok: compress reported PPL $want for the Q4_0 model; eval of its GGUF: $got"
