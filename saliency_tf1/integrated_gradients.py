"""Integrated Gradients, and the batched path integration that Blur IG shares."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .backend import INPUT_OUTPUT_GRADIENTS, OUTPUT_LAYER_VALUES, Backend
from .base import TF1Saliency, check_positive_int, chunk_bounds, progress_bar
from .paths import check_baselines, quadrature


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


class IntegratedGradients(TF1Saliency):
    """Integrated Gradients: ``(x - x') * integral_0^1 dy/dx(x' + a (x - x')) da``.

    Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
    ICML 2017, arXiv:1703.01365. The attributions sum to ``f(x) - f(x')`` up to
    the quadrature error (completeness); ``return_error=True`` reports it.

    The path points of one input (and of many, in ``GetMaskBatch``, and of
    SmoothGrad's noisy copies, in ``GetSmoothedMask``) are stacked into
    ``session.run`` batches of ``batch_size`` rows (built while the previous
    batch runs); the numbers do not depend on ``batch_size`` beyond float
    rounding. With ``rule="pair"`` (the default) the numbers are PAIR
    ``saliency.tf1`` 0.2.1's for the same baseline and ``x_steps``.

    Example::

        ig = IntegratedGradients(graph, session, logits[:, 3], x)
        mask = ig.GetMask(image, x_steps=50)
        mask, error = ig.GetMask(image, x_steps=100, rule="gauss_legendre",
                                 return_error=True)
        # XRAI-style: one input, a black and a white baseline, in one stream of batches
        two = ig.GetMaskBatch(np.stack([image, image]),
                              x_baseline=np.stack([np.zeros_like(image), np.ones_like(image)]))
    """

    #: Path points per ``session.run`` by default (``batch_size=None``).
    default_batch_size = 32

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        x_baseline: Any = None,
        x_steps: int = 25,
        batch_size: int | None = None,
        *,
        rule: str = "pair",
        return_error: bool = False,
        progress: bool | None = None,
    ) -> np.ndarray | tuple[np.ndarray, float]:
        """Returns the Integrated Gradients mask of one input, shape ``x_value.shape``.

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          x_baseline: the path's start, shape ``x_value.shape``; zeros if ``None``.
          x_steps: number of path points (quadrature nodes).
          batch_size: most path points per ``session.run`` (``None``: the
            class default). Decides only how the work is run.
          rule: the quadrature rule, one of ``"pair"`` (PAIR's, first order),
            ``"trapezoid"``, ``"midpoint"``, ``"gauss_legendre"``
            (see :mod:`saliency_tf1.paths`).
          return_error: also return the completeness error
            ``sum(mask) - (f(x_value) - f(x_baseline))``.
          progress: show a progress bar (``None``: for long runs on a terminal).

        Returns:
          The mask, or ``(mask, error)`` when ``return_error``.
        """
        x = self._check_inputs(x_value, "x_value", batched=False)
        baseline = check_baselines(x_baseline, x[None], per_input=False)
        masks, errors = self._attribute(x[None], feed_dict, baseline, x_steps, batch_size,
                                        rule, return_error, progress)
        return (masks[0], float(errors[0])) if return_error else masks[0]

    def GetMaskBatch(
        self,
        x_batch: Any,
        feed_dict: dict | None = None,
        *,
        x_baseline: Any = None,
        x_steps: int = 25,
        batch_size: int | None = None,
        rule: str = "pair",
        return_error: bool = False,
        progress: bool | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Returns one mask per input of ``x_batch`` (``[N, ...]``); all paths share batches.

        ``x_baseline`` is one baseline for every input (an input's shape) or
        one per input (``x_batch``'s shape). Explaining one input against two
        baselines in one stream of batches (as XRAI does)::

            ig.GetMaskBatch(np.stack([x, x]), x_baseline=np.stack([black, white]))

        With ``return_error`` returns ``(masks, errors)``, ``errors`` of shape
        ``[N]``. Other arguments as in :meth:`GetMask`.
        """
        xs = self._check_inputs(x_batch, "x_batch", batched=True)
        baselines = check_baselines(x_baseline, xs)
        masks, errors = self._attribute(xs, feed_dict, baselines, x_steps, batch_size, rule,
                                        return_error, progress)
        return (masks, errors) if return_error else masks

    # -- kernel ----------------------------------------------------------------------

    def _attribute(self, xs, feed_dict, baselines, x_steps, batch_size, rule, return_error,
                   progress):
        batch_size = self._batch_size(batch_size)
        alphas, weights = quadrature(rule, x_steps)
        feed = self.backend.prepare_feed(feed_dict, len(xs))
        return self._integrate(xs, baselines, np.arange(len(xs)), feed, batch_size, alphas,
                               weights, bool(return_error), progress)

    def _rows_per_input(self, x_steps: int = 25, **kwargs: Any) -> int:
        return check_positive_int("x_steps", x_steps)

    def _masks(self, inputs, sources, feed, batch_size, x_baseline=None, x_steps=25,
               rule="pair", progress=None, **kwargs):
        if kwargs:
            raise TypeError(
                f"IntegratedGradients.GetSmoothedMask: unexpected arguments {sorted(kwargs)}"
                + (" (return_error is available from GetMask/GetMaskBatch only)"
                   if "return_error" in kwargs else "")
            )
        baselines = check_baselines(x_baseline, inputs)
        alphas, weights = quadrature(rule, x_steps)
        return self._integrate(inputs, baselines, sources, feed, batch_size, alphas, weights,
                               False, progress)[0]

    def _integrate(self, inputs, baselines, sources, feed, batch_size, alphas, weights,
                   with_error, progress):
        """Masks ``[N, ...]`` and completeness errors ``[N]`` (or ``None``)."""
        work = np.result_type(inputs.dtype, baselines.dtype, np.float32)
        inputs = inputs.astype(work, copy=False)
        baselines = baselines.astype(work, copy=False)
        diffs = inputs - baselines
        ends = []
        if with_error:
            # f(baseline) and f(x) come from the path's own rows when the rule has
            # alpha = 0 and 1; otherwise from two extra rows of weight 0 in the stream.
            for end in (0.0, 1.0):
                hit = np.flatnonzero(alphas == end)
                if len(hit) == 0:
                    alphas, weights = np.append(alphas, end), np.append(weights, 0.0)
                    hit = [len(alphas) - 1]
                ends.append(hit[0])
        shared = len(baselines) == 1
        expand = (slice(None),) + (None,) * (inputs.ndim - 1)

        def make_rows(i, k):
            base = baselines[0] if shared else baselines[i]
            return base + alphas[k][expand] * diffs[i], weights[k]

        sums, outputs = integrate_paths(
            self.backend, len(inputs), len(alphas), make_rows, feed, sources, batch_size,
            fetch_outputs=with_error, progress=progress, desc="IntegratedGradients")
        masks = (sums * diffs).astype(np.result_type(work, np.float32), copy=False)
        if not with_error:
            return masks, None
        totals = masks.reshape(len(masks), -1).sum(axis=1, dtype=np.float64)
        return masks, totals - (outputs[:, ends[1]] - outputs[:, ends[0]])
