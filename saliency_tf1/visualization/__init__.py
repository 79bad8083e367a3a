"""Turning masks into pictures: arrays (PAIR's views, overlays) and figures (files, PNG bytes)."""

from .arrays import (
    VisualizeImageDiverging,
    VisualizeImageGrayscale,
    display_mask,
    normalize_image,
    overlay,
)
from .figures import encode_png, pyplot, save_figure, save_grid

__all__ = [
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "display_mask",
    "encode_png",
    "normalize_image",
    "overlay",
    "pyplot",
    "save_figure",
    "save_grid",
]
