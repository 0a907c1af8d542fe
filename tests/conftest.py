"""Shared test set-up: offline hub, quiet progress bars, an isolated cache, a tiny local BERT."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["BERTSCAPE_PROGRESS"] = "0"
# The vaderSentiment sdist is fetched once per machine into the user's data cache (as for a user);
# everything else the tests compute goes to a fresh cache per session.
os.environ.setdefault("BERTSCAPE_DATA", str(Path.home() / ".cache" / "bertscape" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bertscape-cache")
    os.environ["BERTSCAPE_CACHE"] = str(path)
    return path


@pytest.fixture()
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of this test alone."""
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE files expected at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local folder with a tiny random BERT (2 layers, hidden 32) and the embedded tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from bertscape.runs.models import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = load_tokenizer("embedded")
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(123)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# ----------------------------------------------------------------------------- landscape fixtures

def _toy_encoded(n: int, seed: int, vocab: int = 100):
    import numpy as np

    from bertscape.data import tasks as data

    rng = np.random.default_rng(seed)
    ids, tts = [], []
    for _ in range(n):
        length = int(rng.integers(3, 10))
        ids.append(np.concatenate([[1], rng.integers(5, vocab, length - 2), [2]]).astype(np.int32))
        tts.append(np.zeros(length, dtype=np.int8))
    labels = rng.integers(0, 2, n).astype(np.int64)
    return data.Encoded(task=data.get_task("movies"), input_ids=ids, token_type_ids=tts, labels=labels,
                        fingerprint=f"toy{seed}-{n}")


@pytest.fixture()
def toy_model():
    """A tiny random BERT classifier (vocab 100, hidden 16, 2 layers) in eval mode."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture()
def toy_evalsets():
    """Hand-made train/dev EvalSets (24 sentences each, batches of 8)."""
    from bertscape.runs.evaluate import prepare_eval

    return {"train": prepare_eval(_toy_encoded(24, 1), batch_size=8),
            "dev": prepare_eval(_toy_encoded(24, 2), batch_size=8)}


@pytest.fixture()
def toy_points(toy_model):
    """(θ0, θ1) for ``toy_model``: θ1 = θ0 + seeded noise scaled to each tensor's spread."""
    import torch

    from bertscape.runs.models import trainable_state

    theta0 = trainable_state(toy_model)
    gen = torch.Generator().manual_seed(5)
    theta1 = {k: v + (0.3 * float(v.std() if v.numel() > 1 else 0) + 0.02) * torch.randn(v.shape, generator=gen)
              for k, v in theta0.items()}
    return theta0, theta1
