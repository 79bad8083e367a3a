"""Small pure helpers of the path methods: quadrature rules and baselines.

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
from typing import Any

import numpy as np

from .base import check_array, check_positive_int

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


def check_baselines(x_baseline: Any, inputs: np.ndarray, *, per_input: bool = True) -> np.ndarray:
    """Validates the baseline(s) of a stack of inputs ``[N, ...]``.

    Args:
      x_baseline: ``None`` (zeros), one baseline of an input's shape, or, when
        ``per_input``, one per input (shape ``inputs.shape``).
      inputs: the validated inputs.
      per_input: whether a stack of baselines is allowed.

    Returns:
      An array ``[1 or N, ...]`` (``[1, ...]`` when one baseline serves all
      inputs), possibly a view of the caller's array: read it, never write it.
    """
    one = inputs.shape[1:]
    if x_baseline is None:
        return np.zeros((1, *one), dtype=np.result_type(inputs.dtype, np.float32))
    base = check_array("x_baseline", x_baseline, None, batched=False)
    if base.shape == one:
        return base[None]
    if per_input and base.shape == inputs.shape:
        return base
    expected = f"{one}" + (f" (one for all inputs) or {inputs.shape} (one per input)"
                           if per_input and len(inputs) > 1 else " (the input's shape)")
    raise ValueError(f"x_baseline: expected shape {expected}, got shape {base.shape}")
