"""Models from elsewhere: loaders for every artifact kind, and the guard for untrusted ones."""

from .guard import UNSAFE_OPS, UnsafeGraphError, check_graph, find_unsafe_ops
from .loaders import (
    LoadedModel,
    load_checkpoint,
    load_frozen_graph,
    load_keras_model,
    load_model,
    load_saved_model,
)

__all__ = [
    "UNSAFE_OPS",
    "LoadedModel",
    "UnsafeGraphError",
    "check_graph",
    "find_unsafe_ops",
    "load_checkpoint",
    "load_frozen_graph",
    "load_keras_model",
    "load_model",
    "load_saved_model",
]
