"""The explorers: a live widget redraws with the chosen values when a control changes, the static site
shows only the default figure, and bad options are refused with the option named."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as ipw  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from bertscape.book import widgets  # noqa: E402


def _controls(box: ipw.VBox) -> dict[str, ipw.ValueWidget]:
    row, out = box.children
    assert isinstance(out, ipw.Output)
    return {c.description: c for c in row.children}


@pytest.fixture()
def shown(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every figure an explorer hands to the display (instead of displaying it)."""
    figures: list = []
    monkeypatch.setattr(widgets, "_display_figure", lambda fig: figures.append(fig))
    yield figures
    plt.close("all")


def _surface(scale: float) -> xr.Dataset:
    a = np.linspace(-1, 2, 7)
    b = np.linspace(-1, 1, 5)
    aa, bb = np.meshgrid(a, b, indexing="ij")
    return xr.Dataset({"train_loss": (("alpha", "beta"), scale * ((aa - 1) ** 2 + bb ** 2)),
                       "dev_error": (("alpha", "beta"), 0.1 * scale * (np.abs(aa - 1) + np.abs(bb)))},
                      coords={"alpha": a, "beta": b})


def test_changing_a_control_redraws_with_the_new_choice(shown: list) -> None:
    calls: list[dict] = []

    def draw(task: str, step: int) -> plt.Figure:
        calls.append({"task": task, "step": step})
        fig, ax = plt.subplots()
        ax.set_title(f"{task}@{step}")
        return fig

    ex = widgets.Explorer(draw, {"task": ["mrpc", "rte"], "step": list(range(0, 80, 10))}, static=False)
    box = ex.widget()
    ctl = _controls(box)
    assert isinstance(ctl["task"], ipw.Dropdown)
    assert isinstance(ctl["step"], ipw.SelectionSlider), "8 numeric values are offered on a slider"
    assert calls == [{"task": "mrpc", "step": 0}], "the default choice is drawn once on creation"

    ctl["task"].value = "rte"
    ctl["step"].value = 30
    assert calls[-2:] == [{"task": "rte", "step": 0}, {"task": "rte", "step": 30}]
    assert [f.axes[0].get_title() for f in shown] == ["mrpc@0", "rte@0", "rte@30"]


def test_static_mode_shows_only_the_default_figure(shown: list, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    displayed: list = []
    monkeypatch.setattr(widgets, "display", lambda obj: displayed.append(obj))
    ex = widgets.Explorer(lambda task: plt.figure(num=task), {"task": ["a", "b"]}, defaults={"task": "b"})
    assert ex.static
    ex.show()
    assert displayed == [], "no widget is displayed on the static site"
    assert len(shown) == 1 and shown[0].get_label() == "b"


def test_live_mode_displays_a_widget(monkeypatch: pytest.MonkeyPatch, shown: list) -> None:
    monkeypatch.delenv(widgets.STATIC_ENV, raising=False)
    displayed: list = []
    monkeypatch.setattr(widgets, "display", lambda obj: displayed.append(obj))
    widgets.Explorer(lambda task: plt.figure(), {"task": ["a"]}).show()
    assert len(displayed) == 1 and isinstance(displayed[0], ipw.VBox)


@pytest.mark.parametrize("options, defaults, match", [
    ({"task": []}, None, "option 'task' has no values"),
    ({"task": ["a"]}, {"layer": 3}, "'layer' is not an option"),
    ({"task": ["a"]}, {"task": "z"}, "task='z' is not among its values"),
])
def test_bad_options_are_refused_by_name(options, defaults, match) -> None:
    with pytest.raises(ValueError, match=match):
        widgets.Explorer(lambda **k: None, options, defaults=defaults)


def test_curve_explorer_slices_at_the_chosen_beta(shown: list) -> None:
    surfaces = {("movies", "pretrained"): _surface(1.0), ("movies", "scratch"): _surface(3.0)}
    ex = widgets.curve_explorer(surfaces, static=False)
    assert ex.defaults["beta"] == 0.0, "the default slice is the 1D curve along δ1"
    ctl = _controls(ex.widget())
    ctl["beta"].value = 0.5
    fig = shown[-1]
    ax = fig.axes[0]
    assert "β = 0.5" in ax.get_title()
    pt_line = next(line for line in ax.get_lines() if line.get_label() == widgets.plots.init_label("pretrained"))
    expected = surfaces[("movies", "pretrained")]["train_loss"].sel(beta=0.5).values
    np.testing.assert_allclose(pt_line.get_ydata(), expected)


def test_surface_explorer_redraws_the_chosen_quantity(shown: list) -> None:
    surfaces = {("movies", "pretrained"): _surface(1.0), ("movies", "scratch"): _surface(3.0)}
    ex = widgets.surface_explorer(surfaces, static=False)
    ctl = _controls(ex.widget())
    ctl["quantity"].value = "dev_error"
    fig = shown[-1]
    assert fig.get_suptitle() == "movies: dev error (1 − metric)"
    assert [ax.get_title() for ax in fig.axes[:2]] == [widgets.plots.init_label(i) for i in ("pretrained", "scratch")]


def test_layer_explorer_draws_the_chosen_layer(shown: list) -> None:
    rows = [{"layer": layer, "init": init, "alpha": a, "train_loss": (layer + 1) * a ** 2 + (init == "scratch")}
            for layer in range(3) for init in ("pretrained", "scratch") for a in np.linspace(-1, 1, 5)]
    ex = widgets.layer_explorer({"movies": pd.DataFrame(rows)}, static=False)
    ctl = _controls(ex.widget())
    ctl["layer"].value = 2
    ax = shown[-1].axes[0]
    assert ax.get_title().endswith("moving layer 2 only")
    ys = {line.get_label(): line.get_ydata() for line in ax.get_lines() if not line.get_label().startswith("_")}
    np.testing.assert_allclose(ys[widgets.plots.init_label("pretrained")], 3 * np.linspace(-1, 1, 5) ** 2)
