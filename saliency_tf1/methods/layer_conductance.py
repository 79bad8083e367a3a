"""Layer conductance: Integrated Gradients' flow through each unit of an internal layer.

Layer and neuron attributions "in the captum sense" need no classes of their
own here: every method takes any tensor as ``x`` and any scalar-per-example
tensor as ``y``. Attributing ``y`` to an internal layer ``h`` (layer IG,
layer gradient × activation, ...) is the method built with ``x=h`` and called
on values of ``h`` (TF1 feeds any tensor, not just placeholders); attributing
one unit of ``h`` to the input (neuron IG, ...) is the method built with
``y=h[:, unit]``. Conductance is different: it splits the input-to-output IG
path integral by the units of ``h`` it flows through, so it needs ``x``,
``h`` and ``y`` at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import CONVOLUTION_OUTPUT_GRADIENTS, Backend, TF1Backend, differentiable_path
from ..engine.batching import chunk_bounds
from ..engine.checks import check_baselines, check_no_extra
from ..engine.graph import cached_ops, check_tensor, depends_on, tf_module
from ..engine.paths import quadrature
from ..engine.session import Feed, check_graph_and_session, check_input_tensor
from .base import TF1Saliency
from .grad_cam import resize_matrix

#: The backend key of ``d layer / d alpha`` along the path (the layer's tangents).
LAYER_TANGENTS = "LAYER_TANGENTS"


def layer_tangents(graph: Any, layer: Any, x: Any) -> tuple[Any, Any]:
    """``(direction, J_layer(x) @ direction)``: the layer's directional derivative, built once.

    ``direction`` is a ``[None, *x_shape]`` placeholder with a default (zeros),
    fed per row. The Jacobian-vector product is the gradient of a gradient:
    ``g(u) = J^T u`` is linear in ``u``, and ``d (v . g(u)) / d u = J v``; at
    run time only the ops of ``J v`` run (``J^T u`` itself is never needed).
    """
    tf = tf_module()
    v1 = tf.compat.v1

    def build() -> tuple[Any, Any]:
        direction = v1.placeholder_with_default(tf.zeros_like(x), x.shape, name="direction")
        dual = tf.zeros_like(layer, name="dual")
        back = v1.gradients(layer, x, grad_ys=dual)[0]
        forward = v1.gradients(back, dual, grad_ys=direction)[0]
        if forward is None:  # the walk in the constructor should have caught it
            raise ValueError(f"layer: {layer.name!r} is not differentiable with respect to x")
        return direction, tf.identity(forward, name="layer_tangents")

    return cached_ops(graph, ("layer_tangents", layer.name, x.name), build)


def check_layer(graph: Any, session: Any, y: Any, x: Any, layer: Any) -> None:
    """Checks ``layer`` lies between ``x`` and ``y`` with a batch dimension, naming it."""
    check_graph_and_session(graph, session)
    check_input_tensor(x, graph)
    check_tensor("y", y, graph)
    # y's own checks first, with the backend's words (a bad y is not the layer's fault).
    if not y.dtype.is_floating:
        raise TypeError(f"y: expected a floating-point tensor to explain, got dtype "
                        f"{y.dtype.name}")
    if not depends_on(y, x):
        raise ValueError(f"y: tensor {y.name!r} does not depend on x ({x.name!r})")
    if not differentiable_path(y, x):
        raise ValueError(f"y: tensor {y.name!r} is not differentiable with respect to x "
                         f"({x.name!r}): every path from it to y passes a stop_gradient or a "
                         "non-float tensor")
    if layer is None:
        raise TypeError("layer: expected the internal tf.Tensor to attribute to, got None")
    check_tensor("layer", layer, graph)
    if not layer.dtype.is_floating:
        raise TypeError(f"layer: expected a floating-point tensor, got dtype {layer.dtype.name}")
    if layer.shape.rank is None or layer.shape.rank < 1:
        raise ValueError(f"layer: expected a tensor whose outer dimension is the batch, got "
                         f"{layer.name!r} of shape {layer.shape}")
    outer_x, outer_layer = x.shape.as_list()[0], layer.shape.as_list()[0]
    if None not in (outer_x, outer_layer) and outer_x != outer_layer:
        raise ValueError(f"layer: expected outer dimension {outer_x} (x's), got "
                         f"{layer.name!r} of shape {layer.shape}")
    if layer.name == x.name or not depends_on(layer, x) or not depends_on(y, layer):
        raise ValueError(f"layer: tensor {layer.name!r} is not between x ({x.name!r}) and y "
                         f"({y.name!r})")
    if not differentiable_path(y, layer) or not differentiable_path(layer, x):
        raise ValueError(f"layer: the path x -> {layer.name!r} -> y is not differentiable "
                         "(a stop_gradient or a non-float tensor on it)")


class LayerConductance(TF1Saliency):
    """Conductance of each unit of an internal ``layer``: the share of IG flowing through it.

    Dhamdhere, Sundararajan and Yan, "How Important Is a Neuron?", ICLR 2019,
    arXiv:1805.12233. For unit ``j`` of the layer ``h``, on the straight path
    ``x(a) = x' + a (x - x')``::

        cond_j = integral_0^1 dy/dh_j(x(a)) * d h_j(x(a)) / da  da
               = sum_i (x_i - x'_i) integral_0^1 dy/dh_j dh_j/dx_i da

    computed with the same quadrature as Integrated Gradients (``rule``,
    ``x_steps``): ``d h / d a = J_h (x - x')`` is a Jacobian-vector product
    of the layer (see :func:`layer_tangents`), fetched with ``d y / d h`` in
    the same ``session.run``. When every path from ``x`` to ``y`` runs
    through ``h``, the chain rule makes ``sum_j cond_j`` equal to the total
    of the Integrated Gradients mask for the same baseline, steps and rule,
    exactly (to float rounding), and so ``f(x) - f(x')`` up to the
    quadrature error; a path that bypasses ``h`` (a skip connection) is what
    the difference leaves out.

    See the module docstring for layer and neuron attributions with the other
    methods (``x`` an internal tensor fed directly, ``y`` one unit).

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.
      layer: a tensor between ``x`` and ``y``, one row per example, any rank.

    Example::

        cond = LayerConductance(graph, session, logits[:, 3], x, conv_out)
        per_unit = cond.GetMask(image, x_steps=50)           # conv_out's shape
        heat = cond.GetMask(image, resize=True)               # channels summed, image-sized
    """

    graph_only = True
    default_batch_size = 32
    backend_keys = (CONVOLUTION_OUTPUT_GRADIENTS, LAYER_TANGENTS)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 layer: Any = None, *, backend: Backend | None = None) -> None:
        if backend is not None and layer is None:
            layer = getattr(backend, "conv_layer", None)
        self.layer = layer
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        check_layer(graph, session, y, x, self.layer)
        made: list[Any] = []

        def tangents(_: dict) -> dict:
            made.append(layer_tangents(graph, self.layer, x))
            return {LAYER_TANGENTS: made[0][1]}

        backend = TF1Backend(graph, session, y, x, conv_layer=self.layer, conv_rank=None,
                             extra_fetches=tangents)
        self._direction = made[0][0]
        return backend

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        x_baseline: Any = None,
        x_steps: int = 25,
        *,
        batch_size: int | None = None,
        rule: str = "pair",
        resize: bool = False,
    ) -> np.ndarray:
        """Returns the conductance of every unit of ``layer`` for one input (the layer's shape).

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          x_baseline: the path's start, ``x_value``'s shape; zeros if ``None``.
          x_steps: number of path points (quadrature nodes).
          batch_size: most path points per ``session.run``.
          rule: the quadrature rule, as :class:`~saliency_tf1.IntegratedGradients`'s.
          resize: for a ``[batch, h, w, c]`` layer and image input, return the
            conductance summed over channels and resized (bilinearly) to the
            input's height and width instead.
        """
        return super().GetMask(x_value, feed_dict, batch_size=batch_size, x_baseline=x_baseline,
                               x_steps=x_steps, rule=rule, resize=resize)

    def GetMaskBatch(
        self,
        x_batch: Any,
        feed_dict: dict | None = None,
        *,
        x_baseline: Any = None,
        x_steps: int = 25,
        batch_size: int | None = None,
        rule: str = "pair",
        resize: bool = False,
    ) -> np.ndarray:
        """One conductance map per input of ``x_batch``; all paths share batches.

        ``x_baseline``: one for all inputs or one per input. Other arguments
        as in :meth:`GetMask`.
        """
        return super().GetMaskBatch(x_batch, feed_dict, batch_size=batch_size,
                                    x_baseline=x_baseline, x_steps=x_steps, rule=rule,
                                    resize=resize)

    # -- checks and kernel -----------------------------------------------------------

    def _check_args(self, xs, call, x_baseline=None, x_steps=25, rule="pair", resize=False,
                    **kwargs):
        check_no_extra(f"LayerConductance.{call}", kwargs)
        baselines = check_baselines(x_baseline, xs, per_input=call == "GetMaskBatch")
        alphas, weights = quadrature(rule, x_steps)
        if not isinstance(resize, bool | np.bool_):
            raise TypeError(f"resize: expected True or False, got {resize!r}")
        if resize and (self.layer.shape.rank != 4 or xs.ndim != 4
                       or None in self.layer.shape.as_list()[1:3]):
            raise ValueError(f"resize: needs a [batch, h, w, c] layer of known h, w and an "
                             f"image input; got layer {self.layer.name!r} of shape "
                             f"{self.layer.shape} and inputs of shape {xs.shape[1:]}")
        return {"baselines": baselines, "alphas": alphas, "weights": weights,
                "resize": bool(resize)}, len(alphas)

    def _masks(self, inputs, sources, feed, batch_size, baselines, alphas, weights, resize):
        work = np.result_type(inputs.dtype, baselines.dtype, np.float32)
        inputs = inputs.astype(work, copy=False)
        baselines = baselines.astype(work, copy=False)
        if len(baselines) > 1:
            baselines = baselines[sources]
        diffs = inputs - baselines
        # Rows are fed per kernel input: the user's per-input values are
        # re-indexed by kernel input, and each row gets its input's direction.
        per_row = {t: values[sources] for t, values in feed.per_example.items()}
        per_row[self._direction] = diffs.astype(self.backend.input_dtype, copy=False)
        row_feed = Feed(feed.constant, per_row)
        n_nodes = len(alphas)
        expand = (slice(None),) + (None,) * (inputs.ndim - 1)
        sums = None
        keys = [CONVOLUTION_OUTPUT_GRADIENTS, LAYER_TANGENTS]
        for a, b in chunk_bounds(len(inputs) * n_nodes, batch_size):
            i, k = np.divmod(np.arange(a, b), n_nodes)
            base = baselines[0] if len(baselines) == 1 else baselines[i]
            rows = base + alphas[k].astype(work)[expand] * diffs[i]
            out = self.backend.evaluate(rows, keys, row_feed, i)
            grads, tangents = out[CONVOLUTION_OUTPUT_GRADIENTS], out[LAYER_TANGENTS]
            if grads.shape[:1] != (len(rows),) or grads.shape != tangents.shape:
                raise ValueError(f"layer: {self.layer.name!r} gave values of shape "
                                 f"{grads.shape} for {len(rows)} rows; expected one row per "
                                 "example of x")
            if sums is None:
                sums = np.zeros((len(inputs), *grads.shape[1:]), dtype=np.float64)
            flow = grads * tangents
            edges = np.flatnonzero(np.diff(i)) + 1
            for lo, hi in zip(np.r_[0, edges], np.r_[edges, len(i)]):
                sums[i[lo]] += np.einsum("r,r...->...", weights[k[lo:hi]], flow[lo:hi])
        masks = sums.astype(np.result_type(work, np.float32), copy=False)
        if not resize:
            return masks
        height, width = inputs.shape[1:3]
        rows_m = resize_matrix(masks.shape[1], height)
        cols_m = resize_matrix(masks.shape[2], width)
        maps = np.einsum("Hh,nhwc,Ww->nHW", rows_m, masks.astype(np.float64), cols_m)
        return maps.astype(masks.dtype, copy=False)
