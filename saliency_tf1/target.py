"""Choosing the explained output: one logit per example, by class."""

from __future__ import annotations

from typing import Any

import numpy as np

from .engine.checks import check_array
from .engine.graph import SCOPE, check_tensor, tf_module
from .engine.session import PerExample


class ClassTarget:
    """``y_i = logits[i, c_i]``: the logit of a chosen class for each example.

    Build it once, next to the model, and hand ``target.y`` to any method::

        target = ClassTarget(logits)
        grad = GradientSaliency(graph, session, target.y, x)
        grad.GetMask(img, feed_dict=target.feed(3))                 # class 3
        grad.GetMaskBatch(imgs, feed_dict=target.feed([3, 1, 7]))   # one class per input
        grad.GetSmoothedMask(img, feed_dict=target.feed_predicted(session, x, img))

    Classes are fed per *input*, so every row derived from an input (noise
    samples, path points, occluded copies) is explained for that input's
    class. ``feed_predicted`` fixes the class the model predicts for the
    clean input, so noise or a path cannot change which logit is explained.

    Attributes:
      y: the ``[None]`` tensor to explain.
      classes: the int32 ``[None]`` placeholder of class indices (a length-1
        value applies to every row).
      predictions: ``argmax(logits, axis=1)``.
    """

    def __init__(self, logits: Any, name: str = "class_target") -> None:
        tf = tf_module()
        check_tensor("logits", logits, getattr(logits, "graph", None))
        if logits.shape.rank != 2:
            raise ValueError(f"logits: expected shape [batch, classes], got {logits.shape}")
        self.logits = logits
        self.num_classes = logits.shape.as_list()[1]
        with logits.graph.as_default(), tf.compat.v1.name_scope(f"{SCOPE}/{name}"):
            self.classes = tf.compat.v1.placeholder(tf.int32, [None], name="classes")
            rows = tf.shape(logits)[0]
            per_row = tf.broadcast_to(self.classes, [rows])
            self.y = tf.gather(logits, per_row, axis=1, batch_dims=1, name="y")
            self.predictions = tf.argmax(logits, axis=1, output_type=tf.int32)

    def _check_classes(self, classes: Any) -> np.ndarray:
        arr = np.asarray(classes)
        if arr.dtype.kind not in "iu" or arr.ndim > 1:
            raise TypeError(
                f"classes: expected an int or a 1-D array of ints, got {arr.dtype} of shape "
                f"{arr.shape}"
            )
        if self.num_classes is not None and np.any((arr < 0) | (arr >= self.num_classes)):
            raise ValueError(
                f"classes: expected indices in [0, {self.num_classes}), got {arr.tolist()}"
            )
        return arr.astype(np.int32)

    def feed(self, classes: Any, feed_dict: dict | None = None) -> dict:
        """A new feed_dict (``feed_dict``'s entries plus the class) for explicit classes.

        ``classes``: one int for every input, or one per input of the call.
        """
        arr = self._check_classes(classes)
        value = arr.reshape(1) if arr.ndim == 0 else PerExample(arr)
        return {**(feed_dict or {}), self.classes: value}

    def predict(
        self, session: Any, x: Any, x_batch: Any, feed_dict: dict | None = None
    ) -> np.ndarray:
        """The predicted class of each input of ``x_batch`` (one ``session.run``)."""
        xs = check_array("x_batch", x_batch, x.shape.as_list()[1:], batched=True)
        with self.logits.graph.as_default():
            run_feed = {**(feed_dict or {}), x: xs.astype(x.dtype.as_numpy_dtype)}
            return np.asarray(session.run(self.predictions, feed_dict=run_feed))

    def feed_predicted(
        self,
        session: Any,
        x: Any,
        x_value: Any,
        feed_dict: dict | None = None,
        *,
        batched: bool = False,
    ) -> dict:
        """A new feed_dict that explains the class predicted for the clean input(s).

        ``x_value`` is one input, or a batch when ``batched``.
        """
        xs = x_value if batched else np.asarray(x_value)[None]
        predicted = self.predict(session, x, xs, feed_dict)
        return self.feed(predicted if batched else int(predicted[0]), feed_dict)
