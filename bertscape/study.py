"""The book's experiments for one profile, shared by every chapter.

Each function computes one kind of result for a task and seed, for both starting points, through
the package's caches: whichever chapter asks first computes it, the others (and the scorecard)
read it back (and within one kernel, each result is computed or read once: the functions are
memoised per process; treat what they return as read-only). Chapters stay short: ``P =
study.start(...)`` after the parameters, a call here and a figure from :mod:`bertscape.plots` per
section, and ``study.verdict(P, chapter, ...)`` at the end.

**Pairings.** The profile trains PT and RI at different peak learning rates (``lr_pretrained``,
``lr_scratch``): a random network needs a larger step to leave chance level. That makes every
comparison that depends on training confounded by the rate, so the claims marked ``controlled`` in
:data:`bertscape.scorecard.CLAIMS` are also decided under *matched* pairings (both runs at PT's
rate, and/or both at RI's; the profile's ``control_lrs``). A pairing is named by :func:`pairings`.

Fixed analysis settings (chosen in advance, listed in :data:`bertscape.scorecard.THRESHOLDS`):
the basin of θ1 is {f ≤ f(θ1) + ε}, ε = :data:`FLAT_EPS` in training loss; widths come from line
searches (:mod:`bertscape.linesearch`) in units filter-normalised to θ1; every surface's β extent is
the profile's ``grid_beta`` times that run's own basin half-width along δ2.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from IPython.display import Markdown, display

from . import cache, curvature, landscape, layers, linesearch, report, scorecard
from . import uncertainty as U
from .directions import norm, sub
from .evaluate import evaluate
from .flatness import barrier_height, count_rises, sublevel_area
from .models import load_state, resolve_device
from .precision import describe as describe_precision, resolve as resolve_precision
from .profiles import DEFAULT_PROFILE, Profile, from_params
from .train import RunResult, train

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


@functools.lru_cache(maxsize=64)
def long_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The long runs (far past convergence at a constant rate after warm-up, one dev evaluation
    per epoch) of ``task``."""
    return {init: train(P.long_run_spec(task, init, seed)) for init in P.inits}


def _device(P: Profile):
    return resolve_device(P.device)


def _prec(P: Profile, field: str) -> str:
    """A precision field of the profile resolved on its device (``auto`` → ``fp32``/``bf16``,
    :func:`bertscape.precision.resolve`): what the computation uses and what its cache key holds."""
    return resolve_precision(getattr(P, field), P.device)


# ----------------------------------------------------------------------------- landscapes

@functools.lru_cache(maxsize=64)
def curves(P: Profile, task: str, seed: int = 0) -> dict[str, xr.Dataset]:
    """1D curves f(α) = L(θ0 + α·δ1) of the main runs, on training and dev subsets (every
    sentence's loss kept, for the paired bootstrap of claim 2)."""
    return {init: landscape.run_curve(run, alphas=P.curve_axis(), n_eval=P.curve_n_eval,
                                      precision=_prec(P, "curve_precision"), device=P.device,
                                      eval_batch_size=P.eval_batch_size, per_sample=True)
            for init, run in main_runs(P, task, seed).items()}


@functools.lru_cache(maxsize=64)
def widths(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict]:
    """Basin widths of θ1 by line search (:func:`bertscape.linesearch.run_widths`) along δ1 and a
    random direction, filter-normalised to θ1 (the common unit), along δ1 itself (α units) and
    along the surfaces' δ2 (β units), on ``P.grid_n_eval`` training sentences; cached."""
    out = {}
    for init, run in runs(P, task, seed, pairing).items():
        def compute(run=run) -> dict:
            dev = _device(P)
            ev = landscape.eval_sets_for_run(run, P.grid_n_eval, seed, dev, P.eval_batch_size, splits=("train",))["train"]
            d2 = landscape.run_directions(run, seed=seed)["d2"]
            return linesearch.run_widths(run, d2, ev, FLAT_EPS, seed, _prec(P, "grid_precision"), dev)

        key = {"run": run.spec.key(), "n": P.grid_n_eval, "seed": seed, "eps": FLAT_EPS,
               "precision": _prec(P, "grid_precision"), "rules": [linesearch.REFINE_STEPS, linesearch.CAP_DISPLACEMENTS,
                                                          linesearch.FIRST_STEP_DISPLACEMENTS, linesearch.N_BOOT,
                                                          linesearch.GUARD_FACTOR, linesearch.GUARD_SE]}
        out[init] = cache.memo_json("widths", key, compute)
    return out


def half_width(P: Profile, task: str, seed: int, init: str, direction: str = "d2") -> float:
    """A main run's basin half-width (the larger side) along one line-search direction, in that
    direction's units: along ``d2`` (β units) it is the unit of ``grid_beta``."""
    w = widths(P, task, seed)[init][direction]
    return float(max(-w["lo"], w["hi"]))


@functools.lru_cache(maxsize=64)
def surfaces(P: Profile, task: str, seed: int = 0, centre: str = "theta0", d2: str = "random") -> dict[str, xr.Dataset]:
    """2D surfaces f(α, β) = L(origin + α·δ1 + β·δ2) of the main runs (δ2 filter-normalised
    random, orthogonalised against δ1; or the trajectory's PCA direction with ``d2="pca"``).

    The β axis is ``P.grid_beta`` × the run's own basin half-width along δ2 (:func:`half_width`),
    rounded to 3 significant digits: the same rule for PT and RI, so the loss visibly rises inside
    every surface. Every sentence's loss and prediction is kept (claims 3 and 7 bootstrap them)."""
    alphas, unit_betas = P.grid_axes()
    if centre == "theta1":
        alphas = [round(a - 1.0, 10) for a in alphas]
    out = {}
    for init, run in main_runs(P, task, seed).items():
        b = float(f"{half_width(P, task, seed, init):.3g}")
        out[init] = landscape.run_surface(run, alphas=alphas, betas=[round(x * b, 10) for x in unit_betas],
                                          centre=centre, d2=d2, seed=seed, n_eval=P.grid_n_eval,
                                          precision=_prec(P, "grid_precision"), device=P.device,
                                          eval_batch_size=P.eval_batch_size, per_sample=True)
        out[init].attrs["beta_unit"] = b
    return out


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
            return landscape.run_surface(run, alphas=[round(x * half_a, 10) for x in alphas],
                                         betas=[round(x * half_b, 10) for x in betas], centre="theta1", seed=seed,
                                         n_eval=P.grid_n_eval, precision=_prec(P, "grid_precision"), device=P.device,
                                         eval_batch_size=P.eval_batch_size, per_sample=True, splits=("train",))

        s = grow_basin_grid(grid, P.grid_points[0], BASIN_GROWTH_STEPS)
        s.attrs.update(alpha_unit=half_a, beta_unit=half_b,
                       alpha_extent=[round(x * half_a, 10) for x in s.attrs["alpha_axis"]],
                       beta_extent=[round(x * half_b, 10) for x in s.attrs["beta_axis"]])
        out[init] = s
    return out


@functools.lru_cache(maxsize=64)
def areas(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Area of the sub-level set {f ≤ f(θ1) + ε} around θ1 (:func:`basin_surfaces`): in α·β units,
    and relative to ‖θ1‖² (area × ‖δ1‖·‖δ2‖ / ‖θ1‖², scale-invariant), with a bootstrap over the
    training sentences; ``touches_edge`` = 1 when the set still reaches the edge of the grown grid
    (censored), ``alpha_extent``/``beta_extent`` the grid's final span."""
    out = {}
    for init, s in basin_surfaces(P, task, seed).items():
        run = main_runs(P, task, seed)[init]
        samples = s["train_sample_loss"].values.astype(np.float64)
        n1, n2 = s.attrs["d1_norm"], s.attrs["d2_norm"]
        scale = n1 * n2 / norm(run.theta1()) ** 2
        base = _basin_area(s, samples.mean(-1))
        se = U.bootstrap_se(lambda idx: _basin_area(s, samples[..., idx].mean(-1))["area"], samples.shape[-1])
        out[init] = {"area": base["area"], "area_se": se, "area_rel": base["area"] * scale,
                     "area_rel_se": se * scale, "touches_edge": base["touches_edge"],
                     "alpha_extent": list(s.attrs["alpha_extent"]), "beta_extent": list(s.attrs["beta_extent"])}
    return out


@functools.lru_cache(maxsize=64)
def flatness(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Barrier and rises of the 1D curve, and basin widths (line searches) and area per main run,
    flattened for a table."""
    c, w, ar = curves(P, task, seed), widths(P, task, seed), areas(P, task, seed)
    out = {}
    for init in c:
        f, al = c[init]["train_loss"].values, c[init]["alpha"].values
        row = {"barrier": barrier_height(f, al), "rises": count_rises(f, al)}
        for k, v in w[init].items():
            row.update({f"width_{k}": v["width"], f"width_{k}_se": v["width_se"], f"width_{k}_param": v["width_param"],
                        f"width_{k}_rel": v["width_rel"], f"width_{k}_censored": v["censored"]})
        row.update({k: v for k, v in ar[init].items() if not isinstance(v, list)})
        out[init] = row
    return out


@functools.lru_cache(maxsize=64)
def curvature_numbers(P: Profile, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> dict[str, dict[str, float]]:
    """Hessian top eigenvalue (Lanczos, with its Ritz residual) and trace (Hutchinson, with its
    standard error) of the training loss at θ1, on ``P.hessian_n_eval`` training sentences (the same
    stratified sample chapter 4's per-layer Hessian uses), ``P.hessian_steps`` products each."""
    out = {}
    for init, run in runs(P, task, seed, pairing).items():
        def compute(run=run) -> dict:
            device = _device(P)
            sets = landscape.eval_sets_for_run(run, P.hessian_n_eval, seed, device=device, splits=("train",))
            model = run.model("theta1", device=str(device))
            top, resid = curvature.hessian_top_eigenvalues(model, sets["train"], k=1, lanczos_steps=P.hessian_steps,
                                                           seed=seed, return_residuals=True)
            tr, se = curvature.hessian_trace(model, sets["train"], n_samples=P.hessian_steps, seed=seed,
                                             return_stderr=True)
            return {"top_eigenvalue": top[0], "top_residual": resid[0], "trace": tr, "trace_stderr": se,
                    "n_params": int(sum(p.numel() for p in model.parameters()))}

        out[init] = cache.memo_json("curvature", {"run": run.spec.key(), "n": P.hessian_n_eval,
                                                  "steps": P.hessian_steps, "seed": seed}, compute)
    return out


@functools.lru_cache(maxsize=64)
def layer_reports(P: Profile, task: str, seed: int = 0) -> dict[str, layers.LayerReport]:
    """Every layer measure (change, per-layer curves, restore, per-layer curvature, CKA). The
    per-layer curves are evaluated on training sentences only and the restore experiment bottom-up
    and top-down only: the book draws and scores nothing else (the dev-set curves and the
    group-by-group restore cost ~90 s on 2 cores)."""
    n = P.curve_n_eval
    return {init: layers.analyze_run(run, n_train_eval=n, n_dev_eval=n, n_hessian=P.hessian_n_eval,
                                     alphas=P.layer_alphas, lanczos_steps=P.layer_hessian_steps, cka_tokens=P.cka_tokens,
                                     seed=seed,
                                     precision=_prec(P, "curve_precision"), device=P.device, curve_sets=("train",),
                                     orders=("bottom-up", "top-down"))
            for init, run in main_runs(P, task, seed).items()}


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

def lmc_runs(P: Profile, task: str) -> dict[str, dict[int, RunResult]]:
    """The main runs (the profile's learning rates) of every seed in ``P.lmc_seeds``, per starting
    point: ``{init: {seed: run}}`` (seeds beyond ``P.seeds`` are trained here)."""
    return {init: {s: runs(P, task, s)[init] for s in P.lmc_seeds} for init in P.inits}


@functools.lru_cache(maxsize=64)
def segments(P: Profile, task: str) -> list[dict[str, Any]]:
    """The straight segments (1 − t)·θ1ᵃ + t·θ1ᵇ between every pair of seeds of one starting point,
    and between PT and RI at the first seed, on ``P.segment_points`` points, ``P.grid_n_eval``
    sentences per split (the same seeded sentences for every segment), every sentence's loss and
    prediction kept: ``[{kind, a, b, curve}]`` with ``kind`` ``PT–PT``, ``RI–RI`` or ``PT–RI``."""
    ts = [round(i / (P.segment_points - 1), 10) for i in range(P.segment_points)]
    by_init = lmc_runs(P, task)
    pairs = [(f"{_SHORT[i]}–{_SHORT[i]}", (i, a), (i, b)) for i in P.inits
             for n, a in enumerate(P.lmc_seeds) for b in P.lmc_seeds[n + 1:]]
    if len(P.inits) == 2:
        s0 = P.lmc_seeds[0]
        pairs.append(("PT–RI", ("pretrained", s0), ("scratch", s0)))
    out = []
    for kind, (ia, sa), (ib, sb) in pairs:
        curve = landscape.run_segment(by_init[ia][sa], by_init[ib][sb], ts, n_eval=P.grid_n_eval,
                                      precision=_prec(P, "grid_precision"), device=P.device,
                                      eval_batch_size=P.eval_batch_size, per_sample=True)
        out.append({"kind": kind, "a": f"{_SHORT[ia]} s{sa}", "b": f"{_SHORT[ib]} s{sb}", "curve": curve})
    return out


def segment_barrier(curve: xr.Dataset, split: str = "train", quantity: str = "loss") -> tuple[float, float]:
    """(barrier, bootstrap standard error over sentences) of a segment: the largest rise of the
    per-sentence mean ``quantity`` (``loss`` or ``error``) above the chord of its end values
    (:func:`bertscape.flatness.barrier_height`)."""
    t = curve["alpha"].values
    if quantity == "loss":
        samples = curve[f"{split}_sample_loss"].values.astype(np.float64)
    elif quantity == "error":
        samples = (curve[f"{split}_sample_pred"].values != curve[f"{split}_label"].values[None, :]).astype(np.float64)
    else:
        raise ValueError(f"quantity={quantity!r} is not accepted; expected 'loss' or 'error'")
    value = barrier_height(samples.mean(-1), t)
    se = U.bootstrap_se(lambda idx: barrier_height(samples[:, idx].mean(-1), t), samples.shape[-1])
    return float(value), se


@functools.lru_cache(maxsize=64)
def barriers(P: Profile, task: str) -> pd.DataFrame:
    """One row per segment of :func:`segments`: its kind and end points, the training loss at both
    ends, and the barrier of the training loss and of the dev error with their standard errors."""
    rows = []
    for seg in segments(P, task):
        c = seg["curve"]
        f = c["train_loss"].values
        (b, se), (db, dse) = segment_barrier(c, "train", "loss"), segment_barrier(c, "dev", "error")
        rows.append({"kind": seg["kind"], "a": seg["a"], "b": seg["b"], "train_loss_a": float(f[0]),
                     "train_loss_b": float(f[-1]), "barrier": b, "barrier_se": se,
                     "dev_error_barrier": db, "dev_error_barrier_se": dse})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- claims

def _metric(P: Profile, task: str) -> str:
    return P.run_spec(task, "pretrained").metric


def _pair(d: dict[str, Any]) -> tuple[Any, Any]:
    if "pretrained" not in d or "scratch" not in d:
        raise ValueError("the scorecard compares both starting points: the profile's inits must be "
                         "('pretrained', 'scratch')")
    return d["pretrained"], d["scratch"]


def _metric_fn(P: Profile, task: str) -> U.MetricFn:
    return U.metric_fn(P.run_spec(task, "pretrained").task_info, _metric(P, task))


def _trained(P: Profile, task: str, seed: int, pairing: str, who: str = "both") -> str | None:
    pt, ri = _pair(runs(P, task, seed, pairing))
    steps = {"PT": pt.steps, "RI": ri.steps} if who == "both" else {"PT": pt.steps}
    return scorecard.trained_reason(steps)


def _claim_training_loss(P, task, seed, pairing):
    pt, ri = _pair(runs(P, task, seed, pairing))
    return scorecard.claim_training_loss(pt.steps, ri.steps)


def _claim_monotone(P, task, seed, pairing):
    pt, ri = _pair(curves(P, task, seed))
    return [scorecard.monotone_row(pt["alpha"].values, pt["train_sample_loss"].values,
                                   ri["alpha"].values, ri["train_sample_loss"].values,
                                   untrained=_trained(P, task, seed, pairing, "PT"))]


def _skipped(claim, pairing: str, reason: str | None) -> list[dict] | None:
    """Under a matched pairing in which a run did not train, the costly landscape measures (line
    searches, Hessians) cannot change the verdict (a comparison with a run that did not train is
    inconclusive), so they are not computed: one inconclusive row says why."""
    if pairing == PROFILE_PAIRING or not reason:
        return None
    return [scorecard.row(claim, "every quantity of the claim", None, None, float("nan"), None, "—",
                          untrained=f"{reason}; not computed")]


def _claim_wider(P, task, seed, pairing):
    untrained = _trained(P, task, seed, pairing)
    skipped = _skipped(3, pairing, untrained)
    if skipped:
        return skipped
    pt, ri = _pair(widths(P, task, seed, pairing))
    ar = _pair(areas(P, task, seed)) if pairing == PROFILE_PAIRING else (None, None)
    return scorecard.claim_wider(pt, ri, *ar, untrained=untrained)


def _claim_straighter(P, task, seed, pairing):
    pt, ri = _pair(runs(P, task, seed, pairing))
    return scorecard.claim_straighter(path_stats(pt)["ratio"], path_stats(ri)["ratio"],
                                      scorecard.steps_to_basin(pt.steps), scorecard.steps_to_basin(ri.steps),
                                      untrained=_trained(P, task, seed, pairing))


def _claim_overfitting(P, task, seed, pairing):
    pt, ri = _pair(long_runs(P, task, seed))
    (pp, labels), (rp, _) = pt.dev_predictions(), ri.dev_predictions()
    return scorecard.claim_overfitting(pp, rp, labels, _metric_fn(P, task), pt.steps, ri.steps, _metric(P, task))


def _claim_generalise(P, task, seed, pairing):
    pt, ri = _pair(theta1_evals(P, task, seed, pairing))
    return scorecard.claim_generalise(pt, ri, _metric_fn(P, task), _metric(P, task),
                                      untrained=_trained(P, task, seed, pairing))


def _surface_samples(s: xr.Dataset) -> dict[str, np.ndarray]:
    return {"train_samples": s["train_sample_loss"].values.astype(np.float64),
            "dev_samples": s["dev_sample_loss"].values.astype(np.float64),
            "dev_preds": s["dev_sample_pred"].values, "dev_labels": s["dev_label"].values,
            "mask": scorecard.neighbourhood_mask(s["alpha"].values, s["beta"].values)}


def _claim_surfaces_agree(P, task, seed, pairing):
    pt, ri = _pair(surfaces(P, task, seed))
    return scorecard.claim_surfaces_agree(_surface_samples(pt), _surface_samples(ri), _metric_fn(P, task),
                                          untrained=_trained(P, task, seed, pairing))


def _encoder_change_and_rise(rep: layers.LayerReport) -> tuple[list[float], list[float]]:
    """Relative change and per-layer curve rise (others at θ1) of the encoder layers."""
    ch = rep.change[(rep.change["layer_index"] >= 0) & (rep.change.index.str.startswith("layer"))]
    cs = rep.curve_summary.loc["theta1"]
    cs = cs[cs.index.str.startswith("layer")]
    return list(ch["relative_change"]), list(cs["train_loss_rise"])


def _claim_layers_invariant(P, task, seed, pairing):
    pt, ri = _pair(layer_reports(P, task, seed))
    (a, b), (c, d) = _encoder_change_and_rise(pt), _encoder_change_and_rise(ri)
    return scorecard.claim_layers_invariant(a, b, c, d, untrained=_trained(P, task, seed, pairing, "PT"))


def _claim_restore(P, task, seed, pairing):
    preds = restore_predictions(P, task, seed)
    return scorecard.claim_restore(preds["pretrained"], preds.get("scratch"), _metric_fn(P, task), _metric(P, task),
                                   untrained=_trained(P, task, seed, pairing, "PT"))


def _claim_one_basin(P, task, seed, pairing):
    if seed != P.seeds[0]:  # a claim across seeds: decided once, under the first seed
        return []
    b = barriers(P, task)
    pick = lambda kind: list(zip(b.loc[b["kind"] == kind, "barrier"], b.loc[b["kind"] == kind, "barrier_se"]))  # noqa: E731
    steps = {f"{_SHORT[i]} s{s}": r.steps for i, rs in lmc_runs(P, task).items() for s, r in rs.items()}
    return scorecard.claim_one_basin(pick("PT–PT"), pick("RI–RI"), untrained=scorecard.trained_reason(steps))


def _claim_curvature(P, task, seed, pairing):
    untrained = _trained(P, task, seed, pairing)
    skipped = _skipped("H", pairing, untrained)
    if skipped:
        return skipped
    pt, ri = _pair(curvature_numbers(P, task, seed, pairing))
    return scorecard.claim_curvature(pt, ri, untrained=untrained)


#: How each claim of :data:`bertscape.scorecard.CLAIMS` is computed from the study's results, for
#: a task, seed and pairing (the matched pairings only for claims marked ``controlled``).
CLAIM_ROWS: dict[Any, Callable[[Profile, str, int, str], list[dict]]] = {
    1: _claim_training_loss, 2: _claim_monotone, 3: _claim_wider, 4: _claim_straighter,
    5: _claim_overfitting, 6: _claim_generalise, 7: _claim_surfaces_agree, 8: _claim_layers_invariant,
    9: _claim_restore, "H": _claim_curvature, "L": _claim_one_basin,
}


def chapter_claims(P: Profile, chapter: str, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> list[dict]:
    """Claim rows of one chapter for one task, seed and pairing."""
    ids = scorecard.chapter_claims().get(chapter, ())
    return [r for c in ids if pairing == PROFILE_PAIRING or scorecard.CLAIMS[c].controlled
            for r in CLAIM_ROWS[c](P, task, seed, pairing)]


def chapter_scorecard(P: Profile, chapter: str, controls: bool = True) -> pd.DataFrame:
    """The chapter's claim rows for every task, seed and pairing of the profile (one row per
    quantity, seed and pairing; see :func:`bertscape.scorecard.summarise` for the seed summary)."""
    frames = [scorecard.table(chapter_claims(P, chapter, t, s, p), task=t, seed=s, pairing=p)
              for t in P.tasks for s in P.seeds for p in (pairings(P) if controls else [PROFILE_PAIRING])]
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "chapter", chapter)
    return df


def full_scorecard(P: Profile) -> pd.DataFrame:
    """Every chapter's claim rows (the scorecard page)."""
    return pd.concat([chapter_scorecard(P, ch) for ch in scorecard.chapter_claims()], ignore_index=True)


def verdict_table(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a chapter's (or the whole) scorecard formatted for readers: one row per
    quantity and pairing over the seeds, with readable columns and 3–4 significant digits."""
    s = scorecard.summarise(df)

    def fmt(x: float) -> str:
        return "" if not np.isfinite(x) else f"{x:.4g}"

    def pm(m: float, sd: float) -> str:
        return fmt(m) + (f" ± {sd:.2g}" if np.isfinite(sd) and sd > 0 else "")

    out = pd.DataFrame({
        "task": s["task"], "pairing": s["pairing"], "claim": s["claim"].astype(str), "quantity": s["quantity"],
        "PT": [pm(m, d) for m, d in zip(s["pretrained"], s["pretrained_sd"])],
        "RI": [pm(m, d) for m, d in zip(s["scratch"], s["scratch_sd"])],
        "margin ± s.e.": [f"{fmt(m)} ± {u:.2g}" if np.isfinite(u) else fmt(m) for m, u in zip(s["margin"], s["uncertainty"])],
        "criterion": s["criterion"], "verdict": s["verdict"], "why": s["reason"], "seeds": s["seeds"],
    })
    return out


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
        display(Markdown(profile_summary(P)))
    return P


def verdict(P: Profile, chapter: str, quantities: dict[str, tuple[int | str, str]] | None = None) -> Any:
    """A chapter's last cell: its claim rows (:func:`chapter_scorecard`), the verdict line glued as
    ``chapter_verdict`` (:func:`bertscape.report.chapter_verdict`), the numbers its prose quotes
    glued by :func:`bertscape.report.glue_quantities` (``quantities``: ``{name: (claim, quantity
    substring)}``), and, returned for display, the table of its rows for readers."""
    # myst_nb imports Sphinx: loaded only when a chapter glues (as in report.glue_quantities)
    from myst_nb import glue

    card = chapter_scorecard(P, chapter)
    summary = scorecard.summarise(card)
    glue("chapter_verdict", Markdown(report.chapter_verdict(card)), display=False)
    report.glue_quantities(summary, quantities or {})
    return report.people_table(report.drop_constant(verdict_table(card), ["task"]))


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


def mean_spread(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """Mean ± standard deviation over seeds, formatted per column (the mean alone for a group of
    one seed: a spread of one value is no spread)."""
    g = df.groupby(by, sort=False)[cols]
    mean, std, n = g.mean(), g.std(), g.count()
    out = pd.DataFrame(index=mean.index)
    for c in cols:
        out[c] = [f"{m:.4g} ± {s:.2g}" if k > 1 and np.isfinite(s) else f"{m:.4g}"
                  for m, s, k in zip(mean[c], std[c], n[c])]
    return out


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
