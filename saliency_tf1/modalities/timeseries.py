"""Time series ``[None, T, C]``: windows along time, Grad-CAM over a 1-D conv layer.

Gradient methods, Integrated Gradients and SmoothGrad (``GetSmoothedMask``)
take a ``[None, T, C]`` input as it is; their masks are ``[T, C]``, and
:func:`time_scores` reduces them to one value per time step. Occlusion slides
its window over the first two axes of an input, so a window of ``w`` time
steps over every channel is ``window_height=w, window_width=C``
(:func:`time_window_args`). Grad-CAM needs a conv layer ``[batch, t, c]``:
:class:`GradCam1D` weights its channels and resizes the map along time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    Backend,
    TF1Backend,
)
from ..engine.batching import chunk_bounds
from ..engine.checks import check_no_extra, check_positive_int, describe
from ..methods.base import TF1Saliency
from ..methods.grad_cam import resize_matrix
from ..visualization.arrays import reduce_channels


def time_window_args(x_value: Any, window: int, stride: int = 1) -> dict[str, int]:
    """:class:`~saliency_tf1.Occlusion` arguments for windows of ``window`` time steps.

    ``x_value``: an input ``[T, C]`` (or a batch ``[N, T, C]``); every window
    covers all ``C`` channels and moves ``stride`` steps. Use as
    ``occlusion.GetMask(signal, feed, **time_window_args(signal, 8), normalize=True)``.
    """
    shape = np.shape(x_value)
    if len(shape) not in (2, 3):
        raise ValueError(f"x_value: expected a [T, C] signal or a [N, T, C] batch, got shape "
                         f"{shape}")
    window = check_positive_int("window", window)
    if window > shape[-2]:
        raise ValueError(f"window: expected at most the signal's {shape[-2]} time steps, got "
                         f"{window}")
    return {"size": window, "window_height": window, "window_width": int(shape[-1]),
            "stride": check_positive_int("stride", stride)}


def time_scores(mask: Any, how: str = "sum_abs", *, normalize: bool = False) -> np.ndarray:
    """One value per time step of a ``[..., T, C]`` mask, reduced over the channels.

    ``how``: as :func:`saliency_tf1.visualization.reduce_channels` (``"sum_abs"``,
    ``"max_abs"``, ``"sum"``, ``"l2"``).
    """
    arr = np.asarray(mask)
    if arr.ndim < 2:
        raise ValueError(f"mask: expected [T, C] or [N, T, C], got shape {arr.shape}")
    return reduce_channels(arr, how, normalize=normalize)


def cam_maps_1d(conv: np.ndarray, grads: np.ndarray, plus_plus: bool = False) -> np.ndarray:
    """Un-resized maps ``relu(sum_k w_k A[:, k])`` ``[n, t]`` of a 1-D conv layer.

    ``conv``, ``grads``: ``[n, t, c]`` activations ``A`` and ``d y / d A``.
    Grad-CAM: ``w_k = mean_t G_tk``; Grad-CAM++: ``w_k = sum_t alpha_tk
    relu(G_tk)``, ``alpha = G^2 / (2 G^2 + (sum_s A_sk) G^3)`` (0 where the
    denominator is 0), as :func:`saliency_tf1.methods.grad_cam.cam_maps` in 2-D.
    """
    conv = np.asarray(conv, dtype=np.float64)
    grads = np.asarray(grads, dtype=np.float64)
    if plus_plus:
        g2 = grads * grads
        denom = 2 * g2 + conv.sum(axis=1, keepdims=True) * g2 * grads
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
        weights = np.sum(alpha * np.maximum(grads, 0), axis=1)
    else:
        weights = grads.mean(axis=1)
    return np.maximum(np.einsum("ntc,nc->nt", conv, weights), 0)


def normalize_and_resize_1d(maps: np.ndarray, length: int) -> np.ndarray:
    """Each ``[t]`` map divided by its maximum (if positive), resized to ``length`` steps.

    Linear interpolation with half-sample centres and mirrored ends (the
    resize of :func:`saliency_tf1.methods.grad_cam.resize_matrix`, as Grad-CAM
    resizes each image axis), clipped to the map's range.
    """
    peak = maps.max(axis=1, keepdims=True)
    maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1), maps)
    out = maps @ resize_matrix(maps.shape[1], length).T
    return np.clip(out, maps.min(axis=1, keepdims=True), maps.max(axis=1, keepdims=True))


class GradCam1D(TF1Saliency):
    """Grad-CAM over a 1-D conv layer ``[batch, t, c]``, resized along time.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017, arXiv:1610.02391, with time as
    the only spatial axis: ``relu(sum_k mean_t(d y / d A_tk) A[:, k])``,
    divided by its maximum and linearly resized to the input's ``T`` steps.
    The activations and gradients come from one ``session.run`` per batch
    (the backend's ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``).

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`; ``x`` is
        ``[None, T, C]``.
      conv_layer: a ``[batch, t, c]`` tensor between ``x`` and ``y`` (e.g. the
        last ``tf.nn.conv1d`` layer's activations).

    Example::

        cam = GradCam1D(graph, sess, target.y, x, conv_layer=conv)
        heat = cam.GetMask(signal, target.feed(1))                  # [T], in [0, 1]
    """

    #: Grad-CAM++ channel weights instead of mean gradients.
    _plus_plus = False
    backend_keys = (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 conv_layer: Any = None, *, backend: Backend | None = None) -> None:
        if backend is None:
            if conv_layer is None:
                raise TypeError(f"conv_layer: {type(self).__name__} needs the [batch, time, "
                                "channels] tensor of a 1-D convolutional layer, got None")
            shape = getattr(conv_layer, "shape", None)
            if getattr(shape, "rank", None) != 3:
                what = (f"{conv_layer.name!r} of shape {shape}" if hasattr(conv_layer, "name")
                        and shape is not None else describe(conv_layer))
                raise ValueError(f"conv_layer: expected a 3-D [batch, time, channels] tensor, "
                                 f"got {what}")
        self.conv_layer = conv_layer if backend is None else getattr(backend, "conv_layer", None)
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return TF1Backend(graph, session, y, x, self.conv_layer, conv_rank=3)

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        should_resize: bool = True,
        *,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Returns the map of one signal ``[T, C]``: ``[T]`` in ``[0, 1]``, or the raw ``[t]``.

        Args:
          x_value: one input (not batched).
          feed_dict: values for the graph's other placeholders.
          should_resize: divide by the maximum and resize to ``T`` time steps;
            otherwise the conv layer's raw ``[t]`` map.
          batch_size: most inputs per ``session.run``.
        """
        return super().GetMask(x_value, feed_dict, should_resize=should_resize,
                               batch_size=batch_size)

    def _check_args(self, xs, call, should_resize=True, **kwargs):
        check_no_extra(f"{type(self).__name__}.{call}", kwargs)
        if should_resize and xs.ndim != 3:
            raise ValueError(f"should_resize: needs [T, C] inputs to resize along time, got "
                             f"inputs of shape {xs.shape[1:]}")
        return {"should_resize": bool(should_resize)}, 1

    def _masks(self, inputs, sources, feed, batch_size, should_resize):
        keys = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]
        parts = []
        for a, b in chunk_bounds(len(inputs), batch_size):
            out = self.backend.evaluate(inputs[a:b], keys, feed, sources[a:b])
            parts.append(cam_maps_1d(out[keys[0]], out[keys[1]], self._plus_plus))
        maps = np.concatenate(parts)
        if should_resize:
            maps = normalize_and_resize_1d(maps, inputs.shape[1])
        return maps.astype(np.result_type(inputs.dtype, np.float32))


class GradCamPlusPlus1D(GradCam1D):
    """Grad-CAM++ over a 1-D conv layer (Chattopadhay et al., WACV 2018, arXiv:1710.11063).

    Channel weights ``sum_t alpha_tk relu(G_tk)`` (:func:`cam_maps_1d`); otherwise
    as :class:`GradCam1D`.
    """

    _plus_plus = True
