"""The book's experiments for one profile, shared by every chapter.

Each function computes one kind of result for a task and seed, for both starting points, through
the package's caches: whichever chapter asks first computes it, the others (and the scorecard)
read it back (and within one kernel, each result is computed or read once: the functions are
memoised per process; treat what they return as read-only). Chapters stay short: ``P =
chapter.start(...)`` after the parameters, a call here and a figure from :mod:`bertscape.book.plots` per
section, and ``chapter.verdict(P, chapter, ...)`` at the end.

**Seeds.** Every scored quantity is computed for every seed of the profile (the scorecard decides on
the per-seed margins, :func:`bertscape.evidence.scorecard.summarise`). Work that only a figure reads is done for
the first seed (:func:`figure_seed`) alone: trajectories on the surface's plane, principal-component
paths, the whole θ0-centred surfaces (other seeds evaluate only the neighbourhood of θ1 that claim 7
reads), the dev split of the 1D curves, per-layer Hessians and CKA, the full per-layer curves, and RI's
long run.

**Pairings.** The profile trains PT and RI at different peak learning rates (``lr_pretrained``,
``lr_scratch``): a random network needs a larger step to leave chance level. That makes every
comparison that depends on training confounded by the rate, so the claims marked ``controlled``
are also decided under *matched* pairings (both runs at RI's rate, and/or both at PT's; the profile's
``control_lrs``). A pairing is named by :func:`pairings`.

Fixed analysis settings (chosen in advance, listed in :data:`bertscape.evidence.scorecard.THRESHOLDS`):
the basin of θ1 is {f ≤ f(θ1) + ε}, ε = :data:`FLAT_EPS` in training loss; widths come from line
searches (:mod:`bertscape.geometry.linesearch`) in two units (:data:`bertscape.evidence.scorecard.UNITS`); every
surface's β extent is the profile's ``grid_beta`` times that run's own basin half-width along δ2.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from bertscape.base import cache, versions
from bertscape.book.profiles import Profile
from bertscape.data.tasks import subset_indices
from bertscape.evidence import scorecard
from bertscape.evidence import uncertainty as U
from bertscape.geometry import curvature, landscape, layers, linesearch, storage
from bertscape.geometry import trajectories as projection
from bertscape.geometry.directions import (
    filter_normalise,
    norm,
    random_direction,
    restrict,
)
from bertscape.geometry.flatness import barrier_height, count_rises
from bertscape.runs.evaluate import evaluate, prepare_eval
from bertscape.runs.models import load_state, resolve_device
from bertscape.runs.precision import resolve as resolve_precision
from bertscape.runs.train import RunResult, run_data, train

FLAT_EPS = scorecard.FLAT_EPS
#: The pairing every chapter draws: the profile's own learning rates.
PROFILE_PAIRING = "profile"
_SHORT = {"pretrained": "PT", "scratch": "RI"}


# ----------------------------------------------------------------------------- runs

def pairings(P: Profile) -> list[str]:
    """``profile`` and one matched pairing per entry of ``P.control_lrs`` (skipped when the two
    rates are equal): ``both at PT's lr`` / ``both at RI's lr``."""
    out = [PROFILE_PAIRING]
    if P.lr_pretrained != P.lr_scratch:
        out += [f"both at {_SHORT[c]}'s lr" for c in P.control_lrs]
    return out


def _pairing_lr(P: Profile, pairing: str, init: str) -> float:
    if pairing == PROFILE_PAIRING:
        return P.lr(init)
    for c in ("pretrained", "scratch"):
        if pairing == f"both at {_SHORT[c]}'s lr":
            return P.lr(c)
    raise ValueError(f"pairing={pairing!r} is not accepted; expected one of {pairings(P)}")


@functools.lru_cache(maxsize=64)
def runs(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, RunResult]:
    """The fine-tuning runs of one pairing (``{init: run}``); a run shared by two pairings (PT at
    its own rate) is trained once."""
    return {init: train(P.run_spec(task, init, seed, lr=_pairing_lr(P, pairing, init))) for init in P.inits}


def main_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The main fine-tuning runs of ``task`` (one per starting point, the profile's rates)."""
    return runs(P, task, seed, PROFILE_PAIRING)


def control_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The matched-learning-rate control runs (those not among the main runs), labelled for a
    legend, e.g. ``{"RI at PT's lr (5e-05)": run}``."""
    out = {}
    main = {r.spec.key() for r in main_runs(P, task, seed).values()}
    for pairing in pairings(P)[1:]:
        for init, run in runs(P, task, seed, pairing).items():
            if run.spec.key() not in main:
                out[f"{_SHORT[init]} at {pairing.split('at ')[1].split(' ')[0]} lr ({run.spec.lr:g})"] = run
    return out


def forget() -> None:
    """Drop this process's memos of the study's results (every ``lru_cache`` of this module), so that
    the next call reads them from the cache again: a bundle export records the files the pages read,
    and a memo would hide them."""
    for obj in list(globals().values()):
        if getattr(obj, "__module__", None) == __name__ and callable(getattr(obj, "cache_clear", None)):
            obj.cache_clear()


def figure_seed(P: Profile) -> int:
    """The seed whose results the figures draw (the profile's first)."""
    return P.seeds[0]


@functools.lru_cache(maxsize=64)
def long_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The long runs (far past convergence at a constant rate after warm-up, one dev evaluation
    per epoch) of ``task``: PT's for every seed (claim 5 is about PT), RI's for the figure seed only
    (its curve is drawn beside PT's; a reported row compares them)."""
    inits = [i for i in P.inits if i == "pretrained" or seed == figure_seed(P)]
    return {init: train(P.long_run_spec(task, init, seed)) for init in inits}


@functools.lru_cache(maxsize=64)
def long_train_loss(P: Profile, task: str, seed: int = 0) -> dict[str, float]:
    """The final training loss of each long run measured in eval mode (no dropout) on a fixed, seeded
    subset of its own training sentences (``curve_n_eval`` of them): claim 5's gate. The minibatch
    losses of the last steps are taken with dropout on, on a moving sample, and say less."""
    out = {}
    for init, run in long_runs(P, task, seed).items():
        def compute(run=run) -> float:
            dev = _device(P)
            es = landscape.eval_sets_for_run(run, P.curve_n_eval, seed, dev, P.eval_batch_size, splits=("train",))
            return float(evaluate(run.model("theta1", device=str(dev)), es["train"], _prec(P, "curve_precision"))["loss"])

        out[init] = cache.memo_json("long-train-loss", {"run": run.spec.key(), "n": P.curve_n_eval, "seed": seed,
                                                        "precision": _prec(P, "curve_precision")}, compute)
    return out


def training_checks(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Did each run of a pairing train? (:func:`bertscape.evidence.scorecard.training_check`: its training loss
    fell below a share of its start and its dev metric beat the majority class by a margin beyond its
    bootstrap error.)"""
    return {init: run_check(P, task, run) for init, run in runs(P, task, seed, pairing).items()}


_CHECKS: dict[tuple[str, str], dict] = {}


def run_check(P: Profile, task: str, run: RunResult) -> dict:
    """:func:`bertscape.evidence.scorecard.training_check` of one run (memoised per process)."""
    key = (run.spec.key(), _metric(P, task))
    if key not in _CHECKS:
        preds, labels = run.dev_predictions()
        name = f"{_SHORT[run.spec.init]} {run.spec.label().split('/', 2)[2]} (lr {run.spec.lr:g})"
        _CHECKS[key] = scorecard.training_check(name, run.steps["loss"].to_numpy(), preds[-1], labels,
                                                _metric_fn(P, task), run.spec.task_info.is_regression)
    return _CHECKS[key]


def _device(P: Profile):
    return resolve_device(P.device)


def _prec(P: Profile, field: str) -> str:
    """A precision field of the profile resolved on its device (``auto`` → ``fp32``/``bf16``,
    :func:`bertscape.runs.precision.resolve`): what the computation uses and what its cache key holds."""
    return resolve_precision(getattr(P, field), P.device)


# ----------------------------------------------------------------------------- landscapes

@functools.lru_cache(maxsize=64)
def curves(P: Profile, task: str, seed: int = 0) -> dict[str, xr.Dataset]:
    """1D curves f(α) = L(θ0 + α·δ1) of the main runs on training sentences (and, for the figure seed,
    dev sentences: only the figure reads them), every sentence's loss kept for claim 2's paired
    bootstrap; the sentences are drawn with the run's seed."""
    splits = ("train", "dev") if seed == figure_seed(P) else ("train",)
    return {init: _indexed(landscape.run_curve, (run,), alphas=P.curve_axis(), n_eval=P.curve_n_eval, eval_seed=seed,
                           precision=_prec(P, "curve_precision"), device=P.device, eval_batch_size=P.eval_batch_size,
                           per_sample=True, splits=splits)
            for init, run in main_runs(P, task, seed).items()}


def _indexed(fn: Callable[..., xr.Dataset], runs_: tuple[RunResult, ...], **kwargs: Any) -> xr.Dataset:
    """``fn(*runs_, **kwargs)`` (a run-level grid of :mod:`bertscape.geometry.landscape`), found first through an
    index keyed by what determines it — the runs' keys, the arguments and the grids' code version — so
    that a stored grid is read back without rebuilding its directions and evaluation sets from the runs'
    weights (the grid engine's own key hashes those tensors). This is what lets a book render from a
    results bundle that holds no weights. The index points at the grid's file; a missing or unreadable
    file is recomputed."""
    key = {"fn": fn.__name__, "runs": [r.spec.key() for r in runs_], "grids": versions.version("grids"),
           "kwargs": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(kwargs.items()) if k != "device"}}
    path = cache.memo_path("grid-index", key)
    entry = cache.read_json(path)
    if isinstance(entry, dict) and isinstance(entry.get("file"), str):
        ds = storage.read_grid(cache.subdir("grids") / entry["file"])
        if ds is not None and int(ds.attrs.get("complete", 0)) == 1:
            return ds
    ds = fn(*runs_, **kwargs)
    name = f"{ds.attrs['kind']}-{ds.attrs['grid_key']}.nc"
    if int(ds.attrs.get("complete", 0)) == 1 and (cache.subdir("grids") / name).is_file():
        cache.write_json(path, {"file": name})
    return ds


@functools.lru_cache(maxsize=64)
def widths(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Basin widths of θ1 by line search (:func:`bertscape.geometry.linesearch.run_widths`) along δ1 and a
    random direction in both units of :data:`bertscape.evidence.scorecard.UNITS` (filter-normalised to θ1; δ1
    itself in α units and the surfaces' δ2 in β units), and along the random direction with biases and
    LayerNorm left out, on ``P.grid_n_eval`` training sentences drawn with the seed; each with its
    bootstrap replicates (the same resamples for every run of the seed, so PT − RI pairs up); cached."""
    out = {}
    for init, run in runs(P, task, seed, pairing).items():
        def compute(run=run) -> dict:
            dev = _device(P)
            ev = landscape.eval_sets_for_run(run, P.grid_n_eval, seed, dev, P.eval_batch_size, splits=("train",))["train"]
            d2 = landscape.run_directions(run, seed=seed)["d2"]
            return linesearch.run_widths(run, d2, ev, FLAT_EPS, seed, _prec(P, "grid_precision"), dev, boot_seed=seed)

        key = {"run": run.spec.key(), "n": P.grid_n_eval, "seed": seed, "eps": FLAT_EPS,
               "precision": _prec(P, "grid_precision"), "names": list(linesearch.WIDTH_DIRECTIONS),
               "rules": [linesearch.REFINE_STEPS, linesearch.CAP_DISPLACEMENTS, linesearch.FIRST_STEP_DISPLACEMENTS,
                         linesearch.N_BOOT, linesearch.GUARD_FACTOR, linesearch.GUARD_SE]}
        out[init] = cache.memo_json("widths", key, compute)
    return out


def half_width(P: Profile, task: str, seed: int, init: str, direction: str = "d2") -> float:
    """A main run's basin half-width (the larger side) along one line-search direction, in that
    direction's units: along ``d2`` (β units) it is the unit of ``grid_beta``."""
    w = widths(P, task, seed)[init][direction]
    return float(max(-w["lo"], w["hi"]))


@functools.lru_cache(maxsize=64)
def surfaces(P: Profile, task: str, seed: int = 0, centre: str = "theta0", d2: str = "random",
             alpha_window: float | None = None) -> dict[str, xr.Dataset]:
    """2D surfaces f(α, β) = L(origin + α·δ1 + β·δ2) of the main runs (δ2 filter-normalised
    random, orthogonalised against δ1; or the trajectory's PCA direction with ``d2="pca"``);
    ``alpha_window``: only the grid's α within that distance of θ1 (the points claim 7 reads).

    The β axis is ``P.grid_beta`` × the run's own basin half-width along δ2 (:func:`half_width`),
    rounded to 3 significant digits: the same rule for PT and RI, so the loss visibly rises inside
    every surface. Every sentence's loss and prediction is kept (claims 3 and 7 bootstrap them)."""
    alphas, unit_betas = P.grid_axes()
    if alpha_window is not None:
        alphas = [a for a in alphas if abs(a - 1.0) <= alpha_window + 1e-9]
    if centre == "theta1":
        alphas = [round(a - 1.0, 10) for a in alphas]
    out = {}
    for init, run in main_runs(P, task, seed).items():
        b = float(f"{half_width(P, task, seed, init):.3g}")
        out[init] = _indexed(landscape.run_surface, (run,), alphas=alphas, betas=[round(x * b, 10) for x in unit_betas],
                             centre=centre, d2=d2, seed=seed, n_eval=P.grid_n_eval, eval_seed=seed,
                             precision=_prec(P, "grid_precision"), device=P.device,
                             eval_batch_size=P.eval_batch_size, per_sample=True)
        out[init].attrs["beta_unit"] = b
    return out


def agreement_surfaces(P: Profile, task: str, seed: int = 0) -> dict[str, xr.Dataset]:
    """The surfaces claim 7 reads: the figure seed's whole θ0-centred surfaces; for other seeds only the
    grid's α within :data:`bertscape.evidence.scorecard.NEIGHBOURHOOD` of θ1 (every β), the points compared."""
    if seed == figure_seed(P):
        return surfaces(P, task, seed)
    return surfaces(P, task, seed, alpha_window=scorecard.NEIGHBOURHOOD)


@functools.lru_cache(maxsize=64)
def trajectories(P: Profile, task: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Checkpoints of the main runs projected on their surface's (δ1, δ2) plane, with the
    off-plane residual and each checkpoint's true loss beside the surface value there (evaluated
    on the profile's device and in the surfaces' precision)."""
    out = {}
    surf = surfaces(P, task, seed)
    for init, run in main_runs(P, task, seed).items():
        s = surf[init]

        def compute(run=run, s=s) -> dict:
            dirs = landscape.run_directions(run, seed=seed)
            model = run.model("theta0", device=str(_device(P)))
            df = projection.project_trajectory(run, dirs["d1"], dirs["d2"], surface=s, model=model,
                                              precision=_prec(P, "grid_precision"))
            return df.to_dict(orient="list")

        out[init] = pd.DataFrame(cache.memo_json("trajectory", {"grid": s.attrs.get("grid_key"), "run": run.spec.key()},
                                                 compute))
    return out


@functools.lru_cache(maxsize=64)
def pca_paths(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each main run's checkpoints projected on the plane of its own two leading principal
    directions (centred at θ1): where the path actually lies. ``{init: {"path": DataFrame(step,
    alpha, beta, rel_residual), "explained_variance_ratio": [..]}}``."""
    out = {}
    for init, run in main_runs(P, task, seed).items():
        def compute(run=run) -> dict:
            plane = landscape.pca_plane(run, origin="theta1")
            df = projection.project_trajectory(run, plane["d1"], plane["d2"], origin="theta1")
            return {"path": df.to_dict(orient="list"), "explained_variance_ratio": plane["explained_variance_ratio"]}

        res = cache.memo_json("pca-path", run.spec.key(), compute)
        out[init] = {"path": pd.DataFrame(res["path"]), "explained_variance_ratio": res["explained_variance_ratio"]}
    return out


def path_stats(run: RunResult) -> dict[str, float]:
    """Straightness of a run's path in the full parameter space (:func:`bertscape.geometry.trajectories.path_ratio`
    over its checkpoints), cached."""
    return cache.memo_json("path", run.spec.key(), lambda: projection.path_ratio(run.trajectory()))


@functools.lru_cache(maxsize=64)
def basin_surfaces(P: Profile, task: str, seed: int = 0) -> dict[str, xr.Dataset]:
    """The training loss on a grid centred at θ1 (same plane as :func:`surfaces`) that contains the
    basin: it starts at α ∈ ±2 × the basin's larger half-width along δ1 and β ∈ ±2 × its larger
    half-width along δ2 (both from the line searches), ``P.grid_points[0]`` points a side, and
    grows (:func:`grow_basin_grid`) on each side that the sub-level set {f ≤ f(θ1) + ε} still
    reaches (a basin that is not a bowl, e.g. a valley that keeps falling past θ1 when a run has not
    converged, needs the room). Every sentence's loss is kept. Claim 3's area is measured here (the
    θ0-centred figure cuts the basin off wherever it reaches α = 1.5). Each strip is a cached grid
    of its own."""
    out = {}
    for init, run in main_runs(P, task, seed).items():
        half_a = float(f"{2 * half_width(P, task, seed, init, 'd1'):.3g}")
        half_b = float(f"{2 * half_width(P, task, seed, init, 'd2'):.3g}")

        def grid(alphas: list[float], betas: list[float], run=run, half_a=half_a, half_b=half_b) -> xr.Dataset:
            return _indexed(landscape.run_surface, (run,), alphas=[round(x * half_a, 10) for x in alphas],
                            betas=[round(x * half_b, 10) for x in betas], centre="theta1", seed=seed,
                            n_eval=P.grid_n_eval, eval_seed=seed, precision=_prec(P, "grid_precision"), device=P.device,
                            eval_batch_size=P.eval_batch_size, per_sample=True, splits=("train",))

        s = landscape.grow_basin_grid(grid, P.grid_points[0], FLAT_EPS, landscape.BASIN_GROWTH_STEPS)
        s.attrs.update(alpha_unit=half_a, beta_unit=half_b,
                       alpha_extent=[round(x * half_a, 10) for x in s.attrs["alpha_axis"]],
                       beta_extent=[round(x * half_b, 10) for x in s.attrs["beta_axis"]])
        out[init] = s
    return out


@functools.lru_cache(maxsize=64)
def areas(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Area of the sub-level set {f ≤ f(θ1) + ε} around θ1 (:func:`basin_surfaces`): in α·β units,
    and relative to ‖θ1‖² (area × ‖δ1‖·‖δ2‖ / ‖θ1‖², scale-invariant), with bootstrap replicates over
    the training sentences (``boot``, ``boot_rel``: the same resamples for PT and RI, which share the
    sentences); ``touches_edge`` = 1 when the set still reaches the edge of the grown grid (a lower
    bound), ``alpha_extent``/``beta_extent`` the grid's final span."""
    out = {}
    for init, s in basin_surfaces(P, task, seed).items():
        run = main_runs(P, task, seed)[init]
        samples = s["train_sample_loss"].values.astype(np.float64)
        n1, n2 = s.attrs["d1_norm"], s.attrs["d2_norm"]
        theta1_norm = theta1_norm_of(run)
        scale = n1 * n2 / theta1_norm ** 2
        base = landscape.basin_area(s, FLAT_EPS, samples.mean(-1))
        reps = U.replicates(lambda idx: landscape.basin_area(s, FLAT_EPS, samples[..., idx].mean(-1))["area"], samples.shape[-1])
        out[init] = {"area": base["area"], "area_se": U.se_of(reps), "boot": reps.tolist(),
                     "area_rel": base["area"] * scale, "area_rel_se": U.se_of(reps) * scale,
                     "boot_rel": (reps * scale).tolist(), "touches_edge": base["touches_edge"],
                     "theta1_norm": theta1_norm,
                     "alpha_extent": list(s.attrs["alpha_extent"]), "beta_extent": list(s.attrs["beta_extent"])}
    return out


@functools.lru_cache(maxsize=64)
def flatness(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Barrier and rises of the 1D curve, basin widths (line searches) in both units, the area, and the
    curvatures along the same directions, per main run, flattened for a table."""
    c, w, ar = curves(P, task, seed), widths(P, task, seed), areas(P, task, seed)
    cv = curvature_numbers(P, task, seed)
    out = {}
    for init in c:
        f, al = c[init]["train_loss"].values, c[init]["alpha"].values
        row = {"barrier": barrier_height(f, al), "rises": count_rises(f, al)}
        for k, v in w[init].items():
            row.update({f"width_{k}": v["width"], f"width_{k}_se": v["width_se"], f"width_{k}_param": v["width_param"],
                        f"width_{k}_rel": v["width_rel"], f"width_{k}_censored": v["censored"]})
        row.update({k: v for k, v in ar[init].items() if not isinstance(v, list)})
        row.update({f"curv_{k}": v["value"] for k, v in cv[init]["directional"].items()})
        row.update(top_eigenvalue=cv[init]["top_eigenvalue"], trace=cv[init]["trace"])
        out[init] = row
    return out


def _curvature_directions(run: RunResult, seed: int) -> dict[str, dict]:
    """The directions claim H measures curvature along, the same as claim 3's line searches: δ1 (α units),
    the figures' δ2 (β units), δ1 and a random direction filter-normalised to θ1."""
    theta1, delta = run.theta1(), run.delta()
    return {"d1": delta, "d2": restrict(landscape.run_directions(run, seed=seed)["d2"], delta),
            "d1_fn": filter_normalise(delta, theta1), "d2_fn": random_direction(theta1, seed, "filter", "whole")}


def theta1_norm_of(run: RunResult) -> float:
    """‖θ1‖ of a run (cached: read back without loading the weights)."""
    return cache.memo_json("theta1-norm", run.spec.key(), lambda: norm(run.theta1()))


def hessian_batches(run: RunResult, n: int, n_batches: int, seed: int, device: Any) -> list:
    """``n`` training sentences of the run (the stratified, seeded sample every Hessian of the book
    uses), split into ``n_batches`` independent random batches (:func:`bertscape.geometry.curvature.independent_batches`)."""
    train_enc = run_data(run.spec)[0]
    spec = run.spec
    n = min(n, len(train_enc))
    n -= n % n_batches
    idx = subset_indices(train_enc.labels, n, seed, stratify=not spec.task_info.is_regression, param="n_eval")
    sample = train_enc.select(idx)
    return curvature.independent_batches(lambda pos: prepare_eval(sample.select(pos), device, len(pos)), n, n_batches)


@functools.lru_cache(maxsize=64)
def curvature_numbers(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Curvature of the training loss at θ1 (:func:`bertscape.geometry.curvature.curvature_at`) on
    ``P.hessian_n_eval`` training sentences in ``P.hessian_batches`` independent batches (the same for
    PT and RI): uᵀHu along the directions of claim 3 (:func:`_curvature_directions`), the top eigenvalue
    (``P.hessian_steps`` Lanczos steps) and the trace (``hessian_steps // 2`` Hutchinson probes), each
    with per-batch values for its sampling error, and ‖θ1‖."""
    out = {}
    for init, run in runs(P, task, seed, pairing).items():
        def compute(run=run) -> dict:
            device = _device(P)
            batches = hessian_batches(run, P.hessian_n_eval, P.hessian_batches, seed, device)
            model = run.model("theta1", device=str(device))
            res = curvature.curvature_at(model, batches, _curvature_directions(run, seed), P.hessian_steps,
                                         max(1, P.hessian_steps // 2), seed)
            res.update(theta1_norm=norm(run.theta1()), n_params=int(sum(p.numel() for p in model.parameters())))
            return res

        out[init] = cache.memo_json("curvature", {"run": run.spec.key(), "n": P.hessian_n_eval, "batches":
                                                  P.hessian_batches, "steps": P.hessian_steps, "seed": seed}, compute)
    return out


@functools.lru_cache(maxsize=64)
def layer_reports(P: Profile, task: str, seed: int = 0) -> dict[str, layers.LayerReport]:
    """Every layer measure (change, per-layer curves, restore, per-layer curvature, CKA) for the
    figures (drawn for the figure seed). The per-layer curves are evaluated on training sentences
    only and the restore experiment bottom-up and top-down only: the book draws nothing else (the
    dev-set curves and the group-by-group restore cost ~90 s on 2 cores)."""
    n = P.curve_n_eval
    return {init: layers.analyze_run(run, n_train_eval=n, n_dev_eval=n, n_hessian=P.hessian_n_eval,
                                     alphas=P.layer_alphas, lanczos_steps=P.layer_hessian_steps, cka_tokens=P.cka_tokens,
                                     seed=seed, precision=_prec(P, "curve_precision"), device=P.device,
                                     curve_sets=("train",), orders=("bottom-up", "top-down"))
            for init, run in main_runs(P, task, seed).items()}


def layer_fd_step(P: Profile) -> float:
    """h of claim 8's per-layer curvature (f(1 + h) − 2 f(1) + f(1 − h)) / h²: the smallest step with
    1 ± h both in ``P.layer_alphas`` (those points of the figure's per-layer curves)."""
    return layers.fd_step(P.layer_alphas)


@functools.lru_cache(maxsize=64)
def layer_evidence(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Claim 8's numbers for every seed: the relative change of each encoder layer (lowest first) and
    every training sentence's loss with one layer at α = 1 − h, 1, 1 + h along its own δ1 block
    (others at θ1; :func:`bertscape.geometry.layers.layer_point_losses`, ``curve_n_eval`` sentences drawn with
    the seed), and the loss rise when the layer alone returns to θ0 (from the same evaluation)."""
    h = layer_fd_step(P)
    out = {}
    for init, run in main_runs(P, task, seed).items():
        def compute(run=run) -> dict:
            dev = _device(P)
            theta0, theta1 = run.theta0(), run.theta1()
            lm = layers.discover_layers(theta0)
            enc = list(lm.encoder_groups)
            change = layers.relative_change(theta0, theta1, lm)
            es = landscape.eval_sets_for_run(run, P.curve_n_eval, seed, dev, P.eval_batch_size, splits=("train",))
            losses = layers.layer_point_losses(run.model("theta1", device=str(dev)), theta0, theta1, es["train"],
                                               [0.0, 1.0 - h, 1.0, 1.0 + h], enc, lm, _prec(P, "curve_precision"))
            return {"groups": enc, "change": [float(change.loc[g, "relative_change"]) for g in enc],
                    "fd": losses[:, 1:, :].tolist(), "rise": (losses[:, 0, :].mean(-1) - losses[:, 2, :].mean(-1)).tolist()}

        res = cache.memo_json("layer-evidence", {"run": run.spec.key(), "n": P.curve_n_eval, "seed": seed, "h": h,
                                                 "precision": _prec(P, "curve_precision")}, compute)
        out[init] = {**res, "fd": np.asarray(res["fd"]), "h": h}
    return out


# ----------------------------------------------------------------------------- θ1 evaluations

def _eval_arrays(model, evalset, precision: str) -> dict[str, list]:
    m = evaluate(model, evalset, precision, per_sample=True)
    return {"loss": m["sample_loss"].tolist(), "pred": m["sample_pred"].tolist(), "labels": evalset.labels.tolist()}


@functools.lru_cache(maxsize=64)
def theta1_evals(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Every sentence's loss and prediction at θ1, on the run's whole dev subset and on as many
    training sentences (stratified, seeded), through one evaluation path in the training
    precision: the train and dev numbers of claim 6 come from here."""
    out = {}
    for init, run in runs(P, task, seed, pairing).items():
        def compute(run=run) -> dict:
            dev = _device(P)
            sets = landscape.eval_sets_for_run(run, run.meta["n_dev"], seed, dev, P.eval_batch_size)
            model = run.model("theta1", device=str(dev))
            return {name: _eval_arrays(model, es, _prec(P, "precision")) for name, es in sets.items()}

        res = cache.memo_json("theta1-eval", {"run": run.spec.key(), "seed": seed, "precision": _prec(P, "precision")}, compute)
        out[init] = {f"{split}_{k}": np.asarray(v) for split, d in res.items() for k, v in d.items()}
    return out


@functools.lru_cache(maxsize=64)
def restore_predictions(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Dev predictions (the run's whole dev subset) at θ1 (from :func:`theta1_evals`) and with the
    bottom / top third of the encoder layers put back to θ0 (the ``bottom-up`` and ``top-down``
    rows of :func:`bertscape.geometry.layers.restore_sets`), for claim 9's costs and their bootstrap."""
    out = {}
    at_theta1 = theta1_evals(P, task, seed)
    for init, run in main_runs(P, task, seed).items():
        def compute(run=run) -> dict:
            dev = _device(P)
            es = landscape.eval_sets_for_run(run, run.meta["n_dev"], seed, dev, P.eval_batch_size, splits=("dev",))["dev"]
            theta0, theta1 = run.theta0(), run.theta1()
            lm = layers.discover_layers(theta0)
            k = max(1, round(lm.n_layers / 3))
            restored = {order: groups for order, j, groups in layers.restore_sets(lm, ("bottom-up", "top-down"))
                        if j == k}
            model = run.model("theta1", device=str(dev))
            res = {}
            for which, order in (("bottom", "bottom-up"), ("top", "top-down")):
                load_state(model, theta1)
                load_state(model, {n: theta0[n] for n in lm.names_of(restored[order])})
                res[which] = _eval_arrays(model, es, _prec(P, "precision"))["pred"]
            return res

        res = cache.memo_json("restore-third", {"run": run.spec.key(), "seed": seed, "precision": _prec(P, "precision")}, compute)
        out[init] = {"labels": at_theta1[init]["dev_labels"], "full": at_theta1[init]["dev_pred"],
                     **{k: np.asarray(v) for k, v in res.items()}}
    return out


# ----------------------------------------------------------------------------- one basin or many

def lmc_runs(P: Profile, task: str, bodies: str = "shared") -> dict[str, dict[int, RunResult]]:
    """The runs of every seed in ``P.lmc_seeds`` per starting point (the profile's learning rates):
    ``{init: {seed: run}}``. PT's are the main runs (one pre-trained θ0). RI's share one random θ0, the
    first lmc seed's, and differ only in head, dropout and batch order (``bodies="shared"``): a barrier
    between them is then the landscape's, not the permutation symmetry of two unrelated random networks.
    ``bodies="own"``: the main RI runs, each with its own random θ0 (a second, reported row)."""
    if bodies not in ("shared", "own"):
        raise ValueError(f"bodies={bodies!r} is not accepted; expected 'shared' or 'own'")
    out: dict[str, dict[int, RunResult]] = {}
    for init in P.inits:
        if init == "scratch" and bodies == "shared":
            out[init] = {s: train(P.run_spec(task, init, s, init_seed=P.lmc_seeds[0])) for s in P.lmc_seeds}
        else:
            out[init] = {s: runs(P, task, s)[init] for s in P.lmc_seeds}
    return out


@functools.lru_cache(maxsize=64)
def segments(P: Profile, task: str) -> list[dict[str, Any]]:
    """The straight segments (1 − t)·θ1ᵃ + t·θ1ᵇ between every pair of seeds of one starting point
    (RI: seeds sharing one random θ0, and again seeds with their own θ0), and between PT and RI at the
    first seed, on ``P.segment_points`` points, ``P.grid_n_eval`` sentences per split (the same seeded
    sentences for every segment), every sentence's loss and prediction kept: ``[{kind, a, b, curve}]``
    with ``kind`` ``PT–PT``, ``RI–RI``, ``RI–RI (own θ0)`` or ``PT–RI``."""
    ts = [round(i / (P.segment_points - 1), 10) for i in range(P.segment_points)]
    shared, own = lmc_runs(P, task, "shared"), lmc_runs(P, task, "own")
    pairs = []
    for i in P.inits:
        for n, a in enumerate(P.lmc_seeds):
            for b in P.lmc_seeds[n + 1:]:
                pairs.append((f"{_SHORT[i]}–{_SHORT[i]}", shared[i][a], shared[i][b]))
                if i == "scratch":
                    pairs.append(("RI–RI (own θ0)", own[i][a], own[i][b]))
    if len(P.inits) == 2:
        s0 = P.lmc_seeds[0]
        pairs.append(("PT–RI", shared["pretrained"][s0], shared["scratch"][s0]))
    out = []
    for kind, ra, rb in pairs:
        curve = _indexed(landscape.run_segment, (ra, rb), ts=ts, n_eval=P.grid_n_eval,
                         precision=_prec(P, "grid_precision"), device=P.device, eval_batch_size=P.eval_batch_size,
                         per_sample=True)
        out.append({"kind": kind, "a": f"{_SHORT[ra.spec.init]} s{ra.spec.seed}",
                    "b": f"{_SHORT[rb.spec.init]} s{rb.spec.seed}", "curve": curve})
    return out


def segment_barrier(curve: xr.Dataset, split: str = "train", quantity: str = "loss") -> dict[str, float]:
    """The barrier of a segment's per-sentence ``quantity`` (``loss`` or ``error``) with its sampling error
    (:func:`bertscape.evidence.uncertainty.barrier_interval`): ``{value, se, lo, hi}``."""
    t = curve["alpha"].values
    if quantity == "loss":
        samples = curve[f"{split}_sample_loss"].values.astype(np.float64)
    elif quantity == "error":
        samples = (curve[f"{split}_sample_pred"].values != curve[f"{split}_label"].values[None, :]).astype(np.float64)
    else:
        raise ValueError(f"quantity={quantity!r} is not accepted; expected 'loss' or 'error'")
    return U.barrier_interval(samples, t)


@functools.lru_cache(maxsize=64)
def barriers(P: Profile, task: str) -> pd.DataFrame:
    """One row per segment of :func:`segments`: its kind and end points, the training loss at both
    ends, the barrier of the training loss (with its s.e. and BCa interval) and of the dev error."""
    rows = []
    for seg in segments(P, task):
        c = seg["curve"]
        f = c["train_loss"].values
        b, d = segment_barrier(c, "train", "loss"), segment_barrier(c, "dev", "error")
        rows.append({"kind": seg["kind"], "a": seg["a"], "b": seg["b"], "train_loss_a": float(f[0]),
                     "train_loss_b": float(f[-1]), "barrier": b["value"], "barrier_se": b["se"],
                     "barrier_lo": b["lo"], "barrier_hi": b["hi"],
                     "dev_error_barrier": d["value"], "dev_error_barrier_se": d["se"]})
    return pd.DataFrame(rows)


def _metric(P: Profile, task: str) -> str:
    return P.run_spec(task, "pretrained").metric


def _metric_fn(P: Profile, task: str) -> U.MetricFn:
    return U.metric_fn(P.run_spec(task, "pretrained").task_info, _metric(P, task))


