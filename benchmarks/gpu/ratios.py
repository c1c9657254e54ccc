"""ratios.py — bench_gpu.json against torch_reference.json (the same GPU, the same job): one CSV row per
step of issue 9's table with birdbone's seconds, PyTorch's, the speed-up and the target."""
import json, sys

text = open(sys.argv[1]).read()
try:
    b = json.loads(text)
except ValueError:  # bench_gpu stopped early: close the object it was writing
    b = json.loads(text.rstrip().rstrip(",") + "\n}")
try:
    t = json.load(open(sys.argv[2]))["layers"]
except (OSError, KeyError, ValueError):
    t = None
# (issue step, bench key, torch layer, torch key, target seconds)
rows = [
    ("GPTQ 4-bit g128 8192x28672", "gptq4_g128_down_proj_trail_fp32", "down_proj", "gptq4_g128_s", 0.5),
    ("GPTQ 4-bit g128 8192x28672 (tf32 trailing)", "gptq4_g128_down_proj_trail_tf32", "down_proj", "gptq4_g128_s", 0.5),
    ("GPTQ Q4_0 8192x28672", "gptq4_q4_0_down_proj_trail_fp32", "down_proj", "gptq4_g128_s", 0.5),
    ("GPTQ 4-bit g128 8192x8192", "gptq4_g128_q_proj_trail_fp32", "q_proj", "gptq4_g128_s", 0.1),
    ("GPTQ 4-bit g128 8192x8192 (tf32 trailing)", "gptq4_g128_q_proj_trail_tf32", "q_proj", "gptq4_g128_s", 0.1),
    ("GPTQ Q4_0 8192x8192", "gptq4_q4_0_q_proj_trail_fp32", "q_proj", "gptq4_g128_s", 0.1),
    ("SparseGPT 50% 8192x28672", "sparsegpt50_down_proj_trail_fp32", "down_proj", "sparsegpt50_s", 0.4),
    ("SparseGPT 50% 8192x28672 (tf32 trailing)", "sparsegpt50_down_proj_trail_tf32", "down_proj", "sparsegpt50_s", 0.4),
    ("SparseGPT 50% 8192x8192", "sparsegpt50_q_proj_trail_fp32", "q_proj", "sparsegpt50_s", 0.1),
    ("Gram 28672^2 262144 tokens tf32", "gram_tf32", "down_proj", "gram_s", 1.0),
    ("Gram 28672^2 262144 tokens bf16", "gram_bf16", "down_proj", "gram_s", 1.0),
    ("rSVD rank 256 28672x8192 fp32", "rsvd_k256_fp32", "gate_proj", "rsvd_k256_s", 0.045),
    ("rSVD rank 256 28672x8192 tf32", "rsvd_k256_tf32", "gate_proj", "rsvd_k256_s", 0.045),
    ("Wanda 50% 28672x8192", "wanda50", "gate_proj", "wanda50_s", 0.010),
]
# the shapes, as bench_gpu reports them; a quick run (small shapes) gets no row
shape = {"down_proj": {"rows": 8192, "cols": 28672}, "q_proj": {"rows": 8192, "cols": 8192},
         "gram": {"n": 28672, "tokens": 262144}, "rsvd": {"m": 28672, "n": 8192}, "wanda": {"rows": 28672, "cols": 8192}}
print("step,birdbone_s,torch_s,speedup,target_s,meets_target")
for name, bk, layer, tk, target in rows:
    if bk not in b:
        continue
    kind = "gram" if bk.startswith("gram") else "rsvd" if bk.startswith("rsvd") else "wanda" if bk.startswith("wanda") else layer
    if any(b[bk].get(k) != v for k, v in shape[kind].items()):
        continue
    s = b[bk]["s"]
    ts = t[layer][tk] if t and layer in t else None
    sp = f"{ts / s:.1f}" if ts else ""
    print(f"{name},{s:.4f},{'' if ts is None else f'{ts:.4f}'},{sp},{target},{'yes' if s <= target else 'no'}")
