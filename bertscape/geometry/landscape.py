"""Run-level landscapes: the paper's 1D curve, 2D surfaces and straight segments between runs, each
evaluated by the grid engine (:mod:`bertscape.geometry.grids`) from a :class:`~bertscape.runs.train.RunResult`
and cached in ``cache.subdir("grids")``, with the directions they use cached in ``cache.subdir("directions")``;
and the θ1-centred basin grid that grows until it holds the basin.

A grid is an :class:`xarray.Dataset` with dims ``alpha`` (and ``beta``) and, per evaluation set
``<name>`` (``train``, ``dev``), the variables ``<name>_loss``, ``<name>_error``, ``<name>_metric`` and one
per task metric (see :mod:`bertscape.geometry.grids`). Under a distributed executor a whole grid is cut
into shards that run on its workers (:mod:`bertscape.geometry.sharding`). Defaults are literal values (the
quick profile's sizes); the book passes its profile's values explicitly.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import xarray as xr

from bertscape.base import cache
from bertscape.base.errors import bad_value
from bertscape.compute import executor
from bertscape.data.tasks import subset_indices
from bertscape.geometry import sharding
from bertscape.geometry.directions import (
    ParamDict,
    cached_direction,
    content_hash,
    cosine,
    direction_key,
    dot,
    norm,
    orthogonalise,
    pca_directions,
    random_direction,
    resolve_names,
    restrict,
    scale,
    sub,
)
from bertscape.geometry.flatness import linspace, sublevel_area
from bertscape.geometry.grids import (
    DEFAULT_ALPHAS_2D,
    DEFAULT_BETAS_2D,
    curve_1d,
    surface_2d,
)
from bertscape.runs.evaluate import EvalSet, prepare_eval
from bertscape.runs.models import resolve_device
from bertscape.runs.train import run_data

#: Default grid of a θ1-centred surface (θ1 at (0, 0)): [−1, 1] in 9 points.
DEFAULT_AB_THETA1 = np.asarray(linspace(-1.0, 1.0, 9))
#: Default evaluation sizes of the run-level curves and surfaces, their batch size, and the points of a
#: segment between two runs.
DEFAULT_CURVE_N_EVAL, DEFAULT_GRID_N_EVAL, DEFAULT_EVAL_BATCH, DEFAULT_SEGMENT_POINTS = 256, 224, 64, 9
CENTRES = ("theta0", "theta1")
D2_KINDS = ("random", "pca")


# ----------------------------------------------------------------------------- run-level helpers

_SAME = object()


def eval_sets_for_run(run: Any, n_eval: int | None = 512, seed: int = 0, device: str | torch.device = "cpu",
                      batch_size: int = DEFAULT_EVAL_BATCH, *, n_dev: Any = _SAME,
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
    (:func:`~bertscape.geometry.directions.random_direction`). ``d2="pca"``: the leading principal
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
      itself is built once (:func:`bertscape.compute.executor.model_of`);
    * the driver of a sharded grid, inside :func:`keep_grid_inputs` (its probe of the cache and
      its read-back of the merged grid).
    """
    key_params = params if isinstance(params, str) else tuple(params)
    key = (centre, d2, seed, policy, bias_policy, key_params, orthogonal, n_eval, eval_seed, str(device),
           eval_batch_size, tuple(splits), n_directions, str(cache.cache_dir()))
    if executor.in_worker():
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
    return _hashed_grid_inputs(executor.cached_run(spec), *key)


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
              progress: bool | None = None, eval_batch_size: int = DEFAULT_EVAL_BATCH,
              splits: Sequence[str] = ("train", "dev"), **kwargs: Any) -> xr.Dataset:
    """The paper's 1D curve of a run: f(α) = L(θ0 + α·δ1) on train and dev subsets (cached).

    Args:
        run: a :class:`~bertscape.runs.train.RunResult`.
        alphas: α grid (default :data:`DEFAULT_ALPHAS_1D`).
        n_eval, eval_seed: size and seed of the evaluation subsets (:func:`eval_sets_for_run`).
        params: which parameters move (:func:`~bertscape.geometry.directions.select_names`); the rest stay at θ0.
        precision, device, progress: as in :func:`evaluate_grid`.
        splits: which of the training and dev subsets to evaluate.
        kwargs: ``shard``, ``max_points``, ``callback``, ``store`` (default ``"auto"``) …
    """
    if sharding.fans_out({"store": "auto", **kwargs}):  # a distributed executor: shards on its workers
        with keep_grid_inputs():  # the driver's probe and read-back build and hash the grid's inputs once
            return sharding.sharded_grid(run_curve, run, dict(
                alphas=alphas, n_eval=n_eval, eval_seed=eval_seed, params=params, precision=precision, device=device,
                progress=progress, eval_batch_size=eval_batch_size, splits=tuple(splits), **kwargs))
    dev = _device(device)
    dirs, base, evalsets, hashes = grid_inputs(run, centre="theta0", d2="random", seed=0, policy="filter",
                                               bias_policy="whole", params=params, orthogonal=True, n_eval=n_eval,
                                               eval_seed=eval_seed, device=dev, eval_batch_size=eval_batch_size,
                                               splits=tuple(splits), n_directions=1)
    model = executor.model_of(run, "theta0", dev)
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
                orthogonal: bool = True, eval_batch_size: int = DEFAULT_EVAL_BATCH, splits: Sequence[str] = ("train", "dev"),
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
    if sharding.fans_out({"store": "auto", **kwargs}):  # a distributed executor: shards on its workers
        with keep_grid_inputs():  # the driver's probe and read-back build and hash the grid's inputs once
            return sharding.sharded_grid(run_surface, run, dict(
                alphas=alphas, betas=betas, centre=centre, d2=d2, seed=seed, policy=policy, bias_policy=bias_policy,
                params=params, n_eval=n_eval, eval_seed=eval_seed, precision=precision, device=device, progress=progress,
                orthogonal=orthogonal, eval_batch_size=eval_batch_size, splits=tuple(splits), **kwargs))
    dev = _device(device)
    dirs, base, evalsets, hashes = grid_inputs(run, centre, d2, seed, policy, bias_policy, params, orthogonal, n_eval,
                                               eval_seed, dev, eval_batch_size, tuple(splits))
    model = executor.model_of(run, centre, dev)
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


def run_segment(run_a: Any, run_b: Any, ts: Any = None, n_eval: int | None = DEFAULT_GRID_N_EVAL, eval_seed: int = 0,
                precision: str = "auto", device: str = "auto", progress: bool | None = None,
                eval_batch_size: int = DEFAULT_EVAL_BATCH, per_sample: bool = False, **kwargs: Any) -> xr.Dataset:
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
    ts = linspace(0.0, 1.0, DEFAULT_SEGMENT_POINTS) if ts is None else ts
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


# ----------------------------------------------------------------------------- the basin of θ1

#: The θ1-centred basin grid starts at ±2 basin half-widths a side and grows by half that span on
#: every side its sub-level set still reaches, at most this many times (a set that still reaches the edge
#: then is censored: its area is a lower bound).
BASIN_GROWTH_STEPS = 3


def basin_area(s: xr.Dataset, eps: float, f: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`bertscape.geometry.flatness.sublevel_area` of θ1's set {f ≤ f(θ1) + ε} on a θ1-centred grid
    (``f``: values on the grid of ``s``, by default its training loss; ``eps``: the basin's ε), with the sides of the grid
    the set reaches (``edges``: a subset of ``"-α +α -β +β"``)."""
    f = s["train_loss"].values if f is None else f
    return sublevel_area(f, s["alpha"].values, s["beta"].values, (0.0, 0.0), eps)


def grow_basin_grid(grid: Callable[[list[float], list[float]], xr.Dataset], n: int, eps: float,
                    steps: int = BASIN_GROWTH_STEPS) -> xr.Dataset:
    """A θ1-centred grid that contains θ1's sub-level set {f ≤ f(θ1) + ε}: ``grid(alphas, betas)``
    evaluates (and caches) the training loss on a rectangle of axis values in units of the two
    half-spans; the grid starts at ``n`` points on [−1, 1]² and, while the set reaches a side,
    adds ``(n − 1) // 2`` points of the same spacing on every side it reaches, at most ``steps``
    times. Returns the merged dataset (``attrs["alpha_axis"]``/``["beta_axis"]``: its span in
    half-span units)."""
    axis = linspace(-1.0, 1.0, n)
    step, k = 2 / (n - 1), max(1, (n - 1) // 2)
    ax = {"alpha": list(axis), "beta": list(axis)}
    s = grid(ax["alpha"], ax["beta"])
    attrs = dict(s.attrs)
    for _ in range(steps):
        edges = basin_area(s, eps)["edges"]
        if not edges:
            break
        for side in edges:
            dim, sign = ("alpha" if side[1] == "α" else "beta"), (1 if side[0] == "+" else -1)
            end = ax[dim][-1] if sign > 0 else ax[dim][0]
            new = sorted(round(end + sign * step * (i + 1), 10) for i in range(k))
            strip = grid(new, ax["beta"]) if dim == "alpha" else grid(ax["alpha"], new)
            ax[dim] = sorted(ax[dim] + new)
            s = xr.concat([s, strip], dim=dim, data_vars="minimal", coords="minimal",
                          compat="override").sortby(dim)
    s.attrs = {**attrs, "alpha_axis": [ax["alpha"][0], ax["alpha"][-1]], "beta_axis": [ax["beta"][0], ax["beta"][-1]]}
    return s
