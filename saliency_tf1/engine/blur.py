"""One Gaussian blur for the package: Blur IG's path and the metrics' blurred baselines.

A blur is two matrix products (along height, then width) with the 1-D kernel
matrices of :func:`gaussian_blur_matrix`; the border rule is an argument
(``"constant"``: zeros beyond the edges, as PAIR's Blur IG; ``"reflect"``: the
image mirrored, as the deletion metric's blurred baseline), and the result
equals ``scipy.ndimage.gaussian_filter``'s with the same rule, rounding
included, without SciPy.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

#: Kernel radius in standard deviations, as ``scipy.ndimage.gaussian_filter``'s default.
TRUNCATE = 4.0
#: The border rules of :func:`gaussian_blur` (``scipy.ndimage`` names).
MODES = ("constant", "reflect")


def gaussian_blur_matrix(
    size: int, sigma: float, *, mode: str = "constant", truncate: float = TRUNCATE,
    radius: int | None = None,
) -> np.ndarray:
    """The ``[size, size]`` matrix of a 1-D Gaussian blur, float64.

    ``matrix @ v`` equals ``scipy.ndimage.gaussian_filter1d(v, sigma, mode=mode,
    truncate=truncate, radius=radius)``: the kernel ``exp(-t^2 / (2 sigma^2))``
    on ``|t| <= radius`` (default ``int(truncate * sigma + 0.5)``), normalised
    over its full support; beyond the edges zeros (``mode="constant"``) or the
    signal mirrored about the edge, edge sample repeated (``"reflect"``, NumPy's
    ``pad(mode="symmetric")``), as often as the kernel needs. ``sigma <= 1e-15``
    is the identity, as in ``gaussian_filter``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if sigma <= 1e-15:
        return np.eye(size)
    if radius is None:
        radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * offsets**2)  # scipy's _gaussian_kernel1d
    kernel /= kernel.sum()
    if mode == "constant":
        taps = np.zeros(size)
        reach = min(radius, size - 1)
        taps[: reach + 1] = kernel[radius : radius + reach + 1]
        return taps[_distances(size)]  # blur_taps(size, sigma)[|i - j|]
    # "reflect": sample i + t is read at its mirror image in [0, size) (period 2 size).
    rows = np.broadcast_to(np.arange(size)[:, None], (size, len(offsets)))
    cols = (rows + offsets) % (2 * size)
    cols = np.where(cols < size, cols, 2 * size - 1 - cols)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (rows, cols), np.broadcast_to(kernel, cols.shape))
    return matrix


def blur_taps(size: int, sigma: float, *, truncate: float = TRUNCATE) -> np.ndarray:
    """``taps[d]``, the weight of a sample at distance ``d < size`` in the ``"constant"`` blur.

    :func:`gaussian_blur_matrix` (``mode="constant"``) is ``taps[|i - j|]``:
    a graph that gathers its matrices from these ``size`` numbers gets the
    very same float64 weights.
    """
    return gaussian_blur_matrix(size, sigma, truncate=truncate)[0]


def graph_blur(image: Any, k_h: Any, k_w: Any, dtype: Any) -> Any:
    """:func:`gaussian_blur` as TensorFlow ops: the ``[R, H, W, C]`` blurs of one image.

    ``image`` is a float64 ``[H, W, C]`` tensor, ``k_h``/``k_w`` the float64
    matrices ``[R, H, H]`` / ``[R, W, W]`` (symmetric: ``"constant"`` borders).
    The products are float64 and, as SciPy rounds, the pass along H is rounded
    to ``dtype`` before the pass along W and the result is in ``dtype``.
    """
    import tensorflow as tf

    f64 = tf.float64
    height, width, channels = tf.unstack(tf.shape(image))
    count = tf.shape(k_h)[0]
    tf_dtype = tf.as_dtype(np.dtype(dtype))
    # Along H: one product [R*H, H] @ [H, C*W], rows (r, i), columns (c, w).
    columns = tf.reshape(tf.transpose(image, [0, 2, 1]), [height, -1])
    first = tf.reshape(tf.matmul(tf.reshape(k_h, [-1, height]), columns),
                       [count, height * channels, width])
    if tf_dtype != f64:
        first = tf.cast(tf.cast(first, tf_dtype), f64)
    # Along W: [H*C, W] @ K_w^T per blur (K_w is symmetric), then [R, H, W, C].
    second = tf.cast(tf.matmul(first, k_w), tf_dtype)
    return tf.transpose(tf.reshape(second, [count, height, channels, width]), [0, 1, 3, 2])


@functools.lru_cache(maxsize=8)
def _distances(size: int) -> np.ndarray:
    """``|i - j|`` for ``i, j < size`` (read-only, cached)."""
    distance = np.abs(np.arange(size)[:, None] - np.arange(size)[None, :])
    distance.setflags(write=False)
    return distance


def blur_matrices(size: int, sigmas: Any, **rule: Any) -> np.ndarray:
    """``[len(sigmas), size, size]``: :func:`gaussian_blur_matrix` of each sigma (float64)."""
    return np.stack([gaussian_blur_matrix(size, float(s), **rule) for s in sigmas])


def _along_h(matrices: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``matrices[r] @ image`` along H for a stack ``[R, H, H]``: one matrix product."""
    count, height = matrices.shape[:2]
    flat = matrices.reshape(count * height, height) @ image.reshape(height, -1)
    return flat.reshape(count, *image.shape)


def _along_w(matrices: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``matrices[r]`` applied along W to ``images[r]`` (``[R, H, W, C]``)."""
    count, height, width, channels = images.shape
    moved = images.transpose(0, 2, 1, 3).reshape(count, width, height * channels)
    return (matrices @ moved).reshape(count, width, height, channels).transpose(0, 2, 1, 3)


def gaussian_blur(
    image: Any, sigma: Any, dtype: Any = np.float64, *, mode: str = "constant",
    truncate: float = TRUNCATE, radius: int | None = None,
) -> np.ndarray:
    """Gaussian blur of an ``[H, W]`` or ``[H, W, C]`` image over its two spatial axes.

    Equals ``scipy.ndimage.gaussian_filter(image.astype(dtype), [s, s(, 0)],
    mode=mode, truncate=truncate, radius=radius)`` (see
    :func:`gaussian_blur_matrix` for the kernel and border rules) up to float64
    rounding, and rounds as SciPy does: the products are float64, and the
    result of the pass along H, then along W, is rounded to ``dtype`` (so a
    float32 result is SciPy's float32 result, almost always to the bit). No
    SciPy; two matrix products, so the cost does not grow with ``sigma``.

    ``sigma`` a number gives one image of ``image``'s shape; a sequence gives the
    stack ``[len(sigma), *image.shape]``, one blur per entry.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image: expected [H, W] or [H, W, C], got shape {image.shape}")
    dtype = np.dtype(dtype)
    sigmas = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    height, width = image.shape[:2]
    rule = {"mode": mode, "truncate": truncate, "radius": radius}
    k_h = blur_matrices(height, sigmas, **rule)
    k_w = k_h if width == height else blur_matrices(width, sigmas, **rule)
    x = image.astype(dtype, copy=False).astype(np.float64).reshape(height, width, -1)
    first = _along_h(k_h, x)
    if dtype != np.float64:
        first = first.astype(dtype).astype(np.float64)  # SciPy's output array between passes
    out = _along_w(k_w, first).astype(dtype, copy=False).reshape(len(sigmas), *image.shape)
    return out[0] if np.ndim(sigma) == 0 else out
