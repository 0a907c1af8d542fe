"""The frozen, validated description of a training run; its hash keys the cache.

Every field carries its help text in ``dataclasses.field(metadata={"help": ...})`` (read with
:func:`field_help`), as HF ``TrainingArguments`` does. The fine-tuning fields a
:class:`~bertscape.book.profiles.Profile` shares with a :class:`RunSpec` are declared once, in
:class:`FineTuning`, the base of both.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from bertscape.base import cache, versions
from bertscape.base.errors import bad_value, check_positive_int
from bertscape.data.tasks import get_task
from bertscape.runs.models import INITS
from bertscape.runs.precision import PRECISIONS
from bertscape.runs.precision import resolve as resolve_precision

#: Default peak learning rates. At the quick size (2,000 sentences, 63 steps an epoch) the
#: BERT paper's 2e-5 under-trains the pre-trained model and scratch needs a larger step to leave
#: chance level (measured on this project's CPU machines; see the design notes).
DEFAULT_LR = {"pretrained": 5e-5, "scratch": 1e-4}
#: Learning-rate schedules after the warm-up.
SCHEDULES = ("linear", "constant")


def setting(default: Any = dataclasses.MISSING, help: str = "") -> Any:  # noqa: A002
    """A dataclass field with its help text in ``metadata["help"]`` (no ``default``: a required field)."""
    return field(default=default, metadata={"help": " ".join(help.split())})


def field_help(cls: Any) -> dict[str, str]:
    """``{field name: help text}`` of a dataclass whose fields were declared with :func:`setting`."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def redefault(cls: Any, name: str, default: Any = dataclasses.MISSING) -> Any:
    """Field ``name`` of the dataclass ``cls`` with another default (or none), keeping its help:
    a subclass that needs a different default redeclares the field with this."""
    return setting(default, {f.name: f for f in dataclasses.fields(cls)}[name].metadata["help"])


@dataclass(frozen=True, kw_only=True)
class FineTuning:
    """The fine-tuning settings a :class:`RunSpec` and a :class:`~bertscape.book.profiles.Profile` share
    (same names, same meaning; a profile's are copied into every main-run spec it builds).
    Keyword-only, so that subclasses may add fields without defaults."""

    model: str = setting("embedded", """``embedded`` (offline all-MiniLM-L6-v2), a hub id such as
        ``bert-base-uncased`` or a local folder.""")
    data_seed: int = setting(0, """Seed of the train/dev subsets, kept apart from the run seed so that runs
        (PT and RI, every seed) see the same examples.""")
    glue_dir: str | None = setting(None, """Folder with GLUE in the original TSV layout; ``None``:
        ``$BERTSCAPE_GLUE_DIR`` or the hub.""")
    n_train: int | None = setting(2000, """Training sentences per task (stratified by label); ``None`` = the
        whole training split.""")
    n_dev: int | None = setting(512, """Dev sentences per task for the reported metrics (stratified by label);
        ``None`` = the whole dev split.""")
    max_length: int = setting(64, "Truncation length in tokens.")
    epochs: int = setting(3, "Epochs of the main fine-tuning runs.")
    batch_size: int = setting(32, "Training batch size.")
    group_by_length: bool = setting(True, """Group training batches by sentence length as transformers'
        ``Trainer`` does (length-sorted random mega-batches, batch order then shuffled): less padding,
        ~1.8x faster steps on ``movies``. ``False``: uniform random batches.""")
    warmup: float = setting(0.1, """Fraction of steps of linear warm-up (then the schedule: linear decay to 0,
        or constant for the long run).""")
    weight_decay: float = setting(0.01, "AdamW decoupled weight decay (not on biases and LayerNorm).")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (BERT's 1.0).")
    evals_per_epoch: int = setting(1, """Dev evaluations per epoch during training (1 = at each epoch's end;
        for the training-curve plots).""")
    n_checkpoints: int = setting(10, """Checkpoints K kept along the trajectory, spread evenly over training,
        θ0 and θ1 included (for the projected path).""")
    device: str = setting("auto", """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; used for training
        and landscapes.""")
    precision: str = setting("auto", """Training precision: ``auto`` (bf16 autocast on a GPU; on a CPU bf16
        only where a one-off calibration measured it faster than fp32, see :mod:`bertscape.runs.precision`), ``fp32``
        or ``bf16`` (a pinned bf16 on a CPU without native bf16 warns: it is emulated, many times slower).""")


@dataclass(frozen=True, kw_only=True)
class RunSpec(FineTuning):
    """Everything that determines a fine-tuning run: the shared :class:`FineTuning` settings plus
    the task, starting point, seed, learning rate, schedule and metric. Each field's help is in its
    metadata (:func:`field_help`); construct by keyword."""

    task: str = setting("movies", "Task name (``movies``, ``sst2``, ``mrpc`` …, see :data:`bertscape.data.tasks.TASKS`).")
    init: Literal["pretrained", "scratch"] = setting("pretrained", """``pretrained`` (θ0 = pre-trained body +
        fresh head) or ``scratch`` (random body).""")
    seed: int = setting(0, "Seeds model init, head, dropout and batch order.")
    init_seed: int | None = setting(None, """Seeds the random body of a ``scratch`` run when it should differ from
        ``seed`` (``None`` or equal to ``seed``: drawn from ``seed``): runs of several seeds that share one random
        θ0 and differ only in head, dropout and batch order. Ignored (``None``) for ``pretrained``.""")
    lr: float | None = setting(None, "Peak learning rate; ``None`` picks :data:`DEFAULT_LR` for the init.")
    schedule: str = setting("linear", """After the warm-up, ``linear`` (decay to 0 at the last step, BERT's
        recipe) or ``constant`` (stay at the peak: a run meant to train far past convergence must not have
        its steps shrink to nothing).""")
    metric: str | None = setting(None, """The task metric reported as "the" dev metric (``None``: the task's
        GLUE main metric). Classification metrics (accuracy, f1, mcc) are refused for regression tasks.""")

    def __post_init__(self) -> None:
        t = get_task(self.task)
        object.__setattr__(self, "task", t.name)
        if self.metric is None:
            object.__setattr__(self, "metric", t.main_metric)
        elif self.metric not in t.metrics:
            kind = "regression" if t.is_regression else "classification"
            raise bad_value("metric", self.metric, f"a metric of the {kind} task {t.name!r}: {', '.join(t.metrics)}")
        if self.init not in INITS:
            raise bad_value("init", self.init, INITS)
        for name in ("seed", "data_seed") + (("init_seed",) if self.init_seed is not None else ()):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad_value(name, v, "a non-negative integer")
        if self.init != "scratch" or self.init_seed == self.seed:
            object.__setattr__(self, "init_seed", None)  # one spelling per run: one cache key
        for name in ("n_train", "n_dev"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        check_positive_int("max_length", self.max_length, upper=512, what="BERT's position limit")
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("evals_per_epoch", self.evals_per_epoch)
        if not isinstance(self.group_by_length, bool):
            raise bad_value("group_by_length", self.group_by_length, "True or False")
        if isinstance(self.n_checkpoints, bool) or not isinstance(self.n_checkpoints, int) or self.n_checkpoints < 2:
            raise bad_value("n_checkpoints", self.n_checkpoints, "an integer >= 2 (θ0 and θ1 are checkpoints)")
        lr = DEFAULT_LR[self.init] if self.lr is None else self.lr
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not (0 < lr < 1):
            raise bad_value("lr", self.lr, "a number in (0, 1) or None for the init's default")
        object.__setattr__(self, "lr", float(lr))
        if not isinstance(self.warmup, (int, float)) or not (0 <= self.warmup < 1):
            raise bad_value("warmup", self.warmup, "a fraction in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise bad_value("schedule", self.schedule, SCHEDULES)
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise bad_value("weight_decay", self.weight_decay, "a number >= 0")
        if not isinstance(self.max_grad_norm, (int, float)) or self.max_grad_norm <= 0:
            raise bad_value("max_grad_norm", self.max_grad_norm, "a number > 0")
        if self.precision not in PRECISIONS:
            raise bad_value("precision", self.precision, PRECISIONS)
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise bad_value("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if not isinstance(self.model, str) or not self.model:
            raise bad_value("model", self.model, "'embedded', a hub id or a local folder")
        if self.glue_dir is not None:
            object.__setattr__(self, "glue_dir", os.fspath(self.glue_dir))

    @property
    def task_info(self):
        return get_task(self.task)

    def replace(self, **changes: Any) -> "RunSpec":
        """A copy with some fields changed (validated again)."""
        if "init" in changes and "lr" not in changes and self.lr == DEFAULT_LR[self.init]:
            changes["lr"] = None  # keep following the init's default
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """Cache key: hash of every field (device excluded: results are device-independent
        up to float noise, and a GPU run should be reused on CPU) plus code and data versions."""
        d = self.to_dict()
        d.pop("device")
        if d["init_seed"] is None:  # the field came later: runs drawn from `seed` keep their keys
            d.pop("init_seed")
        d["precision"] = self.resolved_precision()  # results differ by precision: "auto" never keys a run
        if d["glue_dir"] is not None:
            d["glue_dir"] = os.path.abspath(d["glue_dir"])
        return cache.stable_hash({"spec": d, "code": versions.version("runs"), "data": versions.version("data")})

    def resolved_precision(self) -> str:
        """The precision this run trains in on this machine: ``precision`` with ``auto`` resolved
        (:func:`bertscape.runs.precision.resolve`: bf16 on a GPU; on a CPU bf16 only where it measured faster)."""
        return resolve_precision(self.precision, self.device)

    def label(self) -> str:
        """Short human label, e.g. ``movies/pretrained/s0`` (``movies/scratch/s1, θ0 of s0`` for a scratch
        run whose random body is another seed's)."""
        return f"{self.task}/{self.init}/s{self.seed}" + (f", θ0 of s{self.init_seed}" if self.init_seed is not None else "")
