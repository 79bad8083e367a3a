"""Guided Backpropagation and Deconvnet: gradients with gated ReLU backward passes.

Both are the gradient of ``y`` with respect to ``x`` computed through a copy
of the model's ``x -> y`` path whose ReLU-like ops have a modified backward
rule (see :func:`gated_gradients`). The copy is made once, in the constructor,
inside the caller's own graph: it reads the model's *live* variables and
constants and is fed the same placeholders, so no checkpoint, file or second
session is involved, and a training step or ``assign`` is reflected at once.
"""

from __future__ import annotations

from typing import Any

from ..engine.backend import Backend, TF1Backend
from ..engine.graph import tf_module
from .gradient import GradientSaliency
from .propagation import (
    RELU_LIKE,
    NodeInfo,
    Propagation,
    Rules,
    copy_backend,
    path_ops,
    propagate,
    register_gradient,
)

__all__ = ["RELU_LIKE", "Deconvnet", "GuidedBackprop", "gated_gradients", "gated_propagation",
           "path_ops", "register_gradients"]

#: The backward rules, by mode: the name under which each is registered with
#: ``tf.RegisterGradient``. The names are private to this package.
GRADIENT_NAMES = {
    "guided": "saliency_tf1/GuidedRelu",
    "deconvnet": "saliency_tf1/DeconvnetRelu",
}


def _local_gradient(op: Any, grad: Any) -> Any:
    """``f'(input) * grad`` for a ReLU-like op ``f``, with TF's own gradient kernels."""
    tf = tf_module()
    raw = tf.raw_ops
    kind = op.type
    if kind == "Relu":
        return raw.ReluGrad(gradients=grad, features=op.outputs[0])
    if kind == "Relu6":
        return raw.Relu6Grad(gradients=grad, features=op.inputs[0])
    if kind == "LeakyRelu":
        return raw.LeakyReluGrad(gradients=grad, features=op.inputs[0],
                                 alpha=op.get_attr("alpha"))
    if kind == "Elu":
        return raw.EluGrad(gradients=grad, outputs=op.outputs[0])
    if kind == "Selu":
        return raw.SeluGrad(gradients=grad, outputs=op.outputs[0])
    raise TypeError(f"saliency_tf1: no gated gradient for op type {kind!r} ({op.name!r})")


def _guided_gradient(op: Any, grad: Any) -> Any:
    # Guided backprop: the op's own derivative, applied to the positive part
    # of the incoming gradient only.
    return _local_gradient(op, tf_module().nn.relu(grad))


def _deconvnet_gradient(op: Any, grad: Any) -> Any:
    # Deconvnet: the positive part of the incoming gradient, whatever the input.
    del op
    return tf_module().nn.relu(grad)


def register_gradients() -> None:
    """Registers guided backprop's and deconvnet's backward rules (idempotent, thread-safe)."""
    for mode, fn in (("guided", _guided_gradient), ("deconvnet", _deconvnet_gradient)):
        register_gradient(GRADIENT_NAMES[mode], fn)


# ---------------------------------------------------------------------------
# The gated copy of the x -> y path (the machinery lives in .propagation)


def _gate(info: NodeInfo) -> dict[str, Any] | None:
    # Only the ReLU-like ops get the gated rule; everything else keeps its gradient.
    return {} if info.type in RELU_LIKE else None


def _rules(mode: str) -> Rules:
    return Rules(name=mode, key=(mode,), gradient=GRADIENT_NAMES[mode], assign=_gate)


def gated_propagation(graph: Any, y: Any, x: Any, mode: str = "guided") -> Propagation:
    """The gated copy's ``y`` and gradient (see :func:`gated_gradients`), built once."""
    if mode not in GRADIENT_NAMES:
        raise ValueError(f"mode: expected one of {sorted(GRADIENT_NAMES)}, got {mode!r}")
    register_gradients()
    return propagate(graph, y, x, _rules(mode))


def gated_gradients(graph: Any, y: Any, x: Any, mode: str = "guided") -> Any:
    """The tensor ``d y / d x`` with every ReLU-like op's backward pass gated.

    The ops on the path from ``x`` to ``y`` are copied once into ``graph``
    (under ``saliency_tf1/``) by :func:`~saliency_tf1.methods.propagation.propagate`:
    every tensor the path reads from outside it (variable reads, constants,
    other placeholders, ``x`` itself) is mapped to the original tensor, so the
    copy shares the model's live weights and feeds. The copied ReLU-like nodes
    get this package's gradient (``_gradient_op_type``); the original graph is
    not changed. Grappler-fused ``_FusedConv2D``/``_FusedMatMul``/
    ``_FusedDepthwiseConv2dNative`` nodes (optimised frozen graphs) are split
    into their plain ops in the copy so that their activation is gated too.
    Built once per ``(graph, y, x, mode)``; later calls return the same tensor.

    Backward rules, for ``z = f(a)`` with incoming gradient ``g``:

    * ``mode="guided"``: ``f'(a) * max(g, 0)``. For ``Relu`` this is
      ``[z > 0] [g > 0] g`` (Springenberg et al., 2014); ``Relu6``:
      ``[0 < a < 6] [g > 0] g``; ``LeakyRelu``: ``(1 if a > 0 else alpha) *
      max(g, 0)``; ``Elu``: ``(1 if a > 0 else z + 1) * max(g, 0)``;
      ``Selu``: its derivative times ``max(g, 0)``.
    * ``mode="deconvnet"``: ``max(g, 0)`` for every ReLU-like op, whatever its
      input (Zeiler and Fergus, 2014).

    Other ops (including composite activations such as GELU or swish, which
    are not single ops, and anything inside function bodies) are
    differentiated normally.

    ReLUs in TF1 ``cond`` branches (``Switch``/``Merge``) are gated; a path
    through a TF1 ``while_loop`` (``Enter``/``Exit`` ops) is refused.

    Raises:
      ValueError: ``y`` is not differentiable along the path (naming the op),
        or the path holds a fused op that cannot be split or a TF1 while loop.
    """
    return gated_propagation(graph, y, x, mode).gradients


class GuidedBackprop(GradientSaliency):
    """Guided Backpropagation: ``d y / d x`` with ReLUs passing only positive gradients.

    Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for Simplicity:
    The All Convolutional Net", 2014, arXiv:1412.6806. At each ReLU-like op the
    backward pass keeps the gradient only where the forward activation is
    positive *and* the incoming gradient is positive; see
    :func:`gated_gradients` for what ``Relu``, ``Relu6``, ``LeakyRelu``,
    ``Elu`` and ``Selu`` each get.

    Unlike PAIR's version, nothing is written to disk and no second graph or
    session is made: the guided path is a copy of the ``x -> y`` ops in the
    same graph that reads the model's own variables, so masks follow the
    current weights (after training steps or ``assign``) with no rebuild, and
    graphs without variables (frozen graphs) work. Constructing a second
    instance on the same ``(graph, y, x)`` adds no ops. Stateful ops that lie
    on the path (a dropout mask drawn from ``x``'s shape, an update op that
    reads ``x``) run in the copy as they would in the model: explain a model in
    its inference mode, as for any gradient method.

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.
      tmp_ckpt_path: accepted for compatibility with PAIR's signature and
        ignored (nothing is written).

    Example::

        guided = GuidedBackprop(graph, session, logits[:, 3], x)
        mask = guided.GetMask(image)
        masks = guided.GetMaskBatch(images)            # one session.run per batch_size inputs
    """

    _mode = "guided"
    graph_only = True
    #: Its gradients are gated ones: no plain-gradient noise builder.
    in_graph_builders = ()

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 tmp_ckpt_path: str | None = None, *, backend: Backend | None = None) -> None:
        del tmp_ckpt_path  # nothing is written
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return copy_backend(graph, session, y, x,
                            lambda: gated_propagation(graph, y, x, self._mode))

    def GetMask(
        self, x_value: Any, feed_dict: dict | None = None, *, batch_size: int | None = None
    ) -> Any:
        """Returns the gated gradient at ``x_value`` (one input, not batched), its shape."""
        return super().GetMask(x_value, feed_dict, batch_size=batch_size)


class Deconvnet(GuidedBackprop):
    """Deconvnet: ``d y / d x`` with ReLU-like ops passing ``max(g, 0)`` backward.

    Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
    ECCV 2014, arXiv:1311.2901 (as formulated by Springenberg et al., 2014):
    the backward pass through each ReLU-like op keeps the positive part of the
    incoming gradient, ignoring the forward activation. Same machinery and
    guarantees as :class:`GuidedBackprop`.
    """

    _mode = "deconvnet"
