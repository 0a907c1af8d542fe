"""The paper's claims as numbers: each claim is a function of computed results, and its verdict is
derived from that number with a criterion fixed here in advance (never typed by hand).

Every function returns rows ``{claim, statement, quantity, pretrained, scratch, criterion, holds}``;
:func:`table` gathers rows of several tasks and seeds into a DataFrame.

Criteria and tolerances (chosen before looking at results, from the paper's wording):

* claim 2 "near-monotone": a rise counts when the loss goes up between neighbouring grid points on
  α ∈ [0, 1] by more than :data:`MONOTONE_TOL` × (max − min of the curve on that interval);
* claim 5 "within a few points": :data:`OVERFIT_POINTS` = 0.02 (2 points of the dev metric);
* claim 8 "grows with depth": Spearman correlation of the measure with layer index ≥ :data:`DEPTH_TREND`;
* claim 9 "costs ≤ ~1 point" / "a lot": :data:`RESTORE_BOTTOM_MAX` = 0.01, :data:`RESTORE_TOP_MIN` = 0.05.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

MONOTONE_TOL = 0.01
OVERFIT_POINTS = 0.02
DEPTH_TREND = 0.5
RESTORE_BOTTOM_MAX = 0.01
RESTORE_TOP_MIN = 0.05

CLAIMS: dict[int | str, str] = {
    1: "PT's training loss is lower than RI's at 10 %, 50 % and 100 % of the budget",
    2: "PT's 1D curve on α ∈ [0, 1] is (near-)monotone",
    3: "PT's optimum is wider (along δ1, along δ2, and in area)",
    4: "PT's trajectory is straighter",
    5: "PT is robust to overfitting: last-epoch dev metric within a few points of its best",
    6: "Flatter optima generalise better: PT has the higher dev metric and the smaller train-dev gap",
    7: "Train-loss and dev-error surfaces agree more for PT than for RI",
    8: "Lower layers are more invariant: change and sharpness grow with depth",
    9: "Restoring the bottom third of layers costs ≤ ~1 point; the top third costs a lot",
    "H": "PT's optimum is flatter by curvature (Hessian top eigenvalue and trace at θ1)",
}

CHAPTER_CLAIMS: dict[str, tuple[int | str, ...]] = {
    "01": (1, 2, 4),
    "02": (3, 6, "H"),
    "03": (5, 7),
    "04": (8, 9),
}


def _row(claim: int | str, quantity: str, pt: float, ri: float | None, criterion: str, holds: bool) -> dict[str, Any]:
    return {"claim": claim, "statement": CLAIMS[claim], "quantity": quantity, "pretrained": float(pt),
            "scratch": (float(ri) if ri is not None else np.nan), "criterion": criterion, "holds": bool(holds)}


def smoothed_loss_at(steps: pd.DataFrame, fraction: float, window: float = 0.05) -> float:
    """Mean training loss over the ``window`` share of steps ending at ``fraction`` of the budget."""
    n = len(steps)
    end = max(1, int(round(fraction * n)))
    width = max(1, int(round(window * n)))
    return float(steps["loss"].iloc[max(0, end - width):end].mean())


def claim_training_loss(pt_steps: pd.DataFrame, ri_steps: pd.DataFrame,
                        fractions: Sequence[float] = (0.1, 0.5, 1.0)) -> list[dict]:
    """Claim 1: smoothed training loss of PT vs RI at fractions of the budget."""
    rows = []
    for f in fractions:
        a, b = smoothed_loss_at(pt_steps, f), smoothed_loss_at(ri_steps, f)
        rows.append(_row(1, f"training loss at {f:.0%} of the budget", a, b, "PT < RI", a < b))
    return rows


def count_rises(alphas: np.ndarray, losses: np.ndarray, lo: float = 0.0, hi: float = 1.0,
                tol: float = MONOTONE_TOL) -> int:
    """Number of increases between neighbouring points on [lo, hi] larger than tol × (the curve's
    range there): :func:`bertscape.landscape.count_rises` with a tolerance relative to the range."""
    from .landscape import count_rises as rises_above

    alphas, losses = np.asarray(alphas, dtype=float), np.asarray(losses, dtype=float)
    order = np.argsort(alphas)
    alphas, losses = alphas[order], losses[order]
    sel = (alphas >= lo - 1e-9) & (alphas <= hi + 1e-9)
    if sel.sum() < 2:
        return 0
    scale = max(float(np.ptp(losses[sel])), 1e-12)
    # shift the window onto [0, 1], the interval landscape.count_rises inspects
    shifted = (alphas[sel] - lo) / (hi - lo) if hi != lo else alphas[sel]
    return rises_above(losses[sel], shifted, tol * scale)


def claim_monotone(pt_alphas, pt_losses, ri_alphas, ri_losses) -> list[dict]:
    """Claim 2: rises of the 1D training-loss curve between θ0 and θ1."""
    a, b = count_rises(pt_alphas, pt_losses), count_rises(ri_alphas, ri_losses)
    return [_row(2, f"rises on α∈[0,1] above {MONOTONE_TOL:.0%} of the range", a, b, "PT has 0 rises", a == 0)]


def claim_wider(pt: dict[str, float], ri: dict[str, float]) -> list[dict]:
    """Claim 3: basin widths and sub-level area (keys ``width_d1``, ``width_d2``, ``area`` in grid
    units as in the paper's figures; ``*_param`` in parameter-space units are reported too)."""
    rows = []
    for key, label in (("width_d1", "basin width along δ1 (α units)"), ("width_d2", "basin width along δ2 (β units)"),
                       ("area", "sub-level area (α·β units)")):
        rows.append(_row(3, label, pt[key], ri[key], "PT > RI", pt[key] > ri[key]))
        pk = f"{key}_param"
        if pk in pt and pk in ri:
            rows.append(_row(3, label.split(" (")[0] + " (parameter units)", pt[pk], ri[pk], "PT > RI (reported)",
                             pt[pk] > ri[pk]))
    return rows


def path_ratio(points: np.ndarray) -> float:
    """Path length / displacement of a trajectory given as rows of coordinates (1 = straight)."""
    pts = np.asarray(points, dtype=float)
    length = float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
    disp = float(np.linalg.norm(pts[-1] - pts[0]))
    return length / disp if disp > 0 else float("inf")


def steps_to_basin(steps: pd.DataFrame, rel: float = 0.1) -> float:
    """Share of the budget after which the smoothed training loss stays within ``rel`` of the
    loss range above its final value (a proxy for "reaching the basin")."""
    loss = steps["loss"].rolling(max(1, len(steps) // 20), min_periods=1).mean().to_numpy()
    final, top = loss[-1], loss.max()
    thresh = final + rel * (top - final)
    above = np.flatnonzero(loss > thresh)
    last_above = above[-1] + 1 if len(above) else 0
    return float(min(last_above + 1, len(loss)) / len(loss))


def claim_straighter(pt_ratio: float, ri_ratio: float, pt_basin: float, ri_basin: float) -> list[dict]:
    """Claim 4: trajectory straightness (path/displacement) and share of budget to reach the basin."""
    return [_row(4, "path length / displacement of the checkpoints", pt_ratio, ri_ratio, "PT < RI", pt_ratio < ri_ratio),
            _row(4, "share of budget until loss stays near its final value", pt_basin, ri_basin, "PT < RI (reported)",
                 pt_basin < ri_basin)]


def claim_overfitting(pt_evals: pd.DataFrame, ri_evals: pd.DataFrame, metric: str) -> list[dict]:
    """Claim 5: best − last dev metric over a long run (per-epoch evaluations)."""
    col = f"dev_{metric}"
    drop_pt = float(pt_evals[col].max() - pt_evals[col].iloc[-1])
    drop_ri = float(ri_evals[col].max() - ri_evals[col].iloc[-1])
    return [_row(5, f"best − last dev {metric} over the long run", drop_pt, drop_ri,
                 f"PT ≤ {OVERFIT_POINTS}", drop_pt <= OVERFIT_POINTS)]


def claim_generalise(pt_dev: float, ri_dev: float, pt_train: float, ri_train: float, metric: str) -> list[dict]:
    """Claim 6: dev metric and train−dev gap at θ1."""
    gap_pt, gap_ri = pt_train - pt_dev, ri_train - ri_dev
    return [_row(6, f"dev {metric} at θ1", pt_dev, ri_dev, "PT > RI", pt_dev > ri_dev),
            _row(6, f"train − dev {metric} gap at θ1", gap_pt, gap_ri, "PT < RI", gap_pt < gap_ri)]


def surface_agreement(train_loss: np.ndarray, dev_error: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation of two surfaces over the grid, and the distance (grid units,
    Euclidean in index space) between their minima."""
    from scipy.stats import spearmanr

    a, b = np.asarray(train_loss, float), np.asarray(dev_error, float)
    ok = np.isfinite(a) & np.isfinite(b)
    rho = float(spearmanr(a[ok], b[ok])[0]) if ok.sum() > 2 and np.ptp(a[ok]) > 0 and np.ptp(b[ok]) > 0 else 0.0
    ia, ib = np.unravel_index(np.nanargmin(a), a.shape), np.unravel_index(np.nanargmin(b), b.shape)
    return rho, float(np.linalg.norm(np.subtract(ia, ib)))


def claim_surfaces_agree(pt_train, pt_dev_err, ri_train, ri_dev_err) -> list[dict]:
    """Claim 7: rank agreement of training-loss and dev-error surfaces."""
    rp, dp = surface_agreement(pt_train, pt_dev_err)
    rr, dr = surface_agreement(ri_train, ri_dev_err)
    return [_row(7, "Spearman ρ(train loss, dev error) over the grid", rp, rr, "PT > RI", rp > rr),
            _row(7, "distance between the two minima (grid steps)", dp, dr, "PT ≤ RI (reported)", dp <= dr)]


def depth_trend(values: Sequence[float]) -> float:
    """Spearman correlation of a per-layer measure with layer index (0 = lowest)."""
    from scipy.stats import spearmanr

    v = np.asarray(values, dtype=float)
    if len(v) < 3 or np.ptp(v) == 0:
        return 0.0
    return float(spearmanr(np.arange(len(v)), v)[0])


def claim_layers_invariant(pt_change: Sequence[float], pt_sharp: Sequence[float],
                           ri_change: Sequence[float], ri_sharp: Sequence[float]) -> list[dict]:
    """Claim 8: per-layer relative change and per-layer curve sharpness vs depth (encoder layers)."""
    a, b = depth_trend(pt_change), depth_trend(ri_change)
    c, d = depth_trend(pt_sharp), depth_trend(ri_sharp)
    return [_row(8, "Spearman ρ(layer index, relative change)", a, b, f"PT ≥ {DEPTH_TREND}", a >= DEPTH_TREND),
            _row(8, "Spearman ρ(layer index, per-layer sharpness)", c, d, f"PT ≥ {DEPTH_TREND}", c >= DEPTH_TREND)]


def claim_restore(pt_bottom_cost: float, pt_top_cost: float, ri_bottom_cost: float | None = None,
                  ri_top_cost: float | None = None, metric: str = "accuracy") -> list[dict]:
    """Claim 9: dev-metric cost (θ1's metric − restored metric) of restoring the bottom / top third."""
    return [_row(9, f"cost in dev {metric} of restoring the bottom third to θ0", pt_bottom_cost, ri_bottom_cost,
                 f"PT ≤ {RESTORE_BOTTOM_MAX}", pt_bottom_cost <= RESTORE_BOTTOM_MAX),
            _row(9, f"cost in dev {metric} of restoring the top third to θ0", pt_top_cost, ri_top_cost,
                 f"PT ≥ {RESTORE_TOP_MIN}", pt_top_cost >= RESTORE_TOP_MIN)]


def claim_curvature(pt_top: float, ri_top: float, pt_trace: float, ri_trace: float,
                    pt_trace_se: float | None = None, ri_trace_se: float | None = None) -> list[dict]:
    """Curvature at θ1: Hessian top eigenvalue and trace of the training loss.

    The trace is a Hutchinson estimate; given its standard errors, the trace row holds only when
    RI's trace exceeds PT's by more than two combined standard errors (a noisy difference does
    not count as a verdict either way: it fails).
    """
    rows = [_row("H", "Hessian top eigenvalue at θ1", pt_top, ri_top, "PT < RI", pt_top < ri_top)]
    if pt_trace_se is None or ri_trace_se is None:
        rows.append(_row("H", "Hessian trace at θ1 (Hutchinson)", pt_trace, ri_trace, "PT < RI", pt_trace < ri_trace))
    else:
        se = math.hypot(pt_trace_se, ri_trace_se)
        rows.append(_row("H", f"Hessian trace at θ1 (Hutchinson; s.e. {pt_trace_se:.3g} / {ri_trace_se:.3g})",
                         pt_trace, ri_trace, "RI − PT > 2 s.e.", ri_trace - pt_trace > 2 * se))
    return rows


def table(rows: Iterable[dict], **labels: Any) -> pd.DataFrame:
    """Rows as a DataFrame with extra label columns (e.g. ``task=…, seed=…``) and a verdict column."""
    df = pd.DataFrame(list(rows))
    for k, v in labels.items():
        df.insert(0, k, v)
    if not df.empty:
        df["verdict"] = np.where(df["holds"], "holds", "fails")
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of each quantity, and how many seeds the criterion held for."""
    keys = [c for c in ("task", "claim", "quantity", "criterion") if c in df.columns]
    g = df.groupby(keys, sort=False)
    out = g.agg(pretrained_mean=("pretrained", "mean"), pretrained_std=("pretrained", "std"),
                scratch_mean=("scratch", "mean"), scratch_std=("scratch", "std"),
                seeds=("holds", "size"), held=("holds", "sum")).reset_index()
    out["verdict"] = np.where(out["held"] == out["seeds"], "holds",
                              np.where(out["held"] == 0, "fails", "mixed"))
    return out
