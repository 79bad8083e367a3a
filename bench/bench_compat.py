"""The core API over a TF1 model: our core classes vs the TF1 classes and vs PAIR's saliency.core.

All three run on one ``create_tf1_call_model_function`` (the TF1 class on its own
session): "core/TF1" is the cost of going through the function (copies, checks),
"PAIR/core" what batching saves PAIR's core classes at their default
``batch_size=1``. Ratios are measured in one run, round-robin.
Run: ``python bench/bench_compat.py [--size 64] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
from common import interleaved_medians, print_table, relu_cnn  # noqa: E402
from saliency_tf1.compat import core  # noqa: E402

import saliency_tf1 as saliency  # noqa: E402

# (label, class name (TF1 and core), call, kwargs)
TASKS = [
    ("Gradient", "GradientSaliency", "GetMask", {}),
    ("SmoothGrad-25", "GradientSaliency", "GetSmoothedMask", {"nsamples": 25}),
    ("IG-25", "IntegratedGradients", "GetMask", {"x_steps": 25}),
    ("Occlusion-48", "Occlusion", "GetMask", {"size": 48}),
    ("GradCam", "GradCam", "GetMask", {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    try:
        import saliency.core as pair
    except Exception:
        pair = None
    m = relu_cnn(args.size)
    img = np.random.default_rng(0).uniform(0, 1, (args.size, args.size, 3)).astype(np.float32)
    function = core.create_tf1_call_model_function(m.graph, m.session, m.y, m.x, m.conv)
    rows = []
    for label, core_name, call, kwargs in TASKS:
        cls = getattr(saliency, core_name)
        conv = (m.conv,) if core_name == "GradCam" else ()
        tf1 = cls(m.graph, m.session, m.y, m.x, *conv)
        fns = {
            "tf1": partial(getattr(tf1, call), img, None, **kwargs),
            "core": partial(getattr(getattr(core, core_name)(), call), img, function, **kwargs),
        }
        if pair is not None:
            fns["pair"] = partial(getattr(getattr(pair, core_name)(), call), img, function,
                                  **kwargs)
        t = interleaved_medians(fns, args.repeats)
        pair_t = t.get("pair", float("nan"))
        rows.append([label, t["tf1"] * 1e3, t["core"] * 1e3, t["core"] / t["tf1"],
                     pair_t * 1e3, pair_t / t["core"]])
    m.close()
    print_table(
        f"Core API over a TF1 CNN ({args.size}x{args.size}): median ms; core/TF1; PAIR/core",
        ["method", "TF1 ms", "core ms", "core/TF1", "PAIR core ms", "PAIR/core"], rows)


if __name__ == "__main__":
    main()
