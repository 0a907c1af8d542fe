"""The frozen, validated description of a training run; its hash keys the cache."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from . import cache, versions
from .data import get_task
from .errors import bad_value, check_positive_int
from .models import INITS

#: Default peak learning rates. At the quick size (2,000 sentences, 63 steps an epoch) the
#: BERT paper's 2e-5 under-trains the pre-trained model and scratch needs a larger step to leave
#: chance level (measured on this project's CPU machines; see the design notes).
DEFAULT_LR = {"pretrained": 5e-5, "scratch": 1e-4}
#: Learning-rate schedules after the warm-up.
SCHEDULES = ("linear", "constant")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a fine-tuning run.

    Attributes:
        task: task name (``movies``, ``sst2``, ``mrpc`` …, see :data:`bertscape.data.TASKS`).
        model: ``embedded`` (offline all-MiniLM-L6-v2), a hub id or a local folder.
        init: ``pretrained`` (θ0 = pre-trained body + fresh head) or ``scratch`` (random body).
        seed: seeds model init, head, dropout and batch order.
        data_seed: seeds the training/dev subsets (kept apart from ``seed`` so runs compare on one set).
        n_train, n_dev: subset sizes (``None`` = the whole split); stratified by label.
        max_length: truncation length in tokens.
        epochs, batch_size: the training budget.
        group_by_length: group training batches by length as transformers' ``Trainer`` does
            (length-sorted random mega-batches; batch order then shuffled), so a batch pads to
            similar lengths: 1.8x fewer tokens an epoch on ``movies``. ``False``: uniform batches.
        lr: peak learning rate; ``None`` picks :data:`DEFAULT_LR` for the init.
        warmup: fraction of steps of linear warm-up.
        schedule: after the warm-up, ``linear`` (decay to 0 at the last step, BERT's recipe) or
            ``constant`` (stay at the peak: a run meant to train far past convergence must not
            have its steps shrink to nothing).
        weight_decay: AdamW decoupled weight decay (not on biases and LayerNorm).
        evals_per_epoch: dev evaluations per epoch (1 = at each epoch's end).
        n_checkpoints: trajectory checkpoints K, spread evenly over training, θ0 and θ1 included.
        device: ``auto`` (CUDA if present), ``cpu`` or ``cuda[:N]``.
        precision: ``auto`` (bf16 autocast on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        glue_dir: GLUE folder for GLUE tasks (``None``: ``$BERTSCAPE_GLUE_DIR`` or the hub).
        max_grad_norm: gradient clipping norm (BERT's 1.0).
        metric: the task metric reported as "the" dev metric (``None``: the task's GLUE main
            metric). Classification metrics (accuracy, f1, mcc) are refused for regression tasks.
    """

    task: str = "movies"
    model: str = "embedded"
    init: Literal["pretrained", "scratch"] = "pretrained"
    seed: int = 0
    data_seed: int = 0
    n_train: int | None = 2000
    n_dev: int | None = 512
    max_length: int = 64
    epochs: int = 3
    batch_size: int = 32
    group_by_length: bool = True
    lr: float | None = None
    warmup: float = 0.1
    schedule: str = "linear"
    weight_decay: float = 0.01
    evals_per_epoch: int = 1
    n_checkpoints: int = 10
    device: str = "auto"
    precision: str = "auto"
    glue_dir: str | None = None
    max_grad_norm: float = 1.0
    metric: str | None = None

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
        for name in ("seed", "data_seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad_value(name, v, "a non-negative integer")
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
        if self.precision not in ("auto", "fp32", "bf16"):
            raise bad_value("precision", self.precision, ("auto", "fp32", "bf16"))
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
        if d["precision"] == "auto":  # resolve: bf16 on a GPU, fp32 on CPU
            import torch

            on_gpu = self.device.startswith("cuda") or (self.device == "auto" and torch.cuda.is_available())
            d["precision"] = "bf16" if on_gpu else "fp32"
        if d["glue_dir"] is not None:
            d["glue_dir"] = os.path.abspath(d["glue_dir"])
        return cache.stable_hash({"spec": d, "code": versions.version("runs"), "data": versions.version("data")})

    def label(self) -> str:
        """Short human label, e.g. ``movies/pretrained/s0``."""
        return f"{self.task}/{self.init}/s{self.seed}"
