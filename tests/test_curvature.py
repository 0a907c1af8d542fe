"""Curvature: closed-form quadratic losses, and hessian-eigenthings against a dense Hessian."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bertscape.base.errors import BertscapeError
from bertscape.data import tasks as data
from bertscape.geometry import curvature as C
from bertscape.runs.evaluate import prepare_eval


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path))
    monkeypatch.setenv("BERTSCAPE_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Linear(torch.nn.Module):
    """ŷ = w·x + b with x read from the token ids: MSE loss is exactly quadratic in (w, b)."""

    def __init__(self, d: int):
        super().__init__()
        self.lin = torch.nn.Linear(d, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return SimpleNamespace(logits=self.lin(input_ids.float()))


def regression_set(n: int = 30, d: int = 4, seed: int = 0, batch_size: int = 8):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(n, d))
    y = rng.normal(size=n)
    enc = data.Encoded(task=data.get_task("movies-reg"), input_ids=[r.astype(np.int32) for r in x],
                       token_type_ids=[np.zeros(d, np.int8) for _ in range(n)], labels=y, fingerprint=f"reg{seed}")
    # unequal batches (30 = 8 + 8 + 8 + 6): the mean must weight them by size
    return prepare_eval(enc, batch_size=batch_size), np.column_stack([x, np.ones(n)]).astype(np.float64)


def test_quadratic_top_eigenvalues_and_trace_match_closed_form():
    es, a = regression_set()
    model = Linear(4)
    h = 2.0 / len(a) * a.T @ a  # Hessian of mean((Aθ − y)²)
    want = np.sort(np.linalg.eigvalsh(h))[::-1]
    got = C.hessian_top_eigenvalues(model, es, k=2)
    np.testing.assert_allclose(got, want[:2], rtol=1e-4)
    # Hutch++ with ≥ 3 × size probes spans the whole space: exact
    assert C.hessian_trace(model, es, n_samples=15, method="hutch++") == pytest.approx(np.trace(h), rel=1e-4)
    # Hutchinson: unbiased, within a few standard errors
    est, se = C.hessian_trace(model, es, n_samples=200, seed=1, return_stderr=True)
    assert abs(est - np.trace(h)) < 4 * se + 1e-6 and se < 0.2 * np.trace(h)
    # restricted to the bias: the 1 × 1 block 2/N·Σ1 = 2
    assert C.hessian_top_eigenvalues(model, es, names=["lin.bias"])[0] == pytest.approx(2.0, rel=1e-5)
    assert C.dense_hessian(model, es) == pytest.approx(h, rel=1e-5, abs=1e-6)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    es, a = regression_set()
    model = Linear(4)
    # the bias block alone is 1 × 1 (diagonal): every Rademacher probe gives vᵀHv = 2 exactly
    assert C.hessian_trace(model, es, n_samples=3, names=["lin.bias"]) == pytest.approx(2.0, rel=1e-6)


def test_matches_a_dense_hessian_on_a_tiny_bert(toy_model, toy_evalsets):
    es = toy_evalsets["train"]
    names = ["classifier.weight", "classifier.bias", "bert.encoder.layer.1.output.LayerNorm.weight"]
    h = C.dense_hessian(toy_model, es, names)
    assert h.shape == (50, 50) and np.allclose(h, h.T, atol=1e-5)
    ev = np.sort(np.linalg.eigvalsh(h))[::-1]
    got = C.hessian_top_eigenvalues(toy_model, es, k=2, names=names, lanczos_steps=50)
    np.testing.assert_allclose(got, ev[:2], rtol=1e-3, atol=1e-6)
    # Hessian-vector products of the library's operator equal the dense matrix's
    with C.second_order_mode(toy_model):
        op = C.hessian_operator(toy_model, es, names)
        v = torch.randn(op.size, generator=torch.Generator().manual_seed(0))
        hv = op.matvec(v).detach().double().numpy()
    np.testing.assert_allclose(hv, h @ v.double().numpy(), rtol=1e-3, atol=1e-5)
    tr = C.hessian_trace(toy_model, es, n_samples=150, names=names, method="hutch++")
    assert tr == pytest.approx(np.trace(h), rel=1e-3, abs=1e-5)
    assert not toy_model.training  # left in the mode it came in


def test_curvature_by_group(toy_model, toy_evalsets):
    es = toy_evalsets["train"]
    groups = {"all": "all", "head": "head", "ln": [r"LayerNorm"]}
    df = C.curvature_by_group(toy_model, es, groups, n_samples=6, lanczos_steps=15)
    assert list(df["group"]) == ["all", "head", "ln"]
    n_all = sum(p.numel() for p in toy_model.parameters())
    assert df.loc[0, "n_params"] == n_all
    # Cauchy interlacing: a principal sub-block's top eigenvalue is at most the whole Hessian's
    top = df.set_index("group")["top_eigenvalue"]
    assert top["head"] <= top["all"] * (1 + 1e-3) and top["ln"] <= top["all"] * (1 + 1e-3)
    assert np.all(np.isfinite(df["trace"]))
    with pytest.raises(BertscapeError, match="params"):
        C.curvature_by_group(toy_model, es, {"x": "decoder"})
    with pytest.raises(BertscapeError, match="k="):
        C.hessian_top_eigenvalues(toy_model, es, k=0)


def _single_batches(n: int = 32, d: int = 4, n_batches: int = 4, seed: int = 0):
    """The regression set of ``n`` rows split into ``n_batches`` independent random batches (one EvalSet
    each), with the design matrix of every batch."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(n, d))
    y = rng.normal(size=n)
    enc = data.Encoded(task=data.get_task("movies-reg"), input_ids=[r.astype(np.int32) for r in x],
                       token_type_ids=[np.zeros(d, np.int8) for _ in range(n)], labels=y, fingerprint=f"b{seed}")
    a = np.column_stack([x, np.ones(n)]).astype(np.float64)
    parts = []
    batches = C.independent_batches(lambda pos: (prepare_eval(enc.select(pos), batch_size=len(pos)), pos), n, n_batches)
    for es, pos in batches:
        parts.append((es, a[pos]))
    return parts, a


def test_per_batch_quadratic_forms_match_the_closed_form_and_average_to_the_whole():
    parts, a = _single_batches()
    model = Linear(4)
    u = {"lin.weight": torch.tensor([[1.0, -2.0, 0.5, 0.0]]), "lin.bias": torch.tensor([0.3])}
    uv = np.array([1.0, -2.0, 0.5, 0.0, 0.3])
    q = C.batch_quadratic_forms(model, [es for es, _ in parts], {"u": u})["u"]
    want = [2.0 / len(ab) * float(np.sum((ab @ uv) ** 2)) for _, ab in parts]  # uᵀ(2/n AᵀA)u per batch
    np.testing.assert_allclose(q, want, rtol=1e-5)
    assert np.mean(q) == pytest.approx(2.0 / len(a) * float(np.sum((a @ uv) ** 2)), rel=1e-5)
    assert np.std(q) > 0  # batches of different sentences curve differently: a real sampling error
    with pytest.raises(BertscapeError, match="n_batches=5"):
        C.independent_batches(lambda pos: pos, 32, 5)


def test_curvature_at_gives_sampling_errors_of_the_eigenvalue_and_trace():
    parts, a = _single_batches(n=40, n_batches=4, seed=1)
    batches = [es for es, _ in parts]
    model = Linear(4)
    h = 2.0 / len(a) * a.T @ a
    res = C.curvature_at(model, batches, {"bias": {"lin.bias": torch.ones(1)}}, lanczos_steps=5, trace_probes=40)
    assert res["top_eigenvalue"] == pytest.approx(np.linalg.eigvalsh(h).max(), rel=1e-4)
    # vᵀH_b v over the batches averages to the eigenvalue of the whole (H is the mean of the H_b)
    assert np.mean(res["top_batches"]) == pytest.approx(res["top_eigenvalue"], rel=1e-4)
    assert np.std(res["top_batches"]) > 0
    assert res["directional"]["bias"]["value"] == pytest.approx(2.0, rel=1e-5)  # ∂²/∂b² of the mean squared error
    assert res["trace"] == pytest.approx(np.trace(h), rel=0.15) and np.std(res["trace_batches"]) > 0
