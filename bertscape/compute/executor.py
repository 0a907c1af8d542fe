"""Where independent units of work run: in this process (the default) or on a Dask cluster.

Everything expensive that bertscape computes splits into independent units: a training run, a
shard of a landscape grid, one study measure of one run. This module is the one place that decides
where such units run. The package asks :func:`current` for the active :class:`Executor` and hands
it a list of :class:`Unit`; the executor returns one :class:`Outcome` per unit (a value, or the
error that remained after a bounded number of retries).

Backends:

``InProcess`` (the default)
    runs the units one after another in this process; nothing from Dask is imported. Landscape
    grids do not even go through it: with this backend every code path is exactly what it was
    before this module existed.
``DaskExecutor``
    a ``distributed.Client`` on a local cluster (:meth:`DaskExecutor.local`: worker *processes*
    with one thread each, so a worker's torch uses one core) or on an existing scheduler
    (:meth:`DaskExecutor.connect`). Scheduling, retries, worker restarts and the dashboard are
    Dask's; this module only submits units and collects their outcomes.

Choosing one: ``with executor.use(ex):`` inside Python, or the environment variable
``BERTSCAPE_SCHEDULER`` (``tcp://host:8786`` for an existing scheduler, ``local`` or ``local:N``
for a local cluster of N workers), which also reaches chapter kernels run by papermill. Inside a
Dask worker :func:`current` is always in-process: a unit never fans out again.

Workers and the cache: a unit runs with the driver's cache root (``$BERTSCAPE_CACHE`` as the driver
resolved it) and the driver's other ``BERTSCAPE_*``/offline variables, so workers must see the
cache folder at the same path (one machine, or a shared file system). Units write only their own
files (a run folder, one shard file), atomically; the driver merges shards into the one grid file.

GPUs: one worker per GPU, each started with its own ``CUDA_VISIBLE_DEVICES`` and the resource
``GPU=1`` (``dask worker tcp://… --nworkers 1 --nthreads 1 --resources GPU=1``, or
``DaskExecutor.local(n, gpus=True)``). When any worker advertises a ``GPU`` resource, every unit
asks for one, so no two units share a GPU.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import math
import os
import re
import sys
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

from bertscape.base.envvars import temporary_environ
from bertscape.base.errors import BertscapeError, bad_value, check_positive_int
from bertscape.base.progress import progress_enabled

# Imported where used, not at the top: Dask (``distributed``) is an optional extra, loaded only by the
# Dask executor; the cache, the run loader and tqdm are loaded by the functions that need them, so that
# a chapter kernel importing this module loads nothing it does not use.

__all__ = ["SCHEDULER_ENV", "RETRIES", "ALLOWED_FAILURES", "SHARDS_PER_WORKER", "Unit", "Outcome", "UnitsFailed",
           "Executor", "InProcess", "DaskExecutor", "current", "use", "executor_from", "in_worker",
           "cached_run", "resident_model", "model_of", "worker_cache_info"]

#: Environment variable naming the scheduler: ``tcp://host:port`` (an existing Dask scheduler),
#: ``local`` or ``local:N`` (a local cluster of N worker processes). Unset: in-process.
SCHEDULER_ENV = "BERTSCAPE_SCHEDULER"
#: Default retries of a unit that raised (Dask's ``retries=``): after 1 + RETRIES attempts its
#: error is reported.
RETRIES = 2
#: A unit whose worker died while running it this many times is reported as failed (Dask's
#: ``distributed.scheduler.allowed-failures``; set on the clusters this module starts).
ALLOWED_FAILURES = 3
#: A grid is cut into this many shards per worker (more shards: finer load balance and cheaper
#: retries; fewer: less per-shard set-up). See benchmarks/bench_compute.py for the overhead.
SHARDS_PER_WORKER = 2
#: Environment variables a unit carries from the driver to its worker (besides the cache root).
FORWARDED_ENV = ("BERTSCAPE_DATA", "BERTSCAPE_GLUE_DIR", "BERTSCAPE_VADER_SDIST", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME")
STATUSES = ("computed", "cached", "done", "failed")


# ----------------------------------------------------------------------------- units and outcomes

@dataclass(frozen=True)
class Unit:
    """One independent piece of work: ``fn(*args, **kwargs)``.

    ``fn`` must be importable on a worker (a module-level function of an installed package: it is
    sent by reference) and its arguments picklable. ``name`` labels it in progress bars, the
    dashboard and summaries. ``status`` is what a success is reported as: ``computed`` (it
    produced a result) or ``done`` (it may have read its result back from the cache).
    """

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    status: str = "computed"


@dataclass
class Outcome:
    """What became of a unit: ``status`` is ``computed``/``done`` (``value`` holds the result),
    ``cached`` (skipped: the driver found its result in the cache) or ``failed`` (``error`` holds
    ``"<ExceptionType>: <message>"`` as raised by the last attempt). ``seconds`` is the unit's own
    run time on its worker (the last attempt), NaN when it did not run."""

    name: str
    status: str
    value: Any = None
    error: str | None = None
    seconds: float = math.nan

    @property
    def ok(self) -> bool:
        """True unless the unit failed."""
        return self.status != "failed"


class UnitsFailed(BertscapeError):
    """Some units still failed after their retries; ``failures`` lists their outcomes."""

    def __init__(self, failures: Sequence[Outcome]):
        self.failures = list(failures)
        lines = "; ".join(f"{o.name}: {o.error}" for o in self.failures[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} unit(s) failed after their retries: {lines}{more}")


def _unit_env() -> dict[str, str]:
    """The driver's settings a unit runs with (the cache root as resolved here, so every worker
    writes where the driver reads; no progress bars in worker logs)."""
    from bertscape.base.cache import (
        cache_dir,  # lazy: keeps `import bertscape.compute.executor` free of numpy
    )

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.update(BERTSCAPE_CACHE=str(cache_dir()), BERTSCAPE_PROGRESS="0")
    return env


_last_cache_root: list[str] = []


def _forget_memos_of_other_caches(root: str) -> None:
    """A worker that served a driver with another cache root drops what it memoised from that
    cache (the study's per-process memos and the resident models): they point at its files."""
    if _last_cache_root and _last_cache_root[0] == root:
        return
    _last_cache_root[:] = [root]
    resident_model.cache_clear()
    study = sys.modules.get("bertscape.book.study")  # loaded by the units that use it, never imported here
    if study is not None:
        study.forget()


def _run_unit(fn: Callable[..., Any], args: tuple, kwargs: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Any, float]:
    """Run one unit with the driver's environment; returns ``(value, seconds)``.

    Setting ``os.environ`` is process-wide: workers run one thread each (as this module starts
    them and as the docs tell), so no two units of one process overlap."""
    with temporary_environ(env):
        _forget_memos_of_other_caches(env.get("BERTSCAPE_CACHE", ""))
        start = time.perf_counter()
        value = fn(*args, **dict(kwargs))
        return value, time.perf_counter() - start


# ----------------------------------------------------------------------------- executors

class Executor(ABC):
    """Runs lists of independent units; keeps every outcome in :attr:`log` (for summaries)."""

    #: True when units leave this process (grids are then cut into shards).
    distributed: bool = False

    def __init__(self) -> None:
        self.log: list[Outcome] = []

    @property
    @abstractmethod
    def n_workers(self) -> int:
        """How many units can run at once."""

    @abstractmethod
    def _run(self, units: Sequence[Unit], retries: int, bar: Any) -> list[Outcome]:
        ...

    def run(self, units: Sequence[Unit], *, retries: int = RETRIES, desc: str = "units",
            progress: bool | None = None) -> list[Outcome]:
        """Run ``units`` and return their outcomes in the same order.

        A unit that raises is attempted again up to ``retries`` times; if it still fails its
        outcome says ``failed`` with the error, and the other units go on. Nothing is raised for
        a failed unit: the caller decides (see :class:`UnitsFailed`).
        """
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise bad_value("retries", retries, "a non-negative integer")
        units = list(units)
        if not all(isinstance(u, Unit) for u in units):
            raise bad_value("units", units, "a list of compute.Unit")
        if not units:
            return []
        from tqdm.auto import tqdm

        with tqdm(total=len(units), desc=desc, disable=not progress_enabled(progress), leave=False,
                  dynamic_ncols=True) as bar:
            out = self._run(units, retries, bar)
        self.log.extend(out)
        return out

    def record(self, outcome: Outcome) -> None:
        """Add an outcome decided by the driver (e.g. ``cached``) to :attr:`log`."""
        self.log.append(outcome)

    def close(self) -> None:
        """Release what the executor holds (a cluster it started)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcess(Executor):
    """Units one after another in this process (no extra import, no copies of the arguments)."""

    distributed = False

    @property
    def n_workers(self) -> int:
        return 1

    def _run(self, units: Sequence[Unit], retries: int, bar: Any) -> list[Outcome]:
        out = []
        for u in units:
            for attempt in range(retries + 1):
                start = time.perf_counter()
                try:
                    value = u.fn(*u.args, **dict(u.kwargs))
                except Exception as exc:  # reported after the retries, as on a cluster
                    outcome = Outcome(u.name, "failed", error=f"{type(exc).__name__}: {exc}",
                                      seconds=time.perf_counter() - start)
                else:
                    outcome = Outcome(u.name, u.status, value, seconds=time.perf_counter() - start)
                    break
            out.append(outcome)
            bar.update(1)
        return out


def _key(name: str) -> str:
    """A Dask key for a unit: its name made key-safe plus a random suffix (keys must be unique;
    the part before the last ``-`` groups tasks on the dashboard)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_")[:80] + "-" + uuid.uuid4().hex[:12]


class DaskExecutor(Executor):
    """Units as Dask tasks on a ``distributed.Client`` (see :meth:`local` and :meth:`connect`)."""

    distributed = True

    def __init__(self, client: Any, cluster: Any = None, dashboard: bool = True):
        super().__init__()
        self.client = client
        self._cluster = cluster  # closed with the executor when this module started it
        self._dashboard = dashboard  # False: a cluster started here without one

    @classmethod
    def local(cls, n_workers: int = 2, *, gpus: bool = False, dashboard: bool = False,
              allowed_failures: int = ALLOWED_FAILURES) -> "DaskExecutor":
        """A local cluster of ``n_workers`` worker processes with one thread each (Dask's
        ``LocalCluster``; each worker process runs under a nanny that restarts it if it dies).

        ``gpus=True``: one worker per GPU, worker ``i`` with ``CUDA_VISIBLE_DEVICES=i`` and the
        resource ``GPU=1`` (``n_workers`` must not exceed the visible GPUs). ``dashboard``: serve
        Dask's dashboard on a free port (needs ``bokeh``).
        """
        import dask
        from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

        check_positive_int("n_workers", n_workers)
        # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (so that they hand memory
        # back to the OS sooner). For torch on a CPU that is a 40-50 % slowdown: every large tensor
        # freed is unmapped and faulted in again (one landscape point, 224 + 224 sentences, one thread:
        # 2.2 s in a plain process, 3.2 s with the variable set, 3.4 s on a default worker). Our
        # workers start without it (``None`` unsets a pre-spawn variable).
        with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures,
                              "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            if gpus:
                import torch

                have = torch.cuda.device_count()
                if n_workers > have:
                    raise bad_value("n_workers", n_workers, f"at most the {have} visible GPU(s) with gpus=True")
                # LocalCluster gives every worker the same environment; Dask's SpecCluster takes one
                # spec per worker, which is how each gets its own CUDA_VISIBLE_DEVICES.
                parent = os.environ.get("CUDA_VISIBLE_DEVICES")
                ids = parent.split(",") if parent else [str(i) for i in range(have)]
                workers = {f"gpu{i}": {"cls": Nanny, "options": {
                    "nthreads": 1, "resources": {"GPU": 1}, "env": {"CUDA_VISIBLE_DEVICES": ids[i]}, "silence_logs": 40}}
                    for i in range(n_workers)}
                scheduler = {"cls": Scheduler, "options": {"dashboard": dashboard, "dashboard_address": ":0"}}
                cluster = SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)
            else:
                cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0" if dashboard else None, silence_logs=40)
        client = Client(cluster, set_as_default=False)  # dask.compute elsewhere stays local
        return cls(client, cluster, dashboard)

    @classmethod
    def connect(cls, address: str) -> "DaskExecutor":
        """A client of the scheduler at ``address`` (``tcp://host:8786``); the cluster stays up
        when the executor closes."""
        from distributed import Client

        try:
            client = Client(address, timeout="30s", set_as_default=False)
        except OSError as exc:
            raise bad_value(SCHEDULER_ENV, address, f"the address of a running Dask scheduler ({exc})") from None
        return cls(client)

    @property
    def n_workers(self) -> int:
        return max(1, len(self.client.nthreads()))

    def _resources(self) -> dict[str, int] | None:
        workers = self.client.scheduler_info().get("workers", {}).values()
        return {"GPU": 1} if any("GPU" in (w.get("resources") or {}) for w in workers) else None

    def _slots(self) -> int:
        """How many units may be in flight: one per worker thread (at least one, so that a cluster
        that scales up from no workers gets its first unit)."""
        return max(1, sum(self.client.nthreads().values()))

    def _run(self, units: Sequence[Unit], retries: int, bar: Any) -> list[Outcome]:
        """Hand the units out as workers free up: at most one unit per worker thread is in flight,
        the next is submitted when one finishes. A unit therefore never waits on a busy worker
        while another sits idle: Dask places tasks when they are submitted, and with every unit
        submitted at once it queued two shards of a grid behind each other on one worker (one
        pass of benchmarks/bench_compute.py took 114 s on 2 workers where its others took 88-90 s).
        The window is a few lines of flow control on the driver; placing, retrying and replacing
        dead workers stay Dask's."""
        from distributed import as_completed

        env = _unit_env()
        resources = self._resources()
        todo = iter(enumerate(units))
        index: dict[Any, int] = {}

        def submit(n: int) -> list[Any]:
            futs = []
            for i, u in itertools.islice(todo, max(0, n)):
                fut = self.client.submit(_run_unit, u.fn, tuple(u.args), dict(u.kwargs), env, key=_key(u.name),
                                         retries=retries, resources=resources, pure=False)
                index[fut] = i
                futs.append(fut)
            return futs

        out: list[Outcome | None] = [None] * len(units)
        running = as_completed(submit(self._slots()), loop=self.client.loop)  # this client is not the default one
        in_flight = len(index)
        for fut in running:
            in_flight -= 1
            u = units[index[fut]]
            if fut.status == "finished":
                value, seconds = fut.result()
                out[index[fut]] = Outcome(u.name, u.status, value, seconds=seconds)
            else:  # Dask re-raised on the driver: the unit's own error, or KilledWorker
                exc = fut.exception()
                out[index[fut]] = Outcome(u.name, "failed", error=f"{type(exc).__name__}: {exc}")
            fut.release()
            bar.update(1)
            more = submit(self._slots() - in_flight)
            running.update(more)
            in_flight += len(more)
        return [o for o in out if o is not None]

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address, when it is served."""
        return self.client.dashboard_link if self._dashboard else None

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


# ----------------------------------------------------------------------------- the active executor

_IN_PROCESS = InProcess()
_active: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("bertscape_executor", default=None)
_from_env: dict[str, Executor] = {}


def in_worker() -> bool:
    """True inside a Dask worker (checked without importing Dask when it is not loaded)."""
    if "distributed" not in sys.modules:
        return False
    from distributed import get_worker

    try:
        get_worker()
    except ValueError:
        return False
    return True


def executor_from(scheduler: str | None = None, local: int | None = None, gpus: bool = False) -> Executor:
    """An executor from settings: ``local=N`` (a local cluster of N workers), ``scheduler``
    (``tcp://host:port``; ``local``/``local:N``) or neither (in-process)."""
    if local is not None:
        if scheduler:
            raise bad_value("scheduler", scheduler, "nothing when local workers are asked for")
        return DaskExecutor.local(check_positive_int("local", local), gpus=gpus)
    if not scheduler:
        return _IN_PROCESS
    if not isinstance(scheduler, str):
        raise bad_value("scheduler", scheduler, "'tcp://host:port', 'local' or 'local:N'")
    m = re.fullmatch(r"local(?::(\d+))?", scheduler.strip())
    if m:
        n = int(m.group(1)) if m.group(1) else max(1, (os.cpu_count() or 2) // 2)
        return DaskExecutor.local(check_positive_int("scheduler workers", n), gpus=gpus)
    if "://" not in scheduler:
        raise bad_value("scheduler", scheduler, "'tcp://host:port' (a Dask scheduler), 'local' or 'local:N'")
    return DaskExecutor.connect(scheduler)


def current() -> Executor:
    """The active executor: in-process inside a Dask worker; else the one :func:`use` set; else
    one from ``$BERTSCAPE_SCHEDULER`` (started once per process and value); else in-process."""
    if in_worker():
        return _IN_PROCESS
    ex = _active.get()
    if ex is not None:
        return ex
    spec = os.environ.get(SCHEDULER_ENV, "").strip()
    if not spec:
        return _IN_PROCESS
    if spec not in _from_env:
        _from_env[spec] = executor_from(spec)
    return _from_env[spec]


@contextlib.contextmanager
def use(executor: Executor) -> Iterator[Executor]:
    """Make ``executor`` the active one inside the ``with`` block (it is not closed on exit)."""
    if not isinstance(executor, Executor):
        raise bad_value("executor", executor, "a compute.Executor (InProcess or DaskExecutor)")
    token = _active.set(executor)
    try:
        yield executor
    finally:
        _active.reset(token)


# ----------------------------------------------------------------------------- resident models

def cached_run(spec: Any) -> Any:
    """The finished run of ``spec`` from the cache (on a worker: the driver's cache); a clear error
    when it is not there."""
    from bertscape.base.cache import cache_dir
    from bertscape.runs.train import load_run

    run = load_run(spec)
    if run is None:
        raise BertscapeError(f"run {spec.label()} ({spec.key()}) is not in the cache at {cache_dir()}; a worker "
                             "must see the driver's cache folder at the same path (and resolve precision "
                             "'auto' the same way: run driver and workers on the same kind of device)")
    return run


@functools.lru_cache(maxsize=2)
def resident_model(spec: Any, which: str, device: str, cache_root: str) -> Any:
    """The model of a cached run (``spec``) at ``theta0``/``theta1`` on ``device``, loaded once
    per process.

    Used on workers, where many grid shards of one run arrive one after another: the weights are
    read and the network built once. Keyed by the run, the point, the device and the cache root;
    two models at most stay resident (``functools.lru_cache``). Callers must leave the model as
    they found it (the grid engine writes every point from the stored base and restores it)."""
    return cached_run(spec).model(which, device=device)


def model_of(run: Any, which: str, device: Any) -> Any:
    """``run.model(which, device)``; inside a Dask worker, the process's resident copy."""
    if in_worker():
        from bertscape.base.cache import cache_dir

        return resident_model(run.spec, which, str(device), str(cache_dir()))
    return run.model(which, device=str(device))


def worker_cache_info() -> dict[str, int]:
    """Hits, misses and size of this process's resident-model cache (run it on workers with
    ``client.run(worker_cache_info)``)."""
    info = resident_model.cache_info()
    return {"hits": info.hits, "misses": info.misses, "models": info.currsize}









