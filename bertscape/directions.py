"""Directions in parameter space and in-place writing of θ0 + Σ cᵢ·dᵢ into a model.

A point or direction is a :data:`ParamDict` (parameter name → tensor, shapes as in the model).
Names absent from a direction mean "zero along that direction"; which parameters move at all is
chosen with :func:`select_names`.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import torch

from . import cache
from .errors import bad_value

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
    """Inner product over the names both hold (float64 accumulation)."""
    return float(sum(torch.sum(a[k].double() * b[k].double()) for k in a if k in b))


def norm(a: ParamDict) -> float:
    """Euclidean norm of the whole vector."""
    return dot(a, a) ** 0.5


def cosine(a: ParamDict, b: ParamDict) -> float:
    """cos(a, b)."""
    na, nb = norm(a), norm(b)
    return dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def content_hash(d: ParamDict) -> str:
    """A hash of a direction's values (stable across runs on one platform)."""
    import hashlib

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
