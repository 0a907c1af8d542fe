"""Curvature at a point: Hessian top eigenvalues and trace from Hessian-vector products.

Built on the maintained library ``hessian-eigenthings`` (its :class:`HessianOperator` for exact
double-backward Hessian-vector products over a chosen subset of parameters, its Lanczos
iteration for the top eigenvalues and its Hutchinson / Hutch++ trace estimators).

The loss is the **mean** loss over an :class:`~bertscape.runs.evaluate.EvalSet` (usually a training
subset), the model in eval mode (no dropout), in fp32 with no autocast. Batches of unequal size
are weighted by their size (each batch's summed loss × n_batches / n_examples, so the
library's average over batches is exactly the mean over examples). Attention runs through
PyTorch's "math" SDPA kernel, the one with a second derivative.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from hessian_eigenthings import (
    HessianOperator,
    LambdaOperator,
    hutch_plus_plus,
    hutchinson,
    lanczos,
)
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from bertscape.base import workcount
from bertscape.base.errors import bad_value, check_positive_int
from bertscape.base.progress import progress_enabled
from bertscape.geometry.directions import resolve_names
from bertscape.runs.evaluate import EvalSet, forward_logits, loss_fn

#: Default number of Lanczos steps, ``lanczos_steps`` (at least 2k, capped at the number of
#: parameters): the quick profile's ``hessian_steps`` (the book passes its profile's).
DEFAULT_LANCZOS_STEPS = 8
#: Up to this many parameters the Lanczos vectors are kept in float64 (the Hessian-vector
#: products stay fp32); above it in fp32 to halve the memory of the Krylov basis.
FLOAT64_LIMIT = 5_000_000
TRACE_METHODS = ("hutchinson", "hutch++")


@contextlib.contextmanager
def second_order_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and the differentiable-twice SDPA kernel for the duration of the block."""
    was_training = model.training
    model.eval()
    device_type = next(model.parameters()).device.type
    try:
        with sdpa_kernel([SDPBackend.MATH]), torch.autocast(device_type, enabled=False):
            yield
    finally:
        model.train(was_training)


def hessian_operator(model: torch.nn.Module, evalset: EvalSet, names: str | Sequence[str] | None = None,
                     max_batches: int | None = None):
    """A ``hessian_eigenthings.HessianOperator`` for the mean loss of ``model`` on ``evalset``,
    restricted to the parameters chosen by ``names`` (see :func:`~bertscape.geometry.directions.resolve_names`;
    ``None`` = every trainable parameter). ``max_batches`` keeps only the first batches."""
    if not isinstance(evalset, EvalSet):
        raise bad_value("evalset", type(evalset).__name__, "an EvalSet (bertscape.runs.evaluate.prepare_eval)")
    batches = evalset.batches if max_batches is None else evalset.batches[:check_positive_int("max_batches", max_batches)]
    n_examples = sum(int(b["labels"].shape[0]) for b in batches)
    n_batches = len(batches)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    chosen = set(resolve_names(trainable, names))
    task = evalset.task

    restricted = len(chosen) < len(trainable)

    def batch_loss(net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if restricted:  # counted apart: a product over a few parameters costs less per sentence
            workcount.add("layer_hvp_sentences", int(batch["labels"].shape[0]))
        else:
            workcount.add("hvp_batches")
            workcount.add("hvp_sentences", int(batch["labels"].shape[0]))
        logits = forward_logits(net, batch).float()
        return loss_fn(task, logits, batch["labels"], reduction="sum") * (n_batches / n_examples)

    return HessianOperator(model, batches, batch_loss, param_filter=lambda n, p: n in chosen)


def _in_float64(op):
    """The operator with float64 inputs/outputs (for small operators, see :data:`FLOAT64_LIMIT`):
    Lanczos re-orthogonalisation in fp32 loses orthogonality once the Krylov space is exhausted
    (rank-deficient Hessians), which shows up as spurious eigenvalues."""
    if op.size > FLOAT64_LIMIT:
        return op
    return LambdaOperator(lambda v: op.matvec(v.to(op.dtype)).double(), op.size, op.device, torch.float64)


def hessian_top_eigenvalues(model: torch.nn.Module, evalset: EvalSet, k: int = 1,
                            names: str | Sequence[str] | None = None, lanczos_steps: int | None = None,
                            seed: int = 0,
                            max_batches: int | None = None,
                            return_residuals: bool = False) -> list[float] | tuple[list[float], list[float]]:
    """The ``k`` largest (algebraic) eigenvalues of the loss Hessian, largest first (Lanczos with
    full re-orthogonalisation; ``lanczos_steps`` steps, default ``max(2k,`` :data:`DEFAULT_LANCZOS_STEPS`\ ``)``
    capped at the number of parameters; more steps = more accurate, each costs one Hessian-vector
    product over the set).

    With ``return_residuals`` also the Ritz residual norms ‖H·v − λ·v‖ of the same eigenpairs (the
    library's estimate |β_m·s_m,i|): some true eigenvalue lies within that distance of each estimate,
    so it is the estimate's uncertainty from stopping after ``lanczos_steps`` steps."""
    check_positive_int("k", k)
    with second_order_mode(model):
        op = hessian_operator(model, evalset, names, max_batches)
        if k > op.size:
            raise bad_value("k", k, f"at most the number of selected parameters ({op.size})")
        steps = _lanczos_steps(op.size, lanczos_steps, k)
        if steps < k:
            raise bad_value("lanczos_steps", lanczos_steps, f"at least k={k}")
        res = lanczos(_in_float64(op), k=k, max_iter=steps, which="LA", seed=seed, reorthogonalize=True)
    pairs = sorted(zip((float(v) for v in res.eigenvalues), (float(r) for r in res.residuals)), reverse=True)
    vals = [v for v, _ in pairs]
    return (vals, [r for _, r in pairs]) if return_residuals else vals


def hessian_trace(model: torch.nn.Module, evalset: EvalSet, n_samples: int = 50,
                  names: str | Sequence[str] | None = None, seed: int = 0, method: str = "hutchinson",
                  max_batches: int | None = None, return_stderr: bool = False) -> float | tuple[float, float]:
    """Stochastic estimate of tr(H) from ``n_samples`` Hessian-vector products.

    ``method="hutchinson"`` (Rademacher probes, unbiased; exact for a diagonal Hessian) or
    ``"hutch++"`` (low-rank sketch + Hutchinson on the rest; exact when ``n_samples/3`` ≥ the
    number of parameters). With ``return_stderr`` also returns the estimator's standard error.
    """
    check_positive_int("n_samples", n_samples)
    if method not in TRACE_METHODS:
        raise bad_value("method", method, TRACE_METHODS)
    with second_order_mode(model):
        op = hessian_operator(model, evalset, names, max_batches)
        op = _in_float64(op)
        if method == "hutchinson":
            res = hutchinson(op, num_samples=n_samples, distribution="rademacher", seed=seed)
        else:
            res = hutch_plus_plus(op, num_matvecs=n_samples, seed=seed)
    return (float(res.estimate), float(res.stderr)) if return_stderr else float(res.estimate)


def _flat(model: torch.nn.Module, u: Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> torch.Tensor:
    """``u`` as one flat fp32 vector in the order of the operator's parameters (the model's trainable
    parameters in ``named_parameters`` order, those of ``names`` when given; absent names are zero)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad and (names is None or n in names)]
    return torch.cat([(u[n].to(p.device, torch.float32) if n in u else torch.zeros_like(p, dtype=torch.float32))
                      .reshape(-1) for n, p in params])


def batch_quadratic_forms(model: torch.nn.Module, batches: Sequence[EvalSet],
                          vectors: Mapping[str, Mapping[str, torch.Tensor] | torch.Tensor],
                          progress: bool | None = None) -> dict[str, np.ndarray]:
    """uᵀH_b u for every vector u and every batch b: the curvature of the mean training loss of batch b
    along u (one Hessian-vector product per vector and batch, through the library's operator).

    ``batches``: independent :class:`~bertscape.runs.evaluate.EvalSet` s (e.g. :func:`independent_batches`);
    ``vectors``: ``{name: ParamDict}`` (a direction over the model's parameters; absent parameters are
    zero) or ``{name: flat tensor}`` in the operator's order. With equal batch sizes the mean over
    batches is uᵀHu on all their sentences (the Hessian of a mean loss is the mean of the Hessians),
    and the spread over batches is that value's sampling error over sentences.
    Returns ``{name: array of one value per batch}``."""
    flat = {k: (v if torch.is_tensor(v) and v.dim() == 1 else _flat(model, v)) for k, v in vectors.items()}
    out = {k: np.empty(len(batches)) for k in flat}
    bar = tqdm(total=len(batches) * len(flat), desc="quadratic forms", leave=False,
               disable=not progress_enabled(progress))
    try:
        with second_order_mode(model):
            for b, es in enumerate(batches):
                op = _in_float64(hessian_operator(model, es))
                for k, v in flat.items():
                    vv = v.to(op.device, op.dtype)
                    out[k][b] = float(torch.dot(vv, op.matvec(vv)))
                    bar.update(1)
    finally:
        bar.close()
    return out


def batch_traces(model: torch.nn.Module, batches: Sequence[EvalSet], n_probes: int, seed: int = 0) -> np.ndarray:
    """Hutchinson estimates of tr(H_b), one per batch, from the same ``n_probes`` Rademacher probes for
    every batch: their mean is the trace on all the sentences, their spread over batches its sampling
    error (sentences and probes together)."""
    check_positive_int("n_probes", n_probes)
    with second_order_mode(model):
        size = hessian_operator(model, batches[0]).size
    gen = torch.Generator().manual_seed(int(seed))
    probes = {f"z{j}": (torch.randint(0, 2, (size,), generator=gen, dtype=torch.float32) * 2 - 1)
              for j in range(n_probes)}
    q = batch_quadratic_forms(model, batches, probes)
    return np.mean(np.stack(list(q.values())), axis=0)


def independent_batches(evalset_of: Any, n: int, n_batches: int) -> list[EvalSet]:
    """Split a set of ``n`` sentences into ``n_batches`` equal batches of randomly assigned sentences
    (``evalset_of(indices)`` builds an :class:`~bertscape.runs.evaluate.EvalSet` of the given sentence
    positions as one batch): random, not length-sorted, so that batches are exchangeable samples and
    their spread is a sampling error. ``n`` must be a multiple of ``n_batches`` (equal weights)."""
    check_positive_int("n_batches", n_batches)
    if n % n_batches or n < 2 * n_batches:
        raise bad_value("n_batches", n_batches, f"a divisor of the {n} sentences with at least 2 sentences a batch")
    perm = np.random.default_rng(2019).permutation(n)
    return [evalset_of(np.sort(chunk)) for chunk in np.split(perm, n_batches)]


def curvature_at(model: torch.nn.Module, batches: Sequence[EvalSet], directions: Mapping[str, Mapping[str, torch.Tensor]],
                 lanczos_steps: int, trace_probes: int, seed: int = 0,
                 progress: bool | None = None) -> dict[str, Any]:
    """The curvature numbers of one point, each with a sampling error over independent batches:

    * ``directional``: ``{name: {"value", "batches"}}``, uᵀHu along each of ``directions`` (mean over
      batches, and the per-batch values);
    * ``top_eigenvalue`` (Lanczos on all the batches together, ``lanczos_steps`` products) with
      ``top_residual`` (the Ritz residual: Lanczos' own error) and ``top_batches``, vᵀH_b v on each
      batch for the Ritz vector v: to first order the eigenvalue moves by vᵀ(δH)v when the sentences
      change, so the spread of these values is the eigenvalue's sampling error;
    * ``trace`` with ``trace_batches`` (:func:`batch_traces`).
    """
    merged = EvalSet(batches[0].task, [b for es in batches for b in es.batches],
                     np.concatenate([es.labels for es in batches]), sum(es.n_tokens for es in batches),
                     "+".join(es.fingerprint for es in batches))
    with second_order_mode(model):
        op = hessian_operator(model, merged)
        steps = _lanczos_steps(op.size, lanczos_steps, 1)
        res = lanczos(_in_float64(op), k=1, max_iter=steps, which="LA", seed=seed, reorthogonalize=True)
    vec = res.eigenvectors[0].detach().float().cpu()
    q = batch_quadratic_forms(model, batches, {**directions, "__top__": vec}, progress)
    tb = q.pop("__top__")
    tr = batch_traces(model, batches, trace_probes, seed)
    return {"directional": {k: {"value": float(v.mean()), "batches": v.tolist()} for k, v in q.items()},
            "top_eigenvalue": float(res.eigenvalues[0]), "top_residual": float(res.residuals[0]),
            "top_batches": tb.tolist(), "trace": float(tr.mean()), "trace_batches": tr.tolist(),
            "n_batches": len(batches), "lanczos_steps": steps, "trace_probes": trace_probes}


def curvature_by_group(model: torch.nn.Module, evalset: EvalSet,
                       groups: Mapping[str, str | Sequence[str]] | None = None, k: int = 1,
                       n_samples: int = 20, lanczos_steps: int | None = None, seed: int = 0,
                       max_batches: int | None = None, trace: bool = True, progress: bool | None = None,
                       desc: str = "curvature by group") -> pd.DataFrame:
    """Top eigenvalue(s) and trace of the Hessian restricted to each parameter group (the library's
    operator with a parameter filter, one group at a time).

    Args:
        groups: ``{label: selection}`` with selections as in
            :func:`~bertscape.geometry.directions.select_names` (``"all"``, ``"encoder"``, ``"embeddings"``,
            ``"head"``, a list of regexes or of exact names). Default: all, embeddings, encoder, head.
        k, lanczos_steps: Lanczos settings (see :func:`hessian_top_eigenvalues`).
        n_samples: Hutchinson probes for the trace.
        trace: ``False`` skips the trace (its columns are NaN): the top eigenvalue alone.
        progress, desc: a progress bar over the groups.

    Returns: one row per group: ``group, n_params, top_eigenvalue, top_residual, eigenvalues,
    iterations, converged, trace, trace_stderr, trace_per_param`` (``converged``: the Lanczos
    steps reached the group's parameter count, so the Krylov space is exhausted).
    """
    groups = dict(groups) if groups is not None else {g: g for g in ("all", "embeddings", "encoder", "head")}
    params = dict(model.named_parameters())
    rows = []
    for label, sel in tqdm(groups.items(), desc=desc, disable=not progress_enabled(progress), leave=False):
        names = resolve_names([n for n, p in params.items() if p.requires_grad], sel)
        n_params = int(sum(params[n].numel() for n in names))
        steps = _lanczos_steps(n_params, lanczos_steps, k)
        eig, res = hessian_top_eigenvalues(model, evalset, k, names, steps, seed, max_batches, return_residuals=True)
        tr, se = (hessian_trace(model, evalset, n_samples, names, seed, "hutchinson", max_batches, return_stderr=True)
                  if trace else (float("nan"), float("nan")))
        rows.append({"group": label, "n_params": n_params, "top_eigenvalue": eig[0], "top_residual": res[0],
                     "eigenvalues": eig, "iterations": steps, "converged": steps >= n_params,
                     "trace": tr, "trace_stderr": se, "trace_per_param": tr / n_params})
    return pd.DataFrame(rows)


def _lanczos_steps(n_params: int, lanczos_steps: int | None, k: int) -> int:
    """The Lanczos steps taken: ``lanczos_steps`` (default ``max(2k, DEFAULT_LANCZOS_STEPS)``), at most ``n_params``."""
    return min(n_params, lanczos_steps if lanczos_steps is not None else max(2 * k, DEFAULT_LANCZOS_STEPS))


def dense_hessian(model: torch.nn.Module, evalset: EvalSet, names: str | Sequence[str] | None = None) -> np.ndarray:
    """The full Hessian of the same loss over the chosen parameters (``torch.autograd.functional``;
    only for tiny models and checks: size² entries, one backward pass per row)."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    chosen = resolve_names(trainable, names)
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in chosen]
    sizes = [params[n].numel() for n in chosen]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in chosen])
    n_examples = len(evalset)

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        upd = {n: t.reshape(s) for n, t, s in zip(chosen, parts, shapes)}
        total = flat.new_zeros(())
        for b in evalset.batches:
            logits = functional_call(model, upd, args=(), kwargs={
                "input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
                "token_type_ids": b["token_type_ids"]}).logits
            total = total + loss_fn(evalset.task, logits.float(), b["labels"], reduction="sum")
        return total / n_examples

    with second_order_mode(model):
        h = torch.autograd.functional.hessian(f, flat0)
    return h.detach().double().cpu().numpy()
