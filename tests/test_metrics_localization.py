"""Localisation scores on the demo data, whose informative region (the shape) is known."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_tf1.metrics.localization import energy_inside, localization, pointing_game


def test_perfect_mask_beats_random_and_inverted(demo_model):
    regions = demo_model.data.regions[:32]
    rng = np.random.default_rng(0)
    masks = {
        "perfect": regions.astype(float),
        "random": rng.uniform(size=regions.shape),
        "inverted": (~regions).astype(float),
    }
    scores = {k: localization(m, regions) for k, m in masks.items()}
    energy = {k: s["energy_inside"].mean() for k, s in scores.items()}
    pointing = {k: s["pointing_game"].mean() for k, s in scores.items()}
    assert energy["perfect"] == 1.0 and pointing["perfect"] == 1.0
    assert energy["inverted"] == 0.0 and pointing["inverted"] == 0.0
    assert energy["inverted"] < energy["random"] < energy["perfect"]
    # A uniform random mask puts about the shapes' area inside them.
    assert energy["random"] == pytest.approx(regions.mean(), abs=0.02)


def test_scores_by_hand():
    region = np.zeros((3, 3), bool)
    region[0, 0] = region[1, 1] = True
    mask = np.array([[2.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    assert energy_inside(mask, region) == pytest.approx(3 / 4)       # |m| inside / total
    assert pointing_game(mask, region)
    channels = np.stack([mask, -mask], axis=-1)                       # sum_c |m| = 2 |m|
    assert energy_inside(channels, region) == pytest.approx(3 / 4)
    assert energy_inside(np.zeros((3, 3)), region) == 0.0
    both = localization(np.stack([mask, -mask]), np.stack([region, ~region]))
    np.testing.assert_allclose(both["energy_inside"], [3 / 4, 1 / 4])
    np.testing.assert_array_equal(both["pointing_game"], [True, False])


def test_errors():
    with pytest.raises(ValueError, match="mask"):
        energy_inside(np.zeros((3, 4)), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="regions"):
        localization(np.zeros((2, 3, 3)), np.zeros((3, 3, 3), bool))
