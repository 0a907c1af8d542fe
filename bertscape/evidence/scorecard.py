"""The claims' evidence: the rule that turns a measured margin and its sampling error into a verdict,
the rows each claim is scored on (pure functions of measured arrays), and the summary over seeds.

**Within one seed.** Every scored row carries a *margin* — how far the measured quantity lies on the
claimed side of its criterion (PT − RI or RI − PT for a comparison, threshold − value or value −
threshold for a threshold) — and the sampling error of that margin: a standard error (a bootstrap over
the evaluation sentences, shared by PT and RI and taken from the replicates of their *difference*; the
noise of a window of training-step differences on the same batches; the spread of per-batch Hessian
estimates) or, for a bounded or skewed statistic, a percentile or BCa interval of the margin. With a
standard error the row **holds** when margin > :data:`Z` × s.e., **fails** when margin < −Z × s.e.;
with an interval it holds when the interval lies wholly above 0 and fails when wholly below; otherwise
it is **inconclusive**, and always when a run did not train. A quantity that is only a bound (a basin
wider than its search: the width is at least the cap) decides in the one direction the bound allows.
Rows marked *reported* (``scored=False``) are shown with their verdict but never count.

**Over seeds** (:func:`summarise`). With n ≥ 2 seeds a row is decided on its n per-seed margins alone:
the interval mean ± t₀.₉₇₅(n − 1) × s.e. of the mean (Student's t: 12.7 for 2 seeds, 4.30 for 3). The
within-seed sampling errors are not added again: each seed's margin already carries its own sentence
noise, and that is part of the spread between seeds. With one seed a verdict rests on the within-seed
error alone, which cannot see how much a second seed would differ; such a verdict is marked *one seed*
wherever it is shown.

A claim holds when all its scored rows hold, fails when any fails, and is inconclusive otherwise. The
flatness claims (3: wider, H: flatter by curvature) are decided separately in two units
(:data:`UNITS`). Every threshold is fixed here, before any run, and listed in :data:`THRESHOLDS`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from bertscape.base.errors import BertscapeError
from bertscape.evidence import uncertainty as U
from bertscape.geometry import flatness

#: A standard error counts when the margin exceeds Z of them (≈ 95 % two-sided for a normal error).
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
#: Claim 5: the long run has trained past convergence when its final training loss, measured in eval
#: mode (no dropout) on a fixed subset of its training sentences, is below this.
LONG_LOSS_MAX = 0.05
#: Claim 7: the neighbourhood of θ1 in which the two surfaces are compared: |α − 1| ≤ this.
NEIGHBOURHOOD = 0.5
#: Claim 8: "grows with depth" = Spearman correlation with the layer index ≥ DEPTH_TREND.
DEPTH_TREND = 0.5
#: Claim 9: "costs ≤ ~1 point" and "costs a lot".
RESTORE_BOTTOM_MAX = 0.01
RESTORE_TOP_MIN = 0.05
#: A run has trained when (a) its final training loss is at most this share of its initial one (both
#: means of 5 % of the steps) and (b) its dev metric at θ1 exceeds the majority-class baseline by
#: :data:`TRAINED_MARGIN` beyond Z bootstrap standard errors. Comparisons with a run that did not train
#: are inconclusive.
TRAINED_FRACTION = 0.9
TRAINED_MARGIN = 0.05

THRESHOLDS: tuple[tuple[str, float, str], ...] = (
    ("Z", Z, "within one seed, a margin counts when it exceeds Z standard errors (both directions)"),
    ("LEVEL", U.LEVEL, "coverage of every interval: percentile/BCa bootstraps, and the t rule over seeds"),
    ("FLAT_EPS", FLAT_EPS, "basin of θ1: training loss ≤ f(θ1) + ε (nats)"),
    ("MONOTONE_TOL", MONOTONE_TOL, "claim 2: a rise counts above this share of the curve's range on [0, 1]"),
    ("OVERFIT_POINTS", OVERFIT_POINTS, "claim 5: best − last dev metric allowed over the long run"),
    ("LONG_LOSS_MAX", LONG_LOSS_MAX, "claim 5: final training loss (eval mode) the long run must reach"),
    ("NEIGHBOURHOOD", NEIGHBOURHOOD, "claim 7: surfaces compared on grid points with |α − 1| ≤ this"),
    ("DEPTH_TREND", DEPTH_TREND, "claim 8: Spearman ρ(layer index, measure) required"),
    ("RESTORE_BOTTOM_MAX", RESTORE_BOTTOM_MAX, "claim 9: largest cost of restoring the bottom third"),
    ("RESTORE_TOP_MIN", RESTORE_TOP_MIN, "claim 9: smallest cost of restoring the top third"),
    ("TRAINED_FRACTION", TRAINED_FRACTION, "a run trained if final / initial training loss ≤ this …"),
    ("TRAINED_MARGIN", TRAINED_MARGIN, "… and its dev metric beats the majority class by this beyond Z s.e."),
)

#: The two units the flatness claims are decided in. ``paper``: the figures' own axes (α in multiples
#: of δ1 = θ1 − θ0, β in multiples of the random δ2 scaled row by row to δ1), in which the paper's
#: pictures read; ``invariant``: directions filter-normalised to θ1 (each row of a weight matrix moves
#: by t times its own norm in θ1), which mean the same for a pre-trained network (‖θ1‖ ≈ 280 for
#: MiniLM) and one trained from scratch (≈ 120): the loss of the parts that feed a LayerNorm does not
#: change when their weights are scaled, so raw widths and curvatures partly measure weight scale
#: (Dinh et al. 2017). The invariant unit is the headline.
UNITS: dict[str, str] = {
    "paper": "the paper's unit: α along δ1, β along the figures' δ2",
    "invariant": "scale-invariant: directions filter-normalised to θ1",
}


# ----------------------------------------------------------------------------- claims as objects

RowsFn = Callable[..., list[dict]]


@dataclass(frozen=True)
class Claim:
    """One claim: what it says, how it is measured, the function that computes its rows and the ids of
    the quantities those rows carry (what chapters ask for by id).

    ``rows(P, task, seed, pairing)`` returns the claim's rows (:func:`row`) for one task, seed and
    pairing; ``quantities`` maps every ``qid`` the rows may carry to a short description.
    ``controlled``: decided under the matched-learning-rate pairings too. ``across_seeds``: its rows
    already pool the seeds (computed once, e.g. barriers *between* seeds). ``units``: the units its
    rows are decided in (flatness claims: :data:`UNITS`; others none)."""

    id: int | str
    chapter: str
    statement: str
    computed: str
    rows: RowsFn
    quantities: Mapping[str, str]
    extension: bool = False
    controlled: bool = False
    across_seeds: bool = False
    units: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not callable(self.rows):
            raise BertscapeError(f"claim {self.id!r}: rows={self.rows!r} is not accepted; expected the function "
                                 "that computes the claim's rows, rows(P, task, seed, pairing)")
        if not isinstance(self.quantities, Mapping) or not self.quantities:
            raise BertscapeError(f"claim {self.id!r}: quantities={self.quantities!r} is not accepted; expected a "
                                 "non-empty {qid: description} of the quantities its rows carry")
        bad = [u for u in self.units if u not in UNITS]
        if bad:
            raise BertscapeError(f"claim {self.id!r}: units={self.units!r} is not accepted; expected a subset of "
                                 f"{tuple(UNITS)}")

    @property
    def name(self) -> str:
        """How the book names it: ``claim 3``, or ``curvature`` for claim H."""
        return "curvature" if self.id == "H" else f"claim {self.id}"


class ClaimRegistry(dict):
    """Claims by id, in the order the book presents them. :meth:`register` is the only way in."""

    def register(self, claim: Claim) -> Claim:
        """Add ``claim`` (a :class:`Claim`, which cannot exist without its rows function); an id
        already registered is an error."""
        if not isinstance(claim, Claim):
            raise BertscapeError(f"register(claim={claim!r}) is not accepted; expected a scorecard.Claim")
        if claim.id in self:
            raise BertscapeError(f"claim {claim.id!r} is already registered")
        self[claim.id] = claim
        return claim

    def __setitem__(self, key: Any, value: Any) -> None:
        if not isinstance(value, Claim) or key != value.id:
            raise BertscapeError("claims enter the registry through register(Claim(...)) only")
        super().__setitem__(key, value)

    def chapters(self) -> dict[str, tuple[int | str, ...]]:
        """``{chapter: claim ids}`` in book order."""
        out: dict[str, list] = {}
        for c in self.values():
            out.setdefault(c.chapter, []).append(c.id)
        return {k: tuple(v) for k, v in sorted(out.items())}

    def qid(self, claim: int | str, qid: str) -> str:
        """``qid`` checked against the claim's quantities (an error names the claim's qids)."""
        if claim not in self:
            raise BertscapeError(f"claim={claim!r} is not accepted; expected one of {list(self)}")
        if qid not in self[claim].quantities:
            raise BertscapeError(f"qid={qid!r} is not a quantity of {self[claim].name}; expected one of "
                                 f"{list(self[claim].quantities)}")
        return qid


# ----------------------------------------------------------------------------- the rule

BOUNDS = ("", "lower", "upper")


def decide(margin: float | None, se: float | None = None, *, interval: tuple[float, float] | None = None,
           bound: str = "", untrained: str | None = None, censored: str | None = None,
           no_uncertainty: str = "no sampling error available", interval_label: str | None = None) -> tuple[str, str]:
    """The verdict and its reason for a margin (positive = the claimed side).

    Args:
        margin: the measured margin.
        se: its standard error (the rule ± :data:`Z` × se), used when no ``interval`` is given.
        interval: a (low, high) interval of the margin (percentile, BCa or t): holds when low > 0,
            fails when high < 0.
        bound: ``"lower"`` when the margin is only a lower bound of the true one (a censored width
            on the claimed side: the truth is even further that way; it may hold, it cannot fail),
            ``"upper"`` for the reverse.
        untrained: a reason that blocks any verdict (a run did not train).
        censored: a reason that blocks any verdict (a quantity censored both ways).
        no_uncertainty: the reason given when neither ``se`` nor ``interval`` is usable.
        interval_label: how the interval is named in the reason (default: its level and ends).
    """
    if bound not in BOUNDS:
        raise BertscapeError(f"bound={bound!r} is not accepted; expected one of {BOUNDS}")
    if untrained:
        return INCONCLUSIVE, untrained
    if censored:
        return INCONCLUSIVE, censored
    if margin is None or not math.isfinite(margin):
        return INCONCLUSIVE, "not computed"
    if interval is not None and all(x is not None and math.isfinite(x) for x in interval):
        lo, hi = float(interval[0]), float(interval[1])
        how = interval_label or f"{U.LEVEL:.0%} interval of the margin [{lo:.3g}, {hi:.3g}]"
    elif se is not None and math.isfinite(se):
        lo, hi = margin - Z * se, margin + Z * se
        how = f"margin {margin:.3g} ± {Z:g} × {se:.2g}"
    else:
        return INCONCLUSIVE, no_uncertainty
    if lo > 0:
        if bound == "upper":
            return INCONCLUSIVE, f"{how} lies above 0, but the margin is only an upper bound (censored)"
        return HOLDS, f"{how} lies above 0" + (" (a lower bound: censored)" if bound else "")
    if hi < 0:
        if bound == "lower":
            return INCONCLUSIVE, f"{how} lies below 0, but the margin is only a lower bound (censored)"
        return FAILS, f"{how} lies below 0" + (" (an upper bound: censored)" if bound else "")
    return INCONCLUSIVE, f"{how} includes 0"


def row(claim: int | str, qid: str, quantity: str, pt: float | None, ri: float | None, margin: float | None,
        se: float | None, criterion: str, *, interval: tuple[float, float] | None = None, unit: str = "",
        scored: bool = True, bound: str = "", censored: str | None = None, untrained: str | None = None,
        no_uncertainty: str = "no sampling error available", verdict: tuple[str, str] | None = None,
        seeds: int = 1, pooled: bool = False) -> dict[str, Any]:
    """One scorecard row; the verdict comes from :func:`decide` (or is given, for a rule that combines
    several margins, e.g. claim 2's per-step rises). ``pooled``: the row already pools ``seeds`` seeds
    (the summary over seeds passes it through)."""
    lo, hi = interval if interval is not None else (float("nan"), float("nan"))
    v, reason = verdict or decide(margin, se, interval=interval, bound=bound, untrained=untrained,
                                  censored=censored, no_uncertainty=no_uncertainty)
    return {"claim": claim, "qid": qid, "quantity": quantity, "unit": unit,
            "pretrained": _f(pt), "scratch": _f(ri), "margin": _f(margin), "uncertainty": _f(se),
            "lo": _f(lo), "hi": _f(hi), "bound": bound,
            "criterion": criterion if scored else f"{criterion} (reported)", "scored": bool(scored),
            "verdict": v, "reason": reason, "blocked": untrained or censored or "",
            "seeds": int(seeds), "pooled": bool(pooled)}


def _f(x: Any) -> float:
    return float(x) if x is not None and np.isfinite(x) else float("nan")


# ----------------------------------------------------------------------------- did a run train?

def majority_baseline(labels: np.ndarray, metric: U.MetricFn, regression: bool = False) -> float:
    """The dev metric of a constant prediction: the majority class (classification) or the mean label
    (regression; a correlation of a constant is 0)."""
    y = np.asarray(labels)
    if regression:
        return 0.0
    values, counts = np.unique(y, return_counts=True)
    const = np.full_like(y, values[int(np.argmax(counts))])
    return float(metric(const, y))


def training_check(name: str, step_losses: np.ndarray, dev_preds: np.ndarray, dev_labels: np.ndarray,
                   metric: U.MetricFn, regression: bool = False) -> dict[str, Any]:
    """Did a run train? (a) final / initial training loss (means of the first and last 5 % of its
    steps) ≤ :data:`TRAINED_FRACTION` and (b) dev metric at θ1 − majority-class baseline >
    :data:`TRAINED_MARGIN` + Z × its bootstrap s.e. over the dev sentences. Returns the numbers and
    ``trained`` with ``why`` (empty when it trained)."""
    loss = np.asarray(step_losses, np.float64)
    first, _ = U.window_mean_se(loss, 0.05)
    last, _ = U.window_mean_se(loss, 1.0)
    ratio = last / first if first > 0 else float("nan")
    p, y = np.asarray(dev_preds), np.asarray(dev_labels)
    m = float(metric(p, y))
    se = U.bootstrap_se(lambda i: float(metric(p[i], y[i])), len(y))
    base = majority_baseline(y, metric, regression)
    why = []
    if not (first > 0 and ratio <= TRAINED_FRACTION):
        why.append(f"loss ratio {ratio:.2f} > {TRAINED_FRACTION}")
    if not (m - base - TRAINED_MARGIN > Z * (se if math.isfinite(se) else 0.0)):
        why.append(f"dev metric {m:.3g} − majority class {base:.3g} ≤ {TRAINED_MARGIN} + {Z:g} × {se:.2g}")
    return {"run": name, "loss_first": first, "loss_last": last, "loss_ratio": ratio, "dev_metric": m,
            "dev_metric_se": se, "baseline": base, "trained": not why, "why": "; ".join(why)}


def trained_reason(checks: Iterable[Mapping[str, Any]]) -> str | None:
    """``None`` when every run in ``checks`` (:func:`training_check` results) trained, else a short
    reason naming the runs that did not (each run's own ``why`` is in the table of runs)."""
    bad = list(dict.fromkeys(c["run"] for c in checks if not c["trained"]))
    if not bad:
        return None
    return f"{' and '.join([', '.join(bad[:-1]), bad[-1]] if len(bad) > 1 else bad)} did not train"


# ----------------------------------------------------------------------------- the claims' rows

def claim_training_loss(pt_loss: np.ndarray, ri_loss: np.ndarray, fractions: Sequence[float] = (0.1, 0.5, 1.0),
                        untrained: str | None = None) -> list[dict]:
    """Claim 1: mean training loss of PT vs RI over the 5 % of steps ending at each fraction. PT and
    RI train on the same batches in the same order, so the margin is the mean of the step-by-step
    differences RI − PT and its s.e. their spread in the window (the batch noise they share cancels)."""
    rows = []
    for f in fractions:
        a, _ = U.window_mean_se(pt_loss, f)
        b, _ = U.window_mean_se(ri_loss, f)
        d, se, k = U.paired_window(pt_loss, ri_loss, f)
        rows.append(row(1, f"loss_{round(100 * f)}", f"training loss at {f:.0%} of the budget", a, b, d, se,
                        "PT < RI", untrained=untrained,
                        no_uncertainty=f"a window of {k} step(s): no step-to-step noise to measure"))
    return rows


def _step_rises(alphas: np.ndarray, sample_losses: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Rises of the mean curve between neighbours on [0, 1] (the steps that
    :func:`bertscape.geometry.flatness.count_rises` counts), their paired standard errors over sentences,
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
    when any step fails. The row's margin is the step closest to failing (over seeds, the t rule
    is applied to that worst step's margin)."""
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
    return row(2, "rises", f"rises on α∈[0,1] above {MONOTONE_TOL:.0%} of the range", n_pt, n_ri,
               float(margins[worst]) if len(margins) else float("nan"),
               float(se[worst]) if len(se) else float("nan"), "PT has no rise", untrained=untrained,
               verdict=verdict)


def _paired(a: Mapping[str, Any], b: Mapping[str, Any], value: str, se_key: str) -> float:
    """The s.e. of a[value] − b[value]: from paired bootstrap replicates (``boot``) when both sides
    carry them, else from the two standard errors as if independent."""
    if a.get("boot") is not None and b.get("boot") is not None and len(a["boot"]) == len(b["boot"]):
        return U.paired_se(np.asarray(a["boot"]), np.asarray(b["boot"]))
    return math.hypot(a[se_key], b[se_key])


#: Claim 3's width rows: key of :func:`bertscape.geometry.linesearch.run_widths`, qid, label, unit, scored.
WIDTH_ROWS = (
    ("d1", "width_alpha", "basin width along δ1 (α units)", "paper", True),
    ("d2", "width_beta", "basin width along the figures' δ2 (β units)", "paper", True),
    ("d1_fn", "width_d1_fn", "basin width along δ1 filter-normalised to θ1", "invariant", True),
    ("d2_fn", "width_d2_fn", "basin width along a random direction filter-normalised to θ1", "invariant", True),
    ("d2_fn_nobias", "width_d2_fn_nobias", "the same, biases and LayerNorm left out of the direction (Li et al.)",
     "invariant", False),
)


def _censor_bound(pt_censored: bool, ri_censored: bool, what: str) -> tuple[str, str | None]:
    """(bound, blocking reason) of a PT > RI margin when either side is censored from above."""
    if pt_censored and ri_censored:
        return "", f"PT and RI {what}: both censored"
    if pt_censored:
        return "lower", None
    if ri_censored:
        return "upper", None
    return "", None


def claim_wider(pt: Mapping[str, Mapping[str, Any]], ri: Mapping[str, Mapping[str, Any]],
                pt_area: Mapping[str, Any] | None = None, ri_area: Mapping[str, Any] | None = None,
                untrained: str | None = None) -> list[dict]:
    """Claim 3 in two units (:data:`UNITS`). Widths from line searches (``{key: {width, width_se,
    censored, boot}}`` per run, keys of :data:`WIDTH_ROWS`; ``boot``: the bootstrap replicates, drawn
    with the same resamples for PT and RI) and the sub-level area (``{area, area_rel, boot, boot_rel,
    touches_edge}``). Margins are PT − RI with the paired s.e.; a censored width (wider than the
    search's cap) is a lower bound and decides in the direction it allows."""
    rows = []
    for key, qid, label, unit, scored in WIDTH_ROWS:
        if key not in pt or key not in ri:
            continue
        a, b = pt[key], ri[key]
        bound, blocked = _censor_bound(bool(a.get("censored")), bool(b.get("censored")),
                                       "basins wider than the line search's cap")
        rows.append(row(3, qid, label, a["width"], b["width"], a["width"] - b["width"],
                        _paired(a, b, "width", "width_se"), "PT > RI", unit=unit, scored=scored, bound=bound,
                        censored=blocked, untrained=untrained))
    if pt_area is not None and ri_area is not None:
        bound, blocked = _censor_bound(bool(pt_area.get("touches_edge")), bool(ri_area.get("touches_edge")),
                                       "sub-level sets reach the edge of the grown grid")
        for qid, key, boot, label, unit in (
                ("area_alphabeta", "area", "boot", "sub-level area (α·β units)", "paper"),
                ("area_rel", "area_rel", "boot_rel", "sub-level area × ‖δ1‖‖δ2‖ / ‖θ1‖² (relative parameter units)",
                 "invariant")):
            a = {"v": pt_area[key], "boot": pt_area.get(boot), "se": pt_area.get(f"{key}_se", float("nan"))}
            b = {"v": ri_area[key], "boot": ri_area.get(boot), "se": ri_area.get(f"{key}_se", float("nan"))}
            rows.append(row(3, qid, label, a["v"], b["v"], a["v"] - b["v"], _paired(a, b, "v", "se"), "PT > RI",
                            unit=unit, bound=bound, censored=blocked, untrained=untrained))
    return rows


#: Curvature rows: key of the run's directional curvatures, qid, label, unit, scored.
CURVATURE_ROWS = (
    ("d1", "curv_alpha", "curvature along δ1 at θ1, d²f/dα² (α units)", "paper", True),
    ("d2", "curv_beta", "curvature along the figures' δ2 at θ1, d²f/dβ² (β units)", "paper", True),
    ("d1_fn", "curv_d1_fn", "curvature along δ1 filter-normalised to θ1", "invariant", True),
    ("d2_fn", "curv_d2_fn", "curvature along a random direction filter-normalised to θ1", "invariant", True),
)


def _batch_se(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Standard error of the mean over independent sentence batches of a (or of a − b, batch by batch)."""
    x = np.asarray(a, np.float64) - (0.0 if b is None else np.asarray(b, np.float64))
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def claim_curvature(pt: Mapping[str, Any], ri: Mapping[str, Any], untrained: str | None = None) -> list[dict]:
    """Claim H in the same two units as claim 3: the second derivative of the training loss at θ1 along
    each direction, uᵀHu, from Hessian-vector products on independent batches of training sentences
    (``{"directional": {key: {"value", "batches"}}, "top_eigenvalue", "top_batches", "trace",
    "trace_batches", "theta1_norm"}`` per run, the same batches for PT and RI). The mean over batches is
    the curvature on all the sentences (H is linear in the loss); the s.e. of the PT − RI difference
    comes from the batch-by-batch differences. The whole-space top eigenvalue and trace of the
    Hessian are reported beside them (raw parameter units: they scale with 1/‖θ1‖² where the loss is
    scale-invariant), each with the sampling s.e. of its per-batch estimates."""
    rows = []
    for key, qid, label, unit, scored in CURVATURE_ROWS:
        a, b = pt["directional"].get(key), ri["directional"].get(key)
        if a is None or b is None:
            continue
        rows.append(row("H", qid, label, a["value"], b["value"], b["value"] - a["value"],
                        _batch_se(b["batches"], a["batches"]), "PT < RI", unit=unit, scored=scored,
                        untrained=untrained))
    (top, top_label), (trace, trace_label), (norm_qid, norm_label) = CURVATURE_REPORTED
    for qid, label in ((top, top_label), (trace, trace_label)):
        rows.append(row("H", qid, label, pt[qid], ri[qid], ri[qid] - pt[qid],
                        _batch_se(ri[f"{qid.split('_')[0]}_batches"], pt[f"{qid.split('_')[0]}_batches"]),
                        "PT < RI", scored=False, untrained=untrained))
    rows.append(row("H", norm_qid, norm_label, pt["theta1_norm"] ** 2, ri["theta1_norm"] ** 2, float("nan"), None,
                    "—", scored=False, no_uncertainty="a property of the run"))
    return rows


#: Claim H's rows reported beside the scored ones (qid, label), in the order they are written.
CURVATURE_REPORTED = (("top_eigenvalue", "Hessian top eigenvalue at θ1 (raw parameters)"),
                      ("trace", "Hessian trace at θ1 (raw parameters)"),
                      ("theta1_norm_sq", "‖θ1‖² (the scale raw curvature is in)"))


def not_computed(claim: int | str, reason: str) -> list[dict]:
    """The rows of a landscape claim (3 or H) whose measures were not computed because a run did not
    train (``reason``): one inconclusive row for every quantity the claim would report, with the same
    ids, so that the summary over seeds sees every quantity in every seed ("not computed in k of n")."""
    specs = {3: [(qid, label, unit, scored) for _, qid, label, unit, scored in WIDTH_ROWS],
             "H": [(qid, label, unit, scored) for _, qid, label, unit, scored in CURVATURE_ROWS]
             + [(qid, label, "", False) for qid, label in CURVATURE_REPORTED]}
    if claim not in specs:
        raise BertscapeError(f"claim={claim!r} is not accepted; expected one of {list(specs)} (the claims whose "
                             "costly measures are skipped when a run did not train)")
    return [row(claim, qid, label, None, None, float("nan"), None, "PT > RI" if claim == 3 else "PT < RI",
                unit=unit, scored=scored, untrained=f"{reason}; not computed") for qid, label, unit, scored in specs[claim]]


def steps_to_basin(steps: pd.DataFrame, rel: float = 0.1) -> float:
    """Share of the budget after which the smoothed training loss stays within ``rel`` of the
    loss range above its final value (a proxy for "reaching the basin")."""
    loss = steps["loss"].rolling(max(1, len(steps) // 20), min_periods=1).mean().to_numpy()
    final, top = loss[-1], loss.max()
    thresh = final + rel * (top - final)
    above = np.flatnonzero(loss > thresh)
    last_above = above[-1] + 1 if len(above) else 0
    return float(min(last_above + 1, len(loss)) / len(loss))


ONE_SEED_PATH = "one seed: a path's straightness has no sampling error within a seed"


def claim_straighter(pt_ratio: float, ri_ratio: float, pt_basin: float, ri_basin: float,
                     untrained: str | None = None) -> list[dict]:
    """Claim 4: path length / displacement (its only noise is the seed: one seed leaves it
    inconclusive, :func:`summarise` decides it over seeds) and the share of the budget to the basin."""
    return [row(4, "path_ratio", "path length / displacement of the checkpoints", pt_ratio, ri_ratio,
                ri_ratio - pt_ratio, None, "PT < RI", untrained=untrained, no_uncertainty=ONE_SEED_PATH),
            row(4, "steps_to_basin", "share of budget until loss stays near its final value", pt_basin, ri_basin,
                ri_basin - pt_basin, None, "PT < RI", scored=False, no_uncertainty=ONE_SEED_PATH)]


def claim_overfitting(pt_preds: np.ndarray, labels: np.ndarray, metric: U.MetricFn, pt_train_loss: float,
                      metric_name: str, ri_preds: np.ndarray | None = None, ri_train_loss: float | None = None,
                      halves: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict]:
    """Claim 5 from the dev predictions of a long run at every epoch (``*_preds``: (evaluations,
    sentences)): best − last dev metric with the best epoch chosen on one half of the dev sentences and
    the drop read on the other (:func:`bertscape.evidence.uncertainty.split_half_drop`), with a percentile
    interval from a bootstrap within the halves. Gated on ``pt_train_loss``, the final training loss
    measured in eval mode on a fixed training subset: below :data:`LONG_LOSS_MAX` the run has trained
    past convergence; above it the claim is inconclusive."""
    halves = halves if halves is not None else U.split_halves(len(labels))

    def drop(preds):
        reps = U.split_half_replicates(preds, labels, metric, halves)
        return U.split_half_drop(preds, labels, metric, halves), reps

    dp, rp = drop(pt_preds)
    untrained = None if pt_train_loss < LONG_LOSS_MAX else (
        f"PT's long run did not train past convergence (final training loss {pt_train_loss:.3g} in eval mode "
        f"≥ {LONG_LOSS_MAX})")
    lo, hi = U.percentile_interval(OVERFIT_POINTS - rp)
    rows = [row(5, "drop", f"best − last dev {metric_name} (best epoch chosen on the other half)", dp,
                None, OVERFIT_POINTS - dp, U.se_of(rp), f"PT ≤ {OVERFIT_POINTS}", interval=(lo, hi),
                untrained=untrained)]
    if ri_preds is not None:
        dr, rr = drop(ri_preds)
        rows[0]["scratch"] = dr
        rows.append(row(5, "drop_vs_ri", f"best − last dev {metric_name}, PT vs RI", dp, dr, dr - dp,
                        U.paired_se(rp, rr), "PT ≤ RI", scored=False))
    rows.append(row(5, "final_train_loss", "final training loss of the long run (eval mode)", pt_train_loss,
                    ri_train_loss, LONG_LOSS_MAX - pt_train_loss, None, f"PT < {LONG_LOSS_MAX}", scored=False,
                    no_uncertainty="the gate of the claim"))
    return rows


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
    return [row(6, "dev_metric", f"dev {metric_name} at θ1", dev_pt, dev_ri, dev_pt - dev_ri, se_dev, "PT > RI",
                untrained=untrained),
            row(6, "gap", f"train − dev {metric_name} gap at θ1", gap_pt, gap_ri, gap_ri - gap_pt, U.se_of(gaps),
                "PT < RI", untrained=untrained)]


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
    mask}`` per run; same sentences for PT and RI): ρ(train loss, dev error) near θ1. ρ is bounded
    by 1 and skewed near it, so the margin ρ_PT − ρ_RI is decided on the percentile interval of its
    paired bootstrap replicates; ρ(train loss, dev loss) is reported."""
    def rho(d, ti=None, di=None):
        return surface_agreement(d["train_samples"], d["dev_preds"], d["dev_labels"], d["mask"], metric, ti, di)

    rp, rr = rho(pt), rho(ri)
    n_tr, n_dev = pt["train_samples"].shape[-1], pt["dev_preds"].shape[-1]
    diffs = np.array([rho(pt, t, d) - rho(ri, t, d) for t, d in U.paired_resamples(n_tr, n_dev)])

    def rho_loss(d):
        return U.spearman(d["train_samples"].mean(-1)[d["mask"]], d["dev_samples"].mean(-1)[d["mask"]])

    lp, lr = rho_loss(pt), rho_loss(ri)
    return [row(7, "rho_error", f"Spearman ρ(train loss, dev error) for |α − 1| ≤ {NEIGHBOURHOOD}", rp, rr,
                rp - rr, U.se_of(diffs), "PT > RI", interval=U.percentile_interval(diffs), untrained=untrained),
            row(7, "rho_loss", f"Spearman ρ(train loss, dev loss) for |α − 1| ≤ {NEIGHBOURHOOD}", lp, lr, lp - lr,
                None, "PT > RI", scored=False, no_uncertainty="reported without a bootstrap")]


def depth_trend(values: Sequence[float]) -> float:
    """Spearman correlation of a per-layer measure with layer index (0 = lowest)."""
    v = np.asarray(values, dtype=float)
    return U.spearman(np.arange(len(v)), v)


def layer_fd_curvature(samples: np.ndarray, h: float) -> np.ndarray:
    """Per layer, the finite-difference second derivative at α = 1 of its own 1D curve,
    (f(1 + h) − 2 f(1) + f(1 − h)) / h², from per-sentence losses ``samples`` of shape (layers, 3
    [α = 1 − h, 1, 1 + h], sentences), the mean over the sentences taken first."""
    f = np.asarray(samples, np.float64).mean(axis=-1)
    return (f[:, 2] - 2 * f[:, 1] + f[:, 0]) / h ** 2


_P_VALUE = (INCONCLUSIVE, "a test of the trend, not a margin: a small p says the ordering is no accident")
ONE_SEED_CHANGE = ("one seed: a fixed network's per-layer change has no sampling error (its permutation "
                   "p-value is reported)")


def claim_layers_invariant(pt_change: Sequence[float], ri_change: Sequence[float], pt_fd: np.ndarray | None,
                           ri_fd: np.ndarray | None, h: float | None, pt_rise: Sequence[float] | None = None,
                           ri_rise: Sequence[float] | None = None, untrained: str | None = None) -> list[dict]:
    """Claim 8 for the encoder layers (lowest first): Spearman ρ with depth of (a) the relative change
    ‖δ1_l‖/‖θ0_l‖ (no sentence noise: within one seed only its exact permutation p-value is given, over
    seeds the t rule decides) and (b) the curvature of each layer's own 1D curve at θ1 (``*_fd``:
    per-sentence losses, see :func:`layer_fd_curvature`), decided on the percentile interval of a
    bootstrap over the sentences. The loss rise when one layer returns to θ0 (a restore cost, not a
    curvature) is reported."""
    rows = []
    rp, rr = depth_trend(pt_change), depth_trend(ri_change)
    rows.append(row(8, "rho_change", "Spearman ρ(layer index, relative change)", rp, rr, rp - DEPTH_TREND, None,
                    f"PT ≥ {DEPTH_TREND}", untrained=untrained, no_uncertainty=ONE_SEED_CHANGE))
    rows.append(row(8, "perm_p_change", "permutation p-value of that ρ (exact over the layer orders)",
                    U.depth_permutation_p(pt_change), U.depth_permutation_p(ri_change), float("nan"), None,
                    "small = a real trend", scored=False, verdict=_P_VALUE))
    if pt_fd is not None and ri_fd is not None and h is not None:
        n = pt_fd.shape[-1]

        def rho_fd(x, idx=None):
            return depth_trend(layer_fd_curvature(x if idx is None else x[..., idx], h))

        reps = U.replicates(lambda i: rho_fd(pt_fd, i), n)
        rows.append(row(8, "rho_curvature", f"Spearman ρ(layer index, curvature of the layer's own curve at θ1, "
                        f"h = {h:g})", rho_fd(pt_fd), rho_fd(ri_fd), rho_fd(pt_fd) - DEPTH_TREND, U.se_of(reps),
                        f"PT ≥ {DEPTH_TREND}", interval=U.percentile_interval(reps - DEPTH_TREND),
                        untrained=untrained))
        rows.append(row(8, "perm_p_curvature", "permutation p-value of that ρ (exact over the layer orders)",
                        U.depth_permutation_p(layer_fd_curvature(pt_fd, h)),
                        U.depth_permutation_p(layer_fd_curvature(ri_fd, h)), float("nan"), None,
                        "small = a real trend", scored=False, verdict=_P_VALUE))
    if pt_rise is not None and ri_rise is not None:
        rows.append(row(8, "rho_rise", "Spearman ρ(layer index, loss rise when the layer alone returns to θ0)",
                        depth_trend(pt_rise), depth_trend(ri_rise), depth_trend(pt_rise) - DEPTH_TREND, None,
                        f"PT ≥ {DEPTH_TREND}", scored=False, no_uncertainty="reported: a restore cost, not a curvature"))
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
        rows.append(row(9, f"restore_{which}", f"cost in dev {metric_name} of restoring the {which} third to θ0", c,
                        cost(ri, which) if ri is not None else None, margin_fn(c), se, crit, untrained=untrained))
    return rows


def claim_one_basin(pt: Sequence[tuple[float, float, float]], ri: Sequence[tuple[float, float, float]],
                    ri_bodies: Sequence[tuple[float, float, float]] = (), seeds: int = 0,
                    untrained: str | None = None) -> list[dict]:
    """Claim L from the training-loss barriers ``(barrier, low, high)`` (a BCa interval over the
    sentences; barriers are ≥ 0 and skewed) of every segment between two PT seeds and between two RI
    seeds that share one random θ0. PT's seeds share one basin when every PT barrier's interval lies
    below ε; RI's seeds are separated when every RI barrier's interval lies above ε. ``ri_bodies``:
    the same for RI seeds with different random θ0 (reported: a barrier there is expected from the
    permutation symmetry of two unrelated random networks alone)."""
    if not pt or not ri:
        reason = "fewer than two seeds of " + " and ".join(n for n, b in (("PT", pt), ("RI", ri)) if not b)
        return [row("L", "pt_max_barrier", "barriers between seeds", None, None, float("nan"), None, "—",
                    censored=reason, seeds=seeds, pooled=True)]

    def largest(b):
        v, lo, hi = zip(*b)
        return max(v), max(lo), max(hi)

    def smallest(b):
        v, lo, hi = zip(*b)
        return min(v), min(lo), min(hi)

    (pv, plo, phi), (rv, rlo, rhi) = largest(pt), smallest(ri)
    n = f"{len(pt)} PT pair(s), {len(ri)} RI pair(s)"
    rows = [row("L", "pt_max_barrier", f"largest barrier between PT seeds ({n})", pv, largest(ri)[0],
                FLAT_EPS - pv, None, f"every PT barrier < ε = {FLAT_EPS}", interval=(FLAT_EPS - phi, FLAT_EPS - plo),
                untrained=untrained, seeds=seeds, pooled=True),
            row("L", "ri_min_barrier", f"smallest barrier between RI seeds sharing one random θ0 ({n})",
                smallest(pt)[0], rv, rv - FLAT_EPS, None, f"every RI barrier > ε = {FLAT_EPS}",
                interval=(rlo - FLAT_EPS, rhi - FLAT_EPS), untrained=untrained, seeds=seeds, pooled=True)]
    if ri_bodies:
        bv, blo, bhi = smallest(ri_bodies)
        rows.append(row("L", "ri_min_barrier_bodies", f"smallest barrier between RI seeds with different random θ0 "
                        f"({len(ri_bodies)} pair(s))", smallest(pt)[0], bv, bv - FLAT_EPS, None,
                        f"every RI barrier > ε = {FLAT_EPS}", interval=(blo - FLAT_EPS, bhi - FLAT_EPS), scored=False,
                        untrained=untrained, seeds=seeds, pooled=True))
    return rows


# ----------------------------------------------------------------------------- tables and the summary over seeds

def table(rows: Iterable[dict], **labels: Any) -> pd.DataFrame:
    """Rows as a DataFrame with label columns in front (e.g. ``task=…, seed=…, pairing=…``)."""
    df = pd.DataFrame(list(rows))
    for k, v in reversed(list(labels.items())):
        df.insert(0, k, v)
    return df


_KEYS = ("task", "pairing", "claim", "qid")


def _combined_bound(bounds: Iterable[str]) -> tuple[str, str | None]:
    """The bound of a mean of per-seed margins: lower bounds and exact values give a lower bound of
    the mean (likewise upper); lower and upper bounds together give nothing."""
    b = set(bounds) - {""}
    if not b:
        return "", None
    if len(b) == 1:
        return b.pop(), None
    return "", "censored in opposite directions in different seeds"


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task, pairing, claim and quantity over the seeds, with the verdict.

    With n ≥ 2 seeds: the mean of the per-seed margins and its standard error (their spread / √n),
    decided on the interval mean ± t₀.₉₇₅(n − 1) × s.e. (:func:`bertscape.evidence.uncertainty.seed_interval`);
    a run that did not train in any seed keeps the row inconclusive. With one seed: that seed's verdict
    (``one_seed`` is True: it cannot see the spread between seeds). Rows that already pool the seeds
    (``pooled``, e.g. barriers between seeds) pass through as they are.
    """
    keys = [c for c in _KEYS if c in df.columns]
    out = []
    for k, g in df.groupby(keys, sort=False, dropna=False):
        first = g.iloc[0]
        n = len(g)
        rec = dict(zip(keys, k if isinstance(k, tuple) else (k,)))
        rec.update(quantity=first["quantity"], unit=first.get("unit", ""), criterion=first["criterion"],
                   scored=bool(first["scored"]), pretrained=float(g["pretrained"].mean()),
                   pretrained_sd=float(g["pretrained"].std()) if n > 1 else float("nan"),
                   scratch=float(g["scratch"].mean()),
                   scratch_sd=float(g["scratch"].std()) if n > 1 else float("nan"))
        if n == 1:
            pooled = bool(first.get("pooled", False))
            rec.update(margin=float(first["margin"]), uncertainty=float(first["uncertainty"]),
                       lo=float(first["lo"]), hi=float(first["hi"]), seeds=int(first.get("seeds", 1)),
                       one_seed=not pooled, rule="pooled over seeds" if pooled else "within one seed",
                       verdict=first["verdict"], reason=first["reason"])
            out.append(rec)
            continue
        margins = g["margin"].to_numpy(dtype=float)
        if not rec["scored"] and not np.isfinite(margins).any():  # a reported number with no margin (a p-value)
            rec.update(margin=float("nan"), uncertainty=float("nan"), lo=float("nan"), hi=float("nan"), seeds=n,
                       one_seed=False, rule="reported", verdict=first["verdict"], reason=first["reason"])
            out.append(rec)
            continue
        mean, se, crit, m = U.seed_interval(margins)
        blocked = next((f"{b} (seed {s})" if "seed" in g else b for b, s in
                        zip(g["blocked"], g["seed"] if "seed" in g else [None] * n) if b), None)
        bound, opposite = _combined_bound(g["bound"] if "bound" in g else [])
        interval = (mean - crit * se, mean + crit * se) if np.isfinite(se) else None
        if m < n and not blocked:
            blocked = f"not computed in {n - int(m)} of {n} seeds"
        label = (f"over {n} seeds, mean margin {mean:.3g} ± t₀.₉₇₅({n - 1}) = {crit:.3g} × s.e. {se:.2g}"
                 if interval is not None else None)
        verdict, reason = decide(mean, interval=interval, bound=bound, untrained=blocked, censored=opposite,
                                 no_uncertainty="fewer than two seeds with a value", interval_label=label)
        rec.update(margin=mean, uncertainty=se, lo=interval[0] if interval else float("nan"),
                   hi=interval[1] if interval else float("nan"), seeds=n, one_seed=False,
                   rule=f"t rule over {n} seeds", verdict=verdict, reason=reason)
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


def cell_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """One verdict per claim, unit, task and pairing from the scored rows of :func:`summarise`, with
    the number of seeds that decided it (the fewest of its rows) and whether it rests on one seed."""
    s = summary[summary["scored"]] if "scored" in summary else summary
    if s.empty:
        return pd.DataFrame(columns=["task", "claim", "unit", "pairing", "verdict", "seeds", "one_seed"])
    s = s.assign(unit=s["unit"].fillna("") if "unit" in s else "",
                 pairing=s["pairing"] if "pairing" in s else "profile")
    g = s.groupby(["task", "claim", "unit", "pairing"], sort=False, dropna=False)
    return pd.DataFrame({"verdict": g["verdict"].agg(claim_verdict), "seeds": g["seeds"].min(),
                         "one_seed": g["one_seed"].any()}).reset_index()


def pairing_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """Claim × unit × task verdicts per pairing, with a note where the pairings disagree (and why: a
    pairing whose runs did not train decides nothing)."""
    s = summary[summary["scored"]]
    v = cell_verdicts(summary).pivot_table(index=["task", "claim", "unit"], columns="pairing", values="verdict",
                                           aggfunc="first", sort=False)
    cols = list(v.columns)
    untrained = {(t, c, p) for t, c, p, r in zip(s["task"], s["claim"], s["pairing"], s["reason"])
                 if "did not train" in str(r)}

    def note(r) -> str:
        decided = {c: r[c] for c in cols if isinstance(r.get(c), str) and r[c] != INCONCLUSIVE}
        blocked = [c for c in cols if (r.name[0], r.name[1], c) in untrained]
        if len(set(decided.values())) > 1:
            return "decided differently: " + "; ".join(f"{v} under {c}" for c, v in decided.items())
        if decided and blocked:
            return (f"decided under {', '.join(decided)} only: under {', '.join(blocked)} a run did not train")
        return ""

    v["note"] = v.apply(note, axis=1)
    v = v.fillna("—")  # a claim that is not decided under that pairing (not marked controlled)
    v.columns.name = None
    return v.reset_index()
