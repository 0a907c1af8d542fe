"""The profile's device reaches every stage of the study.

A fake device string ("cuda:7", accepted by the profile) is resolved by a recording stand-in for
``models.resolve_device`` that hands back the CPU; each stage of :mod:`bertscape.book.study` then runs on
a tiny model and must have resolved "cuda:7" (and never "auto" or "cpu", the defaults a stage that
dropped the device would fall back to). The GPU check itself is a benchmark (benchmarks/gpu_study.py).
"""
from __future__ import annotations

import torch

from bertscape.book import study
from bertscape.book.profiles import get_profile
from bertscape.geometry import landscape, layers, linesearch
from bertscape.runs import models, train

FAKE = "cuda:7"
#: Stages that evaluate or train a model. pca_paths and path_stats work on stored checkpoints
#: (tensors loaded on the CPU) and take no device by design.
STAGES = {
    "main_runs": lambda P: study.main_runs(P, "movies", 0),
    "control_runs": lambda P: study.control_runs(P, "movies", 0),
    "long_runs": lambda P: study.long_runs(P, "movies", 0),
    "curves": lambda P: study.curves(P, "movies", 0),
    "widths": lambda P: study.widths(P, "movies", 0),
    "surfaces": lambda P: study.surfaces(P, "movies", 0),
    "basin_surfaces": lambda P: study.basin_surfaces(P, "movies", 0),
    "trajectories": lambda P: study.trajectories(P, "movies", 0),
    "curvature_numbers": lambda P: study.curvature_numbers(P, "movies", 0),
    "theta1_evals": lambda P: study.theta1_evals(P, "movies", 0),
    "restore_predictions": lambda P: study.restore_predictions(P, "movies", 0),
    "layer_reports": lambda P: study.layer_reports(P, "movies", 0),
    "segments": lambda P: study.segments(P, "movies"),
}


def test_the_profile_device_reaches_every_stage(tiny_bert, fresh_cache, monkeypatch) -> None:
    seen: list[str] = []

    def recording(device):
        seen.append(str(device))
        if str(device).startswith("cuda"):
            return torch.device("cpu")
        return real(device)

    real = models.resolve_device
    for module in (models, landscape, layers, study, train):  # every module that imports resolve_device
        monkeypatch.setattr(module, "resolve_device", recording)
    # a tiny random model is flat: line searches and basin grids would run to their caps
    monkeypatch.setattr(linesearch, "CAP_DISPLACEMENTS", 2.0)
    monkeypatch.setattr(landscape, "BASIN_GROWTH_STEPS", 1)
    P = get_profile("smoke", model=tiny_bert, device=FAKE, control_lrs=("pretrained",), long_epochs=1, seeds=(0,),
                    layer_alphas=(0.0, 0.5, 1.0, 1.5), layer_hessian_steps=1, cka_tokens=64, grid_points=(5, 3),
                    hessian_steps=1, hessian_n_eval=4, hessian_batches=2, segment_points=3, n_train=32)
    missing = {}
    for name, stage in STAGES.items():
        for fn in vars(study).values():  # every stage computes afresh (no per-process memo)
            if hasattr(fn, "cache_clear"):
                fn.cache_clear()
        seen.clear()
        stage(P)
        if FAKE not in seen or set(seen) - {FAKE}:
            missing[name] = sorted(set(seen))
    assert not missing, f"stages that did not resolve the profile's device {FAKE!r} (devices seen): {missing}"
