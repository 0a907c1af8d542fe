"""Presentation helpers (bertscape.report, plots.forest, the book driver's cell folding): what a
reader sees is formatted from the rows, never typed."""
from __future__ import annotations

import math

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest

from bertscape import plots, report, scorecard
from bertscape.book import present_notebook

matplotlib.use("Agg")


def _card() -> pd.DataFrame:
    """A small scorecard: claim 1 holding, claim 4 without uncertainty, a censored width, a failing
    restore cost, under the profile's rates and one matched pairing."""
    rng = np.random.default_rng(0)
    frames = []
    for pairing in ("profile", "both at PT's lr"):
        pt = pd.DataFrame({"loss": np.linspace(0.7, 0.2, 200) + rng.random(200) * 0.02})
        ri = pd.DataFrame({"loss": np.linspace(0.7, 0.6, 200) + rng.random(200) * 0.02})
        rows = scorecard.claim_training_loss(pt, ri) + scorecard.claim_straighter(1.7, 1.8, 0.5, 0.6)
        if pairing == "profile":
            rows.append(scorecard.row(3, "basin width", 0.4, 0.2, 0.2, 0.1, "PT > RI", censored="PT basin wider"))
            rows.append(scorecard.row(9, "cost of restoring the bottom third", 0.2, 0.3, -0.19, 0.01, "PT ≤ 0.01"))
        frames.append(scorecard.table(rows, task="movies", seed=0, pairing=pairing))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("value, text", [
    (0.283124, "0.283"), (-0.5, "−0.5"), (float("nan"), "—"), (None, "—"), (3, "3"), (12345, "12,345"),
    (2.5e-5, "2.5×10⁻⁵"), (1234.6, "1,235"), (True, "yes"), (0.0, "0"), (float("inf"), "∞")])
def test_number_reads_like_a_person_wrote_it(value, text) -> None:
    assert report.number(value) == text


def test_people_table_has_no_index_no_nan_and_readable_columns() -> None:
    df = pd.DataFrame({"pretrained": [0.123456, np.nan], "rel_residual": [1e-6, 2.0], "init": ["a", "b"]},
                      index=pd.Index(["x", "y"], name="run"))
    html = report.people_table(df).to_html()
    assert "NaN" not in html and "nan" not in html and "—" in html
    assert ">PT<" in html and ">off-plane residual (relative)<" in html and ">start<" in html
    assert ">run<" in html and ">x<" in html  # a named index becomes a column …
    assert "row_heading" not in html  # … and no index column is drawn
    assert "0.1235" in html and "0.123456" not in html


def test_people_table_escapes_text_and_badges_verdicts() -> None:
    html = report.people_table(pd.DataFrame({"criterion": ["PT < RI"], "verdict": ["holds"]})).to_html()
    assert "PT &lt; RI" in html and 'class="verdict verdict-holds"' in html


def test_people_table_rejects_what_is_not_a_frame() -> None:
    with pytest.raises(TypeError, match="DataFrame"):
        report.people_table([1, 2])


def test_verdict_matrix_badges_each_claim_and_notes_a_differing_control() -> None:
    summary = scorecard.summarise(_card())
    html = report.verdict_matrix(summary).data
    assert html.count("<tr>") == 1 + 4  # header + claims 1, 4, 3, 9
    assert html.count('class="verdict verdict-holds"') == 1  # claim 1 under the profile's rates
    assert html.count('class="verdict verdict-fails"') == 1  # claim 9
    assert html.count('class="verdict verdict-inconclusive"') == 2  # claims 4 (one seed) and 3 (censored)
    assert 'href="01_pretraining_init.html"' in html and 'href="04_layers.html"' in html
    counts = report.verdict_counts(summary)
    assert counts == {"holds": 1, "fails": 1, "inconclusive": 2, "cells": 4}


def test_forest_frame_places_margins_in_standard_errors() -> None:
    ff = report.forest_frame(scorecard.summarise(_card()))
    assert len(ff) == 3 + 1 + 1 + 1  # profile pairing, scored rows only (claim 4's second row is reported)
    restore = ff[ff["claim"] == 9].iloc[0]
    assert restore["z"] == pytest.approx(-19.0) and restore["hi"] < 0 and restore["verdict"] == "fails"
    censored = ff[ff["claim"] == 3].iloc[0]
    assert math.isnan(censored["z"]) and censored["note"] == "censored"
    straight = ff[ff["claim"] == 4].iloc[0]
    assert math.isnan(straight["z"]) and straight["note"] == "no uncertainty"
    held = ff[ff["verdict"] == "holds"]
    assert (held["lo"] > 0).all()
    fig = plots.forest(ff)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_yticklabels()) == len(ff)


def test_chapter_verdict_and_sections_come_from_the_rows() -> None:
    card = _card()
    line = report.chapter_verdict(card)
    assert line.startswith("In this build, on `movies`") and "claim 1 **holds**" in line
    assert "claim 9 **fails**" in line
    sections = list(report.claim_sections(card))
    assert [s[0].split(":")[0] for s in sections] == ["**Claim 1", "**Claim 4", "**Claim 3", "**Claim 9"]
    assert "chapter 4 (`04_layers`)" in sections[-1][0]
    assert report.pick(scorecard.summarise(card), 9)["verdict"] == "fails"
    with pytest.raises(KeyError, match="its quantities"):
        report.pick(scorecard.summarise(card), 9, "no such quantity")


def test_present_notebook_folds_code_and_hides_the_injected_cell() -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'quick'", metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["injected-parameters"]})
    plain = nbformat.v4.new_code_cell("x = 1")
    chosen = nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["remove-output"]})
    fig = {"output_type": "display_data", "data": {"image/png": ""}, "metadata": {}}
    per_task = nbformat.v4.new_code_cell("plot()", metadata={"mystnb": {"figure": {"caption": "c", "name": "f"}}})
    per_task.outputs = [fig, fig]
    nb.cells = [params, injected, plain, chosen, per_task]
    assert present_notebook(nb)
    assert params.metadata["tags"] == ["parameters"]
    assert "remove-cell" in injected.metadata["tags"]
    assert plain.metadata["tags"] == ["hide-input"] and chosen.metadata["tags"] == ["remove-output", "hide-input"]
    assert per_task.metadata["mystnb"]["figure"] == {"caption": "c"}  # two figures: caption kept, label dropped
    assert not present_notebook(nb)  # idempotent


def test_a_chapter_starts_and_ends_with_one_call_each(monkeypatch: pytest.MonkeyPatch) -> None:
    import myst_nb

    from bertscape import study
    from bertscape.profiles import from_params

    shown = []
    monkeypatch.setattr(study, "display", shown.append)
    P = study.start("smoke", "movies", None, '{"epochs": 2}', seeds="[0, 1]")
    assert P == from_params("smoke", "movies", None, '{"epochs": 2}', seeds="[0, 1]")
    assert [m.data for m in shown] == [study.profile_summary(P)]
    study.start("smoke", show_profile=False)
    assert len(shown) == 1

    card = _card()
    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    monkeypatch.setattr(study, "chapter_scorecard", lambda P_, chapter: card if chapter == "01" else None)
    table = study.verdict(P, "01", {"loss_end": (1, "100%")})
    assert glued["chapter_verdict"].data == report.chapter_verdict(card)
    assert glued["loss_end_verdict"] == report.pick(scorecard.summarise(card), 1, "100%")["verdict"]
    expected = report.people_table(report.drop_constant(study.verdict_table(card), ["task"]))
    assert type(table) is type(expected) and table.data.equals(expected.data)  # a Styler: the same rows


def test_contour_grid_draws_one_row_per_quantity_on_one_scale_per_row() -> None:
    import xarray as xr

    a, b = np.linspace(-0.5, 1.5, 5), np.linspace(-1.0, 1.0, 3)
    aa, bb = np.meshgrid(a, b, indexing="ij")

    def surface(scale: float) -> xr.Dataset:
        return xr.Dataset({"train_loss": (("alpha", "beta"), scale * (0.1 + (aa - 1) ** 2 + bb ** 2)),
                           "dev_error": (("alpha", "beta"), 0.05 * scale * (1 + np.abs(aa - 1)))},
                          coords={"alpha": a, "beta": b})

    surf = {"pretrained": surface(1.0), "scratch": surface(3.0)}
    fig = plots.contour_grid(surf, ["train_loss", "dev_error"], log={"train_loss": True},
                             basin_levels={"train_loss": {"pretrained": 0.3, "scratch": 0.9}})
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 4 and len(bars) == 2  # 2 quantities × 2 inits, one colour bar per row
    # one colour scale per row, spanning both inits: PT's and RI's panels share it
    for row, (lo, hi) in zip((panels[:2], panels[2:]), ((0.1, 3 * 3.35), (0.05, 0.15 * 2.5))):
        norms = [ax.collections[0].norm for ax in row]
        assert {(n.vmin, n.vmax) for n in norms} == {(norms[0].vmin, norms[0].vmax)}
        assert norms[0].vmin == pytest.approx(lo) and norms[0].vmax == pytest.approx(hi)
    assert isinstance(panels[0].collections[0].norm, matplotlib.colors.LogNorm)
    assert not isinstance(panels[2].collections[0].norm, matplotlib.colors.LogNorm)
    # contour_pair is the one-row case
    one = plots.contour_pair(surf, "dev_error")
    assert len([ax for ax in one.axes if ax.get_label() != "<colorbar>"]) == 2
