"""The scorecard's three-state rule and every claim function, on synthetic inputs built so that
each verdict is known in advance (no model, no cache; the bootstraps are seeded)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bertscape import scorecard as sc
from bertscape import uncertainty as U

HOLDS, FAILS, INC = sc.HOLDS, sc.FAILS, sc.INCONCLUSIVE


def acc(preds, labels):
    """Accuracy over the last axis (the shape contract of :data:`bertscape.uncertainty.MetricFn`)."""
    return (np.asarray(preds) == np.asarray(labels)).mean(axis=-1)


def steps(losses):
    return pd.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": np.asarray(losses, float)})


def labels_of(n, seed=0):
    return np.random.default_rng(seed).integers(0, 2, n)


def preds_correct_on(labels, correct):
    """Predictions equal to the labels exactly where ``correct`` (bool mask or index array) says."""
    mask = np.zeros(len(labels), bool)
    mask[correct] = True
    return np.where(mask, labels, 1 - labels)


def first_k(n, k):
    return np.arange(n) < k


def scored(rows):
    return [r for r in rows if r["scored"]]


def verdicts(rows):
    return [r["verdict"] for r in scored(rows)]


# ----------------------------------------------------------------------------- the rule

def test_decide_at_and_around_z_times_uncertainty():
    assert sc.Z == 2.0
    assert sc.decide(2.0, 1.0)[0] == INC  # exactly at +Z·u: not beyond it
    assert sc.decide(-2.0, 1.0)[0] == INC  # exactly at −Z·u
    assert sc.decide(2.0 + 1e-9, 1.0)[0] == HOLDS
    assert sc.decide(-2.0 - 1e-9, 1.0)[0] == FAILS
    assert sc.decide(1.999, 1.0)[0] == INC and sc.decide(-1.999, 1.0)[0] == INC
    assert sc.decide(0.0, 1.0)[0] == INC
    assert sc.decide(0.3, 0.1)[0] == HOLDS and sc.decide(-0.3, 0.1)[0] == FAILS
    assert sc.decide(0.19, 0.1)[0] == INC
    # no noise at all: any margin on either side decides, zero does not
    assert sc.decide(1e-6, 0.0)[0] == HOLDS and sc.decide(-1e-6, 0.0)[0] == FAILS
    assert sc.decide(0.0, 0.0)[0] == INC
    v, reason = sc.decide(3.0, 1.0)
    assert v == HOLDS and "3" in reason and "2 ×" in reason


def test_decide_blocking_reasons_and_missing_uncertainty():
    # censored / untrained force inconclusive whatever the margin, with the given reason
    assert sc.decide(100.0, 0.1, censored="basin wider than cap") == (INC, "basin wider than cap")
    assert sc.decide(-100.0, 0.1, untrained="RI did not train") == (INC, "RI did not train")
    assert sc.decide(100.0, 0.1, censored="c", untrained="u") == (INC, "u")  # untrained named first
    assert sc.decide(5.0, float("nan"), no_uncertainty="one seed only") == (INC, "one seed only")
    assert sc.decide(5.0, None) == (INC, "no uncertainty available")
    assert sc.decide(-5.0, float("inf"))[0] == INC
    assert sc.decide(float("nan"), 0.1) == (INC, "not computed")
    assert sc.decide(None, 0.1) == (INC, "not computed")


def test_row_fields_reported_and_blocked():
    r = sc.row(1, "q", 0.5, 0.7, 0.2, 0.05, "PT < RI")
    assert (r["verdict"], r["criterion"], r["scored"], r["blocked"]) == (HOLDS, "PT < RI", True, "")
    assert r["statement"] == sc.CLAIMS[1].statement
    rep = sc.row(1, "q", None, 0.7, -0.2, 0.05, "PT < RI", scored=False)
    assert rep["criterion"] == "PT < RI (reported)" and rep["scored"] is False and rep["verdict"] == FAILS
    assert math.isnan(rep["pretrained"])
    blk = sc.row("H", "q", 1.0, 2.0, 1.0, 0.1, "PT < RI", censored="edge")
    assert (blk["verdict"], blk["reason"], blk["blocked"]) == (INC, "edge", "edge")
    given = sc.row(2, "q", 0, 0, -1.0, 0.1, "c", verdict=(HOLDS, "by hand"))
    assert (given["verdict"], given["reason"]) == (HOLDS, "by hand")


def test_trained_reason():
    falling = steps(np.linspace(2.0, 0.3, 400))
    flat = steps(np.full(400, 0.69) + 0.01 * (-1.0) ** np.arange(400))
    assert sc.trained_reason({"PT": falling, "RI": falling}) is None
    reason = sc.trained_reason({"PT": falling, "RI": flat})
    assert reason is not None and reason.startswith("RI did not train")
    assert sc.trained_reason({"PT": flat})
    # the boundary: final / initial = 0.85 trains, 0.95 does not (TRAINED_FRACTION = 0.9)
    assert sc.trained_reason({"PT": steps(np.r_[np.ones(20), np.full(380, 0.85)])}) is None
    assert sc.trained_reason({"PT": steps(np.r_[np.ones(20), np.full(380, 0.95)])}) is not None
    # a series starting at zero cannot show training (and must not crash)
    assert "did not train" in sc.trained_reason({"PT": steps(np.zeros(100))})


# ----------------------------------------------------------------------------- the claims' cases
# Each builder returns the claim's rows for a case whose verdict is fixed by construction.

def case_1(kind):
    n = 1000
    base = np.linspace(2.0, 0.5, n) + 0.05 * (-1.0) ** np.arange(n)
    shift = {"holds": 0.2, "fails": -0.2, "inconclusive": 0.005}[kind]
    return sc.claim_training_loss(steps(base), steps(base + shift))


ALPHAS = np.round(np.linspace(-0.5, 1.5, 21), 10)  # step 0.1; 11 points in [0, 1]
N2 = 200


def case_2(kind):
    c = np.linspace(0.5, 1.5, N2)
    bowl = c[None, :] * (ALPHAS[:, None] - 1.0) ** 2  # decreasing on [0, 1] for every sentence
    if kind == "holds":
        return [sc.monotone_row(ALPHAS, bowl + 0.1, ALPHAS, bowl)]
    if kind == "fails":  # a jump of 0.2·c between α = 0.4 and 0.5: a rise of ~0.16 ≫ 1 % of the range
        bumpy = bowl + 0.2 * c[None, :] * (ALPHAS[:, None] >= 0.45)
        return [sc.monotone_row(ALPHAS, bumpy, ALPHAS, bowl)]
    if kind == "untrained":
        return [sc.monotone_row(ALPHAS, bowl, untrained="PT did not train")]
    # inconclusive: 1 − α on [0, 1] but flat between α = 0.5 and 0.6, with ±0.2 per-sentence
    # noise of mean zero at α = 0.6: that step's rise is 0 (margin = tol = 0.01) with s.e. ≈ 0.014
    inside = (ALPHAS >= 0) & (ALPHAS <= 1)
    f = np.where(inside, 1.0 - ALPHAS, 5.0)  # outside [0, 1] is ignored (even a huge rise)
    f[np.isclose(ALPHAS, 0.6)] = 0.5
    s = np.repeat(f[:, None], N2, axis=1)
    s[np.isclose(ALPHAS, 0.6)] += 0.2 * (-1.0) ** np.arange(N2)
    return [sc.monotone_row(ALPHAS, s)]


def width(w, se=0.1, censored=0):
    return {"width": w, "width_se": se, "censored": censored}


def area(a, se=0.1, edge=0):
    return {"area_rel": a, "area_rel_se": se, "area": 10 * a, "touches_edge": edge}


def case_3(kind):
    pt_w, ri_w = {"holds": (2.0, 1.0), "fails": (1.0, 2.0), "inconclusive": (1.1, 1.0)}.get(kind, (2.0, 1.0))
    pt = {k: width(pt_w, censored=int(kind == "censored" and k == "d1_fn")) for k in ("d1_fn", "d2_fn", "d1", "d2")}
    ri = {k: width(ri_w) for k in ("d1_fn", "d2_fn", "d1", "d2")}
    pa, ra = area(pt_w, edge=int(kind == "edge")), area(ri_w)
    return sc.claim_wider(pt, ri, pa, ra, untrained="RI did not train" if kind == "untrained" else None)


def case_4(kind):
    """One seed: always inconclusive (no uncertainty); see the summarise tests for seeds."""
    pt_r, ri_r = {"holds": (1.2, 2.0), "fails": (2.0, 1.2), "inconclusive": (1.5, 1.5)}.get(kind, (1.2, 2.0))
    return sc.claim_straighter(pt_r, ri_r, 0.3, 0.6, untrained="RI did not train" if kind == "untrained" else None)


N5 = 2000


def case_5(kind):
    """Long runs: 4 dev evaluations of nested correct sets over 2000 sentences."""
    y = labels_of(N5, 5)
    def run(counts):
        return np.stack([preds_correct_on(y, first_k(N5, k)) for k in counts])
    last = {"holds": 1790, "fails": 1600, "inconclusive": 1760, "untrained": 1790}[kind]
    pt = run([1000, 1800, 1795, last])  # best 0.90; drop 0.005 / 0.10 / exactly 0.02
    ri = run([1000, 1800, 1700, 1650])
    pt_loss = np.linspace(1.0, 0.2 if kind == "untrained" else 0.01, 500)
    return sc.claim_overfitting(pt, ri, y, acc, steps(pt_loss), steps(np.linspace(1.0, 0.3, 500)), "accuracy")


N6 = 400


def case_6(kind):
    """PT right on 90 % of the dev sentences and RI on 60 % (both 95 % on train): PT generalises."""
    y_tr, y_dev = labels_of(N6, 61), labels_of(N6, 62)
    train = preds_correct_on(y_tr, first_k(N6, 380))
    if kind == "inconclusive":  # 316 shared, PT 4 more, RI 3 others: 320 vs 319 of 400
        pt_dev = preds_correct_on(y_dev, np.r_[np.arange(316), 316 + np.arange(4)])
        ri_dev = preds_correct_on(y_dev, np.r_[np.arange(316), 320 + np.arange(3)])
    else:
        good, bad = preds_correct_on(y_dev, first_k(N6, 360)), preds_correct_on(y_dev, first_k(N6, 240))
        pt_dev, ri_dev = (good, bad) if kind in ("holds", "untrained") else (bad, good)
    def d(dev):
        return {"train_pred": train, "train_labels": y_tr, "dev_pred": dev, "dev_labels": y_dev}
    return sc.claim_generalise(d(pt_dev), d(ri_dev), acc, "accuracy",
                               untrained="PT did not train" if kind == "untrained" else None)


GRID_A, GRID_B = np.linspace(0.0, 2.0, 11), np.linspace(-1.0, 1.0, 5)


def surface(agree: bool):
    """Train loss a bowl around θ1 (α = 1); dev error rising with the bowl (agree) or falling."""
    g = (GRID_A[:, None] - 1.0) ** 2 + GRID_B[None, :] ** 2
    c = np.linspace(0.5, 1.5, 30)
    n_dev = 200
    y = labels_of(n_dev, 7)
    u = np.linspace(0.0, 1.3, n_dev)  # sentence j is right where u_j > g (agree) / u_j < g
    right = u[None, None, :] > g[..., None] if agree else u[None, None, :] < g[..., None]
    return {"train_samples": c[None, None, :] * g[..., None],
            "dev_preds": np.where(right, y, 1 - y), "dev_labels": y,
            "dev_samples": np.repeat(g[..., None], n_dev, axis=-1) * (1.0 if agree else -1.0),
            "mask": sc.neighbourhood_mask(GRID_A, GRID_B)}


def case_7(kind):
    pt, ri = {"holds": (True, False), "fails": (False, True)}.get(kind, (True, True))
    return sc.claim_surfaces_agree(surface(pt), surface(ri), acc,
                                   untrained="RI did not train" if kind == "untrained" else None)


def case_8(kind):
    up, down = [0.1, 0.2, 0.3, 0.5, 0.8, 1.3], [1.3, 0.8, 0.5, 0.3, 0.2, 0.1]
    half = [3.0, 2.0, 1.0, 5.0, 4.0]  # Spearman ρ with depth exactly 0.5 = DEPTH_TREND
    pt = {"holds": up, "fails": down, "inconclusive": half, "untrained": up}[kind]
    return sc.claim_layers_invariant(pt, pt, down, down, untrained="PT did not train" if kind == "untrained" else None)


N9 = 1000


def case_9(kind):
    """Dev predictions of 1000 sentences: 900 right at θ1; restores lose nested subsets."""
    y = labels_of(N9, 9)
    bottom_k, top_k = {"holds": (898, 700), "fails": (800, 890), "inconclusive": (890, 850),
                       "untrained": (898, 700)}[kind]
    d = {"labels": y, "full": preds_correct_on(y, first_k(N9, 900)),
         "bottom": preds_correct_on(y, first_k(N9, bottom_k)), "top": preds_correct_on(y, first_k(N9, top_k))}
    ri = {"labels": y, "full": d["full"], "bottom": d["top"], "top": d["top"]}
    return sc.claim_restore(d, ri, acc, untrained="PT did not train" if kind == "untrained" else None)


def case_H(kind):
    if kind == "holds":
        pt, ri = (10.0, 1.0, 50.0, 5.0), (100.0, 2.0, 500.0, 10.0)
    elif kind == "fails":
        pt, ri = (100.0, 2.0, 500.0, 10.0), (10.0, 1.0, 50.0, 5.0)
    else:  # differences 3 and 20 against Z·s.e. of 2·5 and 2·50
        pt, ri = (10.0, 5.0, 480.0, 50.0), (13.0, 0.0, 500.0, 0.0)
    keys = ("top_eigenvalue", "top_residual", "trace", "trace_stderr")
    return sc.claim_curvature(dict(zip(keys, pt)), dict(zip(keys, ri)),
                              untrained="RI did not train" if kind == "untrained" else None)


def case_L(kind):
    """Barriers (value, s.e.) between seeds: PT's all below ε = 0.1, RI's all above, or not."""
    pt, ri = {"holds": ([(0.01, 0.01), (0.03, 0.01)], [(0.4, 0.05), (0.5, 0.05)]),
              "fails": ([(0.4, 0.05)], [(0.01, 0.01)]),
              "inconclusive": ([(0.08, 0.02)], [(0.13, 0.03)]),
              "untrained": ([(0.01, 0.01)], [(0.4, 0.05)])}[kind]
    return sc.claim_one_basin(pt, ri, untrained="RI s1 did not train" if kind == "untrained" else None)


CASES = {1: case_1, 2: case_2, 3: case_3, 4: case_4, 5: case_5, 6: case_6, 7: case_7, 8: case_8, 9: case_9,
         "H": case_H, "L": case_L}


@pytest.mark.parametrize("claim", [c for c in CASES if c != 4])
@pytest.mark.parametrize("kind", [HOLDS, FAILS, INC])
def test_every_claim_three_ways(claim, kind):
    rows = CASES[claim](kind)
    assert rows and all(r["claim"] == claim for r in rows)
    assert verdicts(rows) == [kind] * len(scored(rows)), [(r["quantity"], r["reason"]) for r in rows]
    assert sc.claim_verdict(verdicts(rows)) == kind
    for r in rows:
        assert r["scored"] == (not r["criterion"].endswith("(reported)"))


@pytest.mark.parametrize("claim,kind,reason", [
    (2, "untrained", "PT did not train"),
    (3, "untrained", "RI did not train"),
    (4, "untrained", "RI did not train"),
    (5, "untrained", "did not train past convergence"),
    (6, "untrained", "PT did not train"),
    (7, "untrained", "RI did not train"),
    (8, "untrained", "PT did not train"),
    (9, "untrained", "PT did not train"),
    ("H", "untrained", "RI did not train"),
    ("L", "untrained", "RI s1 did not train"),
])
def test_untrained_runs_leave_scored_rows_inconclusive(claim, kind, reason):
    rows = scored(CASES[claim](kind))
    assert rows and all(r["verdict"] == INC for r in rows)
    assert all(reason in r["reason"] and reason in r["blocked"] for r in rows)
    # …while the same numbers with trained runs would hold
    assert set(verdicts(CASES[claim]("holds"))) == ({INC} if claim == 4 else {HOLDS})


def test_claim_ids_cover_every_claim():
    produced = {r["claim"] for f in CASES.values() for r in f(HOLDS)}
    assert produced == set(sc.CLAIMS)
    chapters = sc.chapter_claims()
    flat = [c for ids in chapters.values() for c in ids]
    assert sorted(map(str, flat)) == sorted(map(str, sc.CLAIMS)) and len(flat) == len(set(flat)) == len(sc.CLAIMS)
    assert list(chapters) == sorted(chapters) and chapters["01"] == (1, 2, 4) and chapters["02"] == (3, 6, "H")


# ----------------------------------------------------------------------------- claim-specific numbers

def test_claim_1_values_and_noise():
    rows = case_1(HOLDS)
    base = np.linspace(2.0, 0.5, 1000) + 0.05 * (-1.0) ** np.arange(1000)
    assert [r["quantity"] for r in rows] == [f"training loss at {f:.0%} of the budget" for f in (0.1, 0.5, 1.0)]
    assert rows[0]["pretrained"] == pytest.approx(base[50:100].mean())
    assert rows[2]["pretrained"] == pytest.approx(base[950:].mean())
    assert rows[2]["margin"] == pytest.approx(0.2)
    se = np.std(base[950:], ddof=1) / np.sqrt(50)
    assert rows[2]["uncertainty"] == pytest.approx(math.hypot(se, se))
    # a shift just beyond / just inside Z·s.e. of the last window
    z_se = sc.Z * rows[2]["uncertainty"]
    last = lambda shift: sc.claim_training_loss(steps(base), steps(base + shift))[2]["verdict"]
    assert last(1.05 * z_se) == HOLDS and last(0.95 * z_se) == INC and last(-1.05 * z_se) == FAILS


def test_claim_2_worst_step_and_counts():
    r = case_2(HOLDS)[0]
    assert r["pretrained"] == 0 and r["scratch"] == 0
    assert r["margin"] > 0.01  # the flattest step (α 0.9 → 1) falls by 0.01 + tolerance 0.01
    r = case_2(FAILS)[0]
    assert r["pretrained"] == 1 and r["scratch"] == 0  # one step of PT's curve rises
    # range on [0, 1]: f(0) = 1 to f(1) = 0.2; the rise f(0.5) − f(0.4) = 0.45 − 0.36
    assert r["margin"] == pytest.approx(0.01 * 0.8 - 0.09, rel=1e-9)  # tol·range − rise
    r = case_2(INC)[0]
    assert r["margin"] == pytest.approx(0.01)  # the flat step: rise 0, tolerance 1 % of range 1
    assert r["uncertainty"] == pytest.approx(0.2 * np.sqrt(N2 / (N2 - 1)) / np.sqrt(N2))
    assert math.isnan(r["scratch"])  # no RI curve given
    assert "1 step(s) within noise" in r["reason"]


def test_claim_3_censored_width_and_edge_area():
    rows = case_3("censored")
    by = {r["quantity"]: r for r in rows}
    d1 = by[sc.WIDTH_ROWS[0][1]]
    assert d1["verdict"] == INC and "PT basin wider than the line search's cap" in d1["reason"]
    assert by[sc.WIDTH_ROWS[1][1]]["verdict"] == HOLDS
    assert sc.claim_verdict(verdicts(rows)) == INC
    rows = case_3("edge")
    area_rows = [r for r in rows if "area" in r["quantity"]]
    assert len(area_rows) == 2 and all(r["verdict"] == INC for r in area_rows)
    assert all("PT sub-level set reaches the edge of the grown grid" in r["reason"] for r in area_rows)
    assert [r["verdict"] for r in scored(rows) if "width" in r["quantity"]] == [HOLDS, HOLDS]
    # the α/β-unit rows are reported only
    rows = case_3(HOLDS)
    assert [r["scored"] for r in rows] == [True, True, False, False, True, False]
    assert rows[0]["margin"] == pytest.approx(1.0) and rows[0]["uncertainty"] == pytest.approx(math.hypot(0.1, 0.1))
    # a missing key is skipped, not failed
    only = sc.claim_wider({"d1_fn": width(2.0)}, {"d1_fn": width(1.0), "d2_fn": width(1.0)})
    assert len(only) == 1 and only[0]["verdict"] == HOLDS


def test_claim_4_one_seed_has_no_uncertainty():
    rows = case_4(HOLDS)
    assert rows[0]["verdict"] == INC and "one seed" in rows[0]["reason"]
    assert rows[0]["margin"] == pytest.approx(0.8) and rows[1]["criterion"].endswith("(reported)")
    assert sc.path_ratio(np.array([[0, 0], [0.5, 0], [1, 0]])) == pytest.approx(1.0)
    assert sc.path_ratio(np.array([[0, 0], [0.5, 0.5], [1, 0]])) == pytest.approx(np.sqrt(2))
    assert sc.path_ratio(np.array([[1, 1], [2, 2], [1, 1]])) == math.inf
    fast = steps(np.r_[np.linspace(1, 0.1, 10), np.full(90, 0.1)])
    slow = steps(np.linspace(1, 0.1, 100))
    assert sc.steps_to_basin(fast) < 0.2 < 0.8 < sc.steps_to_basin(slow)


def test_claim_5_values():
    rows = case_5(HOLDS)
    assert rows[0]["pretrained"] == pytest.approx(0.005) and rows[0]["scratch"] == pytest.approx(0.075)
    assert rows[0]["margin"] == pytest.approx(0.015)
    assert 0 < rows[0]["uncertainty"] < 0.0075  # a handful of sentences differ between best and last
    assert [r["scored"] for r in rows] == [True, False, False]
    assert rows[1]["verdict"] == HOLDS  # reported: PT drops less than RI
    assert rows[2]["pretrained"] < sc.LONG_LOSS_MAX
    blocked = case_5("untrained")
    assert blocked[2]["pretrained"] >= sc.LONG_LOSS_MAX and blocked[0]["margin"] == pytest.approx(0.015)


def test_claim_6_values():
    dev, gap = case_6(HOLDS)
    assert (dev["pretrained"], dev["scratch"]) == pytest.approx((0.9, 0.6))
    assert (gap["pretrained"], gap["scratch"]) == pytest.approx((0.05, 0.35))
    # paired bootstrap of 120 sentences that differ: s.e. ≈ √(0.3·0.7/400) ≈ 0.023
    assert 0.015 < dev["uncertainty"] < 0.035
    dev, gap = case_6(INC)
    assert dev["margin"] == pytest.approx(1 / 400) and gap["margin"] == pytest.approx(1 / 400)
    assert 0.003 < dev["uncertainty"] < 0.012  # 7 differing sentences: ≈ √7 / 400


def test_claim_7_values():
    rho, rho_loss = case_7(HOLDS)
    # ρ = ±1 up to tie-breaking: the bowl's symmetric values differ in the last bits, the errors tie
    assert rho["pretrained"] > 0.99 and rho["scratch"] < -0.99
    assert rho["uncertainty"] < 0.2
    assert rho_loss["scored"] is False and rho_loss["margin"] > 1.98
    same = case_7(INC)[0]
    assert same["margin"] == 0.0 and same["uncertainty"] == 0.0
    assert sc.neighbourhood_mask(GRID_A, GRID_B).sum() == 5 * len(GRID_B)  # α ∈ {0.6, …, 1.4}


def test_claim_8_values():
    up, half = case_8(HOLDS), case_8(INC)
    assert up[0]["pretrained"] == pytest.approx(1.0) and up[0]["scratch"] == pytest.approx(-1.0)
    assert up[0]["margin"] == pytest.approx(1.0 - sc.DEPTH_TREND)
    assert half[0]["pretrained"] == pytest.approx(0.5) and half[0]["uncertainty"] > 0.1
    assert sc.depth_trend([0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)


def test_claim_9_values():
    bottom, top = case_9(HOLDS)
    assert bottom["pretrained"] == pytest.approx(0.002) and top["pretrained"] == pytest.approx(0.2)
    assert bottom["margin"] == pytest.approx(0.008) and top["margin"] == pytest.approx(0.15)
    assert bottom["scratch"] == pytest.approx(0.2)
    assert 0.0005 < bottom["uncertainty"] < 0.0025  # 2 differing sentences: ≈ √2 / 1000
    no_ri = sc.claim_restore({k: v for k, v in zip(("labels", "full", "bottom", "top"),
                                                      (labels_of(10), *[labels_of(10)] * 3))}, None, acc)
    assert all(math.isnan(r["scratch"]) for r in no_ri)


def test_claim_H_values():
    eig, trace = case_H(HOLDS)
    assert eig["margin"] == pytest.approx(90.0) and eig["uncertainty"] == pytest.approx(math.hypot(1, 2))
    assert trace["margin"] == pytest.approx(450.0) and trace["uncertainty"] == pytest.approx(math.hypot(5, 10))


# ----------------------------------------------------------------------------- seeds, claims, pairings

def frame(rows_by_seed, task="movies", pairing="profile"):
    return pd.concat([sc.table(rows, task=task, seed=s, pairing=pairing) for s, rows in enumerate(rows_by_seed)],
                     ignore_index=True)


def test_summarise_uses_the_spread_over_seeds():
    pt, ri = [1.20, 1.25, 1.22], [2.00, 2.10, 1.90]
    df = frame([sc.claim_straighter(p, r, 0.3, 0.6) for p, r in zip(pt, ri)])
    assert set(df["verdict"]) == {INC}  # no seed decides alone
    s = sc.summarise(df)
    assert len(s) == 2 and (s["seeds"] == 3).all()
    ratio = s[s["scored"]].iloc[0]
    margins = np.subtract(ri, pt)
    assert ratio["margin"] == pytest.approx(margins.mean())
    assert ratio["uncertainty"] == pytest.approx(np.std(margins, ddof=1) / np.sqrt(3))
    assert ratio["verdict"] == HOLDS
    assert ratio["pretrained"] == pytest.approx(np.mean(pt)) and ratio["pretrained_sd"] == pytest.approx(np.std(pt, ddof=1))
    # swapped: fails; margins of both signs: inconclusive
    assert sc.summarise(frame([sc.claim_straighter(r, p, 0.3, 0.6) for p, r in zip(pt, ri)]))["verdict"].iloc[0] == FAILS
    mixed = frame([sc.claim_straighter(1.0, 1.0 + m, 0.3, 0.6) for m in (0.5, -0.5, 0.1)])
    assert sc.summarise(mixed)["verdict"].iloc[0] == INC


def test_summarise_combines_seed_spread_and_within_seed_uncertainty():
    keys = ("top_eigenvalue", "top_residual", "trace", "trace_stderr")
    rows = [sc.claim_curvature(dict(zip(keys, (10.0, 3.0, 50.0, 4.0))), dict(zip(keys, (20.0 + d, 4.0, 80.0, 3.0))))
            for d in (0.0, 2.0)]
    s = sc.summarise(frame(rows)).set_index("quantity")
    eig = s.loc["Hessian top eigenvalue at θ1 (Lanczos)"]
    seed = np.std([10.0, 12.0], ddof=1) / np.sqrt(2)
    within = math.hypot(3.0, 4.0) / np.sqrt(2)
    assert eig["uncertainty"] == pytest.approx(math.hypot(seed, within))
    assert eig["margin"] == pytest.approx(11.0) and eig["verdict"] == HOLDS


def test_summarise_keeps_blocked_rows_inconclusive_and_one_seed_as_is():
    ok = {k: width(2.0, 0.05) for k in ("d1_fn", "d2_fn")}
    ri = {k: width(1.0, 0.05) for k in ("d1_fn", "d2_fn")}
    cens = {"d1_fn": width(2.0, 0.05, censored=1), "d2_fn": width(2.0, 0.05)}
    df = frame([sc.claim_wider(ok, ri), sc.claim_wider(ok, ri), sc.claim_wider(cens, ri)])
    s = sc.summarise(df).set_index("quantity")
    assert s.loc[sc.WIDTH_ROWS[0][1], "verdict"] == INC
    assert "wider than the line search's cap" in s.loc[sc.WIDTH_ROWS[0][1], "reason"]
    assert s.loc[sc.WIDTH_ROWS[1][1], "verdict"] == HOLDS
    one = sc.summarise(frame([case_3("censored")])).set_index("quantity")
    assert one.loc[sc.WIDTH_ROWS[0][1], "verdict"] == INC and one.loc[sc.WIDTH_ROWS[1][1], "verdict"] == HOLDS
    assert (one["seeds"] == 1).all()


def test_summarise_keeps_an_untrained_monotone_row_inconclusive():
    df = frame([case_2(HOLDS), case_2("untrained")])
    s = sc.summarise(df)
    assert len(s) == 1 and s["verdict"].iloc[0] == INC and "PT did not train" in s["reason"].iloc[0]


def test_claim_verdict():
    assert sc.claim_verdict([HOLDS, HOLDS]) == HOLDS
    assert sc.claim_verdict([HOLDS, FAILS, INC]) == FAILS
    assert sc.claim_verdict([HOLDS, INC]) == INC
    assert sc.claim_verdict([]) == INC


def test_claim_matrix_ignores_reported_rows():
    rows = [  # (task, claim, scored, verdict)
        ("movies", 1, True, HOLDS), ("movies", 1, False, FAILS),
        ("movies", 4, True, HOLDS), ("movies", 4, True, INC),
        ("movies", 3, True, FAILS), ("movies", 3, False, HOLDS),
        ("news", 1, True, HOLDS), ("news", 1, True, HOLDS), ("news", 4, False, FAILS), ("news", 4, True, HOLDS),
        ("news", 3, True, HOLDS), ("news", 3, True, INC), ("news", 3, True, FAILS),
    ]
    summary = pd.DataFrame([{"task": t, "pairing": "profile", "claim": c, "quantity": f"q{i}",
                             "criterion": "c" if s else "c (reported)", "scored": s, "verdict": v}
                            for i, (t, c, s, v) in enumerate(rows)])
    other = summary.assign(pairing="matched", verdict=FAILS)  # another pairing is not mixed in
    m = sc.claim_matrix(pd.concat([summary, other], ignore_index=True))
    assert list(m.index) == [1, 4, 3]  # book order (claim 4 comes before 3)
    assert m.loc[1, "movies"] == HOLDS and m.loc[4, "movies"] == INC and m.loc[3, "movies"] == FAILS
    assert m.loc[1, "news"] == HOLDS and m.loc[4, "news"] == HOLDS and m.loc[3, "news"] == FAILS
    assert (sc.claim_matrix(pd.concat([summary, other]), "matched") == FAILS).all().all()


def test_claim_matrix_from_real_rows():
    # claim 5: the scored row holds while the reported "PT vs RI" row fails (RI drops less)
    y = labels_of(N5, 5)
    run = lambda counts: np.stack([preds_correct_on(y, first_k(N5, k)) for k in counts])
    rows = sc.claim_overfitting(run([1000, 1800, 1790]), run([1000, 1800, 1800]), y, acc,
                                steps(np.linspace(1, 0.01, 100)), steps(np.linspace(1, 0.01, 100)), "accuracy")
    assert rows[0]["verdict"] == HOLDS and rows[1]["verdict"] == FAILS
    s = sc.summarise(frame([rows, rows]))
    assert (s["verdict"] == FAILS).sum() == 1
    assert sc.claim_matrix(s).loc[5, "movies"] == HOLDS


def test_pairing_verdicts_notes_a_claim_that_holds_under_one_pairing():
    def srow(claim, pairing, verdict, task="movies"):
        return {"task": task, "pairing": pairing, "claim": claim, "quantity": "q", "criterion": "c",
                "scored": True, "verdict": verdict}
    summary = pd.DataFrame([srow(1, "profile", HOLDS), srow(1, "matched-lr", INC),
                            srow(3, "profile", HOLDS), srow(3, "matched-lr", HOLDS),
                            srow(6, "profile", FAILS), srow(6, "matched-lr", HOLDS),
                            srow(2, "profile", HOLDS)])  # claim 2 is decided under one pairing only
    v = sc.pairing_verdicts(summary).set_index("claim")
    assert v.loc[1, "note"] == "holds only under profile"
    assert v.loc[6, "note"] == "holds only under matched-lr"
    assert v.loc[3, "note"] == "" and v.loc[2, "note"] == ""
    assert v.loc[1, "profile"] == HOLDS and v.loc[1, "matched-lr"] == INC
