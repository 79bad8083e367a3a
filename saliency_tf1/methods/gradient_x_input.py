"""Gradient × Input."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS
from .base import TF1Saliency


class GradientXInput(TF1Saliency):
    """The input times the gradient of ``y`` with respect to it, ``x * d y / d x``.

    Shrikumar, Greenside, Shcherbina and Kundaje, "Not Just a Black Box:
    Learning Important Features Through Propagating Activation Differences",
    2016, arXiv:1605.01713. On a linear model ``y = w . x + b`` it is ``w * x``;
    on a bias-free ReLU network it sums to ``y`` (the network is positively
    homogeneous) and equals ε-LRP with ε -> 0 (Ancona et al., ICLR 2018).

    One gradient row per input, so ``GetMaskBatch`` costs one batched
    gradient, and ``GetSmoothedMask`` averages it over noisy copies. Only the
    input gradient is asked of the backend, so the class runs over the
    framework-agnostic core API too (:meth:`from_backend`).

    Example::

        gxi = GradientXInput(graph, session, logits[:, 3], x)
        mask = gxi.GetMask(image)
        masks = gxi.GetMaskBatch(images, feed_dict)
    """

    #: SmoothGrad with a seed builds its noisy copies and sums in the graph (TF1).
    in_graph_builders = (("noise", {"masks": "gradient_x_input"}),)

    def GetMask(
        self, x_value: Any, feed_dict: dict | None = None, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Returns ``x_value * d y / d x`` at ``x_value`` (one input, not batched), its shape."""
        return super().GetMask(x_value, feed_dict, batch_size=batch_size)

    def _masks(self, inputs, sources, feed, batch_size):
        grads = self._evaluate(inputs, INPUT_OUTPUT_GRADIENTS, feed, sources, batch_size)
        work = np.result_type(grads.dtype, np.float32)
        return inputs.astype(work, copy=False) * grads
