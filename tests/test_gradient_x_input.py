"""GradientXInput: w * x on linear models, the analytic gradient times x, homogeneity, core API."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from saliency_tf1.compat.call_model import CallModelBackend

from saliency_tf1.engine.backend import INPUT_OUTPUT_GRADIENTS
from saliency_tf1.methods.gradient_x_input import GradientXInput

v1 = tf.compat.v1


def linear_model(w, b):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, len(w)], name="x")
        y = tf.reduce_sum(x * tf.constant(w, tf.float32), axis=1) + b
    return graph, v1.Session(graph=graph), x, y


def test_linear_model_gives_w_times_x(rng):
    w = rng.normal(size=6)
    graph, session, x, y = linear_model(w, 2.5)
    xs = rng.normal(size=(5, 6)).astype(np.float32)
    with session:
        method = GradientXInput(graph, session, y, x)
        batch = method.GetMaskBatch(xs, batch_size=2)
        one = method.GetMask(xs[3])
    np.testing.assert_allclose(batch, xs * w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(one, xs[3] * w, rtol=1e-6, atol=1e-6)


def test_analytic_gradient_times_input(analytic, rng):
    xs = rng.normal(size=(7, 3)).astype(np.float32)
    masks = GradientXInput(analytic.graph, analytic.session, analytic.y,
                           analytic.x).GetMaskBatch(xs)
    x64 = xs.astype(np.float64)
    expected = x64 * np.stack([np.full(7, 5.0), 2 * x64[:, 1], np.cos(x64[:, 2])], axis=1)
    np.testing.assert_allclose(masks, expected, rtol=1e-5, atol=1e-6)


def test_bias_free_relu_net_sums_to_the_output(rng):
    """No biases: f is positively homogeneous, so sum(x * df/dx) = f(x) (Euler)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 2])
        h = tf.nn.relu(tf.nn.conv2d(x, tf.constant(rng.normal(0, .5, (3, 3, 2, 4)),
                                                    tf.float32), 1, "SAME"))
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
        y = tf.reduce_sum(tf.nn.relu(tf.reshape(h, [-1, 64]) @ tf.constant(
            rng.normal(size=(64, 3)), tf.float32)) * [1.0, -2.0, 0.5], axis=1)
    xs = rng.normal(size=(4, 8, 8, 2)).astype(np.float32)
    with v1.Session(graph=graph) as session:
        masks = GradientXInput(graph, session, y, x).GetMaskBatch(xs)
        np.testing.assert_allclose(masks.reshape(4, -1).sum(1), session.run(y, {x: xs}),
                                   rtol=1e-4, atol=1e-5)


def test_core_api_backend_gives_the_same_masks(rng):
    """Only the input gradient is asked of the backend: a NumPy model over the core API."""
    w = rng.normal(size=(4, 3))

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        assert expected_keys == [INPUT_OUTPUT_GRADIENTS]
        k = call_model_args["class"]
        return {INPUT_OUTPUT_GRADIENTS: np.broadcast_to(w[:, k], x_batch.shape).copy()}

    xs = rng.normal(size=(6, 4)).astype(np.float32)
    backend = CallModelBackend.for_input(xs, call_model, {"class": 2}, batched=True)
    masks = GradientXInput.from_backend(backend).GetMaskBatch(xs)
    np.testing.assert_allclose(masks, xs * w[:, 2], rtol=1e-6)


def test_smoothed_mask_is_the_mean_over_noisy_copies_and_adds_no_ops(analytic, rng):
    method = GradientXInput(analytic.graph, analytic.session, analytic.y, analytic.x)
    ops = analytic.op_count()
    point = np.array([0.3, -1.2, 0.7], np.float32)
    smooth = method.GetSmoothedMask(point, nsamples=4000, stdev_spread=0.1, magnitude=False,
                                    seed=0)
    # E[(x + e) * grad(x + e)] for e ~ N(0, s^2): [5 x0, 2 (x1^2 + s^2), E[(x2 + e) cos(x2 + e)]]
    s = 0.1 * float(point.max() - point.min())
    e = np.random.default_rng(0).normal(0, s, 200000)
    expected = [5 * point[0], 2 * (point[1] ** 2 + s * s),
                np.mean((point[2] + e) * np.cos(point[2] + e))]
    # Four standard errors of the 4000-sample means (the first term's is 5 s / sqrt(n)).
    np.testing.assert_allclose(smooth, expected, atol=4 * 5 * s / np.sqrt(4000))
    assert analytic.op_count() == ops
