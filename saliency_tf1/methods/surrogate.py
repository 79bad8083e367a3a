"""What the forward-only (perturbation) methods share: RISE, Score-CAM, LIME and KernelSHAP.

These methods only need the model's output on perturbed copies of the input
(Score-CAM also a conv layer's activations), never a gradient. This module
holds, written once for all of them:

* :class:`ForwardBackend`: a backend over a TF1 graph that fetches ``y`` (and
  a conv layer) and builds no ops at all, so a model that is not
  differentiable end to end (an ``argmax``, a ``stop_gradient``, an integer
  step) can be explained;
* :func:`stream_rows`: the perturbed copies made chunk by chunk into one
  reused buffer of ``batch_size`` rows, each chunk one ``backend.evaluate``
  (one ``session.run``), so memory is bounded by ``batch_size`` whatever the
  number of masks or samples;
* :class:`BlockSampler`: random samples drawn in fixed blocks, block ``b``
  from its own generator ``SeedSequence(key, spawn_key=(b,))``, so sample
  ``j`` depends only on the seed and ``j`` -- not on ``batch_size``, on how
  many samples are asked for, or on the other inputs of the call;
* :class:`RandomizedSaliency`: the ``seed=`` rules, and ``GetSmoothedMask``
  whose one ``seed`` draws both the noise and every noisy copy's own samples;
* segments (superpixels, feature groups, time windows): checks and the
  default Felzenszwalb partition (XRAI's segmentation, at one scale);
* :class:`WeightedLinearFit`: the weighted least-squares fits of LIME and
  KernelSHAP, streamed as normal equations so that memory is independent of
  the number of samples.
"""

from __future__ import annotations

import hashlib
import numbers
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.backend import OUTPUT_LAYER_VALUES, Backend, ForwardBackend
from ..engine.batching import chunk_bounds, progress_bar
from ..engine.checks import check_array, check_finite_number, check_seed, describe
from ..engine.noise import KEY_BITS, noise_key
from .base import TF1Saliency

# ---------------------------------------------------------------------------
# The forward-only backend


# ---------------------------------------------------------------------------
# Streaming perturbed rows through the model


def stream_rows(
    backend: Backend,
    inputs: np.ndarray,
    sources: np.ndarray,
    feed: Any,
    batch_size: int,
    counts: Sequence[int],
    fill: Callable[[int, int, int, np.ndarray], Any],
    consume: Callable[[int, int, int, np.ndarray, Any], None],
    *,
    progress: bool | None = None,
    desc: str = "",
) -> None:
    """Runs ``sum(counts)`` perturbed rows through the model, ``batch_size`` rows per run.

    Input ``i`` of ``inputs`` owns ``counts[i]`` rows, in order (rows of
    consecutive inputs share runs). For each run, ``fill(i, a, b, out)``
    writes rows ``a .. b-1`` of input ``i`` into ``out`` (a view of a buffer
    of ``min(batch_size, total)`` rows in the backend's input dtype) and
    returns anything (e.g. the masks it applied); after the run,
    ``consume(i, a, b, values, that)`` gets their ``y`` values (float64), in
    row order.

    The next chunk is filled in a worker thread while the model runs the
    current one (``session.run`` releases the GIL), into the other of two
    buffers: memory is two buffers of ``batch_size`` rows plus what ``fill``
    makes for a chunk, however many rows there are. ``fill`` calls run one at
    a time and in order, as do ``consume`` calls (in the calling thread).
    """
    counts = [int(c) for c in counts]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    if total == 0:
        return
    bounds = list(chunk_bounds(total, batch_size))
    rows = min(batch_size, total)
    buffers = [np.empty((rows, *inputs.shape[1:]), backend.input_dtype)
               for _ in range(min(2, len(bounds)))]

    def prepare(c: int) -> list[tuple[int, int, int, int, Any]]:
        """Fills chunk ``c`` into its buffer; returns its pieces ``(i, a, b, at, made)``."""
        start, stop = bounds[c]
        buffer = buffers[c % len(buffers)]
        i = int(np.searchsorted(offsets, start, side="right")) - 1
        pieces, pos = [], 0
        while pos < stop - start:
            while offsets[i + 1] <= start + pos:  # inputs with no rows left here
                i += 1
            a = start + pos - int(offsets[i])
            b = min(counts[i], stop - int(offsets[i]))
            pieces.append((i, a, b, pos, fill(i, a, b, buffer[pos:pos + b - a])))
            pos += b - a
        return pieces

    bar = progress_bar(progress, total, desc, auto_min=100 * batch_size)
    with bar, ThreadPoolExecutor(max_workers=1) as pool:
        # On an error, leaving the pool waits for a chunk being filled.
        pending: Future | None = None
        pieces = prepare(0)
        for c, (start, stop) in enumerate(bounds):
            if c + 1 < len(bounds):
                pending = pool.submit(prepare, c + 1)
            row_sources = np.concatenate([np.full(b - a, sources[j], np.int64)
                                          for j, a, b, _, _ in pieces])
            values = backend.evaluate(buffers[c % len(buffers)][:stop - start],
                                      [OUTPUT_LAYER_VALUES], feed,
                                      row_sources)[OUTPUT_LAYER_VALUES]
            values = np.asarray(values, np.float64).reshape(stop - start)
            for j, a, b, at, made in pieces:
                consume(j, a, b, values[at:at + b - a], made)
            bar.update(stop - start)
            if pending is not None:
                pieces, pending = pending.result(), None


class Blender:
    """Writes perturbed copies ``fill + (x - fill) * mask`` of a kernel's inputs.

    ``fills`` is ``None`` (the copies are ``x * mask``) or ``[1 or N, ...]``
    (one fill for all inputs, or one per public input, picked by
    ``sources``). The difference ``x - fill`` of the input being written is
    kept in the model's dtype between calls (rows come input by input).
    """

    def __init__(self, inputs: np.ndarray, sources: np.ndarray, fills: np.ndarray | None,
                 dtype: Any) -> None:
        self.inputs, self.sources, self.fills = inputs, sources, fills
        self.dtype = np.dtype(dtype)
        self._at: int | None = None
        self._diff: np.ndarray | None = None
        self._fill: np.ndarray | None = None

    def _prepare(self, i: int) -> None:
        if self._at == i:
            return
        x = self.inputs[i]
        if self.fills is None:
            self._diff, self._fill = x.astype(self.dtype, copy=False), None
        else:
            fill = self.fills[0 if len(self.fills) == 1 else self.sources[i]]
            self._diff = (x - fill).astype(self.dtype)
            self._fill = fill.astype(self.dtype)
        self._at = i

    def write(self, out: np.ndarray, i: int, masks: np.ndarray) -> None:
        """``out[k] = fill + (x_i - fill) * masks[k]``; ``masks`` ``[k, *lead]`` is broadcast
        over the input's trailing dimensions."""
        self._prepare(i)
        diff, lead = self._diff, masks.ndim - 1
        trailing = diff.shape[lead:]
        if 1 < int(np.prod(trailing)) <= 16:
            # A few channels: one pass per channel runs NumPy's loops along the
            # masks' rows (about twice as fast as broadcasting over a short last axis).
            flat_out = out.reshape(out.shape[:1 + lead] + (-1,))
            flat_diff = diff.reshape(diff.shape[:lead] + (-1,))
            for c in range(flat_diff.shape[-1]):
                np.multiply(flat_diff[..., c], masks, out=flat_out[..., c], casting="unsafe")
        else:
            m = masks.reshape(masks.shape + (1,) * len(trailing))
            np.multiply(diff, m, out=out, casting="unsafe")
        if self._fill is not None:
            np.add(out, self._fill, out=out)


def broadcast_mask(values: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """``values`` (``[n, *lead]``) repeated over the trailing dimensions of ``[n, *shape]``."""
    v = values.reshape(values.shape + (1,) * (len(shape) + 1 - values.ndim))
    return np.broadcast_to(v, (len(values), *shape)).astype(dtype)


# ---------------------------------------------------------------------------
# Seeds and samples


#: Samples per block of :class:`BlockSampler` (fixed: it decides which samples
#: come from which generator, so changing it changes the numbers).
SAMPLE_BLOCK = 64


def sample_key(seed: int | np.random.Generator | None) -> int:
    """The 63-bit key of a call's samples.

    An int: a fixed hash of it (the same seed, the same samples); a
    ``np.random.Generator``: one draw from it (consecutive calls differ);
    ``None``: fresh entropy.
    """
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0]) >> (64 - KEY_BITS)
    return noise_key(seed)


class BlockSampler:
    """A reproducible stream of random samples, addressable by index.

    Sample ``j`` is item ``j % block`` of block ``j // block``, and block
    ``b`` is ``draw(rng_b, block)`` with ``rng_b`` seeded by
    ``SeedSequence(key, spawn_key=(b,))``. Any ``take(a, b)`` therefore
    returns the same samples whatever the chunks asked before: results do
    not depend on ``batch_size`` or on how many samples a call uses.

    Args:
      key: the stream's key (:func:`sample_key`).
      draw: ``draw(rng, count)`` returns a tuple of arrays of ``count`` rows.
      block: samples per block.
    """

    def __init__(self, key: int, draw: Callable[[np.random.Generator, int], tuple],
                 block: int = SAMPLE_BLOCK) -> None:
        self.key, self.draw, self.block = int(key), draw, int(block)
        self._cached: tuple[int, tuple] | None = None

    def _block(self, b: int) -> tuple:
        if self._cached is None or self._cached[0] != b:
            rng = np.random.default_rng(np.random.SeedSequence(self.key, spawn_key=(b,)))
            self._cached = (b, tuple(self.draw(rng, self.block)))
        return self._cached[1]

    def take(self, start: int, stop: int) -> tuple:
        """Samples ``start .. stop-1``: a tuple of arrays, one row per sample."""
        parts: list[tuple] = []
        j = start
        while j < stop:
            b, offset = divmod(j, self.block)
            n = min(self.block - offset, stop - j)
            parts.append(tuple(a[offset:offset + n] for a in self._block(b)))
            j += n
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(arrays) for arrays in zip(*parts))


class Streams:
    """Where each input of a kernel call gets its sample key.

    ``GetMask``/``GetMaskBatch``: one key for the call, shared by every input
    (so a batch equals the stacked single calls). ``GetSmoothedMask``: a
    generator from which each noisy copy draws its own key, in order, so the
    copies get independent samples whatever the chunking.
    """

    def __init__(self, key: int | None = None, generator: np.random.Generator | None = None
                 ) -> None:
        self.key, self.generator = key, generator

    def keys(self, n: int) -> list[int]:
        if self.generator is None:
            return [int(self.key)] * n
        return [noise_key(self.generator) for _ in range(n)]


# ---------------------------------------------------------------------------
# The base classes


class PerturbationSaliency(TF1Saliency):
    """Base of the methods that need only forward values of perturbed inputs.

    Built on a TF1 graph, the backend is a :class:`ForwardBackend` (no ops,
    no gradients needed); ``from_backend`` takes any backend that has
    :attr:`required_keys` (the core API's ``call_model_function`` included).
    """

    #: Perturbed copies per ``session.run`` unless the caller says otherwise.
    default_batch_size: int = 64

    #: The backend keys the method asks for.
    required_keys: tuple[str, ...] = (OUTPUT_LAYER_VALUES,)

    #: Needs no gradient: ``y`` need not be differentiable with respect to ``x``.
    forward_only: bool = True
    backend_keys = (OUTPUT_LAYER_VALUES,)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Backend | None = None) -> None:
        super().__init__(graph, session, y, x, backend=backend)
        missing = [k for k in self.required_keys if k not in self.backend.keys]
        if missing:
            raise ValueError(
                f"backend: {type(self).__name__} needs the keys {missing}; this backend "
                f"has {sorted(self.backend.keys)}"
            )

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> Backend:
        return ForwardBackend(graph, session, y, x)


class RandomizedSaliency(PerturbationSaliency):
    """A perturbation method that draws random samples: the ``seed=`` rules.

    ``seed`` (``None``, a non-negative int or a ``np.random.Generator``)
    decides every sample: the same seed gives the same mask, whatever
    ``batch_size``, and each input of ``GetMaskBatch`` gets the samples
    ``GetMask`` would give it. In ``GetSmoothedMask`` the one ``seed`` draws
    the noise and, for each noisy copy, its own samples.
    """

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
        """SmoothGrad over this method (see :meth:`TF1Saliency.GetSmoothedMask`).

        ``seed`` draws both the noise and each noisy copy's own random
        samples (masks, coalitions), so the same seed gives the same mask
        whatever ``batch_size``. ``**kwargs``: ``statistic``, ``batch_size``
        and the method's ``GetMask`` arguments (except its ``seed``).
        """
        seed = check_seed("seed", seed)
        if "_streams" in kwargs:
            raise TypeError(f"{type(self).__name__}.GetSmoothedMask: unexpected arguments "
                            "['_streams']")
        if isinstance(seed, np.random.Generator):  # one draw for the samples, one for the noise
            streams = np.random.default_rng(sample_key(seed))
        elif seed is None:
            streams = np.random.default_rng()
        else:  # the noise is that of any method's GetSmoothedMask with this seed
            streams = np.random.default_rng([noise_key(seed), 1])
        return super().GetSmoothedMask(x_value, feed_dict, stdev_spread, nsamples, magnitude,
                                       seed=seed, _streams=streams, **kwargs)

    def _streams(self, call: str, seed: Any, streams: Any) -> Streams:
        """The :class:`Streams` of one public call (checks ``seed``)."""
        seed = check_seed("seed", seed)
        if streams is not None:
            if call != "GetSmoothedMask" or not isinstance(streams, np.random.Generator):
                raise TypeError(f"{type(self).__name__}.{call}: unexpected arguments "
                                "['_streams']")
            return Streams(generator=streams)
        if call == "GetSmoothedMask":  # plan(): no generator handed over
            return Streams(generator=np.random.default_rng(sample_key(seed)))
        return Streams(key=sample_key(seed))


# ---------------------------------------------------------------------------
# Fill values


def check_fill(name: str, value: Any, xs: np.ndarray, call: str) -> np.ndarray | None:
    """A fill (baseline) for perturbed inputs: a number, or an input-shaped array.

    Returns ``None`` for 0 (the inputs are multiplied by the masks), else an
    array ``[1 or N, *one]`` (``GetMaskBatch`` may give one per input).
    """
    one = xs.shape[1:]
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        fill = check_finite_number(name, value)
        return None if fill == 0.0 else np.full((1, *one), fill)
    if value is None:
        raise TypeError(f"{name}: expected a number or an array of the input's shape {one}, "
                        "got None")
    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if arr.ndim == 0 and arr.dtype.kind in "iuf":
        return check_fill(name, arr.item(), xs, call)
    if arr.shape == one:
        return check_array(name, arr, one, batched=False)[None]
    if call == "GetMaskBatch" and arr.shape == xs.shape:
        return check_array(name, arr, one, batched=True)
    also = f" (or one per input, [N, *{one}])" if call == "GetMaskBatch" else ""
    raise ValueError(f"{name}: expected a number or an array of the input's shape {one}{also}, "
                     f"got {describe(arr)}")


# ---------------------------------------------------------------------------
# Segments: superpixels, feature groups, time windows

#: Most segments a fit takes (its normal equations are segments x segments).
MAX_SEGMENTS = 2048

#: The Felzenszwalb scale of the default superpixels (one of XRAI's six scales:
#: about 40-60 superpixels on a natural 224x224 image, as LIME's default).
DEFAULT_SCALE = 250


def felzenszwalb_partition(image: Any, scale: float = DEFAULT_SCALE) -> np.ndarray:
    """Superpixels of an image ``[H, W(, C)]``: an int ``[H, W]`` label array (0 .. n-1).

    XRAI's segmentation (:func:`saliency_tf1.methods.xrai.felzenszwalb_labels`:
    the image rescaled to ``[-1, 1]`` and to 224x224, Felzenszwalb and
    Huttenlocher's graph segmentation with XRAI's sigma and minimum size,
    labels resized back), at one scale and without dilation, so the segments
    partition the image. Needs scikit-image.
    """
    from .xrai import (
        FELZENSZWALB_MIN_SIZE,
        FELZENSZWALB_SIGMA,
        SEGMENTATION_RANGE,
        SEGMENTATION_SHAPE,
        _skimage,
    )

    skimage = _skimage()
    image = np.asarray(image, np.float64)
    low, high = image.min(), image.max()
    span = high - low
    scaled = (image - low) / span if span > 0 else np.zeros_like(image)
    scaled = scaled * (SEGMENTATION_RANGE[1] - SEGMENTATION_RANGE[0]) + SEGMENTATION_RANGE[0]
    scaled = skimage.transform.resize(scaled, SEGMENTATION_SHAPE, order=3, mode="constant",
                                      preserve_range=True, anti_aliasing=True)
    labels = skimage.segmentation.felzenszwalb(
        scaled, scale=scale, sigma=FELZENSZWALB_SIGMA, min_size=FELZENSZWALB_MIN_SIZE,
        channel_axis=-1 if scaled.ndim == 3 else None)
    labels = skimage.transform.resize(labels, image.shape[:2], order=0, preserve_range=True,
                                      mode="constant", anti_aliasing=False).astype(np.int64)
    return np.unique(labels, return_inverse=True)[1].reshape(image.shape[:2])


@dataclass(frozen=True)
class Partition:
    """Segments of one input, numbered 0 .. n-1.

    Attributes:
      index: int array over the leading dimensions of the input it covers;
        ``index[p]`` is the segment (0 .. n-1) of element ``p``.
      ids: the caller's segment id of each segment (ascending).
    """

    index: np.ndarray
    ids: np.ndarray

    @property
    def n(self) -> int:
        return len(self.ids)

    def spread(self, values: np.ndarray) -> np.ndarray:
        """``values[..., s]`` at every element of segment ``s``: ``[..., *index.shape]``."""
        return np.take(values, self.index, axis=-1)

    @classmethod
    def of(cls, labels: np.ndarray) -> Partition:
        ids, inverse = np.unique(labels, return_inverse=True)
        return cls(inverse.reshape(labels.shape).astype(np.int32), ids)


class SegmentCache:
    """Default partitions of a few recent inputs, by content (thread-safe)."""

    def __init__(self, size: int = 8) -> None:
        self._store: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, image: np.ndarray, make: Callable[[np.ndarray], np.ndarray]) -> Partition:
        key = (image.shape, image.dtype.str,
               hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest())
        with self._lock:
            found = self._store.get(key)
            if found is not None:
                self._store.move_to_end(key)
                return found
        found = Partition.of(make(image))
        with self._lock:
            self._store[key] = found
            while len(self._store) > self._size:
                self._store.popitem(last=False)
        return found


def _check_labels(labels: Any, one: tuple[int, ...], where: str) -> Partition:
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{where}: expected an integer array of segment ids, got dtype "
                        f"{arr.dtype}")
    if arr.ndim == 0 or arr.shape != one[:arr.ndim]:
        raise ValueError(
            f"{where}: expected an array over the input's leading dimensions (a prefix of its "
            f"shape {one}, e.g. {one[:2] if len(one) > 1 else one}), got shape {arr.shape}"
        )
    part = Partition.of(arr)
    if part.n > MAX_SEGMENTS:
        raise ValueError(f"{where}: expected at most {MAX_SEGMENTS} segments, got {part.n}")
    return part


def check_segments(segments: Any, xs: np.ndarray, call: str,
                   default: Callable[[np.ndarray], Partition]) -> list[Partition]:
    """One :class:`Partition` per public input (``xs`` is ``[N, ...]``).

    ``segments``: ``None`` (``default(x)`` of each input), one int array over
    the leading dimensions of an input (shared), or, in ``GetMaskBatch``, a
    list of such arrays or an ``[N, ...]`` array with one per input.
    """
    one = xs.shape[1:]
    n = len(xs)
    if segments is None:
        return [default(x) for x in xs]
    if isinstance(segments, (list, tuple)) and call == "GetMaskBatch":
        if len(segments) != n:
            raise ValueError(f"segments: expected one array per input ({n}), got "
                             f"{len(segments)}")
        return [_check_labels(s, one, f"segments[{k}]") for k, s in enumerate(segments)]
    arr = np.asarray(segments)
    if (call == "GetMaskBatch" and arr.ndim >= 2 and arr.shape[0] == n
            and arr.shape[1:] == one[:arr.ndim - 1] and arr.shape != one[:arr.ndim]):
        return [_check_labels(s, one, f"segments[{k}]") for k, s in enumerate(arr)]
    shared = _check_labels(arr, one, "segments")
    return [shared] * n


def default_partition(cache: SegmentCache) -> Callable[[np.ndarray], Partition]:
    """The default segments of an input: Felzenszwalb superpixels of an image
    (``[H, W]`` or ``[H, W, C]``), one group per feature of a vector ``[F]``."""

    def make(x: np.ndarray) -> Partition:
        if x.ndim == 1:
            if len(x) > MAX_SEGMENTS:
                raise ValueError(
                    f"segments: a vector input of {len(x)} features needs feature groups "
                    f"(at most {MAX_SEGMENTS}); pass segments=")
            return Partition.of(np.arange(len(x)))
        if x.ndim not in (2, 3):
            raise ValueError(
                f"segments: no default for inputs of shape {x.shape}; pass an int array of "
                "segment ids over the input's leading dimensions")
        return cache.get(x, felzenszwalb_partition)

    return make


# ---------------------------------------------------------------------------
# Weighted linear fits, streamed


class WeightedLinearFit:
    """A weighted least-squares fit ``y ~ b + z . beta`` streamed as normal equations.

    :meth:`add` accumulates ``sum w zz^T``, ``sum w z y`` and ``sum w y^2``
    (``z`` with a leading 1) in float64, so memory is ``(d + 1)^2`` numbers
    however many samples are added. The solvers are a few lines of NumPy
    linear algebra (``numpy.linalg.lstsq`` on the small ``(d+1)``-square
    system, which also takes rank-deficient designs), rather than scikit-learn:
    no dependency, and the sums can be built chunk by chunk as the model
    answers, which a fit on the whole design matrix could not.
    """

    def __init__(self, d: int) -> None:
        self.d = d
        self.gram = np.zeros((d + 1, d + 1))
        self.moment = np.zeros(d + 1)
        self.yy = 0.0

    def add(self, z: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        """Adds samples: ``z`` ``[k, d]`` (0/1), values ``y`` ``[k]``, weights ``w`` ``[k]``."""
        design = np.empty((len(z), self.d + 1))
        design[:, 0] = 1.0
        design[:, 1:] = z
        weighted = design * w[:, None]
        self.gram += design.T @ weighted
        self.moment += weighted.T @ y
        self.yy += float(np.dot(w * y, y))

    def _r2(self, beta: np.ndarray, shift: float = 0.0) -> float:
        """Weighted R^2 of ``y - shift ~ [1, z] . beta`` from the sums."""
        sw, swy = self.gram[0, 0], self.moment[0] - shift * self.gram[0, 0]
        moment = self.moment - shift * self.gram[0]
        yy = self.yy - 2 * shift * self.moment[0] + shift * shift * sw
        residual = max(yy - 2 * beta @ moment + beta @ self.gram @ beta, 0.0)
        total = max(yy - swy * swy / sw, 0.0) if sw > 0 else 0.0
        scale = max(abs(yy), 1e-300)
        if total <= 1e-12 * scale:
            return 1.0 if residual <= 1e-12 * scale else 0.0
        return float(1.0 - residual / total)

    def ridge(self, alpha: float = 0.0) -> tuple[np.ndarray, float, float]:
        """LIME's fit: ``min sum w (y - b - z.beta)^2 + alpha |beta|^2`` (``b`` not penalised).

        Returns ``(beta [d], b, weighted R^2)``; the minimum-norm solution if
        the design is rank deficient.
        """
        system = self.gram.copy()
        system[np.arange(1, self.d + 1), np.arange(1, self.d + 1)] += alpha
        theta = np.linalg.lstsq(system, self.moment, rcond=None)[0]
        return theta[1:], float(theta[0]), self._r2(theta)

    def constrained(self, offset: float, total: float) -> tuple[np.ndarray, float]:
        """KernelSHAP's fit: ``min sum w (y - offset - z.phi)^2`` subject to ``sum phi = total``.

        Solved exactly with a Lagrange multiplier (the KKT system), then the
        constraint's float rounding is spread evenly, so ``sum phi = total``.
        Returns ``(phi [d], weighted R^2)``.
        """
        d = self.d
        gram = self.gram[1:, 1:]
        moment = self.moment[1:] - offset * self.gram[1:, 0]
        kkt = np.zeros((d + 1, d + 1))
        kkt[:d, :d] = gram
        kkt[:d, d] = kkt[d, :d] = 1.0
        rhs = np.append(moment, total)
        phi = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:d]
        phi += (total - phi.sum()) / d
        return phi, self._r2(np.append(0.0, phi), shift=offset)
