"""Shared pieces of the metrics: input checks, importance maps, batched model calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..engine.batching import progress_bar
from ..engine.checks import check_array, check_positive_int

#: A model as the metrics see it: a batch of inputs ``[n, ...]`` in, one score
#: per row (``[n]``) or one score per class and row (``[n, classes]``) out.
ModelFunction = Callable[[np.ndarray], Any]


def importance_map(mask: Any, spatial_shape: tuple[int, ...], name: str = "mask",
                   *, absolute: bool = False) -> np.ndarray:
    """One importance value per pixel (float64), higher = more important.

    A mask of ``spatial_shape`` (``[H, W]``) is used as given (``|m|`` when
    ``absolute``); a mask with one more, channel, axis (``[H, W, C]``) is
    reduced to ``sum_c |m|``, as :func:`saliency_tf1.VisualizeImageGrayscale`
    shows it.
    """
    m = np.asarray(mask, dtype=np.float64)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: contains NaN or Inf values")
    if m.ndim == len(spatial_shape) + 1 and m.shape[:-1] == spatial_shape:
        return np.abs(m).sum(axis=-1)
    if m.shape != spatial_shape:
        raise ValueError(
            f"{name}: expected shape {spatial_shape} or {spatial_shape} + (channels,), "
            f"got {np.shape(mask)}"
        )
    return np.abs(m) if absolute else m


def check_images_masks(images: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validates a batch of images ``[N, H, W(, C)]`` and their masks; returns
    the images and the ``[N, H, W]`` importance maps."""
    images = check_array("images", images, None, batched=True)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"images: expected a batch of images [N, H, W] or [N, H, W, C], got shape "
            f"{images.shape}"
        )
    masks = np.asarray(masks)
    if masks.ndim == 0 or len(masks) != len(images):
        raise ValueError(
            f"masks: expected one mask per image ({len(images)}), got shape {masks.shape}"
        )
    spatial = images.shape[1:3]
    maps = np.stack([importance_map(m, spatial, f"masks[{i}]") for i, m in enumerate(masks)])
    return images, maps


def check_targets(targets: Any, n: int) -> np.ndarray | None:
    """``None`` or one non-negative class index per image."""
    if targets is None:
        return None
    arr = np.asarray(targets)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype.kind not in "iu" or arr.shape != (n,) or np.any(arr < 0):
        raise ValueError(
            f"targets: expected None, one class index or {n} non-negative class indices, "
            f"got {np.asarray(targets)!r}"
        )
    return arr.astype(np.int64)


def _check_outputs(out: Any, rows: int) -> np.ndarray:
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim not in (1, 2) or len(arr) != rows:
        raise ValueError(
            f"model: expected outputs of shape [{rows}] or [{rows}, classes] for a batch of "
            f"{rows} rows, got shape {arr.shape}"
        )
    return arr


def evaluate_rows(
    model: ModelFunction,
    rows: Iterable[np.ndarray],
    total: int,
    batch_size: int,
    progress: bool | None,
    desc: str,
) -> np.ndarray:
    """Runs ``model`` over a stream of ``total`` rows, at most ``batch_size`` per call.

    Rows are made lazily by the iterable, so only one batch of perturbed copies
    is in memory at a time. Returns the stacked outputs ``[total(, classes)]``.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    outputs: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    with progress_bar(progress, total, desc, auto_min=4 * batch_size) as bar:
        for row in rows:
            pending.append(row)
            if len(pending) == batch_size:
                outputs.append(_check_outputs(model(np.stack(pending)), len(pending)))
                bar.update(len(pending))
                pending = []
        if pending:
            outputs.append(_check_outputs(model(np.stack(pending)), len(pending)))
            bar.update(len(pending))
    if not outputs:
        return np.empty(0)
    if len({o.ndim for o in outputs}) > 1 or len({o.shape[1:] for o in outputs}) > 1:
        raise ValueError("model: returned outputs of different shapes for different batches")
    return np.concatenate(outputs)


def select_scores(outputs: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """Each row's score: ``outputs[i, targets[i]]`` for class scores, ``outputs[i]`` otherwise."""
    if outputs.ndim == 1:
        return outputs
    if targets is None:
        raise ValueError("targets: needed to pick a score from the model's class outputs")
    if np.any(targets >= outputs.shape[1]):
        raise ValueError(
            f"targets: class index {int(targets.max())} out of range for "
            f"{outputs.shape[1]} model outputs"
        )
    return outputs[np.arange(len(outputs)), targets]


def trapezoid(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Trapezoidal area under ``y`` (last axis) over ``x`` (numpy-version independent)."""
    y = np.asarray(y, dtype=np.float64)
    dx = np.diff(np.asarray(x, dtype=np.float64))
    return np.sum(dx * (y[..., 1:] + y[..., :-1]) / 2.0, axis=-1)
