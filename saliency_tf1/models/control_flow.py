"""TF1 control flow in a bare GraphDef: rebuilding the while-loop contexts gradients need.

A TF1 while loop (``tf.compat.v1.while_loop`` with control flow v1, or a
functional ``While`` lowered by grappler / ``convert_variables_to_constants_v2``)
is a frame of ``Enter``/``Merge``/``Switch``/``NextIteration``/``Exit`` ops.
``tf.gradients`` through it needs the Python ``WhileContext`` of each loop,
which lives in a MetaGraphDef's ``while_context`` collection but not in a
GraphDef: importing a frozen graph and differentiating it fails with
``'NoneType' object has no attribute 'outer_context'``.

:func:`analyse_frames` finds the frames from the graph's structure (the
executor's rule: an ``Enter`` opens its ``frame_name``, an ``Exit`` leaves it,
every other op lives in the frame of its inputs) and
:func:`while_context_defs` turns each frame into the ``WhileContextDef`` that
``tf.compat.v1.while_loop`` would have exported: its loop enters, the
``Merge`` of the first loop variable (pivot for the predicate), the
``LoopCond`` (pivot), the ``Identity`` after the first loop ``Switch`` (pivot
for the body), the exits, the tensors computed in the loop and the loop
invariants (constant enters), nested loops inside. :func:`restore_while_contexts`
builds the ``WhileContext`` objects in an imported graph, so gradients work
as in the graph the loop was built in.

A conditional (``Switch``/``Merge`` on a predicate) at the top level needs no
context: its gradient is built from the ``Merge``'s output index. One inside a
loop would need a ``CondContext`` this module does not rebuild:
:func:`unsupported_reason` says so, and the loader then offers only the
methods that run the model forward (occlusion and the like).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

ENTER_OPS = ("Enter", "RefEnter")
EXIT_OPS = ("Exit", "RefExit")
SWITCH_OPS = ("Switch", "RefSwitch")
MERGE_OPS = ("Merge", "RefMerge")
NEXT_OPS = ("NextIteration", "RefNextIteration")
LOOP_OPS = ENTER_OPS + EXIT_OPS + NEXT_OPS + ("LoopCond",)

#: Suffix of the ``Exit`` ops added for loop variables whose exit was pruned.
RESTORED_EXIT = "saliency_tf1_exit"


def _name(ref: str) -> str:
    return ref.lstrip("^").split(":")[0]


def _index(ref: str) -> int:
    _, _, index = ref.lstrip("^").partition(":")
    return int(index) if index else 0


@dataclass
class Frame:
    """One while loop of a GraphDef, found from its structure."""

    name: str  #: the ``frame_name`` of its ``Enter`` ops
    parent: str  #: the enclosing frame (``""``: the top level)
    enters: list[str] = field(default_factory=list)  #: loop-variable Enter nodes, in order
    constants: list[str] = field(default_factory=list)  #: loop-invariant (constant) Enter nodes
    members: list[str] = field(default_factory=list)  #: nodes whose context is this loop
    loop_cond: str | None = None
    parallel_iterations: int = 10


@dataclass
class FrameAnalysis:
    frames: dict[str, Frame]
    frame_of: dict[str, str]  #: node -> the frame its outputs live in
    nodes: dict[str, Any]
    problems: list[str]

    def nested(self, parent: str) -> list[Frame]:
        return [f for f in self.frames.values() if f.parent == parent]


def has_v1_loops(graph_def: Any) -> bool:
    """Whether a GraphDef holds TF1 loop ops (``Enter``/``Exit``/``NextIteration``/``LoopCond``)."""
    return any(node.op in LOOP_OPS for node in graph_def.node)


def analyse_frames(graph_def: Any) -> FrameAnalysis:
    """The while-loop frames of ``graph_def`` and the frame of every node."""
    nodes = {node.name: node for node in graph_def.node}
    consumers: dict[str, list[str]] = defaultdict(list)
    pending: dict[str, int] = {}
    for node in graph_def.node:
        # A Merge's NextIteration input is the loop's back edge: not waited for.
        refs = [r for r in node.input if _name(r) in nodes
                and nodes[_name(r)].op not in NEXT_OPS]
        pending[node.name] = len(refs)
        for ref in refs:
            consumers[_name(ref)].append(node.name)
    frame_of: dict[str, str] = {}
    context_of: dict[str, str] = {}
    frames: dict[str, Frame] = {}
    problems: list[str] = []
    queue: deque[str] = deque(n for n, count in pending.items() if count == 0)
    while queue:
        name = queue.popleft()
        node = nodes[name]
        refs = [r for r in node.input if _name(r) in frame_of]
        data = [r for r in refs if not r.startswith("^")] or refs
        source = frame_of[_name(data[0])] if data else ""
        if node.op in ENTER_OPS:
            fname = node.attr["frame_name"].s.decode("utf-8", "replace")
            frame = frames.get(fname)
            if frame is None:
                frame = frames[fname] = Frame(
                    fname, source, parallel_iterations=max(1, node.attr["parallel_iterations"].i))
            elif frame.parent != source:
                problems.append(f"loop {fname!r} is entered from two frames")
            frame_of[name], context_of[name] = fname, fname
        elif node.op in EXIT_OPS:
            frame = frames.get(source)
            if frame is None:
                problems.append(f"Exit {name!r} is not inside a loop")
            frame_of[name], context_of[name] = (frame.parent if frame else ""), source
        else:
            frame_of[name], context_of[name] = source, source
        for consumer in consumers[name]:
            pending[consumer] -= 1
            if pending[consumer] == 0:
                queue.append(consumer)
    for node in graph_def.node:
        if node.name not in frame_of:  # on a cycle that is not a loop's back edge
            frame_of[node.name], context_of[node.name] = "", ""
            problems.append(f"node {node.name!r} ({node.op}) is on a cycle that is not a loop")
    for node in graph_def.node:
        context = context_of[node.name]
        if context in frames:
            frame = frames[context]
            frame.members.append(node.name)
            if node.op in ENTER_OPS:
                if node.attr["is_constant"].b:
                    frame.constants.append(node.name)
                else:
                    frame.enters.append(node.name)
            elif node.op == "LoopCond":
                if frame.loop_cond is not None:
                    problems.append(f"loop {context!r} has two LoopCond ops")
                frame.loop_cond = node.name
    return FrameAnalysis(frames, frame_of, nodes, problems)


def unsupported_reason(analysis: FrameAnalysis) -> str | None:
    """Why the loops' gradients cannot be rebuilt, or ``None`` if they can."""
    if analysis.problems:
        return analysis.problems[0]
    for frame in analysis.frames.values():
        if frame.loop_cond is None:
            return f"loop {frame.name!r} has no LoopCond op"
        if not frame.enters:
            return f"loop {frame.name!r} has no loop-variable Enter op"
        loop_switches = set(_loop_switches(analysis, frame))
        for member in frame.members:
            node = analysis.nodes[member]
            if node.op in SWITCH_OPS and member not in loop_switches:
                return (f"a conditional ({member!r}, {node.op}) inside loop {frame.name!r}: "
                        "its gradient needs a CondContext a GraphDef does not carry")
    return None


def _loop_switches(analysis: FrameAnalysis, frame: Frame) -> list[str]:
    return [m for m in frame.members if analysis.nodes[m].op in SWITCH_OPS
            and len(analysis.nodes[m].input) > 1
            and _name(analysis.nodes[m].input[1]) == frame.loop_cond]


def _consumers_of(analysis: FrameAnalysis, frame: Frame) -> dict[str, list[tuple[str, int]]]:
    """Within the frame's members (and their exits): producer -> [(consumer, output index)]."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for member in frame.members:
        for ref in analysis.nodes[member].input:
            if not ref.startswith("^"):
                out[_name(ref)].append((member, _index(ref)))
    return out


def restore_missing_exits(graph_def: Any, analysis: FrameAnalysis) -> list[str]:
    """Adds an ``Exit`` for each loop ``Switch`` whose exit was pruned (freezing prunes
    unused loop outputs); the gradient code expects one exit per loop variable.
    Returns the names added."""
    added = []
    for frame in analysis.frames.values():
        if frame.loop_cond is None:
            continue
        used = _consumers_of(analysis, frame)
        for switch in _loop_switches(analysis, frame):
            if any(analysis.nodes[c].op in EXIT_OPS and i == 0 for c, i in used[switch]):
                continue
            node = graph_def.node.add()
            node.name = f"{switch}/{RESTORED_EXIT}"
            node.op = "Exit"
            node.input.append(f"{switch}:0")
            node.attr["T"].CopyFrom(analysis.nodes[switch].attr["T"])
            analysis.nodes[node.name] = node
            frame.members.append(node.name)
            analysis.frame_of[node.name] = frame.parent
            added.append(node.name)
    return added


def while_context_defs(analysis: FrameAnalysis, graph: Any) -> list[Any]:
    """The ``WhileContextDef`` of each top-level loop (nested loops inside), for ``graph``
    (the imported graph: output counts come from its ops)."""
    from tensorflow.core.protobuf import control_flow_pb2

    def build(frame: Frame) -> Any:
        nodes = analysis.nodes
        context = control_flow_pb2.WhileContextDef()
        context.context_name = frame.name
        context.parallel_iterations = frame.parallel_iterations
        context.back_prop = True
        context.swap_memory = False
        context.pivot_name = f"{frame.loop_cond}:0"
        used = _consumers_of(analysis, frame)
        merges = []
        for enter in frame.enters:
            merge = next((c for c, _ in used[enter] if nodes[c].op in MERGE_OPS), None)
            if merge is None:
                raise ValueError(f"loop {frame.name!r}: Enter {enter!r} feeds no Merge")
            merges.append(merge)
        context.pivot_for_pred_name = f"{merges[0]}:0"
        switches = _loop_switches(analysis, frame)
        first = next((s for s in switches if _name(nodes[s].input[0]) == merges[0]),
                     switches[0] if switches else None)
        if first is None:
            raise ValueError(f"loop {frame.name!r} has no loop Switch")
        body = next((c for c, i in used[first] if i == 1 and nodes[c].op == "Identity"), None)
        context.pivot_for_body_name = f"{body}:0" if body else f"{first}:1"
        by_switch = {s: [c for c, i in used[s] if nodes[c].op in EXIT_OPS and i == 0]
                     for s in switches}
        order = {_name(nodes[s].input[0]): s for s in switches}
        for merge in merges:
            switch = order.get(merge)
            for exit_name in by_switch.get(switch, []) if switch else []:
                context.loop_exit_names.append(f"{exit_name}:0")
        context.loop_enter_names.extend(f"{e}:0" for e in frame.enters)
        values = set()
        inner_exits = [n for n, f in analysis.frame_of.items()
                       if f == frame.name and nodes[n].op in EXIT_OPS and n not in frame.members]
        for member in frame.members + inner_exits:
            op = graph.get_operation_by_name(member)
            values.update(t.name for t in op.outputs)
        for enter in frame.constants:
            # The value from outside, through the constant enters of enclosing loops.
            outside = nodes[enter].input[0]
            while nodes[_name(outside)].op in ENTER_OPS and \
                    nodes[_name(outside)].attr["is_constant"].b:
                outside = nodes[_name(outside)].input[0]
            outside = outside if ":" in outside else f"{outside}:0"
            values.add(outside)
            context.values_def.external_values[outside] = f"{enter}:0"
        context.values_def.values.extend(sorted(values))
        for inner in analysis.nested(frame.name):
            context.nested_contexts.add().while_ctxt.CopyFrom(build(inner))
        return context

    return [build(frame) for frame in analysis.nested("")]


def restore_while_contexts(graph: Any, analysis: FrameAnalysis) -> list[Any]:
    """Builds the ``WhileContext`` of every loop in ``graph`` (imported from the analysed
    GraphDef under its own names) and records them in its ``while_context`` collection."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_ops

    contexts = []
    with graph.as_default():
        for context_def in while_context_defs(analysis, graph):
            context = control_flow_ops.WhileContext.from_proto(context_def)
            graph.add_to_collection(tf.compat.v1.GraphKeys.WHILE_CONTEXT, context)
            contexts.append(context)
    return contexts


def missing_functions(graph_def: Any) -> list[tuple[str, str, str]]:
    """``(node, op type, function)`` for each graph node that calls a function its library lacks.

    ``If``/``While``/``Case`` branches and bodies, ``PartitionedCall`` functions:
    a frozen graph written without its library imports but cannot run.
    """
    have = {f.signature.name for f in graph_def.library.function}
    found = []
    for node in graph_def.node:
        for value in node.attr.values():
            names = [value.func.name] if value.HasField("func") else \
                [f.name for f in value.list.func] if value.HasField("list") else []
            found.extend((node.name, node.op, n) for n in names if n and n not in have)
    return found
