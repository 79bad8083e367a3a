"""Tabular models: feature ablation, named attributions, known informative features (issue 16).

Also the image + metadata task (an interaction of both inputs), explained
jointly through the multi-input API.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import saliency_tf1 as saliency
from saliency_tf1.datasets import make_image_metadata, make_tabular
from saliency_tf1.metrics import energy_inside
from saliency_tf1.modalities import (
    FeatureAblation,
    chance_hit_rate,
    feature_attributions,
    top_k_hit_rate,
)
from saliency_tf1.modalities.models import train_image_metadata_model, train_tabular_model

v1 = tf.compat.v1


@pytest.fixture
def linear():
    """``y = w . x + 0.5`` over ``[None, 6]`` rows, and a 2-class ``logits`` for ClassTarget."""
    w = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -1.0], np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 6], name="x")
        scale = v1.placeholder(tf.float32, [None], name="scale")
        y = tf.reduce_sum(x * w, axis=1) * scale + 0.5
    with v1.Session(graph=graph) as session:
        yield graph, session, x, y, w, scale


def _ops(graph):
    return len(graph.get_operations())


# ---------------------------------------------------------------------------
# Feature ablation


def test_ablation_of_a_linear_model_is_weight_times_difference(linear, counting):
    graph, session, x, y, w, scale = linear
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 6)).astype(np.float32)
    base = rng.normal(size=6).astype(np.float32)
    spy = counting(session)
    ablation = FeatureAblation(graph, spy, y, x)
    ops = _ops(graph)
    feed = {scale: saliency.PerExample(np.arange(1, 6, dtype=np.float32))}
    masks = ablation.GetMaskBatch(rows, feed, baseline=base, batch_size=8)
    assert spy.run.call_count == -(-5 * 7 // 8)  # 6 ablated rows + the row itself, per input
    expected = w * (rows - base) * np.arange(1, 6)[:, None]
    np.testing.assert_allclose(masks, expected, rtol=1e-5, atol=1e-5)
    # One GetMask equals the batch row; zeros by default; batch_size changes nothing.
    one = ablation.GetMask(rows[2], {scale: [3.0]}, baseline=base)
    np.testing.assert_allclose(one, masks[2], rtol=1e-6)
    np.testing.assert_allclose(ablation.GetMask(rows[0], {scale: [1.0]}, batch_size=1),
                               w * rows[0], rtol=1e-5, atol=1e-6)
    # One baseline per input.
    bases = rng.normal(size=(5, 6)).astype(np.float32)
    per = ablation.GetMaskBatch(rows, {scale: saliency.PerExample(np.ones(5, np.float32))},
                                baseline=bases)
    np.testing.assert_allclose(per, w * (rows - bases), rtol=1e-5, atol=1e-5)
    assert _ops(graph) == ops


def test_ablation_groups_and_a_nonlinear_model(analytic):
    """Groups are ablated together; each value checked against the model in NumPy."""
    m = analytic

    def f(v):  # the analytic fixture's y
        return 5 * v[0] + v[1] ** 2 + np.sin(v[2])

    ablation = FeatureAblation(m.graph, m.session, m.y, m.x)
    row = np.array([0.3, -1.2, 2.0], np.float32)
    base = np.array([1.0, 0.5, -0.5], np.float32)
    mask = ablation.GetMask(row, baseline=base)
    for j in range(3):
        ablated = row.copy()
        ablated[j] = base[j]
        assert mask[j] == pytest.approx(f(row) - f(ablated), rel=1e-5, abs=1e-5)
    grouped = ablation.GetMask(row, baseline=base, groups=np.array([4, 9, 4]))
    both = row.copy()
    both[[0, 2]] = base[[0, 2]]
    assert grouped[0] == grouped[2] == pytest.approx(f(row) - f(both), rel=1e-5)
    assert grouped[1] == pytest.approx(mask[1], rel=1e-6)
    # Any method's GetSmoothedMask: ablation of noisy copies, seeded.
    smooth = ablation.GetSmoothedMask(row, nsamples=4, seed=3, baseline=base, statistic="mean")
    again = ablation.GetSmoothedMask(row, nsamples=4, seed=3, baseline=base, statistic="mean",
                                     batch_size=3)
    np.testing.assert_allclose(smooth, again, rtol=1e-6)


def test_ablation_refuses_bad_arguments_before_running(linear, counting):
    graph, session, x, y, w, scale = linear
    spy = counting(session)
    ablation = FeatureAblation(graph, spy, y, x)
    ops = _ops(graph)
    row = np.ones(6, np.float32)
    feed = {scale: [1.0]}
    with pytest.raises(ValueError, match=r"baseline: expected an array of the input's shape "
                                         r"\(6,\), got shape \(5,\)"):
        ablation.GetMask(row, feed, baseline=np.zeros(5))
    with pytest.raises(ValueError, match=r"baseline: expected .*\(or one per input, \[N, \*\(6,"
                                         r"\)\]\), got shape \(3, 6\)"):
        ablation.GetMaskBatch(np.ones((2, 6)), feed, baseline=np.zeros((3, 6)))
    with pytest.raises(ValueError, match="baseline: contains NaN"):
        ablation.GetMask(row, feed, baseline=np.full(6, np.nan))
    with pytest.raises(TypeError, match="groups: expected integer group labels, got dtype "
                                        "float64"):
        ablation.GetMask(row, feed, groups=np.zeros(6))
    with pytest.raises(ValueError, match=r"groups: expected one label per feature, shape "
                                         r"\(6,\), got shape \(2, 3\)"):
        ablation.GetMask(row, feed, groups=np.zeros((2, 3), int))
    with pytest.raises(TypeError, match=r"FeatureAblation.GetMaskBatch: unexpected arguments "
                                        r"\['size'\]"):
        ablation.GetMaskBatch(row[None], feed, size=3)
    with pytest.raises(ValueError, match=r"x_value: expected one input .* of shape \[6\], got "
                                         r"shape \(5,\)"):
        ablation.GetMask(np.ones(5), feed)
    with pytest.raises(TypeError, match=r"x: FeatureAblation explains one input tensor"):
        FeatureAblation(graph, spy, y, [x, x])
    assert spy.run.call_count == 0
    assert _ops(graph) == ops


def test_feature_attributions_rank_by_magnitude():
    ranked = feature_attributions([0.1, -3.0, 2.0, -0.1], ["a", "b", "c", "d"])
    assert ranked == [("b", -3.0), ("c", 2.0), ("a", 0.1), ("d", -0.1)]
    assert feature_attributions([1.0, 2.0], ["a", "b"], top=1) == [("b", 2.0)]
    with pytest.raises(ValueError, match=r"mask, feature_names: expected a \[F\] mask and F "
                                         r"names, got shape \(2,\) and 3 names"):
        feature_attributions([1.0, 2.0], ["a", "b", "c"])


def test_top_k_hit_rate_definition():
    scores = np.array([[0.1, -5.0, 3.0, 0.0], [4.0, 3.0, 2.0, 1.0]])
    relevant = np.array([[False, True, False, True], [False, False, True, True]])
    np.testing.assert_allclose(top_k_hit_rate(scores, relevant), [0.5, 0.0])
    np.testing.assert_allclose(top_k_hit_rate(scores, relevant, absolute=False), [0.0, 0.0])
    np.testing.assert_allclose(top_k_hit_rate(scores, relevant, k=4), [0.5, 0.5])
    np.testing.assert_allclose(top_k_hit_rate(scores[0], relevant[0], k=1), [1.0])
    valid = np.array([True, False, True, True])  # position 1 may not be ranked
    np.testing.assert_allclose(top_k_hit_rate(scores, relevant, k=1, valid=valid), [0.0, 0.0])
    np.testing.assert_allclose(chance_hit_rate(relevant), [0.5, 0.5])
    np.testing.assert_allclose(chance_hit_rate(relevant, valid), [1 / 3, 2 / 3])
    with pytest.raises(ValueError, match=r"relevant: expected shape \(4,\) or \(2, 4\)"):
        top_k_hit_rate(scores, relevant[:, :3])
    with pytest.raises(ValueError, match="scores: contains NaN"):
        top_k_hit_rate(np.array([np.nan, 1.0]), [True, False])
    with pytest.raises(TypeError, match="k: expected a positive integer, got 1.5"):
        top_k_hit_rate(scores, relevant, k=1.5)


# ---------------------------------------------------------------------------
# The data with known answers, and the trained MLP


def test_tabular_labels_depend_on_the_informative_features_only():
    data = make_tabular(500, n_features=10, seed=3)
    assert data.informative.sum() == 3 and data.features.shape == (500, 10)
    assert 0.4 < data.labels.mean() < 0.6
    a, b, c = np.flatnonzero(data.informative)
    x = data.features
    rules = [2 * x[:, i] + 2 * x[:, j] * x[:, k] > 0 for i, j, k in ((a, b, c), (b, a, c),
                                                                      (c, a, b))]
    assert any(np.array_equal(rule, data.labels == 1) for rule in rules)
    np.testing.assert_array_equal(make_tabular(500, n_features=10, seed=3).features, x)


@pytest.fixture(scope="module")
def tabular():
    data = make_tabular(1400, seed=1)
    train, test = data.subset(slice(0, 1200)), data.subset(slice(1200, 1300))
    model = train_tabular_model(train, test, seed=0)
    model.train_data, model.test = train, test
    yield model
    model.close()


def test_methods_find_the_informative_features(tabular):
    m, test = tabular, tabular.test
    assert m.accuracy >= 0.9
    x = test.features
    predicted = m.target.predict(m.session, m.x, x)
    feed = m.target.feed(predicted)
    mean_row = m.train_data.features.mean(axis=0)
    grad = saliency.GradientSaliency(m.graph, m.session, m.target.y, m.x)
    ig = saliency.IntegratedGradients(m.graph, m.session, m.target.y, m.x)
    masks = {
        "gradient": grad.GetMaskBatch(x, feed),
        "ig": ig.GetMaskBatch(x, feed, x_baseline=mean_row, x_steps=32, rule="trapezoid"),
        "smoothgrad": np.stack([grad.GetSmoothedMask(row, m.target.feed(int(c)), seed=0,
                                                     nsamples=10, statistic="mean")
                                for row, c in zip(x[:40], predicted[:40])]),
        "ablation": FeatureAblation(m.graph, m.session, m.target.y, m.x).GetMaskBatch(
            x, feed, baseline=mean_row),
    }
    chance = chance_hit_rate(test.informative).mean()
    assert chance == pytest.approx(0.25)
    for name, mask in masks.items():
        rate = top_k_hit_rate(mask, test.informative).mean()
        print(f"{name:<12} top-3 hit rate {rate:.2f} (chance {chance:.2f})")
        assert rate >= 0.6, name


# ---------------------------------------------------------------------------
# Image + metadata: an interaction of two inputs


def test_image_metadata_labels_are_an_interaction():
    data = make_image_metadata(400, size=10, n_meta=3, seed=2)
    k = int(np.flatnonzero(data.informative)[0])
    patch = np.array([data.images[i, ..., 0][data.regions[i]].mean() for i in range(len(data))])
    np.testing.assert_allclose(np.abs(patch), 1.0)
    np.testing.assert_array_equal(data.labels, (np.sign(patch) == np.sign(data.metadata[:, k])))
    assert np.all(np.abs(data.metadata[:, k]) >= 0.5)
    # Neither input alone says anything about the class.
    assert abs(np.mean(data.labels[patch > 0]) - 0.5) < 0.1
    assert abs(np.mean(data.labels[data.metadata[:, k] > 0]) - 0.5) < 0.1


def test_image_metadata_joint_ig_completes_where_separate_ig_does_not():
    data = make_image_metadata(1400, seed=1)
    test = data.subset(slice(1200, 1230))
    m = train_image_metadata_model(data.subset(slice(0, 1200)), test, seed=0)
    try:
        assert m.accuracy >= 0.9
        predicted = m.target.predict(m.session, m.x_image, test.images,
                                     {m.x_meta: test.metadata})
        ig = saliency.IntegratedGradients(m.graph, m.session, m.target.y, [m.x_image, m.x_meta])
        zeros = [np.zeros(test.images.shape[1:], np.float32),
                 np.zeros(test.metadata.shape[1:], np.float32)]
        masks, errors = ig.GetMaskBatch([test.images, test.metadata],
                                        m.target.feed(predicted), x_baseline=zeros,
                                        x_steps=300, rule="trapezoid", return_error=True,
                                        batch_size=600)
        assert isinstance(masks, list) and masks[0].shape == test.images.shape
        assert masks[1].shape == test.metadata.shape
        totals = masks[0].reshape(len(test), -1).sum(1) + masks[1].sum(1)
        delta = totals - errors
        # f(x) - f(baseline) computed independently, by the model's logits.
        logits = m.session.run(m.logits, {m.x_image: test.images, m.x_meta: test.metadata})
        base = m.session.run(m.logits, {m.x_image: np.zeros((1, *test.images.shape[1:])),
                                        m.x_meta: np.zeros((1, test.metadata.shape[1]))})
        np.testing.assert_allclose(delta, logits[np.arange(len(test)), predicted]
                                   - base[0, predicted], rtol=1e-4, atol=1e-4)
        assert np.all(np.abs(errors) <= 1e-3 * np.maximum(1.0, np.abs(delta)))
        # Both inputs are attributed where the answer is.
        meta_first = top_k_hit_rate(masks[1], test.informative, k=1).mean()
        inside = np.mean([energy_inside(a, r) for a, r in zip(masks[0], test.regions)])
        print(f"joint IG: metadata column first {meta_first:.2f}, image energy on the patch "
              f"{inside:.2f} (chance {test.regions.mean():.2f}), max |error| "
              f"{np.abs(errors).max():.1e}")
        assert meta_first >= 0.9 and inside >= 2 * test.regions.mean()
        # Two separate IGs (the other input fed) do not add up to f(x) - f(baseline).
        image_only = saliency.IntegratedGradients(m.graph, m.session, m.target.y, m.x_image)
        meta_only = saliency.IntegratedGradients(m.graph, m.session, m.target.y, m.x_meta)
        sep_image = image_only.GetMaskBatch(
            test.images, {m.x_meta: saliency.PerExample(test.metadata),
                          **m.target.feed(predicted)}, x_steps=300, rule="trapezoid")
        sep_meta = meta_only.GetMaskBatch(
            test.metadata, {m.x_image: saliency.PerExample(test.images),
                            **m.target.feed(predicted)}, x_steps=300, rule="trapezoid")
        separate = sep_image.reshape(len(test), -1).sum(1) + sep_meta.sum(1)
        gap = np.abs(separate - delta) / np.abs(delta)
        print(f"separate IGs: sum off f(x) - f(baseline) by {np.median(gap):.0%} (median)")
        assert np.median(gap) > 0.1
    finally:
        m.close()


def test_ablation_equals_occlusion_of_the_metadata_input_of_a_two_input_model():
    """FeatureAblation of x_meta (the image fed per example) is the metadata part of
    Occlusion over x = [x_image, x_meta] with runs of one value: two implementations."""
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.3, (4, 4, 1)).astype(np.float32)
    v = rng.normal(0, 0.8, 3).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [None, 4, 4, 1], name="image")
        meta = v1.placeholder(tf.float32, [None, 3], name="meta")
        y = tf.tanh(tf.reduce_sum(image * w, [1, 2, 3])) * (1 + tf.reduce_sum(meta * v, 1))
    session = v1.Session(graph=graph)
    try:
        images = rng.normal(size=(4, 4, 4, 1)).astype(np.float32)
        metas = rng.normal(size=(4, 3)).astype(np.float32)
        base = rng.normal(size=3).astype(np.float32)
        ablation = FeatureAblation(graph, session, y, meta)
        mine = ablation.GetMaskBatch(metas, {image: saliency.PerExample(images)}, baseline=base)
        occlusion = saliency.Occlusion(graph, session, y, [image, meta])
        _, theirs = occlusion.GetMaskBatch([images, metas], size=[2, 1],
                                           baseline=[np.zeros((4, 4, 1), np.float32), base])
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    finally:
        session.close()
