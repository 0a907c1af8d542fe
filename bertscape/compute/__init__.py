"""Where units of work run: in this process or on a Dask cluster (``executor``), with retries, resident
models on workers, and nothing known of what a unit computes beyond a picklable function and its
arguments.

May import: :mod:`bertscape.base`, :mod:`bertscape.data`, :mod:`bertscape.runs` (a worker loads a cached run).
"""
