"""Layer-wise Relevance Propagation through a propagated copy of the model's path.

The backward pass of the copy carries *relevance* ``R`` rather than a
gradient: it starts from ``R_y = f(x)`` (the copy's ``tf.gradients`` is
seeded with ``y``'s value) and every op of the path maps the relevance of its
output to that of its inputs:

* linear ops (dense, convolution, pooling, means, sums, biases, batch norm)
  redistribute it by their rule, written with the gradient trick: for a layer
  ``z = L(a)`` and a rule's modified layer ``z~ = L~(a)``, ``R_a = a *
  L~^T(R / z~)``, where ``L~^T`` is TensorFlow's own gradient of a new op of
  the same type with the rule's weights (e.g. ``max(W, 0)``);
* elementwise nonlinearities pass it unchanged (``R_a = R_z``);
* ops that only move values (reshape, transpose, concat, slicing, gathering,
  padding) and max pooling (winner takes all) route it back with their
  gradient, which conserves it.

An op with no rule (a product of two tensors that depend on ``x``, a softmax,
a function call, ...) is refused when the method is built, naming it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS, Backend, TF1Backend
from ..engine.checks import check_finite_number
from ..engine.graph import tf_module
from .base import TF1Saliency
from .propagation import (
    ATTR_PREFIX,
    CONVOLUTIONS,
    NodeInfo,
    Propagation,
    Rules,
    classify,
    copy_backend,
    propagate,
    register_gradient,
    rule_attr,
    same_op,
    weight_index,
)

#: The registered name of LRP's backward rules (private to this package).
GRADIENT_NAME = "saliency_tf1/LRP"

#: The presets of :class:`LRP` (``rule=``).
RULE_NAMES = ("epsilon", "z_plus", "alpha_beta", "composite")
#: The rules :class:`LRP` can give the first weighted layer (``first_layer=``).
FIRST_LAYER_RULES = ("flat", "w2", "zB")
#: Weighted-layer rules that ignore the layer's bias (and a following batch-norm shift).
_IGNORE_BIAS = ("z_plus", "alpha_beta") + FIRST_LAYER_RULES


# ---------------------------------------------------------------------------
# The backward rules


def _stabilized(z: Any, epsilon: float) -> Any:
    """``z + epsilon * sign(z)`` (where ``z = 0`` the relevance is 0 too: see :func:`_ratio`)."""
    if epsilon == 0.0:
        return z
    return z + epsilon * tf_module().sign(z)


def _ratio(relevance: Any, z: Any) -> Any:
    return tf_module().math.divide_no_nan(relevance, z)


def _transpose(z: Any, a: Any, s: Any) -> Any:
    """``L^T s`` for ``z = L(a)`` linear in ``a`` (TensorFlow's gradient of the new op)."""
    return tf_module().gradients(z, a, grad_ys=s)[0]


def _linear(op: Any, a: Any, w: Any) -> Any:
    """The weighted op ``op`` applied to input ``a`` with weight ``w`` (a new op)."""
    path, weight = weight_index(op)
    inputs = list(op.inputs)
    inputs[path], inputs[weight] = a, w
    return same_op(op, inputs)


def _epsilon(op: Any, relevance: Any, path: list[int]) -> list[Any]:
    """LRP-ε for any linear op: ``R_a = a * L^T(R / (z + ε sign z))`` for each path input."""
    inputs = list(op.inputs)
    s = _ratio(relevance, _stabilized(op.outputs[0], rule_attr(op, "epsilon", 0.0)))
    fresh = same_op(op, inputs)
    grads = tf_module().gradients(fresh, [inputs[k] for k in path], grad_ys=s)
    out: list[Any] = [None] * len(inputs)
    for k, g in zip(path, grads):
        out[k] = None if g is None else inputs[k] * g
    return out


def _alpha_beta(op: Any, relevance: Any, a: Any, w: Any) -> Any:
    """LRP-αβ: ``R_i = sum_j (α z_ij+ / z_j+ - β z_ij- / z_j-) R_j``, ``z_ij = a_i w_ij``.

    ``z+``/``z-`` split each product by sign (bias ignored). On an input
    known to be ``>= 0`` only the ``w+``/``w-`` terms are built.
    """
    tf = tf_module()
    alpha, beta = rule_attr(op, "alpha", 1.0), rule_attr(op, "beta", 0.0)
    w_pos = tf.nn.relu(w)
    w_neg = w - w_pos
    if rule_attr(op, "nonnegative", False):
        groups = [[(a, w_pos)], [(a, w_neg)]]
    else:
        a_pos = tf.nn.relu(a)
        a_neg = a - a_pos
        groups = [[(a_pos, w_pos), (a_neg, w_neg)], [(a_neg, w_pos), (a_pos, w_neg)]]
    total = tf.zeros_like(a)
    for factor, group in zip((alpha, -beta), groups):
        if factor == 0.0:
            continue
        zs = [(inp, _linear(op, inp, weight)) for inp, weight in group]
        s = _ratio(relevance, tf.add_n([z for _, z in zs]))
        total += factor * tf.add_n([inp * _transpose(z, inp, s) for inp, z in zs])
    return total


def _z_plus(op: Any, relevance: Any, a: Any, w: Any) -> Any:
    """LRP-z+: ``R_i = sum_j a_i w_ij+ / (sum_i' a_i' w_i'j+) R_j`` (bias ignored)."""
    w_pos = tf_module().nn.relu(w)
    z = _linear(op, a, w_pos)
    return a * _transpose(z, a, _ratio(relevance, z))


def _bounds(op: Any, a: Any) -> tuple[Any, Any]:
    """``z^B``'s lower and upper input bounds, broadcast to ``a``'s shape."""
    tf = tf_module()
    low, high = rule_attr(op, "low"), rule_attr(op, "high")
    ones = tf.ones_like(a)
    if low is not None:
        return ones * low, ones * high
    flat = tf.reshape(a, [tf.shape(a)[0], -1])
    keep = [-1] + [1] * (a.shape.rank - 1)
    return (ones * tf.reshape(tf.reduce_min(flat, 1), keep),
            ones * tf.reshape(tf.reduce_max(flat, 1), keep))


def _first_layer(op: Any, relevance: Any, a: Any, w: Any, rule: str) -> Any:
    """The input layer's rules: flat, w² and z^B (Montavon et al., 2017, 2019)."""
    tf = tf_module()
    if rule in ("flat", "w2"):
        ones = tf.ones_like(a)
        weight = tf.ones_like(w) if rule == "flat" else tf.square(w)
        z = _linear(op, ones, weight)
        return _transpose(z, ones, _ratio(relevance, z))
    low, high = _bounds(op, a)
    w_pos = tf.nn.relu(w)
    w_neg = w - w_pos
    z_l, z_h = _linear(op, low, w_pos), _linear(op, high, w_neg)
    # The layer's own output is z_a = L(a, w); a new op gives its transpose (its forward
    # pass is pruned at run time: the transpose does not read it).
    s = _ratio(relevance, op.outputs[0] - z_l - z_h)
    return (a * _transpose(_linear(op, a, w), a, s) - low * _transpose(z_l, low, s)
            - high * _transpose(z_h, high, s))


def _lrp_gradient(op: Any, *grads: Any) -> list[Any]:
    tf = tf_module()
    relevance = tf.convert_to_tensor(grads[0])
    rule = rule_attr(op, "rule")
    path = [int(k) for k in rule_attr(op, "path_inputs", "0").split(",")]
    out: list[Any] = [None] * len(op.inputs)
    if rule == "pass":
        a = op.inputs[path[0]]
        if op.type in ("Mul", "RealDiv", "Div", "Add", "AddV2", "Sub"):
            # The path operand may have been broadcast: sum the relevance back to its shape.
            relevance = tf.gradients(tf.broadcast_to(a, tf.shape(relevance)), a,
                                     grad_ys=relevance)[0]
        out[path[0]] = relevance
        return out
    if rule == "epsilon":
        return _epsilon(op, relevance, path)
    p, q = weight_index(op)
    a, w = op.inputs[p], op.inputs[q]
    if rule == "z_plus":
        out[p] = _z_plus(op, relevance, a, w)
    elif rule == "alpha_beta":
        out[p] = _alpha_beta(op, relevance, a, w)
    else:
        out[p] = _first_layer(op, relevance, a, w, rule)
    return out


# ---------------------------------------------------------------------------
# Choosing each node's rule


def _ignores_bias(node: Any) -> bool:
    return node is not None and node.attr[ATTR_PREFIX + "ignores_bias"].b


def _assigner(rule: str, epsilon: float, alpha: float, beta: float, first_layer: str | None,
              bounds: tuple[float, float] | None):
    def assign(info: NodeInfo) -> dict[str, Any] | None:
        kind = classify(info, "LRP")
        base = {"path_inputs": ",".join(map(str, info.path_inputs))}
        if kind in ("inert", "route", "max_pool"):
            return None  # the gradient routes relevance (max pooling: winner takes all)
        if kind in ("nonlinear", "scale"):
            return {**base, "rule": "pass"}
        if kind == "sum":
            return {**base, "rule": "epsilon", "epsilon": epsilon}
        # Where a bias or batch norm follows, the layer's z is the last affine op's
        # output: that op stabilises with ε, the ones before it divide exactly.
        layer_epsilon = 0.0 if info.affine_follows else epsilon
        if kind in ("bias", "batch_norm"):
            # Ignored after a layer whose rule ignores biases (z+, αβ, the first-layer
            # rules), and anywhere in the z+ and αβ presets.
            ignore = rule in ("z_plus", "alpha_beta") or _ignores_bias(info.producers[0])
            if ignore:
                return {**base, "rule": "pass", "ignores_bias": True}
            return {**base, "rule": "epsilon", "epsilon": layer_epsilon}
        # A weighted linear op: the preset's rule, or the first layer's.
        chosen = rule
        if first_layer is not None and info.first_layer:
            chosen = first_layer
        elif rule == "composite":
            chosen = "alpha_beta" if info.type in CONVOLUTIONS else "epsilon"
        params: dict[str, Any] = {**base, "rule": chosen, "path_input": info.path_inputs[0],
                                  "ignores_bias": chosen in _IGNORE_BIAS}
        if chosen == "epsilon":
            params["epsilon"] = layer_epsilon
        elif chosen == "alpha_beta":
            params.update(alpha=alpha, beta=beta, nonnegative=info.nonnegative)
        elif chosen == "zB" and bounds is not None:
            params.update(low=bounds[0], high=bounds[1])
        return params

    return assign


def lrp_rules(rule: str = "epsilon", epsilon: float = 1e-6, alpha: float = 1.0,
              beta: float = 0.0, first_layer: str | None = None,
              bounds: tuple[float, float] | None = None) -> Rules:
    """The :class:`~saliency_tf1.methods.propagation.Rules` of an LRP preset (checked)."""
    rule, epsilon, alpha, beta, first_layer, bounds = check_lrp_args(
        rule, epsilon, alpha, beta, first_layer, bounds)
    return Rules(name="lrp", key=(rule, epsilon, alpha, beta, first_layer, bounds),
                 gradient=GRADIENT_NAME,
                 assign=_assigner(rule, epsilon, alpha, beta, first_layer, bounds),
                 seed_with_y=True, warn_functions=False)


def lrp_propagation(graph: Any, y: Any, x: Any, rules: Rules) -> Propagation:
    """The LRP copy of the ``x -> y`` path: its ``y`` and the relevance at ``x`` (built once)."""
    register_gradient(GRADIENT_NAME, _lrp_gradient)
    return propagate(graph, y, x, rules)


def check_lrp_args(rule: Any, epsilon: Any, alpha: Any, beta: Any, first_layer: Any,
                   bounds: Any) -> tuple[str, float, float, float, str | None, Any]:
    """Checks :class:`LRP`'s rule arguments, naming the one at fault."""
    if not isinstance(rule, str) or rule not in RULE_NAMES:
        raise ValueError(f"rule: expected one of {list(RULE_NAMES)}, got {rule!r}")
    epsilon = check_finite_number("epsilon", epsilon, minimum=0.0)
    alpha = check_finite_number("alpha", alpha, minimum=0.0)
    beta = check_finite_number("beta", beta, minimum=0.0)
    if rule in ("alpha_beta", "composite"):
        if abs(alpha - beta - 1.0) > 1e-9:
            raise ValueError(f"alpha, beta: expected alpha - beta = 1 (the rule conserves "
                             f"relevance), got alpha={alpha}, beta={beta}")
    elif (alpha, beta) != (1.0, 0.0):
        raise ValueError(f"alpha, beta: apply to rule='alpha_beta' or 'composite' only; got "
                         f"alpha={alpha}, beta={beta} with rule={rule!r}")
    if first_layer is not None and (not isinstance(first_layer, str)
                                    or first_layer not in FIRST_LAYER_RULES):
        raise ValueError(f"first_layer: expected None or one of {list(FIRST_LAYER_RULES)}, "
                         f"got {first_layer!r}")
    if bounds is not None:
        if first_layer != "zB":
            raise ValueError(f"bounds: apply to first_layer='zB' only, got first_layer="
                             f"{first_layer!r}")
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise TypeError(f"bounds: expected None or (low, high), got {bounds!r}") from None
        low = check_finite_number("bounds[0]", low)
        high = check_finite_number("bounds[1]", high)
        if not low < high:
            raise ValueError(f"bounds: expected low < high, got ({low}, {high})")
        bounds = (low, high)
    return rule, epsilon, alpha, beta, first_layer, bounds


class LRP(TF1Saliency):
    """Layer-wise Relevance Propagation: ``f(x)`` redistributed layer by layer onto ``x``.

    Bach, Binder, Montavon, Klauschen, Müller and Samek, "On Pixel-Wise
    Explanations for Non-Linear Classifier Decisions by Layer-Wise Relevance
    Propagation", PLoS ONE 2015; Montavon, Binder, Lapuschkin, Samek and
    Müller, "Layer-Wise Relevance Propagation: An Overview", in Explainable AI,
    LNCS 11700, 2019. For a layer ``z_j = sum_i a_i w_ij + b_j`` with output
    relevance ``R_j``, the input relevances are

    * ``rule="epsilon"``: ``R_i = sum_j a_i w_ij / (z_j + ε sign(z_j)) R_j``
      (the bias absorbs its share). With ε -> 0 on a ReLU network this is
      Gradient × Input (Ancona et al., ICLR 2018).
    * ``rule="z_plus"``: ``R_i = sum_j a_i w_ij+ / sum_i' a_i' w_i'j+ R_j``
      (bias ignored; relevances keep their sign on ReLU layers).
    * ``rule="alpha_beta"``: ``R_i = sum_j (α (a_i w_ij)+ / z_j+ - β (a_i
      w_ij)- / z_j-) R_j`` with ``α - β = 1`` (bias ignored); ``(1, 0)`` is z+
      on non-negative inputs.
    * ``rule="composite"``: the conv-net preset: αβ (``alpha``, ``beta``; z+
      by default) on convolutions, ε on dense layers (as iNNvestigate's
      sequential presets A/B).

    ``first_layer`` gives the first weighted layer (the one that reads ``x``)
    its own rule in any preset: ``"flat"`` (``R_i = sum_j R_j / n_j``),
    ``"w2"`` (``w_ij^2 / sum_i' w_i'j^2``) or ``"zB"`` (the ``z^B`` rule for
    inputs bounded in ``bounds = (low, high)``, or, with ``bounds=None``, in
    each input's own ``[min, max]``). Pooling, means, sums of two tensors that
    depend on ``x`` use the ε rule in every preset; max pooling gives all to
    the maximum; elementwise nonlinearities (ReLU-like, sigmoid, tanh,
    softplus), scalings and reshapes pass relevance unchanged. On a bias-free
    network relevance is conserved: ``sum(mask) = f(x)`` (exactly for ε = 0).

    The rules are the backward pass of a copy of the ``x -> y`` ops in the
    caller's own graph that reads the model's live variables (as
    :class:`~saliency_tf1.GuidedBackprop`), built once in the constructor;
    fused ops are split as guided backprop does. An op the rules do not know
    is an error naming it, never a silent plain gradient.

    Args:
      graph, session, y, x: as :class:`~saliency_tf1.TF1Saliency`.
      rule: ``"epsilon"``, ``"z_plus"``, ``"alpha_beta"`` or ``"composite"``.
      epsilon: the ε stabiliser (``>= 0``).
      alpha, beta: the αβ rule's weights (``alpha - beta = 1``).
      first_layer: ``None``, ``"flat"``, ``"w2"`` or ``"zB"``.
      bounds: ``(low, high)`` for ``"zB"``; ``None``: each input's own range.

    Example::

        lrp = LRP(graph, session, logits[:, 3], x, rule="composite", first_layer="zB",
                  bounds=(0.0, 1.0))
        relevance = lrp.GetMask(image)
    """

    graph_only = True

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 rule: str = "epsilon", epsilon: float = 1e-6, alpha: float = 1.0,
                 beta: float = 0.0, *, first_layer: str | None = None,
                 bounds: tuple[float, float] | None = None,
                 backend: Backend | None = None) -> None:
        self.rules = lrp_rules(rule, epsilon, alpha, beta, first_layer, bounds)
        (self.rule, self.epsilon, self.alpha, self.beta, self.first_layer,
         self.bounds) = self.rules.key
        super().__init__(graph, session, y, x, backend=backend)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> TF1Backend:
        return copy_backend(graph, session, y, x,
                            lambda: lrp_propagation(graph, y, x, self.rules))

    def GetMask(
        self, x_value: Any, feed_dict: dict | None = None, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Returns the relevance of each feature of ``x_value`` (one input), its shape."""
        return super().GetMask(x_value, feed_dict, batch_size=batch_size)

    def _masks(self, inputs, sources, feed, batch_size):
        return self._evaluate(inputs, INPUT_OUTPUT_GRADIENTS, feed, sources, batch_size)


__all__ = ["LRP", "RULE_NAMES", "check_lrp_args", "lrp_propagation", "lrp_rules"]
