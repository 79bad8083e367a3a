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
    KINDS,
    LoadedModel,
    load_checkpoint,
    load_frozen_graph,
    load_keras_model,
    load_model,
    load_module,
    load_saved_model,
)
from .model_session import ModelSession

__all__ = [
    "ALLOWED_OPS",
    "KINDS",
    "UNSAFE_OPS",
    "Finding",
    "LoadedModel",
    "ModelSession",
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
    "load_module",
    "load_saved_model",
]
