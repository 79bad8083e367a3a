"""Guided Backpropagation and Deconvnet: gradients with gated ReLU backward passes.

Both are the gradient of ``y`` with respect to ``x`` computed through a copy
of the model's ``x -> y`` path whose ReLU-like ops have a modified backward
rule (see :func:`gated_gradients`). The copy is made once, in the constructor,
inside the caller's own graph: it reads the model's *live* variables and
constants and is fed the same placeholders, so no checkpoint, file or second
session is involved, and a training step or ``assign`` is reflected at once.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any

from ..engine.backend import Backend, TF1Backend
from ..engine.graph import cached_ops, tf_module
from .gradient import GradientSaliency

#: The backward rules, by mode: the name under which each is registered with
#: ``tf.RegisterGradient``. The names are private to this package.
GRADIENT_NAMES = {
    "guided": "saliency_tf1/GuidedRelu",
    "deconvnet": "saliency_tf1/DeconvnetRelu",
}

#: ReLU-like op types whose backward pass is gated.
RELU_LIKE = ("Relu", "Relu6", "LeakyRelu", "Elu", "Selu")

_REGISTER_LOCK = threading.Lock()


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
    """Registers this package's backward rules with TensorFlow (idempotent, thread-safe).

    ``tf.RegisterGradient`` refuses a name twice (KeyError); that is the only
    record kept, so there is no module or class flag to go stale.
    """
    tf = tf_module()
    with _REGISTER_LOCK:
        for mode, fn in (("guided", _guided_gradient), ("deconvnet", _deconvnet_gradient)):
            # KeyError: registered already (this process imported us before).
            with contextlib.suppress(KeyError):
                tf.RegisterGradient(GRADIENT_NAMES[mode])(fn)


# ---------------------------------------------------------------------------
# The x -> y path and its copy


def path_ops(y: Any, x: Any) -> list[Any]:
    """The ops on the path from tensor ``x`` to tensor ``y``, in creation (topological) order.

    These are the ancestors of ``y`` (through data and control edges) that
    depend on the value of ``x``; ``x``'s own op is not one of them.
    """
    ancestors: dict[str, Any] = {}
    stack = [y.op]
    while stack:
        op = stack.pop()
        if op.name in ancestors:
            continue
        ancestors[op.name] = op
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    consumers: dict[str, list[Any]] = {}
    seeds = []
    for op in ancestors.values():
        if any(t is x or t.name == x.name for t in op.inputs):
            seeds.append(op)
        for src in {t.op.name for t in op.inputs} | {c.name for c in op.control_inputs}:
            consumers.setdefault(src, []).append(op)
    on_path: dict[str, Any] = {}
    stack = [op for op in seeds if op is not x.op]
    while stack:
        op = stack.pop()
        if op.name in on_path:
            continue
        on_path[op.name] = op
        stack.extend(consumers.get(op.name, ()))
    return [op for op in y.graph.get_operations() if op.name in on_path]


# Attributes each plain op keeps when a fused op is split (the rest take defaults).
_SPLIT_ATTRS = {
    "Conv2D": ("T", "strides", "use_cudnn_on_gpu", "padding", "explicit_paddings",
               "data_format", "dilations"),
    "DepthwiseConv2dNative": ("T", "strides", "padding", "explicit_paddings", "data_format",
                              "dilations"),
    "MatMul": ("T", "transpose_a", "transpose_b"),
}
_FUSED_BASE = {
    "_FusedConv2D": "Conv2D",
    "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul",
}
_FUSED_ACTIVATIONS = RELU_LIKE + ("Tanh", "Sigmoid")
# TF1 (v1 control flow) loop ops: a copy of them cannot be differentiated
# without the WhileContext that lives outside the GraphDef.
_V1_LOOP_OPS = ("Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration",
                "LoopCond")


def _split_fused(node: Any, tf: Any) -> list[Any]:
    """Splits a grappler-fused ``_Fused*`` NodeDef into the plain ops it stands for.

    ``_FusedConv2D``/``_FusedDepthwiseConv2dNative``/``_FusedMatMul`` with
    ``fused_ops`` drawn from ``BiasAdd``, ``FusedBatchNorm`` (inference),
    ``Add`` and one activation become ``Conv2D`` -> ``BiasAdd`` -> ... ->
    ``Relu``; the last node keeps the fused node's name, so its consumers are
    unchanged. Anything else raises ValueError naming the node.
    """
    base_type = _FUSED_BASE[node.op]
    fused = [s.decode() for s in node.attr["fused_ops"].list.s]
    data = [i for i in node.input if not i.startswith("^")]
    control = [i for i in node.input if i.startswith("^")]
    n_args = node.attr["num_args"].i
    args = data[2 : 2 + n_args]
    dtype = node.attr["T"]
    data_format = node.attr.get("data_format")

    def make(op_type: str, suffix: str, inputs: list[str]) -> Any:
        new = tf.compat.v1.NodeDef(name=f"{node.name}/{suffix}", op=op_type, device=node.device)
        new.input.extend(inputs)
        new.attr["T"].CopyFrom(dtype)
        return new

    base = make(base_type, "split_base", data[:2])
    for attr in _SPLIT_ATTRS[base_type]:
        if attr in node.attr:
            base.attr[attr].CopyFrom(node.attr[attr])
    nodes = [base]
    for step, op_type in enumerate(fused):
        prev = nodes[-1].name
        if op_type == "BiasAdd" and args:
            new = make("BiasAdd", f"split_{step}", [prev, args.pop(0)])
            if data_format is not None:
                new.attr["data_format"].CopyFrom(data_format)
        elif op_type == "FusedBatchNorm" and len(args) >= 4:
            new = make("FusedBatchNormV3", f"split_{step}", [prev] + args[:4])
            del args[:4]
            new.attr["U"].type = tf.float32.as_datatype_enum
            new.attr["epsilon"].CopyFrom(node.attr["epsilon"])
            new.attr["is_training"].b = False
            if data_format is not None:
                new.attr["data_format"].CopyFrom(data_format)
        elif op_type == "Add" and args:
            new = make("AddV2", f"split_{step}", [prev, args.pop(0)])
        elif op_type in _FUSED_ACTIVATIONS:
            new = make(op_type, f"split_{step}", [prev])
            if op_type == "LeakyRelu":
                new.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
        else:
            raise ValueError(
                f"y: the path from x to y holds the fused op {node.name!r} ({node.op}, "
                f"fused_ops={fused}) that saliency_tf1 cannot split into plain ops; "
                "explain the graph before grappler optimisation instead"
            )
        nodes.append(new)
    if len(nodes) == 1:
        raise ValueError(f"y: fused op {node.name!r} ({node.op}) has no fused_ops")
    nodes[-1].name = node.name
    nodes[-1].input.extend(control)
    return nodes


def _has_function_attr(node: Any) -> bool:
    for value in node.attr.values():
        if value.HasField("func") or (value.HasField("list") and len(value.list.func)):
            return True
    return False


def _build_gated_gradients(graph: Any, y: Any, x: Any, mode: str) -> Any:
    tf = tf_module()
    v1 = tf.compat.v1
    register_gradients()
    ops = path_ops(y, x)
    if not ops:  # y is x itself
        return v1.gradients(y, x)[0]
    on_path = {op.name for op in ops}
    gradient_name = GRADIENT_NAMES[mode].encode()
    graph_def = v1.GraphDef()
    graph_def.versions.CopyFrom(graph.graph_def_versions)
    input_map: dict[str, Any] = {}
    outside_controls: dict[str, Any] = {}
    with_functions = []
    for op in ops:
        if op.type in _V1_LOOP_OPS:
            raise ValueError(
                f"y: the path from x to y runs through a TF1 while loop (op {op.name!r}, "
                f"{op.type}); gated gradients cannot be built through v1 control-flow loops "
                "(build the model with control flow v2, the TF2 default)"
            )
        node = v1.NodeDef()
        node.CopyFrom(op.node_def)
        node.attr.pop("_class", None)  # colocation with nodes that are not copied
        for inp in node.input:
            if inp.startswith("^"):
                if inp[1:] not in on_path:
                    outside_controls[inp] = graph.get_operation_by_name(inp[1:])
                continue
            name, _, index = inp.partition(":")
            if name not in on_path:
                input_map[inp] = graph.get_tensor_by_name(f"{name}:{index or 0}")
        if _has_function_attr(node):
            with_functions.append(op.name)
        if node.op in _FUSED_BASE:
            nodes = _split_fused(node, tf)
        elif node.op.startswith("_Fused") or node.op.startswith("_Mkl"):
            raise ValueError(
                f"y: the path from x to y holds the fused op {op.name!r} ({op.type}) that "
                "saliency_tf1 cannot split into plain ops; explain the graph before grappler "
                "optimisation instead"
            )
        else:
            nodes = [node]
        for new in nodes:
            if new.op in RELU_LIKE:
                new.attr["_gradient_op_type"].s = gradient_name
        graph_def.node.extend(nodes)
    if with_functions:
        warnings.warn(
            f"saliency_tf1 {mode}: ops {with_functions[:5]} on the path from x to y call "
            "functions (tf.cond/tf.while_loop v2, tf.function); ReLUs inside their bodies "
            "are differentiated normally, not gated",
            stacklevel=4,
        )
    # Control inputs from outside the path still run first: an op with outputs
    # is mapped directly, one without (NoOp, ...) through a constant that waits
    # for it.
    for key, control_op in outside_controls.items():
        if control_op.outputs:
            input_map[key] = control_op.outputs[0]
        else:
            with v1.control_dependencies([control_op]):
                input_map[key] = tf.constant(0, name="control_stub")
    copy_y = v1.import_graph_def(
        graph_def, input_map=input_map, return_elements=[y.name], name=f"{mode}_path"
    )[0]
    try:
        grads = v1.gradients(copy_y, x)[0]
    except LookupError as err:
        raise ValueError(f"y: cannot differentiate the path from x to y: {err}") from None
    return tf.identity(grads, name=f"{mode}_gradients") if grads is not None else None


def gated_gradients(graph: Any, y: Any, x: Any, mode: str = "guided") -> Any:
    """The tensor ``d y / d x`` with every ReLU-like op's backward pass gated.

    The ops on the path from ``x`` to ``y`` are copied once into ``graph``
    (under ``saliency_tf1/``) with ``tf.compat.v1.import_graph_def``: every
    tensor the path reads from outside it (variable reads, constants, other
    placeholders, ``x`` itself) is mapped to the original tensor, so the copy
    shares the model's live weights and feeds. The copied ReLU-like nodes get
    this package's gradient (``_gradient_op_type``); the original graph is not
    changed. Grappler-fused ``_FusedConv2D``/``_FusedMatMul``/
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
    if mode not in GRADIENT_NAMES:
        raise ValueError(f"mode: expected one of {sorted(GRADIENT_NAMES)}, got {mode!r}")
    return cached_ops(graph, ("gated_gradients", mode, y.name, x.name),
                      lambda: _build_gated_gradients(graph, y, x, mode))


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

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 tmp_ckpt_path: str | None = None, *, backend: Backend | None = None) -> None:
        del tmp_ckpt_path  # nothing is written
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return TF1Backend(graph, session, y, x,
                          input_gradients=lambda: gated_gradients(graph, y, x, self._mode))

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
