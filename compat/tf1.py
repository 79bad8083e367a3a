"""TF1 -> core: a core-API ``call_model_function`` over a TF1 graph and session."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from saliency_tf1.engine.backend import CORE_KEYS, TF1Backend
from saliency_tf1.engine.checks import check_array


class MissingConvLayerError(ValueError, RuntimeError):
    """A conv key asked of a function made without ``conv_layer``.

    A RuntimeError, as PAIR's function raises, and a ValueError, as every other
    bad argument here.
    """


class TF1CallModelFunction:
    """A core-API ``call_model_function`` over a TF1 model (:func:`create_tf1_call_model_function`).

    Attributes:
      backend: the :class:`~saliency_tf1.engine.backend.TF1Backend` that holds the ops.
      graph, session, y, x, conv_layer: the model it was made for.
    """

    def __init__(self, graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None) -> None:
        # Any conv_layer rank, as PAIR's: only Grad-CAM needs [batch, h, w, c].
        self.backend = TF1Backend(graph, session, y, x, conv_layer, conv_rank=None)
        self.graph, self.session, self.y, self.x = graph, session, y, x
        self.conv_layer = conv_layer

    def __call__(
        self,
        x_value_batch: Any,
        call_model_args: dict | None = None,
        expected_keys: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Runs the model on a batch; returns ``{key: array}`` for ``expected_keys``.

        Args:
          x_value_batch: inputs ``[n, ...]`` (``x``'s shape).
          call_model_args: the ``feed_dict`` of the graph's other placeholders
            (tensor or tensor-name keys); never modified.
          expected_keys: which of the four core keys to return; ``None``
            returns every key this model has (the conv keys only with a
            ``conv_layer``).

        Returns:
          ``INPUT_OUTPUT_GRADIENTS`` shaped like the batch,
          ``OUTPUT_LAYER_VALUES`` of shape ``[n]``, the conv keys ``[n, h, w, c]``.
        """
        if expected_keys is None:
            keys = [key for key in CORE_KEYS if key in self.backend.keys]
        elif isinstance(expected_keys, str) or not all(
            isinstance(key, str) for key in expected_keys
        ):
            raise TypeError(
                f"expected_keys: expected a list of key strings, got {expected_keys!r}"
            )
        else:
            keys = list(expected_keys)
        for key in keys:
            if key not in CORE_KEYS:
                raise ValueError(f"Invalid expected key {key}; expected keys among {CORE_KEYS}")
            if key not in self.backend.keys:
                raise MissingConvLayerError(
                    f"Cannot return key {key} because no conv_layer was specified; pass "
                    "conv_layer= to create_tf1_call_model_function")
        xs = check_array("x_value_batch", x_value_batch, self.backend.input_shape, batched=True)
        # The batch's rows are run as given: a value with one row per row is aligned.
        feed = self.backend.prepare_feed(call_model_args, len(xs), rows_as_given=True)
        return self.backend.evaluate(xs, keys, feed)

    def __repr__(self) -> str:
        conv = "" if self.conv_layer is None else f", conv_layer={self.conv_layer.name!r}"
        return f"TF1CallModelFunction(y={self.y.name!r}, x={self.x.name!r}{conv})"


def create_tf1_call_model_function(
    graph: Any, session: Any, y: Any, x: Any, conv_layer: Any = None
) -> TF1CallModelFunction:
    """Returns a core-API ``call_model_function`` that runs a TF1 model.

    The same signature as PAIR ``saliency.tf1``'s function of this name: any
    core-API method (ours in :mod:`saliency_tf1.compat.core`, or PAIR's ``saliency.core``)
    can drive the result. Unlike PAIR's it builds its gradient ops once, here
    (shared with every method on the same ``y``/``x``), checks ``graph``,
    ``session``, ``x``, ``y`` and ``conv_layer`` up front, accepts a scalar
    ``y`` for batches of any size (one ``session.run`` per row), and never
    writes into ``call_model_args``.

    Args:
      graph: the ``tf.Graph`` of the model.
      session: a ``tf.compat.v1.Session`` on ``graph``.
      y: the explained output, shape ``[None]`` (or ``()``).
      x: the input placeholder, outer dimension the batch.
      conv_layer: optional ``[batch, h, w, c]`` tensor between ``x`` and ``y``;
        needed for ``CONVOLUTION_LAYER_VALUES``/``CONVOLUTION_OUTPUT_GRADIENTS``.

    Returns:
      ``call_model_function(x_value_batch, call_model_args=None,
      expected_keys=None) -> dict``; ``call_model_args`` is the ``feed_dict``
      of the graph's other placeholders.

    Example::

        call_model_function = create_tf1_call_model_function(graph, sess, logits[:, 3], x)
        mask = core.IntegratedGradients().GetMask(image, call_model_function)
    """
    return TF1CallModelFunction(graph, session, y, x, conv_layer)
