"""Quick-profile training runs on this machine: wall time, peak memory, dev accuracy.

Each run (pre-trained and from scratch) executes in its own subprocess with a fresh cache so
its peak resident memory is its own. Prints a table; targets from the issue: ≤ 3 minutes per
run, ≤ 3 GB peak RSS, dev accuracy about 0.8 (pre-trained) and 0.65 (scratch).

    .venv/bin/python benchmarks/bench_train.py [--n-train 2000] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
from bertscape import RunSpec
from bertscape.train import train
spec = RunSpec(**json.loads(sys.argv[1]))
t = time.perf_counter()
run = train(spec, progress=False)
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "train_s": run.meta["seconds"], "steps": run.meta["total_steps"],
                  "dev": run.final, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--task", default="movies")
    args = ap.parse_args()
    rows = []
    for init in ("pretrained", "scratch"):
        spec = {"task": args.task, "init": init, "n_train": args.n_train, "epochs": args.epochs, "device": "cpu"}
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "BERTSCAPE_CACHE": cache, "BERTSCAPE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, check=True,
                                 capture_output=True, text=True).stdout
        rows.append((init, json.loads(out.strip().splitlines()[-1])))
    print(f"\nquick profile: {args.task}, {args.n_train} sentences x {args.epochs} epochs, max_length 64, batch 32")
    print(f"{'init':<11} {'wall (s)':>9} {'train (s)':>10} {'s/step':>7} {'peak RSS (GB)':>14} {'dev acc':>8}")
    for init, r in rows:
        print(f"{init:<11} {r['wall_s']:>9.1f} {r['train_s']:>10.1f} {r['train_s'] / r['steps']:>7.2f} "
              f"{r['peak_rss_gb']:>14.2f} {r['dev']['accuracy']:>8.3f}")
    pt, ri = rows[0][1], rows[1][1]
    print(f"dev accuracy gap PT - RI: {pt['dev']['accuracy'] - ri['dev']['accuracy']:+.3f}")


if __name__ == "__main__":
    main()
