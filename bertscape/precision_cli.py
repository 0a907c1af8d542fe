"""``python -m bertscape.precision_cli``: what ``precision="auto"`` means on this machine, and why
(:mod:`bertscape.precision`); ``--recalibrate`` measures again (do it on an idle machine)."""
from __future__ import annotations

import torch

from .precision import _calibrate, cpu_calibration, cpu_flags, describe


def main(argv: list[str] | None = None) -> int:
    """``python -m bertscape.precision_cli [--recalibrate]``: what ``auto`` resolves to here, and why."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bertscape.precision_cli", description=main.__doc__)
    ap.add_argument("--recalibrate", action="store_true", help="measure again (on an idle machine) and cache it")
    args = ap.parse_args(argv)
    if args.recalibrate:
        cpu_calibration.cache_clear()
        _calibrate(force=True)
    info = cpu_flags()
    print(f"CPU: {info['model']}, {info['cores']} cores; flags: "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in info["flags"].items()))
    print(describe("cpu"))
    if torch.cuda.is_available():
        print(describe("cuda"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
