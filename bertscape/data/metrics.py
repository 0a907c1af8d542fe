"""GLUE-style task metrics (scikit-learn / SciPy), from logits or predictions."""
from __future__ import annotations

import numpy as np

from bertscape.data.tasks import Task

# scipy.stats and scikit-learn are imported in compute_metrics, not here: scikit-learn takes about a
# second to import and every module that evaluates imports this one.


def compute_metrics(task: Task, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Metrics of ``task``: ``outputs`` are logits (classification) or predictions (regression)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    outputs = np.asarray(outputs)
    labels = np.asarray(labels)
    out: dict[str, float] = {}
    if task.is_regression:
        pred = outputs.reshape(-1).astype(np.float64)
        lab = labels.reshape(-1).astype(np.float64)
        const = np.allclose(pred, pred[0]) or np.allclose(lab, lab[0])
        out["pearson"] = 0.0 if const else float(pearsonr(pred, lab)[0])
        out["spearman"] = 0.0 if const else float(spearmanr(pred, lab)[0])
        out["mse"] = float(np.mean((pred - lab) ** 2))
        return out
    pred = outputs.argmax(-1) if outputs.ndim == 2 else outputs
    for name in task.metrics:
        if name == "accuracy":
            out["accuracy"] = float(accuracy_score(labels, pred))
        elif name == "f1":
            out["f1"] = float(f1_score(labels, pred, zero_division=0.0))
        elif name == "mcc":
            out["mcc"] = float(matthews_corrcoef(labels, pred))
    out.setdefault("accuracy", float(accuracy_score(labels, pred)))
    return out


def dev_error(task: Task, metrics: dict[str, float]) -> float:
    """1 − the task's main metric (the paper's "generalisation error")."""
    return 1.0 - metrics[task.main_metric]
