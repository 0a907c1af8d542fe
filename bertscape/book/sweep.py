"""Fill the cache for a profile ahead of the book, on a Dask cluster or in this process.

Usage::

    python -m bertscape.book.sweep --profile quick --local 2                 # a local cluster of 2 workers
    python -m bertscape.book.sweep --profile paper --scheduler tcp://host:8786
    python -m bertscape.book.sweep --profile paper --local 4 --gpus          # one worker per GPU
    make book PROFILE=paper                                            # afterwards: renders from the cache

The sweep computes what the book's chapters ask :mod:`bertscape.book.study` for, in four stages, each a
batch of independent units for :mod:`bertscape.compute.executor`:

``runs``
    every fine-tuning run (main runs of every learning-rate pairing, long runs), one unit each; a
    run already in the cache is skipped (``cached``).
``measures``
    the study's per-run measures that need no grid: line-search widths, θ1 evaluations, Hessians
    (profile pairing first, then the matched pairings, so no two units compute one result), layer
    reports, trajectory PCA planes; one unit per task, seed and measure (``done``: a unit whose
    result is cached reads it back and writes nothing).
``grids``
    the 1D curves and 2D surfaces, driven from this process: each grid is cut into shards that
    run on the workers and are merged here into the grid's one cache file (a complete grid is
    skipped as ``cached``).
``book``
    trajectories and restore predictions as units, then every chapter's scorecard in this process,
    which reads everything back (and computes, the same way, anything an earlier stage missed).

A sweep that dies is resumed by running it again: finished runs, grids and measures are read
back, half-finished runs resume from their last epoch and grid shards from their last saved point.
A unit that fails is retried (``--retries``) and then reported in the summary with its error; the
exit status is 1 when anything failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from bertscape.base.errors import bad_value
from bertscape.book import claims, study
from bertscape.book.profiles import DEFAULT_PROFILE, PROFILE_NAMES, Profile, from_params
from bertscape.compute import executor as compute
from bertscape.compute.executor import Outcome, Unit
from bertscape.runs.train import load_run, train

__all__ = ["STAGES", "SweepReport", "run_specs", "sweep", "main"]

#: The stages of a sweep, in order.
STAGES = ("runs", "measures", "grids", "book")


@dataclass
class SweepReport:
    """What a sweep did: every unit's outcome, by stage, and the summary table."""

    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failures(self) -> list[Outcome]:
        """Outcomes that failed, over all stages."""
        return [o for out in self.outcomes.values() for o in out if not o.ok]

    def summary(self) -> pd.DataFrame:
        """One row per stage: units by status and the stage's wall time."""
        rows = []
        for stage, out in self.outcomes.items():
            row = {"stage": stage, "units": len(out)}
            row.update({s: sum(o.status == s for o in out) for s in compute.STATUSES})
            row["seconds"] = round(self.seconds.get(stage, float("nan")), 1)
            rows.append(row)
        return pd.DataFrame(rows).set_index("stage") if rows else pd.DataFrame()


# ----------------------------------------------------------------------------- what a profile needs

def run_specs(P: Profile) -> list[Any]:
    """Every distinct fine-tuning run of the profile: the runs of each learning-rate pairing for every
    task, seed and starting point; the long runs (PT's for every seed, RI's for the figure seed); and the
    connectivity chapter's runs of ``lmc_seeds`` (PT's main runs, RI's sharing one random θ0 and RI's main
    runs). A run shared by pairings or chapters is listed once."""
    specs = {}
    for t in P.tasks:
        for s in P.seeds:
            for pairing in study.pairings(P):
                for init in P.inits:
                    spec = P.run_spec(t, init, s, lr=study._pairing_lr(P, pairing, init))
                    specs.setdefault(spec.key(), spec)
            for init in P.inits:
                if init == "pretrained" or s == study.figure_seed(P):
                    spec = P.long_run_spec(t, init, s)
                    specs.setdefault(spec.key(), spec)
        for s in P.lmc_seeds:
            for init in P.inits:
                for spec in ([P.run_spec(t, init, s), P.run_spec(t, init, s, init_seed=P.lmc_seeds[0])]
                             if init == "scratch" else [P.run_spec(t, init, s)]):
                    specs.setdefault(spec.key(), spec)
    return list(specs.values())


def _train(spec: Any) -> str:
    """A unit: train (or resume) one run into the cache; returns its key."""
    return train(spec, progress=False).spec.key()


def _study(P: Profile, name: str, args: tuple) -> None:
    """A unit: one :mod:`bertscape.book.study` result, computed into the cache (or read back)."""
    getattr(study, name)(P, *args)


def _measure_units(P: Profile, controls: bool) -> list[Unit]:
    """The ``measures`` stage: profile pairing (``controls=False``) or the matched pairings."""
    units = []
    for t in P.tasks:
        for s in P.seeds:
            if not controls:
                pairs = [study.PROFILE_PAIRING]
                names = ("layer_evidence", "long_train_loss") + (("layer_reports", "pca_paths")
                                                                 if s == study.figure_seed(P) else ())
                for name in names:
                    units.append(Unit(f"{name} {t}/s{s}", _study, (P, name, (t, s)), status="done"))
            else:
                pairs = study.pairings(P)[1:]
            for pairing in pairs:
                untrained = pairing != study.PROFILE_PAIRING and claims.not_trained(P, t, s, pairing)
                for name in ("theta1_evals", "widths", "curvature_numbers"):
                    # the scorecard does not compute a matched pairing's widths or Hessians when one
                    # of its runs did not train (its verdict is inconclusive either way)
                    if untrained and name != "theta1_evals":
                        continue
                    units.append(Unit(f"{name} {t}/s{s} {pairing}", _study, (P, name, (t, s, pairing)),
                                      status="done"))
    return units


def _driver_calls(P: Profile, names: Sequence[str]) -> list[tuple[str, Callable[[], Any]]]:
    return [(f"{name} {t}/s{s}", (lambda name=name, t=t, s=s: getattr(study, name)(P, t, s)))
            for t in P.tasks for s in P.seeds for name in names]


def _on_driver(ex: compute.Executor, calls: Sequence[tuple[str, Callable[[], Any]]]) -> list[Outcome]:
    """Study calls made in this process (grids fan out from inside them); a failure is recorded
    (with the shards' errors) and the sweep goes on."""
    out = []
    with compute.use(ex):
        for name, call in calls:
            start = time.perf_counter()
            try:
                call()
            except Exception as exc:  # reported in the summary; the remaining calls still run
                out.append(Outcome(name, "failed", error=f"{type(exc).__name__}: {exc}",
                                   seconds=time.perf_counter() - start))
            else:
                out.append(Outcome(name, "done", seconds=time.perf_counter() - start))
    return out


# ----------------------------------------------------------------------------- the sweep

def sweep(P: Profile, executor: compute.Executor | None = None, stages: Sequence[str] = STAGES,
          retries: int = compute.RETRIES, progress: bool | None = None, log: Callable[[str], None] = print
          ) -> SweepReport:
    """Compute everything the book needs for profile ``P`` into the cache (see the module notes).

    Args:
        P: the profile (as the chapters would resolve it: same tasks, seeds, overrides).
        executor: where units run (default: :func:`bertscape.compute.executor.current`).
        stages: a subset of :data:`STAGES` (always run in that order).
        retries: retries of a unit that raised.
        progress: progress bars (default: on unless ``$BERTSCAPE_PROGRESS=0``).
        log: where one line per stage goes.
    """
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise bad_value("stages", list(stages), f"a non-empty subset of {STAGES}")
    ex = executor or compute.current()
    report = SweepReport()

    def stage(name: str, body: Callable[[], list[Outcome]]) -> None:
        if name not in stages:
            return
        start, before = time.perf_counter(), len(ex.log)
        driver = body()
        report.outcomes[name] = ex.log[before:] + driver
        report.seconds[name] = time.perf_counter() - start
        n_failed = sum(not o.ok for o in report.outcomes[name])
        log(f"[sweep] {name}: {len(report.outcomes[name])} units in {report.seconds[name]:.1f} s"
            + (f", {n_failed} failed" if n_failed else ""))

    def runs() -> list[Outcome]:
        todo = []
        for spec in run_specs(P):
            if load_run(spec) is not None:
                ex.record(Outcome(f"train {spec.label()} lr={spec.lr:g} {spec.key()[:6]}", "cached"))
            else:
                todo.append(Unit(f"train {spec.label()} lr={spec.lr:g} {spec.key()[:6]}", _train, (spec,)))
        ex.run(todo, retries=retries, desc="runs", progress=progress)
        return []

    def measures() -> list[Outcome]:
        ex.run(_measure_units(P, controls=False), retries=retries, desc="measures", progress=progress)
        ex.run(_measure_units(P, controls=True), retries=retries, desc="measures (matched lr)", progress=progress)
        return []

    def grids() -> list[Outcome]:
        segments = [(f"segments {t}", lambda t=t: study.segments(P, t)) for t in P.tasks]
        return _on_driver(ex, _driver_calls(P, ("curves", "agreement_surfaces", "basin_surfaces")) + segments)

    def book() -> list[Outcome]:
        s0 = study.figure_seed(P)
        units = [Unit(f"{name} {t}/s{s}", _study, (P, name, (t, s)), status="done")
                 for t in P.tasks for s in P.seeds for name in ("trajectories", "restore_predictions")
                 if name != "trajectories" or s == s0]
        ex.run(units, retries=retries, desc="trajectories, restores", progress=progress)
        figures = [(f"{name} {t}/s{s0}", (lambda name=name, t=t: getattr(study, name)(P, t, s0)))
                   for t in P.tasks for name in ("trajectories", "pca_paths")]
        return _on_driver(ex, [("every chapter's scorecard", lambda: claims.full_scorecard(P))] + figures
                          + _driver_calls(P, ("flatness",)))

    for name, body in (("runs", runs), ("measures", measures), ("grids", grids), ("book", book)):
        stage(name, body)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bertscape.book.sweep --profile quick --local 2``."""
    ap = argparse.ArgumentParser(prog="python -m bertscape.book.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    ap.add_argument("--tasks", nargs="+", help="tasks (default: the profile's)")
    ap.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the profile's)")
    ap.add_argument("--model", help="model: 'embedded', a hub id or a local folder (default: the profile's)")
    ap.add_argument("--glue-dir", help="GLUE folder in the original TSV layout")
    ap.add_argument("--overrides", help="JSON dict of profile fields, as the chapters' `overrides` parameter")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786); "
                                           f"default: ${compute.SCHEDULER_ENV}, else in-process")
    where.add_argument("--local", type=int, metavar="N", help="start a local Dask cluster of N worker processes")
    ap.add_argument("--gpus", action="store_true", help="with --local: one worker per GPU (CUDA_VISIBLE_DEVICES, GPU=1)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--retries", type=int, default=compute.RETRIES, help="retries of a failing unit")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    P = from_params(args.profile, args.tasks, args.glue_dir, json.loads(args.overrides) if args.overrides else None,
                    args.seeds, args.model)
    own = args.scheduler is not None or args.local is not None
    ex = compute.executor_from(args.scheduler, args.local, gpus=args.gpus) if own else compute.current()
    where_txt = ("in this process" if not ex.distributed
                 else f"on {ex.n_workers} Dask worker(s)" + (f", dashboard {ex.dashboard_link}"
                                                              if getattr(ex, "dashboard_link", None) else ""))
    print(f"[sweep] profile {P.name}, tasks {', '.join(P.tasks)}, seeds {list(P.seeds)}, {where_txt}", flush=True)
    try:
        report = sweep(P, ex, [s.strip() for s in args.stages.split(",") if s.strip()], args.retries,
                       progress=False if args.no_progress else None)
    finally:
        if own:
            ex.close()
    print(report.summary().to_string())
    for o in report.failures:
        print(f"[sweep] FAILED {o.name}: {o.error}", file=sys.stderr)
    print(f"[sweep] {'done' if not report.failures else 'finished with failures'}; the book renders from the "
          f"cache: make book PROFILE={P.name}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
