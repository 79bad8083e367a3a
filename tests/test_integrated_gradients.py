"""IntegratedGradients: completeness, rules, batching, PAIR equality, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.engine.noise import noise_key, noisy_copies
from saliency_tf1.engine.paths import RULES
from saliency_tf1.methods.integrated_gradients import IntegratedGradients
from saliency_tf1.target import ClassTarget

v1 = tf.compat.v1


def analytic_parts(x):
    """The three summands of the analytic fixture, ``5 x0``, ``x1**2``, ``sin x2``."""
    x = np.asarray(x, np.float64)
    return np.array([5 * x[0], x[1] ** 2, np.sin(x[2])])


def make(model, session=None):
    return IntegratedGradients(model.graph, session or model.session, model.y, model.x)


def f_values(model, xs):
    return model.session.run(model.y, {model.x: np.asarray(xs, np.float32)}).astype(np.float64)


# -- completeness ------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["trapezoid", "midpoint", "gauss_legendre"])
def test_completeness_per_feature_on_analytic_function(analytic, rule):
    """Each feature gets f_i(x_i) - f_i(b_i): exact for 5 x0 and x1**2, converged for sin.

    The sin feature's quadrature error is below h**2/12 * max|g''| ~ 1e-5 at 400 steps.
    """
    method = make(analytic)
    x, b = np.array([1.5, -2.0, 2.5]), np.array([-0.5, 1.0, -1.0])
    mask = method.GetMask(x, x_baseline=b, x_steps=400 if rule != "gauss_legendre" else 20,
                          rule=rule)
    np.testing.assert_allclose(mask, analytic_parts(x) - analytic_parts(b), rtol=1e-4, atol=1e-5)


def test_pair_rule_completeness_linear_and_quadratic_exact(analytic):
    """PAIR's nodes are symmetric about 1/2, so its rule is exact for integrands linear in alpha."""
    method = make(analytic)
    x, b = np.array([1.5, -2.0, 2.5]), np.array([-0.5, 1.0, -1.0])
    mask = method.GetMask(x, x_baseline=b, x_steps=7)
    np.testing.assert_allclose(mask[:2], (analytic_parts(x) - analytic_parts(b))[:2], rtol=1e-5)


@pytest.mark.parametrize("rule, order, refine", [
    ("pair", 1, lambda n: 2 * n),
    ("trapezoid", 2, lambda n: 2 * n - 1),
    ("midpoint", 2, lambda n: 2 * n),
])
def test_each_rule_converges_at_its_order(analytic, rule, order, refine):
    """Feature 2 integrates cos along the path: its error shrinks as the rule promises."""
    method = make(analytic)
    x, b = np.array([0.0, 0.0, 2.0]), np.zeros(3)
    exact = math.sin(2.0)

    def error(steps):
        return abs(float(method.GetMask(x, x_baseline=b, x_steps=steps, rule=rule)[2]) - exact)

    for steps in (8, 16):
        observed = math.log2(error(steps) / error(refine(steps)))
        assert abs(observed - order) < 0.15, (rule, steps, observed)


def test_gauss_legendre_converges_spectrally(analytic):
    method = make(analytic)
    x = np.array([0.0, 0.0, 2.0])
    errors = [abs(float(method.GetMask(x, x_steps=n, rule="gauss_legendre")[2]) - math.sin(2.0))
              for n in (1, 2, 3, 4)]
    assert all(b < a / 20 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5  # float32 model: the float floor


@pytest.mark.parametrize("rule", ["trapezoid", "gauss_legendre"])
def test_relu_cnn_300_steps_completeness_below_one_percent(relu_cnn, rng, rule):
    """An image in [0, 1] against the black baseline (errors ~1e-4 relative here).

    The integrand is piecewise constant (ReLU kinks), so every rule is first order in
    the worst case; a baseline with f(b) close to f(x) makes the *relative* error large.
    """
    method = make(relu_cnn)
    x = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    b = np.zeros_like(x)
    mask, error = method.GetMask(x, x_baseline=b, x_steps=300, rule=rule, return_error=True)
    fx, fb = f_values(relu_cnn, [x, b])
    gap = fx - fb
    assert abs(mask.sum(dtype=np.float64) - gap) / abs(gap) < 0.01
    np.testing.assert_allclose(error, mask.sum(dtype=np.float64) - gap, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("rule", RULES)
def test_return_error_equals_its_definition(relu_cnn, rng, counting, rule):
    """f(x), f(b) come with the path's runs: no extra run for rules that hold alpha=0 and 1."""
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    b = np.full((16, 16, 3), 0.3, np.float32)
    masks, errors = method.GetMaskBatch(xs, x_baseline=b, x_steps=10, batch_size=8,
                                        rule=rule, return_error=True)
    gaps = f_values(relu_cnn, xs) - f_values(relu_cnn, [b])[0]
    np.testing.assert_allclose(errors, masks.reshape(2, -1).sum(1, dtype=np.float64) - gaps,
                               rtol=1e-4, atol=1e-7)
    rows = 2 * (10 if rule in ("pair", "trapezoid") else 12)  # 2 extra rows for f(b), f(x)
    assert spy.run.call_count == math.ceil(rows / 8)
    np.testing.assert_allclose(
        masks, method.GetMaskBatch(xs, x_baseline=b, x_steps=10, rule=rule), rtol=1e-5,
        atol=1e-6 * np.abs(masks).max())
    mask, error = method.GetMask(xs[0], x_baseline=b, x_steps=10, rule=rule, return_error=True)
    assert isinstance(error, float)
    np.testing.assert_allclose(error, errors[0], rtol=1e-4, atol=1e-7)


# -- batching ----------------------------------------------------------------------


def test_batch_size_never_changes_the_mask_and_sets_the_run_count(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    steps = 20
    masks = {}
    for batch_size in (1, 7, steps, 10 * steps):
        spy.run.reset_mock()
        masks[batch_size] = method.GetMask(x, x_steps=steps, batch_size=batch_size)
        assert spy.run.call_count == math.ceil(steps / batch_size)
    for mask in masks.values():
        np.testing.assert_allclose(mask, masks[1], rtol=1e-5, atol=1e-8)
    spy.run.reset_mock()
    method.GetMask(x, x_steps=25)  # the default batches: 25 steps fit one run of 32
    assert spy.run.call_count == 1


def test_path_points_are_pairs_and_built_per_chunk(analytic, counting):
    """Every run gets exactly its chunk of baseline + alpha (x - baseline), alpha = linspace."""
    spy = counting(analytic.session)
    method = make(analytic, spy)
    x, b = np.array([1.0, 2.0, 3.0], np.float32), np.array([0.5, -1.0, 0.0], np.float32)
    fed = []  # copied when fed: the path rows are two buffers, refilled chunk after chunk

    def record(fetches, feed_dict=None, **kwargs):
        fed.append(np.array(feed_dict[analytic.x]))
        return analytic.session.run(fetches, feed_dict=feed_dict, **kwargs)

    spy.run.side_effect = record
    method.GetMask(x, x_baseline=b, x_steps=9, batch_size=4)
    assert [len(rows) for rows in fed] == [4, 4, 1]
    expected = b + np.linspace(0, 1, 9)[:, None] * (x - b)
    np.testing.assert_allclose(np.concatenate(fed), expected, rtol=1e-6)


def test_batch_of_inputs_and_baselines_equals_one_by_one(relu_cnn, rng, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    xs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    bs = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
    singles = np.stack([method.GetMask(x, x_baseline=b, x_steps=12) for x, b in zip(xs, bs)])
    spy.run.reset_mock()
    batch = method.GetMaskBatch(xs, x_baseline=bs, x_steps=12, batch_size=16)
    assert spy.run.call_count == math.ceil(3 * 12 / 16)
    np.testing.assert_allclose(batch, singles, rtol=1e-5, atol=1e-7)
    shared = method.GetMaskBatch(xs, x_baseline=bs[0], x_steps=12)
    np.testing.assert_allclose(shared[1], method.GetMask(xs[1], x_baseline=bs[0], x_steps=12),
                               rtol=1e-5, atol=1e-7)


def test_two_baselines_for_one_input_in_one_stream(relu_cnn, rng, counting):
    """XRAI's call: one input against a black and a white baseline, sharing batches."""
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    x = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    black, white = np.zeros_like(x), np.ones_like(x)
    both = method.GetMaskBatch(np.stack([x, x]), x_baseline=np.stack([black, white]),
                               x_steps=25, batch_size=50)
    assert spy.run.call_count == 1
    np.testing.assert_allclose(both[0], method.GetMask(x, x_baseline=black), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(both[1], method.GetMask(x, x_baseline=white), rtol=1e-5,
                               atol=1e-7)


def test_per_example_class_feed(relu_cnn, rng):
    target = ClassTarget(relu_cnn.logits)
    method = IntegratedGradients(relu_cnn.graph, relu_cnn.session, target.y, relu_cnn.x)
    xs = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
    batch = method.GetMaskBatch(xs, target.feed([1, 3]), x_steps=10, batch_size=7)
    for x, k, mask in zip(xs, (1, 3), batch):
        np.testing.assert_allclose(mask, method.GetMask(x, target.feed(k), x_steps=10),
                                   rtol=1e-5, atol=1e-7)


def test_smoothed_mask_stacks_samples_and_steps(analytic, counting):
    """mean_k IG(x + e_k)**2 with the seed's noise; samples x steps share runs."""
    spy = counting(analytic.session)
    method = make(analytic, spy)
    x = np.array([0.5, -1.0, 2.0])
    noisy = noisy_copies(x, 0.2 * (x.max() - x.min()), 0, 9, noise_key(5))
    expected = np.mean([(analytic_parts(v) - analytic_parts(np.zeros(3))) ** 2 for v in noisy],
                       axis=0)
    smooth = method.GetSmoothedMask(x, stdev_spread=0.2, nsamples=9, seed=5, x_steps=40,
                                    rule="gauss_legendre", batch_size=120)
    np.testing.assert_allclose(smooth, expected, rtol=1e-4)
    assert spy.run.call_count == 3  # 120 // 40 = 3 samples (120 rows) per run


def test_scalar_y_and_uint8_input(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 3])
        y = tf.reduce_sum(x**2, axis=1)[0]
    with v1.Session(graph=graph) as session:
        method = IntegratedGradients(graph, session, y, x)
        img = np.array([1, 2, 250], np.uint8)
        mask = method.GetMask(img, x_steps=4, rule="trapezoid")
        assert mask.dtype == np.float32
        np.testing.assert_allclose(mask, img.astype(np.float64) ** 2, rtol=1e-6)


# -- PAIR ------------------------------------------------------------------------------


@pytest.mark.oracle
def test_equals_pair_0_2_1(relu_cnn, rng):
    pair = pytest.importorskip("saliency.tf1")
    ours = make(relu_cnn)
    theirs = pair.IntegratedGradients(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    b = rng.normal(size=(16, 16, 3)).astype(np.float32)
    reference = theirs.GetMask(x, x_baseline=b, x_steps=30, batch_size=1)
    scale = np.abs(reference).max()
    for batch_size in (None, 1, 7, 30, 300):
        np.testing.assert_allclose(ours.GetMask(x, x_baseline=b, x_steps=30,
                                                batch_size=batch_size),
                                   reference, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(ours.GetMask(x), theirs.GetMask(x, batch_size=5),
                               rtol=1e-5, atol=1e-6 * scale)
    x64 = x.astype(np.float64)  # float64 in, float64 out, as PAIR
    got = ours.GetMask(x64, None, None, 12, 5)  # PAIR's positional order
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, theirs.GetMask(x64, None, None, 12, 5), rtol=1e-5,
                               atol=1e-6 * scale)
    np.random.seed(3)
    expected = theirs.GetSmoothedMask(x, nsamples=4, x_steps=10, batch_size=10)
    np.random.seed(3)
    np.testing.assert_allclose(ours.GetSmoothedMask(x, nsamples=4, x_steps=10), expected,
                               rtol=1e-4, atol=1e-6 * expected.max())


# -- bad input and side effects ----------------------------------------------------------


def test_bad_input_raises_before_any_run(relu_cnn, counting):
    spy = counting(relu_cnn.session)
    method = make(relu_cnn, spy)
    x = np.zeros((16, 16, 3), np.float32)
    before = relu_cnn.op_count()
    with pytest.raises(ValueError, match=r"x_baseline: expected shape \(16, 16, 3\) \(the "
                                         r"input's shape\), got shape \(16, 16\)"):
        method.GetMask(x, x_baseline=np.zeros((16, 16)))
    with pytest.raises(ValueError, match="x_baseline: expected shape"):
        method.GetMask(x, x_baseline=np.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="x_baseline: contains NaN or Inf"):
        method.GetMask(x, x_baseline=np.full_like(x, np.nan))
    with pytest.raises(ValueError, match=r"x_baseline: expected shape \(16, 16, 3\) \(one for all "
                                         r"inputs\) or \(2, 16, 16, 3\) \(one per input\), "
                                         r"got shape \(3, 16, 16, 3\)"):
        method.GetMaskBatch(np.stack([x, x]), x_baseline=np.zeros((3, 16, 16, 3)))
    for steps in (0, -3):
        with pytest.raises(ValueError, match=f"x_steps: expected a positive integer.*{steps}"):
            method.GetMask(x, x_steps=steps)
    with pytest.raises(TypeError, match="x_steps: expected a positive integer"):
        method.GetMask(x, x_steps=2.0)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        method.GetMask(x, batch_size=0)
    with pytest.raises(ValueError, match="rule: expected one of"):
        method.GetMask(x, rule="simpson")
    with pytest.raises(ValueError, match="x_value: expected one input"):
        method.GetMask(np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="x_steps: expected a positive integer"):
        method.GetSmoothedMask(x, x_steps=0, nsamples=2)
    with pytest.raises(TypeError, match="return_error is available from GetMask"):
        method.GetSmoothedMask(x, nsamples=2, return_error=True)
    assert spy.run.call_count == 0
    assert relu_cnn.op_count() == before


def test_graph_and_arrays_unchanged_by_calls(relu_cnn, rng):
    method = make(relu_cnn)
    before = relu_cnn.op_count()
    make(relu_cnn)  # a second method shares the gradient ops
    x = rng.normal(size=(16, 16, 3)).astype(np.float32)
    b = rng.normal(size=(16, 16, 3)).astype(np.float32)
    feed: dict = {}
    x_copy, b_copy = x.copy(), b.copy()
    method.GetMask(x, feed, x_baseline=b, x_steps=5, return_error=True)
    method.GetMaskBatch(np.stack([x, x]), feed, x_baseline=b, x_steps=5, rule="midpoint")
    method.GetSmoothedMask(x, feed, nsamples=2, x_baseline=b, x_steps=5, seed=0)
    assert relu_cnn.op_count() == before
    assert feed == {}
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(b, b_copy)
