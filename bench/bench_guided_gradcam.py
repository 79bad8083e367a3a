"""Guided Backprop and Grad-CAM: constructor and GetMask time relative to the vanilla gradient.

On the bench ReLU CNN (3 conv blocks, variables) at each input size:

* constructor: building the method on a fresh graph (its ops are built once
  per graph; a second instance on the same graph reuses them), median over
  fresh graphs, measured round-robin across methods;
* GetMask: one input, one ``session.run``, median over repeats, round-robin.

Ratios are to ``GradientSaliency`` measured in the same run. PAIR 0.2.1's
``GuidedBackprop`` (which saves a checkpoint and restores it into a second
graph and session) and ``GradCam`` are shown for reference when installed.
Run: ``python bench/bench_guided_gradcam.py [--sizes 64,224] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
from common import interleaved_medians, pair_available, print_table, relu_cnn  # noqa: E402

from saliency_tf1.methods.grad_cam import GradCam, GradCamPlusPlus, GuidedGradCam  # noqa: E402
from saliency_tf1.methods.gradient import GradientSaliency  # noqa: E402
from saliency_tf1.methods.guided_backprop import Deconvnet, GuidedBackprop  # noqa: E402


def builders(ckpt_dir: str) -> dict:
    """name -> fn(model) that constructs the method on the model."""
    out = {
        "Gradient": lambda m: GradientSaliency(m.graph, m.session, m.y, m.x),
        "GuidedBackprop": lambda m: GuidedBackprop(m.graph, m.session, m.y, m.x),
        "Deconvnet": lambda m: Deconvnet(m.graph, m.session, m.y, m.x),
        "GradCam": lambda m: GradCam(m.graph, m.session, m.y, m.x, m.conv),
        "GradCamPlusPlus": lambda m: GradCamPlusPlus(m.graph, m.session, m.y, m.x, m.conv),
        "GuidedGradCam": lambda m: GuidedGradCam(m.graph, m.session, m.y, m.x, m.conv),
    }
    if pair_available():
        import saliency.tf1 as pair

        out["PAIR GuidedBackprop"] = lambda m: pair.GuidedBackprop(
            m.graph, m.session, m.y, m.x, tmp_ckpt_path=os.path.join(ckpt_dir, "ckpt"))
        out["PAIR GradCam"] = lambda m: pair.GradCam(m.graph, m.session, m.y, m.x, m.conv)
    return out


def constructor_times(size: int, repeats: int, build: dict) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in build}
    for _ in range(repeats):
        for name, fn in build.items():
            model = relu_cnn(size)
            start = time.perf_counter()
            method = fn(model)
            times[name].append(time.perf_counter() - start)
            if hasattr(method, "guided_sess"):
                method.guided_sess.close()
            model.close()
    return {name: statistics.median(t) for name, t in times.items()}


def getmask_times(size: int, repeats: int, build: dict) -> dict[str, float]:
    model = relu_cnn(size)
    img = np.random.default_rng(0).uniform(0, 1, (size, size, 3)).astype(np.float32)
    fns = {}
    for name, fn in build.items():
        method = fn(model)
        if name.startswith("PAIR"):
            fns[name] = (lambda m: lambda: m.GetMask(img, feed_dict={}))(method)
        else:
            fns[name] = (lambda m: lambda: m.GetMask(img))(method)
    times = interleaved_medians(fns, repeats)
    model.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="64,224")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ckpt_dir = tempfile.mkdtemp(prefix="bench_guided_")  # PAIR's checkpoint only
    try:
        build = builders(ckpt_dir)
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            ctor = constructor_times(size, args.repeats, build)
            run = getmask_times(size, args.repeats * 3, build)
            for name in build:
                rows.append([f"{size}x{size}", name, ctor[name] * 1e3,
                             ctor[name] / ctor["Gradient"], run[name] * 1e3,
                             run[name] / run["Gradient"]])
    finally:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    print_table(
        "Constructor (fresh graph) and GetMask (one input): median ms and ratio to Gradient",
        ["input", "method", "ctor ms", "ctor/grad", "GetMask ms", "GetMask/grad"],
        rows,
    )


if __name__ == "__main__":
    main()
