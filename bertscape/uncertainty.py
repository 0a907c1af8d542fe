"""Uncertainties of the scorecard's numbers: bootstraps over sentences, noise of a running mean,
spread over seeds.

Every function is pure (arrays in, numbers out) and seeded, so a verdict computed twice is the
same verdict. The bootstrap is the plain percentile-free one: the standard deviation of the
statistic over resamples (with replacement) of the sentences is its standard error.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

from .data import Task
from .metrics import compute_metrics

#: Resamples of every bootstrap (fixed in advance; the standard error moves by ~5 % between seeds).
N_BOOT = 200
#: Seed of every bootstrap's resampling.
BOOT_SEED = 2019

MetricFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def metric_fn(task: Task, metric: str | None = None) -> MetricFn:
    """``f(preds, labels) -> metric`` for predictions of shape ``(..., n)`` (any leading dims), the
    task's main metric by default. Accuracy is vectorised; other metrics loop over leading dims."""
    name = metric or task.main_metric

    def f(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
        preds = np.asarray(preds)
        labels = np.asarray(labels)
        if name == "accuracy" and not task.is_regression:
            return (preds == labels).mean(axis=-1)
        flat = preds.reshape(-1, preds.shape[-1])
        lab = np.broadcast_to(labels, preds.shape).reshape(-1, preds.shape[-1])
        out = np.array([compute_metrics(task, p if task.is_regression else _one_hot(p, task.num_labels), l)[name]
                        for p, l in zip(flat, lab)])
        return out.reshape(preds.shape[:-1])

    return f


def _one_hot(pred: np.ndarray, k: int) -> np.ndarray:
    """Class predictions as one-hot "logits" (what :func:`~bertscape.metrics.compute_metrics` takes)."""
    out = np.zeros((len(pred), max(k, int(pred.max()) + 1 if len(pred) else k)))
    out[np.arange(len(pred)), pred.astype(int)] = 1.0
    return out


def resamples(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """``(n_boot, n)`` index arrays drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def paired_resamples(n_train: int, n_dev: int, n_boot: int = N_BOOT) -> zip:
    """``n_boot`` pairs of index arrays, one over ``n_train`` training sentences and one over
    ``n_dev`` dev sentences, drawn independently (for a statistic of both sets, e.g. a train − dev
    gap, resampled identically for PT and RI)."""
    return zip(resamples(n_train, n_boot, seed=BOOT_SEED + 1), resamples(n_dev, n_boot))


def bootstrap_se(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> float:
    """Standard error of ``stat(indices)`` over resamples of ``n`` sentences."""
    vals = np.array([stat(idx) for idx in resamples(n, n_boot, seed)], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")


def window_mean_se(values: np.ndarray, fraction: float, window: float = 0.05) -> tuple[float, float]:
    """Mean of the ``window`` share of a series ending at ``fraction`` of it, and the standard error
    of that mean (std / √count): the step-to-step noise of a training-loss reading."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    end = max(1, int(round(fraction * n)))
    width = max(2, int(round(window * n)))
    w = v[max(0, end - width):end]
    se = float(np.std(w, ddof=1) / np.sqrt(len(w))) if len(w) > 1 else float("nan")
    return float(np.mean(w)), se


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (0 when either side is constant)."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def depth_trend_se(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> float:
    """Standard error of the Spearman correlation of a per-layer measure with depth, by a bootstrap
    over the layers (each resample keeps (depth, value) pairs together)."""
    v = np.asarray(values, dtype=np.float64)
    depth = np.arange(len(v))
    return bootstrap_se(lambda idx: spearman(depth[idx], v[idx]), len(v), n_boot, seed)


def seed_se(values: np.ndarray) -> float:
    """Standard error of a mean over seeds (std / √n); NaN for fewer than two seeds."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) >= 2 else float("nan")
