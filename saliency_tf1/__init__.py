"""saliency_tf1: fast, batched saliency methods for TensorFlow models in TF1 graph style.

A drop-in superset of PAIR's ``saliency.tf1`` API: every method class takes
``(graph, session, y, x[, conv_layer])``, builds its ops once, and offers
``GetMask``, ``GetSmoothedMask`` and ``GetMaskBatch``.
"""

from typing import Any

from .backend import PerExample, TF1Backend
from .base import TF1Saliency
from .blur_ig import BlurIG
from .grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam
from .gradients import GradientSaliency
from .guided_backprop import Deconvnet, GuidedBackprop
from .guided_ig import GuidedIG
from .integrated_gradients import IntegratedGradients
from .io import LoadedModel, UnsafeGraphError, load_model
from .methods import METHODS, available_methods
from .occlusion import Occlusion
from .streaming import iter_masks
from .target import ClassTarget
from .visualization import (
    VisualizeImageDiverging,
    VisualizeImageGrayscale,
    overlay,
    save_figure,
    save_grid,
)
from .xrai import XRAI, XRAIOutput, XRAIParameters

__version__ = "0.1.0"

# Imported on first use: they subclass TensorFlow classes, so importing them
# imports TensorFlow.
_LAZY = {"SaliencyHook": "hooks", "HookedSession": "hooks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHODS",
    "XRAI",
    "BlurIG",
    "ClassTarget",
    "Deconvnet",
    "GradCam",
    "GradCamPlusPlus",
    "GradientSaliency",
    "GuidedBackprop",
    "GuidedGradCam",
    "GuidedIG",
    "HookedSession",
    "IntegratedGradients",
    "LoadedModel",
    "Occlusion",
    "PerExample",
    "SaliencyHook",
    "TF1Backend",
    "TF1Saliency",
    "UnsafeGraphError",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "XRAIOutput",
    "XRAIParameters",
    "available_methods",
    "iter_masks",
    "load_model",
    "overlay",
    "save_figure",
    "save_grid",
]
