"""Basin widths by line search: how far θ1 can move along a direction before the loss rises by ε.

A width read off a fixed grid is cut off wherever the grid ends (a *censored* width decides
nothing). Here each side of the basin is found by a line search that keeps extending its range
until the ε-crossing is bracketed, then refines the bracket by bisection:

1. expansion: t = t₀, 2t₀, 4t₀, … until f(θ1 ± t·u) > f(θ1) + ε, or t would pass ``cap``
   (then that side is *censored* at the last point inside: the basin is wider than the cap);
2. refinement: ``refine`` bisections of the bracket, then a straight line between its two ends
   places the crossing; guard points further out (1.5× and 3× the first point above the level)
   give the bootstrap room, each only while the last point lies less than ``GUARD_SE`` standard
   errors above the level (further above, no resample of the sentences falls back below it).

Every evaluated point keeps each sentence's loss, so the width can be bootstrapped over the
sentences (:func:`bootstrap_width`): the same evaluated positions, the crossing recomputed from the
resampled mean losses. That is the width's uncertainty from the finite evaluation subset.

The pure functions take any ``f(t) -> per-sentence losses``; :func:`run_widths` applies them to a
run's θ1 along the directions the book compares (see its docstring for the units).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from bertscape.base.errors import bad_value
from bertscape.base.progress import progress_enabled
from bertscape.geometry.directions import (
    ParamDict,
    PointWriter,
    filter_normalise,
    norm,
    random_direction,
    restrict,
)
from bertscape.runs.evaluate import evaluate

#: Bisection steps after the crossing is bracketed (the bracket shrinks 2³ = 8-fold). The crossing
#: is then interpolated on a straight line inside a bracket of at most 1/8 of its distance from θ1:
#: on a quadratic basin that errs by under 0.3 % of the width (a chord of a convex curve), far
#: below the width's bootstrap standard error over 256 sentences (5–10 %), and each further
#: bisection costs one evaluation a side.
REFINE_STEPS = 3
#: The farthest a line search goes, in multiples of the run's own displacement ‖δ1‖ (stated in
#: advance: a basin wider than 1024 fine-tuning displacements is reported as censored).
CAP_DISPLACEMENTS = 1024.0
#: The first step, in multiples of ‖δ1‖ (each expansion step doubles it).
FIRST_STEP_DISPLACEMENTS = 0.25
#: Guard points at this many times (and twice that) the first point found above the level, for the bootstrap.
GUARD_FACTOR = 1.5
#: A guard point is added only while the last point's rise above the level (paired with t = 0,
#: sentence by sentence) is less than this many standard errors: a resample of the sentences then
#: has a real chance of staying below the level there, and the bootstrap needs a point further out.
GUARD_SE = 4.0
#: Bootstrap replicates for widths (and every other bootstrap of the scorecard).
N_BOOT = 200

SampleLosses = Callable[[float], np.ndarray]


@dataclass
class SideSearch:
    """One side of a line search: evaluated positions (t ≥ 0, ascending, t = 0 first) with their
    per-sentence losses, and where the mean loss crosses the level."""

    t: list[float] = field(default_factory=list)
    losses: list[np.ndarray] = field(default_factory=list)
    crossing: float = float("nan")
    censored: bool = False

    def means(self) -> np.ndarray:
        return np.array([float(np.mean(x)) for x in self.losses])


def crossing_from_points(t: np.ndarray, f: np.ndarray, level: float) -> tuple[float, bool]:
    """First t where the piecewise-linear curve through ``(t, f)`` (t ascending, t[0] = 0 inside)
    rises above ``level``; ``(t[-1], True)`` when it never does (censored)."""
    above = np.flatnonzero(f > level)
    above = above[above > 0]
    if not len(above):
        return float(t[-1]), True
    j = int(above[0])
    i = j - 1
    frac = (level - f[i]) / (f[j] - f[i]) if f[j] != f[i] else 0.0
    return float(t[i] + frac * (t[j] - t[i])), False


def search_side(losses_at: SampleLosses, eps: float, first: float, cap: float,
                refine: int = REFINE_STEPS, base: np.ndarray | None = None) -> SideSearch:
    """Line search along one side: ``losses_at(t)`` gives the per-sentence losses at distance t.

    Args:
        losses_at: per-sentence losses at θ1 + t·u (t ≥ 0; the caller picks the sign of u).
        eps: the basin is {mean loss ≤ mean loss at t = 0 + eps}.
        first: the first step (> 0); each expansion doubles it.
        cap: the largest t tried; a side still inside at ``cap`` is censored.
        refine: bisections of the bracket.
        base: the losses at t = 0 if already known (saves an evaluation).
    """
    if not (np.isfinite(eps) and eps > 0):
        raise bad_value("eps", eps, "a finite number > 0")
    if not (first > 0 and cap >= first):
        raise bad_value("first/cap", (first, cap), "0 < first <= cap")
    side = SideSearch()
    side.t.append(0.0)
    side.losses.append(np.asarray(losses_at(0.0) if base is None else base, dtype=np.float64))
    level = float(np.mean(side.losses[0])) + eps
    t, lo, hi = first, 0.0, None
    while t <= cap * (1 + 1e-12):
        x = np.asarray(losses_at(t), dtype=np.float64)
        side.t.append(t)
        side.losses.append(x)
        if float(np.mean(x)) > level:
            hi = t
            break
        lo, t = t, t * 2.0
    if hi is not None:
        top = side.t[-1]
        for _ in range(refine):
            mid = 0.5 * (lo + hi)
            x = np.asarray(losses_at(mid), dtype=np.float64)
            side.t.append(mid)
            side.losses.append(x)
            if float(np.mean(x)) > level:
                hi = mid
            else:
                lo = mid
        # guard points past the bracket, so that a bootstrap resample whose mean stays below the
        # level a little longer still finds its crossing (instead of being cut off at the bracket);
        # not needed once the last point is clearly above the level for every likely resample
        last = side.losses[side.t.index(top)]
        for guard in (GUARD_FACTOR * top, 2 * GUARD_FACTOR * top):
            if _clearly_above(last, side.losses[0], eps):
                break
            last = np.asarray(losses_at(guard), dtype=np.float64)
            side.t.append(guard)
            side.losses.append(last)
    order = np.argsort(side.t)
    side.t = [side.t[i] for i in order]
    side.losses = [side.losses[i] for i in order]
    side.crossing, side.censored = crossing_from_points(np.array(side.t), side.means(), level)
    return side


def _clearly_above(x: np.ndarray, x0: np.ndarray, eps: float) -> bool:
    """Whether the mean rise of the per-sentence losses ``x`` over ``x0`` (the same sentences at
    t = 0) exceeds ``eps`` by more than :data:`GUARD_SE` standard errors of that mean rise."""
    d = x - x0
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(np.mean(d)) - eps > GUARD_SE * se


def _crossing_of(side: SideSearch, eps: float, idx: np.ndarray) -> float:
    t = np.array(side.t)
    f = np.array([float(np.mean(x[idx])) for x in side.losses])
    return crossing_from_points(t, f, f[0] + eps)[0]


def bootstrap_width(minus: SideSearch, plus: SideSearch, eps: float, n_boot: int = N_BOOT,
                    seed: int = 0) -> np.ndarray:
    """Widths (crossing on the minus side + on the plus side) recomputed on ``n_boot`` resamples of
    the sentences (the same resample on both sides: they are the same sentences)."""
    n = len(plus.losses[0])
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        out[b] = _crossing_of(minus, eps, idx) + _crossing_of(plus, eps, idx)
    return out


def basin_along(losses_at: SampleLosses, eps: float, first: float, cap: float, refine: int = REFINE_STEPS,
                n_boot: int = N_BOOT, seed: int = 0, base: np.ndarray | None = None) -> dict[str, float]:
    """Both sides of the basin along ±u: ``losses_at(t)`` for signed t (``base``: the losses at
    t = 0 when already known, e.g. shared by several directions through the same point).

    Returns ``lo`` (≤ 0) and ``hi`` (≥ 0), the crossings; ``width = hi − lo``; ``width_se``, the
    bootstrap standard error over sentences, and ``boot``, its replicates (resamples drawn from
    ``seed``: two searches over the same sentences with the same seed are paired replicate by
    replicate); ``censored`` (1 when either side reached ``cap``);
    ``f0`` (the mean loss at t = 0), ``level`` and ``n_evals``.
    """
    base = np.asarray(losses_at(0.0) if base is None else base, dtype=np.float64)
    plus = search_side(lambda t: losses_at(t), eps, first, cap, refine, base)
    minus = search_side(lambda t: losses_at(-t), eps, first, cap, refine, base)
    boot = bootstrap_width(minus, plus, eps, n_boot, seed)
    return {"lo": -minus.crossing, "hi": plus.crossing, "width": minus.crossing + plus.crossing,
            "width_se": float(np.std(boot, ddof=1)), "boot": boot.tolist(),
            "censored": int(minus.censored or plus.censored),
            "f0": float(base.mean()), "level": float(base.mean() + eps),
            "n_evals": len(plus.t) + len(minus.t) - 1,
            "t_plus": plus.t, "loss_plus": plus.means().tolist(),
            "t_minus": [-x for x in minus.t], "loss_minus": minus.means().tolist()}


def model_losses(model: torch.nn.Module, base: ParamDict, direction: ParamDict, data,
                 precision: str = "auto") -> SampleLosses:
    """``t -> per-sentence losses of model at base + t·direction`` on the evaluation set ``data``
    (parameters written in place by a :class:`~bertscape.geometry.directions.PointWriter`; call the
    returned function's ``reset()`` to put ``base`` back)."""
    writer = PointWriter(model, base, [direction])

    def f(t: float) -> np.ndarray:
        writer.set(float(t))
        return evaluate(model, data, precision, per_sample=True)["sample_loss"]

    f.reset = lambda: writer.set(0.0)  # type: ignore[attr-defined]
    return f


#: The directions :func:`run_widths` searches along, and the unit each width is in.
WIDTH_DIRECTIONS: Mapping[str, str] = {
    "d1_fn": "δ1 filter-normalised to θ1 (each row of δ1 rescaled to the norm of θ1's row): common unit",
    "d2_fn": "a random Gaussian direction filter-normalised to θ1 (Li et al. 2018): common unit",
    "d2_fn_nobias": "the same random direction with biases and LayerNorm parameters left out (zero), as Li et al. "
                    "do: a robustness check of d2_fn",
    "d1": "δ1 = θ1 − θ0 itself: α units of the 1D curve",
    "d2": "the surface's δ2 (random, rows scaled to δ1's rows, orthogonal to δ1): β units of the figures",
}


def run_widths(run, d2_plane: ParamDict, evalset, eps: float, seed: int = 0, precision: str = "auto",
               device: str | torch.device = "cpu", names: tuple[str, ...] = tuple(WIDTH_DIRECTIONS),
               progress: bool | None = None, boot_seed: int = 0) -> dict[str, dict[str, float]]:
    """Basin widths of a run's θ1 along the directions of :data:`WIDTH_DIRECTIONS`.

    Units: a step of t along a filter-normalised direction (``d1_fn``, ``d2_fn``) moves each row
    of every weight matrix by t times that row's norm in θ1 — a unit that means the same for a
    pre-trained network (‖θ1‖ ≈ 280 for MiniLM) and one trained from scratch (≈ 120), which is why
    the scorecard compares widths in it. ``d1`` is in α units (1 = the whole fine-tuning move)
    and ``d2`` in the figures' β units. Each result also gives ``width_param`` (= width × ‖u‖, in
    parameter-space units) and ``width_rel`` (= width_param / ‖θ1‖).

    ``seed`` draws the random directions; ``boot_seed`` the bootstrap's resamples (keep it the same for
    runs whose widths are compared, so that their replicates pair up).

    The search starts at :data:`FIRST_STEP_DISPLACEMENTS` × ‖δ1‖ and stops at
    :data:`CAP_DISPLACEMENTS` × ‖δ1‖ (both converted into each direction's own units), so every
    direction and both runs follow one rule.
    """
    theta1 = run.theta1()
    delta = {k: v for k, v in run.delta().items()}
    d1_norm = norm(delta)
    theta1_norm = norm(theta1)
    dirs = {
        "d1_fn": lambda: filter_normalise(delta, theta1),
        "d2_fn": lambda: random_direction(theta1, seed, "filter", "whole"),
        "d2_fn_nobias": lambda: random_direction(theta1, seed, "filter", "zero"),
        "d1": lambda: delta,
        "d2": lambda: restrict(d2_plane, delta),
    }
    unknown = [n for n in names if n not in dirs]
    if unknown:
        raise bad_value("names", unknown, tuple(dirs))
    model = run.model("theta1", device=str(device))
    out: dict[str, dict[str, float]] = {}
    at_theta1: np.ndarray | None = None
    bar = tqdm(total=len(names), desc="line searches", leave=False, disable=not progress_enabled(progress))
    try:
        for name in names:
            u = dirs[name]()
            u_norm = norm(u)
            unit = d1_norm / u_norm  # t at which the move equals the fine-tuning displacement
            f = model_losses(model, restrict(theta1, u), u, evalset, precision)
            try:
                if at_theta1 is None:  # θ1 itself: the same losses for every direction
                    at_theta1 = np.asarray(f(0.0), dtype=np.float64)
                res = basin_along(f, eps, FIRST_STEP_DISPLACEMENTS * unit, CAP_DISPLACEMENTS * unit, seed=boot_seed,
                                  base=at_theta1)
            finally:
                f.reset()
            res.update(direction_norm=u_norm, width_param=res["width"] * u_norm,
                       width_param_se=res["width_se"] * u_norm,
                       width_rel=res["width"] * u_norm / theta1_norm,
                       width_rel_se=res["width_se"] * u_norm / theta1_norm, cap=CAP_DISPLACEMENTS * unit)
            out[name] = res
            bar.update(1)
    finally:
        bar.close()
    return out
