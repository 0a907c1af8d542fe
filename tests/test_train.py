"""Training runs: cache, resume, determinism, θ0, metrics and spec validation."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bertscape import RunSpec
from bertscape.base.errors import BertscapeError
from bertscape.data.metrics import compute_metrics, dev_error
from bertscape.data.tasks import get_task
from bertscape.runs.models import embedded_model_path
from bertscape.runs.train import checkpoint_steps, load_run, train


def tiny_spec(model: str, **kw) -> RunSpec:
    base = dict(task="movies", model=model, n_train=96, n_dev=32, max_length=24, epochs=2, batch_size=16,
                n_checkpoints=4, device="cpu")
    base.update(kw)
    return RunSpec(**base)


def test_cache_hit_returns_identical_result_fast(tiny_bert, fresh_cache):
    spec = tiny_spec(tiny_bert)
    first = train(spec)
    start = time.perf_counter()
    again = train(spec)
    assert time.perf_counter() - start < 1.0
    assert again.steps.equals(first.steps) and again.evals.equals(first.evals)
    assert len(first.steps) == 2 * 6 and list(first.evals["epoch"]) == [0, 1, 2]
    assert first.checkpoint_steps == [0, 4, 8, 12]
    t1a, t1b = first.theta1(), again.theta1()
    assert all(torch.equal(t1a[k], t1b[k]) for k in t1a)


def test_killed_run_resumes_and_matches(tiny_bert, fresh_cache, tmp_path, monkeypatch):
    spec = tiny_spec(tiny_bert, epochs=3)
    seen = []

    def stop_in_epoch_two(step: int, loss: float) -> None:
        seen.append(step)
        if step == 9:  # 6 steps an epoch: epoch 1 finished and saved, epoch 2 under way
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(spec, callback=stop_in_epoch_two)
    assert load_run(spec) is None  # nothing half-finished is served
    resumed_steps = []
    resumed = train(spec, callback=lambda s, l: resumed_steps.append(s))
    assert resumed_steps[0] == 7  # lost only the unfinished epoch
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path / "other-cache"))
    straight = train(spec)
    assert np.array_equal(resumed.steps["loss"].to_numpy(), straight.steps["loss"].to_numpy())
    assert resumed.evals.drop(columns=[]).equals(straight.evals)
    a, b = resumed.theta1(), straight.theta1()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = resumed.checkpoint(12), straight.checkpoint(12)
    assert all(torch.equal(ca[k], cb[k]) for k in ca)


def test_corrupt_entry_is_recomputed(tiny_bert, fresh_cache):
    spec = tiny_spec(tiny_bert, epochs=1)
    run = train(spec)
    (run.folder / "history.json").write_text("{not json")
    assert load_run(spec) is None
    again = train(spec)
    assert again.steps["loss"].equals(run.steps["loss"])
    with open(again.folder / "theta1.safetensors", "r+b") as f:
        f.truncate(100)
    assert load_run(spec) is None


def test_scratch_seeds_and_determinism(tiny_bert, fresh_cache):
    a = train(tiny_spec(tiny_bert, init="scratch", seed=1, epochs=1))
    b = train(tiny_spec(tiny_bert, init="scratch", seed=1, epochs=1), force=True)
    c = train(tiny_spec(tiny_bert, init="scratch", seed=2, epochs=1))
    assert np.array_equal(a.steps["loss"].to_numpy(), b.steps["loss"].to_numpy())
    assert not np.allclose(a.steps["loss"].to_numpy(), c.steps["loss"].to_numpy())
    t0a, t0c = a.theta0(), c.theta0()
    assert not torch.equal(t0a["bert.encoder.layer.0.output.dense.weight"], t0c["bert.encoder.layer.0.output.dense.weight"])


def test_checkpoints_lie_on_the_trajectory(tiny_bert, fresh_cache):
    run = train(tiny_spec(tiny_bert, n_checkpoints=5))
    traj = list(run.trajectory())
    assert [s for s, _ in traj] == run.checkpoint_steps == [0, 3, 6, 9, 12]
    t0, t1 = run.theta0(), run.theta1()
    mid = traj[2][1]
    moved = sum(float((mid[k] - t0[k]).norm()) for k in t0)
    assert moved > 0
    assert all(torch.equal(traj[-1][1][k], t1[k]) for k in t1)
    size = lambda name: (run.folder / name).stat().st_size  # noqa: E731
    fp16_model = sum(v.numel() for v in t0.values()) * 2
    total = sum(size(p.name) for p in run.folder.glob("*.safetensors"))
    assert total <= (len(run.checkpoint_steps) + 2) * fp16_model * 1.01


@pytest.mark.slow
def test_pretrained_theta0_is_the_loaded_model_outside_the_head(fresh_cache):
    run = train(RunSpec(n_train=32, n_dev=16, max_length=16, epochs=1, batch_size=16, n_checkpoints=2,
                        device="cpu"))
    t0 = run.theta0()
    shipped = load_file(embedded_model_path() / "model.safetensors")
    for name, value in t0.items():
        if name.startswith("classifier."):
            continue
        assert torch.equal(value, shipped[name.removeprefix("bert.")]), name
    t1 = run.theta1()
    assert not torch.equal(t0["classifier.weight"], t1["classifier.weight"])


def test_checkpoint_steps_spread():
    assert checkpoint_steps(100, 5) == [0, 25, 50, 75, 100]
    assert checkpoint_steps(3, 10) == [0, 1, 2, 3]


def test_metrics_match_known_values():
    cls = get_task("mrpc")
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.5, 0.6], [3.0, -1.0], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1, 0, 0])
    # predictions 0,1,0,1,0,1 → tp=2 fp=1 fn=1 tn=2
    m = compute_metrics(cls, logits, labels)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    cola = compute_metrics(get_task("cola"), logits, labels)
    assert cola["mcc"] == pytest.approx((2 * 2 - 1 * 1) / np.sqrt(3 * 3 * 3 * 3))
    assert dev_error(get_task("cola"), cola) == pytest.approx(1 - cola["mcc"])
    reg = compute_metrics(get_task("stsb"), np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    x, y = np.array([1, 2, 3, 4.0]), np.array([1, 2, 3, 5.0])
    assert reg["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert reg["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize("field,value,match", [
    ("task", "imdb", "task='imdb'"),
    ("init", "random", "init='random'"),
    ("seed", -1, "seed=-1"),
    ("n_train", 0, "n_train=0"),
    ("n_dev", -5, "n_dev=-5"),
    ("max_length", 0, "max_length=0"),
    ("max_length", 1024, "max_length=1024"),
    ("epochs", 0, "epochs=0"),
    ("batch_size", -2, "batch_size=-2"),
    ("lr", 5.0, "lr=5.0"),
    ("warmup", 1.5, "warmup=1.5"),
    ("weight_decay", -0.1, "weight_decay=-0.1"),
    ("evals_per_epoch", 0, "evals_per_epoch=0"),
    ("n_checkpoints", 1, "n_checkpoints=1"),
    ("device", "tpu", "device='tpu'"),
    ("precision", "fp8", "precision='fp8'"),
    ("max_grad_norm", 0, "max_grad_norm=0"),
    ("metric", "mcc", "metric='mcc'"),
    ("group_by_length", "yes", "group_by_length='yes'"),
])
def test_invalid_spec_fields(field, value, match):
    with pytest.raises(BertscapeError, match=match):
        RunSpec(**{field: value})


def test_regression_task_refuses_classification_metric():
    with pytest.raises(BertscapeError, match="metric='accuracy'.*regression task 'movies-reg'"):
        RunSpec(task="movies-reg", metric="accuracy")
    assert RunSpec(task="movies-reg").metric == "pearson"


def test_n_train_larger_than_data_is_refused(tiny_bert, fresh_cache):
    with pytest.raises(BertscapeError, match=r"n_train=100000 .*8454 examples"):
        train(tiny_spec(tiny_bert, n_train=100_000))
    with pytest.raises(BertscapeError, match=r"batch_size=200 .*96 examples"):
        train(tiny_spec(tiny_bert, batch_size=200))


def test_spec_key_changes_with_fields_not_device():
    a = RunSpec()
    assert a.key() == RunSpec().key()
    assert a.key() != RunSpec(seed=1).key() != RunSpec(init="scratch").key()
    assert RunSpec(device="cpu").key() == RunSpec(device="cpu").key()
    assert RunSpec(init="scratch").lr == 1e-4 and a.lr == 5e-5
    assert a.replace(init="scratch").lr == 1e-4


def test_resume_states_are_written_at_most_four_times_and_never_after_the_last_epoch():
    from bertscape.runs.train import RESUME_SAVES, resume_epochs

    assert resume_epochs(1) == [] and resume_epochs(3) == [1, 2] and resume_epochs(12) == [3, 6, 9]
    for epochs in range(1, 40):
        saved = resume_epochs(epochs)
        assert len(saved) <= RESUME_SAVES and all(0 < e < epochs for e in saved)
        # an interruption loses at most a quarter of the run (rounded up to whole epochs)
        gaps = [b - a for a, b in zip([0, *saved], [*saved, epochs])]
        assert max(gaps) <= -(-epochs // RESUME_SAVES)
