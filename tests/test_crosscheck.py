"""Cross-check: the project's 1D curve against the reference ``loss-landscapes`` library.

``bertscape.geometry.grids.curve_1d`` evaluates f(α) = L(θ0 + α·(θ1 − θ0)) through its own machinery
(in-place point writer, length-sorted dynamically padded batches, float64 accumulation).
``loss_landscapes.linear_interpolation`` walks the same line with its own parameter arithmetic
on deep copies of two models, and the metric here computes the mean cross-entropy on its own
(one batch padded to the longest sentence, no project code). Both must agree on every α.

Known quirk of loss-landscapes 3.0.6 (``main.linear_interpolation``): it sets
``direction = (end − start) / steps`` and, ``steps`` times, adds the step *before* evaluating, so
``steps=n`` returns f(1/n), f(2/n), …, f(1): no f(0), and the last point is the end model.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import _toy_encoded

from bertscape.geometry import directions as D
from bertscape.geometry import grids
from bertscape.runs.evaluate import prepare_eval
from bertscape.runs.models import load_state, trainable_state

ll = pytest.importorskip("loss_landscapes")
from loss_landscapes.metrics import Metric  # noqa: E402

STEPS = 10
N_SENTENCES = 32
TOL = 1e-5


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BERTSCAPE_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared machine
    yield
    torch.set_num_threads(threads)


class MeanCrossEntropy(Metric):
    """Mean cross-entropy of a classifier over a fixed set of sentences, in eval mode.

    Built straight from the ragged token ids: one batch padded to the longest sentence, with
    its attention mask and token_type_ids (independent of the project's batching code).
    """

    def __init__(self, enc):
        super().__init__()
        width = int(max(len(x) for x in enc.input_ids))
        n = len(enc.input_ids)
        ids = torch.zeros((n, width), dtype=torch.long)
        tts = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, (x, t) in enumerate(zip(enc.input_ids, enc.token_type_ids)):
            ids[i, :len(x)] = torch.as_tensor(x.astype(np.int64))
            tts[i, :len(t)] = torch.as_tensor(t.astype(np.int64))
            mask[i, :len(x)] = 1
        self.inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": tts}
        self.labels = torch.as_tensor(np.asarray(enc.labels, dtype=np.int64))

    def __call__(self, model_wrapper) -> float:
        model_wrapper.eval()
        (model,) = model_wrapper.get_modules()
        with torch.no_grad():
            logits = model(**self.inputs).logits
        return float(torch.nn.functional.cross_entropy(logits.double(), self.labels, reduction="mean"))


def _trained_state(model, evalset, steps: int = 40, lr: float = 0.01):
    """θ1: a few seeded Adam steps from the model's point on ``evalset`` (eval mode: deterministic).

    The toy labels are random, so the line θ0 → θ1 goes from ≈ ln 2 to a memorised set: a curve
    that varies by orders of magnitude more than the tolerance.
    """
    net = copy.deepcopy(model).eval()
    torch.manual_seed(11)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for i in range(steps):
        batch = evalset.batches[i % len(evalset.batches)]
        opt.zero_grad()
        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"]).logits
        torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
        opt.step()
    return trainable_state(net)


def test_curve_1d_matches_loss_landscapes_linear_interpolation(toy_model):
    enc = _toy_encoded(N_SENTENCES, seed=7)
    evalsets = {"train": prepare_eval(enc, batch_size=8)}  # several length-sorted batches
    theta0 = trainable_state(toy_model)
    theta1 = _trained_state(toy_model, evalsets["train"])

    # (a) the project: α = 0, 1/n, …, 1 on the line θ0 + α·(θ1 − θ0)
    alphas = np.arange(STEPS + 1) / STEPS
    ds = grids.curve_1d(toy_model, theta0, D.sub(theta1, theta0), alphas, evalsets, precision="fp32",
                    progress=False, store=None)
    ours = ds["train_loss"].values.astype(np.float64)
    np.testing.assert_allclose(ds["alpha"].values, alphas)
    assert bool(ds["done"].all())

    # (b) the reference, on deep copies holding θ0 and θ1
    model_start = copy.deepcopy(toy_model)
    load_state(model_start, theta0)
    model_end = copy.deepcopy(toy_model)
    load_state(model_end, theta1)
    metric = MeanCrossEntropy(enc)
    ref = ll.linear_interpolation(model_start, model_end, metric, steps=STEPS, deepcopy_model=True)
    assert ref.shape == (STEPS,)
    ref0 = ll.point(copy.deepcopy(model_start), metric)  # f(0), which linear_interpolation omits

    # the curve must vary far more than the tolerance, or agreement would prove nothing
    assert np.ptp(ours) > 1e4 * TOL and np.min(np.abs(np.diff(ours))) > 10 * TOL, ours

    # the reference's k-th value is f((k+1)/n): it aligns with ours[1:]
    np.testing.assert_allclose(ref, ours[1:], rtol=0, atol=TOL)
    assert abs(ref0 - ours[0]) <= TOL
    # the quirk is real: read as f(0), …, f((n−1)/n) the reference would disagree
    assert np.min(np.abs(ref - ours[:-1])) > 10 * TOL
    # linear_interpolation left its inputs alone (deepcopy_model=True)
    assert all(torch.equal(p.detach(), theta0[n]) for n, p in model_start.named_parameters())
