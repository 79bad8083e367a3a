"""Turning masks into pictures: arrays (PAIR's views, channel reductions, overlays),
figures (files, PNG bytes) and views per modality (tokens, features, time series)."""

from .arrays import (
    CHANNEL_REDUCTIONS,
    VisualizeImageDiverging,
    VisualizeImageGrayscale,
    display_mask,
    minmax_scale,
    normalize_image,
    overlay,
    reduce_channels,
)
from .figures import encode_png, pyplot, save_figure, save_grid
from .report import write_report
from .views import TokenHTML, feature_bar_chart, timeseries_figure, token_figure, token_html

__all__ = [
    "CHANNEL_REDUCTIONS",
    "TokenHTML",
    "VisualizeImageDiverging",
    "VisualizeImageGrayscale",
    "display_mask",
    "encode_png",
    "feature_bar_chart",
    "minmax_scale",
    "normalize_image",
    "overlay",
    "pyplot",
    "reduce_channels",
    "save_figure",
    "save_grid",
    "timeseries_figure",
    "token_figure",
    "token_html",
    "write_report",
]
