"""saliency_tf1: fast, batched saliency methods for TensorFlow models in TF1 graph style.

A drop-in superset of PAIR's ``saliency.tf1`` API.
"""

from .backend import PerExample, TF1Backend
from .base import TF1Saliency
from .gradients import GradientSaliency
from .target import ClassTarget
from .visualization import (
    VisualizeImageDiverging,
    VisualizeImageGrayscale,
    overlay,
    save_figure,
    save_grid,
)

__version__ = "0.1.0"

__all__ = [
    "ClassTarget",
    "GradientSaliency",
    "PerExample",
    "TF1Backend",
    "TF1Saliency",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "overlay",
    "save_figure",
    "save_grid",
]
