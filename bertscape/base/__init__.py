"""The ground floor: what every other layer may use, and that imports nothing of bertscape above it.

``errors`` (the house error that names the parameter, the value and what is accepted), ``envvars``
(environment variables for a block), ``progress`` (the one switch of the progress bars), ``cache`` (one
on-disk cache, atomic writes, memos), ``versions`` (cache versions tied to the code that computes each
kind of result) and ``workcount`` (the work a process has done, for the time estimate).

May import: the standard library, numpy, and (lazily) xarray and pandas.
"""
