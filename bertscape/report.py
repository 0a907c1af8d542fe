"""What the reader sees: tables formatted for people, verdict badges, the claim × task verdict
matrix, the forest plot's data, per-claim sections and sentences that state this build's numbers.

Nothing here computes a result: every function takes the rows of :mod:`bertscape.scorecard` /
:mod:`bertscape.study` (or any DataFrame) and formats them. The chapters display these objects and
glue them (``myst_nb.glue``) so that prose and the introduction quote the numbers of the same build.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from IPython.display import HTML

from . import scorecard

__all__ = ["COLUMN_NAMES", "CHAPTER_PAGES", "number", "readable", "people_table", "badge", "verdict_matrix",
           "forest_frame", "figure_html", "chapter_verdict", "claim_sections", "thresholds", "pick",
           "glue_quantities", "drop_constant", "verdict_counts", "FOREST_CAPTION"]

#: Column names as a reader should see them (any other name: underscores become spaces).
COLUMN_NAMES: dict[str, str] = {
    "pretrained": "PT", "scratch": "RI", "init": "start", "rel_residual": "off-plane residual (relative)",
    "train_loss": "training loss", "train_loss_surface": "training loss on the surface",
    "dev_loss": "dev loss", "dev_accuracy": "dev accuracy", "dev_error": "dev error",
    "width_d1_fn": "width along δ1 (filter-norm.)", "width_d1_fn_se": "± s.e.",
    "width_d2_fn": "width along random dir. (filter-norm.)", "width_d2_fn_se": "± s.e. ",
    "width_d1": "width along δ1 (α units)", "width_d2": "width along δ2 (β units)",
    "width_d1_param": "width along δ1 (parameter distance)", "area_rel": "sub-level area / ‖θ1‖²",
    "area": "sub-level area (α·β)", "touches_edge": "area censored", "barrier": "barrier on the line",
    "top_eigenvalue": "Hessian top eigenvalue", "top_residual": "± Ritz residual", "trace": "Hessian trace",
    "trace_stderr": "± s.e.  ", "train seconds": "training time (s)", "uncertainty": "s.e.",
}

#: The page of each chapter (relative to the book's pages, all in one folder).
CHAPTER_PAGES: dict[str, str] = {"01": "01_pretraining_init", "02": "02_flat_optima", "03": "03_overfitting",
                                 "04": "04_layers", "05": "05_connectivity", "06": "06_scorecard"}
_VERDICT_CLASS = {scorecard.HOLDS: "verdict-holds", scorecard.FAILS: "verdict-fails",
                  scorecard.INCONCLUSIVE: "verdict-inconclusive"}


# ----------------------------------------------------------------------------- numbers and tables

def number(x: Any, digits: int = 3) -> str:
    """A number as a reader wants it: ``digits`` significant digits, integers as integers, thousands
    separated, ``—`` for a missing value (``None``, NaN) and no ``-0``."""
    if x is None or isinstance(x, str):
        return "—" if x is None or x == "" else x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "—" if math.isnan(v) else ("∞" if v > 0 else "−∞")
    if v == int(v) and abs(v) < 1e6 and isinstance(x, (int, np.integer)):
        return f"{int(v):,}"
    if v == 0:
        return "0"
    if 1000 <= abs(v) < 1e6:
        return f"{v:,.0f}".replace("-", "−")
    text = f"{v:.{digits}g}"
    if "e" in text:  # 1.23e-05 → 1.23×10⁻⁵
        mant, exp = text.split("e")
        sup = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
        return f"{mant.replace('-', '−')}×10{str(int(exp)).translate(sup)}"
    return text.replace("-", "−")


def readable(name: Any) -> str:
    """A column or index name for readers (:data:`COLUMN_NAMES`, else underscores → spaces)."""
    name = str(name)
    return COLUMN_NAMES.get(name, name.replace("_", " "))


def people_table(df: pd.DataFrame, *, digits: int = 4, columns: Mapping[str, str] | None = None,
                 caption: str | None = None, keep_index: bool | None = None) -> Any:
    """A DataFrame as a table for people: readable column names, ``digits`` significant digits,
    no index column, ``—`` instead of NaN, yes/no for booleans.

    Args:
        df: the table. A meaningful index (named, or not a plain 0…n−1 range) becomes leading columns.
        digits: significant digits of every number (3–4 reads best).
        columns: extra renames (applied before :data:`COLUMN_NAMES`).
        caption: a caption shown above the table.
        keep_index: force (True) or drop (False) the index as columns; ``None`` decides as above.

    Returns:
        a pandas ``Styler`` (renders as HTML in notebooks and in the book).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"people_table(df=...) expects a pandas DataFrame, got {type(df).__name__}")
    out = df.copy()
    plain = isinstance(out.index, pd.RangeIndex) and out.index.name is None
    if keep_index or (keep_index is None and not plain):
        out = out.reset_index()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(str(p) for p in c if str(p)) for c in out.columns]
    renames = {c: (columns or {}).get(str(c), readable(c)) for c in out.columns}
    out.columns = [renames[c] for c in out.columns]
    if out.columns.duplicated().any():
        dup = sorted(set(out.columns[out.columns.duplicated()]))
        raise ValueError(f"people_table: two columns would both be called {dup}; pass columns= to rename one")
    num_cols = [c for c in out.columns if pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c])]
    formats = {c: (lambda v, d=digits: number(v, d)) for c in out.columns}
    if "verdict" in out.columns:  # verdicts as badges
        formats["verdict"] = badge
    styler = out.style.format(formats, na_rep="—", escape="html")
    styler = styler.hide(axis="index").set_table_attributes('class="bertscape-table"')
    styler = styler.set_td_classes(pd.DataFrame([["num" if c in num_cols else "" for c in out.columns]] * len(out),
                                                index=out.index, columns=out.columns))
    if caption:
        styler = styler.set_caption(html.escape(caption))
    return styler


def thresholds() -> Any:
    """The scorecard's fixed thresholds as a table for people."""
    df = pd.DataFrame(list(scorecard.THRESHOLDS), columns=["name", "value", "meaning"])
    return people_table(df, columns={"name": "constant"})


def drop_constant(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``df`` without those of ``columns`` that hold a single value (e.g. ``task`` when the profile
    has one task: the page already says which)."""
    return df.drop(columns=[c for c in columns if c in df.columns and df[c].nunique(dropna=False) <= 1])


# ----------------------------------------------------------------------------- verdicts

#: Caption of the summary figure where it is glued as HTML (the introduction).
FOREST_CAPTION = ("Every scored quantity of this build, PT vs RI at the profile's learning rates, one panel per "
                  "task. Dot: the margin on the claimed side divided by its standard error; bar: ± 2 standard "
                  "errors. Wholly right of zero holds, wholly left fails, across zero (grey band) is inconclusive; "
                  "open circles are quantities decided without a margin, with the reason beside them. PT's and "
                  "RI's values are written at the right.")

def badge(verdict: str | None, small: bool = False) -> str:
    """An HTML badge for a verdict (holds / fails / inconclusive); ``—`` when there is none."""
    if verdict not in _VERDICT_CLASS:
        return '<span class="verdict-none">—</span>'
    cls = _VERDICT_CLASS[verdict] + (" verdict-small" if small else "")
    return f'<span class="verdict {cls}">{html.escape(verdict)}</span>'


def _claim_verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """(task, claim, pairing) → the claim's verdict from its scored rows."""
    s = summary[summary["scored"]] if "scored" in summary else summary
    pair = s["pairing"] if "pairing" in s else pd.Series("profile", index=s.index)
    return (s.assign(pairing=pair).groupby(["task", "claim", "pairing"], sort=False)["verdict"]
            .agg(scorecard.claim_verdict).rename("verdict").reset_index())


def verdict_counts(summary: pd.DataFrame, pairing: str = "profile") -> dict[str, int]:
    """How many claim × task cells of :func:`verdict_matrix` hold, fail and are inconclusive."""
    v = _claim_verdicts(summary)
    v = v[v["pairing"] == pairing]
    counts = {k: int((v["verdict"] == k).sum()) for k in scorecard.VERDICTS}
    counts["cells"] = int(len(v))
    return counts


def verdict_matrix(summary: pd.DataFrame, *, pairing: str = "profile", links: bool = True) -> Any:
    """The claim × task verdict matrix as an HTML table with badges.

    Args:
        summary: :func:`bertscape.scorecard.summarise` rows (scored and reported; reported rows are
            ignored).
        pairing: the pairing whose verdict fills each cell (the profile's learning rates); the other
            pairings of a controlled claim appear as a note under the badge when they differ.
        links: link each claim to the chapter that computes it (pages in the same folder).

    Returns:
        an ``IPython.display.HTML`` object (displayable, and gluable into other pages).
    """
    v = _claim_verdicts(summary)
    if v.empty:
        raise ValueError("verdict_matrix: the summary has no scored rows")
    tasks = list(dict.fromkeys(v["task"]))
    claims = [c for c in scorecard.CLAIMS if c in set(v["claim"])]
    head = "".join(f"<th>{html.escape(str(t))}</th>" for t in tasks)
    rows = []
    for c in claims:
        cl = scorecard.CLAIMS[c]
        text = html.escape(cl.statement) + (" <em>(extension)</em>" if cl.extension else "")
        where = CHAPTER_PAGES.get(cl.chapter)
        label = f"claim {c}" if c != "H" else "curvature"
        name = f'<a href="{where}.html">{label}</a>' if links and where else label
        cells = []
        for t in tasks:
            g = v[(v["task"] == t) & (v["claim"] == c)]
            main = g.loc[g["pairing"] == pairing, "verdict"]
            others = [(p, x) for p, x in zip(g["pairing"], g["verdict"]) if p != pairing]
            note = "".join(f'<span class="verdict-note">{html.escape(p)}: {badge(x, small=True)}</span>'
                           for p, x in others if main.empty or x != main.iloc[0])
            cells.append(f'<td class="verdict-cell">{badge(main.iloc[0] if len(main) else None)}{note}</td>')
        rows.append(f'<tr><td>{name}</td><td class="claim-statement">{text}</td>{"".join(cells)}</tr>')
    return HTML(f'<table class="bertscape-table verdict-matrix"><thead><tr><th>claim</th><th>what the paper says '
                f'(PT = pre-trained start, RI = random start)</th>{head}</tr></thead><tbody>{"".join(rows)}'
                f'</tbody></table>')


def _why_short(reason: str, blocked: str = "") -> str:
    r = (blocked or reason or "").lower()
    if "did not train" in r:
        return "a run did not train"
    if "wider" in r or "edge" in r:
        return "censored"
    if "not computed" in r:
        return "not computed"
    if "uncertainty" in r or "one seed" in r:
        return "no uncertainty"
    return "—"


def forest_frame(summary: pd.DataFrame, pairing: str = "profile") -> pd.DataFrame:
    """One row per scored quantity (under ``pairing``), ready for :func:`bertscape.plots.forest`.

    Columns: ``task``, ``claim``, ``label``, ``pretrained``, ``scratch``, ``margin``,
    ``uncertainty``, ``z`` (margin in standard errors; NaN when the row has no usable uncertainty
    or is blocked), ``lo`` / ``hi`` (``z`` ∓ :data:`bertscape.scorecard.Z`: an interval that
    excludes 0 on the right holds, on the left fails), ``verdict`` and ``note`` (why a row has no
    ``z``).
    """
    s = summary[summary["scored"]] if "scored" in summary else summary
    if "pairing" in s:
        s = s[s["pairing"] == pairing]
    order = {c: i for i, c in enumerate(scorecard.CLAIMS)}
    s = s.assign(_o=s["claim"].map(order)).sort_values(["task", "_o"], kind="stable")
    m = s["margin"].to_numpy(float)
    u = s["uncertainty"].to_numpy(float)
    ok = np.isfinite(m) & np.isfinite(u) & (u > 0)
    blocked = s["blocked"] if "blocked" in s else pd.Series("", index=s.index)
    ok &= ~blocked.fillna("").astype(bool).to_numpy()
    # a row decided by something other than its margin (censored, a run that did not train) has no z
    ok &= np.array([k and scorecard.decide(a, b)[0] == v and _why_short(r) == "—"
                    for a, b, v, r, k in zip(m, u, s["verdict"], s["reason"], ok)], dtype=bool)
    z = np.where(ok, m / np.where(ok, u, 1.0), np.nan)
    claim_name = s["claim"].map(lambda c: "curvature" if c == "H" else f"claim {c}")
    return pd.DataFrame({
        "task": s["task"].to_numpy(), "claim": s["claim"].to_numpy(),
        "label": (claim_name + " · " + s["quantity"]).to_numpy(),
        "pretrained": s["pretrained"].to_numpy(float), "scratch": s["scratch"].to_numpy(float),
        "margin": m, "uncertainty": u, "z": z, "lo": z - scorecard.Z, "hi": z + scorecard.Z,
        "verdict": s["verdict"].to_numpy(),
        "note": ["" if k else _why_short(r, b) for k, r, b in zip(ok, s["reason"], blocked.fillna(""))],
    })


def figure_html(fig: Any, caption: str, *, number: str | None = None, dpi: int = 110) -> Any:
    """A matplotlib figure as an HTML ``<figure>`` with its caption under it (a PNG inlined as a data
    URI), for gluing into a page that cannot hold the figure's own output (e.g. a Markdown page)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    lead = f"<strong>{html.escape(number)}</strong> " if number else ""
    return HTML(f'<figure class="bertscape-figure"><img alt="{html.escape(caption)}" '
                f'src="data:image/png;base64,{data}"/><figcaption>{lead}{html.escape(caption)}</figcaption></figure>')


# ----------------------------------------------------------------------------- sentences

def chapter_verdict(card: pd.DataFrame, pairing: str = "profile") -> str:
    """The chapter's answer in one Markdown paragraph: each claim's verdict per task (the profile's
    learning rates; a matched-rate verdict that differs is added in brackets)."""
    v = _claim_verdicts(scorecard.summarise(card))
    parts = []
    for task, g in v.groupby("task", sort=False):
        bits = []
        for c in [c for c in scorecard.CLAIMS if c in set(g["claim"])]:
            h = g[g["claim"] == c]
            main = h.loc[h["pairing"] == pairing, "verdict"]
            main_v = main.iloc[0] if len(main) else scorecard.INCONCLUSIVE
            other = [f"{x} {p}" for p, x in zip(h["pairing"], h["verdict"]) if p != pairing and x != main_v]
            name = "the curvature comparison" if c == "H" else f"claim {c}"
            bits.append(f"{name} **{main_v}**" + (f" ({'; '.join(other)})" if other else ""))
        parts.append(f"on `{task}`, " + ", ".join(bits))
    return "In this build, " + "; ".join(parts) + "."


def pick(summary: pd.DataFrame, claim: int | str, contains: str = "", task: str | None = None,
         pairing: str = "profile") -> pd.Series:
    """The first summarised row of ``claim`` whose quantity contains ``contains`` (for one task,
    default the first, and one pairing). Raises ``KeyError`` naming what exists when none matches."""
    s = summary
    if "pairing" in s:
        s = s[s["pairing"] == pairing]
    task = task if task is not None else (s["task"].iloc[0] if len(s) else None)
    hit = s[(s["task"] == task) & (s["claim"] == claim) & s["quantity"].str.contains(contains, regex=False)]
    if hit.empty:
        have = sorted(set(s.loc[s["claim"] == claim, "quantity"]))
        raise KeyError(f"no row of claim {claim!r} with a quantity containing {contains!r} for task {task!r} "
                       f"and pairing {pairing!r}; its quantities: {have}")
    return hit.iloc[0]


def glue_quantities(summary: pd.DataFrame, picks: Mapping[str, tuple[int | str, str]], *,
                    task: str | None = None, pairing: str = "profile", digits: int = 3) -> dict[str, str]:
    """Glue this build's numbers for the chapter's prose (``myst_nb.glue``, not displayed).

    For every ``name: (claim, quantity substring)`` of ``picks`` (see :func:`pick`) the keys
    ``{name}_pt``, ``{name}_ri`` (PT's and RI's value, ``digits`` significant digits) and
    ``{name}_verdict`` (holds / fails / inconclusive) are glued as text; a page quotes them with
    ``{glue:text}`name_pt```. Returns what was glued.
    """
    # myst_nb imports Sphinx (seconds): loaded only when a chapter glues
    from myst_nb import glue

    out: dict[str, str] = {}
    for name, (claim, contains) in picks.items():
        r = pick(summary, claim, contains, task=task, pairing=pairing)
        out.update({f"{name}_pt": number(r["pretrained"], digits), f"{name}_ri": number(r["scratch"], digits),
                    f"{name}_verdict": str(r["verdict"])})
    for key, value in out.items():
        glue(key, value, display=False)
    return out


def claim_sections(card: pd.DataFrame, pairing: str = "profile") -> Iterable[tuple[str, Any]]:
    """Per claim: a Markdown paragraph (statement, verdict, how it is measured, where the book
    computes it) and a table of its quantities (criterion, PT, RI, margin ± s.e., verdict, why),
    for the scorecard page. Yields ``(markdown, table)``; matched pairings appear as extra rows."""
    s = scorecard.summarise(card)
    v = _claim_verdicts(s)
    for c in [c for c in scorecard.CLAIMS if c in set(s["claim"])]:
        cl = scorecard.CLAIMS[c]
        g = s[s["claim"] == c]
        verdicts = ", ".join(f"**{x}** on `{t}`" for t, x in
                             v[(v["claim"] == c) & (v["pairing"] == pairing)][["task", "verdict"]].itertuples(index=False))
        page = CHAPTER_PAGES.get(cl.chapter, "")
        title = "Curvature" if c == "H" else f"Claim {c}"
        kind = " (an extension, not the paper's claim)" if cl.extension else ""
        md = (f"**{title}{kind}: {cl.statement}.** Verdict: {verdicts or 'none'}. Measured as {cl.computed}; "
              f"computed in chapter {int(cl.chapter)} (`{page}`)"
              + (", and also with both runs at the same learning rate" if cl.controlled else "") + ".")
        tab = pd.DataFrame({
            "task": g["task"], "pairing": g["pairing"], "quantity": g["quantity"], "criterion": g["criterion"],
            "PT": [_pm(m, d) for m, d in zip(g["pretrained"], g["pretrained_sd"])],
            "RI": [_pm(m, d) for m, d in zip(g["scratch"], g["scratch_sd"])],
            "margin ± s.e.": [number(m, 3) + (f" ± {number(u, 2)}" if np.isfinite(u) and u > 0 else "")
                              for m, u in zip(g["margin"], g["uncertainty"])],
            "verdict": g["verdict"], "why": g["reason"],
        })
        if tab["task"].nunique() == 1:
            tab = tab.drop(columns="task")
        if tab["pairing"].nunique() == 1:
            tab = tab.drop(columns="pairing")
        yield md, people_table(tab.reset_index(drop=True))


def _pm(mean: float, sd: float) -> str:
    """Mean ± spread over seeds; the mean alone for one seed (no "± 0", no NaN)."""
    return number(mean, 4) + (f" ± {number(sd, 2)}" if np.isfinite(sd) and sd > 0 else "")

