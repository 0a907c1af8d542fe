"""The execution layer on a real Dask LocalCluster with two worker processes (nothing of Dask mocked).

One cluster serves the whole module (starting one costs seconds). Workers import bertscape from this
checkout (their sys.path is the driver's) and use the driver's cache root, carried with every unit.
"""
from __future__ import annotations

import operator
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from bertscape.base import cache
from bertscape.base.errors import BertscapeError
from bertscape.compute import executor as compute
from bertscape.geometry import landscape as L
from bertscape.geometry import sharding, storage

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread():
    # Workers run torch on one thread (Dask's nanny sets OMP_NUM_THREADS=1); the driver does the
    # same here, so that both reduce sums in the same order and grids compare bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cluster():
    ex = compute.DaskExecutor.local(2)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def tiny_run(tiny_bert):
    from bertscape.runs.spec import RunSpec
    from bertscape.runs.train import train

    spec = RunSpec(model=tiny_bert, n_train=48, n_dev=32, epochs=1, batch_size=16, n_checkpoints=3, max_length=32,
                   device="cpu", precision="fp32", lr=1e-3, seed=7)
    return train(spec, progress=False)


GRID = dict(alphas=[-0.5, 0.0, 0.5, 1.0, 1.5], betas=[-1.0, -0.5, 0.0, 0.5, 1.0], n_eval=16, precision="fp32",
            device="cpu", eval_batch_size=8, per_sample=True, progress=False)


def _assert_same_grid(a, b) -> None:
    assert a.attrs["grid_key"] == b.attrs["grid_key"]
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for v in a.data_vars:
        x, y = a[v].values, b[v].values
        assert x.dtype == y.dtype and x.shape == y.shape, v
        assert x.tobytes() == y.tobytes(), f"{v} differs"  # bit for bit (NaN-safe)


def _grid_files(key: str) -> list[Path]:
    return sorted(p for p in cache.subdir("grids").iterdir() if key in p.name)


def test_in_process_is_the_default_and_imports_no_dask(monkeypatch):
    import subprocess

    code = ("import sys, bertscape.geometry.landscape as L, bertscape.compute.executor as c; assert not c.current().distributed; "
            "import bertscape.geometry.sharding as s; assert not s.fans_out({'store': 'auto'}); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]")
    env = {k: v for k, v in os.environ.items() if k != compute.SCHEDULER_ENV}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    monkeypatch.delenv(compute.SCHEDULER_ENV, raising=False)
    ex = compute.current()
    assert isinstance(ex, compute.InProcess) and not ex.distributed
    assert not sharding.fans_out({"store": "auto"})
    out = ex.run([compute.Unit("ok", operator.add, (1, 2)), compute.Unit("bad", operator.truediv, (1, 0))],
                 retries=1, progress=False)
    assert [o.status for o in out] == ["computed", "failed"] and out[0].value == 3
    assert out[1].error.startswith("ZeroDivisionError")
    with pytest.raises(BertscapeError, match="scheduler='nowhere'"):
        compute.executor_from("nowhere")
    with pytest.raises(BertscapeError, match="retries=-1"):
        ex.run([], retries=-1)


def test_grid_on_two_workers_equals_the_in_process_grid(cluster, tiny_run, monkeypatch):
    local = L.run_surface(tiny_run, store=None, **GRID)  # in this process, nothing stored
    cluster.client.run(compute.resident_model.cache_clear)
    before = len(cluster.log)
    builds = []
    build = L._build_grid_inputs
    monkeypatch.setattr(L, "_build_grid_inputs", lambda *a, **k: builds.append(1) or build(*a, **k))
    with compute.use(cluster):
        assert sharding.fans_out({"store": "auto"})
        remote = L.run_surface(tiny_run, **GRID)
    _assert_same_grid(local, remote)
    assert remote.attrs["complete"] == 1 and bool(remote["done"].all())
    assert len(builds) == 1  # the driver's probe and read-back share one build of the grid's inputs
    # merged into the grid's one file; the shard files are gone
    key = remote.attrs["grid_key"]
    files = _grid_files(key)
    assert [p.name for p in files] == [f"surface-{key}.nc"]
    stored = storage.read_grid(files[0])
    assert stored.attrs["shard"] == "0/1" and stored.attrs["complete"] == 1
    _assert_same_grid(stored, local)
    shards = cluster.log[before:]
    assert len(shards) == 2 * compute.SHARDS_PER_WORKER and all(o.status == "computed" for o in shards)
    assert sum(o.value["points"] for o in shards) == 25
    # each worker built the model once and kept it for its later shards
    info = cluster.client.run(compute.worker_cache_info)
    assert sum(i["hits"] + i["misses"] for i in info.values()) == len(shards)
    assert all(i["misses"] <= 1 for i in info.values())
    # asked again: found in the cache, nothing submitted
    with compute.use(cluster):
        again = L.run_surface(tiny_run, **GRID)
    assert cluster.log[-1].status == "cached" and len(cluster.log) == before + len(shards) + 1
    _assert_same_grid(again, local)


def test_a_worker_killed_mid_grid_is_replaced_and_the_grid_completes(cluster, tiny_run):
    kw = dict(GRID, alphas=[-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0], per_sample=False)
    local = L.run_curve(tiny_run, store=None, **{k: v for k, v in kw.items() if k != "betas"})
    client = cluster.client
    pids_before = client.run(os.getpid)
    killed = {}

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                killed["pid"] = pids_before[busy[0]]
                os.kill(killed["pid"], signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    curve_kw = {k: v for k, v in kw.items() if k != "betas"}
    remote = sharding.sharded_grid(L.run_curve, tiny_run, dict(curve_kw, store="auto"), executor=cluster, shards=7)
    killer.join()
    assert "pid" in killed, "no worker was ever busy"
    _assert_same_grid(local, remote)
    assert all(o.status == "computed" for o in cluster.log[-7:])
    client.wait_for_workers(2, timeout=120)  # the nanny restarted the killed worker
    assert killed["pid"] not in client.run(os.getpid).values()


def flaky(counter: str, fail_times: int) -> int:
    """A unit that fails its first ``fail_times`` attempts (counted in a file: attempts may run
    in different worker processes)."""
    path = Path(counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n <= fail_times:
        raise RuntimeError(f"attempt {n} fails")
    return n


def test_failing_units_are_retried_then_reported(cluster, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this test module is not installed
    units = [compute.Unit("recovers", flaky, (str(tmp_path / "a"), 2)),
             compute.Unit("gives up", flaky, (str(tmp_path / "b"), 5)),
             compute.Unit("divides", operator.truediv, (1, 0)),
             compute.Unit("adds", operator.add, (2, 3))]
    out = cluster.run(units, retries=2, progress=False)
    by = {o.name: o for o in out}
    assert by["recovers"].status == "computed" and by["recovers"].value == 3
    assert by["gives up"].status == "failed" and by["gives up"].error == "RuntimeError: attempt 3 fails"
    assert (tmp_path / "b").read_text() == "3"  # 1 + 2 retries, no more
    assert by["divides"].status == "failed" and by["divides"].error.startswith("ZeroDivisionError")
    assert by["adds"].value == 5
    with pytest.raises(compute.UnitsFailed, match="gives up: RuntimeError"):
        raise compute.UnitsFailed([by["gives up"]])


def waiting_here(seconds: float) -> tuple[str, int]:
    """On a worker: its address and how many units it holds that have not finished (this one included)."""
    from distributed import get_worker

    time.sleep(seconds)
    worker = get_worker()
    unfinished = ("waiting", "ready", "constrained", "executing", "long-running")
    return worker.address, sum(ts.state in unfinished for ts in worker.state.tasks.values())


def test_units_go_to_workers_as_they_free_up(cluster):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    out = cluster.run([compute.Unit(f"wait {i}", waiting_here, (0.3,)) for i in range(8)], progress=False)
    assert all(o.ok for o in out)
    # no unit was queued behind another on a worker: a free worker would have waited for it
    assert [o.value[1] for o in out] == [1] * 8
    assert len({o.value[0] for o in out}) == 2  # both workers took units


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_a_resumed_sweep_recomputes_nothing_cached(cluster, tiny_bert, fresh_cache, monkeypatch):
    from bertscape.book import study, sweep
    from bertscape.book.profiles import get_profile

    monkeypatch.setattr(compute, "SHARDS_PER_WORKER", 1)  # 5×5 grids: one shard per worker is plenty

    P = get_profile("smoke", model=tiny_bert, n_train=32, n_dev=32, long_n_train=32, long_epochs=2,
                    control_lrs=(), device="cpu")
    # a sweep that "died" after its runs
    first = sweep.sweep(P, cluster, stages=("runs",), progress=False, log=lambda s: None)
    # 2 seeds × main runs of PT and RI, PT's long runs of both seeds and RI's of the first, and the
    # connectivity chapter's RI of the second seed trained from the first seed's random θ0
    assert first.summary().loc["runs", "computed"] == len(sweep.run_specs(P)) == 8
    runs_before = _snapshot(fresh_cache / "runs")
    full = sweep.sweep(P, cluster, progress=False, log=lambda s: None)
    assert not full.failures, full.failures
    s = full.summary()
    assert s.loc["runs", "cached"] == 8 and s.loc["runs", "computed"] == 0
    assert s.loc["grids", "computed"] > 0  # shards ran on the workers
    assert _snapshot(fresh_cache / "runs") == runs_before
    # resumed again, with every memo of this process forgotten: reads everything back, writes nothing
    for f in vars(study).values():
        if callable(getattr(f, "cache_clear", None)):
            f.cache_clear()
    cluster.client.run(compute._forget_memos_of_other_caches, "")
    everything = _snapshot(fresh_cache)
    again = sweep.sweep(P, cluster, progress=False, log=lambda s: None)
    a = again.summary()
    assert not again.failures and a.loc["runs", "computed"] == 0 and a.loc["grids", "computed"] == 0
    grids = {o.name.split(" shard ")[0] for o in full.outcomes["grids"] if o.status == "computed"}
    assert len(grids) >= 6  # curves, surfaces and basin grids (with the strips they grew) of PT and RI …
    # … all read back through the study's index of grids, without a shard or a probe of the executor
    assert not [o for o in again.outcomes["grids"] if o.name.split(" shard ")[0] in grids]
    assert all(o.status == "done" for o in again.outcomes["grids"])
    assert _snapshot(fresh_cache) == everything


def test_local_workers_start_without_dasks_malloc_trim_threshold(cluster):
    # Dask's nanny would start each worker with MALLOC_TRIM_THRESHOLD_=65536, which slows torch on a
    # CPU by 40-50 % (compute.DaskExecutor.local unsets it); the driver's own environment is untouched
    on_workers = cluster.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert len(on_workers) == 2 and set(on_workers.values()) == {None}
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") != "65536"
