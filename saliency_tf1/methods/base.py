"""The method base class: check once per public call, then compute; SmoothGrad once for all.

A method subclasses :class:`TF1Saliency` and writes two things:

* ``_check_args(xs, call, **kwargs) -> (args, rows_per_input)``: validates its
  own arguments for a public call on the inputs ``xs`` (``[N, ...]``, already
  checked) and says how many model rows one input becomes (path points,
  windows, ...). Every error is raised here, before any ``session.run``.
* ``_masks(inputs, sources, feed, batch_size, **args)``: the kernel. It turns
  a stack of inputs into a stack of masks, asking ``self.backend`` for model
  quantities in chunks of at most ``batch_size`` rows; it only computes.

The public ``GetMask``, ``GetMaskBatch`` and ``GetSmoothedMask`` are written
here once, for every method and every backend.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.backend import INPUT_OUTPUT_GRADIENTS, Backend, TF1Backend
from ..engine.batching import chunk_bounds
from ..engine.checks import (
    check_array,
    check_finite_number,
    check_no_extra,
    check_positive_int,
    check_seed,
)
from ..engine.noise import noise_dtype, noise_key, noisy_copies
from .ingraph import build_batches, on_accelerator

#: The public calls a plan is made for (``call`` of :meth:`TF1Saliency._check_args`).
CALLS = ("GetMask", "GetMaskBatch", "GetSmoothedMask", "GetMaskWithDetails")

#: ``GetSmoothedMask``'s own arguments, on top of the method's.
SMOOTHING_ARGS = ("stdev_spread", "nsamples", "magnitude", "seed", "statistic")

#: What ``GetSmoothedMask`` computes over the noisy masks ``m_k`` (``statistic=``).
STATISTICS = ("mean", "square", "variance")


def check_smoothing(stdev_spread: Any = 0.15, nsamples: Any = 25, magnitude: Any = True,
                    seed: Any = None, statistic: Any = None
                    ) -> tuple[float, int, str, Any]:
    """Checks ``GetSmoothedMask``'s own arguments; returns ``(stdev_spread, nsamples,
    statistic, seed)`` with ``statistic=None`` resolved from ``magnitude`` as PAIR does."""
    if statistic is None:
        statistic = "square" if magnitude else "mean"
    elif not isinstance(statistic, str) or statistic not in STATISTICS:
        raise ValueError(f"statistic: expected None or one of {list(STATISTICS)}, got "
                         f"{statistic!r}")
    return (check_finite_number("stdev_spread", stdev_spread, minimum=0.0),
            check_positive_int("nsamples", nsamples), statistic, check_seed("seed", seed))


class RunningMoments:
    """Mean and variance of a stream of mask chunks in one pass (Chan et al.'s update).

    ``add(masks)`` takes a chunk ``[k, ...]``; float64 accumulation.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None  # sum of squared deviations from the mean

    def add(self, masks: np.ndarray) -> None:
        chunk_mean = masks.mean(axis=0, dtype=np.float64)
        self.add_moments(len(masks), chunk_mean,
                         np.square(masks - chunk_mean, dtype=np.float64).sum(axis=0))

    def add_moments(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Adds a chunk given by its size, mean and sum of squared deviations."""
        mean = np.asarray(mean, np.float64)
        m2 = np.asarray(m2, np.float64)
        if self.mean is None:
            self.count, self.mean, self.m2 = count, mean, m2
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.count * count / total)
        self.count = total

    @property
    def variance(self) -> np.ndarray:
        """The population variance ``mean_k (m_k - mean)^2``."""
        return self.m2 / self.count


@dataclass(frozen=True)
class Plan:
    """What one public call will do, decided by the checks before any work.

    Attributes:
      batch_size: most model rows per ``session.run``.
      rows_per_input: model rows one input becomes (SmoothGrad fits
        ``batch_size // rows_per_input`` noisy copies into a batch).
      args: the method's validated arguments, passed to its kernel.
    """

    batch_size: int
    rows_per_input: int = 1
    args: dict[str, Any] = field(default_factory=dict)


class TF1Saliency:
    """Base class of the TF1 saliency methods (PAIR ``saliency.tf1`` compatible).

    The constructor builds every op the method needs (through a
    :class:`~saliency_tf1.engine.backend.TF1Backend`); the public methods only
    feed numpy values through them. Where a method declares
    :attr:`in_graph_builders` (SmoothGrad of the gradient, IG, XRAI,
    Occlusion), the constructor also builds the ops that make its many rows
    from one input next to the model (:mod:`saliency_tf1.methods.ingraph`);
    the instance attribute ``in_graph`` (on by default where the session has
    a GPU) chooses between them and rows built in NumPy and fed.

    Args:
      graph: the ``tf.Graph`` of the model.
      session: a ``tf.compat.v1.Session`` on ``graph`` (or a wrapper of one).
      y: the explained output, shape ``[None]`` (one value per example) or
        ``()``; e.g. ``logits[:, k]`` or :class:`saliency_tf1.ClassTarget`'s ``y``.
      x: the input tensor, outer dimension the batch.
      backend: instead of ``graph, session, y, x``: any
        :class:`~saliency_tf1.engine.backend.Backend` (e.g. a core-API one);
        see :meth:`from_backend`.
    """

    #: Rows per ``session.run`` when the caller does not say. It decides only
    #: how the work is run, never what it computes.
    default_batch_size: int = 32

    #: The backend keys (model quantities) the method asks for: what a core-API
    #: ``call_model_function`` must return for it.
    backend_keys: tuple[str, ...] = (INPUT_OUTPUT_GRADIENTS,)

    #: True where the method's gradients exist only as ops in a TF1 graph
    #: (guided/deconvnet gating), so no other backend can serve them.
    graph_only: bool = False

    #: True where the method needs only forward values (``OUTPUT_LAYER_VALUES``):
    #: it builds no gradient ops and ``y`` need not be differentiable.
    forward_only: bool = False

    #: True where the method explains several input tensors jointly (``x`` a
    #: list): it works on rows that pack every input's values into one vector
    #: (never with :attr:`graph_only`).
    multi_input: bool = False

    #: The batches this method builds in the graph on a TF1 session
    #: (:mod:`saliency_tf1.methods.ingraph`): ``(kind, options)`` pairs, built
    #: in the constructor. Empty: every row is built on the host and fed.
    in_graph_builders: tuple[tuple[str, dict[str, Any]], ...] = ()

    def __init__(self, graph: Any = None, session: Any = None, y: Any = None, x: Any = None,
                 *, backend: Backend | None = None) -> None:
        self.graph, self.session, self.y, self.x = graph, session, y, x
        # (The graph copy of gated methods follows one input.)
        if isinstance(x, (list, tuple)) and (not self.multi_input or self.graph_only):
            raise TypeError(
                f"x: {type(self).__name__} explains one input tensor, got a {type(x).__name__} "
                f"of {len(x)}; the gradient, Integrated Gradients, Guided IG and Occlusion (and "
                "SmoothGrad over them) take several inputs jointly"
            )
        if backend is None:
            backend = self._make_backend(graph, session, y, x)
        else:
            if any(v is not None for v in (graph, session, y, x)):
                raise TypeError(f"{type(self).__name__}: pass either (graph, session, y, x) "
                                "or backend=, not both")
            if not isinstance(backend, Backend):
                raise TypeError(f"backend: expected a saliency_tf1 Backend, got "
                                f"{type(backend).__name__}")
            if self.graph_only:
                if not isinstance(backend, TF1Backend):
                    raise TypeError(
                        f"{type(self).__name__}: its gated gradients exist only in a TF1 graph; "
                        "build it with (graph, session, y, x) and wrap it in "
                        "saliency_tf1.compat.core.CoreAdapter for the core API"
                    )
                # Its gradients are its own ops: build them on the backend's model.
                backend = self._make_backend(backend.graph, backend.session, backend.y,
                                             backend.x)
        self.backend: Backend = backend
        #: Why a declared builder is missing (``{kind: reason}``), e.g. a
        #: TF1 while loop on the path, or a core-API backend.
        self.in_graph_unavailable: dict[str, str] = {}
        self._builders: dict[str, Any] = {}
        for kind, options in self.in_graph_builders:
            builder, why = build_batches(backend, kind, **options)
            if builder is None:
                self.in_graph_unavailable[kind] = why
            else:
                self._builders[kind] = builder
        #: Build rows in the graph where a builder exists: on by default when
        #: the session has a GPU (or another accelerator), off on a CPU-only
        #: session, where NumPy builds them faster; set it either way per
        #: instance (``False``: every row built in NumPy and fed).
        self.in_graph: bool = bool(self._builders) and on_accelerator(
            getattr(backend, "session", None))

    def _builder(self, kind: str) -> Any:
        """The in-graph builder ``kind`` if it exists and :attr:`in_graph` is on, else None."""
        return self._builders.get(kind) if self.in_graph else None

    def _make_backend(self, graph: Any, session: Any, y: Any, x: Any) -> Backend:
        return TF1Backend(graph, session, y, x)

    @classmethod
    def from_backend(cls, backend: Backend) -> TF1Saliency:
        """The method over any :class:`~saliency_tf1.engine.backend.Backend`.

        Same as ``cls(backend=backend)``: ``graph``/``session``/``y``/``x``
        are ``None`` on such an instance. Raises TypeError for a
        :attr:`graph_only` method over a backend other than a TF1Backend.
        """
        return cls(backend=backend)

    # -- to be written by each method ------------------------------------------

    def _check_args(self, xs: np.ndarray, call: str, **kwargs: Any
                    ) -> tuple[dict[str, Any], int]:
        """Validates the method's arguments for ``call`` on inputs ``xs``.

        Returns ``(args for the kernel, model rows per input)``. The default:
        the method takes no arguments, one row per input.
        """
        check_no_extra(f"{type(self).__name__}.{call}", kwargs)
        return {}, 1

    def _masks(self, inputs: np.ndarray, sources: np.ndarray, feed: Any, batch_size: int,
               **args: Any) -> Any:
        """One mask per input (shape ``inputs.shape`` unless the method says otherwise).

        ``sources[i]`` is the index of the public call's input that
        ``inputs[i]`` derives from (pass it on to ``backend.evaluate``). A
        method may return a tuple whose first element is the masks and whose
        other elements hold one value per input (e.g. IG's errors).
        """
        raise NotImplementedError

    # -- shared helpers ----------------------------------------------------------

    def plan(self, inputs: Any, call: str = "GetMask", *, batch_size: int | None = None,
             **kwargs: Any) -> Plan:
        """Checks a public call's arguments on ``inputs`` without running anything.

        ``inputs`` is one input (a batch for ``call="GetMaskBatch"``);
        ``kwargs`` are the call's arguments (for ``GetSmoothedMask`` its own
        ``stdev_spread``/``nsamples``/``magnitude``/``seed`` too). Raises as
        the call would; returns the :class:`Plan` the call would follow.
        """
        if call not in CALLS:
            raise ValueError(f"call: expected one of {list(CALLS)}, got {call!r}")
        batched = call == "GetMaskBatch"
        xs = self._check_inputs(inputs, "x_batch" if batched else "x_value", batched=batched)
        if call == "GetSmoothedMask":
            check_smoothing(**{k: kwargs.pop(k) for k in SMOOTHING_ARGS if k in kwargs})
        return self._plan(xs if batched else xs[None], call, batch_size, kwargs)

    def _plan(self, xs: np.ndarray, call: str, batch_size: Any, kwargs: dict[str, Any]
              ) -> Plan:
        batch_size = (self.default_batch_size if batch_size is None
                      else check_positive_int("batch_size", batch_size))
        args, rows = self._check_args(xs, call, **kwargs)
        return Plan(batch_size, rows, args)

    @property
    def _layout(self) -> Any:
        """The backend's input layout when the model has several inputs, else ``None``."""
        layout = getattr(self.backend, "layout", None)
        return layout if layout is not None and layout.multi else None

    def _check_inputs(self, value: Any, name: str, batched: bool) -> np.ndarray:
        """The caller's input(s), checked; several inputs packed into one row each."""
        layout = self._layout
        if layout is not None:
            return layout.pack(value, name, batched=batched)
        return check_array(name, value, self.backend.input_shape, batched=batched)

    def _unpack(self, masks: np.ndarray, *, batched: bool) -> Any:
        """Masks in the caller's form: as computed, or one array per input of a list ``x``."""
        layout = self._layout
        return masks if layout is None else layout.unpack(masks, batched=batched)

    def _packed(self, value: Any, name: str, *, per_input: bool) -> Any:
        """An input-shaped argument (a baseline) in the kernels' form.

        With several inputs: a list of one array per input, each an input's
        shape (one for all) or, when ``per_input``, ``[N, ...]`` (one each).
        """
        layout = self._layout
        if value is None or layout is None:
            return value
        batched = per_input and isinstance(value, (list, tuple)) and len(value) == len(
            layout.parts) and all(np.ndim(v) == len(p.shape) + 1
                                  for v, p in zip(value, layout.parts))
        return layout.pack(value, name, batched=batched)

    def _evaluate(
        self,
        rows: np.ndarray,
        key: str,
        feed: Any,
        sources: np.ndarray,
        batch_size: int,
    ) -> np.ndarray:
        """``backend.evaluate`` of one key over any number of rows, in chunks."""
        parts = [
            self.backend.evaluate(rows[a:b], [key], feed, sources[a:b])[key]
            for a, b in chunk_bounds(len(rows), batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _explain(self, xs: np.ndarray, feed_dict: Any, call: str, batch_size: Any,
                 kwargs: dict[str, Any]) -> Any:
        """Checks everything for a call on the inputs ``xs``, then runs the kernel."""
        plan = self._plan(xs, call, batch_size, kwargs)
        feed = self.backend.prepare_feed(feed_dict, len(xs))
        return self._masks(xs, np.arange(len(xs)), feed, plan.batch_size, **plan.args)

    # -- public API ----------------------------------------------------------------

    def GetMask(self, x_value: Any, feed_dict: dict | None = None, *,
                batch_size: int | None = None, **kwargs: Any) -> Any:
        """Returns the method's mask for one input (not batched), shape ``x_value.shape``.

        Args:
          x_value: one input, the shape of ``x`` without its batch dimension.
          feed_dict: values for the graph's other placeholders (tensor or
            tensor-name keys); never modified.
          batch_size: most model rows per ``session.run``.
          **kwargs: the method's own arguments.
        """
        x = self._check_inputs(x_value, "x_value", batched=False)
        out = self._explain(x[None], feed_dict, "GetMask", batch_size, kwargs)
        if isinstance(out, tuple):
            return (self._unpack(out[0][0], batched=False), *(part[0] for part in out[1:]))
        return self._unpack(out[0], batched=False)

    def GetMaskBatch(self, x_batch: Any, feed_dict: dict | None = None, *,
                     batch_size: int | None = None, **kwargs: Any) -> Any:
        """Returns one mask per input of ``x_batch`` (shape ``[N, ...]``), computed in batches.

        Equals stacking ``GetMask`` of each input. A :class:`PerExample`
        value in ``feed_dict`` gives each input its own value (e.g. its class).
        """
        xs = self._check_inputs(x_batch, "x_batch", batched=True)
        out = self._explain(xs, feed_dict, "GetMaskBatch", batch_size, kwargs)
        if isinstance(out, tuple):
            return (self._unpack(out[0], batched=True), *out[1:])
        return self._unpack(out, batched=True)

    def GetSmoothedMask(
        self,
        x_value: Any,
        feed_dict: dict | None = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        *,
        seed: int | np.random.Generator | None = None,
        statistic: str | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns a statistic of any method's mask over noisy copies of the input (SmoothGrad).

        With ``m_k = m(x + e_k)``, ``e_k ~ N(0, sigma^2)``: ``"mean"``, ``mean_k
        m_k`` (SmoothGrad: Smilkov et al., "SmoothGrad: removing noise by adding
        noise", 2017, arXiv:1706.03825); ``"square"``, ``mean_k m_k**2``
        (SmoothGrad-Squared / SquareGrad: Hooker et al., "A Benchmark for
        Interpretability Methods in Deep Neural Networks", NeurIPS 2019);
        ``"variance"``, ``mean_k (m_k - mean_j m_j)**2`` (VarGrad: Adebayo et
        al., "Sanity Checks for Saliency Maps", NeurIPS 2018). All are computed
        in one pass over the batches.

        Args:
          x_value: one input, not batched.
          feed_dict: values for the graph's other placeholders.
          stdev_spread: ``sigma`` as a fraction of ``max(x_value) - min(x_value)``.
          nsamples: number of noisy copies.
          magnitude: PAIR's switch, used when ``statistic`` is ``None``:
            ``True`` is ``"square"``, ``False`` is ``"mean"``.
          seed: an int or ``np.random.Generator`` for the noise: the same seed
            gives the same mask whatever ``batch_size``, and the noise is drawn
            in the input's float precision (float32 for float32/uint8 inputs)
            by :mod:`saliency_tf1.engine.noise`, the fast path (a Generator
            gives one draw for the call's key, so the next call differs).
            ``None`` draws float64 noise from NumPy's global random state in
            exactly PAIR's order, so after ``np.random.seed(s)`` the mask equals
            PAIR's (slower: that generator is about twice as costly).
          statistic: ``None`` (by ``magnitude``), ``"mean"``, ``"square"`` or
            ``"variance"``.
          batch_size: most model rows per ``session.run``.
          **kwargs: the method's own ``GetMask`` arguments.
        """
        x = self._check_inputs(x_value, "x_value", batched=False)
        stdev_spread, nsamples, statistic, seed = check_smoothing(
            stdev_spread, nsamples, magnitude, seed, statistic)
        plan = self._plan(x[None], "GetSmoothedMask", batch_size, kwargs)
        feed = self.backend.prepare_feed(feed_dict, 1)
        key = None if seed is None else noise_key(seed)

        layout = self._layout
        # Each input's noise has its own scale (its own max - min).
        stdev = stdev_spread * (float(np.max(x) - np.min(x)) if layout is None
                                else layout.scales(x))
        per_chunk = max(1, plan.batch_size // plan.rows_per_input)
        moments = RunningMoments() if statistic == "variance" else None
        noise = self._builder("noise")
        if key is not None and noise is not None and not plan.args:
            total = noise.statistic(x, stdev, key, nsamples, per_chunk, statistic, feed,
                                    moments)
            if total is not None:
                total = total.astype(np.result_type(x.dtype, np.float32))
        else:
            total = self._smoothed_on_host(x, stdev, key, nsamples, per_chunk, statistic, plan,
                                           feed, moments)
        if moments is not None:
            result = moments.variance.astype(np.result_type(x.dtype, np.float32), copy=False)
        else:
            result = total / nsamples
        return self._unpack(result, batched=False)

    def _smoothed_on_host(self, x: np.ndarray, stdev: Any, key: int | None, nsamples: int,
                          per_chunk: int, statistic: str, plan: Plan, feed: Any,
                          moments: RunningMoments | None) -> np.ndarray | None:
        """``GetSmoothedMask``'s loop with the noisy copies built in NumPy and fed.

        Seeded noise for the next chunk is drawn (in a worker thread, into the
        other of two buffers) while the model runs this one. Returns the sum
        of the masks or of their squares (``None`` for the variance, which
        goes to ``moments``).
        """
        chunks = list(chunk_bounds(nsamples, per_chunk))
        layout = self._layout
        total = None

        def draw(n: int, out: np.ndarray | None) -> np.ndarray:
            start, stop = chunks[n]
            if layout is None:
                if out is None:
                    return noisy_copies(x, stdev, start, stop - start, key)
                return noisy_copies(x, stdev, start, stop - start, key, out=out[: stop - start])
            # a scale per value: unit noise, scaled
            unit = noisy_copies(np.zeros_like(x), 1.0, start, stop - start, key)
            return x + stdev * unit

        prefetch = key is not None and layout is None and len(chunks) > 1
        buffers = ([np.empty((per_chunk, *x.shape), noise_dtype(x.dtype)) for _ in range(2)]
                   if prefetch else [None, None])
        with ThreadPoolExecutor(max_workers=1) as drawer:
            # PAIR's stream (key=None) is drawn in order in this thread.
            pending = drawer.submit(draw, 0, buffers[0]) if prefetch else None
            for n, (start, stop) in enumerate(chunks):
                if prefetch:
                    noisy = pending.result()
                    if n + 1 < len(chunks):
                        pending = drawer.submit(draw, n + 1, buffers[(n + 1) % 2])
                else:
                    noisy = draw(n, None)
                masks = self._masks(noisy, np.zeros(stop - start, np.int64), feed,
                                    plan.batch_size, **plan.args)
                if moments is not None:
                    moments.add(masks)
                    continue
                acc = np.result_type(masks.dtype, x.dtype, np.float32)
                square = statistic == "square"
                part = np.sum(np.square(masks, dtype=acc) if square else masks, axis=0,
                              dtype=acc)
                total = part if total is None else total + part
        return total
