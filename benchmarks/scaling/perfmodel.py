#!/usr/bin/env python3
"""perfmodel.py — the performance model of `birdbone compress` over ranks (docs/performance.md).

    python3 benchmarks/scaling/perfmodel.py [--out benchmarks/results] [--markdown]

Three parts, each written as CSV under --out:

perfmodel-validation.csv  The CPU runs measured here (scaling-strong.csv, scaling-weak.csv, scaling-events.csv from
                          benchmarks/scaling/run.sh), predicted from their 1-rank points only: each stage's time is
                          a fixed part plus a per-block part (fitted to the two 1-rank runs of 2 and 4 blocks), the
                          per-block part divided over the ranks as the sharding plan divides the blocks, slowed by
                          the pipeline's fill and drain for the forward stages and by oversubscription (more ranks
                          than cores), plus rank 0's file writing, which does not shrink with ranks. Bytes come from
                          the formulas in bytes_per_stage(), not from the measurements.
perfmodel-gpu-validation.csv
                          The `birdbone compress` runs on GPU ranks (one rank per H200, NCCL; logs in
                          benchmarks/gpu/results/, synthetic:tiny's stage seconds from
                          benchmarks/results/scaling-gpu-tiny-2xh200.csv), predicted from their 1-GPU runs the same
                          way (model A), each wave stage per wave it went through and healing per Adam step, plus
                          what a run outside the stages takes; model B adds two costs the 1-GPU runs cannot show, a
                          cost per micro-batch and pipeline hop and one per wave and block held off rank 0, fitted
                          to the stages of synthetic:tiny's 2-GPU strong point.
perfmodel-plan.csv        Llama-2-70B, Llama-3-70B and Llama-3.1-405B on 1, 8 and 64 GPUs: time per stage from
                          measured per-block GPU costs (the forward, the Grams and GPTQ of the whole Llama-2-70B
                          streamed through one H100, benchmarks/gpu/results/model-llama2-70b-h100.json) and the
                          per-kernel timings of benchmarks/gpu/results/v5_bench_gpu.json (H200), scaled by each
                          step's flop count; memory per rank from the sharding plan (`birdbone inspect --plan`);
                          the bytes each stage moves and writes. The `compress` runs measured on GPUs are small
                          (synthetic:tiny and :small, 1-4 GPUs): these rows are predictions resting on the streamed
                          70B, the kernel table and ASSUME below.

Shapes and plans come from the birdbone executable (BIRDBONE, default build/birdbone), so that the model uses the
same plan as a run."""
import argparse
import csv
import json
import math
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("BIRDBONE", os.path.join(ROOT, "build", "birdbone"))

# Assumptions the GPU predictions rest on, each stated in docs/performance.md.
ASSUME = {
    "fwd_efficiency": 0.5,      # the forward's linears at this fraction of the tf32 gemm rate (the pre-GPU-forward check)
    "fp32_efficiency": 0.8,     # healing, stress and RigL products at this fraction of the measured fp32 gemm rate
    "link_GBps": 20.0,          # MPI point-to-point between two GPU ranks through host memory, GB/s (one direction)
    "fs_GBps": 2.0,             # one writer to a parallel file system, GB/s
    "fs_aggregate_GBps": 20.0,  # all writers of the collective checkpoint together, GB/s
    "eval_tokens": 300_000,     # WikiText-2 test with a Llama tokenizer, about 146 windows of 2048
    # bytes written per parameter and wave, measured on synthetic:tiny: the checkpoint (written by every rank into
    # one file, parallel HDF5) and what rank 0 still writes alone from the gathered state (the DeltaHistory record
    # 1.44 and the wave file 0.22)
    "ckpt_bytes_per_param": 4.05,
    "rank0_bytes_per_param": 1.66,
}
WAVES = 5          # configs/llama2-70b.yaml: waves.count 5, heal.steps 200 with taper, heal.rank 16
HEAL_STEPS = 200
HEAL_RANK = 16
SCAN_RANK = 256
GPU_COUNTS = (1, 8, 64)
# device memory as nvidia-smi reports it (MiB), less an assumed 2 GiB for the CUDA context and library workspaces
GPU_MEM = {"H100": (81559 - 2048) * 2**20, "H200": (143771 - 2048) * 2**20}
MODELS = {
    "Llama-2-70B": "synthetic:llama2-70b",
    "Llama-3-70B": "synthetic:llama3-70b",
    "Llama-3.1-405B": "synthetic:llama3-70b,dim=16384,hidden=53248,layers=126,heads=128,kv_heads=8",
}
# A stage's forward passes over the calibration (c) and evaluation (e) tokens, with W waves and no stop-loss
# rollback: the dense evaluation, the calibration, per wave an evaluation and (from wave 2) a recalibration of the
# pruned model, and in stage 6 a recalibration and the final evaluation.
PASSES = {"baseline": (0, 1), "usage": (1, 0), "decay": (lambda w: w - 1, lambda w: w), "quantize": (1, 1)}
FORWARD_STAGES = ("baseline", "usage")
# rank 0's file writing per stage (events of the 1-rank runs, scaling-events.csv): it does not shrink with ranks
SERIAL_EVENTS = {"decay": ("decay.write", "wave.history", "wave.checkpoint", "model.hash"),
                 "quantize": ("export.gguf", "quant.checkpoint"), "version": ("stage.version",),
                 "baseline": ("scan.rsvd",)}
# Synthetic models only: every rank samples its share of the calibration and evaluation sequences through the whole
# model (stage baseline), so this part divides by the rank count whatever the plan.
SAMPLE_EVENT = ("baseline", "sample.stream")


def run_bin(*args):
    return subprocess.run([BIN, *args], check=True, capture_output=True, text=True).stdout


def shape(spec):
    out = run_bin("inspect", "--brief", spec)
    m = re.search(r"dim (\d+), hidden (\d+), layers (\d+), heads (\d+), kv heads (\d+), head dim (\d+), vocab (\d+)",
                  out)
    d, h, L, nh, nkv, hd, V = map(int, m.groups())
    qd, kvd = nh * hd, nkv * hd
    lin = {"q": (qd, d), "k": (kvd, d), "v": (kvd, d), "o": (d, qd), "gate": (h, d), "up": (h, d), "down": (d, h)}
    return {"d": d, "h": h, "L": L, "heads": nh, "hd": hd, "V": V, "lin": lin,
            "P_blk": sum(r * c for r, c in lin.values()), "grams": (d, qd, d, h)}


def plan(spec, ranks, seqs, seq_len, micro):
    """Per-rank rows of `birdbone inspect --plan`: blocks, params, cost share, weights/buffers/memory MiB."""
    out = run_bin("inspect", "--brief", "--plan", str(ranks), "--calib", f"{seqs}x{seq_len}x{micro}", spec)
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+) (\S+)\s+(\S*)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if not m:
            continue
        blk = m.group(2)
        n = 0 if blk in ("-", "idle") else (int(blk.split("-")[1]) - int(blk.split("-")[0]) + 1 if "-" in blk else 1)
        rows.append({"rank": int(m.group(1)), "blocks": n, "also": m.group(3), "params": int(m.group(4)),
                     "share": float(m.group(5)) / 100, "weights_mib": float(m.group(6)),
                     "buffers_mib": float(m.group(7)), "memory_mib": float(m.group(8))})
    return rows


def n_passes(stage, waves):
    c, e = PASSES.get(stage, (0, 0))
    c, e = (c(waves) if callable(c) else c), (e(waves) if callable(e) else e)
    return c, e


def bytes_per_stage(stage, sh, pl, Tc, Te, waves, out_bits=4.5):
    """Bytes sent, summed over ranks: pipeline hand-offs, rank 0's gathers, the sampled streams, small reductions."""
    R = len(pl)
    Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
    P_nonroot = sum(p["blocks"] for p in pl[1:]) * sh["P_blk"]
    hop = lambda T: (Ra - 1) * T * sh["d"] * 4
    c, e = n_passes(stage, waves)
    b = c * hop(Tc) + e * hop(Te)
    if stage == "baseline" and R > 1:
        b += (R - 1) * (Tc + Te) * 4          # the sampled token streams (synthetic models), allgather
    if stage == "decay":
        b += waves * P_nonroot * (4 + 1 / 8)  # every owner's weights and masks to rank 0 after each wave
    if stage == "quantize":
        b += P_nonroot * out_bits / 8         # the quantized blocks to rank 0, which writes the GGUF
    return b


# ---- part 1: the CPU runs measured here -------------------------------------------------------------------------

def ingest(mode, ranks, log, run_dir, res):
    """Append one run's timing events (rank 0's table: min/avg/max over ranks) to scaling-events.csv and record the
    run's calibration and evaluation sizes in scaling-config.json (run.sh calls this after each run)."""
    path = os.path.join(res, "scaling-events.csv")
    old = [e for e in read_csv(path) if not (e["mode"] == mode and int(e["ranks"]) == ranks)]
    new = []
    table = False
    for line in open(log):
        line = re.sub(r"^\[rank \d+\] ", "", line.rstrip("\n"))
        if line.startswith("event ") and "avg [s]" in line:
            table = True
            continue
        m = re.match(r"(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line) if table else None
        if table and not m:
            table = False
        if m:
            new.append({"mode": mode, "ranks": ranks, "event": m.group(1), "count": int(m.group(2)),
                        "min_s": m.group(3), "avg_s": m.group(4), "max_s": m.group(5)})
    write(path, old + new)
    summ = json.load(open(os.path.join(run_dir, "summary.json")))
    conf = open(os.path.join(run_dir, "config.yaml")).read()
    key = lambda sec, k: int(re.search(rf"^{sec}:\n(?:  .*\n)*?  {k}: (\d+)", conf, re.M).group(1))
    cfg = {"calib_tokens": summ["dense"]["calib_tokens"], "eval_tokens": summ["dense"]["eval_tokens"],
           "seq_len": key("calib", "seq_len"), "micro_batch": key("calib", "micro_batch"),
           "waves": key("waves", "count")}
    json.dump(cfg, open(os.path.join(res, "scaling-config.json"), "w"), indent=1)

def read_csv(path):
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []


def line(pts):
    """(fixed, per block) seconds of a cost measured at (blocks, seconds) points: least squares, kept non-negative
    (a negative fixed part gives the line through the origin; a negative slope, the mean as a fixed cost)."""
    pts = sorted(pts)
    if not pts:
        return 0.0, 0.0
    n = len(pts)
    sx, sy = sum(x for x, _ in pts), sum(y for _, y in pts)
    sxx, sxy = sum(x * x for x, _ in pts), sum(x * y for x, y in pts)
    den = n * sxx - sx * sx
    if den > 0:
        b = (n * sxy - sx * sy) / den
        a = (sy - b * sx) / n
        if a >= 0 and b >= 0:
            return a, b
    if sxy > 0:
        return 0.0, sxy / sxx
    return max(sy / n, 0.0), 0.0


def validate(res, out):
    runs = read_csv(os.path.join(res, "scaling-strong.csv")) + read_csv(os.path.join(res, "scaling-weak.csv"))
    events = read_csv(os.path.join(res, "scaling-events.csv"))
    if not runs:
        sys.exit(f"perfmodel: no scaling CSVs in {res} (run benchmarks/scaling/run.sh first)")
    cores = int(os.environ.get("BB_MODEL_CORES", "2"))
    cfg = json.load(open(os.path.join(res, "scaling-config.json")))
    Tc, Te, waves, micro_seqs = cfg["calib_tokens"], cfg["eval_tokens"], cfg["waves"], cfg["micro_batch"]
    seq_len, seqs = cfg["seq_len"], cfg["calib_tokens"] // cfg["seq_len"]
    spec_of = lambda m: m.replace(";", ",")
    layers_of = lambda m: int(re.search(r"layers=(\d+)", m).group(1))
    one = [x for x in runs if int(x["ranks"]) == 1]
    stages = [x["stage"] for x in one if x["model"] == one[0]["model"] and x["stage"] != "total"]
    # serial (rank 0) seconds per stage and per block, from the 1-rank runs' events
    serial, sample = {}, []
    for x in one:
        L = layers_of(x["model"])
        ev = {e["event"]: float(e["avg_s"]) for e in events if e["mode"] == x["mode"] and int(e["ranks"]) == 1}
        if x["stage"] in SERIAL_EVENTS:
            serial.setdefault(x["stage"], []).append((L, sum(ev.get(n, 0) for n in SERIAL_EVENTS[x["stage"]])))
        if x["stage"] == SAMPLE_EVENT[0]:
            sample.append((L, ev.get(SAMPLE_EVENT[1], 0)))
    # fixed + per-block fit of the parallel part, from the 1-rank points (2 and 4 blocks)
    fit = {}
    for s in stages:
        pts = sorted((layers_of(x["model"]), float(x["seconds"])) for x in one if x["stage"] == s)
        ser = dict(serial.get(s, []))
        smp = dict(sample) if s == SAMPLE_EVENT[0] else {}
        pts = [(L, t - ser.get(L, 0) - smp.get(L, 0)) for L, t in pts]
        fit[s] = line(pts) + line(serial.get(s, []))
    sample_fit = line(sample)
    # peak resident memory of one rank: a fixed part (libraries, MPI, OpenBLAS buffers) plus bytes per parameter it
    # owns, fitted to the 1-rank runs; rank 0 also keeps a 4-byte working copy of every other rank's linear weights
    mem_fit = line([(sum(p["params"] for p in plan(spec_of(x["model"]), 1, seqs, seq_len, micro_seqs)),
                     float(x["peak_rss_mib_max"])) for x in one if x["stage"] == "total"])
    # the same split of the 1-rank runs' CPU seconds (the work, whatever share of a core the run got): the parallel
    # part per block, rank 0's serial part and the sampling, each in proportion to its wall time
    cfit = {}
    for s in stages if all(x.get("cpu_seconds_max") for x in one) else ():
        par, ser_pts, smp_pts = [], [], []
        for x in one:
            if x["stage"] != s:
                continue
            L, wall, cpu = layers_of(x["model"]), float(x["seconds"]), float(x["cpu_seconds_max"])
            k = cpu / wall if wall > 0 else 1
            sr = dict(serial.get(s, [])).get(L, 0) * k
            sm = dict(sample).get(L, 0) * k if s == SAMPLE_EVENT[0] else 0
            par.append((L, max(cpu - sr - sm, 0)))
            ser_pts.append((L, sr))
            smp_pts.append((L, sm))
        cfit[s] = (line(par), line(ser_pts), line(smp_pts))
    rank_cpu = {}  # (mode, ranks, model) -> predicted CPU seconds of every rank over the run
    rows = []
    for x in runs:
        s, R, L = x["stage"], int(x["ranks"]), layers_of(x["model"])
        if s == "total":
            continue
        spec = spec_of(x["model"])
        pl = plan(spec, R, seqs, seq_len, micro_seqs)
        sh = shape(spec)
        a, b, ser_a, ser_b = fit[s]
        smp_a, smp_b = sample_fit if s == SAMPLE_EVENT[0] else (0, 0)
        if s in cfit:  # one rank on a core of its own: CPU seconds are the wall time
            (a, b), (ser_a, ser_b), (smp_a, smp_b) = cfit[s]
        lmax = max(p["blocks"] for p in pl)
        Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
        M = math.ceil(seqs / micro_seqs)
        bubble = (M + Ra - 1) / M if s in FORWARD_STAGES else 1
        over = max(1.0, R / cores)
        pred = (a + b * lmax * bubble) * over + ser_a + ser_b * L + (smp_a + smp_b * L) / R * over
        cpu_pred = ""
        if s in cfit:
            (pa, pb), (sa, sb), (ma, mb) = cfit[s]
            smp = (ma + mb * L) / R
            per_rank = [pb * p["blocks"] + smp + (pa + sa + sb * L if p["rank"] == 0 else 0) for p in pl]
            acc = rank_cpu.setdefault((x["mode"], R, x["model"]), [0.0] * R)
            for i, c in enumerate(per_rank):
                acc[i] += c
            cpu_pred = round(max(per_rank), 2)
        rows.append({"mode": x["mode"], "ranks": R, "model": x["model"], "stage": s,
                     "measured_s": float(x["seconds"]), "predicted_s": round(pred, 3),
                     "measured_cpu_s": float(x["cpu_seconds_max"]) if x.get("cpu_seconds_max") else "",
                     "predicted_cpu_s": cpu_pred,
                     "measured_bytes": float(x["bytes_sent"]),
                     "predicted_bytes": round(bytes_per_stage(s, sh, pl, Tc, Te, waves)),
                     "measured_peak_mib": float(x["peak_rss_mib_max"]),
                     "predicted_peak_mib": round(max(mem_fit[0] + mem_fit[1] * p["params"] + (
                         4 * (sh["L"] - p["blocks"]) * sh["P_blk"] / 2**20 if p["rank"] == 0 else 0) for p in pl), 1),
                     "plan_memory_mib": max(p["memory_mib"] for p in pl)})
    tot = {}
    for r in rows:
        k = (r["mode"], r["ranks"], r["model"])
        t = tot.setdefault(k, {"mode": k[0], "ranks": k[1], "model": k[2], "stage": "total", "measured_s": 0,
                               "predicted_s": 0, "measured_bytes": 0, "predicted_bytes": 0,
                               "measured_peak_mib": 0, "predicted_peak_mib": r["predicted_peak_mib"],
                               "plan_memory_mib": r["plan_memory_mib"]})
        for f in ("measured_s", "predicted_s", "measured_bytes", "predicted_bytes"):
            t[f] += r[f]
        t["measured_peak_mib"] = max(t["measured_peak_mib"], r["measured_peak_mib"])
    for x in runs:
        if x["stage"] == "total":
            t = tot[(x["mode"], int(x["ranks"]), x["model"])]
            t["measured_s"] = float(x["seconds"])
            # the busiest rank's CPU seconds over the wall time: the share of a core it got on the shared machine,
            # against the min(1, cores/R) the prediction assumes; the prediction rescaled to the share it got
            if x.get("cpu_seconds_max"):
                share = float(x["cpu_seconds_max"]) / float(x["seconds"])
                t["cpu_share"] = round(share, 3)
                t["predicted_at_share_s"] = round(t["predicted_s"] * min(1.0, cores / t["ranks"]) / share, 1)
            t["load_avg"] = x.get("load_avg", "")
            k = (x["mode"], int(x["ranks"]), x["model"])
            t["measured_cpu_s"] = float(x["cpu_seconds_max"]) if x.get("cpu_seconds_max") else ""
            t["predicted_cpu_s"] = round(max(rank_cpu[k]), 2) if k in rank_cpu else ""
    rows += sorted(tot.values(), key=lambda r: (r["mode"], r["ranks"]))
    for r in rows:
        for k in ("cpu_share", "predicted_at_share_s", "load_avg", "measured_cpu_s", "predicted_cpu_s"):
            r.setdefault(k, "")
    for r in rows:
        r["predicted_s"] = round(r["predicted_s"], 3)
        r["error_pct"] = round(100 * (r["predicted_s"] / r["measured_s"] - 1), 1) if r["measured_s"] > 0 else ""
        m, p_ = r["measured_cpu_s"], r["predicted_cpu_s"]
        r["cpu_error_pct"] = round(100 * (p_ / m - 1), 1) if m != "" and p_ != "" and m > 0 else ""
    write(os.path.join(out, "perfmodel-validation.csv"), rows)
    fit["sample (baseline)"] = sample_fit + (0, 0)
    fit["peak memory: MiB, MiB per parameter"] = mem_fit + (0, 0)
    if cfit:  # the predictions use the CPU-second split: show that one
        fit = {st: (pa, pb, sa, sb) for st, ((pa, pb), (sa, sb), _) in cfit.items()}
        fit["sample (baseline)"] = cfit[SAMPLE_EVENT[0]][2] + (0, 0)
        fit["peak memory: MiB, MiB per parameter"] = mem_fit + (0, 0)
    return rows, fit


# ---- part 1b: `birdbone compress` on GPU ranks, measured on the lent machine ------------------------------------

GPU_RES = os.path.join(ROOT, "benchmarks", "gpu", "results")
GPU_CSV = os.path.join(ROOT, "benchmarks", "results", "scaling-gpu-tiny-2xh200.csv")
# The GPU runs (one rank per H200, backend.device=cuda, NCCL; benchmarks/gpu/run_scaling.sh and run_multi.sh, raw
# logs in benchmarks/gpu/results/). Each series: the 1-GPU runs the model is fitted to, and the runs it predicts
# (log None: no log in the repository, a prediction only).
GPU_SERIES = {
    "tiny": {"what": "synthetic:tiny, default config, host-side Grams",
             "fit": ("scaling-tiny-weak-1gpu-h200.log", "scaling-tiny-strong-1gpu-h200.log"),
             "targets": (("strong", 2, "scaling-tiny-strong-2gpu-h200.log"),
                         ("weak", 2, "scaling-tiny-weak-2gpu-h200.log"),
                         ("strong", 4, "multi-4xh200-r4.log"))},
    "small, host Grams": {"what": "synthetic:small, default config, host-side Grams",
              "fit": ("scaling-strong-1gpu-h200.log",), "targets": (("strong", 2, None), ("strong", 4, None))},
    "small, device Grams": {"what": "synthetic:small, default config, Grams on the device",
                            "fit": ("scaling-small-1gpu-h200.log",),
                            "targets": (("strong", 2, None), ("strong", 4, None))},
}
GPU_STAGES = ("baseline", "usage", "decay", "heal", "reinforce", "redistribute", "quantize", "version")
# the events a stage's wave work is counted by: the wave stages scale with the number of waves the run went through
# (stop-loss rollbacks add waves) and healing with its Adam steps (heal.taper), both outcomes of the algorithm that
# a rank count does not change (1 and G GPUs give the same model.gguf, docs/cuda.md)
WORK_UNIT = {"decay": "eval.wave", "reinforce": "wave.reinforce", "redistribute": "wave.redistribute"}
PASS_EVENTS = {"baseline": ("eval.dense",), "usage": (), "decay": ("eval.wave", "decay.recalib"),
               "quantize": ("quant.recalib", "eval.quant")}


def gpu_log(path):
    """One compress log: model, layers, stage seconds (the 'time' line), rank 0's event table (count, avg, max),
    the Adam steps of healing, the NCCL bytes and peak device memory of the 'gpu' line."""
    txt = re.sub(r"\x1b\[K", "\n", open(path, errors="replace").read())
    txt = re.sub(r"^\[rank \d+\] ", "", txt, flags=re.M)
    r = {"file": os.path.relpath(path, ROOT), "events": {}}
    r["model"] = re.search(r'^  path: "([^"]*)"', txt, re.M).group(1)
    r["layers"] = int(re.search(r"^architecture .* layers (\d+),", txt, re.M).group(1))
    r["ranks"] = int(re.search(r"compress: (\d+) ranks?", txt).group(1))
    t = re.search(r"^time\s+([\d.]+) s: (.*)$", txt, re.M)
    r["seconds"] = {"total": float(t.group(1))}
    r["seconds"].update({k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", t.group(2))})
    table = txt[txt.index("---- timing ----"):]
    for m in re.finditer(r"^(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", table, re.M):
        r["events"][m.group(1)] = {"count": int(m.group(2)), "avg": float(m.group(4)), "max": float(m.group(5))}
    r["adam_steps"] = sum(int(s) for s in re.findall(r"heal\s+wave \d+: \d+ weights, .*? \+ (\d+) Adam steps", txt))
    g = re.search(r"peak device memory ([\d.]+) MiB.*?\((\d+) bytes\), \d+ point-to-point messages \((\d+) bytes",
                  txt)
    r["gpu_peak_mib"], r["nccl_bytes"] = float(g.group(1)), int(g.group(2)) + int(g.group(3))
    return r


def gpu_counts(r):
    """Per stage, the count its work scales with, and the pipelined passes it runs."""
    ev = lambda n: r["events"].get(n, {"count": 0})["count"]
    n = {s: 1 for s in GPU_STAGES}
    n.update({s: max(ev(e), 1) for s, e in WORK_UNIT.items()})
    n["heal"] = max(r["adam_steps"], 1)
    passes = {s: sum(ev(e) for e in PASS_EVENTS.get(s, ())) for s in GPU_STAGES}
    passes["usage"] = 1
    return n, passes


def gpu_split(r):
    """A 1-GPU run's stage seconds split as the CPU model splits them: rank 0's file writing (SERIAL_EVENTS), the
    synthetic sampling (sample.stream) and the rest, the per-block work."""
    out = {}
    for s in GPU_STAGES:
        ser = sum(r["events"].get(e, {"max": 0})["max"] for e in SERIAL_EVENTS.get(s, ()))
        smp = r["events"].get(SAMPLE_EVENT[1], {"max": 0})["max"] if s == SAMPLE_EVENT[0] else 0.0
        out[s] = (r["seconds"].get(s, 0.0) - ser - smp, ser, smp)
    return out


def line_gpu(pts):
    """line(), except that a negative slope gives the mean as a fixed cost (on the GPU a stage's seconds can stay flat
    or fall from 2 to 4 blocks: per-call overheads, not the blocks' work)."""
    a, b = line(pts)
    n = len(pts)
    if n > 1:
        sx, sy = sum(x for x, _ in pts), sum(y for _, y in pts)
        den = n * sum(x * x for x, _ in pts) - sx * sx
        if den > 0 and (n * sum(x * y for x, y in pts) - sx * sy) / den < 0:
            return sy / n, 0.0
    return a, b


def gpu_fit(fit_logs):
    """Per stage (fixed, per block) seconds per unit of work, of the parallel part and of rank 0's serial part, and
    the sampling's (fixed, per block) seconds, from the 1-GPU runs; one run (one block count) gives a line through
    the origin: every second per block."""
    runs = [gpu_log(os.path.join(GPU_RES, f)) for f in fit_logs]
    fit = {}
    for s in GPU_STAGES:
        par, ser = [], []
        for r in runs:
            n, _ = gpu_counts(r)
            p, w, _ = gpu_split(r)[s]
            par.append((r["layers"], max(p, 0) / n[s]))
            ser.append((r["layers"], w / n[s]))
        fit[s] = line_gpu(par) + line_gpu(ser)
    # outside the stages (start, the model's generation or loading, the CUDA context and NCCL communicator, the
    # summary): every rank does it at once, so it is not divided
    fit["setup"] = line_gpu([(r["layers"], r["seconds"]["total"] - sum(r["seconds"].get(s, 0) for s in GPU_STAGES))
                             for r in runs])
    fit["sample"] = line_gpu([(r["layers"], gpu_split(r)[SAMPLE_EVENT[0]][2]) for r in runs])
    # peak device memory: mostly the CUDA context and the libraries' workspaces; from one run, a constant
    mem = [(r["layers"], r["gpu_peak_mib"]) for r in runs]
    fit["memory"] = line(mem) if len(mem) > 1 else (mem[0][1], 0.0)
    return runs, fit


def gpu_predict(fit, r, R, pl, calib, hop_s=0.0, wave_s=0.0):
    """Stage seconds of a run on R GPUs: the CPU model's structure (per block part over the plan's busiest rank,
    fill and drain for the pipelined stages, rank 0's files and the sampling) with each stage's work count taken
    from r (the same model on any rank count); model B adds hop_s per micro-batch and hop of every pipelined pass
    and wave_s per wave and block held off rank 0 (its tensors gathered to rank 0, its masks sent back)."""
    n, passes = gpu_counts(r)
    L = r["layers"]
    lmax = max(p["blocks"] for p in pl)
    Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
    M = math.ceil(calib["seqs"] / calib["micro"])
    out = {}
    for s in GPU_STAGES:
        a, b, sa, sb = fit[s]
        phi = (M + Ra - 1) / M if s in FORWARD_STAGES else 1
        t = n[s] * (a + b * lmax * phi) + n[s] * (sa + sb * L)
        if s == SAMPLE_EVENT[0]:
            t += (fit["sample"][0] + fit["sample"][1] * L) / R
        t += passes[s] * (Ra - 1) * M * hop_s
        if s == "decay":
            t += n[s] * (L - pl[0]["blocks"]) * wave_s
        out[s] = t
    out["setup"] = fit["setup"][0] + fit["setup"][1] * L
    out["total"] = sum(out.values())
    return out


def gpu_validate(out):
    """The GPU runs predicted from their 1-GPU runs (perfmodel-gpu-validation.csv): model 'A' is the CPU model's
    structure alone; model 'B' adds a cost per micro-batch and pipeline hop fitted to the 2-GPU strong point of
    synthetic:tiny (its one in-sample row)."""
    csvm = {(x["mode"], int(x["gpus"]), x["stage"]): x for x in read_csv(GPU_CSV)}
    rows, hop, wave = [], None, None
    for name, ser in GPU_SERIES.items():
        fruns, fit = gpu_fit(ser["fit"])
        base = max(fruns, key=lambda r: r["layers"])    # the strong series' model
        conf = open(os.path.join(GPU_RES, ser["fit"][-1]), errors="replace").read()
        calib = {"seqs": int(re.search(r"^  samples: (\d+)", conf, re.M).group(1)),
                 "seq_len": int(re.search(r"^  seq_len: (\d+)", conf, re.M).group(1)),
                 "micro": int(re.search(r"^  micro_batch: (\d+)", conf, re.M).group(1))}
        dim = shape(base["model"])["d"]
        for mode, R, log in ser["targets"]:
            meas = gpu_log(os.path.join(GPU_RES, log)) if log else None
            model = meas["model"] if meas else base["model"]
            like = meas or base                          # the work counts: the target's own, else the same model's
            pl = plan(model, R, calib["seqs"], calib["seq_len"], calib["micro"])
            if hop is None and meas and R == 2 and mode == "strong":
                # model B's two costs from this point's stages: the passes of baseline, usage and quantize give
                # the cost per micro-batch and hop; what decay loses beyond its passes, the cost per wave and
                # block off rank 0
                a = gpu_predict(fit, meas, R, pl, calib)
                n, passes = gpu_counts(meas)
                M = math.ceil(calib["seqs"] / calib["micro"])
                Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
                res = {s: meas["seconds"][s] - a[s] for s in GPU_STAGES}
                hops = ("baseline", "usage", "quantize")
                hop = sum(res[s] for s in hops) / sum(passes[s] * M * (Ra - 1) for s in hops)
                wave = (res["decay"] - passes["decay"] * M * (Ra - 1) * hop) / (
                    n["decay"] * (meas["layers"] - pl[0]["blocks"]))
            pa = gpu_predict(fit, like, R, pl, calib)
            pb = gpu_predict(fit, like, R, pl, calib, hop or 0.0, wave or 0.0)
            n, passes = gpu_counts(like)
            Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
            nccl = sum(passes.values()) * (Ra - 1) * calib["seqs"] * calib["seq_len"] * dim * 4
            for s in GPU_STAGES + ("setup", "total"):
                c = csvm.get((mode, R, s)) if name == "tiny" else None   # the CSV's points: from the CSV
                m_s = float(c["seconds"]) if c else (meas["seconds"].get(s) if meas else None)
                if s == "setup" and meas:
                    m_s = meas["seconds"]["total"] - sum(meas["seconds"].get(x, 0) for x in GPU_STAGES)
                row = {"series": name, "mode": mode, "gpus": R, "model": model, "stage": s,
                       "measured_s": m_s if m_s is not None else "", "predicted_s": pa[s],
                       "predicted_hop_s": pb[s],
                       "error_pct": 100 * (pa[s] / m_s - 1) if m_s else "",
                       "error_hop_pct": 100 * (pb[s] / m_s - 1) if m_s else "",
                       "measured_log": meas["file"] if meas else ""}
                if s == "total":
                    row.update({"measured_nccl_bytes": meas["nccl_bytes"] if meas else "",
                                "predicted_nccl_bytes": nccl,
                                "measured_peak_mib": meas["gpu_peak_mib"] if meas else "",
                                "predicted_peak_mib": fit["memory"][0]
                                + fit["memory"][1] * max(p["blocks"] for p in pl)})
                rows.append(row)
        for r in fruns:  # the fit's own inputs
            rows.append({"series": name, "mode": "fit", "gpus": 1, "model": r["model"], "stage": "total",
                         "measured_s": r["seconds"]["total"], "predicted_s": gpu_predict(fit, r, 1, plan(
                             r["model"], 1, calib["seqs"], calib["seq_len"], calib["micro"]), calib)["total"],
                         "measured_log": r["file"]})
    for r in rows:
        for k in ("predicted_hop_s", "error_pct", "error_hop_pct", "measured_nccl_bytes", "predicted_nccl_bytes",
                  "measured_peak_mib", "predicted_peak_mib"):
            r.setdefault(k, "")
    write(os.path.join(out, "perfmodel-gpu-validation.csv"), rows)
    return rows, (hop, wave)


# ---- part 2: 70B and 405B on GPUs -------------------------------------------------------------------------------

MODEL_RUN = os.path.join(ROOT, "benchmarks", "gpu", "results", "model-llama2-70b-h100.json")
SHAPE_70B = "synthetic:llama2-70b"


def flops_fwd(sh, seq_len):
    """Multiply-add flops per token of one block: the seven linears and causal attention (QK^T and PV, half)."""
    return 2 * sh["P_blk"] + 2 * sh["heads"] * sh["hd"] * seq_len


def flops_gptq(sh):
    return sum(c ** 3 / 3 + 2 * r * c * c for r, c in sh["lin"].values())


def gpu_costs(bench, model_run=MODEL_RUN):
    g = json.load(open(bench))
    tf32, fp32 = g["ceiling_tf32_gemm_tflops"] * 1e12, g["ceiling_fp32_gemm_tflops"] * 1e12
    gram = g["gram_tf32"]
    gq, gd = g["gptq4_q4_0_q_proj_trail_fp32"], g["gptq4_q4_0_down_proj_trail_fp32"]
    rs, wa = g["rsvd_k256_fp32"], g["wanda50"]
    costs = {
        "device": g["device"],
        "fwd_rate": tf32 * ASSUME["fwd_efficiency"],
        "fp32_rate": fp32 * ASSUME["fp32_efficiency"],
        # seconds per n^2 T of a Gram, measured at n = 28672, T = 262144
        "gram_unit": gram["s"] / (gram["n"] ** 2 * gram["tokens"]),
        # GPTQ: the Cholesky's seconds per cols^3 and the column loop's per rows cols^2, from the two measured shapes
        "chol": {gq["cols"]: gq["cholesky_s"] / gq["cols"] ** 3, gd["cols"]: gd["cholesky_s"] / gd["cols"] ** 3},
        "loop": {gq["cols"]: gq["loop_and_trailing_s"] / (gq["rows"] * gq["cols"] ** 2),
                 gd["cols"]: gd["loop_and_trailing_s"] / (gd["rows"] * gd["cols"] ** 2)},
        "rsvd_unit": rs["s"] / (rs["m"] * rs["n"]),
        "wanda_unit": wa["s"] / (wa["rows"] * wa["cols"]),
        "sparsegpt": {g["sparsegpt50_q_proj_trail_tf32"]["cols"]: g["sparsegpt50_q_proj_trail_tf32"],
                      g["sparsegpt50_down_proj_trail_tf32"]["cols"]: g["sparsegpt50_down_proj_trail_tf32"]},
    }
    if os.path.exists(model_run):
        # the whole Llama-2-70B streamed through one GPU (bench_gpu_model): per-block seconds measured with the
        # forward in bf16 and the Grams in tf32; the plan scales them by flops to other shapes
        m = json.load(open(model_run))
        sh = shape(SHAPE_70B)
        T, n = m["seqs"] * m["ctx"], m["blocks_run"]
        costs["run"] = m
        costs["fwd_per_flop"] = m["propagate_s"] / n / (T * flops_fwd(sh, m["ctx"]))
        costs["gram_unit"] = (m["calib_s"] - m["propagate_s"]) / n / (sum(x * x for x in sh["grams"]) * T)
        costs["gptq_per_flop"] = m["quantize_s"] / n / flops_gptq(sh)
    return costs


def gpu_kernel_check(bench):
    """The one check of the flop scaling the GPU rows use that the kernel timings allow: each step measured at two
    shapes (GPTQ, SparseGPT on 8192x8192 and 8192x28672), the small one predicted from the large one by its flops
    (cols^3/3 for the factor, 2 rows cols^2 for the column loop and trailing updates)."""
    g = json.load(open(bench))
    rows = []
    for step, small, large in (("GPTQ Q4_0, fp32 trailing", "gptq4_q4_0_q_proj_trail_fp32",
                                "gptq4_q4_0_down_proj_trail_fp32"),
                               ("GPTQ g128, tf32 trailing", "gptq4_g128_q_proj_trail_tf32",
                                "gptq4_g128_down_proj_trail_tf32"),
                               ("SparseGPT 50 %, fp32 trailing", "sparsegpt50_q_proj_trail_fp32",
                                "sparsegpt50_down_proj_trail_fp32")):
        a, b = g[small], g[large]
        flops = lambda x: x["cols"] ** 3 / 3 + 2 * x["rows"] * x["cols"] ** 2
        pred = b["s"] * flops(a) / flops(b)
        rows.append({"step": step, "shape": f'{a["rows"]}x{a["cols"]}', "from": f'{b["rows"]}x{b["cols"]}',
                     "measured_s": a["s"], "predicted_s": pred, "error_pct": 100 * (pred / a["s"] - 1)})
    return rows


def gpu_model_check(bench, model_run=MODEL_RUN):
    """The streamed 70B on one GPU, per block, against what the kernel timings and the stated assumptions alone
    predict (the model before that run existed): forward at fwd_efficiency of the tf32 rate, Grams, SparseGPT and
    GPTQ from the kernel table, the rank-64 closed-form healing at fp32_efficiency of the fp32 rate."""
    if not os.path.exists(model_run):
        return []
    g = gpu_costs(bench, model_run="")
    m = json.load(open(model_run))
    sh = shape(SHAPE_70B)
    lin = sh["lin"].values()
    T, n, k = m["seqs"] * m["ctx"], m["blocks_run"], m["rank"] + 8
    fwd = T * flops_fwd(sh, m["ctx"]) / g["fwd_rate"]
    gram = sum(x * x for x in sh["grams"]) * T * g["gram_unit"]
    sgpt = 0.0
    for r, c in lin:  # the measured shape with the nearest width, its loop scaled by rows
        x = nearest(g["sparsegpt"], c)
        sgpt += x["s"] * (c ** 3 / 3 + 2 * r * c * c) / (x["cols"] ** 3 / 3 + 2 * x["rows"] * x["cols"] ** 2)
    gptq = sum(nearest(g["chol"], c) * c ** 3 + nearest(g["loop"], c) * r * c * c for r, c in lin)
    # Cholesky, M = E V, a randomized SVD of M (2 power iterations), A = M Q, B by a triangular solve
    heal = sum(c ** 3 / 3 + 2 * r * c * c + 12 * r * c * k + 2 * r * c * k + k * c * c for r, c in lin) / g["fp32_rate"]
    rows = [("calib (dense forward + 4 Grams)", fwd + gram, m["calib_s"] / n),
            ("prune (SparseGPT 50 %)", sgpt, m["prune_s"] / n), ("quantize (GPTQ Q4_0)", gptq, m["quantize_s"] / n),
            (f'heal (rank {m["rank"]} closed form)', heal, m["heal_s"] / n),
            ("propagate (compressed forward)", fwd, m["propagate_s"] / n)]
    rows.append(("block", sum(r[1] for r in rows), m["seconds_per_block"]))
    return [{"step": a, "predicted_s": p, "measured_s": q, "error_pct": 100 * (p / q - 1)} for a, p, q in rows]


def nearest(table, cols):
    return table[min(table, key=lambda c: abs(math.log(c / cols)))]


def block_seconds(sh, g, Tc, Te, seq_len, waves):
    """Seconds of one block's work per stage on one GPU (all W waves summed for the wave stages)."""
    lin = sh["lin"].values()
    if "fwd_per_flop" in g:  # measured on the whole streamed 70B
        fwd = lambda T: T * flops_fwd(sh, seq_len) * g["fwd_per_flop"]
        gptq = flops_gptq(sh) * g["gptq_per_flop"]
    else:
        fwd = lambda T: T * flops_fwd(sh, seq_len) / g["fwd_rate"]
        gptq = sum(nearest(g["chol"], c) * c ** 3 + nearest(g["loop"], c) * r * c * c for r, c in lin)
    gram = lambda T: sum(n * n for n in sh["grams"]) * T * g["gram_unit"]
    wanda = sum(r * c for r, c in lin) * g["wanda_unit"]
    rsvd = sum(r * c for r, c in lin) * g["rsvd_unit"] * SCAN_RANK / 256
    steps = sum(HEAL_STEPS * (1 - k / waves) for k in range(waves))   # heal.taper
    heal = sum(waves * (c ** 3 / 3 + 4 * r * c * c) + steps * (2 * HEAL_RANK * c * c + 4 * r * c * HEAL_RANK
               + 4 * HEAL_RANK ** 2 * (r + c)) for r, c in lin) / g["fp32_rate"]
    hprod = sum(2 * r * c * c for r, c in lin) * waves / g["fp32_rate"]   # one product with the Gram per wave
    cw, ew = n_passes("decay", waves)
    return {"baseline": (fwd(Te), rsvd), "usage": (fwd(Tc) + gram(Tc), 0),
            "decay": (ew * fwd(Te) + cw * (fwd(Tc) + gram(Tc)) + waves * wanda, 0),
            "heal": (heal, 0), "reinforce": (hprod, 0), "redistribute": (hprod, 0),
            "quantize": (fwd(Tc) + gram(Tc) + fwd(Te) + gptq, 0)}


def predict_gpu(name, spec, g, n_gpu, seqs=128, seq_len=2048, micro=1):
    sh = shape(spec)
    pl = plan(spec, n_gpu, seqs, seq_len, micro)
    Tc, Te = seqs * seq_len, ASSUME["eval_tokens"]
    per_block = block_seconds(sh, g, Tc, Te, seq_len, WAVES)
    lmax = max(p["blocks"] for p in pl)
    Ra = sum(1 for p in pl if p["blocks"] > 0 or p["also"])
    M = math.ceil(seqs / micro)
    bubble = (M + Ra - 1) / M
    head_fwd = 2 * sh["d"] * sh["V"] / g["fwd_rate"]   # the classifier per token (evaluation passes)
    link, fs = ASSUME["link_GBps"] * 1e9, ASSUME["fs_GBps"] * 1e9
    P = sh["L"] * sh["P_blk"]
    rows = []
    for s in ("baseline", "usage", "decay", "heal", "reinforce", "redistribute", "quantize"):
        par, ser = per_block[s]
        comp = par * lmax * (bubble if s in ("baseline", "usage", "decay", "quantize") else 1)
        c, e = n_passes(s, WAVES)
        comp += e * Te * head_fwd
        ser *= sh["L"]                              # the scan runs on rank 0 over every matrix
        by = bytes_per_stage(s, sh, pl, Tc, Te, WAVES)
        act = (c * Tc + e * Te) * sh["d"] * 4 * (Ra - 1)
        # the hand-offs overlap compute except for one micro-batch per hop; rank 0's gathers and writes do not
        comm = (by - act) / link + (Ra - 1) * micro * seq_len * sh["d"] * 4 / link * (c + e)
        coll = min(n_gpu * fs, ASSUME["fs_aggregate_GBps"] * 1e9)
        write, written = 0.0, 0.0
        if s == "decay":
            write = WAVES * P * (ASSUME["rank0_bytes_per_param"] / fs + ASSUME["ckpt_bytes_per_param"] / coll)
            written = WAVES * P * (ASSUME["rank0_bytes_per_param"] + ASSUME["ckpt_bytes_per_param"])
        elif s == "quantize":
            write, written = P * 4.5 / 8 / fs, P * 4.5 / 8
        rows.append({"model": name, "gpus": n_gpu, "stage": s, "compute_s": comp + ser, "comm_s": comm,
                     "write_s": write, "seconds": comp + ser + comm + write, "bytes_activations": act,
                     "bytes_rank0": by - act if s in ("decay", "quantize") else 0,
                     "bytes_written": written})
    mem = max(p["memory_mib"] for p in pl) * 2 ** 20
    host0 = P * 4  # rank 0's working copy of every linear weight (host memory)
    tot = sum(r["seconds"] for r in rows)
    rows.append({"model": name, "gpus": n_gpu, "stage": "total", "compute_s": sum(r["compute_s"] for r in rows),
                 "comm_s": sum(r["comm_s"] for r in rows), "write_s": sum(r["write_s"] for r in rows),
                 "seconds": tot, "bytes_activations": sum(r["bytes_activations"] for r in rows),
                 "bytes_rank0": sum(r["bytes_rank0"] for r in rows),
                 "bytes_written": sum(r["bytes_written"] for r in rows)})
    # the same run if every rank also wrote its own part of the DeltaHistory record, the wave file and the GGUF and
    # nothing went to rank 0: the gathers vanish and every write goes at the collective rate
    for r in rows:
        gather = r["bytes_rank0"] / link
        coll = min(n_gpu * fs, ASSUME["fs_aggregate_GBps"] * 1e9)
        r["seconds_collective_ckpt"] = r["seconds"] - gather - r["write_s"] + r["bytes_written"] / coll
    for r in rows:
        r.update({"gpu_mem_per_rank_gib": mem / 2**30, "rank0_host_gib": host0 / 2**30, "blocks_max": lmax,
                  "fits_h100": mem <= GPU_MEM["H100"], "fits_h200": mem <= GPU_MEM["H200"]})
    return rows


def write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def markdown(val, gpu):
    mib = lambda b: f"{b / 2**20:.1f}"
    num = lambda v, f="{:.0f}": f.format(v) if v != "" else "—"
    pct = lambda v: f"{v:+.0f} %" if v != "" else "—"
    print("## Predicted vs measured: whole runs (CPU, this machine)\n")
    print("| mode | ranks | blocks | wall s: measured | predicted | error | busiest rank: CPU s measured | predicted |"
          " error | its CPU share | load | MiB sent: measured | predicted | peak MiB (max rank): measured | predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in val:
        if r["stage"] != "total":
            continue
        L = re.search(r"layers=(\d+)", r["model"]).group(1)
        print(f'| {r["mode"]} | {r["ranks"]} | {L} | {r["measured_s"]:.0f} | {r["predicted_s"]:.0f} |'
              f' {pct(r["error_pct"])} | {num(r["measured_cpu_s"])} | {num(r["predicted_cpu_s"])} |'
              f' {pct(r["cpu_error_pct"])} | {num(r["cpu_share"], "{:.2f}")} | {r["load_avg"] or "—"} |'
              f' {mib(r["measured_bytes"])} | {mib(r["predicted_bytes"])} | {r["measured_peak_mib"]:.0f} |'
              f' {r["predicted_peak_mib"]:.0f} |')
    print("\n## Predicted vs measured: per stage\n")
    print("| mode | ranks | stage | wall s: measured | predicted | error | busiest rank CPU s: measured | predicted |"
          " error | MiB sent: measured | predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in val:
        if r["stage"] == "total":
            continue
        print(f'| {r["mode"]} | {r["ranks"]} | {r["stage"]} | {r["measured_s"]:.1f} | {r["predicted_s"]:.1f} |'
              f' {pct(r["error_pct"])} | {num(r["measured_cpu_s"], "{:.1f}")} | {num(r["predicted_cpu_s"], "{:.1f}")} |'
              f' {pct(r["cpu_error_pct"])} | {mib(r["measured_bytes"])} | {mib(r["predicted_bytes"])} |')
    print("\n## GPU plan (predicted)\n")
    print("| model | GPUs | total | compute | MPI | file writes | activations sent | to rank 0 | written |"
          " GPU memory / rank | fits H100 / H200 | rank-0 host memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in gpu:
        if r["stage"] != "total":
            continue
        h = lambda s: f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"
        print(f'| {r["model"]} | {r["gpus"]} | {h(r["seconds"])} | {h(r["compute_s"])} | {h(r["comm_s"])} |'
              f' {h(r["write_s"])} | {r["bytes_activations"] / 1e9:.0f} GB | {r["bytes_rank0"] / 1e9:.0f} GB |'
              f' {r["bytes_written"] / 1e9:.0f} GB | {r["gpu_mem_per_rank_gib"]:.1f} GiB |'
              f' {"yes" if r["fits_h100"] else "no"} / {"yes" if r["fits_h200"] else "no"} | {r["rank0_host_gib"]:.0f} GiB |')
    print("\n| model | GPUs | total | speed-up vs 8 GPUs | total, every file written by every rank | speed-up vs 8 |")
    print("|---|---|---|---|---|---|")
    tot = {(r["model"], r["gpus"]): r for r in gpu if r["stage"] == "total"}
    for (m, n), r in tot.items():
        b = tot[(m, 8)]
        print(f'| {m} | {n} | {r["seconds"] / 60:.0f} min | {b["seconds"] / r["seconds"]:.2f} |'
              f' {r["seconds_collective_ckpt"] / 60:.0f} min | {b["seconds_collective_ckpt"] / r["seconds_collective_ckpt"]:.2f} |')
    print("\n| model | GPUs | " + " | ".join(("baseline", "usage", "decay", "heal", "reinforce", "redistribute",
                                               "quantize")) + " |")
    print("|---|---|" + "---|" * 7)
    by = {}
    for r in gpu:
        by.setdefault((r["model"], r["gpus"]), {})[r["stage"]] = r["seconds"]
    for (m, n), s in by.items():
        print(f"| {m} | {n} | " + " | ".join(f'{s[k]:.0f} s' for k in ("baseline", "usage", "decay", "heal",
                                                                        "reinforce", "redistribute", "quantize")) + " |")


WHERE_EVENTS = (("sample.stream", "sampling the synthetic calibration and evaluation streams (CPU)"),
                ("scan.rsvd", "spectral scan, rank 0"),
                ("eval.dense+eval.wave+eval.quant", "evaluation passes (blocks on the GPU)"),
                ("stage.usage+decay.recalib+quant.recalib", "calibration passes with the Grams"),
                ("calib.gram", "  of which the Grams"),
                ("wave.decay", "usage scores and pruning"),
                ("wave.heal", "healing: closed form + Adam (cuda-auto per operation)"),
                ("wave.reinforce", "stress"),
                ("wave.redistribute", "RigL"),
                ("wave.history+decay.write+ckpt.write+model.hash", "history, wave files, checkpoint, hash"),
                ("quant.gptq", "GPTQ, every tensor (masked ones: the CPU's mask-aware loop)"),
                ("cuda.gptq", "  of which GPTQ's column loop on the GPU (dense Q4_0 only)"),
                ("export.gguf+quant.checkpoint", "GGUF and quantized checkpoint"))


def markdown_gpu(rows, consts):
    pct = lambda v: f"{v:+.0f} %" if v != "" else "—"
    num = lambda v, f="{:.1f}": f.format(v) if v != "" else "—"
    print("## Predicted vs measured: GPU ranks (H200, one rank per GPU, NCCL)\n")
    print("| series | mode | GPUs | blocks | wall s: measured | A: predicted | error | B: predicted | error |"
          " NCCL MiB: measured | predicted | peak device MiB (max rank): measured | predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["stage"] != "total":
            continue
        blocks = re.search(r"layers=(\d+)", r["model"])
        L = blocks.group(1) if blocks else shape(r["model"])["L"]
        if r["mode"] == "fit":
            print(f'| {r["series"]} | 1-GPU fit input | 1 | {L} | {r["measured_s"]:.1f} | {r["predicted_s"]:.1f} |'
                  f' {pct(100 * (r["predicted_s"] / r["measured_s"] - 1))} | | | | | | |')
            continue
        mib = lambda b: f"{b / 2**20:.1f}" if b != "" else "—"
        print(f'| {r["series"]} | {r["mode"]} | {r["gpus"]} | {L} | {num(r["measured_s"])} | {r["predicted_s"]:.1f} |'
              f' {pct(r["error_pct"])} | {r["predicted_hop_s"]:.1f} | {pct(r["error_hop_pct"])} |'
              f' {mib(r["measured_nccl_bytes"])} | {mib(r["predicted_nccl_bytes"])} |'
              f' {num(r["measured_peak_mib"], "{:.0f}")} |'
              f' {r["predicted_peak_mib"]:.0f} |')
    print(f"\nModel B's two costs, fitted to the stages of synthetic:tiny's 2-GPU strong point:\n"
          f"{consts[0] * 1e3:.1f} ms per micro-batch and pipeline hop, {consts[1] * 1e3:.0f} ms per wave and block held"
          f" off rank 0.\n")
    print("| mode | GPUs | stage | wall s: measured | A: predicted | error | B: predicted | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["series"] == "tiny" and r["mode"] != "fit" and r["stage"] != "total" and r["measured_s"] != "" \
                and not (r["mode"] == "weak"):
            print(f'| {r["mode"]} | {r["gpus"]} | {r["stage"]} | {r["measured_s"]:.2f} | {r["predicted_s"]:.2f} |'
                  f' {pct(r["error_pct"])} | {r["predicted_hop_s"]:.2f} | {pct(r["error_hop_pct"])} |')
    # where the time goes on one GPU: synthetic:small's two 1-GPU runs
    logs = [gpu_log(os.path.join(GPU_RES, f)) for f in ("scaling-strong-1gpu-h200.log", "scaling-small-1gpu-h200.log")]
    print("\n| synthetic:small, 1 H200: event (rank 0's timer) | host-side Grams s | share | device Grams s | share |")
    print("|---|---|---|---|---|")
    for names, what in WHERE_EVENTS:
        v = [sum(r["events"].get(n, {"avg": 0})["avg"] for n in names.split("+")) for r in logs]
        print(f"| {what} (`{names}`) | {v[0]:.1f} | {100 * v[0] / logs[0]['seconds']['total']:.0f} % | {v[1]:.1f} |"
              f" {100 * v[1] / logs[1]['seconds']['total']:.0f} % |")
    rest = [r["seconds"]["total"] - sum(sum(r["events"].get(n, {"avg": 0})["avg"] for n in names.split("+"))
                                        for names, what in WHERE_EVENTS if not what.startswith(" "))
            for r in logs]
    print(f"| the rest (setup, the stages' own logic, the budget, the report) | {rest[0]:.1f} |"
          f" {100 * rest[0] / logs[0]['seconds']['total']:.0f} % | {rest[1]:.1f} |"
          f" {100 * rest[1] / logs[1]['seconds']['total']:.0f} % |")
    print(f"| whole run | {logs[0]['seconds']['total']:.1f} | | {logs[1]['seconds']['total']:.1f} | |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--gpu-bench", default=os.path.join(ROOT, "benchmarks", "gpu", "results", "v5_bench_gpu.json"))
    ap.add_argument("--markdown", action="store_true", help="print the tables docs/performance.md shows")
    ap.add_argument("--ingest", nargs=4, metavar=("MODE", "RANKS", "LOG", "RUN_DIR"),
                    help="add one run's events and sizes to --out (what run.sh does) and stop")
    a = ap.parse_args()
    if a.ingest:
        ingest(a.ingest[0], int(a.ingest[1]), a.ingest[2], a.ingest[3], a.out)
        return
    val, fit = validate(a.out, a.out)
    gval, gconst = gpu_validate(a.out)
    g = gpu_costs(a.gpu_bench)
    gpu = [r for name, spec in MODELS.items() for n in GPU_COUNTS for r in predict_gpu(name, spec, g, n)]
    write(os.path.join(a.out, "perfmodel-plan.csv"), gpu)
    if a.markdown:
        markdown(val, gpu)
        print()
        markdown_gpu(gval, gconst)
        chk = gpu_model_check(a.gpu_bench)
        if chk:
            print("\n| one block of the streamed Llama-2-70B, one H100 | predicted from kernels s | measured s | error |")
            print("|---|---|---|---|")
            for r in chk:
                print(f'| {r["step"]} | {r["predicted_s"]:.2f} | {r["measured_s"]:.2f} | {r["error_pct"]:+.0f} % |')
        print("\n| GPU step | shape | predicted from | measured s | predicted s | error |\n|---|---|---|---|---|---|")
        for r in gpu_kernel_check(a.gpu_bench):
            print(f'| {r["step"]} | {r["shape"]} | {r["from"]} | {r["measured_s"]:.4f} | {r["predicted_s"]:.4f} |'
                  f' {r["error_pct"]:+.0f} % |')
        print("\n| stage (1-rank fit) | fixed s | per block s | rank-0 serial, fixed s | rank-0 serial, per block s |")
        print("|---|---|---|---|---|")
        for s, (x, b, wa, wb) in fit.items():
            print(f"| {s} | {x:.2f} | {b:.3g} | {wa:.2f} | {wb:.3f} |")
    print(f"wrote {a.out}/perfmodel-validation.csv, perfmodel-gpu-validation.csv and perfmodel-plan.csv",
          file=sys.stderr)


if __name__ == "__main__":
    main()
