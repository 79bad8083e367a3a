"""Guided Integrated Gradients: an adaptive path that moves low-gradient features first."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS
from ..engine.batching import progress_bar
from ..engine.checks import (
    check_baselines,
    check_no_extra,
    check_positive_int,
    check_unit_interval,
)
from .base import TF1Saliency

#: Tolerance of "the step's L1 distance has been reached".
EPSILON = 1e-9


def guided_step(
    x: np.ndarray,
    x_input: np.ndarray,
    x_baseline: np.ndarray,
    gradient: np.ndarray,
    attribution: np.ndarray,
    alpha: float,
    fraction: float,
    max_dist: float,
    l1_target: float,
) -> None:
    """Moves the path point ``x`` one Guided IG step, in place, and adds to ``attribution``.

    All arrays are flat float64 views of one input. The step brings the L1
    distance ``|x - x_input|`` down to ``l1_target``: features that fell more
    than ``max_dist`` (in units of the straight line's ``alpha``) behind
    ``alpha`` are pulled up to ``alpha - max_dist``; then, repeatedly, the
    ``fraction`` of the still-movable features with the smallest ``|gradient|``
    move toward their bound at ``alpha + max_dist``, fully or by the share
    ``gamma`` that closes the gap. ``attribution += (x_new - x_old) * gradient``.
    """
    span = x_input - x_baseline
    lowest = max(alpha - max_dist, 0.0)
    highest = min(alpha + max_dist, 1.0)
    x_low = x_baseline + span * lowest
    x_high = x_baseline + span * highest
    candidates = gradient.astype(np.float64)  # |gradient| of features free to move, inf if not
    while True:
        before = x.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            position = np.where(span != 0, (x - x_baseline) / span, np.nan)
        position[np.isnan(position)] = highest  # features with no span never lag behind
        behind = position < lowest
        x[behind] = x_low[behind]
        l1 = float(np.abs(x - x_input).sum())
        if math.isclose(l1_target, l1, rel_tol=EPSILON, abs_tol=EPSILON):
            attribution += (x - before) * gradient
            return
        candidates[x == x_high] = np.inf
        magnitude = np.abs(candidates)
        threshold = np.quantile(magnitude, fraction, method="lower")
        chosen = (magnitude <= threshold) & (candidates != np.inf)
        room = float((np.abs(x - x_high) * chosen).sum())
        gamma = (l1 - l1_target) / room if room > 0 else np.inf
        if gamma > 1.0:
            x[chosen] = x_high[chosen]
        else:
            x[chosen] = (x + (x_high - x) * gamma)[chosen]
        attribution += (x - before) * gradient
        if gamma <= 1.0:
            return


class GuidedIG(TF1Saliency):
    """Guided Integrated Gradients.

    Kapishnikov et al., "Guided Integrated Gradients: an Adaptive Path Method
    for Removing Noise", CVPR 2021, arXiv:2106.09788. The path from the
    baseline to the input is built step by step: at step ``t`` the L1 distance
    to the input must shrink to ``(1 - t/x_steps)`` of the total, and it is
    shrunk by moving the features with the smallest absolute gradient first,
    each kept within ``max_dist`` (relative) of the straight line. The
    attribution is ``sum_t (x_{t+1} - x_t) * dy/dx(x_t)``. ``max_dist=0`` is
    Integrated Gradients with the left Riemann sum; ``max_dist=1, fraction=1``
    also follows the straight line. The numbers are PAIR ``saliency.tf1``
    0.2.1's for the same arguments.

    The path is sequential, so one input takes ``x_steps`` ``session.run``
    calls; ``GetMaskBatch`` (many inputs) and ``GetSmoothedMask`` (noisy
    samples) advance all their paths together, one row per path per run.

    Example::

        guided = GuidedIG(graph, session, logits[:, 3], x)
        mask = guided.GetMask(image, x_steps=200)
        masks = guided.GetMaskBatch(images)        # still 200 runs, N rows each
    """

    multi_input = True

    default_batch_size = 32

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        x_baseline: Any = None,
        x_steps: int = 200,
        fraction: float = 0.25,
        max_dist: float = 0.02,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the Guided IG attribution of one input (float64, shape ``x_value.shape``).

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders; never modified.
          x_baseline: the path's start, shape ``x_value.shape``; zeros if ``None``.
          x_steps: number of steps (gradient evaluations) along the path.
          fraction: share in ``[0, 1]`` of the features, smallest ``|gradient|``
            first, moved at each iteration of a step.
          max_dist: how far in ``[0, 1]`` (relative to the baseline-to-input
            distance) a feature may stray from the straight line.
          batch_size: most rows per ``session.run`` in ``GetMaskBatch`` and
            ``GetSmoothedMask`` (one row per path per step).
          progress: show a progress bar over the steps (``None``: for long runs on a
            terminal).
        """
        return super().GetMask(x_value, feed_dict, batch_size=batch_size,
                               x_baseline=x_baseline, x_steps=x_steps, fraction=fraction,
                               max_dist=max_dist, progress=progress)

    def _check_args(self, xs, call, x_baseline=None, x_steps=200, fraction=0.25,
                    max_dist=0.02, progress=None, **kwargs):
        check_no_extra(f"GuidedIG.{call}", kwargs)
        per_input = call == "GetMaskBatch"
        x_baseline = self._packed(x_baseline, "x_baseline", per_input=per_input)
        args = {
            "baselines": check_baselines(x_baseline, xs, per_input=per_input),
            "steps": check_positive_int("x_steps", x_steps),
            "fraction": check_unit_interval("fraction", fraction),
            "max_dist": check_unit_interval("max_dist", max_dist),
            "progress": progress,
        }
        return args, 1  # one row per path per run

    def _masks(self, inputs, sources, feed, batch_size, baselines, steps, fraction, max_dist,
               progress):
        if len(baselines) > 1:
            baselines = baselines[sources]
        count = len(inputs)
        x_input = inputs.astype(np.float64).reshape(count, -1)
        x_base = np.broadcast_to(baselines.astype(np.float64).reshape(len(baselines), -1),
                                 x_input.shape)
        x = x_base.copy()
        attribution = np.zeros_like(x_input)
        l1_total = np.abs(x_input - x_base).sum(axis=1)
        moving = np.flatnonzero(l1_total > 0)  # an input equal to its baseline gets zeros
        shape = inputs.shape[1:]
        with progress_bar(progress, steps if len(moving) else 0, "GuidedIG") as bar:
            for step in range(steps if len(moving) else 0):
                # One row per moving path, in runs of at most batch_size rows.
                gradients = self._evaluate(x[moving].reshape(len(moving), *shape),
                                           INPUT_OUTPUT_GRADIENTS, feed, sources[moving],
                                           batch_size)
                alpha = (step + 1.0) / steps
                for j, n in enumerate(moving):
                    guided_step(x[n], x_input[n], x_base[n], gradients[j].reshape(-1),
                                attribution[n], alpha, fraction, max_dist,
                                l1_total[n] * (1 - (step + 1) / steps))
                bar.update(1)
        return attribution.reshape(inputs.shape)
