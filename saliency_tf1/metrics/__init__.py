"""Scores of how faithful and how well-placed a saliency mask is."""

from .localization import energy_inside, pointing_game

__all__ = ["energy_inside", "pointing_game"]
