"""Scores of how faithful and how well-placed a saliency mask is.

* Performance Information Curves, SIC and AIC (Kapishnikov et al., 2019): :func:`pic_curves`.
* Deletion and insertion curves (Petsiuk et al., 2018): :func:`deletion`, :func:`insertion`.
* Model-parameter randomisation sanity checks (Adebayo et al., 2018): :func:`randomization_check`.
* Localisation on known regions: :func:`energy_inside`, :func:`pointing_game`.

The faithfulness metrics call the model through a plain function
``rows -> scores`` (:func:`tf1_model_function` builds one from a TF1 graph).
"""

from ._common import ModelFunction
from .deletion import PerturbationCurves, deletion, insertion, perturbation_curves
from .localization import energy_inside, localization, pointing_game
from .model import backend_model_function, tf1_model_function
from .pic import (
    DEFAULT_THRESHOLDS,
    PicAggregate,
    PicCurves,
    aic,
    estimate_information,
    pic_curves,
    random_reveal_masks,
    reveal_blurred,
    sic,
)
from .sanity import (
    RandomizationResult,
    mask_similarity,
    model_layers,
    randomization_check,
    randomized_variables,
    spearman_rank_correlation,
    ssim,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ModelFunction",
    "PerturbationCurves",
    "PicAggregate",
    "PicCurves",
    "RandomizationResult",
    "aic",
    "backend_model_function",
    "deletion",
    "energy_inside",
    "estimate_information",
    "insertion",
    "localization",
    "mask_similarity",
    "model_layers",
    "perturbation_curves",
    "pic_curves",
    "pointing_game",
    "random_reveal_masks",
    "randomization_check",
    "randomized_variables",
    "reveal_blurred",
    "sic",
    "spearman_rank_correlation",
    "ssim",
    "tf1_model_function",
]
