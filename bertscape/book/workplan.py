"""How much work a profile is, chapter by chapter, and how long it takes on this machine.

The work is counted from the profile alone, in the units :mod:`bertscape.base.workcount` counts while it
runs: optimiser steps and the padded tokens of their batches (the batches a run will draw are built, as
the run builds them), resume states written, sentences evaluated (a forward pass), and Hessian-vector
products (per batch and per sentence; those restricted to one layer's parameters apart). Each result is charged to the first chapter that asks for it (later chapters read it
from the cache), as the book's chapters run in order. Two kinds of work cannot be counted exactly in
advance and use stated expectations: a line search's evaluations (:data:`LINE_SEARCH_EVALS`, between
:data:`LINE_SEARCH_EVALS_RANGE`) and the growth of the θ1-centred basin grid (:data:`BASIN_GROWTH`).

:func:`measure_rates` times the units on this machine with the profile's own model, data and
resolved precisions (a few seconds; a minute on a slow CPU without native bf16), and :func:`estimate`
turns work into minutes, per chapter, adding each chapter's fixed cost (a kernel and its imports).
``python -m bertscape.book --estimate`` prints it; ``make book`` prints it before it starts.
"""
from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from bertscape.base import workcount
from bertscape.book import study
from bertscape.book.profiles import Profile
from bertscape.data.tasks import train_batches
from bertscape.geometry import curvature, landscape
from bertscape.runs.evaluate import evaluate, forward_logits, loss_fn
from bertscape.runs.models import build_model, resolve_device
from bertscape.runs.precision import autocast_dtype
from bertscape.runs.precision import resolve as resolve_precision
from bertscape.runs.train import (
    epoch_batches,
    load_run,
    make_optimizer,
    resume_epochs,
    run_data,
    save_resume,
    step_plan,
)

__all__ = ["Work", "Rates", "Assumptions", "EXPECTED", "LEAST", "MOST", "CHAPTERS", "plan", "measure_rates",
           "estimate", "format_estimate", "LINE_SEARCH_EVALS", "BASIN_GROWTH"]

#: The book's chapters, in build order.
CHAPTERS = ("01", "02", "03", "04", "05", "06")
#: Expected evaluations of one line search (one direction, both sides: the doubling steps until the loss
#: crosses the level, three bisections, up to two guard points a side), measured on quick builds, and
#: the least and most a search can take (1 step + 3 bisections a side; 11 doublings to the cap + 2 guards).
LINE_SEARCH_EVALS = 18
LINE_SEARCH_EVALS_RANGE = (8, 34)
#: Expected size of the grown θ1-centred basin grid relative to its first n × n grid (quick builds: most
#: sets close inside the first grid; a run on a slope adds strips).
BASIN_GROWTH = 1.3
#: The estimate says "over an hour" and names lighter choices above this many seconds.
LONG_BUILD = 3600.0


@dataclass(frozen=True)
class Assumptions:
    """The counts a plan cannot know in advance: evaluations per line search, the grown basin grid's
    size relative to its first n × n grid, and the share of the dev sentences the CKA token sample
    touches. :data:`EXPECTED` for the estimate; :data:`LEAST` and :data:`MOST` bound what a build can do."""

    line_search_evals: float = LINE_SEARCH_EVALS
    basin_growth: float | None = BASIN_GROWTH  # None: the largest growth the profile allows
    cka_share: float = 1.0


EXPECTED = Assumptions()
LEAST = Assumptions(LINE_SEARCH_EVALS_RANGE[0], 1.0, 0.0)
MOST = Assumptions(LINE_SEARCH_EVALS_RANGE[1], None, 1.0)


@dataclass
class Work:
    """Counts of work in the units of :data:`bertscape.base.workcount.KINDS`, and what they are made of
    (``items``: label → counts, for the printout)."""

    train_steps: float = 0.0
    train_tokens: float = 0.0
    resume_saves: float = 0.0
    eval_sentences: float = 0.0
    hvp_batches: float = 0.0
    hvp_sentences: float = 0.0
    layer_hvp_sentences: float = 0.0
    items: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, label: str, **counts: float) -> None:
        for k, v in counts.items():
            setattr(self, k, getattr(self, k) + v)
            self.items.setdefault(label, {}).setdefault(k, 0.0)
            self.items[label][k] += v

    def counts(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in workcount.KINDS}


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of work on this machine: a training step (``train_step`` per step plus
    ``train_token`` per padded token of its batch), a resume state written, an evaluated sentence, a
    Hessian-vector product (``hvp_batch``: per batch; ``hvp_sentence``: per sentence in it; restricted
    to one layer: ``layer_hvp_sentence``), and a chapter's fixed cost (a fresh kernel importing the
    package and its plotting). ``describe`` says where they were measured."""

    train_step: float
    train_token: float
    resume_save: float
    eval_sentence: float
    hvp_batch: float
    hvp_sentence: float
    layer_hvp_sentence: float
    chapter: float
    describe: str = ""

    def seconds(self, w: Work) -> float:
        return (w.train_steps * self.train_step + w.train_tokens * self.train_token
                + w.resume_saves * self.resume_save + w.eval_sentences * self.eval_sentence
                + w.hvp_batches * self.hvp_batch + w.hvp_sentences * self.hvp_sentence
                + w.layer_hvp_sentences * self.layer_hvp_sentence)


# ----------------------------------------------------------------------------- the plan

def _sizes(spec: Any) -> tuple[int, int]:
    tr, dv = run_data(spec)
    return len(tr), len(dv)


def _train_work(w: Work, label: str, spec: Any) -> None:
    """A fine-tuning run: its optimiser steps and the padded tokens of its batches (rebuilt epoch by
    epoch as the run builds them, without touching a model), its resume states
    (:func:`bertscape.runs.train.resume_epochs`) and its dev evaluations (one before training)."""
    train_enc, dev_enc = run_data(spec)
    _, total, _, eval_steps = step_plan(spec, len(train_enc))
    tokens = sum(int(b["input_ids"].numel()) for e in range(spec.epochs) for b in epoch_batches(spec, train_enc, e))
    w.add(label, train_steps=total, train_tokens=tokens, resume_saves=len(resume_epochs(spec.epochs)),
          eval_sentences=(1 + len(eval_steps)) * len(dev_enc))


def _n(P: Profile, spec: Any, n: int | None, split: str = "train") -> int:
    n_train, n_dev = _sizes(spec)
    size = n_train if split == "train" else n_dev
    return size if n is None else min(n, size)


def _grid(w: Work, label: str, P: Profile, spec: Any, points: int, splits: tuple[str, ...], n: int | None) -> None:
    w.add(label, eval_sentences=points * sum(_n(P, spec, n, s) for s in splits))


def _checkpoints(spec: Any, n_train: int) -> int:
    total = math.ceil(n_train / spec.batch_size) * spec.epochs
    return len({int(round(x)) for x in np.linspace(0, total, spec.n_checkpoints)})


class _Planner:
    """Walks the chapters in order, charging each result to the first chapter that needs it."""

    def __init__(self, P: Profile, skip_cached_runs: bool) -> None:
        self.P, self.skip = P, skip_cached_runs
        self.done: set[tuple] = set()
        self.work = {c: Work() for c in CHAPTERS}

    def once(self, key: tuple) -> bool:
        if key in self.done:
            return False
        self.done.add(key)
        return True

    def run(self, ch: str, spec: Any) -> None:
        if self.once(("run", spec.key())) and not (self.skip and load_run(spec) is not None):
            _train_work(self.work[ch], "training", spec)

    def runs(self, ch: str, t: str, s: int, pairing: str) -> dict[str, Any]:
        out = {}
        for init in self.P.inits:
            spec = self.P.run_spec(t, init, s, lr=study._pairing_lr(self.P, pairing, init))
            self.run(ch, spec)
            out[init] = spec
        return out


def plan(P: Profile, skip_cached_runs: bool = False, assume: Assumptions = EXPECTED,
         pair_trained: Callable[[str, int, str], bool] | None = None) -> dict[str, Work]:
    """The work of every chapter of the book for profile ``P`` (``{chapter: Work}``), counted cold (every
    result computed by the first chapter that asks for it). ``skip_cached_runs``: fine-tuning runs
    already in the cache are not counted (what a re-build after a code change costs, at most).
    ``assume``: the counts no plan can know exactly (:class:`Assumptions`). ``pair_trained(task, seed,
    pairing)``: whether both runs of a matched pairing trained; where they did not, the chapters skip
    that pairing's line searches and Hessians (they could not change its verdict). A plan made before
    training cannot know, so by default it counts them (the most that can happen); given the answers
    (e.g. from the runs in the cache) it counts exactly what the chapters do. One function over 80 lines
    on purpose: it walks the chapters in the order they run, which is what charges each result to the
    first chapter that needs it."""
    pl = _Planner(P, skip_cached_runs)
    n0 = P.grid_points[0]
    k = max(1, (n0 - 1) // 2)
    growth = assume.basin_growth if assume.basin_growth is not None else (n0 + 2 * landscape.BASIN_GROWTH_STEPS * k) ** 2 / n0 ** 2
    searches = len(_width_dirs()) * assume.line_search_evals
    s0 = study.figure_seed(P)
    main = study.PROFILE_PAIRING
    for t in P.tasks:
        for s in P.seeds:  # chapter 1: every run of every pairing (claims 1 and 4), curves of every seed
            for pairing in study.pairings(P):
                pl.runs("01", t, s, pairing)
            for init, spec in pl.runs("01", t, s, main).items():
                _grid(pl.work["01"], "1D curves", P, spec, P.curve_points,
                      ("train", "dev") if s == s0 else ("train",), P.curve_n_eval)
        for init, spec in pl.runs("01", t, s0, main).items():  # the surfaces' β unit: the figure seed's widths
            pl.once(("widths", spec.key()))
            pl.work["01"].add("line searches", eval_sentences=searches * _n(P, spec, P.grid_n_eval))
            _grid(pl.work["01"], "2D surfaces", P, spec, P.grid_points[0] * P.grid_points[1], ("train", "dev"),
                  P.grid_n_eval)
            _grid(pl.work["01"], "trajectories", P, spec, _checkpoints(spec, _sizes(spec)[0]), ("train", "dev"),
                  P.grid_n_eval)
        for s in P.seeds:  # chapter 2: widths, areas, Hessians and θ1 evaluations of every seed and pairing
            for pairing in study.pairings(P):
                skip = pairing != main and pair_trained is not None and not pair_trained(t, s, pairing)
                for init, spec in pl.runs("02", t, s, pairing).items():
                    w = pl.work["02"]
                    if skip:  # only the evaluations at θ1 (claim 6) are made for this pairing
                        if pl.once(("theta1", spec.key())):
                            w.add("θ1 evaluations", eval_sentences=2 * _n(P, spec, P.n_dev, "dev"))
                        continue
                    if pl.once(("widths", spec.key())):
                        w.add("line searches", eval_sentences=searches * _n(P, spec, P.grid_n_eval))
                    if pl.once(("theta1", spec.key())):
                        w.add("θ1 evaluations", eval_sentences=2 * _n(P, spec, P.n_dev, "dev"))
                    if pl.once(("hessian", spec.key())):
                        n = _n(P, spec, P.hessian_n_eval)
                        n -= n % P.hessian_batches
                        per_vec = P.hessian_steps + 5 + max(1, P.hessian_steps // 2)  # Lanczos, 4 directions + v, probes
                        w.add("Hessian-vector products", hvp_batches=per_vec * P.hessian_batches, hvp_sentences=per_vec * n)
            for init, spec in pl.runs("02", t, s, main).items():
                _grid(pl.work["02"], "basin grids", P, spec, n0 ** 2 * growth, ("train",), P.grid_n_eval)
        for s in P.seeds:  # chapter 3: long runs, their eval-mode loss, claim 7's neighbourhood grids
            for init in P.inits:
                if init == "pretrained" or s == s0:
                    spec = P.long_run_spec(t, init, s)
                    pl.run("03", spec)
                    pl.work["03"].add("long-run training loss", eval_sentences=_n(P, spec, P.curve_n_eval))
            if s != s0:
                near = [a for a in P.grid_axes()[0] if abs(a - 1.0) <= 0.5 + 1e-9]
                for spec in pl.runs("03", t, s, main).values():
                    _grid(pl.work["03"], "surfaces near θ1", P, spec, len(near) * P.grid_points[1], ("train", "dev"),
                          P.grid_n_eval)
        n_groups, n_enc = _layer_groups(P)
        for s in P.seeds:  # chapter 4
            for init, spec in pl.runs("04", t, s, main).items():
                w = pl.work["04"]
                n = _n(P, spec, P.curve_n_eval)
                if s == s0:  # the figures' layer report: curves, restores, per-layer Hessians, CKA
                    w.add("per-layer curves", eval_sentences=(n_groups * (len(P.layer_alphas) - 1) + 1) * n)
                    w.add("restores", eval_sentences=(2 * n_enc) * (n + _n(P, spec, P.curve_n_eval, "dev")))
                    m = _n(P, spec, P.hessian_n_eval)
                    w.add("per-layer Hessians", layer_hvp_sentences=n_groups * P.layer_hessian_steps * m)
                    w.add("CKA", eval_sentences=2 * assume.cka_share * _n(P, spec, P.curve_n_eval, "dev"))
                w.add("per-layer curvature", eval_sentences=(3 * n_enc + 1) * n)
                w.add("restored thirds", eval_sentences=2 * _n(P, spec, P.n_dev, "dev"))
        lmc = P.lmc_seeds  # chapter 5: the connectivity runs and segments
        for s in lmc:
            for init in P.inits:
                pl.run("05", P.run_spec(t, init, s))
                if init == "scratch":
                    pl.run("05", P.run_spec(t, init, s, init_seed=lmc[0]))
        pairs = len(lmc) * (len(lmc) - 1) // 2
        n_segments = pairs * (len(P.inits) + ("scratch" in P.inits)) + (len(P.inits) == 2)
        spec = P.run_spec(t, P.inits[0], lmc[0])
        _grid(pl.work["05"], "segments", P, spec, n_segments * P.segment_points, ("train", "dev"), P.grid_n_eval)
    return pl.work


def _width_dirs() -> tuple[str, ...]:
    from bertscape.geometry.linesearch import WIDTH_DIRECTIONS

    return tuple(WIDTH_DIRECTIONS)


def _layer_groups(P: Profile) -> tuple[int, int]:
    """(groups, encoder layers) of the profile's model, from its config (no weights loaded)."""
    from bertscape.runs.models import load_config

    cfg = load_config(P.model, 2, False)
    return cfg.num_hidden_layers + 3, cfg.num_hidden_layers  # embeddings, layers, pooler, head


# ----------------------------------------------------------------------------- rates

def _chapter_cost() -> float:
    """Seconds for a fresh interpreter to import what a chapter imports (its fixed cost, measured)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import matplotlib.pyplot, myst_nb, transformers; "
                    "from bertscape import claims, plots, report, study, widgets"], check=True,
                   capture_output=True)
    return time.perf_counter() - t


def _fit_step_time(tokens: list[int], seconds: list[float]) -> tuple[float, float]:
    """(seconds per step, seconds per padded token) by least squares over timed steps of different
    sizes; where the sizes barely differ, or the fit says more tokens cost less (noise), a step's
    median time per token (no fixed part)."""
    x, y = np.asarray(tokens, np.float64), np.asarray(seconds, np.float64)
    if len(x) >= 3 and x.max() >= 1.5 * x.min():
        b, a = np.polyfit(x, y, 1)
        if a >= 0 and b > 0:
            return float(a), float(b)
    return 0.0, float(np.median(y / x))


def _time_training(spec: Any, model: torch.nn.Module, dev: torch.device) -> tuple[float, float, float, list[int]]:
    """(seconds per step, per padded token, per resume state, the token counts timed) for run ``spec``
    on ``model`` (see :func:`measure_rates`)."""
    import tempfile

    train_enc, _ = run_data(spec)
    info = spec.task_info
    # training steps, in the training precision, on batches from the smallest to the largest in tokens
    dtype = autocast_dtype(spec.precision, dev)
    model.train()
    opt = make_optimizer(model, spec.replace(lr=1e-9))  # the run's own optimiser (fused AdamW where it can be)
    batches = sorted(train_batches(train_enc, spec.batch_size, torch.Generator().manual_seed(0),
                                   group_by_length=spec.group_by_length), key=lambda b: b["input_ids"].numel())
    picks = sorted({round(q * (len(batches) - 1)) for q in np.linspace(0, 1, 6)})
    tokens, times = [], []
    for i in picks + picks:  # the first pass warms up: a run sees each batch shape again and again
        b = {k: v.to(dev) for k, v in batches[i].items()}
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = forward_logits(model, b)
        loss = loss_fn(info, logits, b["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        tokens.append(int(b["input_ids"].numel()))
        times.append(time.perf_counter() - t)
    n = len(picks)
    step, per_token = _fit_step_time(tokens[n:], times[n:])
    # a resume state, as a run writes it at the end of an epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    saves = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(3):  # each replaces the one before, as epoch after epoch does
            t = time.perf_counter()
            save_resume(Path(tmp), model, opt, sched, {"epoch": 1, "step": 1, "steps": [], "evals": [], "preds": []})
            saves.append(time.perf_counter() - t)
    per_save = statistics.median(saves)
    del opt, sched
    return step, per_token, per_save, tokens[n:]


def measure_rates(P: Profile, task: str | None = None) -> Rates:
    """Seconds per unit of work on this machine, timed on the profile's model (pre-trained weights),
    its data and its resolved precisions: training steps (the run's optimiser, in training mode) on six
    batches of ``batch_size`` sentences spanning the run's batch sizes in tokens, timed on a second pass
    (a line through step time against padded tokens), a resume state written (the median of three, each
    replacing the last), an evaluation of 2 × ``eval_batch_size`` sentences,
    Hessian-vector products on batches of 8 and 32 sentences (their difference separates the
    per-batch cost from the per-sentence one), and one restricted to a middle layer on 32 sentences
    (a lower layer's costs more, an upper one's less). Plus a chapter's fixed cost
    (:func:`_chapter_cost`). Takes seconds natively, a minute or two on a CPU without native bf16."""
    from bertscape.geometry.layers import discover_layers

    task = task or P.tasks[0]
    spec = P.run_spec(task, "pretrained", P.seeds[0])
    dev = resolve_device(P.device)
    info = spec.task_info
    model = build_model(spec.model, "pretrained", info.num_labels, 0, info.is_regression).to(dev)
    step, per_token, per_save, tokens = _time_training(spec, model, dev)
    # an evaluated sentence, in the grids' precision
    ev = landscape.eval_sets_for_run(spec, 2 * P.eval_batch_size, 0, dev, P.eval_batch_size, splits=("train",))["train"]
    prec = resolve_precision(P.grid_precision, dev)
    evaluate(model, ev, prec)
    t = time.perf_counter()
    evaluate(model, ev, prec)
    per_sentence = (time.perf_counter() - t) / len(ev)
    # Hessian-vector products on 8 and 32 sentences, and one restricted to a middle layer's parameters
    layers = discover_layers(model)
    middle = layers.names_of(list(layers.groups)[len(layers.groups) // 2])
    hv = {}
    for n, names in ((8, None), (32, None), ("layer", middle)):
        size = 32 if n == "layer" else n
        es = landscape.eval_sets_for_run(spec, size, 0, dev, size, splits=("train",))["train"]
        with curvature.second_order_mode(model):
            op = curvature.hessian_operator(model, es, names)
            v = torch.randn(op.size, generator=torch.Generator().manual_seed(0)).to(op.device, op.dtype)
            op.matvec(v) if n != 32 else None  # warm-up
            t = time.perf_counter()
            op.matvec(v)
            hv[n] = time.perf_counter() - t
    per_hvp_sentence = max((hv[32] - hv[8]) / 24, 0.0)
    per_hvp_batch = max(hv[8] - 8 * per_hvp_sentence, 0.0)
    desc = (f"measured on {_machine()}: a training step {step:.2f} s + {1e3 * per_token:.2f} ms per padded token "
            f"(batch {spec.batch_size}, {spec.resolved_precision()}; {min(tokens)}–{max(tokens)} tokens timed), "
            f"a resume state {per_save:.2f} s, an evaluated sentence {1000 * per_sentence:.1f} ms ({prec}), a "
            f"Hessian-vector product {hv[8]:.2f} s on 8 sentences and {hv[32]:.2f} s on 32 (fp32), one layer's "
            f"{hv['layer']:.2f} s on 32")
    return Rates(step, per_token, per_save, per_sentence, per_hvp_batch, per_hvp_sentence, hv["layer"] / 32,
                 _chapter_cost(), desc)


def _machine() -> str:
    from bertscape.runs.precision import cpu_flags

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    info = cpu_flags()
    flags = ", ".join(k for k, v in info["flags"].items() if v) or "no AVX"
    return f"{info['model']} ({info['cores']} cores; {flags})"


# ----------------------------------------------------------------------------- the estimate

#: A chapter's own computing beyond the counted work, in chapter-fixed-cost units: the scorecard page
#: recomputes every claim's bootstraps (measured on quick builds: 10.2 and 12.8 s, 2.7 and 3.4 times the
#: import cost).
EXTRA_CHAPTER_COST = {"06": 2.0}


def estimate(P: Profile, rates: Rates, chapters: tuple[str, ...] = CHAPTERS,
             skip_cached_runs: bool = False) -> dict[str, dict[str, float]]:
    """Seconds per chapter: ``{chapter: {"seconds", "work": Work.counts(), "fixed"}}`` for the chapters
    asked for (their counted work × :class:`Rates`, plus the chapter's fixed cost)."""
    work = plan(P, skip_cached_runs)
    out = {}
    for ch in chapters:
        fixed = rates.chapter * (1.0 + EXTRA_CHAPTER_COST.get(ch, 0.0))
        out[ch] = {"seconds": rates.seconds(work[ch]) + fixed, "fixed": fixed, "work": work[ch].counts(),
                   "items": work[ch].items}
    return out


def format_estimate(P: Profile, est: Mapping[str, Mapping[str, Any]], rates: Rates) -> str:
    """The estimate as lines for people: per chapter its minutes and its work, the total, and, over an
    hour, the lighter choices."""
    lines = [f"[book] estimate for profile {P.name!r} ({rates.describe}):"]
    for ch, e in est.items():
        w = e["work"]
        lines.append(f"[book]   chapter {ch}: ~{_minutes(e['seconds'])} — {w['train_steps']:,.0f} training steps, "
                     f"{w['eval_sentences']:,.0f} sentence evaluations, {w['hvp_sentences'] + w['layer_hvp_sentences']:,.0f} sentences in "
                     f"Hessian-vector products")
    total = sum(e["seconds"] for e in est.values())
    lines.append(f"[book]   total: ~{_minutes(total)} (a cold cache; cached results are read back)")
    if total > LONG_BUILD:
        lines.append("[book]   that is over an hour on this machine. Lighter choices: a GPU (`device=\"auto\"` uses one), "
                     "PROFILE=smoke (a minute or two, numbers meaningless), fewer seeds (`-p seeds '[0]'`, verdicts then "
                     "marked 'one seed'), or fewer tasks.")
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
