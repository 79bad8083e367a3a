"""A TF1 method object where a core-API method is expected."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .tf1 import TF1CallModelFunction


class CoreAdapter:
    """Wraps a TF1 method so it answers the core API's calls.

    Code written for core-API methods calls
    ``method.GetMask(x_value, call_model_function, call_model_args, ...)``.
    The adapter answers with the wrapped TF1 method's own graph and session
    (its ops, its batching), treating ``call_model_args`` as the
    ``feed_dict``: ``adapter.GetMask(x, f, args, *rest, **kw)`` is
    ``method.GetMask(x, args, *rest, **kw)``, and likewise
    ``GetSmoothedMask``, ``GetMaskBatch`` and any other ``Get*`` method the
    TF1 method has (XRAI's ``GetMaskWithDetails``). The core API's
    positional arguments after ``call_model_args`` are those of the TF1
    method after ``feed_dict``, so positional calls carry over.

    ``call_model_function`` is not called: the TF1 method computes the
    mask. One made by :func:`saliency_tf1.compat.core.create_tf1_call_model_function` is
    checked to be for the same graph, ``x`` and ``y``; any other callable is
    accepted as it is (the caller vouches it is the same model). An ``x``
    entry in ``call_model_args`` (PAIR's TF1 function writes one there) is
    ignored.

    This is how methods that need the graph itself, such as Guided
    Backprop (whose gradient override no ``call_model_function`` can give),
    join a pipeline written for core methods.

    Example::

        methods = {"ig": core.IntegratedGradients(),
                   "guided": core.CoreAdapter(GuidedBackprop(graph, sess, y, x))}
        masks = {name: m.GetMask(image, call_model_function, args) for name, m in methods.items()}
    """

    def __init__(self, method: Any) -> None:
        missing = [name for name in ("GetMask", "x", "y", "graph") if not hasattr(method, name)]
        if missing:
            raise TypeError(
                f"method: expected a TF1 saliency method object (with GetMask, graph, x, y), "
                f"got {type(method).__name__} without {missing}"
            )
        if method.graph is None:
            raise ValueError(
                "method: this method was built over a non-TF1 backend (from_backend); wrap a "
                "method constructed with (graph, session, y, x)"
            )
        self.method = method

    def __repr__(self) -> str:
        return f"CoreAdapter({type(self.method).__name__})"

    # -- translation ---------------------------------------------------------------

    def _check_function(self, call_model_function: Any) -> None:
        if call_model_function is None:
            return
        if not callable(call_model_function):
            raise TypeError(
                "call_model_function: expected a callable or None, got "
                f"{type(call_model_function).__name__}"
            )
        if isinstance(call_model_function, TF1CallModelFunction):
            theirs, ours = call_model_function, self.method
            if (theirs.graph is not ours.graph or theirs.x.name != ours.x.name
                    or theirs.y.name != ours.y.name):
                raise ValueError(
                    f"call_model_function: made for y={theirs.y.name!r}, x={theirs.x.name!r} "
                    f"of another model than the wrapped {type(ours).__name__}'s "
                    f"(y={ours.y.name!r}, x={ours.x.name!r})"
                )

    def _is_x(self, key: Any) -> bool:
        x = self.method.x
        if isinstance(key, str):
            return key in (x.name, x.op.name)
        return key is x or getattr(key, "name", None) == x.name

    def _feed(self, call_model_args: Any) -> Any:
        if isinstance(call_model_args, Mapping):
            return {k: v for k, v in call_model_args.items() if not self._is_x(k)}
        return call_model_args

    def _bind(self, name: str) -> Callable[..., Any]:
        target = getattr(self.method, name)

        def call(x_value: Any, call_model_function: Any = None, call_model_args: Any = None,
                 *args: Any, **kwargs: Any) -> Any:
            self._check_function(call_model_function)
            return target(x_value, self._feed(call_model_args), *args, **kwargs)

        call.__name__ = name
        call.__doc__ = (f"``{type(self.method).__name__}.{name}`` with ``call_model_args`` "
                        "as its feed_dict.")
        return call

    # -- the core API -----------------------------------------------------------------

    def GetMask(self, x_value: Any, call_model_function: Any = None,
                call_model_args: Any = None, *args: Any, **kwargs: Any) -> Any:
        """The wrapped method's ``GetMask(x_value, call_model_args, *args, **kwargs)``."""
        return self._bind("GetMask")(x_value, call_model_function, call_model_args,
                                     *args, **kwargs)

    def GetSmoothedMask(self, x_value: Any, call_model_function: Any = None,
                        call_model_args: Any = None, *args: Any, **kwargs: Any) -> Any:
        """The wrapped method's ``GetSmoothedMask(x_value, call_model_args, *args, **kwargs)``."""
        return self._bind("GetSmoothedMask")(x_value, call_model_function, call_model_args,
                                             *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Other Get* methods (GetMaskBatch, GetMaskWithDetails) by the same rule.
        if (name.startswith("Get") and "method" in self.__dict__
                and hasattr(self.method, name)):
            return self._bind(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def as_core_method(method: Any) -> CoreAdapter:
    """Returns ``method`` (a TF1 method object) usable wherever a core-API method is expected.

    See :class:`CoreAdapter`.
    """
    return CoreAdapter(method)
