"""saliency_tf1: fast, batched saliency methods for TensorFlow models in TF1 graph style.

A drop-in superset of PAIR's ``saliency.tf1`` API: every method class takes
``(graph, session, y, x[, conv_layer])``, builds its ops once, and offers
``GetMask``, ``GetSmoothedMask`` and ``GetMaskBatch``.
"""

from typing import Any

from .catalogue import METHODS, available_methods
from .engine.backend import TF1Backend
from .engine.session import PerExample
from .methods.base import TF1Saliency
from .methods.blur_ig import BlurIG
from .methods.deeplift import DeepLift
from .methods.expected_gradients import ExpectedGradients
from .methods.grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam
from .methods.gradient import GradientSaliency
from .methods.gradient_x_input import GradientXInput
from .methods.guided_backprop import Deconvnet, GuidedBackprop
from .methods.guided_ig import GuidedIG
from .methods.integrated_gradients import IntegratedGradients
from .methods.layer_conductance import LayerConductance
from .methods.lime import KernelShap, Lime
from .methods.lrp import LRP
from .methods.occlusion import Occlusion
from .methods.rise import RISE
from .methods.score_cam import ScoreCam
from .methods.xrai import XRAI, XRAIOutput, XRAIParameters
from .models import LoadedModel, UnsafeGraphError, load_model
from .streaming import ModelSpec, explain_to_dir, iter_masks, read_manifest
from .target import ClassTarget
from .visualization import (
    VisualizeImageDiverging,
    VisualizeImageGrayscale,
    overlay,
    save_figure,
    save_grid,
)

__version__ = "0.1.0"

# Imported on first use: they subclass TensorFlow classes, so importing them
# imports TensorFlow.
_LAZY = {"SaliencyHook": "training", "HookedSession": "training"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RISE",
    "KernelShap",
    "Lime",
    "ScoreCam",
    "LRP",
    "DeepLift",
    "ExpectedGradients",
    "GradientXInput",
    "LayerConductance",
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
    "ModelSpec",
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
    "explain_to_dir",
    "iter_masks",
    "load_model",
    "overlay",
    "read_manifest",
    "save_figure",
    "save_grid",
]
