"""Cutting work into ``session.run`` batches: chunks, progress bars, SmoothGrad's noise.

Every method turns one input into many model rows (noise samples, path
points, occluded copies); these helpers make those rows a chunk at a time so
memory stays at ``batch_size`` rows whatever the total.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


def chunk_bounds(total: int, size: int) -> Iterator[tuple[int, int]]:
    """Yields ``(start, stop)`` covering ``range(total)`` in pieces of at most ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


def progress_bar(progress: bool | None, total: int, desc: str, *, auto_min: int = 20) -> Any:
    """A tqdm bar over ``total`` steps for long work; a silent one when turned off.

    Args:
      progress: ``True`` shows the bar, ``False`` hides it, ``None`` shows it
        when ``total >= auto_min`` and stderr is a terminal (tqdm's own rule).
      total: number of steps (``bar.update(k)`` advances by ``k``).
      desc: the bar's label.
    """
    from tqdm import tqdm

    # disable=None: tqdm hides the bar when stderr is not a terminal.
    disable = (None if total >= auto_min else True) if progress is None else not progress
    return tqdm(total=total, desc=desc, disable=disable, leave=False)


_NOISE_WORKERS = max(1, min(4, os.cpu_count() or 1))
_NOISE_POOL: ThreadPoolExecutor | None = None
_NOISE_POOL_LOCK = threading.Lock()


def _noise_pool() -> ThreadPoolExecutor:
    """A small shared thread pool: NumPy's generators release the GIL while filling."""
    global _NOISE_POOL
    with _NOISE_POOL_LOCK:
        if _NOISE_POOL is None:
            _NOISE_POOL = ThreadPoolExecutor(_NOISE_WORKERS, thread_name_prefix="saliency-noise")
        return _NOISE_POOL


def noisy_copies(
    x: np.ndarray, stdev: float, count: int, rng: np.random.Generator | None
) -> np.ndarray:
    """``count`` copies of ``x`` plus independent N(0, stdev^2) noise, shape ``[count, *x.shape]``.

    With ``rng=None`` the noise comes from NumPy's global state as float64, in
    the order PAIR draws it (one ``np.random.normal`` per sample, C order).
    Otherwise copy ``k`` draws its noise, in ``x``'s float precision (at least
    float32), from the ``k``-th child generator ``rng.spawn`` gives: successive
    calls on the same ``rng`` continue the sequence of children, so the noise
    of a sample does not depend on how the samples are chunked, and large
    draws are spread over a few threads.
    """
    shape = (count, *x.shape)
    if rng is None:
        return x + np.random.normal(0.0, stdev, shape)
    dtype = np.result_type(x.dtype, np.float32)
    noisy = np.empty(shape, dtype)
    children = rng.spawn(count)

    def fill(ks: range) -> None:
        for k in ks:
            children[k].standard_normal(out=noisy[k], dtype=dtype)

    pool = _noise_pool() if noisy.size >= 1 << 17 and count > 1 else None
    if pool is None:
        fill(range(count))
    else:  # one contiguous group of samples per worker
        bounds = np.linspace(0, count, min(count, _NOISE_WORKERS) + 1).astype(int)
        list(pool.map(fill, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    noisy *= dtype.type(stdev)
    noisy += x
    return noisy
