"""Loading models to explain: frozen graphs, v1 SavedModels, meta-graph checkpoints, tf-keras.

Every loader returns a :class:`LoadedModel`: a new graph, a session holding
the model's weights, and the input/output tensors by name::

    from saliency_tf1 import load_model

    with load_model("export/1") as model:                  # a SavedModel directory
        x = model.tensor("images", role="input")           # a signature key ...
        logits = model.tensor("logits", role="output")
        conv = model.tensor("block4/conv2/Relu:0")         # ... or any tensor / op name
        target = ClassTarget(logits)
        grad = GradientSaliency(model.graph, model.session, target.y, x)

Untrusted models. A graph can hold ops that read or write files, open network
connections or run Python when the model is run. Every loader checks the
GraphDef / MetaGraphDef *before* anything is imported or run
(:mod:`saliency_tf1.models.guard`, function library included) and refuses,
by raising :class:`UnsafeGraphError`, a graph with any op that is not on the
guard's allow-list of pure-computation ops (``ALLOWED_OPS``); checkpoint ops
are allowed only where the guard proves them the saver's own (the restore op
reads the saver's filename into the graph's variables and runs nothing else;
save paths nothing else depends on). Loading runs nothing but that restore op
(and, for a SavedModel, its init op, which the same check covers). Extend the
list with ``allow_ops=("LookupTableFindV2", ...)`` for op types you have
checked; pass ``allow_unsafe_ops=True`` only for models whose origin you trust.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..engine.graph import SCOPE
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

# ---------------------------------------------------------------------------
# The loaded model.


@dataclass
class LoadedModel:
    """A model loaded into its own graph and session.

    Attributes:
      graph: the model's ``tf.Graph`` (nothing else is in it).
      session: a ``tf.compat.v1.Session`` on ``graph`` holding the weights.
      inputs: signature input key -> tensor (SavedModel, tf-keras model); else
        the graph's placeholders by op name.
      outputs: signature output key -> tensor (SavedModel, tf-keras model); else ``{}``.
      source: the path loaded (or a description of the object).
      kind: ``"frozen"``, ``"saved_model"``, ``"checkpoint"`` or ``"keras"``.
      keras_model: the tf-keras model rebuilt in ``graph`` (``kind == "keras"``).
    """

    graph: Any
    session: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    source: str
    kind: str = ""
    keras_model: Any = field(default=None, repr=False)
    _hidden: frozenset = field(default=frozenset(), repr=False)  # saver filename placeholders

    def tensor(self, name: str, *, role: str = "tensor") -> Any:
        """A tensor of the model by signature key, tensor name or op name.

        ``name`` is looked up as a signature key (``"logits"``; inputs first
        for ``role="input"``, outputs first otherwise), then as a tensor name
        (``"logits:0"``), then as an op name (``"logits"``: its first output).

        Args:
          name: the key or name.
          role: ``"input"``, ``"output"``, ``"conv"`` or ``"tensor"``; only
            decides the lookup order and which candidates an error lists.

        Raises:
          ValueError: no such tensor; the message lists the candidates
            (placeholders for an input, signature outputs and unconsumed
            tensors for an output, 4-D activations for a conv layer) and
            close matches.
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
        try:
            if ":" in name:
                return self.graph.get_tensor_by_name(name)
            op = self.graph.get_operation_by_name(name)
            if op.outputs:
                return op.outputs[0]
            reason = f"op {name!r} ({op.type}) has no outputs"
        except (KeyError, ValueError, TypeError):
            reason = f"no tensor or op {name!r} in the model loaded from {self.source}"
        raise ValueError(self._unknown(name, role, reason))

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
            graph_tensors += self._conv_like()[-limit:]
        described = [_describe(t) for t in graph_tensors[:limit]]
        return keys + described

    def _sinks(self) -> list[Any]:
        """Tensors nothing consumes: where a frozen graph's outputs usually are."""
        found = []
        for op in self.graph.get_operations():
            if (op.type in PLACEHOLDER_OPS or op.type in ("Const", "NoOp") or op.type in SAVER_OPS
                    or op.name.startswith(SCOPE + "/") or op.name in self._hidden):
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
                and not op.name.startswith(SCOPE + "/")
                and op.outputs[0].dtype.is_floating and op.outputs[0].shape.rank == 4]

    def _unknown(self, name: str, role: str, reason: str) -> str:
        listing = self.candidates(role)
        words = {"input": "candidate inputs (placeholders)",
                 "output": "candidate outputs (signature outputs, tensors nothing consumes)",
                 "conv": "candidate conv layers (4-D activations, last ones)",
                 "tensor": "candidates (inputs, outputs)"}[role]
        names = list(dict.fromkeys(list(self.inputs) + list(self.outputs) + [
            op.name for op in self.graph.get_operations()
            if not op.name.startswith(SCOPE + "/")]))
        close = difflib.get_close_matches(name.split(":")[0], names, n=3)
        text = f"{role} tensor {name!r}: {reason}.\n{words}:\n"
        text += "\n".join(f"  {c}" for c in listing) if listing else "  (none found)"
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
    hidden, seen, queue = set(), set(), deque(roots)
    while queue:
        op = queue.popleft()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in PLACEHOLDER_OPS:
            hidden.add(op.name)
        queue.extend(t.op for t in op.inputs)
        queue.extend(op.control_inputs)
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
# Loaders.


def load_frozen_graph(path: Any, *, allow_unsafe_ops: bool = False, allow_ops: Any = (),
                      config: Any = None) -> LoadedModel:
    """Loads a frozen ``GraphDef`` (``.pb``, or text ``.pbtxt``): weights are constants.

    The graph is imported under its own names (no ``import/`` prefix) with
    device placements cleared; nothing is run.

    Args:
      path: the file.
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.

    Returns:
      A :class:`LoadedModel` whose ``inputs`` are the graph's placeholders
      and ``outputs`` is empty (name outputs with :meth:`LoadedModel.tensor`).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a GraphDef, a graph with variables (not frozen; load its
        checkpoint), or one TensorFlow cannot import.
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
    if not allow_unsafe_ops:
        check_graph(graph_def, path, allowed_restore=(), allow_ops=allow_ops)
    for node in graph_def.node:
        node.device = ""
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as err:
            raise _import_error(path, err) from err
    session = _session(graph, config)
    hidden = _saver_hidden(graph, None)
    return LoadedModel(graph, session, _placeholder_inputs(graph, hidden), {}, path,
                       kind="frozen", _hidden=hidden)


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


def load_checkpoint(meta_path: Any, *, allow_unsafe_ops: bool = False, allow_ops: Any = (),
                    checkpoint: Any = None, signature_key: str = "serving_default",
                    config: Any = None) -> LoadedModel:
    """Loads a meta graph (``.meta``) and restores its weights from the checkpoint beside it.

    Imports the MetaGraphDef (device placements cleared) and runs only its
    saver's restore op, fed the checkpoint's path.

    Args:
      meta_path: the ``.meta`` file (``model.ckpt-100.meta``; its checkpoint
        is ``model.ckpt-100``).
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      checkpoint: another checkpoint prefix to restore, or a directory (its
        latest checkpoint).
      signature_key: used when the meta graph carries signatures.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.

    Returns:
      A :class:`LoadedModel`; ``inputs``/``outputs`` come from the signature
      ``signature_key`` if the meta graph has it, else the placeholders / ``{}``.

    Raises:
      FileNotFoundError: no such ``.meta`` or checkpoint.
      ValueError: not a MetaGraphDef, or the checkpoint does not fit the graph.
      UnsafeGraphError: the graph holds unsafe ops (nothing was imported or run).
    """
    import tensorflow as tf

    allow_ops = check_allow_ops(allow_ops)
    meta_path = _existing(meta_path, "meta graph")
    meta = _read_meta_graph(meta_path)
    has_variables = any(n.op in VARIABLE_OPS for n in meta.graph_def.node)
    prefix = _checkpoint_prefix(meta_path, checkpoint) if has_variables else None
    if not allow_unsafe_ops:
        check_graph(meta, meta_path, allow_ops=allow_ops)
    graph = tf.Graph()
    session = _session(graph, config)
    try:
        with graph.as_default():
            _import_and_restore(session, meta, prefix, meta_path, f"the checkpoint {prefix}")
        hidden = _saver_hidden(graph, meta.saver_def if meta.HasField("saver_def") else None)
        if signature_key in meta.signature_def:
            inputs, outputs = _signature_tensors(graph, meta.signature_def[signature_key])
        else:
            inputs, outputs = _placeholder_inputs(graph, hidden), {}
    except BaseException:
        session.close()
        raise
    return LoadedModel(graph, session, inputs, outputs, meta_path, kind="checkpoint",
                       _hidden=hidden)


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
                     config: Any = None) -> LoadedModel:
    """Loads a SavedModel's meta graph in graph mode, as TF1's SavedModel loader does.

    Imports the meta graph chosen by ``tags`` (device placements cleared),
    runs its saver's restore op on ``variables/variables`` and its init op
    (main op / legacy init op / ``__saved_model_init_op``: table and local
    variable initialisers), fed its asset paths -- and nothing else. v1
    SavedModels (``tf.compat.v1.saved_model.Builder``) and TF2 SavedModels
    with signatures load; in a TF2 SavedModel the model runs inside function
    calls, so its inner layers are not graph tensors (Grad-CAM needs one).

    Args:
      export_dir: the SavedModel directory (or its ``saved_model.pb``).
      tags: the meta graph's tag set.
      signature_key: the signature giving ``inputs``/``outputs``; ``None``
        for none (then ``inputs`` are the placeholders).
      allow_unsafe_ops: skip the untrusted-graph check (:func:`find_unsafe_ops`).
      allow_ops: op types to allow besides the guard's ``ALLOWED_OPS``.
      config: an optional ``tf.compat.v1.ConfigProto`` for the session.

    Raises:
      FileNotFoundError: no such directory.
      ValueError: not a SavedModel, no meta graph with these tags, no such
        signature (the message lists them), or variables that do not restore.
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
    if signature_key is not None and signature_key not in meta.signature_def:
        raise ValueError(f"{export_dir}: no signature {signature_key!r}; the meta graph has "
                         f"{signatures} (or pass signature_key=None)")
    _check_nodes(meta.graph_def, export_dir, "SavedModel meta graph")
    if not allow_unsafe_ops:
        check_graph(meta, export_dir, allow_ops=allow_ops)

    graph = tf.Graph()
    session = _session(graph, config)
    try:
        with graph.as_default():
            _import_and_restore(session, meta, os.path.join(export_dir, "variables", "variables"),
                                export_dir, "the variables")
            init_op = _saved_model_init_op(graph, meta)
            if init_op is not None:
                assets = {graph.get_tensor_by_name(a.tensor_info.name):
                          os.path.join(export_dir, "assets", a.filename)
                          for a in meta.asset_file_def}
                session.run(init_op, feed_dict=assets)
        hidden = _saver_hidden(graph, meta.saver_def if meta.HasField("saver_def") else None)
        if signature_key is None:
            inputs, outputs = _placeholder_inputs(graph, hidden), {}
        else:
            inputs, outputs = _signature_tensors(graph, meta.signature_def[signature_key])
    except BaseException:
        session.close()
        raise
    return LoadedModel(graph, session, inputs, outputs, export_dir, kind="saved_model",
                       _hidden=hidden)


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
                     config: Any = None) -> LoadedModel:
    """A tf-keras (Keras 2) model rebuilt in graph mode, in a new graph and session.

    A model object is cloned (``clone_model``: functional and Sequential
    models) and given its weights; a path (``.h5``/``.keras`` file, or a
    tf-keras SavedModel directory) is loaded with ``compile=False``. Needs
    the legacy switch: :func:`saliency_tf1.legacy.enable_legacy_keras` (or
    ``TF_USE_LEGACY_KERAS=1``) before TensorFlow is imported.

    For a path, unless ``allow_unsafe_ops``: Lambda layers holding Python
    bytecode are refused (tf-keras's safe mode), a SavedModel directory's
    graph is checked with :func:`find_unsafe_ops` before loading, and the
    rebuilt graph is checked before it is returned (``allow_ops``: op types
    to allow besides the guard's ``ALLOWED_OPS``).

    Returns:
      A :class:`LoadedModel` with ``inputs``/``outputs`` keyed by the model's
      input and output names (``model.input_names``/``output_names``) and
      ``keras_model`` the rebuilt model. The last layer's activation is part
      of the outputs; for logits, name the layer's pre-activation tensor
      (e.g. ``model.tensor("dense_1/BiasAdd")``) or build the model without it.

    Raises:
      RuntimeError: TensorFlow was imported without the legacy switch.
      ImportError: tf-keras is not installed.
      TypeError: not a tf-keras model (a Keras 3 model, say).
      FileNotFoundError, ValueError: a path that does not exist / does not load.
    """
    from .legacy import enable_legacy_keras

    enable_legacy_keras()
    allow_ops = check_allow_ops(allow_ops)
    import tensorflow as tf
    import tf_keras

    is_path = isinstance(model_or_path, str | os.PathLike)
    if is_path:
        path = _existing(model_or_path, "Keras model")
        if os.path.isdir(path) and not allow_unsafe_ops:
            saved = _read_saved_model(path)
            check_graph(_select_meta_graph(saved, ("serve",), path), path, allow_ops=allow_ops)
        source = path
    elif isinstance(model_or_path, tf_keras.Model):
        source = f"<tf_keras model {model_or_path.name!r}>"
    else:
        raise TypeError(
            "model_or_path: expected a tf_keras.Model or a path to one, got "
            f"{type(model_or_path).__module__}.{type(model_or_path).__name__} (Keras 3 models "
            "cannot run in TF1 graph mode; build the model with tf_keras)")

    # Read an object's weights in its own context (eager, or its own graph).
    weights = None if is_path else model_or_path.get_weights()
    graph = tf.Graph()
    session = _session(graph, config)
    try:
        with graph.as_default(), session.as_default():
            if is_path:
                model = _keras_load(tf_keras, path, custom_objects, allow_unsafe_ops)
            else:
                try:
                    model = tf_keras.models.clone_model(model_or_path)
                except ValueError as err:
                    raise TypeError(
                        f"model_or_path: cannot rebuild {source} in graph mode ({err}); "
                        "functional and Sequential models can be, or pass a saved .h5") from err
                model.set_weights(weights)
        _restore_eager_keras_classes(model)
        if is_path and os.path.isfile(path) and not allow_unsafe_ops:
            check_graph(graph.as_graph_def(), source, allowed_restore=(), allow_ops=allow_ops)
        inputs = dict(zip(model.input_names, model.inputs))
        outputs = dict(zip(model.output_names, model.outputs))
    except BaseException:
        session.close()
        raise
    return LoadedModel(graph, session, inputs, outputs, source, kind="keras",
                       keras_model=model, _hidden=_saver_hidden(graph, None))


def _restore_eager_keras_classes(model: Any) -> None:
    """Undoes tf-keras's class swap so the caller's eager models keep working.

    tf-keras builds a layer in graph mode by swapping the *class's* bases to
    its v1 versions (``version_utils.swap_class``), which breaks every eager
    instance of the same classes (the model we were given, say) until one is
    built eagerly again. When the caller runs eagerly, swap them back; the
    graph tensors built meanwhile are unaffected (the rebuilt ``keras_model``
    is then for its names and layers, not for calling again in graph mode).
    """
    import tensorflow as tf

    if not tf.executing_eagerly():
        return
    try:
        from tf_keras.src.engine import base_layer, base_layer_v1, training, training_v1
        from tf_keras.src.utils.version_utils import swap_class
    except ImportError:  # another tf-keras layout
        return
    classes = {type(layer) for layer in model._flatten_layers(include_self=True)}
    for cls in classes:
        if issubclass(cls, (training.Model, training_v1.Model)):
            swap_class(cls, training.Model, training_v1.Model, True)
        swap_class(cls, base_layer.Layer, base_layer_v1.Layer, True)


def _keras_load(tf_keras: Any, path: str, custom_objects: dict | None, unsafe: bool) -> Any:
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # another tf-keras layout: rely on load_model's safe_mode
        import contextlib

        def SafeModeScope(_safe: bool) -> Any:  # noqa: N802
            return contextlib.nullcontext()

    try:
        with SafeModeScope(not unsafe):
            if path.endswith(".keras"):
                return tf_keras.models.load_model(path, custom_objects=custom_objects,
                                                  compile=False, safe_mode=not unsafe)
            return tf_keras.models.load_model(path, custom_objects=custom_objects,
                                              compile=False)
    except (OSError, ValueError, TypeError, KeyError) as err:
        if "Lambda" in str(err) and not unsafe:
            raise UnsafeGraphError([("a Lambda layer", "Lambda")], path) from err
        raise ValueError(f"{path}: cannot load this Keras model: {err}") from err


def load_model(path: Any, **kwargs: Any) -> LoadedModel:
    """Loads any model this module knows, by the form of ``path``.

    * a directory holding ``saved_model.pb``/``.pbtxt`` (or that file) ->
      :func:`load_saved_model`;
    * a ``.meta`` file -> :func:`load_checkpoint`;
    * a ``.h5``/``.hdf5``/``.keras`` file -> :func:`load_keras_model` (legacy switch);
    * any other file (``.pb``, ``.pbtxt``) -> :func:`load_frozen_graph`.

    ``kwargs`` go to that loader (``allow_unsafe_ops``, ``allow_ops``, ``tags``, ...).

    Raises:
      FileNotFoundError: no such path.
      ValueError: a directory that is not a SavedModel, or a file that is not a model.
    """
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
