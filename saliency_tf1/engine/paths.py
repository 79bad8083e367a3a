"""The path methods' shared machinery: quadrature rules and the batched path integral.

A path method attributes ``f(x) - f(baseline)`` by integrating the gradient
along a path ``gamma(alpha)``, ``alpha`` in ``[0, 1]``. The integral over
``alpha`` is approximated by a quadrature rule: nodes ``alpha_k`` and weights
``w_k`` with ``sum_k w_k g(alpha_k) ~ integral_0^1 g(alpha) d alpha``.

Rules (``n`` = number of nodes = ``x_steps``):

* ``"pair"``: PAIR saliency's rule, ``alpha = linspace(0, 1, n)``, every
  weight ``1/n``. The weights sum to 1 but the nodes are spaced ``1/(n-1)``,
  so it is first order: error ``O(1/n)``.
* ``"trapezoid"``: ``alpha = linspace(0, 1, n)``, weights ``1/(n-1)`` with
  half weight at both ends; error ``O(1/n^2)``; needs ``n >= 2``.
* ``"midpoint"``: ``alpha = (k + 1/2)/n``, weights ``1/n``; error ``O(1/n^2)``.
* ``"gauss_legendre"``: Gauss–Legendre nodes and weights mapped to
  ``[0, 1]``; exact for polynomials of degree ``2n - 1``, error falls faster
  than any power of ``n`` for smooth integrands (not for piecewise-linear
  ReLU networks, where it is still at least as good as the midpoint rule in
  practice).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .backend import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, Backend
from .batching import chunk_bounds, progress_bar
from .checks import check_positive_int
from .noise import MIN_VALUES_PER_THREAD, split_rows

RULES = ("pair", "trapezoid", "midpoint", "gauss_legendre")

#: Most threads :func:`straight_rows` uses (it is memory-bound: a few saturate memory).
MAX_ROW_THREADS = 4
#: :func:`straight_rows` writes blocks of about this many values (1 MiB of float32)
#: with both its passes (multiply, add), so the second pass reads the cache.
#: This changes speed, never values.
_BLOCK_VALUES = 1 << 18


def check_rule(rule: Any) -> str:
    """Returns ``rule`` if it names a known quadrature rule, else raises ValueError."""
    if not isinstance(rule, str) or rule not in RULES:
        raise ValueError(f"rule: expected one of {list(RULES)}, got {rule!r}")
    return rule


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha`` in ``[0, 1]`` and weights ``w`` of a rule with ``steps`` points.

    ``sum(w * g(alpha))`` approximates ``integral_0^1 g``. Both arrays are
    float64 of length ``steps``, nodes in increasing order.

    Args:
      rule: one of :data:`RULES` (see the module docstring).
      steps: number of nodes (``x_steps``), >= 1 (>= 2 for ``"trapezoid"``).

    Returns:
      ``(alphas, weights)``, read-only (cached: Gauss–Legendre nodes cost
      an eigenvalue problem).
    """
    return _quadrature(check_rule(rule), check_positive_int("x_steps", steps))


@functools.lru_cache(maxsize=32)
def _quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    alphas, weights = _nodes(rule, steps)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


def _nodes(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    if rule == "pair":
        return np.linspace(0.0, 1.0, steps), np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError(f"x_steps: the 'trapezoid' rule needs at least 2 points, got {steps}")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return np.linspace(0.0, 1.0, steps), weights
    if rule == "midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1.0) / 2.0, weights / 2.0


def runs(index: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in ``index`` (a chunk's ``i``)."""
    edges = np.flatnonzero(np.diff(index)) + 1
    return list(zip(np.r_[0, edges].tolist(), np.r_[edges, len(index)].tolist()))


def row_threads(rows: int, values: int) -> int:
    """Threads :func:`straight_rows` uses for ``rows`` rows of ``values`` values each.

    Half the CPUs (the model runs on the others while the rows are built), at
    most :data:`MAX_ROW_THREADS`, at least ``4 * MIN_VALUES_PER_THREAD`` values
    each: one thread for small chunks and on machines of 2 CPUs.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    per_thread = 4 * MIN_VALUES_PER_THREAD
    return max(1, min(cpus // 2, MAX_ROW_THREADS, rows, rows * values // per_thread))


def straight_rows(out: np.ndarray, i: np.ndarray, k: np.ndarray, starts: np.ndarray,
                  diffs: np.ndarray, nodes: np.ndarray, *,
                  threads: int | None = None) -> np.ndarray:
    """Points on straight paths: ``out[r] = starts[i[r]] + nodes[k[r]] * diffs[i[r]]``.

    ``starts`` is ``[1 or N, ...]`` (one start for all inputs, or one each),
    ``diffs`` ``[N, ...]``, ``nodes`` the ``alpha`` of each node, ``out``
    ``[len(i), ...]``. The arithmetic is in ``out``'s dtype: ``nodes`` should
    already be in it (cast once per call, not per chunk), and no temporary is
    made. One ``multiply`` and one ``add`` per block of rows of one input
    (blocks of about ``2**18`` values, so the add reads the cache); with
    ``threads`` (``None``: :func:`row_threads`) the rows are split over
    threads. Neither changes a value. Returns ``out``.
    """
    expand = (slice(None),) + (None,) * (out.ndim - 1)
    shared = len(starts) == 1
    size = int(np.prod(out.shape[1:], dtype=np.int64))
    block = max(1, _BLOCK_VALUES // max(size, 1))

    def fill(a: int, b: int) -> None:
        for start, stop in runs(i[a:b]):
            row = int(i[a + start])
            diff, base = diffs[row], starts[0 if shared else row]
            for c in range(a + start, a + stop, block):
                part = out[c: min(c + block, a + stop)]
                np.multiply(diff, nodes[k[c: c + len(part)]][expand], out=part)
                part += base

    if threads is None:
        threads = row_threads(len(i), size)
    split_rows(fill, len(i), threads)
    return out


def integrate_paths(
    backend: Backend,
    n_inputs: int,
    n_nodes: int,
    fill_rows: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    feed: Any,
    sources: np.ndarray,
    batch_size: int,
    *,
    row_shape: tuple[int, ...],
    dtype: Any,
    fetch_outputs: bool = False,
    progress: bool | None = None,
    desc: str = "path",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted sums of the gradients along the paths of many inputs.

    The rows form one stream, input-major: row ``r`` is node ``k = r % n_nodes``
    of input ``i = r // n_nodes``. The stream is cut into chunks of at most
    ``batch_size`` rows, one ``backend.evaluate`` each. The rows live in two
    buffers of ``batch_size`` rows allocated once per call: a worker thread
    fills one (``fill_rows``) while the model runs on the other, and adds each
    chunk's weighted gradients to the sums while the model runs the next
    chunk. A buffer is refilled only after the model has returned on it and
    its chunk's sums are done, so at most two chunks' rows (and two chunks'
    gradients) exist at once, never ``n_inputs * n_nodes`` rows.

    Args:
      backend: the model.
      n_inputs, n_nodes: the stream is ``n_inputs * n_nodes`` rows.
      fill_rows: ``(i, k, out) -> weights`` for the index arrays of one chunk:
        writes row ``(i[r], k[r])`` into ``out[r]`` (``out`` is a C-contiguous
        ``[len(i), *row_shape]`` buffer of ``dtype``, its old values garbage)
        and returns the weights: one per row (``[R]``) or one per value
        (``out``'s shape). It is called once per chunk, in chunk order, in one
        thread; the weights it returns for chunk ``n`` are read before it is
        called for chunk ``n + 2``, so it may return them in two buffers of
        its own, used alternately.
      feed: what ``backend.prepare_feed`` returned.
      sources: for each input, the index of the public call's input it derives from.
      batch_size: most rows per ``evaluate``.
      row_shape: the shape of one row.
      dtype: the rows' dtype (the path's arithmetic; ``evaluate`` casts to
        the model's).
      fetch_outputs: also return ``y`` at every row (same ``session.run``).
      progress: show a tqdm bar over rows (``None``: for long runs on a terminal).
      desc: the bar's label.

    Returns:
      ``(sums, outputs)``: ``sums[i] = sum_k weights(i, k) * gradient(row(i, k))``
      (float64; each chunk's share is summed in the gradients' precision) and,
      if ``fetch_outputs``, ``outputs[i, k] = y(row(i, k))``, else ``None``.
    """
    keys = [INPUT_OUTPUT_GRADIENTS] + ([OUTPUT_LAYER_VALUES] if fetch_outputs else [])
    total = n_inputs * n_nodes
    chunks = list(chunk_bounds(total, batch_size))
    rows_per_buffer = chunks[0][1] - chunks[0][0]
    buffers = [np.empty((rows_per_buffer, *row_shape), dtype)
               for _ in range(min(2, len(chunks)))]
    state: dict[str, np.ndarray | None] = {"sums": None}
    outputs = np.empty((n_inputs, n_nodes)) if fetch_outputs else None

    def build(n):
        i, k = np.divmod(np.arange(*chunks[n]), n_nodes)
        rows = buffers[n % 2][: len(i)]
        return i, k, rows, fill_rows(i, k, rows)

    def accumulate(i, k, weights, out):
        grads = out[INPUT_OUTPUT_GRADIENTS]
        sums = state["sums"]
        if sums is None:
            sums = state["sums"] = np.zeros((n_inputs, *grads.shape[1:]), dtype=np.float64)
        weights = np.asarray(weights).astype(np.result_type(grads.dtype, np.float32),
                                             copy=False)
        spec = "r,r...->..." if weights.ndim == 1 else "r...,r...->..."
        # Rows of one input are contiguous: one pass over each run of equal i.
        edges = np.flatnonzero(np.diff(i)) + 1
        for a, b in zip(np.r_[0, edges], np.r_[edges, len(i)]):
            sums[i[a]] += np.einsum(spec, weights[a:b], grads[a:b])
        if fetch_outputs:
            outputs[i, k] = out[OUTPUT_LAYER_VALUES]

    with progress_bar(progress, total, desc, auto_min=4 * batch_size) as bar, \
            ThreadPoolExecutor(max_workers=1) as worker:
        # One worker, first in first out: while the model runs chunk n it adds
        # up chunk n - 1's gradients, then runs build(n + 1). build(n + 1)
        # reuses chunk n - 1's buffer: it is queued after chunk n - 1's
        # evaluate returned and after its sums (the gradients may be views of
        # the rows).
        pending = worker.submit(build, 0)
        summing: list = []
        for n in range(len(chunks)):
            i, k, rows, weights = pending.result()
            if len(summing) == 2:  # chunk n - 2's sums, queued before build(n): done
                summing.pop(0).result()  # raises its error, if any
            if n + 1 < len(chunks):
                pending = worker.submit(build, n + 1)
            out = backend.evaluate(rows, keys, feed, sources[i])
            summing.append(worker.submit(accumulate, i, k, weights, out))
            bar.update(len(i))
        for future in summing:
            future.result()
    return state["sums"], outputs
