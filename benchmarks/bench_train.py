"""Quick-profile training runs on this machine: wall time, peak memory, dev accuracy.

Each run (pre-trained and from scratch) executes in its own subprocess with a fresh cache so
its peak resident memory is its own. Prints a table; targets from the issue: ≤ 3 minutes per
run, ≤ 3 GB peak RSS, dev accuracy about 0.8 (pre-trained) and 0.65 (scratch).

    .venv/bin/python benchmarks/bench_train.py [--n-train 2000] [--epochs 3]
        [--inits pretrained,scratch] [--seeds 0] [--uniform-batches] [--precisions fp32,bf16]

``--seeds 0,1,2`` shows the seed-to-seed spread (the scratch run sits near the edge of the chance
plateau at this budget); ``--uniform-batches`` turns length grouping off (uniform random batches, the earlier default).
``--precisions fp32,bf16`` trains every run in both precisions (bf16 = CPU autocast, the quick
profile's setting) and prints the per-step time ratio, the final training loss (mean of the last 5 %
of steps) and the dev metrics of both, so a precision change is judged on the same runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from bertscape import RunSpec
from bertscape.runs.train import train
spec = RunSpec(**json.loads(sys.argv[1]))
t = time.perf_counter()
run = train(spec, progress=False)
wall = time.perf_counter() - t
tail = run.steps["loss"].tail(max(1, len(run.steps) // 20)).mean()
print(json.dumps({"wall_s": wall, "train_s": run.meta["seconds"], "steps": run.meta["total_steps"],
                  "dev": run.final, "train_loss_end": float(tail), "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--task", default="movies")
    ap.add_argument("--inits", default="pretrained,scratch", help="comma-separated starting points")
    ap.add_argument("--seeds", default="0", help="comma-separated run seeds")
    ap.add_argument("--uniform-batches", action="store_true", help="RunSpec(group_by_length=False)")
    ap.add_argument("--precisions", default="fp32", help="comma-separated training precisions (fp32, bf16)")
    args = ap.parse_args()
    rows = []
    runs = [(i, s, p) for i in args.inits.split(",") for s in (int(x) for x in args.seeds.split(","))
            for p in args.precisions.split(",")]
    for init, seed, prec in runs:
        spec = {"task": args.task, "init": init, "seed": seed, "n_train": args.n_train, "epochs": args.epochs,
                "device": "cpu", "group_by_length": not args.uniform_batches, "precision": prec}
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "BERTSCAPE_CACHE": cache, "BERTSCAPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, check=True,
                                 capture_output=True, text=True).stdout
        rows.append((init, seed, prec, json.loads(out.strip().splitlines()[-1])))
    batching = "uniform batches" if args.uniform_batches else "length-grouped batches"
    print(f"\nquick profile: {args.task}, {args.n_train} sentences x {args.epochs} epochs, max_length 64, "
          f"batch 32, {batching}")
    print(f"{'init':<11} {'seed':>4} {'precision':>9} {'wall (s)':>9} {'train (s)':>10} {'s/step':>7} "
          f"{'peak RSS (GB)':>14} {'train loss':>10} {'dev loss':>9} {'dev acc':>8}")
    for init, seed, prec, r in rows:
        print(f"{init:<11} {seed:>4} {prec:>9} {r['wall_s']:>9.1f} {r['train_s']:>10.1f} {r['train_s'] / r['steps']:>7.2f} "
              f"{r['peak_rss_gb']:>14.2f} {r['train_loss_end']:>10.4f} {r['dev']['loss']:>9.4f} {r['dev']['accuracy']:>8.3f}")
    precs = args.precisions.split(",")
    if len(precs) > 1:
        per_step = {p: statistics.median(r["train_s"] / r["steps"] for *_, q, r in rows if q == p) for p in precs}
        print("median s/step: " + ", ".join(f"{p} {v:.3f}" for p, v in per_step.items())
              + f"; ratio {precs[0]}/{precs[1]} = {per_step[precs[0]] / per_step[precs[1]]:.2f}x")
    by_init = {}
    for init, _, _, r in rows:
        by_init.setdefault(init, []).append(r["dev"]["accuracy"])
    for init, accs in by_init.items():
        print(f"{init}: dev accuracy median {statistics.median(accs):.3f} over {len(accs)} seed(s)"
              f"{f', range {min(accs):.3f}-{max(accs):.3f}' if len(accs) > 1 else ''}")
    if {"pretrained", "scratch"} <= set(by_init):
        gap = statistics.median(by_init["pretrained"]) - statistics.median(by_init["scratch"])
        print(f"dev accuracy gap PT - RI (medians): {gap:+.3f}")


if __name__ == "__main__":
    main()
