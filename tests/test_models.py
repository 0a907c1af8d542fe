"""Models: the embedded default, pre-trained vs scratch inits, the head, offline failures."""
from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file

from bertscape.base.errors import BertscapeError
from bertscape.runs import models


def test_embedded_model_is_minilm():
    net = models.build_model("embedded", "pretrained", 2, seed=0)
    cfg = net.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (6, 384, 30522)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(22.7e6, rel=0.01)
    tok = models.load_tokenizer("embedded")
    assert tok.tokenize("Hello World") == ["hello", "world"]


def test_pretrained_body_equals_the_shipped_weights():
    net = models.build_model("embedded", "pretrained", 2, seed=3)
    shipped = load_file(models.embedded_model_path() / "model.safetensors")
    state = models.trainable_state(net)
    body = [n for n in state if n.startswith("bert.")]
    assert len(body) == 103  # the shipped file also holds the position_ids buffer
    for n in body:
        assert torch.equal(state[n], shipped[n.removeprefix("bert.")].float()), n


def test_head_is_shared_by_both_inits_and_seeded():
    pt = models.trainable_state(models.build_model("embedded", "pretrained", 2, seed=5))
    ri = models.trainable_state(models.build_model("embedded", "scratch", 2, seed=5))
    other = models.trainable_state(models.build_model("embedded", "pretrained", 2, seed=6))
    assert torch.equal(pt["classifier.weight"], ri["classifier.weight"])
    assert not torch.equal(pt["classifier.weight"], other["classifier.weight"])
    assert not torch.equal(pt["bert.encoder.layer.0.attention.self.query.weight"],
                           ri["bert.encoder.layer.0.attention.self.query.weight"])


def test_scratch_is_seeded(tiny_bert):
    a = models.trainable_state(models.build_model(tiny_bert, "scratch", 2, seed=1))
    b = models.trainable_state(models.build_model(tiny_bert, "scratch", 2, seed=1))
    c = models.trainable_state(models.build_model(tiny_bert, "scratch", 2, seed=2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["bert.encoder.layer.1.output.dense.weight"], c["bert.encoder.layer.1.output.dense.weight"])


def test_hub_id_offline_fails_fast_naming_the_default():
    models.resolve_model.cache_clear()
    start = time.perf_counter()
    with pytest.raises(BertscapeError, match=r"model='bert-base-uncased'.*model='embedded'"):
        models.build_model("bert-base-uncased", "pretrained", 2, seed=0)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("bad,match", [("./no/such/folder", "existing local folder"), ("", "model=''")])
def test_bad_model(bad, match):
    with pytest.raises(BertscapeError, match=match):
        models.resolve_model(bad)


def test_folder_without_config(tmp_path):
    with pytest.raises(BertscapeError, match="config.json"):
        models.resolve_model(str(tmp_path))


def test_bad_init_and_device():
    with pytest.raises(BertscapeError, match=r"init='random'.*'pretrained', 'scratch'"):
        models.build_model("embedded", "random", 2, seed=0)
    with pytest.raises(BertscapeError, match="device='tpu'"):
        models.resolve_device("tpu")
