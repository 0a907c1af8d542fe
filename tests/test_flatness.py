"""Flatness numbers (bertscape.geometry.flatness) on synthetic arrays with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bertscape.base.errors import BertscapeError
from bertscape.geometry import flatness as F


def test_basin_width_known_answers():
    x = np.linspace(-2, 2, 41)
    w = F.basin_width(x ** 2, x, centre=0.0, eps=1.0, direction_norm=3.0)
    assert (w["lo"], w["hi"], w["width"], w["width_param"], w["censored"]) == pytest.approx((-1, 1, 2, 6, 0))
    # crossing between grid points is interpolated linearly: f = |x|, threshold 0.25
    w = F.basin_width(np.abs(x), x, centre=0.0, eps=0.25)
    assert w["width"] == pytest.approx(0.5)
    # relative ε: f(centre) = 2, ε = 50 % → threshold 3
    f = 2 + x ** 2
    w = F.basin_width(f, x, 0.0, 0.5, "relative")
    assert w["threshold"] == pytest.approx(3.0) and w["width"] == pytest.approx(2.0)
    # reaching the grid's end: censored lower bound
    w = F.basin_width(np.zeros_like(x), x, 1.0, 0.1)
    assert w["width"] == pytest.approx(4.0) and w["censored"] == 1
    with pytest.raises(BertscapeError, match="eps_mode"):
        F.basin_width(f, x, 0.0, 0.1, "percent")
    with pytest.raises(BertscapeError, match="centre"):
        F.basin_width(f, x, 5.0)


def test_sublevel_area_counts_the_connected_component():
    a = np.linspace(0, 2, 21)   # h = 0.1
    b = np.linspace(-1, 1, 21)
    f = np.ones((21, 21))
    f[8:13, 9:12] = 0.0   # 5 × 3 block containing θ1 = (1, 0) → index (10, 10)
    f[0:3, 0:3] = 0.0     # a separate low region: not counted
    f[10, 10] = -0.05
    r = F.sublevel_area(f, a, b, centre=(1.0, 0.0), eps=0.1, d1_norm=2.0, d2_norm=3.0)
    assert r["n_points"] == 15 and r["touches_edge"] == 0
    assert r["area"] == pytest.approx(15 * 0.01)
    assert r["area_param"] == pytest.approx(15 * 0.01 * 6.0)
    r = F.sublevel_area(f, a, b, centre=(1.0, 0.0), eps=0.1, d1_norm=2.0, d2_norm=3.0, cos12=0.6)
    assert r["area_param"] == pytest.approx(15 * 0.01 * 6.0 * 0.8)
    # a disc of radius 0.5 on a fine grid: area → π r²
    g = np.linspace(-1, 1, 201)
    disc = F.sublevel_area(np.add.outer(g ** 2, g ** 2), g, g, (0.0, 0.0), eps=0.25)
    assert disc["area"] == pytest.approx(np.pi * 0.25, rel=0.02)


def test_barrier_height_known_answers():
    a = np.linspace(-0.5, 1.5, 41)
    chord = 3 - 2 * a
    assert F.barrier_height(chord + 4 * a * (1 - a) * 0.25, a) == pytest.approx(0.25)
    assert F.barrier_height(chord - 4 * a * (1 - a), a) == 0.0
    assert F.count_rises(chord, a) == 0
    assert F.count_rises(chord + np.where(a == 0.5, 1.0, 0.0), a) == 1
    with pytest.raises(BertscapeError, match="alphas"):
        F.barrier_height([1.0, 2.0], [0.2, 0.5])


def test_flatness_summary_on_synthetic_grids():
    a = np.round(np.linspace(-0.5, 1.5, 41), 10)
    curve = xr.Dataset({"train_loss": ("alpha", (a - 1) ** 2 + 2 * a * (1 - a) * (a > 0) * (a < 0.4))},
                       coords={"alpha": a}, attrs={"d1_norm": 10.0})
    aa, bb = np.round(np.linspace(-0.5, 1.5, 21), 10), np.round(np.linspace(-1.0, 1.0, 21), 10)
    f = np.add.outer((aa - 1) ** 2, 4 * bb ** 2)
    surf = xr.Dataset({"train_loss": (("alpha", "beta"), f)}, coords={"alpha": aa, "beta": bb},
                      attrs={"d1_norm": 10.0, "d2_norm": 10.0, "cos_d1_d2": 0.0, "centre": "theta0"})
    s = F.flatness_summary(curve, surf, eps=0.25)
    assert s["width_d1"] == pytest.approx(1.0) and s["width_d1_param"] == pytest.approx(10.0)
    # 4β² ≤ 0.25 ⇔ |β| ≤ 0.25; on the 0.1 grid the crossing is interpolated between β = 0.2 (0.16)
    # and 0.3 (0.36): 0.2 + 0.09/0.20·0.1 = 0.245 on each side
    assert s["width_d2"] == pytest.approx(0.49) and s["width_d2_param"] == pytest.approx(4.9)
    assert s["barrier"] == pytest.approx(0.35 * 0.65) and s["rises"] == 0 and s["f_theta1"] == 0.0
    assert s["area"] > 0 and s["area_param"] == pytest.approx(s["area"] * 100)


def test_sublevel_area_names_the_sides_its_set_reaches():
    g = np.linspace(-1, 1, 9)
    bowl = F.sublevel_area(np.add.outer(g ** 2, g ** 2), g, g, (0.0, 0.0), eps=0.3)
    assert bowl["edges"] == [] and bowl["touches_edge"] == 0
    # a valley falling towards +α: the set reaches the +α side and both β sides stay inside
    valley = F.sublevel_area(np.add.outer(-g, 4 * g ** 2), g, g, (0.0, 0.0), eps=0.1)
    assert valley["edges"] == ["+α"] and valley["touches_edge"] == 1
    flat = F.sublevel_area(np.zeros((9, 9)), g, g, (0.0, 0.0), eps=0.1)
    assert flat["edges"] == ["-α", "+α", "-β", "+β"] and flat["n_points"] == 81


def test_unit_segment_keeps_theta0_to_theta1_in_order_of_alpha():
    a = np.array([1.5, 0.0, 1.0, -0.5, 0.5])
    f = 10 * a
    np.testing.assert_array_equal(F.unit_segment(f, a), [0.0, 5.0, 10.0])
    per_sentence = np.stack([f, f + 1], axis=1)  # (points, sentences)
    np.testing.assert_array_equal(F.unit_segment(per_sentence, a), [[0, 1], [5, 6], [10, 11]])
    with pytest.raises(BertscapeError, match="values"):
        F.count_rises([1.0, 2.0], [0.0, 0.5, 1.0])
