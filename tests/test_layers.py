"""Layer analysis (bertscape.geometry.layers) on tiny random BERTs and hand-made data: offline and fast."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bertscape.base.errors import BertscapeError
from bertscape.data import tasks as data
from bertscape.geometry import layers
from bertscape.runs.evaluate import EvalSet, evaluate, prepare_eval
from bertscape.runs.models import load_state, trainable_state


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread (and do not stall when other jobs share the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path))
    monkeypatch.setenv("BERTSCAPE_PROGRESS", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_bert(n_layers: int = 3, hidden: int = 16, seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=n_layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(cfg).eval()


def encoded(n: int, seed: int) -> data.Encoded:
    rng = np.random.default_rng(seed)
    ids, tts = [], []
    for _ in range(n):
        length = int(rng.integers(3, 12))
        ids.append(np.concatenate([[101 % 100], rng.integers(5, 100, length - 2), [2]]).astype(np.int32))
        tts.append(np.zeros(length, dtype=np.int8))
    labels = rng.integers(0, 2, n).astype(np.int64)
    return data.Encoded(task=data.get_task("movies"), input_ids=ids, token_type_ids=tts, labels=labels,
                        fingerprint=f"x{seed}-{n}")


def evalsets(n: int = 40) -> dict[str, EvalSet]:
    return {"train": prepare_eval(encoded(n, 1), batch_size=16), "dev": prepare_eval(encoded(n, 2), batch_size=16)}


def perturbed(theta0: dict, scale: float = 0.5, seed: int = 3, skip: tuple[str, ...] = ()) -> dict:
    """θ1 = θ0 + noise (relative to each tensor's spread), leaving names containing ``skip`` untouched."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in theta0.items():
        if any(s in k for s in skip):
            out[k] = v.clone()
        else:
            out[k] = v + scale * (float(v.std()) + 0.05) * torch.randn(v.shape, generator=gen)
    return out


@pytest.fixture(scope="module")
def setup():
    model = tiny_bert()
    theta0 = trainable_state(model)
    theta1 = perturbed(theta0)
    return model, theta0, theta1


def metrics_at(model, state, sets):
    load_state(model, state)
    return {f"{n}_{k}": v for n, es in sets.items() for k, v in evaluate(model, es, "fp32").items()}


# ----------------------------------------------------------------------------- discovery

@pytest.mark.parametrize("n_layers", [12, 24])
def test_discovery_for_bert_base_and_large_depths(n_layers):
    model = tiny_bert(n_layers=n_layers)
    lm = layers.discover_layers(model)
    assert lm.n_layers == n_layers
    assert list(lm.groups) == ["embeddings"] + [f"layer {i}" for i in range(n_layers)] + ["pooler", "head"]
    assert sorted(lm.names) == sorted(n for n, _ in model.named_parameters())
    subs = lm.submodules[f"layer {n_layers - 1}"]
    assert list(subs) == ["attention", "feed-forward", "LayerNorm"]
    assert all(".attention." in n and "LayerNorm" not in n for n in subs["attention"])
    assert all(".intermediate." in n or (".output.dense." in n and ".attention." not in n) for n in subs["feed-forward"])
    assert len(subs["LayerNorm"]) == 4  # attention.output.LayerNorm and output.LayerNorm, weight + bias
    assert lm.groups["head"] == ("classifier.weight", "classifier.bias")
    table = lm.table()
    assert table["numel"].sum() == sum(p.numel() for p in model.parameters())
    assert lm.layer_index("embeddings") == -1 and lm.layer_index("head") == n_layers + 1
    # names alone work too, in any order
    again = layers.discover_layers(reversed([n for n, _ in model.named_parameters()]))
    assert list(again.groups) == list(lm.groups)


def test_discovery_on_embedded_model():
    from bertscape.runs.models import build_model

    model = build_model("embedded", "pretrained", 2, 0)
    lm = layers.discover_layers(model)
    assert lm.n_layers == 6
    assert list(lm.groups) == ["embeddings"] + [f"layer {i}" for i in range(6)] + ["pooler", "head"]
    assert set(lm.submodules["embeddings"]) == {"embeddings", "LayerNorm"}


def test_discovery_rejects_non_bert_names():
    with pytest.raises(BertscapeError, match="encoder.layer"):
        layers.discover_layers(["conv1.weight", "fc.bias"])


# ----------------------------------------------------------------------------- relative change

def test_relative_change_zero_for_untouched_layer_and_exact_elsewhere(setup):
    model, theta0, _ = setup
    theta1 = perturbed(theta0, skip=("encoder.layer.1.",))
    df = layers.relative_change(theta0, theta1)
    assert list(df.index) == ["embeddings", "layer 0", "layer 1", "layer 2", "pooler", "head"]
    assert df.loc["layer 1", "relative_change"] == 0.0
    assert (df.drop(index="layer 1")["relative_change"] > 0.01).all()
    names = [n for n in theta0 if n.startswith("bert.encoder.layer.0.")]
    d = torch.sqrt(sum(((theta1[n] - theta0[n]).double() ** 2).sum() for n in names))
    n0 = torch.sqrt(sum((theta0[n].double() ** 2).sum() for n in names))
    assert df.loc["layer 0", "relative_change"] == pytest.approx(float(d / n0), rel=1e-9)
    sub = layers.relative_change(theta0, theta1, by="submodule")
    assert (sub.loc["layer 1", "relative_change"] == 0).all()
    assert sub["n_params"].sum() == df["n_params"].sum()


def test_bad_values_are_named():
    lm = layers.discover_layers(["bert.encoder.layer.0.w"])
    with pytest.raises(BertscapeError, match="by='layer'"):
        layers.relative_change({}, {}, lm, by="layer")
    with pytest.raises(BertscapeError, match="orders"):
        layers.restore_sets(lm, ["sideways"])
    with pytest.raises(BertscapeError, match="alphas"):
        layers._check_alphas([1.0])


# ----------------------------------------------------------------------------- curves

def test_layer_curves_endpoints(setup):
    model, theta0, theta1 = setup
    sets = evalsets()
    ds = layers.layer_curves(model, theta0, theta1, sets, alphas=[0.0, 0.5, 1.0, 1.5], precision="fp32")
    assert all(torch.equal(p.detach(), theta1[n]) for n, p in model.named_parameters())  # left at θ1
    at1 = metrics_at(model, theta1, sets)
    assert ds.sizes == {"group": 6, "alpha": 4}
    for var, value in at1.items():  # α = 1 is L(θ1) for every group
        np.testing.assert_allclose(ds[var].sel(alpha=1.0).values, value, rtol=1e-6, atol=1e-7)
    # α = 0 for "layer 1" is θ1 with layer 1 put back to θ0, built independently here
    lm = layers.discover_layers(theta0)
    state = dict(theta1)
    state.update({n: theta0[n] for n in lm.groups["layer 1"]})
    ref = metrics_at(model, state, sets)
    assert ds["train_loss"].sel(group="layer 1", alpha=0.0) == pytest.approx(ref["train_loss"], rel=1e-5)
    assert ds["dev_accuracy"].sel(group="layer 1", alpha=0.0) == pytest.approx(ref["dev_accuracy"])
    # the other view: every group's α = 0 is θ0
    ds0 = layers.layer_curves(model, theta0, theta1, sets, alphas=[0.0, 1.0], others="theta0", precision="fp32")
    at0 = metrics_at(model, theta0, sets)
    np.testing.assert_allclose(ds0["train_loss"].sel(alpha=0.0).values, at0["train_loss"], rtol=1e-6)
    summary = layers.curve_summary(ds)
    assert summary.attrs["h"] == pytest.approx(0.5)
    expected = ds["train_loss"].sel(alpha=0.0).values - ds["train_loss"].sel(alpha=1.0).values
    np.testing.assert_allclose(summary["train_loss_rise"].values, expected)


def test_layer_point_losses_agree_with_the_curves_per_sentence(setup):
    model, theta0, theta1 = setup
    sets = evalsets()
    ds = layers.layer_curves(model, theta0, theta1, sets, alphas=[0.0, 0.5, 1.0, 1.5], precision="fp32")
    enc = [g for g in layers.discover_layers(theta0).encoder_groups]
    pts = layers.layer_point_losses(model, theta0, theta1, sets["train"], [0.5, 1.0, 1.5], enc, precision="fp32")
    assert pts.shape == (len(enc), 3, len(sets["train"]))
    assert all(torch.equal(p.detach(), theta1[n]) for n, p in model.named_parameters())  # left at θ1
    for i, g in enumerate(enc):  # the per-sentence means are the curves' training loss
        np.testing.assert_allclose(pts[i].mean(-1), ds["train_loss"].sel(group=g, alpha=[0.5, 1.0, 1.5]).values,
                                   rtol=1e-5)
    assert layers.fd_step([0.0, 0.25, 0.5, 0.75, 1.0, 1.25]) == 0.25
    assert layers.fd_step([0.0, 0.5, 1.0, 1.5, 1.2, 0.8]) == pytest.approx(0.2)
    with pytest.raises(BertscapeError, match="layer_alphas"):
        layers.fd_step([0.0, 1.0, 1.3])


def test_curve_summary_finite_difference_on_a_parabola():
    import xarray as xr

    a = np.array(layers.DEFAULT_ALPHAS)
    vals = np.stack([3.0 * (a - 1.0) ** 2 + 0.2, 0.5 * (a - 1.0) ** 2])  # f'' = 6 and 1
    ds = xr.Dataset({"train_loss": (("group", "alpha"), vals)}, coords={"group": ["layer 0", "layer 1"], "alpha": a})
    s = layers.curve_summary(ds)
    np.testing.assert_allclose(s["train_loss_curvature"].values, [6.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(s["train_loss_rise"].values, [3.0, 0.5])


# ----------------------------------------------------------------------------- restore

def test_restore_endpoints(setup):
    model, theta0, theta1 = setup
    sets = evalsets()
    df = layers.restore_layers(model, theta0, theta1, sets, precision="fp32")
    assert all(torch.equal(p.detach(), theta1[x]) for x, p in model.named_parameters())  # left at θ1
    at0, at1 = metrics_at(model, theta0, sets), metrics_at(model, theta1, sets)
    n = 3
    assert len(df) == 2 * (n + 1) + (n + 3 + 1)
    none = df[df.k == 0]
    assert (none["restored"] == "").all()
    full = df[(df.order == "groups") & (df.k == df[df.order == "groups"].k.max())].iloc[0]
    for var in at1:
        np.testing.assert_allclose(none[var].values, at1[var], rtol=1e-6)  # restoring nothing = θ1
        assert full[var] == pytest.approx(at0[var], rel=1e-6)  # restoring every group = θ0
    assert full["fraction_params"] == pytest.approx(1.0)
    bu = df[(df.order == "bottom-up") & (df.k == n)].iloc[0]
    td = df[(df.order == "top-down") & (df.k == n)].iloc[0]
    assert bu["restored"] == td["restored"] == "layer 0, layer 1, layer 2"
    assert bu["train_loss"] == td["train_loss"]
    assert df[(df.order == "top-down") & (df.k == 1)].iloc[0]["restored"] == "layer 2"
    # an intermediate point, built independently
    lm = layers.discover_layers(theta0)
    state = dict(theta1)
    state.update({x: theta0[x] for x in lm.names_of(["layer 0", "layer 1"])})
    ref = metrics_at(model, state, sets)
    row = df[(df.order == "bottom-up") & (df.k == 2)].iloc[0]
    assert row["dev_loss"] == pytest.approx(ref["dev_loss"], rel=1e-6)


# ----------------------------------------------------------------------------- curvature

def test_layer_curvature_matches_dense_hessian_of_the_head():
    model = tiny_bert(n_layers=2, hidden=8)
    es = prepare_eval(encoded(24, 5), batch_size=8)
    df = layers.layer_curvature(model, es, groups=["head", "layer 1"], lanczos_steps=18)  # 18 = all head parameters
    # dense Hessian of the loss w.r.t. the classifier weight (2 × 8) and bias (2)
    w, b = model.classifier.weight, model.classifier.bias
    feats = []
    with torch.no_grad():
        for batch in es.batches:
            out = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             token_type_ids=batch["token_type_ids"])
            feats.append((out.pooler_output, batch["labels"]))

    def loss_of(flat):
        ww, bb = flat[:16].view(2, 8), flat[16:]
        tot = sum(torch.nn.functional.cross_entropy(f @ ww.T + bb, y, reduction="sum") for f, y in feats)
        return tot / len(es)

    H = torch.autograd.functional.hessian(loss_of, torch.cat([w.detach().reshape(-1), b.detach()]))
    ev = torch.linalg.eigvalsh(H)
    top = float(ev.max())  # largest algebraic eigenvalue of the head's block
    assert df.loc["head", "eigenvalue"] == pytest.approx(top, rel=1e-4)
    assert df.loc["head", "converged"] and df.loc["head", "iterations"] == 18
    assert df.loc["head", "residual"] < 1e-4 * abs(top)
    assert np.isfinite(df.loc["layer 1", "eigenvalue"]) and not df.loc["layer 1", "converged"]
    assert list(df["layer_index"]) == [layers.discover_layers(model).layer_index(g) for g in ("head", "layer 1")]
    with pytest.raises(BertscapeError, match="lanczos_steps"):
        layers.layer_curvature(model, es, lanczos_steps=0)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- CKA

def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 20)) @ rng.normal(size=(20, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert layers.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert layers.linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert layers.linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)
    assert layers.linear_cka(x, 0.1 * x @ q + 3.0) == pytest.approx(1.0, abs=1e-10)  # shift too (centred)
    assert layers.linear_cka(x, rng.normal(size=(500, 30))) < 0.3
    # Gram form (n < d) agrees with the feature form
    small = x[:10]
    y = small @ rng.normal(size=(20, 25))
    xs, ys = small - small.mean(0), y - y.mean(0)
    ref = np.linalg.norm(ys.T @ xs) ** 2 / (np.linalg.norm(xs.T @ xs) * np.linalg.norm(ys.T @ ys))
    assert layers.linear_cka(small, y) == pytest.approx(ref, rel=1e-9)
    # not invariant to a general linear map
    assert layers.linear_cka(x, x * np.linspace(0.1, 10, 20)) < 0.99


def test_layer_cka_identity_and_change(setup):
    model, theta0, theta1 = setup
    es = evalsets()["dev"]
    same = layers.layer_cka(model, theta0, theta0, es, max_tokens=100)
    assert list(same.index) == ["embeddings", "layer 0", "layer 1", "layer 2"]
    np.testing.assert_allclose(same["cka"].values, 1.0, atol=1e-9)
    assert (same["n_tokens"] == 100).all()
    moved = layers.layer_cka(model, theta0, theta1, es, max_tokens=10_000)
    assert moved["n_tokens"].iloc[0] == int(sum(b["attention_mask"].sum() for b in es.batches))  # all real tokens
    assert (moved["cka"] < 0.99).all() and (moved["cka"] > 0).all()


def test_token_selection_skips_padding_and_is_seeded():
    es = prepare_eval(encoded(30, 9), batch_size=8)
    a = layers._token_selection(es, 50, seed=1)
    b = layers._token_selection(es, 50, seed=1)
    assert sum(len(x) for x in a) == 50
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for batch, sel in zip(es.batches, a):
        assert (batch["attention_mask"].reshape(-1)[sel] == 1).all()


# ----------------------------------------------------------------------------- whole run, cached

class FakeRun:
    def __init__(self, model, theta0, theta1):
        from bertscape.runs.spec import RunSpec

        self.spec = RunSpec(n_train=64, n_dev=32)
        self._m, self._t0, self._t1 = model, theta0, theta1

    def theta0(self):
        return {k: v.clone() for k, v in self._t0.items()}

    def theta1(self):
        return {k: v.clone() for k, v in self._t1.items()}

    def param_sizes(self):
        return {k: int(v.numel()) for k, v in self._t0.items()}

    def model(self, which="theta1", device="cpu"):
        load_state(self._m, self._t1 if which == "theta1" else self._t0)
        return self._m


def test_analyze_run_computes_and_caches(setup, monkeypatch, tmp_path):
    model, theta0, theta1 = setup
    sets = evalsets(32)
    train_enc = encoded(32, 1)
    monkeypatch.setattr(layers, "_run_evalsets",
                        lambda run, *a, **k: (sets, prepare_eval(train_enc.select(np.arange(16)))))
    run = FakeRun(model, theta0, theta1)
    kw = dict(alphas=[0, 0.5, 1, 1.5], n_hessian=16, lanczos_steps=3, cka_tokens=64, device="cpu",
              views=["theta1", "theta0"])
    rep = layers.analyze_run(run, **kw)
    assert rep.change.loc["head", "relative_change"] > 0
    assert rep.curves.sizes == {"view": 2, "group": 6, "alpha": 4}
    assert set(rep.curve_summary.index.get_level_values("view")) == {"theta1", "theta0"}
    assert len(rep.restore) == 15 and list(rep.curvature.index)[-1] == "head"
    assert rep.cka["n_tokens"].iloc[0] == 64
    files = sorted(p.name for p in (tmp_path / "layers").iterdir())
    assert len(files) == 5 and sum(f.endswith(".nc") for f in files) == 1
    # second call: from the cache, same numbers, no model needed
    run2 = FakeRun(model, theta0, theta1)
    run2.model = lambda *a, **k: pytest.fail("a cached analysis must not build the model")
    rep2 = layers.analyze_run(run2, **kw)
    np.testing.assert_allclose(rep2.curves["train_loss"].values, rep.curves["train_loss"].values)
    assert rep2.restore.equals(rep.restore) and rep2.cka.equals(rep.cka)
    # a corrupt entry is recomputed, only that one
    cka_file = next(p for p in (tmp_path / "layers").iterdir() if "-cka-" in p.name)
    cka_file.write_text("{not json")
    rep3 = layers.analyze_run(run, measures=["cka", "change"], **kw)
    assert rep3.cka.equals(rep.cka) and rep3.curves is None
    assert json.loads(cka_file.read_text())["cka"]["columns"][0] == "group"
    with pytest.raises(BertscapeError, match="measures"):
        layers.analyze_run(run, measures=["everything"])
    with pytest.raises(BertscapeError, match="curve_sets"):
        layers.analyze_run(run, curve_sets=("test",))
    # curves on the training sentences only: no dev variables, its own cache entry
    rep4 = layers.analyze_run(run, **{**kw, "views": ["theta1"]}, measures=["curves"], curve_sets=("train",))
    assert "train_loss" in rep4.curves and not [v for v in rep4.curves.data_vars if v.startswith("dev_")]
