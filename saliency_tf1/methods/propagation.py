"""Backward passes with rules: one copy of the ``x -> y`` ops whose ops have their own gradients.

Guided Backprop, Deconvnet, DeepLIFT and LRP are all "the gradient of ``y``
with respect to ``x``, with some ops' backward rule replaced". They share the
machinery written here once:

* :func:`path_ops` finds the ops between ``x`` and ``y``;
* :func:`propagate` copies them, once per graph and rule set, into the
  caller's own graph with ``tf.compat.v1.import_graph_def`` (every tensor the
  path reads from outside it -- variable reads, constants, other
  placeholders, ``x`` itself -- is mapped to the original tensor, so the copy
  shares the model's live weights and feeds); grappler-fused
  ``_FusedConv2D``/``_FusedMatMul``/``_FusedDepthwiseConv2dNative`` nodes are
  split into their plain ops; a :class:`Rules` object decides, node by node,
  which copied nodes get the rule set's registered gradient (through the
  ``_gradient_op_type`` attribute) and with which private ``_saliency_tf1_*``
  attributes (the rule's parameters, read back by the gradient function with
  :func:`rule_attr`); it may refuse a node (an op its rules do not know) with
  a ValueError naming it, before anything is added to the graph;
* :func:`classify` sorts an op of the path into the kinds the propagation
  rules reason about (linear with a weight, sum, bias, scale, batch norm,
  routing, elementwise nonlinearity, max pooling, inert), refusing the rest.

The copy's own ``y`` is returned with the gradient, so a method can fetch
both from the copy: one forward pass per ``session.run``, not two.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..engine.backend import OUTPUT_LAYER_VALUES, TF1Backend
from ..engine.graph import ancestor_ops, cached_ops, tf_module

#: ReLU-like op types (gated by guided backprop and deconvnet).
RELU_LIKE = ("Relu", "Relu6", "LeakyRelu", "Elu", "Selu")
#: Elementwise nonlinearities the propagation rules know.
NONLINEAR = RELU_LIKE + ("Sigmoid", "Tanh", "Softplus")

#: Linear ops with a weight operand: ``{type: (path input, weight input)}``;
#: ``None`` where either operand may be the one that depends on ``x``.
WEIGHTED = {
    "Conv2D": (0, 1),
    "Conv3D": (0, 1),
    "DepthwiseConv2dNative": (0, 1),
    "Conv2DBackpropInput": (2, 1),
    "MatMul": None,
    "BatchMatMul": None,
    "BatchMatMulV2": None,
    "BatchMatMulV3": None,
}
#: The weighted ops that are convolutions (LRP's composite rules tell them from dense layers).
CONVOLUTIONS = frozenset({"Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput"})
#: Linear ops with implicit non-negative weights (pooling, means, sums, resizing).
SUMS = frozenset({"AvgPool", "AvgPool3D", "Mean", "Sum", "AddN", "ResizeBilinear"})
#: Additions: a bias when one operand does not depend on x, a sum when all do.
ADDS = frozenset({"Add", "AddV2", "Sub", "BiasAdd"})
#: Multiplications/divisions by a tensor that does not depend on x (and Neg).
SCALES = frozenset({"Mul", "RealDiv", "Div", "Neg"})
BATCH_NORMS = frozenset({"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"})
#: Ops that only move, select or copy values (their gradient routes them back).
ROUTING = frozenset({
    "Identity", "Snapshot", "Reshape", "Squeeze", "ExpandDims", "Transpose", "ConcatV2",
    "Concat", "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice", "GatherV2",
    "Gather", "GatherNd", "Pad", "PadV2", "MirrorPad", "Tile", "BroadcastTo", "Cast",
    "Switch", "Merge", "DepthToSpace", "SpaceToDepth", "SpaceToBatchND", "BatchToSpaceND",
    "ResizeNearestNeighbor", "ReverseV2",
})
MAX_POOLS = frozenset({"MaxPool"})
#: Ops through which no gradient flows (their value does not depend on x's values).
INERT = frozenset({"ZerosLike", "OnesLike", "Shape", "ShapeN", "Size", "Rank", "StopGradient",
                   "PreventGradient"})

#: Prefix of the private node attributes that carry a rule's parameters.
ATTR_PREFIX = "_saliency_tf1_"

_REGISTER_LOCK = threading.Lock()


def register_gradient(name: str, fn: Callable[..., Any]) -> None:
    """Registers ``fn`` as TensorFlow gradient ``name`` (idempotent, thread-safe).

    ``tf.RegisterGradient`` refuses a name twice (KeyError); that is the only
    record kept, so there is no module flag to go stale.
    """
    tf = tf_module()
    with _REGISTER_LOCK, contextlib.suppress(KeyError):
        tf.RegisterGradient(name)(fn)


def rule_attr(op: Any, name: str, default: Any = None) -> Any:
    """The rule parameter ``name`` that :func:`propagate` stored on a copied op."""
    try:
        value = op.get_attr(ATTR_PREFIX + name)
    except ValueError:
        return default
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------
# The x -> y path


def path_ops(y: Any, x: Any) -> list[Any]:
    """The ops on the path from tensor ``x`` (or any of a list of tensors) to tensor ``y``.

    These are the ancestors of ``y`` (through data and control edges) that
    depend on the value of ``x``, in creation (topological) order; ``x``'s own
    op is not one of them.
    """
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    x_names = {t.name for t in xs}
    x_ops = {t.op.name for t in xs}
    ancestors = {op.name: op for op in ancestor_ops([y])}
    consumers: dict[str, list[Any]] = {}
    seeds = []
    for op in ancestors.values():
        if any(t.name in x_names for t in op.inputs):
            seeds.append(op)
        for src in {t.op.name for t in op.inputs} | {c.name for c in op.control_inputs}:
            consumers.setdefault(src, []).append(op)
    on_path: dict[str, Any] = {}
    stack = [op for op in seeds if op.name not in x_ops]
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


# ---------------------------------------------------------------------------
# Rules and the copy


@dataclass(frozen=True)
class NodeInfo:
    """What a :class:`Rules` object knows about one node of the copy when it assigns a rule.

    Attributes:
      node: the copied ``NodeDef`` (its ``op`` is the type; fused ops already split).
      path_inputs: indices of its data inputs that depend on ``x`` (or are ``x``).
      differentiable: whether it has a floating output (a gradient can flow).
      first_layer: whether it is a weighted linear op (:data:`WEIGHTED`) with no
        weighted linear op between ``x`` and it.
      nonnegative: whether its path input is known to be ``>= 0`` (it comes from a
        ReLU, ReLU6, sigmoid or softplus through routing and pooling ops).
      producers: for each of ``path_inputs``, the copied node that produces it
        (``None`` for ``x``), with the attributes its rule got.
      affine_follows: whether its output's only consumer on the path adds a bias
        or applies a batch norm (so a layer's ``z`` is that consumer's output).
    """

    node: Any
    path_inputs: tuple[int, ...]
    differentiable: bool
    first_layer: bool
    nonnegative: bool
    producers: tuple[Any, ...] = field(default=())
    affine_follows: bool = False

    @property
    def type(self) -> str:
        return self.node.op

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class Rules:
    """A backward pass: which copied nodes get which registered gradient and parameters.

    Attributes:
      name: short name (the copy is imported under ``saliency_tf1/<name>_path``).
      key: everything that makes two rule sets differ (cache key, with ``y`` and ``x``).
      gradient: the registered gradient name given to the nodes ``assign`` picks.
      assign: ``NodeInfo -> None`` (plain gradient) or a dict of parameters
        (possibly empty) stored as ``_saliency_tf1_<name>`` attributes on the
        node, which then gets ``gradient``. Raises ValueError to refuse a node.
      seed_with_y: start the backward pass from ``y``'s value instead of ones
        (relevance propagation: the output's relevance is ``f(x)``).
      warn_functions: warn, rather than refuse, about ops that call functions
        (their bodies are differentiated normally).
    """

    name: str
    key: tuple
    gradient: str
    assign: Callable[[NodeInfo], dict[str, Any] | None]
    seed_with_y: bool = False
    warn_functions: bool = True


@dataclass(frozen=True)
class Propagation:
    """The copy's ``y`` and the propagated ``d y / d x`` (``None`` if nothing reaches ``x``)."""

    y: Any
    gradients: Any


def _set_attr(node: Any, name: str, value: Any) -> None:
    slot = node.attr[ATTR_PREFIX + name]
    if isinstance(value, bool):
        slot.b = value
    elif isinstance(value, int):
        slot.i = value
    elif isinstance(value, float):
        slot.f = value
    elif isinstance(value, str):
        slot.s = value.encode()
    else:
        raise TypeError(f"rule parameter {name!r}: unsupported value {value!r}")


#: Ops whose output is >= 0 whatever their input.
_NONNEGATIVE_OUTPUT = ("Relu", "Relu6", "Sigmoid", "Softplus")
#: Ops whose output is >= 0 when their path inputs are.
_KEEPS_SIGN = ROUTING | MAX_POOLS | frozenset({"AvgPool", "AvgPool3D", "Mean", "Sum", "AddN"})


def _affine_follows(op: Any, on_path: set[str], x_names: set[str]) -> bool:
    """Whether ``op``'s output feeds, on the path, only one op: a bias add or a batch norm."""
    if not op.outputs:
        return False
    consumers = [c for c in op.outputs[0].consumers() if c.name in on_path]
    if len(consumers) != 1:
        return False
    consumer = consumers[0]
    if consumer.type in BATCH_NORMS:
        return True
    from_path = [t for t in consumer.inputs if t.op.name in on_path or t.name in x_names]
    return consumer.type in ADDS and len(from_path) == 1


def _build(graph: Any, y: Any, x: Any, rules: Rules, replace: Any = None,
           wrt: Any = None, gradient: bool = True) -> Propagation:
    """The copy (see :func:`propagate`); ``x`` a tensor or a list of them.

    ``replace``: ``None`` (the copy reads ``x`` itself) or one tensor per
    input that the copy reads instead. ``wrt``: what the gradient is taken
    with respect to (default ``x``); ``gradient=False``: none (``None``).
    """
    tf = tf_module()
    v1 = tf.compat.v1
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    wrt = x if wrt is None else wrt
    replaced = {} if replace is None else {t.name: r for t, r in zip(xs, replace)}
    ops = path_ops(y, xs)
    if not ops:  # y is x itself
        copy_y = replaced.get(y.name, y)
        return Propagation(copy_y, v1.gradients(copy_y, wrt)[0])
    on_path = {op.name for op in ops}
    x_names = {t.name for t in xs}
    graph_def = v1.GraphDef()
    graph_def.versions.CopyFrom(graph.graph_def_versions)
    input_map: dict[str, Any] = {}
    outside_controls: dict[str, Any] = {}
    with_functions = []
    copied: dict[str, Any] = {}          # node name -> copied NodeDef (after assignment)
    after_weighted: set[str] = set()     # nodes whose value passed a weighted op
    nonnegative: set[str] = set()        # nodes whose value is known >= 0
    for op in ops:
        if op.type in _V1_LOOP_OPS:
            raise ValueError(
                f"y: the path from x to y runs through a TF1 while loop (op {op.name!r}, "
                f"{op.type}); {rules.name} gradients cannot be built through v1 control-flow "
                "loops (build the model with control flow v2, the TF2 default)"
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
                tensor_name = f"{name}:{index or 0}"
                mapped = replaced.get(tensor_name)
                input_map[inp] = (graph.get_tensor_by_name(tensor_name) if mapped is None
                                  else mapped)
        if _has_function_attr(node):
            with_functions.append(op)
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
        floating = any(t.dtype.is_floating for t in op.outputs)
        follows = _affine_follows(op, on_path, x_names)
        for n_split, new in enumerate(nodes):
            path_inputs, producers = [], []
            data = [i for i in new.input if not i.startswith("^")]
            for k, inp in enumerate(data):
                name, _, index = inp.partition(":")
                if name in copied:
                    path_inputs.append(k)
                    producers.append(copied[name])
                elif f"{name}:{index or 0}" in x_names:
                    path_inputs.append(k)
                    producers.append(None)
            upstream = {p.name for p in producers if p is not None}
            weighted = new.op in WEIGHTED
            info = NodeInfo(
                node=new,
                path_inputs=tuple(path_inputs),
                differentiable=floating,
                first_layer=weighted and not (upstream & after_weighted),
                nonnegative=bool(producers) and all(
                    p is not None and p.name in nonnegative for p in producers),
                producers=tuple(producers),
                affine_follows=(follows if n_split == len(nodes) - 1
                                else nodes[n_split + 1].op in ("BiasAdd", "FusedBatchNormV3")),
            )
            if upstream & after_weighted or weighted:
                after_weighted.add(new.name)
            if new.op in _NONNEGATIVE_OUTPUT or (new.op in _KEEPS_SIGN and info.nonnegative):
                nonnegative.add(new.name)
            params = rules.assign(info)
            if params is not None:
                new.attr["_gradient_op_type"].s = rules.gradient.encode()
                for key, value in params.items():
                    _set_attr(new, key, value)
            copied[new.name] = new
        graph_def.node.extend(nodes)
    if with_functions and rules.gradient:
        if not rules.warn_functions:
            op = with_functions[0]
            raise ValueError(
                f"y: the path from x to y holds op {op.name!r} ({op.type}) that calls a "
                f"function (tf.cond/tf.while_loop v2, tf.function); {rules.name} has no rule "
                "for the ops inside it"
            )
        gated = _calling_gated_functions(graph, with_functions, RELU_LIKE)
        if gated:
            warnings.warn(
                f"saliency_tf1 {rules.name}: ops {gated[:5]} on the path from x to y call "
                "functions (tf.cond/tf.while_loop v2, tf.function) whose bodies hold ReLU-like "
                "ops; those are differentiated normally, not gated",
                stacklevel=_caller_stacklevel(),
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
        graph_def, input_map=input_map, return_elements=[y.name], name=f"{rules.name}_path"
    )[0]
    if not gradient:
        return Propagation(copy_y, None)
    try:
        grads = v1.gradients(copy_y, wrt, grad_ys=copy_y if rules.seed_with_y else None)[0]
    except LookupError as err:
        raise ValueError(f"y: cannot differentiate the path from x to y: {err}") from None
    if grads is None:
        return Propagation(copy_y, None)
    return Propagation(copy_y, tf.identity(grads, name=f"{rules.name}_gradients"))


def replay(y: Any, x: Any, inputs: list[Any], wrt: Any = None, *, name: str,
           gradient: bool = True) -> Propagation:
    """A plain copy of the ``x -> y`` path that reads ``inputs`` instead of ``x``.

    ``x`` is a tensor or a list of them, ``inputs`` one tensor per input
    (tensors built in the graph, such as noisy or occluded copies). The copy
    shares everything off the path (live variables, other placeholders);
    fused ops are split into plain ops; no gradient is overridden. Returns
    the copy's ``y`` and, when ``gradient``, ``d y / d wrt`` (``wrt``
    defaults to ``inputs``' first tensor). Call it inside
    :func:`~saliency_tf1.engine.graph.cached_ops`; raises ValueError (before
    adding ops) for a path that cannot be copied (a TF1 while loop, a fused op
    it cannot split).
    """
    plain = Rules(name=name, key=(), gradient="", assign=lambda info: None)
    return _build(y.graph, y, x, plain, replace=inputs,
                  wrt=inputs[0] if wrt is None else wrt, gradient=gradient)


def propagate(graph: Any, y: Any, x: Any, rules: Rules) -> Propagation:
    """The copy of the ``x -> y`` path with ``rules``' backward pass, built once.

    Returns the copy's ``y`` (same values as ``y``) and the propagated
    gradient ``d y / d x`` through the copy (with the backward pass seeded by
    ``y``'s value when ``rules.seed_with_y``). Built at most once per graph,
    ``y``, ``x`` and rule set (:attr:`Rules.key`); later calls return the same
    tensors. A node the rules refuse raises (naming it) before any op is added.

    Raises:
      ValueError: a node the rules refuse, a fused op that cannot be split, a
        TF1 while loop on the path, or a path that cannot be differentiated.
    """
    return cached_ops(graph, ("propagation", rules.name, rules.key, y.name, x.name),
                      lambda: _build(graph, y, x, rules))


def copy_backend(graph: Any, session: Any, y: Any, x: Any,
                 build: Any) -> TF1Backend:
    """A TF1Backend whose gradients *and* ``y`` come from a propagated copy of the path.

    ``build()`` returns a :class:`~saliency_tf1.methods.propagation.Propagation`;
    it is called once, after the backend's checks. Fetching the copy's ``y``
    (the same values as ``y``) means a ``session.run`` computes one forward
    pass, the copy's, instead of the model's and the copy's.
    """
    made: list[Propagation] = []

    def gradients() -> Any:
        made.append(build())
        return made[0].gradients

    return TF1Backend(graph, session, y, x, input_gradients=gradients,
                      extra_fetches=lambda _: {OUTPUT_LAYER_VALUES: made[0].y})


# ---------------------------------------------------------------------------
# Sorting the ops of a path for the propagation rules


def _refuse(info: NodeInfo, method: str, why: str) -> ValueError:
    return ValueError(
        f"y: the path from x to y holds op {info.name!r} ({info.type}) {why}; {method} has "
        "rules for linear ops (Conv2D, DepthwiseConv2dNative, MatMul, BatchMatMul, BiasAdd, "
        "Add, Sub, Mul/RealDiv by a constant, Mean, Sum, AvgPool, FusedBatchNorm in "
        "inference mode), routing ops (Reshape, Transpose, Concat, Pad, Slice, Gather, ...), "
        f"MaxPool and the elementwise nonlinearities {', '.join(NONLINEAR)}"
    )


def classify(info: NodeInfo, method: str) -> str:
    """The kind of a copied node for the propagation rules, or ValueError naming it.

    One of ``"inert"`` (no gradient flows: integer outputs, shapes, stop
    gradients), ``"route"``, ``"max_pool"``, ``"nonlinear"``, ``"weighted"``
    (path operand times a weight operand), ``"sum"`` (pooling, means, sums of
    path tensors), ``"bias"`` (plus a tensor that does not depend on ``x``),
    ``"scale"`` (times or divided by one), ``"batch_norm"`` (inference mode).
    ``method`` names the method in the error.
    """
    kind = info.type
    if not info.differentiable or kind in INERT or not info.path_inputs:
        return "inert"
    if kind in ROUTING:
        return "route"
    if kind in MAX_POOLS:
        return "max_pool"
    if kind in NONLINEAR:
        return "nonlinear"
    n_data = len([i for i in info.node.input if not i.startswith("^")])
    if kind in WEIGHTED:
        if len(info.path_inputs) != 1 or (
                WEIGHTED[kind] is not None and info.path_inputs[0] != WEIGHTED[kind][0]):
            raise _refuse(info, method, "multiplying two tensors that both depend on x "
                                        "(not linear in x)")
        return "weighted"
    if kind in SUMS:
        return "sum"
    if kind in ADDS:
        return "sum" if len(info.path_inputs) == n_data else "bias"
    if kind in SCALES:
        if kind == "Neg" or (len(info.path_inputs) == 1 and (
                kind == "Mul" or info.path_inputs[0] == 0)):
            return "scale"
        raise _refuse(info, method, "multiplying or dividing by a tensor that depends on x "
                                    "(not linear in x)")
    if kind in BATCH_NORMS:
        if info.node.attr["is_training"].b:
            raise _refuse(info, method, "normalising with batch statistics (training mode)")
        if info.path_inputs != (0,):
            raise _refuse(info, method, "with batch-norm parameters that depend on x")
        return "batch_norm"
    raise _refuse(info, method, "that it has no rule for")


def weight_index(op: Any) -> tuple[int, int]:
    """``(path input, weight input)`` of a weighted linear op of the copy."""
    fixed = WEIGHTED[op.type]
    if fixed is not None:
        return fixed
    path = rule_attr(op, "path_input", 0)
    return path, 1 - path


def same_op(op: Any, inputs: list[Any]) -> Any:
    """A new op of ``op``'s type and attributes on other inputs; returns its first output.

    Its backward pass is TensorFlow's own gradient of that type (the new op
    has no ``_gradient_op_type``), so ``tf.gradients(same_op(op, ins), ins[k],
    grad_ys=s)`` is the plain transpose of a linear op applied to ``s``.
    """
    tf = tf_module()
    fn = getattr(tf.raw_ops, op.type)
    # raw_ops take the op's inputs in order under their Python API names (which
    # may differ from the OpDef's: Mean's reduction_indices is axis), then its attrs.
    names = list(inspect.signature(fn).parameters)
    kwargs: dict[str, Any] = {}
    inferred = set()
    position = 0
    for name, arg in zip(names, op.op_def.input_arg):
        if arg.number_attr:
            count = op.get_attr(arg.number_attr)
            kwargs[name] = list(inputs[position:position + count])
            position += count
            inferred.add(arg.number_attr)
        elif arg.type_list_attr:
            count = len(op.get_attr(arg.type_list_attr))
            kwargs[name] = list(inputs[position:position + count])
            position += count
        else:
            kwargs[name] = inputs[position]
            position += 1
        inferred.update(a for a in (arg.type_attr, arg.type_list_attr) if a)
    for attr in op.op_def.attr:
        if attr.name not in inferred and attr.name in names:
            kwargs[attr.name] = op.get_attr(attr.name)
    out = fn(**kwargs)
    return out[0] if isinstance(out, tuple | list) else out


def _calling_gated_functions(graph: Any, ops: list[Any], gated_types: tuple[str, ...]
                             ) -> list[str]:
    """Names of ``ops`` that call a library function whose body (or a function it calls)
    holds an op of ``gated_types``."""
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    memo: dict[str, bool] = {}

    def callees(node: Any) -> list[str]:
        names = [node.op] if node.op in library else []
        for value in node.attr.values():
            if value.HasField("func"):
                names.append(value.func.name)
            elif value.HasField("list"):
                names.extend(f.name for f in value.list.func)
        return names

    def holds(name: str) -> bool:
        if name not in library:
            return False
        if name not in memo:
            memo[name] = False  # a recursive call counts as not holding one
            memo[name] = any(node.op in gated_types or any(holds(c) for c in callees(node))
                             for node in library[name].node_def)
        return memo[name]

    return [op.name for op in ops if any(holds(c) for c in callees(op.node_def))]


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside this package (the user's call)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
