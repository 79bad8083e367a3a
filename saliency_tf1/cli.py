"""The ``saliency-tf1`` command (also ``python -m saliency_tf1``).

``saliency-tf1 explain MODEL --input-tensor X --output-tensor LOGITS IMAGE... --out DIR``
loads a saved model (:func:`saliency_tf1.io.load_model`: a frozen ``.pb``, a
SavedModel directory, a ``.meta`` checkpoint or a tf-keras file), explains
each image's predicted class (or ``--class K``) with the chosen methods and
writes, per image, ``DIR/<image>.png`` (the image and one overlay per
method) and ``DIR/<image>_<method>.npy`` (each raw mask); it prints the
predicted class and its softmax probability.

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

PROG = "saliency-tf1"

#: ``explain``'s methods when ``--method`` is not given: fast ones (Grad-CAM
#: only with ``--conv-tensor``).
DEFAULT_METHODS = ("gradient", "smoothgrad", "ig", "guided", "gradcam")

_KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


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


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise UserError(
            "reading images needs Pillow: pip install 'saliency_tf1[cli]' (or pip install "
            f"pillow); import failed: {err}"
        ) from err
    return Image


# ---------------------------------------------------------------------------
# Images


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file, reading only its header."""
    Image = _pillow()
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected an image file") from None
    except OSError as err:  # PIL.UnidentifiedImageError is an OSError
        raise UserError(f"{path}: cannot read this image: {err}") from None


def check_image_size(path: str, size: tuple[int | None, int | None], *,
                     resize: bool = False) -> tuple[int, int]:
    """The ``(height, width)`` an image will be fed at; UserError if it differs and not ``resize``.

    ``size``: the input tensor's static ``(height, width)``; ``None`` takes any.
    """
    height, width = image_size(path)
    want = (size[0] or height, size[1] or width)
    if (height, width) != want and not resize:
        raise UserError(
            f"{path}: image is {height}x{width} (height x width), the input tensor takes "
            f"{want[0]}x{want[1]}; pass --resize to resize it"
        )
    return want


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
    Image = _pillow()
    if channels not in (1, 3):
        raise UserError(f"input tensor: expected 1 or 3 channels to read images into, got "
                        f"{channels}")
    want_h, want_w = check_image_size(path, size, resize=resize)
    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if (img.height, img.width) != (want_h, want_w):
            img = img.resize((want_w, want_h), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def finite_float(text: str) -> float:
    """An argparse type: a finite float (``nan``/``inf`` are usage errors naming the option)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def to_model_input(image: np.ndarray, scale: float = 1.0, offset: float = 0.0,
                   dtype: Any = np.float32) -> np.ndarray:
    """``image / 255 * scale + offset``: uint8 pixels to the model's input range.

    The defaults give [0, 1]; ``scale=255`` gives [0, 255]; ``scale=2,
    offset=-1`` gives [-1, 1] (Inception-style preprocessing).
    """
    return (image.astype(np.float64) / 255.0 * scale + offset).astype(dtype)


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


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_feeds(model: Any, items: Sequence[str]) -> dict:
    """``--feed NAME=VALUE`` items as a feed_dict (values cast to each tensor's dtype)."""
    feed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--feed {item!r}: expected NAME=VALUE, e.g. is_training=false")
        tensor = model.tensor(name, role="input")
        try:
            feed[tensor] = np.asarray(_parse_value(value), dtype=tensor.dtype.as_numpy_dtype)
        except (TypeError, ValueError) as err:
            raise UserError(f"--feed {item!r}: cannot make a {tensor.dtype.name} value of "
                            f"{value!r}: {err}") from None
    return feed


# ---------------------------------------------------------------------------
# explain


def _check_tensors(x: Any, logits: Any) -> tuple[int | None, int | None, int]:
    """Checks the input is a float image batch and the output a logits matrix; returns H, W, C."""
    shape = x.shape
    if shape.rank != 4:
        raise UserError(f"input tensor {x.name}: expected an image batch [batch, height, width, "
                        f"channels], got shape {shape}")
    if not x.dtype.is_floating:
        raise UserError(f"input tensor {x.name}: is {x.dtype.name}; saliency needs a float "
                        "input to differentiate: pass the float tensor the model casts it to "
                        "(e.g. the Cast op after it) as --input-tensor")
    if logits.shape.rank != 2:
        raise UserError(f"output tensor {logits.name}: expected logits [batch, classes], got "
                        f"shape {logits.shape}")
    height, width, channels = shape.as_list()[1:]
    if channels not in (1, 3):
        raise UserError(f"input tensor {x.name}: expected 1 or 3 channels, got {channels}")
    return height, width, channels


def _explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        names, skipped = parse_methods(args.methods, has_conv=args.conv_tensor is not None)
    except ValueError as err:
        parser.error(str(err))
    if args.cls is not None and args.cls < 0:
        parser.error(f"--class: expected a class index >= 0, got {args.cls}")
    for path in args.images:
        image_size(path)  # every image exists and is readable before the model loads
    if os.path.isfile(args.out):
        raise UserError(f"--out {args.out}: is a file, expected a folder")
    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: model not found")
    if args.model.endswith(_KERAS_SUFFIXES):
        from .models.legacy import enable_legacy_keras

        try:
            enable_legacy_keras()
        except (ImportError, RuntimeError) as err:
            raise UserError(str(err)) from None
    tf = _import_tensorflow(quiet=not args.debug)
    from tqdm.auto import tqdm

    from .catalogue import METHODS
    from .engine.graph import required_placeholders
    from .models import UnsafeGraphError, load_model
    from .target import ClassTarget
    from .visualization import display_mask, save_figure

    if skipped:
        print(f"{PROG}: note: leaving out {', '.join(skipped)} (no --conv-tensor given)",
              file=sys.stderr)
    kwargs: dict[str, Any] = {"allow_unsafe_ops": args.allow_unsafe_ops}
    if os.path.isdir(args.model) or os.path.basename(args.model).startswith("saved_model."):
        kwargs.update(tags=tuple(t for t in args.tags.split(",") if t),
                      signature_key=args.signature_key or None)
    try:
        model = load_model(args.model, **kwargs)
    except UnsafeGraphError as err:
        raise UserError(f"{err}\n(on the command line: --allow-unsafe-ops)") from None
    with model:
        x = model.tensor(args.input_tensor, role="input")
        logits = model.tensor(args.output_tensor, role="output")
        conv = (model.tensor(args.conv_tensor, role="conv")
                if args.conv_tensor is not None else None)
        height, width, channels = _check_tensors(x, logits)
        user_feed = parse_feeds(model, args.feed)
        missing = [t.op.name for t in required_placeholders([logits], [x, *user_feed])]
        if missing:
            raise UserError(f"the output depends on placeholder(s) {', '.join(missing)} that "
                            "nothing feeds: give each a value with --feed NAME=VALUE")
        num_classes = logits.shape.as_list()[1]
        if args.cls is not None and num_classes is not None and args.cls >= num_classes:
            raise UserError(f"--class {args.cls}: the output has {num_classes} classes "
                            f"(0 to {num_classes - 1})")
        for path in args.images:  # every size, before any work
            check_image_size(path, (height, width), resize=args.resize)
        with model.graph.as_default():
            target = ClassTarget(logits)
            probabilities = (logits if logits.op.type == "Softmax"
                             else tf.nn.softmax(logits, axis=-1))
        methods = {n: METHODS[n].build(model.graph, model.session, target.y, x, conv)
                   for n in names}
        os.makedirs(args.out, exist_ok=True)
        dtype = x.dtype.as_numpy_dtype
        bar = tqdm(list(zip(args.images, _output_names(args.images))), desc="images",
                   unit="image", disable=args.quiet, file=sys.stderr)
        for path, stem in bar:
            pixels = load_image(path, (height, width), channels, resize=args.resize)
            x_value = to_model_input(pixels, args.scale, args.offset, dtype)
            probs = model.session.run(probabilities, {**user_feed, x: x_value[None]})[0]
            predicted = int(np.argmax(probs))
            explained = predicted if args.cls is None else args.cls
            feed = target.feed(explained, user_feed)
            panels = {}
            for name, method in methods.items():
                spec = METHODS[name]
                mask = np.asarray(spec.explain(method, x_value, feed))
                np.save(os.path.join(args.out, f"{stem}_{name}.npy"), mask)
                panels[spec.title] = display_mask(mask)
            shown = f"class {explained} (p={probs[explained]:.2f})"
            if args.cls is not None:
                shown += f", predicted {predicted} (p={probs[predicted]:.2f})"
            figure = save_figure(pixels, panels, os.path.join(args.out, f"{stem}.png"),
                                 title=f"{os.path.basename(path)}: explained {shown}",
                                 overlay_alpha=0.55)
            line = f"{path}: predicted class {predicted} (p={probs[predicted]:.3f})"
            if args.cls is not None:
                line += f", explained class {args.cls} (p={probs[args.cls]:.3f})"
            tqdm.write(f"{line} -> {figure}", file=sys.stdout)
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
             n_show=args.show, steps=args.steps, methods=names, progress=not args.quiet)
    return 0


# ---------------------------------------------------------------------------
# The parser


def build_parser() -> argparse.ArgumentParser:
    """The ``saliency-tf1`` argument parser (subcommands ``explain`` and ``demo``)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Saliency maps for TensorFlow models in TF1 graph style.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    common.add_argument("--debug", action="store_true",
                        help="show TensorFlow's startup log and Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ex = sub.add_parser(
        "explain", parents=[common], help="explain a saved model's predictions on image files",
        description="Explains a saved model's prediction on each image and writes, per image, "
        "OUT/<image>.png (the image and one overlay per method) and OUT/<image>_<method>.npy "
        "(the raw masks, [height, width, channels] or [height, width] for xrai); prints the "
        "predicted class and its softmax probability.",
        epilog="Pixels are fed as image/255*SCALE+OFFSET: [0,1] by default; --scale 255 for "
        "[0,255]; --scale 2 --offset -1 for [-1,1]. Exit status: 0 ok, 2 usage error, 1 any "
        "other error (missing file, unknown tensor, image of the wrong size, unsafe graph).")
    ex.add_argument("model", metavar="MODEL",
                    help="frozen graph (.pb), SavedModel folder, checkpoint (.meta) or tf-keras "
                         "file (.h5/.keras)")
    ex.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
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
    ex.add_argument("--tags", default="serve", help="SavedModel tags, comma-separated "
                                                    "(default: %(default)s)")
    ex.add_argument("--signature-key", default="serving_default",
                    help="SavedModel signature (default: %(default)s; '' for none)")
    ex.set_defaults(func=_explain, subparser=ex)

    demo = sub.add_parser(
        "demo", parents=[common], help="train a small CNN on generated shapes and explain it",
        description="Generates labelled shapes on textured noise, trains a small CNN for a few "
        "seconds, explains held-out images with every method and prints how much of each "
        "mask falls on the shape; writes OUT/demo_masks.png, demo_masks.npz, demo_table.md.")
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
    demo.set_defaults(func=_demo, subparser=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status (argparse exits with 2 on usage errors)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, args.subparser)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError, TypeError) as err:
        if args.debug:
            raise
        message = str(err)
        if isinstance(err, FileNotFoundError) and err.filename:
            message = f"{err.filename}: {err.strerror or 'not found'}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except Exception as err:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(err, tf.errors.OpError) or args.debug:
            raise
        print(f"{PROG}: error: TensorFlow: {err.message.splitlines()[0]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
