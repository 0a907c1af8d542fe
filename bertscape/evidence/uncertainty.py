"""Sampling errors of the scorecard's numbers: bootstraps over sentences (standard errors, paired
differences, percentile and BCa intervals), the noise of a window of training steps, the t rule over
seeds, and an exact permutation test of a depth trend.

Every function is pure (arrays in, numbers out) and seeded, so a verdict computed twice is the same
verdict. Two kinds of bootstrap summary are used: the standard deviation of the replicates (a standard
error, for statistics that are roughly normal: averages over sentences and their differences) and
percentile intervals of the replicates (for bounded or skewed statistics: a rank correlation near 1, a
barrier that cannot be negative). When PT and RI are evaluated on the same sentences, each bootstrap
resamples the same sentence indices for both and the uncertainty of their difference is taken from the
replicates of the difference (:func:`paired_se`), which removes the variation the two share.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats
from scipy.stats import rankdata

from bertscape.data.metrics import compute_metrics
from bertscape.data.tasks import Task
from bertscape.geometry.flatness import barrier_height

#: Resamples of every bootstrap (fixed in advance; the standard error moves by ~5 % between seeds).
N_BOOT = 200
#: Seed of every bootstrap's resampling.
BOOT_SEED = 2019
#: Coverage of every interval (two-sided): 95 %, the level Z = 2 standard errors approximates.
LEVEL = 0.95

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
    """Class predictions as one-hot "logits" (what :func:`~bertscape.data.metrics.compute_metrics` takes)."""
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


def replicates(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """``stat(indices)`` on each of ``n_boot`` resamples of ``n`` sentences (:func:`resamples`):
    the bootstrap replicates, in resample order (two statistics of the same sentences computed with
    the same ``n``, ``n_boot`` and ``seed`` are paired replicate by replicate)."""
    return np.array([stat(idx) for idx in resamples(n, n_boot, seed)], dtype=np.float64)


def se_of(reps: np.ndarray) -> float:
    """The standard error a set of bootstrap replicates gives (their standard deviation; NaN with
    fewer than two finite replicates)."""
    v = np.asarray(reps, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def bootstrap_se(stat: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> float:
    """Standard error of ``stat(indices)`` over resamples of ``n`` sentences."""
    return se_of(replicates(stat, n, n_boot, seed))


def paired_se(a_reps: np.ndarray, b_reps: np.ndarray) -> float:
    """Standard error of a − b from paired replicates (the same resample for both sides): what the
    two sides share cancels. For independent sides it equals √(se_a² + se_b²) on average."""
    a, b = np.asarray(a_reps, np.float64), np.asarray(b_reps, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired replicates need the same shape, got {a.shape} and {b.shape}")
    return se_of(a - b)


def percentile_interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap replicates (percentile method); (NaN, NaN) with
    fewer than two finite replicates. For bounded or skewed statistics, where ± 2 s.e. would step
    outside the range the statistic can take."""
    v = np.asarray(reps, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    q = (1 - level) / 2
    return float(np.quantile(v, q)), float(np.quantile(v, 1 - q))


def bca_interval(samples: np.ndarray, statistic: Callable[..., np.ndarray], level: float = LEVEL,
                 n_boot: int = 999, seed: int = BOOT_SEED) -> tuple[float, float]:
    """The bias-corrected and accelerated (BCa) bootstrap interval of ``statistic`` over the last
    axis of ``samples`` (sentences), from :func:`scipy.stats.bootstrap`. ``statistic(x, axis)`` must
    reduce that axis (vectorised). (NaN, NaN) where the replicates are degenerate (all equal)."""
    x = np.asarray(samples, dtype=np.float64)
    with warnings.catch_warnings():  # a degenerate sample (all replicates equal) is handled below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=level, method="BCa",
                              axis=-1, vectorized=True, random_state=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # BCa is undefined when the jackknife values do not vary (e.g. a barrier that is 0 for every
        # left-out sentence): fall back to the percentile interval, a point when every replicate is equal
        reps = replicates(lambda i: float(statistic(x[..., i], axis=-1)), x.shape[-1], seed=seed)
        return percentile_interval(reps, level)
    return lo, hi


def t_critical(n: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` critical value of Student's t on n − 1 degrees of freedom (n seeds):
    12.7 for 2 seeds, 4.30 for 3, 2.78 for 5; NaN for fewer than two."""
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) if n >= 2 else float("nan")


def seed_interval(margins: Sequence[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """The t rule over seeds: ``(mean, standard error, critical value, n)`` of per-seed margins
    (each seed's own paired PT − RI difference on the claimed side). The interval mean ± crit × s.e.
    covers the true mean margin with probability ``level``; within-seed noise is already part of the
    spread between seeds, so it is not added again."""
    m = np.asarray(margins, dtype=np.float64)
    m = m[np.isfinite(m)]
    n = len(m)
    if n < 2:
        return (float(m[0]) if n else float("nan")), float("nan"), float("nan"), float(n)
    return float(m.mean()), float(m.std(ddof=1) / np.sqrt(n)), t_critical(n, level), float(n)


def window(n: int, fraction: float, width: float = 0.05) -> slice:
    """The ``width`` share of a series of ``n`` steps that ends at ``fraction`` of it (at least two
    steps): the window a training-loss reading averages."""
    end = max(1, int(round(fraction * n)))
    w = max(2, int(round(width * n)))
    return slice(max(0, end - w), end)


def paired_window(a: np.ndarray, b: np.ndarray, fraction: float, width: float = 0.05) -> tuple[float, float, int]:
    """Mean of the step-by-step differences b − a over a window (:func:`window`) and its standard
    error (their standard deviation / √count): for two runs trained on the same batches in the same
    order, the batch-to-batch noise they share cancels step by step. Returns ``(mean, se, steps)``;
    the series are cut to the shorter one."""
    n = min(len(a), len(b))
    d = np.asarray(b[:n], np.float64) - np.asarray(a[:n], np.float64)
    w = d[window(n, fraction, width)]
    se = float(np.std(w, ddof=1) / np.sqrt(len(w))) if len(w) > 1 else float("nan")
    return float(np.mean(w)), se, len(w)


def window_mean_se(values: np.ndarray, fraction: float, width: float = 0.05) -> tuple[float, float]:
    """Mean of the ``width`` share of a series ending at ``fraction`` of it (:func:`window`), and the
    standard error of that mean (std / √count): the step-to-step noise of a training-loss reading."""
    v = np.asarray(values, dtype=np.float64)
    w = v[window(len(v), fraction, width)]
    se = float(np.std(w, ddof=1) / np.sqrt(len(w))) if len(w) > 1 else float("nan")
    return float(np.mean(w)), se


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (0 when either side is constant)."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def depth_permutation_p(values: Sequence[float], max_exact: int = 8, n_perm: int = 20000,
                        seed: int = BOOT_SEED) -> float:
    """One-sided p-value of the Spearman correlation between a per-layer measure and depth: the share
    of orderings of the layers whose ρ is at least the observed one. Exact (all n! orderings) up to
    ``max_exact`` layers (6 layers: 720 orderings, smallest possible p = 1/720), else ``n_perm`` seeded
    random orderings. It asks whether the measure rises with depth more than a random ordering of the
    same values would; it is not a sampling error of ρ."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n < 3:
        return float("nan")
    depth = np.arange(n)
    obs = spearman(depth, v)
    if n <= max_exact:
        rhos = np.array([spearman(depth, v[list(p)]) for p in itertools.permutations(range(n))])
    else:
        rng = np.random.default_rng(seed)
        rhos = np.array([spearman(depth, rng.permutation(v)) for _ in range(n_perm)])
    return float(np.mean(rhos >= obs - 1e-12))


def split_halves(n: int, seed: int = BOOT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``n`` sentence indices into two halves."""
    perm = np.random.default_rng(seed).permutation(n)
    return perm[: n // 2], perm[n // 2:]


def split_half_drop(preds: np.ndarray, labels: np.ndarray, metric: MetricFn,
                    halves: tuple[np.ndarray, np.ndarray]) -> float:
    """Best − last of a dev metric over a run's evaluations, the best evaluation chosen on one half of
    the dev sentences and the drop measured on the other (and the other way round; the mean of the
    two). Picking the best of ~12 evaluations on the very sentences it is reported on biases
    best − last upwards (a maximum over noisy values); choosing on held-out sentences does not.
    ``preds``: (evaluations, sentences); ``halves``: two index arrays (:func:`split_halves`)."""
    p, y = np.asarray(preds), np.asarray(labels)
    drops = []
    for choose, report in (halves, halves[::-1]):
        best = int(np.argmax(metric(p[:, choose], y[choose])))
        m = metric(p[:, report], y[report])
        drops.append(float(m[best] - m[-1]))
    return float(np.mean(drops))


def split_half_replicates(preds: np.ndarray, labels: np.ndarray, metric: MetricFn,
                          halves: tuple[np.ndarray, np.ndarray], n_boot: int = N_BOOT,
                          seed: int = BOOT_SEED) -> np.ndarray:
    """:func:`split_half_drop` on ``n_boot`` bootstrap resamples of the sentences, each half resampled
    within itself (the split stays a split), the best evaluation chosen again in every replicate."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for b in range(n_boot):
        h = tuple(x[rng.integers(0, len(x), len(x))] for x in halves)
        out[b] = split_half_drop(preds, labels, metric, h)
    return out


def barrier_interval(samples: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """The barrier of a curve of per-sentence values ``samples`` (points along ``t``, sentences) — the
    largest rise of their mean above the chord of its end values
    (:func:`bertscape.geometry.flatness.barrier_height`) — with its bootstrap s.e. and its BCa interval over
    the sentences (a barrier is ≥ 0 and skewed near 0): ``{value, se, lo, hi}``."""
    x = np.asarray(samples, dtype=np.float64)

    def stat(s, axis=-1):  # s: (points, [resamples,] sentences); the barrier of each resample's mean curve
        m = np.moveaxis(np.asarray(s).mean(axis=axis), 0, -1)  # ([resamples,] points)
        return np.array([barrier_height(r, t) for r in m.reshape(-1, m.shape[-1])]).reshape(m.shape[:-1])

    lo, hi = bca_interval(x, stat)
    se = bootstrap_se(lambda idx: barrier_height(x[:, idx].mean(-1), t), x.shape[-1])
    return {"value": float(barrier_height(x.mean(-1), t)), "se": se, "lo": lo, "hi": hi}
