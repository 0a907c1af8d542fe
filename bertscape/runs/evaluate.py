"""Fast evaluation of a model on a pre-tokenised, length-sorted, dynamically padded set."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from bertscape.base import cache, workcount
from bertscape.base.errors import bad_value
from bertscape.data.metrics import compute_metrics, dev_error
from bertscape.data.tasks import Batch, Encoded, Task, eval_batches
from bertscape.runs.precision import autocast_dtype


@dataclass
class EvalSet:
    """Evaluation batches already on the device, with their labels and a content hash."""

    task: Task
    batches: list[Batch]
    labels: np.ndarray  # in batch order
    n_tokens: int
    fingerprint: str

    def __len__(self) -> int:
        return len(self.labels)


def prepare_eval(enc: Encoded, device: torch.device | str = "cpu", batch_size: int = 64) -> EvalSet:
    """Sort by length, pad per batch and move to ``device`` once."""
    batches = eval_batches(enc, batch_size)
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    moved = [{k: v.to(device) for k, v in b.items()} for b in batches]
    fp = cache.stable_hash({"enc": enc.fingerprint, "bs": batch_size})
    return EvalSet(enc.task, moved, labels, enc.n_tokens, fp)


def check_evalsets(evalsets: Any) -> dict[str, EvalSet]:
    """``evalsets`` as a dict after checking it is a non-empty ``{name: EvalSet}`` whose names are
    letters and digits starting with a letter (they prefix result names such as ``train_loss``)."""
    if not isinstance(evalsets, Mapping) or not evalsets or not all(isinstance(v, EvalSet) for v in evalsets.values()):
        raise bad_value("evalsets", evalsets if not isinstance(evalsets, Mapping) else list(evalsets),
                        "a non-empty dict {name: EvalSet}, e.g. {'train': ..., 'dev': ...}")
    bad = [k for k in evalsets if not (isinstance(k, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", k))]
    if bad:
        raise bad_value("evalsets", bad, "names of letters and digits starting with a letter (they prefix result names)")
    return dict(evalsets)


def loss_fn(task: Task, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy (classification) or mean squared error (regression)."""
    logits = logits.float()
    if task.is_regression:
        return torch.nn.functional.mse_loss(logits.view(-1), labels.float().view(-1), reduction=reduction)
    return torch.nn.functional.cross_entropy(logits, labels, reduction=reduction)


def forward_logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of a batch (labels are not passed to the model: the loss is ours)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 token_type_ids=batch["token_type_ids"]).logits


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: EvalSet, precision: str = "auto",
             per_sample: bool = False) -> dict[str, Any]:
    """Mean loss and task metrics of ``model`` (in eval mode: no dropout) on ``data``.

    Also ``loss_se``, the standard error of the mean loss over the sentences (their standard
    deviation / √n): the noise of a loss measured on this many sentences. With ``per_sample``
    the result also holds ``sample_loss`` (one loss per sentence) and ``sample_pred`` (the
    predicted class, or the predicted value for regression), in the set's batch order (that of
    ``data.labels``), for bootstraps over sentences.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = autocast_dtype(precision, device)
    workcount.add("eval_sentences", len(data))
    losses, outputs = [], []
    try:
        for batch in data.batches:  # no host synchronisation inside the loop (it stalls a GPU)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = forward_logits(model, batch)
            losses.append(loss_fn(data.task, logits, batch["labels"], reduction="none").double().reshape(-1))
            outputs.append(logits.float())
    finally:
        model.train(was_training)
    out_np = torch.cat(outputs).cpu().numpy()
    loss_np = torch.cat(losses).cpu().numpy()
    result: dict[str, Any] = compute_metrics(data.task, out_np, data.labels)
    result["loss"] = float(loss_np.mean())
    result["loss_se"] = float(loss_np.std(ddof=1) / np.sqrt(len(loss_np))) if len(loss_np) > 1 else float("nan")
    if per_sample:
        result["sample_loss"] = loss_np
        result["sample_pred"] = predictions(data.task, out_np)
    return result


def predictions(task: Task, outputs: np.ndarray) -> np.ndarray:
    """Predicted class (argmax of the logits) or, for regression, the predicted value."""
    return outputs.reshape(-1).astype(np.float64) if task.is_regression else outputs.argmax(-1).astype(np.int64)


def evaluate_sets(model: torch.nn.Module, evalsets: Mapping[str, EvalSet], precision: str = "auto",
                  per_sample: bool = False) -> dict[str, Any]:
    """:func:`evaluate` on several named sets, flattened: ``<set>_loss``, ``<set>_loss_se``,
    ``<set>_error`` (1 − main metric, see :func:`~bertscape.data.metrics.dev_error`), ``<set>_metric``
    (the task's main metric) and ``<set>_<metric>`` for every task metric; with ``per_sample``
    also the arrays ``<set>_sample_loss`` and ``<set>_sample_pred``. These are the variables a
    landscape grid and a per-layer curve hold."""
    out: dict[str, Any] = {}
    for name, es in evalsets.items():
        m = evaluate(model, es, precision, per_sample)
        out[f"{name}_loss"] = float(m["loss"])
        out[f"{name}_error"] = float(dev_error(es.task, m))
        out[f"{name}_metric"] = float(m[es.task.main_metric])
        for k, v in m.items():
            if k != "loss":
                out[f"{name}_{k}"] = v if k.startswith("sample_") else float(v)
    return out
