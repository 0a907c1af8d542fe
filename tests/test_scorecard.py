"""The scorecard's rule and every claim function, on synthetic inputs built so that each verdict is known
in advance (no model, no cache; the bootstraps are seeded)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bertscape.base.errors import BertscapeError
from bertscape.book.claims import CLAIMS
from bertscape.evidence import scorecard as sc

HOLDS, FAILS, INC = sc.HOLDS, sc.FAILS, sc.INCONCLUSIVE


def acc(preds, labels):
    """Accuracy over the last axis (the shape contract of :data:`bertscape.evidence.uncertainty.MetricFn`)."""
    return (np.asarray(preds) == np.asarray(labels)).mean(axis=-1)


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

def test_decide_with_a_standard_error_at_and_around_z():
    assert sc.Z == 2.0
    assert sc.decide(2.0, 1.0)[0] == INC  # exactly at +Z·s.e.: not beyond it
    assert sc.decide(-2.0, 1.0)[0] == INC
    assert sc.decide(2.0 + 1e-9, 1.0)[0] == HOLDS and sc.decide(-2.0 - 1e-9, 1.0)[0] == FAILS
    assert sc.decide(0.3, 0.1)[0] == HOLDS and sc.decide(-0.3, 0.1)[0] == FAILS and sc.decide(0.19, 0.1)[0] == INC
    # no noise at all: any margin on either side decides, zero does not
    assert sc.decide(1e-6, 0.0)[0] == HOLDS and sc.decide(-1e-6, 0.0)[0] == FAILS and sc.decide(0.0, 0.0)[0] == INC


def test_decide_with_an_interval_ignores_the_standard_error():
    assert sc.decide(0.5, 10.0, interval=(0.1, 0.9))[0] == HOLDS  # an interval wholly above 0
    assert sc.decide(-0.5, 0.0, interval=(-0.9, -0.1))[0] == FAILS
    assert sc.decide(0.5, 0.0, interval=(-0.1, 0.9))[0] == INC
    v, reason = sc.decide(0.5, interval=(0.1, 0.9))
    assert "[0.1, 0.9]" in reason and "above 0" in reason


def test_a_bound_decides_only_in_the_direction_it_allows():
    # a lower bound of the margin (PT's basin wider than the cap, claim "PT wider"): may hold, cannot fail
    assert sc.decide(1.0, 0.1, bound="lower")[0] == HOLDS
    v, reason = sc.decide(-1.0, 0.1, bound="lower")
    assert v == INC and "lower bound" in reason
    assert sc.decide(-1.0, 0.1, bound="upper")[0] == FAILS
    assert sc.decide(1.0, 0.1, bound="upper")[0] == INC
    with pytest.raises(BertscapeError, match="bound='side'"):
        sc.decide(1.0, 0.1, bound="side")


def test_blocking_reasons_and_a_missing_sampling_error():
    assert sc.decide(100.0, 0.1, censored="both censored") == (INC, "both censored")
    assert sc.decide(-100.0, 0.1, untrained="RI did not train") == (INC, "RI did not train")
    assert sc.decide(100.0, 0.1, censored="c", untrained="u") == (INC, "u")  # untrained named first
    assert sc.decide(5.0, float("nan"), no_uncertainty="one seed only") == (INC, "one seed only")
    assert sc.decide(5.0, None)[0] == INC and sc.decide(-5.0, float("inf"))[0] == INC
    assert sc.decide(float("nan"), 0.1) == (INC, "not computed") and sc.decide(None, 0.1) == (INC, "not computed")


def test_row_fields_reported_and_blocked():
    r = sc.row(1, "loss_100", "q", 0.5, 0.7, 0.2, 0.05, "PT < RI")
    assert (r["verdict"], r["criterion"], r["scored"], r["blocked"], r["qid"]) == (HOLDS, "PT < RI", True, "", "loss_100")
    assert (r["seeds"], r["pooled"], r["bound"]) == (1, False, "") and math.isnan(r["lo"])
    rep = sc.row(1, "loss_10", "q", None, 0.7, -0.2, 0.05, "PT < RI", scored=False)
    assert rep["criterion"] == "PT < RI (reported)" and rep["scored"] is False and rep["verdict"] == FAILS
    assert math.isnan(rep["pretrained"])
    blk = sc.row("H", "trace", "q", 1.0, 2.0, 1.0, 0.1, "PT < RI", untrained="RI did not train")
    assert (blk["verdict"], blk["reason"], blk["blocked"]) == (INC, "RI did not train", "RI did not train")
    given = sc.row(2, "rises", "q", 0, 0, -1.0, 0.1, "c", verdict=(HOLDS, "by hand"))
    assert (given["verdict"], given["reason"]) == (HOLDS, "by hand")


# ----------------------------------------------------------------------------- did a run train?

def test_the_trained_test_asks_for_a_falling_loss_and_a_metric_above_the_majority_class():
    y = np.r_[np.zeros(300, int), np.ones(200, int)]  # majority class 0: baseline accuracy 0.6
    assert sc.majority_baseline(y, acc) == pytest.approx(0.6)
    falling, flat = np.linspace(0.7, 0.3, 400), np.full(400, 0.69)
    good = preds_correct_on(y, first_k(500, 450))  # 0.9 accuracy
    at_chance = np.zeros(500, int)  # always the majority class: 0.6
    just_above = preds_correct_on(y, np.r_[np.arange(300), 300 + np.arange(15)])  # 0.63: 0.03 above, < 0.05
    ok = sc.training_check("PT s0", falling, good, y, acc)
    assert ok["trained"] and ok["why"] == "" and ok["baseline"] == pytest.approx(0.6)
    assert ok["loss_ratio"] == pytest.approx(falling[-20:].mean() / falling[:20].mean())
    no_loss = sc.training_check("RI s0", flat, good, y, acc)
    assert not no_loss["trained"] and "loss ratio" in no_loss["why"]
    chance = sc.training_check("RI s1", falling, at_chance, y, acc)
    assert not chance["trained"] and "majority class" in chance["why"]
    assert not sc.training_check("RI s2", falling, just_above, y, acc)["trained"]
    assert sc.trained_reason([ok]) is None
    assert sc.trained_reason([ok, no_loss, chance, chance]) == "RI s0 and RI s1 did not train"
    assert sc.trained_reason([no_loss]) == "RI s0 did not train"


# ----------------------------------------------------------------------------- claims as objects

def test_a_claim_cannot_exist_without_its_function_and_quantities():
    with pytest.raises(BertscapeError, match="rows=None is not accepted"):
        sc.Claim(99, "07", "s", "c", None, {"q": "d"})
    with pytest.raises(BertscapeError, match="quantities=.* is not accepted"):
        sc.Claim(99, "07", "s", "c", lambda *a: [], {})
    with pytest.raises(BertscapeError, match="units="):
        sc.Claim(99, "07", "s", "c", lambda *a: [], {"q": "d"}, units=("metres",))
    reg = sc.ClaimRegistry()
    c = reg.register(sc.Claim(99, "07", "s", "c", lambda *a: [], {"q": "d"}))
    assert reg[99] is c and reg.chapters() == {"07": (99,)}
    with pytest.raises(BertscapeError, match="already registered"):
        reg.register(c)
    with pytest.raises(BertscapeError, match="register"):
        reg[100] = "not a claim"
    with pytest.raises(BertscapeError, match="qid='nope' is not a quantity of claim 99"):
        reg.qid(99, "nope")


def test_the_book_registers_every_claim_with_its_quantities():
    chapters = CLAIMS.chapters()
    flat = [c for ids in chapters.values() for c in ids]
    assert flat == [1, 2, 4, 3, 6, "H", 5, 7, 8, 9, "L"] and list(chapters) == ["01", "02", "03", "04", "05"]
    assert CLAIMS[3].units == CLAIMS["H"].units == ("paper", "invariant")
    assert [c for c in CLAIMS if CLAIMS[c].controlled] == [1, 4, 3, 6, "H"]
    assert CLAIMS["L"].extension and CLAIMS["L"].across_seeds


# ----------------------------------------------------------------------------- the claims' cases
# Each builder returns the claim's rows for a case whose verdict is fixed by construction.

def case_1(kind):
    n = 1000
    base = np.linspace(2.0, 0.5, n) + 0.05 * (-1.0) ** np.arange(n)
    noise = 0.01 * np.random.default_rng(1).standard_normal(n)  # RI's own step noise, on the same batches
    shift = {"holds": 0.2, "fails": -0.2, "inconclusive": 0.0, "untrained": 0.2}[kind]
    return sc.claim_training_loss(base, base + shift + noise,
                                  untrained="RI did not train" if kind == "untrained" else None)


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


def width(w, se=0.1, censored=0, boot=None):
    return {"width": w, "width_se": se, "censored": censored, **({"boot": boot} if boot is not None else {})}


def area(a, se=0.1, edge=0):
    return {"area": 10 * a, "area_se": 10 * se, "area_rel": a, "area_rel_se": se, "touches_edge": edge}


def case_3(kind):
    pt_w, ri_w = {"holds": (2.0, 1.0), "fails": (1.0, 2.0), "inconclusive": (1.1, 1.0)}.get(kind, (2.0, 1.0))
    keys = [k for k, *_ in sc.WIDTH_ROWS]
    pt = {k: width(pt_w, censored=int(kind == "censored" and k == "d1_fn")) for k in keys}
    ri = {k: width(ri_w) for k in keys}
    return sc.claim_wider(pt, ri, area(pt_w, edge=int(kind == "edge")), area(ri_w),
                          untrained="RI did not train" if kind == "untrained" else None)


def curv(values, spread=0.1, n=4):
    """Per-batch curvatures: each direction's value ± a fixed pattern over n batches."""
    pattern = spread * np.array([1.0, -1.0, 0.5, -0.5][:n])
    return {"directional": {k: {"value": v, "batches": list(v + pattern)} for k, v in values.items()},
            "top_eigenvalue": 100.0, "top_batches": list(100 + 10 * pattern), "trace": 500.0,
            "trace_batches": list(500 + 50 * pattern), "theta1_norm": 280.0}


def case_H(kind):
    keys = [k for k, *_ in sc.CURVATURE_ROWS]
    pt_v, ri_v = {"holds": (1.0, 3.0), "fails": (3.0, 1.0), "inconclusive": (1.0, 1.0)}.get(kind, (1.0, 3.0))
    pt = curv({k: pt_v for k in keys})
    ri = curv({k: ri_v for k in keys}, spread=0.1 if kind != "inconclusive" else -0.1)  # batches disagree
    return sc.claim_curvature(pt, ri, untrained="RI did not train" if kind == "untrained" else None)


def case_4(kind):
    """One seed: always inconclusive (no sampling error); see the summarise tests for seeds."""
    pt_r, ri_r = {"holds": (1.2, 2.0), "fails": (2.0, 1.2), "inconclusive": (1.5, 1.5)}.get(kind, (1.2, 2.0))
    return sc.claim_straighter(pt_r, ri_r, 0.3, 0.6, untrained="RI did not train" if kind == "untrained" else None)


N5 = 2000


def long_preds(y, counts, seed=0):
    """Dev predictions of a long run: at each evaluation the first ``k`` sentences of one fixed random order
    are right (nested sets, as consecutive epochs share most of their correct predictions)."""
    order = np.random.default_rng(seed).permutation(len(y))
    return np.stack([preds_correct_on(y, order[:k]) for k in counts])


def case_5(kind):
    y = labels_of(N5, 5)
    last = {"holds": 1790, "fails": 1500, "inconclusive": 1760, "untrained": 1790}[kind]
    pt = long_preds(y, [1000, 1800, 1795, last])  # best 0.90; drop ~0.005 / 0.15 / ~0.02
    ri = long_preds(y, [1000, 1800, 1700, 1650], seed=1)
    return sc.claim_overfitting(pt, y, acc, 0.2 if kind == "untrained" else 0.01, "accuracy", ri, 0.3)


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


def fd_samples(curvatures, n=300, noise=0.0, seed=0):
    """Per-sentence losses at α = 1 − h, 1, 1 + h (h = 0.25) whose mean curve has the given curvature per
    layer; ``noise`` per sentence."""
    rng = np.random.default_rng(seed)
    h = 0.25
    out = np.empty((len(curvatures), 3, n))
    for i, c in enumerate(curvatures):
        base = 0.5 * c * np.array([h * h, 0.0, h * h])  # f(1 ± h) − f(1) = c h² / 2
        out[i] = base[:, None] + noise * rng.standard_normal((3, n))
    return out


def case_8(kind):
    up, down = [0.1, 0.2, 0.3, 0.5, 0.8, 1.3], [1.3, 0.8, 0.5, 0.3, 0.2, 0.1]
    if kind == "inconclusive":  # curvatures 1…6 with noise that reorders them freely between resamples
        fd = fd_samples([1.0, 1.01, 0.99, 1.0, 1.02, 0.98], noise=0.5)
        return sc.claim_layers_invariant(up, down, fd, fd_samples(down), 0.25)
    pt = {"holds": up, "fails": down, "untrained": up}[kind]
    return sc.claim_layers_invariant(pt, down, fd_samples(pt, noise=0.01), fd_samples(down), 0.25, pt, down,
                                     untrained="PT did not train" if kind == "untrained" else None)


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


def case_L(kind):
    """Barriers (value, low, high) between seeds: PT's all below ε = 0.1, RI's all above, or not."""
    pt, ri = {"holds": ([(0.01, 0.0, 0.03), (0.03, 0.01, 0.05)], [(0.4, 0.3, 0.5), (0.5, 0.4, 0.6)]),
              "fails": ([(0.4, 0.3, 0.5)], [(0.01, 0.0, 0.03)]),
              "inconclusive": ([(0.08, 0.04, 0.12)], [(0.13, 0.07, 0.19)]),
              "untrained": ([(0.01, 0.0, 0.03)], [(0.4, 0.3, 0.5)])}[kind]
    return sc.claim_one_basin(pt, ri, [(0.9, 0.8, 1.0)], seeds=3,
                              untrained="RI s1 did not train" if kind == "untrained" else None)


CASES = {1: case_1, 2: case_2, 3: case_3, 4: case_4, 5: case_5, 6: case_6, 7: case_7, 8: case_8, 9: case_9,
         "H": case_H, "L": case_L}


@pytest.mark.parametrize("claim", [c for c in CASES if c != 4])
@pytest.mark.parametrize("kind", [HOLDS, FAILS, INC])
def test_every_claim_three_ways(claim, kind):
    rows = CASES[claim](kind)
    assert rows and all(r["claim"] == claim for r in rows)
    want = [kind] * len(scored(rows))
    if claim == 8:  # the relative change has no sampling error within one seed: inconclusive until seeds decide
        want = [INC, kind]
    assert verdicts(rows) == want, [(r["qid"], r["reason"]) for r in rows]
    assert sc.claim_verdict(verdicts(rows)) == (INC if claim == 8 and kind == HOLDS else kind)
    for r in rows:
        assert r["scored"] == (not r["criterion"].endswith("(reported)"))
        assert r["qid"] in CLAIMS[claim].quantities


@pytest.mark.parametrize("claim,reason", [
    (1, "RI did not train"), (2, "PT did not train"), (3, "RI did not train"), (4, "RI did not train"),
    (5, "did not train past convergence"), (6, "PT did not train"), (7, "RI did not train"),
    (8, "PT did not train"), (9, "PT did not train"), ("H", "RI did not train"), ("L", "RI s1 did not train"),
])
def test_untrained_runs_leave_scored_rows_inconclusive(claim, reason):
    rows = scored(CASES[claim]("untrained"))
    assert rows and all(r["verdict"] == INC for r in rows)
    assert all(reason in r["reason"] and reason in r["blocked"] for r in rows)
    # …while the same numbers with trained runs would hold (claim 4 and claim 8's change: no error in one seed)
    assert set(verdicts(CASES[claim]("holds"))) == ({INC} if claim == 4 else
                                                    {HOLDS, INC} if claim == 8 else {HOLDS})


# ----------------------------------------------------------------------------- claim-specific numbers

def test_claim_1_uses_the_step_by_step_differences():
    n = 1000
    base = np.linspace(2.0, 0.5, n) + 0.3 * np.random.default_rng(0).standard_normal(n)  # large shared batch noise
    own = 0.01 * np.random.default_rng(1).standard_normal(n)
    rows = sc.claim_training_loss(base, base + 0.05 + own)
    assert [r["qid"] for r in rows] == ["loss_10", "loss_50", "loss_100"]
    last = rows[2]
    assert last["pretrained"] == pytest.approx(base[950:].mean())
    assert last["margin"] == pytest.approx(0.05 + own[950:].mean())
    assert last["uncertainty"] == pytest.approx(np.std(own[950:], ddof=1) / np.sqrt(50))
    unpaired = math.hypot(*(np.std(x[950:], ddof=1) / np.sqrt(50) for x in (base, base + own)))
    assert last["uncertainty"] < unpaired / 10  # pairing removes the shared batch noise
    assert last["verdict"] == HOLDS  # the unpaired rule (0.05 vs 2 × ~0.06) would not have decided
    single = sc.claim_training_loss(np.r_[1.0, 0.9], np.r_[1.0, 0.8], fractions=(0.5,))
    assert single[0]["verdict"] == INC and "no step-to-step noise" in single[0]["reason"]


def test_claim_2_worst_step_and_counts():
    r = case_2(HOLDS)[0]
    assert r["pretrained"] == 0 and r["scratch"] == 0 and r["margin"] > 0.01 and r["qid"] == "rises"
    r = case_2(FAILS)[0]
    assert r["pretrained"] == 1 and r["scratch"] == 0
    assert r["margin"] == pytest.approx(0.01 * 0.8 - 0.09, rel=1e-9)  # tol·range − rise
    r = case_2(INC)[0]
    assert r["margin"] == pytest.approx(0.01)
    assert r["uncertainty"] == pytest.approx(0.2 * np.sqrt(N2 / (N2 - 1)) / np.sqrt(N2))
    assert math.isnan(r["scratch"]) and "1 step(s) within noise" in r["reason"]


def test_claim_3_in_two_units_with_paired_replicates():
    rows = {r["qid"]: r for r in case_3(HOLDS)}
    assert {q: (r["unit"], r["scored"]) for q, r in rows.items()} == {
        "width_alpha": ("paper", True), "width_beta": ("paper", True), "width_d1_fn": ("invariant", True),
        "width_d2_fn": ("invariant", True), "width_d2_fn_nobias": ("invariant", False),
        "area_alphabeta": ("paper", True), "area_rel": ("invariant", True)}
    assert rows["width_d1_fn"]["uncertainty"] == pytest.approx(math.hypot(0.1, 0.1))  # no replicates: independent
    # with paired replicates the s.e. is that of the difference: shared resampling noise cancels
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.3, 200)
    pt = {"d1_fn": width(2.0, float(np.std(2 + shared)), boot=list(2.0 + shared))}
    ri = {"d1_fn": width(1.9, float(np.std(1.9 + shared)), boot=list(1.9 + shared + rng.normal(0, 0.01, 200)))}
    r = sc.claim_wider(pt, ri)[0]
    assert r["uncertainty"] < 0.02 < math.hypot(0.3, 0.3) and r["verdict"] == HOLDS


def test_claim_3_a_censored_width_decides_as_a_bound():
    rows = {r["qid"]: r for r in case_3("censored")}
    assert rows["width_d1_fn"]["bound"] == "lower" and rows["width_d1_fn"]["verdict"] == HOLDS  # PT ≥ cap > RI
    lower_but_smaller = sc.claim_wider({"d1_fn": width(1.0, censored=1)}, {"d1_fn": width(2.0)})[0]
    assert lower_but_smaller["verdict"] == INC and "lower bound" in lower_but_smaller["reason"]
    ri_censored = sc.claim_wider({"d1_fn": width(1.0)}, {"d1_fn": width(2.0, censored=1)})[0]
    assert ri_censored["bound"] == "upper" and ri_censored["verdict"] == FAILS
    both = sc.claim_wider({"d1_fn": width(2.0, censored=1)}, {"d1_fn": width(1.0, censored=1)})[0]
    assert both["verdict"] == INC and "both censored" in both["reason"]
    edge = {r["qid"]: r for r in case_3("edge")}
    assert edge["area_rel"]["bound"] == "lower" and edge["area_rel"]["verdict"] == HOLDS


def test_claim_H_curvature_per_batch_in_both_units():
    rows = {r["qid"]: r for r in case_H(HOLDS)}
    assert {q: r["unit"] for q, r in rows.items() if r["scored"]} == {
        "curv_alpha": "paper", "curv_beta": "paper", "curv_d1_fn": "invariant", "curv_d2_fn": "invariant"}
    # the same batch pattern on both sides: the batch-by-batch differences are constant (s.e. 0)
    assert rows["curv_d1_fn"]["margin"] == pytest.approx(2.0)
    assert rows["curv_d1_fn"]["uncertainty"] == pytest.approx(0.0, abs=1e-12)
    assert not rows["top_eigenvalue"]["scored"] and not rows["trace"]["scored"]
    assert rows["theta1_norm_sq"]["pretrained"] == pytest.approx(280.0 ** 2)
    inc = {r["qid"]: r for r in case_H(INC)}["curv_d1_fn"]
    d = np.array([1, -1, 0.5, -0.5]) * -0.2  # RI − PT batch by batch
    assert inc["uncertainty"] == pytest.approx(np.std(d, ddof=1) / 2) and inc["verdict"] == INC


def test_claim_4_one_seed_has_no_sampling_error():
    rows = case_4(HOLDS)
    assert rows[0]["verdict"] == INC and "one seed" in rows[0]["reason"]
    assert rows[0]["margin"] == pytest.approx(0.8) and rows[1]["criterion"].endswith("(reported)")
    fast = pd.DataFrame({"loss": np.r_[np.linspace(1, 0.1, 10), np.full(90, 0.1)]})
    slow = pd.DataFrame({"loss": np.linspace(1, 0.1, 100)})
    assert sc.steps_to_basin(fast) < 0.2 < 0.8 < sc.steps_to_basin(slow)


def test_claim_5_split_halves_and_the_eval_mode_gate():
    rows = {r["qid"]: r for r in case_5(HOLDS)}
    assert rows["drop"]["pretrained"] == pytest.approx(0.005, abs=0.01)
    assert np.isfinite(rows["drop"]["lo"]) and rows["drop"]["lo"] > 0  # decided on its percentile interval
    assert not rows["drop_vs_ri"]["scored"] and not rows["final_train_loss"]["scored"]
    assert rows["final_train_loss"]["pretrained"] == 0.01
    blocked = {r["qid"]: r for r in case_5("untrained")}
    assert "0.2 in eval mode" in blocked["drop"]["reason"]
    only_pt = sc.claim_overfitting(long_preds(labels_of(100), [50, 60]), labels_of(100), acc, 0.01, "accuracy")
    assert [r["qid"] for r in only_pt] == ["drop", "final_train_loss"]


def test_claim_6_values():
    dev, gap = case_6(HOLDS)
    assert (dev["pretrained"], dev["scratch"]) == pytest.approx((0.9, 0.6))
    assert (gap["pretrained"], gap["scratch"]) == pytest.approx((0.05, 0.35))
    assert 0.015 < dev["uncertainty"] < 0.035  # 120 sentences differ: ≈ √(0.3·0.7/400)


def test_claim_7_decides_on_a_percentile_interval():
    rho, rho_loss = case_7(HOLDS)
    assert rho["pretrained"] > 0.99 and rho["scratch"] < -0.99
    assert np.isfinite(rho["lo"]) and rho["lo"] > 0 and rho_loss["scored"] is False
    same = case_7(INC)[0]
    assert same["margin"] == 0.0 and same["lo"] == same["hi"] == 0.0
    assert sc.neighbourhood_mask(GRID_A, GRID_B).sum() == 5 * len(GRID_B)  # α ∈ {0.6, …, 1.4}


def test_claim_8_rows_and_the_finite_difference_curvature():
    rows = {r["qid"]: r for r in case_8(HOLDS)}
    assert rows["rho_change"]["pretrained"] == pytest.approx(1.0) and rows["rho_change"]["verdict"] == INC
    assert "one seed" in rows["rho_change"]["reason"]
    assert rows["perm_p_change"]["pretrained"] == pytest.approx(1 / 720) and not rows["perm_p_change"]["scored"]
    assert rows["rho_curvature"]["pretrained"] == pytest.approx(1.0) and rows["rho_curvature"]["verdict"] == HOLDS
    assert not rows["rho_rise"]["scored"]
    np.testing.assert_allclose(sc.layer_fd_curvature(fd_samples([2.0, 5.0]), 0.25), [2.0, 5.0])
    assert sc.depth_trend([0.4, 0.3, 0.2, 0.1]) == pytest.approx(-1.0)


def test_claim_9_values():
    bottom, top = case_9(HOLDS)
    assert bottom["pretrained"] == pytest.approx(0.002) and top["pretrained"] == pytest.approx(0.2)
    assert bottom["margin"] == pytest.approx(0.008) and top["margin"] == pytest.approx(0.15)
    assert 0.0005 < bottom["uncertainty"] < 0.0025  # 2 differing sentences: ≈ √2 / 1000


def test_claim_L_pools_the_seeds_and_reports_own_bodies():
    rows = {r["qid"]: r for r in case_L(HOLDS)}
    assert rows["pt_max_barrier"]["pretrained"] == 0.03 and rows["pt_max_barrier"]["pooled"]
    assert rows["pt_max_barrier"]["seeds"] == 3
    assert (rows["pt_max_barrier"]["lo"], rows["pt_max_barrier"]["hi"]) == pytest.approx((0.05, 0.09))
    assert rows["ri_min_barrier"]["scratch"] == 0.4 and not rows["ri_min_barrier_bodies"]["scored"]
    few = sc.claim_one_basin([], [(0.4, 0.3, 0.5)])
    assert few[0]["verdict"] == INC and "fewer than two seeds of PT" in few[0]["reason"]


# ----------------------------------------------------------------------------- seeds, claims, pairings

def frame(rows_by_seed, task="movies", pairing="profile"):
    return pd.concat([sc.table(rows, task=task, seed=s, pairing=pairing) for s, rows in enumerate(rows_by_seed)],
                     ignore_index=True)


def test_summarise_applies_the_t_rule_over_two_and_three_seeds():
    def ratio_rows(margins):
        return frame([sc.claim_straighter(1.0, 1.0 + m, 0.3, 0.6) for m in margins])

    two = sc.summarise(ratio_rows([1.0, 1.2])).iloc[0]
    assert two["seeds"] == 2 and not two["one_seed"]
    assert two["margin"] == pytest.approx(1.1) and two["uncertainty"] == pytest.approx(0.1)
    # 1.1 ± 12.71 × 0.1 includes 0: a 1-degree-of-freedom s.e. against z = 2 would have called it
    assert (two["lo"], two["hi"]) == pytest.approx((1.1 - 1.2706 , 1.1 + 1.2706), abs=1e-3)
    assert two["verdict"] == INC
    three = sc.summarise(ratio_rows([1.0, 1.05, 1.1])).iloc[0]
    assert three["uncertainty"] == pytest.approx(0.05 / np.sqrt(3)) and three["verdict"] == HOLDS
    assert "t₀.₉₇₅(2) = 4.3" in three["reason"]
    assert sc.summarise(ratio_rows([-1.0, -1.05, -1.1]))["verdict"].iloc[0] == FAILS
    assert sc.summarise(ratio_rows([0.5, -0.5, 0.1]))["verdict"].iloc[0] == INC


def test_summarise_does_not_count_within_seed_noise_twice():
    # the same per-seed margins with large or tiny within-seed errors: the same decision
    def dev_rows(se):
        return frame([[sc.row(6, "dev_metric", "q", 0.8, 0.7, m, se, "PT > RI")] for m in (0.10, 0.12, 0.11)])

    a, b = sc.summarise(dev_rows(0.2)).iloc[0], sc.summarise(dev_rows(1e-6)).iloc[0]
    assert a["uncertainty"] == b["uncertainty"] == pytest.approx(0.01 / np.sqrt(3))
    assert a["verdict"] == b["verdict"] == HOLDS


def test_summarise_blocks_bounds_and_passes_pooled_rows():
    ok = {k: width(2.0, 0.05) for k in ("d1_fn", "d2_fn")}
    ri = {k: width(1.0, 0.05) for k in ("d1_fn", "d2_fn")}
    cens = {"d1_fn": width(2.0, 0.05, censored=1), "d2_fn": width(2.0, 0.05)}
    s = sc.summarise(frame([sc.claim_wider(ok, ri), sc.claim_wider(cens, ri), sc.claim_wider(ok, ri)])).set_index("qid")
    assert s.loc["width_d1_fn", "verdict"] == HOLDS  # lower bounds and exact values: a lower bound that holds
    shrunk = {"d1_fn": width(0.5, 0.05, censored=1)}
    worse = sc.summarise(frame([sc.claim_wider(shrunk, ri)] * 3)).set_index("qid")
    assert worse.loc["width_d1_fn", "verdict"] == INC and "lower bound" in worse.loc["width_d1_fn", "reason"]
    mixed = sc.summarise(frame([case_2(HOLDS), case_2("untrained")]))
    assert mixed["verdict"].iloc[0] == INC and "PT did not train (seed 1)" in mixed["reason"].iloc[0]
    pooled = sc.summarise(frame([case_L(HOLDS)])).set_index("qid")
    assert pooled.loc["pt_max_barrier", "seeds"] == 3 and not pooled.loc["pt_max_barrier", "one_seed"]
    one = sc.summarise(frame([case_6(HOLDS)]))
    assert one["one_seed"].all() and (one["seeds"] == 1).all()


def test_claim_verdict_and_cells_by_unit():
    assert sc.claim_verdict([HOLDS, HOLDS]) == HOLDS and sc.claim_verdict([HOLDS, FAILS, INC]) == FAILS
    assert sc.claim_verdict([HOLDS, INC]) == INC and sc.claim_verdict([]) == INC
    s = sc.summarise(frame([case_3(HOLDS)] * 3))
    c = sc.cell_verdicts(s)
    assert set(zip(c["claim"], c["unit"])) == {(3, "paper"), (3, "invariant")}
    assert (c["seeds"] == 3).all() and not c["one_seed"].any()


def test_pairing_verdicts_say_why_a_pairing_decided_nothing():
    base = frame([case_1(HOLDS)] * 3)
    other = frame([case_1("untrained")] * 3, pairing="both at RI's lr")
    flipped = frame([case_1(FAILS)] * 3, pairing="both at PT's lr")
    v = sc.pairing_verdicts(sc.summarise(pd.concat([base, other, flipped], ignore_index=True))).set_index("claim")
    assert v.loc[1, "profile"] == HOLDS and v.loc[1, "both at RI's lr"] == INC
    assert "decided differently" in v.loc[1, "note"]
    v = sc.pairing_verdicts(sc.summarise(pd.concat([base, other], ignore_index=True))).set_index("claim")
    assert v.loc[1, "note"] == "decided under profile only: under both at RI's lr a run did not train"


def test_measures_not_computed_give_every_quantity_an_inconclusive_row():
    """A matched pairing whose runs did not train skips claim 3's and H's measures; the rows it writes
    carry every quantity the claim reports, so a summary over seeds counts every seed for each."""
    for claim, rows_of in ((3, sc.WIDTH_ROWS), ("H", sc.CURVATURE_ROWS)):
        rows = sc.not_computed(claim, "RI did not train")
        qids = [r["qid"] for r in rows]
        assert set(q for _, q, *_ in rows_of) <= set(qids) and len(qids) == len(set(qids))
        assert all(r["verdict"] == INC and r["reason"].endswith("not computed") for r in rows)
    assert {r["qid"] for r in sc.not_computed("H", "x")} >= {q for q, _ in sc.CURVATURE_REPORTED}
    with pytest.raises(BertscapeError, match="claim=5 is not accepted"):
        sc.not_computed(5, "x")
