"""Occlusion: how much the explained score drops when a window of the input is covered.

Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014, arXiv:1311.2901.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.backend import OUTPUT_LAYER_VALUES, Backend, ForwardBackend
from ..engine.batching import chunk_bounds, progress_bar
from ..engine.checks import check_array, check_finite_number, check_no_extra, check_positive_int
from .base import TF1Saliency
from .surrogate import stream_rows


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

    With several inputs (``x`` a list) each input is occluded in turn, the
    others left as they are: windows over the first two axes of an input of
    rank >= 2, runs of ``size`` consecutive values of a 1-D input (feature
    ablation); ``size``, ``stride``, ``window_height``, ``window_width`` and
    ``value`` then take one value for all inputs or a list with one per
    input, and ``baseline`` a list of arrays.

    Example::

        occ = Occlusion(graph, session, logits[:, 3], x)
        mask = occ.GetMask(image, size=8)                       # PAIR's numbers
        fast = occ.GetMask(image, size=8, stride=4, normalize=True, batch_size=256)
    """

    #: Occluded copies per ``session.run`` unless the caller says otherwise.
    default_batch_size: int = 64
    backend_keys = (OUTPUT_LAYER_VALUES,)
    multi_input = True
    #: Needs only forward values: builds no ops, and ``y`` need not be differentiable.
    forward_only = True
    #: The occluded copies of a single input are built in the graph (TF1).
    in_graph_builders = (("windows", {}),)

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> Backend:
        return ForwardBackend(graph, session, y, x)

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

    # -- checks and kernel ----------------------------------------------------------

    def _check_args(self, xs, call, size=15, value=0, stride=1, window_height=None,
                    window_width=None, normalize=False, baseline=None, progress=None, **kwargs):
        check_no_extra(f"Occlusion.{call}", kwargs)
        if self._layout is not None:
            return self._check_args_per_input(
                xs, call, size=size, value=value, stride=stride, window_height=window_height,
                window_width=window_width, normalize=normalize, baseline=baseline,
                progress=progress)
        size = check_positive_int("size", size)
        height = size if window_height is None else check_positive_int(
            "window_height", window_height)
        width = size if window_width is None else check_positive_int("window_width", window_width)
        stride = check_positive_int("stride", stride)
        value = check_finite_number("value", value)
        if xs.ndim < 3:
            raise ValueError(
                "x_value: occlusion needs an input of at least 2 dimensions (height, width, "
                f"...), got shape {xs.shape[1:]}"
            )
        image_h, image_w = xs.shape[1:3]
        if height > image_h or width > image_w:
            raise ValueError(
                f"size/window_height/window_width: window {height}x{width} is larger than the "
                f"input's {image_h}x{image_w} (height x width)"
            )
        fills = None if baseline is None else self._check_baseline(baseline, xs, call)
        rows = window_starts(image_h, height, stride)
        cols = window_starts(image_w, width, stride)
        args = {"height": height, "width": width, "rows": rows, "cols": cols, "value": value,
                "normalize": bool(normalize), "fills": fills, "progress": progress}
        return args, len(rows) * len(cols) + 1  # + the input itself

    def _masks(self, inputs, sources, feed, batch_size, height=None, width=None, rows=None,
               cols=None, value=None, normalize=False, fills=None, progress=None,
               windows=None, fill_row=None):
        if windows is not None:
            return self._masks_per_input(inputs, sources, feed, batch_size, windows, fill_row,
                                         fills, normalize, progress)
        image_h, image_w = inputs.shape[1:3]
        # The fill image of each row of inputs: the shared one, or its public input's.
        fill_of = np.zeros(len(inputs), np.int64) if fills is None or len(fills) == 1 else sources
        per_input = len(rows) * len(cols) + 1  # row 0 of each input: the input itself
        builder = self._builder("windows")
        if builder is not None:
            row_fills = fills if fills is None or len(fills) == 1 else fills[fill_of]
            scores = builder.scores(inputs, sources, feed, batch_size, rows, cols, height, width,
                                    value, row_fills, progress)
        else:
            scores = self._scores_on_host(inputs, sources, feed, batch_size, height, width,
                                          rows, cols, value, fills, fill_of, progress)
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

    def _scores_on_host(self, inputs, sources, feed, batch_size, height, width, rows, cols,
                        value, fills, fill_of, progress):
        """``y`` of each input and of its occluded copies ``[N, 1 + windows]``, built in NumPy.

        :func:`~saliency_tf1.methods.surrogate.stream_rows` runs them: two
        reused buffers, the next chunk filled while the model runs this one.
        A buffer row keeps its input and only the window that moved is
        rewritten, so a chunk costs its windows, not its copies.
        """
        per_input = len(rows) * len(cols) + 1  # row 0 of each input: the input itself
        scores = np.empty((len(inputs), per_input), np.float64)
        row_slices = [slice(r, r + height) for r in rows.tolist()]
        col_slices = [slice(c, c + width) for c in cols.tolist()]
        n_cols = len(cols)
        # What each buffer row (by its address: the buffers live for the call) holds:
        # (its input, the window placed in it or None).
        held: dict[int, tuple[int, Any]] = {}

        def fill(i, a, b, out):
            first, step = out.ctypes.data, out.strides[0]
            for k in range(a, b):
                copy = out[k - a]
                address = first + (k - a) * step
                owner, placed = held.get(address, (-1, None))
                if owner != i:
                    copy[...] = inputs[i]
                elif placed is not None:
                    copy[placed] = inputs[i][placed]
                window = None
                if k:
                    r, c = divmod(k - 1, n_cols)
                    window = (row_slices[r], col_slices[c])
                    copy[window] = value if fills is None else fills[fill_of[i]][window]
                held[address] = (i, window)

        def consume(i, a, b, values, _):
            scores[i, a:b] = values

        stream_rows(self.backend, inputs, sources, feed, batch_size, [per_input] * len(inputs),
                    fill, consume, progress=progress, desc="Occlusion")
        return scores

    @staticmethod
    def _check_baseline(baseline: Any, xs: np.ndarray, call: str) -> np.ndarray:
        """Fill images ``[1 or N, ...]``: one image for all inputs, or (GetMaskBatch) one each."""
        arr = np.asarray(baseline)
        one = xs.shape[1:]
        if arr.shape == one:
            return check_array("baseline", arr, one, batched=False)[None]
        if call == "GetMaskBatch" and arr.shape == xs.shape:
            return check_array("baseline", arr, one, batched=True)
        also = f" (or one per input, [N, *{one}])" if call == "GetMaskBatch" else ""
        raise ValueError(
            f"baseline: expected an array of the input's shape {one}{also}, got shape {arr.shape}"
        )

    # -- several inputs: each occluded in turn ----------------------------------------

    def _check_args_per_input(self, xs, call, *, size, value, stride, window_height,
                              window_width, normalize, baseline, progress):
        layout = self._layout
        n_parts = len(layout.parts)

        def per_part(name: str, given: Any) -> list[Any]:
            if isinstance(given, (list, tuple)):
                if len(given) != n_parts:
                    raise ValueError(f"{name}: expected one value for all inputs or a list of "
                                     f"{n_parts} (one per input), got {len(given)}")
                return list(given)
            return [given] * n_parts

        windows: list[np.ndarray] = []
        fill_row = np.empty(xs.shape[1], np.float64)
        sizes, strides, heights, widths, values = (
            per_part(n, v) for n, v in (("size", size), ("stride", stride),
                                        ("window_height", window_height),
                                        ("window_width", window_width), ("value", value)))
        for i, part in enumerate(layout.parts):
            name = f"x[{i}]"
            s = check_positive_int(f"size[{i}]", sizes[i])
            st = check_positive_int(f"stride[{i}]", strides[i])
            h = s if heights[i] is None else check_positive_int(f"window_height[{i}]",
                                                                  heights[i])
            fill_row[part.offset:part.offset + part.size] = check_finite_number(
                f"value[{i}]", values[i])
            grid = np.arange(part.size).reshape(part.shape)
            if len(part.shape) == 1:
                if h > part.shape[0]:
                    raise ValueError(f"size[{i}]: window of {h} values is larger than {name}'s "
                                     f"{part.shape[0]}")
                starts = window_starts(part.shape[0], h, st)
                windows += [grid[a:a + h].reshape(-1) + part.offset for a in starts]
                continue
            w = s if widths[i] is None else check_positive_int(f"window_width[{i}]", widths[i])
            if h > part.shape[0] or w > part.shape[1]:
                raise ValueError(f"size/window_height/window_width[{i}]: window {h}x{w} is "
                                 f"larger than {name}'s {part.shape[0]}x{part.shape[1]}")
            for r in window_starts(part.shape[0], h, st):
                for c in window_starts(part.shape[1], w, st):
                    windows.append(grid[r:r + h, c:c + w].reshape(-1) + part.offset)
        fills = None
        if baseline is not None:
            fills = self._packed(baseline, "baseline", per_input=call == "GetMaskBatch")
            fills = fills[None] if fills.ndim == 1 else fills
        args = {"windows": windows, "fill_row": fill_row.astype(xs.dtype), "fills": fills,
                "normalize": bool(normalize), "progress": progress}
        return args, len(windows) + 1

    def _masks_per_input(self, inputs, sources, feed, batch_size, windows, fill_row, fills,
                         normalize, progress):
        """Occlusion over packed rows: window ``w`` replaces the values at ``windows[w]``."""
        per_input = len(windows) + 1  # row 0 of each input: the input itself
        total = len(inputs) * per_input
        scores = np.empty(total, np.float64)
        buffer = np.empty((min(batch_size, total), inputs.shape[1]), self.backend.input_dtype)
        with progress_bar(progress, total, "Occlusion", auto_min=100 * batch_size) as bar:
            for start, stop in chunk_bounds(total, batch_size):
                for slot in range(stop - start):
                    i, k = divmod(start + slot, per_input)
                    buffer[slot] = inputs[i]
                    if k:
                        index = windows[k - 1]
                        fill = fill_row if fills is None else fills[
                            0 if len(fills) == 1 else sources[i]]
                        buffer[slot, index] = fill[index]
                out = self.backend.evaluate(buffer[: stop - start], [OUTPUT_LAYER_VALUES], feed,
                                            sources[np.arange(start, stop) // per_input])
                scores[start:stop] = out[OUTPUT_LAYER_VALUES]
                bar.update(stop - start)
        scores = scores.reshape(len(inputs), per_input)
        drops = scores[:, :1] - scores[:, 1:]
        masks = np.zeros(inputs.shape, np.float64)
        counts = np.zeros(inputs.shape[1], np.float64)
        for w, index in enumerate(windows):
            masks[:, index] += drops[:, w:w + 1]
            counts[index] += 1
        if normalize:
            masks = np.divide(masks, counts, out=np.zeros_like(masks), where=counts > 0)
        return masks.astype(np.result_type(inputs.dtype, np.float32))
