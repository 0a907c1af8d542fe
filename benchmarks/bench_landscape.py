"""Landscape engine speed: grid throughput vs plain inference, vs `loss-landscapes`, curve/surface times.

Run once (all numbers are measured in the same process, so ratios compare like with like):

    .venv/bin/python benchmarks/bench_landscape.py            # default: 512 sentences, 5 grid points
    .venv/bin/python benchmarks/bench_landscape.py --quick    # 128 sentences, 3 points (smoke test)
    .venv/bin/python benchmarks/bench_landscape.py --full     # also time a full 41-point curve and 21×21 surface

Measured:
  (a) grid-evaluation throughput (tokens/s) of :func:`bertscape.geometry.grids.curve_1d` against plain batched
      inference of the same model on the same length-sorted, dynamically padded batches
      (``torch.inference_mode``, logits only). Target ratio ≥ 0.9.
  (b) per-grid-point time against the PyPI package ``loss-landscapes`` 3.0.6
      (``linear_interpolation`` with ``deepcopy_model=True`` and a loss metric written the way its docs
      show: batches of 64 padded to max_length 128, random order, no inference mode). If the package
      cannot be imported, a plain loop (deep-copy the model per point, same padding/order) stands in.
      Target: ours ≥ 3× faster.
  (c) a 41-point 1D curve and a 21×21 surface on ``--n`` sentences in fp32 with the embedded model:
      extrapolated from the median per-point time of (a) unless ``--full`` (then measured).
      Targets ≤ 1.5 min and ≤ 10 min (at 512 sentences).

The direction is a filter-normalised random direction scaled to 1 % of θ0 (the timing does not depend
on which direction is used). Results (a table) are printed and written into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time

import _common  # noqa: E402  (the repository root on sys.path)

_common.offline_quiet()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bertscape.data.tasks import collate, encode, load_split, subset_indices  # noqa: E402
from bertscape.geometry import directions as D
from bertscape.geometry import grids
from bertscape.runs.evaluate import forward_logits, loss_fn, prepare_eval  # noqa: E402
from bertscape.runs.models import build_model, load_tokenizer, trainable_state  # noqa: E402


def plain_inference(model, es, precision: str) -> float:
    """Seconds for one pass of logits over the set's batches (no loss, no metrics)."""
    dtype = torch.bfloat16 if precision == "bf16" else None
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for b in es.batches:
            forward_logits(model, b)
    return time.perf_counter() - t


class PaddedLoss:
    """A ``loss_landscapes`` metric as its docs suggest: mean loss over fixed batches (padded to 128, random
    order), computed without inference mode."""

    def __init__(self, enc, batch_size: int = 64, max_length: int = 128, seed: int = 0):
        order = np.random.default_rng(seed).permutation(len(enc))
        self.batches = []
        for i in range(0, len(order), batch_size):
            b = collate(enc, order[i:i + batch_size])
            pad = max_length - b["input_ids"].shape[1]
            self.batches.append({k: (torch.nn.functional.pad(v, (0, pad)) if v.dim() == 2 else v) for k, v in b.items()})
        self.task = enc.task

    def __call__(self, model_wrapper) -> float:
        net = model_wrapper.modules[0] if hasattr(model_wrapper, "modules") else model_wrapper
        total, n = 0.0, 0
        for b in self.batches:
            logits = forward_logits(net, b)
            total += float(loss_fn(self.task, logits, b["labels"], reduction="sum"))
            n += len(b["labels"])
        return total / n


def baseline_loss_landscapes(model, end_model, metric: PaddedLoss, steps: int) -> tuple[float, str]:
    """Median-free mean per-point seconds of the package's ``linear_interpolation`` (or the stand-in loop)."""
    try:
        import loss_landscapes
        from loss_landscapes.metrics import Metric

        class _M(Metric):
            def __call__(self, model_wrapper):
                return metric(model_wrapper)

        t = time.perf_counter()
        loss_landscapes.linear_interpolation(model, end_model, _M(), steps=steps, deepcopy_model=True)
        return (time.perf_counter() - t) / steps, "loss-landscapes 3.0.6 linear_interpolation"
    except Exception as exc:  # the 2019 package may not run on current torch/numpy
        print(f"loss-landscapes unavailable ({type(exc).__name__}: {exc}); using the plain deep-copy loop",
              file=sys.stderr)
    t0, t1 = trainable_state(model), trainable_state(end_model)
    t = time.perf_counter()
    for a in np.linspace(0, 1, steps):
        net = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in net.named_parameters():
                p.copy_(t0[k] + float(a) * (t1[k] - t0[k]))
        metric(net)
    return (time.perf_counter() - t) / steps, "deep-copy loop (stand-in)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512, help="sentences evaluated per point (default 512)")
    ap.add_argument("--points", type=int, default=5, help="grid points timed for (a) (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of plain inference (default 3)")
    ap.add_argument("--baseline-steps", type=int, default=3, help="points timed for the baseline (default 3)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--quick", action="store_true", help="128 sentences, 3 points, 2 reps, 2 baseline points")
    ap.add_argument("--full", action="store_true", help="measure the 41-point curve and 21×21 surface in full")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.points, args.reps, args.baseline_steps = 128, 3, 2, 2

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = load_tokenizer("embedded")
    enc_all = encode(load_split("movies", "train"), tok, 64)
    enc = enc_all.select(subset_indices(enc_all.labels, args.n, 0, stratify=True))
    es = prepare_eval(enc)
    model = build_model("embedded", "pretrained", 2, 0).eval()
    theta0 = trainable_state(model)
    d1 = D.scale(D.random_direction(theta0, seed=1, policy="layer"), 0.01)
    n_tokens = es.n_tokens
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
          f"{args.n} sentences, {n_tokens} tokens, precision {args.precision}", file=sys.stderr)

    plain_inference(model, es, args.precision)  # warm-up
    plain = [plain_inference(model, es, args.precision) for _ in range(args.reps)]
    stamps: list[float] = []
    alphas = np.linspace(0.0, 1.0, args.points)
    t_start = time.perf_counter()
    grids.curve_1d(model, theta0, d1, alphas, {"train": es}, precision=args.precision, progress=False,
               callback=lambda i, v: stamps.append(time.perf_counter()))
    per_point = np.diff([t_start] + stamps)
    grid_pp = float(np.median(per_point))
    plain_med = statistics.median(plain)
    thr_plain, thr_grid = n_tokens / plain_med, n_tokens / grid_pp

    end_model = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in end_model.named_parameters():
            p.add_(d1[k])
    base_pp, base_name = baseline_loss_landscapes(model, end_model, PaddedLoss(enc), args.baseline_steps)

    rows = [("plain batched inference (sorted, dynamic padding)", f"{plain_med:.2f} s/pass", f"{thr_plain:,.0f}", ""),
            ("grid point, curve_1d (median)", f"{grid_pp:.2f} s/point", f"{thr_grid:,.0f}",
             f"(a) throughput ratio {thr_grid / thr_plain:.2f} (target ≥ 0.9)"),
            (f"baseline: {base_name}", f"{base_pp:.2f} s/point", "",
             f"(b) speed-up {base_pp / grid_pp:.1f}× (target ≥ 3×)")]
    scale512 = 512 / args.n
    if args.full:
        t = time.perf_counter()
        grids.curve_1d(model, theta0, d1, np.round(np.linspace(-0.5, 1.5, 41), 10), {"train": es}, precision=args.precision, progress=True)
        curve_s = time.perf_counter() - t
        d2 = D.orthogonalise(D.random_direction(d1, seed=2), d1)
        t = time.perf_counter()
        grids.surface_2d(model, theta0, d1, d2, np.linspace(-0.5, 1.5, 21), np.linspace(-1, 1, 21), {"train": es},
                     precision=args.precision, progress=True)
        surf_s = time.perf_counter() - t
        how = "measured in full"
    else:
        curve_s, surf_s = 41 * grid_pp, 441 * grid_pp
        how = f"extrapolated: points × median s/point at {args.n} sentences"
    rows.append((f"1D curve, 41 points, {args.n} sentences", f"{curve_s / 60:.2f} min", "",
                 f"(c) {how}" + (f"; ≈ {curve_s * scale512 / 60:.2f} min at 512 (target ≤ 1.5)" if args.n != 512
                                 else " (target ≤ 1.5 min)")))
    rows.append((f"2D surface, 21×21, {args.n} sentences", f"{surf_s / 60:.2f} min", "",
                 f"(c) {how}" + (f"; ≈ {surf_s * scale512 / 60:.2f} min at 512 (target ≤ 10)" if args.n != 512
                                 else " (target ≤ 10 min)")))

    cmd = "python benchmarks/bench_landscape.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = "| measurement | time | tokens/s | ratio / note |\n|---|---|---|---|"
    table = header + "\n" + "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    meta = (f"Command: `{cmd.strip()}` — {time.strftime('%Y-%m-%d')}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} CPU threads, embedded all-MiniLM-L6-v2, movies train subset of {args.n} "
            f"sentences ({n_tokens} tokens, max_length 64), precision {args.precision}; per-point times are "
            f"medians of {len(per_point)} points (per-point: {', '.join(f'{x:.2f}' for x in per_point)} s); plain "
            f"inference median of {args.reps} passes; load average at the end {os.getloadavg()[0]:.1f} "
            f"(other jobs on the machine slow every row alike; the ratios compare rows of one run).")
    print(table)
    print(meta)
    if not args.no_write:
        _common.write_results("bench_landscape", f"## Landscape engine (bench_landscape.py)\n\n{meta}\n\n{table}")


if __name__ == "__main__":
    main()
