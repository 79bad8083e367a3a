"""Grad-CAM, Grad-CAM++ and Guided Grad-CAM.

The class-activation map of a conv layer ``A`` (``[h, w, c]`` per example) is
``relu(sum_k w_k A[:, :, k])`` with per-channel weights from the gradients
``G = d y / d A``. With ``should_resize`` it is divided by its maximum (a zero
map stays zero) and resized to the input's height and width exactly as PAIR
0.2.1 does (``skimage.transform.resize``: bilinear, half-pixel centres,
mirrored borders, Gaussian anti-aliasing when shrinking), here as two small
interpolation matrices.

On a TF1 graph the whole map is computed in the graph, in the constructor's
ops, and fetched in one ``session.run`` per batch. Over any other backend
(``Cls.from_backend``) the same numbers come from the core API's
``CONVOLUTION_LAYER_VALUES`` and ``CONVOLUTION_OUTPUT_GRADIENTS`` in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    Backend,
    TF1Backend,
)
from ..engine.batching import chunk_bounds
from ..engine.checks import check_no_extra
from ..engine.graph import SCOPE, cached_ops, tf_module
from .base import TF1Saliency
from .guided_backprop import gated_gradients

# ---------------------------------------------------------------------------
# Resizing as PAIR does (skimage.transform.resize, order=1, mode="reflect")


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Folds indices into ``[0, n)`` by mirroring about the edge samples (``d c b|a b c d|c b``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``[n_out, n_in]`` matrix of ``skimage.transform.resize`` along one axis.

    Linear interpolation with half-pixel centres (``scipy.ndimage.zoom`` with
    ``grid_mode=True``) and mirrored borders; when shrinking, preceded by
    skimage's anti-aliasing Gaussian (``sigma = (n_in / n_out - 1) / 2``,
    truncated at 4 sigma). A 2-D map ``m`` resizes to
    ``resize_matrix(h, H) @ m @ resize_matrix(w, W).T``.
    """
    factor = n_in / n_out
    coord = (np.arange(n_out) + 0.5) * factor - 0.5
    low = np.floor(coord).astype(np.int64)
    frac = coord - low
    rows = np.arange(n_out)
    linear = np.zeros((n_out, n_in))
    # One entry per row in each assignment, so += does not drop duplicates.
    linear[rows, _mirror(low, n_in)] += 1 - frac
    linear[rows, _mirror(low + 1, n_in)] += frac
    if factor <= 1:
        return linear
    sigma = (factor - 1) / 2
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    smooth = np.zeros((n_in, n_in))
    for i in range(n_in):
        np.add.at(smooth[i], _mirror(i + offsets, n_in), kernel)
    return linear @ smooth


def normalize_and_resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Divides each ``[h, w]`` map by its maximum (if positive) and resizes it to ``size``.

    ``maps``: ``[n, h, w]``; returns ``[n, *size]`` in ``maps``' dtype, each
    map clipped to its own range as skimage does.
    """
    peak = maps.max(axis=(1, 2), keepdims=True)
    maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1), maps)
    rows = resize_matrix(maps.shape[1], size[0])
    cols = resize_matrix(maps.shape[2], size[1])
    out = np.einsum("Hh,nhw,Ww->nHW", rows, maps.astype(np.float64), cols)
    out = np.clip(out, maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True))
    return out.astype(maps.dtype)


# ---------------------------------------------------------------------------
# The maps, in numpy and in the graph


def cam_maps(conv: np.ndarray, grads: np.ndarray, plus_plus: bool = False) -> np.ndarray:
    """Un-resized, un-normalised maps ``relu(sum_k w_k A_k)``, ``[n, h, w]``, in numpy.

    ``conv``, ``grads``: ``[n, h, w, c]`` activations ``A`` and ``d y / d A``.
    Grad-CAM: ``w_k = mean_ij G_ijk``. Grad-CAM++: ``w_k = sum_ij alpha_ijk
    relu(G_ijk)`` with ``alpha = G^2 / (2 G^2 + (sum_ab A_abk) G^3)`` (0 where
    the denominator is 0).
    """
    conv = np.asarray(conv)
    grads = np.asarray(grads)
    if plus_plus:
        g2 = grads * grads
        denom = 2 * g2 + conv.sum(axis=(1, 2), keepdims=True) * g2 * grads
        alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
        weights = np.sum(alpha * np.maximum(grads, 0), axis=(1, 2))
    else:
        weights = grads.mean(axis=(1, 2))
    return np.maximum(np.einsum("nhwc,nc->nhw", conv, weights), 0).astype(conv.dtype)


def _cam_maps_graph(conv: Any, grads: Any, plus_plus: bool) -> Any:
    """:func:`cam_maps` as graph ops."""
    tf = tf_module()
    if plus_plus:
        g2 = tf.square(grads)
        denom = 2 * g2 + tf.reduce_sum(conv, [1, 2], keepdims=True) * g2 * grads
        alpha = tf.math.divide_no_nan(g2, denom)
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), [1, 2])
    else:
        weights = tf.reduce_mean(grads, [1, 2])
    return tf.nn.relu(tf.einsum("nhwc,nc->nhw", conv, weights))


def _normalize_and_resize_graph(maps: Any, map_size: tuple[int, int],
                                size: tuple[int, int]) -> Any:
    """:func:`normalize_and_resize` as graph ops (static sizes)."""
    tf = tf_module()
    peak = tf.reduce_max(maps, [1, 2], keepdims=True)
    maps = tf.where(peak > 0, maps / tf.where(peak > 0, peak, tf.ones_like(peak)), maps)
    rows = tf.constant(resize_matrix(map_size[0], size[0]), maps.dtype)
    cols = tf.constant(resize_matrix(map_size[1], size[1]), maps.dtype)
    out = tf.matmul(tf.matmul(rows, maps), cols, transpose_b=True)
    low = tf.reduce_min(maps, [1, 2], keepdims=True)
    high = tf.reduce_max(maps, [1, 2], keepdims=True)
    return tf.minimum(tf.maximum(out, low), high)


# ---------------------------------------------------------------------------
# The methods


class GradCam(TF1Saliency):
    """Grad-CAM: the conv layer's activations weighted by their mean gradients.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017, arXiv:1610.02391. Same numbers as
    PAIR 0.2.1's ``GradCam`` for the same arguments.

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.
      conv_layer: a ``[batch, h, w, c]`` tensor between ``x`` and ``y``; the
        paper suggests the last convolutional layer.

    Example::

        cam = GradCam(graph, session, logits[:, 3], x, conv_layer=last_conv)
        heat = cam.GetMask(image)                       # [H, W, 3], in [0, 1]
        raw = cam.GetMask(image, should_resize=False, three_dims=False)   # [h, w]
    """

    #: Grad-CAM++ weights instead of mean gradients.
    _plus_plus = False
    backend_keys = (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 conv_layer: Any = None, *, backend: Backend | None = None) -> None:
        if backend is None and conv_layer is None:
            raise TypeError(f"conv_layer: {type(self).__name__} needs the [batch, h, w, c] "
                            "tensor of a convolutional layer between x and y, got None")
        self.conv_layer = conv_layer if backend is None else getattr(backend, "conv_layer", None)
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return TF1Backend(graph, session, y, x, self.conv_layer,
                          extra_fetches=lambda f: self._graph_maps(graph, x, f))

    # The backend keys of the graph-side maps: [n, h, w] and normalised [n, H, W].
    @property
    def _map_key(self) -> str:
        return f"{SCOPE}/{'GRAD_CAM_PLUS_PLUS' if self._plus_plus else 'GRAD_CAM'}_MAP"

    @property
    def _resized_key(self) -> str:
        return self._map_key + "_RESIZED"

    def _graph_maps(self, graph: Any, x: Any, fetches: dict) -> dict:
        conv = fetches[CONVOLUTION_LAYER_VALUES]
        grads = fetches[CONVOLUTION_OUTPUT_GRADIENTS]
        plus_plus = self._plus_plus

        def build() -> dict:
            maps = _cam_maps_graph(conv, grads, plus_plus)
            out = {self._map_key: maps}
            map_size = conv.shape.as_list()[1:3]
            size = x.shape.as_list()[1:3] if x.shape.rank >= 3 else [None]
            if None not in map_size + size:
                out[self._resized_key] = _normalize_and_resize_graph(maps, map_size, size)
            return out

        return cached_ops(graph, ("grad_cam", plus_plus, conv.name, grads.name, x.name),
                          build)

    def _maps(self, inputs: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int,
              resize: bool, extra: tuple[str, ...] = ()) -> tuple[np.ndarray, dict]:
        """The ``[n, h, w]`` maps (normalised and resized to the input if ``resize``).

        Also returns the ``extra`` backend keys fetched in the same runs.
        """
        keys = self.backend.keys
        if resize and self._resized_key in keys:
            wanted, post = [self._resized_key], None
        elif self._map_key in keys:
            wanted, post = [self._map_key], None
        else:  # another backend: the core API's conv keys, in numpy
            wanted = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]

            def post(out):
                return cam_maps(out[CONVOLUTION_LAYER_VALUES], out[CONVOLUTION_OUTPUT_GRADIENTS],
                                self._plus_plus)
        parts: list[np.ndarray] = []
        extras: dict[str, list[np.ndarray]] = {k: [] for k in extra}
        for a, b in chunk_bounds(len(inputs), batch_size):
            out = self.backend.evaluate(inputs[a:b], [*wanted, *extra], feed, sources[a:b])
            parts.append(post(out) if post else out[wanted[0]])
            for k in extra:
                extras[k].append(out[k])
        maps = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if resize and wanted != [self._resized_key]:
            maps = normalize_and_resize(maps, inputs.shape[1:3])
        return maps, {k: np.concatenate(v) for k, v in extras.items()}

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        should_resize: bool = True,
        three_dims: bool = True,
        *,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Returns the Grad-CAM map of one input (not batched).

        Args:
          x_value: one input, ``[H, W, C]``.
          feed_dict: values for the graph's other placeholders.
          should_resize: divide the map by its maximum and resize it to
            ``[H, W]``; otherwise return the raw ``[h, w]`` map of the layer.
          three_dims: repeat the map over 3 channels (``[..., 3]``), as PAIR does.
          batch_size: most inputs per ``session.run`` (GetMaskBatch/GetSmoothedMask).
        """
        return super().GetMask(x_value, feed_dict, should_resize=should_resize,
                               three_dims=three_dims, batch_size=batch_size)

    def _check_args(self, xs, call, should_resize=True, three_dims=True, **kwargs):
        check_no_extra(f"{type(self).__name__}.{call}", kwargs)
        if should_resize and xs.ndim < 3:
            raise ValueError(
                f"should_resize: needs inputs with height and width, got inputs of shape "
                f"{xs.shape[1:]}"
            )
        return {"should_resize": bool(should_resize), "three_dims": bool(three_dims)}, 1

    def _masks(self, inputs, sources, feed, batch_size, should_resize, three_dims):
        maps, _ = self._maps(inputs, sources, feed, batch_size, should_resize)
        return np.repeat(maps[..., None], 3, axis=-1) if three_dims else maps


class GradCamPlusPlus(GradCam):
    """Grad-CAM++: channel weights from positive gradients, pixel-wise re-weighted.

    Chattopadhay, Sarkar, Howlader and Balasubramanian, "Grad-CAM++:
    Generalized Gradient-based Visual Explanations for Deep Convolutional
    Networks", WACV 2018, arXiv:1710.11063. With ``G = d y / d A``,
    ``w_k = sum_ij alpha_ijk relu(G_ijk)`` and ``alpha = G^2 / (2 G^2 +
    (sum_ab A_abk) G^3)`` (the paper's closed form for ``Y = exp(y)``; its
    common factor ``exp(y)`` is left out, since it only scales the map and
    overflows for large logits). The map is then treated as in
    :class:`GradCam` (same arguments).
    """

    _plus_plus = True


class GuidedGradCam(GradCam):
    """Guided Grad-CAM: Guided Backpropagation times the upsampled Grad-CAM map.

    Selvaraju et al., 2017 (arXiv:1610.02391), Sec. 3.1: the guided gradient
    (:class:`~saliency_tf1.guided_backprop.GuidedBackprop`) multiplied, in
    every channel, by the Grad-CAM map normalised and resized to the input as
    ``GradCam.GetMask(should_resize=True)``. Both come from one
    ``session.run`` per batch. Mask shape: the input's.

    Args:
      graph, session, y, x, conv_layer: as :class:`GradCam`.
    """

    graph_only = True

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return TF1Backend(graph, session, y, x, self.conv_layer,
                          input_gradients=lambda: gated_gradients(graph, y, x, "guided"),
                          extra_fetches=lambda f: self._graph_maps(graph, x, f))

    def GetMask(
        self, x_value: Any, feed_dict: dict | None = None, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Returns the Guided Grad-CAM mask of one input (not batched), its shape."""
        return TF1Saliency.GetMask(self, x_value, feed_dict, batch_size=batch_size)

    def _check_args(self, xs, call, **kwargs):
        check_no_extra(f"GuidedGradCam.{call}", kwargs)
        if xs.ndim < 3:
            raise ValueError(
                "x_value: Guided Grad-CAM resizes the map to the input's height and width; got "
                f"inputs of shape {xs.shape[1:]}"
            )
        return {}, 1

    def _masks(self, inputs, sources, feed, batch_size):
        maps, extra = self._maps(inputs, sources, feed, batch_size, True,
                                 extra=(INPUT_OUTPUT_GRADIENTS,))
        guided = extra[INPUT_OUTPUT_GRADIENTS]
        return guided * maps.reshape(maps.shape + (1,) * (guided.ndim - 3)).astype(guided.dtype)
