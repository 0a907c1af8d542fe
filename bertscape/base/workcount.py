"""Counts of the work this process has done, by kind: sentences evaluated, optimiser steps (and the
tokens they saw), resume states written, and Hessian-vector products (per batch, and the sentences in
them; whole or restricted to some parameters).

The book's time estimate (:mod:`bertscape.book.workplan`) counts the same kinds from a profile before any
work starts and multiplies them by measured rates; these counters are how a test checks that the plan
counts what a build really does. With ``$BERTSCAPE_WORK_LOG`` set to a file, a process writes its counts
there when it exits (the book driver sets it for each chapter's kernel and reads it back).
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
from typing import Iterator

__all__ = ["KINDS", "LOG_ENV", "add", "snapshot", "counting", "read_log"]

#: What is counted: ``eval_sentences`` (a forward pass over one sentence, no gradient), ``train_steps``
#: (one optimiser step on a training batch) and ``train_tokens`` (the padded tokens of its batch: a step's
#: time grows with them), ``resume_saves`` (a run's state written so an interrupted run can resume),
#: ``hvp_batches`` and ``hvp_sentences`` (a Hessian-vector product over every parameter on one batch, and
#: its sentences), and ``layer_hvp_sentences`` (the sentences of a Hessian-vector product restricted to
#: some parameters, e.g. one layer's: cheaper per sentence than the whole Hessian's).
KINDS = ("eval_sentences", "train_steps", "train_tokens", "resume_saves", "hvp_batches", "hvp_sentences",
         "layer_hvp_sentences")
_COUNTS: collections.Counter = collections.Counter()


def add(kind: str, n: int = 1) -> None:
    """Count ``n`` units of ``kind`` (one of :data:`KINDS`)."""
    _COUNTS[kind] += int(n)


def snapshot() -> dict[str, int]:
    """The counts so far, every kind present."""
    return {k: int(_COUNTS[k]) for k in KINDS}


def _write_log() -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "w") as f:  # one kernel per file: the driver names a file per chapter
            json.dump(snapshot(), f)


#: Where a process writes its counts at exit, when set.
LOG_ENV = "BERTSCAPE_WORK_LOG"
atexit.register(_write_log)


def read_log(path: str | os.PathLike) -> dict[str, int] | None:
    """The counts a process wrote to ``path`` at exit, or ``None`` (no file, or not counts)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return {k: int(data.get(k, 0)) for k in KINDS} if isinstance(data, dict) else None


@contextlib.contextmanager
def counting() -> Iterator[dict[str, int]]:
    """The work done inside the block: the yielded dict is filled with the differences when it ends."""
    before = snapshot()
    out: dict[str, int] = {}
    try:
        yield out
    finally:
        after = snapshot()
        out.update({k: after[k] - before[k] for k in KINDS})
