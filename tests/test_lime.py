"""LIME and KernelSHAP: exact recovery on models linear in segment presence, Shapley axioms
against brute force, an independent weighted regression, segments, seeds, memory."""

from __future__ import annotations

import itertools
import tracemalloc
from math import factorial

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import PerExample
from saliency_tf1.engine.backend import OUTPUT_LAYER_VALUES
from saliency_tf1.methods.lime import (
    KernelShap,
    Lime,
    kernel_shap_coalitions,
    lime_coalitions,
    shapley_kernel,
)
from saliency_tf1.methods.surrogate import felzenszwalb_partition, sample_key

v1 = tf.compat.v1


def make_model(shape, fn, dtype=tf.float64):
    """y = fn(x) per example, x of ``shape``; returns (graph, session, x, y)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(dtype, [None, *shape], name="x")
        y = fn(x)
    return graph, v1.Session(graph=graph), x, y


def linear(shape, w, dtype=tf.float64):
    axes = list(range(1, len(shape) + 1))
    return make_model(shape, lambda x: tf.reduce_sum(x * tf.constant(w, dtype), axes), dtype)


def grid(h, w, rows, cols):
    """Segment ids of a rows x cols grid over an h x w image (ids 0 .. rows*cols - 1)."""
    return (np.arange(h)[:, None] * rows // h) * cols + np.arange(w)[None, :] * cols // w


def contributions(w, image, segments, fill=0.0):
    d = segments.max() + 1
    fill = np.broadcast_to(fill, image.shape)
    return np.array([np.sum((w * (image - fill))[segments == k]) for k in range(d)])


def brute_force_shapley(value, d):
    """phi_j = sum_S |S|! (d - |S| - 1)! / d! (v(S + j) - v(S)), over every coalition S."""
    phi = np.zeros(d)
    for j in range(d):
        others = [k for k in range(d) if k != j]
        for r in range(d):
            for s in itertools.combinations(others, r):
                z = np.zeros(d, bool)
                z[list(s)] = True
                with_j = z.copy()
                with_j[j] = True
                phi[j] += (factorial(r) * factorial(d - r - 1) / factorial(d)
                           * (value(with_j) - value(z)))
    return phi


def blocks_model(size=8):
    """y = m0 * m1 + m2 + 2 m3 with m_k the mean of quadrant k (of a size x size x 1 input)."""
    h = size // 2

    def fn(x):
        m = [tf.reduce_mean(x[:, r * h:(r + 1) * h, c * h:(c + 1) * h, :], [1, 2, 3])
             for r in range(2) for c in range(2)]
        return m[0] * m[1] + m[2] + 2 * m[3]

    def value(quadrant_on):  # the model on x = ones where on, 0 elsewhere
        m = quadrant_on.astype(float)
        return m[0] * m[1] + m[2] + 2 * m[3]

    return make_model((size, size, 1), fn), value


# -- LIME ---------------------------------------------------------------------------


def test_lime_recovers_a_model_linear_in_segment_presence(rng):
    shape = (12, 12, 3)
    w = rng.normal(size=shape)
    graph, session, x, y = linear(shape, w)
    image = rng.uniform(0.5, 1, shape)
    segments = grid(12, 12, 3, 4) * 7 + 3  # any int ids
    method = Lime(graph, session, y, x)
    out = method.GetMaskWithDetails(image, segments=segments, n_samples=100, alpha=0.0, seed=0)
    np.testing.assert_allclose(out.coefficients, contributions(w, image, segments // 7),
                               rtol=1e-8, atol=1e-8)
    assert out.r2 == pytest.approx(1.0, abs=1e-9)
    assert abs(out.intercept) < 1e-8  # y(baseline 0) = 0
    np.testing.assert_array_equal(out.segment_ids, np.arange(12) * 7 + 3)
    np.testing.assert_array_equal(out.segments, segments // 7)
    mask = method.GetMask(image, segments=segments, n_samples=100, alpha=0.0, seed=0)
    np.testing.assert_allclose(mask, out.attribution_mask)
    assert mask.shape == shape
    np.testing.assert_allclose(mask[..., 0], out.coefficients[segments // 7])
    np.testing.assert_array_equal(mask[..., 0], mask[..., 2])
    assert out.output_value == pytest.approx(np.sum(w * image))


def test_lime_fit_equals_an_independent_weighted_ridge_on_its_samples(rng):
    shape = (6, 6, 1)
    graph, session, x, y = make_model(shape, lambda x: tf.tanh(tf.reduce_sum(x ** 2, [1, 2, 3])
                                                              - 4.0))
    image = rng.uniform(0, 1, shape)
    segments = grid(6, 6, 2, 3)
    method = Lime(graph, session, y, x)
    for alpha, width, n in ((0.0, 0.25, 60), (1.0, 0.5, 200), (3.0, 0.25, 7)):
        out = method.GetMaskWithDetails(image, segments=segments, n_samples=n, alpha=alpha,
                                        kernel_width=width, seed=11, batch_size=9)
        z = lime_coalitions(6, 0, n, sample_key(11))
        assert z[0].all()  # the first sample is the input itself
        values = np.array([np.tanh(np.sum((image[..., 0] * zi[segments]) ** 2) - 4) for zi in z])
        norm = np.linalg.norm(z, axis=1)
        cosine = np.where(norm > 0, 1 - z.sum(1) / (np.where(norm > 0, norm, 1) * np.sqrt(6)), 1)
        weights = np.exp(-cosine ** 2 / width ** 2)
        # Weighted ridge as an augmented least-squares problem (intercept not penalised).
        design = np.hstack([np.ones((n, 1)), z]) * np.sqrt(weights)[:, None]
        penalty = np.hstack([np.zeros((6, 1)), np.sqrt(alpha) * np.eye(6)])
        theta = np.linalg.lstsq(np.vstack([design, penalty]),
                                np.append(values * np.sqrt(weights), np.zeros(6)), rcond=None)[0]
        if n > 7:
            np.testing.assert_allclose(out.coefficients, theta[1:], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(out.intercept, theta[0], rtol=1e-6, atol=1e-9)
            fitted = np.hstack([np.ones((n, 1)), z]) @ theta
            mean = np.sum(weights * values) / weights.sum()
            r2 = 1 - (np.sum(weights * (values - fitted) ** 2)
                      / np.sum(weights * (values - mean) ** 2))
            assert out.r2 == pytest.approx(r2, abs=1e-8)
        else:  # fewer samples than unknowns: a least-squares solution, still finite
            assert np.all(np.isfinite(out.coefficients))


def test_lime_samples_are_half_on():
    z = lime_coalitions(20, 0, 4000, sample_key(0))
    assert abs(z[1:].mean() - 0.5) < 0.01
    np.testing.assert_array_equal(lime_coalitions(20, 100, 300, sample_key(0)), z[100:300])


# -- KernelSHAP ---------------------------------------------------------------------


def test_kernel_shap_on_an_additive_model_is_each_segments_contribution(rng):
    shape = (12, 12, 3)
    w = rng.normal(size=shape)
    graph, session, x, y = linear(shape, w)
    image, fill = rng.uniform(0.5, 1, shape), rng.uniform(0, 0.5, shape)
    segments = grid(12, 12, 4, 5)  # 20 segments: sampled, not enumerated
    method = KernelShap(graph, session, y, x)
    for n_samples in (60, 400):  # pairs (z, 1 - z) add one equation each, given the constraint
        out = method.GetMaskWithDetails(image, segments=segments, n_samples=n_samples,
                                        baseline=fill, seed=1)
        expected = contributions(w, image, segments, fill)
        np.testing.assert_allclose(out.coefficients, expected, rtol=1e-7, atol=1e-9)
        assert out.intercept == pytest.approx(np.sum(w * fill))
        assert out.output_value == pytest.approx(np.sum(w * image))
        assert out.n_samples == n_samples + 2
        assert out.r2 == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("n_samples", [14, 40, 500])
def test_kernel_shap_efficiency_is_exact(rng, n_samples):
    graph, session, x, y = make_model((8, 8, 1), lambda x: tf.sin(3 * tf.reduce_sum(x, [1, 2, 3]))
                                      * tf.reduce_max(x, [1, 2, 3]))
    image = rng.uniform(0, 1, (8, 8, 1))
    method = KernelShap(graph, session, y, x)
    out = method.GetMaskWithDetails(image, segments=grid(8, 8, 4, 4), n_samples=n_samples,
                                    baseline=0.25, seed=0)
    f_x = np.sin(3 * image.sum()) * image.max()
    filled = np.full_like(image, 0.25)
    f_b = np.sin(3 * filled.sum()) * filled.max()
    assert out.output_value == pytest.approx(f_x, rel=1e-12)
    assert out.intercept == pytest.approx(f_b, rel=1e-12)
    assert abs(out.coefficients.sum() - (f_x - f_b)) <= 1e-12 * max(1.0, abs(f_x))


def test_kernel_shap_with_every_coalition_is_the_exact_shapley_value():
    (graph, session, x, y), value = blocks_model()
    method = KernelShap(graph, session, y, x)
    ones = np.ones((8, 8, 1))
    out = method.GetMaskWithDetails(ones, segments=grid(8, 8, 2, 2), n_samples=14)
    assert out.n_samples == 16  # x, the baseline and the 14 proper coalitions
    exact = brute_force_shapley(value, 4)
    np.testing.assert_allclose(exact, [0.5, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(out.coefficients, exact, rtol=1e-10, atol=1e-12)
    assert out.coefficients[0] == pytest.approx(out.coefficients[1], abs=1e-12)  # symmetry
    # More samples than coalitions changes nothing: they are enumerated once.
    more = method.GetMaskWithDetails(ones, segments=grid(8, 8, 2, 2), n_samples=1000, seed=3)
    np.testing.assert_allclose(more.coefficients, out.coefficients, rtol=1e-12)


def test_kernel_shap_symmetric_segments_get_equal_values(rng):
    """Segments entering the model symmetrically (here: a product) get the same phi."""
    size = 8

    def fn(x):
        a = tf.reduce_sum(x[:, :, :4, :], [1, 2, 3])  # left half: segments 0, 2, 4, 6
        b = tf.reduce_sum(x[:, :, 4:, :], [1, 2, 3])  # right half: 1, 3, 5, 7
        return a * b / 64.0

    graph, session, x, y = make_model((size, size, 1), fn)
    segments = grid(8, 8, 4, 2)
    image = np.ones((size, size, 1))
    out = KernelShap(graph, session, y, x).GetMaskWithDetails(image, segments=segments,
                                                              n_samples=254)
    np.testing.assert_allclose(out.coefficients, out.coefficients[0], rtol=1e-10)

    def value(z):
        a, b = 8.0 * z[0::2].sum(), 8.0 * z[1::2].sum()
        return a * b / 64.0

    np.testing.assert_allclose(out.coefficients, brute_force_shapley(value, 8), rtol=1e-10)


def test_kernel_shap_sampled_estimate_approaches_the_shapley_values(rng):
    size = 8
    (graph, session, x, y), _ = blocks_model(size)
    segments = grid(8, 8, 4, 4)  # 16 segments, 4 per quadrant: 65534 coalitions

    def value(z):
        m = [z[[r * 8 + c, r * 8 + c + 1, r * 8 + c + 4, r * 8 + c + 5]].mean()
             for r in (0, 1) for c in (0, 2)]
        return m[0] * m[1] + m[2] + 2 * m[3]

    # The quadrant structure: segment k of the grid is in quadrant (row // 2, col // 2).
    quadrant = (np.arange(16) // 4 // 2) * 2 + (np.arange(16) % 4) // 2
    exact = np.array([0.125, 0.125, 0.25, 0.5])[quadrant]
    method = KernelShap(graph, session, y, x)
    out = method.GetMaskWithDetails(np.ones((size, size, 1)), segments=segments,
                                    n_samples=3000, seed=0, batch_size=512)
    assert not np.allclose(exact, 0)
    np.testing.assert_allclose(out.coefficients.sum(), 4.0, rtol=1e-12)
    assert np.max(np.abs(out.coefficients - exact)) < 0.02
    del value


def test_kernel_shap_coalitions_follow_the_kernel():
    d = 16  # 65534 coalitions: sampled
    sizes = np.arange(1, d)
    z, weights = kernel_shap_coalitions(d, 20000, 0, 20000, sample_key(4))
    np.testing.assert_array_equal(weights, 1.0)
    np.testing.assert_array_equal(z[1::2], ~z[0::2])  # paired with their complements
    mass = (d - 1) / (sizes * (d - sizes))
    observed = np.bincount(z.sum(1), minlength=d)[1:] / len(z)
    np.testing.assert_allclose(observed, mass / mass.sum(), atol=0.01)
    # Enumerated when n_samples covers them: 2^d - 2 coalitions with kernel weights.
    z, weights = kernel_shap_coalitions(4, 14, 0, 14, 0)
    assert len({tuple(r) for r in z}) == 14 and not z.all(1).any() and z.any(1).all()
    np.testing.assert_allclose(weights, [(3) / (len(list(itertools.combinations(range(4), s)))
                                               * s * (4 - s)) for s in z.sum(1)])
    np.testing.assert_allclose(shapley_kernel(4, np.array([1, 2, 3])), [0.25, 0.125, 0.25])


# -- tabular features, time windows ------------------------------------------------------


def test_tabular_features_and_feature_groups(rng):
    w = rng.normal(size=7)
    graph, session, x, y = linear((7,), w)
    row, mean = rng.normal(size=7), rng.normal(size=7)
    shap = KernelShap(graph, session, y, x)
    out = shap.GetMaskWithDetails(row, baseline=mean, n_samples=200, seed=0)
    np.testing.assert_allclose(out.coefficients, w * (row - mean), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(out.attribution_mask, w * (row - mean), rtol=1e-8, atol=1e-10)
    groups = np.array([0, 0, 1, 1, 1, 2, 2])
    grouped = shap.GetMask(row, segments=groups, baseline=mean, n_samples=200, seed=0)
    per_group = np.bincount(groups, weights=w * (row - mean))
    np.testing.assert_allclose(grouped, per_group[groups], rtol=1e-8, atol=1e-10)
    lime = Lime(graph, session, y, x)
    np.testing.assert_allclose(
        lime.GetMask(row, segments=groups, baseline=mean, n_samples=50, alpha=0.0, seed=0),
        per_group[groups], rtol=1e-7, atol=1e-9)


def test_time_windows_over_a_series(rng):
    w = rng.normal(size=(30, 2))
    graph, session, x, y = linear((30, 2), w)
    series = rng.normal(size=(30, 2))
    windows = np.arange(30) // 5
    out = KernelShap(graph, session, y, x).GetMaskWithDetails(series, segments=windows,
                                                              n_samples=62)
    assert out.n_samples == 64  # 6 windows: every coalition
    np.testing.assert_allclose(out.coefficients,
                               np.bincount(windows, weights=(w * series).sum(1)), rtol=1e-9)
    np.testing.assert_array_equal(out.attribution_mask[:, 0], out.attribution_mask[:, 1])


# -- segments ----------------------------------------------------------------------


def test_default_segments_are_xrai_felzenszwalb_superpixels(rng):
    from saliency_tf1.datasets import make_shapes

    image = make_shapes(1, size=32, seed=2).images[0]
    labels = felzenszwalb_partition(image)
    assert labels.shape == (32, 32) and labels.min() == 0
    assert set(np.unique(labels)) == set(range(labels.max() + 1)) and labels.max() >= 2
    graph, session, x, y = linear((32, 32, 3), rng.normal(size=(32, 32, 3)), tf.float32)
    method = KernelShap(graph, session, y, x)
    out = method.GetMaskWithDetails(image, n_samples=64, seed=0)
    np.testing.assert_array_equal(out.segments, labels)
    explicit = method.GetMask(image, segments=labels, n_samples=64, seed=0)
    np.testing.assert_allclose(out.attribution_mask, explicit, rtol=1e-6, atol=1e-7)


def test_batch_takes_one_segmentation_and_baseline_per_input(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float64, [None, 6, 6, 2])
        k = v1.placeholder(tf.int32, [None])
        w = tf.constant(rng.normal(size=(3, 6, 6, 2)))
        y = tf.reduce_sum(tf.tanh(x * tf.gather(w, k)), [1, 2, 3])
    session = v1.Session(graph=graph)
    images, fills = rng.normal(size=(2, 6, 6, 2)), rng.normal(size=(2, 6, 6, 2))
    segs = [grid(6, 6, 2, 2), grid(6, 6, 3, 2)]
    for cls in (Lime, KernelShap):
        method = cls(graph, session, y, x)
        batch = method.GetMaskBatch(images, {k: PerExample([2, 1])}, segments=segs,
                                    baseline=fills, n_samples=40, seed=3, batch_size=13)
        stacked = method.GetMaskBatch(images, {k: PerExample([2, 1])}, segments=np.stack(segs),
                                      baseline=fills, n_samples=40, seed=3, batch_size=64)
        np.testing.assert_allclose(batch, stacked, rtol=1e-10)
        for i, c in enumerate([2, 1]):
            one = method.GetMask(images[i], {k: [c]}, segments=segs[i], baseline=fills[i],
                                 n_samples=40, seed=3)
            np.testing.assert_allclose(batch[i], one, rtol=1e-9, atol=1e-12)


# -- seeds, runs, memory ----------------------------------------------------------------


@pytest.mark.parametrize("cls", [Lime, KernelShap])
def test_seeded_and_independent_of_batch_size_with_stacked_runs(cls, relu_cnn, counting, rng):
    spy = counting(relu_cnn.session)
    method = cls(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    segments = grid(16, 16, 4, 4)
    ops = relu_cnn.op_count()
    rows = 100 if cls is Lime else 102
    reference = method.GetMask(image, segments=segments, n_samples=100, seed=5, batch_size=rows)
    for batch_size in (1, 9, 64, 10**6):
        spy.run.reset_mock()
        got = method.GetMask(image, segments=segments, n_samples=100, seed=5,
                             batch_size=batch_size)
        assert spy.run.call_count == -(-rows // batch_size)
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-6)
    assert not np.allclose(reference, method.GetMask(image, segments=segments, n_samples=100,
                                                     seed=6))
    smoothed = method.GetSmoothedMask(image, nsamples=3, seed=1, segments=segments,
                                      n_samples=30, batch_size=7)
    np.testing.assert_allclose(
        smoothed, method.GetSmoothedMask(image, nsamples=3, seed=1, segments=segments,
                                         n_samples=30, batch_size=1000), rtol=1e-4, atol=1e-7)
    assert relu_cnn.op_count() == ops


@pytest.mark.parametrize("cls", [Lime, KernelShap])
def test_peak_memory_does_not_grow_with_n_samples(cls, rng):
    shape = (64, 64, 3)
    graph, session, x, y = linear(shape, rng.normal(size=shape), tf.float32)
    image = rng.uniform(size=shape).astype(np.float32)
    segments = grid(64, 64, 8, 8)
    method = cls(graph, session, y, x)
    peaks = {}
    for n in (200, 3200):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            mask = method.GetMask(image, segments=segments, n_samples=n, seed=0, batch_size=32)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert np.all(np.isfinite(mask))
    copies = 3200 * image.nbytes  # every perturbed copy at once: 157 MB
    assert peaks[3200] < 8 * 2**20 < copies / 15, peaks
    assert peaks[3200] < 1.5 * peaks[200] + 2**20, peaks


def test_core_api_backend_gives_the_same_values(rng):
    from saliency_tf1.compat.call_model import CallModelBackend

    w = rng.normal(size=(6, 6, 2))
    graph, session, x, y = make_model((6, 6, 2), lambda x: tf.reduce_sum(
        tf.tanh(x * tf.constant(w)), [1, 2, 3]))

    def call_model(batch, call_model_args=None, expected_keys=None):
        assert expected_keys == [OUTPUT_LAYER_VALUES]
        return {OUTPUT_LAYER_VALUES: np.tanh(batch * w).sum(axis=(1, 2, 3))}

    image = rng.normal(size=(6, 6, 2))
    for cls in (Lime, KernelShap):
        core = cls.from_backend(CallModelBackend.for_input(image, call_model))
        tf1 = cls(graph, session, y, x)
        kwargs = {"segments": grid(6, 6, 3, 3), "n_samples": 50, "seed": 2}
        np.testing.assert_allclose(core.GetMask(image, batch_size=8, **kwargs),
                                   tf1.GetMask(image, **kwargs), rtol=1e-9)


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, "n_samples: expected a positive integer"),
        ({"segments": np.zeros((16, 15), int)}, ValueError,
         r"segments: expected an array over the input's leading dimensions .* got shape"),
        ({"segments": np.zeros((16, 16))}, TypeError, "segments: expected an integer array"),
        ({"segments": 3}, ValueError, "segments"),
        ({"baseline": np.zeros((16, 16))}, ValueError, "baseline: expected a number or an array"),
        ({"baseline": float("nan")}, ValueError, "baseline"),
        ({"kernel_width": 0}, ValueError, "kernel_width: expected a number > 0"),
        ({"alpha": -1}, ValueError, "alpha"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"batch_size": -1}, ValueError, "batch_size"),
        ({"bogus": 1}, TypeError, "bogus"),
    ],
)
def test_bad_arguments_raise_before_any_run(relu_cnn, counting, kwargs, error, match):
    spy = counting(relu_cnn.session)
    image = np.zeros((16, 16, 3), np.float32)
    for cls in (Lime, KernelShap):
        if cls is KernelShap and set(kwargs) & {"kernel_width", "alpha"}:
            with pytest.raises(TypeError, match=next(iter(kwargs))):
                cls(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x).GetMask(image, **kwargs)
            continue
        method = cls(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
        with pytest.raises(error, match=match):
            method.GetMask(image, **kwargs)
        with pytest.raises(error, match=match):
            method.GetMaskWithDetails(image, **kwargs)
    assert spy.run.call_count == 0


def test_batch_segments_must_match_the_inputs(relu_cnn):
    method = Lime(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    images = np.zeros((2, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"segments: expected one array per input \(2\), got 3"):
        method.GetMaskBatch(images, segments=[grid(16, 16, 2, 2)] * 3)
    with pytest.raises(ValueError, match=r"segments\[1\]: expected an array over"):
        method.GetMaskBatch(images, segments=[grid(16, 16, 2, 2), np.zeros((3, 3), int)])


def test_too_many_segments_are_refused(counting):
    graph, session, x, y = make_model((64, 64), lambda x: tf.reduce_sum(x, [1, 2]))
    spy = counting(session)
    with pytest.raises(ValueError, match="segments: expected at most 2048 segments, got 4096"):
        KernelShap(graph, spy, y, x).GetMask(np.zeros((64, 64)),
                                             segments=np.arange(4096).reshape(64, 64))
    assert spy.run.call_count == 0


def test_no_default_segments_for_higher_rank_inputs():
    graph, session, x, y = make_model((4, 4, 4, 2), lambda x: tf.reduce_sum(x, [1, 2, 3, 4]))
    with pytest.raises(ValueError, match="segments: no default for inputs of shape"):
        Lime(graph, session, y, x).GetMask(np.zeros((4, 4, 4, 2)))
    out = Lime(graph, session, y, x).GetMask(np.ones((4, 4, 4, 2)),
                                             segments=np.arange(4), alpha=0.0, n_samples=40)
    np.testing.assert_allclose(out, 32.0)  # each segment: 4 x 4 x 2 elements of weight 1
