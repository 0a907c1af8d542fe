"""Versions of cached results, tied to the code that computes them.

Every kind of cached result (fine-tuning runs, grids, directions, per-layer tables, the small JSON
memos of :mod:`bertscape.book.study`) carries a version in its cache key. A version is declared here
next to the list of code that produces that kind of result, and ``versions.json`` beside this file
records, per kind, the declared version and a hash of that code's source as it was when someone
last decided what a change means. ``tests/test_versions.py`` fails as soon as the source of a
kind's code differs from the record, so a change to, say, grid evaluation cannot silently reuse
grids computed by the old code. The person making the change decides:

* the results change (a fix, a new quantity, a different loop): bump the kind's version in
  :data:`KINDS` (old cache entries are no longer found), then record;
* the results are unchanged (a comment, a rename, a refactor): record only.

Recording is ``python -m bertscape.base.versions_cli --record``; ``python -m bertscape.base.versions_cli``
lists the kinds whose code changed since the record.

The code of a kind is named as ``"module"`` (the whole module's source) or ``"module:name"`` (one
function or class). Listing a whole module is the safe default for code whose every part can
change the results (training, evaluation, the data pipeline).
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["KINDS", "RECORD_PATH", "version", "code_hash", "changed", "record"]

_DATA = ("bertscape.data.tasks",)
_EVAL = ("bertscape.runs.evaluate", "bertscape.data.metrics", "bertscape.runs.models")
_GRID = (*_EVAL, "bertscape.geometry.grids:evaluate_grid", "bertscape.geometry.grids:_grid_identity",
         "bertscape.geometry.grids:_GridState", "bertscape.geometry.flatness:grid_axis",
         "bertscape.geometry.grids:surface_2d", "bertscape.geometry.grids:curve_1d",
         "bertscape.geometry.landscape:eval_sets_for_run")
_PROJECT = ("bertscape.geometry.trajectories:project_trajectory", "bertscape.geometry.trajectories:project_points")

#: kind → (version, the code whose results it names). Bump a version when results change.
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("1", _DATA),
    "tokens": ("1", _DATA),
    "runs": ("1", (*_DATA, *_EVAL, "bertscape.runs.train", "bertscape.runs.spec")),
    "directions": ("1", ("bertscape.geometry.directions", "bertscape.geometry.landscape:run_directions",
                         "bertscape.geometry.landscape:pca_plane")),
    "grids": ("1", _GRID),
    "layers": ("2", (*_EVAL, "bertscape.geometry.layers", "bertscape.geometry.curvature")),
    # the JSON memos of bertscape.book.study, one kind per memo name
    "memo:widths": ("3", (*_EVAL, "bertscape.geometry.linesearch", "bertscape.book.study:widths")),
    "memo:trajectory": ("1", (*_EVAL, *_PROJECT, "bertscape.geometry.trajectories:surface_value",
                              "bertscape.book.study:trajectories")),
    "memo:pca-path": ("1", (*_PROJECT, "bertscape.book.study:pca_paths")),
    "memo:path": ("1", ("bertscape.geometry.trajectories:path_ratio", "bertscape.book.study:path_stats")),
    "memo:curvature": ("2", (*_EVAL, "bertscape.geometry.curvature", "bertscape.book.study:curvature_numbers",
                             "bertscape.book.study:_curvature_directions", "bertscape.book.study:hessian_batches")),
    "memo:grid-index": ("1", ("bertscape.book.study:_indexed",)),
    "memo:theta1-norm": ("1", ("bertscape.book.study:theta1_norm_of", "bertscape.geometry.directions:norm")),
    "memo:long-train-loss": ("1", (*_EVAL, "bertscape.book.study:long_train_loss")),
    "memo:layer-evidence": ("1", (*_EVAL, "bertscape.geometry.layers:layer_point_losses",
                                  "bertscape.geometry.layers:relative_change", "bertscape.book.study:layer_evidence")),
    "memo:theta1-eval": ("1", (*_EVAL, "bertscape.book.study:theta1_evals", "bertscape.book.study:_eval_arrays")),
    "memo:restore-third": ("1", (*_EVAL, "bertscape.geometry.layers:restore_sets", "bertscape.book.study:restore_predictions",
                                 "bertscape.book.study:_eval_arrays")),
}

#: The record of decisions: per kind, ``{"version": ..., "code": <hash of the code's source>}``.
RECORD_PATH = Path(__file__).with_name("versions.json")


def version(kind: str) -> str:
    """The version string that goes into the cache keys of ``kind`` (e.g. ``"grids-1"``)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not accepted; expected one of {sorted(KINDS)}")
    return f"{kind}-{KINDS[kind][0]}"


def _source(ref: str) -> str:
    # Imported on demand: this module is imported by the ones it hashes (cache keys), so importing
    # them at the top would be circular.
    module_name, _, name = ref.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in filter(None, name.split(".")):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def code_hash(kind: str, sources: Mapping[str, str] | None = None) -> str:
    """SHA-256 (16 hex digits) of the source of every piece of code of ``kind``; ``sources`` may
    supply the text of some references instead of reading them (for tests)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not accepted; expected one of {sorted(KINDS)}")
    h = hashlib.sha256()
    for ref in KINDS[kind][1]:
        text = (sources or {}).get(ref)
        h.update(ref.encode() + b"\0" + (text if text is not None else _source(ref)).encode() + b"\0")
    return h.hexdigest()[:16]


def _read_record(path: Path = RECORD_PATH) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def changed(kinds: Sequence[str] | None = None, path: Path = RECORD_PATH) -> dict[str, str]:
    """Kinds whose declared version or code differ from the record, with what differs."""
    rec = _read_record(path)
    out = {}
    for kind in kinds or sorted(KINDS):
        r = rec.get(kind)
        if not isinstance(r, dict):
            out[kind] = "not recorded"
        elif r.get("version") != KINDS[kind][0]:
            out[kind] = f"version {r.get('version')} -> {KINDS[kind][0]} not recorded"
        elif r.get("code") != code_hash(kind):
            out[kind] = "code changed since the record (bump its version if results change; then record)"
    return out


def record(path: Path = RECORD_PATH) -> dict[str, dict[str, str]]:
    """Write the current version and code hash of every kind to the record (atomically)."""
    data = {kind: {"version": KINDS[kind][0], "code": code_hash(kind)} for kind in sorted(KINDS)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".versions-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return data
