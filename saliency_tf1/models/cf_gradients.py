"""Gradients of imported functional ``While``/``If`` ops, any number of times.

``tf.gradients`` through a functional ``While`` (or ``If``) rewrites the
forward op: its body gets the intermediates the backward pass needs as extra
outputs, under the name ``<body>_rewritten``. For an op TensorFlow made
itself the names come from the op's cached FuncGraphs; for an *imported* op
(a loaded model) they come from the function the op currently calls. So two
ops calling the same function -- a loaded model's loop and the copy of it
that guided backprop makes, or the same loop differentiated for a second
target after a copy was made -- are rewritten to the *same* new name with
different definitions, and the second gradient fails with ``Attempting to
add a duplicate function with name: ..._rewritten_rewritten``.

The loaders give every functional control-flow node of a loaded graph (its
library's too) a ``_gradient_op_type`` of :data:`WHILE_GRADIENT` /
:data:`IF_GRADIENT`. Their gradient functions, registered here, hand
TensorFlow's own (``while_v2._WhileGrad``, ``cond_v2._IfGrad``) freshly built
FuncGraphs of the op's current functions under names no other op has, so each
rewrite gets a new name. The gradients are TensorFlow's, unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Any

WHILE_GRADIENT = "saliency_tf1/FunctionalWhile"
IF_GRADIENT = "saliency_tf1/FunctionalIf"

WHILE_OPS = ("While", "StatelessWhile")
IF_OPS = ("If", "StatelessIf")

_COUNTER = itertools.count(1)
_LOCK = threading.Lock()
_REGISTERED: list[bool] = []


def _fresh(graph: Any, name: str) -> None:
    graph.name = f"{name}_sal{next(_COUNTER)}"


def _while_gradient(op: Any, *grads: Any) -> Any:
    from tensorflow.python.ops import while_v2

    for attr, cached in (("cond", "_cond_graph"), ("body", "_body_graph")):
        if hasattr(op, cached):
            delattr(op, cached)
        graph = while_v2._get_graph(op, attr, cached)  # noqa: SLF001 - TF's own builder
        _fresh(graph, op.get_attr(attr).name)
        setattr(op, cached, graph)
    try:
        return while_v2._WhileGrad(op, *grads)  # noqa: SLF001
    finally:
        for cached in ("_cond_graph", "_body_graph"):
            if hasattr(op, cached):
                delattr(op, cached)


def _if_gradient(op: Any, *grads: Any) -> Any:
    from tensorflow.python.ops import cond_v2

    for cached in ("_true_graph", "_false_graph"):
        if hasattr(op, cached):
            delattr(op, cached)
    true_graph, false_graph = cond_v2.get_func_graphs(op)
    _fresh(true_graph, op.get_attr("then_branch").name)
    _fresh(false_graph, op.get_attr("else_branch").name)
    op._true_graph, op._false_graph = true_graph, false_graph  # noqa: SLF001
    try:
        return cond_v2._IfGrad(op, *grads)  # noqa: SLF001
    finally:
        for cached in ("_true_graph", "_false_graph"):
            if hasattr(op, cached):
                delattr(op, cached)


def register() -> None:
    """Registers the two gradient functions (once per process)."""
    from tensorflow.python.framework import ops

    with _LOCK:
        if _REGISTERED:
            return
        for name, fn in ((WHILE_GRADIENT, _while_gradient), (IF_GRADIENT, _if_gradient)):
            with contextlib.suppress(KeyError):  # registered by an earlier import
                ops.RegisterGradient(name)(fn)
        _REGISTERED.append(True)


def mark(graph_def: Any) -> int:
    """Sets the ``_gradient_op_type`` of every functional While/If node of ``graph_def``
    (graph and library) in place; returns how many."""
    count = 0
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        kind = WHILE_GRADIENT if node.op in WHILE_OPS else IF_GRADIENT if node.op in IF_OPS \
            else None
        if kind is not None and "_gradient_op_type" not in node.attr:
            node.attr["_gradient_op_type"].s = kind.encode()
            count += 1
    if count:
        register()
    return count
