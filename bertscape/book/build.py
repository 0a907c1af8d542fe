"""Build the book: stage the sources, execute the chapters with papermill, render with Jupyter Book.

Usage::

    python -m bertscape.book --profile quick            # what `make book` runs
    python -m bertscape.book --profile paper --tasks mrpc rte --glue-dir /data/glue
    python -m bertscape.book --no-execute               # re-render only (keeps executed copies)
    python -m bertscape.book --estimate                 # only: how long each chapter takes here, cold

Everything is written under the output folder (default ``_build/``, git-ignored); the sources are
never modified:

``_build/src/``
    the staged Jupyter Book source: ``_config.yml``, ``_toc.yml``, ``book/*`` (Markdown pages,
    ``references.bib``, images …), the *executed* chapter notebooks and ``_static/plotly.min.js``
    (copied from the installed plotly package, so the site needs no network).
``_build/stamps/``
    one JSON stamp per executed notebook: hashes of the source notebook, the parameters and the
    ``bertscape`` package code.  A notebook is executed again only when one of them changed, so a
    build with nothing changed only re-renders (seconds).
``_build/failed/``
    the partially executed copy of a notebook whose execution failed (with the traceback in it).
``_build/html/``
    the site; open ``_build/html/index.html``.

Before rendering, every staged notebook is prepared for readers (:func:`present_notebook`): code
cells are folded behind a toggle except the ``parameters`` cell, and papermill's injected-parameters
cell is removed from the page.  ``book/_static/*`` (the site's CSS) is staged into ``_static/``;
MathJax is served from the site by the ``sphinx-mathjax-offline`` extension (``_config.yml``).

Chapters run in a fresh ``python3`` kernel of the current interpreter with ``BERTSCAPE_STATIC=1``
(explorers draw their default figure instead of widgets, see :mod:`bertscape.book.widgets`) and progress
bars off.  Jupyter Book then renders with notebook execution off and warnings as errors
(``-W --nitpick``, no keep-going).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from bertscape.base.envvars import temporary_environ
from bertscape.base.errors import BertscapeError
from bertscape.base.workcount import read_log
from bertscape.book.profiles import DEFAULT_PROFILE, PROFILE_NAMES, get_profile
from bertscape.data.tasks import get_task

# The notebook tooling (papermill, nbformat, jupyter_client, plotly) is imported by the functions that
# use it: Sphinx loads this module as an extension, and the `python -m bertscape.book` checks that run
# before a build (profile, tasks, kernel) should not pay for it.

__all__ = ["REPO_ROOT", "BookBuildError", "build_book", "toc_documents", "code_hash", "stage_sources",
           "execute_notebooks", "present_notebook", "present_staged", "render_site", "site_dir_for", "main"]

#: The repository root (the folder holding ``_config.yml`` and ``_toc.yml``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The ``bertscape`` package (its code is hashed into each chapter's stamp).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
KERNEL_NAME = "python3"
#: Environment of the chapter kernels during the build.
KERNEL_ENV = {
    "BERTSCAPE_STATIC": "1",           # explorers show their default figure, no widgets
    "BERTSCAPE_PROGRESS": "0",         # no tqdm bars (they would be widget outputs)
    "TQDM_DISABLE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MPLBACKEND": "module://matplotlib_inline.backend_inline",  # figures captured as outputs
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silence the debugger's frozen-modules note on stderr
    "JUPYTER_PREFER_ENV_PATH": "1",    # this environment's kernelspec wins over a user-wide one
    "PYTHONHASHSEED": "0",
}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class BookBuildError(BertscapeError):
    """A chapter failed to execute, a page is missing, or Jupyter Book reported a warning."""


# ---------------------------------------------------------------------------- sources

def toc_documents(toc_path: str | os.PathLike) -> list[str]:
    """Document names listed in a Jupyter Book ``_toc.yml`` (root first, in reading order)."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise BookBuildError(f"{toc_path}: not a Jupyter Book table of contents (no 'root' key)")
    docs: list[str] = [str(toc["root"])]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                docs.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return docs


def resolve_document(source_dir: Path, docname: str) -> Path:
    """The file of a ToC entry: ``docname`` as given, or with ``.ipynb`` / ``.md`` appended."""
    for cand in (source_dir / docname, source_dir / f"{docname}.ipynb", source_dir / f"{docname}.md"):
        if cand.is_file():
            return cand
    raise BookBuildError(f"_toc.yml lists {docname!r} but neither {docname}.ipynb nor {docname}.md exists "
                         f"under {source_dir}")


def code_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the ``bertscape`` package's Python files, in every subpackage (paths and contents)."""
    h = hashlib.sha256()
    for p in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        h.update(p.relative_to(package_dir).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy keeping the modification time (Sphinx rebuilds only pages whose sources changed)."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.read_bytes() == src.read_bytes():
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return True


def _plotly_js() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise BookBuildError(f"plotly.min.js not found at {path}; reinstall plotly")
    return path


def _ignored(rel: Path) -> bool:
    return any(part in (".ipynb_checkpoints", "__pycache__", "_build") or part.startswith(".")
               for part in rel.parts)


def stage_sources(source_dir: Path, stage_dir: Path) -> list[tuple[str, Path]]:
    """Copy the book's non-notebook sources into ``stage_dir``; return the ToC's notebooks.

    Copied: ``_config.yml``, ``_toc.yml``, every file under ``book/`` except notebooks (Markdown,
    ``references.bib``, images …) and plotly.js into ``_static/``.  Staged files whose source is
    gone are removed.  Returns ``(docname, source path)`` for every notebook the ToC lists.
    """
    source_dir, stage_dir = Path(source_dir).resolve(), Path(stage_dir).resolve()
    for name in ("_config.yml", "_toc.yml"):
        if not (source_dir / name).is_file():
            raise BookBuildError(f"{source_dir / name} is missing")
    docs = toc_documents(source_dir / "_toc.yml")
    files = [resolve_document(source_dir, d) for d in docs]
    notebooks = [(d, f) for d, f in zip(docs, files) if f.suffix == ".ipynb"]
    wanted: set[Path] = set()
    for name in ("_config.yml", "_toc.yml"):
        _copy_if_changed(source_dir / name, stage_dir / name)
        wanted.add(stage_dir / name)
    roots = {f.relative_to(source_dir).parts[0] for f in files if len(f.relative_to(source_dir).parts) > 1}
    roots.add("book")
    for root in sorted(roots):
        base = source_dir / root
        if not base.is_dir():
            continue
        for src in base.rglob("*"):
            rel = src.relative_to(source_dir)
            if src.is_file() and not _ignored(rel) and src.suffix != ".ipynb" and \
                    rel.parts[:2] != ("book", "_static"):
                _copy_if_changed(src, stage_dir / rel)
                wanted.add(stage_dir / rel)
    static = source_dir / "book" / "_static"  # the site's own CSS: Jupyter Book loads every _static/*.css
    if static.is_dir():
        for src in static.rglob("*"):
            if src.is_file() and not _ignored(src.relative_to(static)):
                dst = stage_dir / "_static" / src.relative_to(static)
                _copy_if_changed(src, dst)
                wanted.add(dst)
    for f in files:  # a root-level page (e.g. intro.md beside _toc.yml)
        if f.suffix != ".ipynb":
            _copy_if_changed(f, stage_dir / f.relative_to(source_dir))
            wanted.add(stage_dir / f.relative_to(source_dir))
    for _, nb in notebooks:
        wanted.add(stage_dir / nb.relative_to(source_dir))
    _copy_if_changed(_plotly_js(), stage_dir / "_static" / "plotly.min.js")
    wanted.add(stage_dir / "_static" / "plotly.min.js")
    for old in list(stage_dir.rglob("*")):  # sources removed since the last build
        if old.is_file() and old not in wanted and not _ignored(old.relative_to(stage_dir)):
            old.unlink()
    return notebooks


# ---------------------------------------------------------------------------- execution

@contextlib.contextmanager
def _kernel_environment(extra: Mapping[str, str] | None = None) -> Iterator[None]:
    """Temporarily set the chapter kernels' environment (they inherit this process's)."""
    env = {**KERNEL_ENV, **(extra or {})}
    # the kernel imports the same bertscape as this driver, installed or not
    path = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent) + (os.pathsep + path if path else "")
    with temporary_environ(env):
        yield


def _check_kernel() -> None:
    """Fail early, with the fix, when ``python3`` would not start this interpreter's kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as exc:
        raise BookBuildError(f"no '{KERNEL_NAME}' Jupyter kernel; run: {sys.executable} -m ipykernel install "
                             f"--sys-prefix") from exc
    exe = spec.argv[0] if spec.argv else ""
    if exe not in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") and \
            Path(exe).resolve() != Path(sys.executable).resolve():
        raise BookBuildError(f"the '{KERNEL_NAME}' kernel runs {exe}, not this environment's {sys.executable}; "
                             f"run: {sys.executable} -m ipykernel install --sys-prefix")


def _stamp_path(out_dir: Path, docname: str) -> Path:
    return out_dir / "stamps" / (docname.replace("/", "__") + ".json")


def _problems(nb_path: Path) -> tuple[list[str], list[str]]:
    """(widget outputs, stderr snippets) of an executed notebook."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    widgets, stderr = [], []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if _WIDGET_MIME in out.get("data", {}):
                widgets.append(f"cell {i}")
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(out.get("text", "")).strip().splitlines()
                if text:
                    stderr.append(f"cell {i}: {text[-1][:160]}")
    return widgets, stderr


def _stamp(src: Path, parameters: Mapping[str, Any], pkg: str) -> dict[str, Any]:
    """What a notebook's executed copy depends on: the notebook, the parameters, the package code."""
    return {"notebook": _sha(src), "parameters": json.loads(json.dumps(dict(parameters), default=str)),
            "code": pkg, "python": sys.version.split()[0]}


def stale_notebooks(notebooks: Sequence[tuple[str, Path]], source_dir: Path, stage_dir: Path, out_dir: Path,
                    parameters: Mapping[str, Any], force: bool = False) -> list[str]:
    """The docnames whose executed copy is missing or whose stamp (:func:`_stamp`) changed: the chapters
    a build would execute."""
    pkg = code_hash()
    out = []
    for docname, src in notebooks:
        old = None
        stamp_file = _stamp_path(out_dir, docname)
        if stamp_file.is_file():
            with contextlib.suppress(ValueError):
                old = json.loads(stamp_file.read_text())
        if force or old != _stamp(src, parameters, pkg) or not (stage_dir / src.relative_to(source_dir)).is_file():
            out.append(docname)
    return out


def _work_text(path: Path) -> str:
    """What a chapter's kernel counted (:mod:`bertscape.base.workcount`), for its log line."""
    w = read_log(path)
    if not w:
        return ""
    return (f" ({w['train_steps']:,} training steps, {w['eval_sentences']:,} sentence evaluations, "
            f"{w['hvp_sentences'] + w['layer_hvp_sentences']:,} sentences in Hessian-vector products)")


def chapter_work(out_dir: str | os.PathLike, docname: str) -> dict[str, int] | None:
    """The work the last execution of a chapter did (its kernel's counts), or ``None``."""
    return read_log(_stamp_path(Path(out_dir), docname).with_suffix(".work.json"))


class _BuildClock:
    """The whole-book progress line: after each chapter, the time so far and the time left (the
    remaining chapters' estimates scaled by how the finished ones compared with theirs)."""

    def __init__(self, estimates: Mapping[str, float], todo: Sequence[str], log: Any) -> None:
        self.estimates, self.todo, self.log = dict(estimates), list(todo), log
        self.spent, self.planned, self.finished = 0.0, 0.0, 0

    def done(self, docname: str, seconds: float) -> None:
        self.finished += 1
        self.spent += seconds
        self.planned += self.estimates.get(docname, 0.0)
        left = [self.estimates.get(d, 0.0) for d in self.todo[self.finished:]]
        if not self.estimates:
            return
        scale = self.spent / self.planned if self.planned > 0 else 1.0
        self.log(f"[book] {self.finished}/{len(self.todo)} chapters in {self.spent / 60:.1f} min "
                 f"(estimated {self.planned / 60:.1f}); about {scale * sum(left) / 60:.1f} min left")


def execute_notebooks(notebooks: Sequence[tuple[str, Path]], source_dir: Path, stage_dir: Path, out_dir: Path,
                      parameters: Mapping[str, Any], *, force: bool = False, timeout: int | None = None,
                      log: Any = print, estimates: Mapping[str, float] | None = None,
                      env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Execute each notebook into the stage unless its stamp is current; return docname → status.

    The status is ``executed`` or ``up to date``.  The stamp hashes the source notebook, the
    parameters and :func:`code_hash`.  A failure raises :class:`BookBuildError` and keeps the
    partial notebook in ``out_dir/failed/``. ``estimates`` (docname → seconds) drive a progress line
    with the time left after each chapter; ``env`` is added to the kernels' environment.
    """
    import papermill as pm

    status: dict[str, str] = {}
    if not notebooks:
        return status
    _check_kernel()
    pkg = code_hash()
    todo = stale_notebooks(notebooks, source_dir, stage_dir, out_dir, parameters, force)
    clock = _BuildClock(estimates or {}, todo, log)
    for docname, src in notebooks:
        target = stage_dir / src.relative_to(source_dir)
        stamp, stamp_file = _stamp(src, parameters, pkg), _stamp_path(out_dir, docname)
        if docname not in todo:
            status[docname] = "up to date"
            log(f"[book] {docname}: up to date (notebook, parameters and package code unchanged)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.executing.ipynb")
        log(f"[book] {docname}: executing with {dict(parameters)}")
        t0 = time.perf_counter()
        work_log = _stamp_path(out_dir, docname).with_suffix(".work.json")
        work_log.parent.mkdir(parents=True, exist_ok=True)
        work_log.unlink(missing_ok=True)
        try:
            with _kernel_environment({**(env or {}), "BERTSCAPE_WORK_LOG": str(work_log)}):
                pm.execute_notebook(str(src), str(tmp), parameters=dict(parameters), kernel_name=KERNEL_NAME,
                                    cwd=str(target.parent), progress_bar=sys.stderr.isatty(),
                                    execution_timeout=timeout, request_save_on_cell_execute=False)
        except Exception as exc:
            failed = out_dir / "failed" / target.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            if tmp.is_file():
                os.replace(tmp, failed)
            raise BookBuildError(f"{docname} failed to execute ({type(exc).__name__}); the partial notebook "
                                 f"with the error is {failed}\n{exc}") from exc
        widgets, stderr = _problems(tmp)
        if widgets:
            failed = out_dir / "failed" / target.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, failed)
            raise BookBuildError(f"{docname}: widget outputs in {', '.join(widgets)} would render as broken widgets "
                                 f"in the static site; show explorers with bertscape.book.widgets (they honour "
                                 f"BERTSCAPE_STATIC=1) and keep progress bars off. Notebook: {failed}")
        os.replace(tmp, target)
        stamp_file.parent.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps(stamp, indent=1, sort_keys=True))
        status[docname] = "executed"
        log(f"[book] {docname}: executed in {time.perf_counter() - t0:.1f} s" + _work_text(work_log))
        clock.done(docname, time.perf_counter() - t0)
        for s in stderr:
            log(f"[book]   stderr (not shown in the site) {s}")
    return status


#: Tags that already decide how a cell is shown (left as the author set them).
_SHOW_TAGS = {"parameters", "hide-input", "hide-cell", "remove-input", "remove-cell", "show-input"}


def present_notebook(nb: Any) -> bool:
    """Prepare an executed notebook for readers, in place; return whether anything changed.

    * papermill's injected-parameters cell is removed from the page (the parameters cell above it
      says what can be set; the profile line of each chapter says what was run);
    * every other code cell is folded (``hide-input``: its output shows, its source is a click away),
      except the ``parameters`` cell and cells whose author chose with a tag (``show-input`` keeps a
      cell's code open);
    * a captioned cell (``mystnb.figure``) that drew more than one figure (one per task) keeps its
      caption but loses its label: one label can name one figure only (Sphinx would warn).
    """
    changed = False
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
            changed = True
        elif not (_SHOW_TAGS & set(tags)) and "injected-parameters" not in tags:
            cell.metadata["tags"] = tags + ["hide-input"]
            changed = True
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        shown = [o for o in cell.get("outputs", []) if o.get("output_type") in ("display_data", "execute_result")
                 and "scrapbook" not in o.get("metadata", {})]  # glued (not displayed) values are no figures
        if figure.get("name") and len(shown) > 1:
            del figure["name"]
            changed = True
    return changed


def present_staged(notebooks: Sequence[tuple[str, Path]], source_dir: Path, stage_dir: Path) -> None:
    """Apply :func:`present_notebook` to every staged notebook (rewritten only when it changes)."""
    import nbformat

    for _, src in notebooks:
        target = stage_dir / src.relative_to(source_dir)
        if not target.is_file():
            continue
        nb = nbformat.read(target, as_version=4)
        if present_notebook(nb):
            tmp = target.with_name(f".{target.stem}.presenting.ipynb")
            nbformat.write(nb, tmp)
            os.replace(tmp, target)


def _copy_unexecuted(notebooks: Sequence[tuple[str, Path]], source_dir: Path, stage_dir: Path,
                     log: Any = print) -> None:
    for docname, src in notebooks:
        target = stage_dir / src.relative_to(source_dir)
        if not target.is_file():
            log(f"[book] {docname}: no executed copy yet; rendering the source without outputs")
            _copy_if_changed(src, target)


# ---------------------------------------------------------------------------- rendering

def site_dir_for(out_dir: Path) -> tuple[Path, Path]:
    """(``--path-output`` for Jupyter Book, the resulting HTML folder).

    Jupyter Book writes into ``<path-output>/_build/html``; for an ``out_dir`` named ``_build`` the
    path-output is its parent, so the site is ``out_dir/html``; otherwise ``out_dir/_build/html``.
    """
    out_dir = Path(out_dir).resolve()
    jb_out = out_dir.parent if out_dir.name == "_build" else out_dir
    return jb_out, jb_out / "_build" / "html"


def render_site(stage_dir: Path, out_dir: Path, *, fresh: bool = False, log: Any = print) -> Path:
    """Run ``jupyter-book build`` on the stage (execution off, ``-W --nitpick``); return the HTML folder."""
    jb_out, site = site_dir_for(out_dir)
    cmd = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(stage_dir), "--path-output", str(jb_out), "--builder", "html", "-W", "--nitpick"]
    if fresh:
        cmd.append("--all")
    log("[book] jupyter-book build " + " ".join(cmd[4:]))
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV}
    # _config.yml loads this module as a Sphinx extension: make it importable, installed or not
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, cwd=stage_dir, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not (site / "index.html").is_file():
        lines = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
        # the warning that stopped the build, not the long traceback that follows it
        keys = ("warning", "error", "exception")
        cause = [ln for ln in lines if any(k in ln.lower() for k in keys) and not ln.startswith((" ", "Traceback"))]
        tail = "\n".join(cause[:15] or lines[-40:])
        raise BookBuildError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    return site


# ---------------------------------------------------------------------------- Sphinx extension

def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Drop repeated ``<script>`` entries from a page.

    With Sphinx 7.4, sphinx-thebe and sphinx-togglebutton register their inline scripts twice;
    once with filename None and once with "" (so Sphinx does not see them as equal); the second
    ``const THEBE_JS_URL = …`` is a SyntaxError in the browser console of every page.
    """
    files = context.get("script_files")
    if not files:
        return
    seen: set[tuple] = set()
    unique = []
    for js in files:
        attrs = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", str(js)) or "", tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _refresh_root(app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Re-read the root page (the introduction) whenever another page changed.

    The introduction pastes results glued on the scorecard page (cross-document glue, resolved when
    the introduction is written); Sphinx would otherwise keep the introduction of the previous build
    because its own source did not change.
    """
    root = env.config.root_doc
    others = (set(added) | set(changed) | set(removed)) - {root}
    return [root] if others and root in env.found_docs else []


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension (``sphinx: extra_extensions: [bertscape.book]`` in ``_config.yml``)."""
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("env-get-outdated", _refresh_root)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------------------- entry points

def build_book(profile: str = DEFAULT_PROFILE, out_dir: str | os.PathLike | None = None,
               tasks: Sequence[str] | None = None, execute: bool = True, *,
               source_dir: str | os.PathLike | None = None, parameters: Mapping[str, Any] | None = None,
               force: bool = False, fresh: bool = False, timeout: int | None = None, log: Any = print,
               estimate: bool = True, bundle: str | os.PathLike | None = None) -> Path:
    """Stage, execute and render the book; return the folder holding ``index.html``.

    Args:
        profile: profile name passed to every chapter as the ``profile`` parameter.
        out_dir: output folder (default ``<repo>/_build``); the site lands in ``out_dir/html`` when the
            folder is named ``_build``, else in ``out_dir/_build/html``.
        tasks: passed as the ``tasks`` parameter (``None``: each chapter uses the profile's tasks).
        execute: run the chapters (when their stamps are stale); ``False`` renders the executed copies
            already staged (or the bare sources where none exist).
        source_dir: the book source root (``_config.yml``, ``_toc.yml``, ``book/``); default the repo.
        parameters: further papermill parameters (e.g. ``{"glue_dir": "/data/glue"}``).
        force: execute every chapter even when its stamp is current.
        fresh: make Jupyter Book re-render every page (``--all``).
        timeout: per-cell execution timeout in seconds (``None``: none).
        log: where progress lines go (``print``; pass ``lambda *_: None`` to silence).
        estimate: before executing, print how long each chapter that will run should take on this
            machine (:func:`chapter_estimates`) and, after each chapter, the time left.
        bundle: a results bundle (:mod:`bertscape.book.bundle`) to import into the cache first; the chapters
            then render its results (its settings and precisions become their parameters) and each page
            names the bundle as the source of its numbers.
    """
    get_profile(profile, **({"tasks": list(tasks)} if tasks else {}))  # validate before any work
    if tasks:
        for t in tasks:
            get_task(t)
    source = Path(source_dir).resolve() if source_dir else REPO_ROOT
    out = Path(out_dir).resolve() if out_dir else REPO_ROOT / "_build"
    stage = out / "src"
    params: dict[str, Any] = {"profile": profile, "tasks": list(tasks) if tasks else None}
    params.update(parameters or {})
    env: dict[str, str] = {}
    if bundle is not None:
        params, env = _bundle_parameters(bundle, params, log)
    t0 = time.perf_counter()
    notebooks = stage_sources(source, stage)
    if execute:
        todo = stale_notebooks(notebooks, source, stage, out, params, force)
        est = chapter_estimates(params, todo, log) if estimate and todo and bundle is None else {}
        execute_notebooks(notebooks, source, stage, out, params, force=force, timeout=timeout, log=log,
                          estimates=est, env=env)
    else:
        _copy_unexecuted(notebooks, source, stage, log=log)
    present_staged(notebooks, source, stage)
    t1 = time.perf_counter()
    site = render_site(stage, out, fresh=fresh, log=log)
    t2 = time.perf_counter()
    log(f"[book] executed in {t1 - t0:.1f} s, rendered in {t2 - t1:.1f} s")
    log(f"[book] site: {site / 'index.html'}")
    return site


def _bundle_parameters(bundle: str | os.PathLike, params: Mapping[str, Any], log: Any) -> tuple[dict, dict]:
    """Import a results bundle and return the chapters' parameters that render it (its settings and
    precisions as overrides) and the kernels' environment that names it as the pages' source."""
    # bundle imports torch and the study: loaded only when a bundle is rendered
    from bertscape.book import bundle as B

    manifest = B.import_bundle(bundle, log=log)
    if manifest["profile"] != params.get("profile"):
        raise BookBuildError(f"bundle={str(bundle)!r} holds profile {manifest['profile']!r}, not "
                             f"{params.get('profile')!r}: run make book PROFILE={manifest['profile']} BUNDLE={bundle}")
    out = dict(params)
    out["overrides"] = {**B.render_overrides(manifest), **(params.get("overrides") or {})}
    return out, {"BERTSCAPE_BUNDLE": str(Path(bundle).resolve())}


def chapter_estimates(parameters: Mapping[str, Any], docnames: Sequence[str], log: Any = print) -> dict[str, float]:
    """Measure this machine's rates and print the estimate of the chapters ``docnames`` (numbered
    ``book/NN_…``) for the profile the ``parameters`` select (:mod:`bertscape.book.workplan`); returns
    docname → seconds. Runs already in the cache are not counted."""
    # the estimate loads torch and the model: imported here, not when Sphinx loads this module
    from bertscape.book import workplan
    from bertscape.book.profiles import from_params

    P = from_params(parameters.get("profile", DEFAULT_PROFILE), parameters.get("tasks"), parameters.get("glue_dir"),
                    parameters.get("overrides"), seeds=parameters.get("seeds"), model=parameters.get("model"))
    ids = {d: Path(d).name[:2] for d in docnames if Path(d).name[:2] in workplan.CHAPTERS}
    log("[book] measuring this machine's speed for the estimate (a few seconds) …")
    rates = workplan.measure_rates(P)
    est = workplan.estimate(P, rates, tuple(dict.fromkeys(ids.values())), skip_cached_runs=True)
    for line in workplan.format_estimate(P, est, rates).splitlines():
        log(line)
    return {d: est[c]["seconds"] for d, c in ids.items()}


def _parse_param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param {text!r}: expected KEY=VALUE (VALUE as JSON or a string)")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bertscape.book --profile quick [--tasks T ...] [--out DIR]``."""
    ap = argparse.ArgumentParser(prog="python -m bertscape.book", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES,
                    help=f"run size passed to every chapter (default {DEFAULT_PROFILE})")
    ap.add_argument("--tasks", nargs="+", help="tasks passed to every chapter (default: the profile's)")
    ap.add_argument("--glue-dir", help="GLUE folder passed to every chapter as glue_dir")
    ap.add_argument("--param", action="append", default=[], type=_parse_param, metavar="KEY=VALUE",
                    help="extra papermill parameter (repeatable; VALUE parsed as JSON when it can be)")
    ap.add_argument("--out", default=None, help="output folder (default <repo>/_build)")
    ap.add_argument("--source", default=None, help="book source root (default: the repository)")
    ap.add_argument("--no-execute", action="store_true", help="render without executing the chapters")
    ap.add_argument("--force", action="store_true", help="execute every chapter even if up to date")
    ap.add_argument("--fresh", action="store_true", help="re-render every page")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--estimate", action="store_true",
                    help="only print how long each chapter would take on this machine, cold (and exit)")
    ap.add_argument("--no-estimate", action="store_true", help="build without the estimate printed before it")
    ap.add_argument("--bundle", help="a results bundle to import and render (python -m bertscape.book.bundle export …)")
    args = ap.parse_args(argv)
    params = dict(args.param)
    if args.glue_dir:
        params["glue_dir"] = args.glue_dir
    try:
        if args.estimate:
            get_profile(args.profile)
            full = {"profile": args.profile, "tasks": list(args.tasks) if args.tasks else None, **params}
            source = Path(args.source).resolve() if args.source else REPO_ROOT
            docs = [d for d in toc_documents(source / "_toc.yml") if resolve_document(source, d).suffix == ".ipynb"]
            chapter_estimates(full, docs)
            return 0
        build_book(args.profile, args.out, args.tasks, execute=not args.no_execute, source_dir=args.source,
                   parameters=params, force=args.force, fresh=args.fresh, timeout=args.timeout,
                   estimate=not args.no_estimate, bundle=args.bundle)
    except BertscapeError as exc:
        print(f"[book] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
