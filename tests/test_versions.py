"""Cached results follow the code that made them (bertscape.base.versions): the record matches the code,
a planted change to grid evaluation is caught, and a version bump changes the grid's cache key."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bertscape.base import versions
from bertscape.geometry import grids
from bertscape.geometry.directions import sub

PACKAGE = Path(versions.__file__).resolve().parents[1]  # the whole bertscape package


def test_every_kind_of_result_matches_its_recorded_code() -> None:
    diff = versions.changed()
    assert not diff, ("code behind cached results changed without a decision: bump the kind's version in "
                      "bertscape/base/versions.py if its results change, then run `python -m bertscape.base.versions_cli "
                      f"--record`: {diff}")


def test_every_named_piece_of_code_exists() -> None:
    for kind, (_, refs) in versions.KINDS.items():
        for ref in refs:
            assert versions._source(ref).strip(), (kind, ref)


def _changed_in_copy(tmp_path: Path, edit) -> dict[str, str]:
    """Copy the package, apply ``edit(package_dir)``, and list its changed kinds in a fresh process."""
    pkg = tmp_path / "bertscape"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    edit(pkg)
    code = "import json; from bertscape.base import versions; print(json.dumps(versions.changed()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _replace_once(file: str, old: str, new: str):
    def edit(pkg: Path) -> None:
        f = pkg / file
        text = f.read_text()
        assert text.count(old) == 1, (file, old)
        f.write_text(text.replace(old, new))
    return edit


def test_a_planted_change_to_grid_evaluation_is_caught(tmp_path: Path) -> None:
    plant = _replace_once("geometry/grids.py", "point = evaluate_sets(model, evalsets, precision, per_sample)",
                          "point = evaluate_sets(model, evalsets, 'fp32', per_sample)")
    diff = _changed_in_copy(tmp_path, plant)
    assert "grids" in diff and "code changed" in diff["grids"]
    assert "runs" not in diff and "tokens" not in diff  # training and tokenising do not use the grid loop


def test_an_unchanged_copy_is_clean_and_a_bump_without_record_is_caught(tmp_path: Path) -> None:
    assert _changed_in_copy(tmp_path / "a", lambda pkg: None) == {}

    bump = _replace_once("base/versions.py", '"grids": ("1", _GRID),', '"grids": ("2", _GRID),')
    diff = _changed_in_copy(tmp_path / "b", bump)
    assert list(diff) == ["grids"] and "not recorded" in diff["grids"]


def test_a_version_bump_changes_the_grid_key(toy_model, toy_points, toy_evalsets, monkeypatch: pytest.MonkeyPatch) -> None:
    t0, t1 = toy_points
    d1 = sub(t1, t0)
    sets = {"train": toy_evalsets["train"]}
    before = grids.curve_1d(toy_model, t0, d1, [0.0, 1.0], sets, precision="fp32", store=None).attrs["grid_key"]
    same = grids.curve_1d(toy_model, t0, d1, [0.0, 1.0], sets, precision="fp32", store=None).attrs["grid_key"]
    version, refs = versions.KINDS["grids"]
    monkeypatch.setitem(versions.KINDS, "grids", (version + "-bumped", refs))
    after = grids.curve_1d(toy_model, t0, d1, [0.0, 1.0], sets, precision="fp32", store=None).attrs["grid_key"]
    assert before == same and after != before
