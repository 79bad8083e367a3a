"""RISE, Score-CAM, LIME and KernelSHAP: our time vs the floor of the same forward rows.

Each method runs a known number of model rows (masked or perturbed copies);
the floor is a bare ``session.run(y)`` of that many rows, in batches of the
same ``batch_size``, over copies made beforehand (the first chunks are
cycled when they would not fit in memory: forward time does not depend on
the pixel values). For Score-CAM the floor also holds the one run that
fetches the conv layer. What lies between ours and the floor is making the
copies (mask upsampling, blending), the per-sample fits, and the Python
around them. LIME and KernelSHAP get precomputed superpixels (XRAI's
Felzenszwalb segmentation at one scale, timed on its own in the last column).

``--resnet`` adds Score-CAM on tf-slim's ``resnet_v1_50`` (random weights) at
224x224 over its last block (2,048 channels), full and Faster Score-CAM
(``top_k``): slow (thousands of ResNet-50 forward rows on a CPU), so it is
optional and timed once. It needs the ``legacy`` extra (tf-slim, tf-keras).

Run: ``python bench/bench_perturbation.py [--repeats 3] [--sizes 64,224] [--resnet]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="light,relu_cnn", help="bench/common.py models")
    parser.add_argument("--sizes", default="64,224", help="input sizes")
    parser.add_argument("--samples", type=int, default=1000,
                        help="RISE masks / LIME and KernelSHAP samples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resnet", action="store_true",
                        help="also Score-CAM on resnet_v1_50 at 224x224 (slow)")
    parser.add_argument("--resnet-top-k", type=int, default=256)
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.resnet:  # before TensorFlow is imported
    from saliency_tf1.models.legacy import enable_legacy_keras

    enable_legacy_keras()

import numpy as np  # noqa: E402
from common import MODELS, interleaved_medians, print_table, v1  # noqa: E402

from saliency_tf1.datasets import make_shapes  # noqa: E402
from saliency_tf1.methods.lime import KernelShap, Lime  # noqa: E402
from saliency_tf1.methods.rise import RISE  # noqa: E402
from saliency_tf1.methods.score_cam import ScoreCam, select_channels  # noqa: E402
from saliency_tf1.methods.surrogate import felzenszwalb_partition  # noqa: E402

#: Most bytes of prepared copies the floor keeps (the rest cycle through them).
MAX_FLOOR_BYTES = 3e8


def floor_fn(session, x, y, image, rows: int, batch_size: int, extra=None):
    """A bare forward pass of ``rows`` copies of ``image`` in ``batch_size`` chunks.

    ``extra``: one more ``session.run`` of ``extra`` on the image (the conv fetch).
    """
    rng = np.random.default_rng(0)
    n_chunks = -(-rows // batch_size)
    keep = max(1, min(n_chunks, int(MAX_FLOOR_BYTES // (batch_size * image.nbytes))))
    chunks = [(image * rng.uniform(0, 1, (min(batch_size, rows), 1, 1, 1))).astype(image.dtype)
              for _ in range(keep)]
    sizes = [min(batch_size, rows - c * batch_size) for c in range(n_chunks)]

    def run():
        if extra is not None:
            session.run(extra, {x: image[None]})
        for c, size in enumerate(sizes):
            session.run(y, {x: chunks[c % keep][:size]})

    return run


def bench_model(name: str, size: int, n: int, batch_size: int, repeats: int) -> list[list]:
    m = MODELS[name](size)
    image = make_shapes(1, size=max(size, 16), seed=3).images[0]
    t0 = time.perf_counter()
    segments = felzenszwalb_partition(image)
    seg_s = time.perf_counter() - t0
    rise = RISE(m.graph, m.session, m.y, m.x)
    lime = Lime(m.graph, m.session, m.y, m.x)
    shap = KernelShap(m.graph, m.session, m.y, m.x)
    cam = ScoreCam(m.graph, m.session, m.y, m.x, m.conv)
    conv = m.session.run(m.conv, {m.x: image[None]})[0]
    channels = len(select_channels(conv))
    shap_rows = shap.plan(image, segments=segments, n_samples=n).rows_per_input
    common = {"seed": 0, "batch_size": batch_size, "progress": False}
    cases = [
        (f"RISE-{n}", n, lambda: rise.GetMask(image, n_masks=n, **common), None),
        (f"LIME-{n}", n, lambda: lime.GetMask(image, segments=segments, n_samples=n, **common),
         None),
        (f"KernelSHAP-{n}", shap_rows,
         lambda: shap.GetMask(image, segments=segments, n_samples=n, **common), None),
        (f"Score-CAM ({channels} ch)", channels,
         lambda: cam.GetMask(image, batch_size=batch_size, progress=False), m.conv),
    ]
    rows = []
    for label, n_rows, ours, extra in cases:
        floor = floor_fn(m.session, m.x, m.y, image, n_rows, batch_size, extra)
        t = interleaved_medians({"ours": ours, "floor": floor}, repeats)
        rows.append([name, f"{size}x{size}", label, n_rows + (extra is not None),
                     t["floor"], t["ours"], t["ours"] / t["floor"],
                     seg_s if label.startswith(("LIME", "Kernel")) else float("nan")])
    m.close()
    return rows


def bench_resnet(top_k: int, batch_size: int = 32) -> list[list]:
    import tensorflow as tf
    import tf_slim as slim
    from tf_slim.nets import resnet_v1

    from saliency_tf1 import ClassTarget

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        x = v1.placeholder(tf.float32, [None, 224, 224, 3], name="x")
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            net, ends = resnet_v1.resnet_v1_50(x, num_classes=1000, is_training=False)
        conv = ends["resnet_v1_50/block4"]
        target = ClassTarget(tf.squeeze(net, [1, 2]))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    image = make_shapes(1, size=224, seed=3).images[0]
    feed = target.feed(7)
    cam = ScoreCam(graph, session, target.y, x, conv)
    values = session.run(conv, {x: image[None]})[0]
    assert values.shape[-1] == 2048, values.shape
    live = len(select_channels(values))
    rows = []
    chunk = np.repeat(image[None], batch_size, 0)
    session.run(target.y, {**feed, x: chunk})  # warm up
    for label, k in (("Score-CAM", None), (f"Faster Score-CAM top_k={top_k}", top_k)):
        n_rows = live if k is None else min(k, live)

        def floor(n_rows=n_rows):
            session.run(conv, {**feed, x: image[None]})
            for a in range(0, n_rows, batch_size):
                b = min(a + batch_size, n_rows)
                session.run(target.y, {**feed, x: chunk[:b - a]})

        t0 = time.perf_counter()
        floor()
        floor_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mask = cam.GetMask(image, feed, top_k=k, batch_size=batch_size, progress=False)
        ours_s = time.perf_counter() - t0
        assert np.all(np.isfinite(mask))
        rows.append(["resnet_v1_50", "224x224", f"{label} ({live} live of 2048 ch)",
                     n_rows + 1, floor_s, ours_s, ours_s / floor_s, float("nan")])
    session.close()
    return rows


def main(args: argparse.Namespace) -> None:
    rows = []
    for name in args.models.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows += bench_model(name, size, args.samples, args.batch_size, args.repeats)
    if args.resnet:
        rows += bench_resnet(args.resnet_top_k)
    print_table(
        f"Perturbation methods (batch_size={args.batch_size}; resnet 32): median s over "
        f"{args.repeats} (resnet: one run); target ours/floor <= 1.15",
        ["model", "input", "method", "rows", "floor s", "ours s", "ours/floor", "segment s"],
        rows)


if __name__ == "__main__":
    main(ARGS)
