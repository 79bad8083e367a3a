"""Localisation scores on data whose informative region is known."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import importance_map


def _mass(mask: Any, region_shape: tuple[int, ...]) -> np.ndarray:
    return importance_map(mask, region_shape, absolute=True)


def energy_inside(mask: Any, region: Any) -> float:
    """Fraction of the mask's absolute mass that lies inside ``region``.

    ``sum(|m| * region) / sum(|m|)``, with ``|m|`` summed over channels; an
    all-zero mask scores 0. A uniform mask scores ``region.mean()`` (chance).
    The "energy-based pointing game" of Wang et al., Score-CAM, 2020.
    """
    region = np.asarray(region, dtype=bool)
    m = _mass(mask, region.shape)
    total = m.sum()
    return 0.0 if total == 0 else float(m[region].sum() / total)


def pointing_game(mask: Any, region: Any) -> bool:
    """True if the mask's maximum (over channels' absolute sum) falls inside ``region``.

    Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016.
    Where several pixels share the maximum, the first in raster order counts.
    """
    region = np.asarray(region, dtype=bool)
    m = _mass(mask, region.shape)
    return bool(region.flat[int(np.argmax(m))])


def localization(masks: Any, regions: Any) -> dict[str, np.ndarray]:
    """Both scores for a batch: ``{"energy_inside": [N] floats, "pointing_game": [N] bools}``.

    ``masks``: ``[N, H, W(, C)]``; ``regions``: ``[N, H, W]`` booleans.
    """
    regions = np.asarray(regions, dtype=bool)
    masks = np.asarray(masks)
    if regions.ndim != 3 or masks.ndim not in (3, 4) or len(masks) != len(regions):
        raise ValueError(
            f"masks, regions: expected [N, H, W(, C)] masks and [N, H, W] regions, got shapes "
            f"{masks.shape} and {regions.shape}"
        )
    return {
        "energy_inside": np.array([energy_inside(m, r) for m, r in zip(masks, regions)]),
        "pointing_game": np.array([pointing_game(m, r) for m, r in zip(masks, regions)]),
    }
