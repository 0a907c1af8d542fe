"""Command line of :mod:`bertscape.base.versions` (a module of its own: the package imports
``versions`` for its cache keys, so running that module itself with ``-m`` would load it twice).

    python -m bertscape.base.versions_cli            # kinds whose code changed since the record (exit 1 if any)
    python -m bertscape.base.versions_cli --record   # record the current code of every kind as decided
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from bertscape.base.versions import KINDS, RECORD_PATH, changed, record


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bertscape.base.versions_cli", description="Check or record the code behind each kind of cached result.")
    ap.add_argument("--record", action="store_true", help="record the current code of every kind as decided")
    args = ap.parse_args(argv)
    if args.record:
        record()
        print(f"recorded {len(KINDS)} kinds in {RECORD_PATH}")
        return 0
    diff = changed()
    for kind, why in diff.items():
        print(f"{kind}: {why}")
    if not diff:
        print("every kind's code matches the record")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
