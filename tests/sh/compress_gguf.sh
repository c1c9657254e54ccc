#!/usr/bin/env bash
# compress_gguf.sh DIR MPIRUN : `birdbone compress` on the default synthetic model with GPTQ and a 4.5-bit budget
# on 1 rank and on 3 ranks (MPIRUN -np 3); each run must write model.gguf, `birdbone inspect` must read it back
# (llama architecture, quantized tensors), and the two files must be byte-identical.
set -eu
dir="$1"; shift
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir.1" "$dir.3"
sets=(--set quant.method=gptq --set quant.type=auto --set budget.target_bits=4.5 --set backend.threads=1)
"$bin" compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir.1" "${sets[@]}" > "$dir.1.log" 2>&1 ||
    { cat "$dir.1.log"; exit 1; }
"$@" "$bin" compress -c "$BB_SOURCE/configs/default.yaml" --set run.dir="$dir.3" "${sets[@]}" > "$dir.3.log" 2>&1 ||
    { cat "$dir.3.log"; exit 1; }
for n in 1 3; do
    [ -s "$dir.$n/model.gguf" ] || { cat "$dir.$n.log"; echo "FAIL: $dir.$n/model.gguf missing"; exit 1; }
    grep -q "export  $dir.$n/model.gguf" "$dir.$n.log" || { echo "FAIL: run $n does not report the export"; exit 1; }
    "$bin" inspect "$dir.$n/model.gguf" > "$dir.$n.inspect" 2>&1 || { cat "$dir.$n.inspect"; exit 1; }
    grep -q "architecture llama" "$dir.$n.inspect" || { cat "$dir.$n.inspect"; echo "FAIL: not a llama GGUF"; exit 1; }
    grep -qE " q[0-9]_" "$dir.$n.inspect" || { cat "$dir.$n.inspect"; echo "FAIL: no quantized tensor"; exit 1; }
done
head -1 "$dir.1.inspect"
tail -1 "$dir.1.inspect"
grep -E "^budget|^quant " "$dir.1.log"
cmp "$dir.1/model.gguf" "$dir.3/model.gguf" || { echo "FAIL: 1 and 3 ranks wrote different GGUF files"; exit 1; }
echo "ok: model.gguf written, read back, identical on 1 and 3 ranks"
