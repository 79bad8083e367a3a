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

from ..engine.backend import OUTPUT_LAYER_VALUES
from ..engine.graph import cached_ops, check_tensor, depends_on, tf_module
from ..engine.session import SessionRunner, check_graph_and_session, check_input_tensor
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
    tf = tf_module()
    check_graph_and_session(graph, session)
    check_input_tensor(x, graph)
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
    runner = SessionRunner(graph, session, x, {"outputs": fetch})
    feed = runner.prepare_feed(feed_dict, 1, per_example=False)

    def model(rows: np.ndarray) -> np.ndarray:
        return runner.run(rows, ["outputs"], feed)["outputs"]

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
