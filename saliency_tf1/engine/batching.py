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
