"""Layer analysis speed and memory: every measure of bertscape.geometry.layers on a quick-profile run.

    .venv/bin/python benchmarks/bench_layers.py                 # the quick pre-trained run (trained first if not cached)
    .venv/bin/python benchmarks/bench_layers.py --init scratch  # the same for the from-scratch run
    .venv/bin/python benchmarks/bench_layers.py --settings defaults  # analyze_run's own defaults

Settings ``quick`` (the default) are the quick profile's layer settings (α grid, bf16 evaluations,
per-layer Hessian on ``hessian_n_eval`` sentences with ``layer_hessian_steps`` Lanczos steps, CKA
token budget) on 512 training and all 512 dev sentences of the run; ``defaults`` are
:func:`bertscape.geometry.layers.analyze_run`'s defaults: the default profile's sizes too (``curve_n_eval``
training and dev sentences, 32-sentence Hessian, 4 steps), but ``precision="auto"`` (fp32 on CPU).
Before issue 12 they were heavier (512 sentences, 64-sentence Hessian, 8 steps: RESULTS.md).
Measures run one after another in this process; the table gives each one's time and the peak
resident memory reached by the end of it.

Target (issue 5): all measures of a quick-profile run (embedded MiniLM-L6, movies, 512 dev sentences)
in ≤ 5 minutes together on a 2-core CPU machine, peak memory ≤ 3 GB. The run itself
(``RunSpec()``: 2,000 training sentences × 3 epochs) is trained in a child process when it is not in the
cache, so the peak RSS reported here is the analysis alone (model, θ0, θ1, evaluation sets, CKA features).
Every measure is recomputed (``force=True``); the cache is the one ``$BERTSCAPE_CACHE`` names.

Prints a table (and, with ``--write``, puts it into benchmarks/RESULTS.md between
``<!-- bench_layers:start -->`` and ``<!-- bench_layers:end -->``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import _common  # noqa: E402  (the repository root on sys.path)

_common.offline_quiet()
ROOT = _common.ROOT

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bertscape.geometry import layers as LY
from bertscape.runs.spec import RunSpec  # noqa: E402
from bertscape.runs.train import load_run  # noqa: E402

BUDGET_S = 300.0
BUDGET_RSS_GB = 3.0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB on Linux


def ensure_run(spec: RunSpec):
    """The cached run, training it in a child process first if needed (so its memory is not counted)."""
    run = load_run(spec)
    if run is not None:
        return run, 0.0
    t = time.perf_counter()
    code = ("import json; from bertscape.runs.spec import RunSpec; from bertscape.runs.train import train; "
            f"train(RunSpec(**json.loads({json.dumps(spec.to_dict())!r})))")  # exactly this run
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    run = load_run(spec)
    assert run is not None
    return run, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", default="pretrained", choices=("pretrained", "scratch"))
    ap.add_argument("--settings", default="quick", choices=("quick", "defaults"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--run-folder", default=None,
                    help="use this cached run folder (e.g. one trained before the RunSpec key changed) instead of "
                         "training RunSpec(init=...); its meta.json spec must match apart from new fields")
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from bertscape.book.profiles import get_profile

    quick = get_profile("quick")
    spec = quick.run_spec("movies", args.init)  # the book's main run: `make book` caches it
    if args.run_folder:
        import json

        from bertscape.runs.train import RunResult

        folder = Path(args.run_folder)
        meta = json.loads((folder / "meta.json").read_text())
        hist = json.loads((folder / "history.json").read_text())
        old = {k: v for k, v in meta["spec"].items() if k in spec.to_dict()}
        spec = spec.replace(**old)
        run, train_s = RunResult(spec, folder, pd.DataFrame(hist["steps"]), pd.DataFrame(hist["evals"]),
                                 list(meta["checkpoint_steps"]), meta), 0.0
    else:
        run, train_s = ensure_run(spec)
    rss_before = peak_rss_gb()

    if args.settings == "quick":
        kw = dict(n_train_eval=512, n_dev_eval=512, alphas=quick.layer_alphas, precision=quick.curve_precision,
                  n_hessian=quick.hessian_n_eval, lanczos_steps=quick.layer_hessian_steps, cka_tokens=quick.cka_tokens)
    else:
        kw = {}
    import inspect

    sig = inspect.signature(LY.analyze_run).parameters
    used = {k: kw.get(k, sig[k].default) for k in ("n_train_eval", "n_dev_eval", "alphas", "views", "orders",
                                                    "precision", "n_hessian", "lanczos_steps",
                                                    "cka_tokens")}
    rss_after, seconds = {}, {}
    t = time.perf_counter()
    for m in LY.MEASURES:  # one at a time (wall time of each call), to see which sets the memory peak
        t_m = time.perf_counter()
        LY.analyze_run(run, [m], force=True, device="cpu", progress=False, **kw)
        seconds[m], rss_after[m] = time.perf_counter() - t_m, peak_rss_gb()
    total = time.perf_counter() - t
    rss = peak_rss_gb()
    rep = LY.analyze_run(run, device="cpu", progress=False, **kw)  # all measures, from the cache just written
    defaults = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in used.items())
    notes = {
        "change": "relative change per group and per sub-module (no evaluation)",
        "curves": f"{rep.curves.sizes['group']} groups × {rep.curves.sizes['alpha']} α, train + dev",
        "restore": f"{len(rep.restore)} rows, {rep.restore['restored'].nunique()} distinct points, train + dev",
        "curvature": f"top Hessian eigenvalue per group, {int(rep.curvature['iterations'].max())} Lanczos steps, "
                     f"{used['n_hessian']} sentences",
        "cka": f"{int(rep.cka['n_tokens'].iloc[0])} dev tokens, θ0 and θ1 hidden states",
    }
    rows = [{"measure": m, "seconds": round(seconds[m], 1), "peak RSS after (GB)": round(rss_after[m], 2),
             "what": notes[m]} for m in LY.MEASURES]
    rows.append({"measure": "total", "seconds": round(total, 1), "peak RSS after (GB)": round(rss, 2),
                 "what": f"targets ≤ {BUDGET_S:.0f} s: {'met' if total <= BUDGET_S else 'NOT met'}; "
                         f"≤ {BUDGET_RSS_GB:.0f} GB: {'met' if rss <= BUDGET_RSS_GB else 'NOT met'}"})
    table = pd.DataFrame(rows)

    threads = torch.get_num_threads()
    load = os.getloadavg()[0]
    flags = (f"{' --init ' + args.init if args.init != 'pretrained' else ''}"
             f"{' --settings ' + args.settings if args.settings != 'quick' else ''}")
    header = (f"Command: `python benchmarks/bench_layers.py{flags}` — "
              f"{datetime.date.today()}, torch {torch.__version__}, {threads} CPU threads, {platform.machine()}, "
              f"run {spec.label()} (embedded MiniLM-L6, movies, 2,000 train / 512 dev sentences), "
              f"settings '{args.settings}': {defaults}. Peak RSS of the analysis: {rss:.2f} GB (before it: {rss_before:.2f} GB; "
              f"target ≤ {BUDGET_RSS_GB:.0f} GB). 1-minute load average at the end: {load:.1f} "
              f"(other jobs sharing the cores slow every number here).")
    if train_s:
        header += f" The run was trained first in {train_s / 60:.1f} min (not counted)."
    md = table.to_markdown(index=False) if _has_tabulate() else table.to_string(index=False)
    print(header)
    print(md)
    print("\nrelative change by group:\n", rep.change[["relative_change"]].T.round(4).to_string())
    print("\nper-layer curve summary (others at θ1):\n",
          rep.curve_summary.loc["theta1"][["train_loss_rise", "train_loss_curvature", "dev_metric_rise"]]
          .round(4).to_string())
    print("\nrestore:\n", rep.restore[["order", "k", "restored", "dev_metric", "train_loss"]].round(4).to_string())
    print("\ncurvature:\n", rep.curvature[["eigenvalue", "residual"]].round(4).to_string())
    print("\nCKA θ0 vs θ1:\n", rep.cka[["cka"]].T.round(4).to_string())
    if args.write:
        _common.write_results("bench_layers", f"## Layer analysis (bench_layers.py)\n\n{header}\n\n{md}")


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
