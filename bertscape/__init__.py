"""bertscape: loss landscapes and trajectories of fine-tuning BERT vs training from scratch.

An executable companion to Hao, Dong, Wei & Xu, *Visualizing and Understanding the
Effectiveness of BERT* (EMNLP-IJCNLP 2019).

What a notebook needs::

    from bertscape import chapter, claims, plots, study

    P = chapter.start("quick")                  # a Profile: the experiment's size and settings
    curves = study.curves(P, "movies")          # any experiment of the book, cached
    plots.curve_1d(curves)
    chapter.verdict(P, "01")                    # the chapter's claims, verdicts and table

The package is built in layers, each a subpackage that imports only the layers below it:
``base`` → ``data`` → ``runs`` → ``compute`` → ``geometry`` → ``evidence`` → ``book`` (ARCHITECTURE.md).
This module hands out the names people use — the profile and run configuration, and the modules a
chapter calls — by attribute, loading each on first use (:data:`__all__`; ``from bertscape import *``
loads them all), so that ``import bertscape`` itself loads nothing heavy.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: Public name → the module that defines it (a module itself, or ``module:attribute``).
_PUBLIC: dict[str, str] = {
    "Profile": "bertscape.book.profiles:Profile", "PROFILE_NAMES": "bertscape.book.profiles:PROFILE_NAMES",
    "DEFAULT_PROFILE": "bertscape.book.profiles:DEFAULT_PROFILE", "get_profile": "bertscape.book.profiles:get_profile",
    "from_params": "bertscape.book.profiles:from_params", "RunSpec": "bertscape.runs.spec:RunSpec",
    "chapter": "bertscape.book.chapter", "study": "bertscape.book.study", "claims": "bertscape.book.claims",
    "plots": "bertscape.book.plots", "report": "bertscape.book.report", "tables": "bertscape.book.tables",
    "widgets": "bertscape.book.widgets", "scorecard": "bertscape.evidence.scorecard",
    "uncertainty": "bertscape.evidence.uncertainty", "landscape": "bertscape.geometry.landscape",
    "flatness": "bertscape.geometry.flatness", "layers": "bertscape.geometry.layers",
    "curvature": "bertscape.geometry.curvature", "linesearch": "bertscape.geometry.linesearch",
    "directions": "bertscape.geometry.directions", "train": "bertscape.runs.train",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'bertscape' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value


def __dir__() -> list[str]:
    return sorted(__all__)
