"""Tasks and their sentences: the task registry (the embedded ``movies`` family, GLUE from the hub or a
folder), tokenisation with a cache, subsets, training and evaluation batches (``tasks``), and the task
metrics (``metrics``).

May import: :mod:`bertscape.base`.
"""
