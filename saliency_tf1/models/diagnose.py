"""Load-time diagnosis: can gradients be built from a loaded model's inputs to its outputs?

Nothing is added to the graph: each op on the paths from the inputs to the
outputs must have a registered gradient (or be registered as not
differentiable); a functional ``If``/``While``/``Case`` is looked into (every
node of its branches and bodies, recursively); a function call that was not
inlined, or a TF1 loop op without its ``WhileContext``, cannot be
differentiated. :func:`gradient_problem` returns the first reason found.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ..engine.graph import SCOPE

#: Catalogue methods that differentiate a copy of the x -> y path
#: (:mod:`saliency_tf1.methods.propagation`): a copy cannot hold a TF1 while loop.
PATH_COPY_METHODS = ("guided", "deconvnet", "guidedgradcam", "deeplift", "lrp",
                     "lrpcomposite")

#: Path-copy methods with a propagation rule per op type: none for functional control
#: flow (``If``/``While``), whose bodies they cannot see into.
RULE_METHODS = ("deeplift", "lrp", "lrpcomposite")

_FUNCTIONAL = frozenset({"If", "StatelessIf", "While", "StatelessWhile", "Case",
                         "StatelessCase"})
_CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
_V1_LOOP = frozenset({"Enter", "RefEnter", "Exit", "RefExit", "NextIteration",
                      "RefNextIteration", "LoopCond"})


def path_between(sources: Iterable[Any], targets: Iterable[Any]) -> list[Any]:
    """The ops computed from ``sources`` that ``targets`` depend on (data edges), in graph order."""
    sources, targets = list(sources), list(targets)
    if not sources or not targets:
        return []
    graph = targets[0].graph
    below: set[str] = set()
    queue = deque(t.op for t in sources)
    while queue:
        op = queue.popleft()
        if op.name not in below:
            below.add(op.name)
            queue.extend(c for t in op.outputs for c in t.consumers())
    above: set[str] = set()
    queue = deque(t.op for t in targets)
    while queue:
        op = queue.popleft()
        if op.name in above:
            continue
        above.add(op.name)
        queue.extend(t.op for t in op.inputs)
    source_ops = {t.op.name for t in sources}
    return [op for op in graph.get_operations() if op.name in below and op.name in above
            and op.name not in source_ops]


def _functions_of(node: Any) -> list[str]:
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        elif value.HasField("list"):
            names.extend(f.name for f in value.list.func)
    return [n for n in names if n]


def _floating_node(node: Any) -> bool:
    """Whether a function body's node computes a floating-point value (by its type
    attributes; a node whose types are not told is given the benefit of the doubt)."""
    from tensorflow.python.framework import dtypes

    for key in ("T", "dtype", "Tout", "out_type", "output_types"):
        if key not in node.attr:
            continue
        value = node.attr[key]
        types = [value.type] if value.HasField("type") else list(value.list.type)
        return any(t and dtypes.as_dtype(t).is_floating for t in types)
    return False


def _registry(ops: Any) -> Any:
    return getattr(ops, "gradient_registry", None) or ops._gradient_registry  # noqa: SLF001


def _body_problem(fname: str, library: Mapping[str, Any], path: str,
                  seen: set[str]) -> str | None:
    from tensorflow.python.framework import ops

    if fname in seen:
        return None
    seen.add(fname)
    fdef = library.get(fname)
    if fdef is None:
        return f"{path} calls function {fname!r}, which is not in the graph's library"
    for node in fdef.node_def:
        where = f"{path} -> {fname}: node {node.name!r} ({node.op})"
        if not _floating_node(node):
            continue
        if node.op in library or node.op in _CALLS:
            return (f"{where} calls a function; the function call was not inlined and has "
                    "no gradient")
        if node.op in _FUNCTIONAL:
            for inner in _functions_of(node):
                problem = _body_problem(inner, library, f"{path} -> {fname}", seen)
                if problem:
                    return problem
            continue
        if not any(not r.startswith("^") for r in node.input):
            continue  # constants and sources: nothing to differentiate
        try:
            _registry(ops).lookup(node.op)
        except LookupError:
            return f"{where} has no registered gradient"
    return None


def gradient_problem(inputs: Iterable[Any], outputs: Iterable[Any],
                     library: Mapping[str, Any] | None = None) -> str | None:
    """Why ``tf.gradients(outputs, inputs)`` cannot be built, or ``None`` if it can.

    Args:
      inputs, outputs: tensors of one graph (non-floating ones are skipped).
      library: function name -> ``FunctionDef`` of the graph's library, to look
        inside functional control flow (``None``: read it from the graph).
    """
    from tensorflow.python.framework import ops

    inputs = [t for t in inputs if t.dtype.is_floating]
    outputs = [t for t in outputs if t.dtype.is_floating]
    if not inputs or not outputs:
        return None
    if library is None:
        library = {f.signature.name: f
                   for f in outputs[0].graph.as_graph_def().library.function}
    seen: set[str] = set()
    for op in path_between(inputs, outputs):
        if op.name.startswith(SCOPE + "/"):
            continue
        if not any(t.dtype.is_floating for t in op.outputs) and op.type not in _V1_LOOP:
            continue
        where = f"op {op.name!r} ({op.type})"
        if op.type in _V1_LOOP and op._get_control_flow_context() is None:  # noqa: SLF001
            return (f"{where} belongs to a TF1 while loop whose WhileContext is missing "
                    "(a GraphDef does not carry it)")
        if op.type in _CALLS or op.type in library:
            return (f"{where} calls function {_functions_of(op.node_def) or [op.type]}: the "
                    "call was not inlined and has no gradient")
        try:
            ops.get_gradient_function(op)
        except LookupError:
            return f"{where} has no registered gradient"
        if op.type in _FUNCTIONAL:
            for fname in _functions_of(op.node_def):
                problem = _body_problem(fname, library, where, seen)
                if problem:
                    return problem
    return None


def control_flow_on_path(inputs: Iterable[Any], outputs: Iterable[Any]
                         ) -> tuple[str | None, str | None]:
    """The first TF1 loop op and the first functional control-flow op between ``inputs``
    and ``outputs`` (``None`` where there is none)."""
    loop = functional = None
    for op in path_between(list(inputs), list(outputs)):
        if loop is None and op.type in _V1_LOOP:
            loop = op.name
        if functional is None and op.type in _FUNCTIONAL:
            functional = op.name
    return loop, functional


def unsupported_methods(gradient_error: str | None, loop_op: str | None,
                        functional_op: str | None = None) -> dict[str, str]:
    """Available catalogue method -> why it cannot explain this model."""
    from ..catalogue import available_methods

    found = {}
    forward_only = set(forward_only_methods())
    for name in available_methods():
        if gradient_error and name not in forward_only:
            found[name] = f"gradients cannot be built: {gradient_error}"
        elif loop_op and name in PATH_COPY_METHODS:
            found[name] = (f"the path from x to y runs through a TF1 while loop ({loop_op!r}), "
                           "which the method's copy of the path cannot hold; freeze with "
                           "convert_variables_to_constants_v2(..., lower_control_flow=False) "
                           "to keep functional control flow")
        elif functional_op and name in RULE_METHODS:
            found[name] = (f"the path from x to y runs through functional control flow "
                           f"({functional_op!r}), for which the method has no propagation rule")
    return found


def forward_only_methods() -> list[str]:
    """The available catalogue methods that run the model forward only (their class says
    ``forward_only = True``)."""
    from ..catalogue import METHODS, available_methods

    return [m for m in available_methods()
            if METHODS[m].cls.forward_only]
