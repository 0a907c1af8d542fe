"""Fine-tuning runs (pre-trained or from scratch) with recorded histories and trajectories.

A run is described by a :class:`~bertscape.runs.spec.RunSpec`; :func:`train` returns a
:class:`RunResult` from the cache when the same spec was run before, resumes an interrupted run
from its last completed epoch, and otherwise trains with the BERT recipe (AdamW, linear warm-up
then linear decay, gradient clipping, dropout as configured).

Storage of one run (``<cache>/runs/<key>/``): θ0 and θ1 in fp32 safetensors (2 + 2 fp16-model
units) and the K − 2 interior trajectory checkpoints as fp16 deltas from θ0 (1 unit each): at most
(K + 2) × the model's fp16 size. Deltas in fp16 keep ~3 significant digits of the *movement*,
which is what projections and PCA use (the weights themselves in fp16 would drown the small
fine-tuning steps in rounding).
"""
from __future__ import annotations

import functools
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from bertscape.base import cache, workcount
from bertscape.base.errors import BertscapeError, check_positive_int
from bertscape.base.progress import progress_enabled
from bertscape.data.tasks import (
    Encoded,
    encode,
    load_split,
    subset_indices,
    train_batches,
)
from bertscape.runs.evaluate import evaluate, forward_logits, loss_fn, prepare_eval
from bertscape.runs.models import (
    build_model,
    load_state,
    load_tokenizer,
    resolve_device,
    trainable_state,
)
from bertscape.runs.precision import autocast_dtype
from bertscape.runs.spec import RunSpec

StepCallback = Callable[[int, float], None]
#: The file of parameter names and sizes a run imported without weights carries instead of θ0.
PARAM_SIZES = "param_sizes.json"
#: Steps between host syncs of the recorded training losses (and progress-bar updates).
SYNC_EVERY = 25


# ----------------------------------------------------------------------------- data of a run

_DATA_FIELDS = ("task", "model", "data_seed", "n_train", "n_dev", "max_length", "glue_dir")


def run_data(spec: RunSpec) -> tuple[Encoded, Encoded]:
    """The run's tokenised training and dev subsets (seeded by ``spec.data_seed``, stratified).

    Memoised per process on the spec's data fields alone (task, model, subset sizes and seed,
    length, data folder), so the runs of every init, seed and learning rate share one tokenised
    copy; treat the returned objects as read-only."""
    return _run_data(tuple(getattr(spec, f) for f in _DATA_FIELDS))


@functools.lru_cache(maxsize=16)
def _run_data(key: tuple) -> tuple[Encoded, Encoded]:
    fields_ = dict(zip(_DATA_FIELDS, key))
    task = RunSpec(**fields_, init="pretrained").task_info
    tok = load_tokenizer(fields_["model"])
    out = []
    for split, n, param in (("train", fields_["n_train"], "n_train"), ("dev", fields_["n_dev"], "n_dev")):
        enc = encode(load_split(task, split, fields_["glue_dir"]), tok, fields_["max_length"])
        idx = subset_indices(enc.labels, n, fields_["data_seed"], stratify=not task.is_regression, param=param)
        out.append(enc.select(idx))
    return out[0], out[1]


def checkpoint_steps(total_steps: int, k: int) -> list[int]:
    """K checkpoint steps spread evenly over ``[0, total_steps]`` (θ0 first, θ1 last)."""
    return sorted(set(int(round(s)) for s in np.linspace(0, total_steps, k)))


# ----------------------------------------------------------------------------- result

@dataclass
class RunResult:
    """A finished run: histories as DataFrames, weights loaded lazily from the cache."""

    spec: RunSpec
    folder: Path
    steps: pd.DataFrame  # step, epoch, loss, lr, seconds
    evals: pd.DataFrame  # step, epoch, dev_loss, dev_<metric> …
    checkpoint_steps: list[int]
    meta: dict = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """Dev metrics of θ1 (the last evaluation)."""
        row = self.evals.iloc[-1]
        return {k.removeprefix("dev_"): float(v) for k, v in row.items() if k.startswith("dev_")}

    def dev_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(predictions, labels)``: the dev prediction of every sentence at every evaluation of
        :attr:`evals` (shape ``(n_evals, n_dev)``, classes or regression values) and the labels, in
        the evaluation set's order; for bootstraps of the dev metric over sentences."""
        z = cache.read_npz(self.folder / "dev_predictions.npz")
        if z is None:
            raise FileNotFoundError(f"{self.folder}: no dev_predictions.npz (a run cached by an older version)")
        return z["predictions"], z["labels"]

    def _weights(self, name: str) -> dict[str, torch.Tensor]:
        path = self.folder / name
        if not path.is_file():
            raise BertscapeError(
                f"run {self.spec.label()} ({self.spec.key()}) has no weights in the cache: it was imported from a "
                "results bundle without them, so its stored results can be shown but nothing new can be computed "
                "from it. Import a bundle exported with --with-weights, or remove "
                f"{self.folder} to train the run again.")
        return load_file(path)

    def theta0(self) -> dict[str, torch.Tensor]:
        """θ0: the starting point (fp32)."""
        return self._weights("theta0.safetensors")

    def theta1(self) -> dict[str, torch.Tensor]:
        """θ1: the end of training (fp32)."""
        return self._weights("theta1.safetensors")

    def param_sizes(self) -> dict[str, int]:
        """Every trainable parameter's name and number of elements, without loading the weights (read
        from θ0's header, or from ``param_sizes.json`` in a run imported without weights)."""
        if (self.folder / "theta0.safetensors").is_file():
            return self.param_sizes_of(self.folder)
        stored = cache.read_json(self.folder / PARAM_SIZES)
        if not isinstance(stored, dict):
            self._weights("theta0.safetensors")  # raises the error that says why
        return {str(k): int(v) for k, v in stored.items()}

    @staticmethod
    def param_sizes_of(folder: Path) -> dict[str, int]:
        """Names and sizes of the parameters in a run folder's θ0 file (its header only)."""
        with safe_open(folder / "theta0.safetensors", framework="pt") as f:
            return {k: int(np.prod(f.get_slice(k).get_shape())) for k in f.keys()}

    def delta(self) -> dict[str, torch.Tensor]:
        """δ1 = θ1 − θ0."""
        t0, t1 = self.theta0(), self.theta1()
        return {k: t1[k] - t0[k] for k in t0}

    def checkpoint(self, step: int, theta0: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The weights at a checkpoint ``step`` (one of :attr:`checkpoint_steps`)."""
        if step not in self.checkpoint_steps:
            raise ValueError(f"step={step} is not a checkpoint; expected one of {self.checkpoint_steps}")
        if step == 0:
            return self.theta0()
        if step == self.checkpoint_steps[-1]:
            return self.theta1()
        t0 = theta0 if theta0 is not None else self.theta0()
        d = self._weights(f"ckpt-{step:07d}.safetensors")
        return {k: t0[k] + d[k].float() for k in t0}

    def trajectory(self) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(step, θt) for every checkpoint, θ0 first and θ1 last."""
        t0 = self.theta0()
        for s in self.checkpoint_steps:
            yield s, (t0 if s == 0 else self.checkpoint(s, t0))

    def model(self, which: str = "theta1", device: str = "cpu") -> torch.nn.Module:
        """A model holding θ0 or θ1 (``which`` = ``theta0`` | ``theta1``)."""
        if which not in ("theta0", "theta1"):
            raise ValueError(f"which={which!r} is not accepted; expected 'theta0' or 'theta1'")
        task = self.spec.task_info
        net = build_model(self.spec.model, self.spec.init, task.num_labels, self.spec.seed, task.is_regression,
                          self.spec.init_seed)
        load_state(net, self.theta0() if which == "theta0" else self.theta1())
        return net.to(device).eval()


def _runs_dir() -> Path:
    return cache.subdir("runs")


def load_run(spec: RunSpec) -> RunResult | None:
    """The cached result of ``spec``, or ``None`` (missing, incomplete or corrupt)."""
    folder = _runs_dir() / spec.key()
    if not folder.is_dir() or not cache.check_manifest(folder):
        return None
    hist = cache.read_json(folder / "history.json")
    meta = cache.read_json(folder / "meta.json")
    if not isinstance(hist, dict) or not isinstance(meta, dict) or meta.get("key") != spec.key():
        return None
    return RunResult(spec, folder, pd.DataFrame(hist["steps"]), pd.DataFrame(hist["evals"]),
                     list(meta["checkpoint_steps"]), meta)


# ----------------------------------------------------------------------------- resume state

#: At most this many resume states are written per run: a state is a few hundred MB (the model and the
#: optimiser's two moments) and takes a second or two to write, so a 12-epoch run saves every 3rd epoch
#: and an interruption costs at most a quarter of the run.
RESUME_SAVES = 4


def resume_epochs(epochs: int) -> list[int]:
    """After which epochs a run of ``epochs`` epochs writes its resume state: every
    ``ceil(epochs / RESUME_SAVES)``-th, never after the last (the finished run is written then)."""
    every = math.ceil(epochs / RESUME_SAVES)
    return [e for e in range(every, epochs, every)]


def save_resume(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched, state: dict) -> None:
    """Everything needed to continue after ``state['epoch']`` epochs (no pickles): the model, the
    optimiser's moments, the random state and the run's records so far, written atomically."""
    sd = opt.state_dict()
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items()
               for k, v in st.items() if torch.is_tensor(v)}
    with cache.atomic_dir(folder / "resume") as tmp:
        save_file({k: v.cpu() for k, v in trainable_state(model).items()}, tmp / "model.safetensors")
        save_file(tensors or {"_empty": torch.zeros(1)}, tmp / "optim.safetensors")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()  # dropout on a GPU draws from the CUDA generator
        save_file(rng, tmp / "rng.safetensors")
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
        cache.write_json(tmp / "state.json", {**state, "param_groups": groups, "scheduler": sched.state_dict()})
        cache.write_manifest(tmp)


def _load_resume(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, sched) -> dict | None:
    res = folder / "resume"
    if not res.is_dir() or not cache.check_manifest(res):
        return None
    state = cache.read_json(res / "state.json")
    if not isinstance(state, dict):
        return None
    load_state(model, load_file(res / "model.safetensors"))
    tensors = load_file(res / "optim.safetensors")
    opt_state: dict[int, dict] = {}
    for name, v in tensors.items():
        if name == "_empty":
            continue
        i, k = name.split(".", 1)
        opt_state.setdefault(int(i), {})[k] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    sched.load_state_dict(state.pop("scheduler"))
    rng = load_file(res / "rng.safetensors")
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state


# ----------------------------------------------------------------------------- training

def make_optimizer(model: torch.nn.Module, spec: RunSpec) -> torch.optim.Optimizer:
    """The run's AdamW: weight decay on matrices only (not on biases and LayerNorm), fused where it can be."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (p.dim() < 2 or "LayerNorm" in n or n.endswith(".bias")) else decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # torch's fused AdamW (one kernel for all tensors) is the same update ~9x faster than the
    # per-tensor loop on CPU (0.008 vs 0.07 s a step for 12 M parameters, measured here).
    device = next(model.parameters()).device
    fused = device.type in ("cpu", "cuda") and all(p.dtype == torch.float32 for p in decay + no_decay)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def train(spec: RunSpec, progress: bool | None = None, callback: StepCallback | None = None,
          force: bool = False) -> RunResult:
    """Run ``spec`` (or return it from the cache) and return its :class:`RunResult`.

    Args:
        spec: the run.
        progress: show a progress bar (default: on unless ``$BERTSCAPE_PROGRESS=0``).
        callback: called as ``callback(step, loss)`` after each optimiser step (for tests and
            notebooks; raising from it interrupts the run, which later resumes).
        force: ignore a cached result and train again.

    Longer than ~80 lines on purpose: the set-up (:func:`step_plan`, :func:`_scheduler`) and the
    final write (:func:`_write_run`) are pieces of their own, but the epoch loop and its two helpers
    (``record_eval``, ``flush``) stay here in one piece, because the order of its random draws,
    optimiser steps, loss syncs, checkpoints and resume saves is what makes a resumed run identical
    to an uninterrupted one.
    """
    if not force:
        hit = load_run(spec)
        if hit is not None:
            return hit
    task = spec.task_info
    device = resolve_device(spec.device)
    dtype = autocast_dtype(spec.precision, device)
    train_enc, dev_enc = run_data(spec)
    check_positive_int("batch_size", spec.batch_size, upper=len(train_enc),
                       what=f"the training subset has {len(train_enc)} examples")
    dev = prepare_eval(dev_enc, device)
    steps_per_epoch, total, ckpt_steps, eval_steps = step_plan(spec, len(train_enc))

    model = build_model(spec.model, spec.init, task.num_labels, spec.seed, task.is_regression,
                        spec.init_seed).to(device)
    theta0 = trainable_state(model)
    opt = make_optimizer(model, spec)
    sched = _scheduler(opt, spec, total)
    torch.manual_seed(spec.seed)

    final = _runs_dir() / spec.key()
    partial = _runs_dir() / f"{spec.key()}.partial"
    partial.mkdir(parents=True, exist_ok=True)
    if force and (partial / "resume").exists():
        shutil.rmtree(partial / "resume")
    save_file({k: v.cpu() for k, v in theta0.items()}, partial / "theta0.safetensors")

    steps: list[dict] = []
    evals: list[dict] = []
    preds: list[list] = []  # the dev predictions of every evaluation (for bootstraps over sentences)
    start_epoch, step, elapsed = 0, 0, 0.0
    resumed = _load_resume(partial, model, opt, sched)
    if resumed is not None:
        start_epoch, step, elapsed = resumed["epoch"], resumed["step"], resumed["elapsed"]
        steps, evals, preds = resumed["steps"], resumed["evals"], resumed.get("preds", [])

    def record_eval(epoch: int) -> None:
        m = evaluate(model, dev, spec.precision, per_sample=True)
        preds.append(m.pop("sample_pred").tolist())
        m.pop("sample_loss")
        evals.append({"step": step, "epoch": epoch, **{f"dev_{k}": v for k, v in m.items()}})

    if step == 0 and not evals:
        record_eval(0)
    bar = tqdm(total=total, initial=step, desc=spec.label(), disable=not progress_enabled(progress),
               leave=False, dynamic_ncols=True)
    t_start = time.perf_counter() - elapsed
    # Step losses stay on the device until a sync point (an evaluation, a checkpoint, every
    # SYNC_EVERY steps, the epoch's end): a .item() per step makes the host wait for the GPU at
    # every step. With a callback (which needs each loss at once) every step syncs.
    pending: list[tuple[dict, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        values = torch.stack([v for _, v in pending]).float().cpu().tolist()
        for (row, _), v in zip(pending, values):
            steps.append({**row, "loss": v})
        pending.clear()
        bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)

    try:
        for epoch in range(start_epoch, spec.epochs):
            model.train()
            for batch in epoch_batches(spec, train_enc, epoch):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = forward_logits(model, batch)
                loss = loss_fn(task, logits, batch["labels"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.max_grad_norm)
                lr = sched.get_last_lr()[0]
                opt.step()
                sched.step()
                step += 1
                workcount.add("train_steps")
                workcount.add("train_tokens", batch["input_ids"].numel())
                pending.append(({"step": step, "epoch": step / steps_per_epoch, "lr": lr,
                                 "seconds": time.perf_counter() - t_start}, loss.detach()))
                if callback is not None or step in eval_steps or step % SYNC_EVERY == 0:
                    flush()
                if step in ckpt_steps and step != total:
                    now = trainable_state(model)
                    save_file({k: (now[k] - theta0[k]).half().cpu() for k in now},
                              partial / f"ckpt-{step:07d}.safetensors")
                if step in eval_steps:
                    record_eval(epoch + 1)
                bar.update(1)
                if callback is not None:
                    callback(step, steps[-1]["loss"])
            flush()
            if epoch + 1 in resume_epochs(spec.epochs):
                save_resume(partial, model, opt, sched, {"epoch": epoch + 1, "step": step, "steps": steps,
                                                         "evals": evals, "preds": preds,
                                                         "elapsed": time.perf_counter() - t_start})
                workcount.add("resume_saves")
    finally:
        bar.close()

    theta1 = trainable_state(model)
    meta = {"key": spec.key(), "spec": spec.to_dict(), "checkpoint_steps": ckpt_steps, "total_steps": total,
            "steps_per_epoch": steps_per_epoch, "n_train": len(train_enc), "n_dev": len(dev_enc),
            "device": str(device), "seconds": time.perf_counter() - t_start,
            "n_params": int(sum(v.numel() for v in theta1.values())), "torch": torch.__version__}
    _write_run(final, partial, theta1, ckpt_steps, {"steps": steps, "evals": evals}, preds, dev.labels, meta)
    result = load_run(spec)
    assert result is not None, "a just-written run entry failed verification"
    return result


def epoch_batches(spec: RunSpec, train_enc: Encoded, epoch: int) -> list[dict[str, torch.Tensor]]:
    """The training batches of one epoch of run ``spec``, in order: a generator seeded by the run's seed
    and the epoch, so a resumed run and the time estimate (:mod:`bertscape.book.workplan`) see the same."""
    gen = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
    return train_batches(train_enc, spec.batch_size, gen, group_by_length=spec.group_by_length)


def step_plan(spec: RunSpec, n_train: int) -> tuple[int, int, list[int], list[int]]:
    """``(steps_per_epoch, total, checkpoint steps, evaluation steps)`` of a run on ``n_train``
    examples: ``evals_per_epoch`` evaluations spread evenly over each epoch, the last at its end."""
    steps_per_epoch = math.ceil(n_train / spec.batch_size)
    total = steps_per_epoch * spec.epochs
    ckpt_steps = checkpoint_steps(total, spec.n_checkpoints)
    eval_steps = sorted({min(e * steps_per_epoch + math.ceil((j + 1) * steps_per_epoch / spec.evals_per_epoch),
                             (e + 1) * steps_per_epoch)
                         for e in range(spec.epochs) for j in range(spec.evals_per_epoch)})
    return steps_per_epoch, total, ckpt_steps, eval_steps


def _scheduler(opt: torch.optim.Optimizer, spec: RunSpec, total: int):
    """The learning-rate schedule: linear warm-up over ``spec.warmup`` of the steps, then constant
    (``schedule="constant"``) or a linear decay to 0 at ``total``."""
    # transformers takes seconds to import: only when a run is trained, not when a cached one is read
    from transformers import (
        get_constant_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    if spec.schedule == "constant":
        return get_constant_schedule_with_warmup(opt, int(spec.warmup * total))
    return get_linear_schedule_with_warmup(opt, int(spec.warmup * total), total)


def _write_run(final: Path, partial: Path, theta1: dict[str, torch.Tensor], ckpt_steps: list[int], history: dict,
               preds: list[list], dev_labels: np.ndarray, meta: dict) -> None:
    """Move a finished run from its ``partial`` folder to its cache entry ``final`` (atomically, with
    a manifest): θ0, θ1, the intermediate checkpoints, the history, the dev predictions and ``meta``."""
    with cache.atomic_dir(final) as tmp:
        shutil.copyfile(partial / "theta0.safetensors", tmp / "theta0.safetensors")
        save_file({k: v.cpu() for k, v in theta1.items()}, tmp / "theta1.safetensors")
        for s in ckpt_steps[1:-1]:
            shutil.copyfile(partial / f"ckpt-{s:07d}.safetensors", tmp / f"ckpt-{s:07d}.safetensors")
        cache.write_json(tmp / "history.json", history)
        cache.write_npz(tmp / "dev_predictions.npz", predictions=np.asarray(preds), labels=np.asarray(dev_labels))
        cache.write_json(tmp / "meta.json", meta)
        cache.write_manifest(tmp)
    shutil.rmtree(partial, ignore_errors=True)
