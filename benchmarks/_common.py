"""What the benchmark scripts share: the repository root on ``sys.path`` (they run from a checkout
as ``python benchmarks/<name>.py``, which puts this folder on the path, so ``import _common``
works), the offline, quiet environment of the CPU benchmarks, and writing a script's table into
``RESULTS.md`` between its markers.

Import it before bertscape: ``import _common`` inserts the root; call :func:`offline_quiet`
before transformers is imported.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: The repository root.
ROOT = Path(__file__).resolve().parents[1]
#: The results file every benchmark writes its section into.
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def offline_quiet() -> None:
    """No hub access (the embedded model needs none) and no progress bars, unless the caller's
    environment already says otherwise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("BERTSCAPE_PROGRESS", "0")


def write_results(name: str, body: str) -> None:
    """Put ``body`` (a Markdown section) into :data:`RESULTS` between the markers
    ``<!-- name:start -->`` and ``<!-- name:end -->``, replacing what was there, or append it."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
