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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .graph import cached_gradients, cached_ops, check_tensor, depends_on, tf_module
from .session import Feed, InputLayout, SessionRunner, check_graph_and_session

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


class Backend(abc.ABC):
    """What an algorithm may ask of a model.

    Attributes:
      input_shape: shape of one input (no batch dimension); ``None`` for
        dimensions the model leaves open.
      input_dtype: numpy dtype rows are cast to before they reach the model.
      keys: the quantities :meth:`evaluate` can return.
    """

    input_shape: tuple[int | None, ...] | None = None
    #: How several input tensors pack into one row (TF1 models); ``None``: one input.
    layout: InputLayout | None = None
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


def differentiable_path(y: Any, x: Any) -> bool:
    """True if ``tf.gradients(y, x)`` can be non-``None``: a path from ``x`` to ``y``
    through no integer, bool or string tensor and no ``StopGradient``/``PreventGradient``.

    A graph walk that adds no ops, so a method refuses such a ``y`` before it
    builds anything.
    """
    seen = set()
    stack = [y]
    while stack:
        tensor = stack.pop()
        if tensor.name == x.name:
            return True
        op = tensor.op
        if op.name in seen or op.type in ("StopGradient", "PreventGradient"):
            continue
        seen.add(op.name)
        for inp in op.inputs:
            if not (inp.dtype.is_integer or inp.dtype.is_bool or inp.dtype.name == "string"):
                stack.append(inp)
    return False


def _input_names(layout: InputLayout) -> list[str]:
    return [f"x[{i}]" for i in range(len(layout.tensors))] if layout.multi else ["x"]


def _packed_gradients(graph: Any, y: Any, layout: InputLayout, grads: list[Any]) -> Any:
    """The gradients for several inputs as one ``[batch, total]`` tensor (built once)."""
    tf = tf_module()

    def build() -> Any:
        dtype = tf.as_dtype(layout.dtype)
        return tf.concat([tf.reshape(tf.cast(g, dtype), [-1, p.size])
                          for g, p in zip(grads, layout.parts)], axis=1)

    return cached_ops(graph, ("packed_gradients", y.name, *layout.names), build)


def check_model(graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None, *,
                conv_rank: int | tuple[int, ...] | None = 4,
                differentiable: bool = True) -> InputLayout:
    """Checks a model's tensors before any op is built; returns ``x``'s input layout.

    ``y`` must be a float tensor computed from every input (and, when
    ``differentiable``, with a differentiable path from each); ``conv_layer``
    a tensor of rank ``conv_rank`` (one of them for a tuple, any for ``None``) between ``x`` and
    ``y``. Raises TypeError/ValueError naming the argument.
    """
    check_graph_and_session(graph, session)
    layout = InputLayout(x, graph)
    check_tensor("y", y, graph)
    if not y.dtype.is_floating:
        raise TypeError(f"y: expected a floating-point tensor to explain, got dtype {y.dtype.name}")
    for name, xi in zip(_input_names(layout), layout.tensors):
        if not depends_on(y, xi):
            raise ValueError(f"y: tensor {y.name!r} does not depend on {name} ({xi.name!r})")
        if differentiable and not differentiable_path(y, xi):
            raise ValueError(
                f"y: tensor {y.name!r} is not differentiable with respect to {name} "
                f"({xi.name!r}): every path from it to y passes a stop_gradient or a "
                "non-float tensor"
            )
    if conv_layer is not None:
        check_tensor("conv_layer", conv_layer, graph)
        ranks = (conv_rank,) if isinstance(conv_rank, int) else conv_rank
        if ranks is not None and conv_layer.shape.rank not in ranks:
            expected = ("a 4-D [batch, h, w, c]" if ranks == (4,) else
                        "a [batch, h, w, c] (or [batch, t, c])" if ranks == (3, 4) else
                        f"a tensor of rank {' or '.join(map(str, ranks))}")
            raise ValueError(
                f"conv_layer: expected {expected} tensor, got {conv_layer.name!r} of shape "
                f"{conv_layer.shape}"
            )
        if not any(depends_on(conv_layer, xi) for xi in layout.tensors) or not depends_on(
                y, conv_layer):
            raise ValueError(
                f"conv_layer: tensor {conv_layer.name!r} is not between x "
                f"({', '.join(layout.names)}) and y ({y.name!r})"
            )
        if differentiable and not differentiable_path(y, conv_layer):
            raise ValueError(
                f"conv_layer: y is not differentiable with respect to {conv_layer.name!r}"
            )
    return layout


class _SessionBackend(Backend):
    """What the TF1 backends share: a :class:`SessionRunner` over named fetches."""

    runner: SessionRunner
    conv_layer: Any = None

    @property
    def fetches(self) -> dict[str, Any]:
        """``{key: tensor}`` this backend can evaluate."""
        return self.runner.fetches

    def prepare_feed(self, feed_dict: Any, n_inputs: int, **options: Any) -> Feed:
        """Checks ``feed_dict`` (see :meth:`SessionRunner.prepare_feed`); never modifies it."""
        return self.runner.prepare_feed(feed_dict, n_inputs, **options)

    def evaluate(
        self,
        rows: np.ndarray,
        keys: Sequence[str],
        feed: Any = None,
        sources: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        unknown = [k for k in keys if k not in self.keys]
        if unknown:
            raise ValueError(
                f"keys: {unknown} not available from this backend; available: {sorted(self.keys)}"
                + ("" if self.conv_layer is not None else " (pass conv_layer for the conv keys)")
            )
        return self.runner.run(rows, keys, feed, sources)

    def _bind(self, graph: Any, session: Any, y: Any, x: Any, layout: InputLayout,
              conv_layer: Any, fetches: dict[str, Any]) -> None:
        self.graph, self.session, self.y, self.x = graph, session, y, x
        self.conv_layer = conv_layer
        self.layout = layout
        self.input_shape = layout.shape
        self.input_dtype = layout.dtype
        self.runner = SessionRunner(graph, session, layout, fetches, y_key=OUTPUT_LAYER_VALUES)
        self.keys = frozenset(fetches)


class TF1Backend(_SessionBackend):
    """The backend over a TF1 graph and session.

    Every argument is checked before any op is built, so a failed constructor
    leaves the graph as it was.

    Args:
      graph: the ``tf.Graph`` holding the model.
      session: a ``tf.compat.v1.Session`` on ``graph`` (or a wrapper with its
        ``run``, e.g. ``mock.MagicMock(wraps=session)``).
      y: the explained scalar per example: shape ``[None]`` (or ``[n]`` with
        ``x`` of outer dimension ``n``), or ``()`` (then one example per run).
      x: the input tensor; its outer dimension is the batch. Or a list/tuple of
        input tensors, explained jointly: rows are then the inputs' values
        packed into one vector (see :class:`~saliency_tf1.engine.session.InputLayout`).
      conv_layer: optional ``[batch, h, w, c]`` tensor between ``x`` and ``y``
        (Grad-CAM).
      conv_rank: the rank ``conv_layer`` must have; ``None`` accepts any rank
        (the core API's ``create_tf1_call_model_function`` does, as PAIR's).
      input_gradients: optional tensor to serve as ``INPUT_OUTPUT_GRADIENTS``
        instead of ``tf.gradients(y, x)``, or a zero-argument callable
        returning it (guided backprop builds its own), called after the checks.
      extra_fetches: optional callable that takes the ``{key: tensor}``
        fetches built so far (the core keys) and returns more ``{key: tensor}``
        pairs that :meth:`evaluate` may return; called after the checks. A core
        key it returns replaces the one built (the graph-copy methods serve
        ``OUTPUT_LAYER_VALUES`` from their copy: one forward pass per run).
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
        conv_rank: int | None = 4,
        extra_fetches: Callable[[dict], Mapping[str, Any]] | None = None,
    ) -> None:
        layout = check_model(graph, session, y, x, conv_layer, conv_rank=conv_rank,
                             differentiable=True)
        # Raises for a y whose shape does not give one value per example.
        SessionRunner(graph, session, layout, {OUTPUT_LAYER_VALUES: y},
                      y_key=OUTPUT_LAYER_VALUES)

        # Everything is checked: build. One tf.gradients call for every
        # gradient still to build (the backward pass to conv_layer is a prefix
        # of the one to x).
        fetches: dict[str, Any] = {OUTPUT_LAYER_VALUES: y}
        wanted = ([conv_layer] if conv_layer is not None else []) + (
            layout.tensors if input_gradients is None else [])
        built = dict(zip([t.name for t in wanted], cached_gradients(graph, y, wanted)))
        if conv_layer is not None:
            fetches[CONVOLUTION_LAYER_VALUES] = conv_layer
            fetches[CONVOLUTION_OUTPUT_GRADIENTS] = built[conv_layer.name]
        if input_gradients is None:
            grads = [built[t.name] for t in layout.tensors]
            input_gradients = grads[0] if not layout.multi else _packed_gradients(
                graph, y, layout, grads)
        elif callable(input_gradients):
            input_gradients = input_gradients()
        else:
            check_tensor("input_gradients", input_gradients, graph)
        fetches[INPUT_OUTPUT_GRADIENTS] = input_gradients
        if extra_fetches is not None:
            for key, tensor in extra_fetches(dict(fetches)).items():
                check_tensor(f"extra_fetches[{key!r}]", tensor, graph)
                fetches[key] = tensor
        for key, tensor in fetches.items():
            if tensor is None:  # the walk above should have caught it
                raise ValueError(f"y: no gradient for {key} (tf.gradients returned None)")

        self._bind(graph, session, y, x, layout, conv_layer, fetches)


class ForwardBackend(_SessionBackend):
    """The backend of the forward-only methods over a TF1 graph: values, no gradients.

    Fetches ``y`` (``OUTPUT_LAYER_VALUES``) and, if given, ``conv_layer``
    (``CONVOLUTION_LAYER_VALUES``, ``[batch, h, w, c]`` or ``[batch, t, c]``)
    for batches of rows fed to ``x``. It adds no op to the graph and, unlike
    :class:`TF1Backend`, does not need ``y`` to be differentiable with respect
    to ``x`` (a model with an argmax or a ``stop_gradient`` can be explained by
    the perturbation methods).
    """

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None) -> None:
        layout = check_model(graph, session, y, x, conv_layer, conv_rank=(3, 4),
                             differentiable=False)
        fetches: dict[str, Any] = {OUTPUT_LAYER_VALUES: y}
        if conv_layer is not None:
            fetches[CONVOLUTION_LAYER_VALUES] = conv_layer
        self._bind(graph, session, y, x, layout, conv_layer, fetches)
