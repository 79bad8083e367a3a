"""The method matrix shared by the contract, thread, streaming and distributed tests.

Everything here is derived from the catalogue, :data:`saliency_tf1.methods.METHODS`:
a method that lands in the catalogue is covered by every test that iterates
:func:`call_targets` without any change here. :data:`CHEAP` only makes the
arguments small (few path steps, noise samples, windows) so that the matrix
stays fast; a method missing from it runs with its catalogue arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from saliency_tf1.catalogue import METHODS, available_methods
from saliency_tf1.target import ClassTarget

v1 = tf.compat.v1

#: Cheap method arguments by catalogue name (merged over the catalogue's own).
#: A value that is a callable is called with the call's name when the arguments
#: are needed, so a method-specific class (XRAIParameters) is imported only
#: when that method is.
CHEAP: dict[str, dict[str, Any] | Callable[[str], dict[str, Any]]] = {
    "smoothgrad": {"nsamples": 3, "seed": 0},
    "ig": {"x_steps": 4},
    "smoothig": {"x_steps": 3, "nsamples": 2, "seed": 0},
    "blurig": {"steps": 4},
    "guidedig": {"x_steps": 4},
    "occlusion": {"size": 5},
    "xrai": lambda call: _xrai_args(call),
    "expectedgrad": {"nsamples": 4, "seed": 0},
    "conductance": {"x_steps": 4},
    "rise": {"n_masks": 48},
    "lime": {"n_samples": 24},
    "kernelshap": {"n_samples": 24},
}

#: Public calls besides the catalogue's own that every method offering them must honour.
EXTRA_CALLS = ("GetMaskBatch", "GetSmoothedMask", "GetMaskWithDetails")

#: Arguments the extra ``GetSmoothedMask`` call adds (seeded, so it is reproducible).
SMOOTH_ARGS = {"nsamples": 2, "seed": 0}

#: Arguments that belong to ``GetSmoothedMask`` rather than to the method.
_SMOOTH_ONLY = ("nsamples", "seed", "stdev_spread", "magnitude")


def grid_segments(size: int = 12, cells: int = 3) -> list[np.ndarray]:
    """Boolean ``[size, size]`` masks of a ``cells x cells`` grid (segments for XRAI)."""
    side = size // cells
    segments = []
    for r in range(cells):
        for c in range(cells):
            mask = np.zeros((size, size), bool)
            mask[r * side:(r + 1) * side, c * side:(c + 1) * side] = True
            segments.append(mask)
    return segments


def _xrai_args(call: str) -> dict[str, Any]:
    """XRAI with few IG steps; its own segmentation (about 1 s an image) only in GetMask.

    The other calls get a fixed grid of segments: one list per image for
    GetMaskBatch, whose batches in these tests hold 2 images.
    """
    from saliency_tf1.methods.xrai import XRAIParameters

    if call == "GetMask":
        return {"extra_parameters": XRAIParameters(steps=4)}
    params = XRAIParameters(steps=4, experimental_params={"min_pixel_diff": 0})
    segments = grid_segments()
    return {"extra_parameters": params,
            "segments": [segments, segments] if call == "GetMaskBatch" else segments}


def method_args(name: str, call: str | None = None) -> dict[str, Any]:
    """The catalogue's arguments of ``name``'s ``call`` (default: its own), made cheap."""
    cheap = CHEAP.get(name, {})
    if callable(cheap):
        cheap = cheap(call or METHODS[name].call)
    return {**METHODS[name].kwargs, **cheap}


@dataclass(frozen=True)
class CallTarget:
    """One public call of one catalogue method, with cheap arguments."""

    name: str
    call: str
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return f"{self.name}.{self.call}"

    @property
    def batched(self) -> bool:
        return self.call == "GetMaskBatch"

    @property
    def input_name(self) -> str:
        """The argument the input is passed as (and error messages must name)."""
        return "x_batch" if self.batched else "x_value"

    @property
    def seeded(self) -> bool:
        return "seed" in self.kwargs

    def accepts(self, method: Any, argument: str) -> bool:
        """Whether the call takes ``argument`` (named, or through ``**kwargs``)."""
        params = inspect.signature(getattr(method, self.call)).parameters
        return argument in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )

    def run(self, method: Any, value: Any, feed_dict: Any, **overrides: Any) -> np.ndarray:
        """Calls it; returns the mask(s) as an array."""
        out = getattr(method, self.call)(value, feed_dict, **{**self.kwargs, **overrides})
        return np.asarray(getattr(out, "attribution_mask", out))


def call_targets() -> list[CallTarget]:
    """Every catalogue method's configured call, plus its extra public calls.

    A catalogue entry whose call is ``GetMask`` also gets ``GetMaskBatch`` and
    ``GetSmoothedMask`` (where the class has them); entries configured with
    another call (``smoothgrad`` = gradient + ``GetSmoothedMask``) get only it.
    """
    targets = []
    for name in available_methods():
        spec = METHODS[name]
        args = method_args(name)
        targets.append(CallTarget(name, spec.call, args))
        if spec.call != "GetMask":
            continue
        cls = spec.cls
        for call in EXTRA_CALLS:
            if hasattr(cls, call):
                extra = method_args(name, call)
                if call == "GetSmoothedMask":  # the smoothing's own nsamples and seed
                    extra = {**{k: v for k, v in extra.items() if k not in _SMOOTH_ONLY},
                             **SMOOTH_ARGS}
                targets.append(CallTarget(name, call, extra))
    return targets


@dataclass
class ContractModel:
    """A small CNN with variables, a required class placeholder and an exposed conv layer."""

    graph: Any
    session: Any
    x: Any
    y: Any
    conv: Any
    logits: Any
    target: ClassTarget
    variables: list = field(default_factory=list)

    def feed(self, classes: Any = 1) -> dict:
        return self.target.feed(classes)

    def op_count(self) -> int:
        return len(self.graph.get_operations())

    def variable_values(self) -> list[np.ndarray]:
        return self.session.run(self.variables)

    def build(self, name: str, session: Any = None) -> Any:
        """Builds catalogue method ``name`` on this model (optionally on another session)."""
        return METHODS[name].build(self.graph, session or self.session, self.target.y,
                                   self.x, self.conv)


def build_model(
    size: int = 12,
    channels: int = 3,
    classes: int = 4,
    seed: int = 0,
    *,
    target: str = "",
    conv_device: str | None = None,
    head_device: str | None = None,
) -> ContractModel:
    """Builds the model in its own graph and a session on ``target`` ("" = local).

    conv-relu-conv-relu-GAP-dense, weights in variables initialised from fixed
    draws of ``seed`` (so two builds hold the same function); ``y`` is the
    logit of a class fed through :class:`ClassTarget` (a required placeholder).
    ``conv_device``/``head_device`` place the two halves (distributed tests).
    """
    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    init = {
        "w1": rng.normal(0, 0.4, (3, 3, channels, 6)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (3, 3, 6, 6)).astype(np.float32),
        "wd": rng.normal(0, 0.5, (6, classes)).astype(np.float32),
    }
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, channels], name="x")
        with graph.device(conv_device):
            w1 = v1.get_variable("w1", initializer=init["w1"])
            w2 = v1.get_variable("w2", initializer=init["w2"])
            h = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + 0.05)
            conv = tf.nn.relu(tf.nn.conv2d(h, w2, 1, "SAME") - 0.02, name="conv")
        with graph.device(head_device):
            wd = v1.get_variable("wd", initializer=init["wd"])
            logits = tf.matmul(tf.reduce_mean(conv, [1, 2]), wd, name="logits")
            class_target = ClassTarget(logits)
        variables = [w1, w2, wd]
        initializer = v1.variables_initializer(variables)
    session = v1.Session(target, graph=graph)
    session.run(initializer)
    return ContractModel(graph, session, x, class_target.y, conv, logits, class_target,
                         variables)


def make_inputs(shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 inputs in [0, 1)."""
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)
