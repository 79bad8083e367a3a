"""Deletion / insertion curves (RISE) and the model functions the metrics call."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.engine.blur import gaussian_blur
from saliency_tf1.metrics.deletion import deletion, insertion, pixel_ranks
from saliency_tf1.metrics.model import backend_model_function, tf1_model_function

v1 = tf.compat.v1


def mean_model(rows):
    """Score = the mean of each row: removing bright pixels first lowers it fastest."""
    return np.asarray(rows, np.float64).reshape(len(rows), -1).mean(axis=1)


class Counting:
    """A numpy model that records the size of every batch it is given."""

    def __init__(self, fn):
        self.fn, self.sizes = fn, []

    def __call__(self, rows):
        self.sizes.append(len(rows))
        return self.fn(rows)


def test_curves_by_hand():
    # Pixels 4, 3, 2, 1 removed (set to 0) in that order: the mean goes
    # 10/4 -> 6/4 -> 3/4 -> 1/4 -> 0; insertion from 0 climbs the other way.
    image = np.array([[[4.0, 3.0], [2.0, 1.0]]])
    d = deletion(mean_model, image, image, steps=4)
    np.testing.assert_allclose(d.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(d.scores[0], [2.5, 1.5, 0.75, 0.25, 0.0])
    assert d.auc[0] == pytest.approx(0.25 * (2.5 / 2 + 1.5 + 0.75 + 0.25 + 0.0 / 2))
    ins = insertion(mean_model, image, image, steps=4, baseline=0.0)
    np.testing.assert_allclose(ins.scores[0], [0.0, 1.0, 1.75, 2.25, 2.5])
    assert ins.auc[0] == pytest.approx(0.25 * (0 / 2 + 1.0 + 1.75 + 2.25 + 2.5 / 2))
    assert d.targets is None


def test_channel_masks_are_reduced_by_absolute_sum_and_ties_keep_raster_order():
    mask = np.zeros((2, 3, 2))
    mask[1, 2] = [-5, 1]     # |.| sum 6: first
    mask[0, 1] = [2, 2]      # 4: second
    ranks = pixel_ranks(np.abs(mask).sum(-1))
    assert ranks[1, 2] == 0 and ranks[0, 1] == 1
    # The four zero pixels follow in raster order.
    assert [ranks[0, 0], ranks[0, 2], ranks[1, 0], ranks[1, 1]] == [2, 3, 4, 5]
    image = np.arange(12, dtype=np.float64).reshape(1, 2, 3, 2)
    d = deletion(mean_model, image, mask[None], steps=6)
    # After step 1 pixel (1, 2) (values 10, 11) is gone.
    assert d.scores[0, 1] == pytest.approx((66 - 21) / 12)


def test_constant_model_gives_flat_curves():
    def constant(rows):
        return np.tile([0.25, 0.75], (len(rows), 1))

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(3, 8, 8, 3))
    masks = rng.uniform(size=(3, 8, 8))
    for curves in (deletion(constant, images, masks, steps=10),
                   insertion(constant, images, masks, steps=10)):
        np.testing.assert_array_equal(curves.scores, 0.75)   # target = argmax = class 1
        np.testing.assert_allclose(curves.auc, 0.75)
        np.testing.assert_array_equal(curves.targets, [1, 1, 1])


def test_batch_size_changes_nothing_and_bounds_every_call():
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(5, 6, 7, 3))
    masks = rng.normal(size=(5, 6, 7, 3))
    results = {}
    for bs in (1, 7, 64):
        model = Counting(mean_model)
        results[bs] = deletion(model, images, masks, steps=9, batch_size=bs, baseline="blur")
        assert max(model.sizes) <= bs
        assert sum(model.sizes) == 5 * (9 + 1)   # every point once, the original included
    for bs in (7, 64):
        np.testing.assert_array_equal(results[bs].scores, results[1].scores)


def test_batch_sizes_1_and_64_equal_on_the_demo_model(demo_model):
    m = demo_model
    model = tf1_model_function(m.graph, m.session, m.logits, m.x)
    images, regions = m.data.images[:3], m.data.regions[:3]
    for fn in (deletion, insertion):
        one = fn(model, images, regions, steps=16, batch_size=1)
        many = fn(model, images, regions, steps=16, batch_size=64)
        np.testing.assert_allclose(one.scores, many.scores, rtol=1e-6, atol=1e-9)


def test_perfect_mask_beats_random_and_inverted_on_the_demo_model(demo_model):
    m = demo_model
    model = tf1_model_function(m.graph, m.session, m.logits, m.x)
    images, regions, labels = m.data.images[:16], m.data.regions[:16], m.data.labels[:16]
    rng = np.random.default_rng(0)
    masks = {
        "perfect": regions.astype(float),
        "random": rng.uniform(size=regions.shape),
        "inverted": (~regions).astype(float),
    }
    d = {k: deletion(model, images, v, targets=labels, steps=32).mean_auc
         for k, v in masks.items()}
    i = {k: insertion(model, images, v, targets=labels, steps=32).mean_auc
         for k, v in masks.items()}
    assert d["perfect"] < d["random"] < d["inverted"]      # deletion: lower is better
    assert i["perfect"] > i["random"] > i["inverted"]      # insertion: higher is better


def test_baselines(rng):
    images = rng.uniform(size=(2, 6, 6, 3)).astype(np.float32)
    everything = np.ones((2, 6, 6))

    def recorder(store):
        def model(rows):
            store.extend(np.array(rows))
            return mean_model(rows)
        return model

    for baseline, expected in [
        (0.5, np.full_like(images, 0.5)),
        (np.array([0.1, 0.2, 0.3]), np.broadcast_to([0.1, 0.2, 0.3], images.shape)),
        ("mean", np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)),
        ("blur", np.stack([gaussian_blur(im, 2.0, mode="reflect", radius=6) for im in images])),
    ]:
        seen = []
        deletion(recorder(seen), images, everything, steps=1, baseline=baseline, blur_sigma=2.0)
        # Rows: the two originals, then each image fully deleted to its baseline.
        np.testing.assert_allclose(np.array(seen[2:]), expected, rtol=1e-6)
        assert np.array(seen[2:]).dtype == np.float32


def test_gaussian_blur_matches_scipy(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = rng.uniform(size=(20, 17, 3))
    ours = gaussian_blur(image, 2.0, mode="reflect", radius=6)  # the metric's blur
    theirs = ndimage.gaussian_filter(image, sigma=(2.0, 2.0, 0), mode="reflect", truncate=3.0)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_inputs_are_not_modified(rng):
    images = rng.uniform(size=(2, 5, 5, 3))
    masks = rng.uniform(size=(2, 5, 5))
    copies = images.copy(), masks.copy()
    insertion(mean_model, images, masks, steps=5)
    np.testing.assert_array_equal(images, copies[0])
    np.testing.assert_array_equal(masks, copies[1])


@pytest.mark.parametrize("kwargs, message", [
    ({"masks": np.zeros((2, 4, 5))}, "masks"),
    ({"masks": np.zeros((3, 5, 5))}, "masks"),
    ({"baseline": "noise"}, "baseline"),
    ({"baseline": np.zeros(4)}, "baseline"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"targets": [0, 5]}, "targets"),
    ({"targets": [-1, 0]}, "targets"),
    ({"model": lambda rows: np.zeros((len(rows) + 1, 2))}, "model"),
])
def test_errors_name_the_argument(kwargs, message):
    args = {"model": lambda rows: np.full((len(rows), 2), 0.5),
            "images": np.zeros((2, 5, 5, 3)), "masks": np.zeros((2, 5, 5))}
    args.update(kwargs)
    model, images, masks = args.pop("model"), args.pop("images"), args.pop("masks")
    with pytest.raises(ValueError, match=message):
        deletion(model, images, masks, **args)


# -- model functions -----------------------------------------------------------------


def test_tf1_model_function_gives_softmax_and_adds_no_ops_per_call(relu_cnn, rng):
    m = relu_cnn
    model = tf1_model_function(m.graph, m.session, m.logits, m.x)
    ops = m.op_count()
    tf1_model_function(m.graph, m.session, m.logits, m.x)   # the softmax op is shared
    rows = rng.uniform(size=(4, 16, 16, 3))
    probs = model(rows)
    assert m.op_count() == ops
    logits = m.session.run(m.logits, {m.x: rows})
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    raw = tf1_model_function(m.graph, m.session, m.logits, m.x, softmax=False)
    np.testing.assert_allclose(raw(rows), logits, rtol=1e-6)
    y = tf1_model_function(m.graph, m.session, m.y, m.x)
    np.testing.assert_allclose(y(rows), logits[:, 0], rtol=1e-6)


def test_tf1_model_function_feeds_and_fixed_batch():
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [2, 3], name="x")       # fixed outer dimension
        scale = v1.placeholder(tf.float32, [], name="scale")
        logits = tf.stack([tf.reduce_sum(x, 1) * scale, -tf.reduce_sum(x, 1)], axis=1)
    with v1.Session(graph=graph) as session:
        with pytest.raises(ValueError, match="scale"):
            tf1_model_function(graph, session, logits, x)
        model = tf1_model_function(graph, session, logits, x, feed_dict={"scale:0": 2.0},
                                   softmax=False)
        rows = np.arange(15, dtype=np.float32).reshape(5, 3)   # 5 rows on a batch of 2
        np.testing.assert_allclose(model(rows)[:, 0], rows.sum(1) * 2.0)


def test_backend_model_function(relu_cnn, rng):
    from saliency_tf1.methods.gradient import GradientSaliency

    m = relu_cnn
    method = GradientSaliency(m.graph, m.session, m.y, m.x)
    model = backend_model_function(method.backend)
    rows = rng.uniform(size=(3, 16, 16, 3))
    np.testing.assert_allclose(model(rows), m.session.run(m.y, {m.x: rows}), rtol=1e-6)
    curves = deletion(model, rows, rows, steps=4)
    assert curves.scores.shape == (3, 5) and curves.targets is None


def test_progress_bar_shows_on_request_and_stays_off_otherwise(capsys, rng):
    images, masks = rng.uniform(size=(2, 6, 6)), rng.uniform(size=(2, 6, 6))
    deletion(mean_model, images, masks, steps=12, batch_size=4, progress=True)
    shown = capsys.readouterr().err
    assert "deletion" in shown and "/24" in shown      # 2 images x 12 perturbed steps
    insertion(mean_model, images, masks, steps=12, batch_size=4, progress=False)
    assert capsys.readouterr().err == ""
