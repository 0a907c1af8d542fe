"""Trajectories: a run's checkpoints projected on a plane of two directions (with the off-plane residual
and, on a surface, the surface's value at each projection beside the checkpoint's true loss), and the
straightness of a path in the full parameter space."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.interpolate import RegularGridInterpolator
from tqdm.auto import tqdm

from bertscape.base.errors import BertscapeError, bad_value
from bertscape.base.progress import progress_enabled
from bertscape.geometry.directions import (
    ParamDict,
    content_hash,
    dot,
    norm,
    restrict,
    sub,
)
from bertscape.geometry.landscape import CENTRES, eval_sets_for_run
from bertscape.runs.evaluate import EvalSet, check_evalsets, evaluate
from bertscape.runs.models import load_state, trainable_state

__all__ = ["project_points", "surface_value", "project_trajectory", "path_ratio"]


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


def path_ratio(points: Iterable[tuple[int, ParamDict]]) -> dict[str, float]:
    """Straightness of a path in the full parameter space: the summed length of the segments between
    consecutive points (``(step, θ)``, in order) over the straight displacement from the first to the
    last (``ratio``: 1 = a straight line; ``inf`` for a path that ends where it began)."""
    length, prev, first = 0.0, None, None
    for _, theta in points:
        if prev is None:
            first = theta
        else:
            length += norm(sub(theta, prev))
        prev = theta
    if prev is None:
        raise bad_value("points", "<no points>", "at least one (step, θ) pair")
    disp = norm(sub(prev, first))
    return {"path_length": length, "displacement": disp, "ratio": length / disp if disp > 0 else float("inf")}
