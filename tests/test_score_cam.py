"""Score-CAM: the paper's Algorithm 1 written out in NumPy, run counts, Faster Score-CAM."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import Model

from saliency_tf1 import ClassTarget, PerExample
from saliency_tf1.engine.backend import CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES
from saliency_tf1.methods.grad_cam import GradCam
from saliency_tf1.methods.score_cam import ScoreCam, channel_weights, select_channels

v1 = tf.compat.v1

SIZE, CH, K = 8, 2, 10  # input 8x8x2, conv layer 4x4x10


def known_model(seed=0, size=SIZE):
    """conv = relu(avg_pool_2x2(x) @ Wc + bc), y = sum_k v_k sum(A_k) + 0.1 sum(A_0 A_1) + c_y.

    Float64 throughout; :func:`numpy_model` computes the same in NumPy. The
    class input ``c`` (one per example) shifts ``y``; it must be fed.
    """
    rng = np.random.default_rng(seed)
    wc = rng.normal(0, 0.8, (CH, K))
    bc = rng.uniform(0.2, 0.6, K)
    v = rng.normal(0, 0.3, K)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, [None, size, size, CH], name="x")
        c = v1.placeholder(tf.float64, [None], name="c")
        pooled = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        conv = tf.nn.relu(tf.einsum("nhwc,ck->nhwk", pooled, wc) + bc, name="conv")
        y = (tf.reduce_sum(conv, [1, 2]) @ v[:, None])[:, 0] + 0.1 * tf.reduce_sum(
            conv[..., 0] * conv[..., 1], [1, 2]) + c
    model = Model(graph, v1.Session(graph=graph), x, y, conv=conv, extra={"c": c})
    model.params = (wc, bc, v)
    return model


def numpy_model(params, x, c=0.0):
    """(conv values, y) of :func:`known_model` for one input, in NumPy."""
    wc, bc, v = params
    h, w = x.shape[0] // 2, x.shape[1] // 2
    pooled = x.reshape(h, 2, w, 2, CH).mean(axis=(1, 3))
    conv = np.maximum(pooled @ wc + bc, 0)
    return conv, conv.sum(axis=(0, 1)) @ v + 0.1 * np.sum(conv[..., 0] * conv[..., 1]) + c


def score_cam_reference(params, x, weighting="softmax", top=None, c=0.0):
    """Wang et al. 2020, Algorithm 1, per channel, with skimage's bilinear upsampling."""
    from skimage.transform import resize

    conv, _ = numpy_model(params, x, c)
    _, base = numpy_model(params, np.zeros_like(x), c)  # f(X_b), a black baseline
    channels = [k for k in range(conv.shape[-1]) if np.ptp(conv[..., k]) > 0]
    if top is not None:
        channels = sorted(sorted(channels, key=lambda k: -conv[..., k].var())[:top])
    scores = []
    for k in channels:
        up = resize(conv[..., k], x.shape[:2], order=1, mode="reflect", anti_aliasing=False)
        mask = (up - up.min()) / (up.max() - up.min())
        scores.append(numpy_model(params, x * mask[..., None], c)[1] - base)
    scores = np.array(scores)
    if weighting == "softmax":
        alpha = np.exp(scores - scores.max())
        alpha /= alpha.sum()
    else:  # the scores themselves (the authors' code, with y a probability)
        alpha = scores + base
    return np.maximum(np.tensordot(conv[..., channels], alpha, axes=([-1], [0])), 0)


@pytest.fixture
def known():
    model = known_model()
    yield model
    model.session.close()


def feed(model, c=0.0):
    return {model.extra["c"]: np.full(1, c)}


# -- known answers -------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["softmax", "output"])
def test_raw_map_equals_numpy_algorithm_1(known, rng, weighting):
    method = ScoreCam(known.graph, known.session, known.y, known.x, known.conv)
    for _ in range(3):
        image = rng.uniform(0, 1, (SIZE, SIZE, CH))
        got = method.GetMask(image, feed(known, 0.3), should_resize=False, three_dims=False,
                             weighting=weighting)
        expected = score_cam_reference(known.params, image, weighting, c=0.3)
        assert got.shape == (4, 4) and expected.max() > 0
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_resized_map_is_normalised_and_resized_as_grad_cam(known, rng):
    from skimage.transform import resize

    method = ScoreCam(known.graph, known.session, known.y, known.x, known.conv)
    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    raw = score_cam_reference(known.params, image)
    got = method.GetMask(image, feed(known), three_dims=False)
    np.testing.assert_allclose(got, resize(raw / raw.max(), (SIZE, SIZE)), atol=1e-9)
    three = method.GetMask(image, feed(known))
    assert three.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(three[..., 0], got)


def test_baseline_cancels_in_the_softmax():
    scores = np.array([0.3, -1.2, 2.0, 0.7])
    np.testing.assert_allclose(channel_weights(scores), channel_weights(scores - 5.0))
    np.testing.assert_allclose(channel_weights(scores).sum(), 1.0)
    np.testing.assert_array_equal(channel_weights(scores, "output"), scores)
    big = channel_weights(np.array([1000.0, 999.0]))  # no overflow
    np.testing.assert_allclose(big, [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])


def test_session_runs_are_one_plus_ceil_channels_over_batch_size(known, counting, rng):
    spy = counting(known.session)
    method = ScoreCam(known.graph, spy, known.y, known.x, known.conv)
    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    conv, _ = numpy_model(known.params, image)
    assert all(np.ptp(conv[..., k]) > 0 for k in range(K))  # every channel is masked
    expected = score_cam_reference(known.params, image)
    for batch_size in (1, 3, 4, 10, 64):
        spy.run.reset_mock()
        got = method.GetMask(image, feed(known), should_resize=False, batch_size=batch_size)
        assert spy.run.call_count == -(-K // batch_size) + 1, batch_size
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # A batch of 3 images: one run of conv values, then every image's channels share runs.
    spy.run.reset_mock()
    images = rng.uniform(0, 1, (3, SIZE, SIZE, CH))
    method.GetMaskBatch(images, {known.extra["c"]: PerExample(np.zeros(3))}, batch_size=4)
    live = sum(np.ptp(numpy_model(known.params, im)[0], axis=(0, 1)).astype(bool).sum()
               for im in images)
    assert spy.run.call_count == 1 + -(-live // 4)


def test_constant_channels_are_skipped(rng):
    """A channel whose map is constant (a dead ReLU) has no normalised mask: not run."""
    model = known_model(seed=0)
    wc, bc, v = model.params
    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    conv, _ = numpy_model(model.params, image)
    kept = select_channels(conv)
    assert list(kept) == [k for k in range(K) if np.ptp(conv[..., k]) > 0]
    flat = np.zeros((4, 4, 3))
    flat[..., 1] = np.arange(16).reshape(4, 4)
    assert list(select_channels(flat)) == [1]
    model.session.close()


def test_faster_score_cam_keeps_the_top_k_channels_by_variance(known, counting, rng):
    spy = counting(known.session)
    method = ScoreCam(known.graph, spy, known.y, known.x, known.conv)
    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    for top in (1, 4, 10, 50):
        spy.run.reset_mock()
        got = method.GetMask(image, feed(known), should_resize=False, top_k=top, batch_size=2)
        assert spy.run.call_count == 1 + -(-min(top, K) // 2)
        np.testing.assert_allclose(got, score_cam_reference(known.params, image, top=top),
                                   rtol=1e-9, atol=1e-12)


def test_batch_equals_single_calls_with_per_example_feeds(known, rng):
    method = ScoreCam(known.graph, known.session, known.y, known.x, known.conv)
    images = rng.uniform(0, 1, (3, SIZE, SIZE, CH))
    classes = [0.0, 2.0, -1.0]
    batch = method.GetMaskBatch(images, {known.extra["c"]: PerExample(classes)},
                                weighting="output", batch_size=7)
    for i, c in enumerate(classes):
        np.testing.assert_allclose(
            batch[i], method.GetMask(images[i], feed(known, c), weighting="output"), rtol=1e-9)


def test_agrees_with_grad_cam_on_a_cnn(relu_cnn, rng):
    """Not the same method, but both find what the same channels respond to."""
    score = ScoreCam(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    grad = GradCam(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    image = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    a, b = score.GetMask(image, three_dims=False), grad.GetMask(image, three_dims=False)
    assert a.shape == b.shape == (16, 16) and a.max() <= 1 and a.min() >= 0
    assert np.all(np.isfinite(a))


# -- 1-D convolutions, black box, core API ------------------------------------------------


def test_one_dimensional_conv_over_a_series(rng):
    """conv [batch, t, c] over a series [T, C]: masks along time, resized back to T."""
    from skimage.transform import resize

    wc = rng.normal(0, 1.0, (3, 5))
    v = rng.normal(0, 0.5, 5)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, [None, 12, 3])
        conv = tf.nn.relu(tf.einsum("ntc,ck->ntk", tf.nn.avg_pool1d(x, 3, 3, "VALID"), wc))
        y = tf.reduce_sum(conv, 1) @ v[:, None]
        y = y[:, 0]
    session = v1.Session(graph=graph)
    series = rng.uniform(0, 1, (12, 3))

    def f(s):
        a = np.maximum(s.reshape(4, 3, 3).mean(1) @ wc, 0)
        return a, a.sum(0) @ v

    conv_np, _ = f(series)
    kept = [k for k in range(5) if np.ptp(conv_np[:, k]) > 0]
    scores = []
    for k in kept:
        up = resize(conv_np[:, k], (12,), order=1, mode="reflect", anti_aliasing=False)
        scores.append(f(series * ((up - up.min()) / np.ptp(up))[:, None])[1])
    alpha = np.exp(np.array(scores) - max(scores))
    expected = np.maximum(conv_np[:, kept] @ (alpha / alpha.sum()), 0)
    method = ScoreCam(graph, session, y, x, conv)
    np.testing.assert_allclose(method.GetMask(series, should_resize=False), expected, rtol=1e-9)
    resized = method.GetMask(series)
    assert resized.shape == (12,)
    np.testing.assert_allclose(resized, np.clip(
        resize(expected / expected.max(), (12,), order=1, mode="reflect", anti_aliasing=False),
        0, 1), atol=1e-9)


def test_non_differentiable_head_works_where_grad_cam_cannot(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 3])
        conv = tf.nn.relu(tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 3, 4)),
                                                      tf.float32), 1, "SAME"))
        y = tf.stop_gradient(tf.reduce_sum(tf.round(conv * 4.0), [1, 2, 3]))
    session = v1.Session(graph=graph)
    with pytest.raises(ValueError, match="not differentiable"):
        GradCam(graph, session, y, x, conv)
    ops = len(graph.get_operations())
    method = ScoreCam(graph, session, y, x, conv)
    mask = method.GetMask(rng.uniform(size=(8, 8, 3)).astype(np.float32), weighting="output")
    assert mask.shape == (8, 8, 3) and np.all(np.isfinite(mask)) and mask.max() > 0
    assert len(graph.get_operations()) == ops


def test_core_api_backend_gives_the_same_map(known, rng):
    from saliency_tf1.compat.call_model import CallModelBackend

    calls = []

    def call_model(batch, call_model_args=None, expected_keys=None):
        calls.append(list(expected_keys))
        out = [numpy_model(known.params, b, call_model_args["c"]) for b in batch]
        return {CONVOLUTION_LAYER_VALUES: np.stack([o[0] for o in out]),
                OUTPUT_LAYER_VALUES: np.array([o[1] for o in out])}

    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    backend = CallModelBackend.for_input(image, call_model, {"c": 0.5})
    core = ScoreCam.from_backend(backend)
    tf1 = ScoreCam(known.graph, known.session, known.y, known.x, known.conv)
    np.testing.assert_allclose(core.GetMask(image, batch_size=4),
                               tf1.GetMask(image, feed(known, 0.5)), rtol=1e-9, atol=1e-12)
    assert calls[0] == [CONVOLUTION_LAYER_VALUES]
    assert all(c == [OUTPUT_LAYER_VALUES] for c in calls[1:]) and len(calls) == 1 + 3


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"weighting": "probability"}, ValueError, r"weighting: expected one of \['softmax', "),
        ({"weighting": 1}, ValueError, "weighting"),
        ({"top_k": 0}, ValueError, "top_k: expected a positive integer"),
        ({"top_k": 2.5}, TypeError, "top_k"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"seed": 0}, TypeError, "seed"),
    ],
)
def test_bad_arguments_raise_before_any_run(known, counting, kwargs, error, match):
    spy = counting(known.session)
    method = ScoreCam(known.graph, spy, known.y, known.x, known.conv)
    ops = len(known.graph.get_operations())
    with pytest.raises(error, match=match):
        method.GetMask(np.zeros((SIZE, SIZE, CH)), feed(known), **kwargs)
    assert spy.run.call_count == 0 and len(known.graph.get_operations()) == ops


def test_constructor_checks(known, relu_cnn):
    with pytest.raises(TypeError, match="conv_layer: ScoreCam needs"):
        ScoreCam(known.graph, known.session, known.y, known.x)
    with known.graph.as_default():
        flat = tf.reshape(known.conv, [-1, 160])
        unrelated = v1.placeholder(tf.float64, [None, 4, 4, 3])
    with pytest.raises(ValueError, match="conv_layer: tensor .* is not between x"):
        ScoreCam(known.graph, known.session, known.y, known.x, unrelated)
    with pytest.raises(ValueError, match=r"conv_layer: expected a \[batch, h, w, c\]"):
        ScoreCam(known.graph, known.session, known.y, known.x, flat)
    from saliency_tf1.compat.call_model import CallModelBackend

    only_outputs = CallModelBackend(lambda b, call_model_args=None, expected_keys=None: {},
                                    keys=[OUTPUT_LAYER_VALUES])
    with pytest.raises(ValueError, match="backend: ScoreCam needs the keys"):
        ScoreCam.from_backend(only_outputs)


def test_progress_bar(relu_cnn, capsys):
    target = ClassTarget(relu_cnn.logits)
    method = ScoreCam(relu_cnn.graph, relu_cnn.session, target.y, relu_cnn.x, relu_cnn.conv)
    method.GetMask(np.ones((16, 16, 3), np.float32), target.feed(1), progress=True)
    assert "Score-CAM" in capsys.readouterr().err


def test_dead_channels_are_not_run(counting, rng):
    """With channels dead (constant 0) for an input, the runs cover the live ones only."""
    model = known_model(seed=0)
    wc, bc, v = model.params
    image = rng.uniform(0, 1, (SIZE, SIZE, CH))
    dead_bias = bc.copy()
    dead_bias[[2, 5, 7]] = -10.0  # these channels are 0 everywhere
    model.params = (wc, dead_bias, v)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, [None, SIZE, SIZE, CH])
        conv = tf.nn.relu(tf.einsum("nhwc,ck->nhwk", tf.nn.avg_pool2d(x, 2, 2, "VALID"), wc)
                          + dead_bias)
        y = (tf.reduce_sum(conv, [1, 2]) @ v[:, None])[:, 0] + 0.1 * tf.reduce_sum(
            conv[..., 0] * conv[..., 1], [1, 2])
    session = counting(v1.Session(graph=graph))
    method = ScoreCam(graph, session, y, x, conv)
    got = method.GetMask(image, should_resize=False, batch_size=3)
    assert session.run.call_count == 1 + -(-(K - 3) // 3)
    np.testing.assert_allclose(got, score_cam_reference(model.params, image), rtol=1e-9)
    model.session.close()


def test_display_resize_equals_grad_cams(rng):
    from saliency_tf1.methods.grad_cam import normalize_and_resize
    from saliency_tf1.methods.score_cam import normalize_and_resize_maps

    for shape, size in (((3, 7, 7), (224, 200)), ((2, 4, 5), (16, 9)), ((1, 9, 9), (4, 4))):
        maps = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
        maps[0] = 0  # an all-zero map stays zero
        np.testing.assert_allclose(normalize_and_resize_maps(maps, size),
                                   normalize_and_resize(maps, size), atol=2e-6)
