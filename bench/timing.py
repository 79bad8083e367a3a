"""Timing and tables for the benchmarks, with no TensorFlow (bench_host.py runs on NumPy alone).

Every ratio a benchmark prints is of two medians measured in the same run,
round-robin, so the machine's speed and load drifts cancel out.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def median_time(fn: Callable[[], Any], repeats: int = 7, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int = 7) -> dict[str, float]:
    """Median times of several functions measured round-robin, so load drifts hit all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """Prints a fixed-width table (floats with 3 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    cells = [header] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        padded = (c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))
        print("  ".join(padded))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()
