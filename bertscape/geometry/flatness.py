"""Flatness numbers of a loss landscape: basin widths, sub-level areas, barriers and rises.

Pure functions of grid values (NumPy arrays or the :class:`xarray.Dataset` grids of
:mod:`bertscape.geometry.landscape`); nothing here evaluates a model. Along a line through θ0 and θ1
(θ0 at α = 0, θ1 at α = 1):

* :func:`basin_width`: the interval around θ1 where f ≤ f(θ1) + ε;
* :func:`sublevel_area`: the area of θ1's connected sub-level set on a 2D grid, and the sides of
  the grid it reaches;
* :func:`barrier_height`: how far f rises above the chord between θ0 and θ1;
* :func:`count_rises`: how many grid steps on α ∈ [0, 1] increase f (:func:`unit_segment` is the
  part of a curve those steps are taken on; the scorecard's per-sentence steps use it too);
* :func:`flatness_summary`: all of these for one run's curve and/or surface.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from bertscape.base.errors import bad_value

EPS_MODES = ("absolute", "relative")
#: α within this distance of [0, 1] counts as on the segment θ0 → θ1 (grid coordinates are rounded
#: to 10 decimals, so no grid point lies this close to 0 or 1 without being 0 or 1).
UNIT_TOL = 1e-9


def grid_axis(values: Any, param: str) -> np.ndarray:
    """``values`` as a float64 axis of a grid; a :class:`~bertscape.base.errors.BertscapeError` naming
    ``param`` unless it is a non-empty, strictly increasing sequence of finite numbers."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1) if values is not None else None
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
        raise bad_value(param, values, "a non-empty, strictly increasing sequence of finite numbers")
    return arr


def linspace(lo: float, hi: float, n: int) -> list[float]:
    """``n`` evenly spaced coordinates from ``lo`` to ``hi``, rounded to 10 decimals (so that 0 and 1 are
    exactly grid points when they lie on the grid): every axis of a grid or curve is built by this."""
    return [round(lo + (hi - lo) * i / (n - 1), 10) for i in range(n)]


def unit_segment(values: Any, alphas: Any) -> np.ndarray:
    """The rows of ``values`` (axis 0 runs along ``alphas``) whose α lies in [0, 1] (up to
    :data:`UNIT_TOL`), in order of α: the curve from θ0 to θ1. Further axes are kept, so a
    (points, sentences) array gives every sentence's curve."""
    a = np.asarray(alphas, dtype=np.float64).reshape(-1)
    f = np.asarray(values, dtype=np.float64)
    order = np.argsort(a)
    a, f = a[order], f[order]
    return f[(a >= -UNIT_TOL) & (a <= 1 + UNIT_TOL)]


def _threshold(f_ref: float, eps: float, eps_mode: str) -> float:
    if eps_mode not in EPS_MODES:
        raise bad_value("eps_mode", eps_mode, EPS_MODES)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not np.isfinite(eps) or eps < 0:
        raise bad_value("eps", eps, "a finite number >= 0")
    return f_ref + (eps if eps_mode == "absolute" else eps * abs(f_ref))


def _nearest(axis: np.ndarray, value: float, param: str) -> int:
    i = int(np.argmin(np.abs(axis - value)))
    spacing = np.min(np.diff(axis)) if len(axis) > 1 else np.inf
    if abs(axis[i] - value) > 0.5 * spacing + 1e-12:
        raise bad_value(param, value, f"a point inside the grid [{axis[0]}, {axis[-1]}]")
    return i


def basin_width(values: Any, coords: Any, centre: float = 1.0, eps: float = 0.1, eps_mode: str = "absolute",
                direction_norm: float | None = None) -> dict[str, float]:
    """Width of the basin around ``centre`` along a line: the interval where f ≤ f(centre) + ε.

    Walks outwards from the grid point nearest ``centre`` while f stays at or below the
    threshold; the ends are placed where the straight line between the last point inside and
    the first point outside crosses the threshold (linear interpolation). If the set reaches the
    grid's end, that side stops at the end and ``censored`` is 1 (the width is a lower bound).

    Args:
        values, coords: f on a 1-D grid (coords strictly increasing).
        centre: the coordinate of θ1 (1.0 on a θ0-centred grid, 0.0 on a θ1-centred one).
        eps, eps_mode: ε added to f(centre) (``absolute``) or ε·|f(centre)| (``relative``).
        direction_norm: ‖d‖; widths in parameter-space units = width × ‖d‖.

    Returns: ``{lo, hi, width, width_param, threshold, censored}`` (``width`` in coordinate units).
    """
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    x = grid_axis(coords, "coords")
    if f.shape != x.shape:
        raise bad_value("values", f"shape {f.shape}", f"the shape of coords {x.shape}")
    c = _nearest(x, centre, "centre")
    thr = _threshold(float(f[c]), eps, eps_mode)
    censored = 0

    def walk(step: int) -> float:
        nonlocal censored
        i = c
        while 0 <= i + step < len(f) and f[i + step] <= thr:
            i += step
        j = i + step
        if not (0 <= j < len(f)):
            censored = 1
            return float(x[i])
        if not np.isfinite(f[j]):
            return float(x[i])
        t = (thr - f[i]) / (f[j] - f[i]) if f[j] != f[i] else 0.0
        return float(x[i] + t * (x[j] - x[i]))

    lo, hi = walk(-1), walk(+1)
    width = hi - lo
    return {"lo": lo, "hi": hi, "width": width,
            "width_param": width * direction_norm if direction_norm is not None else float("nan"),
            "threshold": thr, "censored": censored}


def sublevel_area(values: Any, alphas: Any, betas: Any, centre: tuple[float, float] = (1.0, 0.0), eps: float = 0.1,
                  eps_mode: str = "absolute", d1_norm: float | None = None, d2_norm: float | None = None,
                  cos12: float = 0.0) -> dict[str, Any]:
    """Area of the connected sub-level set {f ≤ f(centre) + ε} that contains ``centre``.

    Grid cells are counted (4-connectivity, :func:`scipy.ndimage.label`), each weighted by its
    cell area (Δα × Δβ, half-cells at the grid's edges, so a uniform grid of spacing h gives
    ``count × h²`` for interior sets). In parameter units² the area element of the plane is
    ‖d1‖·‖d2‖·sin∠(d1, d2) (``cos12`` = cos of that angle; 0 for orthogonalised δ2).

    Returns: ``{area, area_param, n_points, threshold, touches_edge, edges}``; ``edges`` lists the
    sides of the grid the set reaches (a subset of ``["-α", "+α", "-β", "+β"]``, in that order;
    ``touches_edge`` = 1 when it is not empty: the set may go on beyond the grid).
    """
    f = np.asarray(values, dtype=np.float64)
    a, b = grid_axis(alphas, "alphas"), grid_axis(betas, "betas")
    if f.shape != (len(a), len(b)):
        raise bad_value("values", f"shape {f.shape}", f"shape (len(alphas), len(betas)) = {(len(a), len(b))}")
    i, j = _nearest(a, centre[0], "centre[0]"), _nearest(b, centre[1], "centre[1]")
    thr = _threshold(float(f[i, j]), eps, eps_mode)
    labels, _ = ndimage.label(np.nan_to_num(f, nan=np.inf) <= thr)
    comp = labels == labels[i, j]

    def cell(x: np.ndarray) -> np.ndarray:
        if len(x) == 1:
            return np.ones(1)
        edges = np.concatenate([[x[0]], (x[1:] + x[:-1]) / 2, [x[-1]]])
        return np.diff(edges)

    weights = np.outer(cell(a), cell(b))
    area = float(np.sum(weights[comp]))
    edges = [name for name, hit in (("-α", comp[0, :].any()), ("+α", comp[-1, :].any()),
                                    ("-β", comp[:, 0].any()), ("+β", comp[:, -1].any())) if hit]
    elem = (d1_norm * d2_norm * np.sqrt(max(0.0, 1 - cos12 ** 2))
            if d1_norm is not None and d2_norm is not None else float("nan"))
    return {"area": area, "area_param": area * elem, "n_points": int(comp.sum()), "threshold": thr,
            "touches_edge": int(bool(edges)), "edges": edges}


def barrier_height(values: Any, alphas: Any) -> float:
    """max over α ∈ [0, 1] of f(α) − ((1 − α)·f(0) + α·f(1)) on the grid (f(0), f(1) interpolated
    linearly if 0 or 1 is not a grid point). 0 when the curve never rises above the chord."""
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    x = grid_axis(alphas, "alphas")
    if f.shape != x.shape:
        raise bad_value("values", f"shape {f.shape}", f"the shape of alphas {x.shape}")
    if x[0] > 0 or x[-1] < 1:
        raise bad_value("alphas", [x[0], x[-1]], "a grid covering [0, 1]")
    f0, f1 = np.interp(0.0, x, f), np.interp(1.0, x, f)
    inside = (x >= 0) & (x <= 1)
    gap = f[inside] - ((1 - x[inside]) * f0 + x[inside] * f1)
    return float(max(0.0, np.nanmax(gap))) if gap.size else 0.0


def count_rises(values: Any, alphas: Any, tol: float = 0.0) -> int:
    """How many consecutive grid steps within α ∈ [0, 1] increase f by more than ``tol``
    (0 = monotonically non-increasing from θ0 to θ1, up to ``tol``); the steps are those of
    :func:`unit_segment`."""
    f = np.asarray(values, dtype=np.float64).reshape(-1)
    x = grid_axis(alphas, "alphas")
    if f.shape != x.shape:
        raise bad_value("values", f"shape {f.shape}", f"the shape of alphas {x.shape}")
    return int(np.sum(np.diff(unit_segment(f, x)) > tol))


def flatness_summary(curve: xr.Dataset | None = None, surface: xr.Dataset | None = None, eps: float = 0.1,
                     eps_mode: str = "absolute", var: str = "train_loss", rise_tol: float = 0.0) -> dict[str, float]:
    """The flatness numbers of one run from its curve and/or surface.

    From the curve (θ0-centred, dim ``alpha``): ``barrier`` (:func:`barrier_height`), ``rises``
    (:func:`count_rises`), ``width_d1`` along δ1 through θ1 (α = 1). From the surface:
    ``width_d1``/``width_d2`` through θ1 ((1, 0) or (0, 0) for a θ1-centred surface) and
    ``area`` of the sub-level set; each also in parameter units (``*_param``) using the
    direction norms stored in the grids' attrs. ``f_theta1`` is the value at θ1.
    """
    if curve is None and surface is None:
        raise bad_value("curve/surface", None, "at least one of a curve or a surface")
    out: dict[str, float] = {"eps": float(eps), "eps_mode": eps_mode}
    if curve is not None:
        f, a = curve[var].values, curve["alpha"].values
        out["barrier"] = barrier_height(f, a)
        out["rises"] = count_rises(f, a, rise_tol)
        w = basin_width(f, a, 1.0, eps, eps_mode, curve.attrs.get("d1_norm"))
        out.update(width_d1=w["width"], width_d1_param=w["width_param"], width_d1_censored=w["censored"],
                   f_theta1=float(f[_nearest(a, 1.0, "alpha")]))
    if surface is not None:
        centre = (1.0, 0.0) if surface.attrs.get("centre", "theta0") == "theta0" else (0.0, 0.0)
        f, a, b = surface[var].values, surface["alpha"].values, surface["beta"].values
        i, j = _nearest(a, centre[0], "alpha"), _nearest(b, centre[1], "beta")
        n1, n2 = surface.attrs.get("d1_norm"), surface.attrs.get("d2_norm")
        w1 = basin_width(f[:, j], a, centre[0], eps, eps_mode, n1)
        w2 = basin_width(f[i, :], b, centre[1], eps, eps_mode, n2)
        ar = sublevel_area(f, a, b, centre, eps, eps_mode, n1, n2, float(surface.attrs.get("cos_d1_d2", 0.0)))
        if curve is None:
            out.update(width_d1=w1["width"], width_d1_param=w1["width_param"], width_d1_censored=w1["censored"])
        out.update(surface_width_d1=w1["width"], surface_width_d1_param=w1["width_param"],
                   width_d2=w2["width"], width_d2_param=w2["width_param"], width_d2_censored=w2["censored"],
                   area=ar["area"], area_param=ar["area_param"], area_touches_edge=ar["touches_edge"],
                   f_theta1_surface=float(f[i, j]))
    return out
