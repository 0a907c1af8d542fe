"""Named run sizes ("profiles") shared by every chapter of the book.

A profile fixes *how big* each experiment is — data sizes, training budget, grid resolution,
evaluation subset, precision — so that one notebook runs unchanged from a seconds-long smoke test
to the paper-scale experiment on a GPU.  Four profiles exist:

========  ==========================================================================================
smoke     seconds; for tests. 64 sentences, one epoch, 5-point curves, 5×5 grids.
quick     the default. The embedded MiniLM model on the embedded ``movies`` task, three seeds, sized so
          the whole book executes cold in at most 45 minutes on a 2-core CPU with native bf16 (measured:
          41 min 36 s); about 1 h 45 min on 2 AVX2-only cores (estimated). Its work is below.
paper     ``bert-base-uncased`` on MRPC, RTE, SST-2 and CoLA, full data, paper-like grids; needs a GPU
          and either a reachable model hub or local copies (see :attr:`Profile.glue_dir`).
gpu       one GPU, no hub: the embedded MiniLM on the whole ``movies`` task, three seeds, 31×31 grids
          on 1,024 sentences per split, both matched-lr controls (``make book PROFILE=gpu``). Target:
          the whole book in about 10 minutes on one H100/H200 (one seed of a close setting, 21×21
          grids, took 303 s on an H200: benchmarks/RESULTS.md).
========  ==========================================================================================

Every field can be overridden: ``get_profile("quick", n_train=500)``; in a chapter notebook the
papermill parameters ``profile``, ``tasks``, ``glue_dir`` and ``overrides`` go through
:func:`from_params`.

Sizing of the quick profile, from cold builds on this project's 2-core machines. A first build (13×13
grids, fp32 curves, a 1,000 × 10-epoch long run, uniform random batches at ~0.85 s a step) was on course
for ~40 minutes, so the grids went to 9×9 (α and β steps of 0.25), curves and grids to bf16, the long run
to 500 sentences × 12 epochs (fewer sentences, more passes: it still trains far past convergence), the
Hessian to 10 products on 32 sentences, and training batches are grouped by length (0.46 s a step).
Measured cold build before the three-state scorecard, ``make book`` with an empty cache: 25 min 12 s.
With it (matched-lr control run, line searches, β extents from the basin, a θ1-centred basin grid,
per-sentence bootstraps), from a fresh clone: 37 min 50 s — chapter 1 1,041 s (three runs 140 + 135 + 117 s,
curves 125 s, line searches 160 s, surfaces 277 s, trajectories and PCA paths 72 s), chapter 2 317 s
(basin grids ~150 s, Hessians 130 s), chapter 3 423 s (long runs at a constant rate), chapter 4 363 s
(204 s since the per-layer curves skip the dev set and the restore skips the unused group order),
chapter 5 16 s, site 6 s. Then training went to bf16 autocast (1.5–1.9× faster steps, the same
verdicts), the 1D curves to 21 points, claim 3's basin grid learned to grow, and a connectivity chapter
joined two seeds per starting point. Measured from a fresh clone (``make book``, cold cache): 32 min 11 s —
set-up 1.5 min, chapters 850 / 317 / 226 / 196 / 218 / 18 s (chapter 5, the extension, is the 218 s that
puts the book over the 30-minute goal), site 5 s. Then the line searches took 3 bisections (from 5), guard
points only where a resample could need them and one evaluation of θ1 for all four directions (~30 % fewer
evaluations), and the quick profile went to 9×7 θ0-centred surfaces, 224 sentences a landscape point, 8
Hessian products and 9 points a segment. Measured from a fresh clone (``make book``, cold cache):
26 min 10 s — set-up 1.6 min, chapters 616 / 227 / 212 / 199 / 198 / 16 s, site 5 s. Then verdicts were
decided over three seeds (the quick profile's budget became 45 minutes) with PT at RI's learning rate as the
control: 41 min 36 s cold (``make book``, chapters 919 / 805 / 388 / 146 / 186 / 10 s).

The quick profile's work, in the units :mod:`bertscape.base.workcount` counts (planned by
:func:`bertscape.book.workplan.plan`; per chapter in the README's "How long it takes"): 2,847 training steps
over 2,821,080 padded tokens, 34 resume states, 682,899 evaluated sentences, 612 whole-model Hessian-vector
products over 4,896 sentences and 2,304 sentences in per-layer products. Its time on a machine is that work
times the rates :func:`bertscape.book.workplan.measure_rates` measures there (``make book`` prints it before
it starts): on the 2-core CPU with native bf16 above, 0.03 s + 0.21 ms per padded token a step, 1.4 s a
resume state, 1.7 ms a sentence, 65 ms a sentence in a whole-model product and 23 ms in a per-layer one; on
the same CPU limited to AVX2 (fp32), 0.52 ms per padded token, 0.9 s, 5.8 ms, 84 and 31 ms.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Sequence

import yaml

from bertscape.base.errors import BertscapeError, bad_value, check_positive_int
from bertscape.geometry.flatness import linspace
from bertscape.runs.precision import PRECISIONS
from bertscape.runs.spec import (
    SCHEDULES,
    FineTuning,
    RunSpec,
    field_help,
    redefault,
    setting,
)

__all__ = ["Profile", "PROFILES", "PROFILE_NAMES", "DEFAULT_PROFILE", "get_profile", "from_params",
           "profile_table"]

_INITS = ("pretrained", "scratch")


@dataclass(frozen=True, kw_only=True)
class Profile(FineTuning):
    """How big every experiment of the book is.  Frozen; change it with :meth:`replace`.

    The fine-tuning fields (``n_train``, ``epochs``, ``batch_size``, ``device`` …) are those of
    :class:`~bertscape.runs.spec.FineTuning`, shared with :class:`~bertscape.runs.spec.RunSpec` and copied into
    every main-run spec; the rest size the analyses. Each field carries its help text in its metadata
    (shown by :func:`profile_table`); construct by keyword.
    Grid ranges are in units of the direction vectors: α multiplies δ1 = θ1 − θ0, β multiplies the
    filter-normalised random direction δ2.  α = 0 is θ0 and α = 1 is θ1; both must fall on a grid
    point, which is checked.
    """

    name: str = setting(help="Profile name (``smoke``, ``quick``, ``paper`` or a custom label).")
    description: str = setting(help="One line saying what the profile is for.")

    # ------------------------------------------------------------------ what to train
    model: str = redefault(FineTuning, "model")  # no default: every profile names its model
    tasks: tuple[str, ...] = setting(help="Tasks every chapter runs, in order (see :data:`bertscape.data.tasks.TASKS`).")
    inits: tuple[str, ...] = setting(_INITS, "Starting points compared: ``pretrained`` (PT) and/or ``scratch`` (RI).")
    seeds: tuple[int, ...] = setting((0, 1, 2), """Run seeds (model init, head, dropout, batch order). Every
        scored quantity is computed for each seed and the scorecard decides on the per-seed margins (the t rule
        over seeds); figures draw the first seed. With one seed every verdict is marked "one seed": it cannot
        see how much a second seed would differ.""")

    # ------------------------------------------------------------------ fine-tuning budget
    lr_pretrained: float = setting(5e-5, "Peak learning rate from pre-trained weights.")
    lr_scratch: float = setting(1e-4, """Peak learning rate from random weights (needs a larger step to leave
        chance level).""")
    control_lrs: tuple[str, ...] = setting(("scratch",), """Matched-learning-rate controls: ``scratch`` also
        trains PT at RI's peak rate, ``pretrained`` also trains RI at PT's; the claims that depend on
        training are then decided under each matched pairing too. Each adds one fine-tuning run (and its
        line searches, θ1 evaluation and Hessian) per task and seed; ``()`` for none. The informative one
        is ``scratch``: at PT's smaller rate RI does not leave chance level in a small budget, so that
        pairing decides nothing (its claims are inconclusive: a run did not train).""")
    evals_per_epoch: int = redefault(FineTuning, "evals_per_epoch", 2)

    # ------------------------------------------------------------------ long run (overfitting)
    long_n_train: int | None = setting(500, """Training sentences of the long run that trains far past
        convergence (``None`` = all).""")
    long_epochs: int = setting(12, "Epochs of the long run.")
    long_schedule: str = setting("constant", """Learning-rate schedule of the long run after its warm-up:
        ``constant`` (it keeps training far past convergence instead of decaying to a standstill) or
        ``linear``.""")

    # ------------------------------------------------------------------ 1D curves
    curve_points: int = setting(41, "Points of the 1D curve f(α) = L(θ0 + α·δ1).")
    curve_range: tuple[float, float] = setting((-0.5, 1.5), "α range of the 1D curve.")
    curve_n_eval: int = setting(256, "Sentences (per split, train and dev) each curve point is evaluated on.")
    curve_precision: str = setting("auto", """Precision of curve (and per-layer curve/restore) evaluations:
        ``auto`` = bf16 autocast where it is faster (a GPU; a CPU with native bf16, where it measured ~2× faster
        for a loss change of ~1e-5), else fp32 (:mod:`bertscape.runs.precision`); ``fp32`` or ``bf16`` pin it.""")
    layer_alphas: tuple[float, ...] = setting((0.0, 0.25, 0.5, 0.75, 1.0, 1.25), """α values of the per-layer
        curves (one layer moved along its own δ1 block, the others at θ1); must hold 0 and 1, and 1 ± h for
        the finite-difference curvature at θ1.""")
    layer_hessian_steps: int = setting(4, """Lanczos steps of the per-layer Hessian top eigenvalue (one
        Hessian-vector product each, per layer group).""")
    cka_tokens: int = setting(4096, "Token budget (seeded sample of dev tokens) of the per-layer CKA similarity.")

    # ------------------------------------------------------------------ 2D surfaces
    grid_points: tuple[int, int] = setting((9, 9), "Grid resolution (points along α, points along β).")
    grid_alpha: tuple[float, float] = setting((-0.5, 1.5), "α range of the 2D surface.")
    grid_beta: tuple[float, float] = setting((-2.0, 2.0), """β range of the 2D surface, in units of the run's
        own basin half-width along δ2: the distance from θ1 at which the training loss has risen by ε
        (``scorecard.FLAT_EPS``), found by a line search (the larger side). One rule for PT and RI, so the
        basin's edge lies inside every surface; a fixed β range of ±1 showed only vertical bands (δ2 must
        move ~15–20× as far as δ1 before the loss rises).""")
    grid_n_eval: int = setting(256, "Sentences (per split) each grid point is evaluated on.")
    grid_precision: str = setting("auto", """Precision of grid, line-search and segment evaluations: ``auto``
        (bf16 autocast where it is faster: a GPU, or a CPU with native bf16, where it measured ~2.3× faster for a
        loss change of ~2e-5; else fp32), ``fp32`` or ``bf16``.""")
    eval_batch_size: int = setting(64, "Batch size of landscape evaluations (64 was fastest on CPU).")

    # ------------------------------------------------------------------ linear mode connectivity
    lmc_seeds: tuple[int, ...] = setting((0, 1, 2), """Seeds joined by straight segments in the connectivity
        chapter: every pair of PT seeds (the main runs), every pair of RI seeds that share the first lmc seed's
        random θ0 (trained for that chapter; they differ in head, dropout and batch order only), every pair of
        the main RI runs (each its own random θ0, reported), and PT ↔ RI at the first seed. Three seeds give
        three pairs per kind.""")
    segment_points: int = setting(11, """Points t ∈ [0, 1] of each segment (1 − t)·θ1ᵃ + t·θ1ᵇ (on
        ``grid_n_eval`` sentences per split, in ``grid_precision``).""")

    # ------------------------------------------------------------------ curvature
    hessian_steps: int = setting(10, """Lanczos steps for the top eigenvalue, and Hutchinson probes for the
        trace (one Hessian-vector product each). One product over 32 sentences of MiniLM takes ~2.5 s on an
        idle 2-core CPU (about 3.5x a forward and backward pass), hence the quick profile's 8 steps on 32
        sentences.""")
    hessian_n_eval: int = setting(32, """Training sentences the Hessian is taken on (also for the per-layer
        curvature).""")
    hessian_batches: int = setting(4, """Independent random batches the Hessian's sentences are split into: every
        curvature number is the mean of its per-batch values, and their spread is its sampling error over
        sentences (``hessian_n_eval`` is rounded down to a multiple).""")

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for name in ("name", "description", "model"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise bad_value(name, v, "a non-empty string")
        object.__setattr__(self, "tasks", _as_str_tuple("tasks", self.tasks))
        inits = _as_str_tuple("inits", self.inits)
        for i in inits:
            if i not in _INITS:
                raise bad_value("inits", self.inits, f"a non-empty subset of {_INITS}")
        object.__setattr__(self, "inits", inits)
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else (self.seeds,)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise bad_value("seeds", self.seeds, "a non-empty list of non-negative integers")
        object.__setattr__(self, "seeds", seeds)
        lmc = tuple(self.lmc_seeds) if isinstance(self.lmc_seeds, (list, tuple)) else (self.lmc_seeds,)
        if (len(set(lmc)) != len(lmc) or len(lmc) < 2
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in lmc)):
            raise bad_value("lmc_seeds", self.lmc_seeds, "at least two distinct non-negative integers")
        object.__setattr__(self, "lmc_seeds", lmc)
        if check_positive_int("segment_points", self.segment_points) < 3:
            raise bad_value("segment_points", self.segment_points, "an integer >= 3 (t = 0, an interior point, t = 1)")
        if self.long_n_train is not None:
            check_positive_int("long_n_train", self.long_n_train)
        for name in ("long_epochs", "curve_n_eval", "grid_n_eval", "eval_batch_size", "hessian_steps",
                     "hessian_n_eval", "hessian_batches"):
            check_positive_int(name, getattr(self, name))
        if self.hessian_batches < 2 or self.hessian_n_eval < 2 * self.hessian_batches:
            raise bad_value("hessian_batches", self.hessian_batches, "an integer >= 2 with at least 2 of the "
                            f"hessian_n_eval={self.hessian_n_eval} sentences a batch (the spread over batches is the "
                            "curvature's sampling error)")
        for name in ("lr_pretrained", "lr_scratch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise bad_value(name, v, "a number in (0, 1)")
        cl = _as_str_tuple("control_lrs", self.control_lrs) if self.control_lrs else ()
        if any(c not in _INITS for c in cl):
            raise bad_value("control_lrs", self.control_lrs, f"a subset of {_INITS} (or empty)")
        object.__setattr__(self, "control_lrs", cl)
        if self.long_schedule not in SCHEDULES:
            raise bad_value("long_schedule", self.long_schedule, SCHEDULES)
        for name in ("curve_precision", "grid_precision"):
            if getattr(self, name) not in PRECISIONS:
                raise bad_value(name, getattr(self, name), PRECISIONS)
        # The fine-tuning fields are RunSpec's (same names): building every main-run spec applies
        # RunSpec's rules to them (task names, sizes, data_seed, device, precision …), one set of rules.
        for task in self.tasks:
            for init in self.inits:
                self.run_spec(task, init, self.seeds[0])
                self.long_run_spec(task, init, self.seeds[0])
        # grids: α = 0 (θ0) and α = 1 (θ1) must be grid points; β = 0 must be one too
        object.__setattr__(self, "curve_range", _as_range("curve_range", self.curve_range))
        object.__setattr__(self, "grid_alpha", _as_range("grid_alpha", self.grid_alpha))
        object.__setattr__(self, "grid_beta", _as_range("grid_beta", self.grid_beta))
        n = check_positive_int("curve_points", self.curve_points)
        _check_on_grid("curve_points", n, self.curve_range, (0.0, 1.0), "curve_range")
        la = self.layer_alphas
        if (not isinstance(la, (list, tuple)) or len(la) < 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in la)
                or 0.0 not in [float(x) for x in la] or 1.0 not in [float(x) for x in la]):
            raise bad_value("layer_alphas", la, "a list of numbers holding 0 and 1")
        object.__setattr__(self, "layer_alphas", tuple(sorted(float(x) for x in la)))
        check_positive_int("layer_hessian_steps", self.layer_hessian_steps)
        check_positive_int("cka_tokens", self.cka_tokens)
        gp = self.grid_points
        if isinstance(gp, int) and not isinstance(gp, bool):
            gp = (gp, gp)
        if (not isinstance(gp, (tuple, list)) or len(gp) != 2
                or any(isinstance(g, bool) or not isinstance(g, int) or g < 2 for g in gp)):
            raise bad_value("grid_points", self.grid_points, "an integer >= 2 or a pair (n_alpha, n_beta)")
        object.__setattr__(self, "grid_points", (int(gp[0]), int(gp[1])))
        _check_on_grid("grid_points[0]", gp[0], self.grid_alpha, (0.0, 1.0), "grid_alpha")
        _check_on_grid("grid_points[1]", gp[1], self.grid_beta, (0.0,), "grid_beta")
        if self.glue_dir is not None and not isinstance(self.glue_dir, str):
            import os

            object.__setattr__(self, "glue_dir", os.fspath(self.glue_dir))

    # ------------------------------------------------------------------ use
    def replace(self, **changes: Any) -> "Profile":
        """A copy with some fields changed (validated again; unknown names are an error)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    def lr(self, init: str) -> float:
        """The peak learning rate for a starting point (``pretrained`` or ``scratch``)."""
        if init not in _INITS:
            raise bad_value("init", init, _INITS)
        return self.lr_pretrained if init == "pretrained" else self.lr_scratch

    def run_spec(self, task: str, init: str, seed: int = 0, **kw: Any) -> RunSpec:
        """The :class:`~bertscape.runs.spec.RunSpec` of the main fine-tuning run for ``task`` and ``init``.

        Keyword arguments override any RunSpec field (e.g. ``epochs=1``); unknown names are an error.
        """
        accepted = {f.name for f in fields(RunSpec)}
        unknown = sorted(set(kw) - accepted)
        if unknown:
            raise bad_value(unknown[0], kw[unknown[0]], "a RunSpec field: " + ", ".join(sorted(accepted)))
        if init not in _INITS:
            raise bad_value("init", init, _INITS)
        base = {f.name: getattr(self, f.name) for f in fields(FineTuning)}
        base.update(task=task, init=init, seed=seed, lr=self.lr(init))
        base.update(kw)
        return RunSpec(**base)

    def long_run_spec(self, task: str, init: str, seed: int = 0, **kw: Any) -> RunSpec:
        """The RunSpec of the long run (``long_n_train`` sentences × ``long_epochs``), one dev
        evaluation per epoch, for the overfitting chapter."""
        kw.setdefault("n_train", self.long_n_train)
        kw.setdefault("epochs", self.long_epochs)
        kw.setdefault("evals_per_epoch", 1)
        kw.setdefault("schedule", self.long_schedule)
        return self.run_spec(task, init, seed, **kw)

    def specs(self, **kw: Any) -> list[RunSpec]:
        """Main-run specs for every task × init × seed of the profile."""
        return [self.run_spec(t, i, s, **kw) for t in self.tasks for i in self.inits for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-able)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def grid_axes(self) -> tuple[list[float], list[float]]:
        """The α and β coordinates of the 2D grid (rounded to 10 decimals)."""
        return (linspace(*self.grid_alpha, self.grid_points[0]), linspace(*self.grid_beta, self.grid_points[1]))

    def curve_axis(self, points: int | None = None) -> list[float]:
        """The α coordinates of a 1D curve (``points`` defaults to :attr:`curve_points`)."""
        return linspace(*self.curve_range, points or self.curve_points)


# ---------------------------------------------------------------------------- helpers

def _as_str_tuple(param: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise bad_value(param, value, "a non-empty list of names (or one comma-separated string)")
    return tuple(value)


def _as_range(param: str, value: Any) -> tuple[float, float]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
          and value[0] < value[1])
    if not ok:
        raise bad_value(param, value, "a pair (low, high) of finite numbers with low < high")
    return (float(value[0]), float(value[1]))


def _on_grid(n: int, rng: tuple[float, float], must: Iterable[float]) -> bool:
    step = (rng[1] - rng[0]) / (n - 1)
    for x in must:
        k = (x - rng[0]) / step
        if not (rng[0] - 1e-9 <= x <= rng[1] + 1e-9) or abs(k - round(k)) > 1e-6:
            return False
    return True


def _check_on_grid(param: str, n: int, rng: tuple[float, float], must: Iterable[float], range_param: str) -> None:
    must = tuple(must)
    if n < 2:
        raise bad_value(param, n, "an integer >= 2")
    if not _on_grid(n, rng, must):
        ok = [k for k in range(2, 202) if _on_grid(k, rng, must)][:8]
        where = " and ".join(f"{x:g}" for x in must)
        hint = f"e.g. {', '.join(map(str, ok))}" if ok else f"none up to 201: change {range_param}"
        raise bad_value(param, n, f"a point count that puts {where} on the grid of {range_param}={rng} ({hint})")


def _check_names(changes: Mapping[str, Any]) -> None:
    accepted = [f.name for f in fields(Profile)]
    for k in changes:
        if k not in accepted:
            raise BertscapeError(f"{k!r} is not a profile parameter; accepted: {', '.join(accepted)}")


# ---------------------------------------------------------------------------- the profiles

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", description="seconds; for tests and CI (numbers are meaningless)",
        model="embedded", tasks=("movies",), n_train=64, n_dev=64, max_length=32, epochs=1, batch_size=16,
        evals_per_epoch=1, n_checkpoints=3, long_n_train=64, long_epochs=3, seeds=(0, 1), control_lrs=("scratch",),
        curve_points=5, curve_n_eval=32, layer_alphas=(0.0, 0.5, 1.0, 1.5), grid_points=(5, 5), grid_n_eval=32,
        lmc_seeds=(0, 1), segment_points=3, hessian_steps=3, hessian_n_eval=16, hessian_batches=2,
        layer_hessian_steps=2, cka_tokens=256,
    ),
    "quick": Profile(
        name="quick", description="default; MiniLM on movie reviews, three seeds, whole book in about 42 min on 2 "
        "cores with native bf16 (make book prints the estimate for yours)",
        model="embedded", tasks=("movies",), curve_points=21,
        # sized for the budget on 2 cores (the module docstring has the measured builds):
        # 7 β rows on the θ0-centred surface (the θ1-centred basin grid keeps 9 a side), 224
        # sentences a landscape point (standard errors ×1.07 against 256), 8 Hessian products per
        # estimate and 9 points a segment (t in steps of 1/8).
        grid_points=(9, 7), grid_n_eval=224, hessian_steps=8, segment_points=9,
    ),
    "paper": Profile(
        name="paper", description="BERT-base on four GLUE tasks, paper-sized grids; needs a GPU",
        model="bert-base-uncased", tasks=("mrpc", "rte", "sst2", "cola"), n_train=None, n_dev=None,
        max_length=128, epochs=3, lr_pretrained=2e-5, lr_scratch=1e-4, evals_per_epoch=4, n_checkpoints=20,
        long_n_train=None, long_epochs=10, curve_points=41, curve_n_eval=1024, control_lrs=("pretrained", "scratch"),
        layer_alphas=tuple(round(-0.5 + 0.125 * i, 3) for i in range(17)), layer_hessian_steps=20, cka_tokens=16384,
        grid_points=(31, 31), grid_alpha=(-1.0, 2.0), grid_beta=(-2.0, 2.0), grid_n_eval=1024,
        eval_batch_size=256, hessian_steps=50, hessian_n_eval=1024,
    ),
    "gpu": Profile(
        name="gpu", description="one GPU: MiniLM on the whole movies task, three seeds, 31×31 grids",
        model="embedded", tasks=("movies",), seeds=(0, 1, 2), n_train=None, n_dev=None, epochs=3,
        evals_per_epoch=4, n_checkpoints=20, control_lrs=("pretrained", "scratch"), long_n_train=1000,
        long_epochs=10, curve_points=41, curve_n_eval=1024,
        layer_alphas=tuple(round(-0.5 + 0.125 * i, 3) for i in range(17)), layer_hessian_steps=10,
        cka_tokens=16384, grid_points=(31, 31), grid_alpha=(-1.0, 2.0), grid_beta=(-2.0, 2.0), grid_n_eval=1024,
        eval_batch_size=256, hessian_steps=30, hessian_n_eval=256,
    ),
}
PROFILE_NAMES: tuple[str, ...] = tuple(PROFILES)
DEFAULT_PROFILE = "quick"


def get_profile(name: str | Profile = DEFAULT_PROFILE, **overrides: Any) -> Profile:
    """The named profile, with any fields overridden (``get_profile("quick", n_train=500)``).

    Raises :class:`~bertscape.base.errors.BertscapeError` naming the bad parameter and the accepted values.
    """
    if isinstance(name, Profile):
        base = name
    elif not isinstance(name, str) or name not in PROFILES:
        raise bad_value("profile", name, PROFILE_NAMES)
    else:
        base = PROFILES[name]
    return base.replace(**overrides) if overrides else base


def from_params(profile: str = DEFAULT_PROFILE, tasks: str | Sequence[str] | None = None,
                glue_dir: str | None = None, overrides: Mapping[str, Any] | None = None,
                seeds: int | Sequence[int] | None = None, model: str | None = None) -> Profile:
    """Resolve a chapter's papermill parameters into a :class:`Profile`.

    ``tasks``, ``glue_dir``, ``seeds`` and ``model`` left as ``None`` keep the profile's values;
    ``tasks`` may be a list or a comma-separated string (``-p tasks mrpc,rte``); ``seeds`` a list or
    one integer. ``overrides`` is a dict of further fields.

    papermill's ``-p`` passes a list or dict as text (``-p tasks '["mrpc"]'`` arrives as the string
    ``'["mrpc"]'``), so ``tasks``, ``seeds`` and ``overrides`` given as strings in list or dict syntax
    are parsed as YAML (a superset of JSON) first.
    """
    tasks = _parse_text("tasks", tasks, list)
    seeds = _parse_text("seeds", seeds, list)
    overrides = _parse_text("overrides", overrides, dict)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise bad_value("overrides", overrides, "a dict of profile fields, e.g. {'n_train': 500}")
    changes: dict[str, Any] = dict(overrides or {})
    if seeds is not None and seeds != []:
        changes["seeds"] = tuple(seeds) if isinstance(seeds, (list, tuple)) else (seeds,)
    if model is not None and model != "":
        changes["model"] = model
    if tasks is not None and tasks != [] and tasks != "":
        changes["tasks"] = tasks
    if glue_dir is not None and glue_dir != "":
        changes["glue_dir"] = str(glue_dir)
    return get_profile(profile, **changes)


def _parse_text(param: str, value: Any, kind: type) -> Any:
    """``value`` parsed as JSON (else YAML) when it is a string written as a list (``[...]``) or dict (``{...}``)."""
    if not isinstance(value, str) or not value.strip().startswith("[{"[kind is dict]):
        return value
    try:  # JSON first: YAML 1.1 reads a number such as 2e-5 (no dot) as a string
        parsed = json.loads(value)
    except ValueError:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise bad_value(param, value, f"a {kind.__name__} in JSON/YAML syntax ({err.__class__.__name__})") from None
    if not isinstance(parsed, kind):
        raise bad_value(param, value, f"a {kind.__name__} in JSON/YAML syntax")
    return parsed


def profile_table(names: Sequence[str] = PROFILE_NAMES, fields_: Sequence[str] | None = None) -> "Any":
    """A pandas DataFrame comparing profiles, one row per field, with the field's help text (its metadata)."""
    import pandas as pd  # only for this table: `import bertscape` loads this module, not pandas

    docs = field_help(Profile)
    # the shared fine-tuning fields come first in fields(Profile) (base class); the description leads the table
    wanted = list(fields_) if fields_ else [
        "description", *(f.name for f in fields(Profile) if f.name not in ("name", "description"))]
    rows = []
    for f in wanted:
        row = {"field": f}
        for n in names:
            v = getattr(get_profile(n), f)
            row[n] = "all" if v is None and f in ("n_train", "n_dev", "long_n_train") else v
        row["meaning"] = docs.get(f, "")
        rows.append(row)
    return pd.DataFrame(rows).set_index("field")

