"""GuidedIG: its path against its definition, batching across paths, PAIR equality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.engine.noise import noise_key, noisy_copies
from saliency_tf1.methods.guided_ig import GuidedIG

v1 = tf.compat.v1


def analytic_gradient(x):
    x = np.asarray(x, np.float64)
    return np.stack([np.full_like(x[..., 0], 5.0), 2 * x[..., 1], np.cos(x[..., 2])], axis=-1)


def make(model, session=None):
    return GuidedIG(model.graph, session or model.session, model.y, model.x)


def fed_rows(spy, x):
    return np.concatenate([call.kwargs["feed_dict"][x] for call in spy.run.call_args_list])


@pytest.mark.parametrize("fraction, max_dist", [(1.0, 1.0), (0.25, 0.0), (0.5, 0.0)])
def test_straight_line_cases_match_left_riemann_ig(analytic, counting, fraction, max_dist):
    """max_dist=1, fraction=1 moves every feature by the same share; max_dist=0 pins every
    feature to the line. Both walk x_t = b + (t/T)(x - b) and sum grad(x_t) (x - b) / T."""
    spy = counting(analytic.session)
    method = make(analytic, spy)
    x, b = np.array([1.5, -2.0, 2.5]), np.array([-0.5, 1.0, -1.0])
    steps = 16
    mask = method.GetMask(x, x_baseline=b, x_steps=steps, fraction=fraction, max_dist=max_dist)
    points = b + np.arange(steps)[:, None] / steps * (x - b)
    np.testing.assert_allclose(fed_rows(spy, analytic.x), points, rtol=1e-6, atol=1e-6)
    expected = analytic_gradient(points).sum(axis=0) * (x - b) / steps
    np.testing.assert_allclose(mask, expected, rtol=1e-5, atol=1e-6)
    assert spy.run.call_count == steps


def test_unbounded_path_moves_smallest_gradient_first(counting):
    """y = a . x with |a| = 1 < 2 < 3 < 4, fraction 1/4, max_dist 1, 4 steps from 0 to 1:
    each step moves exactly the free feature of smallest |a| all the way."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 4])
        y = tf.reduce_sum(x * np.array([-3.0, 1.0, 4.0, -2.0], np.float32), axis=1)
    with v1.Session(graph=graph) as session:
        spy = counting(session)
        method = GuidedIG(graph, spy, y, x)
        mask = method.GetMask(np.ones(4), x_steps=4, fraction=0.25, max_dist=1.0)
        np.testing.assert_array_equal(fed_rows(spy, x), [[0, 0, 0, 0], [0, 1, 0, 0],
                                                         [0, 1, 0, 1], [1, 1, 0, 1]])
        np.testing.assert_allclose(mask, [-3.0, 1.0, 4.0, -2.0])


def test_completeness_on_analytic_function(analytic):
    method = make(analytic)
    x, b = np.array([1.0, 1.5, 2.0]), np.zeros(3)
    mask = method.GetMask(x, x_baseline=b, x_steps=400, fraction=0.3, max_dist=0.1)
    f = 5 * x[0] + x[1] ** 2 + math.sin(x[2])
    assert abs(mask.sum() - f) < 0.01 * abs(f)


def test_batch_and_smoothing_advance_paths_together(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    xs = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)
    bs = rng.uniform(size=(3, 16, 16, 3)).astype(np.float32)
    singles = np.stack([method.GetMask(x, x_baseline=b, x_steps=10) for x, b in zip(xs, bs)])
    spy.run.reset_mock()
    batch = method.GetMaskBatch(xs, x_baseline=bs, x_steps=10, batch_size=2)
    assert spy.run.call_count == 10 * math.ceil(3 / 2)
    np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-6 * np.abs(singles).max())
    spy.run.reset_mock()
    shared = method.GetMaskBatch(xs, x_steps=10)  # zero baseline for all, one run a step
    assert spy.run.call_count == 10
    np.testing.assert_allclose(shared[2], method.GetMask(xs[2], x_steps=10), rtol=1e-5,
                               atol=1e-6 * np.abs(shared).max())

    x = xs[0]
    noisy = noisy_copies(x, 0.15 * float(x.max() - x.min()), 0, 5, noise_key(2))
    expected = np.mean([method.GetMask(v, x_steps=8) ** 2 for v in noisy], axis=0)
    spy.run.reset_mock()
    smooth = method.GetSmoothedMask(x, nsamples=5, seed=2, x_steps=8, batch_size=4)
    assert spy.run.call_count == 8 * math.ceil(5 / 4)
    np.testing.assert_allclose(smooth, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_input_equal_to_baseline_gives_zeros_without_running(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    x = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(method.GetMask(x, x_baseline=x), np.zeros_like(x))
    assert spy.run.call_count == 0
    both = method.GetMaskBatch(np.stack([x, x]), x_baseline=np.stack([x, 0 * x]), x_steps=5)
    assert not both[0].any() and both[1].any()
    assert spy.run.call_count == 5  # only the moving path is fed


@pytest.fixture
def pair_guided_ig(monkeypatch):
    """PAIR 0.2.1's GuidedIG with its np.quantile(..., interpolation=) call shimmed:
    numpy >= 2.4 only takes method=."""
    pair = pytest.importorskip("saliency.tf1")
    core = pytest.importorskip("saliency.core.guided_ig")

    class NumpyShim:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def quantile(a, q, interpolation=None, **kwargs):
            return np.quantile(a, q, method=interpolation, **kwargs)

    monkeypatch.setattr(core, "np", NumpyShim())
    return pair.GuidedIG


@pytest.mark.oracle
def test_equals_pair_0_2_1(relu_cnn, rng, pair_guided_ig):
    ours = make(relu_cnn)
    theirs = pair_guided_ig(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    x = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    b = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    cases = [((None, 30, 0.25, 0.02), x), ((b, 25, 0.1, 0.1), x),
             ((None, 20, 0.5, 1.0), x.astype(np.float64)), ((b, 15, 0.0, 0.3), x)]
    for (baseline, steps, fraction, max_dist), value in cases:
        reference = theirs.GetMask(value, None, baseline, steps, fraction, max_dist)
        got = ours.GetMask(value, None, baseline, steps, fraction, max_dist)  # PAIR's order
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-9)
    np.random.seed(8)
    expected = theirs.GetSmoothedMask(x, nsamples=3, x_steps=10)
    np.random.seed(8)
    np.testing.assert_allclose(ours.GetSmoothedMask(x, nsamples=3, x_steps=10), expected,
                               rtol=1e-5, atol=1e-6 * expected.max())


def test_bad_input_raises_before_any_run(relu_cnn, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    x = np.ones((16, 16, 3), np.float32)
    before = relu_cnn.op_count()
    with pytest.raises(ValueError, match=r"x_baseline: expected shape \(16, 16, 3\)"):
        method.GetMask(x, x_baseline=np.zeros((16, 3)))
    with pytest.raises(ValueError, match="x_baseline: contains NaN or Inf"):
        method.GetMask(x, x_baseline=np.full_like(x, -np.inf))
    with pytest.raises(ValueError, match="x_steps: expected a positive integer"):
        method.GetMask(x, x_steps=0)
    with pytest.raises(ValueError, match=r"fraction: expected a number in \[0, 1\], got 1.5"):
        method.GetMask(x, fraction=1.5)
    with pytest.raises(ValueError, match="max_dist: expected a finite number >= 0.0"):
        method.GetMask(x, max_dist=-0.1)
    with pytest.raises(ValueError, match="x_baseline: expected shape"):
        method.GetMaskBatch(np.stack([x, x]), x_baseline=np.zeros((3, 16, 16, 3)))
    assert spy.run.call_count == 0 and relu_cnn.op_count() == before


def test_graph_and_arrays_unchanged(relu_cnn, rng):
    method = make(relu_cnn)
    before = relu_cnn.op_count()
    x = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    b = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    x_copy, b_copy = x.copy(), b.copy()
    method.GetMask(x, x_baseline=b, x_steps=5)
    method.GetMaskBatch(np.stack([x, b]), x_baseline=b, x_steps=5)
    method.GetSmoothedMask(x, nsamples=2, x_steps=5, seed=0)
    assert relu_cnn.op_count() == before
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(b, b_copy)
