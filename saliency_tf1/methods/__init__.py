"""The saliency methods, one module each, all on :class:`~saliency_tf1.methods.base.TF1Saliency`."""

from .base import Plan, TF1Saliency
from .blur_ig import BlurIG
from .deeplift import DeepLift
from .expected_gradients import ExpectedGradients
from .grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam
from .gradient import GradientSaliency
from .gradient_x_input import GradientXInput
from .guided_backprop import Deconvnet, GuidedBackprop
from .guided_ig import GuidedIG
from .integrated_gradients import IntegratedGradients
from .layer_conductance import LayerConductance
from .lime import KernelShap, Lime, SurrogateOutput
from .lrp import LRP
from .occlusion import Occlusion
from .rise import RISE
from .score_cam import ScoreCam
from .xrai import XRAI, XRAIOutput, XRAIParameters

__all__ = [
    "RISE",
    "KernelShap",
    "Lime",
    "ScoreCam",
    "SurrogateOutput",
    "LRP",
    "DeepLift",
    "ExpectedGradients",
    "GradientXInput",
    "LayerConductance",
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
