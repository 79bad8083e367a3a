"""Occlusion: how much the explained score drops when a window of the input is covered.

Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014, arXiv:1311.2901.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import OUTPUT_LAYER_VALUES
from .base import (
    TF1Saliency,
    check_array,
    check_finite_number,
    check_positive_int,
    chunk_bounds,
    progress_bar,
)


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of the windows that fit wholly inside ``length``: ``0, stride, ...``."""
    return np.arange(0, length - window + 1, stride)


def sum_over_windows(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int,
    shape: tuple[int, int],
) -> np.ndarray:
    """``out[i, j] = sum of values[a, b] over windows (rows[a], cols[b]) covering (i, j)``.

    ``values`` is ``[len(rows), len(cols)]``; each window covers
    ``[rows[a], rows[a] + height) x [cols[b], cols[b] + width)``. Computed in
    float64 with a 2-D difference array and two cumulative sums (no loop over
    windows). ``rows``/``cols`` must each be strictly increasing.
    """
    diff = np.zeros((shape[0] + 1, shape[1] + 1), np.float64)
    r, c = rows[:, None], cols[None, :]
    diff[r, c] += values
    diff[r + height, c] -= values
    diff[r, c + width] -= values
    diff[r + height, c + width] += values
    return np.cumsum(np.cumsum(diff, axis=0), axis=1)[: shape[0], : shape[1]]


class Occlusion(TF1Saliency):
    """Occlusion sensitivity: the drop of ``y`` when a window is replaced, summed per pixel.

    A ``size x size`` window slides over the first two input dimensions
    (height, width; all channels covered) with stride 1, keeping inside the
    input; each placement replaces the covered values with ``value`` and
    scores ``y(x) - y(x_occluded)``. A pixel's mask value is the sum of the
    scores of every window covering it (so border pixels, covered by fewer
    windows, get smaller sums), the same for all its channels. With the
    default arguments this is PAIR ``saliency.tf1`` 0.2.1's ``Occlusion``.

    Zeiler and Fergus, "Visualizing and Understanding Convolutional
    Networks", ECCV 2014, arXiv:1311.2901.

    The occluded copies are made chunk by chunk, into one reused buffer of
    ``batch_size`` rows (only the window that moved is rewritten), and each
    chunk is one ``session.run``: memory stays at ``batch_size`` copies
    whatever the number of windows.

    Example::

        occ = Occlusion(graph, session, logits[:, 3], x)
        mask = occ.GetMask(image, size=8)                       # PAIR's numbers
        fast = occ.GetMask(image, size=8, stride=4, normalize=True, batch_size=256)
    """

    #: Occluded copies per ``session.run`` unless the caller says otherwise.
    default_batch_size: int = 64

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        size: int = 15,
        value: float = 0,
        *,
        stride: int = 1,
        window_height: int | None = None,
        window_width: int | None = None,
        normalize: bool = False,
        baseline: Any = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the occlusion mask of one input ``[H, W, ...]``, same shape.

        Args:
          x_value: one input (not batched), at least 2-D: height, width, then
            any channel dimensions.
          feed_dict: values for the graph's other placeholders.
          size: window height and width (PAIR's argument).
          value: the constant written into the window.
          stride: step between window positions (1 = every position). With
            ``stride > 1`` the windows still stay inside the input; pixels
            that no window covers get 0.
          window_height, window_width: a non-square window (default ``size``).
          normalize: divide each pixel's sum by the number of windows covering
            it (mean instead of sum; 0 where none covers it).
          baseline: an array the shape of ``x_value`` (or, in
            ``GetMaskBatch``, one per input) whose values fill the window
            instead of the constant ``value``.
          batch_size: occluded copies per ``session.run``.
          progress: show a progress bar (``None``: only for long runs on a terminal).
        """
        return super().GetMask(
            x_value, feed_dict, size=size, value=value, stride=stride,
            window_height=window_height, window_width=window_width, normalize=normalize,
            baseline=baseline, batch_size=batch_size, progress=progress,
        )

    # -- argument handling ---------------------------------------------------------

    @staticmethod
    def _window(size: Any, window_height: Any, window_width: Any, stride: Any
                ) -> tuple[int, int, int]:
        size = check_positive_int("size", size)
        height = size if window_height is None else check_positive_int(
            "window_height", window_height)
        width = size if window_width is None else check_positive_int("window_width", window_width)
        return height, width, check_positive_int("stride", stride)

    def _rows_per_input(self, size: Any = 15, stride: Any = 1, window_height: Any = None,
                        window_width: Any = None, **kwargs: Any) -> int:
        shape = self.backend.input_shape or ()
        if len(shape) < 2 or shape[0] is None or shape[1] is None:
            return 1
        try:
            height, width, stride = self._window(size, window_height, window_width, stride)
        except (TypeError, ValueError):
            return 1  # _masks reports the error
        rows = len(window_starts(shape[0], height, stride))
        cols = len(window_starts(shape[1], width, stride))
        return rows * cols + 1

    # -- kernel --------------------------------------------------------------------

    def _masks(
        self,
        inputs: np.ndarray,
        sources: np.ndarray,
        feed: Any,
        batch_size: int,
        size: Any = 15,
        value: Any = 0,
        stride: Any = 1,
        window_height: Any = None,
        window_width: Any = None,
        normalize: bool = False,
        baseline: Any = None,
        progress: bool | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        if kwargs:
            raise TypeError(f"Occlusion got unexpected arguments {sorted(kwargs)}")
        height, width, stride = self._window(size, window_height, window_width, stride)
        value = check_finite_number("value", value)
        if inputs.ndim < 3:
            raise ValueError(
                "x_value: occlusion needs an input of at least 2 dimensions (height, width, "
                f"...), got shape {inputs.shape[1:]}"
            )
        image_h, image_w = inputs.shape[1:3]
        if height > image_h or width > image_w:
            raise ValueError(
                f"size/window_height/window_width: window {height}x{width} is larger than the "
                f"input's {image_h}x{image_w} (height x width)"
            )
        fill_images, fill_index = None, None
        if baseline is not None:
            fill_images, fill_index = self._check_baseline(baseline, inputs, sources)

        dtype = self.backend.input_dtype
        rows = window_starts(image_h, height, stride)
        cols = window_starts(image_w, width, stride)
        n_windows = len(rows) * len(cols)
        per_input = n_windows + 1  # row 0 of each input: the input itself
        total = len(inputs) * per_input
        scores = np.empty(total, np.float64)

        # One buffer of copies, reused: slot j holds input owner[j] with window
        # placed[j] occluded (None: no window), so moving the window rewrites two
        # small windows instead of copying the whole input.
        buffer = np.empty((min(batch_size, total),) + inputs.shape[1:], dtype)
        owner: list[int] = [-1] * len(buffer)
        placed: list[tuple[slice, slice] | None] = [None] * len(buffer)
        row_slices = [slice(r, r + height) for r in rows.tolist()]
        col_slices = [slice(c, c + width) for c in cols.tolist()]
        n_cols = len(cols)
        fills = None if fill_images is None else [fill_images[j] for j in fill_index]
        bar = progress_bar(progress, total, "Occlusion", auto_min=100 * batch_size)
        with bar:
            for start, stop in chunk_bounds(total, batch_size):
                for slot in range(stop - start):
                    i, k = divmod(start + slot, per_input)
                    copy = buffer[slot]
                    if owner[slot] != i:
                        copy[...] = inputs[i]
                        owner[slot] = i
                    elif placed[slot] is not None:
                        copy[placed[slot]] = inputs[i][placed[slot]]
                    if k:
                        r, c = divmod(k - 1, n_cols)
                        window = (row_slices[r], col_slices[c])
                        copy[window] = value if fills is None else fills[i][window]
                        placed[slot] = window
                    else:
                        placed[slot] = None
                out = self.backend.evaluate(
                    buffer[: stop - start], [OUTPUT_LAYER_VALUES], feed,
                    sources[np.arange(start, stop) // per_input],
                )
                scores[start:stop] = out[OUTPUT_LAYER_VALUES]
                bar.update(stop - start)

        scores = scores.reshape(len(inputs), per_input)
        drops = scores[:, :1] - scores[:, 1:]
        out_dtype = np.result_type(inputs.dtype, np.float32)
        masks = np.empty(inputs.shape, out_dtype)
        counts = None
        if normalize:
            ones = np.ones((len(rows), len(cols)))
            counts = sum_over_windows(ones, rows, cols, height, width, (image_h, image_w))
        trailing = (1,) * (inputs.ndim - 3)
        for i, drop in enumerate(drops):
            summed = sum_over_windows(drop.reshape(len(rows), len(cols)), rows, cols,
                                      height, width, (image_h, image_w))
            if counts is not None:
                summed = np.divide(summed, counts, out=np.zeros_like(summed),
                                   where=counts > 0)
            masks[i] = summed.reshape(summed.shape + trailing)
        return masks

    @staticmethod
    def _check_baseline(baseline: Any, inputs: np.ndarray, sources: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Fill images and, for each row of ``inputs``, the index of its fill image.

        ``baseline`` is one image for all inputs, or one per input of the public call.
        """
        arr = np.asarray(baseline)
        one = inputs.shape[1:]
        if arr.shape == one:
            arr = check_array("baseline", arr, one, batched=False)
            return arr[None], np.zeros(len(inputs), np.int64)
        n_public = int(sources.max()) + 1
        if arr.shape == (n_public, *one):
            return check_array("baseline", arr, one, batched=True), sources
        raise ValueError(
            f"baseline: expected an array of the input's shape {one} (or one per input, "
            f"[N, *{one}]), got shape {arr.shape}"
        )
