"""The study's rules on a tiny model: which pairings a profile trains, that a control pairing trains both
runs at one rate (sharing the run it has in common with the profile pairing), that every surface's β axis
follows one rule for PT and RI, and that the scale-invariant area is the α·β area rescaled."""
from __future__ import annotations

import numpy as np
import pytest

from bertscape.book import study
from bertscape.book.profiles import get_profile
from bertscape.geometry import landscape, linesearch


@pytest.fixture()
def P(tiny_bert, monkeypatch):
    # a tiny random model is flat: line searches and basin grids would run to their caps
    monkeypatch.setattr(linesearch, "CAP_DISPLACEMENTS", 2.0)
    monkeypatch.setattr(landscape, "BASIN_GROWTH_STEPS", 1)
    for fn in vars(study).values():
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()
    return get_profile("smoke", model=tiny_bert, control_lrs=("pretrained",), seeds=(0,), grid_points=(5, 3),
                       n_train=32, lr_pretrained=5e-5, lr_scratch=1e-3)


def test_pairings_follow_the_profile(P) -> None:
    assert study.pairings(P) == ["profile", "both at PT's lr"]
    both = P.replace(control_lrs=("pretrained", "scratch"))
    assert study.pairings(both)[1:] == ["both at PT's lr", "both at RI's lr"]
    same = P.replace(lr_pretrained=1e-4, lr_scratch=1e-4)
    assert study.pairings(same) == ["profile"], "no control where the two rates are already equal"
    with pytest.raises(ValueError, match=r"pairing=.both at XX's lr. is not accepted"):
        study.runs(P, "movies", 0, "both at XX's lr")


def test_a_control_trains_both_runs_at_one_rate_and_shares_the_common_run(P) -> None:
    main = study.runs(P, "movies", 0)
    ctrl = study.runs(P, "movies", 0, "both at PT's lr")
    assert {i: r.spec.lr for i, r in main.items()} == {"pretrained": 5e-5, "scratch": 1e-3}
    assert {i: r.spec.lr for i, r in ctrl.items()} == {"pretrained": 5e-5, "scratch": 5e-5}
    assert ctrl["pretrained"].spec.key() == main["pretrained"].spec.key(), "PT at its own rate is trained once"
    assert ctrl["scratch"].spec.key() != main["scratch"].spec.key()
    for pair in (main, ctrl):  # everything but the starting point and the rate is the same
        a, b = (pair[i].spec for i in ("pretrained", "scratch"))
        assert (a.task, a.seed, a.epochs, a.batch_size, a.n_train) == (b.task, b.seed, b.epochs, b.batch_size, b.n_train)


def test_every_surface_scales_beta_by_its_own_half_width(P) -> None:
    surfaces = study.surfaces(P, "movies", 0)
    _, unit_betas = P.grid_axes()
    for init, s in surfaces.items():
        unit = float(f"{study.half_width(P, 'movies', 0, init):.3g}")
        assert s.attrs["beta_unit"] == unit
        np.testing.assert_allclose(s["beta"].values, np.array(unit_betas) * unit)
        assert {"train_sample_loss", "train_loss"} <= set(s.data_vars), "per-sentence losses kept for bootstraps"


def test_relative_area_is_the_area_rescaled_by_the_run_norms(P) -> None:
    areas = study.areas(P, "movies", 0)
    basins = study.basin_surfaces(P, "movies", 0)
    for init, a in areas.items():
        s = basins[init]
        scale = s.attrs["d1_norm"] * s.attrs["d2_norm"] / a["theta1_norm"] ** 2
        assert a["area_rel"] == pytest.approx(a["area"] * scale)
        assert a["area_rel_se"] == pytest.approx(a["area_se"] * scale)
        assert len(a["boot"]) == len(a["boot_rel"]) > 1
