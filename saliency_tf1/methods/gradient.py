"""Vanilla gradient saliency (and SmoothGrad, through ``GetSmoothedMask``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS
from .base import TF1Saliency


class GradientSaliency(TF1Saliency):
    """The gradient of ``y`` with respect to the input, ``d y / d x``.

    Simonyan, Vedaldi and Zisserman, "Deep Inside Convolutional Networks:
    Visualising Image Classification Models and Saliency Maps", 2013,
    arXiv:1312.6034. With ``GetSmoothedMask`` it is SmoothGrad (Smilkov et
    al., 2017).

    Example::

        grad = GradientSaliency(graph, session, logits[:, 3], x)
        mask = grad.GetMask(image)                     # image: [h, w, c]
        smooth = grad.GetSmoothedMask(image, seed=0)   # 25 noisy copies, one session.run
    """

    multi_input = True
    #: SmoothGrad with a seed builds its noisy copies and sums in the graph (TF1).
    in_graph_builders = (("noise", {"masks": "gradient"}),)

    def GetMask(
        self, x_value: Any, feed_dict: dict | None = None, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Returns ``d y / d x`` at ``x_value`` (one input, not batched), shaped like it."""
        return super().GetMask(x_value, feed_dict, batch_size=batch_size)

    def _masks(self, inputs, sources, feed, batch_size):
        return self._evaluate(inputs, INPUT_OUTPUT_GRADIENTS, feed, sources, batch_size)
