"""RISE: the output's mean over random smooth masks, weighted by each mask.

Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, arXiv:1806.07421.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.checks import check_finite_number, check_no_extra, check_positive_int
from .grad_cam import resize_matrix
from .surrogate import (
    Blender,
    BlockSampler,
    RandomizedSaliency,
    check_fill,
    sample_key,
    stream_rows,
)

#: Multiply-adds of one matrix product below which OpenBLAS stays single-threaded.
_SMALL_PRODUCT = 1 << 18


class RiseMasks:
    """RISE's masks for inputs whose leading dimensions are ``shape`` (1-D or 2-D).

    A mask is a random binary grid of ``ceil(n / cell_size) + 1`` cells per
    dimension (each cell 1 with probability ``p``), upsampled linearly by
    ``cell_size`` (half-pixel centres, mirrored borders: ``skimage.transform.resize``
    with ``order=1``, as the paper's code) and cropped to ``shape`` at a random
    shift in ``[0, cell_size)`` per dimension. Mask ``j`` of a key is always
    the same (:class:`~saliency_tf1.methods.surrogate.BlockSampler`).
    """

    def __init__(self, shape: tuple[int, ...], p: float, cell_size: int) -> None:
        self.shape, self.p, self.cell = tuple(shape), float(p), int(cell_size)
        self.cells = tuple(-(-n // self.cell) + 1 for n in self.shape)
        # [cells * cell, cells]: one row per upsampled position.
        self.up = [resize_matrix(g, g * self.cell).astype(np.float32) for g in self.cells]

    def draw(self, rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``count`` random ``(grids [count, *cells] bool, shifts [count, ndim] int)``."""
        grids = rng.random((count, *self.cells)) < self.p
        shifts = rng.integers(0, self.cell, (count, len(self.shape)))
        return grids, shifts

    def sampler(self, key: int) -> BlockSampler:
        return BlockSampler(key, self.draw)

    def masks(self, grids: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """The ``[k, *shape]`` float32 masks of grids and shifts."""
        g = grids.astype(np.float32)
        # Rows of the upsampling matrix each mask keeps: [k, n, cells].
        rows = [up[s[:, None] + np.arange(n)] for up, s, n in
                zip(self.up, shifts.T, self.shape)]
        if len(self.shape) == 1:
            return np.einsum("knc,kc->kn", rows[0], g)
        left = np.matmul(rows[0], g)  # [k, H, cells_w]
        right = rows[1].transpose(0, 2, 1)  # [k, cells_w, W]
        out = np.empty((len(g), *self.shape), np.float32)
        # Row blocks keep each product small enough that BLAS runs it on the
        # calling thread: masks are made while the model runs, and BLAS's own
        # threads would compete with the model's for the cores.
        step = max(1, _SMALL_PRODUCT // (left.shape[2] * self.shape[1]))
        for a in range(0, self.shape[0], step):
            np.matmul(left[:, a:a + step], right, out=out[:, a:a + step])
        return out


def rise_masks(shape: tuple[int, ...], n_masks: int, *, p: float = 0.5, cell_size: int = 8,
               seed: int | np.random.Generator | None = None) -> np.ndarray:
    """The first ``n_masks`` masks :class:`RISE` draws for ``seed``, ``[n_masks, *shape]``.

    For inspection and tests: ``RISE.GetMask(x, seed=s, n_masks=n, ...)`` uses
    exactly these masks (``shape`` = the input's masked leading dimensions).
    """
    maker = RiseMasks(tuple(shape), p, cell_size)
    grids, shifts = maker.sampler(sample_key(seed)).take(0, n_masks)
    return maker.masks(grids, shifts)


class RISE(RandomizedSaliency):
    """RISE: ``S(p) = 1 / (N E[M]) sum_i y(x * M_i) M_i(p)`` over ``N`` random smooth masks.

    Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for
    Explanation of Black-box Models", BMVC 2018, arXiv:1806.07421. The masks
    are upsampled random binary grids, randomly shifted (:class:`RiseMasks`);
    ``E[M] = p``. A black-box method: it needs only ``y`` of masked copies,
    so it runs on any backend (the core API included) and on models that are
    not differentiable.

    Masked copies are made chunk by chunk into one reused buffer and each
    chunk is one ``session.run`` of ``batch_size`` rows: the masks are never
    all held, and memory does not grow with ``n_masks``. The mask is that of
    the input's leading ``mask_dims`` dimensions, repeated over the others
    (e.g. over an image's channels). With ``in_graph`` (TF1; on by default
    on GPU sessions) 2-D masks are upsampled and applied next to the model
    (:class:`~saliency_tf1.methods.ingraph.RiseBatches`): a run is fed only
    its grids' bits and shifts.

    Example::

        rise = RISE(graph, session, logits[:, 3], x)
        heat = rise.GetMask(image, n_masks=4000, seed=0)       # [H, W, C]
    """

    #: Masked copies of images are made in the graph (TF1), next to the model.
    in_graph_builders = (("rise", {}),)

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        *,
        n_masks: int = 4000,
        p: float = 0.5,
        cell_size: int = 8,
        seed: int | np.random.Generator | None = None,
        baseline: Any = 0.0,
        mask_dims: int | None = None,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the RISE map of one input, its shape (the same for all its channels).

        Args:
          x_value: one input (not batched): an image ``[H, W(, C)]``, a
            series ``[T(, C)]`` (with ``mask_dims=1``), a feature vector
            ``[F]`` (with ``cell_size=1`` every feature is kept or not
            independently, for features with no order).
          feed_dict: values for the graph's other placeholders.
          n_masks: number of random masks ``N``.
          p: probability that a grid cell is kept.
          cell_size: size of a grid cell in input elements (the masks' scale).
          seed: ``None``, an int or a ``np.random.Generator``: the same seed
            gives the same masks, whatever ``batch_size``.
          baseline: what masked-out elements become: a number (the paper: 0)
            or an array of the input's shape (in ``GetMaskBatch`` also one per
            input): ``x * M + baseline * (1 - M)``.
          mask_dims: how many leading dimensions the masks vary over (1 or 2;
            default: 2 for inputs of rank >= 2, else 1). The mask is constant
            over the remaining (channel) dimensions.
          batch_size: masked copies per ``session.run``.
          progress: show a progress bar (``None``: only for long runs on a terminal).
        """
        return super().GetMask(x_value, feed_dict, n_masks=n_masks, p=p, cell_size=cell_size,
                               seed=seed, baseline=baseline, mask_dims=mask_dims,
                               batch_size=batch_size, progress=progress)

    def _check_args(self, xs, call, n_masks=4000, p=0.5, cell_size=8, seed=None, baseline=0.0,
                    mask_dims=None, progress=None, _streams=None, **kwargs):
        check_no_extra(f"RISE.{call}", kwargs)
        n_masks = check_positive_int("n_masks", n_masks)
        p = check_finite_number("p", p)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"p: expected a probability in (0, 1], got {p}")
        cell_size = check_positive_int("cell_size", cell_size)
        rank = xs.ndim - 1
        if mask_dims is None:
            mask_dims = 2 if rank >= 2 else 1
        else:
            mask_dims = check_positive_int("mask_dims", mask_dims)
            if mask_dims > min(rank, 2):
                raise ValueError(f"mask_dims: expected 1 or 2 and at most the input's rank "
                                 f"({rank}, shape {xs.shape[1:]}), got {mask_dims}")
        fills = check_fill("baseline", baseline, xs, call)
        streams = self._streams(call, seed, _streams)
        args = {"n_masks": n_masks, "maker": RiseMasks(xs.shape[1:1 + mask_dims], p, cell_size),
                "fills": fills, "streams": streams, "progress": progress}
        return args, n_masks

    def _masks(self, inputs, sources, feed, batch_size, n_masks, maker, fills, streams,
               progress):
        n = len(inputs)
        samplers = [maker.sampler(key) for key in streams.keys(n)]
        rise = self._builder("rise")
        if rise is not None and len(maker.shape) == 2:
            sums = rise.mask_sums(inputs, sources, fills, maker, samplers, n_masks, feed,
                                  batch_size, progress)
            return self._maps(sums, inputs, n_masks, maker)
        blender = Blender(inputs, sources, fills, self.backend.input_dtype)
        sums = np.zeros((n, int(np.prod(maker.shape))))

        # The weighted sum of each chunk's masks runs in the model's precision
        # (einsum's own loop: BLAS threads would compete with the model's while
        # the next chunk is made) and is added up across chunks in float64.
        work = np.result_type(self.backend.input_dtype, np.float32)

        def fill(i, a, b, out):
            masks = maker.masks(*samplers[i].take(a, b)).astype(work, copy=False)
            blender.write(out, i, masks)
            return masks

        def consume(i, a, b, values, masks):
            sums[i] += np.einsum("k,kp->p", values.astype(work), masks.reshape(len(masks), -1))

        stream_rows(self.backend, inputs, sources, feed, batch_size, [n_masks] * n, fill,
                    consume, progress=progress, desc="RISE")
        return self._maps(sums, inputs, n_masks, maker)

    @staticmethod
    def _maps(sums: np.ndarray, inputs: np.ndarray, n_masks: int, maker: Any) -> np.ndarray:
        """The RISE maps from each input's ``sum_k y_k mask_k``, broadcast over channels."""
        n = len(inputs)
        maps = (sums / (n_masks * maker.p)).reshape((n, *maker.shape))
        trailing = (1,) * (inputs.ndim - 1 - len(maker.shape))
        out_dtype = np.result_type(inputs.dtype, np.float32)
        return np.broadcast_to(maps.reshape(maps.shape + trailing),
                               inputs.shape).astype(out_dtype)
