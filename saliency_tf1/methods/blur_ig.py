"""Blur IG: integrated gradients along a path of ever stronger Gaussian blurs."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import Backend, TF1Backend
from ..engine.blur import blur_matrices, gaussian_blur, graph_blur
from ..engine.checks import check_finite_number, check_no_extra, check_positive_int
from ..engine.graph import cached_ops, tf_module
from ..engine.paths import integrate_paths, runs
from ..engine.session import FixedRun
from .base import TF1Saliency


def blur_path(
    image: np.ndarray, sigmas: Any, step: float | None, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray | None]:
    """``B(s)`` and ``B(s + step) - B(s)`` of one ``H x W x C`` image for each ``s`` of ``sigmas``.

    ``B`` is :func:`gaussian_blur` in ``dtype`` with PAIR's border rule (zeros,
    4 sigma): exactly PAIR's arithmetic, which rounds each blur to ``dtype``
    (``scipy.ndimage`` keeps the input's dtype) before subtracting, so in
    float32 the difference carries the cancellation error of PAIR's (about
    ``1e-7 |x| / step``). ``step=None`` skips it. NumPy; :class:`GraphBlur`
    is the same computation in TensorFlow.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if step is None:
        return gaussian_blur(image, sigmas, dtype), None
    both = gaussian_blur(image, np.concatenate([sigmas, sigmas + step]), dtype)
    points = both[: len(sigmas)]
    return points, both[len(sigmas) :] - points


class GraphBlur:
    """:func:`blur_path` as TensorFlow ops in the model's graph, run by its session.

    Built once per graph (constructor time, never in a call). The products
    are float64 whatever the model's precision, and the passes are rounded to
    the image's dtype as :func:`gaussian_blur` does, so the path points are
    PAIR's to the bit: rounding differences of one unit in the last place
    would flip the model's ReLU and max-pool decisions on the nearly flat,
    strongly blurred images, and change the gradients by percents. (float64
    also keeps a GPU's TF32 matrix products out.) The batched matrix products
    share TensorFlow's thread pool with the model (NumPy's BLAS threads and
    TensorFlow's contend badly on a busy CPU), and run on the session's GPU
    when it has one.
    """

    #: The dtypes the blurs round to (an image's, at least float32).
    dtypes = (np.dtype(np.float32), np.dtype(np.float64))

    def __init__(self, graph: Any, session: Any) -> None:
        tf = tf_module()

        def build():
            f64 = tf.float64
            with tf.compat.v1.name_scope("blur_path"):
                image = tf.compat.v1.placeholder(f64, [None, None, None], name="image")
                k_h = tf.compat.v1.placeholder(f64, [None, None, None], name="k_h")
                k_w = tf.compat.v1.placeholder(f64, [None, None, None], name="k_w")
                outputs = {}
                for dtype in self.dtypes:
                    points, ahead = tf.split(graph_blur(image, k_h, k_w, dtype), 2)
                    outputs[dtype] = (points, ahead - points)
            return (image, k_h, k_w), outputs

        inputs, outputs = cached_ops(graph, ("blur_path", "float64-pair"), build)
        self._runs = {dtype: FixedRun(session, outputs[dtype], inputs) for dtype in self.dtypes}

    def __call__(self, image: np.ndarray, sigmas: Any, step: float) -> tuple[np.ndarray,
                                                                             np.ndarray]:
        """``blur_path(image, sigmas, step, dtype)`` with ``dtype`` the image's (>= float32)."""
        dtype = np.result_type(image.dtype, np.float32)
        if dtype not in self.dtypes:
            raise ValueError(f"image: dtype {image.dtype} not supported by the graph blur")
        height, width, _ = image.shape
        sigmas = np.asarray(sigmas, dtype=np.float64)
        both = np.concatenate([sigmas, sigmas + step])
        k_h = blur_matrices(height, both)
        k_w = k_h if width == height else blur_matrices(width, both)
        values = (image.astype(dtype, copy=False).astype(np.float64), k_h, k_w)
        points, change = self._runs[dtype](*values)
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
    (without scipy) as batched float64 matrix products by TensorFlow ops that
    the constructor adds to the model's graph (:class:`GraphBlur`; NumPy over
    non-TF1 backends) and rounded to the input's dtype as SciPy rounds, so the
    path points are PAIR's to the bit and the finite difference is PAIR's
    difference of two rounded blurs (:func:`blur_path`). Path points
    are stacked into ``session.run`` batches of ``batch_size`` rows (across
    inputs and SmoothGrad samples too); each batch also takes one small
    ``session.run`` of the blur ops, made while the previous batch runs.

    Example::

        blur_ig = BlurIG(graph, session, logits[:, 3], x)
        mask = blur_ig.GetMask(image)                       # 100 steps: 4 gradient runs
        masks = blur_ig.GetMaskBatch(images, steps=50)      # many images share batches
    """

    default_batch_size = 32
    #: The blurred path points are built in the graph (TF1), next to the model.
    in_graph_builders = (("blur_paths", {}),)

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
            self._graph_blur = GraphBlur(self.backend.graph, self.backend.session)

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
        # The input's precision, as PAIR (scipy.ndimage keeps the input's dtype).
        work = np.result_type(inputs.dtype, np.float32)
        paths = self._builder("blur_paths")
        if paths is not None and work == paths.dtype:  # the model's precision: same points
            sums = paths.integrate(inputs, sigmas, (-widths / grad_step).astype(work),
                                   grad_step, sources, feed, batch_size, progress)
            return sums.astype(np.result_type(inputs.dtype, np.float32), copy=False)
        if graph_blur is not None and work not in graph_blur.dtypes:
            graph_blur = None
        expand = (slice(None), None, None, None)

        def fill_rows(i, k, out):
            weights = []
            for start, stop in runs(i):
                levels = sigmas[k[start:stop]]
                if graph_blur is not None:
                    here, change = graph_blur(inputs[i[start]], levels, grad_step)
                else:
                    here, change = blur_path(inputs[i[start]], levels, grad_step, work)
                out[start:stop] = here
                # The weight is the blur's own fresh array, scaled in place where it may be.
                factor = (-widths[k[start:stop]] / grad_step).astype(work)[expand]
                own = change.flags.writeable and change.dtype == work
                weights.append(np.multiply(change, factor, out=change if own else None))
            return weights[0] if len(weights) == 1 else np.concatenate(weights)

        sums, _ = integrate_paths(self.backend, len(inputs), len(sigmas), fill_rows, feed, sources,
                                  batch_size, row_shape=inputs.shape[1:], dtype=work,
                                  progress=progress, desc="BlurIG")
        return sums.astype(np.result_type(inputs.dtype, np.float32), copy=False)

