"""RISE: the paper's estimator on a linear model, its masks against skimage, seeds, memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import PerExample
from saliency_tf1.engine.backend import OUTPUT_LAYER_VALUES
from saliency_tf1.methods.occlusion import Occlusion
from saliency_tf1.methods.rise import RISE, RiseMasks, rise_masks

v1 = tf.compat.v1


def make_linear(shape, w, dtype=tf.float64):
    """y = sum(w * x) over one input of ``shape``; returns (graph, session, x, y)."""
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(dtype, [None, *shape], name="x")
        y = tf.reduce_sum(x * tf.constant(w, dtype), axis=list(range(1, len(shape) + 1)))
    return graph, v1.Session(graph=graph), x, y


def smooth_weights(shape, rng):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    base = np.sin(yy / 3.0) + np.cos(xx / 4.0)
    return base[..., None] * rng.uniform(0.5, 1.5, shape[2:])


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# -- known answers -------------------------------------------------------------------


def test_linear_model_map_correlates_with_weight_times_input(rng):
    shape = (16, 16, 3)
    w = smooth_weights(shape, rng)
    graph, session, x, y = make_linear(shape, w)
    image = rng.uniform(0.5, 1.0, shape)
    method = RISE(graph, session, y, x)
    mask = method.GetMask(image, n_masks=4000, cell_size=2, seed=0)
    assert mask.shape == shape and mask.dtype == np.float64
    np.testing.assert_array_equal(mask[..., 0], mask[..., 2])  # one map for all channels
    assert corr(mask[..., 0], (w * image).sum(-1)) >= 0.95


def test_map_is_the_papers_estimator_with_its_masks(rng):
    """S = sum_i y(x * M_i) M_i / (N p), written out with the masks rise_masks gives."""
    shape = (12, 10, 2)
    w = rng.normal(size=shape)
    graph, session, x, y = make_linear(shape, w)
    image = rng.normal(size=shape)
    method = RISE(graph, session, y, x)
    for p, cell in ((0.5, 4), (0.3, 3)):
        got = method.GetMask(image, n_masks=150, p=p, cell_size=cell, seed=5)
        masks = rise_masks((12, 10), 150, p=p, cell_size=cell, seed=5).astype(np.float64)
        scores = np.array([np.sum(w * image * m[..., None]) for m in masks])
        expected = np.tensordot(scores, masks, axes=1) / (150 * p)
        np.testing.assert_allclose(got[..., 1], expected, rtol=1e-10, atol=1e-10)


def test_baseline_fills_masked_out_elements(rng):
    shape = (8, 8, 3)
    w = rng.normal(size=shape)
    graph, session, x, y = make_linear(shape, w)
    image, fill = rng.normal(size=shape), rng.normal(size=shape)
    method = RISE(graph, session, y, x)
    got = method.GetMask(image, n_masks=40, cell_size=3, seed=1, baseline=fill)
    masks = rise_masks((8, 8), 40, cell_size=3, seed=1).astype(np.float64)[..., None]
    scores = np.array([np.sum(w * (image * m + fill * (1 - m))) for m in masks])
    expected = np.tensordot(scores, masks[..., 0], axes=1) / (40 * 0.5)
    np.testing.assert_allclose(got[..., 0], expected, rtol=1e-10, atol=1e-10)
    # A number fills every masked-out element with it.
    np.testing.assert_allclose(method.GetMask(image, n_masks=40, cell_size=3, seed=1,
                                              baseline=0.5),
                               method.GetMask(image, n_masks=40, cell_size=3, seed=1,
                                              baseline=np.full(shape, 0.5)))


@pytest.mark.parametrize(("shape", "cell", "p"), [((16, 16), 4, 0.5), ((13, 7), 3, 0.2),
                                                  ((5, 9), 8, 0.7), ((11,), 4, 0.5)])
def test_masks_are_skimage_upsampled_grids_cropped_at_the_shift(shape, cell, p, rng):
    """The paper's code: resize(grid, (cells * cell_size), order=1, mode='reflect',
    anti_aliasing=False), then a crop of the input's size at a random shift."""
    from skimage.transform import resize

    maker = RiseMasks(shape, p, cell)
    grids, shifts = maker.draw(rng, 20)
    assert grids.shape == (20, *(-(-n // cell) + 1 for n in shape))
    assert np.all((shifts >= 0) & (shifts < cell))
    masks = maker.masks(grids, shifts)
    assert masks.shape == (20, *shape)
    for grid, shift, mask in zip(grids, shifts, masks):
        up = resize(grid.astype(np.float64), tuple(g * cell for g in grid.shape), order=1,
                    mode="reflect", anti_aliasing=False)
        crop = up[tuple(slice(s, s + n) for s, n in zip(shift, shape))]
        np.testing.assert_allclose(mask, crop, atol=1e-6)
    # Cells are kept with probability p: the masks' mean is about p.
    many = rise_masks(shape, 3000, p=p, cell_size=cell, seed=0)
    assert abs(many.mean() - p) < 0.02


def test_series_masks_vary_along_time_only(rng):
    """mask_dims=1 on a series [T, C]: one map along time, the same for every channel."""
    shape = (40, 2)
    t = np.arange(40)
    w = np.stack([np.sin(t / 5.0), 0.5 * np.sin(t / 5.0)], -1)
    graph, session, x, y = make_linear(shape, w)
    series = rng.uniform(0.5, 1.0, shape)
    method = RISE(graph, session, y, x)
    mask = method.GetMask(series, n_masks=3000, cell_size=2, mask_dims=1, seed=0)
    np.testing.assert_array_equal(mask[:, 0], mask[:, 1])
    assert corr(mask[:, 0], (w * series).sum(-1)) >= 0.95
    masks = rise_masks((40,), 20, cell_size=2, seed=3).astype(np.float64)
    scores = np.array([np.sum(w * series * m[:, None]) for m in masks])
    np.testing.assert_allclose(
        method.GetMask(series, n_masks=20, cell_size=2, mask_dims=1, seed=3)[:, 0],
        scores @ masks / 10, rtol=1e-10)


def test_demo_cnn_map_agrees_with_occlusion(demo_model):
    images = demo_model.data.images[:8]
    predicted = demo_model.session.run(demo_model.target.predictions, {demo_model.x: images})
    rise = RISE(demo_model.graph, demo_model.session, demo_model.target.y, demo_model.x)
    occ = Occlusion(demo_model.graph, demo_model.session, demo_model.target.y, demo_model.x)
    rise_maps, occ_maps = [], []
    for image, label in zip(images, predicted):
        feed = demo_model.target.feed(int(label))
        rise_maps.append(rise.GetMask(image, feed, n_masks=2000, seed=0)[..., 0])
        occ_maps.append(occ.GetMask(image, feed, size=8, normalize=True)[..., 0])
    same = [corr(r, o) for r, o in zip(rise_maps, occ_maps)]
    other = [corr(r, o) for r, o in zip(rise_maps, np.roll(occ_maps, 1, axis=0))]
    assert np.median(same) >= 0.6, same
    assert np.mean(same) > np.mean(other) + 0.3, (same, other)


# -- batching, seeds, runs ------------------------------------------------------------


def test_runs_are_stacked_batches_and_results_do_not_depend_on_batch_size(relu_cnn, counting,
                                                                          rng):
    spy = counting(relu_cnn.session)
    method = RISE(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    ops = relu_cnn.op_count()
    reference = method.GetMask(image, n_masks=150, seed=2, batch_size=150)
    for batch_size in (1, 7, 64, 1000):
        spy.run.reset_mock()
        got = method.GetMask(image, n_masks=150, seed=2, batch_size=batch_size)
        assert spy.run.call_count == -(-150 // batch_size)
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)
    rows = [len(c.kwargs["feed_dict"][relu_cnn.x]) for c in spy.run.call_args_list]
    assert max(rows) <= 150
    assert relu_cnn.op_count() == ops


def test_seeds(relu_cnn, rng):
    method = RISE(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    a = method.GetMask(image, n_masks=64, seed=3)
    np.testing.assert_array_equal(a, method.GetMask(image, n_masks=64, seed=3))
    assert not np.allclose(a, method.GetMask(image, n_masks=64, seed=4))
    gen_a, gen_b = np.random.default_rng(9), np.random.default_rng(9)
    first = method.GetMask(image, n_masks=64, seed=gen_a)
    np.testing.assert_array_equal(first, method.GetMask(image, n_masks=64, seed=gen_b))
    assert not np.allclose(first, method.GetMask(image, n_masks=64, seed=gen_a))  # advanced
    # The first masks of a longer run are the same masks.
    np.testing.assert_allclose(rise_masks((16, 16), 64, seed=3),
                               rise_masks((16, 16), 200, seed=3)[:64])


def test_batch_equals_single_calls_with_per_example_feeds(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 10, 10, 3])
        k = v1.placeholder(tf.int32, [None])
        w = tf.constant(rng.normal(size=(3, 10, 10, 3)), tf.float32)
        y = tf.reduce_sum(x * tf.gather(w, k), [1, 2, 3])
    session = v1.Session(graph=graph)
    method = RISE(graph, session, y, x)
    images = rng.normal(size=(3, 10, 10, 3)).astype(np.float32)
    fills = rng.normal(size=(3, 10, 10, 3)).astype(np.float32)
    batch = method.GetMaskBatch(images, {k: PerExample([2, 0, 1])}, n_masks=50, seed=1,
                                baseline=fills, batch_size=16)
    for i, c in enumerate([2, 0, 1]):
        one = method.GetMask(images[i], {k: [c]}, n_masks=50, seed=1, baseline=fills[i])
        np.testing.assert_allclose(batch[i], one, rtol=1e-5, atol=1e-5)


def test_smoothed_mask_is_seeded_and_independent_of_batch_size(relu_cnn, rng):
    method = RISE(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = rng.uniform(size=(16, 16, 3)).astype(np.float32)
    ref = method.GetSmoothedMask(image, nsamples=4, seed=5, n_masks=40, batch_size=40)
    for batch_size in (7, 1000):
        np.testing.assert_allclose(
            method.GetSmoothedMask(image, nsamples=4, seed=5, n_masks=40, batch_size=batch_size),
            ref, rtol=1e-5, atol=1e-7)
    assert not np.allclose(ref, method.GetSmoothedMask(image, nsamples=4, seed=6, n_masks=40))
    # Without noise each copy still draws its own masks: the mean of 4 maps of 40 masks.
    plain = method.GetSmoothedMask(image, stdev_spread=0.0, nsamples=4, seed=5, n_masks=40,
                                   magnitude=False)
    single = method.GetMask(image, n_masks=40, seed=5)
    assert not np.allclose(plain, single)
    # ... which estimate the same map: closer to a 4000-mask map than one 40-mask map is.
    many = method.GetMask(image, n_masks=4000, seed=8)
    assert np.abs(plain - many).mean() < np.abs(single - many).mean()
    with pytest.raises(TypeError, match="_streams"):
        method.GetSmoothedMask(image, seed=1, _streams=np.random.default_rng())


def test_plan_rows_per_input_is_n_masks(relu_cnn):
    method = RISE(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = np.zeros((16, 16, 3), np.float32)
    assert method.plan(image, n_masks=321).rows_per_input == 321
    assert method.plan(image, "GetSmoothedMask", n_masks=9, nsamples=3, seed=0).rows_per_input == 9


# -- black box: no gradient, any backend ----------------------------------------------


def test_non_differentiable_model_and_no_ops_added(rng):
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 8, 8, 1])
        y = tf.cast(tf.reduce_sum(tf.cast(x > 0.5, tf.int32), [1, 2, 3]), tf.float32)
    session = v1.Session(graph=graph)
    method = RISE(graph, session, y, x)  # builds its graph path's ops, no gradient
    assert method.in_graph_unavailable == {}
    ops = len(graph.get_operations())
    image = rng.uniform(size=(8, 8, 1)).astype(np.float32)
    mask = method.GetMask(image, n_masks=200, cell_size=2, seed=0)
    assert np.all(np.isfinite(mask)) and mask.std() > 0
    method.in_graph = True
    np.testing.assert_allclose(method.GetMask(image, n_masks=200, cell_size=2, seed=0), mask,
                               rtol=1e-6, atol=1e-7)
    assert len(graph.get_operations()) == ops


def test_core_api_backend_gives_the_same_map(rng):
    from saliency_tf1.compat.call_model import CallModelBackend

    shape = (9, 9, 3)
    w = rng.normal(size=shape)
    graph, session, x, y = make_linear(shape, w)
    image = rng.normal(size=shape)

    def call_model(batch, call_model_args=None, expected_keys=None):
        assert expected_keys == [OUTPUT_LAYER_VALUES]
        return {OUTPUT_LAYER_VALUES: np.sum(batch * w, axis=(1, 2, 3))}

    core = RISE.from_backend(CallModelBackend.for_input(image, call_model))
    tf1 = RISE(graph, session, y, x)
    np.testing.assert_allclose(core.GetMask(image, n_masks=80, seed=4, batch_size=16),
                               tf1.GetMask(image, n_masks=80, seed=4), rtol=1e-9)


# -- memory -------------------------------------------------------------------------


def test_peak_memory_does_not_grow_with_n_masks(rng):
    shape = (64, 64, 3)
    graph, session, x, y = make_linear(shape, rng.normal(size=shape), dtype=tf.float32)
    image = rng.uniform(size=shape).astype(np.float32)
    method = RISE(graph, session, y, x)
    peaks = {}
    for n_masks in (256, 4096):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            mask = method.GetMask(image, n_masks=n_masks, seed=0, batch_size=32, progress=False)
            peaks[n_masks] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert np.all(np.isfinite(mask))
    all_masks = 4096 * 64 * 64 * 4  # every mask held at once: 64 MB (copies: 3x more)
    assert peaks[4096] < 8 * 2**20 < all_masks / 5, peaks
    assert peaks[4096] < 1.5 * peaks[256] + 2**20, peaks


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_masks": 0}, ValueError, "n_masks: expected a positive integer"),
        ({"n_masks": 2.5}, TypeError, "n_masks"),
        ({"p": 0.0}, ValueError, r"p: expected a probability in \(0, 1\], got 0.0"),
        ({"p": 1.5}, ValueError, "p: expected a probability"),
        ({"p": float("nan")}, ValueError, "p: expected a finite number"),
        ({"p": "half"}, TypeError, "p: expected a real number"),
        ({"cell_size": 0}, ValueError, "cell_size"),
        ({"mask_dims": 3}, ValueError, "mask_dims: expected 1 or 2"),
        ({"mask_dims": 0}, ValueError, "mask_dims"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": "a"}, TypeError, "seed"),
        ({"baseline": np.zeros((16, 16))}, ValueError, r"baseline: expected .* got ndarray"),
        ({"baseline": float("inf")}, ValueError, "baseline: expected a finite number"),
        ({"baseline": None}, TypeError, "baseline"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"colour": 1}, TypeError, "colour"),
    ],
)
def test_bad_arguments_raise_before_any_run(relu_cnn, counting, kwargs, error, match):
    spy = counting(relu_cnn.session)
    method = RISE(relu_cnn.graph, spy, relu_cnn.y, relu_cnn.x)
    image = np.zeros((16, 16, 3), np.float32)
    ops = relu_cnn.op_count()
    call = method.GetMaskBatch if "colour" in kwargs else method.GetMask
    with pytest.raises(error, match=match):
        call(image[None] if call == method.GetMaskBatch else image, **kwargs)
    assert spy.run.call_count == 0
    assert relu_cnn.op_count() == ops


def test_constructor_checks(relu_cnn):
    with relu_cnn.graph.as_default():
        int_y = tf.cast(relu_cnn.y, tf.int32)
        free = v1.placeholder(tf.float32, [None])
    other = tf.Graph()
    with other.as_default():
        z = v1.placeholder(tf.float32, [None, 3])
    ops = relu_cnn.op_count()
    with pytest.raises(TypeError, match="y: expected a floating-point tensor"):
        RISE(relu_cnn.graph, relu_cnn.session, int_y, relu_cnn.x)
    with pytest.raises(ValueError, match="does not depend on x"):
        RISE(relu_cnn.graph, relu_cnn.session, free, relu_cnn.x)
    with pytest.raises((TypeError, ValueError), match="x"):
        RISE(relu_cnn.graph, relu_cnn.session, relu_cnn.y, z)
    assert relu_cnn.op_count() == ops


def test_progress_bar_on_and_off(relu_cnn, capsys):
    method = RISE(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x)
    image = np.zeros((16, 16, 3), np.float32)
    method.GetMask(image, n_masks=64, seed=0, progress=True)
    assert "RISE" in capsys.readouterr().err
    method.GetMask(image, n_masks=64, seed=0, progress=False)
    method.GetMask(image, n_masks=64, seed=0)
    assert capsys.readouterr().err == ""


def test_tabular_features_with_cell_size_one_are_independent(rng):
    """cell_size=1 on a vector: each feature kept with probability p on its own, so on a
    linear model the map tends to (1 - p) w x + p f(x) (the paper's estimator)."""
    w = rng.normal(size=12)
    graph, session, x, y = make_linear((12,), w)
    row = rng.normal(size=12)
    masks = rise_masks((12,), 500, cell_size=1, seed=0)
    assert set(np.unique(masks)) == {0.0, 1.0}
    assert abs(np.corrcoef(masks.T)[np.triu_indices(12, 1)]).max() < 0.2
    mask = RISE(graph, session, y, x).GetMask(row, n_masks=20000, cell_size=1, p=0.5, seed=1)
    expected = 0.5 * w * row + 0.5 * np.sum(w * row)
    assert np.abs(mask - expected).max() < 0.1 * np.abs(w * row).max() + 0.05
