"""Beyond images: helpers to explain text, tabular and time-series models.

Every method of this package takes any float input tensor ``x`` whose outer
dimension is the batch, so most of the work is choosing ``x`` and a baseline,
and reading the mask per token, feature or time step:

* :mod:`.text`: explain through the embedding tensor (:func:`embed`,
  :func:`embedding_baseline` for ``[CLS] [PAD] ... [SEP]``), one score per
  token (:func:`token_scores`, :func:`top_tokens`);
* :mod:`.tabular`: :class:`FeatureAblation` (occlusion with a baseline row,
  feature groups), :func:`feature_attributions` (named, ranked);
* :mod:`.timeseries`: :class:`GradCam1D` over a 1-D conv layer,
  :func:`time_window_args` (occlusion windows along time), :func:`time_scores`;
* :mod:`.scoring`: :func:`top_k_hit_rate` against known informative positions;
* :mod:`.models`: small TF1 models of the generated data sets
  (:mod:`saliency_tf1.datasets`), trained in seconds.

The views are in :mod:`saliency_tf1.visualization.views`.
"""

from .scoring import chance_hit_rate, top_k_hit_rate
from .tabular import FeatureAblation, feature_attributions
from .text import baseline_token_ids, embed, embedding_baseline, token_scores, top_tokens
from .timeseries import GradCam1D, GradCamPlusPlus1D, time_scores, time_window_args

__all__ = [
    "FeatureAblation",
    "GradCam1D",
    "GradCamPlusPlus1D",
    "baseline_token_ids",
    "chance_hit_rate",
    "embed",
    "embedding_baseline",
    "feature_attributions",
    "time_scores",
    "time_window_args",
    "token_scores",
    "top_k_hit_rate",
    "top_tokens",
]
