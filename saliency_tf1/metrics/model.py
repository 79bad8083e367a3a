"""Model functions for the metrics: a batch of inputs in, scores out.

Every metric of :mod:`saliency_tf1.metrics` calls the model through a plain
callable ``model(rows) -> outputs``: ``rows`` is a batch ``[n, ...]`` of
(perturbed) inputs and ``outputs`` is ``[n]`` (one score per row) or
``[n, classes]`` (class scores; a metric then picks each image's target
class). The metrics decide how many rows go into one call (``batch_size``);
the callable just runs them. Any model fits — a TF1 graph through
:func:`tf1_model_function`, a method's backend through
:func:`backend_model_function`, or a Python function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import (
    OUTPUT_LAYER_VALUES,
    PerExample,
    _tf,
    cached_ops,
    check_tensor,
    depends_on,
    required_placeholders,
)
from ._common import ModelFunction


def tf1_model_function(
    graph: Any,
    session: Any,
    outputs: Any,
    x: Any,
    *,
    feed_dict: Mapping | None = None,
    softmax: bool = True,
) -> ModelFunction:
    """A model function over a TF1 graph: ``rows -> softmax(logits)`` (or the raw outputs).

    The softmax op is added to the graph here, once per graph and tensor
    (never during a call). Each call runs one ``session.run`` on the rows it
    is given (padded where ``x`` has a fixed outer dimension).

    Args:
      graph, session: the model's graph and a session on it.
      outputs: ``[None, classes]`` logits (or probabilities with
        ``softmax=False``), or a ``[None]`` score per example.
      x: the input placeholder.
      feed_dict: values for the graph's other placeholders, fed to every call
        (plain values; not :class:`~saliency_tf1.PerExample`).
      softmax: apply a softmax over the classes of 2-D ``outputs`` (the
        class probability that SIC, deletion and insertion score).

    Returns:
      ``model(rows: np.ndarray) -> np.ndarray`` of shape ``[n, classes]`` or ``[n]``.
    """
    tf = _tf()
    if not isinstance(graph, tf.Graph):
        raise TypeError(f"graph: expected a tf.Graph, got {type(graph).__name__}")
    if getattr(session, "graph", None) is not graph:
        raise ValueError("session: expected a session on the `graph` argument")
    check_tensor("x", x, graph)
    check_tensor("outputs", outputs, graph)
    if outputs.shape.rank not in (1, 2):
        raise ValueError(
            f"outputs: expected [None, classes] logits or a [None] score, got shape {outputs.shape}"
        )
    if not depends_on(outputs, x):
        raise ValueError(f"outputs: tensor {outputs.name!r} does not depend on x ({x.name!r})")
    fetch = outputs
    if softmax and outputs.shape.rank == 2:
        fetch = cached_ops(graph, ("softmax", outputs.name), lambda: tf.nn.softmax(outputs))

    feed: dict[Any, Any] = {}
    for key, value in (feed_dict or {}).items():
        if isinstance(value, PerExample):
            raise TypeError("feed_dict: PerExample values are not supported by model functions")
        tensor = graph.as_graph_element(key) if isinstance(key, str) else key
        check_tensor(f"feed_dict key {key!r}", tensor, graph)
        feed[tensor] = value
    missing = [t.name for t in required_placeholders([fetch], [x, *feed])]
    if missing:
        raise ValueError(f"feed_dict: missing a value for placeholder(s) {missing}")
    dtype = np.dtype(x.dtype.as_numpy_dtype)
    fixed = x.shape.as_list()[0]

    def model(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=dtype)
        n = len(rows)
        if fixed is None:
            return np.asarray(session.run(fetch, {**feed, x: rows}))
        parts = []
        for start in range(0, n, fixed):
            chunk = rows[start:start + fixed]
            real = len(chunk)
            if real < fixed:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - real, axis=0)])
            parts.append(np.asarray(session.run(fetch, {**feed, x: chunk}))[:real])
        return np.concatenate(parts)

    return model


def backend_model_function(backend: Any, feed_dict: Mapping | None = None) -> ModelFunction:
    """A model function giving a method's explained output ``y`` per row (``[n]``).

    ``backend`` is a method's :class:`~saliency_tf1.backend.Backend` (e.g.
    ``method.backend``); ``feed_dict`` is validated once, as for ``GetMask``.
    Note that ``y`` is usually a logit, not a probability.
    """
    feed = backend.prepare_feed(feed_dict, 1)

    def model(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        return backend.evaluate(rows, [OUTPUT_LAYER_VALUES], feed,
                                np.zeros(len(rows), np.int64))[OUTPUT_LAYER_VALUES]

    return model
