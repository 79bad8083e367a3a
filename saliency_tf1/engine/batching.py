"""Cutting work into ``session.run`` batches: chunks and progress bars.

Every method turns one input into many model rows (noise samples, path
points, occluded copies); these helpers make those rows a chunk at a time so
memory stays at ``batch_size`` rows whatever the total.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def chunk_bounds(total: int, size: int) -> Iterator[tuple[int, int]]:
    """Yields ``(start, stop)`` covering ``range(total)`` in pieces of at most ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)


class _SilentBar:
    """The bar when none is shown (it needs no tqdm)."""

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Ignores progress."""


def progress_bar(progress: bool | None, total: int, desc: str, *, auto_min: int = 20) -> Any:
    """A tqdm bar over ``total`` steps for long work; a silent one when turned off.

    Args:
      progress: ``True`` shows the bar, ``False`` hides it, ``None`` shows it
        when ``total >= auto_min`` and stderr is a terminal (tqdm's own rule).
      total: number of steps (``bar.update(k)`` advances by ``k``).
      desc: the bar's label.

    A hidden bar needs no tqdm, so the methods run where it is not installed
    (a bare GPU machine running ``bench/bench_gpu.py``); ``progress=True``
    then raises ImportError.
    """
    # disable=None: tqdm hides the bar when stderr is not a terminal.
    disable = (None if total >= auto_min else True) if progress is None else not progress
    if disable is True:
        return _SilentBar()
    try:
        from tqdm import tqdm
    except ImportError:
        if progress:
            raise ImportError("progress=True: the progress bar needs tqdm "
                              "(pip install tqdm)") from None
        return _SilentBar()
    return tqdm(total=total, desc=desc, disable=disable, leave=False)
