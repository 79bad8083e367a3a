"""Blur IG: integrated gradients along a path of ever stronger Gaussian blurs."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..engine.backend import Backend, TF1Backend
from ..engine.checks import check_finite_number, check_no_extra, check_positive_int
from ..engine.graph import cached_ops, tf_module
from ..engine.paths import integrate_paths
from .base import TF1Saliency

#: Kernel radius in standard deviations, as ``scipy.ndimage.gaussian_filter``'s default.
TRUNCATE = 4.0


def gaussian_blur_matrix(size: int, sigma: float) -> np.ndarray:
    """The ``[size, size]`` matrix of a 1-D Gaussian blur with zero padding.

    ``matrix @ v`` equals ``scipy.ndimage.gaussian_filter1d(v, sigma,
    mode="constant")`` (kernel truncated at ``int(4 sigma + 0.5)``, normalised
    over its full support, zeros beyond the edges); ``sigma <= 1e-15`` is the
    identity, as there. float64.
    """
    if sigma <= 1e-15:
        return np.eye(size)
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * offsets**2)
    kernel /= kernel.sum()
    taps = np.zeros(size)
    reach = min(radius, size - 1)
    taps[: reach + 1] = kernel[radius : radius + reach + 1]
    return taps[_distances(size)]


@functools.lru_cache(maxsize=8)
def _distances(size: int) -> np.ndarray:
    """``|i - j|`` for ``i, j < size`` (read-only, cached)."""
    distance = np.abs(np.arange(size)[:, None] - np.arange(size)[None, :])
    distance.setflags(write=False)
    return distance


def blur_matrices(
    size: int, sigmas: Any, step: float | None, dtype: Any
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Stacks ``[R, size, size]``: ``K`` of each sigma, ``D = K(s + step) - K(s)``, ``K(s + step)``.

    ``D`` is formed in float64 before the cast to ``dtype``; ``step=None``
    returns ``(K, None, None)``.
    """
    now = np.stack([gaussian_blur_matrix(size, s) for s in sigmas])
    if step is None:
        return now.astype(dtype, copy=False), None, None
    ahead = np.stack([gaussian_blur_matrix(size, s + step) for s in sigmas])
    return (now.astype(dtype, copy=False), (ahead - now).astype(dtype, copy=False),
            ahead.astype(dtype, copy=False))


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


def gaussian_blur(image: np.ndarray, sigmas: Any, dtype: Any = np.float64) -> np.ndarray:
    """Blurs one ``H x W x C`` image with each of ``sigmas`` over its two spatial axes.

    Returns ``[len(sigmas), H, W, C]`` of ``dtype``; entry ``r`` equals
    ``scipy.ndimage.gaussian_filter(image, [s, s, 0], mode="constant")`` for
    ``s = sigmas[r]`` up to float rounding in ``dtype`` (computed as two matrix
    products, so its cost does not grow with ``sigma``).
    """
    return blur_path(image, sigmas, None, dtype)[0]


def blur_path(
    image: np.ndarray, sigmas: Any, step: float | None, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray | None]:
    """``B(s)`` and ``B(s + step) - B(s)`` of one ``H x W x C`` image for each ``s`` of ``sigmas``.

    ``B`` is :func:`gaussian_blur`. The difference is computed as
    ``D X K'^T + K X D^T`` with ``K``, ``K'`` the blur matrices of ``s`` and
    ``s + step`` and ``D = K' - K`` (see :func:`blur_matrices`), not as a
    difference of two blurs, so it keeps ``dtype``'s relative precision however
    small ``step`` is. ``step=None`` skips it. NumPy; :class:`GraphBlur` is the
    same computation in TensorFlow.
    """
    image = np.asarray(image)
    height, width, _ = image.shape
    image = image.astype(dtype, copy=False)
    k_h, d_h, ahead_h = blur_matrices(height, sigmas, step, dtype)
    k_w, d_w, ahead_w = (k_h, d_h, ahead_h) if width == height else blur_matrices(
        width, sigmas, step, dtype)
    blurred_h = _along_h(k_h, image)
    points = _along_w(k_w, blurred_h)
    if step is None:
        return points, None
    return points, _along_w(ahead_w, _along_h(d_h, image)) + _along_w(d_w, blurred_h)


class GraphBlur:
    """:func:`blur_path` as TensorFlow ops in the model's graph, run by its session.

    Built once per graph and dtype (constructor time, never in a call). The
    batched matrix products then share TensorFlow's thread pool with the
    model (NumPy's BLAS threads and TensorFlow's contend badly on a busy CPU),
    and run on the session's GPU when it has one.
    """

    def __init__(self, graph: Any, session: Any, dtype: Any) -> None:
        tf = tf_module()
        self.session = session
        self.dtype = np.dtype(dtype)

        def build():
            def stack(name):
                return tf.compat.v1.placeholder(self.dtype, [None, None, None], name=name)

            with tf.compat.v1.name_scope(f"blur_path_{self.dtype.name}"):
                image = stack("image")
                k_h, d_h, k_w, d_w, ahead_w = (stack(n) for n in ("k_h", "d_h", "k_w", "d_w",
                                                                  "ahead_w"))
                blurred_h = tf.einsum("rij,jwc->riwc", k_h, image)
                points = tf.einsum("rvw,rhwc->rhvc", k_w, blurred_h)
                change = (tf.einsum("rvw,rhwc->rhvc", ahead_w,
                                    tf.einsum("rij,jwc->riwc", d_h, image))
                          + tf.einsum("rvw,rhwc->rhvc", d_w, blurred_h))
            return (image, k_h, d_h, k_w, d_w, ahead_w), (points, change)

        self._inputs, self._outputs = cached_ops(graph, ("blur_path", self.dtype.name), build)

    def __call__(self, image: np.ndarray, sigmas: Any, step: float) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        height, width, _ = image.shape
        k_h, d_h, ahead_h = blur_matrices(height, sigmas, step, self.dtype)
        k_w, d_w, ahead_w = (k_h, d_h, ahead_h) if width == height else blur_matrices(
            width, sigmas, step, self.dtype)
        values = (image.astype(self.dtype, copy=False), k_h, d_h, k_w, d_w, ahead_w)
        points, change = self.session.run(self._outputs,
                                          feed_dict=dict(zip(self._inputs, values)))
        return points, change


class BlurIG(TF1Saliency):
    """Blur IG: integrated gradients along the path of Gaussian blurs of the input.

    Xu, Venugopalan and Sundararajan, "Attribution in Scale and Space",
    CVPR 2020, arXiv:2004.03383. With ``sigma_i = i * max_sigma / steps`` (or
    its square root when ``sqrt``) and ``B(s)`` the image blurred over its two
    spatial axes with standard deviation ``s``::

        mask = -sum_{i < steps} (sigma_{i+1} - sigma_i)
               * (B(sigma_i + grad_step) - B(sigma_i)) / grad_step * dy/dx(B(sigma_i))

    which approximates ``integral_0^max_sigma -dy/dx . dB/ds ds``, so the mask
    sums to about ``f(x) - f(B(max_sigma))``. The numbers are PAIR
    ``saliency.tf1`` 0.2.1's for the same arguments (with PAIR's
    ``batch_size=1`` for ``sqrt=True``: PAIR's batched loop gives every row of a
    batch the last row's step ``sigma_{i+1} - sigma_i``; here each row has its own).
    Inputs are ``H x W x C`` images. The blur is PAIR's
    ``scipy.ndimage.gaussian_filter(..., [s, s, 0], mode="constant")``, computed
    (without scipy) as batched matrix products by TensorFlow ops that the
    constructor adds to the model's graph (:class:`GraphBlur`; NumPy over
    non-TF1 backends), in the model's input precision, with the finite
    difference formed without cancellation (:func:`blur_path`). Path points
    are stacked into ``session.run`` batches of ``batch_size`` rows (across
    inputs and SmoothGrad samples too); each batch also takes one small
    ``session.run`` of the blur ops, made while the previous batch runs.

    Example::

        blur_ig = BlurIG(graph, session, logits[:, 3], x)
        mask = blur_ig.GetMask(image)                       # 100 steps: 4 gradient runs
        masks = blur_ig.GetMaskBatch(images, steps=50)      # many images share batches
    """

    default_batch_size = 32

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Backend | None = None) -> None:
        if backend is None and getattr(getattr(x, "shape", None), "rank", None) not in (None, 4):
            raise ValueError(  # before the backend builds any op
                f"x: BlurIG blurs the spatial axes of [batch, H, W, C] images; got x of shape "
                f"{x.shape.as_list()}"
            )
        super().__init__(graph, session, y, x, backend=backend)
        shape = self.backend.input_shape
        if shape is not None and len(shape) != 3:
            raise ValueError(
                f"x: BlurIG blurs the spatial axes of [batch, H, W, C] images; got inputs of "
                f"shape {[None, *shape]}"
            )
        #: Blurs in the model's graph when built on a TF1 session; NumPy otherwise.
        self._graph_blur: GraphBlur | None = None
        if isinstance(self.backend, TF1Backend):
            dtype = np.result_type(self.backend.input_dtype, np.float32)
            self._graph_blur = GraphBlur(self.backend.graph, self.backend.session, dtype)

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        max_sigma: float = 50,
        steps: int = 100,
        grad_step: float = 0.01,
        sqrt: bool = False,
        batch_size: int | None = None,
        *,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the Blur IG mask of one ``H x W x C`` input, shape ``x_value.shape``.

        Args:
          x_value: one image, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          max_sigma: the path's strongest blur (standard deviation in pixels).
          steps: number of blur levels (path points).
          grad_step: the step of the finite difference in ``sigma``.
          sqrt: space the levels as ``sqrt(i * max_sigma / steps)``.
          batch_size: most path points per ``session.run`` (``None``: the class
            default). Decides only how the work is run.
          progress: show a progress bar (``None``: for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, max_sigma=max_sigma, steps=steps,
                               grad_step=grad_step, sqrt=sqrt, batch_size=batch_size,
                               progress=progress)

    def _check_args(self, xs, call, max_sigma=50, steps=100, grad_step=0.01, sqrt=False,
                    progress=None, **kwargs):
        check_no_extra(f"BlurIG.{call}", kwargs)
        if xs.ndim != 4:
            raise ValueError(
                "x_value: BlurIG blurs the spatial axes of an H x W x C image; expected an "
                f"input of rank 3, got shape {xs.shape[1:]}"
            )
        max_sigma = check_finite_number("max_sigma", max_sigma, minimum=0.0)
        steps = check_positive_int("steps", steps)
        grad_step = check_finite_number("grad_step", grad_step, minimum=0.0)
        if grad_step == 0:
            raise ValueError("grad_step: expected a finite number > 0, got 0.0")
        levels = np.arange(steps + 1, dtype=np.float64) * max_sigma / steps
        sigmas = np.sqrt(levels) if sqrt else levels
        args = {"sigmas": sigmas[:-1], "widths": np.diff(sigmas), "grad_step": grad_step,
                "progress": progress}
        return args, steps

    def _masks(self, inputs, sources, feed, batch_size, sigmas, widths, grad_step, progress):
        # widths: each row's own step (PAIR batched: the last row's)
        graph_blur = self._graph_blur
        if graph_blur is not None:
            work = graph_blur.dtype  # the model's input precision (at least float32)
        else:
            # The input's precision, as PAIR (scipy.ndimage keeps the input's dtype).
            work = np.result_type(inputs.dtype, np.float32)
        expand = (slice(None), None, None, None)

        def make_rows(i, k):
            points, weights = [], []
            for start, stop in _runs(i):
                levels = sigmas[k[start:stop]]
                if graph_blur is not None:
                    here, change = graph_blur(inputs[i[start]], levels, grad_step)
                else:
                    here, change = blur_path(inputs[i[start]], levels, grad_step, work)
                points.append(here)
                weights.append(change * (-widths[k[start:stop]] / grad_step).astype(work)[expand])
            return np.concatenate(points), np.concatenate(weights)

        sums, _ = integrate_paths(self.backend, len(inputs), len(sigmas), make_rows, feed, sources,
                                  batch_size, progress=progress, desc="BlurIG")
        return sums.astype(np.result_type(inputs.dtype, np.float32), copy=False)


def _runs(index: np.ndarray):
    """``(start, stop)`` of each run of equal values in ``index``."""
    edges = np.flatnonzero(np.diff(index)) + 1
    bounds = np.concatenate([[0], edges, [len(index)]])
    return zip(bounds[:-1], bounds[1:])
