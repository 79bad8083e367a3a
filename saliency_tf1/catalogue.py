"""The one catalogue of methods by short name, read by the CLI, the demo, the training
hook, ``saliency_tf1.compat`` and the contract tests.

Each entry says how to build a method on a model and which call gives its
mask, so that code which "explains with every method" is written once. An
entry whose optional dependency is missing is left out of
:func:`available_methods`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
from .methods.xrai import XRAI


@dataclass(frozen=True)
class MethodSpec:
    """How to build and call one method.

    Attributes:
      name: short name (``saliency-tf1 explain --method NAME``).
      title: human-readable name for figures and tables.
      cls: the TF1 method class.
      call: the public method that gives the mask (``GetMask``, ``GetSmoothedMask``).
      kwargs: arguments of that call (beyond ``x_value``/``feed_dict``).
      needs_conv: the constructor takes ``conv_layer`` (an internal layer).
      init: keyword arguments of the constructor (a rule preset).
      diverging: the mask is signed and best shown on a diverging scale.
      requires: modules the method needs at run time (optional dependencies).
    """

    name: str
    title: str
    cls: type
    call: str = "GetMask"
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs_conv: bool = False
    init: Mapping[str, Any] = field(default_factory=dict)
    diverging: bool = False
    requires: tuple[str, ...] = ()

    @property
    def smoothed(self) -> bool:
        """Whether the mask is a SmoothGrad average (random: it takes a ``seed``)."""
        return self.call == "GetSmoothedMask"

    def available(self) -> bool:
        """Whether the optional dependencies are installed here."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)

    def build(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None) -> Any:
        """Constructs the method (adds its ops to the graph once)."""
        if self.needs_conv:
            if conv_layer is None:
                raise ValueError(f"{self.name}: this method needs a conv_layer tensor")
            return self.cls(graph, session, y, x, conv_layer, **self.init)
        return self.cls(graph, session, y, x, **self.init)

    def explain(self, method: Any, x_value: Any, feed_dict: dict | None = None,
                **overrides: Any) -> np.ndarray:
        """Runs the configured call for one input."""
        return getattr(method, self.call)(x_value, feed_dict, **{**self.kwargs, **overrides})

    def explain_batch(self, method: Any, x_batch: Any, feeds: Sequence[dict | None],
                      batch_feed: dict | None = None, *, seeds: Sequence[int] | None = None,
                      **overrides: Any) -> np.ndarray:
        """Masks of many inputs: one ``GetMaskBatch`` (with ``batch_feed``, which may hold
        :class:`~saliency_tf1.PerExample` values), or, for a smoothed method, one call per
        input with its own feed of ``feeds`` and its own seed of ``seeds``.
        """
        kwargs = {**self.kwargs, **overrides}
        if not self.smoothed:
            call = "GetMaskBatch" if self.call == "GetMask" else self.call
            if call == "GetMaskBatch":
                return method.GetMaskBatch(x_batch, batch_feed, **kwargs)
            return np.stack([getattr(method, call)(x, f, **kwargs)
                             for x, f in zip(x_batch, feeds)])
        masks = []
        for k, (x, feed) in enumerate(zip(x_batch, feeds)):
            seeded = kwargs if seeds is None else {**kwargs, "seed": seeds[k]}
            masks.append(method.GetSmoothedMask(x, feed, **seeded))
        return np.stack(masks)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in [
        MethodSpec("gradient", "Gradient", GradientSaliency),
        MethodSpec("smoothgrad", "SmoothGrad", GradientSaliency, call="GetSmoothedMask",
                   kwargs={"seed": 0}),
        MethodSpec("ig", "Integrated Gradients", IntegratedGradients, kwargs={"x_steps": 50},
                   diverging=True),
        MethodSpec("smoothig", "SmoothGrad IG", IntegratedGradients, call="GetSmoothedMask",
                   kwargs={"x_steps": 25, "nsamples": 10, "seed": 0}),
        MethodSpec("blurig", "Blur IG", BlurIG),
        MethodSpec("guidedig", "Guided IG", GuidedIG),
        MethodSpec("guided", "Guided Backprop", GuidedBackprop),
        MethodSpec("deconvnet", "Deconvnet", Deconvnet),
        MethodSpec("gradcam", "Grad-CAM", GradCam, needs_conv=True),
        MethodSpec("gradcampp", "Grad-CAM++", GradCamPlusPlus, needs_conv=True),
        MethodSpec("guidedgradcam", "Guided Grad-CAM", GuidedGradCam, needs_conv=True),
        MethodSpec("occlusion", "Occlusion", Occlusion, kwargs={"size": 5}),
        MethodSpec("xrai", "XRAI", XRAI, requires=("skimage",)),
        MethodSpec("gradinput", "Gradient × Input", GradientXInput, diverging=True),
        MethodSpec("expectedgrad", "Expected Gradients", ExpectedGradients,
                   kwargs={"references": "uniform", "nsamples": 32, "seed": 0}, diverging=True),
        MethodSpec("deeplift", "DeepLIFT", DeepLift, diverging=True),
        MethodSpec("lrp", "LRP-ε", LRP, diverging=True),
        MethodSpec("lrpcomposite", "LRP composite", LRP,
                   init={"rule": "composite", "first_layer": "zB"}, diverging=True),
        MethodSpec("conductance", "Layer Conductance", LayerConductance, needs_conv=True,
                   kwargs={"resize": True}, diverging=True),
        MethodSpec("rise", "RISE", RISE, kwargs={"n_masks": 2000, "seed": 0}),
        MethodSpec("scorecam", "Score-CAM", ScoreCam, needs_conv=True),
        MethodSpec("lime", "LIME", Lime, kwargs={"n_samples": 1000, "seed": 0},
                   diverging=True, requires=("skimage",)),
        MethodSpec("kernelshap", "KernelSHAP", KernelShap, kwargs={"n_samples": 1000, "seed": 0},
                   diverging=True, requires=("skimage",)),
    ]
}


def available_methods() -> list[str]:
    """Names of the methods whose optional dependencies are installed, in catalogue order."""
    return [name for name, spec in METHODS.items() if spec.available()]


def get_method(name: str) -> MethodSpec:
    """The spec of a method by short name; ValueError listing the choices otherwise."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method: unknown name {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def select_methods(methods: Any, *, has_conv: bool | None = None, conv_hint: str = "conv_layer",
                   reserved: Mapping[str, str] | None = None
                   ) -> dict[str, tuple[MethodSpec, dict[str, Any]]]:
    """``{name: (spec, arguments)}`` from catalogue names with their arguments.

    ``methods`` is a name, a sequence of names or ``(name, {arguments})``
    pairs, or a mapping ``{name: {arguments}}``; the arguments are those of the
    method's call (``GetSmoothedMask``'s too for a smoothed method) and
    override the catalogue's. ``has_conv=False`` refuses methods that need a
    conv layer (named ``conv_hint``); ``reserved`` maps argument names the
    caller sets itself to the advice given when a method's arguments hold one.
    The training hook and the data-set runs read their methods through this.
    """
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    elif isinstance(methods, Iterable):
        items = [(m, {}) if isinstance(m, str) else tuple(m) for m in methods]
    else:
        raise TypeError(f"methods: expected catalogue names, (name, arguments) pairs or a "
                        f"mapping, got {type(methods).__name__}")
    if not items:
        raise ValueError("methods: expected at least one method, got none")
    out: dict[str, tuple[MethodSpec, dict[str, Any]]] = {}
    for item in items:
        if len(item) != 2 or not isinstance(item[1], Mapping):
            raise TypeError(f"methods: expected (name, {{arguments}}) pairs, got {item!r}")
        name, arguments = item
        spec = get_method(name)
        if spec.needs_conv and has_conv is False:
            raise ValueError(f"methods: {name!r} needs {conv_hint}= (a [batch, h, w, c] tensor)")
        if not spec.available():
            raise ValueError(f"methods: {name!r} needs the Python module(s) "
                             f"{', '.join(spec.requires)}; install them or leave it out")
        for argument, advice in (reserved or {}).items():
            if argument in arguments:
                raise ValueError(f"methods[{name!r}]: {advice}")
        out[name] = (spec, {**spec.kwargs, **dict(arguments)})
    return out
