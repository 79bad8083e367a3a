"""Top-k hit rate: how many of the positions a mask ranks first are the known informative ones.

For data whose informative features are known (a planted keyword, the
features a rule reads, a motif's time window): rank a sample's positions by
their score and count how many of the first ``k`` are informative. This is
the pointing game (Zhang et al., "Top-down Neural Attention by Excitation
Backprop", ECCV 2016) for ``k = 1``, and precision at ``k`` for more.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.checks import check_positive_int


def _as_2d(name: str, value: Any, shape: tuple[int, ...] | None, dtype: Any) -> np.ndarray:
    arr = np.asarray(value)
    if dtype is bool:
        if arr.dtype.kind not in "biu":
            raise TypeError(f"{name}: expected booleans (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    elif arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if shape is None:
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise ValueError(f"{name}: expected [F] or [N, F] scores, got shape {arr.shape}")
        return arr[None] if arr.ndim == 1 else arr
    if arr.shape == shape[1:]:
        return np.broadcast_to(arr, shape)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape[1:]} or {shape} (the scores'), got "
                         f"{arr.shape}")
    return arr


def top_k_hit_rate(
    scores: Any,
    relevant: Any,
    k: int | None = None,
    *,
    valid: Any = None,
    absolute: bool = True,
) -> np.ndarray:
    """The share of each sample's ``k`` top-ranked positions that are ``relevant``.

    Args:
      scores: ``[F]`` or ``[N, F]`` scores, one per position (a token, a
        feature, a time step; reduce a mask's channels first, e.g. with
        :func:`saliency_tf1.visualization.reduce_channels`).
      relevant: booleans of the scores' shape (or ``[F]`` for every sample):
        the known informative positions.
      k: how many top positions count; ``None``: as many as the sample has
        relevant positions (then the hit rate is precision and recall at once).
      valid: booleans like ``relevant``: the positions that may be ranked at
        all (e.g. a text's attention mask: padding never counts); ``None``: all.
      absolute: rank by ``|score|`` (magnitude); ``False`` ranks by the signed
        score (what speaks *for* the explained output).

    Returns:
      ``[N]`` floats in ``[0, 1]`` (``[1]`` for 1-D scores). Ties keep the
      earlier position first. A sample with fewer than ``k`` valid positions
      is scored on those it has.
    """
    s = _as_2d("scores", scores, None, float).astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: contains NaN or Inf values")
    rel = _as_2d("relevant", relevant, s.shape, bool)
    ok = np.ones(s.shape, bool) if valid is None else _as_2d("valid", valid, s.shape, bool)
    if k is not None:
        k = check_positive_int("k", k)
    ranked = np.where(ok, np.abs(s) if absolute else s, -np.inf)
    order = np.argsort(-ranked, axis=1, kind="stable")
    rates = np.empty(len(s))
    for i in range(len(s)):
        count = int((rel[i] & ok[i]).sum()) if k is None else k
        count = min(max(count, 1), int(ok[i].sum()))
        if count == 0:
            raise ValueError(f"valid: sample {i} has no valid position to rank")
        rates[i] = rel[i, order[i, :count]].mean()
    return rates


def chance_hit_rate(relevant: Any, valid: Any = None) -> np.ndarray:
    """The expected :func:`top_k_hit_rate` of a random ranking: relevant / valid positions.

    ``relevant``, ``valid``: ``[F]`` or ``[N, F]`` booleans; returns ``[N]``.
    """
    rel = _as_2d("relevant", relevant, None, bool)
    ok = np.ones(rel.shape, bool) if valid is None else _as_2d("valid", valid, rel.shape, bool)
    return (rel & ok).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
