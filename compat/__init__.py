"""Adapters between saliency_tf1 and the framework-agnostic core API.

* :mod:`saliency_tf1.compat.core`: PAIR ``saliency.core``-compatible classes
  (``GradientSaliency``, ``IntegratedGradients``, ...) that run this
  package's batched algorithms over any ``call_model_function``; the four key
  constants; :func:`create_tf1_call_model_function` (TF1 model -> core API);
  :class:`CoreAdapter` (a TF1 method object where a core method is expected).
* :class:`CallModelBackend`: the backend over a ``call_model_function``, for
  building any method with ``Cls.from_backend``.

Migrating from ``import saliency.core as saliency``::

    from saliency_tf1.compat import core as saliency
"""

from . import core
from .adapter import CoreAdapter, as_core_method
from .call_model import CallModelBackend, check_call_model_output
from .tf1 import TF1CallModelFunction, create_tf1_call_model_function

__all__ = [
    "CallModelBackend",
    "CoreAdapter",
    "TF1CallModelFunction",
    "as_core_method",
    "check_call_model_output",
    "core",
    "create_tf1_call_model_function",
]
