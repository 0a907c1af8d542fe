"""Errors that name the parameter, the value and what is accepted."""
from __future__ import annotations

from typing import Any, Iterable


class BertscapeError(ValueError):
    """Bad input to bertscape: raised before any heavy work."""


def bad_value(param: str, value: Any, accepted: str | Iterable[Any]) -> BertscapeError:
    """Build the house error: ``<param>=<value!r> is not accepted; expected <accepted>``."""
    if not isinstance(accepted, str):
        accepted = "one of " + ", ".join(repr(a) for a in accepted)
    return BertscapeError(f"{param}={value!r} is not accepted; expected {accepted}")


def check_positive_int(param: str, value: Any, upper: int | None = None, what: str = "") -> int:
    """Validate a positive integer (optionally at most ``upper``)."""
    if isinstance(value, bool) or not isinstance(value, (int,)) or value <= 0:
        raise bad_value(param, value, "a positive integer")
    if upper is not None and value > upper:
        raise bad_value(param, value, f"an integer from 1 to {upper}{' (' + what + ')' if what else ''}")
    return int(value)
