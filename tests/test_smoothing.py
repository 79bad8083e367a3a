"""GetSmoothedMask's statistics (SmoothGrad, SquareGrad, VarGrad), for every method."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.catalogue import METHODS
from saliency_tf1.engine.noise import noise_key, noisy_copies
from saliency_tf1.methods.base import RunningMoments

v1 = tf.compat.v1


def test_vargrad_of_a_linear_model_is_zero():
    graph = tf.Graph()
    w = np.array([0.5, -2.0, 3.0], np.float32)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = tf.reduce_sum(x * w, axis=1)
    with v1.Session(graph=graph) as session:
        grad = saliency.GradientSaliency(graph, session, y, x)
        var = grad.GetSmoothedMask(np.ones(3, np.float32), statistic="variance", seed=0)
        mean = grad.GetSmoothedMask(np.ones(3, np.float32), statistic="mean", seed=0)
    np.testing.assert_allclose(var, 0.0, atol=1e-10)
    np.testing.assert_allclose(mean, w, rtol=1e-6)


def test_vargrad_equals_the_known_gradient_variance(analytic):
    """y = 5 x0 + x1^2 + sin(x2): with x + e, e ~ N(0, s^2), the gradient's variance is
    [0, 4 s^2, Var cos(x2 + e)], where
    Var cos(x2 + e) = (1 + cos(2 x2) e^{-2 s^2}) / 2 - cos(x2)^2 e^{-s^2}."""
    grad = saliency.GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    x = np.array([0.3, 1.0, 0.7])
    spread = 0.2
    s = spread * (x.max() - x.min())
    n = 20000
    var = grad.GetSmoothedMask(x, stdev_spread=spread, nsamples=n, statistic="variance",
                               seed=1, batch_size=4096)
    cos_var = (1 + np.cos(2 * x[2]) * np.exp(-2 * s**2)) / 2 - np.cos(x[2]) ** 2 * np.exp(-s**2)
    expected = np.array([0.0, 4 * s**2, cos_var])
    # Standard error of a sample variance of Gaussian-like values: var * sqrt(2 / n).
    tolerance = 5 * expected * np.sqrt(2 / n) + 1e-9
    assert np.all(np.abs(var - expected) <= tolerance), (var, expected)


def test_statistics_equal_their_definitions_on_the_same_noise(relu_cnn, rng):
    """Each statistic equals NumPy's over the masks of the very noisy copies it drew (seeded),
    whatever the batch size; None follows PAIR's magnitude switch."""
    method = saliency.IntegratedGradients(relu_cnn.graph, relu_cnn.session, relu_cnn.y,
                                          relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    stdev = 0.15 * float(image.max() - image.min())
    copies = noisy_copies(image, stdev, 0, 9, noise_key(7))
    masks = method.GetMaskBatch(copies, x_steps=5).astype(np.float64)
    expected = {"mean": masks.mean(0), "square": np.square(masks).mean(0),
                "variance": masks.var(0)}
    for statistic, want in expected.items():
        for batch_size in (5, 17, 1000):
            got = method.GetSmoothedMask(image, nsamples=9, seed=7, statistic=statistic,
                                         x_steps=5, batch_size=batch_size)
            np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * np.abs(want).max(),
                                       err_msg=f"{statistic}, batch_size={batch_size}")
    np.testing.assert_array_equal(
        method.GetSmoothedMask(image, nsamples=9, seed=7, magnitude=True, x_steps=5),
        method.GetSmoothedMask(image, nsamples=9, seed=7, statistic="square", x_steps=5))
    np.testing.assert_array_equal(
        method.GetSmoothedMask(image, nsamples=9, seed=7, magnitude=False, x_steps=5),
        method.GetSmoothedMask(image, nsamples=9, seed=7, statistic="mean", x_steps=5))


@pytest.mark.parametrize("name", [n for n in METHODS if not METHODS[n].smoothed])
def test_every_method_takes_a_statistic(relu_cnn, rng, name):
    spec = METHODS[name]
    method = spec.build(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x, relu_cnn.conv)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    # The method's own catalogue arguments, less those that are the smoothing's.
    extra = {k: v for k, v in spec.kwargs.items() if k not in ("nsamples", "seed")}
    if name == "occlusion":
        extra.update(size=8, stride=8)
    var = method.GetSmoothedMask(image, nsamples=3, seed=0, statistic="variance", **extra)
    assert np.all(var >= 0) and np.all(np.isfinite(var))


@pytest.mark.parametrize("statistic", ["median", 1, "VARIANCE"])
def test_bad_statistic_is_named(analytic, statistic):
    grad = saliency.GradientSaliency(analytic.graph, analytic.session, analytic.y, analytic.x)
    with pytest.raises(ValueError, match="statistic: expected None or one of"):
        grad.GetSmoothedMask(np.ones(3, np.float32), statistic=statistic)


def test_running_moments_combine_chunks_exactly(rng):
    values = rng.normal(3.0, 2.0, size=(50, 4))
    moments = RunningMoments()
    for a, b in [(0, 7), (7, 8), (8, 31), (31, 50)]:
        moments.add(values[a:b])
    np.testing.assert_allclose(moments.mean, values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.variance, values.var(0), rtol=1e-12)
