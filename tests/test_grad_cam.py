"""GradCam, GradCamPlusPlus, GuidedGradCam: numpy maps, skimage resizing, PAIR's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import Model

from saliency_tf1 import ClassTarget
from saliency_tf1.engine.backend import TF1Backend
from saliency_tf1.engine.noise import noise_key, standard_normal
from saliency_tf1.methods.grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam, resize_matrix
from saliency_tf1.methods.guided_backprop import GuidedBackprop

v1 = tf.compat.v1


def cam_reference(conv, grads, plus_plus=False):
    """Written out per example and channel, as in the papers (float64)."""
    conv, grads = np.asarray(conv, np.float64), np.asarray(grads, np.float64)
    maps = []
    for A, G in zip(conv, grads):
        cam = np.zeros(A.shape[:2])
        for k in range(A.shape[-1]):
            if plus_plus:
                g = G[:, :, k]
                num = g**2
                den = 2 * g**2 + A[:, :, k].sum() * g**3
                alpha = np.where(den != 0, num / np.where(den != 0, den, 1), 0)
                weight = np.sum(alpha * np.maximum(g, 0))
            else:
                weight = G[:, :, k].mean()
            cam += weight * A[:, :, k]
        maps.append(np.maximum(cam, 0))
    return np.array(maps)


def conv_values_and_gradients(model, xs, feed=None):
    with model.graph.as_default():
        grads = tf.gradients(model.y, model.conv)[0]
    return model.session.run([model.conv, grads], {**(feed or {}), model.x: xs})


def pooled_cnn(size=28):
    """conv-relu-pool-conv-relu-pool-conv-relu (7x7 for 28x28), GAP, dense; y = ClassTarget.

    ``size=None`` leaves the input's height and width open.
    """
    rng = np.random.default_rng(3)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, size, size, 3], name="x")
        h, ch = x, 3
        for i, width in enumerate((6, 8, 10)):
            w = tf.constant(rng.normal(0, 0.5, (3, 3, ch, width)), tf.float32)
            h = tf.nn.relu(tf.nn.conv2d(h, w, 1, "SAME") + 0.03)
            conv = h
            if i < 2:
                h = tf.nn.max_pool2d(h, 2, 2, "SAME")
            ch = width
        logits = tf.matmul(tf.reduce_mean(h, [1, 2]),
                           tf.constant(rng.normal(0, 0.5, (ch, 4)), tf.float32), name="logits")
        target = ClassTarget(logits)
    model = Model(graph, v1.Session(graph=graph), x, target.y, logits=logits, conv=conv,
                  extra={"target": target})
    return model


@pytest.fixture
def pooled():
    model = pooled_cnn()
    yield model
    model.session.close()


@pytest.mark.parametrize("cls", [GradCam, GradCamPlusPlus])
def test_raw_map_equals_numpy_from_fetched_conv_and_gradients(cls, relu_cnn, rng):
    method = cls(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    xs = rng.uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    conv, grads = conv_values_and_gradients(relu_cnn, xs)
    expected = cam_reference(conv, grads, plus_plus=cls is GradCamPlusPlus)
    assert expected.max() > 0
    got = method.GetMaskBatch(xs, should_resize=False, three_dims=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * expected.max())
    for x, want in zip(xs, expected):
        one = method.GetMask(x, should_resize=False)
        assert one.shape == (16, 16, 3)
        np.testing.assert_allclose(one, np.repeat(want[..., None], 3, -1), rtol=1e-4,
                                   atol=1e-6 * expected.max())


@pytest.mark.parametrize("cls", [GradCam, GradCamPlusPlus])
def test_resized_map_shape_range_and_skimage_equality(cls, pooled, rng):
    from skimage.transform import resize

    target = pooled.extra["target"]
    method = cls(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv)
    xs = rng.uniform(0, 1, (3, 28, 28, 3)).astype(np.float32)
    conv, grads = conv_values_and_gradients(pooled, xs, target.feed(1))
    assert conv.shape[1:3] == (7, 7)
    raw = cam_reference(conv, grads, plus_plus=cls is GradCamPlusPlus)
    got = method.GetMaskBatch(xs, target.feed(1), three_dims=False)
    assert got.shape == (3, 28, 28)
    for map_, out in zip(raw, got):
        assert map_.max() > 0
        # Normalised to a peak of 1 before resizing; the resized samples fall
        # between the map's pixel centres, so they stay within [0, 1].
        assert out.min() >= 0 and 0 < out.max() <= 1
        expected = resize((map_ / map_.max()).astype(np.float32), (28, 28))
        np.testing.assert_allclose(out, expected, atol=2e-5)
    three = method.GetMask(xs[0], target.feed(1))
    assert three.shape == (28, 28, 3)
    np.testing.assert_array_equal(three[..., 0], three[..., 2])


@pytest.mark.parametrize("sizes", [(7, 224), (4, 16), (5, 17), (16, 16), (1, 8), (20, 6), (3, 2)])
def test_resize_matrix_equals_skimage(sizes, rng):
    from skimage.transform import resize

    (n_in, n_out), (m_in, m_out) = sizes, (sizes[0] + 2, sizes[1] + 3)
    img = rng.uniform(0, 1, (n_in, m_in))
    expected = resize(img, (n_out, m_out))
    got = np.clip(resize_matrix(n_in, n_out) @ img @ resize_matrix(m_in, m_out).T, img.min(),
                  img.max())
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("cls", [GradCam, GradCamPlusPlus, GuidedGradCam])
def test_batch_equals_loop_and_one_run_per_batch(cls, pooled, rng, counting):
    target = pooled.extra["target"]
    spy = counting(pooled.session)
    method = cls(pooled.graph, spy, pooled.y, pooled.x, pooled.conv)
    xs = rng.uniform(0, 1, (5, 28, 28, 3)).astype(np.float32)
    classes = [0, 3, 1, 2, 0]
    looped = np.stack([method.GetMask(x, target.feed(c)) for x, c in zip(xs, classes)])
    spy.run.reset_mock()
    batched = method.GetMaskBatch(xs, target.feed(classes))
    assert spy.run.call_count == 1
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(method.GetMaskBatch(xs, target.feed(classes), batch_size=2),
                               looped, rtol=1e-5, atol=1e-6)
    assert spy.run.call_count == 1 + 3


@pytest.mark.oracle
def test_same_numbers_as_pair(pooled, relu_cnn, rng):
    pair = pytest.importorskip("saliency.tf1")
    for model, feed in ((pooled, pooled.extra["target"].feed(2)), (relu_cnn, {})):
        ours = GradCam(model.graph, model.session, model.y, model.x, model.conv)
        theirs = pair.GradCam(model.graph, model.session, model.y, model.x, model.conv)
        size = model.x.shape.as_list()[1]
        for x in rng.uniform(0, 1, (2, size, size, 3)).astype(np.float32):
            for should_resize in (True, False):
                for three_dims in (True, False):
                    expected = theirs.GetMask(x, feed_dict=dict(feed),
                                              should_resize=should_resize, three_dims=three_dims)
                    got = ours.GetMask(x, feed, should_resize, three_dims)
                    assert got.shape == expected.shape
                    np.testing.assert_allclose(got, expected, rtol=1e-4,
                                               atol=2e-5 * max(1.0, expected.max()))


def test_guided_grad_cam_is_guided_backprop_times_the_resized_map(pooled, rng, counting):
    target = pooled.extra["target"]
    spy = counting(pooled.session)
    method = GuidedGradCam(pooled.graph, spy, pooled.y, pooled.x, pooled.conv)
    guided = GuidedBackprop(pooled.graph, pooled.session, pooled.y, pooled.x)
    cam = GradCam(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv)
    xs = rng.uniform(0, 1, (3, 28, 28, 3)).astype(np.float32)
    feed = target.feed([1, 2, 3])
    spy.run.reset_mock()
    got = method.GetMaskBatch(xs, feed)
    assert spy.run.call_count == 1 and got.shape == xs.shape
    expected = guided.GetMaskBatch(xs, feed) * cam.GetMaskBatch(xs, feed, three_dims=False)[
        ..., None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.abs(got).max() > 0


def test_zero_map_stays_zero():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        conv = tf.nn.relu(tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]), 1, "SAME"))
        y = -tf.reduce_mean(conv, [1, 2, 3])  # every weight negative, activations >= 0
    with v1.Session(graph=graph) as s:
        img = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
        for cls in (GradCam, GradCamPlusPlus):
            method = cls(graph, s, y, x, conv)
            for should_resize in (True, False):
                mask = method.GetMask(img, should_resize=should_resize)
                assert np.all(np.isfinite(mask)) and not mask.any()
            core = cls.from_backend(TF1Backend(graph, s, y, x, conv))
            assert not core.GetMask(img).any()
        assert not GuidedGradCam(graph, s, y, x, conv).GetMask(img).any()


@pytest.mark.parametrize("cls", [GradCam, GradCamPlusPlus, GuidedGradCam])
def test_numpy_path_from_core_keys_gives_the_same_numbers(cls, pooled, rng):
    target = pooled.extra["target"]
    graph_side = cls(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv)
    # A backend with only the core API's keys, as the compat layer hands over.
    input_gradients = graph_side.backend.fetches["INPUT_OUTPUT_GRADIENTS"]
    core = TF1Backend(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv,
                      input_gradients=input_gradients)
    assert not [k for k in core.keys if k.startswith("saliency_tf1/")]
    numpy_side = cls.from_backend(core)
    xs = rng.uniform(0, 1, (3, 28, 28, 3)).astype(np.float32)
    feed = target.feed([0, 1, 2])
    np.testing.assert_allclose(numpy_side.GetMaskBatch(xs, feed), graph_side.GetMaskBatch(xs, feed),
                               rtol=1e-4, atol=2e-5)
    if cls is not GuidedGradCam:
        np.testing.assert_allclose(
            numpy_side.GetMaskBatch(xs, feed, should_resize=False),
            graph_side.GetMaskBatch(xs, feed, should_resize=False), rtol=1e-4, atol=1e-6)


def test_open_spatial_dimensions_resize_at_run_time(rng):
    static, dynamic = pooled_cnn(28), pooled_cnn(None)
    assert dynamic.x.shape.as_list() == [None, None, None, 3]
    xs = rng.uniform(0, 1, (2, 28, 28, 3)).astype(np.float32)
    with static.session, dynamic.session:
        for cls in (GradCam, GuidedGradCam):
            a = cls(static.graph, static.session, static.y, static.x, static.conv)
            b = cls(dynamic.graph, dynamic.session, dynamic.y, dynamic.x, dynamic.conv)
            feed_a, feed_b = static.extra["target"].feed(1), dynamic.extra["target"].feed(1)
            np.testing.assert_allclose(b.GetMaskBatch(xs, feed_b), a.GetMaskBatch(xs, feed_a),
                                       rtol=1e-4, atol=2e-5)


def test_smoothed_mask_matches_its_definition(pooled, rng):
    target = pooled.extra["target"]
    method = GradCam(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv)
    img = rng.uniform(0, 1, (28, 28, 3)).astype(np.float32)
    stdev = np.float32(0.1 * (img.max() - img.min()))
    noise = standard_normal(noise_key(11), 0, 6, 28 * 28 * 3).reshape(6, 28, 28, 3)
    noisy = img + noise * stdev
    expected = np.mean(method.GetMaskBatch(noisy, target.feed(2), three_dims=False) ** 2, 0)
    got = method.GetSmoothedMask(img, target.feed(2), stdev_spread=0.1, nsamples=6, seed=11,
                                 three_dims=False, batch_size=4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_ops_are_built_once(pooled, rng):
    before = pooled.op_count()
    cam = GradCam(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv)
    built = pooled.op_count()
    assert built > before
    img = rng.uniform(0, 1, (28, 28, 3)).astype(np.float32)
    feed = pooled.extra["target"].feed(0)
    cam.GetMask(img, feed)
    cam.GetMask(img, feed, should_resize=False)
    cam.GetSmoothedMask(img, feed, nsamples=2, seed=0)
    GradCam(pooled.graph, pooled.session, pooled.y, pooled.x, pooled.conv).GetMask(img, feed)
    assert pooled.op_count() == built


def test_bad_inputs_name_the_tensor(relu_cnn):
    g, s, x, y = relu_cnn.graph, relu_cnn.session, relu_cnn.x, relu_cnn.y
    with g.as_default():
        side = tf.nn.relu(x * 2.0, name="side_branch")           # from x, not feeding y
        unrelated = tf.zeros([1, 4, 4, 2], name="unrelated")     # not from x
        pooled = tf.reduce_mean(relu_cnn.conv, [1, 2], name="pooled")
        other = v1.placeholder(tf.float32, [None], name="other")
        not_from_x = tf.identity(other, name="not_from_x")
    before = relu_cnn.op_count()
    for cls in (GradCam, GradCamPlusPlus, GuidedGradCam):
        with pytest.raises(ValueError, match="conv_layer: tensor 'side_branch:0' is not between"):
            cls(g, s, y, x, side)
        with pytest.raises(ValueError, match="conv_layer: tensor 'unrelated:0' is not between"):
            cls(g, s, y, x, unrelated)
        with pytest.raises(ValueError, match="conv_layer: expected a 4-D.*'pooled:0'"):
            cls(g, s, y, x, pooled)
        with pytest.raises(ValueError, match="y: tensor 'not_from_x:0' does not depend on x"):
            cls(g, s, not_from_x, x, relu_cnn.conv)
        with pytest.raises(TypeError, match="conv_layer: expected a graph tf.Tensor"):
            cls(g, s, y, x, np.zeros((1, 4, 4, 2)))
    assert relu_cnn.op_count() == before  # failed constructors add no ops
    cam = GradCam(g, s, y, x, relu_cnn.conv)
    with pytest.raises(TypeError, match="unexpected.*'resize'"):
        cam.GetMask(np.zeros((16, 16, 3)), resize=True)
    with pytest.raises(ValueError, match="x_value: expected one input"):
        cam.GetMask(np.zeros((1, 16, 16, 3)))
