"""The demo dataset: coloured shapes on textured noise, with the informative region known.

Each image holds one shape; its class is the shape (square, disk, triangle,
cross), never its colour, size or place, and the background is random
texture. The pixels of the shape are returned as a boolean mask per image, so
a saliency map can be scored by how much of its mass falls on the shape.
Everything is generated from a seed: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("square", "disk", "triangle", "cross")


@dataclass
class ShapesDataset:
    """Generated images with their labels and the pixels that decide them.

    ``images``: ``[n, size, size, 3]`` float32 in [0, 1]; ``labels``: ``[n]``
    class indices; ``regions``: ``[n, size, size]`` booleans, True on the
    pixels of each image's shape.
    """

    images: np.ndarray
    labels: np.ndarray
    regions: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> ShapesDataset:
        return ShapesDataset(self.images[index], self.labels[index], self.regions[index],
                             self.class_names)

    def informative(self, margin: int = 1) -> np.ndarray:
        """The regions grown by ``margin`` pixels (8-neighbour dilation), ``[n, size, size]``.

        A shape is told from the background by its edge, and an edge is two
        pixels wide: the shape's border and the background next to it. Scoring
        against the region grown by one pixel counts both.
        """
        if margin < 0:
            raise ValueError(f"margin: expected an int >= 0, got {margin}")
        return dilate(self.regions, margin)


def dilate(masks: np.ndarray, margin: int = 1) -> np.ndarray:
    """Boolean masks ``[..., h, w]`` grown by ``margin`` pixels (a square 8-neighbourhood)."""
    grown = np.asarray(masks, dtype=bool)
    for _ in range(margin):
        padded = np.pad(grown, [(0, 0)] * (grown.ndim - 2) + [(1, 1), (1, 1)])
        h, w = grown.shape[-2:]
        grown = np.zeros_like(grown)
        for dy in range(3):
            for dx in range(3):
                grown |= padded[..., dy:dy + h, dx:dx + w]
    return grown


def _shape_mask(kind: int, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # square
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if kind == 1:  # disk
        return dy**2 + dx**2 <= r**2
    if kind == 2:  # upward triangle
        top, bottom = -r, r * 0.8
        half_width = (dy - top) / (bottom - top) * r
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= half_width)
    # cross: two bars
    bar = r * 0.3
    return ((np.abs(dy) <= bar) & (np.abs(dx) <= r)) | ((np.abs(dx) <= bar) & (np.abs(dy) <= r))


def _texture(rng: np.random.Generator, size: int, cell: int = 8) -> np.ndarray:
    """Smooth coloured noise plus fine grain.

    A coarse random grid (one value per ``cell`` pixels) is interpolated
    bilinearly, so the background has no block edges for a saliency map to
    latch onto; the grain keeps it from being flat.
    """
    n = size // cell + 2
    coarse = rng.uniform(0.0, 0.6, (n, n, 3)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) / cell
    i = t.astype(np.int64)
    f = (t - i)[:, None, None]
    rows = coarse[i] * (1 - f) + coarse[i + 1] * f                  # [size, n, 3]
    smooth = rows[:, i] * (1 - f[None, :, :, 0]) + rows[:, i + 1] * f[None, :, :, 0]
    return smooth + rng.normal(0.0, 0.05, (size, size, 3)).astype(np.float32)


def make_shapes(n: int, size: int = 32, seed: int = 0) -> ShapesDataset:
    """Generates ``n`` labelled images of ``size`` x ``size`` pixels, deterministically.

    Classes are balanced (``i % 4``) and then shuffled with the seed.
    """
    if n < 1 or size < 16:
        raise ValueError(f"make_shapes: expected n >= 1 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    images = np.empty((n, size, size, 3), np.float32)
    regions = np.empty((n, size, size), bool)
    for i, kind in enumerate(labels):
        r = rng.uniform(0.17, 0.27) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        region = _shape_mask(int(kind), size, cy, cx, r)
        color = rng.uniform(0.55, 1.0, 3).astype(np.float32)
        img = _texture(rng, size)
        img[region] = color
        images[i] = np.clip(img, 0.0, 1.0)
        regions[i] = region
    return ShapesDataset(images, labels, regions)
