"""Batches built in the graph, next to the model: one input fed, many rows run.

SmoothGrad's noisy copies, the path points of IG and Blur IG, and the
perturbed copies of Occlusion, RISE, LIME and KernelSHAP are many rows made
from one input. The host path builds them in NumPy and feeds them all (25
copies of a 224x224x3 image are 15 MB per call). On a TF1 session the ops
here build them where the model runs instead: a ``session.run`` is fed one
input (and its baseline) plus a few numbers or bits (a seed, path nodes,
window offsets, mask grids), and returns one reduced result or ``y``.

How: each builder makes its rows with ops, then a plain copy of the model's
``x -> y`` ops that reads those rows instead of ``x``
(:func:`~saliency_tf1.methods.propagation.replay`: it shares the live
variables and every other placeholder). Everything is built once per graph,
``y``, ``x`` and builder, in the method's constructor, and shared by every
method on the same tensors; a call only feeds values. A call of several runs
stores its input once in the session (:class:`_Stash`) and frees it at the end.

* :class:`NoiseBatches`: rows ``x + stdev * z_k``, ``z_k`` from TensorFlow's
  stateless Philox normal generator (``StatelessRandomNormalV2``) at counter
  ``k * ceil(S / g)`` (``S`` values per input; ``g`` = 4 for float32, 2 for
  float64, the generator's values per Philox block), so sample ``k`` depends
  only on ``(seed, k)``: the same seed gives the same rows in chunks of any
  size, on any device. The per-chunk sum of the masks (and of their squares,
  and the chunk's squared deviations) is reduced in the graph.
* :class:`PathBatches`: rows ``b_i + alpha_r (x_i - b_i)`` for the row's input
  ``i`` and node ``alpha_r``, and the weighted gradient sums per input
  (``unsorted_segment_sum``): the same arithmetic as the host path.
* :class:`BlurPathBatches`: Blur IG's blurred rows (float64 products from
  the host path's taps, rounded as SciPy rounds) and their weighted sums.
* :class:`WindowBatches`: rows equal to the input except inside a window
  (``top``, ``left``, ``height``, ``width`` per row) where they take the fill
  value or the baseline's values: bit for bit the host path's copies.
* :class:`RiseBatches` / :class:`SegmentBatches`: RISE's masked copies from
  grid bits and shifts, LIME's and KernelSHAP's from coalition bits and the
  segment map.

A model whose path cannot be copied (a TF1 ``while_loop``, a fused op that
cannot be split), or that runs a fixed number of rows (a fixed outer dimension
of ``x``, a scalar ``y``), has no builders; its methods use the host path.
Which path a call takes is ``method.in_graph`` (on by default where the
session has a GPU, see :func:`on_accelerator`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.backend import Backend, _SessionBackend
from ..engine.batching import chunk_bounds, progress_bar
from ..engine.blur import blur_taps, graph_blur
from ..engine.graph import cached_ops, tf_module
from ..engine.noise import KEY_BITS
from .propagation import replay

# StatelessRandomNormalV2's algorithm number for Philox (TensorFlow's RNG_ALG_PHILOX).
_PHILOX = 1


def _as_rows(layout: Any, rows: Any) -> list[Any]:
    """The model's input tensors read from rows built in the graph (packed rows split)."""
    tf = tf_module()
    if not layout.multi:
        return [rows]
    return [tf.reshape(tf.cast(rows[:, p.offset:p.offset + p.size], p.tensor.dtype),
                       [-1, *p.shape]) for p in layout.parts]


def _placeholder(dtype: Any, shape: Any, name: str) -> Any:
    return tf_module().compat.v1.placeholder(dtype, shape, name=name)


@dataclass(frozen=True)
class _Stash:
    """An array a call feeds once, whatever its number of runs.

    ``value`` is what the builder's ops read: fed directly when the call is
    one ``session.run``; otherwise the array is stored once in the session
    (``store`` of ``store_in``, TF1's persistent session tensors, kept on the
    device that made it) and each run feeds only its handle, a short string;
    ``delete`` frees it at the end of the call. Each call has its own
    handles, so calls from several threads do not share state.
    """

    value: Any
    handle: Any
    store_in: Any
    store: Any
    delete: Any


def _stash(dtype: Any, shape: Any, name: str) -> _Stash:
    tf = tf_module()
    handle = _placeholder(tf.string, [], f"{name}_handle")
    stored = tf.raw_ops.GetSessionTensor(handle=handle, dtype=dtype)
    value = tf.compat.v1.placeholder_with_default(stored, shape, name=name)
    store_in = _placeholder(dtype, shape, f"{name}_to_store")
    store = tf.raw_ops.GetSessionHandle(value=store_in)
    return _Stash(value, handle, store_in, store,
                  tf.raw_ops.DeleteSessionTensor(handle=handle))


def _handle_name(handle: Any) -> Any:
    """The string of a fetched session handle (``session.run`` wraps it in a TensorHandle,
    whose garbage collection would add deleter ops to the graph: ours deletes it)."""
    if hasattr(handle, "handle"):
        if hasattr(handle, "_auto_gc_enabled"):
            handle._auto_gc_enabled = False
        return handle.handle
    return handle


def _expand(vector: Any, like: Any) -> Any:
    """``vector`` ``[R]`` reshaped to ``[R, 1, ..., 1]`` to broadcast over ``like``'s rows."""
    tf = tf_module()
    return tf.reshape(vector, tf.concat([[-1], tf.ones_like(tf.shape(like)[1:])], 0))


class _Builder:
    """What the builders share: the backend's runner and the copy's ``y``."""

    y: Any

    def __init__(self, backend: _SessionBackend) -> None:
        self.backend = backend
        self.runner = backend.runner
        self.layout = backend.layout
        self.dtype = self.layout.dtype
        self.tf_dtype = tf_module().as_dtype(self.dtype)

    def _key(self, kind: str) -> tuple:
        return ("in_graph", kind, self.backend.y.name, *self.layout.names)

    def _run(self, fetches: list[Any], values: dict, feed: Any, sources: np.ndarray
             ) -> list[np.ndarray]:
        return self.runner.run_built(fetches, values, feed, sources, self.y)

    @contextlib.contextmanager
    def _stashed(self, arrays: list[tuple[_Stash, np.ndarray]], runs: int) -> Iterator[dict]:
        """The feeds that give a call's runs its big arrays, each fed once per call.

        One run: the arrays themselves. Several: the arrays are stored in the
        session by one run, each run is fed their handles, and they are
        deleted when the call ends (even if it fails).
        """
        if runs <= 1:
            yield {stash.value: value for stash, value in arrays}
            return
        handles = [_handle_name(h) for h in self.runner.run_ops(
            [stash.store for stash, _ in arrays],
            {stash.store_in: value for stash, value in arrays})]
        try:
            yield {stash.handle: h for (stash, _), h in zip(arrays, handles)}
        finally:
            with contextlib.suppress(Exception):  # a closed session frees them itself
                self.runner.run_ops([stash.delete for stash, _ in arrays],
                                    {stash.handle: h for (stash, _), h in zip(arrays, handles)})


class NoiseBatches(_Builder):
    """SmoothGrad's noisy copies and their mask statistics, made in the graph.

    ``masks`` names what is reduced: ``"gradient"`` (``d y / d x`` of each
    noisy row) or ``"gradient_x_input"`` (the row times it).
    """

    def __init__(self, backend: _SessionBackend, masks: str) -> None:
        super().__init__(backend)
        tf = tf_module()
        self.noise_dtype = np.result_type(self.dtype, np.float32)
        self.group = 2 if self.noise_dtype == np.float64 else 4
        shape = self.layout.shape

        def build_rows() -> dict[str, Any]:
            with tf.compat.v1.name_scope("noise_batches"):
                x_stash = _stash(self.tf_dtype, shape, "x")
                x0 = x_stash.value
                noise_type = tf.as_dtype(self.noise_dtype)
                stdev_stash = _stash(noise_type, None, "stdev")
                stdev = stdev_stash.value
                key = _placeholder(tf.uint64, [1], "key")
                counter = _placeholder(tf.uint64, [2], "counter")
                count = _placeholder(tf.int32, [], "count")
                size = tf.size(x0)
                padded = (size + self.group - 1) // self.group * self.group
                z = tf.raw_ops.StatelessRandomNormalV2(
                    shape=tf.stack([count, padded]), key=key, counter=counter,
                    alg=tf.constant(_PHILOX), dtype=noise_type)
                z = tf.reshape(z[:, :size], tf.concat([[count], tf.shape(x0)], 0))
                rows = tf.cast(tf.cast(x0, noise_type)[None] + stdev * z, self.tf_dtype)
                rows.set_shape([None, *shape])
                copy = replay(backend.y, self.layout.tensors, _as_rows(self.layout, rows),
                              rows, name="noise_model")
            return {"x": x_stash, "stdev": stdev_stash, "key": key, "counter": counter,
                    "count": count,
                    "rows": rows, "y": copy.y, "gradients": copy.gradients}

        graph = backend.graph
        self.ops = cached_ops(graph, self._key("noise"), build_rows)
        self.y = self.ops["y"]
        if self.ops["gradients"] is None:
            raise ValueError("y: the copy of the model has no gradient with respect to x")

        def build_stats() -> dict[str, Any]:
            with tf.compat.v1.name_scope("noise_statistics"):
                grads = self.ops["gradients"]
                acc = tf.as_dtype(np.result_type(grads.dtype.as_numpy_dtype, np.float32))
                m = tf.cast(grads, acc)
                if masks == "gradient_x_input":
                    m = tf.cast(self.ops["rows"], acc) * m
                total = tf.reduce_sum(m, 0)
                mean = total / tf.cast(self.ops["count"], acc)
                return {"sum": total, "square": tf.reduce_sum(tf.square(m), 0),
                        "m2": tf.reduce_sum(tf.square(m - mean), 0), "mean": mean}

        self.stats = cached_ops(graph, (*self._key("noise_statistics"), masks), build_stats)

    def statistic(self, x: np.ndarray, stdev: Any, seed_key: int, nsamples: int,
                  per_chunk: int, statistic: str, feed: Any, moments: Any) -> np.ndarray | None:
        """Runs ``nsamples`` noisy copies in chunks of ``per_chunk``.

        Returns the sum over samples of the masks (``"mean"``) or of their
        squares (``"square"``), float64; for ``"variance"`` adds each chunk's
        ``(count, mean, m2)`` to ``moments`` and returns ``None``.
        """
        size = int(np.prod(x.shape, dtype=np.int64))
        blocks = -(-size // self.group)  # Philox blocks per sample
        key = np.array([seed_key & ((1 << KEY_BITS) - 1)], np.uint64)
        ops = self.ops
        x_value = np.asarray(x, self.dtype)
        stdev_value = np.asarray(stdev, self.noise_dtype)
        wanted = ([self.stats["mean"], self.stats["m2"]] if statistic == "variance"
                  else [self.stats["square" if statistic == "square" else "sum"]])
        total = None
        chunks = list(chunk_bounds(nsamples, per_chunk))
        with self._stashed([(ops["x"], x_value), (ops["stdev"], stdev_value)],
                           len(chunks)) as arrays:
            for start, stop in chunks:
                count = stop - start
                values = {**arrays, ops["key"]: key, ops["count"]: count,
                          ops["counter"]: np.array([start * blocks, 0], np.uint64)}
                out = self._run(wanted, values, feed, np.zeros(count, np.int64))
                if statistic == "variance":
                    moments.add_moments(count, out[0], out[1])
                    continue
                part = np.asarray(out[0], np.float64)
                total = part if total is None else total + part
        return total


class PathBatches(_Builder):
    """Integrated Gradients' path points and their weighted gradient sums, made in the graph.

    The rows are computed in the host path's precision (the model's, at least
    float32) and cast to the model's dtype.
    """

    def __init__(self, backend: _SessionBackend) -> None:
        super().__init__(backend)
        tf = tf_module()
        shape = self.layout.shape
        self.work = np.result_type(self.dtype, np.float32)
        work = tf.as_dtype(self.work)

        def build() -> dict[str, Any]:
            with tf.compat.v1.name_scope("path_batches"):
                inputs = _stash(work, [None, *shape], "inputs")
                baselines = _stash(work, [None, *shape], "baselines")
                index = _placeholder(tf.int32, [None], "index")
                base_index = _placeholder(tf.int32, [None], "base_index")
                segment = _placeholder(tf.int32, [None], "segment")
                alphas = _placeholder(work, [None], "alphas")
                weights = _placeholder(work, [None], "weights")
                n_segments = _placeholder(tf.int32, [], "n_segments")
                base = tf.gather(baselines.value, base_index)
                diff = tf.gather(inputs.value, index) - base
                rows = tf.cast(base + _expand(alphas, diff) * diff, self.tf_dtype)
                copy = replay(backend.y, self.layout.tensors, _as_rows(self.layout, rows),
                              rows, name="path_model")
                sums = None
                if copy.gradients is not None:
                    grads = copy.gradients
                    acc = tf.as_dtype(np.result_type(grads.dtype.as_numpy_dtype, np.float32))
                    weighted = tf.cast(grads, acc) * _expand(tf.cast(weights, acc), grads)
                    sums = tf.math.unsorted_segment_sum(weighted, segment, n_segments)
            return {"inputs": inputs, "baselines": baselines, "index": index,
                    "base_index": base_index, "segment": segment, "alphas": alphas,
                    "weights": weights, "n_segments": n_segments, "y": copy.y, "sums": sums}

        self.ops = cached_ops(backend.graph, self._key("paths"), build)
        self.y = self.ops["y"]
        if self.ops["sums"] is None:
            raise ValueError("y: the copy of the model has no gradient with respect to x")

    def integrate(self, inputs: np.ndarray, baselines: np.ndarray, alphas: np.ndarray,
                  weights: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int, *,
                  fetch_outputs: bool = False, progress: bool | None = None,
                  desc: str = "path") -> tuple[np.ndarray, np.ndarray | None]:
        """``integrate_paths``' results for straight-line paths, the rows built in the graph.

        Row ``r`` of the stream is node ``k = r % K`` of input ``i = r // K``
        (``K = len(alphas)``); ``baselines`` is ``[1 or N, ...]``. Returns
        ``(sums, outputs)``: ``sums[i] = sum_k weights[k] * gradient(row(i, k))``
        (float64) and, when ``fetch_outputs``, ``outputs[i, k] = y(row(i, k))``.
        The inputs and baselines are fed once per call; each run, its rows'
        input indices and nodes.
        """
        ops = self.ops
        n_nodes = len(alphas)
        total = len(inputs) * n_nodes
        inputs = np.asarray(inputs, self.work)
        baselines = np.asarray(baselines, self.work)
        alphas = np.asarray(alphas, self.work)
        weights = np.asarray(weights, self.work)
        shared = len(baselines) == 1
        sums = None
        outputs = np.empty((len(inputs), n_nodes)) if fetch_outputs else None
        chunks = list(chunk_bounds(total, batch_size))
        with progress_bar(progress, total, desc, auto_min=4 * batch_size) as bar, \
                self._stashed([(ops["inputs"], inputs), (ops["baselines"], baselines)],
                              len(chunks)) as arrays:
            for start, stop in chunks:
                i, k = np.divmod(np.arange(start, stop), n_nodes)
                first, last = int(i[0]), int(i[-1]) + 1
                index = i.astype(np.int32)
                values = {
                    **arrays, ops["index"]: index,
                    ops["base_index"]: np.zeros_like(index) if shared else index,
                    ops["segment"]: index - first, ops["n_segments"]: last - first,
                    ops["alphas"]: alphas[k], ops["weights"]: weights[k],
                }
                part, y_values = self._run([ops["sums"]], values, feed, sources[i])
                if sums is None:
                    sums = np.zeros((len(inputs), *part.shape[1:]), np.float64)
                sums[first:last] += part
                if fetch_outputs:
                    outputs[i, k] = y_values
                bar.update(stop - start)
        return sums, outputs


class WindowBatches(_Builder):
    """Occlusion's copies (the input with one window filled), made in the graph."""

    def __init__(self, backend: _SessionBackend) -> None:
        super().__init__(backend)
        tf = tf_module()
        shape = self.layout.shape
        if self.layout.multi or len(shape) < 2:
            raise ValueError("x: in-graph windows need one input of at least 2 dimensions")

        def build() -> dict[str, Any]:
            with tf.compat.v1.name_scope("window_batches"):
                inputs = _stash(self.tf_dtype, [None, *shape], "inputs")
                fills = _stash(self.tf_dtype, [None] + [None] * len(shape), "fills")
                index = _placeholder(tf.int32, [None], "index")
                fill_index = _placeholder(tf.int32, [None], "fill_index")
                top = _placeholder(tf.int32, [None], "top")
                left = _placeholder(tf.int32, [None], "left")
                height = _placeholder(tf.int32, [], "height")
                width = _placeholder(tf.int32, [], "width")
                dims = tf.shape(inputs.value)
                h = tf.range(dims[1])[None, :]
                w = tf.range(dims[2])[None, :]
                in_rows = (h >= top[:, None]) & (h < (top + height)[:, None])
                in_cols = (w >= left[:, None]) & (w < (left + width)[:, None])
                window = in_rows[:, :, None] & in_cols[:, None, :]
                window = tf.reshape(window, tf.concat(
                    [tf.shape(window), tf.ones([len(shape) - 2], tf.int32)], 0))
                rows = tf.where(window, tf.gather(fills.value, fill_index),
                                tf.gather(inputs.value, index))
                rows.set_shape([None, *shape])
                copy = replay(backend.y, self.layout.tensors, [rows], name="window_model",
                              gradient=False)
            return {"inputs": inputs, "fills": fills, "index": index, "fill_index": fill_index,
                    "top": top, "left": left, "height": height, "width": width, "y": copy.y}

        self.ops = cached_ops(backend.graph, self._key("windows"), build)
        self.y = self.ops["y"]

    def scores(self, inputs: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int,
               rows: np.ndarray, cols: np.ndarray, height: int, width: int, value: float,
               fills: np.ndarray | None, progress: bool | None) -> np.ndarray:
        """``y`` of each input (slot 0) and of each of its window placements, ``[N, 1 + W]``.

        Placement ``1 + a * len(cols) + b`` covers rows ``rows[a] ..`` and
        columns ``cols[b] ..``; its values are ``value`` or, with ``fills``
        (``[1 or N, ...]``), the fill image's values there.
        """
        ops = self.ops
        per_input = len(rows) * len(cols) + 1
        total = len(inputs) * per_input
        inputs = np.asarray(inputs, self.dtype)
        if fills is None:
            fill_values = np.full((1,) * inputs.ndim, value, self.dtype)
        else:
            fill_values = np.asarray(fills, self.dtype)
        per_input_fill = len(fill_values) > 1
        tops = np.concatenate([[inputs.shape[1]], np.repeat(rows, len(cols))]).astype(np.int32)
        lefts = np.concatenate([[0], np.tile(cols, len(rows))]).astype(np.int32)
        scores = np.empty(total, np.float64)
        chunks = list(chunk_bounds(total, batch_size))
        with progress_bar(progress, total, "Occlusion", auto_min=100 * batch_size) as bar, \
                self._stashed([(ops["inputs"], inputs), (ops["fills"], fill_values)],
                              len(chunks)) as arrays:
            for start, stop in chunks:
                i, k = np.divmod(np.arange(start, stop), per_input)
                index = i.astype(np.int32)
                values = {
                    **arrays, ops["index"]: index,
                    ops["fill_index"]: index if per_input_fill else np.zeros_like(index),
                    ops["top"]: tops[k], ops["left"]: lefts[k],
                    ops["height"]: height, ops["width"]: width,
                }
                (scores[start:stop],) = self._run([], values, feed, sources[i])
                bar.update(stop - start)
        return scores.reshape(len(inputs), per_input)


class BlurPathBatches(_Builder):
    """Blur IG's path points (the input blurred) and their weighted gradient sums, in the graph.

    The blurs are :func:`~saliency_tf1.engine.blur.graph_blur`'s float64
    products, rounded as SciPy rounds, with matrices gathered from the fed
    ``taps`` (:func:`~saliency_tf1.engine.blur.blur_taps`, the host path's
    float64 weights): the path points are the host path's, bit for bit.
    """

    def __init__(self, backend: _SessionBackend) -> None:
        super().__init__(backend)
        tf = tf_module()
        shape = self.layout.shape
        if self.layout.multi or len(shape) != 3:
            raise ValueError("x: in-graph blurs need one input of shape [H, W, C]")
        f64 = tf.float64

        def matrices(taps: Any, index: Any, size: Any) -> Any:
            span = tf.range(size)
            distance = tf.abs(span[:, None] - span[None, :])
            return tf.gather(tf.gather(taps, index), distance, axis=1)

        def build() -> dict[str, Any]:
            with tf.compat.v1.name_scope("blur_path_batches"):
                inputs = _stash(self.tf_dtype, [None, *shape], "inputs")
                taps_h = _stash(f64, [None, None], "taps_h")
                taps_w = _stash(f64, [None, None], "taps_w")
                image_index = _placeholder(tf.int32, [], "image_index")
                levels = _placeholder(tf.int32, [None], "levels")  # here, then ahead
                factors = _placeholder(self.tf_dtype, [None], "factors")
                image = tf.cast(tf.gather(inputs.value, image_index), f64)
                dims = tf.shape(image)
                blurred = graph_blur(image, matrices(taps_h.value, levels, dims[0]),
                                     matrices(taps_w.value, levels, dims[1]), self.dtype)
                points, ahead = tf.split(blurred, 2)
                points.set_shape([None, *shape])
                change = (ahead - points) * _expand(factors, ahead)
                copy = replay(backend.y, self.layout.tensors, [points], name="blur_model")
                sums = None
                if copy.gradients is not None:
                    grads = copy.gradients
                    acc = tf.as_dtype(np.result_type(grads.dtype.as_numpy_dtype, np.float32))
                    sums = tf.reduce_sum(tf.cast(grads, acc) * tf.cast(change, acc), 0)
            return {"inputs": inputs, "taps_h": taps_h, "taps_w": taps_w,
                    "image_index": image_index, "levels": levels, "factors": factors,
                    "y": copy.y, "sums": sums}

        self.ops = cached_ops(backend.graph, self._key("blur_paths"), build)
        self.y = self.ops["y"]
        if self.ops["sums"] is None:
            raise ValueError("y: the copy of the model has no gradient with respect to x")

    def integrate(self, inputs: np.ndarray, sigmas: np.ndarray, factors: np.ndarray,
                  grad_step: float, sources: np.ndarray, feed: Any, batch_size: int,
                  progress: bool | None) -> np.ndarray:
        """``sum_k factors[k] (B(s_k + grad_step) - B(s_k)) * gradient(B(s_k))`` per input.

        ``B(s)`` is the input blurred with ``s = sigmas[k]``; float64 sums,
        ``[N, H, W, C]``. The inputs and the blur taps of every level are fed
        once per call; each run, its levels and factors (rows of one input).
        """
        ops = self.ops
        inputs = np.asarray(inputs, self.dtype)
        height, width = inputs.shape[1:3]
        levels = np.concatenate([sigmas, sigmas + grad_step])
        taps_h = np.stack([blur_taps(height, float(s)) for s in levels])
        taps_w = taps_h if width == height else np.stack([blur_taps(width, float(s))
                                                          for s in levels])
        factors = np.asarray(factors, self.dtype)
        n_levels = len(sigmas)
        chunks = [(n, a, b) for n in range(len(inputs))
                  for a, b in chunk_bounds(n_levels, batch_size)]
        sums = np.zeros(inputs.shape, np.float64)
        with progress_bar(progress, len(inputs) * n_levels, "BlurIG",
                          auto_min=4 * batch_size) as bar, \
                self._stashed([(ops["inputs"], inputs), (ops["taps_h"], taps_h),
                               (ops["taps_w"], taps_w)], len(chunks)) as arrays:
            for n, a, b in chunks:
                k = np.arange(a, b, dtype=np.int32)
                values = {**arrays, ops["image_index"]: n,
                          ops["levels"]: np.concatenate([k, k + n_levels]),
                          ops["factors"]: factors[a:b]}
                part, _ = self._run([ops["sums"]], values, feed,
                                    np.full(b - a, sources[n], np.int64))
                sums[n] += part
                bar.update(b - a)
        return sums


class RiseBatches(_Builder):
    """RISE's masked copies of an image ``[H, W(, C)]``, and the mask sums they weigh, in the graph.

    Each run is fed its masks' random grids as packed bits and their shifts
    (the host path's samples); the ops upsample them with the host path's
    interpolation matrices (each mask value a sum of at most four products,
    so equal up to a unit in the last place), write the copies
    ``fill + (x - fill) * mask``, run the model and return
    ``sum_k y_k mask_k``.
    """

    def __init__(self, backend: _SessionBackend) -> None:
        super().__init__(backend)
        tf = tf_module()
        shape = self.layout.shape
        if self.layout.multi or len(shape) < 2:
            raise ValueError("x: in-graph RISE masks need one input of at least 2 dimensions")
        f32 = tf.float32

        def gathered_rows(up: Any, shifts: Any, size: Any) -> Any:
            return tf.gather(up, shifts[:, None] + tf.range(size)[None, :])

        def build() -> dict[str, Any]:
            with tf.compat.v1.name_scope("rise_batches"):
                inputs = _stash(self.tf_dtype, [None, *shape], "inputs")
                fills = _stash(self.tf_dtype, [None] + [None] * len(shape), "fills")
                up_h = _stash(f32, [None, None], "up_h")
                up_w = _stash(f32, [None, None], "up_w")
                index = _placeholder(tf.int32, [], "index")
                fill_index = _placeholder(tf.int32, [], "fill_index")
                bits = _placeholder(tf.uint8, [None, None], "grid_bits")  # [k, ceil(cells/8)]
                grid_shape = _placeholder(tf.int32, [2], "grid_shape")
                shifts = _placeholder(tf.int32, [None, 2], "shifts")
                count = tf.shape(bits)[0]
                grids = tf.reshape(
                    tf.cast(_unpack_bits(bits, grid_shape[0] * grid_shape[1]), f32),
                    tf.concat([[count], grid_shape], 0))
                x = tf.gather(inputs.value, index)
                size = tf.shape(x)
                left = tf.matmul(gathered_rows(up_h.value, shifts[:, 0], size[0]), grids)
                masks = tf.matmul(left, gathered_rows(up_w.value, shifts[:, 1], size[1]),
                                  transpose_b=True)  # [k, H, W]
                fill = tf.gather(fills.value, fill_index)
                m = tf.reshape(masks, tf.concat(
                    [tf.shape(masks), tf.ones([len(shape) - 2], tf.int32)], 0))
                # As the host path: the product in float32 (at least), rounded to the
                # model's dtype, then the fill added.
                product = tf.cast(x - fill, tf.as_dtype(np.result_type(self.dtype, np.float32)))
                rows = tf.cast(product[None] * tf.cast(m, product.dtype), self.tf_dtype) + fill
                rows.set_shape([None, *shape])
                copy = replay(backend.y, self.layout.tensors, [rows], name="rise_model",
                              gradient=False)
                work = tf.as_dtype(np.result_type(self.dtype, np.float32))
                sums = tf.linalg.matvec(tf.reshape(tf.cast(masks, work), [count, -1]),
                                        tf.cast(copy.y, work), transpose_a=True)
            return {"inputs": inputs, "fills": fills, "up_h": up_h, "up_w": up_w,
                    "index": index, "fill_index": fill_index, "bits": bits,
                    "grid_shape": grid_shape, "shifts": shifts, "y": copy.y, "sums": sums}

        self.ops = cached_ops(backend.graph, self._key("rise"), build)
        self.y = self.ops["y"]

    def mask_sums(self, inputs: np.ndarray, sources: np.ndarray, fills: np.ndarray | None,
                  maker: Any, samplers: list[Any], n_masks: int, feed: Any, batch_size: int,
                  progress: bool | None) -> np.ndarray:
        """``sum_k y(copy_k) mask_k`` of each input, float64 ``[N, H * W]``.

        ``maker`` is the :class:`~saliency_tf1.methods.rise.RiseMasks` (its
        upsampling matrices) and ``samplers[i]`` input ``i``'s grid sampler;
        ``fills`` ``None`` (zeros) or ``[1 or N, ...]`` picked by ``sources``.
        """
        ops = self.ops
        inputs = np.asarray(inputs, self.dtype)
        fill_values = (np.zeros((1,) * inputs.ndim, self.dtype) if fills is None
                       else np.asarray(fills, self.dtype))
        per_input = len(fill_values) > 1
        chunks = [(i, a, b) for i in range(len(inputs))
                  for a, b in chunk_bounds(n_masks, batch_size)]
        sums = np.zeros((len(inputs), int(np.prod(maker.shape))), np.float64)
        arrays = [(ops["inputs"], inputs), (ops["fills"], fill_values),
                  (ops["up_h"], maker.up[0]), (ops["up_w"], maker.up[1])]
        with progress_bar(progress, len(inputs) * n_masks, "RISE",
                          auto_min=100 * batch_size) as bar, \
                self._stashed(arrays, len(chunks)) as stashed:
            for i, a, b in chunks:
                grids, shifts = samplers[i].take(a, b)
                values = {**stashed, ops["index"]: i,
                          ops["fill_index"]: int(sources[i]) if per_input else 0,
                          ops["bits"]: np.packbits(grids.reshape(b - a, -1), axis=1),
                          ops["grid_shape"]: np.array(grids.shape[1:], np.int32),
                          ops["shifts"]: shifts.astype(np.int32)}
                part, _ = self._run([ops["sums"]], values, feed,
                                    np.full(b - a, sources[i], np.int64))
                sums[i] += part
                bar.update(b - a)
        return sums


def _unpack_bits(bits: Any, count: Any) -> Any:
    """``[k, count]`` 0/1 uint8 values of rows packed by ``np.packbits(..., axis=1)``."""
    tf = tf_module()
    shifts = tf.constant([7, 6, 5, 4, 3, 2, 1, 0], tf.uint8)  # the first value in the high bit
    unpacked = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits[:, :, None], shifts), 1)
    return tf.reshape(unpacked, [tf.shape(bits)[0], -1])[:, :count]


class SegmentBatches(_Builder):
    """LIME's and KernelSHAP's copies (segments kept or replaced by the baseline), in the graph.

    Each run is fed its coalitions as packed bits; the ops spread them over
    the input's segment map (fed once per call), write ``fill + (x - fill) *
    kept`` (the host path's copies, bit for bit) and return ``y`` of each.
    """

    def __init__(self, backend: _SessionBackend) -> None:
        super().__init__(backend)
        tf = tf_module()
        shape = self.layout.shape
        if self.layout.multi:
            raise ValueError("x: in-graph segment copies need one input")

        def build() -> dict[str, Any]:
            with tf.compat.v1.name_scope("segment_batches"):
                inputs = _stash(self.tf_dtype, [None, *shape], "inputs")
                fills = _stash(self.tf_dtype, [None] + [None] * len(shape), "fills")
                indexes = _stash(tf.int32, None, "segment_indexes")  # [N, *leading dims]
                index = _placeholder(tf.int32, [], "index")
                fill_index = _placeholder(tf.int32, [], "fill_index")
                bits = _placeholder(tf.uint8, [None, None], "coalition_bits")
                n_segments = _placeholder(tf.int32, [], "n_segments")
                kept = tf.cast(_unpack_bits(bits, n_segments), self.tf_dtype)
                segment_of = tf.gather(indexes.value, index)
                masks = tf.gather(kept, segment_of, axis=1)  # [k, *leading dims]
                x = tf.gather(inputs.value, index)
                masks = tf.reshape(masks, tf.concat(
                    [tf.shape(masks), tf.ones([tf.rank(x) - tf.rank(segment_of)], tf.int32)], 0))
                fill = tf.gather(fills.value, fill_index)
                rows = (x - fill)[None] * masks + fill
                rows.set_shape([None, *shape])
                copy = replay(backend.y, self.layout.tensors, [rows], name="segment_model",
                              gradient=False)
            return {"inputs": inputs, "fills": fills, "indexes": indexes, "index": index,
                    "fill_index": fill_index, "bits": bits, "n_segments": n_segments,
                    "y": copy.y}

        self.ops = cached_ops(backend.graph, self._key("segments"), build)
        self.y = self.ops["y"]

    def stream(self, inputs: np.ndarray, sources: np.ndarray, fills: np.ndarray | None,
               indexes: np.ndarray, counts: list[int], feed: Any, batch_size: int,
               make: Any, consume: Any, progress: bool | None, desc: str) -> None:
        """``stream_rows`` with the copies made in the graph.

        Input ``i`` owns ``counts[i]`` rows; ``make(i, a, b)`` returns the
        coalitions ``z`` (``[b - a, d]`` bool) of rows ``a .. b-1`` and
        anything else, and ``consume(i, a, b, y_values, (z, ...))`` gets
        their outputs. ``indexes`` stacks each input's segment map.
        """
        ops = self.ops
        inputs = np.asarray(inputs, self.dtype)
        fill_values = (np.zeros((1,) * inputs.ndim, self.dtype) if fills is None
                       else np.asarray(fills, self.dtype))
        per_input = len(fill_values) > 1
        chunks = [(i, a, b) for i, count in enumerate(counts)
                  for a, b in chunk_bounds(count, batch_size)]
        arrays = [(ops["inputs"], inputs), (ops["fills"], fill_values),
                  (ops["indexes"], np.asarray(indexes, np.int32))]
        with progress_bar(progress, sum(counts), desc, auto_min=100 * batch_size) as bar, \
                self._stashed(arrays, len(chunks)) as stashed:
            for i, a, b in chunks:
                made = make(i, a, b)
                z = made[0]
                values = {**stashed, ops["index"]: i,
                          ops["fill_index"]: int(sources[i]) if per_input else 0,
                          ops["bits"]: np.packbits(z, axis=1), ops["n_segments"]: z.shape[1]}
                (y_values,) = self._run([], values, feed, np.full(b - a, sources[i], np.int64))
                consume(i, a, b, y_values.astype(np.float64), made)
                bar.update(b - a)


#: The builders, by the name a method gives in ``TF1Saliency.in_graph_builders``.
_BUILDERS = {"noise": NoiseBatches, "paths": PathBatches, "windows": WindowBatches,
             "blur_paths": BlurPathBatches, "rise": RiseBatches, "segments": SegmentBatches}


def on_accelerator(session: Any) -> bool:
    """Whether ``session`` has a device other than a CPU (a GPU, a TPU).

    There, rows built in the graph save the host work and the host-to-device
    copy of every row. On a CPU-only session the host path is faster: NumPy
    draws the noise 2-3x faster than TensorFlow's stateless Philox kernel, and
    a fed array is a memory copy at most (``bench/bench_in_graph.py``).
    A session wrapper without ``list_devices`` counts as a CPU session.
    """
    list_devices = getattr(session, "list_devices", None)
    if not callable(list_devices):
        return False
    try:
        devices = list_devices()
    except Exception:  # a wrapper or a closed session: keep the host path
        return False
    return any(getattr(d, "device_type", "CPU") not in ("CPU", "XLA_CPU") for d in devices)


def build_batches(backend: Backend, kind: str, **options: Any) -> tuple[Any, str | None]:
    """The builder ``kind`` for ``backend``'s model, or ``(None, why not)``.

    Only TF1 session backends whose runs take any number of rows have
    builders; a model whose path cannot be copied gets ``None`` and the
    reason (its methods then build their rows on the host).
    """
    if not isinstance(backend, _SessionBackend):
        return None, "the backend is not a TF1 session"
    if backend.runner.rows_per_run is not None:
        return None, ("the model runs a fixed number of rows per session.run (a fixed outer "
                      "dimension of x or a scalar y)")
    try:
        return _BUILDERS[kind](backend, **options), None
    except ValueError as err:
        return None, str(err)
