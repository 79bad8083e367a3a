"""Saliency during training: a ``SessionRunHook`` that traces masks of fixed samples.

:class:`SaliencyHook` plugs into ``tf.compat.v1.train.MonitoredTrainingSession``
(or a plain session loop through :class:`HookedSession`). Every ``every_n_steps``
global steps, when the session is created and at the end, it explains a fixed
set of samples with any methods of the catalogue (:mod:`saliency_tf1.catalogue`;
by default the vanilla gradient, SmoothGrad, Integrated Gradients and
SmoothGrad-IG), for a class fixed per sample (the one the model predicts for
the clean input at that step, or the true label), and writes
TensorBoard image summaries (input, grayscale mask, mask over the input in a
perceptual colormap), a text summary of the explained class and, optionally,
one PNG grid per trigger.

All of its ops (the class selector and the methods' gradient ops) are built in
:meth:`SaliencyHook.begin`, before ``MonitoredSession`` finalizes the graph;
later it only runs them. Summaries are written as ``Summary`` protos through
the ``FileWriterCache`` writer of ``output_dir`` (shared with the training
session's own summaries when the directories agree), so no summary ops are
needed. Each trigger logs its cost (seconds and ``session.run`` calls).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalogue import select_methods
from ..engine.checks import check_array, check_positive_int
from ..engine.graph import check_tensor, tf_module
from ..visualization import display_mask, encode_png, normalize_image, overlay, save_grid

_LOG = logging.getLogger(__name__)

#: The masks traced when ``methods`` is not given: catalogue names and arguments.
DEFAULT_METHODS: Mapping[str, Mapping[str, Any]] = {
    "gradient": {},
    "smoothgrad": {"nsamples": 10},
    "ig": {"x_steps": 25},
    "smoothig": {"x_steps": 25, "nsamples": 10},
}


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


class _SessionSlot:
    """Stands in for the session when the methods are built (in ``begin``, before it exists).

    Forwards ``run`` to the session set by ``after_create_session`` and counts calls.
    """

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.session: Any = None
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self.session is None:
            raise RuntimeError("SaliencyHook: no session yet (after_create_session not called)")
        self.runs += 1
        return self.session.run(*args, **kwargs)


def _take_samples(samples: Any, labels: Any, count: int | None, rank: int
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``count`` inputs (and labels) of an array, an object with
    ``.images``/``.labels``, or an iterable of examples/batches (``x`` or ``(x, labels)``).

    ``rank`` is the rank of one input, so an element of rank ``rank + 1`` is a batch.
    """
    if samples is None:
        return np.zeros((0,)), None  # begin() says there is nothing to explain
    if hasattr(samples, "images") and not isinstance(samples, np.ndarray):
        samples, labels = samples.images, getattr(samples, "labels", None) if labels is None \
            else labels
    if isinstance(samples, (np.ndarray, list)) or hasattr(samples, "__array__"):
        images = np.asarray(samples)
        if count is not None:
            images = images[:count]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 1 or len(labels) < len(images):
                raise ValueError(
                    f"labels: expected one label per sample ({len(images)}), got shape "
                    f"{labels.shape}")
            labels = labels[: len(images)]
        return images, labels
    if not isinstance(samples, Iterable):
        raise TypeError(
            "samples: expected an array of inputs, an object with .images, or an iterable of "
            f"inputs / (inputs, labels) batches, got {type(samples).__name__}")
    if count is None:
        raise ValueError("num_samples: expected a number of samples to take from an iterable, "
                         "got None")
    got_x: list[np.ndarray] = []
    got_y: list[np.ndarray] = []
    total = 0
    for element in samples:
        if isinstance(element, (tuple, list)) and len(element) == 2:
            xs, ys = np.asarray(element[0]), np.asarray(element[1])
        else:
            xs, ys = np.asarray(element), None
        if xs.ndim == rank:
            xs = xs[None]
            ys = None if ys is None else ys.reshape(1)
        got_x.append(xs)
        if ys is not None:
            got_y.append(ys.reshape(-1))
        total += len(xs)
        if total >= count:
            break
    if not got_x:
        return np.zeros((0,)), None
    shapes = {x.shape[1:] for x in got_x}
    if len(shapes) > 1:
        raise ValueError(f"samples: the iterable yields inputs of different shapes {shapes}")
    images = np.concatenate(got_x)[:count]
    if labels is None and len(got_y) == len(got_x):
        labels = np.concatenate(got_y)[: len(images)]
    elif labels is not None:
        labels = np.asarray(labels)[: len(images)]
    return images, labels


# ---------------------------------------------------------------------------
# The hook


@dataclass
class TriggerRecord:
    """What one trigger of :class:`SaliencyHook` computed and what it cost."""

    step: int
    seconds: float
    session_runs: int
    classes: np.ndarray
    masks: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


class SaliencyHook(tf_module().compat.v1.train.SessionRunHook):
    """Explains a fixed set of samples every ``every_n_steps`` steps, and at the end.

    The traced masks are those of ``methods``, any methods of the catalogue
    (by default the vanilla gradient, Simonyan et al., 2013, arXiv:1312.6034;
    SmoothGrad, Smilkov et al., 2017, arXiv:1706.03825; Integrated Gradients,
    Sundararajan et al., 2017, arXiv:1703.01365; and SmoothGrad over IG), each
    for the class chosen per sample by ``class_from``.
    For each sample ``k`` and mask ``m`` the summaries are
    ``saliency/sample_k/image``, ``saliency/sample_k/m/mask`` (grayscale,
    ``VisualizeImageGrayscale``), ``saliency/sample_k/m/overlay`` (the mask over
    the image in ``cmap``) and the text ``saliency/sample_k/class``.

    Triggers: when the session is created (step 0 of a fresh run), whenever the
    global step reaches the next multiple of ``every_n_steps``, and in
    ``end()`` unless that step was just written. Without a global step the
    hook counts ``run`` calls. SmoothGrad noise for sample ``k`` is drawn
    with seed ``seed + k``, so each trigger's masks are reproducible with the
    methods directly.

    Example::

        hook = SaliencyHook(x, logits, data.images, labels=data.labels, num_samples=4,
                            every_n_steps=100, output_dir=logdir, label_mapping=names)
        with tf.compat.v1.train.MonitoredTrainingSession(checkpoint_dir=logdir,
                                                         hooks=[hook]) as sess:
            while not sess.should_stop():
                sess.run(train_op, feed)

    Args:
      x: the model's input tensor (or its name), ``[batch, height, width, channels]``
        with 1, 3 or 4 channels.
      logits: ``[batch, classes]`` tensor (or its name), or a
        :class:`~saliency_tf1.ClassTarget` built on it.
      samples: the inputs to explain: an array ``[N, h, w, c]``, an object with
        ``.images`` (and ``.labels``), an iterable of inputs, batches, or
        ``(inputs, labels)`` pairs (a generator, an eager ``tf.data.Dataset``:
        its first ``num_samples`` inputs are read when the hook is made), or a
        ``tf.data.Dataset`` of the training graph (e.g. the training input:
        ``begin()`` checks its element shapes and the first ``num_samples``
        inputs are read once the session exists). Checked in ``begin()``.
      labels: true labels of ``samples`` (when not part of them).
      num_samples: explain the first this many samples (``None``: all of an array).
        The samples stay the same for the whole run.
      every_n_steps: steps between triggers.
      output_dir: where summaries go (``None``: no summaries).
      png_dir: if set, one PNG grid per trigger, ``saliency_step_{step:08d}.png``.
      methods: the masks to trace: catalogue names (``saliency_tf1.METHODS``), or
        ``(name, {arguments})`` pairs, or a mapping ``{name: {arguments}}``;
        the arguments override the catalogue's (e.g. ``{"ig": {"x_steps":
        50, "x_baseline": image_mean}, "gradcam": {}}``).
      conv_layer: the conv layer's tensor (or name), for Grad-CAM-like methods.
      class_from: ``"predicted"`` (the model's class for the clean input at
        that step) or ``"label"`` (the true label).
      label_mapping: class index to name (a sequence or a mapping).
      feed_dict: values for the model's other placeholders (``is_training``...).
      seed: seed of the smoothed methods (sample ``k`` uses ``seed + k``).
      batch_size: most model rows per ``session.run``.
      cmap: colormap of the overlays (a perceptual one: ``inferno``, ``viridis``...).
      at_end: trigger in ``end()``.
      log: called with the one-line report of each trigger.
    """

    def __init__(
        self,
        x: Any,
        logits: Any,
        samples: Any,
        *,
        labels: Any = None,
        num_samples: int | None = 8,
        every_n_steps: int = 100,
        output_dir: str | os.PathLike | None = None,
        png_dir: str | os.PathLike | None = None,
        methods: Any = DEFAULT_METHODS,
        conv_layer: Any = None,
        class_from: str = "predicted",
        label_mapping: Mapping[int, str] | Sequence[str] | None = None,
        feed_dict: Mapping[Any, Any] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        cmap: str = "inferno",
        at_end: bool = True,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        self.every_n_steps = check_positive_int("every_n_steps", every_n_steps)
        if num_samples is not None:
            num_samples = check_positive_int("num_samples", num_samples)
        if batch_size is not None:
            batch_size = check_positive_int("batch_size", batch_size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {seed!r}")
        if class_from not in ("predicted", "label"):
            raise ValueError(f"class_from: expected 'predicted' or 'label', got {class_from!r}")
        self._specs = select_methods(
            methods, has_conv=conv_layer is not None,
            reserved={"seed": "the hook seeds each sample (seed + k); pass seed= to the hook "
                              "instead"})
        self.mask_names = list(self._specs)
        self._x_arg, self._logits_arg, self._conv_arg = x, logits, conv_layer
        self._num_samples = num_samples
        tf = tf_module()
        self._dataset = None
        self._images = self._labels = None
        if isinstance(samples, tf.data.Dataset) and tf.is_symbolic_tensor(
                getattr(samples, "_variant_tensor", None)):
            # A graph-mode dataset (the training input): read in the session.
            if num_samples is None:
                raise ValueError("num_samples: expected how many samples to take from the "
                                 "dataset, got None")
            self._dataset = samples
        else:
            # Arrays as they are; iterables (generators, eager datasets) are read now.
            self._images, self._labels = _take_samples(samples, labels, num_samples, rank=3)
        self.output_dir = None if output_dir is None else os.fspath(output_dir)
        self.png_dir = None if png_dir is None else os.fspath(png_dir)
        self.class_from = class_from
        self.label_mapping = label_mapping
        self.feed_dict = dict(feed_dict or {})
        self.seed = int(seed)
        self.batch_size = batch_size
        self.cmap = cmap
        self.at_end = at_end
        self._log = log or _LOG.info
        self.history: list[TriggerRecord] = []
        self._built = False

    # -- SessionRunHook --------------------------------------------------------

    def begin(self) -> None:
        """Checks the model and the samples, then builds every op the hook needs."""
        tf = tf_module()
        from ..target import ClassTarget

        graph = tf.compat.v1.get_default_graph()
        x = self._resolve("x", self._x_arg, graph)
        if isinstance(self._logits_arg, ClassTarget):
            target, logits = self._logits_arg, self._logits_arg.logits
            check_tensor("logits", logits, graph)
        else:
            target, logits = None, self._resolve("logits", self._logits_arg, graph)
        shape = x.shape.as_list() if x.shape.rank is not None else None
        if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"x: SaliencyHook explains images; expected a [batch, height, width, channels] "
                f"tensor with 1, 3 or 4 channels, got {x.name!r} of shape {x.shape}")
        if logits.shape.rank != 2:
            raise ValueError(f"logits: expected shape [batch, classes], got {logits.shape}")
        self.x, self._num_classes = x, logits.shape.as_list()[1]
        self._input_shape, self._dtype = tuple(shape[1:]), np.dtype(x.dtype.as_numpy_dtype)
        self.samples = self.labels = None
        if self._dataset is None:
            self._set_samples(self._images, self._labels)
        else:
            dataset_plan = self._check_dataset(self._dataset)
        conv = None if self._conv_arg is None else self._resolve("conv_layer", self._conv_arg,
                                                                graph)
        # Everything is checked: build the ops.
        with graph.as_default():
            if target is None:
                target = ClassTarget(logits, name="saliency_hook_target")
            self._dataset_next = (None if self._dataset is None
                                  else self._dataset_reader(*dataset_plan))
        self.target = target
        self._slot = _SessionSlot(graph)
        self._methods: dict[str, Any] = {}
        built: dict[type, Any] = {}
        for name, (spec, _) in self._specs.items():
            if spec.cls not in built:
                built[spec.cls] = spec.build(graph, self._slot, target.y, x, conv)
            self._methods[name] = built[spec.cls]
        # Checks the extra feeds once (keys, shapes, missing placeholders).
        next(iter(self._methods.values())).backend.prepare_feed(target.feed(0, self.feed_dict), 1)
        self._global_step = tf.compat.v1.train.get_global_step(graph)
        self._writer = (tf.compat.v1.summary.FileWriterCache.get(self.output_dir)
                        if self.output_dir is not None else None)
        self._runs = 0
        self._next_due: int | None = None
        self._last_step: int | None = None
        if self.samples is not None:
            self._check_method_args()
        self._built = True

    def _method_args(self, name: str, k: int) -> tuple[str, dict]:
        """The call and arguments of mask ``name`` for sample ``k``."""
        spec, arguments = self._specs[name]
        kwargs = dict(arguments)
        if self.batch_size is not None:
            kwargs.setdefault("batch_size", self.batch_size)
        if spec.smoothed:
            kwargs["seed"] = self.seed + k
        return spec.call, kwargs

    def _check_method_args(self) -> None:
        """Checks every method's arguments on the samples before any trigger runs."""
        for name in self.mask_names:
            call, kwargs = self._method_args(name, 0)
            try:
                self._methods[name].plan(self.samples[0], call, **kwargs)
            except (TypeError, ValueError) as err:
                raise type(err)(f"methods[{name!r}]: {err}") from None

    def _set_samples(self, images: np.ndarray, labels: np.ndarray | None) -> None:
        if images.ndim == 0 or images.size == 0 or len(images) == 0:
            raise ValueError("samples: expected at least one input to explain, got none "
                             f"(shape {images.shape})")
        self.samples = check_array("samples", images, self._input_shape,
                                   batched=True).astype(self._dtype)
        if self.class_from == "label" and labels is None:
            raise ValueError("labels: class_from='label' needs the samples' true labels; pass "
                             "labels= or samples with labels")
        self.labels = None if labels is None else self._check_labels(labels, self._num_classes)
        if self.labels is not None and len(self.labels) != len(self.samples):
            raise ValueError(f"labels: expected one label per sample ({len(self.samples)}), got "
                             f"{len(self.labels)}")

    def _check_dataset(self, dataset: Any) -> tuple[Any, bool, bool]:
        """Checks a graph-mode ``tf.data.Dataset``'s elements; returns how to read it."""
        spec = dataset.element_spec
        with_labels = isinstance(spec, tuple) and len(spec) == 2
        first = spec[0] if with_labels else spec
        if not hasattr(first, "shape") or first.shape.rank not in (3, 4):
            raise ValueError(
                f"samples: expected a dataset of inputs or (inputs, labels), one input of shape "
                f"{list(self._input_shape)} or batches of them; got elements {spec}")
        batched = first.shape.rank == 4
        one = first.shape[1:] if batched else first.shape
        if not one.is_compatible_with(self._input_shape):
            raise ValueError(
                f"samples: expected inputs of shape {list(self._input_shape)}, the dataset "
                f"yields {first.shape}")
        if self.class_from == "label" and not with_labels:
            raise ValueError("labels: class_from='label' needs the samples' true labels; the "
                             "dataset yields inputs only")
        return dataset, batched, with_labels

    def _dataset_reader(self, dataset: Any, batched: bool, with_labels: bool) -> Any:
        tf = tf_module()
        if batched:
            dataset = dataset.unbatch()
        taken = dataset.take(self._num_samples).batch(self._num_samples)
        with tf.compat.v1.name_scope("saliency_tf1/saliency_hook_samples"):
            return tf.compat.v1.data.make_one_shot_iterator(taken).get_next()

    def after_create_session(self, session: Any, coord: Any) -> None:
        self._slot.session = session
        if self._dataset_next is not None and self.samples is None:
            tf = tf_module()
            try:
                values = session.run(self._dataset_next)
            except tf.errors.OutOfRangeError:
                raise ValueError("samples: expected at least one input to explain, the dataset "
                                 "yielded none") from None
            if isinstance(values, tuple):
                images, labels = values
            else:
                images, labels = values, None
            labels = None if labels is None else np.asarray(labels).reshape(-1)
            self._set_samples(np.asarray(images), self._labels if labels is None else labels)
            self._check_method_args()
        self._maybe_trigger(self._current_step(session))

    def before_run(self, run_context: Any) -> Any:
        if self._global_step is None:
            return None
        return tf_module().compat.v1.train.SessionRunArgs(self._global_step)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        self._runs += 1
        self._slot.session = run_context.session
        if self._global_step is None:
            self._maybe_trigger(self._runs)
            return
        stale = int(run_values.results)
        # The read may precede the train op's increment: check the exact value only near a trigger.
        if self._next_due is None or stale + 1 >= self._next_due:
            self._maybe_trigger(self._current_step(run_context.session))

    def end(self, session: Any) -> None:
        self._slot.session = session
        step = self._current_step(session)
        if self.at_end and step != self._last_step:
            self.trigger(step)
        if self._writer is not None:
            self._writer.flush()

    # -- work -----------------------------------------------------------------

    def _current_step(self, session: Any) -> int:
        """The global step's value (the number of ``run`` calls without a global step)."""
        if self._global_step is None:
            return self._runs
        return int(session.run(self._global_step))

    def _maybe_trigger(self, step: int) -> None:
        if self._next_due is None or step >= self._next_due:
            self.trigger(step)

    def class_name(self, index: int) -> str:
        """The name ``label_mapping`` gives a class index (the index itself otherwise)."""
        mapping = self.label_mapping
        try:
            if mapping is not None:
                return str(mapping[index])
        except (KeyError, IndexError, TypeError):
            pass
        return str(index)

    def compute_masks(self, session: Any | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Explains the samples now: ``(classes, {mask name: [K, ...] masks})``.

        Uses the hook's session, or ``session`` if given. Adds no ops.
        """
        if not self._built:
            raise RuntimeError("SaliencyHook: begin() has not been called")
        if session is not None:
            self._slot.session = session
        if self.class_from == "label":
            classes = self.labels.astype(np.int32)
        else:
            classes = self.target.predict(self._slot, self.x, self.samples, self.feed_dict)
        masks: dict[str, np.ndarray] = {}
        feeds = [self.target.feed(int(c), self.feed_dict) for c in classes]
        for name in self.mask_names:
            spec, arguments = self._specs[name]
            _, kwargs = self._method_args(name, 0)
            kwargs.pop("seed", None)
            seeds = [self.seed + k for k in range(len(self.samples))] if spec.smoothed else None
            masks[name] = spec.explain_batch(self._methods[name], self.samples, feeds,
                                             self.target.feed(classes, self.feed_dict),
                                             seeds=seeds, **kwargs)
        return np.asarray(classes), masks

    def trigger(self, step: int) -> TriggerRecord:
        """Computes the masks for ``step``, writes its summaries/PNG and logs the cost."""
        start, runs_before = time.perf_counter(), self._slot.runs
        classes, masks = self.compute_masks()
        seconds = time.perf_counter() - start
        record = TriggerRecord(step, seconds, self._slot.runs - runs_before, classes, masks)
        self.history.append(record)
        self._last_step = step
        self._next_due = (step // self.every_n_steps + 1) * self.every_n_steps
        written = self._write(record)
        names = ", ".join(self.class_name(int(c)) for c in classes)
        self._log(
            f"SaliencyHook: step {step}: {len(self.samples)} samples x "
            f"{len(masks)} masks ({', '.join(masks)}) in {seconds:.2f} s, "
            f"{record.session_runs} session.run calls; classes [{names}]"
            + (f"; wrote {written}" if written else ""))
        return record

    @property
    def last_masks(self) -> dict[str, np.ndarray]:
        """The masks of the latest trigger (``{}`` before the first)."""
        return self.history[-1].masks if self.history else {}

    def _titles(self, classes: np.ndarray) -> list[str]:
        titles = []
        for k, c in enumerate(classes):
            text = self.class_name(int(c))
            if self.labels is not None and self.class_from == "predicted":
                text += f" (true {self.class_name(int(self.labels[k]))})"
            titles.append(text)
        return titles

    def _write(self, record: TriggerRecord) -> str | None:
        titles = self._titles(record.classes)
        if self._writer is not None:
            self._writer.add_summary(self._summary(record, titles), global_step=record.step)
        if self.png_dir is None:
            return None
        rows = [{name: record.masks[name][k] for name in record.masks}
                for k in range(len(self.samples))]
        return save_grid(self.samples, rows,
                         os.path.join(self.png_dir, f"saliency_step_{record.step:08d}.png"),
                         row_titles=titles, cmap=self.cmap, title=f"step {record.step}")

    def _summary(self, record: TriggerRecord, titles: list[str]) -> Any:
        tf = tf_module()
        summary_pb = tf.compat.v1.Summary
        values = []

        def image_value(tag: str, image: np.ndarray) -> Any:
            arr = _to_uint8(image)
            channels = 1 if arr.ndim == 2 else arr.shape[-1]
            return summary_pb.Value(tag=tag, image=summary_pb.Image(
                height=arr.shape[0], width=arr.shape[1], colorspace=channels,
                encoded_image_string=encode_png(arr)))

        text_meta = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="text"))
        for k, image in enumerate(self.samples):
            prefix = f"saliency/sample_{k}"
            shown = normalize_image(image)
            values.append(image_value(f"{prefix}/image", shown))
            values.append(summary_pb.Value(tag=f"{prefix}/class", metadata=text_meta,
                                           tensor=tf.make_tensor_proto(titles[k])))
            for name, masks in record.masks.items():
                gray = display_mask(masks[k])
                values.append(image_value(f"{prefix}/{name}/mask", gray))
                values.append(image_value(f"{prefix}/{name}/overlay",
                                          overlay(image, gray, cmap=self.cmap)))
        return summary_pb(value=values)

    @staticmethod
    def _check_labels(labels: Any, num_classes: int | None) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(f"labels: expected a 1-D array of class indices, got {arr.dtype} of "
                            f"shape {arr.shape}")
        if num_classes is not None and np.any((arr < 0) | (arr >= num_classes)):
            raise ValueError(f"labels: expected class indices in [0, {num_classes}), got "
                             f"{arr.tolist()}")
        return arr

    @staticmethod
    def _resolve(name: str, value: Any, graph: Any) -> Any:
        if isinstance(value, str):
            try:
                value = graph.as_graph_element(value, allow_tensor=True, allow_operation=False)
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{name}: {value!r} names no tensor of the graph ({err})") \
                    from None
        check_tensor(name, value, graph)
        return value


# ---------------------------------------------------------------------------
# Plain session loops


class HookedSession:
    """Runs ``SessionRunHook``\\ s around a plain session's ``run`` calls.

    For training loops written with a bare ``tf.compat.v1.Session`` rather than
    ``MonitoredTrainingSession``: entering calls each hook's ``begin()`` (its
    ops are added to the graph then) and ``after_create_session``; ``run``
    calls ``before_run``/``after_run`` around ``session.run``; leaving without
    an exception calls ``end()``. The session stays open (it is the caller's).

    Example::

        with HookedSession(session, [hook]) as hooked:
            for _ in range(steps):
                hooked.run(train_op, feed)
    """

    def __init__(self, session: Any, hooks: Sequence[Any]) -> None:
        tf = tf_module()
        self.session = session
        self.hooks = list(hooks)
        self._stop = False
        with session.graph.as_default():
            for hook in self.hooks:
                hook.begin()
            coord = tf.compat.v1.train.Coordinator()
            for hook in self.hooks:
                hook.after_create_session(session, coord)

    def run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None) -> Any:
        """``session.run(fetches, feed_dict)`` with every hook's requests and callbacks."""
        tf = tf_module()
        v1 = tf.compat.v1.train
        context = v1.SessionRunContext(v1.SessionRunArgs(fetches, feed_dict), self.session)
        all_fetches: dict[Any, Any] = {"caller": fetches}
        feed = dict(feed_dict or {})
        for i, hook in enumerate(self.hooks):
            request = hook.before_run(context)
            if request is None:
                continue
            if request.fetches is not None:
                all_fetches[i] = request.fetches
            for key, value in (request.feed_dict or {}).items():
                if key in feed:
                    raise RuntimeError(f"feed_dict: hook {hook!r} feeds {key} that is fed already")
                feed[key] = value
        with self.session.graph.as_default():
            results = self.session.run(all_fetches, feed_dict=feed)
        for i, hook in enumerate(self.hooks):
            hook.after_run(context, v1.SessionRunValues(results=results.get(i), options=None,
                                                        run_metadata=None))
        self._stop = self._stop or context.stop_requested
        return results["caller"]

    def should_stop(self) -> bool:
        """True once a hook asked to stop."""
        return self._stop

    def close(self) -> None:
        """Calls every hook's ``end()``."""
        with self.session.graph.as_default():
            for hook in self.hooks:
                hook.end(self.session)

    def __enter__(self) -> HookedSession:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
