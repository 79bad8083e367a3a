"""Migrating from PAIR's ``saliency.tf1``: change the import, keep the code.

The first half is PAIR-style code (its README's calls) with one line changed;
the second half shows what the new package adds, and how a TF1 model joins
code written for the framework-agnostic core API.

Run: ``python examples/migrating_tf1.py``
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from saliency_tf1.compat import (
    core,  # Before: import saliency.core (and saliency.tf1's call_model_function)
)

# Before:  import saliency.tf1 as saliency
import saliency_tf1 as saliency

v1 = tf.compat.v1


def build_model(seed: int = 0):
    """A small TF1 CNN with random weights: 24x24 RGB images, 4 classes."""
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, 24, 24, 3], name="images")
        w1 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)), tf.float32)
        w2 = tf.constant(rng.normal(0, 0.3, (3, 3, 8, 8)), tf.float32)
        wd = tf.constant(rng.normal(0, 0.5, (8, 4)), tf.float32)
        hidden = tf.nn.relu(tf.nn.conv2d(images, w1, 1, "SAME"))
        conv = tf.nn.relu(tf.nn.conv2d(hidden, w2, 1, "SAME"), name="conv")
        logits = tf.matmul(tf.reduce_mean(conv, [1, 2]), wd, name="logits")
        # PAIR's README: a placeholder selects the explained class.
        neuron_selector = v1.placeholder(tf.int32, name="neuron_selector")
        y = logits[:, neuron_selector]   # PAIR's logits[0][neuron_selector] works too
    return graph, v1.Session(graph=graph), images, logits, conv, neuron_selector, y


def main() -> dict[str, np.ndarray]:
    graph, sess, images, logits, conv, neuron_selector, y = build_model()
    rng = np.random.default_rng(1)
    im = rng.uniform(0, 1, (24, 24, 3)).astype(np.float32)
    prediction_class = int(np.argmax(sess.run(logits, {images: im[None]})[0]))
    feed = {neuron_selector: prediction_class}

    # --- PAIR code, unchanged --------------------------------------------------------
    gradient_saliency = saliency.GradientSaliency(graph, sess, y, images)
    vanilla_mask_3d = gradient_saliency.GetMask(im, feed_dict=feed)
    smoothgrad_mask_3d = gradient_saliency.GetSmoothedMask(im, feed_dict=feed)
    vanilla_mask_grayscale = saliency.VisualizeImageGrayscale(vanilla_mask_3d)

    integrated_gradients = saliency.IntegratedGradients(graph, sess, y, images)
    baseline = np.zeros(im.shape)
    ig_mask_3d = integrated_gradients.GetMask(
        im, feed_dict=feed, x_steps=25, x_baseline=baseline, batch_size=20)

    occlusion = saliency.Occlusion(graph, sess, y, images)
    occlusion_mask_3d = occlusion.GetMask(im, feed_dict=feed, size=6)

    grad_cam = saliency.GradCam(graph, sess, y, images, conv_layer=conv)
    grad_cam_mask_3d = grad_cam.GetMask(im, feed_dict=feed)

    # --- What is new ---------------------------------------------------------------------
    # Reproducible noise without touching NumPy's global state:
    smooth_seeded = gradient_saliency.GetSmoothedMask(im, feed_dict=feed, seed=0)
    # Many images at once, each explained for its own class, in shared session.run batches:
    target = saliency.ClassTarget(logits)
    per_class = saliency.GradientSaliency(graph, sess, target.y, images)
    batch = np.stack([im, im[::-1], im[:, ::-1]])
    batch_masks = per_class.GetMaskBatch(batch, feed_dict=target.feed([prediction_class, 0, 1]))

    # --- The TF1 model in code written for the core API -----------------------------------
    # Before: call_model_function = saliency.create_tf1_call_model_function(...)
    call_model_function = core.create_tf1_call_model_function(graph, sess, y, images, conv)
    core_ig = core.IntegratedGradients().GetMask(
        im, call_model_function, feed, x_steps=25, x_baseline=baseline)
    # A TF1 method object where a core method is expected (it uses its own session;
    # call_model_args is its feed_dict):
    core_methods = {
        "gradient": core.GradientSaliency(),
        "guided_backprop": core.CoreAdapter(saliency.GuidedBackprop(graph, sess, y, images)),
    }
    core_masks = {name: method.GetMask(im, call_model_function, feed)
                  for name, method in core_methods.items()}

    sess.close()
    return {
        "vanilla": vanilla_mask_3d, "smoothgrad": smoothgrad_mask_3d,
        "vanilla_grayscale": vanilla_mask_grayscale, "ig": ig_mask_3d,
        "occlusion": occlusion_mask_3d, "grad_cam": grad_cam_mask_3d,
        "smooth_seeded": smooth_seeded,
        "batch": batch_masks, "core_ig": core_ig, **{f"core_{k}": v for k, v in core_masks.items()},
    }


if __name__ == "__main__":
    for name, mask in main().items():
        print(f"{name:22s} shape {str(mask.shape):14s} max |mask| {np.max(np.abs(mask)):.4g}")
