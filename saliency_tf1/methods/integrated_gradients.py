"""Integrated Gradients."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import Backend
from ..engine.checks import check_baselines, check_no_extra
from ..engine.paths import integrate_paths, quadrature, straight_rows
from .base import TF1Saliency
from .ingraph import PathBatches


def integrated_gradients(
    backend: Backend,
    inputs: np.ndarray,
    baselines: np.ndarray,
    sources: np.ndarray,
    feed: Any,
    batch_size: int,
    alphas: np.ndarray,
    weights: np.ndarray,
    *,
    with_error: bool = False,
    progress: bool | None = None,
    paths: PathBatches | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """IG masks ``[N, ...]`` of many inputs in one stream of batches, and their errors.

    ``baselines`` is ``[1 or N, ...]``; ``alphas``/``weights`` the quadrature
    nodes and weights of the path integral. With ``with_error`` also returns
    the completeness errors ``sum(mask) - (f(x) - f(baseline))``, ``[N]``
    (else ``None``). The path rows are computed in the inputs' float precision
    (float32 for float32 inputs; :func:`~saliency_tf1.engine.paths.straight_rows`)
    into two reused buffers, so they can differ from PAIR's float64 rows (rounded
    when fed) by a unit in the last float32 place. With ``paths`` (a TF1
    model's :class:`~saliency_tf1.methods.ingraph.PathBatches`) the same rows
    are built in the graph instead, from the inputs and baselines fed.
    """
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
    # The rows' arithmetic is in the work dtype: nodes cast once, no float64 temporaries.
    nodes = np.asarray(alphas).astype(work)

    def fill_rows(i, k, out):
        straight_rows(out, i, k, baselines, diffs, nodes)
        return weights[k]

    if paths is not None:
        sums, outputs = paths.integrate(
            inputs, baselines, nodes, weights, sources, feed, batch_size,
            fetch_outputs=with_error, progress=progress, desc="IntegratedGradients")
    else:
        sums, outputs = integrate_paths(
            backend, len(inputs), len(alphas), fill_rows, feed, sources, batch_size,
            row_shape=inputs.shape[1:], dtype=work, fetch_outputs=with_error,
            progress=progress, desc="IntegratedGradients")
    masks = (sums * diffs).astype(np.result_type(work, np.float32), copy=False)
    if not with_error:
        return masks, None
    totals = masks.reshape(len(masks), -1).sum(axis=1, dtype=np.float64)
    return masks, totals - (outputs[:, ends[1]] - outputs[:, ends[0]])


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

    multi_input = True
    #: The path points are built in the graph (TF1), next to the model.
    in_graph_builders = (("paths", {}),)

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
            (see :mod:`saliency_tf1.engine.paths`).
          return_error: also return the completeness error
            ``sum(mask) - (f(x_value) - f(x_baseline))``.
          progress: show a progress bar (``None``: for long runs on a terminal).

        Returns:
          The mask, or ``(mask, error)`` when ``return_error``.
        """
        out = super().GetMask(x_value, feed_dict, x_baseline=x_baseline, x_steps=x_steps,
                              batch_size=batch_size, rule=rule, return_error=return_error,
                              progress=progress)
        return (out[0], float(out[1])) if return_error else out

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
        return super().GetMaskBatch(x_batch, feed_dict, x_baseline=x_baseline, x_steps=x_steps,
                                    batch_size=batch_size, rule=rule, return_error=return_error,
                                    progress=progress)

    # -- checks and kernel -----------------------------------------------------------

    def _check_args(self, xs, call, x_baseline=None, x_steps=25, rule="pair",
                    return_error=False, progress=None, **kwargs):
        hint = (" (return_error is available from GetMask/GetMaskBatch only)"
                if call == "GetSmoothedMask" and return_error else "")
        if call == "GetSmoothedMask" and return_error:
            kwargs["return_error"] = return_error
        check_no_extra(f"IntegratedGradients.{call}", kwargs, hint)
        per_input = call == "GetMaskBatch"
        x_baseline = self._packed(x_baseline, "x_baseline", per_input=per_input)
        baselines = check_baselines(x_baseline, xs, per_input=per_input)
        alphas, weights = quadrature(rule, x_steps)
        args = {"baselines": baselines, "alphas": alphas, "weights": weights,
                "return_error": bool(return_error), "progress": progress}
        return args, len(alphas)

    def _masks(self, inputs, sources, feed, batch_size, baselines, alphas, weights,
               return_error, progress):
        # A per-input baseline belongs to the public call's input a row derives from.
        if len(baselines) > 1:
            baselines = baselines[sources]
        masks, errors = integrated_gradients(
            self.backend, inputs, baselines, sources, feed, batch_size, alphas, weights,
            with_error=return_error, progress=progress, paths=self._builder("paths"))
        return (masks, errors) if return_error else masks
