"""bertscape: loss landscapes and trajectories of fine-tuning BERT vs training from scratch.

An executable companion to Hao, Dong, Wei & Xu, *Visualizing and Understanding the
Effectiveness of BERT* (EMNLP-IJCNLP 2019).

What a notebook needs::

    from bertscape import claims, plots, report, study

    P = study.start("quick")                    # a Profile: the experiment's size and settings
    curves = study.curves(P, "movies")          # any experiment of the book, cached
    plots.curve_1d(curves)
    claims.verdict(P, "01")                     # the chapter's claims, verdicts and table

:data:`__all__` is that surface: the profile and run configuration, and the modules a chapter
calls (``from bertscape import *`` imports them; a plain ``import bertscape`` does not, so a
process that needs only, say, :mod:`bertscape.compute` does not load plotting). Everything else is
reached through its module.
"""
from .profiles import DEFAULT_PROFILE, PROFILE_NAMES, Profile, from_params, get_profile
from .spec import RunSpec

__version__ = "0.2.0"

__all__ = [
    "__version__",
    # configuration: an experiment's profile (and the papermill parameters that pick it), one run
    "Profile", "PROFILE_NAMES", "DEFAULT_PROFILE", "get_profile", "from_params", "RunSpec",
    # the modules a chapter calls
    "study", "claims", "plots", "report", "scorecard", "widgets", "landscape", "flatness", "layers",
]
