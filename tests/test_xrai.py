"""XRAI: region merge against a direct reference, segmentation, shared IG batches, errors, PAIR."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1 import PerExample
from saliency_tf1.methods.xrai import (
    XRAI,
    SegmentIndex,
    XRAIOutput,
    XRAIParameters,
    felzenszwalb_labels,
    felzenszwalb_segments,
    finish_regions,
    labels_to_masks,
    merge_fast,
    merge_full,
)

v1 = tf.compat.v1


# -- a direct reference of the XRAI merge (Kapishnikov et al. 2019, as PAIR 0.2.1 runs it) ----


def reference_xrai(attr, segments, algorithm="full", area_threshold=1.0, min_pixel_diff=50):
    """Returns (gain map, rank image) by the definition, with whole-image masks and loops."""
    out = np.full(attr.shape, -np.inf)
    covered = np.zeros(attr.shape, bool)
    added = []  # (new pixels, gain)
    if algorithm == "full":
        remaining = list(range(len(segments)))
        while covered.mean() <= area_threshold:
            remaining = [k for k in remaining
                         if (segments[k] & ~covered).sum() >= min_pixel_diff]
            if not remaining:
                break
            gains = [attr[segments[k] & ~covered].mean() for k in remaining]
            j = int(np.argmax(gains))  # the first of equal gains
            k = remaining.pop(j)
            new = segments[k] & ~covered
            out[new] = gains[j]
            added.append((new, gains[j]))
            covered |= segments[k]
    else:
        own = [attr[s].mean() if s.any() else -np.inf for s in segments]
        for k in sorted(range(len(segments)), key=lambda k: -own[k]):
            new = segments[k] & ~covered
            if new.sum() < min_pixel_diff:
                continue
            gain = attr[new].mean()
            out[new] = gain
            added.append((new, gain))
            covered |= segments[k]
    rest = out == -np.inf
    if rest.any():
        out[rest] = attr[rest].mean()
    ranks = np.zeros(attr.shape, int)
    regions = [m for m, _ in sorted(added, key=lambda item: -item[1])]
    if rest.any():
        regions.append(rest)
    for r, m in enumerate(regions, start=1):
        ranks[m] = r
    return out, ranks


def random_segments(rng, shape=(24, 30), n=40):
    """Rectangles and blobs of many sizes, with a duplicate, a nested one and an empty one."""
    segs = []
    for _ in range(n):
        h, w = rng.integers(2, shape[0]), rng.integers(2, shape[1])
        r, c = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
        m = np.zeros(shape, bool)
        m[r:r + h, c:c + w] = True
        if rng.random() < 0.3:
            m &= rng.random(shape) < 0.7
        segs.append(m)
    segs.append(segs[3].copy())
    segs.append(segs[5] & segs[6])
    segs.append(np.zeros(shape, bool))
    return segs


def make_linear(shape, seed=0):
    """y = sum(w * x): IG with any baseline b is exactly w * (x - b)."""
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, *shape])
        y = tf.reduce_sum(x * tf.constant(w), axis=list(range(1, len(shape) + 1)))
    return graph, v1.Session(graph=graph), x, y, w


@pytest.fixture
def linear_xrai():
    graph, session, x, y, w = make_linear((24, 30, 3))
    yield XRAI(graph, session, y, x), w
    session.close()


# -- the merge ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["full", "fast"])
@pytest.mark.parametrize("ties", [False, True])
def test_merge_equals_reference(linear_xrai, rng, algorithm, ties):
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    for _ in range(3):
        segs = random_segments(rng)
        base = rng.normal(size=image.shape).astype(np.float32)
        if ties:  # many equal gains: the first segment in the list must win
            base = np.round(base).astype(np.float32)
        for threshold, min_diff in ((1.0, 50), (0.4, 5), (1.0, 1)):
            params = XRAIParameters(algorithm=algorithm, area_threshold=threshold,
                                    return_xrai_segments=True)
            params.experimental_params["min_pixel_diff"] = min_diff
            out = method.GetMaskWithDetails(image, segments=segs, base_attribution=base,
                                            extra_parameters=params)
            want, ranks = reference_xrai(base.max(-1), segs, algorithm,
                                         threshold if algorithm == "full" else 1.0, min_diff)
            np.testing.assert_array_equal(out.attribution_mask, want)
            np.testing.assert_array_equal(out.segments, ranks)


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_output_is_constant_per_region_covers_image_and_ranks_follow_gain(linear_xrai, rng,
                                                                          algorithm):
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    segs = random_segments(rng)
    base = rng.normal(size=image.shape).astype(np.float32)
    params = XRAIParameters(algorithm=algorithm, area_threshold=0.5, return_xrai_segments=True,
                            flatten_xrai_segments=False)
    out = method.GetMaskWithDetails(image, segments=segs, base_attribution=base,
                                    extra_parameters=params)
    regions = out.segments
    assert isinstance(regions, list) and all(r.shape == (24, 30) for r in regions)
    # The regions partition the image.
    np.testing.assert_array_equal(np.sum(regions, axis=0), np.ones((24, 30)))
    assert np.all(np.isfinite(out.attribution_mask))
    values = []
    for region in regions:
        inside = out.attribution_mask[region]
        assert np.all(inside == inside[0])  # constant within the region
        values.append(inside[0])
    attr = base.max(-1)
    # A region's value is the mean attribution of its pixels (its gain) ...
    np.testing.assert_allclose(values, [attr[r].mean() for r in regions], rtol=1e-5)
    # ... and regions come in the order of their gain; the last one is the rest no segment
    # was added for (here: area_threshold stops the full merge half way).
    merged = values[:-1]
    assert all(a >= b for a, b in zip(merged, merged[1:]))
    if algorithm == "full":
        assert 0.5 < 1 - regions[-1].mean() < 1
    flat = method.GetMaskWithDetails(
        image, segments=segs, base_attribution=base,
        extra_parameters=XRAIParameters(algorithm=algorithm, area_threshold=0.5,
                                        return_xrai_segments=True)).segments
    for rank, region in enumerate(regions, start=1):
        assert np.all(flat[region] == rank)


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_gains_equal_in_float32_are_ties_broken_by_segment_order(algorithm):
    """(1 + 2**-24) / 2 and (1 + 0) / 2 are both 0.5 in float32 (PAIR's arithmetic), though
    not in exact arithmetic: the earlier segment must win, as in the direct computation."""
    attr = np.array([[1.0, 2.0**-24, 1.0, 0.0]], np.float32)
    segs = [np.array([[False, False, True, True]]), np.array([[True, True, False, False]])]
    merge = merge_full if algorithm == "full" else merge_fast
    gain_map, trace = merge(attr.ravel(), SegmentIndex.from_dense(np.stack(segs)),
                            min_pixel_diff=1)
    _, regions = finish_regions(attr.ravel(), gain_map, trace)
    assert [list(r) for r in regions] == [[2, 3], [0, 1]]
    _, ranks = reference_xrai(attr, segs, algorithm, min_pixel_diff=1)
    np.testing.assert_array_equal(ranks, [[2, 2, 1, 1]])


def test_segment_index_round_trip_and_sums(rng):
    segs = np.stack(random_segments(rng))
    index = SegmentIndex.from_dense(segs)
    np.testing.assert_array_equal(index.to_dense(segs.shape[1:]), segs)
    values = rng.normal(size=segs[0].size)
    np.testing.assert_allclose(index.sums(values), segs.reshape(len(segs), -1) @ values)
    start, owners = index.by_pixel()
    for p in (0, 17, 300, segs[0].size - 1):
        assert sorted(owners[start[p]:start[p + 1]]) == list(np.flatnonzero(segs[:, :, :]
                                                              .reshape(len(segs), -1)[:, p]))


# -- segmentation ------------------------------------------------------------------------


def test_dilated_masks_equal_skimage_dilation_per_mask(rng):
    morphology = pytest.importorskip("skimage.morphology")
    labels = np.stack([rng.integers(0, 6, (20, 23)), np.repeat(np.arange(23)[None] // 5, 20, 0)])
    labels[0, :, :4] = 9  # labels 6..8 of the first image have no pixel: no mask
    masks = labels_to_masks(labels, dilation_radius=3)
    expected = [morphology.dilation(seg == k, footprint=morphology.disk(3))
                for seg in labels for k in range(seg.min(), seg.max() + 1) if (seg == k).any()]
    np.testing.assert_array_equal(masks, np.stack(expected))
    undilated = labels_to_masks(labels, dilation_radius=0)
    np.testing.assert_array_equal(undilated.sum(0), np.full((20, 23), 2))


def test_segmentation_labels_cover_image_at_six_scales(rng):
    pytest.importorskip("skimage")
    image = rng.uniform(0, 1, (40, 50, 3)).astype(np.float32)
    labels = felzenszwalb_labels(image)
    assert labels.shape == (6, 40, 50)
    segs = felzenszwalb_segments(image)
    assert segs.dtype == bool and segs.shape[1:] == (40, 50)
    assert np.all(segs.any(axis=0))
    # One mask per label present in each label image.
    assert len(segs) == sum(len(np.unique(lab)) for lab in labels)


def test_segmentation_runs_once_per_image(linear_xrai, rng, monkeypatch):
    pytest.importorskip("skimage")
    import saliency_tf1.methods.xrai as module

    calls = []
    real = module.felzenszwalb_labels

    def counting(image, **kwargs):
        calls.append(image.shape)
        return real(image, **kwargs)

    monkeypatch.setattr(module, "felzenszwalb_labels", counting)
    method, _ = linear_xrai
    image = rng.uniform(0, 1, (24, 30, 3)).astype(np.float32)
    base = rng.normal(size=image.shape)
    full = method.GetMask(image, base_attribution=base)
    fast = method.GetMask(image, base_attribution=base,
                          extra_parameters=XRAIParameters(algorithm="fast"))
    again = method.GetMask(image.copy(), base_attribution=base)
    assert len(calls) == 1
    np.testing.assert_array_equal(full, again)
    assert fast.shape == full.shape
    method.GetMask(image + 0.5, base_attribution=base)  # another image: segmented anew
    assert len(calls) == 2


def test_missing_scikit_image_is_a_clear_error(linear_xrai, rng, monkeypatch):
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    for name in [m for m in sys.modules if m == "skimage" or m.startswith("skimage.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"saliency_tf1\[xrai\]"):
        method.GetMask(image, base_attribution=image)
    # With segments given, scikit-image is not needed.
    segs = random_segments(rng)
    assert method.GetMask(image, segments=segs, base_attribution=image).shape == (24, 30)


# -- Integrated Gradients in shared batches --------------------------------------------------


def test_ig_of_both_baselines_in_shared_batches(rng, counting):
    graph, session, x, y, w = make_linear((24, 30, 3))
    spy = counting(session)
    method = XRAI(graph, spy, y, x)
    image = rng.uniform(0, 1, (24, 30, 3)).astype(np.float32)
    segs = random_segments(rng)
    params = XRAIParameters(steps=10, return_ig_attributions=True, return_xrai_segments=True)
    out = method.GetMaskWithDetails(image, segments=segs, batch_size=8, extra_parameters=params)
    assert spy.run.call_count == 3  # 2 baselines x 10 steps = 20 rows in batches of 8
    black, white = image.min(), image.max()
    np.testing.assert_allclose(out.baselines[0], np.full_like(image, black))
    np.testing.assert_allclose(out.baselines[1], np.full_like(image, white))
    # IG of a linear model is exact: w * (x - b).
    for ig, b in zip(out.ig_attribution, (black, white)):
        np.testing.assert_allclose(ig, w * (image - b), rtol=1e-4, atol=1e-5)
    attr = (w * (image - (black + white) / 2)).max(-1)
    want, ranks = reference_xrai(attr, segs)
    np.testing.assert_allclose(out.attribution_mask, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(out.segments, ranks)


def test_get_mask_batch_equals_loop(rng, counting):
    weights = rng.normal(size=(2, 24, 30, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, 24, 30, 3])
        k = v1.placeholder(tf.int32, [None])
        y = tf.reduce_sum(x * tf.gather(tf.constant(weights), k), axis=[1, 2, 3])
    spy = counting(v1.Session(graph=graph))
    method = XRAI(graph, spy, y, x)
    images = rng.uniform(0, 1, (3, 24, 30, 3)).astype(np.float32)
    segs = [random_segments(rng) for _ in range(3)]
    classes = np.array([1, 0, 1])
    params = XRAIParameters(steps=6, algorithm="fast")
    looped = np.stack([method.GetMask(images[i], {k: [classes[i]]}, segments=segs[i],
                                      extra_parameters=params) for i in range(3)])
    spy.run.reset_mock()
    batched = method.GetMaskBatch(images, {k: PerExample(classes)}, segments=segs,
                                  extra_parameters=params, batch_size=9)
    assert spy.run.call_count == 4  # 3 images x 2 baselines x 6 steps = 36 rows / 9
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-7)
    base = rng.normal(size=images.shape)
    np.testing.assert_array_equal(
        method.GetMaskBatch(images, {k: PerExample(classes)}, segments=segs,
                            base_attribution=base),
        np.stack([method.GetMask(images[i], {k: [1]}, segments=segs[i], base_attribution=base[i])
                  for i in range(3)]))


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"segments": [np.ones((24, 29), bool)]}, ValueError,
         r"segments: expected masks of the image's shape \(24, 30\), got segments\[0\]"),
        ({"segments": np.ones((24, 30), bool)}, TypeError, "segments: expected a list"),
        ({"base_attribution": np.ones((24, 30))}, ValueError, "base_attribution"),
        ({"baselines": [np.zeros((24, 30, 1))]}, ValueError, "baselines"),
        ({"baselines": []}, ValueError, "baselines: expected at least one"),
        ({"extra_parameters": XRAIParameters(algorithm="slow")}, ValueError,
         "algorithm: expected 'full' or 'fast', got 'slow'"),
        ({"extra_parameters": XRAIParameters(steps=0)}, ValueError, "steps"),
        ({"extra_parameters": {"steps": 5}}, TypeError, "XRAIParameters"),
        ({"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input_raises_before_any_run(rng, counting, kwargs, error, match):
    graph, session, x, y, _ = make_linear((24, 30, 3))
    spy = counting(session)
    method = XRAI(graph, spy, y, x)
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    kwargs = {"segments": [np.ones((24, 30), bool)], **kwargs}
    with pytest.raises(error, match=match):
        method.GetMask(image, **kwargs)
    assert spy.run.call_count == 0


def test_batch_argument_shapes_are_checked(linear_xrai, rng):
    method, _ = linear_xrai
    images = rng.normal(size=(2, 24, 30, 3)).astype(np.float32)
    segs = [random_segments(rng)] * 2
    with pytest.raises(ValueError, match="segments: expected one list of segments per input"):
        method.GetMaskBatch(images, segments=segs[:1])
    with pytest.raises(ValueError, match=r"base_attribution: expected shape \[N"):
        method.GetMaskBatch(images, segments=segs, base_attribution=images[0])


def test_output_type_and_pair_signature(linear_xrai, rng):
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    segs = random_segments(rng)
    # PAIR's positional order: feed_dict, baselines, segments, base_attribution, batch_size.
    out = method.GetMaskWithDetails(image, None, None, segs, image, 4, XRAIParameters())
    assert isinstance(out, XRAIOutput) and out.baselines is None and out.segments is None
    assert out.attribution_mask.shape == (24, 30) and out.attribution_mask.dtype == np.float64
    np.testing.assert_array_equal(method.GetMask(image, None, None, segs, image),
                                  out.attribution_mask)


# -- PAIR ------------------------------------------------------------------------------


@pytest.mark.oracle
@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_same_as_pair_given_attribution_and_segments(linear_xrai, rng, algorithm):
    pair = pytest.importorskip("saliency.core.xrai")
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    segs = random_segments(rng)
    base = rng.normal(size=image.shape).astype(np.float32)
    theirs = pair.XRAIParameters()
    theirs.algorithm, theirs.return_xrai_segments = algorithm, True
    theirs.experimental_params["min_pixel_diff"] = 10
    ours = XRAIParameters(algorithm=algorithm, return_xrai_segments=True)
    ours.experimental_params["min_pixel_diff"] = 10
    expected = pair.XRAI().GetMaskWithDetails(image, None, segments=segs, base_attribution=base,
                                              extra_parameters=theirs)
    got = method.GetMaskWithDetails(image, segments=segs, base_attribution=base,
                                    extra_parameters=ours)
    np.testing.assert_array_equal(got.attribution_mask, expected.attribution_mask)
    np.testing.assert_array_equal(got.segments, expected.segments)


@pytest.mark.oracle
def test_same_segments_as_pair(rng):
    pair = pytest.importorskip("saliency.core.xrai")
    from saliency_tf1.datasets import make_shapes

    for image in (make_shapes(1, size=48, seed=2).images[0],
                  rng.uniform(0, 1, (30, 40, 3)).astype(np.float32)):
        theirs = [m for m in pair._get_segments_felzenszwalb(image) if m.any()]
        np.testing.assert_array_equal(felzenszwalb_segments(image), np.stack(theirs))


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_same_as_pair_end_to_end(relu_cnn, algorithm):
    pair = pytest.importorskip("saliency.tf1")
    from saliency_tf1.datasets import make_shapes

    image = make_shapes(1, size=16, seed=4).images[0]
    theirs = pair.XRAIParameters()
    theirs.algorithm, theirs.steps, theirs.return_xrai_segments = algorithm, 20, True
    theirs.experimental_params["min_pixel_diff"] = 5
    ours = XRAIParameters(algorithm=algorithm, steps=20, return_xrai_segments=True)
    ours.experimental_params["min_pixel_diff"] = 5
    expected = pair.XRAI(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x) \
        .GetMaskWithDetails(image, feed_dict={}, extra_parameters=theirs)
    got = XRAI(relu_cnn.graph, relu_cnn.session, relu_cnn.y, relu_cnn.x) \
        .GetMaskWithDetails(image, extra_parameters=ours)
    np.testing.assert_array_equal(got.segments, expected.segments)
    np.testing.assert_allclose(got.attribution_mask, expected.attribution_mask, rtol=1e-4,
                               atol=1e-6)


def test_progress_bar_on_and_off(linear_xrai, rng, capsys):
    method, _ = linear_xrai
    image = rng.normal(size=(24, 30, 3)).astype(np.float32)
    segs = random_segments(rng)
    params = XRAIParameters(steps=4)
    method.GetMask(image, segments=segs, extra_parameters=params, progress=True)
    err = capsys.readouterr().err
    assert "XRAI" in err and "IntegratedGradients" in err
    method.GetMask(image, segments=segs, extra_parameters=params, progress=False)
    method.GetMask(image, segments=segs, extra_parameters=params)
    assert capsys.readouterr().err == ""
