"""Figures of masks: an image beside its masks, a grid of images by masks, PNG encoding."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .arrays import (
    VisualizeImageDiverging,
    display_mask,
    normalize_image,
    overlay,
)


def pyplot() -> Any:
    """pyplot on the non-interactive Agg backend unless the caller chose one."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _write(fig: Any, path: str | os.PathLike, title: str | None, dpi: int) -> str:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def save_figure(
    image: Any,
    masks: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    cmap: str = "inferno",
    diverging: Sequence[str] = (),
    overlay_alpha: float | None = None,
) -> str:
    """Lays out an image and its masks in a grid (one row for up to 5 masks) and writes a PNG.

    Args:
      image: the input image, ``[h, w, c]``.
      masks: ``{panel title: mask}``; each mask is ``[h, w, c]`` (made
        grayscale, or diverging for the names in ``diverging``) or ``[h, w]``.
      path: the PNG to write (its folder is created).
      title: the figure title.
      overlay_alpha: if set, masks are drawn over the image with this alpha.

    Returns the path written.
    """
    plt = pyplot()

    names = list(masks)
    panels = len(names) + 1
    cols = min(panels, 6)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.9 * rows), squeeze=False)
    axes = axes.reshape(-1)
    shown = normalize_image(image)
    axes[0].imshow(shown[..., 0] if shown.ndim == 3 and shown.shape[-1] == 1 else shown,
                   cmap="gray")
    axes[0].set_title("input")
    for ax, name in zip(axes[1:], names):
        mask = np.asarray(masks[name])
        if name in diverging and mask.ndim == 3:
            # 0.5 is a zero attribution in PAIR's diverging scale.
            ax.imshow(VisualizeImageDiverging(mask), cmap="bwr", vmin=0, vmax=1)
        elif overlay_alpha is not None:
            ax.imshow(overlay(image, mask, cmap=cmap, alpha=overlay_alpha))
        else:
            ax.imshow(display_mask(mask), cmap=cmap, vmin=0, vmax=1)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    return _write(fig, path, title, dpi=100)


def save_grid(
    images: Sequence[Any],
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    row_titles: Sequence[str] | None = None,
    cmap: str = "inferno",
    title: str | None = None,
) -> str:
    """Writes a PNG grid: one row per image (input, then one panel per mask)."""
    plt = pyplot()

    if len(images) != len(rows) or not rows:
        raise ValueError(f"rows: expected one mask dict per image ({len(images)}), got {len(rows)}")
    names = list(rows[0])
    n_rows, n_cols = len(rows), len(names) + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.1 * n_cols, 2.2 * n_rows), squeeze=False)
    for r, (image, masks) in enumerate(zip(images, rows)):
        shown = normalize_image(image)
        axes[r, 0].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray")
        axes[r, 0].set_title(row_titles[r] if row_titles else "input", fontsize=8)
        for c, name in enumerate(names, start=1):
            axes[r, c].imshow(display_mask(masks[name]), cmap=cmap, vmin=0, vmax=1)
            if r == 0:
                axes[r, c].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    return _write(fig, path, title, dpi=90)


def encode_png(image: Any) -> bytes:
    """PNG bytes of a uint8 ``[h, w]`` or ``[h, w, c]`` image (c = 1 to 4), by Pillow.

    (Pillow is a dependency of matplotlib, so it is always installed with this package.)
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"image: expected a uint8 array, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise ValueError(f"image: expected shape [h, w] or [h, w, 1..4], got {arr.shape}")
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buffer, format="PNG")
    return buffer.getvalue()
