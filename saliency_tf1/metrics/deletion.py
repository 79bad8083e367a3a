"""Deletion and insertion curves and their areas (Petsiuk et al., RISE, 2018).

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, arXiv:1806.07421, section 4.1.

*Deletion* removes the pixels from the image in the order of the mask
(most important first), replacing them with a baseline, and records the
model's score of the target class after each step: a faithful mask makes it
fall fast (low area under the curve is good). *Insertion* starts from the
baseline (by default a blurred copy) and puts the image's pixels back in the
same order: a faithful mask makes the score rise fast (high area is good).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.blur import gaussian_blur
from ..engine.checks import check_finite_number, check_positive_int
from ._common import (
    ModelFunction,
    check_images_masks,
    check_targets,
    evaluate_rows,
    select_scores,
    trapezoid,
)


@dataclass
class PerturbationCurves:
    """Deletion or insertion curves of a batch of images.

    Attributes:
      kind: ``"deletion"`` or ``"insertion"``.
      fractions: ``[steps + 1]`` fraction of the pixels deleted (inserted) at each point.
      scores: ``[N, steps + 1]`` the model's score of each image's target at each point.
      auc: ``[N]`` area under each image's curve (trapezoid rule over ``fractions``).
      targets: ``[N]`` the class scored per image (``None`` for a model with one output).
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    targets: np.ndarray | None

    @property
    def mean_auc(self) -> float:
        """The mean area over the images."""
        return float(np.mean(self.auc))

    @property
    def mean_curve(self) -> np.ndarray:
        """The mean score at each point, ``[steps + 1]``."""
        return self.scores.mean(axis=0)


def pixel_ranks(importance: np.ndarray) -> np.ndarray:
    """Each pixel's rank in the order of decreasing importance (0 = most important).

    Ties keep the pixels' raster order, so the order is deterministic.
    """
    flat = importance.reshape(-1)
    order = np.argsort(-flat, kind="stable")
    ranks = np.empty(flat.size, np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(importance.shape)


def _fills(images: np.ndarray, baseline: Any, blur_sigma: float) -> np.ndarray:
    """The baseline image of each input, ``images.shape``, in the images' dtype."""
    if isinstance(baseline, str):
        if baseline == "blur":
            # Mirrored borders, kernel radius ceil(3 sigma); float64.
            fill = np.stack([gaussian_blur(img, blur_sigma, mode="reflect",
                                           radius=math.ceil(3 * blur_sigma)) for img in images])
        elif baseline == "mean":
            fill = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True, dtype=np.float64),
                                   images.shape)
        else:
            raise ValueError(
                f"baseline: expected a number, an array, 'blur' or 'mean', got {baseline!r}"
            )
    else:
        fill = np.asarray(baseline, dtype=np.float64)
        if fill.dtype.kind not in "biuf" or not np.all(np.isfinite(fill)):
            raise ValueError("baseline: expected finite numbers")
        try:
            fill = np.broadcast_to(fill, images.shape)
        except ValueError:
            raise ValueError(
                f"baseline: shape {fill.shape} does not broadcast to the images' {images.shape}"
            ) from None
    if images.dtype.kind in "iu":
        fill = np.round(fill)
    return fill.astype(images.dtype)


def perturbation_curves(
    model: ModelFunction,
    images: Any,
    masks: Any,
    *,
    kind: str,
    baseline: Any,
    targets: Any = None,
    steps: int = 100,
    blur_sigma: float = 5.0,
    batch_size: int = 64,
    progress: bool | None = None,
) -> PerturbationCurves:
    """Deletion (``kind="deletion"``) or insertion curves; see :func:`deletion`."""
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind: expected 'deletion' or 'insertion', got {kind!r}")
    images, maps = check_images_masks(images, masks)
    steps = check_positive_int("steps", steps)
    blur_sigma = check_finite_number("blur_sigma", blur_sigma, minimum=0.0)
    targets = check_targets(targets, len(images))
    fills = _fills(images, baseline, blur_sigma)
    n, pixels = len(images), maps[0].size
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(np.int64)
    ranks = np.stack([pixel_ranks(m) for m in maps])
    trailing = (1,) * (images.ndim - 3)

    originals = evaluate_rows(model, iter(images), n, batch_size, False, kind)
    if targets is None and originals.ndim == 2:
        targets = np.argmax(originals, axis=1)
    # The original image is the curve's first point for deletion, last for insertion.
    moving = range(1, steps + 1) if kind == "deletion" else range(steps)

    def rows():
        for i in range(n):
            for s in moving:
                changed = (ranks[i] < counts[s]).reshape(ranks[i].shape + trailing)
                if kind == "deletion":
                    yield np.where(changed, fills[i], images[i])
                else:
                    yield np.where(changed, images[i], fills[i])

    outputs = evaluate_rows(model, rows(), n * steps, batch_size, progress, kind)
    if outputs.ndim != originals.ndim:
        raise ValueError("model: returned outputs of different shapes for different batches")
    row_targets = None if targets is None else np.repeat(targets, steps)
    moved = select_scores(outputs, row_targets).reshape(n, steps)
    first = select_scores(originals, targets)[:, None]
    scores = np.hstack([first, moved] if kind == "deletion" else [moved, first])
    fractions = counts / pixels
    return PerturbationCurves(kind, fractions, scores, trapezoid(scores, fractions), targets)


def deletion(
    model: ModelFunction,
    images: Any,
    masks: Any,
    *,
    baseline: Any = 0.0,
    targets: Any = None,
    steps: int = 100,
    blur_sigma: float = 5.0,
    batch_size: int = 64,
    progress: bool | None = None,
) -> PerturbationCurves:
    """The deletion curve of each image and its area (lower is better).

    Pixels are deleted (set to the baseline, all channels at once) in the
    order of the mask, most important first, in ``steps`` equal steps; the
    model's score of the target class is recorded before the first and after
    each step. RISE (Petsiuk et al., 2018) deletes to black (``baseline=0``).

    Args:
      model: ``rows -> [n]`` or ``[n, classes]`` scores (see
        :mod:`saliency_tf1.metrics.model`; use probabilities, e.g.
        :func:`~saliency_tf1.metrics.tf1_model_function`).
      images: ``[N, H, W]`` or ``[N, H, W, C]`` model inputs.
      masks: ``[N, H, W]`` importance maps (used as given) or masks of the
        images' shape (reduced to ``sum_c |m|``).
      baseline: the fill: a number, an array broadcasting to one image or to
        ``images``, ``"blur"`` (Gaussian blur of the image, ``blur_sigma``
        pixels) or ``"mean"`` (each image's mean colour).
      targets: the class scored per image (one int or ``[N]``); default: the
        class the model predicts on the original image.
      steps: number of deletion steps (``steps + 1`` points on the curve).
      blur_sigma: the blur's standard deviation in pixels.
      batch_size: most rows per model call (changes only how the work is run).
      progress: show a progress bar (``None``: for long runs on a terminal).

    Returns:
      :class:`PerturbationCurves` with per-image curves and areas.
    """
    return perturbation_curves(model, images, masks, kind="deletion", baseline=baseline,
                               targets=targets, steps=steps, blur_sigma=blur_sigma,
                               batch_size=batch_size, progress=progress)


def insertion(
    model: ModelFunction,
    images: Any,
    masks: Any,
    *,
    baseline: Any = "blur",
    targets: Any = None,
    steps: int = 100,
    blur_sigma: float = 5.0,
    batch_size: int = 64,
    progress: bool | None = None,
) -> PerturbationCurves:
    """The insertion curve of each image and its area (higher is better).

    Starts from the baseline (RISE: a blurred copy of the image) and puts the
    image's pixels back in the order of the mask, most important first, in
    ``steps`` equal steps, recording the score of the target class at each
    point. Arguments as for :func:`deletion`.
    """
    return perturbation_curves(model, images, masks, kind="insertion", baseline=baseline,
                               targets=targets, steps=steps, blur_sigma=blur_sigma,
                               batch_size=batch_size, progress=progress)
