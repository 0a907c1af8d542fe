"""Evaluation of a model on a prepared set: the mean loss, its standard error, the per-sentence arrays and
the metrics agree with a plain computation over the same sentences; the model's mode is restored; bad
evaluation sets are refused by name."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import _toy_encoded

from bertscape.base.errors import BertscapeError
from bertscape.runs import evaluate as ev


def _plain(model: torch.nn.Module, es: ev.EvalSet) -> tuple[np.ndarray, np.ndarray]:
    """Per-sentence cross-entropy and logits, one sentence at a time (no padding at all)."""
    losses, logits = [], []
    with torch.no_grad():
        for batch in es.batches:
            for i in range(len(batch["labels"])):
                keep = batch["attention_mask"][i].bool()
                one = {k: batch[k][i][keep][None] for k in ("input_ids", "attention_mask", "token_type_ids")}
                out = model(**one).logits.float()
                logits.append(out[0].numpy())
                losses.append(float(torch.nn.functional.cross_entropy(out, batch["labels"][i][None])))
    return np.array(losses), np.array(logits)


def test_loss_and_metrics_match_a_plain_computation(toy_model, toy_evalsets) -> None:
    es = toy_evalsets["dev"]
    got = ev.evaluate(toy_model, es, precision="fp32", per_sample=True)
    losses, logits = _plain(toy_model, es)
    np.testing.assert_allclose(got["sample_loss"], losses, rtol=1e-4, atol=1e-6)
    assert got["loss"] == pytest.approx(losses.mean(), rel=1e-5)
    assert got["loss_se"] == pytest.approx(losses.std(ddof=1) / np.sqrt(len(losses)), rel=1e-5)
    np.testing.assert_array_equal(got["sample_pred"], logits.argmax(-1))
    assert got["accuracy"] == pytest.approx(float((logits.argmax(-1) == es.labels).mean()))
    assert len(got["sample_loss"]) == len(es) == 24


def test_evaluation_restores_training_mode(toy_model, toy_evalsets) -> None:
    toy_model.train()
    ev.evaluate(toy_model, toy_evalsets["train"], precision="fp32")
    assert toy_model.training
    toy_model.eval()
    a = ev.evaluate(toy_model, toy_evalsets["train"], precision="fp32")["loss"]
    b = ev.evaluate(toy_model, toy_evalsets["train"], precision="fp32")["loss"]
    assert a == b, "evaluation runs without dropout, so it is repeatable"


def test_evaluate_sets_names_every_result_by_its_set(toy_model, toy_evalsets) -> None:
    out = ev.evaluate_sets(toy_model, toy_evalsets, precision="fp32")
    for name in ("train", "dev"):
        assert out[f"{name}_error"] == pytest.approx(1 - out[f"{name}_accuracy"])
        assert out[f"{name}_metric"] == out[f"{name}_accuracy"]
        assert {f"{name}_loss", f"{name}_loss_se", f"{name}_f1"} <= set(out)
    assert out["train_loss"] != out["dev_loss"]


def test_regression_loss_is_the_mean_squared_error() -> None:
    from bertscape.data.tasks import get_task

    task = get_task("movies-reg")
    pred = torch.tensor([[0.5], [-1.0], [2.0]])
    target = torch.tensor([1.0, -1.0, 0.0])
    assert float(ev.loss_fn(task, pred, target)) == pytest.approx((0.25 + 0 + 4) / 3)
    np.testing.assert_allclose(ev.predictions(task, pred.numpy()), [0.5, -1.0, 2.0])


def test_batches_are_sorted_by_length_and_labels_follow_them() -> None:
    enc = _toy_encoded(30, 7)
    es = ev.prepare_eval(enc, batch_size=8)
    widths = [b["input_ids"].shape[1] for b in es.batches]
    assert widths == sorted(widths), "length-sorted batches pad as little as possible"
    assert sorted(es.labels.tolist()) == sorted(enc.labels.tolist())
    assert es.fingerprint != ev.prepare_eval(enc, batch_size=16).fingerprint


@pytest.mark.parametrize("bad, match", [({}, "non-empty dict"), ([1, 2], "non-empty dict"),
                                        ("train", "non-empty dict")])
def test_bad_evalsets_are_refused(bad, match) -> None:
    with pytest.raises(BertscapeError, match=match) as err:
        ev.check_evalsets(bad)
    assert "evalsets" in str(err.value)


def test_evalset_names_must_prefix_result_names(toy_evalsets) -> None:
    with pytest.raises(BertscapeError, match="letters and digits"):
        ev.check_evalsets({"dev set": toy_evalsets["dev"]})
