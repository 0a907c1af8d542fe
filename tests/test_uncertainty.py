"""The scorecard's statistics against known answers: paired standard errors, the t rule, the exact
permutation p-value of a depth trend, the split-half best − last, percentile and BCa intervals."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from bertscape.evidence import uncertainty as U


def acc(preds, labels):
    return (np.asarray(preds) == np.asarray(labels)).mean(axis=-1)


def test_paired_se_is_smaller_on_correlated_sides_and_equal_on_independent_ones():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1.0, 4000)
    a, b = shared + rng.normal(0, 0.1, 4000), shared + rng.normal(0, 0.1, 4000)
    unpaired = math.hypot(U.se_of(a), U.se_of(b))
    assert U.paired_se(a, b) == pytest.approx(math.hypot(0.1, 0.1), rel=0.05)
    assert U.paired_se(a, b) < unpaired / 5
    c, d = rng.normal(0, 1.0, 4000), rng.normal(0, 1.0, 4000)
    assert U.paired_se(c, d) == pytest.approx(math.hypot(U.se_of(c), U.se_of(d)), rel=0.05)
    with pytest.raises(ValueError, match="same shape"):
        U.paired_se(a, b[:10])


def test_paired_bootstrap_of_a_difference_on_shared_sentences():
    """PT and RI losses on the same 300 sentences: the per-sentence difficulty they share cancels in the
    paired bootstrap of the mean difference (same resamples for both)."""
    rng = np.random.default_rng(1)
    difficulty = rng.exponential(1.0, 300)
    pt, ri = difficulty + rng.normal(0, 0.05, 300), difficulty + 0.02 + rng.normal(0, 0.05, 300)
    reps_pt = U.replicates(lambda i: pt[i].mean(), 300)
    reps_ri = U.replicates(lambda i: ri[i].mean(), 300)
    paired = U.paired_se(reps_ri, reps_pt)
    assert paired == pytest.approx(np.std(ri - pt, ddof=1) / np.sqrt(300), rel=0.2)
    assert paired < 0.2 * math.hypot(U.se_of(reps_pt), U.se_of(reps_ri))


def test_t_critical_values_and_the_seed_interval():
    assert U.t_critical(2) == pytest.approx(12.706, abs=1e-3)
    assert U.t_critical(3) == pytest.approx(4.303, abs=1e-3)
    assert U.t_critical(5) == pytest.approx(2.776, abs=1e-3)
    assert math.isnan(U.t_critical(1))
    mean, se, crit, n = U.seed_interval([1.0, 2.0, 3.0])
    assert (mean, se, n) == pytest.approx((2.0, 1.0 / np.sqrt(3), 3)) and crit == pytest.approx(4.303, abs=1e-3)
    mean, se, crit, n = U.seed_interval([0.7])
    assert mean == 0.7 and math.isnan(se) and n == 1


def test_the_t_rule_covers_at_its_level_where_z_two_does_not():
    """With two seeds, mean ± 2 s.e. misses a zero mean ~30 % of the time; mean ± t₀.₉₇₅(1) s.e. 5 %."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (20000, 2))
    m, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(2)
    assert np.mean(np.abs(m) > 2 * se) == pytest.approx(0.295, abs=0.02)
    assert np.mean(np.abs(m) > U.t_critical(2) * se) == pytest.approx(0.05, abs=0.01)


def test_the_permutation_p_value_of_a_depth_trend_is_exact():
    assert U.depth_permutation_p([0.1, 0.2, 0.3, 0.5, 0.8, 1.3]) == pytest.approx(1 / 720)
    assert U.depth_permutation_p([1.3, 0.8, 0.5, 0.3, 0.2, 0.1]) == pytest.approx(1.0)
    v = np.random.default_rng(3).random(5)
    obs = stats.spearmanr(np.arange(5), v).statistic
    brute = np.mean([stats.spearmanr(np.arange(5), v[list(p)]).statistic >= obs - 1e-12
                     for p in itertools.permutations(range(5))])
    assert U.depth_permutation_p(v) == pytest.approx(brute)
    nine = np.arange(9, dtype=float)  # beyond the exact limit: random orderings, ≈ 1/9!
    assert U.depth_permutation_p(nine, n_perm=2000) < 0.002
    assert math.isnan(U.depth_permutation_p([1.0, 2.0]))


def test_split_half_best_minus_last_is_not_biased_by_the_maximum():
    """A run whose dev accuracy never changes (each evaluation an independent 80 % draw): the best of 12
    evaluations read on the same sentences sits above the last; chosen on the other half it does not."""
    rng = np.random.default_rng(4)
    n, e = 400, 12
    y = rng.integers(0, 2, n)
    naive, split = [], []
    for r in range(40):
        preds = np.where(rng.random((e, n)) < 0.8, y, 1 - y)
        m = acc(preds, y)
        naive.append(m.max() - m[-1])
        split.append(U.split_half_drop(preds, y, acc, U.split_halves(n, seed=r)))
    assert np.mean(naive) > 0.03
    assert abs(np.mean(split)) < 0.01
    # a real drop is seen: the last evaluation 10 points below the others
    preds = np.where(rng.random((e, n)) < np.r_[np.full(e - 1, 0.9), 0.8][:, None], y, 1 - y)
    assert U.split_half_drop(preds, y, acc, U.split_halves(n)) == pytest.approx(0.1, abs=0.04)
    reps = U.split_half_replicates(preds, y, acc, U.split_halves(n), n_boot=100)
    lo, hi = U.percentile_interval(reps)
    assert lo < 0.1 < hi and hi - lo < 0.15


def test_percentile_and_bca_intervals():
    lo, hi = U.percentile_interval(np.arange(1001, dtype=float))
    assert (lo, hi) == pytest.approx((25.0, 975.0))
    assert all(math.isnan(x) for x in U.percentile_interval([1.0]))
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 1.0, 400)
    lo, hi = U.bca_interval(x, np.mean)
    se = x.std(ddof=1) / 20
    assert lo < 3.0 < hi or abs(x.mean() - 3.0) > 2 * se
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)
    # a statistic of a curve over sentences: (points, sentences), reduced along the sentences
    curves = rng.normal(0, 1, (5, 300)) + np.array([0, 1, 2, 1, 0])[:, None]
    lo, hi = U.bca_interval(curves, lambda s, axis=-1: np.max(np.mean(s, axis=axis), axis=0))
    assert lo < 2.0 < hi + 0.2
    assert U.bca_interval(np.ones(50), np.mean) == (1.0, 1.0)


def test_windows_of_a_training_series():
    assert U.window(1000, 0.1) == slice(50, 100) and U.window(1000, 1.0) == slice(950, 1000)
    assert U.window(10, 0.1) == slice(0, 1) or U.window(10, 0.1).stop - U.window(10, 0.1).start >= 1
    a, b = np.linspace(1, 0, 100), np.linspace(1, 0, 100) + 0.1
    mean, se, k = U.paired_window(a, b, 1.0)
    assert mean == pytest.approx(0.1) and se == pytest.approx(0.0, abs=1e-12) and k == 5
