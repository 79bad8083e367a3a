"""Turning masks into pictures: grayscale/diverging arrays, overlays, figures, PNGs."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _check_3d(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 3 or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: expected a numeric [height, width, channels] array, got {arr.dtype} "
            f"of shape {arr.shape}"
        )
    return arr


def _scale(image_2d: np.ndarray, vmin: float, vmax: float, low: float) -> np.ndarray:
    span = vmax - vmin
    if not np.isfinite(span) or span <= 0:
        # A constant (e.g. all-zero) mask: PAIR divides by zero and returns NaN.
        return np.zeros_like(image_2d, dtype=np.float64)
    return np.clip((image_2d - vmin) / span, low, 1)


def VisualizeImageGrayscale(image_3d: Any, percentile: float = 99) -> np.ndarray:
    """Sums ``|mask|`` over channels and scales it to ``[0, 1]``, clipping at a percentile.

    Same definition as PAIR's: ``(s - min(s)) / (percentile(s) - min(s))``
    clipped to ``[0, 1]`` where ``s = sum(|image_3d|, axis=2)``; a constant
    mask gives zeros instead of NaN.
    """
    image_2d = np.sum(np.abs(_check_3d("image_3d", image_3d)), axis=2)
    return _scale(image_2d, float(np.min(image_2d)), float(np.percentile(image_2d, percentile)), 0)


def VisualizeImageDiverging(image_3d: Any, percentile: float = 99) -> np.ndarray:
    """Sums the signed mask over channels and scales it symmetrically, as PAIR does.

    ``(s + span) / (2 span)`` clipped to ``[-1, 1]`` with ``s = sum(image_3d, axis=2)``
    and ``span = |percentile(s)|`` (so 0.5 is a zero attribution); a constant
    zero mask gives zeros instead of NaN.
    """
    image_2d = np.sum(_check_3d("image_3d", image_3d), axis=2)
    span = abs(float(np.percentile(image_2d, percentile)))
    return _scale(image_2d, -span, span, -1)


def normalize_image(image: Any) -> np.ndarray:
    """Maps an image to float ``[0, 1]`` for display (uint8 / 255; floats by min-max)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    lo, hi = float(np.min(img)), float(np.max(img))
    return np.zeros_like(img) if hi <= lo else (img - lo) / (hi - lo)


def display_mask(mask: Any) -> np.ndarray:
    """A mask as an ``[h, w]`` picture in ``[0, 1]``.

    ``[h, w, c]`` masks go through :func:`VisualizeImageGrayscale`. A
    non-negative ``[h, w]`` mask is divided by its peak (XRAI's region gains
    are small numbers, ~0.01-0.07 on the demo; a Grad-CAM map already peaking
    at 1 is unchanged; zero stays zero); a signed one is min-max scaled.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3:
        return VisualizeImageGrayscale(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected [h, w] or [h, w, c], got shape {mask.shape}")
    low, high = float(np.min(mask)), float(np.max(mask))
    return _scale(mask, 0.0 if low >= 0 else low, high, 0)


def overlay(image: Any, mask: Any, cmap: str = "inferno", alpha: float = 0.5) -> np.ndarray:
    """Returns an RGB float image: ``image`` blended with ``mask`` drawn in a colormap.

    ``mask``: ``[h, w]`` values in ``[0, 1]`` (e.g. from ``VisualizeImageGrayscale``),
    or a raw ``[h, w, c]`` mask, which is made grayscale first.
    """
    from matplotlib import colormaps

    img = normalize_image(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    m = display_mask(mask)
    if m.shape != img.shape[:2]:
        raise ValueError(f"mask: expected shape {img.shape[:2]} (the image's), got {m.shape}")
    colored = colormaps[cmap](np.clip(m, 0, 1))[..., :3]
    return (1 - alpha) * img[..., :3] + alpha * colored


def _pyplot() -> Any:
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
    _pyplot().close(fig)
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
    """Lays out an image and its masks in one row and writes a PNG.

    Args:
      image: the input image, ``[h, w, c]``.
      masks: ``{panel title: mask}``; each mask is ``[h, w, c]`` (made
        grayscale, or diverging for the names in ``diverging``) or ``[h, w]``.
      path: the PNG to write (its folder is created).
      title: the figure title.
      overlay_alpha: if set, masks are drawn over the image with this alpha.

    Returns the path written.
    """
    plt = _pyplot()

    names = list(masks)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.6 * (len(names) + 1), 2.9))
    axes = np.atleast_1d(axes)
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
    plt = _pyplot()

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
