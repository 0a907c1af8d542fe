"""The grid engine: a model evaluated at every point of a grid of coefficients along given directions.

The engine (:func:`curve_1d`, :func:`surface_2d`) is generic: it evaluates a model at
``base + Σ cᵢ·dᵢ`` on a grid of coefficients, writing each point's parameters in place from the
stored base (:class:`~bertscape.geometry.directions.PointWriter`: no model copies, no drift) and
evaluating pre-tokenised, length-sorted, dynamically padded sets (:class:`~bertscape.runs.evaluate.EvalSet`).

A grid is an :class:`xarray.Dataset` with dims ``alpha`` (and ``beta``) and, for every
evaluation set ``<name>`` (usually ``train`` and ``dev``), the variables ``<name>_loss``,
``<name>_error`` (1 − the task's main metric), ``<name>_metric`` (the main metric) and one
``<name>_<metric>`` per task metric, plus a boolean ``done`` mask. Its attributes carry the
hashes of everything that determines it (base point, directions, evaluation sets, precision,
coordinates, run spec when known) and ``grid_key``, their joint hash.

Storage: with ``store`` set, a grid is saved as NetCDF (``engine="h5netcdf"``) atomically every
few points / seconds while it runs and once at the end (also when interrupted). Calling again
with the same store resumes: only points not yet ``done`` are computed. A stored grid whose
``grid_key`` differs (other directions, base, data, precision or coordinates) is recomputed from
scratch, never mixed. Shard ``(i, n)`` computes the points whose flat (C-order) index ``% n == i``;
:func:`merge_shards` joins shards into the grid a single process would have produced.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from bertscape.base import cache, versions
from bertscape.base.errors import bad_value
from bertscape.base.progress import progress_enabled
from bertscape.geometry.directions import (
    ParamDict,
    PointWriter,
    content_hash,
    cosine,
    norm,
)
from bertscape.geometry.flatness import grid_axis, linspace
from bertscape.geometry.storage import read_grid, store_path, write_grid
from bertscape.runs.evaluate import EvalSet, check_evalsets, evaluate_sets
from bertscape.runs.precision import resolve as resolve_precision

__all__ = ["evaluate_grid", "curve_1d", "surface_2d", "PointCallback", "DEFAULT_ALPHAS_1D", "DEFAULT_ALPHAS_2D",
           "DEFAULT_BETAS_2D"]

PointCallback = Callable[[int, dict[str, float]], None]
#: Default α grid of a 1D curve: [−0.5, 1.5] in 21 points (θ0 at α = 0, θ1 at α = 1).
DEFAULT_ALPHAS_1D = np.asarray(linspace(-0.5, 1.5, 21))
#: Default α and β grids of a θ0-centred surface (θ1 at (1, 0)): α on [−0.5, 1.5] in 9 points, β on
#: [−1, 1] in 7 (in units of δ2; the book sizes β by a line search on the run).
DEFAULT_ALPHAS_2D = np.asarray(linspace(-0.5, 1.5, 9))
DEFAULT_BETAS_2D = np.asarray(linspace(-1.0, 1.0, 7))


def _check_shard(shard: Any) -> tuple[int, int]:
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
          and shard[1] >= 1 and 0 <= shard[0] < shard[1])
    if not ok:
        raise bad_value("shard", shard, "a pair (i, n) of integers with n >= 1 and 0 <= i < n")
    return int(shard[0]), int(shard[1])


def evaluate_grid(model: torch.nn.Module, base: ParamDict, directions: Sequence[ParamDict],
                  coords: Mapping[str, Any], evalsets: Mapping[str, EvalSet], *, precision: str = "auto",
                  progress: bool | None = None, shard: tuple[int, int] = (0, 1), store: str | Path | None = None,
                  max_points: int | None = None, callback: PointCallback | None = None,
                  save_every: int = 64, save_seconds: float = 30.0, attrs: Mapping[str, Any] | None = None,
                  kind: str = "grid", notes: Mapping[str, Any] | None = None,
                  per_sample: bool = False, hashes: tuple[str, Sequence[str]] | None = None) -> xr.Dataset:
    """Evaluate ``model`` at ``base + Σ cᵢ·directions[i]`` for every point of a rectangular grid.

    Args:
        model: the network; its parameters named in ``base`` are overwritten point by point and
            restored to ``base`` at the end (also on error). Others are left as they are.
        base: the origin (name → tensor); only these parameters move.
        directions: one ParamDict per grid dimension.
        coords: ``{dim_name: values}`` in the order of ``directions`` (strictly increasing).
        evalsets: ``{name: EvalSet}``; each point is evaluated on each.
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        progress: progress bar (default: on unless ``$BERTSCAPE_PROGRESS=0``).
        shard: ``(i, n)``: compute only points whose flat index ``% n == i``.
        store: ``None`` (memory only), ``"auto"`` (a file named by the grid key in the cache's
            ``grids`` folder), a name (a file in that folder) or a ``.nc`` path.
        max_points: stop after computing this many new points (the partial grid is saved and
            returned; a later call resumes).
        callback: ``callback(flat_index, values)`` after each point (raising interrupts; the
            partial grid is saved first).
        save_every, save_seconds: save partial progress after this many points or seconds.
        attrs: extra attributes; they take part in the grid key (e.g. the run key).
        kind: a label (``curve``, ``surface``) used in attributes and auto file names.
        notes: attributes recorded on the result but *not* part of the grid key: numbers derived
            from the directions (norms, cosines) whose last bits may differ between computations
            of the same direction (BLAS reductions depend on memory alignment).
        per_sample: also keep every sentence's loss and prediction at every point
            (``<set>_sample_loss``, ``<set>_sample_pred`` with a ``<set>_sample`` dimension, and
            the labels as ``<set>_label``), so that a number computed from the grid can be
            bootstrapped over sentences. float32/int; 256 sentences on a 9×9 grid is ~0.2 MB.
        hashes: ``(content_hash(base), [content_hash(d) for d in directions])`` when the caller
            already has them (a worker keeps them with its resident grid inputs); computed here
            otherwise. They key the grid, so they must be exactly these.
    """
    evalsets = check_evalsets(evalsets)
    shard = _check_shard(shard)
    if len(coords) != len(directions):
        raise bad_value("coords", list(coords), f"{len(directions)} coordinate arrays, one per direction")
    dims = list(coords)
    axes = [grid_axis(coords[d], d) for d in dims]
    if max_points is not None and (isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 0):
        raise bad_value("max_points", max_points, "None or a non-negative integer")
    prec = resolve_precision(precision, next(model.parameters()).device)
    identity = _grid_identity(kind, dims, axes, base, directions, evalsets, prec, attrs, per_sample, hashes)
    key = cache.stable_hash(identity)
    path = store_path(store, kind, key, shard)
    grid = _GridState(dims, axes, evalsets, identity, key, shard, {**(attrs or {}), **(notes or {})})
    if path is not None:
        grid.resume(read_grid(path))
    todo = grid.todo(max_points)
    if not todo:
        return grid.dataset()
    writer = PointWriter(model, base, list(directions))
    bar = tqdm(total=len(todo), desc=f"{kind} {'x'.join(map(str, grid.shape))}",
               disable=not progress_enabled(progress), leave=False, dynamic_ncols=True)
    last_save, since_save = time.monotonic(), 0
    try:
        for idx in todo:
            pos = np.unravel_index(idx, grid.shape)
            writer.set(*(float(a[p]) for a, p in zip(axes, pos)))
            point = evaluate_sets(model, evalsets, precision, per_sample)
            grid.record(pos, point)
            since_save += 1
            bar.update(1)
            if callback is not None:
                callback(idx, point)
            if path is not None and (since_save >= save_every or time.monotonic() - last_save >= save_seconds):
                write_grid(grid.dataset(), path)
                last_save, since_save = time.monotonic(), 0
    finally:
        bar.close()
        writer.set(*([0.0] * len(directions)))
        if path is not None and since_save:
            write_grid(grid.dataset(), path)
    return grid.dataset()


def _grid_identity(kind: str, dims: list[str], axes: list[np.ndarray], base: ParamDict,
                   directions: Sequence[ParamDict], evalsets: Mapping[str, EvalSet], precision: str,
                   attrs: Mapping[str, Any] | None, per_sample: bool,
                   hashes: tuple[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Everything that determines a grid's values (its key is the hash of this): kind, dimensions
    and coordinates, the hashes of the base point and directions, the evaluation sets'
    fingerprints, the precision, the grids' code version and the caller's ``attrs``."""
    identity = {
        "kind": kind,
        "dims": dims,
        "coords": {d: a.tolist() for d, a in zip(dims, axes)},
        "base_hash": hashes[0] if hashes else content_hash(base),
        "direction_hashes": list(hashes[1]) if hashes else [content_hash(d) for d in directions],
        "evalsets": {k: v.fingerprint for k, v in sorted(evalsets.items())},
        "precision": precision,
        "code": versions.version("grids"),
        "extra": {k: v for k, v in sorted((attrs or {}).items())},
    }
    if per_sample:
        identity["per_sample"] = True
    return identity


class _GridState:
    """The points of one grid (or shard) computed so far, and the grid as a Dataset.

    ``values`` holds one float64 array of the grid's shape per evaluated quantity, ``samples`` the
    per-sentence arrays (``<set>_sample_loss`` / ``_pred``: shape + (n sentences,)), ``done`` which
    points are computed. ``extra_attrs``: the caller's attrs and notes, written on the Dataset."""

    def __init__(self, dims: list[str], axes: list[np.ndarray], evalsets: Mapping[str, EvalSet],
                 identity: dict[str, Any], key: str, shard: tuple[int, int], extra_attrs: Mapping[str, Any]) -> None:
        self.dims, self.axes, self.evalsets = dims, axes, evalsets
        self.identity, self.key, self.shard, self.extra_attrs = identity, key, shard, extra_attrs
        self.shape = tuple(len(a) for a in axes)
        self.flat = np.arange(int(np.prod(self.shape)))
        self.values: dict[str, np.ndarray] = {}
        self.samples: dict[str, np.ndarray] = {}
        self.done = np.zeros(self.shape, dtype=bool)

    def resume(self, old: xr.Dataset | None) -> None:
        """Take over the points of a stored grid with the same key and shard (others are ignored)."""
        shard = f"{self.shard[0]}/{self.shard[1]}"
        if old is not None and old.attrs.get("grid_key") == self.key and old.attrs.get("shard") == shard:
            self.done = old["done"].values.astype(bool).copy()
            for v in old.data_vars:
                if "_sample_" in v:
                    self.samples[v] = old[v].values.copy()
                elif v != "done" and old[v].dims == tuple(self.dims):  # (labels are rebuilt from the sets)
                    self.values[v] = old[v].values.astype(np.float64).copy()

    def todo(self, max_points: int | None) -> list[int]:
        """Flat indices of this shard's points not yet done (the first ``max_points`` of them)."""
        todo = [int(i) for i in self.flat if i % self.shard[1] == self.shard[0] and not self.done.reshape(-1)[i]]
        return todo if max_points is None else todo[:max_points]

    def record(self, pos: tuple[int, ...], point: dict[str, Any]) -> None:
        """Store one point's numbers at ``pos``; its per-sentence arrays are taken out of ``point``
        (which is left with the scalar numbers the callback sees)."""
        for k in [k for k in point if "_sample_" in k]:
            arr = point.pop(k)
            if k not in self.samples:
                dtype = np.float32 if k.endswith("loss") else arr.dtype
                self.samples[k] = np.zeros(self.shape + arr.shape, dtype=dtype)
            self.samples[k][pos] = arr
        for k, v in point.items():
            if k not in self.values:
                self.values[k] = np.full(self.shape, np.nan)
            self.values[k][pos] = v
        self.done[pos] = True

    def dataset(self) -> xr.Dataset:
        """The grid as computed so far, with the attributes that identify it."""
        dims, identity, shard = self.dims, self.identity, self.shard
        ds = xr.Dataset({v: (dims, a) for v, a in self.values.items()} | {"done": (dims, self.done.copy())},
                        coords={d: a for d, a in zip(dims, self.axes)})
        for v, a in self.samples.items():
            name = v.split("_sample_")[0]
            ds[v] = (dims + [f"{name}_sample"], a)
            ds[f"{name}_label"] = (f"{name}_sample", self.evalsets[name].labels)
        ds.attrs.update({
            "grid_key": self.key, "kind": identity["kind"], "shard": f"{shard[0]}/{shard[1]}",
            "complete": int(bool(np.all(self.done.reshape(-1)[self.flat % shard[1] == shard[0]]))),
            "base_hash": identity["base_hash"], "precision": identity["precision"],
            "code_version": versions.version("grids"), "identity": json.dumps(identity, sort_keys=True),
        })
        for j, h in enumerate(identity["direction_hashes"]):
            ds.attrs[f"d{j + 1}_hash"] = h
        for k, fp in identity["evalsets"].items():
            ds.attrs[f"{k}_fingerprint"] = fp
            ds.attrs[f"{k}_n"] = len(self.evalsets[k])
        for k, v in self.extra_attrs.items():
            ds.attrs[k] = v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else json.dumps(v)
        return ds


def curve_1d(model: torch.nn.Module, base: ParamDict, direction: ParamDict, alphas: Any = None,
             evalsets: Mapping[str, EvalSet] | None = None, precision: str = "auto", progress: bool | None = None,
             **kwargs: Any) -> xr.Dataset:
    """f(α) = L(base + α·direction) on ``alphas`` (default :data:`DEFAULT_ALPHAS_1D`).

    With base = θ0 and direction = δ1 this is the paper's 1D curve (θ0 at α = 0, θ1 at α = 1).
    ``kwargs`` go to :func:`evaluate_grid` (``store``, ``shard``, ``max_points``, ``callback``,
    ``attrs`` …). Returns a Dataset with dim ``alpha``; attrs ``d1_norm`` = ‖direction‖.
    """
    alphas = DEFAULT_ALPHAS_1D if alphas is None else alphas
    notes = {"d1_norm": norm(direction), **dict(kwargs.pop("notes", None) or {})}
    return evaluate_grid(model, base, [direction], {"alpha": alphas}, evalsets, precision=precision,
                         progress=progress, notes=notes, kind=kwargs.pop("kind", "curve"), **kwargs)


def surface_2d(model: torch.nn.Module, base: ParamDict, d1: ParamDict, d2: ParamDict, alphas: Any = None,
               betas: Any = None, evalsets: Mapping[str, EvalSet] | None = None, precision: str = "auto",
               progress: bool | None = None, shard: tuple[int, int] = (0, 1), store: str | Path | None = None,
               **kwargs: Any) -> xr.Dataset:
    """f(α, β) = L(base + α·d1 + β·d2) on the grid ``alphas × betas`` (dims ``alpha``, ``beta``).

    The directions are used as given (orthogonalise ``d2`` first with
    :func:`~bertscape.geometry.directions.orthogonalise` if the axes should be perpendicular; the run-level
    :func:`run_surface` does). Attrs record ``d1_norm``, ``d2_norm`` and ``cos_d1_d2``.
    ``kwargs`` go to :func:`evaluate_grid`.
    """
    alphas = DEFAULT_ALPHAS_2D if alphas is None else alphas
    betas = DEFAULT_BETAS_2D if betas is None else betas
    notes = {"d1_norm": norm(d1), "d2_norm": norm(d2), "cos_d1_d2": cosine(d1, d2),
             **dict(kwargs.pop("notes", None) or {})}
    return evaluate_grid(model, base, [d1, d2], {"alpha": alphas, "beta": betas}, evalsets, precision=precision,
                         progress=progress, shard=shard, store=store, notes=notes,
                         kind=kwargs.pop("kind", "surface"), **kwargs)
