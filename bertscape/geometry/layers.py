"""Layer analysis: which layers move during fine-tuning, and which of those moves matter.

The paper's third finding is that the lower layers of BERT change least during fine-tuning and
matter least for the task. This module measures that claim in several independent ways, for any
BERT-family model (6 layers for the embedded MiniLM, 12 or 24 for BERT-base / BERT-large):

* :func:`discover_layers` groups parameters by name into ``embeddings``, ``layer 0`` …
  ``layer N-1``, ``pooler`` and ``head``, and each encoder layer into sub-modules
  (``attention``, ``feed-forward``, ``LayerNorm``);
* :func:`relative_change` — ‖θ1_l − θ0_l‖ / ‖θ0_l‖ per group or per sub-module;
* :func:`layer_curves` — one 1D curve per group: only group *l* moves along its own part of
  δ1 = θ1 − θ0, the other parameters stay at θ1 (or, as a second view, at θ0);
  :func:`curve_summary` condenses each curve into its rise f(0) − f(1) and a finite-difference
  second derivative at α = 1;
* :func:`restore_layers` — put layers of θ1 back to θ0, bottom-up or top-down, and re-evaluate;
* :func:`layer_curvature` — the top Hessian eigenvalue restricted to each group's parameters;
* :func:`layer_cka` — linear CKA between the θ0 and θ1 hidden states of every layer;
* :func:`analyze_run` — all of the above for a finished :class:`~bertscape.runs.train.RunResult`,
  cached in ``<cache>/layers``.

Conventions: every function that moves a model's parameters puts the model back to θ1 (the
fine-tuned point) when it returns, even on error, so a caller can chain measures on one model.
All tables are indexed by group name in model order (bottom to top), with a ``layer_index``
column (−1 for the embeddings, 0 … N−1 for encoder layers, N for the pooler, N+1 for the head)
so depth trends can be plotted or correlated directly.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from bertscape.base import cache, versions, workcount
from bertscape.base.errors import BertscapeError, bad_value, check_positive_int
from bertscape.base.progress import progress_enabled
from bertscape.geometry.curvature import curvature_by_group
from bertscape.geometry.directions import ParamDict, restrict
from bertscape.geometry.landscape import curve_1d, eval_sets_for_run
from bertscape.runs.evaluate import EvalSet, check_evalsets, evaluate, evaluate_sets
from bertscape.runs.models import load_state, resolve_device
from bertscape.runs.precision import autocast_dtype
from bertscape.runs.precision import resolve as resolve_precision

#: α values of the per-layer curves. α = 0 is the layer at θ0, α = 1 at θ1. The points 0.75 and
#: 1.25 give a symmetric finite difference (h = 0.25) for the curvature at α = 1; h = 0.25 rather
#: than smaller keeps the bf16 evaluation noise (~2e-5 in the loss) far below the signal
#: (noise/h² ≈ 3e-4). Six points per group keep the quick-profile analysis within its 5-minute
#: CPU budget (see benchmarks/bench_layers.py). (The quick profile's ``layer_alphas``.)
DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
#: Defaults of :func:`analyze_run` (the quick profile's values; the book passes its profile's): evaluation
#: sentences of the curves and restores, Hessian sentences and Lanczos steps per group, CKA tokens.
DEFAULT_N_EVAL, DEFAULT_N_HESSIAN, DEFAULT_LAYER_LANCZOS, DEFAULT_CKA_TOKENS = 256, 32, 4, 4096

#: Restore orders accepted by :func:`restore_layers`.
RESTORE_ORDERS = ("bottom-up", "top-down", "groups")

#: Views of the per-layer curves: what the parameters outside the moving group hold.
CURVE_VIEWS = ("theta1", "theta0")

#: Measures computed by :func:`analyze_run`.
MEASURES = ("change", "curves", "restore", "curvature", "cka")

_LAYER_RE = re.compile(r"(?:^|\.)(?:encoder|transformer)\.layers?\.(\d+)\.")
_HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.", "qa_outputs.", "head.")


# ----------------------------------------------------------------------------- progress bars

def _bar(total: int, desc: str, progress: bool | None):
    return tqdm(total=total, desc=desc, disable=not progress_enabled(progress), leave=False,
                dynamic_ncols=True)


# ----------------------------------------------------------------------------- layer discovery

@dataclass(frozen=True)
class LayerMap:
    """Parameter names grouped by layer, in model order (bottom to top).

    Attributes:
        groups: group name → parameter names. Group names are ``embeddings``, ``layer 0`` …
            ``layer N-1``, ``pooler``, ``head`` (and ``other`` for names that fit none of them,
            which standard BERT-family classifiers do not have). Empty groups are left out.
        submodules: group name → {sub-module name → parameter names}. Sub-modules of an encoder
            layer are ``attention`` (``attention.*`` except its LayerNorm), ``feed-forward``
            (``intermediate.*`` and the layer's ``output.dense.*``) and ``LayerNorm`` (every
            LayerNorm, the attention block's included); the embeddings split into ``embeddings``
            (the lookup tables) and ``LayerNorm``; the pooler and head are one sub-module each.
        n_layers: number of encoder layers N.
        sizes: parameter name → number of elements (empty when only names were given).
    """

    groups: dict[str, tuple[str, ...]]
    submodules: dict[str, dict[str, tuple[str, ...]]]
    n_layers: int
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def encoder_groups(self) -> list[str]:
        """``layer 0`` … ``layer N-1``."""
        return [f"layer {i}" for i in range(self.n_layers)]

    @property
    def names(self) -> list[str]:
        """Every grouped parameter name, in group order."""
        return [n for g in self.groups.values() for n in g]

    def layer_index(self, group: str) -> int:
        """−1 for the embeddings, i for ``layer i``, N for the pooler, N+1 for the head (and other)."""
        if group == "embeddings":
            return -1
        if group.startswith("layer "):
            return int(group.split()[1])
        return self.n_layers if group == "pooler" else self.n_layers + 1

    def names_of(self, groups: str | Iterable[str]) -> list[str]:
        """Parameter names of one group or of several."""
        if isinstance(groups, str):
            groups = [groups]
        out: list[str] = []
        for g in groups:
            if g not in self.groups:
                raise bad_value("group", g, list(self.groups))
            out.extend(self.groups[g])
        return out

    def table(self) -> pd.DataFrame:
        """One row per parameter: ``name``, ``group``, ``submodule``, ``layer_index``, ``numel``."""
        rows = []
        for g, subs in self.submodules.items():
            for s, names in subs.items():
                for n in names:
                    rows.append({"name": n, "group": g, "submodule": s, "layer_index": self.layer_index(g),
                                 "numel": self.sizes.get(n, np.nan)})
        order = {n: i for i, n in enumerate(self.names)}
        return pd.DataFrame(rows).sort_values("name", key=lambda c: c.map(order)).reset_index(drop=True)


def _submodule(group: str, name: str) -> str:
    if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name.lower():
        return "LayerNorm"
    if group == "embeddings":
        return "embeddings"
    if group in ("pooler", "head", "other"):
        return group
    if ".attention." in f".{name}" or ".attn." in f".{name}":
        return "attention"
    if ".intermediate." in f".{name}" or ".output.dense." in f".{name}" or ".ffn." in f".{name}":
        return "feed-forward"
    return "other"


def discover_layers(source: torch.nn.Module | Mapping[str, torch.Tensor] | Iterable[str]) -> LayerMap:
    """Group the parameters of a BERT-family model by layer, from their names alone.

    Args:
        source: a model, a state dict (name → tensor, e.g. θ0), a mapping name → number of elements, or an
            iterable of parameter names.

    Rules (``re.search`` on the full name): ``…embeddings.…`` → ``embeddings``;
    ``…encoder.layer.<i>.…`` (``transformer.layer.<i>`` too, as in DistilBERT) → ``layer <i>``;
    ``…pooler.…`` → ``pooler``; names starting with ``classifier.``/``score.``/``pre_classifier.``
    → ``head``. Anything else goes to an ``other`` group placed before the pooler.

    Raises:
        BertscapeError: when no encoder layer is found (not a BERT-family layout).
    """
    if isinstance(source, torch.nn.Module):
        sizes = {n: p.numel() for n, p in source.named_parameters() if p.requires_grad}
        names = list(sizes)
    elif isinstance(source, Mapping):
        sizes = {n: int(t) if isinstance(t, (int, np.integer)) else int(t.numel()) for n, t in source.items()}
        names = list(source)
    else:
        names = [str(n) for n in source]
        sizes = {}
    found: dict[str, list[str]] = {}
    layer_ids: set[int] = set()
    for n in names:
        m = _LAYER_RE.search(n)
        if m:
            g = f"layer {int(m.group(1))}"
            layer_ids.add(int(m.group(1)))
        elif ".embeddings." in f".{n}":
            g = "embeddings"
        elif ".pooler." in f".{n}":
            g = "pooler"
        elif n.startswith(_HEAD_PREFIXES):
            g = "head"
        else:
            g = "other"
        found.setdefault(g, []).append(n)
    if not layer_ids:
        raise bad_value("model", f"<{len(names)} parameters, e.g. {names[:2]}>",
                        "a BERT-family model whose parameter names contain 'encoder.layer.<i>.'")
    n_layers = max(layer_ids) + 1
    missing = sorted(set(range(n_layers)) - layer_ids)
    if missing:
        raise BertscapeError(f"encoder layers {missing} have no parameters; the model's layer names are not "
                             f"numbered 0 … {n_layers - 1} as BERT-family models are")
    order = ["embeddings"] + [f"layer {i}" for i in range(n_layers)] + ["other", "pooler", "head"]
    groups = {g: tuple(found[g]) for g in order if g in found}
    submodules: dict[str, dict[str, tuple[str, ...]]] = {}
    for g, gnames in groups.items():
        subs: dict[str, list[str]] = {}
        for n in gnames:
            subs.setdefault(_submodule(g, n), []).append(n)
        sub_order = ["embeddings", "attention", "feed-forward", "LayerNorm", "pooler", "head", "other"]
        submodules[g] = {s: tuple(subs[s]) for s in sub_order if s in subs}
    return LayerMap(groups, submodules, n_layers, sizes)


def _layers_for(layers: LayerMap | None, theta: Mapping[str, torch.Tensor]) -> LayerMap:
    return layers if layers is not None else discover_layers(theta)


def _check_groups(groups: Sequence[str] | None, layers: LayerMap, param: str = "groups") -> list[str]:
    if groups is None:
        return list(layers.groups)
    if isinstance(groups, str):
        groups = [groups]
    bad = [g for g in groups if g not in layers.groups]
    if bad or not groups:
        raise bad_value(param, list(groups), f"a non-empty list of group names from {list(layers.groups)}")
    return list(groups)


def _check_states(theta0: Mapping[str, torch.Tensor], theta1: Mapping[str, torch.Tensor]) -> None:
    if set(theta0) != set(theta1):
        diff = sorted(set(theta0) ^ set(theta1))[:3]
        raise bad_value("theta1", f"<state differing from theta0 in {diff}>", "the same parameter names as theta0")
    for k in theta0:
        if theta0[k].shape != theta1[k].shape:
            raise bad_value("theta1", f"<{k} of shape {tuple(theta1[k].shape)}>",
                            f"the shape of theta0[{k!r}], {tuple(theta0[k].shape)}")


# ----------------------------------------------------------------------------- relative change

def relative_change(theta0: Mapping[str, torch.Tensor], theta1: Mapping[str, torch.Tensor],
                    layers: LayerMap | None = None, by: str = "group") -> pd.DataFrame:
    """‖θ1_l − θ0_l‖ / ‖θ0_l‖ for every group (``by="group"``) or sub-module (``by="submodule"``).

    Returns a DataFrame indexed by group (or by ``(group, submodule)``) in model order, with
    columns ``layer_index``, ``n_params``, ``norm_theta0``, ``norm_delta`` and ``relative_change``
    (NaN where ‖θ0_l‖ = 0). Norms are accumulated in float64.
    """
    if by not in ("group", "submodule"):
        raise bad_value("by", by, ("group", "submodule"))
    _check_states(theta0, theta1)
    layers = _layers_for(layers, theta0)
    rows, index = [], []
    for g, subs in layers.submodules.items():
        parts = {g: [n for s in subs.values() for n in s]} if by == "group" else subs
        for s, names in parts.items():
            sq0 = sqd = 0.0
            numel = 0
            for n in names:
                a = theta0[n].detach().double()
                d = theta1[n].detach().double() - a
                sq0 += float(torch.sum(a * a))
                sqd += float(torch.sum(d * d))
                numel += a.numel()
            n0, nd = math.sqrt(sq0), math.sqrt(sqd)
            rows.append({"layer_index": layers.layer_index(g), "n_params": numel, "norm_theta0": n0,
                         "norm_delta": nd, "relative_change": nd / n0 if n0 > 0 else float("nan")})
            index.append(g if by == "group" else (g, s))
    idx = pd.Index(index, name="group") if by == "group" else pd.MultiIndex.from_tuples(index, names=["group", "submodule"])
    return pd.DataFrame(rows, index=idx)


# ----------------------------------------------------------------------------- evaluation helpers

def _check_alphas(alphas: Sequence[float]) -> np.ndarray:
    try:
        a = np.asarray(sorted(set(float(x) for x in alphas)), dtype=np.float64)
    except (TypeError, ValueError):
        raise bad_value("alphas", alphas, "a sequence of numbers")
    if a.size < 2 or not np.all(np.isfinite(a)):
        raise bad_value("alphas", list(alphas), "at least two distinct finite numbers (α = 0 is θ0, α = 1 is θ1)")
    return a


# ----------------------------------------------------------------------------- per-layer curves

def layer_curves(model: torch.nn.Module, theta0: ParamDict, theta1: ParamDict, evalsets: Mapping[str, EvalSet],
                 alphas: Sequence[float] = DEFAULT_ALPHAS, groups: Sequence[str] | None = None,
                 others: str = "theta1", layers: LayerMap | None = None, precision: str = "auto",
                 progress: bool | None = None) -> xr.Dataset:
    """1D curves that move one group of parameters at a time along its own part of δ1.

    For each group *l*: θ(α) = B with group *l* set to θ0_l + α·δ1_l, where B (the other
    parameters) is θ1 (``others="theta1"``: "how much does the fine-tuned model need this layer's
    change") or θ0 (``others="theta0"``: "how far does this layer's change alone get"). With
    B = θ1, α = 1 is θ1 for every group and is evaluated once, exactly; with B = θ0, α = 0 is θ0
    for every group, likewise shared.

    Args:
        model: a model of the matching architecture (its parameters are overwritten; it is left
            holding θ1).
        theta0, theta1: start and end points (name → tensor).
        evalsets: name → :class:`~bertscape.runs.evaluate.EvalSet`, e.g. ``{"train": …, "dev": …}``.
        alphas: the α values (sorted, duplicates dropped).
        groups: which groups (default: every group of ``layers``).
        others: ``theta1`` or ``theta0``.
        layers: the model's :class:`LayerMap` (discovered from ``theta0`` when omitted).
        precision: ``auto`` (bf16 on GPU, fp32 on CPU), ``fp32`` or ``bf16``.
        progress: progress bar (default: on unless ``$BERTSCAPE_PROGRESS=0``).

    Returns:
        An ``xr.Dataset`` with dims ``(group, alpha)`` and one variable per ``<set>_<metric>``
        (``train_loss``, ``dev_accuracy`` …), plus a ``layer_index`` coordinate along ``group``.
    """
    if others not in CURVE_VIEWS:
        raise bad_value("others", others, CURVE_VIEWS)
    _check_states(theta0, theta1)
    evalsets = check_evalsets(evalsets)
    a = _check_alphas(alphas)
    layers = _layers_for(layers, theta0)
    groups = _check_groups(groups, layers)
    base_state = theta1 if others == "theta1" else theta0
    shared_alpha = 1.0 if others == "theta1" else 0.0
    results: dict[tuple[str, float], dict[str, float]] = {}
    n_points = len(groups) * int(np.sum(a != shared_alpha)) + int(np.any(a == shared_alpha))
    bar = _bar(n_points, f"layer curves (others={others})", progress)
    try:
        load_state(model, base_state)
        shared: dict[str, float] | None = None
        if np.any(a == shared_alpha):
            shared = evaluate_sets(model, evalsets, precision)
            bar.update(1)
        for g in groups:
            names = layers.names_of(g)
            t0g = restrict(theta0, names)
            d1g = {n: theta1[n].float() - theta0[n].float() for n in names}
            pts = a[a != shared_alpha]
            if shared is not None:
                results[(g, shared_alpha)] = shared
            bar.set_postfix(group=g, refresh=False)
            ds_g = curve_1d(model, t0g, d1g, pts, evalsets, precision=precision, progress=False,
                            callback=lambda i, point: bar.update(1))
            for j, alpha in enumerate(pts):
                results[(g, float(alpha))] = {v: float(ds_g[v].values[j]) for v in ds_g.data_vars if v != "done"}
            load_state(model, restrict(base_state, names))  # exact reset before the next group
    finally:
        bar.close()
        load_state(model, theta1)
    keys = list(results[(groups[0], float(a[0]))])
    data = {k: (("group", "alpha"), np.array([[results[(g, float(x))][k] for x in a] for g in groups]))
            for k in keys}
    ds = xr.Dataset(data, coords={"group": groups, "alpha": a,
                                  "layer_index": ("group", [layers.layer_index(g) for g in groups])})
    ds.attrs.update({"others": others, "precision": precision,
                     "description": "θ(α) = (others) with one group set to θ0_l + α·δ1_l"})
    return ds


def fd_step(alphas: Sequence[float]) -> float:
    """The smallest h > 0 with 1 − h and 1 + h both in ``alphas`` (the step of a centred finite
    difference at α = 1); an error naming ``alphas`` when none exists."""
    a = [float(x) for x in alphas]
    steps = sorted(round(1.0 - x, 12) for x in a if x < 1.0 and any(abs(y - (2.0 - x)) < 1e-9 for y in a))
    if not steps:
        raise bad_value("layer_alphas", list(alphas), "α values holding 1 − h and 1 + h for some h > 0 "
                        "(the finite-difference curvature at θ1), e.g. 0.75 and 1.25")
    return steps[0]


def layer_point_losses(model: torch.nn.Module, theta0: ParamDict, theta1: ParamDict, evalset: EvalSet,
                       alphas: Sequence[float], groups: Sequence[str] | None = None,
                       layers: LayerMap | None = None, precision: str = "auto") -> np.ndarray:
    """Every sentence's loss with one group at θ0_l + α·δ1_l and the rest at θ1, for each group and α:
    an array (groups, alphas, sentences) in the evaluation set's order. α = 1 (θ1 itself) is
    evaluated once and shared. For per-sentence bootstraps of per-layer curve numbers (claim 8);
    :func:`layer_curves` keeps only the means. The model is left holding θ1."""
    _check_states(theta0, theta1)
    layers = _layers_for(layers, theta0)
    groups = _check_groups(groups, layers)
    out = np.empty((len(groups), len(alphas), len(evalset)))
    try:
        load_state(model, theta1)
        at1 = evaluate(model, evalset, precision, per_sample=True)["sample_loss"]
        for i, g in enumerate(groups):
            names = layers.names_of(g)
            for j, a in enumerate(alphas):
                if abs(float(a) - 1.0) < 1e-12:
                    out[i, j] = at1
                    continue
                load_state(model, {n: theta0[n].float() + float(a) * (theta1[n].float() - theta0[n].float())
                                   for n in names})
                out[i, j] = evaluate(model, evalset, precision, per_sample=True)["sample_loss"]
            load_state(model, restrict(theta1, names))
    finally:
        load_state(model, theta1)
    return out


def curve_summary(curves: xr.Dataset, h: float | None = None) -> pd.DataFrame:
    """Condense per-layer curves into two numbers per group and variable.

    * ``<var>_rise`` = f(0) − f(1): how much worse (for a loss) the model gets when the group is
      put back to θ0 — the curve's sharpness in the paper's sense;
    * ``<var>_curvature`` = (f(1+h) − 2 f(1) + f(1−h)) / h²: a finite-difference second
      derivative at α = 1, with h the smallest step for which 1 ± h are both on the α grid (or
      the given ``h``); NaN when no such pair exists.

    Returns a DataFrame indexed by group (model order) with ``layer_index`` and those columns.
    """
    if not isinstance(curves, xr.Dataset) or "alpha" not in curves.dims or "group" not in curves.dims:
        raise bad_value("curves", type(curves).__name__, "an xr.Dataset with dims (group, alpha) from layer_curves")
    alphas = [float(x) for x in curves["alpha"].values]
    if 0.0 not in alphas or 1.0 not in alphas:
        raise bad_value("curves", f"<alphas {alphas}>", "curves whose α grid holds 0 and 1")
    if h is None:
        steps = sorted(round(1.0 - x, 12) for x in alphas if x < 1.0 and any(abs(y - (2.0 - x)) < 1e-9 for y in alphas))
        h = steps[0] if steps else None
    elif not (isinstance(h, (int, float)) and h > 0 and any(abs(x - 1 - h) < 1e-9 for x in alphas)
              and any(abs(x - 1 + h) < 1e-9 for x in alphas)):
        raise bad_value("h", h, f"a step such that 1 ± h are both on the α grid {alphas}")
    out = pd.DataFrame(index=pd.Index([str(g) for g in curves["group"].values], name="group"))
    if "layer_index" in curves.coords:
        out["layer_index"] = curves["layer_index"].values
    for var in curves.data_vars:
        f = curves[var]
        f0 = f.sel(alpha=0.0).values
        f1 = f.sel(alpha=1.0).values
        out[f"{var}_rise"] = f0 - f1
        if h is None:
            out[f"{var}_curvature"] = np.nan
        else:
            fp = f.sel(alpha=1.0 + h, method="nearest").values
            fm = f.sel(alpha=1.0 - h, method="nearest").values
            out[f"{var}_curvature"] = (fp - 2 * f1 + fm) / h ** 2
    out.attrs["h"] = h
    return out


# ----------------------------------------------------------------------------- restore experiment

def restore_sets(layers: LayerMap, orders: Sequence[str] = RESTORE_ORDERS) -> list[tuple[str, int, tuple[str, ...]]]:
    """The restore experiment's rows as ``(order, k, restored groups)``.

    * ``bottom-up``, k = 0 … N: encoder layers 0 … k−1 go back to θ0 (k = 0: nothing, i.e. θ1;
      k = N: every encoder layer, the embeddings, pooler and head staying fine-tuned);
    * ``top-down``, k = 0 … N: encoder layers N−k … N−1 go back to θ0;
    * ``groups``, k = 0 … G: the first k groups in model order (embeddings, layer 0 …, pooler,
      head) go back; k = G restores every group, which is θ0 itself.
    """
    if isinstance(orders, str):
        orders = [orders]
    bad = [o for o in orders if o not in RESTORE_ORDERS]
    if bad or not orders:
        raise bad_value("orders", list(orders), f"a non-empty list from {RESTORE_ORDERS}")
    enc = layers.encoder_groups
    all_groups = list(layers.groups)
    rows: list[tuple[str, int, tuple[str, ...]]] = []
    for order in orders:
        if order == "bottom-up":
            rows += [(order, k, tuple(enc[:k])) for k in range(len(enc) + 1)]
        elif order == "top-down":
            rows += [(order, k, tuple(enc[len(enc) - k:])) for k in range(len(enc) + 1)]
        else:
            rows += [(order, k, tuple(all_groups[:k])) for k in range(len(all_groups) + 1)]
    return rows


def restore_layers(model: torch.nn.Module, theta0: ParamDict, theta1: ParamDict, evalsets: Mapping[str, EvalSet],
                   orders: Sequence[str] = RESTORE_ORDERS, layers: LayerMap | None = None, precision: str = "auto",
                   progress: bool | None = None) -> pd.DataFrame:
    """Evaluate θ1 with some groups put back to their θ0 values (see :func:`restore_sets`).

    Each distinct restored set is evaluated once (``k = 0`` of every order is θ1 itself), and
    every point is written exactly (θ1, then the restored groups copied from θ0).

    Returns a DataFrame with one row per ``(order, k)``: ``restored`` (the groups, comma-joined;
    ``""`` for none), ``n_groups``, ``n_params`` and ``fraction_params`` restored, and one column
    per ``<set>_<metric>``. The model is left holding θ1.
    """
    _check_states(theta0, theta1)
    evalsets = check_evalsets(evalsets)
    layers = _layers_for(layers, theta0)
    rows = restore_sets(layers, orders)
    distinct = list(dict.fromkeys(frozenset(r[2]) for r in rows))
    total = sum(int(t.numel()) for t in theta0.values())
    memo: dict[frozenset, dict[str, float]] = {}
    bar = _bar(len(distinct), "restore layers", progress)
    try:
        for s in distinct:
            load_state(model, theta1)
            if s:
                load_state(model, restrict(theta0, layers.names_of(sorted(s, key=list(layers.groups).index))))
            memo[s] = evaluate_sets(model, evalsets, precision)
            bar.update(1)
    finally:
        bar.close()
        load_state(model, theta1)
    out = []
    for order, k, groups in rows:
        names = layers.names_of(groups) if groups else []
        n = sum(int(theta0[x].numel()) for x in names)
        out.append({"order": order, "k": k, "restored": ", ".join(groups), "n_groups": len(groups),
                    "n_params": n, "fraction_params": n / total if total else float("nan"),
                    **memo[frozenset(groups)]})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- per-layer curvature

def layer_curvature(model: torch.nn.Module, data: EvalSet, groups: Sequence[str] | None = None,
                    layers: LayerMap | None = None, lanczos_steps: int = DEFAULT_LAYER_LANCZOS, seed: int = 0,
                    progress: bool | None = None) -> pd.DataFrame:
    """Top Hessian eigenvalue of the loss restricted to each group's parameters (the diagonal
    block H_ll = ∂²L/∂θ_l²), at the model's current parameters.

    This is :func:`bertscape.geometry.curvature.curvature_by_group` with one group per layer: the library's
    Hessian operator with a parameter filter and its Lanczos iteration (hessian-eigenthings'
    per-layer recipe), ``lanczos_steps`` steps per group (one Hessian-vector product each), no trace.

    Args:
        model: the model at the point of interest (θ1 usually); its parameters are not changed.
        data: where the loss is measured (a few hundred sentences are enough for the top
            eigenvalue; cost grows linearly with the set).
        groups: groups to measure (default: all).
        layers: the model's :class:`LayerMap` (discovered from the model when omitted).
        lanczos_steps: Lanczos steps per group (capped at the group's parameter count, where the
            Krylov space is exhausted and the eigenvalue exact); default: the default profile's
            ``layer_hessian_steps``.
        seed: seeds the Lanczos start vectors.

    Returns:
        DataFrame indexed by group: ``layer_index``, ``n_params``, ``eigenvalue`` (largest
        algebraic), ``residual`` (the Ritz residual: a true eigenvalue lies within it),
        ``iterations``, ``converged`` (the Krylov space was exhausted).
    """
    check_positive_int("lanczos_steps", lanczos_steps)
    if not isinstance(data, EvalSet):
        raise bad_value("data", type(data).__name__, "an EvalSet")
    layers = layers if layers is not None else discover_layers(model)
    groups = _check_groups(groups, layers)
    df = curvature_by_group(model, data, {g: layers.names_of(g) for g in groups}, k=1, lanczos_steps=lanczos_steps,
                            seed=seed,
                            trace=False, progress=progress, desc="layer curvature")
    df = df.set_index("group").rename_axis("group")
    df.insert(0, "layer_index", [layers.layer_index(g) for g in groups])
    return df[["layer_index", "n_params", "top_eigenvalue", "top_residual", "iterations", "converged"]].rename(
        columns={"top_eigenvalue": "eigenvalue", "top_residual": "residual"})


# ----------------------------------------------------------------------------- representation similarity

def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) between two feature matrices of the same examples.

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centred X (n × d1), Y (n × d2), in float64.
    It is 1 for identical representations, invariant to orthogonal transforms and isotropic
    scaling of either side, and near 0 for unrelated ones (when n ≫ d). Returns NaN when a
    side is constant.
    """
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise bad_value("x, y", f"<shapes {x.shape}, {y.shape}>", "two 2-D arrays with the same number (≥ 2) of rows")
    x = x - x.mean(axis=0, keepdims=True)
    y = y - y.mean(axis=0, keepdims=True)
    if x.shape[0] < max(x.shape[1], y.shape[1]):  # Gram form is cheaper when n < d
        kx, ky = x @ x.T, y @ y.T
        num = float(np.sum(kx * ky))
        den = float(np.linalg.norm(kx) * np.linalg.norm(ky))
    else:
        num = float(np.linalg.norm(y.T @ x) ** 2)
        den = float(np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return num / den if den > 0 else float("nan")


def _token_selection(data: EvalSet, max_tokens: int, seed: int) -> list[torch.Tensor]:
    """Per batch, the flat (row-major over batch × width) positions of the sampled real tokens."""
    flat_real = [torch.nonzero(b["attention_mask"].reshape(-1).cpu() > 0).reshape(-1) for b in data.batches]
    n_real = sum(len(f) for f in flat_real)
    if n_real <= max_tokens:
        return flat_real
    rng = np.random.default_rng(int(seed))
    chosen = np.sort(rng.choice(n_real, size=max_tokens, replace=False))
    out, start = [], 0
    for f in flat_real:
        sel = chosen[(chosen >= start) & (chosen < start + len(f))] - start
        out.append(f[torch.from_numpy(sel)])
        start += len(f)
    return out


@torch.inference_mode()
def hidden_state_sample(model: torch.nn.Module, data: EvalSet, selection: Sequence[torch.Tensor],
                        precision: str = "fp32") -> np.ndarray:
    """Hidden states of the selected tokens: an array (N + 1, n_tokens, hidden) in float32.

    Entry 0 is the embedding output, entry i the output of encoder layer i − 1.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = autocast_dtype(precision, device)
    chunks: list[list[np.ndarray]] = []
    try:
        for batch, sel in zip(data.batches, selection):
            if len(sel) == 0:
                continue
            workcount.add("eval_sentences", int(batch["input_ids"].shape[0]))
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"], output_hidden_states=True)
            idx = sel.to(device)
            per = [h.reshape(-1, h.shape[-1]).index_select(0, idx).float().cpu().numpy() for h in out.hidden_states]
            chunks.append(per)
    finally:
        model.train(was_training)
    if not chunks:
        raise bad_value("data", "<no tokens>", "an EvalSet with at least one real token")
    return np.stack([np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))])


def layer_cka(model: torch.nn.Module, theta0: ParamDict, theta1: ParamDict, data: EvalSet,
              max_tokens: int = 4096, seed: int = 0, layers: LayerMap | None = None,
              precision: str = "fp32", progress: bool | None = None) -> pd.DataFrame:
    """Linear CKA between θ0's and θ1's token representations, layer by layer.

    Features are the hidden states of real tokens (padding masked out; [CLS] and [SEP] included)
    of ``data``; at most ``max_tokens`` of them, drawn uniformly without replacement with
    ``seed``, the same tokens for both models. Memory is 2 × (N + 1) × max_tokens × hidden × 4
    bytes: the default 4,096 tokens is 45 MB for MiniLM-L6, 0.8 GB for BERT-large — and CKA with
    4,096 tokens against a hidden size ≤ 1,024 is well past the regime where the estimator's
    bias matters.

    Returns a DataFrame indexed by ``embeddings``, ``layer 0`` … ``layer N-1`` with ``layer_index``,
    ``cka`` and ``n_tokens``. The model is left holding θ1.
    """
    check_positive_int("max_tokens", max_tokens)
    _check_states(theta0, theta1)
    if not isinstance(data, EvalSet):
        raise bad_value("data", type(data).__name__, "an EvalSet")
    layers = _layers_for(layers, theta0)
    selection = _token_selection(data, max_tokens, seed)
    bar = _bar(2 + layers.n_layers + 1, "layer CKA", progress)
    try:
        load_state(model, theta0)
        h0 = hidden_state_sample(model, data, selection, precision)
        bar.update(1)
        load_state(model, theta1)
        h1 = hidden_state_sample(model, data, selection, precision)
        bar.update(1)
    finally:
        load_state(model, theta1)
    if h0.shape[0] != layers.n_layers + 1:
        bar.close()
        raise BertscapeError(f"the model returned {h0.shape[0]} hidden states, expected {layers.n_layers + 1} "
                             f"(embeddings + {layers.n_layers} layers)")
    names = ["embeddings"] + layers.encoder_groups
    rows = []
    for i, g in enumerate(names):
        rows.append({"layer_index": layers.layer_index(g), "cka": linear_cka(h0[i], h1[i]), "n_tokens": h0.shape[1]})
        bar.update(1)
    bar.close()
    return pd.DataFrame(rows, index=pd.Index(names, name="group"))


# ----------------------------------------------------------------------------- the whole analysis of a run

@dataclass
class LayerReport:
    """Every layer measure of one run (see :func:`analyze_run`).

    Attributes:
        spec_key, label: the run's cache key and short label (``movies/pretrained/s0``).
        layers: one row per parameter (name, group, submodule, layer_index, numel).
        change: relative change per group; ``change_sub`` per (group, submodule).
        curves: per-layer curves, dims (view, group, alpha); ``curve_summary`` their rise and
            curvature per (view, group).
        restore: the restore experiment (one row per order and k).
        curvature: top Hessian eigenvalue per group at θ1.
        cka: linear CKA per layer between θ0 and θ1 representations.
        params: the parameters the measures were computed with; ``seconds``: time per measure
            (0 when read from the cache).
    """

    spec_key: str
    label: str
    layers: pd.DataFrame
    change: pd.DataFrame | None = None
    change_sub: pd.DataFrame | None = None
    curves: xr.Dataset | None = None
    curve_summary: pd.DataFrame | None = None
    restore: pd.DataFrame | None = None
    curvature: pd.DataFrame | None = None
    cka: pd.DataFrame | None = None
    params: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def _run_evalsets(run, n_train_eval: int | None, n_dev_eval: int | None, seed: int, device: torch.device,
                  n_hessian: int) -> tuple[dict[str, EvalSet], EvalSet]:
    """(``{"train": …, "dev": …}``, the training sentences the Hessian is taken on), both from
    :func:`bertscape.geometry.landscape.eval_sets_for_run`: the same stratified, seeded samples chapter 2
    uses."""
    sets = eval_sets_for_run(run, n_train_eval, seed, device, n_dev=n_dev_eval)
    return sets, eval_sets_for_run(run, n_hessian, seed, device, splits=("train",))["train"]


def analyze_run(run, measures: Sequence[str] = MEASURES, *, n_train_eval: int | None = DEFAULT_N_EVAL,
                n_dev_eval: int | None = DEFAULT_N_EVAL, alphas: Sequence[float] = DEFAULT_ALPHAS,
                views: Sequence[str] = ("theta1",), orders: Sequence[str] = RESTORE_ORDERS,
                n_hessian: int = DEFAULT_N_HESSIAN, lanczos_steps: int = DEFAULT_LAYER_LANCZOS,
                cka_tokens: int = DEFAULT_CKA_TOKENS, seed: int = 0, curve_sets: Sequence[str] = ("train", "dev"),
                precision: str = "auto", device: str = "auto", progress: bool | None = None,
                force: bool = False) -> LayerReport:
    """All layer measures of a finished run, each cached in ``<cache>/layers``.

    Every size left out is the default profile's (``curve_n_eval``, ``layer_alphas``,
    ``hessian_n_eval``, ``layer_hessian_steps``, ``cka_tokens``), the values the book passes.

    Args:
        run: a :class:`~bertscape.runs.train.RunResult` (pre-trained or from scratch: the same
            measures give the contrast).
        measures: which of ``change``, ``curves``, ``restore``, ``curvature``, ``cka``.
        n_train_eval: training sentences (seeded, stratified subset) on which the training loss
            of curves and restores is measured; ``None`` = the whole training subset. 512
            sentences cost ~1.2 s an evaluation on 2 CPU cores.
        n_dev_eval: dev sentences (``None`` or more than the run has = all of the run's dev set).
        alphas: α grid of the per-layer curves (see :data:`DEFAULT_ALPHAS`).
        views: ``theta1`` (others at θ1, the default) and/or ``theta0`` (others at θ0). The default
            is one view because every view costs G × (len(alphas) − 1) evaluations of both sets
            (~100 s for MiniLM on 2 CPU cores); add ``theta0`` on a GPU or with time to spare.
        orders: restore orders (see :func:`restore_sets`).
        n_hessian: training sentences for the per-group Hessian: a stratified, seeded sample of the
            run's training subset (``landscape.eval_sets_for_run``), the same sentences as the
            whole-model Hessian of ``study.curvature_numbers`` for the same size and seed.
            Every Hessian-vector product costs a forward, a backward and a double backward
            (measured ≈ 5–8× one evaluation of the same sentences); 64 sentences × 8 steps × 9
            groups took 126 s for MiniLM on 2 idle CPU cores and raised the peak memory to 3.45 GB;
            the quick profile uses 32 sentences × 4 steps (34 s, 2.3 GB; benchmarks/RESULTS.md).
        lanczos_steps: Lanczos steps per group (see :func:`layer_curvature`; Lanczos settles in
            far fewer steps than the power iteration an earlier version also offered: after 2 power
            steps its estimates still moved by ~100 % on the quick run).
        cka_tokens: token budget of :func:`layer_cka`.
        curve_sets: which evaluation sets the per-layer curves are evaluated on (``train`` and/or
            ``dev``; each costs G × (len(alphas) − 1) evaluations).
        seed: seeds the evaluation subsets, the CKA token sample and the power-iteration start.
        precision: evaluation precision for curves and restores (``auto``: bf16 on GPU, fp32 on
            CPU). Hessian products and CKA features are always fp32.
        device: ``auto``, ``cpu``, ``cuda`` …
        progress: progress bars (default: on unless ``$BERTSCAPE_PROGRESS=0``).
        force: recompute even when a cached result exists.

    Returns:
        A :class:`LayerReport`. Each measure is cached under a key made of the run's
        ``spec.key()`` and the parameters that determine that measure, so changing, say, the α
        grid recomputes only the curves.
    """
    measures, views, a = _check_analysis(measures, views, alphas, orders, curve_sets, precision, n_train_eval,
                                         n_dev_eval, n_hessian, lanczos_steps, cka_tokens)
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    keys = _measure_keys(run, a, views, orders, curve_sets, prec, n_train_eval, n_dev_eval, seed, n_hessian,
                         lanczos_steps, cka_tokens)
    folder = cache.subdir("layers")
    paths = {m: folder / f"{run.spec.key()}-{m}-{cache.stable_hash(keys[m])}.{'nc' if m == 'curves' else 'json'}"
             for m in measures}
    job = _LayerJob(run, dev, prec, progress, seed, n_train_eval, n_dev_eval, n_hessian, lanczos_steps, cka_tokens,
                    list(orders), list(views), a, list(curve_sets))
    report = LayerReport(run.spec.key(), run.spec.label(), job.layers.table(),
                         params={"measures": list(measures), **{k: v for k, v in keys.items() if k in measures}})
    for m in measures:
        t = time.perf_counter()
        if m == "curves":
            report.curves = _cached_curves(paths[m], force, job)
            report.curve_summary = pd.concat({str(v): curve_summary(report.curves.sel(view=v).drop_vars("view"))
                                              for v in report.curves["view"].values}, names=["view"])
        else:
            for k, v in _cached_tables(paths[m], force, lambda m=m: _TABLE_MEASURES[m](job)).items():
                setattr(report, k, v)
        report.seconds[m] = time.perf_counter() - t
    return report


def _check_analysis(measures: Sequence[str] | str, views: Sequence[str] | str, alphas: Sequence[float],
                    orders: Sequence[str], curve_sets: Sequence[str], precision: str, n_train_eval: int | None,
                    n_dev_eval: int | None, n_hessian: int, lanczos_steps: int,
                    cka_tokens: int) -> tuple[list[str], list[str], list[float]]:
    """:func:`analyze_run`'s arguments checked: ``(measures, views, alphas)`` as lists."""
    if isinstance(measures, str):
        measures = [measures]
    bad = [m for m in measures if m not in MEASURES]
    if bad or not measures:
        raise bad_value("measures", list(measures), f"a non-empty list from {MEASURES}")
    if isinstance(views, str):
        views = [views]
    if not views or any(v not in CURVE_VIEWS for v in views):
        raise bad_value("views", list(views), f"a non-empty list from {CURVE_VIEWS}")
    for name, v in (("n_train_eval", n_train_eval), ("n_dev_eval", n_dev_eval)):
        if v is not None:
            check_positive_int(name, v)
    check_positive_int("n_hessian", n_hessian)
    check_positive_int("lanczos_steps", lanczos_steps)
    check_positive_int("cka_tokens", cka_tokens)
    if isinstance(curve_sets, str) or not curve_sets or any(x not in ("train", "dev") for x in curve_sets):
        raise bad_value("curve_sets", curve_sets, "a non-empty list from ('train', 'dev')")
    if precision not in ("auto", "fp32", "bf16"):
        raise bad_value("precision", precision, ("auto", "fp32", "bf16"))
    a = [float(x) for x in _check_alphas(alphas)]
    restore_sets(discover_layers(["encoder.layer.0.x"]), orders)  # validates orders early
    return measures, views, a


def _measure_keys(run, alphas: list[float], views: Sequence[str], orders: Sequence[str], curve_sets: Sequence[str],
                  prec: str, n_train_eval: int | None, n_dev_eval: int | None, seed: int, n_hessian: int,
                  lanczos_steps: int, cka_tokens: int) -> dict[str, dict[str, Any]]:
    """Per measure, what its cached result depends on (hashed into its file name)."""
    base = {"run": run.spec.key(), "code": versions.version("layers")}
    evalkey = {"n_train_eval": n_train_eval, "n_dev_eval": n_dev_eval, "seed": seed}
    return {
        "change": {**base},
        "curves": {**base, **evalkey, "alphas": alphas, "views": list(views), "precision": prec,
                   "sets": list(curve_sets)},
        "restore": {**base, **evalkey, "orders": list(orders), "precision": prec},
        "curvature": {**base, "n_train_eval": n_train_eval, "seed": seed, "n_hessian": n_hessian,
                      "iters": lanczos_steps, "method": "lanczos"},  # "iters": the cached files' key
        "cka": {**base, "n_dev_eval": n_dev_eval, "seed": seed, "tokens": cka_tokens},
    }


class _LayerJob:
    """The settings of one :func:`analyze_run` call and what its measures share, built on first use:
    θ0 and θ1, the model at θ1 on the device, the evaluation sets and the Hessian sample
    (:func:`_run_evalsets`). Nothing is loaded when every measure is read from the cache (a run imported
    from a results bundle without its weights still shows its layer report)."""

    def __init__(self, run, dev: torch.device, prec: str,
                 progress: bool | None, seed: int, n_train_eval: int | None, n_dev_eval: int | None, n_hessian: int,
                 lanczos_steps: int, cka_tokens: int, orders: list[str], views: list[str], alphas: list[float],
                 curve_sets: list[str]) -> None:
        self.run, self.dev = run, dev
        self._theta: dict[str, ParamDict] = {}
        self.prec, self.progress, self.seed = prec, progress, seed
        self.n_train_eval, self.n_dev_eval, self.n_hessian = n_train_eval, n_dev_eval, n_hessian
        self.lanczos_steps, self.cka_tokens, self.orders = lanczos_steps, cka_tokens, orders
        self.views, self.alphas, self.curve_sets = views, alphas, curve_sets
        self.layers = discover_layers(run.param_sizes())
        self._model: torch.nn.Module | None = None
        self._evalsets: dict[str, EvalSet] | None = None
        self._hessian_set: EvalSet | None = None

    @property
    def theta0(self) -> ParamDict:
        if "0" not in self._theta:
            self._theta["0"] = self.run.theta0()
        return self._theta["0"]

    @property
    def theta1(self) -> ParamDict:
        if "1" not in self._theta:
            self._theta["1"] = self.run.theta1()
        return self._theta["1"]

    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = self.run.model("theta1", device=str(self.dev))
        return self._model

    def evalsets(self) -> dict[str, EvalSet]:
        if self._evalsets is None:
            self._evalsets, self._hessian_set = _run_evalsets(self.run, self.n_train_eval, self.n_dev_eval,
                                                              self.seed, self.dev, self.n_hessian)
        return self._evalsets

    def hessian_set(self) -> EvalSet:
        self.evalsets()
        return self._hessian_set


def _change_tables(job: _LayerJob) -> dict[str, pd.DataFrame]:
    return {"change": relative_change(job.theta0, job.theta1, job.layers),
            "change_sub": relative_change(job.theta0, job.theta1, job.layers, by="submodule")}


def _restore_tables(job: _LayerJob) -> dict[str, pd.DataFrame]:
    return {"restore": restore_layers(job.model(), job.theta0, job.theta1, job.evalsets(), job.orders, job.layers,
                                      job.prec, job.progress)}


def _curvature_tables(job: _LayerJob) -> dict[str, pd.DataFrame]:
    hs = job.hessian_set()
    mdl = job.model()
    load_state(mdl, job.theta1)
    return {"curvature": layer_curvature(mdl, hs, layers=job.layers, lanczos_steps=job.lanczos_steps, seed=job.seed,
                                         progress=job.progress)}


def _cka_tables(job: _LayerJob) -> dict[str, pd.DataFrame]:
    return {"cka": layer_cka(job.model(), job.theta0, job.theta1, job.evalsets()["dev"], job.cka_tokens, job.seed,
                             job.layers, progress=job.progress)}


#: The measures stored as tables (JSON), each computed by one function of the job.
_TABLE_MEASURES = {"change": _change_tables, "restore": _restore_tables, "curvature": _curvature_tables,
                   "cka": _cka_tables}


def _curves_dataset(job: _LayerJob) -> xr.Dataset:
    """The per-layer curves of every view, one dataset (dims view, group, alpha)."""
    sets = {k: es for k, es in job.evalsets().items() if k in job.curve_sets}
    parts = [layer_curves(job.model(), job.theta0, job.theta1, sets, job.alphas, others=v, layers=job.layers,
                          precision=job.prec, progress=job.progress).expand_dims(view=[v]) for v in job.views]
    ds = xr.concat(parts, dim="view", combine_attrs="drop")
    ds.attrs.update({"views": ",".join(job.views), "precision": job.prec, "run_key": job.run.spec.key(),
                     "description": "θ(α) = (view: θ1 or θ0) with one group set to θ0_l + α·δ1_l"})
    if "view" in ds["layer_index"].dims:
        ds["layer_index"] = ds["layer_index"].isel(view=0, drop=True)
    return ds


def _cached_curves(path: Path, force: bool, job: _LayerJob) -> xr.Dataset:
    """The curves stored at ``path``, else computed (:func:`_curves_dataset`) and stored."""
    ds = None if force else cache.read_nc(path)
    if ds is None:
        ds = _curves_dataset(job)
        cache.write_nc(ds, path)
    return ds


def _cached_tables(path: Path, force: bool, compute: Any) -> dict[str, pd.DataFrame]:
    """The tables stored at ``path`` (JSON), else ``compute()``'s, stored and read back in the form
    of a cache hit."""
    stored = None if force else cache.read_json(path)
    tables = None
    if isinstance(stored, dict):
        tables = {k: cache.frame_from_json(v) for k, v in stored.items()}
        if any(v is None for v in tables.values()):
            tables = None
    if tables is None:
        tables = compute()
        cache.write_json(path, {k: cache.frame_to_json(v) for k, v in tables.items()})
        tables = {k: cache.frame_from_json(cache.frame_to_json(v)) for k, v in tables.items()}  # same form as a cache hit
    return tables
