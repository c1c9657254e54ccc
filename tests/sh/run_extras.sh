#!/usr/bin/env bash
# run_extras.sh DIR: a real run with the optional parts on, checked from its own files.
#   - lowrank.export=adapter: model.gguf holds the sparse quantized weights, lora.gguf the healing factors as a
#     GGUF LoRA adapter (gguf package: general.type adapter, a lora_a/lora_b pair per healed weight);
#   - bundles.enabled: each wave stresses one synergy bundle in turn (0, 1, 2, ...);
#   - birdbone revert RUN --to-wave 0 gives the dense model's linear weights bit for bit (birdbone hash).
set -eu
# Whole runs several times over: the regular test pass runs it; the sanitizer pass (BB_SKIP_SLOW) skips it.
if [ -n "${BB_SKIP_SLOW:-}" ]; then echo "skipped: BB_SKIP_SLOW is set (the regular pass runs this check)"; exit 77; fi
dir="$1"
bin="${BIRDBONE:?BIRDBONE must point at the birdbone executable}"
rm -rf "$dir"
"$bin" compress --set run.dir="$dir" --set lowrank.export=adapter --set bundles.enabled=true --set stress.gamma=1.5 \
    --set stoploss.enabled=false > "$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: compress"; exit 1; }
for k in 1 2 3; do
    grep -q "^bundles wave $k: bundle $((k - 1)) of 4 is the one stressed" "$dir.log" ||
        { grep -E "^bundles|^stress" "$dir.log"; echo "FAIL: wave $k does not stress bundle $((k - 1))"; exit 1; }
done
[ -s "$dir/lora.gguf" ] || { cat "$dir.log"; echo "FAIL: no lora.gguf"; exit 1; }
python3 - "$dir/lora.gguf" "$dir/model.gguf" <<'PY' || exit 1
import sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
a = GGUFReader(sys.argv[1])
t = bytes(a.fields["general.type"].parts[-1]).decode()
assert t == "adapter", f"general.type {t}"
names = [x.name for x in a.tensors]
la = sorted(n[:-len(".lora_a")] for n in names if n.endswith(".lora_a"))
lb = sorted(n[:-len(".lora_b")] for n in names if n.endswith(".lora_b"))
assert la and la == lb and len(names) == 2 * len(la), f"unpaired adapter tensors: {names[:6]}"
m = GGUFReader(sys.argv[2])
zeros = total = 0
for x in m.tensors:
    if x.name.startswith("blk.") and "norm" not in x.name:
        d = dequantize(x.data, x.tensor_type)
        zeros += int((d == 0).sum()); total += d.size
assert zeros / total > 0.25, f"model.gguf keeps only {zeros / total:.3f} zeros: the sparse weights were not kept"
print(f"adapter: {len(la)} weights with factors; model.gguf {zeros / total:.3f} zeros")
PY
diff <("$bin" revert "$dir" --to-wave 0 --hash | grep -E '^[0-9a-f]{64}  blk\.[0-9]+\.(attn_[qkvo]|attn_output|ffn_(gate|up|down))') \
     <("$bin" hash synthetic:tiny | grep -E '^[0-9a-f]{64}  blk\.[0-9]+\.(attn_[qkvo]|attn_output|ffn_(gate|up|down))') ||
    { echo "FAIL: revert --to-wave 0 does not give the dense weights"; exit 1; }
# merged healing factors: the PPL compress reports for the quantized model is what model.gguf gives (within
# 1 %: the GGUF stores the embeddings and classifier as Q8_0, compress evaluates them in f32)
"$bin" compress --set run.dir="$dir.merge" --set stoploss.enabled=false --force > "$dir.merge.log" 2>&1 ||
    { cat "$dir.merge.log"; echo "FAIL: compress (merge)"; exit 1; }
want=$(sed -n 's/^quant   PPL \([0-9.]*\) .*/\1/p' "$dir.merge.log")
got=$("$bin" eval "$dir.merge/model.gguf" --tokens "$dir.merge/eval.tokens" --n-ctx 128 2>&1 | sed -n 's/^PPL = \([0-9.]*\) .*/\1/p')
python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a / b - 1) < 0.01 else 1)" "$want" "$got" ||
    { echo "FAIL: compress reported PPL $want for the quantized model, model.gguf gives $got"; exit 1; }
# checkpoints/quantized.h5 holds exactly the blocks model.gguf stores (attn_v and ffn_down of every layer)
[ -f "$dir.merge/checkpoints/quantized.h5.DONE" ] || { echo "FAIL: no complete checkpoints/quantized.h5"; exit 1; }
for l in 0 1 2 3; do
    for k in attn_v ffn_down; do
        h5dump -d "/layer_00$l/$k/blocks" -b LE -o "$dir.blocks" "$dir.merge/checkpoints/quantized.h5" > /dev/null ||
            { echo "FAIL: cannot read layer $l $k from quantized.h5"; exit 1; }
        python3 - "$dir.merge/model.gguf" "blk.$l.$k.weight" "$dir.blocks" <<'PY' || exit 1
import sys
import numpy as np
from gguf import GGUFReader
t = {x.name: x for x in GGUFReader(sys.argv[1]).tensors}[sys.argv[2]]
a = np.asarray(t.data).tobytes()
b = open(sys.argv[3], "rb").read()
assert a == b, f"{sys.argv[2]}: quantized.h5 has {len(b)} bytes that differ from the GGUF's {len(a)}"
PY
    done
done
echo "ok: adapter export, phased bundles, revert to the dense weights; merged model.gguf PPL $got (reported $want); quantized.h5 = GGUF blocks"
