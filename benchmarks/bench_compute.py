"""The execution layer's cost and gain: one grid in-process, on 1 local Dask worker, on 2.

    .venv/bin/python benchmarks/bench_compute.py            # quick-profile unit sizes (9×7, 224 sentences, bf16)
    .venv/bin/python benchmarks/bench_compute.py --points 5  # a smaller grid
    .venv/bin/python benchmarks/bench_compute.py --write     # also put the table into benchmarks/RESULTS.md

The grid is a θ0-centred surface of a small run of the embedded MiniLM (``--points`` × ``--beta-points``
points, the quick profile's ``grid_n_eval`` = 224 training and 224 dev sentences a point, its ``grid_precision``
bf16 and ``eval_batch_size`` 64, every sentence's loss kept): the unit of work the book sends to
workers, a grid shard, at the quick profile's size. Measured:

* in-process: ``landscape.run_surface`` in this process on one torch thread, once in memory (the
  plain loop) and once stored in the cache as the book computes it without an executor (partial
  saves every 30 s, the finished grid written);
* 1 worker: the same grid as shards (``compute.SHARDS_PER_WORKER`` per worker) on a
  ``LocalCluster`` of one single-threaded worker process, merged by the driver; the difference to
  the plain loop is the executor's overhead (the driver's probe of the cache, submission, each
  worker's build of the grid's inputs for its first shard, the shard files, the merge and the
  read-back), and the part of it spent outside the units is shown on its own;
* 2 workers: the speed-up over 1 worker (bounded by the cores the machine really has free);
* bare tasks: the round trip of a no-op unit through the executor, against a plain call.

Workers are started and warmed up before timing (bertscape imported, the run's data tokenised and
its model built, as for a sweep's first unit; ``--cold-workers`` times that too); each measurement
starts from a cache without the grid and from workers without the grid's inputs (the model stays
resident: a sweep computes many grids of one run). Every configuration runs ``--repeats`` times, in
an order that rotates from pass to pass; the table gives medians (wall-clock seconds) and the range,
and each ratio is the median of the passes' own ratios: the machine's speed drifts by several per
cent over minutes, as much as the overhead being measured.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from typing import Callable

import _common  # the repository root on sys.path

_common.offline_quiet()


def _warm() -> None:
    import bertscape.geometry.landscape  # noqa: F401  (workers pay the torch/transformers import before timing)


def _warm_run(spec) -> None:
    """On a worker: the run's data tokenised and its θ0 model resident (what its first unit would do)."""
    from bertscape.base.cache import cache_dir
    from bertscape.compute import executor as compute
    from bertscape.runs import train

    root = str(cache_dir())
    compute._forget_memos_of_other_caches(root)  # as the first unit would; it keeps what follows
    train.run_data(spec)
    compute.resident_model(spec, "theta0", "cpu", root)


def _forget_grid_inputs() -> None:
    """On a worker: drop the resident grid inputs (each timed grid builds its own, as a new grid does)."""
    from bertscape.geometry import landscape

    landscape._resident_grid_inputs.cache_clear()


def _point_seconds() -> float:
    """In this process (driver or worker): the seconds spent evaluating grid points since the last
    call, then the count starts again. The first call wraps ``grids.evaluate_sets`` (what the grid
    engine calls once per point) with a timer; the grids themselves are unchanged."""
    import time as _time

    from bertscape.geometry import grids

    timed = grids.evaluate_sets
    if not hasattr(timed, "seconds"):
        inner = timed

        def timed(*args, **kwargs):
            start = _time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timed.seconds += _time.perf_counter() - start

        timed.seconds = 0.0
        grids.evaluate_sets = timed
    seconds, timed.seconds = timed.seconds, 0.0
    return seconds


def _few_points(spec, kw: dict, n: int) -> float:
    """Seconds to evaluate the grid's first ``n`` points (in memory) in this process, after one
    point to warm up: the same work in the driver and on a worker, to compare their speed."""
    import time as _time

    from bertscape.compute import executor as _compute
    from bertscape.geometry import landscape as _landscape

    run = _compute.cached_run(spec)
    _landscape.run_surface(run, store=None, max_points=1, **kw)
    start = _time.perf_counter()
    _landscape.run_surface(run, store=None, max_points=n, **kw)
    return _time.perf_counter() - start


def _noop(x: int) -> int:
    return x


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def _spread(xs: list[float]) -> str:
    return f"{min(xs):.1f}–{max(xs):.1f}" if len(xs) > 1 else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=9, help="grid points along α (quick profile: 9)")
    ap.add_argument("--beta-points", type=int, default=7, help="grid points along β (quick profile: 7)")
    ap.add_argument("--n-eval", type=int, default=224, help="sentences per split and point (quick: 224)")
    ap.add_argument("--precision", default="bf16", help="grid precision (quick: bf16)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="passes of every configuration, interleaved; medians are reported (default 3)")
    ap.add_argument("--cache", help="cache folder (default: a new temporary folder)")
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    ap.add_argument("--cold-workers", action="store_true",
                    help="time workers from their first unit (data read and tokenised, model built inside the timing)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be a positive integer, got {args.repeats}")
    os.environ["BERTSCAPE_CACHE"] = args.cache or tempfile.mkdtemp(prefix="bench-compute-")

    import torch

    from bertscape.base import cache
    from bertscape.compute import executor as compute
    from bertscape.geometry import landscape as L
    from bertscape.runs.spec import RunSpec
    from bertscape.runs.train import train

    torch.set_num_threads(1)  # as each worker (Dask's nanny sets OMP_NUM_THREADS=1)
    spec = RunSpec(n_train=256, n_dev=args.n_eval, epochs=1, device="cpu", precision="fp32", n_checkpoints=3)
    run = train(spec, progress=False)
    axis = [round(-0.5 + 2.0 * i / (args.points - 1), 10) for i in range(args.points)]
    kw = dict(alphas=axis, betas=[round(-1 + 2.0 * i / (args.beta_points - 1), 10) for i in range(args.beta_points)],
              n_eval=args.n_eval, precision=args.precision, device="cpu", eval_batch_size=64, per_sample=True,
              progress=False)
    L.run_directions(run)  # the directions are cached before any timing (a sweep computes them earlier too)
    n_points = args.points * args.beta_points

    def clear_grids() -> None:
        for p in cache.subdir("grids").glob("*.nc"):
            p.unlink()

    clusters = {n: compute.DaskExecutor.local(n) for n in (1, 2)}
    try:
        for ex in clusters.values():
            ex.client.run(_warm)
            if not args.cold_workers:
                # every worker reads and tokenises the task's data and builds the model first, as a
                # worker of a sweep does once, for its first unit: the timed grid measures the per-unit cost
                ex.client.run(_warm_run, spec)
        local = None
        times: dict[str, list[float]] = {"loop": [], "stored": [], "1": [], "2": []}
        points: dict[str, list[float]] = {"loop": [], "stored": [], "1": [], "2": []}
        outside: list[float] = []  # 1 worker: the grid's wall time outside its units (driver and transport)
        _point_seconds()
        for ex in clusters.values():
            ex.client.run(_point_seconds)

        def loop() -> None:
            nonlocal local
            local = L.run_surface(run, store=None, **kw)

        def stored() -> None:
            clear_grids()
            L.run_surface(run, **kw)  # as the book computes it without an executor: stored, saved as it goes

        def on(n: int) -> Callable[[], None]:
            def go() -> None:
                ex = clusters[n]
                clear_grids()
                ex.client.run(_forget_grid_inputs)
                before = len(ex.log)
                t = time.perf_counter()
                with compute.use(ex):
                    remote = L.run_surface(run, **kw)
                wall = time.perf_counter() - t
                if n == 1:
                    outside.append(wall - sum(o.seconds for o in ex.log[before:]))
                if local is not None:
                    assert all(remote[v].values.tobytes() == local[v].values.tobytes() for v in local.data_vars), \
                        "the grid differs from the in-process one"
            return go

        configs = [("loop", loop), ("stored", stored), ("1", on(1)), ("2", on(2))]
        for r in range(args.repeats):
            # the order rotates from pass to pass, so that a slow spell of the machine does not fall
            # on one configuration only
            for name, fn in configs[r % len(configs):] + configs[:r % len(configs)]:
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
                where = [_point_seconds()] if name in ("loop", "stored") else \
                    list(clusters[int(name)].client.run(_point_seconds).values())
                points[name].append(sum(where) / len(where))  # 2 workers: the mean of their two sums
                print(f"pass {r + 1}: {name} {times[name][-1]:.1f} s, evaluating points {points[name][-1]:.1f} s",
                      flush=True)

        # the speed of evaluating points on a worker and here, on the same few points, alternated
        # in short turns (so that both see the same machine)
        speed = []
        for _ in range(2 * args.repeats):
            here = _few_points(spec, kw, 6)
            there = clusters[1].client.submit(_few_points, spec, kw, 6, pure=False).result()
            speed.append(there / here - 1)
        print("6 points, worker vs here:", " ".join(f"{100 * x:+.1f} %" for x in speed), flush=True)

        # bare round trip of a unit
        units = [compute.Unit(f"noop {i}", _noop, (i,)) for i in range(200)]
        clusters[1].run(units[:10], progress=False)
        t = time.perf_counter()
        clusters[1].run(units, progress=False)
        bare = (time.perf_counter() - t) / len(units)
        t = time.perf_counter()
        for u in units:
            u.fn(*u.args)
        plain = (time.perf_counter() - t) / len(units)
    finally:
        for ex in clusters.values():
            ex.close()

    # ratios of each pass's own pair, then their median: the passes see different machine load
    def paired(a: str, b: str, f: Callable[[float, float], float]) -> float:
        return _median([f(x, y) for x, y in zip(times[a], times[b])])

    rest = {k: [w - p for w, p in zip(times[k], points[k])] for k in times}
    t_loop = _median(times["loop"])
    over = paired("loop", "1", lambda a, b: b / a - 1)
    # the same overhead without the machine's drift: the time the executor adds besides evaluating
    # points (the rest of its wall time, less the plain loop's own rest), over the plain loop
    over_rest = _median([(r1 - r0) / w0 for r1, r0, w0 in zip(rest["1"], rest["loop"], times["loop"])])
    per_point = _median([b / a - 1 for a, b in zip(points["loop"], points["1"])])
    same_work = paired("loop", "stored", lambda a, b: b / a - 1)
    speedup = paired("2", "1", lambda a, b: b / a)
    vs_loop = paired("2", "loop", lambda a, b: b / a)
    shards1, shards2 = compute.SHARDS_PER_WORKER, 2 * compute.SHARDS_PER_WORKER

    def row(label: str, k: str, result: str, note: str) -> tuple:
        return (label, _median(times[k]), _spread(times[k]), f"{_median(points[k]):.1f}", f"{_median(rest[k]):.1f}",
                result, note)

    rows = [
        row("in-process, in memory (plain loop)", "loop", "", ""),
        row("in-process, stored in the cache (the book's default)", "stored",
            f"{100 * same_work:+.1f} % over the plain loop (the same work: the machine's noise)",
            "partial saves every 30 s"),
        row(f"1 worker, {shards1} shards", "1",
            f"overhead {100 * over:+.1f} % over the plain loop in wall time; **{100 * over_rest:+.1f} %** without "
            f"the time spent evaluating points (evaluating points on the worker: {100 * per_point:+.1f} %)",
            "target ≤ 5 %"),
        ("… of which outside the units (driver's cache probe, submission, merge, read-back)", _median(outside),
         _spread(outside), "", "", f"{100 * _median(outside) / t_loop:.1f} % of the plain loop", "per grid"),
        row(f"2 workers, {shards2} shards", "2", f"speed-up ×{speedup:.2f} over 1 worker, ×{vs_loop:.2f} over the "
            "plain loop", f"{os.cpu_count()} cores; points: each worker's sum"),
        ("evaluating 6 points on a worker vs in this process, alternated", None, "", "", "",
         f"{100 * _median(speed):+.1f} % (median of {len(speed)} turns; range {100 * min(speed):+.1f} … "
         f"{100 * max(speed):+.1f} %)", "ratio, not seconds"),
        ("bare unit round trip (200 no-op units, 1 worker)", bare, "", "", "", f"plain call {plain * 1e6:.1f} µs",
         "per unit, one in flight per worker thread"),
    ]

    header = (f"Command: `python benchmarks/bench_compute.py --points {args.points} --beta-points {args.beta_points} "
              f"--repeats {args.repeats}{' --cold-workers' if args.cold_workers else ''}` — {datetime.date.today()}, "
              f"torch {torch.__version__}, dask {__import__('dask').__version__}, {platform.machine()} "
              f"{os.cpu_count()} cores; θ0-centred surface {args.points}×{args.beta_points} = {n_points} points of "
              f"MiniLM (embedded), {args.n_eval} train + {args.n_eval} dev sentences a point, {args.precision}, "
              f"per-sentence values kept; in-process {t_loop / n_points:.2f} s a point. Each worker and the "
              "driver use one torch thread; every distributed grid was checked equal to the in-process one "
              f"bit for bit. Seconds are medians of {args.repeats} interleaved passes (range beside them); "
              "overheads and speed-ups are medians of each pass's own ratio. 'Evaluating points' is the time "
              "spent in the grid engine's per-point evaluation (on the worker for the distributed rows); 'rest' "
              "is the wall time besides it.")
    md = ("| configuration | wall s (median) | range | evaluating points s | rest s | result | note |\n"
          "|---|---|---|---|---|---|---|\n") + "\n".join(
        f"| {a} | {'' if b is None else f'{b:.3f}' if b < 1 else f'{b:.1f}'} | {' | '.join(rest_)} |"
        for a, b, *rest_ in rows)
    print(header + "\n\n" + md)
    if args.write:
        _common.write_results("bench_compute",
                              f"## Execution layer: local Dask workers (bench_compute.py)\n\n{header}\n\n{md}")


if __name__ == "__main__":
    main()
