"""LIME and KernelSHAP on superpixels (or feature groups, or time windows).

Both switch segments of the input on (kept) and off (replaced by a baseline)
at random, run the model on every such copy, and fit a weighted linear model
of the output on the on/off pattern; the mask gives each element its
segment's coefficient.

* LIME: Ribeiro, Singh and Guestrin, "'Why Should I Trust You?': Explaining
  the Predictions of Any Classifier", KDD 2016, arXiv:1602.04938.
* KernelSHAP: Lundberg and Lee, "A Unified Approach to Interpreting Model
  Predictions", NeurIPS 2017, arXiv:1705.07874.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Any

import numpy as np

from ..engine.checks import check_finite_number, check_no_extra, check_positive_int
from .surrogate import (
    Blender,
    BlockSampler,
    Partition,
    RandomizedSaliency,
    SegmentCache,
    WeightedLinearFit,
    broadcast_mask,
    check_fill,
    check_segments,
    default_partition,
    stream_rows,
)


@dataclass
class SurrogateOutput:
    """A surrogate explanation of one input, with the fit behind it.

    Attributes:
      attribution_mask: the input's shape; each element holds its segment's
        coefficient.
      coefficients: ``[d]``, one per segment (LIME: the linear model's
        weights; KernelSHAP: the Shapley value estimates ``phi``).
      segment_ids: ``[d]``, the caller's id of each segment (ascending).
      segments: int array over the input's leading dimensions: the segment
        (``0 .. d-1``, the index into ``coefficients``) of each element.
      intercept: LIME: the fit's intercept; KernelSHAP: ``f(baseline)``
        (``phi_0``).
      output_value: ``f(x)``.
      r2: the weighted R^2 of the linear fit on the samples.
      n_samples: model rows evaluated for this input.
    """

    attribution_mask: np.ndarray
    coefficients: np.ndarray
    segment_ids: np.ndarray
    segments: np.ndarray
    intercept: float
    output_value: float
    r2: float
    n_samples: int


class _Fit:
    """The running state of one input's fit."""

    def __init__(self, part: Partition) -> None:
        self.part = part
        self.fit = WeightedLinearFit(part.n)
        self.output_value = float("nan")
        self.base_value = float("nan")


class SuperpixelSurrogate(RandomizedSaliency):
    """What LIME and KernelSHAP share: segments, baseline, sampling, the streamed fit.

    Subclasses say which coalitions ``z`` (``[k, d]`` on/off patterns) row
    ``j`` of an input is, with which weight, and how the fit is solved.
    """

    _name = ""
    #: The copies are made in the graph (TF1), next to the model.
    in_graph_builders = (("segments", {}),)

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Any = None) -> None:
        super().__init__(graph, session, y, x, backend=backend)
        self._segment_cache = SegmentCache()

    # -- public API -------------------------------------------------------------------

    def GetMaskWithDetails(self, x_value: Any, feed_dict: dict | None = None, *,
                           batch_size: int | None = None, **kwargs: Any) -> SurrogateOutput:
        """Returns a :class:`SurrogateOutput` for one input; arguments as ``GetMask``."""
        x = self._check_inputs(x_value, "x_value", batched=False)[None]
        plan = self._plan(x, "GetMaskWithDetails", batch_size, kwargs)
        feed = self.backend.prepare_feed(feed_dict, 1)
        return self._fit(x, np.zeros(1, np.int64), feed, plan.batch_size, **plan.args)[0]

    # -- to be written by each method -------------------------------------------------

    def _check_own(self, call: str, kwargs: dict) -> dict:
        check_no_extra(f"{type(self).__name__}.{call}", kwargs)
        return {}

    def _rows(self, d: int, n_samples: int) -> int:
        raise NotImplementedError

    def _sampler(self, key: int, d: int, n_samples: int) -> Any:
        raise NotImplementedError

    def _coalitions(self, sampler: Any, d: int, a: int, b: int, own: dict
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``a .. b-1`` of an input: on/off patterns ``[k, d]`` and their fit weights."""
        raise NotImplementedError

    def _add(self, state: _Fit, a: int, z: np.ndarray, weights: np.ndarray,
             values: np.ndarray) -> None:
        raise NotImplementedError

    def _solve(self, state: _Fit, own: dict) -> tuple[np.ndarray, float, float]:
        raise NotImplementedError

    # -- checks and kernel ------------------------------------------------------------

    def _check_args(self, xs, call, segments=None, n_samples=1000, baseline=0.0, seed=None,
                    progress=None, _streams=None, **kwargs):
        own = self._check_own(call, kwargs)
        n_samples = check_positive_int("n_samples", n_samples)
        fills = check_fill("baseline", baseline, xs, call)
        parts = check_segments(segments, xs, call, default_partition(self._segment_cache))
        streams = self._streams(call, seed, _streams)
        rows = max(self._rows(p.n, n_samples) for p in parts)
        return {"parts": parts, "n_samples": n_samples, "fills": fills, "streams": streams,
                "own": own, "progress": progress}, rows

    def _masks(self, inputs, sources, feed, batch_size, **args):
        return np.stack([out.attribution_mask
                         for out in self._fit(inputs, sources, feed, batch_size, **args)])

    def _fit(self, inputs: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int, *,
             parts: list[Partition], n_samples: int, fills: np.ndarray | None, streams: Any,
             own: dict, progress: bool | None) -> list[SurrogateOutput]:
        n = len(inputs)
        mine = [parts[s] for s in sources]
        states = [_Fit(p) for p in mine]
        keys = streams.keys(n)
        samplers = [self._sampler(keys[i], mine[i].n, n_samples) for i in range(n)]
        counts = [self._rows(p.n, n_samples) for p in mine]
        blender = Blender(inputs, sources, fills, self.backend.input_dtype)

        def fill(i, a, b, out):
            z, weights = self._coalitions(samplers[i], mine[i].n, a, b, own)
            blender.write(out, i, mine[i].spread(z))
            return z, weights

        def consume(i, a, b, values, made):
            self._add(states[i], a, *made, values)

        segments = self._builder("segments")
        if segments is not None:
            segments.stream(
                inputs, sources, fills, np.stack([p.index for p in mine]), counts, feed,
                batch_size, lambda i, a, b: self._coalitions(samplers[i], mine[i].n, a, b, own),
                consume, progress, self._name)
        else:
            stream_rows(self.backend, inputs, sources, feed, batch_size, counts, fill, consume,
                        progress=progress, desc=self._name)
        out_dtype = np.result_type(inputs.dtype, np.float32)
        results = []
        for i, state in enumerate(states):
            coef, intercept, r2 = self._solve(state, own)
            mask = broadcast_mask(state.part.spread(coef)[None], inputs.shape[1:], out_dtype)[0]
            results.append(SurrogateOutput(mask, coef, state.part.ids, state.part.index,
                                           intercept, state.output_value, r2, counts[i]))
        return results


# ---------------------------------------------------------------------------
# LIME


def lime_coalitions(d: int, start: int, stop: int, key: int) -> np.ndarray:
    """LIME's samples ``start .. stop-1`` for ``d`` segments, ``[k, d]`` bool.

    Sample 0 is the input itself (all on), as in LIME; the others switch each
    segment on with probability 1/2, independently, from the stream of ``key``.
    """
    return _lime_take(_lime_sampler(key, d), d, start, stop)


def _lime_sampler(key: int, d: int) -> BlockSampler:
    return BlockSampler(key, lambda rng, count: (rng.random((count, d)) < 0.5,))


def _lime_take(sampler: BlockSampler, d: int, a: int, b: int) -> np.ndarray:
    z = np.ones((b - a, d), bool)
    first = max(a, 1)
    if b > first:
        z[first - a:] = sampler.take(first - 1, b - 1)[0]
    return z


def lime_weights(z: np.ndarray, kernel_width: float) -> np.ndarray:
    """LIME's proximity ``pi(z) = exp(-D(z)^2 / sigma^2)``, ``D`` the cosine distance of
    ``z`` to the all-on pattern: ``1 - sqrt(|z| / d)`` (1 when all are off)."""
    d = z.shape[1]
    distance = 1.0 - np.sqrt(z.sum(axis=1) / d)
    return np.exp(-(distance ** 2) / kernel_width ** 2)


class Lime(SuperpixelSurrogate):
    """LIME on segments: the weights of a linear model of ``y`` on which segments are kept.

    Ribeiro, Singh and Guestrin, "'Why Should I Trust You?': Explaining the
    Predictions of Any Classifier", KDD 2016, arXiv:1602.04938. For
    ``n_samples`` on/off patterns ``z`` over the ``d`` segments (the first
    all on; the others each segment on with probability 1/2), the model sees
    ``x`` where ``z`` is on and ``baseline`` elsewhere, and a ridge regression
    ``y ~ b + z . beta`` weighted by the proximity ``pi(z) = exp(-D(z)^2 /
    kernel_width^2)`` (``D``: cosine distance to the all-on pattern, as the
    ``lime`` package's image explainer) gives ``beta``. The mask gives each
    element its segment's ``beta``.

    Segments: superpixels of an image (default: Felzenszwalb's, XRAI's
    segmentation at one scale), feature groups of a vector (default: one per
    feature), time windows of a series (``segments=np.arange(T) // w``).

    The copies run in stacked batches of ``batch_size`` rows, made chunk by
    chunk, and the fit is accumulated as its normal equations as the values
    arrive (:class:`~saliency_tf1.methods.surrogate.WeightedLinearFit`), so
    memory does not grow with ``n_samples``. Needs only ``y``: any backend.

    Example::

        lime = Lime(graph, session, logits[:, 3], x)
        mask = lime.GetMask(image, n_samples=1000, seed=0)
        out = lime.GetMaskWithDetails(image, seed=0)    # coefficients, R^2, segments
    """

    _name = "LIME"

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        *,
        segments: Any = None,
        n_samples: int = 1000,
        baseline: Any = 0.0,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the LIME mask of one input, its shape.

        Args:
          x_value: one input (not batched).
          feed_dict: values for the graph's other placeholders.
          segments: an int array of segment ids over the input's leading
            dimensions (``[H, W]`` for an ``[H, W, C]`` image, ``[F]`` for
            features); ``None``: Felzenszwalb superpixels for an image
            ``[H, W(, C)]`` (needs scikit-image), one segment per feature for
            a vector. ``GetMaskBatch`` also takes a list with one per input.
          n_samples: perturbed copies (the first is the input itself).
          baseline: what switched-off segments become: a number or an array of
            the input's shape (``GetMaskBatch``: also one per input).
          kernel_width: ``sigma`` of the proximity kernel on the cosine distance.
          alpha: ridge penalty on the coefficients (the ``lime`` package's
            default is 1; 0 for plain weighted least squares).
          seed: ``None``, an int or a ``np.random.Generator``: the same seed,
            the same samples, whatever ``batch_size``.
          batch_size: copies per ``session.run``.
          progress: show a progress bar (``None``: only for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, segments=segments, n_samples=n_samples,
                               baseline=baseline, kernel_width=kernel_width, alpha=alpha,
                               seed=seed, batch_size=batch_size, progress=progress)

    def _check_own(self, call, kwargs):
        width = check_finite_number("kernel_width", kwargs.pop("kernel_width", 0.25))
        if width <= 0:
            raise ValueError(f"kernel_width: expected a number > 0, got {width}")
        alpha = check_finite_number("alpha", kwargs.pop("alpha", 1.0), minimum=0.0)
        check_no_extra(f"Lime.{call}", kwargs)
        return {"kernel_width": width, "alpha": alpha}

    def _rows(self, d, n_samples):
        return n_samples

    def _sampler(self, key, d, n_samples):
        return _lime_sampler(key, d)

    def _coalitions(self, sampler, d, a, b, own):
        z = _lime_take(sampler, d, a, b)
        return z, lime_weights(z, own["kernel_width"])

    def _add(self, state, a, z, weights, values):
        if a == 0:
            state.output_value = float(values[0])
        state.fit.add(z, values, weights)

    def _solve(self, state, own):
        return state.fit.ridge(own["alpha"])


# ---------------------------------------------------------------------------
# KernelSHAP


def shapley_kernel(d: int, size: np.ndarray) -> np.ndarray:
    """The Shapley kernel ``(d - 1) / (C(d, s) s (d - s))`` of coalitions of ``size`` s
    (``0 < s < d``)."""
    size = np.asarray(size)
    binom = np.array([comb(d, int(s)) for s in range(d + 1)], np.float64)
    return (d - 1) / (binom[size] * size * (d - size))


#: Largest number of segments whose coalitions KernelSHAP may enumerate.
_MAX_EXACT = 30


def kernel_shap_exact(d: int, n_samples: int) -> bool:
    """Whether ``n_samples`` covers every coalition but the empty and full one (``2^d - 2``)."""
    return d <= _MAX_EXACT and (1 << d) - 2 <= n_samples


def _shap_draw(d: int):
    sizes = np.arange(1, d)
    mass = (d - 1) / (sizes * (d - sizes))  # C(d, s) kernel(s): the kernel's weight per size
    probs = mass / mass.sum()

    def draw(rng: np.random.Generator, count: int) -> tuple[np.ndarray]:
        half = (count + 1) // 2
        size = rng.choice(sizes, size=half, p=probs)
        rank = np.argsort(np.argsort(rng.random((half, d)), axis=1), axis=1)
        z = rank < size[:, None]
        pairs = np.empty((2 * half, d), bool)
        pairs[0::2], pairs[1::2] = z, ~z
        return (pairs[:count],)

    return draw


def kernel_shap_coalitions(d: int, n_samples: int, start: int, stop: int, key: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """KernelSHAP's coalitions ``start .. stop-1`` (after its two fixed rows) and weights.

    With ``n_samples >= 2^d - 2`` every coalition but the empty and the full
    one, in binary order, weighted by the Shapley kernel (the fit then gives
    the exact Shapley values). Otherwise samples drawn from the kernel: a
    size ``s`` with probability proportional to ``(d - 1) / (s (d - s))``,
    then ``s`` segments at random, each followed by its complement (paired
    sampling), all of weight 1.
    """
    if kernel_shap_exact(d, n_samples):
        return _all_coalitions(d, start, stop)
    z = BlockSampler(key, _shap_draw(d)).take(start, stop)[0]
    return z, np.ones(len(z))


def _all_coalitions(d: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions ``start .. stop-1`` of the ``2^d - 2`` proper ones (binary order of
    ``1 .. 2^d - 2``) and their Shapley kernel weights."""
    codes = np.arange(start, stop, dtype=np.int64) + 1
    z = ((codes[:, None] >> np.arange(d)) & 1).astype(bool)
    return z, shapley_kernel(d, z.sum(axis=1))


class KernelShap(SuperpixelSurrogate):
    """KernelSHAP on segments: Shapley values of the segments, from a weighted linear fit.

    Lundberg and Lee, "A Unified Approach to Interpreting Model
    Predictions", NeurIPS 2017, arXiv:1705.07874 (Theorem 2). A segment is
    present (``x``) or absent (``baseline``); ``f(z)`` is the model on that
    copy. The fit minimises ``sum pi(z) (f(z) - f(0) - z . phi)^2`` under the
    efficiency constraint ``sum phi = f(x) - f(baseline)``, solved exactly
    (a Lagrange multiplier: the KKT system), with ``pi`` the Shapley kernel.
    With ``n_samples >= 2^d - 2`` every coalition is run and ``phi`` are the
    exact Shapley values; otherwise coalitions are sampled from the kernel,
    in complementary pairs (:func:`kernel_shap_coalitions`). The mask gives
    each element its segment's ``phi``; on a model additive over the
    segments ``phi`` is each segment's contribution exactly.

    Rows: ``f(x)``, ``f(baseline)``, then ``min(n_samples, 2^d - 2)``
    coalitions, in stacked batches of ``batch_size`` rows made chunk by chunk;
    the fit is accumulated as the values arrive, so memory does not grow
    with ``n_samples``. Segments and baseline as :class:`Lime`.

    Example::

        shap = KernelShap(graph, session, logits[:, 3], x)
        phi = shap.GetMaskWithDetails(image, n_samples=2000, seed=0).coefficients
    """

    _name = "KernelSHAP"

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        *,
        segments: Any = None,
        n_samples: int = 1000,
        baseline: Any = 0.0,
        seed: int | np.random.Generator | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the KernelSHAP mask of one input, its shape.

        Args:
          x_value: one input (not batched).
          feed_dict: values for the graph's other placeholders.
          segments: as :meth:`Lime.GetMask`.
          n_samples: coalitions evaluated besides ``x`` and the baseline (all
            ``2^d - 2`` of them, exactly, when that is not more).
          baseline: what absent segments become: a number or an array of the
            input's shape (``GetMaskBatch``: also one per input).
          seed: ``None``, an int or a ``np.random.Generator``: the same seed,
            the same samples, whatever ``batch_size``.
          batch_size: copies per ``session.run``.
          progress: show a progress bar (``None``: only for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, segments=segments, n_samples=n_samples,
                               baseline=baseline, seed=seed, batch_size=batch_size,
                               progress=progress)

    def _rows(self, d, n_samples):
        return 2 + min(n_samples, (1 << d) - 2 if d <= _MAX_EXACT else n_samples)

    def _sampler(self, key, d, n_samples):
        return None if kernel_shap_exact(d, n_samples) else BlockSampler(key, _shap_draw(d))

    def _coalitions(self, sampler, d, a, b, own):
        # Row 0: x (all present); row 1: the baseline (none); then the coalitions.
        z = np.zeros((b - a, d), bool)
        weights = np.zeros(b - a)
        if a == 0:
            z[0] = True
        first = max(a, 2)
        if b > first:
            if sampler is None:  # every coalition, Shapley kernel weights
                z[first - a:], weights[first - a:] = _all_coalitions(d, first - 2, b - 2)
            else:
                z[first - a:] = sampler.take(first - 2, b - 2)[0]
                weights[first - a:] = 1.0
        return z, weights

    def _add(self, state, a, z, weights, values):
        if a == 0:
            state.output_value = float(values[0])
        if a <= 1 < a + len(values):
            state.base_value = float(values[1 - a])
        skip = max(0, 2 - a)
        if len(values) > skip:
            state.fit.add(z[skip:], values[skip:], weights[skip:])

    def _solve(self, state, own):
        phi, r2 = state.fit.constrained(state.base_value, state.output_value - state.base_value)
        return phi, state.base_value, r2
