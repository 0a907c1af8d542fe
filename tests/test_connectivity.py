"""One basin or many: segments between runs' end points, their barriers, and claim L."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from bertscape import RunSpec
from bertscape.base.errors import BertscapeError
from bertscape.book import study
from bertscape.evidence import scorecard
from bertscape.geometry import landscape
from bertscape.runs.evaluate import evaluate
from bertscape.runs.train import run_data, train


def tiny_spec(model: str, **kw) -> RunSpec:
    base = dict(task="movies", model=model, n_train=64, n_dev=32, max_length=24, epochs=1, batch_size=16,
                n_checkpoints=2, device="cpu", precision="fp32")
    base.update(kw)
    return RunSpec(**base)


def _segment(f_of_t, n: int = 40, noise: float = 0.0, seed: int = 0, ts=None) -> xr.Dataset:
    """A synthetic segment whose per-sentence losses average to f(t) (plus zero-mean noise)."""
    t = np.linspace(0, 1, 11) if ts is None else np.asarray(ts)
    rng = np.random.default_rng(seed)
    eps = noise * rng.standard_normal(n)
    samples = f_of_t(t)[:, None] + (eps - eps.mean())[None, :]
    return xr.Dataset({"train_sample_loss": (("alpha", "train_sample"), samples),
                       "train_loss": ("alpha", samples.mean(-1))}, coords={"alpha": t})


def test_barrier_of_known_segments() -> None:
    flat = _segment(lambda t: 0.3 + 0.2 * t)                       # on its chord: no barrier
    bump = _segment(lambda t: 0.3 + 0.2 * t + 0.8 * t * (1 - t))   # rises 0.2 above the chord at t = 0.5
    dip = _segment(lambda t: 0.5 - 0.4 * t * (1 - t))             # below its chord everywhere
    assert study.segment_barrier(flat)["value"] == pytest.approx(0.0, abs=1e-12)
    assert study.segment_barrier(bump)["value"] == pytest.approx(0.2)
    assert study.segment_barrier(dip)["value"] == pytest.approx(0.0, abs=1e-12)
    # no spread when every sentence moves alike (the interval is a point); sentence-to-sentence noise widens it
    b = study.segment_barrier(bump)
    assert b["se"] == pytest.approx(0.0, abs=1e-12) and (b["lo"], b["hi"]) == pytest.approx((0.2, 0.2))
    noisy = study.segment_barrier(_segment(lambda t: 0.3 + 0.8 * t * (1 - t), noise=0.5))
    assert noisy["se"] > 0 and noisy["lo"] < noisy["value"] < noisy["hi"]
    # a barrier of 0 on a flat segment with noise: the interval starts at 0 (a barrier is never negative)
    flat_noisy = study.segment_barrier(_segment(lambda t: 0.3 + 0 * t, noise=0.5, ts=[0, 0.5, 1]))
    assert flat_noisy["lo"] >= 0.0


def test_barrier_of_the_dev_error() -> None:
    t = np.linspace(0, 1, 5)
    labels = np.array([0, 1, 0, 1])
    # sentences 0 and 1 are wrong in the middle only: error 0, 0.25, 0.5, 0.25, 0 → barrier 0.5
    pred = np.tile(labels, (5, 1))
    pred[1, 0] = 1
    pred[2, :2] = [1, 0]
    pred[3, 1] = 0
    ds = xr.Dataset({"dev_sample_pred": (("alpha", "dev_sample"), pred), "dev_label": ("dev_sample", labels)},
                    coords={"alpha": t})
    assert study.segment_barrier(ds, "dev", "error")["value"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="quantity"):
        study.segment_barrier(ds, "dev", "accuracy")


def test_segment_end_points_are_the_two_runs(tiny_bert, fresh_cache) -> None:
    a = train(tiny_spec(tiny_bert, init="pretrained", seed=0))
    b = train(tiny_spec(tiny_bert, init="pretrained", seed=1))
    seg = landscape.run_segment(a, b, [0.0, 0.5, 1.0], n_eval=32, precision="fp32", device="cpu", per_sample=True)
    sets = landscape.eval_sets_for_run(a, 32, 0, "cpu")
    for t, run in ((0.0, a), (1.0, b)):
        ref = evaluate(run.model("theta1"), sets["train"], "fp32")
        assert float(seg["train_loss"].sel(alpha=t)) == pytest.approx(ref["loss"], rel=1e-6)
    assert seg.attrs["run_b_key"] == b.spec.key()
    other = train(tiny_spec(tiny_bert, init="pretrained", seed=0, n_train=48))
    with pytest.raises(BertscapeError, match="n_train"):
        landscape.run_segment(a, other, [0.0, 1.0], n_eval=16, device="cpu")


def test_seeds_change_head_and_batch_order_not_the_data(tiny_bert, fresh_cache) -> None:
    s0, s1 = tiny_spec(tiny_bert, seed=0), tiny_spec(tiny_bert, seed=1)
    (tr0, dv0), (tr1, dv1) = run_data(s0), run_data(s1)
    assert tr0.fingerprint == tr1.fingerprint and dv0.fingerprint == dv1.fingerprint
    a, b = train(s0), train(s1)
    t0a, t0b = a.theta0(), b.theta0()
    body = [k for k in t0a if k.startswith("bert.")]
    assert not torch.equal(t0a["classifier.weight"], t0b["classifier.weight"])  # a fresh head per seed
    assert all(torch.equal(t0a[k], t0b[k]) for k in body)  # the pre-trained body is the same
    assert not np.allclose(a.steps["loss"].to_numpy(), b.steps["loss"].to_numpy())  # other batches, other head


def test_scratch_seeds_can_share_one_random_body(tiny_bert, fresh_cache) -> None:
    own = train(tiny_spec(tiny_bert, init="scratch", seed=1))
    shared = train(tiny_spec(tiny_bert, init="scratch", seed=1, init_seed=0))
    first = train(tiny_spec(tiny_bert, init="scratch", seed=0))
    body = [k for k in first.theta0() if k.startswith("bert.")]
    assert all(torch.equal(shared.theta0()[k], first.theta0()[k]) for k in body)  # seed 0's random body
    assert not all(torch.equal(own.theta0()[k], first.theta0()[k]) for k in body)
    assert torch.equal(shared.theta0()["classifier.weight"], own.theta0()["classifier.weight"])  # seed 1's head
    assert shared.spec.label().endswith("θ0 of s0") and shared.spec.key() != own.spec.key()
    # one spelling per run: init_seed equal to the seed, or on a pre-trained run, is the plain run
    assert tiny_spec(tiny_bert, init="scratch", seed=0, init_seed=0).key() == first.spec.key()
    assert tiny_spec(tiny_bert, init="pretrained", init_seed=3).init_seed is None


@pytest.mark.parametrize("pt, ri, verdicts", [
    ([(0.01, 0.0, 0.02), (0.02, 0.01, 0.04), (0.0, 0.0, 0.01)], [(0.5, 0.4, 0.6), (0.4, 0.3, 0.5), (0.6, 0.5, 0.7)],
     ["holds", "holds"]),
    ([(0.5, 0.4, 0.6)], [(0.02, 0.0, 0.04)], ["fails", "fails"]),
    ([(0.09, 0.05, 0.13)], [(0.12, 0.02, 0.22)], ["inconclusive", "inconclusive"]),
])
def test_claim_one_basin_states(pt, ri, verdicts) -> None:
    rows = scorecard.claim_one_basin(pt, ri)
    assert [r["verdict"] for r in rows] == verdicts
    assert rows[0]["pretrained"] == max(pt)[0] and rows[1]["scratch"] == min(ri)[0]


def test_claim_one_basin_needs_two_seeds_and_trained_runs() -> None:
    (only,) = scorecard.claim_one_basin([], [(0.3, 0.2, 0.4)])
    assert only["verdict"] == "inconclusive" and "fewer than two seeds of PT" in only["reason"]
    rows = scorecard.claim_one_basin([(0.0, 0.0, 0.01)], [(0.5, 0.4, 0.6)], untrained="RI s1 did not train")
    assert all(r["verdict"] == "inconclusive" and "did not train" in r["reason"] for r in rows)
