"""Precision by measurement: ``auto`` resolves per device, a CPU's choice comes from a cached
calibration (forced either way here with $BERTSCAPE_CPU_BF16), and run keys hold the resolved value."""
from __future__ import annotations

import os
import warnings

import pytest

from bertscape.base.errors import BertscapeError
from bertscape.book import chapter, study
from bertscape.book.profiles import get_profile
from bertscape.runs import precision


@pytest.fixture(autouse=True)
def _fresh_memos():
    precision.cpu_calibration.cache_clear()
    precision._warn_slow_bf16.cache_clear()
    yield
    precision.cpu_calibration.cache_clear()
    precision._warn_slow_bf16.cache_clear()


@pytest.mark.parametrize("forced, expected", [("0", "fp32"), ("1", "bf16")])
def test_the_quick_profile_resolves_every_precision_by_the_cpu_decision(monkeypatch, forced, expected):
    monkeypatch.setenv("BERTSCAPE_CPU_BF16", forced)
    P = get_profile("quick", device="cpu")
    assert (P.precision, P.curve_precision, P.grid_precision) == ("auto", "auto", "auto")
    for field in ("precision", "curve_precision", "grid_precision"):
        assert study._prec(P, field) == expected
    spec = P.run_spec("movies", "pretrained")
    assert spec.resolved_precision() == expected
    # "auto" never keys a run: its key is the key of the precision it resolved to
    assert spec.key() == spec.replace(precision=expected).key()
    assert spec.key() != spec.replace(precision={"fp32": "bf16", "bf16": "fp32"}[expected]).key()
    assert f"training {expected} (auto)" in chapter.precision_summary(P)


def test_fp32_is_fp32_everywhere_and_bad_names_are_refused(monkeypatch):
    monkeypatch.setenv("BERTSCAPE_CPU_BF16", "1")
    assert precision.resolve("fp32", "cpu") == "fp32"
    assert precision.autocast_dtype("fp32", "cpu") is None
    with pytest.raises(BertscapeError, match=r"precision='fp16' is not accepted; expected one of 'auto', 'fp32', 'bf16'"):
        precision.resolve("fp16", "cpu")
    monkeypatch.setenv("BERTSCAPE_CPU_BF16", "maybe")
    with pytest.raises(BertscapeError, match="BERTSCAPE_CPU_BF16='maybe'"):
        precision.resolve("auto", "cpu")


def test_a_pinned_bf16_warns_once_where_bf16_is_slower(monkeypatch):
    monkeypatch.setenv("BERTSCAPE_CPU_BF16", "0")
    with pytest.warns(precision.SlowPrecisionWarning, match="emulated"):
        assert precision.resolve("bf16", "cpu") == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision.resolve("bf16", "cpu")  # once per process
    monkeypatch.setenv("BERTSCAPE_CPU_BF16", "1")
    precision._warn_slow_bf16.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve("bf16", "cpu") == "bf16"


@pytest.mark.parametrize("speedup, faster", [(0.05, False), (1.1, False), (1.25, True), (2.3, True)])
def test_the_calibration_decides_by_the_stated_margin_and_is_measured_once(monkeypatch, fresh_cache, speedup, faster):
    monkeypatch.delenv("BERTSCAPE_CPU_BF16", raising=False)
    calls = []

    def fake_measure():
        calls.append(1)
        return {"fp32_seconds": 1.0, "bf16_seconds": 1.0 / speedup, "speedup": speedup, "pairs": 5}

    monkeypatch.setattr(precision, "_measure", fake_measure)
    assert precision.cpu_bf16_faster() is faster
    assert precision.resolve("auto", "cpu") == ("bf16" if faster else "fp32")
    precision.cpu_calibration.cache_clear()  # a new process: the stored calibration is read back
    assert precision.cpu_calibration()["speedup"] == speedup and len(calls) == 1
    assert list((fresh_cache / "machine").glob("precision-*.json"))
    other = "SSE41" if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2" else "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", other)  # another ISA limit is another machine: measured again
    precision.cpu_calibration.cache_clear()
    precision.cpu_calibration()
    assert len(calls) == 2


@pytest.mark.slow
def test_the_real_calibration_agrees_with_the_cpu_flags(monkeypatch, fresh_cache):
    """Measured on this machine: without AVX-512-BF16 or AMX, bf16 autocast is emulated and must not
    be chosen; with AMX it is natively fast and measured faster than fp32, unless the environment
    switched AMX off for the libraries (an ISA limit, which the CPU's flags do not show)."""
    monkeypatch.delenv("BERTSCAPE_CPU_BF16", raising=False)
    cal = precision.cpu_calibration()
    flags = precision.cpu_flags()["flags"]
    assert cal["fp32_seconds"] > 0 and cal["bf16_seconds"] > 0 and cal["pairs"] >= 1
    if not (flags["avx512_bf16"] or flags["amx_bf16"]):
        assert not cal["bf16_faster"], cal
    if flags["amx_bf16"] and not any(precision.isa_limits().values()):
        assert cal["speedup"] > 1.0, cal
    assert precision.describe("cpu").startswith(f"auto = {'bf16' if cal['bf16_faster'] else 'fp32'}")


def test_the_calibration_measures_inside_an_evaluation(monkeypatch, fresh_cache):
    """The first precision resolved on a machine may be asked for inside ``torch.inference_mode`` (an
    evaluation with ``precision="auto"``): the calibration still times training steps with gradients."""
    import torch

    monkeypatch.delenv("BERTSCAPE_CPU_BF16", raising=False)
    monkeypatch.setattr(precision, "CALIBRATION_REPEATS", 1)
    precision.cpu_calibration.cache_clear()
    with torch.inference_mode():
        cal = precision.cpu_calibration()
    assert cal["fp32_seconds"] > 0 and cal["bf16_seconds"] > 0
    precision.cpu_calibration.cache_clear()
