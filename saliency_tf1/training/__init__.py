"""Saliency during training: a ``SessionRunHook`` that traces masks of fixed samples.

Importing this package imports TensorFlow (the hook subclasses its ``SessionRunHook``).
"""

from .hook import HookedSession, SaliencyHook, TriggerRecord

__all__ = ["HookedSession", "SaliencyHook", "TriggerRecord"]
