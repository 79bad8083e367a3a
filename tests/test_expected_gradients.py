"""ExpectedGradients / GradientSHAP: completeness in expectation (error ~ 1/sqrt(n)), exact
identities on linear models, the reservoir draw, seeds, batching, refusals, core API."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from saliency_tf1.compat.call_model import CallModelBackend

from saliency_tf1.engine.backend import INPUT_OUTPUT_GRADIENTS
from saliency_tf1.methods.expected_gradients import (
    ExpectedGradients,
    ReferenceDraw,
    draw_references,
)

v1 = tf.compat.v1


def smooth_net(seed=0, d=5):
    """y = u . tanh(x W + b) + 0.3 sum(x^2): smooth, far from linear."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, d], name="x")
        h = tf.tanh(x @ tf.constant(rng.normal(0, 1.2, (d, 7)), tf.float32)
                    + tf.constant(rng.normal(0, .3, 7), tf.float32))
        y = (tf.reduce_sum(h * tf.constant(rng.normal(size=7), tf.float32), 1)
             + 0.3 * tf.reduce_sum(x * x, 1))
    return graph, v1.Session(graph=graph), x, y


def linear_net(w):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, len(w)], name="x")
        y = tf.reduce_sum(x * tf.constant(w, tf.float32), 1) - 1.0
    return graph, v1.Session(graph=graph), x, y


@pytest.fixture
def smooth():
    graph, session, x, y = smooth_net()
    with session:
        yield graph, session, x, y


def test_completeness_error_shrinks_like_one_over_sqrt_n(smooth):
    graph, session, x, y = smooth
    rng = np.random.default_rng(0)
    point = rng.normal(size=5).astype(np.float32)
    refs = rng.normal(size=(40, 5)).astype(np.float32)
    target = session.run(y, {x: point[None]})[0] - session.run(y, {x: refs}).mean()
    eg = ExpectedGradients(graph, session, y, x)
    sizes = [16, 64, 256, 1024]
    rms, means = [], []
    for n in sizes:
        errors = [eg.GetMask(point, references=refs, nsamples=n, seed=s, batch_size=512).sum()
                  - target for s in range(12)]
        rms.append(float(np.sqrt(np.mean(np.square(errors)))))
        means.append(float(np.mean(errors)))
    slope = np.polyfit(np.log(sizes), np.log(rms), 1)[0]
    print("nsamples", sizes, "rms completeness error", rms, "log-log slope", slope)
    assert -0.75 < slope < -0.3  # 1/sqrt(n): -0.5
    # 64x the samples: the error falls about 8x (1/sqrt(n)), not 64x (no bias left).
    assert 3 < rms[0] / rms[-1] < 20
    # Unbiased: the mean error over seeds is within its standard error of 0.
    assert all(abs(m) < 3.5 * r / np.sqrt(12) for m, r in zip(means, rms))


def test_linear_model_with_one_reference_is_exact(rng):
    """A constant gradient: every sample gives (x - r) * w, whatever its path point."""
    w = rng.normal(size=4)
    graph, session, x, y = linear_net(w)
    xs = rng.normal(size=(3, 4)).astype(np.float32)
    ref = rng.normal(size=4).astype(np.float32)
    with session:
        eg = ExpectedGradients(graph, session, y, x)
        for refs in (ref, ref[None], [ref], iter([ref[None]])):
            masks = eg.GetMaskBatch(xs, references=refs, nsamples=7, seed=1)
            np.testing.assert_allclose(masks, (xs - ref) * w, rtol=1e-5, atol=1e-6)


def test_gradient_shap_noise_averages_out_on_a_linear_model(rng):
    """With noise e_k on the input, sum(mask) - (f(x) - f(r)) = w . mean_k e_k: zero-mean,
    standard deviation stdev * |w| / sqrt(n), and not zero (the noise is used)."""
    w = rng.normal(size=4)
    graph, session, x, y = linear_net(w)
    point, ref = rng.normal(size=4).astype(np.float32), np.zeros(4, np.float32)
    stdev, n = 0.5, 400
    with session:
        eg = ExpectedGradients(graph, session, y, x)
        gaps = np.array([eg.GetMask(point, references=ref, nsamples=n, stdev=stdev, seed=s).sum()
                         - float(point @ w) for s in range(20)])
    sigma = stdev * np.linalg.norm(w) / np.sqrt(n)
    assert np.all(np.abs(gaps) < 5 * sigma)
    assert 0.4 * sigma < gaps.std() < 2.0 * sigma


def test_seed_batching_and_batch_equal_stacked_calls(smooth):
    graph, session, x, y = smooth
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(3, 5)).astype(np.float32)
    refs = rng.normal(size=(9, 5))
    eg = ExpectedGradients(graph, session, y, x)
    kw = {"references": refs, "nsamples": 11, "stdev": 0.2, "seed": 5}
    batch = eg.GetMaskBatch(xs, **kw, batch_size=4)
    np.testing.assert_allclose(eg.GetMaskBatch(xs, **kw, batch_size=1000), batch, rtol=1e-5,
                               atol=1e-6)
    for i in range(3):
        np.testing.assert_allclose(eg.GetMask(xs[i], **kw, batch_size=7), batch[i], rtol=1e-5,
                                   atol=1e-6)
    assert not np.allclose(eg.GetMaskBatch(xs, **{**kw, "seed": 6}), batch)
    # A Generator seed, and the global state for seed=None.
    np.testing.assert_allclose(eg.GetMaskBatch(xs, **{**kw, "seed": np.random.default_rng(5)}),
                               batch, rtol=1e-6)
    np.random.seed(2)
    first = eg.GetMask(xs[0], references=refs, nsamples=5)
    np.random.seed(2)
    np.testing.assert_array_equal(eg.GetMask(xs[0], references=refs, nsamples=5), first)


def test_reservoir_draws_every_reference_uniformly():
    """An iterable read once in batches of 3 and single items: each of 10 references is drawn
    with probability 1/10 (chi-square over 30000 draws)."""
    items = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    stream = [items[0:3], items[3], items[4:7], items[7:8], items[8:10]]
    draw = draw_references(iter(stream), (2,), 30000, np.random.default_rng(0), np.float32)
    counts = np.bincount(draw.table[:, 0].astype(int), minlength=10)
    chi2 = float(np.sum((counts - 3000) ** 2 / 3000))
    assert chi2 < 27.9  # 9 degrees of freedom, p = 0.001
    table = draw_references(items, (2,), 30000, np.random.default_rng(0), np.float32)
    counts = np.bincount(table.index, minlength=10)
    assert float(np.sum((counts - 3000) ** 2 / 3000)) < 27.9


def test_uniform_preset_draws_within_the_inputs_range():
    draw = draw_references("uniform", (4, 3), 8, np.random.default_rng(0), np.float32)
    assert isinstance(draw, ReferenceDraw) and draw.uniform_key is not None
    inputs = np.stack([np.linspace(-2, 5, 12).reshape(4, 3), np.full((4, 3), 0.5)]).astype(
        np.float32)
    rows = draw.rows(np.array([0, 3]), inputs, np.dtype(np.float32))
    assert rows.shape == (2, 4, 3)
    assert rows[0].min() >= -2 and rows[0].max() <= 5 and rows[0].std() > 1
    np.testing.assert_array_equal(rows[1], 0.5)
    again = draw.rows(np.array([3, 0]), inputs[::-1], np.dtype(np.float32))
    np.testing.assert_array_equal(again[1], rows[0])  # sample 0's draw, whatever the chunk


@pytest.mark.parametrize("kwargs, error, name", [
    ({"references": np.zeros((3, 4))}, ValueError, "references"),
    ({"references": np.zeros((2, 5, 1))}, ValueError, "references"),
    ({"references": np.full((2, 5), np.nan)}, ValueError, "references"),
    ({"references": iter([])}, ValueError, "references"),
    ({"references": [np.zeros(5), np.zeros(4)]}, ValueError, "references[1]"),
    ({"references": "gaussian"}, ValueError, "references"),
    ({"references": 3}, ValueError, "references"),
    ({"references": object()}, TypeError, "references"),
    ({"references": np.zeros(5), "nsamples": 0}, ValueError, "nsamples"),
    ({"references": np.zeros(5), "stdev": -1.0}, ValueError, "stdev"),
    ({"references": np.zeros(5), "seed": 1.5}, TypeError, "seed"),
    ({}, TypeError, "references"),
])
def test_bad_arguments_are_refused_by_name_before_any_run(smooth, counting, kwargs, error, name):
    graph, session, x, y = smooth
    spy = counting(session)
    eg = ExpectedGradients(graph, spy, y, x)
    ops = len(graph.get_operations())
    with pytest.raises(error, match=name.replace("[", r"\[")):
        eg.GetMask(np.zeros(5, np.float32), **kwargs)
    assert spy.run.call_count == 0 and len(graph.get_operations()) == ops


def test_smoothed_mask_is_reproducible_and_adds_no_ops(smooth):
    graph, session, x, y = smooth
    eg = ExpectedGradients(graph, session, y, x)
    ops = len(graph.get_operations())
    point = np.linspace(-1, 1, 5).astype(np.float32)
    refs = np.random.default_rng(0).normal(size=(6, 5))
    one = eg.GetSmoothedMask(point, references=refs, nsamples=3, seed=0, batch_size=16)
    two = eg.GetSmoothedMask(point, references=refs, nsamples=3, seed=0, batch_size=64)
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one, eg.GetSmoothedMask(point, references=refs, nsamples=3, seed=1))
    assert len(graph.get_operations()) == ops


def test_core_api_gives_the_tf1_masks(smooth):
    """Only input gradients are asked: the same kernel over a call_model_function."""
    graph, session, x, y = smooth
    with graph.as_default():
        grad = tf.gradients(y, x)[0]

    def call_model(x_batch, call_model_args=None, expected_keys=None):
        assert expected_keys == [INPUT_OUTPUT_GRADIENTS]
        return {INPUT_OUTPUT_GRADIENTS: session.run(grad, {x: x_batch})}

    rng = np.random.default_rng(4)
    xs, refs = rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(5, 5))
    kw = {"references": refs, "nsamples": 9, "stdev": 0.1, "seed": 3}
    backend = CallModelBackend.for_input(xs, call_model, batched=True)
    core = ExpectedGradients.from_backend(backend).GetMaskBatch(xs, **kw)
    tf1 = ExpectedGradients(graph, session, y, x).GetMaskBatch(xs, **kw)
    np.testing.assert_allclose(core, tf1, rtol=1e-5, atol=1e-6)
