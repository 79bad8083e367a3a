"""Performance Information Curves: SIC and AIC (Kapishnikov et al., XRAI, 2019).

Kapishnikov, Bolukbasi, Viégas and Terry, "XRAI: Better Attributions Through
Regions", ICCV 2019, arXiv:1906.02825, section 4.

Start from a *blurred* image that keeps almost none of the original's
information and reveal the original's pixels in the order of the saliency
map, a growing fraction at a time. For each partly revealed image record

* its information, estimated by its losslessly compressed size (WebP
  lossless by default, through Pillow), normalised so that the blurred image
  is 0 and the original 1 (x axis);
* the model's performance on it, normalised the same way (y axis): the
  softmax probability of the target class for the **Softmax Information
  Curve (SIC)**, 1 if the model predicts the target class else 0 for the
  **Accuracy Information Curve (AIC)**.

A good saliency map reaches the model's performance with little
information: a high area under the curve. The blurred image is the PAIR
implementation's: the pixels of a small random mask (plus the four corners)
and the revealed pixels are kept and every other pixel is linearly
interpolated between them (Delaunay triangulation, needs SciPy). Images the
curve is not defined for (the model is not confident enough on the original,
or the blurred image already scores or compresses as well as the original)
are skipped, as in the paper, and left out of the aggregate curve, which is
the median (or mean) of the per-image curves.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.checks import check_finite_number, check_positive_int
from ._common import (
    ModelFunction,
    check_images_masks,
    check_targets,
    evaluate_rows,
    select_scores,
    trapezoid,
)

#: Fractions of the most salient pixels revealed (the PIC paper's thresholds).
DEFAULT_THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34,
                      0.5, 0.75)
KINDS = ("sic", "aic")


# -- building blocks -----------------------------------------------------------------


def _linear_fill(keep: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values ``[u, C]`` at the pixels where ``keep`` is False, linearly interpolated.

    Piecewise-linear interpolation over the Delaunay triangulation of the kept
    pixels (SciPy's Qhull, as ``scipy.interpolate.griddata(method="linear")``).
    The barycentric weights are computed here from integer cross products, so
    no LAPACK call is made per triangle (which is slow with a threaded BLAS on
    busy machines); each pixel is located by scanning the bounding boxes of
    the triangles, with an exact integer inside test.
    """
    try:
        from scipy.spatial import Delaunay
    except ImportError as err:  # pragma: no cover - scipy comes with the metrics extra
        raise ImportError("PIC metrics need SciPy: pip install 'saliency_tf1[metrics]'") from err
    h, w = keep.shape
    known = np.argwhere(keep)
    simplices = Delaunay(known.astype(np.float64)).simplices
    a, b, c = (known[simplices[:, j]] for j in range(3))
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    live = det != 0
    a, b, c, det, simplices = a[live], b[live], c[live], det[live], simplices[live]
    corners = np.stack([a, b, c])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    width = hi[:, 1] - lo[:, 1] + 1
    counts = (hi[:, 0] - lo[:, 0] + 1) * width
    tri = np.repeat(np.arange(len(det)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = lo[tri, 0] + offset // width[tri]
    cols = lo[tri, 1] + offset % width[tri]
    wanted = ~keep[rows, cols]
    tri, rows, cols = tri[wanted], rows[wanted], cols[wanted]
    ta, tb, tc, d = a[tri], b[tri], c[tri], det[tri]
    wb = (rows - ta[:, 0]) * (tc[:, 1] - ta[:, 1]) - (cols - ta[:, 1]) * (tc[:, 0] - ta[:, 0])
    wc = (tb[:, 0] - ta[:, 0]) * (cols - ta[:, 1]) - (tb[:, 1] - ta[:, 1]) * (rows - ta[:, 0])
    wa = d - wb - wc
    sign = np.sign(d)
    inside = (wa * sign >= 0) & (wb * sign >= 0) & (wc * sign >= 0)
    tri, rows, cols, wa, wb, wc = (v[inside] for v in (tri, rows, cols, wa, wb, wc))
    # A pixel on an edge shared by two triangles gets the same value from both.
    flat, first = np.unique(rows * w + cols, return_index=True)
    unknown_flat = np.flatnonzero(~keep.reshape(-1))
    if len(flat) != len(unknown_flat):  # pragma: no cover - corners are kept, hull covers all
        raise RuntimeError("reveal_blurred: some pixels fell outside the triangulation")
    tri, wa, wb, wc = tri[first], wa[first], wb[first], wc[first]
    s = simplices[tri]
    num = (wa[:, None] * values[s[:, 0]] + wb[:, None] * values[s[:, 1]]
           + wc[:, None] * values[s[:, 2]])
    return num / det[tri][:, None]


def reveal_blurred(image: Any, revealed: Any) -> np.ndarray:
    """The image with only the ``revealed`` pixels kept, the rest linearly interpolated.

    The four corners are always kept, so every pixel lies inside the
    triangulation of the kept ones. An image with every pixel revealed is
    returned as it is (a copy). Integer images are rounded back to their dtype.

    Args:
      image: ``[H, W]`` or ``[H, W, C]``, ``H, W >= 2``.
      revealed: ``[H, W]`` booleans, True where the original pixel is kept.
    """
    image = np.asarray(image)
    keep = np.array(revealed, dtype=bool)
    h, w = image.shape[:2]
    if keep.shape != (h, w) or h < 2 or w < 2:
        raise ValueError(f"revealed: expected shape {(h, w)} (both >= 2), got {keep.shape}")
    keep[[0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    if keep.all():
        return image.copy()
    planes = image.reshape(h, w, -1)
    out = planes.astype(np.result_type(image.dtype, np.float32))
    out[~keep] = _linear_fill(keep, planes[keep].astype(np.float64))
    if image.dtype.kind in "iu":
        out = np.round(out)
    return out.astype(image.dtype).reshape(image.shape)


def estimate_information(image: Any, format: str = "webp") -> int:
    """The information in an 8-bit image, estimated as its losslessly compressed size in bytes.

    ``format``: ``"webp"`` (WebP lossless, ``quality=100``, as the PIC paper's
    implementation) or ``"png"``, both written by Pillow. ``[H, W]`` and
    ``[H, W, 1|3|4]`` images are encoded as one picture; other channel counts
    as one grey picture per channel, sizes summed.
    """
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow comes with the metrics extra
        raise ImportError("PIC metrics need Pillow: pip install 'saliency_tf1[metrics]'") from err
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image: expected dtype uint8, got {image.dtype}")
    if format not in ("webp", "png"):
        raise ValueError(f"format: expected 'webp' or 'png', got {format!r}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        return sum(estimate_information(image[..., c], format) for c in range(image.shape[-1]))
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 100} if format == "webp" else {}
    Image.fromarray(image).save(buffer, format=format, **options)
    return buffer.tell()


def random_reveal_masks(n: int, shape: tuple[int, int], fraction: float = 0.01,
                        seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """``[n, H, W]`` boolean masks with ``int(fraction * H * W)`` random pixels set each.

    They seed the blurred images; give every method the same masks (same
    ``seed``) so that their curves are comparable.
    """
    fraction = check_finite_number("fraction", fraction, minimum=0.0)
    if fraction > 1:
        raise ValueError(f"fraction: expected a value in [0, 1], got {fraction}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    size = int(np.prod(shape))
    masks = np.zeros((n, size), bool)
    for mask in masks:
        mask[rng.choice(size, int(size * fraction), replace=False)] = True
    return masks.reshape((n, *shape))


def pic_curve(
    information: np.ndarray,
    performance: np.ndarray,
    *,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One image's curve from its normalised points; returns ``(x, y, auc)``.

    ``information[t]`` and ``performance[t]`` are the normalised information
    and performance after threshold ``t`` (in [0, 1]). With
    ``keep_monotonous`` the performance is replaced by its running maximum
    over the thresholds. The points, then the ends ``(0, 0)`` and ``(1, 1)``,
    are sorted by information (stable) and joined by straight lines, sampled
    at ``num_data_points`` evenly spaced ``x`` in [0, 1) plus ``x = 1``; the
    area is the trapezoid rule over these samples. Where points share an
    information value (e.g. several clipped to 0), the curve comes in at the
    first of them and leaves from the last, as in the paper's implementation
    (so points clipped to 0 information are overridden by the ``(0, 0)`` end).
    """
    perf = np.asarray(performance, dtype=np.float64)
    if keep_monotonous:
        perf = np.maximum.accumulate(np.maximum(perf, 0.0))
    xs = np.concatenate([np.asarray(information, dtype=np.float64), [0.0, 1.0]])
    ys = np.concatenate([perf, [0.0, 1.0]])
    order = np.argsort(xs, kind="stable")
    curve_x = np.append(np.linspace(0.0, 1.0, num_data_points, endpoint=False), 1.0)
    curve_y = np.interp(curve_x, xs[order], ys[order])
    return curve_x, curve_y, float(trapezoid(curve_y, curve_x))


# -- results -----------------------------------------------------------------------


@dataclass
class PicAggregate:
    """The aggregate curve of many images: ``curve_y`` is the median (or mean) per ``x``."""

    kind: str
    curve_x: np.ndarray
    curve_y: np.ndarray
    auc: float
    n_images: int


@dataclass
class PicCurves:
    """SIC or AIC curves of a batch of images.

    Attributes:
      kind: ``"sic"`` or ``"aic"``.
      curve_x: ``[P]`` normalised information, shared by all images.
      curve_y: ``[N, P]`` normalised performance per image (NaN rows for skipped images).
      auc: ``[N]`` area under each image's curve (NaN for skipped images).
      skipped: per image, ``None`` or why the curve is not defined for it.
      thresholds: ``[T]`` fractions of the most salient pixels revealed.
      information: ``[N, T + 2]`` raw information estimates (bytes) of the blurred
        image, each threshold's image and the original (NaN where not computed).
      performance: ``[N, T + 2]`` raw model performance on the same images.
      targets: ``[N]`` the class scored per image (``None`` for single-output models).
    """

    kind: str
    curve_x: np.ndarray
    curve_y: np.ndarray
    auc: np.ndarray
    skipped: list[str | None]
    thresholds: np.ndarray
    information: np.ndarray
    performance: np.ndarray
    targets: np.ndarray | None = field(default=None)

    @property
    def valid(self) -> np.ndarray:
        """``[N]`` True for the images whose curve is defined."""
        return np.array([reason is None for reason in self.skipped])

    def aggregate(self, method: str = "median") -> PicAggregate:
        """The aggregate curve over the valid images and its area (the paper's number)."""
        if method not in ("median", "mean"):
            raise ValueError(f"method: expected 'median' or 'mean', got {method!r}")
        ys = self.curve_y[self.valid]
        if len(ys) == 0:
            raise ValueError(f"{self.kind}: no image has a defined curve; reasons: {self.skipped}")
        curve_y = np.median(ys, axis=0) if method == "median" else ys.mean(axis=0)
        return PicAggregate(self.kind, self.curve_x, curve_y,
                            float(trapezoid(curve_y, self.curve_x)), len(ys))


# -- the metric ----------------------------------------------------------------------


def _to_uint8(image: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    lo, hi = value_range
    scaled = (np.asarray(image, np.float64) - lo) / (hi - lo)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def _performance(kind: str, outputs: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    if kind == "sic":
        return select_scores(outputs, targets)
    if outputs.ndim != 2:
        raise ValueError("model: AIC needs class scores [n, classes] to tell if the prediction "
                         "is correct, got one score per row")
    return (np.argmax(outputs, axis=1) == targets).astype(np.float64)


def pic_curves(
    model: ModelFunction,
    images: Any,
    masks: Any,
    *,
    kinds: Sequence[str] = KINDS,
    targets: Any = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    random_masks: Any = None,
    random_fraction: float = 0.01,
    seed: int | np.random.Generator | None = 0,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    information: str | Callable[[np.ndarray], float] = "webp",
    value_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 64,
    progress: bool | None = None,
) -> dict[str, PicCurves]:
    """SIC and/or AIC curves of each image, sharing the blurred images between them.

    Args:
      model: ``rows -> [n, classes]`` class probabilities (``[n]`` scores
        work for SIC only), e.g. :func:`~saliency_tf1.metrics.tf1_model_function`.
      images: ``[N, H, W(, C)]`` model inputs: uint8, or floats in ``value_range``.
      masks: ``[N, H, W]`` saliency maps (higher = more important, used as
        given) or masks of the images' shape (reduced to ``sum_c |m|``).
      kinds: which curves: ``"sic"``, ``"aic"`` or both.
      targets: the class per image (int or ``[N]``); default the class the
        model predicts on the original image.
      thresholds: ascending fractions ``t``; image ``t`` keeps the pixels whose
        saliency is at least the ``1 - t`` quantile of the map (ties included).
      random_masks: ``[N, H, W]`` booleans kept in every blurred image;
        default :func:`random_reveal_masks` (``random_fraction``, ``seed``).
      min_pred_value: images whose original performance is below are skipped.
      keep_monotonous: make each curve non-decreasing (the paper's choice).
      num_data_points: samples of each curve on [0, 1) (plus ``x = 1``).
      information: ``"webp"``, ``"png"`` or ``f(uint8 image) -> float``.
      value_range: the range float images are mapped to 0..255 from for the
        information estimate (ignored for uint8 images).
      batch_size: most rows per model call (changes only how the work is run).
      progress: show a progress bar (``None``: for long runs on a terminal).

    Returns:
      ``{kind: PicCurves}``; ``result[kind].aggregate().auc`` is the paper's number.
    """
    kinds = tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds: expected a non-empty subset of {KINDS}, got {kinds!r}")
    images, maps = check_images_masks(images, masks)
    n, (h, w) = len(images), images.shape[1:3]
    targets = check_targets(targets, n)
    ts = np.asarray(thresholds, dtype=np.float64)
    if ts.ndim != 1 or len(ts) == 0 or np.any((ts < 0) | (ts > 1)) or np.any(np.diff(ts) < 0):
        raise ValueError(f"thresholds: expected ascending fractions in [0, 1], got {thresholds}")
    min_pred_value = check_finite_number("min_pred_value", min_pred_value)
    num_data_points = check_positive_int("num_data_points", num_data_points)
    lo, hi = (check_finite_number("value_range", v) for v in value_range)
    if hi <= lo:
        raise ValueError(f"value_range: expected (low, high) with low < high, got {value_range}")
    if isinstance(information, str):
        fmt = information
        if fmt not in ("webp", "png"):
            raise ValueError(f"information: expected 'webp', 'png' or a callable, got {fmt!r}")

        def measure(img: np.ndarray) -> float:
            return float(estimate_information(_to_uint8(img, (lo, hi)), fmt))
    elif callable(information):
        def measure(img: np.ndarray) -> float:
            return float(information(_to_uint8(img, (lo, hi))))
    else:
        raise TypeError(f"information: expected 'webp', 'png' or a callable, got {information!r}")
    if random_masks is None:
        random_masks = random_reveal_masks(n, (h, w), random_fraction, seed)
    random_masks = np.asarray(random_masks)
    if random_masks.shape != (n, h, w) or random_masks.dtype != bool:
        raise ValueError(
            f"random_masks: expected booleans of shape {(n, h, w)}, got {random_masks.dtype} "
            f"of shape {random_masks.shape}"
        )

    T = len(ts)
    info = np.full((n, T + 2), np.nan)

    # Pass 1: the original and the fully blurred image of every input.
    def ends():
        for i in range(n):
            blurred = reveal_blurred(images[i], random_masks[i])
            info[i, 0], info[i, -1] = measure(blurred), measure(images[i])
            yield images[i]
            yield blurred

    end_out = evaluate_rows(model, ends(), 2 * n, batch_size, progress, "PIC (ends)")
    if targets is None and end_out.ndim == 2:
        targets = np.argmax(end_out[0::2], axis=1)
    perf = {k: np.full((n, T + 2), np.nan) for k in kinds}
    skipped: dict[str, list[str | None]] = {k: [None] * n for k in kinds}
    for k in kinds:
        p = _performance(k, end_out, None if targets is None else np.repeat(targets, 2))
        perf[k][:, -1], perf[k][:, 0] = p[0::2], p[1::2]
        for i in range(n):
            if perf[k][i, -1] < min_pred_value:
                skipped[k][i] = (f"performance on the original {perf[k][i, -1]:.4g} is below "
                                 f"min_pred_value {min_pred_value:.4g}")
            elif info[i, 0] >= info[i, -1]:
                skipped[k][i] = (f"the blurred image's information {info[i, 0]:.4g} is not "
                                 f"below the original's {info[i, -1]:.4g}")
            elif perf[k][i, 0] >= perf[k][i, -1]:
                skipped[k][i] = (f"performance on the blurred image {perf[k][i, 0]:.4g} is not "
                                 f"below the original's {perf[k][i, -1]:.4g}")

    # Pass 2: the partly revealed images, for the images some curve is defined for.
    todo = [i for i in range(n) if any(skipped[k][i] is None for k in kinds)]

    def revealed_rows():
        for i in todo:
            for t, frac in enumerate(ts):
                keep = (maps[i] >= np.quantile(maps[i], 1.0 - frac)) | random_masks[i]
                img = reveal_blurred(images[i], keep)
                info[i, t + 1] = measure(img)
                yield img

    mid_out = evaluate_rows(model, revealed_rows(), len(todo) * T, batch_size, progress,
                            "PIC")
    curve_x = np.append(np.linspace(0.0, 1.0, num_data_points, endpoint=False), 1.0)
    results = {}
    for k in kinds:
        if todo:
            rows_targets = None if targets is None else np.repeat(targets[todo], T)
            perf[k][todo, 1:-1] = _performance(k, mid_out, rows_targets).reshape(len(todo), T)
        curve_y = np.full((n, len(curve_x)), np.nan)
        auc = np.full(n, np.nan)
        for i in range(n):
            if skipped[k][i] is not None:
                continue
            x = np.clip((info[i, 1:-1] - info[i, 0]) / (info[i, -1] - info[i, 0]), 0.0, 1.0)
            y = np.clip((perf[k][i, 1:-1] - perf[k][i, 0]) / (perf[k][i, -1] - perf[k][i, 0]),
                        0.0, 1.0)
            _, curve_y[i], auc[i] = pic_curve(x, y, keep_monotonous=keep_monotonous,
                                              num_data_points=num_data_points)
        results[k] = PicCurves(k, curve_x, curve_y, auc, skipped[k], ts, info.copy(), perf[k],
                               targets)
    return results


def sic(model: ModelFunction, images: Any, masks: Any, **kwargs: Any) -> PicCurves:
    """Softmax Information Curves (performance = softmax probability of the target).

    Arguments as for :func:`pic_curves`.
    """
    return pic_curves(model, images, masks, kinds=("sic",), **kwargs)["sic"]


def aic(model: ModelFunction, images: Any, masks: Any, **kwargs: Any) -> PicCurves:
    """Accuracy Information Curves (performance = 1 if the target is predicted, else 0).

    Arguments as for :func:`pic_curves`.
    """
    return pic_curves(model, images, masks, kinds=("aic",), **kwargs)["aic"]
