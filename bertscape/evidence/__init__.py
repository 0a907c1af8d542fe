"""From measured numbers to verdicts: sampling errors (``uncertainty``: bootstraps, intervals, the t rule
over seeds, permutation tests) and the claims' rows and the rule that decides them (``scorecard``).
Pure functions of arrays.

May import: :mod:`bertscape.base`, :mod:`bertscape.data`, :mod:`bertscape.geometry` (flatness numbers).
"""
