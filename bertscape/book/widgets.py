"""Interactive explorers for live Jupyter, with a plain-figure fallback for the static site.

An explorer holds precomputed results (nothing is recomputed on a click) and a draw function;
in Jupyter it shows a control per choice (task, init, quantity, β slice, layer …) and redraws.

**Static mode.**  The book build executes chapters with ``BERTSCAPE_STATIC=1`` in the kernel's
environment.  There, :meth:`Explorer.show` displays only the figure of the default choices — an
ordinary matplotlib image or plotly figure — and no widget output at all, so the static site never
shows a dead widget (ipywidgets need a live kernel; their saved state would also make the page
fetch the widget manager from a CDN).  Readers see the default view; re-runners in Jupyter get the
controls.  :func:`static_mode` reads the flag; pass ``static=True/False`` to force either behaviour.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as ipw
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from bertscape.book import plots

__all__ = ["STATIC_ENV", "static_mode", "Explorer", "surface_explorer", "curve_explorer", "layer_explorer"]

#: Environment variable set to ``1`` by the book build while chapters execute.
STATIC_ENV = "BERTSCAPE_STATIC"


def static_mode() -> bool:
    """True while the book build executes notebooks (``BERTSCAPE_STATIC=1``)."""
    return os.environ.get(STATIC_ENV, "").strip().lower() in ("1", "true", "yes")


def _display_figure(fig: Any) -> None:
    """Show a matplotlib or plotly figure once and release it."""
    if fig is None:
        return
    if hasattr(fig, "to_plotly_json"):
        plots.show_plotly(fig)
        return
    display(fig)
    plt.close(fig)


class Explorer:
    """Choose among precomputed results with dropdowns/sliders and redraw one figure.

    Args:
        draw: ``draw(**choice) -> Figure`` (matplotlib or plotly); called with one value per option.
        options: option name → the values offered, in order (e.g. ``{"task": ["mrpc", "rte"]}``).
            Numeric options with more than 6 values become a slider, the rest dropdowns.
        defaults: the default choice per option (default: each option's first value).  The static
            site shows exactly this figure.
        static: force static (``True``) or live (``False``) behaviour; ``None`` reads the environment.
    """

    def __init__(self, draw: Callable[..., Any], options: Mapping[str, Sequence[Any]],
                 defaults: Mapping[str, Any] | None = None, static: bool | None = None) -> None:
        if not callable(draw):
            raise TypeError("draw must be callable: draw(**choice) -> figure")
        self.draw = draw
        self.options = {k: list(v) for k, v in options.items()}
        for k, v in self.options.items():
            if not v:
                raise ValueError(f"option {k!r} has no values to choose from")
        self.defaults = {k: v[0] for k, v in self.options.items()}
        for k, v in (defaults or {}).items():
            if k not in self.options:
                raise ValueError(f"defaults: {k!r} is not an option; options are {list(self.options)}")
            if v not in self.options[k]:
                raise ValueError(f"defaults: {k}={v!r} is not among its values {self.options[k]}")
            self.defaults[k] = v
        self.static = static_mode() if static is None else bool(static)

    def default_figure(self) -> Any:
        """The figure of the default choice (what the static site shows)."""
        return self.draw(**self.defaults)

    def widget(self) -> Any:
        """The live ipywidgets box (controls above an output area)."""
        controls: dict[str, Any] = {}
        for name, values in self.options.items():
            numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                          for v in values)
            if numeric and len(values) > 6:
                controls[name] = ipw.SelectionSlider(options=values, value=self.defaults[name], description=name,
                                                     continuous_update=False,
                                                     layout=ipw.Layout(width="min(28rem, 100%)"))
            else:
                controls[name] = ipw.Dropdown(options=values, value=self.defaults[name], description=name)
        out = ipw.Output()

        def redraw(**choice: Any) -> None:
            with out:
                out.clear_output(wait=True)
                _display_figure(self.draw(**choice))

        ipw.interactive_output(redraw, controls)
        return ipw.VBox([ipw.HBox(list(controls.values()), layout=ipw.Layout(flex_flow="row wrap")), out])

    def show(self) -> None:
        """Display the explorer (live) or only the default figure (static site)."""
        if self.static:
            _display_figure(self.default_figure())
        else:
            display(self.widget())

    def _ipython_display_(self) -> None:  # a bare ``explorer`` as the last line shows it
        self.show()


def surface_explorer(surfaces: Mapping[tuple[str, str], Any], variables: Sequence[str] = ("train_loss", "dev_error"),
                     *, trajectories: Mapping[tuple[str, str], Any] | None = None,
                     static: bool | None = None) -> Explorer:
    """Explore 2D surfaces: pick the task and the quantity; PT and RI are drawn side by side.

    Args:
        surfaces: ``(task, init)`` → 2D surface (see :func:`bertscape.book.plots.grid_arrays`).
        variables: quantities offered (each surface must hold them).
        trajectories: ``(task, init)`` → projected checkpoints (``alpha``, ``beta`` columns).
    """
    tasks = list(dict.fromkeys(t for t, _ in surfaces))

    def draw(task: str, quantity: str) -> Any:
        sel = {i: s for (t, i), s in surfaces.items() if t == task}
        tr = {i: v for (t, i), v in (trajectories or {}).items() if t == task} or None
        return plots.contour_pair(sel, quantity, trajectories=tr, title=f"{task}: {plots._pretty(quantity)}")

    return Explorer(draw, {"task": tasks, "quantity": list(variables)}, static=static)


def curve_explorer(surfaces: Mapping[tuple[str, str], Any], variables: Sequence[str] = ("train_loss", "dev_error"),
                   *, static: bool | None = None) -> Explorer:
    """Explore 1D slices f(α, β = b) of 2D surfaces: pick task, quantity and the β of the slice.

    ``surfaces`` maps ``(task, init)`` to an xarray Dataset with dims ``alpha`` and ``beta``; the
    default slice is β = 0 (the 1D curve along δ1).
    """
    tasks = list(dict.fromkeys(t for t, _ in surfaces))
    first = next(iter(surfaces.values()))
    betas = [float(b) for b in np.asarray(first["beta"].values)]
    b0 = min(betas, key=abs)

    def draw(task: str, quantity: str, beta: float) -> Any:
        sel = {i: s.sel(beta=beta, method="nearest").drop_vars("beta", errors="ignore")
               for (t, i), s in surfaces.items() if t == task}
        return plots.curve_1d(sel, quantity, title=f"{task}: slice β = {beta:g}")

    return Explorer(draw, {"task": tasks, "quantity": list(variables), "beta": betas},
                    defaults={"beta": b0}, static=static)


def layer_explorer(curves: Mapping[str, Any], value: str = "train_loss", *, x: str = "alpha",
                   static: bool | None = None) -> Explorer:
    """Explore per-layer 1D curves: pick the task and the layer; PT and RI on one axis.

    ``curves`` maps task → long DataFrame with columns ``layer``, ``init``, ``x`` (default ``alpha``)
    and ``value``.
    """
    tasks = list(curves)
    layers = list(dict.fromkeys(curves[tasks[0]]["layer"]))

    def draw(task: str, layer: Any) -> Any:
        df = curves[task]
        df = df[df["layer"] == layer]
        per_init = {str(i): g[[x, value]].rename(columns={x: "alpha"}) for i, g in df.groupby("init", sort=False)}
        return plots.curve_1d(per_init, value, title=f"{task}: moving layer {layer} only")

    return Explorer(draw, {"task": tasks, "layer": layers}, static=static)
