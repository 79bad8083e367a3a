"""Explaining a stream of inputs chunk by chunk, in memory that does not grow with the stream;
and runs over a data set, written to a folder.

:func:`iter_masks` reads an iterable of inputs (a generator over a dataset,
files decoded one at a time, ...) a chunk at a time, hands each chunk to one
``GetMaskBatch`` call (whose work is stacked into ``session.run`` batches of
at most ``batch_size`` rows) and yields the masks one by one. At any moment
it holds one chunk of inputs and its masks, whatever the length of the
stream; values fed per input (a class for each image) stream alongside.

:func:`explain_to_dir` explains a data set (image files, or keyed arrays)
with a model given by name (:class:`ModelSpec`) and writes one ``.npz`` per
input and a manifest (:class:`RunWriter`); it resumes where an earlier run
stopped, and a bad input is recorded with its reason instead of stopping the
run. :mod:`saliency_tf1.beam` runs the same worker (:class:`BatchExplainer`)
on Apache Beam.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import itertools
import json
import numbers
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine.batching import chunk_bounds, progress_bar
from .engine.checks import check_array, check_finite_number, check_positive_int
from .engine.session import PerExample

_CALLS = ("GetMaskBatch", "GetMask", "GetSmoothedMask", "GetMaskWithDetails")


def _key_name(key: Any) -> str:
    """A feed key's tensor name (``"op"`` and ``"op:0"`` alike), to spot duplicates."""
    name = key if isinstance(key, str) else getattr(key, "name", repr(key))
    return name if ":" in name else f"{name}:0"


def iter_masks(
    method: Any,
    inputs: Iterable[Any],
    *,
    chunk_size: int | None = None,
    call: str = "GetMaskBatch",
    feed_dict: Mapping[Any, Any] | None = None,
    per_example: Mapping[Any, Iterable[Any]] | None = None,
    progress: bool | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """Yields the mask of each input of ``inputs``, in order, computing a chunk at a time.

    The inputs are read lazily, ``chunk_size`` at a time; each chunk is one
    ``method.GetMaskBatch`` call (so its rows share ``session.run`` batches),
    and its masks are yielded one by one as independent arrays. Memory is
    that of one chunk (inputs, the method's work, masks), not of the stream.

    Args:
      method: a saliency method (any :class:`~saliency_tf1.base.TF1Saliency`,
        or an object with the chosen ``call``).
      inputs: an iterable of inputs, each one input (not batched) of the
        method's input shape; a generator is consumed lazily.
      chunk_size: inputs per ``GetMaskBatch`` call (default: ``batch_size``
        when given, else the method's ``default_batch_size``). It bounds the
        memory; ``batch_size`` (in ``kwargs``) bounds the rows per
        ``session.run``.
      call: ``"GetMaskBatch"`` (the default, batched), or a one-input call
        (``"GetMask"``, ``"GetSmoothedMask"``, ``"GetMaskWithDetails"``) made
        for each input in turn; its result is yielded as it is.
      feed_dict: values for the graph's other placeholders, the same for
        every input; never modified.
      per_example: ``{placeholder: iterable}`` of values fed per input,
        consumed in step with ``inputs`` (e.g. the class of each image for
        :class:`~saliency_tf1.ClassTarget`'s ``classes``). It must hold exactly
        one value per input.
      progress: show a progress bar over inputs (``None``: only when the
        length of ``inputs`` is known, at least 20, and stderr is a terminal).
      **kwargs: the call's own arguments (``batch_size``, ``x_steps``, ...),
        the same for every chunk (so not arguments that hold one entry per
        input of a batch).

    Returns:
      An iterator of masks. Arguments are checked when ``iter_masks`` is
      called; each input is checked when its chunk is read, and an error names
      its index in the stream (``inputs[i]``).

    Example::

        ig = IntegratedGradients(graph, session, target.y, x)
        images = (load(path) for path in paths)            # read one at a time
        for path, mask in zip(paths, iter_masks(ig, images, chunk_size=64,
                                                per_example={target.classes: labels},
                                                x_steps=32, batch_size=256)):
            np.save(out_dir / f"{path.stem}.npy", mask)
    """
    if not isinstance(call, str) or call not in _CALLS:
        raise ValueError(f"call: expected one of {list(_CALLS)}, got {call!r}")
    function = getattr(method, call, None)
    if not callable(function):
        raise TypeError(f"call: {type(method).__name__} has no method {call!r}")
    if chunk_size is None:
        chunk_size = kwargs.get("batch_size") or getattr(method, "default_batch_size", 32)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    if feed_dict is None:
        feed_dict = {}
    if not isinstance(feed_dict, Mapping):
        raise TypeError(f"feed_dict: expected a dict or None, got {type(feed_dict).__name__}")
    if per_example is None:
        per_example = {}
    if not isinstance(per_example, Mapping):
        raise TypeError(
            f"per_example: expected a dict of {{placeholder: iterable}}, got "
            f"{type(per_example).__name__}")
    fed = {_key_name(k) for k in feed_dict}
    twice = [_key_name(k) for k in per_example if _key_name(k) in fed]
    if twice:
        raise ValueError(f"per_example: {twice} also given in feed_dict")
    streams = {}
    for key, values in per_example.items():
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise TypeError(f"per_example[{_key_name(key)!r}]: expected an iterable of one "
                            f"value per input, got {type(values).__name__}")
        streams[key] = iter(values)
    backend = getattr(method, "backend", None)
    shape = getattr(backend, "input_shape", None)
    total = len(inputs) if isinstance(inputs, Sized) else None
    if progress is None and total is None:
        progress = False
    return _stream(function, call == "GetMaskBatch", iter(inputs), streams, dict(feed_dict),
                   shape, chunk_size, (progress, total), kwargs)


def _stream(
    function: Any,
    batched: bool,
    inputs: Iterator[Any],
    streams: dict[Any, Iterator[Any]],
    feed_dict: dict,
    shape: Any,
    chunk_size: int,
    bar_args: tuple[bool | None, int | None],
    kwargs: dict,
) -> Iterator[Any]:
    done = 0
    with progress_bar(*bar_args, "masks") as bar:
        while True:
            # Copies: a reader that reuses one buffer for every input stays correct.
            chunk = [np.array(check_array(f"inputs[{done + j}]", x, shape, batched=False))
                     for j, x in enumerate(itertools.islice(inputs, chunk_size))]
            n = len(chunk)
            feeds = {key: _take(key, stream, n, done) for key, stream in streams.items()}
            if not n:
                return
            if batched:
                try:
                    xs = np.stack(chunk)
                except ValueError as err:
                    raise ValueError(
                        f"inputs[{done}:{done + n}]: inputs of different shapes cannot share "
                        f"a batch ({err})") from None
                del chunk
                feed = {**feed_dict, **{k: PerExample(v) for k, v in feeds.items()}}
                masks = function(xs, feed, **kwargs)
                del xs
                for mask in masks:
                    yield np.array(mask)  # a copy: holding it keeps no chunk alive
                del masks
            else:
                for j, x in enumerate(chunk):
                    feed = {**feed_dict, **{k: v[j] for k, v in feeds.items()}}
                    yield function(x, feed, **kwargs)
                del chunk
            bar.update(n)
            done += n


_END = object()


def _take(key: Any, stream: Iterator[Any], n: int, done: int) -> list[Any]:
    """The next ``n`` values of a per-example stream (``n = 0``: check it is exhausted)."""
    values = list(itertools.islice(stream, n))
    if len(values) < n:
        raise ValueError(f"per_example[{_key_name(key)!r}]: ran out after "
                         f"{done + len(values)} values; expected one per input")
    if n == 0 and next(stream, _END) is not _END:
        raise ValueError(f"per_example[{_key_name(key)!r}]: more values than inputs ({done})")
    return values


# ---------------------------------------------------------------------------
# Runs: many inputs explained with one loaded model, written to a folder.
#
# The pieces below are what a run over a data set is made of, on one machine
# (:func:`explain_to_dir`) and on Apache Beam (:mod:`saliency_tf1.beam`) alike:
# a picklable description of the model (:class:`ModelSpec`), the worker that
# explains a batch of inputs with it (:class:`BatchExplainer`), and the writer
# of the run's folder (:class:`RunWriter`: one ``.npz`` per input and the
# manifest ``manifest.jsonl``).

#: File name endings taken as images when a directory is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")

#: The faithfulness metrics a run can score each mask with (areas under the curves of
#: :func:`saliency_tf1.metrics.deletion` / :func:`~saliency_tf1.metrics.insertion`).
RUN_METRICS = ("deletion", "insertion")



class InputError(ValueError):
    """An input that cannot be explained: unreadable, of the wrong size, not finite."""


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError(
            "reading images needs Pillow: pip install 'saliency_tf1[cli]' (or pip install "
            f"pillow); import failed: {err}") from err
    return Image


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file, reading only its header (InputError otherwise)."""
    Image = _pillow()
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise InputError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected an image file") from None
    except OSError as err:  # PIL.UnidentifiedImageError is an OSError
        raise InputError(f"{path}: cannot read this image: {err}") from None


def check_image_size(path: str, size: tuple[int | None, int | None], *,
                     resize: bool = False) -> tuple[int, int]:
    """The ``(height, width)`` an image will be fed at; InputError if it differs and not ``resize``.

    ``size``: the input tensor's static ``(height, width)``; ``None`` takes any.
    """
    height, width = image_size(path)
    want = (size[0] or height, size[1] or width)
    if (height, width) != want and not resize:
        raise InputError(
            f"{path}: image is {height}x{width} (height x width), the input tensor takes "
            f"{want[0]}x{want[1]}; pass --resize to resize it")
    return want


def load_image(path: str, size: tuple[int | None, int | None] = (None, None),
               channels: int = 3, *, resize: bool = False) -> np.ndarray:
    """Reads an image file as ``[height, width, channels]`` pixels (RGB, or gray for 1 channel).

    8-bit images come back as uint8; 16-bit and float gray images (PNG, TIFF)
    as float32 on the same 0..255 scale, not clipped to 8 bits.

    ``size``: the ``(height, width)`` the model takes (``None``: any). An
    image of another size raises :class:`InputError` naming both sizes, unless
    ``resize``: then it is resized (Pillow's bilinear filter, antialiased when
    shrinking) to exactly that size, aspect ratio not kept. A file that is not
    a readable image raises :class:`InputError` too.
    """
    Image = _pillow()
    if channels not in (1, 3):
        raise ValueError(f"input tensor: expected 1 or 3 channels to read images into, got "
                         f"{channels}")
    want_h, want_w = check_image_size(path, size, resize=resize)
    try:
        with Image.open(path) as img:
            if img.mode in _DEEP_MODES:
                return _load_deep(img, path, (want_h, want_w), channels, Image)
            img = img.convert("L" if channels == 1 else "RGB")
            if (img.height, img.width) != (want_h, want_w):
                img = img.resize((want_w, want_h), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except OSError as err:  # a truncated file whose header reads
        raise InputError(f"{path}: cannot read this image: {err}") from None
    return array[..., None] if channels == 1 else array


#: Pillow's one-channel modes deeper than 8 bits (16-bit PNG/TIFF, 32-bit int, float TIFF).
_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _load_deep(img: Any, path: str, size: tuple[int, int], channels: int, Image: Any
               ) -> np.ndarray:
    """A 16-bit or float gray image on the 0..255 scale of 8-bit pixels, float32.

    16-bit values are divided by 65535; floats in [0, 1] are taken as that
    range, in [0, 255] as pixels; anything else cannot be read faithfully and
    raises :class:`InputError` (converting it to 8 bits would clip it).
    """
    values = np.asarray(img, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    if img.mode.startswith("I;16") or (img.mode == "I" and low >= 0 and high <= 65535):
        values = values / 65535.0 * 255.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif not (img.mode == "F" and low >= 0 and high <= 255):
        raise InputError(f"{path}: cannot read this {img.mode!r} image faithfully: values in "
                         f"[{low:g}, {high:g}], expected 16-bit, [0, 1] or [0, 255]")
    if values.shape != size:
        resized = Image.fromarray(values.astype(np.float32), mode="F").resize(
            (size[1], size[0]), Image.Resampling.BILINEAR)
        values = np.asarray(resized, dtype=np.float64)
    values = np.clip(values, 0.0, 255.0).astype(np.float32)[..., None]
    return values if channels == 1 else np.repeat(values, 3, axis=-1)


def to_model_input(image: np.ndarray, scale: float = 1.0, offset: float = 0.0,
                   dtype: Any = np.float32) -> np.ndarray:
    """``image / 255 * scale + offset``: uint8 pixels to the model's input range.

    The defaults give [0, 1]; ``scale=255`` gives [0, 255]; ``scale=2,
    offset=-1`` gives [-1, 1] (Inception-style preprocessing).
    """
    return (image.astype(np.float64) / 255.0 * scale + offset).astype(dtype)


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand_inputs(items: Sequence[str] | str, *, suffixes: Sequence[str] = IMAGE_SUFFIXES
                  ) -> list[str]:
    """Image paths from files, directories, glob patterns and ``@lists``, in order.

    * a file: itself;
    * a directory: the files under it (all levels) whose name ends with one
      of ``suffixes`` (case-insensitive), sorted;
    * a glob pattern (``images/*.png``, ``data/**/*.jpg``): its matches, sorted;
    * ``@FILE``: the paths listed in FILE, one per line (blank lines and
      lines starting with ``#`` skipped), taken as they are (a missing one
      fails as an input of the run, not here).

    Raises FileNotFoundError for a missing file or list, ValueError for a
    pattern or directory that gives no file.
    """
    if isinstance(items, str | os.PathLike):
        items = [items]
    paths: list[str] = []
    wanted = tuple(s.lower() for s in suffixes)
    for item in items:
        item = os.fspath(item)
        if item.startswith("@"):
            with open(item[1:], encoding="utf-8") as listing:
                paths += [line.strip() for line in listing
                          if line.strip() and not line.lstrip().startswith("#")]
        elif os.path.isdir(item):
            found = sorted(os.path.join(root, name)
                           for root, _, names in os.walk(item) for name in names
                           if name.lower().endswith(wanted))
            if not found:
                raise ValueError(f"{item}: a directory with no image files "
                                 f"({', '.join(suffixes)})")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        elif _is_pattern(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise ValueError(f"{item}: the pattern matches no files")
            paths += found
        else:
            raise FileNotFoundError(errno.ENOENT, "not found", item)
    return paths


def _parse_value(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _check_name(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}: expected a non-empty str (a tensor or op name), got {value!r}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """Everything a worker needs to load a model and explain its outputs; picklable.

    It holds names and plain values only: each worker loads the model itself
    (:meth:`load`), once, so a spec can be shipped to other processes and
    machines.

    Attributes:
      path: the model, as :func:`saliency_tf1.models.load_model` takes it (a
        frozen ``.pb``, a SavedModel directory, a ``.meta`` checkpoint or a
        tf-keras file).
      input_tensor: the image input ``[batch, height, width, channels]``: a
        signature key, tensor name or op name; float.
      output_tensor: the logits ``[batch, classes]``.
      conv_tensor: a conv layer's activations (Grad-CAM methods), or None.
      feeds: ``{placeholder name: value}`` for the graph's other
        placeholders (a string is read as the command line reads it:
        ``"false"``, ``"3"``, ``"0.5"``).
      allow_unsafe_ops: load graphs with ops that touch files or the network
        or run Python (only for models you trust).
      allow_ops: op types to accept besides the safe ones (passed to the
        loader as ``allow_ops`` when given; needs a loader that takes it).
      tags, signature_key: which meta graph and signature of a SavedModel.
      scale, offset: image files are fed as ``pixels / 255 * scale + offset``.
      resize: resize image files to the input's size (else another size is
        an error of that input).
      explain_class: explain this class for every input (default: each
        input's predicted class).
      gradients: build and check the model's gradients at load (``False``: a
        model that cannot be differentiated, for forward-only methods).
    """

    path: str
    input_tensor: str
    output_tensor: str
    conv_tensor: str | None = None
    feeds: tuple[tuple[str, Any], ...] = ()
    allow_unsafe_ops: bool = False
    allow_ops: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ("serve",)
    signature_key: str | None = "serving_default"
    scale: float = 1.0
    offset: float = 0.0
    resize: bool = False
    explain_class: int | None = None
    gradients: bool = True

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.path, str | os.PathLike) or not os.fspath(self.path):
            raise TypeError(f"path: expected the model's path, got {self.path!r}")
        put("path", os.fspath(self.path))
        _check_name("input_tensor", self.input_tensor)
        _check_name("output_tensor", self.output_tensor)
        _check_name("conv_tensor", self.conv_tensor, optional=True)
        feeds = self.feeds.items() if isinstance(self.feeds, Mapping) else self.feeds
        try:
            feeds = tuple((str(k), v) for k, v in feeds)
        except (TypeError, ValueError):
            raise TypeError(f"feeds: expected {{placeholder name: value}}, got "
                            f"{self.feeds!r}") from None
        put("feeds", feeds)
        for name in ("allow_unsafe_ops", "resize", "gradients"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.allow_ops is not None:
            ops = (self.allow_ops,) if isinstance(self.allow_ops, str) else self.allow_ops
            if not all(isinstance(o, str) and o for o in ops):
                raise TypeError(f"allow_ops: expected op type names, got {self.allow_ops!r}")
            put("allow_ops", tuple(ops))
        put("tags", (self.tags,) if isinstance(self.tags, str) else tuple(self.tags))
        put("scale", check_finite_number("scale", self.scale))
        put("offset", check_finite_number("offset", self.offset))
        if self.explain_class is not None:
            if isinstance(self.explain_class, bool) or not isinstance(self.explain_class,
                                                                      numbers.Integral):
                raise TypeError(f"explain_class: expected None or a class index, got "
                                f"{self.explain_class!r}")
            if self.explain_class < 0:
                raise ValueError(f"explain_class: expected a class index >= 0, got "
                                 f"{self.explain_class}")
            put("explain_class", int(self.explain_class))

    def load_kwargs(self) -> dict[str, Any]:
        """The keyword arguments :func:`~saliency_tf1.models.load_model` gets for this model."""
        kwargs: dict[str, Any] = {"allow_unsafe_ops": self.allow_unsafe_ops,
                                  "gradients": self.gradients}
        if self.allow_ops is not None:
            kwargs["allow_ops"] = self.allow_ops
        if os.path.isdir(self.path) or os.path.basename(self.path).startswith("saved_model."):
            kwargs.update(tags=tuple(t for t in self.tags if t),
                          signature_key=self.signature_key or None)
        return kwargs

    def load(self) -> LoadedExplainModel:
        """Loads the model and finds its tensors; checks them before anything runs.

        Raises:
          FileNotFoundError: no model at ``path``.
          ValueError: an unknown tensor (the message lists candidates), an
            input that is not a float image batch, an output that is not
            logits, a placeholder nothing feeds, or an
            :class:`~saliency_tf1.models.UnsafeGraphError`.
        """
        if not os.path.exists(self.path):
            raise FileNotFoundError(errno.ENOENT, "model not found", self.path)
        from .engine.graph import required_placeholders
        from .metrics import tf1_model_function
        from .models import load_model
        from .target import ClassTarget

        model = load_model(self.path, **self.load_kwargs())
        try:
            x = model.tensor(self.input_tensor, role="input")
            logits = model.tensor(self.output_tensor, role="output")
            conv = (model.tensor(self.conv_tensor, role="conv")
                    if self.conv_tensor is not None else None)
            height, width, channels = _check_model_tensors(x, logits)
            feed = {}
            for name, value in self.feeds:
                tensor = model.tensor(name, role="input")
                try:
                    feed[tensor] = np.asarray(_parse_value(value),
                                              dtype=tensor.dtype.as_numpy_dtype)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"feeds[{name!r}]: cannot make a {tensor.dtype.name} value "
                                     f"of {value!r}: {err}") from None
            missing = [t.op.name for t in required_placeholders([logits], [x, *feed])]
            if missing:
                raise ValueError(f"the output depends on placeholder(s) {', '.join(missing)} "
                                 "that nothing feeds: give each a value with --feed NAME=VALUE "
                                 "(ModelSpec feeds=)")
            with model.graph.as_default():
                target = ClassTarget(logits)
            probabilities = tf1_model_function(model.graph, model.session, logits, x,
                                               feed_dict=feed,
                                               softmax=not is_softmax_output(logits))
        except BaseException:
            model.session.close()
            raise
        return LoadedExplainModel(model, x, logits, conv, target, probabilities, feed,
                                  (height, width, channels), x.dtype.as_numpy_dtype)


def is_softmax_output(tensor: Any) -> bool:
    """True if ``tensor`` is a softmax's output, through ``Identity`` ops (a SavedModel's
    signature output usually is one): its values are probabilities already."""
    op = tensor.op
    while op.type in ("Identity", "IdentityN", "StopGradient", "Snapshot") and op.inputs:
        index = tensor.value_index if op.type == "IdentityN" else 0
        tensor = op.inputs[index]
        op = tensor.op
    return op.type == "Softmax"


def _check_model_tensors(x: Any, logits: Any) -> tuple[int | None, int | None, int]:
    """Checks the input is a float image batch and the output a logits matrix; returns H, W, C."""
    shape = x.shape
    if shape.rank != 4:
        raise ValueError(f"input tensor {x.name}: expected an image batch [batch, height, width, "
                         f"channels], got shape {shape}")
    if not x.dtype.is_floating:
        raise ValueError(f"input tensor {x.name}: is {x.dtype.name}; saliency needs a float "
                         "input to differentiate: pass the float tensor the model casts it to "
                         "(e.g. the Cast op after it) as --input-tensor")
    if logits.shape.rank != 2:
        raise ValueError(f"output tensor {logits.name}: expected logits [batch, classes], got "
                         f"shape {logits.shape}")
    height, width, channels = shape.as_list()[1:]
    if channels not in (1, 3):
        raise ValueError(f"input tensor {x.name}: expected 1 or 3 channels, got {channels}")
    return height, width, channels


@dataclass
class LoadedExplainModel:
    """A :class:`ModelSpec` loaded: the model, its tensors, and the feeds it takes.

    Attributes:
      model: the :class:`~saliency_tf1.models.LoadedModel` (graph, session).
      x, logits, conv: its input, logits and conv-layer tensors (conv may be None).
      target: a :class:`~saliency_tf1.ClassTarget` over ``logits``.
      probabilities: ``rows -> softmax(logits)``, a metrics model function.
      feed: the spec's feeds by tensor.
      shape: the input's ``(height, width, channels)`` (None where any).
      dtype: the input's numpy dtype.
    """

    model: Any
    x: Any
    logits: Any
    conv: Any
    target: Any
    probabilities: Any
    feed: dict
    shape: tuple[int | None, int | None, int]
    dtype: Any

    def close(self) -> None:
        self.model.session.close()


@dataclass
class Explanation:
    """One input explained: the prediction and one mask per method.

    Attributes:
      key: the input's key (its path for an image file).
      source: the image file read, or None for an array input.
      prediction: the predicted class; ``score`` its softmax probability.
      explained_class: the class the masks explain (``prediction`` unless a
        class was chosen); ``explained_score`` its probability.
      masks: ``{method name: mask}``.
      seconds: ``{method name: seconds}``: the method's time on this input's
        batch divided by the batch's size.
      metrics: ``{method name: {"deletion_auc": ..., "insertion_auc": ...}}``
        when the run scores them.
      image: the uint8 pixels read from ``source`` (None for an array input
        or when inputs are not kept).
      input: the array input as fed (None for an image file).
      label: the predicted class's name, when class names are given.
    """

    key: str
    source: str | None
    prediction: int
    score: float
    explained_class: int
    explained_score: float
    masks: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    image: np.ndarray | None = None
    input: np.ndarray | None = None
    label: str | None = None


@dataclass
class Failure:
    """An input that could not be explained (a run's dead letter), and why.

    Attributes:
      key: the input's key (its path for an image file; ``repr`` of an element
        that is neither a path nor a ``(key, array)`` pair).
      source: the image file, or None.
      reason: what went wrong, one line.
      method: the method that failed, or None when the input itself is bad.
    """

    key: str
    source: str | None
    reason: str
    method: str | None = None


def element_key(element: Any) -> str | None:
    """The key of a run's input element (a path, or a ``(key, value)`` pair); None if malformed."""
    if isinstance(element, str | os.PathLike):
        return os.fspath(element)
    if isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], str):
        return element[0]
    return None


def check_run_methods(methods: Any, *, has_conv: bool | None = None
                      ) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The run's methods (:func:`saliency_tf1.catalogue.select_methods`); ``batch_size`` is
    the run's, not a method's."""
    from .catalogue import select_methods

    return select_methods(methods, has_conv=has_conv, conv_hint="conv_tensor",
                          reserved={"batch_size": "batch_size is the run's (batch_size=), not "
                                                  "a method argument"})


def _check_metrics(metrics: Any) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = tuple(dict.fromkeys(metrics or ()))
    unknown = [m for m in metrics if m not in RUN_METRICS]
    if unknown:
        raise ValueError(f"metrics: expected names from {list(RUN_METRICS)}, got {unknown}")
    return metrics


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


class BatchExplainer:
    """Explains batches of inputs with one model: the worker of a run, in-process or on Beam.

    Constructed from plain values only (it pickles before :meth:`setup`);
    :meth:`setup` loads the model and builds every method once; each
    :meth:`explain` call then runs a batch of inputs through the same
    batched calls as in-process code (one ``GetMaskBatch`` per method, in
    ``session.run`` batches of at most ``batch_size`` rows; a smoothed method
    one ``GetSmoothedMask`` per input, seeded alike for every input).

    An input that cannot be explained (an unreadable file, the wrong size, NaN
    values, a method that raises on it) becomes a :class:`Failure` with the
    reason; it never stops the batch: when a batch fails, its inputs are
    explained one at a time so that only the culprit fails.

    Args:
      model: a :class:`ModelSpec` (or the keyword arguments of one).
      methods: catalogue names with their arguments (:func:`check_run_methods`).
      batch_size: most inputs per batch and most rows per ``session.run``.
      metrics: faithfulness metrics to score each mask with: ``"deletion"``,
        ``"insertion"`` (RISE's curves; their areas go in ``metrics``).
      metric_steps: points on each deletion/insertion curve.
      class_names: names of the classes, for :attr:`Explanation.label`.
      keep_inputs: keep each input's pixels (``image``) or array (``input``)
        in its :class:`Explanation` (for the report).
    """

    def __init__(self, model: ModelSpec | Mapping[str, Any], methods: Any, *,
                 batch_size: int = 32, metrics: Any = (), metric_steps: int = 20,
                 class_names: Sequence[str] | None = None, keep_inputs: bool = True) -> None:
        if isinstance(model, Mapping):
            model = ModelSpec(**model)
        if not isinstance(model, ModelSpec):
            raise TypeError(f"model: expected a ModelSpec or its keyword arguments, got "
                            f"{type(model).__name__}")
        self.spec = model
        self.methods = check_run_methods(methods, has_conv=model.conv_tensor is not None)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.metrics = _check_metrics(metrics)
        self.metric_steps = check_positive_int("metric_steps", metric_steps)
        if class_names is not None:
            if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
                raise TypeError("class_names: expected a sequence of str, got "
                                f"{class_names!r}")
            class_names = tuple(class_names)
        self.class_names = class_names
        self.keep_inputs = bool(keep_inputs)
        self.loaded: LoadedExplainModel | None = None
        self._built: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # What travels to a worker: the description, never a graph or session.
        return {**self.__dict__, "loaded": None, "_built": {}}

    # -- lifecycle -------------------------------------------------------------

    def setup(self, loaded: LoadedExplainModel | None = None) -> None:
        """Loads the model and builds every method once; checks the methods' arguments.

        ``loaded``: the spec's model, already loaded (``self.spec.load()``);
        the explainer then owns it (:meth:`close` closes it).
        """
        if self.loaded is not None:
            return
        loaded = self.spec.load() if loaded is None else loaded
        try:
            num_classes = loaded.logits.shape.as_list()[1]
            k = self.spec.explain_class
            if k is not None and num_classes is not None and k >= num_classes:
                raise ValueError(f"explain_class {k}: the output has {num_classes} classes "
                                 f"(0 to {num_classes - 1})")
            built = {}
            h, w, c = loaded.shape
            probe = np.zeros((h or 8, w or 8, c), loaded.dtype)
            for name, (spec, args) in self.methods.items():
                built[name] = spec.build(loaded.model.graph, loaded.model.session,
                                         loaded.target.y, loaded.x, loaded.conv)
                call = "GetMaskBatch" if spec.call == "GetMask" else spec.call
                try:
                    built[name].plan(probe[None] if call == "GetMaskBatch" else probe, call,
                                     batch_size=self.batch_size, **args)
                except (TypeError, ValueError) as err:
                    raise type(err)(f"methods[{name!r}]: {err}") from None
            if (self.class_names is not None and num_classes is not None
                    and len(self.class_names) != num_classes):
                raise ValueError(f"class_names: expected one name per class ({num_classes}), "
                                 f"got {len(self.class_names)}")
        except BaseException:
            loaded.close()
            raise
        self.loaded, self._built = loaded, built

    def close(self) -> None:
        """Closes the model's session (a later :meth:`setup` loads it again)."""
        if self.loaded is not None:
            self.loaded.close()
        self.loaded, self._built = None, {}

    def __enter__(self) -> BatchExplainer:
        self.setup()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- work ------------------------------------------------------------------

    def read(self, element: Any) -> tuple[str, str | None, np.ndarray | None, np.ndarray]:
        """``(key, source, pixels, model input)`` of one element; InputError if it is bad.

        ``element``: an image path (its key), or a ``(key, value)`` pair whose
        value is an image path or an array fed to the model as it is.
        """
        loaded = self._loaded()
        h, w, c = loaded.shape
        key = element_key(element)
        if key is None:
            raise InputError(f"expected an image path or a (str key, array or path) pair, got "
                             f"{type(element).__name__}")
        value = element if isinstance(element, str | os.PathLike) else element[1]
        if isinstance(value, str | os.PathLike):
            path = os.fspath(value)
            pixels = load_image(path, (h, w), c, resize=self.spec.resize)
            return key, path, pixels, to_model_input(pixels, self.spec.scale, self.spec.offset,
                                                     loaded.dtype)
        try:
            array = check_array(f"input {key!r}", value, (h, w, c), batched=False)
        except (TypeError, ValueError) as err:
            raise InputError(str(err)) from None
        return key, None, None, np.array(array, dtype=loaded.dtype)

    def explain(self, elements: Iterable[Any]) -> list[Explanation | Failure]:
        """Explains a batch of elements: an :class:`Explanation` or a :class:`Failure` each,
        in order."""
        self._loaded()
        results: list[Explanation | Failure | None] = []
        groups: dict[tuple, list[int]] = {}
        items: dict[int, tuple] = {}
        for element in elements:
            try:
                item = self.read(element)
            except InputError as err:
                key = element_key(element)
                value = element[1] if key is not None and isinstance(element, tuple) else element
                source = os.fspath(value) if isinstance(value, str | os.PathLike) else None
                results.append(Failure(key if key is not None else repr(element)[:200], source,
                                       str(err)))
                continue
            groups.setdefault(item[3].shape, []).append(len(results))
            items[len(results)] = item
            results.append(None)
        for indices in groups.values():  # inputs of one shape share batches
            for a, b in chunk_bounds(len(indices), self.batch_size):
                chunk = indices[a:b]
                for i, result in zip(chunk, self._explain_safely([items[i] for i in chunk])):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _loaded(self) -> LoadedExplainModel:
        if self.loaded is None:
            raise RuntimeError("BatchExplainer: call setup() first (it loads the model)")
        return self.loaded

    def _explain_safely(self, items: list[tuple]) -> list[Explanation | Failure]:
        state: dict[str, Any] = {"method": None}
        try:
            return self._explain_items(items, state)
        except Exception as err:  # one input's error never fails the others
            if len(items) > 1:
                return [r for item in items for r in self._explain_safely([item])]
            key, source = items[0][:2]
            return [Failure(key, source, _one_line(err), state["method"])]

    def _explain_items(self, items: list[tuple], state: dict[str, Any]
                       ) -> list[Explanation | Failure]:
        loaded = self._loaded()
        xs = np.stack([item[3] for item in items])
        n = len(xs)
        probs = np.concatenate([loaded.probabilities(xs[a:b])
                                for a, b in chunk_bounds(n, self.batch_size)])
        if probs.ndim != 2 or not np.all(np.isfinite(probs)):
            raise ValueError("the model's output is not finite for this input")
        predicted = np.argmax(probs, axis=1)
        explained = (predicted if self.spec.explain_class is None
                     else np.full(n, self.spec.explain_class))
        batch_feed = loaded.target.feed(explained, loaded.feed)
        feeds = [loaded.target.feed(int(c), loaded.feed) for c in explained]
        masks: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for name, (spec, args) in self.methods.items():
            state["method"] = name
            start = time.perf_counter()
            out = np.asarray(spec.explain_batch(self._built[name], xs, feeds, batch_feed,
                                                batch_size=self.batch_size, **args))
            seconds[name] = (time.perf_counter() - start) / n
            if not np.all(np.isfinite(out)):
                raise ValueError("the mask has NaN or Inf values")
            masks[name] = out
        scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in masks}
        if self.metrics:
            from .metrics import deletion, insertion

            for name, stack in masks.items():
                state["method"] = name
                for metric in self.metrics:
                    curve = (deletion if metric == "deletion" else insertion)(
                        loaded.probabilities, xs, stack, targets=explained.astype(np.int64),
                        steps=self.metric_steps, batch_size=self.batch_size, progress=False)
                    scores[name][f"{metric}_auc"] = curve.auc
        results: list[Explanation | Failure] = []
        for i, (key, source, pixels, x_value) in enumerate(items):
            label = (self.class_names[int(predicted[i])]
                     if self.class_names is not None else None)
            results.append(Explanation(
                key, source, int(predicted[i]), float(probs[i, predicted[i]]),
                int(explained[i]), float(probs[i, explained[i]]),
                {name: stack[i] for name, stack in masks.items()}, dict(seconds),
                {name: {k: float(v[i]) for k, v in s.items()} for name, s in scores.items()
                 if s},
                pixels if self.keep_inputs else None,
                x_value if self.keep_inputs and source is None else None, label))
        return results


def file_name(key: str) -> str:
    """The file stem of an input's outputs: readable, safe in a URL, the same on every run.

    A slug of the key's base name (letters, digits, ``-``, ``_``, at most 40)
    and 12 hex digits of the key's SHA-256 (so that two ``cat.png`` in
    different folders differ).
    """
    base = os.path.splitext(os.path.basename(key.rstrip("/\\")))[0]
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_")[:40] or "input"
    return f"{slug}-{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def _write_atomically(path: str, write: Any) -> None:
    """Writes through ``write(file)`` to a temporary name, then renames: no half files."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
      out_dir: the run's folder; ``manifest`` its ``manifest.jsonl``.
      explained, failed: inputs explained / failed in this run.
      skipped: inputs already done by an earlier run, not run again.
      total: records in the manifest (every run's).
      model_loads: times a worker loaded the model (Beam runs; None in-process).
      batches: batches the workers ran (Beam runs; None in-process).
    """

    out_dir: str
    manifest: str
    explained: int
    failed: int
    skipped: int
    total: int
    model_loads: int | None = None
    batches: int | None = None


class RunWriter:
    """The folder of a run: one ``.npz`` per input, one record per input, the manifest.

    Layout of ``out_dir``:

    * ``masks/<name>.npz``: one array per method (``np.load(f)[method]``),
      plus ``image`` (the uint8 pixels of an image file) or ``input`` (an
      array input) when inputs are kept;
    * ``records/<name>.json``: the input's manifest record, written after its
      masks, so a record means the input is done;
    * ``manifest.jsonl``: every record, one JSON object per line, sorted by
      key: ``key``, ``source``, ``prediction``, ``score``,
      ``explained_class``, ``explained_score``, ``label``, ``masks``
      (``{method: file}``, relative to ``out_dir``), ``seconds``
      (``{method: seconds per input}``), ``metrics`` (``{method: {name:
      value}}``), ``error`` (None, or why the input failed) and ``method``
      (the method that failed, if one did).

    ``<name>`` is :func:`file_name` of the key: a re-run writes the same files,
    and :meth:`pending` leaves out inputs that already have a record.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = os.fspath(out_dir)
        if os.path.isfile(self.out_dir):
            raise ValueError(f"out_dir {self.out_dir}: is a file, expected a folder")

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.out_dir, "manifest.jsonl")

    def _record_path(self, name: str) -> str:
        return os.path.join(self.out_dir, "records", f"{name}.json")

    def done(self, *, retry_failed: bool = False) -> set[str]:
        """File names (:func:`file_name`) of the inputs with a record (a success, unless not
        ``retry_failed``)."""
        folder = os.path.join(self.out_dir, "records")
        if not os.path.isdir(folder):
            return set()
        names = {n[:-5] for n in os.listdir(folder) if n.endswith(".json")
                 and not n.startswith(".")}
        if retry_failed:
            names = {n for n in names if self._read_record(n).get("error") is None}
        return names

    def _read_record(self, name: str) -> dict[str, Any]:
        with open(self._record_path(name), encoding="utf-8") as f:
            return json.load(f)

    def pending(self, elements: Iterable[Any], *, retry_failed: bool = False
                ) -> tuple[list[Any], int]:
        """``(elements without a record, number left out)``; a malformed element stays in."""
        done = self.done(retry_failed=retry_failed)
        todo, skipped = [], 0
        for element in elements:
            key = element_key(element)
            if key is not None and file_name(key) in done:
                skipped += 1
            else:
                todo.append(element)
        return todo, skipped

    def write(self, result: Explanation | Failure) -> dict[str, Any]:
        """Writes one input's masks (if explained) and its record; returns the record."""
        name = file_name(result.key)
        os.makedirs(os.path.join(self.out_dir, "records"), exist_ok=True)
        record: dict[str, Any] = {"key": result.key, "name": name, "source": result.source}
        if isinstance(result, Explanation):
            os.makedirs(os.path.join(self.out_dir, "masks"), exist_ok=True)
            arrays = dict(result.masks)
            if result.image is not None:
                arrays["image"] = result.image
            if result.input is not None:
                arrays["input"] = result.input
            relative = f"masks/{name}.npz"
            _write_atomically(os.path.join(self.out_dir, relative),
                              lambda f: np.savez(f, **arrays))
            record.update(
                prediction=result.prediction, score=result.score,
                explained_class=result.explained_class, explained_score=result.explained_score,
                label=result.label, masks={m: relative for m in result.masks},
                seconds=result.seconds, metrics=result.metrics, error=None, method=None)
        elif isinstance(result, Failure):
            record.update(prediction=None, score=None, explained_class=None,
                          explained_score=None, label=None, masks={}, seconds={}, metrics={},
                          error=result.reason, method=result.method)
        else:
            raise TypeError(f"result: expected an Explanation or a Failure, got "
                            f"{type(result).__name__}")
        text = json.dumps(record, allow_nan=False).encode("utf-8")
        _write_atomically(self._record_path(name), lambda f: f.write(text))
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every input's record, sorted by key."""
        return sorted((self._read_record(n) for n in self.done()), key=lambda r: r["key"])

    def write_manifest(self) -> int:
        """(Re)writes ``manifest.jsonl`` from the records; returns how many it holds."""
        records = self.records()
        os.makedirs(self.out_dir, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
        _write_atomically(self.manifest_path, lambda f: f.write(text))
        return len(records)


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run's ``manifest.jsonl`` (``path``: the file or the run's folder)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "manifest.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def explain_to_dir(
    inputs: Iterable[Any],
    model: ModelSpec | Mapping[str, Any],
    methods: Any,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    metrics: Any = (),
    metric_steps: int = 20,
    class_names: Sequence[str] | None = None,
    retry_failed: bool = False,
    progress: bool | None = None,
    explainer: BatchExplainer | None = None,
) -> RunSummary:
    """Explains many inputs in this process and writes the run's folder (:class:`RunWriter`).

    The single-machine run, without Apache Beam: inputs (image paths, or
    ``(key, array)`` pairs) go through one :class:`BatchExplainer` in batches
    of ``batch_size``, the same batches a Beam worker runs
    (:class:`saliency_tf1.beam.Explain`), so the masks are the same. Inputs
    that already have a record in ``out_dir`` are skipped (failed ones too,
    unless ``retry_failed``); a bad input gets a record with its error and
    never stops the run. Ends by writing ``manifest.jsonl``.

    ``explainer``: an explainer already set up (its model and methods are
    used instead of ``model``/``methods``/... ; it is not closed).
    """
    writer = RunWriter(out_dir)
    own = explainer is None
    if own:
        explainer = BatchExplainer(model, methods, batch_size=batch_size, metrics=metrics,
                                   metric_steps=metric_steps, class_names=class_names)
    todo, skipped = writer.pending(inputs, retry_failed=retry_failed)
    explained = failed = 0
    if todo:
        try:
            explainer.setup()
            with progress_bar(progress, len(todo), "inputs") as bar:
                for a, b in chunk_bounds(len(todo), explainer.batch_size):
                    for result in explainer.explain(todo[a:b]):
                        writer.write(result)
                        explained += isinstance(result, Explanation)
                        failed += isinstance(result, Failure)
                    bar.update(b - a)
        finally:
            if own:
                explainer.close()
    total = writer.write_manifest()
    return RunSummary(writer.out_dir, writer.manifest_path, explained, failed, skipped, total)
