#!/bin/bash
# run_ab.sh — two builds of birdbone on the same GPU in one job (device tool, carry ["build-carry"] from
# prepare_full.sh, plus the baseline binary at build-carry/bin/birdbone-base: build the older commit in a git
# worktree with `cmake --build DIR --target birdbone` and copy DIR/bin/birdbone there). Each shape of
# BB_SHAPES goes through `birdbone compress` on one GPU once per binary, base first, with the token files of
# run_scaling.sh. The model.gguf of the two differ where a change moves bits; their KLD and PPL should not.
#   BB_SHAPES   "name=spec ..." (default "7b=llama2-7b,layers=1,vocab=4000")
#   BB_SET      extra key=value (default: 1 wave to 10 %, Q4_0, heal.steps=50)
#   BB_VOCAB (4000), BB_SEQS (16), BB_THREADS (the cores), BB_TIMEOUT (per run, 300 s)
# Output: $OUT/ab.csv (shape, binary, seconds per stage, KLD, model.gguf's sha256) and $OUT/ab-NAME-BIN.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
source build-carry/env.sh >/dev/null || exit 1
BASE=$BBFULL/bin/birdbone-base      # env.sh copies build-carry/bin/ there
NEW=$BBFULL/bin/birdbone
[ -x "$BASE" ] || { echo "run_ab.sh: no build-carry/bin/birdbone-base (see the header)" >&2; exit 1; }
python3 benchmarks/gpu/tokens.py "$OUT/calib.tokens" "${BB_VOCAB:-4000}" "${BB_SEQS:-16}" 128 1 &&
    python3 benchmarks/gpu/tokens.py "$OUT/eval.tokens" "${BB_VOCAB:-4000}" "${BB_SEQS:-16}" 128 2 || exit 1
sets=(--set backend.device=cuda --set backend.threads="${BB_THREADS:-$(nproc)}" --set run.progress=plain
      --set data.calib_tokens="$OUT/calib.tokens" --set data.eval_tokens="$OUT/eval.tokens")
for kv in ${BB_SET:-waves.count=1 prune.target=0.1 quant.type=q4_0 heal.steps=50}; do sets+=(--set "$kv"); done
echo "shape,binary,seconds,baseline,usage,decay,heal,reinforce,redistribute,quantize,kld,gguf_sha256" > "$OUT/ab.csv"
for sh in ${BB_SHAPES:-7b=llama2-7b,layers=1,vocab=4000}; do
    name=${sh%%=*}
    spec=${sh#*=}
    for which in base new; do
        bin=$NEW
        [ $which = base ] && bin=$BASE
        d="$OUT/ab-$name-$which"
        rm -rf "$d"
        timeout -k 20 "${BB_TIMEOUT:-300}" "$bin" compress --set model.path="synthetic:$spec" "${sets[@]}" --set run.dir="$d" \
            > "$d.log" 2>&1
        rc=$?
        sha=$(sha256sum "$d/model.gguf" 2>/dev/null | cut -c1-16)
        kld=$(grep -oE "KLD mean [0-9.]+" "$d.log" | head -1 | awk '{print $3}')
        echo "$name $which: rc=$rc $(grep -E '^time ' "$d.log" | head -1) $sha"
        python3 - "$d/summary.json" "$name" "$which" "$sha" "$kld" >> "$OUT/ab.csv" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1]))
except Exception:
    sys.exit(0)
st = {x["name"]: x["seconds"] for x in s["stages"]}
print(",".join([sys.argv[2], sys.argv[3], "%.3f" % s["seconds"]] +
               ["%.3f" % st.get(k, 0) for k in ("baseline", "usage", "decay", "heal", "reinforce", "redistribute", "quantize")] +
               [sys.argv[5], sys.argv[4]]))
PY
        grep -E "^quant   PPL" "$d.log" | head -1
        sed -n '/---- timing/,$p' "$d.log" | awk '$1 ~ /^(heal|stress|rigl|model|scan)\./'
    done
done
cat "$OUT/ab.csv"
