"""Directions in parameter space and in-place writing of θ0 + Σ cᵢ·dᵢ into a model.

A point or direction is a :data:`ParamDict` (parameter name → tensor, shapes as in the model).
Names absent from a direction mean "zero along that direction"; which parameters move at all is
chosen with :func:`select_names`.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from bertscape.base import cache, versions
from bertscape.base.errors import bad_value

ParamDict = dict[str, torch.Tensor]

#: Named parameter sets accepted by :func:`select_names`.
PARAM_SETS = ("all", "encoder", "embeddings", "head")


def select_names(names: Iterable[str], which: str | Sequence[str] = "all") -> list[str]:
    """Parameter names in a set: ``all``, ``encoder`` (transformer layers only), ``embeddings``,
    ``head`` (pooler + classifier), or a list of regular expressions matched with ``re.search``."""
    names = list(names)
    if isinstance(which, str):
        if which == "all":
            return names
        if which == "encoder":
            return [n for n in names if ".encoder." in f".{n}"]
        if which == "embeddings":
            return [n for n in names if ".embeddings." in f".{n}"]
        if which == "head":
            return [n for n in names if n.startswith(("classifier.", "score.")) or ".pooler." in f".{n}"]
        raise bad_value("params", which, f"one of {PARAM_SETS} or a list of regular expressions")
    pats = [re.compile(p) for p in which]
    chosen = [n for n in names if any(p.search(n) for p in pats)]
    if not chosen:
        raise bad_value("params", list(which), "patterns that match at least one parameter name")
    return chosen


def restrict(d: ParamDict, names: Iterable[str]) -> ParamDict:
    """Only the entries of ``d`` named in ``names``."""
    keep = set(names)
    return {k: v for k, v in d.items() if k in keep}


def sub(a: ParamDict, b: ParamDict) -> ParamDict:
    """a − b over a's names."""
    return {k: a[k] - b[k] for k in a}


def axpy(a: ParamDict, d: ParamDict, alpha: float) -> ParamDict:
    """a + alpha·d (names of ``d`` missing from … treated as zero)."""
    return {k: (v + alpha * d[k]) if k in d else v.clone() for k, v in a.items()}


def dot(a: ParamDict, b: ParamDict) -> float:
    """Inner product over the names both hold: torch's pairwise-summed reduction per tensor (in
    the tensors' dtype; ~1e-8 relative error in fp32), the per-tensor results summed in float64.
    A float64 conversion of BERT-sized vectors was ~15x slower; a BLAS dot in fp32 ~100x less exact."""
    total = 0.0
    for k, v in a.items():
        if k in b:
            w = b[k]
            if w.dtype != v.dtype:
                w = w.to(v.dtype)
            total += float(torch.sum(v * w))
    return total


def norm(a: ParamDict) -> float:
    """Euclidean norm of the whole vector."""
    return dot(a, a) ** 0.5


def cosine(a: ParamDict, b: ParamDict) -> float:
    """cos(a, b)."""
    na, nb = norm(a), norm(b)
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def content_hash(d: ParamDict) -> str:
    """A hash of a direction's values (stable across runs on one platform)."""
    h = hashlib.sha256()
    for k in sorted(d):
        t = d[k].detach().float().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


class PointWriter:
    """Writes θ = base + Σ cᵢ·dᵢ into a model's parameters in place, from the stored base.

    Every call recomputes each touched parameter from ``base`` (no accumulation, so no drift) and
    keeps no model copies. Parameters absent from ``base`` are left as they are.
    """

    def __init__(self, model: torch.nn.Module, base: ParamDict, directions: Sequence[ParamDict]):
        params = dict(model.named_parameters())
        missing = [k for k in base if k not in params]
        if missing:
            raise bad_value("base", missing[:3], "parameter names of the model")
        device = next(model.parameters()).device
        self.params = {k: params[k] for k in base}
        self.base = {k: v.to(device, torch.float32) for k, v in base.items()}
        self.directions = [{k: v.to(device, torch.float32) for k, v in d.items() if k in self.base}
                           for d in directions]

    @torch.no_grad()
    def set(self, *coeffs: float) -> None:
        """Write base + Σ coeffs[i]·directions[i]."""
        if len(coeffs) != len(self.directions):
            raise ValueError(f"expected {len(self.directions)} coefficients, got {len(coeffs)}")
        for k, p in self.params.items():
            p.copy_(self.base[k])
            for c, d in zip(coeffs, self.directions):
                if c != 0.0 and k in d:
                    p.add_(d[k], alpha=float(c))


# ----------------------------------------------------------------------------- random directions

#: Normalisation policies of :func:`random_direction` for tensors with ≥ 2 dimensions.
POLICIES = ("filter", "layer", "none")
#: Policies of :func:`random_direction` for 1-D tensors (biases, LayerNorm gains and shifts).
BIAS_POLICIES = ("zero", "whole")


def resolve_names(available: Iterable[str], names: str | Sequence[str] | None) -> list[str]:
    """Parameter names chosen by ``names`` among ``available`` (order of ``available``).

    ``None`` means all; a string is a set of :func:`select_names`; a list whose items are all
    exact names is taken literally, any other list is a list of regular expressions.
    """
    available = list(available)
    if names is None:
        return available
    if not isinstance(names, str):
        names = list(names)
        have = set(available)
        if names and all(isinstance(n, str) and n in have for n in names):
            chosen = set(names)
            return [n for n in available if n in chosen]
    return select_names(available, names)


def random_direction(reference: ParamDict, seed: int, policy: str = "filter", bias_policy: str = "whole",
                     names: str | Sequence[str] | None = None) -> ParamDict:
    """A seeded Gaussian direction normalised against ``reference`` (usually δ1 = θ1 − θ0).

    Normalisation (Li et al. 2018, "filter normalisation", adapted to transformers):

    * ``policy="filter"`` (default): every row of every tensor with ≥ 2 dimensions (the output
      rows of a linear layer; one token's vector in an embedding table; higher-rank tensors are
      viewed as ``(shape[0], -1)``) is scaled to the norm of the same row of ``reference``.
      A row that ``reference`` does not move (e.g. the embedding of a token absent from the
      training data) becomes zero, so δ2 only explores what δ1 explores.
    * ``policy="layer"``: every tensor is scaled as a whole to the reference tensor's norm.
    * ``policy="none"``: raw N(0, 1) draws (not recommended: scale then depends on tensor sizes).

    1-D tensors (biases, LayerNorm weight and bias), chosen with ``bias_policy``:

    * ``"whole"`` (default): the tensor is scaled as a whole to the reference tensor's norm.
      Chosen because fine-tuning does move LayerNorm gains and biases (they are part of δ1);
      zeroing them in δ2 would make the two axes of a surface explore different parameter
      sets. Li et al. zero them because batch-norm parameters make their nets scale-invariant,
      which has no analogue for the biases of a transformer's linear layers.
    * ``"zero"``: the direction is zero on 1-D tensors (Li et al.'s choice for biases and BN).

    Args:
        reference: the direction whose per-row (per-tensor) norms are copied.
        seed: seeds the draw (each tensor drawn in sorted-name order from one generator, so a
            given seed and selection always give the same direction).
        policy, bias_policy: as above.
        names: which parameters move (``None`` = all of ``reference``; see :func:`resolve_names`);
            the others are absent from the result (= zero).
    """
    if policy not in POLICIES:
        raise bad_value("policy", policy, POLICIES)
    if bias_policy not in BIAS_POLICIES:
        raise bad_value("bias_policy", bias_policy, BIAS_POLICIES)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise bad_value("seed", seed, "a non-negative integer")
    chosen = resolve_names(reference, names)
    gen = torch.Generator().manual_seed(int(seed))
    out: ParamDict = {}
    for name in sorted(chosen):
        ref = reference[name].detach().float().cpu()
        draw = torch.randn(ref.shape, generator=gen, dtype=torch.float32)
        if ref.dim() <= 1:
            if bias_policy == "zero":
                out[name] = torch.zeros_like(ref)
                continue
            out[name] = _scale_to(draw, ref) if policy != "none" else draw
        elif policy == "filter":
            out[name] = _scale_rows_to(draw, ref)
        elif policy == "layer":
            out[name] = _scale_to(draw, ref)
        else:
            out[name] = draw
    return {n: out[n] for n in chosen}


def filter_normalise(d: ParamDict, reference: ParamDict) -> ParamDict:
    """``d`` rescaled row by row to the norms of the same rows of ``reference`` (usually the
    weights θ1): Li et al.'s filter normalisation, applied to a given direction.

    Every row of a tensor with ≥ 2 dimensions (viewed as ``(shape[0], -1)``; for an embedding
    table, one token's vector) gets the norm of the matching row of ``reference``; 1-D tensors
    (biases, LayerNorm gains and shifts) are scaled as a whole, as :func:`random_direction` does
    with ``bias_policy="whole"``. A zero row of ``d`` stays zero (a token fine-tuning never saw is
    not moved). A step of t along the result moves every row by t times its own norm, so widths
    measured in these units compare networks whose weights have different scales (a pre-trained
    and a from-scratch network: ‖θ1‖ ≈ 280 vs ≈ 120 for MiniLM).
    """
    out: ParamDict = {}
    for name, v in d.items():
        ref = reference[name].detach().float().cpu()
        x = v.detach().float().cpu()
        out[name] = _scale_to(x, ref) if x.dim() <= 1 else _scale_rows_to(x, ref)
    return out


def _scale_rows_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` (viewed as ``(shape[0], -1)``) with every row rescaled to the norm of the same row of
    ``ref``; a zero row of ``x`` stays zero."""
    x2, r2 = x.reshape(x.shape[0], -1), ref.reshape(ref.shape[0], -1)
    xn = x2.norm(dim=1, keepdim=True)
    factor = torch.where(xn > 0, r2.norm(dim=1, keepdim=True) / xn.clamp_min(1e-30), torch.zeros_like(xn))
    return (x2 * factor).reshape(x.shape)


def _scale_to(draw: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    dn = float(draw.norm())
    return draw * (float(ref.norm()) / dn) if dn > 0 else torch.zeros_like(draw)


def scale(d: ParamDict, factor: float) -> ParamDict:
    """factor·d."""
    return {k: v * float(factor) for k, v in d.items()}


def orthogonalise(d2: ParamDict, d1: ParamDict) -> ParamDict:
    """Gram–Schmidt: d2 − (⟨d2, d1⟩/‖d1‖²)·d1 over the names of both (missing names = zero)."""
    n1 = dot(d1, d1)
    if n1 == 0:
        raise bad_value("d1", "a zero direction", "a direction with non-zero norm")
    c = dot(d2, d1) / n1
    out = {k: (v - c * d1[k]) if k in d1 else v.clone() for k, v in d2.items()}
    for k, v in d1.items():
        if k not in out:
            out[k] = -c * v
    return out


# ----------------------------------------------------------------------------- PCA of a trajectory

def pca_directions(points, n: int = 2, origin: str = "theta1", names: str | Sequence[str] | None = None,
                   center: bool = True) -> tuple[list[ParamDict], "np.ndarray"]:
    """Principal directions of a training trajectory (Li et al. 2018, section 7).

    Each checkpoint θt becomes a vector ``θt − θ_origin`` (``origin="theta1"``: the last point,
    Li et al.'s choice, so the vectors point from the end back along the path; ``"theta0"``:
    the first point). With ``center=True`` the vectors are centred over checkpoints before the
    decomposition, exactly as :class:`sklearn.decomposition.PCA` does. The decomposition uses
    the checkpoints' Gram matrix (T × T, float64) and streams over parameters, so memory stays
    at the checkpoints themselves plus one tensor.

    Args:
        points: a :class:`~bertscape.runs.train.RunResult` (its checkpoints) or a list of ParamDicts
            in training order.
        n: how many directions (at most the number of checkpoints − 1).
        origin: ``theta1`` or ``theta0``.
        names: which parameters (see :func:`resolve_names`).
        center: centre the vectors over checkpoints (as PCA does).

    Returns:
        ``(directions, explained_variance_ratio)``: ``n`` unit-norm ParamDicts (sign fixed so
        that ⟨θ0 − θ_origin, d⟩ ≥ 0) and each one's share of the trajectory's total variance
        (an array of length ``n``, as ``PCA.explained_variance_ratio_``).
    """
    if origin not in ("theta0", "theta1"):
        raise bad_value("origin", origin, ("theta0", "theta1"))
    if not isinstance(points, (list, tuple)):
        points = [p for _, p in points.trajectory()]
    pts = list(points)
    if len(pts) < 2:
        raise bad_value("points", f"{len(pts)} checkpoint(s)", "at least 2 checkpoints")
    if isinstance(n, bool) or not isinstance(n, int) or not (1 <= n <= len(pts) - 1):
        raise bad_value("n", n, f"an integer from 1 to {len(pts) - 1} (checkpoints − 1)")
    chosen = resolve_names(pts[0], names)
    ref = pts[-1] if origin == "theta1" else pts[0]
    t = len(pts)
    gram = np.zeros((t, t))
    for k in chosen:
        x = torch.stack([p[k].detach().double().reshape(-1) - ref[k].detach().double().reshape(-1) for p in pts])
        if center:
            x = x - x.mean(0, keepdim=True)
        gram += (x @ x.T).numpy()
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    total = evals.sum()
    if total <= 0:
        raise bad_value("points", "a trajectory that does not move", "checkpoints that differ")
    dirs: list[ParamDict] = [{} for _ in range(n)]
    for k in chosen:
        x = torch.stack([p[k].detach().double().reshape(-1) - ref[k].detach().double().reshape(-1) for p in pts])
        if center:
            x = x - x.mean(0, keepdim=True)
        for j in range(n):
            s = float(np.sqrt(evals[j]))
            u = torch.from_numpy(evecs[:, j].copy())
            v = (x.T @ u) / s if s > 0 else torch.zeros(x.shape[1], dtype=torch.float64)
            dirs[j][k] = v.reshape(pts[0][k].shape).float()
    # fix signs: the first checkpoint (θ0) gets a non-negative coordinate
    for j in range(n):
        if dot(sub(restrict(pts[0], chosen), restrict(ref, chosen)), dirs[j]) < 0:
            dirs[j] = scale(dirs[j], -1.0)
    return dirs, evals[:n] / total


# ----------------------------------------------------------------------------- storage

def direction_key(run_key: str, kind: str, seed: int | None = None, policy: str | None = None,
                  bias_policy: str | None = None, names: str | Sequence[str] | None = None, **extra) -> str:
    """Cache key of a derived direction: hash of (run key, kind, seed, policy, parameter selection …)."""
    sel = names if names is None or isinstance(names, str) else list(names)
    return cache.stable_hash({"run": run_key, "kind": kind, "seed": seed, "policy": policy,
                              "bias_policy": bias_policy, "names": sel, "extra": extra,
                              "code": versions.version("directions")})


def save_direction(path, d: ParamDict, meta: dict | None = None) -> str:
    """Write ``d`` as safetensors atomically, with its content hash in the metadata; return the hash."""
    h = content_hash(d)
    md = {"content_hash": h, **{k: str(v) for k, v in (meta or {}).items()}}
    with cache.atomic_path(path) as tmp:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in d.items()}, str(tmp), metadata=md)
    return h


def load_direction(path) -> tuple[ParamDict, dict] | None:
    """Read a stored direction; ``None`` when missing, unreadable or its content hash disagrees."""
    try:
        with safe_open(str(path), framework="pt") as f:
            md = dict(f.metadata() or {})
            d = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # missing or corrupt file
        return None
    if md.get("content_hash") != content_hash(d):
        return None
    return d, md


def cached_direction(key: str, make, meta: dict | None = None) -> tuple[ParamDict, str]:
    """The direction stored under ``key`` in ``cache.subdir("directions")``, made by ``make()`` if
    absent or corrupt. Returns ``(direction, content_hash)``."""
    path = cache.subdir("directions") / f"{key}.safetensors"
    hit = load_direction(path)
    if hit is not None:
        return hit[0], hit[1]["content_hash"]
    d = make()
    h = save_direction(path, d, meta)
    return d, h
