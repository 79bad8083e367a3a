"""Score-CAM: a conv layer's channels weighted by the score of the input masked by each.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
Convolutional Neural Networks", CVPR Workshops 2020, arXiv:1910.01279.
Faster Score-CAM (only the channels of highest variance): Tabayashi, 2020,
github.com/tabayashi0117/Score-CAM.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import (
    CONVOLUTION_LAYER_VALUES,
    OUTPUT_LAYER_VALUES,
    Backend,
    ForwardBackend,
)
from ..engine.checks import check_no_extra, check_positive_int
from .grad_cam import resize_matrix
from .surrogate import Blender, PerturbationSaliency, stream_rows

#: ``weighting=`` values.
WEIGHTINGS = ("softmax", "output")


def _resize_axis(values: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """``resize_matrix(n, n_out)`` applied along ``axis`` of ``values``.

    When enlarging, each output row of the matrix has at most two non-zero
    weights, so the product is two gathers and a weighted sum (element-wise
    NumPy, no BLAS call: BLAS threads fight the model's threads for the cores
    while the next chunk is made during a run).
    """
    matrix = resize_matrix(values.shape[axis], n_out).astype(values.dtype)
    taps = int((matrix != 0).sum(axis=1).max())
    if taps > 4:
        return np.moveaxis(np.tensordot(matrix, values, axes=([1], [axis])), 0, axis)
    cols = np.argsort(matrix == 0, axis=1, kind="stable")[:, :taps]  # non-zero columns first
    weights = np.take_along_axis(matrix, cols, axis=1)
    shape = [1] * values.ndim
    shape[axis] = n_out
    out = None
    for j in range(taps):
        term = np.take(values, cols[:, j], axis=axis) * weights[:, j].reshape(shape)
        out = term if out is None else np.add(out, term, out=out)
    return out


def upsample(maps: np.ndarray, size: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """Resizes maps ``[*spatial, k]`` (1 or 2 spatial dimensions) to ``[k, *size]``.

    Linear with half-pixel centres and mirrored borders
    (:func:`~saliency_tf1.methods.grad_cam.resize_matrix`, as Grad-CAM's), in
    ``dtype``.
    """
    out = np.asarray(maps, dtype)
    for axis, n in enumerate(size):
        out = _resize_axis(out, n, axis)
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def normalize_and_resize_maps(maps: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Grad-CAM's display rule for maps ``[n, *spatial]`` (1 or 2 spatial dimensions).

    Each map divided by its maximum (if positive), resized to ``size`` and
    clipped to its own range:
    :func:`~saliency_tf1.methods.grad_cam.normalize_and_resize`'s numbers
    (two gathers per axis instead of its matrix products).
    """
    axes = tuple(range(1, maps.ndim))
    peak = maps.max(axis=axes, keepdims=True)
    maps = np.where(peak > 0, maps / np.where(peak > 0, peak, 1), maps)
    out = maps.astype(np.float64)
    for axis, n in enumerate(size, start=1):
        out = _resize_axis(out, n, axis)
    out = np.clip(out, maps.min(axis=axes, keepdims=True), maps.max(axis=axes, keepdims=True))
    return out.astype(maps.dtype)


def min_max(maps: np.ndarray) -> np.ndarray:
    """Each map ``[k, ...]`` scaled to ``[0, 1]``: ``(m - min m) / (max m - min m)``."""
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1.0)


def channel_weights(scores: np.ndarray, weighting: str = "softmax") -> np.ndarray:
    """Score-CAM's channel weights from the scores ``y(x * H_k)`` of the masked inputs.

    ``"softmax"``: the paper's Algorithm 1, ``softmax_k(y(x * H_k) - y(x_b))``;
    the baseline's score is common to all channels, so it cancels and is not
    needed. ``"output"``: the scores themselves, as the authors' code does
    with ``y`` the class probability.
    """
    scores = np.asarray(scores, np.float64)
    if weighting == "output" or len(scores) == 0:
        return scores
    e = np.exp(scores - scores.max())
    return e / e.sum()


def select_channels(conv: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """The channels of ``conv`` (``[*spatial, c]``) that Score-CAM masks the input with.

    Channels whose map is constant are left out (their normalised mask is
    undefined; the authors' code skips them too). With ``top_k``, only the
    ``top_k`` channels of highest spatial variance are kept (Faster
    Score-CAM), in channel order.
    """
    flat = conv.reshape(-1, conv.shape[-1])
    varying = np.flatnonzero(flat.max(axis=0) > flat.min(axis=0))
    if top_k is not None and top_k < len(varying):
        variance = flat[:, varying].astype(np.float64).var(axis=0)
        keep = np.argsort(-variance, kind="stable")[:top_k]
        varying = np.sort(varying[keep])
    return varying


class ScoreCam(PerturbationSaliency):
    """Score-CAM: ``ReLU(sum_k a_k A_k)`` with ``a = softmax_k(y(x * H_k) - y(x_b))``.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
    Convolutional Neural Networks", CVPR Workshops 2020, arXiv:1910.01279,
    Algorithm 1. ``A_k`` is channel ``k`` of ``conv_layer``; ``H_k`` is
    ``A_k`` upsampled to the input's size and scaled to ``[0, 1]``; ``x * H_k``
    multiplies every channel of the input by it. The map is then normalised
    and resized as :class:`~saliency_tf1.GradCam`'s (same arguments).

    One ``session.run`` gives the conv activations, then the masked inputs of
    all channels run in stacked batches of ``batch_size`` rows, made chunk by
    chunk (memory does not grow with the number of channels):
    ``1 + ceil(channels / batch_size)`` runs for one input. Channels with a
    constant map are skipped. ``top_k`` keeps only the channels of highest
    variance (Faster Score-CAM). No gradient is needed: ``y`` may be a
    non-differentiable function of ``conv_layer``.

    ``weighting="output"`` uses the scores ``y(x * H_k)`` themselves as the
    weights, as the authors' code does with the class probability: build the
    method with ``y`` a probability (e.g. ``ClassTarget(tf.nn.softmax(logits)).y``)
    for their numbers.

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.
      conv_layer: a ``[batch, h, w, c]`` tensor between ``x`` and ``y`` (or
        ``[batch, t, c]`` for a 1-D convolution over a series ``[T(, C)]``).

    Example::

        cam = ScoreCam(graph, session, logits[:, 3], x, conv_layer=last_conv)
        heat = cam.GetMask(image, batch_size=128)             # [H, W, 3], in [0, 1]
        fast = cam.GetMask(image, top_k=64)                   # Faster Score-CAM
    """

    backend_keys = (CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES)

    required_keys = (OUTPUT_LAYER_VALUES, CONVOLUTION_LAYER_VALUES)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 conv_layer: Any = None, *, backend: Backend | None = None) -> None:
        if backend is None and conv_layer is None:
            raise TypeError("conv_layer: ScoreCam needs the [batch, h, w, c] tensor of a "
                            "convolutional layer between x and y, got None")
        self.conv_layer = conv_layer if backend is None else getattr(backend, "conv_layer", None)
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> ForwardBackend:
        return ForwardBackend(graph, session, y, x, self.conv_layer)

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        should_resize: bool = True,
        three_dims: bool = True,
        *,
        weighting: str = "softmax",
        top_k: int | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the Score-CAM map of one input (not batched).

        Args:
          x_value: one input, ``[H, W, C]`` (or ``[T(, C)]`` for a 1-D conv layer).
          feed_dict: values for the graph's other placeholders.
          should_resize: divide the map by its maximum and resize it to the
            input's ``[H, W]``; otherwise return the raw ``[h, w]`` map.
          three_dims: repeat a 2-D map over 3 channels (``[..., 3]``), as Grad-CAM.
          weighting: ``"softmax"`` (the paper) or ``"output"`` (the authors'
            code, with ``y`` the class probability).
          top_k: keep only this many channels, those of highest variance
            (Faster Score-CAM); ``None``: all.
          batch_size: masked inputs per ``session.run``.
          progress: show a progress bar (``None``: only for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, should_resize=should_resize,
                               three_dims=three_dims, weighting=weighting, top_k=top_k,
                               batch_size=batch_size, progress=progress)

    def _conv_rank(self) -> int | None:
        conv = getattr(self.backend, "conv_layer", None)
        return None if conv is None else conv.shape.rank

    def _channels(self) -> int | None:
        conv = getattr(self.backend, "conv_layer", None)
        return None if conv is None else conv.shape.as_list()[-1]

    def _check_args(self, xs, call, should_resize=True, three_dims=True, weighting="softmax",
                    top_k=None, progress=None, **kwargs):
        check_no_extra(f"ScoreCam.{call}", kwargs)
        if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: expected one of {list(WEIGHTINGS)}, got {weighting!r}")
        if top_k is not None:
            top_k = check_positive_int("top_k", top_k)
        spatial = (self._conv_rank() or 4) - 2
        if xs.ndim - 1 < spatial:
            raise ValueError(
                f"x_value: Score-CAM masks the input's {spatial} leading dimensions with the "
                f"conv layer's maps; got inputs of shape {xs.shape[1:]}"
            )
        channels = self._channels()
        rows = 1 + (min(channels, top_k or channels) if channels else (top_k or 1))
        return {"should_resize": bool(should_resize), "three_dims": bool(three_dims),
                "weighting": weighting, "top_k": top_k, "progress": progress}, rows

    def _masks(self, inputs, sources, feed, batch_size, should_resize, three_dims, weighting,
               top_k, progress):
        conv = self._evaluate(inputs, CONVOLUTION_LAYER_VALUES, feed, sources, batch_size)
        spatial = conv.ndim - 2
        if spatial not in (1, 2) or inputs.ndim - 1 < spatial:
            raise ValueError(
                f"conv_layer: expected [batch, h, w, c] (or [batch, t, c]) values for inputs "
                f"of shape {inputs.shape[1:]}, got shape {conv.shape}"
            )
        size = inputs.shape[1:1 + spatial]
        kept = [select_channels(a, top_k) for a in conv]
        scores = [np.empty(len(k)) for k in kept]
        blender = Blender(inputs, sources, None, self.backend.input_dtype)

        work = np.result_type(self.backend.input_dtype, np.float32)

        def fill(i, a, b, out):
            masks = min_max(upsample(conv[i][..., kept[i][a:b]], size, work))
            blender.write(out, i, masks)

        def consume(i, a, b, values, _):
            scores[i][a:b] = values

        stream_rows(self.backend, inputs, sources, feed, batch_size, [len(k) for k in kept],
                    fill, consume, progress=progress, desc="Score-CAM")
        maps = np.stack([
            np.maximum(np.tensordot(conv[i][..., kept[i]].astype(np.float64),
                                    channel_weights(scores[i], weighting), axes=([-1], [0])), 0)
            for i in range(len(inputs))]).astype(conv.dtype)
        if not should_resize:
            return maps
        maps = normalize_and_resize_maps(maps, size)
        return np.repeat(maps[..., None], 3, axis=-1) if three_dims and spatial == 2 else maps
