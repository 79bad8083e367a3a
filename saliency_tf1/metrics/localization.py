"""Localisation scores on data whose informative region is known."""

from __future__ import annotations

from typing import Any

import numpy as np


def _mass(mask: Any, region_shape: tuple[int, ...]) -> np.ndarray:
    m = np.abs(np.asarray(mask, dtype=np.float64))
    if m.ndim == len(region_shape) + 1:  # [h, w, c]: sum the channels
        m = m.sum(axis=-1)
    if m.shape != region_shape:
        raise ValueError(f"mask: expected shape {region_shape} (+ channels), got {np.shape(mask)}")
    return m


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
    """
    region = np.asarray(region, dtype=bool)
    m = _mass(mask, region.shape)
    return bool(region.flat[int(np.argmax(m))])
