"""Quadrature rules and baseline checks of the path methods, alone (no TensorFlow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saliency_tf1.engine.checks import check_baselines
from saliency_tf1.engine.paths import RULES, quadrature

EXACT = math.e - 1.0  # integral_0^1 exp(a) da


def rule_error(rule: str, steps: int) -> float:
    alphas, weights = quadrature(rule, steps)
    return abs(float(np.sum(weights * np.exp(alphas))) - EXACT)


@pytest.mark.parametrize("rule", RULES)
def test_nodes_in_unit_interval_and_weights_sum_to_one(rule):
    for steps in (2, 3, 10, 301):
        alphas, weights = quadrature(rule, steps)
        assert alphas.shape == weights.shape == (steps,)
        assert alphas.dtype == weights.dtype == np.float64
        assert np.all((alphas >= 0) & (alphas <= 1)) and np.all(np.diff(alphas) > 0)
        assert np.all(weights > 0)
        np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)


def test_pair_rule_is_pairs_linspace_with_equal_weights():
    alphas, weights = quadrature("pair", 5)
    np.testing.assert_array_equal(alphas, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(weights, np.full(5, 0.2))
    np.testing.assert_array_equal(quadrature("pair", 1)[0], [0.0])  # as np.linspace(0, 1, 1)


def test_trapezoid_and_midpoint_nodes():
    alphas, weights = quadrature("trapezoid", 5)
    np.testing.assert_array_equal(alphas, np.linspace(0, 1, 5))
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    alphas, weights = quadrature("midpoint", 4)
    np.testing.assert_allclose(alphas, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(weights, np.full(4, 0.25))


@pytest.mark.parametrize("rule, order, refine", [
    ("pair", 1, lambda n: 2 * n),             # error ~ C/n
    ("trapezoid", 2, lambda n: 2 * n - 1),    # halves the spacing 1/(n-1)
    ("midpoint", 2, lambda n: 2 * n),
])
def test_error_order_on_a_known_integral(rule, order, refine):
    """Halving the spacing divides the error by 2**order (exp has a nonzero error constant)."""
    for steps in (32, 128, 512):
        observed = math.log2(rule_error(rule, steps) / rule_error(rule, refine(steps)))
        assert abs(observed - order) < 0.05, (rule, steps, observed)


def test_trapezoid_and_midpoint_error_constants():
    """Leading terms: trapezoid +h^2/12 (g'(1) - g'(0)), midpoint -h^2/24 (g'(1) - g'(0))."""
    steps = 200
    h_trap, h_mid = 1.0 / (steps - 1), 1.0 / steps
    for rule, predicted in (("trapezoid", h_trap**2 / 12 * EXACT),
                            ("midpoint", h_mid**2 / 24 * EXACT)):
        np.testing.assert_allclose(rule_error(rule, steps), predicted, rtol=1e-3)


def test_gauss_legendre_exact_to_degree_2n_minus_1_and_converges_fast():
    rng = np.random.default_rng(0)
    for steps in (1, 2, 3, 5, 8):
        alphas, weights = quadrature("gauss_legendre", steps)
        coeffs = rng.normal(size=2 * steps)  # degree 2n - 1
        exact = np.sum(coeffs / np.arange(1, 2 * steps + 1))
        np.testing.assert_allclose(np.sum(weights * np.polyval(coeffs[::-1], alphas)), exact,
                                   rtol=1e-12, atol=1e-12)
        # ... and for degree 2n its error is the known (n!)^4 / ((2n+1) ((2n)!)^2) on [0, 1].
        predicted = math.factorial(steps) ** 4 / ((2 * steps + 1)
                                                  * math.factorial(2 * steps) ** 2)
        np.testing.assert_allclose(1 / (2 * steps + 1) - np.sum(weights * alphas ** (2 * steps)),
                                   predicted, rtol=1e-4)
    errors = [rule_error("gauss_legendre", n) for n in (1, 2, 3, 4, 5)]
    assert all(b < a / 50 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-11


def test_cached_nodes_are_read_only():
    alphas, weights = quadrature("gauss_legendre", 40)
    assert quadrature("gauss_legendre", 40)[0] is alphas
    with pytest.raises(ValueError, match="read-only"):
        alphas[0] = 0.5
    with pytest.raises(ValueError, match="read-only"):
        weights[0] = 0.5


def test_bad_rule_and_steps():
    with pytest.raises(ValueError, match=r"rule: expected one of \['pair'"):
        quadrature("simpson", 10)
    with pytest.raises(ValueError, match="x_steps: expected a positive integer"):
        quadrature("pair", 0)
    with pytest.raises(TypeError, match="x_steps: expected a positive integer, got 2.5"):
        quadrature("midpoint", 2.5)
    with pytest.raises(ValueError, match="'trapezoid' rule needs at least 2 points, got 1"):
        quadrature("trapezoid", 1)


def test_check_baselines():
    inputs = np.ones((3, 4, 2), np.float32)
    zero = check_baselines(None, inputs)
    assert zero.shape == (1, 4, 2) and not zero.any()
    assert check_baselines(np.full((4, 2), 0.5), inputs).shape == (1, 4, 2)
    per_input = np.arange(24.0).reshape(3, 4, 2)
    np.testing.assert_array_equal(check_baselines(per_input, inputs), per_input)
    with pytest.raises(ValueError, match=r"x_baseline: expected shape \(4, 2\) \(one for all "
                                         r"inputs\) or \(3, 4, 2\) \(one per input\), got shape "
                                         r"\(2, 4\)"):
        check_baselines(np.zeros((2, 4)), inputs)
    with pytest.raises(ValueError, match=r"expected shape \(4, 2\) \(the input's shape\)"):
        check_baselines(np.zeros((1, 4, 2)), inputs[:1], per_input=False)
    with pytest.raises(ValueError, match="x_baseline: contains NaN or Inf"):
        check_baselines(np.full((4, 2), np.inf), inputs)
    with pytest.raises(TypeError, match="x_baseline: expected a real numeric array"):
        check_baselines(np.full((4, 2), "a"), inputs)
