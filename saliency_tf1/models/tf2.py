"""Eager models (tf-keras, Keras 3, ``tf.Module``) as TF1 graphs: traced, weights as variables.

A model object -- or a ``.h5``/``.keras`` file, loaded eagerly first -- is
turned into a TF1 graph the way ``tf.saved_model.save`` sees it: its call is
traced once by ``tf.function`` (``training=False``), and the traced graph
(``ConcreteFunction.graph``: the model's own ops, under the layers' name
scopes, with its ``If``/``While`` kept functional) is imported into a new
``tf.Graph``. Each captured variable becomes a variable of that graph
(``VarHandleOp``) set to the eager variable's current value; nested
``tf.function`` calls are inlined (:mod:`saliency_tf1.models.inline`).

Why tracing, and not rebuilding the model with tf-keras in graph mode
(``clone_model``): it works for subclassed models, it works for Keras 3
(which has no graph mode), and it never touches the caller's model -- tf-keras
builds a layer in graph mode by swapping its *class's* bases to their v1
versions, which breaks every eager instance of the class (the caller's model)
until it is swapped back. Tracing only calls the model, as saving it would.
A model whose call cannot be traced (Python that needs eager values, say)
raises ``TypeError`` saying so; the caller's model is left as it was.

For a functional model the outputs of its layers are traced as extra outputs
(the same ops), so every layer's output is known by name
(:attr:`LoadedModel.layers`).
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TracedModel:
    """What tracing a model gives: a GraphDef and how to make it a loaded model."""

    graph_def: Any
    inputs: dict[str, str]  #: input name -> tensor name in graph_def
    outputs: dict[str, str]  #: output name -> tensor name
    layers: dict[str, str]  #: layer name -> output tensor name (functional models)
    variables: dict[str, Any]  #: VarHandleOp node name -> numpy value
    kind: str
    source: str
    notes: list[str] = field(default_factory=list)


def keras_flavour(obj: Any) -> str | None:
    """``"tf_keras"``, ``"keras3"`` or ``None`` for a model object, without importing either."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if cls.__name__ in ("Model", "Layer", "Functional", "Sequential"):
            if module.startswith("tf_keras") or module.startswith("keras.src.engine") \
                    or module.startswith("tensorflow.python.keras"):
                return "tf_keras"
            if module.startswith("keras"):
                return "keras3"
    return None


def keras2() -> Any:
    """The Keras 2 package: tf-keras, or (TensorFlow < 2.16) ``keras`` 2.x itself."""
    try:
        import tf_keras

        return tf_keras
    except ImportError:
        import keras

        if str(keras.__version__).startswith("2."):
            return keras
        raise ImportError("a Keras 2 model needs tf-keras: pip install "
                          '"saliency-tf1[legacy]"') from None


def _specs_from_model(model: Any, flavour: str | None) -> list[Any] | None:
    """Input ``TensorSpec`` s a model declares (functional inputs, a saved call spec)."""
    import tensorflow as tf

    inputs = getattr(model, "inputs", None) if flavour else None
    if inputs:
        specs = []
        for i, t in enumerate(inputs):
            shape = [None if d is None else int(d) for d in t.shape]
            name = getattr(t, "name", None) or f"input_{i}"
            name = name.split(":")[0]
            specs.append(tf.TensorSpec(shape, tf.as_dtype(getattr(t, "dtype", "float32")),
                                       name=name))
        return specs
    save_spec = getattr(model, "save_spec", None)
    if flavour == "tf_keras" and callable(save_spec):
        try:
            spec = save_spec()
        except Exception:  # noqa: BLE001 - an unbuilt model has none
            spec = None
        if spec:
            args, kwargs = spec
            flat = tf.nest.flatten(args)
            if not kwargs and flat and all(isinstance(s, tf.TensorSpec) for s in flat):
                return flat
    call = inspect.getattr_static(model, "__call__", None)
    signature = getattr(call, "input_signature", None)
    if signature:
        return list(tf.nest.flatten(signature))
    shapes = getattr(model, "_build_shapes_dict", None)
    if flavour == "keras3" and isinstance(shapes, dict) and len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int)
                                                    for d in shape):
            return [tf.TensorSpec(list(shape), tf.float32, name="input")]
    return None


def _check_signature(input_signature: Any) -> list[Any]:
    import tensorflow as tf

    specs = list(input_signature) if isinstance(input_signature, (list, tuple)) \
        else [input_signature]
    if not specs or not all(isinstance(s, tf.TensorSpec) for s in specs):
        raise TypeError("input_signature: expected a tf.TensorSpec or a list of them, got "
                        f"{input_signature!r}")
    return specs


def _layer_outputs(model: Any, flavour: str | None) -> tuple[Any, list[str]]:
    """A model computing ``model``'s outputs and then every layer's (functional models),
    and the layer names; ``(model, [])`` when the model has no such graph of layers."""
    if flavour is None or not getattr(model, "inputs", None) or \
            not getattr(model, "outputs", None):
        return model, []
    if flavour == "keras3":
        import keras as keras_module
    else:
        keras_module = keras2()
    names, tensors = [], []
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            out = layer.output
        except (AttributeError, ValueError, RuntimeError):
            continue  # a layer called more than once, or never
        if hasattr(out, "shape") and not isinstance(out, (list, tuple, dict)):
            names.append(layer.name)
            tensors.append(out)
    if not names:
        return model, []
    try:
        outputs = list(model.outputs)
        return keras_module.Model(model.inputs, outputs + tensors), names
    except Exception:  # noqa: BLE001 - fall back to the model's own call
        return model, []


def _output_names(model: Any, count: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count or len(set(names)) != count:
        names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    return names


def trace_model(model: Any, *, input_signature: Any = None, source: str | None = None,
                kind: str | None = None) -> TracedModel:
    """Traces ``model`` (see the module docstring) into a :class:`TracedModel`.

    Raises:
      TypeError: not a callable model, no input signature known (pass
        ``input_signature``), a call that cannot be traced in graph mode, or a
        capture that is neither a variable nor a constant.
    """
    import numpy as np
    import tensorflow as tf

    flavour = keras_flavour(model)
    source = source or f"<{type(model).__module__}.{type(model).__name__} object>"
    kind = kind or ("keras" if flavour else "module")
    if not callable(model):
        raise TypeError(f"model: expected a Keras model or a callable tf.Module, got "
                        f"{type(model).__module__}.{type(model).__name__}")
    if input_signature is not None:
        specs = _check_signature(input_signature)
    else:
        specs = _specs_from_model(model, flavour)
        if specs is None:
            raise TypeError(
                f"model: cannot tell the input shape of {source} (a subclassed model that "
                "was never called, or a module without an input signature); call it once "
                "on an example batch, or pass input_signature=tf.TensorSpec([None, ...], "
                "tf.float32)")
    runner, layer_names = _layer_outputs(model, flavour) if input_signature is None \
        else (model, [])

    def call(*xs: Any) -> Any:
        args = xs[0] if len(xs) == 1 else list(xs)
        if flavour:
            return runner(args, training=False)
        return runner(*xs)

    def trace(fn: Any) -> Any:
        # Without autograph first: it writes generated modules to the temp dir (kept
        # until the interpreter exits); only a call with Python control flow on tensors
        # needs it, as saving the model would.
        specs_ = [tf.TensorSpec(s.shape, s.dtype, name=f"input_{i}")
                  for i, s in enumerate(specs)]
        with tf.init_scope():
            try:
                return tf.function(fn, autograph=False).get_concrete_function(*specs_)
            except Exception:  # noqa: BLE001 - retried with autograph, which may fix it
                return tf.function(fn, autograph=True).get_concrete_function(*specs_)

    try:
        concrete = trace(call)
    except Exception as err:  # noqa: BLE001 - any failure of the user's call
        if runner is model:
            raise _untraceable(source, err) from err
        runner, layer_names = model, []
        try:
            concrete = trace(call)
        except Exception as err2:  # noqa: BLE001
            raise _untraceable(source, err2) from err2
    outputs = list(tf.nest.flatten(concrete.structured_outputs))
    n_outputs = len(outputs) - len(layer_names)
    if n_outputs < 1:
        raise TypeError(f"model: {source} returns no tensor")
    graph = concrete.graph
    graph_def = graph.as_graph_def()
    nodes = {n.name: n for n in graph_def.node}
    variables = {id(v.handle): v for v in concrete.variables}
    renames: dict[str, str] = {}
    values: dict[str, Any] = {}
    taken = set(nodes)
    for external, internal in graph.captures:
        node = nodes[internal.op.name]
        if internal.dtype == tf.resource:
            var = variables.get(id(external))
            if var is None:
                raise TypeError(f"model: {source} captures a resource that is not a variable "
                                f"({internal.op.name}: a lookup table or another stateful "
                                "object), which cannot be copied into a graph")
            base = re.sub(r"[^A-Za-z0-9_./-]", "_", var.name.split(":")[0]) or "variable"
            name = f"variables/{base}"
            k = 0
            while name in taken:
                k += 1
                name = f"variables/{base}_{k}"
            taken.add(name)
            renames[node.name] = name
            shape = var.shape
            node.op = "VarHandleOp"
            node.ClearField("attr")
            node.attr["dtype"].type = var.dtype.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(shape.as_proto())
            node.attr["shared_name"].s = name.encode()
            node.attr["container"].s = b""
            with tf.init_scope():
                values[name] = np.asarray(var.numpy())
        else:
            try:
                with tf.init_scope():
                    value = np.asarray(external.numpy())
            except Exception as err:  # noqa: BLE001
                raise TypeError(f"model: {source} captures a tensor that is not a constant "
                                f"({internal.op.name})") from err
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].type = internal.dtype.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    input_names = []
    for i, (placeholder, spec) in enumerate(zip(concrete.inputs[:len(specs)], specs)):
        want = (spec.name or f"input_{i}").split(":")[0]
        want = re.sub(r"[^A-Za-z0-9_./-]", "_", want) or f"input_{i}"
        name = want
        k = 0
        while name in taken and name != placeholder.op.name:
            k += 1
            name = f"{want}_{k}"
        taken.add(name)
        if name != placeholder.op.name:
            renames[placeholder.op.name] = name
        input_names.append(name)
    for node in graph_def.node:
        if node.name in renames:
            node.name = renames[node.name]
        for i, ref in enumerate(node.input):
            control = ref.startswith("^")
            base, sep, index = ref.lstrip("^").partition(":")
            if base in renames:
                node.input[i] = ("^" if control else "") + renames[base] + sep + index
    for node in graph_def.node:
        node.device = ""
        node.attr.pop("_class", None)

    def renamed(t: Any) -> str:
        op = renames.get(t.op.name, t.op.name)
        return f"{op}:{t.value_index}"

    out_names = _output_names(model, n_outputs)
    keys = [s.name.split(":")[0] if s.name else name for s, name in zip(specs, input_names)]
    if len(set(keys)) != len(keys):
        keys = input_names
    traced = TracedModel(
        graph_def=graph_def,
        inputs={k: f"{n}:0" for k, n in zip(keys, input_names)},
        outputs={k: renamed(t) for k, t in zip(out_names, outputs[:n_outputs])},
        layers={k: renamed(_through_identity(t))
                for k, t in zip(layer_names, outputs[n_outputs:])},
        variables=values, kind=kind, source=source)
    return traced


def _through_identity(t: Any) -> Any:
    """The tensor a traced function's output ``Identity`` passes on (the layer's own)."""
    while t.op.type == "Identity" and t.op.inputs:
        t = t.op.inputs[0]
    return t


def _untraceable(source: str, err: Exception) -> TypeError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return TypeError(
        f"model: {source} cannot be traced in graph mode (tf.function), so it cannot be "
        f"explained as a TF1 graph: {type(err).__name__}: {first}. Its call must work on "
        "symbolic tensors (no .numpy(), no Python branching on tensor values); the model "
        "itself was not changed")


def load_model_file(path: str, custom_objects: dict | None, safe_mode: bool) -> tuple[Any, str]:
    """An eager model from a ``.h5``/``.keras`` file, with the Keras that wrote it.

    Returns ``(model, flavour)``. Keras 3 reads ``.keras`` zips it wrote
    (``keras_version`` 3.x in ``metadata.json``); tf-keras reads the rest.
    Both run in safe mode unless ``safe_mode=False`` (a ``Lambda`` layer's
    Python bytecode is refused).
    """
    flavour = _file_flavour(path)
    if flavour == "keras3":
        import keras

        return keras.models.load_model(path, custom_objects=custom_objects, compile=False,
                                       safe_mode=safe_mode), flavour
    tf_keras = keras2()
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # another tf-keras layout, or Keras 2 itself
        import contextlib

        def SafeModeScope(_safe: bool) -> Any:  # noqa: N802
            return contextlib.nullcontext()

    with SafeModeScope(safe_mode):
        if path.endswith(".keras"):
            return tf_keras.models.load_model(path, custom_objects=custom_objects,
                                              compile=False, safe_mode=safe_mode), flavour
        return tf_keras.models.load_model(path, custom_objects=custom_objects,
                                          compile=False), flavour


def _file_flavour(path: str) -> str:
    import json
    import zipfile

    if path.endswith(".keras") and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "metadata.json" in archive.namelist():
                try:
                    meta = json.loads(archive.read("metadata.json"))
                except ValueError:
                    meta = {}
                version = str(meta.get("keras_version", ""))
                if version.startswith("3"):
                    return "keras3"
    elif os.path.isfile(path) and path.endswith((".h5", ".hdf5")):
        try:
            import h5py
        except ImportError:
            return "tf_keras"
        try:
            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version", b"")
        except OSError:
            return "tf_keras"
        version = version.decode() if isinstance(version, bytes) else str(version)
        if version.startswith("3"):
            return "keras3"
    return "tf_keras"

