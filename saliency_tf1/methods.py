"""The catalogue of methods by short name, as the CLI, the demo and the tests use them.

Each entry says how to build a method on a model and which call gives its
mask, so that code which "explains with every method" is written once. An
entry whose module is not importable (an optional dependency missing) is left
out of :func:`available_methods`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MethodSpec:
    """How to build and call one method.

    Attributes:
      name: short name (``saliency-tf1 explain --method NAME``).
      title: human-readable name for figures and tables.
      target: ``"module:Class"`` of the TF1 method class.
      call: the public method that gives the mask (``GetMask``, ``GetSmoothedMask``).
      kwargs: arguments of that call (beyond ``x_value``/``feed_dict``).
      needs_conv: the constructor takes ``conv_layer``.
      diverging: the mask is signed and best shown on a diverging scale.
    """

    name: str
    title: str
    target: str
    call: str = "GetMask"
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs_conv: bool = False
    diverging: bool = False

    def cls(self) -> type:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def build(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None) -> Any:
        """Constructs the method (adds its ops to the graph once)."""
        if self.needs_conv:
            if conv_layer is None:
                raise ValueError(f"{self.name}: this method needs a conv_layer tensor")
            return self.cls()(graph, session, y, x, conv_layer)
        return self.cls()(graph, session, y, x)

    def explain(self, method: Any, x_value: Any, feed_dict: dict | None = None,
                **overrides: Any) -> np.ndarray:
        """Runs the configured call for one input."""
        return getattr(method, self.call)(x_value, feed_dict, **{**self.kwargs, **overrides})


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("gradient", "Gradient", "saliency_tf1.gradients:GradientSaliency"),
        MethodSpec("smoothgrad", "SmoothGrad", "saliency_tf1.gradients:GradientSaliency",
                   call="GetSmoothedMask", kwargs={"seed": 0}),
        MethodSpec("ig", "Integrated Gradients",
                   "saliency_tf1.integrated_gradients:IntegratedGradients",
                   kwargs={"x_steps": 50}, diverging=True),
        MethodSpec("smoothig", "SmoothGrad IG",
                   "saliency_tf1.integrated_gradients:IntegratedGradients",
                   call="GetSmoothedMask", kwargs={"x_steps": 25, "nsamples": 10, "seed": 0}),
        MethodSpec("blurig", "Blur IG", "saliency_tf1.blur_ig:BlurIG"),
        MethodSpec("guidedig", "Guided IG", "saliency_tf1.guided_ig:GuidedIG"),
        MethodSpec("guided", "Guided Backprop", "saliency_tf1.guided_backprop:GuidedBackprop"),
        MethodSpec("deconvnet", "Deconvnet", "saliency_tf1.guided_backprop:Deconvnet"),
        MethodSpec("gradcam", "Grad-CAM", "saliency_tf1.grad_cam:GradCam", needs_conv=True),
        MethodSpec("gradcampp", "Grad-CAM++", "saliency_tf1.grad_cam:GradCamPlusPlus",
                   needs_conv=True),
        MethodSpec("guidedgradcam", "Guided Grad-CAM", "saliency_tf1.grad_cam:GuidedGradCam",
                   needs_conv=True),
        MethodSpec("occlusion", "Occlusion", "saliency_tf1.occlusion:Occlusion",
                   kwargs={"size": 5}),
        MethodSpec("xrai", "XRAI", "saliency_tf1.xrai:XRAI"),
    ]
}


def available_methods() -> list[str]:
    """Names of the methods whose modules import here, in catalogue order."""
    names = []
    for name, spec in METHODS.items():
        try:
            spec.cls()
        except (ImportError, AttributeError):
            continue
        names.append(name)
    return names


def get_method(name: str) -> MethodSpec:
    """The spec of a method by short name; ValueError listing the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"method: unknown name {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]

