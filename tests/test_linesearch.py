"""Line searches for basin widths on curves whose crossings are known in closed form (no model).

Error bound used throughout: once expansion brackets a crossing c at [lo, hi] with hi = 2·lo and
lo < c (the previous, doubled step was still inside), the bracket is shorter than c; REFINE_STEPS
bisections shrink it 2^REFINE_STEPS-fold and the crossing is interpolated inside it, so
|found − c| ≤ c · 2^−REFINE_STEPS. When the first step already overshoots, the bracket is
[0, first] and the bound is first · 2^−REFINE_STEPS instead.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bertscape.base.errors import BertscapeError
from bertscape.geometry import linesearch as ls

REL_TOL = 2.0 ** -ls.REFINE_STEPS
EPS = 0.1


def quadratic(c_plus, c_minus=None, n=None, base=None, wiggle=0.0, seed=0):
    """``t -> per-sentence losses base_i + c_i·t²`` (c on the side of t's sign).

    ``c_plus`` / ``c_minus``: arrays of per-sentence curvatures (or scalars for identical
    sentences); ``wiggle``: per-sentence t-dependent noise whose mean over sentences is exactly 0,
    so the mean curve is exactly mean(base) + mean(c)·t² and its ε-crossings are ±√(ε / mean(c)).
    """
    cp = np.atleast_1d(np.asarray(c_plus, float))
    cm = cp if c_minus is None else np.atleast_1d(np.asarray(c_minus, float))
    n = n or len(cp)
    cp, cm = np.broadcast_to(cp, (n,)), np.broadcast_to(cm, (n,))
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.2, 0.8, n) if base is None else np.broadcast_to(base, (n,))
    z = rng.normal(size=n)
    z -= z.mean()
    calls = []

    def f(t):
        calls.append(t)
        c = cp if t >= 0 else cm
        return b + c * t * t + wiggle * z * np.sin(37.0 * t)

    f.calls = calls
    return f


def truth(c):
    return math.sqrt(EPS / float(np.mean(c)))


# ----------------------------------------------------------------------------- crossing_from_points

def test_crossing_from_points_interpolates_exactly():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    f = np.array([0.0, 0.5, 1.5, 3.0])
    assert ls.crossing_from_points(t, f, 1.0) == (pytest.approx(1.5), False)
    assert ls.crossing_from_points(t, f, 0.25) == (pytest.approx(0.5), False)
    assert ls.crossing_from_points(t, f, 2.7)[0] == pytest.approx(2.8)
    # "above" is strict: a point exactly at the level is still inside, so the bracket is (2, 3]
    # and the interpolated crossing is where the segment leaves the level, t = 2
    assert ls.crossing_from_points(t, f, 1.5) == (pytest.approx(2.0), False)
    assert ls.crossing_from_points(t, np.array([0.0, 1.0, 1.0, 3.0]), 1.0) == (pytest.approx(2.0), False)
    # only the first rise above the level counts, even when the curve comes back down
    assert ls.crossing_from_points(t, np.array([0.0, 2.0, 0.0, 2.0]), 1.0)[0] == pytest.approx(0.5)
    # t[0] itself is never the crossing
    assert ls.crossing_from_points(t, np.array([5.0, 0.0, 3.0, 0.0]), 1.0)[0] == pytest.approx(1 + 1 / 3)


def test_crossing_from_points_censored_when_never_above():
    t = np.array([0.0, 0.5, 1.0, 4.0])
    assert ls.crossing_from_points(t, np.array([0.0, 0.2, 0.9, 1.0]), 1.0) == (4.0, True)
    assert ls.crossing_from_points(t, np.zeros(4), 0.1) == (4.0, True)


# ----------------------------------------------------------------------------- basin_along: accuracy

def test_symmetric_quadratic_basin_with_sentences_that_differ():
    c = np.linspace(0.5, 2.5, 64)  # mean 1.5
    f = quadratic(c, wiggle=0.05)
    r = ls.basin_along(f, EPS, first=0.01, cap=100.0)
    c0 = truth(c)
    assert r["censored"] == 0
    assert abs(r["hi"] - c0) < REL_TOL * c0 and abs(-r["lo"] - c0) < REL_TOL * c0
    assert r["width"] == pytest.approx(r["hi"] - r["lo"])
    assert r["f0"] == pytest.approx(float(np.mean(f(0.0)))) and r["level"] == pytest.approx(r["f0"] + EPS)
    # each bisection added one point per side beyond the expansion
    n_expand = math.ceil(math.log2(c0 / 0.01)) + 1  # steps 0.01·2^k up to the first one past c0
    # (+ up to two guard points a side past the bracket, for the bootstrap)
    top = 0.01 * 2.0 ** (n_expand - 1)
    guards = [t for t in r["t_plus"] if t > top * (1 + 1e-12)] + [t for t in r["t_minus"] if t < -top * (1 + 1e-12)]
    assert len(guards) <= 4
    assert r["n_evals"] == 1 + 2 * (n_expand + ls.REFINE_STEPS) + len(guards)
    assert r["t_plus"][0] == 0.0 and r["t_minus"][0] == 0.0 and r["loss_plus"][0] == pytest.approx(r["f0"])


def test_convex_curve_interpolation_never_overshoots_the_crossing():
    # a chord of a convex curve lies above it, so the interpolated crossing is at most the true one
    c = np.linspace(0.5, 2.5, 64)
    r = ls.basin_along(quadratic(c), EPS, first=0.013, cap=100.0)
    assert truth(c) * (1 - REL_TOL) < r["hi"] <= truth(c) + 1e-12
    assert -truth(c) - 1e-12 <= r["lo"] < -truth(c) * (1 - REL_TOL)


def test_asymmetric_basin():
    cp, cm = np.linspace(3.0, 5.0, 40), np.linspace(0.05, 0.15, 40)  # steep on +, shallow on −
    r = ls.basin_along(quadratic(cp, cm, wiggle=0.02), EPS, first=0.02, cap=1000.0)
    hi, lo = truth(cp), -truth(cm)  # ≈ 0.158 and ≈ −1.0
    assert abs(r["hi"] - hi) < REL_TOL * abs(hi)
    assert abs(r["lo"] - lo) < REL_TOL * abs(lo)
    assert r["width"] == pytest.approx(r["hi"] - r["lo"]) and r["width"] > 6 * r["hi"]


def test_tiny_first_step_is_expanded_by_doubling():
    c = np.full(8, 0.4)  # crossing at 0.5
    f = quadratic(c)
    first = 1e-5
    r = ls.basin_along(f, EPS, first=first, cap=100.0)
    assert abs(r["hi"] - 0.5) < REL_TOL * 0.5 and abs(r["lo"] + 0.5) < REL_TOL * 0.5
    k = math.ceil(math.log2(0.5 / first))  # 2^k·first is the first step past the crossing
    expansion = [first * 2.0 ** j for j in range(k + 1)]
    assert set(expansion) <= set(r["t_plus"])
    expanded = [t for t in r["t_plus"] if t <= first * 2.0 ** k * (1 + 1e-12)]
    assert max(expanded) == pytest.approx(first * 2.0 ** k) and max(expanded) > 0.5
    # nothing beyond the bracket: every sentence rises alike (no spread), so the first point past
    # the crossing is above the level for every resample and needs no guard point
    assert sorted(set(r["t_plus"]) - set(expanded)) == []
    assert first * 2.0 ** (k - 1) < 0.5


def test_first_step_beyond_the_crossing_still_brackets_it():
    c = np.full(8, 10.0)  # crossing at 0.1
    first = 5.0  # 50 times too far
    r = ls.basin_along(quadratic(c), EPS, first=first, cap=100.0)
    assert r["censored"] == 0
    # no expansion: the first step was already outside (and far above the level: no guard point)
    assert sorted(t for t in r["t_plus"] if t > first) == []
    for found in (r["hi"], -r["lo"]):
        assert 0 < found <= 0.1 + 1e-12
        assert abs(found - 0.1) <= first * REL_TOL
    # the refined bracket around the crossing: the last point inside and the first outside
    t = np.array(r["t_plus"])
    inside, outside = t[t <= 0.1].max(), t[t > 0.1].min()
    assert outside - inside == pytest.approx(first * REL_TOL)


def test_guard_points_only_where_a_resample_may_stay_below_the_level():
    # half the sentences rise steeply, half stay flat: the mean rise at the first point past the
    # crossing is within a few standard errors of ε, so the bootstrap needs both guard points
    n = 16
    c = np.where(np.arange(n) % 2 == 0, 0.8, 0.0)  # mean 0.4: crossing at 0.5
    first = 0.3
    noisy = ls.search_side(quadratic(c, base=np.full(n, 0.5)), EPS, first, 100.0)
    top = 0.6  # 0.3 inside, 0.6 the first point past 0.5
    assert max(t for t in noisy.t if t <= top * (1 + 1e-12)) == pytest.approx(top)
    assert sorted(t for t in noisy.t if t > top * (1 + 1e-12)) == pytest.approx(
        [ls.GUARD_FACTOR * top, 2 * ls.GUARD_FACTOR * top])
    # the same mean curve with every sentence alike: no guard point
    calm = ls.search_side(quadratic(np.full(n, 0.4), base=np.full(n, 0.5)), EPS, first, 100.0)
    assert max(calm.t) == pytest.approx(top)
    assert calm.crossing == pytest.approx(noisy.crossing)
    # a bootstrap still finds a crossing on every resample of the noisy side (none censored)
    r = ls.basin_along(quadratic(c, base=np.full(n, 0.5)), EPS, first, 100.0)
    assert r["censored"] == 0 and np.isfinite(r["width_se"]) and r["width_se"] > 0


def test_a_shared_base_saves_the_evaluation_at_t0():
    c = np.linspace(0.5, 2.5, 16)
    f = quadratic(c)
    own = ls.basin_along(f, EPS, first=0.01, cap=100.0)
    calls = len(f.calls)
    shared = ls.basin_along(f, EPS, first=0.01, cap=100.0, base=f(0.0))
    assert len(f.calls) - calls == calls  # one call for the base given, one fewer inside
    assert shared["width"] == own["width"] and shared["width_se"] == own["width_se"]


def test_refine_argument_tightens_the_bracket():
    c = np.linspace(0.5, 2.5, 16)
    coarse = ls.basin_along(quadratic(c), EPS, first=0.01, cap=100.0, refine=1)
    fine = ls.basin_along(quadratic(c), EPS, first=0.01, cap=100.0, refine=12)
    assert abs(fine["hi"] - truth(c)) < 2.0 ** -12 * truth(c)
    assert abs(coarse["hi"] - truth(c)) < 0.5 * truth(c)
    assert fine["n_evals"] - coarse["n_evals"] == 2 * 11


def test_flat_direction_is_censored_at_the_cap():
    f = quadratic(np.zeros(10))  # loss constant along the line
    first, cap = 0.25, 0.25 * 2 ** 10
    r = ls.basin_along(f, EPS, first=first, cap=cap)
    assert r["censored"] == 1
    assert (r["lo"], r["hi"]) == (-cap, cap) and r["width"] == 2 * cap
    assert r["width_se"] == 0.0
    assert r["n_evals"] == 1 + 2 * 11  # t = 0, then 0.25·2^0 … 0.25·2^10 on each side
    # one side flat, the other a basin: censored too (the width is a lower bound)
    half = ls.basin_along(quadratic(np.zeros(10), np.full(10, 0.4)), EPS, first=first, cap=cap)
    assert half["censored"] == 1 and half["hi"] == cap and abs(half["lo"] + 0.5) < REL_TOL * 0.5


def test_cap_between_doublings_censors_at_the_last_point_inside():
    first, cap = 0.25, 0.25 * 2 ** 10 * 1.5
    side = ls.search_side(lambda t: np.zeros(4), EPS, first, cap)
    assert side.censored and side.crossing == 0.25 * 2 ** 10 and max(side.t) <= cap


def test_search_side_reuses_a_given_base_and_returns_sorted_points():
    f = quadratic(np.full(5, 0.4))
    base = f(0.0)
    f.calls.clear()
    side = ls.search_side(f, EPS, 0.1, 10.0, base=base)
    assert 0.0 not in f.calls  # not evaluated again
    assert side.t == sorted(side.t) and len(side.t) == len(side.losses) == len(side.means())
    assert side.means()[0] == pytest.approx(base.mean())
    assert abs(side.crossing - 0.5) < REL_TOL * 0.5 and not side.censored


# ----------------------------------------------------------------------------- bootstrap

def test_width_se_zero_when_every_sentence_has_the_same_curve():
    r = ls.basin_along(quadratic(np.full(50, 1.3), base=0.4), EPS, first=0.01, cap=100.0)
    assert r["width_se"] == pytest.approx(0.0, abs=1e-12)
    assert abs(r["hi"] - truth([1.3])) < REL_TOL * truth([1.3])


def test_width_se_shrinks_like_one_over_root_n():
    def se(n):
        c = np.random.default_rng(1).uniform(0.5, 1.5, n)
        return ls.basin_along(quadratic(c, seed=2), EPS, first=0.01, cap=100.0)["width_se"]

    small, large = se(100), se(1600)
    assert small > 0 and large > 0
    assert 2.5 < small / large < 6.0  # √16 = 4
    # the order of magnitude matches the delta method: width = 2√(ε/c̄), sd(c) = 1/√12
    expected = 2 * 0.5 * math.sqrt(EPS) * 1.0 ** -1.5 * (1 / math.sqrt(12)) / math.sqrt(100)
    assert 0.5 * expected < small < 1.5 * expected


def test_bootstrap_is_seeded_and_resamples_both_sides_together():
    c = np.random.default_rng(3).uniform(0.5, 1.5, 200)
    a = ls.basin_along(quadratic(c), EPS, first=0.01, cap=100.0, seed=0)
    b = ls.basin_along(quadratic(c), EPS, first=0.01, cap=100.0, seed=0)
    other = ls.basin_along(quadratic(c), EPS, first=0.01, cap=100.0, seed=1)
    assert a["width_se"] == b["width_se"] and a["width_se"] != other["width_se"]
    plus = ls.search_side(quadratic(c), EPS, 0.01, 100.0)
    minus = ls.search_side(lambda t: quadratic(c)(-t), EPS, 0.01, 100.0)
    boot = ls.bootstrap_width(minus, plus, EPS, n_boot=50, seed=0)
    assert boot.shape == (50,)
    # symmetric curves: the same resample on both sides makes every width twice one side's crossing
    idx = np.random.default_rng(0).integers(0, 200, 200)  # the first resample of seed 0
    means = np.array([x[idx].mean() for x in plus.losses])
    one, _ = ls.crossing_from_points(np.array(plus.t), means, means[0] + EPS)
    assert boot[0] == pytest.approx(2 * one)
    assert np.std(boot) > 0


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,name", [
    ({"eps": 0.0}, "eps"), ({"eps": -0.1}, "eps"), ({"eps": float("nan")}, "eps"),
    ({"first": 0.0}, "first"), ({"first": -1.0}, "first"),
    ({"first": 2.0, "cap": 1.0}, "cap"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    args = {"eps": EPS, "first": 0.1, "cap": 10.0, **kwargs}
    f = quadratic(np.ones(3))
    for call in (lambda: ls.basin_along(f, **args), lambda: ls.search_side(f, **args)):
        with pytest.raises(BertscapeError, match=name) as err:
            call()
        assert "is not accepted" in str(err.value)
    assert issubclass(BertscapeError, ValueError)
