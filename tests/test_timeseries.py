"""Time series [None, T, C]: windows along time, Grad-CAM over a 1-D conv layer (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.datasets import make_motif_signals
from saliency_tf1.metrics import energy_inside, pointing_game
from saliency_tf1.modalities import (
    GradCam1D,
    GradCamPlusPlus1D,
    chance_hit_rate,
    time_scores,
    time_window_args,
    top_k_hit_rate,
)
from saliency_tf1.modalities.models import train_signal_model
from saliency_tf1.visualization.arrays import reduce_channels

v1 = tf.compat.v1
T, C = 24, 3


def _cnn_weights(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.5, (5, C, 6)).astype(np.float32),
            rng.normal(0, 0.5, (3, 6, 4)).astype(np.float32),
            rng.normal(0, 0.5, (4, 2)).astype(np.float32))


def _cnn_forward(x, w1, w2, wd):
    h = tf.nn.relu(tf.nn.conv1d(x, w1, 1, "SAME") + 0.1)
    h = tf.nn.max_pool1d(h, 2, 2, "SAME")
    conv = tf.nn.softplus(tf.nn.conv1d(h, w2, 1, "SAME"))
    return conv, tf.matmul(tf.reduce_mean(conv, axis=1), wd)


@pytest.fixture
def cnn1d():
    weights = _cnn_weights()
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, T, C], name="x")
        conv, logits = _cnn_forward(x, *weights)
        y = logits[:, 1]
    session = v1.Session(graph=graph)  # not entered: the eager oracle runs beside it
    yield {"graph": graph, "session": session, "x": x, "y": y, "conv": conv,
           "logits": logits, "weights": weights}
    session.close()


def _eager_conv_and_grads(weights, xs):
    """Activations and d y / d conv by tf.GradientTape in eager mode (independent of the graph)."""
    x = tf.constant(xs)
    with tf.GradientTape() as tape:
        conv, logits = _cnn_forward(x, *weights)
        tape.watch(conv)
        y = tf.reduce_sum(tf.matmul(tf.reduce_mean(conv, axis=1), weights[2])[:, 1])
    return conv.numpy(), tape.gradient(y, conv).numpy()


def test_grad_cam_1d_equals_an_independent_computation(cnn1d, counting):
    skimage = pytest.importorskip("skimage.transform")
    m = cnn1d
    xs = np.random.default_rng(1).normal(size=(5, T, C)).astype(np.float32)
    conv, grads = _eager_conv_and_grads(m["weights"], xs)
    raw = np.maximum(np.einsum("ntc,nc->nt", conv, grads.mean(axis=1)), 0)
    spy = counting(m["session"])
    cam = GradCam1D(m["graph"], spy, m["y"], m["x"], conv_layer=m["conv"])
    ops = len(m["graph"].get_operations())
    masks = cam.GetMaskBatch(xs, batch_size=2)
    assert spy.run.call_count == 3
    assert masks.shape == (5, T)
    for i in range(5):
        expected = skimage.resize(raw[i] / raw[i].max(), (T,), order=1, mode="reflect",
                                  anti_aliasing=False)
        np.testing.assert_allclose(masks[i], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cam.GetMask(xs[3], should_resize=False), raw[3], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(cam.GetMask(xs[3]), masks[3], rtol=1e-5, atol=1e-6)
    # Grad-CAM++ weights: sum_t alpha relu(G), alpha = G^2 / (2 G^2 + sum_s A G^3).
    g2 = grads**2
    denom = 2 * g2 + conv.sum(axis=1, keepdims=True) * g2 * grads
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    weights = (alpha * np.maximum(grads, 0)).sum(axis=1)
    raw_pp = np.maximum(np.einsum("ntc,nc->nt", conv, weights), 0)
    pp = GradCamPlusPlus1D(m["graph"], m["session"], m["y"], m["x"], conv_layer=m["conv"])
    np.testing.assert_allclose(pp.GetMaskBatch(xs, should_resize=False), raw_pp, rtol=1e-3,
                               atol=1e-6)
    assert len(m["graph"].get_operations()) == ops


def test_grad_cam_1d_refuses_bad_arguments(cnn1d, relu_cnn):
    m = cnn1d
    with pytest.raises(TypeError, match=r"conv_layer: GradCam1D needs the \[batch, time, "
                                        r"channels\] tensor"):
        GradCam1D(m["graph"], m["session"], m["y"], m["x"])
    ops = len(relu_cnn.graph.get_operations())
    with pytest.raises(ValueError, match=r"conv_layer: expected a 3-D \[batch, time, channels\] "
                                         r"tensor, got '.*' of shape \(None, 16, 16, 8\)"):
        GradCam1D(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    assert len(relu_cnn.graph.get_operations()) == ops
    cam = GradCam1D(m["graph"], m["session"], m["y"], m["x"], m["conv"])
    with pytest.raises(TypeError, match=r"GradCam1D.GetMaskBatch: unexpected arguments "
                                        r"\['three_dims'\]"):
        cam.GetMaskBatch(np.zeros((1, T, C)), three_dims=True)
    with pytest.raises(ValueError, match=r"x_value: expected one input .* \[24, 3\], got shape "
                                         r"\(24,\)"):
        cam.GetMask(np.zeros(T))
    with pytest.raises(TypeError, match="x: GradCam1D explains one input tensor"):
        GradCam1D(m["graph"], m["session"], m["y"], [m["x"], m["x"]], m["conv"])


def test_occlusion_windows_along_time_cover_every_channel(cnn1d):
    """Occlusion with time_window_args against a NumPy reference of the window drops."""
    m = cnn1d
    x = np.random.default_rng(2).normal(size=(T, C)).astype(np.float32)
    args = time_window_args(x, 6, stride=3)
    assert args == {"size": 6, "window_height": 6, "window_width": C, "stride": 3}
    occ = saliency.Occlusion(m["graph"], m["session"], m["y"], m["x"])
    mask = occ.GetMask(x, **args)
    starts = list(range(0, T - 6 + 1, 3))
    copies = [x] + [np.where((np.arange(T) >= s) & (np.arange(T) < s + 6), 0, x.T).T
                    for s in starts]
    scores = m["session"].run(m["y"], {m["x"]: np.stack(copies)})
    expected = np.zeros(T)
    for s, score in zip(starts, scores[1:]):
        expected[s:s + 6] += scores[0] - score
    np.testing.assert_allclose(mask, np.repeat(expected[:, None], C, axis=1), rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"window: expected at most the signal's 24 time "
                                         r"steps, got 30"):
        time_window_args(x, 30)
    with pytest.raises(ValueError, match=r"x_value: expected a \[T, C\] signal"):
        time_window_args(x[:, 0], 3)
    np.testing.assert_allclose(time_scores(mask), reduce_channels(mask))
    np.testing.assert_allclose(time_scores(mask, "sum"), mask.sum(axis=1))


# ---------------------------------------------------------------------------
# Known answers: a planted motif decides the class


def test_motif_signals_hold_their_motif_in_the_window():
    data = make_motif_signals(200, length=64, channels=3, motif_length=12, seed=4)
    assert data.signals.shape == (200, 64, 3) and data.windows.sum(axis=1).tolist() == [12] * 200
    assert np.bincount(data.labels).tolist() == [100, 100]
    u = np.arange(12) / 12
    motif = np.sin(2 * np.pi * u) * np.sin(np.pi * u)
    for i in range(len(data)):
        start = int(np.flatnonzero(data.windows[i])[0])
        segment = data.signals[i, start:start + 12, data.motif_channels[i]]
        sign = np.corrcoef(segment, motif)[0, 1]
        assert (sign > 0.5) if data.labels[i] == 0 else (sign < -0.5)
    np.testing.assert_array_equal(make_motif_signals(200, 64, 3, 12, seed=4).signals,
                                  data.signals)


@pytest.fixture(scope="module")
def signals():
    data = make_motif_signals(1400, seed=1)
    model = train_signal_model(data.subset(slice(0, 1200)), data.subset(slice(1200, None)),
                               seed=0)
    model.test = data.subset(slice(1200, 1300))
    yield model
    model.close()


def test_methods_find_the_motif_window(signals):
    m, test = signals, signals.test
    assert m.accuracy >= 0.9
    x = test.signals
    predicted = m.target.predict(m.session, m.x, x)
    feed = m.target.feed(predicted)
    ig = saliency.IntegratedGradients(m.graph, m.session, m.target.y, m.x)
    grad = saliency.GradientSaliency(m.graph, m.session, m.target.y, m.x)
    occlusion = saliency.Occlusion(m.graph, m.session, m.target.y, m.x)
    maps = {
        "ig": time_scores(ig.GetMaskBatch(x, feed, x_steps=32, rule="trapezoid")),
        "smoothgrad": time_scores(np.stack([
            grad.GetSmoothedMask(s, m.target.feed(int(c)), seed=0, nsamples=10,
                                 statistic="mean")
            for s, c in zip(x[:40], predicted[:40])])),
        "occlusion": time_scores(occlusion.GetMaskBatch(x, feed, **time_window_args(x, 8, 2),
                                                        normalize=True)),
        "gradcam": GradCam1D(m.graph, m.session, m.target.y, m.x, m.conv).GetMaskBatch(x, feed),
    }
    chance = chance_hit_rate(test.windows).mean()
    for name, scores in maps.items():
        windows = test.windows[:len(scores)]
        rate = top_k_hit_rate(scores, windows).mean()
        pointing = np.mean([pointing_game(s, w) for s, w in zip(scores, windows)])
        energy = np.mean([energy_inside(s, w) for s, w in zip(scores, windows)])
        print(f"{name:<11} top-k hit rate {rate:.2f}, pointing {pointing:.2f}, energy "
              f"{energy:.2f} (chance {chance:.2f})")
        assert rate >= 1.5 * chance, name
        if name != "smoothgrad":  # gradients spread over the whole signal (mean pooling)
            assert energy >= 1.5 * chance and pointing >= 0.7, name
