"""The framework-agnostic core API (PAIR ``saliency.core`` compatible), run by our algorithms.

A model is given as a ``call_model_function(x_value_batch,
call_model_args=None, expected_keys=None) -> dict`` keyed by the four
constants below. Every class here has PAIR ``saliency.core`` 0.2.1's name and
``GetMask(x_value, call_model_function, call_model_args=None, ...)`` /
``GetSmoothedMask(...)`` signatures, and runs the *same* batched kernel as the
TF1 class of that name (``Cls.from_backend`` over a
:class:`~saliency_tf1.compat.call_model.CallModelBackend`): no algorithm lives here.
So a PyTorch, JAX, TF2 or NumPy model wrapped in a ``call_model_function``
gets the same methods, with the same numbers, as a TF1 graph.

Both directions work with PAIR's package: its ``saliency.core`` methods
accept the function :func:`create_tf1_call_model_function` returns, and these
classes accept a ``call_model_function`` written for PAIR's.

Differences from PAIR (how the work is run, not what it computes):

* ``batch_size`` defaults to the method's batch size, not 1: IG's 25 path
  points are one call of the function instead of 25;
* ``GetSmoothedMask`` stacks its noisy copies into shared batches too, and
  takes ``seed=`` (``seed=None`` draws PAIR's noise from NumPy's global state);
* the function's answers are checked (missing keys, non-arrays, wrong shapes
  raise errors naming the key and the shapes) and ``call_model_args`` is never
  modified;
* ``GetMaskBatch(x_batch, call_model_function, call_model_args=None, ...)``
  explains many inputs at once; a :class:`~saliency_tf1.PerExample` value in a
  dict ``call_model_args`` gives each input its own value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from saliency_tf1 import methods as tf1
from saliency_tf1.engine.backend import (
    CONVOLUTION_LAYER_VALUES,
    CONVOLUTION_OUTPUT_GRADIENTS,
    INPUT_OUTPUT_GRADIENTS,
    OUTPUT_LAYER_VALUES,
)

from .adapter import CoreAdapter, as_core_method
from .call_model import CallModelBackend, CallModelFunction, check_call_model_output
from .tf1 import TF1CallModelFunction, create_tf1_call_model_function

__all__ = [
    "CONVOLUTION_LAYER_VALUES",
    "CONVOLUTION_OUTPUT_GRADIENTS",
    "INPUT_OUTPUT_GRADIENTS",
    "OUTPUT_LAYER_VALUES",
    "BlurIG",
    "CallModelBackend",
    "CoreAdapter",
    "CoreSaliency",
    "GradCam",
    "GradCamPlusPlus",
    "GradientSaliency",
    "GuidedIG",
    "IntegratedGradients",
    "Occlusion",
    "TF1CallModelFunction",
    "XRAI",
    "as_core_method",
    "check_call_model_output",
    "create_tf1_call_model_function",
]


def __getattr__(name: str) -> Any:
    # XRAI's parameter and output classes, as PAIR's saliency.core exports them.
    if name in ("XRAIParameters", "XRAIOutput"):
        return getattr(tf1, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class CoreSaliency:
    """Base of the core-API methods: one TF1 method's kernel over a ``call_model_function``.

    Each call makes a :class:`~saliency_tf1.compat.call_model.CallModelBackend` for the
    input's shape and dtype and runs the TF1 class's public method over it.
    The object holds no state, so one instance serves any number of models
    and threads.
    """

    #: The TF1 method class whose kernel this class runs.
    tf1_method: ClassVar[type | None] = None
    #: The keys this method asks the ``call_model_function`` for.
    expected_keys: ClassVar[list[str]] = []

    @classmethod
    def tf1_class(cls) -> type:
        """The TF1 method class whose algorithm this class runs."""
        if cls.tf1_method is None:
            raise NotImplementedError(f"{cls.__name__} names no TF1 method (tf1_method)")
        return cls.tf1_method

    def method_for(
        self,
        x_value: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        *,
        batched: bool = False,
    ) -> Any:
        """The TF1 method over a backend made for ``x_value``'s shape and this function."""
        backend = CallModelBackend.for_input(x_value, call_model_function, call_model_args,
                                             batched=batched)
        return self.tf1_class().from_backend(backend)

    def _call(self, name: str, x_value: Any, call_model_function: CallModelFunction,
              call_model_args: Any, *args: Any, **kwargs: Any) -> Any:
        method = self.method_for(x_value, call_model_function, call_model_args,
                                 batched=name == "GetMaskBatch")
        return getattr(method, name)(x_value, None, *args, **kwargs)

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, **kwargs: Any) -> Any:
        """Returns the method's mask for one input (not batched).

        Args:
          x_value: one input, as the model takes it without the batch dimension.
          call_model_function: ``f(x_value_batch, call_model_args=None,
            expected_keys=None) -> dict`` (see the module docstring).
          call_model_args: passed to every call of the function; never modified.
          **kwargs: the method's own arguments (as the TF1 class's ``GetMask``).
        """
        return self._call("GetMask", x_value, call_model_function, call_model_args, **kwargs)

    def GetSmoothedMask(
        self,
        x_value: Any,
        call_model_function: CallModelFunction,
        call_model_args: Any = None,
        stdev_spread: float = 0.15,
        nsamples: int = 25,
        magnitude: bool = True,
        **kwargs: Any,
    ) -> np.ndarray:
        """Returns the SmoothGrad mask: the method's mask averaged over noisy copies.

        Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017,
        arXiv:1706.03825. Arguments as PAIR's; ``seed=`` (keyword) makes the
        noise reproducible, ``seed=None`` draws it from NumPy's global state
        exactly as PAIR does. ``**kwargs`` are the method's ``GetMask``
        arguments (and ``batch_size``).
        """
        return self._call("GetSmoothedMask", x_value, call_model_function, call_model_args,
                          stdev_spread, nsamples, magnitude, **kwargs)

    def GetMaskBatch(self, x_batch: Any, call_model_function: CallModelFunction,
                     call_model_args: Any = None, **kwargs: Any) -> Any:
        """Returns one mask per input of ``x_batch`` (``[N, ...]``), all sharing batches.

        A :class:`~saliency_tf1.PerExample` value in a dict ``call_model_args``
        gives each input its own value.
        """
        return self._call("GetMaskBatch", x_batch, call_model_function, call_model_args,
                          **kwargs)

    def format_and_check_call_model_output(self, output: dict, input_shape: Any,
                                           expected_keys: Any) -> None:
        """PAIR's helper, for subclasses written against it: checks ``output`` in place.

        Converts the expected keys' values to arrays (``OUTPUT_LAYER_VALUES``
        to shape ``[n]``) or raises as :func:`check_call_model_output`.
        """
        output.update(check_call_model_output(output, input_shape, expected_keys))


class GradientSaliency(CoreSaliency):
    """Vanilla gradient, ``d y / d x`` (Simonyan et al., 2013, arXiv:1312.6034).

    With ``GetSmoothedMask``, SmoothGrad.
    """

    tf1_method = tf1.GradientSaliency
    expected_keys = [INPUT_OUTPUT_GRADIENTS]


class IntegratedGradients(CoreSaliency):
    """Integrated Gradients (Sundararajan et al., ICML 2017, arXiv:1703.01365).

    See :class:`saliency_tf1.integrated_gradients.IntegratedGradients` for
    the keyword-only extras (``rule``, ``return_error``, ``progress``).
    """

    tf1_method = tf1.IntegratedGradients
    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, x_baseline: Any = None, x_steps: int = 25,
                batch_size: int | None = None, **kwargs: Any) -> Any:
        """Returns the IG mask of one input; ``x_baseline`` defaults to zeros."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          x_baseline=x_baseline, x_steps=x_steps, batch_size=batch_size,
                          **kwargs)


class BlurIG(CoreSaliency):
    """Blur IG: integrated gradients along a path of Gaussian blurs.

    Xu, Venugopalan and Sundararajan, "Attribution in Scale and Space",
    CVPR 2020, arXiv:2004.03383.
    """

    tf1_method = tf1.BlurIG
    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, max_sigma: float = 50, steps: int = 100,
                grad_step: float = 0.01, sqrt: bool = False, batch_size: int | None = None,
                **kwargs: Any) -> Any:
        """Returns the Blur IG mask of one input ``[H, W, C]``."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          max_sigma=max_sigma, steps=steps, grad_step=grad_step, sqrt=sqrt,
                          batch_size=batch_size, **kwargs)


class GuidedIG(CoreSaliency):
    """Guided Integrated Gradients: an adaptive path that moves low-gradient features first.

    Kapishnikov et al., "Guided Integrated Gradients: an Adaptive Path
    Method for Removing Noise", CVPR 2021, arXiv:2106.09788.
    """

    tf1_method = tf1.GuidedIG
    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, x_baseline: Any = None, x_steps: int = 200,
                fraction: float = 0.25, max_dist: float = 0.02, **kwargs: Any) -> Any:
        """Returns the Guided IG mask of one input; ``x_baseline`` defaults to zeros."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          x_baseline=x_baseline, x_steps=x_steps, fraction=fraction,
                          max_dist=max_dist, **kwargs)


class GradCam(CoreSaliency):
    """Grad-CAM from the conv-layer keys (Selvaraju et al., ICCV 2017, arXiv:1610.02391).

    The ``call_model_function`` returns ``CONVOLUTION_LAYER_VALUES`` and
    ``CONVOLUTION_OUTPUT_GRADIENTS``, both ``[batch, h, w, c]``.
    """

    tf1_method = tf1.GradCam
    expected_keys = [CONVOLUTION_LAYER_VALUES, CONVOLUTION_OUTPUT_GRADIENTS]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, should_resize: bool = True,
                three_dims: bool = True, **kwargs: Any) -> Any:
        """Returns the Grad-CAM mask of one input ``[H, W, C]``."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          should_resize=should_resize, three_dims=three_dims, **kwargs)


class GradCamPlusPlus(GradCam):
    """Grad-CAM++ from the conv-layer keys (Chattopadhay et al., WACV 2018, arXiv:1710.11063).

    Not in PAIR; arguments as :class:`GradCam`.
    """

    tf1_method = tf1.GradCamPlusPlus


class Occlusion(CoreSaliency):
    """Occlusion sensitivity (Zeiler and Fergus, ECCV 2014, arXiv:1311.2901).

    See :class:`saliency_tf1.occlusion.Occlusion` for the keyword-only extras
    (``stride``, window shape, ``normalize``, ``baseline``, ``batch_size``).
    """

    tf1_method = tf1.Occlusion
    expected_keys = [OUTPUT_LAYER_VALUES]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, size: int = 15, value: float = 0,
                **kwargs: Any) -> np.ndarray:
        """Returns the occlusion mask of one input ``[H, W, ...]``."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          size=size, value=value, **kwargs)


class XRAI(CoreSaliency):
    """XRAI: region attribution from IG over segments (Kapishnikov et al., ICCV 2019,
    arXiv:1906.02825). Needs scikit-image (the ``xrai`` extra).
    """

    tf1_method = tf1.XRAI
    expected_keys = [INPUT_OUTPUT_GRADIENTS]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, baselines: Any = None, segments: Any = None,
                base_attribution: Any = None, batch_size: int | None = None,
                extra_parameters: Any = None, **kwargs: Any) -> np.ndarray:
        """Returns the XRAI attribution mask of one input ``[H, W, C]``."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          baselines=baselines, segments=segments,
                          base_attribution=base_attribution, batch_size=batch_size,
                          extra_parameters=extra_parameters, **kwargs)

    def GetMaskWithDetails(self, x_value: Any, call_model_function: CallModelFunction,
                           call_model_args: Any = None, baselines: Any = None,
                           segments: Any = None, base_attribution: Any = None,
                           batch_size: int | None = None, extra_parameters: Any = None,
                           **kwargs: Any) -> Any:
        """Returns an ``XRAIOutput`` (mask, IG attributions, segments) for one input."""
        return self._call("GetMaskWithDetails", x_value, call_model_function,
                          call_model_args, baselines=baselines, segments=segments,
                          base_attribution=base_attribution, batch_size=batch_size,
                          extra_parameters=extra_parameters, **kwargs)


class ScoreCam(CoreSaliency):
    """Score-CAM (Wang et al., CVPRW 2020, arXiv:1910.01279) from CONVOLUTION_LAYER_VALUES
    (``[batch, h, w, c]``) and OUTPUT_LAYER_VALUES of the masked inputs."""

    tf1_method = tf1.ScoreCam
    expected_keys = [CONVOLUTION_LAYER_VALUES, OUTPUT_LAYER_VALUES]

    def GetMask(self, x_value: Any, call_model_function: CallModelFunction,
                call_model_args: Any = None, should_resize: bool = True,
                three_dims: bool = True, **kwargs: Any) -> Any:
        """Returns the Score-CAM mask of one input ``[H, W, C]``."""
        return self._call("GetMask", x_value, call_model_function, call_model_args,
                          should_resize=should_resize, three_dims=three_dims, **kwargs)


class Lime(CoreSaliency):
    """LIME on segments (Ribeiro et al., KDD 2016, arXiv:1602.04938): OUTPUT_LAYER_VALUES only."""

    tf1_method = tf1.Lime
    expected_keys = [OUTPUT_LAYER_VALUES]

    def GetMaskWithDetails(self, x_value: Any, call_model_function: CallModelFunction,
                           call_model_args: Any = None, **kwargs: Any) -> Any:
        """Returns a ``SurrogateOutput`` (mask, coefficients, R^2, segments) for one input."""
        return self._call("GetMaskWithDetails", x_value, call_model_function,
                          call_model_args, **kwargs)


class KernelShap(Lime):
    """KernelSHAP on segments (Lundberg and Lee, NeurIPS 2017, arXiv:1705.07874)."""

    tf1_method = tf1.KernelShap


__all__ += ["KernelShap", "Lime", "ScoreCam"]


def _core_class(tf1_class: type) -> type:
    """A core-API class for a catalogue method that has no hand-written one here.

    Its ``GetMask(x_value, call_model_function, call_model_args=None, **kwargs)``
    takes the TF1 class's keyword arguments.
    """
    doc = (tf1_class.__doc__ or "").strip().splitlines()[0] if tf1_class.__doc__ else ""
    return type(tf1_class.__name__, (CoreSaliency,), {
        "__module__": __name__,
        "__doc__": f"{doc}\n\nThe core-API form of :class:`saliency_tf1.{tf1_class.__name__}`; "
                   "arguments as its ``GetMask`` (keyword).",
        "tf1_method": tf1_class,
        "expected_keys": list(tf1_class.backend_keys),
    })


def _add_catalogue_classes() -> None:
    """Every catalogue method that can run over a ``call_model_function`` (not the gated
    ones, whose gradients exist only in a TF1 graph) gets a class here."""
    from saliency_tf1.catalogue import METHODS

    for spec in METHODS.values():
        name = spec.cls.__name__
        if spec.cls.graph_only or name in globals():
            continue
        globals()[name] = _core_class(spec.cls)
        __all__.append(name)


_add_catalogue_classes()
