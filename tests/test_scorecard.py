"""Claim functions: verdicts follow from the numbers, both ways."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bertscape import scorecard as sc


def steps(losses):
    return pd.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": losses})


def test_training_loss_claim_both_ways():
    low, high = steps(np.linspace(0.7, 0.2, 100)), steps(np.linspace(0.7, 0.5, 100))
    rows = sc.claim_training_loss(low, high)
    assert [r["holds"] for r in rows] == [True, True, True]
    assert rows[2]["pretrained"] == pytest.approx(np.linspace(0.7, 0.2, 100)[95:].mean())
    assert not all(r["holds"] for r in sc.claim_training_loss(high, low))


def test_count_rises_and_monotone_claim():
    a = np.linspace(-0.5, 1.5, 41)
    smooth = (a - 1.0) ** 2
    bumpy = smooth + 0.3 * np.sin(12 * a)
    assert sc.count_rises(a, smooth) == 0
    assert sc.count_rises(a, bumpy) >= 1
    assert sc.claim_monotone(a, smooth, a, bumpy)[0]["holds"]
    assert not sc.claim_monotone(a, bumpy, a, smooth)[0]["holds"]


def test_path_ratio_and_basin():
    assert sc.path_ratio(np.array([[0, 0], [0.5, 0], [1, 0]])) == pytest.approx(1.0)
    assert sc.path_ratio(np.array([[0, 0], [0.5, 0.5], [1, 0]])) == pytest.approx(np.sqrt(2))
    fast = steps(np.r_[np.linspace(1, 0.1, 10), np.full(90, 0.1)])
    slow = steps(np.linspace(1, 0.1, 100))
    assert sc.steps_to_basin(fast) < sc.steps_to_basin(slow)


def test_overfitting_claim():
    flat = pd.DataFrame({"dev_accuracy": [0.5, 0.80, 0.81, 0.80, 0.805]})
    drop = pd.DataFrame({"dev_accuracy": [0.5, 0.80, 0.70, 0.65, 0.60]})
    row = sc.claim_overfitting(flat, drop, "accuracy")[0]
    assert row["holds"] and row["pretrained"] == pytest.approx(0.005) and row["scratch"] == pytest.approx(0.20)
    assert not sc.claim_overfitting(drop, flat, "accuracy")[0]["holds"]


def test_surface_agreement():
    x, y = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), indexing="ij")
    bowl = x ** 2 + y ** 2
    rho, dist = sc.surface_agreement(bowl, 2 * bowl + 1)
    assert rho == pytest.approx(1.0) and dist == 0
    rho2, dist2 = sc.surface_agreement(bowl, (x - 1) ** 2 + y ** 2)
    assert rho2 < 0.9 and dist2 == pytest.approx(4.0)


def test_depth_trend_and_layer_claims():
    assert sc.depth_trend([0.1, 0.2, 0.3, 0.4]) == pytest.approx(1.0)
    assert sc.depth_trend([0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)
    rows = sc.claim_layers_invariant([1, 2, 3, 4], [1, 3, 2, 4], [4, 3, 2, 1], [1, 1, 1, 1])
    assert rows[0]["holds"] and rows[1]["holds"] == (sc.depth_trend([1, 3, 2, 4]) >= sc.DEPTH_TREND)


def test_restore_claim_thresholds():
    assert all(r["holds"] for r in sc.claim_restore(0.005, 0.2))
    assert [r["holds"] for r in sc.claim_restore(0.03, 0.01)] == [False, False]


def test_table_and_summary_verdicts():
    rows = sc.claim_restore(0.005, 0.2) + sc.claim_curvature(1.0, 2.0, 10.0, 5.0)
    df = pd.concat([sc.table(rows, task="movies", seed=0), sc.table(sc.claim_restore(0.02, 0.2), task="movies", seed=1)])
    assert set(df["verdict"]) == {"holds", "fails"}
    summary = sc.summarise(df)
    bottom = summary[summary["quantity"].str.contains("bottom")].iloc[0]
    assert bottom["verdict"] == "mixed" and bottom["seeds"] == 2 and bottom["held"] == 1
    trace = summary[summary["quantity"].str.contains("trace")].iloc[0]
    assert trace["verdict"] == "fails"


def test_trace_row_needs_a_difference_beyond_two_standard_errors():
    def trace_row(pt, ri, se_pt, se_ri):
        return sc.claim_curvature(1.0, 2.0, pt, ri, se_pt, se_ri)[1]

    assert trace_row(-198.0, 1509.0, 94.0, 474.0)["holds"]  # 1707 > 2 * 483
    assert not trace_row(500.0, 1400.0, 94.0, 474.0)["holds"]  # 900 < 966: within the noise
    assert not trace_row(1400.0, 500.0, 10.0, 10.0)["holds"]  # clearly the other way
    assert "s.e." in trace_row(0.0, 1.0, 0.1, 0.1)["criterion"]
