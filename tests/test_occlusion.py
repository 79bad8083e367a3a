"""Occlusion: known answers on a linear model, batching invariance, memory, bad input, PAIR."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import PerExample
from saliency_tf1.methods.occlusion import Occlusion, sum_over_windows, window_starts

v1 = tf.compat.v1


def make_linear(shape, seed=0, dtype=tf.float64, scalar_y=False):
    """y = sum(w * x) over one input of ``shape``; returns (graph, session, x, y, w)."""
    w = np.random.default_rng(seed).normal(size=shape)
    graph = tf.Graph()
    with graph.as_default():
        if scalar_y:
            x = v1.placeholder(dtype, [1, *shape], name="x")
            y = tf.reduce_sum(x * tf.constant(w, dtype))
        else:
            x = v1.placeholder(dtype, [None, *shape], name="x")
            y = tf.reduce_sum(x * tf.constant(w, dtype), axis=list(range(1, len(shape) + 1)))
    return graph, v1.Session(graph=graph), x, y, w


def reference_occlusion(score, x, height, width, stride=1, fill=0.0, normalize=False):
    """Straightforward occlusion: one window at a time, drop added to every covered pixel."""
    x = np.asarray(x, np.float64)
    fill = np.broadcast_to(np.asarray(fill, np.float64), x.shape)
    total = np.zeros(x.shape[:2])
    count = np.zeros(x.shape[:2])
    base = score(x)
    for r in range(0, x.shape[0] - height + 1, stride):
        for c in range(0, x.shape[1] - width + 1, stride):
            occluded = x.copy()
            occluded[r:r + height, c:c + width] = fill[r:r + height, c:c + width]
            total[r:r + height, c:c + width] += base - score(occluded)
            count[r:r + height, c:c + width] += 1
    if normalize:
        total = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return np.broadcast_to(total.reshape(total.shape + (1,) * (x.ndim - 2)), x.shape)


def session_score(session, x, y):
    return lambda value: float(np.squeeze(session.run(y, {x: value[None]})))


# -- known answers -------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3)])
def test_window_one_on_linear_model_is_weight_times_difference(shape, rng):
    graph, session, x, y, w = make_linear(shape)
    image = rng.normal(size=shape)
    method = Occlusion(graph, session, y, x)
    for value in (0.0, 0.7):
        mask = method.GetMask(image, size=1, value=value)
        contribution = w * (image - value)
        if len(shape) == 3:  # the window covers every channel of the pixel
            contribution = np.repeat(contribution.sum(-1, keepdims=True), shape[2], axis=-1)
        np.testing.assert_allclose(mask, contribution, rtol=1e-10, atol=1e-12)


def test_linear_model_any_window_sums_covering_windows(rng):
    """For y = sum(w x), a window's drop is sum over it of w (x - v); each pixel sums those."""
    shape = (9, 8, 2)
    graph, session, x, y, w = make_linear(shape)
    image = rng.normal(size=shape)
    method = Occlusion(graph, session, y, x)
    contrib = (w * (image - 0.25)).sum(-1)
    expected = np.zeros(shape[:2])
    for r in range(9 - 3 + 1):
        for c in range(8 - 4 + 1):
            expected[r:r + 3, c:c + 4] += contrib[r:r + 3, c:c + 4].sum()
    mask = method.GetMask(image, value=0.25, window_height=3, window_width=4)
    np.testing.assert_allclose(mask, np.repeat(expected[..., None], 2, -1), rtol=1e-10)


def test_stride_normalize_and_baseline_semantics(rng):
    shape = (11, 10, 1)
    graph, session, x, y, w = make_linear(shape)
    image = rng.normal(size=shape)
    background = rng.normal(size=shape)
    method = Occlusion(graph, session, y, x)
    score = session_score(session, x, y)
    for stride in (1, 2, 3, 20):
        for normalize in (False, True):
            got = method.GetMask(image, size=4, stride=stride, normalize=normalize,
                                 baseline=background)
            want = reference_occlusion(score, image, 4, 4, stride, background, normalize)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # stride 3 on 11 rows: windows start at 0, 3, 6 (the last, 7, does not fit the grid):
    # row 10 is covered by no window and gets 0.
    assert list(window_starts(11, 4, 3)) == [0, 3, 6]
    assert np.all(method.GetMask(image, size=4, stride=3)[10] == 0)
    # normalize: a pixel covered by k windows gets the mean of their drops; with a
    # window of 1 every pixel is covered once, so mean == sum.
    np.testing.assert_allclose(method.GetMask(image, size=1, normalize=True),
                               method.GetMask(image, size=1), rtol=1e-12)


def test_sum_over_windows_against_loops(rng):
    rows, cols = np.array([0, 2, 5]), np.array([1, 3])
    values = rng.normal(size=(3, 2))
    expected = np.zeros((8, 7))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            expected[r:r + 3, c:c + 4] += values[a, b]
    np.testing.assert_allclose(sum_over_windows(values, rows, cols, 3, 4, (8, 7)), expected,
                               atol=1e-12)


# -- batching ----------------------------------------------------------------------


def test_batched_equals_one_window_at_a_time(relu_cnn, counting, rng):
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    spy = counting(relu_cnn.session)
    method = Occlusion(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    reference = reference_occlusion(session_score(relu_cnn.session, relu_cnn.x, relu_cnn.y),
                                    image, 5, 5, fill=0.1)
    windows = 12 * 12
    for batch_size in (1, 7, 64, 1000):
        spy.run.reset_mock()
        mask = method.GetMask(image, size=5, value=0.1, batch_size=batch_size)
        assert spy.run.call_count == -(-(windows + 1) // batch_size)
        np.testing.assert_allclose(mask, reference, rtol=1e-4, atol=1e-5)


def test_get_mask_batch_equals_loop_with_per_input_feeds(rng):
    graph = tf.Graph()
    weights = rng.normal(size=(2, 5, 6, 1))
    with graph.as_default():
        x = v1.placeholder(tf.float64, [None, 5, 6, 1])
        k = v1.placeholder(tf.int32, [None])
        y = tf.reduce_sum(x * tf.gather(tf.constant(weights), k), axis=[1, 2, 3])
    session = v1.Session(graph=graph)
    method = Occlusion(graph, session, y, x)
    images = rng.normal(size=(3, 5, 6, 1))
    fills = rng.normal(size=(3, 5, 6, 1))
    classes = np.array([1, 0, 1])
    looped = np.stack([
        method.GetMask(images[i], {k: [classes[i]]}, size=2, baseline=fills[i], stride=2)
        for i in range(3)
    ])
    for batch_size in (1, 5, 100):
        batched = method.GetMaskBatch(images, {k: PerExample(classes)}, size=2, stride=2,
                                      baseline=fills, batch_size=batch_size)
        np.testing.assert_allclose(batched, looped, rtol=1e-12)


def test_smoothed_mask_without_noise_is_the_mask(relu_cnn, rng):
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    method = Occlusion(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    plain = method.GetMask(image, size=6, stride=2)
    smooth = method.GetSmoothedMask(image, stdev_spread=0.0, nsamples=3, magnitude=False,
                                    seed=0, size=6, stride=2, batch_size=16)
    np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-6)
    assert method.plan(image, "GetSmoothedMask", size=6, stride=2).rows_per_input == 6 * 6 + 1


def test_scalar_y_and_uint8_input(rng):
    shape = (5, 5, 1)
    graph, session, x, y, w = make_linear(shape, dtype=tf.float32, scalar_y=True)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    mask = Occlusion(graph, session, y, x).GetMask(image, size=1)
    assert mask.dtype == np.float32
    np.testing.assert_allclose(mask, w * image, rtol=1e-5, atol=1e-3)


def test_inputs_and_feed_dict_unchanged(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4, 4])
        scale = v1.placeholder(tf.float32, [])
        y = scale * tf.reduce_sum(x ** 2, axis=[1, 2])
    session = v1.Session(graph=graph)
    image = rng.normal(size=(4, 4)).astype(np.float32)
    before, feed = image.copy(), {scale: 2.0}
    mask = Occlusion(graph, session, y, x).GetMask(image, feed, size=2)
    np.testing.assert_array_equal(image, before)
    assert feed == {scale: 2.0}
    score = lambda v: 2.0 * float(np.sum(v ** 2))  # noqa: E731
    np.testing.assert_allclose(mask, reference_occlusion(score, image, 2, 2), rtol=1e-5)


# -- memory --------------------------------------------------------------------------


def test_peak_memory_is_batch_size_copies_not_all_copies(rng):
    shape = (96, 96, 1)
    graph, session, x, y, _ = make_linear(shape, dtype=tf.float32)
    image = rng.normal(size=shape).astype(np.float32)
    method = Occlusion(graph, session, y, x)
    windows = (96 - 4 + 1) ** 2
    all_copies = windows * image.nbytes  # ~318 MB
    limit = 4 * 2**20
    batch_size = 32  # 32 copies: ~1.2 MB
    assert all_copies > 50 * limit and batch_size * image.nbytes < limit
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        mask = method.GetMask(image, size=4, batch_size=batch_size, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak / 2**20:.1f} MB"
    assert np.all(np.isfinite(mask)) and np.any(mask != 0)


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 17}, ValueError, "larger than the input's 16x16"),
        ({"size": 3, "window_width": 20}, ValueError, "window 3x20 is larger"),
        ({"stride": 0}, ValueError, "stride: expected a positive integer"),
        ({"stride": -2}, ValueError, "stride"),
        ({"stride": 1.5}, TypeError, "stride"),
        ({"size": 0}, ValueError, "size"),
        ({"value": float("nan")}, ValueError, "value"),
        ({"baseline": np.zeros((16, 16))}, ValueError, r"baseline: expected .* got shape"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"colour": 1}, TypeError, "colour"),
    ],
)
def test_bad_arguments_raise_before_any_run(relu_cnn, counting, kwargs, error, match):
    spy = counting(relu_cnn.session)
    method = Occlusion(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    image = np.zeros((16, 16, 3), np.float32)
    call = method.GetMaskBatch if "colour" in kwargs else method.GetMask
    with pytest.raises(error, match=match):
        call(image[None] if call == method.GetMaskBatch else image, **kwargs)
    assert spy.run.call_count == 0


def test_wrong_input_shape_raises(relu_cnn):
    method = Occlusion(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    with pytest.raises(ValueError, match="x_value"):
        method.GetMask(np.zeros((15, 16, 3), np.float32))


# -- PAIR ----------------------------------------------------------------------------


@pytest.mark.oracle
def test_same_numbers_as_pair(relu_cnn, rng):
    pair = pytest.importorskip("saliency.tf1")
    image = rng.normal(size=(16, 16, 3)).astype(np.float32)
    ours = Occlusion(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    theirs = pair.Occlusion(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    for size, value in ((15, 0), (4, 0.5), (1, -1)):
        expected = theirs.GetMask(image, size=size, value=value)
        got = ours.GetMask(image, size=size, value=value)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # PAIR's defaults, positionally.
    np.testing.assert_allclose(ours.GetMask(image, None, 15, 0), theirs.GetMask(image),
                               rtol=1e-4, atol=1e-5)


def test_progress_bar_on_and_off(relu_cnn, capsys):
    method = Occlusion(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = np.zeros((16, 16, 3), np.float32)
    method.GetMask(image, size=4, progress=True)
    assert "Occlusion" in capsys.readouterr().err
    method.GetMask(image, size=4, progress=False)
    method.GetMask(image, size=4)  # default: only for long runs (here 170 rows)
    assert capsys.readouterr().err == ""
