"""Landscape engine on a tiny random BERT and hand-made data (flatness numbers: tests/test_flatness.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from bertscape.base.errors import BertscapeError
from bertscape.geometry import directions as D
from bertscape.geometry import flatness as F
from bertscape.geometry import grids, storage, trajectories
from bertscape.geometry import landscape as L
from bertscape.runs.evaluate import evaluate
from bertscape.runs.models import load_state, trainable_state


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BERTSCAPE_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add contention on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def true_loss(model, point, es):
    saved = trainable_state(model)
    load_state(model, point)
    out = evaluate(model, es, "fp32")["loss"]
    load_state(model, saved)
    return out


# ----------------------------------------------------------------------------- curves and surfaces

def test_curve_endpoints_are_theta0_and_theta1(toy_model, toy_evalsets, toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    before = trainable_state(toy_model)
    ds = grids.curve_1d(toy_model, t0, d1, [-0.5, 0.0, 0.5, 1.0, 1.5], toy_evalsets, precision="fp32")
    for name, es in toy_evalsets.items():
        assert float(ds[f"{name}_loss"].sel(alpha=0.0)) == pytest.approx(true_loss(toy_model, t0, es), abs=1e-5)
        assert float(ds[f"{name}_loss"].sel(alpha=1.0)) == pytest.approx(true_loss(toy_model, t1, es), abs=1e-5)
        acc = ds[f"{name}_accuracy"].values
        np.testing.assert_allclose(ds[f"{name}_error"].values, 1 - acc)
    assert bool(ds["done"].all()) and ds.attrs["complete"] == 1
    assert ds.attrs["d1_hash"] == D.content_hash(d1) and ds.attrs["precision"] == "fp32"
    assert ds.attrs["train_fingerprint"] == toy_evalsets["train"].fingerprint
    assert ds.attrs["d1_norm"] == pytest.approx(D.norm(d1))
    # the model leaves holding the base point
    after = trainable_state(toy_model)
    assert all(torch.equal(t0[k], after[k]) for k in t0)
    assert not all(torch.equal(before[k], t1[k]) for k in before)


def test_surface_points_are_the_named_parameters(toy_model, toy_evalsets, toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    d2 = D.orthogonalise(D.random_direction(d1, seed=3), d1)
    ds = grids.surface_2d(toy_model, t0, d1, d2, [0.0, 1.0], [-0.5, 0.0, 0.5], {"train": toy_evalsets["train"]},
                      precision="fp32")
    es = toy_evalsets["train"]
    assert ds["train_loss"].dims == ("alpha", "beta")
    assert float(ds["train_loss"].sel(alpha=1.0, beta=0.0)) == pytest.approx(true_loss(toy_model, t1, es), abs=1e-5)
    assert float(ds["train_loss"].sel(alpha=0.0, beta=0.0)) == pytest.approx(true_loss(toy_model, t0, es), abs=1e-5)
    p = D.axpy(D.axpy(t0, d1, 1.0), d2, -0.5)
    assert float(ds["train_loss"].sel(alpha=1.0, beta=-0.5)) == pytest.approx(true_loss(toy_model, p, es), abs=1e-5)
    assert abs(ds.attrs["cos_d1_d2"]) < 1e-6


def test_netcdf_roundtrip_and_attrs(toy_model, toy_evalsets, toy_points, tmp_path):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    path = tmp_path / "g.nc"
    ds = grids.curve_1d(toy_model, t0, d1, [0.0, 1.0], toy_evalsets, precision="fp32", store=path,
                    attrs={"run_key": "abc"})
    back = storage.read_grid(path)
    xr.testing.assert_identical(back, ds)
    assert back.attrs["run_key"] == "abc" and back.attrs["base_hash"] == D.content_hash(t0)


def _counting():
    seen = []
    return seen, (lambda i, v: seen.append(i))


def test_resume_equals_uninterrupted(toy_model, toy_evalsets, toy_points, tmp_path):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    d2 = D.random_direction(d1, seed=1)
    a, b = [-0.5, 0.0, 1.0], [-1.0, 0.0, 1.0]
    full = grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32")
    path = tmp_path / "s.nc"
    part = grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32", store=path, max_points=2)
    assert int(part["done"].sum()) == 2 and part.attrs["complete"] == 0

    class Stop(Exception):
        pass

    def boom(i, v):
        if i == 4:
            raise Stop

    with pytest.raises(Stop):
        grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32", store=path, callback=boom,
                     save_every=100)
    saved = storage.read_grid(path)
    assert int(saved["done"].sum()) == 5  # points 0..4: the interrupted point was finished, then saved
    seen, cb = _counting()
    resumed = grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32", store=path, callback=cb)
    assert seen == [5, 6, 7, 8]
    xr.testing.assert_identical(resumed.drop_attrs(), full.drop_attrs())
    for v in full.data_vars:
        assert np.array_equal(resumed[v].values, full[v].values)


def test_shards_merge_to_the_single_process_grid(toy_model, toy_evalsets, toy_points, tmp_path):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    d2 = D.random_direction(d1, seed=2)
    a, b = [0.0, 0.5, 1.0], [-0.5, 0.5]
    full = grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32")
    parts = []
    for i in range(4):
        s = grids.surface_2d(toy_model, t0, d1, d2, a, b, toy_evalsets, precision="fp32", shard=(i, 4),
                         store=tmp_path / "sh.nc")
        assert set(np.flatnonzero(s["done"].values.reshape(-1))) == {j for j in range(6) if j % 4 == i}
        parts.append(tmp_path / f"sh-shard{i}of4.nc")
    merged = storage.merge_shards(parts)
    assert merged.attrs["complete"] == 1 and merged.attrs["grid_key"] == full.attrs["grid_key"]
    for v in full.data_vars:
        assert np.array_equal(merged[v].values, full[v].values), v
    other = grids.surface_2d(toy_model, t0, d1, D.random_direction(d1, seed=9), a, b, toy_evalsets, precision="fp32",
                         max_points=1)
    with pytest.raises(BertscapeError, match="shards"):
        storage.merge_shards([full, other])


def test_stale_store_is_recomputed_not_mixed(toy_model, toy_evalsets, toy_points, tmp_path):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    path = tmp_path / "c.nc"
    a = [0.0, 0.5, 1.0]
    first = grids.curve_1d(toy_model, t0, d1, a, toy_evalsets, precision="fp32", store=path)
    seen, cb = _counting()
    grids.curve_1d(toy_model, t0, d1, a, toy_evalsets, precision="fp32", store=path, callback=cb)
    assert seen == []  # a complete, matching grid is reused
    other = D.scale(d1, 2.0)  # another direction: another hash
    seen, cb = _counting()
    second = grids.curve_1d(toy_model, t0, other, a, toy_evalsets, precision="fp32", store=path, callback=cb)
    assert seen == [0, 1, 2]
    assert second.attrs["grid_key"] != first.attrs["grid_key"]
    assert float(second["train_loss"].sel(alpha=0.5)) == pytest.approx(float(first["train_loss"].sel(alpha=1.0)),
                                                                        abs=1e-5)
    # another evaluation set: recomputed too
    seen, cb = _counting()
    grids.curve_1d(toy_model, t0, other, a, {"train": toy_evalsets["dev"]}, precision="fp32", store=path, callback=cb)
    assert seen == [0, 1, 2]


def test_bad_grid_arguments(toy_model, toy_evalsets, toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    with pytest.raises(BertscapeError, match="alpha"):
        grids.curve_1d(toy_model, t0, d1, [1.0, 0.0], toy_evalsets)
    with pytest.raises(BertscapeError, match="shard"):
        grids.surface_2d(toy_model, t0, d1, d1, [0.0], [0.0], toy_evalsets, shard=(2, 2))
    with pytest.raises(BertscapeError, match="evalsets"):
        grids.curve_1d(toy_model, t0, d1, [0.0], {})
    with pytest.raises(BertscapeError, match="precision"):
        grids.curve_1d(toy_model, t0, d1, [0.0], toy_evalsets, precision="fp8")


# ----------------------------------------------------------------------------- projections

def test_projection_recovers_coordinates(toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    d2p = D.orthogonalise(D.random_direction(d1, seed=4), d1)
    d2raw = D.axpy(d2p, d1, 0.3)  # a non-orthogonal δ2: least squares in the (δ1, δ2) basis still exact
    e = D.orthogonalise(D.orthogonalise(D.random_direction(d1, seed=8), d1), d2p)
    off = D.axpy(D.axpy(D.axpy(t0, d1, 0.2), d2p, 0.4), e, 1.0)
    pts = [(0, t0), (5, D.axpy(D.axpy(t0, d1, 0.3), d2p, -0.7)), (7, off), (10, t1)]
    df = trajectories.project_points(pts, t0, d1, d2p)
    np.testing.assert_allclose(df["alpha"], [0, 0.3, 0.2, 1], atol=1e-6)
    np.testing.assert_allclose(df["beta"], [0, -0.7, 0.4, 0], atol=1e-6)
    assert df["residual"].iloc[3] < 1e-6 * D.norm(d1) and df["residual"].iloc[1] < 1e-5
    assert df["residual"].iloc[2] == pytest.approx(D.norm(e), rel=1e-4)
    assert df["rel_residual"].iloc[2] == pytest.approx(D.norm(e) / D.norm(D.sub(off, t0)), rel=1e-4)
    raw = trajectories.project_points([(5, D.axpy(D.axpy(t0, d1, 0.3), d2raw, -0.7))], t0, d1, d2raw)
    assert raw["alpha"].iloc[0] == pytest.approx(0.3, abs=1e-6) and raw["beta"].iloc[0] == pytest.approx(-0.7, abs=1e-6)


def test_projection_with_surface_and_true_loss(toy_model, toy_evalsets, toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    d2 = D.orthogonalise(D.random_direction(d1, seed=4), d1)
    surf = grids.surface_2d(toy_model, t0, d1, d2, [0.0, 0.5, 1.0], [-0.5, 0.0, 0.5], {"train": toy_evalsets["train"]},
                        precision="fp32", attrs={"centre": "theta0"})
    pts = [(0, t0), (3, D.axpy(t0, d1, 0.5)), (9, t1)]
    df = trajectories.project_trajectory(pts, d1, d2, surface=surf, evalsets={"train": toy_evalsets["train"]}, model=toy_model,
                              precision="fp32")
    np.testing.assert_allclose(df["train_loss"], df["train_loss_surface"], atol=1e-5)  # on-grid, on-plane points
    with pytest.raises(BertscapeError, match="d2"):
        trajectories.project_trajectory(pts, d1, D.scale(d2, 2.0), surface=surf)


# ----------------------------------------------------------------------------- run-level helpers

def test_run_level_helpers_on_a_tiny_run(tiny_bert):
    from bertscape.runs.spec import RunSpec
    from bertscape.runs.train import train

    spec = RunSpec(model=tiny_bert, n_train=48, n_dev=32, epochs=1, batch_size=16, n_checkpoints=3, max_length=32,
                   device="cpu", lr=1e-3)
    run = train(spec, progress=False)
    alphas = [0.0, 0.5, 1.0]
    curve = L.run_curve(run, alphas, n_eval=16, device="cpu")
    es = L.eval_sets_for_run(run, 16, 0)
    assert len(es["train"]) == 16 and len(es["dev"]) == 16
    model = run.model("theta0")
    assert float(curve["train_loss"].sel(alpha=0.0)) == pytest.approx(evaluate(model, es["train"])["loss"], abs=1e-5)
    model = run.model("theta1")
    assert float(curve["dev_loss"].sel(alpha=1.0)) == pytest.approx(evaluate(model, es["dev"])["loss"], abs=1e-5)
    assert curve.attrs["run_key"] == spec.key()
    seen, cb = _counting()
    L.run_curve(run, alphas, n_eval=16, device="cpu", callback=cb)
    assert seen == []  # cached
    # the driver of a sharded grid keeps the grid's inputs and their hashes for its second call
    args = ("theta0", "random", 0, "filter", "whole", "all", True, 16, 0, torch.device("cpu"), 64, ("train", "dev"))
    assert L.grid_inputs(run, *args)[3] is None
    with L.keep_grid_inputs():
        first = L.grid_inputs(run, *args)
        with L.keep_grid_inputs():
            assert L.grid_inputs(run, *args) is first
        assert first[3] == (D.content_hash(first[1]), [D.content_hash(first[0]["d1"]), D.content_hash(first[0]["d2"])])
        keyed = L.run_curve(run, alphas, n_eval=16, device="cpu", max_points=0)  # its hashes key the same grid
        assert keyed.attrs["grid_key"] == curve.attrs["grid_key"] and bool(keyed["done"].all())
    assert L._driver_inputs.get() is None
    surf = L.run_surface(run, [0.0, 1.0], [-0.5, 0.0, 0.5], n_eval=16, device="cpu")
    assert abs(surf.attrs["cos_d1_d2"]) < 1e-6 and surf.attrs["d2_kind"] == "random"
    assert float(surf["train_loss"].sel(alpha=1.0, beta=0.0)) == pytest.approx(
        float(curve["train_loss"].sel(alpha=1.0)), abs=1e-5)
    dirs = L.run_directions(run)
    df = trajectories.project_trajectory(run, dirs["d1"], dirs["d2"], surface=surf)
    assert list(df["step"]) == run.checkpoint_steps
    assert (df["alpha"].iloc[0], df["beta"].iloc[0]) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert (df["alpha"].iloc[-1], df["beta"].iloc[-1]) == pytest.approx((1.0, 0.0), abs=1e-6)
    assert df["residual"].iloc[-1] < 1e-6 * D.norm(dirs["d1"])
    assert df["train_loss"].iloc[-1] == pytest.approx(df["train_loss_surface"].iloc[-1], abs=1e-5)
    centred = L.run_surface(run, [-0.5, 0.0], [0.0, 0.5], centre="theta1", d2="pca", n_eval=16, device="cpu")
    assert float(centred["train_loss"].sel(alpha=0.0, beta=0.0)) == pytest.approx(
        float(curve["train_loss"].sel(alpha=1.0)), abs=1e-5)
    assert float(centred["train_loss"].sel(alpha=-0.5, beta=0.0)) == pytest.approx(
        float(curve["train_loss"].sel(alpha=0.5)), abs=1e-5)
    s = F.flatness_summary(curve, surf, eps=0.05)
    assert np.isfinite(s["barrier"]) and s["width_d2"] >= 0
    # 3 checkpoints span a plane: the 2 PCA directions hold the whole path
    pp = L.pca_plane(run)
    assert sum(pp["explained_variance_ratio"]) == pytest.approx(1.0, abs=1e-6)
    on_pca = trajectories.project_trajectory(run, pp["d1"], pp["d2"], origin="theta1")
    assert on_pca["rel_residual"].iloc[:-1].max() < 1e-3


def test_pca_plane_projection_of_a_planar_path(toy_points):
    t0, t1 = toy_points
    d1 = D.sub(t1, t0)
    e = D.scale(D.orthogonalise(D.random_direction(d1, seed=6), d1), 1.0)
    # a path that bends inside the plane (δ1, e): every checkpoint is on the PCA plane
    pts = [(i, D.axpy(D.axpy(t0, d1, t), e, 0.5 * t * (1 - t))) for i, t in enumerate(np.linspace(0, 1, 6))]
    dirs, evr = D.pca_directions([p for _, p in pts], n=2, origin="theta1")
    assert evr.sum() == pytest.approx(1.0, abs=1e-6)
    df = trajectories.project_points(pts, pts[-1][1], dirs[0], dirs[1])
    assert df["rel_residual"].iloc[:-1].max() < 1e-4
