"""Visualisation: PAIR's definitions, overlays and figures."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_tf1 import VisualizeImageDiverging, VisualizeImageGrayscale, overlay, save_figure
from saliency_tf1.visualization import save_grid


def test_grayscale_definition():
    mask = np.random.default_rng(0).normal(size=(8, 9, 3))
    s = np.abs(mask).sum(axis=2)
    expected = np.clip((s - s.min()) / (np.percentile(s, 99) - s.min()), 0, 1)
    np.testing.assert_allclose(VisualizeImageGrayscale(mask), expected)
    out = VisualizeImageGrayscale(mask, percentile=50)
    assert out.shape == (8, 9) and out.min() == 0 and out.max() == 1
    assert np.mean(out == 1) == pytest.approx(0.5, abs=0.02)


def test_diverging_definition_keeps_zero_at_half():
    mask = np.random.default_rng(1).normal(size=(8, 9, 2))
    s = mask.sum(axis=2)
    span = abs(np.percentile(s, 99))
    expected = np.clip((s + span) / (2 * span), -1, 1)
    np.testing.assert_allclose(VisualizeImageDiverging(mask), expected)
    zero_at = np.zeros((2, 2, 1))
    zero_at[0, 0, 0] = 1.0
    assert VisualizeImageDiverging(zero_at, percentile=100)[1, 1] == 0.5


def test_constant_masks_give_zeros_not_nan():
    for fn in (VisualizeImageGrayscale, VisualizeImageDiverging):
        out = fn(np.zeros((4, 4, 3)))
        assert np.all(out == 0)


def test_bad_rank_is_refused():
    with pytest.raises(ValueError, match=r"image_3d: expected a numeric \[height, width, chan"):
        VisualizeImageGrayscale(np.zeros((4, 4)))


def test_overlay_blends_image_and_colormap():
    img = np.full((4, 5, 3), 255, np.uint8)
    mask = np.zeros((4, 5))
    out = overlay(img, mask, cmap="gray", alpha=0.5)
    np.testing.assert_allclose(out, 0.5)  # white image, black colour for 0
    assert overlay(img, np.ones((4, 5, 3)), alpha=0.0).max() == 1.0
    with pytest.raises(ValueError, match=r"mask: expected shape \(4, 5\)"):
        overlay(img, np.zeros((3, 3)))


def test_figures_are_written(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.uniform(size=(16, 16, 3))
    masks = {"a": rng.normal(size=(16, 16, 3)), "b": rng.uniform(size=(16, 16))}
    path = save_figure(img, masks, tmp_path / "sub" / "fig.png", title="t", diverging=["a"])
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    path = save_figure(img, masks, tmp_path / "over.png", overlay_alpha=0.4)
    grid = save_grid([img, img], [masks, masks], tmp_path / "grid.png", row_titles=["x", "y"])
    assert (tmp_path / "over.png").stat().st_size > 0 and (tmp_path / "grid.png").exists()
    assert grid.endswith("grid.png")
    with pytest.raises(ValueError, match="rows: expected one mask dict per image"):
        save_grid([img], [masks, masks], tmp_path / "bad.png")


def test_display_mask_shows_two_d_masks_relative_to_their_peak():
    from saliency_tf1.visualization import display_mask

    gains = np.array([[0.0, 0.02], [0.05, 0.05]])  # e.g. XRAI's region gains
    np.testing.assert_allclose(display_mask(gains), gains / 0.05)
    cam = np.array([[0.0, 0.5], [1.0, 0.25]])  # a Grad-CAM map already peaking at 1
    np.testing.assert_allclose(display_mask(cam), cam)
    signed = np.array([[-1.0, 0.0], [1.0, 3.0]])
    np.testing.assert_allclose(display_mask(signed), (signed + 1) / 4)
    assert not display_mask(np.zeros((2, 2))).any()
    assert not display_mask(np.full((2, 2), -7.0)).any()
    rgb = np.random.default_rng(3).normal(size=(4, 4, 3))
    np.testing.assert_allclose(display_mask(rgb), VisualizeImageGrayscale(rgb))
