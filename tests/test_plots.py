"""Figures draw the numbers they are given: curves, contour panels on one colour scale per quantity (with
the cap named on the colour bar), surfaces read in any of their three forms, and per-layer bars."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

from bertscape.book import plots  # noqa: E402

A = np.linspace(-1, 2, 7)
B = np.linspace(-1, 1, 5)


def _surface(scale: float) -> xr.Dataset:
    aa, bb = np.meshgrid(A, B, indexing="ij")  # stored alpha-major, as the grid engine writes it
    return xr.Dataset({"train_loss": (("alpha", "beta"), scale * ((aa - 1) ** 2 + bb ** 2))},
                      coords={"alpha": A, "beta": B})


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_grid_arrays_reads_all_three_forms_the_same() -> None:
    s = _surface(1.0)
    a, b, z = plots.grid_arrays(s, "train_loss")
    assert z.shape == (len(B), len(A))
    assert z[0, 0] == pytest.approx(s["train_loss"].sel(alpha=A[0], beta=B[0]))
    assert z[-1, 2] == pytest.approx(s["train_loss"].sel(alpha=A[2], beta=B[-1]))
    long = s.to_dataframe().reset_index()
    for other in (plots.grid_arrays(long, "train_loss"), plots.grid_arrays((a, b, z), "train_loss")):
        np.testing.assert_allclose(other[2], z)
    with pytest.raises(ValueError, match="expected \\(len\\(beta\\), len\\(alpha\\)\\)"):
        plots.grid_arrays((a, b, z.T), "train_loss")
    with pytest.raises(KeyError, match="no variable 'dev_error'"):
        plots.grid_arrays(s, "dev_error")


def test_curve_1d_draws_each_init_in_alpha_order() -> None:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(A))
    curves = {i: pd.DataFrame({"alpha": A[order], "train_loss": k + A[order] ** 2})
              for k, i in enumerate(("pretrained", "scratch"))}
    fig = plots.curve_1d(curves)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    for k, init in enumerate(("pretrained", "scratch")):
        ln = lines[plots.init_label(init)]
        np.testing.assert_allclose(ln.get_xdata(), A)
        np.testing.assert_allclose(ln.get_ydata(), k + A ** 2)
        assert ln.get_color() == plots.init_color(init)
    with pytest.raises(KeyError, match="has no column 'dev_error'"):
        plots.curve_1d(curves, "dev_error")


def test_contour_panels_share_one_colour_scale_and_name_the_cap() -> None:
    surfaces = {"pretrained": _surface(1.0), "scratch": _surface(10.0)}
    fig = plots.contour_pair(surfaces, "train_loss")
    filled = [next(c for c in ax.collections if hasattr(c, "levels")) for ax in fig.axes[:2]]
    np.testing.assert_allclose(filled[0].levels, filled[1].levels)
    assert filled[0].levels[-1] == pytest.approx(float(surfaces["scratch"]["train_loss"].max()))

    capped = plots.contour_pair(surfaces, "train_loss", clip=5.0)
    levels = next(c for c in capped.axes[0].collections if hasattr(c, "levels")).levels
    assert levels[-1] == pytest.approx(5.0)
    assert capped.axes[-1].get_ylabel().endswith("(capped)")


def test_layer_bars_have_the_given_heights() -> None:
    df = pd.DataFrame([{"layer": f"L{k}", "init": init, "change": (k + 1) * (1 if init == "pretrained" else 3)}
                       for init in ("pretrained", "scratch") for k in range(3)])
    fig = plots.layer_bars(df, "change")
    heights = sorted(round(p.get_height(), 9) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == sorted(df["change"].astype(float).tolist())
    with pytest.raises(ValueError, match="lacks columns \\['rise'\\]"):
        plots.layer_bars(df, "rise")
