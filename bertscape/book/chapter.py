"""A chapter's first and last cells: :func:`start` (the parameters resolved into a profile, the plotting
style, and the page's header: what this execution ran, with which parameters, and where its numbers come
from) and :func:`verdict` (the chapter's claims, their verdict line and the numbers its prose quotes,
glued for the page, and the table of its rows)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from IPython.display import Markdown, display

from bertscape.book import claims, plots, report
from bertscape.book.bundle import read_manifest
from bertscape.book.profiles import DEFAULT_PROFILE, Profile, from_params
from bertscape.book.study import _prec
from bertscape.evidence import scorecard
from bertscape.runs.models import resolve_device
from bertscape.runs.precision import describe as describe_precision

__all__ = ["start", "verdict", "profile_summary", "precision_summary", "parameters_line", "results_source"]


def start(profile: str = DEFAULT_PROFILE, tasks: str | list[str] | None = None, glue_dir: str | None = None,
          overrides: dict[str, Any] | str | None = None, seeds: int | list[int] | str | None = None,
          model: str | None = None, *, show_profile: bool = True) -> Profile:
    """A chapter's set-up, the cell after its papermill parameters: resolves the parameters into a
    :class:`~bertscape.book.profiles.Profile` (:func:`bertscape.book.profiles.from_params`), applies the
    book's plotting style (:func:`bertscape.book.plots.use_style`) and, with ``show_profile``, displays
    what this execution runs (:func:`profile_summary`). Returns the profile."""
    P = from_params(profile, tasks, glue_dir, overrides, seeds=seeds, model=model)
    plots.use_style()
    if show_profile:
        given = {"profile": profile, "tasks": tasks, "seeds": seeds, "model": model, "glue_dir": glue_dir,
                 "overrides": overrides}
        display(Markdown(profile_summary(P) + "\n\n" + parameters_line(given) + "\n\n" + results_source()))
    return P


#: The parameters cell's defaults (what a reader sees in the cell, whatever this page was built with).
CELL_DEFAULTS = {"profile": DEFAULT_PROFILE, "tasks": None, "seeds": None, "model": None, "glue_dir": None,
                 "overrides": {}}


def parameters_line(given: dict[str, Any]) -> str:
    """The values this execution's parameters cell actually held (papermill replaces the defaults the
    page shows in a cell that is not displayed), or that it ran with the defaults."""
    def empty(v: Any) -> bool:
        return v is None or v == {} or v == [] or (isinstance(v, str) and v.strip() in ("", "{}", "[]", "None"))

    used = {k: v for k, v in given.items() if not empty(v) and v != CELL_DEFAULTS.get(k)}
    if not used:
        return "**Parameters of this execution:** the defaults shown in the cell below."
    return ("**Parameters of this execution** (the cell below shows the defaults): "
            + ", ".join(f"`{k} = {v!r}`" for k, v in used.items()) + ".")


def results_source() -> str:
    """Where this page's numbers come from: a results bundle the build imported (its manifest's profile,
    machine, precision, date and package version), or this build itself."""
    path = os.environ.get("BERTSCAPE_BUNDLE")
    if not path:
        return ("**Source of the results:** computed in this build (or read back from this machine's cache, "
                "where an earlier build computed them).")
    m = read_manifest(path)
    prec = ", ".join(f"{k.replace('_precision', '')} {v}" for k, v in m["precision"].items())
    return (f"**Source of the results:** imported from the results bundle `{Path(path).name}` — profile "
            f"`{m['profile']}`, computed on {m['machine']['device']} in {prec}, on {m['created']}, with bertscape "
            f"{m['package_version']}; nothing on this page was trained or evaluated in this build.")


def profile_summary(P: Profile) -> str:
    """A Markdown paragraph saying what this execution of a chapter ran."""
    n_train = "all" if P.n_train is None else f"{P.n_train:,}"
    return (f"**Profile `{P.name}`** ({P.description}): model `{P.model}`, task(s) {', '.join(f'`{t}`' for t in P.tasks)}, "
            f"seed(s) {', '.join(map(str, P.seeds))}; {n_train} training sentences × {P.epochs} epochs, "
            f"max length {P.max_length}; 1D curves of {P.curve_points} points and {P.grid_points[0]}×{P.grid_points[1]} "
            f"surfaces on {P.grid_n_eval} sentences per split. {precision_summary(P)}")


def precision_summary(P: Profile) -> str:
    """Which precision this execution computed in (each profile field resolved on its device) and why."""
    fields = {"training": "precision", "curves": "curve_precision", "grids": "grid_precision"}
    used = ", ".join(f"{k} {_prec(P, f)}" + (" (auto)" if getattr(P, f) == "auto" else " (pinned)")
                     for k, f in fields.items())
    return f"Precision: {used}; Hessians fp32; {describe_precision(resolve_device(P.device))}."


def verdict(P: Profile, chapter: str, quantities: Mapping[str, tuple[int | str, str]] | None = None) -> Any:
    """A chapter's last cell: its claim rows (:func:`chapter_scorecard`), the verdict line glued as
    ``chapter_verdict`` (:func:`bertscape.book.report.chapter_verdict`; for a chapter with a flatness claim
    also ``units_finding``, :func:`bertscape.book.report.units_finding`), the numbers its prose quotes glued
    by :func:`bertscape.book.report.glue_quantities` (``quantities``: ``{name: (claim, qid)}``), and,
    returned for display, the table of its rows for readers."""
    # myst_nb imports Sphinx (seconds): loaded only when a chapter ends, not by the tests of the header
    from myst_nb import glue

    card = claims.chapter_scorecard(P, chapter)
    summary = scorecard.summarise(card)
    glue("chapter_verdict", Markdown(report.chapter_verdict(summary)), display=False)
    if any(claims.CLAIMS[c].units for c in claims.CLAIMS.chapters().get(chapter, ())):
        glue("units_finding", Markdown(report.units_finding(summary)), display=False)
    report.glue_quantities(summary, quantities or {})
    return report.people_table(report.drop_constant(report.verdict_table(summary), ["task"]))
