"""The book's experiments for one profile, shared by every chapter.

Each function computes one kind of result for a task and seed, for both starting points, through
the package's caches: whichever chapter asks first computes it, the others (and the scorecard)
read it back (and within one kernel, each result is computed or read once: the functions are
memoised per process; treat what they return as read-only). Chapters stay short: a call here, a figure from :mod:`bertscape.plots`, a verdict
from :mod:`bertscape.scorecard`.

Fixed analysis settings (chosen in advance, not tuned to the outcome):

* :data:`FLAT_EPS` — the basin of θ1 is {f ≤ f(θ1) + 0.1} in training loss (nats of
  cross-entropy; an absolute ε so that a run with a higher final loss gets no larger allowance);
* widths and areas are compared in the plane's own coordinates (α, β), as the paper's figures
  are drawn; parameter-space values are reported beside them.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr

from . import cache, curvature, landscape, layers, scorecard
from .directions import norm, sub
from .models import resolve_device
from .profiles import Profile
from .train import RunResult, train

FLAT_EPS = 0.1
INIT_NAMES = {"pretrained": "PT", "scratch": "RI"}


@functools.lru_cache(maxsize=64)
def main_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The main fine-tuning runs of ``task`` (one per starting point of the profile)."""
    return {init: train(P.run_spec(task, init, seed)) for init in P.inits}


@functools.lru_cache(maxsize=64)
def long_runs(P: Profile, task: str, seed: int = 0) -> dict[str, RunResult]:
    """The long runs (far past convergence, one dev evaluation per epoch) of ``task``."""
    return {init: train(P.long_run_spec(task, init, seed)) for init in P.inits}


@functools.lru_cache(maxsize=64)
def curves(P: Profile, task: str, seed: int = 0) -> dict[str, xr.Dataset]:
    """1D curves f(α) = L(θ0 + α·δ1) of the main runs, on training and dev subsets."""
    return {init: landscape.run_curve(run, alphas=P.curve_axis(), n_eval=P.curve_n_eval,
                                      precision=P.curve_precision, device=P.device,
                                      eval_batch_size=P.eval_batch_size)
            for init, run in main_runs(P, task, seed).items()}


@functools.lru_cache(maxsize=64)
def surfaces(P: Profile, task: str, seed: int = 0, centre: str = "theta0", d2: str = "random") -> dict[str, xr.Dataset]:
    """2D surfaces f(α, β) = L(origin + α·δ1 + β·δ2) of the main runs (δ2 filter-normalised
    random, orthogonalised against δ1; or the trajectory's PCA direction with ``d2="pca"``)."""
    alphas, betas = P.grid_axes()
    if centre == "theta1":
        alphas = [round(a - 1.0, 10) for a in alphas]
    return {init: landscape.run_surface(run, alphas=alphas, betas=betas, centre=centre, d2=d2, seed=seed,
                                        n_eval=P.grid_n_eval, precision=P.grid_precision, device=P.device,
                                        eval_batch_size=P.eval_batch_size)
            for init, run in main_runs(P, task, seed).items()}


@functools.lru_cache(maxsize=64)
def trajectories(P: Profile, task: str, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Checkpoints of the main runs projected on their surface's (δ1, δ2) plane, with the
    off-plane residual and each checkpoint's true loss beside the surface value there."""
    out = {}
    surf = surfaces(P, task, seed)
    for init, run in main_runs(P, task, seed).items():
        s = surf[init]

        def compute(run=run, s=s) -> dict:
            dirs = landscape.run_directions(run, seed=seed)
            df = landscape.project_trajectory(run, dirs["d1"], dirs["d2"], surface=s, precision=P.grid_precision)
            return df.to_dict(orient="list")

        out[init] = pd.DataFrame(cache.memo_json("trajectory", {"grid": s.attrs.get("grid_key"), "run": run.spec.key()},
                                                 compute))
    return out


def path_stats(run: RunResult) -> dict[str, float]:
    """Straightness of a run's path in the full parameter space: the summed length of the
    segments between checkpoints over the straight displacement ‖θ1 − θ0‖ (1 = a straight line)."""
    def compute() -> dict:
        length, prev = 0.0, None
        t0 = None
        for _, theta in run.trajectory():
            if prev is None:
                t0 = theta
            else:
                length += norm(sub(theta, prev))
            prev = theta
        disp = norm(sub(prev, t0))
        return {"path_length": length, "displacement": disp, "ratio": length / disp if disp > 0 else float("inf")}

    return cache.memo_json("path", run.spec.key(), compute)


@functools.lru_cache(maxsize=64)
def flatness(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Barrier, rises, basin widths (δ1 from the 1D curve, δ2 from the surface) and sub-level
    area of each main run, with ε = :data:`FLAT_EPS`."""
    c, s = curves(P, task, seed), surfaces(P, task, seed)
    return {init: landscape.flatness_summary(c[init], s[init], eps=FLAT_EPS) for init in c}


@functools.lru_cache(maxsize=64)
def curvature_numbers(P: Profile, task: str, seed: int = 0) -> dict[str, dict[str, float]]:
    """Hessian top eigenvalue (Lanczos) and trace (Hutchinson) of the training loss at θ1, on
    ``P.hessian_n_eval`` training sentences, ``P.hessian_steps`` Hessian-vector products each."""
    out = {}
    for init, run in main_runs(P, task, seed).items():
        def compute(run=run) -> dict:
            device = resolve_device(P.device)
            sets = landscape.eval_sets_for_run(run, P.hessian_n_eval, seed, device=device)
            model = run.model("theta1", device=str(device))
            top = curvature.hessian_top_eigenvalues(model, sets["train"], k=1, max_iter=P.hessian_steps, seed=seed)[0]
            tr, se = curvature.hessian_trace(model, sets["train"], n_samples=P.hessian_steps, seed=seed,
                                             return_stderr=True)
            return {"top_eigenvalue": top, "trace": tr, "trace_stderr": se,
                    "n_params": int(sum(p.numel() for p in model.parameters()))}

        out[init] = cache.memo_json("curvature", {"run": run.spec.key(), "n": P.hessian_n_eval,
                                                  "steps": P.hessian_steps, "seed": seed}, compute)
    return out


@functools.lru_cache(maxsize=64)
def layer_reports(P: Profile, task: str, seed: int = 0) -> dict[str, layers.LayerReport]:
    """Every layer measure (change, per-layer curves, restore, per-layer curvature, CKA)."""
    n = P.curve_n_eval
    return {init: layers.analyze_run(run, n_train_eval=n, n_dev_eval=n, n_hessian=P.hessian_n_eval,
                                     alphas=P.layer_alphas, hessian_iters=P.layer_hessian_steps, cka_tokens=P.cka_tokens, seed=seed,
                                     precision=P.curve_precision, device=P.device)
            for init, run in main_runs(P, task, seed).items()}


# ----------------------------------------------------------------------------- claims

def _metric(P: Profile, task: str) -> str:
    return P.run_spec(task, "pretrained").metric


def _pair(d: dict[str, Any]) -> tuple[Any, Any]:
    if "pretrained" not in d or "scratch" not in d:
        raise ValueError("the scorecard compares both starting points: the profile's inits must be "
                         "('pretrained', 'scratch')")
    return d["pretrained"], d["scratch"]


def _claim_training_loss(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(main_runs(P, task, seed))
    return scorecard.claim_training_loss(pt.steps, ri.steps)


def _claim_monotone(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(curves(P, task, seed))
    return scorecard.claim_monotone(pt["alpha"].values, pt["train_loss"].values,
                                    ri["alpha"].values, ri["train_loss"].values)


def _claim_wider(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(flatness(P, task, seed))
    return scorecard.claim_wider(pt, ri)


def _claim_straighter(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(main_runs(P, task, seed))
    return scorecard.claim_straighter(path_stats(pt)["ratio"], path_stats(ri)["ratio"],
                                      scorecard.steps_to_basin(pt.steps), scorecard.steps_to_basin(ri.steps))


def _claim_overfitting(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(long_runs(P, task, seed))
    return scorecard.claim_overfitting(pt.evals, ri.evals, metric)


def _claim_generalise(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(main_runs(P, task, seed))
    cpt, cri = _pair(curves(P, task, seed))
    train_pt = float(cpt[f"train_{metric}"].sel(alpha=1.0, method="nearest"))
    train_ri = float(cri[f"train_{metric}"].sel(alpha=1.0, method="nearest"))
    return scorecard.claim_generalise(pt.final[metric], ri.final[metric], train_pt, train_ri, metric)


def _claim_surfaces_agree(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(surfaces(P, task, seed))
    return scorecard.claim_surfaces_agree(pt["train_loss"].values, pt["dev_error"].values,
                                          ri["train_loss"].values, ri["dev_error"].values)


def _encoder_change_and_rise(rep: layers.LayerReport) -> tuple[list[float], list[float]]:
    """Relative change and per-layer curve rise (others at θ1) of the encoder layers."""
    ch = rep.change[(rep.change["layer_index"] >= 0) & (rep.change.index.str.startswith("layer"))]
    cs = rep.curve_summary.loc["theta1"]
    cs = cs[cs.index.str.startswith("layer")]
    return list(ch["relative_change"]), list(cs["train_loss_rise"])


def _claim_layers_invariant(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(layer_reports(P, task, seed))
    (a, b), (c, d) = _encoder_change_and_rise(pt), _encoder_change_and_rise(ri)
    return scorecard.claim_layers_invariant(a, b, c, d)


def _restore_costs(rep: layers.LayerReport, metric: str) -> tuple[float, float]:
    """Metric lost by restoring the bottom third of the layers to θ0, and the top third."""
    r = rep.restore
    n_layers = int(r[r["order"] == "bottom-up"]["k"].max())
    third = max(1, round(n_layers / 3))
    col = f"dev_{metric}"
    full = float(r[(r["order"] == "bottom-up") & (r["k"] == 0)][col].iloc[0])
    bottom = float(r[(r["order"] == "bottom-up") & (r["k"] == third)][col].iloc[0])
    top = float(r[(r["order"] == "top-down") & (r["k"] == third)][col].iloc[0])
    return full - bottom, full - top


def _claim_restore(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    reps = layer_reports(P, task, seed)
    pb, ptop = _restore_costs(reps["pretrained"], metric)
    rb, rtop = _restore_costs(reps["scratch"], metric) if "scratch" in reps else (None, None)
    return scorecard.claim_restore(pb, ptop, rb, rtop, metric)


def _claim_curvature(P: Profile, task: str, seed: int, metric: str) -> list[dict]:
    pt, ri = _pair(curvature_numbers(P, task, seed))
    return scorecard.claim_curvature(pt["top_eigenvalue"], ri["top_eigenvalue"], pt["trace"], ri["trace"],
                                     pt.get("trace_stderr"), ri.get("trace_stderr"))


#: How each claim of :data:`bertscape.scorecard.CLAIMS` is computed from the study's results.
CLAIM_ROWS: dict[Any, Callable[[Profile, str, int, str], list[dict]]] = {
    1: _claim_training_loss, 2: _claim_monotone, 3: _claim_wider, 4: _claim_straighter,
    5: _claim_overfitting, 6: _claim_generalise, 7: _claim_surfaces_agree, 8: _claim_layers_invariant,
    9: _claim_restore, "H": _claim_curvature,
}


def chapter_claims(P: Profile, chapter: str, task: str, seed: int = 0) -> list[dict]:
    """Claim rows of one chapter (``01`` … ``04``) for one task and seed."""
    metric = _metric(P, task)
    return [row for claim in scorecard.CHAPTER_CLAIMS[chapter] for row in CLAIM_ROWS[claim](P, task, seed, metric)]


def chapter_scorecard(P: Profile, chapter: str) -> pd.DataFrame:
    """The chapter's claim rows for every task and seed of the profile."""
    frames = [scorecard.table(chapter_claims(P, chapter, t, s), task=t, seed=s) for t in P.tasks for s in P.seeds]
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "chapter", chapter)
    return df


def full_scorecard(P: Profile) -> pd.DataFrame:
    """Every chapter's claim rows (the scorecard page)."""
    return pd.concat([chapter_scorecard(P, ch) for ch in scorecard.CHAPTER_CLAIMS], ignore_index=True)


def verdict_lines(df: pd.DataFrame) -> list[str]:
    """One sentence per claim and task, generated from the rows (for the chapter's closing text)."""
    lines = []
    keys = ["task", "claim"]
    for (task, claim), g in df.groupby(keys, sort=False):
        held = int(g["holds"].sum())
        n = len(g)
        state = "holds" if held == n else ("fails" if held == 0 else "partly holds")
        lines.append(f"Claim {claim} on {task}: {state} ({held} of {n} criteria over {g['seed'].nunique()} seed(s)) "
                     f"— {scorecard.CLAIMS[claim]}.")
    return lines


# ----------------------------------------------------------------------------- tables for the chapters

def profile_summary(P: Profile) -> str:
    """A Markdown paragraph saying what this execution of a chapter ran."""
    n_train = "all" if P.n_train is None else f"{P.n_train:,}"
    return (f"**Profile `{P.name}`** ({P.description}): model `{P.model}`, task(s) {', '.join(f'`{t}`' for t in P.tasks)}, "
            f"seed(s) {', '.join(map(str, P.seeds))}; {n_train} training sentences × {P.epochs} epochs, "
            f"max length {P.max_length}; 1D curves of {P.curve_points} points and {P.grid_points[0]}×{P.grid_points[1]} "
            f"surfaces on {P.grid_n_eval} sentences per split.")


def final_metrics(P: Profile, task: str) -> pd.DataFrame:
    """Dev metrics at θ1 and run time of the main runs, one row per init and seed."""
    rows = []
    for seed in P.seeds:
        for init, run in main_runs(P, task, seed).items():
            rows.append({"task": task, "init": init, "seed": seed, **{f"dev {k}": v for k, v in run.final.items()},
                         "steps": run.meta["total_steps"], "train seconds": run.meta["seconds"]})
    return pd.DataFrame(rows)


def mean_spread(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """Mean ± standard deviation over seeds, formatted per column."""
    g = df.groupby(by, sort=False)[cols]
    mean, std = g.mean(), g.std().fillna(0.0)
    out = pd.DataFrame(index=mean.index)
    for c in cols:
        out[c] = [f"{m:.4g} ± {s:.2g}" if len(df) > 1 else f"{m:.4g}" for m, s in zip(mean[c], std[c])]
    return out


def layer_frame(reports: dict[str, layers.LayerReport], table: str, value: str,
                view: str | None = None) -> pd.DataFrame:
    """A long per-layer table (``layer``, ``init``, ``value``, ``layer_index``) for the plots."""
    frames = []
    for init, rep in reports.items():
        df = getattr(rep, table)
        if view is not None:
            df = df.loc[view]
        df = df.reset_index()
        name = "group" if "group" in df.columns else df.columns[0]
        frames.append(pd.DataFrame({"layer": df[name].astype(str), "init": init, value: df[value],
                                    "layer_index": df["layer_index"] if "layer_index" in df else np.arange(len(df))}))
    return pd.concat(frames, ignore_index=True)


def restore_frame(reports: dict[str, layers.LayerReport], metric: str) -> pd.DataFrame:
    """The restore experiment in long form: ``order``, ``k``, ``init`` and the dev metric."""
    frames = []
    for init, rep in reports.items():
        r = rep.restore[rep.restore["order"].isin(["bottom-up", "top-down"])]
        frames.append(pd.DataFrame({"order": r["order"], "k": r["k"], "init": init,
                                    f"dev_{metric}": r[f"dev_{metric}"], "restored": r["restored"]}))
    return pd.concat(frames, ignore_index=True)


def layer_curve_frame(reports: dict[str, layers.LayerReport], var: str = "train_loss",
                      view: str = "theta1") -> pd.DataFrame:
    """Per-layer curves in long form (``layer``, ``init``, ``alpha``, ``var``) for the explorer."""
    frames = []
    for init, rep in reports.items():
        df = rep.curves[var].sel(view=view).to_dataframe().reset_index()
        frames.append(pd.DataFrame({"layer": df["group"].astype(str), "init": init, "alpha": df["alpha"],
                                    var: df[var]}))
    return pd.concat(frames, ignore_index=True)
