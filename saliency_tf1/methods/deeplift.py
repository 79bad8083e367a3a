"""DeepLIFT with the Rescale rule, through a propagated copy of the model's path.

How the reference activations are "in the same batch": the copy of the
``x -> y`` path is fed the rows ``[inputs; references]`` stacked (one
``session.run``, ``2 b`` rows: input ``i`` in row ``i``, its reference in row
``b + i``; the per-input feeds, e.g. a class per input, are given to both
halves). Every op of a model in inference mode computes each row on its own,
so the forward pass yields, at every unit, the input's activation ``a`` in
the first half and the reference's ``r`` in the second. The Rescale gradient
of an elementwise nonlinearity ``z = f(a)`` splits its own input and output
into the two halves and returns ``g * (f(a) - f(r)) / (a - r)`` (for a smooth
``f``, ``g * f'(a)`` where ``a - r`` is below float noise) for the input half
and zero for the reference half (both halves have the same shape); linear ops
keep their gradient, which maps each row to itself. The gradient at ``x`` in
the input half is then DeepLIFT's multiplier ``m``, and the mask is
``(x - r) * m``. No op is added per call, no second graph or session is used,
and the reference costs one extra row per input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, Backend, TF1Backend
from ..engine.batching import chunk_bounds
from ..engine.checks import check_baselines, check_no_extra
from ..engine.graph import check_tensor, tf_module
from ..engine.session import batch_limits, check_graph_and_session, check_input_tensor
from .base import TF1Saliency
from .propagation import (
    NodeInfo,
    Propagation,
    Rules,
    classify,
    copy_backend,
    propagate,
    register_gradient,
)

#: The registered name of DeepLIFT's backward rule (private to this package).
GRADIENT_NAME = "saliency_tf1/DeepLiftRescale"

#: ``|a - r|`` at or below which a unit's multiplier is its derivative at ``a``.
TOLERANCE = 1e-6

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _halves(t: Any) -> tuple[Any, Any]:
    tf = tf_module()
    n = tf.shape(t)[0] // 2
    return t[:n], t[n:]


def _with_zero_half(t: Any) -> Any:
    """``t`` (the input half's gradient) followed by as many rows of zeros (the references')."""
    tf = tf_module()
    rank = t.shape.rank
    if rank is None:
        return tf.concat([t, tf.zeros_like(t)], 0)
    pad = tf.stack([tf.stack([0, tf.shape(t)[0]])] + [tf.constant([0, 0])] * (rank - 1))
    return tf.pad(t, pad)


#: Piecewise-linear nonlinearities: ``(f(a) - f(r)) / (a - r)`` is always between two of
#: their slopes, so it needs no guard against small differences.
_PIECEWISE_LINEAR = ("Relu", "Relu6", "LeakyRelu")


def _derivative(op: Any, a: Any, z: Any) -> Any:
    """``f'(a)`` of a smooth elementwise nonlinearity ``z = f(a)``."""
    tf = tf_module()
    kind = op.type
    if kind == "Elu":
        return tf.where(a > 0, tf.ones_like(a), z + 1)
    if kind == "Selu":
        return tf.where(a > 0, tf.fill(tf.shape(a), tf.cast(SELU_SCALE, a.dtype)),
                        z + SELU_SCALE * SELU_ALPHA)
    if kind == "Sigmoid":
        return z * (1 - z)
    if kind == "Tanh":
        return 1 - z * z
    if kind == "Softplus":
        return tf.sigmoid(a)
    raise TypeError(f"saliency_tf1: no Rescale rule for op type {kind!r} ({op.name!r})")


def _rescale(op: Any, grad: Any) -> Any:
    """Rescale: ``m = (f(a) - f(r)) / (a - r)`` on the input half, zero on the reference half.

    Piecewise-linear ``f``: ``m`` is the exact ratio (0 where ``a = r``: the
    unit then passes no difference on). Smooth ``f``: ``f'(a)`` where ``|a -
    r| <= TOLERANCE``, whose contribution differs from the ratio's by
    ``O(|a - r|^2)``.
    """
    tf = tf_module()
    a_x, a_r = _halves(op.inputs[0])
    z_x, z_r = _halves(op.outputs[0])
    delta_in, delta_out = a_x - a_r, z_x - z_r
    if op.type in _PIECEWISE_LINEAR:
        multiplier = tf.math.divide_no_nan(delta_out, delta_in)
    else:
        near = tf.abs(delta_in) <= TOLERANCE
        multiplier = tf.where(near, _derivative(op, a_x, z_x),
                              delta_out / tf.where(near, tf.ones_like(delta_in), delta_in))
    g_x, _ = _halves(grad)
    return _with_zero_half(g_x * multiplier)


def _max_pool(op: Any, grad: Any) -> Any:
    """Max pooling: the window's ``max a - max r`` split between the two argmaxes.

    With ``i`` the argmax of the input's window and ``j`` the reference's,
    ``d(j) <= max a - max r <= d(i)`` for ``d = a - r``; so ``max a - max r =
    l d(i) + (1 - l) d(j)`` for one ``l`` in ``[0, 1]``, and the multipliers are
    ``l`` at ``i`` and ``1 - l`` at ``j`` (both 1 at a shared argmax: the
    gradient). Contributions sum to the window's difference exactly.

    Multipliers are routed to an argmax with the gradient of a max pool. The
    value of the other half at a window's argmax (``r(i)``, ``a(j)``) is
    gathered, for windows that do not overlap, by routing ones (a one-hot
    mask per window, the very argmax the multipliers are routed to) and max
    pooling the masked values; for overlapping windows with
    ``MaxPoolGradGrad``, the adjoint of that routing.
    """
    tf = tf_module()
    a_x, a_r = _halves(op.inputs[0])
    z_x, z_r = _halves(op.outputs[0])
    pool = {"ksize": op.get_attr("ksize"), "strides": op.get_attr("strides"),
            "padding": op.get_attr("padding"), "data_format": op.get_attr("data_format")}
    r_at_i, a_at_j = _gather(a_x, z_x, a_r, pool), _gather(a_r, z_r, a_x, pool)
    d_i, d_j = z_x - r_at_i, a_at_j - z_r
    spread = d_i - d_j
    share = tf.clip_by_value(tf.math.divide_no_nan(z_x - z_r - d_j, spread), 0.0, 1.0)
    share = tf.where(tf.abs(spread) <= TOLERANCE, tf.ones_like(share), share)
    g_x, _ = _halves(grad)
    routed = _route(a_x, g_x * share, pool) + _route(a_r, g_x * (1 - share), pool)
    return _with_zero_half(routed)


def _route(a: Any, values: Any, pool: dict) -> Any:
    """Each window's value sent to the argmax of ``a``'s window (summed where windows overlap).

    The gradient of a new max pool op: the CPU's oneDNN rewrite serves it much
    faster than a bare ``MaxPoolGrad``.
    """
    tf = tf_module()
    return tf.gradients(tf.raw_ops.MaxPool(input=a, **pool), a, grad_ys=values)[0]


def _gather(a: Any, pooled: Any, other: Any, pool: dict) -> Any:
    """``other``'s value at the argmax of each window of ``a`` (``pooled = max_pool(a)``)."""
    tf = tf_module()
    spatial = slice(1, 3) if pool["data_format"] in (b"NHWC", "NHWC") else slice(2, 4)
    if all(k <= s for k, s in zip(pool["ksize"][spatial], pool["strides"][spatial])):
        one_hot = _route(a, tf.ones_like(pooled), pool) > 0
        masked = tf.where(one_hot, other, tf.fill(tf.shape(other),
                                                  tf.constant(-np.inf, other.dtype)))
        return tf.raw_ops.MaxPool(input=masked, **pool)
    return tf.raw_ops.MaxPoolGradGrad(orig_input=a, orig_output=pooled, grad=other, **pool)


def _deeplift_gradient(op: Any, *grads: Any) -> Any:
    tf = tf_module()
    grad = tf.convert_to_tensor(grads[0])
    if op.type == "MaxPool":
        return _max_pool(op, grad)
    return _rescale(op, grad)


def _assign(info: NodeInfo) -> dict[str, Any] | None:
    kind = classify(info, "DeepLift")
    if kind == "nonlinear":
        return {"rule": "rescale"}
    if kind == "max_pool":
        return {"rule": "max_pool"}
    return None  # linear and routing ops keep their gradient; inert ops pass nothing


RULES = Rules(name="deeplift", key=("rescale",), gradient=GRADIENT_NAME, assign=_assign,
              warn_functions=False)


def deeplift_propagation(graph: Any, y: Any, x: Any) -> Propagation:
    """The DeepLIFT copy of the ``x -> y`` path: its ``y`` and the multipliers at ``x``.

    Fed ``[inputs; references]`` stacked, the gradient's first half is the
    Rescale multipliers of the inputs (the second half is zero). Built once
    per graph, ``y`` and ``x``; refuses, naming it, an op on the path that is
    neither linear in ``x``, nor routing, nor max pooling, nor one of the
    nonlinearities of :data:`~saliency_tf1.methods.propagation.NONLINEAR`.
    """
    register_gradient(GRADIENT_NAME, _deeplift_gradient)
    return propagate(graph, y, x, RULES)


def check_pairs_fit(graph: Any, session: Any, y: Any, x: Any, method: str) -> None:
    """Raises unless one ``session.run`` can take any number of rows (pairs stay together)."""
    check_graph_and_session(graph, session)
    check_input_tensor(x, graph)
    check_tensor("y", y, graph)
    rows_per_run, _ = batch_limits(x, y)
    if rows_per_run is not None:
        raise ValueError(
            f"x: {method} runs each input with its reference in one session.run, which needs "
            f"x with an open batch dimension ([None, ...]) and y with one value per example "
            f"(shape [None]); got x of shape {x.shape} and y of shape {y.shape}"
        )


class DeepLift(TF1Saliency):
    """DeepLIFT with the Rescale rule: contributions of ``x - r`` to ``f(x) - f(r)``.

    Shrikumar, Greenside and Kundaje, "Learning Important Features Through
    Propagating Activation Differences", ICML 2017, arXiv:1704.02685. Each
    elementwise nonlinearity ``z = f(a)`` passes its multiplier ``(f(a) -
    f(a_ref)) / (a - a_ref)`` backward instead of ``f'(a)`` (Relu, Relu6,
    LeakyRelu, Elu, Selu, Sigmoid, Tanh, Softplus); linear ops (dense,
    convolution, bias, average pooling, means, batch norm in inference mode,
    reshapes...) keep their gradient; max pooling splits each window's
    difference between the argmax of the input and that of the reference. The
    mask is ``(x - r) * m`` with ``m`` the multipliers at ``x``, and it sums to
    ``f(x) - f(r)`` (summation-to-delta) up to float rounding;
    ``return_error=True`` reports the difference. An op on the path that the
    rules do not know (a product of two tensors that depend on ``x``, a
    softmax, a function call...) is refused when the method is built, naming it.

    Each input runs with its reference in the same ``session.run`` (see the
    module docstring), through a copy of the ``x -> y`` ops in the caller's
    own graph that reads the model's live variables (as
    :class:`~saliency_tf1.GuidedBackprop` does), so ``x`` must have an open
    batch dimension and ``y`` one value per example. The RevealCancel rule is
    not implemented.

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.

    Example::

        dl = DeepLift(graph, session, logits[:, 3], x)
        mask = dl.GetMask(image)                                  # reference: zeros
        mask, error = dl.GetMask(image, x_baseline=blurred, return_error=True)
    """

    graph_only = True
    backend_keys = (INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES)
    #: Rows per ``session.run`` by default (inputs and references: 16 pairs).
    default_batch_size = 32

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Backend | None = None) -> None:
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        check_pairs_fit(graph, session, y, x, type(self).__name__)
        return copy_backend(graph, session, y, x, lambda: deeplift_propagation(graph, y, x))

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        x_baseline: Any = None,
        *,
        batch_size: int | None = None,
        return_error: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, float]:
        """Returns the DeepLIFT mask of one input against ``x_baseline``, its shape.

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          x_baseline: the reference input, shape ``x_value.shape``; zeros if ``None``.
          batch_size: most rows per ``session.run``; an input and its reference
            are two rows of the same run (``batch_size`` 1 still runs a pair).
          return_error: also return ``sum(mask) - (f(x_value) - f(x_baseline))``.
        """
        out = super().GetMask(x_value, feed_dict, batch_size=batch_size, x_baseline=x_baseline,
                              return_error=return_error)
        return (out[0], float(out[1])) if return_error else out

    def GetMaskBatch(
        self,
        x_batch: Any,
        feed_dict: dict | None = None,
        *,
        x_baseline: Any = None,
        batch_size: int | None = None,
        return_error: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Returns one mask per input of ``x_batch``; ``x_baseline`` is one reference for all
        inputs or one per input (``x_batch``'s shape). With ``return_error``, also the
        ``[N]`` summation-to-delta errors."""
        return super().GetMaskBatch(x_batch, feed_dict, batch_size=batch_size,
                                    x_baseline=x_baseline, return_error=return_error)

    # -- checks and kernel -----------------------------------------------------------

    def _check_args(self, xs, call, x_baseline=None, return_error=False, **kwargs):
        if call == "GetSmoothedMask" and return_error:
            kwargs["return_error"] = return_error
        check_no_extra(f"{type(self).__name__}.{call}", kwargs,
                       " (return_error is available from GetMask/GetMaskBatch only)"
                       if "return_error" in kwargs else "")
        baselines = check_baselines(x_baseline, xs, per_input=call == "GetMaskBatch")
        return {"baselines": baselines, "return_error": bool(return_error)}, 2

    def _masks(self, inputs, sources, feed, batch_size, baselines, return_error):
        work = np.result_type(inputs.dtype, baselines.dtype, np.float32)
        inputs = inputs.astype(work, copy=False)
        baselines = baselines.astype(work, copy=False)
        if len(baselines) > 1:
            baselines = baselines[sources]
        masks = np.empty(inputs.shape, dtype=work)
        errors = np.empty(len(inputs))
        for a, b in chunk_bounds(len(inputs), max(1, batch_size // 2)):
            xs = inputs[a:b]
            refs = np.broadcast_to(baselines[a:b] if len(baselines) > 1 else baselines[0],
                                   xs.shape)
            src = np.concatenate([sources[a:b], sources[a:b]])
            out = self.backend.evaluate(np.concatenate([xs, refs]),
                                        [INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES], feed, src)
            n = b - a
            masks[a:b] = (xs - refs) * out[INPUT_OUTPUT_GRADIENTS][:n]
            ys = out[OUTPUT_LAYER_VALUES].astype(np.float64)
            errors[a:b] = (masks[a:b].reshape(n, -1).sum(axis=1, dtype=np.float64)
                           - (ys[:n] - ys[n:]))
        return (masks, errors) if return_error else masks
