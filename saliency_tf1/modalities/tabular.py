"""Tabular models: attributions per named feature, and feature ablation against a baseline row.

Gradient methods need nothing special for a ``[None, F]`` input: ``x`` is the
feature placeholder, a mask is ``[F]``, one value per feature
(:func:`feature_attributions` names them; a bar chart is
:func:`saliency_tf1.visualization.views.feature_bar_chart`). For Integrated
Gradients the baseline is a row: the training data's mean (or median) row is
the usual choice, "an average customer", since zero may be no typical value
of a feature at all.

Occlusion for rows is feature ablation (:class:`FeatureAblation`): replace one
feature, or a group of features that belong together (the columns of one
one-hot encoded category), by the baseline row's values and score the drop of
``y``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.backend import OUTPUT_LAYER_VALUES
from ..engine.batching import chunk_bounds, progress_bar
from ..engine.checks import check_array, check_no_extra
from ..methods.base import TF1Saliency


class FeatureAblation(TF1Saliency):
    """Feature ablation: the drop of ``y`` when a feature (group) takes the baseline's value.

    ``mask[j] = y(x) - y(x with the features of j's group set to baseline)``,
    the same value for every feature of a group. Occlusion (Zeiler and
    Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014,
    arXiv:1311.2901) with one window per feature group and the baseline row
    as the fill, the form that tabular models are explained with (e.g.
    "permutation/ablation" importance, Breiman, "Random Forests", 2001, for a
    single row; Fisher, Rudin and Dominici, JMLR 2019).

    Works on inputs of any shape: a group is a set of positions of one input.
    The ablated copies are made chunk by chunk (at most ``batch_size`` rows
    per ``session.run``; the unablated input is one more row).

    Example::

        ablation = FeatureAblation(graph, sess, target.y, x)
        mask = ablation.GetMask(row, target.feed(1), baseline=train.mean(axis=0))
        grouped = ablation.GetMask(row, target.feed(1), baseline=means,
                                   groups=[0, 1, 1, 1, 2, 3])  # columns 1-3: one category
    """

    default_batch_size: int = 64
    backend_keys = (OUTPUT_LAYER_VALUES,)

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        baseline: Any = None,
        groups: Any = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the ablation mask of one input (not batched), its shape.

        Args:
          x_value: one input, e.g. a row ``[F]``.
          feed_dict: values for the graph's other placeholders.
          baseline: the values an ablated feature takes: an array of the
            input's shape (in ``GetMaskBatch`` also one per input, ``[N,
            ...]``); ``None``: zeros.
          groups: integer labels of the input's shape: features with the same
            label are ablated together; ``None``: each feature alone.
          batch_size: most rows per ``session.run``.
          progress: show a progress bar (``None``: for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, baseline=baseline, groups=groups,
                               batch_size=batch_size, progress=progress)

    def _check_args(self, xs, call, baseline=None, groups=None, progress=None, **kwargs):
        check_no_extra(f"FeatureAblation.{call}", kwargs)
        one = xs.shape[1:]
        if baseline is None:
            fills = np.zeros((1, *one), np.result_type(xs.dtype, np.float32))
        else:
            arr = np.asarray(baseline)
            if arr.shape == one:
                fills = check_array("baseline", arr, one, batched=False)[None]
            elif call == "GetMaskBatch" and arr.shape == xs.shape:
                fills = check_array("baseline", arr, one, batched=True)
            else:
                also = f" (or one per input, [N, *{one}])" if call == "GetMaskBatch" else ""
                raise ValueError(f"baseline: expected an array of the input's shape "
                                 f"{one}{also}, got shape {arr.shape}")
        if groups is None:
            labels = np.arange(int(np.prod(one)))
        else:
            arr = np.asarray(groups)
            if arr.dtype.kind not in "iu":
                raise TypeError(f"groups: expected integer group labels, got dtype {arr.dtype}")
            if arr.shape != one:
                raise ValueError(f"groups: expected one label per feature, shape {one}, got "
                                 f"shape {arr.shape}")
            _, labels = np.unique(arr.reshape(-1), return_inverse=True)
        n_groups = int(labels.max()) + 1
        args = {"fills": fills, "labels": labels.reshape(-1), "n_groups": n_groups,
                "progress": progress}
        return args, n_groups + 1

    def _masks(self, inputs, sources, feed, batch_size, fills, labels, n_groups, progress):
        n, size = len(inputs), labels.size
        flat = inputs.reshape(n, size)
        fill_flat = fills.reshape(len(fills), size)
        fill_of = np.zeros(n, np.int64) if len(fills) == 1 else sources
        per_input = n_groups + 1  # row 0 of each input: the input itself
        total = n * per_input
        member = labels[None, :] == np.arange(n_groups)[:, None]  # [groups, size]
        scores = np.empty(total, np.float64)
        dtype = self.backend.input_dtype
        bar = progress_bar(progress, total, "FeatureAblation", auto_min=100 * batch_size)
        with bar:
            for start, stop in chunk_bounds(total, batch_size):
                which, group = np.divmod(np.arange(start, stop), per_input)
                rows = flat[which].astype(dtype, copy=True)
                ablate = np.zeros_like(rows, dtype=bool)
                hit = group > 0
                ablate[hit] = member[group[hit] - 1]
                rows = np.where(ablate, fill_flat[fill_of[which]].astype(dtype), rows)
                out = self.backend.evaluate(rows.reshape(stop - start, *inputs.shape[1:]),
                                            [OUTPUT_LAYER_VALUES], feed, sources[which])
                scores[start:stop] = out[OUTPUT_LAYER_VALUES]
                bar.update(stop - start)
        scores = scores.reshape(n, per_input)
        drops = scores[:, :1] - scores[:, 1:]  # [n, groups]
        masks = drops[:, labels].reshape(inputs.shape)
        return masks.astype(np.result_type(inputs.dtype, np.float32))


def feature_attributions(mask: Any, feature_names: Sequence[str], *,
                         top: int | None = None) -> list[tuple[str, float]]:
    """``[(name, value), ...]`` of a ``[F]`` mask, by decreasing ``|value|``.

    ``top``: keep the first ``top`` only. Ties keep the features' order.
    """
    values = np.asarray(mask, dtype=np.float64)
    names = list(feature_names)
    if values.ndim != 1 or len(values) != len(names):
        raise ValueError(f"mask, feature_names: expected a [F] mask and F names, got shape "
                         f"{values.shape} and {len(names)} names")
    order = np.argsort(-np.abs(values), kind="stable")
    if top is not None:
        order = order[:top]
    return [(names[j], float(values[j])) for j in order]
