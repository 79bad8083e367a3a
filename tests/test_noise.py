"""saliency_tf1.engine.noise: the seeded, chunk-independent SmoothGrad noise.

Every statistical bound below is derived from the number of values ``n``
(6 standard errors). The keys are fixed, so each check is deterministic: it
either always passes or reveals a broken generator.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import tensorflow as tf

from saliency_tf1.engine import noise
from saliency_tf1.engine.noise import (
    KEY_BITS,
    noise_dtype,
    noise_key,
    noisy_copies,
    standard_normal,
)

KEY = noise_key(0)
FLOATS = [np.float32, np.float64]
SHAPES = [(16, 16, 3), (5, 7, 3), (1,), (3,), (2, 1)]


def image(shape=(16, 16, 3), dtype=np.float32, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(dtype)


# --- chunk independence ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_one_draw_equals_chunks(dtype, shape):
    x = image(shape, dtype)
    whole = noisy_copies(x, 0.2, 0, 25, KEY)
    parts = [noisy_copies(x, 0.2, a, n, KEY) for a, n in ((0, 7), (7, 7), (14, 11))]
    np.testing.assert_array_equal(whole, np.concatenate(parts))
    for first in (1, 13, 24):  # any window of the sequence
        np.testing.assert_array_equal(noisy_copies(x, 0.2, first, 25 - first, KEY),
                                      whole[first:])


@pytest.mark.parametrize("dtype", FLOATS)
def test_one_by_one_equals_whole(dtype):
    x = image((5, 7, 3), dtype)
    whole = noisy_copies(x, 0.5, 0, 9, KEY)
    singles = np.concatenate([noisy_copies(x, 0.5, k, 1, KEY) for k in range(9)])
    np.testing.assert_array_equal(whole, singles)


def test_internal_blocking_does_not_change_values(monkeypatch):
    x = image((64, 64, 3))  # 25 samples span two internal blocks of rows
    reference = noisy_copies(x, 0.15, 0, 25, KEY)
    for block in (1, 12288 * 3, 1 << 30):
        monkeypatch.setattr(noise, "_BLOCK_VALUES", block)
        np.testing.assert_array_equal(noisy_copies(x, 0.15, 0, 25, KEY), reference)


def test_far_sample_indices():
    x = image((5, 7, 3))
    first = 10**12
    a = noisy_copies(x, 1.0, first, 3, KEY)
    b = noisy_copies(x, 1.0, first + 1, 2, KEY)
    np.testing.assert_array_equal(a[1:], b)
    assert not np.array_equal(a[0], a[1])


# --- determinism, keys ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_deterministic(dtype):
    x = image(dtype=dtype)
    np.testing.assert_array_equal(noisy_copies(x, 0.3, 2, 5, KEY), noisy_copies(x, 0.3, 2, 5, KEY))


def test_golden_values():
    """Pins the algorithm. The tolerance allows a last-bit SIMD difference on other CPUs."""
    assert noise_key(0) == 7896617691693857887
    assert noise_key(12345) == 6545755839504761278
    np.testing.assert_allclose(
        standard_normal(noise_key(0), 0, 2, 5),
        [[-0.76494896, 0.5409501, -0.26461703, -0.07591129, 0.31101322],
         [-0.007912308, -0.33222938, -0.53726083, 0.29100478, -0.7156289]],
        rtol=1e-5)
    np.testing.assert_allclose(
        standard_normal(noise_key(0), 3, 1, 5, np.float64),
        [[-1.684555665, -0.49462104, -0.942658668, 0.372473747, 0.350220764]], rtol=1e-8)


def test_noise_key_from_int():
    assert noise_key(0) == noise_key(0) == noise_key(np.int64(0))
    keys = {noise_key(s) for s in range(50)} | {noise_key(2**70)}
    assert len(keys) == 51
    assert all(0 <= k < 2**KEY_BITS for k in keys)


def test_noise_key_from_generator_advances_it():
    rng = np.random.default_rng(3)
    first, second = noise_key(rng), noise_key(rng)
    assert first != second
    again = np.random.default_rng(3)
    assert (noise_key(again), noise_key(again)) == (first, second)
    assert 0 <= first < 2**KEY_BITS


@pytest.mark.parametrize("dtype", FLOATS)
def test_different_keys_and_samples_differ(dtype):
    x = image((5, 7, 3), dtype)
    a = noisy_copies(x, 1.0, 0, 4, noise_key(0))
    b = noisy_copies(x, 1.0, 0, 4, noise_key(1))
    c = noisy_copies(x, 1.0, 0, 4, KEY + 1)
    for other in (b, c):
        assert np.mean(a == other) < 0.01
    for i in range(4):
        for j in range(i):
            assert np.mean(a[i] == a[j]) < 0.01
    assert abs(np.corrcoef((a - x).ravel(), (b - x).ravel())[0, 1]) < 6 / math.sqrt(a.size)


# --- statistics -----------------------------------------------------------------------

def moments_ok(z: np.ndarray, what: str) -> None:
    """mean ~ 0 and variance ~ 1 within 6 standard errors for ``n = z.size``."""
    z = z.astype(np.float64).ravel()
    n = z.size
    assert abs(z.mean()) < 6 / math.sqrt(n), f"{what}: mean {z.mean()} (n={n})"
    # Var of the sample variance of N(0,1) is 2/n (up to O(1/n^2)).
    assert abs(z.var() - 1) < 6 * math.sqrt(2 / n), f"{what}: var {z.var()} (n={n})"


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(16, 16, 3), (5, 7, 3)])
def test_noise_statistics(dtype, shape):
    stdev = 0.3
    x = image(shape, dtype)
    count = max(50, 60000 // x.size)
    z = (noisy_copies(x, stdev, 0, count, KEY).astype(np.float64) - x) / stdev
    moments_ok(z, "all values")
    flat = z.reshape(count, -1)
    moments_ok(flat[:, 0], "first element of each sample")
    moments_ok(flat[:, -1], "last element of each sample")
    n = z.size
    # Tails: P(|z| > 2) = 0.0455; binomial standard error.
    p = math.erfc(2 / math.sqrt(2))
    frac = np.mean(np.abs(z) > 2)
    assert abs(frac - p) < 6 * math.sqrt(p * (1 - p) / n)
    # Neighbouring samples are uncorrelated.
    r = np.corrcoef(flat[:-1].ravel(), flat[1:].ravel())[0, 1]
    assert abs(r) < 6 / math.sqrt(flat[1:].size)


@pytest.mark.parametrize("dtype", FLOATS)
def test_box_muller_halves_uncorrelated(dtype):
    """Element i and i + ceil(S/2) share a Box-Muller pair in float32: still uncorrelated."""
    size = 1001
    half = (size + 1) // 2
    z = standard_normal(KEY, 0, 400, size, dtype).astype(np.float64)
    a, b = z[:, : size - half].ravel(), z[:, half:].ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(a.size)
    assert abs(np.corrcoef(a**2, b**2)[0, 1]) < 6 / math.sqrt(a.size)
    moments_ok(z, "standard_normal")


@pytest.mark.parametrize("dtype", FLOATS)
def test_kolmogorov_smirnov(dtype):
    stats = pytest.importorskip("scipy.stats")
    z = standard_normal(KEY, 0, 200, 1001, dtype).ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_noisy_copies_matches_standard_normal():
    x = image((5, 7, 3))
    z = standard_normal(KEY, 4, 6, x.size)
    noisy = noisy_copies(x, 0.25, 4, 6, KEY)
    np.testing.assert_allclose(noisy.reshape(6, -1), x.reshape(-1) + 0.25 * z, atol=2e-6)


def test_zero_stdev_gives_copies():
    x = image((5, 7, 3))
    np.testing.assert_array_equal(noisy_copies(x, 0.0, 0, 3, KEY), np.broadcast_to(x, (3, 5, 7, 3)))


# --- dtypes and layouts ---------------------------------------------------------------

@pytest.mark.parametrize(("dtype", "expected"), [
    (np.float32, np.float32), (np.float64, np.float64), (np.uint8, np.float32),
    (np.float16, np.float32), (np.int16, np.float32), (np.bool_, np.float32),
    (np.int64, np.float64),
])
def test_output_dtype(dtype, expected):
    x = (image((5, 7, 3)) * 200).astype(dtype)
    out = noisy_copies(x, 1.0, 0, 3, KEY)
    assert out.dtype == expected == noise_dtype(dtype)
    assert out.shape == (3, 5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, noisy_copies(x.astype(expected), 1.0, 0, 3, KEY))


def test_uint8_image_noise_is_float32_and_centered():
    x = np.full((8, 8, 3), 128, np.uint8)
    out = noisy_copies(x, 10.0, 0, 100, KEY)
    assert out.dtype == np.float32
    moments_ok((out.astype(np.float64) - 128) / 10, "uint8 input")


def test_input_not_modified_and_not_aliased():
    x = image((5, 7, 3))
    before = x.copy()
    out = noisy_copies(x, 1.0, 0, 2, KEY)
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x)


def test_non_contiguous_and_list_input():
    base = image((10, 14, 3))
    view = base[::2, ::2]
    np.testing.assert_array_equal(noisy_copies(view, 0.1, 0, 3, KEY),
                                  noisy_copies(np.ascontiguousarray(view), 0.1, 0, 3, KEY))
    np.testing.assert_array_equal(noisy_copies([1.0, 2.0, 3.0], 0.1, 0, 2, KEY),
                                  noisy_copies(np.array([1.0, 2.0, 3.0]), 0.1, 0, 2, KEY))


def test_scalar_input():
    out = noisy_copies(np.float32(2.0), 1.0, 0, 4, KEY)
    assert out.shape == (4,) and out.dtype == np.float32


# --- threads and graphs ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOATS)
def test_threads_match_sequential(dtype):
    x = image((16, 16, 3), dtype)
    jobs = [(noise_key(s), first, count) for s in range(4) for first, count in ((0, 9), (5, 4))]
    expected = [noisy_copies(x, 0.2, first, count, key) for key, first, count in jobs]
    results: list = [None] * (len(jobs) * 4)
    errors: list = []
    barrier = threading.Barrier(8)

    def worker(w: int) -> None:
        try:
            barrier.wait()
            for i in range(w, len(results), 8):
                key, first, count = jobs[i % len(jobs)]
                results[i] = noisy_copies(x, 0.2, first, count, key)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, got in enumerate(results):
        np.testing.assert_array_equal(got, expected[i % len(jobs)])


def test_no_graph_is_built_or_grown():
    """The noise is NumPy only: no op in the default graph, a user's graph or anywhere."""
    assert not any(isinstance(v, type(tf)) and v.__name__.startswith("tensorflow")
                   for v in vars(noise).values())
    default = tf.compat.v1.get_default_graph()
    default_before = len(default.get_operations())
    user = tf.Graph()
    with user.as_default():
        tf.compat.v1.placeholder(tf.float32, [None, 3])
        before = len(user.get_operations())
        for dtype in FLOATS:
            for k in range(20):
                noisy_copies(image((5, 7, 3), dtype), 0.1, k, 3, KEY)
                standard_normal(KEY, k, 2, 11, dtype)
        assert len(user.get_operations()) == before
    assert len(default.get_operations()) == default_before


# --- bad arguments --------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"x": []}, ValueError, "x"),
    ({"x": np.zeros((0, 3))}, ValueError, "x"),
    ({"x": "abc"}, TypeError, "x"),
    ({"x": np.array(["a"], object)}, TypeError, "x"),
    ({"x": np.zeros(3, np.complex64)}, TypeError, "x"),
    pytest.param({"x": np.zeros(3, np.longdouble)}, TypeError, "x", marks=pytest.mark.skipif(
        np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 here")),
    ({"x": [[1.0], [1.0, 2.0]]}, TypeError, "x"),
    ({"stdev": -0.1}, ValueError, "stdev"),
    ({"stdev": float("nan")}, ValueError, "stdev"),
    ({"stdev": float("inf")}, ValueError, "stdev"),
    ({"stdev": "0.1"}, TypeError, "stdev"),
    ({"stdev": True}, TypeError, "stdev"),
    ({"first": -1}, ValueError, "first"),
    ({"first": 1.0}, TypeError, "first"),
    ({"count": 0}, ValueError, "count"),
    ({"count": True}, TypeError, "count"),
    ({"count": 2.5}, TypeError, "count"),
    ({"key": -1}, ValueError, "key"),
    ({"key": 2**KEY_BITS}, ValueError, "key"),
    ({"key": 1.0}, TypeError, "key"),
])
def test_noisy_copies_bad_arguments(kwargs, error, name):
    args = {"x": image((5, 7, 3)), "stdev": 0.1, "first": 0, "count": 2, "key": KEY}
    args.update(kwargs)
    with pytest.raises(error, match=rf"^{name}:"):
        noisy_copies(**args)


@pytest.mark.parametrize(("seed", "error"), [
    (-1, ValueError), (None, TypeError), (1.5, TypeError), (True, TypeError),
    ("0", TypeError), (np.random.RandomState(0), TypeError),
])
def test_noise_key_bad_seed(seed, error):
    with pytest.raises(error, match=r"^seed:"):
        noise_key(seed)


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"dtype": np.float16}, ValueError, "dtype"),
    ({"dtype": "not a dtype"}, TypeError, "dtype"),
    ({"size": 0}, ValueError, "size"),
    ({"size": 2.0}, TypeError, "size"),
    ({"count": 0}, ValueError, "count"),
    ({"first": -3}, ValueError, "first"),
    ({"key": 2**64}, ValueError, "key"),
])
def test_standard_normal_bad_arguments(kwargs, error, name):
    args = {"key": KEY, "first": 0, "count": 2, "size": 5, "dtype": np.float32}
    args.update(kwargs)
    with pytest.raises(error, match=rf"^{name}:"):
        standard_normal(**args)


def test_key_none_is_pairs_global_stream():
    """key=None: x + np.random.normal(0, s, shape) from NumPy's global state, as PAIR draws it."""
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    np.random.seed(3)
    got = noisy_copies(x, 0.5, 0, 5, None)
    np.random.seed(3)
    expected = x + np.random.normal(0.0, 0.5, (5, 3, 4))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float64


# --- buffers (out=) and filling threads -----------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("shape", [(16, 16, 3), (1,)])
def test_out_is_filled_in_place_with_the_same_bits(dtype, shape):
    x = (image(shape) * 200).astype(dtype)
    expected = noisy_copies(x, 0.4, 3, 6, KEY)
    out = np.full((6, *shape), np.nan, noise_dtype(dtype))
    got = noisy_copies(x, 0.4, 3, 6, KEY, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)
    # A part of a bigger buffer (a leading run of rows) is C-contiguous too.
    big = np.zeros((9, *shape), noise_dtype(dtype))
    noisy_copies(x, 0.4, 3, 6, KEY, out=big[:6])
    np.testing.assert_array_equal(big[:6], expected)
    assert not big[6:].any()


def test_standard_normal_out_is_filled_in_place():
    expected = standard_normal(KEY, 5, 4, 301)
    out = np.empty((4, 301), np.float32)
    assert standard_normal(KEY, 5, 4, 301, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_out_with_key_none_is_pairs_float64_stream():
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    np.random.seed(5)
    expected = x + np.random.normal(0.0, 0.5, (4, 3, 4))
    np.random.seed(5)
    out = np.empty((4, 3, 4), np.float64)
    assert noisy_copies(x, 0.5, 0, 4, None, out=out) is out
    np.testing.assert_array_equal(out, expected)
    assert noise.copies_dtype(np.float32, None) == np.float64
    assert noise.copies_dtype(np.uint8, KEY) == np.float32


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("threads", [1, 2, 3, 7, 40])
def test_thread_count_does_not_change_values(dtype, threads):
    x = image((8, 9, 3), dtype)
    expected = noisy_copies(x, 0.3, 11, 7, KEY, threads=1)
    np.testing.assert_array_equal(noisy_copies(x, 0.3, 11, 7, KEY, threads=threads), expected)
    out = np.empty_like(expected)
    noisy_copies(x, 0.3, 11, 7, KEY, out=out, threads=threads)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(standard_normal(KEY, 11, 7, 50, dtype, threads=threads),
                                  standard_normal(KEY, 11, 7, 50, dtype, threads=1))


def test_threads_fill_runs_of_rows_from_their_own_first_sample(monkeypatch):
    calls = []
    real = noise._fill_rows

    def spy(out2d, key, first, stdev, x_flat):
        calls.append((threading.current_thread(), first, out2d.shape[0]))
        real(out2d, key, first, stdev, x_flat)

    monkeypatch.setattr(noise, "_fill_rows", spy)
    noisy_copies(image((5, 7, 3)), 0.2, 10, 8, KEY, threads=3)
    assert sorted((first, n) for _, first, n in calls) == [(10, 2), (12, 3), (15, 3)]
    assert len({id(thread) for thread, _, _ in calls}) == 3  # (idents may be reused)
    assert [thread for thread, first, _ in calls if first == 10] == [threading.current_thread()]


def test_fill_threads_half_the_cpus_with_a_floor_of_work_per_thread(monkeypatch):
    monkeypatch.setattr(noise.os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    per = noise.MIN_VALUES_PER_THREAD
    assert noise.fill_threads(25, 16 * 16 * 3) == 1          # small: the calling thread
    assert noise.fill_threads(25, 224 * 224 * 3) == noise.MAX_THREADS
    assert noise.fill_threads(3, 10 * per) == 3              # never more threads than rows
    assert noise.fill_threads(1, 100 * per) == 1             # one sample is not split
    assert noise.fill_threads(4, per // 2) == 2
    monkeypatch.setattr(noise.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert noise.fill_threads(25, 224 * 224 * 3) == 3        # the model keeps the other half
    monkeypatch.setattr(noise.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert noise.fill_threads(25, 224 * 224 * 3) == 1


def test_auto_threads_on_a_big_request_give_the_same_bits():
    x = image((64, 64, 3))  # 25 x 12288 values: more than one thread where CPUs allow
    out = np.empty((25, 64, 64, 3), np.float32)
    noisy_copies(x, 0.15, 0, 25, KEY, out=out)
    np.testing.assert_array_equal(out, noisy_copies(x, 0.15, 0, 25, KEY, threads=1))


def test_a_thread_error_is_raised_in_the_caller():
    def fill(a, b):
        if a > 0:
            raise RuntimeError(f"run {a}")

    with pytest.raises(RuntimeError, match="run"):
        noise.split_rows(fill, 6, 3)
    seen = []
    noise.split_rows(lambda a, b: seen.append((a, b)), 2, 5)  # threads capped by rows
    assert sorted(seen) == [(0, 1), (1, 2)]


@pytest.mark.parametrize(("out", "error", "match"), [
    ([[0.0] * 3] * 2, TypeError, "expected a numpy array"),
    (np.empty((3, 5, 7, 3), np.float32), ValueError, r"expected shape \(2, 5, 7, 3\)"),
    (np.empty((2, 5, 7, 3), np.float64), ValueError, "dtype float32, got .* float64"),
    (np.empty((2, 5, 7, 6), np.float32)[..., ::2], ValueError, "not C-contiguous"),
    (np.broadcast_to(np.float32(0), (2, 5, 7, 3)), ValueError, "not C-contiguous|read-only"),
])
def test_bad_out(out, error, match):
    x = image((5, 7, 3))
    before = np.array(out, copy=True)
    with pytest.raises(error, match=rf"^out: .*{match}"):
        noisy_copies(x, 0.1, 0, 2, KEY, out=out)
    np.testing.assert_array_equal(np.asarray(out), before)


def test_read_only_or_overlapping_out():
    x = image((5, 7, 3))
    frozen = np.zeros((2, 5, 7, 3), np.float32)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="^out: .*read-only"):
        noisy_copies(x, 0.1, 0, 2, KEY, out=frozen)
    buffer = np.zeros((2, 5, 7, 3), np.float32)
    with pytest.raises(ValueError, match="^out: .*overlaps"):
        noisy_copies(buffer[1], 0.1, 0, 2, KEY, out=buffer)
    assert not buffer.any()


def test_bad_out_with_key_none_draws_nothing():
    x = image((5, 7, 3))
    np.random.seed(9)
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match=r"^out: .*dtype float64, got .* float32"):
        noisy_copies(x, 0.1, 0, 2, None, out=np.empty((2, 5, 7, 3), np.float32))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize(("threads", "error"), [(0, ValueError), (1.5, TypeError),
                                                (True, TypeError), ("2", TypeError)])
def test_bad_threads(threads, error):
    with pytest.raises(error, match="^threads:"):
        noisy_copies(image((5, 7, 3)), 0.1, 0, 2, KEY, threads=threads)
    with pytest.raises(error, match="^threads:"):
        standard_normal(KEY, 0, 2, 5, threads=threads)


def test_standard_normal_bad_out():
    with pytest.raises(ValueError, match=r"^out: expected shape \(2, 5\) and dtype float64"):
        standard_normal(KEY, 0, 2, 5, np.float64, out=np.empty((2, 5), np.float32))
