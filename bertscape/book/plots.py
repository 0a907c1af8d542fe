"""The book's figures: one style, fixed colours for pre-trained (PT) vs from-scratch (RI).

Every helper takes plain data and returns the figure it drew (matplotlib ``Figure`` or plotly
``go.Figure``); notebooks display it.  Accepted inputs:

* **training history** — a DataFrame per init with a step column and a value column, e.g.
  :attr:`bertscape.runs.train.RunResult.steps` (``step, epoch, loss, lr, seconds``) and
  :attr:`~bertscape.runs.train.RunResult.evals` (``step, epoch, dev_loss, dev_<metric>``).
* **1D curve** — an ``xarray.Dataset``/``DataArray`` with dimension ``alpha``, or a DataFrame with
  an ``alpha`` column and one column per quantity (``train_loss``, ``dev_loss``, ``dev_error`` …).
* **2D surface** — an ``xarray.Dataset``/``DataArray`` with dimensions ``alpha`` and ``beta``
  (any order), a long DataFrame with columns ``alpha``, ``beta`` and the quantity, or a tuple
  ``(alpha, beta, Z)`` of 1-D coordinates and a 2-D array ``Z`` of shape ``(len(beta), len(alpha))``.
* **trajectory** — a DataFrame with columns ``alpha`` and ``beta`` (one row per checkpoint, in
  order; an optional ``step`` column labels the ends).
* **per-layer values** — a long DataFrame with columns ``layer``, ``init`` and the value column.

Mappings are keyed by the init name (``"pretrained"``, ``"scratch"``); any other key is drawn in a
neutral colour with the key as label.  Plotly figures go through :func:`show_plotly`, which works in
the static site (plotly.js loaded once from the book's ``_static`` folder) and in JupyterLab.
"""
from __future__ import annotations

import html
import json
import textwrap
import uuid
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import display
from matplotlib import colors as mcolors
from matplotlib import ticker as mticker

from bertscape.book.report import number

# seaborn (about a second to import) and plotly (only the interactive 3-D figures) are imported by the
# functions that use them.

__all__ = [
    "INIT_COLORS", "INIT_LABELS", "INIT_SHORT", "ALPHA_LABEL", "BETA_LABEL", "use_style", "init_color",
    "init_label", "training_curves", "curve_1d", "contour_pair", "contour_grid", "pca_paths", "surface3d_pair", "layer_bars",
    "layer_lines", "show_plotly", "plotly_bundle", "grid_arrays", "VERDICT_COLORS", "forest", "segment_curves",
    "barrier_matrix",
]

#: Fixed colours (colour-blind safe, from the Okabe–Ito palette): PT blue, RI vermilion.
INIT_COLORS: dict[str, str] = {"pretrained": "#0072B2", "scratch": "#D55E00"}
INIT_LABELS: dict[str, str] = {"pretrained": "pre-trained (PT)", "scratch": "from scratch (RI)"}
INIT_SHORT: dict[str, str] = {"pretrained": "PT", "scratch": "RI"}
_OTHER = "#555555"
#: Axis labels of the landscape plane: both coordinates are multiples of a direction vector.
ALPHA_LABEL = "α  (multiples of δ1 = θ1 − θ0)"
BETA_LABEL = "β  (multiples of δ2, filter-normalised)"
#: Sequential colour map of the surfaces (low loss dark).
SURFACE_CMAP = "viridis"


def use_style() -> None:
    """Apply the book's matplotlib/seaborn style (call once at the top of a chapter)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({
        "figure.figsize": (6.4, 4.0),
        "figure.dpi": 110,
        "savefig.dpi": 110,
        "figure.constrained_layout.use": True,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": "medium",
        "axes.titleweight": "bold",
        "legend.frameon": False,
        "image.cmap": SURFACE_CMAP,
    })


def init_color(init: str) -> str:
    """The fixed colour of a starting point (neutral grey for unknown keys)."""
    return INIT_COLORS.get(init, _OTHER)


def init_label(init: str) -> str:
    """Legend label of a starting point (the key itself for unknown keys)."""
    return INIT_LABELS.get(init, str(init))


# ---------------------------------------------------------------------------- input handling

def _curve_frame(curve: Any) -> pd.DataFrame:
    """A 1D curve as a DataFrame with an ``alpha`` column."""
    if isinstance(curve, xr.DataArray):
        curve = curve.to_dataset(name=curve.name or "value")
    if isinstance(curve, xr.Dataset):
        if "alpha" not in curve.dims:
            raise ValueError(f"curve: expected a Dataset with dimension 'alpha'; got dims {tuple(curve.dims)}")
        extra = [d for d in curve.dims if d != "alpha" and not str(d).endswith("_sample")]
        if extra:
            raise ValueError(f"curve: expected only dimension 'alpha'; select {extra} first (e.g. .sel(beta=0))")
        # per-sentence values (``<set>_sample_*``, kept for bootstraps) are not drawn
        curve = curve[[v for v in curve.data_vars if curve[v].dims == ("alpha",)]]
        return curve.to_dataframe().reset_index()
    if isinstance(curve, pd.DataFrame):
        if "alpha" not in curve.columns:
            curve = curve.reset_index()
        if "alpha" not in curve.columns:
            raise ValueError(f"curve: expected a column 'alpha'; got {list(curve.columns)}")
        return curve
    raise TypeError(f"curve: expected an xarray Dataset/DataArray or a DataFrame; got {type(curve).__name__}")


def grid_arrays(surface: Any, var: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, beta, Z)`` of a 2D surface with ``Z.shape == (len(beta), len(alpha))``.

    ``surface`` is an xarray Dataset/DataArray with dims ``alpha`` and ``beta``, a long DataFrame
    with columns ``alpha``, ``beta`` and ``var``, or a tuple ``(alpha, beta, Z)``.
    """
    if isinstance(surface, tuple):
        a, b, z = (np.asarray(x, dtype=float) for x in surface)
        if z.shape != (len(b), len(a)):
            raise ValueError(f"surface: Z has shape {z.shape}; expected (len(beta), len(alpha)) = {(len(b), len(a))}")
        return a, b, z
    if isinstance(surface, xr.Dataset):
        if var not in surface:
            raise KeyError(f"surface has no variable {var!r}; available: {list(surface.data_vars)}")
        surface = surface[var]
    if isinstance(surface, xr.DataArray):
        if set(surface.dims) != {"alpha", "beta"}:
            raise ValueError(f"surface: expected dims ('alpha', 'beta'); got {tuple(surface.dims)}")
        da = surface.transpose("beta", "alpha")
        return (np.asarray(da["alpha"].values, float), np.asarray(da["beta"].values, float),
                np.asarray(da.values, float))
    if isinstance(surface, pd.DataFrame):
        df = surface.reset_index() if "alpha" not in surface.columns else surface
        missing = {"alpha", "beta", var} - set(df.columns)
        if missing:
            raise ValueError(f"surface: DataFrame lacks columns {sorted(missing)}")
        p = df.pivot_table(index="beta", columns="alpha", values=var, aggfunc="mean")
        return np.asarray(p.columns, float), np.asarray(p.index, float), p.to_numpy(float)
    raise TypeError(f"surface: expected an xarray Dataset/DataArray, a DataFrame or (alpha, beta, Z); "
                    f"got {type(surface).__name__}")


def _pretty(var: str) -> str:
    return {"train_loss": "training loss", "dev_loss": "dev loss", "dev_error": "dev error (1 − metric)",
            "loss": "training loss", "train_error": "training error"}.get(var, var.replace("_", " "))


# ---------------------------------------------------------------------------- training curves

def training_curves(steps: Mapping[str, pd.DataFrame], evals: Mapping[str, pd.DataFrame] | None = None, *,
                    loss: str = "loss", metric: str | None = None, smooth: int = 9,
                    title: str | None = None, others: Mapping[str, Sequence[pd.DataFrame]] | None = None,
                    other_evals: Mapping[str, Sequence[pd.DataFrame]] | None = None) -> plt.Figure:
    """Training loss (left) and, when ``evals`` is given, a dev metric (right), PT vs RI.

    Args:
        steps: per init, a DataFrame with columns ``step`` and ``loss`` (one row per optimiser step).
        evals: per init, a DataFrame with ``step`` and dev columns (``dev_accuracy`` …).
        loss: the loss column of ``steps``.
        metric: the dev column to plot (default: the first ``dev_*`` column that is not ``dev_loss``).
        smooth: centred rolling-mean window over steps (1 = raw); the raw curve is drawn faintly.
        others, other_evals: per init, the same for other seeds, drawn as thin dashed running means
            (the spread between seeds at a glance).
    """
    ncols = 2 if evals else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.6), squeeze=False)
    ax = axes[0, 0]
    for init, df in steps.items():
        c = init_color(init)
        ax.plot(df["step"], df[loss], color=c, alpha=0.25, lw=0.8)
        y = df[loss].rolling(max(1, smooth), center=True, min_periods=1).mean()
        ax.plot(df["step"], y, color=c, lw=2, label=init_label(init))
    for init, frames in (others or {}).items():
        for k, df in enumerate(frames):
            y = df[loss].rolling(max(1, smooth), center=True, min_periods=1).mean()
            ax.plot(df["step"], y, color=init_color(init), lw=1, ls="--", alpha=0.8,
                    label=f"{INIT_SHORT.get(init, init)}, other seeds" if k == 0 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(_pretty("train_loss") + " (per batch)")
    ax.legend()
    if evals:
        ax2 = axes[0, 1]
        for init, df in evals.items():
            col = metric or next((c for c in df.columns if c.startswith("dev_") and c != "dev_loss"), "dev_loss")
            ax2.plot(df["step"], df[col], "o-", color=init_color(init), lw=2, ms=4, label=init_label(init))
            ax2.set_ylabel(col.replace("dev_", "dev ").replace("_", " "))
        for init, frames in (other_evals or {}).items():
            for df in frames:
                col = metric or next((c for c in df.columns if c.startswith("dev_") and c != "dev_loss"), "dev_loss")
                ax2.plot(df["step"], df[col], "--", color=init_color(init), lw=1, alpha=0.8)
        ax2.set_xlabel("optimiser step")
        ax2.legend()
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- 1D curves

def curve_1d(curves: Mapping[str, Any], var: str | Sequence[str] = "train_loss", *, ax: plt.Axes | None = None,
             logy: bool = False, mark_ends: bool = True, title: str | None = None,
             xlabel: str = ALPHA_LABEL, others: Mapping[str, Sequence[Any]] | None = None) -> plt.Figure:
    """1D curves f(α) per init; several ``var`` share the axes (first solid, then dashed, dotted).

    ``curves[init]`` is an xarray object with dimension ``alpha`` or a DataFrame with ``alpha``.
    θ0 (α = 0) and θ1 (α = 1) are marked with vertical lines. ``others``: per init, the curves of
    other seeds, their first ``var`` drawn thin (the spread between seeds).
    """
    vars_ = [var] if isinstance(var, str) else list(var)
    styles = ["-", "--", ":", "-."]
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 4.0))
    ax = ax if ax is not None else fig.add_subplot()
    for init, cur in curves.items():
        df = _curve_frame(cur).sort_values("alpha")
        for k, v in enumerate(vars_):
            if v not in df.columns:
                raise KeyError(f"curve {init!r} has no column {v!r}; available: {list(df.columns)}")
            lab = init_label(init) + ("" if len(vars_) == 1 else f" — {_pretty(v)}")
            ax.plot(df["alpha"], df[v], styles[k % 4], color=init_color(init), lw=2, label=lab)
    for init, extra in (others or {}).items():
        for k, cur in enumerate(extra):
            df = _curve_frame(cur).sort_values("alpha")
            ax.plot(df["alpha"], df[vars_[0]], "-", color=init_color(init), lw=0.9, alpha=0.55,
                    label=f"{INIT_SHORT.get(init, init)}, other seeds — {_pretty(vars_[0])}" if k == 0 else None)
    if mark_ends:
        for x, name in ((0.0, "θ0"), (1.0, "θ1")):
            ax.axvline(x, color="0.6", lw=0.8, ls=":")
            ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize="small", color="0.35")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_pretty(vars_[0]) if len(vars_) == 1 else "value")
    ax.legend()
    if title:
        ax.set_title(title, pad=14)
    return fig


# ---------------------------------------------------------------------------- 2D contours

def _levels(zmin: float, zmax: float, n: int, log: bool) -> np.ndarray:
    if log:
        lo = max(zmin, 1e-6)
        return np.geomspace(lo, max(zmax, lo * 1.0001), n)
    return np.linspace(zmin, zmax if zmax > zmin else zmin + 1e-9, n)


def contour_pair(surfaces: Mapping[str, Any], var: str = "train_loss", *,
                 trajectories: Mapping[str, pd.DataFrame] | None = None, levels: int = 25,
                 log: bool = False, clip: float | None = None, title: str | None = None,
                 cbar_label: str | None = None, basin_levels: Mapping[str, float] | None = None,
                 ylabel: str | None = None, residual_size: bool = False) -> plt.Figure:
    """Filled contour plots side by side (one panel per init) on one shared colour scale.

    Args:
        surfaces: per init, a 2D surface (see :func:`grid_arrays`).
        var: the quantity to draw (``train_loss``, ``dev_error`` …).
        trajectories: per init, checkpoints projected on the plane (``alpha``, ``beta`` columns).
        levels: number of contour levels.
        log: logarithmic levels (losses spanning decades).
        clip: cap the colour scale at this value (the scratch surface can reach huge losses far
            from its path; values above ``clip`` share the top colour). ``None`` = no cap.
        cbar_label: colour-bar label (default: the quantity's name).
        basin_levels: per init, a level drawn as a black line (the basin's edge f(θ1) + ε).
        ylabel: label of the β axis (default :data:`BETA_LABEL`).
        residual_size: draw each checkpoint with an area that grows with its off-plane residual
            (trajectory column ``rel_residual``, 0 = on the plane, 1 = entirely off it).

    θ0 is marked with a circle at (0, 0) and θ1 with a star at (1, 0) (at (0, 0) on a surface whose
    ``centre`` attribute is ``theta1``). One row of :func:`contour_grid`.
    """
    return contour_grid(surfaces, [var], trajectories=trajectories, levels=levels, log={var: log},
                        clip={var: clip}, title=title, cbar_labels={var: cbar_label} if cbar_label else None,
                        basin_levels={var: basin_levels} if basin_levels else None, ylabel=ylabel,
                        residual_size=residual_size)


def contour_grid(surfaces: Mapping[str, Any], vars_: Sequence[str] = ("train_loss", "dev_error"), *,
                 trajectories: Mapping[str, pd.DataFrame] | None = None, levels: int = 25,
                 log: Mapping[str, bool] | None = None, clip: Mapping[str, float | None] | None = None,
                 title: str | None = None, cbar_labels: Mapping[str, str] | None = None,
                 basin_levels: Mapping[str, Mapping[str, float]] | None = None, ylabel: str | None = None,
                 residual_size: bool = False) -> plt.Figure:
    """Filled contours of several quantities of the same surfaces: one row per quantity, one column
    per init, and one colour scale per row (so PT and RI are read on the same scale).

    Args:
        surfaces: per init, a 2D surface holding every quantity of ``vars_``.
        vars_: the quantities, one row each (e.g. training loss above dev error).
        log, clip, cbar_labels: per quantity, as ``log``/``clip``/``cbar_label`` of :func:`contour_pair`
            (missing quantities: linear, no cap, the quantity's name).
        basin_levels: per quantity, per init, a level drawn as a black line.
        trajectories, levels, ylabel, residual_size: as in :func:`contour_pair` (paths on every row).
    """
    vars_ = list(vars_)
    if not vars_:
        raise ValueError("vars_ must name at least one quantity")
    log, clip, cbar_labels, basin_levels = log or {}, clip or {}, cbar_labels or {}, basin_levels or {}
    n = len(surfaces)
    fig, axes = plt.subplots(len(vars_), n, figsize=(4.6 * n + 0.8, 4.2 * len(vars_)), squeeze=False)
    for row, var in zip(axes, vars_):
        grids = {k: grid_arrays(s, var) for k, s in surfaces.items()}
        zs = np.concatenate([g[2][np.isfinite(g[2])].ravel() for g in grids.values()])
        zmin, zmax = float(zs.min()), float(zs.max())
        cap = clip.get(var)
        if cap is not None:
            zmax = min(zmax, cap)
        lv = _levels(zmin, zmax, levels, bool(log.get(var)))
        norm = mcolors.LogNorm(lv[0], lv[-1]) if log.get(var) else mcolors.Normalize(lv[0], lv[-1])
        edges = basin_levels.get(var) or {}
        cs = None
        for ax, (init, (a, b, z)) in zip(row, grids.items()):
            zc = np.clip(z, lv[0], lv[-1])
            cs = ax.contourf(a, b, zc, levels=lv, cmap=SURFACE_CMAP, norm=norm, extend="neither")
            ax.contour(a, b, zc, levels=lv[::4], colors="white", linewidths=0.4, alpha=0.6)
            if init in edges and z.min() < edges[init] < z.max():
                ax.contour(a, b, z, levels=[edges[init]], colors="black", linewidths=1.6)
            theta1_centred = getattr(surfaces[init], "attrs", {}).get("centre") == "theta1"
            if not theta1_centred:
                ax.plot([0], [0], "o", color="white", mec="black", ms=7, label="θ0")
            ax.plot([0 if theta1_centred else 1], [0], "*", color="white", mec="black", ms=12, label="θ1")
            if trajectories and init in trajectories:
                t = trajectories[init]
                if residual_size and "rel_residual" in t:
                    ax.plot(t["alpha"], t["beta"], "-", color=init_color(init), lw=1.8, label="trajectory (projected)")
                    ax.scatter(t["alpha"], t["beta"], s=8 + 120 * np.clip(t["rel_residual"].to_numpy(float), 0, 1),
                               color=init_color(init), edgecolors="white", linewidths=0.6, zorder=3)
                else:
                    ax.plot(t["alpha"], t["beta"], "-o", color=init_color(init), mec="white", lw=1.8, ms=4,
                            label="trajectory (projected)")
            ax.set_title(init_label(init) + ("" if len(vars_) == 1 else f": {_pretty(var)}"), color=init_color(init))
            ax.set_xlabel(ALPHA_LABEL)
            ax.set_ylabel(ylabel or BETA_LABEL)
            ax.set_aspect("auto")
            ax.grid(False)
        if cs is not None:
            cb = fig.colorbar(cs, ax=list(row), shrink=0.9)
            # three significant digits, plain also on a log scale ("0.953", not "9.53 × 10⁻¹")
            cb.ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
            cb.ax.yaxis.set_minor_formatter(mticker.NullFormatter())
            capped = cap is not None and cap < float(zs.max())
            cb.set_label(cbar_labels.get(var) or _pretty(var) + (" (capped)" if capped else ""))
    axes[0, 0].legend(loc="lower left", fontsize="small", frameon=True)
    if title:
        fig.suptitle(title)
    return fig


def pca_paths(paths: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> plt.Figure:
    """Each run's checkpoints on the plane of its own two leading principal directions (one panel
    per init, θ1 at the origin), coloured by training step; axes give the explained variance.

    ``paths[init]`` is ``{"path": DataFrame(step, alpha, beta), "explained_variance_ratio": [..]}``
    (see :func:`bertscape.book.study.pca_paths`).
    """
    n = len(paths)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n + 0.6, 3.9), squeeze=False)
    sc = None
    for ax, (init, d) in zip(axes[0], paths.items()):
        df, evr = d["path"], list(d["explained_variance_ratio"]) + [float("nan")] * 2
        ax.plot(df["alpha"], df["beta"], "-", color=init_color(init), lw=1.2, alpha=0.7)
        sc = ax.scatter(df["alpha"], df["beta"], c=df["step"], cmap="cividis", s=28, zorder=3, edgecolors="none")
        ax.plot([df["alpha"].iloc[0]], [df["beta"].iloc[0]], "o", color="white", mec="black", ms=7, label="θ0")
        ax.plot([df["alpha"].iloc[-1]], [df["beta"].iloc[-1]], "*", color="white", mec="black", ms=12, label="θ1")
        ax.set_xlabel(f"PC1 ({evr[0]:.0%} of the path's variance)")
        ax.set_ylabel(f"PC2 ({evr[1]:.0%})")
        ax.set_title(init_label(init), color=init_color(init))
    axes[0, 0].legend(loc="best", fontsize="small")
    if sc is not None:
        fig.colorbar(sc, ax=list(axes[0]), shrink=0.9).set_label("optimiser step")
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------- 3D (plotly)

def surface3d_pair(surfaces: Mapping[str, Any], var: str = "train_loss", *, clip: float | None = None,
                   title: str | None = None, height: int = 480) -> "Any":
    """An interactive plotly figure: one 3D surface per init side by side, one shared colour scale.

    Display it with :func:`show_plotly` (works offline in the static site).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    grids = {k: grid_arrays(s, var) for k, s in surfaces.items()}
    zs = np.concatenate([g[2][np.isfinite(g[2])].ravel() for g in grids.values()])
    zmin, zmax = float(zs.min()), float(zs.max())
    if clip is not None:
        zmax = min(zmax, clip)
    n = len(grids)
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "surface"}] * n],
                        subplot_titles=[init_label(k) for k in grids], horizontal_spacing=0.02)
    for j, (init, (a, b, z)) in enumerate(grids.items(), start=1):
        fig.add_trace(go.Surface(x=a, y=b, z=np.minimum(z, zmax), cmin=zmin, cmax=zmax, colorscale="Viridis",
                                 showscale=(j == n), name=init_label(init),
                                 colorbar=dict(title=dict(text=_pretty(var)), len=0.8),
                                 hovertemplate="α=%{x:.2f}<br>β=%{y:.2f}<br>" + var + "=%{z:.4f}<extra></extra>"),
                      row=1, col=j)
    scene = dict(xaxis_title="α (δ1)", yaxis_title="β (δ2)", zaxis_title=_pretty(var),
                 zaxis=dict(range=[zmin, zmax]), camera=dict(eye=dict(x=1.5, y=-1.5, z=0.9)))
    fig.update_layout(**{("scene" if j == 1 else f"scene{j}"): scene for j in range(1, n + 1)})
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=50 if title else 30, b=0),
                      title=dict(text=title) if title else None)
    return fig


def plotly_bundle(fig: Any, div_id: str | None = None) -> dict[str, Any]:
    """The MIME bundle :func:`show_plotly` displays.

    * ``text/html``: a ``<div>`` plus a ``<script>`` that calls ``Plotly.newPlot`` — plotly.js itself
      is *not* embedded; the static site loads it once from ``_static/plotly.min.js``.  If plotly.js
      is missing the div shows a short note instead of staying empty.
    * ``application/vnd.plotly.v1+json``: the figure JSON, rendered live by JupyterLab / VS Code.
    * ``text/plain``: a one-line description for terminals.
    """
    div_id = div_id or f"bertscape-plotly-{uuid.uuid4().hex[:12]}"
    spec = fig.to_plotly_json()
    layout = spec.get("layout") or {}
    text = json.dumps({"data": spec.get("data", []), "layout": layout}, cls=_plotly_encoder())
    figure_json = json.loads(text)  # plain JSON types only
    script_payload = text.replace("</", "<\\/")  # figure text cannot close the <script> element
    config = json.dumps({"responsive": True, "displaylogo": False})
    height = int(layout.get("height") or 480)
    html_out = (
        f'<div class="bertscape-plotly">'
        f'<div id="{div_id}" class="plotly-graph-div" style="height:{height}px; width:100%;"></div>'
        f'<script type="text/javascript">(function() {{'
        f' var el = document.getElementById("{div_id}"); if (!el) return;'
        f' if (typeof window.Plotly === "undefined") {{ el.style.height = "auto";'
        f' el.textContent = "(interactive figure: plotly.js is not loaded on this page)"; return; }}'
        f' var fig = {script_payload};'
        f' window.Plotly.newPlot(el, fig.data, fig.layout, {config});'
        f'}})();</script></div>'
    )
    title = (figure_json["layout"].get("title") or {}).get("text")
    return {
        "text/html": html_out,
        "application/vnd.plotly.v1+json": figure_json,
        "text/plain": f"<plotly figure{': ' + html.escape(str(title)) if title else ''}>",
    }


def _plotly_encoder() -> type[json.JSONEncoder]:
    from plotly.utils import PlotlyJSONEncoder

    return PlotlyJSONEncoder


def show_plotly(fig: Any, div_id: str | None = None) -> None:
    """Display a plotly figure so that it renders both in the static book and in JupyterLab.

    Do not use ``fig.show()`` in chapters: depending on the renderer it either embeds 4 MB of
    plotly.js in every output or fetches it from a CDN, which the offline site cannot do.
    """
    display(plotly_bundle(fig, div_id), raw=True)


# ---------------------------------------------------------------------------- layers

def _layer_frame(df: pd.DataFrame, value: str) -> pd.DataFrame:
    missing = {"layer", "init", value} - set(df.columns)
    if missing:
        raise ValueError(f"per-layer data lacks columns {sorted(missing)}; got {list(df.columns)}")
    return df


def layer_bars(df: pd.DataFrame, value: str, *, ylabel: str | None = None, title: str | None = None,
               ax: plt.Axes | None = None, logy: bool = False) -> plt.Figure:
    """Grouped bars per layer (x) and init (colour).

    ``df`` is long: columns ``layer`` (label or index, in display order), ``init`` and ``value``.
    """
    import seaborn as sns

    df = _layer_frame(df, value)
    order = list(dict.fromkeys(df["layer"]))
    inits = list(dict.fromkeys(df["init"]))
    fig = ax.figure if ax is not None else plt.figure(figsize=(max(6.4, 0.5 * len(order) * len(inits)), 3.8))
    ax = ax if ax is not None else fig.add_subplot()
    sns.barplot(data=df, x="layer", y=value, hue="init", order=order, hue_order=inits,
                palette={i: init_color(i) for i in inits}, ax=ax, errorbar=None)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [init_label(i) for i in labels])
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel or value.replace("_", " "))
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    return fig


def layer_lines(df: pd.DataFrame, value: str, *, x: str = "layer", ylabel: str | None = None,
                title: str | None = None, ax: plt.Axes | None = None, marker: str = "o") -> plt.Figure:
    """One line per init of ``value`` against ``x`` (``layer`` or e.g. ``k`` restored layers)."""
    df = _layer_frame(df, value) if x == "layer" else df
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 3.8))
    ax = ax if ax is not None else fig.add_subplot()
    for init, g in df.groupby("init", sort=False):
        ax.plot(g[x], g[value], marker=marker, color=init_color(str(init)), lw=2, label=init_label(str(init)))
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(ylabel or value.replace("_", " "))
    ax.legend()
    if title:
        ax.set_title(title)
    return fig


#: Colours of the segment kinds of the connectivity chapter (PT–RI in the neutral colour).
SEGMENT_COLORS: dict[str, str] = {"PT–PT": INIT_COLORS["pretrained"], "RI–RI": INIT_COLORS["scratch"],
                                   "RI–RI (own θ0)": "#e8a77f", "PT–RI": _OTHER}
#: Titles of the barrier matrices by segment kind.
SEGMENT_TITLES = {"PT–PT": "PT seeds", "RI–RI": "RI seeds, one random θ0", "RI–RI (own θ0)": "RI seeds, own θ0"}


def segment_curves(segments: Sequence[Mapping[str, Any]], vars_: Sequence[str] = ("train_loss", "dev_error"), *,
                   title: str | None = None) -> plt.Figure:
    """The loss (and dev error) along straight segments between runs' end points, one panel per
    quantity: ``segments`` as from :func:`bertscape.book.study.segments` (``kind``, ``a``, ``b`` and a
    ``curve`` with dim ``alpha`` = t), coloured by kind (PT–PT, RI–RI, PT–RI)."""
    fig, axes = plt.subplots(1, len(vars_), figsize=(4.6 * len(vars_), 3.6), squeeze=False)
    for ax, var in zip(axes[0], vars_):
        seen = set()
        for seg in segments:
            c = seg["curve"]
            kind = seg["kind"]
            ax.plot(c["alpha"].values, c[var].values, marker="o", ms=3, lw=1.4,
                    color=SEGMENT_COLORS.get(kind, _OTHER), label=kind if kind not in seen else None)
            seen.add(kind)
        ax.set_xlabel("t  (θ1 of run a at 0, of run b at 1)")
        ax.set_ylabel(_pretty(var))
        ax.set_xlim(0, 1)
    axes[0][0].legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def barrier_matrix(barriers: pd.DataFrame, value: str = "barrier", *, title: str | None = None) -> plt.Figure:
    """Barrier heights as seed × seed matrices, one per kind of segment (PT seeds; RI seeds sharing one
    random θ0; RI seeds with their own θ0), on one colour scale, each cell the barrier with its interval
    over the sentences ([lo, hi] when the table has ``<value>_lo``/``_hi``, else ± its s.e.).
    ``barriers`` as from :func:`bertscape.book.study.barriers`."""
    kinds = [k for k in SEGMENT_TITLES if (barriers["kind"] == k).any()]
    vmax = float(np.nanmax(barriers[value])) if len(barriers) else 1.0
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(3.5 * max(1, len(kinds)) + 0.8, 3.3), squeeze=False)
    im = None
    for ax, kind in zip(axes[0], kinds):
        sub = barriers[barriers["kind"] == kind]
        names = sorted(set(sub["a"]) | set(sub["b"]), key=lambda s: int(s.split("s")[-1]))
        idx = {n: i for i, n in enumerate(names)}
        mat = np.zeros((len(names), len(names)))
        text = {}
        for _, r in sub.iterrows():
            i, j = idx[r["a"]], idx[r["b"]]
            mat[i, j] = mat[j, i] = r[value]
            if np.isfinite(r.get(f"{value}_lo", np.nan)):
                text[i, j] = text[j, i] = f"{r[value]:.3g}\n[{r[f'{value}_lo']:.2g}, {r[f'{value}_hi']:.2g}]"
            else:
                text[i, j] = text[j, i] = f"{r[value]:.3g}\n±{r.get(f'{value}_se', np.nan):.2g}"
        im = ax.imshow(mat, vmin=0, vmax=max(vmax, 1e-9), cmap="magma_r")
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, "0" if i == j else text.get((i, j), ""), ha="center", va="center", fontsize=7.5,
                        color="white" if mat[i, j] > 0.6 * vmax else "black")
        ax.set_xticks(range(len(names)), [n.split(" ")[-1] for n in names])
        ax.set_yticks(range(len(names)), [n.split(" ")[-1] for n in names])
        ax.set_title(SEGMENT_TITLES[kind], fontsize=10)
        ax.grid(False)
    if im is not None:
        label = {"barrier": "barrier (training loss)", "dev_error_barrier": "barrier (dev error)"}.get(value, value)
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title)
    return fig


def barrier_distribution(barriers: pd.DataFrame, eps: float, *, title: str | None = None) -> plt.Figure:
    """Every segment's training-loss barrier with its interval over the sentences, one row per kind of
    segment (a strip per kind: the distribution over pairs of seeds), against the basin threshold ε
    (dashed). ``barriers`` as from :func:`bertscape.book.study.barriers`."""
    kinds = [k for k in (*SEGMENT_TITLES, "PT–RI") if (barriers["kind"] == k).any()]
    fig, ax = plt.subplots(figsize=(7.5, 0.7 * len(kinds) + 1.2))
    for y, kind in enumerate(kinds[::-1]):
        sub = barriers[barriers["kind"] == kind].reset_index(drop=True)
        jitter = np.linspace(-0.18, 0.18, len(sub)) if len(sub) > 1 else np.zeros(1)
        for dy, (_, r) in zip(jitter, sub.iterrows()):
            lo, hi = r.get("barrier_lo", np.nan), r.get("barrier_hi", np.nan)
            colour = SEGMENT_COLORS.get(kind, _OTHER)
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [y + dy, y + dy], color=colour, lw=2)
            ax.plot([r["barrier"]], [y + dy], "o", color=colour, ms=5.5)
    ax.axvline(eps, color="#444444", ls="--", lw=1)
    ax.annotate(f"ε = {eps:g}", (eps, len(kinds) - 0.45), xytext=(4, 0), textcoords="offset points", fontsize=8.5)
    labels = [SEGMENT_TITLES.get(k, "PT with RI, first seed") for k in kinds[::-1]]
    ax.set_yticks(range(len(kinds)), labels)
    ax.set_ylim(-0.6, len(kinds) - 0.3)
    ax.set_xlabel("barrier of the training loss (95 % BCa interval over sentences)")
    ax.grid(axis="y", visible=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def flatness_ratios(frame: pd.DataFrame, *, title: str | None = None) -> plt.Figure:
    """Is PT's optimum wider and flatter, in each unit? One panel for the widths and areas (PT ÷ RI: above 1
    PT's basin is wider) and one for the curvatures (RI ÷ PT: above 1 PT's is flatter); one row per
    measure, the paper's unit and the scale-invariant unit in two colours, every seed a dot and their
    geometric mean a bar (log scale). ``frame``: ``measure``, ``unit`` (``paper``/``invariant``),
    ``kind`` (``width``/``curvature``), ``seed``, ``ratio`` (:func:`bertscape.book.tables.flatness_ratios`)."""
    need = {"measure", "unit", "kind", "seed", "ratio"}
    if missing := need - set(frame.columns):
        raise ValueError(f"flatness_ratios(frame=...) lacks columns {sorted(missing)}")
    colours = {"paper": "#009E73", "invariant": "#CC79A7", "raw": "#7f7f7f"}
    names = {"paper": "paper's unit (α, β)", "invariant": "scale-invariant unit", "raw": "raw parameters"}
    kinds = [k for k in ("width", "curvature") if (frame["kind"] == k).any()]
    sizes = [frame[frame["kind"] == k]["measure"].nunique() for k in kinds]
    fig, axes = plt.subplots(len(kinds), 1, figsize=(7.6, 0.42 * sum(sizes) + 1.5 * len(kinds)), squeeze=False,
                             gridspec_kw={"height_ratios": sizes}, layout="constrained")
    for ax, kind in zip(axes[:, 0], kinds):
        g = frame[frame["kind"] == kind]
        measures = list(dict.fromkeys(g["measure"]))
        for y, m in enumerate(measures[::-1]):
            h = g[g["measure"] == m]
            unit = h["unit"].iloc[0]
            r = h["ratio"].to_numpy(float)
            bad = int(np.sum(~(np.isfinite(r) & (r > 0))))
            r = r[np.isfinite(r) & (r > 0)]
            if bad:  # a ratio of a negative curvature (a run on a slope, not in a bowl) has no meaning
                ax.annotate(f"{bad} seed(s): a value ≤ 0", (1.0, y), xycoords=("axes fraction", "data"),
                            xytext=(4, 0), textcoords="offset points", va="center", fontsize=7.5, color="#555555",
                            annotation_clip=False)
            if len(r):
                gm = float(np.exp(np.mean(np.log(r))))
                ax.barh(y, gm - 1.0, left=1.0, height=0.55, color=colours.get(unit, _OTHER), alpha=0.35)
                ax.plot(r, np.full(len(r), y), "o", color=colours.get(unit, _OTHER), ms=5)
        ax.axvline(1.0, color="#444444", lw=0.9)
        ax.set_xscale("log")
        ax.set_yticks(range(len(measures)), [textwrap.fill(m, 44) for m in measures[::-1]], fontsize=9)
        ax.set_xlabel("PT ÷ RI (> 1: PT wider)" if kind == "width" else "RI ÷ PT (> 1: PT flatter)")
        ax.set_title("widths and areas" if kind == "width" else "curvature at θ1", fontsize=10)
        ax.grid(axis="y", visible=False)
    present = set(frame["unit"])
    handles = [plt.Line2D([], [], color=c, marker="o", lw=6, alpha=0.6, label=names[u])
               for u, c in colours.items() if u in present]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------- scorecard

#: Colours of the three verdicts (Okabe–Ito: bluish green, vermilion, grey).
VERDICT_COLORS: dict[str, str] = {"holds": "#009E73", "fails": "#D55E00", "inconclusive": "#7f7f7f"}


def forest(frame: pd.DataFrame, *, z: float = 1.0, title: str | None = None, clip: float = 1000.0) -> plt.Figure:
    """Forest plot of the scorecard: one row per scored quantity, one panel per task.

    ``frame`` is :func:`bertscape.book.report.forest_frame`'s: ``label``, ``task``, ``z`` (the margin on
    the claimed side in units of its decision interval's half-width), ``lo``/``hi`` (the interval's
    ends in the same unit), ``verdict``, ``note``, ``pretrained``, ``scratch``. Each row is a dot at
    ``z`` with its interval: wholly right of 0 the row holds, wholly left it fails, across 0 it is
    inconclusive (the grey band is ± ``z``, where a symmetric interval's centre must lie to cross 0).
    The x axis is symmetric-logarithmic (linear within ±5); values beyond ``clip`` are drawn at the
    edge. A row without an interval is a hollow grey mark at 0 with the reason.
    """
    need = {"label", "task", "z", "lo", "hi", "verdict", "note", "pretrained", "scratch"}
    if missing := need - set(frame.columns):
        raise ValueError(f"forest(frame=...) lacks columns {sorted(missing)}; build it with report.forest_frame")
    tasks = list(dict.fromkeys(frame["task"]))
    n = max(len(frame[frame["task"] == t]) for t in tasks) if tasks else 1
    # no constrained layout: the row labels and the values at the right lie outside the axes, and the
    # saved figure's tight bounding box makes room for them
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(min(3.6 * max(len(tasks), 1), 11), 0.5 * n + 1.2),
                             sharey=True, squeeze=False, layout="none")
    for ax, task in zip(axes[0], tasks):
        g = frame[frame["task"] == task].reset_index(drop=True)
        y = np.arange(len(g))[::-1]
        ax.axvspan(-z, z, color="#f1f1f1", zorder=0)
        ax.axvline(0, color="#444444", lw=0.9, zorder=1)
        for yi, r in zip(y, g.itertuples(index=False)):
            colour = VERDICT_COLORS.get(r.verdict, "#7f7f7f")
            if np.isfinite(r.z):
                c, lo, hi = (float(np.clip(v, -clip, clip)) for v in (r.z, r.lo, r.hi))
                ax.plot([lo, hi], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt", zorder=2)
                ax.plot([c], [yi], "o", color=colour, ms=6.5, zorder=3)
            else:
                ax.plot([0], [yi], "o", mfc="white", mec="#7f7f7f", ms=6.5, zorder=3)
            note = f"\n({r.note})" if not np.isfinite(r.z) and r.note else ""
            ax.annotate(f"PT {number(r.pretrained)} · RI {number(r.scratch)}{note}", (1.0, yi),
                        xycoords=("axes fraction", "data"), xytext=(6, 0), textcoords="offset points",
                        va="center", fontsize=8.5, color="#333333", annotation_clip=False)
        ax.set_xscale("symlog", linthresh=5.0)
        lim = min(max(10.0, float(np.nanmax(np.abs(np.r_[g["lo"], g["hi"], 0.0]))) * 1.3), clip * 1.3)
        ax.set_xlim(-lim, lim)
        ticks = [t for t in (-1000, -100, -10, -z, 0, z, 10, 100, 1000) if abs(t) <= lim]
        ax.set_xticks(ticks, [f"{t:g}".replace("-", "−") for t in ticks])
        ax.minorticks_off()
        ax.set_yticks(y, [textwrap.fill(str(label), 44) for label in g["label"]], fontsize=9)
        ax.set_ylim(-0.7, len(g) - 0.3)
        ax.set_xlabel("margin on the claimed side ÷ half-width of its interval")
        ax.set_title(task, fontsize=10)
        ax.grid(axis="y", visible=False)
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2.2, label=v) for v, c in VERDICT_COLORS.items()]
    axes[0][-1].legend(handles=handles, loc="lower right", fontsize=8, frameon=True)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
