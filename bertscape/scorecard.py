"""The paper's claims, each declared once, and the one rule that turns a measured number with its
uncertainty into a verdict.

**The rule.** Every scored row carries a *margin* — how far the measured quantity lies on the
claimed side of its criterion (PT − RI or RI − PT for a comparison, threshold − value or
value − threshold for a threshold) — and an *uncertainty*, one standard error of that margin:

* ``holds`` when margin > :data:`Z` × uncertainty,
* ``fails`` when margin < −:data:`Z` × uncertainty,
* ``inconclusive`` otherwise, and always when a quantity is censored (a basin wider than the search
  or the grid), a run did not train, or no uncertainty exists (e.g. one seed for a quantity whose
  only noise is the seed). The reason is given in the row.

Rows marked *reported* (``scored=False``) are shown for context and never count towards a
claim's verdict. A claim holds when all its scored rows hold, fails when any fails, and is
inconclusive otherwise.

Uncertainties (computed in :mod:`bertscape.study` with :mod:`bertscape.uncertainty`): the spread
over seeds when there are ≥ 2; a bootstrap over evaluation sentences for every number that is
an average over sentences (dev metrics, restore costs, surface agreement, widths, areas); the
step-to-step noise of a running mean of training losses; the Hutchinson standard error of a trace;
the Lanczos residual of a top eigenvalue; a bootstrap over layers for a depth trend.

Every threshold is fixed here, before any run, and listed in :data:`THRESHOLDS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import flatness
from . import uncertainty as U

#: A difference counts when it lies beyond Z standard errors (≈ 95 % two-sided for a normal error).
Z = 2.0
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)

#: The basin of θ1 is {f ≤ f(θ1) + FLAT_EPS} in training loss (nats; absolute, so a run with a
#: higher final loss gets no larger allowance).
FLAT_EPS = 0.1
#: Claim 2: a rise counts when the loss goes up between neighbouring points on α ∈ [0, 1] by more
#: than MONOTONE_TOL × (max − min of the curve there).
MONOTONE_TOL = 0.01
#: Claim 5: "within a few points" = at most 2 points of the dev metric between best and last.
OVERFIT_POINTS = 0.02
#: Claim 5: the long run has trained past convergence when its final training loss (mean of the
#: last 5 % of steps) is below this.
LONG_LOSS_MAX = 0.05
#: Claim 7: the neighbourhood of θ1 in which the two surfaces are compared: |α − 1| ≤ this.
NEIGHBOURHOOD = 0.5
#: Claim 8: "grows with depth" = Spearman correlation with the layer index ≥ DEPTH_TREND.
DEPTH_TREND = 0.5
#: Claim 9: "costs ≤ ~1 point" and "costs a lot".
RESTORE_BOTTOM_MAX = 0.01
RESTORE_TOP_MIN = 0.05
#: A run has trained when its final training loss is at most this share of its initial one (both
#: means of 5 % of the steps); comparisons with a run that did not train are inconclusive.
TRAINED_FRACTION = 0.9

THRESHOLDS: tuple[tuple[str, float, str], ...] = (
    ("Z", Z, "a margin counts when it exceeds Z standard errors (both directions)"),
    ("FLAT_EPS", FLAT_EPS, "basin of θ1: training loss ≤ f(θ1) + ε (nats)"),
    ("MONOTONE_TOL", MONOTONE_TOL, "claim 2: a rise counts above this share of the curve's range on [0, 1]"),
    ("OVERFIT_POINTS", OVERFIT_POINTS, "claim 5: best − last dev metric allowed over the long run"),
    ("LONG_LOSS_MAX", LONG_LOSS_MAX, "claim 5: final training loss the long run must reach"),
    ("NEIGHBOURHOOD", NEIGHBOURHOOD, "claim 7: surfaces compared on grid points with |α − 1| ≤ this"),
    ("DEPTH_TREND", DEPTH_TREND, "claim 8: Spearman ρ(layer index, measure) required"),
    ("RESTORE_BOTTOM_MAX", RESTORE_BOTTOM_MAX, "claim 9: largest cost of restoring the bottom third"),
    ("RESTORE_TOP_MIN", RESTORE_TOP_MIN, "claim 9: smallest cost of restoring the top third"),
    ("TRAINED_FRACTION", TRAINED_FRACTION, "a run trained if final / initial training loss ≤ this"),
)


@dataclass(frozen=True)
class Claim:
    """One claim: where the book computes it, what it says, how it is measured."""

    id: int | str
    chapter: str
    statement: str
    computed: str
    extension: bool = False
    #: decided under the matched-learning-rate pairings too (it depends on how the runs trained)
    controlled: bool = False


_CLAIM_LIST = (
    Claim(1, "01", "PT's training loss is lower than RI's at 10 %, 50 % and 100 % of the budget",
          "mean training loss of the 5 % of steps ending at each fraction; uncertainty: step-to-step noise",
          controlled=True),
    Claim(2, "01", "PT's 1D curve on α ∈ [0, 1] is (near-)monotone",
          "rises between neighbouring points of f(α) = L(θ0 + α·δ1) on training sentences; uncertainty: "
          "paired bootstrap of each step over sentences"),
    Claim(4, "01", "PT's trajectory is straighter",
          "path length / displacement of the checkpoints in parameter space; uncertainty: seeds", controlled=True),
    Claim(3, "02", "PT's optimum is wider (along δ1, along a random direction, and in area)",
          "line searches from θ1 along filter-normalised directions until the loss rises by ε; sub-level area "
          "on the surface; uncertainty: bootstrap over sentences", controlled=True),
    Claim(6, "02", "Flatter optima generalise better: PT has the higher dev metric and the smaller train-dev gap",
          "train and dev metrics at θ1 from one evaluation path; uncertainty: paired bootstrap over sentences",
          controlled=True),
    Claim("H", "02", "PT's optimum is flatter by curvature (Hessian top eigenvalue and trace at θ1)",
          "Lanczos top eigenvalue (uncertainty: Ritz residual) and Hutchinson trace (its standard error)",
          controlled=True),
    Claim(5, "03", "PT is robust to overfitting: its dev metric stays within a few points of its best",
          "best − last dev metric of a long run at constant learning rate after warm-up; uncertainty: "
          "bootstrap over dev sentences"),
    Claim(7, "03", "Train-loss and dev-error surfaces agree more for PT than for RI",
          "Spearman ρ between the two surfaces near θ1; uncertainty: bootstrap over sentences"),
    Claim(8, "04", "Lower layers are more invariant: change and sharpness grow with depth",
          "Spearman ρ of per-layer relative change and per-layer curve rise with depth; uncertainty: "
          "bootstrap over layers"),
    Claim(9, "04", "Restoring the bottom third of layers costs ≤ ~1 point; the top third costs a lot",
          "dev metric lost when those layers go back to θ0, on the run's whole dev subset; uncertainty: "
          "paired bootstrap over sentences"),
    Claim("L", "05", "PT seeds share one basin (no barrier above ε between their θ1) and RI seeds do not",
          "barrier of the training loss on the straight segment between every pair of seeds' θ1 (the largest "
          "rise above the chord of its end values); uncertainty: bootstrap over sentences", extension=True),
)
#: Every claim, by id, in the order the book presents them.
CLAIMS: dict[int | str, Claim] = {c.id: c for c in _CLAIM_LIST}


def register(claim: Claim) -> None:
    """Add a claim (e.g. an extension chapter's) to :data:`CLAIMS`."""
    CLAIMS[claim.id] = claim


def chapter_claims() -> dict[str, tuple[int | str, ...]]:
    """``{chapter: claim ids}`` in book order."""
    out: dict[str, list] = {}
    for c in CLAIMS.values():
        out.setdefault(c.chapter, []).append(c.id)
    return {k: tuple(v) for k, v in sorted(out.items())}


# ----------------------------------------------------------------------------- the rule

def decide(margin: float, uncertainty: float | None, censored: str | None = None,
           untrained: str | None = None, no_uncertainty: str = "no uncertainty available") -> tuple[str, str]:
    """The verdict and its reason for a margin (positive = the claimed side) and its standard error."""
    if untrained:
        return INCONCLUSIVE, untrained
    if censored:
        return INCONCLUSIVE, censored
    if margin is None or not math.isfinite(margin):
        return INCONCLUSIVE, "not computed"
    if uncertainty is None or not math.isfinite(uncertainty):
        return INCONCLUSIVE, no_uncertainty
    if margin > Z * uncertainty:
        return HOLDS, f"margin {margin:.3g} > {Z:g} × {uncertainty:.2g}"
    if margin < -Z * uncertainty:
        return FAILS, f"margin {margin:.3g} < −{Z:g} × {uncertainty:.2g}"
    return INCONCLUSIVE, f"margin {margin:.3g} within ±{Z:g} × {uncertainty:.2g}"


def row(claim: int | str, quantity: str, pt: float | None, ri: float | None, margin: float,
        uncertainty: float | None, criterion: str, *, scored: bool = True, censored: str | None = None,
        untrained: str | None = None, no_uncertainty: str = "no uncertainty available",
        verdict: tuple[str, str] | None = None) -> dict[str, Any]:
    """One scorecard row; the verdict comes from :func:`decide` (or is given, for rules that combine
    several margins, e.g. claim 2's per-step rises)."""
    v, reason = verdict or decide(margin, uncertainty, censored, untrained, no_uncertainty)
    return {"claim": claim, "statement": CLAIMS[claim].statement, "quantity": quantity,
            "pretrained": _f(pt), "scratch": _f(ri), "margin": _f(margin), "uncertainty": _f(uncertainty),
            "criterion": criterion if scored else f"{criterion} (reported)", "scored": bool(scored),
            "verdict": v, "reason": reason, "blocked": censored or untrained or ""}


def _f(x: Any) -> float:
    return float(x) if x is not None and np.isfinite(x) else float("nan")


def trained_reason(steps: Mapping[str, pd.DataFrame]) -> str | None:
    """``None`` when every run in ``steps`` ({"PT": steps, "RI": steps}) trained (final / initial
    training loss ≤ :data:`TRAINED_FRACTION`), else the reason naming the run that did not."""
    for name, df in steps.items():
        loss = df["loss"].to_numpy()
        first, _ = U.window_mean_se(loss, 0.05)
        last, _ = U.window_mean_se(loss, 1.0)
        ratio = last / first if first > 0 else float("nan")
        if not first > 0 or ratio > TRAINED_FRACTION:
            return (f"{name} did not train (training loss {first:.3g} → {last:.3g}, ratio {ratio:.2f} > "
                    f"{TRAINED_FRACTION})")
    return None


# ----------------------------------------------------------------------------- the claims' numbers

def claim_training_loss(pt_steps: pd.DataFrame, ri_steps: pd.DataFrame,
                        fractions: Sequence[float] = (0.1, 0.5, 1.0)) -> list[dict]:
    """Claim 1: mean training loss of PT vs RI over the 5 % of steps ending at each fraction."""
    rows = []
    for f in fractions:
        a, sa = U.window_mean_se(pt_steps["loss"].to_numpy(), f)
        b, sb = U.window_mean_se(ri_steps["loss"].to_numpy(), f)
        rows.append(row(1, f"training loss at {f:.0%} of the budget", a, b, b - a, math.hypot(sa, sb), "PT < RI"))
    return rows


def _step_rises(alphas: np.ndarray, sample_losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rises of the mean curve between neighbours on [0, 1] (the steps that
    :func:`bertscape.flatness.count_rises` counts), their paired standard errors over sentences,
    and the curve's range there."""
    s = flatness.unit_segment(sample_losses, alphas)  # (points on [0, 1] in order of α, sentences)
    f = s.mean(axis=1)
    diffs = np.diff(s, axis=0)  # per sentence: f(α_{i+1}) − f(α_i)
    se = diffs.std(axis=1, ddof=1) / np.sqrt(s.shape[1])
    return np.diff(f), se, float(np.ptp(f)) if len(f) else 0.0


def monotone_row(alphas: np.ndarray, sample_losses: np.ndarray, ri_alphas: np.ndarray | None = None,
                 ri_sample_losses: np.ndarray | None = None, untrained: str | None = None) -> dict:
    """Claim 2: does PT's training loss rise between neighbouring points of α ∈ [0, 1]?

    ``sample_losses``: (points, sentences). A step *fails* the claim when its rise exceeds
    :data:`MONOTONE_TOL` × range by more than Z paired standard errors, *holds* when it stays below
    that tolerance by more than Z standard errors; the claim holds when every step holds and fails
    when any step fails. The row shows the step closest to failing.
    """
    rises, se, rng = _step_rises(alphas, sample_losses)
    tol = MONOTONE_TOL * max(rng, 1e-12)
    margins = tol - rises
    states = [decide(m, s)[0] for m, s in zip(margins, se)]
    worst = int(np.argmin(margins - Z * se)) if len(margins) else 0
    n_pt = int(np.sum(rises > tol))
    n_ri = float("nan")
    if ri_sample_losses is not None:
        r_ri, _, rng_ri = _step_rises(ri_alphas, ri_sample_losses)
        n_ri = int(np.sum(r_ri > MONOTONE_TOL * max(rng_ri, 1e-12)))
    if untrained:
        verdict = (INCONCLUSIVE, untrained)
    elif FAILS in states:
        verdict = (FAILS, f"{states.count(FAILS)} step(s) rise beyond {MONOTONE_TOL:.0%} of the range by > {Z:g} s.e.")
    elif all(s == HOLDS for s in states):
        verdict = (HOLDS, f"every step stays below {MONOTONE_TOL:.0%} of the range by > {Z:g} s.e.")
    else:
        verdict = (INCONCLUSIVE, f"{states.count(INCONCLUSIVE)} step(s) within noise of the tolerance")
    return row(2, f"rises on α∈[0,1] above {MONOTONE_TOL:.0%} of the range", n_pt, n_ri,
               float(margins[worst]) if len(margins) else float("nan"),
               float(se[worst]) if len(se) else float("nan"), "PT has no rise", untrained=untrained,
               verdict=verdict)


#: Claim 3's width rows: key of :func:`bertscape.linesearch.run_widths`, label, scored.
WIDTH_ROWS = (
    ("d1_fn", "basin width along δ1, filter-normalised to θ1 (common unit)", True),
    ("d2_fn", "basin width along a random direction filter-normalised to θ1 (common unit)", True),
    ("d1", "basin width along δ1 (α units)", False),
    ("d2", "basin width along the figures' δ2 (β units)", False),
)


def claim_wider(pt: Mapping[str, Mapping[str, float]], ri: Mapping[str, Mapping[str, float]],
                pt_area: Mapping[str, float] | None = None, ri_area: Mapping[str, float] | None = None,
                untrained: str | None = None) -> list[dict]:
    """Claim 3: widths from line searches (``{key: {width, width_se, censored}}`` per run, keys of
    :data:`WIDTH_ROWS`) and the sub-level area (``{area_rel, area_rel_se, area, touches_edge}``)."""
    rows = []
    for key, label, scored in WIDTH_ROWS:
        if key not in pt or key not in ri:
            continue
        a, b = pt[key], ri[key]
        cens = [n for n, w in (("PT", a), ("RI", b)) if w.get("censored")]
        rows.append(row(3, label, a["width"], b["width"], a["width"] - b["width"],
                        math.hypot(a["width_se"], b["width_se"]), "PT > RI", scored=scored, untrained=untrained,
                        censored=(f"{' and '.join(cens)} basin wider than the line search's cap" if cens else None)))
    if pt_area is not None and ri_area is not None:
        cens = [n for n, w in (("PT", pt_area), ("RI", ri_area)) if w.get("touches_edge")]
        reason = f"{' and '.join(cens)} sub-level set reaches the edge of the grown grid" if cens else None
        rows.append(row(3, "sub-level area / ‖θ1‖² (relative parameter units)", pt_area["area_rel"],
                        ri_area["area_rel"], pt_area["area_rel"] - ri_area["area_rel"],
                        math.hypot(pt_area["area_rel_se"], ri_area["area_rel_se"]), "PT > RI",
                        censored=reason, untrained=untrained))
        rows.append(row(3, "sub-level area (α·β units)", pt_area["area"], ri_area["area"],
                        pt_area["area"] - ri_area["area"], float("nan"), "PT > RI", scored=False, censored=reason))
    return rows


def path_ratio(points: np.ndarray) -> float:
    """Path length / displacement of a trajectory given as rows of coordinates (1 = straight)."""
    pts = np.asarray(points, dtype=float)
    length = float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
    disp = float(np.linalg.norm(pts[-1] - pts[0]))
    return length / disp if disp > 0 else float("inf")


def steps_to_basin(steps: pd.DataFrame, rel: float = 0.1) -> float:
    """Share of the budget after which the smoothed training loss stays within ``rel`` of the
    loss range above its final value (a proxy for "reaching the basin")."""
    loss = steps["loss"].rolling(max(1, len(steps) // 20), min_periods=1).mean().to_numpy()
    final, top = loss[-1], loss.max()
    thresh = final + rel * (top - final)
    above = np.flatnonzero(loss > thresh)
    last_above = above[-1] + 1 if len(above) else 0
    return float(min(last_above + 1, len(loss)) / len(loss))


def claim_straighter(pt_ratio: float, ri_ratio: float, pt_basin: float, ri_basin: float,
                     untrained: str | None = None) -> list[dict]:
    """Claim 4: path length / displacement (its only noise is the seed: one seed leaves it
    inconclusive until :func:`summarise` combines seeds) and the share of the budget to the basin."""
    one = "one seed: a path's straightness has no uncertainty without a spread over seeds"
    return [row(4, "path length / displacement of the checkpoints", pt_ratio, ri_ratio, ri_ratio - pt_ratio, None,
                "PT < RI", untrained=untrained, no_uncertainty=one),
            row(4, "share of budget until loss stays near its final value", pt_basin, ri_basin, ri_basin - pt_basin,
                None, "PT < RI", scored=False, no_uncertainty=one)]


def claim_overfitting(pt_preds: np.ndarray, ri_preds: np.ndarray, labels: np.ndarray, metric: U.MetricFn,
                      pt_steps: pd.DataFrame, ri_steps: pd.DataFrame, metric_name: str) -> list[dict]:
    """Claim 5: best − last dev metric over a long run (``*_preds``: (evaluations, sentences)).

    The bootstrap resamples the dev sentences and recomputes best − last (the best epoch chosen
    again in every resample). Inconclusive unless PT's long run reaches a final training loss
    below :data:`LONG_LOSS_MAX` (it must have trained past convergence)."""
    def drop(preds: np.ndarray) -> tuple[float, float]:
        m = metric(preds, labels)
        value = float(m.max() - m[-1])
        se = U.bootstrap_se(lambda idx: float((lambda x: x.max() - x[-1])(metric(preds[:, idx], labels[idx]))),
                            len(labels))
        return value, se

    (dp, sp), (dr, sr) = drop(pt_preds), drop(ri_preds)
    lp, _ = U.window_mean_se(pt_steps["loss"].to_numpy(), 1.0)
    lr, _ = U.window_mean_se(ri_steps["loss"].to_numpy(), 1.0)
    untrained = None if lp < LONG_LOSS_MAX else (
        f"PT's long run did not train past convergence (final training loss {lp:.3g} ≥ {LONG_LOSS_MAX})")
    return [row(5, f"best − last dev {metric_name} over the long run", dp, dr, OVERFIT_POINTS - dp, sp,
                f"PT ≤ {OVERFIT_POINTS}", untrained=untrained),
            row(5, f"best − last dev {metric_name}, PT vs RI", dp, dr, dr - dp, math.hypot(sp, sr), "PT ≤ RI",
                scored=False),
            row(5, "final training loss of the long run", lp, lr, LONG_LOSS_MAX - lp, float("nan"),
                f"PT < {LONG_LOSS_MAX}", scored=False)]


def claim_generalise(pt: Mapping[str, np.ndarray], ri: Mapping[str, np.ndarray], metric: U.MetricFn,
                     metric_name: str, untrained: str | None = None) -> list[dict]:
    """Claim 6 from one evaluation of θ1 (``{train_pred, train_labels, dev_pred, dev_labels}`` per
    run, the same sentences for PT and RI): dev metric and train − dev gap, paired bootstrap."""
    def m(d, split, idx=None):
        p, y = d[f"{split}_pred"], d[f"{split}_labels"]
        return float(metric(p if idx is None else p[idx], y if idx is None else y[idx]))

    dev_pt, dev_ri = m(pt, "dev"), m(ri, "dev")
    n_dev, n_tr = len(pt["dev_labels"]), len(pt["train_labels"])
    se_dev = U.bootstrap_se(lambda i: m(pt, "dev", i) - m(ri, "dev", i), n_dev)
    gap_pt, gap_ri = m(pt, "train") - dev_pt, m(ri, "train") - dev_ri
    gaps = [(m(ri, "train", t) - m(ri, "dev", d)) - (m(pt, "train", t) - m(pt, "dev", d))
            for t, d in U.paired_resamples(n_tr, n_dev)]
    se_gap = float(np.std(gaps, ddof=1))
    return [row(6, f"dev {metric_name} at θ1", dev_pt, dev_ri, dev_pt - dev_ri, se_dev, "PT > RI",
                untrained=untrained),
            row(6, f"train − dev {metric_name} gap at θ1", gap_pt, gap_ri, gap_ri - gap_pt, se_gap, "PT < RI",
                untrained=untrained)]


def neighbourhood_mask(alphas: np.ndarray, betas: np.ndarray, centre_alpha: float = 1.0) -> np.ndarray:
    """Grid points with |α − α(θ1)| ≤ :data:`NEIGHBOURHOOD` (every β of the surface)."""
    a = np.asarray(alphas, float)
    return np.broadcast_to((np.abs(a - centre_alpha) <= NEIGHBOURHOOD + 1e-9)[:, None], (len(a), len(betas)))


def surface_agreement(train_samples: np.ndarray, dev_preds: np.ndarray, dev_labels: np.ndarray,
                      mask: np.ndarray, metric: U.MetricFn, train_idx: np.ndarray | None = None,
                      dev_idx: np.ndarray | None = None) -> float:
    """Spearman ρ between the mean training loss and the dev error over the masked grid points
    (``train_samples``: (α, β, sentences); ``dev_preds``: (α, β, sentences))."""
    t = train_samples if train_idx is None else train_samples[..., train_idx]
    p = dev_preds if dev_idx is None else dev_preds[..., dev_idx]
    y = dev_labels if dev_idx is None else dev_labels[dev_idx]
    return U.spearman(t.mean(axis=-1)[mask], 1.0 - metric(p, y)[mask])


def claim_surfaces_agree(pt: Mapping[str, np.ndarray], ri: Mapping[str, np.ndarray], metric: U.MetricFn,
                         untrained: str | None = None) -> list[dict]:
    """Claim 7 from per-sentence surfaces (``{train_samples, dev_preds, dev_labels, dev_samples,
    mask}`` per run; same sentences for PT and RI): ρ(train loss, dev error) near θ1, paired bootstrap;
    ρ(train loss, dev loss) reported."""
    def rho(d, ti=None, di=None):
        return surface_agreement(d["train_samples"], d["dev_preds"], d["dev_labels"], d["mask"], metric, ti, di)

    rp, rr = rho(pt), rho(ri)
    n_tr, n_dev = pt["train_samples"].shape[-1], pt["dev_preds"].shape[-1]
    diffs = [rho(pt, t, d) - rho(ri, t, d)
             for t, d in U.paired_resamples(n_tr, n_dev)]
    se = float(np.std(diffs, ddof=1))

    def rho_loss(d):
        return U.spearman(d["train_samples"].mean(-1)[d["mask"]], d["dev_samples"].mean(-1)[d["mask"]])

    lp, lr = rho_loss(pt), rho_loss(ri)
    return [row(7, f"Spearman ρ(train loss, dev error) for |α − 1| ≤ {NEIGHBOURHOOD}", rp, rr, rp - rr, se,
                "PT > RI", untrained=untrained),
            row(7, f"Spearman ρ(train loss, dev loss) for |α − 1| ≤ {NEIGHBOURHOOD}", lp, lr, lp - lr, float("nan"),
                "PT > RI", scored=False)]


def depth_trend(values: Sequence[float]) -> float:
    """Spearman correlation of a per-layer measure with layer index (0 = lowest)."""
    v = np.asarray(values, dtype=float)
    return U.spearman(np.arange(len(v)), v)


def claim_layers_invariant(pt_change: Sequence[float], pt_sharp: Sequence[float],
                           ri_change: Sequence[float], ri_sharp: Sequence[float],
                           untrained: str | None = None) -> list[dict]:
    """Claim 8: per-layer relative change and per-layer curve rise vs depth (encoder layers);
    uncertainty of PT's ρ by a bootstrap over its layers."""
    rows = []
    for label, a, b in (("relative change", pt_change, ri_change), ("per-layer sharpness", pt_sharp, ri_sharp)):
        rp, rr = depth_trend(a), depth_trend(b)
        rows.append(row(8, f"Spearman ρ(layer index, {label})", rp, rr, rp - DEPTH_TREND, U.depth_trend_se(a),
                        f"PT ≥ {DEPTH_TREND}", untrained=untrained))
    return rows


def claim_restore(pt: Mapping[str, np.ndarray], ri: Mapping[str, np.ndarray] | None, metric: U.MetricFn,
                  metric_name: str = "accuracy", untrained: str | None = None) -> list[dict]:
    """Claim 9 from dev predictions at θ1 and with the bottom / top third of the encoder layers put
    back to θ0 (``{labels, full, bottom, top}`` per run, on the run's whole dev subset): the cost in
    the dev metric, with a paired bootstrap over the sentences."""
    def cost(d, which, idx=None):
        y = d["labels"] if idx is None else d["labels"][idx]
        pick = (lambda p: p) if idx is None else (lambda p: p[idx])
        return float(metric(pick(d["full"]), y) - metric(pick(d[which]), y))

    rows = []
    for which, crit, margin_fn in (
            ("bottom", f"PT ≤ {RESTORE_BOTTOM_MAX}", lambda c: RESTORE_BOTTOM_MAX - c),
            ("top", f"PT ≥ {RESTORE_TOP_MIN}", lambda c: c - RESTORE_TOP_MIN)):
        c = cost(pt, which)
        se = U.bootstrap_se(lambda i: cost(pt, which, i), len(pt["labels"]))
        rows.append(row(9, f"cost in dev {metric_name} of restoring the {which} third to θ0", c,
                        cost(ri, which) if ri is not None else None, margin_fn(c), se, crit, untrained=untrained))
    return rows


def claim_curvature(pt: Mapping[str, float], ri: Mapping[str, float], untrained: str | None = None) -> list[dict]:
    """Curvature at θ1 (``{top_eigenvalue, top_residual, trace, trace_stderr}`` per run)."""
    return [row("H", "Hessian top eigenvalue at θ1 (Lanczos)", pt["top_eigenvalue"], ri["top_eigenvalue"],
                ri["top_eigenvalue"] - pt["top_eigenvalue"], math.hypot(pt["top_residual"], ri["top_residual"]),
                "PT < RI", untrained=untrained),
            row("H", "Hessian trace at θ1 (Hutchinson)", pt["trace"], ri["trace"], ri["trace"] - pt["trace"],
                math.hypot(pt["trace_stderr"], ri["trace_stderr"]), "PT < RI", untrained=untrained)]


def claim_one_basin(pt: Sequence[tuple[float, float]], ri: Sequence[tuple[float, float]],
                    untrained: str | None = None) -> list[dict]:
    """Claim L from the training-loss barriers ``(barrier, standard error)`` of every segment
    between two PT seeds and between two RI seeds: PT's largest barrier must lie below ε and
    RI's smallest above it (each beyond Z standard errors)."""
    if not pt or not ri:
        reason = "fewer than two seeds of " + " and ".join(n for n, b in (("PT", pt), ("RI", ri)) if not b)
        return [row("L", "barriers between seeds", None, None, float("nan"), None, "—", censored=reason)]
    pt_max, ri_max, pt_min, ri_min = max(pt), max(ri), min(pt), min(ri)
    return [row("L", "largest barrier between PT seeds (training loss)", pt_max[0], ri_max[0],
                FLAT_EPS - pt_max[0], pt_max[1], f"PT < ε = {FLAT_EPS}", untrained=untrained),
            row("L", "smallest barrier between RI seeds (training loss)", pt_min[0], ri_min[0],
                ri_min[0] - FLAT_EPS, ri_min[1], f"RI > ε = {FLAT_EPS}", untrained=untrained)]


# ----------------------------------------------------------------------------- tables

def table(rows: Iterable[dict], **labels: Any) -> pd.DataFrame:
    """Rows as a DataFrame with label columns in front (e.g. ``task=…, seed=…, pairing=…``)."""
    df = pd.DataFrame(list(rows))
    for k, v in reversed(list(labels.items())):
        df.insert(0, k, v)
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per quantity over seeds: means, and the verdict from the seed-mean margin.

    Uncertainty of the mean margin: with ≥ 2 seeds, the standard error over seeds combined with the
    within-seed uncertainties (root-mean-square / √n); with one seed, that seed's own uncertainty. A
    quantity censored or blocked (a run that did not train) in any seed stays inconclusive.
    """
    keys = [c for c in ("task", "pairing", "claim", "quantity", "criterion", "scored") if c in df.columns]
    out = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        n = len(g)
        within = g["uncertainty"].to_numpy(dtype=float)
        margins = g["margin"].to_numpy(dtype=float)
        w = float(np.sqrt(np.nanmean(within ** 2)) / np.sqrt(n)) if np.isfinite(within).any() else float("nan")
        s = U.seed_se(margins)
        unc = math.hypot(s, w) if np.isfinite(s) and np.isfinite(w) else (s if np.isfinite(s) else w)
        blocked = next((b for b in g["blocked"] if b), None)
        margin = float(np.mean(margins))
        if n == 1:
            verdict, reason = g["verdict"].iloc[0], g["reason"].iloc[0]
        elif blocked:
            verdict, reason = INCONCLUSIVE, blocked
        else:
            verdict, reason = decide(margin, unc)
        rec = dict(zip(keys, k if isinstance(k, tuple) else (k,)))
        rec.update(statement=g["statement"].iloc[0], pretrained=float(g["pretrained"].mean()),
                   pretrained_sd=float(g["pretrained"].std()) if n > 1 else float("nan"),
                   scratch=float(g["scratch"].mean()),
                   scratch_sd=float(g["scratch"].std()) if n > 1 else float("nan"),
                   margin=margin, uncertainty=unc if n > 1 else float(g["uncertainty"].iloc[0]), seeds=n,
                   verdict=verdict, reason=reason)
        out.append(rec)
    return pd.DataFrame(out)


def claim_verdict(states: Iterable[str]) -> str:
    """A claim's verdict from its scored rows: fails if any fails, holds if all hold."""
    states = list(states)
    if not states:
        return INCONCLUSIVE
    if FAILS in states:
        return FAILS
    return HOLDS if all(s == HOLDS for s in states) else INCONCLUSIVE


def claim_matrix(summary: pd.DataFrame, pairing: str = "profile") -> pd.DataFrame:
    """Claims × tasks: each claim's verdict under one pairing (from :func:`summarise`'s rows)."""
    s = summary[summary["scored"]]
    if "pairing" in s.columns:
        s = s[s["pairing"] == pairing]
    v = s.groupby(["claim", "task"], sort=False)["verdict"].agg(claim_verdict).unstack("task")
    order = [c for c in CLAIMS if c in v.index]
    return v.loc[order]


def pairing_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """Claim × task × pairing verdicts, with a note where a claim holds under one pairing only."""
    s = summary[summary["scored"]]
    v = s.groupby(["task", "claim", "pairing"], sort=False)["verdict"].agg(claim_verdict).unstack("pairing")
    cols = list(v.columns)

    def note(r) -> str:
        held = [c for c in cols if r.get(c) == HOLDS]
        if held and len(held) < r.notna().sum():
            return "holds only under " + ", ".join(held)
        return ""

    v["note"] = v.apply(note, axis=1)
    v = v.fillna("—")  # a claim that is not decided under that pairing (not marked controlled)
    v.columns.name = None
    return v.reset_index()
