"""A run-level grid cut into shards that run on an executor's workers (:mod:`bertscape.compute.executor`),
and merged into the one grid file a single process would have written.

The executor knows nothing of grids: each shard is a plain unit, a module-level function
(:func:`_grid_shard`) with picklable arguments (the run-level grid function, the run's spec, its keyword
arguments and the shard). The caller (:func:`bertscape.geometry.landscape.run_curve` and friends) decides
to fan out (:func:`fans_out`) and hands itself over.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Mapping

from bertscape.base.errors import BertscapeError, check_positive_int
from bertscape.compute.executor import (
    SHARDS_PER_WORKER,
    Executor,
    Outcome,
    Unit,
    UnitsFailed,
    cached_run,
    current,
)
from bertscape.geometry.storage import merge_shards, store_path, write_grid

__all__ = ["fans_out", "sharded_grid"]


def fans_out(kwargs: Mapping[str, Any]) -> bool:
    """Whether a run-level grid call with these keyword arguments is cut into shards: a whole grid
    (no ``shard``, ``max_points`` or ``callback``) stored in the cache (``store="auto"``) while a
    distributed executor is active."""
    if kwargs.get("store") != "auto" or any(kwargs.get(k) is not None for k in ("shard", "max_points", "callback")):
        return False
    return current().distributed


def _grid_shard(fn: Callable[..., Any], spec: Any, kwargs: Mapping[str, Any], shard: tuple[int, int]) -> dict[str, Any]:
    """On a worker: compute (or resume) one shard of a run's grid into its own shard file."""
    ds = fn(cached_run(spec), **dict(kwargs), shard=shard)
    return {"path": str(store_path("auto", ds.attrs["kind"], ds.attrs["grid_key"], shard)),
            "grid_key": ds.attrs["grid_key"], "points": int(ds["done"].values.sum())}


def sharded_grid(fn: Callable[..., Any], run: Any, kwargs: Mapping[str, Any],
                 executor: Executor | None = None, shards: int | None = None) -> Any:
    """A run-level grid (``fn`` is :func:`~bertscape.geometry.landscape.run_curve` or
    :func:`~bertscape.geometry.landscape.run_surface`) computed as shards on ``executor``.

    The driver first asks the cache (``fn(..., max_points=0)`` computes the grid's key and reads
    what is stored, evaluating nothing). A complete grid is returned as it is (``cached``). Else
    the grid is cut into ``shards`` (default :data:`SHARDS_PER_WORKER` per worker); each worker
    writes its shard file atomically (a rerun resumes a shard from it); the driver merges them
    with :func:`~bertscape.geometry.storage.merge_shards` into the one grid file, removes the shard files,
    and returns what ``fn`` returns in-process from that file: the same Dataset as an in-process
    computation. Raises :class:`UnitsFailed` when a shard still fails after its retries.
    The caller keeps the grid's inputs built once for the probe and the read-back
    (:func:`bertscape.geometry.landscape.keep_grid_inputs`).
    """
    return _sharded_grid(fn, run, kwargs, executor or current(), shards)


def _sharded_grid(fn: Callable[..., Any], run: Any, kwargs: Mapping[str, Any], ex: Executor,
                  shards: int | None) -> Any:
    probe = fn(run, **dict(kwargs), max_points=0)
    key, kind = probe.attrs["grid_key"], probe.attrs["kind"]
    label = f"{kind} {run.spec.label()} {key[:6]}"
    if bool(probe["done"].values.all()):
        ex.record(Outcome(label, "cached"))
        return probe
    points = int(probe["done"].size)
    n = shards if shards is not None else SHARDS_PER_WORKER * ex.n_workers
    n = min(points, check_positive_int("shards", n))
    units = [Unit(f"{label} shard {i + 1}/{n}", _grid_shard, (fn, run.spec, dict(kwargs), (i, n))) for i in range(n)]
    outcomes = ex.run(units, desc=label)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise UnitsFailed(failed)
    keys = {o.value["grid_key"] for o in outcomes}
    if keys != {key}:
        raise BertscapeError(f"the workers computed grid {sorted(keys)} where this process expects {key}: they "
                             "resolve the device or precision differently (precision 'auto' is bf16 on a GPU and, "
                             "on a CPU, whichever of bf16 and fp32 measured faster there); set the precision "
                             "explicitly or drive from the same kind of machine")
    paths = [o.value["path"] for o in outcomes]
    write_grid(merge_shards(paths), store_path("auto", kind, key, (0, 1)))
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
    return fn(run, **dict(kwargs), max_points=0)  # read back (complete): what an in-process call returns
