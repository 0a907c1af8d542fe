"""bertscape: loss landscapes and trajectories of fine-tuning BERT vs training from scratch.

An executable companion to Hao, Dong, Wei & Xu, *Visualizing and Understanding the
Effectiveness of BERT* (EMNLP-IJCNLP 2019).
"""
from .cache import CODE_VERSION as __version__
from .spec import RunSpec

__all__ = ["RunSpec", "__version__"]
