"""The backend over a core-API ``call_model_function``: our algorithms on any framework.

A core-API model is a function::

    call_model_function(x_value_batch, call_model_args=None, expected_keys=None) -> dict

that returns, for a batch of inputs, the quantities named in ``expected_keys``
(the four keys of :mod:`saliency_tf1.backend`). :class:`CallModelBackend`
implements :class:`saliency_tf1.backend.Backend` on top of it, so every
method's kernel (written once against the backend) runs unchanged on a
PyTorch, JAX, TF2 or plain-NumPy model wrapped in such a function.

The function's answers are checked as the core API promises
(:func:`check_call_model_output`): a missing key, a value that is not a
numeric array or a wrong shape raises an error naming the key, the expected
and the actual shape.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from saliency_tf1.engine.backend import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    CORE_KEYS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
    Backend,
)
from saliency_tf1.engine.checks import check_array
from saliency_tf1.engine.session import PerExample

CallModelFunction = Callable[..., Mapping[str, Any]]

_CONV_KEYS = (CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS)


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_call_model_output(
    output: Any, batch_shape: Sequence[int], expected_keys: Iterable[str]
) -> dict[str, np.ndarray]:
    """Checks a ``call_model_function``'s answer for a batch and returns it as arrays.

    The core API's promises, for a batch ``x_value_batch`` of shape
    ``[n, ...]``:

    * ``INPUT_OUTPUT_GRADIENTS``: exactly ``x_value_batch``'s shape;
    * ``OUTPUT_LAYER_VALUES``: one value per row, ``[n]`` or ``[n, 1]``
      (returned as ``[n]``);
    * ``CONVOLUTION_LAYER_VALUES`` / ``CONVOLUTION_OUTPUT_GRADIENTS``:
      ``[n, h, w, c]``, both the same shape;
    * any other key: outer dimension ``n``.

    Args:
      output: what the function returned (a mapping keyed by the key strings).
      batch_shape: the shape of the batch it was given.
      expected_keys: the keys it was asked for.

    Returns:
      ``{key: np.ndarray}`` for the expected keys (extra keys are dropped).

    Raises:
      TypeError: ``output`` is not a mapping, or a value is not a real numeric array.
      ValueError: a key is missing or a value has the wrong shape.
    """
    keys = list(expected_keys)
    batch_shape = tuple(int(d) for d in batch_shape)
    n = batch_shape[0]
    if not isinstance(output, Mapping):
        raise TypeError(
            "call_model_function: expected a dict keyed by the expected_keys "
            f"{keys}, got {type(output).__name__}"
        )
    missing = [key for key in keys if key not in output]
    if missing:
        raise ValueError(
            f"call_model_function: missing key(s) {missing} in its output for "
            f"expected_keys={keys}; it returned keys {sorted(map(str, output))}"
        )
    checked: dict[str, np.ndarray] = {}
    for key in keys:
        value = output[key]
        try:
            arr = np.asarray(value)
        except Exception as err:  # ragged lists and the like
            raise TypeError(
                f"call_model_function: {key} must be a numeric array, got "
                f"{type(value).__name__} ({err})"
            ) from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(
                f"call_model_function: {key} must be a real numeric array, got "
                f"{type(value).__name__} of dtype {arr.dtype}"
            )
        if key == INPUT_OUTPUT_GRADIENTS:
            if arr.shape != batch_shape:
                raise ValueError(
                    f"call_model_function: {key} must have the shape of x_value_batch "
                    f"{_shape_text(batch_shape)}, got shape {_shape_text(arr.shape)}"
                )
        elif arr.ndim == 0 or arr.shape[0] != n:
            raise ValueError(
                f"call_model_function: {key} must have outer dimension {n} (the batch size "
                f"of x_value_batch {_shape_text(batch_shape)}), got shape "
                f"{_shape_text(arr.shape)}"
            )
        elif key == OUTPUT_LAYER_VALUES:
            if arr.shape not in ((n,), (n, 1)):
                raise ValueError(
                    f"call_model_function: {key} must hold one value per row, shape [{n}] "
                    f"or [{n}, 1], got shape {_shape_text(arr.shape)}; select the explained "
                    "output (e.g. one class's logit) inside the function"
                )
            arr = arr.reshape(n)
        elif key in _CONV_KEYS and arr.ndim != 4:
            raise ValueError(
                f"call_model_function: {key} must be a [batch, height, width, channels] "
                f"array with batch {n}, got shape {_shape_text(arr.shape)}"
            )
        checked[key] = arr
    if all(key in checked for key in _CONV_KEYS):
        values, grads = (checked[key].shape for key in _CONV_KEYS)
        if values != grads:
            raise ValueError(
                f"call_model_function: {CONVOLUTION_OUTPUT_GRADIENTS} must have the shape of "
                f"{CONVOLUTION_LAYER_VALUES} {_shape_text(values)}, got shape "
                f"{_shape_text(grads)}"
            )
    return checked


class CallModelBackend(Backend):
    """The :class:`~saliency_tf1.backend.Backend` over a core-API ``call_model_function``.

    Each :meth:`evaluate` is one call of the function on a batch of rows (the
    kernels already cut the work into batches of at most ``batch_size``), with
    ``expected_keys`` the keys asked for; the answer is checked with
    :func:`check_call_model_output`.

    Args:
      call_model_function: ``f(x_value_batch, call_model_args=None,
        expected_keys=None) -> dict`` (the core API's contract).
      call_model_args: passed to every call (the default when a call gives no
        other). It is never modified: a dict is copied for each call (PAIR's
        TF1 function writes ``x`` into it). Values that are
        :class:`~saliency_tf1.PerExample` give each row the entry of the input
        it derives from (e.g. one class per input in ``GetMaskBatch``).
      input_shape: the shape of one input (no batch dimension), used to check
        inputs; ``None`` accepts any shape. :meth:`for_input` takes it from an
        input.
      input_dtype: the float dtype rows are given to the function in
        (default float32).
      keys: the keys the function can return (default: the four core keys).

    Example::

        backend = CallModelBackend.for_input(image, call_model_function, {"class": 3})
        mask = IntegratedGradients.from_backend(backend).GetMask(image, x_steps=50)
    """

    def __init__(
        self,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        input_shape: Sequence[int | None] | None = None,
        input_dtype: Any = None,
        keys: Iterable[str] = CORE_KEYS,
    ) -> None:
        if not callable(call_model_function):
            raise TypeError(
                "call_model_function: expected a callable f(x_value_batch, call_model_args=None, "
                f"expected_keys=None), got {type(call_model_function).__name__}"
            )
        dtype = np.dtype(np.float32 if input_dtype is None else input_dtype)
        if dtype.kind != "f":
            raise TypeError(f"input_dtype: expected a floating-point dtype, got {dtype}")
        self.call_model_function = call_model_function
        self.call_model_args = call_model_args
        self.input_shape = None if input_shape is None else tuple(
            None if d is None else int(d) for d in input_shape)
        self.input_dtype = dtype
        self.keys = frozenset(keys)

    @classmethod
    def for_input(
        cls,
        x_value: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        batched: bool = False,
        **kwargs: Any,
    ) -> CallModelBackend:
        """A backend whose input shape and dtype are those of ``x_value``.

        ``x_value`` is one input (or, with ``batched=True``, a batch of
        inputs, ``[N, ...]``); the dtype is its float type (at least float32,
        so uint8 images are given as float32). The core-API classes of
        :mod:`saliency_tf1.compat.core` make one per call.
        """
        name = "x_batch" if batched else "x_value"
        x = check_array(name, x_value, None, batched=batched)
        shape = x.shape[1:] if batched else x.shape
        return cls(call_model_function, call_model_args, input_shape=shape,
                   input_dtype=np.result_type(x.dtype, np.float32), **kwargs)

    def prepare_feed(self, feed_dict: Any, n_inputs: int) -> Any:
        """The ``call_model_args`` of one public call (``None``: the constructor's).

        Checks that :class:`PerExample` values have one entry per input.
        """
        args = self.call_model_args if feed_dict is None else feed_dict
        if isinstance(args, Mapping):
            for key, value in args.items():
                if isinstance(value, PerExample) and len(value) != n_inputs:
                    raise ValueError(
                        f"call_model_args[{key!r}]: PerExample has {len(value)} entries, "
                        f"expected one per input ({n_inputs})"
                    )
        return args

    def _args_for(self, args: Any, sources: np.ndarray | None, n: int) -> Any:
        """A private copy of ``args`` for one call, PerExample values resolved per row."""
        if not isinstance(args, Mapping):
            return args
        if sources is None:
            sources = np.zeros(n, dtype=np.int64)
        call_args = copy.copy(args)
        for key, value in args.items():
            if isinstance(value, PerExample):
                call_args[key] = value.values[sources]
        return call_args

    def evaluate(
        self,
        rows: np.ndarray,
        keys: Sequence[str],
        feed: Any = None,
        sources: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """One call of the function on ``rows``; its checked answer for ``keys``."""
        keys = list(keys)
        unknown = [key for key in keys if key not in self.keys]
        if unknown:
            raise ValueError(
                f"keys: {unknown} not available from a call_model_function backend; "
                f"available: {sorted(self.keys)}"
            )
        # A fresh array: the function may keep or modify what it is given.
        batch = np.array(rows, dtype=self.input_dtype)
        if self.input_shape is not None and not (
            batch.ndim == len(self.input_shape) + 1
            and all(d is None or d == a for d, a in zip(self.input_shape, batch.shape[1:]))
        ):
            raise ValueError(
                f"rows: expected rows of shape [N, {_shape_text(self.input_shape)[1:-1]}], got "
                f"shape {_shape_text(batch.shape)}"
            )
        args = self.call_model_args if feed is None else feed
        output = self.call_model_function(
            batch,
            call_model_args=self._args_for(args, sources, len(batch)),
            expected_keys=list(keys),
        )
        return check_call_model_output(output, batch.shape, keys)
