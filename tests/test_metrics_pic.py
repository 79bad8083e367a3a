"""Performance Information Curves (SIC / AIC): a hand-computed case, PAIR as oracle."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_tf1.metrics.pic import (
    aic,
    estimate_information,
    pic_curve,
    pic_curves,
    random_reveal_masks,
    reveal_blurred,
    sic,
)

# -- a case computed by hand ---------------------------------------------------------
#
# A 16x16 black image with four bright (200) pixels at the corners of a
# diamond. Every blurred image interpolates linearly between kept pixels, so a
# bright pixel that is not kept never reaches 200 (it is no corner of the
# triangles around it: the four are in convex position), and a kept one is
# exactly 200. With no random pixels the fully blurred image is black.
#
# information(image) = number of bright positions at 200 = k, the bright pixels revealed;
# P(class 0 | image) = G[k]. The saliency map ranks the bright pixels first, so the
# threshold t_k = (k - 0.5) / 255 reveals exactly k pixels (the top 256 - ceil((1-t)*255)).
# Normalised: x = k / 4, y = (G[k] - G[0]) / (G[4] - G[0]).

BRIGHT = [(3, 8), (8, 3), (13, 8), (8, 13)]
G = np.array([0.1, 0.3, 0.25, 0.7, 0.9])


def hand_case():
    image = np.zeros((16, 16), np.uint8)
    saliency = np.random.default_rng(0).uniform(0, 1, (16, 16))
    for rank, (r, c) in enumerate(BRIGHT):
        image[r, c] = 200
        saliency[r, c] = 10.0 - rank

    def revealed(images):
        images = np.asarray(images).reshape(-1, 16, 16)
        return np.array([sum(int(im[r, c] == 200) for r, c in BRIGHT) for im in images])

    def model(rows):
        p = G[revealed(rows)]
        return np.stack([p, 1 - p], axis=1)

    thresholds = [(k - 0.5) / 255 for k in (1, 2, 3, 4)] + [10.5 / 255]
    kwargs = dict(thresholds=thresholds, random_masks=np.zeros((1, 16, 16), bool),
                  information=lambda im: float(revealed(im[None])[0]), num_data_points=4,
                  min_pred_value=0.5)
    return image[None], saliency[None], model, kwargs


def test_sic_and_aic_by_hand():
    images, saliency, model, kwargs = hand_case()
    res = pic_curves(model, images, saliency, **kwargs)
    s, a = res["sic"], res["aic"]
    np.testing.assert_array_equal(s.information[0], [0, 1, 2, 3, 4, 4, 4])
    np.testing.assert_allclose(s.performance[0], [0.1, 0.3, 0.25, 0.7, 0.9, 0.9, 0.9])
    # SIC: y = [0.25, 0.1875, 0.75, 1, 1], kept monotonous: [0.25, 0.25, 0.75, 1, 1].
    np.testing.assert_allclose(s.curve_x, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(s.curve_y[0], [0, 0.25, 0.25, 0.75, 1])
    assert s.auc[0] == pytest.approx(0.25 * (0 / 2 + 0.25 + 0.25 + 0.75 + 1 / 2))
    # AIC: correct (P > 0.5) once 3 pixels are revealed.
    np.testing.assert_allclose(a.performance[0], [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(a.curve_y[0], [0, 0, 0, 1, 1])
    assert a.auc[0] == pytest.approx(0.25 * (0 + 0 + 1 + 1 / 2))
    assert s.skipped == [None] and a.skipped == [None]
    np.testing.assert_array_equal(s.targets, [0])
    # Not monotonous: the dip at k = 2 stays.
    flat = sic(model, images, saliency, keep_monotonous=False, **kwargs)
    np.testing.assert_allclose(flat.curve_y[0], [0, 0.25, 0.1875, 0.75, 1])
    assert flat.auc[0] == pytest.approx(0.25 * (0.25 + 0.1875 + 0.75 + 0.5))
    assert aic(model, images, saliency, **kwargs).auc[0] == a.auc[0]


def test_pic_curve_ties_follow_the_points_order():
    # Sorted stably by information, the anchors (0, 0) and (1, 1) last: at a shared
    # x the curve arrives at the first point's y and leaves from the last one's.
    x, y, auc = pic_curve(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.6, 0.4]),
                          keep_monotonous=False, num_data_points=4)
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1])
    # Points: (0, 0.4) (0, 0) | (0.5, 0.2) (0.5, 0.6) | (1, 1).
    np.testing.assert_allclose(y, [0, 0.1, 0.6, 0.8, 1])
    assert auc == pytest.approx(0.25 * (0 / 2 + 0.1 + 0.6 + 0.8 + 1 / 2))


def test_constant_model_skips_every_image(rng):
    images = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    res = pic_curves(lambda rows: np.tile([0.9, 0.1], (len(rows), 1)), images,
                     rng.uniform(size=(3, 12, 12)))
    for kind in ("sic", "aic"):
        assert all("blurred" in reason for reason in res[kind].skipped)
        assert np.all(np.isnan(res[kind].auc))
        with pytest.raises(ValueError, match="no image"):
            res[kind].aggregate()


def test_low_confidence_is_skipped():
    images, saliency, model, kwargs = hand_case()
    res = sic(model, images, saliency, **{**kwargs, "min_pred_value": 0.95})
    assert "min_pred_value" in res.skipped[0]
    # Only the two ends were evaluated.
    assert np.all(np.isnan(res.performance[0, 1:-1]))


def test_batch_sizes_1_and_64_give_equal_curves(rng):
    images = rng.integers(0, 256, (3, 12, 12, 3), dtype=np.uint8)
    masks = rng.normal(size=(3, 12, 12, 3))
    images[:, 3:9, 3:9] = 255

    def model(rows):
        s = np.asarray(rows, np.float64)[:, 3:9, 3:9].mean(axis=(1, 2, 3)) / 255
        p = 1 / (1 + np.exp(-12 * (s - 0.6)))
        return np.stack([p, 1 - p], axis=1)

    a = pic_curves(model, images, masks, batch_size=1, min_pred_value=0.5)
    b = pic_curves(model, images, masks, batch_size=64, min_pred_value=0.5)
    for kind in ("sic", "aic"):
        np.testing.assert_array_equal(a[kind].curve_y, b[kind].curve_y)
        np.testing.assert_array_equal(a[kind].performance, b[kind].performance)
        assert a[kind].skipped == b[kind].skipped
    assert any(r is None for r in a["sic"].skipped)


def test_batch_sizes_1_and_64_on_the_demo_model(demo_model):
    from saliency_tf1.metrics.model import tf1_model_function

    m = demo_model
    model = tf1_model_function(m.graph, m.session, m.logits, m.x)
    images = m.data.images[:2]
    masks = np.random.default_rng(0).uniform(size=images.shape[:3])
    a = sic(model, images, masks, batch_size=1, min_pred_value=0.0)
    b = sic(model, images, masks, batch_size=64, min_pred_value=0.0)
    np.testing.assert_allclose(a.performance, b.performance, rtol=1e-6, atol=1e-9)


def test_random_reveal_masks():
    masks = random_reveal_masks(3, (10, 20), 0.05, seed=4)
    assert masks.shape == (3, 10, 20) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(axis=(1, 2)), [10, 10, 10])
    np.testing.assert_array_equal(masks, random_reveal_masks(3, (10, 20), 0.05, seed=4))
    assert not np.array_equal(masks[0], masks[1])


def test_reveal_blurred_keeps_revealed_pixels_and_interpolates_the_rest(rng):
    image = rng.uniform(size=(9, 9, 2)).astype(np.float32)
    keep = rng.uniform(size=(9, 9)) < 0.3
    out = reveal_blurred(image, keep)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out[keep], image[keep])
    np.testing.assert_array_equal(out[0, 0], image[0, 0])    # corners always kept
    np.testing.assert_array_equal(reveal_blurred(image, np.ones((9, 9), bool)), image)
    # An affine image is reproduced exactly by linear interpolation.
    rows, cols = np.mgrid[0:9, 0:9]
    plane = (2.0 * rows - 0.5 * cols + 3.0)[..., None]
    np.testing.assert_allclose(reveal_blurred(plane, keep), plane, atol=1e-9)


def test_information_grows_with_content(rng):
    flat = np.full((32, 32, 3), 128, np.uint8)
    noisy = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for fmt in ("webp", "png"):
        assert estimate_information(flat, fmt) < estimate_information(noisy, fmt)
    # Grey, one-channel and many-channel images are encoded too.
    assert estimate_information(noisy[..., 0]) == estimate_information(noisy[..., :1])
    assert estimate_information(np.concatenate([noisy, noisy[..., :2]], -1)) > 0
    with pytest.raises(TypeError, match="uint8"):
        estimate_information(noisy.astype(np.float32))


@pytest.mark.parametrize("kwargs, message", [
    ({"kinds": ("foo",)}, "kinds"),
    ({"thresholds": [0.5, 0.1]}, "thresholds"),
    ({"thresholds": [1.5]}, "thresholds"),
    ({"random_masks": np.zeros((2, 8, 8))}, "random_masks"),
    ({"information": "jpeg"}, "information"),
    ({"value_range": (1.0, 0.0)}, "value_range"),
    ({"num_data_points": 0}, "num_data_points"),
])
def test_errors_name_the_argument(kwargs, message):
    images = np.zeros((2, 8, 8, 3), np.float32)
    with pytest.raises(ValueError, match=message):
        pic_curves(lambda r: np.ones((len(r), 2)), images, np.zeros((2, 8, 8)), **kwargs)


def test_aic_needs_class_scores(rng):
    images = rng.uniform(size=(1, 8, 8, 3))
    with pytest.raises(ValueError, match="AIC"):
        aic(lambda rows: np.ones(len(rows)), images, images)


# -- PAIR saliency 0.2.1 as oracle -------------------------------------------------------


@pytest.fixture
def pair_pic(monkeypatch):
    pic = pytest.importorskip("saliency.metrics.pic")
    if not hasattr(np, "trapz"):  # removed in NumPy 2.4; PAIR's code still calls it
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return pic


def oracle_case(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    image[6:14, 8:18] = rng.integers(200, 256, 3)
    saliency = rng.uniform(size=(24, 24))
    saliency[6:14, 8:18] += 0.7
    random_mask = random_reveal_masks(1, (24, 24), 0.02, seed=seed)[0]
    return image, saliency, random_mask


def oracle_model(rows):
    rows = np.asarray(rows, np.float64)
    inside = rows[:, 6:14, 8:18].mean(axis=(1, 2, 3)) / 255
    spread = rows.std(axis=(1, 2, 3)) / 100
    logits = np.stack([6 * inside, 3 * spread, np.full(len(rows), 1.5)], axis=1)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.oracle
def test_building_blocks_match_pair(pair_pic, rng):
    # Same triangulation, same linear interpolation; our barycentric weights come
    # from exact integer cross products, PAIR's (SciPy's) from LAPACK, so a value
    # that lands on .5 may round the other way: allow 1 grey level on a few pixels.
    image, saliency, random_mask = oracle_case(0)
    for img in (image, image[..., 0]):
        for keep in (random_mask, saliency > 1.0, np.zeros((24, 24), bool)):
            ours = reveal_blurred(img, keep).astype(int)
            theirs = pair_pic.create_blurred_image(img, keep).astype(int)
            assert np.abs(ours - theirs).max() <= 1
            assert np.mean(ours != theirs) <= 0.01
        assert estimate_information(img) == pair_pic.estimate_image_entropy(img)
    floats = rng.uniform(size=(15, 11, 2))
    keep = rng.uniform(size=(15, 11)) < 0.2
    np.testing.assert_allclose(reveal_blurred(floats, keep),
                               pair_pic.create_blurred_image(floats, keep), atol=1e-12)


@pytest.mark.oracle
def test_sic_and_aggregate_match_pair(pair_pic, monkeypatch):
    # PAIR's curve logic over our blurred images (compared above), so that
    # thresholds, normalisation, interpolation, area and aggregation match exactly.
    monkeypatch.setattr(pair_pic, "create_blurred_image",
                        lambda full_img, pixel_mask: reveal_blurred(full_img, pixel_mask))
    cases = [oracle_case(seed) for seed in (1, 2, 3)]
    thresholds = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.34, 0.5, 0.75]
    theirs = [
        pair_pic.compute_pic_metric(img, sal, rm, lambda b: oracle_model(b)[:, 0], thresholds,
                                    min_pred_value=0.3, num_data_points=200)
        for img, sal, rm in cases
    ]
    ours = sic(oracle_model, np.stack([c[0] for c in cases]), np.stack([c[1] for c in cases]),
               random_masks=np.stack([c[2] for c in cases]), thresholds=thresholds,
               targets=0, min_pred_value=0.3, num_data_points=200, batch_size=4)
    assert ours.skipped == [None] * 3
    for i, t in enumerate(theirs):
        assert np.all(np.isfinite(t.curve_y))
        np.testing.assert_allclose(ours.curve_x, t.curve_x, atol=1e-15)
        np.testing.assert_allclose(ours.curve_y[i], t.curve_y, atol=1e-12)
        assert ours.auc[i] == pytest.approx(t.auc, abs=1e-12)
        np.testing.assert_allclose(ours.performance[i], t.predictions, rtol=1e-12)
    for method in ("median", "mean"):
        agg = pair_pic.aggregate_individual_pic_results(theirs, method=method)
        mine = ours.aggregate(method)
        np.testing.assert_allclose(mine.curve_y, agg.curve_y, atol=1e-12)
        assert mine.auc == pytest.approx(agg.auc, abs=1e-12) and mine.n_images == 3


def test_progress_bar_on_request(capsys):
    images, saliency, model, kwargs = hand_case()
    sic(model, images, saliency, progress=True, **kwargs)
    assert "PIC" in capsys.readouterr().err
    sic(model, images, saliency, progress=False, **kwargs)
    assert capsys.readouterr().err == ""
