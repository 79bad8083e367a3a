"""The method base class: validation at the boundary, batching, SmoothGrad once for all.

A method subclasses :class:`TF1Saliency` and writes one private kernel,
``_masks(inputs, sources, feed, batch_size, **kwargs)``, that turns a stack of
already-validated inputs into a stack of masks, asking ``self.backend`` for
model quantities in chunks of at most ``batch_size`` rows. The public
``GetMask``, ``GetMaskBatch`` and ``GetSmoothedMask`` are written here once.
"""

from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .backend import Backend, TF1Backend


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


def check_positive_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int, or raises naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer (>= 1), got {value}")
    return int(value)


def check_finite_number(name: str, value: Any, *, minimum: float | None = None) -> float:
    """Returns ``value`` as a float, or raises naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name}: expected a finite number{bound}, got {value}")
    return value


def check_array(
    name: str, value: Any, shape: Sequence[int | None] | None, *, batched: bool
) -> np.ndarray:
    """Validates a numeric array against a per-example ``shape`` (``None`` = any size).

    Returns it as an ndarray without copying where possible; never modifies it.
    Raises TypeError for non-numeric dtypes and ValueError for wrong rank,
    shape, an empty batch or non-finite values, naming the argument, the
    expected and the actual value.
    """
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(
            f"{name}: expected a numeric array, got {type(value).__name__}: {err}"
        ) from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}: expected a real numeric array (float, int or uint), got dtype {arr.dtype}"
        )
    if shape is not None:
        expected = ((None,) if batched else ()) + tuple(shape)
        text = "[" + ", ".join("N" if i == 0 and batched else ("?" if d is None else str(d))
                               for i, d in enumerate(expected)) + "]"
        ok = arr.ndim == len(expected) and all(
            d is None or d == a for d, a in zip(expected, arr.shape)
        )
        if not ok:
            what = "a batch of inputs" if batched else "one input (not batched)"
            raise ValueError(f"{name}: expected {what} of shape {text}, got shape {arr.shape}")
    if batched and (arr.ndim == 0 or arr.shape[0] == 0):
        raise ValueError(f"{name}: expected a non-empty batch, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf values")
    return arr


_NOISE_WORKERS = max(1, min(4, os.cpu_count() or 1))
_NOISE_POOL: ThreadPoolExecutor | None = None
_NOISE_POOL_LOCK = threading.Lock()


def _noise_pool() -> ThreadPoolExecutor:
    """A small shared thread pool: NumPy's generators release the GIL while filling."""
    global _NOISE_POOL
    with _NOISE_POOL_LOCK:
        if _NOISE_POOL is None:
            _NOISE_POOL = ThreadPoolExecutor(_NOISE_WORKERS, thread_name_prefix="saliency-noise")
        return _NOISE_POOL


def noisy_copies(
    x: np.ndarray, stdev: float, count: int, rng: np.random.Generator | None
) -> np.ndarray:
    """``count`` copies of ``x`` plus independent N(0, stdev^2) noise, shape ``[count, *x.shape]``.

    With ``rng=None`` the noise comes from NumPy's global state as float64, in
    the order PAIR draws it (one ``np.random.normal`` per sample, C order).
    Otherwise copy ``k`` draws its noise, in ``x``'s float precision (at least
    float32), from the ``k``-th child generator ``rng.spawn`` gives: successive
    calls on the same ``rng`` continue the sequence of children, so the noise
    of a sample does not depend on how the samples are chunked, and large
    draws are spread over a few threads.
    """
    shape = (count, *x.shape)
    if rng is None:
        return x + np.random.normal(0.0, stdev, shape)
    dtype = np.result_type(x.dtype, np.float32)
    noisy = np.empty(shape, dtype)
    children = rng.spawn(count)

    def fill(ks: range) -> None:
        for k in ks:
            children[k].standard_normal(out=noisy[k], dtype=dtype)

    pool = _noise_pool() if noisy.size >= 1 << 17 and count > 1 else None
    if pool is None:
        fill(range(count))
    else:  # one contiguous group of samples per worker
        bounds = np.linspace(0, count, min(count, _NOISE_WORKERS) + 1).astype(int)
        list(pool.map(fill, [range(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    noisy *= dtype.type(stdev)
    noisy += x
    return noisy


class TF1Saliency:
    """Base class of the TF1 saliency methods (PAIR ``saliency.tf1`` compatible).

    The constructor builds every op the method needs (through a
    :class:`~saliency_tf1.backend.TF1Backend`); the public methods only feed
    numpy values through them.

    Args:
      graph: the ``tf.Graph`` of the model.
      session: a ``tf.compat.v1.Session`` on ``graph``.
      y: the explained output, shape ``[None]`` (one value per example) or
        ``()``; e.g. ``logits[:, k]`` or :class:`saliency_tf1.ClassTarget`'s ``y``.
      x: the input placeholder, outer dimension the batch.
    """

    #: Rows per ``session.run`` when the caller does not say. It decides only
    #: how the work is run, never what it computes.
    default_batch_size: int = 32

    def __init__(self, graph: Any, session: Any, y: Any, x: Any) -> None:
        self.graph, self.session, self.y, self.x = graph, session, y, x
        self.backend: Backend = self._make_backend(graph, session, y, x)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> Backend:
        return TF1Backend(graph, session, y, x)

    #: True where the method's gradients exist only as ops in a TF1 graph
    #: (guided/deconvnet gating), so no other backend can serve them.
    graph_only: bool = False

    @classmethod
    def from_backend(cls, backend: Backend) -> TF1Saliency:
        """The method over any :class:`~saliency_tf1.backend.Backend` (e.g. a core-API one).

        Kernels use only ``self.backend``; ``graph``/``session``/``y``/``x``
        are ``None`` on such an instance. Raises TypeError for a
        :attr:`graph_only` method over a backend other than a TF1Backend
        (use ``compat.core.CoreAdapter`` on a TF1 instance).
        """
        if cls.graph_only and not isinstance(backend, TF1Backend):
            raise TypeError(
                f"{cls.__name__}: its gated gradients exist only in a TF1 graph; build it with "
                "(graph, session, y, x) and wrap it in compat.core.CoreAdapter for the core API"
            )
        method = cls.__new__(cls)
        method.graph = method.session = method.y = method.x = None
        method.backend = backend
        return method

    # -- to be written by each method ------------------------------------------

    def _masks(
        self,
        inputs: np.ndarray,
        sources: np.ndarray,
        feed: Any,
        batch_size: int,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns one mask per input, shape ``inputs.shape``.

        ``sources[i]`` is the index of the public call's input that
        ``inputs[i]`` derives from (pass it on to ``backend.evaluate``).
        """
        raise NotImplementedError

    def _rows_per_input(self, **kwargs: Any) -> int:
        """How many model rows one input expands into (path steps, windows, ...)."""
        return 1

    # -- shared helpers ----------------------------------------------------------

    def _batch_size(self, batch_size: Any) -> int:
        if batch_size is None:
            return self.default_batch_size
        return check_positive_int("batch_size", batch_size)

    def _check_inputs(self, value: Any, name: str, batched: bool) -> np.ndarray:
        return check_array(name, value, self.backend.input_shape, batched=batched)

    def _evaluate(
        self,
        rows: np.ndarray,
        key: str,
        feed: Any,
        sources: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """``backend.evaluate`` of one key over any number of rows, in chunks."""
        parts = [
            self.backend.evaluate(rows[a:b], [key], feed, sources[a:b])[key]
            for a, b in chunk_bounds(len(rows), batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- public API ----------------------------------------------------------------

    def GetMask(self, x_value: Any, feed_dict: dict | None = None, **kwargs: Any) -> np.ndarray:
        """Returns the method's mask for one input (not batched), shape ``x_value.shape``.

        Args:
          x_value: one input, the shape of ``x`` without its batch dimension.
          feed_dict: values for the graph's other placeholders (tensor or
            tensor-name keys); never modified.
          **kwargs: the method's own arguments.
        """
        x = self._check_inputs(x_value, "x_value", batched=False)
        return self._run_batch(x[None], feed_dict, **kwargs)[0]

    def GetMaskBatch(
        self, x_batch: Any, feed_dict: dict | None = None, **kwargs: Any
    ) -> np.ndarray:
        """Returns one mask per input of ``x_batch`` (shape ``[N, ...]``), computed in batches.

        Equals stacking ``GetMask`` of each input. A :class:`PerExample`
        value in ``feed_dict`` gives each input its own value (e.g. its class).
        """
        xs = self._check_inputs(x_batch, "x_batch", batched=True)
        return self._run_batch(xs, feed_dict, **kwargs)

    def _run_batch(self, xs: np.ndarray, feed_dict: Any, batch_size: Any = None,
                   **kwargs: Any) -> np.ndarray:
        batch_size = self._batch_size(batch_size)
        feed = self.backend.prepare_feed(feed_dict, len(xs))
        return self._masks(xs, np.arange(len(xs)), feed, batch_size, **kwargs)

    def GetSmoothedMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the SmoothGrad mask of any method: its mask averaged over noisy copies.

        ``mean_k m(x + e_k)`` with ``e_k ~ N(0, sigma^2)``, or the mean of
        ``m(x + e_k)**2`` when ``magnitude`` (SmoothGrad-Squared). Smilkov et
        al., "SmoothGrad: removing noise by adding noise", 2017,
        arXiv:1706.03825; Hooker et al., 2019 (squared variant).

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders.
          stdev_spread: ``sigma`` as a fraction of ``max(x_value) - min(x_value)``.
          nsamples: number of noisy copies.
          magnitude: average squared masks instead of masks.
          seed: an int or ``np.random.Generator`` for the noise: the same seed
            gives the same mask, and the noise is drawn in the input's float
            precision (float32 for float32/uint8 inputs), the fast path.
            ``None`` draws float64 noise from NumPy's global random state in
            exactly PAIR's order, so after ``np.random.seed(s)`` the mask equals
            PAIR's (slower: that generator is about twice as costly).
          **kwargs: the method's own ``GetMask`` arguments (and ``batch_size``,
            the most model rows per ``session.run``).
        """
        x = self._check_inputs(x_value, "x_value", batched=False)
        stdev_spread = check_finite_number("stdev_spread", stdev_spread, minimum=0.0)
        nsamples = check_positive_int("nsamples", nsamples)
        batch_size = self._batch_size(kwargs.pop("batch_size", None))
        feed = self.backend.prepare_feed(feed_dict, 1)
        rng = None if seed is None else (
            seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed))

        stdev = stdev_spread * float(np.max(x) - np.min(x))
        per_chunk = max(1, batch_size // max(1, self._rows_per_input(**kwargs)))
        total = None
        for start, stop in chunk_bounds(nsamples, per_chunk):
            noisy = noisy_copies(x, stdev, stop - start, rng)
            masks = self._masks(noisy, np.zeros(stop - start, np.int64), feed, batch_size,
                                **kwargs)
            acc = np.result_type(masks.dtype, x.dtype, np.float32)
            part = np.sum(np.square(masks, dtype=acc) if magnitude else masks, axis=0, dtype=acc)
            total = part if total is None else total + part
        return total / nsamples
