"""Fast evaluation of a model on a pre-tokenised, length-sorted, dynamically padded set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from . import cache
from .data import Batch, Encoded, Task, eval_batches
from .metrics import compute_metrics, dev_error
from .models import autocast_dtype


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
def evaluate(model: torch.nn.Module, data: EvalSet, precision: str = "auto") -> dict[str, float]:
    """Mean loss and task metrics of ``model`` (in eval mode: no dropout) on ``data``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = autocast_dtype(precision, device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    outputs = []
    try:
        for batch in data.batches:  # no host synchronisation inside the loop (it stalls a GPU)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = forward_logits(model, batch)
            total += loss_fn(data.task, logits, batch["labels"], reduction="sum").double()
            outputs.append(logits.float())
    finally:
        model.train(was_training)
    result = compute_metrics(data.task, torch.cat(outputs).cpu().numpy(), data.labels)
    result["loss"] = float(total) / len(data)
    return result


def evaluate_sets(model: torch.nn.Module, evalsets: Mapping[str, EvalSet], precision: str = "auto") -> dict[str, float]:
    """:func:`evaluate` on several named sets, flattened: ``<set>_loss``, ``<set>_error``
    (1 − main metric, see :func:`~bertscape.metrics.dev_error`), ``<set>_metric`` (the task's main
    metric) and ``<set>_<metric>`` for every task metric. These are the variables a landscape grid
    and a per-layer curve hold."""
    out: dict[str, float] = {}
    for name, es in evalsets.items():
        m = evaluate(model, es, precision)
        out[f"{name}_loss"] = float(m["loss"])
        out[f"{name}_error"] = float(dev_error(es.task, m))
        out[f"{name}_metric"] = float(m[es.task.main_metric])
        for k, v in m.items():
            if k != "loss":
                out[f"{name}_{k}"] = float(v)
    return out
