"""Environment variables set for the duration of a block (chapter kernels, Dask units)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping

__all__ = ["temporary_environ"]


@contextlib.contextmanager
def temporary_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` inside the block; afterwards every variable is back to its
    old value (or unset, if it was unset)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
