"""Loss landscapes: 1D curves, 2D surfaces and trajectory projections (the flatness numbers
computed from them: :mod:`bertscape.flatness`).

The engine (:func:`curve_1d`, :func:`surface_2d`) is generic: it evaluates a model at
``base + Σ cᵢ·dᵢ`` on a grid of coefficients, writing each point's parameters in place from the
stored base (:class:`~bertscape.directions.PointWriter`: no model copies, no drift) and
evaluating pre-tokenised, length-sorted, dynamically padded sets (:class:`~bertscape.evaluate.EvalSet`).

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

The run-level helpers (:func:`run_curve`, :func:`run_surface`, :func:`project_trajectory`) take a
:class:`~bertscape.train.RunResult` and cache everything in ``cache.subdir("grids")`` and
``cache.subdir("directions")``.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.interpolate import RegularGridInterpolator
from tqdm.auto import tqdm

from . import cache, compute, versions
from .directions import (ParamDict, PointWriter, cached_direction, content_hash, cosine, direction_key, dot, norm,
                         orthogonalise, pca_directions, random_direction, resolve_names, restrict, scale, sub)
from .data import subset_indices
from .errors import BertscapeError, bad_value
from .evaluate import EvalSet, check_evalsets, evaluate, evaluate_sets, prepare_eval
from .flatness import grid_axis
from .models import load_state, resolve_device, trainable_state
from .precision import resolve as resolve_precision
from .profiles import DEFAULT_PROFILE, get_profile
from .progress import progress_enabled
from .train import run_data

#: The default profile, where the defaults below come from (sizes and grids agree with the book's).
_DEFAULTS = get_profile(DEFAULT_PROFILE)
#: Default α grid of a 1D curve: the default profile's ``curve_range`` in ``curve_points`` points
#: ([−0.5, 1.5] in 21; θ0 at α = 0, θ1 at α = 1).
DEFAULT_ALPHAS_1D = np.asarray(_DEFAULTS.curve_axis())
#: Default α and β grids of a θ0-centred surface (θ1 at (1, 0)): the default profile's
#: ``grid_alpha`` and ``grid_points`` (9 × 9); β on [−1, 1] in units of δ2 (the profile's β range
#: is in basin half-widths, which only a line search on a run gives: see ``study``).
DEFAULT_ALPHAS_2D = np.asarray(_DEFAULTS.grid_axes()[0])
DEFAULT_BETAS_2D = np.round(np.linspace(-1.0, 1.0, _DEFAULTS.grid_points[1]), 10)
#: Default grid of a θ1-centred surface (θ1 at (0, 0)): [−1, 1] in the profile's point count.
DEFAULT_AB_THETA1 = np.round(np.linspace(-1.0, 1.0, _DEFAULTS.grid_points[0]), 10)
#: Default evaluation sizes of the run-level curves and surfaces (the profile's).
DEFAULT_CURVE_N_EVAL, DEFAULT_GRID_N_EVAL = _DEFAULTS.curve_n_eval, _DEFAULTS.grid_n_eval
CENTRES = ("theta0", "theta1")
D2_KINDS = ("random", "pca")

PointCallback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------- helpers

def _check_shard(shard: Any) -> tuple[int, int]:
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
          and shard[1] >= 1 and 0 <= shard[0] < shard[1])
    if not ok:
        raise bad_value("shard", shard, "a pair (i, n) of integers with n >= 1 and 0 <= i < n")
    return int(shard[0]), int(shard[1])


def _store_path(store: str | Path | None, kind: str, key: str, shard: tuple[int, int]) -> Path | None:
    if store is None:
        return None
    suffix = "" if shard[1] == 1 else f"-shard{shard[0]}of{shard[1]}"
    if isinstance(store, str) and store == "auto":
        return cache.subdir("grids") / f"{kind}-{key}{suffix}.nc"
    path = Path(store)
    if path.suffix != ".nc":  # a bare name: a file in the grids folder
        if isinstance(store, str) and "/" not in store and "\\" not in store:
            return cache.subdir("grids") / f"{store}{suffix}.nc"
        raise bad_value("store", store, "None, 'auto', a name, or a path ending in .nc")
    if suffix:
        path = path.with_name(f"{path.stem}{suffix}.nc")
    return path


def read_grid(path: str | Path) -> xr.Dataset | None:
    """A stored grid loaded into memory (:func:`bertscape.cache.read_nc`, its ``done`` mask as
    booleans); ``None`` when missing or unreadable."""
    out = cache.read_nc(path)
    if out is not None and "done" in out:
        out["done"] = out["done"].astype(bool)
    return out


def write_grid(ds: xr.Dataset, path: str | Path) -> None:
    """Save a grid atomically (:func:`bertscape.cache.write_nc`; NetCDF has no booleans, so the
    ``done`` mask is stored as int8)."""
    out = ds.copy()
    out["done"] = out["done"].astype(np.int8)
    cache.write_nc(out, path)


# ----------------------------------------------------------------------------- the grid engine

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
    path = _store_path(store, kind, key, shard)
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
    :func:`~bertscape.directions.orthogonalise` if the axes should be perpendicular; the run-level
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


def merge_shards(shards: Sequence[xr.Dataset | str | Path]) -> xr.Dataset:
    """Join shards of one grid (same ``grid_key``) into the grid one process would compute.

    Each point is taken from the shard that computed it. Raises when shards belong to
    different grids. The result's ``complete`` attribute says whether every point is done.
    """
    items = [read_grid(s) if isinstance(s, (str, Path)) else s for s in shards]
    if not items or any(s is None for s in items):
        raise bad_value("shards", list(shards), "a non-empty list of grids (Datasets or readable .nc paths)")
    keys = {s.attrs.get("grid_key") for s in items}
    if len(keys) != 1:
        raise bad_value("shards", sorted(map(str, keys)), "shards of one grid (a single grid_key)")
    first = items[0]
    done = np.zeros(first["done"].shape, dtype=bool)
    grid_dims = first["done"].dims
    names = sorted({v for s in items for v in s.data_vars if v != "done" and s[v].dims[:len(grid_dims)] == grid_dims})
    def blank(v: str) -> np.ndarray:  # as evaluate_grid starts them: NaN values, zeroed per-sentence arrays
        like = next(s[v] for s in items if v in s)
        if "_sample_" in v or not np.issubdtype(like.dtype, np.floating):
            return np.zeros(like.shape, like.dtype)
        return np.full(like.shape, np.nan, like.dtype)

    values = {v: blank(v) for v in names}
    for s in items:
        m = s["done"].values.astype(bool) & ~done
        for v in names:
            if v in s:
                values[v][m] = s[v].values[m]
        done |= m
    dims_of = {v: next(s[v].dims for s in items if v in s) for v in names}
    out = xr.Dataset({v: (dims_of[v], values[v]) for v in names} | {"done": (grid_dims, done)},
                     coords={d: first[d].values for d in grid_dims})
    for v in first.data_vars:  # per-sentence labels (``<set>_label``): the same in every shard
        if v not in names and v != "done":
            out[v] = first[v]
    out.attrs.update(first.attrs)
    out.attrs["shard"] = "0/1"
    out.attrs["complete"] = int(bool(done.all()))
    return out


# ----------------------------------------------------------------------------- run-level helpers

_SAME = object()


def eval_sets_for_run(run: Any, n_eval: int | None = 512, seed: int = 0, device: str | torch.device = "cpu",
                      batch_size: int = _DEFAULTS.eval_batch_size, *, n_dev: Any = _SAME,
                      splits: Sequence[str] = ("train", "dev")) -> dict[str, EvalSet]:
    """The evaluation sets of a run, built the same way for every stage (grids, line searches,
    θ1 evaluations, Hessians, layer analyses): seeded subsets (stratified for classification) of
    the run's tokenised training and dev sets, ``n_eval`` sentences each (``n_dev`` for the dev
    set when given; ``None`` = the whole split; capped at the split's size), length-sorted and
    moved to ``device`` once. ``splits`` picks which of the two to build."""
    if not splits or any(x not in ("train", "dev") for x in splits):
        raise bad_value("splits", splits, "a non-empty subset of ('train', 'dev')")
    spec = getattr(run, "spec", run)
    sizes = {"train": n_eval, "dev": n_eval if n_dev is _SAME else n_dev}
    out = {}
    for name, enc in zip(("train", "dev"), run_data(spec)):
        if name not in splits:
            continue
        n = None if sizes[name] is None else min(int(sizes[name]), len(enc))
        idx = subset_indices(enc.labels, n, seed, stratify=not spec.task_info.is_regression, param="n_eval")
        out[name] = prepare_eval(enc.select(idx), device, batch_size)
    return out


def _device(device: str) -> torch.device:
    return resolve_device(device) if isinstance(device, str) else torch.device(device)


def run_directions(run: Any, d2: str = "random", seed: int = 0, policy: str = "filter", bias_policy: str = "whole",
                   params: str | Sequence[str] = "all", orthogonal: bool = True) -> dict[str, Any]:
    """δ1 and the second direction of a run's plane, cached in ``cache.subdir("directions")``.

    ``d2="random"``: a seeded Gaussian direction normalised against δ1
    (:func:`~bertscape.directions.random_direction`). ``d2="pca"``: the leading principal
    direction of the checkpoints' components orthogonal to δ1 (where the path bends away from
    the straight line), scaled to ‖δ1‖. With ``orthogonal=True`` δ2 is Gram–Schmidt
    orthogonalised against δ1 (δ2⊥), so surface coordinates and trajectory projections agree
    with the formulas α = ⟨v, δ1⟩/‖δ1‖², β = ⟨v, δ2⊥⟩/‖δ2⊥‖².

    Returns ``{"d1", "d2", "d1_hash", "d2_hash", "cos_raw"}`` (``cos_raw`` = cos(δ1, δ2) before
    orthogonalisation) plus ``"explained_variance_ratio"`` for PCA.
    """
    if d2 not in D2_KINDS:
        raise bad_value("d2", d2, D2_KINDS)
    key = run.spec.key()
    sel = params if isinstance(params, str) else list(params)
    d1, h1 = cached_direction(direction_key(key, "delta1", names=sel),
                              lambda: restrict(run.delta(), resolve_names(run.delta(), params)))
    out: dict[str, Any] = {"d1": d1, "d1_hash": h1}
    if d2 == "random":
        raw, _ = cached_direction(direction_key(key, "random", seed, policy, bias_policy, sel),
                                  lambda: random_direction(d1, seed, policy, bias_policy))
    else:
        def make() -> ParamDict:
            pts = [restrict(p, d1) for _, p in run.trajectory()]
            t0 = pts[0]
            n1 = dot(d1, d1)
            resid = []
            for p in pts:
                v = sub(p, t0)
                resid.append({k: v[k] - (dot(v, d1) / n1) * d1[k] for k in v})
            dirs, evr = pca_directions(resid, n=1, origin="theta0")
            return scale(dirs[0], norm(d1))
        raw, _ = cached_direction(direction_key(key, "pca-perp", names=sel), make)
        pts = [restrict(p, d1) for _, p in run.trajectory()]
        out["explained_variance_ratio"] = pca_directions(pts, n=min(2, len(pts) - 1), origin="theta1")[1].tolist()
    out["cos_raw"] = cosine(d1, raw)
    if orthogonal:  # stored once: recomputing it could differ in the last bits and change its hash
        kind = "random" if d2 == "random" else "pca-perp"
        vec, vec_hash = cached_direction(direction_key(key, f"{kind}-orth", seed if d2 == "random" else None,
                                                       policy, bias_policy, sel), lambda: orthogonalise(raw, d1))
    else:
        vec, vec_hash = raw, content_hash(raw)
    out["d2"], out["d2_hash"] = vec, vec_hash
    return out


def pca_plane(run: Any, params: str | Sequence[str] = "all", origin: str = "theta1") -> dict[str, Any]:
    """The plane of a run's two leading trajectory PCA directions (Li et al. 2018), each scaled to
    ‖δ1‖ so coordinates compare with the δ1 plane; cached. Project onto it with
    ``project_trajectory(run, out["d1"], out["d2"], origin=origin)`` and evaluate it with
    :func:`surface_2d` (base θ1 for ``origin="theta1"``). Returns ``{"d1", "d2",
    "explained_variance_ratio", "d1_hash", "d2_hash"}``."""
    if origin not in CENTRES:
        raise bad_value("origin", origin, CENTRES)
    key = run.spec.key()
    sel = params if isinstance(params, str) else list(params)
    cache_pcs: dict[str, Any] = {}

    def make(j: int):
        def inner() -> ParamDict:
            if "dirs" not in cache_pcs:
                cache_pcs["dirs"], cache_pcs["evr"] = pca_directions(run, n=2, origin=origin, names=params)
            return scale(cache_pcs["dirs"][j], norm(restrict(run.delta(), cache_pcs["dirs"][j])))
        return inner

    pc1, h1 = cached_direction(direction_key(key, "pca1", names=sel, origin=origin), make(0))
    pc2, h2 = cached_direction(direction_key(key, "pca2", names=sel, origin=origin), make(1))
    evr = cache_pcs.get("evr")
    if evr is None:
        evr = pca_directions(run, n=2, origin=origin, names=params)[1]
    return {"d1": pc1, "d2": pc2, "d1_hash": h1, "d2_hash": h2, "explained_variance_ratio": list(map(float, evr))}


def grid_inputs(run: Any, centre: str, d2: str, seed: int, policy: str, bias_policy: str,
                params: str | Sequence[str], orthogonal: bool, n_eval: int | None, eval_seed: int,
                device: torch.device, eval_batch_size: int, splits: tuple[str, ...], n_directions: int = 2
                ) -> tuple[dict[str, Any], ParamDict, dict[str, EvalSet], tuple[str, list[str]] | None]:
    """What a run-level grid evaluates from: its directions (:func:`run_directions`), its base point
    (θ0 or θ1 restricted to δ1's parameters) and its evaluation sets (:func:`eval_sets_for_run`).

    Returns ``(dirs, base, evalsets, hashes)``. In a plain call ``hashes`` is ``None`` (the grid
    engine hashes base and directions itself). Two kinds of caller keep the four, with the
    content hashes of base and the first ``n_directions`` directions, so that the ~100 MB
    tensors are read and hashed once:

    * a Dask worker, across the shards of one grid that reach it one after another (resident,
      keyed by the run, these arguments and the cache root, two entries at most), as the model
      itself is built once (:func:`bertscape.compute.model_of`);
    * the driver of a sharded grid, inside :func:`keep_grid_inputs` (its probe of the cache and
      its read-back of the merged grid).
    """
    key_params = params if isinstance(params, str) else tuple(params)
    key = (centre, d2, seed, policy, bias_policy, key_params, orthogonal, n_eval, eval_seed, str(device),
           eval_batch_size, tuple(splits), n_directions, str(cache.cache_dir()))
    if compute.in_worker():
        return _resident_grid_inputs(run.spec, *key)
    memo = _driver_inputs.get()
    if memo is None:
        return (*_build_grid_inputs(run, centre, d2, seed, policy, bias_policy, params, orthogonal, n_eval, eval_seed,
                                    device, eval_batch_size, splits), None)
    if (run.spec, *key) not in memo:
        memo[(run.spec, *key)] = _hashed_grid_inputs(run, *key)
    return memo[(run.spec, *key)]


def _build_grid_inputs(run: Any, centre: str, d2: str, seed: int, policy: str, bias_policy: str,
                       params: str | Sequence[str], orthogonal: bool, n_eval: int | None, eval_seed: int,
                       device: torch.device, eval_batch_size: int, splits: Sequence[str]
                       ) -> tuple[dict[str, Any], ParamDict, dict[str, EvalSet]]:
    dirs = run_directions(run, d2, seed, policy, bias_policy, params, orthogonal)
    evalsets = eval_sets_for_run(run, n_eval, eval_seed, device, eval_batch_size, splits=tuple(splits))
    base = restrict(run.theta0() if centre == "theta0" else run.theta1(), dirs["d1"])
    return dirs, base, evalsets


def _hashed_grid_inputs(run: Any, centre: str, d2: str, seed: int, policy: str, bias_policy: str,
                        params: str | tuple[str, ...], orthogonal: bool, n_eval: int | None, eval_seed: int,
                        device: str, eval_batch_size: int, splits: tuple[str, ...], n_directions: int,
                        cache_root: str) -> tuple[dict[str, Any], ParamDict, dict[str, EvalSet], tuple[str, list[str]]]:
    """:func:`grid_inputs` with the hashes of base and directions (``cache_root`` only keys memos)."""
    dirs, base, evalsets = _build_grid_inputs(run, centre, d2, seed, policy, bias_policy,
                                              params if isinstance(params, str) else list(params), orthogonal,
                                              n_eval, eval_seed, torch.device(device), eval_batch_size, splits)
    hashes = (content_hash(base), [content_hash(dirs[f"d{j + 1}"]) for j in range(n_directions)])
    return dirs, base, evalsets, hashes


@functools.lru_cache(maxsize=2)
def _resident_grid_inputs(spec: Any, *key: Any) -> tuple[dict[str, Any], ParamDict, dict[str, EvalSet], tuple[str, list[str]]]:
    """:func:`grid_inputs` on a worker, kept for the next shard (see there)."""
    return _hashed_grid_inputs(compute.cached_run(spec), *key)


_driver_inputs: contextvars.ContextVar[dict[tuple, Any] | None] = contextvars.ContextVar(
    "bertscape_grid_inputs", default=None)


@contextlib.contextmanager
def keep_grid_inputs() -> Iterator[None]:
    """Inside this block, :func:`grid_inputs` builds and hashes the inputs of each grid once and
    reuses them (the driver of a sharded grid calls the grid twice: a probe of the cache before the
    shards, the read-back of the merged grid after). Nested blocks share the outer memo; it is
    dropped when the outermost block ends."""
    if _driver_inputs.get() is not None:
        yield
        return
    token = _driver_inputs.set({})
    try:
        yield
    finally:
        _driver_inputs.reset(token)


def run_curve(run: Any, alphas: Any = None, n_eval: int | None = DEFAULT_CURVE_N_EVAL, eval_seed: int = 0,
              params: str | Sequence[str] = "all", precision: str = "auto", device: str = "auto",
              progress: bool | None = None, eval_batch_size: int = _DEFAULTS.eval_batch_size,
              splits: Sequence[str] = ("train", "dev"), **kwargs: Any) -> xr.Dataset:
    """The paper's 1D curve of a run: f(α) = L(θ0 + α·δ1) on train and dev subsets (cached).

    Args:
        run: a :class:`~bertscape.train.RunResult`.
        alphas: α grid (default :data:`DEFAULT_ALPHAS_1D`).
        n_eval, eval_seed: size and seed of the evaluation subsets (:func:`eval_sets_for_run`).
        params: which parameters move (:func:`~bertscape.directions.select_names`); the rest stay at θ0.
        precision, device, progress: as in :func:`evaluate_grid`.
        splits: which of the training and dev subsets to evaluate.
        kwargs: ``shard``, ``max_points``, ``callback``, ``store`` (default ``"auto"``) …
    """
    if compute.fans_out({"store": "auto", **kwargs}):  # a distributed executor: shards on its workers
        return compute.sharded_grid(run_curve, run, dict(
            alphas=alphas, n_eval=n_eval, eval_seed=eval_seed, params=params, precision=precision, device=device,
            progress=progress, eval_batch_size=eval_batch_size, splits=tuple(splits), **kwargs))
    dev = _device(device)
    dirs, base, evalsets, hashes = grid_inputs(run, centre="theta0", d2="random", seed=0, policy="filter",
                                               bias_policy="whole", params=params, orthogonal=True, n_eval=n_eval,
                                               eval_seed=eval_seed, device=dev, eval_batch_size=eval_batch_size,
                                               splits=tuple(splits), n_directions=1)
    model = compute.model_of(run, "theta0", dev)
    attrs = {"run_key": run.spec.key(), "run_label": run.spec.label(), "centre": "theta0", "n_eval": n_eval or -1,
             "eval_seed": eval_seed, "params": json.dumps(params)}
    kwargs.setdefault("store", "auto")
    if hashes is not None:
        kwargs.setdefault("hashes", hashes)
    return curve_1d(model, base, dirs["d1"], alphas, evalsets, precision, progress, attrs=attrs,
                    notes={"eval_batch_size": eval_batch_size}, **kwargs)


def run_surface(run: Any, alphas: Any = None, betas: Any = None, centre: str = "theta0", d2: str = "random",
                seed: int = 0, policy: str = "filter", bias_policy: str = "whole",
                params: str | Sequence[str] = "all", n_eval: int | None = DEFAULT_GRID_N_EVAL, eval_seed: int = 0,
                precision: str = "auto", device: str = "auto", progress: bool | None = None,
                orthogonal: bool = True, eval_batch_size: int = _DEFAULTS.eval_batch_size, splits: Sequence[str] = ("train", "dev"),
                **kwargs: Any) -> xr.Dataset:
    """The paper's 2D surface of a run, cached: f(α, β) = L(origin + α·δ1 + β·δ2).

    ``centre="theta0"``: origin θ0, θ1 at (1, 0) (default grid α ∈ [−0.5, 1.5], β ∈ [−1, 1],
    9 × 9: :data:`DEFAULT_ALPHAS_2D`, :data:`DEFAULT_BETAS_2D`); ``centre="theta1"``: origin θ1,
    θ1 at (0, 0) (default [−1, 1]², 9 × 9: :data:`DEFAULT_AB_THETA1`).
    δ2 as in :func:`run_directions` (random filter-normalised by default, orthogonalised
    against δ1). Training and dev loss, error and metrics on the same grid (``splits``: which of
    the two to evaluate). ``kwargs`` go to :func:`evaluate_grid` (``shard``, ``max_points``,
    ``store`` (default ``"auto"``) …).
    """
    if centre not in CENTRES:
        raise bad_value("centre", centre, CENTRES)
    if alphas is None:
        alphas = DEFAULT_ALPHAS_2D if centre == "theta0" else DEFAULT_AB_THETA1
    if betas is None:
        betas = DEFAULT_BETAS_2D if centre == "theta0" else DEFAULT_AB_THETA1
    if compute.fans_out({"store": "auto", **kwargs}):  # a distributed executor: shards on its workers
        return compute.sharded_grid(run_surface, run, dict(
            alphas=alphas, betas=betas, centre=centre, d2=d2, seed=seed, policy=policy, bias_policy=bias_policy,
            params=params, n_eval=n_eval, eval_seed=eval_seed, precision=precision, device=device, progress=progress,
            orthogonal=orthogonal, eval_batch_size=eval_batch_size, splits=tuple(splits), **kwargs))
    dev = _device(device)
    dirs, base, evalsets, hashes = grid_inputs(run, centre, d2, seed, policy, bias_policy, params, orthogonal, n_eval,
                                               eval_seed, dev, eval_batch_size, tuple(splits))
    model = compute.model_of(run, centre, dev)
    if hashes is not None:
        kwargs.setdefault("hashes", hashes)
    attrs = {"run_key": run.spec.key(), "run_label": run.spec.label(), "centre": centre, "d2_kind": d2,
             "seed": seed, "policy": policy, "bias_policy": bias_policy, "orthogonal": int(orthogonal),
             "n_eval": n_eval or -1, "eval_seed": eval_seed, "params": json.dumps(params)}
    notes = {"cos_d1_d2_raw": dirs["cos_raw"], "eval_batch_size": eval_batch_size}
    if "explained_variance_ratio" in dirs:
        notes["explained_variance_ratio"] = json.dumps(dirs["explained_variance_ratio"])
    kwargs.setdefault("store", "auto")
    return surface_2d(model, base, dirs["d1"], dirs["d2"], alphas, betas, evalsets, precision, progress,
                      attrs=attrs, notes=notes, **kwargs)


#: Data fields two runs must share for a segment between them (same task, model and sentences).
_SEGMENT_FIELDS = ("task", "model", "data_seed", "n_train", "n_dev", "max_length", "glue_dir")


def _linspace01(n: int) -> list[float]:
    """``n`` points evenly spaced on [0, 1], rounded to 10 decimals."""
    return [round(i / (n - 1), 10) for i in range(n)]


def run_segment(run_a: Any, run_b: Any, ts: Any = None, n_eval: int | None = DEFAULT_GRID_N_EVAL, eval_seed: int = 0,
                precision: str = "auto", device: str = "auto", progress: bool | None = None,
                eval_batch_size: int = _DEFAULTS.eval_batch_size, per_sample: bool = False, **kwargs: Any) -> xr.Dataset:
    """The loss on the straight segment between two runs' end points, cached:
    f(t) = L((1 − t)·θ1ᵃ + t·θ1ᵇ), so t = 0 is run a's θ1 and t = 1 is run b's.

    The two runs must be of the same task, model and data subsets (any init, seed or learning
    rate); the evaluation sets are run a's (:func:`eval_sets_for_run`), which are run b's too.
    ``ts`` defaults to the default profile's ``segment_points`` (11) on [0, 1]; ``kwargs`` go to :func:`evaluate_grid`. Returns a
    curve Dataset with dim ``alpha`` (= t) and attrs ``run_key``, ``run_b_key``.
    """
    sa, sb = run_a.spec, run_b.spec
    diff = [f for f in _SEGMENT_FIELDS if getattr(sa, f) != getattr(sb, f)]
    if diff:
        raise bad_value("run_b", sb.label(), f"a run with run_a's {', '.join(diff)} (a segment joins runs of one task and data)")
    ts = _linspace01(_DEFAULTS.segment_points) if ts is None else ts
    dev = _device(device)
    theta_a = run_a.theta1()
    direction = sub(run_b.theta1(), theta_a)
    evalsets = eval_sets_for_run(run_a, n_eval, eval_seed, dev, eval_batch_size)
    model = run_a.model("theta1", device=str(dev))
    attrs = {"run_key": sa.key(), "run_label": sa.label(), "run_b_key": sb.key(), "run_b_label": sb.label(),
             "n_eval": n_eval or -1, "eval_seed": eval_seed}
    kwargs.setdefault("store", "auto")
    return curve_1d(model, theta_a, direction, ts, evalsets, precision, progress, attrs=attrs, kind="segment",
                    per_sample=per_sample, notes={"eval_batch_size": eval_batch_size}, **kwargs)


# ----------------------------------------------------------------------------- trajectories

def project_points(points: Iterable[tuple[int, ParamDict]], origin: ParamDict, d1: ParamDict,
                   d2: ParamDict) -> pd.DataFrame:
    """Coordinates of points in the plane ``origin + α·d1 + β·d2`` (least squares in that basis).

    For each point θ, v = θ − origin (over ``origin``'s names); (α, β) solve the 2 × 2 normal
    equations G·(α, β) = (⟨v, d1⟩, ⟨v, d2⟩) with G the directions' Gram matrix, so the
    coordinates are those of the surface computed with these very directions. When d2 ⟂ d1
    (as :func:`run_surface` makes it) this is α = ⟨v, d1⟩/‖d1‖², β = ⟨v, d2⟩/‖d2‖².
    The off-plane residual ‖v − α·d1 − β·d2‖ is summed tensor by tensor in float64.

    Returns a DataFrame: ``step, alpha, beta, residual, rel_residual, norm_v``.
    """
    g = np.array([[dot(d1, d1), dot(d1, d2)], [dot(d2, d1), dot(d2, d2)]])
    if np.linalg.matrix_rank(g) < 2:
        raise bad_value("d2", "a direction parallel to d1 (or zero)", "two linearly independent directions")
    rows = []
    for step, p in points:
        v = {k: p[k].detach().double() - origin[k].detach().double() for k in origin}
        a, b = np.linalg.solve(g, np.array([dot(v, d1), dot(v, d2)]))
        res2, nv2 = 0.0, 0.0
        for k, vk in v.items():
            r = vk
            if k in d1:
                r = r - a * d1[k].double()
            if k in d2:
                r = r - b * d2[k].double()
            res2 += float(torch.sum(r * r))
            nv2 += float(torch.sum(vk * vk))
        res, nv = res2 ** 0.5, nv2 ** 0.5
        rows.append({"step": int(step), "alpha": float(a), "beta": float(b), "residual": res,
                     "rel_residual": res / nv if nv > 0 else 0.0, "norm_v": nv})
    return pd.DataFrame(rows)


def surface_value(surface: xr.Dataset, var: str, alpha: Any, beta: Any) -> np.ndarray:
    """Linear interpolation of ``surface[var]`` at (alpha, beta) (NaN outside the grid)."""
    if var not in surface:
        raise bad_value("var", var, sorted(v for v in surface.data_vars if v != "done"))
    a_axis, b_axis = surface["alpha"].values, surface["beta"].values
    f = RegularGridInterpolator((a_axis, b_axis), surface[var].values, bounds_error=False, fill_value=np.nan)

    def snap(x: Any, axis: np.ndarray) -> np.ndarray:
        # a projection that lands a rounding error outside the grid (θ1 at α = 1.0000001) is on its edge
        x = np.atleast_1d(np.asarray(x, dtype=np.float64)).copy()
        tol = 1e-6 * float(axis[-1] - axis[0])
        x[(x < axis[0]) & (x > axis[0] - tol)] = axis[0]
        x[(x > axis[-1]) & (x < axis[-1] + tol)] = axis[-1]
        return x

    return f(np.column_stack([snap(alpha, a_axis), snap(beta, b_axis)]))


def project_trajectory(run: Any, d1: ParamDict, d2: ParamDict, surface: xr.Dataset | None = None,
                       origin: str | ParamDict | None = None, evalsets: Mapping[str, EvalSet] | None = None,
                       model: torch.nn.Module | None = None, precision: str = "auto",
                       progress: bool | None = None) -> pd.DataFrame:
    """Project a run's checkpoints onto the plane (d1, d2) and compare true and surface losses.

    Args:
        run: a RunResult or a list of ``(step, ParamDict)`` checkpoints.
        d1, d2: the plane's directions (use the surface's own, e.g. from :func:`run_directions`;
            checked against the surface's hashes when a surface is given).
        surface: a 2D grid; its values are interpolated at each projection
            (``<name>_loss_surface`` beside the checkpoint's true ``<name>_loss``).
        origin: ``theta0``/``theta1`` (default: the surface's ``centre``, else ``theta0``) or a ParamDict.
        evalsets: sets on which to evaluate each checkpoint's true loss (default with a run and a
            surface: the surface's own subsets, rebuilt from its ``n_eval``/``eval_seed``).
        model: the network to load checkpoints into (default: ``run.model("theta0")``).

    Returns: ``step, alpha, beta, residual, rel_residual, norm_v`` and, when evaluating,
    ``<name>_loss`` and ``<name>_loss_surface``.
    """
    if surface is not None:
        for j, d in enumerate((d1, d2)):
            want = surface.attrs.get(f"d{j + 1}_hash")
            if want is not None and want != content_hash(d):
                raise bad_value(f"d{j + 1}", f"a direction with hash {content_hash(d)}",
                                f"the surface's direction (hash {want})")
    points = list(run.trajectory()) if hasattr(run, "trajectory") else list(run)
    if origin is None:
        origin = surface.attrs.get("centre", "theta0") if surface is not None else "theta0"
    if isinstance(origin, str):
        if origin not in CENTRES:
            raise bad_value("origin", origin, CENTRES + ("a ParamDict",))
        origin_pt = points[0][1] if origin == "theta0" else points[-1][1]
    else:
        origin_pt = origin
    origin_pt = restrict(origin_pt, d1) if all(k in origin_pt for k in d1) else origin_pt
    df = project_points(points, origin_pt, d1, d2)
    if evalsets is None and surface is not None and hasattr(run, "spec") and int(surface.attrs.get("n_eval", 0)) != 0:
        n = int(surface.attrs["n_eval"])
        evalsets = eval_sets_for_run(run, None if n < 0 else n, int(surface.attrs.get("eval_seed", 0)),
                                     batch_size=int(surface.attrs.get("eval_batch_size", 64)), device=
                                     next(model.parameters()).device if model is not None else "cpu")
    if evalsets:
        evalsets = check_evalsets(evalsets)
        if surface is not None:
            for k, es in evalsets.items():
                fp = surface.attrs.get(f"{k}_fingerprint")
                if fp is not None and fp != es.fingerprint:
                    raise BertscapeError(f"evalsets[{k!r}] differs from the set the surface was computed on")
        if model is None:
            model = run.model("theta0")
        saved = {k: v for k, v in trainable_state(model).items() if k in points[0][1]}
        for name in evalsets:
            df[f"{name}_loss"] = np.nan
        try:
            for i, (_, p) in enumerate(tqdm(points, desc="trajectory", leave=False,
                                            disable=not progress_enabled(progress))):
                load_state(model, p)
                for name, es in evalsets.items():
                    df.loc[i, f"{name}_loss"] = evaluate(model, es, precision)["loss"]
        finally:
            load_state(model, saved)  # the model leaves as it came
    if surface is not None:
        for var in [v for v in surface.data_vars if v.endswith("_loss") and "_sample_" not in v]:
            df[f"{var}_surface"] = surface_value(surface, var, df["alpha"].values, df["beta"].values)
    return df
