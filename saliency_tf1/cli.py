"""The ``saliency-tf1`` command (also ``python -m saliency_tf1``).

``saliency-tf1 explain MODEL --input-tensor X --output-tensor LOGITS INPUT... --out DIR``
loads a saved model (:func:`saliency_tf1.models.load_model`: a frozen ``.pb``, a
SavedModel directory, a ``.meta`` checkpoint or a Keras file), explains
each image's predicted class (or ``--class K``) with the chosen methods and
writes, per image, ``DIR/<image>.png`` (the image and one overlay per
method) and ``DIR/<image>_<method>.npy`` (each raw mask); it prints the
predicted class and its softmax probability. INPUT is an image file, a
folder, a glob pattern or ``@list.txt``.

For data sets, ``--manifest`` (implied by ``--runner``, ``--report`` and
``--metrics``) writes a run instead (:func:`saliency_tf1.streaming.explain_to_dir`):
``DIR/masks/<name>.npz`` per input and ``DIR/manifest.jsonl``, resumable, bad
inputs recorded with their reason; ``--runner RUNNER`` runs it on Apache
Beam (:mod:`saliency_tf1.beam`), ``--report`` writes the HTML report
(:mod:`saliency_tf1.visualization.report`). ``saliency-tf1 report DIR``
(re)writes the report of a run.

``saliency-tf1 demo`` trains a small CNN on generated shapes and explains it
with every method (:func:`saliency_tf1.demo.run_demo`).

Exit status: 0 on success, 2 for a usage error (unknown option or method),
1 for anything else the user can fix (a missing file, an unknown tensor
name, an image of the wrong size, a graph refused as unsafe), with a one-line
``saliency-tf1: error: ...`` message on stderr and no traceback (``--debug``
shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import streaming
from .streaming import InputError, to_model_input

__all__ = ["UserError", "build_parser", "check_image_size", "image_size", "load_image", "main",
           "parse_methods", "to_model_input"]

PROG = "saliency-tf1"

#: ``explain``'s methods when ``--method`` is not given: fast ones (Grad-CAM
#: only with ``--conv-tensor``).
DEFAULT_METHODS = ("gradient", "smoothgrad", "ig", "guided", "gradcam")



class UserError(Exception):
    """Something the user can fix: reported as ``saliency-tf1: error: MESSAGE``, exit status 1."""


# ---------------------------------------------------------------------------
# Startup


@contextlib.contextmanager
def _stderr_captured(enabled: bool) -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file meanwhile; replays it if the block fails.

    TensorFlow's C++ runtime logs a few lines at import and at device discovery
    (oneDNN, CUDA probing) before ``TF_CPP_MIN_LOG_LEVEL`` applies.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _import_tensorflow(quiet: bool) -> Any:
    """Imports TensorFlow (and lists its devices) without its startup log lines when ``quiet``."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _stderr_captured(quiet):
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf


# ---------------------------------------------------------------------------
# Images (read by saliency_tf1.streaming; here a bad image is the user's error)


@contextlib.contextmanager
def _as_user_error() -> Iterator[None]:
    try:
        yield
    except (InputError, ImportError) as err:
        raise UserError(str(err)) from None


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file, reading only its header."""
    with _as_user_error():
        return streaming.image_size(path)


def check_image_size(path: str, size: tuple[int | None, int | None], *,
                     resize: bool = False) -> tuple[int, int]:
    """The ``(height, width)`` an image will be fed at; UserError if it differs and not ``resize``.

    ``size``: the input tensor's static ``(height, width)``; ``None`` takes any.
    """
    with _as_user_error():
        return streaming.check_image_size(path, size, resize=resize)


def load_image(
    path: str,
    size: tuple[int | None, int | None] = (None, None),
    channels: int = 3,
    *,
    resize: bool = False,
) -> np.ndarray:
    """Reads an image file as uint8 ``[height, width, channels]`` (RGB, or gray for 1 channel).

    ``size``: the ``(height, width)`` the model takes (``None``: any). An
    image of another size raises :class:`UserError` naming both sizes, unless
    ``resize``: then it is resized (Pillow's bilinear filter, antialiased when
    shrinking) to exactly that size, aspect ratio not kept.
    """
    if channels not in (1, 3):
        raise UserError(f"input tensor: expected 1 or 3 channels to read images into, got "
                        f"{channels}")
    with _as_user_error():
        return streaming.load_image(path, size, channels, resize=resize)


def finite_float(text: str) -> float:
    """An argparse type: a finite float (``nan``/``inf`` are usage errors naming the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _output_names(images: Sequence[str]) -> list[str]:
    """A distinct file stem per image (``cat``, ``cat-2`` when two images are called ``cat``)."""
    names, seen = [], {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names


# ---------------------------------------------------------------------------
# Methods and feeds


def parse_methods(text: str | None, *, has_conv: bool) -> tuple[list[str], list[str]]:
    """The method names of a ``--method`` value, and those left out for lack of a conv layer.

    ``None``: :data:`DEFAULT_METHODS` (Grad-CAM only ``has_conv``); ``"all"``:
    every available method, less those needing a conv layer when there is
    none (returned second, to say so). Raises ValueError for an unknown name
    or a named method that needs ``--conv-tensor`` when there is none, and
    UserError for a named method whose optional dependency is missing.
    """
    from .catalogue import METHODS, available_methods

    if text is None or text.strip() == "all":
        names = list(DEFAULT_METHODS) if text is None else available_methods()
        need_conv = [] if has_conv else [n for n in names if METHODS[n].needs_conv]
        return [n for n in names if n not in need_conv], need_conv if text else []
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(f"--method: unknown {', '.join(map(repr, unknown)) or '(empty)'}; "
                         f"choose from {', '.join(METHODS)} or 'all'")
    need_conv = [n for n in names if METHODS[n].needs_conv]
    if need_conv and not has_conv:
        raise ValueError(f"--method {','.join(need_conv)}: needs --conv-tensor (a conv layer's "
                         "activations [batch, h, w, channels])")
    for name in names:
        if not METHODS[name].available():
            raise UserError(f"--method {name}: needs the Python module(s) "
                            f"{', '.join(METHODS[name].requires)}; install them first")
    return names, []


def parse_feeds(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--feed NAME=VALUE`` items as ``(name, text)`` pairs (each value is cast to its
    tensor's dtype when the model loads: :class:`~saliency_tf1.streaming.ModelSpec`)."""
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--feed {item!r}: expected NAME=VALUE, e.g. is_training=false")
        pairs.append((name, value))
    return tuple(pairs)


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        labels = [line.rstrip("\r\n") for line in f]
    while labels and not labels[-1].strip():
        labels.pop()
    if not labels:
        raise UserError(f"--class-names {path}: no class names in it (one per line)")
    return labels


# ---------------------------------------------------------------------------
# explain


def _run_layout(args: argparse.Namespace) -> bool:
    """Whether ``explain`` writes the run layout (manifest, .npz per input) instead of figures."""
    return bool(args.manifest or args.runner or args.report or args.metrics
                or args.retry_failed or args.beam_options)


def _beam_flags(args: argparse.Namespace) -> list[str]:
    flags = [f"--runner={args.runner or 'DirectRunner'}"]
    if args.direct_num_workers is not None:
        flags.append(f"--direct_num_workers={args.direct_num_workers}")
    if args.direct_running_mode is not None:
        flags.append(f"--direct_running_mode={args.direct_running_mode}")
    return flags + list(args.beam_options)


def _explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .streaming import RUN_METRICS, BatchExplainer, ModelSpec, expand_inputs

    try:
        names, skipped = parse_methods(args.methods, has_conv=args.conv_tensor is not None)
    except ValueError as err:
        parser.error(str(err))
    if args.cls is not None and args.cls < 0:
        parser.error(f"--class: expected a class index >= 0, got {args.cls}")
    if args.batch_size < 1 or args.metric_steps < 1:
        parser.error("--batch-size and --metric-steps: expected integers >= 1")
    metrics = [m.strip() for m in (args.metrics or "").split(",") if m.strip()]
    if [m for m in metrics if m not in RUN_METRICS]:
        parser.error(f"--metrics: expected names from {','.join(RUN_METRICS)}, got "
                     f"{args.metrics!r}")
    if args.direct_num_workers is not None and args.direct_num_workers < 1:
        parser.error("--direct_num_workers: expected an integer >= 1")
    if args.runner is None and (args.direct_num_workers or args.direct_running_mode
                                or args.beam_options):
        args.runner = "DirectRunner"  # Beam options ask for Beam: its default runner
    run_layout = _run_layout(args)
    images = expand_inputs(args.images)
    if not run_layout:
        for path in images:
            image_size(path)  # every image exists and is readable before the model loads
    if os.path.isfile(args.out):
        raise UserError(f"--out {args.out}: is a file, expected a folder")
    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: model not found")
    labels = _read_labels(args.labels)
    _import_tensorflow(quiet=not args.debug)
    beam = _import_beam(quiet=not args.debug) if args.runner else None
    from .models import UnsafeGraphError
    from .models.diagnose import forward_only_methods

    if skipped:
        print(f"{PROG}: note: leaving out {', '.join(skipped)} (no --conv-tensor given)",
              file=sys.stderr)
    spec = ModelSpec(args.model, args.input_tensor, args.output_tensor, args.conv_tensor,
                     parse_feeds(args.feed), args.allow_unsafe_ops,
                     tuple(args.allow_ops) if args.allow_ops else None,
                     tuple(t for t in args.tags.split(",") if t), args.signature_key or None,
                     args.scale, args.offset, args.resize, args.cls,
                     # a model that cannot be differentiated loads for forward-only methods
                     gradients=not set(names) <= set(forward_only_methods()))
    explainer = BatchExplainer(spec, names, batch_size=args.batch_size, metrics=metrics,
                               metric_steps=args.metric_steps, class_names=labels)
    try:
        with _stderr_captured(not args.debug):  # tf-keras and TF log at load (replayed on failure)
            loaded = spec.load()
    except UnsafeGraphError as err:
        raise UserError(f"{err}\n(on the command line: --allow-op NAME for an op type you have "
                        "checked, or --allow-unsafe-ops)") from None
    try:
        num_classes = loaded.logits.shape.as_list()[1]
        if args.cls is not None and num_classes is not None and args.cls >= num_classes:
            raise UserError(f"--class {args.cls}: the output has {num_classes} classes "
                            f"(0 to {num_classes - 1})")
        if labels is not None and num_classes is not None and len(labels) != num_classes:
            raise UserError(f"--class-names {args.labels}: {len(labels)} names for {num_classes} "
                            "classes (one per line)")
        if not run_layout:
            height, width, _ = loaded.shape
            for path in images:  # every size, before any work
                check_image_size(path, (height, width), resize=args.resize)
    except BaseException:
        loaded.close()
        raise
    explainer.setup(loaded)  # checks the methods' arguments on the model; owns it now
    with contextlib.closing(explainer):
        if not run_layout:
            return _explain_figures(args, explainer, images)
        if beam is not None:
            explainer.close()  # checked here; the workers load their own
            with _stderr_captured(not args.debug):
                summary = beam.explain_with_beam(
                    images, spec, names, args.out, options=_beam_flags(args),
                    batch_size=args.batch_size, metrics=metrics,
                    metric_steps=args.metric_steps, class_names=labels,
                    retry_failed=args.retry_failed)
        else:
            summary = streaming.explain_to_dir(images, spec, names, args.out,
                                               retry_failed=args.retry_failed,
                                               progress=not args.quiet, explainer=explainer)
    return _report_run(args, summary)


def _import_beam(quiet: bool) -> Any:
    """``saliency_tf1.beam`` (Apache Beam's import-time log lines hidden when ``quiet``)."""
    import importlib

    try:
        with _stderr_captured(quiet):
            beam = importlib.import_module(f"{__package__}.beam")
    except ImportError as err:
        raise UserError(f"--runner: {err}") from None
    if quiet:
        import logging

        logging.getLogger("apache_beam").setLevel(logging.ERROR)
    return beam


def _report_run(args: argparse.Namespace, summary: Any) -> int:
    from .streaming import read_manifest

    failures = [r for r in read_manifest(summary.manifest) if r["error"] is not None]
    where = f"{args.runner} (Beam)" if args.runner else "in this process"
    print(f"explained {summary.explained} inputs, {summary.failed} failed, "
          f"{summary.skipped} done before ({where}); {summary.total} in "
          f"{summary.manifest}")
    for record in failures[:10]:
        print(f"{PROG}: note: failed: {record['error']}"
              + ("" if record["key"] in record["error"] else f" ({record['key']})"),
              file=sys.stderr)
    if len(failures) > 10:
        print(f"{PROG}: note: ... {len(failures) - 10} more failures in the manifest",
              file=sys.stderr)
    if args.report:
        from .visualization.report import write_report

        print(f"report: {write_report(args.out, progress=not args.quiet)}")
    return 0


def _explain_figures(args: argparse.Namespace, explainer: Any, images: list[str]) -> int:
    """The classic layout: per image, ``OUT/<image>.png`` (figure) and one ``.npy`` per method."""
    from tqdm.auto import tqdm

    from .catalogue import METHODS
    from .engine.batching import chunk_bounds
    from .streaming import Failure
    from .visualization import display_mask, save_figure

    os.makedirs(args.out, exist_ok=True)
    stems = dict(zip(images, _output_names(images)))
    bar = tqdm(total=len(images), desc="images", unit="image", disable=args.quiet,
               file=sys.stderr)
    with bar:
        for a, b in chunk_bounds(len(images), explainer.batch_size):
            for result in explainer.explain(images[a:b]):
                if isinstance(result, Failure):
                    where = f" ({result.method})" if result.method else ""
                    raise UserError(f"{result.key}{where}: {result.reason}")
                stem = stems[result.key]
                panels = {}
                for name, mask in result.masks.items():
                    np.save(os.path.join(args.out, f"{stem}_{name}.npy"), mask)
                    panels[METHODS[name].title] = display_mask(mask)
                predicted, explained = result.prediction, result.explained_class
                shown = f"class {explained} (p={result.explained_score:.2f})"
                if args.cls is not None:
                    shown += f", predicted {predicted} (p={result.score:.2f})"
                figure = save_figure(result.image, panels, os.path.join(args.out, f"{stem}.png"),
                                     title=f"{os.path.basename(result.key)}: explained {shown}",
                                     overlay_alpha=0.55)
                label = f" {result.label}" if result.label is not None else ""
                line = f"{result.key}: predicted class {predicted}{label} (p={result.score:.3f})"
                if args.cls is not None:
                    line += f", explained class {args.cls} (p={result.explained_score:.3f})"
                tqdm.write(f"{line} -> {figure}", file=sys.stdout)
                bar.update(1)
    return 0


def _report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.page_size < 1:
        parser.error("--page-size: expected an integer >= 1")
    if not os.path.isfile(os.path.join(args.run, "manifest.jsonl")):
        raise UserError(f"{args.run}: no manifest.jsonl in it (write one with saliency-tf1 "
                        "explain --manifest)")
    from .visualization.report import write_report

    print(write_report(args.run, title=args.title, page_size=args.page_size,
                       progress=not args.quiet))
    return 0


# ---------------------------------------------------------------------------
# demo


def _demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .catalogue import METHODS

    names = None
    if args.methods and args.methods != "all":
        names = [n.strip() for n in args.methods.split(",") if n.strip()]
        unknown = [n for n in names if n not in METHODS]
        if unknown or not names:
            parser.error(f"--method: unknown {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(METHODS)} or 'all'")
    if args.images < 1 or args.steps < 0 or args.train < 1 or args.show < 0:
        parser.error("--images and --train must be >= 1, --steps and --show >= 0")
    _import_tensorflow(quiet=not args.debug)
    from .demo import run_demo

    run_demo(args.out, seed=args.seed, n_train=args.train, n_explain=args.images,
             n_show=args.show, steps=args.steps, methods=names, progress=not args.quiet,
             report=not args.no_report)
    return 0


# ---------------------------------------------------------------------------
# The parser


def build_parser() -> argparse.ArgumentParser:
    """The ``saliency-tf1`` argument parser (subcommands ``explain``, ``report`` and ``demo``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Saliency maps for TensorFlow models in TF1 graph style.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true",
                        help="show TensorFlow's startup log and Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser(
        "explain", parents=[common], allow_abbrev=False,
        help="explain a saved model's predictions on image files",
        description="Explains a saved model's prediction on each image. By default it writes, "
        "per image, OUT/<image>.png (the image and one overlay per method) and "
        "OUT/<image>_<method>.npy (the raw masks, [height, width, channels] or [height, width] "
        "for xrai) and prints the predicted class and its softmax probability. With "
        "--manifest (implied by --runner, --report, --metrics) it writes a run instead, for "
        "data sets: OUT/masks/<name>.npz per input and OUT/manifest.jsonl (one JSON object per "
        "input: key, prediction, score, masks, metrics, error); a bad input is recorded with "
        "its reason instead of stopping the run, and a second run skips the inputs already "
        "done. --runner runs it on Apache Beam (the 'beam' extra).",
        epilog="Pixels are fed as image/255*SCALE+OFFSET: [0,1] by default; --scale 255 for "
        "[0,255]; --scale 2 --offset -1 for [-1,1]. Other Beam pipeline options go as "
        "--name=value (e.g. --project=my-project). Exit status: 0 ok, 2 usage error, 1 any "
        "other error (missing file, unknown tensor, image of the wrong size, unsafe graph).")
    ex.add_argument("model", metavar="MODEL",
                    help="frozen graph (.pb), SavedModel folder, checkpoint (.meta) or tf-keras "
                         "file (.h5/.keras, tf-keras or Keras 3)")
    ex.add_argument("images", metavar="IMAGE", nargs="+",
                    help="image files (PNG, JPEG, ...), folders (their images, all levels), glob "
                         "patterns ('data/*.png') or @FILE (a list of paths, one per line)")
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for the masks and figures")
    ex.add_argument("--input-tensor", required=True, metavar="NAME",
                    help="the image input: signature key, tensor name (x:0) or op name")
    ex.add_argument("--output-tensor", required=True, metavar="NAME",
                    help="the logits [batch, classes]: signature key, tensor or op name")
    ex.add_argument("--class", dest="cls", type=int, metavar="K",
                    help="explain class K (default: each image's predicted class)")
    ex.add_argument("--method", "--methods", dest="methods", metavar="M1,M2",
                    help=f"comma-separated methods, or 'all' (default: "
                         f"{','.join(DEFAULT_METHODS)}; gradcam only with --conv-tensor)")
    ex.add_argument("--conv-tensor", metavar="NAME",
                    help="a conv layer's activations [batch, h, w, c] (Grad-CAM methods)")
    ex.add_argument("--resize", action="store_true",
                    help="resize images to the input tensor's height x width (default: an image "
                         "of another size is an error)")
    ex.add_argument("--scale", type=finite_float, default=1.0,
                    help="pixel range: image/255*SCALE+OFFSET (default: %(default)s)")
    ex.add_argument("--offset", type=finite_float, default=0.0,
                    help="see --scale (default: %(default)s)")
    ex.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                    help="a value for another placeholder, e.g. is_training=false (repeatable)")
    ex.add_argument("--allow-unsafe-ops", action="store_true",
                    help="load graphs with ops that touch files/network or run Python (only for "
                         "models you trust; refused by default)")
    ex.add_argument("--allow-op", dest="allow_ops", action="append", default=[], metavar="NAME",
                    help="accept this one op type in the graph although it is refused by "
                         "default (repeatable; only for models you trust)")
    ex.add_argument("--batch-size", type=int, default=32, metavar="N",
                    help="inputs per batch and most rows per session.run (default: %(default)s)")
    ex.add_argument("--class-names", dest="labels", metavar="FILE",
                    help="class names, one per line (shown with the predictions)")
    run = ex.add_argument_group(
        "runs over many inputs (the run layout: OUT/manifest.jsonl, OUT/masks/<name>.npz)")
    run.add_argument("--manifest", action="store_true",
                     help="write the run layout instead of a figure per image")
    run.add_argument("--report", action="store_true",
                     help="then write the HTML report OUT/report/index.html")
    run.add_argument("--metrics", metavar="M1,M2",
                     help="score each mask: deletion,insertion (RISE's areas under the curves)")
    run.add_argument("--metric-steps", type=int, default=20, metavar="N",
                     help="points on each deletion/insertion curve (default: %(default)s)")
    run.add_argument("--retry-failed", action="store_true",
                     help="run the inputs that failed in an earlier run again (default: skip "
                          "every input already in the run)")
    run.add_argument("--runner", metavar="RUNNER",
                     help="run on Apache Beam with this runner: DirectRunner (this machine), "
                          "DataflowRunner, FlinkRunner, SparkRunner, ... (any Beam option "
                          "without --runner: DirectRunner)")
    run.add_argument("--direct_num_workers", type=int, metavar="N",
                     help="DirectRunner workers (implies --runner)")
    run.add_argument("--direct_running_mode",
                     choices=("in_memory", "multi_threading", "multi_processing"),
                     help="DirectRunner mode (implies --runner)")
    ex.add_argument("--tags", default="serve", help="SavedModel tags, comma-separated "
                                                    "(default: %(default)s)")
    ex.add_argument("--signature-key", default="serving_default",
                    help="SavedModel signature (default: %(default)s; '' for none)")
    ex.set_defaults(func=_explain, subparser=ex)

    rep = sub.add_parser(
        "report", parents=[common], help="write the HTML report of a run",
        description="Writes RUN/report/index.html (and its images) from RUN/manifest.jsonl: a "
        "summary table per method, a gallery sortable by class, score or metric, and a page "
        "per input. Plain HTML, no network.")
    rep.add_argument("run", metavar="RUN", help="the run's folder (explain --manifest --out)")
    rep.add_argument("--title", help="the report's title")
    rep.add_argument("--page-size", type=int, default=60, metavar="N",
                     help="inputs per gallery page (default: %(default)s)")
    rep.set_defaults(func=_report, subparser=rep)

    demo = sub.add_parser(
        "demo", parents=[common], help="train a small CNN on generated shapes and explain it",
        description="Generates labelled shapes on textured noise, trains a small CNN for a few "
        "seconds, explains held-out images with every method and prints how much of each "
        "mask falls on the shape; writes OUT/demo_masks.png, demo_masks.npz, demo_table.md, "
        "and the run (OUT/manifest.jsonl, OUT/masks/) with its HTML report "
        "OUT/report/index.html.")
    demo.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="data, weights and noise seed")
    demo.add_argument("--images", type=int, default=16, help="held-out images explained and "
                      "scored (default: %(default)s)")
    demo.add_argument("--show", type=int, default=4, help="images in the figure "
                      "(default: %(default)s)")
    demo.add_argument("--steps", type=int, default=300, help="training steps "
                      "(default: %(default)s)")
    demo.add_argument("--train", type=int, default=2000, help="training images "
                      "(default: %(default)s)")
    demo.add_argument("--method", "--methods", dest="methods", default="all", metavar="M1,M2",
                      help="comma-separated methods (default: all)")
    demo.add_argument("--no-report", action="store_true",
                      help="skip the run layout and HTML report (OUT/report/index.html)")
    demo.set_defaults(func=_demo, subparser=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (argparse exits with 2 on usage errors)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.beam_options = []
    if extra:
        if args.command != "explain" or not all(e.startswith("--") and "=" in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}"
                         + (" (Beam pipeline options go as --name=value)"
                            if args.command == "explain" else ""))
        args.beam_options = extra
    try:
        return args.func(args, args.subparser)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError, ValueError, TypeError) as err:
        if args.debug:
            raise
        message = str(err)
        if isinstance(err, OSError) and err.filename:  # e.g. an --out that cannot be written
            message = f"{err.filename}: {err.strerror or type(err).__name__}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except Exception as err:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(err, tf.errors.OpError) or args.debug:
            raise
        print(f"{PROG}: error: TensorFlow: {op_error_summary(err)}", file=sys.stderr)
        return 1


def op_error_summary(err: Any) -> str:
    """A TensorFlow run error in one line that keeps its cause.

    ``session.run`` errors start with a generic line ("Graph execution
    error:") and a traceback of where the node was defined; the cause (e.g.
    ``indices[0] = 9 is not in [0, 4)``) comes after. Returns the error type,
    the first line that is neither, and the node.
    """
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "{{", "Traceback")
    lines = [line.strip() for line in str(getattr(err, "message", err)).splitlines()]
    causes = [line for line in lines if line and not line.startswith(skip)
              and not line.startswith(("in ", "self.", "return ", "^"))]
    cause = causes[-1] if causes else (lines[0] if lines else "")
    node = getattr(getattr(err, "op", None), "name", None) or getattr(err, "node_def", None)
    node = getattr(node, "name", node)
    return f"{type(err).__name__}: {cause}" + (f" (node {node})" if node else "")


if __name__ == "__main__":
    sys.exit(main())
