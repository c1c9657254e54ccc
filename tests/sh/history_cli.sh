#!/usr/bin/env bash
# history_cli.sh BIRDBONE DIR SPEC — the hash / diff / revert commands on DIR/run (made by history_run from SPEC).
set -u
bb="$1"; dir="$2"; spec="$3"; run="$dir/run"
ok=1
fail() { echo "FAIL: $*"; ok=0; }
linear() { grep -E '^[0-9a-f]{64}  blk\.[0-9]+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$' "$1" | sort; }

# hash: deterministic, sha256sum-style lines, a whole-model line
"$bb" hash "$spec" >"$dir/model.txt" || fail "hash $spec"
"$bb" hash "$spec" >"$dir/model2.txt" || fail "hash $spec again"
cmp -s "$dir/model.txt" "$dir/model2.txt" || fail "hash is not deterministic"
grep -Eq '^[0-9a-f]{64}  \(whole model: 21 tensors\)$' "$dir/model.txt" || fail "no whole-model line"
[ "$(linear "$dir/model.txt" | wc -l)" = 14 ] || fail "expected 14 linear weights in the model hash"

# revert to wave 0: the model's linear weights bit for bit
"$bb" revert "$run" --to-wave 0 --hash -o "$dir/w0.h5" >"$dir/rev0.txt" || fail "revert --to-wave 0"
cat "$dir/rev0.txt"
grep -q "wave 0 rebuilt from checkpoint wave 4 and 4 deltas: sparsity 0.0000" "$dir/rev0.txt" || fail "revert summary"
[ "$(linear "$dir/rev0.txt" | wc -l)" = 14 ] || fail "revert --hash lists 14 weights"
diff <(linear "$dir/rev0.txt") <(linear "$dir/model.txt") >/dev/null || fail "wave 0 is not the dense weights bit for bit"
"$bb" diff "$dir/w0.h5" "$spec" >"$dir/diff0.txt" || fail "diff wave 0 vs model"
grep -Eq '^total +0 +0 +0 +0 +0 +0 ' "$dir/diff0.txt" || { cat "$dir/diff0.txt"; fail "wave 0 differs from the model"; }

# ... and through the GGUF export: the F32 file hashes like the model, tensor by tensor
"$bb" revert "$run" --to-wave 0 --export "$dir/w0.gguf" >/dev/null || fail "revert --export"
"$bb" hash "$dir/w0.gguf" >"$dir/gguf.txt" || fail "hash of the exported GGUF"
diff <(linear "$dir/gguf.txt") <(linear "$dir/model.txt") >/dev/null || fail "exported wave 0 differs from the model"

# a quantized GGUF is hashed as stored
"$bb" export "$spec" --type q8_0 -o "$dir/q8.gguf" >/dev/null 2>&1 || fail "export q8_0"
"$bb" hash "$dir/q8.gguf" --json >"$dir/q8.json" || fail "hash of a quantized GGUF"
grep -q '"name": "blk.1.ffn_up.weight", "dtype": "q8_0"' "$dir/q8.json" || fail "q8_0 tensors hashed as stored"
a=$("$bb" hash "$dir/q8.gguf" | tail -1); b=$("$bb" hash "$dir/q8.gguf" | tail -1)
[ "$a" = "$b" ] || fail "quantized GGUF hash is not deterministic"

# wave 4 rebuilt (no delta applied) equals the checkpoint; wave 2 goes back and forth the same
"$bb" revert "$run" --to-wave 4 -o "$dir/w4.h5" >/dev/null || fail "revert --to-wave 4"
a=$("$bb" hash "$dir/w4.h5" | tail -1); b=$("$bb" hash "$run/checkpoints/wave_0004.h5" | tail -1)
[ "$a" = "$b" ] || fail "wave 4 rebuilt ($a) is not the checkpoint ($b)"
"$bb" revert "$run" --to-wave 2 -o "$dir/w2.h5" >/dev/null || fail "revert --to-wave 2"
"$bb" hash "$dir/w2.h5" --json >"$dir/w2.json" || fail "hash --json"
grep -q '"kind": "checkpoint"' "$dir/w2.json" || fail "hash --json kind"
[ "$(ls "$run/checkpoints")" = "$(printf 'wave_0004.h5\nwave_0004.h5.DONE')" ] || fail "keep: last left $(ls "$run/checkpoints")"

# diff of the last checkpoint against the model: what the waves removed comes back as regrown
"$bb" diff "$run/checkpoints/wave_0004.h5" "$spec" --json "$dir/d.json" >"$dir/diff4.txt" || fail "diff wave 4 vs model"
cat "$dir/diff4.txt"
grep -q '"format": "birdbone-diff"' "$dir/d.json" || fail "diff --json"
grep -Eq '"removed": 0, "regrown": [1-9]' "$dir/d.json" || fail "diff totals: nothing removed, something regrown"
if command -v python3 >/dev/null; then
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['tensors'])==14; assert d['totals']['regrown']==sum(t['regrown'] for t in d['tensors'])" "$dir/d.json" || fail "diff.json does not parse or its totals disagree"
  python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$run/diffs/0003/diff.json" || fail "diffs/0003/diff.json"
fi

# refusals
"$bb" revert "$run" --to-wave 0 -o "$dir/w0.h5" >/dev/null 2>"$dir/err.txt" && fail "overwrote without --force"
grep -q "exists; pass --force" "$dir/err.txt" || fail "no --force message"
rm -rf "$dir/run2"; cp -r "$run" "$dir/run2"
rm -rf "$dir/run2/diffs/0002"
"$bb" revert "$dir/run2" --to-wave 0 >/dev/null 2>"$dir/err.txt" && fail "reverted across a missing delta"
grep -q "diffs/0002/delta.h5 is missing" "$dir/err.txt" || { cat "$dir/err.txt"; fail "missing-delta message"; }
rm -f "$dir/run2/checkpoints/"*.DONE
"$bb" revert "$dir/run2" --to-wave 0 >/dev/null 2>"$dir/err.txt" && fail "reverted without a complete checkpoint"
grep -q "holds no complete checkpoint" "$dir/err.txt" || { cat "$dir/err.txt"; fail "no-checkpoint message"; }
"$bb" hash "$dir/run2/checkpoints/wave_0004.h5" >/dev/null 2>"$dir/err.txt" && fail "hashed an incomplete checkpoint"
grep -q "has no DONE marker" "$dir/err.txt" || { cat "$dir/err.txt"; fail "no-marker message"; }

[ $ok = 1 ] && echo "ok: hash, diff and revert"
[ $ok = 1 ]
