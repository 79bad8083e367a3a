"""The model interface the algorithms talk to, and its TF1-session implementation.

Every algorithm in this package asks a backend for named quantities of a batch
of rows (the core API's keys below) and never touches TensorFlow itself:

* ``INPUT_OUTPUT_GRADIENTS``: d y_i / d x_i for each row, the shape of the rows;
* ``OUTPUT_LAYER_VALUES``: y_i for each row, shape ``[rows]``;
* ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``: the conv
  layer's activations and d y_i / d conv_i, shape ``[rows, h, w, c]``.

:class:`TF1Backend` builds the ops for these once, in its constructor, and
answers each request with one ``session.run`` (more only where the model's
shapes force it: a scalar ``y`` or a fixed outer dimension of ``x``).
:class:`Backend` is the interface; ``compat`` implements it over a core-API
``call_model_function``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

INPUT_OUTPUT_GRADIENTS = "INPUT_OUTPUT_GRADIENTS"
OUTPUT_LAYER_VALUES = "OUTPUT_LAYER_VALUES"
CONVOLUTION_LAYER_VALUES = "CONVOLUTION_LAYER_VALUES"
CONVOLUTION_OUTPUT_GRADIENTS = "CONVOLUTION_OUTPUT_GRADIENTS"
CORE_KEYS = (
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
)

# Name scope of every op this package adds to a user's graph.
SCOPE = "saliency_tf1"


def _tf():
    """Imports TensorFlow lazily, so ``import saliency_tf1`` stays cheap."""
    import tensorflow as tf

    return tf


class PerExample:
    """A ``feed_dict`` value given once per input rather than once per call.

    Methods expand one input into many rows (noise samples, path points,
    occluded copies). A plain feed value is fed as it is to every
    ``session.run``; a ``PerExample`` value holds one entry per input of the
    call (``len == 1`` for ``GetMask``/``GetSmoothedMask``, ``len == N`` for
    ``GetMaskBatch`` of N inputs) and each row is fed the entry of the input it
    derives from. :class:`saliency_tf1.ClassTarget` uses it to explain a
    different class for each input.
    """

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values)
        if self.values.ndim == 0:
            raise ValueError(
                "PerExample values: expected an array with one entry per input "
                f"(at least 1-D), got a scalar {self.values!r}"
            )

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"PerExample({self.values!r})"


class Backend(abc.ABC):
    """What an algorithm may ask of a model.

    Attributes:
      input_shape: shape of one input (no batch dimension); ``None`` for
        dimensions the model leaves open.
      input_dtype: numpy dtype rows are cast to before they reach the model.
      keys: the quantities :meth:`evaluate` can return.
    """

    input_shape: tuple[int | None, ...] | None = None
    input_dtype: np.dtype = np.dtype(np.float32)
    keys: frozenset[str] = frozenset()

    def prepare_feed(self, feed_dict: Any, n_inputs: int) -> Any:
        """Validates a caller's extra arguments once per public call.

        Returns an opaque value that :meth:`evaluate` accepts.
        """
        return feed_dict

    @abc.abstractmethod
    def evaluate(
        self,
        rows: np.ndarray,
        keys: Sequence[str],
        feed: Any = None,
        sources: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Returns ``{key: array}`` for a batch of rows.

        Args:
          rows: ``[n, *input_shape]`` model inputs.
          keys: which quantities to return (see the module docstring).
          feed: what :meth:`prepare_feed` returned.
          sources: for each row, the index of the input of the public call it
            derives from (selects :class:`PerExample` entries); ``None`` means
            all rows derive from input 0.
        """


# ---------------------------------------------------------------------------
# TensorFlow graph helpers


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
    tf = _tf()
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
    tf = _tf()
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


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {shape}" if shape is not None else "")


def check_tensor(name: str, tensor: Any, graph: Any) -> None:
    """Raises TypeError/ValueError unless ``tensor`` is a tf.Tensor of ``graph``."""
    tf = _tf()
    if not isinstance(tensor, tf.Tensor) or not hasattr(tensor, "graph"):
        raise TypeError(f"{name}: expected a graph tf.Tensor, got {_describe(tensor)}")
    if tensor.graph is not graph:
        raise ValueError(
            f"{name}: tensor {tensor.name!r} belongs to another tf.Graph than the `graph` argument"
        )


class TF1Backend(Backend):
    """The backend over a TF1 graph and session.

    Args:
      graph: the ``tf.Graph`` holding the model.
      session: a ``tf.compat.v1.Session`` (or anything with its ``run`` and
        ``graph``) on ``graph``.
      y: the explained scalar per example: shape ``[None]`` (or ``[n]`` with
        ``x`` of outer dimension ``n``), or ``()`` (then one example per run).
      x: the input placeholder; its outer dimension is the batch.
      conv_layer: optional ``[batch, h, w, c]`` tensor between ``x`` and ``y``
        (Grad-CAM).
      input_gradients: optional tensor to serve as ``INPUT_OUTPUT_GRADIENTS``
        instead of ``tf.gradients(y, x)`` (guided backprop passes its own), or
        a zero-argument callable returning it, called only once the arguments
        above have passed their checks (so a failed check adds no ops).
      extra_fetches: more ``{key: tensor}`` pairs that :meth:`evaluate` may
        return, or a callable that takes the ``{key: tensor}`` fetches built so
        far (the core keys) and returns them, called after the checks.
    """

    def __init__(
        self,
        graph: Any,
        session: Any,
        y: Any,
        x: Any,
        conv_layer: Any = None,
        *,
        input_gradients: Any = None,
        extra_fetches: Mapping[str, Any] | Callable[[dict], Mapping[str, Any]] | None = None,
    ) -> None:
        tf = _tf()
        if not isinstance(graph, tf.Graph):
            raise TypeError(f"graph: expected a tf.Graph, got {_describe(graph)}")
        if not (hasattr(session, "run") and hasattr(session, "graph")):
            raise TypeError(f"session: expected a tf.compat.v1.Session, got {_describe(session)}")
        if session.graph is not graph:
            raise ValueError("session: the session runs another tf.Graph than the `graph` argument")
        check_tensor("x", x, graph)
        check_tensor("y", y, graph)
        if not x.dtype.is_floating:
            raise TypeError(f"x: expected a floating-point input tensor, got dtype {x.dtype.name}")
        if x.shape.rank is None or x.shape.rank < 1:
            raise ValueError(
                f"x: expected a tensor whose outer dimension is the batch (rank >= 1), "
                f"got shape {x.shape}"
            )
        if y.shape.rank is None or y.shape.rank > 1:
            raise ValueError(
                f"y: expected shape [None] (one value per example) or () , got {y.shape}; "
                "select one output per example, e.g. logits[:, k] or saliency_tf1.ClassTarget"
            )
        if not depends_on(y, x):
            raise ValueError(f"y: tensor {y.name!r} does not depend on x ({x.name!r})")

        self.graph, self.session, self.y, self.x = graph, session, y, x
        self.input_shape = tuple(x.shape.as_list()[1:])
        self.input_dtype = np.dtype(x.dtype.as_numpy_dtype)

        # Rows per session.run the model's shapes allow.
        x_outer = x.shape.as_list()[0]
        y_outer = y.shape.as_list()[0] if y.shape.rank == 1 else None
        if y.shape.rank == 0:
            self.rows_per_run, self.pad_to = 1, None
        elif x_outer is not None:
            self.rows_per_run, self.pad_to = x_outer, x_outer
        elif y_outer is not None:
            if y_outer != 1:
                raise ValueError(
                    f"y: shape {y.shape} has a fixed outer dimension {y_outer} but x's outer "
                    "dimension is open; expected y of shape [None] or ()"
                )
            self.rows_per_run, self.pad_to = 1, None
        else:
            self.rows_per_run, self.pad_to = None, None
        if x_outer is not None and y_outer is not None and y_outer != x_outer:
            raise ValueError(
                f"y: expected outer dimension {x_outer} (x's), got shape {y.shape}"
            )

        fetches: dict[str, Any] = {OUTPUT_LAYER_VALUES: y}
        # conv_layer is checked first: a failed check must add no ops.
        if conv_layer is not None:
            check_tensor("conv_layer", conv_layer, graph)
            if conv_layer.shape.rank != 4:
                raise ValueError(
                    f"conv_layer: expected a 4-D [batch, h, w, c] tensor, got "
                    f"{conv_layer.name!r} of shape {conv_layer.shape}"
                )
            if not depends_on(conv_layer, x) or not depends_on(y, conv_layer):
                raise ValueError(
                    f"conv_layer: tensor {conv_layer.name!r} is not between x ({x.name!r}) "
                    f"and y ({y.name!r})"
                )
        # One tf.gradients call for every gradient still to build: the
        # backward pass to conv_layer is a prefix of the one to x.
        wanted = ([conv_layer] if conv_layer is not None else []) + (
            [x] if input_gradients is None else [])
        built = dict(zip([t.name for t in wanted], cached_gradients(graph, y, wanted)))
        if conv_layer is not None:
            conv_grads = built[conv_layer.name]
            if conv_grads is None:
                raise ValueError(
                    f"conv_layer: y is not differentiable with respect to {conv_layer.name!r}"
                )
            fetches[CONVOLUTION_LAYER_VALUES] = conv_layer
            fetches[CONVOLUTION_OUTPUT_GRADIENTS] = conv_grads
        if callable(input_gradients):
            input_gradients = input_gradients()
        elif input_gradients is None:
            input_gradients = built[x.name]
        if input_gradients is None:
            raise ValueError(
                f"y: tensor {y.name!r} is not differentiable with respect to x ({x.name!r}); "
                "tf.gradients returned None"
            )
        fetches[INPUT_OUTPUT_GRADIENTS] = input_gradients
        self.conv_layer = conv_layer
        if callable(extra_fetches):
            extra_fetches = extra_fetches(dict(fetches))
        for key, tensor in (extra_fetches or {}).items():
            check_tensor(f"extra_fetches[{key!r}]", tensor, graph)
            fetches[key] = tensor
        self._fetches = fetches
        self.keys = frozenset(fetches)
        self._required = required_placeholders(fetches.values(), [x])

    # -- feeds ---------------------------------------------------------------

    def _resolve_key(self, key: Any) -> Any:
        tf = _tf()
        if isinstance(key, str):
            name = key if ":" in key else f"{key}:0"  # an op name means its first output
            try:
                element = self.graph.as_graph_element(
                    name, allow_tensor=True, allow_operation=False
                )
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(
                    f"feed_dict: key {key!r} names no tensor of the graph ({err})"
                ) from None
            return element
        if isinstance(key, tf.Tensor) and hasattr(key, "graph"):
            if key.graph is not self.graph:
                raise ValueError(
                    f"feed_dict: key tensor {key.name!r} belongs to another tf.Graph"
                )
            return key
        raise TypeError(
            f"feed_dict: expected tensor or tensor-name keys, got {_describe(key)}"
        )

    def prepare_feed(self, feed_dict: Any, n_inputs: int) -> tuple[dict, dict]:
        """Checks ``feed_dict`` and splits it into constant and per-example feeds.

        Never modifies the caller's dict.
        """
        if feed_dict is None:
            feed_dict = {}
        if not isinstance(feed_dict, Mapping):
            raise TypeError(f"feed_dict: expected a dict or None, got {_describe(feed_dict)}")
        constant: dict[Any, Any] = {}
        per_example: dict[Any, np.ndarray] = {}
        with self.graph.as_default():
            for key, value in feed_dict.items():
                tensor = self._resolve_key(key)
                if tensor.name == self.x.name:
                    raise ValueError(
                        f"feed_dict: must not feed x ({self.x.name!r}); pass the input as x_value"
                    )
                if isinstance(value, PerExample):
                    if len(value) != n_inputs:
                        raise ValueError(
                            f"feed_dict[{tensor.name!r}]: PerExample has {len(value)} entries, "
                            f"expected one per input ({n_inputs})"
                        )
                    entry_shape = tuple(value.values.shape[1:])
                    if not tensor.shape.is_compatible_with((None, *entry_shape)):
                        raise ValueError(
                            f"feed_dict[{tensor.name!r}]: PerExample entries of shape "
                            f"{entry_shape} do not fit the tensor's shape {tensor.shape}"
                        )
                    per_example[tensor] = value.values
                    continue
                shape = np.shape(value)
                if not tensor.shape.is_compatible_with(shape):
                    raise ValueError(
                        f"feed_dict[{tensor.name!r}]: expected a value of shape {tensor.shape}, "
                        f"got shape {shape}"
                    )
                constant[tensor] = value
            fed = {t.name for t in constant} | {t.name for t in per_example}
            missing = [t.name for t in self._required if t.name not in fed]
        if missing:
            raise ValueError(
                f"feed_dict: missing a value for placeholder(s) {missing} that the explained "
                "tensors depend on"
            )
        return constant, per_example

    # -- evaluation ------------------------------------------------------------

    def evaluate(
        self,
        rows: np.ndarray,
        keys: Sequence[str],
        feed: Any = None,
        sources: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        if feed is None:
            feed = self.prepare_feed(None, 1)
        unknown = [k for k in keys if k not in self._fetches]
        if unknown:
            raise ValueError(
                f"keys: {unknown} not available from this backend; available: {sorted(self.keys)}"
                + ("" if self.conv_layer is not None else " (pass conv_layer for the conv keys)")
            )
        rows = np.asarray(rows, dtype=self.input_dtype)
        n = len(rows)
        if sources is None:
            sources = np.zeros(n, dtype=np.int64)
        step = self.rows_per_run or max(n, 1)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, step):
            chunk = rows[start : start + step]
            chunk_sources = sources[start : start + step]
            real = len(chunk)
            if self.pad_to is not None and real < self.pad_to:
                pad = self.pad_to - real
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                chunk_sources = np.concatenate([chunk_sources, np.repeat(chunk_sources[-1:], pad)])
            out = self._run(chunk, keys, feed, chunk_sources)
            parts.append({k: v[:real] for k, v in out.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    def _run(self, chunk, keys, feed, sources) -> dict[str, np.ndarray]:
        constant, per_example = feed
        with self.graph.as_default():
            run_feed = dict(constant)
            for tensor, values in per_example.items():
                run_feed[tensor] = values[sources]
            run_feed[self.x] = chunk
            values = self.session.run([self._fetches[k] for k in keys], feed_dict=run_feed)
        out = {}
        for key, value in zip(keys, values):
            value = np.asarray(value)
            if key == OUTPUT_LAYER_VALUES:
                value = value.reshape(len(chunk))  # () for a scalar y, one row per run
            out[key] = value
        return out
