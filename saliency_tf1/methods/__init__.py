"""The saliency methods, one module each, all on :class:`~saliency_tf1.methods.base.TF1Saliency`."""

from .base import Plan, TF1Saliency
from .blur_ig import BlurIG
from .grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam
from .gradient import GradientSaliency
from .guided_backprop import Deconvnet, GuidedBackprop
from .guided_ig import GuidedIG
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .xrai import XRAI, XRAIOutput, XRAIParameters

__all__ = [
    "XRAI",
    "BlurIG",
    "Deconvnet",
    "GradCam",
    "GradCamPlusPlus",
    "GradientSaliency",
    "GuidedBackprop",
    "GuidedGradCam",
    "GuidedIG",
    "IntegratedGradients",
    "Occlusion",
    "Plan",
    "TF1Saliency",
    "XRAIOutput",
    "XRAIParameters",
]
