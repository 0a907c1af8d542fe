"""What the reader sees: tables formatted for people, verdict badges, the claim × task verdict
matrix, the forest plot's data, per-claim sections and sentences that state this build's numbers.

Nothing here computes a result: every function takes the rows of :mod:`bertscape.evidence.scorecard` /
:mod:`bertscape.book.study` (or any DataFrame) and formats them. The chapters display these objects and
glue them (``myst_nb.glue``) so that prose and the introduction quote the numbers of the same build.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from IPython.display import HTML

from bertscape.book.claims import CLAIMS
from bertscape.evidence import scorecard

#: Tables drawn by this process so far (part of each table's element ids: see :func:`people_table`).
_TABLE_COUNT = itertools.count()

__all__ = ["COLUMN_NAMES", "CHAPTER_PAGES", "number", "readable", "people_table", "badge", "verdict_matrix",
           "forest_frame", "figure_html", "chapter_verdict", "claim_sections", "thresholds", "pick",
           "glue_quantities", "drop_constant", "verdict_counts", "verdict_table", "per_seed_table", "units_finding", "units_table",
           "long_run_table", "barrier_table", "FOREST_CAPTION",
           "UNIT_NAMES"]

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
INIT_SHORT = {"pretrained": "PT", "scratch": "RI"}
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
    # the element ids pandas writes are random unless set: derive them from the table's content and its
    # place among the tables this process drew, so that a page rebuilt from the same numbers is the same
    uid = hashlib.sha1(f"{next(_TABLE_COUNT)}\n{out.to_csv()}".encode()).hexdigest()[:8]
    styler = styler.set_uuid(uid).hide(axis="index").set_table_attributes('class="bertscape-table"')
    styler = styler.set_td_classes(pd.DataFrame([["num" if c in num_cols else "" for c in out.columns]] * len(out),
                                                index=out.index, columns=out.columns))
    if caption:
        styler = styler.set_caption(html.escape(caption))
    return styler


def plus_minus(value: float, spread: float, digits: int = 4, spread_digits: int = 2) -> str:
    """"value ± spread" in :func:`number`'s style; the value alone where the spread is missing or zero
    (one seed, an exact number)."""
    text = number(value, digits)
    return text + (f" ± {number(spread, spread_digits)}" if np.isfinite(spread) and spread > 0 else "")


def mean_pm(df: pd.DataFrame, columns: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """``df`` with each of ``columns`` written as "mean ± sd" (:func:`plus_minus`) from it and its
    ``"<column> sd"`` partner (dropped)."""
    out = df.copy()
    for c in columns:
        sd = out.pop(f"{c} sd") if f"{c} sd" in out else pd.Series(np.nan, index=out.index)
        out[c] = [plus_minus(m, s, digits) for m, s in zip(out[c], sd)]
    return out


def long_run_table(long: Mapping[str, Any], metric: str) -> pd.DataFrame:
    """The dev metric and loss of each long run (``{init: RunResult}``) after every epoch, one column per
    run and quantity."""
    ev = pd.concat({INIT_SHORT.get(i, i): r.evals.set_index("epoch")[[f"dev_{metric}", "dev_loss"]]
                    for i, r in long.items()}, axis=1)
    ev.columns = [f"{init} {readable(q)}" for init, q in ev.columns]
    return ev


def barrier_table(barriers: pd.DataFrame) -> pd.DataFrame:
    """:func:`bertscape.book.study.barriers` with the columns named for readers (the interval as one column)."""
    b = barriers.copy()
    b["interval"] = [f"[{number(lo, 3)}, {number(hi, 3)}]" for lo, hi in zip(b["barrier_lo"], b["barrier_hi"])]
    b = b.drop(columns=["barrier_lo", "barrier_hi"])
    return b.rename(columns={"kind": "segment", "a": "from", "b": "to", "train_loss_a": "training loss at t = 0",
                             "train_loss_b": "training loss at t = 1", "barrier": "training-loss barrier",
                             "barrier_se": "s.e.", "interval": "95 % BCa interval",
                             "dev_error_barrier": "dev-error barrier", "dev_error_barrier_se": "dev-error barrier s.e."})


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
                  "task. Bar: the interval the row is decided on (the t interval over seeds; with one seed, ± 2 "
                  "standard errors or a bootstrap interval), drawn in units of its own half-width, with the margin "
                  "on the claimed side as the dot. Wholly right of zero holds, wholly left fails, across zero is "
                  "inconclusive; open circles are quantities with no interval, with the reason beside them. PT's "
                  "and RI's values are written at the right.")

def badge(verdict: str | None, small: bool = False) -> str:
    """An HTML badge for a verdict (holds / fails / inconclusive); ``—`` when there is none."""
    if verdict not in _VERDICT_CLASS:
        return '<span class="verdict-none">—</span>'
    cls = _VERDICT_CLASS[verdict] + (" verdict-small" if small else "")
    return f'<span class="verdict {cls}">{html.escape(verdict)}</span>'


def _cells(summary: pd.DataFrame) -> pd.DataFrame:
    """(task, claim, unit, pairing) → the cell's verdict and the seeds that decided it."""
    return scorecard.cell_verdicts(summary)


def _cell_name(claim: int | str, unit: str) -> str:
    name = CLAIMS[claim].name if claim in CLAIMS else f"claim {claim}"
    return name + (f" · {UNIT_NAMES[unit]}" if unit else "")


#: How the two units of the flatness claims are named on the pages.
UNIT_NAMES = {"paper": "paper's unit (α, β)", "invariant": "scale-invariant unit"}


def _seeds_note(seeds: int, one_seed: bool) -> str:
    return "one seed" if one_seed else f"{seeds} seeds"


def verdict_counts(summary: pd.DataFrame, pairing: str = "profile") -> dict[str, int]:
    """How many claim × task cells of :func:`verdict_matrix` hold, fail and are inconclusive, and how many
    of them rest on one seed."""
    v = _cells(summary)
    v = v[v["pairing"] == pairing]
    counts = {k: int((v["verdict"] == k).sum()) for k in scorecard.VERDICTS}
    counts["cells"] = int(len(v))
    counts["one_seed"] = int(v["one_seed"].sum())
    return counts


def verdict_matrix(summary: pd.DataFrame, *, pairing: str = "profile", links: bool = True) -> Any:
    """The claim × task verdict matrix as an HTML table with badges: one row per claim (two for a
    flatness claim, one per unit), each cell the verdict with the number of seeds that decided it.

    Args:
        summary: :func:`bertscape.evidence.scorecard.summarise` rows (scored and reported; reported rows are
            ignored).
        pairing: the pairing whose verdict fills each cell (the profile's learning rates); the other
            pairings of a controlled claim appear as a note under the badge when they differ.
        links: link each claim to the chapter that computes it (pages in the same folder).

    Returns:
        an ``IPython.display.HTML`` object (displayable, and gluable into other pages).
    """
    v = _cells(summary)
    if v.empty:
        raise ValueError("verdict_matrix: the summary has no scored rows")
    tasks = list(dict.fromkeys(v["task"]))
    head = "".join(f"<th>{html.escape(str(t))}</th>" for t in tasks)
    rows = []
    for c, unit in _cell_order(v):
        cl = CLAIMS[c]
        text = html.escape(cl.statement) + (" <em>(extension)</em>" if cl.extension else "")
        if unit:
            text += f' <span class="claim-unit">— {html.escape(scorecard.UNITS[unit])}</span>'
        where = CHAPTER_PAGES.get(cl.chapter)
        label = _cell_name(c, unit)
        name = f'<a href="{where}.html">{html.escape(label)}</a>' if links and where else html.escape(label)
        cells = []
        for t in tasks:
            g = v[(v["task"] == t) & (v["claim"] == c) & (v["unit"] == unit)]
            main = g[g["pairing"] == pairing]
            others = [(p, x) for p, x in zip(g["pairing"], g["verdict"]) if p != pairing]
            note = "".join(f'<span class="verdict-note">{html.escape(p)}: {badge(x, small=True)}</span>'
                           for p, x in others if main.empty or x != main["verdict"].iloc[0])
            seeds = (f'<span class="verdict-seeds{" one-seed" if main["one_seed"].iloc[0] else ""}">'
                     f'{_seeds_note(int(main["seeds"].iloc[0]), bool(main["one_seed"].iloc[0]))}</span>'
                     if len(main) else "")
            cells.append(f'<td class="verdict-cell">{badge(main["verdict"].iloc[0] if len(main) else None)}'
                         f'{seeds}{note}</td>')
        rows.append(f'<tr><td>{name}</td><td class="claim-statement">{text}</td>{"".join(cells)}</tr>')
    return HTML(f'<table class="bertscape-table verdict-matrix"><thead><tr><th>claim</th><th>what the paper says '
                f'(PT = pre-trained start, RI = random start)</th>{head}</tr></thead><tbody>{"".join(rows)}'
                f'</tbody></table>')


def _cell_order(v: pd.DataFrame) -> list[tuple[int | str, str]]:
    """(claim, unit) pairs present in ``v``, in book order, the scale-invariant unit (the headline) first."""
    present = set(zip(v["claim"], v["unit"]))
    out = []
    for c in CLAIMS:
        for u in ("invariant", "paper", ""):
            if (c, u) in present:
                out.append((c, u))
    return out


def _why_short(reason: str, blocked: str = "") -> str:
    r = (blocked or reason or "").lower()
    if "did not train" in r:
        return "a run did not train"
    if "both censored" in r or "opposite directions" in r:
        return "censored"
    if "not computed" in r:
        return "not computed"
    if "sampling error" in r or "one seed" in r or "uncertainty" in r or "fewer than two" in r:
        return "no sampling error"
    return "—"


def forest_frame(summary: pd.DataFrame, pairing: str = "profile") -> pd.DataFrame:
    """One row per scored quantity (under ``pairing``), ready for :func:`bertscape.book.plots.forest`.

    Each row's decision interval [lo, hi] of the margin (± Z s.e. within one seed, a percentile/BCa
    interval, or the t interval over seeds) is drawn in units of its own half-width w = (hi − lo)/2:
    ``z`` = margin / w, ``lo``/``hi`` = ends / w, so the bar excludes 0 on the right exactly when the row
    holds and on the left when it fails. Columns: ``task``, ``claim``, ``label``, ``pretrained``,
    ``scratch``, ``margin``, ``z``, ``lo``, ``hi``, ``verdict``, ``seeds``, ``note`` (why a row has no
    interval)."""
    s = summary[summary["scored"]] if "scored" in summary else summary
    if "pairing" in s:
        s = s[s["pairing"] == pairing]
    order = {c: i for i, c in enumerate(CLAIMS)}
    s = s.assign(_o=s["claim"].map(order)).sort_values(["task", "_o"], kind="stable")
    m = s["margin"].to_numpy(float)
    lo, hi = s["lo"].to_numpy(float), s["hi"].to_numpy(float)
    se = s["uncertainty"].to_numpy(float)
    no_iv = ~(np.isfinite(lo) & np.isfinite(hi))
    lo = np.where(no_iv, m - scorecard.Z * se, lo)
    hi = np.where(no_iv, m + scorecard.Z * se, hi)
    blocked = s["reason"].fillna("").map(lambda r: _why_short(r) in ("a run did not train", "censored",
                                                                      "not computed")).to_numpy()
    ok = np.isfinite(m) & np.isfinite(lo) & np.isfinite(hi) & ~blocked
    w = np.where(ok, np.maximum((hi - lo) / 2, 1e-300), 1.0)
    labels = [f"{_cell_name(c, u)} · {q}" + (" (one seed)" if one else "")
              for c, u, q, one in zip(s["claim"], s["unit"].fillna(""), s["quantity"], s["one_seed"])]
    return pd.DataFrame({
        "task": s["task"].to_numpy(), "claim": s["claim"].to_numpy(), "label": labels,
        "pretrained": s["pretrained"].to_numpy(float), "scratch": s["scratch"].to_numpy(float),
        "margin": m, "z": np.where(ok, m / w, np.nan), "lo": np.where(ok, lo / w, np.nan),
        "hi": np.where(ok, hi / w, np.nan), "verdict": s["verdict"].to_numpy(), "seeds": s["seeds"].to_numpy(),
        "note": ["" if k else _why_short(r) for k, r in zip(ok, s["reason"])],
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

def chapter_verdict(summary: pd.DataFrame, pairing: str = "profile") -> str:
    """The chapter's answer in one Markdown paragraph: each claim's verdict per task (the profile's
    learning rates; per unit for a flatness claim; a matched-rate verdict that differs is added in
    brackets), with the number of seeds behind it."""
    v = _cells(summary)
    parts = []
    for task, g in v.groupby("task", sort=False):
        bits = []
        for c, unit in _cell_order(g):
            h = g[(g["claim"] == c) & (g["unit"] == unit)]
            main = h[h["pairing"] == pairing]
            main_v = main["verdict"].iloc[0] if len(main) else scorecard.INCONCLUSIVE
            other = [f"{x} {p}" for p, x in zip(h["pairing"], h["verdict"]) if p != pairing and x != main_v]
            seeds = _seeds_note(int(main["seeds"].iloc[0]), bool(main["one_seed"].iloc[0])) if len(main) else ""
            name = _cell_name(c, unit).replace("curvature", "the curvature comparison", 1)
            bits.append(f"{name} **{main_v}** ({seeds}" + (f"; {'; '.join(other)}" if other else "") + ")")
        parts.append(f"on `{task}`, " + ", ".join(bits))
    return "In this build, " + "; ".join(parts) + "."


def units_finding(summary: pd.DataFrame, pairing: str = "profile") -> str:
    """One Markdown sentence per flatness claim and task: its verdict in the paper's unit and in the
    scale-invariant unit, and, where the two differ, that they disagree (a finding: the picture the paper
    reads and the scale-free measure tell different stories)."""
    v = _cells(summary)
    v = v[(v["pairing"] == pairing) & (v["unit"] != "")]
    parts = []
    for (task, claim), g in v.groupby(["task", "claim"], sort=False):
        by = dict(zip(g["unit"], g["verdict"]))
        name = CLAIMS[claim].name if claim in CLAIMS else f"claim {claim}"
        name = "claim 3 (wider)" if claim == 3 else ("the curvature claim (flatter)" if claim == "H" else name)
        paper, inv = by.get("paper", "—"), by.get("invariant", "—")
        if paper == inv:
            parts.append(f"on `{task}`, {name} **{paper}** in both units")
        else:
            parts.append(f"on `{task}`, {name} **{paper}** in the paper's unit but **{inv}** in the scale-invariant "
                         "unit — the units disagree")
    return ("In this build, " + "; ".join(parts) + ".") if parts else ""


def units_table(summary: pd.DataFrame, pairing: str = "profile") -> pd.DataFrame:
    """The flatness claims' rows (claims with units: 3 and H) at one pairing, the two units side by side:
    for each unit its quantities with PT, RI, the margin and its interval, the verdict and the seeds."""
    s = summary[(summary["claim"].isin([c for c in CLAIMS if CLAIMS[c].units])) & (summary["pairing"] == pairing)]
    s = s[s["unit"] != ""]
    order = {"invariant": 0, "paper": 1}
    s = s.assign(_u=s["unit"].map(order), _c=s["claim"].map({c: i for i, c in enumerate(CLAIMS)}))
    s = s.sort_values(["task", "_c", "_u"], kind="stable").drop(columns=["_u", "_c"])
    t = verdict_table(s).drop(columns=["pairing", "criterion", "why"])
    t.insert(2, "unit", [UNIT_NAMES[u] for u in s["unit"]])
    t["claim"] = [CLAIMS[c].name for c in s["claim"]]
    return t.reset_index(drop=True)


def pick(summary: pd.DataFrame, claim: int | str, qid: str, task: str | None = None,
         pairing: str = "profile") -> pd.Series:
    """The summarised row of ``claim`` whose quantity id is ``qid`` (for one task, default the first,
    and one pairing). Raises ``KeyError`` naming the qids that exist when none matches."""
    CLAIMS.qid(claim, qid)
    s = summary
    if "pairing" in s:
        s = s[s["pairing"] == pairing]
    task = task if task is not None else (s["task"].iloc[0] if len(s) else None)
    hit = s[(s["task"] == task) & (s["claim"] == claim) & (s["qid"] == qid)]
    if hit.empty:
        have = sorted(set(s.loc[s["claim"] == claim, "qid"]))
        raise KeyError(f"no row of claim {claim!r} with qid {qid!r} for task {task!r} and pairing {pairing!r}; "
                       f"its rows here: {have}")
    return hit.iloc[0]


def glue_quantities(summary: pd.DataFrame, picks: Mapping[str, tuple[int | str, str]], *,
                    task: str | None = None, pairing: str = "profile", digits: int = 3) -> dict[str, str]:
    """Glue this build's numbers for the chapter's prose (``myst_nb.glue``, not displayed).

    For every ``name: (claim, qid)`` of ``picks`` (see :func:`pick`) the keys ``{name}_pt``,
    ``{name}_ri`` (PT's and RI's value, mean over seeds, ``digits`` significant digits),
    ``{name}_verdict`` (holds / fails / inconclusive) and ``{name}_seeds`` (how many seeds decided it,
    or "one seed") are glued as text; a page quotes them with ``{glue:text}`name_pt```. Returns what
    was glued.
    """
    # myst_nb imports Sphinx (seconds): loaded only when a chapter glues
    from myst_nb import glue

    out: dict[str, str] = {}
    for name, (claim, qid) in picks.items():
        r = pick(summary, claim, qid, task=task, pairing=pairing)
        out.update({f"{name}_pt": number(r["pretrained"], digits), f"{name}_ri": number(r["scratch"], digits),
                    f"{name}_verdict": str(r["verdict"]), f"{name}_seeds": _seeds_note(int(r["seeds"]),
                                                                                        bool(r["one_seed"]))})
    for key, value in out.items():
        glue(key, value, display=False)
    return out


def verdict_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of a chapter's (or the whole) scorecard formatted for readers: one row per quantity and
    pairing over the seeds, with readable columns and 3–4 significant digits."""
    s = summary
    return pd.DataFrame({
        "task": s["task"], "pairing": s["pairing"], "claim": [_cell_name(c, u) for c, u in zip(s["claim"], s["unit"])],
        "quantity": s["quantity"],
        "PT": [plus_minus(m, d) for m, d in zip(s["pretrained"], s["pretrained_sd"])],
        "RI": [plus_minus(m, d) for m, d in zip(s["scratch"], s["scratch_sd"])],
        "margin [interval]": [_margin_text(r) for _, r in s.iterrows()],
        "criterion": s["criterion"], "verdict": s["verdict"], "seeds": [_seeds_note(n, o) for n, o in
                                                                          zip(s["seeds"], s["one_seed"])],
        "why": s["reason"],
    })


def per_seed_table(card: pd.DataFrame) -> pd.DataFrame:
    """Every row of the scorecard (:func:`bertscape.book.claims.full_scorecard`) for each seed separately,
    with its within-seed decision, in as few columns as the page's width allows: the margin with the
    interval or ± s.e. it was decided on in one column (:func:`_margin_text`)."""
    c = card
    return pd.DataFrame({
        "task": c["task"], "seed": c["seed"], "pairing": c["pairing"],
        "claim": [f"{x} · {u}" if u else str(x) for x, u in zip(c["claim"], c["unit"].fillna(""))],
        "quantity": c["quantity"], "PT": [number(v, 3) for v in c["pretrained"]],
        "RI": [number(v, 3) for v in c["scratch"]],
        "margin [interval]": [_margin_text(r) for _, r in c.iterrows()],
        "verdict": c["verdict"], "why": c["reason"],
    })


def _margin_text(r: pd.Series) -> str:
    """The margin and what it is decided on: [lo, hi] when an interval decides it, ± s.e. otherwise."""
    m, lo, hi, se = r["margin"], r["lo"], r["hi"], r["uncertainty"]
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{number(m, 3)} [{number(lo, 2)}, {number(hi, 2)}]"
    return plus_minus(m, se, 3)


def claim_sections(summary: pd.DataFrame, pairing: str = "profile") -> Iterable[tuple[str, Any]]:
    """Per claim: a Markdown paragraph (statement, verdict per unit, how it is measured, where the book
    computes it) and a table of its quantities (criterion, PT, RI, margin and interval, verdict, seeds,
    why), for the scorecard page. Yields ``(markdown, table)``; matched pairings appear as extra rows."""
    s = summary
    v = _cells(s)
    for c in [c for c in CLAIMS if c in set(s["claim"])]:
        cl = CLAIMS[c]
        g = s[s["claim"] == c]
        cells = v[(v["claim"] == c) & (v["pairing"] == pairing)]
        verdicts = ", ".join(f"**{x}** on `{t}`" + (f" in the {UNIT_NAMES[u]}" if u else "")
                             + f" ({_seeds_note(n, o)})"
                             for t, u, x, n, o in cells[["task", "unit", "verdict", "seeds", "one_seed"]]
                             .itertuples(index=False))
        page = CHAPTER_PAGES.get(cl.chapter, "")
        title = cl.name[0].upper() + cl.name[1:]
        kind = " (an extension, not the paper's claim)" if cl.extension else ""
        md = (f"**{title}{kind}: {cl.statement}.** Verdict: {verdicts or 'none'}. Measured as {cl.computed}; "
              f"computed in chapter {int(cl.chapter)} (`{page}`)"
              + (", and also with both runs at the same learning rate" if cl.controlled else "") + ".")
        tab = verdict_table(g).drop(columns="claim")
        if cl.units:
            tab.insert(2, "unit", [UNIT_NAMES.get(u, "—") if u else "—" for u in g["unit"]])
        if tab["task"].nunique() == 1:
            tab = tab.drop(columns="task")
        if tab["pairing"].nunique() == 1:
            tab = tab.drop(columns="pairing")
        yield md, people_table(tab.reset_index(drop=True))
