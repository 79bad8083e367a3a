"""BlurIG: the blur, the integral identity, the sqrt=True batching fix, PAIR equality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from saliency_tf1.compat import CallModelBackend, create_tf1_call_model_function

from saliency_tf1.engine.backend import TF1Backend
from saliency_tf1.engine.blur import gaussian_blur, gaussian_blur_matrix
from saliency_tf1.engine.noise import noise_key, noisy_copies
from saliency_tf1.methods.blur_ig import BlurIG, blur_path

v1 = tf.compat.v1


@pytest.fixture
def linear():
    """``y = sum(w * x)`` on 12x10x2 images: gradient ``w`` everywhere."""
    graph = tf.Graph()
    w = np.random.default_rng(3).normal(size=(12, 10, 2)).astype(np.float32)
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 12, 10, 2], name="x")
        y = tf.reduce_sum(x * w, axis=[1, 2, 3])
    with v1.Session(graph=graph) as session:
        yield graph, session, y, x, w


def make(model, session=None):
    return BlurIG(model.graph, session or model.session, model.y, model.x)


def gradient_runs(spy, x) -> int:
    """``session.run`` calls that feed the model (the others run the blur ops)."""
    return sum(x in call.kwargs["feed_dict"] for call in spy.run.call_args_list)


def test_blur_equals_scipy_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(0).normal(size=(9, 13, 2))
    sigmas = [0.0, 1e-16, 0.01, 0.3, 1.0, 2.6, 7.0, 50.0]
    blurred = gaussian_blur(image, sigmas)
    assert blurred.shape == (len(sigmas), 9, 13, 2) and blurred.dtype == np.float64
    for s, ours in zip(sigmas, blurred):
        np.testing.assert_allclose(
            ours, ndimage.gaussian_filter(image, [s, s, 0], mode="constant"), rtol=0,
            atol=1e-14)
    single = gaussian_blur(image.astype(np.float32), [2.6], np.float32)[0]
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, blurred[5], atol=1e-5)
    np.testing.assert_allclose(gaussian_blur_matrix(40, 1.5).sum(axis=1)[20], 1.0)  # interior
    np.testing.assert_array_equal(gaussian_blur_matrix(5, 0.01), np.eye(5))  # radius 0


def test_blur_rounds_as_scipy_and_takes_pairs_difference():
    """float32 blurs are SciPy's float32 results to the bit (float64 products, each pass
    rounded to float32), and blur_path's difference is PAIR's: B(s + h) - B(s) of the two
    rounded blurs, with its cancellation error (~1e-7 |x| / h), not a more accurate one."""
    ndimage = pytest.importorskip("scipy.ndimage")
    image = np.random.default_rng(1).uniform(size=(20, 16, 3)).astype(np.float32)
    sigmas = np.array([0.0, 0.7, 3.0, 12.0])
    step = 1e-3
    points, change = blur_path(image, sigmas, step, np.float32)
    assert points.dtype == change.dtype == np.float32
    for s, here, diff in zip(sigmas, points, change):
        theirs = image if s == 0 else ndimage.gaussian_filter(image, [s, s, 0], mode="constant")
        ahead = ndimage.gaussian_filter(image, [s + step, s + step, 0], mode="constant")
        np.testing.assert_array_equal(here, theirs)
        np.testing.assert_array_equal(diff, ahead - theirs)
    _, exact = blur_path(image.astype(np.float64), sigmas, step, np.float64)
    error = np.abs(change - exact).max()
    assert 1e-6 * np.abs(exact).max() < error < 1e-6 / step  # PAIR's cancellation, no worse


def test_gaussian_blur_border_rules_match_scipy():
    """One blur for Blur IG (zeros, 4 sigma) and the deletion metric (mirrored, radius
    ceil(3 sigma)): any of scipy's truncate/radius with mode 'constant' or 'reflect',
    [H, W] or [H, W, C] images, kernels wider than the image."""
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(5)
    for image in (rng.uniform(size=(20, 17, 3)), rng.normal(size=(3, 5)),
                  rng.integers(0, 256, (12, 12, 2)).astype(np.uint8)):
        spatial = [1, 1] + [0] * (image.ndim - 2)
        for s in (0.0, 0.3, 1.1, 2.0, 7.7, 40.0):
            for mode, rule in (("constant", {}), ("reflect", {"truncate": 3.0}),
                               ("reflect", {"radius": math.ceil(3 * s)}),
                               ("constant", {"radius": 2})):
                ours = gaussian_blur(image, s, mode=mode, **rule)
                assert ours.dtype == np.float64 and ours.shape == image.shape
                theirs = ndimage.gaussian_filter(image.astype(np.float64),
                                                 [s * a for a in spatial], mode=mode, **rule)
                np.testing.assert_allclose(ours, theirs, rtol=0,
                                           atol=1e-14 * max(1.0, np.abs(image).max()))
    with pytest.raises(ValueError, match="mode: expected one of"):
        gaussian_blur(np.ones((4, 4)), 1.0, mode="wrap")


def test_graph_blur_equals_numpy_blur_and_fallback(relu_cnn, rng):
    """The TF ops built in the constructor compute blur_path; over a non-TF1 backend (the
    core-API layer) the NumPy blur gives the same mask."""
    method = make(relu_cnn)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    sigmas = np.array([0.0, 0.5, 3.0, 40.0])
    points, change = method._graph_blur(image, sigmas, 0.01)
    ref_points, ref_change = blur_path(image, sigmas, 0.01, np.float64)
    np.testing.assert_allclose(points, ref_points, atol=1e-6)
    np.testing.assert_allclose(change, ref_change, atol=1e-5 * np.abs(ref_change).max())
    # The same model through the core API: a backend that is not a TF1Backend.
    call_model = create_tf1_call_model_function(relu_cnn.graph, relu_cnn.session, relu_cnn.y,
                                                relu_cnn.x)
    numpy_only = BlurIG.from_backend(CallModelBackend.for_input(image, call_model))
    assert numpy_only._graph_blur is None
    expected = method.GetMask(image, max_sigma=5, steps=10)
    np.testing.assert_allclose(numpy_only.GetMask(image, max_sigma=5, steps=10), expected,
                               rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_integral_identity_on_linear_model(linear):
    """grad_step = max_sigma / steps makes the sum telescope: mask = w * (x - B(max_sigma))."""
    graph, session, y, x, w = linear
    method = BlurIG(graph, session, y, x)
    image = np.random.default_rng(1).uniform(size=(12, 10, 2))
    for max_sigma, steps in ((3.0, 30), (20.0, 8)):
        mask = method.GetMask(image, max_sigma=max_sigma, steps=steps,
                              grad_step=max_sigma / steps, batch_size=7)
        blurred = gaussian_blur(image, [max_sigma])[0]
        np.testing.assert_allclose(mask, w * (image - blurred), rtol=1e-5, atol=1e-6)


def test_sqrt_spacing_uses_each_rows_own_step(linear, counting):
    """sqrt=True: the Riemann sum of dB/ds over uneven steps tends to B(0) - B(max_sigma)
    for every batch_size (PAIR's batched loop does not: it reuses the batch's last step)."""
    graph, session, y, x, w = linear
    spy = counting(session)
    method = BlurIG(graph, spy, y, x)
    image = np.random.default_rng(2).uniform(size=(12, 10, 2))
    truth = w * (image - gaussian_blur(image, [math.sqrt(4.0)])[0])
    masks = [method.GetMask(image, max_sigma=4.0, steps=400, grad_step=1e-4, sqrt=True,
                            batch_size=batch_size) for batch_size in (1, 64, 400)]
    scale = np.abs(truth).max()
    for mask in masks:
        np.testing.assert_allclose(mask, masks[0], rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(masks[0], truth, atol=0.02 * scale)
    assert gradient_runs(spy, x) == 400 + math.ceil(400 / 64) + 1


@pytest.mark.oracle
def test_equals_pair_0_2_1_and_fixes_sqrt_batching(relu_cnn, rng):
    pair = pytest.importorskip("saliency.tf1")
    ours = make(relu_cnn)
    theirs = pair.BlurIG(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3))  # float64: both blur in float64
    for sqrt in (False, True):
        reference = theirs.GetMask(image, max_sigma=10, steps=20, sqrt=sqrt, batch_size=1)
        scale = np.abs(reference).max()
        for batch_size in (None, 1, 6, 20):
            got = ours.GetMask(image, None, 10, 20, 0.01, sqrt, batch_size)  # PAIR's order
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6 * scale)
    # PAIR's own batched sqrt=True numbers differ from its batch_size=1 ones (the defect).
    batched = theirs.GetMask(image, max_sigma=10, steps=20, sqrt=True, batch_size=6)
    assert not np.allclose(batched, reference, rtol=1e-3, atol=1e-3 * scale)
    # float32 images are blurred in float32 as PAIR's scipy does, to the bit, so PAIR's
    # float32 differences (cancellation included) are reproduced.
    image32 = image.astype(np.float32)
    reference = theirs.GetMask(image32, max_sigma=10, steps=20, batch_size=20)
    got = ours.GetMask(image32, max_sigma=10, steps=20)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
    np.random.seed(4)
    expected = theirs.GetSmoothedMask(image, nsamples=3, max_sigma=5, steps=10, batch_size=10)
    np.random.seed(4)
    np.testing.assert_allclose(ours.GetSmoothedMask(image, nsamples=3, max_sigma=5, steps=10),
                               expected, rtol=1e-5, atol=1e-6 * expected.max())


@pytest.mark.oracle
def test_equals_pair_on_max_pool_cnn():
    """PAIR's masks to float rounding on a real max-pool ReLU net, float32 and float64
    images, sqrt False/True, a non-square image. The path points must be PAIR's to the bit:
    a blur off by one unit in the last place (float32 matrix products did that) flips
    max-pool and ReLU decisions on the nearly flat blurred images and moved masks by ~1%."""
    pair = pytest.importorskip("saliency.tf1")
    rng = np.random.default_rng(7)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 32, 40, 3], name="x")
        h, channels = x, 3
        for width in (16, 16):
            w = tf.constant(rng.normal(0, np.sqrt(2 / (9 * channels)), (3, 3, channels, width)),
                            tf.float32)
            h = tf.nn.max_pool2d(tf.nn.relu(tf.nn.conv2d(h, w, 1, "SAME")), 2, 2, "SAME")
            channels = width
        logits = tf.matmul(tf.reduce_mean(h, [1, 2]),
                           tf.constant(rng.normal(0, 0.5, (channels, 4)), tf.float32))
        y = logits[:, 0]
    image = rng.uniform(size=(32, 40, 3))
    with v1.Session(graph=graph) as session:
        ours = BlurIG(graph, session, y, x)
        theirs = pair.BlurIG(graph, session, y, x)
        for dtype in (np.float32, np.float64):
            for kwargs in ({}, {"max_sigma": 20, "steps": 40, "grad_step": 0.001, "sqrt": True}):
                reference = theirs.GetMask(image.astype(dtype), batch_size=1, **kwargs)
                got = ours.GetMask(image.astype(dtype), **kwargs)
                assert got.dtype == reference.dtype == dtype
                np.testing.assert_allclose(got, reference, rtol=1e-5,
                                           atol=1e-5 * np.abs(reference).max())


def test_completeness_on_relu_cnn_is_first_order(relu_cnn, rng):
    """With grad_step = max_sigma / steps the mask is the left Riemann sum of the path
    integral of f from x to B(max_sigma): it sums to f(x) - f(B(max_sigma)) with an error
    that halves as steps double."""
    method = make(relu_cnn)
    image = rng.uniform(size=(16, 16, 3))
    ends = np.stack([image, gaussian_blur(image, [8.0])[0]]).astype(np.float32)
    fx, fblur = relu_cnn.session.run(relu_cnn.y, {relu_cnn.x: ends}).astype(np.float64)
    errors = []
    for steps in (100, 200):
        mask = method.GetMask(image, max_sigma=8, steps=steps, grad_step=8 / steps,
                              batch_size=100)
        errors.append(abs(mask.sum() - (fx - fblur)) / abs(fx - fblur))
    assert errors[1] < 0.04
    assert 1.7 < errors[0] / errors[1] < 2.3, errors


def test_batching_run_counts_and_batch_of_inputs(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    images = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)
    steps = 12
    masks = {}
    for batch_size in (1, 7, steps, 10 * steps):
        spy.run.reset_mock()
        masks[batch_size] = method.GetMask(images[0], max_sigma=6, steps=steps,
                                           batch_size=batch_size)
        assert gradient_runs(spy, relu_cnn.x) == math.ceil(steps / batch_size)
    for mask in masks.values():
        np.testing.assert_allclose(mask, masks[1], rtol=1e-5, atol=1e-7)
    spy.run.reset_mock()
    batch = method.GetMaskBatch(images, max_sigma=6, steps=steps, batch_size=16)
    assert gradient_runs(spy, relu_cnn.x) == math.ceil(3 * steps / 16)
    for image, mask in zip(images, batch):
        np.testing.assert_allclose(mask, method.GetMask(image, max_sigma=6, steps=steps),
                                   rtol=1e-5, atol=1e-7)


def test_smoothed_mask_is_mean_of_squared_masks_in_shared_runs(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    noisy = noisy_copies(image, 0.1 * float(image.max() - image.min()), 0, 4, noise_key(9))
    expected = np.mean([method.GetMask(v, max_sigma=4, steps=10) ** 2 for v in noisy], axis=0)
    spy.run.reset_mock()
    smooth = method.GetSmoothedMask(image, stdev_spread=0.1, nsamples=4, seed=9, max_sigma=4,
                                    steps=10, batch_size=20)
    np.testing.assert_allclose(smooth, expected, rtol=1e-5, atol=1e-7 * expected.max())
    assert gradient_runs(spy, relu_cnn.x) == 2  # 2 samples x 10 steps per run


def test_bad_input(relu_cnn, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    image = np.zeros((16, 16, 3), np.float32)
    before = relu_cnn.op_count()
    with pytest.raises(ValueError, match="steps: expected a positive integer"):
        method.GetMask(image, steps=0)
    with pytest.raises(ValueError, match=r"max_sigma: expected a finite number >= 0.0"):
        method.GetMask(image, max_sigma=-1)
    with pytest.raises(ValueError, match="grad_step: expected a finite number > 0"):
        method.GetMask(image, grad_step=0)
    with pytest.raises(ValueError, match="x_value: contains NaN or Inf"):
        method.GetMask(np.full_like(image, np.nan))
    with pytest.raises(ValueError, match="x_value: expected one input"):
        method.GetMask(image[..., 0])
    assert spy.run.call_count == 0 and relu_cnn.op_count() == before
    graph = tf.Graph()
    with graph.as_default():
        flat = v1.placeholder(tf.float32, [None, 6])
        y = tf.reduce_sum(flat**2, axis=1)
    with v1.Session(graph=graph) as session:
        with pytest.raises(ValueError, match=r"x: BlurIG blurs the spatial axes of \[batch, H, "
                                             r"W, C\] images; got x of shape \[None, 6\]"):
            BlurIG(graph, session, y, flat)
        # Over any backend whose input shape is known the check is at construction ...
        with pytest.raises(ValueError, match=r"got inputs of shape \[None, 6\]"):
            BlurIG.from_backend(TF1Backend(graph, session, y, flat))
        # ... and at call time where the backend leaves the shape open.
        call_model = create_tf1_call_model_function(graph, session, y, flat)
        loose = BlurIG.from_backend(CallModelBackend(call_model))
        with pytest.raises(ValueError, match=r"H x W x C image; expected an input of rank 3, "
                                             r"got shape \(6,\)"):
            loose.GetMask(np.ones(6, np.float32))


def test_graph_and_arrays_unchanged(relu_cnn, rng):
    method = make(relu_cnn)
    before = relu_cnn.op_count()
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    copy = image.copy()
    method.GetMask(image, max_sigma=3, steps=5)
    method.GetMaskBatch(np.stack([image, image]), max_sigma=3, steps=5)
    method.GetSmoothedMask(image, nsamples=2, max_sigma=3, steps=5, seed=0)
    assert relu_cnn.op_count() == before
    np.testing.assert_array_equal(image, copy)
