"""Migrating from PAIR's ``saliency.core``: change the import, keep the call_model_function.

The model here is plain NumPy (gradients written by hand), standing for any
framework — PyTorch, JAX, TF2 — wrapped in a core-API ``call_model_function``.
No TensorFlow runs: the methods are this package's batched algorithms,
driven through ``compat.core``.

Run: ``python examples/migrating_core.py``
"""

from __future__ import annotations

import sys

import numpy as np

# Before:  import saliency.core as saliency
from saliency_tf1.compat import core as saliency

CLASS_IDX = "class_idx_str"   # the key PAIR's examples use in call_model_args

# A small model: per-pixel 1x1 convolution + ReLU (the "conv layer"),
# global average pooling, a dense layer to 4 class logits.
_rng = np.random.default_rng(0)
W1 = _rng.normal(0, 0.7, (3, 6))
B1 = _rng.normal(0, 0.2, 6)
WD = _rng.normal(0, 1.0, (6, 4))


def call_model_function(images, call_model_args=None, expected_keys=None):
    """The core API's model function: a batch of images in, the expected keys out."""
    target = call_model_args[CLASS_IDX]
    x = np.asarray(images, np.float64)                 # [n, h, w, 3]
    pre = x @ W1 + B1
    conv = np.maximum(pre, 0.0)                        # [n, h, w, 6]
    logits = conv.mean(axis=(1, 2)) @ WD               # [n, 4]
    h, w = x.shape[1:3]
    conv_grads = np.broadcast_to(WD[:, target] / (h * w), conv.shape).copy()
    outputs = {
        saliency.OUTPUT_LAYER_VALUES: logits[:, target],
        saliency.INPUT_OUTPUT_GRADIENTS: (conv_grads * (pre > 0)) @ W1.T,
        saliency.CONVOLUTION_LAYER_VALUES: conv,
        saliency.CONVOLUTION_OUTPUT_GRADIENTS: conv_grads,
    }
    return {key: outputs[key] for key in expected_keys}


IMAGE = np.random.default_rng(1).uniform(0, 1, (20, 20, 3))
CALL_MODEL_ARGS = {CLASS_IDX: 2}


def main() -> dict[str, np.ndarray]:
    im, args = IMAGE, CALL_MODEL_ARGS

    # --- PAIR code, unchanged ----------------------------------------------------------
    gradient_saliency = saliency.GradientSaliency()
    vanilla_mask_3d = gradient_saliency.GetMask(im, call_model_function, args)
    smoothgrad_mask_3d = gradient_saliency.GetSmoothedMask(im, call_model_function, args)

    integrated_gradients = saliency.IntegratedGradients()
    baseline = np.zeros(im.shape)
    ig_mask_3d = integrated_gradients.GetMask(
        im, call_model_function, args, x_steps=25, x_baseline=baseline, batch_size=20)

    occlusion_mask_3d = saliency.Occlusion().GetMask(im, call_model_function, args, size=5)
    grad_cam_mask_3d = saliency.GradCam().GetMask(im, call_model_function, args)
    blur_ig_mask_3d = saliency.BlurIG().GetMask(
        im, call_model_function, args, max_sigma=10, steps=20)
    guided_ig_mask_3d = saliency.GuidedIG().GetMask(
        im, call_model_function, args, x_steps=50, x_baseline=baseline, max_dist=0.1)
    xrai_params = saliency.XRAIParameters(steps=20)
    xrai_mask = saliency.XRAI().GetMask(im, call_model_function, args,
                                         extra_parameters=xrai_params)

    # --- What is new ---------------------------------------------------------------------
    # batch_size defaults to batching (IG's 25 points: one call, not 25); seeded noise:
    smooth_seeded = gradient_saliency.GetSmoothedMask(im, call_model_function, args, seed=0)
    # Many images at once, sharing calls of the model function:
    batch_masks = integrated_gradients.GetMaskBatch(
        np.stack([im, im[::-1]]), call_model_function, args, x_steps=25)

    return {
        "vanilla": vanilla_mask_3d, "smoothgrad": smoothgrad_mask_3d, "ig": ig_mask_3d,
        "occlusion": occlusion_mask_3d, "grad_cam": grad_cam_mask_3d,
        "blur_ig": blur_ig_mask_3d, "guided_ig": guided_ig_mask_3d, "xrai": xrai_mask,
        "smooth_seeded": smooth_seeded, "batch": batch_masks,
    }


if __name__ == "__main__":
    for name, mask in main().items():
        print(f"{name:14s} shape {str(mask.shape):14s} max |mask| {np.max(np.abs(mask)):.4g}")
    print("tensorflow imported:", "tensorflow" in sys.modules)
