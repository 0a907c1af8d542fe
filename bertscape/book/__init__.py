"""The book: its profiles (``profiles``), the experiments every chapter shares (``study``), the claims
(``claims``), a chapter's first and last cells (``chapter``), tables and sentences for readers
(``report``, ``tables``), figures and explorers (``plots``, ``widgets``), the time estimate
(``workplan``), results bundles (``bundle``), the cache filled ahead on a cluster (``sweep``) and the
build driver (``build``; ``python -m bertscape.book``). The only layer that reads profiles.

May import: every other layer of bertscape.
"""
from __future__ import annotations

from typing import Any


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension hook (``sphinx: extra_extensions: [bertscape.book]`` in ``_config.yml``): see
    :func:`bertscape.book.build.setup`."""
    # imported here, not above: `import bertscape.book` (e.g. to reach a submodule) should not load the
    # build driver and its dependencies
    from bertscape.book.build import setup as _setup

    return _setup(app)
