"""The path methods' engine: quadrature rules, baseline checks, path rows, the batched integral.

The rules, checks and rows are NumPy alone; ``integrate_paths`` is checked over
a recording NumPy backend (its buffer discipline) and over a real TF1 session
(the analytic model's known integral).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from saliency_tf1.engine import paths
from saliency_tf1.engine.backend import (
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    Backend,
    TF1Backend,
)
from saliency_tf1.engine.checks import check_baselines
from saliency_tf1.engine.paths import (
    RULES,
    integrate_paths,
    quadrature,
    row_threads,
    runs,
    straight_rows,
)

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


# --- straight path rows ---------------------------------------------------------------

def chunk(n_inputs, n_nodes, a, b):
    return np.divmod(np.arange(a, b), n_nodes)


def old_rows(starts, diffs, alphas, i, k):
    """The rows as the path methods built them before: float64 ``alphas``, then rounded."""
    base = starts[0] if len(starts) == 1 else starts[i]
    expand = (slice(None),) + (None,) * (diffs.ndim - 1)
    return base + alphas[k][expand] * diffs[i]


@pytest.mark.parametrize("shared", [True, False])
def test_straight_rows_are_the_path_points(shared):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(3, 6, 5, 2)).astype(np.float32)
    starts = rng.normal(size=(1 if shared else 3, 6, 5, 2)).astype(np.float32)
    diffs = xs - starts
    alphas = quadrature("gauss_legendre", 7)[0]
    i, k = chunk(3, 7, 4, 19)  # crosses from input 0 to 1 to 2
    out = np.full((15, 6, 5, 2), np.nan, np.float32)
    assert straight_rows(out, i, k, starts, diffs, alphas.astype(np.float32)) is out
    reference = old_rows(starts, diffs, alphas, i, k)  # float64
    # float32 arithmetic: within a unit or two in the last place of the float64 value.
    np.testing.assert_allclose(out, reference, rtol=0, atol=float(
        2 * np.spacing(np.abs(reference).max().astype(np.float32))))
    # where alpha * diff is exact (0, 1/2, 1) the rows are the old ones to the bit
    exact = np.array([0.0, 0.5, 1.0])
    i, k = chunk(3, 3, 0, 9)
    straight_rows(out[:9], i, k, starts, diffs, exact.astype(np.float32))
    np.testing.assert_array_equal(out[:9], old_rows(starts, diffs, exact, i, k).astype(np.float32))
    np.testing.assert_array_equal(out[:9:3], np.broadcast_to(starts, (3, 6, 5, 2)))


def test_straight_rows_in_float64_are_the_old_rows_to_the_bit():
    rng = np.random.default_rng(1)
    xs, starts = rng.normal(size=(2, 10)), rng.normal(size=(1, 10))
    alphas = quadrature("pair", 9)[0]
    i, k = chunk(2, 9, 0, 18)
    out = np.empty((18, 10))
    straight_rows(out, i, k, starts, xs - starts, alphas)
    np.testing.assert_array_equal(out, old_rows(starts, xs - starts, alphas, i, k))


@pytest.mark.parametrize("threads", [2, 3, 5, 64])
def test_straight_rows_threads_change_no_value(threads):
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(4, 9, 9, 3)).astype(np.float32)
    starts = rng.normal(size=(4, 9, 9, 3)).astype(np.float32)
    nodes = np.linspace(0, 1, 11).astype(np.float32)
    i, k = chunk(4, 11, 5, 38)
    one = straight_rows(np.empty((33, 9, 9, 3), np.float32), i, k, starts, xs - starts, nodes,
                        threads=1)
    many = straight_rows(np.empty((33, 9, 9, 3), np.float32), i, k, starts, xs - starts, nodes,
                         threads=threads)
    np.testing.assert_array_equal(many, one)


def test_straight_rows_blocks_change_no_value(monkeypatch):
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(2, 7, 7, 3)).astype(np.float32)
    starts = np.zeros((1, 7, 7, 3), np.float32)
    nodes = quadrature("midpoint", 9)[0].astype(np.float32)
    i, k = chunk(2, 9, 3, 17)
    expected = straight_rows(np.empty((14, 7, 7, 3), np.float32), i, k, starts, xs, nodes)
    for block in (1, 147, 3 * 147 + 1, 1 << 30):  # a row is 147 values
        monkeypatch.setattr(paths, "_BLOCK_VALUES", block)
        np.testing.assert_array_equal(
            straight_rows(np.empty((14, 7, 7, 3), np.float32), i, k, starts, xs, nodes),
            expected)


def test_runs_and_row_threads(monkeypatch):
    assert runs(np.array([0, 0, 1, 1, 1, 4])) == [(0, 2), (2, 5), (5, 6)]
    assert runs(np.array([3])) == [(0, 1)]
    monkeypatch.setattr(paths.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert row_threads(25, 16 * 16 * 3) == 1  # small chunks: no thread
    assert row_threads(25, 224 * 224 * 3) == paths.MAX_ROW_THREADS
    assert row_threads(2, 10**8) == 2
    monkeypatch.setattr(paths.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert row_threads(25, 224 * 224 * 3) == 1  # 2 CPUs: the model keeps one


# --- integrate_paths ------------------------------------------------------------------

class RecordingBackend(Backend):
    """``gradient(row) = cos(row)``, ``y(row) = sum(sin(row))``; records what it is fed.

    Each evaluate sleeps a little and checks that nobody wrote into its rows
    meanwhile (the worker fills the other buffer then).
    """

    keys = frozenset([INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES])

    def __init__(self, alias: bool = False, fail_at: int | None = None):
        self.alias, self.fail_at = alias, fail_at
        self.fed, self.pointers, self.overwritten = [], set(), 0

    def evaluate(self, rows, keys, feed=None, sources=None):
        if len(self.fed) == self.fail_at:
            raise RuntimeError("model failed")
        before = rows.copy()
        self.fed.append(before)
        self.pointers.add(rows.__array_interface__["data"][0])
        time.sleep(0.005)
        self.overwritten += not np.array_equal(rows, before)
        out = {OUTPUT_LAYER_VALUES: np.sin(rows).reshape(len(rows), -1).sum(1)}
        if self.alias:  # the gradient is the rows' own memory (the core API allows it)
            np.cos(rows, out=rows)
            out[INPUT_OUTPUT_GRADIENTS] = rows
        else:
            out[INPUT_OUTPUT_GRADIENTS] = np.cos(rows)
        return out


def ig_stream(n_inputs=3, n_nodes=7, shape=(4, 5), per_value=False, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n_inputs, *shape)).astype(np.float32)
    starts = rng.normal(size=(n_inputs, *shape)).astype(np.float32)
    alphas, weights = quadrature("midpoint", n_nodes)
    nodes = alphas.astype(np.float32)
    calls = []

    def fill_rows(i, k, out):
        calls.append((threading.current_thread(), int(i[0] * n_nodes + k[0]), len(i)))
        straight_rows(out, i, k, starts, xs - starts, nodes)
        if per_value:
            return np.broadcast_to(weights[k].reshape(-1, *[1] * len(shape)), out.shape) * xs[i]
        return weights[k]

    rows = np.concatenate([straight_rows(np.empty((n_nodes, *shape), np.float32),
                                         np.full(n_nodes, n), np.arange(n_nodes), starts,
                                         xs - starts, nodes) for n in range(n_inputs)])
    w = np.tile(weights, n_inputs).reshape(-1, *[1] * len(shape))
    w = (w * xs.repeat(n_nodes, axis=0)) if per_value else w
    expected = (w * np.cos(rows)).reshape(n_inputs, n_nodes, *shape).sum(1)
    outputs = np.sin(rows).reshape(n_inputs, n_nodes, -1).sum(-1)
    return fill_rows, calls, expected, outputs, xs.shape[1:]


@pytest.mark.parametrize("batch_size", [1, 3, 7, 8, 100])
@pytest.mark.parametrize("per_value", [False, True])
def test_integrate_paths_sums_and_outputs(batch_size, per_value):
    fill_rows, calls, expected, outputs, shape = ig_stream(per_value=per_value)
    backend = RecordingBackend()
    sums, got_outputs = integrate_paths(
        backend, 3, 7, fill_rows, None, np.zeros(3, np.int64), batch_size, row_shape=shape,
        dtype=np.float32, fetch_outputs=True)
    assert sums.dtype == np.float64
    np.testing.assert_allclose(sums, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_outputs, outputs, rtol=1e-5, atol=1e-5)
    chunks = math.ceil(21 / batch_size)
    # fill_rows: once per chunk, in order, in one worker thread (not the caller's)
    assert [(start, n) for _, start, n in calls] == [
        (a, min(batch_size, 21 - a)) for a in range(0, 21, batch_size)]
    assert len({id(thread) for thread, _, _ in calls}) == 1
    assert calls[0][0] is not threading.current_thread()
    # two buffers, allocated once, never written while the model reads them
    assert len(backend.fed) == chunks and len(backend.pointers) == min(2, chunks)
    assert backend.overwritten == 0


def test_integrate_paths_gradients_that_alias_the_rows():
    fill_rows, _, expected, _, shape = ig_stream()
    backend = RecordingBackend(alias=True)
    sums, outputs = integrate_paths(backend, 3, 7, fill_rows, None, np.zeros(3, np.int64), 4,
                                    row_shape=shape, dtype=np.float32)
    assert outputs is None
    np.testing.assert_allclose(sums, expected, rtol=1e-5, atol=1e-6)


def test_integrate_paths_weights_in_two_alternating_buffers():
    """The documented guarantee: chunk n's weights are read before chunk n + 2 is filled."""
    fill_rows, _, expected, _, shape = ig_stream(per_value=True)
    buffers = [np.empty((3, *shape), np.float32) for _ in range(2)]
    count = [0]

    def reusing(i, k, out):
        weights = buffers[count[0] % 2][: len(i)]
        count[0] += 1
        weights[...] = fill_rows(i, k, out)
        return weights

    sums, _ = integrate_paths(RecordingBackend(), 3, 7, reusing, None, np.zeros(3, np.int64), 3,
                              row_shape=shape, dtype=np.float32)
    np.testing.assert_allclose(sums, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("where", ["fill_rows", "evaluate"])
def test_integrate_paths_errors_reach_the_caller(where):
    fill_rows, _, _, _, shape = ig_stream()

    def failing(i, k, out):
        if i[0] * 7 + k[0] >= 6:
            raise ValueError("no row")
        return fill_rows(i, k, out)

    backend = RecordingBackend(fail_at=2 if where == "evaluate" else None)
    with pytest.raises(ValueError if where == "fill_rows" else RuntimeError):
        integrate_paths(backend, 3, 7, failing if where == "fill_rows" else fill_rows, None,
                        np.zeros(3, np.int64), 3, row_shape=shape, dtype=np.float32)


def test_integrate_paths_over_a_tf1_session_gives_the_known_integral(analytic):
    """IG of ``5 x0 + x1**2 + sin(x2)``: ``(x - b) * mean gradient`` per term, exactly known."""
    backend = TF1Backend(analytic.graph, analytic.session, analytic.y, analytic.x)
    ops = len(analytic.graph.get_operations())
    xs = np.array([[1.0, 2.0, 3.0], [-0.5, 0.25, 1.5]], np.float32)
    starts = np.array([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]], np.float32)
    alphas, weights = quadrature("gauss_legendre", 8)
    nodes = alphas.astype(np.float32)

    def fill_rows(i, k, out):
        straight_rows(out, i, k, starts, xs - starts, nodes)
        return weights[k]

    feed = backend.prepare_feed(None, 2)
    sums, _ = integrate_paths(backend, 2, 8, fill_rows, feed, np.arange(2), 5,
                              row_shape=(3,), dtype=np.float32)
    attribution = sums * (xs - starts)
    exact = np.stack([5 * (xs[:, 0] - starts[:, 0]), xs[:, 1] ** 2 - starts[:, 1] ** 2,
                      np.sin(xs[:, 2]) - np.sin(starts[:, 2])], axis=1)
    np.testing.assert_allclose(attribution, exact, rtol=1e-5, atol=1e-6)
    assert len(analytic.graph.get_operations()) == ops


def test_integrated_gradients_feeds_float32_rows_from_two_buffers():
    """The IG kernel's rows: float32 for float32 inputs (no float64 batch), two buffers."""
    from saliency_tf1.methods.integrated_gradients import integrated_gradients

    rng = np.random.default_rng(4)
    xs = rng.normal(size=(2, 4, 5)).astype(np.float32)
    starts = rng.normal(size=(1, 4, 5)).astype(np.float32)
    alphas, weights = quadrature("trapezoid", 6)
    backend = RecordingBackend()
    masks, errors = integrated_gradients(backend, xs, starts, np.zeros(2, np.int64), None, 5,
                                         alphas, weights, with_error=True)
    assert all(rows.dtype == np.float32 for rows in backend.fed)
    assert len(backend.pointers) == 2 and backend.overwritten == 0
    fed = np.concatenate(backend.fed)
    i, k = chunk(2, 6, 0, 12)
    np.testing.assert_allclose(fed, old_rows(starts, xs - starts, alphas, i, k), rtol=0,
                               atol=float(2 * np.spacing(np.float32(np.abs(fed).max()))))
    expected = (weights[None, :, None, None] * np.cos(fed).reshape(2, 6, 4, 5)).sum(1)
    np.testing.assert_allclose(masks, expected * (xs - starts), rtol=1e-5, atol=1e-6)
    # completeness error from the rows' own outputs at alpha = 0 and 1
    outputs = np.sin(fed).reshape(2, 6, -1).sum(-1)
    gaps = outputs[:, -1] - outputs[:, 0]
    np.testing.assert_allclose(errors, masks.reshape(2, -1).sum(1) - gaps, rtol=1e-5, atol=1e-5)
