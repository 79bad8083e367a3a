"""GradientSaliency and the shared machinery it exercises (batching, SmoothGrad, feeds)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import ClassTarget, GradientSaliency, PerExample
from saliency_tf1.engine.noise import noise_key, standard_normal

v1 = tf.compat.v1


def analytic_gradient(x):
    x = np.asarray(x, np.float64)
    return np.stack([np.full_like(x[..., 0], 5.0), 2 * x[..., 1], np.cos(x[..., 2])], axis=-1)


def test_gradient_is_exact_on_analytic_function(analytic):
    method = GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    for point in ([1.0, 2.0, 3.0], [-0.5, 0.0, 10.0], [0.0, -7.0, 0.25]):
        np.testing.assert_allclose(method.GetMask(np.array(point)), analytic_gradient(point),
                                   rtol=1e-6, atol=1e-6)


def test_batch_equals_loop_on_relu_cnn(relu_cnn, rng):
    method = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    xs = rng.normal(size=(7, 16, 16, 3)).astype(np.float32)
    looped = np.stack([method.GetMask(x) for x in xs])
    for batch_size in (1, 3, 7, 100):
        np.testing.assert_allclose(method.GetMaskBatch(xs, batch_size=batch_size), looped,
                                   rtol=1e-5, atol=1e-6)
    # And against an independent tf.gradients run.
    with relu_cnn.graph.as_default():
        grad = tf.gradients(relu_cnn.y, relu_cnn.x)[0]
    np.testing.assert_allclose(looped, relu_cnn.session.run(grad, {relu_cnn.x: xs}),
                               rtol=1e-5, atol=1e-6)


def test_smoothgrad_zero_noise_single_sample_is_the_gradient(analytic):
    method = GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    point = np.array([1.0, 2.0, 3.0], np.float32)
    grad = analytic_gradient(point)
    squared = method.GetSmoothedMask(point, stdev_spread=0.0, nsamples=1, seed=0)
    plain = method.GetSmoothedMask(point, stdev_spread=0.0, nsamples=1, magnitude=False, seed=0)
    np.testing.assert_allclose(squared, grad**2, rtol=1e-6)
    np.testing.assert_allclose(plain, grad, rtol=1e-6, atol=1e-7)


def graph_noise(seed, count, size):
    """Samples 0..count-1 of the in-graph stream, by TF's stateless Philox op in a graph of
    its own: sample k is the normals at counter k * ceil(size / 4) of the seed's key."""
    blocks = -(-size // 4)
    graph = tf.Graph()
    with graph.as_default():
        z = tf.raw_ops.StatelessRandomNormalV2(
            shape=[count, 4 * blocks], key=tf.constant([noise_key(seed)], tf.uint64),
            counter=tf.constant([0, 0], tf.uint64), alg=1, dtype=tf.float32)
    with v1.Session(graph=graph) as session:
        return session.run(z)[:, :size].astype(np.float64)


@pytest.mark.parametrize("in_graph", [True, False])
def test_smoothgrad_matches_its_definition(analytic, in_graph):
    """mean over samples of grad(x + e_k) (or its square) with e_k drawn from the same seed:
    TF's stateless Philox stream in the graph, saliency_tf1.engine.noise's on the host."""
    method = GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    method.in_graph = in_graph
    assert method.in_graph_unavailable == {}
    point = np.array([0.5, -1.0, 2.0], np.float32)
    stdev = np.float32(0.2 * (point.max() - point.min()))
    unit = graph_noise(7, 40, 3) if in_graph else standard_normal(noise_key(7), 0, 40, 3)
    grads = analytic_gradient(point + unit * stdev)  # sample k: noise k of the seed
    np.testing.assert_allclose(
        method.GetSmoothedMask(point, stdev_spread=0.2, nsamples=40, seed=7, batch_size=16),
        np.mean(grads**2, axis=0), rtol=1e-5)
    np.testing.assert_allclose(
        method.GetSmoothedMask(point, stdev_spread=0.2, nsamples=40, magnitude=False, seed=7),
        np.mean(grads, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        method.GetSmoothedMask(point, stdev_spread=0.2, nsamples=40, statistic="variance",
                               seed=7, batch_size=3),
        np.var(grads, axis=0), rtol=1e-4, atol=1e-6)


def test_smoothgrad_seed_reproducible_and_batch_size_invariant(relu_cnn, rng):
    method = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    a = method.GetSmoothedMask(x, seed=3)
    b = method.GetSmoothedMask(x, seed=3, batch_size=4)
    c = method.GetSmoothedMask(x, seed=4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert not np.allclose(a, c)
    # seed=None draws from NumPy's global state, as PAIR does.
    np.random.seed(11)
    d = method.GetSmoothedMask(x)
    np.random.seed(11)
    np.testing.assert_array_equal(d, method.GetSmoothedMask(x))


def test_uint8_input_accumulates_in_float(relu_cnn):
    method = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    smooth = method.GetSmoothedMask(img, nsamples=4, seed=0)
    assert smooth.dtype == np.float32 and np.all(np.isfinite(smooth)) and smooth.max() > 0
    np.testing.assert_allclose(method.GetMask(img), method.GetMask(img.astype(np.float32)))


def test_session_run_counts(relu_cnn, counting, rng):
    spy = counting(relu_cnn.session)
    method = GradientSaliency(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    method.GetSmoothedMask(x, nsamples=25, batch_size=25, seed=0)
    assert spy.run.call_count == 1
    spy.run.reset_mock()
    method.GetSmoothedMask(x, nsamples=25, seed=0)  # default batch size batches too
    assert spy.run.call_count == 1
    spy.run.reset_mock()
    method.GetSmoothedMask(x, nsamples=25, batch_size=10, seed=0)
    assert spy.run.call_count == 3
    spy.run.reset_mock()
    method.GetMaskBatch(np.stack([x] * 32))
    assert spy.run.call_count == 1


def test_graph_does_not_grow(relu_cnn, rng):
    method = GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    before = relu_cnn.op_count()
    GradientSaliency(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)  # shares the ops
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    for _ in range(100):
        method.GetMask(x)
        method.GetMaskBatch(x[None])
        method.GetSmoothedMask(x, nsamples=2, seed=0)
    assert relu_cnn.op_count() == before


def test_feed_dict_tensor_and_name_keys_never_mutated():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 2], name="x")
        scale = v1.placeholder(tf.float32, [], name="scale")
        y = scale * tf.reduce_sum(x**2, axis=1)
    with v1.Session(graph=graph) as session:
        method = GradientSaliency(graph, session, y, x)
        point = np.array([1.0, -2.0], np.float32)
        for feed in ({scale: 3.0}, {"scale:0": 3.0}, {"scale": 3.0}):
            snapshot = dict(feed)
            np.testing.assert_allclose(method.GetMask(point, feed), [6.0, -12.0])
            np.testing.assert_allclose(method.GetSmoothedMask(point, feed, stdev_spread=0,
                                                              nsamples=3, magnitude=False),
                                       [6.0, -12.0])
            assert feed == snapshot
        with pytest.raises(ValueError, match="missing a value for placeholder.*scale"):
            method.GetMask(point)
        with pytest.raises(ValueError, match="feed_dict: key 'nope:0' names no tensor"):
            method.GetMask(point, {"nope:0": 1.0})
        with pytest.raises(ValueError, match="must not feed x"):
            method.GetMask(point, {scale: 1.0, x: point[None]})
        with pytest.raises(ValueError, match=r"expected a value of shape \(\)"):
            method.GetMask(point, {scale: [1.0, 2.0]})


def test_scalar_y_runs_one_example_per_call(counting):
    """PAIR-style y = logits[0, k] (shape ()) only sees the first row: we feed one row per run."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = tf.reduce_sum(x**2, axis=1)[0]
    with v1.Session(graph=graph) as session:
        spy = counting(session)
        method = GradientSaliency(graph, spy, y, x)
        xs = np.arange(12, dtype=np.float32).reshape(4, 3)
        np.testing.assert_allclose(method.GetMaskBatch(xs), 2 * xs)
        assert spy.run.call_count == 4


def test_fixed_outer_dimension_is_padded():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [3, 2])
        y = tf.reduce_sum(x**3, axis=1)
    with v1.Session(graph=graph) as session:
        method = GradientSaliency(graph, session, y, x)
        xs = np.arange(10, dtype=np.float32).reshape(5, 2)
        np.testing.assert_allclose(method.GetMaskBatch(xs, batch_size=4), 3 * xs**2)
        np.testing.assert_allclose(method.GetMask(xs[1]), 3 * xs[1] ** 2)


def test_class_target_per_example_and_predicted(demo_model):
    m = demo_model
    method = GradientSaliency(m.graph, m.session, m.target.y, m.x)
    images = m.data.images[:3]
    classes = np.array([2, 0, 3])
    batch = method.GetMaskBatch(images, m.target.feed(classes), batch_size=2)
    for img, k, mask in zip(images, classes, batch):
        with m.graph.as_default():
            grad = tf.gradients(m.logits[:, int(k)], m.x)[0]
        np.testing.assert_allclose(mask, m.session.run(grad, {m.x: img[None]})[0],
                                   rtol=1e-4, atol=1e-6)
    # Predicted class of the clean input, held fixed for every noisy sample.
    predicted = int(m.session.run(m.target.predictions, {m.x: images[:1]})[0])
    feed = m.target.feed_predicted(m.session, m.x, images[0])
    np.testing.assert_allclose(
        method.GetSmoothedMask(images[0], feed, nsamples=6, seed=1),
        method.GetSmoothedMask(images[0], m.target.feed(predicted), nsamples=6, seed=1))
    with pytest.raises(ValueError, match="one per input"):
        method.GetMaskBatch(images, {m.target.classes: PerExample([1, 2])})
    with pytest.raises(ValueError, match=r"classes: expected indices in \[0, 4\)"):
        m.target.feed(9)


def test_class_target_rejects_bad_logits():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        column = x[:, 0]
    with pytest.raises(ValueError, match="logits: expected shape"):
        ClassTarget(column)
    with pytest.raises(TypeError, match="logits: expected a graph tf.Tensor"):
        ClassTarget(np.zeros((2, 3)))


@pytest.mark.oracle
def test_same_numbers_as_pair(relu_cnn, rng):
    pair = pytest.importorskip("saliency.tf1")
    m = relu_cnn
    x = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    ours = GradientSaliency(m.graph, m.session, m.y, m.x)
    theirs = pair.GradientSaliency(m.graph, m.session, m.y, m.x)
    np.testing.assert_allclose(ours.GetMask(x), theirs.GetMask(x, feed_dict={}), rtol=1e-6)
    for magnitude in (True, False):
        np.random.seed(5)
        expected = theirs.GetSmoothedMask(x, feed_dict={}, nsamples=7, magnitude=magnitude)
        np.random.seed(5)
        got = ours.GetSmoothedMask(x, nsamples=7, magnitude=magnitude)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
