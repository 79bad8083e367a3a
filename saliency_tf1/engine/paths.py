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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .backend import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, Backend
from .batching import chunk_bounds, progress_bar
from .checks import check_positive_int

RULES = ("pair", "trapezoid", "midpoint", "gauss_legendre")


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


def integrate_paths(
    backend: Backend,
    n_inputs: int,
    n_nodes: int,
    make_rows: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    feed: Any,
    sources: np.ndarray,
    batch_size: int,
    *,
    fetch_outputs: bool = False,
    progress: bool | None = None,
    desc: str = "path",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted sums of the gradients along the paths of many inputs.

    The rows form one stream, input-major: row ``r`` is node ``k = r % n_nodes``
    of input ``i = r // n_nodes``. The stream is cut into chunks of at most
    ``batch_size`` rows, one ``backend.evaluate`` each. A chunk's rows are built
    (in a worker thread) while the model runs the chunk before it, so at most
    two chunks exist at once, never ``n_inputs * n_nodes`` inputs.

    Args:
      backend: the model.
      n_inputs, n_nodes: the stream is ``n_inputs * n_nodes`` rows.
      make_rows: ``(i, k) -> (rows, weights)`` for the index arrays of one
        chunk; ``weights`` is one number per row (``[R]``) or one per feature
        (the rows' shape).
      feed: what ``backend.prepare_feed`` returned.
      sources: for each input, the index of the public call's input it derives from.
      batch_size: most rows per ``evaluate``.
      fetch_outputs: also return ``y`` at every row (same ``session.run``).
      progress: show a tqdm bar over rows (``None``: for long runs on a terminal).
      desc: the bar's label.

    Returns:
      ``(sums, outputs)``: ``sums[i] = sum_k weights(i, k) * gradient(row(i, k))``
      (float64; each chunk's share is summed in the gradients' precision) and,
      if ``fetch_outputs``, ``outputs[i, k] = y(row(i, k))``, else ``None``.
    """
    keys = [INPUT_OUTPUT_GRADIENTS] + ([OUTPUT_LAYER_VALUES] if fetch_outputs else [])
    sums = None
    outputs = np.empty((n_inputs, n_nodes)) if fetch_outputs else None
    total = n_inputs * n_nodes

    def build(bounds):
        i, k = np.divmod(np.arange(*bounds), n_nodes)
        return (i, k, *make_rows(i, k))

    chunks = list(chunk_bounds(total, batch_size))
    with progress_bar(progress, total, desc, auto_min=4 * batch_size) as bar, \
            ThreadPoolExecutor(max_workers=1) as builder:
        # The next chunk's rows are built while the model runs this one.
        pending = builder.submit(build, chunks[0])
        for n in range(len(chunks)):
            i, k, rows, weights = pending.result()
            if n + 1 < len(chunks):
                pending = builder.submit(build, chunks[n + 1])
            out = backend.evaluate(rows, keys, feed, sources[i])
            grads = out[INPUT_OUTPUT_GRADIENTS]
            if sums is None:
                sums = np.zeros((n_inputs, *grads.shape[1:]), dtype=np.float64)
            weights = weights.astype(np.result_type(grads.dtype, np.float32), copy=False)
            spec = "r,r...->..." if weights.ndim == 1 else "r...,r...->..."
            # Rows of one input are contiguous: one pass over each run of equal i.
            edges = np.flatnonzero(np.diff(i)) + 1
            for a, b in zip(np.r_[0, edges], np.r_[edges, len(i)]):
                sums[i[a]] += np.einsum(spec, weights[a:b], grads[a:b])
            if fetch_outputs:
                outputs[i, k] = out[OUTPUT_LAYER_VALUES]
            bar.update(len(i))
    return sums, outputs
