"""DeepLift (Rescale): summation-to-delta on dense/conv/pooling/batch-norm nets, hand-derived
multipliers, the max-pooling rule, refusals naming the op, live weights."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.methods.deeplift import DeepLift
from saliency_tf1.methods.gradient_x_input import GradientXInput

v1 = tf.compat.v1

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# f in TF and in NumPy (float64) for each nonlinearity with a Rescale rule.
NONLINEAR = {
    "Relu": (tf.nn.relu, lambda z: np.maximum(z, 0)),
    "Relu6": (tf.nn.relu6, lambda z: np.clip(z, 0, 6)),
    "LeakyRelu": (lambda t: tf.nn.leaky_relu(t, 0.2), lambda z: np.where(z > 0, z, 0.2 * z)),
    "Elu": (tf.nn.elu, lambda z: np.where(z > 0, z, np.expm1(z))),
    "Selu": (tf.nn.selu, lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z))),
    "Sigmoid": (tf.sigmoid, lambda z: 1 / (1 + np.exp(-z))),
    "Tanh": (tf.tanh, np.tanh),
    "Softplus": (tf.nn.softplus, lambda z: np.log1p(np.exp(z))),
}


def conv_net(act, seed=0, pool="avg"):
    """conv -> act -> batch norm (inference) -> pool -> conv (+bias) -> act -> dense -> act
    -> dense: every kind of layer the summation-to-delta claim covers. (Batch norm after the
    activation: grappler fuses conv + batch norm + tanh into a node with no CPU kernel.)"""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        c = lambda *shape: tf.constant(rng.normal(0, 0.5, shape), tf.float32)  # noqa: E731
        h = act(tf.nn.conv2d(x, c(3, 3, 3, 6), 1, "SAME"))
        h, _, _ = v1.nn.fused_batch_norm(
            h, c(6) + 1.0, c(6), mean=c(6), variance=tf.abs(c(6)) + 0.5, is_training=False)
        h = (tf.nn.avg_pool2d(h, 2, 2, "SAME") if pool == "avg"
             else tf.nn.max_pool2d(h, 2, 2, "SAME"))
        h = act(tf.nn.bias_add(tf.nn.conv2d(h, c(3, 3, 6, 4), 1, "VALID"), c(4)))
        h = act(tf.reshape(h, [-1, 16]) @ c(16, 5) + c(5))
        logits = h @ c(5, 3) + c(3)
        y = logits[:, 1]
    return graph, v1.Session(graph=graph), x, y


@pytest.mark.parametrize("name", sorted(NONLINEAR))
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_summation_to_delta(name, pool):
    graph, session, x, y = conv_net(NONLINEAR[name][0], pool=pool)
    assert name in {op.type for op in graph.get_operations()}
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    ref = rng.normal(size=(8, 8, 3)).astype(np.float32)
    with session:
        dl = DeepLift(graph, session, y, x)
        masks, errors = dl.GetMaskBatch(xs, x_baseline=ref, return_error=True)
        outputs = session.run(y, {x: np.concatenate([xs, ref[None]])})
    delta = outputs[:4] - outputs[4]
    np.testing.assert_allclose(masks.reshape(4, -1).sum(1, dtype=np.float64), delta,
                               rtol=1e-4, atol=1e-4 * np.abs(delta).max())
    np.testing.assert_allclose(errors, 0, atol=1e-4 * np.abs(delta).max())
    assert np.abs(delta).min() > 1e-3  # a real difference was attributed


@pytest.mark.parametrize("name", sorted(NONLINEAR))
def test_hand_derived_rescale_multipliers(name, rng):
    """y = u . f(x W + b): m_j = (f(z_j) - f(z'_j)) / (z_j - z'_j), mask = (x - r) * W (u m)."""
    act, f = NONLINEAR[name]
    W, b, u = 2 * rng.normal(size=(4, 9)), rng.normal(size=9), rng.normal(size=9)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        y = tf.reduce_sum(act(x @ tf.constant(W, tf.float32) + b.astype(np.float32))
                          * u.astype(np.float32), 1)
    xs = rng.normal(size=(6, 4)).astype(np.float32)
    refs = rng.normal(size=(6, 4)).astype(np.float32)
    with v1.Session(graph=graph) as session:
        masks = DeepLift(graph, session, y, x).GetMaskBatch(xs, x_baseline=refs)
    z, zr = xs.astype(np.float64) @ W + b, refs.astype(np.float64) @ W + b
    m = (f(z) - f(zr)) / (z - zr)
    np.testing.assert_allclose(masks, (xs - refs) * ((m * u) @ W.T), rtol=2e-4, atol=2e-5)


def test_zero_reference_on_a_bias_free_relu_net_is_gradient_times_input(rng):
    """Reference 0: every reference activation is 0, so relu(z) / z is relu's gradient."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 6, 6, 2])
        h = tf.nn.relu(tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 2, 4)), tf.float32),
                                    1, "SAME"))
        h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
        y = tf.reduce_sum(tf.nn.relu(tf.reshape(h, [-1, 36]) @ tf.constant(
            rng.normal(size=(36, 3)), tf.float32)), 1)
    xs = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
    with v1.Session(graph=graph) as session:
        deeplift = DeepLift(graph, session, y, x).GetMaskBatch(xs)
        gxi = GradientXInput(graph, session, y, x).GetMaskBatch(xs)
    np.testing.assert_allclose(deeplift, gxi, rtol=1e-4, atol=1e-5)


def test_max_pool_rule_splits_each_window_between_the_two_argmaxes():
    """One 2x2 window, y = max: the input's max at (0,0), the reference's at (1,1)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2, 2, 1])
        y = tf.reshape(tf.nn.max_pool2d(x, 2, 2, "VALID"), [-1])
    point = np.array([[5.0, 1.0], [0.0, 2.0]], np.float32)[..., None]
    ref = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)[..., None]
    with v1.Session(graph=graph) as session:
        mask = DeepLift(graph, session, y, x).GetMask(point, x_baseline=ref)[..., 0]
    # d = x - r: d(argmax x) = 4, d(argmax r) = -1, max x - max r = 2 = l * 4 + (1 - l) * -1.
    lam = 3 / 5
    np.testing.assert_allclose(mask, [[lam * 4, 0], [0, (1 - lam) * -1]], rtol=1e-6)
    assert mask.sum() == pytest.approx(2.0)


@pytest.mark.parametrize("size, stride, padding", [(2, 2, "VALID"), (3, 2, "SAME"),
                                                   (3, 3, "SAME")])
def test_max_pool_windows_with_tied_maxima_still_sum_to_delta(size, stride, padding, rng):
    """ReLU maps with whole windows at 0 (ties everywhere) in the input and the reference;
    non-overlapping (2/2, 3/3) and overlapping (3/2) windows."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 9, 9, 2])
        h = tf.nn.relu(tf.nn.conv2d(x, tf.constant(rng.normal(size=(1, 1, 2, 3)), tf.float32),
                                    1, "SAME") - 0.8)
        h = tf.nn.max_pool2d(h, size, stride, padding)
        y = tf.reduce_sum(h * tf.constant(rng.normal(size=h.shape[1:]), tf.float32), [1, 2, 3])
    xs = rng.normal(size=(4, 9, 9, 2)).astype(np.float32)
    xs[:, :4] = 0.0  # dead rows: windows of zeros
    ref = rng.normal(size=(9, 9, 2)).astype(np.float32)
    ref[5:] = 0.0
    with v1.Session(graph=graph) as session:
        acts = session.run(h.op.inputs[0], {x: np.concatenate([xs, ref[None]])})
        assert (acts == 0).mean() > 0.5
        masks, errors = DeepLift(graph, session, y, x).GetMaskBatch(xs, x_baseline=ref,
                                                                    return_error=True)
        outputs = session.run(y, {x: np.concatenate([xs, ref[None]])})
    np.testing.assert_allclose(masks.reshape(4, -1).sum(1), outputs[:4] - outputs[4],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(errors, 0, atol=1e-5)


def test_live_weights_per_input_baselines_and_no_ops_per_call(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        w = v1.Variable(rng.normal(size=(3, 4)).astype(np.float32))
        y = tf.reduce_sum(tf.tanh(x @ w), 1)
        assign = w.assign(rng.normal(size=(3, 4)).astype(np.float32))
        init = v1.global_variables_initializer()
    xs, refs = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3))
    with v1.Session(graph=graph) as session:
        session.run(init)
        dl = DeepLift(graph, session, y, x)
        ops = len(graph.get_operations())
        batch = dl.GetMaskBatch(xs, x_baseline=refs, batch_size=1)  # pairs of 2 rows
        for i in range(4):
            np.testing.assert_allclose(dl.GetMask(xs[i], x_baseline=refs[i]), batch[i],
                                       rtol=1e-5, atol=1e-6)
        session.run(assign)
        _, errors = dl.GetMaskBatch(xs, x_baseline=refs, return_error=True)
        np.testing.assert_allclose(errors, 0, atol=1e-5)
        assert not np.allclose(dl.GetMaskBatch(xs, x_baseline=refs), batch)
        assert len(graph.get_operations()) == ops


def _one(expr):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4], name="x")
        y = expr(x)
    return graph, x, y


@pytest.mark.parametrize("expr, op_name", [
    (lambda x: tf.reduce_sum(tf.square(x @ tf.ones([4, 2])), 1, name="y"), "Square"),
    (lambda x: tf.reduce_sum(x * tf.nn.relu(x), 1), "mul"),
    (lambda x: tf.nn.softmax(x @ tf.ones([4, 3]))[:, 0], "Softmax"),
    (lambda x: tf.reduce_sum(v1.nn.fused_batch_norm(
        tf.reshape(x, [-1, 1, 2, 2]), tf.ones([2]), tf.zeros([2]), is_training=True)[0],
        [1, 2, 3]), "FusedBatchNorm"),
])
def test_an_op_without_a_rule_is_refused_by_name(expr, op_name):
    graph, x, y = _one(expr)
    with v1.Session(graph=graph) as session:
        ops = len(graph.get_operations())
        with pytest.raises(ValueError, match=f"y: the path from x to y holds op '.*{op_name}"):
            DeepLift(graph, session, y, x)
        assert len(graph.get_operations()) == ops


def test_fixed_batch_or_scalar_output_is_refused():
    graph = tf.Graph()
    with graph.as_default():
        x_fixed = v1.placeholder(tf.float32, [2, 4])
        y_fixed = tf.reduce_sum(tf.nn.relu(x_fixed), 1)
        x = v1.placeholder(tf.float32, [None, 4])
        y_scalar = tf.reduce_sum(tf.nn.relu(x))
    with v1.Session(graph=graph) as session:
        ops = len(graph.get_operations())
        for xt, yt in ((x_fixed, y_fixed), (x, y_scalar)):
            with pytest.raises(ValueError, match="x: DeepLift runs each input with its "
                                                 "reference in one session.run"):
                DeepLift(graph, session, yt, xt)
        assert len(graph.get_operations()) == ops


def test_return_error_is_not_a_smoothing_argument(rng):
    graph, x, y = _one(lambda x: tf.reduce_sum(tf.nn.relu(x), 1))
    with v1.Session(graph=graph) as session:
        dl = DeepLift(graph, session, y, x)
        with pytest.raises(TypeError, match="return_error"):
            dl.GetSmoothedMask(np.ones(4, np.float32), return_error=True)
        smooth = dl.GetSmoothedMask(np.ones(4, np.float32), nsamples=3, seed=0)
        assert smooth.shape == (4,)
