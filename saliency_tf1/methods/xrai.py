"""XRAI: Integrated Gradients attribution summed over image regions, grown greedily.

Kapishnikov, Bolukbasi, Viégas and Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019, arXiv:1906.02825.

The image is over-segmented (Felzenszwalb's graph segmentation at six scales,
each segment dilated); the attribution of each pixel is the Integrated
Gradients attribution averaged over a black and a white baseline, maxed over
channels. Regions are then added greedily: at each step the segment whose
not-yet-covered pixels have the highest mean attribution ("gain") is added,
and its new pixels get that gain. The ``"fast"`` algorithm ranks the segments
once by their own mean instead.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.backend import Backend
from ..engine.batching import progress_bar
from ..engine.checks import check_array, check_finite_number, check_no_extra, check_positive_int
from ..engine.paths import quadrature
from .base import TF1Saliency
from .integrated_gradients import integrated_gradients

# Felzenszwalb settings of the XRAI paper's implementation (PAIR saliency 0.2.1).
FELZENSZWALB_SCALES = (50, 100, 150, 250, 500, 1200)
FELZENSZWALB_SIGMA = 0.8
FELZENSZWALB_MIN_SIZE = 150
SEGMENTATION_SHAPE = (224, 224)
SEGMENTATION_RANGE = (-1.0, 1.0)
DILATION_RADIUS = 5


def _skimage() -> Any:
    """Imports scikit-image (the ``xrai`` extra) or says how to get it."""
    try:
        import scipy.ndimage  # noqa: F401  (scikit-image depends on SciPy)
        import skimage.morphology
        import skimage.segmentation
        import skimage.transform
    except ImportError as err:
        raise ImportError(
            "XRAI's segmentation needs scikit-image: pip install 'saliency_tf1[xrai]' "
            f"(or pass precomputed segments=...); import failed: {err}"
        ) from err
    return skimage


# ---------------------------------------------------------------------------
# Segmentation


def felzenszwalb_labels(image: np.ndarray, *, resize: bool = True) -> np.ndarray:
    """Felzenszwalb label images of ``image`` at the six XRAI scales, ``[6, H, W]`` ints.

    Felzenszwalb and Huttenlocher, "Efficient Graph-Based Image Segmentation",
    IJCV 2004. The image is rescaled to values in ``[-1, 1]`` and (when
    ``resize``) to 224x224 for the segmentation, and the labels are resized
    back (nearest neighbour), so the segment sizes do not depend on the
    image's resolution or value range.
    """
    skimage = _skimage()
    image = np.asarray(image)
    original = image.shape[:2]
    low, high = image.min(), image.max()
    span = high - low
    # A constant image is one segment (PAIR divides by zero here).
    scaled = (image - low) / span if span > 0 else np.zeros_like(image, dtype=np.float64)
    scaled = scaled * (SEGMENTATION_RANGE[1] - SEGMENTATION_RANGE[0]) + SEGMENTATION_RANGE[0]
    if resize:
        scaled = skimage.transform.resize(scaled, SEGMENTATION_SHAPE, order=3, mode="constant",
                                          preserve_range=True, anti_aliasing=True)
    labels = []
    for scale in FELZENSZWALB_SCALES:
        seg = skimage.segmentation.felzenszwalb(scaled, scale=scale, sigma=FELZENSZWALB_SIGMA,
                                                min_size=FELZENSZWALB_MIN_SIZE)
        if resize:
            seg = skimage.transform.resize(seg, original, order=0, preserve_range=True,
                                           mode="constant", anti_aliasing=False).astype(int)
        labels.append(seg)
    return np.stack(labels)


class SegmentIndex:
    """Segments as sorted lists of flat pixel indices (a CSR boolean matrix).

    Segment ``k`` covers pixels ``pixels[ptr[k]:ptr[k + 1]]`` (ascending) of
    an image of ``n_pixels`` pixels. The region merge works on these lists,
    so its cost follows the segments' area rather than ``segments x image``.
    """

    def __init__(self, ptr: np.ndarray, pixels: np.ndarray, n_pixels: int) -> None:
        dtype = np.int32 if n_pixels < 2**31 else np.int64
        self.ptr, self.pixels, self.n_pixels = ptr, pixels.astype(dtype, copy=False), n_pixels
        self.counts = np.diff(ptr)

    @property
    def nbytes(self) -> int:
        return self.ptr.nbytes + self.pixels.nbytes + self.counts.nbytes

    def __len__(self) -> int:
        return len(self.counts)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.pixels[self.ptr[k]:self.ptr[k + 1]]

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> SegmentIndex:
        """From boolean masks ``[n, ...]`` (each flattened in C order)."""
        n = len(masks)
        flat = masks.reshape(n, -1)
        found = np.flatnonzero(flat)
        rows, pixels = np.divmod(found, flat.shape[1])
        ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
        return cls(ptr, pixels, flat.shape[1])

    @classmethod
    def from_labels(cls, labels: np.ndarray,
                    dilation_radius: int = DILATION_RADIUS) -> SegmentIndex:
        """One segment per label of each label image ``[s, H, W]``, dilated by a disk.

        Segments come in the order of the label images, then of the label
        values; labels with no pixel give no segment. Each segment is
        dilated within its bounding box (grown by the radius) by
        ``skimage.morphology.disk(dilation_radius)``; 0 turns dilation off.
        """
        skimage = _skimage()
        from scipy import ndimage

        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels[None]
        height, width = labels.shape[1:]
        radius = int(dilation_radius)
        footprint = skimage.morphology.disk(radius) if radius else None
        parts = []
        for seg in labels:
            low = int(seg.min())
            for offset, box in enumerate(ndimage.find_objects(seg - low + 1)):
                if box is None:
                    continue
                top, left = max(box[0].start - radius, 0), max(box[1].start - radius, 0)
                crop = seg[top:box[0].stop + radius, left:box[1].stop + radius]
                region = crop == low + offset
                if footprint is not None:
                    region = ndimage.binary_dilation(region, structure=footprint)
                r, c = np.nonzero(region)
                parts.append((r + top) * width + (c + left))
        counts = np.array([len(p) for p in parts], np.int64)
        ptr = np.concatenate([[0], np.cumsum(counts)])
        pixels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return cls(ptr, pixels, height * width)

    def to_dense(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean masks ``[n, *shape]``."""
        dense = np.zeros((len(self), self.n_pixels), bool)
        dense[np.repeat(np.arange(len(self)), self.counts), self.pixels] = True
        return dense.reshape((len(self), *shape))

    def sums(self, values: np.ndarray) -> np.ndarray:
        """``sum(values[segment])`` of every segment, in float64."""
        return np.bincount(np.repeat(np.arange(len(self)), self.counts),
                           weights=values[self.pixels].astype(np.float64), minlength=len(self))

    def by_pixel(self) -> tuple[np.ndarray, np.ndarray]:
        """The transpose: segments containing pixel ``p`` are ``owners[start[p]:start[p+1]]``."""
        owners = np.repeat(np.arange(len(self)), self.counts)
        order = np.argsort(self.pixels, kind="stable")
        start = np.concatenate([[0], np.cumsum(np.bincount(self.pixels,
                                                            minlength=self.n_pixels))])
        return start, owners[order]


def labels_to_masks(labels: np.ndarray, dilation_radius: int = DILATION_RADIUS) -> np.ndarray:
    """Dense boolean masks ``[n, H, W]`` of :meth:`SegmentIndex.from_labels`."""
    labels = np.asarray(labels)
    return SegmentIndex.from_labels(labels, dilation_radius).to_dense(labels.shape[-2:])


def felzenszwalb_segments(image: Any, *, resize: bool = True,
                          dilation_radius: int = DILATION_RADIUS) -> np.ndarray:
    """XRAI's default segments of an image ``[H, W(, C)]``: ``[n, H, W]`` boolean masks.

    :func:`felzenszwalb_labels` at six scales, every segment dilated by a disk
    of ``dilation_radius`` pixels (the same segments as PAIR saliency 0.2.1's).
    Pass the result as ``segments=`` to reuse it across calls.
    """
    return labels_to_masks(felzenszwalb_labels(np.asarray(image), resize=resize),
                           dilation_radius)


# ---------------------------------------------------------------------------
# Region merge


def _gather(start: np.ndarray, items: np.ndarray, keys: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """``items[start[k]:start[k+1]]`` for every ``k`` of ``keys``, concatenated, with their key."""
    lengths = start[keys + 1] - start[keys]
    total = int(lengths.sum())
    offsets = np.repeat(start[keys] - (np.cumsum(lengths) - lengths), lengths)
    return items[offsets + np.arange(total)], np.repeat(keys, lengths)


def _tie_tolerance(attr: np.ndarray) -> float:
    """Gains closer than this are re-ranked with the exact mean (float error margin)."""
    return 1e-5 * float(np.max(np.abs(attr), initial=0.0)) + 1e-300


def merge_full(
    attr: np.ndarray, segments: SegmentIndex, *, area_threshold: float = 1.0,
    min_pixel_diff: int = 50,
) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """XRAI's greedy region growing.

    Args:
      attr: flat attribution ``[P]``.
      segments: the candidate segments.
      area_threshold: stop once the covered fraction exceeds this.
      min_pixel_diff: a segment adding fewer new pixels than this is dropped.

    Returns:
      ``(gain_map, trace)``: ``gain_map[P]`` holds each covered pixel's
      region gain (``-inf`` elsewhere) and ``trace`` the added regions as
      ``(pixel indices, gain)`` in the order they were added.

    Each step adds the segment with the highest mean attribution over its
    uncovered pixels (its gain). Rather than recomputing every segment's mean
    at every step, each segment keeps the count and float64 sum of its
    uncovered pixels, and adding a region subtracts that region's pixels from
    the segments containing them (found through the pixel-to-segment index),
    so the whole merge is one pass over the segments' pixels. Gains within
    float error of the best are compared by their exact mean, so the choice
    equals that of the direct computation.
    """
    n, n_pixels = len(segments), segments.n_pixels
    values = attr.astype(np.float64)
    counts = segments.counts.copy()
    sums = segments.sums(values)
    start, owners = segments.by_pixel()
    alive = np.ones(n, bool)
    covered = np.zeros(n_pixels, bool)
    n_covered = 0
    gain_map = np.full(n_pixels, -np.inf)
    trace: list[tuple[np.ndarray, float]] = []
    tolerance = _tie_tolerance(attr)
    min_count = max(int(min_pixel_diff), 1)
    while n_covered / n_pixels <= area_threshold:
        alive &= counts >= min_count
        live = np.flatnonzero(alive)
        if not len(live):
            break
        gains = sums[live] / counts[live]
        best, best_gain, best_diff = -1, -np.inf, None
        for k in live[gains >= gains.max() - tolerance]:  # the first of equal gains wins
            pixels = segments[k]
            diff = pixels[~covered[pixels]]
            gain = attr[diff].mean()
            if gain > best_gain:
                best, best_gain, best_diff = k, gain, diff
        trace.append((best_diff, float(best_gain)))
        covered[best_diff] = True
        gain_map[best_diff] = best_gain
        n_covered += len(best_diff)
        alive[best] = False
        hit, pixel = _gather(start, owners, best_diff)
        counts -= np.bincount(hit, minlength=n)
        sums -= np.bincount(hit, weights=values[pixel], minlength=n)
    return gain_map, trace


def merge_fast(
    attr: np.ndarray, segments: SegmentIndex, *, min_pixel_diff: int = 50
) -> tuple[np.ndarray, list[tuple[np.ndarray, float]]]:
    """XRAI's fast variant: segments ranked once by their own mean, then added in order.

    Arguments and result as :func:`merge_full`; a segment adding fewer than
    ``min_pixel_diff`` new pixels is skipped, and each added region's gain is
    the mean attribution of its new pixels.
    """
    keep = np.flatnonzero(segments.counts)
    gains = segments.sums(attr)[keep] / segments.counts[keep]
    ranking = np.argsort(-gains, kind="stable")
    order, ranked = keep[ranking], gains[ranking]
    # Re-rank runs of gains within float error by their exact mean (ties: index order).
    tolerance = _tie_tolerance(attr)
    breaks = np.flatnonzero(ranked[:-1] - ranked[1:] > tolerance) + 1
    for run in np.split(np.arange(len(order)), breaks):
        if len(run) > 1:
            members = np.sort(order[run])
            exact = np.array([attr[segments[k]].mean() for k in members])
            order[run] = members[np.argsort(-exact, kind="stable")]
    covered = np.zeros(segments.n_pixels, bool)
    gain_map = np.full(segments.n_pixels, -np.inf)
    trace: list[tuple[np.ndarray, float]] = []
    min_count = max(int(min_pixel_diff), 1)
    for k in order:
        pixels = segments[k]
        diff = pixels[~covered[pixels]]
        if len(diff) < min_count:
            continue
        gain = attr[diff].mean()
        trace.append((diff, float(gain)))
        gain_map[diff] = gain
        covered[diff] = True
    return gain_map, trace


def finish_regions(
    attr: np.ndarray, gain_map: np.ndarray, trace: list[tuple[np.ndarray, float]]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fills uncovered pixels with their mean attribution; regions sorted by gain.

    Returns ``(gain_map, regions)``: ``regions`` are flat pixel-index arrays,
    highest gain first (ties in the order added), then the uncovered pixels
    as one last region, if any.
    """
    uncovered = np.flatnonzero(gain_map == -np.inf)
    if len(uncovered):
        gain_map[uncovered] = attr[uncovered].mean()
    ranked = sorted(trace, key=lambda item: -item[1])
    regions = [pixels for pixels, _ in ranked]
    if len(uncovered):
        regions.append(uncovered)
    return gain_map, regions


# ---------------------------------------------------------------------------
# Parameters and output (PAIR's names and attributes)


@dataclass
class XRAIParameters:
    """How XRAI runs and what :meth:`XRAI.GetMaskWithDetails` returns (PAIR-compatible).

    Attributes:
      steps: Integrated Gradients path points per baseline.
      area_threshold: the full algorithm stops once this fraction of the
        image is covered; the rest becomes one region (1.0: all segments).
        The fast algorithm ignores it.
      return_baseline_predictions: accepted for compatibility; not used (as in PAIR).
      return_ig_attributions: return the IG attribution of every baseline.
      return_xrai_segments: return the regions in the order of their gain.
      flatten_xrai_segments: return the regions as one int image of ranks
        (1 = most important) instead of a list of boolean masks.
      algorithm: ``"full"`` or ``"fast"``.
      experimental_params: ``{"min_pixel_diff": 50}``: segments adding fewer
        new pixels are dropped.
    """

    steps: int = 100
    area_threshold: float = 1.0
    return_baseline_predictions: bool = False
    return_ig_attributions: bool = False
    return_xrai_segments: bool = False
    flatten_xrai_segments: bool = True
    algorithm: str = "full"
    experimental_params: dict = field(default_factory=lambda: {"min_pixel_diff": 50})


class XRAIOutput:
    """The result of :meth:`XRAI.GetMaskWithDetails` (PAIR-compatible).

    Attributes:
      attribution_mask: ``[H, W]`` float64: each pixel's region gain.
      baselines: the IG baselines used (``None`` with ``base_attribution``).
      ig_attribution: IG attribution per baseline (with
        ``return_ig_attributions``; the ``base_attribution`` when given).
      segments: the regions by decreasing gain (with ``return_xrai_segments``):
        an int rank image ``[H, W]`` or a list of boolean ``[H, W]`` masks.
    """

    def __init__(self, attribution_mask: np.ndarray) -> None:
        self.attribution_mask = attribution_mask
        self.baselines: list[np.ndarray] | None = None
        self.ig_attribution: Any = None
        self.segments: Any = None


# ---------------------------------------------------------------------------
# The method


class XRAI(TF1Saliency):
    """XRAI region attribution (Kapishnikov et al., ICCV 2019, arXiv:1906.02825).

    With the same arguments it returns PAIR ``saliency.tf1`` 0.2.1's
    numbers. Faster: Integrated Gradients for all baselines (and all inputs
    of ``GetMaskBatch``) runs in shared ``session.run`` batches, segment
    dilation costs the segment's size rather than the image's, the region
    merge updates per-segment sums instead of rescanning every segment at
    every step, and the segmentation of an image is remembered for the next
    call on the same image (a few images, by content hash).

    Needs scikit-image (``pip install 'saliency_tf1[xrai]'``) unless
    ``segments`` are passed.

    Example::

        xrai = XRAI(graph, session, logits[:, 3], x)
        mask = xrai.GetMask(image)                        # [H, W]
        params = XRAIParameters(algorithm="fast", return_xrai_segments=True)
        out = xrai.GetMaskWithDetails(image, extra_parameters=params)
        top = out.segments == 1                           # most important region
    """

    #: IG path points per ``session.run`` by default (16 rows of a 224x224x3
    #: image are ~10 MB; larger batches were slower on a 2-core CPU).
    default_batch_size: int = 16
    #: Its Integrated Gradients' path points are built in the graph (TF1).
    in_graph_builders = (("paths", {}),)

    # Segmentations remembered: at most this many images and bytes (the latest always).
    _CACHE_SIZE, _CACHE_BYTES = 4, 64 * 2**20

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Backend | None = None) -> None:
        super().__init__(graph, session, y, x, backend=backend)
        self._segments_cache: OrderedDict = OrderedDict()
        self._segments_lock = threading.Lock()

    def _segments_of(self, image: np.ndarray) -> SegmentIndex:
        """Default segments of ``image`` (remembered for a few images, by content)."""
        key = (image.shape, image.dtype.str,
               hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest())
        store, lock = self._segments_cache, self._segments_lock
        with lock:
            index = store.get(key)
            if index is not None:
                store.move_to_end(key)
        if index is None:
            index = SegmentIndex.from_labels(felzenszwalb_labels(image))
            with lock:
                store[key] = index
                while len(store) > 1 and (
                        len(store) > self._CACHE_SIZE
                        or sum(v.nbytes for v in store.values()) > self._CACHE_BYTES):
                    store.popitem(last=False)
        return index

    # -- public API --------------------------------------------------------------

    def GetMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        baselines: Sequence[Any] | None = None,
        segments: Any = None,
        base_attribution: Any = None,
        batch_size: int | None = None,
        extra_parameters: XRAIParameters | None = None,
        *,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the XRAI attribution ``[H, W]`` of one image ``[H, W(, C)]``.

        Args:
          x_value: one image, not batched.
          feed_dict: values for the graph's other placeholders.
          baselines: IG baselines, each the shape of ``x_value``; default: an
            image of ``min(x_value)`` and one of ``max(x_value)``.
          segments: boolean masks ``[H, W]`` (a list, or an ``[n, H, W]``
            array); default: Felzenszwalb segments (:func:`felzenszwalb_segments`).
          base_attribution: an attribution the shape of ``x_value`` to use
            instead of Integrated Gradients.
          batch_size: IG path points per ``session.run``.
          extra_parameters: :class:`XRAIParameters`.
          progress: show progress bars (``None``: only for long runs).
        """
        return self.GetMaskWithDetails(x_value, feed_dict, baselines, segments,
                                       base_attribution, batch_size, extra_parameters,
                                       progress=progress).attribution_mask

    def GetMaskWithDetails(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        baselines: Sequence[Any] | None = None,
        segments: Any = None,
        base_attribution: Any = None,
        batch_size: int | None = None,
        extra_parameters: XRAIParameters | None = None,
        *,
        progress: bool | None = None,
    ) -> XRAIOutput:
        """Returns an :class:`XRAIOutput` for one image; arguments as :meth:`GetMask`."""
        x = self._check_inputs(x_value, "x_value", batched=False)[None]
        plan = self._plan(x, "GetMaskWithDetails", batch_size, {
            "baselines": baselines, "segments": segments, "base_attribution": base_attribution,
            "extra_parameters": extra_parameters, "progress": progress})
        feed = self.backend.prepare_feed(feed_dict, 1)
        return self._details(x, np.zeros(1, np.int64), feed, plan.batch_size, **plan.args)[0]

    def GetMaskBatch(
        self,
        x_batch: Any,
        feed_dict: dict | None = None,
        *,
        baselines: Sequence[Any] | None = None,
        segments: Sequence[Any] | None = None,
        base_attribution: Any = None,
        batch_size: int | None = None,
        extra_parameters: XRAIParameters | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Returns the XRAI attributions ``[N, H, W]`` of images ``[N, H, W(, C)]``.

        The IG paths of every image and baseline share ``session.run`` batches.
        ``baselines``: a list of baselines, each of one image's shape (shared)
        or ``[N, ...]``; ``segments``: one segment list per image;
        ``base_attribution``: ``[N, ...]``. Others as in :meth:`GetMask`.
        """
        return super().GetMaskBatch(
            x_batch, feed_dict, baselines=baselines, segments=segments,
            base_attribution=base_attribution, batch_size=batch_size,
            extra_parameters=extra_parameters, progress=progress)

    # -- checks and kernel ------------------------------------------------------------

    def _check_args(self, xs, call, baselines=None, segments=None, base_attribution=None,
                    extra_parameters=None, progress=None, **kwargs):
        """Per public input: its baselines, segments or base attribution (or ``None``).

        ``GetMaskBatch`` takes ``baselines`` as a list of arrays each shared or
        ``[N, ...]``, ``segments`` as one list per image and
        ``base_attribution`` as ``[N, ...]``; the other calls take one image's.
        """
        check_no_extra(f"XRAI.{call}", kwargs)
        params = self._check_parameters(extra_parameters)
        if xs.ndim not in (3, 4):
            raise ValueError(f"x_value: expected an image [H, W] or [H, W, C], got shape "
                             f"{xs.shape[1:]}")
        n, one, batch = len(xs), xs.shape[1:], call == "GetMaskBatch"
        attributions = None
        if base_attribution is not None:
            arr = np.asarray(base_attribution)
            if batch and arr.shape != xs.shape:
                raise ValueError(f"base_attribution: expected shape [N, *{one}] with N = {n}, "
                                 f"got shape {arr.shape}")
            attributions = check_array("base_attribution", arr, one, batched=batch)
            if not batch:
                attributions = attributions[None]
        per_input_baselines = None
        if baselines is not None and attributions is None:
            if isinstance(baselines, np.ndarray) and baselines.shape == one:
                raise TypeError("baselines: expected a list of baselines, got one array of "
                                "the input's shape; pass [baseline]")
            items = list(baselines)
            if not items:
                raise ValueError("baselines: expected at least one baseline, got none")
            stacks = []
            for k, b in enumerate(items):
                arr = np.asarray(b)
                if batch and arr.shape == xs.shape:
                    stacks.append(check_array(f"baselines[{k}]", arr, one, batched=True))
                else:
                    stacks.append(np.broadcast_to(
                        check_array(f"baselines[{k}]", arr, one, batched=False), xs.shape))
            per_input_baselines = [[s[i] for s in stacks] for i in range(n)]
        per_input_segments = None
        if segments is not None:
            lists = list(segments) if batch else [segments]
            if len(lists) != n:
                raise ValueError(f"segments: expected one list of segments per input ({n}), "
                                 f"got {len(lists)}")
            per_input_segments = [self._check_segments(s, xs.shape[1:3]) for s in lists]
        else:
            _skimage()  # fail early and clearly if scikit-image is missing
        if attributions is not None:
            rows = 1
        else:
            rows = params.steps * (2 if per_input_baselines is None
                                   else len(per_input_baselines[0]))
        args = {"baselines": per_input_baselines, "segments": per_input_segments,
                "attributions": attributions, "params": params, "progress": progress}
        return args, rows

    def _masks(self, inputs, sources, feed, batch_size, **args):
        outputs = self._details(inputs, sources, feed, batch_size, **args)
        return np.stack([out.attribution_mask for out in outputs])

    def _details(self, inputs: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int,
                 *, baselines: list | None, segments: list | None,
                 attributions: np.ndarray | None, params: XRAIParameters,
                 progress: bool | None) -> list[XRAIOutput]:
        """XRAI of each row of ``inputs``; the lists hold one entry per public input."""
        n = len(inputs)
        if baselines is None and attributions is None:
            baselines = [[np.min(x) * np.ones_like(x), np.max(x) * np.ones_like(x)]
                         for x in inputs]
        elif baselines is not None:
            baselines = [baselines[s] for s in sources]
        masks = None if segments is None else [segments[s] for s in sources]
        given = None if attributions is None else [attributions[s] for s in sources]

        # The segmentation (CPU, partly outside the GIL) runs in a thread while
        # the model computes Integrated Gradients; a few images ahead at most.
        ahead = 2
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: dict[int, Future] = {}

            def prefetch(i: int) -> None:
                if masks is None and i < n:
                    pending[i] = pool.submit(self._segments_of, inputs[i])

            try:
                for i in range(ahead):
                    prefetch(i)
                ig_per_baseline = None
                per_row = given
                if given is None:
                    ig_per_baseline = self._integrated_gradients(
                        inputs, sources, feed, batch_size, baselines, params.steps, progress)
                    per_row = [np.mean(per, axis=0) for per in ig_per_baseline]
                results = []
                with progress_bar(progress, n, "XRAI", auto_min=5) as bar:
                    for i in range(n):
                        prefetch(i + ahead)
                        index = masks[i] if masks is not None else pending.pop(i).result()
                        out = self._merge(per_row[i], index, params)
                        if ig_per_baseline is not None:
                            out.baselines = list(baselines[i])
                        if params.return_ig_attributions:
                            out.ig_attribution = (given[i] if ig_per_baseline is None
                                                  else list(ig_per_baseline[i]))
                        results.append(out)
                        bar.update(1)
            finally:
                for future in pending.values():
                    future.cancel()
        return results

    def _merge(self, attribution: np.ndarray, segments: SegmentIndex,
               params: XRAIParameters) -> XRAIOutput:
        """The region merge of one image, from its attribution ``[H, W(, C)]``."""
        attr = attribution.max(axis=-1) if attribution.ndim > 2 else attribution
        flat = np.ascontiguousarray(attr).reshape(-1)
        min_diff = params.experimental_params.get("min_pixel_diff", 50)
        if params.algorithm == "full":
            gain_map, trace = merge_full(flat, segments, area_threshold=params.area_threshold,
                                         min_pixel_diff=min_diff)
        else:
            gain_map, trace = merge_fast(flat, segments, min_pixel_diff=min_diff)
        gain_map, regions = finish_regions(flat, gain_map, trace)
        out = XRAIOutput(gain_map.reshape(attr.shape))
        if params.return_xrai_segments:
            out.segments = self._format_regions(regions, attr.shape, params.flatten_xrai_segments)
        return out

    def _integrated_gradients(self, inputs, sources, feed, batch_size, baselines, steps,
                              progress) -> list[list[np.ndarray]]:
        """IG of every (input, baseline) pair in one stream of shared batches."""
        rows = [(i, b) for i in range(len(inputs)) for b in range(len(baselines[i]))]
        index = np.array([i for i, _ in rows])
        starts = np.stack([baselines[i][b] for i, b in rows])
        alphas, weights = quadrature("pair", steps)
        masks, _ = integrated_gradients(self.backend, inputs[index], starts, sources[index],
                                        feed, batch_size, alphas, weights, progress=progress,
                                        paths=self._builder("paths"))
        out: list[list[np.ndarray]] = [[] for _ in inputs]
        for (i, _), mask in zip(rows, masks):
            out[i].append(mask)
        return out

    @staticmethod
    def _check_parameters(params: Any) -> XRAIParameters:
        if params is None:
            return XRAIParameters()
        if not hasattr(params, "algorithm") or not hasattr(params, "steps"):
            raise TypeError(f"extra_parameters: expected XRAIParameters, got "
                            f"{type(params).__name__}")
        if params.algorithm not in ("full", "fast"):
            raise ValueError(f"extra_parameters.algorithm: expected 'full' or 'fast', got "
                             f"{params.algorithm!r}")
        check_positive_int("extra_parameters.steps", params.steps)
        check_finite_number("extra_parameters.area_threshold", params.area_threshold)
        return params

    @staticmethod
    def _check_segments(segments: Any, shape: tuple[int, int]) -> SegmentIndex:
        """Segments as a :class:`SegmentIndex`, or a ValueError naming the bad one."""
        if isinstance(segments, np.ndarray) and segments.ndim == 3:
            items = list(segments)
        elif isinstance(segments, (list, tuple)):
            items = segments
        else:
            raise TypeError(f"segments: expected a list of [H, W] boolean masks (or an [n, H, W] "
                            f"array), got {type(segments).__name__}")
        stacked = np.zeros((len(items), *shape), bool)
        for k, item in enumerate(items):
            item = np.asarray(item)
            if item.shape != tuple(shape):
                raise ValueError(f"segments: expected masks of the image's shape {tuple(shape)}, "
                                 f"got segments[{k}] of shape {item.shape}")
            stacked[k] = item.astype(bool, copy=False)
        return SegmentIndex.from_dense(stacked)

    @staticmethod
    def _format_regions(regions: list[np.ndarray], shape: tuple[int, ...], flatten: bool
                        ) -> Any:
        if flatten:
            ranks = np.zeros(int(np.prod(shape)), int)
            for rank, pixels in enumerate(regions, start=1):
                ranks[pixels] = rank
            return ranks.reshape(shape)
        masks = []
        for pixels in regions:
            mask = np.zeros(int(np.prod(shape)), bool)
            mask[pixels] = True
            masks.append(mask.reshape(shape))
        return masks
