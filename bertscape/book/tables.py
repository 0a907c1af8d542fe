"""The tables and figure data the chapters show, built from the study's results: one function per table, so
that a chapter's cell is one call."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bertscape.book import study
from bertscape.book.plots import init_label
from bertscape.book.profiles import Profile
from bertscape.book.study import (
    _SHORT,
    figure_seed,
    flatness,
    lmc_runs,
    main_runs,
    pairings,
    run_check,
    runs,
    trajectories,
)
from bertscape.geometry import layers

__all__ = ["training_table", "final_metrics", "path_summary", "flatness_table", "flatness_ratios", "layer_frame",
           "restore_frame", "layer_curve_frame", "FLATNESS_MEASURES"]


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
    traj = trajectories(P, task, figure_seed(P))
    return pd.DataFrame([{"task": task, "start": init_label(i), "checkpoints": len(t),
                          "median off-plane residual": t["rel_residual"].median(),
                          "largest off-plane residual": t["rel_residual"].max(),
                          "largest |true − surface| loss": (t["train_loss"] - t["train_loss_surface"]).abs().max()}
                         for i, t in traj.items()])


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
    :func:`bertscape.book.plots.flatness_ratios`). The top eigenvalue is in raw parameter units."""
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
    :func:`bertscape.book.report.mean_pm`). Rows in :data:`FLATNESS_MEASURES` order, then the robustness width
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


def basin_edges(surfaces: dict[str, Any], var: str = "train_loss") -> dict[str, float]:
    """The basin's edge f(θ1) + ε of each surface (``{init: Dataset}``), the contour the figures draw:
    θ1 is at (1, 0) on a θ0-centred surface and at (0, 0) on a θ1-centred one."""
    out = {}
    for init, s in surfaces.items():
        alpha = 1.0 if s.attrs.get("centre", "theta0") == "theta0" else 0.0
        out[init] = float(s[var].sel(alpha=alpha, beta=0.0).item()) + study.FLAT_EPS
    return out
