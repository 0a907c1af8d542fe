"""The paper's claims (and the book's extension), each one :class:`~bertscape.evidence.scorecard.Claim`: its
statement, how it is measured, the function that computes its rows from the study's results, and the
ids of the quantities it reports. Chapters ask for a claim's quantities by id
(``chapter.verdict(P, "02", {"w1": (3, "width_d1_fn")})``); the scorecard page gathers them all.

A claim's rows are computed per task, seed and pairing (the matched-learning-rate pairings only for
claims marked ``controlled``) and decided over the seeds by :func:`bertscape.evidence.scorecard.summarise`.
Each row function gates on :func:`_untrained`: a comparison with a run that did not train (its
training loss did not fall, or its dev metric did not beat the majority class) decides nothing.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from bertscape.book import study
from bertscape.book.profiles import Profile
from bertscape.evidence import scorecard
from bertscape.evidence.scorecard import Claim, ClaimRegistry

PROFILE_PAIRING = study.PROFILE_PAIRING


# ----------------------------------------------------------------------------- gates

def not_trained(P: Profile, task: str, seed: int, pairing: str, who: tuple[str, ...] = ("pretrained", "scratch")
              ) -> str | None:
    """Why a claim's rows cannot decide (the runs in ``who`` that did not train), or ``None``."""
    checks = study.training_checks(P, task, seed, pairing)
    return scorecard.trained_reason(checks[i] for i in who if i in checks)


def _pair(d: Mapping[str, Any]) -> tuple[Any, Any]:
    if "pretrained" not in d or "scratch" not in d:
        raise ValueError("the scorecard compares both starting points: the profile's inits must be "
                         "('pretrained', 'scratch')")
    return d["pretrained"], d["scratch"]


def _skipped(claim: int | str, pairing: str, reason: str | None) -> list[dict] | None:
    """Under a matched pairing in which a run did not train, the costly landscape measures (line
    searches, Hessians) cannot change the verdict (a comparison with a run that did not train is
    inconclusive), so they are not computed: an inconclusive row per quantity says why
    (:func:`bertscape.evidence.scorecard.not_computed`)."""
    if pairing == PROFILE_PAIRING or not reason:
        return None
    return scorecard.not_computed(claim, reason)


# ----------------------------------------------------------------------------- each claim's rows

def _training_loss(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.runs(P, task, seed, pairing))
    return scorecard.claim_training_loss(pt.steps["loss"].to_numpy(), ri.steps["loss"].to_numpy(),
                                         untrained=not_trained(P, task, seed, pairing))


def _monotone(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.curves(P, task, seed))
    return [scorecard.monotone_row(pt["alpha"].values, pt["train_sample_loss"].values,
                                   ri["alpha"].values, ri["train_sample_loss"].values,
                                   untrained=not_trained(P, task, seed, pairing, ("pretrained",)))]


def _wider(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    untrained = not_trained(P, task, seed, pairing)
    skipped = _skipped(3, pairing, untrained)
    if skipped:
        return skipped
    pt, ri = _pair(study.widths(P, task, seed, pairing))
    ar = _pair(study.areas(P, task, seed)) if pairing == PROFILE_PAIRING else (None, None)
    return scorecard.claim_wider(pt, ri, *ar, untrained=untrained)


def _curvature(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    untrained = not_trained(P, task, seed, pairing)
    skipped = _skipped("H", pairing, untrained)
    if skipped:
        return skipped
    pt, ri = _pair(study.curvature_numbers(P, task, seed, pairing))
    return scorecard.claim_curvature(pt, ri, untrained=untrained)


def _straighter(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.runs(P, task, seed, pairing))
    return scorecard.claim_straighter(study.path_stats(pt)["ratio"], study.path_stats(ri)["ratio"],
                                      scorecard.steps_to_basin(pt.steps), scorecard.steps_to_basin(ri.steps),
                                      untrained=not_trained(P, task, seed, pairing))


def _overfitting(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    long = study.long_runs(P, task, seed)
    loss = study.long_train_loss(P, task, seed)
    pp, labels = long["pretrained"].dev_predictions()
    rp = long["scratch"].dev_predictions()[0] if "scratch" in long else None
    return scorecard.claim_overfitting(pp, labels, study._metric_fn(P, task), loss["pretrained"],
                                       study._metric(P, task), rp, loss.get("scratch"))


def _generalise(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.theta1_evals(P, task, seed, pairing))
    return scorecard.claim_generalise(pt, ri, study._metric_fn(P, task), study._metric(P, task),
                                      untrained=not_trained(P, task, seed, pairing))


def _surface_samples(s: Any) -> dict[str, np.ndarray]:
    return {"train_samples": s["train_sample_loss"].values.astype(np.float64),
            "dev_samples": s["dev_sample_loss"].values.astype(np.float64),
            "dev_preds": s["dev_sample_pred"].values, "dev_labels": s["dev_label"].values,
            "mask": scorecard.neighbourhood_mask(s["alpha"].values, s["beta"].values)}


def _surfaces_agree(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.agreement_surfaces(P, task, seed))
    return scorecard.claim_surfaces_agree(_surface_samples(pt), _surface_samples(ri), study._metric_fn(P, task),
                                          untrained=not_trained(P, task, seed, pairing))


def _layers_invariant(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    pt, ri = _pair(study.layer_evidence(P, task, seed))
    return scorecard.claim_layers_invariant(pt["change"], ri["change"], pt["fd"], ri["fd"], pt["h"], pt["rise"],
                                            ri["rise"], untrained=not_trained(P, task, seed, pairing, ("pretrained",)))


def _restore(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    preds = study.restore_predictions(P, task, seed)
    return scorecard.claim_restore(preds["pretrained"], preds.get("scratch"), study._metric_fn(P, task),
                                   study._metric(P, task),
                                   untrained=not_trained(P, task, seed, pairing, ("pretrained",)))


def _one_basin(P: Profile, task: str, seed: int, pairing: str) -> list[dict]:
    if seed != P.seeds[0]:  # a claim across seeds: decided once, under the first seed
        return []
    b = study.barriers(P, task)

    def pick(kind: str) -> list[tuple[float, float, float]]:
        g = b[b["kind"] == kind]
        return list(zip(g["barrier"], g["barrier_lo"], g["barrier_hi"]))

    every = {r.spec.key(): r for how in ("shared", "own") for rs in study.lmc_runs(P, task, how).values()
             for r in rs.values()}
    checks = [study.run_check(P, task, r) for r in every.values()]
    return scorecard.claim_one_basin(pick("PT–PT"), pick("RI–RI"), pick("RI–RI (own θ0)"), seeds=len(P.lmc_seeds),
                                     untrained=scorecard.trained_reason(checks))


# ----------------------------------------------------------------------------- the registry

CLAIMS = ClaimRegistry()
CLAIMS.register(Claim(
    1, "01", "PT's training loss is lower than RI's at 10 %, 50 % and 100 % of the budget",
    "mean training loss of the 5 % of steps ending at each fraction; margin and s.e. from the step-by-step "
    "differences RI − PT (both runs see the same batches in the same order)", _training_loss,
    {"loss_10": "training loss at 10 % of the budget", "loss_50": "… at 50 %", "loss_100": "… at the end"},
    controlled=True))
CLAIMS.register(Claim(
    2, "01", "PT's 1D curve on α ∈ [0, 1] is (near-)monotone",
    "rises between neighbouring points of f(α) = L(θ0 + α·δ1) on training sentences; s.e.: paired over "
    "sentences for each step", _monotone, {"rises": "rises above 1 % of the range (the step closest to failing)"}))
CLAIMS.register(Claim(
    4, "01", "PT's trajectory is straighter",
    "path length / displacement of the checkpoints in parameter space; noise: the spread over seeds", _straighter,
    {"path_ratio": "path length / displacement", "steps_to_basin": "share of budget until the loss settles"},
    controlled=True))
CLAIMS.register(Claim(
    3, "02", "PT's optimum is wider (along δ1, along a random direction, and in area)",
    "line searches from θ1 until the training loss rises by ε, in the paper's unit (α, β) and in a "
    "scale-invariant one (directions filter-normalised to θ1); sub-level area on a θ1-centred grid; s.e. of "
    "PT − RI from a paired bootstrap over sentences", _wider,
    {"width_alpha": "width along δ1 (α)", "width_beta": "width along the figures' δ2 (β)",
     "area_alphabeta": "sub-level area (α·β)", "width_d1_fn": "width along δ1, filter-normalised",
     "width_d2_fn": "width along a random direction, filter-normalised",
     "width_d2_fn_nobias": "the same without biases and LayerNorm (robustness)",
     "area_rel": "sub-level area relative to ‖θ1‖²"},
    controlled=True, units=("paper", "invariant")))
CLAIMS.register(Claim(
    6, "02", "Flatter optima generalise better: PT has the higher dev metric and the smaller train-dev gap",
    "train and dev metrics at θ1 from one evaluation path; s.e.: paired bootstrap over sentences", _generalise,
    {"dev_metric": "dev metric at θ1", "gap": "train − dev gap at θ1"}, controlled=True))
CLAIMS.register(Claim(
    "H", "02", "PT's optimum is flatter by curvature",
    "second derivative of the training loss at θ1 along the directions of claim 3, in the same two units "
    "(Hessian-vector products); s.e. of PT − RI from independent sentence batches; the raw Hessian's top "
    "eigenvalue and trace reported beside them", _curvature,
    {"curv_alpha": "curvature along δ1 (α)", "curv_beta": "curvature along the figures' δ2 (β)",
     "curv_d1_fn": "curvature along δ1, filter-normalised", "curv_d2_fn": "curvature along a random direction, "
     "filter-normalised", "top_eigenvalue": "Hessian top eigenvalue (raw)", "trace": "Hessian trace (raw)",
     "theta1_norm_sq": "‖θ1‖²"},
    controlled=True, units=("paper", "invariant")))
CLAIMS.register(Claim(
    5, "03", "PT is robust to overfitting: its dev metric stays within a few points of its best",
    "best − last dev metric of a long run at constant learning rate after warm-up, the best epoch chosen on "
    "the other half of the dev sentences; gated on its final training loss in eval mode; percentile "
    "interval of a bootstrap over dev sentences", _overfitting,
    {"drop": "best − last dev metric (split halves)", "drop_vs_ri": "the same, PT vs RI",
     "final_train_loss": "final training loss (eval mode)"}))
CLAIMS.register(Claim(
    7, "03", "Train-loss and dev-error surfaces agree more for PT than for RI",
    "Spearman ρ between the two surfaces near θ1; percentile interval of a paired bootstrap over sentences",
    _surfaces_agree, {"rho_error": "ρ(train loss, dev error) near θ1", "rho_loss": "ρ(train loss, dev loss)"}))
CLAIMS.register(Claim(
    8, "04", "Lower layers are more invariant: change and sharpness grow with depth",
    "Spearman ρ with depth of the per-layer relative change and of the curvature of each layer's own 1D "
    "curve at θ1 (a sentence bootstrap; exact permutation p-values reported)", _layers_invariant,
    {"rho_change": "ρ(depth, relative change)", "perm_p_change": "its permutation p-value",
     "rho_curvature": "ρ(depth, per-layer curvature)", "perm_p_curvature": "its permutation p-value",
     "rho_rise": "ρ(depth, loss rise when one layer returns to θ0)"}))
CLAIMS.register(Claim(
    9, "04", "Restoring the bottom third of layers costs ≤ ~1 point; the top third costs a lot",
    "dev metric lost when those layers go back to θ0, on the run's whole dev subset; s.e.: paired bootstrap "
    "over sentences", _restore, {"restore_bottom": "cost of restoring the bottom third",
                                 "restore_top": "cost of restoring the top third"}))
CLAIMS.register(Claim(
    "L", "05", "PT seeds share one basin (no barrier above ε between their θ1) and RI seeds do not",
    "barrier of the training loss on the straight segment between every pair of seeds' θ1 (RI seeds sharing "
    "one random θ0); BCa interval over sentences", _one_basin,
    {"pt_max_barrier": "largest barrier between PT seeds", "ri_min_barrier": "smallest barrier between RI seeds",
     "ri_min_barrier_bodies": "the same for RI seeds with their own random θ0"},
    extension=True, across_seeds=True))


# ----------------------------------------------------------------------------- a chapter's rows and verdict

def chapter_claims(P: Profile, chapter: str, task: str, seed: int = 0, pairing: str = PROFILE_PAIRING) -> list[dict]:
    """Claim rows of one chapter for one task, seed and pairing."""
    return [r for c in CLAIMS.chapters().get(chapter, ()) if pairing == PROFILE_PAIRING or CLAIMS[c].controlled
            for r in CLAIMS[c].rows(P, task, seed, pairing)]


def chapter_scorecard(P: Profile, chapter: str, controls: bool = True) -> pd.DataFrame:
    """The chapter's claim rows for every task, seed and pairing of the profile (one row per
    quantity, seed and pairing; :func:`bertscape.evidence.scorecard.summarise` decides over the seeds)."""
    frames = [scorecard.table(chapter_claims(P, chapter, t, s, p), task=t, seed=s, pairing=p)
              for t in P.tasks for s in P.seeds for p in (study.pairings(P) if controls else [PROFILE_PAIRING])]
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "chapter", chapter)
    return df


def full_scorecard(P: Profile) -> pd.DataFrame:
    """Every chapter's claim rows (the scorecard page)."""
    return pd.concat([chapter_scorecard(P, ch) for ch in CLAIMS.chapters()], ignore_index=True)
