"""Finding a loaded model's tensors by the names people know: Keras layers, logits.

* :func:`layer_output`: a layer's output by its name (``"dense_2"`` for
  ``dense_2/BiasAdd:0``, ``"conv"`` for ``StatefulPartitionedCall/model/conv/Relu:0``
  in an inlined TF2 model, ``"block1/conv"`` for a nested scope): the last
  tensor of the layer's name scope that the rest of the graph uses.
* :func:`pre_softmax`: the logits under a softmax output.
* :func:`suggestion_names`: the op names worth suggesting in a "did you mean"
  (no variable reads, constants, saver plumbing or ops this package added).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..engine.graph import SCOPE

#: Op types that are never a useful answer to "which tensor did you mean".
PLUMBING_OPS = frozenset({
    "Const", "NoOp", "VarHandleOp", "VariableV2", "Variable", "ReadVariableOp",
    "AssignVariableOp", "Assign", "VarIsInitializedOp", "IsVariableInitialized",
    "RestoreV2", "SaveV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
    "StaticRegexFullMatch", "DisableCopyOnRead", "PartitionedCall", "StatefulPartitionedCall",
    "Placeholder", "PlaceholderWithDefault", "Shape", "StridedSlice", "Pack",
})
#: TF1 control-flow routing (a lowered cond names its Switch after the tensor it routes).
_LOOP_PLUMBING = frozenset({"Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
                            "RefSwitch", "RefMerge", "RefEnter", "RefExit"})
_PASS_THROUGH = ("Identity", "IdentityN", "Snapshot", "StopGradient")


def _forward_ops(graph: Any, sources: Iterable[Any]) -> set[str]:
    """Names of the ops computed from ``sources`` (tensors), through data edges."""
    seen: set[str] = set()
    queue = deque(t.op for t in sources)
    while queue:
        op = queue.popleft()
        if op.name in seen:
            continue
        seen.add(op.name)
        queue.extend(c for t in op.outputs for c in t.consumers())
    return seen


def _ours(name: str) -> bool:
    return name == SCOPE or name.startswith(SCOPE + "/")


def layer_scopes(graph: Any, name: str) -> dict[str, list[Any]]:
    """Name scopes that end in ``name``'s components -> the ops in each (scope op included)."""
    parts = [p for p in name.strip("/").split("/") if p]
    if not parts:
        return {}
    found: dict[str, list[Any]] = {}
    for op in graph.get_operations():
        if _ours(op.name):
            continue
        comps = op.name.split("/")
        for i in range(len(comps) - len(parts) + 1):
            if comps[i:i + len(parts)] == parts:
                found.setdefault("/".join(comps[:i + len(parts)]), []).append(op)
                break
    return found


def _scope_output(scope: str, ops: list[Any]) -> Any:
    """The tensor a layer's scope hands to the rest of the graph (its last such), or None."""
    for op in ops:
        if op.name == scope and op.type not in PLUMBING_OPS and op.outputs \
                and op.outputs[0].dtype.is_floating:
            return op.outputs[0]
    inside = {op.name for op in ops}
    best = None
    for op in ops:  # graph order: the last one wins
        if op.type in PLUMBING_OPS or op.type in _LOOP_PLUMBING:
            continue
        for t in op.outputs:
            if not t.dtype.is_floating:
                continue
            consumers = t.consumers()
            if not consumers or any(c.name not in inside and not _ours(c.name)
                                    for c in consumers):
                best = t
                break
    return best


def layer_output(graph: Any, name: str, inputs: Iterable[Any] = ()) -> tuple[Any, str | None]:
    """The output tensor of the layer called ``name`` and ``None``, or ``None`` and why not.

    Scopes computed from ``inputs`` are preferred (the model, not a gradient
    or copy of it); several scopes left is an ambiguity the message lists.
    """
    scopes = layer_scopes(graph, name)
    if not any(_scope_output(s, ops) is not None for s, ops in scopes.items()):
        scopes = _scopes_reading(graph, name) or scopes  # Keras 3: scopes renamed conv_1
    if not scopes:
        return None, None
    inputs = list(inputs)
    if len(scopes) > 1 and inputs:
        forward = _forward_ops(graph, inputs)
        on_path = {s: ops for s, ops in scopes.items() if any(o.name in forward for o in ops)
                   and not any(c.startswith("gradients") for c in s.split("/"))}
        scopes = on_path or scopes
    outputs = {s: _scope_output(s, ops) for s, ops in scopes.items()}
    outputs = {s: t for s, t in outputs.items() if t is not None}
    if len(outputs) == 1:
        return next(iter(outputs.values())), None
    if not outputs:
        return None, f"layer scope(s) {sorted(scopes)} hold no floating-point output"
    return None, (f"{name!r} names several layers ({', '.join(sorted(outputs))}); give more "
                  "of the scope")


def _bare(component: str) -> str:
    return re.sub(r"_[0-9]+$", "", component)


def _scopes_reading(graph: Any, name: str) -> dict[str, list[Any]]:
    """The name scopes whose ops read the variables of layer ``name``.

    A traced Keras 3 layer ``conv`` owns variables ``conv/kernel`` but runs
    under a renamed scope (``functional_1/conv_1/...``): the scope around the
    reads of its variables, with a ``_<n>`` suffix allowed, is the layer's.
    """
    parts = [p for p in name.strip("/").split("/") if p]
    if not parts:
        return {}
    owned = []
    for op in graph.get_operations():
        if op.type not in ("VarHandleOp", "VariableV2", "Variable") or _ours(op.name):
            continue
        shared = op.get_attr("shared_name") if op.type == "VarHandleOp" else b""
        for label in (op.name, shared.decode() if isinstance(shared, bytes) else shared):
            comps = [c for c in label.split("/") if c]
            if len(comps) > len(parts) and [_bare(c) for c in comps[-len(parts) - 1:-1]] \
                    == [_bare(p) for p in parts]:
                owned.append(op)
                break
    found: dict[str, list[Any]] = {}
    for var in owned:
        for reader in var.outputs[0].consumers():
            comps = reader.name.split("/")
            for i in range(len(comps) - 1, len(parts) - 2, -1):
                window = comps[i - len(parts) + 1:i + 1]
                if window and [_bare(c) for c in window] == [_bare(p) for p in parts] \
                        and (window[-1] == parts[-1] or _bare(window[-1]) == parts[-1]):
                    found.setdefault("/".join(comps[:i + 1]), [])
                    break
    if not found:
        return {}
    for op in graph.get_operations():
        for scope, ops in found.items():
            if op.name == scope or op.name.startswith(scope + "/"):
                ops.append(op)
    return found


def pre_softmax(tensor: Any) -> Any:
    """The logits whose softmax ``tensor`` is (through identities), or ``None``."""
    op = tensor.op
    for _ in range(32):
        if op.type == "Softmax":
            return op.inputs[0]
        if op.type in _PASS_THROUGH and op.inputs:
            index = tensor.value_index if op.type == "IdentityN" else 0
            tensor = op.inputs[index]
            op = tensor.op
            continue
        return None
    return None


def is_probability(tensor: Any) -> bool:
    """Whether ``tensor`` is the output of a softmax or sigmoid (through identities)."""
    op = tensor.op
    for _ in range(32):
        if op.type in ("Softmax", "Sigmoid"):
            return True
        if op.type in _PASS_THROUGH and op.inputs:
            tensor = op.inputs[tensor.value_index if op.type == "IdentityN" else 0]
            op = tensor.op
            continue
        return False
    return False


def _reads_variable(op: Any) -> bool:
    return op.type in _PASS_THROUGH and bool(op.inputs) and op.inputs[0].op.type in (
        "ReadVariableOp", "VariableV2", "Variable", "VarHandleOp", "Const")


def suggestion_names(graph: Any, hidden: Iterable[str] = ()) -> list[str]:
    """Op names worth suggesting, plus the layer scopes they sit in, in graph order."""
    hidden = set(hidden)
    names: list[str] = []
    scopes: dict[str, None] = {}
    plumbing = set()
    for op in graph.get_operations():
        if _ours(op.name) or op.name in hidden or op.type in PLUMBING_OPS or _reads_variable(op):
            plumbing.add(op.name)
            continue
        if not any(t.dtype.is_floating for t in op.outputs):
            continue
        names.append(op.name)
        for component in op.name.split("/")[:-1]:
            scopes.setdefault(component, None)
    return list(dict.fromkeys(names + [s for s in scopes if s not in plumbing]))
