"""The θ1-centred basin grid grows until it contains θ1's sub-level set (claim 3's area):
synthetic surfaces with known sets, no model."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bertscape.evidence.scorecard import FLAT_EPS as EPS
from bertscape.geometry import flatness, landscape


def _evaluator(f, calls):
    def grid(alphas, betas):
        calls.append((tuple(alphas), tuple(betas)))
        A, B = np.meshgrid(np.asarray(alphas, float), np.asarray(betas, float), indexing="ij")
        v = f(A, B)
        samples = np.stack([v - 0.01, v + 0.01], axis=-1)  # two "sentences" averaging to f
        return xr.Dataset({"train_loss": (("alpha", "beta"), v),
                           "train_sample_loss": (("alpha", "beta", "train_sample"), samples),
                           "train_label": ("train_sample", np.array([0, 1]))},
                          coords={"alpha": list(alphas), "beta": list(betas)}, attrs={"grid_key": "synthetic"})
    return grid


def test_a_bowl_inside_the_first_grid_is_not_grown() -> None:
    calls = []
    s = landscape.grow_basin_grid(_evaluator(lambda a, b: a ** 2 + b ** 2, calls), 9, EPS)
    assert len(calls) == 1 and s["train_loss"].shape == (9, 9)
    assert s.attrs["alpha_axis"] == [-1.0, 1.0] and s.attrs["beta_axis"] == [-1.0, 1.0]
    assert landscape.basin_area(s, EPS)["edges"] == []


def test_a_valley_falling_past_theta1_is_followed_until_it_closes() -> None:
    # f(0, 0) = 0.36, threshold 0.46: the set spans α ∈ [−0.156, 2.556], β ∈ ±0.678
    f = lambda a, b: (a - 1.2) ** 2 / 4 + b ** 2  # noqa: E731
    calls = []
    s = landscape.grow_basin_grid(_evaluator(f, calls), 9, EPS)
    assert s.attrs["alpha_axis"] == [-1.0, 3.0] and s.attrs["beta_axis"] == [-1.0, 1.0]
    assert [c[0][0] for c in calls[1:]] == [1.25, 2.25]          # two strips, both on the +α side
    assert np.allclose(np.diff(s["alpha"].values), 0.25) and s["train_loss"].shape == (17, 9)
    # the merged grid equals one evaluation of the whole rectangle, and the set no longer touches an edge
    whole = _evaluator(f, [])(list(s["alpha"].values), list(s["beta"].values))
    np.testing.assert_array_equal(s["train_loss"].values, whole["train_loss"].values)
    np.testing.assert_array_equal(s["train_sample_loss"].values, whole["train_sample_loss"].values)
    res = landscape.basin_area(s, EPS)
    assert res["edges"] == [] and res["touches_edge"] == 0
    direct = flatness.sublevel_area(whole["train_loss"].values, s["alpha"].values, s["beta"].values,
                                    (0.0, 0.0), EPS)
    assert res["area"] == pytest.approx(direct["area"]) and res["area"] > 0


def test_growth_on_the_negative_sides_keeps_the_axes_increasing() -> None:
    # mirror image of the valley above, tilted along β as well: the set reaches -α first, then -β
    f = lambda a, b: (a + 1.2) ** 2 / 4 + (b + 0.5) ** 2 / 2  # noqa: E731
    calls = []
    s = landscape.grow_basin_grid(_evaluator(f, calls), 9, EPS)
    for alphas, betas in calls:
        assert list(alphas) == sorted(alphas) and list(betas) == sorted(betas)
    assert s.attrs["alpha_axis"][0] < -1.0 and s.attrs["beta_axis"][0] < -1.0
    assert np.all(np.diff(s["alpha"].values) > 0) and np.all(np.diff(s["beta"].values) > 0)
    assert landscape.basin_area(s, EPS)["edges"] == []
    whole = _evaluator(f, [])(list(s["alpha"].values), list(s["beta"].values))
    np.testing.assert_array_equal(s["train_loss"].values, whole["train_loss"].values)


def test_a_set_wider_than_the_cap_stays_censored() -> None:
    calls = []
    s = landscape.grow_basin_grid(_evaluator(lambda a, b: -a + 4 * b ** 2, calls), 9, EPS, steps=2)
    assert len(calls) == 3 and s.attrs["alpha_axis"] == [-1.0, 3.0]
    res = landscape.basin_area(s, EPS)
    assert "+α" in res["edges"] and res["touches_edge"] == 1
