"""Inlining a graph's function calls: a TF2 model as one flat, differentiable TF1 graph.

A TF2 SavedModel (``tf.saved_model.save``, tf-keras ``model.save``, Keras 3
``model.export``) and a traced ``tf.function`` run their model inside
function-call ops (``StatefulPartitionedCall``). Imported into a TF1 graph,
such a call has no gradient (``No gradient defined for op:
StatefulPartitionedCall``), its inner layers are not graph tensors (no conv
layer for Grad-CAM) and a copy of the path (guided backprop) cannot see
inside it.

:func:`inline_calls` rewrites a GraphDef so that each such call is replaced
by the nodes of its function body, named ``<call node>/<body node>`` (the
layers' own name scopes survive: ``StatefulPartitionedCall/model/conv/Relu``),
with the call's inputs wired to the body's arguments and the call's outputs
to the body's results; calls inside the body are inlined in turn. Variables
stay variables (the body's reads take the graph's ``VarHandleOp`` directly),
and functional control flow (``If``/``While``/``Case``) is kept as it is --
its branches and bodies stay library functions, which ``tf.gradients``
differentiates exactly -- rather than lowered to ``Switch``/``Merge`` frames
that a GraphDef cannot differentiate.

Only protobufs are rewritten: nothing is imported or run. Calls whose function
holds checkpoint ops (a SavedModel's save and restore functions) are left as
they are, so the guard's proof of the restore path is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CALL_OPS = ("PartitionedCall", "StatefulPartitionedCall")

#: Rounds of inlining (a call inside a body inlined is another round): a bound
#: against a library whose functions call each other in a cycle.
MAX_DEPTH = 64


def _split(ref: str) -> tuple[str, int]:
    name, _, index = ref.lstrip("^").partition(":")
    return name, int(index) if index else 0


def called_function(node: Any, functions: dict[str, Any]) -> str | None:
    """The library function a node calls as a plain call (``PartitionedCall``, or an op
    named after the function), or ``None``."""
    if node.op in functions:
        return node.op
    if node.op in CALL_OPS and "f" in node.attr:
        name = node.attr["f"].func.name
        return name if name in functions else None
    return None


def _output_counts(node: Any, op_def: Any) -> list[tuple[str, int]]:
    defaults = {a.name: a.default_value for a in op_def.attr}
    counts = []
    for arg in op_def.output_arg:
        if arg.number_attr:
            value = node.attr[arg.number_attr] if arg.number_attr in node.attr \
                else defaults.get(arg.number_attr)
            count = value.i if value is not None else 1
        elif arg.type_list_attr:
            value = node.attr[arg.type_list_attr] if arg.type_list_attr in node.attr \
                else defaults.get(arg.type_list_attr)
            count = len(value.list.type) if value is not None else 0
        else:
            count = 1
        counts.append((arg.name, count))
    return counts


def _flat_names(fdef: Any, functions: dict[str, Any]) -> dict[str, str]:
    """FunctionDef tensor names (``node:output_arg:i``, ``arg``) -> GraphDef names (``node:k``)."""
    from tensorflow.python.framework import op_def_registry

    names = {arg.name: f"{arg.name}:0" for arg in fdef.signature.input_arg}
    for node in fdef.node_def:
        op_def = functions[node.op].signature if node.op in functions \
            else op_def_registry.get(node.op)
        if op_def is None:
            raise ValueError(f"function {fdef.signature.name!r}: node {node.name!r} has op "
                             f"type {node.op!r}, which this TensorFlow does not know")
        flat = 0
        for arg_name, count in _output_counts(node, op_def):
            for i in range(count):
                names[f"{node.name}:{arg_name}:{i}"] = f"{node.name}:{flat + i}"
            flat += count
    return names


def holds_ops(functions: dict[str, Any], op_types: Iterable[str]) -> set[str]:
    """Names of the library functions that hold (directly or through functions they
    call or branch to) a node of one of ``op_types``."""
    op_types = frozenset(op_types)
    calls: dict[str, set[str]] = {}
    direct = set()
    for name, fdef in functions.items():
        callees = set()
        for node in fdef.node_def:
            if node.op in op_types:
                direct.add(name)
            if node.op in functions:
                callees.add(node.op)
            for value in node.attr.values():
                if value.HasField("func"):
                    callees.add(value.func.name)
                elif value.HasField("list"):
                    callees.update(f.name for f in value.list.func)
        calls[name] = callees & set(functions)
    holding = set(direct)
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            if name not in holding and callees & holding:
                holding.add(name)
                changed = True
    return holding


class InlineResult:
    """The rewritten GraphDef and where each output of an inlined call went.

    Attributes:
      graph_def: the new GraphDef (the library is kept: branch and loop bodies).
      renamed: ``"call:i"`` -> the tensor it is now (for signatures and output names).
      inlined: names of the call nodes replaced (each is now a ``NoOp`` that
        waits for its body, so control dependencies on it still hold).
    """

    def __init__(self, graph_def: Any, renamed: dict[str, str], inlined: list[str]) -> None:
        self.graph_def = graph_def
        self.renamed = renamed
        self.inlined = inlined

    def tensor(self, name: str) -> str:
        """The current name of tensor ``name`` (``"op:i"`` or ``"op"``) of the original graph."""
        ref = name if ":" in name else f"{name}:0"
        seen = set()
        while ref in self.renamed and ref not in seen:
            seen.add(ref)
            ref = self.renamed[ref]
        return ref


def inline_calls(graph_def: Any, *, keep: Iterable[str] = (),
                 roots: Iterable[str] | None = None) -> InlineResult:
    """Replaces the graph's plain function calls by their bodies (see the module docstring).

    Args:
      graph_def: a ``GraphDef`` (not modified).
      keep: op types whose functions are not inlined (calls of functions
        holding one of them stay calls; e.g. the checkpoint ops).
      roots: tensor or op names: inline only the calls these depend on (a
        signature's outputs); ``None``: every call.

    Returns:
      An :class:`InlineResult`.

    Raises:
      ValueError: a call whose inputs do not match its function's arguments,
        an unknown op type in a body, or calls nested deeper than
        :data:`MAX_DEPTH`.
    """
    from tensorflow.core.framework import graph_pb2, node_def_pb2

    functions = {f.signature.name: f for f in graph_def.library.function}
    skip = holds_ops(functions, keep)
    nodes: dict[str, Any] = {}
    order: list[str] = []
    for node in graph_def.node:
        copy = node_def_pb2.NodeDef()
        copy.CopyFrom(node)
        nodes[node.name] = copy
        order.append(node.name)
    renamed: dict[str, str] = {}
    inlined: list[str] = []
    flat_cache: dict[str, dict[str, str]] = {}

    wanted = None if roots is None else [_split(r)[0] for r in roots]

    def todo() -> list[str]:
        needed = None
        if wanted is not None:
            needed, stack = set(), [n for n in wanted if n in nodes]
            stack += [_split(renamed[r])[0] for r in renamed if _split(r)[0] in wanted]
            while stack:
                name = stack.pop()
                if name in needed or name not in nodes:
                    continue
                needed.add(name)
                stack.extend(_split(r)[0] for r in nodes[name].input)
        return [n for n in order if called_function(nodes[n], functions) not in (None, *skip)
                and n not in inlined and (needed is None or n in needed)]

    for _ in range(MAX_DEPTH):
        calls = todo()
        if not calls:
            break
        for call_name in calls:
            call = nodes[call_name]
            fname = called_function(call, functions)
            fdef = functions[fname]
            data = [r for r in call.input if not r.startswith("^")]
            controls = [r for r in call.input if r.startswith("^")]
            args = [a.name for a in fdef.signature.input_arg]
            if len(data) != len(args):
                raise ValueError(f"node {call_name!r} calls {fname!r} with {len(data)} inputs; "
                                 f"the function takes {len(args)}")
            binding = dict(zip(args, data))
            if fname not in flat_cache:
                flat_cache[fname] = _flat_names(fdef, functions)
            flat = flat_cache[fname]
            prefix = call_name
            k = 0
            while any(f"{prefix}/{b.name}" in nodes for b in fdef.node_def):
                k += 1
                prefix = f"{call_name}_inlined_{k}"

            def ref(r: str, binding: dict = binding, flat: dict = flat,
                    prefix: str = prefix) -> str:
                if r.startswith("^"):
                    name = r[1:]
                    if name in binding:
                        return "^" + _split(binding[name])[0]
                    return f"^{prefix}/{name}"
                name, index = _split(flat.get(r, r))
                if name in binding:
                    return binding[name]
                return f"{prefix}/{name}:{index}"

            body_names = []
            for body in fdef.node_def:
                new = node_def_pb2.NodeDef()
                new.CopyFrom(body)
                new.name = f"{prefix}/{body.name}"
                new.device = ""
                new.attr.pop("_class", None)  # colocation with body names
                del new.input[:]
                new.input.extend(ref(r) for r in body.input)
                if not body.input:
                    new.input.extend(controls)
                nodes[new.name] = new
                body_names.append(new.name)
            results = [ref(fdef.ret[a.name]) for a in fdef.signature.output_arg]
            for i, result in enumerate(results):
                renamed[f"{call_name}:{i}"] = result
            waits = {"^" + _split(r)[0] for r in results}
            waits |= {f"^{prefix}/{fdef.control_ret[c]}" for c in fdef.signature.control_output
                      if c in fdef.control_ret}
            stub = node_def_pb2.NodeDef(name=call_name, op="NoOp")
            stub.input.extend(sorted(waits) or controls)
            nodes[call_name] = stub
            at = order.index(call_name)
            order[at:at + 1] = body_names + [call_name]
            inlined.append(call_name)
        result = InlineResult(None, renamed, inlined)
        replaced = set(inlined)
        for node in nodes.values():
            for i, r in enumerate(node.input):
                if not r.startswith("^") and _split(r)[0] in replaced:
                    node.input[i] = result.tensor(r)
    else:
        if todo():
            raise ValueError(f"function calls nested deeper than {MAX_DEPTH} levels (or "
                             "calling each other in a cycle)")
    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    out.node.extend(nodes[n] for n in order)
    return InlineResult(out, renamed, inlined)

