"""Argument checks shared by every public call: each names the argument, the expected
and the actual value, and raises ``TypeError`` (wrong kind) or ``ValueError`` (wrong value).

They run once per public call, before any work, so a kernel receives only
values it can use.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


def describe(value: Any) -> str:
    """A short description of a value for error messages: its type and shape."""
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {shape}" if shape is not None else "")


def check_positive_int(name: str, value: Any) -> int:
    """Returns ``value`` as an int, or raises naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer (>= 1), got {value}")
    return int(value)


def check_finite_number(name: str, value: Any, *, minimum: float | None = None) -> float:
    """Returns ``value`` as a float, or raises naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name}: expected a finite number{bound}, got {value}")
    return value


def check_unit_interval(name: str, value: Any) -> float:
    """Returns ``value`` as a float in ``[0, 1]``, or raises naming the argument."""
    value = check_finite_number(name, value, minimum=0.0)
    if value > 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
    return value


def check_seed(name: str, seed: Any) -> int | np.random.Generator | None:
    """A seed: ``None``, a non-negative int or a ``np.random.Generator``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name}: expected None, a non-negative int or a numpy.random.Generator, "
            f"got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"{name}: expected a non-negative int, got {seed}")
    return int(seed)


def check_no_extra(method: str, kwargs: dict[str, Any], hint: str = "") -> None:
    """Raises TypeError naming arguments a method does not take."""
    if kwargs:
        raise TypeError(f"{method}: unexpected arguments {sorted(kwargs)}" + hint)


def check_array(
    name: str, value: Any, shape: Sequence[int | None] | None, *, batched: bool
) -> np.ndarray:
    """Validates a numeric array against a per-example ``shape`` (``None`` = any size).

    Returns it as an ndarray without copying where possible; never modifies it.
    Boolean arrays are read as 0/1 (as uint8). Raises TypeError for
    non-numeric dtypes and ValueError for wrong rank, shape, an empty batch or
    non-finite values, naming the argument, the expected and the actual value.
    """
    try:
        arr = np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(
            f"{name}: expected a numeric array, got {type(value).__name__}: {err}"
        ) from None
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name}: expected a real numeric array (float, int, uint or bool), got dtype "
            f"{arr.dtype}"
        )
    if shape is not None:
        expected = ((None,) if batched else ()) + tuple(shape)
        text = "[" + ", ".join("N" if i == 0 and batched else ("?" if d is None else str(d))
                               for i, d in enumerate(expected)) + "]"
        ok = arr.ndim == len(expected) and all(
            d is None or d == a for d, a in zip(expected, arr.shape)
        )
        if not ok:
            what = "a batch of inputs" if batched else "one input (not batched)"
            raise ValueError(f"{name}: expected {what} of shape {text}, got shape {arr.shape}")
    if batched and (arr.ndim == 0 or arr.shape[0] == 0):
        raise ValueError(f"{name}: expected a non-empty batch, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf values")
    return arr


def check_baselines(x_baseline: Any, inputs: np.ndarray, *, per_input: bool = True) -> np.ndarray:
    """Validates the baseline(s) of a stack of inputs ``[N, ...]``.

    Args:
      x_baseline: ``None`` (zeros), one baseline of an input's shape, or, when
        ``per_input``, one per input (shape ``inputs.shape``).
      inputs: the validated inputs.
      per_input: whether a stack of baselines is allowed.

    Returns:
      An array ``[1 or N, ...]`` (``[1, ...]`` when one baseline serves all
      inputs), possibly a view of the caller's array: read it, never write it.
    """
    one = inputs.shape[1:]
    if x_baseline is None:
        return np.zeros((1, *one), dtype=np.result_type(inputs.dtype, np.float32))
    base = check_array("x_baseline", x_baseline, None, batched=False)
    if base.shape == one:
        return base[None]
    if per_input and base.shape == inputs.shape:
        return base
    expected = f"{one}" + (f" (one for all inputs) or {inputs.shape} (one per input)"
                           if per_input and len(inputs) > 1 else " (the input's shape)")
    raise ValueError(f"x_baseline: expected shape {expected}, got shape {base.shape}")
