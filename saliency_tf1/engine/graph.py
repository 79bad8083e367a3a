"""Helpers over a ``tf.Graph``: the TensorFlow import, ops built once per graph, graph walks.

Every op this package adds to a user's graph is made through :func:`cached_ops`
or :func:`cached_gradients`, under the name scope :data:`SCOPE`, at most once
per graph and key, so that making a method again does not grow the graph.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .checks import describe

# Name scope of every op this package adds to a user's graph.
SCOPE = "saliency_tf1"


def tf_module() -> Any:
    """Imports TensorFlow lazily, so ``import saliency_tf1`` stays cheap."""
    import tensorflow as tf

    return tf


_OP_CACHE_LOCK = threading.Lock()
_OP_CACHE_ATTR = "_saliency_tf1_ops"


def _graph_cache(graph: Any) -> dict:
    """The graph's own cache of this package's ops (call with the lock held).

    Kept on the graph object itself: a module-level map from graphs to their
    tensors would keep every graph alive (the tensors reference their graph).
    """
    cache = getattr(graph, _OP_CACHE_ATTR, None)
    if cache is None:
        cache = {}
        setattr(graph, _OP_CACHE_ATTR, cache)
    return cache


def cached_ops(graph: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """Returns ``build()``'s result, built at most once per graph and key.

    Every method object made on the same graph, ``y`` and ``x`` shares one set
    of gradient ops, so constructing methods repeatedly does not grow the graph.
    ``build`` runs inside ``graph.as_default()`` and this package's name scope.
    """
    tf = tf_module()
    with _OP_CACHE_LOCK:
        per_graph = _graph_cache(graph)
        if key not in per_graph:
            with graph.as_default(), tf.compat.v1.name_scope(f"{SCOPE}/"):
                per_graph[key] = build()
        return per_graph[key]


def cached_gradients(graph: Any, y: Any, sources: Sequence[Any]) -> list[Any]:
    """``d y / d s`` for each tensor ``s`` of ``sources`` (``None`` where there is none).

    Built at most once per graph, ``y`` and source (shared with every method on
    the same tensors); those not built yet come from a single
    ``tf.gradients`` call, so their backward ops are shared too.
    """
    tf = tf_module()
    keys = [("gradients", y.name, s.name) for s in sources]
    with _OP_CACHE_LOCK:
        per_graph = _graph_cache(graph)
        missing = [s for s, key in zip(sources, keys) if key not in per_graph]
        if missing:
            with graph.as_default(), tf.compat.v1.name_scope(f"{SCOPE}/"):
                grads = tf.compat.v1.gradients(y, missing)
            for s, g in zip(missing, grads):
                per_graph[("gradients", y.name, s.name)] = g
        return [per_graph[key] for key in keys]


def depends_on(target: Any, source: Any) -> bool:
    """True if tensor ``target`` is computed from tensor ``source`` (graph walk, no ops added)."""
    if target is source:
        return True
    seen = set()
    stack = [target.op]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for inp in op.inputs:
            if inp is source or inp.name == source.name:
                return True
            stack.append(inp.op)
        stack.extend(op.control_inputs)
    return False


def ancestor_ops(fetches: Iterable[Any], fed: Iterable[Any] = ()) -> list[Any]:
    """Every op that computing ``fetches`` (tensors or ops) reaches, ``fetches``' own included.

    Follows data and control edges, except through the tensors of ``fed``
    (whose producers ``session.run`` prunes when they are fed). A graph walk:
    adds no ops; the order is breadth-first from ``fetches``.
    """
    fed_names = {t.name for t in fed}
    ops: dict[str, Any] = {}
    queue = deque()
    for fetch in fetches:
        op = getattr(fetch, "op", fetch)
        if op.name not in ops:
            ops[op.name] = op
            queue.append(op)
    while queue:
        op = queue.popleft()
        producers = [t.op for t in op.inputs if t.name not in fed_names]
        for producer in producers + list(op.control_inputs):
            if producer.name not in ops:
                ops[producer.name] = producer
                queue.append(producer)
    return list(ops.values())


def required_placeholders(fetches: Iterable[Any], fed: Iterable[Any]) -> list[Any]:
    """Placeholders the fetches depend on, other than ``fed``, that have no default."""
    fed_names = {t.name for t in fed}
    seen, found = set(), {}
    stack = [t.op for t in fetches]
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type == "Placeholder":
            out = op.outputs[0]
            if out.name not in fed_names:
                found[out.name] = out
            continue
        for inp in op.inputs:
            if inp.name not in fed_names:
                stack.append(inp.op)
        stack.extend(op.control_inputs)
    return [found[name] for name in sorted(found)]


#: Ops whose first input's values pass to their output unchanged (shape changes only).
_SAME_VALUES = ("Identity", "Cast", "Reshape", "BroadcastTo", "ExpandDims", "Squeeze", "Tile")
#: Ops that gather their inputs' values into one output.
_JOIN_VALUES = ("Pack", "ConcatV2")


def _const_int(tensor: Any) -> int | None:
    """The value of a scalar integer ``Const`` tensor, else ``None``."""
    op = tensor.op
    if op.type != "Const":
        return None
    values = op.get_attr("value").int_val or op.get_attr("value").int64_val
    return int(values[0]) if len(values) == 1 else None


def index_bound(tensor: Any) -> int | None:
    """The number of entries ``tensor``'s values index, if the graph shows it statically.

    Follows ``tensor`` through ops that only move its values to the ``indices``
    input of a ``GatherV2``, a ``ResourceGather`` of a variable (an embedding
    table) or a ``OneHot`` and returns the smallest size they index (the
    params' gathered axis, the table's rows, the one-hot depth); ``None`` where there
    is no such consumer or no static size. A graph walk: adds no ops.
    """
    bounds = []
    seen = set()
    stack = [tensor]
    while stack:
        t = stack.pop()
        if t.name in seen:
            continue
        seen.add(t.name)
        for op in t.consumers():
            inputs = list(op.inputs)
            if (op.type in _SAME_VALUES and inputs[0] is t) or op.type in _JOIN_VALUES:
                stack.append(op.outputs[0])
            elif op.type == "GatherV2" and inputs[1] is t:
                axis, shape = _const_int(inputs[2]), inputs[0].shape
                if axis is not None and shape.rank is not None:
                    size = shape.as_list()[axis]
                    if size is not None:
                        bounds.append(size)
            elif (op.type == "ResourceGather" and inputs[1] is t
                  and op.get_attr("batch_dims") == 0 and inputs[0].op.type == "VarHandleOp"):
                shape = tf_module().TensorShape(inputs[0].op.get_attr("shape"))
                if shape.rank and shape.as_list()[0] is not None:
                    bounds.append(shape.as_list()[0])
            elif op.type == "OneHot" and inputs[0] is t:
                depth = _const_int(inputs[1])
                if depth is not None:
                    bounds.append(depth)
    return min(bounds) if bounds else None


def check_tensor(name: str, tensor: Any, graph: Any) -> None:
    """Raises TypeError/ValueError unless ``tensor`` is a tf.Tensor of ``graph``."""
    tf = tf_module()
    if not isinstance(tensor, tf.Tensor) or not hasattr(tensor, "graph"):
        raise TypeError(f"{name}: expected a graph tf.Tensor, got {describe(tensor)}")
    if tensor.graph is not graph:
        raise ValueError(
            f"{name}: tensor {tensor.name!r} belongs to another tf.Graph than the `graph` argument"
        )
