"""Progress bars: one switch for every long loop of the package."""
from __future__ import annotations

import os


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else on unless ``$BERTSCAPE_PROGRESS`` is ``0``/``false``/empty."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("BERTSCAPE_PROGRESS", "1").lower() not in ("0", "false", "")
