"""fp32 against bf16 autocast on this CPU, and on the same CPU limited to AVX2 (no native bf16).

What the book's precision rule rests on: on a CPU with native bf16 (AVX-512 BF16 / AMX) bf16 autocast
is faster than fp32; on one without, PyTorch emulates bf16 and it is many times slower. Each setting
runs in its own process (the instruction-set limits must be set before torch loads). In each, the
same two workloads of the quick profile run alternately in fp32 and bf16, ``--pairs`` times:

* a training step: forward, backward and AdamW on a batch of 32 movie sentences (the embedded MiniLM,
  pre-trained weights);
* an evaluation: 128 sentences in batches of 64, as the landscape grids evaluate them.

Each row gives the median seconds in each precision and the median of the pairs' ratios (fp32 time /
bf16 time: above 1, bf16 is faster), and what ``precision="auto"`` chooses there. The AVX2 row limits
oneDNN, ATen and MKL to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
MKL_ENABLE_INSTRUCTIONS=AVX2``): a stand-in for a CPU without native bf16 whose fp32 is still this
machine's. Nothing else should run meanwhile (other jobs slow both precisions, but not alike).

    .venv/bin/python benchmarks/bench_precision.py [--pairs 5] [--no-avx2] [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

import _common

AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

CHILD = r"""
import json, statistics, sys, time
import torch
sys.path.insert(0, sys.argv[2])
from bertscape import RunSpec
from bertscape.data.tasks import train_batches
from bertscape.geometry import landscape
from bertscape.runs.evaluate import evaluate, forward_logits, loss_fn
from bertscape.runs.models import build_model
from bertscape.runs.precision import cpu_calibration
from bertscape.runs.train import run_data

pairs = int(sys.argv[1])
spec = RunSpec(task="movies", init="pretrained", n_train=256, device="cpu", precision="fp32")
enc, _ = run_data(spec)
info = spec.task_info
model = build_model(spec.model, "pretrained", info.num_labels, 0, info.is_regression)
opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
batches = train_batches(enc, 32, torch.Generator().manual_seed(0), group_by_length=True)
batch = max(batches, key=lambda b: b["input_ids"].shape[1])   # the widest batch: a full step's work
evalset = landscape.eval_sets_for_run(spec, 128, 0, "cpu", 64, splits=("train",))["train"]

def step(dtype):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits = forward_logits(model, batch)
    loss = loss_fn(info, logits, batch["labels"])
    opt.zero_grad(); loss.backward(); opt.step()
    return time.perf_counter() - t

def ev(dtype):
    t = time.perf_counter()
    evaluate(model, evalset, "bf16" if dtype is not None else "fp32")
    return time.perf_counter() - t

out = {}
for name, fn in (("training step", step), ("evaluation of 128 sentences", ev)):
    fn(None); fn(torch.bfloat16)          # warm-up of both paths
    times = {"fp32": [], "bf16": []}
    for i in range(pairs):
        order = ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")   # neither always goes first
        for p in order:
            times[p].append(fn(torch.bfloat16 if p == "bf16" else None))
    out[name] = times
cal = cpu_calibration()
print(json.dumps({"times": out, "auto": "bf16" if cal["bf16_faster"] else "fp32", "calibration": cal["speedup"],
                  "threads": torch.get_num_threads()}))
"""


def _child(pairs: int, extra_env: dict[str, str]) -> dict:
    env = {**os.environ, **extra_env, "BERTSCAPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(pairs), str(_common.ROOT)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process with {extra_env or 'no ISA limit'} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import statistics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5, help="alternating fp32/bf16 pairs per workload (default 5)")
    ap.add_argument("--no-avx2", action="store_true", help="skip the run limited to AVX2")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md as it is")
    args = ap.parse_args()
    _common.offline_quiet()
    settings = [("this CPU", {})] + ([] if args.no_avx2 else [("limited to AVX2 (no native bf16)", AVX2)])
    rows = ["| CPU as | workload | fp32 (s, median) | bf16 autocast (s, median) | fp32 / bf16 (median of pairs) "
            "| auto chooses |", "|---|---|---|---|---|---|"]
    for label, env in settings:
        r = _child(args.pairs, env)
        for work, t in r["times"].items():
            ratio = statistics.median(a / b for a, b in zip(t["fp32"], t["bf16"]))
            rows.append(f"| {label} | {work} | {statistics.median(t['fp32']):.3f} | {statistics.median(t['bf16']):.3f} "
                        f"| {ratio:.2f}× | {r['auto']} (calibration {r['calibration']:.2f}×) |")
    table = "\n".join(rows)
    header = (f"Command: `python benchmarks/bench_precision.py --pairs {args.pairs}` — {datetime.date.today()}; "
              f"{args.pairs} alternating pairs per workload, each setting in its own process. Above 1×, bf16 "
              f"autocast is faster than fp32.")
    machine = _common.machine_line()
    print(header, table, machine, sep="\n\n")
    if not args.no_write:
        _common.write_results("bench_precision", f"## Precision: fp32 vs bf16 autocast (bench_precision.py)\n\n"
                                                 f"{header}\n\n{table}\n\n{machine}")


if __name__ == "__main__":
    main()
