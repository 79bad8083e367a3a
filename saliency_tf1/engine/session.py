"""Running a TF1 session: the one place where this package calls ``session.run``.

:class:`SessionRunner` feeds batches of rows to the input tensor ``x`` and
returns named fetches. It resolves the caller's ``feed_dict`` once per public
call (tensor or name keys, :class:`PerExample` values, missing placeholders,
values that do not fit their placeholder), splits rows into the runs the
model's shapes allow (a fixed outer dimension is padded; a scalar ``y`` takes
one row per run) and checks that ``y`` gives one value per row fed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .checks import describe
from .graph import check_tensor, index_bound, required_placeholders, tf_module


class PerExample:
    """A ``feed_dict`` value given once per input rather than once per call.

    Methods expand one input into many rows (noise samples, path points,
    occluded copies). A plain feed value is fed as it is to every
    ``session.run``; a ``PerExample`` value holds one entry per input of the
    call (``len == 1`` for ``GetMask``/``GetSmoothedMask``, ``len == N`` for
    ``GetMaskBatch`` of N inputs) and each row is fed the entry of the input it
    derives from. :class:`saliency_tf1.ClassTarget` uses it to explain a
    different class for each input.
    """

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values)
        if self.values.ndim == 0:
            raise ValueError(
                "PerExample values: expected an array with one entry per input "
                f"(at least 1-D), got a scalar {self.values!r}"
            )

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"PerExample({self.values!r})"


@dataclass(frozen=True)
class Feed:
    """A caller's ``feed_dict``, checked: constant values, and per-input values."""

    constant: dict = field(default_factory=dict)
    per_example: dict = field(default_factory=dict)

    def for_rows(self, sources: np.ndarray) -> dict:
        """The feed of one run whose row ``r`` derives from input ``sources[r]``."""
        feed = dict(self.constant)
        for tensor, values in self.per_example.items():
            feed[tensor] = values[sources]
        return feed


def check_graph_and_session(graph: Any, session: Any) -> None:
    """Checks ``graph`` is a tf.Graph and ``session`` can run it.

    A session wrapper whose ``.graph`` is not a ``tf.Graph`` (a
    ``mock.MagicMock(wraps=session)``, a debugger wrapper) is accepted; a
    session whose ``.graph`` is another ``tf.Graph`` is refused.
    """
    tf = tf_module()
    if not isinstance(graph, tf.Graph):
        raise TypeError(f"graph: expected a tf.Graph, got {describe(graph)}")
    if not callable(getattr(session, "run", None)):
        raise TypeError(f"session: expected a tf.compat.v1.Session, got {describe(session)}")
    session_graph = getattr(session, "graph", None)
    if isinstance(session_graph, tf.Graph) and session_graph is not graph:
        raise ValueError("session: the session runs another tf.Graph than the `graph` argument")


def check_input_tensor(x: Any, graph: Any, name: str = "x") -> None:
    """Checks ``x`` is a floating tensor of ``graph`` whose outer dimension is the batch."""
    check_tensor(name, x, graph)
    if not x.dtype.is_floating:
        raise TypeError(f"{name}: expected a floating-point input tensor, got dtype "
                        f"{x.dtype.name}")
    if x.shape.rank is None or x.shape.rank < 1:
        raise ValueError(
            f"{name}: expected a tensor whose outer dimension is the batch (rank >= 1), "
            f"got shape {x.shape}"
        )


@dataclass(frozen=True)
class InputPart:
    """One input tensor of a model with several: where its values sit in a packed row."""

    tensor: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class InputLayout:
    """The input(s) ``x`` of a model: one tensor, or a list/tuple of them packed into one row.

    With several inputs, a model row is the concatenation of every input's
    values, flattened, in ``x``'s order (``[size_1 + size_2 + ...]``), so the
    row-based algorithms (gradients, IG paths, noise) run unchanged on the
    packed rows and treat the inputs jointly; :meth:`pack` and
    :meth:`unpack` convert at the public boundary, :meth:`feeds` at the
    session. Each input's outer dimension is the batch; the rest must be known.
    """

    def __init__(self, x: Any, graph: Any) -> None:
        self.multi = isinstance(x, (list, tuple))
        tensors = list(x) if self.multi else [x]
        if self.multi and not tensors:
            raise ValueError("x: expected a tensor or a non-empty list of tensors, got []")
        for i, t in enumerate(tensors):
            check_input_tensor(t, graph, f"x[{i}]" if self.multi else "x")
        if len({t.name for t in tensors}) != len(tensors):
            raise ValueError(f"x: the same tensor appears twice in {[t.name for t in tensors]}")
        self.tensors = tensors
        self.parts: list[InputPart] = []
        offset = 0
        for i, t in enumerate(tensors):
            shape = t.shape.as_list()[1:]
            if self.multi and None in shape:
                raise ValueError(
                    f"x[{i}]: with several inputs each needs a fully known shape per example "
                    f"(to pack them into one row), got {t.name!r} of shape {t.shape}"
                )
            part = InputPart(t, tuple(shape), np.dtype(t.dtype.as_numpy_dtype), offset)
            self.parts.append(part)
            offset += part.size if self.multi else 0
        outer = {t.shape.as_list()[0] for t in tensors}
        if len(outer) > 1:
            raise ValueError(f"x: the inputs' outer (batch) dimensions differ: "
                             f"{[t.shape.as_list()[0] for t in tensors]}")
        #: Shape of one (packed) input row, ``None`` for open dimensions.
        self.shape: tuple[int | None, ...] = (
            (offset,) if self.multi else tuple(tensors[0].shape.as_list()[1:]))
        #: dtype of the (packed) rows: the inputs' common float type.
        self.dtype = np.dtype(np.result_type(*[p.dtype for p in self.parts]))

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def pack(self, value: Any, name: str, *, batched: bool) -> np.ndarray:
        """Checks a caller's input(s) and returns the (packed) array the kernels take.

        One input: ``value`` checked as it is. Several: a list/tuple with one
        array per input (each ``[*shape_i]``, or ``[N, *shape_i]`` when
        ``batched``), packed into ``[total]`` / ``[N, total]``.
        """
        from .checks import check_array

        if not self.multi:
            return check_array(name, value, self.shape, batched=batched)
        if not isinstance(value, (list, tuple)) or len(value) != len(self.parts):
            raise TypeError(
                f"{name}: the model has {len(self.parts)} inputs {self.names}; expected a list "
                f"of {len(self.parts)} arrays in that order, got {_describe_inputs(value)}"
            )
        arrays = [check_array(f"{name}[{i}]", v, p.shape, batched=batched)
                  for i, (v, p) in enumerate(zip(value, self.parts))]
        if batched and len({len(a) for a in arrays}) > 1:
            raise ValueError(f"{name}: the inputs hold different numbers of examples: "
                             f"{[len(a) for a in arrays]}")
        lead = (len(arrays[0]),) if batched else ()
        dtype = np.result_type(self.dtype, *[a.dtype for a in arrays])
        return np.concatenate([a.reshape(*lead, -1).astype(dtype, copy=False)
                               for a in arrays], axis=-1)

    def unpack(self, packed: np.ndarray, *, batched: bool) -> Any:
        """A (packed) result back in the caller's form: the array, or a list per input."""
        if not self.multi:
            return packed
        lead = packed.shape[:1] if batched else ()
        return [packed[..., p.offset:p.offset + p.size].reshape(*lead, *p.shape)
                for p in self.parts]

    def feeds(self, rows: np.ndarray) -> dict:
        """``{input tensor: its values}`` for a batch of (packed) rows."""
        if not self.multi:
            return {self.tensors[0]: rows}
        n = len(rows)
        return {p.tensor: rows[:, p.offset:p.offset + p.size].reshape(n, *p.shape).astype(
                    p.dtype, copy=False) for p in self.parts}

    def scales(self, packed: np.ndarray) -> np.ndarray | float:
        """``max - min`` of each input, per value of a packed input (one float for one input)."""
        if not self.multi:
            return float(np.max(packed) - np.min(packed))
        out = np.empty(packed.shape[-1], np.float64)
        for p in self.parts:
            values = packed[..., p.offset:p.offset + p.size]
            out[p.offset:p.offset + p.size] = float(np.max(values) - np.min(values))
        return out


def _describe_inputs(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)}"
    return describe(value)


def batch_limits(x: Any, y: Any = None) -> tuple[int | None, int | None]:
    """``(rows per run, pad to)`` that the shapes of ``x`` and ``y`` allow.

    ``(None, None)``: any number of rows per run. A ``y`` of shape ``()``
    gives one row per run; a fixed outer dimension ``n`` of ``x`` gives runs
    of exactly ``n`` rows (the last one padded). Raises ValueError for a
    ``y`` whose fixed outer dimension does not match ``x``'s.
    """
    x_outer = x.shape.as_list()[0]
    y_outer = None
    if y is not None:
        if y.shape.rank is None or y.shape.rank > 1:
            raise ValueError(
                f"y: expected shape [None] (one value per example) or (), got {y.shape}; "
                "select one output per example, e.g. logits[:, k] or saliency_tf1.ClassTarget"
            )
        if y.shape.rank == 0:
            return 1, None
        y_outer = y.shape.as_list()[0]
        if x_outer is not None and y_outer is not None and y_outer != x_outer:
            raise ValueError(f"y: expected outer dimension {x_outer} (x's), got shape {y.shape}")
    if x_outer is not None:
        return x_outer, x_outer
    if y_outer is not None:
        if y_outer != 1:
            raise ValueError(
                f"y: shape {y.shape} has a fixed outer dimension {y_outer} but x's outer "
                "dimension is open; expected y of shape [None] or ()"
            )
        return 1, None
    return None, None


_KINDS_FOR = {
    # tensor dtype kind -> NumPy kinds a fed value may have
    "f": "biuf",
    "c": "biufc",
    "i": "biu",
    "u": "biu",
    "b": "b",
}


def check_feed_value(tensor: Any, value: Any, what: str) -> None:
    """Checks a feed value's shape and dtype against its tensor, naming it.

    Float values for an integer tensor must be whole numbers (else they would
    be truncated silently); strings go only to string tensors.
    """
    dtype = tensor.dtype.base_dtype
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(value)
        except Exception as err:
            raise TypeError(f"{what}: expected a value for {tensor.name!r}, got "
                            f"{describe(value)}: {err}") from None
    if not tensor.shape.is_compatible_with(arr.shape):
        raise ValueError(
            f"{what}: expected a value of shape {tensor.shape} for {tensor.name!r}, "
            f"got shape {arr.shape}"
        )
    if dtype == tf_module().string:
        if arr.dtype.kind not in "SUO":
            raise TypeError(f"{what}: expected strings for {tensor.name!r} (dtype string), "
                            f"got dtype {arr.dtype}")
        return
    kind = np.dtype(dtype.as_numpy_dtype).kind
    allowed = _KINDS_FOR.get(kind)
    if allowed is None:
        return
    if arr.dtype.kind == "f" and kind in "iu" and arr.size:
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(
                f"{what}: expected whole numbers for {tensor.name!r} (dtype {dtype.name}), got "
                f"non-integer values such as {arr[arr != np.round(arr)].flat[0]!r}"
            )
    elif arr.dtype.kind not in allowed:
        raise TypeError(
            f"{what}: expected a value castable to {dtype.name} for {tensor.name!r}, got "
            f"dtype {arr.dtype}"
        )
    if kind in "iu" and arr.size:
        bound = index_bound(tensor)
        if bound is not None and (np.any(arr < 0) or np.any(arr >= bound)):
            raise ValueError(
                f"{what}: {tensor.name!r} indexes {bound} entries (classes, table rows...); "
                f"expected values in [0, {bound}), got {np.unique(arr).tolist()[:10]}"
            )


def _check_not_per_input(tensor: Any, value: Any, n_inputs: int, what: str) -> None:
    """Refuses a plain value holding one row per input for a batch-shaped tensor.

    A plain value is fed as it is to every ``session.run``, whose rows are
    noise samples, path points or copies of the inputs, not the inputs: its
    rows would not line up with them. Such a value must be a :class:`PerExample`.
    """
    shape = np.shape(value)
    if (n_inputs > 1 and tensor.shape.rank and tensor.shape.as_list()[0] is None
            and len(shape) >= 1 and shape[0] == n_inputs):
        raise ValueError(
            f"{what}: a plain value with one row per input ({n_inputs}) would be fed to every "
            "session.run as it is, and its rows would not line up with the rows run (noise "
            "samples, path points, copies); wrap it in saliency_tf1.PerExample(values) to give "
            "each input its own row, or pass one row for all"
        )


class SessionRunner:
    """Runs named fetches of a graph on batches of rows fed to ``x``.

    Args:
      graph, session: the model's graph and a session on it (checked by
        :func:`check_graph_and_session`).
      x: the input tensor, or a list of them (an :class:`InputLayout` is made of it).
      fetches: ``{key: tensor}`` that :meth:`run` may return.
      y_key: the key of the explained output ``y``: its shape decides the rows
        per run (:func:`batch_limits`), and every run checks it returned one
        value per row fed.
    """

    def __init__(
        self, graph: Any, session: Any, x: Any, fetches: Mapping[str, Any], *,
        y_key: str | None = None,
    ) -> None:
        self.graph, self.session, self.x = graph, session, x
        self.layout = x if isinstance(x, InputLayout) else InputLayout(x, graph)
        self.fetches = dict(fetches)
        self.y_key = y_key
        y = self.fetches.get(y_key) if y_key is not None else None
        self.rows_per_run, self.pad_to = batch_limits(self.layout.tensors[0], y)
        self.required = required_placeholders(self.fetches.values(), self.layout.tensors)
        self.input_dtype = self.layout.dtype

    # -- feeds ---------------------------------------------------------------

    def resolve_key(self, key: Any) -> Any:
        """The tensor a ``feed_dict`` key names (a tensor, a tensor name or an op name)."""
        tf = tf_module()
        if isinstance(key, str):
            name = key if ":" in key else f"{key}:0"  # an op name means its first output
            try:
                return self.graph.as_graph_element(name, allow_tensor=True,
                                                   allow_operation=False)
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(
                    f"feed_dict: key {key!r} names no tensor of the graph ({err})"
                ) from None
        if isinstance(key, tf.Tensor) and hasattr(key, "graph"):
            if key.graph is not self.graph:
                raise ValueError(f"feed_dict: key tensor {key.name!r} belongs to another tf.Graph")
            return key
        raise TypeError(f"feed_dict: expected tensor or tensor-name keys, got {describe(key)}")

    def prepare_feed(self, feed_dict: Any, n_inputs: int, *, per_example: bool = True,
                     rows_as_given: bool = False) -> Feed:
        """Checks ``feed_dict`` once per public call and splits it into a :class:`Feed`.

        Never modifies the caller's dict. ``per_example=False`` refuses
        :class:`PerExample` values (for callers that have no inputs to match).
        ``rows_as_given``: the ``n_inputs`` inputs are the very rows run (a
        core-API ``call_model_function``'s batch), so a plain value with one
        row per input lines up and is allowed.
        """
        if feed_dict is None:
            feed_dict = {}
        if not isinstance(feed_dict, Mapping):
            raise TypeError(f"feed_dict: expected a dict or None, got {describe(feed_dict)}")
        constant: dict[Any, Any] = {}
        per_input: dict[Any, np.ndarray] = {}
        with self.graph.as_default():
            for key, value in feed_dict.items():
                tensor = self.resolve_key(key)
                what = f"feed_dict[{tensor.name!r}]"
                if tensor.name in self.layout.names:
                    raise ValueError(
                        f"feed_dict: must not feed x ({tensor.name!r}); pass the input as x_value"
                    )
                if isinstance(value, PerExample):
                    if not per_example:
                        raise TypeError(f"{what}: PerExample values are not supported here")
                    if len(value) != n_inputs:
                        raise ValueError(
                            f"{what}: PerExample has {len(value)} entries, expected one per "
                            f"input ({n_inputs})"
                        )
                    if tensor.shape.rank == 0:
                        raise ValueError(
                            f"{what}: a PerExample value needs a tensor with a batch dimension, "
                            f"{tensor.name!r} has shape ()"
                        )
                    check_feed_value(tensor, value.values[:1], what)
                    per_input[tensor] = value.values
                    continue
                check_feed_value(tensor, value, what)
                if not rows_as_given:
                    _check_not_per_input(tensor, value, n_inputs, what)
                constant[tensor] = value
            fed = {t.name for t in constant} | {t.name for t in per_input}
            missing = [t.name for t in self.required if t.name not in fed]
        if missing:
            raise ValueError(
                f"feed_dict: missing a value for placeholder(s) {missing} that the explained "
                "tensors depend on"
            )
        return Feed(constant, per_input)

    # -- running -------------------------------------------------------------

    def run(
        self, rows: np.ndarray, keys: Sequence[str], feed: Feed | None = None,
        sources: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """``{key: array}`` for the rows, in as few ``session.run`` calls as the shapes allow.

        ``sources[r]`` is the input row ``r`` derives from (selects
        :class:`PerExample` entries); ``None``: all rows derive from input 0.
        """
        if feed is None:
            feed = self.prepare_feed(None, 1)
        rows = np.asarray(rows, dtype=self.input_dtype)
        n = len(rows)
        if sources is None:
            sources = np.zeros(n, dtype=np.int64)
        step = self.rows_per_run or max(n, 1)
        parts: list[dict[str, np.ndarray]] = []
        for start in range(0, n, step):
            chunk = rows[start : start + step]
            chunk_sources = sources[start : start + step]
            real = len(chunk)
            if self.pad_to is not None and real < self.pad_to:
                pad = self.pad_to - real
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
                chunk_sources = np.concatenate([chunk_sources, np.repeat(chunk_sources[-1:], pad)])
            out = self._run_once(chunk, keys, feed, chunk_sources)
            parts.append({k: v[:real] for k, v in out.items()})
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    def _run_once(self, chunk: np.ndarray, keys: Sequence[str], feed: Feed,
                  sources: np.ndarray) -> dict[str, np.ndarray]:
        run_feed = feed.for_rows(sources)
        run_feed.update(self.layout.feeds(chunk))
        # y is fetched on every run (the forward pass computes it anyway) to check
        # that it gives one value per row fed.
        wanted = list(keys)
        if self.y_key is not None and self.y_key not in wanted:
            wanted.append(self.y_key)
        with self.graph.as_default():
            values = self.session.run([self.fetches[k] for k in wanted], feed_dict=run_feed)
        out = {}
        for key, value in zip(wanted, values):
            value = np.asarray(value)
            if key == self.y_key:
                if value.size != len(chunk):
                    raise ValueError(
                        f"y: expected one value per row fed ({len(chunk)} rows), the run "
                        f"returned {value.size} values (shape {value.shape}); y must select one "
                        "output per example of x, e.g. logits[:, k]"
                    )
                value = value.reshape(len(chunk))  # () for a scalar y, one row per run
            out[key] = value
        return {k: out[k] for k in keys}


    def run_ops(self, fetches: Sequence[Any], values: Mapping[Any, Any]) -> list[Any]:
        """One auxiliary ``session.run`` that explains nothing (e.g. storing a
        call's input in the session for its runs, or freeing it)."""
        with self.graph.as_default():
            return self.session.run(list(fetches), feed_dict=dict(values))

    def run_built(self, fetches: Sequence[Any], values: Mapping[Any, Any], feed: Feed,
                  sources: np.ndarray, y: Any) -> list[np.ndarray]:
        """One ``session.run`` of ops that build their rows in the graph.

        ``values`` feeds the builder's own placeholders (an input, a seed,
        path nodes, window offsets: never the rows themselves); ``feed`` is the
        caller's checked ``feed_dict`` (row ``r`` derives from input
        ``sources[r]``); ``y`` is the explained output of the rows built,
        fetched too and checked to give one value per row. Returns the values
        of ``fetches`` and then ``y``'s, ``[rows]``.
        """
        run_feed = feed.for_rows(sources)
        run_feed.update(values)
        with self.graph.as_default():
            out = self.session.run([*fetches, y], feed_dict=run_feed)
        y_value = np.asarray(out[-1])
        if y_value.size != len(sources):
            raise ValueError(
                f"y: expected one value per row built ({len(sources)} rows), the run returned "
                f"{y_value.size} values (shape {y_value.shape}); y must select one output per "
                "example of x, e.g. logits[:, k]"
            )
        return [*out[:-1], y_value.reshape(len(sources))]


class FixedRun:
    """Runs a fixed list of fetches for values of a fixed list of feed tensors.

    Made once (e.g. in a method's constructor) for auxiliary graph work such
    as Blur IG's blurs: a session callable (``session.make_callable``, less
    overhead per call than ``session.run``), or ``session.run`` for a session
    wrapper without ``make_callable``.
    """

    def __init__(self, session: Any, fetches: Sequence[Any], feeds: Sequence[Any]) -> None:
        self.session, self.fetches, self.feeds = session, list(fetches), list(feeds)
        make_callable = getattr(session, "make_callable", None)
        self._callable = (make_callable(self.fetches, self.feeds)
                          if callable(make_callable) else None)

    def __call__(self, *values: Any) -> list[Any]:
        if self._callable is not None:
            return self._callable(*values)
        return self.session.run(self.fetches, feed_dict=dict(zip(self.feeds, values)))
