"""Seeded Gaussian noise for SmoothGrad whose sample ``k`` depends only on ``(key, k)``.

``noisy_copies(x, stdev, first, count, key)`` returns samples
``first .. first + count - 1`` of the sequence ``x + stdev * z_k``. Sample
``k``'s noise depends only on ``key``, ``k``, ``x.size`` and the noise dtype.
So drawing 25 samples at once gives the same rows as drawing them in chunks of
7 + 7 + 11, whatever ``session.run`` batching the caller uses.

How (measured in bench/bench_noise.py; pure NumPy, no TensorFlow graph):

* float32 noise (float16/float32 inputs, and ints that NumPy's ``result_type``
  promotes to float32, such as uint8): Box-Muller, vectorised.
  ``PCG64DXSM.random_raw`` gives each sample a fixed block of
  ``ceil(S / 2)`` 64-bit words, where ``S = x.size``, at word offset
  ``k * ceil(S / 2)`` of the key's stream. ``PCG64DXSM.advance`` jumps
  straight to a chunk's first sample. The words become uniforms with integer
  and cast ufuncs, then go through NumPy's SIMD ``log``/``sqrt``/``cos``/``sin``.
  That is about 3x faster than ``Generator.standard_normal(dtype=float32)``
  (ziggurat) and than TF's ``StatelessRandomNormalV2``. Unlike the ziggurat,
  it uses a fixed number of random words per sample, which is what lets a
  chunk start at any sample.
* float64 noise (float64 inputs, int32/int64): NumPy's float64 ziggurat, with
  one generator per sample seeded by ``SeedSequence(key, spawn_key=(k,))``.
  NumPy's float64 ``sin``/``cos`` are not vectorised, so Box-Muller is slower
  here than the ziggurat.

Distribution (float32 path): the radius uniform is ``(u32 + 1/2) * 2**-32``,
so values are exact Box-Muller normals up to about ``6.7 sigma`` (the tail
beyond it has probability about ``2e-11``). The angle has 23-bit resolution.

Reproducibility: everything is integer arithmetic except float32
``log``/``cos``/``sin``, whose SIMD code NumPy picks for the CPU. Results are
bit-identical on the same machine and NumPy build, and do not depend on the
model's backend or device, because the noise never enters a graph. On a CPU
with other SIMD features they may differ in the last float32 bit.

Buffers and threads: ``noisy_copies(..., out=buffer)`` writes into a
preallocated buffer (no allocation of the result, no float64 temporary on the
float32 path). A big request is split into runs of rows filled by several
threads (:func:`fill_threads` picks how many: half the CPUs, at least
:data:`MIN_VALUES_PER_THREAD` values each). Each thread builds its own bit
generator and advances it to its first sample, so the values are the same bits
whatever the thread count: the rows of a thread are a chunk, and chunks are
exact. NumPy's ufuncs and ``random_raw`` release the GIL, so the threads run
in parallel.

Thread safety: no shared state. Each call (and each of its threads) builds its
own bit generator, so calls from several threads may run at the same time and
give the same numbers as sequential calls.
"""

from __future__ import annotations

import numbers
import os
import threading
from typing import Any

import numpy as np

__all__ = [
    "KEY_BITS",
    "MIN_VALUES_PER_THREAD",
    "copies_dtype",
    "fill_threads",
    "noise_dtype",
    "noise_key",
    "noisy_copies",
    "split_rows",
    "standard_normal",
]

#: Keys are integers in ``[0, 2**KEY_BITS)``.
KEY_BITS = 63

# float32 path: rows of one block of work (about 2**18 output values), so the
# ufunc passes stay in cache for big inputs. This changes speed, never values.
_BLOCK_VALUES = 1 << 18
_TWO_PI_F32 = np.float32(2.0 * np.pi)
_U32_SCALE = np.float32(2.0**-32)
_U32_HALF_STEP = np.float32(2.0**-33)
_ONE_F32_BITS = np.uint32(0x3F800000)  # 1.0f: OR-ed under 23 mantissa bits gives [1, 2)

#: Least noise values per filling thread: about 0.5 ms of single-thread work
#: (float32), well above the ~0.1 ms a thread costs to start and join.
MIN_VALUES_PER_THREAD = 1 << 17
#: Most threads one call uses.
MAX_THREADS = 8


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name}: expected an integer >= {minimum}{upper}, got {value}")
    return value


def _check_stdev(stdev: Any) -> float:
    if isinstance(stdev, bool) or not isinstance(stdev, numbers.Real):
        raise TypeError(f"stdev: expected a real number, got {stdev!r}")
    stdev = float(stdev)
    if not np.isfinite(stdev) or stdev < 0:
        raise ValueError(f"stdev: expected a finite number >= 0, got {stdev}")
    return stdev


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def noise_dtype(input_dtype: Any) -> np.dtype:
    """The dtype of the noise (and of ``noisy_copies``) for an input dtype.

    ``np.result_type(input_dtype, float32)``: float32 for float16/float32/
    bool/int8/uint8/int16/uint16, float64 for float64/int32/uint32/int64/uint64.
    Raises TypeError for a non-numeric dtype or one wider than float64.
    """
    dt = np.dtype(input_dtype)
    if dt.kind not in "biuf":
        raise TypeError(f"x: expected a real numeric array, got dtype {dt}")
    out = np.result_type(dt, np.float32)
    if out not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"x: noise is float32 or float64; dtype {dt} would need {out}")
    return out


def noise_key(seed: int | np.integer | np.random.Generator) -> int:
    """The 63-bit key ``noisy_copies`` takes, derived once per SmoothGrad call.

    * A non-negative int: a fixed hash of it (``SeedSequence(seed)``), so the
      same seed always gives the same key.
    * A ``np.random.Generator``: one draw from it (``integers(0, 2**63)``),
      which advances it. Consecutive calls with the same Generator get
      different keys, and re-seeding it repeats them.

    Raises TypeError for any other type (``None`` included: the caller keeps
    PAIR's global-state path for ``seed=None``) and ValueError for a negative
    int.
    """
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 1 << KEY_BITS, dtype=np.int64))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed: expected a non-negative int or a numpy.random.Generator, got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed}")
    word = np.random.SeedSequence(int(seed)).generate_state(1, np.uint64)[0]
    return int(word) >> (64 - KEY_BITS)


def _check_key(key: Any) -> int:
    return _check_int("key", key, 0, (1 << KEY_BITS) - 1)


def _stream(key: int, skip: int) -> np.random.PCG64DXSM:
    bits = np.random.PCG64DXSM(np.random.SeedSequence(key))
    if skip:
        bits.advance(skip)
    return bits


def _fill_f32(out: np.ndarray, key: int, first: int, stdev: float,
              x: np.ndarray | None) -> None:
    """``out[i] = x + stdev * z_{first+i}`` (float32; ``x`` flat or None for 0)."""
    count, size = out.shape
    half = (size + 1) // 2  # Box-Muller pairs per sample = 64-bit words per sample
    bits = _stream(key, first * half)
    rows = max(1, min(count, _BLOCK_VALUES // (2 * half)))
    radius = np.empty((rows, half), np.float32)
    scale = np.float32(-2.0 * stdev * stdev)
    for start in range(0, count, rows):
        n = min(rows, count - start)
        words = bits.random_raw(n * half).reshape(n, half)
        u32 = words.view(np.uint32)  # [n, 2 * half]: radius bits | angle bits
        both = u32.view(np.float32)
        r = radius[:n]
        # radius: u1 = (u + 1/2) 2^-32 in (0, 1]; r = stdev * sqrt(-2 ln u1)
        np.copyto(r, u32[:, :half], casting="unsafe")
        r *= _U32_SCALE
        r += _U32_HALF_STEP
        np.log(r, out=r)
        r *= scale
        np.sqrt(r, out=r)
        # angle: 23 mantissa bits -> [1, 2) -> theta = 2 pi u2 (period 2 pi)
        angle_bits = u32[:, half:]
        np.right_shift(angle_bits, 9, out=angle_bits)
        np.bitwise_or(angle_bits, _ONE_F32_BITS, out=angle_bits)
        theta = both[:, half:]
        theta *= _TWO_PI_F32
        cos = both[:, :half]  # the radius bits are no longer needed
        np.cos(theta, out=cos)
        np.sin(theta, out=theta)
        cos *= r
        theta *= r
        if x is None:
            np.copyto(out[start:start + n], both[:, :size])
        else:
            np.add(both[:, :size], x, out=out[start:start + n])


def _fill_f64(out: np.ndarray, key: int, first: int, stdev: float,
              x: np.ndarray | None) -> None:
    for i in range(out.shape[0]):
        seq = np.random.SeedSequence(key, spawn_key=(first + i,))
        np.random.Generator(np.random.SFC64(seq)).standard_normal(out=out[i])
    if stdev != 1.0:
        out *= stdev
    if x is not None:
        out += x


def _fill_rows(out2d: np.ndarray, key: int, first: int, stdev: float,
               x_flat: np.ndarray | None) -> None:
    if out2d.dtype == np.float32:
        _fill_f32(out2d, key, first, stdev, x_flat)
    else:
        _fill_f64(out2d, key, first, stdev, x_flat)


def fill_threads(count: int, size: int) -> int:
    """Threads :func:`noisy_copies` uses for ``count`` samples of ``size`` values.

    ``min(cpus // 2, MAX_THREADS, count, count * size // MIN_VALUES_PER_THREAD)``,
    at least 1: half the CPUs (SmoothGrad draws the next chunk while the model
    runs on the others), small requests stay in the calling thread, and one
    sample is never split.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus // 2, MAX_THREADS, count, (count * size) // MIN_VALUES_PER_THREAD))


def split_rows(fill: Any, count: int, threads: int) -> None:
    """Calls ``fill(a, b)`` for ``threads`` runs ``[a, b)`` splitting ``range(count)``.

    The calling thread takes the first run, new threads the others (a thread
    costs about 0.1 ms to start and join: no pool, so nothing is shared and
    nothing outlives the call). Re-raises the first error.
    """
    threads = max(1, min(threads, count))
    bounds = [count * t // threads for t in range(threads + 1)]
    if threads == 1:
        fill(0, count)
        return
    errors: list[BaseException] = []

    def run(a: int, b: int) -> None:
        try:
            fill(a, b)
        except BaseException as err:  # pragma: no cover - re-raised below
            errors.append(err)

    workers = [threading.Thread(target=run, args=(a, b), daemon=True)
               for a, b in zip(bounds[1:-1], bounds[2:])]
    for worker in workers:
        worker.start()
    run(bounds[0], bounds[1])
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]


def _fill(out2d: np.ndarray, key: int, first: int, stdev: float,
          x_flat: np.ndarray | None, threads: int) -> None:
    """Rows ``first ..`` of the key's sequence into ``out2d`` on ``threads`` threads.

    Each thread fills a run of rows with its own bit generator advanced to
    the run's first sample, so the values do not depend on ``threads``.
    """
    split_rows(lambda a, b: _fill_rows(out2d[a:b], key, first + a, stdev, x_flat),
               out2d.shape[0], threads)


def copies_dtype(input_dtype: Any, key: int | None) -> np.dtype:
    """The dtype :func:`noisy_copies` returns (and wants in ``out``) for ``key``.

    :func:`noise_dtype` for a key; float64 for ``key=None`` (PAIR's
    ``x + np.random.normal(...)``).
    """
    dtype = noise_dtype(input_dtype)
    return np.dtype(np.float64) if key is None else dtype


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype, x: np.ndarray) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy array of shape {shape} and dtype {dtype}, "
                        f"got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"out: expected shape {shape} and dtype {dtype}, got shape "
                         f"{out.shape} and dtype {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: expected a C-contiguous, writeable array, got one that is "
                         + ("not C-contiguous" if not out.flags.c_contiguous else "read-only"))
    if np.may_share_memory(out, x):
        raise ValueError("out: expected a buffer apart from x, got one that overlaps it")
    return out


def _check_threads(threads: Any) -> int | None:
    return None if threads is None else _check_int("threads", threads, 1)


def noisy_copies(x: Any, stdev: float, first: int, count: int, key: int | None, *,
                 out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Samples ``first .. first+count-1`` of ``x + stdev * z_k``, shape ``[count, *x.shape]``.

    ``key=None`` is PAIR's stream instead: ``x + np.random.normal(0, stdev,
    shape)`` from NumPy's global random state, float64, in the order PAIR
    draws it (so ``np.random.seed(s)`` reproduces PAIR's SmoothGrad); then the
    samples depend on the calls made before, and ``first`` only names them.
    That path draws in the calling thread (its order is PAIR's) and allocates
    the draw even with ``out``.

    Args:
      x: one input (any shape, non-empty, real numeric). It is not checked for
        NaN/Inf; the caller has already validated it.
      stdev: the noise's standard deviation, finite and ``>= 0``.
      first: index of the first sample, ``>= 0``.
      count: number of samples, ``>= 1``.
      key: from :func:`noise_key`, an int in ``[0, 2**63)``, or ``None``
        (NumPy's global state, as PAIR).
      out: optional buffer to fill and return: a C-contiguous, writeable
        array of shape ``[count, *x.shape]`` and dtype
        ``copies_dtype(x.dtype, key)`` (``noise_dtype(x.dtype)`` for a key),
        not overlapping ``x``. Its values are the same bits as without it.
      threads: fill with this many threads (``None``: :func:`fill_threads`
        decides). The values do not depend on it.

    Returns:
      ``out``, or a new C-contiguous array of dtype ``copies_dtype(x.dtype,
      key)`` (float32 for float16/float32/uint8 inputs, float64 for float64).
      Row ``i`` depends only on ``(key, first + i, x.size, dtype)``, plus ``x``
      and ``stdev`` that it adds and scales. So
      ``noisy_copies(x, s, 0, 25, k)`` equals the concatenation of
      ``noisy_copies(x, s, 0, 7, k)``, ``(..., 7, 7, k)`` and ``(..., 14, 11, k)``.

    Raises:
      TypeError / ValueError naming the argument (``x``, ``stdev``, ``first``,
      ``count``, ``key``, ``out``, ``threads``).
    """
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"x: expected a numeric array, got {type(x).__name__}: {err}") from None
    dtype = noise_dtype(arr.dtype)
    if arr.size == 0:
        raise ValueError(f"x: expected a non-empty array, got shape {arr.shape}")
    stdev = _check_stdev(stdev)
    first = _check_int("first", first, 0)
    count = _check_int("count", count, 1)
    if key is not None:
        key = _check_key(key)
    threads = _check_threads(threads)
    shape = (count, *arr.shape)
    if out is not None:
        out = _check_out(out, shape, copies_dtype(arr.dtype, key), arr)
    if key is None:
        noise = np.random.normal(0.0, stdev, shape)
        if out is None:
            return arr + noise
        return np.add(arr, noise, out=out)
    if out is None:
        out = np.empty(shape, dtype)
    x_flat = np.ascontiguousarray(arr, dtype).reshape(-1)
    if threads is None:
        threads = fill_threads(count, arr.size)
    _fill(out.reshape(count, arr.size), key, first, stdev, x_flat, threads)
    return out


def standard_normal(key: int, first: int, count: int, size: int,
                    dtype: Any = np.float32, *, out: np.ndarray | None = None,
                    threads: int | None = None) -> np.ndarray:
    """The noise alone, ``z_first .. z_{first+count-1}``, shape ``[count, size]``.

    Rows are the ``z_k`` of :func:`noisy_copies` for inputs of ``size``
    elements and this ``dtype`` (float32 or float64). ``noisy_copies``
    computes ``x + stdev * z_k`` in a different order, so it matches
    ``x + stdev * standard_normal(...)`` to float rounding, not bit for bit.
    ``out`` (optional): a C-contiguous, writeable ``[count, size]`` array of
    ``dtype`` to fill and return. ``threads`` as in :func:`noisy_copies`.
    """
    key = _check_key(key)
    first = _check_int("first", first, 0)
    count = _check_int("count", count, 1)
    size = _check_int("size", size, 1)
    dt = _check_dtype(dtype)
    threads = _check_threads(threads)
    if out is None:
        out = np.empty((count, size), dt)
    else:
        out = _check_out(out, (count, size), dt, np.empty(0))
    if threads is None:
        threads = fill_threads(count, size)
    _fill(out, key, first, 1.0, None, threads)
    return out
