"""The demo dataset: coloured shapes on textured noise, with the informative region known.

Each image holds one shape; its class is the shape (square, disk, triangle,
cross), never its colour, size or place, and the background is random
texture. The pixels of the shape are returned as a boolean mask per image, so
a saliency map can be scored by how much of its mass falls on the shape.
Everything is generated from a seed: nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("square", "disk", "triangle", "cross")


@dataclass
class ShapesDataset:
    """Generated images with their labels and the pixels that decide them.

    ``images``: ``[n, size, size, 3]`` float32 in [0, 1]; ``labels``: ``[n]``
    class indices; ``regions``: ``[n, size, size]`` booleans, True on the
    pixels of each image's shape.
    """

    images: np.ndarray
    labels: np.ndarray
    regions: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> ShapesDataset:
        return ShapesDataset(self.images[index], self.labels[index], self.regions[index],
                             self.class_names)

    def informative(self, margin: int = 1) -> np.ndarray:
        """The regions grown by ``margin`` pixels (8-neighbour dilation), ``[n, size, size]``.

        A shape is told from the background by its edge, and an edge is two
        pixels wide: the shape's border and the background next to it. Scoring
        against the region grown by one pixel counts both.
        """
        if margin < 0:
            raise ValueError(f"margin: expected an int >= 0, got {margin}")
        return dilate(self.regions, margin)


def dilate(masks: np.ndarray, margin: int = 1) -> np.ndarray:
    """Boolean masks ``[..., h, w]`` grown by ``margin`` pixels (a square 8-neighbourhood)."""
    grown = np.asarray(masks, dtype=bool)
    for _ in range(margin):
        padded = np.pad(grown, [(0, 0)] * (grown.ndim - 2) + [(1, 1), (1, 1)])
        h, w = grown.shape[-2:]
        grown = np.zeros_like(grown)
        for dy in range(3):
            for dx in range(3):
                grown |= padded[..., dy:dy + h, dx:dx + w]
    return grown


def _shape_mask(kind: int, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy - cy, xx - cx
    if kind == 0:  # square
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if kind == 1:  # disk
        return dy**2 + dx**2 <= r**2
    if kind == 2:  # upward triangle
        top, bottom = -r, r * 0.8
        half_width = (dy - top) / (bottom - top) * r
        return (dy >= top) & (dy <= bottom) & (np.abs(dx) <= half_width)
    # cross: two bars
    bar = r * 0.3
    return ((np.abs(dy) <= bar) & (np.abs(dx) <= r)) | ((np.abs(dx) <= bar) & (np.abs(dy) <= r))


def _texture(rng: np.random.Generator, size: int, cell: int = 8) -> np.ndarray:
    """Smooth coloured noise plus fine grain.

    A coarse random grid (one value per ``cell`` pixels) is interpolated
    bilinearly, so the background has no block edges for a saliency map to
    latch onto; the grain keeps it from being flat.
    """
    n = size // cell + 2
    coarse = rng.uniform(0.0, 0.6, (n, n, 3)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) / cell
    i = t.astype(np.int64)
    f = (t - i)[:, None, None]
    rows = coarse[i] * (1 - f) + coarse[i + 1] * f                  # [size, n, 3]
    smooth = rows[:, i] * (1 - f[None, :, :, 0]) + rows[:, i + 1] * f[None, :, :, 0]
    return smooth + rng.normal(0.0, 0.05, (size, size, 3)).astype(np.float32)


def make_shapes(n: int, size: int = 32, seed: int = 0) -> ShapesDataset:
    """Generates ``n`` labelled images of ``size`` x ``size`` pixels, deterministically.

    Classes are balanced (``i % 4``) and then shuffled with the seed.
    """
    if n < 1 or size < 16:
        raise ValueError(f"make_shapes: expected n >= 1 and size >= 16, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    images = np.empty((n, size, size, 3), np.float32)
    regions = np.empty((n, size, size), bool)
    for i, kind in enumerate(labels):
        r = rng.uniform(0.17, 0.27) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        region = _shape_mask(int(kind), size, cy, cx, r)
        color = rng.uniform(0.55, 1.0, 3).astype(np.float32)
        img = _texture(rng, size)
        img[region] = color
        images[i] = np.clip(img, 0.0, 1.0)
        regions[i] = region
    return ShapesDataset(images, labels, regions)


# ---------------------------------------------------------------------------
# Beyond images: text, tabular rows, signals, and image + metadata, each with
# the part of the input that decides the class known.

#: Token ids of the special tokens of :func:`make_keyword_sentences` (BERT's names).
PAD_ID, CLS_ID, SEP_ID = 0, 1, 2
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]")
#: Words that never decide the class.
FILLER_WORDS = (
    "the", "a", "film", "story", "plot", "actor", "scene", "was", "is", "and", "it", "this",
    "with", "of", "to", "in", "but", "very", "quite", "rather", "ending", "music", "cast",
    "director", "script", "camera", "long", "short", "old", "new", "some", "many", "seemed",
    "felt", "looked", "made", "one", "two", "just", "really",
)
#: The planted keywords of each class: a sentence holds one, of its class.
KEYWORDS = (("awful", "boring", "dull"), ("great", "superb", "moving"))


@dataclass
class TextDataset:
    """Token-id sentences whose class is decided by a planted keyword (or its absence).

    ``ids``: ``[n, length]`` int32, ``[CLS] w_1 ... w_k [SEP] [PAD] ...``;
    ``attention_mask``: ``[n, length]`` int32, 1 on real tokens (special
    tokens included), 0 on padding; ``labels``: ``[n]`` (0 negative, 1
    positive, 2 neutral); ``keywords``: ``[n, length]`` booleans, True at
    the planted keyword (none in a neutral sentence); ``vocab``: the token
    of each id.
    """

    ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray
    keywords: np.ndarray
    vocab: tuple[str, ...]
    class_names: tuple[str, ...] = ("negative", "positive", "neutral")
    pad_id: int = PAD_ID
    cls_id: int = CLS_ID
    sep_id: int = SEP_ID

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> TextDataset:
        return TextDataset(self.ids[index], self.attention_mask[index], self.labels[index],
                           self.keywords[index], self.vocab, self.class_names, self.pad_id,
                           self.cls_id, self.sep_id)

    def tokens(self, i: int) -> list[str]:
        """The tokens of sentence ``i``, padding left out."""
        return [self.vocab[t] for t, m in zip(self.ids[i], self.attention_mask[i]) if m]


def make_keyword_sentences(n: int, length: int = 16, min_words: int = 5,
                           seed: int = 0) -> TextDataset:
    """Generates ``n`` sentences whose class is decided by a planted keyword, or its absence.

    Each sentence is ``[CLS]``, ``k`` words (``min_words <= k <= length - 2``)
    and ``[SEP]``, padded to ``length``; the words are fillers drawn
    uniformly from :data:`FILLER_WORDS`. A sentence of class 0 ("negative")
    or 1 ("positive") has one of them, at a random place, replaced by a
    keyword of its class (:data:`KEYWORDS`); a sentence of class 2
    ("neutral") has none. With the neutral class, a sentence without
    keywords is never "positive by default": each keyword must move the
    model away from neutral, so both keyword sets are what decides. Classes
    are balanced (``i % 3``) and shuffled with the seed.
    """
    if n < 1 or length < 4 or not 1 <= min_words <= length - 2:
        raise ValueError(f"make_keyword_sentences: expected n >= 1, length >= 4 and "
                         f"1 <= min_words <= length - 2, got n={n}, length={length}, "
                         f"min_words={min_words}")
    vocab = SPECIAL_TOKENS + FILLER_WORDS + KEYWORDS[0] + KEYWORDS[1]
    first_filler = len(SPECIAL_TOKENS)
    first_keyword = [first_filler + len(FILLER_WORDS),
                     first_filler + len(FILLER_WORDS) + len(KEYWORDS[0])]
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 3).astype(np.int64)
    ids = np.full((n, length), PAD_ID, np.int32)
    keywords = np.zeros((n, length), bool)
    for i, label in enumerate(labels):
        k = int(rng.integers(min_words, length - 1))
        words = rng.integers(first_filler, first_filler + len(FILLER_WORDS), k)
        where = int(rng.integers(0, k))
        if label < 2:
            words[where] = first_keyword[label] + rng.integers(0, len(KEYWORDS[label]))
            keywords[i, where + 1] = True
        ids[i, 0], ids[i, 1:k + 1], ids[i, k + 1] = CLS_ID, words, SEP_ID
    mask = (ids != PAD_ID).astype(np.int32)
    return TextDataset(ids, mask, labels, keywords, vocab)


@dataclass
class TabularDataset:
    """Rows of standard-normal features whose class depends on a known few.

    ``features``: ``[n, F]`` float32; ``labels``: ``[n]``; ``informative``:
    ``[F]`` booleans, True on the features the class depends on.
    """

    features: np.ndarray
    labels: np.ndarray
    informative: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...] = ("no", "yes")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> TabularDataset:
        return TabularDataset(self.features[index], self.labels[index], self.informative,
                              self.feature_names, self.class_names)


def make_tabular(n: int, n_features: int = 12, seed: int = 0) -> TabularDataset:
    """Generates ``n`` rows; the class depends on 3 of the ``n_features`` features only.

    Every feature is standard normal and independent. With ``a, b, c`` the
    informative features (chosen by the seed), the class is
    ``2 x_a + 2 x_b x_c > 0``: a main effect and an interaction, so neither
    ``b`` nor ``c`` helps without the other. The other features are noise.
    """
    if n < 1 or n_features < 3:
        raise ValueError(f"make_tabular: expected n >= 1 and n_features >= 3, got n={n}, "
                         f"n_features={n_features}")
    rng = np.random.default_rng(seed)
    a, b, c = rng.choice(n_features, 3, replace=False)
    features = rng.normal(size=(n, n_features)).astype(np.float32)
    score = 2 * features[:, a] + 2 * features[:, b] * features[:, c]
    informative = np.zeros(n_features, bool)
    informative[[a, b, c]] = True
    names = tuple(f"f{j}" for j in range(n_features))
    return TabularDataset(features, (score > 0).astype(np.int64), informative, names)


@dataclass
class SignalDataset:
    """Multichannel signals whose class is the shape of a motif planted at a random time.

    ``signals``: ``[n, length, channels]`` float32; ``labels``: ``[n]``;
    ``windows``: ``[n, length]`` booleans, True on the motif's time steps;
    ``motif_channels``: ``[n]``, the channel holding the motif.
    """

    signals: np.ndarray
    labels: np.ndarray
    windows: np.ndarray
    motif_channels: np.ndarray
    class_names: tuple[str, ...] = ("up-down", "down-up")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> SignalDataset:
        return SignalDataset(self.signals[index], self.labels[index], self.windows[index],
                             self.motif_channels[index], self.class_names)


def make_motif_signals(n: int, length: int = 96, channels: int = 2, motif_length: int = 16,
                       seed: int = 0) -> SignalDataset:
    """Generates ``n`` signals: smooth noise on every channel plus one motif on one channel.

    The motif is one period of a sine under a half-sine envelope,
    ``sin(2 pi u) sin(pi u)`` for ``u`` in ``[0, 1)`` over ``motif_length``
    steps: class 0 goes up then down, class 1 (the negated motif) down then
    up. Its start and channel are uniform. The background is white noise
    smoothed over 5 steps (std about 0.3) plus white noise (std 0.1), so it
    has up-down bumps of its own, smaller than the motif (peak 1.3).
    """
    if n < 1 or channels < 1 or not 2 <= motif_length <= length:
        raise ValueError(f"make_motif_signals: expected n >= 1, channels >= 1 and "
                         f"2 <= motif_length <= length, got n={n}, length={length}, "
                         f"channels={channels}, motif_length={motif_length}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    u = np.arange(motif_length) / motif_length
    motif = (1.3 / 0.77) * np.sin(2 * np.pi * u) * np.sin(np.pi * u)  # peak ~1.3
    raw = rng.normal(0, 0.3 * np.sqrt(5), (n, length + 4, channels))
    smooth = sum(raw[:, k:k + length] for k in range(5)) / 5
    signals = (smooth + rng.normal(0, 0.1, (n, length, channels))).astype(np.float32)
    windows = np.zeros((n, length), bool)
    starts = rng.integers(0, length - motif_length + 1, n)
    where = rng.integers(0, channels, n)
    for i in range(n):
        s = slice(starts[i], starts[i] + motif_length)
        signals[i, s, where[i]] += (1 if labels[i] == 0 else -1) * motif
        windows[i, s] = True
    return SignalDataset(signals, labels, windows, where.astype(np.int64))


@dataclass
class ImageMetadataDataset:
    """Images with a metadata row each; the class needs both (an interaction).

    ``images``: ``[n, size, size, 1]`` float32; ``metadata``: ``[n, M]``
    float32; ``labels``: ``[n]``; ``regions``: ``[n, size, size]`` booleans
    on the patch that matters; ``informative``: ``[M]`` booleans on the
    metadata column that matters.
    """

    images: np.ndarray
    metadata: np.ndarray
    labels: np.ndarray
    regions: np.ndarray
    informative: np.ndarray
    class_names: tuple[str, ...] = ("disagree", "agree")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: slice | np.ndarray) -> ImageMetadataDataset:
        return ImageMetadataDataset(self.images[index], self.metadata[index],
                                    self.labels[index], self.regions[index], self.informative,
                                    self.class_names)


def make_image_metadata(n: int, size: int = 12, n_meta: int = 4,
                        seed: int = 0) -> ImageMetadataDataset:
    """Generates ``n`` (image, metadata) pairs whose class is an interaction of both.

    Each image is noise (std 0.2) with one square patch (side 3 to 5, at a
    random place) of value +1 (bright) or -1 (dark). Each metadata row is
    standard normal except one column, ``k`` (chosen by the seed), which is
    ``+-U(0.5, 1.5)``. The class is 1 ("agree") when the patch's sign equals
    ``sign(meta_k)``: an XOR, so neither input alone says anything about the
    class. Classes are balanced.
    """
    if n < 1 or size < 6 or n_meta < 1:
        raise ValueError(f"make_image_metadata: expected n >= 1, size >= 6 and n_meta >= 1, "
                         f"got n={n}, size={size}, n_meta={n_meta}")
    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, n_meta))
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    patch_sign = rng.choice([-1.0, 1.0], n)
    meta_sign = np.where(labels == 1, patch_sign, -patch_sign)
    metadata = rng.normal(size=(n, n_meta)).astype(np.float32)
    metadata[:, k] = meta_sign * rng.uniform(0.5, 1.5, n)
    images = rng.normal(0, 0.2, (n, size, size, 1)).astype(np.float32)
    regions = np.zeros((n, size, size), bool)
    for i in range(n):
        side = int(rng.integers(3, 6))
        r, c = rng.integers(0, size - side + 1, 2)
        images[i, r:r + side, c:c + side, 0] = patch_sign[i]
        regions[i, r:r + side, c:c + side] = True
    informative = np.zeros(n_meta, bool)
    informative[k] = True
    return ImageMetadataDataset(images, metadata, labels, regions, informative)
