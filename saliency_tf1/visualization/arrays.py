"""Masks as arrays: PAIR's views, display scaling, overlays, channel reductions."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_3d(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 3 or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: expected a numeric [height, width, channels] array, got {arr.dtype} "
            f"of shape {arr.shape}"
        )
    return arr


def _scale(image_2d: np.ndarray, vmin: float, vmax: float, low: float) -> np.ndarray:
    span = vmax - vmin
    if not np.isfinite(span) or span <= 0:
        # A constant (e.g. all-zero) mask: PAIR divides by zero and returns NaN.
        return np.zeros_like(image_2d, dtype=np.float64)
    return np.clip((image_2d - vmin) / span, low, 1)


def VisualizeImageGrayscale(image_3d: Any, percentile: float = 99) -> np.ndarray:
    """Sums ``|mask|`` over channels and scales it to ``[0, 1]``, clipping at a percentile.

    Same definition as PAIR's: ``(s - min(s)) / (percentile(s) - min(s))``
    clipped to ``[0, 1]`` where ``s = sum(|image_3d|, axis=2)``; a constant
    mask gives zeros instead of NaN.
    """
    image_2d = np.sum(np.abs(_check_3d("image_3d", image_3d)), axis=2)
    return _scale(image_2d, float(np.min(image_2d)), float(np.percentile(image_2d, percentile)), 0)


def VisualizeImageDiverging(image_3d: Any, percentile: float = 99) -> np.ndarray:
    """Sums the signed mask over channels and scales it symmetrically, as PAIR does.

    ``(s + span) / (2 span)`` clipped to ``[-1, 1]`` with ``s = sum(image_3d, axis=2)``
    and ``span = |percentile(s)|`` (so 0.5 is a zero attribution); a constant
    zero mask gives zeros instead of NaN.
    """
    image_2d = np.sum(_check_3d("image_3d", image_3d), axis=2)
    span = abs(float(np.percentile(image_2d, percentile)))
    return _scale(image_2d, -span, span, -1)


def normalize_image(image: Any) -> np.ndarray:
    """Maps an image to float ``[0, 1]`` for display (uint8 / 255; floats by min-max)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    lo, hi = float(np.min(img)), float(np.max(img))
    return np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)


def display_mask(mask: Any) -> np.ndarray:
    """A mask as an ``[h, w]`` picture in ``[0, 1]``.

    ``[h, w, c]`` masks go through :func:`VisualizeImageGrayscale`. A
    non-negative ``[h, w]`` mask is divided by its peak (XRAI's region gains
    are small numbers, ~0.01-0.07 on the demo; a Grad-CAM map already peaking
    at 1 is unchanged; zero stays zero); a signed one is min-max scaled.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return VisualizeImageGrayscale(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected [h, w] or [h, w, c], got shape {mask.shape}")
    low, high = float(np.min(mask)), float(np.max(mask))
    return _scale(mask, 0.0 if low >= 0 else low, high, 0)


def overlay(image: Any, mask: Any, cmap: str = "inferno", alpha: float = 0.5) -> np.ndarray:
    """Returns an RGB float image: ``image`` blended with ``mask`` drawn in a colormap.

    ``mask``: ``[h, w]`` values in ``[0, 1]`` (e.g. from ``VisualizeImageGrayscale``),
    or a raw ``[h, w, c]`` mask, which is made grayscale first.
    """
    from matplotlib import colormaps

    img = normalize_image(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    m = display_mask(mask)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask: expected shape {img.shape[:2]} (the image's), got {m.shape}")
    colored = colormaps[cmap](np.clip(m, 0, 1))[..., :3]
    return (1 - alpha) * img[..., :3] + alpha * colored


#: The channel reductions of :func:`reduce_channels`.
CHANNEL_REDUCTIONS = ("sum_abs", "max_abs", "sum", "l2")


def minmax_scale(values: Any, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``(v - min) / (max - min)`` in ``[0, 1]`` (float64), over ``axis`` (``None``: all).

    A constant array (or slice along ``axis``) gives zeros, not NaN.
    """
    arr = np.asarray(values, dtype=np.float64)
    low = np.min(arr, axis=axis, keepdims=True)
    span = np.max(arr, axis=axis, keepdims=True) - low
    return np.divide(arr - low, span, out=np.zeros_like(arr), where=span > 0)


def reduce_channels(mask: Any, how: str = "sum_abs", *, axis: int = -1,
                    normalize: bool = False) -> np.ndarray:
    """One value per position: a mask reduced over its channel (or embedding) axis.

    ``how``:

    * ``"sum_abs"``: ``sum_c |m_c|``, PAIR's (:func:`VisualizeImageGrayscale`
      before its percentile scaling), the importance the metrics use;
    * ``"max_abs"``: ``max_c |m_c|``, the reduction of tf-keras-vis's
      ``Saliency`` (``keepdims=False``) and AUCMEDI's gradient maps;
      with ``normalize=True`` it is their whole pipeline (abs, max over
      channels, min-max);
    * ``"sum"``: ``sum_c m_c``, signed (PAIR's diverging view; a token's score
      from its embedding's attributions, whose sum is what completeness adds up);
    * ``"l2"``: ``sqrt(sum_c m_c^2)``, the norm (a token's magnitude).

    Args:
      mask: an array with a channel axis (e.g. ``[H, W, C]``, ``[T, C]``,
        ``[N, T, D]``).
      axis: the channel axis.
      normalize: min-max scale the result to ``[0, 1]`` over all its values
        (:func:`minmax_scale`; a constant result gives zeros).

    Returns:
      float64, ``mask``'s shape without ``axis``.
    """
    if not isinstance(how, str) or how not in CHANNEL_REDUCTIONS:
        raise ValueError(f"how: expected one of {list(CHANNEL_REDUCTIONS)}, got {how!r}")
    arr = np.asarray(mask)
    if arr.dtype.kind not in "biuf" or arr.ndim < 1:
        raise ValueError(f"mask: expected a numeric array with a channel axis, got {arr.dtype} "
                         f"of shape {arr.shape}")
    if not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis: expected an axis of the mask's {arr.ndim} dimensions "
                         f"(shape {arr.shape}), got {axis}")
    arr = arr.astype(np.float64)
    if how == "sum_abs":
        out = np.abs(arr).sum(axis=axis)
    elif how == "max_abs":
        out = np.abs(arr).max(axis=axis)
    elif how == "sum":
        out = arr.sum(axis=axis)
    else:
        out = np.sqrt(np.square(arr).sum(axis=axis))
    return minmax_scale(out) if normalize else out
