"""Models from elsewhere: loaders for every artifact kind, and the guard for untrusted ones."""

from .guard import (
    ALLOWED_OPS,
    UNSAFE_OPS,
    Finding,
    UnsafeGraphError,
    check_graph,
    check_run,
    explain_unsafe_ops,
    find_unsafe_ops,
    find_unsafe_run,
)
from .loaders import (
    LoadedModel,
    load_checkpoint,
    load_frozen_graph,
    load_keras_model,
    load_model,
    load_saved_model,
)

__all__ = [
    "ALLOWED_OPS",
    "UNSAFE_OPS",
    "Finding",
    "LoadedModel",
    "UnsafeGraphError",
    "check_graph",
    "check_run",
    "explain_unsafe_ops",
    "find_unsafe_ops",
    "find_unsafe_run",
    "load_checkpoint",
    "load_frozen_graph",
    "load_keras_model",
    "load_model",
    "load_saved_model",
]
