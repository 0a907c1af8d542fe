"""Presentation helpers (bertscape.book.report, plots.forest, the book driver's cell folding): what a
reader sees is formatted from the rows, never typed."""
from __future__ import annotations

import math

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest

from bertscape.book import chapter, plots, report
from bertscape.book.build import present_notebook
from bertscape.evidence import scorecard

matplotlib.use("Agg")


def _card() -> pd.DataFrame:
    """A small scorecard over two seeds: claim 1 holding, claim 4 decided by its seeds, claim 3 in two
    units (one holding, one failing), a failing restore cost, under the profile's rates and one matched
    pairing."""
    rng = np.random.default_rng(0)
    frames = []
    for seed in (0, 1):
        for pairing in ("profile", "both at RI's lr"):
            pt = np.linspace(0.7, 0.2, 200) + rng.random(200) * 0.02
            ri = pt + 0.2 + rng.random(200) * 0.02
            rows = scorecard.claim_training_loss(pt, ri) + scorecard.claim_straighter(1.7, 1.8 + 0.1 * seed, 0.5, 0.6)
            if pairing == "profile":
                rows.append(scorecard.row(3, "width_d1_fn", "basin width", 0.4, 0.2, 0.2 + 0.01 * seed, 0.1,
                                          "PT > RI", unit="invariant"))
                rows.append(scorecard.row(3, "width_alpha", "basin width (α)", 0.2, 0.4, -0.2 - 0.01 * seed, 0.1,
                                          "PT > RI", unit="paper"))
                rows.append(scorecard.row(9, "restore_bottom", "cost of restoring the bottom third", 0.2, 0.3,
                                          -0.19 - 0.001 * seed, 0.01, "PT ≤ 0.01"))
            frames.append(scorecard.table(rows, task="movies", seed=seed, pairing=pairing))
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


def test_verdict_matrix_badges_each_claim_unit_and_its_seeds() -> None:
    summary = scorecard.summarise(_card())
    html = report.verdict_matrix(summary).data
    assert html.count("<tr>") == 1 + 5  # header + claims 1, 4, 3 (two units), 9
    assert html.count('class="verdict verdict-holds"') == 2  # claim 1, claim 3 in the invariant unit
    # claim 4: 0.1 and 0.2 over two seeds is 0.15 ± 12.7 × 0.05, which includes 0
    assert html.count('class="verdict verdict-inconclusive"') == 1
    assert html.count('class="verdict verdict-fails"') == 2  # claim 3 in α units, claim 9
    assert html.count(">2 seeds<") == 5 and "one seed" not in html
    assert html.index("scale-invariant unit") < html.index("paper&#x27;s unit")  # the headline unit first
    assert 'href="01_pretraining_init.html"' in html and 'href="04_layers.html"' in html
    assert report.verdict_counts(summary) == {"holds": 2, "fails": 2, "inconclusive": 1, "cells": 5, "one_seed": 0}
    one = scorecard.summarise(_card()[lambda d: d["seed"] == 0])
    assert report.verdict_counts(one)["one_seed"] == 5 and ">one seed<" in report.verdict_matrix(one).data


def test_forest_frame_draws_each_decision_interval_in_its_own_half_width() -> None:
    ff = report.forest_frame(scorecard.summarise(_card()))
    assert len(ff) == 3 + 1 + 2 + 1  # profile pairing, scored rows only (claim 4's second row is reported)
    for _, r in ff.iterrows():  # the bar excludes 0 exactly as the verdict says
        assert (r["lo"] > 0) == (r["verdict"] == "holds") and (r["hi"] < 0) == (r["verdict"] == "fails")
        assert r["hi"] - r["lo"] == pytest.approx(2.0)
    assert ff["label"].str.contains("claim 3 · scale-invariant unit").any()
    one = report.forest_frame(scorecard.summarise(_card()[lambda d: d["seed"] == 0]))
    straight = one[one["claim"] == 4].iloc[0]
    assert math.isnan(straight["z"]) and straight["note"] == "no sampling error"
    assert one["label"].str.endswith("(one seed)").all()
    fig = plots.forest(ff)
    assert len(fig.axes) == 1 and len(fig.axes[0].get_yticklabels()) == len(ff)


def test_chapter_verdict_and_sections_come_from_the_rows() -> None:
    summary = scorecard.summarise(_card())
    line = report.chapter_verdict(summary)
    assert line.startswith("In this build, on `movies`") and "claim 1 **holds** (2 seeds)" in line
    assert "claim 3 · scale-invariant unit **holds**" in line and "claim 9 **fails**" in line
    sections = list(report.claim_sections(summary))
    assert [s[0].split(":")[0] for s in sections] == ["**Claim 1", "**Claim 4", "**Claim 3", "**Claim 9"]
    assert "chapter 4 (`04_layers`)" in sections[-1][0]
    assert report.pick(summary, 9, "restore_bottom")["verdict"] == "fails"
    with pytest.raises(Exception, match="qid='nope'"):
        report.pick(summary, 9, "nope")
    with pytest.raises(KeyError, match="its rows here"):
        report.pick(summary, 9, "restore_top")
    assert "claim 3 (wider) **fails** in the paper's unit but **holds** in the scale-invariant unit" in \
        report.units_finding(summary)
    units = report.units_table(summary)
    assert list(units["unit"]) == ["scale-invariant unit", "paper's unit (α, β)"]


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

    from bertscape.book import claims
    from bertscape.book.profiles import from_params

    shown = []
    monkeypatch.setattr(chapter, "display", shown.append)
    P = chapter.start("smoke", "movies", None, '{"epochs": 2}', seeds="[0, 1]")
    assert P == from_params("smoke", "movies", None, '{"epochs": 2}', seeds="[0, 1]")
    assert len(shown) == 1 and shown[0].data.startswith(chapter.profile_summary(P))
    assert "`seeds = '[0, 1]'`" in shown[0].data and "computed in this build" in shown[0].data
    chapter.start("smoke", show_profile=False)
    assert len(shown) == 1

    card = _card()
    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: glued.__setitem__(name, value))
    monkeypatch.setattr(claims, "chapter_scorecard", lambda P_, chapter: card if chapter == "01" else None)
    table = chapter.verdict(P, "01", {"loss_end": (1, "loss_100")})
    summary = scorecard.summarise(card)
    assert glued["chapter_verdict"].data == report.chapter_verdict(summary)
    assert glued["loss_end_verdict"] == "holds" and glued["loss_end_seeds"] == "2 seeds"
    assert "units_finding" not in glued  # chapter 1 has no flatness claim
    assert "why" in table.data.columns
