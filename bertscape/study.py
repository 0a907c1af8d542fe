"""The book's experiments for one profile, shared by every chapter.

Each function computes one kind of result for a task and seed, for both starting points, through
the package's caches: whichever chapter asks first computes it, the others (and the scorecard)
read it back (and within one kernel, each result is computed or read once: the functions are
memoised per process; treat what they return as read-only). Chapters stay short: ``P =
study.start(...)`` after the parameters, a call here and a figure from :mod:`bertscape.plots` per
section, and ``claims.verdict(P, chapter, ...)`` at the end.

**Seeds.** Every scored quantity is computed for every seed of the profile (the scorecard decides on
the per-seed margins, :func:`bertscape.scorecard.summarise`). Work that only a figure reads is done for
the first seed (:func:`figure_seed`) alone: trajectories on the surface's plane, principal-component
paths, the whole θ0-centred surfaces (other seeds evaluate only the neighbourhood of θ1 that claim 7
reads), the dev split of the 1D curves, per-layer Hessians and CKA, the full per-layer curves, and RI's
long run.

**Pairings.** The profile trains PT and RI at different peak learning rates (``lr_pretrained``,
``lr_scratch``): a random network needs a larger step to leave chance level. That makes every
comparison that depends on training confounded by the rate, so the claims marked ``controlled``
are also decided under *matched* pairings (both runs at RI's rate, and/or both at PT's; the profile's
``control_lrs``). A pairing is named by :func:`pairings`.

Fixed analysis settings (chosen in advance, listed in :data:`bertscape.scorecard.THRESHOLDS`):
the basin of θ1 is {f ≤ f(θ1) + ε}, ε = :data:`FLAT_EPS` in training loss; widths come from line
searches (:mod:`bertscape.linesearch`) in two units (:data:`bertscape.scorecard.UNITS`); every
surface's β extent is the profile's ``grid_beta`` times that run's own basin half-width along δ2.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from IPython.display import Markdown, display

from . import cache, curvature, landscape, layers, linesearch, scorecard, versions
from . import uncertainty as U
from .data import subset_indices
from .directions import filter_normalise, norm, random_direction, restrict, sub
from .evaluate import evaluate, prepare_eval
from .flatness import barrier_height, count_rises, sublevel_area
from .models import load_state, resolve_device
from .precision import describe as describe_precision, resolve as resolve_precision
from .profiles import DEFAULT_PROFILE, Profile, from_params
from .train import RunResult, run_data, train

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
    """Did each run of a pairing train? (:func:`bertscape.scorecard.training_check`: its training loss
    fell below a share of its start and its dev metric beat the majority class by a margin beyond its
    bootstrap error.)"""
    return {init: run_check(P, task, run) for init, run in runs(P, task, seed, pairing).items()}


_CHECKS: dict[tuple[str, str], dict] = {}


def run_check(P: Profile, task: str, run: RunResult) -> dict:
    """:func:`bertscape.scorecard.training_check` of one run (memoised per process)."""
    key = (run.spec.key(), _metric(P, task))
    if key not in _CHECKS:
        preds, labels = run.dev_predictions()
        name = f"{_SHORT[run.spec.init]} {run.spec.label().split('/', 2)[2]} (lr {run.spec.lr:g})"
        _CHECKS[key] = scorecard.training_check(name, run.steps["loss"].to_numpy(), preds[-1], labels,
                                                _metric_fn(P, task), run.spec.task_info.is_regression)
    return _CHECKS[key]


def training_table(P: Profile, task: str, connectivity: bool = True) -> pd.DataFrame:
    """Every run the scorecard compares (each seed and pairing, and with ``connectivity`` the runs of
    the connectivity chapter), whether it trained and why not: the runs that take part in verdicts, and
    those that cannot."""
    seen, rows = set(), []
    every = [(s, r) for s in P.seeds for p in pairings(P) for r in runs(P, task, s, p).values()]
    if connectivity:
        every += [(s, r) for how in ("shared", "own") for rs in lmc_runs(P, task, how).values() for s, r in rs.items()]
    for s, r in every:
        if r.spec.key() in seen:
            continue
        seen.add(r.spec.key())
        c = run_check(P, task, r)
        rows.append({"run": f"{_SHORT[r.spec.init]} s{r.spec.seed}" + (f", θ0 of s{r.spec.init_seed}"
                                                                        if r.spec.init_seed is not None else ""),
                     "lr": r.spec.lr, "loss first → last": f"{c['loss_first']:.3g} → {c['loss_last']:.3g}",
                     "dev metric": c["dev_metric"], "± s.e.": c["dev_metric_se"], "majority class": c["baseline"],
                     "trained": "yes" if c["trained"] else "no", "why not": c["why"]})
    return pd.DataFrame(rows)


def _device(P: Profile):
    return resolve_device(P.device)


def _prec(P: Profile, field: str) -> str:
    """A precision field of the profile resolved on its device (``auto`` → ``fp32``/``bf16``,
    :func:`bertscape.precision.resolve`): what the computation uses and what its cache key holds."""
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
    """``fn(*runs_, **kwargs)`` (a run-level grid of :mod:`bertscape.landscape`), found first through an
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
        ds = landscape.read_grid(cache.subdir("grids") / entry["file"])
        if ds is not None and int(ds.attrs.get("complete", 0)) == 1:
            return ds
    ds = fn(*runs_, **kwargs)
    name = f"{ds.attrs['kind']}-{ds.attrs['grid_key']}.nc"
    if int(ds.attrs.get("complete", 0)) == 1 and (cache.subdir("grids") / name).is_file():
        cache.write_json(path, {"file": name})
    return ds


@functools.lru_cache(maxsize=64)
def widths(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Basin widths of θ1 by line search (:func:`bertscape.linesearch.run_widths`) along δ1 and a
    random direction in both units of :data:`bertscape.scorecard.UNITS` (filter-normalised to θ1; δ1
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
    grid's α within :data:`bertscape.scorecard.NEIGHBOURHOOD` of θ1 (every β), the points compared."""
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
            df = landscape.project_trajectory(run, dirs["d1"], dirs["d2"], surface=s, model=model,
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
            df = landscape.project_trajectory(run, plane["d1"], plane["d2"], origin="theta1")
            return {"path": df.to_dict(orient="list"), "explained_variance_ratio": plane["explained_variance_ratio"]}

        res = cache.memo_json("pca-path", run.spec.key(), compute)
        out[init] = {"path": pd.DataFrame(res["path"]), "explained_variance_ratio": res["explained_variance_ratio"]}
    return out


def path_stats(run: RunResult) -> dict[str, float]:
    """Straightness of a run's path in the full parameter space: the summed length of the
    segments between checkpoints over the straight displacement ‖θ1 − θ0‖ (1 = a straight line)."""
    def compute() -> dict:
        length, prev = 0.0, None
        t0 = None
        for _, theta in run.trajectory():
            if prev is None:
                t0 = theta
            else:
                length += norm(sub(theta, prev))
            prev = theta
        disp = norm(sub(prev, t0))
        return {"path_length": length, "displacement": disp, "ratio": length / disp if disp > 0 else float("inf")}

    return cache.memo_json("path", run.spec.key(), compute)


#: The θ1-centred basin grid starts at ±2 basin half-widths a side and grows by half that span on
#: every side its sub-level set still reaches, at most this many times (a set that reaches the edge
#: then is censored: the area row is inconclusive).
BASIN_GROWTH_STEPS = 3


def _basin_area(s: xr.Dataset, f: np.ndarray | None = None) -> dict[str, Any]:
    """:func:`bertscape.flatness.sublevel_area` of θ1's set {f ≤ f(θ1) + ε} on a θ1-centred grid
    (``f``: values on the grid of ``s``, by default its training loss), with the sides of the grid
    the set reaches (``edges``: a subset of ``"-α +α -β +β"``)."""
    f = s["train_loss"].values if f is None else f
    return sublevel_area(f, s["alpha"].values, s["beta"].values, (0.0, 0.0), FLAT_EPS)


def grow_basin_grid(grid: Callable[[list[float], list[float]], xr.Dataset], n: int,
                    steps: int = BASIN_GROWTH_STEPS) -> xr.Dataset:
    """A θ1-centred grid that contains θ1's sub-level set {f ≤ f(θ1) + ε}: ``grid(alphas, betas)``
    evaluates (and caches) the training loss on a rectangle of axis values in units of the two
    half-spans; the grid starts at ``n`` points on [−1, 1]² and, while the set reaches a side,
    adds ``(n − 1) // 2`` points of the same spacing on every side it reaches, at most ``steps``
    times. Returns the merged dataset (``attrs["alpha_axis"]``/``["beta_axis"]``: its span in
    half-span units)."""
    axis = [round(-1 + 2 * i / (n - 1), 10) for i in range(n)]
    step, k = 2 / (n - 1), max(1, (n - 1) // 2)
    ax = {"alpha": list(axis), "beta": list(axis)}
    s = grid(ax["alpha"], ax["beta"])
    attrs = dict(s.attrs)
    for _ in range(steps):
        edges = _basin_area(s)["edges"]
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

        s = grow_basin_grid(grid, P.grid_points[0], BASIN_GROWTH_STEPS)
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
        base = _basin_area(s, samples.mean(-1))
        reps = U.replicates(lambda idx: _basin_area(s, samples[..., idx].mean(-1))["area"], samples.shape[-1])
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


#: The flatness measures drawn side by side in two units: (table column, label, unit, kind).
FLATNESS_MEASURES = (
    ("width_d1", "width along δ1 (α)", "paper", "width"),
    ("width_d2", "width along δ2 (β)", "paper", "width"),
    ("area", "sub-level area (α·β)", "paper", "width"),
    ("width_d1_fn", "width along δ1, filter-normalised", "invariant", "width"),
    ("width_d2_fn", "width along a random dir., filter-normalised", "invariant", "width"),
    ("area_rel", "sub-level area / ‖θ1‖²", "invariant", "width"),
    ("curv_d1", "curvature along δ1 (α)", "paper", "curvature"),
    ("curv_d2", "curvature along δ2 (β)", "paper", "curvature"),
    ("curv_d1_fn", "curvature along δ1, filter-normalised", "invariant", "curvature"),
    ("curv_d2_fn", "curvature along a random dir., filter-normalised", "invariant", "curvature"),
    ("top_eigenvalue", "Hessian top eigenvalue (raw)", "raw", "curvature"),
)


def flatness_ratios(P: Profile, task: str) -> pd.DataFrame:
    """PT ÷ RI of every width and area, and RI ÷ PT of every curvature (:data:`FLATNESS_MEASURES`), per
    seed: above 1 PT's optimum is wider or flatter in that measure (the frame of
    :func:`bertscape.plots.flatness_ratios`). The top eigenvalue is in raw parameter units."""
    rows = []
    for seed in P.seeds:
        f = flatness(P, task, seed)
        for col, label, unit, kind in FLATNESS_MEASURES:
            pt, ri = f["pretrained"].get(col, np.nan), f["scratch"].get(col, np.nan)
            ratio = pt / ri if kind == "width" else ri / pt
            rows.append({"measure": label, "unit": unit, "kind": kind, "seed": seed, "ratio": ratio,
                         "pretrained": pt, "scratch": ri})
    return pd.DataFrame(rows)


def flatness_table(P: Profile) -> pd.DataFrame:
    """Every flatness number of the main runs in both units, PT and RI side by side: the mean over the
    seeds and their standard deviation (``PT``, ``PT sd``, ``RI``, ``RI sd``; chapter 2's table, shown with
    :func:`bertscape.report.mean_pm`). Rows in :data:`FLATNESS_MEASURES` order, then the robustness width
    (biases and LayerNorm left out), the trace and ‖θ1‖ (the scale raw curvature is in)."""
    extra = (("width_d2_fn_nobias", "width along a random dir., filter-normalised, no biases/LayerNorm", "invariant"),
             ("trace", "Hessian trace (raw)", "raw"), ("theta1_norm", "‖θ1‖", "raw"),
             ("barrier", "barrier on the line θ0 → θ1", "paper"))
    measures = [(c, lab, u) for c, lab, u, _ in FLATNESS_MEASURES] + list(extra)
    rows = []
    for task in P.tasks:
        for seed in P.seeds:
            f = flatness(P, task, seed)
            for init, v in f.items():
                for col, label, unit in measures:
                    rows.append({"task": task, "measure": label, "unit": report_unit(unit), "init": init, "seed": seed,
                                 "value": v.get(col, np.nan)})
    df = pd.DataFrame(rows)
    g = df.groupby(["task", "measure", "unit", "init"], sort=False)["value"]
    stats = pd.DataFrame({"mean": g.mean(), "sd": g.std()}).reset_index()
    out = stats.pivot_table(index=["task", "measure", "unit"], columns="init", values=["mean", "sd"], sort=False)
    out.columns = [f"{_SHORT.get(i, i)}{'' if k == 'mean' else ' sd'}" for k, i in out.columns]
    return out.reset_index()


def report_unit(unit: str) -> str:
    """A unit key as the pages name it."""
    return {"paper": "paper's (α, β)", "invariant": "scale-invariant", "raw": "raw parameters"}.get(unit, unit)


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
    uses), split into ``n_batches`` independent random batches (:func:`bertscape.curvature.independent_batches`)."""
    train_enc = run_data(run.spec)[0]
    spec = run.spec
    n = min(n, len(train_enc))
    n -= n % n_batches
    idx = subset_indices(train_enc.labels, n, seed, stratify=not spec.task_info.is_regression, param="n_eval")
    sample = train_enc.select(idx)
    return curvature.independent_batches(lambda pos: prepare_eval(sample.select(pos), device, len(pos)), n, n_batches)


@functools.lru_cache(maxsize=64)
def curvature_numbers(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Curvature of the training loss at θ1 (:func:`bertscape.curvature.curvature_at`) on
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
    (others at θ1; :func:`bertscape.layers.layer_point_losses`, ``curve_n_eval`` sentences drawn with
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
    rows of :func:`bertscape.layers.restore_sets`), for claim 9's costs and their bootstrap."""
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
    """The barrier of a segment, the largest rise of the per-sentence mean ``quantity`` (``loss`` or
    ``error``) above the chord of its end values (:func:`bertscape.flatness.barrier_height`), with its
    bootstrap s.e. and its BCa interval over the sentences (a barrier is ≥ 0 and skewed near 0):
    ``{value, se, lo, hi}``."""
    t = curve["alpha"].values
    if quantity == "loss":
        samples = curve[f"{split}_sample_loss"].values.astype(np.float64)
    elif quantity == "error":
        samples = (curve[f"{split}_sample_pred"].values != curve[f"{split}_label"].values[None, :]).astype(np.float64)
    else:
        raise ValueError(f"quantity={quantity!r} is not accepted; expected 'loss' or 'error'")

    def stat(x, axis=-1):  # x: (points, [resamples,] sentences); the barrier of each resample's mean curve
        m = np.moveaxis(np.asarray(x).mean(axis=axis), 0, -1)  # ([resamples,] points)
        return np.array([barrier_height(r, t) for r in m.reshape(-1, m.shape[-1])]).reshape(m.shape[:-1])

    value = barrier_height(samples.mean(-1), t)
    lo, hi = U.bca_interval(samples, stat)
    se = U.bootstrap_se(lambda idx: barrier_height(samples[:, idx].mean(-1), t), samples.shape[-1])
    return {"value": float(value), "se": se, "lo": lo, "hi": hi}


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


# ----------------------------------------------------------------------------- a chapter's first and last cell

def start(profile: str = DEFAULT_PROFILE, tasks: str | list[str] | None = None, glue_dir: str | None = None,
          overrides: dict[str, Any] | str | None = None, seeds: int | list[int] | str | None = None,
          model: str | None = None, *, show_profile: bool = True) -> Profile:
    """A chapter's set-up, the cell after its papermill parameters: resolves the parameters into a
    :class:`~bertscape.profiles.Profile` (:func:`bertscape.profiles.from_params`), applies the
    book's plotting style (:func:`bertscape.plots.use_style`) and, with ``show_profile``, displays
    what this execution runs (:func:`profile_summary`). Returns the profile."""
    # plots imports matplotlib: only a chapter needs it, not the workers and sweeps that import study
    from . import plots

    P = from_params(profile, tasks, glue_dir, overrides, seeds=seeds, model=model)
    plots.use_style()
    if show_profile:
        given = {"profile": profile, "tasks": tasks, "seeds": seeds, "model": model, "glue_dir": glue_dir,
                 "overrides": overrides}
        display(Markdown(profile_summary(P) + "\n\n" + parameters_line(given) + "\n\n" + results_source()))
    return P


#: The parameters cell's defaults (what a reader sees in the cell, whatever this page was built with).
CELL_DEFAULTS = {"profile": DEFAULT_PROFILE, "tasks": None, "seeds": None, "model": None, "glue_dir": None,
                 "overrides": {}}


def parameters_line(given: dict[str, Any]) -> str:
    """The values this execution's parameters cell actually held (papermill replaces the defaults the
    page shows in a cell that is not displayed), or that it ran with the defaults."""
    def empty(v: Any) -> bool:
        return v is None or v == {} or v == [] or (isinstance(v, str) and v.strip() in ("", "{}", "[]", "None"))

    used = {k: v for k, v in given.items() if not empty(v) and v != CELL_DEFAULTS.get(k)}
    if not used:
        return "**Parameters of this execution:** the defaults shown in the cell below."
    return ("**Parameters of this execution** (the cell below shows the defaults): "
            + ", ".join(f"`{k} = {v!r}`" for k, v in used.items()) + ".")


def results_source() -> str:
    """Where this page's numbers come from: a results bundle the build imported (its manifest's profile,
    machine, precision, date and package version), or this build itself."""
    path = os.environ.get("BERTSCAPE_BUNDLE")
    if not path:
        return ("**Source of the results:** computed in this build (or read back from this machine's cache, "
                "where an earlier build computed them).")
    from .bundle import read_manifest  # only a page rendered from a bundle reads one

    m = read_manifest(path)
    prec = ", ".join(f"{k.replace('_precision', '')} {v}" for k, v in m["precision"].items())
    return (f"**Source of the results:** imported from the results bundle `{Path(path).name}` — profile "
            f"`{m['profile']}`, computed on {m['machine']['device']} in {prec}, on {m['created']}, with bertscape "
            f"{m['package_version']}; nothing on this page was trained or evaluated in this build.")


# ----------------------------------------------------------------------------- tables for the chapters

def profile_summary(P: Profile) -> str:
    """A Markdown paragraph saying what this execution of a chapter ran."""
    n_train = "all" if P.n_train is None else f"{P.n_train:,}"
    return (f"**Profile `{P.name}`** ({P.description}): model `{P.model}`, task(s) {', '.join(f'`{t}`' for t in P.tasks)}, "
            f"seed(s) {', '.join(map(str, P.seeds))}; {n_train} training sentences × {P.epochs} epochs, "
            f"max length {P.max_length}; 1D curves of {P.curve_points} points and {P.grid_points[0]}×{P.grid_points[1]} "
            f"surfaces on {P.grid_n_eval} sentences per split. {precision_summary(P)}")


def precision_summary(P: Profile) -> str:
    """Which precision this execution computed in (each profile field resolved on its device) and why."""
    fields = {"training": "precision", "curves": "curve_precision", "grids": "grid_precision"}
    used = ", ".join(f"{k} {_prec(P, f)}" + (" (auto)" if getattr(P, f) == "auto" else " (pinned)")
                     for k, f in fields.items())
    return f"Precision: {used}; Hessians fp32; {describe_precision(resolve_device(P.device))}."


def final_metrics(P: Profile, task: str) -> pd.DataFrame:
    """Dev metrics at θ1 and run time of the main runs, one row per init and seed."""
    rows = []
    for seed in P.seeds:
        for init, run in main_runs(P, task, seed).items():
            rows.append({"task": task, "init": init, "seed": seed, **{f"dev {k}": v for k, v in run.final.items()},
                         "steps": run.meta["total_steps"], "train seconds": run.meta["seconds"]})
    return pd.DataFrame(rows)


def path_summary(P: Profile, task: str) -> pd.DataFrame:
    """One row per main run of the figure seed: how far off the (δ1, δ2) plane its checkpoints lie (relative
    to their distance from θ0) and how well the surface predicts their training loss."""
    from .plots import init_label  # plots imports matplotlib: only a chapter's table needs the label

    traj = trajectories(P, task, figure_seed(P))
    return pd.DataFrame([{"task": task, "start": init_label(i), "checkpoints": len(t),
                          "median off-plane residual": t["rel_residual"].median(),
                          "largest off-plane residual": t["rel_residual"].max(),
                          "largest |true − surface| loss": (t["train_loss"] - t["train_loss_surface"]).abs().max()}
                         for i, t in traj.items()])


def layer_frame(reports: dict[str, layers.LayerReport], table: str, value: str,
                view: str | None = None) -> pd.DataFrame:
    """A long per-layer table (``layer``, ``init``, ``value``, ``layer_index``) for the plots."""
    frames = []
    for init, rep in reports.items():
        df = getattr(rep, table)
        if view is not None:
            df = df.loc[view]
        df = df.reset_index()
        name = "group" if "group" in df.columns else df.columns[0]
        frames.append(pd.DataFrame({"layer": df[name].astype(str), "init": init, value: df[value],
                                    "layer_index": df["layer_index"] if "layer_index" in df else np.arange(len(df))}))
    return pd.concat(frames, ignore_index=True)


def restore_frame(reports: dict[str, layers.LayerReport], metric: str) -> pd.DataFrame:
    """The restore experiment in long form: ``order``, ``k``, ``init`` and the dev metric."""
    frames = []
    for init, rep in reports.items():
        r = rep.restore[rep.restore["order"].isin(["bottom-up", "top-down"])]
        frames.append(pd.DataFrame({"order": r["order"], "k": r["k"], "init": init,
                                    f"dev_{metric}": r[f"dev_{metric}"], "restored": r["restored"]}))
    return pd.concat(frames, ignore_index=True)


def layer_curve_frame(reports: dict[str, layers.LayerReport], var: str = "train_loss",
                      view: str = "theta1") -> pd.DataFrame:
    """Per-layer curves in long form (``layer``, ``init``, ``alpha``, ``var``) for the explorer."""
    frames = []
    for init, rep in reports.items():
        df = rep.curves[var].sel(view=view).to_dataframe().reset_index()
        frames.append(pd.DataFrame({"layer": df["group"].astype(str), "init": init, "alpha": df["alpha"],
                                    var: df[var]}))
    return pd.concat(frames, ignore_index=True)
