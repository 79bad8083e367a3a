"""Explaining a stream of inputs chunk by chunk, in memory that does not grow with the stream.

:func:`iter_masks` reads an iterable of inputs (a generator over a dataset,
files decoded one at a time, ...) a chunk at a time, hands each chunk to one
``GetMaskBatch`` call (whose work is stacked into ``session.run`` batches of
at most ``batch_size`` rows) and yields the masks one by one. At any moment
it holds one chunk of inputs and its masks, whatever the length of the
stream; values fed per input (a class for each image) stream alongside.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any

import numpy as np

from .engine.batching import progress_bar
from .engine.checks import check_array, check_positive_int
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
