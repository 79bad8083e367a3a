"""Loading models to explain: every artifact kind, as one TF1 graph and session.

Every loader returns a :class:`LoadedModel`: a new graph, a session holding
the model's weights, and the input/output tensors by name::

    from saliency_tf1 import load_model

    with load_model("export/1") as model:                  # any artifact, see below
        x = model.tensor("images", role="input")           # a signature key ...
        logits = model.tensor("logits", role="output")
        conv = model.tensor("conv2d_3", role="conv")       # ... a Keras layer name
        target = ClassTarget(logits)
        grad = GradientSaliency(model.graph, model.session, target.y, x)

What loads, and how (:func:`load_model` picks by the form of its argument):

* a frozen ``GraphDef`` (``.pb``/``.pbtxt``) -- imported as it is;
* a meta graph and its checkpoint (``.meta``) -- imported, the saver's restore run;
* a SavedModel directory -- TF1 (``tf.compat.v1.saved_model.Builder``) or TF2
  (``tf.saved_model.save`` of a ``tf.Module`` or a Keras model, tf-keras
  ``model.save``, Keras 3 ``model.export``): its meta graph imported and
  restored, and the function calls its signature runs *inlined*
  (:mod:`saliency_tf1.models.inline`), so the model is one flat graph of
  ordinary ops: differentiable, its layers reachable by name, its variables
  still variables;
* a Keras file (``.h5``/``.keras``, tf-keras or Keras 3) or a model object
  (tf-keras or Keras 3 model, subclassed included, or a ``tf.Module``) --
  traced into a graph whose variables hold the model's weights
  (:mod:`saliency_tf1.models.tf2`); the caller's model is never changed.

TF1 while loops in a GraphDef get their ``WhileContext`` s rebuilt
(:mod:`saliency_tf1.models.control_flow`); functional ``If``/``While`` are
kept, and the model's session (:class:`~saliency_tf1.models.model_session.ModelSession`)
stays valid when a gradient rewrites them after the model has run.

Checks at load, instead of surprises later: functions a graph calls but its
library lacks, variables the outputs read that are not initialised, and a
gradient that cannot be built from the inputs to the outputs (the error
names the op; ``gradients=False`` loads the model for the methods that only
run it forward: occlusion).

Untrusted models. A graph can hold ops that read or write files, open network
connections or run Python when the model is run. Every loader of a file checks
the GraphDef / MetaGraphDef *before* anything is imported or run
(:mod:`saliency_tf1.models.guard`, function library included), and again after
inlining (the graph that is imported), and refuses, by raising
:class:`UnsafeGraphError`, a graph with any op that is not on the guard's
allow-list of pure-computation ops (``ALLOWED_OPS``); checkpoint ops are
allowed only where the guard proves them the saver's own (the restore op
reads the saver's filename into the graph's variables and runs nothing else;
save paths nothing else depends on). Loading runs nothing but that restore op
(and, for a SavedModel, its init op, which the same check covers). A Keras
file is loaded in Keras's safe mode (no ``Lambda`` bytecode) and its traced
graph checked before it is imported. Extend the list with
``allow_ops=("LookupTableFindV2", ...)`` for op types you have checked; pass
``allow_unsafe_ops=True`` only for models whose origin you trust.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import errno
import os
import sys
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..engine.graph import SCOPE, ancestor_ops
from . import cf_gradients, control_flow, names
from .diagnose import (
    control_flow_on_path,
    forward_only_methods,
    gradient_problem,
    path_between,
    unsupported_methods,
)
from .guard import (
    INIT_OP_COLLECTIONS,
    INIT_OP_SIGNATURE_KEY,
    PLACEHOLDER_OPS,
    SAVER_OPS,
    VARIABLE_OPS,
    UnsafeGraphError,
    check_allow_ops,
    check_graph,
    node_name,
)
from .inline import inline_calls
from .model_session import ModelSession, VariableCarry, initialised_variables

#: What each ``LoadedModel.kind`` is.
KINDS = {
    "frozen": "a frozen GraphDef",
    "checkpoint": "a meta graph and its checkpoint",
    "saved_model": "a SavedModel: TF1, or TF2 (tf.Module, tf-keras, Keras 3 export) inlined",
    "keras": "a Keras model (file or object), traced",
    "module": "a tf.Module, traced",
}

# ---------------------------------------------------------------------------
# The loaded model.


@dataclass
class LoadedModel:
    """A model loaded into its own graph and session.

    Attributes:
      graph: the model's ``tf.Graph`` (nothing else is in it).
      session: a session on ``graph`` holding the weights: a
        :class:`~saliency_tf1.models.model_session.ModelSession`, which runs
        like a ``tf.compat.v1.Session`` and stays valid when a method's
        gradient rewrites a functional ``While``/``If`` the session has run.
      inputs: signature input key -> tensor (SavedModel, Keras model); else
        the graph's placeholders by op name.
      outputs: signature output key -> tensor (SavedModel, Keras model); else ``{}``.
      source: the path loaded (or a description of the object).
      kind: one of :data:`KINDS` (``"frozen"``, ``"checkpoint"``,
        ``"saved_model"``, ``"keras"``, ``"module"``).
      keras_model: the Keras model traced (``kind == "keras"``): the caller's
        object, or the one read from the file. Not part of the graph.
      layers: layer name -> output tensor, for the layers known by name
        (every layer of a traced functional Keras model); other layer names
        are found by name scope (:meth:`tensor`).
      gradient_error: why gradients cannot be built from the inputs to the
        outputs (then only :attr:`methods` work), or ``None``.
      unsupported: catalogue method -> why it cannot explain this model (the
        rest are :attr:`methods`).
    """

    graph: Any
    session: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    source: str
    kind: str = ""
    keras_model: Any = field(default=None, repr=False)
    layers: dict[str, Any] = field(default_factory=dict, repr=False)
    gradient_error: str | None = None
    unsupported: dict[str, str] = field(default_factory=dict, repr=False)
    _hidden: frozenset = field(default=frozenset(), repr=False)  # saver filename placeholders

    @property
    def methods(self) -> list[str]:
        """The catalogue methods that work on this model: the available ones but those of
        :attr:`unsupported` (only those that run the model forward when gradients cannot
        be built, see :attr:`gradient_error`)."""
        from ..catalogue import available_methods

        return [m for m in available_methods() if m not in self.unsupported]

    def tensor(self, name: str, *, role: str = "tensor") -> Any:
        """A tensor of the model by signature key, tensor name, op name or layer name.

        ``name`` is looked up as a signature key (``"logits"``; inputs first
        for ``role="input"``, outputs first otherwise), then as a tensor name
        (``"logits:0"``), then as an op name (``"logits"``: its first output),
        then as a layer name (``"dense_2"`` for ``dense_2/BiasAdd:0``, or the
        layer's name scope inside an inlined TF2 model: the last tensor of the
        scope that the rest of the graph uses).

        Args:
          name: the key or name.
          role: ``"input"``, ``"output"``, ``"conv"`` or ``"tensor"``; only
            decides the lookup order and which candidates an error lists.

        Raises:
          ValueError: no such tensor; the message lists the candidates
            (placeholders for an input, signature outputs and unconsumed
            tensors for an output -- with the logits under a softmax output --
            4-D activations for a conv layer) and close matches.
        """
        if role not in ("tensor", "input", "output", "conv"):
            raise ValueError(
                f"role: expected 'tensor', 'input', 'output' or 'conv', got {role!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{role} tensor name: expected a non-empty str, got {name!r}")
        maps = [self.inputs, self.outputs] if role == "input" else [self.outputs, self.inputs]
        for mapping in maps:
            if name in mapping:
                return mapping[name]
        reason = None
        try:
            if ":" in name:
                return self.graph.get_tensor_by_name(name)
            op = self.graph.get_operation_by_name(name)
            if op.outputs:
                return op.outputs[0]
            reason = f"op {name!r} ({op.type}) has no outputs"
        except (KeyError, ValueError, TypeError):
            pass
        if ":" not in name:
            found = self.layer(name, _missing=None)
            if found is not None:
                return found
            _, why = names.layer_output(self.graph, name, self._input_tensors())
            reason = reason or why
        reason = reason or f"no tensor, op or layer {name!r} in the model loaded from " \
                           f"{self.source}"
        raise ValueError(self._unknown(name, role, reason))

    def layer(self, name: str, _missing: Any = ValueError) -> Any:
        """The output tensor of the layer called ``name`` (see :meth:`tensor`)."""
        if name in self.layers:
            return self.layers[name]
        found, why = names.layer_output(self.graph, name, self._input_tensors())
        if found is None and _missing is ValueError:
            raise ValueError(self._unknown(name, "tensor", why or f"no layer {name!r}"))
        return found

    def logits(self, output: Any = None) -> Any:
        """The pre-softmax logits of an output (a key, name or tensor; default: the only
        output): the softmax's input when the output is a softmax, else the output."""
        if output is None:
            outs = list(self.outputs.values())
            if len(outs) != 1:
                raise ValueError("output: the model has "
                                 f"{len(outs) or 'no declared'} outputs; name one")
            output = outs[0]
        tensor = self.tensor(output, role="output") if isinstance(output, str) else output
        under = names.pre_softmax(tensor)
        return tensor if under is None else under

    def is_probability(self, output: Any) -> bool:
        """Whether an output (key, name or tensor) is already a softmax / sigmoid."""
        tensor = self.tensor(output, role="output") if isinstance(output, str) else output
        return names.is_probability(tensor)

    def _input_tensors(self) -> list[Any]:
        found = [t for t in self.inputs.values() if hasattr(t, "op")]
        return found or [self.graph.get_operation_by_name(n).outputs[0]
                         for n in self.placeholders()]

    def placeholders(self) -> list[str]:
        """Names of the model's placeholder ops (``PlaceholderWithDefault`` too).

        Leaves out a saver's filename placeholder and ops this package added.
        """
        return [op.name for op in self.graph.get_operations()
                if op.type in PLACEHOLDER_OPS and op.name not in self._hidden
                and not op.name.startswith(SCOPE + "/")]

    def candidates(self, role: str = "tensor", limit: int = 12) -> list[str]:
        """Likely tensors for ``role``, described as ``"name:0 dtype shape"``."""
        graph_tensors: list[Any] = []
        keys: list[str] = []
        if role in ("input", "tensor"):
            keys += [f"{k!r} (signature input)" for k in self.inputs if k not in
                     self.placeholders()]
            graph_tensors += [self.graph.get_operation_by_name(n).outputs[0]
                              for n in self.placeholders()]
        if role in ("output", "tensor"):
            keys += [f"{k!r} (signature output)" for k in self.outputs]
            graph_tensors += self._sinks()
        if role == "conv":
            keys += [f"{k!r} (layer)" for k, t in self.layers.items()
                     if t.shape.rank == 4][-limit:]
            graph_tensors += self._conv_like()[-limit:]
        described = [_describe(t) for t in graph_tensors[:limit]]
        return keys + described

    def _sinks(self) -> list[Any]:
        """Tensors nothing consumes: where a frozen graph's outputs usually are."""
        found = []
        for op in self.graph.get_operations():
            if (op.type in PLACEHOLDER_OPS or op.type in names.PLUMBING_OPS
                    or op.type in SAVER_OPS or op.name.startswith(SCOPE + "/")
                    or op.name in self._hidden):
                continue
            for t in op.outputs:
                if not t.consumers() and (t.dtype.is_floating or t.dtype.is_integer):
                    found.append(t)
        return found

    def _conv_like(self) -> list[Any]:
        """4-D float activations computed from the inputs, in graph order."""
        below = set()
        queue = deque(self.graph.get_operation_by_name(n) for n in self.placeholders())
        while queue:
            op = queue.popleft()
            if op.name not in below:
                below.add(op.name)
                queue.extend(c for t in op.outputs for c in t.consumers())
        return [op.outputs[0] for op in self.graph.get_operations()
                if op.name in below and op.outputs and op.type not in PLACEHOLDER_OPS
                and op.type not in names.PLUMBING_OPS
                and not op.name.startswith(SCOPE + "/")
                and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank == 4]

    def _unknown(self, name: str, role: str, reason: str) -> str:
        listing = self.candidates(role)
        words = {"input": "candidate inputs (placeholders)",
                 "output": "candidate outputs (signature outputs, tensors nothing consumes)",
                 "conv": "candidate conv layers (4-D activations, last ones)",
                 "tensor": "candidates (inputs, outputs)"}[role]
        pool = list(dict.fromkeys(list(self.inputs) + list(self.outputs) + list(self.layers)
                                  + names.suggestion_names(self.graph, self._hidden)))
        close = difflib.get_close_matches(name.split(":")[0], pool, n=3)
        text = f"{role} tensor {name!r}: {reason}.\n{words}:\n"
        text += "\n".join(f"  {c}" for c in listing) if listing else "  (none found)"
        if role in ("output", "tensor"):
            outs = list(self.outputs.items()) or [(t.name, t) for t in self._sinks()]
            for key, tensor in outs:
                under = names.pre_softmax(tensor)
                if under is not None:
                    text += (f"\noutput {key!r} is a softmax; its logits (pre-softmax) are "
                             f"{under.name!r}: explain those")
        if close:
            text += f"\ndid you mean: {', '.join(repr(c) for c in close)}?"
        return text

    def close(self) -> None:
        """Closes the session."""
        self.session.close()

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _describe(t: Any) -> str:
    shape = "?" if t.shape.rank is None else "[" + ", ".join(
        "None" if d is None else str(d) for d in t.shape.as_list()) + "]"
    return f"{t.name} {t.dtype.name} {shape}"


# ---------------------------------------------------------------------------
# Reading files.


def _existing(path: Any, what: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", path)
    return path


def _read_file(path: str, what: str) -> bytes:
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, expected a {what} file")
    with open(path, "rb") as f:
        return f.read()


def _parse(data: bytes, message: Any, path: str, what: str, text_first: bool = False) -> Any:
    """Parses a binary or text protobuf into ``message``; ValueError saying what it is not."""
    from google.protobuf import message as pb_message
    from google.protobuf import text_format

    def binary() -> bool:
        try:
            message.ParseFromString(data)
            return True
        except (pb_message.DecodeError, RuntimeWarning, ValueError):
            message.Clear()
            return False

    def text() -> bool:
        try:
            text_format.Parse(data.decode("utf-8"), message)
            return True
        except (UnicodeDecodeError, text_format.ParseError):
            message.Clear()
            return False

    for parse in ((text, binary) if text_first else (binary, text)):
        if parse():
            return message
    raise ValueError(f"{path}: not a {what} (neither a binary nor a text protobuf of one)")


def _check_nodes(graph_def: Any, path: str, what: str) -> None:
    if not graph_def.node or any(not n.name or not n.op for n in graph_def.node):
        raise ValueError(f"{path}: not a {what} (it parses, but holds no valid graph nodes)")


def _import_error(path: str, err: Exception) -> ValueError:
    return ValueError(f"{path}: TensorFlow cannot import this graph: {err}")


def _session(graph: Any, config: Any) -> Any:
    import tensorflow as tf

    return tf.compat.v1.Session(graph=graph, config=config)


def _saver_hidden(graph: Any, saver_def: Any) -> frozenset:
    """Placeholders that are not the model's inputs.

    Those feeding checkpoint ops or savers (filename tensors), and those that
    only feed assignments (tf-keras's weight-loading placeholders).
    """
    assigns = ("Assign", "AssignVariableOp")
    loaders = {op.name for op in graph.get_operations() if op.type in PLACEHOLDER_OPS
               and op.outputs[0].consumers()
               and all(c.type in assigns for c in op.outputs[0].consumers())}
    roots = [op for op in graph.get_operations() if op.type in SAVER_OPS]
    if saver_def is not None:
        for ref in (saver_def.restore_op_name, saver_def.save_tensor_name):
            with contextlib.suppress(KeyError, ValueError):
                roots.append(graph.get_operation_by_name(node_name(ref)))
    hidden = {op.name for op in ancestor_ops(roots) if op.type in PLACEHOLDER_OPS}
    return frozenset(hidden | loaders)


def _placeholder_inputs(graph: Any, hidden: frozenset) -> dict[str, Any]:
    return {op.name: op.outputs[0] for op in graph.get_operations()
            if op.type in PLACEHOLDER_OPS and op.name not in hidden}


def _signature_tensors(graph: Any, signature: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The signature's dense tensors (and sparse ones as ``tf.SparseTensor``) by key."""
    import tensorflow as tf

    def get(info: Any) -> Any:
        if info.HasField("coo_sparse"):
            coo = info.coo_sparse
            return tf.SparseTensor(graph.get_tensor_by_name(coo.indices_tensor_name),
                                   graph.get_tensor_by_name(coo.values_tensor_name),
                                   graph.get_tensor_by_name(coo.dense_shape_tensor_name))
        return graph.get_tensor_by_name(info.name) if info.name else None

    pick = [(signature.inputs, {}), (signature.outputs, {})]
    for infos, out in pick:
        for key, info in infos.items():
            tensor = get(info)
            if tensor is not None:  # composite (ragged) tensors are left out
                out[key] = tensor
    return pick[0][1], pick[1][1]


# ---------------------------------------------------------------------------
# Preparing a graph: library check, inlining, TF1 loops; finishing a load.


def _check_functions(graph_def: Any, source: str) -> None:
    """A clear error for graph nodes calling functions the library lacks (before the guard,
    which would refuse them less helpfully, and before TensorFlow, which cannot import them)."""
    missing = control_flow.missing_functions(graph_def)
    if missing:
        node, op, fname = missing[0]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(
            f"{source}: node {node!r} ({op}) calls function {fname!r}, which is not in the "
            f"graph's function library{more}: the graph was written without its functions "
            "(freeze it with convert_variables_to_constants_v2, or write "
            "concrete_function.graph.as_graph_def(), which keep the library)")


@dataclass
class _Prepared:
    graph_def: Any
    renamed: Any  # InlineResult or None
    loops: Any  # FrameAnalysis or None (contexts to rebuild after import)
    loop_problem: str | None = None

    def tensor(self, name: str) -> str:
        return self.renamed.tensor(name) if self.renamed is not None else name


def _prepare(graph_def: Any, source: str, *, roots: Any = None,
             contexts_known: bool = False) -> _Prepared:
    """Inlines the calls (those ``roots`` need; checkpoint functions kept) and prepares
    TF1 loops (restores pruned exits) in a copy of ``graph_def``."""
    from tensorflow.core.framework import graph_pb2

    original = graph_def
    result = None
    if any(f for f in graph_def.library.function):
        try:
            result = inline_calls(graph_def, keep=SAVER_OPS, roots=roots)
        except ValueError as err:
            raise ValueError(f"{source}: cannot inline the graph's function calls: {err}") \
                from err
        graph_def = result.graph_def if result.inlined else graph_def
        if not result.inlined:
            result = None
    loops, problem = None, None
    if control_flow.has_v1_loops(graph_def) and not contexts_known:
        out = graph_pb2.GraphDef()
        out.CopyFrom(graph_def)
        graph_def = out
        loops = control_flow.analyse_frames(graph_def)
        problem = control_flow.unsupported_reason(loops)
        if problem is None:
            control_flow.restore_missing_exits(graph_def, loops)
        else:
            loops = None
    if any(n.op in cf_gradients.WHILE_OPS + cf_gradients.IF_OPS for n in graph_def.node):
        if graph_def is original:
            out = graph_pb2.GraphDef()
            out.CopyFrom(graph_def)
            graph_def = out
        cf_gradients.mark(graph_def)
    for node in graph_def.node:
        node.device = ""
    return _Prepared(graph_def, result, loops, problem)


def _rebuild_loops(graph: Any, prepared: _Prepared, source: str) -> str | None:
    """Rebuilds the TF1 loops' contexts in the imported graph; why not, if it cannot."""
    if prepared.loops is None:
        return prepared.loop_problem
    try:
        control_flow.restore_while_contexts(graph, prepared.loops)
    except (ValueError, KeyError, TypeError) as err:
        return f"cannot rebuild the TF1 while loops' contexts: {err}"
    return None


def _user_stacklevel() -> int:
    """The stack level of the first frame outside this package (for warnings)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1  # noqa: SLF001
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    return level


def _variables_needed(graph: Any, outputs: list[Any]) -> set[str]:
    return {op.name for op in ancestor_ops(outputs) if op.type in VARIABLE_OPS}


def _finish(graph: Any, session: Any, inputs: dict, outputs: dict, source: str, kind: str, *,
            hidden: frozenset, config: Any, gradients: bool, initialize: Any = None,
            carry: VariableCarry | None = None, library: Any = None,
            loop_problem: str | None = None, layers: dict | None = None,
            keras_model: Any = None) -> LoadedModel:
    """The load-time checks, the model's session, the :class:`LoadedModel`.

    Closes ``session`` on any error.
    """
    try:
        declared = [t for t in outputs.values() if hasattr(t, "op")]
        targets = declared or [t for t in LoadedModel(graph, session, inputs, {}, source,
                                                      _hidden=hidden)._sinks()]
        if carry is None:
            initialised, missing = initialised_variables(graph, session)
            needed = _variables_needed(graph, targets)
            unset = sorted(op.name for op in missing if op.name in needed)
            if unset:
                raise ValueError(
                    f"{source}: the model's outputs read {len(unset)} variable(s) that loading "
                    f"left uninitialised ({', '.join(unset[:5])}"
                    f"{', ...' if len(unset) > 5 else ''}): their values are not in the "
                    "checkpoint / SavedModel, so running the model would fail")
            carry = VariableCarry(graph, session, initialised) if initialised else None
        sources = [t for t in inputs.values() if hasattr(t, "op")]
        problem = loop_problem if loop_problem and path_between(sources, targets) else None
        if problem is None:
            problem = gradient_problem(sources, targets, library)
        if problem and gradients:
            where = "from its inputs to its outputs" if declared else \
                "from its inputs to the tensors nothing consumes"
            message = (f"{source}: gradients cannot be built {where}: {problem}. The methods "
                       f"that only run the model forward work ({', '.join(forward_only_methods())}"
                       "); load with gradients=False to use them")
            if declared:
                raise ValueError(message)
            warnings.warn(message, stacklevel=_user_stacklevel())
        unsupported = unsupported_methods(problem, *control_flow_on_path(sources, targets))
        wrapped = ModelSession(graph, session, config=config, initialize=initialize,
                               carry=carry)
    except BaseException:
        session.close()
        raise
    return LoadedModel(graph, wrapped, inputs, outputs, source, kind=kind,
                       keras_model=keras_model, layers=dict(layers or {}),
                       gradient_error=problem, unsupported=unsupported, _hidden=hidden)


def _library(graph_def: Any) -> dict[str, Any]:
    return {f.signature.name: f for f in graph_def.library.function}


# ---------------------------------------------------------------------------
# Loaders.


def load_frozen_graph(path: Any, *, allow_unsafe_ops: bool = False, allow_ops: Any = (),
                      config: Any = None, gradients: bool = True) -> LoadedModel:
    """Loads a frozen ``GraphDef`` (``.pb``, or text ``.pbtxt``): weights are constants.

    The graph is imported under its own names (no ``import/`` prefix) with
    device placements cleared; nothing is run. Function calls are inlined;
    the contexts of TF1 while loops (``Enter``/``Exit`` frames, from
    ``tf.compat.v1.while_loop`` or a lowered ``While``) are rebuilt so that
    gradients go through them.

    Args:
      path: the file.
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.
      gradients: check that gradients can be built (to the tensors nothing
        consumes); where they cannot, a warning names the reason and
        :attr:`LoadedModel.methods` lists what works. ``False``: no warning.

    Returns:
      A :class:`LoadedModel` whose ``inputs`` are the graph's placeholders
      and ``outputs`` is empty (name outputs with :meth:`LoadedModel.tensor`).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a GraphDef, a graph with variables (not frozen; load its
        checkpoint), nodes calling functions the library lacks, or one
        TensorFlow cannot import.
      UnsafeGraphError: the graph holds unsafe ops (nothing was imported).
    """
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    allow_ops = check_allow_ops(allow_ops)
    path = _existing(path, "frozen graph")
    data = _read_file(path, "frozen graph (.pb)")
    graph_def = _parse(data, graph_pb2.GraphDef(), path, "frozen TensorFlow GraphDef",
                       text_first=path.endswith((".pbtxt", ".txt")))
    _check_nodes(graph_def, path, "frozen TensorFlow GraphDef")
    variables = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    if variables:
        raise ValueError(
            f"{path}: not a frozen graph: it holds {len(variables)} variable(s) "
            f"({', '.join(variables[:5])}{', ...' if len(variables) > 5 else ''}) whose values "
            "are not in the file; load the checkpoint's .meta with load_checkpoint, or freeze "
            "the graph (graph_util.convert_variables_to_constants)")
    _check_functions(graph_def, path)
    if not allow_unsafe_ops:
        check_graph(graph_def, path, allowed_restore=(), allow_ops=allow_ops)
    prepared = _prepare(graph_def, path)
    if prepared.renamed is not None and not allow_unsafe_ops:
        check_graph(prepared.graph_def, path, allowed_restore=(), allow_ops=allow_ops)
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(prepared.graph_def, name="")
        except (ValueError, tf.errors.OpError) as err:
            raise _import_error(path, err) from err
    loop_problem = _rebuild_loops(graph, prepared, path)
    session = _session(graph, config)
    hidden = _saver_hidden(graph, None)
    return _finish(graph, session, _placeholder_inputs(graph, hidden), {}, path, "frozen",
                   hidden=hidden, config=config, gradients=gradients,
                   library=_library(prepared.graph_def), loop_problem=loop_problem)


def _read_meta_graph(path: str) -> Any:
    from tensorflow.core.protobuf import meta_graph_pb2

    data = _read_file(path, "meta graph (.meta)")
    meta = _parse(data, meta_graph_pb2.MetaGraphDef(), path, "TensorFlow MetaGraphDef",
                  text_first=path.endswith((".pbtxt", ".txt")))
    _check_nodes(meta.graph_def, path, "TensorFlow MetaGraphDef")
    return meta


def _checkpoint_prefix(meta_path: str, checkpoint: Any) -> str:
    import tensorflow as tf

    if checkpoint is None:
        prefix = meta_path[: -len(".meta")] if meta_path.endswith(".meta") else meta_path
    else:
        prefix = os.fspath(checkpoint)
        if os.path.isdir(prefix):
            latest = tf.train.latest_checkpoint(prefix)
            if latest is None:
                raise FileNotFoundError(errno.ENOENT, "no checkpoint in directory", prefix)
            prefix = latest
    if not (os.path.exists(prefix + ".index") or os.path.isfile(prefix)):
        raise FileNotFoundError(
            errno.ENOENT, "checkpoint not found (expected PREFIX.index next to the .meta)",
            prefix)
    return prefix


def _prepare_meta(meta: Any, source: str, signature_key: str | None, allow_unsafe_ops: bool,
                  allow_ops: Any) -> tuple[Any, _Prepared]:
    """Checks ``meta``, inlines the calls its signature runs (a copy), checks the result."""
    _check_functions(meta.graph_def, source)
    if not allow_unsafe_ops:
        check_graph(meta, source, allow_ops=allow_ops)
    roots = None
    if signature_key is not None and signature_key in meta.signature_def:
        signature = meta.signature_def[signature_key]
        roots = [i.name for i in signature.outputs.values() if i.name]
    known = "while_context" in meta.collection_def
    prepared = _prepare(meta.graph_def, source, roots=roots, contexts_known=known)
    if prepared.graph_def is meta.graph_def:
        return meta, prepared
    meta = copy.deepcopy(meta)
    meta.graph_def.CopyFrom(prepared.graph_def)
    if prepared.renamed is not None:
        for signature in meta.signature_def.values():
            for infos in (signature.inputs, signature.outputs):
                for info in infos.values():
                    if info.name:
                        info.name = prepared.tensor(info.name)
        if not allow_unsafe_ops:
            check_graph(meta, source, allow_ops=allow_ops)
    return meta, prepared


def load_checkpoint(meta_path: Any, *, allow_unsafe_ops: bool = False, allow_ops: Any = (),
                    checkpoint: Any = None, signature_key: str = "serving_default",
                    config: Any = None, gradients: bool = True) -> LoadedModel:
    """Loads a meta graph (``.meta``) and restores its weights from the checkpoint beside it.

    Imports the MetaGraphDef (device placements cleared; function calls on
    the signature's path inlined) and runs only its saver's restore op, fed
    the checkpoint's path.

    Args:
      meta_path: the ``.meta`` file (``model.ckpt-100.meta``; its checkpoint
        is ``model.ckpt-100``).
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      checkpoint: another checkpoint prefix to restore, or a directory (its
        latest checkpoint).
      signature_key: used when the meta graph carries signatures.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.
      gradients: raise (signature outputs) or warn (no signature) when
        gradients cannot be built; ``False``: load for the forward-only methods.

    Returns:
      A :class:`LoadedModel`; ``inputs``/``outputs`` come from the signature
      ``signature_key`` if the meta graph has it, else the placeholders / ``{}``.

    Raises:
      FileNotFoundError: no such ``.meta`` or checkpoint.
      ValueError: not a MetaGraphDef, the checkpoint does not fit the graph,
        variables the outputs read are left uninitialised, or (with a
        signature) gradients cannot be built.
      UnsafeGraphError: the graph holds unsafe ops (nothing was imported or run).
    """
    import tensorflow as tf

    allow_ops = check_allow_ops(allow_ops)
    meta_path = _existing(meta_path, "meta graph")
    meta = _read_meta_graph(meta_path)
    has_variables = any(n.op in VARIABLE_OPS for n in meta.graph_def.node)
    prefix = _checkpoint_prefix(meta_path, checkpoint) if has_variables else None
    meta, prepared = _prepare_meta(meta, meta_path, signature_key, allow_unsafe_ops, allow_ops)
    graph = tf.Graph()
    session = _session(graph, config)
    try:
        with graph.as_default():
            _import_and_restore(session, meta, prefix, meta_path, f"the checkpoint {prefix}")
        loop_problem = _rebuild_loops(graph, prepared, meta_path)
        hidden = _saver_hidden(graph, meta.saver_def if meta.HasField("saver_def") else None)
        if signature_key in meta.signature_def:
            inputs, outputs = _signature_tensors(graph, meta.signature_def[signature_key])
        else:
            inputs, outputs = _placeholder_inputs(graph, hidden), {}
    except BaseException:
        session.close()
        raise
    return _finish(graph, session, inputs, outputs, meta_path, "checkpoint", hidden=hidden,
                   config=config, gradients=gradients, library=_library(meta.graph_def),
                   loop_problem=loop_problem)


def _import_and_restore(session: Any, meta: Any, prefix: str | None, source: str,
                        what: str) -> None:
    """Imports ``meta`` into the default graph, then runs its saver's restore of ``prefix``.

    The only op run is the restore op (checked by :func:`check_graph` beforehand
    unless the caller allowed unsafe ops); ``prefix=None`` restores nothing.
    """
    import tensorflow as tf

    try:
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
    except (ValueError, KeyError, tf.errors.OpError) as err:
        raise _import_error(source, err) from err
    if saver is not None and prefix is not None:
        try:
            saver.restore(session, prefix)
        except (ValueError, tf.errors.OpError) as err:
            raise ValueError(
                f"{source}: cannot restore {what}: {str(err).splitlines()[0]}") from err


def _read_saved_model(export_dir: str) -> Any:
    from tensorflow.core.protobuf import saved_model_pb2

    for name, text in (("saved_model.pb", False), ("saved_model.pbtxt", True)):
        path = os.path.join(export_dir, name)
        if os.path.isfile(path):
            saved = _parse(_read_file(path, "SavedModel"), saved_model_pb2.SavedModel(), path,
                           "SavedModel", text_first=text)
            if not saved.meta_graphs:
                raise ValueError(f"{path}: not a SavedModel (no meta graphs)")
            return saved
    raise ValueError(
        f"{export_dir}: not a SavedModel directory (no saved_model.pb or saved_model.pbtxt)")


def _select_meta_graph(saved: Any, tags: Any, export_dir: str) -> Any:
    tags = [tags] if isinstance(tags, str) else list(tags)
    available = []
    for meta in saved.meta_graphs:
        have = sorted(meta.meta_info_def.tags)
        available.append(have)
        if set(have) == set(tags):
            return meta
    raise ValueError(f"{export_dir}: no meta graph with tags {sorted(tags)}; "
                     f"the SavedModel has {available}")


def load_saved_model(export_dir: Any, tags: Any = ("serve",),
                     signature_key: str | None = "serving_default", *,
                     allow_unsafe_ops: bool = False, allow_ops: Any = (),
                     config: Any = None, gradients: bool = True) -> LoadedModel:
    """Loads a SavedModel's meta graph in graph mode: TF1 and TF2 SavedModels alike.

    Imports the meta graph chosen by ``tags`` (device placements cleared),
    runs its saver's restore op on ``variables/variables`` and its init op
    (main op / legacy init op / ``__saved_model_init_op``: table and local
    variable initialisers), fed its asset paths -- and nothing else. In a TF2
    SavedModel (``tf.saved_model.save`` of a ``tf.Module`` or Keras model,
    tf-keras ``model.save``, Keras 3 ``model.export``) the signature runs the
    model inside function calls: those are inlined before import
    (:mod:`saliency_tf1.models.inline`), so the model is a flat graph --
    differentiable, its layers reachable by name (``model.tensor("conv")``),
    its variables restored as variables.

    Args:
      export_dir: the SavedModel directory (or its ``saved_model.pb``).
      tags: the meta graph's tag set.
      signature_key: the signature giving ``inputs``/``outputs``; ``None``
        for none (then ``inputs`` are the placeholders). A TF2 SavedModel
        without ``serving_default`` uses its only signature.
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.
      gradients: raise when gradients cannot be built from the signature's
        inputs to its outputs; ``False``: load for the forward-only methods.

    Raises:
      FileNotFoundError: no such directory.
      ValueError: not a SavedModel, no meta graph with these tags, no such
        signature (the message lists them), variables that do not restore or
        stay uninitialised, or gradients that cannot be built.
      UnsafeGraphError: the graph holds unsafe ops (nothing was imported or run).
    """
    import tensorflow as tf

    allow_ops = check_allow_ops(allow_ops)
    export_dir = _existing(export_dir, "SavedModel directory")
    if os.path.isfile(export_dir) and os.path.basename(export_dir).startswith("saved_model.pb"):
        export_dir = os.path.dirname(export_dir) or "."
    if not os.path.isdir(export_dir):
        raise ValueError(f"{export_dir}: not a SavedModel directory")
    saved = _read_saved_model(export_dir)
    meta = _select_meta_graph(saved, tags, export_dir)
    signatures = sorted(k for k in meta.signature_def if k != INIT_OP_SIGNATURE_KEY)
    if signature_key == "serving_default" and signature_key not in meta.signature_def \
            and len(signatures) == 1:
        signature_key = signatures[0]
    if signature_key is not None and signature_key not in meta.signature_def:
        raise ValueError(f"{export_dir}: no signature {signature_key!r}; the meta graph has "
                         f"{signatures} (or pass signature_key=None)")
    _check_nodes(meta.graph_def, export_dir, "SavedModel meta graph")
    meta, prepared = _prepare_meta(meta, export_dir, signature_key, allow_unsafe_ops,
                                   allow_ops)
    assets = [(a.tensor_info.name, os.path.join(export_dir, "assets", a.filename))
              for a in meta.asset_file_def]

    graph = tf.Graph()
    session = _session(graph, config)
    try:
        with graph.as_default():
            _import_and_restore(session, meta, os.path.join(export_dir, "variables", "variables"),
                                export_dir, "the variables")
            init_op = _saved_model_init_op(graph, meta)

            def initialize(target: Any) -> None:
                if init_op is not None:
                    target.run(init_op, feed_dict={graph.get_tensor_by_name(name): path
                                                   for name, path in assets})

            initialize(session)
        loop_problem = _rebuild_loops(graph, prepared, export_dir)
        hidden = _saver_hidden(graph, meta.saver_def if meta.HasField("saver_def") else None)
        if signature_key is None:
            inputs, outputs = _placeholder_inputs(graph, hidden), {}
        else:
            inputs, outputs = _signature_tensors(graph, meta.signature_def[signature_key])
    except BaseException:
        session.close()
        raise
    return _finish(graph, session, inputs, outputs, export_dir,
                   "saved_model", hidden=hidden, config=config,
                   gradients=gradients, initialize=initialize,
                   library=_library(meta.graph_def), loop_problem=loop_problem)


def _saved_model_init_op(graph: Any, meta: Any) -> Any:
    if INIT_OP_SIGNATURE_KEY in meta.signature_def:
        outputs = meta.signature_def[INIT_OP_SIGNATURE_KEY].outputs
        if INIT_OP_SIGNATURE_KEY in outputs:
            return graph.get_operation_by_name(node_name(outputs[INIT_OP_SIGNATURE_KEY].name))
    for key in INIT_OP_COLLECTIONS:
        if key in meta.collection_def and meta.collection_def[key].node_list.value:
            names = meta.collection_def[key].node_list.value
            return [graph.get_operation_by_name(node_name(n)) for n in names]
    return None


def load_keras_model(model_or_path: Any, *, allow_unsafe_ops: bool = False,
                     allow_ops: Any = (), custom_objects: dict | None = None,
                     config: Any = None, input_signature: Any = None,
                     gradients: bool = True) -> LoadedModel:
    """A Keras model (tf-keras or Keras 3, file or object) as a TF1 graph and session.

    * a model object -- functional, Sequential or subclassed, tf-keras or
      Keras 3 (or any ``tf.Module`` with a ``__call__``) -- is traced
      (:func:`saliency_tf1.models.tf2.trace_model`): its call, with
      ``training=False``, becomes the graph, and its current weights the
      graph's variables. The caller's model is not changed, whatever happens;
    * an ``.h5``/``.keras`` file is loaded eagerly by the Keras that wrote it
      (compile=False, safe mode: no ``Lambda`` bytecode), then traced; the
      traced graph is checked by the guard before it is imported;
    * a SavedModel directory (tf-keras ``model.save``, Keras 3 ``export``) is
      :func:`load_saved_model`.

    No legacy switch is needed (tf-keras is only imported for tf-keras files).

    Args:
      model_or_path: the model or its path.
      allow_unsafe_ops: load ``Lambda`` layers' bytecode and skip the guard
        (files whose origin you trust).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      custom_objects: for loading a file.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.
      input_signature: ``tf.TensorSpec`` (or a list) of the inputs, when the
        model does not declare them (a subclassed model never called).
      gradients: raise when gradients cannot be built from the inputs to the
        outputs; ``False``: load for the forward-only methods.

    Returns:
      A :class:`LoadedModel` with ``inputs``/``outputs`` keyed by the model's
      input and output names, ``layers`` every layer's output (functional
      models) and ``keras_model`` the eager model. The last layer's
      activation is part of the outputs; for logits under a softmax use
      :meth:`LoadedModel.logits`.

    Raises:
      TypeError: not a Keras model / callable module, no known input
        signature, or a call that cannot be traced in graph mode (the message
        says why; the model is unchanged).
      FileNotFoundError, ValueError: a path that does not exist / does not load.
      UnsafeGraphError: a ``Lambda`` layer in a file, or unsafe ops in its graph.
    """
    from . import tf2 as tf2_models

    allow_ops = check_allow_ops(allow_ops)
    if isinstance(model_or_path, str | os.PathLike):
        path = _existing(model_or_path, "Keras model")
        if os.path.isdir(path):
            return load_saved_model(path, allow_unsafe_ops=allow_unsafe_ops,
                                    allow_ops=allow_ops, config=config, gradients=gradients)
        try:
            model, _ = tf2_models.load_model_file(path, custom_objects, not allow_unsafe_ops)
        except (OSError, ValueError, TypeError, KeyError) as err:
            text = str(err)
            if "lambda" in text.lower() and not allow_unsafe_ops:
                raise UnsafeGraphError([("a Lambda layer", "Lambda")], path) from err
            raise ValueError(f"{path}: cannot load this Keras model: "
                             f"{text.strip().splitlines()[0] if text.strip() else err!r}") \
                from err
        traced = tf2_models.trace_model(model, input_signature=input_signature, source=path,
                                        kind="keras")
        return _load_traced(traced, model, check=not allow_unsafe_ops, allow_ops=allow_ops,
                            config=config, gradients=gradients)
    if tf2_models.keras_flavour(model_or_path) is None:
        raise TypeError(
            "model_or_path: expected a Keras model (tf-keras or Keras 3) or a path to one, got "
            f"{type(model_or_path).__module__}.{type(model_or_path).__name__}")
    traced = tf2_models.trace_model(model_or_path, input_signature=input_signature)
    return _load_traced(traced, model_or_path, check=False, allow_ops=allow_ops, config=config,
                        gradients=gradients)


def load_module(module: Any, *, input_signature: Any = None, config: Any = None,
                gradients: bool = True) -> LoadedModel:
    """A callable ``tf.Module`` (or Keras model) traced into a TF1 graph (see
    :func:`load_keras_model`); its ``__call__`` must have an input signature or
    ``input_signature`` be given."""
    from . import tf2 as tf2_models

    traced = tf2_models.trace_model(module, input_signature=input_signature)
    return _load_traced(traced, module if traced.kind == "keras" else None, check=False,
                        allow_ops=(), config=config, gradients=gradients)


def _load_traced(traced: Any, model: Any, *, check: bool, allow_ops: Any, config: Any,
                 gradients: bool) -> LoadedModel:
    """Imports a :class:`~saliency_tf1.models.tf2.TracedModel` into a new graph and session."""
    import tensorflow as tf

    source = traced.source
    _check_functions(traced.graph_def, source)
    if check:
        check_graph(traced.graph_def, source, allowed_restore=(), allow_ops=allow_ops)
    prepared = _prepare(traced.graph_def, source)
    if check and prepared.renamed is not None:
        check_graph(prepared.graph_def, source, allowed_restore=(), allow_ops=allow_ops)
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(prepared.graph_def, name="")
        except (ValueError, tf.errors.OpError) as err:
            raise _import_error(source, err) from err
    session = _session(graph, config)
    try:
        variables = [graph.get_operation_by_name(name) for name in traced.variables]
        carry = VariableCarry(graph, session, variables) if variables else None
        if carry is not None:
            carry.load(session, [traced.variables[op.name] for op in variables])

        def get(name: str) -> Any:
            return graph.get_tensor_by_name(prepared.tensor(name))

        inputs = {k: get(v) for k, v in traced.inputs.items()}
        outputs = {k: get(v) for k, v in traced.outputs.items()}
        layers = {k: get(v) for k, v in traced.layers.items()}
    except BaseException:
        session.close()
        raise
    return _finish(graph, session, inputs, outputs, source, traced.kind, hidden=frozenset(),
                   config=config, gradients=gradients, carry=carry,
                   library=_library(prepared.graph_def), layers=layers, keras_model=model)


def load_model(path: Any, **kwargs: Any) -> LoadedModel:
    """Loads any model this module knows, by the form of ``path``.

    * a directory holding ``saved_model.pb``/``.pbtxt`` (or that file) ->
      :func:`load_saved_model` (TF1 and TF2 SavedModels, Keras exports);
    * a ``.meta`` file -> :func:`load_checkpoint`;
    * a ``.h5``/``.hdf5``/``.keras`` file -> :func:`load_keras_model`;
    * any other file (``.pb``, ``.pbtxt``) -> :func:`load_frozen_graph`;
    * a Keras model object -> :func:`load_keras_model`; another callable
      ``tf.Module`` -> :func:`load_module`.

    ``kwargs`` go to that loader (``allow_unsafe_ops``, ``allow_ops``, ``tags``,
    ``gradients``, ...).

    Raises:
      FileNotFoundError: no such path.
      ValueError: a directory that is not a SavedModel, or a file that is not a model.
      TypeError: an object that is not a model.
    """
    if not isinstance(path, str | os.PathLike):
        from .tf2 import keras_flavour

        if keras_flavour(path) is not None:
            return load_keras_model(path, **kwargs)
        import tensorflow as tf

        if isinstance(path, tf.Module) and callable(path):
            return load_module(path, **kwargs)
        raise TypeError("path: expected a path to a model, a Keras model or a callable "
                        f"tf.Module, got {type(path).__module__}.{type(path).__name__}")
    path = _existing(path, "model")
    if os.path.isdir(path):
        if any(os.path.isfile(os.path.join(path, n))
               for n in ("saved_model.pb", "saved_model.pbtxt")):
            return load_saved_model(path, **kwargs)
        metas = sorted(n for n in os.listdir(path) if n.endswith(".meta"))
        hint = f" (it holds {metas}: pass the .meta file)" if metas else ""
        raise ValueError(f"{path}: a directory that is not a SavedModel (no saved_model.pb)"
                         f"{hint}")
    base = os.path.basename(path)
    if base in ("saved_model.pb", "saved_model.pbtxt"):
        return load_saved_model(os.path.dirname(path) or ".", **kwargs)
    if base.endswith(".meta"):
        return load_checkpoint(path, **kwargs)
    if base.endswith((".h5", ".hdf5", ".keras")):
        return load_keras_model(path, **kwargs)
    return load_frozen_graph(path, **kwargs)
