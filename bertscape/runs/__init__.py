"""A fine-tuning run from spec to cached result: the precision a device computes in (``precision``), the
models (``models``), the frozen, validated run spec whose hash keys the cache (``spec``), evaluation of a
model on an evaluation set (``evaluate``) and training with resume (``train``).

May import: :mod:`bertscape.base`, :mod:`bertscape.data`.
"""
