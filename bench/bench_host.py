"""Host work of SmoothGrad and the path methods, against the speed of memory.

On a GPU the NumPy work around each ``session.run`` can cost as much as the
model (issue 20). This bench times, per call of 25 rows of one float32
``H x W x 3`` input, the two host steps that write a whole batch of rows:

* SmoothGrad's noisy copies ``x + stdev * z_k`` (:func:`engine.noise.noisy_copies`):
  allocating a new array on one thread (the old way), into a preallocated
  buffer (``out=``) on one thread, and on N threads (what :func:`fill_threads`
  picks, at least 2). All three give the same bits (checked below).
* Integrated Gradients' path rows ``x' + alpha_k (x - x')``: the old
  expression ``base + alphas[k][expand] * diffs[i]`` (float64 ``alphas``, so
  float64 temporaries and a float64 batch), and :func:`engine.paths.straight_rows`
  (float32, in place, cache-blocked) on one thread and on N threads (what
  :func:`row_threads` picks, at least 2).
* The gradient sum ``sum_k w_k g_k`` of a batch (``integrate_paths``' einsum).

The floor is ``np.copyto`` of the same bytes (25 float32 rows) into a
preallocated buffer: the least any of them can cost. Every time is a median
measured round-robin in one run, so load drifts hit all alike; "x floor" is
the ratio to the floor of the same size.

NumPy only (no TensorFlow). Run: ``python bench/bench_host.py [--sizes 224,64]
[--repeats 21]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from timing import interleaved_medians, print_table  # noqa: E402

from saliency_tf1.engine.noise import fill_threads, noise_key, noisy_copies  # noqa: E402
from saliency_tf1.engine.paths import row_threads, straight_rows  # noqa: E402

ROWS = 25
STDEV = 0.15


def cases(size: int) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """Name -> function, and name -> the threads it uses, for one input size."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    baseline = np.zeros((1, *x.shape), np.float32)
    diffs = x[None] - baseline
    key = noise_key(0)
    noisy = np.empty((ROWS, *x.shape), np.float32)
    rows = np.empty_like(noisy)
    source = rng.uniform(0, 1, noisy.shape).astype(np.float32)
    floor = np.empty_like(noisy)
    grads = rng.normal(size=noisy.shape).astype(np.float32)

    alphas = np.linspace(0.0, 1.0, ROWS)  # float64, as quadrature() returns them
    nodes = alphas.astype(np.float32)
    weights = np.full(ROWS, 1.0 / ROWS, np.float32)
    i, k = np.divmod(np.arange(ROWS), ROWS)
    expand = (slice(None), None, None, None)
    # The threads the code picks (half the CPUs, a floor of work each), and at
    # least 2, so that the threaded path is timed on small machines too.
    n_noise = max(2, fill_threads(ROWS, x.size))
    n_rows = max(2, row_threads(ROWS, x.size))

    # The claims of the table are checked, not assumed: same bits, same rows.
    reference = noisy_copies(x, STDEV, 0, ROWS, key, threads=1)
    for threads in (1, n_noise, 3):
        assert np.array_equal(noisy_copies(x, STDEV, 0, ROWS, key, out=noisy, threads=threads),
                              reference)
    old_rows = baseline[0] + alphas[k][expand] * diffs[i]
    new_rows = straight_rows(rows, i, k, baseline, diffs, nodes, threads=n_rows)
    assert np.abs(new_rows - old_rows).max() <= 2 * np.spacing(np.float32(1.0))

    fns = {
        "noise: allocating, 1 thread (old)":
            lambda: noisy_copies(x, STDEV, 0, ROWS, key, threads=1),
        "noise: out=, 1 thread":
            lambda: noisy_copies(x, STDEV, 0, ROWS, key, out=noisy, threads=1),
        "noise: out=, N threads":
            lambda: noisy_copies(x, STDEV, 0, ROWS, key, out=noisy, threads=n_noise),
        "IG rows: float64 expression (old)":
            lambda: baseline[0] + alphas[k][expand] * diffs[i],
        "IG rows: straight_rows, 1 thread":
            lambda: straight_rows(rows, i, k, baseline, diffs, nodes, threads=1),
        "IG rows: straight_rows, N threads":
            lambda: straight_rows(rows, i, k, baseline, diffs, nodes, threads=n_rows),
        "gradient sum (einsum)": lambda: np.einsum("r,r...->...", weights, grads),
        "floor: np.copyto": lambda: np.copyto(floor, source),
    }
    threads = {name: "1" for name in fns}
    threads["noise: out=, N threads"] = str(n_noise)
    threads["IG rows: straight_rows, N threads"] = str(n_rows)
    return fns, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="224,64", help="input sizes H = W (3 channels)")
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    print(f"NumPy {np.__version__}, {cpus} CPUs, {ROWS} rows per call, float32, "
          f"median of {args.repeats} round-robin runs")
    for size in (int(s) for s in args.sizes.split(",")):
        fns, threads = cases(size)
        times = interleaved_medians(fns, args.repeats)
        floor = times["floor: np.copyto"]
        mib = ROWS * size * size * 3 * 4 / 2**20
        rows = [[name, threads[name], 1e3 * t, t / floor] for name, t in times.items()]
        print_table(f"{size}x{size}x3 ({mib:.1f} MiB per call)",
                    ["step", "threads", "median ms", "x floor"], rows)


if __name__ == "__main__":
    main()
