"""Profiles: they resolve, build valid RunSpecs, validate overrides and name bad input."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from bertscape.base.errors import BertscapeError
from bertscape.book.profiles import (
    PROFILE_NAMES,
    Profile,
    from_params,
    get_profile,
    profile_table,
)
from bertscape.runs.spec import RunSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profiles_resolve_and_grids_hit_theta0_theta1(name: str) -> None:
    p = get_profile(name)
    assert isinstance(p, Profile) and p.name == name
    alphas, betas = p.grid_axes()
    assert len(alphas) == p.grid_points[0] and len(betas) == p.grid_points[1]
    assert 0.0 in alphas and 1.0 in alphas and 0.0 in betas
    curve = p.curve_axis()
    assert 0.0 in curve and 1.0 in curve
    assert 0.0 in p.layer_alphas and 1.0 in p.layer_alphas


def test_quick_and_smoke_sizes() -> None:
    q = get_profile("quick")
    assert (q.model, q.tasks, q.n_train, q.n_dev, q.epochs, q.max_length, q.batch_size) == (
        "embedded", ("movies",), 2000, 512, 3, 64, 32)
    assert q.curve_points == 21 and q.grid_points == (9, 7) and q.grid_n_eval == 224
    assert q.hessian_steps == 8 and q.hessian_n_eval == 32
    for p in PROFILE_NAMES:  # no profile pins a precision: bf16 where it is faster, measured (bertscape.runs.precision)
        prof = get_profile(p)
        assert (prof.precision, prof.curve_precision, prof.grid_precision) == ("auto", "auto", "auto"), p
    s = get_profile("smoke")
    assert s.n_train == 64 and s.epochs == 1 and s.grid_points == (5, 5) and s.curve_points == 5
    p = get_profile("paper")
    assert p.model == "bert-base-uncased" and set(p.tasks) == {"mrpc", "rte", "sst2", "cola"}
    assert p.n_train is None and p.max_length == 128 and p.grid_points == (31, 31) and p.grid_n_eval == 1024
    assert p.lr_pretrained == 2e-5 and p.lr_scratch > p.lr_pretrained


def test_run_spec_uses_profile_fields() -> None:
    q = get_profile("quick")
    pt = q.run_spec("movies", "pretrained", seed=1)
    ri = q.run_spec("movies", "scratch")
    assert isinstance(pt, RunSpec)
    assert (pt.task, pt.model, pt.init, pt.seed, pt.n_train, pt.n_dev, pt.max_length, pt.epochs, pt.batch_size) == (
        "movies", "embedded", "pretrained", 1, 2000, 512, 64, 3, 32)
    assert pt.lr == q.lr_pretrained and ri.lr == q.lr_scratch
    assert q.run_spec("movies", "pretrained", epochs=1).epochs == 1
    long = q.long_run_spec("movies", "pretrained")
    assert (long.n_train, long.epochs, long.evals_per_epoch) == (q.long_n_train, q.long_epochs, 1)
    assert len(q.specs()) == len(q.tasks) * len(q.inits) * len(q.seeds)
    assert pt.key() != ri.key()


def test_overrides_are_validated() -> None:
    p = get_profile("quick", n_train=500, tasks="movies,tweets", grid_points=9)
    assert p.n_train == 500 and p.tasks == ("movies", "tweets") and p.grid_points == (9, 9)
    assert get_profile("quick").n_train == 2000  # the registry is not mutated
    with pytest.raises(BertscapeError, match=r"n_train=-3 is not accepted; expected a positive integer"):
        get_profile("quick", n_train=-3)
    with pytest.raises(BertscapeError, match=r"'n_trian' is not a profile parameter; accepted: .*n_train"):
        get_profile("quick", n_trian=10)
    with pytest.raises(BertscapeError, match=r"grid_points\[0\]=12 .* 0 and 1 on the grid of grid_alpha.*e\.g\. 5, 9, 13"):
        get_profile("quick", grid_points=12)
    with pytest.raises(BertscapeError, match=r"grid_precision='fp16' .* 'auto', 'fp32', 'bf16'"):
        get_profile("quick", grid_precision="fp16")
    with pytest.raises(BertscapeError, match=r"inits="):
        get_profile("quick", inits=("pretrained", "frozen"))
    with pytest.raises(BertscapeError, match=r"curve_range=\(1.0, 0.0\)"):
        get_profile("quick", curve_range=(1.0, 0.0))
    with pytest.raises(BertscapeError, match=r"init='frozen'"):
        get_profile("quick").run_spec("movies", "frozen")
    with pytest.raises(BertscapeError, match=r"epoch=.*a RunSpec field"):
        get_profile("quick").run_spec("movies", "pretrained", epoch=2)
    # fine-tuning fields follow RunSpec's rules, checked when the profile is built
    for field, value in (("warmup", 1.5), ("data_seed", -1), ("tasks", ("movies", "imdb")),
                         ("group_by_length", "yes"), ("long_epochs", 0)):
        with pytest.raises(BertscapeError, match=rf"{field if field != 'tasks' else 'task'}="):
            get_profile("quick", **{field: value})
    assert get_profile("quick", group_by_length=False).run_spec("movies", "scratch").group_by_length is False


def test_bad_profile_name_lists_the_accepted_ones() -> None:
    with pytest.raises(BertscapeError, match=r"profile='fast' is not accepted; expected one of 'smoke', 'quick', 'paper'"):
        get_profile("fast")


def test_from_params_keeps_profile_values_for_none() -> None:
    p = from_params("smoke", None, None, None)
    assert p == get_profile("smoke")
    p = from_params("smoke", ["movies", "amazon"], "/data/glue", {"epochs": 2})
    assert p.tasks == ("movies", "amazon") and p.glue_dir == "/data/glue" and p.epochs == 2


def test_from_params_parses_papermill_text_values() -> None:
    # `papermill -p tasks '["mrpc"]' -p seeds '[0, 1]' -p overrides '{"epochs": 2}'` passes strings
    p = from_params("smoke", '["movies", "amazon"]', None, '{"epochs": 2, "grid_points": [9, 9]}', seeds="[0, 1]")
    assert p.tasks == ("movies", "amazon") and p.seeds == (0, 1) and p.epochs == 2 and p.grid_points == (9, 9)
    assert from_params("smoke", "movies,amazon").tasks == ("movies", "amazon")
    # a JSON number without a dot (YAML 1.1 would read 2e-5 as a string)
    assert from_params("smoke", overrides='{"lr_pretrained": 2e-5}').lr_pretrained == 2e-5
    with pytest.raises(BertscapeError, match=r"overrides='\{epochs: \[' is not accepted; expected a dict"):
        from_params("smoke", overrides="{epochs: [")
    with pytest.raises(BertscapeError, match=r"seeds='\[0, -1\]'|seeds=\(0, -1\)"):
        from_params("smoke", seeds="[0, -1]")


def test_every_field_is_documented_and_tabulated() -> None:
    t = profile_table()
    assert list(t.columns) == [*PROFILE_NAMES, "meaning"]
    undocumented = [f for f, doc in t["meaning"].items() if not doc]
    assert not undocumented, undocumented


def test_intro_profile_table_matches_the_code() -> None:
    """The profiles table in book/intro.md quotes the numbers defined in profiles.py."""
    text = (REPO / "book" / "intro.md").read_text()
    rows = {m.group(1).strip(): [c.strip() for c in m.group(2).split("|")]
            for m in re.finditer(r"^\| ([^|]+) \|(.*)\|$", text, flags=re.M)}
    num = lambda v: f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
    for col, name in enumerate(PROFILE_NAMES):
        p = get_profile(name)
        assert rows["max length (tokens)"][col] == str(p.max_length)
        assert rows["training sentences × epochs"][col] == f"{num(p.n_train) if p.n_train else 'all'} × {p.epochs}"
        assert rows["dev sentences"][col] == (num(p.n_dev) if p.n_dev else "all")
        gp = rows["2D grid: points, α × β range (β in basin half-widths), sentences"][col]
        assert gp.startswith(f"{p.grid_points[0]}×{p.grid_points[1]},") and gp.endswith(num(p.grid_n_eval))
        lo, hi = (f"{x:g}".replace("-", "−") for x in p.grid_beta)
        assert f"× [{lo}, {hi}]," in gp, (gp, p.grid_beta)
        assert rows["1D curve: points, α range, sentences"][col].startswith(f"{p.curve_points},")
        assert rows["Hessian: steps, sentences, batches"][col] == (f"{p.hessian_steps}, {num(p.hessian_n_eval)}, "
                                                                  f"{p.hessian_batches}")
        assert rows["seeds (every scored quantity)"][col] == ", ".join(map(str, p.seeds))
        names = {"scratch": "PT at RI's lr", "pretrained": "RI at PT's lr"}
        assert rows["matched-lr controls"][col] == ", ".join(names[c] for c in p.control_lrs)
        assert rows["seeds joined by segments (chapter 5)"][col] == ", ".join(map(str, p.lmc_seeds))
        assert p.precision == p.curve_precision == p.grid_precision == "auto"
        assert rows["precision (training, curves, grids)"][col] == "auto", name


def test_the_package_exports_what_a_notebook_needs() -> None:
    import bertscape

    namespace: dict = {}
    exec("from bertscape import *", namespace)
    assert set(bertscape.__all__) <= set(namespace)
    assert namespace["chapter"].start and namespace["chapter"].verdict and namespace["Profile"] is Profile
    assert namespace["from_params"] is from_params and namespace["get_profile"] is get_profile
