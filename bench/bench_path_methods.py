"""Integrated Gradients and Blur IG: our time vs the compute floor and vs PAIR saliency 0.2.1.

The floor is bare ``session.run`` calls of the input gradient on the same
stacked path batches our call feeds (the path points precomputed, the same
chunks of ``batch_size`` rows). "path only" is the time to build Blur IG's
blurred points and their finite differences (TF ops in the model's graph)
without the model. PAIR runs with
its default ``batch_size=1`` (what a drop-in user gets), timed once (it is
slow); ours and the floor are medians of round-robin repeats in the same run.
Run: ``python bench/bench_path_methods.py [--sizes 64,224] [--repeats 3] [--no-pair]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    interleaved_medians,
    median_time,
    pair_available,
    print_table,
    relu_cnn,
    v1,
)

from saliency_tf1.methods.blur_ig import BlurIG, blur_path  # noqa: E402
from saliency_tf1.methods.integrated_gradients import IntegratedGradients  # noqa: E402

BATCH = 32  # the classes' default batch_size


def chunks(rows: np.ndarray) -> list[np.ndarray]:
    return [rows[a : a + BATCH] for a in range(0, len(rows), BATCH)]


def bench_size(size: int, repeats: int, with_pair: bool) -> list[list]:
    m = relu_cnn(size)
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    with m.graph.as_default():
        grad = v1.gradients(m.y, m.x)[0]
    ig = IntegratedGradients(m.graph, m.session, m.y, m.x)
    blur = BlurIG(m.graph, m.session, m.y, m.x)

    def floor(batches):
        return lambda: [m.session.run(grad, {m.x: b}) for b in batches]

    ig_paths = {steps: chunks((np.linspace(0, 1, steps)[:, None, None, None] * img)
                              .astype(np.float32)) for steps in (25, 300)}
    sigmas = np.arange(100) * 50 / 100
    blur_points = chunks(blur_path(img, sigmas, None, np.float32)[0])

    def blur_path_only():  # as BlurIG builds it: TF ops in the model's graph
        for a in range(0, 100, BATCH):
            blur._graph_blur(img, sigmas[a : a + BATCH], 0.01)

    fns = {
        "IG-25 floor": floor(ig_paths[25]),
        "IG-25 ours": lambda: ig.GetMask(img, x_steps=25),
        "IG-300 floor": floor(ig_paths[300]),
        "IG-300 ours": lambda: ig.GetMask(img, x_steps=300),
        "BlurIG-100 floor": floor(blur_points),
        "BlurIG-100 ours": lambda: blur.GetMask(img),
        "BlurIG-100 path only": blur_path_only,
    }
    t = interleaved_medians(fns, repeats)
    pair_t: dict[str, float] = {}
    if with_pair:
        import saliency.tf1 as pair

        theirs_ig = pair.IntegratedGradients(m.graph, m.session, m.y, m.x)
        theirs_blur = pair.BlurIG(m.graph, m.session, m.y, m.x)
        once = {"IG-25": lambda: theirs_ig.GetMask(img, feed_dict={}, x_steps=25),
                "IG-300": lambda: theirs_ig.GetMask(img, feed_dict={}, x_steps=300),
                "BlurIG-100": lambda: theirs_blur.GetMask(img, feed_dict={})}
        pair_t = {name: median_time(fn, repeats=1, warmup=0) for name, fn in once.items()}
    rows = []
    for task, steps in (("IG-25", 25), ("IG-300", 300), ("BlurIG-100", 100)):
        floor_t, ours_t = t[f"{task} floor"], t[f"{task} ours"]
        theirs = pair_t.get(task, float("nan"))
        rows.append([f"{size}x{size}", task, math.ceil(steps / BATCH), floor_t * 1e3,
                     ours_t * 1e3, ours_t / floor_t, theirs * 1e3, theirs / ours_t])
    path = t["BlurIG-100 path only"]
    rows.append([f"{size}x{size}", "BlurIG-100 path only", 0, float("nan"), path * 1e3,
                 path / t["BlurIG-100 floor"], float("nan"), float("nan")])
    m.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="64,224")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-pair", action="store_true", help="skip PAIR (slow at 224)")
    args = parser.parse_args()
    with_pair = not args.no_pair and pair_available()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += bench_size(size, args.repeats, with_pair)
    print_table(
        "Path methods on the bench ReLU CNN: median ms; ours/floor (target <= 1.15); "
        "PAIR (batch_size=1, one run)/ours",
        ["input", "call", "runs", "floor ms", "ours ms", "ours/floor", "PAIR ms", "PAIR/ours"],
        rows,
    )


if __name__ == "__main__":
    main()
