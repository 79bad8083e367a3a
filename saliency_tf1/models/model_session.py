"""The loaded model's session: one that keeps working when gradients rewrite the graph.

Differentiating a functional ``While``/``If`` (TF2 control flow) rewrites the
forward op in place: ``tf.gradients`` adds outputs to it for the
intermediates the backward pass needs. A session that has already run the
graph holds the old op, so the first run that needs the new outputs fails
(``Connecting to invalid output 4 of source node while``) and leaves the
session broken, forward pass included. With a loaded model the natural order
-- load, predict, then make a method -- does exactly that.

:class:`ModelSession` is what :class:`~saliency_tf1.models.LoadedModel` hands
out as ``model.session``: it runs like a ``tf.compat.v1.Session`` and, before
each run, checks whether an op the current session has already seen was
rewritten since (a functional control-flow op whose inputs or outputs
changed). If so it opens a fresh session on the same graph, copies every
variable's *current* value into it (read through a callable made while the
old session was consistent, so weights changed in the session since loading,
e.g. by a sanity check, are kept), runs the loader's own initialisation
(table initialisers), and closes the old one. The caller never sees it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..engine.graph import SCOPE

#: Ops that ``tf.gradients`` rewrites in place (adds outputs and inputs to).
REWRITTEN_OPS = frozenset({"If", "StatelessIf", "While", "StatelessWhile", "Case",
                           "StatelessCase"})

_VARIABLE_OPS = ("VarHandleOp", "VariableV2", "Variable")


class VariableCarry:
    """Reads and writes every initialised variable of a graph (ops made once, at load).

    ``snapshot`` is a session callable made on a session while the graph was
    consistent, so it still reads after the graph was rewritten.
    """

    def __init__(self, graph: Any, session: Any, variables: list[Any]) -> None:
        import tensorflow as tf
        from tensorflow.python.ops import gen_resource_variable_ops

        v1 = tf.compat.v1
        self.reads: list[Any] = []
        self.placeholders: list[Any] = []
        assigns = []
        with graph.as_default(), v1.name_scope(f"{SCOPE}/carry/"):
            for op in variables:
                if op.type == "VarHandleOp":
                    dtype = tf.as_dtype(op.get_attr("dtype"))
                    shape = tf.TensorShape(op.get_attr("shape"))
                    handle = op.outputs[0]
                    read = gen_resource_variable_ops.read_variable_op(handle, dtype)
                    value = v1.placeholder(dtype, shape)
                    assigns.append(gen_resource_variable_ops.assign_variable_op(handle, value))
                else:
                    ref = op.outputs[0]
                    read = tf.identity(ref)
                    value = v1.placeholder(ref.dtype.base_dtype, ref.shape)
                    assigns.append(v1.assign(ref, value, validate_shape=False).op)
                self.reads.append(read)
                self.placeholders.append(value)
            self.assign = tf.group(*assigns) if assigns else None
        self.snapshot: Callable[[], list[Any]] | None = None
        self.arm(session)

    def arm(self, session: Any) -> None:
        """Makes the snapshot callable on ``session`` (while the graph is consistent)."""
        self.snapshot = session.make_callable(self.reads) if self.reads else (lambda: [])

    def load(self, session: Any, values: list[Any]) -> None:
        if self.assign is not None:
            session.run(self.assign, dict(zip(self.placeholders, values)))


def initialised_variables(graph: Any, session: Any) -> tuple[list[Any], list[Any]]:
    """(initialised, uninitialised) variable ops of ``graph``, as ``session`` holds them."""
    import tensorflow as tf

    v1 = tf.compat.v1
    ops = [op for op in graph.get_operations() if op.type in _VARIABLE_OPS
           and not op.name.startswith(SCOPE + "/")]
    if not ops:
        return [], []
    with graph.as_default(), v1.name_scope(f"{SCOPE}/carry/"):
        checks = []
        for op in ops:
            if op.type == "VarHandleOp":
                checks.append(tf.raw_ops.VarIsInitializedOp(resource=op.outputs[0]))
            else:
                checks.append(v1.is_variable_initialized(op.outputs[0]))
        flags = session.run(tf.stack(checks))
    return ([op for op, f in zip(ops, flags) if f], [op for op, f in zip(ops, flags) if not f])


class ModelSession:
    """A ``tf.compat.v1.Session`` on a loaded model's graph that survives in-place rewrites.

    Runs, makes callables, closes and enters ``as_default()`` like the session
    it wraps (the current one is :attr:`session`; other attributes are
    passed on to it). See the module docstring for what it does after a
    gradient rewrote an op the session had run.

    Args:
      graph: the model's graph.
      session: a session on it, holding the model's state.
      config: the ``ConfigProto`` for fresh sessions.
      initialize: runs the loader's own initialisation on a fresh session
        (table initialisers; the variables are copied separately).
      carry: the graph's variables (``None``: none to copy).
    """

    def __init__(self, graph: Any, session: Any, config: Any = None,
                 initialize: Callable[[Any], None] | None = None,
                 carry: VariableCarry | None = None) -> None:
        self._graph = graph
        self._session = session
        self._config = config
        self._initialize = initialize
        self._carry = carry
        self._lock = threading.RLock()
        self._watched: list[tuple[Any, int, int]] = []
        self._scanned = 0
        self._version = -1
        self._closed = False
        #: How many fresh sessions were made so far (for tests and curiosity).
        self.refreshes = 0
        self._record()

    # -- the wrapped session ------------------------------------------------------

    @property
    def graph(self) -> Any:
        return self._graph

    @property
    def session(self) -> Any:
        """The ``tf.compat.v1.Session`` currently behind this one."""
        return self._session

    @property
    def graph_def(self) -> Any:
        return self._graph.as_graph_def()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._session, name)

    def __repr__(self) -> str:
        return f"<ModelSession over {self._session!r}, {self.refreshes} refreshes>"

    # -- consistency ---------------------------------------------------------------

    def _record(self) -> None:
        """Remembers the rewritable ops the current session has now seen, as they are."""
        ops = self._graph.get_operations()
        self._watched = [(op, len(op.inputs), len(op.outputs)) for op, _, _ in self._watched]
        self._watched += [(op, len(op.inputs), len(op.outputs)) for op in ops[self._scanned:]
                          if op.type in REWRITTEN_OPS]
        self._scanned = len(ops)
        self._version = self._graph.version

    def _stale(self) -> bool:
        if self._graph.version == self._version:
            return False
        return any(len(op.inputs) != n_in or len(op.outputs) != n_out
                   for op, n_in, n_out in self._watched)

    def _ensure_fresh(self) -> None:
        if self._closed:
            return
        with self._lock:
            if self._stale():
                self._refresh()

    def _refresh(self) -> None:
        import tensorflow as tf

        values = self._carry.snapshot() if self._carry is not None else []
        fresh = tf.compat.v1.Session(graph=self._graph, config=self._config)
        try:
            if self._initialize is not None:
                self._initialize(fresh)
            if self._carry is not None:
                self._carry.load(fresh, values)
                self._carry.arm(fresh)
        except BaseException:
            fresh.close()
            raise
        old, self._session = self._session, fresh
        self.refreshes += 1
        self._scanned = 0
        self._watched = []
        self._record()
        old.close()

    # -- the session interface -------------------------------------------------------

    def run(self, fetches: Any, feed_dict: Any = None, options: Any = None,
            run_metadata: Any = None) -> Any:
        """``tf.compat.v1.Session.run`` on a session consistent with the graph."""
        self._ensure_fresh()
        result = self._session.run(fetches, feed_dict=feed_dict, options=options,
                                   run_metadata=run_metadata)
        if not self._closed and self._graph.version != self._version:
            with self._lock:
                self._record()
        return result

    def make_callable(self, fetches: Any, feed_list: Any = None,
                      accept_options: bool = False) -> Callable[..., Any]:
        """``tf.compat.v1.Session.make_callable``; the callable follows later refreshes."""
        owner = self

        class _Callable:
            def __init__(self) -> None:
                self.made_on: Any = None
                self.fn: Any = None

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                owner._ensure_fresh()
                if self.made_on is not owner._session:
                    self.fn = owner._session.make_callable(fetches, feed_list, accept_options)
                    self.made_on = owner._session
                    with owner._lock:
                        owner._record()
                return self.fn(*args, **kwargs)

        made = _Callable()
        self._ensure_fresh()
        made.fn = self._session.make_callable(fetches, feed_list, accept_options)
        made.made_on = self._session
        with self._lock:
            self._record()
        return made

    def close(self) -> None:
        self._closed = True
        self._session.close()

    @contextlib.contextmanager
    def as_default(self) -> Iterator[Any]:
        self._ensure_fresh()
        with self._session.as_default():
            yield self

    def __enter__(self) -> ModelSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
