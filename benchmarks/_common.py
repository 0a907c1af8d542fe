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


def machine_line(rates: bool = True) -> str:
    """One line on the machine a benchmark ran on: the CPU model, its cores and torch threads, the flags
    that decide bf16's speed, any instruction-set limit from the environment, and the cached precision
    calibration (fp32 vs bf16 autocast, :func:`bertscape.runs.precision.cpu_calibration`) and, with
    ``rates``, the rates the book's time estimate measures (:func:`bertscape.book.workplan.measure_rates`,
    about ten seconds)."""
    import torch

    from bertscape.runs.precision import cpu_calibration, cpu_flags, isa_limits

    info = cpu_flags()
    flags = ", ".join(k for k, v in info["flags"].items() if v) or "no AVX"
    limits = ", ".join(f"{k}={v}" for k, v in isa_limits().items() if v)
    line = (f"Machine: {info['model']}, {info['cores']} cores, torch {torch.__version__} on "
            f"{torch.get_num_threads()} threads; flags: {flags}" + (f"; limited by {limits}" if limits else ""))
    if torch.cuda.is_available():
        return line + f"; GPU: {torch.cuda.get_device_name(0)}"
    cal = cpu_calibration()
    line += (f"; calibration: bf16 autocast {cal['speedup']:.2f}× the speed of fp32 "
             f"({'bf16' if cal['bf16_faster'] else 'fp32'} chosen by precision=\"auto\")")
    if rates:
        from bertscape.book.profiles import get_profile
        from bertscape.book.workplan import measure_rates

        r = measure_rates(get_profile("quick"))
        line += f"; the book's rates (quick profile), {r.describe.replace('measured on ', 'measured on this machine: ', 1)}"
    return line


def write_results(name: str, body: str) -> None:
    """Put ``body`` (a Markdown section) into :data:`RESULTS` between the markers
    ``<!-- name:start -->`` and ``<!-- name:end -->``, replacing what was there, or append it. The
    section ends with :func:`machine_line` unless the body already names its machine that way."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if "Machine: " not in body:
        body = body.rstrip() + "\n\n" + machine_line()
    section = f"{start}\n{body}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
