"""The package's layout is its architecture: subpackages in layers, imports only going down, no circle,
no long function without a stated reason, and profiles read only at the top (ARCHITECTURE.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bertscape

PACKAGE = Path(bertscape.__file__).resolve().parent
#: The layers, from the ground up: a module may import its own layer and the layers before it.
LAYERS = ("base", "data", "runs", "compute", "geometry", "evidence", "book")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every bertscape module ``path`` imports, at its top or inside a function (absolute or relative)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "bertscape"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "bertscape":
                continue
            for a in node.names:  # `from bertscape.geometry import landscape` imports a module
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return {m for m in found if m in MODULES}


MODULES = _modules()
EDGES = {name: _imports(path, name) for name, path in MODULES.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer() -> None:
    loose = [m for m in MODULES if m != "bertscape" and _layer(m) is None]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


def test_imports_only_go_down() -> None:
    upward = [(a, b) for a, bs in EDGES.items() if a != "bertscape" for b in bs
              if _layer(b) is not None and _layer(b) > _layer(a)]
    assert not upward, "imports that run back up a layer:\n" + "\n".join(f"  {a} -> {b}" for a, b in upward)


def test_only_the_book_reads_profiles() -> None:
    readers = sorted(a for a, bs in EDGES.items() if "bertscape.book.profiles" in bs and not a.startswith("bertscape.book"))
    assert readers == [], f"modules below the book that read the profiles: {readers}"


def test_no_circle_of_imports() -> None:
    """Tarjan's strongly connected components over the module graph (lazy imports included)."""
    index, low, stack, on, circles = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in EDGES.get(v, ()):
            if w == v or w == "bertscape":
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in EDGES:
        if v not in index and v != "bertscape":
            visit(v)
    assert not circles, f"modules that import each other in a circle: {circles}"


def test_the_layer_rule_catches_an_import_that_runs_up(tmp_path: Path) -> None:
    """The parser sees a lazy relative import too (the check can fail)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ..book import study\n    return study\n")
    assert "bertscape.book.study" in _imports(f, "bertscape.geometry.m")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_over_80_lines_without_a_reason(path: Path) -> None:
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
            if "80 lines" not in (ast.get_docstring(node) or ""):
                long.append(f"{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"{path.name}: functions over 80 lines whose docstring does not say why: {long}"
