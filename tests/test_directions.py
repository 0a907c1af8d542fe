"""Directions: filter normalisation, 1-D policies, Gram–Schmidt, PCA of a trajectory, storage."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bertscape.base.errors import BertscapeError
from bertscape.geometry import directions as D


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path))
    monkeypatch.setenv("BERTSCAPE_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def reference() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ref = {
        "bert.embeddings.word_embeddings.weight": torch.randn(10, 6, generator=g),
        "bert.encoder.layer.0.attention.self.query.weight": torch.randn(6, 6, generator=g) * 3,
        "bert.encoder.layer.0.attention.self.query.bias": torch.randn(6, generator=g),
        "bert.encoder.layer.0.output.LayerNorm.weight": torch.randn(6, generator=g) * 0.1,
        "classifier.weight": torch.randn(2, 6, generator=g),
        "conv.weight": torch.randn(4, 2, 3, generator=g),
    }
    ref["bert.embeddings.word_embeddings.weight"][3] = 0.0  # a token fine-tuning never moved
    return ref


def test_filter_rows_take_the_reference_row_norms():
    ref = reference()
    d = D.random_direction(ref, seed=1)
    for k, r in ref.items():
        if r.dim() >= 2:
            got = d[k].reshape(r.shape[0], -1).norm(dim=1)
            want = r.reshape(r.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert torch.all(d["bert.embeddings.word_embeddings.weight"][3] == 0)
    # a random direction is not the reference: rows point elsewhere
    assert abs(D.cosine(d, ref)) < 0.5


@pytest.mark.parametrize("policy", ["filter", "layer"])
def test_one_d_policies(policy):
    ref = reference()
    whole = D.random_direction(ref, seed=2, policy=policy, bias_policy="whole")
    zero = D.random_direction(ref, seed=2, policy=policy, bias_policy="zero")
    for k, r in ref.items():
        if r.dim() == 1:
            assert float(whole[k].norm()) == pytest.approx(float(r.norm()), rel=1e-5)
            assert not torch.allclose(whole[k] / whole[k].norm(), r / r.norm())
            assert torch.all(zero[k] == 0)
        else:
            torch.testing.assert_close(whole[k], zero[k])  # 1-D policy leaves matrices alone
    if policy == "layer":
        for k, r in ref.items():
            assert float(whole[k].norm()) == pytest.approx(float(r.norm()), rel=1e-5)


def test_seeded_and_selected():
    ref = reference()
    a, b, c = D.random_direction(ref, 3), D.random_direction(ref, 3), D.random_direction(ref, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    enc = D.random_direction(ref, 3, names="encoder")
    assert sorted(enc) == sorted(k for k in ref if ".encoder." in f".{k}")
    exact = D.random_direction(ref, 3, names=["classifier.weight"])
    assert list(exact) == ["classifier.weight"]
    none = D.random_direction(ref, 3, policy="none")
    assert float(none["classifier.weight"].norm()) != pytest.approx(float(ref["classifier.weight"].norm()), rel=1e-3)


@pytest.mark.parametrize("kw, param", [({"policy": "rows"}, "policy"), ({"bias_policy": "keep"}, "bias_policy"),
                                       ({"seed": -1}, "seed"), ({"names": "decoder"}, "params")])
def test_bad_arguments_are_named(kw, param):
    args = {"seed": 0, **kw}
    with pytest.raises(BertscapeError, match=param):
        D.random_direction(reference(), **args)


def test_orthogonalise():
    ref = reference()
    d2 = D.axpy(D.random_direction(ref, 5), ref, 0.7)  # strongly correlated with ref
    assert D.cosine(d2, ref) > 0.3
    perp = D.orthogonalise(d2, ref)
    assert abs(D.dot(perp, ref)) < 1e-6 * D.norm(perp) * D.norm(ref)
    removed = D.sub(d2, perp)
    assert abs(D.cosine(removed, ref)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(BertscapeError, match="d1"):
        D.orthogonalise(d2, {k: torch.zeros_like(v) for k, v in ref.items()})


@pytest.mark.parametrize("center", [True, False])
def test_pca_matches_sklearn(center):
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(7)
    base = reference()
    # a bent path: mostly along u, then along w, plus noise
    u = D.random_direction(base, 11, policy="none")
    w = D.random_direction(base, 12, policy="none")
    pts = []
    for t in np.linspace(0, 1, 8):
        p = D.axpy(D.axpy(base, u, float(t)), w, float(t ** 2) * 0.5)
        pts.append({k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in p.items()})
    dirs, evr = D.pca_directions(pts, n=2, origin="theta1", center=center)
    names = list(base)
    x = np.stack([np.concatenate([(p[k] - pts[-1][k]).reshape(-1).double().numpy() for k in names]) for p in pts])
    if center:
        sk = PCA(n_components=2, svd_solver="full").fit(x)
        np.testing.assert_allclose(evr, sk.explained_variance_ratio_, rtol=1e-6)
        comps = sk.components_
    else:
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        np.testing.assert_allclose(evr, (s ** 2 / (s ** 2).sum())[:2], rtol=1e-6)
        comps = vt[:2]
    for j in range(2):
        mine = np.concatenate([dirs[j][k].reshape(-1).double().numpy() for k in names])
        assert np.linalg.norm(mine) == pytest.approx(1.0, abs=1e-5)
        assert abs(mine @ comps[j]) == pytest.approx(1.0, abs=1e-5)
        # sign convention: θ0 − θ1 has a non-negative coordinate
        assert D.dot(D.sub(pts[0], pts[-1]), dirs[j]) >= 0
    assert evr[0] > 0.8


def test_pca_bad_n():
    pts = [reference(), reference()]
    with pytest.raises(BertscapeError, match="n="):
        D.pca_directions(pts, n=2)


def test_cached_direction_roundtrip_and_corruption(tmp_path):
    ref = reference()
    calls = []

    def make():
        calls.append(1)
        return D.random_direction(ref, 1)

    key = D.direction_key("run", "random", 1, "filter", "whole", "all")
    assert key != D.direction_key("run", "random", 2, "filter", "whole", "all")
    assert key != D.direction_key("run", "random", 1, "filter", "zero", "all")
    assert key != D.direction_key("run", "random", 1, "filter", "whole", "encoder")
    d1, h1 = D.cached_direction(key, make)
    d2, h2 = D.cached_direction(key, make)
    assert len(calls) == 1 and h1 == h2 == D.content_hash(d1)
    assert all(torch.equal(d1[k], d2[k]) for k in d1)
    from bertscape.base import cache

    path = cache.subdir("directions") / f"{key}.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # flip bits in the tensor data: content hash no longer matches
    path.write_bytes(bytes(raw))
    d3, h3 = D.cached_direction(key, make)
    assert len(calls) == 2 and h3 == h1
