"""LayerConductance: sum over units = the IG total, hand-derived per-unit flow, resizing,
refusals; and layer / neuron attribution with the ordinary methods (x internal, y one unit)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import IntegratedGradients
from saliency_tf1.engine.paths import quadrature
from saliency_tf1.methods.grad_cam import resize_matrix
from saliency_tf1.methods.gradient_x_input import GradientXInput
from saliency_tf1.methods.layer_conductance import LayerConductance

v1 = tf.compat.v1


@pytest.mark.parametrize("rule, steps", [("pair", 7), ("midpoint", 5), ("gauss_legendre", 6)])
def test_sum_over_units_is_the_integrated_gradients_total(relu_cnn, rng, rule, steps):
    m = relu_cnn
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    bases = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    cond = LayerConductance(m.graph, m.session, m.y, m.x, m.conv)
    ig = IntegratedGradients(m.graph, m.session, m.y, m.x)
    per_unit = cond.GetMaskBatch(xs, x_baseline=bases, x_steps=steps, rule=rule, batch_size=5)
    totals = ig.GetMaskBatch(xs, x_baseline=bases, x_steps=steps, rule=rule)
    assert per_unit.shape == (3, *m.conv.shape.as_list()[1:])
    np.testing.assert_allclose(per_unit.reshape(3, -1).sum(1), totals.reshape(3, -1).sum(1),
                               rtol=1e-4, atol=1e-5)
    # The split is not trivial: units differ in sign.
    assert (per_unit > 1e-6).any() and (per_unit < -1e-6).any()


def test_each_units_flow_is_its_hand_derived_integral(rng):
    """h = relu(x W + b), y = u . h: cond_j = sum_k w_k u_j [z_j(a_k) > 0] (W^T (x - x'))_j."""
    W, b, u = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=6)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        h = tf.nn.relu(x @ tf.constant(W, tf.float32) + b.astype(np.float32))
        y = tf.reduce_sum(h * u.astype(np.float32), 1)
    point, base = rng.normal(size=4).astype(np.float32), rng.normal(size=4).astype(np.float32)
    with v1.Session(graph=graph) as session:
        got = LayerConductance(graph, session, y, x, h).GetMask(point, x_baseline=base,
                                                               x_steps=40, rule="midpoint")
    alphas, weights = quadrature("midpoint", 40)
    d = point.astype(np.float64) - base
    z = (base + alphas[:, None] * d) @ W + b
    expected = (weights[:, None] * (z > 0) * u * (d @ W)).sum(0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_resize_sums_channels_and_resizes_to_the_input(relu_cnn, rng):
    m = relu_cnn
    with m.graph.as_default():
        pooled = tf.nn.avg_pool2d(m.conv, 2, 2, "VALID")  # 8 x 8 x 8
        y = tf.reduce_sum(tf.reduce_mean(pooled, [1, 2]) * [1.0, -1, 2, 0, 1, 1, -2, 1], 1)
    cond = LayerConductance(m.graph, m.session, y, m.x, pooled)
    point = rng.normal(size=(16, 16, 3)).astype(np.float32)
    full = cond.GetMask(point, x_steps=4)
    heat = cond.GetMask(point, x_steps=4, resize=True)
    expected = resize_matrix(8, 16) @ full.sum(-1) @ resize_matrix(8, 16).T
    assert heat.shape == (16, 16)
    np.testing.assert_allclose(heat, expected, rtol=1e-5, atol=1e-7)


def test_layer_attribution_is_the_ordinary_api_on_an_internal_tensor(relu_cnn, rng):
    """captum's layer IG / layer gradient x activation: x = the layer, fed directly."""
    m = relu_cnn
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    acts = m.session.run(m.conv, {m.x: xs})
    layer_ig = IntegratedGradients(m.graph, m.session, m.y, m.conv).GetMaskBatch(acts,
                                                                               x_steps=8)
    layer_gxa = GradientXInput(m.graph, m.session, m.y, m.conv).GetMaskBatch(acts)
    # An independent model that starts at the layer: GAP then the dense weights.
    wd = m.session.run(m.graph.get_tensor_by_name("logits:0").op.inputs[1])[:, 0]
    grad = np.broadcast_to(wd / 256.0, acts.shape)  # y = mean_hw(conv) . wd: linear in conv
    np.testing.assert_allclose(layer_gxa, acts * grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer_ig, acts * grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(layer_ig.reshape(2, -1).sum(1), m.session.run(
        m.y, {m.conv: acts}), rtol=1e-5)


def test_neuron_attribution_is_the_ordinary_api_with_y_one_unit(relu_cnn, rng):
    """captum's neuron IG: y = one unit of the layer; completeness gives that unit's value."""
    m = relu_cnn
    point = rng.normal(size=(16, 16, 3)).astype(np.float32)
    acts = m.session.run(m.conv, {m.x: point[None]})[0]
    r, c, k = np.unravel_index(np.argmax(acts[2:-2, 2:-2]), acts[2:-2, 2:-2].shape)
    with m.graph.as_default():
        unit = m.conv[:, r + 2, c + 2, k]  # an active unit away from the border
    mask, error = IntegratedGradients(m.graph, m.session, unit, m.x).GetMask(
        point, x_steps=64, rule="gauss_legendre", return_error=True)
    value = m.session.run(unit, {m.x: point[None]})[0]
    assert abs(mask.sum() - value) < 0.02 * abs(value) + 1e-3 and abs(error) < 0.02
    assert value > 0
    outside = np.ones(mask.shape, bool)
    outside[r:r + 5, c:c + 5] = False  # two 3x3 convolutions: a 5x5 receptive field
    assert np.all(mask[outside] == 0) and np.abs(mask).max() > 0


def test_bad_layers_are_refused_by_name_and_add_no_ops(relu_cnn):
    m = relu_cnn
    with m.graph.as_default():
        other = v1.placeholder(tf.float32, [None, 4], name="other")
        side = tf.identity(other * 2.0, name="side")
        stopped = tf.stop_gradient(m.conv, name="stopped")
        y_stopped = tf.reduce_sum(stopped, [1, 2, 3]) + m.y
    ops = m.op_count()
    cases = [(None, m.y, TypeError, "layer: expected the internal"),
             (side, m.y, ValueError, "layer: tensor 'side:0' is not between x"),
             (m.x, m.y, ValueError, "layer: tensor 'x:0' is not between x"),
             (stopped, y_stopped, ValueError, "layer: the path x -> 'stopped:0' -> y is not"),
             (3, m.y, TypeError, "layer: expected a graph tf.Tensor")]
    for layer, y, error, message in cases:
        with pytest.raises(error, match=message):
            LayerConductance(m.graph, m.session, y, m.x, layer)
    assert m.op_count() == ops
    cond = LayerConductance(m.graph, m.session, m.y, m.x, m.conv)
    on_logits = LayerConductance(m.graph, m.session, m.y, m.x, m.logits)
    built = m.op_count()
    with pytest.raises(ValueError, match="resize: needs a \\[batch, h, w, c\\] layer"):
        on_logits.GetMask(np.zeros((16, 16, 3), np.float32), resize=True)
    with pytest.raises(TypeError, match="resize: expected True or False"):
        cond.GetMask(np.zeros((16, 16, 3), np.float32), resize="yes")
    cond.GetMask(np.zeros((16, 16, 3), np.float32), x_steps=3)
    cond.GetMaskBatch(np.zeros((2, 16, 16, 3), np.float32), x_steps=3)
    cond.GetSmoothedMask(np.ones((16, 16, 3), np.float32), x_steps=2, nsamples=2, seed=0)
    assert on_logits.GetMask(np.ones((16, 16, 3), np.float32), x_steps=2).shape == (5,)
    assert m.op_count() == built
